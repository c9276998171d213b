"""Every dashboard query against the real binaries: a tansu broker, the probe capturing live on
the loopback interface while UDP and TCP traffic flows, the processor counting the topic, and a
real Prometheus (Debian's 2.42) scraping both with the labels a Kubernetes scrape adds. Each
query must return data with the labels its panel groups by, and the traffic panels must show
traffic. A renamed metric or a broken query fails here.

Needs root (live capture), tansu (.tools/bin or NETSTREAM_TANSU), Prometheus, and the debug
binaries built by `cargo build` (scripts/test runs `cargo test` first, which builds them)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from test_dashboards import need  # noqa: E402
from test_dashboards_prometheus import api, check_every_query, free_port, running_prometheus  # noqa: E402

REPO = TESTS.parents[1]
TOPIC = "netstream.packets"


def binary(name: str) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / name


def tansu_path() -> str | None:
    env = os.environ.get("NETSTREAM_TANSU")
    if env:
        return env
    local = REPO / ".tools" / "bin" / "tansu"
    return str(local) if local.is_file() else shutil.which("tansu")


def wait_ok(url: str, timeout: float = 30) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


# Loopback addresses standing for cluster identities in the processor's identity file (all of
# 127/8 is routed to lo): a Deployment pod talks to a StatefulSet pod over TCP and UDP, and sends
# UDP to a named subnet and to an address nobody claims (external).
WEB, API, CORP, EXTERNAL = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
IDENTITIES = f"""
pods:
  - {{ namespace: shop, name: web-7d9f8c6b5-x2x4q, ips: [{WEB}], node: node-a,
      workload: {{ kind: deployment, name: web }} }}
  - {{ namespace: bank, name: api-0, ips: [{API}], node: node-a,
      workload: {{ kind: statefulset, name: api }} }}
nodes:
  - {{ name: node-a, ips: [127.0.0.1] }}
"""


class Traffic(threading.Thread):
    """UDP datagrams and short TCP connections between loopback addresses (see IDENTITIES),
    about 200 packets/s, until stopped (and never longer than two minutes)."""

    def __init__(self, udp_port: int, tcp_port: int):
        super().__init__(daemon=True)
        self.udp_port, self.tcp_port = udp_port, tcp_port
        self.stop = threading.Event()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((API, tcp_port))
        self.server.listen(16)
        self.server.settimeout(0.5)

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    conn.sendall(conn.recv(4096) or b"")
                except OSError:
                    pass

    def run(self):
        threading.Thread(target=self.serve, daemon=True).start()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((WEB, 0))
        deadline = time.time() + 120
        i = 0
        while not self.stop.is_set() and time.time() < deadline:
            dst = (API, CORP, EXTERNAL)[i % 3]
            udp.sendto(b"netstream-%06d" % i, (dst, self.udp_port))
            if i % 10 == 0:
                try:
                    with socket.create_connection((API, self.tcp_port), timeout=1,
                                                  source_address=(WEB, 0)) as c:
                        c.sendall(b"hello")
                        c.recv(16)
                except OSError:
                    pass
            i += 1
            time.sleep(0.01)
        udp.close()
        self.server.close()


@pytest.fixture(scope="module")
def real_targets(tmp_path_factory):
    need(os.geteuid() == 0, "live capture on lo needs root")
    for name in ("netstream-probe", "netstream-processor"):
        need(binary(name).is_file(), f"{binary(name)} not built (run cargo build first)")
    tansu = tansu_path()
    need(tansu is not None, "tansu not found (scripts/test installs it into .tools/bin)")
    tmp = tmp_path_factory.mktemp("real")
    procs = []
    traffic = None
    try:
        kport = free_port()
        url = f"tcp://127.0.0.1:{kport}"
        procs.append(subprocess.Popen(
            [tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "tansu.log", "w")))
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", kport), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("tansu did not start")
                time.sleep(0.1)
        subprocess.run([tansu, "topic", "create", TOPIC, "--partitions", "3", "--broker", url],
                       check=True, capture_output=True, timeout=30)
        brokers = f"127.0.0.1:{kport}"
        proc_addr = f"127.0.0.1:{free_port()}"
        probe_addr = f"127.0.0.1:{free_port()}"
        udp_port, tcp_port = free_port(), free_port()
        identities = tmp / "identities.yaml"
        identities.write_text(IDENTITIES)
        procs.append(subprocess.Popen(
            [binary("netstream-processor"), "--brokers", brokers, "--topic", TOPIC,
             "--group", "dashboards", "--metrics-addr", proc_addr,
             "--enrichment", "file", "--identity-file", str(identities),
             "--subnet-label", f"{CORP}/32=corp"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "processor.log", "w")))
        procs.append(subprocess.Popen(
            [binary("netstream-probe"), "--brokers", brokers, "--topic", TOPIC,
             "--interface", "lo", "--filter", f"udp port {udp_port} or tcp port {tcp_port}",
             "--metrics-addr", probe_addr, "--node-name", "node-a"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "probe.log", "w")))
        for addr, what in ((proc_addr, "processor"), (probe_addr, "probe")):
            if not wait_ok(f"http://{addr}/readyz"):
                pytest.fail(f"{what} not ready: {(tmp / f'{what}.log').read_text()[-2000:]}")
        traffic = Traffic(udp_port, tcp_port)
        traffic.start()
        yield [probe_addr, proc_addr]
    finally:
        if traffic:
            traffic.stop.set()
            traffic.join(timeout=5)
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def test_every_query_returns_real_data(real_targets, tmp_path):
    with running_prometheus(tmp_path, real_targets) as base:
        # Let a few scrapes see the traffic so rate() has two increasing samples.
        time.sleep(4)
        problems = check_every_query(base, nonzero_metrics={
            "netstream_protocol_packets_total",
            "netstream_protocol_bytes_total",
            "netstream_flow_bytes_total",
            "netstream_probe_packets_captured_total",
            "netstream_records_consumed_total",
            "netstream_workload_packets_total",
            "netstream_workload_bytes_total",
        })
        # The workload panels show exactly the identities of the traffic, none unknown.
        pairs = api(base, "/api/v1/query", query=(
            "sum by (src_namespace, src_workload, src_kind, dst_namespace, dst_workload, dst_kind, protocol) "
            "(netstream_workload_packets_total)"))["data"]["result"]
    assert not problems, "\n".join(problems)
    seen = {tuple(s["metric"].get(k, "") for k in ("src_namespace", "src_workload", "src_kind", "dst_namespace",
                                                    "dst_workload", "dst_kind", "protocol"))
            for s in pairs if float(s["value"][1]) > 0}
    assert seen == {
        ("shop", "web", "deployment", "bank", "api", "statefulset", "udp"),
        ("shop", "web", "deployment", "bank", "api", "statefulset", "tcp"),
        ("shop", "web", "deployment", "", "corp", "subnet", "udp"),
        ("shop", "web", "deployment", "", "external", "external", "udp"),
    }, seen
