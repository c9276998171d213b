//! netstream operator: reconciles `NetProbe` and `StreamAnalysis` custom resources into
//! probe DaemonSets and autoscaled processor Deployments.

pub mod bpf;
pub mod client;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod defaults;
pub mod desired;
pub mod discovery;
pub mod error;
pub mod http;
pub mod kafka;
pub mod labels;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod partitions;
pub mod reconcile;
