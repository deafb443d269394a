//! The mitigation as a run: its config (the model, the corpus and the recipe), the corpus
//! sampled or read and augmented (kept in OUT/corpus.json for a resume), training with its
//! checkpoints, and the files it writes — model/ (Hugging Face), model.gguf for a GGUF input,
//! train.json (with the config embedded), train-log.jsonl and mitigate.json, the record that
//! lets `resume` refuse a directory made with other settings or inputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fairlm_bias::audit::write_atomic;
use fairlm_bias::lexicon::Lexicon;
use fairlm_bias::templates::{self, Split};
use fairlm_model::save::{save_gguf, save_hf, GgufType};
use fairlm_model::{Checkpoint, Format, NumericPath};
use fairlm_train::corpus::{augment, read_corpus, sample_corpus, Corpus, SampleCorpusConfig};
use fairlm_train::losses::LossWeights;
use fairlm_train::params::Mode;
use fairlm_train::trainer::{checkpoint_dir, train, TrainConfig, TrainReport, CHECKPOINT_STATE};

use crate::config::EMBEDDED_KEY;
use crate::error::{Error, Result};
use crate::model::{lexicon, ModelSpec};
use crate::provenance::{self, Inputs};
use crate::Observer;

/// The recipe of a mitigation: the corpus, the trainable part, the losses and the schedule.
/// The keys are the flags of `fairlm mitigate` (and `experiment`) without their dashes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// Training text (one sentence per line, or JSONL with `text`); unset: sampled from the
    /// model on the `train` templates and neutral prompts.
    pub corpus: Option<PathBuf>,
    /// `full`, `last-K` (the last K blocks and the final norm) or `lora-R` (merged on save).
    pub mode: String,
    /// Optimiser steps.
    pub steps: usize,
    /// Counterfactual pairs per micro-batch.
    pub pairs: usize,
    /// Neutral sentences per micro-batch.
    pub neutral: usize,
    /// Micro-batches per step.
    pub accumulation: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Steps of linear warm-up.
    pub warmup: usize,
    /// Gradient norm clip.
    pub clip: f64,
    /// Weight of the LM cross-entropy on the augmented data.
    pub w_ce: f64,
    /// Weight of the swap-aware counterfactual consistency loss.
    pub w_consistency: f64,
    /// Weight of the equalising loss (Qian et al. 2019).
    pub w_equalising: f64,
    /// Weight of the attribute-gap penalty.
    pub w_attribute: f64,
    /// Weight of the KL anchor to the original model on neutral text.
    pub w_anchor: f64,
    /// Weight of the KL to the original model's counterfactual average at aligned positions.
    pub w_pair_anchor: f64,
    /// Weight of the sequence-level counterfactual term.
    pub w_sequence: f64,
    /// Weight of the group-prior anchor (the KL from the original at the positions that
    /// predict a pair's first swapped words, instead of the cross-entropy there).
    #[serde(default)]
    pub w_group_prior: f64,
    /// λ of the gradient reversal in front of the adversarial discriminator (0: off).
    pub adversary: f64,
    /// Attribute words of the attribute-gap penalty (empty: the occupations and traits of
    /// data/attributes.toml).
    pub attributes: Vec<String>,
    /// Stop when held-out perplexity rises more than this many percent.
    pub guard: f64,
    /// Steps between held-out perplexity evaluations.
    pub eval_every: usize,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Seed of the corpus's samples, the batches and every resample.
    pub seed: u64,
    /// Matrix type of the GGUF output: f32, f16, q8_0 or q4_1 (vectors stay f32).
    pub gguf_type: String,
    /// Axes trained (empty: all of the lexicon's).
    pub axes: Vec<String>,
    /// A lexicon (TOML) whose axes add to or replace the built-in ones.
    pub lexicon: Option<PathBuf>,
    /// Templates (TOML) instead of the built-in ones.
    pub templates: Option<PathBuf>,
    /// Continuations per (train template, group) in the sampled corpus.
    pub corpus_samples: usize,
    /// Counterfactual pairs probed for the discriminator accuracy before and after.
    pub discriminator_pairs: usize,
    /// Sample the corpus from at most this many `train` templates (unset: all).
    pub corpus_templates: Option<usize>,
    /// Give the sampled corpus's prompts to the model instead of teaching them.
    pub give_prompts: bool,
}

