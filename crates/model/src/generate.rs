//! Seeded sampling and batched generation with a key/value cache. Each (prompt, sample)
//! owns its random stream, derived from the seed, so a sample does not depend on which
//! other samples share its batch.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::lm::{CausalLm, KvCache};
use crate::score::target_logprob;
use crate::tokenizer::Tokenizer;

/// How continuations are sampled: temperature, top-k, top-p, length and stop strings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SamplingConfig {
    /// 0 means greedy.
    pub temperature: f64,
    /// Keep only the k most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches p (`None`: all).
    pub top_p: Option<f64>,
    /// Tokens generated at most per sample.
    pub max_new_tokens: usize,
    /// Generation of a sample ends once its text contains one of these (kept in the text).
    pub stop: Vec<String>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            max_new_tokens: 32,
            stop: Vec::new(),
        }
    }
}

impl SamplingConfig {
    /// Refuses settings that sample nothing meaningful (a negative temperature, top-p outside (0, 1], …).
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::Invalid(format!(
                "temperature must be ≥ 0, got {}",
                self.temperature
            )));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::Invalid(format!("top-p must be in (0, 1], got {p}")));
            }
        }
        if self.top_k == Some(0) {
            return Err(Error::Invalid("top-k must be ≥ 1".into()));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err(Error::Invalid(
                "a stop string is empty (it would stop every sample before its first token)".into(),
            ));
        }
        Ok(())
    }
}

/// Draws tokens from logits with its own seeded stream.
pub struct Sampler {
    rng: StdRng,
    cfg: SamplingConfig,
}

impl Sampler {
    /// A sampler seeded with `seed`: the same seed and logits draw the same tokens.
    pub fn new(seed: u64, cfg: SamplingConfig) -> Self {
        Sampler {
            rng: StdRng::seed_from_u64(seed),
            cfg,
        }
    }

    /// Draws one token id from `logits` under the config.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temperature == 0.0 {
            return argmax(logits);
        }
        let t = self.cfg.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &x)| (i as u32, ((x as f64 - max) / t).exp()))
            .collect();
        if self.cfg.top_k.is_some() || self.cfg.top_p.is_some() {
            // Stable sort: ties keep token order, so the draw is deterministic.
            probs.sort_by(|a, b| b.1.total_cmp(&a.1));
            if let Some(k) = self.cfg.top_k {
                probs.truncate(k);
            }
            if let Some(p) = self.cfg.top_p {
                let total: f64 = probs.iter().map(|x| x.1).sum();
                let mut acc = 0.0;
                let mut keep = probs.len();
                for (i, (_, q)) in probs.iter().enumerate() {
                    acc += q / total;
                    if acc >= p {
                        keep = i + 1;
                        break;
                    }
                }
                probs.truncate(keep);
            }
        }
        let total: f64 = probs.iter().map(|x| x.1).sum();
        let mut u = self.rng.random::<f64>() * total;
        for &(id, q) in &probs {
            if u < q {
                return id;
            }
            u -= q;
        }
        probs.last().map(|x| x.0).unwrap_or(0)
    }
}

/// The first index of the largest value: the greedy token, as `Sampler` picks it.
pub(crate) fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// SplitMix64 of the seed and the sample's coordinates: independent streams per sample.
pub fn sample_seed(seed: u64, prompt: u64, sample: u64) -> u64 {
    let mut z = seed
        ^ prompt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ sample.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One sampled continuation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Generation {
    /// The sample's number among its prompt's samples.
    pub sample: usize,
    /// The decoded continuation.
    pub text: String,
    /// Its token ids.
    pub token_ids: Vec<u32>,
    /// `stop` (a stop string), `eos`, or `length`.
    pub finish: &'static str,
    /// The log-probability of each of `token_ids` under the model (the log-softmax of the
    /// logits it was drawn from, before temperature and truncation), where the generator had
    /// them: a caller that scores the sampled text need not run the model again. Empty when
    /// they are not known (a server that does not return them).
    #[serde(skip)]
    pub logprobs: Vec<f64>,
}

/// How many samples `generate_batched` draws per prompt, from which seed, in batches of how
/// many rows.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlan {
    /// Samples per prompt.
    pub samples: usize,
    /// The seed every sample's stream is derived from.
    pub seed: u64,
    /// Rows decoded together in one batch.
    pub batch_rows: usize,
}

