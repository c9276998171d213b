//! Frame parsing on frames built here with exactly known content (no capture files needed).

use etherparse::{IpHeaders, Ipv4Header, PacketBuilder};
use netstream_wire::{Direction, Endpoint, FlowKey, FrameParser, KeyKind, LinkType, Parsed};
use proptest::prelude::*;

const A4: [u8; 4] = [10, 0, 0, 1];
const B4: [u8; 4] = [10, 0, 0, 2];

fn udp4_ip(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn parse(link: LinkType, f: &[u8]) -> Parsed {
    FrameParser::new().parse(link, f)
}

fn v4_key(proto: u16, src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> (FlowKey, Direction) {
    FlowKey::new(
        KeyKind::Ipv4,
        proto,
        Endpoint::v4(src, sp),
        Endpoint::v4(dst, dp),
    )
}

#[test]
fn every_link_type_reaches_the_same_flow() {
    let ip = udp4_ip(A4, B4, 5000, 53, b"q");
    let want = v4_key(17, A4, 5000, B4, 53).0;
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0xa, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0xa, 0, 0,
    ];
    sll2.extend_from_slice(&ip);
    for (link, frame) in [
        (LinkType::Ethernet, eth(0x0800, &ip)),
        (LinkType::LinuxSll, sll),
        (LinkType::LinuxSll2, sll2),
        (LinkType::RawIp, ip.clone()),
        (LinkType::Ipv4, ip.clone()),
    ] {
        assert_eq!(parse(link, &frame).key, want, "{link:?}");
    }
    // An IPv4 packet on the IPv6 link type is not IPv6.
    assert_eq!(parse(LinkType::Ipv6, &ip).key, FlowKey::UNPARSED);
}

#[test]
fn vlan_tags_at_any_depth_and_snap_are_skipped() {
    let ip = udp4_ip(A4, B4, 1, 2, b"x");
    let want = v4_key(17, A4, 1, B4, 2).0;
    // 802.1ad S-tag, then two 802.1Q C-tags, then IPv4.
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&[
        0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00,
    ]);
    f.extend_from_slice(&ip);
    assert_eq!(parse(LinkType::Ethernet, &f).key, want);
    // 802.3 length + LLC/SNAP (RFC 1042) carrying IPv4.
    let mut snap = vec![0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    snap.extend_from_slice(&ip);
    let len = snap.len() as u16;
    assert_eq!(parse(LinkType::Ethernet, &eth(len, &snap)).key, want);
    // A truncated tag is unparsed, not a panic.
    let cut = [2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x81, 0x00, 0];
    assert_eq!(parse(LinkType::Ethernet, &cut).key, FlowKey::UNPARSED);
}

#[test]
fn non_ip_and_unparsed() {
    let arp = parse(LinkType::Ethernet, &eth(0x0806, &[0; 28]));
    assert_eq!(arp.key.protocol_name(), "arp");
    assert_eq!(arp.key.kind(), KeyKind::NonIp);
    let lldp = parse(LinkType::Ethernet, &eth(0x88cc, &[0; 30]));
    assert_eq!(lldp.key.protocol_name(), "non-ip");
    // Plain 802.2 LLC (STP): non-IP with EtherType 0.
    let stp = parse(LinkType::Ethernet, &eth(38, &[0x42, 0x42, 0x03, 0, 0]));
    assert_eq!(stp.key.ethertype(), Some(0));
    // Too short for Ethernet; IPv4 EtherType carrying IPv6; IPv4 header cut short.
    let v6 = {
        let mut v = Vec::new();
        PacketBuilder::ipv6([1; 16], [2; 16], 1)
            .udp(1, 2)
            .write(&mut v, &[])
            .unwrap();
        v
    };
    let ip = udp4_ip(A4, B4, 1, 2, b"");
    for f in [
        vec![1, 2, 3],
        eth(0x0800, &v6),
        eth(0x0800, &ip[..12]),
        eth(0x86dd, &[0x60; 20]),
    ] {
        assert_eq!(
            parse(LinkType::Ethernet, &f).key.protocol_name(),
            "unparsed",
            "{f:?}"
        );
    }
}

#[test]
fn protocol_and_ports_by_the_rules() {
    // ICMP: ports 0. GRE: outer header only, ports 0.
    let mut icmp = Vec::new();
    PacketBuilder::ipv4(A4, B4, 1)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, &[0; 8])
        .unwrap();
    let p = parse(LinkType::RawIp, &icmp);
    assert_eq!(p.key.to_string(), "icmp|10.0.0.1|0|10.0.0.2|0");
    let mut gre = Ipv4Header::new(8, 64, etherparse::IpNumber(47), A4, B4).unwrap();
    gre.header_checksum = gre.calc_header_checksum();
    let mut f = Vec::new();
    gre.write(&mut f).unwrap();
    f.extend_from_slice(&[0, 0, 0x08, 0, 1, 2, 3, 4]);
    assert_eq!(
        parse(LinkType::RawIp, &f).key.to_string(),
        "gre|10.0.0.1|0|10.0.0.2|0"
    );
    // A UDP header cut after the source port keeps what it has.
    let ip = udp4_ip(A4, B4, 0x1234, 53, b"");
    let cut = &ip[..22];
    assert_eq!(
        parse(LinkType::RawIp, cut).key.to_string(),
        "udp|10.0.0.1|4660|10.0.0.2|0"
    );
}