impl Default for TrainSettings {
    fn default() -> Self {
        let t = TrainConfig::default();
        let w = LossWeights::default();
        TrainSettings {
            corpus: None,
            mode: "full".into(),
            steps: t.steps,
            pairs: t.pairs_per_batch,
            neutral: t.neutral_per_batch,
            accumulation: t.accumulation,
            lr: t.learning_rate,
            warmup: t.warmup_steps,
            clip: t.clip_norm,
            w_ce: w.ce,
            w_consistency: w.consistency,
            w_equalising: w.equalising,
            w_attribute: w.attribute,
            w_anchor: w.anchor,
            w_pair_anchor: w.pair_anchor,
            w_sequence: w.sequence,
            w_group_prior: w.group_prior,
            adversary: w.adversary,
            attributes: Vec::new(),
            guard: t.perplexity_guard * 100.0,
            eval_every: t.eval_every,
            checkpoint_every: t.checkpoint_every,
            seed: t.seed,
            gguf_type: "f32".into(),
            axes: Vec::new(),
            lexicon: None,
            templates: None,
            corpus_samples: SampleCorpusConfig::default().per_template,
            discriminator_pairs: t.discriminator_pairs,
            corpus_templates: None,
            give_prompts: t.give_prompts,
        }
    }
}

/// The comment `fairlm config --print` writes above each key of [`TrainSettings`], as
/// `train.KEY` (a test in `config` checks that every key has one).
pub(crate) const TRAIN_KEYS: &[(&str, &str)] = &[
    ("train.corpus", "training text (one sentence per line, or JSONL with `text`); unset: sampled from the model on the `train` templates and neutral prompts"),
    ("train.mode", "`full`, `last-K` (the last K blocks and the final norm) or `lora-R` (merged on save)"),
    ("train.steps", "optimiser steps"),
    ("train.pairs", "counterfactual pairs per micro-batch"),
    ("train.neutral", "neutral sentences per micro-batch"),
    ("train.accumulation", "micro-batches per step"),
    ("train.lr", "AdamW learning rate"),
    ("train.warmup", "steps of linear warm-up"),
    ("train.clip", "gradient norm clip"),
    ("train.w_ce", "weight of the LM cross-entropy on the augmented data"),
    ("train.w_consistency", "weight of the swap-aware counterfactual consistency loss"),
    ("train.w_equalising", "weight of the equalising loss (Qian et al. 2019)"),
    ("train.w_attribute", "weight of the attribute-gap penalty"),
    ("train.w_anchor", "weight of the KL anchor to the original model on neutral text"),
    ("train.w_pair_anchor", "weight of the KL to the original model's counterfactual average at aligned positions"),
    ("train.w_sequence", "weight of the sequence-level counterfactual term"),
    ("train.w_group_prior", "weight of the group-prior anchor: the KL from the original at the positions that predict a pair's first swapped words, instead of the cross-entropy there"),
    ("train.adversary", "λ of the gradient reversal in front of the adversarial discriminator (0: off)"),
    ("train.attributes", "attribute words of the attribute-gap penalty; empty: the occupations and traits of data/attributes.toml"),
    ("train.guard", "stop when held-out perplexity rises more than this many percent"),
    ("train.eval_every", "steps between held-out perplexity evaluations"),
    ("train.checkpoint_every", "steps between checkpoints"),
    ("train.seed", "seed of the corpus's samples, the batches and every resample"),
    ("train.gguf_type", "matrix type of the GGUF output: f32, f16, q8_0 or q4_1 (vectors stay f32)"),
    ("train.axes", "axes trained (and audited by an experiment); empty: all of the lexicon's"),
    ("train.lexicon", "a lexicon (TOML) whose axes add to or replace the built-in ones"),
    ("train.templates", "templates (TOML) instead of the built-in ones"),
    ("train.corpus_samples", "continuations per (train template, group) in the sampled corpus"),
    ("train.discriminator_pairs", "counterfactual pairs probed for the discriminator accuracy before and after"),
    ("train.corpus_templates", "sample the corpus from at most this many `train` templates; unset: all"),
    ("train.give_prompts", "give the sampled corpus's prompts to the model instead of teaching them"),
];

