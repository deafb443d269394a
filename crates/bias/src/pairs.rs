//! Pair benchmarks from the user's files in their public formats: CrowS-Pairs (CSV),
//! StereoSet (JSON, intrasentence; read and scored by `stereoset`) and fairlm's own JSONL
//! pairs. Every sentence is scored
//! under both conventions (`sum`: total log-probability after the context token; `mean`:
//! mean token log-probability); ties count as not stereotyped. Malformed rows are skipped and
//! counted (each with its line), or fail the run with `strict`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fairlm_model::backend::Backend;
use fairlm_model::Tokenizer;

use crate::error::{Error, Result};
use crate::rows::{
    csv_rows, data_err, nothing_usable, reject, score_texts, Context, Duplicates, Skipped,
};
use crate::stereoset::{
    read_stereoset, score_stereoset, stereo_table, StereoEntry, StereoRecord, StereoRow,
};

/// CrowS-Pairs' nine bias types.
pub const CROWS_BIAS_TYPES: [&str; 9] = [
    "race-color",
    "gender",
    "socioeconomic",
    "nationality",
    "religion",
    "age",
    "sexual-orientation",
    "physical-appearance",
    "disability",
];

/// One pair of a pair benchmark (CrowS-Pairs CSV or fairlm's JSONL).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    /// The row's line in its file.
    pub line: usize,
    /// Its bias type.
    pub bias_type: String,
    /// The more stereotyping sentence (CrowS `sent_more`).
    pub more: String,
    /// The less stereotyping sentence (CrowS `sent_less`).
    pub less: String,
    /// `stereo` or `antistereo` (CrowS); `stereo` for the JSONL format.
    pub direction: String,
}

/// Reads a CrowS-Pairs CSV (header with `sent_more, sent_less, stereo_antistereo, bias_type`).
pub fn read_crows(path: &Path, strict: bool) -> Result<(Vec<Pair>, Vec<Skipped>)> {
    let mut skipped = Vec::new();
    let (cols, rows) = csv_rows(
        path,
        strict,
        &["sent_more", "sent_less", "stereo_antistereo", "bias_type"],
        &mut skipped,
    )?;
    let (more, less, dir, bt) = (cols[0], cols[1], cols[2], cols[3]);
    let mut pairs = Vec::new();
    let mut dups = Duplicates::new();
    for (line, rec) in rows {
        let (m, l, d, b) = (
            rec[more].trim(),
            rec[less].trim(),
            rec[dir].trim(),
            rec[bt].trim(),
        );
        if m.is_empty() || l.is_empty() {
            reject(path, strict, &mut skipped, line, "empty sentence".into())?;
            continue;
        }
        if d != "stereo" && d != "antistereo" {
            reject(
                path,
                strict,
                &mut skipped,
                line,
                format!("stereo_antistereo is `{d}`, expected stereo or antistereo"),
            )?;
            continue;
        }
        if !CROWS_BIAS_TYPES.contains(&b) {
            reject(
                path,
                strict,
                &mut skipped,
                line,
                format!(
                    "unknown bias type `{b}` (known: {})",
                    CROWS_BIAS_TYPES.join(", ")
                ),
            )?;
            continue;
        }
        let key = [m, l, d, b].map(String::from);
        if !dups.first(key, path, strict, &mut skipped, line)? {
            continue;
        }
        pairs.push(Pair {
            line,
            bias_type: b.into(),
            more: m.into(),
            less: l.into(),
            direction: d.into(),
        });
    }
    if pairs.is_empty() {
        return Err(nothing_usable(path, "pair", &skipped));
    }
    // Unreadable rows were set aside first: list every skip in file order.
    skipped.sort_by_key(|s| s.line);
    Ok((pairs, skipped))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlPair {
    stereo: String,
    anti: String,
    bias_type: String,
}

/// Reads fairlm's JSONL pairs: `{"stereo": ..., "anti": ..., "bias_type": ...}` per line.
pub fn read_pairs_jsonl(path: &Path, strict: bool) -> Result<(Vec<Pair>, Vec<Skipped>)> {
    let text = crate::error::read_text(path)?;
    let mut pairs = Vec::new();
    let mut skipped = Vec::new();
    let mut dups = Duplicates::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        // serde reads a struct from an array too ("[stereo, anti, type]"): not this format.
        let parsed = serde_json::from_str::<serde_json::Value>(raw).and_then(|v| {
            if v.is_object() {
                serde_json::from_value::<JsonlPair>(v)
            } else {
                Err(serde::de::Error::custom("expected a JSON object"))
            }
        });
        match parsed {
            Ok(p) if !p.stereo.trim().is_empty() && !p.anti.trim().is_empty() => {
                let key = [p.stereo.clone(), p.anti.clone(), p.bias_type.clone()];
                if dups.first(key, path, strict, &mut skipped, i + 1)? {
                    pairs.push(Pair {
                        line: i + 1,
                        bias_type: p.bias_type,
                        more: p.stereo,
                        less: p.anti,
                        direction: "stereo".into(),
                    });
                }
            }
            Ok(_) => reject(path, strict, &mut skipped, i + 1, "empty sentence".into())?,
            Err(e) => reject(
                path,
                strict,
                &mut skipped,
                i + 1,
                format!("not a pair object: {e}"),
            )?,
        }
    }
    if pairs.is_empty() {
        return Err(nothing_usable(path, "pair", &skipped));
    }
    Ok((pairs, skipped))
}

