//! Live capture for real: a veth pair into a network namespace made here, known UDP traffic
//! sent across it, and the probe must produce exactly that traffic. Needs root (or
//! CAP_NET_ADMIN) and `ip`; skipped with a message where namespaces are not permitted.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use netstream_testkit::broker::Broker;
use netstream_testkit::http;
use netstream_testkit::netns::Netns;
use netstream_testkit::process::KillOnDrop;
use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind, RecordValue};

const SENT: usize = 200;

#[test]
fn live_capture_on_a_veth_produces_exactly_the_traffic_sent() {
    let net = match Netns::create("pt") {
        Ok(n) => n,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace here ({e})");
            return;
        }
    };
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("live", 3).unwrap();
    let metrics = http::free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_netstream-probe"))
        .args(["--brokers", &broker.bootstrap(), "--topic", "live"])
        .args([
            "--interface",
            &net.host_if,
            "--filter",
            "udp and dst port 40999",
        ])
        .args([
            "--metrics-addr",
            &metrics.to_string(),
            "--node-name",
            "live-node",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start probe");
    let probe = KillOnDrop::new(child);
    assert!(
        http::wait_ok(metrics, "/readyz", Duration::from_secs(20)),
        "probe never became ready"
    );

    // Send from inside the namespace to the host side: it crosses the veth.
    common::send_udp_across(&net, SENT, "netstream", 40001, 40999);
    common::assert_captured(metrics, &net, SENT);
    check_exposition(metrics);
    // SIGTERM: flush and exit 0 with the summary.
    let records = common::stop_and_read(probe, &broker, "live", SENT);
    let (want_key, want_dir) = FlowKey::new(
        KeyKind::Ipv4,
        17,
        Endpoint::v4([198, 18, 0, 2], 40001),
        Endpoint::v4([198, 18, 0, 1], 40999),
    );
    assert_eq!(want_dir, Direction::BToA);
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for r in &records {
        assert_eq!(FlowKey::decode(&r.key), Ok(want_key));
        let v = RecordValue::decode(&r.value).unwrap();
        assert_eq!(v.meta.direction, Direction::BToA);
        assert_eq!(v.interface, net.host_if);
        assert_eq!(v.node, "live-node");
        assert_eq!(v.meta.wire_len as usize, v.frame.len());
        payloads.push(v.frame[v.frame.len() - 15..].to_vec());
    }
    payloads.sort();
    let want: Vec<Vec<u8>> = (0..SENT)
        .map(|i| format!("netstream-{i:05}").into_bytes())
        .collect();
    assert_eq!(payloads, want, "every datagram exactly once");
}

/// The probe's /metrics passes `promtool check metrics`.
fn check_exposition(addr: std::net::SocketAddr) {
    let Some(promtool) = netstream_testkit::tools::find("promtool", "NETSTREAM_PROMTOOL") else {
        netstream_testkit::tools::skip("promtool not found (Debian package prometheus)");
        return;
    };
    let (_, body) = http::get(addr, "/metrics").expect("metrics");
    for name in [
        "netstream_probe_packets_captured_total",
        "netstream_probe_bytes_captured_total",
        "netstream_probe_packets_dropped_total",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
