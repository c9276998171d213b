//! StreamAnalysis reconciler.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};

use super::netprobe::now;
use super::{
    RECHECK, RESYNC, apply, check_secrets, delete_owned, get_opt, identity, patch_status,
    publish_transition,
};
use crate::conditions::{self, Problem};
use crate::context::Context;
use crate::crd::{AutoscalingMode, KafkaSpec, NetProbe, StreamAnalysis, StreamAnalysisStatus};
use crate::desired::processor::{self, Source};
use crate::desired::thirdparty::{ScaledObject, ServiceMonitor, TriggerAuthentication};
use crate::desired::{autoscaling, rbac};
use crate::error::{Error, Result, is_not_found};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "streamanalysis";
/// Reason when `autoscaling.mode: keda` but KEDA is not installed.
pub const KEDA_MISSING: &str = "KedaNotInstalled";
/// Reason when a ServiceMonitor is requested but prometheus-operator is not installed.
pub const SERVICE_MONITOR_MISSING: &str = "ServiceMonitorCrdMissing";
/// Reason when `spec.enrichment.namespaces` names a namespace that does not exist.
pub const NAMESPACE_MISSING: &str = "EnrichmentNamespaceNotFound";
/// Reason when `spec.enrichment.subnetLabels` holds a range that does not parse.
pub const INVALID_SUBNET: &str = "InvalidSubnetLabel";

/// Reason when `spec.analyses` holds something the processors would refuse.
pub const INVALID_ANALYSES: &str = "InvalidAnalyses";

/// Reason when the topic's partition count cannot be read from Kafka.
pub const PARTITIONS_UNKNOWN: &str = "KafkaMetadataUnavailable";

/// Finalizer that removes the enrichment RBAC bindings (which garbage collection cannot reach)
/// before a StreamAnalysis is deleted.
pub const FINALIZER: &str = "netstream.dev/rbac-cleanup";

/// Reconciles one StreamAnalysis: adds the finalizer first, then applies; on deletion removes
/// the bindings and then the finalizer.
pub async fn reconcile(sa: Arc<StreamAnalysis>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = match identity(sa.as_ref()) {
        Ok((ns, _)) => {
            let api: Api<StreamAnalysis> = Api::namespaced(ctx.client.clone(), &ns);
            let what = format!("StreamAnalysis {ns}/{}", sa.name_any());
            finalizer(&api, FINALIZER, sa.clone(), |event| async {
                match event {
                    FinalizerEvent::Apply(sa) => reconcile_inner(&sa, &ctx).await,
                    FinalizerEvent::Cleanup(sa) => cleanup(&sa, &ctx).await,
                }
            })
            .await
            .map_err(|e| Error::from_finalizer(&what, e))
        }
        Err(e) => Err(e),
    };
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
    match super::get_opt(&probes, &r.name)
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

    let kafka = match kafka.and_then(|k| {
        match super::name_problem(sa)
            .or_else(|| invalid_subnet(sa))
            .or_else(|| invalid_analyses(sa))
        {
            Some(p) => Err(p),
            None => Ok(k),
        }
    }) {
        Ok(k) => k,
        Err(problem) => return blocked(sa, ctx, &api, &ns, &old, problem).await,
    };

    let mut problems: Vec<Problem> = Vec::new();
    let partitions = match ctx.partitions.partitions(&ns, &kafka).await {
        Ok(p) => p,
        Err(message) => {
            problems.push(Problem::new(
                PARTITIONS_UNKNOWN,
                format!("{message}; maxReplicas is not capped at the partition count meanwhile"),
            ));
            old.partitions
        }
    };
    let source = Source { kafka, partitions };
    let client = &ctx.client;

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
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    apply(&cm_api, &processor::config_map(sa))
        .await
        .map_err(Error::kube(format!(
            "applying ConfigMap {}",
            processor::config_map_name(sa)
        )))?;
    // Before the Deployment, so new pods start with the permissions their watches need.
    problems.extend(apply_bindings(sa, client).await?);
    let dep_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let dep_name = processor::name(sa);
    let existed = get_opt(&dep_api, &dep_name)
        .await
        .map_err(Error::kube(format!("reading Deployment {dep_name}")))?
        .is_some();
    let mut dep = apply(&dep_api, &processor::deployment(sa, &source, &ctx.defaults))
        .await
        .map_err(Error::kube(format!("applying Deployment {dep_name}")))?;
    if !existed {
        dep = apply_initial_replicas(&dep_api, sa, &source)
            .await
            .map_err(Error::kube(format!(
                "setting the initial replicas of Deployment {dep_name}"
            )))?;
    }

    // Kinds whose CRD is absent are never called: a real API server answers them with a
    // plain-text 404 (see `crate::discovery`).
    let optional = ctx.apis.get(client).await.map_err(Error::kube(
        "discovering the KEDA and prometheus-operator APIs",
    ))?;
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
            // Switching from keda: remove what we created before.
            if optional.keda {
                delete_owned(&so_api, &processor::name(sa), &uid)
                    .await
                    .map_err(Error::kube("removing the previous ScaledObject"))?;
                delete_owned(&ta_api, &autoscaling::trigger_authentication_name(sa), &uid)
                    .await
                    .map_err(Error::kube("removing the previous TriggerAuthentication"))?;
            }
        }
        AutoscalingMode::Keda => {
            // KEDA refuses a ScaledObject whose target already has an HPA, so drop ours first.
            delete_owned(&hpa_api, &processor::name(sa), &uid)
                .await
                .map_err(Error::kube("removing the previous HorizontalPodAutoscaler"))?;
            let keda_missing = || {
                Problem::new(
                    KEDA_MISSING,
                    "spec.autoscaling.mode is keda but the KEDA CRDs (scaledobjects.keda.sh) are not installed; install KEDA or use mode: hpa. The processors run unscaled meanwhile",
                )
            };
            if !optional.keda {
                problems.push(keda_missing());
            } else {
                match apply_keda(sa, &source, &uid, &so_api, &ta_api).await {
                    Ok(()) => {}
                    // Uninstalled since discovery looked.
                    Err(e) if is_not_found(&e) => {
                        ctx.apis.invalidate();
                        problems.push(keda_missing());
                    }
                    Err(e) => return Err(Error::kube("applying KEDA ScaledObject")(e)),
                }
            }
        }
    }

    let sm_api: Api<ServiceMonitor> = Api::namespaced(client.clone(), &ns);
    let sm_missing = || {
        Problem::new(
            SERVICE_MONITOR_MISSING,
            "spec.serviceMonitor.enabled is true but the prometheus-operator CRD servicemonitors.monitoring.coreos.com is not installed; install it or disable the ServiceMonitor",
        )
    };
    match (processor::service_monitor(sa), optional.service_monitor) {
        (Some(sm), true) => match apply(&sm_api, &sm).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                ctx.apis.invalidate();
                problems.push(sm_missing());
            }
            Err(e) => return Err(Error::kube("applying ServiceMonitor")(e)),
        },
        (Some(_), false) => problems.push(sm_missing()),
        (None, true) => delete_owned(&sm_api, &processor::name(sa), &uid)
            .await
            .map_err(Error::kube("removing the previous ServiceMonitor"))?,
        (None, false) => {}
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

