//! Q4_1 weights times f32 activations, computed as llama.cpp computes them: each 32-element
//! block of an activation row is quantized to Q8_1 (round to nearest even, scale 127 / max),
//! and the dot product of a Q4_1 block with a Q8_1 block is d_w·d_x·Σ q_w q_x + m_w·s_x in
//! integers. candle 0.11 has this product only in scalar Rust on x86 (its AVX2 kernels cover
//! Q4_0, Q8_0 and the k-quants), which made the quantized path 18× slower than the f32 one at scoring;
//! here it runs on AVX2 when the CPU has it, with the scalar form as the fallback and as the
//! reference the AVX2 form is tested against.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use half::f16;

const BLOCK: usize = 32;
/// Bytes of one GGUF Q4_1 block: f16 scale, f16 minimum, 16 bytes of nibbles.
const Q4_1_BYTES: usize = 20;
/// Output features per task of the thread pool: enough work (≥ 64 × 576 multiply-adds) to amortise the
/// scheduling, and enough tasks (576 / 64 = 9 for the smallest matrix) to balance two threads.
const ROWS_PER_TASK: usize = 64;
/// Below this many block products (~4 cycles each) a call runs on the calling thread: waking
/// the pool costs more than the work (the key and value maps of a decoding step).
const PARALLEL_BLOCKS: usize = 8192;

/// A [rows, cols] Q4_1 matrix with its scales widened to f32 once, at load.
pub struct Q4_1Matrix {
    rows: usize,
    cols: usize,
    /// (d, m) per block, row-major.
    scales: Vec<[f32; 2]>,
    /// Element j < 16 of a block in the low nibble of byte j, element 16 + j in its high one.
    nibbles: Vec<[u8; 16]>,
}

/// One Q8_1 block of an activation row; d and s hold the f16-rounded values llama.cpp stores.
struct Q8_1Block {
    d: f32,
    s: f32,
    qs: [i8; BLOCK],
}

impl Q4_1Matrix {
    /// The matrix of a Q4_1 tensor of shape [rows, cols]; None for any other type or shape.
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Self>> {
        let &[rows, cols] = q.shape().dims() else {
            return Ok(None);
        };
        if q.dtype() != GgmlDType::Q4_1 || !cols.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        let data = q.data()?;
        let n_blocks = rows * cols / BLOCK;
        if data.len() != n_blocks * Q4_1_BYTES {
            candle_core::bail!(
                "Q4_1 tensor holds {} bytes, expected {}",
                data.len(),
                n_blocks * Q4_1_BYTES
            );
        }
        let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
        let mut scales = Vec::with_capacity(n_blocks);
        let mut nibbles = Vec::with_capacity(n_blocks);
        for block in data.chunks_exact(Q4_1_BYTES) {
            scales.push([half(&block[0..2]), half(&block[2..4])]);
            // A chunk of Q4_1_BYTES (20) minus the 4 scale bytes is 16: the conversion cannot
            // fail.
            #[allow(clippy::expect_used)]
            nibbles.push(block[4..].try_into().expect("16 bytes of nibbles"));
        }
        Ok(Some(Q4_1Matrix {
            rows,
            cols,
            scales,
            nibbles,
        }))
    }

