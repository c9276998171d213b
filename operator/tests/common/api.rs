//! The fake API's paths for the netstream namespace, a reconcile context on a fresh fake, and
//! storing CRs in it: what the reconcile and fault tests share.

use std::sync::Arc;

use netstream_operator::context::Context;
use netstream_operator::crd::{NetProbe, StreamAnalysis};
use netstream_operator::defaults::Defaults;
use netstream_operator::metrics::Metrics;
use serde_json::Value;

use super::fake::Fake;

pub const NP_BASE: &str = "/apis/netstream.dev/v1alpha1/namespaces/netstream/netprobes";
pub const SA_BASE: &str = "/apis/netstream.dev/v1alpha1/namespaces/netstream/streamanalyses";
pub const DS_BASE: &str = "/apis/apps/v1/namespaces/netstream/daemonsets";
pub const DEP_BASE: &str = "/apis/apps/v1/namespaces/netstream/deployments";
pub const HPA_BASE: &str = "/apis/autoscaling/v2/namespaces/netstream/horizontalpodautoscalers";
pub const SO_BASE: &str = "/apis/keda.sh/v1alpha1/namespaces/netstream/scaledobjects";
pub const TA_BASE: &str = "/apis/keda.sh/v1alpha1/namespaces/netstream/triggerauthentications";
pub const SM_BASE: &str = "/apis/monitoring.coreos.com/v1/namespaces/netstream/servicemonitors";
pub const SECRET_BASE: &str = "/api/v1/namespaces/netstream/secrets";
pub const CM_BASE: &str = "/api/v1/namespaces/netstream/configmaps";

/// A reconcile context whose client talks to a new fake API server.
pub fn setup() -> (Arc<Context>, Fake) {
    let (client, fake) = Fake::start();
    let ctx = Context::new(
        client,
        Defaults::default(),
        Metrics::new().unwrap(),
        Some("test-0".into()),
    );
    (Arc::new(ctx), fake)
}

/// [`setup`] on a cluster without the optional CRDs (KEDA, prometheus-operator), as a plain
/// cluster is.
pub fn setup_bare() -> (Arc<Context>, Fake) {
    let (ctx, fake) = setup();
    fake.missing_group("keda.sh");
    fake.missing_group("monitoring.coreos.com");
    (ctx, fake)
}

pub fn v<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

pub fn store_np(fake: &Fake, np: &NetProbe) {
    fake.put(
        &format!("{NP_BASE}/{}", np.metadata.name.as_ref().unwrap()),
        v(np),
    );
}

pub fn store_sa(fake: &Fake, sa: &StreamAnalysis) {
    fake.put(
        &format!("{SA_BASE}/{}", sa.metadata.name.as_ref().unwrap()),
        v(sa),
    );
}