/// Reports a spec problem instead of rolling out; the running objects stay as they are.
async fn blocked(
    sa: &StreamAnalysis,
    ctx: &Context,
    api: &Api<StreamAnalysis>,
    ns: &str,
    old: &StreamAnalysisStatus,
    problem: Problem,
) -> Result<Action> {
    let generation = sa.metadata.generation;
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
    patch_status(api, sa, &status).await?;
    publish_transition(ctx, sa, &old.conditions, &status.conditions).await;
    tracing::info!(analysis = %sa.name_any(), namespace = %ns, reason = problem.reason, "rollout blocked: {}", problem.message);
    Ok(Action::requeue(RECHECK))
}

/// The first `spec.enrichment.subnetLabels` entry the processor would refuse, checked with the
/// processor's own parser (netstream-enrich): the CRD pattern checks IPv6 only for shape, and
/// a bad range would make every processor exit at startup.
fn invalid_analyses(sa: &StreamAnalysis) -> Option<Problem> {
    processor::config_problem(sa).map(|m| Problem::new(INVALID_ANALYSES, m))
}

fn invalid_subnet(sa: &StreamAnalysis) -> Option<Problem> {
    let e = &sa.spec.enrichment;
    if !e.enabled {
        return None;
    }
    e.subnet_labels.iter().find_map(|s| {
        netstream_enrich::subnet::SubnetLabel::new(&s.cidr, &s.name)
            .err()
            .map(|err| {
                Problem::new(
                    INVALID_SUBNET,
                    format!("spec.enrichment.subnetLabels: {err}"),
                )
            })
    })
}

