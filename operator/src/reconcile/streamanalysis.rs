//! StreamAnalysis reconciler.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::netprobe::now;
use super::{
    RECHECK, RESYNC, apply, check_secrets, delete_owned, identity, patch_status, publish_transition,
};
use crate::conditions::{self, Problem};
use crate::context::Context;
use crate::crd::{AutoscalingMode, KafkaSpec, NetProbe, StreamAnalysis, StreamAnalysisStatus};
use crate::desired::autoscaling;
use crate::desired::processor::{self, Source};
use crate::desired::thirdparty::{ScaledObject, ServiceMonitor, TriggerAuthentication};
use crate::error::{Error, Result, is_not_found};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "streamanalysis";
/// Reason when `autoscaling.mode: keda` but KEDA is not installed.
pub const KEDA_MISSING: &str = "KedaNotInstalled";
/// Reason when a ServiceMonitor is requested but prometheus-operator is not installed.
pub const SERVICE_MONITOR_MISSING: &str = "ServiceMonitorCrdMissing";

/// Reconciles one StreamAnalysis.
pub async fn reconcile(sa: Arc<StreamAnalysis>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = reconcile_inner(&sa, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, start.elapsed());
    if result.is_ok() {
        ctx.backoff.reset(&format!(
            "{CONTROLLER}/{}/{}",
            sa.namespace().unwrap_or_default(),
            sa.name_any()
        ));
    }
    result
}

/// Effective Kafka settings: the spec's own, or those of the referenced NetProbe.
async fn resolve_kafka(
    sa: &StreamAnalysis,
    ns: &str,
    ctx: &Context,
) -> Result<Result<KafkaSpec, Problem>> {
    if let Some(k) = &sa.spec.kafka {
        return Ok(Ok(k.clone()));
    }
    let Some(r) = &sa.spec.probe_ref else {
        // Unreachable when the CRD's CEL rule is installed; still no panic on odd input.
        return Ok(Err(Problem::new(
            "InvalidSpec",
            "set exactly one of spec.kafka and spec.probeRef",
        )));
    };
    let probes: Api<NetProbe> = Api::namespaced(ctx.client.clone(), ns);
    match probes
        .get_opt(&r.name)
        .await
        .map_err(Error::kube(format!("reading NetProbe {ns}/{}", r.name)))?
    {
        Some(p) => Ok(Ok(p.spec.kafka)),
        None => Ok(Err(Problem::new(
            "ProbeNotFound",
            format!(
                "spec.probeRef names NetProbe {ns}/{} which does not exist; create it or set spec.kafka",
                r.name
            ),
        ))),
    }
}

