//! Typed errors of the training crate; data errors name the file and line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}:{line}: {reason}")]
    Data {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },

    #[error("{0}")]
    Invalid(String),

    /// The caller asked training to stop; the checkpoint holds the last step.
    #[error("interrupted; the checkpoint holds the steps done (resume with the same settings)")]
    Interrupted,

    #[error(transparent)]
    Model(#[from] fairlm_model::Error),

    #[error(transparent)]
    Bias(#[from] fairlm_bias::Error),

    #[error("tensor engine: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub fn file(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
