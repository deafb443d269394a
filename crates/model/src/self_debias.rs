//! Self-Debias (Schick, Udupa and Schütze 2021) at decode time, for models fairlm cannot
//! train as well as those it can: next to each text the model also reads it after prefixes
//! that describe the bias ("The following text discriminates against people because of their
//! religion: "); a token that any prefix makes more likely than the plain text does is scaled
//! down, p̃(w) ∝ p(w) · max(exp(−λ · max(0, max_k p_k(w) − p(w))), ε), as bias-bench's
//! `SelfDebiasingLogitsProcessor` does (λ = 50, ε = 0.01 by default). Each prefix sits after
//! the document-start token and before the text; the regular and the prefixed rows are
//! compared position by position over the text. Sampling decodes the prefixed copies of a
//! prompt beside each sample and feeds them the tokens it draws.

use candle_core::{Device, Tensor, D};

use crate::backend::Backend;
use crate::error::Result;
use crate::generate::{generate_batched_with, BatchPlan, Companions, Generation, SamplingConfig};
use crate::lm::CausalLm;
use crate::score::{batches, check_finite, check_items, ScoreItem};
use crate::tokenizer::Tokenizer;

/// Self-Debias's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfDebias {
    /// The prefixes' token ids (each read between the document start and the text).
    pub prefixes: Vec<Vec<u32>>,
    /// λ, the decay constant.
    pub decay: f64,
    /// ε, the smallest factor a probability is scaled by.
    pub epsilon: f64,
}

/// The prefixes of bias-bench's Self-Debias runs, one per bias type it evaluates (its
/// `DEBIASING_PREFIXES`, with "orientation" spelled right).
pub const PREFIXES: [&str; 9] = [
    "The following text discriminates against people because of their race/color: ",
    "The following text discriminates against people because of their gender: ",
    "The following text discriminates against people because of their socioeconomic status/occupation: ",
    "The following text discriminates against people because of their sexual orientation: ",
    "The following text discriminates against people because of their religion: ",
    "The following text discriminates against people because of their age: ",
    "The following text discriminates against people because of their nationality: ",
    "The following text discriminates against people because of their disability: ",
    "The following text discriminates against people because of their physical appearance: ",
];

/// The self-debiased log-probabilities of every token from the regular row of logits and the
/// prefixed rows at the same text position.
pub fn debiased_logprobs(regular: &[f32], biased: &[&[f32]], decay: f64, epsilon: f64) -> Vec<f64> {
    let softmax = |row: &[f32]| -> Vec<f64> {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect()
    };
    let p = softmax(regular);
    let mut p_biased = vec![0f64; p.len()];
    for row in biased {
        for (m, q) in p_biased.iter_mut().zip(softmax(row)) {
            *m = m.max(q);
        }
    }
    let scaled: Vec<f64> = p
        .iter()
        .zip(&p_biased)
        .map(|(&p, &b)| p * (-decay * (b - p).max(0.0)).exp().max(epsilon))
        .collect();
    let total: f64 = scaled.iter().sum();
    scaled.into_iter().map(|x| (x / total).ln()).collect()
}

/// The self-debiased log-probability of `target` (see [`debiased_logprobs`]).
pub fn debiased_logprob(
    regular: &[f32],
    biased: &[&[f32]],
    target: usize,
    decay: f64,
    epsilon: f64,
) -> f64 {
    debiased_logprobs(regular, biased, decay, epsilon)[target]
}

/// A model scored under Self-Debias: the text after each prefix is run beside it.
pub struct SelfDebiased<'a> {
    /// The model.
    pub model: &'a dyn CausalLm,
    /// Its settings.
    pub config: SelfDebias,
    /// The document-start token: a prefix goes after it when an item begins with it, else
    /// before the item.
    pub document_start: Option<u32>,
}

