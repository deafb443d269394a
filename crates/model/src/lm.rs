//! The language-model trait sized to fairlm's callers: logits and last hidden states at every
//! position of a (right-padded) batch, continuing from a caller-owned key/value cache.

use candle_core::{Result, Tensor};

/// What every architecture exposes to scoring, sampling and training.
pub trait CausalLm: Send + Sync {
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

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.info().n_layers)
    }
}

pub struct Output {
    pub logits: Tensor,
    pub hidden: Tensor,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub architecture: String,
    pub vocab_size: usize,
    pub context_length: usize,
    pub n_layers: usize,
    pub hidden_size: usize,
    /// `f32` or `quantized`.
    pub numeric_path: String,
}

/// Per-layer keys and values [batch, kv_heads, seq, head_dim], owned by the caller.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
        }
    }

    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `k`, `v` to layer `i` and returns the full keys and values.
    pub fn append(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let kv = match self.layers[i].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
        };
        self.layers[i] = Some(kv.clone());
        Ok(kv)
    }

    /// Repeats a batch-1 cache `n` times along the batch, so that one prompt's prefill is
    /// shared by `n` samples.
    pub fn expand(&self, n: usize) -> Result<KvCache> {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                None => Ok(None),
                Some((k, v)) => Ok(Some((k.repeat((n, 1, 1, 1))?, v.repeat((n, 1, 1, 1))?))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers })
    }

    /// Keeps only the batch rows `rows`.
    pub fn select(&self, rows: &Tensor) -> Result<KvCache> {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                None => Ok(None),
                Some((k, v)) => Ok(Some((k.index_select(rows, 0)?, v.index_select(rows, 0)?))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers })
    }
}
