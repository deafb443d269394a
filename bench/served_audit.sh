#!/usr/bin/env bash
# BENCHMARKS.md "Served models": the quick audit in process, then through `fairlm serve` on
# loopback with --concurrency 4, with each run's wall time and the share of CPU time the
# hypervisor took ("steal"), and whether the two results.json agree but for the model record.
# Run from the repository root after `cargo build --release`; writes into ${OUT:-bench-served}.
set -euo pipefail
F=${FAIRLM:-$PWD/target/release/fairlm}
M=${FAIRLM_HOME:-$HOME/.cache/fairlm}/models/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=${OUT:-bench-served}
mkdir -p "$OUT" && cd "$OUT"
steal() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
run() { # name, command...
  local name=$1; shift
  read -r s0 t0 < <(steal)
  /usr/bin/time -f "$name %e s wall" "$@" > "$name.out" 2> "$name.err"
  read -r s1 t1 < <(steal)
  echo "$name steal $(( 100 * (s1 - s0) / (t1 - t0) ))%"
  grep wall "$name.err"
}
rm -rf local served
run local "$F" audit --quick --out local
"$F" serve --model smollm2 --port 8011 2> serve.err &
SP=$!
sleep 8
run served "$F" audit --quick --model http://127.0.0.1:8011/v1 --tokenizer "$M" --concurrency 4 --out served
kill -TERM $SP; wait $SP || true
python3 - <<'PY'
import json
a = json.load(open('local/results.json')); b = json.load(open('served/results.json'))
a.pop('model'); b.pop('model')
print('identical but model:', a == b)
PY
cat local/timings.json served/timings.json
echo "requests: $(ls served/requests | wc -l)"
