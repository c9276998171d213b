"""Every dashboard query run by a real Prometheus server (Debian's 2.42) against synthetic
series shaped like the metric contract (names and labels of DESIGN.md, plus the namespace/pod/
node target labels a Kubernetes scrape adds): each query must return data, and each result
series must carry the labels the panel groups by and shows in its legend.

This checks the dashboards against the contract, not the binaries: the real-cluster suite
(e2e/cluster/run.sh) runs the same queries against the real probe and processor. To point this
harness at a real exporter instead, pass its address in NETSTREAM_DASHBOARD_TARGETS
(host:port[,host:port]); the synthetic one is then not started."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DASHBOARDS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(DASHBOARDS))

import queries  # noqa: E402
from test_dashboards import FILES, need  # noqa: E402

# (metric, type, [label sets]) of the contract.
FLOWS = [
    {"protocol": "tcp", "src_addr": "10.0.0.20", "src_port": "40000", "dst_addr": "10.0.0.9", "dst_port": "443"},
    {"protocol": "udp", "src_addr": "2001:db8::1", "src_port": "53", "dst_addr": "2001:db8::2", "dst_port": "5353"},
    {"protocol": "icmp", "src_addr": "10.0.0.1", "src_port": "0", "dst_addr": "10.0.0.2", "dst_port": "0"},
]
WORKLOADS = [
    {"src_namespace": "shop", "src_workload": "web", "src_kind": "deployment",
     "dst_namespace": "bank", "dst_workload": "api", "dst_kind": "statefulset", "protocol": "tcp", "dst_port": "8443"},
    {"src_namespace": "shop", "src_workload": "web", "src_kind": "deployment",
     "dst_namespace": "", "dst_workload": "external", "dst_kind": "external", "protocol": "tcp", "dst_port": "443"},
    {"src_namespace": "bank", "src_workload": "api", "src_kind": "statefulset",
     "dst_namespace": "", "dst_workload": "corp", "dst_kind": "subnet", "protocol": "udp", "dst_port": "53"},
]
SERIES = [
    ("netstream_flow_packets_total", "counter", FLOWS),
    ("netstream_flow_bytes_total", "counter", FLOWS),
    ("netstream_protocol_packets_total", "counter", [{"protocol": p} for p in ("tcp", "udp", "icmp", "arp")]),
    ("netstream_protocol_bytes_total", "counter", [{"protocol": p} for p in ("tcp", "udp", "icmp", "arp")]),
    ("netstream_flows_active", "gauge", [{}]),
    ("netstream_flows_evicted_total", "counter", [{"reason": "idle"}, {"reason": "capacity"}]),
    ("netstream_records_consumed_total", "counter", [{}]),
    ("netstream_records_invalid_total", "counter", [{"reason": "missing_key"}, {"reason": "empty_value"}]),
    ("netstream_probe_packets_captured_total", "counter", [{"interface": "eth0"}, {"interface": "eth1"}]),
    ("netstream_probe_bytes_captured_total", "counter", [{"interface": "eth0"}, {"interface": "eth1"}]),
    ("netstream_probe_packets_dropped_total", "counter",
     [{"interface": "eth0", "reason": r} for r in ("kernel", "interface", "queue_full", "produce_error")]),
    ("netstream_probe_records_produced_total", "counter", [{"interface": "eth0"}, {"interface": "eth1"}]),
    ("netstream_probe_packets_unparsed_total", "counter", [{"interface": "eth0"}]),
    ("netstream_probe_records_delivered_total", "counter", [{}]),
    ("netstream_probe_producer_queue_records", "gauge", [{}]),
    ("netstream_workload_packets_total", "counter", WORKLOADS),
    ("netstream_workload_bytes_total", "counter", WORKLOADS),
    ("netstream_workload_series_expired_total", "counter", [{}]),
    ("netstream_enrichment_synced", "gauge", [{}]),
]
START = time.time()


def exposition() -> str:
    """Counters grow with time, so rate() and increase() are positive."""
    t = time.time() - START
    lines = []
    for name, typ, label_sets in SERIES:
        lines.append(f"# HELP {name} synthetic {name}")
        lines.append(f"# TYPE {name} {typ}")
        for i, labels in enumerate(label_sets):
            lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
            value = 100 + i if typ == "gauge" else int((i + 1) * 1000 * (1 + t))
            lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")
    return "\n".join(lines) + "\n"


class Exporter(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = exposition().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, **params) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def running_prometheus(tmp, targets):
    """A real Prometheus scraping `targets` every second with the labels a Kubernetes pod scrape
    adds (namespace, pod, node); yields its base URL once every target has a few samples."""
    binary = shutil.which("prometheus")
    need(binary is not None, "prometheus not found (apt-get install prometheus)")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "netstream",
            "static_configs": [{"targets": [t], "labels": {"namespace": "netstream", "pod": f"netstream-{i}", "node": "node-a"}}
                               for i, t in enumerate(targets)],
        }],
    }
    (tmp / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                # Enough samples for rate(): a few scrapes of every target.
                r = api(base, "/api/v1/query", query='count_over_time(up{job="netstream"}[1m])')
                res = r["data"]["result"]
                if len(res) == len(targets) and min(float(s["value"][1]) for s in res) >= 4:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(tmp / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.5)
        else:
            pytest.fail(f"prometheus did not scrape in time: {(tmp / 'prometheus.log').read_text()[-2000:]}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    server = None
    targets = [t for t in os.environ.get("NETSTREAM_DASHBOARD_TARGETS", "").split(",") if t]
    if not targets:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        targets = [f"127.0.0.1:{server.server_address[1]}"]
    try:
        with running_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as base:
            yield base
    finally:
        if server:
            server.shutdown()


def check_every_query(base, nonzero_metrics=()):
    """Runs every non-external dashboard query; returns the problems found. Queries over
    `nonzero_metrics` only must also return a value above zero (traffic really flowed)."""
    rows = queries.extract([str(f) for f in FILES], {"namespace": "netstream"}, "1m", "1h", variables=True)
    problems = []
    checked = 0
    for q in rows:
        if q["external"]:
            continue  # kafka-exporter's lag is not part of the contract
        checked += 1
        r = api(base, "/api/v1/query", query=q["expr"])
        if r.get("status") != "success":
            problems.append(f"{q['dashboard']} / {q['panel']}: {r}")
            continue
        result = r["data"]["result"]
        if not result:
            problems.append(f"{q['dashboard']} / {q['panel']}: no data for {q['expr']}")
            continue
        for s in result:
            missing = [label for label in q["expected_labels"] if not s["metric"].get(label)]
            if missing:
                problems.append(f"{q['dashboard']} / {q['panel']}: result lacks {missing}: {s['metric']}")
                break
            value = float(s["value"][1])
            if value != value:  # NaN
                problems.append(f"{q['dashboard']} / {q['panel']}: NaN")
                break
        needs_traffic = bool(q["metrics"]) and set(q["metrics"]) <= set(nonzero_metrics)
        if needs_traffic and not any(float(s["value"][1]) > 0 for s in result):
            problems.append(f"{q['dashboard']} / {q['panel']}: all zero for {q['expr']}")
    assert checked >= 30, f"only {checked} queries"
    return problems


def test_every_query_returns_data_with_its_labels(prometheus):
    problems = check_every_query(prometheus)
    assert not problems, "\n".join(problems)


def test_namespace_filter_excludes_other_namespaces(prometheus):
    """With another namespace selected, every netstream panel is empty: $namespace really filters."""
    rows = queries.extract([str(f) for f in FILES], {"namespace": "elsewhere"}, "1m", "1h")
    for q in rows:
        if q["external"]:
            continue
        result = api(prometheus, "/api/v1/query", query=q["expr"])["data"]["result"]
        # count(...) of nothing is empty, and a ratio of empty vectors is empty too.
        assert result == [], f"{q['dashboard']} / {q['panel']} ignores $namespace: {q['expr']}"
