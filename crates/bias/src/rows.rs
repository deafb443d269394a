//! A benchmark file's rows: the policy for a malformed or repeated row (skipped and counted,
//! or refused with `strict`), the error of a file with no usable row, and the scoring of the
//! rows' texts under both conventions. A bottom-level module that every benchmark reader uses.

use std::path::Path;

use fairlm_model::backend::Backend;
use fairlm_model::score::{ScoreItem, TextScore};
use fairlm_model::Tokenizer;

use crate::error::{Error, Result};

/// A malformed row, skipped and counted (refused with `--strict`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    /// Its line.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
    /// The row repeats an earlier one (dropped, so that it is not counted twice).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

pub(crate) fn data_err(path: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// The error of a file in which no row could be used: how many were skipped, and why the
/// first was (a BOM or a wrong delimiter makes every row fail the same way).
pub(crate) fn nothing_usable(path: &Path, what: &str, skipped: &[Skipped]) -> Error {
    let why = skipped
        .first()
        .map(|s| format!("; first: line {}: {}", s.line, s.reason))
        .unwrap_or_default();
    data_err(
        path,
        0,
        format!("no usable {what} ({} skipped{why})", skipped.len()),
    )
}

/// Collects a malformed row: an error with `strict`, otherwise a skip.
pub(crate) fn reject(
    path: &Path,
    strict: bool,
    skipped: &mut Vec<Skipped>,
    line: usize,
    reason: String,
) -> Result<()> {
    skip(path, strict, skipped, line, reason, false)
}

/// A row left out (malformed, or a `duplicate`): an error naming its line with `strict`,
/// otherwise listed.
fn skip(
    path: &Path,
    strict: bool,
    skipped: &mut Vec<Skipped>,
    line: usize,
    reason: String,
    duplicate: bool,
) -> Result<()> {
    if strict {
        return Err(data_err(path, line, reason));
    }
    skipped.push(Skipped {
        line,
        reason,
        duplicate,
    });
    Ok(())
}

/// Remembers the rows seen; a row equal to an earlier one is refused with `strict` and
/// otherwise dropped and listed (a benchmark that counts a pair twice weighs it twice).
pub(crate) struct Duplicates<K> {
    seen: std::collections::HashMap<K, usize>,
}

impl<K: std::hash::Hash + Eq> Duplicates<K> {
    pub(crate) fn new() -> Self {
        Duplicates {
            seen: std::collections::HashMap::new(),
        }
    }

    /// Ok(true): first time seen, keep it; Ok(false): a duplicate, dropped and listed.
    pub(crate) fn first(
        &mut self,
        key: K,
        path: &Path,
        strict: bool,
        skipped: &mut Vec<Skipped>,
        line: usize,
    ) -> Result<bool> {
        match self.seen.get(&key) {
            None => {
                self.seen.insert(key, line);
                Ok(true)
            }
            Some(&earlier) => {
                let reason = format!("duplicate of line {earlier}");
                skip(path, strict, skipped, line, reason, true)?;
                Ok(false)
            }
        }
    }
}

/// Both conventions' scores of each text, in order.
pub fn score_texts(
    model: &dyn Backend,
    tok: &Tokenizer,
    texts: &[&str],
    batch: usize,
) -> Result<Vec<TextScore>> {
    let ctx: Vec<u32> = tok.document_start().into_iter().collect();
    let items = texts
        .iter()
        .map(|t| Ok(ScoreItem::after_context(&ctx, &tok.encode(t)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(model
        .score(&items, batch, &mut |_| {})?
        .into_iter()
        .map(TextScore::from_logprobs)
        .collect())
}