/// The batches `generate_batched` decodes, as indexes into `prompts`: prompts sorted by
/// token length (ties in order), cut into the fewest batches of at most `plan.batch_rows`
/// rows (`plan.samples` rows per prompt), of sizes differing by at most one prompt. A batch
/// mixes lengths (`generate_streams` left-pads them); sorting keeps the padding small. A
/// server running fairlm is sent the same batches.
pub fn sampling_batches(prompts: &[(Vec<u32>, u64)], plan: BatchPlan) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].0.len(), i));
    let per_batch = (plan.batch_rows / plan.samples.max(1)).max(1);
    let count = order.len().div_ceil(per_batch);
    let mut batches = Vec::with_capacity(count);
    let mut start = 0;
    for b in 0..count {
        let size = (order.len() - start) / (count - b);
        batches.push(order[start..start + size].to_vec());
        start += size;
    }
    batches
}

/// `plan.samples` continuations of each of many prompts of any lengths, decoded in the
/// batches of `sampling_batches` (`generate_many`); `progress` is told how many prompts each
/// batch finished. Results are in the order of `prompts`.
pub fn generate_batched(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    prompts: &[(Vec<u32>, u64)],
    cfg: &SamplingConfig,
    plan: BatchPlan,
    progress: impl FnMut(usize),
) -> Result<Vec<Vec<Generation>>> {
    generate_batched_with(model, tok, prompts, cfg, plan, progress, None)
}

/// `generate_batched` with each sample's companion rows (see `generate_with_companions`).
pub fn generate_batched_with(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    prompts: &[(Vec<u32>, u64)],
    cfg: &SamplingConfig,
    plan: BatchPlan,
    mut progress: impl FnMut(usize),
    companions: Option<&Companions>,
) -> Result<Vec<Vec<Generation>>> {
    let mut generated: Vec<Vec<Generation>> = vec![Vec::new(); prompts.len()];
    let stream = |prompt, sample| sample_seed(plan.seed, prompt, sample);
    for chunk in sampling_batches(prompts, plan) {
        let batch: Vec<(&[u32], u64)> = chunk
            .iter()
            .map(|&i| (prompts[i].0.as_slice(), prompts[i].1))
            .collect();
        let gens =
            generate_with_companions(model, tok, &batch, plan.samples, cfg, &stream, companions)?;
        for (&i, g) in chunk.iter().zip(gens) {
            generated[i] = g;
        }
        progress(chunk.len());
    }
    Ok(generated)
}

/// `n` continuations of one prompt (see `generate_many`).
pub fn generate(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    prompt_ids: &[u32],
    n: usize,
    cfg: &SamplingConfig,
    seed: u64,
    prompt_index: u64,
) -> Result<Vec<Generation>> {
    let mut out = generate_many(model, tok, &[(prompt_ids, prompt_index)], n, cfg, seed)?;
    Ok(out.pop().unwrap_or_default())
}

/// `n` continuations of each of several prompts, decoded together: the prompts of each token
/// length are run once, together, and each one's cache is shared by its `n` samples; the
/// caches of different lengths are left-aligned into one (`KvCache::left_aligned`), so every
/// row is decoded in the same steps; rows that finish leave the batch. Sample i of prompt p
/// draws from the stream `sample_seed(seed, p, i)`, whatever else is in the batch.
pub fn generate_many(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    prompts: &[(&[u32], u64)],
    n: usize,
    cfg: &SamplingConfig,
    seed: u64,
) -> Result<Vec<Vec<Generation>>> {
    generate_streams(model, tok, prompts, n, cfg, &|prompt, sample| {
        sample_seed(seed, prompt, sample)
    })
}

/// `generate_many` with the random stream of sample i of the prompt numbered p seeded
/// `stream(p, i)`: how a server answers a request that names its own seed.
pub fn generate_streams(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    prompts: &[(&[u32], u64)],
    n: usize,
    cfg: &SamplingConfig,
    stream: &dyn Fn(u64, u64) -> u64,
) -> Result<Vec<Vec<Generation>>> {
    generate_with_companions(model, tok, prompts, n, cfg, stream, None)
}

/// The log-probabilities a token is drawn from, of a sample's own row of logits and its
/// companions' rows.
pub type Combine<'a> = dyn Fn(&[f32], &[&[f32]]) -> Vec<f32> + Sync + 'a;

/// Rows decoded beside each sample that decide, with it, the distribution its next token is
/// drawn from, and that are fed the token drawn (Self-Debias's prefixed copies of a prompt).
pub struct Companions<'a> {
    /// How many rows each prompt has beside it.
    pub rows: usize,
    /// A prompt's companion rows' prompts.
    pub prompts: &'a (dyn Fn(&[u32]) -> Vec<Vec<u32>> + Sync),
    /// The distribution each token is drawn from.
    pub combine: &'a Combine<'a>,
}

