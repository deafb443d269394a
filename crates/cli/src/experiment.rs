//! `fairlm experiment`: arguments into a config, and printing; the run (audit before →
//! mitigate → audit after → comparison, quality gates, report, resume) is
//! `fairlm_pipeline::experiment`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{ArgMatches, Args};
use fairlm_pipeline::ExperimentConfig;

use crate::compare::GateArgs;
use crate::engine::ModelArgs;
use crate::mitigate::TrainArgs;
use crate::terminal::terminal;

#[derive(Args)]
pub struct ExperimentArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Holds before/, after/, model/, model.gguf, train.json, train-log.jsonl, compare.md,
    /// mitigation.md, report.html and experiment.json (what made it).
    #[arg(value_parser = crate::args::path, long, default_value = "experiment")]
    pub out: PathBuf,
    /// Small profile (≤ 10 min): quick audits, a short mitigation on a smaller corpus.
    #[arg(long)]
    pub quick: bool,
    /// Continue an interrupted experiment in OUT (finished stages are kept; the settings and
    /// input files must be those it was started with).
    #[arg(long)]
    pub resume: bool,
    /// A config file (TOML, as `fairlm config --print experiment` writes it, or an earlier
    /// experiment's experiment.json) to run; the flags given here override its settings.
    #[arg(value_parser = crate::args::path, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Gates of the experiment's verdict (exit 1 when one fails) [default: --max-bias-ratio
    /// 0.43 unless --max-bias is given; --max-ppl-increase 5].
    #[command(flatten)]
    pub gates: GateArgs,
    /// Pronoun agreement with the prompt's subject may fall at most this many points (a model
    /// that forgets who "she" is has lost quality perplexity does not show; design §3.5).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = ExperimentConfig::default().gates.max_agreement_drop.unwrap_or_default())]
    pub max_agreement_drop: f64,
    /// Continuations per (template, group) of the pronoun axis drawn for the agreement gate, in
    /// an audit of that axis alone before and after (OUT/agreement-before, agreement-after):
    /// the main audits' 3 give ~50 samples with a pronoun, where one sample moves the share
    /// by 2 points against the gate's 5.
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = ExperimentConfig::default().agreement_samples)]
    pub agreement_samples: usize,
    /// The samples' group-averaged mean log-prob per token under the original model may fall at
    /// most this many nats (point estimate; ln 1.05, the perplexity gate's 5%; design §3.5).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = ExperimentConfig::default().gates.max_fluency_drop.unwrap_or_default())]
    pub max_fluency_drop: f64,
    /// Distinct-2 of the probe's samples may fall at most this much (design §3.5).
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long, default_value_t = ExperimentConfig::default().gates.max_diversity_drop.unwrap_or_default())]
    pub max_diversity_drop: f64,
    /// CrowS-Pairs CSV (your copy) scored before and after.
    #[arg(value_parser = crate::args::path, long)]
    pub crows: Option<PathBuf>,
    /// StereoSet intrasentence JSON (your copy) scored before and after.
    #[arg(value_parser = crate::args::path, long)]
    pub stereoset: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainArgs,
}

impl ExperimentArgs {
    /// The config the flags (and their defaults) give.
    fn flags_config(&self) -> ExperimentConfig {
        let default = ExperimentConfig::default().gates;
        let mut gates = self.gates.gates();
        // The seed's line, unless an absolute bias gate is asked for instead.
        if gates.max_bias_ratio.is_none() && gates.max_bias.is_none() {
            gates.max_bias_ratio = default.max_bias_ratio;
        }
        if gates.max_ppl_increase.is_none() {
            gates.max_ppl_increase = default.max_ppl_increase;
        }
        gates.max_agreement_drop = Some(self.max_agreement_drop);
        gates.max_fluency_drop = Some(self.max_fluency_drop);
        gates.max_diversity_drop = Some(self.max_diversity_drop);
        ExperimentConfig {
            model: self.model.model.clone(),
            dtype: self.model.dtype,
            allow_download: self.model.allow_download,
            quick: self.quick,
            gates,
            agreement_samples: self.agreement_samples,
            crows: self.crows.clone(),
            stereoset: self.stereoset.clone(),
            train: self.train.settings(),
        }
    }

    /// The run's config: `--config FILE`'s, with the flags `given` on the command line over
    /// it; without a file, the flags' (and their defaults).
    pub fn config(&self, given: &ArgMatches) -> Result<ExperimentConfig> {
        let flags = self.flags_config();
        let Some(path) = &self.config else {
            return Ok(flags);
        };
        let mut cfg = ExperimentConfig::read(path)?;
        flags_over_file!(given, cfg, flags;
            model, dtype, allow_download, quick, agreement_samples, crows, stereoset
        );
        self.train.over(&mut cfg.train, given);
        flags_over_file!(given, cfg.gates, flags.gates;
            max_bias, max_bias_ratio, max_ppl_increase, min_lms, max_agreement_drop,
            max_fluency_drop, max_diversity_drop
        );
        Ok(cfg)
    }
}

pub fn run(a: ExperimentArgs, given: &ArgMatches) -> Result<bool> {
    let e = fairlm_pipeline::experiment(&a.config(given)?, &a.out, a.resume, Arc::new(terminal()))?;
    outln!("{}{}", e.compare_markdown, e.mitigation_markdown)?;
    eprintln!(
        "fairlm: wrote {0}/compare.md, {0}/mitigation.md and {0}/report.html",
        a.out.display()
    );
    for g in e.comparison.gates.iter().filter(|g| !g.passed) {
        eprintln!("fairlm: gate {} failed: {}", g.gate, g.detail);
    }
    Ok(e.passed())
}
