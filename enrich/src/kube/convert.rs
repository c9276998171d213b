//! Kubernetes objects -> index members, on arrival: only the fields the index needs are kept.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::owners::{Lookup, OwnerKind, Owners};
use crate::identity::{Workload, WorkloadKind};
use crate::member::{Member, MemberKind};

/// Nanoseconds since the epoch (clamped to 0 before it).
pub(crate) fn time_ns(t: &Time) -> u64 {
    u64::try_from(t.0.as_nanosecond().max(0)).unwrap_or(u64::MAX)
}

/// A pod's ReplicaSet or Job that was not known when the pod was converted: kept so the pod can
/// be re-labelled once it arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerRef {
    pub kind: OwnerKind,
    pub uid: Box<str>,
    pub name: Box<str>,
}

/// A converted pod: its member, and the owner its workload still waits for.
#[derive(Clone, Debug)]
pub(crate) struct PodMember {
    pub member: Member,
    pub waiting: Option<OwnerRef>,
}

/// The workload of a pod owned by `owner`, if the owner is known.
pub(crate) fn owned_workload(
    namespace: &str,
    owner: &OwnerRef,
    owners: &Owners,
) -> Option<Workload> {
    let Lookup::Known(top) = owners.lookup(&owner.uid) else {
        return None;
    };
    Some(match (owner.kind, top) {
        (OwnerKind::ReplicaSet, Some(d)) => Workload::new(namespace, d, WorkloadKind::Deployment),
        (OwnerKind::ReplicaSet, None) => {
            Workload::new(namespace, &owner.name, WorkloadKind::ReplicaSet)
        }
        (OwnerKind::Job, Some(c)) => Workload::new(namespace, c, WorkloadKind::CronJob),
        (OwnerKind::Job, None) => Workload::new(namespace, &owner.name, WorkloadKind::Job),
    })
}

/// The best guess while the owner is unknown: a Deployment's ReplicaSet is named
/// `<deployment>-<pod-template-hash>` and its pods carry that hash as a label.
fn guessed_workload(namespace: &str, owner: &OwnerRef, template_hash: Option<&str>) -> Workload {
    match owner.kind {
        OwnerKind::ReplicaSet => {
            let deployment = template_hash
                .filter(|h| !h.is_empty())
                .and_then(|h| owner.name.strip_suffix(h))
                .and_then(|n| n.strip_suffix('-'))
                .filter(|n| !n.is_empty());
            match deployment {
                Some(d) => Workload::new(namespace, d, WorkloadKind::Deployment),
                None => Workload::new(namespace, &owner.name, WorkloadKind::ReplicaSet),
            }
        }
        OwnerKind::Job => Workload::new(namespace, &owner.name, WorkloadKind::Job),
    }
}

/// A pod's workload: its controller (ownerReference with `controller: true`), followed up to
/// the Deployment or CronJob. A pod without a controller is its own workload (kind `pod`), and
/// so is a pod whose controller is of a kind we do not name (a static pod's Node, a
/// ReplicationController, an operator's custom resource such as Strimzi's StrimziPodSet):
/// labelling those by the pod keeps the kind honest (`pod`), at the cost of one workload per
/// pod for them.
fn pod_workload(pod: &Pod, rs: &Owners, jobs: &Owners) -> (Workload, Option<OwnerRef>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let own = || Workload::new(ns, name, WorkloadKind::Pod);
    let Some(ctrl) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return (own(), None);
    };
    let kind = match ctrl.kind.as_str() {
        "ReplicaSet" => OwnerKind::ReplicaSet,
        "Job" => OwnerKind::Job,
        "StatefulSet" => {
            return (
                Workload::new(ns, &ctrl.name, WorkloadKind::StatefulSet),
                None,
            );
        }
        "DaemonSet" => return (Workload::new(ns, &ctrl.name, WorkloadKind::DaemonSet), None),
        _ => return (own(), None),
    };
    let owner = OwnerRef {
        kind,
        uid: ctrl.uid.as_str().into(),
        name: ctrl.name.as_str().into(),
    };
    let owners = match kind {
        OwnerKind::ReplicaSet => rs,
        OwnerKind::Job => jobs,
    };
    match owned_workload(ns, &owner, owners) {
        Some(w) => (w, None),
        None => {
            let hash = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"))
                .map(String::as_str);
            (guessed_workload(ns, &owner, hash), Some(owner))
        }
    }
}