#[test]
fn tcp_syn_marks_the_initiator() {
    let mut syn = Vec::new();
    PacketBuilder::ipv4(B4, A4, 64)
        .tcp(40000, 80, 1, 100)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    let mut synack = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .tcp(80, 40000, 1, 100)
        .syn()
        .ack(2)
        .write(&mut synack, &[])
        .unwrap();
    let p = parse(LinkType::RawIp, &syn);
    assert!(p.tcp_syn);
    assert_eq!(p.direction, Direction::BToA, "10.0.0.2 is endpoint B");
    let q = parse(LinkType::RawIp, &synack);
    assert!(!q.tcp_syn);
    assert_eq!(q.key, p.key);
    assert_eq!(q.direction, Direction::AToB);
}

/// IPv4 fragments: a first fragment (offset 0, MF) then a later one (offset > 0, no UDP header).
fn v4_fragment(id: u16, offset_units: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut h =
        Ipv4Header::new(payload.len() as u16, 64, etherparse::IpNumber::UDP, A4, B4).unwrap();
    h.identification = id;
    h.more_fragments = more;
    h.fragment_offset = etherparse::IpFragOffset::try_new(offset_units).unwrap();
    h.header_checksum = h.calc_header_checksum();
    let mut f = Vec::new();
    h.write(&mut f).unwrap();
    f.extend_from_slice(payload);
    f
}

#[test]
fn later_fragments_join_their_first_fragments_flow() {
    let first_udp = {
        let full = udp4_ip(A4, B4, 7000, 7001, &[0; 100]);
        full[20..20 + 32].to_vec() // UDP header + 24 bytes
    };
    let mut parser = FrameParser::new();
    let first = parser.parse(LinkType::RawIp, &v4_fragment(42, 0, true, &first_udp));
    let later = parser.parse(LinkType::RawIp, &v4_fragment(42, 4, false, &[0; 76]));
    assert_eq!(first.key.to_string(), "udp|10.0.0.1|7000|10.0.0.2|7001");
    assert_eq!(later.key, first.key);
    // A later fragment whose first fragment was never seen: ports 0 (deterministic).
    let orphan = parser.parse(LinkType::RawIp, &v4_fragment(43, 4, false, &[0; 76]));
    assert_eq!(orphan.key.to_string(), "udp|10.0.0.1|0|10.0.0.2|0");
    // IPv6: fragment header (44) then UDP in the first fragment.
    let (s6, d6) = ([0xfd; 16], [0xfe; 16]);
    let v6frag = |offset: u16, more: bool, payload: &[u8]| {
        let mut f = Vec::new();
        let h = IpHeaders::Ipv6(
            etherparse::Ipv6Header {
                payload_length: (8 + payload.len()) as u16,
                next_header: etherparse::IpNumber(44),
                hop_limit: 64,
                source: s6,
                destination: d6,
                ..Default::default()
            },
            Default::default(),
        );
        h.write(&mut f).unwrap();
        let off = (offset << 3) | u16::from(more);
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&off.to_be_bytes());
        f.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let mut udp = vec![0x1f, 0x40, 0x00, 0x35, 0, 16, 0, 0];
    udp.extend_from_slice(&[0; 8]);
    let first = parser.parse(LinkType::RawIp, &v6frag(0, true, &udp));
    let later = parser.parse(LinkType::RawIp, &v6frag(2, false, &[0; 16]));
    assert_eq!(first.key.protocol_name(), "udp");
    assert_eq!(first.key.a().port.max(first.key.b().port), 8000);
    assert_eq!(later.key, first.key);
}

proptest! {
    #[test]
    fn parsing_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..200), link in 0usize..6) {
        let link = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Ipv4, LinkType::Ipv6][link];
        let mut p = FrameParser::with_fragment_slots(8);
        let parsed = p.parse(link, &frame);
        let bytes = parsed.key.to_vec();
        prop_assert_eq!(FlowKey::decode(&bytes), Ok(parsed.key));
    }

    #[test]
    fn ethernet_ip_frames_with_random_tails_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..80), et in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x88a8)]) {
        let mut f = eth(et, &[]);
        let mut t = tail.clone();
        if let Some(b) = t.first_mut() { *b = (*b & 0x0f) | if et == 0x86dd { 0x60 } else { 0x40 }; }
        f.extend_from_slice(&t);
        let _ = FrameParser::new().parse(LinkType::Ethernet, &f);
    }
}
