//! Operations shared by the architectures: norms, softmax, rotary embeddings, masks, linear
//! layers. Each op has a fast inference form and a differentiable form: candle-nn's fused
//! kernels have no backward pass and would silently stop gradients (engine-notes.md, trap 1);
//! the differentiable forms are this crate's own fused kernels with backward (`fused`).

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

use crate::q4_1::Q4_1Matrix;

/// Which kernels a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// candle-nn's fused kernels: fastest, no gradient.
    Fused,
    /// Compositions of primitive ops that backpropagate.
    Differentiable,
}

/// RMSNorm over the last dimension.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, k: Kernels) -> Result<Tensor> {
    match k {
        Kernels::Fused => candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32),
        Kernels::Differentiable => crate::fused::rms_norm(x, weight, eps as f32),
    }
}

/// LayerNorm over the last dimension (with bias).
pub fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    k: Kernels,
) -> Result<Tensor> {
    match k {
        Kernels::Fused => candle_nn::ops::layer_norm(&x.contiguous()?, weight, bias, eps as f32),
        Kernels::Differentiable => candle_nn::ops::layer_norm_slow(x, weight, bias, eps as f32),
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor, k: Kernels) -> Result<Tensor> {
    match k {
        Kernels::Fused => candle_nn::ops::softmax_last_dim(x),
        Kernels::Differentiable => crate::fused::softmax(x),
    }
}

/// silu(gate) ⊙ up, the gated MLP's activation.
pub fn silu_mul(gate: &Tensor, up: &Tensor, k: Kernels) -> Result<Tensor> {
    match k {
        Kernels::Fused => candle_nn::ops::silu(gate)? * up,
        Kernels::Differentiable => crate::fused::silu_mul(gate, up),
    }
}

/// Rotary position embedding tables for positions `0..max_positions`.
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
    /// GGUF keeps Q/K rows in llama.cpp's interleaved order; Hugging Face in halves.
    interleaved: bool,
}

impl Rotary {
    /// Tables of cos/sin for positions up to `max_positions`.
    pub fn new(
        head_dim: usize,
        max_positions: usize,
        theta: f64,
        interleaved: bool,
        device: &Device,
    ) -> Result<Self> {
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| (1.0 / theta.powf(i as f64 / head_dim as f64)) as f32)
            .collect();
        let n = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, n), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let freqs = positions.matmul(&inv_freq)?;
        Ok(Rotary {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            interleaved,
        })
    }

    /// Rotates `x` of shape [batch, heads, seq, head_dim] whose first position is `offset`,
    /// or, with `rows` ([batch·seq] positions, row by row: a left-padded batch), each row at
    /// its own positions.
    pub fn apply(
        &self,
        x: &Tensor,
        offset: usize,
        rows: Option<&Tensor>,
        k: Kernels,
    ) -> Result<Tensor> {
        let (b, _, seq, _) = x.dims4()?;
        let (cos, sin) = match rows {
            None => (
                self.cos.narrow(0, offset, seq)?,
                self.sin.narrow(0, offset, seq)?,
            ),
            Some(rows) => {
                let half = self.cos.dim(1)?;
                (
                    self.cos.index_select(rows, 0)?.reshape((b, seq, half))?,
                    self.sin.index_select(rows, 0)?.reshape((b, seq, half))?,
                )
            }
        };
        use candle_nn::rotary_emb as re;
        match (k, self.interleaved) {
            (Kernels::Fused, false) => re::rope(&x.contiguous()?, &cos, &sin),
            (Kernels::Fused, true) => re::rope_i(&x.contiguous()?, &cos, &sin),
            (Kernels::Differentiable, _) if rows.is_some() => {
                candle_core::bail!("left-padded rows are decoded with the fused kernels only")
            }
            (Kernels::Differentiable, interleaved) => {
                crate::fused::rope(x, &cos, &sin, interleaved)
            }
        }
    }
}

