//! Fused f32 CPU kernels with hand-written backward passes for the differentiable forward.
//!
//! candle's autograd runs the composed forms (`rms_norm_slow`, `rope_slow`, `softmax` from
//! `exp`/`sum`/`div`) as chains of whole-tensor ops, each allocating its output, and twice as
//! many again backward; a training step spent more time there than in its matmuls. Each op
//! here does one pass forward and one pass backward, rows split over rayon's threads. The
//! gradients are first order only (the backward kernels are not themselves differentiable),
//! which is all the trainer asks for. Reductions run in a fixed order: same inputs, same bits.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per rayon task for elementwise kernels: large enough to amortise scheduling.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: the input must be contiguous");
    };
    match s {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle_core::bail!("{op}: f32 only"),
    }
}

fn last_dim(l: &Layout, op: &str) -> Result<usize> {
    match l.dims().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => candle_core::bail!("{op}: needs a non-empty last dimension"),
    }
}

fn output(v: Vec<f32>, l: &Layout) -> (CpuStorage, Shape) {
    (CpuStorage::F32(v), l.shape().clone())
}

/// Applies `f(out, x)` to every `chunk` of `x` (a row, or a block of elements), in parallel.
fn map_chunks(
    x: &[f32],
    l: &Layout,
    chunk: usize,
    f: impl Fn(&mut [f32], &[f32]) + Sync,
) -> (CpuStorage, Shape) {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(y, x)| f(y, x));
    output(y, l)
}

/// Applies `f(out, a, b)` to every `chunk` of two same-shaped operands, in parallel.
fn map_chunks2(
    a: &[f32],
    b: &[f32],
    l: &Layout,
    chunk: usize,
    op: &str,
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) -> Result<(CpuStorage, Shape)> {
    if a.len() != b.len() {
        candle_core::bail!("{op}: operands differ in size");
    }
    let mut y = vec![0f32; a.len()];
    y.par_chunks_mut(chunk)
        .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
        .for_each(|(y, (a, b))| f(y, a, b));
    Ok(output(y, l))
}

/// Applies `f(out, row)` to every row (last dimension) of one f32 operand.
fn map_rows(
    op: &str,
    s: &CpuStorage,
    l: &Layout,
    f: impl Fn(&mut [f32], &[f32]) + Sync,
) -> Result<(CpuStorage, Shape)> {
    let x = f32_slice(s, l, op)?;
    let n = last_dim(l, op)?;
    Ok(map_chunks(x, l, n, f))
}

/// Two f32 operands and the length of the first one's rows (its last dimension).
fn operands2<'a>(
    op: &str,
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
) -> Result<(&'a [f32], &'a [f32], usize)> {
    Ok((
        f32_slice(s1, l1, op)?,
        f32_slice(s2, l2, op)?,
        last_dim(l1, op)?,
    ))
}

/// Applies `f(out, a, b)` to every row of two same-shaped f32 operands.
fn map_rows2(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) -> Result<(CpuStorage, Shape)> {
    let (a, b, n) = operands2(op, (s1, l1), (s2, l2))?;
    map_chunks2(a, b, l1, n, op, f)
}

fn row_max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// log-softmax over the last dimension: y = x − logsumexp(x).
struct LogSoftmax;

impl CustomOp1 for LogSoftmax {
    fn name(&self) -> &'static str {
        "fused-log-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        map_rows(self.name(), s, l, |y, x| {
            let m = row_max(x);
            let lse = m + x.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x - lse;
            }
        })
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            y.apply_op2_no_bwd(&grad.contiguous()?, &LogSoftmaxGrad)?,
        ))
    }
}

/// dx = g − softmax(x) · Σg, from y = log-softmax(x).
struct LogSoftmaxGrad;

impl CustomOp2 for LogSoftmaxGrad {
    fn name(&self) -> &'static str {
        "fused-log-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        map_rows2(self.name(), (s1, l1), (s2, l2), |dx, y, g| {
            let total: f32 = g.iter().sum();
            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                *dx = g - y.exp() * total;
            }
        })
    }
}

/// softmax over the last dimension.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        map_rows(self.name(), s, l, |y, x| {
            let m = row_max(x);
            let mut sum = 0f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x - m).exp();
                sum += *y;
            }
            for y in y.iter_mut() {
                *y /= sum;
            }
        })
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?))
    }
}

/// dx = y ⊙ (g − Σ g ⊙ y), from y = softmax(x).
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "fused-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        map_rows2(self.name(), (s1, l1), (s2, l2), |dx, y, g| {
            let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                *dx = y * (g - dot);
            }
        })
    }
}

