//! Opens a checkpoint (a GGUF file, or a Hugging Face directory with `config.json` and
//! `*.safetensors`), checks it, and builds the model for one numeric path.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, Var};

use crate::error::{candle_message, Error, Result};
use crate::gpt2::{Gpt2, Gpt2Config};
use crate::llama::{Family, Llama, LlamaConfig};
use crate::lm::CausalLm;
use crate::ops::Kernels;
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// The numeric path a model computes on. Anything that compares log-probabilities must
/// sample and score on one path (engine-notes.md, trap 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumericPath {
    /// Weights dequantized to f32: the reference path (matches transformers) and the faster
    /// one for batched work on this CPU.
    F32,
    /// GGUF blocks as stored (matches llama.cpp to its own rounding).
    Quantized,
}

impl std::str::FromStr for NumericPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(NumericPath::F32),
            "quantized" | "q" => Ok(NumericPath::Quantized),
            other => Err(Error::Invalid(format!(
                "unknown --dtype `{other}` (expected f32 or quantized)"
            ))),
        }
    }
}

pub use crate::support::{Support, ARCHITECTURES, GGUF_TYPES, SUPPORT};

fn supported_gguf_type(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::F32
            | GgmlDType::F16
            | GgmlDType::BF16
            | GgmlDType::Q4_0
            | GgmlDType::Q4_1
            | GgmlDType::Q5_0
            | GgmlDType::Q5_1
            | GgmlDType::Q8_0
            | GgmlDType::Q4K
            | GgmlDType::Q5K
            | GgmlDType::Q6K
    )
}

/// The file format the weights came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A GGUF file (quantized or not).
    Gguf,
    /// A Hugging Face directory of config.json and safetensors.
    Safetensors,
}

/// The architecture and its config.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "model_type", rename_all = "lowercase")]
pub enum ArchConfig {
    /// The Llama family (Llama, SmolLM2, Qwen2, Mistral).
    Llama(LlamaConfig),
    /// GPT-2.
    Gpt2(Gpt2Config),
}

impl ArchConfig {
    /// Transformer blocks.
    pub fn n_layers(&self) -> usize {
        match self {
            ArchConfig::Llama(c) => c.num_hidden_layers,
            ArchConfig::Gpt2(c) => c.n_layer,
        }
    }
}

/// A differentiable model and its weights as named `Var`s.
pub type Trainable = (Box<dyn CausalLm>, Vec<(String, Var)>);

/// A checkpoint's config, weights and tokenizer; builds inference or trainable models.
pub struct Checkpoint {
    /// The file or directory it was opened from.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Its architecture's config.
    pub config: ArchConfig,
    /// Its weights, as stored.
    pub weights: Weights,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Q/K rows in llama.cpp's interleaved rotary order (quantized GGUF path only).
    interleaved_rope: bool,
}

impl Checkpoint {
    /// Opens a GGUF file or a Hugging Face directory on the given numeric path (`f32` dequantizes, `quantized` keeps the file's types).
    pub fn open(path: &Path, numeric: NumericPath) -> Result<Self> {
        if !path.exists() {
            return Err(Error::file(path, "no such file or directory"));
        }
        if path.is_dir() {
            if numeric == NumericPath::Quantized {
                return Err(Error::file(path, "the quantized path needs a GGUF file; use --dtype f32 for a safetensors directory"));
            }
            return open_hf_dir(path);
        }
        open_gguf(path, numeric)
    }

    /// An inference model (fused kernels).
    pub fn build(&self) -> Result<Box<dyn CausalLm>> {
        self.build_with(Kernels::Fused)
    }

    /// A model for inference on the given kernels.
    pub fn build_with(&self, kernels: Kernels) -> Result<Box<dyn CausalLm>> {
        self.build_on(&self.weights, kernels)
    }

    /// A model of this checkpoint's architecture over other weights with the same names, e.g.
    /// tensors computed from trainable parameters (LoRA, partly frozen layers).
    pub fn build_on(&self, weights: &Weights, kernels: Kernels) -> Result<Box<dyn CausalLm>> {
        Ok(match &self.config {
            ArchConfig::Llama(c) => {
                Box::new(Llama::new(c, weights, self.interleaved_rope, kernels)?)
            }
            ArchConfig::Gpt2(c) => Box::new(Gpt2::new(c, weights, kernels)?),
        })
    }

    /// Turns the weights into `Var`s and builds a differentiable model over them.
    pub fn trainable(&mut self) -> Result<Trainable> {
        let vars = self.weights.make_trainable()?;
        Ok((self.build_with(Kernels::Differentiable)?, vars))
    }
}

