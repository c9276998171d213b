//! The input of the index, whatever its source (the Kubernetes API, a static file): members with
//! addresses and a lifetime, and the updates that add, change and remove them.

use std::net::IpAddr;

use crate::identity::Workload;

/// What kind of object owns the addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    Pod,
    Service,
    Node,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::Pod => "pod",
            MemberKind::Service => "service",
            MemberKind::Node => "node",
        }
    }
}

/// One pod (not host-network: those resolve to their node), service or node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Unique and stable for the object's life (`metadata.uid`); a new pod with the same name is
    /// another member.
    pub uid: String,
    pub kind: MemberKind,
    /// Empty for nodes.
    pub namespace: String,
    /// Pod, service or node name.
    pub name: String,
    /// The workload its traffic is counted under.
    pub workload: Workload,
    /// The node a pod runs on (empty if unknown or not a pod).
    pub node: String,
    pub ips: Vec<IpAddr>,
    /// Capture-clock time (ns since the epoch) from which the addresses are this member's: for a
    /// pod, when its sandbox got its network; 0 when unknown (then it owns them from the start of
    /// time until another member takes them).
    pub from_ns: u64,
    /// When the addresses stopped being this member's (pod finished or deleted), if known.
    pub until_ns: Option<u64>,
    /// When the source observed this state (capture clock): an address the member no longer
    /// lists stops being its at this time.
    pub seen_ns: u64,
}

/// A change to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Adds a member or replaces what is known of it (same uid).
    Upsert(Member),
    /// The member is gone since `at_ns`.
    Remove { uid: String, at_ns: u64 },
    /// The complete set of members of `kind` (after a list or a watch restart): members of that
    /// kind not in it are gone since `at_ns`; the others are upserted.
    Resync {
        kind: MemberKind,
        members: Vec<Member>,
        at_ns: u64,
    },
}
