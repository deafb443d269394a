#!/usr/bin/env python3
"""Reference numbers for `fairlm score --debias self` on the tiny fixture models, from
transformers and bias-bench's Self-Debias rule written out here in PyTorch (its
SelfDebiasingLogitsProcessor): at each position of a text the regular next-token
distribution p and, for every debiasing prefix k (read between the document-start token and
the text), p_k; the mask max(0, max_k p_k − p); p̃ ∝ p · max(exp(−λ · mask), ε), λ = 50,
ε = 0.01; the text's tokens scored under log p̃. The prefixes are read from fairlm's source
(crates/model/src/self_debias.rs), so that they are written once. The tiny Llama, Qwen2 and
Mistral (sliding window) fixtures; the tiny GPT-2's 64-token context cannot hold a prefix and
a text. Writes fixtures/self-debias-reference.json.

    scripts/reference/.venv/bin/python scripts/reference/self_debias_reference.py
"""
import json
import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
FX = ROOT / "fixtures"
SOURCE = (ROOT / "crates" / "model" / "src" / "self_debias.rs").read_text()
PREFIXES = re.findall(r'^\s+"(The following text[^"]*)",$', SOURCE.split("pub const PREFIXES")[1].split("];")[0], re.M)
DECAY, EPSILON = 50.0, 0.01
TEXTS = [
    "The nurse said she was tired.",
    "Muslims are peaceful people who love their families.",
    "The old man could not use the computer.",
    "My neighbour is gay and a great cook.",
]


def debiased_logprobs(model, bos, ids, prefixes):
    rows = [[bos] + ids] + [[bos] + p + ids for p in prefixes]
    out = []
    with torch.no_grad():
        logits = [model(torch.tensor([r])).logits[0].double() for r in rows]
    for t in range(len(ids)):
        # Text token t is predicted at position t of the regular row, t + len(prefix) of a prefixed one.
        regular = logits[0][t]
        p = regular.softmax(-1)
        biased = None
        for k, prefix in enumerate(prefixes):
            q = logits[k + 1][t + len(prefix)].softmax(-1)
            biased = q if biased is None else torch.max(biased, q)
        mask = torch.clamp(biased - p, min=0.0)
        decay = torch.clamp(torch.exp(-mask * DECAY), min=EPSILON)
        scaled = p * decay
        out.append(float(torch.log(scaled[ids[t]] / scaled.sum())))
    return out


def debiased_greedy(model, ids, prefixes, steps):
    """Greedy decoding under Self-Debias, every row run whole at each step (no cache): the
    prompt's row and its prefixed copies (the prefix before the prompt, which has no
    document-start token) are fed the token drawn from the debiased distribution."""
    rows = [list(ids)] + [p + list(ids) for p in prefixes]
    tokens, logprobs = [], []
    for _ in range(steps):
        with torch.no_grad():
            last = [model(torch.tensor([r])).logits[0, -1].double() for r in rows]
        p = last[0].softmax(-1)
        biased = torch.stack([x.softmax(-1) for x in last[1:]]).max(0).values
        scaled = p * torch.clamp(torch.exp(-torch.clamp(biased - p, min=0.0) * DECAY), min=EPSILON)
        lp = torch.log(scaled / scaled.sum())
        nxt = int(lp.argmax())
        tokens.append(nxt)
        logprobs.append(float(lp[nxt]))
        rows = [r + [nxt] for r in rows]
    return tokens, logprobs


GREEDY_PROMPT = "The nurse said that"


def main():
    assert len(PREFIXES) == 9, PREFIXES
    doc = {"prefixes": PREFIXES, "decay": DECAY, "epsilon": EPSILON}
    for name in ("tiny-llama", "tiny-qwen2", "tiny-mistral"):
        d = FX / name
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        bos = model.config.bos_token_id
        prefixes = [tok.encode(p, add_special_tokens=False) for p in PREFIXES]
        doc[name] = [
            {"text": t, "token_ids": (ids := tok.encode(t, add_special_tokens=False)),
             "logprobs": debiased_logprobs(model, bos, ids, prefixes)}
            for t in TEXTS
        ]
        prompt = tok.encode(GREEDY_PROMPT, add_special_tokens=False)
        tokens, logprobs = debiased_greedy(model, prompt, prefixes, 12)
        doc[name + "-greedy"] = {"prompt": GREEDY_PROMPT, "prompt_ids": prompt,
                                 "token_ids": tokens, "logprobs": logprobs}
    (FX / "self-debias-reference.json").write_text(json.dumps(doc, indent=1))
    print("wrote", FX / "self-debias-reference.json")


if __name__ == "__main__":
    main()
