//! `fairlm mitigate`: the default corpus (or the user's), counterfactual augmentation,
//! training, and the mitigated model written as a Hugging Face directory and, for a GGUF
//! input, a GGUF. The work is `fairlm_train`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use fairlm_bias::audit::write_atomic;
use fairlm_bias::lexicon::Lexicon;
use fairlm_bias::templates::{self, Split};
use fairlm_model::save::{save_gguf, save_hf, GgufType};
use fairlm_model::{Checkpoint, Format, NumericPath};
use fairlm_train::corpus::{augment, read_corpus, sample_corpus, Corpus, SampleCorpusConfig};
use fairlm_train::losses::LossWeights;
use fairlm_train::params::Mode;
use fairlm_train::trainer::{checkpoint_dir, train, TrainConfig, TrainReport};

use crate::engine::ModelArgs;

#[derive(Args, Clone)]
pub struct MitigateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory: model/ (Hugging Face), model.gguf, train.json, train-log.jsonl,
    /// corpus.json, checkpoint/.
    #[arg(value_parser = crate::args::path, long)]
    pub out: PathBuf,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Training options shared by `mitigate` and `experiment`.
#[derive(Args, Clone, serde::Serialize)]
pub struct TrainArgs {
    /// Training text (one sentence per line, or JSONL with `text`); default: sampled from the
    /// model on the `train` templates and neutral prompts.
    #[arg(value_parser = crate::args::path, long)]
    pub corpus: Option<PathBuf>,
    /// `full`, `last-K` (the last K blocks and the final norm) or `lora-R` (merged on save).
    #[arg(long, default_value = "full")]
    pub mode: String,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 140)]
    pub steps: usize,
    /// Counterfactual pairs per micro-batch.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 8)]
    pub pairs: usize,
    /// Neutral sentences per micro-batch.
    #[arg(long, default_value_t = 4)]
    pub neutral: usize,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 1)]
    pub accumulation: usize,
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = 3e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long, default_value_t = 1.0)]
    pub clip: f64,
    /// Weight of the LM cross-entropy on the augmented data.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 1.0)]
    pub w_ce: f64,
    /// Weight of the swap-aware counterfactual consistency loss.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 2.0)]
    pub w_consistency: f64,
    /// Weight of the equalising loss (Qian et al. 2019).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 0.0)]
    pub w_equalising: f64,
    /// Weight of the attribute-gap penalty (needs --attributes or the default occupations).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 0.0)]
    pub w_attribute: f64,
    /// Weight of the KL anchor to the original model on neutral text.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 1.0)]
    pub w_anchor: f64,
    /// Weight of the KL to the original model's counterfactual average (the normalised
    /// geometric mean of its next-token distributions after a sentence and after its twin)
    /// at aligned positions (RESULTS.md: it keeps diversity and perplexity, and lowers the
    /// samples' likelihood under the original).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 0.0)]
    pub w_pair_anchor: f64,
    /// Weight of the sequence-level counterfactual term: a pair's whole-sentence log-ratio
    /// log P(s) − log P(swap(s)) from the first swapped token on, against the original's
    /// log-ratio of the swapped words alone after the context token (how often each group is
    /// named at all is kept).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 0.0)]
    pub w_sequence: f64,
    /// λ of the gradient reversal in front of the adversarial discriminator (0: off).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 0.0)]
    pub adversary: f64,
    /// Comma-separated attribute words for the attribute-gap penalty (default: the
    /// occupations and traits of data/attributes.toml).
    #[arg(long, value_delimiter = ',')]
    pub attributes: Vec<String>,
    /// Stop when held-out perplexity rises more than this many percent.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 5.0)]
    pub guard: f64,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 20)]
    pub eval_every: usize,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 20)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Matrix type of the GGUF output: f32, f16, q8_0 or q4_1 (vectors stay f32).
    #[arg(long, default_value = "f32")]
    pub gguf_type: String,
    /// Comma-separated axes (default: all).
    #[arg(long, value_delimiter = ',')]
    pub axes: Vec<String>,
    #[arg(value_parser = crate::args::path, long)]
    pub lexicon: Option<PathBuf>,
    #[arg(value_parser = crate::args::path, long)]
    pub templates: Option<PathBuf>,
    /// Continuations per (train template, group) in the sampled corpus.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 2)]
    pub corpus_samples: usize,
    /// Counterfactual pairs probed for the discriminator accuracy before and after.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 160)]
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

