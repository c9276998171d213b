//! Branch per protocol: with `--branch-topic-prefix P`, every valid record is also produced,
//! unchanged and with the same key, to `P.tcp`, `P.udp` or `P.other`.
//!
//! At-least-once carries over: the consumer flushes this producer before it commits offsets
//! (periodically and on partition revocation), so a committed record has been acknowledged on
//! its branch topic. Records the broker refuses for good are counted
//! (`netstream_processor_branch_records_total{result="failed"}`) and logged, not retried
//! forever.

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

use crate::state::Shared;
use netstream_runtime::kafka_log::KafkaLog;

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
    shared: Arc<Shared>,
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
        let stats = &self.shared.stats;
        match result {
            Ok(_) => {
                stats.branch_delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                stats.branch_failed.fetch_add(1, Ordering::Relaxed);
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
        shared: Arc<Shared>,
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
        shared.stats.branch_enabled.store(true, Ordering::Relaxed);
        let ctx = BranchContext {
            shared,
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
