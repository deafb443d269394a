//! Llama-family decoder (SmolLM2, TinyLlama, Llama-2/3 style), f32 or quantized weights,
//! under Hugging Face tensor names. Returns logits at every position.

use candle_core::{Result, Tensor};

use crate::error::Error;
use crate::lm::{CausalLm, KvCache, ModelInfo};
use crate::ops::{self, Kernels, Linear, Rotary};
use crate::weights::Weights;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    2048
}

impl LlamaConfig {
    /// The first value outside its domain, as (config.json key, what is wrong): a zero size
    /// or a negative epsilon would build a model whose every output is NaN.
    pub fn invalid_value(&self) -> Option<(&'static str, String)> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((key, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Some((key, "must be at least 1, got 0".into()));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Some((
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Some((
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.kv_heads(),
                    self.num_attention_heads
                ),
            ));
        }
        for (key, v) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Some((key, format!("must be a finite number > 0, got {v}")));
            }
        }
        None
    }
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &LlamaConfig, w: &Weights, p: &str) -> crate::Result<Self> {
        let (h, hd, kvh) = (cfg.hidden_size, cfg.head_dim(), cfg.kv_heads());
        Ok(Attention {
            q: w.linear(
                &format!("{p}.q_proj"),
                cfg.num_attention_heads * hd,
                h,
                false,
            )?,
            k: w.linear(&format!("{p}.k_proj"), kvh * hd, h, false)?,
            v: w.linear(&format!("{p}.v_proj"), kvh * hd, h, false)?,
            o: w.linear(
                &format!("{p}.o_proj"),
                h,
                cfg.num_attention_heads * hd,
                false,
            )?,
            heads: cfg.num_attention_heads,
            kv_heads: kvh,
            head_dim: hd,
        })
    }

    /// `offset` is the position of `x`'s first row: the cache length before this step, read
    /// once by the caller (layer 0's cache has grown by the time later layers run).
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        rot: &Rotary,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        layer: usize,
        offset: usize,
        kern: Kernels,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let split = |t: Tensor, n: usize| t.reshape((b, s, n, self.head_dim))?.transpose(1, 2);
        let q = rot.apply(&split(self.q.forward(x)?, self.heads)?, offset, kern)?;
        let k = rot.apply(&split(self.k.forward(x)?, self.kv_heads)?, offset, kern)?;
        let v = split(self.v.forward(x)?, self.kv_heads)?.contiguous()?;
        let (k, v) = cache.append(layer, k.contiguous()?, v)?;
        let y = ops::attention(&q, &k, &v, mask, kern)?;
        let y = y
            .transpose(1, 2)?
            .reshape((b, s, self.heads * self.head_dim))?;
        self.o.forward(&y)
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor, k: Kernels) -> Result<Tensor> {
        let h = ops::silu_mul(&self.gate.forward(x)?, &self.up.forward(x)?, k)?;
        self.down.forward(&h)
    }
}

struct Block {
    attn_norm: Tensor,
    attn: Attention,
    mlp_norm: Tensor,
    mlp: Mlp,
}

pub struct Llama {
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    rotary: Rotary,
    eps: f64,
    kernels: Kernels,
    info: ModelInfo,
}

impl Llama {
    /// Builds the model; `interleaved_rope` is true for Q/K kept in GGUF's row order.
    pub fn new(
        cfg: &LlamaConfig,
        w: &Weights,
        interleaved_rope: bool,
        kernels: Kernels,
    ) -> crate::Result<Self> {
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0
            || !h.is_multiple_of(cfg.num_attention_heads)
            || !cfg.num_attention_heads.is_multiple_of(cfg.kv_heads())
        {
            return Err(Error::Config {
                path: w.path().to_path_buf(),
                reason: format!(
                    "inconsistent heads: hidden {h}, heads {}, kv heads {}",
                    cfg.num_attention_heads,
                    cfg.kv_heads()
                ),
            });
        }
        let embed = w.get("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            blocks.push(Block {
                attn_norm: w.get(&format!("{p}.input_layernorm.weight"), &[h])?,
                attn: Attention::new(cfg, w, &format!("{p}.self_attn"))?,
                mlp_norm: w.get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                mlp: Mlp {
                    gate: w.linear(
                        &format!("{p}.mlp.gate_proj"),
                        cfg.intermediate_size,
                        h,
                        false,
                    )?,
                    up: w.linear(&format!("{p}.mlp.up_proj"), cfg.intermediate_size, h, false)?,
                    down: w.linear(
                        &format!("{p}.mlp.down_proj"),
                        h,
                        cfg.intermediate_size,
                        false,
                    )?,
                },
            });
        }
        let lm_head = if w.contains("lm_head.weight") {
            w.linear("lm_head", cfg.vocab_size, h, false)?
        } else if w.contains("model.embed_tokens.weight") && w.is_quantized() {
            // Tied output on the quantized path: the embedding's own blocks, as llama.cpp does.
            w.linear("model.embed_tokens", cfg.vocab_size, h, false)?
        } else {
            Linear::Dense {
                weight: embed.clone(),
                bias: None,
                in_out: false,
            }
        };
        Ok(Llama {
            rotary: Rotary::new(
                cfg.head_dim(),
                cfg.max_position_embeddings,
                cfg.rope_theta,
                interleaved_rope,
                &candle_core::Device::Cpu,
            )?,
            embed,
            blocks,
            norm: w.get("model.norm.weight", &[h])?,
            lm_head,
            eps: cfg.rms_norm_eps,
            kernels,
            info: ModelInfo {
                source: w.path().to_path_buf(),
                architecture: "llama".into(),
                vocab_size: cfg.vocab_size,
                context_length: cfg.max_position_embeddings,
                n_layers: cfg.num_hidden_layers,
                hidden_size: h,
                numeric_path: if w.is_quantized() { "quantized" } else { "f32" }.into(),
            },
        })
    }
}

impl CausalLm for Llama {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn hidden(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let offset = cache.len();
        if offset + s > self.info.context_length {
            candle_core::bail!(
                "{} positions exceed the context of {}",
                offset + s,
                self.info.context_length
            );
        }
        let k = self.kernels;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            s,
            self.info.hidden_size,
        ))?;
        let mask = if s > 1 {
            Some(ops::causal_mask(s, offset, ids.device())?)
        } else {
            None
        };
        for (i, blk) in self.blocks.iter().enumerate() {
            let a = blk.attn.forward(
                &ops::rms_norm(&x, &blk.attn_norm, self.eps, k)?,
                &self.rotary,
                mask.as_ref(),
                cache,
                i,
                offset,
                k,
            )?;
            x = (x + a)?;
            let m = blk
                .mlp
                .forward(&ops::rms_norm(&x, &blk.mlp_norm, self.eps, k)?, k)?;
            x = (x + m)?;
        }
        ops::rms_norm(&x, &self.norm, self.eps, k)
    }

    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }
}