/// A pair with both sentences' scores.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PairRecord {
    /// The pair.
    #[serde(flatten)]
    pub pair: Pair,
    /// Total log-prob of the more stereotyping sentence.
    pub more_sum: f64,
    /// Total log-prob of the less stereotyping sentence.
    pub less_sum: f64,
    /// Mean token log-prob of the more stereotyping sentence.
    pub more_mean: f64,
    /// Mean token log-prob of the less stereotyping sentence.
    pub less_mean: f64,
    /// The model prefers the more stereotyping sentence (strictly).
    pub stereotyped_sum: bool,
    /// The same under the mean convention.
    pub stereotyped_mean: bool,
}

/// Scores both sentences of every pair, each after `context`.
pub fn score_pairs(
    model: &dyn Backend,
    tok: &Tokenizer,
    pairs: &[Pair],
    batch: usize,
    context: Context,
) -> Result<Vec<PairRecord>> {
    let texts: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.more.as_str(), p.less.as_str()])
        .collect();
    let scores = score_texts(model, tok, &texts, batch, context)?;
    Ok(pairs
        .iter()
        .zip(scores.chunks(2))
        .map(|(p, s)| PairRecord {
            pair: p.clone(),
            more_sum: s[0].logprob_sum,
            less_sum: s[1].logprob_sum,
            more_mean: s[0].logprob_mean,
            less_mean: s[1].logprob_mean,
            stereotyped_sum: s[0].logprob_sum > s[1].logprob_sum,
            stereotyped_mean: s[0].logprob_mean > s[1].logprob_mean,
        })
        .collect())
}

/// One bias type's figures (or `overall`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PairRow {
    /// The bias type.
    pub bias_type: String,
    /// Pairs scored.
    pub pairs: usize,
    /// % of pairs where the model prefers the more stereotyping sentence (ideal 50).
    pub pct_stereotype_sum: f64,
    /// The same under the mean convention.
    pub pct_stereotype_mean: f64,
    /// |pct − 50| / 50 (sum convention).
    pub bias_sum: f64,
}