fn default_attributes() -> Vec<String> {
    let Ok(a) = fairlm_bias::detectors::Attributes::default_attributes() else {
        return Vec::new();
    };
    a.occupations
        .iter()
        .map(|o| o.word.clone())
        .chain(a.traits.values().flatten().cloned())
        .collect()
}

impl TrainArgs {
    pub fn config(&self) -> Result<TrainConfig> {
        let Some(mode) = Mode::parse(&self.mode) else {
            bail!("--mode: `{}` is not full, last-K or lora-R", self.mode);
        };
        let weights = LossWeights {
            ce: self.w_ce,
            consistency: self.w_consistency,
            equalising: self.w_equalising,
            attribute: self.w_attribute,
            anchor: self.w_anchor,
            pair_anchor: self.w_pair_anchor,
            sequence: self.w_sequence,
            adversary: self.adversary,
        };
        for (name, w) in [
            ("--w-ce", weights.ce),
            ("--w-consistency", weights.consistency),
            ("--w-equalising", weights.equalising),
            ("--w-attribute", weights.attribute),
            ("--w-anchor", weights.anchor),
            ("--w-pair-anchor", weights.pair_anchor),
            ("--w-sequence", weights.sequence),
            ("--adversary", weights.adversary),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                bail!("{name} must be a non-negative number, got {w}");
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be positive, got {}", self.lr);
        }
        Ok(TrainConfig {
            mode,
            steps: self.steps,
            pairs_per_batch: self.pairs,
            neutral_per_batch: self.neutral,
            accumulation: self.accumulation,
            learning_rate: self.lr,
            warmup_steps: self.warmup,
            clip_norm: self.clip,
            weights,
            attribute_words: if self.attributes.is_empty() && self.w_attribute > 0.0 {
                default_attributes()
            } else {
                self.attributes.clone()
            },
            seed: self.seed,
            eval_every: self.eval_every,
            checkpoint_every: self.checkpoint_every,
            perplexity_guard: self.guard / 100.0,
            discriminator_pairs: self.discriminator_pairs,
            give_prompts: self.give_prompts,
            ..TrainConfig::default()
        })
    }
}

/// The corpus: read from OUT/corpus.json when resuming, else built and saved there.
fn corpus(a: &MitigateArgs, ck: &Checkpoint, lexicon: &Lexicon) -> Result<Corpus> {
    let saved = a.out.join("corpus.json");
    let t = &a.train;
    if a.resume && saved.exists() {
        let text = std::fs::read_to_string(&saved)?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{}: not a fairlm corpus", saved.display()));
    }
    let corpus = match &t.corpus {
        Some(p) => augment(lexicon, &read_corpus(p)?),
        None => {
            let templates = match &t.templates {
                Some(p) => templates::from_file(p)?,
                None => templates::default_templates()?,
            };
            let train: Vec<_> = templates
                .into_iter()
                .filter(|x| x.split == Split::Train)
                .take(t.corpus_templates.unwrap_or(usize::MAX))
                .collect();
            if train.is_empty() {
                bail!("no `train` templates to sample a corpus from");
            }
            eprintln!(
                "fairlm: sampling the training corpus from the model ({} train templates × groups × {}, and neutral prompts)",
                train.len(),
                t.corpus_samples
            );
            let model = ck.build()?;
            sample_corpus(
                model.as_ref(),
                &ck.tokenizer,
                lexicon,
                &train,
                &SampleCorpusConfig {
                    per_template: t.corpus_samples,
                    seed: t.seed.wrapping_add(1),
                    ..Default::default()
                },
            )?
        }
    };
    write_atomic(&saved, serde_json::to_string(&corpus)?.as_bytes())?;
    Ok(corpus)
}

