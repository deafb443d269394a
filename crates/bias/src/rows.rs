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

/// What a benchmark's sentence is scored after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// The model's document-start token (CrowS-Pairs and StereoSet as fairlm reads them):
    /// every token of the sentence is scored.
    DocumentStart,
    /// The sentence's own first token (RedditBias's perplexity: the text alone is given to the
    /// model, and its first token is not scored).
    FirstToken,
}

/// The positions of the named columns, and each well-formed row with its line.
pub(crate) type CsvRows = (Vec<usize>, Vec<(usize, csv::StringRecord)>);

/// The CSV rows of a benchmark file with the named columns: the columns' positions and each
/// well-formed row with its line. Rows the reader cannot parse, or with another number of
/// fields than the header, are rejected (skipped and counted, or an error with `strict`).
pub(crate) fn csv_rows(
    path: &Path,
    strict: bool,
    columns: &[&str],
    skipped: &mut Vec<Skipped>,
) -> Result<CsvRows> {
    // The csv reader's line numbers run one short on CRLF files: read them as LF.
    let text = crate::error::read_text(path)?.replace("\r\n", "\n");
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| data_err(path, 1, e.to_string()))?
        .clone();
    let cols = columns
        .iter()
        .map(|name| {
            headers
                .iter()
                .position(|h| h.trim().trim_start_matches('\u{feff}') == *name)
                .ok_or_else(|| data_err(path, 1, format!("missing column `{name}` in the header")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                reject(path, strict, skipped, line, format!("unreadable row: {e}"))?;
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        if rec.len() != headers.len() {
            reject(
                path,
                strict,
                skipped,
                line,
                format!("{} fields, the header has {}", rec.len(), headers.len()),
            )?;
            continue;
        }
        rows.push((line, rec));
    }
    Ok((cols, rows))
}

/// Both conventions' scores of each text, in order, each scored after `context`.
pub fn score_texts(
    model: &dyn Backend,
    tok: &Tokenizer,
    texts: &[&str],
    batch: usize,
    context: Context,
) -> Result<Vec<TextScore>> {
    let ctx: Vec<u32> = match context {
        Context::DocumentStart => tok.document_start().into_iter().collect(),
        Context::FirstToken => Vec::new(),
    };
    // After an empty context the first token is the context (ScoreItem scores from 1).
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