/// Per bias type (sorted) and `overall` last.
pub fn pair_table(records: &[PairRecord]) -> Vec<PairRow> {
    let mut groups: BTreeMap<&str, Vec<&PairRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(r.pair.bias_type.as_str()).or_default().push(r);
    }
    let row = |name: &str, rs: &[&PairRecord]| {
        let n = rs.len().max(1) as f64;
        let sum = 100.0 * rs.iter().filter(|r| r.stereotyped_sum).count() as f64 / n;
        let mean = 100.0 * rs.iter().filter(|r| r.stereotyped_mean).count() as f64 / n;
        PairRow {
            bias_type: name.into(),
            pairs: rs.len(),
            pct_stereotype_sum: sum,
            pct_stereotype_mean: mean,
            bias_sum: (sum - 50.0).abs() / 50.0,
        }
    };
    let mut out: Vec<PairRow> = groups.iter().map(|(k, v)| row(k, v)).collect();
    let all: Vec<&PairRecord> = records.iter().collect();
    out.push(row("overall", &all));
    out
}

/// What `fairlm bench` saves.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchResults {
    /// Version of this file's layout.
    pub schema_version: u32,
    /// `crows`, `stereoset`, `pairs`, `winoqueer`, `redditbias` or `winobias`.
    pub benchmark: String,
    /// The benchmark file read.
    pub file: PathBuf,
    /// The model scored.
    pub model: crate::record::ModelRecord,
    /// Malformed rows, skipped and counted.
    pub skipped: Vec<Skipped>,
    /// Per bias type (pair benchmarks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pair_table: Option<Vec<PairRow>>,
    /// Per bias type (StereoSet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stereoset_table: Option<Vec<StereoRow>>,
    /// Every pair with its scores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<Vec<PairRecord>>,
    /// Every StereoSet entry with its scores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<StereoRecord>>,
    /// RedditBias's perplexity t-test per demographic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_tests: Option<Vec<crate::pair_files::PerplexityTTest>>,
}

/// A benchmark file's rows, read and checked before any model is loaded.
pub enum BenchInput {
    /// Pairs (CrowS-Pairs CSV or JSONL).
    Pairs(Vec<Pair>),
    /// StereoSet entries.
    Stereo(Vec<StereoEntry>),
}

impl BenchInput {
    /// Drops the rows with a sentence longer than the model's context (after the document
    /// token), or with no token to score after `scored_after`, as malformed rows: listed with
    /// their line, or refused with `strict`. One over-long row must not abort the rest of a
    /// benchmark.
    pub fn drop_overlong(
        self,
        tok: &Tokenizer,
        context: usize,
        scored_after: Context,
        path: &Path,
        strict: bool,
    ) -> Result<(BenchInput, Vec<Skipped>)> {
        let start = match scored_after {
            Context::DocumentStart => usize::from(tok.document_start().is_some()),
            Context::FirstToken => 0,
        };
        let mut skipped = Vec::new();
        let mut too_long = |texts: &[&str], line: usize| -> Result<bool> {
            for t in texts {
                let n = start + tok.encode(t)?.len();
                if n < 2 {
                    let reason = format!("a sentence of {n} token: none to score after the first");
                    reject(path, strict, &mut skipped, line, reason)?;
                    return Ok(true);
                }
                if n > context {
                    reject(
                        path,
                        strict,
                        &mut skipped,
                        line,
                        format!(
                            "a sentence of {n} tokens, more than the model's context of {context}"
                        ),
                    )?;
                    return Ok(true);
                }
            }
            Ok(false)
        };
        let kept = match self {
            BenchInput::Pairs(ps) => {
                let mut keep = Vec::with_capacity(ps.len());
                for p in ps {
                    if !too_long(&[&p.more, &p.less], p.line)? {
                        keep.push(p);
                    }
                }
                BenchInput::Pairs(keep)
            }
            BenchInput::Stereo(es) => {
                let mut keep = Vec::with_capacity(es.len());
                for (i, e) in es.into_iter().enumerate() {
                    let texts = [&*e.stereotype, &*e.anti_stereotype, &*e.unrelated];
                    if !too_long(&texts, i + 1)? {
                        keep.push(e);
                    }
                }
                BenchInput::Stereo(keep)
            }
        };
        let empty = match &kept {
            BenchInput::Pairs(p) => p.is_empty(),
            BenchInput::Stereo(e) => e.is_empty(),
        };
        if empty {
            return Err(data_err(
                path,
                0,
                "every row is longer than the model's context",
            ));
        }
        Ok((kept, skipped))
    }
}

