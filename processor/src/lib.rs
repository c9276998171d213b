//! `netstream-processor`: consumes packet records in a consumer group and runs analyses over
//! them (flow and protocol counts, workload traffic, per-protocol branch topics), served as
//! Prometheus metrics and a JSON API.
//!
//! - [`cli`]: flags (and `NETSTREAM_<FLAG>` environment); [`settings`]: the flags over the
//!   `--config` file (the shared `netstream-config` types), resolved once at start.
//! - [`decode`]: a record's key and value decoded, or why it is invalid.
//! - [`dissect`]: a frame's L2-L4 headers, on demand, once per packet.
//! - [`engine`]: decodes each record once and hands the packet to every enabled analysis, one
//!   shard per assigned partition.
//! - [`analysis`]: the [`analysis::Analysis`] trait and the analyses, one folder each, listed in
//!   [`analysis::registry`]: [`analysis::flows`], [`analysis::workloads`] (Kubernetes
//!   enrichment), [`analysis::branch`].
//! - [`state`]: the lanes (one engine each, `--threads`) the consuming threads share with the
//!   HTTP side; [`clock`]: their ticks.
//! - [`collector`]: `/metrics`: the engine's own families and every analysis' families, rendered
//!   at scrape time from snapshots.
//! - [`api`]: what the analyses' `/api/v1/...` routes share, and `/metrics`.
//! - [`consume`]: the consumer group loop, the lanes' worker threads, offsets and rebalances.

pub mod analysis;
pub mod api;
pub mod cli;
pub mod clock;
pub mod collector;
pub mod consume;
pub mod decode;
pub mod dissect;
pub mod engine;
pub mod settings;
pub mod state;
