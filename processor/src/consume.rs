//! The consumer group side: configuration, the consume loop, offsets and rebalances.
//!
//! At-least-once: `enable.auto.offset.store=false`; a record's offset is noted only after every
//! enabled analysis has processed it (`branch`: handed it to its producer), handed to librdkafka
//! just before each commit (not per record: see `PendingOffsets`), and only those offsets are
//! committed: every `--commit-interval`, synchronously before partitions are
//! revoked (cooperative-sticky rebalances give up only the partitions that move), and on
//! shutdown. What an analysis holds in flight (the branch producer) is flushed before each
//! commit.
//! Invalid records are counted, logged at a bounded rate and committed past.
//!
//! Everything runs on one thread (the rebalance callbacks run inside `poll`), so no record can
//! be counted after its partition was revoked and before the revocation commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use netstream_runtime::http::Health;
use netstream_runtime::kafka_config;
use netstream_runtime::ratelimit::RateLimit;
use netstream_runtime::warn_limited;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::analysis::{Flush, Verdict};
use crate::clock::Clock;
use crate::state::Shared;

/// The consumer properties netstream sets; user properties override all but
/// `enable.auto.offset.store`.
pub fn default_config(brokers: &str, group: &str) -> Vec<(&'static str, String)> {
    vec![
        ("bootstrap.servers", brokers.to_string()),
        ("group.id", group.to_string()),
        ("client.id", "netstream-processor".to_string()),
        (
            "partition.assignment.strategy",
            "cooperative-sticky".to_string(),
        ),
        ("enable.auto.commit", "false".to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        ("auto.offset.reset", "earliest".to_string()),
        // Low: some brokers (tansu) hold every fetch for the full wait.
        ("fetch.wait.max.ms", "10".to_string()),
        // librdkafka >= 2.4 postpones a partition's next fetch by this much whenever its local
        // queue is above queued.min.messages; the 1 s default stalls a consumer that drains
        // faster than one fetch per second refills (measured: 0.2 M/s -> 1.5 M/s, bench/).
        ("fetch.queue.backoff.ms", "10".to_string()),
        ("enable.partition.eof", "false".to_string()),
        // Faster failover than the 45 s default: a crashed instance's partitions move after
        // 10 s (and tansu, which waits about half the session timeout before the first
        // assignment, assigns in ~5 s).
        ("session.timeout.ms", "10000".to_string()),
        ("heartbeat.interval.ms", "1000".to_string()),
        // Retry a lost broker at least every second. librdkafka's 10 s default backs off so far
        // during an outage that, once the broker is back, the consumer stays away long enough
        // for its session to time out: measured (tests/outage.rs) with a 4 s outage, counting
        // resumed 5-12 s after the broker returned, the partitions were lost and ~30-50 k
        // uncommitted records counted twice; with 1 s it resumes in under 1 s and keeps them.
        ("reconnect.backoff.max.ms", "1000".to_string()),
    ]
}

/// A consumer configuration that would break at-least-once counting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--consumer-config enable.auto.offset.store={0} is not allowed: the processor stores each offset itself after counting the record; remove it"
    )]
    OffsetStore(String),
    #[error(
        "--consumer-config enable.auto.commit=true cannot be combined with --branch-topic-prefix: offsets must only be committed after the branch producer is flushed; remove it"
    )]
    AutoCommitWithBranch,
}

/// Merges defaults, credentials from the environment and user properties, and refuses the
/// properties that would break at-least-once.
pub fn consumer_config(
    brokers: &str,
    group: &str,
    user: &[(String, String)],
    branching: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    if let Some((_, v)) = user.iter().find(|(k, _)| k == "enable.auto.offset.store") {
        return Err(ConfigError::OffsetStore(v.clone()));
    }
    let config = kafka_config::merge(&default_config(brokers, group), user, env);
    if branching
        && config
            .get("enable.auto.commit")
            .is_some_and(|v| v == "true")
    {
        return Err(ConfigError::AutoCommitWithBranch);
    }
    Ok(config)
}

use netstream_runtime::kafka_log::KafkaLog;

/// Rebalance and commit callbacks.
pub struct ConsumeContext {
    shared: Arc<Shared>,
    health: Arc<Health>,
    flushers: Vec<Arc<dyn Flush>>,
    flush_timeout: Duration,
    log: KafkaLog,
    commit_log: RateLimit,
    pending: Mutex<PendingOffsets>,
}

/// Offsets of counted records not yet handed to librdkafka: `rd_kafka_offset_store` per record
/// was 222 instructions of the consuming thread's ~2 800 (bench/results/profile-2026-11-26.md),
/// so the next offset per partition is kept here and stored just before each commit (periodic,
/// on revocation, at shutdown). The consume loop and the rebalance callbacks run on one thread,
/// so the lock is never contended.
#[derive(Debug, Default)]
struct PendingOffsets {
    topic: String,
    /// Next offset to consume, by partition; `-1` when nothing is pending.
    next: Vec<i64>,
    any: bool,
}

