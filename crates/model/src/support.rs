//! What loads: the architectures, where each loads from, and the GGUF tensor types. A
//! bottom-level module, so that the loader and the errors that list them read one table.

/// config.json `model_type`s (and GGUF architectures) that load.
pub const ARCHITECTURES: [&str; 4] = ["llama", "qwen2", "mistral", "gpt2"];

/// What loads from where, for `fairlm models --list-architectures`.
pub struct Support {
    /// The architecture's name (config.json `model_type`).
    pub architecture: &'static str,
    /// A Hugging Face directory (config.json `model_type`), on the f32 path.
    pub hf_dir: bool,
    /// GGUF `general.architecture` that loads as this one, if any.
    pub gguf: Option<&'static str>,
    /// What else a user should know (quantizations, limits).
    pub notes: &'static str,
}

/// Every architecture that loads, and from where.
pub const SUPPORT: [Support; 4] = [
    Support {
        architecture: "llama",
        hf_dir: true,
        gguf: Some("llama"),
        notes: "SmolLM2, TinyLlama, Llama 2; attention_bias and mlp_bias; default rotary embedding only (Llama 3.1's rope scaling is refused); GGUF tokenizers: byte-level BPE (pre smollm, gpt2, default, qwen2) or SentencePiece (tokenizer.ggml.model llama)",
    },
    Support {
        architecture: "qwen2",
        hf_dir: true,
        gguf: Some("qwen2"),
        notes: "Qwen2, Qwen2.5: q/k/v biases, tied or untied output, sliding window per layer (Hugging Face directories; llama.cpp computes GGUF without it)",
    },
    Support {
        architecture: "mistral",
        hf_dir: true,
        gguf: Some("llama (as llama.cpp's converter writes Mistral, with its SentencePiece vocabulary)"),
        notes: "sliding-window attention (Hugging Face directories; llama.cpp computes GGUF without it), head_dim",
    },
    Support {
        architecture: "gpt2",
        hf_dir: true,
        gguf: None,
        notes: "GPT-2 and its checkpoints without the transformer. prefix",
    },
];

/// GGUF tensor types that load: candle dequantizes each for the f32 path and multiplies each
/// on the quantized path (Q4_1 through this crate's kernel). Q5_0, Q5_1 and Q8_0 are in the
/// list because llama.cpp's k-quant presets fall back to them for matrices whose rows are not
/// a multiple of 256 wide (the default model's 576).
pub const GGUF_TYPES: [&str; 11] = [
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K",
];
