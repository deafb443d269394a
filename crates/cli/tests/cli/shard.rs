//! Sharded and resumed audits (issue 15): `fairlm audit --shard K/N` on each part, `fairlm
//! merge` of the parts — the results.json and summary.md of the unsharded run, byte for byte,
//! whether a shard ran in process or through `fairlm serve` —, the one-line errors of parts
//! that do not make one audit, and an audit killed mid-way finished by `--resume`.

use std::path::{Path, PathBuf};

use super::served::Server;
use super::{assert_one_line_error, default_model, fairlm, fixture, scratch};

/// `fairlm audit ARGS --out DIR/NAME [--shard K/N]` through `model` (a path, or a served
/// model's URL read with the tokenizer `tokenizer`); panics with stderr when it fails.
fn audit(dir: &Path, name: &str, model: &str, tokenizer: &Path, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = fairlm(&["audit", "--model", model, "--tokenizer"])
        .arg(tokenizer)
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn merge(dir: &Path, shards: &[&str], out: &str) -> std::process::Output {
    fairlm(&["merge"])
        .args(shards.iter().map(|s| dir.join(s)))
        .arg("--out")
        .arg(dir.join(out))
        .output()
        .unwrap()
}

fn same_files(a: &Path, b: &Path) {
    for file in ["results.json", "summary.md"] {
        let (x, y) = (
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
        );
        assert!(
            x == y,
            "{} and {} differ",
            a.join(file).display(),
            b.join(file).display()
        );
    }
}

/// The tiny model's audit over every template, with both pair benchmarks: three shards merged
/// in any order give the unsharded files byte for byte.
#[test]
fn sharded_audit_merges_to_the_unsharded_results() {
    let model = fixture("tiny-llama");
    let m = model.to_str().unwrap();
    let dir = scratch("shards");
    let crows = fixture("crows-sample.csv");
    let stereoset = fixture("stereoset-sample.json");
    let args = [
        "--samples",
        "2",
        "--bootstrap",
        "200",
        "--crows",
        crows.to_str().unwrap(),
        "--stereoset",
        stereoset.to_str().unwrap(),
    ];
    let whole = audit(&dir, "whole", m, &model, &args);
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let out = audit(
            &dir,
            &format!("s{k}"),
            m,
            &model,
            &[&args[..], &["--shard", &shard]].concat(),
        );
        assert!(out.join("shard.json").exists());
        assert!(
            !out.join("results.json").exists(),
            "a shard is not an audit"
        );
    }
    let o = merge(&dir, &["s3", "s1", "s2"], "merged");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same_files(&whole, &dir.join("merged"));
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("merged/timings.json")).unwrap()).unwrap();
    assert!(timings["2/3"]["probe"].as_f64().unwrap() > 0.0);

    // Parts that do not make one audit: each a one-line error, exit 2, nothing written.
    assert_one_line_error(merge(&dir, &["s1", "s3"], "bad"), &["shard 2/3 is missing"]);
    assert_one_line_error(
        merge(&dir, &["s1", "s2", "s2"], "bad"),
        &["shard 2/3", "also"],
    );
    assert_one_line_error(merge(&dir, &["s1", "whole"], "bad"), &["shard.json"]);
    audit(
        &dir,
        "seed1",
        m,
        &model,
        &[&args[..], &["--shard", "2/3", "--seed", "1"]].concat(),
    );
    assert_one_line_error(
        merge(&dir, &["s1", "seed1", "s3"], "bad"),
        &["not a shard of the same audit", "config"],
    );
    let server = Server::start(&model, &[]);
    let shard2 = [&args[..], &["--shard", "2/3"]].concat();
    audit(&dir, "served2", &server.url, &model, &shard2);
    drop(server);
    assert_one_line_error(
        merge(&dir, &["s1", "served2", "s3"], "bad"),
        &["not a shard of the same audit", "model"],
    );
    audit(
        &dir,
        "of2",
        m,
        &model,
        &[&args[..], &["--shard", "2/2"]].concat(),
    );
    assert_one_line_error(merge(&dir, &["s1", "of2", "s3"], "bad"), &["another split"]);
    assert!(!dir.join("bad").join("results.json").exists());
    for bad in ["0/3", "4/3", "3"] {
        let o = fairlm(&["audit", "--model", m, "--shard", bad, "--out"])
            .arg(dir.join("never"))
            .output()
            .unwrap();
        assert_one_line_error(o, &["--shard"]);
    }
    let o = fairlm(&["audit", "--model", m, "--shard", "1/2"])
        .output()
        .unwrap();
    assert_one_line_error(o, &["--out"]);
}

