//! `fairlm bench crows|stereoset|pairs|winoqueer|redditbias|winobias|holistic|bold|bbq`:
//! arguments into a config, and printing; the run is `fairlm_pipeline::bench`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand};
use fairlm_pipeline::bench::{self, BenchConfig, Benchmark};

use crate::engine::ModelArgs;
use crate::terminal::terminal;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// CrowS-Pairs CSV: pct_stereotype per bias type (ideal 50), both conventions.
    Crows(PairArgs),
    /// StereoSet JSON (intrasentence): ss, lms, icat per bias type, both conventions.
    Stereoset(BenchArgs),
    /// fairlm's JSONL pairs ({"stereo", "anti", "bias_type"} per line).
    Pairs(PairArgs),
    /// WinoQueer CSV (Gender_ID_x, Gender_ID_y, sent_x, sent_y): the share of pairs whose
    /// LGBTQ+ sentence the model prefers (ideal 50), per group.
    Winoqueer(PairArgs),
    /// RedditBias's data directory (DEMOGRAPHIC/reddit_comments_*_biased_test_reduced.csv):
    /// pct_stereotype and the paired perplexity t-test per demographic.
    Redditbias(PairArgs),
    /// WinoBias's data directory ({pro,anti}_stereotyped_type{1,2}.txt.{dev,test}) read as
    /// likelihood pairs: pct_stereotype of the pro-stereotyped pronoun per type.
    Winobias(PairArgs),
    /// BBQ JSONL (a file or a directory of the per-category files): accuracy, s_DIS and s_AMB
    /// per category, multiple choice by log-likelihood.
    Bbq(BbqArgs),
    /// HolisticBias dataset folder (descriptors.json, nouns.json, sentence_templates.json,
    /// standalone_noun_phrases.json): likelihood bias and log-prob spread per axis.
    Holistic(HolisticArgs),
    /// BOLD prompt files (`*_prompt.json`, a file or the directory): per-group VADER
    /// sentiment gap of sampled continuations, and the probe's Δ where a prompt names a group
    /// of the lexicon.
    Bold(BoldArgs),
}

#[derive(Args)]
pub struct BoldArgs {
    #[command(flatten)]
    pub common: BenchArgs,
    /// Prompts drawn per (domain, group), seeded; 0: all 23,679.
    #[arg(long, default_value_t = BenchConfig::default().per_group)]
    pub per_group: usize,
    /// Continuations per prompt.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = BenchConfig::default().samples)]
    pub samples: usize,
    /// Continuations stop at the end of the first sentence or after this many tokens.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = BenchConfig::default().max_tokens)]
    pub max_tokens: usize,
    /// A counterfactual pair is flagged when Δ ≥ τ (nats).
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = BenchConfig::default().tau)]
    pub tau: f64,
    /// A lexicon (TOML) added to the built-in one for the counterfactual swaps.
    #[arg(value_parser = crate::args::path, long)]
    pub lexicon: Option<PathBuf>,
    #[command(flatten)]
    pub sampled: SampledArgs,
}

/// The options of the benchmarks that draw a seeded sample and bootstrap their figures.
#[derive(Args)]
pub struct SampledArgs {
    /// Seed of the sample drawn and of the bootstrap.
    #[arg(long, default_value_t = BenchConfig::default().seed)]
    pub seed: u64,
    /// Bootstrap resamples of the CIs.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = BenchConfig::default().bootstrap)]
    pub bootstrap: usize,
    /// results.json of an earlier run of this benchmark (the model before): also print the
    /// paired change of each figure.
    #[arg(value_parser = crate::args::path, long)]
    pub baseline: Option<PathBuf>,
}

impl SampledArgs {
    /// `cfg` with these options.
    fn over(&self, cfg: BenchConfig) -> BenchConfig {
        BenchConfig {
            seed: self.seed,
            bootstrap: self.bootstrap,
            baseline: self.baseline.clone(),
            ..cfg
        }
    }
}

/// The options of a pair benchmark.
#[derive(Args)]
pub struct PairArgs {
    #[command(flatten)]
    pub common: BenchArgs,
    /// results.json of an earlier run of this benchmark on the same file (the model before):
    /// also print the pairs that flipped toward the anti-stereotype and toward the stereotype,
    /// with the sign test, per bias type and overall.
    #[arg(value_parser = crate::args::path, long)]
    pub baseline: Option<PathBuf>,
    /// `self`: score under Self-Debias (Schick et al. 2021; bias-bench's prefixes, λ 50,
    /// ε 0.01), a model here only; `none`: plain.
    #[arg(long, default_value_t = BenchConfig::default().debias, value_parser = ["none", "self"])]
    pub debias: String,
}

