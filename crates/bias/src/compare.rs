//! Before/after comparison of two audits: every figure recomputed from the per-sample
//! records, deltas with a paired bootstrap CI (resampling (axis, template, group) clusters,
//! the same clusters on both sides), and gates that a pipeline can fail on. Refuses audits
//! that did not run the same probe.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::audit::AuditResults;
use crate::error::{Error, Result};
use crate::pairs::{pair_table, BenchResults, PairRecord};
use crate::probe::SampleRecord;
use crate::stats::{percentile_interval, replicates, Estimate};
use crate::stereoset::{stereo_table, StereoRecord};

/// Limits a comparison checks (`None`: not checked); one type for `compare`, `experiment` and the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// The after bias score must be at most this.
    pub max_bias: Option<f64>,
    /// after / before bias score must be at most this.
    pub max_bias_ratio: Option<f64>,
    /// Held-out perplexity may rise at most this many percent.
    pub max_ppl_increase: Option<f64>,
    /// StereoSet lms (sum convention) after must be at least this (needs `--stereoset`).
    #[serde(default)]
    pub min_lms: Option<f64>,
    /// Pronoun agreement with the prompt's subject may fall at most this many percentage
    /// points (read by an experiment, which audits the pronoun axis for it; design §3.5).
    #[serde(default)]
    pub max_agreement_drop: Option<f64>,
    /// The samples' group-averaged mean log-prob per token under the original model may fall
    /// at most this many nats (point estimate; read by an experiment, which holds the
    /// original model; design §3.5).
    #[serde(default)]
    pub max_fluency_drop: Option<f64>,
    /// Distinct-2 of the probe's samples may fall at most this much (design §3.5).
    #[serde(default)]
    pub max_diversity_drop: Option<f64>,
}

/// One metric before and after, with the paired change.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The metric's name as the table prints it.
    pub metric: String,
    /// Value before.
    pub before: f64,
    /// Value after.
    pub after: f64,
    /// after − before with its paired bootstrap CI.
    pub delta: Estimate,
}

/// One gate's verdict.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GateResult {
    /// The gate's name.
    pub gate: String,
    /// Whether it holds.
    pub passed: bool,
    /// The figures it was decided on.
    pub detail: String,
}

/// A before/after comparison: the table and the gates.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Comparison {
    /// The metrics' rows.
    pub rows: Vec<Row>,
    /// The gates' verdicts.
    pub gates: Vec<GateResult>,
}

impl Comparison {
    /// Every gate holds.
    pub fn passed(&self) -> bool {
        self.gates.iter().all(|g| g.passed)
    }
}

type Key = (String, usize, String, usize);

fn key(r: &SampleRecord) -> Key {
    (r.axis.clone(), r.template, r.group.clone(), r.sample)
}

/// Checks that both audits ran the same probe: schema, τ, seed, samples, templates, axes and
/// the same (axis, template, group, sample) records.
fn check_same_probe(b: &AuditResults, a: &AuditResults) -> Result<()> {
    let refuse = |what: String| {
        Err(Error::Invalid(format!(
            "the audits are not comparable: {what}"
        )))
    };
    if b.schema_version != a.schema_version {
        return refuse(format!(
            "schema versions {} and {}",
            b.schema_version, a.schema_version
        ));
    }
    if b.config.probe.tau != a.config.probe.tau {
        return refuse(format!(
            "τ {} and {}",
            b.config.probe.tau, a.config.probe.tau
        ));
    }
    if b.seed != a.seed
        || b.config.probe.samples != a.config.probe.samples
        || b.config.probe.max_tokens != a.config.probe.max_tokens
    {
        return refuse("different seed, samples or max tokens".into());
    }
    let texts = |r: &AuditResults| {
        r.templates
            .iter()
            .map(|t| t.text.clone())
            .collect::<Vec<_>>()
    };
    if texts(b) != texts(a) {
        return refuse("different templates".into());
    }
    if b.config.axes != a.config.axes {
        return refuse(format!("axes {:?} and {:?}", b.config.axes, a.config.axes));
    }
    let mut kb: Vec<Key> = b.records.iter().map(key).collect();
    let mut ka: Vec<Key> = a.records.iter().map(key).collect();
    kb.sort();
    ka.sort();
    if kb != ka {
        return refuse("different probe records (axis, template, group, sample)".into());
    }
    Ok(())
}

/// Per (axis, template, group) cluster: (flagged pairs, pairs, Δ sum).
type Cluster = (f64, f64, f64);

