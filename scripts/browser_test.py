#!/usr/bin/env python3
"""Browser test of `fairlm report` in Debian's headless Chromium (installed with apt-get when
missing). Builds a report from a real audit (tiny model, fixtures/), opens it from file://,
and asserts: no console errors; the headline numbers in the DOM equal results.json; the
filter box filters the flagged-sample table. Then renders a page with 10,000 flagged samples
and prints its size and render time (measured, not asserted: the size cap is asserted).
Screenshots go to target/browser/. Standard library only.

    python3 scripts/browser_test.py        (after `cargo build --release`)
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAIRLM = ROOT / "target" / "release" / "fairlm"
OUT = ROOT / "target" / "browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def chromium():
    exe = shutil.which("chromium")
    if exe is None:
        print("installing Debian's chromium", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, stdout=subprocess.DEVNULL)
        exe = shutil.which("chromium")
    return exe


def browse(exe, url, *extra):
    with tempfile.TemporaryDirectory() as profile:
        t0 = time.perf_counter()
        p = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url],
                           capture_output=True, text=True, timeout=120)
        return p, time.perf_counter() - t0


def samples_body(dom):
    """The flagged-sample table's body (browsers add implicit tbodies to other tables)."""
    return dom.split('<table id="samples">', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]


def console_errors(stderr):
    return [l for l in stderr.splitlines() if "CONSOLE" in l and ("Uncaught" in l or "Error" in l or ":ERROR:" in l)]


def main():
    exe = chromium()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fairlm-browser-"))
    templates = work / "t.toml"
    templates.write_text('template = [\n  { text = "The {X} worked as", category = "occupation", split = "eval" },\n'
                         '  { text = "The {X} was", category = "regard", split = "eval" },\n]\n')
    subprocess.run([str(FAIRLM), "audit", "--model", str(ROOT / "fixtures" / "tiny-gpt2"), "--templates", str(templates),
                    "--samples", "4", "--bootstrap", "200", "--out", str(work / "a"),
                    "--crows", str(ROOT / "fixtures" / "crows-sample.csv"),
                    "--stereoset", str(ROOT / "fixtures" / "stereoset-sample.json")], check=True, capture_output=True)
    results = json.loads((work / "a" / "results.json").read_text())
    page = work / "report.html"
    subprocess.run([str(FAIRLM), "report", str(work / "a" / "results.json"), "-o", str(page)], check=True, capture_output=True)

    p, _ = browse(exe, page.as_uri(), "--dump-dom")
    dom = p.stdout
    check(p.returncode == 0 and "<table id=\"samples\">" in dom, "the page loads and has the flagged-sample table")
    check(not console_errors(p.stderr), "no console errors: " + "; ".join(console_errors(p.stderr))[:300])
    bias = re.search(r'id="bias-before">([0-9.]+)<', dom)
    ppl = re.search(r'id="ppl-before">([0-9.]+)<', dom)
    check(bias is not None and bias.group(1) == f"{results['probe']['bias_score']['value']:.3f}", "headline bias score equals results.json")
    check(ppl is not None and ppl.group(1) == f"{results['perplexity']['perplexity']['value']:.2f}", "headline perplexity equals results.json")

    for bench in results["benchmarks"]:
        kind = bench["benchmark"]
        overall = (bench.get("pair_table") or bench.get("stereoset_table"))[-1]
        value = overall["pct_stereotype_sum"] if kind == "crows" else overall["sum"]["ss"]
        table = re.search(r'data-bench="?%s"?>(.*?)</table>' % kind, dom, re.S)
        cell = table and re.search(r"<td>overall</td><td>\d+</td><td>([0-9.]+)</td>", table.group(1))
        check(cell is not None and cell.group(1) == f"{value:.1f}", f"{kind} table's overall figure equals results.json")

    rows = re.findall(r"<tr( hidden=\"\")?><td>([0-9.]+)</td>(.*?)</tr>", samples_body(dom))
    check(len(rows) > 0 and all(not h for h, _, _ in rows), f"all {len(rows)} flagged rows shown without a filter")
    if rows:
        word = re.sub(r"<[^>]+>", " ", rows[0][2]).split()[-1].lower()
        p, _ = browse(exe, page.as_uri() + "#filter=" + word, "--dump-dom")
        frows = re.findall(r"<tr( hidden=\"\")?><td>([0-9.]+)</td>(.*?)</tr>", samples_body(p.stdout))
        visible = [r for r in frows if not r[0]]
        hidden = [r for r in frows if r[0]]
        check(0 < len(visible) <= len(frows), f"filter `{word}` keeps {len(visible)} of {len(frows)} rows")
        check(all(word in (r[1] + r[2]).lower() for r in visible) and all(word not in (r[1] + re.sub(r"<[^>]+>", "", r[2])).lower() for r in hidden),
              "visible rows contain the filter text, hidden rows do not")
    browse(exe, page.as_uri(), "--window-size=1200,1800", f"--screenshot={OUT / 'report.png'}")
    check((OUT / "report.png").is_file(), f"screenshot at {OUT / 'report.png'}")

    # 10,000 flagged samples: records copied with their Δ raised above τ, each counterfactual's
    # log-prob, flag and the headline made to agree with it (fairlm refuses a file where they
    # do not).
    big = copy.deepcopy(results)
    base = big["records"]
    recs = []
    while sum(len(r["counterfactuals"]) for r in recs) < 10000:
        for r in base:
            r2 = copy.deepcopy(r)
            r2["sample"] = len(recs)
            for c in r2["counterfactuals"]:
                c["delta"] = big["probe"]["tau"] + 1.0 + (len(recs) % 97) / 10
                c["logprob"] = r2["logprob"] - c["delta"]
                c["flagged"] = True
            recs.append(r2)
    big["records"] = recs
    big["probe"]["bias_score"]["value"] = 1.0
    (work / "big.json").write_text(json.dumps(big))
    big_page = work / "big.html"
    subprocess.run([str(FAIRLM), "report", str(work / "big.json"), "-o", str(big_page)], check=True, capture_output=True)
    size = big_page.stat().st_size
    check(size < 5_000_000, f"10,000-sample page is {size / 1e6:.2f} MB (< 5 MB)")
    p, seconds = browse(exe, big_page.as_uri(), "--dump-dom")
    shown = len(re.findall(r"<tr><td>", samples_body(p.stdout)))
    check(p.returncode == 0 and not console_errors(p.stderr), "10,000-sample page renders without console errors")
    print(f"measured: 10,000-sample page ({shown} rows embedded) loaded and rendered by headless Chromium in {seconds:.2f} s (process wall time)")
    print(f"{len(failures) == 0 and 'all' or 'not all'} browser checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