/// The default model's quick audit as three shards through `fairlm serve` gives the
/// in-process run's results.json byte for byte, but for the model's record and the run's
/// config (which name the model as it was reached).
#[test]
fn default_model_quick_audit_shards_through_a_server() {
    let model = default_model();
    let m = model.to_str().unwrap();
    let dir = scratch("shards-default");
    let whole = audit(&dir, "whole", m, &model, &["--quick"]);
    let server = Server::start(&model, &[]);
    for k in 1..=3 {
        let shard = format!("{k}/3");
        audit(
            &dir,
            &format!("s{k}"),
            &server.url,
            &model,
            &["--quick", "--shard", &shard],
        );
    }
    drop(server);
    let o = merge(&dir, &["s1", "s2", "s3"], "merged");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let without_model = |d: &Path| {
        let mut r = super::served::results(d);
        r.as_object_mut().unwrap().remove("model");
        r.as_object_mut().unwrap().remove("run_config");
        r
    };
    assert_eq!(without_model(&whole), without_model(&dir.join("merged")));
}

/// An audit killed after some templates were probed: `--resume` with other options is refused
/// (the field named), with the same options it finishes with the uninterrupted run's files.
#[test]
fn a_killed_audit_resumes_from_its_checkpoint() {
    let model = fixture("tiny-llama");
    let m = model.to_str().unwrap();
    let dir = scratch("resume");
    let args = ["--samples", "4", "--bootstrap", "100"];
    let whole = audit(&dir, "whole", m, &model, &args);
    let out = dir.join("killed");
    let checkpoint = out.join("probe-checkpoint.json");
    let mut child = fairlm(&["audit", "--model", m])
        .args(args)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !checkpoint.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before a kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("results.json").exists(), "killed too late");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    let probed = saved["templates"].as_object().unwrap().len();
    assert!((1..23).contains(&probed), "{probed} templates saved");
    let o = fairlm(&["audit", "--model", m, "--resume", "--seed", "1"])
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_one_line_error(o, &["probe-checkpoint.json", "another audit", "config"]);
    audit(
        &dir,
        "killed",
        m,
        &model,
        &[&args[..], &["--resume"]].concat(),
    );
    same_files(&whole, &out);
    assert!(
        !checkpoint.exists(),
        "removed once the results hold the records"
    );
}

/// `scripts/slurm-audit.sh` as Slurm runs it (one task per shard, `fairlm` on the PATH, the
/// job's directory as working directory) and the merge the README shows: the audit one
/// unsharded run writes.
#[test]
fn the_slurm_script_shards_the_audit() {
    let model = fixture("tiny-llama");
    let dir = scratch("slurm");
    let bin = Path::new(env!("CARGO_BIN_EXE_fairlm")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let script = super::root().join("scripts/slurm-audit.sh");
    for k in 1..=3 {
        let o = std::process::Command::new("bash")
            .arg(&script)
            .current_dir(&dir)
            .env("PATH", &path)
            .env("MODEL", &model)
            .env("SLURM_ARRAY_TASK_ID", k.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = merge(
        &dir,
        &["audit/shard-1", "audit/shard-2", "audit/shard-3"],
        "audit/merged",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let whole = dir.join("whole");
    let o = fairlm(&["audit", "--model"])
        .arg(&model)
        .args(["--seed", "0", "--out"])
        .arg(&whole)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same_files(&whole, &dir.join("audit/merged"));
}
