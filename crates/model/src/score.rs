//! Batched scoring: per-token log-probabilities of token sequences under a model, padded on
//! the right (exact under the causal mask, engine-notes.md trap 7), accumulated in f64.
//! Log-probabilities come from a log-sum-exp per position and the target's logit, so the
//! full-vocabulary log-softmax is never materialised.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::lm::CausalLm;

/// One sequence to score: `tokens[first_scored..]` are scored given everything before.
#[derive(Debug, Clone)]
pub struct ScoreItem {
    /// The whole sequence, context included.
    pub tokens: Vec<u32>,
    /// The first position whose token is scored.
    pub first_scored: usize,
}

impl ScoreItem {
    /// A text's ids after a context (e.g. `<|endoftext|>`): every text token is scored.
    pub fn after_context(context: &[u32], ids: &[u32]) -> Self {
        let mut tokens = context.to_vec();
        tokens.extend_from_slice(ids);
        ScoreItem {
            tokens,
            first_scored: context.len().max(1),
        }
    }
}

/// Scores of one text under the two conventions fairlm names.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TextScore {
    /// `sum`: total log-probability of the text's tokens after the context token.
    pub logprob_sum: f64,
    /// `mean`: mean token log-probability (log of the geometric-mean token probability),
    /// the first token scored from the context token alone (bias-bench's convention).
    pub logprob_mean: f64,
    /// Tokens scored.
    pub n_tokens: usize,
    /// Each scored token's log-probability.
    pub token_logprobs: Vec<f64>,
}

impl TextScore {
    /// Both conventions from the tokens' log-probabilities.
    pub fn from_logprobs(token_logprobs: Vec<f64>) -> Self {
        let sum: f64 = token_logprobs.iter().sum();
        let n = token_logprobs.len();
        TextScore {
            logprob_sum: sum,
            logprob_mean: if n == 0 { 0.0 } else { sum / n as f64 },
            n_tokens: n,
            token_logprobs,
        }
    }
}

/// Per-token log-probabilities of each item's scored tokens, in the order given.
/// Items are grouped by length to cut padding; `on_batch` is told how many items are done.
pub fn score_items(
    model: &dyn CausalLm,
    items: &[ScoreItem],
    batch_size: usize,
    on_batch: impl FnMut(usize),
) -> Result<Vec<Vec<f64>>> {
    Ok(score_all(model, items, batch_size, on_batch, false)?.0)
}

/// The most likely next token after an item and its log-probability.
pub type Next = (u32, f64);

/// `score_items`, and for each item the greedy next token after its last one, read off the
/// same forward pass (a sequence longer than one pass feeds its last token once more): a
/// server's answer to an echo request that asks one greedy token.
pub fn score_items_and_next(
    model: &dyn CausalLm,
    items: &[ScoreItem],
    batch_size: usize,
    on_batch: impl FnMut(usize),
) -> Result<BatchScores> {
    score_all(model, items, batch_size, on_batch, true)
}

fn score_all(
    model: &dyn CausalLm,
    items: &[ScoreItem],
    batch_size: usize,
    mut on_batch: impl FnMut(usize),
    want_next: bool,
) -> Result<BatchScores> {
    check_items(items, model.info().context_length)?;
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); items.len()];
    let mut next: Vec<Option<Next>> = vec![None; items.len()];
    for chunk in batches(items, batch_size) {
        let rows: Vec<&ScoreItem> = chunk.iter().map(|&i| &items[i]).collect();
        let (scores, greedy) = score_batch(model, &rows, want_next)?;
        for ((&i, s), g) in chunk.iter().zip(scores).zip(greedy) {
            out[i] = s;
            next[i] = g;
        }
        on_batch(chunk.len());
    }
    check_finite(model, &out)?;
    Ok((out, next))
}

/// Refuses items longer than the model's context or with nothing to score.
pub fn check_items(items: &[ScoreItem], context: usize) -> Result<()> {
    for (i, it) in items.iter().enumerate() {
        if it.tokens.len() > context {
            return Err(Error::TooLong {
                index: i + 1,
                tokens: it.tokens.len(),
                context,
            });
        }
        if it.first_scored == 0 || it.first_scored > it.tokens.len() {
            return Err(Error::Invalid(format!(
                "item {i}: first scored position {} outside 1..={}",
                it.first_scored,
                it.tokens.len()
            )));
        }
    }
    Ok(())
}

