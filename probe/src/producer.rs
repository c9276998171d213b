//! The Kafka side: an rdkafka producer configured for throughput and no loss (idempotence,
//! acks=all, lz4, batching), with delivery results counted per capture source.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use netstream_runtime::kafka_config;
use netstream_runtime::kafka_log::KafkaLog;
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
    /// Records librdkafka accepted (each ends as delivered or failed).
    pub enqueued: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

/// Counts delivery reports. The delivery opaque is the capture source's index.
pub struct DeliveryCounter {
    totals: Arc<DeliveryTotals>,
    delivered: IntCounter,
    failed_by_source: Vec<IntCounter>,
    log_limit: RateLimit,
    kafka_log: KafkaLog,
}

impl ClientContext for DeliveryCounter {
    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka_log.error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.kafka_log.log(level, fac, message);
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
    /// The producer hit a fatal error and refuses every record from now on.
    Fatal,
}

pub struct ProbeProducer {
    inner: ThreadedProducer<DeliveryCounter>,
    topic: String,
    pub totals: Arc<DeliveryTotals>,
    log_limit: RateLimit,
    /// How long librdkafka may hold records without reporting any of them (see [`StallWatch`]).
    pub stall_limit: Duration,
}

/// Notices a producer that holds records but delivers none of them for longer than
/// librdkafka's own timeouts. Measured after a broker lost its state (tansu SIGKILLed and
/// restarted on the same port): librdkafka's idempotent producer sometimes never delivers again
/// although the broker is back and accepts other clients; it only times records out (with
/// message.timeout.ms=5000: 2000 every 5 s, for minutes), or with the defaults held
/// --queue-size records for 10+ minutes without reporting anything. A replay would crawl or
/// wait forever and a live capture would drop everything, so the probe stops and exits
/// non-zero to be restarted with a fresh producer. The cost: a broker outage longer than the
/// limit (by default 120 s + 30 s + 5 s) also ends the probe, which then retries from scratch.
#[derive(Debug)]
pub struct StallWatch {
    limit: Duration,
    delivered: u64,
    since: Instant,
}

impl StallWatch {
    pub fn new(limit: Duration) -> Self {
        StallWatch {
            limit,
            delivered: 0,
            since: Instant::now(),
        }
    }

    /// `delivered`: records acknowledged so far; `in_flight`: records held. True once nothing
    /// was delivered for `limit` while records were held.
    pub fn stalled(&mut self, delivered: u64, in_flight: i32, now: Instant) -> bool {
        if delivered != self.delivered || in_flight <= 0 {
            self.delivered = delivered;
            self.since = now;
            return false;
        }
        now.saturating_duration_since(self.since) > self.limit
    }
}

/// A working producer delivers or times out every record within message.timeout.ms, plus a
/// request already in flight (request.timeout.ms); a margin on top.
fn stall_limit(config: &std::collections::BTreeMap<String, String>) -> Duration {
    let ms = |k: &str, default: u64| {
        config
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    Duration::from_millis(ms("message.timeout.ms", 300_000) + ms("request.timeout.ms", 30_000))
        + Duration::from_secs(5)
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
        // Retry a lost broker at least every second: with librdkafka's 10 s default a replay
        // resumed up to ~7 s after the broker came back (processor/tests/outage.rs), and a live
        // probe drops (queue_full) for all of that time.
        ("reconnect.backoff.max.ms", "1000".into()),
        // librdkafka producers ask brokers to create unknown topics; tansu does (with its own
        // partition count), so a mistyped --topic, or a broker that lost its topics, silently
        // got a new topic instead of the "create it first" error at start.
        ("allow.auto.create.topics", "false".into()),
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
            kafka_log: KafkaLog::default(),
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
            stall_limit: stall_limit(&config),
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
                Ok(()) => {
                    self.totals.enqueued.fetch_add(1, Ordering::Relaxed);
                    return Enqueued::Ok;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if bp == Backpressure::Drop || stop() {
                        return Enqueued::QueueFull;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                // An idempotent producer cannot go on after e.g. the broker forgot its producer
                // id (a broker that lost its state, measured with tansu restarted): librdkafka
                // refuses every record from then on, so the caller must stop.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::Fatal), _)) => {
                    return Enqueued::Fatal;
                }
                Err((error, _)) => {
                    warn_limited!(self.log_limit, %error, "record refused by the Kafka producer (counted as produce_error)");
                    return Enqueued::Failed;
                }
            }
        }
    }

    /// Records queued or in flight: accepted and not yet reported delivered or failed.
    /// (librdkafka's own out-queue length also counts protocol requests and pending reports,
    /// so it could exceed --queue-size by a few.)
    pub fn in_flight(&self) -> i32 {
        let t = &self.totals;
        let done = t.delivered.load(Ordering::Relaxed) + t.failed.load(Ordering::Relaxed);
        let pending = t.enqueued.load(Ordering::Relaxed).saturating_sub(done);
        i32::try_from(pending).unwrap_or(i32::MAX)
    }

    /// Records acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.totals.delivered.load(Ordering::Relaxed)
    }

    /// librdkafka's fatal error, if one happened: the producer is unusable after it.
    pub fn fatal_error(&self) -> Option<String> {
        self.inner
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code}: {reason}"))
    }

    /// Waits up to `timeout` for every queued record to be acknowledged (or to fail).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            // After a fatal error the queued records never complete: do not wait for them.
            if self.fatal_error().is_some() {
                return self.inner.in_flight_count() == 0;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_is_no_delivery_while_records_are_held_for_longer_than_the_limit() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = StallWatch::new(s(10));
        assert!(!w.stalled(5, 100, t0));
        assert!(!w.stalled(5, 100, t0 + s(10)));
        assert!(w.stalled(5, 100, t0 + s(11)), "nothing delivered for 11 s");
        assert!(!w.stalled(6, 100, t0 + s(12)), "a delivery is progress");
        assert!(
            !w.stalled(6, 0, t0 + s(30)),
            "an empty queue is idle, not stalled"
        );
        assert!(!w.stalled(6, 5, t0 + s(35)));
        assert!(w.stalled(6, 5, t0 + s(46)));
    }

    #[test]
    fn stall_limit_follows_the_timeouts() {
        let c = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(stall_limit(&c(&[])), Duration::from_secs(335));
        assert_eq!(
            stall_limit(&c(&[
                ("message.timeout.ms", "5000"),
                ("request.timeout.ms", "5000")
            ])),
            Duration::from_secs(15)
        );
    }
}
