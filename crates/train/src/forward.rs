//! The trained model's one forward pass over a batch, which every loss of `losses` reads:
//! rows run in length buckets, log-softmax only where a next token exists, and the pairs'
//! aligned positions indexed by class table; and the batch it reads.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use fairlm_model::fused::log_softmax;
use fairlm_model::{CausalLm, KvCache};

use crate::error::Result;

/// A sentence about group g and its twin about h, tokenised with the context token first;
/// `aligned` are prefix lengths (sequence positions whose next-token distributions correspond).
pub struct PairItem {
    /// The sentence's tokens.
    pub a: Vec<u32>,
    /// The twin's tokens.
    pub b: Vec<u32>,
    /// (prefix length in `a`, prefix length in `b`) of corresponding positions.
    pub aligned: Vec<(usize, usize)>,
    /// Leading tokens of `a` and of `b` that are given rather than predicted (see `Sentence`).
    pub given_a: usize,
    /// As `given_a`, for `b`.
    pub given_b: usize,
    /// Index of the (axis, g, h) class table.
    pub table: usize,
    /// The lexicon axis.
    pub axis: usize,
    /// The sentence's group.
    pub group_a: usize,
    /// The twin's group.
    pub group_b: usize,
}

/// A sentence's tokens and how many leading ones are given rather than predicted: the context
/// token and, for a sentence sampled from the model, the prompt it was sampled from. The
/// prompts are the trainer's scaffolding (the `train` templates, the neutral prompts): the
/// cross-entropy that taught them leaked their phrases into the model's own text (RESULTS.md).
#[derive(Debug, Clone, Default)]
pub struct Sentence {
    /// The tokens, context token first.
    pub ids: Vec<u32>,
    /// Leading tokens given rather than predicted.
    pub given: usize,
}

/// One micro-batch: counterfactual pairs, neutral sentences and plain ones.
#[derive(Default)]
pub struct Batch {
    /// Sentence–twin pairs: every loss.
    pub pairs: Vec<PairItem>,
    /// Neutral sentences: cross-entropy and the anchor.
    pub neutral: Vec<Sentence>,
    /// Sentences that mention several groups: cross-entropy only.
    pub plain: Vec<Sentence>,
}

impl Batch {
    /// Tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.pairs
            .iter()
            .map(|p| p.a.len() + p.b.len())
            .sum::<usize>()
            + self
                .neutral
                .iter()
                .chain(&self.plain)
                .map(|s| s.ids.len())
                .sum::<usize>()
    }
}

/// Compact logit rows of the pairs that share one class table.
#[derive(Default)]
pub(crate) struct TableRows {
    /// Aligned positions in the sentences, and the matching positions in their twins.
    pub(crate) sentence: Vec<u32>,
    pub(crate) twin: Vec<u32>,
    /// Every position of both, for the equalising loss.
    pub(crate) every: Vec<u32>,
    /// `sentence` and `twin` in the frozen model's hidden-state matrix.
    pub(crate) frozen_sentence: Vec<u32>,
    pub(crate) frozen_twin: Vec<u32>,
}

/// The trained model's one forward pass over a batch, which every loss reads: rows are the
/// pairs' sentences, their twins, the neutral sentences, then the plain ones.
pub(crate) struct Forward<'a> {
    pub(crate) batch: &'a Batch,
    /// Hidden states, [n, hidden]; row r's position `pos` is at `start[r] + pos`.
    pub(crate) hidden: Tensor,
    pub(crate) start: Vec<usize>,
    /// Log-softmax at every position that has a next token: row r's position `pos` is
    /// compact row `offsets[r] + pos`.
    pub(crate) logp: Tensor,
    pub(crate) offsets: Vec<usize>,
    /// Each compact position's log-probability of the token that follows it, [n_pos, 1].
    pub(crate) token_logp: Tensor,
    /// The compact positions the cross-entropy reads (those not given).
    pub(crate) predicted: Vec<u32>,
    /// The pairs' aligned positions, grouped by class table and all together.
    pub(crate) by_table: BTreeMap<usize, TableRows>,
    pub(crate) all_sentence: Vec<u32>,
    pub(crate) all_twin: Vec<u32>,
    /// The frozen model and its hidden states of the pairs' rows, for the pair anchor.
    pub(crate) pair_anchor: Option<(&'a dyn CausalLm, Tensor)>,
    /// With the group-prior anchor: the compact positions that predict each pair's first
    /// swapped words (left out of the cross-entropy), and their (row, position).
    pub(crate) prior: Vec<u32>,
    pub(crate) prior_rows: Vec<(usize, usize)>,
}

