//! Typed errors of the training crate; data errors name the file and line.

use std::path::PathBuf;

/// Everything training can fail with; each message is the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file (corpus, checkpoint state) with a bad row.
    #[error("{path}:{line}: {reason}")]
    Data {
        /// The file.
        path: PathBuf,
        /// The line (1-based; 0: the whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// A file that could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Settings that cannot train.
    #[error("{0}")]
    Invalid(String),

    /// The caller asked training to stop; the checkpoint holds the last step.
    #[error("interrupted; the checkpoint holds the steps done (resume with the same settings)")]
    Interrupted,

    /// The model failed (see `fairlm_model::Error`).
    #[error(transparent)]
    Model(#[from] fairlm_model::Error),

    /// Building the corpus or its swaps failed (see `fairlm_bias::Error`).
    #[error(transparent)]
    Bias(#[from] fairlm_bias::Error),

    /// A tensor operation failed.
    #[error("tensor engine: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// A `File` error.
    pub fn file(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// The train crate's result.
pub type Result<T> = std::result::Result<T, Error>;
