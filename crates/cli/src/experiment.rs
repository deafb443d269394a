//! `fairlm experiment`: audit before → mitigate → audit after → comparison, report and gates,
//! in one command on one output directory. Each finished stage is kept, so `--resume` after an
//! interruption continues where it stopped.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fairlm_bias::audit::{
    continuation_logprobs, mean_logprob, recorded_logprobs, write_atomic, AuditResults,
    ContinuationScore,
};
use fairlm_bias::compare;
use fairlm_bias::metrics::{pronoun_agreement, pronoun_axis};
use fairlm_bias::stats::{wilson_interval, Estimate};
use fairlm_train::trainer::TrainReport;

use crate::audit::AuditArgs;
use crate::compare::GateArgs;
use crate::engine::ModelArgs;
use crate::mitigate::{MitigateArgs, TrainArgs};

#[derive(Args)]
pub struct ExperimentArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Holds before/, after/, model/, model.gguf, train.json, train-log.jsonl, compare.md,
    /// mitigation.md,
    /// report.html.
    #[arg(value_parser = crate::args::path, long, default_value = "experiment")]
    pub out: PathBuf,
    /// Small profile (≤ 10 min): quick audits, a short mitigation on a smaller corpus.
    #[arg(long)]
    pub quick: bool,
    /// Continue an interrupted experiment in OUT (finished stages are kept).
    #[arg(long)]
    pub resume: bool,
    /// Gates of the experiment's verdict (exit 1 when one fails).
    #[command(flatten)]
    pub gates: GateArgs,
    /// Pronoun agreement with the prompt's subject may fall at most this many points (a model
    /// that forgets who "she" is has lost quality perplexity does not show; design §3.5).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 5.0)]
    pub max_agreement_drop: f64,
    /// Continuations per (template, group) of the pronoun axis drawn for the agreement gate, in
    /// an audit of that axis alone before and after (OUT/agreement-before, agreement-after):
    /// the main audits' 3 give ~50 samples with a pronoun, where one sample moves the share
    /// by 2 points against the gate's 5.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = 12)]
    pub agreement_samples: usize,
    /// The samples' group-averaged mean log-prob per token under the original model may fall at
    /// most this many nats (point estimate; ln 1.05, the perplexity gate's 5%; design §3.5).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 0.049)]
    pub max_fluency_drop: f64,
    /// Distinct-2 of the probe's samples may fall at most this much (design §3.5).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = 0.05)]
    pub max_diversity_drop: f64,
    #[command(flatten)]
    pub bench: BenchFiles,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Pair benchmarks both audits of an experiment run.
#[derive(Args, Clone, Default, serde::Serialize)]
pub struct BenchFiles {
    /// CrowS-Pairs CSV (your copy) scored before and after.
    #[arg(value_parser = crate::args::path, long)]
    pub crows: Option<PathBuf>,
    /// StereoSet intrasentence JSON (your copy) scored before and after.
    #[arg(value_parser = crate::args::path, long)]
    pub stereoset: Option<PathBuf>,
}

fn audit_args(
    model: &ModelArgs,
    out: PathBuf,
    quick: bool,
    seed: u64,
    train: &TrainArgs,
    bench: &BenchFiles,
) -> AuditArgs {
    AuditArgs {
        model: model.clone(),
        served: Default::default(),
        out: Some(out),
        seed,
        samples: None,
        tau: std::f64::consts::LN_2,
        axes: train.axes.clone(),
        quick,
        lexicon: train.lexicon.clone(),
        templates: train.templates.clone(),
        bootstrap: 1000,
        text: None,
        crows: bench.crows.clone(),
        stereoset: bench.stereoset.clone(),
        shard: None,
        config: None,
        resume: false,
    }
}

/// The experiment's audit of `model` into OUT/`name`.
fn audit_stage(a: &ExperimentArgs, model: &ModelArgs, name: &str) -> Result<AuditResults> {
    let args = audit_args(
        model,
        a.out.join(name),
        a.quick,
        a.train.seed,
        &a.train,
        &a.bench,
    );
    run_stage(a, args)
}

