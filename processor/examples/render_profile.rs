//! Times `/metrics` rendering at 100k flows, phase by phase (release build):
//! `cargo run --release -p netstream-processor --example render_profile`
use std::sync::Arc;
use std::time::Instant;

use netstream_processor::collector::{ProcessorCollector, Snapshot};
use netstream_processor::engine::Engine;
use netstream_processor::state::Shared;
use netstream_runtime::metrics::encode_text;
use netstream_wire::{Endpoint, FlowKey, KeyKind, PacketMeta, ValueEncoder};

fn main() {
    let mut agg = Engine::flows(100_000, 300);
    let mut enc = ValueEncoder::new("node-1", "eth0");
    for i in 0..100_000u32 {
        let b = i.to_be_bytes();
        let (k, d) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([10, b[1], b[2], b[3]], 1024 + (i % 50_000) as u16),
            Endpoint::v4([192, 168, 1, 1], 443),
        );
        let meta = PacketMeta {
            direction: d,
            tcp_syn: true,
            link_type: 1,
            wire_len: 100,
            ts_ns: 1,
        };
        let v = enc.encode(&meta, &[]).to_vec();
        agg.record(0, Some(&k.to_vec()), Some(&v), 0).ok();
    }
    let shared = Arc::new(Shared::new(agg));
    let collector = ProcessorCollector::new(shared.clone()).expect("collector");
    for _ in 0..5 {
        let t = Instant::now();
        let snap = Snapshot::take(&shared);
        let t_snap = t.elapsed();
        let families = snap.families();
        let t_fam = t.elapsed();
        let mut out = String::with_capacity(32 << 20);
        encode_text(&families, &mut out);
        let t_enc = t.elapsed();
        drop(families);
        let t_drop = t.elapsed();
        let t = Instant::now();
        let (text, families) = collector.render();
        let t_render = t.elapsed();
        drop(families);
        println!(
            "snapshot {t_snap:?}, families {:?}, encode {:?}, drop {:?} | render (what /metrics waits for) {t_render:?}, {} bytes",
            t_fam - t_snap,
            t_enc - t_fam,
            t_drop - t_enc,
            text.len()
        );
    }
}
