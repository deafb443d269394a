//! Llama-family decoder (SmolLM2, TinyLlama, Llama-2/3 style, Qwen2/Qwen2.5, Mistral), f32 or
//! quantized weights, under Hugging Face tensor names. Returns logits at every position. The
//! three families share one decoder: Qwen2 adds biases to the query, key and value maps,
//! Mistral (and Qwen2 where configured) limits attention to a sliding window.

use candle_core::{Result, Tensor};

use crate::error::Error;
use crate::lm::{CausalLm, KvCache, ModelInfo};
use crate::ops::{self, Kernels, Linear, Rotary};
use crate::weights::Weights;

/// Which checkpoint layout a Llama-family config came from (config.json's `model_type`, or
/// GGUF's `general.architecture`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama and SmolLM2.
    #[default]
    Llama,
    /// Qwen2/Qwen2.5: q/k/v projections with bias.
    Qwen2,
    /// Mistral: sliding-window attention.
    Mistral,
}

impl Family {
    /// config.json's `model_type` (also GGUF's architecture name).
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Mistral => "mistral",
        }
    }

    /// transformers' class for the saved config's `architectures`.
    pub fn hf_class(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Mistral => "MistralForCausalLM",
        }
    }
}

/// The config.json of the Llama family (Llama, SmolLM2, Qwen2, Mistral): the keys fairlm reads.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct LlamaConfig {
    /// Set by the loader from the checkpoint's architecture, never read from config.json.
    #[serde(skip_deserializing)]
    pub family: Family,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Transformer blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention; `None`: as many as query heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Context length.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// The output projection is the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-text token, if the config names one.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-text token, if the config names one.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Per-head width when it is not hidden_size / heads (Mistral, Qwen configs may say).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Llama: biases on the query, key, value and output maps.
    #[serde(default)]
    pub attention_bias: bool,
    /// Llama: biases on the gate, up and down maps.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Mistral (and Qwen2 with `use_sliding_window`): a query sees only the last this many
    /// positions.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Qwen2: whether `sliding_window` applies at all.
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Qwen2: layers below this index attend to everything.
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    /// transformers 5's per-layer attention kinds (`full_attention`, `sliding_attention`).
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// transformers 5 keeps the rotary base here (`rope_theta`, `rope_type`).
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<RopeParameters>,
    /// transformers 4's name for a non-default rotary scheme.
    #[serde(default, skip_serializing)]
    pub rope_scaling: Option<RopeParameters>,
    /// The MLP's activation (only SiLU loads; read to refuse others).
    #[serde(default, skip_serializing)]
    pub hidden_act: Option<String>,
}

