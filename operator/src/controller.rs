//! Wires the reconcilers into kube-runtime controllers with their watches.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use netstream_runtime::http::Health;

use crate::context::Context;
use crate::crd::{NetProbe, StreamAnalysis};
use crate::desired::rbac;
use crate::desired::thirdparty::{ScaledObject, ServiceMonitor, TriggerAuthentication};
pub use crate::discovery::OptionalApis;
use crate::labels::MANAGER;
use crate::reconcile::{netprobe, streamanalysis};

/// Resources the controllers list and watch, as `(api group, plural)`; the optional ones only
/// when their CRD is installed at startup. A test runs the controllers and asserts they list
/// and watch exactly these.
pub const WATCHED: &[(&str, &str)] = &[
    ("netstream.dev", "netprobes"),
    ("netstream.dev", "streamanalyses"),
    ("apps", "daemonsets"),
    ("apps", "deployments"),
    ("", "configmaps"),
    ("", "serviceaccounts"),
    ("", "services"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("keda.sh", "scaledobjects"),
    ("keda.sh", "triggerauthentications"),
    ("monitoring.coreos.com", "servicemonitors"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("rbac.authorization.k8s.io", "rolebindings"),
];

/// Only our children are cached: the label selector keeps memory independent of how many
/// unrelated DaemonSets/Deployments the cluster has.
fn children() -> watcher::Config {
    watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"))
}

/// Runs both controllers until `shutdown` resolves.
pub async fn run<S>(ctx: Arc<Context>, optional: OptionalApis, shutdown: S)
where
    S: Future<Output = ()> + Send + Sync + Clone + 'static,
{
    run_with_health(ctx, optional, shutdown, Health::new()).await;
}

/// [`run`], setting `health` ready once the NetProbe and StreamAnalysis caches have done
/// their first full list: before that, reconciles would act on a partial view.
pub async fn run_with_health<S>(
    ctx: Arc<Context>,
    optional: OptionalApis,
    shutdown: S,
    health: Arc<Health>,
) where
    S: Future<Output = ()> + Send + Sync + Clone + 'static,
{
    let client = ctx.client.clone();

    let probes = Controller::new(
        Api::<NetProbe>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<DaemonSet>::all(client.clone()), children())
    .owns(Api::<ServiceAccount>::all(client.clone()), children());
    let probe_store = probes.store();
    let probes = probes
        .graceful_shutdown_on(shutdown.clone())
        .run(netprobe::reconcile, netprobe::error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "netprobe controller event");
            }
        });

    let mut analyses = Controller::new(
        Api::<StreamAnalysis>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Deployment>::all(client.clone()), children())
    .owns(Api::<Service>::all(client.clone()), children())
    .owns(Api::<ServiceAccount>::all(client.clone()), children())
    .owns(Api::<ConfigMap>::all(client.clone()), children())
    .owns(
        Api::<HorizontalPodAutoscaler>::all(client.clone()),
        children(),
    );
    if optional.keda {
        analyses = analyses
            .owns(Api::<ScaledObject>::all(client.clone()), children())
            .owns(
                Api::<TriggerAuthentication>::all(client.clone()),
                children(),
            );
    }
    if optional.service_monitor {
        analyses = analyses.owns(Api::<ServiceMonitor>::all(client.clone()), children());
    }
    // A NetProbe edit (e.g. new brokers) must reach the StreamAnalyses that reference it.
    let store = analyses.store();
    let analysis_store = store.clone();
    let analyses = analyses
        // Enrichment bindings cannot have owner references (cluster-scoped or in another
        // namespace); their labels name the StreamAnalysis, so deleting or editing one is
        // still repaired at once rather than at the next resync.
        .watches(
            Api::<ClusterRoleBinding>::all(client.clone()),
            children(),
            |b| binding_owner(&b),
        )
        .watches(Api::<RoleBinding>::all(client.clone()), children(), |b| {
            binding_owner(&b)
        })
        .watches(
            Api::<NetProbe>::all(client.clone()),
            watcher::Config::default(),
            move |probe| referencing(&store.state(), &probe),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(streamanalysis::reconcile, streamanalysis::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "streamanalysis controller event");
            }
        });

    let synced = async move {
        let both = futures::future::try_join(
            probe_store.wait_until_ready(),
            analysis_store.wait_until_ready(),
        );
        tokio::select! {
            // Err: a controller stopped (its store's writer is gone) before the first list.
            Ok(_) = both => {
                tracing::info!("NetProbe and StreamAnalysis caches synced; ready");
                health.set_ready(true);
            }
            _ = shutdown => {}
        }
    };

    futures::join!(probes, analyses, synced);
}

/// The StreamAnalysis an enrichment binding belongs to, from its labels.
pub fn binding_owner<K: ResourceExt>(binding: &K) -> Option<ObjectRef<StreamAnalysis>> {
    let labels = binding.labels();
    let name = labels.get("app.kubernetes.io/instance")?;
    let ns = labels.get(rbac::OWNER_NAMESPACE_LABEL)?;
    Some(ObjectRef::new(name).within(ns))
}

/// StreamAnalyses (among `all`) whose `probeRef` names `probe`.
pub fn referencing(
    all: &[Arc<StreamAnalysis>],
    probe: &NetProbe,
) -> Vec<ObjectRef<StreamAnalysis>> {
    all.iter()
        .filter(|sa| {
            sa.namespace() == probe.namespace()
                && sa
                    .spec
                    .probe_ref
                    .as_ref()
                    .is_some_and(|r| r.name == probe.name_any())
        })
        .map(|sa| ObjectRef::from(sa.as_ref()))
        .collect()
}
