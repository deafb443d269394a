//! The audit as a run: its config, the model it names opened, the probe (resumable from its
//! checkpoint, or one shard of it), perplexities and pair benchmarks, and the files it
//! writes — results.json, summary.md and timings.json, or a shard's shard.json and the
//! merge of all shards into the files one run writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fairlm_bias::audit::{self as measures, AuditPart, AuditResults};
use fairlm_bias::pairs;
use fairlm_bias::probe::ProbeConfig;
use fairlm_bias::shard::Shard;
use fairlm_bias::templates;
use fairlm_model::NumericPath;

use crate::error::{Error, Result};
use crate::model::{lexicon, ModelSpec, ScoringModel, ServedSpec};
use crate::Observer;

/// Everything that decides an audit's numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `smollm2`, a GGUF file, a Hugging Face directory or hub id, or
    /// `http(s)://HOST:PORT/v1`.
    pub model: String,
    /// `f32` (matches transformers) or `quantized` (GGUF blocks as stored; matches llama.cpp).
    pub dtype: NumericPath,
    /// Fetch a hub id that the Hugging Face cache lacks (network).
    pub allow_download: bool,
    /// How to reach a served model.
    pub served: ServedSpec,
    /// Seed of every sample and resample.
    pub seed: u64,
    /// Continuations per (template, group) [default: 3; quick: 2].
    pub samples: Option<usize>,
    /// Δ threshold in nats.
    pub tau: f64,
    /// Axes audited (empty: all of the lexicon's).
    pub axes: Vec<String>,
    /// The small profile: 4 eval templates, 2 samples.
    pub quick: bool,
    /// A lexicon (TOML) whose axes add to or replace the built-in ones.
    pub lexicon: Option<PathBuf>,
    /// Templates (TOML) instead of the built-in ones.
    pub templates: Option<PathBuf>,
    /// Bootstrap resamples of every interval.
    pub bootstrap: usize,
    /// A text file whose perplexity is reported beside the held-out text's.
    pub text: Option<PathBuf>,
    /// CrowS-Pairs CSV (the user's copy), scored too.
    pub crows: Option<PathBuf>,
    /// StereoSet intrasentence JSON (the user's copy), scored too.
    pub stereoset: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        let model = ModelSpec::default();
        AuditConfig {
            model: model.model,
            dtype: model.dtype,
            allow_download: model.allow_download,
            served: ServedSpec::default(),
            seed: 0,
            samples: None,
            tau: std::f64::consts::LN_2,
            axes: Vec::new(),
            quick: false,
            lexicon: None,
            templates: None,
            bootstrap: 1000,
            text: None,
            crows: None,
            stereoset: None,
        }
    }
}

/// The comment `fairlm config --print audit` writes above each key of [`AuditConfig`] (a test
/// in `config` checks that every key has one).
const AUDIT_KEYS: &[(&str, &str)] = &[
    ("model", "`smollm2` (the default model), a GGUF file, a Hugging Face directory, a hub id (owner/name[@revision], from the local Hugging Face cache), or http(s)://HOST:PORT/v1"),
    ("dtype", "`f32` (weights dequantized; matches transformers) or `quantized` (GGUF blocks as stored; matches llama.cpp)"),
    ("allow_download", "fetch a hub id that the Hugging Face cache lacks (network)"),
    ("seed", "seed of every sample and resample"),
    ("samples", "continuations per (template, group); unset: 3, or 2 with quick"),
    ("tau", "Δ threshold in nats (ln 2)"),
    ("axes", "axes audited; empty: all of the lexicon's"),
    ("quick", "small profile: 4 eval templates, 2 samples"),
    ("lexicon", "a lexicon (TOML) whose axes add to or replace the built-in ones"),
    ("templates", "templates (TOML) instead of the built-in ones"),
    ("bootstrap", "bootstrap resamples of every interval"),
    ("text", "a text file whose perplexity is reported beside the held-out text's"),
    ("crows", "CrowS-Pairs CSV (your copy), scored too"),
    ("stereoset", "StereoSet intrasentence JSON (your copy), scored too"),
    ("served", "how to reach a served model (model = http(s)://...); ignored otherwise"),
    ("served.name", "the model's name, where the server hosts several"),
    ("served.tokenizer", "the model's tokenizer (GGUF, tokenizer.json or model directory), which encodes the prompts"),
    ("served.concurrency", "requests in flight at once"),
    ("served.timeout_s", "seconds to wait for one answer"),
    ("served.max_retries", "retries of one request after a connection error, 429 or 5xx"),
    ("served.cache", "a directory that keeps every answer by request; unset: OUT/requests"),
];

