//! `branch`: per-protocol topics. With `--branch-topic-prefix P`, every valid record is also
//! produced, unchanged and with the same key, to `P.tcp`, `P.udp` or `P.other`.
//!
//! At-least-once carries over: the consumer flushes this producer before it commits offsets
//! (periodically and on partition revocation), so a committed record has been acknowledged on
//! its branch topic. Records the broker refuses for good are counted
//! (`netstream_processor_branch_records_total{result="failed"}`) and logged, not retried
//! forever.
//!
//! A full producer queue holds the consumer (under the engine's lock) until librdkafka takes
//! the record: backpressure to the topic, not loss; a stopping process gives up and leaves the
//! record's offset uncommitted ([`Verdict::Stop`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use netstream_runtime::kafka_config;
use netstream_runtime::ratelimit::RateLimit;
use netstream_runtime::warn_limited;
use netstream_wire::FlowKey;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::analysis::{Analysis, Families, Flush, Packet, Snapshots, Verdict};
use netstream_runtime::kafka_log::KafkaLog;
use netstream_runtime::metrics::FamilyDef;
use std::sync::atomic::AtomicU64;

pub const BRANCH_RECORDS: &str = "netstream_processor_branch_records_total";

const BRANCH_RECORDS_DEF: FamilyDef = FamilyDef::counter(
    BRANCH_RECORDS,
    "Records produced to the per-protocol branch topics, by delivery result.",
    &["result"],
);

/// Delivery results, counted by the producer's callback.
#[derive(Debug, Default)]
pub struct BranchStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

/// The branch a record goes to: 0 = tcp, 1 = udp, 2 = other (including non-IP and unparsed).
pub fn branch_of(key: &FlowKey) -> usize {
    match key.ip_proto() {
        Some(6) => 0,
        Some(17) => 1,
        _ => 2,
    }
}

/// `P.tcp`, `P.udp`, `P.other`.
pub fn topics(prefix: &str) -> [String; 3] {
    [
        format!("{prefix}.tcp"),
        format!("{prefix}.udp"),
        format!("{prefix}.other"),
    ]
}

pub struct BranchContext {
    stats: Arc<BranchStats>,
    failed_log: RateLimit,
    log: KafkaLog,
}

impl ClientContext for BranchContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }
}

impl ProducerContext for BranchContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let stats = &self.stats;
        match result {
            Ok(_) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                warn_limited!(self.failed_log, %error, "record not delivered to its branch topic (counted)");
            }
        }
    }
}

/// The branch producer.
pub struct Branch {
    producer: ThreadedProducer<BranchContext>,
    topics: [String; 3],
    refused_log: RateLimit,
    pub stats: Arc<BranchStats>,
}

/// Why a record could not be handed to the branch producer.
#[derive(Debug, thiserror::Error)]
pub enum BranchError {
    #[error("stopping while the branch producer queue was full")]
    Stopped,
    #[error("branch producer refused the record: {0}")]
    Refused(KafkaError),
}

impl Branch {
    /// Creates the producer and checks that the three topics exist.
    pub fn connect(
        brokers: &str,
        prefix: &str,
        user: &[(String, String)],
        timeout: Duration,
    ) -> anyhow::Result<Branch> {
        let defaults = [
            ("bootstrap.servers", brokers.to_string()),
            ("client.id", "netstream-processor-branch".to_string()),
            ("enable.idempotence", "true".to_string()),
            ("compression.type", "lz4".to_string()),
            ("linger.ms", "5".to_string()),
            // Same partitioner as the probe (and the Java client): a flow keeps one partition.
            ("partitioner", "murmur2_random".to_string()),
            ("message.timeout.ms", "60000".to_string()),
        ];
        let config = kafka_config::merge(&defaults, user, |k| std::env::var(k).ok());
        tracing::info!(config = %kafka_config::redacted(&config), "branch producer config");
        let mut cc = ClientConfig::new();
        for (k, v) in &config {
            cc.set(k, v);
        }
        let stats = Arc::new(BranchStats::default());
        let ctx = BranchContext {
            stats: stats.clone(),
            failed_log: RateLimit::default(),
            log: KafkaLog::default(),
        };
        let producer: ThreadedProducer<BranchContext> = cc
            .create_with_context(ctx)
            .context("invalid branch producer configuration (check --branch-producer-config)")?;
        let topics = topics(prefix);
        let md = producer
            .client()
            .fetch_metadata(None, timeout)
            .with_context(|| {
                format!(
                    "cannot reach the brokers at {brokers} for the branch topics within {timeout:?}"
                )
            })?;
        for t in &topics {
            let found = md
                .topics()
                .iter()
                .any(|m| m.name() == t && m.error().is_none() && !m.partitions().is_empty());
            if !found {
                anyhow::bail!(
                    "branch topic {t} does not exist on {brokers}: create {prefix}.tcp, {prefix}.udp and {prefix}.other, or drop --branch-topic-prefix"
                );
            }
        }
        Ok(Branch {
            producer,
            topics,
            refused_log: RateLimit::default(),
            stats,
        })
    }