/// Additive causal mask [seq, offset + seq]: query i sees keys 0..=offset + i, and with a
/// sliding `window` only the last `window` of them (Mistral's and transformers' rule: key j is
/// seen from query position q when q − window < j ≤ q). With `pads` (one per batch row: a
/// left-padded cache, `KvCache::left_aligned`) the mask is [batch, 1, 1, seq, offset + seq]
/// and also hides each row's leading empty slots; a window counts slots, which is the same
/// as counting positions within a row.
pub fn causal_mask(
    seq: usize,
    offset: usize,
    window: Option<usize>,
    pads: Option<&[usize]>,
    device: &Device,
) -> Result<Tensor> {
    let total = offset + seq;
    let row = |pad: usize| {
        (0..seq).flat_map(move |i| {
            let q = offset + i;
            (0..total).map(move |j| {
                let outside_window = window.is_some_and(|w| j + w <= q);
                if j > q || j < pad || outside_window {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
    };
    match pads {
        None => Tensor::from_vec(row(0).collect(), (seq, total), device),
        Some(pads) => Tensor::from_vec(
            pads.iter().flat_map(|&p| row(p)).collect(),
            (pads.len(), 1, 1, seq, total),
            device,
        ),
    }
}

/// Scaled dot-product attention with an optional additive mask [s, t] (or [b, 1, 1, s, t]): queries [b, h, s, d]
/// against keys and values [b, kv, t, d], where each group of h / kv adjacent query heads
/// shares one key/value head. The group's queries are stacked as one [h / kv · s, d] matrix
/// per key/value head, so that keys and values are never repeated (a copy of the whole cache
/// per layer and step when decoding); with kv = h this is plain multi-head attention. With
/// `f16`, the attention weights are rounded to f16 before they meet the values, as ggml
/// rounds them against an f16 value cache.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    kern: Kernels,
    f16: bool,
) -> Result<Tensor> {
    let (b, h, s, d) = q.dims4()?;
    let (kv, t) = (k.dim(1)?, k.dim(2)?);
    let n_rep = h / kv;
    let scale = 1.0 / (d as f64).sqrt();
    let q = q.contiguous()?.reshape((b, kv, n_rep * s, d))?;
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let scores = match mask {
        Some(m) => scores
            .reshape((b, kv, n_rep, s, t))?
            .broadcast_add(m)?
            .reshape((b, kv, n_rep * s, t))?,
        None => scores,
    };
    round_to_f16(softmax_last_dim(&scores, kern)?, f16)?
        .matmul(v)?
        .reshape((b, h, s, d))
}

/// `t` rounded to the nearest f16 (kept in f32) when `round`, else `t`.
pub fn round_to_f16(t: Tensor, round: bool) -> Result<Tensor> {
    if round {
        t.to_dtype(DType::F16)?.to_dtype(DType::F32)
    } else {
        Ok(t)
    }
}

/// A dense or quantized linear map over the last dimension.
pub enum Linear {
    /// `weight` is [out, in] (PyTorch Linear) or, when `in_out`, [in, out] (GPT-2 Conv1D).
    Dense {
        /// The weight matrix.
        weight: Tensor,
        /// An added bias, if the layer has one.
        bias: Option<Tensor>,
        /// `weight` is stored [in, out].
        in_out: bool,
    },
    /// A quantized matrix through candle's quantized matmul.
    Quantized {
        /// The quantized matrix.
        weight: QMatMul,
        /// An added bias, if the layer has one.
        bias: Option<Tensor>,
    },
    /// Q4_1 blocks through this crate's kernel (candle's is scalar on x86).
    Q4_1 {
        /// The Q4_1 matrix.
        weight: Arc<Q4_1Matrix>,
        /// An added bias, if the layer has one.
        bias: Option<Tensor>,
    },
}

impl Linear {
    /// A dense layer from a PyTorch-layout weight ([out, in]). A weight that is not being
    /// trained is stored transposed ([in, out], contiguous) once here: gemm computes
    /// `x · Wᵀ` as `(W · xᵀ)ᵀ`, and with W row-major it re-packs the whole weight matrix on
    /// every call — most of a decoding step's time for the few rows sampling feeds it. With
    /// the [in, out] copy the packed operand is already column-major and is read in place.
    /// A `Var` keeps its layout: the optimiser updates it in place, and a copy would go stale.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        if weight.is_variable() {
            return Ok(Linear::Dense {
                weight,
                bias,
                in_out: false,
            });
        }
        Ok(Linear::Dense {
            weight: weight.t()?.contiguous()?,
            bias,
            in_out: true,
        })
    }

    /// A quantized layer: Q4_1 through this crate's kernel, other types through candle's.
    pub fn quantized(weight: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self> {
        if let Some(matrix) = Q4_1Matrix::from_qtensor(&weight)? {
            return Ok(Linear::Q4_1 {
                weight: Arc::new(matrix),
                bias,
            });
        }
        Ok(Linear::Quantized {
            weight: QMatMul::from_arc(weight)?,
            bias,
        })
    }

    /// x · Wᵀ (+ bias) over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (rows, features) = (
            dims[..dims.len() - 1].iter().product::<usize>(),
            dims[dims.len() - 1],
        );
        let x2 = x.reshape((rows, features))?;
        let (y, bias) = match self {
            Linear::Dense {
                weight,
                bias,
                in_out,
            } => {
                let y = if *in_out {
                    x2.matmul(weight)?
                } else {
                    x2.matmul(&weight.t()?)?
                };
                (y, bias)
            }
            Linear::Quantized { weight, bias } => (weight.forward(&x2)?, bias),
            Linear::Q4_1 { weight, bias } => {
                (x2.contiguous()?.apply_op1_no_bwd(weight.as_ref())?, bias)
            }
        };
        let y = match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = y.dim(1)?;
        y.reshape(out_dims)
    }
}
