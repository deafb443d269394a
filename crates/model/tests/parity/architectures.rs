//! Parity of the architectures and GGUF types beyond the default model, from fixtures
//! written by `scripts/reference/make_arch_fixtures.py`: tiny random Qwen2 (biases, tied
//! embeddings) and Mistral (sliding window, head_dim ≠ hidden/heads) against transformers,
//! the Qwen2 GGUF against the same, and tiny k-quant GGUFs made by llama.cpp's quantizer
//! against llama.cpp.

use candle_core::{Device, Tensor};
use fairlm_model::score::{score_items, ScoreItem};
use fairlm_model::{CausalLm, Checkpoint, NumericPath};
use serde_json::Value;

use super::{every_weight_gets_a_gradient, fixture, floats, ids_of, max_abs_diff, root};

fn arch(key: &str) -> Value {
    fixture("arch.json")[key].clone()
}

fn open(name: &str, path: NumericPath) -> Checkpoint {
    Checkpoint::open(&root().join("fixtures").join(name), path)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// fairlm's per-token log-probs of the entry's sentences (ids as the fixture has them).
fn score(model: &dyn CausalLm, entry: &Value) -> Vec<Vec<f64>> {
    let ctx = entry["context_token"].as_u64().unwrap() as u32;
    let items: Vec<ScoreItem> = entry["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ids| ScoreItem::after_context(&[ctx], &ids_of(ids)))
        .collect();
    score_items(model, &items, 16, |_| {}).unwrap()
}

/// Largest per-token difference between fairlm and the fixture column `key`.
fn worst_difference(ours: &[Vec<f64>], entry: &Value, key: &str) -> f64 {
    let mut worst = 0.0f64;
    for (lps, reference) in ours.iter().zip(entry[key].as_array().unwrap()) {
        let reference = floats(reference);
        assert_eq!(lps.len(), reference.len());
        for (a, b) in lps.iter().zip(reference) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

fn tokenizer_matches(ck: &Checkpoint, entry: &Value, what: &str) {
    let cases = entry["tokenizer"].as_array().unwrap();
    assert!(cases.len() >= 300);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(
            ck.tokenizer.encode(text).unwrap(),
            ids_of(&c["ids"]),
            "{what}: {text:?}"
        );
    }
}

/// A tiny Hugging Face directory: its architecture, its tokenizer.json's ids, and per-token
/// log-probs within 1e-4 of transformers.
fn check_hf_dir(dir: &str, key: &str) {
    let entry = arch(key);
    let ck = open(dir, NumericPath::F32);
    assert_eq!(ck.build().unwrap().info().architecture, key);
    tokenizer_matches(&ck, &entry, &format!("{dir} tokenizer.json"));
    let worst = worst_difference(
        &score(ck.build().unwrap().as_ref(), &entry),
        &entry,
        "hf_token_logprobs",
    );
    assert!(worst <= 1e-4, "{key}: max per-token difference {worst}");
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check_hf_dir("tiny-qwen2", "qwen2");
}

/// A tiny GGUF on both numeric paths: the f32 path against transformers (`hf_key`) and
/// llama.cpp with an f32 KV cache, the quantized path (f16 keys and values, as llama.cpp keeps
/// them by default) against llama.cpp as shipped; the tokenizer built from the metadata gives
/// the ids of `ids_key` on the tokenizer strings.
fn check_gguf(file: &str, key: &str, hf_key: &str, ids_key: &str) {
    let entry = arch(key);
    let f32_path = open(file, NumericPath::F32);
    for c in entry["tokenizer"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(
            f32_path.tokenizer.encode(text).unwrap(),
            ids_of(&c[ids_key]),
            "{file} metadata tokenizer: {text:?}"
        );
    }
    let ours = score(f32_path.build().unwrap().as_ref(), &entry);
    let worst = worst_difference(&ours, &entry, hf_key);
    assert!(worst <= 1e-4, "{file} f32 path vs transformers: {worst}");
    let worst = worst_difference(&ours, &entry, "llama_gguf_f32_kv_token_logprobs");
    assert!(
        worst <= 1e-3,
        "{file} f32 path vs llama.cpp (f32 KV): {worst}"
    );
    let quantized = open(file, NumericPath::Quantized);
    let ours = score(quantized.build().unwrap().as_ref(), &entry);
    let to_llama = worst_difference(&ours, &entry, "llama_gguf_token_logprobs");
    let to_hf = worst_difference(&ours, &entry, hf_key);
    assert!(
        to_llama <= 1e-3 && to_llama < to_hf,
        "{file} quantized path vs llama.cpp: {to_llama} (vs transformers {to_hf})"
    );
}

/// Architecture qwen2: Hugging Face row order, biases, tied output, Qwen2's pre-tokenizer.
#[test]
fn tiny_qwen2_gguf_matches_transformers_and_llama_cpp() {
    check_gguf("tiny-qwen2.gguf", "qwen2", "hf_token_logprobs", "ids");
}

/// Mistral as llama.cpp's converter writes it: architecture llama (permuted Q/K, no sliding
/// window, so transformers with the window off is the reference), head_dim from the metadata,
/// and a SentencePiece vocabulary with scores, tokenized as llama.cpp tokenizes it.
#[test]
fn tiny_mistral_gguf_matches_transformers_and_llama_cpp() {
    check_gguf(
        "tiny-mistral.gguf",
        "mistral",
        "hf_no_window_token_logprobs",
        "llama_ids",
    );
}

#[test]
fn tiny_mistral_matches_transformers() {
    check_hf_dir("tiny-mistral", "mistral");
}

/// Decoding one token at a time past the sliding window sees what a full forward sees.
#[test]
fn mistral_cached_decoding_respects_the_window() {
    let ck = open("tiny-mistral", NumericPath::F32);
    let model = ck.build().unwrap();
    let ids = ck
        .tokenizer
        .encode("Rain fell on the orchard all afternoon, and the river rose.")
        .unwrap();
    assert!(ids.len() > 8);
    let row = |ids: &[u32]| {
        Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
    };
    let full = model
        .forward(&row(&ids), &mut model.new_cache())
        .unwrap()
        .logits;
    let mut cache = model.new_cache();
    model.forward(&row(&ids[..2]), &mut cache).unwrap();
    for (i, &id) in ids.iter().enumerate().skip(2) {
        let step = model.forward(&row(&[id]), &mut cache).unwrap().logits;
        let diff = max_abs_diff(&step, &full.narrow(1, i, 1).unwrap());
        assert!(diff < 1e-4, "position {i}: {diff}");
    }
}

#[test]
fn qwen2_every_weight_gets_a_gradient() {
    every_weight_gets_a_gradient("tiny-qwen2");
}

#[test]
fn mistral_every_weight_gets_a_gradient() {
    every_weight_gets_a_gradient("tiny-mistral");
}

/// Each family written back as a Hugging Face directory keeps its layout and scores the same.
#[test]
fn qwen2_and_mistral_save_in_their_own_layout() {
    for (name, model_type) in [("tiny-qwen2", "qwen2"), ("tiny-mistral", "mistral")] {
        let ck = open(name, NumericPath::F32);
        let dir = std::env::temp_dir().join(format!("fairlm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        fairlm_model::save::save_hf(&ck, None, &dir).unwrap();
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["model_type"], model_type);
        let entry = arch(model_type);
        let again = Checkpoint::open(&dir, NumericPath::F32).unwrap();
        let (a, b) = (
            score(ck.build().unwrap().as_ref(), &entry),
            score(again.build().unwrap().as_ref(), &entry),
        );
        assert_eq!(a, b, "{name} saved and reloaded");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// k-quant GGUFs made by llama.cpp's own quantizer (Q4_K_M mixes Q4_K and Q6_K; Q5_K_M Q5_K
/// and Q6_K): the quantized path is within llama.cpp's self-difference (its f32 KV cache
/// against its default f16 one) of llama.cpp, and closer to it than llama.cpp is to the
/// unquantized model in transformers; the f32 path dequantizes the same blocks.
#[test]
fn kquant_files_match_llama_cpp() {
    let entry = arch("kquant");
    let files = entry["files"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    let unquantized: Vec<Vec<f64>> = entry["hf_token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    for (name, file) in files {
        let ck = open(file["file"].as_str().unwrap(), NumericPath::Quantized);
        let ours = score(ck.build().unwrap().as_ref(), &entry);
        let column = |key: &str| -> Vec<Vec<f64>> {
            file[key].as_array().unwrap().iter().map(floats).collect()
        };
        let llama = column("llama_token_logprobs");
        let distance = |a: &[Vec<f64>], b: &[Vec<f64>]| {
            let (mut total, mut n) = (0.0, 0usize);
            for (x, y) in a.iter().zip(b) {
                for (p, q) in x.iter().zip(y) {
                    total += (p - q).abs();
                    n += 1;
                }
            }
            total / n as f64
        };
        let ours_vs_llama = distance(&ours, &llama);
        let self_difference = distance(&llama, &column("llama_f32_kv_token_logprobs"));
        let llama_vs_hf = distance(&llama, &unquantized);
        eprintln!(
            "{name}: fairlm vs llama.cpp {ours_vs_llama:.5} nats/token; llama.cpp vs itself \
             (f32 KV) {self_difference:.5}; llama.cpp vs transformers (unquantized) {llama_vs_hf:.5}"
        );
        assert!(
            ours_vs_llama <= 1.1 * self_difference.max(1e-4) && ours_vs_llama < llama_vs_hf,
            "{name}: fairlm vs llama.cpp {ours_vs_llama}"
        );
        // The f32 path computes on the dequantized blocks: close to the quantized path.
        let f32_ck = open(file["file"].as_str().unwrap(), NumericPath::F32);
        let dequantized = score(f32_ck.build().unwrap().as_ref(), &entry);
        assert!(
            distance(&dequantized, &llama) < llama_vs_hf,
            "{name}: the f32 path is farther from llama.cpp than the unquantized model"
        );
    }
}
