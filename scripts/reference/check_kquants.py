#!/usr/bin/env python3
"""Parity of fairlm on the default model's k-quant GGUFs, which are too large to commit.

    scripts/reference/.venv/bin/python scripts/reference/make_arch_fixtures.py \
        --default-model ~/.cache/fairlm/models/SmolLM2-135M-Instruct.Q4_1.gguf --out DIR
    cargo build --release
    scripts/reference/.venv/bin/python scripts/reference/check_kquants.py DIR

For each file in DIR/smollm2-kquants.json (Q4_K_M, Q6_K made by llama.cpp's quantizer): the
60 fixture sentences scored by `fairlm score --per-token` on both numeric paths, by
transformers on the same GGUF (dequantized to f32, as fairlm's f32 path) and by llama.cpp
(recorded by make_arch_fixtures.py: as shipped, with an f32 KV cache, with flash attention).
Prints mean and max per-token |Δ| in nats; exits 1 when the f32 path is more than 1e-3 from
transformers on any token, or the quantized path is farther from llama.cpp than llama.cpp's
larger self-difference ×1.1 (the bound of the Q4_1 parity test) or than llama.cpp is from
transformers.
"""
import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import ROOT, logprobs_from_logits  # noqa: E402

torch.set_num_threads(2)
FAIRLM = ROOT / "target" / "release" / "fairlm"


def distance(a, b):
    diffs = [abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
    return sum(diffs) / len(diffs), max(diffs)


def fairlm_scores(path, dtype, texts):
    out = subprocess.run([str(FAIRLM), "score", "--per-token", "--dtype", dtype, "--model", str(path), *texts],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def main(d):
    d = Path(d)
    record = json.loads((d / "smollm2-kquants.json").read_text())
    smollm2 = json.loads((ROOT / "fixtures" / "smollm2.json").read_text())
    texts = [s["text"] for s in smollm2["sentences"]]
    ids = [s["ids"] for s in smollm2["sentences"]]
    ctx = record["context_token"]
    ok = True
    for name, f in record["files"].items():
        path = d / f["file"]
        hf = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=f["file"], dtype=torch.float32).eval()
        reference = []
        for row in ids:
            with torch.no_grad():
                logits = hf(torch.tensor([[ctx] + row])).logits[0, :-1].float()
            reference.append(logprobs_from_logits(logits, row))
        llama, llama_f32kv = f["llama_token_logprobs"], f["llama_f32_kv_token_logprobs"]
        llama_flash = f["llama_flash_attn_token_logprobs"]
        runs = {dtype: fairlm_scores(path, dtype, texts) for dtype in ("f32", "quantized")}
        for dtype, rows in runs.items():
            assert [r["token_ids"] for r in rows] == ids, f"{name}: tokenizer ids differ"
        f32 = [r["token_logprobs"] for r in runs["f32"]]
        quantized = [r["token_logprobs"] for r in runs["quantized"]]
        figures = {
            "fairlm f32 vs transformers (same GGUF)": distance(f32, reference),
            "fairlm quantized vs llama.cpp": distance(quantized, llama),
            "fairlm quantized vs llama.cpp with an f32 KV cache": distance(quantized, llama_f32kv),
            "llama.cpp vs itself (f32 KV cache)": distance(llama, llama_f32kv),
            "llama.cpp vs itself (flash attention)": distance(llama, llama_flash),
            "llama.cpp vs transformers": distance(llama, reference),
        }
        print(f"{name} ({f['sha256'][:12]}…):")
        for what, (mean, worst) in figures.items():
            print(f"  {what}: mean {mean:.5f}, max {worst:.5f} nats/token")
        q, l_hf = figures["fairlm quantized vs llama.cpp"][0], figures["llama.cpp vs transformers"][0]
        self_diff = max(figures["llama.cpp vs itself (f32 KV cache)"][0], figures["llama.cpp vs itself (flash attention)"][0])
        ok &= figures["fairlm f32 vs transformers (same GGUF)"][1] <= 1e-3
        ok &= q <= 1.1 * self_diff and q < l_hf
    print("pass" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
