//! The fuzz targets' checks (`fuzz/src/lib.rs`, included below) under plain `cargo test`:
//!
//! - the seed corpora, built here from generated frames (every link type, the paths the parser
//!   has: VLAN/QinQ, LLC/SNAP, IPv4 options, IPv6 extension headers, fragments, non-IP, cut
//!   frames) plus the frames of `../shared/pcaps` when present, pass every check, as do all
//!   prefixes of the generated ones. This is CI's fuzz smoke test: it needs no libFuzzer.
//! - `fuzz/run.sh` writes the same corpora for libFuzzer by running this test with
//!   `NETSTREAM_FUZZ_SEEDS=DIR` (one definition of the seeds, no checked-in capture files).
//! - a crash libFuzzer finds gets a test here replaying its input, inline as a byte array,
//!   through the same public function (none so far: see fuzz/README.md for the runs).

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::collections::BTreeSet;
use std::path::Path;

use etherparse::{IpNumber, Ipv4Header, Ipv6Header, PacketBuilder};
use netstream_wire::{FrameParser, LinkType, PacketMeta, ValueEncoder};

const A4: [u8; 4] = [10, 0, 0, 1];
const B4: [u8; 4] = [192, 168, 7, 9];
const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// IPv4 packets (no link header) covering the transport paths.
fn ipv4_packets() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .tcp(40000, 443, 1, 1000)
        .syn()
        .write(&mut p, b"")
        .unwrap();
    out.push(p);
    let mut p = Vec::new();
    PacketBuilder::ipv4(B4, A4, 64)
        .tcp(443, 40000, 9, 1000)
        .syn()
        .ack(2)
        .write(&mut p, b"")
        .unwrap();
    out.push(p);
    let mut p = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .tcp(40000, 443, 2, 1000)
        .ack(10)
        .psh()
        .write(&mut p, &[b'q'; 120])
        .unwrap();
    out.push(p);
    let mut p = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .udp(5353, 53)
        .write(&mut p, b"\x12\x34\x01\x00\x00\x01")
        .unwrap();
    out.push(p);
    let mut p = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut p, &[0; 16])
        .unwrap();
    out.push(p);
    // Protocols without ports (GRE, OSPF), SCTP with ports, and an unknown number.
    for (proto, payload) in [
        (47u8, vec![0, 0, 0x08, 0, 1, 2, 3, 4]),
        (89, vec![2, 1, 0, 44]),
        (132, vec![0x0b, 0xb8, 0x0b, 0xb9, 0, 0, 0, 1, 0, 0, 0, 0]),
        (253, vec![0xde, 0xad]),
    ] {
        out.push(raw_ipv4(proto, &[], &payload, 0, false, 0));
    }
    // Header with options (IHL 6) carrying UDP.
    out.push(raw_ipv4(
        17,
        &[1, 1, 1, 0],
        &[0x13, 0x88, 0, 53, 0, 8, 0, 0],
        0,
        false,
        0,
    ));
    out
}

/// An IPv4 header by hand: options, fragment fields and any protocol.
fn raw_ipv4(
    proto: u8,
    options: &[u8],
    payload: &[u8],
    frag_units: u16,
    more: bool,
    id: u16,
) -> Vec<u8> {
    let mut h = Ipv4Header::new(payload.len() as u16, 64, IpNumber(proto), A4, B4).unwrap();
    h.options = options.try_into().unwrap();
    h.identification = id;
    h.more_fragments = more;
    h.fragment_offset = etherparse::IpFragOffset::try_new(frag_units).unwrap();
    h.header_checksum = h.calc_header_checksum();
    let mut f = Vec::new();
    h.write(&mut f).unwrap();
    f.extend_from_slice(payload);
    f
}

/// An IPv6 header followed by `rest` (extension headers and payload), next header `next`.
fn raw_ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
    let h = Ipv6Header {
        payload_length: rest.len() as u16,
        next_header: IpNumber(next),
        hop_limit: 64,
        source: A6,
        destination: B6,
        ..Default::default()
    };
    let mut f = Vec::new();
    h.write(&mut f).unwrap();
    f.extend_from_slice(rest);
    f
}

/// IPv6 packets: transports, extension header chains, fragments.
fn ipv6_packets() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = Vec::new();
    PacketBuilder::ipv6(A6, B6, 64)
        .tcp(50000, 80, 1, 1000)
        .syn()
        .write(&mut p, b"")
        .unwrap();
    out.push(p);
    let mut p = Vec::new();
    PacketBuilder::ipv6(B6, A6, 64)
        .udp(53, 50001)
        .write(&mut p, &[0x55; 40])
        .unwrap();
    out.push(p);
    let mut p = Vec::new();
    PacketBuilder::ipv6(A6, B6, 64)
        .icmpv6_echo_request(1, 2)
        .write(&mut p, &[0; 8])
        .unwrap();
    out.push(p);
    let udp = [0x1f, 0x40, 0x00, 0x35, 0, 8, 0, 0];
    // Hop-by-hop (0) then destination options (60) then UDP.
    let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
    chain.extend_from_slice(&udp);
    out.push(raw_ipv6(0, &chain));
    // Routing header (43) then TCP cut after its ports.
    let mut chain = vec![6, 0, 0, 0, 0, 0, 0, 0];
    chain.extend_from_slice(&[0xc3, 0x50, 0, 22]);
    out.push(raw_ipv6(43, &chain));
    // No next header (59), and ESP (50): no ports to find.
    out.push(raw_ipv6(59, &[]));
    out.push(raw_ipv6(50, &[0, 0, 1, 0, 0, 0, 0, 1]));
    out
}

