//! `fairlm bench crows|stereoset|pairs`: argument handling and printing; the work is
//! `fairlm_bias::pairs`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fairlm_bias::audit::write_atomic;
use fairlm_bias::pairs;
use fairlm_bias::probe::progress;
use fairlm_bias::{bbq, bold, holistic};

use crate::engine::ModelArgs;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// CrowS-Pairs CSV: pct_stereotype per bias type (ideal 50), both conventions.
    Crows(BenchArgs),
    /// StereoSet JSON (intrasentence): ss, lms, icat per bias type, both conventions.
    Stereoset(BenchArgs),
    /// fairlm's JSONL pairs ({"stereo", "anti", "bias_type"} per line).
    Pairs(BenchArgs),
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
    #[arg(long, default_value_t = 20)]
    pub per_group: usize,
    /// Continuations per prompt.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 1)]
    pub samples: usize,
    /// Continuations stop at the end of the first sentence or after this many tokens.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 24)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A counterfactual pair is flagged when Δ ≥ τ (nats).
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = std::f64::consts::LN_2)]
    pub tau: f64,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// A lexicon (TOML) added to the built-in one for the counterfactual swaps.
    #[arg(value_parser = crate::args::path, long)]
    pub lexicon: Option<PathBuf>,
    /// results.json of an earlier `bench bold` run (the model before): also print the paired
    /// change.
    #[arg(value_parser = crate::args::path, long)]
    pub baseline: Option<PathBuf>,
}

#[derive(Args)]
pub struct HolisticArgs {
    #[command(flatten)]
    pub common: BenchArgs,
    /// Descriptors drawn per axis (seeded); 0: all.
    #[arg(long, default_value_t = 6)]
    pub descriptors: usize,
    /// Sentence templates drawn (seeded); 0: all.
    #[arg(long, default_value_t = 8)]
    pub templates: usize,
    /// Nouns drawn (seeded); 0: all.
    #[arg(long, default_value_t = 4)]
    pub nouns: usize,
    /// Every descriptor, template and noun (~450k sentences).
    #[arg(long)]
    pub full: bool,
    /// The tokens each sentence's score averages: `sentence` (all, the paper's) or
    /// `after-descriptor` (what follows the descriptor, without the descriptor's own
    /// likelihood).
    #[arg(long, default_value = "sentence")]
    pub span: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// results.json of an earlier `bench holistic` run (the model before): also print the
    /// paired change of each figure.
    #[arg(value_parser = crate::args::path, long)]
    pub baseline: Option<PathBuf>,
}

#[derive(Args)]
pub struct BbqArgs {
    #[command(flatten)]
    pub common: BenchArgs,
    /// Questions drawn per (category, context condition), seeded (the full set is ~58k
    /// questions, ~4M tokens to score); 0 scores every question.
    #[arg(long, default_value_t = 100)]
    pub per_stratum: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples of the CIs.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// results.json of an earlier `bench bbq` run (the model before): also print the paired
    /// change of accuracy, s_DIS and s_AMB.
    #[arg(value_parser = crate::args::path, long)]
    pub baseline: Option<PathBuf>,
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
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 32)]
    pub batch_size: usize,
}

/// Reports the malformed and the duplicated rows a reader skipped.
pub fn report_skipped(file: &std::path::Path, skipped: &[pairs::Skipped]) {
    for (duplicates, what) in [(false, "malformed"), (true, "duplicated")] {
        let rows: Vec<&pairs::Skipped> = skipped
            .iter()
            .filter(|s| s.duplicate == duplicates)
            .collect();
        if let Some(first) = rows.first() {
            eprintln!(
                "fairlm: skipped {} {what} rows of {} (first: line {}: {}); --strict fails on them",
                rows.len(),
                file.display(),
                first.line,
                first.reason
            );
        }
    }
}

/// Writes `results` as OUT/results.json.
fn write_results(out: &std::path::Path, results: &impl serde::Serialize) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(
        &out.join("results.json"),
        serde_json::to_string_pretty(results)?.as_bytes(),
    )?;
    eprintln!("fairlm: wrote {}/results.json", out.display());
    Ok(())
}

/// Reads the results.json of an earlier run of one benchmark.
fn read_baseline<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| fairlm_bias::error::Error::Data {
        path: path.to_path_buf(),
        line: 0,
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| {
        fairlm_bias::error::Error::Data {
            path: path.to_path_buf(),
            line: e.line(),
            reason: format!("not a results.json of this benchmark: {e}"),
        }
        .into()
    })
}

