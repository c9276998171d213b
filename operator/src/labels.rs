//! Standard `app.kubernetes.io/*` labels and owner references on every owned object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

/// Field manager for every server-side apply the operator makes.
pub const MANAGER: &str = "netstream-operator";
/// Value of `app.kubernetes.io/part-of`.
pub const PART_OF: &str = "netstream";

/// Which netstream component an object belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// Packet-capture probe (NetProbe).
    Probe,
    /// Flow processor (StreamAnalysis).
    Processor,
}

impl Component {
    /// `app.kubernetes.io/name` value, which is also the binary name.
    pub fn app_name(self) -> &'static str {
        match self {
            Component::Probe => "netstream-probe",
            Component::Processor => "netstream-processor",
        }
    }

    /// `app.kubernetes.io/component` value and child-name suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Probe => "probe",
            Component::Processor => "processor",
        }
    }
}

/// Labels that select the pods of one CR. Kept minimal because workload selectors are
/// immutable: adding a label here later would break updates of existing objects.
pub fn selector_labels(component: Component, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            component.app_name().to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            instance.to_string(),
        ),
    ])
}

/// Full label set of every owned object and pod template.
pub fn labels(component: Component, instance: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(component, instance);
    l.insert(
        "app.kubernetes.io/component".into(),
        component.as_str().into(),
    );
    l.insert("app.kubernetes.io/part-of".into(), PART_OF.into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l
}

/// Metadata for a child object named `name` owned (as controller) by `owner`.
pub fn child_meta<K>(owner: &K, component: Component, name: String) -> ObjectMeta
where
    K: Resource<DynamicType = ()>,
{
    ObjectMeta {
        name: Some(name),
        namespace: owner.namespace(),
        labels: Some(labels(component, &owner.name_any())),
        owner_references: owner_reference(owner).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// Controller owner reference, so children are garbage-collected with the CR and their
/// changes are routed back to it by `owns()` watches. `None` when the owner has no uid yet
/// (only in hand-built test objects; the reconciler rejects those before building).
pub fn owner_reference<K>(owner: &K) -> Option<OwnerReference>
where
    K: Resource<DynamicType = ()>,
{
    owner.controller_owner_ref(&())
}
