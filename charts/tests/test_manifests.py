"""manifests/: the plain install generated from the chart (one source), and its kustomization."""
from __future__ import annotations

import subprocess


from conftest import K8S_VERSIONS, REPO, need_modules, need_exe, render, validate_object

need_modules("yaml", "jsonschema")
import yaml  # noqa: E402

MANIFESTS = REPO / "manifests"


def objects():
    return [d for d in yaml.safe_load_all((MANIFESTS / "install.yaml").read_text()) if d]


def test_install_yaml_is_generated_from_the_chart(helm):
    want = render.install_yaml()
    have = (MANIFESTS / "install.yaml").read_text()
    assert have == want, "manifests/install.yaml drifted from charts/netstream: run charts/generate-manifests"


def test_install_yaml_content():
    objs = objects()
    kinds = [o["kind"] for o in objs]
    assert kinds[0] == "Namespace" and kinds[1:3] == ["CustomResourceDefinition"] * 2
    for k in ("Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap"):
        assert k in kinds, k
    crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    top = [d for f in sorted((REPO / "crds").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    assert crds == top
    for o in objs:
        if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == "netstream-system", o["kind"]
        assert o["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") != "Helm"
    assert not [o for o in objs if o["apiVersion"].startswith("monitoring.coreos.com")], \
        "the plain install must not need prometheus-operator"


def test_install_yaml_validates():
    errors = [e for o in objects() for e in validate_object(o)]
    assert not errors, "\n".join(errors)


def test_install_yaml_with_kubernetes_validate_cli():
    """The kubernetes-validate command itself, as a user would run it: --strict, and a
    "couldn't find schema" warning counts as a failure."""
    exe = need_exe("kubernetes-validate", "pip install kubernetes-validate")
    for version in K8S_VERSIONS:
        p = subprocess.run([exe, "--strict", "-k", version, str(MANIFESTS / "install.yaml")],
                           capture_output=True, text=True, timeout=120)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out
        bad = [line for line in out.splitlines() if line.startswith(("WARN", "ERROR", "FATAL"))]
        assert not bad, "\n".join(bad)
        assert out.count("INFO") == len(objects()), out


def test_kustomization():
    k = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    assert k["resources"] == ["install.yaml"]
    for r in k["resources"]:
        assert (MANIFESTS / r).is_file()
    # Only keys kustomize understands (a typo would make `kubectl apply -k` fail).
    assert set(k) <= {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}


def test_generator_script_check_mode(helm):
    import os
    import sys
    env = {**os.environ, "NETSTREAM_VENV": sys.prefix}  # the venv running these tests
    p = subprocess.run([str(REPO / "charts" / "generate-manifests"), "--check"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr


def test_readme_generated_sections_are_current():
    """The values table and CRD reference in charts/README.md come from values.yaml,
    values.schema.json and crds/ (python3 charts/readme.py regenerates them)."""
    import sys
    sys.path.insert(0, str(REPO / "charts"))
    import readme

    current = readme.README.read_text()
    assert readme.generate(current) == current, "charts/README.md is stale: run python3 charts/readme.py"
    values = yaml.safe_load((REPO / "charts" / "netstream" / "values.yaml").read_text())
    assert f"`operator.replicas` | integer | `{values['operator']['replicas']}`" in current
    assert "### NetProbe (`netstream.dev/v1alpha1`)" in current and "### StreamAnalysis (`netstream.dev/v1alpha1`)" in current
