//! A training run's checkpoint: parameters, optimiser moments and step counts as safetensors,
//! the loop's state as JSON, written atomically (a new directory renamed over the old), and
//! read back only for the same training settings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::optim::AdamW;
use crate::settings::{StepLog, TrainConfig};

/// Checkpoint files: tensors (parameters, optimiser moments, adversary) and the JSON state.
const CHECKPOINT_TENSORS: &str = "state.safetensors";
/// The file in a checkpoint directory that records where training stands.
pub const CHECKPOINT_STATE: &str = "state.json";

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct CheckpointState {
    pub(crate) config: TrainConfig,
    pub(crate) step: usize,
    pub(crate) log: Vec<StepLog>,
    pub(crate) kept_step: usize,
}

/// Parameters and their optimiser, saved under `prefix` in a checkpoint.
pub(crate) struct OptimisedGroup<'a, O> {
    pub(crate) prefix: &'a str,
    pub(crate) vars: &'a [(String, candle_core::Var)],
    pub(crate) opt: O,
}

pub(crate) fn save_checkpoint(
    dir: &Path,
    state: &CheckpointState,
    groups: [OptimisedGroup<&AdamW>; 2],
) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for OptimisedGroup { prefix, vars, opt } in groups {
        for (i, (name, var)) in vars.iter().enumerate() {
            let shape = var.shape().clone();
            tensors.insert(format!("{prefix}param.{name}"), var.as_tensor().copy()?);
            tensors.insert(
                format!("{prefix}m.{name}"),
                Tensor::from_slice(&opt.m[i], shape.clone(), &Device::Cpu)?,
            );
            tensors.insert(
                format!("{prefix}v.{name}"),
                Tensor::from_slice(&opt.v[i], shape, &Device::Cpu)?,
            );
        }
        tensors.insert(
            format!("{prefix}step"),
            Tensor::new(&[opt.step as u32], &Device::Cpu)?,
        );
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::file(parent, e))?;
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::file(&tmp, e))?;
    candle_core::safetensors::save(&tensors, tmp.join(CHECKPOINT_TENSORS))
        .map_err(|e| Error::file(tmp.join(CHECKPOINT_TENSORS), e))?;
    let json = serde_json::to_string(state).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(tmp.join(CHECKPOINT_STATE), json)
        .map_err(|e| Error::file(tmp.join(CHECKPOINT_STATE), e))?;
    let old = dir.with_extension("old");
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(|e| Error::file(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::file(dir, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

pub(crate) fn load_checkpoint(
    dir: &Path,
    cfg: &TrainConfig,
    groups: [OptimisedGroup<&mut AdamW>; 2],
) -> Result<CheckpointState> {
    let state_path = dir.join(CHECKPOINT_STATE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::file(&state_path, e))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| Error::file(&state_path, format!("not a fairlm checkpoint: {e}")))?;
    let ours = serde_json::to_value(cfg).map_err(|e| Error::Invalid(e.to_string()))?;
    let theirs = serde_json::to_value(&state.config).map_err(|e| Error::Invalid(e.to_string()))?;
    if ours != theirs {
        return Err(Error::file(&state_path, "the checkpoint was made with other training settings; resume with the same ones or start a new --out"));
    }
    let tpath = dir.join(CHECKPOINT_TENSORS);
    let tensors =
        candle_core::safetensors::load(&tpath, &Device::Cpu).map_err(|e| Error::file(&tpath, e))?;
    let get = |name: &str| {
        tensors
            .get(name)
            .ok_or_else(|| Error::file(&tpath, format!("missing tensor `{name}`")))
    };
    for OptimisedGroup { prefix, vars, opt } in groups {
        for (i, (name, var)) in vars.iter().enumerate() {
            var.set(get(&format!("{prefix}param.{name}"))?)?;
            opt.m[i] = get(&format!("{prefix}m.{name}"))?
                .flatten_all()?
                .to_vec1()?;
            opt.v[i] = get(&format!("{prefix}v.{name}"))?
                .flatten_all()?
                .to_vec1()?;
        }
        opt.step = get(&format!("{prefix}step"))?.to_vec1::<u32>()?[0] as usize;
    }
    Ok(state)
}

/// Where `train` keeps its checkpoint inside an output directory.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}