impl PairArgs {
    fn config(&self) -> BenchConfig {
        BenchConfig {
            baseline: self.baseline.clone(),
            debias: self.debias.clone(),
            ..self.common.config()
        }
    }
}

#[derive(Args)]
pub struct HolisticArgs {
    #[command(flatten)]
    pub common: BenchArgs,
    /// Descriptors drawn per axis (seeded); 0: all.
    #[arg(long, default_value_t = BenchConfig::default().descriptors)]
    pub descriptors: usize,
    /// Sentence templates drawn (seeded); 0: all.
    #[arg(long, default_value_t = BenchConfig::default().templates)]
    pub templates: usize,
    /// Nouns drawn (seeded); 0: all.
    #[arg(long, default_value_t = BenchConfig::default().nouns)]
    pub nouns: usize,
    /// Every descriptor, template and noun (~450k sentences).
    #[arg(long)]
    pub full: bool,
    /// The tokens each sentence's score averages: `sentence` (all, the paper's) or
    /// `after-descriptor` (what follows the descriptor, without the descriptor's own
    /// likelihood).
    #[arg(long, default_value_t = BenchConfig::default().span)]
    pub span: String,
    #[command(flatten)]
    pub sampled: SampledArgs,
}

#[derive(Args)]
pub struct BbqArgs {
    #[command(flatten)]
    pub common: BenchArgs,
    /// Questions drawn per (category, context condition), seeded (the full set is ~58k
    /// questions, ~4M tokens to score); 0 scores every question.
    #[arg(long, default_value_t = BenchConfig::default().per_stratum)]
    pub per_stratum: usize,
    #[command(flatten)]
    pub sampled: SampledArgs,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_parser = crate::args::path, long)]
    pub file: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub served: crate::engine::ServedArgs,
    /// Fail on the first malformed row instead of skipping and counting it.
    #[arg(long)]
    pub strict: bool,
    /// Directory for results.json (tables and per-pair records).
    #[arg(value_parser = crate::args::path, long)]
    pub out: Option<PathBuf>,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = BenchConfig::default().batch_size)]
    pub batch_size: usize,
}

impl BenchArgs {
    /// The config of a run of these arguments; the benchmark's own options are set by the
    /// caller.
    fn config(&self) -> BenchConfig {
        BenchConfig {
            file: self.file.clone(),
            model: self.model.model.clone(),
            dtype: self.model.dtype,
            allow_download: self.model.allow_download,
            served: self.served.spec(),
            strict: self.strict,
            batch_size: self.batch_size,
            ..BenchConfig::default()
        }
    }
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    let (benchmark, common, cfg) = match &cmd {
        BenchCommand::Crows(a) => (Benchmark::Crows, &a.common, a.config()),
        BenchCommand::Stereoset(a) => (Benchmark::Stereoset, a, a.config()),
        BenchCommand::Pairs(a) => (Benchmark::Pairs, &a.common, a.config()),
        BenchCommand::Winoqueer(a) => (Benchmark::Winoqueer, &a.common, a.config()),
        BenchCommand::Redditbias(a) => (Benchmark::Redditbias, &a.common, a.config()),
        BenchCommand::Winobias(a) => (Benchmark::Winobias, &a.common, a.config()),
        BenchCommand::Holistic(h) => (
            Benchmark::Holistic,
            &h.common,
            BenchConfig {
                descriptors: h.descriptors,
                templates: h.templates,
                nouns: h.nouns,
                full: h.full,
                span: h.span.clone(),
                ..h.sampled.over(h.common.config())
            },
        ),
        BenchCommand::Bold(b) => (
            Benchmark::Bold,
            &b.common,
            BenchConfig {
                per_group: b.per_group,
                samples: b.samples,
                max_tokens: b.max_tokens,
                tau: b.tau,
                lexicon: b.lexicon.clone(),
                ..b.sampled.over(b.common.config())
            },
        ),
        BenchCommand::Bbq(b) => (
            Benchmark::Bbq,
            &b.common,
            BenchConfig {
                per_stratum: b.per_stratum,
                ..b.sampled.over(b.common.config())
            },
        ),
    };
    let out = common.out.as_deref();
    let run = bench::bench(benchmark, &cfg, out, Arc::new(terminal()))?;
    out!("{}", run.markdown)?;
    if let Some(change) = &run.change {
        out!("\n{change}")?;
    }
    if let Some(out) = out {
        eprintln!("fairlm: wrote {}/results.json", out.display());
    }
    Ok(())
}
