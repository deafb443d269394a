//! Typed errors of the model crate. Each variant names the file (and, where it helps, the
//! tensor or key) so that the CLI can print one line that tells the user what to fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },

    #[error("{path}: not a valid GGUF file: {reason}")]
    Gguf { path: PathBuf, reason: String },

    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },

    #[error("{path}: unsupported architecture `{arch}` (fairlm supports {})", crate::loader::ARCHITECTURES.join(", "))]
    UnknownArchitecture { path: PathBuf, arch: String },

    #[error("{path}: tensor `{tensor}` has type {dtype}, which fairlm does not support (supported: {})", crate::loader::GGUF_TYPES.join(", "))]
    UnsupportedTensorType {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },

    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },

    #[error("{path}: tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error("no tokenizer found for {path}: expected tokenizer.json, or vocab.json and merges.txt, beside the weights")]
    TokenizerMissing { path: PathBuf },

    #[error("text {index} has {tokens} tokens, more than the model's context of {context} (split it, or use `fairlm perplexity`, which slides a window)")]
    TooLong {
        index: usize,
        tokens: usize,
        context: usize,
    },

    /// NaN or ±Inf where a log-probability should be: a broken weight or config, never a
    /// figure to report.
    #[error("{}: non-finite log-probabilities (first at text {text}, token {token})", model.display())]
    NonFinite {
        model: PathBuf,
        text: usize,
        token: usize,
    },

    #[error("text {index} is empty: there is no token to score")]
    EmptyText { index: usize },

    #[error("fetching the default model failed: {0}")]
    Fetch(String),

    /// A Hugging Face hub id that the local cache does not hold (or could not be fetched).
    #[error("{id}: {reason}")]
    Hub { id: String, reason: String },

    /// A served model (`--model http://…`) that did not answer what was asked: named by its
    /// URL, never turned into a number.
    #[error("{url}: {reason}")]
    Served { url: String, reason: String },

    #[error("invalid argument: {0}")]
    Invalid(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// candle's message without the backtrace it appends when `RUST_BACKTRACE` is set (the
/// backtrace is not even formatted: resolving its symbols holds tens of megabytes).
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    let mut e = e;
    while let candle_core::Error::WithBacktrace { inner, .. } = e {
        e = inner;
    }
    e.to_string().lines().next().unwrap_or_default().to_string()
}

impl Error {
    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
