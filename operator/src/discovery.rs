//! Which optional third-party APIs (KEDA, prometheus-operator) the cluster serves.
//!
//! A reconcile never calls a kind whose CRD is absent: a real API server answers such calls
//! with a plain-text `404 page not found`, and on a cluster without KEDA every default
//! (`mode: hpa`) StreamAnalysis used to fail forever trying to delete a ScaledObject that
//! cannot exist. Discovery endpoints are open to every authenticated user (the
//! `system:discovery` role), so this needs no RBAC rule. Answers are cached for
//! [`DISCOVERY_TTL`] so a CRD installed later is picked up within a minute.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;

use crate::error::is_not_found;

/// How long a discovery answer is reused (also the requeue interval while a CRD is missing).
pub const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// Which optional CRDs exist (decides which `owns()` watches are started and which kinds a
/// reconcile touches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionalApis {
    /// KEDA ScaledObject / TriggerAuthentication.
    pub keda: bool,
    /// prometheus-operator ServiceMonitor.
    pub service_monitor: bool,
}

impl OptionalApis {
    /// Asks API discovery. A 404 (of any body) means "not installed"; other failures are
    /// errors, so a flaky API server is retried instead of mistaken for a missing CRD.
    pub async fn discover(client: &Client) -> Result<Self, kube::Error> {
        Ok(Self {
            keda: serves(client, "keda.sh/v1alpha1", "scaledobjects").await?,
            service_monitor: serves(client, "monitoring.coreos.com/v1", "servicemonitors").await?,
        })
    }
}

async fn serves(client: &Client, group_version: &str, plural: &str) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`OptionalApis`] looked up at most once per [`DISCOVERY_TTL`].
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    last: Mutex<Option<(Instant, OptionalApis)>>,
}

impl DiscoveryCache {
    /// The cached answer, or a fresh one when it is older than the TTL.
    pub async fn get(&self, client: &Client) -> Result<OptionalApis, kube::Error> {
        if let Some((at, apis)) = *self.lock()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(apis);
        }
        let apis = OptionalApis::discover(client).await?;
        *self.lock() = Some((Instant::now(), apis));
        Ok(apis)
    }

    /// Forgets the cached answer (the next [`get`](Self::get) asks the API server).
    pub fn invalidate(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, OptionalApis)>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}