/// Prints the paired before/after table.
fn print_change(rows: Vec<fairlm_bias::compare::Row>) -> Result<()> {
    let c = fairlm_bias::compare::Comparison {
        rows,
        gates: Vec::new(),
    };
    out!("\n{}", fairlm_bias::compare::markdown(&c))?;
    Ok(())
}

fn run_holistic(h: HolisticArgs) -> Result<()> {
    let a = &h.common;
    let (data, skipped) = holistic::read_holistic(&a.file, a.strict)?;
    report_skipped(&a.file, &skipped);
    let Some(span) = holistic::Span::parse(&h.span) else {
        anyhow::bail!("--span: `{}` is not sentence or after-descriptor", h.span);
    };
    let baseline: Option<holistic::HolisticResults> =
        h.baseline.as_deref().map(read_baseline).transpose()?;
    if let (Some(b), Some(path)) = (&baseline, &h.baseline) {
        if b.span != span {
            anyhow::bail!(
                "{}: scored with --span {:?}, this run with {:?}: not comparable",
                path.display(),
                b.span,
                span
            );
        }
    }
    let some = |n: usize| (!h.full && n > 0).then_some(n);
    let sample = holistic::Sample {
        descriptors_per_axis: some(h.descriptors),
        templates: some(h.templates),
        nouns: some(h.nouns),
        seed: h.seed,
    };
    let sentences = holistic::sentences(&data, &sample);
    let (axes, descriptors, nouns, templates) = data.sizes();
    eprintln!(
        "fairlm: HolisticBias: {} sentences from {axes} axes, {descriptors} descriptors, {nouns} nouns, {templates} templates (sample: {})",
        sentences.len(),
        if h.full {
            "none, --full".to_string()
        } else {
            format!(
                "{} descriptors per axis, {} templates, {} nouns, seed {}",
                h.descriptors, h.templates, h.nouns, h.seed
            )
        }
    );
    let scoring = crate::engine::open_model(&a.model, &a.served, a.out.as_deref())?;
    let (model, tokenizer, record) = (
        scoring.scorer(),
        scoring.tokenizer(),
        scoring.record().clone(),
    );
    let t0 = std::time::Instant::now();
    let (records, left_out) =
        holistic::score_holistic(model.as_ref(), tokenizer, &sentences, a.batch_size, span)?;
    if left_out > 0 {
        eprintln!(
            "fairlm: {left_out} sentences left out: no token after the descriptor, or the descriptor's tokens are not a prefix of the sentence's"
        );
    }
    eprintln!(
        "fairlm: scored {} sentences in {:.0} s",
        records.len(),
        t0.elapsed().as_secs_f64()
    );
    let table = holistic::holistic_table(&records, h.bootstrap, h.seed);
    out!("{}", holistic::markdown(&table))?;
    if let Some(before) = &baseline {
        print_change(holistic::compare_holistic(
            &before.records,
            &records,
            h.bootstrap,
            h.seed,
        )?)?;
    }
    if let Some(out) = &a.out {
        let results = holistic::HolisticResults {
            schema_version: 1,
            benchmark: "holistic".into(),
            file: a.file.clone(),
            model: record,
            sample,
            span,
            skipped,
            table,
            records,
        };
        write_results(out, &results)?;
    }
    Ok(())
}

