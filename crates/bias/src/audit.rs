//! `fairlm audit`: the probe on the `eval` templates, probe metrics with CIs, and held-out
//! perplexity with a block-bootstrap CI, saved as a versioned `results.json` (config, model
//! hash, seed, metrics, every sample) and a `summary.md`. Outputs are written atomically.
//!
//! Over 600 lines because results.json is one format: its types, the run by shards with its
//! checkpoint and resume, the merge of shards and summary.md change together.

use std::collections::BTreeMap;
use std::path::Path;

use fairlm_model::backend::Backend;
use fairlm_model::{Progress, Tokenizer};

use crate::detectors::{self, Attributes, Detectors};
use crate::error::{Error, Result};
use crate::lexicon::Lexicon;
use crate::metrics::{self, ProbeMetrics};
use crate::probe::{self, ProbeConfig, SampleRecord, TemplateRecords};
pub use crate::record::{ModelRecord, ServedRecord};
use crate::shard::Shard;
use crate::stats::{bootstrap, Estimate};
use crate::templates::{Split, Template};

/// Version of results.json's layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The held-out English text written for this project (never a template, never trained on).
pub const HELDOUT: &str = include_str!("../../../data/heldout.txt");

/// What an audit runs: the probe's settings, the axes and templates, the bootstrap.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditConfig {
    /// The counterfactual generation probe's settings.
    pub probe: ProbeConfig,
    /// Axes audited (empty: all of the lexicon's).
    pub axes: Vec<String>,
    /// Templates used: `eval` ids only, unless limited by a profile.
    pub max_templates: Option<usize>,
    /// Bootstrap resamples of every CI.
    pub bootstrap_resamples: usize,
    /// The profile the settings came from (`default` or `quick`).
    pub profile: String,
    /// A user's text for a second perplexity (`--text FILE`).
    pub text: Option<std::path::PathBuf>,
}

/// A perplexity on a held-out text, with its CI over 64-token blocks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Perplexity {
    /// Which text (`heldout`, or the user's file).
    pub text: String,
    /// Tokens scored.
    pub tokens: usize,
    /// The perplexity and its CI.
    pub perplexity: Estimate,
    /// Mean negative log-likelihood of each 64-token block, for paired comparisons.
    #[serde(default)]
    pub block_nll: Vec<f64>,
}

/// An audit's results.json: every figure with its CI, the settings and model it came from, and the records it was computed from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditResults {
    /// Version of this file's layout.
    pub schema_version: u32,
    /// The fairlm version that wrote it.
    pub fairlm_version: String,
    /// The audit's settings.
    pub config: AuditConfig,
    /// The model audited.
    pub model: ModelRecord,
    /// The seed every sample and resample derives from.
    pub seed: u64,
    /// The templates probed.
    pub templates: Vec<Template>,
    /// The probe's bias score, divergence and fluency, overall and per axis.
    pub probe: ProbeMetrics,
    /// The text detectors (sentiment gap, association) on the probe's samples.
    pub detectors: Detectors,
    /// Perplexity on the held-out text.
    pub perplexity: Perplexity,
    /// Perplexity on the user's text (`--text`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_perplexity: Option<Perplexity>,
    /// Every sample with its counterfactual scores.
    pub records: Vec<SampleRecord>,
    /// CrowS-Pairs / StereoSet / JSONL pair benchmarks run with the audit (`--crows`,
    /// `--stereoset`), with their per-pair records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub benchmarks: Vec<crate::pairs::BenchResults>,
    /// The grammar check of the probe's counterfactual twins (absent in audits written
    /// before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin_grammar: Option<crate::grammar::GrammarReport>,
    /// The front end's whole settings of the run (fairlm-pipeline's `AuditConfig`), kept so
    /// that `fairlm audit --config results.json` runs it again; opaque to this crate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_config: Option<serde_json::Value>,
}