fn clusters(records: &[SampleRecord], tau: f64) -> BTreeMap<(String, usize, String), Cluster> {
    let mut m: BTreeMap<(String, usize, String), Cluster> = BTreeMap::new();
    for r in records {
        let e = m
            .entry((r.axis.clone(), r.template, r.group.clone()))
            .or_default();
        for c in &r.counterfactuals {
            e.0 += f64::from(u8::from(c.delta >= tau));
            e.1 += 1.0;
            e.2 += c.delta;
        }
    }
    m
}

/// Axes weighted equally: mean over axes of (flagged / pairs) and of mean Δ.
fn headline(picked: &[&(String, Cluster)]) -> (f64, f64) {
    let mut per_axis: BTreeMap<&str, Cluster> = BTreeMap::new();
    for (axis, c) in picked.iter().map(|x| (&x.0, x.1)) {
        let e = per_axis.entry(axis.as_str()).or_default();
        e.0 += c.0;
        e.1 += c.1;
        e.2 += c.2;
    }
    let n = per_axis.len().max(1) as f64;
    let score = per_axis
        .values()
        .map(|c| if c.1 > 0.0 { c.0 / c.1 } else { 0.0 })
        .sum::<f64>()
        / n;
    let div = per_axis
        .values()
        .map(|c| if c.1 > 0.0 { c.2 / c.1 } else { 0.0 })
        .sum::<f64>()
        / n;
    (score, div)
}

/// Compares two audits of the same settings (refused otherwise): paired changes of every metric, resampling the shared prompts, and the gates.
pub fn compare(
    before: &AuditResults,
    after: &AuditResults,
    gates: &Gates,
    resamples: usize,
    seed: u64,
) -> Result<Comparison> {
    check_same_probe(before, after)?;
    if gates.max_agreement_drop.is_some() || gates.max_fluency_drop.is_some() {
        return Err(Error::Invalid(
            "the agreement and fluency gates need the original model and the pronoun audits of an experiment: run `fairlm experiment`".into(),
        ));
    }
    let tau = before.config.probe.tau;
    let cb = clusters(&before.records, tau);
    let ca = clusters(&after.records, tau);
    let keys: Vec<&(String, usize, String)> = cb.keys().collect();
    let pair = |k: &(String, usize, String)| ((k.0.clone(), cb[k]), (k.0.clone(), ca[k]));
    let all: Vec<((String, Cluster), (String, Cluster))> = keys.iter().map(|k| pair(k)).collect();
    let side = |pick: &[usize], first: bool| -> (f64, f64) {
        let xs: Vec<&(String, Cluster)> = pick
            .iter()
            .map(|&i| if first { &all[i].0 } else { &all[i].1 })
            .collect();
        headline(&xs)
    };
    let every: Vec<usize> = (0..all.len()).collect();
    let (bs, bd) = side(&every, true);
    let (as_, ad) = side(&every, false);
    let mut rng = StdRng::seed_from_u64(seed);
    let (d_score, d_div): (Vec<f64>, Vec<f64>) =
        replicates(&mut rng, all.len(), resamples, |pick| {
            let (x, y) = (side(pick, true), side(pick, false));
            (y.0 - x.0, y.1 - x.1)
        })
        .into_iter()
        .unzip();
    let mut rows = vec![
        Row {
            metric: "bias score".into(),
            before: bs,
            after: as_,
            delta: percentile_interval(d_score, as_ - bs),
        },
        Row {
            metric: "divergence (nats)".into(),
            before: bd,
            after: ad,
            delta: percentile_interval(d_div, ad - bd),
        },
    ];
    // Per-axis bias scores, recomputed from the records.
    let axes: Vec<String> = before.config.axes.clone();
    for axis in &axes {
        let idx: Vec<usize> = (0..all.len()).filter(|&i| &all[i].0 .0 == axis).collect();
        if idx.is_empty() {
            continue;
        }
        let (x, y) = (side(&idx, true).0, side(&idx, false).0);
        let reps = replicates(&mut rng, idx.len(), resamples, |pick| {
            let pick: Vec<usize> = pick.iter().map(|&i| idx[i]).collect();
            side(&pick, false).0 - side(&pick, true).0
        });
        rows.push(Row {
            metric: format!("bias score: {axis}"),
            before: x,
            after: y,
            delta: percentile_interval(reps, y - x),
        });
    }
    let (pb, pa) = (
        before.perplexity.perplexity.value,
        after.perplexity.perplexity.value,
    );
    rows.push(Row {
        metric: "held-out perplexity".into(),
        before: pb,
        after: pa,
        delta: perplexity_delta(before, after, resamples, &mut rng),
    });
    let stereo_after = benchmark_rows(before, after, resamples, &mut rng, &mut rows);
    let mut results = Vec::new();
    if let Some(l) = gates.min_lms {
        let Some(lms) = stereo_after else {
            return Err(Error::Invalid(
                "--min-lms needs StereoSet results in both audits: run them with --stereoset FILE"
                    .into(),
            ));
        };
        results.push(GateResult {
            gate: "min-lms".into(),
            passed: lms >= l,
            detail: format!("StereoSet lms after {lms:.2} vs limit {l}"),
        });
    }
    if let Some(x) = gates.max_bias {
        results.push(GateResult {
            gate: "max-bias".into(),
            passed: as_ <= x,
            detail: format!("bias score after {as_:.4} vs limit {x}"),
        });
    }
    if let Some(r) = gates.max_bias_ratio {
        let ratio = if bs > 0.0 {
            as_ / bs
        } else if as_ > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        results.push(GateResult {
            gate: "max-bias-ratio".into(),
            passed: ratio <= r,
            detail: format!("after/before {ratio:.4} vs limit {r}"),
        });
    }
    if let Some(p) = gates.max_ppl_increase {
        let inc = 100.0 * (pa - pb) / pb;
        results.push(GateResult {
            gate: "max-ppl-increase".into(),
            passed: inc <= p,
            detail: format!("perplexity {pb:.3} → {pa:.3} ({inc:+.2}%) vs limit {p}%"),
        });
    }
    if let Some(d) = gates.max_diversity_drop {
        let (fb, fa) = (&before.probe.fluency, &after.probe.fluency);
        results.push(diversity_gate(fb.distinct_2, fa.distinct_2, d));
    }
    Ok(Comparison {
        rows,
        gates: results,
    })
}

