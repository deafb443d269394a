//! The model a config names — `smollm2`, a GGUF file, a Hugging Face directory, or a served
//! model's URL — opened for scoring, and what results files record about it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fairlm_bias::audit::{ModelRecord, ServedRecord};
use fairlm_model::backend::{Backend, Local};
use fairlm_model::served::{ServedModel, ServedOptions};
use fairlm_model::{fetch, Checkpoint, NumericPath};

use crate::error::{Error, Result};
use crate::{Observer, Progress, RequestCounts};

/// Which model, on which numeric path.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    /// `smollm2` (the default model, fetched if missing), a GGUF file, a Hugging Face
    /// directory with config.json and *.safetensors, a Hugging Face hub id
    /// (`owner/name[@revision]`, from the local Hugging Face cache), or
    /// `http(s)://HOST:PORT/v1`.
    pub model: String,
    /// `f32` (weights dequantized; matches transformers) or `quantized` (GGUF blocks as
    /// stored; matches llama.cpp).
    pub dtype: NumericPath,
    /// Fetch a hub id missing from the Hugging Face cache into it (network).
    pub allow_download: bool,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            model: crate::DEFAULT_MODEL.to_string(),
            dtype: NumericPath::F32,
            allow_download: false,
        }
    }
}

impl ModelSpec {
    /// A model behind a server (`http://…` or `https://…`).
    pub fn is_served(&self) -> bool {
        is_url(&self.model)
    }

    /// The checkpoint (weights and tokenizer) of a model given by name or path; fetching the
    /// default model, when it is missing, is told to `progress`.
    pub fn checkpoint(&self, progress: &dyn Progress) -> Result<Checkpoint> {
        if self.is_served() {
            return Err(Error::Config(format!(
                "{}: this command needs the model's weights; served models are taken by audit, merge, score, generate, perplexity and bench",
                self.model
            )));
        }
        Ok(Checkpoint::open(&self.path(progress)?, self.dtype)?)
    }

    /// The model's file or directory (the default model and hub ids resolved, a fetch told to
    /// `progress`).
    pub fn path(&self, progress: &dyn Progress) -> Result<PathBuf> {
        Ok(fetch::resolve(&self.model, self.allow_download, progress)?)
    }
}

/// `http://…` or `https://…`: a served model.
pub fn is_url(model: &str) -> bool {
    model.starts_with("http://") || model.starts_with("https://")
}

/// How to reach a served model; none of it applies to a model given by path.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServedSpec {
    /// The model's name, where the server hosts several.
    pub name: Option<String>,
    /// The model's tokenizer (a GGUF file, a tokenizer.json, or a model directory), which
    /// encodes the prompts sent as token ids.
    pub tokenizer: Option<PathBuf>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seconds to wait for one answer.
    pub timeout_s: f64,
    /// Retries of one request after a connection error, 429 or 5xx.
    pub max_retries: u32,
    /// A directory that keeps every answer by request, so that a rerun sends only what was
    /// not answered [default: OUT/requests for runs with an output directory].
    pub cache: Option<PathBuf>,
}

impl Default for ServedSpec {
    fn default() -> Self {
        ServedSpec {
            name: None,
            tokenizer: None,
            concurrency: 8,
            timeout_s: 300.0,
            max_retries: 5,
            cache: None,
        }
    }
}

/// Self-Debias's λ and ε, as bias-bench runs it (Schick et al. 2021's defaults).
pub const SELF_DEBIAS_DECAY: f64 = 50.0;
/// See [`SELF_DEBIAS_DECAY`].
pub const SELF_DEBIAS_EPSILON: f64 = 0.01;

/// A model to score with: loaded here, or behind a server.
pub enum ScoringModel {
    /// A model loaded in this process.
    Local {
        /// Its files, tokenizer and config.
        checkpoint: Box<Checkpoint>,
        /// The model built from them.
        model: Box<dyn fairlm_model::CausalLm>,
        /// What results record of it.
        record: ModelRecord,
    },
    /// A model behind an OpenAI-compatible server.
    Served {
        /// The client.
        model: Box<ServedModel>,
        /// What results record of it.
        record: ModelRecord,
        /// Reports the client's request counts while the model is open.
        _reporter: RequestReporter,
    },
}

