//! Engine throughput on fixed work (scoring a 64×16 batch, greedy decoding, batched
//! sampling), for BENCHMARKS.md and the side-by-side script. Measures; asserts nothing.

use std::time::Instant;

use crate::error::Result;
use crate::generate::{generate, SamplingConfig};
use crate::lm::CausalLm;
use crate::score::{score_items, ScoreItem};
use crate::tokenizer::Tokenizer;

/// The x86-64 level this CPU offers and so the one the f32 matrix products (gemm, built with
/// its `x86-v4` kernels) and fairlm's own AVX2 kernels take, detected at run time; the bf16
/// dot-product extension, when present (the f32 path does not use it), named after it.
/// "other" off x86-64.
pub fn instruction_set() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let level = if is_x86_feature_detected!("avx512f") {
            "x86-64-v4 (AVX-512F)"
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            "x86-64-v3 (AVX2, FMA)"
        } else {
            "x86-64 (SSE2)"
        };
        if is_x86_feature_detected!("avx512bf16") {
            format!("{level}; also AVX-512 BF16")
        } else {
            level.to_string()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "other".to_string()
    }
}

/// One timed piece of work.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    /// What was timed.
    pub work: String,
    /// Tokens per run.
    pub tokens: usize,
    /// Median wall time of the runs.
    pub median_s: f64,
    /// Every run's wall time.
    pub runs_s: Vec<f64>,
    /// Tokens per second at the median.
    pub tokens_per_s: f64,
}

/// What `fairlm speed` measured on this machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpeedReport {
    /// `f32` or `quantized`.
    pub numeric_path: String,
    /// Threads the kernels ran on.
    pub threads: usize,
    /// The instruction-set level the kernels dispatch to on this CPU (`instruction_set`).
    pub instruction_set: String,
    /// The scored batch (rows of token ids), so reference tools can run the same work.
    pub score_ids: Vec<Vec<u32>>,
    /// The sampling prompt's ids.
    pub prompt_ids: Vec<u32>,
    /// Each piece of work's timing.
    pub timings: Vec<Timing>,
}

fn time_runs(runs: usize, mut f: impl FnMut() -> Result<usize>) -> Result<(usize, Vec<f64>)> {
    let tokens = f()?; // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok((tokens, times))
}

fn timing(work: &str, tokens: usize, mut runs: Vec<f64>) -> Timing {
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    runs.iter_mut().for_each(|r| *r = (*r * 1e4).round() / 1e4);
    Timing {
        work: work.into(),
        tokens,
        median_s: median,
        runs_s: runs,
        tokens_per_s: tokens as f64 / median,
    }
}

/// Timed runs per piece of work unless told otherwise (after one warm-up; the median counts).
pub const DEFAULT_RUNS: usize = 3;

/// Batch sizes of the sampling measurement unless told otherwise.
pub const DEFAULT_SAMPLE_BATCHES: [usize; 2] = [16, 32];

/// Runs each piece of work `runs` times after a warm-up. `text` supplies the scored tokens.
pub fn measure(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    text: &str,
    runs: usize,
    sample_batches: &[usize],
) -> Result<SpeedReport> {
    let ids = tok.encode(text)?;
    let score_ids: Vec<Vec<u32>> = ids.chunks_exact(16).take(64).map(|c| c.to_vec()).collect();
    let items: Vec<ScoreItem> = score_ids
        .iter()
        .map(|r| ScoreItem {
            tokens: r.clone(),
            first_scored: 1,
        })
        .collect();
    let mut timings = Vec::new();
    let (n, t) = time_runs(runs, || {
        score_items(model, &items, items.len(), |_| {})?;
        Ok(items.len() * 16)
    })?;
    timings.push(timing(&format!("score {}x16 tokens", items.len()), n, t));

    let prompt_ids = tok.encode("The nurse said that")?;
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 64,
        ..Default::default()
    };
    let (n, t) = time_runs(runs, || {
        Ok(generate(model, tok, &prompt_ids, 1, &greedy, 0, 0)?[0]
            .token_ids
            .len())
    })?;
    timings.push(timing("greedy decode 64 tokens, batch 1", n, t));

    let sampling = SamplingConfig {
        temperature: 1.0,
        max_new_tokens: 64,
        ..Default::default()
    };
    for &b in sample_batches.iter().filter(|&&b| b > 0) {
        let (n, t) = time_runs(runs, || {
            Ok(generate(model, tok, &prompt_ids, b, &sampling, 0, 0)?
                .iter()
                .map(|g| g.token_ids.len())
                .sum())
        })?;
        timings.push(timing(&format!("sample 64 tokens, batch {b}"), n, t));
    }
    Ok(SpeedReport {
        numeric_path: model.info().numeric_path.clone(),
        threads: rayon::current_num_threads(),
        instruction_set: instruction_set(),
        score_ids,
        prompt_ids,
        timings,
    })
}
