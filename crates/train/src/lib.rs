//! Mitigation by training only (design.md §4): a counterfactually augmented corpus, the bias
//! losses over a sentence and its swapped twin, an adversarial discriminator behind gradient
//! reversal, and a trainer (AdamW, warm-up + cosine, clipping, accumulation, checkpoints,
//! quality guard) whose output keeps the input's architecture.
//!
//! The trainer's schedule and settings are plain values; `trainer::train` runs them on a
//! checkpoint and a corpus (the pipeline crate's `mitigate` builds both):
//!
//! ```
//! use fairlm_train::optim::learning_rate;
//! use fairlm_train::settings::TrainConfig;
//!
//! let cfg = TrainConfig::default();
//! // Linear warm-up to the peak, then a cosine to a tenth of it.
//! let first = learning_rate(0, cfg.steps, cfg.warmup_steps, cfg.learning_rate);
//! let peak = learning_rate(cfg.warmup_steps, cfg.steps, cfg.warmup_steps, cfg.learning_rate);
//! let last = learning_rate(cfg.steps, cfg.steps, cfg.warmup_steps, cfg.learning_rate);
//! assert!(first < peak && (peak - cfg.learning_rate).abs() < 1e-12);
//! assert!((last - 0.1 * cfg.learning_rate).abs() < 1e-12);
//! ```

// No unwrap/expect outside tests: a user's input or the file system must not be able to make
// fairlm panic (issue 16). Invariants that cannot fail carry an allow with the reason.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adversary;
pub mod align;
mod batches;
pub mod checkpoint;
pub mod classes;
pub mod corpus;
mod discriminator;
pub mod error;
mod forward;
pub mod losses;
pub mod optim;
pub mod params;
pub mod settings;
pub mod trainer;

pub use error::{Error, Result};
