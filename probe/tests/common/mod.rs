//! Live-capture test steps shared by the capture and security tests: traffic across the
//! test-made veth, waiting for the probe to count it, and stopping the probe with the verdict
//! that every packet reached the topic.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use netstream_testkit::broker::{Broker, Record};
use netstream_testkit::http;
use netstream_testkit::netns::Netns;
use netstream_testkit::process::KillOnDrop;

/// Sends `count` UDP datagrams `PREFIX-%05d` from inside the namespace (198.18.0.2:`src_port`)
/// to the host side (198.18.0.1:`dst_port`): they cross the veth the probe captures on.
pub fn send_udp_across(net: &Netns, count: usize, prefix: &str, src_port: u16, dst_port: u16) {
    let sender = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('198.18.0.2',{src_port}))\n\
         for i in range({count}): s.sendto(b'{prefix}-%05d' % i, ('198.18.0.1', {dst_port}))\n"
    );
    let status = Command::new("ip")
        .args(["netns", "exec", &net.ns, "python3", "-c", &sender])
        .status()
        .expect("run sender");
    assert!(status.success(), "sender failed");
}

/// Waits (15 s at most) until the probe's /metrics counts `count` packets captured on the host
/// side of `net`, and asserts exactly that many.
pub fn assert_captured(metrics: SocketAddr, net: &Netns, count: usize) {
    let series = format!(
        "netstream_probe_packets_captured_total{{interface=\"{}\"}}",
        net.host_if
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut captured = 0.0;
    while Instant::now() < deadline {
        if let Some((200, body)) = http::get(metrics, "/metrics") {
            captured = http::sample(&body, &series).unwrap_or(0.0);
            if captured >= count as f64 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(captured, count as f64, "packets captured");
}

/// SIGTERM: the probe flushes and exits 0 with a summary saying all `count` packets were
/// produced and acknowledged; returns the records of `topic`, exactly `count` of them.
pub fn stop_and_read(probe: KillOnDrop, broker: &Broker, topic: &str, count: usize) -> Vec<Record> {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(probe.id() as i32, libc::SIGTERM);
    }
    let out = probe.into_inner().wait_with_output().expect("probe exit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "produced {count}, acknowledged {count}, failed 0, dropped 0"
        )),
        "{stdout}"
    );
    let records = broker
        .read_all(
            topic,
            count,
            Duration::from_secs(20),
            Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(records.len(), count, "exactly the traffic sent");
    records
}