impl TrainSettings {
    /// The trainer's config, every setting checked (a config file passes no flag parser).
    pub fn train_config(&self) -> Result<TrainConfig> {
        let Some(mode) = Mode::parse(&self.mode) else {
            return Err(Error::Config(format!(
                "--mode (mode): `{}` is not full, last-K or lora-R",
                self.mode
            )));
        };
        let weights = LossWeights {
            ce: self.w_ce,
            consistency: self.w_consistency,
            equalising: self.w_equalising,
            attribute: self.w_attribute,
            anchor: self.w_anchor,
            pair_anchor: self.w_pair_anchor,
            sequence: self.w_sequence,
            group_prior: self.w_group_prior,
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
            ("--w-group-prior", weights.group_prior),
            ("--adversary", weights.adversary),
            ("--guard", self.guard),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::Config(format!(
                    "{name} must be a non-negative number, got {w}"
                )));
            }
        }
        for (name, x) in [("--lr", self.lr), ("--clip", self.clip)] {
            if !(x.is_finite() && x > 0.0) {
                return Err(Error::Config(format!("{name} must be positive, got {x}")));
            }
        }
        for (name, n) in [
            ("--steps", self.steps),
            ("--pairs", self.pairs),
            ("--accumulation", self.accumulation),
            ("--eval-every", self.eval_every),
            ("--checkpoint-every", self.checkpoint_every),
            ("--corpus-samples", self.corpus_samples),
            ("--discriminator-pairs", self.discriminator_pairs),
            ("--corpus-templates", self.corpus_templates.unwrap_or(1)),
        ] {
            if n == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
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

    /// The matrix type of the GGUF output.
    pub fn gguf_type(&self) -> Result<GgufType> {
        GgufType::parse(&self.gguf_type).ok_or_else(|| {
            Error::Config(format!(
                "--gguf-type: `{}` is not f32, f16, q8_0 or q4_1",
                self.gguf_type
            ))
        })
    }

    /// The lexicon the settings name: the built-in one, extended, restricted to `axes`.
    pub fn lexicon(&self) -> Result<Lexicon> {
        lexicon(self.lexicon.as_deref(), &self.axes)
    }

    /// The files the settings read, by content (a resume refuses a changed one).
    pub(crate) fn inputs(&self) -> Result<Inputs> {
        Inputs::of(&[
            ("lexicon", self.lexicon.as_deref()),
            ("templates", self.templates.as_deref()),
            ("corpus", self.corpus.as_deref()),
        ])
    }
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

/// Everything that decides a mitigation's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MitigateConfig {
    /// `smollm2`, a GGUF file, a Hugging Face directory or hub id.
    pub model: String,
    /// Training runs on the f32 path (the only value accepted).
    pub dtype: NumericPath,
    /// Fetch a hub id that the Hugging Face cache lacks (network).
    pub allow_download: bool,
    /// The recipe.
    pub train: TrainSettings,
}

impl Default for MitigateConfig {
    fn default() -> Self {
        let model = ModelSpec::default();
        MitigateConfig {
            model: model.model,
            dtype: NumericPath::F32,
            allow_download: model.allow_download,
            train: TrainSettings::default(),
        }
    }
}

impl MitigateConfig {
    /// A config file: TOML, or a mitigation's train.json (the config it embeds).
    pub fn read(path: &Path) -> Result<MitigateConfig> {
        crate::config::read(path)
    }

    /// The default config as commented TOML: every key, with what it means.
    pub fn commented_default() -> Result<String> {
        crate::config::commented(&MitigateConfig::default(), &Self::docs())
    }

    /// The comment above each key (`table.key` inside a table).
    pub(crate) fn docs() -> Vec<(&'static str, &'static str)> {
        let mut docs = vec![
            ("model", "`smollm2` (the default model), a GGUF file, a Hugging Face directory or a hub id (owner/name[@revision])"),
            ("dtype", "training runs on the f32 path (weights dequantized), the only value accepted"),
            ("allow_download", "fetch a hub id that the Hugging Face cache lacks (network)"),
            ("train", "the recipe: corpus, trainable part, losses, schedule"),
        ];
        docs.extend_from_slice(TRAIN_KEYS);
        docs
    }

