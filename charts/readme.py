#!/usr/bin/env python3
"""Generates the values table and the CRD reference of charts/README.md from their sources
(charts/netstream/values.yaml + values.schema.json, crds/*.yaml), between the markers
<!-- BEGIN values --> / <!-- END values --> and <!-- BEGIN crds --> / <!-- END crds -->.

    python3 charts/readme.py           rewrite charts/README.md
    python3 charts/readme.py --check   exit 1 if it is stale (charts/tests checks this)

Needs PyYAML.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "charts" / "README.md"
CHART = REPO / "charts" / "netstream"


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def code(value) -> str:
    if value is None:
        return ""
    text = json.dumps(value) if not isinstance(value, str) else json.dumps(value)
    return f"`{cell(text)}`"


def first_sentence(desc: str, limit: int = 160) -> str:
    """Whole sentences of the description up to about `limit` characters (at least one)."""
    desc = " ".join((desc or "").split())
    ends = [m.end(1) for m in re.finditer(r"(\.)(?:\s+(?=[A-Z(`])|$)", desc)
            if not re.search(r"(e\.g|i\.e|etc|vs)\.$", desc[:m.end(1)])]
    out = desc[:ends[0]] if ends else desc
    for e in ends[1:]:
        if e > limit:
            break
        out = desc[:e]
    return out


# --------------------------------------------------------------------------- values

def values_table() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = []

    def walk(s, v, path):
        for key, sub in s.get("properties", {}).items():
            p = f"{path}.{key}" if path else key
            val = v.get(key) if isinstance(v, dict) else None
            if sub.get("type") == "object" and "properties" in sub and sub.get("additionalProperties") is False \
                    and key not in ("affinity", "resources"):
                walk(sub, val or {}, p)
                continue
            typ = sub.get("type") or "/".join(x.get("type", "") for x in sub.get("anyOf", []) if x.get("type")) or "string"
            if "enum" in sub:
                typ += " (" + ", ".join(f"`{e}`" for e in sub["enum"]) + ")"
            rows.append(f"| `{p}` | {cell(typ)} | {code(val)} | {cell(sub.get('description', ''))} |")

    walk(schema, values, "")
    return "| Key | Type | Default | Description |\n|---|---|---|---|\n" + "\n".join(rows)


# --------------------------------------------------------------------------- CRDs

def constraints(s: dict) -> str:
    out = []
    if "enum" in s:
        out.append("one of " + ", ".join(f"`{e}`" for e in s["enum"]))
    if "minimum" in s or "maximum" in s:
        lo, hi = s.get("minimum"), s.get("maximum")
        fmt = lambda x: str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)  # noqa: E731
        out.append(f"{fmt(lo) if lo is not None else ''}..{fmt(hi) if hi is not None else ''}")
    for k, label in (("minItems", "min items"), ("maxItems", "max items"), ("maxLength", "max length")):
        if k in s:
            out.append(f"{label} {s[k]}")
    if "pattern" in s:
        out.append(f"pattern `{s['pattern']}`")
    if s.get("items", {}).get("pattern"):
        out.append(f"items match `{s['items']['pattern']}`")
    for rule in s.get("x-kubernetes-validations", []):
        out.append(rule["message"])
    return "; ".join(out)


def type_of(s: dict) -> str:
    t = s.get("type", "")
    if t == "array":
        it = s.get("items", {})
        return f"[]{it.get('type', 'object')}"
    if t == "object" and "additionalProperties" in s:
        return "map[string]" + s["additionalProperties"].get("type", "quantity" if s["additionalProperties"].get("x-kubernetes-int-or-string") else "any")
    return t


OPAQUE = {"resources": "core/v1 ResourceRequirements", "tolerations": "[]core/v1 Toleration", "conditions": "[]Condition"}


def fields(s: dict, path: str, rows: list, required=()):
    for key, sub in s.get("properties", {}).items():
        p = f"{path}.{key}" if path else key
        typ = OPAQUE.get(key) or type_of(sub)
        req = " (required)" if key in required else ""
        default = code(sub.get("default")) if "default" in sub and sub.get("type") != "object" else ""
        rows.append(f"| `{p}`{req} | {cell(typ)} | {default} | {cell(constraints(sub))} | {cell(first_sentence(sub.get('description', '')))} |")
        if key not in OPAQUE and sub.get("type") == "object" and "properties" in sub:
            fields(sub, p, rows, sub.get("required", ()))
        items = sub.get("items", {})
        if key not in OPAQUE and sub.get("type") == "array" and "properties" in items:
            fields(items, f"{p}[]", rows, items.get("required", ()))


def crd_reference() -> str:
    out = []
    examples = {}
    for f in sorted((REPO / "manifests" / "examples").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                examples.setdefault(d["kind"], []).append(f"`manifests/examples/{f.name}`")
    for f in sorted((REPO / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(f.read_text()):
            if not crd:
                continue
            spec = crd["spec"]
            names = spec["names"]
            for v in spec["versions"]:
                root = v["schema"]["openAPIV3Schema"]
                out.append(f"### {names['kind']} (`{spec['group']}/{v['name']}`)\n")
                out.append(f"{first_sentence(root.get('description', ''))} Short name `{', '.join(names.get('shortNames', []))}`, "
                           f"category `{', '.join(names.get('categories', []))}` (`kubectl get {names['categories'][0]}` lists both kinds). "
                           f"Examples: {', '.join(examples.get(names['kind'], [])) or 'none'}.\n")
                for rule in root.get("x-kubernetes-validations", []):
                    out.append(f"- Admission rule: {cell(rule['message'])}.")
                for rule in root["properties"]["spec"].get("x-kubernetes-validations", []):
                    out.append(f"- Admission rule: {cell(rule['message'])}.")
                out.append("")
                rows: list[str] = []
                fields(root["properties"]["spec"], "spec", rows, root["properties"]["spec"].get("required", ()))
                out.append("| Field | Type | Default | Validation | Description |\n|---|---|---|---|---|")
                out.extend(rows)
                out.append("")
                status = root["properties"].get("status", {}).get("properties", {})
                out.append("Status (written by the operator): " + ", ".join(f"`{k}`" for k in status) + ".\n")
                cols = [c["name"] for c in v.get("additionalPrinterColumns", [])]
                out.append(f"`kubectl get {names['plural']}` columns: {', '.join(cols)}.\n")
    return "\n".join(out).rstrip() + "\n"


def generate(text: str) -> str:
    for name, body in (("values", values_table()), ("crds", crd_reference())):
        begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise SystemExit(f"{README}: markers {begin} / {end} missing")
        text = pattern.sub(lambda _: f"{begin}\n<!-- generated by charts/readme.py from its sources; do not edit by hand -->\n{body.rstrip()}\n{end}", text)
    return text


def main(argv) -> int:
    current = README.read_text()
    want = generate(current)
    if "--check" in argv:
        if want != current:
            print("charts/README.md is stale: run python3 charts/readme.py", file=sys.stderr)
            return 1
        return 0
    if want != current:
        README.write_text(want)
        print("wrote charts/README.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
