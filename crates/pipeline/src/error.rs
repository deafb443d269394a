//! The pipeline's errors by kind — what a caller tells apart (the Python package raises one
//! exception class per kind); every message is the one line the CLI prints.

use std::path::PathBuf;

/// An error of a run, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user's data file is wrong (it names the file and line).
    #[error("{0}")]
    Data(fairlm_bias::error::Error),
    /// The model cannot be opened or computed with (a file, a config, a server's answer).
    #[error(transparent)]
    Model(#[from] fairlm_model::Error),
    /// Settings that cannot run together, or out of their range.
    #[error("{0}")]
    Config(String),
    /// The observer asked the run to stop.
    #[error("interrupted; the checkpoint in the output directory holds the work done (resume with the same settings)")]
    Interrupted,
    /// A file cannot be read or written, or is not what it should be.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<fairlm_bias::error::Error> for Error {
    fn from(e: fairlm_bias::error::Error) -> Self {
        use fairlm_bias::error::Error as B;
        match e {
            B::Model(m) => Error::Model(m),
            B::Interrupted => Error::Interrupted,
            B::Invalid(why) => Error::Config(why),
            other => Error::Data(other),
        }
    }
}

impl From<fairlm_train::Error> for Error {
    fn from(e: fairlm_train::Error) -> Self {
        use fairlm_train::Error as T;
        match e {
            T::Data { path, line, reason } => {
                Error::Data(fairlm_bias::error::Error::Data { path, line, reason })
            }
            T::File { path, reason } => Error::File { path, reason },
            T::Invalid(why) => Error::Config(why),
            T::Interrupted => Error::Interrupted,
            T::Model(m) => Error::Model(m),
            T::Bias(b) => b.into(),
            T::Candle(c) => Error::Model(fairlm_model::Error::from(c)),
        }
    }
}

impl Error {
    pub(crate) fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// A run's result.
pub type Result<T> = std::result::Result<T, Error>;