    /// y[i, r] = Σ_c x[i, c] W[r, c] for `x` holding whole rows of `cols` values; `y` is
    /// [x rows, self.rows].
    pub fn matmul(&self, x: &[f32], use_simd: bool) -> Vec<f32> {
        let m = x.len() / self.cols;
        if m == 0 {
            return Vec::new();
        }
        let per_row = self.cols / BLOCK;
        let kernels = Kernels::new(use_simd);
        let activations: Vec<Q8_1Block> = x.chunks_exact(BLOCK).map(kernels.quantize).collect();
        // Weight rows outermost: a task's 64 rows (27 KB) stay in cache across the x rows;
        // the result comes out [weight rows, x rows] and is transposed when x has several rows.
        let task = |(task, out): (usize, &mut [f32])| {
            let first = task * ROWS_PER_TASK;
            let n_rows = out.len() / m;
            let weights = |r: usize| {
                let w = (first + r) * per_row..(first + r + 1) * per_row;
                (&self.scales[w.clone()], &self.nibbles[w])
            };
            for i in 0..m {
                let a = &activations[i * per_row..(i + 1) * per_row];
                let mut r = 0;
                while r + 4 <= n_rows {
                    let y = (kernels.dot4)(
                        [weights(r), weights(r + 1), weights(r + 2), weights(r + 3)],
                        a,
                    );
                    for (j, y) in y.into_iter().enumerate() {
                        out[(r + j) * m + i] = y;
                    }
                    r += 4;
                }
                for r in r..n_rows {
                    out[r * m + i] = (kernels.dot)(weights(r), a);
                }
            }
        };
        let mut transposed = vec![0f32; self.rows * m];
        let tasks = self.rows.div_ceil(ROWS_PER_TASK);
        if self.rows * per_row * m < PARALLEL_BLOCKS {
            transposed
                .chunks_mut(ROWS_PER_TASK * m)
                .enumerate()
                .for_each(task);
        } else {
            // candle's pool, which the matmuls around this one use too: the calling thread
            // works alongside its workers instead of sleeping until rayon's wake it.
            let out = SharedOut(transposed.as_mut_ptr());
            let len = transposed.len();
            candle_core::utils::barrier_pool().execute_chunked(tasks, |range| {
                for t in range {
                    let start = t * ROWS_PER_TASK * m;
                    let end = len.min(start + ROWS_PER_TASK * m);
                    // SAFETY: each task index is handed out once, and tasks own disjoint
                    // ranges of the buffer, which outlives the call.
                    let chunk =
                        unsafe { std::slice::from_raw_parts_mut(out.at(start), end - start) };
                    task((t, chunk));
                }
            });
        }
        if m == 1 {
            return transposed;
        }
        let mut y = vec![0f32; m * self.rows];
        for (r, col) in transposed.chunks_exact(m).enumerate() {
            for (i, &v) in col.iter().enumerate() {
                y[i * self.rows + r] = v;
            }
        }
        y
    }
}

impl CustomOp1 for Q4_1Matrix {
    fn name(&self) -> &'static str {
        "q4_1-matmul"
    }

    /// [m, cols] → [m, rows].
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (Some((start, end)), CpuStorage::F32(v)) = (l.contiguous_offsets(), s) else {
            candle_core::bail!("q4_1-matmul: needs contiguous f32 input");
        };
        let &[m, cols] = l.dims() else {
            candle_core::bail!("q4_1-matmul: needs a matrix, got {:?}", l.dims());
        };
        if cols != self.cols {
            candle_core::bail!(
                "q4_1-matmul: input has {cols} columns, the weight {}",
                self.cols
            );
        }
        let y = self.matmul(&v[start..end], simd_available());
        Ok((CpuStorage::F32(y), Shape::from((m, self.rows))))
    }
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The output buffer, written by the pool's threads at disjoint ranges.
struct SharedOut(*mut f32);

// SAFETY: the threads write disjoint ranges (see `matmul`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(&self, offset: usize) -> *mut f32 {
        // SAFETY: callers stay inside the buffer.
        unsafe { self.0.add(offset) }
    }
}

type Rows<'a> = (&'a [[f32; 2]], &'a [[u8; 16]]);

/// The kernels for this CPU: AVX2 or the scalar reference.
#[derive(Clone, Copy)]
struct Kernels {
    quantize: fn(&[f32]) -> Q8_1Block,
    dot: fn(Rows, &[Q8_1Block]) -> f32,
    /// Four weight rows against one activation row; each result has the bits `dot` gives.
    dot4: fn([Rows; 4], &[Q8_1Block]) -> [f32; 4],
}

impl Kernels {
    fn new(use_simd: bool) -> Self {
        #[cfg(target_arch = "x86_64")]
        if use_simd && simd_available() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return Kernels {
                quantize: |x| unsafe { avx2::quantize(x) },
                dot: |w, a| unsafe { avx2::dot(w, a) },
                dot4: |w, a| unsafe { avx2::dot4(w, a) },
            };
        }
        let _ = use_simd;
        Kernels {
            quantize: quantize_q8_1,
            dot: dot_scalar,
            dot4: |w, a| w.map(|w| dot_scalar(w, a)),
        }
    }
}

