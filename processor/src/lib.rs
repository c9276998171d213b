//! `netstream-processor`: consumes packet records in a consumer group, counts packets and bytes
//! per flow and per protocol, and serves them as Prometheus metrics and a small JSON API.
//!
//! - [`cli`]: flags (and `NETSTREAM_<FLAG>` environment).
//! - [`record`]: decoding one record and counting it, or naming why it is invalid.
//! - [`table`]: the bounded flow table and the per-protocol counters.
//! - [`enrichment`]: Kubernetes identities (index and workload table) on the count path.
//! - [`identity`]: where identities come from (identity file, Kubernetes) and the sink.
//! - [`workload`]: the bounded table of `netstream_workload_*` series.
//! - [`state`]: what the consumer thread shares with the HTTP side; [`clock`]: its ticks.
//! - [`collector`]: `/metrics`, rendered at scrape time by a custom Prometheus collector.
//! - [`api`]: `/api/v1/flows` and `/api/v1/protocols`.
//! - [`branch`]: optional re-production of every record to a per-protocol topic.
//! - [`consume`]: the consumer group loop, offsets and rebalances.

pub mod api;
pub mod branch;
pub mod cli;
pub mod clock;
pub mod collector;
pub mod consume;
pub mod enrichment;
pub mod identity;
pub mod record;
pub mod state;
pub mod table;
pub mod workload;
