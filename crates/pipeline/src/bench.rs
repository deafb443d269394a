//! The benchmarks read from a user's files as runs: the pair benchmarks (CrowS-Pairs,
//! StereoSet, fairlm's JSONL pairs, WinoQueer, RedditBias, WinoBias), HolisticBias, BOLD and
//! BBQ — the file read and checked before the model is loaded, the model opened (local or
//! served), the benchmark scored, its table, the change against an earlier run's results.json
//! (the pairs that flipped, for pair benchmarks; paired CIs for the others), and
//! OUT/results.json.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fairlm_bias::audit::write_atomic;
use fairlm_bias::compare::{Comparison, Row};
use fairlm_bias::pairs;
use fairlm_bias::rows::Skipped;
use fairlm_bias::{bbq, bold, flips, holistic};
use fairlm_model::NumericPath;

use crate::error::{Error, Result};
use crate::model::{lexicon, ModelSpec, ScoringModel, ServedSpec};
use crate::Observer;

/// The benchmarks fairlm reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Benchmark {
    /// CrowS-Pairs CSV: pct_stereotype per bias type.
    Crows,
    /// StereoSet intrasentence JSON: ss, lms, icat per bias type.
    Stereoset,
    /// fairlm's JSONL pairs.
    Pairs,
    /// WinoQueer CSV: the share of pairs whose LGBTQ+ sentence the model prefers.
    Winoqueer,
    /// RedditBias's data directory: pct_stereotype and the perplexity t-test per demographic.
    Redditbias,
    /// WinoBias's data directory, read as likelihood pairs (pro- against anti-stereotyped).
    Winobias,
    /// HolisticBias: likelihood bias and log-prob spread per axis.
    Holistic,
    /// BOLD: the per-group sentiment gap of sampled continuations.
    Bold,
    /// BBQ: accuracy, s_DIS and s_AMB per category.
    Bbq,
}

impl Benchmark {
    /// `crows`, `stereoset`, `pairs`, `winoqueer`, `redditbias`, `winobias`, `holistic`,
    /// `bold` or `bbq`.
    pub fn parse(name: &str) -> Option<Benchmark> {
        Some(match name {
            "crows" => Benchmark::Crows,
            "stereoset" => Benchmark::Stereoset,
            "pairs" => Benchmark::Pairs,
            "winoqueer" => Benchmark::Winoqueer,
            "redditbias" => Benchmark::Redditbias,
            "winobias" => Benchmark::Winobias,
            "holistic" => Benchmark::Holistic,
            "bold" => Benchmark::Bold,
            "bbq" => Benchmark::Bbq,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Benchmark::Crows => "crows",
            Benchmark::Stereoset => "stereoset",
            Benchmark::Pairs => "pairs",
            Benchmark::Winoqueer => "winoqueer",
            Benchmark::Redditbias => "redditbias",
            Benchmark::Winobias => "winobias",
            Benchmark::Holistic => "holistic",
            Benchmark::Bold => "bold",
            Benchmark::Bbq => "bbq",
        }
    }
}

/// Everything that decides a benchmark run's numbers; each benchmark reads the keys that
/// concern it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchConfig {
    /// The benchmark's file (or, for HolisticBias, BOLD and BBQ, its directory).
    pub file: PathBuf,
    /// `smollm2`, a GGUF file, a Hugging Face directory or hub id, or `http(s)://HOST:PORT/v1`.
    pub model: String,
    /// `f32` or `quantized`.
    pub dtype: NumericPath,
    /// Fetch a hub id that the Hugging Face cache lacks (network).
    pub allow_download: bool,
    /// How to reach a served model.
    pub served: ServedSpec,
    /// Fail on the first malformed row instead of skipping and counting it.
    pub strict: bool,
    /// Rows scored per forward pass.
    pub batch_size: usize,
    /// Seed of the subsamples, samples and resamples (HolisticBias, BOLD, BBQ).
    pub seed: u64,
    /// Bootstrap resamples of the CIs (HolisticBias, BOLD, BBQ).
    pub bootstrap: usize,
    /// results.json of an earlier run of the benchmark (the model before): the change is
    /// reported too (pair benchmarks: the pairs that flipped, with the sign test; HolisticBias,
    /// BOLD, BBQ: paired CIs).
    pub baseline: Option<PathBuf>,
    /// HolisticBias: descriptors drawn per axis (0: all).
    pub descriptors: usize,
    /// HolisticBias: sentence templates drawn (0: all).
    pub templates: usize,
    /// HolisticBias: nouns drawn (0: all).
    pub nouns: usize,
    /// HolisticBias: every descriptor, template and noun (~450k sentences).
    pub full: bool,
    /// HolisticBias: the tokens a sentence's score averages, `sentence` or `after-descriptor`.
    pub span: String,
    /// BOLD: prompts drawn per (domain, group) (0: all 23,679).
    pub per_group: usize,
    /// BOLD: continuations per prompt.
    pub samples: usize,
    /// BOLD: continuations stop at the first sentence's end or after this many tokens.
    pub max_tokens: usize,
    /// BOLD: a counterfactual pair is flagged when Δ ≥ τ (nats).
    pub tau: f64,
    /// BOLD: a lexicon (TOML) added to the built-in one for the counterfactual swaps.
    pub lexicon: Option<PathBuf>,
    /// BBQ: questions drawn per (category, context condition) (0: all).
    pub per_stratum: usize,
    /// Pair benchmarks: `none`, or `self` (scored under Self-Debias, Schick et al. 2021).
    pub debias: String,
}

