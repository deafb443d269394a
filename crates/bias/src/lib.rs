//! fairlm's bias measures. Data flows one way: lexicons and templates (data files) →
//! counterfactual swaps → the generation probe (samples, Δ per counterfactual) → metrics
//! with bootstrap confidence intervals → the audit's results. Nothing here trains.
//!
//! The counterfactual swap at the heart of the probe, on the built-in lexicon, and the
//! seeded cluster bootstrap every CI comes from:
//!
//! ```
//! use fairlm_bias::lexicon::Lexicon;
//! use fairlm_bias::stats::bootstrap;
//! use fairlm_bias::swap::AxisSwapper;
//!
//! let lexicon = Lexicon::default_lexicon()?;
//! let gender = lexicon.axis("gender").expect("the built-in lexicon has a gender axis");
//! let swapper = AxisSwapper::new(gender);
//! let (woman, man) = (0, 1);
//! assert_eq!(gender.groups[woman], "female");
//! let twin = swapper.swap(woman, man, "The woman said that she was tired.");
//! assert_eq!(twin.text, "The man said that he was tired.");
//!
//! let clusters = vec![vec![1.0, 0.0], vec![1.0], vec![0.0, 0.0, 1.0]];
//! let mean = |picked: &[&[f64]]| {
//!     let all: Vec<f64> = picked.iter().flat_map(|c| c.iter().copied()).collect();
//!     all.iter().sum::<f64>() / all.len() as f64
//! };
//! let share = bootstrap(&clusters, mean, 1000, 0);
//! assert!(share.ci_low <= share.value && share.value <= share.ci_high);
//! # Ok::<(), fairlm_bias::Error>(())
//! ```

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
pub mod flips;
pub mod grammar;
pub mod holistic;
pub mod lexicon;
pub mod metrics;
pub mod pair_files;
pub mod pairs;
pub mod probe;
pub mod quality;
pub mod record;
pub mod rows;
pub mod shard;
pub mod stats;
pub mod stereoset;
pub mod swap;
pub mod templates;

pub use error::{Error, Result};
