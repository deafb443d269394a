//! `fairlm compare BEFORE AFTER`: argument handling and printing; the work and its defaults
//! are `fairlm_pipeline::compare`'s. Returns whether every gate passed.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use fairlm_bias::audit::{write_atomic, AuditResults};
use fairlm_bias::compare::{self, Gates};
use fairlm_pipeline::CompareConfig;

/// Gates a before/after pair must hold (shared by `compare` and `report`).
#[derive(Args)]
pub struct GateArgs {
    /// Fail (exit 1) when the bias score after is above this.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long)]
    pub max_bias: Option<f64>,
    /// Fail when after / before bias score is above this.
    #[arg(value_parser = crate::args::positive, allow_hyphen_values = true, long)]
    pub max_bias_ratio: Option<f64>,
    /// Fail when held-out perplexity rises more than this many percent.
    #[arg(value_parser = crate::args::non_negative, allow_hyphen_values = true, long)]
    pub max_ppl_increase: Option<f64>,
    /// Fail when StereoSet lms after is below this (the audits must have run --stereoset).
    #[arg(value_parser = crate::args::percent, allow_hyphen_values = true, long)]
    pub min_lms: Option<f64>,
}

impl GateArgs {
    pub fn gates(&self) -> Gates {
        Gates {
            max_bias: self.max_bias,
            max_bias_ratio: self.max_bias_ratio,
            max_ppl_increase: self.max_ppl_increase,
            min_lms: self.min_lms,
            ..Gates::default()
        }
    }
}

#[derive(Args)]
pub struct CompareArgs {
    /// results.json of the audit before.
    #[arg(value_parser = crate::args::path)]
    pub before: PathBuf,
    /// results.json of the audit after.
    #[arg(value_parser = crate::args::path)]
    pub after: PathBuf,
    #[command(flatten)]
    pub gates: GateArgs,
    /// Also write the table here (Markdown).
    #[arg(value_parser = crate::args::path, long)]
    pub out: Option<PathBuf>,
    #[arg(value_parser = crate::args::count, allow_hyphen_values = true, long, default_value_t = CompareConfig::default().bootstrap)]
    pub bootstrap: usize,
    #[arg(long, default_value_t = CompareConfig::default().seed)]
    pub seed: u64,
}

pub fn run(a: CompareArgs) -> Result<bool> {
    let (before, after) = (
        AuditResults::read(&a.before)?,
        AuditResults::read(&a.after)?,
    );
    let cfg = CompareConfig {
        gates: a.gates.gates(),
        bootstrap: a.bootstrap,
        seed: a.seed,
    };
    let c = fairlm_pipeline::compare(&before, &after, &cfg)?;
    let md = compare::markdown(&c);
    outln!("{md}")?;
    if let Some(out) = &a.out {
        write_atomic(out, md.as_bytes())?;
    }
    for g in c.gates.iter().filter(|g| !g.passed) {
        eprintln!("fairlm: gate {} failed: {}", g.gate, g.detail);
    }
    Ok(c.passed())
}
