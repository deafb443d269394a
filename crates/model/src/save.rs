//! Writes a model as a Hugging Face directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`) in its own architecture, so transformers and fairlm load it. The
//! directory appears whole or not at all: files go to a temporary sibling that is renamed.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Tensor;
use serde_json::json;

use crate::error::{Error, Result};
use crate::llama::Family;
use crate::loader::{hf_name, ArchConfig, Checkpoint};

fn config_json(config: &ArchConfig) -> serde_json::Value {
    match config {
        ArchConfig::Llama(c) => {
            let mut v = json!({
                "model_type": c.family.model_type(),
                "architectures": [c.family.hf_class()],
                "vocab_size": c.vocab_size,
                "hidden_size": c.hidden_size,
                "intermediate_size": c.intermediate_size,
                "num_hidden_layers": c.num_hidden_layers,
                "num_attention_heads": c.num_attention_heads,
                "num_key_value_heads": c.kv_heads(),
                "head_dim": c.head_dim(),
                "hidden_act": "silu",
                "rms_norm_eps": c.rms_norm_eps,
                "rope_theta": c.rope_theta,
                "max_position_embeddings": c.max_position_embeddings,
                "tie_word_embeddings": c.tie_word_embeddings,
                "bos_token_id": c.bos_token_id,
                "eos_token_id": c.eos_token_id,
                "torch_dtype": "float32",
            });
            let family_keys = match c.family {
                Family::Llama => json!({
                    "attention_bias": c.attention_bias,
                    "mlp_bias": c.mlp_bias,
                }),
                Family::Mistral => json!({ "sliding_window": c.sliding_window }),
                Family::Qwen2 => json!({
                    "use_sliding_window": c.use_sliding_window,
                    "sliding_window": c.sliding_window,
                    "max_window_layers": c.max_window_layers.unwrap_or(c.num_hidden_layers),
                    "layer_types": (0..c.num_hidden_layers)
                        .map(|i| if c.window(i).is_some() { "sliding_attention" } else { "full_attention" })
                        .collect::<Vec<_>>(),
                }),
            };
            if let (Some(v), Some(extra)) = (v.as_object_mut(), family_keys.as_object()) {
                v.extend(extra.clone());
            }
            v
        }
        ArchConfig::Gpt2(c) => json!({
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": c.vocab_size,
            "n_positions": c.n_positions,
            "n_embd": c.n_embd,
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "n_inner": c.n_inner,
            "layer_norm_epsilon": c.layer_norm_epsilon,
            "activation_function": c.activation_function,
            "bos_token_id": c.bos_token_id,
            "eos_token_id": c.eos_token_id,
            "tie_word_embeddings": true,
            "torch_dtype": "float32",
        }),
    }
}

/// Saves `ck`'s config and tokenizer with `tensors` (Hugging Face names, f32; the checkpoint's
/// own dense weights when `None`) into the new directory `dir`.
pub fn save_hf(
    ck: &Checkpoint,
    tensors: Option<&HashMap<String, Tensor>>,
    dir: &Path,
) -> Result<()> {
    if ck.weights.is_quantized() {
        return Err(Error::Invalid(
            "a Hugging Face directory holds f32 weights: open the model with --dtype f32".into(),
        ));
    }
    if dir.exists() {
        return Err(Error::file(
            dir,
            "already exists; choose a new output directory",
        ));
    }
    let tensors = tensors.unwrap_or(ck.weights.dense());
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::file(parent, format!("cannot create: {e}")))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> Result<()> {
        std::fs::create_dir_all(&tmp)
            .map_err(|e| Error::file(&tmp, format!("cannot create: {e}")))?;
        let cfg = serde_json::to_string_pretty(&config_json(&ck.config))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(tmp.join("config.json"), cfg)
            .map_err(|e| Error::file(tmp.join("config.json"), e))?;
        let contiguous: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.contiguous()?)))
            .collect::<Result<_>>()?;
        candle_core::safetensors::save(&contiguous, tmp.join("model.safetensors")).map_err(
            |e| {
                Error::file(
                    tmp.join("model.safetensors"),
                    crate::error::candle_message(&e),
                )
            },
        )?;
        // The safetensors writer creates its file private (0600); give it the mode every
        // other file of the directory has (the user's umask).
        let mode = std::fs::metadata(tmp.join("config.json"))
            .map_err(|e| Error::file(tmp.join("config.json"), e))?
            .permissions();
        std::fs::set_permissions(tmp.join("model.safetensors"), mode)
            .map_err(|e| Error::file(tmp.join("model.safetensors"), e))?;
        ck.tokenizer.save_json(&tmp.join("tokenizer.json"))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::file(dir, format!("cannot move into place: {e}")))
}