fn inverse_rms(x: &[f32], eps: f32) -> f32 {
    let mean_square = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (mean_square + eps).sqrt()
}

/// RMS norm over the last dimension: y = x ⊙ w / rms(x).
struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, n) = operands2(self.name(), (s1, l1), (s2, l2))?;
        if w.len() != n {
            candle_core::bail!("{}: weight of {} for rows of {n}", self.name(), w.len());
        }
        Ok(map_chunks(x, l1, n, |y, x| {
            let r = inverse_rms(x, self.eps);
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * r * w;
            }
        }))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &grad, &RmsNormGradX { eps: self.eps })?;
        let dw = x.apply_op2_no_bwd(&grad, &RmsNormGradW { eps: self.eps })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// dx = r (w ⊙ g) − x r³ Σ(w ⊙ g ⊙ x) / n, with r = 1 / rms(x).
struct RmsNormGradX {
    eps: f32,
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "fused-rms-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let g = f32_slice(s3, l3, self.name())?;
        let n = last_dim(l1, self.name())?;
        map_chunks2(x, g, l1, n, self.name(), |dx, x, g| {
            let r = inverse_rms(x, self.eps);
            let dot: f32 = x.iter().zip(g).zip(w).map(|((x, g), w)| x * g * w).sum();
            let c = r * r * r * dot / n as f32;
            for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(w) {
                *dx = r * w * g - x * c;
            }
        })
    }
}

/// dw = Σ over rows of g ⊙ x / rms(x): per-block partial sums, added in block order.
struct RmsNormGradW {
    eps: f32,
}

impl CustomOp2 for RmsNormGradW {
    fn name(&self) -> &'static str {
        "fused-rms-norm-grad-w"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g, n) = operands2(self.name(), (s1, l1), (s2, l2))?;
        const ROWS_PER_BLOCK: usize = 64;
        let partials: Vec<Vec<f32>> = x
            .par_chunks(n * ROWS_PER_BLOCK)
            .zip(g.par_chunks(n * ROWS_PER_BLOCK))
            .map(|(x, g)| {
                let mut acc = vec![0f32; n];
                for (x, g) in x.chunks(n).zip(g.chunks(n)) {
                    let r = inverse_rms(x, self.eps);
                    for ((a, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                        *a += g * x * r;
                    }
                }
                acc
            })
            .collect();
        let mut dw = vec![0f32; n];
        for p in partials {
            for (d, v) in dw.iter_mut().zip(p) {
                *d += v;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(n)))
    }
}

/// Rotary embedding of x [b, h, s, d] by tables cos, sin [s, d/2]: pairs (x[2i], x[2i+1])
/// when `interleaved` (GGUF's row order), else (x[i], x[i + d/2]) (Hugging Face's).
struct Rope {
    interleaved: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let cos = f32_slice(s2, l2, self.name())?;
        let sin = f32_slice(s3, l3, self.name())?;
        let (_, _, seq, d) = l1.shape().dims4()?;
        let half = d / 2;
        if d % 2 != 0 || cos.len() != seq * half || sin.len() != seq * half {
            candle_core::bail!("{}: tables do not match [{seq}, {half}]", self.name());
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(seq * d)
            .zip(x.par_chunks(seq * d))
            .for_each(|(y, x)| {
                for t in 0..seq {
                    let (c, s) = (&cos[t * half..][..half], &sin[t * half..][..half]);
                    let (x, y) = (&x[t * d..][..d], &mut y[t * d..][..d]);
                    for i in 0..half {
                        let (a, b) = if self.interleaved {
                            (2 * i, 2 * i + 1)
                        } else {
                            (i, i + half)
                        };
                        y[a] = x[a] * c[i] - x[b] * s[i];
                        y[b] = x[a] * s[i] + x[b] * c[i];
                    }
                }
            });
        Ok(output(y, l1))
    }

    /// A rotation's transpose is the rotation by the opposite angle: rope with −sin.
    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = grad.contiguous()?.apply_op3_no_bwd(
            cos,
            &sin.neg()?,
            &Rope {
                interleaved: self.interleaved,
            },
        )?;
        Ok((Some(dx), None, None))
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// silu(g) ⊙ u: the gated MLP's activation in one pass.
struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "fused-silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        map_chunks2(g, u, l1, ELEMENTWISE_CHUNK, self.name(), |y, g, u| {
            for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                *y = g / (1.0 + (-g).exp()) * u;
            }
        })
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dg = g.apply_op3_no_bwd(u, &grad, &SiluMulGrad { wrt_gate: true })?;
        let du = g.apply_op3_no_bwd(u, &grad, &SiluMulGrad { wrt_gate: false })?;
        Ok((Some(dg), Some(du)))
    }
}

