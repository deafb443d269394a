//! What the measuring commands need from a model, wherever it runs: per-token
//! log-probabilities of token sequences, of continuations after prompts, and seeded samples.
//! `Local` runs a `CausalLm` in this process; `served::ServedModel` asks an OpenAI-compatible
//! server for the same numbers.

use crate::error::Result;
use crate::generate::{BatchPlan, Generation, SamplingConfig};
use crate::lm::CausalLm;
use crate::score::{score_items, ScoreItem};
use crate::tokenizer::Tokenizer;

/// Where log-probabilities and samples come from: a model in this process, or a served one (`served`), behind one interface for the audit and the benchmarks.
pub trait Backend: Sync {
    /// The longest sequence, in tokens, the model takes.
    fn context_length(&self) -> usize;

    /// How many independent pieces of work (e.g. the probe's templates) a caller should run
    /// at once: 1 in process, where each already uses every core; a served model's
    /// concurrency, so that its requests keep the server busy.
    fn independent_work(&self) -> usize {
        1
    }

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

    /// Log-probabilities of continuations after prompts of one token length (each item is
    /// (prompt index, continuation)); see `score::score_after_prompts`. A backend without a
    /// prompt cache scores each prompt + continuation whole.
    fn score_after_prompts(
        &self,
        prompts: &[&[u32]],
        items: &[(usize, &[u32])],
        batch_size: usize,
    ) -> Result<Vec<Vec<f64>>> {
        let pairs: Vec<(&[u32], &[u32])> = items.iter().map(|(p, c)| (prompts[*p], *c)).collect();
        self.score_prompted(&pairs, batch_size, &mut |_| {})
    }

    /// Log-probabilities of each (prompt, continuation) pair's continuation, prompts of any
    /// lengths; see `score::score_prompted`. A backend without a prompt cache scores each
    /// prompt + continuation whole.
    fn score_prompted(
        &self,
        items: &[(&[u32], &[u32])],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        self.score(&whole_items(items), batch_size, progress)
    }

    /// `plan.samples` seeded continuations of each (prompt ids, prompt index); sample i of
    /// prompt p draws from the stream `generate::sample_seed(plan.seed, p, i)` on every
    /// backend. See `generate::generate_batched`.
    fn generate_batched(
        &self,
        tok: &Tokenizer,
        prompts: &[(Vec<u32>, u64)],
        cfg: &SamplingConfig,
        plan: BatchPlan,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<Generation>>>;
}

/// A model loaded in this process.
pub struct Local<'a>(pub &'a dyn CausalLm);

impl Backend for Local<'_> {
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

    fn score_after_prompts(
        &self,
        prompts: &[&[u32]],
        items: &[(usize, &[u32])],
        batch_size: usize,
    ) -> Result<Vec<Vec<f64>>> {
        crate::score::score_after_prompts(self.0, prompts, items, batch_size)
    }

    fn score_prompted(
        &self,
        items: &[(&[u32], &[u32])],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        crate::score::score_prompted(self.0, items, batch_size, progress)
    }

    fn generate_batched(
        &self,
        tok: &Tokenizer,
        prompts: &[(Vec<u32>, u64)],
        cfg: &SamplingConfig,
        plan: BatchPlan,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<Generation>>> {
        crate::generate::generate_batched(self.0, tok, prompts, cfg, plan, progress)
    }
}

/// Each (prompt, continuation) as one item, prompt + continuation, scored from the
/// continuation on: how a backend without a prompt cache scores a continuation.
pub fn whole_items(items: &[(&[u32], &[u32])]) -> Vec<ScoreItem> {
    items
        .iter()
        .map(|(p, c)| ScoreItem {
            first_scored: p.len(),
            tokens: [*p, *c].concat(),
        })
        .collect()
}

impl<T: Backend + ?Sized> Backend for &T {
    fn context_length(&self) -> usize {
        (**self).context_length()
    }

    fn independent_work(&self) -> usize {
        (**self).independent_work()
    }

    fn score(
        &self,
        items: &[ScoreItem],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        (**self).score(items, batch_size, on_batch)
    }

    fn score_after_prompts(
        &self,
        prompts: &[&[u32]],
        items: &[(usize, &[u32])],
        batch_size: usize,
    ) -> Result<Vec<Vec<f64>>> {
        (**self).score_after_prompts(prompts, items, batch_size)
    }

    fn score_prompted(
        &self,
        items: &[(&[u32], &[u32])],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        (**self).score_prompted(items, batch_size, progress)
    }

    fn generate_batched(
        &self,
        tok: &Tokenizer,
        prompts: &[(Vec<u32>, u64)],
        cfg: &SamplingConfig,
        plan: BatchPlan,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<Generation>>> {
        (**self).generate_batched(tok, prompts, cfg, plan, progress)
    }
}
