//! Typed errors of the bias crate: every data-file error names the file and line.

use std::path::PathBuf;

/// Everything the bias crate can fail with; each message is the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `line` 0: the file as a whole (it cannot be read, or the problem has no line).
    #[error("{}{}: {reason}", path.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
    Data {
        /// The data file.
        path: PathBuf,
        /// The line (1-based; 0: the whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// An argument or combination of settings that cannot run.
    #[error("{0}")]
    Invalid(String),

    /// The caller asked the run to stop between units of work.
    #[error("interrupted")]
    Interrupted,

    /// The model failed (see `fairlm_model::Error`).
    #[error(transparent)]
    Model(#[from] fairlm_model::Error),

    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The bias crate's result.
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
pub fn toml_error(path: &std::path::Path, text: &str, e: toml::de::Error) -> Error {
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

/// A user's text file, whole: a directory, unreadable or non-UTF-8 file is one clear error
/// naming the file; a UTF-8 byte-order mark (spreadsheet exports write one) is dropped.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    let err = |reason: String| Error::Data {
        path: path.to_path_buf(),
        line: 0,
        reason,
    };
    if path.is_dir() {
        return Err(err("is a directory, not a file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
        Error::Data {
            path: path.to_path_buf(),
            line,
            reason: "not valid UTF-8 text".into(),
        }
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}
