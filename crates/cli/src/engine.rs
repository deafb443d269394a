//! Engine subcommands: score, generate, perplexity, tokenize, models.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use fairlm_model::backend::{Backend, Local};
use fairlm_model::generate::{BatchPlan, SamplingConfig};
use fairlm_model::score::{sliding_logprobs, ScoreItem, TextScore};
use fairlm_model::served::{ServedModel, ServedOptions};
use fairlm_model::{fetch, Checkpoint, NumericPath};

/// The held-out English text written for this project (quality check; never trained on).
pub const HELDOUT: &str = include_str!("../../../data/heldout.txt");

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// `smollm2` (the default model, fetched if missing), a GGUF file, or a Hugging Face
    /// directory with config.json and *.safetensors.
    #[arg(long, default_value = fetch::DEFAULT_MODEL)]
    pub model: String,
    /// Numeric path: `f32` (weights dequantized; matches transformers; fastest here for
    /// batched work) or `quantized` (GGUF blocks as stored; matches llama.cpp).
    #[arg(long, default_value = "f32")]
    pub dtype: NumericPath,
}

/// `--model http://…` or `https://…`: a served model.
pub fn is_url(model: &str) -> bool {
    model.starts_with("http://") || model.starts_with("https://")
}

/// How to reach a served model (`--model http(s)://HOST:PORT/v1`). `Default` is for models
/// given by path, where none of it applies.
#[derive(Args, Clone, Default)]
pub struct ServedArgs {
    /// With a served model: its name, where the server hosts several.
    #[arg(long)]
    pub served_name: Option<String>,
    /// With a served model: its tokenizer (a GGUF file, a tokenizer.json, or a model
    /// directory), which encodes the prompts sent as token ids.
    #[arg(value_parser = crate::args::path, long)]
    pub tokenizer: Option<PathBuf>,
    /// With a served model: requests in flight at once.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 8)]
    pub concurrency: usize,
    /// With a served model: seconds to wait for one answer.
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = 300.0)]
    pub timeout: f64,
    /// With a served model: retries of one request after a connection error, 429 or 5xx.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// With a served model: a directory that keeps every answer by request, so that a rerun
    /// (or a run started again after it was stopped) sends only what was not answered
    /// [default: OUT/requests for commands with --out].
    #[arg(value_parser = crate::args::path, long)]
    pub cache: Option<PathBuf>,
}

/// A model to score with: loaded here, or behind a server.
pub enum ScoringModel {
    Local {
        checkpoint: Box<Checkpoint>,
        model: Box<dyn fairlm_model::CausalLm>,
        record: fairlm_bias::audit::ModelRecord,
    },
    Served {
        model: Box<ServedModel>,
        record: fairlm_bias::audit::ModelRecord,
        /// Prints the client's progress line while the model is open.
        _progress: RequestProgress,
    },
}