/// Sequences of frames that only mean something together: first fragment then later ones.
fn fragment_sequences() -> Vec<Vec<Vec<u8>>> {
    let udp_head = [0x1b, 0x58, 0x1b, 0x59, 0, 108, 0, 0];
    let mut first = udp_head.to_vec();
    first.extend_from_slice(&[0; 24]);
    let v4 = vec![
        raw_ipv4(17, &[], &first, 0, true, 42),
        raw_ipv4(17, &[], &[0; 40], 4, true, 42),
        raw_ipv4(17, &[], &[0; 36], 9, false, 42),
        // An orphan later fragment (its first was never seen).
        raw_ipv4(17, &[], &[0; 8], 4, false, 43),
    ];
    let frag6 = |offset: u16, more: bool, payload: &[u8]| {
        let mut rest = vec![17, 0];
        rest.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
        rest.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
        rest.extend_from_slice(payload);
        raw_ipv6(44, &rest)
    };
    let v6 = vec![frag6(0, true, &first), frag6(4, false, &[0; 16])];
    vec![v4, v6]
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn sll(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0xa, 0, 0];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn sll2(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = ethertype.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0xa, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Every generated frame with its link type.
fn generated_frames() -> Vec<(LinkType, Vec<u8>)> {
    let mut out = Vec::new();
    let v4 = ipv4_packets();
    let v6 = ipv6_packets();
    for (et, packets, link) in [
        (0x0800u16, &v4, LinkType::Ipv4),
        (0x86dd, &v6, LinkType::Ipv6),
    ] {
        for p in packets.iter() {
            out.push((LinkType::Ethernet, ethernet(et, p)));
            out.push((LinkType::LinuxSll, sll(et, p)));
            out.push((LinkType::LinuxSll2, sll2(et, p)));
            out.push((LinkType::RawIp, p.clone()));
            out.push((link, p.clone()));
        }
    }
    let udp = &v4[4];
    // 802.1Q, 802.1ad QinQ, and a deep tag stack.
    let mut tagged = vec![0, 5, 0x08, 0x00];
    tagged.extend_from_slice(udp);
    out.push((LinkType::Ethernet, ethernet(0x8100, &tagged)));
    let mut qinq = vec![0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x86, 0xdd];
    qinq.extend_from_slice(&v6[1]);
    out.push((LinkType::Ethernet, ethernet(0x88a8, &qinq)));
    // 802.3 length + LLC/SNAP carrying IPv4, plain LLC (STP), ARP, LLDP.
    let mut snap = vec![0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    snap.extend_from_slice(udp);
    out.push((LinkType::Ethernet, ethernet(snap.len() as u16, &snap)));
    out.push((
        LinkType::Ethernet,
        ethernet(38, &[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]),
    ));
    let arp = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xa, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ];
    out.push((LinkType::Ethernet, ethernet(0x0806, &arp)));
    out.push((LinkType::LinuxSll, sll(0x0806, &arp)));
    out.push((
        LinkType::Ethernet,
        ethernet(0x88cc, &[2, 7, 4, 2, 0, 0, 0, 0, 0xa, 0, 0]),
    ));
    // Cut and mislabelled frames.
    out.push((LinkType::Ethernet, vec![1, 2, 3]));
    out.push((LinkType::Ethernet, ethernet(0x0800, &v6[0])));
    out.push((LinkType::Ipv6, v4[0].clone()));
    out
}

/// Frames of the classic pcap files in `../shared/pcaps` (pcapng and unknown link types are
/// skipped: the generated frames cover every link type).
fn shared_frames() -> Vec<(LinkType, Vec<u8>)> {
    let Some(dir) = shared_pcaps() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    paths.sort();
    for p in paths {
        out.extend(read_pcap(&std::fs::read(&p).unwrap()));
    }
    out
}

fn shared_pcaps() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("NETSTREAM_PCAPS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps"));
    dir.is_dir().then_some(dir)
}

fn read_pcap(data: &[u8]) -> Vec<(LinkType, Vec<u8>)> {
    let u32_at = |le: bool, at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let le = match data.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]) => true,
        Some([0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d]) => false,
        _ => return Vec::new(),
    };
    let Some(Ok(link)) = u32_at(le, 20).map(LinkType::from_dlt) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(caplen) = u32_at(le, at + 8) {
        let start = at + 16;
        let Some(frame) = data.get(start..start + caplen as usize) else {
            break;
        };
        out.push((link, frame.to_vec()));
        at = start + caplen as usize;
    }
    out
}