impl Default for BenchConfig {
    fn default() -> Self {
        let model = ModelSpec::default();
        BenchConfig {
            file: PathBuf::new(),
            model: model.model,
            dtype: model.dtype,
            allow_download: model.allow_download,
            served: ServedSpec::default(),
            strict: false,
            batch_size: 32,
            seed: 0,
            bootstrap: 1000,
            baseline: None,
            descriptors: 6,
            templates: 8,
            nouns: 4,
            full: false,
            span: "sentence".into(),
            per_group: 20,
            samples: 1,
            max_tokens: 24,
            tau: std::f64::consts::LN_2,
            lexicon: None,
            per_stratum: 100,
            debias: "none".into(),
        }
    }
}

impl BenchConfig {
    fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            model: self.model.clone(),
            dtype: self.dtype,
            allow_download: self.allow_download,
        }
    }

    fn open(&self, out: Option<&Path>, observer: &Arc<dyn Observer>) -> Result<ScoringModel> {
        ScoringModel::open(&self.model_spec(), &self.served, out, observer.clone())
    }
}

/// A benchmark's results.json, by benchmark.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum BenchResults {
    /// CrowS-Pairs, StereoSet or fairlm's pairs.
    Pairs(pairs::BenchResults),
    /// HolisticBias.
    Holistic(holistic::HolisticResults),
    /// BOLD.
    Bold(bold::BoldResults),
    /// BBQ.
    Bbq(bbq::BbqResults),
}

/// A finished benchmark run.
#[derive(Debug, Clone)]
pub struct BenchRun {
    /// The results.json content.
    pub results: BenchResults,
    /// The benchmark's table (Markdown).
    pub markdown: String,
    /// The paired change against the baseline (Markdown), when one was given.
    pub change: Option<String>,
}

/// The lines that say which rows of `file` a reader skipped (malformed, duplicated), for the
/// front ends to show.
pub fn skipped_lines(file: &Path, skipped: &[Skipped]) -> Vec<String> {
    let mut lines = Vec::new();
    for (duplicates, what) in [(false, "malformed"), (true, "duplicated")] {
        let rows: Vec<&Skipped> = skipped
            .iter()
            .filter(|s| s.duplicate == duplicates)
            .collect();
        if let Some(first) = rows.first() {
            lines.push(format!(
                "skipped {} {what} rows of {} (first: line {}: {}); --strict fails on them",
                rows.len(),
                file.display(),
                first.line,
                first.reason
            ));
        }
    }
    lines
}