impl<'a> Forward<'a> {
    pub(crate) fn run(
        model: &dyn CausalLm,
        frozen: Option<&'a dyn CausalLm>,
        batch: &'a Batch,
        with_pair_anchor: bool,
        with_group_prior: bool,
    ) -> Result<Self> {
        let p = batch.pairs.len();
        let rows = batch_rows(batch);
        let given: Vec<usize> = (batch.pairs.iter().map(|x| x.given_a))
            .chain(batch.pairs.iter().map(|x| x.given_b))
            .chain(batch.neutral.iter().chain(&batch.plain).map(|s| s.given))
            .collect();
        let (hidden, start) = bucketed_hidden(model, &rows)?;
        let frozen_pairs = match frozen {
            Some(f) if with_pair_anchor && p > 0 => Some((f, bucketed_hidden(f, &rows[..2 * p])?)),
            _ => None,
        };
        // Logits only where a next token exists: padding and each row's last position never
        // reach the vocabulary-sized work.
        let mut offsets = Vec::with_capacity(rows.len());
        let mut compact = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            offsets.push(compact.len());
            compact.extend((0..row.len().saturating_sub(1)).map(|pos| (start[r] + pos) as u32));
        }
        let at = |r: usize, pos: usize| (offsets[r] + pos) as u32;
        let n_pos = compact.len();
        let logp = log_softmax(&model.logits(&hidden.index_select(&index(&compact)?, 0)?)?)?;
        // The positions that predict each pair's first swapped words (row, position).
        let mut prior_rows = Vec::new();
        if with_group_prior {
            for (i, item) in batch.pairs.iter().enumerate() {
                let (first, end_a, end_b) = swapped_span(item);
                // Position pos predicts token pos + 1.
                prior_rows.extend((first.max(1) - 1..end_a - 1).map(|pos| (i, pos)));
                prior_rows.extend((first.max(1) - 1..end_b - 1).map(|pos| (p + i, pos)));
            }
        }
        let prior: Vec<u32> = prior_rows.iter().map(|&(r, pos)| at(r, pos)).collect();
        let in_prior: std::collections::HashSet<u32> = prior.iter().copied().collect();
        let mut targets = Vec::with_capacity(n_pos);
        let mut predicted = Vec::with_capacity(n_pos);
        for (r, row) in rows.iter().enumerate() {
            targets.extend_from_slice(row.get(1..).unwrap_or_default());
            // Position pos predicts token pos + 1.
            predicted.extend(
                (given[r].max(1) - 1..row.len().saturating_sub(1))
                    .map(|pos| at(r, pos))
                    .filter(|ix| !in_prior.contains(ix)),
            );
        }
        let targets = Tensor::from_vec(targets, (n_pos, 1), &Device::Cpu)?;
        let token_logp = logp.gather(&targets, 1)?;

        let mut by_table: BTreeMap<usize, TableRows> = Default::default();
        let (mut all_sentence, mut all_twin) = (Vec::new(), Vec::new());
        for (i, item) in batch.pairs.iter().enumerate() {
            let e = by_table.entry(item.table).or_default();
            for &(ka, kb) in &item.aligned {
                let (fa, fb) = (at(i, ka), at(p + i, kb));
                e.sentence.push(fa);
                e.twin.push(fb);
                if let Some((_, (_, frozen_start))) = &frozen_pairs {
                    e.frozen_sentence.push((frozen_start[i] + ka) as u32);
                    e.frozen_twin.push((frozen_start[p + i] + kb) as u32);
                }
                all_sentence.push(fa);
                all_twin.push(fb);
            }
            e.every
                .extend((0..item.a.len().saturating_sub(1)).map(|pos| at(i, pos)));
            e.every
                .extend((0..item.b.len().saturating_sub(1)).map(|pos| at(p + i, pos)));
        }
        Ok(Forward {
            batch,
            hidden,
            start,
            logp,
            offsets,
            token_logp,
            predicted,
            by_table,
            all_sentence,
            all_twin,
            pair_anchor: frozen_pairs.map(|(f, (h, _))| (f, h)),
            prior,
            prior_rows,
        })
    }

    /// Compact position of row r's position `pos`.
    pub(crate) fn at(&self, r: usize, pos: usize) -> u32 {
        (self.offsets[r] + pos) as u32
    }

    /// Rows of `logp` at compact positions `ix`.
    pub(crate) fn logp_at(&self, ix: &[u32]) -> Result<Tensor> {
        Ok(self.logp.index_select(&index(ix)?, 0)?)
    }
}

