//! Quality that perplexity does not show (design §3.5), read by an experiment: pronoun
//! agreement with the prompt's subject, the samples' log-prob under the original model (after
//! their own prompt, and averaged over the counterfactual prompts), the samples' diversity —
//! the figures, their gates and their table in compare.md.

use std::collections::BTreeMap;

use fairlm_model::{CausalLm, Tokenizer};

use crate::audit::{
    continuation_logprobs, mean_logprob, recorded_logprobs, AuditResults, ContinuationScore,
};
use crate::compare::{GateResult, Gates};
use crate::error::Result;
use crate::lexicon::Lexicon;
use crate::metrics::pronoun_agreement;
use crate::stats::{bootstrap, wilson_interval, Estimate};

/// Pronoun agreement with the subject (samples that agree, samples with a pronoun) in the
/// audits of the pronoun axis before and after; `None` where no sample has a pronoun or the
/// lexicon has no pronoun axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub before: Option<(usize, usize)>,
    pub after: Option<(usize, usize)>,
}

impl Agreement {
    /// Agreement in the two audits of the pronoun axis (`None` for an audit not run).
    pub fn read(
        before: Option<&AuditResults>,
        after: Option<&AuditResults>,
        lexicon: &Lexicon,
    ) -> Agreement {
        let of = |audit: Option<&AuditResults>| {
            audit.and_then(|r| pronoun_agreement(&r.records, lexicon))
        };
        Agreement {
            before: of(before),
            after: of(after),
        }
    }
}

/// The samples' mean log-prob per token under the original model, before and after, and the
/// paired change.
#[derive(Debug, Clone)]
pub struct LogprobChange {
    pub what: &'static str,
    pub before: f64,
    pub after: f64,
    pub delta: Estimate,
}

/// Both readings of fluency (design §3.5): [after each sample's own prompt (information),
/// averaged over the counterfactual prompts (gated)]. `before` is an audit of `original` (its
/// records hold the scores needed); `after` is scored under `original` here.
pub fn fluency(
    original: &dyn CausalLm,
    tok: &Tokenizer,
    before: &AuditResults,
    after: &AuditResults,
    resamples: usize,
    seed: u64,
) -> Result<[LogprobChange; 2]> {
    let sb = recorded_logprobs(tok, &before.records)?;
    let sa = continuation_logprobs(original, tok, &after.records)?;
    let change = |b: &[ContinuationScore], f: &[ContinuationScore], what| LogprobChange {
        what,
        before: mean_logprob(b),
        after: mean_logprob(f),
        delta: logprob_delta(b, f, resamples, seed),
    };
    Ok([
        change(
            &sb.own,
            &sa.own,
            "samples' mean log-prob per token under the original model, after their own prompt (information)",
        ),
        change(
            &sb.group_average,
            &sa.group_average,
            "the same, probabilities averaged over the counterfactual prompts (swap-aware; gated)",
        ),
    ])
}

/// The experiment's quality gates that `gates` sets, in compare.md's order: agreement (where
/// both audits have samples with a pronoun), fluency (the group-averaged reading), diversity.
pub fn quality_gates(
    gates: &Gates,
    agreement: &Agreement,
    fluency: &[LogprobChange; 2],
    before: &AuditResults,
    after: &AuditResults,
) -> Vec<GateResult> {
    let mut out = Vec::new();
    if let (Some(max), Some(b), Some(f)) =
        (gates.max_agreement_drop, agreement.before, agreement.after)
    {
        let share = |(agree, with): (usize, usize)| agree as f64 / with as f64;
        out.push(agreement_gate(share(b), share(f), max));
    }
    if let Some(max) = gates.max_fluency_drop {
        out.push(fluency_gate(&fluency[1].delta, max));
    }
    if let Some(max) = gates.max_diversity_drop {
        let (fb, fa) = (&before.probe.fluency, &after.probe.fluency);
        out.push(diversity_gate(fb.distinct_2, fa.distinct_2, max));
    }
    out
}

