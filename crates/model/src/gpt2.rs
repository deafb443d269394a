//! GPT-2 (the seed's architecture) under Hugging Face names: learned positions, Conv1D
//! ([in, out]) weights, pre-norm blocks, lm_head tied to the token embedding.

use candle_core::{Result, Tensor};

use crate::error::Error;
use crate::lm::{CausalLm, KvCache, ModelInfo};
use crate::ops::{self, Kernels, Linear};
use crate::weights::Weights;

/// GPT-2's config.json (the keys fairlm reads).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length (learned positions).
    pub n_positions: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// MLP inner size (`None`: 4 × hidden).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// The MLP's activation (`gelu_new` and kin).
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// Beginning-of-text token, if the config names one.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-text token, if the config names one.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

impl Gpt2Config {
    /// The first value outside its domain, as (config.json key, what is wrong).
    pub fn invalid_value(&self) -> Option<(&'static str, String)> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_inner", self.n_inner.unwrap_or(1)),
        ];
        if let Some((key, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Some((key, "must be at least 1, got 0".into()));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Some((
                "n_head",
                format!("{} does not divide n_embd {}", self.n_head, self.n_embd),
            ));
        }
        let eps = self.layer_norm_epsilon;
        if !(eps.is_finite() && eps > 0.0) {
            return Some((
                "layer_norm_epsilon",
                format!("must be a finite number > 0, got {eps}"),
            ));
        }
        None
    }
}

fn default_eps() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".into()
}

#[derive(Clone, Copy)]
enum Activation {
    /// The tanh approximation (`gelu_new`, GPT-2's own).
    GeluTanh,
    /// The exact erf form (`gelu`).
    GeluErf,
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(w: &Weights, p: &str, n: usize) -> crate::Result<Self> {
        Ok(LayerNorm {
            weight: w.get(&format!("{p}.weight"), &[n])?,
            bias: w.get(&format!("{p}.bias"), &[n])?,
        })
    }
    fn forward(&self, x: &Tensor, eps: f64, k: Kernels) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, eps, k)
    }
}

fn conv1d(w: &Weights, p: &str, inp: usize, out: usize) -> crate::Result<Linear> {
    Ok(Linear::Dense {
        weight: w.get(&format!("{p}.weight"), &[inp, out])?,
        bias: Some(w.get(&format!("{p}.bias"), &[out])?),
        in_out: true,
    })
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// GPT-2 (learned positions, pre-norm blocks, Conv1D weights stored [in, out]).
pub struct Gpt2 {
    wte: Tensor,
    /// The tied output layer (wte, laid out once for the product; see `Linear::dense`).
    lm_head: Linear,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    heads: usize,
    eps: f64,
    activation: Activation,
    kernels: Kernels,
    info: ModelInfo,
}

impl Gpt2 {
    /// Builds the model from its config and weights on the given kernels.
    pub fn new(cfg: &Gpt2Config, w: &Weights, kernels: Kernels) -> crate::Result<Self> {
        let e = cfg.n_embd;
        if cfg.n_head == 0 || !e.is_multiple_of(cfg.n_head) {
            return Err(Error::Config {
                path: w.path().to_path_buf(),
                reason: format!("n_embd {e} is not a multiple of n_head {}", cfg.n_head),
            });
        }
        let activation = match cfg.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "gelu" => Activation::GeluErf,
            other => {
                return Err(Error::Config {
                    path: w.path().to_path_buf(),
                    reason: format!("unsupported activation_function `{other}`"),
                })
            }
        };
        let inner = cfg.n_inner.unwrap_or(4 * e);
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("transformer.h.{i}");
            blocks.push(Block {
                ln_1: LayerNorm::new(w, &format!("{p}.ln_1"), e)?,
                c_attn: conv1d(w, &format!("{p}.attn.c_attn"), e, 3 * e)?,
                attn_proj: conv1d(w, &format!("{p}.attn.c_proj"), e, e)?,
                ln_2: LayerNorm::new(w, &format!("{p}.ln_2"), e)?,
                c_fc: conv1d(w, &format!("{p}.mlp.c_fc"), e, inner)?,
                mlp_proj: conv1d(w, &format!("{p}.mlp.c_proj"), inner, e)?,
            });
        }
        let wte = w.get("transformer.wte.weight", &[cfg.vocab_size, e])?;
        Ok(Gpt2 {
            lm_head: Linear::dense(wte.clone(), None)?,
            wte,
            wpe: w.get("transformer.wpe.weight", &[cfg.n_positions, e])?,
            blocks,
            ln_f: LayerNorm::new(w, "transformer.ln_f", e)?,
            heads: cfg.n_head,
            eps: cfg.layer_norm_epsilon,
            activation,
            kernels,
            info: ModelInfo {
                source: w.path().to_path_buf(),
                architecture: "gpt2".into(),
                vocab_size: cfg.vocab_size,
                context_length: cfg.n_positions,
                n_layers: cfg.n_layer,
                hidden_size: e,
                numeric_path: "f32".into(),
            },
        })
    }

    fn attention(
        &self,
        blk: &Block,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let (b, s, e) = x.dims3()?;
        let hd = e / self.heads;
        let qkv = blk.c_attn.forward(x)?;
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i * e, e)?
                .reshape((b, s, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let (k, v) = cache.append(layer, k, v)?;
        let y = ops::attention(&q, &k, &v, mask, self.kernels, false)?;
        blk.attn_proj
            .forward(&y.transpose(1, 2)?.reshape((b, s, e))?)
    }
}

impl CausalLm for Gpt2 {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn hidden(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let offset = cache.len();
        self.info.check_positions(offset + s)?;
        let e = self.info.hidden_size;
        let tok = self
            .wte
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, s, e))?;
        // A left-padded cache gives each row its own positions.
        let mut x = match cache.row_positions(s) {
            None => tok.broadcast_add(&self.wpe.narrow(0, offset, s)?)?,
            Some(rows) => {
                let rows = Tensor::from_vec(rows, b * s, ids.device())?;
                (tok + self.wpe.index_select(&rows, 0)?.reshape((b, s, e))?)?
            }
        };
        let pads = cache.pads().map(<[usize]>::to_vec);
        let mask = if s > 1 || pads.is_some() {
            Some(ops::causal_mask(
                s,
                offset,
                None,
                pads.as_deref(),
                ids.device(),
            )?)
        } else {
            None
        };
        let k = self.kernels;
        for (i, blk) in self.blocks.iter().enumerate() {
            let a = self.attention(
                blk,
                &blk.ln_1.forward(&x, self.eps, k)?,
                mask.as_ref(),
                cache,
                i,
            )?;
            x = (x + a)?;
            let h = blk.c_fc.forward(&blk.ln_2.forward(&x, self.eps, k)?)?;
            let h = match self.activation {
                Activation::GeluTanh => h.gelu()?,
                Activation::GeluErf => h.gelu_erf()?,
            };
            x = (x + blk.mlp_proj.forward(&h)?)?;
        }
        self.ln_f.forward(&x, self.eps, k)
    }

    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }
}
