//! fairlm's runs as a library, above the measures (`fairlm_bias`) and below the front ends
//! (the `fairlm` binary and the Python package): typed, serde configs with the defaults of
//! every front end (`Default`), the model a config names opened locally or behind a server,
//! the audit with its output files, checkpoint, shards and merge, the benchmarks, the
//! mitigation and the experiment, and scoring of texts.
//! Nothing here prints: a run reports to an [`Observer`], which is also how a caller stops it.
//!
//! Every run is a config (serde, `Default` = the CLI's defaults) and one call; here, scoring
//! texts with the repository's tiny test model:
//!
//! ```
//! use std::sync::Arc;
//! use fairlm_pipeline::{score, Quiet, ScoreConfig};
//!
//! let cfg = ScoreConfig {
//!     model: "../../fixtures/tiny-gpt2".into(),
//!     ..ScoreConfig::default()
//! };
//! let texts = ["The nurse said that she was tired.".to_string()];
//! let scores = score(&texts, &cfg, Arc::new(Quiet))?;
//! assert_eq!(scores.len(), 1);
//! assert!(scores[0].logprob_sum < 0.0 && scores[0].n_tokens > 0);
//! # Ok::<(), fairlm_pipeline::Error>(())
//! ```
//!
//! [`audit()`], [`mitigate()`], [`experiment()`] and [`bench::bench`] run the same way from their
//! configs ([`AuditConfig`], [`MitigateConfig`], [`ExperimentConfig`],
//! [`bench::BenchConfig`]), writing the files the CLI writes into the directory they are given.

// No unwrap/expect outside tests: a user's input must not be able to make fairlm panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod audit;
pub mod bench;
pub mod compare;
pub mod config;
pub mod error;
pub mod experiment;
pub mod mitigate;
pub mod model;
mod provenance;
pub mod score;

pub use audit::{audit, AuditConfig};
pub use compare::{compare, CompareConfig};
pub use error::{Error, Result};
pub use experiment::{experiment, Experiment, ExperimentConfig};
pub use mitigate::{mitigate, MitigateConfig, Mitigation, TrainSettings};
pub use model::{ModelSpec, ScoringModel, ServedSpec};
pub use score::{score, ScoreConfig, ScoredText};

use fairlm_model::served::RequestStats;
pub use fairlm_model::{Progress, Stage};

/// What a long run tells its caller while it works, and how the caller stops it: the stages'
/// counts, lines and stop poll of [`Progress`], and the pipeline's own reports. Every method has a
/// default that does nothing, so an observer implements what it shows.
pub trait Observer: Progress {
    /// A served model's request counts, every few seconds while they change.
    fn requests(&self, _url: &str, _counts: &RequestCounts) {}
    /// An audit stage of an experiment finished: its results, written into `dir`.
    fn audit_finished(&self, _results: &fairlm_bias::audit::AuditResults, _dir: &std::path::Path) {}
}

/// An observer that shows nothing and never stops a run.
pub struct Quiet;

impl Progress for Quiet {}
impl Observer for Quiet {}

/// A served model's requests so far, and the tokens per second of the last interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestCounts {
    /// Requests the server answered.
    pub answered: u64,
    /// Requests answered from the request cache.
    pub cached: u64,
    /// Requests sent and not yet answered.
    pub in_flight: u64,
    /// Requests sent again after a connection error, 429 or 5xx.
    pub retries: u64,
    /// Tokens scored per second over the last interval.
    pub tokens_per_second: f64,
}

impl RequestCounts {
    fn read(stats: &RequestStats, last_tokens: &mut u64, seconds: f64) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let tokens = stats.tokens.load(Relaxed);
        let rate = (tokens - *last_tokens) as f64 / seconds;
        *last_tokens = tokens;
        RequestCounts {
            answered: stats.answered.load(Relaxed),
            cached: stats.cached.load(Relaxed),
            in_flight: stats.in_flight.load(Relaxed),
            retries: stats.retries.load(Relaxed),
            tokens_per_second: rate,
        }
    }
}

/// The default model's name: `smollm2`, fetched on first use.
pub const DEFAULT_MODEL: &str = fairlm_model::fetch::DEFAULT_MODEL;