/// A thread that prints a served model's request counts to stderr every `EVERY` while
/// anything changes (requests answered and from the cache, in flight, retries, tokens/s),
/// when stderr is a terminal (as the progress bars are drawn); stopped when dropped.
pub struct RequestProgress {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RequestProgress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn start(url: String, stats: std::sync::Arc<fairlm_model::served::RequestStats>) -> Self {
        use std::io::IsTerminal;
        use std::sync::atomic::Ordering::Relaxed;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        if !std::io::stderr().is_terminal() {
            return RequestProgress {
                stop: None,
                thread: None,
            };
        }
        let thread = std::thread::spawn(move || {
            let mut last = (0, 0, 0, 0);
            let mut last_tokens = 0;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Self::EVERY)
            {
                let now = (
                    stats.answered.load(Relaxed),
                    stats.cached.load(Relaxed),
                    stats.in_flight.load(Relaxed),
                    stats.retries.load(Relaxed),
                );
                let tokens = stats.tokens.load(Relaxed);
                if now == last && tokens == last_tokens {
                    continue;
                }
                eprintln!(
                    "fairlm: {url}: {} requests answered, {} from the cache, {} in flight, {} retries, {:.0} tok/s",
                    now.0,
                    now.1,
                    now.2,
                    now.3,
                    (tokens - last_tokens) as f64 / Self::EVERY.as_secs_f64()
                );
                (last, last_tokens) = (now, tokens);
            }
        });
        RequestProgress {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for RequestProgress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ScoringModel {
    /// The model `m` names; a served one keeps its answers in `--cache`, else in
    /// `out`/requests when the command writes to `out`.
    pub fn open(m: &ModelArgs, s: &ServedArgs, out: Option<&Path>) -> Result<Self> {
        if !is_url(&m.model) {
            let path = fetch::resolve(&m.model)?;
            let checkpoint = m.open()?;
            let model = checkpoint.build()?;
            let record = model_record(&path, model.as_ref())?;
            return Ok(ScoringModel::Local {
                checkpoint: Box::new(checkpoint),
                model,
                record,
            });
        }
        let Some(tokenizer_path) = &s.tokenizer else {
            bail!(
                "{}: a served model needs --tokenizer (a GGUF file, a tokenizer.json, or a model directory)",
                m.model
            );
        };
        let tokenizer = fairlm_model::Tokenizer::from_path(tokenizer_path)?;
        let api_key = ["FAIRLM_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        let model = ServedModel::connect(
            &m.model,
            tokenizer,
            ServedOptions {
                name: s.served_name.clone(),
                concurrency: s.concurrency,
                timeout: std::time::Duration::from_secs_f64(s.timeout),
                max_retries: s.max_retries,
                api_key,
                cache: s.cache.clone().or_else(|| out.map(|o| o.join("requests"))),
            },
        )?;
        let tokenizer_sha256 = model_sha256(tokenizer_path)?;
        let description = model.description().clone();
        let text = |key: &str| {
            description
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("served")
                .to_string()
        };
        let record = fairlm_bias::audit::ModelRecord {
            path: model.url().to_string(),
            sha256: tokenizer_sha256.clone(),
            architecture: text("architecture"),
            numeric_path: text("numeric_path"),
            served: Some(fairlm_bias::audit::ServedRecord {
                url: model.url().to_string(),
                name: model.name().to_string(),
                description,
                tokenizer: tokenizer_path.display().to_string(),
                tokenizer_sha256,
            }),
        };
        let progress = RequestProgress::start(model.url().to_string(), model.stats());
        Ok(ScoringModel::Served {
            model: Box::new(model),
            record,
            _progress: progress,
        })
    }

    pub fn scorer(&self) -> Box<dyn Backend + '_> {
        match self {
            ScoringModel::Local { model, .. } => Box::new(Local(model.as_ref())),
            ScoringModel::Served { model, .. } => Box::new(model.as_ref()),
        }
    }

    pub fn tokenizer(&self) -> &fairlm_model::Tokenizer {
        match self {
            ScoringModel::Local { checkpoint, .. } => &checkpoint.tokenizer,
            ScoringModel::Served { model, .. } => model.tokenizer(),
        }
    }

    pub fn record(&self) -> &fairlm_bias::audit::ModelRecord {
        match self {
            ScoringModel::Local { record, .. } | ScoringModel::Served { record, .. } => record,
        }
    }
}

/// What results files record about the model: its path, file hash and numeric path.
pub fn model_record(
    path: &Path,
    model: &dyn fairlm_model::CausalLm,
) -> Result<fairlm_bias::audit::ModelRecord> {
    Ok(fairlm_bias::audit::ModelRecord {
        path: path.display().to_string(),
        sha256: model_sha256(path)?,
        architecture: model.info().architecture.clone(),
        numeric_path: model.info().numeric_path.clone(),
        served: None,
    })
}

/// The sha256 of a model file; of a Hugging Face directory, the sha256 of its config.json and
/// weight files' names and hashes (what identifies the model, not the directory's path).
pub fn model_sha256(path: &Path) -> Result<String> {
    if path.is_file() {
        return Ok(fetch::sha256_file(path)?);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| path.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| n == "config.json")
                || p.extension().is_some_and(|x| x == "safetensors")
        })
        .collect();
    files.sort();
    let listing: String = files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            Ok(format!("{name} {}\n", fetch::sha256_file(f)?))
        })
        .collect::<Result<_>>()?;
    Ok(fetch::sha256_bytes(listing.as_bytes()))
}