/// Refuses rows with a NaN or infinite log-probability (a model with a broken weight or
/// config computes them; reporting them as figures would be a wrong number). Text and token
/// are counted from 1 in the message.
pub fn check_finite(model: &dyn CausalLm, rows: &[Vec<f64>]) -> Result<()> {
    for (text, row) in rows.iter().enumerate() {
        if let Some(token) = row.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                model: model.info().source.clone(),
                text: text + 1,
                token: token + 1,
            });
        }
    }
    Ok(())
}

/// Queries per forward pass for long sequences: bounds the attention matrix and the logits
/// at `QUERY_CHUNK` rows (a 3,600-token text in one pass spends most of its time allocating
/// a [heads, n, n] score matrix per layer).
const QUERY_CHUNK: usize = 512;

/// Per-token log-probabilities of each item, and each item's greedy next token.
pub type BatchScores = (Vec<Vec<f64>>, Vec<Option<Next>>);

fn score_batch(model: &dyn CausalLm, rows: &[&ScoreItem], want_next: bool) -> Result<BatchScores> {
    if rows.len() == 1 && rows[0].tokens.len() > QUERY_CHUNK {
        let (scores, next) = score_long(model, rows[0], want_next)?;
        return Ok((vec![scores], vec![next]));
    }
    let width = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for r in rows {
        flat.extend_from_slice(&r.tokens);
        flat.extend(std::iter::repeat_n(0u32, width - r.tokens.len()));
    }
    let ids = Tensor::from_vec(flat, (rows.len(), width), &Device::Cpu)?;
    let mut cache = model.new_cache();
    let logits = model.forward(&ids, &mut cache)?.logits;
    let vocab = logits.dim(2)?;
    let logits = logits.flatten_all()?.to_vec1::<f32>()?;
    Ok(rows
        .par_iter()
        .enumerate()
        .map(|(b, r)| {
            let scores = (r.first_scored..r.tokens.len())
                .map(|t| {
                    let row = &logits[(b * width + t - 1) * vocab..(b * width + t) * vocab];
                    target_logprob(row, r.tokens[t] as usize)
                })
                .collect();
            let t = r.tokens.len();
            let last = &logits[(b * width + t - 1) * vocab..(b * width + t) * vocab];
            (scores, want_next.then(|| greedy_next(last)))
        })
        .unzip())
}

/// One long sequence, fed in chunks of `QUERY_CHUNK` queries through the key/value cache.
/// The greedy token of a row of logits and its log-probability.
fn greedy_next(row: &[f32]) -> Next {
    let best = crate::generate::argmax(row);
    (best, target_logprob(row, best as usize))
}

fn score_long(
    model: &dyn CausalLm,
    item: &ScoreItem,
    want_next: bool,
) -> Result<(Vec<f64>, Option<Next>)> {
    let mut cache = model.new_cache();
    let mut out = Vec::with_capacity(item.tokens.len() - item.first_scored);
    let n = item.tokens.len();
    for start in (0..n - 1).step_by(QUERY_CHUNK) {
        let end = (start + QUERY_CHUNK).min(n - 1);
        // Positions start..end predict tokens start+1..=end.
        let ids = Tensor::new(&item.tokens[start..end], &Device::Cpu)?.unsqueeze(0)?;
        let logits = model.forward(&ids, &mut cache)?.logits;
        let vocab = logits.dim(2)?;
        let first = item.first_scored.max(start + 1);
        if first > end {
            continue;
        }
        let rows = logits
            .squeeze(0)?
            .narrow(0, first - 1 - start, end + 1 - first)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let scored: Vec<f64> = (first..=end)
            .into_par_iter()
            .map(|t| {
                let i = t - first;
                target_logprob(&rows[i * vocab..(i + 1) * vocab], item.tokens[t] as usize)
            })
            .collect();
        out.extend(scored);
    }
    if !want_next {
        return Ok((out, None));
    }
    // The last token, fed alone through the cache, gives the next token's logits.
    let ids = Tensor::new(&item.tokens[n - 1..], &Device::Cpu)?.unsqueeze(0)?;
    let last = model
        .forward(&ids, &mut cache)?
        .logits
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((out, Some(greedy_next(&last))))
}