impl AuditResults {
    /// Reads an audit's results.json.
    pub fn read(path: &Path) -> Result<Self> {
        let data_err = |line: usize, reason: String| Error::Data {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let text = crate::error::read_text(path)?;
        let results: AuditResults = serde_json::from_str(&text)
            .map_err(|e| data_err(e.line(), format!("not an audit results.json: {e}")))?;
        results.check().map_err(|reason| data_err(0, reason))?;
        Ok(results)
    }

    /// What a results file must satisfy before its figures are used: a schema this build
    /// reads, probe records, finite log-probabilities, every Δ equal to the log-probs stored
    /// beside it, and the headline bias score equal to the one its records give (an edited or
    /// foreign file is refused, never compared).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.schema_version == 0 || self.schema_version > SCHEMA_VERSION {
            return Err(format!(
                "schema_version {} is not one this fairlm reads (1..={SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        if self.records.is_empty() {
            return Err("no probe records: nothing to compare".into());
        }
        let tau = self.probe.tau;
        if !(tau.is_finite() && tau > 0.0) {
            return Err(format!("probe.tau {tau} is not a positive number"));
        }
        for (i, r) in self.records.iter().enumerate() {
            if !r.logprob.is_finite() {
                return Err(format!("records[{i}].logprob is not finite"));
            }
            if r.counterfactuals.is_empty() {
                return Err(format!("records[{i}] has no counterfactual"));
            }
            for (j, c) in r.counterfactuals.iter().enumerate() {
                let expected = r.logprob - c.logprob;
                if !c.logprob.is_finite()
                    || (c.delta - expected).abs() > 1e-9 * expected.abs().max(1.0)
                    || c.flagged != (c.delta >= tau)
                {
                    return Err(format!(
                        "records[{i}].counterfactuals[{j}]: delta {} / flagged {} disagree with the stored log-probs ({} - {} = {expected})",
                        c.delta, c.flagged, r.logprob, c.logprob
                    ));
                }
            }
        }
        let recomputed = metrics::compute(&self.records, tau, 1, self.seed)
            .bias_score
            .value;
        if (recomputed - self.probe.bias_score.value).abs() > 1e-9 {
            return Err(format!(
                "probe.bias_score {} disagrees with its records ({recomputed})",
                self.probe.bias_score.value
            ));
        }
        let ppl = &self.perplexity;
        if !ppl.perplexity.value.is_finite() || ppl.block_nll.iter().any(|x| !x.is_finite()) {
            return Err("perplexity is not finite".into());
        }
        Ok(())
    }
}

/// Perplexity with a CI from resampling 64-token blocks of per-token log-probabilities.
pub fn perplexity(
    model: &dyn Backend,
    tok: &Tokenizer,
    name: &str,
    text: &str,
    resamples: usize,
    seed: u64,
) -> Result<Perplexity> {
    let ids = tok.encode(text)?;
    let (_, lps) = fairlm_model::perplexity::perplexity(model, &ids, None)?;
    let blocks: Vec<Vec<f64>> = lps
        .chunks(64)
        .map(|c| c.iter().map(|x| -x).collect())
        .collect();
    let nll = bootstrap(&blocks, crate::stats::pooled_mean, resamples, seed);
    Ok(Perplexity {
        text: name.to_string(),
        tokens: ids.len(),
        perplexity: Estimate {
            value: nll.value.exp(),
            ci_low: nll.ci_low.exp(),
            ci_high: nll.ci_high.exp(),
        },
        block_nll: blocks
            .iter()
            .map(|b| b.iter().sum::<f64>() / b.len() as f64)
            .collect(),
    })
}

/// What one shard of an audit computes (`Shard::WHOLE`: all of it): the probe records of the
/// units it owns, the perplexities and pair benchmarks it owns, and what a merge needs to check
/// that parts belong together (config, model, lexicon, templates) and to finish the audit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditPart {
    /// Version of this file's layout.
    pub schema_version: u32,
    /// The fairlm version that wrote it.
    pub fairlm_version: String,
    /// Which part of the audit this is.
    pub shard: Shard,
    /// The audit's settings (the same in every part).
    pub config: AuditConfig,
    /// The model (the same in every part).
    pub model: ModelRecord,
    /// The lexicon the swaps used (the same in every part).
    pub lexicon: Lexicon,
    /// The templates (the same in every part).
    pub templates: Vec<Template>,
    /// The probe records of the units this part owns.
    pub records: Vec<SampleRecord>,
    /// Held-out perplexity, in the part that owns it.
    pub perplexity: Option<Perplexity>,
    /// The user's text's perplexity, in the part that owns it.
    pub text_perplexity: Option<Perplexity>,
    /// Every pair benchmark file of the audit, in order (the same in every shard).
    pub benchmark_files: Vec<std::path::PathBuf>,
    /// The pair benchmarks of `benchmark_files` this shard owns (`Shard::owns_benchmark`).
    pub benchmarks: Vec<crate::pairs::BenchResults>,
    /// Wall seconds of each stage; not part of the results (a rerun gives other times).
    pub timings_s: BTreeMap<String, f64>,
    /// The front end's settings of the run (see `AuditResults::run_config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_config: Option<serde_json::Value>,
}

