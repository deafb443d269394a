//! The kernels of a decoding step, timed alone: `cargo bench -p fairlm-model`. Shapes are
//! SmolLM2-135M's (hidden 576, MLP 1536, 3 key/value heads of 64 for 9 query heads).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use fairlm_model::ops::{attention, Kernels};
use fairlm_model::q4_1::Q4_1Matrix;
use fairlm_model::KvCache;

const HIDDEN: usize = 576;
const MLP: usize = 1536;

fn q4_1_products(c: &mut Criterion) {
    // As `fairlm` does at start-up: without it every candle op reads /proc/cpuinfo.
    fairlm_model::count_threads_once();
    let w = Tensor::randn(0f32, 1.0, (MLP, HIDDEN), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
    let ours = Q4_1Matrix::from_qtensor(&q).unwrap().unwrap();
    let candles = QMatMul::from_qtensor(q).unwrap();
    for rows in [1usize, 16] {
        let x = Tensor::randn(0f32, 1.0, (rows, HIDDEN), &Device::Cpu).unwrap();
        let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        c.bench_function(
            &format!("q4_1 {rows}x{HIDDEN} · {MLP}x{HIDDEN}: fairlm AVX2"),
            |b| b.iter(|| ours.matmul(&xs, true)),
        );
        c.bench_function(
            &format!("q4_1 {rows}x{HIDDEN} · {MLP}x{HIDDEN}: fairlm scalar"),
            |b| b.iter(|| ours.matmul(&xs, false)),
        );
        c.bench_function(
            &format!("q4_1 {rows}x{HIDDEN} · {MLP}x{HIDDEN}: candle"),
            |b| b.iter(|| candles.forward(&x).unwrap()),
        );
        c.bench_function(
            &format!("f32 {rows}x{HIDDEN} · {MLP}x{HIDDEN}: candle gemm"),
            |b| b.iter(|| x.matmul(&w.t().unwrap()).unwrap()),
        );
    }
}

/// One decoding step's cache append and attention at 65 cached positions.
fn decode_attention(c: &mut Criterion) {
    let step = || Tensor::randn(0f32, 1.0, (1, 3, 1, 64), &Device::Cpu).unwrap();
    let q = Tensor::randn(0f32, 1.0, (1, 9, 1, 64), &Device::Cpu).unwrap();
    c.bench_function(
        "decode step at 65 positions: cache append + grouped attention",
        |b| {
            b.iter_batched(
                || {
                    let mut cache = KvCache::new(1);
                    let prompt = Tensor::randn(0f32, 1.0, (1, 3, 64, 64), &Device::Cpu).unwrap();
                    cache.append(0, prompt.clone(), prompt).unwrap();
                    // The first decoding append moves the cache into a buffer with room for
                    // the next 64 steps; the timed one is a step inside that room.
                    cache.append(0, step(), step()).unwrap();
                    cache
                },
                |mut cache| {
                    let (k, v) = cache.append(0, step(), step()).unwrap();
                    attention(&q, &k, &v, None, Kernels::Fused, false).unwrap()
                },
                criterion::BatchSize::SmallInput,
            )
        },
    );
}

criterion_group!(benches, q4_1_products, decode_attention);
criterion_main!(benches);
