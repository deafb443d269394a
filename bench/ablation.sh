#!/usr/bin/env bash
# Ablation of the mitigation losses (RESULTS.md): the quick experiment profile, one seed, one
# shared "before" audit and one shared sampled corpus, five loss settings. Each variant's
# compare.md and train.json land in $OUT/<variant>/; a summary table is printed at the end.
# Usage: bench/ablation.sh [OUT] (default target/ablation); needs a release build, which is
# copied first so that rebuilding during the run does not change the binary mid-way.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/ablation}
mkdir -p "$OUT"
FAIRLM="$OUT/fairlm"
cp ./target/release/fairlm "$FAIRLM"
variants=(
  "ce-only|--w-consistency 0 --w-anchor 0"
  "ce+consistency|--w-anchor 0"
  "ce+consistency+equalising|--w-anchor 0 --w-equalising 1"
  "ce+consistency+equalising+adversary|--w-anchor 0 --w-equalising 1 --adversary 0.5"
  "full-recipe(ce+consistency+anchor)|"
)
# The first variant runs the "before" audit and samples the corpus; the others reuse both.
first="$OUT/${variants[0]%%|*}"
for v in "${variants[@]}"; do
  name=${v%%|*}
  flags=${v#*|}
  dir="$OUT/$name"
  if [ "$dir" != "$first" ] && [ ! -d "$dir/before" ]; then
    mkdir -p "$dir"
    cp -r "$first/before" "$dir/before"
    cp "$first/corpus.json" "$dir/corpus.json"
  fi
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$FAIRLM" experiment --quick --resume --out "$dir" $flags > "$dir.stdout" 2> "$dir.stderr" || true
  echo "$(( $(date +%s) - start ))" > "$dir.seconds"
done
python3 - "$OUT" "${variants[@]%%|*}" <<'PY'
import json, re, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| variant | bias score before → after (ratio) | divergence before → after | held-out ppl before → after | discriminator acc. before → after | training s | wall s |")
print("|---|---|---|---|---|---|---|")
for d in [out / v for v in sys.argv[2:]]:
    md = (d / "compare.md").read_text() if (d / "compare.md").exists() else ""
    row = lambda m: re.search(r"\| %s \| ([-0-9.]+) \| ([-0-9.]+) \|" % re.escape(m), md)
    b, dv, p = row("bias score"), row("divergence (nats)"), row("held-out perplexity")
    t = json.loads((d / "train.json").read_text()) if (d / "train.json").exists() else {}
    disc = t.get("discriminator") or {}
    wall = (out / (d.name + ".seconds")).read_text().strip() if (out / (d.name + ".seconds")).exists() else "?"
    if not b:
        print(f"| {d.name} | (failed: see {d}.stderr) | | | | | {wall} |"); continue
    print(f"| {d.name} | {float(b[1]):.3f} → {float(b[2]):.3f} ({float(b[2])/float(b[1]):.2f}×) | {float(dv[1]):.3f} → {float(dv[2]):.3f} | "
          f"{float(p[1]):.2f} → {float(p[2]):.2f} ({100*(float(p[2])/float(p[1])-1):+.1f}%) | "
          f"{disc.get('before', float('nan')):.3f} → {disc.get('after', float('nan')):.3f} | {t.get('seconds', 0):.0f} | {wall} |")
PY