/// `log softmax(row)[target]`, with the sum of exponentials accumulated in f64.
pub fn target_logprob(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| f64::from((x - max).exp())).sum();
    f64::from(row[target] - max) - sum.ln()
}

/// The order and the batches in which `score_items` scores `items`: indexes sorted by length,
/// longest first (ties in input order), cut into chunks of `batch_size`.
pub fn batches(items: &[ScoreItem], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(items[i].tokens.len()));
    order
        .chunks(batch_size.max(1))
        .map(|c| c.to_vec())
        .collect()
}

/// Log-probabilities of several continuations of one prompt (see `score_after_prompts`).
pub fn score_continuations(
    model: &dyn CausalLm,
    prompt: &[u32],
    continuations: &[Vec<u32>],
    batch_size: usize,
) -> Result<Vec<Vec<f64>>> {
    let items: Vec<(usize, &[u32])> = continuations.iter().map(|c| (0, c.as_slice())).collect();
    score_after_prompts(model, &[prompt], &items, batch_size)
}

/// One pass of `score_prompted`: prompts of one token length, and the items that follow each
/// (indexes into the caller's items, with the pass's prompt number).
pub struct PromptPass<'a> {
    /// The pass's prompts, all of one token length.
    pub prompts: Vec<&'a [u32]>,
    /// (prompt number in `prompts`, item index), prompt by prompt.
    pub items: Vec<(usize, usize)>,
}

/// How `score_prompted` groups `(prompt, continuation)` items: equal prompts once, prompts of
/// one token length together, at most 16 per pass (it bounds the caches held at once), by
/// length then prompt. A server running fairlm is sent the same passes.
pub fn prompt_passes<'a>(items: &[(&'a [u32], &[u32])]) -> Vec<PromptPass<'a>> {
    const PROMPTS_PER_PASS: usize = 16;
    let mut prompts: std::collections::BTreeMap<&[u32], Vec<usize>> = Default::default();
    for (i, (p, _)) in items.iter().enumerate() {
        prompts.entry(p).or_default().push(i);
    }
    // Prompt length → the prompts of that length, each with the items that follow it.
    type SameLength<'a> = Vec<(&'a [u32], Vec<usize>)>;
    let mut by_len: std::collections::BTreeMap<usize, SameLength> = Default::default();
    for (p, idx) in prompts {
        by_len.entry(p.len()).or_default().push((p, idx));
    }
    let mut passes = Vec::new();
    for group in by_len.values() {
        for chunk in group.chunks(PROMPTS_PER_PASS) {
            passes.push(PromptPass {
                prompts: chunk.iter().map(|(p, _)| *p).collect(),
                items: chunk
                    .iter()
                    .enumerate()
                    .flat_map(|(k, (_, idx))| idx.iter().map(move |&i| (k, i)))
                    .collect(),
            });
        }
    }
    passes
}

/// Log-probabilities of each `(prompt, continuation)` pair's continuation, in order, for
/// prompts of any lengths: each pass of `prompt_passes` is scored with its prompts' caches
/// (`score_after_prompts`).
pub fn score_prompted(
    model: &dyn CausalLm,
    items: &[(&[u32], &[u32])],
    batch_size: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<f64>>> {
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); items.len()];
    for pass in prompt_passes(items) {
        let conts: Vec<(usize, &[u32])> =
            pass.items.iter().map(|&(k, i)| (k, items[i].1)).collect();
        let scores = score_after_prompts(model, &pass.prompts, &conts, batch_size)?;
        for (&(_, i), sc) in pass.items.iter().zip(scores) {
            out[i] = sc;
        }
        progress(conts.len());
    }
    Ok(out)
}