/// An audit stage of the experiment: read when resuming a finished one, continued from its
/// checkpoint when resuming an unfinished one, else run.
fn run_stage(a: &ExperimentArgs, mut args: AuditArgs) -> Result<AuditResults> {
    let results = args.out.as_ref().map(|o| o.join("results.json"));
    if let Some(results) = results.filter(|r| a.resume && r.exists()) {
        eprintln!("fairlm: keeping the finished audit {}", results.display());
        return Ok(AuditResults::read(&results)?);
    }
    args.resume = a.resume;
    crate::audit::audit(&args, &clap::ArgMatches::default())
}

/// The agreement gate's own audits of the pronoun axis (before, after).
const AGREEMENT_BEFORE: &str = "agreement-before";
const AGREEMENT_AFTER: &str = "agreement-after";

/// The experiment's audit of the pronoun axis alone with `--agreement-samples` per (template,
/// group), read for the agreement gate; `None` when the lexicon has no pronoun axis.
fn agreement_stage(
    a: &ExperimentArgs,
    model: &ModelArgs,
    name: &str,
) -> Result<Option<AuditResults>> {
    let lexicon = fairlm_pipeline::model::lexicon(a.train.lexicon.as_deref(), &a.train.axes)?;
    let Some(axis) = pronoun_axis(&lexicon) else {
        return Ok(None);
    };
    let mut args = audit_args(
        model,
        a.out.join(name),
        a.quick,
        a.train.seed,
        &a.train,
        &BenchFiles::default(),
    );
    args.axes = vec![axis.name.clone()];
    args.samples = Some(a.agreement_samples);
    // Only the samples' pronouns are read; the bias figures' intervals are not.
    args.bootstrap = 100;
    run_stage(a, args).map(Some)
}

/// What produced an experiment directory: written at its start, compared on `--resume` so that
/// finished stages of another model or other settings are never reused.
#[derive(serde::Serialize)]
struct Provenance<'a> {
    fairlm_version: &'static str,
    /// The model is identified by its content (a path may be spelt two ways).
    model_sha256: String,
    dtype: fairlm_model::NumericPath,
    quick: bool,
    agreement_samples: usize,
    bench: &'a BenchFiles,
    train: &'a TrainArgs,
}

const PROVENANCE: &str = "experiment.json";

/// Writes OUT/experiment.json, or on `--resume` refuses a directory made otherwise, naming the
/// first setting that differs.
fn check_provenance(a: &ExperimentArgs) -> Result<()> {
    let path = a.model.spec().path()?;
    let now = serde_json::to_value(Provenance {
        fairlm_version: env!("CARGO_PKG_VERSION"),
        dtype: a.model.dtype,
        model_sha256: fairlm_pipeline::model::model_sha256(&path)?,
        quick: a.quick,
        agreement_samples: a.agreement_samples,
        bench: &a.bench,
        train: &a.train,
    })?;
    let file = a.out.join(PROVENANCE);
    let has_stages = [
        "before",
        AGREEMENT_BEFORE,
        "model",
        "corpus.json",
        "checkpoint",
    ]
    .iter()
    .any(|s| a.out.join(s).exists());
    if a.resume && has_stages {
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "--resume: {} has finished stages but no {PROVENANCE} saying what made them; start a new --out",
                a.out.display()
            )
        })?;
        let then: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an experiment record", file.display()))?;
        if let Some(field) = first_difference(&then, &now, "") {
            anyhow::bail!(
                "{}: --resume with other settings than the interrupted run: `{field}` differs; resume with the same ones or start a new --out",
                file.display()
            );
        }
        return Ok(());
    }
    write_atomic(&file, serde_json::to_string_pretty(&now)?.as_bytes())?;
    Ok(())
}

/// The dotted path of the first leaf where `a` and `b` differ.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, &path),
                    _ => Some(path),
                }
            })
        }
        _ if a == b => None,
        _ => Some(at.to_string()),
    }
}

