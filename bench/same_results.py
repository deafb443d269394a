#!/usr/bin/env python3
"""Checks that two audits' results.json hold the same results up to float rounding: the same
records (every continuation and counterfactual text equal, every flag equal) and every number
within TOL (default 1e-3 nats; the run's own config and the model's path are not compared).
Prints the largest difference; exit 1 when anything differs beyond that.

    python3 bench/same_results.py BEFORE/results.json AFTER/results.json [TOL]

How a speed change is checked against the previous binary (BENCHMARKS.md, issue 19)."""
import json
import sys

SKIP = {"run_config"}


def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out["diffs"].append(f"{path}.{k}: present in one file only")
            else:
                walk(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out["diffs"].append(f"{path}: {len(a)} vs {len(b)} entries")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, float) or isinstance(b, float):
        d = abs(float(a) - float(b))
        out["max"] = max(out["max"], d)
        if d > out["tol"]:
            out["diffs"].append(f"{path}: {a} vs {b}")
    elif a != b:
        out["diffs"].append(f"{path}: {str(a)[:60]!r} vs {str(b)[:60]!r}")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    a, b = (json.load(open(p)) for p in sys.argv[1:3])
    out = {"max": 0.0, "tol": float(sys.argv[3]) if len(sys.argv) == 4 else 1e-3, "diffs": []}
    for k in sorted((set(a) | set(b)) - SKIP):
        if k == "model":
            a[k].pop("path", None), b[k].pop("path", None)
        walk(a.get(k), b.get(k), k, out)
    records = len(a.get("records", []))
    print(f"{records} records; largest numeric difference {out['max']:.3g}; {len(out['diffs'])} differences beyond {out['tol']}")
    for d in out["diffs"][:20]:
        print("  " + d)
    sys.exit(1 if out["diffs"] else 0)


if __name__ == "__main__":
    main()