fn open_hf_dir(dir: &Path) -> Result<Checkpoint> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::file(&config_path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: config_path.clone(),
        reason: format!("invalid JSON: {e}"),
    })?;
    let model_type = value
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let parse_err = |e: serde_json::Error| Error::Config {
        path: config_path.clone(),
        reason: e.to_string(),
    };
    let family = match model_type.as_str() {
        "llama" => Some(Family::Llama),
        "qwen2" => Some(Family::Qwen2),
        "mistral" => Some(Family::Mistral),
        _ => None,
    };
    let config = match model_type.as_str() {
        // Parsed from the text again, so that a wrong value's error has its line and column.
        _ if family.is_some() => {
            let mut c: LlamaConfig = serde_json::from_str(&text).map_err(parse_err)?;
            c.family = family.unwrap_or_default();
            if let Some((key, reason)) = c.resolve() {
                return Err(Error::Config {
                    path: config_path,
                    reason: format!("`{key}` {reason}"),
                });
            }
            ArchConfig::Llama(c)
        }
        "gpt2" => ArchConfig::Gpt2(serde_json::from_str(&text).map_err(parse_err)?),
        other => {
            return Err(Error::UnknownArchitecture {
                path: config_path,
                arch: other.to_string(),
            })
        }
    };
    let invalid = match &config {
        ArchConfig::Llama(c) => c.invalid_value(),
        ArchConfig::Gpt2(c) => c.invalid_value(),
    };
    if let Some((key, reason)) = invalid {
        return Err(Error::Config {
            path: config_path,
            reason: format!("`{key}` {reason}"),
        });
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::file(dir, "no *.safetensors file beside config.json"));
    }
    let mut dense = HashMap::new();
    for f in &files {
        let tensors =
            candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| Error::Safetensors {
                path: f.clone(),
                reason: e.to_string(),
            })?;
        for (name, t) in tensors {
            let t = match t.dtype() {
                DType::F32 => t,
                DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
                other => {
                    return Err(Error::UnsupportedTensorType {
                        path: f.clone(),
                        tensor: name,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            // The original GPT-2 checkpoints omit the `transformer.` prefix.
            let name = match &config {
                ArchConfig::Gpt2(_)
                    if !name.starts_with("transformer.") && name != "lm_head.weight" =>
                {
                    format!("transformer.{name}")
                }
                _ => name,
            };
            dense.insert(name, t);
        }
    }
    let tokenizer = Tokenizer::from_dir(dir)?;
    Ok(Checkpoint {
        path: dir.to_path_buf(),
        format: Format::Safetensors,
        config,
        weights: Weights::new(&files[0], dense, HashMap::new()),
        tokenizer,
        interleaved_rope: false,
    })
}

fn meta_u32(c: &gguf_file::Content, path: &Path, key: &str) -> Result<usize> {
    c.metadata
        .get(key)
        .and_then(|v| {
            v.to_u32()
                .ok()
                .or_else(|| v.to_u64().ok().map(|x| x as u32))
        })
        .map(|v| v as usize)
        .ok_or_else(|| Error::Gguf {
            path: path.to_path_buf(),
            reason: format!("missing or non-integer metadata `{key}`"),
        })
}

fn meta_f64(c: &gguf_file::Content, key: &str) -> Option<f64> {
    c.metadata
        .get(key)
        .and_then(|v| v.to_f32().ok().map(f64::from).or_else(|| v.to_f64().ok()))
}

/// GGUF tensor name → Hugging Face name.
pub(crate) fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let part = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.bias" => "self_attn.o_proj.bias",
        "ffn_gate.bias" => "mlp.gate_proj.bias",
        "ffn_up.bias" => "mlp.up_proj.bias",
        "ffn_down.bias" => "mlp.down_proj.bias",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{part}"))
}

/// Undoes llama.cpp's rotary permutation of Q/K rows (engine-notes.md, trap 3).
pub(crate) fn unpermute(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (out, inp) = w.dims2()?;
    w.reshape((heads, out / heads / 2, 2, inp))?
        .transpose(1, 2)?
        .reshape((out, inp))
}

fn open_gguf(path: &Path, numeric: NumericPath) -> Result<Checkpoint> {
    let gguf_err = |reason: String| Error::Gguf {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| Error::file(path, e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| gguf_err(candle_message(&e)))?;
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| gguf_err("missing metadata `general.architecture`".into()))?;
    let family = match arch.as_str() {
        "llama" => Family::Llama,
        "qwen2" => Family::Qwen2,
        _ => {
            return Err(Error::UnknownArchitecture {
                path: path.to_path_buf(),
                arch,
            })
        }
    };
    // llama.cpp's converter permutes Llama's Q/K rows for its interleaved rotary kernel;
    // Qwen2 keeps Hugging Face's order (llama.cpp rotates it NeoX-style).
    let permuted_rope = family == Family::Llama;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in &names {
        let dtype = content.tensor_infos[*name].ggml_dtype;
        if !supported_gguf_type(dtype) {
            return Err(Error::UnsupportedTensorType {
                path: path.to_path_buf(),
                tensor: (*name).clone(),
                dtype: format!("{dtype:?}"),
            });
        }
    }
    let tokenizer = Tokenizer::from_gguf(&content, path)?;
    let key = |k: &str| format!("{arch}.{k}");
    let heads = meta_u32(&content, path, &key("attention.head_count"))?;
    let cfg = LlamaConfig {
        family,
        vocab_size: tokenizer.vocab_size(),
        hidden_size: meta_u32(&content, path, &key("embedding_length"))?,
        intermediate_size: meta_u32(&content, path, &key("feed_forward_length"))?,
        num_hidden_layers: meta_u32(&content, path, &key("block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: meta_u32(&content, path, &key("attention.head_count_kv")).ok(),
        rms_norm_eps: meta_f64(&content, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        rope_theta: meta_f64(&content, &key("rope.freq_base")).unwrap_or(10_000.0),
        max_position_embeddings: meta_u32(&content, path, &key("context_length"))?,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        head_dim: meta_u32(&content, path, &key("attention.key_length")).ok(),
        // A Llama GGUF with biases (attention_bias) names them; llama.cpp adds any it finds.
        attention_bias: family == Family::Llama
            && content.tensor_infos.contains_key("blk.0.attn_output.bias"),
        mlp_bias: family == Family::Llama && content.tensor_infos.contains_key("blk.0.ffn_up.bias"),
        // llama.cpp computes these architectures without a sliding window.
        sliding_window: None,
        use_sliding_window: false,
        max_window_layers: None,
        layer_types: None,
        rope_parameters: None,
        rope_scaling: None,
        hidden_act: None,
        bos_token_id: meta_u32(&content, path, "tokenizer.ggml.bos_token_id")
            .ok()
            .map(|v| v as u32),
        eos_token_id: meta_u32(&content, path, "tokenizer.ggml.eos_token_id")
            .ok()
            .map(|v| v as u32),
    };
    if let Some((key, reason)) = cfg.invalid_value() {
        return Err(Error::Gguf {
            path: path.to_path_buf(),
            reason: format!("metadata `{}` {reason}", gguf_key(&arch, key)),
        });
    }
    let kv_heads = cfg.kv_heads();
    let (mut dense, mut quantized) = (HashMap::new(), HashMap::new());
    for name in names {
        let Some(hf) = hf_name(name) else {
            // Tensors llama.cpp keeps for itself (e.g. rope_freqs) are not weights here.
            continue;
        };
        let q: QTensor = content.tensor(&mut file, name, &Device::Cpu).map_err(|e| {
            gguf_err(format!(
                "tensor `{name}`: {} (the file is truncated or garbled)",
                candle_message(&e)
            ))
        })?;
        let is_matmul = q.rank() == 2;
        match numeric {
            NumericPath::Quantized if is_matmul => {
                quantized.insert(hf, Arc::new(q));
            }
            _ => {
                let mut t = q.dequantize(&Device::Cpu)?;
                if numeric == NumericPath::F32 && permuted_rope {
                    // Biases are permuted as a one-column matrix.
                    let rows = |t: Tensor| -> candle_core::Result<(Tensor, bool)> {
                        Ok(if t.rank() == 1 {
                            (t.unsqueeze(1)?, true)
                        } else {
                            (t, false)
                        })
                    };
                    let heads_of = if hf.contains("q_proj.") {
                        Some(heads)
                    } else if hf.contains("k_proj.") {
                        Some(kv_heads)
                    } else {
                        None
                    };
                    if let Some(n) = heads_of {
                        let (m, vector) = rows(t)?;
                        let m = unpermute(&m, n)?;
                        t = if vector { m.squeeze(1)? } else { m };
                    }
                }
                dense.insert(hf, t);
            }
        }
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format: Format::Gguf,
        config: ArchConfig::Llama(cfg),
        weights: Weights::new(path, dense, quantized),
        tokenizer,
        interleaved_rope: numeric == NumericPath::Quantized && permuted_rope,
    })
}

/// The GGUF metadata key that holds a Llama config.json key's value.
fn gguf_key(arch: &str, config_key: &str) -> String {
    let suffix = match config_key {
        "vocab_size" => return "tokenizer.ggml.tokens".into(),
        "hidden_size" => "embedding_length",
        "intermediate_size" => "feed_forward_length",
        "num_hidden_layers" => "block_count",
        "num_attention_heads" => "attention.head_count",
        "num_key_value_heads" => "attention.head_count_kv",
        "head_dim" => "attention.key_length",
        "max_position_embeddings" => "context_length",
        "rms_norm_eps" => "attention.layer_norm_rms_epsilon",
        "rope_theta" => "rope.freq_base",
        _ => return "general.architecture".into(),
    };
    format!("{arch}.{suffix}")
}
