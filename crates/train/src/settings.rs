//! What a training run is given and what it reports: the trainer's config with its defaults
//! (the only place they are written), each step's log, the discriminator probe's accuracies
//! and the run's report. A bottom-level module: the batches, checkpoints and the loop all read
//! it.

use fairlm_bias::grammar::GrammarReport;

use crate::losses::{LossParts, LossWeights};
use crate::optim::AdamWConfig;
use crate::params::Mode;

/// How to train: steps, batch, optimiser, loss weights, guard and checkpoints.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Which weights train.
    pub mode: Mode,
    /// Optimiser steps.
    pub steps: usize,
    /// (sentence, twin) pairs per micro-batch.
    pub pairs_per_batch: usize,
    /// Neutral sentences per micro-batch (cross-entropy and anchor).
    pub neutral_per_batch: usize,
    /// Micro-batches per step (gradients summed).
    pub accumulation: usize,
    /// Peak learning rate (warm-up, then cosine to a tenth of it).
    pub learning_rate: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
    /// Global gradient-norm clip.
    pub clip_norm: f64,
    /// AdamW's hyper-parameters.
    pub adamw: AdamWConfig,
    /// Weights of the loss terms.
    pub weights: LossWeights,
    /// The adversary's learning rate.
    pub adversary_learning_rate: f64,
    /// Words whose probability gap between a context and its twin is penalised.
    pub attribute_words: Vec<String>,
    /// The seed of batch draws and initialisations.
    pub seed: u64,
    /// Steps between held-out perplexity checks.
    pub eval_every: usize,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Stop when held-out perplexity exceeds the original's by more than this fraction.
    pub perplexity_guard: f64,
    /// Pairs probed for the discriminator accuracy before and after.
    pub discriminator_pairs: usize,
    /// Give a sampled corpus's prompts to the model instead of teaching them (the
    /// cross-entropy skips the tokens of the prompt a sentence was sampled from). Off by
    /// default: measured on the default run, teaching them keeps the samples' group-averaged
    /// log-prob under the original (RESULTS.md).
    #[serde(default)]
    pub give_prompts: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            mode: Mode::Full,
            steps: 140,
            pairs_per_batch: 8,
            neutral_per_batch: 4,
            accumulation: 1,
            learning_rate: 3e-5,
            warmup_steps: 10,
            clip_norm: 1.0,
            adamw: AdamWConfig::default(),
            weights: LossWeights::default(),
            adversary_learning_rate: 1e-3,
            attribute_words: Vec::new(),
            seed: 0,
            eval_every: 20,
            checkpoint_every: 20,
            perplexity_guard: 0.05,
            discriminator_pairs: 160,
            give_prompts: false,
        }
    }
}

/// One optimiser step's log line (train-log.jsonl).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepLog {
    /// The step.
    pub step: usize,
    /// Its learning rate.
    pub learning_rate: f64,
    /// Each loss part, averaged over micro-batches.
    pub loss: LossParts,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens in the step's batches.
    pub tokens: usize,
    /// Wall seconds of the step.
    pub seconds: f64,
    /// Held-out perplexity, on steps that checked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_perplexity: Option<f64>,
}

/// Held-out accuracy of a discriminator that guesses a pair's group from hidden states, before and after.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DiscriminatorReport {
    /// Held-out accuracy of a fresh discriminator on the original model's states.
    pub before: f64,
    /// The same on the mitigated model's states.
    pub after: f64,
    /// Mean of 1/k over the probed pairs' axes.
    pub chance: f64,
    /// Pairs probed.
    pub pairs: usize,
}

/// What a training run did (train.json).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// Its settings.
    pub config: TrainConfig,
    /// Trainable scalars.
    pub trainable_parameters: usize,
    /// Corpus sentences before counterfactual augmentation.
    pub corpus_sentences_before: usize,
    /// Corpus sentences after it.
    pub corpus_sentences_after: usize,
    /// Steps trained.
    pub steps_done: usize,
    /// Why training ended before `steps`, if it did.
    pub stopped_early: Option<String>,
    /// The step whose weights were kept.
    pub kept_step: usize,
    /// Held-out perplexity of the original.
    pub base_perplexity: f64,
    /// Held-out perplexity of the kept weights.
    pub final_perplexity: f64,
    /// The discriminator probe, when pairs were probed.
    pub discriminator: Option<DiscriminatorReport>,
    /// The grammar check of the corpus's counterfactual twins (absent in reports written
    /// before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin_grammar: Option<GrammarReport>,
    /// Wall seconds.
    pub seconds: f64,
    /// Every step's log line.
    pub log: Vec<StepLog>,
}
