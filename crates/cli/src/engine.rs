//! Engine subcommands: score, generate, perplexity, tokenize, models.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use fairlm_model::generate::{BatchPlan, SamplingConfig};
use fairlm_model::perplexity::{default_stride, perplexity_window};
use fairlm_model::{fetch, Checkpoint, NumericPath};
use fairlm_pipeline::model::{ModelSpec, ScoringModel, ServedSpec};
use fairlm_pipeline::ScoreConfig;

use crate::terminal::terminal;

use fairlm_bias::audit::HELDOUT;

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// `smollm2` (the default model, fetched if missing), a GGUF file, a Hugging Face
    /// directory with config.json and *.safetensors, or a Hugging Face hub id
    /// (`owner/name[@revision]`, read from the local Hugging Face cache).
    #[arg(long, default_value = fairlm_pipeline::DEFAULT_MODEL)]
    pub model: String,
    /// Numeric path: `f32` (weights dequantized; matches transformers; fastest here for
    /// batched work) or `quantized` (GGUF blocks as stored; matches llama.cpp).
    #[arg(long, default_value = "f32")]
    pub dtype: NumericPath,
    /// Fetch a hub id that the Hugging Face cache lacks into that cache (needs the network).
    #[arg(long)]
    pub allow_download: bool,
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
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = ServedSpec::default().concurrency)]
    pub concurrency: usize,
    /// With a served model: seconds to wait for one answer.
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = ServedSpec::default().timeout_s)]
    pub timeout: f64,
    /// With a served model: retries of one request after a connection error, 429 or 5xx.
    #[arg(long, default_value_t = ServedSpec::default().max_retries)]
    pub max_retries: u32,
    /// With a served model: a directory that keeps every answer by request, so that a rerun
    /// (or a run started again after it was stopped) sends only what was not answered
    /// [default: OUT/requests for commands with --out].
    #[arg(value_parser = crate::args::path, long)]
    pub cache: Option<PathBuf>,
}

/// The model `m` names, for scoring; a served one keeps its answers in `--cache`, else in
/// `out`/requests when the command writes to `out`.
pub fn open_model(m: &ModelArgs, s: &ServedArgs, out: Option<&Path>) -> Result<ScoringModel> {
    Ok(ScoringModel::open(
        &m.spec(),
        &s.spec(),
        out,
        std::sync::Arc::new(terminal()),
    )?)
}

impl ModelArgs {
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            model: self.model.clone(),
            dtype: self.dtype,
            allow_download: self.allow_download,
        }
    }

    pub fn open(&self) -> Result<Checkpoint> {
        Ok(self.spec().checkpoint(&terminal())?)
    }
}

impl ServedArgs {
    pub fn spec(&self) -> ServedSpec {
        ServedSpec {
            name: self.served_name.clone(),
            tokenizer: self.tokenizer.clone(),
            concurrency: self.concurrency,
            timeout_s: self.timeout,
            max_retries: self.max_retries,
            cache: self.cache.clone(),
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
    #[arg(long, default_value_t = ScoreConfig::default().context_token)]
    pub context_token: String,
    /// Include per-token ids and log-probabilities.
    #[arg(long)]
    pub per_token: bool,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = ScoreConfig::default().batch_size)]
    pub batch_size: usize,
    /// `self`: score under Self-Debias (Schick et al. 2021; bias-bench's prefixes, λ 50,
    /// ε 0.01), a model here only; `none`: plain.
    #[arg(long, default_value_t = ScoreConfig::default().debias, value_parser = ["none", "self"])]
    pub debias: String,
}

pub fn score(a: ScoreArgs) -> Result<()> {
    let texts = texts_from(&a.texts, &a.file)?;
    let cfg = ScoreConfig {
        model: a.model.model.clone(),
        dtype: a.model.dtype,
        allow_download: a.model.allow_download,
        served: a.served.spec(),
        context_token: a.context_token,
        per_token: a.per_token,
        batch_size: a.batch_size,
        debias: a.debias,
    };
    let scores = fairlm_pipeline::score(&texts, &cfg, std::sync::Arc::new(terminal()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for s in scores {
        writeln!(out, "{}", serde_json::to_string(&s)?)?;
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
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = SamplingConfig::default().temperature)]
    pub temperature: f64,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = SamplingConfig::default().max_new_tokens)]
    pub max_tokens: usize,
    /// Stop a sample once its text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// `self`: sample under Self-Debias (Schick et al. 2021; bias-bench's prefixes, λ 50,
    /// ε 0.01), the prompt's prefixed copies decoded beside each sample; a model here only.
    #[arg(long, default_value = "none", value_parser = ["none", "self"])]
    pub debias: String,
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
    let scoring = open_model(&a.model, &a.served, None)?;
    let (model, tokenizer) = (scoring.scorer_debiased(&a.debias)?, scoring.tokenizer());
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
    let scoring = open_model(&a.model, &a.served, None)?;
    let model = scoring.scorer();
    let ids = scoring
        .tokenizer()
        .encode(&text)
        .with_context(|| name.clone())?;
    let (default_window, _) = perplexity_window(model.context_length());
    let window = a.window.unwrap_or(default_window);
    let stride = a.stride.unwrap_or(default_stride(window));
    let (ppl, lps) =
        fairlm_model::perplexity::perplexity(model.as_ref(), &ids, Some((window, stride)))
            .with_context(|| name.clone())?;
    let (nll, n) = (-lps.iter().sum::<f64>(), lps.len());
    let line = serde_json::json!({
        "text": name, "n_tokens": ids.len(), "n_predicted": n, "nll_sum": nll,
        "mean_nll": nll / n as f64, "perplexity": ppl,
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
        fetch::fetch_default(&default, &terminal())?;
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
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = fairlm_model::speed::DEFAULT_RUNS)]
    pub runs: usize,
    /// Batch sizes for the sampling measurement.
    #[arg(long, value_delimiter = ',', default_values_t = fairlm_model::speed::DEFAULT_SAMPLE_BATCHES)]
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
    #[arg(long, default_value = fairlm_pipeline::DEFAULT_MODEL)]
    pub model: String,
    /// The new Hugging Face directory (config.json, model.safetensors, tokenizer.json).
    #[arg(value_parser = crate::args::path, long)]
    pub out: PathBuf,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let ck = ModelArgs {
        model: a.model.clone(),
        dtype: NumericPath::F32,
        allow_download: false,
    }
    .open()?;
    fairlm_model::save::save_hf(&ck, None, &a.out)?;
    eprintln!(
        "fairlm: wrote {} (f32 weights, Hugging Face layout)",
        a.out.display()
    );
    Ok(())
}
