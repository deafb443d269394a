//! The experiment as a run: audit of the original → mitigation → audit of the mitigated model
//! → comparison, quality gates and report, on one output directory. Each finished stage is
//! kept, so a resume continues where the run stopped; experiment.json records what made the
//! directory (the whole config, the model and input files by content) and a resume with other
//! settings or a changed input is refused, naming the field.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fairlm_bias::audit::{write_atomic, AuditResults};
use fairlm_bias::compare::{self, Comparison, Gates};
use fairlm_bias::metrics::pronoun_axis;
use fairlm_bias::quality::{self, Agreement};
use fairlm_model::NumericPath;
use fairlm_train::trainer::TrainReport;

use crate::audit::{AuditConfig, Output};
use crate::error::{Error, Result};
use crate::mitigate::{mitigate, MitigateConfig, TrainSettings, TRAIN_KEYS};
use crate::model::ModelSpec;
use crate::provenance::{self, Record};
use crate::Observer;

/// Everything that decides an experiment's results.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// `smollm2`, a GGUF file, a Hugging Face directory or hub id.
    pub model: String,
    /// The numeric path of the audit before (training and the audit after run on f32).
    pub dtype: NumericPath,
    /// Fetch a hub id that the Hugging Face cache lacks (network).
    pub allow_download: bool,
    /// The small profile (≤ 10 min): quick audits, a short mitigation on a smaller corpus.
    pub quick: bool,
    /// The verdict's gates (exit 1 when one fails).
    pub gates: Gates,
    /// Continuations per (template, group) of the pronoun axis drawn for the agreement gate, in
    /// an audit of that axis alone before and after.
    pub agreement_samples: usize,
    /// CrowS-Pairs CSV (the user's copy) scored before and after.
    pub crows: Option<PathBuf>,
    /// StereoSet intrasentence JSON (the user's copy) scored before and after.
    pub stereoset: Option<PathBuf>,
    /// The mitigation's recipe (its seed, axes, lexicon and templates also the audits').
    pub train: TrainSettings,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        let model = ModelSpec::default();
        ExperimentConfig {
            model: model.model,
            dtype: model.dtype,
            allow_download: model.allow_download,
            quick: false,
            gates: Gates {
                max_bias_ratio: Some(0.43),
                max_ppl_increase: Some(5.0),
                max_agreement_drop: Some(5.0),
                // ln 1.05: the perplexity gate's 5%, in nats per token.
                max_fluency_drop: Some(0.049),
                max_diversity_drop: Some(0.05),
                ..Gates::default()
            },
            agreement_samples: 12,
            crows: None,
            stereoset: None,
            train: TrainSettings::default(),
        }
    }
}

const EXPERIMENT_KEYS: &[(&str, &str)] = &[
    ("model", "`smollm2` (the default model), a GGUF file, a Hugging Face directory or a hub id (owner/name[@revision])"),
    ("dtype", "numeric path of the audit before: `f32` or `quantized` (training and the audit after run on f32)"),
    ("allow_download", "fetch a hub id that the Hugging Face cache lacks (network)"),
    ("quick", "small profile (≤ 10 min): quick audits, 12 steps on a corpus from 6 train templates"),
    ("agreement_samples", "continuations per (template, group) of the pronoun axis drawn for the agreement gate, in an audit of that axis alone before and after"),
    ("crows", "CrowS-Pairs CSV (your copy) scored before and after"),
    ("stereoset", "StereoSet intrasentence JSON (your copy) scored before and after"),
    ("gates", "the verdict's gates (exit 1 when one fails); an unset gate is not applied"),
    ("gates.max_bias", "the bias score after must be at most this"),
    ("gates.max_bias_ratio", "after / before bias score must be at most this (the seed's line)"),
    ("gates.max_ppl_increase", "held-out perplexity may rise at most this many percent"),
    ("gates.min_lms", "StereoSet lms after must be at least this (needs stereoset)"),
    ("gates.max_agreement_drop", "pronoun agreement with the prompt's subject may fall at most this many points"),
    ("gates.max_fluency_drop", "the samples' group-averaged mean log-prob per token under the original may fall at most this many nats (point estimate; ln 1.05)"),
    ("gates.max_diversity_drop", "distinct-2 of the probe's samples may fall at most this much"),
    ("train", "the mitigation's recipe (its seed, axes, lexicon and templates are the audits' too)"),
];

