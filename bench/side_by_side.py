#!/usr/bin/env python3
"""Side-by-side engine speed: fairlm vs transformers (f32) and llama.cpp (GGUF as shipped),
same model, same token ids, same machine, 2 threads, rounds interleaved; prints a Markdown
table of medians and ratios for BENCHMARKS.md.

    scripts/reference/setup.sh            # once: the reference venv
    cargo build --release
    scripts/reference/.venv/bin/python bench/side_by_side.py [--rounds 3]
    scripts/reference/.venv/bin/python bench/side_by_side.py --train   # the training step
    scripts/reference/.venv/bin/python bench/side_by_side.py --user    # the paths users run
    scripts/reference/.venv/bin/python bench/side_by_side.py --gguf F.gguf [--gguf G.gguf]
        # other GGUF files of the default model (e.g. the Q4_K_M and Q6_K that
        # scripts/reference/make_arch_fixtures.py --default-model makes): fairlm on both
        # paths and llama.cpp on the same file, beside the default Q4_1
"""
import argparse
import csv
import datetime
import json
import os
import platform
import re
import tempfile
import statistics
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FAIRLM = ROOT / "target" / "release" / "fairlm"
torch.set_num_threads(2)


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def instruction_set():
    """The x86-64 level /proc/cpuinfo's flags give (what `fairlm speed` reports as detected)."""
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if "avx512f" in flags:
        return "x86-64-v4 (AVX-512F)"
    if {"avx2", "fma"} <= flags:
        return "x86-64-v3 (AVX2, FMA)"
    return "below x86-64-v3"


def cpu_ticks():
    """(steal, total) jiffies of /proc/stat's cpu line: a virtual machine's host takes the
    steal share, and timings taken while it is high are slower than the code is."""
    try:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return fields[7], sum(fields)
    except (OSError, IndexError, ValueError):
        return 0, 0


STEAL_AT_START = cpu_ticks()


def steal_share():
    steal, total = cpu_ticks()
    d_total = total - STEAL_AT_START[1]
    return f"{100 * (steal - STEAL_AT_START[0]) / d_total:.0f}% of CPU time stolen by the host during the run" if d_total else "steal unknown"


def heldout_sentences():
    text = " ".join(l.strip() for l in open(ROOT / "data" / "heldout.txt") if l.strip())
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 3]


def mixed_texts(n):
    """n texts of 1-4 consecutive held-out sentences (15-150 tokens): a file of mixed length."""
    sents = heldout_sentences()
    return [" ".join(sents[(i + j) % len(sents)] for j in range(1 + i % 4)) for i in range(n)]


CROWS_TYPES = ["race-color", "socioeconomic", "gender", "disability", "nationality",
               "sexual-orientation", "physical-appearance", "religion", "age"]


def generated_pairs(n):
    """n CrowS-format pairs made from held-out sentences (the first 8-24 words, and a copy
    with one word replaced): the lengths of a pair benchmark, none of its content."""
    sents, out = heldout_sentences(), []
    for i in range(n):
        words = sents[i % len(sents)].split()[: 8 + i % 17]
        j = (i * 7) % len(words)
        other = words[:j] + [sents[(i + 1) % len(sents)].split()[0].lower()] + words[j + 1:]
        out.append((" ".join(words), " ".join(other), "stereo", CROWS_TYPES[i % len(CROWS_TYPES)]))
    return out