pub fn run(mut a: ExperimentArgs) -> Result<bool> {
    if a.quick {
        // The quick profile: 12 steps on a corpus from 6 train templates, one sample each,
        // one held-out evaluation, 64 discriminator pairs.
        a.train.steps = a.train.steps.min(12);
        a.train.eval_every = a.train.steps;
        a.train.discriminator_pairs = a.train.discriminator_pairs.min(64);
        a.train.corpus_samples = 1;
        a.train.corpus_templates = Some(a.train.corpus_templates.unwrap_or(6));
    }
    if a.gates.max_bias_ratio.is_none() && a.gates.max_bias.is_none() {
        a.gates.max_bias_ratio = Some(0.43);
    }
    if a.gates.max_ppl_increase.is_none() {
        a.gates.max_ppl_increase = Some(5.0);
    }
    std::fs::create_dir_all(&a.out)?;
    check_provenance(&a)?;
    let seed = a.train.seed;
    eprintln!("fairlm: experiment 1/3: audit of the original model");
    let before = audit_stage(&a, &a.model, "before")?;
    let agreement_before = agreement_stage(&a, &a.model, AGREEMENT_BEFORE)?;

    eprintln!("fairlm: experiment 2/3: mitigation");
    let model_dir = a.out.join("model");
    let report: TrainReport = if a.resume && model_dir.join("config.json").exists() {
        eprintln!(
            "fairlm: keeping the finished mitigation {}",
            model_dir.display()
        );
        serde_json::from_str(&std::fs::read_to_string(a.out.join("train.json"))?)?
    } else {
        let m = MitigateArgs {
            model: a.model.clone(),
            out: a.out.clone(),
            resume: a.resume,
            train: a.train.clone(),
        };
        crate::mitigate::mitigate(&m)?.0
    };

    eprintln!("fairlm: experiment 3/3: audit of the mitigated model");
    let mitigated = ModelArgs {
        model: model_dir.display().to_string(),
        dtype: fairlm_model::NumericPath::F32,
        allow_download: false,
    };
    let after = audit_stage(&a, &mitigated, "after")?;
    let agreement_after = agreement_stage(&a, &mitigated, AGREEMENT_AFTER)?;

    let mut comparison = compare::compare(
        &before,
        &after,
        &a.gates.gates(),
        before.config.bootstrap_resamples,
        seed,
    )?;
    let lexicon = fairlm_pipeline::model::lexicon(a.train.lexicon.as_deref(), &a.train.axes)?;
    let agreement = |audit: &Option<AuditResults>| {
        audit
            .as_ref()
            .and_then(|r| pronoun_agreement(&r.records, &lexicon))
    };
    let agreement = Agreement {
        before: agreement(&agreement_before),
        after: agreement(&agreement_after),
    };
    if let (Some(b), Some(f)) = (agreement.before, agreement.after) {
        let share = |(agree, with): (usize, usize)| agree as f64 / with as f64;
        let gate = compare::agreement_gate(share(b), share(f), a.max_agreement_drop);
        comparison.gates.push(gate);
    }
    let fluency = fluency(&a, &before, &after)?;
    comparison
        .gates
        .push(compare::fluency_gate(&fluency[1].delta, a.max_fluency_drop));
    comparison.gates.push(compare::diversity_gate(
        before.probe.fluency.distinct_2,
        after.probe.fluency.distinct_2,
        a.max_diversity_drop,
    ));
    let mut md = compare::markdown(&comparison);
    md.push_str(&quality_markdown(&before, &after, &agreement, &fluency));
    write_atomic(&a.out.join("compare.md"), md.as_bytes())?;
    let mitigation = training_markdown(&report);
    write_atomic(&a.out.join("mitigation.md"), mitigation.as_bytes())?;
    let html = fairlm_report::render(&before, Some(&after), Some(&comparison));
    write_atomic(&a.out.join("report.html"), html.as_bytes())?;
    outln!("{md}{mitigation}")?;
    eprintln!(
        "fairlm: wrote {0}/compare.md, {0}/mitigation.md and {0}/report.html",
        a.out.display()
    );
    for g in comparison.gates.iter().filter(|g| !g.passed) {
        eprintln!("fairlm: gate {} failed: {}", g.gate, g.detail);
    }
    Ok(comparison.passed())
}

