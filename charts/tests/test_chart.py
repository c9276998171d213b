"""The Helm chart: lint, values schema, rendering over a matrix of values, Kubernetes schema
validation (kubernetes-validate --strict, Kubernetes 1.33 and 1.37), custom resources against
our CRDs, and the single sources it must follow (RBAC, CRDs, dashboards, images)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conftest import CHART, K8S_VERSIONS, REPO, need_modules, render, validate_object

need_modules("yaml", "jsonschema")
import yaml  # noqa: E402

APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

ALL_MONITORS = {
    "labels": {"release": "prometheus"},
    "scrapeTimeout": "10s",
    "operator": {"serviceMonitor": True, "podMonitor": True},
    "probe": {"podMonitor": True},
    "processor": {"podMonitor": True},
}

# name -> values. Together they render every template branch.
MATRIX: dict[str, dict] = {
    "default": {},
    "examples": {"examples": {"enabled": True}},
    "monitors": {"monitoring": ALL_MONITORS},
    "examples-monitored": {
        "examples": {
            "enabled": True,
            "namespace": "netstream",
            "kafka": {"bootstrapServers": ["kafka-0.kafka.kafka.svc:9092", "kafka-1.kafka.kafka.svc:9092"], "topic": "packets"},
            "netProbe": {"name": "edge", "interfaces": ["eth0", "eth1"], "filter": "tcp or udp", "snaplen": 128, "metricsPort": 9190},
            "streamAnalysis": {"name": "edge-flows", "minReplicas": 2, "maxReplicas": 6, "metricsPort": 9191, "serviceMonitor": True},
        },
        "monitoring": ALL_MONITORS,
    },
    "single-replica-no-leader-election": {
        "operator": {"replicas": 1, "leaderElection": {"enabled": False, "leaseName": "netstream-operator"}},
        "networkPolicy": {"enabled": False},
        "metrics": {"service": {"enabled": False, "port": 8080}},
        "dashboards": {"enabled": False},
    },
    "external-rbac": {"rbac": {"create": False, "processorRoles": {"labels": {}}},
                      "serviceAccount": {"create": False, "name": "my-operator"}},
    "customized": {
        "fullnameOverride": "ns",
        "commonLabels": {"team": "network"},
        "imagePullSecrets": ["regcred"],
        "operator": {
            "image": {"repository": "registry.example/netstream-operator", "tag": "dev", "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
            "leaderElection": {"enabled": True, "leaseName": "ns-leader"},
            "logFormat": "text",
            "logLevel": "debug",
            "metricsPort": 9443,
            "extraEnv": [{"name": "EXTRA", "value": "1"}],
            "podAnnotations": {"example.com/a": "b"},
            "podLabels": {"tier": "control"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "netstream-operator"}}}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                                           "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "netstream-operator"}}}],
            "priorityClassName": "system-cluster-critical",
            "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
        },
        "probe": {"image": {"repository": "registry.example/probe", "tag": "", "digest": "sha256:" + "b" * 64}},
        "processor": {"image": {"repository": "registry.example/processor", "tag": "1.2.3", "digest": ""}},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
        "rbac": {"create": True, "processorRoles": {"labels": {"example.com/policy": "read-only"}}},
        "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
        "metrics": {"service": {"enabled": True, "port": 9443}},
        "dashboards": {"namespace": "grafana", "labels": {"grafana_dashboard": "1"}, "annotations": {"grafana_folder": "netstream"}},
    },
}


def docs(manifest: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(manifest) if d]


@pytest.fixture(scope="module")
def rendered(helm) -> dict[str, dict]:
    """name -> {"objects": [...], "notes": str, "manifest": str} for every matrix entry."""
    out = {}
    for name, values in MATRIX.items():
        release = render.template(copy.deepcopy(values))
        out[name] = {"objects": docs(release["manifest"]), "notes": release.get("notes", ""), "manifest": release["manifest"]}
    return out


def find(objects, kind, name=None):
    hits = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert hits, f"no {kind} {name or ''} in {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return hits


# --------------------------------------------------------------------------- lint and schema

@pytest.mark.parametrize("kube_version", [f"v{v}" for v in K8S_VERSIONS])
def test_lint_clean(helm, kube_version):
    for name, values in MATRIX.items():
        report = helm.lint(str(CHART), copy.deepcopy(values), strict=True, kube_version=kube_version,
                           namespace="netstream-system")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
        # The only accepted finding is the informational "icon is recommended" (no project logo yet).
        infos = [m["error"] for m in report["messages"] if m["severity"] < 2]
        assert not problems, f"lint {name} ({kube_version}): {problems}"
        assert set(infos) <= {"icon is recommended"}, infos


def _schema_paths(schema, prefix=""):
    """Dotted paths of every property the schema declares."""
    out = set()
    for k, v in schema.get("properties", {}).items():
        p = f"{prefix}{k}"
        out.add(p)
        out |= _schema_paths(v, p + ".")
    return out


def _value_paths(values, prefix=""):
    out = set()
    for k, v in values.items():
        p = f"{prefix}{k}"
        out.add(p)
        # maps of free-form keys (labels, annotations, nodeSelector, resources, ...) end here
        if isinstance(v, dict) and v and not any(s in p for s in ("labels", "Labels", "annotations", "Annotations",
                                                               "nodeSelector", "resources", "affinity")):
            out |= _value_paths(v, p + ".")
    return out


def test_values_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = _value_paths(values) - _schema_paths(schema)
    assert not missing, f"values.yaml keys without a schema entry: {sorted(missing)}"

    def walk(s, path):
        if s.get("type") == "object" and "properties" in s:
            assert s.get("additionalProperties") is False, f"{path}: additionalProperties must be false"
            for k, v in s["properties"].items():
                assert "description" in v or "anyOf" in v and "description" in v, f"{path}.{k}: no description"
                walk(v, f"{path}.{k}")

    for k, v in schema["properties"].items():
        walk(v, k)


def test_values_schema_accepts_the_matrix_and_rejects_mistakes(helm):
    chart = render.chart()
    for name, values in MATRIX.items():
        chart.validate_schema(copy.deepcopy(values))
    bad = [
        {"operator": {"replica": 2}},                       # typo
        {"unknownTopLevel": True},
        {"operator": {"logFormat": "xml"}},
        {"operator": {"image": {"repository": "x", "tag": "", "digest": "sha256:nothex", "pullPolicy": "Always"}}},
        {"examples": {"enabled": True, "kafka": {"bootstrapServers": ["no-port"], "topic": "t"}}},
        {"examples": {"netProbe": {"snaplen": 10}}},
        {"monitoring": {"interval": "soon"}},
    ]
    for values in bad:
        with pytest.raises(helm.HelmError):
            chart.validate_schema(values)
        with pytest.raises(helm.HelmError):
            render.template(values)


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("name", list(MATRIX))
def test_rendered_objects_validate(rendered, name):
    """kubernetes-validate --strict (1.33.0 and 1.37.0; a missing schema is an error), our
    CRDs' openAPIV3Schema for the example resources, structural schemas for ServiceMonitor and
    PodMonitor (prometheus-operator publishes no schema kubernetes-validate knows)."""
    objects = rendered[name]["objects"]
    assert objects
    errors = [e for o in objects for e in validate_object(o)]
    assert not errors, "\n".join(errors)


def test_crds_validate(helm):
    errors = []
    for _, data in render.crd_documents():
        for o in docs(data):
            errors += validate_object(o)
    assert not errors, "\n".join(errors)


def test_namespaced_objects_carry_the_release_namespace(rendered):
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for name, r in rendered.items():
        for o in r["objects"]:
            if o["kind"] in cluster_scoped:
                assert "namespace" not in o["metadata"]
                continue
            want = {"ConfigMap": MATRIX[name].get("dashboards", {}).get("namespace") or "netstream-system",
                    "NetProbe": MATRIX[name].get("examples", {}).get("namespace") or "netstream-system",
                    "StreamAnalysis": MATRIX[name].get("examples", {}).get("namespace") or "netstream-system"}
            assert o["metadata"].get("namespace") == want.get(o["kind"], "netstream-system"), (name, o["kind"])


def test_manifests_examples_validate_against_crds():
    """manifests/examples/*.yaml (kept by hand) must stay valid for crds/."""
    files = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
    assert files
    errors = []
    for f in files:
        assert f.read_text().lstrip().startswith("#"), f"{f.name}: start with a comment saying what it shows"
        for o in docs(f.read_text()):
            assert o["apiVersion"] == "netstream.dev/v1alpha1", f.name
            errors += [f"{f.name}: {e}" for e in validate_object(o)]
    assert not errors, "\n".join(errors)


def test_cel_rules_are_enforced():
    """The CRDs' CEL rules run on our custom resources (after defaulting), like at admission."""
    ok = {"apiVersion": "netstream.dev/v1alpha1", "kind": "StreamAnalysis", "metadata": {"name": "a"},
          "spec": {"probeRef": {"name": "p"}}}
    assert validate_object(ok) == []
    bad = copy.deepcopy(ok)
    bad["metadata"]["name"] = "x" * 41
    bad["spec"].update({"kafka": {"bootstrapServers": ["k:9092"], "properties": {"sasl.password": "secret"},
                                  "tls": {"secretName": "t", "certKey": "tls.crt"}},
                        "minReplicas": 5})  # default maxReplicas is 4
    errors = "\n".join(validate_object(bad))
    for message in ("at most 40 characters", "exactly one of spec.kafka and spec.probeRef",
                    "minReplicas must be less than or equal", "credentials must not be set",
                    "set both certKey and keyKey"):
        assert message in errors, errors


# --------------------------------------------------------------------------- single sources

def _yaml_docs(path: Path) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text()) if d}


def test_rbac_rules_are_operator_rbac_file(rendered):
    """The chart's rules are exactly operator/rbac/clusterrole.yaml's (the single source)."""
    link = CHART / "files" / "operator-rbac.yaml"
    source = REPO / "operator" / "rbac" / "clusterrole.yaml"
    assert link.resolve() == source.resolve() or link.read_bytes() == source.read_bytes()
    want = _yaml_docs(source)
    objects = rendered["default"]["objects"]
    # Same object names as the plain operator install with release "netstream".
    name = want["ClusterRole"]["metadata"]["name"]
    assert find(objects, "ClusterRole", name)[0]["rules"] == want["ClusterRole"]["rules"]
    assert find(objects, "Role")[0]["rules"] == want["Role"]["rules"]
    assert find(objects, "Role")[0]["metadata"]["name"] == want["Role"]["metadata"]["name"]


PROCESSOR_ROLES = ("netstream-processor-reader", "netstream-processor-nodes")


def test_processor_roles_are_the_operator_file_and_read_only(rendered):
    """The enrichment ClusterRoles come verbatim from operator/rbac/processor-clusterroles.yaml,
    keep their fixed names (the operator binds them by name; its `bind` rule names exactly
    these), grant only get/list/watch, and are rendered whenever the operator's RBAC is."""
    link = CHART / "files" / "processor-rbac.yaml"
    source = REPO / "operator" / "rbac" / "processor-clusterroles.yaml"
    assert link.resolve() == source.resolve() or link.read_bytes() == source.read_bytes()
    want = {d["metadata"]["name"]: d for d in yaml.safe_load_all(source.read_text()) if d}
    assert set(want) == set(PROCESSOR_ROLES)
    for name, values in MATRIX.items():
        objects = rendered[name]["objects"]
        roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
        if not values.get("rbac", {}).get("create", True):
            assert not set(PROCESSOR_ROLES) & set(roles), name
            continue
        for role in PROCESSOR_ROLES:
            assert roles[role]["rules"] == want[role]["rules"], (name, role)
            for rule in roles[role]["rules"]:
                assert rule["verbs"] == ["get", "list", "watch"], (name, role, rule)
        # The operator's own ClusterRole may bind exactly these two, nothing else.
        operator_role = next(r for n, r in roles.items() if n not in PROCESSOR_ROLES)
        binds = [r for r in operator_role["rules"] if "bind" in r["verbs"]]
        assert binds == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                          "resourceNames": list(PROCESSOR_ROLES), "verbs": ["bind"]}], name
    labels = {o["metadata"]["name"]: o["metadata"]["labels"] for o in rendered["customized"]["objects"]
              if o["kind"] == "ClusterRole"}
    for role in PROCESSOR_ROLES:
        assert labels[role]["team"] == "network" and labels[role]["app.kubernetes.io/component"] == "processor"
        assert labels[role]["example.com/policy"] == "read-only", labels[role]


def test_custom_lease_name_changes_only_resource_names(rendered):
    want = _yaml_docs(REPO / "operator" / "rbac" / "clusterrole.yaml")["Role"]["rules"]
    objects = rendered["customized"]["objects"]
    got = find(objects, "Role")[0]["rules"]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if "resourceNames" in w:
            assert g["resourceNames"] == ["ns-leader"]
            g = {k: v for k, v in g.items() if k != "resourceNames"}
            w = {k: v for k, v in w.items() if k != "resourceNames"}
        assert g == w
    env = {e["name"]: e for e in find(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NETSTREAM_LEASE_NAME"]["value"] == "ns-leader"


def test_no_rbac_without_rbac_create(rendered):
    kinds = {o["kind"] for o in rendered["external-rbac"]["objects"]}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    dep = find(rendered["external-rbac"]["objects"], "Deployment")[0]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "my-operator"


def test_chart_crds_are_the_top_level_crds(helm):
    top = sorted((REPO / "crds").glob("*.yaml"))
    chart_crds = render.crd_documents()
    assert [n for n, _ in chart_crds] == [p.name for p in top]
    for (name, data), path in zip(chart_crds, top):
        assert data == path.read_text(), f"charts/netstream/crds/{name} differs from crds/{name}"
    link = CHART / "crds"
    assert link.resolve() == (REPO / "crds").resolve() or all(
        (link / p.name).read_bytes() == p.read_bytes() for p in top)


def test_dashboards_are_configmaps_from_dashboards_dir(rendered):
    files = sorted((REPO / "dashboards").glob("*.json"))
    assert len(files) >= 3
    cms = [o for o in rendered["default"]["objects"] if o["kind"] == "ConfigMap"]
    by_key = {k: (cm, v) for cm in cms for k, v in cm["data"].items()}
    assert sorted(by_key) == [f.name for f in files]
    for f in files:
        cm, data = by_key[f.name]
        assert json.loads(data) == json.loads(f.read_text())
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    custom = [o for o in rendered["customized"]["objects"] if o["kind"] == "ConfigMap"]
    assert all(c["metadata"]["annotations"] == {"grafana_folder": "netstream"} for c in custom)
    assert not [o for o in rendered["single-replica-no-leader-election"]["objects"] if o["kind"] == "ConfigMap"]


# --------------------------------------------------------------------------- the operator

def _operator(objects):
    dep = find(objects, "Deployment")[0]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    return dep, c, {e["name"]: e for e in c["env"]}


def test_default_images_follow_app_version(rendered):
    dep, c, env = _operator(rendered["default"]["objects"])
    assert c["image"] == f"ghcr.io/netstream-dev/netstream-operator:{APP_VERSION}"
    assert env["NETSTREAM_PROBE_IMAGE"]["value"] == f"ghcr.io/netstream-dev/netstream-probe:{APP_VERSION}"
    assert env["NETSTREAM_PROCESSOR_IMAGE"]["value"] == f"ghcr.io/netstream-dev/netstream-processor:{APP_VERSION}"
    # appVersion is the workspace version, so images and binaries agree.
    cargo = (REPO / "Cargo.toml").read_text()
    assert f'version = "{APP_VERSION}"' in cargo


def test_image_overrides(rendered):
    _, c, env = _operator(rendered["customized"]["objects"])
    assert c["image"] == "registry.example/netstream-operator@sha256:" + "a" * 64
    assert c["imagePullPolicy"] == "Always"
    assert env["NETSTREAM_PROBE_IMAGE"]["value"] == "registry.example/probe@sha256:" + "b" * 64
    assert env["NETSTREAM_PROCESSOR_IMAGE"]["value"] == "registry.example/processor:1.2.3"


def test_operator_flags_from_values(rendered):
    dep, c, env = _operator(rendered["default"]["objects"])
    assert dep["spec"]["replicas"] == 2
    assert env["NETSTREAM_LEADER_ELECTION"]["value"] == "true"
    assert env["NETSTREAM_LEASE_NAME"]["value"] == "netstream-operator"
    assert env["NETSTREAM_LEASE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["NETSTREAM_METRICS_ADDR"]["value"] == "0.0.0.0:8080"
    assert c["ports"][0]["containerPort"] == 8080
    find(rendered["default"]["objects"], "PodDisruptionBudget")

    dep, c, env = _operator(rendered["single-replica-no-leader-election"]["objects"])
    assert dep["spec"]["replicas"] == 1
    assert env["NETSTREAM_LEADER_ELECTION"]["value"] == "false"
    kinds = {o["kind"] for o in rendered["single-replica-no-leader-election"]["objects"]}
    assert "Role" not in kinds and "PodDisruptionBudget" not in kinds and "Service" not in kinds
    assert "NetworkPolicy" not in kinds

    _, c, env = _operator(rendered["customized"]["objects"])
    assert env["NETSTREAM_METRICS_ADDR"]["value"] == "0.0.0.0:9443"
    assert env["NETSTREAM_LOG_FORMAT"]["value"] == "text"
    assert env["RUST_LOG"]["value"] == "debug"
    assert env["EXTRA"]["value"] == "1"


def test_operator_matches_plain_operator_install(rendered):
    """operator/deploy/operator.yaml is the hand-written install; the chart's Deployment keeps
    its security settings, probes and env (and may add more)."""
    plain = [d for d in yaml.safe_load_all((REPO / "operator" / "deploy" / "operator.yaml").read_text()) if d]
    pdep = [d for d in plain if d["kind"] == "Deployment"][0]
    pspec = pdep["spec"]["template"]["spec"]
    pc = pspec["containers"][0]
    dep, c, env = _operator(rendered["default"]["objects"])
    spec = dep["spec"]["template"]["spec"]
    assert spec["securityContext"] == pspec["securityContext"]
    for k, v in pc["securityContext"].items():
        assert c["securityContext"][k] == v, k
    for k in ("livenessProbe", "readinessProbe", "ports"):
        assert c[k] == pc[k], k
    for e in pc["env"]:
        assert e["name"] in env, e["name"]
    assert pc["image"].rsplit(":", 1)[0] == c["image"].rsplit(":", 1)[0]


def test_network_policy_only_opens_metrics(rendered):
    np_ = find(rendered["default"]["objects"], "NetworkPolicy")[0]
    assert np_["spec"]["policyTypes"] == ["Ingress"]
    assert np_["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    dep, _, _ = _operator(rendered["default"]["objects"])
    sel = np_["spec"]["podSelector"]["matchLabels"]
    assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


# --------------------------------------------------------------------------- monitors, examples, notes

def test_monitors_select_the_operator_created_pods(rendered):
    objects = rendered["monitors"]["objects"]
    pms = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodMonitor"}
    assert set(pms) == {"netstream-operator", "netstream-probe", "netstream-processor"}
    # Labels the operator puts on its pods (operator/src/labels.rs).
    for component in ("probe", "processor"):
        pm = pms[f"netstream-{component}"]
        pod_labels = {
            "app.kubernetes.io/name": f"netstream-{component}",
            "app.kubernetes.io/instance": "x",
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "netstream",
            "app.kubernetes.io/managed-by": "netstream-operator",
        }
        assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert pm["spec"]["namespaceSelector"] == {"any": True}
        assert pm["metadata"]["labels"]["release"] == "prometheus"
        assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    sm = find(objects, "ServiceMonitor")[0]
    svc = find(objects, "Service")[0]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["scrapeTimeout"] == "10s"
    assert not [o for o in rendered["default"]["objects"] if o["kind"] in ("PodMonitor", "ServiceMonitor")]


def test_example_replica_bounds_are_checked(helm):
    """The CRD's CEL rule minReplicas <= maxReplicas is not in the OpenAPI schema (jsonschema
    cannot see it), so the chart checks it for the example before the API server would."""
    with pytest.raises(helm.HelmError, match="minReplicas must be <="):
        render.template({"examples": {"enabled": True, "streamAnalysis": {"minReplicas": 5, "maxReplicas": 2}}})


def test_service_monitor_needs_the_service(helm):
    with pytest.raises(helm.HelmError, match="metrics.service.enabled"):
        render.template({"monitoring": {"operator": {"serviceMonitor": True}},
                         "metrics": {"service": {"enabled": False, "port": 8080}}})


def test_examples(rendered):
    assert not [o for o in rendered["default"]["objects"] if o["apiVersion"].startswith("netstream.dev")]
    objects = rendered["examples-monitored"]["objects"]
    np_ = find(objects, "NetProbe", "edge")[0]
    sa = find(objects, "StreamAnalysis", "edge-flows")[0]
    assert np_["spec"]["kafka"] == {"bootstrapServers": ["kafka-0.kafka.kafka.svc:9092", "kafka-1.kafka.kafka.svc:9092"], "topic": "packets"}
    assert np_["spec"]["interfaces"] == ["eth0", "eth1"] and np_["spec"]["filter"] == "tcp or udp"
    assert sa["spec"]["probeRef"] == {"name": "edge"}
    assert sa["spec"]["serviceMonitor"] == {"enabled": True, "interval": "30s", "labels": {"release": "prometheus"}}
    assert np_["metadata"]["namespace"] == sa["metadata"]["namespace"] == "netstream"


def test_notes(rendered):
    notes = rendered["default"]["notes"]
    assert "kubectl -n netstream-system rollout status deployment/netstream-operator" in notes
    assert "manifests/examples/netprobe.yaml" in notes and "privileged" in notes
    assert "4 dashboards" in notes
    ex = rendered["examples"]["notes"]
    assert "kubectl -n netstream-system get netstream" in ex
    assert "prometheus-operator monitors were created" in rendered["monitors"]["notes"]


def test_packaged_chart_resolves_symlinks(helm, tmp_path):
    """`helm package` copies what the symlinks (crds/, dashboards/, files/*-rbac.yaml)
    point to, leaves out the dashboards' Python helpers, and renders the same."""
    import tarfile

    archive = helm.package(str(CHART), destination=str(tmp_path))
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for name in ("netstream/crds/netstream.dev_netprobes.yaml", "netstream/dashboards/netstream-overview.json",
                     "netstream/files/operator-rbac.yaml", "netstream/files/processor-rbac.yaml"):
            assert name in members and members[name].isfile(), name
        assert not [n for n in members if n.endswith(".py") or "/tests/" in n], sorted(members)
        rbac = tar.extractfile("netstream/files/operator-rbac.yaml").read()
        processor_rbac = tar.extractfile("netstream/files/processor-rbac.yaml").read()
    assert rbac == (REPO / "operator" / "rbac" / "clusterrole.yaml").read_bytes()
    assert processor_rbac == (REPO / "operator" / "rbac" / "processor-clusterroles.yaml").read_bytes()
    packaged = helm.Chart.load(archive)
    try:
        cfg = helm.Config(storage_driver="memory")
        got = cfg.install(packaged, "netstream", {"examples": {"enabled": True}}, dry_run="client", namespace="netstream-system")
        cfg.close()
    finally:
        packaged.close()
    assert got["manifest"] == render.template({"examples": {"enabled": True}})["manifest"]


def test_operator_env_vars_are_flags_of_the_binary(rendered):
    """Every NETSTREAM_* variable the chart sets is a flag of netstream-operator
    (operator/src/main.rs, clap `env = ...`), so a renamed flag cannot silently stop working."""
    import re

    main_rs = (REPO / "operator" / "src" / "main.rs").read_text()
    flags = set(re.findall(r'env\s*=\s*"(NETSTREAM_[A-Z_]+)"', main_rs))
    assert "NETSTREAM_LEADER_ELECTION" in flags
    _, _, env = _operator(rendered["customized"]["objects"])
    ours = {n for n in env if n.startswith("NETSTREAM_")}
    assert ours <= flags, f"not flags of the operator: {sorted(ours - flags)}"
    # POD_NAME is the identity fallback main.rs reads.
    assert 'std::env::var("POD_NAME")' in main_rs and "POD_NAME" in env
