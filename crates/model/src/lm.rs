//! The language-model trait sized to fairlm's callers: logits and last hidden states at every
//! position of a (right-padded) batch, continuing from a caller-owned key/value cache.

use candle_core::{Result, Tensor};

/// What every architecture exposes to scoring, sampling and training.
pub trait CausalLm: Send + Sync {
    /// The model's shape and where it came from.
    fn info(&self) -> &ModelInfo;

    /// `ids` is [batch, seq]; its first position is `cache.len()`. Returns the final hidden
    /// states [batch, seq, hidden] (after the last norm) and appends this step's keys and
    /// values to `cache`.
    fn hidden(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor>;

    /// Logits [..., vocab] of hidden states [..., hidden]: callers that need only some
    /// positions (training skips padding) select them first.
    fn logits(&self, hidden: &Tensor) -> Result<Tensor>;

    /// Logits [batch, seq, vocab] and hidden states at every position (see `hidden`).
    fn forward(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Output> {
        let hidden = self.hidden(ids, cache)?;
        let logits = self.logits(&hidden)?;
        Ok(Output { logits, hidden })
    }

    /// An empty key/value cache for this model.
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.info().n_layers)
    }
}

/// Logits and hidden states of one forward pass.
pub struct Output {
    /// [batch, seq, vocab].
    pub logits: Tensor,
    /// [batch, seq, hidden] after the last norm.
    pub hidden: Tensor,
}

/// A loaded model's shape and provenance, as results.json records it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// The file the weights came from (named in errors about what the model computes).
    pub source: std::path::PathBuf,
    /// `llama`, `qwen2`, `mistral` or `gpt2`.
    pub architecture: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length in tokens.
    pub context_length: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// `f32` or `quantized`.
    pub numeric_path: String,
}

impl ModelInfo {
    /// Refuses a forward that would reach `positions` positions, cached and new, past the
    /// model's context (its position table or RoPE range has nothing for them).
    pub fn check_positions(&self, positions: usize) -> candle_core::Result<()> {
        if positions > self.context_length {
            candle_core::bail!(
                "{positions} positions exceed {}'s context of {}",
                self.architecture,
                self.context_length
            );
        }
        Ok(())
    }
}

/// Per-layer keys and values [batch, kv_heads, seq, head_dim], owned by the caller.
///
/// The first append keeps the tensors it is given, so a training forward (one append per
/// layer) backpropagates into them. Later appends, which only decoding makes, write into a
/// buffer with room to spare and return views of its filled part: concatenating instead
/// copied the whole cache at every step. The buffer's unfilled part is never read, and no
/// two caches share a buffer (`expand`, `select` and `left_aligned` copy), so the writes are
/// safe.
///
/// Rows of different lengths share one cache by being left-padded to the longest
/// (`left_aligned`): row r's first `pads[r]` slots hold no position, its tokens sit at slots
/// `pads[r]..`, and the models read the row's positions (`row_positions`) and a mask that
/// hides the padding (`ops::causal_mask`) from the cache.
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    /// Leading empty slots per batch row; empty when no row is padded.
    pads: Vec<usize>,
}

