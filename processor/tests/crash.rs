//! `kill -9` a processor mid-stream and start another in the same group: it resumes from the
//! committed offsets, so nothing is lost, and only what the killed one counted after its last
//! commit is counted twice (at-least-once; the bound is one commit interval's worth).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Processor, RawProducer, Traffic, committed, wait_until};
use netstream_testkit::broker::Broker;

const PARTITIONS: i32 = 4;

/// `n` UDP records spread over 500 flows (so every partition gets some).
fn traffic(n: usize, salt: u8) -> Traffic {
    let mut t = Traffic::default();
    for i in 0..n {
        let flow = (i % 500) as u16;
        t.packet4(
            17,
            ([10, salt, (flow >> 8) as u8, flow as u8], 2000),
            ([10, 200, 0, 1], 53),
            64,
            false,
        );
    }
    t
}

fn consumed(p: &Processor) -> u64 {
    p.metrics().sum("netstream_records_consumed_total", &[]) as u64
}

/// Sum of committed offsets (a partition without a commit counts 0).
fn committed_total(offsets: &BTreeMap<i32, i64>) -> u64 {
    offsets.values().map(|&o| o.max(0) as u64).sum()
}

/// How long until a fresh processor counts its first record and until it has counted `want`.
struct Recovery {
    first: Duration,
    caught_up: Duration,
}

fn recover(p: &Processor, started: Instant, want: u64) -> Recovery {
    wait_until(Duration::from_secs(60), "the new processor counts", || {
        consumed(p) > 0
    });
    let first = started.elapsed();
    wait_until(
        Duration::from_secs(60),
        "the new processor catches up",
        || consumed(p) >= want,
    );
    Recovery {
        first,
        caught_up: started.elapsed(),
    }
}

#[test]
fn kill_9_after_counting_resumes_from_committed_offsets() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "crash";
    broker
        .create_topic(topic, PARTITIONS)
        .expect("create topic");
    let brokers = broker.bootstrap();
    let group = "crash";
    // A long interval, so the kill lands between two commits.
    let slow_commit = ["--commit-interval", "5s"];

    // Phase 1: records counted and committed.
    let (n1a, n1b, n2) = (20_000u64, 5_000u64, 10_000u64);
    let mut p = RawProducer::new(&brokers, topic);
    traffic(n1a as usize, 1).produce(&mut p);
    let a = Processor::start(&brokers, topic, group, &slow_commit);
    wait_until(Duration::from_secs(60), "first batch counted", || {
        consumed(&a) == n1a
    });
    wait_until(Duration::from_secs(30), "first batch committed", || {
        committed_total(&committed(&brokers, group, topic, PARTITIONS)) == n1a
    });

    // Phase 2: more records counted, then SIGKILL at once: their commit is at best pending.
    traffic(n1b as usize, 2).produce(&mut p);
    wait_until(Duration::from_secs(60), "second batch counted", || {
        consumed(&a) == n1a + n1b
    });
    drop(a); // SIGKILL (Child::kill), no shutdown commit.
    let at_kill = committed(&brokers, group, topic, PARTITIONS);
    let committed_n = committed_total(&at_kill);

    // Phase 3: records produced while no processor runs.
    traffic(n2 as usize, 3).produce(&mut p);
    let total = n1a + n1b + n2;

    let started = Instant::now();
    let b = Processor::start(&brokers, topic, group, &[]);
    let want = total - committed_n;
    let r = recover(&b, started, want);
    // Settle: duplicates beyond the uncommitted tail would show up now.
    std::thread::sleep(Duration::from_secs(1));
    let got = consumed(&b);
    let duplicates = n1a + n1b - committed_n;
    eprintln!(
        "crash after counting: produced {total}, committed at kill {committed_n} ({at_kill:?}), \
         restarted processor counted {got} (want {want}), duplicates {duplicates}, lost 0; \
         recovery: first record counted {:.2}s after restart, caught up {:.2}s",
        r.first.as_secs_f64(),
        r.caught_up.as_secs_f64()
    );
    assert_eq!(got, want, "resumes exactly at the committed offsets");
    assert!(
        committed_n >= n1a,
        "everything before the last commit stays committed"
    );
    assert!(
        duplicates <= n1b,
        "only records counted since the last commit are counted again ({duplicates})"
    );
    let m = b.metrics();
    assert_eq!(m.sum("netstream_records_invalid_total", &[]), 0.0);
    b.stop();
    // The survivor committed everything.
    let end = committed(&brokers, group, topic, PARTITIONS);
    assert_eq!(committed_total(&end), total, "{end:?}");
}

#[test]
fn kill_9_while_records_flow_loses_nothing() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "crash-flowing";
    broker
        .create_topic(topic, PARTITIONS)
        .expect("create topic");
    let brokers = broker.bootstrap();
    let group = "crash-flowing";

    // A producer that keeps going through the kill and the restart: 60 k records in 120 chunks.
    const CHUNKS: usize = 120;
    const CHUNK: usize = 500;
    let total = (CHUNKS * CHUNK) as u64;
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (brokers, acked, done) = (brokers.clone(), acked.clone(), done.clone());
        std::thread::spawn(move || {
            let mut p = RawProducer::new(&brokers, topic);
            for c in 0..CHUNKS {
                traffic(CHUNK, c as u8).produce(&mut p);
                acked.fetch_add(CHUNK as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(25));
            }
            done.store(true, Ordering::Relaxed);
        })
    };

    let a = Processor::start(&brokers, topic, group, &[]);
    let mut last_seen = 0;
    wait_until(Duration::from_secs(60), "mid-stream", || {
        last_seen = consumed(&a);
        last_seen >= total / 4
    });
    drop(a); // SIGKILL while records arrive.
    let killed_at = acked.load(Ordering::Relaxed);
    let at_kill = committed(&brokers, group, topic, PARTITIONS);
    let committed_n = committed_total(&at_kill);
    assert!(
        !done.load(Ordering::Relaxed),
        "the kill must land mid-stream (acknowledged {killed_at} of {total})"
    );

    let started = Instant::now();
    let b = Processor::start(&brokers, topic, group, &[]);
    producer.join().expect("producer thread");
    let want = total - committed_n;
    let r = recover(&b, started, want);
    std::thread::sleep(Duration::from_secs(1));
    let got = consumed(&b);
    let dup_at_least = last_seen.saturating_sub(committed_n);
    eprintln!(
        "crash mid-stream: produced {total} (killed after {killed_at} acknowledged), killed \
         processor had counted >= {last_seen}, committed at kill {committed_n}, restarted \
         processor counted {got} (want {want}), duplicates >= {dup_at_least}, lost 0; recovery: \
         first record counted {:.2}s after restart, caught up {:.2}s",
        r.first.as_secs_f64(),
        r.caught_up.as_secs_f64()
    );
    assert_eq!(got, want, "nothing lost, nothing counted three times");
    b.stop();
    let end = committed(&brokers, group, topic, PARTITIONS);
    assert_eq!(committed_total(&end), total, "{end:?}");
}