/// d/dg = grad ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))); d/du = grad ⊙ silu(g).
struct SiluMulGrad {
    wrt_gate: bool,
}

impl CustomOp3 for SiluMulGrad {
    fn name(&self) -> &'static str {
        "fused-silu-mul-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1, self.name())?;
        let u = f32_slice(s2, l2, self.name())?;
        let d = f32_slice(s3, l3, self.name())?;
        let mut out = vec![0f32; g.len()];
        let wrt_gate = self.wrt_gate;
        out.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(g.par_chunks(ELEMENTWISE_CHUNK))
            .zip(
                u.par_chunks(ELEMENTWISE_CHUNK)
                    .zip(d.par_chunks(ELEMENTWISE_CHUNK)),
            )
            .for_each(|((out, g), (u, d))| {
                for (((o, &g), &u), &d) in out.iter_mut().zip(g).zip(u).zip(d) {
                    let s = sigmoid(g);
                    *o = if wrt_gate {
                        d * u * s * (1.0 + g * (1.0 - s))
                    } else {
                        d * g * s
                    };
                }
            });
        Ok(output(out, l1))
    }
}

/// log-softmax over the last dimension, differentiable.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(LogSoftmax)
}

/// softmax over the last dimension, differentiable.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

/// RMS norm over the last dimension with weight `w`, differentiable in both.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
}

/// Rotary embedding of x [b, h, s, d] by cos, sin [s, d/2], differentiable in x.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope { interleaved })
}

/// silu(gate) ⊙ up, differentiable in both.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMul)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// A fixed pseudo-random tensor (no RNG crate needed for a test input).
    fn input(shape: &[usize], salt: u32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n as u32)
            .map(|i| {
                let h = (i.wrapping_mul(2654435761) ^ salt.wrapping_mul(40503)) % 10007;
                h as f32 / 10007.0 * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Compares value and gradients of `fused` with `reference` (candle's composed ops) under
    /// the loss Σ probe ⊙ f(inputs).
    fn check(
        shapes: &[&[usize]],
        fused: impl Fn(&[Tensor]) -> Result<Tensor>,
        reference: impl Fn(&[Tensor]) -> Result<Tensor>,
    ) {
        let vars: Vec<Var> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Var::from_tensor(&input(s, i as u32 + 1)).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (yf, yr) = (fused(&ts).unwrap(), reference(&ts).unwrap());
        assert!(max_abs_diff(&yf, &yr) < 1e-5, "values differ");
        let probe = input(yf.dims(), 99);
        let gf = (&yf * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gr = (&yr * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in &vars {
            let (a, b) = (gf.get(v).unwrap(), gr.get(v).unwrap());
            let scale = b
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                max_abs_diff(a, b) <= 1e-5 * scale.max(1.0),
                "gradients differ by {}",
                max_abs_diff(a, b)
            );
        }
    }

    #[test]
    fn log_softmax_matches_composed_ops() {
        check(
            &[&[5, 37]],
            |t| log_softmax(&t[0]),
            |t| candle_nn::ops::log_softmax(&t[0], D::Minus1),
        );
    }

    #[test]
    fn softmax_matches_composed_ops() {
        check(
            &[&[2, 3, 4, 9]],
            |t| softmax(&t[0]),
            |t| candle_nn::ops::softmax(&t[0], D::Minus1),
        );
    }

    #[test]
    fn rms_norm_matches_composed_ops() {
        check(
            &[&[3, 130, 16], &[16]],
            |t| rms_norm(&t[0], &t[1], 1e-5),
            |t| candle_nn::ops::rms_norm_slow(&t[0], &t[1], 1e-5),
        );
    }

    #[test]
    fn rope_matches_composed_ops_in_both_orders() {
        let (cos, sin) = (
            input(&[5, 4], 7).cos().unwrap(),
            input(&[5, 4], 8).sin().unwrap(),
        );
        let (c, s) = (cos.clone(), sin.clone());
        check(
            &[&[2, 3, 5, 8]],
            |t| rope(&t[0], &cos, &sin, false),
            |t| candle_nn::rotary_emb::rope_slow(&t[0], &c, &s),
        );
        check(
            &[&[2, 3, 5, 8]],
            |t| rope(&t[0], &cos, &sin, true),
            |t| candle_nn::rotary_emb::rope_i_slow(&t[0], &c, &s),
        );
    }

    #[test]
    fn silu_mul_matches_composed_ops() {
        check(
            &[&[4, 40000], &[4, 40000]],
            |t| silu_mul(&t[0], &t[1]),
            |t| candle_nn::ops::silu(&t[0])? * &t[1],
        );
    }
}