/// Where a pair's sentence and twin part: the first token they differ at, and the end of the
/// first swapped span in each (the first aligned prefix past it, else one token).
pub(crate) fn swapped_span(item: &PairItem) -> (usize, usize, usize) {
    let first = item
        .a
        .iter()
        .zip(&item.b)
        .take_while(|(x, y)| x == y)
        .count();
    let end = |k: fn(&(usize, usize)) -> usize, len: usize| {
        item.aligned
            .iter()
            .map(k)
            .filter(|&e| e > first)
            .min()
            .unwrap_or(first + 1)
            .min(len)
    };
    (
        first,
        end(|x| x.0, item.a.len()),
        end(|x| x.1, item.b.len()),
    )
}

/// The batch's rows in the order of [`Forward`].
fn batch_rows(batch: &Batch) -> Vec<&Vec<u32>> {
    let mut rows: Vec<&Vec<u32>> = Vec::new();
    rows.extend(batch.pairs.iter().map(|x| &x.a));
    rows.extend(batch.pairs.iter().map(|x| &x.b));
    rows.extend(batch.neutral.iter().map(|s| &s.ids));
    rows.extend(batch.plain.iter().map(|s| &s.ids));
    rows
}

/// Per forward call cost in padded-token equivalents, weighed against padding when rows are
/// split into length buckets.
const BUCKET_OVERHEAD_TOKENS: usize = 16;

/// Splits rows sorted by length into contiguous buckets that minimise padded tokens plus a
/// per-bucket overhead (dynamic programming over the split points). Returns bucket ends.
fn length_buckets(sorted_lengths: &[usize]) -> Vec<usize> {
    let n = sorted_lengths.len();
    let mut best = vec![(0usize, 0usize); n + 1];
    for end in 1..=n {
        best[end] = (1..=end)
            .map(|start| {
                let width = sorted_lengths[end - 1];
                let cost = best[start - 1].0 + (end - start + 1) * width + BUCKET_OVERHEAD_TOKENS;
                (cost, start - 1)
            })
            .min()
            .unwrap_or((0, 0));
    }
    let mut ends = Vec::new();
    let mut end = n;
    while end > 0 {
        ends.push(end);
        end = best[end].1;
    }
    ends.reverse();
    ends
}

/// Hidden states of `rows`, run in length buckets rather than one rectangle padded to the
/// longest row (a batch of the default corpus pads ~750 tokens for ~460 real ones), as one
/// [n, hidden] matrix: row r's position `pos` is at `start[r] + pos`.
pub fn bucketed_hidden(model: &dyn CausalLm, rows: &[&Vec<u32>]) -> Result<(Tensor, Vec<usize>)> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&r| rows[r].len());
    let lengths: Vec<usize> = order.iter().map(|&r| rows[r].len().max(1)).collect();
    let hidden_size = model.info().hidden_size;
    let mut start = vec![0usize; rows.len()];
    let (mut parts, mut flat_len, mut first) = (Vec::new(), 0usize, 0usize);
    for end in length_buckets(&lengths) {
        let bucket: Vec<&Vec<u32>> = order[first..end].iter().map(|&r| rows[r]).collect();
        let (ids, t) = padded(&bucket)?;
        let h = model.hidden(&ids, &mut KvCache::new(model.info().n_layers))?;
        parts.push(h.reshape((bucket.len() * t, hidden_size))?);
        for (j, &r) in order[first..end].iter().enumerate() {
            start[r] = flat_len + j * t;
        }
        flat_len += bucket.len() * t;
        first = end;
    }
    tracing::debug!(
        rows = rows.len(),
        real_tokens = lengths.iter().sum::<usize>(),
        one_rectangle = rows.len() * lengths.last().copied().unwrap_or(0),
        bucketed = flat_len,
        buckets = parts.len(),
        "bucketed forward"
    );
    let hidden = if let [only] = parts.as_slice() {
        only.clone()
    } else {
        Tensor::cat(&parts, 0)?
    };
    Ok((hidden, start))
}

pub(crate) fn padded(rows: &[&Vec<u32>]) -> Result<(Tensor, usize)> {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(1);
    let mut flat = Vec::with_capacity(rows.len() * t);
    for r in rows {
        flat.extend_from_slice(r);
        flat.extend(std::iter::repeat_n(0u32, t - r.len()));
    }
    Ok((Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu)?, t))
}

pub(crate) fn index(ix: &[u32]) -> Result<Tensor> {
    Ok(Tensor::new(ix, &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_buckets_trade_padding_against_calls() {
        // Equal rows: one bucket. A long tail: its own bucket.
        assert_eq!(length_buckets(&[10, 10, 10, 10]), vec![4]);
        assert_eq!(length_buckets(&[8, 9, 10, 10, 40, 41]), vec![4, 6]);
        assert_eq!(length_buckets(&[]), Vec::<usize>::new());
    }
}