/// Pronoun agreement with the subject (samples that agree, samples with a pronoun) in the
/// agreement audits before and after.
struct Agreement {
    before: Option<(usize, usize)>,
    after: Option<(usize, usize)>,
}

/// The samples' mean log-prob per token under the original model, before and after, and the
/// paired change.
struct LogprobChange {
    what: &'static str,
    before: f64,
    after: f64,
    delta: Estimate,
}

/// Both readings of fluency (design §3.5): [after each sample's own prompt (information),
/// averaged over the counterfactual prompts (gated)].
fn fluency(
    a: &ExperimentArgs,
    before: &AuditResults,
    after: &AuditResults,
) -> Result<[LogprobChange; 2]> {
    let ck = a.model.open()?;
    let original = ck.build()?;
    // The "before" audit ran on the original model: its records hold the scores needed.
    let sb = recorded_logprobs(&ck.tokenizer, &before.records)?;
    let sa = continuation_logprobs(original.as_ref(), &ck.tokenizer, &after.records)?;
    let change = |b: &[ContinuationScore], f: &[ContinuationScore], what| LogprobChange {
        what,
        before: mean_logprob(b),
        after: mean_logprob(f),
        delta: compare::logprob_delta(b, f, before.config.bootstrap_resamples, a.train.seed),
    };
    Ok([
        change(
            &sb.own,
            &sa.own,
            "samples' mean log-prob per token under the original model, after their own prompt (information)",
        ),
        change(
            &sb.group_average,
            &sa.group_average,
            "the same, probabilities averaged over the counterfactual prompts (swap-aware; gated)",
        ),
    ])
}

/// Quality the perplexity does not show: pronoun agreement, the samples' likelihood under the
/// original model, their diversity.
fn quality_markdown(
    before: &AuditResults,
    after: &AuditResults,
    agreement: &Agreement,
    fluency: &[LogprobChange],
) -> String {
    let mut s = String::from(
        "\n## Quality beyond perplexity\n\n| measure | before | after | Δ [95% paired CI] |\n|---|---|---|---|\n",
    );
    let cell = |x: Option<(usize, usize)>| match x {
        Some((agree, with)) => {
            let e = wilson_interval(agree, with);
            format!(
                "{:.3} ({agree} of {with}) [{:.3}, {:.3}]",
                e.value, e.ci_low, e.ci_high
            )
        }
        None => "n/a".into(),
    };
    s += &format!(
        "| pronoun agreement with the subject (the agreement audits' samples with a pronoun; Wilson 95%) | {} | {} | — |\n",
        cell(agreement.before),
        cell(agreement.after)
    );
    for c in fluency {
        s += &format!(
            "| {} | {:.3} | {:.3} | {:+.3} [{:+.3}, {:+.3}] |\n",
            c.what, c.before, c.after, c.delta.value, c.delta.ci_low, c.delta.ci_high
        );
    }
    let (fb, fa) = (&before.probe.fluency, &after.probe.fluency);
    s += &format!(
        "| distinct-2 of the samples | {:.3} | {:.3} | {:+.3} |\n| repetition rate of the samples | {:.3} | {:.3} | — |\n",
        fb.distinct_2,
        fa.distinct_2,
        fa.distinct_2 - fb.distinct_2,
        fb.repetition_rate,
        fa.repetition_rate
    );
    s
}

/// The mitigation's own figures (from train.json; compare.md holds only figures recomputed
/// from the audits' records).
fn training_markdown(r: &TrainReport) -> String {
    let w = &r.config.weights;
    let mut s = String::from("\n## Mitigation\n\n| | |\n|---|---|\n");
    s += &format!(
        "| mode | {:?}, {} trainable parameters |\n",
        r.config.mode, r.trainable_parameters
    );
    s += &format!(
        "| losses | CE {}, consistency {}, equalising {}, attribute {}, anchor {}, pair anchor {}, sequence {}, adversary λ {} |\n",
        w.ce, w.consistency, w.equalising, w.attribute, w.anchor, w.pair_anchor, w.sequence, w.adversary
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
