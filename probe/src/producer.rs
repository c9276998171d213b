//! The Kafka side: an rdkafka producer configured for throughput and no loss (idempotence,
//! acks=all, lz4, batching), with delivery results counted per capture source.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use netstream_runtime::kafka_config;
use netstream_runtime::ratelimit::RateLimit;
use netstream_runtime::warn_limited;
use prometheus::IntCounter;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ProducerContext, ThreadedProducer,
};

/// Delivery outcomes, shared between the producer's poll thread and the capture loops.
#[derive(Debug, Default)]
pub struct DeliveryTotals {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

/// Counts delivery reports. The delivery opaque is the capture source's index.
pub struct DeliveryCounter {
    totals: Arc<DeliveryTotals>,
    delivered: IntCounter,
    failed_by_source: Vec<IntCounter>,
    log_limit: RateLimit,
    client_log_limit: RateLimit,
    librdkafka_log_limit: RateLimit,
}

impl ClientContext for DeliveryCounter {
    fn error(&self, error: KafkaError, reason: &str) {
        warn_limited!(self.client_log_limit, %error, reason, "kafka client error (librdkafka retries on its own)");
    }

    /// librdkafka repeats connection failures many times a second while a broker is down: one
    /// line per interval is enough, the `error` callback above says the same.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
                warn_limited!(
                    self.librdkafka_log_limit,
                    facility = fac,
                    detail = message,
                    "librdkafka"
                );
            }
            _ => tracing::debug!(facility = fac, detail = message, "librdkafka"),
        }
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, source: usize) {
        match result {
            Ok(_) => {
                self.totals.delivered.fetch_add(1, Ordering::Relaxed);
                self.delivered.inc();
            }
            Err((error, _)) => {
                self.totals.failed.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = self.failed_by_source.get(source) {
                    c.inc();
                }
                warn_limited!(self.log_limit, %error, "record not delivered to Kafka (counted as produce_error)");
            }
        }
    }
}

/// What to do when the local queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backpressure {
    /// Live capture: drop the packet and count it; never stall the capture loop.
    Drop,
    /// Replay: wait for room.
    Wait,
}

/// Outcome of handing one record to the producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Ok,
    QueueFull,
    Failed,
}

pub struct ProbeProducer {
    inner: ThreadedProducer<DeliveryCounter>,
    topic: String,
    pub totals: Arc<DeliveryTotals>,
    log_limit: RateLimit,
}

/// Defaults chosen for a packet firehose: big lz4 batches, a short linger, no loss or
/// duplication (idempotence implies acks=all and bounded in-flight requests), and the Java
/// client's murmur2 partitioner so other Kafka clients agree on key → partition.
pub fn default_config(brokers: &str, queue_size: u32) -> Vec<(&'static str, String)> {
    vec![
        ("bootstrap.servers", brokers.to_string()),
        ("client.id", "netstream-probe".into()),
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        ("compression.type", "lz4".into()),
        ("linger.ms", "5".into()),
        ("batch.num.messages", "10000".into()),
        ("batch.size", "1000000".into()),
        ("partitioner", "murmur2_random".into()),
        ("queue.buffering.max.messages", queue_size.to_string()),
        ("queue.buffering.max.kbytes", "262144".into()),
        ("message.timeout.ms", "120000".into()),
    ]
}

impl ProbeProducer {
    /// Creates the producer and checks that the broker answers and the topic exists, so a bad
    /// address or topic is one clear error at start instead of a stream of delivery failures.
    pub fn connect(
        brokers: &str,
        topic: &str,
        queue_size: u32,
        user: &[(String, String)],
        delivered: IntCounter,
        failed_by_source: Vec<IntCounter>,
        connect_timeout: Duration,
    ) -> anyhow::Result<ProbeProducer> {
        let config = kafka_config::merge(&default_config(brokers, queue_size), user, |k| {
            std::env::var(k).ok()
        });
        tracing::info!(config = %kafka_config::redacted(&config), "kafka producer config");
        let mut cc = ClientConfig::new();
        for (k, v) in &config {
            cc.set(k, v);
        }
        let totals = Arc::new(DeliveryTotals::default());
        let ctx = DeliveryCounter {
            totals: totals.clone(),
            delivered,
            failed_by_source,
            log_limit: RateLimit::default(),
            client_log_limit: RateLimit::default(),
            librdkafka_log_limit: RateLimit::default(),
        };
        let inner: ThreadedProducer<DeliveryCounter> = cc
            .create_with_context(ctx)
            .context("invalid Kafka producer configuration (check --producer-config)")?;
        check_topic(inner.client(), brokers, topic, connect_timeout)?;
        Ok(ProbeProducer {
            inner,
            topic: topic.to_string(),
            totals,
            log_limit: RateLimit::default(),
        })
    }

    /// Hands one record to librdkafka (which copies it). With [`Backpressure::Wait`] it waits
    /// for room until `stop` says to give up.
    #[inline]
    pub fn send(
        &self,
        source: usize,
        key: &[u8],
        value: &[u8],
        bp: Backpressure,
        stop: &dyn Fn() -> bool,
    ) -> Enqueued {
        loop {
            let record = BaseRecord::with_opaque_to(&self.topic, source)
                .key(key)
                .payload(value);
            match self.inner.send(record) {
                Ok(()) => return Enqueued::Ok,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if bp == Backpressure::Drop || stop() {
                        return Enqueued::QueueFull;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((error, _)) => {
                    warn_limited!(self.log_limit, %error, "record refused by the Kafka producer (counted as produce_error)");
                    return Enqueued::Failed;
                }
            }
        }
    }

    /// Records queued or in flight.
    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }

    /// Waits up to `timeout` for every queued record to be acknowledged (or to fail).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = self.inner.flush(left.min(Duration::from_millis(500)));
            if self.inner.in_flight_count() == 0 {
                return true;
            }
            if left.is_zero() {
                return false;
            }
        }
    }
}

/// Fetches the topic's metadata: fails with a message naming the fix when the broker cannot be
/// reached or the topic does not exist.
pub fn check_topic<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let md = client.fetch_metadata(Some(topic), timeout).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kafka broker at {brokers} within {timeout:?}: {e}; check --brokers (NETSTREAM_BROKERS) and that the broker is running"
        )
    })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        bail!("the broker at {brokers} returned no metadata for topic {topic:?}");
    };
    if let Some(err) = t.error() {
        bail!(
            "topic {topic:?} is not usable on {brokers}: {}; create it first (e.g. `tansu topic create {topic} --partitions 6` or kafka-topics.sh --create) or pass --topic",
            RDKafkaErrorCode::from(err)
        );
    }
    if t.partitions().is_empty() {
        bail!("topic {topic:?} on {brokers} has no partitions; create it first or pass --topic");
    }
    Ok(t.partitions().len())
}

/// A plain producer with the same configuration, for benchmarks comparing against a bare client.
pub fn bare_producer(
    brokers: &str,
    queue_size: u32,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    let mut cc = ClientConfig::new();
    for (k, v) in default_config(brokers, queue_size) {
        cc.set(k, v);
    }
    Ok(cc.create()?)
}
