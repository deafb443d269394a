//! `fairlm audit`: argument handling and printing; the work is `fairlm_bias::audit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use fairlm_bias::audit::{self, AuditConfig};
use fairlm_bias::pairs;
use fairlm_bias::probe::ProbeConfig;
use fairlm_bias::shard::Shard;
use fairlm_bias::templates;

use crate::engine::ModelArgs;

#[derive(Args, Clone)]
pub struct AuditArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub served: crate::engine::ServedArgs,
    /// Directory for results.json and summary.md.
    #[arg(value_parser = crate::args::path, long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continuations per (template, group) [default: 3; --quick: 2].
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long)]
    pub samples: Option<usize>,
    /// Δ threshold in nats (default ln 2).
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = std::f64::consts::LN_2)]
    pub tau: f64,
    /// Comma-separated axes (default: all).
    #[arg(long, value_delimiter = ',')]
    pub axes: Vec<String>,
    /// Small profile: 4 eval templates, 2 samples.
    #[arg(long)]
    pub quick: bool,
    /// Extra lexicon (TOML) whose axes add to or replace the built-in ones.
    #[arg(value_parser = crate::args::path, long)]
    pub lexicon: Option<PathBuf>,
    /// Templates (TOML) instead of the built-in ones.
    #[arg(value_parser = crate::args::path, long)]
    pub templates: Option<PathBuf>,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Also report the perplexity of this text file.
    #[arg(value_parser = crate::args::path, long)]
    pub text: Option<PathBuf>,
    /// Also run CrowS-Pairs on this CSV (your copy; malformed rows skipped and counted).
    #[arg(value_parser = crate::args::path, long)]
    pub crows: Option<PathBuf>,
    /// Also run StereoSet (intrasentence) on this JSON (your copy).
    #[arg(value_parser = crate::args::path, long)]
    pub stereoset: Option<PathBuf>,
    /// Run the K-th of N disjoint parts (e.g. a job array's task) and write OUT/shard.json;
    /// `fairlm merge` makes the audit's results.json from all N, as one run would write it.
    #[arg(value_parser = shard, long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Continue an audit that stopped: the templates already probed are read from
    /// OUT/probe-checkpoint.json (written as each finishes) and a served model's answers from
    /// its request cache; the options must be those it was started with.
    #[arg(long)]
    pub resume: bool,
}

/// Where an audit with --out keeps the templates it has probed until it finishes.
const CHECKPOINT_FILE: &str = "probe-checkpoint.json";

fn shard(text: &str) -> std::result::Result<Shard, String> {
    Shard::parse(text).map_err(|e| e.to_string())
}

pub fn run(a: AuditArgs) -> Result<()> {
    match a.shard {
        Some(shard) if !shard.is_whole() => write_shard(&a, shard),
        _ => audit(&a).map(|_| ()),
    }
}

/// Runs the audit `a` describes, prints its summary and writes its files; returns the results.
pub fn audit(a: &AuditArgs) -> Result<audit::AuditResults> {
    let part = part(a, Shard::WHOLE)?;
    let timings = BTreeMap::from([(Shard::WHOLE.to_string(), part.timings_s.clone())]);
    let results = audit::assemble(vec![part], &[])?;
    finish(&results, a.out.as_deref(), &timings)?;
    if let Some(out) = &a.out {
        remove_checkpoint(out)?;
    }
    Ok(results)
}