fn parse_ips<'a>(candidates: impl Iterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for s in candidates {
        match s.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => tracing::debug!(address = s, "ignoring an unparseable address"),
        }
    }
    ips
}

fn pod_ips(status: &PodStatus) -> Vec<IpAddr> {
    match status.pod_ips.as_deref() {
        Some(list) if !list.is_empty() => parse_ips(list.iter().map(|p| p.ip.as_str())),
        _ => parse_ips(status.pod_ip.as_deref().into_iter()),
    }
}

fn condition_time(status: &PodStatus, type_: &str, value: &str) -> Option<u64> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == value)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(time_ns)
}

/// When the pod's addresses became its: when its sandbox got its network
/// (`PodReadyToStartContainers`), else its start, else its creation.
fn pod_from(pod: &Pod) -> Option<u64> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| condition_time(s, "PodReadyToStartContainers", "True"))
        .or_else(|| status.and_then(|s| s.start_time.as_ref()).map(time_ns))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(time_ns))
}

fn statuses(status: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
    status.container_statuses.iter().flatten()
}

fn latest_finish(status: &PodStatus) -> Option<u64> {
    statuses(status)
        .chain(status.init_container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(time_ns)
        .max()
}

/// When the pod released its addresses, if it did: it is terminal (Succeeded/Failed), or it is
/// being deleted and all its containers have terminated. `now` when the time is not given.
pub(crate) fn pod_until(pod: &Pod, now_ns: u64) -> Option<u64> {
    let status = pod.status.as_ref()?;
    let terminal = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if terminal {
        return Some(
            latest_finish(status)
                .or_else(|| condition_time(status, "Ready", "False"))
                .unwrap_or(now_ns)
                .min(now_ns),
        );
    }
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let mut containers = statuses(status).peekable();
    let all_terminated = containers.peek().is_some()
        && containers.all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()));
    if deleting && all_terminated {
        return Some(latest_finish(status).unwrap_or(now_ns).min(now_ns));
    }
    None
}

/// What a pod event means for the index.
// Consumed right away, never stored.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum PodChange {
    /// The pod has addresses of its own: upsert it.
    Member(PodMember),
    /// It has no addresses (any more) and is finished: end it (a no-op if never added).
    Gone { uid: String, at_ns: u64 },
    /// Nothing to index: host-network (its traffic carries its node's addresses, which the
    /// node's member names), not yet given an address, or without a uid.
    Skip,
}

/// Converts a pod. `rs` and `jobs` are the owners of the pod's watch scope.
pub(crate) fn pod(pod: &Pod, now_ns: u64, rs: &Owners, jobs: &Owners) -> PodChange {
    let Some(uid) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return PodChange::Skip;
    };
    if pod
        .spec
        .as_ref()
        .is_some_and(|s| s.host_network == Some(true))
    {
        return PodChange::Skip;
    }
    let ips = pod.status.as_ref().map(pod_ips).unwrap_or_default();
    let until = pod_until(pod, now_ns);
    if ips.is_empty() {
        return match until {
            Some(at_ns) => PodChange::Gone {
                uid: uid.to_string(),
                at_ns,
            },
            None => PodChange::Skip,
        };
    }
    let (workload, waiting) = pod_workload(pod, rs, jobs);
    PodChange::Member(PodMember {
        member: Member {
            uid: uid.to_string(),
            kind: MemberKind::Pod,
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            workload,
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            ips,
            from_ns: pod_from(pod).unwrap_or(now_ns),
            until_ns: until,
            seen_ns: now_ns,
        },
        waiting,
    })
}

/// When a deleted pod released its addresses: its final state's, else now.
pub(crate) fn pod_deleted_at(pod: &Pod, now_ns: u64) -> u64 {
    pod_until(pod, now_ns).unwrap_or(now_ns)
}