/// Runs a mitigation and returns its report and the path of the mitigated model.
pub fn mitigate(a: &MitigateArgs) -> Result<(TrainReport, PathBuf)> {
    let cfg = a.train.config()?;
    let Some(gguf_type) = GgufType::parse(&a.train.gguf_type) else {
        bail!(
            "--gguf-type: `{}` is not f32, f16, q8_0 or q4_1",
            a.train.gguf_type
        );
    };
    let hf_dir = a.out.join("model");
    if hf_dir.exists() {
        bail!("{} already exists: this output directory holds a finished mitigation; choose a new --out", hf_dir.display());
    }
    if a.model.dtype != NumericPath::F32 {
        bail!("training runs on the f32 path: drop --dtype quantized");
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let lexicon = fairlm_pipeline::model::lexicon(a.train.lexicon.as_deref(), &a.train.axes)?;
    let ck = a.model.open()?;
    // Checked against the model before the corpus's minutes of sampling.
    if let fairlm_train::params::Mode::LastK(k) = cfg.mode {
        let layers = ck.config.n_layers();
        if k > layers {
            bail!("--mode last-{k}: the model has {layers} blocks");
        }
    }
    if let Some(p) = &a.train.corpus {
        std::fs::metadata(p).with_context(|| format!("--corpus {}", p.display()))?;
    }
    if a.resume
        && !checkpoint_dir(&a.out)
            .join(fairlm_train::trainer::CHECKPOINT_STATE)
            .exists()
    {
        eprintln!(
            "fairlm: --resume: no checkpoint in {}; training starts from step 0",
            checkpoint_dir(&a.out).display()
        );
    }
    let corpus = corpus(a, &ck, &lexicon)?;
    if corpus.sets.is_empty() {
        bail!(
            "the corpus has no sentence that mentions a group of {}: nothing to augment",
            lexicon
                .axes
                .iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!(
        "fairlm: corpus {} sentences → {} after counterfactual augmentation ({} about a group, {} neutral, {} mixed)",
        corpus.size_before(),
        corpus.size_after(),
        corpus.sets.len(),
        corpus.neutral.len(),
        corpus.mixed.len()
    );
    if cfg.give_prompts && !corpus.prompts.is_empty() {
        eprintln!(
            "fairlm: the {} prompts the corpus was sampled from are given to the model, not taught (the cross-entropy skips them)",
            corpus.prompts.len()
        );
    }
    let trained = train(
        &ck,
        &lexicon,
        &corpus,
        &cfg,
        &checkpoint_dir(&a.out),
        a.resume,
    )?;
    let r = &trained.report;
    if let Some(why) = &r.stopped_early {
        eprintln!("fairlm: stopped early: {why}");
    }
    let log: String = r
        .log
        .iter()
        .map(|l| serde_json::to_string(l).map(|s| s + "\n"))
        .collect::<Result<_, _>>()?;
    write_atomic(&a.out.join("train-log.jsonl"), log.as_bytes())?;
    write_atomic(
        &a.out.join("train.json"),
        serde_json::to_string_pretty(r)?.as_bytes(),
    )?;
    save_hf(&ck, Some(&trained.tensors), &hf_dir)?;
    let mut written = vec![hf_dir.display().to_string()];
    if ck.format == Format::Gguf {
        let gguf = a.out.join("model.gguf");
        save_gguf(&ck, &trained.tensors, &gguf, gguf_type)?;
        written.push(format!(
            "{} ({} matrices, f32 vectors)",
            gguf.display(),
            a.train.gguf_type
        ));
    }
    let _ = std::fs::remove_dir_all(checkpoint_dir(&a.out));
    eprintln!(
        "fairlm: trained {} steps in {:.0} s; held-out perplexity {:.3} → {:.3}; wrote {}",
        r.steps_done,
        r.seconds,
        r.base_perplexity,
        r.final_perplexity,
        written.join(", ")
    );
    if let Some(d) = &r.discriminator {
        eprintln!(
            "fairlm: discriminator held-out accuracy {:.3} → {:.3} (chance {:.3}, {} pairs)",
            d.before, d.after, d.chance, d.pairs
        );
    }
    Ok((trained.report, hf_dir))
}

pub fn run(a: MitigateArgs) -> Result<()> {
    mitigate(&a).map(|_| ())
}
