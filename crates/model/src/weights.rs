//! Named weights of a checkpoint, under Hugging Face names, as f32 tensors (trainable when
//! made from `Var`s) and, on the quantized path, as GGUF blocks for the matmuls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{Tensor, Var};

use crate::error::{Error, Result};
use crate::ops::Linear;

/// A checkpoint's tensors by name, dense and quantized.
pub struct Weights {
    path: PathBuf,
    dense: HashMap<String, Tensor>,
    quantized: HashMap<String, Arc<QTensor>>,
}

impl Weights {
    /// Tensors read from `path` (named in errors).
    pub fn new(
        path: &Path,
        dense: HashMap<String, Tensor>,
        quantized: HashMap<String, Arc<QTensor>>,
    ) -> Self {
        Weights {
            path: path.to_path_buf(),
            dense,
            quantized,
        }
    }

    /// The file the tensors came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.dense.contains_key(name) || self.quantized.contains_key(name)
    }

    /// Whether any matrix is kept quantized.
    pub fn is_quantized(&self) -> bool {
        !self.quantized.is_empty()
    }

    /// The f32 tensor `name`, checked against `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = match self.dense.get(name) {
            Some(t) => t.clone(),
            None => match self.quantized.get(name) {
                Some(q) => q.dequantize(&candle_core::Device::Cpu)?,
                None => return Err(self.missing(name)),
            },
        };
        if t.dims() != shape {
            // In a Hugging Face directory the sizes come from config.json beside the weights:
            // name it, since that is the file a user edits.
            let config = self
                .path
                .extension()
                .is_some_and(|x| x == "safetensors")
                .then(|| self.path.with_file_name("config.json"));
            return Err(Error::Config {
                path: config.unwrap_or_else(|| self.path.clone()),
                reason: format!(
                    "disagrees with {}: tensor `{name}` has shape {:?}, the config implies {shape:?}",
                    self.path.display(),
                    t.dims()
                ),
            });
        }
        Ok(t)
    }

    /// A linear layer whose weight is `{prefix}.weight` ([out, in]) and optional bias.
    pub fn linear(
        &self,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        bias: bool,
    ) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let bias = if bias {
            Some(self.get(&format!("{prefix}.bias"), &[out_features])?)
        } else {
            None
        };
        if let Some(q) = self.quantized.get(&name) {
            if q.shape().dims() != [out_features, in_features] {
                return Err(Error::Config {
                    path: self.path.clone(),
                    reason: format!(
                        "tensor `{name}` has shape {:?}, the config implies {:?}",
                        q.shape().dims(),
                        [out_features, in_features]
                    ),
                });
            }
            return Ok(Linear::quantized(q.clone(), bias)?);
        }
        Ok(Linear::dense(
            self.get(&name, &[out_features, in_features])?,
            bias,
        )?)
    }

    /// The error for a tensor the architecture needs and the file lacks.
    pub fn missing(&self, name: &str) -> Error {
        Error::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        }
    }

    /// Replaces every dense tensor with a `Var` holding a copy, so that a model built from
    /// these weights is trainable; returns the vars by name (sorted, for a stable order).
    pub fn make_trainable(&mut self) -> Result<Vec<(String, Var)>> {
        if self.is_quantized() {
            return Err(Error::Invalid(
                "quantized weights cannot be trained; load the model with --dtype f32".into(),
            ));
        }
        let mut names: Vec<String> = self.dense.keys().cloned().collect();
        names.sort();
        let mut vars = Vec::with_capacity(names.len());
        for name in names {
            let var = Var::from_tensor(&self.dense[&name])?;
            self.dense.insert(name.clone(), var.as_tensor().clone());
            vars.push((name, var));
        }
        Ok(vars)
    }

    /// The dense tensors by name (for saving).
    pub fn dense(&self) -> &HashMap<String, Tensor> {
        &self.dense
    }
}
