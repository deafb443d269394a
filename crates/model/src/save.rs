//! Writes a model as a Hugging Face directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`) in its own architecture, so transformers and fairlm load it. The
//! directory appears whole or not at all: files go to a temporary sibling that is renamed.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde_json::json;

use crate::error::{Error, Result};
use crate::loader::{ArchConfig, Checkpoint};

fn config_json(config: &ArchConfig) -> serde_json::Value {
    match config {
        ArchConfig::Llama(c) => json!({
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
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
            "attention_bias": false,
            "mlp_bias": false,
            "torch_dtype": "float32",
        }),
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
        ck.tokenizer.save_json(&tmp.join("tokenizer.json"))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::file(dir, format!("cannot move into place: {e}")))
}
