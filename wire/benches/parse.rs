//! parse + key (+ key encode) per packet over a mix of frames: generated ones always, plus every
//! Ethernet frame of the classic-pcap files in `../shared/pcaps` when present (real traffic).
//! Goal: <= 50 ns per packet.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use netstream_wire::{
    Direction, FlowKey, FrameParser, LinkType, MAX_KEY_LEN, PacketMeta, ValueEncoder,
};

fn udp(b: etherparse::PacketBuilderStep<etherparse::UdpHeader>, n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    b.write(&mut v, &vec![0u8; n]).unwrap();
    v
}

fn generated() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..64u8 {
        let mut tcp = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, i], [10, 0, 1, 1], 64)
            .tcp(40000 + u16::from(i), 443, 1, 1000)
            .ack(1)
            .write(&mut tcp, &[0u8; 200])
            .unwrap();
        out.push(tcp);
        out.push(udp(
            PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv6([0xfd; 16], [i; 16], 64)
                .udp(53, 5353),
            80,
        ));
    }
    let mut vlan = udp(
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([192, 168, 1, 1], [192, 168, 1, 2], 64)
            .udp(1000, 2000),
        100,
    );
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    out.push(vlan);
    out
}

/// Ethernet frames of every little-endian classic pcap in the shared captures.
fn shared() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(b) = std::fs::read(e.path()) else {
            continue;
        };
        if b.len() < 24
            || b[..4] != [0xd4, 0xc3, 0xb2, 0xa1]
            || u32::from_le_bytes([b[20], b[21], b[22], b[23]]) != 1
        {
            continue;
        }
        let mut at = 24;
        while at + 16 <= b.len() {
            let caplen =
                u32::from_le_bytes([b[at + 8], b[at + 9], b[at + 10], b[at + 11]]) as usize;
            let Some(frame) = b.get(at + 16..at + 16 + caplen) else {
                break;
            };
            out.push(frame.to_vec());
            at += 16 + caplen;
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut frames = generated();
    let real = shared();
    eprintln!(
        "frames: {} generated + {} from ../shared/pcaps",
        frames.len(),
        real.len()
    );
    frames.extend(real);

    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("parse+key", |b| {
        let mut parser = FrameParser::new();
        let mut buf = [0u8; MAX_KEY_LEN];
        b.iter(|| {
            let mut total = 0usize;
            for f in &frames {
                let p = parser.parse(LinkType::Ethernet, black_box(f));
                total += p.key.encode(&mut buf).len();
            }
            black_box(total)
        })
    });
    g.bench_function("parse+key+value", |b| {
        let mut parser = FrameParser::new();
        let mut buf = [0u8; MAX_KEY_LEN];
        let mut enc = ValueEncoder::new("node-1", "eth0");
        b.iter(|| {
            let mut total = 0usize;
            for f in &frames {
                let p = parser.parse(LinkType::Ethernet, black_box(f));
                total += p.key.encode(&mut buf).len();
                let meta = PacketMeta {
                    direction: p.direction,
                    tcp_syn: p.tcp_syn,
                    link_type: 1,
                    wire_len: f.len() as u32,
                    ts_ns: 1,
                };
                total += enc.encode(&meta, f).len();
            }
            black_box(total)
        })
    });
    let keys: Vec<Vec<u8>> = {
        let mut parser = FrameParser::new();
        frames
            .iter()
            .map(|f| parser.parse(LinkType::Ethernet, f).key.to_vec())
            .collect()
    };
    g.bench_function("key decode", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for k in &keys {
                n += usize::from(FlowKey::decode(black_box(k)).is_ok());
            }
            black_box(n)
        })
    });
    g.finish();
    let _ = Direction::AToB;
}

criterion_group!(benches, bench);
criterion_main!(benches);