/// What each benchmark's sentences are scored after: RedditBias's phrases after their own
/// first token (its published perplexity), the others after the document start.
pub fn scored_after(kind: &str) -> Context {
    match kind {
        "redditbias" => Context::FirstToken,
        _ => Context::DocumentStart,
    }
}

/// Reads a `crows`, `stereoset`, `pairs`, `winoqueer`, `redditbias` or `winobias` file (or
/// directory).
pub fn read_benchmark(kind: &str, file: &Path, strict: bool) -> Result<(BenchInput, Vec<Skipped>)> {
    let pairs = |(p, s)| (BenchInput::Pairs(p), s);
    Ok(match kind {
        "winoqueer" => pairs(crate::pair_files::read_winoqueer(file, strict)?),
        "redditbias" => pairs(crate::pair_files::read_redditbias(file, strict)?),
        "winobias" => pairs(crate::pair_files::read_winobias(file, strict)?),
        "crows" => {
            let (p, s) = read_crows(file, strict)?;
            (BenchInput::Pairs(p), s)
        }
        "pairs" => {
            let (p, s) = read_pairs_jsonl(file, strict)?;
            (BenchInput::Pairs(p), s)
        }
        "stereoset" => {
            let (e, s) = read_stereoset(file, strict)?;
            (BenchInput::Stereo(e), s)
        }
        other => return Err(Error::Invalid(format!("unknown benchmark `{other}`"))),
    })
}

/// Scores a benchmark read by `read_benchmark` and tabulates it.
#[allow(clippy::too_many_arguments)]
pub fn run_benchmark(
    kind: &str,
    file: &Path,
    input: &BenchInput,
    skipped: Vec<Skipped>,
    model: &dyn Backend,
    tok: &Tokenizer,
    record: crate::record::ModelRecord,
    batch: usize,
) -> Result<BenchResults> {
    let mut results = BenchResults {
        schema_version: 1,
        benchmark: kind.into(),
        file: file.to_path_buf(),
        model: record,
        skipped,
        pair_table: None,
        stereoset_table: None,
        pairs: None,
        entries: None,
        t_tests: None,
    };
    match input {
        BenchInput::Pairs(p) => {
            let recs = score_pairs(model, tok, p, batch, scored_after(kind))?;
            results.pair_table = Some(pair_table(&recs));
            if kind == "redditbias" {
                results.t_tests = Some(crate::pair_files::redditbias_t_tests(&recs));
            }
            results.pairs = Some(recs);
        }
        BenchInput::Stereo(e) => {
            let recs = score_stereoset(model, tok, e, batch)?;
            results.stereoset_table = Some(stereo_table(&recs));
            results.entries = Some(recs);
        }
    }
    Ok(results)
}