impl ScoringModel {
    /// The model `spec` names; a served one keeps its answers in `served.cache`, else in
    /// `out`/requests when the run writes to `out`, and reports its requests to `observer`.
    pub fn open(
        spec: &ModelSpec,
        served: &ServedSpec,
        out: Option<&Path>,
        observer: Arc<dyn Observer>,
    ) -> Result<Self> {
        if !spec.is_served() {
            let path = spec.path(observer.as_ref())?;
            let checkpoint = Checkpoint::open(&path, spec.dtype)?;
            let model = checkpoint.build()?;
            let record = model_record(&path, model.as_ref())?;
            return Ok(ScoringModel::Local {
                checkpoint: Box::new(checkpoint),
                model,
                record,
            });
        }
        let Some(tokenizer_path) = &served.tokenizer else {
            return Err(Error::Config(format!(
                "{}: a served model needs --tokenizer (a GGUF file, a tokenizer.json, or a model directory)",
                spec.model
            )));
        };
        if !(served.timeout_s.is_finite() && served.timeout_s > 0.0) || served.concurrency == 0 {
            return Err(Error::Config(format!(
                "{}: the timeout must be a positive number of seconds and the concurrency at least 1",
                spec.model
            )));
        }
        let tokenizer = fairlm_model::Tokenizer::from_path(tokenizer_path)?;
        let api_key = ["FAIRLM_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        let model = ServedModel::connect(
            &spec.model,
            tokenizer,
            ServedOptions {
                name: served.name.clone(),
                concurrency: served.concurrency,
                timeout: std::time::Duration::from_secs_f64(served.timeout_s),
                max_retries: served.max_retries,
                api_key,
                cache: served
                    .cache
                    .clone()
                    .or_else(|| out.map(|o| o.join("requests"))),
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
        let record = ModelRecord {
            path: model.url().to_string(),
            sha256: tokenizer_sha256.clone(),
            architecture: text("architecture"),
            numeric_path: text("numeric_path"),
            served: Some(ServedRecord {
                url: model.url().to_string(),
                name: model.name().to_string(),
                description,
                tokenizer: tokenizer_path.display().to_string(),
                tokenizer_sha256,
            }),
            debias: None,
        };
        let reporter = RequestReporter::start(model.url().to_string(), model.stats(), observer);
        Ok(ScoringModel::Served {
            model: Box::new(model),
            record,
            _reporter: reporter,
        })
    }

    /// The model as the scorer every measure takes.
    pub fn scorer(&self) -> Box<dyn Backend + '_> {
        match self {
            ScoringModel::Local { model, .. } => Box::new(Local(model.as_ref())),
            ScoringModel::Served { model, .. } => Box::new(model.as_ref()),
        }
    }

    /// The scorer under `debias`: `none` is [`ScoringModel::scorer`]; `self` scores under
    /// Self-Debias with bias-bench's prefixes (a model in this process only: a server gives
    /// no whole next-token distributions).
    pub fn scorer_debiased(&self, debias: &str) -> Result<Box<dyn Backend + '_>> {
        match (debias, self) {
            ("none", _) => Ok(self.scorer()),
            ("self", ScoringModel::Local { model, checkpoint, .. }) => {
                let tok = &checkpoint.tokenizer;
                let prefixes = fairlm_model::self_debias::PREFIXES
                    .iter()
                    .map(|p| tok.encode(p))
                    .collect::<fairlm_model::Result<Vec<_>>>()?;
                Ok(Box::new(fairlm_model::self_debias::SelfDebiased {
                    model: model.as_ref(),
                    config: fairlm_model::self_debias::SelfDebias {
                        prefixes,
                        decay: SELF_DEBIAS_DECAY,
                        epsilon: SELF_DEBIAS_EPSILON,
                    },
                    document_start: tok.document_start(),
                }))
            }
            ("self", ScoringModel::Served { .. }) => Err(Error::Config(
                "--debias self needs the model's weights here: a served model returns no whole next-token distribution".into(),
            )),
            (other, _) => Err(Error::Config(format!(
                "--debias: `{other}` is not none or self"
            ))),
        }
    }

    /// The tokenizer that encodes the texts.
    pub fn tokenizer(&self) -> &fairlm_model::Tokenizer {
        match self {
            ScoringModel::Local { checkpoint, .. } => &checkpoint.tokenizer,
            ScoringModel::Served { model, .. } => model.tokenizer(),
        }
    }

    /// What results record of the model.
    pub fn record(&self) -> &ModelRecord {
        match self {
            ScoringModel::Local { record, .. } | ScoringModel::Served { record, .. } => record,
        }
    }
}

/// A thread that gives a served model's request counts to an observer every `EVERY` while
/// anything changes; stopped when dropped.
pub struct RequestReporter {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RequestReporter {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn start(
        url: String,
        stats: Arc<fairlm_model::served::RequestStats>,
        observer: Arc<dyn Observer>,
    ) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut last_tokens = 0;
            let mut last = (0, 0, 0, 0);
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Self::EVERY)
            {
                let now = RequestCounts::read(&stats, &mut last_tokens, Self::EVERY.as_secs_f64());
                let counts = (now.answered, now.cached, now.in_flight, now.retries);
                if counts != last || now.tokens_per_second > 0.0 {
                    observer.requests(&url, &now);
                }
                last = counts;
            }
        });
        RequestReporter {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for RequestReporter {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What results files record about the model: its path, file hash and numeric path.
pub fn model_record(path: &Path, model: &dyn fairlm_model::CausalLm) -> Result<ModelRecord> {
    Ok(ModelRecord {
        path: path.display().to_string(),
        sha256: model_sha256(path)?,
        architecture: model.info().architecture.clone(),
        numeric_path: model.info().numeric_path.clone(),
        served: None,
        debias: None,
    })
}

/// The sha256 of a model file; of a Hugging Face directory, the sha256 of its config.json and
/// weight files' names and hashes (what identifies the model, not the directory's path).
pub fn model_sha256(path: &Path) -> Result<String> {
    if path.is_file() {
        return Ok(fetch::sha256_file(path)?);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::file(path, e))?
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

/// The built-in lexicon, extended by the user's file, restricted to `axes` (all when empty).
pub fn lexicon(extra: Option<&Path>, axes: &[String]) -> Result<fairlm_bias::lexicon::Lexicon> {
    let mut lexicon = fairlm_bias::lexicon::Lexicon::default_lexicon()?;
    if let Some(p) = extra {
        lexicon.extend(fairlm_bias::lexicon::Lexicon::from_file(p)?);
    }
    if !axes.is_empty() {
        lexicon.select(axes)?;
    }
    Ok(lexicon)
}
