//! StreamAnalysis → RBAC bindings of the processors' ServiceAccount for Kubernetes enrichment.
//!
//! The ClusterRoles themselves ship with the operator (chart / `rbac/processor-clusterroles.yaml`):
//! `netstream-processor-reader` (get/list/watch pods, services, nodes, replicasets, jobs) and
//! `netstream-processor-nodes` (get/list/watch nodes). The operator only binds them:
//! - cluster-wide (`enrichment.namespaces` empty): one ClusterRoleBinding to the reader role;
//! - limited to namespaces: one RoleBinding of the reader ClusterRole in each listed namespace
//!   (a RoleBinding grants a ClusterRole's rules in its own namespace only) plus a
//!   ClusterRoleBinding to the nodes-only role, because Nodes are cluster-scoped.
//!
//! Cluster-scoped objects and objects in other namespaces cannot carry an owner reference to a
//! namespaced StreamAnalysis, so garbage collection cannot clean them up: they are found by
//! [`owner_selector`] labels instead, and a finalizer removes them when the StreamAnalysis goes.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::processor;
use crate::crd::StreamAnalysis;
use crate::labels::{Component, MANAGER, labels};

/// ClusterRole with get/list/watch on pods, services, nodes, replicasets (apps), jobs (batch).
pub const READER_ROLE: &str = "netstream-processor-reader";
/// ClusterRole with get/list/watch on nodes only.
pub const NODES_ROLE: &str = "netstream-processor-nodes";
/// Label naming the namespace of the StreamAnalysis a binding belongs to (the instance label
/// names the StreamAnalysis itself).
pub const OWNER_NAMESPACE_LABEL: &str = "netstream.dev/owner-namespace";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The bindings one StreamAnalysis needs; both empty when enrichment is off.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bindings {
    /// Cluster-scoped bindings.
    pub cluster: Vec<ClusterRoleBinding>,
    /// Namespaced bindings, one per listed namespace.
    pub namespaced: Vec<RoleBinding>,
}

/// Labels on every binding of `sa`: the standard set plus the owner's namespace.
pub fn owner_labels(sa: &StreamAnalysis) -> BTreeMap<String, String> {
    let mut l = labels(Component::Processor, &sa.name_any());
    l.insert(
        OWNER_NAMESPACE_LABEL.into(),
        sa.namespace().unwrap_or_default(),
    );
    l
}

/// Label selector matching exactly the bindings of `sa`.
pub fn owner_selector(sa: &StreamAnalysis) -> String {
    format!(
        "app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/component={},app.kubernetes.io/instance={},{OWNER_NAMESPACE_LABEL}={}",
        Component::Processor.as_str(),
        sa.name_any(),
        sa.namespace().unwrap_or_default()
    )
}

/// `<role>:<namespace>:<name>`: unique per StreamAnalysis, so two of them never share (and then
/// fight over) a binding, and recognisable in `kubectl get clusterrolebindings`.
pub fn binding_name(role: &str, sa: &StreamAnalysis) -> String {
    format!(
        "{role}:{}:{}",
        sa.namespace().unwrap_or_default(),
        sa.name_any()
    )
}

fn meta(sa: &StreamAnalysis, name: String, namespace: Option<String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace,
        labels: Some(owner_labels(sa)),
        ..ObjectMeta::default()
    }
}

fn role_ref(role: &str) -> RoleRef {
    RoleRef {
        api_group: Some(RBAC_GROUP.into()),
        kind: "ClusterRole".into(),
        name: role.into(),
    }
}

fn subjects(sa: &StreamAnalysis) -> Option<Vec<Subject>> {
    Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: processor::name(sa),
        namespace: sa.namespace(),
        api_group: None,
    }])
}

fn cluster_binding(sa: &StreamAnalysis, role: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(sa, binding_name(role, sa), None),
        role_ref: role_ref(role),
        subjects: subjects(sa),
    }
}

/// The bindings `sa` needs.
pub fn bindings(sa: &StreamAnalysis) -> Bindings {
    let e = &sa.spec.enrichment;
    if !e.enabled {
        return Bindings::default();
    }
    if e.namespaces.is_empty() {
        return Bindings {
            cluster: vec![cluster_binding(sa, READER_ROLE)],
            namespaced: Vec::new(),
        };
    }
    let mut namespaces = e.namespaces.clone();
    namespaces.sort();
    namespaces.dedup();
    Bindings {
        cluster: vec![cluster_binding(sa, NODES_ROLE)],
        namespaced: namespaces
            .into_iter()
            .map(|ns| RoleBinding {
                metadata: meta(sa, binding_name(READER_ROLE, sa), Some(ns)),
                role_ref: role_ref(READER_ROLE),
                subjects: subjects(sa),
            })
            .collect(),
    }
}