/// llama.cpp's `quantize_row_q8_1` (its AVX2 form: scale 127 / max, ties to even).
fn quantize_q8_1(x: &[f32]) -> Q8_1Block {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; BLOCK];
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round_ties_even() as i8;
        sum += *q as i32;
    }
    Q8_1Block {
        d: f16::from_f32(d).to_f32(),
        s: f16::from_f32(d * sum as f32).to_f32(),
        qs,
    }
}

fn dot_scalar((scales, nibbles): Rows, x: &[Q8_1Block]) -> f32 {
    let mut sum = 0f32;
    for ((&[d, m], q), a) in scales.iter().zip(nibbles).zip(x) {
        let mut acc = 0i32;
        for ((&q, &low), &high) in q.iter().zip(&a.qs[..16]).zip(&a.qs[16..]) {
            acc += (q & 0xF) as i32 * low as i32 + (q >> 4) as i32 * high as i32;
        }
        sum += d * a.d * acc as f32 + m * a.s;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Q8_1Block, Rows};
    use half::f16;
    use std::arch::x86_64::*;

    /// llama.cpp's `ggml_vec_dot_q4_1_q8_1` for AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot((scales, nibbles): Rows, x: &[Q8_1Block]) -> f32 {
        let low_mask = _mm256_set1_epi8(0xF);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        let mut minimums = 0f32;
        for ((&[d, m], q), a) in scales.iter().zip(nibbles).zip(x) {
            minimums += m * a.s;
            // SAFETY: `q` is 16 bytes and `a.qs` 32, the widths of the loads.
            let (packed, ya) = unsafe {
                (
                    _mm_loadu_si128(q.as_ptr() as *const __m128i),
                    _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i),
                )
            };
            let both = _mm256_insertf128_si256::<1>(
                _mm256_castsi128_si256(packed),
                _mm_srli_epi16::<4>(packed),
            );
            let xq = _mm256_and_si256(low_mask, both);
            let pairs = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(xq, ya));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(pairs), acc);
        }
        hsum(acc) + minimums
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum(acc: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_extractf128_ps::<1>(acc), _mm256_castps256_ps128(acc));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)))
    }

    /// `dot` for four weight rows at once: the activation block is loaded once and the four
    /// accumulation chains run side by side; each row's operations and their order are
    /// those of `dot`, so the results are bit-identical to it.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4(w: [Rows; 4], x: &[Q8_1Block]) -> [f32; 4] {
        let low_mask = _mm256_set1_epi8(0xF);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut minimums = [0f32; 4];
        for (b, a) in x.iter().enumerate() {
            // SAFETY: `a.qs` is 32 bytes, each row's nibbles 16: the widths of the loads.
            let ya = unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) };
            for r in 0..4 {
                let [d, m] = w[r].0[b];
                minimums[r] += m * a.s;
                let packed = unsafe { _mm_loadu_si128(w[r].1[b].as_ptr() as *const __m128i) };
                let both = _mm256_insertf128_si256::<1>(
                    _mm256_castsi128_si256(packed),
                    _mm_srli_epi16::<4>(packed),
                );
                let xq = _mm256_and_si256(low_mask, both);
                let pairs = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(xq, ya));
                acc[r] =
                    _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(pairs), acc[r]);
            }
        }
        [0, 1, 2, 3].map(|r| hsum(acc[r]) + minimums[r])
    }

    /// `quantize_q8_1` with AVX2, as llama.cpp's `quantize_row_q8_1`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize(x: &[f32]) -> Q8_1Block {
        assert_eq!(x.len(), 32);
        // SAFETY: x holds 32 floats, four loads of eight.
        let v = [0, 8, 16, 24].map(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) });
        let sign = _mm256_set1_ps(-0.0);
        let abs = v.map(|v| _mm256_andnot_ps(sign, v));
        let max8 = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
        let max4 = _mm_max_ps(
            _mm256_extractf128_ps::<1>(max8),
            _mm256_castps256_ps128(max8),
        );
        let max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
        let amax = _mm_cvtss_f32(_mm_max_ss(max4, _mm_movehdup_ps(max4)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let q = v.map(|v| {
            _mm256_cvtps_epi32(_mm256_round_ps::<
                { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
            >(_mm256_mul_ps(v, id)))
        });
        let mut ints = [0i32; 32];
        for (i, q) in q.iter().enumerate() {
            // SAFETY: `ints` holds 32 i32, four stores of eight.
            unsafe { _mm256_storeu_si256(ints.as_mut_ptr().add(8 * i) as *mut __m256i, *q) };
        }
        let mut qs = [0i8; 32];
        let mut sum = 0i32;
        for (q, &i) in qs.iter_mut().zip(&ints) {
            *q = i as i8;
            sum += i;
        }
        Q8_1Block {
            d: f16::from_f32(d).to_f32(),
            s: f16::from_f32(d * sum as f32).to_f32(),
            qs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// The scalar and AVX2 kernels agree with each other and with candle's own Q4_1 matmul
    /// (which quantizes the activations to Q8_1 too, rounding ties away from zero).
    #[test]
    fn matches_candles_q4_1_matmul() -> Result<()> {
        let (m, k, n) = (3, 96, 138);
        let w = Tensor::from_vec(random(n * k, 1), (n, k), &Device::Cpu)?;
        let q = QTensor::quantize(&w, GgmlDType::Q4_1)?;
        let x = random(m * k, 2);
        let ours = Q4_1Matrix::from_qtensor(&q)?.expect("a Q4_1 matrix");
        let (scalar, simd) = (ours.matmul(&x, false), ours.matmul(&x, true));
        let x_copy = x.clone();
        let xt = Tensor::from_vec(x, (m, k), &Device::Cpu)?;
        let reference: Vec<f32> = QMatMul::from_qtensor(q)?
            .forward(&xt)?
            .flatten_all()?
            .to_vec1()?;
        let via_op: Vec<f32> = xt.apply_op1_no_bwd(&ours)?.flatten_all()?.to_vec1()?;
        for i in 0..m * n {
            assert!(
                (scalar[i] - simd[i]).abs() <= 1e-4 * (1.0 + scalar[i].abs()),
                "{i}"
            );
            assert!(
                (scalar[i] - reference[i]).abs() <= 2e-2 * (1.0 + scalar[i].abs()),
                "{i}"
            );
            assert_eq!(via_op[i], simd[i]);
        }
        // Rows computed four at a time have the bits of rows computed alone.
        let kernels = Kernels::new(true);
        let per_row = k / BLOCK;
        let acts: Vec<Q8_1Block> = x_copy.chunks_exact(BLOCK).map(kernels.quantize).collect();
        for i in 0..m {
            for r in 0..n {
                let w = r * per_row..(r + 1) * per_row;
                let alone = (kernels.dot)(
                    (&ours.scales[w.clone()], &ours.nibbles[w]),
                    &acts[i * per_row..(i + 1) * per_row],
                );
                assert_eq!(alone.to_bits(), simd[i * n + r].to_bits(), "row {r}");
            }
        }
        // The AVX2 quantization is the scalar one.
        for block in x_copy.chunks_exact(BLOCK) {
            let (a, b) = (quantize_q8_1(block), (kernels.quantize)(block));
            assert_eq!((a.d, a.s, a.qs), (b.d, b.s, b.qs));
        }
        Ok(())
    }

    #[test]
    fn rejects_other_types() -> Result<()> {
        let w = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu)?;
        let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
        assert!(Q4_1Matrix::from_qtensor(&q)?.is_none());
        Ok(())
    }

    #[test]
    fn an_empty_input_gives_an_empty_output() -> Result<()> {
        let w = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu)?;
        let q = QTensor::quantize(&w, GgmlDType::Q4_1)?;
        let ours = Q4_1Matrix::from_qtensor(&q)?.expect("a Q4_1 matrix");
        assert!(ours.matmul(&[], true).is_empty());
        Ok(())
    }
}
