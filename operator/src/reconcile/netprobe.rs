//! NetProbe reconciler.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::{RECHECK, RESYNC, apply, check_secrets, identity, patch_status, publish_transition};
use crate::conditions::{self, Problem};
use crate::context::Context;
use crate::crd::{NetProbe, NetProbeStatus};
use crate::desired::probe;
use crate::error::{Error, Result};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "netprobe";

/// Validates the spec beyond what the schema can (the BPF filter).
pub fn spec_problem(np: &NetProbe) -> Option<Problem> {
    if let Some(p) = super::name_problem(np) {
        return Some(p);
    }
    let filter = np.spec.filter.as_deref()?;
    crate::bpf::validate(filter).err().map(|msg| {
        Problem::new(
            "InvalidFilter",
            format!("spec.filter {filter:?} does not compile: {msg}; fix the BPF expression (tcpdump syntax)"),
        )
    })
}

/// Reconciles one NetProbe.
pub async fn reconcile(np: Arc<NetProbe>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = reconcile_inner(&np, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, start.elapsed());
    if result.is_ok() {
        ctx.backoff.reset(&format!(
            "{CONTROLLER}/{}/{}",
            np.namespace().unwrap_or_default(),
            np.name_any()
        ));
    }
    result
}

async fn reconcile_inner(np: &NetProbe, ctx: &Context) -> Result<Action> {
    let (ns, _uid) = identity(np)?;
    let api: Api<NetProbe> = Api::namespaced(ctx.client.clone(), &ns);
    let old = np.status.clone().unwrap_or_default();

    let problem = match spec_problem(np) {
        Some(p) => Some(p),
        None => check_secrets(ctx, &ns, &np.spec.kafka).await?,
    };
    if let Some(problem) = problem {
        // Leave the running DaemonSet alone: a bad edit must not take capture down.
        ctx.metrics.failed(CONTROLLER, problem.reason);
        let status = NetProbeStatus {
            conditions: conditions::finalize(
                &old.conditions,
                conditions::blocked(&problem),
                np.metadata.generation,
                &now(),
            ),
            observed_generation: np.metadata.generation,
            ..old.clone()
        };
        patch_status(&api, np, &status).await?;
        publish_transition(ctx, np, &old.conditions, &status.conditions).await;
        tracing::info!(probe = %np.name_any(), namespace = %ns, reason = problem.reason, "rollout blocked: {}", problem.message);
        // Secrets are not watched, so poll for them; a filter fix arrives as a spec change.
        return Ok(if problem.reason == "InvalidFilter" {
            Action::requeue(RESYNC)
        } else {
            Action::requeue(RECHECK)
        });
    }

    let sa_api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    apply(&sa_api, &probe::service_account(np))
        .await
        .map_err(Error::kube(format!(
            "applying ServiceAccount {}",
            probe::name(np)
        )))?;
    let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let ds = apply(&ds_api, &probe::daemonset(np, &ctx.defaults))
        .await
        .map_err(Error::kube(format!(
            "applying DaemonSet {}",
            probe::name(np)
        )))?;

    let (desired, ready, conds) = conditions::daemonset(&ds);
    let status = NetProbeStatus {
        desired_nodes: desired,
        ready_nodes: ready,
        observed_generation: np.metadata.generation,
        conditions: conditions::finalize(&old.conditions, conds, np.metadata.generation, &now()),
    };
    patch_status(&api, np, &status).await?;
    publish_transition(ctx, np, &old.conditions, &status.conditions).await;
    Ok(Action::requeue(RESYNC))
}

/// Error policy: retry with per-object exponential backoff.
pub fn error_policy(np: Arc<NetProbe>, err: &Error, ctx: Arc<Context>) -> Action {
    super::retry_after(CONTROLLER, np.as_ref(), err, &ctx)
}

pub(crate) fn now() -> Time {
    Time(Timestamp::now())
}