    /// The model the config names.
    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            model: self.model.clone(),
            dtype: self.dtype,
            allow_download: self.allow_download,
        }
    }
}

/// A finished mitigation: the trainer's report and where the model was written.
#[derive(Debug, Clone)]
pub struct Mitigation {
    /// The trainer's report (train.json without the embedded config).
    pub report: TrainReport,
    /// The mitigated model as a Hugging Face directory (OUT/model).
    pub model_dir: PathBuf,
    /// OUT/model.gguf, written when the input was a GGUF file.
    pub gguf: Option<PathBuf>,
}

/// The record of what made an output directory, compared on resume.
const PROVENANCE: &str = "mitigate.json";

/// Runs the mitigation `cfg` describes into `out`; with `resume`, continues one interrupted
/// there (its corpus and checkpoint kept; other settings or inputs refused).
pub fn mitigate(
    cfg: &MitigateConfig,
    out: &Path,
    resume: bool,
    observer: Arc<dyn Observer>,
) -> Result<Mitigation> {
    let t = &cfg.train;
    let train_cfg = t.train_config()?;
    let gguf_type = t.gguf_type()?;
    let hf_dir = out.join("model");
    if hf_dir.exists() {
        return Err(Error::Config(format!("{} already exists: this output directory holds a finished mitigation; choose a new --out", hf_dir.display())));
    }
    if cfg.dtype != NumericPath::F32 {
        return Err(Error::Config(
            "training runs on the f32 path: drop --dtype quantized".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, format!("cannot create: {e}")))?;
    let lexicon = t.lexicon()?;
    let spec = cfg.model_spec();
    let ck = spec.checkpoint(observer.as_ref())?;
    // Checked against the model before the corpus's minutes of sampling.
    if let Mode::LastK(k) = train_cfg.mode {
        let layers = ck.config.n_layers();
        if k > layers {
            return Err(Error::Config(format!(
                "--mode last-{k}: the model has {layers} blocks"
            )));
        }
    }
    let record = provenance::Record::new(&spec.path(observer.as_ref())?, t.inputs()?, cfg)?;
    let checkpoint = checkpoint_dir(out);
    let started = ["corpus.json", "checkpoint"]
        .iter()
        .any(|s| out.join(s).exists());
    let resuming = resume && started;
    if resuming {
        provenance::check(&out.join(PROVENANCE), &record)?;
    }
    if resume && !checkpoint.join(CHECKPOINT_STATE).exists() {
        observer.message(&format!(
            "--resume: no checkpoint in {}; training starts from step 0",
            checkpoint.display()
        ));
    }
    let corpus = corpus(cfg, out, resume, &ck, &lexicon, observer.as_ref())?;
    // Written once the corpus is read: a run refused on its inputs leaves no record behind.
    if !resuming {
        provenance::write(&out.join(PROVENANCE), &record)?;
    }
    if corpus.sets.is_empty() {
        return Err(Error::Config(format!(
            "the corpus has no sentence that mentions a group of {}: nothing to augment",
            lexicon
                .axes
                .iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    observer.message(&format!(
        "corpus {} sentences → {} after counterfactual augmentation ({} about a group, {} neutral, {} mixed)",
        corpus.size_before(),
        corpus.size_after(),
        corpus.sets.len(),
        corpus.neutral.len(),
        corpus.mixed.len()
    ));
    if train_cfg.give_prompts && !corpus.prompts.is_empty() {
        observer.message(&format!(
            "the {} prompts the corpus was sampled from are given to the model, not taught (the cross-entropy skips them)",
            corpus.prompts.len()
        ));
    }
    let trained = train(
        &ck,
        &lexicon,
        &corpus,
        &train_cfg,
        &checkpoint,
        resume,
        observer.as_ref(),
    )?;
    let r = &trained.report;
    let log: String = r
        .log
        .iter()
        .map(|l| serde_json::to_string(l).map(|s| s + "\n"))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&out.join("train-log.jsonl"), log.as_bytes())?;
    let mut report = serde_json::to_value(r).map_err(|e| Error::Config(e.to_string()))?;
    if let Some(fields) = report.as_object_mut() {
        let embedded = serde_json::to_value(cfg).map_err(|e| Error::Config(e.to_string()))?;
        fields.insert(EMBEDDED_KEY.into(), embedded);
    }
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&out.join("train.json"), json.as_bytes())?;
    save_hf(&ck, Some(&trained.tensors), &hf_dir)?;
    let gguf = if ck.format == Format::Gguf {
        let gguf = out.join("model.gguf");
        save_gguf(&ck, &trained.tensors, &gguf, gguf_type)?;
        Some(gguf)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&checkpoint);
    if let Some(why) = &r.stopped_early {
        observer.message(&format!("stopped early: {why}"));
    }
    let mut written = vec![hf_dir.display().to_string()];
    if let Some(g) = &gguf {
        written.push(format!(
            "{} ({} matrices, f32 vectors)",
            g.display(),
            t.gguf_type
        ));
    }
    observer.message(&format!(
        "trained {} steps in {:.0} s; held-out perplexity {:.3} → {:.3}; wrote {}",
        r.steps_done,
        r.seconds,
        r.base_perplexity,
        r.final_perplexity,
        written.join(", ")
    ));
    if let Some(d) = &r.discriminator {
        observer.message(&format!(
            "discriminator held-out accuracy {:.3} → {:.3} (chance {:.3}, {} pairs)",
            d.before, d.after, d.chance, d.pairs
        ));
    }
    Ok(Mitigation {
        report: trained.report,
        model_dir: hf_dir,
        gguf,
    })
}

/// The corpus: read from OUT/corpus.json when resuming, else built and saved there.
fn corpus(
    cfg: &MitigateConfig,
    out: &Path,
    resume: bool,
    ck: &Checkpoint,
    lexicon: &Lexicon,
    observer: &dyn Observer,
) -> Result<Corpus> {
    let saved = out.join("corpus.json");
    let t = &cfg.train;
    if resume && saved.exists() {
        let text = std::fs::read_to_string(&saved).map_err(|e| Error::file(&saved, e))?;
        return serde_json::from_str(&text)
            .map_err(|e| Error::file(&saved, format!("not a fairlm corpus: {e}")));
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
                return Err(Error::Config(
                    "no `train` templates to sample a corpus from".into(),
                ));
            }
            observer.message(&format!(
                "sampling the training corpus from the model ({} train templates × groups × {}, and neutral prompts)",
                train.len(),
                t.corpus_samples
            ));
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
                observer,
            )?
        }
    };
    let json = serde_json::to_string(&corpus).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&saved, json.as_bytes())?;
    Ok(corpus)
}

