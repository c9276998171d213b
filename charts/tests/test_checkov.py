"""checkov (kubernetes framework, offline) on everything netstream deploys: what the chart renders
(over the values matrix, and manifests/install.yaml) with .checkov.yaml, and what the operator
creates at runtime for manifests/examples/*.yaml (probe DaemonSet, processor Deployment, ...),
rendered by `cargo run -p netstream-operator --example render_examples`, with
.checkov-operator-objects.yaml. Every skip in those files carries a reason, and must still be
needed: a skipped check that no longer fails is an error (remove the skip)."""
from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, need_modules, need_exe, render, validate_object

need_modules("yaml", "jsonschema")
import yaml  # noqa: E402
from test_chart import MATRIX

CHART_CONFIG = REPO / ".checkov.yaml"
RUNTIME_CONFIG = REPO / ".checkov-operator-objects.yaml"


def skips(config: Path) -> dict[str, str]:
    """check id -> reason (the comment right above the entry)."""
    out, reason = {}, None
    for line in config.read_text().splitlines():
        s = line.strip()
        m = re.match(r"#\s*(CKV2?_K8S_\d+)\b(.*)", s)
        if m:
            reason = (m.group(1), m.group(2).strip())
            continue
        m = re.match(r"-\s*(CKV2?_K8S_\d+)\s*$", s)
        if m:
            assert reason and reason[0] == m.group(1) and len(reason[1]) > 20, \
                f"{config.name}: {m.group(1)} needs a '# {m.group(1)} \"title\": reason' comment above it"
            out[m.group(1)] = reason[1]
            reason = None
    return out


def run_checkov(directory: Path, config: Path | None) -> dict:
    exe = need_exe("checkov", "pip install checkov (scripts/requirements-test.txt)")
    cmd = [exe, "--framework", "kubernetes", "--skip-download", "-d", str(directory), "-o", "json", "--quiet"]
    if config is not None:
        cmd = [exe, "--config-file", str(config), "-d", str(directory), "-o", "json"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "PYTHONWARNINGS": "ignore"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=directory)
    try:
        report = json.loads(p.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov output is not JSON (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    reports = report if isinstance(report, list) else [report]
    k8s = [r for r in reports if r.get("check_type") == "kubernetes"]
    assert k8s, f"checkov produced no kubernetes report: {p.stdout[-2000:]}"
    return k8s[0]


def failures(report: dict) -> list[str]:
    return [f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
            for c in report["results"]["failed_checks"]]


@functools.lru_cache(maxsize=None)
def chart_dir(tmp_root: str) -> Path:
    d = Path(tmp_root) / "chart"
    d.mkdir(parents=True, exist_ok=True)
    for name, values in MATRIX.items():
        (d / f"{name}.yaml").write_text(render.template(copy.deepcopy(values))["manifest"])
    (d / "install.yaml").write_text((REPO / "manifests" / "install.yaml").read_text())
    return d


@pytest.fixture(scope="module")
def rendered_chart_dir(helm, tmp_path_factory) -> Path:
    return chart_dir(str(tmp_path_factory.mktemp("checkov")))


@pytest.fixture(scope="module")
def operator_objects_dir(tmp_path_factory) -> Path:
    cargo = need_exe("cargo", "install Rust (https://rustup.rs)")
    p = subprocess.run(
        [cargo, "run", "--quiet", "--locked", "-p", "netstream-operator", "--example", "render_examples"],
        cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, f"render_examples failed:\n{p.stderr[-3000:]}"
    d = tmp_path_factory.mktemp("operator-objects")
    (d / "objects.yaml").write_text(p.stdout)
    return d


def test_skip_files_give_reasons():
    assert skips(CHART_CONFIG)
    assert skips(RUNTIME_CONFIG)


def test_chart_passes_checkov(rendered_chart_dir):
    report = run_checkov(rendered_chart_dir, CHART_CONFIG)
    summary = report["summary"]
    assert not failures(report), "\n".join(failures(report))
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 20 and summary["passed"] >= 100, summary


def test_chart_skips_are_all_needed(rendered_chart_dir):
    report = run_checkov(rendered_chart_dir, None)
    failing = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert failing == set(skips(CHART_CONFIG)), (
        f"failing without skips: {sorted(failing)}; skipped in .checkov.yaml: {sorted(skips(CHART_CONFIG))}")


def test_operator_objects_validate(operator_objects_dir):
    objects = [d for d in yaml.safe_load_all((operator_objects_dir / "objects.yaml").read_text()) if d]
    kinds = sorted({o["kind"] for o in objects})
    for k in ("DaemonSet", "Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler", "ScaledObject",
              "TriggerAuthentication", "ServiceMonitor"):
        assert k in kinds, f"{k} not rendered for manifests/examples (got {kinds})"
    errors = [e for o in objects for e in validate_object(o)]
    assert not errors, "\n".join(errors)


def test_operator_objects_pass_checkov(operator_objects_dir):
    report = run_checkov(operator_objects_dir, RUNTIME_CONFIG)
    assert not failures(report), "\n".join(failures(report))
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] >= 100, report["summary"]


def test_operator_object_skips_are_all_needed(operator_objects_dir):
    report = run_checkov(operator_objects_dir, None)
    failing = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert failing == set(skips(RUNTIME_CONFIG)), (
        f"failing without skips: {sorted(failing)}; skipped: {sorted(skips(RUNTIME_CONFIG))}")
    # The probe-only skips apply to the probe DaemonSet alone: processors and everything else
    # pass the host-network / root / capability checks.
    probe_only = {"CKV_K8S_19", "CKV_K8S_26", "CKV_K8S_25", "CKV_K8S_23", "CKV_K8S_40"}
    for c in report["results"]["failed_checks"]:
        if c["check_id"] in probe_only:
            assert c["resource"].startswith("DaemonSet."), c["resource"]
        # The API token is mounted only into processors that do Kubernetes enrichment.
        if c["check_id"] == "CKV_K8S_38":
            assert c["resource"].startswith("Deployment.") and "-processor" in c["resource"], c["resource"]
