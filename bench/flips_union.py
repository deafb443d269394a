#!/usr/bin/env python3
"""The minimal-pair yardstick's verdict (issue 32): for each pair benchmark two runs read on
the same file (BEFORE/NAME/results.json and AFTER/NAME/results.json, written by
`fairlm bench NAME --out`), the pairs that flipped toward the anti-stereotype and toward the
stereotype under both conventions, and the same over the union of the benchmarks, with the
exact sign test (one-sided toward the anti-stereotype, and two-sided). Standard library only.

    python3 bench/flips_union.py BEFORE AFTER [NAME ...]   (default: winoqueer redditbias winobias)
"""
import json
import sys
from math import comb
from pathlib import Path


def tail_at_least(k, n):
    return sum(comb(n, i) for i in range(k, n + 1)) / 2 ** n


def sign_test(up, down):
    n = up + down
    if n == 0:
        return 1.0, 1.0
    one = tail_at_least(up, n)
    low = 1.0 - tail_at_least(up + 1, n)
    return one, min(1.0, 2 * min(one, low))


def flips(before, after, key):
    b = json.loads(Path(before).read_text())["pairs"]
    a = json.loads(Path(after).read_text())["pairs"]
    if [(x["line"], x["more"], x["less"]) for x in b] != [(x["line"], x["more"], x["less"]) for x in a]:
        sys.exit(f"{after}: not the pairs of {before}")
    up = sum(x[key] and not y[key] for x, y in zip(b, a))
    down = sum(not x[key] and y[key] for x, y in zip(b, a))
    pct = lambda rs: 100.0 * sum(r[key] for r in rs) / len(rs)
    return len(b), pct(b), pct(a), up, down


def main(before, after, names):
    print("| benchmark | convention | pairs | pct_stereotype before → after | flips to anti / to stereo | sign test p (one-sided / two-sided) |")
    print("|---|---|---|---|---|---|")
    for key, conv in (("stereotyped_sum", "sum"), ("stereotyped_mean", "mean")):
        total = [0, 0, 0]
        for name in names:
            b, a = Path(before, name, "results.json"), Path(after, name, "results.json")
            if not (b.exists() and a.exists()):
                continue
            n, pb, pa, up, down = flips(b, a, key)
            one, two = sign_test(up, down)
            total = [total[0] + n, total[1] + up, total[2] + down]
            print(f"| {name} | {conv} | {n} | {pb:.1f} → {pa:.1f} | {up} / {down} | {one:.3g} / {two:.3g} |")
        one, two = sign_test(total[1], total[2])
        print(f"| **union** | {conv} | {total[0]} | | {total[1]} / {total[2]} | {one:.3g} / {two:.3g} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:] or ["winoqueer", "redditbias", "winobias"])