/// The benchmark's table in Markdown (both conventions).
pub fn markdown(r: &BenchResults) -> String {
    let mut s = String::new();
    if let Some(table) = &r.pair_table {
        s += "| bias type | pairs | pct_stereotype (sum) | pct_stereotype (mean) |\n|---|---|---|---|\n";
        for row in table {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} |\n",
                row.bias_type, row.pairs, row.pct_stereotype_sum, row.pct_stereotype_mean
            );
        }
    }
    if let Some(tests) = &r.t_tests {
        s += "\n| demographic | pairs | perplexity (target) | perplexity (counter target) | paired t | p |\n|---|---|---|---|---|---|\n";
        for t in tests {
            let (tv, p) = match t.t_test {
                Some((tv, p)) => (format!("{tv:.3}"), format!("{p:.3}")),
                None => ("no data".into(), "no data".into()),
            };
            s += &format!(
                "| {} | {} | {:.2} | {:.2} | {tv} | {p} |\n",
                t.bias_type, t.pairs, t.perplexity_target, t.perplexity_counter
            );
        }
    }
    if let Some(table) = &r.stereoset_table {
        s += "| bias type | entries | ss (sum) | lms (sum) | icat (sum) | ss (mean) | lms (mean) | icat (mean) |\n|---|---|---|---|---|---|---|---|\n";
        for row in table {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                row.bias_type,
                row.entries,
                row.sum.ss,
                row.sum.lms,
                row.sum.icat,
                row.mean.ss,
                row.mean.lms,
                row.mean.icat
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("fairlm-pairs-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    const HEADER: &str = ",sent_more,sent_less,stereo_antistereo,bias_type\n";

    #[test]
    fn crows_quoting_with_commas_and_quotes() {
        let p = write(
            "q.csv",
            &format!("{HEADER}0,\"A, \"\"quoted\"\" one.\",B,stereo,gender\n"),
        );
        let (pairs, skipped) = read_crows(&p, true).unwrap();
        assert_eq!(pairs[0].more, "A, \"quoted\" one.");
        assert!(skipped.is_empty());
    }

    #[test]
    fn crows_malformed_row_is_skipped_with_its_line_or_fails_strict() {
        let p = write(
            "m.csv",
            &format!("{HEADER}0,A,B,stereo,gender\n1,only,three\n2,C,D,stereo,age\n"),
        );
        let (pairs, skipped) = read_crows(&p, false).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(skipped[0].line, 3);
        let e = read_crows(&p, true).unwrap_err().to_string();
        assert!(e.contains("m.csv:3:") && e.contains("3 fields"), "{e}");
    }

    #[test]
    fn crows_unknown_bias_type_names_it() {
        let p = write("u.csv", &format!("{HEADER}0,A,B,stereo,height\n"));
        let e = read_crows(&p, true).unwrap_err().to_string();
        assert!(
            e.contains(":2:") && e.contains("unknown bias type `height`"),
            "{e}"
        );
    }

    #[test]
    fn crows_empty_file_is_an_error() {
        let p = write("e.csv", "");
        assert!(read_crows(&p, false).is_err());
        let p = write("h.csv", HEADER);
        let e = read_crows(&p, false).unwrap_err().to_string();
        assert!(e.contains("no usable pair"), "{e}");
    }

    #[test]
    fn stereoset_entry_without_blank_or_label_is_refused() {
        let doc = r#"{"data": {"intrasentence": [
            {"id": "x1", "target": "t", "bias_type": "b", "context": "No blank here.", "sentences": []},
            {"id": "x2", "target": "t", "bias_type": "b", "context": "A BLANK.", "sentences": [
                {"sentence": "A b.", "gold_label": "stereotype"}, {"sentence": "A c.", "gold_label": "anti-stereotype"}]}
        ]}}"#;
        let p = write("s.json", doc);
        let e = read_stereoset(&p, true).unwrap_err().to_string();
        assert!(e.contains("x1") && e.contains("BLANK"), "{e}");
        let e = read_stereoset(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("no usable intrasentence entry (2 skipped; first: line 1:"),
            "{e}"
        );
    }

    #[test]
    fn stereo_scores_follow_the_definitions() {
        let rec = |target: &str, s: [f64; 3]| StereoRecord {
            entry: StereoEntry {
                id: "i".into(),
                target: target.into(),
                bias_type: "b".into(),
                stereotype: "s".into(),
                anti_stereotype: "a".into(),
                unrelated: "u".into(),
            },
            sum: s,
            mean: s,
        };
        // Target t1: stereo wins, both beat unrelated. Target t2: anti wins, only anti beats unrelated.
        let rs = [rec("t1", [-1.0, -2.0, -3.0]), rec("t2", [-5.0, -1.0, -2.0])];
        let row = stereo_table(&rs).pop().unwrap();
        assert_eq!(row.sum.ss, 50.0);
        assert_eq!(row.sum.lms, 75.0);
        assert_eq!(row.sum.icat, 75.0);
    }
}
