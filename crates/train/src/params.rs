//! What a mitigation trains: every weight (full fine-tune), the last k blocks and the final
//! norm, or low-rank adapters (LoRA) on the blocks' matrices. `materialize` gives the model's
//! named tensors as functions of the trainable `Var`s; `merged` gives plain tensors in the
//! input's names and shapes, so the saved model keeps the architecture exactly.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use fairlm_model::{ArchConfig, Checkpoint};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// Which weights train.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every weight.
    Full,
    /// The last k transformer blocks and the final norm.
    LastK(usize),
    /// Low-rank adapters on every matrix of the transformer blocks, merged into the weights on save.
    Lora {
        /// The adapters' rank.
        rank: usize,
        /// Their scale numerator (scale alpha / rank).
        alpha: f64,
    },
}

impl Mode {
    /// `full`, `last-K`, or `lora-R` (alpha = R).
    pub fn parse(s: &str) -> Option<Mode> {
        if s == "full" {
            return Some(Mode::Full);
        }
        if let Some(k) = s.strip_prefix("last-") {
            return k.parse().ok().filter(|k| *k > 0).map(Mode::LastK);
        }
        let r: usize = s.strip_prefix("lora-")?.parse().ok().filter(|r| *r > 0)?;
        Some(Mode::Lora {
            rank: r,
            alpha: r as f64,
        })
    }
}

/// The block index of a weight name, if it belongs to a block.
fn block_of(name: &str) -> Option<usize> {
    let rest = name
        .strip_prefix("model.layers.")
        .or_else(|| name.strip_prefix("transformer.h."))?;
    rest.split('.').next()?.parse().ok()
}

fn is_final_norm(name: &str) -> bool {
    name.starts_with("model.norm.") || name.starts_with("transformer.ln_f.")
}

/// The trainable parameters over a checkpoint's frozen base.
pub struct Params {
    base: HashMap<String, Tensor>,
    /// Trainable tensors: weight names (full, last-k) or `{weight}.lora_a` / `.lora_b`.
    pub vars: Vec<(String, Var)>,
    mode: Mode,
}

impl Params {
    /// The trainable parameters of `ck` in `mode` (LoRA adapters initialised from `seed`).
    pub fn new(ck: &Checkpoint, mode: Mode, seed: u64) -> Result<Params> {
        if ck.weights.is_quantized() {
            return Err(Error::Invalid(
                "training needs the f32 weights: open the model with --dtype f32".into(),
            ));
        }
        let base = ck.weights.dense().clone();
        let n_layers = match &ck.config {
            ArchConfig::Llama(c) => c.num_hidden_layers,
            ArchConfig::Gpt2(c) => c.n_layer,
        };
        let mut names: Vec<&String> = base.keys().collect();
        names.sort();
        let mut vars = Vec::new();
        match mode {
            Mode::Full => {
                for n in names {
                    vars.push((n.clone(), Var::from_tensor(&base[n])?));
                }
            }
            Mode::LastK(k) => {
                if k > n_layers {
                    return Err(Error::Invalid(format!(
                        "last-{k}: the model has only {n_layers} blocks"
                    )));
                }
                for n in names {
                    let trained =
                        block_of(n).is_some_and(|b| b + k >= n_layers) || is_final_norm(n);
                    if trained {
                        vars.push((n.clone(), Var::from_tensor(&base[n])?));
                    }
                }
            }
            Mode::Lora { rank, .. } => {
                let mut rng = StdRng::seed_from_u64(seed ^ 0x10_4a);
                for n in names {
                    let w = &base[n];
                    if block_of(n).is_none() || w.rank() != 2 || !n.ends_with(".weight") {
                        continue;
                    }
                    let (rows, cols) = w.dims2()?;
                    // PEFT's initialisation: A uniform in ±1/√cols, B zero, so training
                    // starts from the original model.
                    let bound = 1.0 / (cols as f32).sqrt();
                    let a: Vec<f32> = (0..rank * cols)
                        .map(|_| rng.random_range(-bound..bound))
                        .collect();
                    let a = Tensor::from_vec(a, (rank, cols), &Device::Cpu)?;
                    let b = Tensor::zeros((rows, rank), candle_core::DType::F32, &Device::Cpu)?;
                    vars.push((format!("{n}.lora_a"), Var::from_tensor(&a)?));
                    vars.push((format!("{n}.lora_b"), Var::from_tensor(&b)?));
                }
            }
        }
        if vars.is_empty() {
            return Err(Error::Invalid(format!(
                "{mode:?} leaves nothing to train in this model"
            )));
        }
        Ok(Params { base, vars, mode })
    }

    /// Number of trainable scalars.
    pub fn n_trainable(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    fn build(&self, detach: bool) -> Result<HashMap<String, Tensor>> {
        let mut out = self.base.clone();
        let var = |v: &Var| {
            if detach {
                v.as_tensor().detach()
            } else {
                v.as_tensor().clone()
            }
        };
        match self.mode {
            Mode::Full | Mode::LastK(_) => {
                for (n, v) in &self.vars {
                    out.insert(n.clone(), var(v));
                }
            }
            Mode::Lora { rank, alpha } => {
                let scale = alpha / rank as f64;
                for pair in self.vars.chunks(2) {
                    let (a_name, a) = &pair[0];
                    let (_, b) = &pair[1];
                    let name = a_name.trim_end_matches(".lora_a");
                    let delta = (var(b).matmul(&var(a))? * scale)?;
                    out.insert(name.to_string(), (&self.base[name] + delta)?);
                }
            }
        }
        Ok(out)
    }

    /// The model's tensors, connected to the trainable vars for backpropagation.
    pub fn materialize(&self) -> Result<HashMap<String, Tensor>> {
        self.build(false)
    }

    /// The current weights as plain tensors (adapters merged), under the input's names.
    pub fn merged(&self) -> Result<HashMap<String, Tensor>> {
        self.build(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("full"), Some(Mode::Full));
        assert_eq!(Mode::parse("last-4"), Some(Mode::LastK(4)));
        assert_eq!(
            Mode::parse("lora-8"),
            Some(Mode::Lora {
                rank: 8,
                alpha: 8.0
            })
        );
        assert_eq!(Mode::parse("lora-0"), None);
        assert_eq!(Mode::parse("half"), None);
    }

    #[test]
    fn block_names() {
        assert_eq!(block_of("model.layers.12.mlp.up_proj.weight"), Some(12));
        assert_eq!(block_of("transformer.h.3.attn.c_attn.weight"), Some(3));
        assert_eq!(block_of("model.embed_tokens.weight"), None);
    }
}
