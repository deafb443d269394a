//! `fairlm report BEFORE.json [AFTER.json] -o report.html`: reads, compares when two are
//! given, and writes the page from `fairlm_report`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use fairlm_bias::audit::{write_atomic, AuditResults};
use fairlm_bias::compare::{self, Gates};

use crate::compare::GateArgs;

#[derive(Args)]
pub struct ReportArgs {
    /// results.json of an audit (the "before" one when AFTER is given).
    #[arg(value_parser = crate::args::path)]
    pub results: PathBuf,
    /// results.json of the audit after mitigation.
    #[arg(value_parser = crate::args::path)]
    pub after: Option<PathBuf>,
    /// The HTML file to write.
    #[arg(value_parser = crate::args::path, short, long, default_value = "report.html")]
    pub output: PathBuf,
    #[command(flatten)]
    pub gates: GateArgs,
}

/// Writes the page; returns whether every gate passed (exit 1 otherwise, as `compare`).
pub fn run(a: ReportArgs) -> Result<bool> {
    let gates = a.gates.gates();
    if a.after.is_none() && gates != Gates::default() {
        anyhow::bail!("gates compare a before/after pair: give AFTER.json as well");
    }
    let before = AuditResults::read(&a.results)?;
    let after = a.after.as_deref().map(AuditResults::read).transpose()?;
    let comparison = match &after {
        Some(af) => Some(compare::compare(
            &before,
            af,
            &gates,
            before.config.bootstrap_resamples,
            before.seed,
        )?),
        None => None,
    };
    let html = fairlm_report::render(&before, after.as_ref(), comparison.as_ref());
    write_atomic(&a.output, html.as_bytes())?;
    eprintln!(
        "fairlm: wrote {} ({:.1} kB)",
        a.output.display(),
        html.len() as f64 / 1e3
    );
    let failed: Vec<_> = comparison
        .iter()
        .flat_map(|c| c.gates.iter().filter(|g| !g.passed))
        .collect();
    for g in &failed {
        eprintln!("fairlm: gate {} failed: {}", g.gate, g.detail);
    }
    Ok(failed.is_empty())
}