struct LayerCache {
    /// [batch, kv_heads, capacity, head_dim]; positions `..len` are filled.
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerCache {
    fn filled(&self) -> Result<(Tensor, Tensor)> {
        if self.len == self.k.dim(2)? {
            return Ok((self.k.clone(), self.v.clone()));
        }
        Ok((
            self.k.narrow(2, 0, self.len)?,
            self.v.narrow(2, 0, self.len)?,
        ))
    }

    /// Moves the filled part into a new buffer that holds `capacity` positions.
    fn grow(&mut self, capacity: usize) -> Result<()> {
        let (k, v) = self.filled()?;
        let (b, h, _, d) = k.dims4()?;
        let new_k = Tensor::zeros((b, h, capacity, d), k.dtype(), k.device())?;
        let new_v = Tensor::zeros((b, h, capacity, d), v.dtype(), v.device())?;
        new_k.slice_set(&k.contiguous()?, 2, 0)?;
        new_v.slice_set(&v.contiguous()?, 2, 0)?;
        (self.k, self.v) = (new_k, new_v);
        Ok(())
    }
}

/// Positions a decoding buffer is grown by beyond what is needed (and at least doubled).
const CACHE_HEADROOM: usize = 64;

impl KvCache {
    /// An empty cache for a model of `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: (0..n_layers).map(|_| None).collect(),
            pads: Vec::new(),
        }
    }

    /// Leading empty slots per batch row, or None when every row starts at slot 0.
    pub fn pads(&self) -> Option<&[usize]> {
        (!self.pads.is_empty()).then_some(self.pads.as_slice())
    }

    /// The positions of the next `seq` tokens of each row, row by row, when rows are padded
    /// (a padded row's positions lag its slots by its padding); None when they are
    /// `len()..len() + seq` for every row.
    pub fn row_positions(&self, seq: usize) -> Option<Vec<u32>> {
        let len = self.len();
        self.pads().map(|pads| {
            pads.iter()
                .flat_map(|&p| (0..seq).map(move |i| (len - p + i) as u32))
                .collect()
        })
    }

    /// Stacks caches along the batch, each right-aligned to the longest one (its rows
    /// left-padded with empty slots), so that rows whose prompts have different lengths are
    /// decoded together; the buffer has room for `CACHE_HEADROOM` more positions.
    pub fn left_aligned(parts: Vec<KvCache>) -> Result<KvCache> {
        let longest = parts.iter().map(KvCache::len).max().unwrap_or(0);
        let n_layers = parts.first().map_or(0, |c| c.layers.len());
        let mut pads = Vec::new();
        for part in &parts {
            let Some(Some(first)) = part.layers.first() else {
                candle_core::bail!("an empty cache cannot be aligned");
            };
            let (rows, lag) = (first.k.dim(0)?, longest - part.len());
            match part.pads() {
                Some(own) => pads.extend(own.iter().map(|p| p + lag)),
                None => pads.extend(std::iter::repeat_n(lag, rows)),
            }
        }
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let mut ks = Vec::with_capacity(parts.len());
            let mut vs = Vec::with_capacity(parts.len());
            for part in &parts {
                let Some(Some(layer)) = part.layers.get(i) else {
                    candle_core::bail!("caches of different depths cannot be aligned");
                };
                let (k, v) = layer.filled()?;
                let lag = longest - layer.len;
                ks.push(k.pad_with_zeros(2, lag, CACHE_HEADROOM)?);
                vs.push(v.pad_with_zeros(2, lag, CACHE_HEADROOM)?);
            }
            layers.push(Some(LayerCache {
                k: Tensor::cat(&ks, 0)?,
                v: Tensor::cat(&vs, 0)?,
                len: longest,
            }));
        }
        let pads = if pads.iter().all(|&p| p == 0) {
            Vec::new()
        } else {
            pads
        };
        Ok(KvCache { layers, pads })
    }

    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |l| l.len)
    }

    /// No position cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `k`, `v` to layer `i` and returns the full keys and values.
    pub fn append(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let Some(layer) = self.layers[i].as_mut() else {
            let len = k.dim(2)?;
            self.layers[i] = Some(LayerCache {
                k: k.clone(),
                v: v.clone(),
                len,
            });
            return Ok((k, v));
        };
        let (len, added) = (layer.len, k.dim(2)?);
        if len + added > layer.k.dim(2)? {
            layer.grow((len + added + CACHE_HEADROOM).max(2 * len))?;
        }
        layer.k.slice_set(&k.contiguous()?, 2, len)?;
        layer.v.slice_set(&v.contiguous()?, 2, len)?;
        layer.len += added;
        layer.filled()
    }

    /// Repeats a batch-1 cache `n` times along the batch, so that one prompt's prefill is
    /// shared by `n` samples.
    pub fn expand(&self, n: usize) -> Result<KvCache> {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                None => Ok(None),
                Some(l) => {
                    let (k, v) = l.filled()?;
                    Ok(Some(LayerCache {
                        k: k.repeat((n, 1, 1, 1))?,
                        v: v.repeat((n, 1, 1, 1))?,
                        len: l.len,
                    }))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let pads = (0..n).flat_map(|_| self.pads.iter().copied()).collect();
        Ok(KvCache { layers, pads })
    }

    /// Keeps only the batch rows `rows`.
    pub fn select(&self, rows: &Tensor) -> Result<KvCache> {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                None => Ok(None),
                // The whole buffer, spare room included: index_select wants a contiguous
                // input, and the room is used by the next steps anyway.
                Some(l) => Ok(Some(LayerCache {
                    k: l.k.index_select(rows, 0)?,
                    v: l.v.index_select(rows, 0)?,
                    len: l.len,
                })),
            })
            .collect::<Result<Vec<_>>>()?;
        let pads = if self.pads.is_empty() {
            Vec::new()
        } else {
            rows.to_vec1::<u32>()?
                .iter()
                .map(|&r| self.pads[r as usize])
                .collect()
        };
        Ok(KvCache { layers, pads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Distinct values for step `t`: [b, 2 heads, s positions, 3].
    fn step(t: usize, b: usize, s: usize) -> Result<Tensor> {
        let start = (t * 1000) as f32;
        Tensor::arange(start, start + (b * 2 * s * 3) as f32, &Device::Cpu)?.reshape((b, 2, s, 3))
    }

    fn same(a: &Tensor, b: &Tensor) -> Result<bool> {
        Ok(a.dims() == b.dims() && (a - b)?.abs()?.sum_all()?.to_scalar::<f32>()? == 0.0)
    }

    /// Appending through the buffer, with an expansion and a row selection on the way, gives
    /// the same keys and values as concatenating every step.
    #[test]
    fn buffered_appends_equal_concatenation() -> Result<()> {
        let mut cache = KvCache::new(1);
        let first = step(0, 1, 4)?;
        cache.append(0, first.clone(), (&first * 2.0)?)?;
        let mut cache = cache.expand(3)?;
        let mut want_k = first.repeat((3, 1, 1, 1))?;
        let mut want_v = (&want_k * 2.0)?;
        let rows = Tensor::new(&[2u32, 0], &Device::Cpu)?;
        for t in 1..150 {
            let add = step(t, want_k.dim(0)?, 1)?;
            want_k = Tensor::cat(&[&want_k, &add], 2)?;
            want_v = Tensor::cat(&[&want_v, &(&add * 2.0)?], 2)?;
            let (k, v) = cache.append(0, add.clone(), (&add * 2.0)?)?;
            assert!(same(&k, &want_k)? && same(&v, &want_v)?, "step {t}");
            if t == 40 {
                cache = cache.select(&rows)?;
                want_k = want_k.index_select(&rows, 0)?;
                want_v = want_v.index_select(&rows, 0)?;
            }
        }
        assert_eq!(cache.len(), 153);
        Ok(())
    }
}