impl SelfDebiased<'_> {
    /// A sequence's prefixed copies: each prefix after its document-start token when it
    /// begins with one, else before it.
    fn prefixed(&self, tokens: &[u32]) -> Vec<Vec<u32>> {
        let cut = usize::from(
            self.document_start.is_some() && tokens.first().copied() == self.document_start,
        );
        self.config
            .prefixes
            .iter()
            .map(|p| [&tokens[..cut], p, &tokens[cut..]].concat())
            .collect()
    }

    /// Rows of one item: the item, then its prefixed copies.
    fn rows(&self, item: &ScoreItem) -> Vec<Vec<u32>> {
        let mut rows = vec![item.tokens.clone()];
        rows.extend(self.prefixed(&item.tokens));
        rows
    }

    fn score_chunk(&self, items: &[&ScoreItem]) -> Result<Vec<Vec<f64>>> {
        let k = self.config.prefixes.len();
        let rows: Vec<Vec<u32>> = items.iter().flat_map(|it| self.rows(it)).collect();
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(rows.len() * width);
        for r in &rows {
            flat.extend_from_slice(r);
            flat.extend(std::iter::repeat_n(0u32, width - r.len()));
        }
        let ids = Tensor::from_vec(flat, (rows.len(), width), &Device::Cpu)?;
        let hidden = self.model.hidden(&ids, &mut self.model.new_cache())?;
        let hidden = hidden.reshape((rows.len() * width, hidden.dim(D::Minus1)?))?;
        // The positions each scored token is predicted from, in every row of each item.
        let mut at = Vec::new();
        for (i, it) in items.iter().enumerate() {
            for (j, p) in std::iter::once(0)
                .chain(self.config.prefixes.iter().map(Vec::len))
                .enumerate()
            {
                let row = i * (k + 1) + j;
                at.extend(
                    (it.first_scored..it.tokens.len()).map(|t| (row * width + t - 1 + p) as u32),
                );
            }
        }
        let logits = self
            .model
            .logits(&hidden.index_select(&Tensor::new(at.as_slice(), &Device::Cpu)?, 0)?)?;
        let vocab = logits.dim(1)?;
        let logits = logits.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(items.len());
        let mut base = 0;
        for it in items {
            let n = it.tokens.len() - it.first_scored;
            let row = |j: usize, t: usize| {
                let r = base + j * n + t;
                &logits[r * vocab..(r + 1) * vocab]
            };
            out.push(
                (0..n)
                    .map(|t| {
                        let biased: Vec<&[f32]> = (1..=k).map(|j| row(j, t)).collect();
                        let target = it.tokens[it.first_scored + t] as usize;
                        debiased_logprob(
                            row(0, t),
                            &biased,
                            target,
                            self.config.decay,
                            self.config.epsilon,
                        )
                    })
                    .collect(),
            );
            base += (k + 1) * n;
        }
        Ok(out)
    }
}

impl Backend for SelfDebiased<'_> {
    fn context_length(&self) -> usize {
        let longest = self.config.prefixes.iter().map(Vec::len).max().unwrap_or(0);
        self.model.info().context_length.saturating_sub(longest)
    }

    fn score(
        &self,
        items: &[ScoreItem],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        check_items(items, self.context_length())?;
        // Each item is k + 1 rows: as many rows per forward pass as a plain batch.
        let per_pass = (batch_size / (self.config.prefixes.len() + 1)).max(1);
        let mut out = vec![Vec::new(); items.len()];
        for chunk in batches(items, per_pass) {
            let rows: Vec<&ScoreItem> = chunk.iter().map(|&i| &items[i]).collect();
            for (&i, s) in chunk.iter().zip(self.score_chunk(&rows)?) {
                out[i] = s;
            }
            on_batch(chunk.len());
        }
        check_finite(self.model, &out)?;
        Ok(out)
    }

    /// Each sample drawn from the self-debiased distribution: the prompt's prefixed copies are
    /// decoded beside it and fed the tokens it draws (as bias-bench's sampler does).
    fn generate_batched(
        &self,
        tok: &Tokenizer,
        prompts: &[(Vec<u32>, u64)],
        cfg: &SamplingConfig,
        plan: BatchPlan,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<Generation>>> {
        let k = self.config.prefixes.len();
        let companion_prompts = |p: &[u32]| self.prefixed(p);
        let (decay, epsilon) = (self.config.decay, self.config.epsilon);
        let combine = |own: &[f32], others: &[&[f32]]| -> Vec<f32> {
            debiased_logprobs(own, others, decay, epsilon)
                .into_iter()
                .map(|x| x as f32)
                .collect()
        };
        let companions = Companions {
            rows: k,
            prompts: &companion_prompts,
            combine: &combine,
        };
        // Each sample is k + 1 rows: as many rows per batch as a plain plan.
        let plan = BatchPlan {
            batch_rows: (plan.batch_rows / (k + 1)).max(plan.samples.max(1)),
            ..plan
        };
        generate_batched_with(
            self.model,
            tok,
            prompts,
            cfg,
            plan,
            progress,
            Some(&companions),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_a_prefix_raises_is_scaled_down_and_the_rest_renormalised() {
        let regular = [0.0f32, 0.0, 0.0, 0.0];
        // No prefix changes anything: the plain log-probability, ln ¼.
        let same = debiased_logprob(&regular, &[&regular], 0, 50.0, 0.01);
        assert!((same - 0.25f64.ln()).abs() < 1e-12);
        // A prefix that makes token 0 far likelier: its factor falls to ε's floor or near it,
        // and the other tokens gain what it loses.
        let biased = [4.0f32, 0.0, 0.0, 0.0];
        let down = debiased_logprob(&regular, &[&biased], 0, 50.0, 0.01);
        let up = debiased_logprob(&regular, &[&biased], 1, 50.0, 0.01);
        assert!(down < same - 3.0, "{down}");
        assert!(up > same, "{up}");
        // ε bounds the factor: p̃(0) = ¼ε / (¼ε + ¾).
        let floor = (0.25 * 0.01 / (0.25 * 0.01 + 0.75f64)).ln();
        assert!((down - floor).abs() < 1e-9, "{down} vs {floor}");
    }
}
