//! StereoSet (Nadeem et al. 2021) from the user's file: the intrasentence entries of its JSON,
//! each entry's three sentences scored under both conventions, and ss, lms and icat per bias
//! type, averaged over targets as published.

use std::collections::BTreeMap;
use std::path::Path;

use fairlm_model::backend::Backend;
use fairlm_model::Tokenizer;

use crate::error::Result;
use crate::rows::{data_err, nothing_usable, reject, score_texts, Context, Duplicates, Skipped};

/// One StereoSet intrasentence entry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StereoEntry {
    /// The entry's id.
    pub id: String,
    /// The target group term.
    pub target: String,
    /// Its bias type.
    pub bias_type: String,
    /// The stereotypical sentence.
    pub stereotype: String,
    /// The anti-stereotypical sentence.
    pub anti_stereotype: String,
    /// The unrelated sentence.
    pub unrelated: String,
}

/// Reads the intrasentence part of a StereoSet JSON file.
pub fn read_stereoset(path: &Path, strict: bool) -> Result<(Vec<StereoEntry>, Vec<Skipped>)> {
    let text = crate::error::read_text(path)?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| data_err(path, e.line(), format!("invalid JSON: {e}")))?;
    let entries = doc
        .pointer("/data/intrasentence")
        .and_then(|v| v.as_array())
        .ok_or_else(|| data_err(path, 1, "no `data.intrasentence` list"))?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut dups = Duplicates::new();
    for (i, e) in entries.iter().enumerate() {
        let id = e
            .get("id")
            .and_then(|v| v.as_str())
            .map(String::from)
            .unwrap_or_else(|| format!("#{i}"));
        let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        // JSON entries have no line of their own here: the entry's index stands for it.
        let mut bad = |reason: String| {
            reject(
                path,
                strict,
                &mut skipped,
                i + 1,
                format!("intrasentence entry {id}: {reason}"),
            )
        };
        if !s("context").contains("BLANK") {
            bad("context has no BLANK".into())?;
            continue;
        }
        let mut by_label: BTreeMap<String, String> = BTreeMap::new();
        for sent in e
            .get("sentences")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let label = sent
                .get("gold_label")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let text = sent.get("sentence").and_then(|v| v.as_str()).unwrap_or("");
            by_label.insert(label.to_string(), text.to_string());
        }
        let get = |l: &str| by_label.get(l).filter(|t| !t.trim().is_empty()).cloned();
        match (get("stereotype"), get("anti-stereotype"), get("unrelated")) {
            (Some(st), Some(an), Some(un)) => {
                let key = [st.clone(), an.clone(), un.clone(), s("bias_type")];
                if dups.first(key, path, strict, &mut skipped, i + 1)? {
                    out.push(StereoEntry {
                        id,
                        target: s("target"),
                        bias_type: s("bias_type"),
                        stereotype: st,
                        anti_stereotype: an,
                        unrelated: un,
                    });
                }
            }
            _ => bad(
                "needs one sentence labelled each of stereotype, anti-stereotype, unrelated".into(),
            )?,
        }
    }
    if out.is_empty() {
        return Err(nothing_usable(path, "intrasentence entry", &skipped));
    }
    Ok((out, skipped))
}

/// A StereoSet entry with its three sentences' scores.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StereoRecord {
    /// The entry.
    #[serde(flatten)]
    pub entry: StereoEntry,
    /// [stereotype, anti-stereotype, unrelated] under each convention.
    pub sum: [f64; 3],
    /// The same under the mean convention.
    pub mean: [f64; 3],
}

/// Scores the three sentences of every entry.
pub fn score_stereoset(
    model: &dyn Backend,
    tok: &Tokenizer,
    entries: &[StereoEntry],
    batch: usize,
) -> Result<Vec<StereoRecord>> {
    let texts: Vec<&str> = entries
        .iter()
        .flat_map(|e| {
            [
                e.stereotype.as_str(),
                e.anti_stereotype.as_str(),
                e.unrelated.as_str(),
            ]
        })
        .collect();
    let scores = score_texts(model, tok, &texts, batch, Context::DocumentStart)?;
    Ok(entries
        .iter()
        .zip(scores.chunks(3))
        .map(|(e, s)| StereoRecord {
            entry: e.clone(),
            sum: [s[0].logprob_sum, s[1].logprob_sum, s[2].logprob_sum],
            mean: [s[0].logprob_mean, s[1].logprob_mean, s[2].logprob_mean],
        })
        .collect())
}

/// StereoSet's three scores under one convention.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct StereoScores {
    /// Stereotype score: % preferring the stereotype over the anti-stereotype (ideal 50).
    pub ss: f64,
    /// Language-modelling score: % of meaningful-over-unrelated preferences (ideal 100).
    pub lms: f64,
    /// Idealized CAT score: lms · min(ss, 100 − ss) / 50.
    pub icat: f64,
}

/// One bias type's StereoSet scores (or `overall`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StereoRow {
    /// The bias type.
    pub bias_type: String,
    /// Entries scored.
    pub entries: usize,
    /// Under the sum convention.
    pub sum: StereoScores,
    /// Under the mean convention.
    pub mean: StereoScores,
}

/// ss and lms per target, averaged over targets (Nadeem et al.), then icat.
fn stereo_scores(rs: &[&StereoRecord], pick: impl Fn(&StereoRecord) -> [f64; 3]) -> StereoScores {
    let mut by_target: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
    for r in rs {
        let s = pick(r);
        let e = by_target
            .entry(r.entry.target.as_str())
            .or_insert((0.0, 0.0, 0));
        e.0 += f64::from(u8::from(s[0] > s[1]));
        e.1 += f64::from(u8::from(s[0] > s[2])) + f64::from(u8::from(s[1] > s[2]));
        e.2 += 1;
    }
    let n = by_target.len().max(1) as f64;
    let ss = by_target
        .values()
        .map(|(st, _, c)| 100.0 * st / *c as f64)
        .sum::<f64>()
        / n;
    let lms = by_target
        .values()
        .map(|(_, lm, c)| 100.0 * lm / (2.0 * *c as f64))
        .sum::<f64>()
        / n;
    StereoScores {
        ss,
        lms,
        icat: lms * ss.min(100.0 - ss) / 50.0,
    }
}

/// Scores per bias type, then `overall`.
pub fn stereo_table(records: &[StereoRecord]) -> Vec<StereoRow> {
    let mut groups: BTreeMap<&str, Vec<&StereoRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry(r.entry.bias_type.as_str())
            .or_default()
            .push(r);
    }
    let row = |name: &str, rs: &[&StereoRecord]| StereoRow {
        bias_type: name.into(),
        entries: rs.len(),
        sum: stereo_scores(rs, |r| r.sum),
        mean: stereo_scores(rs, |r| r.mean),
    };
    let mut out: Vec<StereoRow> = groups.iter().map(|(k, v)| row(k, v)).collect();
    let all: Vec<&StereoRecord> = records.iter().collect();
    out.push(row("overall", &all));
    out
}
