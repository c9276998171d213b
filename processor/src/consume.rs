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
//! Threads: with one lane (`--threads 1`, or an analysis that keeps one lane) everything runs
//! on the consumer thread. With N lanes each assigned partition is placed on the least loaded
//! lane, its messages split into their own librdkafka queue (`split_partition_queue`) and
//! consumed by that lane's worker thread, which alone writes the lane's engine; the consumer
//! thread keeps polling the main queue (rebalances, callbacks, and any message that was queued
//! before its partition was split). A revocation first takes the partitions' queues back from
//! their workers (each acknowledges once it has processed what it took), then commits, then
//! drops the shards: no record is counted after its partition was revoked and before the
//! revocation commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use netstream_runtime::http::Health;
use netstream_runtime::kafka_config;
use netstream_runtime::ratelimit::RateLimit;
use netstream_runtime::warn_limited;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::analysis::{Flush, Verdict};
use crate::clock::Clock;
use crate::engine::Engine;
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
    /// One per lane.
    pending: Vec<Mutex<PendingOffsets>>,
    lanes: Mutex<Lanes>,
    /// Set by [`subscribe`]: splitting a partition's queue needs the consumer's `Arc`.
    consumer: OnceLock<Weak<ProcessorConsumer>>,
}

/// Offsets of counted records not yet handed to librdkafka: `rd_kafka_offset_store` per record
/// was 222 instructions of the consuming thread's ~2 800 (bench/results/profile-2026-11-26.md),
/// so the next offset per partition is kept here (one per lane: only that lane's thread and,
/// rarely, the consumer thread write it) and stored just before each commit (periodic, on
/// revocation, at shutdown).
#[derive(Debug, Default)]
struct PendingOffsets {
    topic: String,
    /// Next offset to consume, by partition; `-1` when nothing is pending.
    next: Vec<i64>,
    any: bool,
}

impl PendingOffsets {
    #[inline]
    fn note(&mut self, topic: &str, partition: i32, offset: i64) {
        let Ok(i) = usize::try_from(partition) else {
            return;
        };
        if self.topic.is_empty() {
            self.topic = topic.to_string();
        }
        if i >= self.next.len() {
            // Once per partition, not per record.
            self.next.resize(i + 1, -1);
        }
        // Never backwards: a message left in the main queue from before its partition's split
        // may be processed after later ones.
        self.next[i] = self.next[i].max(offset + 1);
        self.any = true;
    }
}

/// Where each assigned partition is processed, and the lanes' worker mailboxes.
#[derive(Default)]
struct Lanes {
    /// Lane of partition `p` at index `p`.
    lane_of: Vec<Option<usize>>,
    /// Partitions per lane.
    load: Vec<usize>,
    /// One per lane, when the lanes have worker threads (none with one lane).
    workers: Vec<Sender<Command>>,
}

/// A message to a lane's worker.
enum Command {
    /// Consume this partition's queue.
    Add(i32, PartitionQueue<ConsumeContext>),
    /// Give these partitions' queues back; acknowledge once done with what was taken.
    Remove(Vec<i32>, Sender<()>),
    /// A queue became non-empty.
    Wake,
}

impl Lanes {
    fn lane(&self, partition: i32) -> usize {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.lane_of.get(p).copied().flatten())
            .unwrap_or(0)
    }
}

impl ConsumeContext {
    pub fn new(shared: Arc<Shared>, health: Arc<Health>, flush_timeout: Duration) -> Self {
        let flushers = shared.lock().flushers();
        let lanes = shared.lanes();
        ConsumeContext {
            shared,
            health,
            flushers,
            flush_timeout,
            log: KafkaLog::default(),
            commit_log: RateLimit::default(),
            pending: (0..lanes).map(|_| Mutex::default()).collect(),
            lanes: Mutex::new(Lanes {
                load: vec![0; lanes],
                ..Lanes::default()
            }),
            consumer: OnceLock::new(),
        }
    }