async fn reconcile_inner(sa: &StreamAnalysis, ctx: &Context) -> Result<Action> {
    let (ns, uid) = identity(sa)?;
    let api: Api<StreamAnalysis> = Api::namespaced(ctx.client.clone(), &ns);
    let old = sa.status.clone().unwrap_or_default();
    let generation = sa.metadata.generation;

    let kafka = match resolve_kafka(sa, &ns, ctx).await? {
        Ok(k) => match check_secrets(ctx, &ns, &k).await? {
            None => Ok(k),
            Some(p) => Err(p),
        },
        Err(p) => Err(p),
    };
    let kafka = match kafka {
        Ok(k) => k,
        Err(problem) => {
            ctx.metrics.failed(CONTROLLER, problem.reason);
            let status = StreamAnalysisStatus {
                conditions: conditions::finalize(
                    &old.conditions,
                    conditions::blocked(&problem),
                    generation,
                    &now(),
                ),
                observed_generation: generation,
                consumer_group: Some(processor::consumer_group(sa)),
                ..old.clone()
            };
            patch_status(&api, sa, &status).await?;
            publish_transition(ctx, sa, &old.conditions, &status.conditions).await;
            tracing::info!(analysis = %sa.name_any(), namespace = %ns, reason = problem.reason, "rollout blocked: {}", problem.message);
            return Ok(Action::requeue(RECHECK));
        }
    };

    let partitions = ctx.partitions.partitions(&ns, &kafka).await;
    let source = Source { kafka, partitions };
    let client = &ctx.client;
    let mut problems: Vec<Problem> = Vec::new();

    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    apply(&sa_api, &processor::service_account(sa))
        .await
        .map_err(Error::kube(format!(
            "applying ServiceAccount {}",
            processor::name(sa)
        )))?;
    let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
    apply(&svc_api, &processor::service(sa))
        .await
        .map_err(Error::kube(format!(
            "applying Service {}",
            processor::service_name(sa)
        )))?;
    let dep_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let dep = apply(&dep_api, &processor::deployment(sa, &source, &ctx.defaults))
        .await
        .map_err(Error::kube(format!(
            "applying Deployment {}",
            processor::name(sa)
        )))?;

    let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let so_api: Api<ScaledObject> = Api::namespaced(client.clone(), &ns);
    let ta_api: Api<TriggerAuthentication> = Api::namespaced(client.clone(), &ns);
    match sa.spec.autoscaling.mode {
        AutoscalingMode::Hpa => {
            apply(&hpa_api, &autoscaling::hpa(sa, &source))
                .await
                .map_err(Error::kube(format!(
                    "applying HorizontalPodAutoscaler {}",
                    processor::name(sa)
                )))?;
            // Switching from keda: remove what we created before. Missing CRD = nothing to do.
            delete_owned(&so_api, &processor::name(sa), &uid)
                .await
                .map_err(Error::kube("removing the previous ScaledObject"))?;
            delete_owned(&ta_api, &autoscaling::trigger_authentication_name(sa), &uid)
                .await
                .map_err(Error::kube("removing the previous TriggerAuthentication"))?;
        }
        AutoscalingMode::Keda => {
            // KEDA refuses a ScaledObject whose target already has an HPA, so drop ours first.
            delete_owned(&hpa_api, &processor::name(sa), &uid)
                .await
                .map_err(Error::kube("removing the previous HorizontalPodAutoscaler"))?;
            match apply_keda(sa, &source, &uid, &so_api, &ta_api).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => problems.push(Problem::new(
                    KEDA_MISSING,
                    "spec.autoscaling.mode is keda but the KEDA CRDs (scaledobjects.keda.sh) are not installed; install KEDA or use mode: hpa. The processors run unscaled meanwhile",
                )),
                Err(e) => return Err(Error::kube("applying KEDA ScaledObject")(e)),
            }
        }
    }

    let sm_api: Api<ServiceMonitor> = Api::namespaced(client.clone(), &ns);
    match processor::service_monitor(sa) {
        Some(sm) => match apply(&sm_api, &sm).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => problems.push(Problem::new(
                SERVICE_MONITOR_MISSING,
                "spec.serviceMonitor.enabled is true but the prometheus-operator CRD servicemonitors.monitoring.coreos.com is not installed; install it or disable the ServiceMonitor",
            )),
            Err(e) => return Err(Error::kube("applying ServiceMonitor")(e)),
        },
        None => delete_owned(&sm_api, &processor::name(sa), &uid)
            .await
            .map_err(Error::kube("removing the previous ServiceMonitor"))?,
    }
    for p in &problems {
        ctx.metrics.failed(CONTROLLER, p.reason);
    }

    let (replicas, ready, conds) = conditions::deployment(&dep, &problems);
    let status = StreamAnalysisStatus {
        replicas,
        ready_replicas: ready,
        partitions: source.partitions,
        topic: Some(source.kafka.topic.clone()),
        consumer_group: Some(processor::consumer_group(sa)),
        observed_generation: generation,
        conditions: conditions::finalize(&old.conditions, conds, generation, &now()),
    };
    patch_status(&api, sa, &status).await?;
    publish_transition(ctx, sa, &old.conditions, &status.conditions).await;
    // Third-party CRDs are not watched, so look again soon when one was missing.
    Ok(Action::requeue(if problems.is_empty() {
        RESYNC
    } else {
        RECHECK
    }))
}

async fn apply_keda(
    sa: &StreamAnalysis,
    source: &Source,
    uid: &str,
    so_api: &Api<ScaledObject>,
    ta_api: &Api<TriggerAuthentication>,
) -> Result<(), kube::Error> {
    match autoscaling::trigger_authentication(sa, source) {
        Some(ta) => {
            apply(ta_api, &ta).await?;
        }
        // Credentials were removed from the spec: drop the stale TriggerAuthentication.
        None => delete_owned(ta_api, &autoscaling::trigger_authentication_name(sa), uid).await?,
    }
    apply(so_api, &autoscaling::scaled_object(sa, source)).await?;
    Ok(())
}

/// Error policy: retry with per-object exponential backoff.
pub fn error_policy(sa: Arc<StreamAnalysis>, err: &Error, ctx: Arc<Context>) -> Action {
    super::retry_after(CONTROLLER, sa.as_ref(), err, &ctx)
}
