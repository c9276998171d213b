//! What an address resolves to: the names users see in labels, and the small ids the count path
//! carries instead of them.

use std::fmt;

/// The kind of a workload: the `src_kind` / `dst_kind` label values.
///
/// A pod's workload is its top controller, found by following ownerReferences
/// (ReplicaSet -> Deployment, Job -> CronJob); a pod without a controller is its own workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    CronJob,
    Job,
    /// A pod without a controller (or with one of a kind not listed here).
    Pod,
    /// A Service ClusterIP.
    Service,
    /// A node address (host-network pods resolve to their node).
    Node,
    /// An address in a user-named CIDR (`--subnet-label`).
    Subnet,
    /// Anything else.
    External,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 11] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::ReplicaSet,
        WorkloadKind::CronJob,
        WorkloadKind::Job,
        WorkloadKind::Pod,
        WorkloadKind::Service,
        WorkloadKind::Node,
        WorkloadKind::Subnet,
        WorkloadKind::External,
    ];

    /// The label value (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
            WorkloadKind::ReplicaSet => "replicaset",
            WorkloadKind::CronJob => "cronjob",
            WorkloadKind::Job => "job",
            WorkloadKind::Pod => "pod",
            WorkloadKind::Service => "service",
            WorkloadKind::Node => "node",
            WorkloadKind::Subnet => "subnet",
            WorkloadKind::External => "external",
        }
    }

    /// The kind for a Kubernetes controller kind (`ownerReferences[].kind`), if it is one we name.
    pub fn from_owner_kind(kind: &str) -> Option<WorkloadKind> {
        Some(match kind {
            "Deployment" => WorkloadKind::Deployment,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "CronJob" => WorkloadKind::CronJob,
            "Job" => WorkloadKind::Job,
            _ => return None,
        })
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload: the unit the `netstream_workload_*` series are counted by. Nodes, subnets and
/// `external` have no namespace (empty string).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub kind: WorkloadKind,
}

impl Workload {
    pub fn new(namespace: &str, name: &str, kind: WorkloadKind) -> Self {
        Workload {
            namespace: namespace.into(),
            name: name.into(),
            kind,
        }
    }

    /// Everything outside the cluster and outside every named subnet.
    pub fn external() -> Self {
        Workload::new("", "external", WorkloadKind::External)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
        }
    }
}

/// A small handle of an interned [`Workload`], valid while the index holds it (see
/// [`crate::IdentityIndex::retain_workload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadId(pub u32);

impl WorkloadId {
    /// Always `external`.
    pub const EXTERNAL: WorkloadId = WorkloadId(0);
}

/// A handle of a member (pod, service, node) of the index, for the names that only the per-flow
/// series show (pod name). `NONE` for subnets and external addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberId(pub u32);

impl MemberId {
    pub const NONE: MemberId = MemberId(u32::MAX);
}

/// What one address resolved to at one capture time: two small ids, copied on the count path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resolved {
    pub workload: WorkloadId,
    pub member: MemberId,
}

impl Resolved {
    pub const EXTERNAL: Resolved = Resolved {
        workload: WorkloadId::EXTERNAL,
        member: MemberId::NONE,
    };
}
