//! AdamW over flat f32 buffers, with gradients summed across micro-batches, global-norm
//! clipping and a warm-up + cosine schedule. One pass per tensor instead of candle-nn's chain
//! of whole-tensor ops (engine-notes.md: that chain is half of a training step).

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp1, Layout, Var};
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
    /// One flat sum per parameter; empty until its first gradient arrives, which is moved in
    /// (a step allocates and clears no zero buffer the size of the model). A parameter that
    /// got no gradient keeps an empty sum and is updated as with a zero gradient.
    pub sums: Vec<Vec<f32>>,
}

impl GradSum {
    /// Empty sums for `vars`.
    pub fn new(vars: &[(String, Var)]) -> Self {
        GradSum {
            sums: vars.iter().map(|_| Vec::new()).collect(),
        }
    }

    /// Adds `grads` of `vars` (a var without a gradient adds nothing).
    pub fn add(&mut self, vars: &[(String, Var)], grads: &GradStore) -> Result<()> {
        for ((_, v), sum) in vars.iter().zip(self.sums.iter_mut()) {
            if let Some(g) = grads.get(v.as_tensor()) {
                let g = g.flatten_all()?.to_vec1::<f32>()?;
                if sum.is_empty() {
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
            let update = ParamUpdate {
                moments: RefCell::new((&mut self.m[i], &mut self.v[i])),
                grad: &grads.sums[i],
                step: StepRule {
                    scale,
                    lr,
                    decay,
                    betas: (b1, b2),
                    corrections: (c1, c2),
                    eps: self.cfg.eps,
                },
            };
            var.as_tensor().inplace_op1(&update)?;
        }
        Ok(())
    }
}

/// One parameter's AdamW update, written into the parameter's own storage: copying the
/// weights out and back in (`to_vec1`, `Var::set`) cost two passes over the whole model per
/// step. The arithmetic is the same, element by element.
struct ParamUpdate<'a> {
    /// The parameter's first and second moments.
    moments: RefCell<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    /// Its summed gradient; empty when it got none (a zero gradient).
    grad: &'a [f32],
    step: StepRule,
}

/// This step's AdamW rule for one parameter's elements.
#[derive(Clone, Copy)]
struct StepRule {
    /// Multiplies the summed gradient (accumulation mean and clipping).
    scale: f64,
    lr: f64,
    /// Decoupled weight decay (0 for vectors).
    decay: f64,
    betas: (f64, f64),
    /// The moments' bias corrections, 1 − βᵗ.
    corrections: (f64, f64),
    eps: f64,
}

impl StepRule {
    fn apply(self, w: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        let ((b1, b2), (c1, c2)) = (self.betas, self.corrections);
        let g = g as f64 * self.scale;
        let mj = b1 * *m as f64 + (1.0 - b1) * g;
        let vj = b2 * *v as f64 + (1.0 - b2) * g * g;
        *m = mj as f32;
        *v = vj as f32;
        let wj = *w as f64 * (1.0 - self.lr * self.decay);
        *w = (wj - self.lr * (mj / c1) / ((vj / c2).sqrt() + self.eps)) as f32;
    }
}

impl InplaceOp1 for ParamUpdate<'_> {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("AdamW updates f32 parameters");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("AdamW updates contiguous parameters");
        };
        let w = &mut data[start..end];
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        if !self.grad.is_empty() && self.grad.len() != w.len() {
            candle_core::bail!(
                "a gradient of {} values for {} weights",
                self.grad.len(),
                w.len()
            );
        }
        let rule = self.step;
        let wmv = w.par_iter_mut().zip(m.par_iter_mut()).zip(v.par_iter_mut());
        if self.grad.is_empty() {
            wmv.for_each(|((w, m), v)| rule.apply(w, m, v, 0.0));
        } else {
            wmv.zip(self.grad.par_iter())
                .for_each(|(((w, m), v), &g)| rule.apply(w, m, v, g));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

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

    #[test]
    fn a_matrix_without_gradient_only_decays() {
        let w = Tensor::new(&[[1.0f32, -2.0]], &candle_core::Device::Cpu).unwrap();
        let vars = vec![("w".to_string(), Var::from_tensor(&w).unwrap())];
        let mut opt = AdamW::new(&vars, AdamWConfig::default());
        // No gradient added: the update is weight decay alone, 0.01 at lr 0.1.
        opt.update(&vars, &GradSum::new(&vars), 0.1, 1.0).unwrap();
        let w = vars[0].1.as_tensor().flatten_all().unwrap();
        let w = w.to_vec1::<f32>().unwrap();
        assert!(
            (w[0] - 0.999).abs() < 1e-6 && (w[1] + 1.998).abs() < 1e-6,
            "{w:?}"
        );
    }
}
