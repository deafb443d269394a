#!/usr/bin/env python3
"""Where a pair benchmark's gaps moved between two models: each pair's sum-convention gap
log P(more) − log P(less) split into the first differing token (predicted from the same
prefix on both sides: how much more likely the model names one group, or one word, than the
other at that point) and everything after it, for two `fairlm bench … --out` runs of the
same file, rescored token by token with `fairlm score --per-token`.

    python3 scripts/analysis/pair_gap_parts.py BEFORE_MODEL AFTER_MODEL BENCH_RESULTS.json

Prints, per bias type and overall, the mean change of each part and how many pairs each
part moved toward the stereotype (a larger gap) and away from it. RedditBias's records are
scored after their first token, which this rescoring (after the document start) does not
follow: read its parts as the whole-sentence reading.
"""
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

root = Path(__file__).resolve().parents[2]
fairlm = root / "target" / "release" / "fairlm"


def per_token(model, texts):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(texts) + "\n")
    out = subprocess.run([str(fairlm), "score", "--per-token", "--batch-size", "32", "--model", model,
                          "--file", f.name], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def parts(m, l):
    k = 0
    while k < min(len(m["token_ids"]), len(l["token_ids"])) and m["token_ids"][k] == l["token_ids"][k]:
        k += 1
    first = m["token_logprobs"][k] - l["token_logprobs"][k]
    rest = sum(m["token_logprobs"][k + 1:]) - sum(l["token_logprobs"][k + 1:])
    return first, rest


def main(before, after, results):
    pairs = json.loads(Path(results).read_text())["pairs"]
    texts = [t for p in pairs for t in (p["more"], p["less"])]
    scored = {name: per_token(model, texts) for name, model in (("before", before), ("after", after))}
    by = defaultdict(lambda: {"first": [], "rest": []})
    for i, p in enumerate(pairs):
        fb, rb = parts(scored["before"][2 * i], scored["before"][2 * i + 1])
        fa, ra = parts(scored["after"][2 * i], scored["after"][2 * i + 1])
        for key in (p["bias_type"], "overall"):
            by[key]["first"].append(fa - fb)
            by[key]["rest"].append(ra - rb)
    print("| bias type | pairs | Δ first differing token (mean) | up / down | Δ rest (mean) | up / down |")
    print("|---|---|---|---|---|---|")
    for key, d in sorted(by.items(), key=lambda kv: (kv[0] == "overall", kv[0])):
        row = [key, str(len(d["first"]))]
        for part in ("first", "rest"):
            xs = d[part]
            row += [f"{sum(xs) / len(xs):+.3f}", f"{sum(x > 0 for x in xs)} / {sum(x < 0 for x in xs)}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