    /// Hands the record to librdkafka (which copies it), waiting while its queue is full.
    pub fn send(
        &self,
        key: &FlowKey,
        raw_key: &[u8],
        value: &[u8],
        stop: &AtomicBool,
    ) -> Result<(), BranchError> {
        let topic = &self.topics[branch_of(key)];
        loop {
            let record = BaseRecord::to(topic).key(raw_key).payload(value);
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(BranchError::Stopped);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => {
                    warn_limited!(self.refused_log, %error, %topic, "branch producer refused a record");
                    return Err(BranchError::Refused(error));
                }
            }
        }
    }

    /// Waits until every record handed over so far is acknowledged (or failed).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

impl Flush for Branch {
    fn flush(&self, timeout: Duration) -> Result<(), String> {
        Branch::flush(self, timeout).map_err(|e| format!("branch producer: {e}"))
    }

    fn in_flight(&self) -> i64 {
        i64::from(Branch::in_flight(self))
    }
}

/// The `branch` analysis: stateless, every valid record to its branch topic.
pub struct BranchAnalysis {
    branch: Arc<Branch>,
    /// The process is stopping: give up waiting for a full queue.
    stop: Arc<AtomicBool>,
}

impl BranchAnalysis {
    pub fn new(branch: Arc<Branch>, stop: Arc<AtomicBool>) -> Self {
        BranchAnalysis { branch, stop }
    }
}

/// `(delivered, failed)` so far.
#[derive(Debug, Default)]
pub struct BranchSnapshot(pub u64, pub u64);

impl Analysis for BranchAnalysis {
    const NAME: &'static str = "branch";
    type Shard = ();
    type Snapshot = BranchSnapshot;

    fn shard(&mut self, _partition: i32) {}

    fn packet(&mut self, _: &mut (), pkt: &Packet<'_>) -> Verdict {
        match self
            .branch
            .send(&pkt.key, pkt.raw_key, pkt.raw_value, &self.stop)
        {
            // Refused for good: counted and logged by `send`; the record is not retried.
            Ok(()) | Err(BranchError::Refused(_)) => Verdict::Continue,
            // Not handed over: leave its offset uncommitted.
            Err(BranchError::Stopped) => Verdict::Stop,
        }
    }

    fn flusher(&self) -> Option<Arc<dyn Flush>> {
        Some(self.branch.clone())
    }

    fn snapshot(&self, _: &[()], _: &Snapshots, into: &mut BranchSnapshot) {
        let s = &self.branch.stats;
        *into = BranchSnapshot(
            s.delivered.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
        );
    }

    fn families(snap: &BranchSnapshot, _: &Snapshots, out: &mut Families) {
        out.push(BRANCH_RECORDS_DEF.by(&[("delivered", snap.0), ("failed", snap.1)]));
    }

    fn defs(&self) -> Vec<FamilyDef> {
        vec![BRANCH_RECORDS_DEF]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstream_wire::{Endpoint, KeyKind};

    #[test]
    fn routes_by_protocol() {
        let k = |kind, proto| FlowKey::new(kind, proto, Endpoint::default(), Endpoint::default()).0;
        assert_eq!(branch_of(&k(KeyKind::Ipv4, 6)), 0);
        assert_eq!(branch_of(&k(KeyKind::Ipv6, 17)), 1);
        assert_eq!(branch_of(&k(KeyKind::Ipv4, 1)), 2);
        assert_eq!(
            branch_of(&k(KeyKind::NonIp, 6)),
            2,
            "EtherType 6 is not TCP"
        );
        assert_eq!(branch_of(&FlowKey::UNPARSED), 2);
        assert_eq!(topics("b"), ["b.tcp", "b.udp", "b.other"]);
    }
}