/// Where an audit keeps the templates it has probed, and whether a run continues from it.
pub struct Checkpoint<'a> {
    /// The checkpoint file.
    pub path: &'a Path,
    /// Continue from the templates the file holds (it must be this audit's); else start
    /// afresh, overwriting it.
    pub resume: bool,
}

/// What a checkpoint file holds: the audit it belongs to and the templates probed so far.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProbeCheckpoint {
    audit: AuditPart,
    /// Template position → each axis's records.
    templates: BTreeMap<usize, TemplateRecords>,
}

/// The templates a checkpoint holds, if it belongs to the audit `this` describes (every field
/// but the records); a file from another audit is refused with the field that differs.
fn read_checkpoint(
    path: &Path,
    this: &AuditPart,
) -> Result<BTreeMap<usize, Vec<Vec<SampleRecord>>>> {
    let data_err = |line: usize, reason: String| Error::Data {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(data_err(0, format!("cannot read: {e}"))),
    };
    let saved: ProbeCheckpoint = serde_json::from_str(&text)
        .map_err(|e| data_err(e.line(), format!("not a fairlm audit checkpoint: {e}")))?;
    if let Some(field) = first_difference(&saved.audit, this) {
        return Err(data_err(
            0,
            format!(
                "written by another audit (its {field} differs): rerun without --resume, or with the options it was started with"
            ),
        ));
    }
    Ok(saved.templates)
}

