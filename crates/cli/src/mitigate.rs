//! `fairlm mitigate`: arguments into a config, and printing; the run (corpus, augmentation,
//! training, the mitigated model's files) is `fairlm_pipeline::mitigate`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{ArgMatches, Args};
use fairlm_pipeline::{MitigateConfig, TrainSettings};

use crate::engine::ModelArgs;
use crate::terminal::terminal;

#[derive(Args, Clone)]
pub struct MitigateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory: model/ (Hugging Face), model.gguf, train.json, train-log.jsonl,
    /// corpus.json, mitigate.json, checkpoint/.
    #[arg(value_parser = crate::args::path, long)]
    pub out: PathBuf,
    /// Continue from OUT/checkpoint (the settings and input files must be those it was
    /// started with).
    #[arg(long)]
    pub resume: bool,
    /// A config file (TOML, as `fairlm config --print mitigate` writes it, or an earlier
    /// mitigation's train.json) to run; the flags given here override its settings.
    #[arg(value_parser = crate::args::path, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Training options shared by `mitigate` and `experiment`.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Training text (one sentence per line, or JSONL with `text`); default: sampled from the
    /// model on the `train` templates and neutral prompts.
    #[arg(value_parser = crate::args::path, long)]
    pub corpus: Option<PathBuf>,
    /// `full`, `last-K` (the last K blocks and the final norm) or `lora-R` (merged on save).
    #[arg(long, default_value_t = TrainSettings::default().mode)]
    pub mode: String,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().steps)]
    pub steps: usize,
    /// Counterfactual pairs per micro-batch.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().pairs)]
    pub pairs: usize,
    /// Neutral sentences per micro-batch.
    #[arg(long, default_value_t = TrainSettings::default().neutral)]
    pub neutral: usize,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().accumulation)]
    pub accumulation: usize,
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = TrainSettings::default().warmup)]
    pub warmup: usize,
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().clip)]
    pub clip: f64,
    /// Weight of the LM cross-entropy on the augmented data.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().w_ce)]
    pub w_ce: f64,
    /// Weight of the swap-aware counterfactual consistency loss.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().w_consistency)]
    pub w_consistency: f64,
    /// Weight of the equalising loss (Qian et al. 2019).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().w_equalising)]
    pub w_equalising: f64,
    /// Weight of the attribute-gap penalty (needs --attributes or the default occupations).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().w_attribute)]
    pub w_attribute: f64,
    /// Weight of the KL anchor to the original model on neutral text.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().w_anchor)]
    pub w_anchor: f64,
    /// Weight of the KL to the original model's counterfactual average (the normalised
    /// geometric mean of its next-token distributions after a sentence and after its twin)
    /// at aligned positions (RESULTS.md: it keeps diversity and perplexity, and lowers the
    /// samples' likelihood under the original).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().w_pair_anchor)]
    pub w_pair_anchor: f64,
    /// Weight of the sequence-level counterfactual term: a pair's whole-sentence log-ratio
    /// log P(s) − log P(swap(s)) from the first swapped token on, against the original's
    /// log-ratio of the swapped words alone after the context token (how often each group is
    /// named at all is kept).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().w_sequence)]
    pub w_sequence: f64,
    /// Weight of the group-prior anchor: at the positions that predict a pair's first swapped
    /// words, the KL from the original model's distribution instead of the cross-entropy (the
    /// augmented corpus does not even out how often each group is named).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().w_group_prior)]
    pub w_group_prior: f64,
    /// λ of the gradient reversal in front of the adversarial discriminator (0: off).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().adversary)]
    pub adversary: f64,
    /// Comma-separated attribute words for the attribute-gap penalty (default: the
    /// occupations and traits of data/attributes.toml).
    #[arg(long, value_delimiter = ',')]
    pub attributes: Vec<String>,
    /// Stop when held-out perplexity rises more than this many percent.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().guard)]
    pub guard: f64,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().eval_every)]
    pub eval_every: usize,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().checkpoint_every)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = TrainSettings::default().seed)]
    pub seed: u64,
    /// Matrix type of the GGUF output: f32, f16, q8_0 or q4_1 (vectors stay f32).
    #[arg(long, default_value_t = TrainSettings::default().gguf_type)]
    pub gguf_type: String,
    /// Comma-separated axes (default: all).
    #[arg(long, value_delimiter = ',')]
    pub axes: Vec<String>,
    #[arg(value_parser = crate::args::path, long)]
    pub lexicon: Option<PathBuf>,
    #[arg(value_parser = crate::args::path, long)]
    pub templates: Option<PathBuf>,
    /// Continuations per (train template, group) in the sampled corpus.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().corpus_samples)]
    pub corpus_samples: usize,
    /// Counterfactual pairs probed for the discriminator accuracy before and after.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = TrainSettings::default().discriminator_pairs)]
    pub discriminator_pairs: usize,
    /// Sample the corpus from at most this many `train` templates (default: all).
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long)]
    pub corpus_templates: Option<usize>,
    /// Give the sampled corpus's prompts to the model instead of teaching them (the
    /// cross-entropy skips them; RESULTS.md: less template text in the samples, but their
    /// group-averaged log-prob under the original falls further).
    #[arg(long)]
    pub give_prompts: bool,
}

