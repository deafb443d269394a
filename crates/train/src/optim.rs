//! AdamW over flat f32 buffers, with gradients summed across micro-batches, global-norm
//! clipping and a warm-up + cosine schedule. One pass per tensor instead of candle-nn's chain
//! of whole-tensor ops (engine-notes.md: that chain is half of a training step).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rayon::prelude::*;

use crate::error::Result;

/// Linear warm-up to `peak` over `warmup` steps, then cosine decay to 10% of it at `total`.
pub fn learning_rate(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = 0.1 * peak;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Gradients of a parameter list, summed over micro-batches.
pub struct GradSum {
    /// One flat sum per parameter.
    pub sums: Vec<Vec<f32>>,
}

impl GradSum {
    /// Zero sums shaped like `vars`.
    pub fn new(vars: &[(String, Var)]) -> Self {
        GradSum {
            sums: vars
                .iter()
                .map(|(_, v)| vec![0.0; v.elem_count()])
                .collect(),
        }
    }

    /// Adds `grads` of `vars` (a var without a gradient adds nothing).
    pub fn add(&mut self, vars: &[(String, Var)], grads: &GradStore) -> Result<()> {
        for ((_, v), sum) in vars.iter().zip(self.sums.iter_mut()) {
            if let Some(g) = grads.get(v.as_tensor()) {
                let g = g.flatten_all()?.to_vec1::<f32>()?;
                if sum.iter().all(|&x| x == 0.0) {
                    *sum = g;
                } else {
                    sum.par_iter_mut().zip(g).for_each(|(s, x)| *s += x);
                }
            }
        }
        Ok(())
    }

    /// Global L2 norm of the summed gradients.
    pub fn norm(&self) -> f64 {
        self.sums
            .iter()
            .flat_map(|s| s.iter())
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt()
    }
}

/// AdamW's hyper-parameters.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the second moment's root.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        // PyTorch's AdamW defaults.
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// AdamW (decoupled weight decay, bias-corrected moments) over flat f32 buffers.
pub struct AdamW {
    /// Its hyper-parameters.
    pub cfg: AdamWConfig,
    /// Steps taken.
    pub step: usize,
    /// First moments, one buffer per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments, one buffer per parameter.
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    /// A fresh optimiser for `vars`.
    pub fn new(vars: &[(String, Var)], cfg: AdamWConfig) -> Self {
        AdamW {
            cfg,
            step: 0,
            m: vars
                .iter()
                .map(|(_, v)| vec![0.0; v.elem_count()])
                .collect(),
            v: vars
                .iter()
                .map(|(_, v)| vec![0.0; v.elem_count()])
                .collect(),
        }
    }

    /// One update with gradient `grads.sums × scale` (scale folds in the accumulation mean and
    /// clipping). Vectors (norms, biases) get no weight decay.
    pub fn update(
        &mut self,
        vars: &[(String, Var)],
        grads: &GradSum,
        lr: f64,
        scale: f64,
    ) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for (i, (_, var)) in vars.iter().enumerate() {
            let decay = if var.rank() >= 2 {
                self.cfg.weight_decay
            } else {
                0.0
            };
            let mut w = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let eps = self.cfg.eps;
            w.par_iter_mut()
                .zip(self.m[i].par_iter_mut())
                .zip(self.v[i].par_iter_mut())
                .zip(grads.sums[i].par_iter())
                .for_each(|(((w, m), v), &g)| {
                    let g = g as f64 * scale;
                    let mj = b1 * *m as f64 + (1.0 - b1) * g;
                    let vj = b2 * *v as f64 + (1.0 - b2) * g * g;
                    *m = mj as f32;
                    *v = vj as f32;
                    let wj = *w as f64 * (1.0 - lr * decay);
                    *w = (wj - lr * (mj / c1) / ((vj / c2).sqrt() + eps)) as f32;
                });
            var.set(&Tensor::from_vec(w, var.shape(), var.device())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        assert!((learning_rate(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!(learning_rate(50, 100, 10, 1.0) < 1.0);
        assert!((learning_rate(100, 100, 10, 1.0) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn adamw_first_step_moves_by_lr_against_the_gradient() {
        let var =
            Var::from_tensor(&Tensor::new(&[1.0f32, -1.0], &candle_core::Device::Cpu).unwrap())
                .unwrap();
        let vars = vec![("w".to_string(), var)];
        let mut opt = AdamW::new(&vars, AdamWConfig::default());
        let grads = GradSum {
            sums: vec![vec![2.0, -0.5]],
        };
        opt.update(&vars, &grads, 0.1, 1.0).unwrap();
        let w = vars[0].1.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (w[0] - 0.9).abs() < 1e-5 && (w[1] + 0.9).abs() < 1e-5,
            "{w:?}"
        );
    }
}
