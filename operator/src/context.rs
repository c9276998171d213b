//! Shared state of the controllers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::crd::KafkaSpec;
use crate::defaults::Defaults;
use crate::discovery::DiscoveryCache;
use crate::labels::MANAGER;
use crate::metrics::Metrics;

/// Where topic partition counts come from: [`crate::partitions::KafkaPartitions`] in the
/// operator, fixed counts or none in tests.
pub trait PartitionSource: Send + Sync {
    /// Partition count of `kafka.topic`: `Ok(None)` when this source does not know, `Err`
    /// with what to fix when looking it up failed.
    fn partitions<'a>(
        &'a self,
        namespace: &'a str,
        kafka: &'a KafkaSpec,
    ) -> BoxFuture<'a, Result<Option<i32>, String>>;
}

/// Reports every partition count as unknown (`status.partitions` stays unset).
#[derive(Clone, Copy, Debug, Default)]
pub struct UnknownPartitions;

impl PartitionSource for UnknownPartitions {
    fn partitions<'a>(
        &'a self,
        _: &'a str,
        _: &'a KafkaSpec,
    ) -> BoxFuture<'a, Result<Option<i32>, String>> {
        Box::pin(async { Ok(None) })
    }
}

/// Fixed partition counts per topic (tests, or clusters where the count is known upfront).
#[derive(Clone, Debug, Default)]
pub struct StaticPartitions(pub HashMap<String, i32>);

impl PartitionSource for StaticPartitions {
    fn partitions<'a>(
        &'a self,
        _: &'a str,
        kafka: &'a KafkaSpec,
    ) -> BoxFuture<'a, Result<Option<i32>, String>> {
        let p = self.0.get(&kafka.topic).copied();
        Box::pin(async move { Ok(p) })
    }
}

/// Per-object exponential backoff for failed reconciles: 5s, 10s, 20s … capped at 5 minutes,
/// reset by the next success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn fail(&self, key: &str) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        delay(*n)
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Delay after `failures` consecutive failures.
pub fn delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(5u64.saturating_mul(1u64 << exp)).min(Duration::from_secs(300))
}

/// Everything a reconcile needs.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Events on the reconciled objects.
    pub recorder: Recorder,
    /// Default images.
    pub defaults: Defaults,
    /// Operator metrics.
    pub metrics: Metrics,
    /// Topic partition counts.
    pub partitions: Arc<dyn PartitionSource>,
    /// Retry backoff of failed reconciles.
    pub backoff: Backoff,
    /// Which optional third-party APIs the cluster serves.
    pub apis: DiscoveryCache,
}

impl Context {
    /// A context with an event reporter named after the operator; `instance` identifies this
    /// replica (pod name) in Events.
    pub fn new(
        client: Client,
        defaults: Defaults,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            metrics,
            partitions: Arc::new(UnknownPartitions),
            backoff: Backoff::default(),
            apis: DiscoveryCache::default(),
        }
    }

    /// Replaces the partition source.
    pub fn with_partitions(mut self, p: Arc<dyn PartitionSource>) -> Self {
        self.partitions = p;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let b = Backoff::default();
        let seen: Vec<u64> = (0..9).map(|_| b.fail("ns/a").as_secs()).collect();
        assert_eq!(seen, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.fail("ns/b").as_secs(), 5, "keys are independent");
        b.reset("ns/a");
        assert_eq!(b.fail("ns/a").as_secs(), 5);
        assert_eq!(delay(u32::MAX), Duration::from_secs(300));
    }
}
