//! What the CLI shows on the terminal while a library run works: `fairlm-terminal`'s observer
//! (bars, stage lines, a served model's request counts) with an experiment's audit summaries,
//! and an audit's summary with where its files are.

use std::path::Path;

use anyhow::Result;
use fairlm_bias::audit::AuditResults;
use fairlm_pipeline as pipeline;
use fairlm_terminal::Terminal;

/// The CLI's observer of long runs: `fairlm-terminal`'s bars and lines, and each audit an
/// experiment finishes summarised on stdout.
pub fn terminal() -> Terminal {
    // A closed stdout ends the summary, not the run.
    Terminal::new().on_audit_finished(|results, dir| {
        let _ = finish(results, Some(dir));
    })
}

/// Prints the audit's summary (and the rows its benchmarks skipped) and where its files are.
pub fn finish(results: &AuditResults, out: Option<&Path>) -> Result<()> {
    for b in &results.benchmarks {
        for line in pipeline::bench::skipped_lines(&b.file, &b.skipped) {
            eprintln!("fairlm: {line}");
        }
    }
    outln!("{}", pipeline::audit::summary(results))?;
    if let Some(out) = out {
        eprintln!(
            "fairlm: wrote {}/results.json, summary.md and timings.json",
            out.display()
        );
    }
    Ok(())
}
