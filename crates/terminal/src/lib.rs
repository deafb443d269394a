//! What fairlm's front ends show on stderr while a library run works. The libraries below only
//! report — stages of work through [`fairlm_pipeline::Progress`], stage lines and a served
//! model's request counts through [`Observer`] — and this crate is where both front ends, the
//! `fairlm` binary and the Python package, draw those reports, so that they look alike: one
//! progress bar per stage (drawn only when stderr is a terminal), each line prefixed `fairlm: `.
//!
//! ```
//! use fairlm_pipeline::{Observer, Progress};
//! use fairlm_terminal::Terminal;
//!
//! let terminal = Terminal::new().stopped_by(|| true);
//! let stage = terminal.stage("templates", 3);
//! stage.advance(1);
//! drop(stage); // the bar is cleared
//! assert!(terminal.stop_requested());
//! terminal.message("done");
//! ```

#![warn(missing_docs)]

use std::io::IsTerminal;
use std::path::Path;

use fairlm_bias::audit::AuditResults;
use fairlm_pipeline::{Observer, Progress, RequestCounts, Stage};
use indicatif::{ProgressBar, ProgressStyle};

type StopPoll = Box<dyn Fn() -> bool + Send + Sync>;
type AuditHook = Box<dyn Fn(&AuditResults, &Path) + Send + Sync>;

/// A front end's observer of long runs: bars and lines on stderr, a stop poll and what to do
/// when an experiment's audit finishes, both given by the front end.
#[derive(Default)]
pub struct Terminal {
    stop: Option<StopPoll>,
    on_audit: Option<AuditHook>,
}

impl Terminal {
    /// Bars and lines, a run nobody stops, nothing shown of an experiment's audits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs stop at their next unit of work when `poll` says so (the Python package: a pending
    /// Ctrl-C).
    pub fn stopped_by(mut self, poll: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.stop = Some(Box::new(poll));
        self
    }

    /// `hook` is called with each audit an experiment finishes and the folder it wrote (the
    /// CLI prints its summary).
    pub fn on_audit_finished(
        mut self,
        hook: impl Fn(&AuditResults, &Path) + Send + Sync + 'static,
    ) -> Self {
        self.on_audit = Some(Box::new(hook));
        self
    }
}

/// One stage's bar; cleared when the stage ends.
struct Bar(ProgressBar);

impl Stage for Bar {
    fn advance(&self, units: u64) {
        self.0.inc(units);
    }

    fn status(&self, text: &str) {
        self.0.set_message(text.to_string());
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Terminal {
    fn stage(&self, what: &str, total: u64) -> Box<dyn Stage + '_> {
        // indicatif draws nothing when stderr is not a terminal (a log file, a pipe).
        let bar = ProgressBar::new(total).with_message(what.to_string());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Box::new(Bar(bar))
    }

    fn message(&self, text: &str) {
        eprintln!("fairlm: {text}");
    }

    fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|poll| poll())
    }
}

impl Observer for Terminal {
    /// The counts, when stderr is a terminal (as the bars are drawn).
    fn requests(&self, url: &str, c: &RequestCounts) {
        if std::io::stderr().is_terminal() {
            eprintln!(
                "fairlm: {url}: {} requests answered, {} from the cache, {} in flight, {} retries, {:.0} tok/s",
                c.answered, c.cached, c.in_flight, c.retries, c.tokens_per_second
            );
        }
    }

    fn audit_finished(&self, results: &AuditResults, dir: &Path) {
        if let Some(hook) = &self.on_audit {
            hook(results, dir);
        }
    }
}
