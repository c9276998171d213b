//! Writes a demo capture with a realistic mix of traffic and exactly known counts, for the
//! local pipeline (`scripts/run-local`) on a machine with no captures of its own.
//!
//! Usage: `cargo run -p netstream-probe --example demo_pcap -- OUT.pcap`

use netstream_testkit::frames;
use netstream_testkit::pcap::PcapWriter;

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: demo_pcap OUT.pcap");
        std::process::exit(2);
    };
    let mut w = PcapWriter::ethernet();
    let mut ts = 1_764_000_000_000_000u64;
    let mut tick = |w: &mut PcapWriter, f: Vec<u8>| {
        ts += 250;
        w.packet(ts, &f);
    };
    // Web: 12 clients, each one TCP session to a server, request/response sizes vary.
    for c in 0..12u8 {
        let client = [10, 0, 1, 10 + c];
        let server = [10, 0, 0, 80];
        let port = 50000 + u16::from(c) * 7;
        tick(&mut w, frames::tcp4(client, server, port, 443, true, b""));
        for i in 0..(5 + usize::from(c) * 3) {
            tick(
                &mut w,
                frames::tcp4(client, server, port, 443, false, &vec![b'q'; 80 + i]),
            );
            tick(
                &mut w,
                frames::tcp4(server, client, 443, port, false, &vec![b'r'; 1200]),
            );
        }
    }
    // DNS: 30 queries and answers from 3 clients.
    for i in 0..30u16 {
        let client = [10, 0, 1, 10 + (i % 3) as u8];
        let resolver = [10, 0, 0, 53];
        tick(
            &mut w,
            frames::udp4(client, resolver, 33000 + i, 53, b"query"),
        );
        tick(
            &mut w,
            frames::udp4(resolver, client, 53, 33000 + i, &[b'a'; 120]),
        );
    }
    // IPv6 service traffic and pings.
    let v6 = |last: u8| [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last];
    for i in 0..20u16 {
        tick(&mut w, frames::udp6(v6(1), v6(2), 9000, 4789, &[0; 200]));
        tick(
            &mut w,
            frames::udp6(v6(2), v6(1), 4789, 9000, &vec![0; 60 + i as usize]),
        );
    }
    for seq in 0..10 {
        tick(
            &mut w,
            frames::icmp4_echo([10, 0, 1, 10], [10, 0, 0, 1], seq),
        );
    }
    for _ in 0..4 {
        tick(&mut w, frames::arp());
    }
    w.write_to(std::path::Path::new(&out))
}
