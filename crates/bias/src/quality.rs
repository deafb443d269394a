//! Quality that perplexity does not show (design §3.5), read by an experiment: pronoun
//! agreement with the prompt's subject, the samples' log-prob under the original model (after
//! their own prompt, and averaged over the counterfactual prompts), the samples' diversity —
//! the figures, their gates and their table in compare.md.

use std::collections::BTreeMap;

use fairlm_model::{CausalLm, Tokenizer};

use crate::audit::AuditResults;
use crate::compare::{agreement_gate, diversity_gate, fluency_gate, GateResult, Gates};
use crate::error::Result;
use crate::lexicon::Lexicon;
use crate::metrics::pronoun_agreement;
use crate::probe::SampleRecord;
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

/// One sample's continuation scored under a model: its prompt (axis, template, group), the
/// continuation's total log-probability and its token count.
pub struct ContinuationScore {
    /// (axis, template id, group) of the sample's prompt.
    pub prompt: (String, usize, String),
    /// Total log-probability of the continuation.
    pub logprob: f64,
    /// Tokens in the continuation.
    pub tokens: usize,
}

/// The samples' continuations scored under one model in two ways (design.md §3.5, fluency:
/// under the original model they tell whether a mitigated model's samples are still text the
/// original finds likely).
pub struct ContinuationScores {
    /// After each sample's own prompt t(g).
    pub own: Vec<ContinuationScore>,
    /// After its own prompt and every counterfactual one, the continuation swapped to each
    /// group (swap-aware, as the probe scores it), the probabilities averaged over the
    /// groups. Under its own prompt the original charges a debiased sample for the group
    /// information it no longer carries (what the original would have written after another
    /// group's prompt is unlikely after t(g)); averaged over the groups' prompts, text the
    /// original finds likely after some group's prompt scores well, and only text no prompt
    /// makes likely loses.
    pub group_average: Vec<ContinuationScore>,
}

/// Both scores from per-record log-probabilities: `own[i]` and `counterfactual[i]` of record i.
fn combine(
    kept: &[&SampleRecord],
    own: &[f64],
    counterfactual: &[Vec<f64>],
    tokens: &[usize],
) -> ContinuationScores {
    let mut out = ContinuationScores {
        own: Vec::with_capacity(kept.len()),
        group_average: Vec::with_capacity(kept.len()),
    };
    for (i, r) in kept.iter().enumerate() {
        let prompt = (r.axis.clone(), r.template, r.group.clone());
        let all: Vec<f64> = std::iter::once(own[i])
            .chain(counterfactual[i].iter().copied())
            .collect();
        let top = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean_p = all.iter().map(|x| (x - top).exp()).sum::<f64>() / all.len() as f64;
        out.own.push(ContinuationScore {
            prompt: prompt.clone(),
            logprob: own[i],
            tokens: tokens[i],
        });
        out.group_average.push(ContinuationScore {
            prompt,
            logprob: top + mean_p.ln(),
            tokens: tokens[i],
        });
    }
    out
}

fn with_continuation(records: &[SampleRecord]) -> Vec<&SampleRecord> {
    records
        .iter()
        .filter(|r| !r.continuation.is_empty())
        .collect()
}