/// The part of the audit `shard` owns: its probe units and, on the first shard, the
/// perplexities. Pair benchmarks are added by the caller (`AuditPart::benchmark_files` and
/// `benchmarks`). With a checkpoint, each template probed is saved to it (atomically) as it
/// finishes, and a resumed run probes only the templates it lacks. `progress` is told of each
/// template done and polled after it: a stop ends the run with `Error::Interrupted` (the
/// checkpoint kept).
#[allow(clippy::too_many_arguments)]
pub fn run_part(
    model: &dyn Backend,
    tok: &Tokenizer,
    model_record: ModelRecord,
    lexicon: &Lexicon,
    templates: &[Template],
    cfg: &AuditConfig,
    shard: Shard,
    checkpoint: Option<Checkpoint>,
    progress: &dyn Progress,
) -> Result<AuditPart> {
    let mut eval: Vec<Template> = templates
        .iter()
        .filter(|t| t.split == Split::Eval)
        .cloned()
        .collect();
    if let Some(n) = cfg.max_templates {
        eval.truncate(n);
    }
    if eval.is_empty() {
        return Err(Error::Invalid("no `eval` templates to audit with".into()));
    }
    // The user's text is read before the probe: a bad file must not cost a probe's minutes.
    let text = match &cfg.text {
        Some(path) if shard.owns_perplexity() => Some((path, crate::error::read_text(path)?)),
        _ => None,
    };
    let mut part = AuditPart {
        schema_version: SCHEMA_VERSION,
        fairlm_version: env!("CARGO_PKG_VERSION").to_string(),
        shard,
        config: cfg.clone(),
        model: model_record,
        lexicon: lexicon.clone(),
        templates: eval,
        records: Vec::new(),
        perplexity: None,
        text_perplexity: None,
        benchmark_files: Vec::new(),
        benchmarks: Vec::new(),
        timings_s: BTreeMap::new(),
        run_config: None,
    };
    let mut saved = ProbeCheckpoint {
        audit: part.clone(),
        templates: match &checkpoint {
            Some(c) if c.resume => read_checkpoint(c.path, &part)?,
            _ => BTreeMap::new(),
        },
    };
    let done = saved.templates.clone();
    let mut save = |t: usize, block: &TemplateRecords| -> Result<()> {
        if let Some(c) = &checkpoint {
            saved.templates.insert(t, block.clone());
            let json = serde_json::to_string(&saved)
                .map_err(|e| Error::Invalid(format!("{}: {e}", c.path.display())))?;
            write_atomic(c.path, json.as_bytes())?;
        }
        if progress.stop_requested() {
            return Err(Error::Interrupted);
        }
        Ok(())
    };
    let t0 = std::time::Instant::now();
    part.records = probe::run(
        model,
        tok,
        lexicon,
        &part.templates,
        &cfg.probe,
        shard,
        probe::Resume {
            done,
            on_template: &mut save,
        },
        progress,
    )?;
    let mut timings = BTreeMap::new();
    timings.insert("probe".to_string(), t0.elapsed().as_secs_f64());
    let t1 = std::time::Instant::now();
    let (heldout, text_perplexity) = if shard.owns_perplexity() {
        let heldout = perplexity(
            model,
            tok,
            "heldout (embedded)",
            HELDOUT,
            cfg.bootstrap_resamples,
            cfg.probe.seed,
        )?;
        let text_perplexity = match text {
            Some((path, text)) => {
                let name = path.display().to_string();
                let p = perplexity(
                    model,
                    tok,
                    &name,
                    &text,
                    cfg.bootstrap_resamples,
                    cfg.probe.seed,
                )
                .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                Some(p)
            }
            None => None,
        };
        timings.insert("perplexity".to_string(), t1.elapsed().as_secs_f64());
        (Some(heldout), text_perplexity)
    } else {
        (None, None)
    };
    part.perplexity = heldout;
    part.text_perplexity = text_perplexity;
    part.timings_s = timings;
    Ok(part)
}

/// A shard's part as `fairlm merge` reads it from `path` (its shard.json).
pub fn read_part(path: &Path) -> Result<AuditPart> {
    let text = crate::error::read_text(path)?;
    let part: AuditPart = serde_json::from_str(&text).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        line: e.line(),
        reason: format!("not a shard of a fairlm audit (shard.json): {e}"),
    })?;
    if part.schema_version != SCHEMA_VERSION {
        return Err(Error::Data {
            path: path.to_path_buf(),
            line: 0,
            reason: format!(
                "schema_version {} is not this fairlm's ({SCHEMA_VERSION})",
                part.schema_version
            ),
        });
    }
    Ok(part)
}

/// The first top-level field in which two parts' JSON differ.
fn first_difference<T: serde::Serialize>(a: &T, b: &T) -> Option<String> {
    let (a, b) = (serde_json::to_value(a).ok()?, serde_json::to_value(b).ok()?);
    if a == b {
        return None;
    }
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => a
            .keys()
            .chain(b.keys())
            .find(|k| a.get(*k) != b.get(*k))
            .cloned()
            .or(Some(String::new())),
        _ => Some(String::new()),
    }
}