fn tell_skipped(observer: &dyn Observer, file: &Path, skipped: &[Skipped]) {
    for line in skipped_lines(file, skipped) {
        observer.message(&line);
    }
}

/// Runs `benchmark` as `cfg` says; with `out`, writes OUT/results.json.
pub fn bench(
    benchmark: Benchmark,
    cfg: &BenchConfig,
    out: Option<&Path>,
    observer: Arc<dyn Observer>,
) -> Result<BenchRun> {
    let run = match benchmark {
        Benchmark::Holistic => run_holistic(cfg, out, &observer)?,
        Benchmark::Bold => run_bold(cfg, out, &observer)?,
        Benchmark::Bbq => run_bbq(cfg, out, &observer)?,
        pair => run_pairs(pair, cfg, out, &observer)?,
    };
    if let Some(out) = out {
        std::fs::create_dir_all(out)
            .map_err(|e| Error::file(out, format!("cannot create: {e}")))?;
        let json =
            serde_json::to_string_pretty(&run.results).map_err(|e| Error::Config(e.to_string()))?;
        write_atomic(&out.join("results.json"), json.as_bytes())?;
    }
    Ok(run)
}

/// Reads the results.json of an earlier run of one benchmark.
fn read_baseline<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = |line: usize, reason: String| {
        Error::Data(fairlm_bias::error::Error::Data {
            path: path.to_path_buf(),
            line,
            reason,
        })
    };
    let text = std::fs::read_to_string(path).map_err(|e| data(0, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| {
        data(
            e.line(),
            format!("not a results.json of this benchmark: {e}"),
        )
    })
}

/// The paired before/after table against `baseline`'s records, when there is a baseline.
fn paired_change<B>(
    baseline: Option<&B>,
    compare: impl FnOnce(&B) -> fairlm_bias::Result<Vec<Row>>,
) -> Result<Option<String>> {
    let Some(before) = baseline else {
        return Ok(None);
    };
    let c = Comparison {
        rows: compare(before)?,
        gates: Vec::new(),
    };
    Ok(Some(fairlm_bias::compare::markdown(&c)))
}

fn run_pairs(
    benchmark: Benchmark,
    cfg: &BenchConfig,
    out: Option<&Path>,
    observer: &Arc<dyn Observer>,
) -> Result<BenchRun> {
    let name = benchmark.name();
    // Read and check the files before loading the model: bad input fails fast.
    let (input, mut skipped) = pairs::read_benchmark(name, &cfg.file, cfg.strict)?;
    tell_skipped(observer.as_ref(), &cfg.file, &skipped);
    let baseline: Option<pairs::BenchResults> =
        cfg.baseline.as_deref().map(read_baseline).transpose()?;
    if let (Some(b), Some(path)) = (&baseline, &cfg.baseline) {
        if b.benchmark != name || b.pairs.is_none() {
            return Err(Error::file(
                path,
                format!("a results.json of `{}`, not of `{name}`", b.benchmark),
            ));
        }
    }
    let scoring = cfg.open(out, observer)?;
    let model = scoring.scorer_debiased(&cfg.debias)?;
    let mut record = scoring.record().clone();
    if cfg.debias != "none" {
        record.debias = Some(cfg.debias.clone());
    }
    let (input, overlong) = input.drop_overlong(
        scoring.tokenizer(),
        model.context_length(),
        pairs::scored_after(name),
        &cfg.file,
        cfg.strict,
    )?;
    tell_skipped(observer.as_ref(), &cfg.file, &overlong);
    skipped.extend(overlong);
    let results = pairs::run_benchmark(
        name,
        &cfg.file,
        &input,
        skipped,
        model.as_ref(),
        scoring.tokenizer(),
        record,
        cfg.batch_size,
    )?;
    let change = match (&baseline, &results.pairs) {
        (Some(b), Some(after)) => {
            let before = b.pairs.as_deref().unwrap_or_default();
            let table = flips::flip_table(before, after).map_err(|e| match &cfg.baseline {
                Some(path) => Error::file(path, e.to_string()),
                None => Error::Data(e),
            })?;
            Some(flips::markdown(&table))
        }
        _ => None,
    };
    Ok(BenchRun {
        markdown: pairs::markdown(&results),
        results: BenchResults::Pairs(results),
        change,
    })
}

