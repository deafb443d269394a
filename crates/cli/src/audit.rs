//! `fairlm audit`: argument handling and printing; the work is `fairlm_bias::audit`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fairlm_bias::audit::{self, AuditConfig};
use fairlm_bias::pairs;
use fairlm_bias::probe::ProbeConfig;
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
}

pub fn run(a: AuditArgs) -> Result<()> {
    audit(&a).map(|_| ())
}

/// Runs the audit `a` describes, prints its summary and writes its files; returns the results.
pub fn audit(a: &AuditArgs) -> Result<audit::AuditResults> {
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
    for (kind, file) in [("crows", &a.crows), ("stereoset", &a.stereoset)] {
        if let Some(f) = file {
            let (input, skipped) = pairs::read_benchmark(kind, f, false)?;
            benches.push((kind, f, input, skipped));
        }
    }
    let scoring = crate::engine::ScoringModel::open(&a.model, &a.served, a.out.as_deref())?;
    let model = scoring.scorer();
    let tokenizer = scoring.tokenizer();
    let record = scoring.record().clone();
    let mut results = audit::run(
        model.as_ref(),
        tokenizer,
        record.clone(),
        &lexicon,
        &templates,
        &cfg,
    )?;
    for (kind, file, input, mut skipped) in benches {
        crate::bench::report_skipped(file, &skipped);
        let (input, overlong) =
            input.drop_overlong(tokenizer, model.context_length(), file, false)?;
        crate::bench::report_skipped(file, &overlong);
        skipped.extend(overlong);
        results.benchmarks.push(pairs::run_benchmark(
            kind,
            file,
            &input,
            skipped,
            model.as_ref(),
            tokenizer,
            record.clone(),
            32,
        )?);
    }
    let mut summary = audit::summary_markdown(&results);
    for b in &results.benchmarks {
        summary += &format!(
            "\n{} ({}):\n\n{}",
            b.benchmark,
            b.file.display(),
            pairs::markdown(b)
        );
    }
    outln!("{summary}")?;
    if let Some(out) = &a.out {
        audit::write_atomic(
            &out.join("results.json"),
            serde_json::to_string_pretty(&results)?.as_bytes(),
        )?;
        audit::write_atomic(&out.join("summary.md"), summary.as_bytes())?;
        eprintln!(
            "fairlm: wrote {}/results.json and summary.md",
            out.display()
        );
    }
    Ok(results)
}
