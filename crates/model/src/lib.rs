//! fairlm's language-model engine: tokenizers, GPT-2 and Llama-family (Llama, Qwen2, Mistral)
//! models on candle,
//! loading from GGUF and Hugging Face directories, batched scoring, seeded sampling, and the
//! default model's fetch. It knows nothing of bias metrics or training loops.
//!
//! A checkpoint (a GGUF file or a Hugging Face directory) opens on a numeric path and builds a
//! [`CausalLm`]; scoring reads per-token log-probabilities off it. Here, the repository's tiny
//! test model:
//!
//! ```
//! use fairlm_model::score::{score_items, ScoreItem};
//! use fairlm_model::{Checkpoint, NumericPath};
//!
//! let ck = Checkpoint::open("../../fixtures/tiny-llama".as_ref(), NumericPath::F32)?;
//! let model = ck.build()?;
//! let ids = ck.tokenizer.encode("The nurse said that she was tired.")?;
//! let context = [ck.tokenizer.document_start().unwrap_or(ids[0])];
//! let item = ScoreItem::after_context(&context, &ids);
//! let logprobs = score_items(model.as_ref(), &[item], 8, |_| {})?;
//! assert_eq!(logprobs[0].len(), ids.len());
//! assert!(logprobs[0].iter().all(|lp| lp.is_finite() && *lp <= 0.0));
//! # Ok::<(), fairlm_model::Error>(())
//! ```

// No unwrap/expect outside tests: a user's input or the file system must not be able to make
// fairlm panic (issue 16). Invariants that cannot fail carry an allow with the reason.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod backend;
pub mod error;
pub mod fetch;
pub mod files;
pub mod fused;
pub mod generate;
pub mod gpt2;
pub mod hub;
pub mod llama;
pub mod lm;
pub mod loader;
pub mod ops;
pub mod perplexity;
pub mod progress;
pub mod q4_1;
pub mod save;
pub mod score;
pub mod self_debias;
pub mod served;
pub mod speed;
pub mod support;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
pub use lm::{CausalLm, KvCache, ModelInfo, Output};
pub use loader::{ArchConfig, Checkpoint, Format, NumericPath};
pub use progress::{Progress, Stage, Unwatched};
pub use tokenizer::Tokenizer;

/// candle asks for its thread count before each parallel op, and without RAYON_NUM_THREADS
/// it counts the physical cores by reading /proc/cpuinfo every time: 4% of a decoding step
/// (perf, BENCHMARKS.md). Counting once and setting the variable answers the later calls from
/// the environment. Call it first thing in `main`, before other threads exist.
pub fn count_threads_once() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}
