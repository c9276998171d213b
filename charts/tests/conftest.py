"""Shared helpers of the chart / manifests / images / e2e-script tests.

Tools that may be missing (helm-python-sdk, kubernetes-validate, checkov, promtool, shellcheck,
cargo) make the tests that need them skip with a "SKIPPED: ..." reason, unless
NETSTREAM_REQUIRE_TOOLS=1, which turns the skip into a failure.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "netstream"
sys.path.insert(0, str(REPO / "charts"))

import render  # noqa: E402,F401  (charts/render.py, the one place that renders the chart; tests import it from here)

VENV = Path(os.environ.get("NETSTREAM_VENV", REPO / ".tools" / "venv"))
K8S_VERSIONS = ["1.33.0", "1.37.0"]


def require_tools() -> bool:
    return os.environ.get("NETSTREAM_REQUIRE_TOOLS") == "1"


def need(ok: bool, what: str) -> None:
    """Skip (or fail under NETSTREAM_REQUIRE_TOOLS=1) when a tool is missing."""
    if ok:
        return
    msg = f"SKIPPED: {what}"
    if require_tools():
        pytest.fail(f"{msg} (NETSTREAM_REQUIRE_TOOLS=1)")
    print(msg, file=sys.stderr)
    pytest.skip(msg)


def need_modules(*names: str) -> None:
    """At the top of a test module: skip the whole module (or fail it under
    NETSTREAM_REQUIRE_TOOLS=1) when a Python module it imports is missing."""
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if not missing:
        return
    msg = f"SKIPPED: Python modules missing: {', '.join(missing)} (pip install -r scripts/requirements-test.txt)"
    if require_tools():
        pytest.fail(f"{msg} (NETSTREAM_REQUIRE_TOOLS=1)", pytrace=False)
    print(msg, file=sys.stderr)
    pytest.skip(msg, allow_module_level=True)


def need_module(name: str, pip_name: str | None = None):
    spec = importlib.util.find_spec(name)
    need(spec is not None, f"Python module {name} missing (pip install {pip_name or name}; see scripts/requirements-test.txt)")
    return __import__(name)


def need_exe(name: str, hint: str) -> str:
    # The pinned tools of the venv (scripts/requirements-test.txt) first, then PATH.
    candidates = [VENV / "bin" / name, Path(sys.executable).parent / name]
    path = next((str(c) for c in candidates if c.exists()), None) or shutil.which(name)
    need(path is not None, f"{name} not found ({hint})")
    return path


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict:
    """(group, kind, version) -> openAPIV3Schema of our CRDs, from the top-level crds/."""
    import yaml
    out = {}
    for f in sorted((REPO / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc:
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                out[(spec["group"], spec["names"]["kind"], v["name"])] = v["schema"]["openAPIV3Schema"]
    return out


@functools.lru_cache(maxsize=None)
def _schema_check():
    """operator/tests/schema_check.py: the project's OpenAPI -> JSON Schema conversion
    (nullable, int-or-string, preserve-unknown-fields, unknown fields rejected)."""
    path = REPO / "operator" / "tests" / "schema_check.py"
    spec = importlib.util.spec_from_file_location("netstream_schema_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def structural_errors(schema: dict, obj: dict) -> list[str]:
    import jsonschema
    converted = _schema_check().convert(schema, root=True)
    v = jsonschema.Draft7Validator(converted)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(obj)]


def apply_defaults(schema: dict, value):
    """Structural defaulting as the API server does it before validation: a missing property
    with a `default` gets it, recursively inside objects that are present."""
    import copy as _copy
    if isinstance(value, dict):
        value = dict(value)
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = _copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in schema.get("properties", {}):
                    value[key] = apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], v) for v in value]
    return value


def cel_errors(schema: dict, value, path: str = "") -> list[str]:
    """The CRD's CEL rules (x-kubernetes-validations), evaluated with cel-python on the
    defaulted object, at every node of the schema the object has."""
    celpy = need_module("celpy", "cel-python")
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        env = celpy.Environment()
        try:
            result = env.program(env.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as e:  # an evaluation error is a rejection too
            errors.append(f"{path or '<root>'}: CEL rule {rule['rule']!r} failed to evaluate: {e}")
            continue
        if not bool(result):
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value and value[key] is not None:
                errors += cel_errors(sub, value[key], f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += cel_errors(schema["items"], v, f"{path}[{i}]")
    return errors


PROMETHEUS_OPERATOR_SCHEMAS = {
    "ServiceMonitor": REPO / "operator" / "tests" / "schemas" / "servicemonitor.json",
    "PodMonitor": Path(__file__).parent / "schemas" / "podmonitor.json",
}


def validate_object(obj: dict, versions=K8S_VERSIONS) -> list[str]:
    """Errors of one object: kubernetes-validate --strict for Kubernetes kinds (a missing
    schema is an error), our CRDs' openAPIV3Schema and CEL rules for NetProbe/StreamAnalysis,
    the structural schemas for prometheus-operator / KEDA kinds."""
    import json
    kv = need_module("kubernetes_validate", "kubernetes-validate")
    kind = obj.get("kind", "?")
    api = obj.get("apiVersion", "?")
    name = f"{kind}/{obj.get('metadata', {}).get('name')}"
    group, _, version = api.rpartition("/")
    if group == "netstream.dev":
        schema = crd_schemas().get((group, kind, version))
        if schema is None:
            return [f"{name}: no CRD in crds/ for {api} {kind}"]
        errors = structural_errors(schema, obj)
        if not errors:
            errors = cel_errors(schema, apply_defaults(schema, obj))
        return [f"{name}: {e}" for e in errors]
    if group == "monitoring.coreos.com":
        path = PROMETHEUS_OPERATOR_SCHEMAS.get(kind)
        if path is None:
            return [f"{name}: no structural schema for {kind}"]
        return [f"{name}: {e}" for e in structural_errors(json.loads(path.read_text()), obj)]
    if group == "keda.sh":
        path = REPO / "operator" / "tests" / "schemas" / f"{kind.lower()}.json"
        return [f"{name}: {e}" for e in structural_errors(json.loads(path.read_text()), obj)]
    errors = []
    for ver in versions:
        try:
            kv.validate(obj, ver, strict=True)
        except kv.utils.ValidationError as e:
            errors.append(f"{name} (k8s {ver}): {'.'.join(map(str, e.path))}: {e.message}")
        except kv.utils.SchemaNotFoundError as e:
            errors.append(f"{name} (k8s {ver}): {e.message}")
    return errors


@pytest.fixture(scope="session")
def helm():
    return need_module("helm_python", "helm-python-sdk")
