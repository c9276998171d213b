//! `netstream-probe`: capture packets with libpcap and produce each frame to Kafka keyed by its
//! canonical flow key. See `netstream_wire` for the record format.

pub mod cli;
pub mod metrics;
pub mod pipeline;
pub mod producer;
pub mod progress;
pub mod source;