/// Overall figure of a benchmark's records: CrowS pct_stereotype, or StereoSet [ss, lms].
fn bench_figures(b: &BenchResults, pick: Option<&[usize]>) -> Vec<f64> {
    let chosen =
        |n: usize| -> Vec<usize> { pick.map(|p| p.to_vec()).unwrap_or_else(|| (0..n).collect()) };
    if let Some(recs) = &b.pairs {
        let rs: Vec<PairRecord> = chosen(recs.len())
            .into_iter()
            .map(|i| recs[i].clone())
            .collect();
        let overall = pair_table(&rs).pop();
        return vec![overall.map(|r| r.pct_stereotype_sum).unwrap_or(0.0)];
    }
    if let Some(recs) = &b.entries {
        let rs: Vec<StereoRecord> = chosen(recs.len())
            .into_iter()
            .map(|i| recs[i].clone())
            .collect();
        let overall = stereo_table(&rs).pop();
        return overall
            .map(|r| vec![r.sum.ss, r.sum.lms])
            .unwrap_or_default();
    }
    Vec::new()
}

/// Before/after rows of the pair benchmarks both audits ran on the same file, recomputed from
/// their per-pair records with a paired bootstrap over pairs. Returns StereoSet lms after.
fn benchmark_rows(
    before: &AuditResults,
    after: &AuditResults,
    resamples: usize,
    rng: &mut StdRng,
    rows: &mut Vec<Row>,
) -> Option<f64> {
    let mut lms_after = None;
    for b in &before.benchmarks {
        let Some(a) = after
            .benchmarks
            .iter()
            .find(|a| a.benchmark == b.benchmark && a.file == b.file)
        else {
            continue;
        };
        let n = b
            .pairs
            .as_ref()
            .map(|p| p.len())
            .or(b.entries.as_ref().map(|e| e.len()))
            .unwrap_or(0);
        let n_after = a
            .pairs
            .as_ref()
            .map(|p| p.len())
            .or(a.entries.as_ref().map(|e| e.len()))
            .unwrap_or(0);
        if n == 0 || n != n_after {
            continue;
        }
        let (fb, fa) = (bench_figures(b, None), bench_figures(a, None));
        let mut reps: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); fb.len()];
        for change in replicates(rng, n, resamples, |pick| {
            let (xb, xa) = (bench_figures(b, Some(pick)), bench_figures(a, Some(pick)));
            xa.iter().zip(&xb).map(|(a, b)| a - b).collect::<Vec<f64>>()
        }) {
            for (r, d) in reps.iter_mut().zip(change) {
                r.push(d);
            }
        }
        let names: &[&str] = if b.pairs.is_some() {
            &["pct_stereotype (sum, ideal 50)"]
        } else {
            &["ss (sum, ideal 50)", "lms (sum, ideal 100)"]
        };
        for (k, r) in reps.into_iter().enumerate() {
            rows.push(Row {
                metric: format!("{} {}", b.benchmark, names[k]),
                before: fb[k],
                after: fa[k],
                delta: percentile_interval(r, fa[k] - fb[k]),
            });
        }
        if b.entries.is_some() {
            lms_after = fa.get(1).copied();
        }
    }
    lms_after
}

