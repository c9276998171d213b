#!/usr/bin/env python3
"""Validate instances against Kubernetes structural (OpenAPI v3) schemas with jsonschema.

Input: a JSON file with a list of {"label", "schema", "instance"}. The OpenAPI schema is
converted to JSON Schema the way the API server interprets it: `nullable: true` admits null,
`x-kubernetes-int-or-string` admits integers or strings, `x-kubernetes-preserve-unknown-fields`
allows anything, and unknown fields are rejected (like `kubectl apply --validate=strict`).
At the root, apiVersion/kind/metadata are allowed. Exit status 1 if any instance fails.
"""
import copy
import json
import sys

import jsonschema


def convert(s, root=False):
    s = copy.deepcopy(s)
    out = {}
    for k, v in s.items():
        if k in ("properties",):
            out[k] = {pk: convert(pv) for pk, pv in v.items()}
        elif k == "items":
            out[k] = convert(v)
        elif k == "additionalProperties" and isinstance(v, dict):
            out[k] = convert(v)
        elif k.startswith("x-kubernetes-") or k == "nullable":
            continue
        else:
            out[k] = v
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **{k: v for k, v in out.items() if k == "description"}}
    if root:
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if "properties" in out and "additionalProperties" not in out and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if s.get("nullable"):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        elif t is None:
            out = {"anyOf": [out, {"type": "null"}]}
    if "enum" in out and s.get("nullable"):
        out["enum"] = list(out["enum"]) + [None]
    return out


def main():
    cases = json.load(open(sys.argv[1]))
    failed = 0
    for case in cases:
        schema = convert(case["schema"], root=True)
        validator = jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(case["instance"]), key=lambda e: list(e.path))
        if errors:
            failed += 1
            for e in errors:
                path = ".".join(str(p) for p in e.path)
                print(f"FAIL {case['label']}: {path}: {e.message}")
        else:
            print(f"ok   {case['label']}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