/// The audit's results from its parts — every shard of one audit once (`names[i]` says where
/// part i came from, for errors), or the one part of an unsharded run: the same results.json
/// whichever way the audit was split, because each record is computed the same way in every
/// shard and the statistics run here, on the records in the whole run's order.
pub fn assemble(parts: Vec<AuditPart>, names: &[String]) -> Result<AuditResults> {
    let name = |i: usize| {
        names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("part {}", i + 1))
    };
    let Some(first) = parts.first() else {
        return Err(Error::Invalid("no shard to merge".into()));
    };
    let count = first.shard.count;
    let mut seen = vec![None; count];
    for (i, p) in parts.iter().enumerate() {
        if p.shard.count != count {
            return Err(Error::Invalid(format!(
                "{}: shard {} is of another split than {}'s ({} of {count})",
                name(i),
                p.shard,
                name(0),
                p.shard.count
            )));
        }
        if let Some(j) = seen[p.shard.index].replace(i) {
            return Err(Error::Invalid(format!(
                "{}: shard {} is also {}",
                name(i),
                p.shard,
                name(j)
            )));
        }
        let same = |field: &str, diff: Option<String>| match diff {
            None => Ok(()),
            Some(key) => Err(Error::Invalid(format!(
                "{}: not a shard of the same audit as {}: its {field}{} differs",
                name(i),
                name(0),
                if key.is_empty() {
                    String::new()
                } else {
                    format!(".{key}")
                }
            ))),
        };
        same(
            "fairlm_version",
            first_difference(&p.fairlm_version, &first.fairlm_version),
        )?;
        same("config", first_difference(&p.config, &first.config))?;
        same("model", first_difference(&p.model, &first.model))?;
        same("lexicon", first_difference(&p.lexicon, &first.lexicon))?;
        same(
            "templates",
            first_difference(&p.templates, &first.templates),
        )?;
        same(
            "benchmark_files",
            first_difference(&p.benchmark_files, &first.benchmark_files),
        )?;
    }
    if let Some(missing) = seen.iter().position(|s| s.is_none()) {
        return Err(Error::Invalid(format!(
            "shard {} is missing (merge needs all {count})",
            Shard {
                index: missing,
                count
            }
        )));
    }
    let first = &parts[0];
    let (cfg, lexicon, templates) = (&first.config, &first.lexicon, &first.templates);
    // The records in the whole run's order: by axis and template, and within those as the
    // shard that owns the template wrote them.
    let place = |r: &SampleRecord| -> Option<(usize, usize)> {
        let a = lexicon.axes.iter().position(|x| x.name == r.axis)?;
        let t = templates.iter().position(|t| t.id == r.template)?;
        Some((a, t))
    };
    let mut keyed = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        for r in &p.records {
            match place(r) {
                Some((a, t)) if p.shard.owns_unit(t) => keyed.push(((a, t), r.clone())),
                _ => {
                    return Err(Error::Invalid(format!(
                        "{}: a record of axis `{}`, template {} does not belong to shard {}",
                        name(i),
                        r.axis,
                        r.template,
                        p.shard
                    )))
                }
            }
        }
    }
    keyed.sort_by_key(|(key, _)| *key);
    let records: Vec<SampleRecord> = keyed.into_iter().map(|(_, r)| r).collect();
    // An axis without a (sample, counterfactual) pair has no bias score; 0 would be a lie.
    for axis in &cfg.axes {
        let pairs: usize = records
            .iter()
            .filter(|r| &r.axis == axis)
            .map(|r| r.counterfactuals.len())
            .sum();
        if pairs == 0 {
            return Err(Error::Invalid(format!(
                "axis `{axis}`: no (sample, counterfactual) pair to measure (check the lexicon's groups and the templates)"
            )));
        }
    }
    let owner = |i: usize| {
        parts
            .iter()
            .position(|p| p.shard.owns_perplexity())
            .unwrap_or(i)
    };
    let ppl_part = &parts[owner(0)];
    let Some(heldout) = ppl_part.perplexity.clone() else {
        return Err(Error::Invalid(format!(
            "{}: shard {} has no perplexity",
            name(owner(0)),
            ppl_part.shard
        )));
    };
    if cfg.text.is_some() && ppl_part.text_perplexity.is_none() {
        return Err(Error::Invalid(format!(
            "{}: shard {} has no perplexity of the --text file",
            name(owner(0)),
            ppl_part.shard
        )));
    }
    // Benchmark b comes from the shard that owns it, each shard's in the audit's order.
    let mut next = vec![0; parts.len()];
    let mut benchmarks = Vec::new();
    for (b, file) in first.benchmark_files.iter().enumerate() {
        let owner = parts.iter().position(|p| p.shard.owns_benchmark(b));
        let bench = owner.and_then(|i| parts[i].benchmarks.get(next[i]));
        match (owner, bench) {
            (Some(i), Some(bench)) if bench.file == *file => {
                next[i] += 1;
                benchmarks.push(bench.clone());
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: the shard that owns it has no results of pair benchmark {}",
                    file.display(),
                    b + 1
                )))
            }
        }
    }
    let twin_grammar = crate::grammar::of_probe(lexicon, &records);
    let probe = metrics::compute(
        &records,
        cfg.probe.tau,
        cfg.bootstrap_resamples,
        cfg.probe.seed,
    );
    let detectors = detectors::compute(
        &records,
        &Attributes::default_attributes()?,
        cfg.bootstrap_resamples,
        cfg.probe.seed,
    );
    Ok(AuditResults {
        schema_version: SCHEMA_VERSION,
        fairlm_version: first.fairlm_version.clone(),
        config: cfg.clone(),
        model: first.model.clone(),
        seed: cfg.probe.seed,
        templates: templates.clone(),
        probe,
        detectors,
        perplexity: heldout,
        text_perplexity: ppl_part.text_perplexity.clone(),
        records,
        benchmarks,
        twin_grammar: Some(twin_grammar),
        run_config: first.run_config.clone(),
    })
}