/// Log-probabilities of continuations after prompts of one token length: the prompts are
/// run once, together, and each continuation (`(prompt index, tokens)`) reuses its prompt's
/// cache; its first token is scored from the prompt's last position. Same numbers as
/// scoring prompt + continuation whole; continuations are batched longest first, at most
/// `batch_size` rows per pass.
pub fn score_after_prompts(
    model: &dyn CausalLm,
    prompts: &[&[u32]],
    items: &[(usize, &[u32])],
    batch_size: usize,
) -> Result<Vec<Vec<f64>>> {
    let Some(len) = prompts.first().map(|p| p.len()) else {
        return Ok(Vec::new());
    };
    if len == 0 || prompts.iter().any(|p| p.len() != len) {
        return Err(Error::Invalid(
            "prompts scored together must be non-empty and of one length".into(),
        ));
    }
    if let Some((i, _)) = items.iter().find(|(p, _)| *p >= prompts.len()) {
        return Err(Error::Invalid(format!(
            "continuation refers to prompt {i} of {}",
            prompts.len()
        )));
    }
    let ctx = model.info().context_length;
    let longest = items.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    if len + longest > ctx {
        return Err(Error::TooLong {
            index: 1,
            tokens: len + longest,
            context: ctx,
        });
    }
    let flat: Vec<u32> = prompts.iter().flat_map(|p| p.iter().copied()).collect();
    let ids = Tensor::from_vec(flat, (prompts.len(), len), &Device::Cpu)?;
    let mut cache = model.new_cache();
    // Only the prompts' last positions need logits.
    let hidden = model.hidden(&ids, &mut cache)?.narrow(1, len - 1, 1)?;
    let last: Vec<f32> = model.logits(&hidden)?.flatten_all()?.to_vec1()?;
    let vocab = last.len() / prompts.len();
    // Longest continuations first, so that each batch pads its rows to nearly their own
    // length (ties in order).
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(items[i].1.len()));
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); items.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let chunk: Vec<(usize, (usize, &[u32]))> = chunk.iter().map(|&i| (i, items[i])).collect();
        let width = chunk.iter().map(|(_, (_, c))| c.len()).max().unwrap_or(0);
        // Continuations of one token (or none) need no pass beyond the prompts'.
        let rest: Vec<f32> = if width > 1 {
            let mut flat = Vec::with_capacity(chunk.len() * (width - 1));
            for (_, (_, c)) in &chunk {
                let body = &c[..c.len().saturating_sub(1)];
                flat.extend_from_slice(body);
                flat.extend(std::iter::repeat_n(0u32, width - 1 - body.len()));
            }
            let ids = Tensor::from_vec(flat, (chunk.len(), width - 1), &Device::Cpu)?;
            let rows: Vec<u32> = chunk.iter().map(|(_, (p, _))| *p as u32).collect();
            let mut rows_cache = cache.select(&Tensor::new(rows.as_slice(), &Device::Cpu)?)?;
            model
                .forward(&ids, &mut rows_cache)?
                .logits
                .flatten_all()?
                .to_vec1()?
        } else {
            Vec::new()
        };
        let scored: Vec<Vec<f64>> = chunk
            .par_iter()
            .enumerate()
            .map(|(b, (_, (p, c)))| {
                c.iter()
                    .enumerate()
                    .map(|(t, &tok)| {
                        // Position t ≥ 1 exists in `rest` because this continuation is longer than 1.
                        let row = if t == 0 {
                            &last[p * vocab..(p + 1) * vocab]
                        } else {
                            let at = (b * (width - 1) + t - 1) * vocab;
                            &rest[at..at + vocab]
                        };
                        target_logprob(row, tok as usize)
                    })
                    .collect()
            })
            .collect();
        for ((i, _), sc) in chunk.iter().zip(scored) {
            out[*i] = sc;
        }
    }
    check_finite(model, &out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::target_logprob;

    #[test]
    fn logprob_of_uniform_row_is_minus_log_n() {
        let row = [3.0f32; 8];
        assert!((target_logprob(&row, 5) + (8f64).ln()).abs() < 1e-12);
    }

    #[test]
    fn logprob_is_shift_invariant_and_stable() {
        let a = [1000.0f32, 999.0, 990.0];
        let b = [0.0f32, -1.0, -10.0];
        assert!((target_logprob(&a, 1) - target_logprob(&b, 1)).abs() < 1e-9);
        assert!(target_logprob(&a, 0).is_finite());
    }
}
