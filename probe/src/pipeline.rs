//! The capture loop: read → parse → key → encode → produce. One per source, on its own thread.
//! Per packet it allocates nothing: the parser, key buffer and value buffer are reused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netstream_wire::{FrameParser, KeyKind, MAX_KEY_LEN, PacketMeta, ValueEncoder};
use pcap::Activated;

use crate::metrics::InterfaceCounters;
use crate::producer::{Backpressure, Enqueued, ProbeProducer};
use crate::source::{Opened, timestamp_ns, wait_readable};

/// Counts for the exit summary, shared with the progress display.
#[derive(Debug, Default)]
pub struct RunTotals {
    pub read: AtomicU64,
    pub wire_bytes: AtomicU64,
    /// Captured bytes (what the file holds), for replay progress.
    pub cap_bytes: AtomicU64,
    pub produced: AtomicU64,
    pub queue_full: AtomicU64,
    pub refused: AtomicU64,
    pub unparsed: AtomicU64,
    pub sampled_out: AtomicU64,
    pub kernel_drops: AtomicU64,
    pub interface_drops: AtomicU64,
}

/// How one source is run.
pub struct SourceRun<'a> {
    pub index: usize,
    pub counters: InterfaceCounters,
    pub producer: &'a ProbeProducer,
    pub backpressure: Backpressure,
    pub sampling: u32,
    pub node: &'a str,
    pub stop: &'a AtomicBool,
    pub totals: Arc<RunTotals>,
}

/// How a source ended.
#[derive(Debug)]
pub enum Ended {
    /// End of file (replay) or stop requested.
    Done,
    /// The file ended in the middle of a record; everything before it was produced.
    Truncated(String),
}

impl SourceRun<'_> {
    pub fn run<T: Activated + ?Sized>(&self, src: &mut Opened<T>) -> Result<Ended, pcap::Error> {
        let mut parser = FrameParser::new();
        let mut encoder = ValueEncoder::new(self.node, &src.label);
        let mut key_buf = [0u8; MAX_KEY_LEN];
        let link_type = src.link.linktype();
        let live = src.file_size.is_none();
        let mut seen: u64 = 0;
        let mut last_stats = Instant::now();
        let mut kernel_seen = 0u32;
        let mut iface_seen = 0u32;
        let t = &self.totals;
        let stop = || self.stop.load(Ordering::Relaxed);

        loop {
            if stop() {
                break;
            }
            if live && last_stats.elapsed() >= Duration::from_secs(1) {
                last_stats = Instant::now();
                self.poll_stats(src, &mut kernel_seen, &mut iface_seen);
            }
            let packet = match src.capture.next_packet() {
                Ok(p) => p,
                Err(pcap::Error::TimeoutExpired) => {
                    if let Some(fd) = src.wait_fd {
                        wait_readable(fd, 100);
                    }
                    continue;
                }
                Err(pcap::Error::NoMorePackets) => break,
                Err(pcap::Error::PcapError(msg)) if !live && msg.contains("truncated") => {
                    return Ok(Ended::Truncated(msg));
                }
                Err(e) => return Err(e),
            };
            let data = packet.data;
            let wire_len = packet.header.len;
            self.counters.captured.inc();
            self.counters.bytes.inc_by(u64::from(wire_len));
            t.read.fetch_add(1, Ordering::Relaxed);
            t.wire_bytes
                .fetch_add(u64::from(wire_len), Ordering::Relaxed);
            t.cap_bytes
                .fetch_add(u64::from(packet.header.caplen) + 16, Ordering::Relaxed);

            seen += 1;
            if self.sampling > 1 && !seen.is_multiple_of(u64::from(self.sampling)) {
                t.sampled_out.fetch_add(1, Ordering::Relaxed);
                continue;
            }

            let parsed = parser.parse(src.link, data);
            if parsed.key.kind() == KeyKind::Unparsed {
                self.counters.unparsed.inc();
                t.unparsed.fetch_add(1, Ordering::Relaxed);
            }
            let key = parsed.key.encode(&mut key_buf);
            let meta = PacketMeta {
                direction: parsed.direction,
                tcp_syn: parsed.tcp_syn,
                link_type,
                wire_len,
                ts_ns: timestamp_ns(packet.header, src.nanos),
            };
            let value = encoder.encode(&meta, data);
            match self
                .producer
                .send(self.index, key, value, self.backpressure, &stop)
            {
                Enqueued::Ok => {
                    self.counters.produced.inc();
                    t.produced.fetch_add(1, Ordering::Relaxed);
                }
                Enqueued::QueueFull => {
                    self.counters.drop_queue_full.inc();
                    t.queue_full.fetch_add(1, Ordering::Relaxed);
                }
                Enqueued::Failed => {
                    self.counters.drop_produce_error.inc();
                    t.refused.fetch_add(1, Ordering::Relaxed);
                }
                Enqueued::Fatal => {
                    // Every later packet would fail too: stop every source and exit non-zero
                    // (main reports it), so the probe is restarted with a fresh producer rather
                    // than counting all traffic as produce_error from now on.
                    self.counters.drop_produce_error.inc();
                    t.refused.fetch_add(1, Ordering::Relaxed);
                    self.stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        if live {
            self.poll_stats(src, &mut kernel_seen, &mut iface_seen);
            tracing::info!(interface = %src.label, kernel_dropped = kernel_seen, interface_dropped = iface_seen, "capture stopped");
        }
        Ok(Ended::Done)
    }

    /// libpcap's counters are cumulative (and 32-bit): add what changed since the last poll.
    fn poll_stats<T: Activated + ?Sized>(
        &self,
        src: &mut Opened<T>,
        kernel_seen: &mut u32,
        iface_seen: &mut u32,
    ) {
        if let Ok(s) = src.capture.stats() {
            let dk = s.dropped.wrapping_sub(*kernel_seen);
            let di = s.if_dropped.wrapping_sub(*iface_seen);
            *kernel_seen = s.dropped;
            *iface_seen = s.if_dropped;
            self.counters.drop_kernel.inc_by(u64::from(dk));
            self.counters.drop_interface.inc_by(u64::from(di));
            self.totals
                .kernel_drops
                .fetch_add(u64::from(dk), Ordering::Relaxed);
            self.totals
                .interface_drops
                .fetch_add(u64::from(di), Ordering::Relaxed);
        }
    }
}