/// `fairlm_model::files::write_atomic` with the path named in the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    fairlm_model::files::write_atomic(path, bytes)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

fn ci(e: &Estimate, digits: usize) -> String {
    format!(
        "{:.d$} [{:.d$}, {:.d$}]",
        e.value,
        e.ci_low,
        e.ci_high,
        d = digits
    )
}

/// The Markdown summary of an audit.
pub fn summary_markdown(r: &AuditResults) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# fairlm audit\n\nModel: `{}` (sha256 `{}`, {} path), seed {}, profile `{}`.\n\n",
        r.model.path,
        &r.model.sha256[..r.model.sha256.len().min(16)],
        r.model.numeric_path,
        r.seed,
        r.config.profile
    ));
    let rows = [
        (
            format!("bias score (share of pairs with Δ ≥ {:.3})", r.probe.tau),
            ci(&r.probe.bias_score, 3),
        ),
        (
            "counterfactual divergence (mean Δ, nats)".to_string(),
            ci(&r.probe.divergence, 3),
        ),
        (
            "sentiment gap (VADER, mean pairwise Wasserstein-1)".to_string(),
            ci(&r.detectors.sentiment_gap, 3),
        ),
        (
            "stereotype association (TVD from parity)".to_string(),
            ci(&r.detectors.association_tvd, 3),
        ),
        (
            format!("held-out perplexity ({} tokens)", r.perplexity.tokens),
            ci(&r.perplexity.perplexity, 2),
        ),
        (
            "distinct-2 / repetition rate".to_string(),
            format!(
                "{:.3} / {:.3}",
                r.probe.fluency.distinct_2, r.probe.fluency.repetition_rate
            ),
        ),
    ];
    s.push_str("| metric | value [95% CI] |\n|---|---|\n");
    for (name, value) in rows {
        s.push_str(&format!("| {name} | {value} |\n"));
    }
    if let Some(g) = &r.twin_grammar {
        s.push_str(&format!(
            "| grammar check of the counterfactual twins | {} |\n",
            g.line()
        ));
    }
    if let Some(p) = &r.text_perplexity {
        s.push_str(&format!(
            "| perplexity of {} ({} tokens) | {} |\n",
            p.text,
            p.tokens,
            ci(&p.perplexity, 2)
        ));
    }
    s.push_str("\n| axis | samples | bias score [95% CI] | mean Δ [95% CI] | symmetric Δ | sentiment gap | association TVD |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    for (a, d) in r.probe.axes.iter().zip(&r.detectors.axes) {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {} | {} |\n",
            a.axis,
            a.samples,
            ci(&a.bias_score, 3),
            ci(&a.divergence, 3),
            a.symmetric_divergence,
            ci(&d.sentiment_gap, 3),
            ci(&d.association, 3)
        ));
    }
    s.push_str(&format!(
        "\n{} eval templates × groups × {} samples; Δ = log P(c | t(g)) − log P(swap(c) | t(h)).\n",
        r.templates.len(),
        r.config.probe.samples
    ));
    s
}