impl ModelArgs {
    pub fn open(&self) -> Result<Checkpoint> {
        if is_url(&self.model) {
            bail!(
                "{}: this command needs the model's weights; served models are taken by audit, merge, score, generate, perplexity and bench",
                self.model
            );
        }
        let path = fetch::resolve(&self.model)?;
        Ok(Checkpoint::open(&path, self.dtype)?)
    }
}

/// The token that precedes a text when it is scored: `auto` (the model's `<|endoftext|>`),
/// `none`, or an id.
fn context_ids(tokenizer: &fairlm_model::Tokenizer, spec: &str) -> Result<Vec<u32>> {
    match spec {
        "auto" => Ok(tokenizer.document_start().into_iter().collect()),
        "none" => Ok(Vec::new()),
        id => {
            let id: u32 = id
                .parse()
                .with_context(|| format!("--context-token: `{id}` is not auto, none or an id"))?;
            let vocab = tokenizer.vocab_size();
            if id as usize >= vocab {
                bail!("--context-token: {id} is not a token id of this model (its vocabulary has {vocab})");
            }
            Ok(vec![id])
        }
    }
}

fn read_lines(file: &Path) -> Result<Vec<String>> {
    let text = fairlm_bias::error::read_text(file)?;
    Ok(text.lines().map(String::from).collect())
}

fn texts_from(texts: &[String], file: &Option<PathBuf>) -> Result<Vec<String>> {
    let mut all = texts.to_vec();
    if let Some(f) = file {
        all.extend(read_lines(f)?.into_iter().filter(|l| !l.is_empty()));
    }
    if all.is_empty() {
        bail!("no text given: pass TEXT arguments or --file FILE");
    }
    Ok(all)
}

#[derive(Args)]
pub struct ScoreArgs {
    /// Texts to score.
    pub texts: Vec<String>,
    /// A file with one text per line (empty lines skipped).
    #[arg(value_parser = crate::args::path, long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub served: ServedArgs,
    /// Context token before each text: auto (<|endoftext|>), none, or an id.
    #[arg(long, default_value = "auto")]
    pub context_token: String,
    /// Include per-token ids and log-probabilities.
    #[arg(long)]
    pub per_token: bool,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 16)]
    pub batch_size: usize,
}

#[derive(serde::Serialize)]
struct ScoreLine<'a> {
    text: &'a str,
    logprob_sum: f64,
    logprob_mean: f64,
    n_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_ids: Option<&'a [u32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_logprobs: Option<&'a [f64]>,
}