/// Applies the enrichment bindings of `sa` and deletes its bindings that are no longer wanted
/// (namespaces removed from the list, enrichment switched off, cluster-wide <-> namespaced).
/// A listed namespace that does not exist is a problem to report, not an error to retry: the
/// processors still roll out and watch the namespaces that do exist.
async fn apply_bindings(sa: &StreamAnalysis, client: &kube::Client) -> Result<Vec<Problem>> {
    let want = rbac::bindings(sa);
    let crb_api: Api<ClusterRoleBinding> = Api::all(client.clone());
    for b in &want.cluster {
        apply(&crb_api, b).await.map_err(Error::kube(format!(
            "applying ClusterRoleBinding {}",
            b.name_any()
        )))?;
    }
    let mut missing = Vec::new();
    for b in &want.namespaced {
        let ns = b.namespace().unwrap_or_default();
        let rb_api: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
        match apply(&rb_api, b).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => missing.push(ns),
            Err(e) => {
                return Err(Error::kube(format!(
                    "applying RoleBinding {ns}/{}",
                    b.name_any()
                ))(e));
            }
        }
    }
    let keep_cluster: BTreeSet<String> = want.cluster.iter().map(|b| b.name_any()).collect();
    let keep_ns: BTreeSet<(String, String)> = want
        .namespaced
        .iter()
        .map(|b| (b.namespace().unwrap_or_default(), b.name_any()))
        .collect();
    prune_bindings(sa, client, &keep_cluster, &keep_ns).await?;
    Ok(if missing.is_empty() {
        Vec::new()
    } else {
        vec![Problem::new(
            NAMESPACE_MISSING,
            format!(
                "spec.enrichment.namespaces lists namespace(s) that do not exist: {}; their workloads are not labelled until they are created (checked again every minute)",
                missing.join(", ")
            ),
        )]
    })
}

/// Deletes the bindings labelled as belonging to `sa` except those to keep.
async fn prune_bindings(
    sa: &StreamAnalysis,
    client: &kube::Client,
    keep_cluster: &BTreeSet<String>,
    keep_ns: &BTreeSet<(String, String)>,
) -> Result<()> {
    let lp = ListParams::default().labels(&rbac::owner_selector(sa));
    let crb_api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let existing = crb_api
        .list(&lp)
        .await
        .map_err(Error::kube("listing ClusterRoleBindings"))?;
    for b in existing.items {
        let name = b.name_any();
        if !keep_cluster.contains(&name) {
            delete_ignoring_missing(&crb_api, &name)
                .await
                .map_err(Error::kube(format!("deleting ClusterRoleBinding {name}")))?;
            tracing::info!(analysis = %sa.name_any(), binding = %name, "removed stale ClusterRoleBinding");
        }
    }
    let existing = Api::<RoleBinding>::all(client.clone())
        .list(&lp)
        .await
        .map_err(Error::kube("listing RoleBindings"))?;
    for b in existing.items {
        let (ns, name) = (b.namespace().unwrap_or_default(), b.name_any());
        if !keep_ns.contains(&(ns.clone(), name.clone())) {
            let api: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
            delete_ignoring_missing(&api, &name)
                .await
                .map_err(Error::kube(format!("deleting RoleBinding {ns}/{name}")))?;
            tracing::info!(analysis = %sa.name_any(), binding = %format!("{ns}/{name}"), "removed stale RoleBinding");
        }
    }
    Ok(())
}

async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: kube::Resource + serde::de::DeserializeOwned + Clone + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletion: everything namespaced is garbage-collected through owner references; only the
/// bindings need removing before the finalizer lets the object go.
async fn cleanup(sa: &StreamAnalysis, ctx: &Context) -> Result<Action> {
    prune_bindings(sa, &ctx.client, &BTreeSet::new(), &BTreeSet::new()).await?;
    tracing::info!(analysis = %sa.name_any(), namespace = %sa.namespace().unwrap_or_default(), "removed enrichment bindings; releasing the finalizer");
    Ok(Action::await_change())
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

/// Field manager that sets `spec.replicas` once, when the operator creates the Deployment.
/// The main manager never applies `replicas` (dropping a field from an applied config deletes
/// it, which would reset the Deployment to 1 on every reconcile and fight the autoscaler);
/// this one never applies again, and the HPA or KEDA takes the field over with its first
/// scale.
pub const INITIAL_REPLICAS_MANAGER: &str = "netstream-operator-initial-replicas";

/// Starts a new processor Deployment at `minReplicas` (capped as the autoscaler caps it)
/// instead of the API default of 1, which in KEDA mode without KEDA would stay forever.
async fn apply_initial_replicas(
    api: &Api<Deployment>,
    sa: &StreamAnalysis,
    source: &Source,
) -> Result<Deployment, kube::Error> {
    let (min, _) = processor::replica_bounds(sa, source.partitions);
    let body = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": processor::name(sa)},
        "spec": {"replicas": min},
    });
    let params = kube::api::PatchParams::apply(INITIAL_REPLICAS_MANAGER).force();
    api.patch(
        &processor::name(sa),
        &params,
        &kube::api::Patch::Apply(&body),
    )
    .await
}

/// Error policy: retry with per-object exponential backoff.
pub fn error_policy(sa: Arc<StreamAnalysis>, err: &Error, ctx: Arc<Context>) -> Action {
    super::retry_after(CONTROLLER, sa.as_ref(), err, &ctx)
}
