//! What a training run is given and what it reports: the trainer's config with its defaults
//! (the only place they are written), each step's log, the discriminator probe's accuracies
//! and the run's report. A bottom-level module: the batches, checkpoints and the loop all read
//! it.

use fairlm_bias::grammar::GrammarReport;

use crate::losses::{LossParts, LossWeights};
use crate::optim::AdamWConfig;
use crate::params::Mode;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub mode: Mode,
    pub steps: usize,
    /// (sentence, twin) pairs per micro-batch.
    pub pairs_per_batch: usize,
    /// Neutral sentences per micro-batch (cross-entropy and anchor).
    pub neutral_per_batch: usize,
    pub accumulation: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub clip_norm: f64,
    pub adamw: AdamWConfig,
    pub weights: LossWeights,
    pub adversary_learning_rate: f64,
    /// Words whose probability gap between a context and its twin is penalised.
    pub attribute_words: Vec<String>,
    pub seed: u64,
    pub eval_every: usize,
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

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub learning_rate: f64,
    pub loss: LossParts,
    pub grad_norm: f64,
    pub tokens: usize,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_perplexity: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DiscriminatorReport {
    /// Held-out accuracy of a fresh discriminator on the original model's states.
    pub before: f64,
    /// The same on the mitigated model's states.
    pub after: f64,
    /// Mean of 1/k over the probed pairs' axes.
    pub chance: f64,
    pub pairs: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    pub config: TrainConfig,
    pub trainable_parameters: usize,
    pub corpus_sentences_before: usize,
    pub corpus_sentences_after: usize,
    pub steps_done: usize,
    /// Why training ended before `steps`, if it did.
    pub stopped_early: Option<String>,
    /// The step whose weights were kept.
    pub kept_step: usize,
    pub base_perplexity: f64,
    pub final_perplexity: f64,
    pub discriminator: Option<DiscriminatorReport>,
    /// The grammar check of the corpus's counterfactual twins (absent in reports written
    /// before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin_grammar: Option<GrammarReport>,
    pub seconds: f64,
    pub log: Vec<StepLog>,
}