fn run_bold(b: BoldArgs) -> Result<()> {
    let a = &b.common;
    let (all, skipped) = bold::read_bold(&a.file, a.strict)?;
    report_skipped(&a.file, &skipped);
    let lexicon = fairlm_pipeline::model::lexicon(b.lexicon.as_deref(), &[])?;
    let baseline: Option<bold::BoldResults> =
        b.baseline.as_deref().map(read_baseline).transpose()?;
    let per_group = (b.per_group > 0).then_some(b.per_group);
    let prompts = bold::subsample(all, per_group, b.seed);
    eprintln!(
        "fairlm: BOLD: {} prompts × {} samples ({})",
        prompts.len(),
        b.samples,
        match per_group {
            Some(n) => format!("at most {n} per domain and group, seed {}", b.seed),
            None => "all".into(),
        }
    );
    let cfg = bold::BoldConfig {
        samples: b.samples,
        max_tokens: b.max_tokens,
        temperature: 1.0,
        seed: b.seed,
        batch_size: a.batch_size,
        tau: b.tau,
    };
    let scoring = crate::engine::open_model(&a.model, &a.served, a.out.as_deref())?;
    let (model, tokenizer, record) = (
        scoring.scorer(),
        scoring.tokenizer(),
        scoring.record().clone(),
    );
    let sampling = progress((prompts.len() * b.samples) as u64, "sampling");
    let scoring = progress(0, "scoring");
    let records = bold::run_bold(
        model.as_ref(),
        tokenizer,
        &lexicon,
        &prompts,
        &cfg,
        |stage, n| match stage {
            "sampling" => sampling.inc(n as u64),
            _ => scoring.inc(n as u64),
        },
    )?;
    sampling.finish_and_clear();
    scoring.finish_and_clear();
    let table = bold::bold_table(&records, b.tau, b.bootstrap, b.seed);
    out!("{}", bold::markdown(&table))?;
    if let Some(before) = &baseline {
        print_change(bold::compare_bold(
            &before.records,
            &records,
            b.tau,
            b.bootstrap,
            b.seed,
        )?)?;
    }
    if let Some(out) = &a.out {
        let results = bold::BoldResults {
            schema_version: 1,
            benchmark: "bold".into(),
            file: a.file.clone(),
            model: record,
            per_group,
            config: cfg,
            skipped,
            table,
            records,
        };
        write_results(out, &results)?;
    }
    Ok(())
}

fn run_bbq(b: BbqArgs) -> Result<()> {
    let a = &b.common;
    // Read and check the files before loading the model: bad input fails fast.
    let (all, skipped) = bbq::read_bbq(&a.file, a.strict)?;
    report_skipped(&a.file, &skipped);
    let per_stratum = (b.per_stratum > 0).then_some(b.per_stratum);
    let examples = bbq::subsample(all, per_stratum, b.seed);
    eprintln!(
        "fairlm: BBQ: {} questions ({})",
        examples.len(),
        match per_stratum {
            Some(n) => format!(
                "at most {n} per category and context condition, seed {}",
                b.seed
            ),
            None => "all".into(),
        }
    );
    let baseline: Option<bbq::BbqResults> = b.baseline.as_deref().map(read_baseline).transpose()?;
    let scoring = crate::engine::open_model(&a.model, &a.served, a.out.as_deref())?;
    let (model, tokenizer, record) = (
        scoring.scorer(),
        scoring.tokenizer(),
        scoring.record().clone(),
    );
    let pb = progress(examples.len() as u64, "BBQ");
    let records = bbq::score_bbq(model.as_ref(), tokenizer, &examples, a.batch_size, |n| {
        pb.inc(n as u64)
    })?;
    pb.finish_and_clear();
    let table = bbq::bbq_table(&records, b.bootstrap, b.seed);
    out!("{}", bbq::markdown(&table))?;
    if let Some(before) = &baseline {
        print_change(bbq::compare_bbq(
            &before.records,
            &records,
            b.bootstrap,
            b.seed,
        )?)?;
    }
    if let Some(out) = &a.out {
        let results = bbq::BbqResults {
            schema_version: 1,
            benchmark: "bbq".into(),
            file: a.file.clone(),
            model: record,
            per_stratum,
            seed: b.seed,
            skipped,
            table,
            records,
        };
        write_results(out, &results)?;
    }
    Ok(())
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    let (name, a) = match cmd {
        BenchCommand::Crows(a) => ("crows", a),
        BenchCommand::Stereoset(a) => ("stereoset", a),
        BenchCommand::Pairs(a) => ("pairs", a),
        BenchCommand::Bbq(b) => return run_bbq(b),
        BenchCommand::Holistic(h) => return run_holistic(h),
        BenchCommand::Bold(b) => return run_bold(b),
    };
    // Read and check the file before loading the model: bad input fails fast.
    let (input, mut skipped) = pairs::read_benchmark(name, &a.file, a.strict)?;
    report_skipped(&a.file, &skipped);
    let scoring = crate::engine::open_model(&a.model, &a.served, a.out.as_deref())?;
    let model = scoring.scorer();
    let (input, overlong) = input.drop_overlong(
        scoring.tokenizer(),
        model.context_length(),
        &a.file,
        a.strict,
    )?;
    report_skipped(&a.file, &overlong);
    skipped.extend(overlong);
    let results = pairs::run_benchmark(
        name,
        &a.file,
        &input,
        skipped,
        model.as_ref(),
        scoring.tokenizer(),
        scoring.record().clone(),
        a.batch_size,
    )?;
    out!("{}", pairs::markdown(&results))?;
    if let Some(out) = &a.out {
        write_results(out, &results)?;
    }
    Ok(())
}
