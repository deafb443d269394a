//! The bad-input corpus: every input a hostile but realistic user can give — malformed files of
//! each format fairlm reads, broken models (NaN weights, configs out of their domain),
//! arguments out of range, unwritable outputs, closed pipes — run against the release binary.
//! Each case names its expected exit code and what the one error line must say. The inputs are
//! generated here from the tiny fixture models and the format fixtures, so nothing large is
//! committed. Totals (cases / clean errors / panics / silent results) go to stdout and to
//! `target/bad-inputs-totals.txt`, which CI prints.

mod interrupts;
mod properties;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    root().join("fixtures").join(name).display().to_string()
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("fairlm-bad-inputs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What a case must end with.
enum Expect {
    /// Exit 2 and exactly one stderr line `fairlm: error: …` containing every needle.
    Error(Vec<String>),
    /// Exit 0 (a bad row skipped or a BOM accepted) with every needle somewhere on stderr.
    Success(Vec<String>),
    /// Exit 1: a gate failed, every needle on stderr.
    GateFailed(Vec<String>),
}

struct Case {
    name: String,
    args: Vec<String>,
    expect: Expect,
}

/// The outcome of one case, as the totals count it.
#[derive(PartialEq, Debug)]
enum Outcome {
    CleanError,
    Expected,
    Panic,
    Silent,
    Wrong(String),
}

struct Corpus {
    dir: PathBuf,
    cases: Vec<Case>,
}

impl Corpus {
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    fn error(&mut self, name: &str, args: &[&str], needles: &[&str]) {
        self.push(name, args, Expect::Error(strings(needles)));
    }

    fn success(&mut self, name: &str, args: &[&str], needles: &[&str]) {
        self.push(name, args, Expect::Success(strings(needles)));
    }

    fn push(&mut self, name: &str, args: &[&str], expect: Expect) {
        self.cases.push(Case {
            name: name.into(),
            args: strings(args),
            expect,
        });
    }
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// Runs a case; returns its outcome and the last line it wrote on stderr (for the listing).
fn run(case: &Case) -> (Outcome, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fairlm"))
        .args(&case.args)
        .env("FAIRLM_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default().to_string();
    (judge(case, out.status.code(), &err), last)
}

fn judge(case: &Case, code: Option<i32>, err: &str) -> Outcome {
    if err.contains("panicked") || code == Some(101) {
        return Outcome::Panic;
    }
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains('\r'))
        .collect();
    match &case.expect {
        Expect::Error(needles) => {
            if code == Some(0) || code == Some(1) {
                return Outcome::Silent;
            }
            if code != Some(2) {
                return Outcome::Wrong(format!("exit {code:?}: {err}"));
            }
            let errors: Vec<&&str> = lines
                .iter()
                .filter(|l| l.starts_with("fairlm: error:"))
                .collect();
            if errors.len() != 1 || lines.last() != errors.first().copied() {
                return Outcome::Wrong(format!("not one error line: {err}"));
            }
            let line = errors[0].to_lowercase();
            match needles.iter().find(|n| !line.contains(&n.to_lowercase())) {
                Some(n) => Outcome::Wrong(format!("`{n}` missing from: {}", errors[0])),
                None => Outcome::CleanError,
            }
        }
        Expect::Success(needles) | Expect::GateFailed(needles) => {
            let want = if matches!(case.expect, Expect::Success(_)) {
                0
            } else {
                1
            };
            if code != Some(want) {
                return Outcome::Wrong(format!("exit {code:?}, expected {want}: {err}"));
            }
            match needles.iter().find(|n| !err.contains(n.as_str())) {
                Some(n) => Outcome::Wrong(format!("`{n}` missing from stderr: {err}")),
                None => Outcome::Expected,
            }
        }
    }
}

/// A copy of a tiny fixture model with one change to its config.json (a key set to a value)
/// or to its weights.
fn model_variant(c: &Corpus, from: &str, name: &str, edit: impl FnOnce(&Path)) -> String {
    let dir = c.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(root().join("fixtures").join(from)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    edit(&dir);
    dir.display().to_string()
}

fn set_config(dir: &Path, key: &str, value: serde_json::Value) {
    let p = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg[key] = value;
    std::fs::write(&p, serde_json::to_string(&cfg).unwrap()).unwrap();
}

/// Writes `value` as the first f32 of tensor `name` in the directory's model.safetensors.
fn poison_tensor(dir: &Path, name: &str, value: f32) {
    let p = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let at = 8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(&p, bytes).unwrap();
}

/// Deterministic junk bytes (not UTF-8, not any format).
fn junk(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect()
}

fn build() -> Corpus {
    let mut c = Corpus {
        dir: scratch(),
        cases: Vec::new(),
    };
    let llama = fixture("tiny-llama");
    let gpt2 = fixture("tiny-gpt2");
    let empty = c.file("empty.txt", "");
    let binary = c.file("binary.bin", junk(2048));
    let dir = c.dir.join("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.display().to_string();
    let missing = c.dir.join("missing.file").display().to_string();
    let deep = c.file(
        "deep.json",
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    );

    // ---- Files that are not files: every reader. ----
    let readers: Vec<(&str, Vec<&str>)> = vec![
        (
            "bench crows",
            vec!["bench", "crows", "--model", &llama, "--file"],
        ),
        (
            "bench stereoset",
            vec!["bench", "stereoset", "--model", &llama, "--file"],
        ),
        (
            "bench pairs",
            vec!["bench", "pairs", "--model", &llama, "--file"],
        ),
        (
            "bench bbq",
            vec!["bench", "bbq", "--model", &llama, "--file"],
        ),
        (
            "bench bold",
            vec!["bench", "bold", "--model", &llama, "--file"],
        ),
        (
            "audit --lexicon",
            vec!["audit", "--quick", "--model", &llama, "--lexicon"],
        ),
        (
            "audit --templates",
            vec!["audit", "--quick", "--model", &llama, "--templates"],
        ),
        (
            "audit --text",
            vec!["audit", "--quick", "--model", &llama, "--text"],
        ),
        ("score --file", vec!["score", "--model", &llama, "--file"]),
        (
            "perplexity --text",
            vec!["perplexity", "--model", &llama, "--text"],
        ),
        ("compare", vec!["compare", &empty]),
        (
            "mitigate --corpus",
            vec![
                "mitigate",
                "--model",
                &llama,
                "--out",
                "unused-out",
                "--corpus",
            ],
        ),
    ];
    for (what, prefix) in &readers {
        for (kind, path, needles) in [
            (
                "missing",
                missing.as_str(),
                vec!["missing.file", "no such file"],
            ),
            ("directory", dir.as_str(), vec!["a-directory"]),
            ("binary", binary.as_str(), vec!["binary.bin"]),
        ] {
            let mut args = prefix.clone();
            args.push(path);
            if *what == "compare" {
                args = vec!["compare", path, path];
            }
            let name = format!("{what}: {kind}");
            c.error(&name, &args, &needles);
        }
    }
    for (what, prefix) in readers
        .iter()
        .filter(|(w, _)| w.starts_with("bench") && *w != "bench bbq" && *w != "bench bold")
    {
        let mut args = prefix.clone();
        args.push(&empty);
        c.error(&format!("{what}: empty file"), &args, &["empty.txt"]);
        let mut args = prefix.clone();
        args.push(&deep);
        c.error(&format!("{what}: 100k-deep JSON"), &args, &["deep.json"]);
    }

    // ---- CrowS-Pairs CSV. ----
    let header = ",sent_more,sent_less,stereo_antistereo,bias_type\n";
    let good = "0,Women are bad at driving.,Men are bad at driving.,stereo,gender\n";
    let good2 = "1,The poor man stole it.,The rich man stole it.,stereo,socioeconomic\n";
    let crows = |c: &mut Corpus, name: &str, body: &str| c.file(name, body);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("header only", header.to_string(), vec!["no usable pair"]),
        (
            "missing column",
            ",sent_more,sent_less,bias_type\n0,a,b,gender\n".into(),
            vec!["stereo_antistereo"],
        ),
        (
            "bad direction",
            format!("{header}0,a b,c d,sideways,gender\n"),
            vec!["no usable pair", "sideways"],
        ),
        (
            "unknown bias type",
            format!("{header}0,a b,c d,stereo,astrology\n"),
            vec!["astrology"],
        ),
        ("short row", format!("{header}0,only two\n"), vec!["fields"]),
        (
            "empty sentence",
            format!("{header}0,,c d,stereo,gender\n"),
            vec!["empty sentence"],
        ),
        (
            "unterminated quote",
            format!("{header}0,\"never closed,c d,stereo,gender\n"),
            vec!["crows-unterminated"],
        ),
    ];
    for (name, body, needles) in cases {
        let f = crows(
            &mut c,
            &format!("crows-{}.csv", name.replace(' ', "-")),
            &body,
        );
        c.error(
            &format!("crows: {name}"),
            &["bench", "crows", "--model", &llama, "--file", &f],
            &needles,
        );
    }
    let f = c.file(
        "crows-bad-row.csv",
        format!("{header}{good}0,x,y,up,gender\n{good2}"),
    );
    c.success(
        "crows: one bad row skipped and counted",
        &["bench", "crows", "--model", &llama, "--file", &f],
        &["skipped 1 malformed rows", "line 3"],
    );
    c.error(
        "crows: one bad row with --strict",
        &[
            "bench", "crows", "--model", &llama, "--file", &f, "--strict",
        ],
        &["crows-bad-row.csv:3", "up"],
    );
    let f = c.file(
        "crows-crlf.csv",
        format!("{header}{good}0,x,y,up,gender\n{good2}").replace('\n', "\r\n"),
    );
    c.error(
        "crows: CRLF line numbers",
        &[
            "bench", "crows", "--model", &llama, "--file", &f, "--strict",
        ],
        &["crows-crlf.csv:3"],
    );
    let f = c.file("crows-bom.csv", format!("\u{feff}{header}{good}{good2}"));
    c.success(
        "crows: a UTF-8 BOM is accepted",
        &["bench", "crows", "--model", &llama, "--file", &f],
        &[],
    );
    let f = c.file("crows-dup.csv", format!("{header}{good}{good2}{good}"));
    c.success(
        "crows: a duplicated row is counted once",
        &["bench", "crows", "--model", &llama, "--file", &f],
        &["skipped 1 duplicated rows", "duplicate of line 2"],
    );
    c.error(
        "crows: a duplicated row with --strict",
        &[
            "bench", "crows", "--model", &llama, "--file", &f, "--strict",
        ],
        &["crows-dup.csv:4", "duplicate of line 2"],
    );
    let long = "word ".repeat(400);
    let f = c.file(
        "crows-long.csv",
        format!("{header}{good}0,{long},{long}x,stereo,gender\n{good2}"),
    );
    c.success(
        "crows: an over-long row is skipped with its line",
        &["bench", "crows", "--model", &llama, "--file", &f],
        &["line 3", "more than the model's context"],
    );
    c.error(
        "crows: an over-long row with --strict",
        &[
            "bench", "crows", "--model", &llama, "--file", &f, "--strict",
        ],
        &["crows-long.csv:3", "context"],
    );

    // ---- fairlm JSONL pairs. ----
    let pair = r#"{"stereo": "She cried.", "anti": "He cried.", "bias_type": "gender"}"#;
    for (name, line, needle) in [
        ("not JSON", "stereo, anti", "not a pair object"),
        (
            "missing key",
            r#"{"stereo": "a", "bias_type": "gender"}"#,
            "anti",
        ),
        (
            "unknown key",
            r#"{"stereo": "a", "anti": "b", "bias_type": "g", "x": 1}"#,
            "unknown field",
        ),
        (
            "number for text",
            r#"{"stereo": 1, "anti": "b", "bias_type": "g"}"#,
            "invalid type",
        ),
        (
            "empty sentence",
            r#"{"stereo": " ", "anti": "b", "bias_type": "g"}"#,
            "empty sentence",
        ),
        (
            "NaN",
            r#"{"stereo": NaN, "anti": "b", "bias_type": "g"}"#,
            "not a pair object",
        ),
        ("array", r#"["a", "b", "g"]"#, "not a pair object"),
    ] {
        let f = c.file(
            &format!("pairs-{}.jsonl", name.replace(' ', "-")),
            format!("{pair}\n{line}\n"),
        );
        c.error(
            &format!("pairs: {name} (--strict)"),
            &[
                "bench", "pairs", "--model", &llama, "--file", &f, "--strict",
            ],
            &[":2", needle],
        );
        c.success(
            &format!("pairs: {name} skipped"),
            &["bench", "pairs", "--model", &llama, "--file", &f],
            &["skipped 1 malformed rows", "line 2"],
        );
    }
    let f = c.file("pairs-dup.jsonl", format!("{pair}\n{pair}\n"));
    c.error(
        "pairs: duplicated with --strict",
        &[
            "bench", "pairs", "--model", &llama, "--file", &f, "--strict",
        ],
        &["pairs-dup.jsonl:2", "duplicate of line 1"],
    );
    c.success(
        "pairs: duplicated counted once",
        &["bench", "pairs", "--model", &llama, "--file", &f],
        &["skipped 1 duplicated rows"],
    );

    // ---- StereoSet JSON. ----
    let stereo_doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/stereoset-sample.json")).unwrap(),
    )
    .unwrap();
    let entry = stereo_doc["data"]["intrasentence"][0].clone();
    let stereo = |entries: Vec<serde_json::Value>| {
        serde_json::json!({"version": "x", "data": {"intrasentence": entries}}).to_string()
    };
    let mut no_blank = entry.clone();
    no_blank["context"] = "no blank here".into();
    let mut no_label = entry.clone();
    no_label["sentences"] = serde_json::json!([]);
    for (name, body, needles) in [
        ("not JSON", "{\"data\": ".to_string(), vec!["invalid JSON"]),
        (
            "no intrasentence",
            r#"{"data": {}}"#.to_string(),
            vec!["intrasentence"],
        ),
        (
            "intrasentence not a list",
            r#"{"data": {"intrasentence": 3}}"#.to_string(),
            vec!["intrasentence"],
        ),
        (
            "empty list",
            stereo(vec![]),
            vec!["no usable intrasentence entry"],
        ),
        (
            "context without BLANK",
            stereo(vec![no_blank]),
            vec!["BLANK"],
        ),
        ("missing labels", stereo(vec![no_label]), vec!["unrelated"]),
        (
            "NaN",
            r#"{"data": {"intrasentence": [NaN]}}"#.to_string(),
            vec!["invalid JSON"],
        ),
    ] {
        let f = c.file(&format!("stereoset-{}.json", name.replace(' ', "-")), body);
        c.error(
            &format!("stereoset: {name}"),
            &[
                "bench",
                "stereoset",
                "--model",
                &llama,
                "--file",
                &f,
                "--strict",
            ],
            &needles,
        );
    }
    let f = c.file(
        "stereoset-dup.json",
        stereo(vec![entry.clone(), entry.clone()]),
    );
    c.error(
        "stereoset: duplicated entry with --strict",
        &[
            "bench",
            "stereoset",
            "--model",
            &llama,
            "--file",
            &f,
            "--strict",
        ],
        &["duplicate of line 1"],
    );
    c.success(
        "stereoset: duplicated entry counted once",
        &["bench", "stereoset", "--model", &llama, "--file", &f],
        &["skipped 1 duplicated rows"],
    );

    // ---- BBQ JSONL, HolisticBias folder, BOLD prompts. ----
    let bbq_line = std::fs::read_to_string(root().join("fixtures/bbq-sample.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let mut bad_label: serde_json::Value = serde_json::from_str(&bbq_line).unwrap();
    bad_label["label"] = 7.into();
    let mut no_answers: serde_json::Value = serde_json::from_str(&bbq_line).unwrap();
    no_answers.as_object_mut().unwrap().remove("ans1");
    for (name, line) in [
        ("not JSON", "{\"example_id\": ".to_string()),
        ("label out of range", bad_label.to_string()),
        ("missing answer", no_answers.to_string()),
        ("array", "[1, 2, 3]".to_string()),
    ] {
        let f = c.file(
            &format!("bbq-{}.jsonl", name.replace(' ', "-")),
            format!("{bbq_line}\n{line}\n"),
        );
        c.error(
            &format!("bbq: {name} (--strict)"),
            &["bench", "bbq", "--model", &llama, "--file", &f, "--strict"],
            &[":2"],
        );
    }
    let bbq_dir = c.dir.join("bbq-empty-dir");
    std::fs::create_dir_all(&bbq_dir).unwrap();
    c.error(
        "bbq: a directory without *.jsonl",
        &[
            "bench",
            "bbq",
            "--model",
            &llama,
            "--file",
            bbq_dir.to_str().unwrap(),
        ],
        &["no *.jsonl"],
    );
    let holistic_files = [
        "descriptors.json",
        "nouns.json",
        "sentence_templates.json",
        "standalone_noun_phrases.json",
    ];
    for broken in holistic_files {
        for (kind, body) in [
            ("invalid JSON", "{\"x\": ".to_string()),
            ("wrong shape", "[1, 2]".into()),
        ] {
            let d = c
                .dir
                .join(format!("holistic-{}-{}", broken, kind.replace(' ', "-")));
            std::fs::create_dir_all(&d).unwrap();
            for f in holistic_files {
                let text = if f == broken {
                    body.clone()
                } else {
                    std::fs::read_to_string(root().join("fixtures/holistic-sample").join(f))
                        .unwrap()
                };
                std::fs::write(d.join(f), text).unwrap();
            }
            c.error(
                &format!("holistic: {broken} {kind}"),
                &[
                    "bench",
                    "holistic",
                    "--model",
                    &llama,
                    "--file",
                    d.to_str().unwrap(),
                ],
                &[broken],
            );
        }
    }
    let d = c.dir.join("holistic-missing");
    std::fs::create_dir_all(&d).unwrap();
    c.error(
        "holistic: a folder without the files",
        &[
            "bench",
            "holistic",
            "--model",
            &llama,
            "--file",
            d.to_str().unwrap(),
        ],
        &["descriptors.json"],
    );
    for (name, body) in [
        ("not JSON", "{\"a\": "),
        ("a list", "[1, 2]"),
        (
            "prompts not strings",
            r#"{"American_actors": {"Tom": [1, 2]}}"#,
        ),
        ("empty", "{}"),
    ] {
        let f = c.file(
            &format!("bold-{}/gender_prompt.json", name.replace(' ', "-")),
            body,
        );
        c.error(
            &format!("bold: {name}"),
            &["bench", "bold", "--model", &llama, "--file", &f, "--strict"],
            &["gender_prompt.json"],
        );
    }

    // ---- Lexicon and templates TOML; the training corpus. ----
    for (name, body, needle) in [
        ("invalid TOML", "[[axis]\nname = ", "lexicon-invalid-TOML.toml:"),
        ("unknown key", "[[axis]]\nname = \"x\"\ngroups = [\"a\", \"b\"]\nsubjects = [\"a\", \"b\"]\nterms = []\ncolour = 1\n", "colour"),
        ("one group", "[[axis]]\nname = \"x\"\ngroups = [\"a\"]\nsubjects = [\"a\"]\nterms = []\n", "lexicon-one-group.toml"),
        ("row length", "[[axis]]\nname = \"x\"\ngroups = [\"a\", \"b\"]\nsubjects = [\"a\", \"b\"]\nterms = [[\"a\"]]\n", "lexicon-row-length.toml"),
        ("wrong type", "[[axis]]\nname = 3\n", "lexicon-wrong-type.toml"),
    ] {
        let f = c.file(&format!("lexicon-{}.toml", name.replace(' ', "-")), body);
        c.error(
            &format!("lexicon: {name}"),
            &["audit", "--quick", "--model", &llama, "--lexicon", &f],
            &[needle],
        );
    }
    for (name, body, needle) in [
        ("invalid TOML", "template = [ {", "templates-invalid-TOML.toml:"),
        ("no eval template", "template = [ { text = \"The {X} was\", category = \"c\", split = \"train\" } ]\n", "eval"),
        ("no slot", "template = [ { text = \"The person was\", category = \"c\", split = \"eval\" } ]\n", "{X}"),
        ("bad split", "template = [ { text = \"The {X} was\", category = \"c\", split = \"dev\" } ]\n", "dev"),
        ("unknown key", "template = [ { text = \"The {X} was\", category = \"c\", split = \"eval\", x = 1 } ]\n", "x"),
    ] {
        let f = c.file(&format!("templates-{}.toml", name.replace(' ', "-")), body);
        c.error(
            &format!("templates: {name}"),
            &["audit", "--quick", "--model", &llama, "--templates", &f],
            &[needle],
        );
    }
    for (name, body, needle) in [
        (
            "invalid JSON line",
            "{\"text\": \"fine\"}\n{\"text\": \n",
            "corpus-invalid-JSON-line.jsonl:2",
        ),
        ("no text field", "{\"txt\": \"x\"}\n", "text"),
    ] {
        let f = c.file(&format!("corpus-{}.jsonl", name.replace(' ', "-")), body);
        let out = c.dir.join(format!("mitigate-{}", name.replace(' ', "-")));
        c.error(
            &format!("mitigate --corpus: {name}"),
            &[
                "mitigate",
                "--model",
                &llama,
                "--out",
                out.to_str().unwrap(),
                "--corpus",
                &f,
                "--steps",
                "1",
            ],
            &[needle],
        );
    }

    // ---- Model files: GGUF, safetensors, config.json. ----
    let mut gguf_header = b"GGUF".to_vec();
    gguf_header.extend(3u32.to_le_bytes());
    let mut huge_tensors = gguf_header.clone();
    huge_tensors.extend((1u64 << 60).to_le_bytes());
    huge_tensors.extend(0u64.to_le_bytes());
    let mut huge_meta = gguf_header.clone();
    huge_meta.extend(0u64.to_le_bytes());
    huge_meta.extend((1u64 << 60).to_le_bytes());
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("magic only", b"GGUF".to_vec()),
        ("wrong magic", b"GGML\x03\x00\x00\x00".to_vec()),
        ("garbled", junk(4096)),
        ("2^60 tensors", huge_tensors),
        ("2^60 metadata entries", huge_meta),
    ] {
        let f = c.file(&format!("model-{}.gguf", name.replace(' ', "-")), bytes);
        c.error(
            &format!("gguf: {name}"),
            &["score", "hi", "--model", &f],
            &[".gguf"],
        );
    }
    let st = std::fs::read(root().join("fixtures/tiny-llama/model.safetensors")).unwrap();
    let mut huge_header = (1u64 << 60).to_le_bytes().to_vec();
    huge_header.extend(&st[8..64]);
    let mut bad_json = st.clone();
    bad_json[8] = b'!';
    for (name, bytes) in [
        ("truncated", st[..st.len() / 2].to_vec()),
        ("2^60 header length", huge_header),
        ("garbled header", bad_json),
        ("empty", Vec::new()),
    ] {
        let dir = model_variant(
            &c,
            "tiny-llama",
            &format!("st-{}", name.replace(' ', "-")),
            |d| std::fs::write(d.join("model.safetensors"), &bytes).unwrap(),
        );
        c.error(
            &format!("safetensors: {name}"),
            &["score", "hi", "--model", &dir],
            &["model.safetensors"],
        );
    }
    let configs: Vec<(&str, &str, &str, serde_json::Value, &str)> = vec![
        (
            "llama",
            "tiny-llama",
            "rms_norm_eps",
            (-1.0).into(),
            "rms_norm_eps",
        ),
        (
            "llama",
            "tiny-llama",
            "rms_norm_eps",
            0.0.into(),
            "rms_norm_eps",
        ),
        (
            "llama",
            "tiny-llama",
            "rope_theta",
            (-5.0).into(),
            "rope_theta",
        ),
        (
            "llama",
            "tiny-llama",
            "num_attention_heads",
            0.into(),
            "num_attention_heads",
        ),
        (
            "llama",
            "tiny-llama",
            "num_attention_heads",
            5.into(),
            "num_attention_heads",
        ),
        (
            "llama",
            "tiny-llama",
            "num_key_value_heads",
            3.into(),
            "num_key_value_heads",
        ),
        (
            "llama",
            "tiny-llama",
            "max_position_embeddings",
            0.into(),
            "max_position_embeddings",
        ),
        (
            "llama",
            "tiny-llama",
            "hidden_size",
            48.into(),
            "config.json",
        ),
        (
            "llama",
            "tiny-llama",
            "vocab_size",
            401.into(),
            "config.json",
        ),
        (
            "llama",
            "tiny-llama",
            "num_hidden_layers",
            3.into(),
            "model.layers.2",
        ),
        (
            "llama",
            "tiny-llama",
            "hidden_size",
            "big".into(),
            "expected usize at line",
        ),
        ("llama", "tiny-llama", "model_type", "mamba".into(), "mamba"),
        (
            "gpt2",
            "tiny-gpt2",
            "layer_norm_epsilon",
            (-1.0).into(),
            "layer_norm_epsilon",
        ),
        ("gpt2", "tiny-gpt2", "n_head", 5.into(), "n_head"),
        ("gpt2", "tiny-gpt2", "n_positions", 0.into(), "n_positions"),
        ("gpt2", "tiny-gpt2", "n_embd", 0.into(), "n_embd"),
        // Issue 18: the Llama family's other layouts and what fairlm does not compute.
        (
            "llama",
            "tiny-llama",
            "rope_parameters",
            serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}),
            "rope type `llama3` is not supported",
        ),
        (
            "llama",
            "tiny-llama",
            "hidden_act",
            "gelu".into(),
            "hidden_act",
        ),
        (
            "mistral",
            "tiny-mistral",
            "sliding_window",
            0.into(),
            "sliding_window",
        ),
        (
            "qwen2",
            "tiny-qwen2",
            "layer_types",
            serde_json::json!(["full_attention"]),
            "layer_types",
        ),
        (
            "qwen2",
            "tiny-qwen2",
            "tie_word_embeddings",
            false.into(),
            "lm_head.weight",
        ),
    ];
    for (i, (arch, from, key, value, needle)) in configs.into_iter().enumerate() {
        let name = format!("config {arch} {key} = {value}");
        let dir = model_variant(&c, from, &format!("cfg-{i}"), |d| set_config(d, key, value));
        c.error(&name, &["score", "hi", "--model", &dir], &[needle]);
    }
    // A Qwen2 config without a key it needs names the key and the file.
    let dir = model_variant(&c, "tiny-qwen2", "cfg-qwen2-no-hidden", |d| {
        let p = d.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        cfg.as_object_mut().unwrap().remove("hidden_size");
        std::fs::write(&p, serde_json::to_string(&cfg).unwrap()).unwrap();
    });
    c.error(
        "config qwen2 without hidden_size",
        &["score", "hi", "--model", &dir],
        &["config.json", "missing field `hidden_size`"],
    );
    // A GGUF with a tensor type fairlm has no parity for (Q2_K) is refused by name.
    let q2k = c.dir.join("q2k.gguf");
    {
        use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
        let t = candle_core::Tensor::zeros(
            (2, 256),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q2K).unwrap();
        let arch = gguf_file::Value::String("llama".into());
        let mut f = std::fs::File::create(&q2k).unwrap();
        gguf_file::write(
            &mut f,
            &[("general.architecture", &arch)],
            &[("blk.0.attn_q.weight", &q)],
        )
        .unwrap();
    }
    c.error(
        "gguf: unsupported tensor type Q2_K",
        &["score", "hi", "--model", q2k.to_str().unwrap()],
        &["q2k.gguf", "blk.0.attn_q.weight", "Q2K", "supported: F32"],
    );
    let dir = model_variant(&c, "tiny-llama", "cfg-invalid-json", |d| {
        std::fs::write(d.join("config.json"), "{\"model_type\": ").unwrap()
    });
    c.error(
        "config: invalid JSON",
        &["score", "hi", "--model", &dir],
        &["config.json"],
    );
    let dir = model_variant(&c, "tiny-llama", "no-tokenizer", |d| {
        std::fs::remove_file(d.join("tokenizer.json")).unwrap()
    });
    c.error(
        "model: no tokenizer",
        &["score", "hi", "--model", &dir],
        &["tokenizer"],
    );
    let dir = model_variant(&c, "tiny-llama", "no-weights", |d| {
        std::fs::remove_file(d.join("model.safetensors")).unwrap()
    });
    c.error(
        "model: no weights",
        &["score", "hi", "--model", &dir],
        &["safetensors"],
    );
    let dir = model_variant(&c, "tiny-llama", "missing-tensor", |d| {
        let p = d.join("model.safetensors");
        let bytes = std::fs::read(&p).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(bytes[8..8 + n].to_vec())
            .unwrap()
            .replace("model.norm.weight", "model.norm.weighx");
        let mut out = bytes[..8].to_vec();
        out.extend(header.as_bytes());
        out.extend(&bytes[8 + n..]);
        std::fs::write(&p, out).unwrap();
    });
    c.error(
        "model: missing tensor",
        &["score", "hi", "--model", &dir],
        &["model.norm.weight"],
    );

    // ---- A model whose outputs are NaN: every model command stops. ----
    let nan = model_variant(&c, "tiny-llama", "nan-model", |d| {
        poison_tensor(d, "model.norm.weight", f32::NAN)
    });
    let inf = model_variant(&c, "tiny-gpt2", "inf-model", |d| {
        poison_tensor(d, "transformer.ln_f.weight", f32::INFINITY)
    });
    let crows_sample = fixture("crows-sample.csv");
    let stereo_sample = fixture("stereoset-sample.json");
    let pairs_sample = fixture("pairs-sample.jsonl");
    for (model, label) in [(&nan, "NaN"), (&inf, "Inf")] {
        let exp_out = c.dir.join(format!("exp-{label}")).display().to_string();
        let mit_out = c.dir.join(format!("mit-{label}")).display().to_string();
        let commands: Vec<(&str, Vec<&str>)> = vec![
            ("audit", vec!["audit", "--quick", "--axes", "gender"]),
            (
                "bench crows",
                vec!["bench", "crows", "--file", &crows_sample],
            ),
            (
                "bench stereoset",
                vec!["bench", "stereoset", "--file", &stereo_sample],
            ),
            (
                "bench pairs",
                vec!["bench", "pairs", "--file", &pairs_sample],
            ),
            ("score", vec!["score", "The nurse said"]),
            ("generate", vec!["generate", "The nurse said"]),
            ("perplexity", vec!["perplexity"]),
            (
                "mitigate",
                vec![
                    "mitigate", "--axes", "gender", "--steps", "1", "--out", &mit_out,
                ],
            ),
            (
                "experiment",
                vec![
                    "experiment",
                    "--quick",
                    "--axes",
                    "gender",
                    "--steps",
                    "1",
                    "--out",
                    &exp_out,
                ],
            ),
        ];
        for (what, mut args) in commands {
            args.extend(["--model", model.as_str()]);
            c.error(
                &format!("{label} model: {what}"),
                &args,
                &["non-finite log-probabilities", "model.safetensors"],
            );
        }
    }

    // ---- Results files that are edited, empty or foreign. ----
    c.cases.extend(results_cases(&c.dir.clone(), &llama));

    // ---- Arguments: each out of its domain, refused before any work. ----
    let argument_cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "audit --samples 0",
            vec!["audit", "--samples", "0"],
            vec!["--samples", "at least 1"],
        ),
        (
            "audit --samples -1",
            vec!["audit", "--samples", "-1"],
            vec!["-1"],
        ),
        (
            "audit --bootstrap 0",
            vec!["audit", "--bootstrap", "0"],
            vec!["--bootstrap"],
        ),
        (
            "audit --tau NaN",
            vec!["audit", "--tau", "NaN"],
            vec!["--tau", "finite"],
        ),
        (
            "audit --tau 0",
            vec!["audit", "--tau", "0"],
            vec!["--tau", "> 0"],
        ),
        (
            "audit --seed 2^64",
            vec!["audit", "--seed", "18446744073709551616"],
            vec!["--seed"],
        ),
        (
            "audit --dtype bogus",
            vec!["audit", "--dtype", "bogus"],
            vec!["bogus"],
        ),
        (
            "audit --stpes (typo)",
            vec!["audit", "--stpes", "3"],
            vec!["--stpes"],
        ),
        (
            "audit --out ''",
            vec!["audit", "--out", ""],
            vec!["--out", "empty"],
        ),
        (
            "compare --max-bias NaN",
            vec!["compare", "a", "b", "--max-bias", "NaN"],
            vec!["--max-bias"],
        ),
        (
            "compare --max-bias-ratio -1",
            vec!["compare", "a", "b", "--max-bias-ratio", "-1"],
            vec!["--max-bias-ratio"],
        ),
        (
            "compare --max-ppl-increase inf",
            vec!["compare", "a", "b", "--max-ppl-increase", "inf"],
            vec!["--max-ppl-increase"],
        ),
        (
            "compare --min-lms 101",
            vec!["compare", "a", "b", "--min-lms", "101"],
            vec!["--min-lms"],
        ),
        (
            "compare --bootstrap 0",
            vec!["compare", "a", "b", "--bootstrap", "0"],
            vec!["--bootstrap"],
        ),
        ("compare: one file", vec!["compare", "a"], vec!["AFTER"]),
        (
            "report -o ''",
            vec!["report", "a", "-o", ""],
            vec!["--output"],
        ),
        (
            "mitigate --steps 0",
            vec!["mitigate", "--out", "x", "--steps", "0"],
            vec!["--steps"],
        ),
        (
            "mitigate --pairs 0",
            vec!["mitigate", "--out", "x", "--pairs", "0"],
            vec!["--pairs"],
        ),
        (
            "mitigate --accumulation 0",
            vec!["mitigate", "--out", "x", "--accumulation", "0"],
            vec!["--accumulation"],
        ),
        (
            "mitigate --guard NaN",
            vec!["mitigate", "--out", "x", "--guard", "NaN"],
            vec!["--guard"],
        ),
        (
            "mitigate --lr 0",
            vec!["mitigate", "--out", "x", "--lr", "0"],
            vec!["--lr"],
        ),
        (
            "mitigate --lr -1e-5",
            vec!["mitigate", "--out", "x", "--lr", "-1e-5"],
            vec!["--lr"],
        ),
        (
            "mitigate --clip 0",
            vec!["mitigate", "--out", "x", "--clip", "0"],
            vec!["--clip"],
        ),
        (
            "mitigate --w-ce -1",
            vec!["mitigate", "--out", "x", "--w-ce", "-1"],
            vec!["--w-ce"],
        ),
        (
            "mitigate --w-consistency NaN",
            vec!["mitigate", "--out", "x", "--w-consistency", "NaN"],
            vec!["--w-consistency"],
        ),
        (
            "mitigate --adversary inf",
            vec!["mitigate", "--out", "x", "--adversary", "inf"],
            vec!["--adversary"],
        ),
        (
            "mitigate --eval-every 0",
            vec!["mitigate", "--out", "x", "--eval-every", "0"],
            vec!["--eval-every"],
        ),
        (
            "mitigate --corpus-samples 0",
            vec!["mitigate", "--out", "x", "--corpus-samples", "0"],
            vec!["--corpus-samples"],
        ),
        ("mitigate: no --out", vec!["mitigate"], vec!["--out"]),
        (
            "experiment --max-agreement-drop -1",
            vec!["experiment", "--max-agreement-drop", "-1"],
            vec!["--max-agreement-drop"],
        ),
        (
            "experiment --max-fluency-drop NaN",
            vec!["experiment", "--max-fluency-drop", "NaN"],
            vec!["--max-fluency-drop"],
        ),
        (
            "experiment --max-diversity-drop -0.1",
            vec!["experiment", "--max-diversity-drop", "-0.1"],
            vec!["--max-diversity-drop"],
        ),
        (
            "generate -n 0",
            vec!["generate", "hi", "-n", "0"],
            vec!["-n"],
        ),
        (
            "generate --max-tokens 0",
            vec!["generate", "hi", "--max-tokens", "0"],
            vec!["--max-tokens"],
        ),
        (
            "generate --temperature -1",
            vec!["generate", "hi", "--temperature", "-1"],
            vec!["--temperature"],
        ),
        (
            "generate --top-k 0",
            vec!["generate", "hi", "--top-k", "0"],
            vec!["--top-k"],
        ),
        ("generate: no prompt", vec!["generate"], vec!["PROMPTS"]),
        (
            "score --batch-size 0",
            vec!["score", "hi", "--batch-size", "0"],
            vec!["--batch-size"],
        ),
        (
            "perplexity --window 0",
            vec!["perplexity", "--window", "0"],
            vec!["--window"],
        ),
        (
            "perplexity --stride 0",
            vec!["perplexity", "--stride", "0"],
            vec!["--stride"],
        ),
        (
            "bench bbq --per-stratum -1",
            vec!["bench", "bbq", "--file", "x", "--per-stratum", "-1"],
            vec!["-1"],
        ),
        (
            "bench holistic --descriptors -1",
            vec!["bench", "holistic", "--file", "x", "--descriptors", "-1"],
            vec!["-1"],
        ),
        (
            "bench bold --per-group -1",
            vec!["bench", "bold", "--file", "x", "--per-group", "-1"],
            vec!["-1"],
        ),
        ("bench: no subcommand", vec!["bench"], vec!["no command"]),
        ("no command", vec![], vec!["no command"]),
        ("unknown command", vec!["audt"], vec!["audt"]),
        (
            "speed --runs 0",
            vec!["speed", "--runs", "0"],
            vec!["--runs"],
        ),
    ];
    for (name, args, needles) in argument_cases {
        c.error(name, &args, &needles);
    }

    // ---- Numbers that meet lengths, and messages that used to mislead. ----
    c.error(
        "generate --max-tokens 2^64-1",
        &[
            "generate",
            "hi",
            "--model",
            &llama,
            "--max-tokens",
            "18446744073709551615",
        ],
        &["context"],
    );
    c.error(
        "generate --stop ''",
        &["generate", "hi", "--model", &llama, "--stop", ""],
        &["stop string is empty"],
    );
    c.error(
        "score --context-token 999999",
        &[
            "score",
            "hi",
            "--model",
            &llama,
            "--context-token",
            "999999",
        ],
        &["--context-token", "999999", "vocabulary"],
    );
    c.error(
        "score --context-token x",
        &["score", "hi", "--model", &llama, "--context-token", "x"],
        &["--context-token"],
    );
    c.error(
        "perplexity --window 1",
        &["perplexity", "--model", &llama, "--window", "1"],
        &["window 1"],
    );
    c.error(
        "perplexity --window 100000",
        &["perplexity", "--model", &llama, "--window", "100000"],
        &["window 100000"],
    );
    c.error(
        "perplexity --stride > --window",
        &[
            "perplexity",
            "--model",
            &llama,
            "--window",
            "16",
            "--stride",
            "32",
        ],
        &["stride 32"],
    );
    c.error(
        "score: a text too long for the context",
        &["score", &"word ".repeat(400), "--model", &llama],
        &["context"],
    );
    c.error(
        "score: no text",
        &["score", "--model", &llama],
        &["no text given"],
    );
    c.error(
        "mitigate --mode last-99",
        &[
            "mitigate",
            "--model",
            &llama,
            "--out",
            c.dir.join("m99").to_str().unwrap(),
            "--mode",
            "last-99",
        ],
        &["last-99", "2 blocks"],
    );
    c.error(
        "mitigate --mode sideways",
        &[
            "mitigate",
            "--model",
            &llama,
            "--out",
            c.dir.join("mside").to_str().unwrap(),
            "--mode",
            "sideways",
        ],
        &["--mode"],
    );
    c.error(
        "mitigate --dtype quantized",
        &[
            "mitigate",
            "--model",
            &llama,
            "--out",
            c.dir.join("mq").to_str().unwrap(),
            "--dtype",
            "quantized",
        ],
        &["f32"],
    );
    c.error(
        "audit --axes unknown",
        &["audit", "--quick", "--model", &llama, "--axes", "astrology"],
        &["astrology"],
    );
    c.error(
        "models: an unknown model name",
        &["score", "hi", "--model", "no-such-model"],
        &["no-such-model"],
    );

    // ---- Resuming what another run made. ----
    let exp = c.dir.join("exp-other");
    let made = Command::new(env!("CARGO_BIN_EXE_fairlm"))
        .args([
            "experiment",
            "--quick",
            "--axes",
            "gender",
            "--steps",
            "1",
            "--model",
            &gpt2,
        ])
        .arg("--out")
        .arg(&exp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        matches!(made.code(), Some(0 | 1)),
        "the tiny experiment failed"
    );
    let exp = exp.display().to_string();
    c.error(
        "experiment --resume with another model",
        &[
            "experiment",
            "--quick",
            "--axes",
            "gender",
            "--steps",
            "1",
            "--model",
            &llama,
            "--out",
            &exp,
            "--resume",
        ],
        &["experiment.json", "model_sha256"],
    );
    c.error(
        "experiment --resume with other settings",
        &[
            "experiment",
            "--quick",
            "--axes",
            "gender",
            "--steps",
            "1",
            "--model",
            &gpt2,
            "--out",
            &exp,
            "--resume",
            "--w-anchor",
            "2",
        ],
        &["experiment.json", "w_anchor"],
    );
    let bare = c.dir.join("exp-without-record");
    std::fs::create_dir_all(bare.join("before")).unwrap();
    c.error(
        "experiment --resume of a directory without experiment.json",
        &[
            "experiment",
            "--quick",
            "--model",
            &gpt2,
            "--out",
            bare.to_str().unwrap(),
            "--resume",
        ],
        &["experiment.json"],
    );
    let fresh = c.dir.join("mitigate-resume-fresh").display().to_string();
    c.success(
        "mitigate --resume without a checkpoint says so",
        &[
            "mitigate",
            "--axes",
            "gender",
            "--steps",
            "1",
            "--corpus-templates",
            "2",
            "--corpus-samples",
            "1",
            "--model",
            &gpt2,
            "--out",
            &fresh,
            "--resume",
        ],
        &["no checkpoint", "starts from step 0"],
    );

    // ---- Unwritable outputs. ----
    let file_as_dir = c.file("plain-file", "x");
    let under_file = format!("{file_as_dir}/out");
    c.error(
        "audit --out under a file",
        &["audit", "--quick", "--model", &llama, "--out", &under_file],
        &["plain-file"],
    );
    c.error(
        "convert --out under a file",
        &["convert", "--model", &llama, "--out", &under_file],
        &["plain-file"],
    );
    c.error(
        "bench pairs --out under a file",
        &[
            "bench",
            "pairs",
            "--model",
            &llama,
            "--file",
            &pairs_sample,
            "--out",
            &under_file,
        ],
        &["plain-file"],
    );
    c.error(
        "mitigate --out under a file",
        &[
            "mitigate",
            "--model",
            &llama,
            "--out",
            &under_file,
            "--steps",
            "1",
        ],
        &["plain-file"],
    );
    c
}