/// compare.md's section of quality beyond perplexity: pronoun agreement, the samples'
/// likelihood under the original model, their diversity.
pub fn markdown(
    before: &AuditResults,
    after: &AuditResults,
    agreement: &Agreement,
    fluency: &[LogprobChange],
) -> String {
    let mut s = String::from(
        "\n## Quality beyond perplexity\n\n| measure | before | after | Δ [95% paired CI] |\n|---|---|---|---|\n",
    );
    let cell = |x: Option<(usize, usize)>| match x {
        Some((agree, with)) => {
            let e = wilson_interval(agree, with);
            format!(
                "{:.3} ({agree} of {with}) [{:.3}, {:.3}]",
                e.value, e.ci_low, e.ci_high
            )
        }
        None => "n/a".into(),
    };
    s += &format!(
        "| pronoun agreement with the subject (the agreement audits' samples with a pronoun; Wilson 95%) | {} | {} | — |\n",
        cell(agreement.before),
        cell(agreement.after)
    );
    for c in fluency {
        s += &format!(
            "| {} | {:.3} | {:.3} | {:+.3} [{:+.3}, {:+.3}] |\n",
            c.what, c.before, c.after, c.delta.value, c.delta.ci_low, c.delta.ci_high
        );
    }
    let (fb, fa) = (&before.probe.fluency, &after.probe.fluency);
    s += &format!(
        "| distinct-2 of the samples | {:.3} | {:.3} | {:+.3} |\n| repetition rate of the samples | {:.3} | {:.3} | — |\n",
        fb.distinct_2,
        fa.distinct_2,
        fa.distinct_2 - fb.distinct_2,
        fb.repetition_rate,
        fa.repetition_rate
    );
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

/// Δ of the mean log-prob per token (after − before) of two audits' continuations, with a
/// bootstrap CI that resamples prompts, each with its samples on both sides.
pub fn logprob_delta(
    before: &[ContinuationScore],
    after: &[ContinuationScore],
    resamples: usize,
    seed: u64,
) -> Estimate {
    // Per prompt: [log-prob before, tokens before, log-prob after, tokens after].
    let mut by_prompt: BTreeMap<&(String, usize, String), [f64; 4]> = BTreeMap::new();
    for (side, scores) in [(0, before), (2, after)] {
        for s in scores {
            let e = by_prompt.entry(&s.prompt).or_default();
            e[side] += s.logprob;
            e[side + 1] += s.tokens as f64;
        }
    }
    let clusters: Vec<Vec<[f64; 4]>> = by_prompt.into_values().map(|v| vec![v]).collect();
    let delta = |picked: &[&[[f64; 4]]]| {
        let t = picked
            .iter()
            .flat_map(|c| c.iter())
            .fold([0.0; 4], |mut t, v| {
                for (a, b) in t.iter_mut().zip(v) {
                    *a += b;
                }
                t
            });
        t[2] / t[3].max(1.0) - t[0] / t[1].max(1.0)
    };
    bootstrap(&clusters, delta, resamples, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(per_token: &[f64]) -> Vec<ContinuationScore> {
        per_token
            .iter()
            .enumerate()
            .map(|(i, &lp)| ContinuationScore {
                prompt: ("gender".into(), i / 2, "women".into()),
                logprob: lp * 10.0,
                tokens: 10,
            })
            .collect()
    }

    #[test]
    fn logprob_delta_is_paired_by_prompt() {
        // Prompts differ a lot from each other; after is every sample 0.1 nats/token worse.
        let before: Vec<f64> = (0..40).map(|i| -2.0 - (i % 7) as f64 * 0.5).collect();
        let after: Vec<f64> = before.iter().map(|x| x - 0.1).collect();
        let d = logprob_delta(&scores(&before), &scores(&after), 500, 0);
        assert!((d.value + 0.1).abs() < 1e-9);
        assert!(d.ci_high < 0.0, "{d:?}");
        let same = logprob_delta(&scores(&before), &scores(&before), 500, 0);
        assert!(same.value.abs() < 1e-12 && same.ci_low.abs() < 1e-12);
    }

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