def hf_score_texts(model, tok, texts, order):
    """Seconds and tokens for scoring texts (each after <|endoftext|>) in batches of 64,
    padded with an attention mask, in the given order: what a transformers script does."""
    bos = tok.convert_tokens_to_ids("<|endoftext|>")
    ids = [[bos] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    idx = list(range(len(ids)))
    if order == "sorted":
        idx.sort(key=lambda j: -len(ids[j]))
    t0, n = time.perf_counter(), 0
    with torch.no_grad():
        for i in range(0, len(idx), 64):
            rows = [ids[j] for j in idx[i:i + 64]]
            w = max(map(len, rows))
            x = torch.tensor([r + [0] * (w - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (w - len(r)) for r in rows])
            lp = torch.log_softmax(model(x, attention_mask=mask).logits[:, :-1].double(), -1)
            (lp.gather(-1, x[:, 1:, None])[..., 0] * mask[:, 1:]).sum(1)
            n += int(mask[:, 1:].sum())
    return n, time.perf_counter() - t0


def fairlm_wall(args):
    t0 = time.perf_counter()
    out = subprocess.run([str(FAIRLM)] + args, check=True, capture_output=True, text=True).stdout
    return out, time.perf_counter() - t0


def user_paths(hf, tok, rounds):
    """The paths users run: `score --file` on 640 mixed-length texts (fairlm's marginal rate:
    the whole file's time less that of its first 64 texts, so model loading cancels), `bench
    crows` on a generated 1,500-pair CSV (fairlm's whole wall time, loading included, against
    transformers' scoring of the 3,000 sentences alone), and the quick audit."""
    tmp = Path(tempfile.mkdtemp(prefix="fairlm-bench-"))
    texts = mixed_texts(640)
    (tmp / "all.txt").write_text("\n".join(texts) + "\n")
    (tmp / "head.txt").write_text("\n".join(texts[:64]) + "\n")
    pairs = generated_pairs(1500)
    with open(tmp / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "sent_more", "sent_less", "stereo_antistereo", "bias_type"])
        for i, p in enumerate(pairs):
            w.writerow([i, *p])
    res = {}
    for r in range(rounds):
        full, t_full = fairlm_wall(["score", "--file", str(tmp / "all.txt")])
        head, t_head = fairlm_wall(["score", "--file", str(tmp / "head.txt")])
        count = lambda out: sum(json.loads(l)["n_tokens"] for l in out.splitlines())
        res.setdefault("score_file", {}).setdefault("fairlm", []).append(
            (count(full) - count(head), t_full - t_head))
        for order in ("file order", "sorted"):
            res["score_file"].setdefault(f"transformers {order}", []).append(hf_score_texts(hf, tok, texts, order))
        _, t = fairlm_wall(["bench", "crows", "--file", str(tmp / "pairs.csv")])
        res.setdefault("crows", {}).setdefault("fairlm", []).append((len(pairs), t))
        sents = [s for p in pairs for s in p[:2]]
        for order in ("file order", "sorted"):
            _, t = hf_score_texts(hf, tok, sents, order)
            res["crows"].setdefault(f"transformers {order}", []).append((len(pairs), t))
        _, t = fairlm_wall(["audit", "--quick", "--out", str(tmp / f"audit{r}")])
        res.setdefault("audit", {}).setdefault("fairlm", []).append((1, t))
        print(f"round {r + 1}/{rounds} done", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"\n{datetime.date.today()} · commit {commit} · {machine()} · {instruction_set()} · 2 threads · median of {rounds} interleaved rounds · {steal_share()}\n")
    print("| work | fairlm | transformers, file order | transformers, sorted by length | fairlm / transformers (file order, sorted) |")
    print("|---|---|---|---|---|")
    med = lambda runs, f: statistics.median(f(n, s) for n, s in runs)
    sf = res["score_file"]
    rate = {k: med(v, lambda n, s: n / s) for k, v in sf.items()}
    print(f"| `score --file`, 640 texts of mixed length, tok/s (fairlm marginal) | {rate['fairlm']:.0f} | "
          f"{rate['transformers file order']:.0f} | {rate['transformers sorted']:.0f} | "
          f"{rate['fairlm'] / rate['transformers file order']:.2f}×, {rate['fairlm'] / rate['transformers sorted']:.2f}× |")
    cr = {k: med(v, lambda n, s: s) for k, v in res["crows"].items()}
    print(f"| `bench crows`, 1,500 generated pairs, s (fairlm: whole run; transformers: scoring only) | "
          f"{cr['fairlm']:.1f} | {cr['transformers file order']:.1f} | {cr['transformers sorted']:.1f} | "
          f"{cr['transformers file order'] / cr['fairlm']:.2f}×, {cr['transformers sorted'] / cr['fairlm']:.2f}× |")
    print(f"| `audit --quick`, s (whole run) | {med(res['audit']['fairlm'], lambda n, s: s):.1f} | — | — | — |")


def fairlm_speed(dtype, batches, model=None):
    extra = ["--model", model] if model else []
    out = subprocess.run([str(FAIRLM), "speed", "--dtype", dtype, "--runs", "1", "--sample-batches", batches] + extra,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def timed(f):
    t0 = time.perf_counter()
    n = f()
    return n, time.perf_counter() - t0


def hf_work(model, score_ids, prompt_ids, batches):
    ids = torch.tensor(score_ids)
    res = {}

    def score():
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[:, :-1].double(), -1)
            lp.gather(-1, ids[:, 1:, None]).sum().item()
        return ids.numel()

    model(ids[:2])  # warm-up
    res["score"] = timed(score)
    p = torch.tensor([prompt_ids])

    def gen(batch, sample):
        with torch.no_grad():
            out = model.generate(p.repeat(batch, 1), max_new_tokens=64, min_new_tokens=64, do_sample=sample,
                                 top_k=0 if sample else None, temperature=1.0 if sample else None,
                                 pad_token_id=2)
        return (out.shape[1] - p.shape[1]) * batch

    res["greedy"] = timed(lambda: gen(1, False))
    for b in batches:
        res[f"sample{b}"] = timed(lambda: gen(b, True))
    return res


def torch_train_step(model, ids, runs):
    """Seconds of full fine-tuning steps (CE on every next token, backward, AdamW), each
    after one warm-up step: the work `fairlm speed --train` times."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x = torch.tensor(ids)
    times = []
    for r in range(runs + 1):
        t0 = time.perf_counter()
        loss = model(x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if r > 0:
            times.append(time.perf_counter() - t0)
    model.eval()
    return times


def llama_work(llm, score_ids, prompt_ids):
    res = {}

    def score():
        for row in score_ids:
            llm.reset()
            llm.eval(row)
        return sum(len(r) for r in score_ids)

    res["score"] = timed(score)

    def greedy():
        llm.reset()
        n = 0
        for _ in llm.generate(prompt_ids, top_k=1, temp=0.0, reset=True):
            n += 1
            if n == 64:
                break
        return n

    res["greedy"] = timed(greedy)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="16,32")
    ap.add_argument("--train", action="store_true", help="only the training step, fairlm vs PyTorch")
    ap.add_argument("--user", action="store_true", help="only the paths users run: score --file, bench crows, the quick audit")
    ap.add_argument("--gguf", action="append", default=[], help="another GGUF of the default model to time")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    from transformers import AutoModelForCausalLM
    import llama_cpp
    import sys
    sys.path.insert(0, str(ROOT / "scripts" / "reference"))
    from make_arch_fixtures import without_repacking
    without_repacking()  # llama.cpp's repacked kernels segfault on AVX-512/AMX here (0.3.36)

    gguf = subprocess.run([str(FAIRLM), "models", "--fetch"], check=True, capture_output=True, text=True).stdout
    path = [l.split("-> ")[1].split(" (")[0] for l in gguf.splitlines() if l.startswith("default:")][0]
    d, name = os.path.split(path)
    hf = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    if args.user:
        from transformers import AutoTokenizer
        user_paths(hf, AutoTokenizer.from_pretrained(d, gguf_file=name), args.rounds)
        return
    if args.train:
        fl, pt = [], []
        for r in range(args.rounds):
            rep = json.loads(subprocess.run([str(FAIRLM), "speed", "--train", "--runs", "2"], check=True,
                                            capture_output=True, text=True).stdout)
            fl += rep["runs_s"]
            pt += torch_train_step(hf, rep["ids"], 2)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        print(f"\n{datetime.date.today()} · commit {commit} · {machine()} · {instruction_set()} · 2 threads · median of {len(fl)} steps, {args.rounds} interleaved rounds · {steal_share()}\n")
        print("| work | fairlm s | PyTorch s | fairlm / PyTorch time |\n|---|---|---|---|")
        f, t = statistics.median(fl), statistics.median(pt)
        print(f"| train step 8x32 tokens, full fine-tune, AdamW, f32 | {f:.2f} | {t:.2f} | {f / t:.2f}× |")
        return
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=2, n_batch=512, logits_all=True, verbose=False)
    others = {Path(g).name: (g, llama_cpp.Llama(model_path=g, n_ctx=512, n_threads=2, n_batch=512,
                                                 logits_all=True, verbose=False)) for g in args.gguf}

    rows = {}  # work -> tool -> [(tokens, seconds)]
    def add(work, tool, n_s):
        rows.setdefault(work, {}).setdefault(tool, []).append(n_s)

    names = {"score": "score 64x16 tokens", "greedy": "greedy decode 64 tokens, batch 1"}
    names.update({f"sample{b}": f"sample 64 tokens, batch {b}" for b in batches})
    for r in range(args.rounds):
        for dtype, tool in (("f32", "fairlm f32"), ("quantized", "fairlm Q4_1")):
            rep = fairlm_speed(dtype, args.batches)
            for t in rep["timings"]:
                key = [k for k, v in names.items() if v == t["work"]][0]
                add(key, tool, (t["tokens"], t["median_s"]))
            score_ids, prompt_ids = rep["score_ids"], rep["prompt_ids"]
        for k, v in hf_work(hf, score_ids, prompt_ids, batches).items():
            add(k, "transformers f32", v)
        for k, v in llama_work(llm, score_ids, prompt_ids).items():
            add(k, "llama.cpp Q4_1", v)
        for name, (g, other) in others.items():
            for dtype in ("f32", "quantized"):
                rep = fairlm_speed(dtype, args.batches, g)
                for t in rep["timings"]:
                    key = [k for k, v in names.items() if v == t["work"]][0]
                    add(key, f"fairlm {dtype} {name}", (t["tokens"], t["median_s"]))
            for k, v in llama_work(other, score_ids, prompt_ids).items():
                add(k, f"llama.cpp {name}", v)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    tools = ["fairlm f32", "fairlm Q4_1", "transformers f32", "llama.cpp Q4_1"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"\n{datetime.date.today()} · commit {commit} · {machine()} · {instruction_set()} · 2 threads · median of {args.rounds} interleaved rounds · llama.cpp without repacked kernels · {steal_share()}\n")
    print("| work | " + " | ".join(f"{t} tok/s" for t in tools) + " | fairlm best / transformers | fairlm best / llama.cpp |")
    print("|---" * (len(tools) + 3) + "|")
    for key, work in names.items():
        tps = {}
        for t in tools:
            runs = rows.get(key, {}).get(t)
            if runs:
                tps[t] = statistics.median(n / s for n, s in runs)
        best = max(tps.get("fairlm f32", 0), tps.get("fairlm Q4_1", 0))
        cells = [f"{tps[t]:.0f}" if t in tps else "—" for t in tools]
        r_hf = f"{best / tps['transformers f32']:.2f}×" if "transformers f32" in tps else "—"
        r_ll = f"{best / tps['llama.cpp Q4_1']:.2f}×" if "llama.cpp Q4_1" in tps else "—"
        print(f"| {work} | " + " | ".join(cells) + f" | {r_hf} | {r_ll} |")
    for name in others:
        ftools = [f"fairlm f32 {name}", f"fairlm quantized {name}", f"llama.cpp {name}"]
        print(f"\n{name} (same ids; the Q4_1 columns above for reference)\n")
        print("| work | fairlm f32 tok/s | fairlm quantized tok/s | llama.cpp tok/s | fairlm best / llama.cpp |")
        print("|---|---|---|---|---|")
        for key, work in names.items():
            tps = {t: statistics.median(n / s for n, s in rows[key][t]) for t in ftools if rows.get(key, {}).get(t)}
            best = max(tps.get(ftools[0], 0), tps.get(ftools[1], 0))
            cells = [f"{tps[t]:.0f}" if t in tps else "—" for t in ftools]
            ratio = f"{best / tps[ftools[2]]:.2f}×" if ftools[2] in tps else "—"
            print(f"| {work} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