    fn pending(&self, lane: usize) -> std::sync::MutexGuard<'_, PendingOffsets> {
        self.pending[lane.min(self.pending.len() - 1)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that the record `msg` was fully processed on `lane`.
    #[inline]
    fn processed(&self, lane: usize, msg: &BorrowedMessage<'_>) {
        self.pending(lane)
            .note(msg.topic(), msg.partition(), msg.offset());
    }

    /// Hands the pending offsets of every lane to librdkafka (`store_offsets`), so the next
    /// commit includes them.
    fn store_pending(&self, consumer: &BaseConsumer<Self>) {
        let mut tpl = TopicPartitionList::new();
        for lane in 0..self.pending.len() {
            let mut p = self.pending(lane);
            if !p.any {
                continue;
            }
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
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(error) = consumer.store_offsets(&tpl) {
            warn_limited!(self.commit_log, %error, "cannot store offsets; their records will be counted again after a restart or rebalance");
        }
    }

    /// Forgets the pending offsets (partitions lost: not ours to commit any more).
    fn drop_pending(&self) {
        for lane in 0..self.pending.len() {
            let mut p = self.pending(lane);
            p.next.iter_mut().for_each(|n| *n = -1);
            p.any = false;
        }
    }

    /// Places newly assigned partitions on the least loaded lanes and, when the lanes have
    /// workers, hands each its partition's own queue.
    fn place(&self, tpl: &TopicPartitionList) {
        let consumer = self.consumer.get().and_then(Weak::upgrade);
        let mut lanes = self.lanes();
        for e in tpl.elements() {
            let Ok(p) = usize::try_from(e.partition()) else {
                continue;
            };
            let lane = (0..lanes.load.len())
                .min_by_key(|&l| lanes.load[l])
                .unwrap_or(0);
            if p >= lanes.lane_of.len() {
                lanes.lane_of.resize(p + 1, None);
            }
            if lanes.lane_of[p].is_some() {
                continue;
            }
            lanes.lane_of[p] = Some(lane);
            lanes.load[lane] += 1;
            let Some(worker) = lanes.workers.get(lane) else {
                continue;
            };
            let queue = consumer
                .as_ref()
                .and_then(|c| c.split_partition_queue(e.topic(), e.partition()));
            match queue {
                Some(mut q) => {
                    tracing::debug!(
                        partition = e.partition(),
                        lane,
                        "partition placed on a lane"
                    );
                    let wake = worker.clone();
                    q.set_nonempty_callback(move || {
                        let _ = wake.send(Command::Wake);
                    });
                    let _ = worker.send(Command::Add(e.partition(), q));
                }
                // Its messages keep arriving on the main queue; the consumer thread processes
                // them on the lane.
                None => tracing::warn!(
                    partition = e.partition(),
                    "cannot split the partition's queue; the consumer thread processes it"
                ),
            }
        }
    }

    /// Takes `partitions` back from their lanes: their workers stop consuming them and
    /// acknowledge once what they took is processed.
    fn release(&self, partitions: &[i32]) {
        let mut lanes = self.lanes();
        let mut by_lane: Vec<Vec<i32>> = vec![Vec::new(); lanes.load.len()];
        for &p in partitions {
            let Ok(i) = usize::try_from(p) else { continue };
            if let Some(lane) = lanes.lane_of.get_mut(i).and_then(Option::take) {
                lanes.load[lane] = lanes.load[lane].saturating_sub(1);
                by_lane[lane].push(p);
            }
        }
        let mut acks = Vec::new();
        for (lane, ps) in by_lane.into_iter().enumerate() {
            if let (false, Some(worker)) = (ps.is_empty(), lanes.workers.get(lane)) {
                let (tx, rx) = mpsc::channel();
                if worker.send(Command::Remove(ps, tx)).is_ok() {
                    acks.push(rx);
                }
            }
        }
        drop(lanes);
        for ack in acks {
            if ack.recv_timeout(Duration::from_secs(30)).is_err() {
                tracing::warn!(
                    "a lane did not give back its revoked partitions within 30s; records it still processes are counted again by their new owner"
                );
            }
        }
    }

    /// The lane that processes `partition`.
    #[inline]
    fn lane_of(&self, partition: i32) -> usize {
        if self.pending.len() == 1 {
            return 0;
        }
        self.lanes().lane(partition)
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

impl ConsumeContext {
    /// Drops the shards of `partitions` in every lane.
    fn revoke(&self, partitions: &[i32]) -> usize {
        (0..self.shared.lanes())
            .map(|lane| self.shared.lane(lane).revoke(partitions))
            .sum()
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
                self.release(&revoked);
                if consumer.assignment_lost() {
                    self.drop_pending();
                    let dropped = self.revoke(&revoked);
                    tracing::warn!(partitions = %partitions(tpl), flows_dropped = dropped, "partitions lost (session timed out?); their uncommitted records will be counted again by their new owner");
                    return;
                }
                let committed = self.commit(consumer, CommitMode::Sync);
                let dropped = self.revoke(&revoked);
                tracing::info!(partitions = %partitions(tpl), committed, flows_dropped = dropped, "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %partitions(tpl), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.place(tpl);
        }
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

fn partitions_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<usize> {
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
    Ok(parts)
}

/// The lanes' engines must share nothing but what they all read: `workloads` (one table of
/// workload series for the whole processor) keeps one lane. A lane without partitions costs a
/// sleeping thread.
pub fn lanes_for(threads: usize, analyses: &[String]) -> usize {
    if analyses.iter().any(|a| a == "workloads") {
        1
    } else {
        threads.max(1)
    }
}

/// Creates the consumer, checks that the topic exists and subscribes.
pub fn subscribe(
    config: &BTreeMap<String, String>,
    context: ConsumeContext,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Arc<ProcessorConsumer>> {
    let mut cc = ClientConfig::new();
    for (k, v) in config {
        cc.set(k, v);
    }
    let consumer: Arc<ProcessorConsumer> = Arc::new(
        cc.create_with_context(context)
            .context("invalid Kafka consumer configuration (check --consumer-config)")?,
    );
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    let parts = partitions_of(consumer.as_ref(), brokers, topic, timeout)?;
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
/// milliseconds since `started` after every poll (the liveness watchdog reads it). With more
/// than one lane, one worker thread per lane consumes the partitions placed on it.
pub fn run(
    consumer: &Arc<ProcessorConsumer>,
    shared: &Shared,
    opts: &LoopOptions,
    stop: &AtomicBool,
    heartbeat: &AtomicU64,
    started: Instant,
) {
    let clock = Clock::default();
    let ctx = consumer.context();
    let lanes = shared.lanes();
    if lanes == 1 {
        consume_loop(consumer, shared, opts, stop, heartbeat, started, clock);
        ctx.commit(consumer, CommitMode::Sync);
        return;
    }
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(lanes);
        for lane in 0..lanes {
            let (tx, rx) = mpsc::channel();
            senders.push(tx);
            let worker = Worker {
                lane,
                rx,
                shared,
                ctx,
                stop,
                clock,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("netstream-lane-{lane}"))
                .spawn_scoped(scope, move || worker.run());
            if let Err(error) = spawned {
                tracing::error!(%error, lane, "cannot start a lane's thread; stopping");
                stop.store(true, Ordering::Relaxed);
            }
        }
        ctx.lanes().workers = senders;
        consume_loop(consumer, shared, opts, stop, heartbeat, started, clock);
        // The workers drop their queues (which hold the consumer) and end.
        ctx.lanes().workers.clear();
    });
    ctx.commit(consumer, CommitMode::Sync);
}

/// Processes one record on `engine` (the lane's, locked). `Stop`: not processed, leave its
/// offset uncommitted.
#[inline]
fn process(
    engine: &mut Engine,
    msg: &BorrowedMessage<'_>,
    now: u32,
    invalid_log: &RateLimit,
) -> Verdict {
    match engine.record(msg.partition(), msg.key(), msg.payload(), now) {
        Ok((_, verdict)) => verdict,
        Err(invalid) => {
            warn_limited!(invalid_log, topic = msg.topic(), partition = msg.partition(),
                offset = msg.offset(), reason = invalid.reason.as_str(), error = %invalid,
                "skipping invalid record (counted in netstream_records_invalid_total)");
            Verdict::Continue
        }
    }
}

/// The consumer thread: polls the main queue (rebalances, callbacks, and the records of
/// partitions not split into a lane's queue), commits, and runs the lanes' upkeep.
fn consume_loop(
    consumer: &ProcessorConsumer,
    shared: &Shared,
    opts: &LoopOptions,
    stop: &AtomicBool,
    heartbeat: &AtomicU64,
    started: Instant,
    clock: Clock,
) {
    // The table tick, the heartbeat and the periodic work all derive from one clock read per
    // CLOCK_EVERY records, and after every empty poll: a read per record was 193 instructions of
    // ~2 800. While records keep coming the clock is at most CLOCK_EVERY polls late (1.6 s at
    // one record per 100 ms poll; far less at any real rate), which the 1 s tick, the commit
    // interval and the 60 s stall limit absorb.
    const CLOCK_EVERY: u32 = 16;
    let mut now = Instant::now();
    let mut since_clock = 0u32;
    let invalid_log = RateLimit::default();
    let poll_log = RateLimit::default();
    let mut last_commit = Instant::now();
    let mut last_sweep = Instant::now();
    // With lanes, their workers store offsets too: commit on every interval.
    let mut stored = shared.lanes() > 1;
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
                let lane = ctx.lane_of(msg.partition());
                let verdict = process(
                    &mut shared.lane(lane),
                    &msg,
                    clock.tick_at(now),
                    &invalid_log,
                );
                if verdict == Verdict::Stop {
                    break;
                }
                ctx.processed(lane, &msg);
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
            if ctx.commit(consumer, CommitMode::Async) && shared.lanes() == 1 {
                stored = false;
            }
            last_commit = now;
        }
        if now.saturating_duration_since(last_sweep) >= opts.sweep_interval {
            for lane in 0..shared.lanes() {
                shared.lane(lane).maintain(clock.tick_at(now));
            }
            last_sweep = now;
        }
    }
}

/// A lane's thread: consumes the queues of the partitions placed on its lane.
struct Worker<'a> {
    lane: usize,
    rx: Receiver<Command>,
    shared: &'a Shared,
    ctx: &'a ConsumeContext,
    stop: &'a AtomicBool,
    clock: Clock,
}

impl Worker<'_> {
    /// Records taken from one queue under one lock.
    const BATCH: usize = 256;

    fn run(self) {
        let invalid_log = RateLimit::default();
        let poll_log = RateLimit::default();
        let mut queues: Vec<(i32, PartitionQueue<ConsumeContext>)> = Vec::new();
        let mut topic = String::new();
        let mut busy = true;
        loop {
            // Commands; when idle, wait for one (a queue turning non-empty sends `Wake`).
            loop {
                let cmd = if busy {
                    match self.rx.try_recv() {
                        Ok(c) => c,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                } else {
                    match self.rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(c) => c,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                };
                match cmd {
                    Command::Add(p, q) => queues.push((p, q)),
                    Command::Remove(ps, ack) => {
                        queues.retain(|(p, _)| !ps.contains(p));
                        let _ = ack.send(());
                    }
                    Command::Wake => {}
                }
                busy = true;
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let now = self.clock.tick_at(Instant::now());
            busy = false;
            for (_, q) in &queues {
                let mut engine = self.shared.lane(self.lane);
                let mut last = None;
                for _ in 0..Self::BATCH {
                    match q.poll(Duration::ZERO) {
                        None => break,
                        Some(Err(error)) => {
                            warn_limited!(poll_log, %error, "consume error (librdkafka retries on its own)");
                            break;
                        }
                        Some(Ok(msg)) => {
                            if process(&mut engine, &msg, now, &invalid_log) == Verdict::Stop {
                                // Stopping: the offsets noted so far stay; this one does not.
                                if let Some((p, o)) = last {
                                    self.ctx.pending(self.lane).note(&topic, p, o);
                                }
                                return;
                            }
                            if topic.is_empty() {
                                topic = msg.topic().to_string();
                            }
                            last = Some((msg.partition(), msg.offset()));
                        }
                    }
                }
                drop(engine);
                if let Some((p, offset)) = last {
                    self.ctx.mark_ready();
                    self.ctx.pending(self.lane).note(&topic, p, offset);
                    busy = true;
                }
            }
        }
    }
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
    fn lanes_follow_threads_and_workloads() {
        let a = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(lanes_for(4, &a(&["flows"])), 4);
        assert_eq!(lanes_for(8, &a(&["flows", "branch"])), 8);
        assert_eq!(lanes_for(4, &a(&["flows", "workloads"])), 1);
        assert_eq!(lanes_for(0, &a(&["flows"])), 1);
        let mut p = PendingOffsets::default();
        p.note("t", 2, 10);
        p.note("t", 2, 7);
        assert_eq!(p.next[2], 11, "a late message never moves an offset back");
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
