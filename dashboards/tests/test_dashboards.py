"""Grafana dashboards (dashboards/*.json): structure, conventions, the metric contract, and every
panel query parsed by promtool (written as recording rules and checked with
`promtool check rules`, which parses the PromQL offline)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DASHBOARDS = Path(__file__).resolve().parents[1]
REPO = DASHBOARDS.parent
sys.path.insert(0, str(DASHBOARDS))

import queries  # noqa: E402

FILES = sorted(DASHBOARDS.glob("*.json"))

# The metric names of the design contract (DESIGN.md "Metrics", plus the probe metrics the README
# documents): users' PromQL relies on them.
CONTRACT = {
    "netstream_flow_packets_total", "netstream_flow_bytes_total",
    "netstream_protocol_packets_total", "netstream_protocol_bytes_total",
    "netstream_flows_active", "netstream_flows_evicted_total",
    "netstream_records_consumed_total", "netstream_records_invalid_total",
    "netstream_probe_packets_captured_total", "netstream_probe_packets_dropped_total",
    "netstream_probe_bytes_captured_total", "netstream_probe_records_produced_total",
    "netstream_probe_records_delivered_total", "netstream_probe_packets_unparsed_total",
    "netstream_probe_producer_queue_records",
    # Kubernetes enrichment (issue 8): who talks to whom, and whether the labels can be trusted.
    "netstream_workload_packets_total", "netstream_workload_bytes_total",
    "netstream_workload_series_expired_total", "netstream_enrichment_synced",
}
# Not ours: kafka-exporter's consumer lag (the panel's description says so).
EXTERNAL = {"kafka_consumergroup_lag"}


def need(ok: bool, what: str) -> None:
    if ok:
        return
    msg = f"SKIPPED: {what}"
    if os.environ.get("NETSTREAM_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{msg} (NETSTREAM_REQUIRE_TOOLS=1)")
    print(msg, file=sys.stderr)
    pytest.skip(msg)


def load(path):
    return json.loads(path.read_text())


def panels(d):
    return list(queries.walk_panels(d["panels"]))


def test_expected_dashboards():
    assert [f.name for f in FILES] == ["netstream-overview.json", "netstream-probe.json", "netstream-processor.json",
                                       "netstream-workloads.json"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_dashboard_conventions(path):
    d = load(path)
    assert d["uid"] == path.stem and d["title"].startswith("netstream / ")
    assert 36 <= d["schemaVersion"] <= 41
    assert d["id"] is None, "exported dashboards must not carry a database id"
    assert "netstream" in d["tags"]
    variables = queries.grafana_vars(d)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ns = variables["namespace"]
    assert ns["type"] == "query" and ns["definition"].startswith("label_values(") and ns["includeAll"] and ns["allValue"] == ".*"
    for v in variables.values():
        if v["type"] == "query":
            assert v["query"] == v["definition"] and queries.variable_query(v["query"]), v["name"]
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, v["name"]
    # No hard-coded data source anywhere: every reference is the ${datasource} variable
    # (or Grafana's built-in annotation source).
    text = path.read_text()
    for m in re.finditer(r'"uid":\s*"([^"]*)"', text):
        assert m.group(1) in ("${datasource}", "-- Grafana --", d["uid"]), f"hard-coded uid {m.group(1)}"
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels(d):
        assert "gridPos" in p and p.get("title"), p
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p.get("description"), f"{p['title']}: say what the panel shows"
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert "$namespace" in t["expr"], f"{p['title']}: filter by $namespace"
            legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", ""))
            labels = queries.result_labels(queries.substitute(t["expr"], queries.variable_values(d, {}), "1m", "1h"))
            assert set(legend) <= set(labels or []), f"{p['title']}: legend uses {legend}, query keeps {labels}"


def test_required_panels():
    titles = {f.stem: [p["title"] for p in panels(load(f))] for f in FILES}
    types = {f.stem: {p["title"]: p["type"] for p in panels(load(f))} for f in FILES}
    ov = types["netstream-overview"]
    assert ov["Packets / s by protocol"] == ov["Bytes / s by protocol"] == "timeseries"
    assert ov["Top 20 flows by bytes"] == ov["Top 20 flows by packets"] == "table"
    assert "Active flows" in ov and "Flow evictions / s by reason" in ov
    pr = titles["netstream-probe"]
    assert {"Drops / s by reason, node and interface", "Produced vs delivered records / s", "Producer queue depth"} <= set(pr)
    names = {v["name"] for v in load(DASHBOARDS / "netstream-probe.json")["templating"]["list"]}
    assert {"datasource", "namespace", "node", "interface"} <= names
    pc = titles["netstream-processor"]
    assert {"Records consumed / s by pod", "Invalid records / s by reason", "Replicas by namespace", "Consumer lag (kafka-exporter)"} <= set(pc)
    lag = [p for p in panels(load(DASHBOARDS / "netstream-processor.json")) if p["title"] == "Consumer lag (kafka-exporter)"][0]
    assert "kafka-exporter" in lag["description"] and "kafka_consumergroup_lag" in lag["description"]
    wl = types["netstream-workloads"]
    assert wl["Namespace to namespace"] == wl["Workload to workload"] == wl["Top external destinations"] == "table"
    assert wl["Namespace graph"] == wl["Workload graph"] == "nodeGraph"
    for p in panels(load(DASHBOARDS / "netstream-workloads.json")):
        if p["type"] == "nodeGraph":
            # Grafana's node graph reads an edges frame (id, source, target) and a nodes frame (id).
            labels = [queries.result_labels(queries.substitute(t["expr"], {"namespace": ".*", "src_namespace": ".*", "datasource": ""}, "1m", "1h"))
                      for t in p["targets"]]
            assert labels == [["id", "source", "target"], ["id"]], (p["title"], labels)


def test_metrics_are_the_contract():
    used = {m for q in queries.extract([str(f) for f in FILES]) for m in q["metrics"]}
    assert used - CONTRACT - EXTERNAL == set(), f"metrics outside the contract: {used - CONTRACT - EXTERNAL}"
    # Every contract metric is shown somewhere.
    assert CONTRACT - used == set(), f"contract metrics without a panel: {CONTRACT - used}"


def test_metrics_exist_in_the_sources():
    """Each netstream_* metric a dashboard reads is defined by the probe or processor sources."""
    src = {c: REPO / c / "src" for c in ("probe", "processor")}
    need(all(d.is_dir() for d in src.values()), "probe/src or processor/src missing")
    text = "\n".join(p.read_text(errors="replace") for d in src.values() for p in d.rglob("*.rs"))
    used = {m for q in queries.extract([str(f) for f in FILES]) for m in q["metrics"] if m.startswith("netstream_")}
    missing = sorted(m for m in used if f'"{m}"' not in text)
    assert not missing, f"not defined in probe/src or processor/src: {missing}"


def test_extraction_substitutes_every_variable():
    qs = queries.extract([str(f) for f in FILES])
    assert len(qs) >= 25
    for q in qs:
        # Every variable substituted; $1-style label_replace references stay.
        assert not re.search(r"\$(?!\d)", q["expr"]) and "[[" not in q["expr"], q
        assert q["expected_labels"] is not None
        assert set(q["legend_labels"]) <= set(q["expected_labels"]), q
        assert q["dashboard"] and q["panel"] and q["ref_id"]
    custom = queries.extract([str(DASHBOARDS / "netstream-overview.json")], {"namespace": "netstream"}, "30s", "10m")
    assert all('namespace=~"netstream"' in q["expr"] for q in custom)
    assert any("[10m]" in q["expr"] for q in custom) and any("[30s]" in q["expr"] for q in custom)
    flows = [q for q in custom if q["panel"] == "Top 20 flows by bytes"][0]
    assert flows["expected_labels"] == ["protocol", "src_addr", "src_port", "dst_addr", "dst_port"]


def test_result_labels():
    rl = queries.result_labels
    assert rl('sum by (a, b) (rate(x{y="1"}[1m]))') == ["a", "b"]
    assert rl("sum(rate(x[1m])) by (c)") == ["c"]
    assert rl('topk(5, sum by (p) (increase(x{n=~"a|b"}[1h])))') == ["p"]
    assert rl("sum(x) / clamp_min(sum(y) + sum(z), 1e-9)") == []
    assert rl("count(count by (namespace, pod) (x))") == []
    assert rl('max by (node) (q{a="b-c"})') == ["node"]
    assert rl("x{a='1'}") is None
    assert rl("sum without (pod) (x)") is None


def test_metric_names_and_variable_queries():
    assert queries.metric_names('sum by (a) (rate(x_total{b="c{d}"}[1m])) / clamp_min(y, 1e-9)') == ["x_total", "y"]
    assert queries.metric_names("group by (job) (up)") == ["up"]
    assert queries.variable_query("label_values(m{a=~\"$x\"}, node)") == ('group by (node) (m{a=~"$x"})', "node")
    assert queries.variable_query("label_values(node)") == ('group by (node) ({node!=""})', "node")
    assert queries.variable_query("query_result(up)") is None
    rows = queries.extract([str(f) for f in FILES], variables=True)
    variables = [q for q in rows if q["panel"].startswith("variable: ")]
    assert {q["ref_id"] for q in variables} == {"namespace", "protocol", "node", "interface", "pod", "src_namespace"}
    assert all(q["metrics"] and q["expected_labels"] == [q["ref_id"]] for q in variables)


def test_cli_prints_json_lines():
    p = subprocess.run([sys.executable, str(DASHBOARDS / "queries.py"), "--var", "namespace=demo", *map(str, FILES)],
                       capture_output=True, text=True, timeout=60, check=True)
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(rows) == len(queries.extract([str(f) for f in FILES]))
    assert {"dashboard", "panel", "expr", "expected_labels"} <= set(rows[0])
    # With no files it reads the dashboards next to it.
    p2 = subprocess.run([sys.executable, str(DASHBOARDS / "queries.py")], capture_output=True, text=True, timeout=60, check=True)
    assert len(p2.stdout.splitlines()) == len(rows)


@pytest.mark.parametrize("overrides", [{}, {"namespace": "netstream", "node": "kind-worker", "interface": "eth0", "pod": "a-0", "protocol": "tcp"},
                                       {"namespace": "(netstream|default)", "consumergroup": "custom-group"}],
                         ids=["all", "single-values", "multi-values"])
def test_promtool_parses_every_query(tmp_path, overrides):
    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool not found (apt-get install prometheus)")
    qs = queries.extract([str(f) for f in FILES], overrides, variables=True)
    # JSON is YAML: no YAML library needed for the rules file.
    rules = {"groups": [{"name": "netstream-dashboards", "rules": [
        {"record": f"netstream_dashboard_query_{i}", "expr": q["expr"]} for i, q in enumerate(qs)]}]}
    f = tmp_path / "rules.yaml"
    f.write_text(json.dumps(rules, indent=1))
    p = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(qs)} rules found" in p.stdout + p.stderr, p.stdout + p.stderr


def test_promtool_rejects_a_broken_query(tmp_path):
    """The check above is not vacuous: promtool does parse the expressions."""
    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool not found (apt-get install prometheus)")
    f = tmp_path / "rules.yaml"
    f.write_text(json.dumps({"groups": [{"name": "x", "rules": [{"record": "x", "expr": "sum by (a (rate(x[1m]))"}]}]}))
    p = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