impl TrainArgs {
    /// The settings the flags (and their defaults) give.
    pub fn settings(&self) -> TrainSettings {
        TrainSettings {
            corpus: self.corpus.clone(),
            mode: self.mode.clone(),
            steps: self.steps,
            pairs: self.pairs,
            neutral: self.neutral,
            accumulation: self.accumulation,
            lr: self.lr,
            warmup: self.warmup,
            clip: self.clip,
            w_ce: self.w_ce,
            w_consistency: self.w_consistency,
            w_equalising: self.w_equalising,
            w_attribute: self.w_attribute,
            w_anchor: self.w_anchor,
            w_pair_anchor: self.w_pair_anchor,
            w_sequence: self.w_sequence,
            w_group_prior: self.w_group_prior,
            adversary: self.adversary,
            attributes: self.attributes.clone(),
            guard: self.guard,
            eval_every: self.eval_every,
            checkpoint_every: self.checkpoint_every,
            seed: self.seed,
            gguf_type: self.gguf_type.clone(),
            axes: self.axes.clone(),
            lexicon: self.lexicon.clone(),
            templates: self.templates.clone(),
            corpus_samples: self.corpus_samples,
            discriminator_pairs: self.discriminator_pairs,
            corpus_templates: self.corpus_templates,
            give_prompts: self.give_prompts,
        }
    }

    /// `file`'s settings with the flags `given` on the command line over them.
    pub fn over(&self, file: &mut TrainSettings, given: &ArgMatches) {
        let flags = self.settings();
        flags_over_file!(given, file, flags;
            corpus, mode, steps, pairs, neutral, accumulation, lr, warmup, clip, w_ce,
            w_consistency, w_equalising, w_attribute, w_anchor, w_pair_anchor, w_sequence,
            w_group_prior, adversary, attributes, guard, eval_every, checkpoint_every, seed, gguf_type, axes,
            lexicon, templates, corpus_samples, discriminator_pairs, corpus_templates,
            give_prompts
        );
    }
}

impl MitigateArgs {
    /// The run's config: `--config FILE`'s, with the flags `given` on the command line over
    /// it; without a file, the flags' (and their defaults).
    pub fn config(&self, given: &ArgMatches) -> Result<MitigateConfig> {
        let flags = MitigateConfig {
            model: self.model.model.clone(),
            dtype: self.model.dtype,
            allow_download: self.model.allow_download,
            train: self.train.settings(),
        };
        let Some(path) = &self.config else {
            return Ok(flags);
        };
        let mut cfg = MitigateConfig::read(path)?;
        flags_over_file!(given, cfg, flags; model, dtype, allow_download);
        self.train.over(&mut cfg.train, given);
        Ok(cfg)
    }
}

pub fn run(a: MitigateArgs, given: &ArgMatches) -> Result<()> {
    fairlm_pipeline::mitigate(&a.config(given)?, &a.out, a.resume, Arc::new(terminal()))?;
    Ok(())
}
