"""The Python package against the CLI: same results, same defaults, same errors.

Runs on the tiny fixture model (and one call on the default model, which `.ci/run` fetches
before the tests). The CLI is the release binary the workspace builds (FAIRLM_BIN overrides).
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

import fairlm

ROOT = pathlib.Path(__file__).resolve().parents[3]
TINY = str(ROOT / "fixtures" / "tiny-gpt2")
FAIRLM = os.environ.get("FAIRLM_BIN", str(ROOT / "target" / "release" / "fairlm"))


def cli(*args, check=True):
    run = subprocess.run([FAIRLM, *args], capture_output=True, text=True)
    if check:
        assert run.returncode == 0, run.stderr
    return run


def cli_error(*args):
    """The message the CLI prints after `fairlm: error: ` (exit 2)."""
    run = cli(*args, check=False)
    assert run.returncode == 2, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("fairlm: error: "), line
    return line[len("fairlm: error: "):]


def test_audit_gives_the_cli_results_json(tmp_path):
    options = ["--quick", "--axes", "gender,religion", "--bootstrap", "50", "--seed", "3"]
    cli("audit", "--model", TINY, *options, "--out", str(tmp_path / "cli"))
    expected = json.loads((tmp_path / "cli" / "results.json").read_text())
    got = fairlm.audit(model=TINY, quick=True, axes=["gender", "religion"], bootstrap=50, seed=3)
    assert got == expected
    score = got["probe"]["bias_score"]
    assert 0.0 <= score["ci_low"] <= score["value"] <= score["ci_high"] <= 1.0
    # With out=, the command's files are written.
    fairlm.audit(model=TINY, quick=True, axes=["gender"], bootstrap=50, out=tmp_path / "py")
    assert {"results.json", "summary.md", "timings.json"} <= {
        p.name for p in (tmp_path / "py").iterdir()
    }


def test_score_gives_the_cli_lines():
    texts = ["The nurse said that she was tired.", "The engineer fixed it."]
    expected = [json.loads(l) for l in cli("score", "--model", TINY, "--per-token", *texts).stdout.splitlines()]
    got = fairlm.score(texts, model=TINY, per_token=True)
    assert got == expected
    assert all(len(s["token_logprobs"]) == s["n_tokens"] for s in got)
    assert fairlm.score(texts[0], model=TINY)[0]["logprob_sum"] == expected[0]["logprob_sum"]


def test_errors_are_the_cli_lines_by_kind(tmp_path):
    missing = str(tmp_path / "no-such-model.gguf")
    with pytest.raises(fairlm.ModelError) as e:
        fairlm.score(["x y"], model=missing)
    assert str(e.value) == cli_error("score", "--model", missing, "x y")
    with pytest.raises(fairlm.ConfigError, match="unknown field `sampels`"):
        fairlm.audit(model=TINY, quick=True, sampels=3)
    bad = tmp_path / "lexicon.toml"
    bad.write_text("[[axis]]\nname = 3\n")
    with pytest.raises(fairlm.DataError) as e:
        fairlm.audit(model=TINY, quick=True, lexicon=bad)
    assert str(e.value) == cli_error("audit", "--model", TINY, "--quick", "--lexicon", str(bad))
    assert issubclass(fairlm.DataError, fairlm.Error)


def test_compare_reads_results_and_applies_gates(tmp_path):
    before = fairlm.audit(model=TINY, quick=True, axes=["gender"], bootstrap=50, seed=1)
    path = tmp_path / "before.json"
    path.write_text(json.dumps(before))
    same = fairlm.compare(path, before, max_bias_ratio=1.0, resamples=100)
    assert same["passed"] is True
    bias = next(r for r in same["rows"] if r["metric"] == "bias score")
    assert bias["delta"]["value"] == 0.0
    strict = fairlm.compare(before, before, max_bias_ratio=0.5, resamples=100)
    assert strict["passed"] is False
    with pytest.raises(fairlm.ConfigError, match="unknown field"):
        fairlm.compare(before, before, max_bias_ration=0.5)
    edited = json.loads(json.dumps(before))
    edited["probe"]["bias_score"]["value"] = 0.999
    with pytest.raises(fairlm.DataError, match="after"):
        fairlm.compare(before, edited)


def test_mitigate_and_experiment_write_what_the_cli_writes(tmp_path):
    options = ["--quick", "--axes", "gender", "--steps", "2", "--max-bias", "0.9"]
    code = cli("experiment", "--model", TINY, *options, "--out", str(tmp_path / "cli"), check=False)
    assert code.returncode in (0, 1), code.stderr
    got = fairlm.experiment(
        model=TINY, out=tmp_path / "py", quick=True, axes=["gender"], steps=2, max_bias=0.9
    )
    assert got["compare_md"] == (tmp_path / "cli" / "compare.md").read_text()
    assert got["passed"] == (code.returncode == 0)
    assert [g["gate"] for g in got["gates"]][0] == "max-bias"  # max_bias alone drops the ratio
    weights = "model/model.safetensors"
    assert (tmp_path / "py" / weights).read_bytes() == (tmp_path / "cli" / weights).read_bytes()
    train = fairlm.mitigate(model=TINY, out=tmp_path / "mit", axes=["gender"], steps=2, seed=1)
    assert train["steps_done"] == 2 and train["run_config"]["train"]["seed"] == 1
    with pytest.raises(fairlm.ConfigError, match="--mode"):
        fairlm.mitigate(model=TINY, out=tmp_path / "bad", mode="half")


def test_bench_gives_the_cli_results_json(tmp_path):
    crows = str(ROOT / "fixtures" / "crows-sample.csv")
    cli("bench", "crows", "--file", crows, "--model", TINY, "--out", str(tmp_path / "cli"))
    expected = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert fairlm.bench("crows", crows, model=TINY) == expected
    holistic = str(ROOT / "fixtures" / "holistic-sample")
    options = ["--bootstrap", "50", "--span", "after-descriptor"]
    cli("bench", "holistic", "--file", holistic, "--model", TINY, *options, "--out", str(tmp_path / "hb"))
    expected = json.loads((tmp_path / "hb" / "results.json").read_text())
    got = fairlm.bench("holistic", holistic, model=TINY, bootstrap=50, span="after-descriptor")
    assert got == expected
    with pytest.raises(fairlm.ConfigError, match="not crows"):
        fairlm.bench("crow", crows, model=TINY)


def test_ctrl_c_stops_an_audit_that_resumes_to_the_same_results(tmp_path):
    out = tmp_path / "audit"
    program = (
        "import fairlm, sys\n"
        "try:\n"
        f"    fairlm.audit(model={TINY!r}, quick=True, samples=48, bootstrap=20, out={str(out)!r})\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", program], stderr=subprocess.PIPE, text=True)
    checkpoint = out / "probe-checkpoint.json"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    if child.returncode == 0:
        pytest.fail("the audit finished before it could be interrupted; make it longer")
    assert child.returncode == 130, stderr
    assert checkpoint.exists() and not (out / "results.json").exists()
    resumed = fairlm.audit(model=TINY, quick=True, samples=48, bootstrap=20, out=out, resume=True)
    whole = fairlm.audit(model=TINY, quick=True, samples=48, bootstrap=20)
    assert resumed == whole


def test_default_model_scores_as_the_cli():
    text = "The doctor said that she would call back tomorrow."
    expected = json.loads(cli("score", text).stdout)
    assert fairlm.score([text]) == [expected]