/// Results files: an audit of the tiny model, then copies of it edited by hand.
fn results_cases(dir: &Path, llama: &str) -> Vec<Case> {
    let out = dir.join("audit-ok");
    let status = Command::new(env!("CARGO_BIN_EXE_fairlm"))
        .args([
            "audit", "--quick", "--axes", "gender", "--model", llama, "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the reference audit of the tiny model failed"
    );
    let good = out.join("results.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    let good = good.display().to_string();
    let mut cases = Vec::new();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit, &str)> = vec![
        (
            "delta edited",
            Box::new(|d| d["records"][0]["counterfactuals"][0]["delta"] = 99.0.into()),
            "delta",
        ),
        (
            "log-prob edited",
            Box::new(|d| d["records"][0]["logprob"] = 3.0.into()),
            "log-probs",
        ),
        (
            "flag edited",
            Box::new(|d| {
                let f = d["records"][0]["counterfactuals"][0]["flagged"]
                    .as_bool()
                    .unwrap();
                d["records"][0]["counterfactuals"][0]["flagged"] = (!f).into();
            }),
            "flagged",
        ),
        (
            "no records",
            Box::new(|d| d["records"] = serde_json::json!([])),
            "no probe records",
        ),
        (
            "no counterfactual",
            Box::new(|d| d["records"][0]["counterfactuals"] = serde_json::json!([])),
            "no counterfactual",
        ),
        (
            "schema_version 99",
            Box::new(|d| d["schema_version"] = 99.into()),
            "schema_version 99",
        ),
        (
            "schema_version 0",
            Box::new(|d| d["schema_version"] = 0.into()),
            "schema_version 0",
        ),
        (
            "bias score edited",
            Box::new(|d| d["probe"]["bias_score"]["value"] = 0.0001.into()),
            "bias_score",
        ),
        (
            "tau negative",
            Box::new(|d| d["probe"]["tau"] = (-1.0).into()),
            "tau",
        ),
        (
            "records not a list",
            Box::new(|d| d["records"] = 3.into()),
            "not an audit results.json",
        ),
        (
            "missing probe",
            Box::new(|d| {
                d.as_object_mut().unwrap().remove("probe");
            }),
            "probe",
        ),
    ];
    for (i, (name, edit, needle)) in edits.into_iter().enumerate() {
        let mut d = doc.clone();
        edit(&mut d);
        let p = dir.join(format!("results-{i}.json"));
        std::fs::write(&p, serde_json::to_string(&d).unwrap()).unwrap();
        let p = p.display().to_string();
        for (cmd, args) in [
            (
                "compare",
                vec!["compare".to_string(), good.clone(), p.clone()],
            ),
            (
                "report",
                vec![
                    "report".to_string(),
                    good.clone(),
                    p.clone(),
                    "-o".into(),
                    dir.join("r.html").display().to_string(),
                ],
            ),
        ] {
            cases.push(Case {
                name: format!("{cmd}: results {name}"),
                args,
                expect: Expect::Error(vec![format!("results-{i}.json"), needle.to_string()]),
            });
        }
    }
    let text = serde_json::to_string(&doc).unwrap();
    let truncated = dir.join("results-truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let with_nan = dir.join("results-nan.json");
    std::fs::write(
        &with_nan,
        text.replacen("\"logprob\":", "\"logprob\":NaN,\"x\":", 1),
    )
    .unwrap();
    for (name, p) in [("truncated", &truncated), ("NaN", &with_nan)] {
        cases.push(Case {
            name: format!("compare: results {name}"),
            args: vec!["compare".into(), good.clone(), p.display().to_string()],
            expect: Expect::Error(vec!["not an audit results.json".into()]),
        });
    }
    // Gates: report exits 1 as compare does; gates need a pair.
    let html = dir.join("gate.html").display().to_string();
    cases.push(Case {
        name: "report: a failed gate exits 1".into(),
        args: strings(&["report", &good, &good, "-o", &html, "--max-bias", "0"]),
        expect: Expect::GateFailed(strings(&["gate max-bias failed"])),
    });
    cases.push(Case {
        name: "compare: a failed gate exits 1".into(),
        args: strings(&["compare", &good, &good, "--max-bias", "0"]),
        expect: Expect::GateFailed(strings(&["gate max-bias failed"])),
    });
    cases.push(Case {
        name: "report: gates without AFTER".into(),
        args: strings(&["report", &good, "-o", &html, "--max-bias", "0.1"]),
        expect: Expect::Error(strings(&["AFTER"])),
    });
    cases.push(Case {
        name: "compare --out into a directory".into(),
        args: strings(&["compare", &good, &good, "--out", dir.to_str().unwrap()]),
        expect: Expect::Error(strings(&[dir.to_str().unwrap()])),
    });
    cases
}

#[test]
fn the_bad_input_corpus_gets_clean_errors_and_no_silent_results() {
    let corpus = build();
    let mut failures = Vec::new();
    let (mut clean, mut expected, mut panics, mut silent) = (0, 0, 0, 0);
    let mut listing = String::new();
    for case in &corpus.cases {
        let (outcome, last) = run(case);
        let scratch = corpus.dir.display().to_string();
        listing += &format!(
            "{}\t{outcome:?}\t{}\n",
            case.name,
            last.replace(&scratch, "$DIR")
        );
        match outcome {
            Outcome::CleanError => clean += 1,
            Outcome::Expected => expected += 1,
            Outcome::Panic => {
                panics += 1;
                failures.push(format!("{}: PANIC ({:?})", case.name, case.args));
            }
            Outcome::Silent => {
                silent += 1;
                failures.push(format!("{}: SILENT exit 0/1 ({:?})", case.name, case.args));
            }
            Outcome::Wrong(why) => failures.push(format!("{}: {why}", case.name)),
        }
    }
    let totals = format!(
        "bad-input corpus: {} cases / {clean} clean errors / {expected} expected non-error outcomes / {panics} panics / {silent} silent results / {} other mismatches\n",
        corpus.cases.len(),
        failures.len() - panics - silent
    );
    print!("{totals}");
    let _ = std::fs::write(root().join("target/bad-inputs-totals.txt"), &totals);
    let _ = std::fs::write(root().join("target/bad-inputs-cases.tsv"), &listing);
    let _ = std::fs::remove_dir_all(&corpus.dir);
    assert!(corpus.cases.len() >= 150, "{totals}");
    assert!(failures.is_empty(), "{totals}{}", failures.join("\n"));
}

/// Commands whose reader closes stdout early (`| head`) end quietly: exit 0, no panic.
#[test]
fn a_closed_stdout_ends_each_command_quietly() {
    let llama = fixture("tiny-llama");
    let pairs = fixture("pairs-sample.jsonl");
    let commands: Vec<Vec<&str>> = vec![
        vec!["tokenize", "a", "b", "c", "--model", &llama],
        vec!["score", "a b", "c d", "--model", &llama],
        vec!["generate", "a", "-n", "4", "--model", &llama],
        vec!["perplexity", "--model", &llama],
        vec!["bench", "pairs", "--file", &pairs, "--model", &llama],
        vec!["models"],
        vec!["--help"],
        vec!["audit", "--help"],
    ];
    for args in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fairlm"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// `convert` and `mitigate` write every file of a model directory with one mode (the umask's),
/// not the private 0600 the safetensors writer chose.
#[test]
fn model_directories_have_one_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    let out = std::env::temp_dir().join(format!("fairlm-modes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_fairlm"))
        .args(["convert", "--model", &fixture("tiny-llama"), "--out"])
        .arg(&out)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let modes: Vec<u32> = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|f| std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777)
        .collect();
    assert!(modes.iter().all(|m| *m == modes[0]), "modes {modes:?}");
    let _ = std::fs::remove_dir_all(&out);
}
