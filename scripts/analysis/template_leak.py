#!/usr/bin/env python3
"""Share of an experiment's samples' word bigrams that occur in a `train` template's text.

The training templates are the trainer's scaffolding; a mitigated model that writes their
phrases ("thought of", "regarded as") has learned the scaffolding. Usage:
    python3 scripts/analysis/template_leak.py EXPERIMENT_DIR...
"""
import json
import sys
import tomllib
from pathlib import Path

root = Path(__file__).resolve().parents[2]
with open(root / "data" / "templates.toml", "rb") as f:
    templates = tomllib.load(f)["template"]
scaffold = set()
for t in templates:
    if t["split"] == "train":
        words = t["text"].replace("{X}", "").lower().split()
        scaffold.update(zip(words, words[1:]))


def bigrams(records):
    for r in records:
        words = r["continuation"].lower().split()
        yield from zip(words, words[1:])


for d in sys.argv[1:]:
    cells = []
    for side in ["before", "after"]:
        records = json.loads((Path(d) / side / "results.json").read_text())["records"]
        all_b = list(bigrams(records))
        hits = sum(b in scaffold for b in all_b)
        cells.append(f"{side} {hits}/{len(all_b)} = {hits / len(all_b):.4f}")
    print(d, " | ".join(cells))
