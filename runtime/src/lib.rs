//! Process plumbing shared by netstream's binaries. Kept out of `netstream-wire`, which stays
//! free of I/O.

pub mod duration;
pub mod http;
pub mod kafka_config;
pub mod kafka_log;
pub mod logging;
pub mod metrics;
pub mod ratelimit;
pub mod signal;