/// The probe's checkpoint is removed once the audit's own files hold its records.
fn remove_checkpoint(out: &Path) -> Result<()> {
    let path = out.join(CHECKPOINT_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// One shard of the audit: its part written to OUT/shard.json for `fairlm merge`.
fn write_shard(a: &AuditArgs, shard: Shard) -> Result<()> {
    let Some(out) = &a.out else {
        anyhow::bail!("--shard {shard} needs --out DIR (the shard's part is merged from there)");
    };
    let part = part(a, shard)?;
    let path = out.join(SHARD_FILE);
    audit::write_atomic(&path, serde_json::to_string_pretty(&part)?.as_bytes())?;
    remove_checkpoint(out)?;
    eprintln!(
        "fairlm: shard {shard}: {} probe samples; wrote {} (finish with `fairlm merge DIR... --out DIR`)",
        part.records.len(),
        path.display()
    );
    Ok(())
}

/// The file a shard writes into its --out directory.
pub const SHARD_FILE: &str = "shard.json";

/// The part of the audit `a` describes that `shard` owns, pair benchmarks included.
fn part(a: &AuditArgs, shard: Shard) -> Result<audit::AuditPart> {
    let lexicon = crate::mitigate::lexicon(&a.lexicon, &a.axes)?;
    let templates = match &a.templates {
        Some(p) => templates::from_file(p)?,
        None => templates::default_templates()?,
    };
    if !(a.tau.is_finite() && a.tau > 0.0) {
        anyhow::bail!("--tau must be a positive number of nats, got {}", a.tau);
    }
    let cfg = AuditConfig {
        probe: ProbeConfig {
            samples: a.samples.unwrap_or(if a.quick { 2 } else { 3 }),
            tau: a.tau,
            seed: a.seed,
            ..ProbeConfig::default()
        },
        axes: lexicon.axes.iter().map(|x| x.name.clone()).collect(),
        max_templates: a.quick.then_some(4),
        bootstrap_resamples: a.bootstrap,
        profile: if a.quick { "quick" } else { "default" }.into(),
        text: a.text.clone(),
    };
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    // Benchmark files are read and checked before the model is loaded.
    let mut benches = Vec::new();
    let mut files = Vec::new();
    for (kind, file) in [("crows", &a.crows), ("stereoset", &a.stereoset)] {
        if let Some(f) = file {
            if shard.owns_benchmark(files.len()) {
                let (input, skipped) = pairs::read_benchmark(kind, f, false)?;
                benches.push((kind, f, input, skipped));
            }
            files.push(f.clone());
        }
    }
    let scoring = crate::engine::ScoringModel::open(&a.model, &a.served, a.out.as_deref())?;
    let model = scoring.scorer();
    let tokenizer = scoring.tokenizer();
    let record = scoring.record().clone();
    if a.resume && a.out.is_none() {
        anyhow::bail!("--resume needs --out DIR (the audit it continues)");
    }
    let checkpoint = a.out.as_ref().map(|o| o.join(CHECKPOINT_FILE));
    let mut part = audit::run_part(
        model.as_ref(),
        tokenizer,
        record.clone(),
        &lexicon,
        &templates,
        &cfg,
        shard,
        checkpoint.as_deref().map(|path| audit::Checkpoint {
            path,
            resume: a.resume,
        }),
    )?;
    part.benchmark_files = files;
    for (kind, file, input, mut skipped) in benches {
        let t0 = std::time::Instant::now();
        crate::bench::report_skipped(file, &skipped);
        let (input, overlong) =
            input.drop_overlong(tokenizer, model.context_length(), file, false)?;
        crate::bench::report_skipped(file, &overlong);
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

/// Prints the audit's summary and writes results.json, summary.md and timings.json (each
/// part's stage times, keyed by shard) into `out`.
fn finish(
    results: &audit::AuditResults,
    out: Option<&Path>,
    timings: &BTreeMap<String, BTreeMap<String, f64>>,
) -> Result<()> {
    let mut summary = audit::summary_markdown(results);
    for b in &results.benchmarks {
        summary += &format!(
            "\n{} ({}):\n\n{}",
            b.benchmark,
            b.file.display(),
            pairs::markdown(b)
        );
    }
    outln!("{summary}")?;
    if let Some(out) = out {
        audit::write_atomic(
            &out.join("results.json"),
            serde_json::to_string_pretty(results)?.as_bytes(),
        )?;
        audit::write_atomic(&out.join("summary.md"), summary.as_bytes())?;
        audit::write_atomic(
            &out.join("timings.json"),
            serde_json::to_string_pretty(timings)?.as_bytes(),
        )?;
        eprintln!(
            "fairlm: wrote {}/results.json, summary.md and timings.json",
            out.display()
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct MergeArgs {
    /// The --out directories of every shard of one audit (each holds a shard.json).
    #[arg(value_parser = crate::args::path, required = true)]
    pub shards: Vec<PathBuf>,
    /// Directory for the audit's results.json, summary.md and timings.json.
    #[arg(value_parser = crate::args::path, long)]
    pub out: PathBuf,
}

/// `fairlm merge`: the audit's results from its shards, the files an unsharded run writes.
pub fn merge(a: MergeArgs) -> Result<()> {
    let mut parts = Vec::new();
    let mut names = Vec::new();
    for dir in &a.shards {
        let path = dir.join(SHARD_FILE);
        parts.push(audit::read_part(&path)?);
        names.push(path.display().to_string());
    }
    let timings = parts
        .iter()
        .map(|p| (p.shard.to_string(), p.timings_s.clone()))
        .collect();
    let results = audit::assemble(parts, &names)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    finish(&results, Some(&a.out), &timings)
}