fn run_holistic(
    cfg: &BenchConfig,
    out: Option<&Path>,
    observer: &Arc<dyn Observer>,
) -> Result<BenchRun> {
    let (data, skipped) = holistic::read_holistic(&cfg.file, cfg.strict)?;
    tell_skipped(observer.as_ref(), &cfg.file, &skipped);
    let Some(span) = holistic::Span::parse(&cfg.span) else {
        return Err(Error::Config(format!(
            "--span: `{}` is not sentence or after-descriptor",
            cfg.span
        )));
    };
    let baseline: Option<holistic::HolisticResults> =
        cfg.baseline.as_deref().map(read_baseline).transpose()?;
    if let (Some(b), Some(path)) = (&baseline, &cfg.baseline) {
        if b.span != span {
            return Err(Error::file(
                path,
                format!(
                    "scored with --span {:?}, this run with {:?}: not comparable",
                    b.span, span
                ),
            ));
        }
    }
    let some = |n: usize| (!cfg.full && n > 0).then_some(n);
    let sample = holistic::Sample {
        descriptors_per_axis: some(cfg.descriptors),
        templates: some(cfg.templates),
        nouns: some(cfg.nouns),
        seed: cfg.seed,
    };
    let sentences = holistic::sentences(&data, &sample);
    let (axes, descriptors, nouns, templates) = data.sizes();
    observer.message(&format!(
        "HolisticBias: {} sentences from {axes} axes, {descriptors} descriptors, {nouns} nouns, {templates} templates (sample: {})",
        sentences.len(),
        if cfg.full {
            "none, --full".to_string()
        } else {
            format!(
                "{} descriptors per axis, {} templates, {} nouns, seed {}",
                cfg.descriptors, cfg.templates, cfg.nouns, cfg.seed
            )
        }
    ));
    let scoring = cfg.open(out, observer)?;
    let model = scoring.scorer();
    let t0 = std::time::Instant::now();
    let (records, left_out) = holistic::score_holistic(
        model.as_ref(),
        scoring.tokenizer(),
        &sentences,
        cfg.batch_size,
        span,
    )?;
    if left_out > 0 {
        observer.message(&format!(
            "{left_out} sentences left out: no token after the descriptor, or the descriptor's tokens are not a prefix of the sentence's"
        ));
    }
    observer.message(&format!(
        "scored {} sentences in {:.0} s",
        records.len(),
        t0.elapsed().as_secs_f64()
    ));
    let table = holistic::holistic_table(&records, cfg.bootstrap, cfg.seed);
    let change = paired_change(baseline.as_ref(), |before| {
        holistic::compare_holistic(&before.records, &records, cfg.bootstrap, cfg.seed)
    })?;
    let markdown = holistic::markdown(&table);
    let results = holistic::HolisticResults {
        schema_version: 1,
        benchmark: "holistic".into(),
        file: cfg.file.clone(),
        model: scoring.record().clone(),
        sample,
        span,
        skipped,
        table,
        records,
    };
    Ok(BenchRun {
        results: BenchResults::Holistic(results),
        markdown,
        change,
    })
}

