//! Test support for netstream: real components, started per test.
//!
//! - [`broker`]: a real tansu broker (Kafka protocol) on a free loopback port.
//! - [`pcap`]: writes classic pcap files with exactly known content.
//! - [`frames`]: builds frames with etherparse.
//! - [`proxy`]: a TCP proxy in front of the broker that can cut and refuse connections.
//! - [`prometheus`]: a real Prometheus server scraping given targets, and its query API.
//! - [`netns`]: a veth pair into a network namespace, for live capture.
//! - [`secure_broker`]: tansu with SASL required and/or behind TLS, and a throwaway CA.
//! - [`tools`]: finds the external tools tests need, skipping (or failing under
//!   `NETSTREAM_REQUIRE_TOOLS=1`, as CI sets) when they are missing.

pub mod broker;
pub mod frames;
pub mod http;
pub mod netns;
pub mod pcap;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod secure_broker;
pub mod tools;
