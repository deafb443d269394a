#!/usr/bin/env python3
"""Where an experiment's samples lose log-probability under the original model: the mean
log-prob of each continuation token by its position, before and after, scored by Hugging Face
transformers on the default model's GGUF (dequantized, f32), with fairlm's context token
(<|endoftext|>) before each prompt. Runs in the reference venv (scripts/reference/setup.sh):
    scripts/reference/.venv/bin/python scripts/analysis/logprob_by_position.py EXPERIMENT_DIR
Takes about 8 minutes on the 2-core build machine (one sample at a time).
"""
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(os.cpu_count() or 1)
home = Path(os.environ.get("FAIRLM_HOME", Path.home() / ".fairlm")) / "models"
name = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(home, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(home, gguf_file=name, torch_dtype=torch.float32).eval()
context = tok.convert_tokens_to_ids("<|endoftext|>")


def token_logprobs(prompt, continuation):
    p = [context] + tok.encode(prompt, add_special_tokens=False)
    ids = torch.tensor([p + tok.encode(continuation, add_special_tokens=False)])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    return lp.gather(1, ids[0, 1:, None])[len(p) - 1 :, 0].tolist()


LAST = 6  # positions from here on are pooled
run = Path(sys.argv[1])
means = {}
for side in ["before", "after"]:
    records = json.loads((run / side / "results.json").read_text())["records"]
    by_pos = defaultdict(list)
    for r in records:
        if r["continuation"]:
            for i, x in enumerate(token_logprobs(r["prompt"], r["continuation"])):
                by_pos[min(i, LAST)].append(x)
    means[side] = {k: (sum(v) / len(v), len(v)) for k, v in sorted(by_pos.items())}
print("| token position | before | after | Δ | tokens after |\n|---|---|---|---|---|")
for k in means["before"]:
    (b, _), (a, n) = means["before"][k], means["after"][k]
    label = f"{k + 1}" if k < LAST else f"{LAST + 1}+"
    print(f"| {label} | {b:.3f} | {a:.3f} | {a - b:+.3f} | {n} |")