pub fn score(a: ScoreArgs) -> Result<()> {
    let texts = texts_from(&a.texts, &a.file)?;
    let scoring = ScoringModel::open(&a.model, &a.served, None)?;
    let ctx = context_ids(scoring.tokenizer(), &a.context_token)?;
    let mut items = Vec::with_capacity(texts.len());
    let mut ids_all = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let ids = scoring
            .tokenizer()
            .encode(t)
            .with_context(|| format!("text {}", i + 1))?;
        if ids.is_empty() || (ctx.is_empty() && ids.len() < 2) {
            bail!("text {} ({t:?}) has no token to score", i + 1);
        }
        items.push(if ctx.is_empty() {
            ScoreItem {
                tokens: ids.clone(),
                first_scored: 1,
            }
        } else {
            ScoreItem::after_context(&ctx, &ids)
        });
        ids_all.push(ids);
    }
    let scores = scoring.scorer().score(&items, a.batch_size, &mut |_| {})?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for ((text, ids), lps) in texts.iter().zip(&ids_all).zip(scores) {
        let s = TextScore::from_logprobs(lps);
        let scored_ids = &ids[ids.len() - s.n_tokens..];
        let line = ScoreLine {
            text,
            logprob_sum: s.logprob_sum,
            logprob_mean: s.logprob_mean,
            n_tokens: s.n_tokens,
            token_ids: a.per_token.then_some(scored_ids),
            token_logprobs: a.per_token.then_some(&s.token_logprobs[..]),
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    Ok(())
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Prompts.
    #[arg(required = true)]
    pub prompts: Vec<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub served: ServedArgs,
    /// Samples per prompt.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, short, long, default_value_t = 1)]
    pub n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// 0 is greedy.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Stop a sample once its text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    let cfg = SamplingConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        max_new_tokens: a.max_tokens,
        stop: a.stop.clone(),
    };
    cfg.validate()?;
    let scoring = ScoringModel::open(&a.model, &a.served, None)?;
    let (model, tokenizer) = (scoring.scorer(), scoring.tokenizer());
    let stdout = std::io::stdout();
    for (pi, prompt) in a.prompts.iter().enumerate() {
        let ids = tokenizer.encode(prompt)?;
        let ids = if ids.is_empty() {
            tokenizer.document_start().into_iter().collect()
        } else {
            ids
        };
        // One prompt, its samples decoded together; sample i draws from the stream
        // (seed, prompt number, i) wherever the model runs.
        let gens = model
            .generate_batched(
                tokenizer,
                &[(ids, pi as u64)],
                &cfg,
                BatchPlan {
                    samples: a.n,
                    seed: a.seed,
                    batch_rows: a.n,
                },
                &mut |_| {},
            )?
            .pop()
            .unwrap_or_default();
        let mut out = stdout.lock();
        for g in gens {
            let line = serde_json::json!({
                "prompt": prompt, "sample": g.sample, "seed": a.seed, "text": g.text,
                "token_ids": g.token_ids, "finish": g.finish,
            });
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct PerplexityArgs {
    /// Text file (default: the held-out text embedded in fairlm).
    #[arg(value_parser = crate::args::path, long)]
    pub text: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub served: ServedArgs,
    /// Window length in tokens (default: the model's context, at most 1024).
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long)]
    pub window: Option<usize>,
    /// Window step (default: half the window).
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long)]
    pub stride: Option<usize>,
}

pub fn perplexity(a: PerplexityArgs) -> Result<()> {
    let (name, text) = match &a.text {
        Some(p) => (p.display().to_string(), fairlm_bias::error::read_text(p)?),
        None => ("heldout (embedded)".to_string(), HELDOUT.to_string()),
    };
    let scoring = ScoringModel::open(&a.model, &a.served, None)?;
    let model = scoring.scorer();
    let ids = scoring
        .tokenizer()
        .encode(&text)
        .with_context(|| name.clone())?;
    let window = a.window.unwrap_or(model.context_length().min(1024));
    let stride = a.stride.unwrap_or((window / 2).max(1));
    let lps = sliding_logprobs(model.as_ref(), &ids, window, stride, |_| {})
        .with_context(|| name.clone())?;
    let (nll, n) = (-lps.iter().sum::<f64>(), lps.len());
    let line = serde_json::json!({
        "text": name, "n_tokens": ids.len(), "n_predicted": n, "nll_sum": nll,
        "mean_nll": nll / n as f64, "perplexity": (nll / n as f64).exp(),
        "window": window, "stride": stride, "numeric_path": scoring.record().numeric_path,
    });
    outln!("{line}")?;
    Ok(())
}

#[derive(Args)]
pub struct TokenizeArgs {
    #[arg(required = true)]
    pub texts: Vec<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let ck = a.model.open()?;
    for t in &a.texts {
        let ids = ck.tokenizer.encode(t)?;
        outln!(
            "{}",
            serde_json::json!({"text": t, "ids": ids, "tokens": ck.tokenizer.tokens(&ids)})
        )?;
    }
    Ok(())
}

