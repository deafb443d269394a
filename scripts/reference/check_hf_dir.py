#!/usr/bin/env python3
"""Loads a directory written by `fairlm convert` (or `fairlm mitigate`) with transformers and
compares its per-token log-probabilities on the fixture sentences with fixtures/smollm2.json
(transformers on the original GGUF). Exits 1 when a token differs by more than 1e-3.

    ./target/release/fairlm convert --out /tmp/smollm2-hf
    scripts/reference/.venv/bin/python scripts/reference/check_hf_dir.py /tmp/smollm2-hf

With --against-fairlm, any directory fairlm wrote (any architecture, e.g. a Qwen2 after
`fairlm mitigate`): transformers' per-token log-probabilities of the fixture sentences
against `fairlm score --per-token` on the same directory (same ids, same context token).
"""
import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[2]


def main(d):
    fx = json.loads((ROOT / "fixtures" / "smollm2.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(d) / "tokenizer.json"))
    worst = 0.0
    for s in fx["sentences"]:
        ids = tok(s["text"], add_special_tokens=False)["input_ids"]
        assert ids == s["ids"], (s["text"], ids, s["ids"])
        with torch.no_grad():
            logits = model(torch.tensor([[0] + ids])).logits[0, :-1].double()
        lp = torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.tensor(ids)].tolist()
        worst = max(worst, max(abs(a - b) for a, b in zip(lp, s["hf_token_logprobs"])))
    print(f"transformers on {d}: max per-token difference {worst:.2e} over {len(fx['sentences'])} sentences")
    return 0 if worst <= 1e-3 else 1


def against_fairlm(d):
    fairlm = ROOT / "target" / "release" / "fairlm"
    fx = json.loads((ROOT / "fixtures" / "smollm2.json").read_text())
    texts = [s["text"] for s in fx["sentences"]]
    out = subprocess.run([str(fairlm), "score", "--per-token", "--model", d, *texts],
                         check=True, capture_output=True, text=True).stdout
    ours = [json.loads(line) for line in out.splitlines()]
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(d) / "tokenizer.json"))
    ctx = tok.convert_tokens_to_ids("<|endoftext|>")
    if ctx is None or ctx == tok.unk_token_id:
        ctx = model.config.bos_token_id
    worst = 0.0
    for text, row in zip(texts, ours):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == row["token_ids"], (text, ids, row["token_ids"])
        with torch.no_grad():
            logits = model(torch.tensor([[ctx] + ids])).logits[0, :-1].double()
        lp = torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.tensor(ids)].tolist()
        worst = max(worst, max(abs(a - b) for a, b in zip(lp, row["token_logprobs"])))
    print(f"transformers ({model.config.model_type}) vs fairlm on {d}: max per-token difference "
          f"{worst:.2e} over {len(texts)} sentences")
    return 0 if worst <= 1e-3 else 1


if __name__ == "__main__":
    if sys.argv[1] == "--against-fairlm":
        sys.exit(against_fairlm(sys.argv[2]))
    sys.exit(main(sys.argv[1]))
