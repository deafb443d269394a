//! `fairlm audit` and `fairlm merge`: arguments into a config, and printing; the run is
//! `fairlm_pipeline::audit`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{ArgMatches, Args};
use fairlm_bias::audit::AuditResults;
use fairlm_bias::shard::Shard;
use fairlm_pipeline::audit::{Output, SHARD_FILE};
use fairlm_pipeline::{self as pipeline, AuditConfig};

use crate::engine::ModelArgs;
use crate::terminal::{finish, terminal};

#[derive(Args, Clone)]
pub struct AuditArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub served: crate::engine::ServedArgs,
    /// Directory for results.json and summary.md.
    #[arg(value_parser = crate::args::path, long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = AuditConfig::default().seed)]
    pub seed: u64,
    /// Continuations per (template, group) [default: 3; --quick: 2].
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long)]
    pub samples: Option<usize>,
    /// Δ threshold in nats (default ln 2).
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = AuditConfig::default().tau)]
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
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = AuditConfig::default().bootstrap)]
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
    /// A config file (TOML, as `fairlm config --print audit` writes it, or an earlier audit's
    /// results.json) to run; the flags given here override its settings.
    #[arg(value_parser = crate::args::path, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Continue an audit that stopped: the templates already probed are read from
    /// OUT/probe-checkpoint.json (written as each finishes) and a served model's answers from
    /// its request cache; the options must be those it was started with.
    #[arg(long)]
    pub resume: bool,
}

fn shard(text: &str) -> std::result::Result<Shard, String> {
    Shard::parse(text).map_err(|e| e.to_string())
}

impl AuditArgs {
    /// The run's config: `--config FILE`'s, with the flags `given` on the command line over
    /// it; without a file, the flags' (and their defaults).
    pub fn config(&self, given: &ArgMatches) -> Result<AuditConfig> {
        let flags = self.flags_config();
        let Some(path) = &self.config else {
            return Ok(flags);
        };
        let mut cfg = AuditConfig::read(path)?;
        flags_over_file!(given, cfg, flags;
            model, dtype, allow_download, seed, samples, tau, axes, quick, lexicon, templates,
            bootstrap, text, crows, stereoset
        );
        flags_over_file!(given, cfg.served, flags.served;
            "served_name" => name,
            "tokenizer" => tokenizer,
            "concurrency" => concurrency,
            "timeout" => timeout_s,
            "max_retries" => max_retries,
            "cache" => cache,
        );
        Ok(cfg)
    }

    /// The config the flags (and their defaults) give.
    fn flags_config(&self) -> AuditConfig {
        AuditConfig {
            model: self.model.model.clone(),
            dtype: self.model.dtype,
            allow_download: self.model.allow_download,
            served: self.served.spec(),
            seed: self.seed,
            samples: self.samples,
            tau: self.tau,
            axes: self.axes.clone(),
            quick: self.quick,
            lexicon: self.lexicon.clone(),
            templates: self.templates.clone(),
            bootstrap: self.bootstrap,
            text: self.text.clone(),
            crows: self.crows.clone(),
            stereoset: self.stereoset.clone(),
        }
    }
}

pub fn run(a: AuditArgs, given: &ArgMatches) -> Result<()> {
    match a.shard {
        Some(shard) if !shard.is_whole() => write_shard(&a, given, shard),
        _ => audit(&a, given).map(|_| ()),
    }
}

/// Runs the audit `a` (with the flags `given`) describes, prints its summary and writes its
/// files; returns the results.
pub fn audit(a: &AuditArgs, given: &ArgMatches) -> Result<AuditResults> {
    let out = Output {
        dir: a.out.clone(),
        resume: a.resume,
    };
    let results = pipeline::audit(&a.config(given)?, &out, Arc::new(terminal()))?;
    finish(&results, a.out.as_deref())?;
    Ok(results)
}

/// One shard of the audit: its part written to OUT/shard.json for `fairlm merge`.
fn write_shard(a: &AuditArgs, given: &ArgMatches, shard: Shard) -> Result<()> {
    let Some(out) = &a.out else {
        anyhow::bail!("--shard {shard} needs --out DIR (the shard's part is merged from there)");
    };
    let part = pipeline::audit::audit_shard(
        &a.config(given)?,
        shard,
        out,
        a.resume,
        Arc::new(terminal()),
    )?;
    for b in &part.benchmarks {
        for line in pipeline::bench::skipped_lines(&b.file, &b.skipped) {
            eprintln!("fairlm: {line}");
        }
    }
    eprintln!(
        "fairlm: shard {shard}: {} probe samples; wrote {} (finish with `fairlm merge DIR... --out DIR`)",
        part.records.len(),
        out.join(SHARD_FILE).display()
    );
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
    let results = pipeline::audit::merge(&a.shards, &a.out)?;
    finish(&results, Some(&a.out))
}
