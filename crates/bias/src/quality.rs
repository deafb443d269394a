//! Quality that perplexity does not show (design §3.5), read by an experiment: pronoun
//! agreement with the prompt's subject, the samples' log-prob under the original model (after
//! their own prompt, and averaged over the counterfactual prompts), the samples' diversity —
//! the figures, their gates and their table in compare.md.

use std::collections::BTreeMap;

use fairlm_model::{CausalLm, Tokenizer};

use crate::audit::{
    continuation_logprobs, mean_logprob, recorded_logprobs, AuditResults, ContinuationScore,
};
use crate::compare::{agreement_gate, diversity_gate, fluency_gate, GateResult, Gates};
use crate::error::Result;
use crate::lexicon::Lexicon;
use crate::metrics::pronoun_agreement;
use crate::stats::{bootstrap, wilson_interval, Estimate};

/// Pronoun agreement with the subject (samples that agree, samples with a pronoun) in the
/// audits of the pronoun axis before and after; `None` where no sample has a pronoun or the
/// lexicon has no pronoun axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// (agreeing, with a pronoun) in the audit before.
    pub before: Option<(usize, usize)>,
    /// (agreeing, with a pronoun) in the audit after.
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
    /// Which reading (own prompt, or averaged over the prompts).
    pub what: &'static str,
    /// Mean log-prob per token of the original's samples.
    pub before: f64,
    /// Mean log-prob per token of the mitigated model's samples.
    pub after: f64,
    /// after − before with its paired CI.
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
}