/// `rope_scaling` / `rope_parameters` of newer configs (read to refuse scaled RoPE).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RopeParameters {
    /// A rotary base given here instead of at the top level.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// The scaling type (`default` is the only one that loads).
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
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
    /// Moves transformers 5's `rope_parameters.rope_theta` into `rope_theta`; a rotary scheme
    /// other than the default (Llama 3's, YaRN, linear scaling) is refused, as (config.json
    /// key, what is wrong), since computing it as the default would give wrong numbers; so is
    /// an activation other than SiLU.
    pub fn resolve(&mut self) -> Option<(&'static str, String)> {
        for (key, params) in [
            ("rope_parameters", &self.rope_parameters),
            ("rope_scaling", &self.rope_scaling),
        ] {
            if let Some(kind) = params
                .as_ref()
                .and_then(|p| p.rope_type.as_deref())
                .filter(|t| *t != "default")
            {
                return Some((
                    key,
                    format!("rope type `{kind}` is not supported (only the default rotary embedding is)"),
                ));
            }
        }
        if let Some(theta) = self.rope_parameters.as_ref().and_then(|p| p.rope_theta) {
            // Both keys present and different: which one the checkpoint was trained with is
            // not for fairlm to guess.
            if self.rope_theta != default_rope_theta() && self.rope_theta != theta {
                return Some((
                    "rope_theta",
                    format!(
                        "{} disagrees with rope_parameters.rope_theta {theta}",
                        self.rope_theta
                    ),
                ));
            }
            self.rope_theta = theta;
        }
        if let Some(act) = self.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Some((
                "hidden_act",
                format!("`{act}` is not supported (the Llama family uses silu)"),
            ));
        }
        None
    }

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
        for (key, v) in [
            ("head_dim", self.head_dim),
            ("sliding_window", self.sliding_window),
        ] {
            if v == Some(0) {
                return Some((key, "must be at least 1, got 0".into()));
            }
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers {
                return Some((
                    "layer_types",
                    format!(
                        "has {} entries for {} layers",
                        types.len(),
                        self.num_hidden_layers
                    ),
                ));
            }
            if let Some(t) = types
                .iter()
                .find(|t| *t != "full_attention" && *t != "sliding_attention")
            {
                return Some((
                    "layer_types",
                    format!("`{t}` is not full_attention or sliding_attention"),
                ));
            }
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
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
    /// Key/value heads (query heads when the config leaves it out).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    /// Dimension of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether the query, key and value maps have biases.
    pub fn qkv_bias(&self) -> bool {
        match self.family {
            Family::Qwen2 => true,
            Family::Llama => self.attention_bias,
            Family::Mistral => false,
        }
    }

    /// Whether the output map has a bias.
    pub fn o_bias(&self) -> bool {
        self.family == Family::Llama && self.attention_bias
    }

    /// Whether the MLP's maps have biases.
    pub fn mlp_biases(&self) -> bool {
        self.family == Family::Llama && self.mlp_bias
    }

    /// The attention window of `layer`, None where it attends to every earlier position.
    pub fn window(&self, layer: usize) -> Option<usize> {
        match self.family {
            Family::Llama => None,
            Family::Mistral => self.sliding_window,
            Family::Qwen2 => {
                let sliding = match &self.layer_types {
                    Some(types) => types.get(layer).is_some_and(|t| t == "sliding_attention"),
                    None => self.use_sliding_window && layer >= self.max_window_layers.unwrap_or(0),
                };
                if sliding {
                    self.sliding_window
                } else {
                    None
                }
            }
        }
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
    /// Round queries, keys, values and attention weights to f16 (the quantized path).
    f16_cache: bool,
}

impl Attention {
    fn new(cfg: &LlamaConfig, w: &Weights, p: &str) -> crate::Result<Self> {
        let (h, hd, kvh) = (cfg.hidden_size, cfg.head_dim(), cfg.kv_heads());
        Ok(Attention {
            q: w.linear(
                &format!("{p}.q_proj"),
                cfg.num_attention_heads * hd,
                h,
                cfg.qkv_bias(),
            )?,
            k: w.linear(&format!("{p}.k_proj"), kvh * hd, h, cfg.qkv_bias())?,
            v: w.linear(&format!("{p}.v_proj"), kvh * hd, h, cfg.qkv_bias())?,
            o: w.linear(
                &format!("{p}.o_proj"),
                h,
                cfg.num_attention_heads * hd,
                cfg.o_bias(),
            )?,
            heads: cfg.num_attention_heads,
            kv_heads: kvh,
            head_dim: hd,
            f16_cache: w.is_quantized(),
        })
    }

    /// `at` is where `x`'s rows sit: the cache length before this step, read once by the
    /// caller (layer 0's cache has grown by the time later layers run), and each row's
    /// positions when the cache's rows are padded (`KvCache::row_positions`).
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        rot: &Rotary,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        layer: usize,
        at: (usize, Option<&Tensor>),
        kern: Kernels,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let split = |t: Tensor, n: usize| t.reshape((b, s, n, self.head_dim))?.transpose(1, 2);
        let (offset, rows) = at;
        let q = rot.apply(&split(self.q.forward(x)?, self.heads)?, offset, rows, kern)?;
        let k = rot.apply(
            &split(self.k.forward(x)?, self.kv_heads)?,
            offset,
            rows,
            kern,
        )?;
        let v = split(self.v.forward(x)?, self.kv_heads)?.contiguous()?;
        // On the quantized path keys and values are kept as llama.cpp keeps them by default
        // (an f16 cache), and the products with them see f16 operands as ggml's do.
        let half = |t: Tensor| ops::round_to_f16(t, self.f16_cache);
        let (q, k, v) = (half(q)?, half(k.contiguous()?)?, half(v)?);
        let (k, v) = cache.append(layer, k, v)?;
        let y = ops::attention(&q, &k, &v, mask, kern, self.f16_cache)?;
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

/// The Llama family's decoder (RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP).
pub struct Llama {
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    /// Each layer's sliding attention window (None: every earlier position).
    windows: Vec<Option<usize>>,
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
        if let Some((key, reason)) = cfg.invalid_value() {
            return Err(Error::Config {
                path: w.path().to_path_buf(),
                reason: format!("`{key}` {reason}"),
            });
        }
        if cfg.num_attention_heads == 0 || !cfg.num_attention_heads.is_multiple_of(cfg.kv_heads()) {
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
                        cfg.mlp_biases(),
                    )?,
                    up: w.linear(
                        &format!("{p}.mlp.up_proj"),
                        cfg.intermediate_size,
                        h,
                        cfg.mlp_biases(),
                    )?,
                    down: w.linear(
                        &format!("{p}.mlp.down_proj"),
                        h,
                        cfg.intermediate_size,
                        cfg.mlp_biases(),
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
            Linear::dense(embed.clone(), None)?
        };
        if !cfg.tie_word_embeddings && !w.contains("lm_head.weight") {
            // Tying silently would score with a matrix the model was not trained with.
            return Err(w.missing("lm_head.weight"));
        }
        Ok(Llama {
            windows: (0..cfg.num_hidden_layers).map(|i| cfg.window(i)).collect(),
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
                architecture: cfg.family.model_type().into(),
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
        self.info.check_positions(offset + s)?;
        let k = self.kernels;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            s,
            self.info.hidden_size,
        ))?;
        let pads = cache.pads().map(<[usize]>::to_vec);
        let rows = cache
            .row_positions(s)
            .map(|p| Tensor::from_vec(p, b * s, ids.device()))
            .transpose()?;
        // One mask per distinct window; a single new position needs none unless a window or
        // padding hides some of the cache from it.
        let mut masks: Vec<(Option<usize>, Option<Tensor>)> = Vec::new();
        for &window in &self.windows {
            if masks.iter().all(|(w, _)| *w != window) {
                let needed = s > 1 || pads.is_some() || window.is_some_and(|w| offset + s > w);
                let mask = needed
                    .then(|| ops::causal_mask(s, offset, window, pads.as_deref(), ids.device()))
                    .transpose()?;
                masks.push((window, mask));
            }
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            let mask = masks
                .iter()
                .find(|(w, _)| *w == self.windows[i])
                .and_then(|(_, m)| m.as_ref());
            let a = blk.attn.forward(
                &ops::rms_norm(&x, &blk.attn_norm, self.eps, k)?,
                &self.rotary,
                mask,
                cache,
                i,
                (offset, rows.as_ref()),
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
