//! fairlm's bias measures. Data flows one way: lexicons and templates (data files) →
//! counterfactual swaps → the generation probe (samples, Δ per counterfactual) → metrics
//! with bootstrap confidence intervals → the audit's results. Nothing here trains.

// No unwrap/expect outside tests: a user's input or the file system must not be able to make
// fairlm panic (issue 16). Invariants that cannot fail carry an allow with the reason.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod bbq;
pub mod bold;
pub mod compare;
pub mod detectors;
pub mod error;
pub mod grammar;
pub mod holistic;
pub mod lexicon;
pub mod metrics;
pub mod pairs;
pub mod probe;
pub mod quality;
pub mod record;
pub mod shard;
pub mod stats;
pub mod swap;
pub mod templates;

pub use error::{Error, Result};
