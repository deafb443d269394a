//! Mitigation by training only (design.md §4): a counterfactually augmented corpus, the bias
//! losses over a sentence and its swapped twin, an adversarial discriminator behind gradient
//! reversal, and a trainer (AdamW, warm-up + cosine, clipping, accumulation, checkpoints,
//! quality guard) whose output keeps the input's architecture.

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