/// mitigation.md: the mitigation's own figures, from its report (compare.md holds only figures
/// recomputed from the audits' records).
pub fn markdown(r: &TrainReport) -> String {
    let w = &r.config.weights;
    let mut s = String::from("\n## Mitigation\n\n| | |\n|---|---|\n");
    s += &format!(
        "| mode | {:?}, {} trainable parameters |\n",
        r.config.mode, r.trainable_parameters
    );
    s += &format!(
        "| losses | CE {}, consistency {}, equalising {}, attribute {}, anchor {}, pair anchor {}, sequence {}, group prior {}, adversary λ {} |\n",
        w.ce, w.consistency, w.equalising, w.attribute, w.anchor, w.pair_anchor, w.sequence, w.group_prior, w.adversary
    );
    s += &format!(
        "| corpus | {} sentences → {} after counterfactual augmentation |\n",
        r.corpus_sentences_before, r.corpus_sentences_after
    );
    s += &format!(
        "| steps | {} of {} (kept step {}), {:.0} s |\n",
        r.steps_done, r.config.steps, r.kept_step, r.seconds
    );
    if let Some(why) = &r.stopped_early {
        s += &format!("| stopped early | {why} |\n");
    }
    s += &format!(
        "| held-out perplexity (guard) | {:.3} → {:.3} (guard +{:.0}%) |\n",
        r.base_perplexity,
        r.final_perplexity,
        r.config.perplexity_guard * 100.0
    );
    if let Some(g) = &r.twin_grammar {
        s += &format!("| grammar check of the corpus's twins | {} |\n", g.line());
    }
    if let Some(d) = &r.discriminator {
        s += &format!(
            "| discriminator accuracy, held-out pairs | {:.3} → {:.3} (chance {:.3}, {} pairs) |\n",
            d.before, d.after, d.chance, d.pairs
        );
    }
    s
}
