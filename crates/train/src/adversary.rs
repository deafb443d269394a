//! The adversarial discriminator (the seed's bonus, design.md §4): per axis, a small MLP on
//! the pooled hidden states of a sentence predicts its group. During mitigation it reads the
//! model through gradient reversal (see `losses::batch_loss`); before and after, a fresh one
//! trained on frozen features measures how much group information the states still carry.

use candle_core::{DType, Device, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;
use crate::optim::{AdamW, AdamWConfig, GradSum};

/// Hidden units of the adversary's one hidden layer.
pub const HIDDEN_UNITS: usize = 64;

/// One MLP head per axis: hidden → 64 (ReLU) → groups.
pub struct Adversary {
    /// Per axis: (w1, b1, w2, b2).
    heads: Vec<[Var; 4]>,
}

fn uniform(rng: &mut StdRng, shape: (usize, usize), fan_in: usize) -> Result<Var> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let data: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.random_range(-bound..bound))
        .collect();
    Ok(Var::from_tensor(&Tensor::from_vec(
        data,
        shape,
        &Device::Cpu,
    )?)?)
}

impl Adversary {
    /// `groups[a]` is the number of groups of axis a.
    pub fn new(hidden: usize, groups: &[usize], seed: u64) -> Result<Adversary> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xad_5e);
        let heads = groups
            .iter()
            .map(|&k| {
                Ok([
                    uniform(&mut rng, (hidden, HIDDEN_UNITS), hidden)?,
                    Var::zeros(HIDDEN_UNITS, DType::F32, &Device::Cpu)?,
                    uniform(&mut rng, (HIDDEN_UNITS, k), HIDDEN_UNITS)?,
                    Var::zeros(k, DType::F32, &Device::Cpu)?,
                ])
            })
            .collect::<Result<_>>()?;
        Ok(Adversary { heads })
    }

    /// The adversary's trainable weights, named.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.heads
            .iter()
            .enumerate()
            .flat_map(|(a, h)| {
                ["w1", "b1", "w2", "b2"]
                    .iter()
                    .zip(h.iter())
                    .map(move |(n, v)| (format!("adversary.{a}.{n}"), v.clone()))
            })
            .collect()
    }

    fn logits(&self, axis: usize, x: &Tensor) -> Result<Tensor> {
        let [w1, b1, w2, b2] = &self.heads[axis];
        let h = x
            .matmul(w1.as_tensor())?
            .broadcast_add(b1.as_tensor())?
            .relu()?;
        Ok(h.matmul(w2.as_tensor())?.broadcast_add(b2.as_tensor())?)
    }

    /// Mean cross-entropy of predicting each row's group (labels are (axis, group)) and the
    /// share predicted right.
    pub fn loss(&self, x: &Tensor, labels: &[(usize, usize)]) -> Result<(Tensor, f64)> {
        let mut axes: Vec<usize> = labels.iter().map(|l| l.0).collect();
        axes.sort();
        axes.dedup();
        let mut total: Option<Tensor> = None;
        let mut right = 0usize;
        for a in axes {
            let rows: Vec<u32> = (0..labels.len())
                .filter(|&i| labels[i].0 == a)
                .map(|i| i as u32)
                .collect();
            let target: Vec<u32> = rows.iter().map(|&i| labels[i as usize].1 as u32).collect();
            let logits = self.logits(
                a,
                &x.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0)?,
            )?;
            let lp = fairlm_model::fused::log_softmax(&logits)?;
            let t = Tensor::from_vec(target.clone(), (target.len(), 1), &Device::Cpu)?;
            let nll = (lp.gather(&t, 1)?.sum_all()? * -1.0)?;
            let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            right += pred.iter().zip(&target).filter(|(p, t)| p == t).count();
            total = Some(match total {
                None => nll,
                Some(s) => (s + nll)?,
            });
        }
        let n = labels.len().max(1);
        let loss = match total {
            Some(t) => (t / n as f64)?,
            None => Tensor::new(0f32, &Device::Cpu)?,
        };
        Ok((loss, right as f64 / n as f64))
    }

    /// Share of rows whose group is predicted right.
    pub fn accuracy(&self, x: &Tensor, labels: &[(usize, usize)]) -> Result<f64> {
        Ok(self.loss(x, labels)?.1)
    }
}

/// Accuracy on the held-out rows of a fresh discriminator trained (full batch, AdamW, fixed
/// steps) on the other rows of frozen features: how much group information is left.
pub fn probe_accuracy(
    train_x: &Tensor,
    train_labels: &[(usize, usize)],
    test_x: &Tensor,
    test_labels: &[(usize, usize)],
    groups: &[usize],
    seed: u64,
) -> Result<f64> {
    let adv = Adversary::new(train_x.dim(1)?, groups, seed)?;
    let vars = adv.vars();
    let mut opt = AdamW::new(
        &vars,
        AdamWConfig {
            weight_decay: 0.0,
            ..Default::default()
        },
    );
    for _ in 0..200 {
        let (loss, _) = adv.loss(train_x, train_labels)?;
        let grads = loss.backward()?;
        let mut sum = GradSum::new(&vars);
        sum.add(&vars, &grads)?;
        opt.update(&vars, &sum, 3e-3, 1.0)?;
    }
    adv.accuracy(test_x, test_labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_finds_a_planted_group_signal_and_not_noise() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 200;
        let mut xs = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let g = i % 2;
            for d in 0..8 {
                let signal = if d == 0 {
                    if g == 0 {
                        2.0
                    } else {
                        -2.0
                    }
                } else {
                    0.0
                };
                xs.push(signal + rng.random_range(-1.0f32..1.0));
            }
            labels.push((0usize, g));
        }
        let x = Tensor::from_vec(xs, (n, 8), &Device::Cpu).unwrap();
        let (tr, te) = (x.narrow(0, 0, 100).unwrap(), x.narrow(0, 100, 100).unwrap());
        let acc = probe_accuracy(&tr, &labels[..100], &te, &labels[100..], &[2], 0).unwrap();
        assert!(acc > 0.9, "{acc}");
        // Shuffled labels carry nothing: near chance.
        let noise: Vec<(usize, usize)> = (0..n).map(|i| (0, (i * 7 / 3) % 2)).collect();
        let tr2 = x.narrow(0, 0, 100).unwrap();
        let acc = probe_accuracy(&tr2, &noise[..100], &te, &noise[100..], &[2], 0).unwrap();
        assert!(acc < 0.75, "{acc}");
    }
}