impl AuditConfig {
    /// A config file: TOML (unknown keys refused, named with their line; keys left out keep
    /// their defaults) or an audit's results.json (the config it embeds).
    pub fn read(path: &Path) -> Result<AuditConfig> {
        crate::config::read(path)
    }

    /// The default config as commented TOML: every key, with what it means.
    pub fn commented_default() -> Result<String> {
        crate::config::commented(&AuditConfig::default(), &Self::docs())
    }

    /// The comment above each key (`table.key` inside a table).
    pub(crate) fn docs() -> Vec<(&'static str, &'static str)> {
        AUDIT_KEYS.to_vec()
    }

    /// The model the config names.
    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            model: self.model.clone(),
            dtype: self.dtype,
            allow_download: self.allow_download,
        }
    }
}

/// Where an audit writes, and whether it continues an interrupted one there.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// results.json, summary.md, timings.json (or shard.json) and the probe's checkpoint.
    pub dir: Option<PathBuf>,
    /// Continue from the checkpoint in `dir` (the config must be the one it was started with).
    pub resume: bool,
}

/// Where an audit with an output directory keeps the templates it has probed until it
/// finishes.
pub const CHECKPOINT_FILE: &str = "probe-checkpoint.json";

/// The file a shard writes into its output directory.
pub const SHARD_FILE: &str = "shard.json";

/// Runs the audit `cfg` describes and writes its files into `out.dir`; returns the results.
pub fn audit(cfg: &AuditConfig, out: &Output, observer: Arc<dyn Observer>) -> Result<AuditResults> {
    let part = part(cfg, out, Shard::WHOLE, observer)?;
    let timings = BTreeMap::from([(Shard::WHOLE.to_string(), part.timings_s.clone())]);
    let results = measures::assemble(vec![part], &[])?;
    if let Some(dir) = &out.dir {
        write_results(&results, dir, &timings)?;
        remove_checkpoint(dir)?;
    }
    Ok(results)
}

/// The `shard` of the audit `cfg` describes, written to `dir`/shard.json for [`merge`].
pub fn audit_shard(
    cfg: &AuditConfig,
    shard: Shard,
    dir: &Path,
    resume: bool,
    observer: Arc<dyn Observer>,
) -> Result<AuditPart> {
    let out = Output {
        dir: Some(dir.to_path_buf()),
        resume,
    };
    let part = part(cfg, &out, shard, observer)?;
    write_json(&dir.join(SHARD_FILE), &part)?;
    remove_checkpoint(dir)?;
    Ok(part)
}

/// The audit's results from the shard.json of each of `shards` (directories), written into
/// `out` as one unsharded run writes them.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<AuditResults> {
    let mut parts = Vec::new();
    let mut names = Vec::new();
    for dir in shards {
        let path = dir.join(SHARD_FILE);
        parts.push(measures::read_part(&path)?);
        names.push(path.display().to_string());
    }
    let timings = parts
        .iter()
        .map(|p| (p.shard.to_string(), p.timings_s.clone()))
        .collect();
    let results = measures::assemble(parts, &names)?;
    write_results(&results, out, &timings)?;
    Ok(results)
}

/// The audit's summary in Markdown (what summary.md holds), pair benchmarks included.
pub fn summary(results: &AuditResults) -> String {
    let mut summary = measures::summary_markdown(results);
    for b in &results.benchmarks {
        summary += &format!(
            "\n{} ({}):\n\n{}",
            b.benchmark,
            b.file.display(),
            pairs::markdown(b)
        );
    }
    summary
}