/// A Service with ClusterIPs (headless ones, `None`, have none and are skipped).
pub(crate) fn service(svc: &Service, now_ns: u64) -> Option<Member> {
    let uid = svc.metadata.uid.as_deref().filter(|u| !u.is_empty())?;
    let spec = svc.spec.as_ref()?;
    let candidates: Vec<&str> = match spec.cluster_ips.as_deref() {
        Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    let ips = parse_ips(
        candidates
            .into_iter()
            .filter(|s| !s.is_empty() && *s != "None"),
    );
    if ips.is_empty() {
        return None;
    }
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    Some(Member {
        uid: uid.to_string(),
        kind: MemberKind::Service,
        workload: Workload::new(&namespace, &name, WorkloadKind::Service),
        namespace,
        name,
        node: String::new(),
        ips,
        from_ns: svc.metadata.creation_timestamp.as_ref().map_or(0, time_ns),
        until_ns: None,
        seen_ns: now_ns,
    })
}

/// A node, by its InternalIP and ExternalIP addresses.
pub(crate) fn node(node: &Node, now_ns: u64) -> Option<Member> {
    let uid = node.metadata.uid.as_deref().filter(|u| !u.is_empty())?;
    let ips = parse_ips(
        node.status
            .as_ref()
            .and_then(|s| s.addresses.as_deref())
            .unwrap_or_default()
            .iter()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .map(|a| a.address.as_str()),
    );
    if ips.is_empty() {
        return None;
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    Some(Member {
        uid: uid.to_string(),
        kind: MemberKind::Node,
        namespace: String::new(),
        workload: Workload::new("", &name, WorkloadKind::Node),
        node: name.clone(),
        name,
        ips,
        from_ns: node.metadata.creation_timestamp.as_ref().map_or(0, time_ns),
        until_ns: None,
        seen_ns: now_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_900_000_000_000_000_000;

    fn pod_json(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn owners() -> (Owners, Owners) {
        (
            Owners::new(OwnerKind::ReplicaSet),
            Owners::new(OwnerKind::Job),
        )
    }

    #[test]
    fn the_template_hash_names_the_deployment_until_the_replicaset_is_known() {
        let (rs, jobs) = owners();
        let p = pod_json(json!({
            "metadata": {"name": "web-7d9f-abcde", "namespace": "shop", "uid": "p1",
                "labels": {"pod-template-hash": "7d9f"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d9f", "uid": "rs1", "controller": true}]},
            "status": {"podIP": "10.0.0.1", "startTime": "2027-01-15T08:00:00Z"}
        }));
        let PodChange::Member(m) = pod(&p, NOW, &rs, &jobs) else {
            panic!("a member")
        };
        assert_eq!(
            m.member.workload,
            Workload::new("shop", "web", WorkloadKind::Deployment)
        );
        assert_eq!(m.waiting.as_ref().map(|o| &*o.uid), Some("rs1"));
        assert_eq!(
            m.member.from_ns,
            time_ns(&Time("2027-01-15T08:00:00Z".parse().unwrap()))
        );
        // Without the label the ReplicaSet itself is the best name.
        let mut p2 = p.clone();
        p2.metadata.labels = None;
        let PodChange::Member(m2) = pod(&p2, NOW, &rs, &jobs) else {
            panic!("a member")
        };
        assert_eq!(m2.member.workload.kind, WorkloadKind::ReplicaSet);
        assert_eq!(&*m2.member.workload.name, "web-7d9f");
    }

    #[test]
    fn terminal_and_deleted_pods_end_at_their_last_container_exit() {
        let p = pod_json(json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u"},
            "status": {"phase": "Succeeded", "podIP": "10.0.0.1",
                "containerStatuses": [
                    {"name": "c1", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0, "finishedAt": "2027-01-15T08:00:10Z"}}},
                    {"name": "c2", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0, "finishedAt": "2027-01-15T08:00:20Z"}}}]}
        }));
        let t20 = time_ns(&Time("2027-01-15T08:00:20Z".parse().unwrap()));
        assert_eq!(pod_until(&p, NOW), Some(t20));
        // Being deleted with a container still running: the address is still its.
        let running = pod_json(json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u",
                "deletionTimestamp": "2027-01-15T08:00:00Z"},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                "containerStatuses": [
                    {"name": "c1", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                     "state": {"running": {}}}]}
        }));
        assert_eq!(pod_until(&running, NOW), None);
        assert_eq!(pod_deleted_at(&running, NOW), NOW);
    }

    #[test]
    fn headless_services_and_host_network_pods_are_not_members() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "n", "uid": "s"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}
        }))
        .unwrap();
        assert!(service(&svc, NOW).is_none());
        let (rs, jobs) = owners();
        let p = pod_json(json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u"},
            "spec": {"hostNetwork": true, "nodeName": "n1", "containers": []},
            "status": {"podIP": "192.168.0.10"}
        }));
        assert!(matches!(pod(&p, NOW, &rs, &jobs), PodChange::Skip));
    }
}