fn run_bold(
    cfg: &BenchConfig,
    out: Option<&Path>,
    observer: &Arc<dyn Observer>,
) -> Result<BenchRun> {
    let (all, skipped) = bold::read_bold(&cfg.file, cfg.strict)?;
    tell_skipped(observer.as_ref(), &cfg.file, &skipped);
    let lexicon = lexicon(cfg.lexicon.as_deref(), &[])?;
    let baseline: Option<bold::BoldResults> =
        cfg.baseline.as_deref().map(read_baseline).transpose()?;
    let per_group = (cfg.per_group > 0).then_some(cfg.per_group);
    let prompts = bold::subsample(all, per_group, cfg.seed);
    observer.message(&format!(
        "BOLD: {} prompts × {} samples ({})",
        prompts.len(),
        cfg.samples,
        match per_group {
            Some(n) => format!("at most {n} per domain and group, seed {}", cfg.seed),
            None => "all".into(),
        }
    ));
    let bold_cfg = bold::BoldConfig {
        samples: cfg.samples,
        max_tokens: cfg.max_tokens,
        temperature: 1.0,
        seed: cfg.seed,
        batch_size: cfg.batch_size,
        tau: cfg.tau,
    };
    let scoring = cfg.open(out, observer)?;
    let model = scoring.scorer();
    let sampling = observer.stage("sampling", (prompts.len() * cfg.samples) as u64);
    let scored = observer.stage("scoring", 0);
    let records = bold::run_bold(
        model.as_ref(),
        scoring.tokenizer(),
        &lexicon,
        &prompts,
        &bold_cfg,
        |stage, n| match stage {
            "sampling" => sampling.advance(n as u64),
            _ => scored.advance(n as u64),
        },
    )?;
    drop((sampling, scored));
    let table = bold::bold_table(&records, cfg.tau, cfg.bootstrap, cfg.seed);
    let change = paired_change(baseline.as_ref(), |before| {
        bold::compare_bold(&before.records, &records, cfg.tau, cfg.bootstrap, cfg.seed)
    })?;
    let markdown = bold::markdown(&table);
    let results = bold::BoldResults {
        schema_version: 1,
        benchmark: "bold".into(),
        file: cfg.file.clone(),
        model: scoring.record().clone(),
        per_group,
        config: bold_cfg,
        skipped,
        table,
        records,
    };
    Ok(BenchRun {
        results: BenchResults::Bold(results),
        markdown,
        change,
    })
}

fn run_bbq(
    cfg: &BenchConfig,
    out: Option<&Path>,
    observer: &Arc<dyn Observer>,
) -> Result<BenchRun> {
    // Read and check the files before loading the model: bad input fails fast.
    let (all, skipped) = bbq::read_bbq(&cfg.file, cfg.strict)?;
    tell_skipped(observer.as_ref(), &cfg.file, &skipped);
    let per_stratum = (cfg.per_stratum > 0).then_some(cfg.per_stratum);
    let examples = bbq::subsample(all, per_stratum, cfg.seed);
    observer.message(&format!(
        "BBQ: {} questions ({})",
        examples.len(),
        match per_stratum {
            Some(n) => format!(
                "at most {n} per category and context condition, seed {}",
                cfg.seed
            ),
            None => "all".into(),
        }
    ));
    let baseline: Option<bbq::BbqResults> =
        cfg.baseline.as_deref().map(read_baseline).transpose()?;
    let scoring = cfg.open(out, observer)?;
    let model = scoring.scorer();
    let pb = observer.stage("BBQ", examples.len() as u64);
    let records = bbq::score_bbq(
        model.as_ref(),
        scoring.tokenizer(),
        &examples,
        cfg.batch_size,
        |n| pb.advance(n as u64),
    )?;
    drop(pb);
    let table = bbq::bbq_table(&records, cfg.bootstrap, cfg.seed);
    let change = paired_change(baseline.as_ref(), |before| {
        bbq::compare_bbq(&before.records, &records, cfg.bootstrap, cfg.seed)
    })?;
    let markdown = bbq::markdown(&table);
    let results = bbq::BbqResults {
        schema_version: 1,
        benchmark: "bbq".into(),
        file: cfg.file.clone(),
        model: scoring.record().clone(),
        per_stratum,
        seed: cfg.seed,
        skipped,
        table,
        records,
    };
    Ok(BenchRun {
        results: BenchResults::Bbq(results),
        markdown,
        change,
    })
}