/// Writes results.json, summary.md and timings.json (each part's stage times, keyed by
/// shard) into `dir`.
fn write_results(
    results: &AuditResults,
    dir: &Path,
    timings: &BTreeMap<String, BTreeMap<String, f64>>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    write_json(&dir.join("results.json"), results)?;
    measures::write_atomic(&dir.join("summary.md"), summary(results).as_bytes())?;
    write_json(&dir.join("timings.json"), timings)
}

/// `value` as pretty JSON in `path`, written atomically.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| Error::file(path, e))?;
    Ok(measures::write_atomic(path, json.as_bytes())?)
}

/// The probe's checkpoint is removed once the audit's own files hold its records.
fn remove_checkpoint(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::file(&path, format!("cannot remove: {e}")))
        }
        _ => Ok(()),
    }
}

/// The part of the audit `cfg` describes that `shard` owns, pair benchmarks included.
fn part(
    cfg: &AuditConfig,
    out: &Output,
    shard: Shard,
    observer: Arc<dyn Observer>,
) -> Result<AuditPart> {
    let lexicon = lexicon(cfg.lexicon.as_deref(), &cfg.axes)?;
    let templates = match &cfg.templates {
        Some(p) => templates::from_file(p)?,
        None => templates::default_templates()?,
    };
    if !(cfg.tau.is_finite() && cfg.tau > 0.0) {
        return Err(Error::Config(format!(
            "tau must be a positive number of nats, got {}",
            cfg.tau
        )));
    }
    if cfg.samples == Some(0) {
        return Err(Error::Config("samples must be at least 1".into()));
    }
    if out.resume && out.dir.is_none() {
        return Err(Error::Config(
            "resume needs an output directory (the audit it continues)".into(),
        ));
    }
    let measured = measures::AuditConfig {
        probe: ProbeConfig {
            samples: cfg.samples.unwrap_or(if cfg.quick { 2 } else { 3 }),
            tau: cfg.tau,
            seed: cfg.seed,
            ..ProbeConfig::default()
        },
        axes: lexicon.axes.iter().map(|x| x.name.clone()).collect(),
        max_templates: cfg.quick.then_some(4),
        bootstrap_resamples: cfg.bootstrap,
        profile: if cfg.quick { "quick" } else { "default" }.into(),
        text: cfg.text.clone(),
    };
    if let Some(dir) = &out.dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    }
    // Benchmark files are read and checked before the model is loaded.
    let mut benches = Vec::new();
    let mut files = Vec::new();
    for (kind, file) in [("crows", &cfg.crows), ("stereoset", &cfg.stereoset)] {
        if let Some(f) = file {
            if shard.owns_benchmark(files.len()) {
                let (input, skipped) = pairs::read_benchmark(kind, f, false)?;
                benches.push((kind, f, input, skipped));
            }
            files.push(f.clone());
        }
    }
    let watcher = observer.clone();
    let scoring = ScoringModel::open(&cfg.model_spec(), &cfg.served, out.dir.as_deref(), observer)?;
    let model = scoring.scorer();
    let tokenizer = scoring.tokenizer();
    let record = scoring.record().clone();
    let checkpoint = out.dir.as_ref().map(|o| o.join(CHECKPOINT_FILE));
    let mut part = measures::run_part(
        model.as_ref(),
        tokenizer,
        record.clone(),
        &lexicon,
        &templates,
        &measured,
        shard,
        checkpoint.as_deref().map(|path| measures::Checkpoint {
            path,
            resume: out.resume,
        }),
        watcher.as_ref(),
    )?;
    part.benchmark_files = files;
    part.run_config =
        Some(serde_json::to_value(cfg).map_err(|e| Error::Config(format!("config: {e}")))?);
    for (kind, file, input, mut skipped) in benches {
        let t0 = std::time::Instant::now();
        let (input, overlong) = input.drop_overlong(
            tokenizer,
            model.context_length(),
            pairs::scored_after(kind),
            file,
            false,
        )?;
        skipped.extend(overlong);
        part.benchmarks.push(pairs::run_benchmark(
            kind,
            file,
            &input,
            skipped,
            model.as_ref(),
            tokenizer,
            record.clone(),
            32,
        )?);
        part.timings_s
            .insert(kind.to_string(), t0.elapsed().as_secs_f64());
    }
    Ok(part)
}
