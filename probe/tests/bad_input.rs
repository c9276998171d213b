//! Bad input gets one clear error line naming the problem and a non-zero exit; a file that is
//! merely damaged loses nothing but the damaged part.

use std::path::Path;
use std::process::{Command, Output};

use netstream_testkit::broker::Broker;
use netstream_testkit::frames;
use netstream_testkit::pcap::PcapWriter;

fn probe(args: &[&str], files: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netstream-probe"));
    cmd.args(args).args(["--metrics-addr", ""]);
    for f in files {
        cmd.arg("--pcap").arg(f);
    }
    cmd.output().expect("run probe")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Errors caught before any broker is contacted (the address is never dialled).
#[test]
fn file_and_filter_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("usb.pcap");
    PcapWriter::new(189, 65535)
        .packet(1, &[0u8; 40])
        .write_to(&unknown)
        .unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").unwrap();
    let ok = dir.path().join("ok.pcap");
    PcapWriter::ethernet()
        .packet(1, &frames::udp4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b""))
        .write_to(&ok)
        .unwrap();
    let missing = dir.path().join("missing.pcap");
    let brokers = ["--brokers", "127.0.0.1:9"];

    let cases: [(&[&Path], &[&str], &str); 5] = [
        (&[&unknown], &[], "unsupported link type 189"),
        (&[&empty], &[], "cannot read capture file"),
        (&[&garbage], &[], "cannot read capture file"),
        (&[&missing], &[], "missing.pcap"),
        (
            &[&ok],
            &["--filter", "tcp port"],
            "invalid --filter \"tcp port\"",
        ),
    ];
    for (files, extra, want) in cases {
        let mut args = brokers.to_vec();
        args.extend_from_slice(extra);
        let out = probe(&args, files);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{files:?}: {err}");
        assert!(err.contains(want), "{files:?}: want {want:?} in {err}");
        assert!(!err.contains("panicked"), "{files:?} must not panic: {err}");
        assert!(out.stdout.is_empty(), "nothing produced for {files:?}");
    }
}

#[test]
fn broker_down_at_start_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.pcap");
    PcapWriter::ethernet()
        .packet(1, &frames::udp4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b""))
        .write_to(&ok)
        .unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let out = probe(&["--brokers", &addr, "--connect-timeout", "2s"], &[&ok]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot reach the Kafka broker at {addr}")),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 20, "gave up in bounded time");
}

#[test]
fn damaged_files_lose_only_the_damaged_part() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("bad-input", 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let brokers = broker.bootstrap();
    let args = ["--brokers", brokers.as_str(), "--topic", "bad-input"];

    // A valid header and no packets: nothing to do, success.
    let header_only = dir.path().join("header-only.pcap");
    PcapWriter::ethernet().write_to(&header_only).unwrap();
    let out = probe(&args, &[&header_only]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("read 0 packets"));

    // Three whole packets, then a record cut in the middle (a capture killed mid-write).
    let mut w = PcapWriter::ethernet();
    for i in 0..3u16 {
        w.packet(
            u64::from(i),
            &frames::udp4([1, 1, 1, 1], [2, 2, 2, 2], i, 53, b"abc"),
        );
    }
    let mut bytes = w.bytes().to_vec();
    let mut tail = PcapWriter::ethernet();
    tail.packet(
        9,
        &frames::udp4([1, 1, 1, 1], [2, 2, 2, 2], 9, 53, b"abcdef"),
    );
    bytes.extend_from_slice(&tail.bytes()[24..24 + 30]);
    let truncated = dir.path().join("truncated.pcap");
    std::fs::write(&truncated, &bytes).unwrap();

    // Junk frames: too short for Ethernet, IPv4 EtherType with garbage, all still produced.
    let junk = dir.path().join("junk.pcap");
    let mut w = PcapWriter::ethernet();
    w.packet(1, &[0xde, 0xad]);
    let mut bogus_ip = frames::udp4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b"");
    bogus_ip[14] = 0x41; // IPv4 with IHL 1
    w.packet(2, &bogus_ip);
    w.write_to(&junk).unwrap();

    let out = probe(&args, &[&truncated, &junk]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(
        stdout.contains("read 5 packets")
            && stdout.contains("produced 5, acknowledged 5, failed 0"),
        "{stdout}"
    );
    assert!(stdout.contains("unparsed 2"), "{stdout}");
    assert!(
        stdout.contains("truncated file(s): truncated.pcap"),
        "{stdout}"
    );
    let records = broker
        .read_all(
            "bad-input",
            5,
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(500),
        )
        .unwrap();
    assert_eq!(records.len(), 5);
}
