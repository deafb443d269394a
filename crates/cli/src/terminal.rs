//! What the CLI shows on the terminal while a library run works: the pipeline's observer
//! (stage lines, a served model's request counts, an experiment's audit summaries) and an
//! audit's summary with where its files are.

use std::path::Path;

use anyhow::Result;
use fairlm_bias::audit::AuditResults;
use fairlm_pipeline::{self as pipeline, Observer, RequestCounts};

/// The CLI's observer of long runs: a served model's request counts on stderr, when stderr is
/// a terminal (as the progress bars are drawn).
pub struct Terminal;

impl Observer for Terminal {
    fn requests(&self, url: &str, c: &RequestCounts) {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            eprintln!(
                "fairlm: {url}: {} requests answered, {} from the cache, {} in flight, {} retries, {:.0} tok/s",
                c.answered, c.cached, c.in_flight, c.retries, c.tokens_per_second
            );
        }
    }

    fn message(&self, text: &str) {
        eprintln!("fairlm: {text}");
    }

    fn audit_finished(&self, results: &fairlm_bias::audit::AuditResults, dir: &Path) {
        // A closed stdout ends the summary, not the run.
        let _ = finish(results, Some(dir));
    }
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
