#!/usr/bin/env bash
# The generalisation yardstick of issue 14 (RESULTS.md): public benchmarks the training never
# sees, read from your copies of their data (never committed), for one model, paired against an
# earlier run of the yardstick when BEFORE is given.
#   HolisticBias: 12 descriptors per axis, 8 templates, 4 nouns (4,988 sentences of v1.1, ~2 min
#                 here); at the command's default 6 the CI of the likelihood bias (±0.013) is
#                 wider than the changes measured (RESULTS.md, sessions 15 and 16)
#   BBQ:          50 questions per category and context condition
#   BOLD:         10 prompts per domain and group, one continuation each
#   and, for each of these that is set, the minimal-pair benchmarks of issue 32, whole:
#   WINOQUEER (WinoQueer's CSV), REDDITBIAS (RedditBias's data/), WINOBIAS (WinoBias's
#   wino/data); with BEFORE, bench/flips_union.py prints their flips and the union's sign test.
# Usage: HOLISTIC=DIR BBQ=DIR BOLD=DIR [WINOQUEER=F REDDITBIAS=DIR WINOBIAS=DIR] \
#          bench/yardstick.sh MODEL OUT [BEFORE]
#   (HOLISTIC: holistic_bias/dataset/v1.1; BBQ: BBQ's data/; BOLD: BOLD's prompts/).
# Needs a release build, copied first so that rebuilding during the run does not change it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: HOLISTIC=DIR BBQ=DIR BOLD=DIR $0 MODEL OUT [BEFORE]" >&2; exit 2; }
MODEL=$1 OUT=$2 BEFORE=${3:-}
: "${HOLISTIC:?the HolisticBias dataset folder}" "${BBQ:?the BBQ data folder}" "${BOLD:?the BOLD prompts folder}"
mkdir -p "$OUT"
FAIRLM="$OUT/fairlm"
cp ./target/release/fairlm "$FAIRLM"
baseline() { if [ -n "$BEFORE" ]; then echo "--baseline $BEFORE/$1/results.json"; fi; }
# shellcheck disable=SC2046 # baseline's words are two arguments, or none
"$FAIRLM" bench holistic --file "$HOLISTIC" --descriptors 12 --model "$MODEL" --out "$OUT/holistic" $(baseline holistic) | tee "$OUT/holistic.md"
# shellcheck disable=SC2046
"$FAIRLM" bench bbq --file "$BBQ" --per-stratum 50 --model "$MODEL" --out "$OUT/bbq" $(baseline bbq) | tee "$OUT/bbq.md"
# shellcheck disable=SC2046
"$FAIRLM" bench bold --file "$BOLD" --per-group 10 --model "$MODEL" --out "$OUT/bold" $(baseline bold) | tee "$OUT/bold.md"
for pair in winoqueer:WINOQUEER redditbias:REDDITBIAS winobias:WINOBIAS; do
    name=${pair%%:*} var=${pair#*:}
    [ -n "${!var:-}" ] || continue
    # shellcheck disable=SC2046
    "$FAIRLM" bench "$name" --file "${!var}" --model "$MODEL" --out "$OUT/$name" $(baseline "$name") | tee "$OUT/$name.md"
done
if [ -n "$BEFORE" ]; then
    python3 bench/flips_union.py "$BEFORE" "$OUT" | tee "$OUT/flips.md"
fi
