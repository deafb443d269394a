//! What the scoring commands need from a model, wherever it runs: per-token log-probabilities
//! of token sequences. `Local` runs a `CausalLm` in this process; `served::ServedModel` asks
//! an OpenAI-compatible server for the same numbers.

use crate::error::Result;
use crate::lm::CausalLm;
use crate::score::{score_items, ScoreItem};

pub trait TokenScorer: Sync {
    /// The longest sequence, in tokens, the model takes.
    fn context_length(&self) -> usize;

    /// Per-token log-probabilities of each item's scored tokens (`tokens[first_scored..]`),
    /// in the order given; `on_batch` is told how many items each finished batch held.
    /// Items are scored in batches of `batch_size`, longest first, on every backend alike,
    /// so that a server running fairlm computes the batches this process would.
    fn score(
        &self,
        items: &[ScoreItem],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>>;
}

/// A model loaded in this process.
pub struct Local<'a>(pub &'a dyn CausalLm);

impl TokenScorer for Local<'_> {
    fn context_length(&self) -> usize {
        self.0.info().context_length
    }

    fn score(
        &self,
        items: &[ScoreItem],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        score_items(self.0, items, batch_size, on_batch)
    }
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

impl<T: TokenScorer + ?Sized> TokenScorer for &T {
    fn context_length(&self) -> usize {
        (**self).context_length()
    }

    fn score(
        &self,
        items: &[ScoreItem],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        (**self).score(items, batch_size, on_batch)
    }
}
