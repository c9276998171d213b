#!/usr/bin/env python3
"""Extract every panel's PromQL from Grafana dashboard JSON, with the variables substituted.

    python3 dashboards/queries.py dashboards/*.json
    python3 dashboards/queries.py --var namespace=netstream --range 10m dashboards/netstream-overview.json

Prints one JSON object per query (JSON Lines):
    {"dashboard": uid, "title": dashboard title, "file": path, "panel": panel title,
     "ref_id": "A", "expr": substituted PromQL, "raw_expr": PromQL as in the JSON,
     "expected_labels": labels of the result, "legend_labels": labels used in legendFormat,
     "metrics": metric names the query reads, "external": metrics that are not netstream's}

`expected_labels` are the labels of the query's result, read from its outermost aggregation
(`sum by (a, b) (...)`, through topk/clamp_min/rate/... wrappers and the left side of binary
operators); when the query has no such clause they fall back to the legend labels; `[]` means a
single series without labels.

Variables: `$__rate_interval`, `$__interval` -> --rate-interval (1m), `$__range` -> --range (1h),
`$__range_s` -> seconds; with --variables, the template variables' `label_values(sel, label)`
queries too, as `group by (label) (sel)`; query variables with "All" -> their allValue (".*") unless given with
--var NAME=VALUE; textbox variables -> their default; `$datasource` is not part of any
expression (panels reference it as their data source only). Standard library only, so it runs
with any python3; import it as a module for `extract(paths, overrides)`.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from typing import Any, Iterator

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
# Aggregations whose result keeps the labels of their input series.
LABEL_PRESERVING = {"topk", "bottomk", "limitk", "limit_ratio"}
# Functions whose vector argument is not the first one.
VECTOR_ARG = {"histogram_quantile": 1, "quantile_over_time": 1}
KEYWORDS = AGGREGATIONS | {"by", "without", "on", "ignoring", "group_left", "group_right",
                           "bool", "offset", "and", "or", "unless"}
BINARY_OPS = ["and", "or", "unless", "==", "!=", ">=", "<=", ">", "<", "+", "-", "*", "/", "%", "^"]


def grafana_vars(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def variable_values(dashboard: dict, overrides: dict[str, str]) -> dict[str, str]:
    """Value of every dashboard variable as it would be interpolated into a PromQL query."""
    values: dict[str, str] = {}
    for name, var in grafana_vars(dashboard).items():
        if name in overrides:
            values[name] = overrides[name]
        elif var.get("type") == "datasource":
            values[name] = ""
        elif var.get("type") == "textbox":
            values[name] = str(var.get("query", "") or "")
        elif var.get("includeAll"):
            values[name] = var.get("allValue") or ".*"
        else:
            current = var.get("current", {}).get("value", "")
            values[name] = current[0] if isinstance(current, list) and current else str(current or "")
    return values


def substitute(expr: str, values: dict[str, str], rate_interval: str, range_: str) -> str:
    builtins = {
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": range_,
        "__range_s": str(duration_seconds(range_)),
        "__range_ms": str(duration_seconds(range_) * 1000),
    }
    table = {**values, **builtins}

    def repl(m: re.Match) -> str:
        name = m.group("b") or m.group("s") or m.group("p")
        if m.group("p") and name.isdigit():
            # $1, $2: label_replace capture references; Grafana leaves them alone.
            return m.group(0)
        if name not in table:
            raise KeyError(f"unknown variable ${name} in: {expr}")
        return table[name]

    # ${name}, ${name:format}, [[name]], $name (longest names first via the regex).
    pattern = r"\$\{(?P<b>\w+)(?::\w+)?\}|\[\[(?P<s>\w+)\]\]|\$(?P<p>\w+)"
    return re.sub(pattern, repl, expr)


def duration_seconds(d: str) -> int:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total = 0.0
    for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", d):
        total += int(n) * units[u]
    return int(total)


# --------------------------------------------------------------------------- label analysis

def _mask(expr: str) -> str:
    """The expression with quoted strings, {...} selectors and [...] ranges blanked out, so
    operators and parentheses found in the mask are real ones."""
    out = list(expr)
    i, depth_brace, depth_bracket, quote = 0, 0, 0, None
    while i < len(expr):
        c = expr[i]
        if quote:
            out[i] = " "
            if c == "\\":
                if i + 1 < len(expr):
                    out[i + 1] = " "
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
            out[i] = " "
        elif c == "{":
            depth_brace += 1
            out[i] = " "
        elif c == "}":
            depth_brace -= 1
            out[i] = " "
        elif c == "[":
            depth_bracket += 1
            out[i] = " "
        elif c == "]":
            depth_bracket -= 1
            out[i] = " "
        elif depth_brace or depth_bracket:
            out[i] = " "
        i += 1
    return "".join(out)


def _matching(mask: str, open_idx: int) -> int:
    depth = 0
    for i in range(open_idx, len(mask)):
        if mask[i] == "(":
            depth += 1
        elif mask[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def _split_top(mask: str, start: int, end: int, sep: str = ",") -> list[tuple[int, int]]:
    parts, depth, last = [], 0, start
    for i in range(start, end):
        c = mask[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append((last, i))
            last = i + 1
    parts.append((last, end))
    return parts


def _top_binary(mask: str) -> int | None:
    """Index of the leftmost top-level binary operator (the lowest-precedence split is not
    needed: the result's labels come from the leftmost operand in every case we meet)."""
    depth = 0
    i = 0
    while i < len(mask):
        c = mask[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and i > 0:
            for op in BINARY_OPS:
                if op.isalpha():
                    if re.match(rf"\b{op}\b", mask[i:]) and (i == 0 or not (mask[i - 1].isalnum() or mask[i - 1] == "_")):
                        return i
                elif mask.startswith(op, i):
                    # a sign or exponent inside a number literal is not an operator
                    if op in "+-" and re.search(r"[0-9.][eE]$", mask[:i]):
                        break
                    return i
        i += 1
    return None


def result_labels(expr: str) -> list[str] | None:
    """Labels of the query result, or None when it is a raw selector (all its labels)."""
    e = expr.strip()
    mask = _mask(e)
    # Strip enclosing parentheses.
    while e.startswith("(") and _matching(mask, 0) == len(e) - 1:
        e, mask = e[1:-1].strip(), _mask(e[1:-1].strip())
    op = _top_binary(mask)
    if op is not None:
        return result_labels(e[:op])
    m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*", mask)
    if not m:
        return []  # a number literal
    name = m.group(1)
    rest = m.end()
    if name in AGGREGATIONS:
        grouping = None
        g = re.match(r"(by|without)\s*\(([^)]*)\)\s*", mask[rest:])
        if g:
            grouping = (g.group(1), [x.strip() for x in g.group(2).split(",") if x.strip()])
            rest += g.end()
        if rest >= len(mask) or mask[rest] != "(":
            raise ValueError(f"cannot parse aggregation in {expr}")
        close = _matching(mask, rest)
        trailing = re.match(r"\s*(by|without)\s*\(([^)]*)\)", mask[close + 1:])
        if trailing:
            grouping = (trailing.group(1), [x.strip() for x in trailing.group(2).split(",") if x.strip()])
        if grouping:
            return grouping[1] if grouping[0] == "by" else None
        if name in LABEL_PRESERVING:
            args = _split_top(mask, rest + 1, close)
            a, b = args[-1]
            return result_labels(e[a:b])
        return []
    if rest < len(mask) and mask[rest] == "(":
        close = _matching(mask, rest)
        args = _split_top(mask, rest + 1, close)
        idx = VECTOR_ARG.get(name, 0)
        if idx < len(args):
            a, b = args[idx]
            return result_labels(e[a:b])
        return []
    return None  # a selector


def metric_names(expr: str) -> list[str]:
    """Metric names the query selects (identifiers outside strings, selectors, ranges and
    grouping clauses that are not functions, keywords or parts of number literals)."""
    mask = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
                  lambda m: " " * len(m.group(0)), _mask(expr))
    names = []
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", mask):
        n, start, end = m.group(0), m.start(), m.end()
        if start and (mask[start - 1].isdigit() or mask[start - 1] == "."):
            continue  # exponent of a number such as 1e-9
        if re.match(r"\s*\(", mask[end:]) or n in KEYWORDS or n in ("inf", "nan", "Inf", "NaN"):
            continue
        if n not in names:
            names.append(n)
    return names


# --------------------------------------------------------------------------- extraction

def walk_panels(panels: list[dict]) -> Iterator[dict]:
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def variable_query(definition: str) -> tuple[str, str] | None:
    """`label_values(selector, label)` as the PromQL Grafana effectively runs:
    (`group by (label) (selector)`, label). None for other variable query kinds."""
    m = re.fullmatch(r"\s*label_values\((.*?)(?:,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", definition, re.S)
    if not m:
        return None
    selector, label = m.group(1).strip().rstrip(","), m.group(2)
    if not selector:
        selector = "{" + label + '!=""}'
    return f"group by ({label}) ({selector})", label


def extract_dashboard(path: str, overrides: dict[str, str] | None = None,
                      rate_interval: str = "1m", range_: str = "1h",
                      variables: bool = False) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    values = variable_values(dashboard, overrides or {})
    out = []
    if variables:
        for name, var in grafana_vars(dashboard).items():
            q = var.get("definition") or var.get("query")
            parsed = variable_query(q) if var.get("type") == "query" and isinstance(q, str) else None
            if not parsed:
                continue
            raw, label = parsed
            expr = substitute(raw, values, rate_interval, range_)
            metrics = metric_names(expr)
            out.append({
                "dashboard": dashboard.get("uid"), "title": dashboard.get("title"), "file": path,
                "panel": f"variable: {name}", "ref_id": name, "expr": expr, "raw_expr": q,
                "expected_labels": [label], "legend_labels": [], "metrics": metrics,
                "external": [m for m in metrics if not m.startswith("netstream_")],
            })
    for panel in walk_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            raw = target.get("expr")
            if not raw:
                continue
            expr = substitute(raw, values, rate_interval, range_)
            legend = re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", target.get("legendFormat", "") or "")
            labels = result_labels(expr)
            metrics = metric_names(expr)
            out.append({
                "dashboard": dashboard.get("uid"),
                "title": dashboard.get("title"),
                "file": path,
                "panel": panel.get("title"),
                "ref_id": target.get("refId"),
                "expr": expr,
                "raw_expr": raw,
                "expected_labels": labels if labels is not None else legend,
                "legend_labels": legend,
                "metrics": metrics,
                "external": [m for m in metrics if not m.startswith("netstream_")],
            })
    return out


def extract(paths: list[str], overrides: dict[str, str] | None = None,
            rate_interval: str = "1m", range_: str = "1h", variables: bool = False) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        out.extend(extract_dashboard(p, overrides, rate_interval, range_, variables))
    return out


def default_paths() -> list[str]:
    return sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "*.json")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="dashboard JSON files (default: the dashboards next to this script)")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="value of a dashboard variable (default: its All value, '.*')")
    ap.add_argument("--rate-interval", default="1m", help="value of $__rate_interval and $__interval")
    ap.add_argument("--range", default="1h", dest="range_", help="value of $__range")
    ap.add_argument("--variables", action="store_true",
                    help="also print the template variables' label_values() queries (panel \"variable: NAME\")")
    args = ap.parse_args(argv)
    overrides = {}
    for kv in args.var:
        if "=" not in kv:
            ap.error(f"--var {kv!r}: expected NAME=VALUE")
        k, v = kv.split("=", 1)
        overrides[k] = v
    for q in extract(args.files or default_paths(), overrides, args.rate_interval, args.range_, args.variables):
        print(json.dumps(q, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