fn selector(link: LinkType) -> u8 {
    checks::LINKS.iter().position(|&l| l == link).unwrap() as u8
}

/// The three seed corpora, deduplicated.
struct Seeds {
    parse_frame: BTreeSet<Vec<u8>>,
    decode_value: BTreeSet<Vec<u8>>,
    decode_key: BTreeSet<Vec<u8>>,
}

fn seeds(frames: &[(LinkType, Vec<u8>)]) -> Seeds {
    let mut s = Seeds {
        parse_frame: BTreeSet::new(),
        decode_value: BTreeSet::new(),
        decode_key: BTreeSet::new(),
    };
    let mut enc = ValueEncoder::new("seed-node", "eth0");
    for (i, (link, frame)) in frames.iter().enumerate() {
        let parsed = FrameParser::new().parse(*link, frame);
        // Frames holding the separator byte are split by the target; they still seed it.
        let mut input = vec![selector(*link)];
        input.extend_from_slice(frame);
        s.parse_frame.insert(input);
        s.decode_key.insert(parsed.key.to_vec());
        let meta = PacketMeta {
            direction: parsed.direction,
            tcp_syn: parsed.tcp_syn,
            link_type: link.linktype(),
            wire_len: frame.len() as u32 + (i % 3) as u32,
            ts_ns: 1_764_000_000_000_000_000 + i as u64,
        };
        s.decode_value.insert(enc.encode(&meta, frame).to_vec());
    }
    for seq in fragment_sequences() {
        let mut input = vec![selector(LinkType::RawIp)];
        for (n, f) in seq.iter().enumerate() {
            assert!(
                !f.contains(&checks::FRAME_SEPARATOR),
                "fragment seeds must not hold the separator"
            );
            if n > 0 {
                input.push(checks::FRAME_SEPARATOR);
            }
            input.extend_from_slice(f);
        }
        s.parse_frame.insert(input);
    }
    // Non-UTF-8 names, an empty value, and an unknown version: the decoder's error paths.
    s.decode_value.insert(vec![
        1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff,
    ]);
    s.decode_value.insert(Vec::new());
    s.decode_value.insert(vec![2; 20]);
    s
}

fn all_frames() -> Vec<(LinkType, Vec<u8>)> {
    let mut frames = generated_frames();
    frames.extend(shared_frames());
    for seq in fragment_sequences() {
        frames.extend(seq.into_iter().map(|f| (LinkType::RawIp, f)));
    }
    frames
}

#[test]
fn seed_corpora_pass_every_fuzz_check() {
    let frames = all_frames();
    let s = seeds(&frames);
    for input in &s.parse_frame {
        checks::parse_frame(input);
    }
    for input in &s.decode_value {
        checks::decode_value(input);
    }
    for input in &s.decode_key {
        checks::decode_key(input);
    }
    // The corpora reach every link type and more than a handful of distinct keys.
    let selectors: BTreeSet<u8> = s.parse_frame.iter().map(|i| i[0]).collect();
    assert_eq!(
        selectors.len(),
        checks::LINKS.len(),
        "every link type seeded"
    );
    assert!(
        s.decode_key.len() >= 30,
        "{} distinct keys",
        s.decode_key.len()
    );
    eprintln!(
        "seeds: parse_frame {}, decode_value {}, decode_key {} (shared pcaps: {})",
        s.parse_frame.len(),
        s.decode_value.len(),
        s.decode_key.len(),
        shared_pcaps().is_some()
    );
    if let Some(dir) = std::env::var_os("NETSTREAM_FUZZ_SEEDS") {
        write_corpora(Path::new(&dir), &s);
    }
}

/// Every prefix of every generated input (what snaplen and truncation make of a frame), through
/// every check: the cut-short paths a seed alone does not reach.
#[test]
fn prefixes_of_generated_seeds_pass_every_fuzz_check() {
    let mut frames = generated_frames();
    for seq in fragment_sequences() {
        frames.extend(seq.into_iter().map(|f| (LinkType::RawIp, f)));
    }
    let s = seeds(&frames);
    let mut n = 0;
    for (set, check) in [
        (&s.parse_frame, checks::parse_frame as fn(&[u8])),
        (&s.decode_value, checks::decode_value),
        (&s.decode_key, checks::decode_key),
    ] {
        for input in set {
            for end in 0..=input.len() {
                check(&input[..end]);
                n += 1;
            }
        }
    }
    assert!(n > 10_000, "{n} inputs");
}

fn write_corpora(dir: &Path, s: &Seeds) {
    for (name, set) in [
        ("parse_frame", &s.parse_frame),
        ("decode_value", &s.decode_value),
        ("decode_key", &s.decode_key),
    ] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for input in set {
            std::fs::write(d.join(format!("{:016x}", fnv1a(input))), input).unwrap();
        }
    }
}

/// A stable content name for corpus files (libFuzzer names its own by SHA-1; any stable name
/// works for seeds).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
