//! Kubernetes enrichment: which pod, workload, service or node an address belonged to when a
//! packet was captured.
//!
//! - [`identity`]: the names (namespace, workload, kind) and the small ids the count path uses;
//! - [`member`]: the index's input (pods, services, nodes with addresses and lifetimes) and
//!   the updates sources send;
//! - [`index`]: the time-aware index from address to identity;
//! - [`subnet`]: user-named CIDRs for everything outside the cluster;
//! - [`file`](mod@file): the static identity file (offline mode and tests);
//! - [`kube`]: the Kubernetes API source (watches of Pods, Services, Nodes and their owners).

pub mod file;
pub mod identity;
pub mod index;
pub mod kube;
pub mod member;
pub mod source;
pub mod subnet;

pub use identity::{MemberId, Resolved, Workload, WorkloadId, WorkloadKind};
pub use index::{IdentityIndex, IndexConfig, IndexStats, MemberInfo};
pub use member::{Member, MemberKind, Update};
pub use source::{Resource, Sink, SourceStats};
pub use subnet::{SubnetError, SubnetLabel, Subnets};
