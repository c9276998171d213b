//! Reconcilers: read the world, apply the desired state with server-side apply, report status.

pub mod netprobe;
pub mod streamanalysis;

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::conditions::{self, Problem};
use crate::context::Context;
use crate::crd::KafkaSpec;
use crate::error::{Error, Result};
use crate::kafka;
use crate::labels::MANAGER;

/// Periodic re-sync even when nothing changed, to repair drift the watches missed.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Retry interval while waiting on something the operator does not watch (Secrets,
/// third-party CRDs).
pub const RECHECK: Duration = Duration::from_secs(60);

/// Server-side apply parameters: one field manager, forced so the operator wins conflicts on
/// the fields it owns.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Server-side applies `obj` (which must carry its name).
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(&name, &apply_params(), &Patch::Apply(obj)).await
}

/// Deletes `name` if it exists and is controlled by `owner_uid`; never touches objects the
/// operator does not own. A missing object or a missing CRD counts as deleted.
pub async fn delete_owned<K>(api: &Api<K>, name: &str, owner_uid: &str) -> Result<(), kube::Error>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let Some(obj) = get_opt(api, name).await? else {
        return Ok(());
    };
    let owned = obj
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == owner_uid);
    if owned {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if crate::error::is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `Api::get_opt` that also takes the plain-text 404 of an uninstalled CRD (or an unknown
/// resource) for "absent", see [`crate::error::is_not_found`].
pub async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    match api.get(name).await {
        Ok(obj) => Ok(Some(obj)),
        Err(e) if crate::error::is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks that every Secret the Kafka settings reference exists and has the keys. Returns a
/// [`Problem`] for the user to fix, or an error for API failures.
pub async fn check_secrets(
    ctx: &Context,
    namespace: &str,
    kafka: &KafkaSpec,
) -> Result<Option<Problem>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    for (name, keys) in kafka::referenced_secrets(kafka) {
        let secret = get_opt(&api, &name)
            .await
            .map_err(Error::kube(format!("reading Secret {namespace}/{name}")))?;
        let Some(secret) = secret else {
            return Ok(Some(Problem::new(
                "SecretNotFound",
                format!(
                    "Secret {namespace}/{name} referenced by spec.kafka does not exist; create it or fix the reference"
                ),
            )));
        };
        // `stringData` is write-only; the API server always returns keys under `data`.
        let present = |k: &str| secret.data.as_ref().is_some_and(|d| d.contains_key(k));
        let missing: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| !present(k))
            .collect();
        if !missing.is_empty() {
            return Ok(Some(Problem::new(
                "SecretKeyMissing",
                format!(
                    "Secret {namespace}/{name} has no key(s) {}; add them or fix the key names in spec.kafka",
                    missing.join(", ")
                ),
            )));
        }
    }
    Ok(None)
}

/// Patches the status subresource with server-side apply under the operator's manager.
pub async fn patch_status<K>(api: &Api<K>, obj: &K, status: &impl Serialize) -> Result<()>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&obj.name_any(), &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube(format!(
            "updating status of {} {}",
            K::kind(&()),
            obj.name_any()
        )))?;
    Ok(())
}

/// Publishes an Event when the `Ready` condition changes status or reason, so `kubectl
/// describe` tells the story without an Event on every resync. Event failures are logged,
/// not fatal: they must not block reconciliation.
pub async fn publish_transition<K>(ctx: &Context, obj: &K, old: &[Condition], new: &[Condition])
where
    K: Resource<DynamicType = ()>,
{
    let Some(now) = conditions::find(new, conditions::READY) else {
        return;
    };
    let before = conditions::find(old, conditions::READY);
    if before.is_some_and(|b| b.status == now.status && b.reason == now.reason) {
        return;
    }
    let type_ = if now.status == "True" {
        EventType::Normal
    } else {
        EventType::Warning
    };
    let ev = Event {
        type_,
        reason: now.reason.clone(),
        note: Some(now.message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing event failed");
    }
}

/// Reason of a name that child objects cannot carry (see [`crate::crd::name_problem`]).
pub const INVALID_NAME: &str = "InvalidName";

/// A [`Problem`] when `obj`'s name cannot name its children (admitted before the CRD rule).
pub fn name_problem<K: Resource>(obj: &K) -> Option<Problem> {
    crate::crd::name_problem(&obj.name_any()).map(|m| Problem::new(INVALID_NAME, m))
}

/// Namespace and uid of a namespaced object, which owning children requires.
pub fn identity<K>(obj: &K) -> Result<(String, String)>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    let what = format!("{} {}", K::kind(&()), obj.name_any());
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::MissingMetadata(what.clone(), "namespace"))?;
    let uid = obj.uid().ok_or(Error::MissingMetadata(what, "uid"))?;
    Ok((ns, uid))
}

/// Error policy shared by both controllers: log, count, and retry with per-object backoff.
pub fn retry_after<K>(controller: &'static str, obj: &K, err: &Error, ctx: &Context) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let key = format!(
        "{controller}/{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    );
    let delay = ctx.backoff.fail(&key);
    ctx.metrics.failed(controller, err.metric_reason());
    tracing::warn!(%controller, object = %key, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