impl ConsumeContext {
    pub fn new(shared: Arc<Shared>, health: Arc<Health>, flush_timeout: Duration) -> Self {
        let flushers = shared.lock().flushers();
        ConsumeContext {
            shared,
            health,
            flushers,
            flush_timeout,
            log: KafkaLog::default(),
            commit_log: RateLimit::default(),
            pending: Mutex::new(PendingOffsets::default()),
        }
    }

    /// Notes that the record at `offset` of `partition` was fully processed.
    #[inline]
    fn processed(&self, msg: &BorrowedMessage<'_>) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(i) = usize::try_from(msg.partition()) else {
            return;
        };
        if p.topic.is_empty() {
            p.topic = msg.topic().to_string();
        }
        if i >= p.next.len() {
            // Once per partition, not per record.
            p.next.resize(i + 1, -1);
        }
        p.next[i] = msg.offset() + 1;
        p.any = true;
    }

    /// Hands the pending offsets to librdkafka (`store_offsets`), so the next commit includes
    /// them.
    fn store_pending(&self, consumer: &BaseConsumer<Self>) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !p.any {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        let topic = std::mem::take(&mut p.topic);
        for (partition, next) in p.next.iter_mut().enumerate() {
            if *next >= 0 {
                let _ = tpl.add_partition_offset(
                    &topic,
                    partition as i32,
                    rdkafka::Offset::Offset(*next),
                );
                *next = -1;
            }
        }
        p.topic = topic;
        p.any = false;
        drop(p);
        if let Err(error) = consumer.store_offsets(&tpl) {
            warn_limited!(self.commit_log, %error, "cannot store offsets; their records will be counted again after a restart or rebalance");
        }
    }

    /// Forgets the pending offsets (partitions lost: not ours to commit any more).
    fn drop_pending(&self) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.next.iter_mut().for_each(|n| *n = -1);
        p.any = false;
    }

    /// Records flow again (after the brokers were unreachable): ready.
    #[inline]
    fn mark_ready(&self) {
        if !self.health.ready.load(Ordering::Relaxed) {
            self.health.set_ready(true);
        }
    }

    /// Flushes what the analyses hold in flight, then commits every stored offset. Returns
    /// whether the commit was attempted.
    fn commit(&self, consumer: &BaseConsumer<Self>, mode: CommitMode) -> bool {
        for f in &self.flushers {
            if let Err(error) = f.flush(self.flush_timeout) {
                warn_limited!(self.commit_log, %error, in_flight = f.in_flight(),
                    "producer did not flush; offsets not committed this time");
                return false;
            }
        }
        self.store_pending(consumer);
        match consumer.commit_consumer_state(mode) {
            Ok(()) => true,
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => true,
            Err(error) => {
                // Async failures arrive in commit_callback; count the synchronous ones here.
                self.shared
                    .stats
                    .commit_errors
                    .fetch_add(1, Ordering::Relaxed);
                warn_limited!(self.commit_log, %error, "offset commit failed; the records will be counted again after a restart or rebalance");
                false
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

impl ClientContext for ConsumeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.health.set_ready(false);
        }
        self.log.error(error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }
}

impl ConsumerContext for ConsumeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                if consumer.assignment_lost() {
                    self.drop_pending();
                    let dropped = self.shared.lock().revoke(&revoked);
                    tracing::warn!(partitions = %partitions(tpl), flows_dropped = dropped, "partitions lost (session timed out?); their uncommitted records will be counted again by their new owner");
                    return;
                }
                let committed = self.commit(consumer, CommitMode::Sync);
                let dropped = self.shared.lock().revoke(&revoked);
                tracing::info!(partitions = %partitions(tpl), committed, flows_dropped = dropped, "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %partitions(tpl), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        let assigned = consumer.assignment().map(|t| t.count()).unwrap_or(0);
        self.shared
            .stats
            .partitions_assigned
            .store(assigned as i64, Ordering::Relaxed);
        self.health.set_ready(true);
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                self.shared
                    .stats
                    .commit_errors
                    .fetch_add(1, Ordering::Relaxed);
                warn_limited!(self.commit_log, %error, "offset commit failed; the records will be counted again after a restart or rebalance");
            }
        }
    }
}

pub type ProcessorConsumer = BaseConsumer<ConsumeContext>;

