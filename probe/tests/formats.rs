//! The same packets written as classic pcap (µs and ns, little- and big-endian) and as pcapng
//! read back identically through the probe's libpcap source: timestamps, wire lengths, bytes.

use netstream_probe::source::{self, timestamp_ns};
use netstream_testkit::frames;
use netstream_testkit::pcap::{Format, PcapWriter};

fn packets() -> Vec<(u64, Vec<u8>, u32)> {
    (0..20u16)
        .map(|i| {
            let f = frames::udp4(
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                1000 + i,
                53,
                &vec![0; usize::from(i)],
            );
            // ns timestamps; every one a whole µs so the µs format can hold it exactly.
            let len = f.len() as u32 + u32::from(i % 3) * 100;
            (1_700_000_000_000_000_000 + u64::from(i) * 1_001_000, f, len)
        })
        .collect()
}

fn read(path: &std::path::Path) -> Vec<(u64, Vec<u8>, u32)> {
    let mut src = source::open_file(path, None).expect("open");
    let mut out = Vec::new();
    while let Ok(p) = src.capture.next_packet() {
        out.push((
            timestamp_ns(p.header, src.nanos),
            p.data.to_vec(),
            p.header.len,
        ));
    }
    out
}

#[test]
fn every_format_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let want = packets();
    let formats = [
        (
            "us-le.pcap",
            Format::Pcap {
                nanos: false,
                big_endian: false,
            },
        ),
        (
            "us-be.pcap",
            Format::Pcap {
                nanos: false,
                big_endian: true,
            },
        ),
        (
            "ns-le.pcap",
            Format::Pcap {
                nanos: true,
                big_endian: false,
            },
        ),
        (
            "ns-be.pcap",
            Format::Pcap {
                nanos: true,
                big_endian: true,
            },
        ),
        ("ng.pcapng", Format::Pcapng),
    ];
    for (name, format) in formats {
        let mut w = PcapWriter::with_format(1, 65535, format);
        for (ts, f, len) in &want {
            w.packet_ns(*ts, f, *len);
        }
        let path = dir.path().join(name);
        w.write_to(&path).unwrap();
        assert_eq!(read(&path), want, "{name}");
    }
}

#[test]
fn link_type_upper_bits_are_masked_as_libpcap_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fcs.pcap");
    // 0x30000001: FCS-length bits set, link type 1 (Ethernet) below them.
    PcapWriter::new(0x3000_0001, 65535)
        .packet(1, &frames::arp())
        .write_to(&path)
        .unwrap();
    let src = source::open_file(&path, None).expect("open");
    assert_eq!(src.link, netstream_wire::LinkType::Ethernet);
}
