//! Interrupts: SIGKILL and SIGINT at several points of `audit`, `mitigate` and `experiment` on a
//! tiny model. Whatever was killed, no output is presented as complete unless it is (every
//! results.json that exists is a whole, valid audit; a model directory is whole or absent), and
//! `--resume` then finishes with exactly the results of an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fairlm"));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

fn tiny() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tiny-gpt2")
        .display()
        .to_string()
}

/// The experiment's arguments into `out` (small: a few seconds uninterrupted).
fn experiment(out: &Path, resume: bool) -> Command {
    let mut c = bin();
    c.args(["experiment", "--quick", "--axes", "gender", "--steps", "6"])
        .args(["--checkpoint-every", "1", "--model", &tiny(), "--out"])
        .arg(out);
    if resume {
        c.arg("--resume");
    }
    c
}

fn mitigate(out: &Path, resume: bool) -> Command {
    let mut c = bin();
    c.args([
        "mitigate",
        "--axes",
        "gender",
        "--steps",
        "6",
        "--checkpoint-every",
        "1",
    ])
    .args([
        "--corpus-templates",
        "4",
        "--corpus-samples",
        "1",
        "--eval-every",
        "6",
    ])
    .args(["--discriminator-pairs", "16", "--model", &tiny(), "--out"])
    .arg(out);
    if resume {
        c.arg("--resume");
    }
    c
}

/// Starts `cmd`, sends `signal` after `after`, and waits for it. False when the command had
/// finished on its own before (a loaded machine can be that slow to reach the signal).
fn interrupt(mut cmd: Command, after: Duration, signal: i32) -> bool {
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    status.code().is_none()
}

/// Runs a resume and returns its exit code, with its stderr in the message of a failure.
fn resume(mut cmd: Command, what: &str, ok: &[i32]) {
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| ok.contains(&c)),
        "{what}: resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every results.json under `dir` is a whole audit fairlm accepts; a model/ directory holds
/// every file of a model.
fn nothing_partial_presented(dir: &Path, what: &str) {
    for stage in ["before", "after"] {
        let r = dir.join(stage).join("results.json");
        if r.exists() {
            let out = Command::new(env!("CARGO_BIN_EXE_fairlm"))
                .args(["compare"])
                .arg(&r)
                .arg(&r)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{what}: {} is presented but not whole: {}",
                r.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let model = dir.join("model");
    if model.exists() {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(model.join(f).exists(), "{what}: model/ without {f}");
        }
    }
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The figures that must not depend on an interruption: the mitigated weights and the
/// audits' records.
fn outcome(dir: &Path) -> (Vec<u8>, serde_json::Value, serde_json::Value) {
    let records = |stage: &str| {
        let v: serde_json::Value =
            serde_json::from_slice(&read(dir.join(stage).join("results.json"))).unwrap();
        v["records"].clone()
    };
    (
        read(dir.join("model/model.safetensors")),
        records("before"),
        records("after"),
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fairlm-interrupts-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn interrupted_runs_present_nothing_partial_and_resume_to_the_same_result() {
    let root = scratch("all");
    // Uninterrupted references, timed to place the interrupts across the whole run.
    let reference = root.join("reference");
    let t0 = Instant::now();
    let status = experiment(&reference, false).status().unwrap();
    let took = t0.elapsed();
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "reference experiment failed"
    );
    let expected = outcome(&reference);
    let mitigated = root.join("mitigate-reference");
    assert!(mitigate(&mitigated, false).status().unwrap().success());
    let expected_weights = read(mitigated.join("model/model.safetensors"));

    for (i, fraction) in [0.15, 0.5, 0.85].into_iter().enumerate() {
        let after = took.mul_f64(fraction);
        for (signal, name) in [(libc::SIGKILL, "SIGKILL"), (libc::SIGINT, "SIGINT")] {
            let what = format!("experiment, {name} at {:.0}%", fraction * 100.0);
            let dir = root.join(format!("exp-{i}-{name}"));
            interrupt(experiment(&dir, false), after, signal);
            nothing_partial_presented(&dir, &what);
            resume(experiment(&dir, true), &what, &[0, 1]);
            assert!(outcome(&dir) == expected, "{what}: resumed run differs");

            let what = format!("mitigate, {name} at {:.0}%", fraction * 100.0);
            let dir = root.join(format!("mit-{i}-{name}"));
            let interrupted = interrupt(mitigate(&dir, false), after.mul_f64(0.5), signal);
            nothing_partial_presented(&dir, &what);
            // A mitigation that finished before the signal is not resumed (its OUT holds a
            // finished model, which mitigate refuses to overwrite).
            if interrupted {
                resume(mitigate(&dir, true), &what, &[0]);
            }
            assert!(
                read(dir.join("model/model.safetensors")) == expected_weights,
                "{what}: resumed weights differ"
            );
        }
        // An audit killed part-way leaves no results.json, or a whole one.
        let dir = root.join(format!("audit-{i}"));
        let mut audit = bin();
        audit
            .args([
                "audit",
                "--quick",
                "--axes",
                "gender",
                "--model",
                &tiny(),
                "--out",
            ])
            .arg(&dir);
        interrupt(audit, after.mul_f64(0.3), libc::SIGKILL);
        let r = dir.join("results.json");
        if r.exists() {
            let out = Command::new(env!("CARGO_BIN_EXE_fairlm"))
                .arg("compare")
                .arg(&r)
                .arg(&r)
                .output()
                .unwrap();
            assert!(out.status.success(), "audit killed: a partial results.json");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