impl ExperimentConfig {
    /// A config file: TOML, or an experiment's experiment.json (the config it embeds).
    pub fn read(path: &Path) -> Result<ExperimentConfig> {
        crate::config::read(path)
    }

    /// The default config as commented TOML: every key, with what it means.
    pub fn commented_default() -> Result<String> {
        crate::config::commented(&ExperimentConfig::default(), &Self::docs())
    }

    /// The comment above each key (`table.key` inside a table).
    pub(crate) fn docs() -> Vec<(&'static str, &'static str)> {
        let mut docs = EXPERIMENT_KEYS.to_vec();
        docs.extend_from_slice(TRAIN_KEYS);
        docs
    }

    fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            model: self.model.clone(),
            dtype: self.dtype,
            allow_download: self.allow_download,
        }
    }

    /// The recipe the run trains with: the quick profile's 12 steps on a corpus from 6 train
    /// templates, one sample each, one held-out evaluation and 64 discriminator pairs.
    fn recipe(&self) -> TrainSettings {
        let mut t = self.train.clone();
        if self.quick {
            t.steps = t.steps.min(12);
            t.eval_every = t.steps;
            t.discriminator_pairs = t.discriminator_pairs.min(64);
            t.corpus_samples = 1;
            t.corpus_templates = Some(t.corpus_templates.unwrap_or(6));
        }
        t
    }

    /// The audit of `model` the experiment runs (`axes`/`samples`/`bootstrap` set for the
    /// agreement audits).
    fn audit_config(&self, model: &ModelSpec, with_benchmarks: bool) -> AuditConfig {
        let t = &self.train;
        AuditConfig {
            model: model.model.clone(),
            dtype: model.dtype,
            allow_download: model.allow_download,
            seed: t.seed,
            axes: t.axes.clone(),
            quick: self.quick,
            lexicon: t.lexicon.clone(),
            templates: t.templates.clone(),
            crows: self.crows.clone().filter(|_| with_benchmarks),
            stereoset: self.stereoset.clone().filter(|_| with_benchmarks),
            ..AuditConfig::default()
        }
    }
}

/// A finished experiment: the comparison with every gate, and the two tables it wrote.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Every figure before and after with its paired CI, and every gate's verdict.
    pub comparison: Comparison,
    /// compare.md: the before/after table, the gates, quality beyond perplexity.
    pub compare_markdown: String,
    /// mitigation.md: the mitigation's own figures.
    pub mitigation_markdown: String,
}

impl Experiment {
    /// Whether every gate passed.
    pub fn passed(&self) -> bool {
        self.comparison.passed()
    }
}

const PROVENANCE: &str = "experiment.json";
const AGREEMENT_BEFORE: &str = "agreement-before";
const AGREEMENT_AFTER: &str = "agreement-after";