/// Paired bootstrap over the held-out text's 64-token blocks (each block weighs the same);
/// without block records the interval is the point.
fn perplexity_delta(
    b: &AuditResults,
    a: &AuditResults,
    resamples: usize,
    rng: &mut StdRng,
) -> Estimate {
    let (pb, pa) = (b.perplexity.perplexity.value, a.perplexity.perplexity.value);
    let (xb, xa) = (&b.perplexity.block_nll, &a.perplexity.block_nll);
    if xb.is_empty() || xb.len() != xa.len() {
        return Estimate {
            value: pa - pb,
            ci_low: pa - pb,
            ci_high: pa - pb,
        };
    }
    let n = xb.len();
    let reps = replicates(rng, n, resamples, |pick| {
        let (mut sb, mut sa) = (0.0, 0.0);
        for &i in pick {
            sb += xb[i];
            sa += xa[i];
        }
        (sa / n as f64).exp() - (sb / n as f64).exp()
    });
    percentile_interval(reps, pa - pb)
}

/// The comparison as compare.md's Markdown.
pub fn markdown(c: &Comparison) -> String {
    let mut s =
        String::from("| metric | before | after | Δ [95% paired CI] |\n|---|---|---|---|\n");
    for r in &c.rows {
        s.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:+.4} [{:+.4}, {:+.4}] |\n",
            r.metric, r.before, r.after, r.delta.value, r.delta.ci_low, r.delta.ci_high
        ));
    }
    if !c.gates.is_empty() {
        s.push_str("\n| gate | result | detail |\n|---|---|---|\n");
        for g in &c.gates {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                g.gate,
                if g.passed { "pass" } else { "FAIL" },
                g.detail
            ));
        }
    }
    s
}

/// The agreement gate: pronoun agreement with the prompt's subject (shares in [0, 1]) may fall
/// at most `max_drop_points` percentage points (design §3.5).
pub fn agreement_gate(before: f64, after: f64, max_drop_points: f64) -> GateResult {
    let drop = 100.0 * (before - after);
    GateResult {
        gate: "max-agreement-drop".into(),
        passed: drop <= max_drop_points,
        detail: format!(
            "pronoun agreement {before:.3} → {after:.3} ({:+.1} points) vs limit −{max_drop_points} points",
            -drop
        ),
    }
}

/// The fluency gate (design §3.5): the change of the samples' group-averaged mean log-prob per
/// token under the original model (point estimate, after − before) may not fall below
/// −`max_drop` nats/token. The paired CI is shown beside it; the gate reads the point estimate.
pub fn fluency_gate(delta: &Estimate, max_drop: f64) -> GateResult {
    GateResult {
        gate: "max-fluency-drop".into(),
        passed: delta.value >= -max_drop,
        detail: format!(
            "samples' group-averaged log-prob under the original {:+.3} [{:+.3}, {:+.3}] nats/token vs limit −{max_drop}",
            delta.value, delta.ci_low, delta.ci_high
        ),
    }
}

/// The diversity gate (design §3.5): distinct-2 of the probe's samples may fall at most
/// `max_drop`.
pub fn diversity_gate(before: f64, after: f64, max_drop: f64) -> GateResult {
    let drop = before - after;
    GateResult {
        gate: "max-diversity-drop".into(),
        passed: drop <= max_drop,
        detail: format!(
            "distinct-2 {before:.3} → {after:.3} ({:+.3}) vs limit −{max_drop}",
            -drop
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_gate_fails_beyond_the_allowed_drop() {
        assert!(agreement_gate(0.965, 0.93, 5.0).passed);
        assert!(agreement_gate(0.965, 1.0, 5.0).passed);
        let g = agreement_gate(0.965, 0.595, 5.0);
        assert!(!g.passed);
        assert!(g.detail.contains("-37.0 points"), "{}", g.detail);
    }

    #[test]
    fn fluency_gate_reads_the_point_estimate_against_the_margin() {
        let est = |value: f64| Estimate {
            value,
            ci_low: value - 0.06,
            ci_high: value + 0.06,
        };
        // The CI may reach past the margin; the point estimate decides (the filer's rule).
        assert!(fluency_gate(&est(-0.039), 0.049).passed);
        assert!(fluency_gate(&est(0.02), 0.049).passed);
        let g = fluency_gate(&est(-0.124), 0.049);
        assert!(!g.passed);
        assert!(g.detail.contains("-0.124"), "{}", g.detail);
    }

    #[test]
    fn diversity_gate_fails_beyond_the_allowed_drop() {
        assert!(diversity_gate(0.836, 0.794, 0.05).passed);
        assert!(diversity_gate(0.8, 0.9, 0.05).passed);
        let g = diversity_gate(0.836, 0.78, 0.05);
        assert!(!g.passed);
        assert!(g.detail.contains("-0.056"), "{}", g.detail);
    }
}