/// The samples' continuations scored under `model`, after their own and their counterfactual
/// prompts.
pub fn continuation_logprobs(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    records: &[SampleRecord],
) -> Result<ContinuationScores> {
    let ctx: Vec<u32> = tok.document_start().into_iter().collect();
    let kept = with_continuation(records);
    let mut items = Vec::new();
    for r in &kept {
        let texts = std::iter::once((r.prompt.as_str(), r.continuation.as_str())).chain(
            r.counterfactuals
                .iter()
                .map(|c| (c.prompt.as_str(), c.text.as_str())),
        );
        for (prompt_text, text) in texts {
            let mut prompt = ctx.clone();
            prompt.extend(tok.encode(prompt_text)?);
            items.push(fairlm_model::score::ScoreItem {
                first_scored: prompt.len(),
                tokens: [prompt, tok.encode(text)?].concat(),
            });
        }
    }
    let mut lps = fairlm_model::score::score_items(model, &items, 32, |_| {})?.into_iter();
    let (mut own, mut counterfactual, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for r in &kept {
        let scored: Vec<Vec<f64>> = lps.by_ref().take(1 + r.counterfactuals.len()).collect();
        own.push(scored[0].iter().sum());
        tokens.push(scored[0].len());
        counterfactual.push(scored[1..].iter().map(|lp| lp.iter().sum()).collect());
    }
    Ok(combine(&kept, &own, &counterfactual, &tokens))
}

/// The same from an audit's records, whose samples its model has already scored after their
/// own and counterfactual prompts: valid for the model the audit ran on (the original, for an
/// experiment's "before" audit), at no cost but tokenising.
pub fn recorded_logprobs(tok: &Tokenizer, records: &[SampleRecord]) -> Result<ContinuationScores> {
    let kept = with_continuation(records);
    let own: Vec<f64> = kept.iter().map(|r| r.logprob).collect();
    let counterfactual: Vec<Vec<f64>> = kept
        .iter()
        .map(|r| r.counterfactuals.iter().map(|c| c.logprob).collect())
        .collect();
    let tokens = kept
        .iter()
        .map(|r| Ok(tok.encode(&r.continuation)?.len()))
        .collect::<Result<Vec<usize>>>()?;
    Ok(combine(&kept, &own, &counterfactual, &tokens))
}

/// Mean log-probability per token over all scored continuations.
pub fn mean_logprob(scores: &[ContinuationScore]) -> f64 {
    let n: usize = scores.iter().map(|s| s.tokens).sum();
    scores.iter().map(|s| s.logprob).sum::<f64>() / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Counterfactual;
    use fairlm_model::{Checkpoint, NumericPath};

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

    // Continuation scoring.

    fn record(prompt: &str, text: &str, counterfactuals: &[(&str, &str)]) -> SampleRecord {
        SampleRecord {
            axis: "gender".into(),
            template: 0,
            category: "occupation".into(),
            group: "female".into(),
            sample: 0,
            prompt: prompt.into(),
            continuation: text.into(),
            logprob: 0.0,
            counterfactuals: counterfactuals
                .iter()
                .map(|&(prompt, text)| Counterfactual {
                    group: "male".into(),
                    prompt: prompt.into(),
                    text: text.into(),
                    logprob: 0.0,
                    delta: 0.0,
                    flagged: false,
                })
                .collect(),
        }
    }

    /// The group average is log((p_own + p_twin) / 2) (up to the f32 rounding of scoring rows
    /// in one batch or two): equal to the own score when the twin is the same text, between
    /// the two otherwise; an audit's records give the scores the model gives.
    #[test]
    fn group_average_is_the_mean_probability_over_the_prompts() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-llama");
        let ck = Checkpoint::open(&p, NumericPath::F32).unwrap();
        let model = ck.build().unwrap();
        let tok = &ck.tokenizer;
        let score = |r: &SampleRecord| {
            let s = continuation_logprobs(model.as_ref(), tok, std::slice::from_ref(r)).unwrap();
            (
                s.own[0].logprob,
                s.group_average[0].logprob,
                s.own[0].tokens,
            )
        };
        let same = record("The woman was", " kind.", &[("The woman was", " kind.")]);
        let (own, avg, _) = score(&same);
        assert!((own - avg).abs() < 1e-4, "{own} {avg}");
        let mut swapped = record(
            "The woman was",
            " kind.",
            &[("The man was", " tall and grey.")],
        );
        let (own, avg, n) = score(&swapped);
        let (twin, _, _) = score(&record("The man was", " tall and grey.", &[]));
        let expected = ((own.exp() + twin.exp()) / 2.0).ln();
        assert!((avg - expected).abs() < 1e-4, "{avg} vs {expected}");
        assert!(avg > own.min(twin) && avg < own.max(twin));
        // The audit's records hold those same scores.
        swapped.logprob = own;
        swapped.counterfactuals[0].logprob = twin;
        let recorded = recorded_logprobs(tok, std::slice::from_ref(&swapped)).unwrap();
        assert_eq!(recorded.own[0].tokens, n);
        assert!((recorded.group_average[0].logprob - expected).abs() < 1e-9);
    }
}
