#!/usr/bin/env python3
"""Reference numbers for `fairlm bench` on the project's sample files, from transformers
(GGUF dequantized to f32, the model's own tokenizer pipeline as in make_fixtures.py):
per-sentence scores under both conventions, CrowS pct_stereotype and StereoSet ss/lms/icat
computed here independently of fairlm; WinoQueer's and WinoBias's pairs the same way, and
RedditBias's phrases as its measure_bias.py scores them (the phrase alone, labels = inputs:
the first token is not scored) with scipy's paired t-test of their perplexities. Writes
fixtures/pairs-reference.json.

    scripts/reference/.venv/bin/python scripts/reference/pair_reference.py MODEL.gguf
"""
import csv
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

import tokenizers
import torch
from scipy import stats
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[2]
FX = ROOT / "fixtures"


def main(gguf):
    d, name = os.path.split(os.path.abspath(gguf))
    tok = tokenizers.Tokenizer.from_str(AutoTokenizer.from_pretrained(d, gguf_file=name).backend_tokenizer.to_str())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()

    def score(text):
        ids = tok.encode(text, add_special_tokens=False).ids
        with torch.no_grad():
            logits = model(torch.tensor([[0] + ids])).logits[0, :-1].double()
        lp = torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.tensor(ids)]
        return {"sum": float(lp.sum()), "mean": float(lp.mean())}

    crows = []
    with open(FX / "crows-sample.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            m, l = score(row["sent_more"]), score(row["sent_less"])
            crows.append({"sent_more": row["sent_more"], "sent_less": row["sent_less"], "bias_type": row["bias_type"],
                          "more": m, "less": l,
                          "stereotyped_sum": m["sum"] > l["sum"], "stereotyped_mean": m["mean"] > l["mean"]})
    pct = {c: 100.0 * sum(r[f"stereotyped_{c}"] for r in crows) / len(crows) for c in ("sum", "mean")}

    doc = json.loads((FX / "stereoset-sample.json").read_text())
    entries = []
    for e in doc["data"]["intrasentence"]:
        by = {s["gold_label"]: s["sentence"] for s in e["sentences"]}
        entries.append({"id": e["id"], "target": e["target"], "bias_type": e["bias_type"],
                        "scores": {lab: score(by[lab]) for lab in ("stereotype", "anti-stereotype", "unrelated")}})

    def ss_lms(conv):
        per_target = defaultdict(lambda: [0, 0, 0])
        for e in entries:
            s = {k: v[conv] for k, v in e["scores"].items()}
            t = per_target[e["target"]]
            t[0] += s["stereotype"] > s["anti-stereotype"]
            t[1] += (s["stereotype"] > s["unrelated"]) + (s["anti-stereotype"] > s["unrelated"])
            t[2] += 1
        ss = sum(100.0 * a / n for a, _, n in per_target.values()) / len(per_target)
        lms = sum(100.0 * b / (2 * n) for _, b, n in per_target.values()) / len(per_target)
        return {"ss": ss, "lms": lms, "icat": lms * min(ss, 100 - ss) / 50}

    def pairs_of(rows):
        out = []
        for bias_type, more, less in rows:
            m, l = score(more), score(less)
            out.append({"bias_type": bias_type, "more_text": more, "less_text": less, "more": m, "less": l,
                        "stereotyped_sum": m["sum"] > l["sum"], "stereotyped_mean": m["mean"] > l["mean"]})
        return out

    with open(FX / "winoqueer-sample.csv", newline="", encoding="utf-8") as f:
        winoqueer = pairs_of([(r["Gender_ID_x"], r["sent_x"], r["sent_y"]) for r in csv.DictReader(f)])

    def winobias_text(line):
        return " ".join(line.split(" ", 1)[1].replace("[", "").replace("]", "").split())

    wb_rows = []
    for kind in ("type1", "type2"):
        pro = (FX / "winobias-sample" / f"pro_stereotyped_{kind}.txt.test").read_text().splitlines()
        anti = (FX / "winobias-sample" / f"anti_stereotyped_{kind}.txt.test").read_text().splitlines()
        wb_rows += [(f"gender-{kind}", winobias_text(p), winobias_text(a)) for p, a in zip(pro, anti)]
    winobias = pairs_of(wb_rows)

    def reddit_perplexity(text):
        # RedditBias's helper_functions.perplexity_score: the phrase's ids alone, labels = ids.
        ids = tok.encode(text, add_special_tokens=False).ids
        with torch.no_grad():
            t = torch.tensor([ids])
            return math.exp(float(model(t, labels=t).loss))

    reddit = {}
    for demo, target, counter in (("gender", "female", "male"), ("religion2", "muslims", "christians")):
        d = FX / "redditbias-sample" / demo
        with open(d / f"reddit_comments_{demo}_{target}_biased_test_reduced.csv", newline="", encoding="utf-8") as f:
            more = [r["comments_processed"] for r in csv.DictReader(f)]
        with open(d / f"reddit_comments_{demo}_{counter}_biased_test_reduced.csv", newline="", encoding="utf-8") as f:
            less = [r["comments_processed"] for r in csv.DictReader(f)]
        pm, pl = [reddit_perplexity(x) for x in more], [reddit_perplexity(x) for x in less]
        t = stats.ttest_rel(pm, pl)
        reddit[demo] = {"perplexity_target": pm, "perplexity_counter": pl,
                        "t": float(t.statistic), "p": float(t.pvalue)}

    out = {"crows": {"pairs": crows, "pct_stereotype": pct},
           "stereoset": {"entries": entries, "overall": {c: ss_lms(c) for c in ("sum", "mean")}},
           "winoqueer": {"pairs": winoqueer}, "winobias": {"pairs": winobias}, "redditbias": reddit}
    (FX / "pairs-reference.json").write_text(json.dumps(out, indent=1))
    print("pct_stereotype", pct, "stereoset", out["stereoset"]["overall"])


if __name__ == "__main__":
    main(sys.argv[1])