/// `generate_streams`, each sample's next token drawn from `companions.combine` of its own
/// logits and its companion rows' (none: its own logits). The recorded log-probabilities are
/// those of the distribution drawn from.
pub fn generate_with_companions(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    prompts: &[(&[u32], u64)],
    n: usize,
    cfg: &SamplingConfig,
    stream: &dyn Fn(u64, u64) -> u64,
    companions: Option<&Companions>,
) -> Result<Vec<Vec<Generation>>> {
    cfg.validate()?;
    let ctx = model.info().context_length;
    let k = companions.map_or(0, |c| c.rows);
    // Each prompt's rows: its own, then its companions'.
    let variants: Vec<Vec<Vec<u32>>> = prompts
        .iter()
        .map(|&(p, _)| {
            let mut v = vec![p.to_vec()];
            if let Some(c) = companions {
                v.extend((c.prompts)(p));
            }
            v
        })
        .collect();
    for (&(p, index), rows) in prompts.iter().zip(&variants) {
        if p.is_empty() {
            return Err(Error::Invalid("the prompt has no tokens".into()));
        }
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        // max_new_tokens is a user's number: it may be near usize::MAX.
        if longest.saturating_add(cfg.max_new_tokens) > ctx {
            return Err(Error::Invalid(format!(
                "prompt {} has {} tokens; with {} new tokens that is more than the model's context of {ctx}",
                index + 1,
                longest,
                cfg.max_new_tokens
            )));
        }
    }
    let vocab = model.info().vocab_size;
    // Prompts of one length are prefilled together; samples follow that order: sample row r
    // is sample r % n of prompt order[r / n], and its k + 1 rows are consecutive.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].0.len(), i));
    let rows = prompts.len() * n;
    let mut samplers: Vec<Sampler> = (0..rows)
        .map(|r| Sampler::new(stream(prompts[order[r / n]].1, (r % n) as u64), cfg.clone()))
        .collect();
    let mut outputs: Vec<Generation> = (0..rows)
        .map(|r| Generation {
            sample: r % n,
            text: String::new(),
            token_ids: Vec::new(),
            finish: "length",
            logprobs: Vec::new(),
        })
        .collect();
    if rows > 0 && cfg.max_new_tokens > 0 {
        // Every (prompt, variant), prefilled by length; each expanded to its n samples.
        let mut flat: Vec<(usize, usize)> = (0..prompts.len())
            .flat_map(|i| (0..=k).map(move |j| (i, j)))
            .collect();
        flat.sort_by_key(|&(i, j)| (variants[i][j].len(), i, j));
        let mut step_logits: Vec<Vec<f32>> = Vec::with_capacity(rows * (k + 1));
        let mut prefilled: Vec<(usize, usize)> = Vec::with_capacity(rows * (k + 1));
        let mut caches = Vec::new();
        for same in flat.chunk_by(|a, b| variants[a.0][a.1].len() == variants[b.0][b.1].len()) {
            let len = variants[same[0].0][same[0].1].len();
            let ids: Vec<u32> = same
                .iter()
                .flat_map(|&(i, j)| variants[i][j].iter().copied())
                .collect();
            let ids = Tensor::from_vec(ids, (same.len(), len), &Device::Cpu)?;
            let mut cache = model.new_cache();
            // Only the prompts' last positions need logits.
            let hidden = model.hidden(&ids, &mut cache)?.narrow(1, len - 1, 1)?;
            let last = model.logits(&hidden)?.flatten_all()?.to_vec1::<f32>()?;
            for (row, &variant) in last.chunks(vocab.max(1)).zip(same) {
                step_logits.extend(std::iter::repeat_n(row.to_vec(), n));
                prefilled.extend(std::iter::repeat_n(variant, n));
            }
            let expand: Vec<u32> = (0..same.len() * n).map(|r| (r / n) as u32).collect();
            caches.push(cache.select(&Tensor::new(expand.as_slice(), &Device::Cpu)?)?);
        }
        let mut cache = KvCache::left_aligned(caches)?;
        if k > 0 {
            // Reorder the rows so that each sample's k + 1 rows are consecutive: the prefill
            // put the n copies of each (prompt, variant) together, in length order.
            let mut at = std::collections::HashMap::new();
            for (row, &(i, j)) in prefilled.iter().enumerate() {
                at.entry((i, j)).or_insert(row);
            }
            let perm: Vec<u32> = (0..rows)
                .flat_map(|r| {
                    let (at, prompt) = (&at, order[r / n]);
                    (0..=k).map(move |j| (at[&(prompt, j)] + r % n) as u32)
                })
                .collect();
            cache = cache.select(&Tensor::new(perm.as_slice(), &Device::Cpu)?)?;
            step_logits = perm
                .iter()
                .map(|&p| step_logits[p as usize].clone())
                .collect();
        }
        let mut active: Vec<usize> = (0..rows).collect();
        let eos = tok.eos();
        for step in 0..cfg.max_new_tokens {
            // The distribution each active sample draws from.
            let combined: Vec<Vec<f32>> = match companions {
                Some(c) => (0..active.len())
                    .into_par_iter()
                    .map(|a| {
                        let own = &step_logits[a * (k + 1)][..vocab];
                        let others: Vec<&[f32]> = (1..=k)
                            .map(|j| &step_logits[a * (k + 1) + j][..vocab])
                            .collect();
                        (c.combine)(own, &others)
                    })
                    .collect(),
                None => Vec::new(),
            };
            let drawn_from = |a: usize| -> &[f32] {
                if companions.is_some() {
                    &combined[a]
                } else {
                    &step_logits[a][..vocab]
                }
            };
            let mut next = Vec::with_capacity(active.len() * (k + 1));
            let mut still = Vec::with_capacity(active.len());
            let mut keep_rows = Vec::with_capacity(active.len() * (k + 1));
            // (active position, sample, token) of every token kept.
            let mut kept = Vec::with_capacity(active.len());
            for (a, &s) in active.iter().enumerate() {
                let logits = drawn_from(a);
                if (0..=k).any(|j| {
                    step_logits[a * (k + 1) + j][..vocab]
                        .iter()
                        .any(|x| !x.is_finite())
                }) {
                    return Err(Error::NonFinite {
                        model: model.info().source.clone(),
                        text: order[s / n] + 1,
                        token: step + 1,
                    });
                }
                let id = samplers[s].sample(logits);
                let out = &mut outputs[s];
                if Some(id) == eos {
                    out.finish = "eos";
                    continue;
                }
                out.token_ids.push(id);
                kept.push((a, s, id));
                out.text = tok.decode(&out.token_ids)?;
                if let Some(end) = cfg
                    .stop
                    .iter()
                    .filter_map(|st| out.text.find(st.as_str()).map(|p| p + st.len()))
                    .min()
                {
                    out.text.truncate(end);
                    out.finish = "stop";
                    continue;
                }
                next.extend(std::iter::repeat_n(id, k + 1));
                still.push(s);
                keep_rows.extend((0..=k).map(|j| (a * (k + 1) + j) as u32));
            }
            let logprobs: Vec<f64> = kept
                .par_iter()
                .map(|&(a, _, id)| target_logprob(drawn_from(a), id as usize))
                .collect();
            for (&(_, s, _), lp) in kept.iter().zip(logprobs) {
                outputs[s].logprobs.push(lp);
            }
            if still.is_empty() || step + 1 == cfg.max_new_tokens {
                break;
            }
            if still.len() != active.len() {
                cache = cache.select(&Tensor::new(keep_rows.as_slice(), &Device::Cpu)?)?;
            }
            active = still;
            let ids = Tensor::from_vec(next, (active.len() * (k + 1), 1), &Device::Cpu)?;
            let logits = model.forward(&ids, &mut cache)?.logits;
            let flat = logits.flatten_all()?.to_vec1::<f32>()?;
            step_logits = flat.chunks(vocab).map(|c| c.to_vec()).collect();
        }
    }
    let mut grouped: Vec<Vec<Generation>> = vec![Vec::new(); prompts.len()];
    let mut it = outputs.into_iter();
    for &p in &order {
        grouped[p] = it.by_ref().take(n).collect();
    }
    Ok(grouped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> SamplingConfig {
        SamplingConfig {
            temperature,
            top_k,
            top_p,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new(1, cfg(0.0, None, None));
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(7, cfg(1.0, Some(1), None));
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9]), 1);
        }
    }

    #[test]
    fn top_p_excludes_the_tail() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: top-p 0.8 keeps the first two.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(3, cfg(1.0, None, Some(0.8)));
        for _ in 0..200 {
            assert!(s.sample(&logits) < 2);
        }
    }

    #[test]
    fn same_seed_same_draws_and_seeds_differ() {
        let logits = [0.0f32, 0.0, 0.0, 0.0];
        let draw = |seed| {
            let mut s = Sampler::new(seed, cfg(1.0, None, None));
            (0..32).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn sampling_frequencies_follow_softmax() {
        let logits = [0.0f32, (3.0f32).ln()];
        let mut s = Sampler::new(11, cfg(1.0, None, None));
        let ones = (0..4000).filter(|_| s.sample(&logits) == 1).count();
        let share = ones as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.03, "share {share}");
    }

    #[test]
    fn sample_seeds_are_distinct() {
        let a = sample_seed(1, 0, 0);
        assert_ne!(a, sample_seed(1, 0, 1));
        assert_ne!(a, sample_seed(1, 1, 0));
        assert_ne!(a, sample_seed(2, 0, 0));
    }
}