/// The loader's support table, with the numeric paths each source computes on.
fn list_architectures() -> Result<()> {
    use fairlm_model::loader::{GGUF_TYPES, SUPPORT};
    outln!("| architecture | Hugging Face directory (--dtype f32) | GGUF (--dtype f32 or quantized) | notes |")?;
    outln!("|---|---|---|---|")?;
    for s in SUPPORT {
        outln!(
            "| {} | {} | {} | {} |",
            s.architecture,
            if s.hf_dir { "yes" } else { "no" },
            s.gguf.unwrap_or("no"),
            s.notes
        )?;
    }
    outln!()?;
    outln!("GGUF tensor types: {}.", GGUF_TYPES.join(", "))?;
    outln!("--dtype f32 dequantizes every type to f32 (the reference path, matches transformers; training runs on it).")?;
    outln!("--dtype quantized multiplies the stored blocks (Q4_1 with fairlm's kernel, the others with candle's, activations rounded as llama.cpp rounds them).")?;
    Ok(())
}

#[derive(Args)]
pub struct ModelsArgs {
    /// Fetch the default model if it is missing.
    #[arg(long)]
    pub fetch: bool,
    /// List the architectures and GGUF tensor types that load, and on which numeric path.
    #[arg(long)]
    pub list_architectures: bool,
}

pub fn models(a: ModelsArgs) -> Result<()> {
    if a.list_architectures {
        return list_architectures();
    }
    let default = fetch::default_model_path();
    if a.fetch && !default.is_file() {
        fetch::fetch_default(&default)?;
    }
    outln!("home: {}", fetch::home().display())?;
    outln!(
        "default: {} -> {} ({})",
        fetch::DEFAULT_MODEL,
        default.display(),
        if default.is_file() {
            "present"
        } else {
            "missing; fetched on first use"
        }
    )?;
    let dir = fetch::home().join("models");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        for p in paths {
            let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            outln!("cached: {} ({:.1} MB)", p.display(), size as f64 / 1e6)?;
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct SpeedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Timed runs per piece of work (after one warm-up); the median is reported.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 3)]
    pub runs: usize,
    /// Batch sizes for the sampling measurement.
    #[arg(long, value_delimiter = ',', default_value = "16,32")]
    pub sample_batches: Vec<usize>,
    /// Time a full fine-tuning step instead (8×32 held-out tokens, cross-entropy, AdamW, f32).
    #[arg(long)]
    pub train: bool,
}

pub fn speed(a: SpeedArgs) -> Result<()> {
    let ck = a.model.open()?;
    if a.train {
        let ids = ck.tokenizer.encode(HELDOUT)?;
        let rows: Vec<Vec<u32>> = ids.chunks_exact(32).take(8).map(|c| c.to_vec()).collect();
        let mut runs = fairlm_train::trainer::time_train_step(&ck, &rows, a.runs.max(1))?;
        let raw = runs.clone();
        runs.sort_by(f64::total_cmp);
        outln!(
            "{}",
            serde_json::json!({
                "work": "train step 8x32 tokens, full fine-tune, AdamW, f32",
                "median_s": runs[runs.len() / 2],
                "runs_s": raw,
                "ids": rows,
            })
        )?;
        return Ok(());
    }
    let model = ck.build()?;
    let report = fairlm_model::speed::measure(
        model.as_ref(),
        &ck.tokenizer,
        HELDOUT,
        a.runs.max(1),
        &a.sample_batches,
    )?;
    outln!("{}", serde_json::to_string(&report)?)?;
    Ok(())
}

#[derive(Args)]
pub struct ConvertArgs {
    /// `smollm2`, a GGUF file, or a Hugging Face directory.
    #[arg(long, default_value = fetch::DEFAULT_MODEL)]
    pub model: String,
    /// The new Hugging Face directory (config.json, model.safetensors, tokenizer.json).
    #[arg(value_parser = crate::args::path, long)]
    pub out: PathBuf,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let ck = ModelArgs {
        model: a.model.clone(),
        dtype: NumericPath::F32,
    }
    .open()?;
    fairlm_model::save::save_hf(&ck, None, &a.out)?;
    eprintln!(
        "fairlm: wrote {} (f32 weights, Hugging Face layout)",
        a.out.display()
    );
    Ok(())
}