/// Tensor types a saved GGUF can use for its matrices (vectors stay F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// 8-bit blocks of 32 with a scale.
    Q8_0,
    /// 4-bit blocks of 32 with a scale and a minimum.
    Q4_1,
}

impl GgufType {
    /// Reads `f32`, `f16`, `q8_0` or `q4_1` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" => GgufType::F32,
            "f16" => GgufType::F16,
            "q8_0" => GgufType::Q8_0,
            "q4_1" => GgufType::Q4_1,
            _ => return None,
        })
    }

    fn ggml(self) -> GgmlDType {
        match self {
            GgufType::F32 => GgmlDType::F32,
            GgufType::F16 => GgmlDType::F16,
            GgufType::Q8_0 => GgmlDType::Q8_0,
            GgufType::Q4_1 => GgmlDType::Q4_1,
        }
    }
}

/// Re-applies llama.cpp's rotary row order to Q/K (the inverse of the loader's unpermute).
fn permute(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (out, inp) = w.dims2()?;
    w.reshape((heads, 2, out / heads / 2, inp))?
        .transpose(1, 2)?
        .reshape((out, inp))
}

/// Writes `tensors` (Hugging Face names) as a GGUF file at `path`, with the metadata (tokenizer,
/// hyper-parameters) and tensor list of the GGUF checkpoint `ck` was opened from: the same
/// architecture and names, matrices stored as `matrix_type`. Written to a temporary sibling and
/// renamed, so `path` appears whole or not at all.
pub fn save_gguf(
    ck: &Checkpoint,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
    matrix_type: GgufType,
) -> Result<()> {
    if ck.format != crate::Format::Gguf {
        return Err(Error::Invalid(
            "a GGUF can only be written for a model read from GGUF (its tokenizer metadata is copied); write the Hugging Face directory instead".into(),
        ));
    }
    let ArchConfig::Llama(cfg) = &ck.config else {
        return Err(Error::Invalid(
            "GGUF output supports the llama and qwen2 architectures".into(),
        ));
    };
    let mut src = std::fs::File::open(&ck.path).map_err(|e| Error::file(&ck.path, e))?;
    let content = gguf_file::Content::read(&mut src)
        .map_err(|e| Error::file(&ck.path, crate::error::candle_message(&e)))?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut out_tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let q = match hf_name(name) {
            Some(hf) => {
                let t = tensors.get(&hf).ok_or_else(|| Error::MissingTensor {
                    path: path.to_path_buf(),
                    tensor: hf.clone(),
                })?;
                // llama.cpp's Llama layout has Q/K rows (and their biases) permuted.
                let heads = match () {
                    _ if cfg.family != Family::Llama => None,
                    _ if hf.contains("q_proj.") => Some(cfg.num_attention_heads),
                    _ if hf.contains("k_proj.") => Some(cfg.kv_heads()),
                    _ => None,
                };
                let t = match heads {
                    Some(n) if t.rank() == 1 => permute(&t.unsqueeze(1)?, n)?.squeeze(1)?,
                    Some(n) => permute(t, n)?,
                    None => t.clone(),
                };
                let ty = if t.rank() == 2 {
                    matrix_type.ggml()
                } else {
                    GgmlDType::F32
                };
                QTensor::quantize(&t.contiguous()?, ty)?
            }
            // Tensors llama.cpp keeps for itself are copied unchanged.
            None => content
                .tensor(&mut src, name, &candle_core::Device::Cpu)
                .map_err(|e| Error::file(&ck.path, crate::error::candle_message(&e)))?,
        };
        out_tensors.push((name.clone(), q));
    }
    let mut meta: Vec<(&String, &gguf_file::Value)> = content.metadata.iter().collect();
    meta.sort_by(|a, b| a.0.cmp(b.0));
    let meta: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let refs: Vec<(&str, &QTensor)> = out_tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    crate::files::check_replaceable(path).map_err(|e| Error::file(path, e))?;
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::file(&tmp, e))?;
        let mut w = std::io::BufWriter::new(file);
        gguf_file::write(&mut w, &meta, &refs)
            .map_err(|e| Error::file(&tmp, crate::error::candle_message(&e)))?;
        use std::io::Write;
        w.flush().map_err(|e| Error::file(&tmp, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::file(path, format!("cannot move into place: {e}")))
}