/// Creates the consumer, checks that the topic exists and subscribes.
pub fn subscribe(
    config: &BTreeMap<String, String>,
    context: ConsumeContext,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<ProcessorConsumer> {
    let mut cc = ClientConfig::new();
    for (k, v) in config {
        cc.set(k, v);
    }
    let consumer: ProcessorConsumer = cc
        .create_with_context(context)
        .context("invalid Kafka consumer configuration (check --consumer-config)")?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| {
            format!("cannot reach the Kafka brokers at {brokers} within {timeout:?}: check --brokers and that the brokers are up")
        })?;
    let parts = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if parts == 0 {
        anyhow::bail!(
            "topic {topic} does not exist on {brokers}: create it (e.g. with 6 or more partitions) or fix --topic"
        );
    }
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("cannot subscribe to {topic}"))?;
    tracing::info!(%topic, partitions = parts, "subscribed");
    Ok(consumer)
}

/// What the consume loop needs besides the consumer.
pub struct LoopOptions {
    pub commit_interval: Duration,
    /// How often idle flows are swept out.
    pub sweep_interval: Duration,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            commit_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// Consumes until `stop` is set, then commits what was counted. `heartbeat` gets the
/// milliseconds since `started` after every poll (the liveness watchdog reads it).
pub fn run(
    consumer: &ProcessorConsumer,
    shared: &Shared,
    opts: &LoopOptions,
    stop: &AtomicBool,
    heartbeat: &AtomicU64,
    started: Instant,
) {
    // The table tick, the heartbeat and the periodic work all derive from one clock read per
    // CLOCK_EVERY records, and after every empty poll: a read per record was 193 instructions of
    // ~2 800. While records keep coming the clock is at most CLOCK_EVERY polls late (1.6 s at
    // one record per 100 ms poll; far less at any real rate), which the 1 s tick, the commit
    // interval and the 60 s stall limit absorb.
    const CLOCK_EVERY: u32 = 16;
    let clock = Clock::default();
    let mut now = Instant::now();
    let mut since_clock = 0u32;
    let invalid_log = RateLimit::default();
    let poll_log = RateLimit::default();
    let mut last_commit = Instant::now();
    let mut last_sweep = Instant::now();
    let mut stored = false;
    let ctx = consumer.context();
    while !stop.load(Ordering::Relaxed) {
        let read_clock = match consumer.poll(Duration::from_millis(100)) {
            None => true,
            Some(Err(error)) => {
                warn_limited!(poll_log, %error, "consume error (librdkafka retries on its own)");
                true
            }
            Some(Ok(msg)) => {
                ctx.mark_ready();
                let result = shared.lock().record(
                    msg.partition(),
                    msg.key(),
                    msg.payload(),
                    clock.tick_at(now),
                );
                match result {
                    Ok((_, Verdict::Continue)) => {}
                    // Not fully processed (stopping): leave its offset uncommitted.
                    Ok((_, Verdict::Stop)) => break,
                    Err(invalid) => {
                        warn_limited!(invalid_log, topic = msg.topic(), partition = msg.partition(),
                            offset = msg.offset(), reason = invalid.reason.as_str(), error = %invalid,
                            "skipping invalid record (counted in netstream_records_invalid_total)");
                    }
                }
                ctx.processed(&msg);
                stored = true;
                since_clock += 1;
                since_clock >= CLOCK_EVERY
            }
        };
        if !read_clock {
            continue;
        }
        since_clock = 0;
        now = Instant::now();
        heartbeat.store(
            now.saturating_duration_since(started).as_millis() as u64,
            Ordering::Relaxed,
        );
        if stored && now.saturating_duration_since(last_commit) >= opts.commit_interval {
            if ctx.commit(consumer, CommitMode::Async) {
                stored = false;
            }
            last_commit = now;
        }
        if now.saturating_duration_since(last_sweep) >= opts.sweep_interval {
            shared.lock().maintain(clock.tick_at(now));
            last_sweep = now;
        }
    }
    ctx.commit(consumer, CommitMode::Sync);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_defaults_overrides_and_refusals() {
        let c = consumer_config(
            "b:1",
            "g",
            &user(&[("fetch.wait.max.ms", "50")]),
            false,
            |_| None,
        )
        .unwrap();
        assert_eq!(c["partition.assignment.strategy"], "cooperative-sticky");
        assert_eq!(c["enable.auto.offset.store"], "false");
        assert_eq!(c["fetch.wait.max.ms"], "50");
        assert_eq!(c["group.id"], "g");
        let err = consumer_config(
            "b:1",
            "g",
            &user(&[("enable.auto.offset.store", "true")]),
            false,
            |_| None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("remove it"));
        assert!(
            consumer_config(
                "b:1",
                "g",
                &user(&[("enable.auto.commit", "true")]),
                false,
                |_| None
            )
            .is_ok()
        );
        assert_eq!(
            consumer_config(
                "b:1",
                "g",
                &user(&[("enable.auto.commit", "true")]),
                true,
                |_| None
            ),
            Err(ConfigError::AutoCommitWithBranch)
        );
    }
}
