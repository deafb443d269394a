//! Typed errors of the bias crate: every data-file error names the file and line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}:{line}: {reason}")]
    Data {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{0}")]
    Invalid(String),

    #[error(transparent)]
    Model(#[from] fairlm_model::Error),

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// A TOML parse error as a one-line data error.
pub(crate) fn toml_error(path: &std::path::Path, text: &str, e: toml::de::Error) -> Error {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
    let reason = e
        .message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .to_string();
    Error::Data {
        path: path.to_path_buf(),
        line,
        reason,
    }
}
