"""e2e/cluster (the real-cluster suite) cannot run here (no kind, no Docker engine): its
scripts are shellchecked, its skip path is exercised, and its manifests and values are
validated and cross-checked with what run.sh waits for."""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, need_modules, need_exe, render, validate_object

need_modules("yaml", "jsonschema")
import yaml  # noqa: E402

E2E = REPO / "e2e" / "cluster"
RUN = E2E / "run.sh"


@pytest.mark.parametrize("script", ["e2e/cluster/run.sh", "docker/build.sh", "charts/generate-manifests"])
def test_shellcheck(script):
    exe = need_exe("shellcheck", "apt-get install shellcheck")
    p = subprocess.run([exe, "-x", str(REPO / script)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr


def _path_without(tmp_path, *hidden):
    """A PATH with the usual tools but none of `hidden`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "cat", "grep", "python3", "env"):
        found = shutil.which(tool)
        if found and tool not in hidden:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_run_skips_cleanly_without_tools(tmp_path):
    env = {**os.environ, "PATH": _path_without(tmp_path, "docker", "kind", "kubectl")}
    env.pop("NETSTREAM_E2E_REQUIRE", None)
    p = subprocess.run(["bash", str(RUN)], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("SKIPPED: no docker/kind/kubectl (missing: docker kind kubectl)"), p.stdout


def test_run_fails_without_tools_when_required(tmp_path):
    env = {**os.environ, "PATH": _path_without(tmp_path, "docker", "kind", "kubectl"), "NETSTREAM_E2E_REQUIRE": "1"}
    p = subprocess.run(["bash", str(RUN)], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 1 and "FAILED" in p.stderr


def test_run_skips_without_a_docker_daemon(tmp_path):
    """docker/kind/kubectl present but `docker info` failing: skipped, not failed."""
    bin_dir = tmp_path / "fake"
    bin_dir.mkdir()
    for tool in ("docker", "kind", "kubectl"):
        f = bin_dir / tool
        f.write_text("#!/bin/sh\nexit 1\n")
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{_path_without(tmp_path, 'docker', 'kind', 'kubectl')}"}
    env.pop("NETSTREAM_E2E_REQUIRE", None)
    p = subprocess.run(["bash", str(RUN)], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stdout.startswith("SKIPPED: no docker/kind: the Docker daemon is not reachable"), p.stdout + p.stderr


def test_help():
    p = subprocess.run(["bash", str(RUN), "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "kind" in p.stdout and "SKIPPED" in p.stdout


@pytest.mark.parametrize("name", ["kafka.yaml", "traffic.yaml", "prometheus.yaml"])
def test_manifests_validate(name):
    objects = [d for d in yaml.safe_load_all((E2E / "manifests" / name).read_text()) if d]
    assert objects
    errors = [e for o in objects for e in validate_object(o)]
    assert not errors, "\n".join(errors)


def test_prometheus_config_parses(tmp_path):
    """promtool check config on the scrape config. Debian's promtool is built without
    Kubernetes service discovery, so the SD block is swapped for a static one: everything else
    (relabelings and their regexes) is checked as written."""
    promtool = need_exe("promtool", "apt-get install prometheus")
    cm = [d for d in yaml.safe_load_all((E2E / "manifests" / "prometheus.yaml").read_text()) if d and d["kind"] == "ConfigMap"][0]
    config = yaml.safe_load(cm["data"]["prometheus.yml"])
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
        job["static_configs"] = [{"targets": ["localhost:9090"]}]
    f = tmp_path / "prometheus.yml"
    f.write_text(yaml.safe_dump(config))
    p = subprocess.run([promtool, "check", "config", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    relabel = {r.get("target_label") for r in yaml.safe_load(cm["data"]["prometheus.yml"])["scrape_configs"][0]["relabel_configs"]}
    assert {"namespace", "pod", "node"} <= relabel, "the dashboards filter on these labels"


def test_values_and_run_agree(helm):
    values = yaml.safe_load((E2E / "values.yaml").read_text())
    render.chart().validate_schema(copy.deepcopy(values))
    objects = [d for d in yaml.safe_load_all(render.template(copy.deepcopy(values), namespace="netstream")["manifest"]) if d]
    errors = [e for o in objects for e in validate_object(o)]
    assert not errors, "\n".join(errors)
    run = RUN.read_text()
    np_ = [o for o in objects if o["kind"] == "NetProbe"][0]
    sa = [o for o in objects if o["kind"] == "StreamAnalysis"][0]
    assert f"netprobe/{np_['metadata']['name']}" in run and f"streamanalysis/{sa['metadata']['name']}" in run
    assert f"--topic {np_['spec']['kafka']['topic']}" in run
    # The bootstrap server is the Kafka Service of manifests/kafka.yaml, and its advertised listener.
    kafka = [d for d in yaml.safe_load_all((E2E / "manifests" / "kafka.yaml").read_text()) if d]
    svc = [d for d in kafka if d["kind"] == "Service" and d["metadata"]["name"] == "kafka"][0]
    host = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local:{svc['spec']['ports'][0]['port']}"
    assert np_["spec"]["kafka"]["bootstrapServers"] == [host]
    sts = [d for d in kafka if d["kind"] == "StatefulSet"][0]
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{host}"
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "apache/kafka:3.8.0"
    # kafka-storage format wants a 16-byte UUID in base64url.
    import base64
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # run.sh creates the topic
    # The images run.sh builds and loads are the ones the chart deploys.
    dep = [o for o in objects if o["kind"] == "Deployment"][0]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/netstream-dev/netstream-operator:e2e"
    assert re.search(r"REGISTRY=ghcr.io/netstream-dev TAG=e2e", run)


def test_run_checks_the_operator():
    """The issue-18 checks against the real cluster are present in run.sh."""
    run = RUN.read_text()
    values = yaml.safe_load((E2E / "values.yaml").read_text())["examples"]["streamAnalysis"]
    # Ready without KEDA / prometheus-operator: both CRDs looked up before the install.
    install = run.index('say "installing netstream')
    for crd in ("scaledobjects.keda.sh", "servicemonitors.monitoring.coreos.com"):
        assert -1 < run.find(crd) < install, crd
    ready = run.index("wait --for=condition=Ready streamanalysis/e2e-flows")
    for needle in ("{.status.observedGeneration}", "{.metadata.generation}", '@.type=="Ready")].reason}'):
        assert run.find(needle, ready) > ready, needle
    # Short names: stderr of `get sa` captured and checked, `get sta` lists the example.
    assert re.search(r"get sa 2>&1 >/dev/null\)", run) and '*"could also match"*' in run and "*Warning*" in run
    assert re.search(r"get sta .*streamanalysis\.netstream\.dev/e2e-flows", run)
    # Initial replicas; minReplicas above the API default so the check is not vacuous.
    assert "deployment/e2e-flows-processor -o jsonpath='{.spec.replicas}'" in run and "{.spec.minReplicas}" in run
    assert values["minReplicas"] > 1
    # Partitions from Kafka (3) and the HPA cap; maxReplicas above 3 so the cap is exercised.
    assert "--partitions 3" in run and "{.status.partitions}" in run and '[ "$partitions" = 3 ]' in run
    assert "hpa/e2e-flows-processor -o jsonpath='{.spec.maxReplicas}'" in run and '[ "$hpa_max" -le 3 ]' in run
    assert values["maxReplicas"] > 3
    # Every wait of the new checks is bounded by $timeout.
    assert "deadline=$((SECONDS + timeout))" in run[ready:run.index('say "generating traffic"')]


def test_kustomize_builds_the_install(tmp_path):
    """`kubectl kustomize manifests/` (offline) yields exactly the objects of install.yaml."""
    # Optional even under NETSTREAM_REQUIRE_TOOLS=1: Debian has no kubectl package.
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("SKIPPED: kubectl not found (optional: checks `kubectl kustomize manifests/`)")
    p = subprocess.run([kubectl, "kustomize", str(REPO / "manifests")], capture_output=True, text=True, timeout=60)
    if p.returncode != 0 and "unknown command" in p.stderr:
        pytest.skip("SKIPPED: this kubectl has no kustomize")
    assert p.returncode == 0, p.stderr
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    built = sorted(key(o) for o in yaml.safe_load_all(p.stdout) if o)
    want = sorted(key(o) for o in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if o)
    assert built == want