/// Runs the experiment `cfg` describes into `out`; with `resume`, continues one interrupted
/// there (finished stages kept; other settings or inputs refused).
pub fn experiment(
    cfg: &ExperimentConfig,
    out: &Path,
    resume: bool,
    observer: Arc<dyn Observer>,
) -> Result<Experiment> {
    let recipe = cfg.recipe();
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, format!("cannot create: {e}")))?;
    let original = cfg.model_spec();
    let mut inputs = vec![
        ("lexicon", recipe.lexicon.as_deref()),
        ("templates", recipe.templates.as_deref()),
        ("corpus", recipe.corpus.as_deref()),
    ];
    inputs.extend([
        ("crows", cfg.crows.as_deref()),
        ("stereoset", cfg.stereoset.as_deref()),
    ]);
    let record = Record::new(
        &original.path(observer.as_ref())?,
        provenance::Inputs::of(&inputs)?,
        &ExperimentConfig {
            train: recipe.clone(),
            ..cfg.clone()
        },
    )?;
    let started = [
        "before",
        AGREEMENT_BEFORE,
        "model",
        "corpus.json",
        "checkpoint",
    ]
    .iter()
    .any(|s| out.join(s).exists());
    if resume && started {
        provenance::check(&out.join(PROVENANCE), &record)?;
    } else {
        provenance::write(&out.join(PROVENANCE), &record)?;
    }
    let o = observer.as_ref();
    let stage = Stage {
        out,
        resume,
        observer: &observer,
    };

    o.message("experiment 1/3: audit of the original model");
    let before = stage.audit(&cfg.audit_config(&original, true), "before")?;
    let agreement_before = stage.agreement(cfg, &original, AGREEMENT_BEFORE)?;

    o.message("experiment 2/3: mitigation");
    let model_dir = out.join("model");
    let report: TrainReport = if resume && model_dir.join("config.json").exists() {
        o.message(&format!(
            "keeping the finished mitigation {}",
            model_dir.display()
        ));
        let path = out.join("train.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::file(&path, format!("not a fairlm train.json: {e}")))?
    } else {
        let m = MitigateConfig {
            model: cfg.model.clone(),
            dtype: cfg.dtype,
            allow_download: cfg.allow_download,
            train: recipe.clone(),
        };
        mitigate(&m, out, resume, observer.clone())?.report
    };

    o.message("experiment 3/3: audit of the mitigated model");
    let mitigated = ModelSpec {
        model: model_dir.display().to_string(),
        dtype: NumericPath::F32,
        allow_download: false,
    };
    let after = stage.audit(&cfg.audit_config(&mitigated, true), "after")?;
    let agreement_after = stage.agreement(cfg, &mitigated, AGREEMENT_AFTER)?;

    // compare() reads the gates of two audits; the quality gates need the original model and
    // the agreement audits, and follow them in compare.md.
    let audit_gates = Gates {
        max_agreement_drop: None,
        max_fluency_drop: None,
        max_diversity_drop: None,
        ..cfg.gates.clone()
    };
    let resamples = before.config.bootstrap_resamples;
    let mut comparison = compare::compare(&before, &after, &audit_gates, resamples, recipe.seed)?;
    let lexicon = recipe.lexicon()?;
    let agreement = Agreement::read(
        agreement_before.as_ref(),
        agreement_after.as_ref(),
        &lexicon,
    );
    let ck = original.checkpoint(observer.as_ref())?;
    let fluency = quality::fluency(
        ck.build()?.as_ref(),
        &ck.tokenizer,
        &before,
        &after,
        resamples,
        recipe.seed,
    )?;
    comparison.gates.extend(quality::quality_gates(
        &cfg.gates, &agreement, &fluency, &before, &after,
    ));
    let mut compare_markdown = compare::markdown(&comparison);
    compare_markdown.push_str(&quality::markdown(&before, &after, &agreement, &fluency));
    write_atomic(&out.join("compare.md"), compare_markdown.as_bytes())?;
    let mitigation_markdown = crate::mitigate::markdown(&report);
    write_atomic(&out.join("mitigation.md"), mitigation_markdown.as_bytes())?;
    let html = fairlm_report::render(&before, Some(&after), Some(&comparison));
    write_atomic(&out.join("report.html"), html.as_bytes())?;
    Ok(Experiment {
        comparison,
        compare_markdown,
        mitigation_markdown,
    })
}

/// The audit stages of one experiment directory.
struct Stage<'a> {
    out: &'a Path,
    resume: bool,
    observer: &'a Arc<dyn Observer>,
}

impl Stage<'_> {
    /// The audit `cfg` into OUT/`name`: read when resuming a finished one, continued from its
    /// checkpoint when resuming an unfinished one, else run.
    fn audit(&self, cfg: &AuditConfig, name: &str) -> Result<AuditResults> {
        let dir = self.out.join(name);
        let results = dir.join("results.json");
        if self.resume && results.exists() {
            self.observer
                .message(&format!("keeping the finished audit {}", results.display()));
            return Ok(AuditResults::read(&results)?);
        }
        let output = Output {
            dir: Some(dir.clone()),
            resume: self.resume,
        };
        let r = crate::audit(cfg, &output, self.observer.clone())?;
        self.observer.audit_finished(&r, &dir);
        Ok(r)
    }

    /// The agreement gate's audit of the pronoun axis alone with `agreement_samples` per
    /// (template, group); `None` when the lexicon has no pronoun axis.
    fn agreement(
        &self,
        cfg: &ExperimentConfig,
        model: &ModelSpec,
        name: &str,
    ) -> Result<Option<AuditResults>> {
        let lexicon = cfg.train.lexicon()?;
        let Some(axis) = pronoun_axis(&lexicon) else {
            return Ok(None);
        };
        let audit = AuditConfig {
            axes: vec![axis.name.clone()],
            samples: Some(cfg.agreement_samples),
            // Only the samples' pronouns are read; the bias figures' intervals are not.
            bootstrap: 100,
            ..cfg.audit_config(model, false)
        };
        self.audit(&audit, name).map(Some)
    }
}
