//! `/metrics` render time and size at 10k and 100k tracked flows: what the endpoint waits for
//! (`ProcessorCollector::render`: snapshot under the lock, families, fast text encoding), as in
//! `processor/examples/render_profile.rs`.

use std::sync::Arc;
use std::time::Instant;

use netstream_processor::analysis::flows::Flows;
use netstream_processor::collector::ProcessorCollector;
use netstream_processor::engine::Engine;
use netstream_processor::state::Shared;
use netstream_wire::{Endpoint, FlowKey, KeyKind, PacketMeta, ValueEncoder};
use serde_json::{Value, json};

use crate::args::{Opts, stats};

fn filled(flows: u32) -> Engine {
    let mut agg = Engine::flows(flows as usize, 300);
    let mut enc = ValueEncoder::new("node-1", "eth0");
    for i in 0..flows {
        let b = i.to_be_bytes();
        let (k, d) = FlowKey::new(
            KeyKind::Ipv4,
            if i.is_multiple_of(3) { 17 } else { 6 },
            Endpoint::v4([10, b[1], b[2], b[3]], 1024 + (i % 50_000) as u16),
            Endpoint::v4([192, 168, 1, 1], 443),
        );
        let meta = PacketMeta {
            direction: d,
            tcp_syn: i.is_multiple_of(2),
            link_type: 1,
            wire_len: 60 + i % 1400,
            ts_ns: 1_700_000_000_000_000_000 + u64::from(i),
        };
        let v = enc.encode(&meta, &[]).to_vec();
        agg.record(0, Some(&k.to_vec()), Some(&v), 0).ok();
    }
    agg
}

pub fn main(o: &Opts) -> anyhow::Result<Value> {
    let reps: usize = o.get("reps", 7)?;
    let mut out = serde_json::Map::new();
    for flows in [10_000u32, 100_000] {
        let agg = filled(flows);
        let heap = agg.host::<Flows>().map(|h| h.heap_bytes()).unwrap_or(0);
        let shared = Arc::new(Shared::new(agg));
        let collector = ProcessorCollector::new(shared.clone())?;
        let mut ms = Vec::new();
        let mut size = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let (text, families) = collector.render();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            size = text.len();
            drop(families);
        }
        eprintln!("render at {flows} flows: {:.1} ms median, {size} bytes", {
            let mut s = ms.clone();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        });
        out.insert(
            flows.to_string(),
            json!({
                "render_ms": stats(&ms),
                "bytes": size,
                "table_heap_bytes": heap,
                "bytes_per_flow": heap as f64 / f64::from(flows),
            }),
        );
    }
    Ok(Value::Object(out))
}
