//! The record of the model a result was computed with, which every results file carries: a
//! bottom-level module, so that the audit and the benchmarks read it without importing each
//! other.

/// The model a result was computed with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelRecord {
    /// The model's file or directory, or the server's URL.
    pub path: String,
    /// The model's sha256; of a served model, its tokenizer's.
    pub sha256: String,
    /// `llama`, `qwen2`, `mistral` or `gpt2` (of a served model, its tokenizer's).
    pub architecture: String,
    /// `f32`, `quantized` or `served`.
    pub numeric_path: String,
    /// A model behind a server: which one, and what the server says of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<ServedRecord>,
    /// The decode-time debiasing it was scored under (`self`: Self-Debias), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debias: Option<String>,
}

/// A served model's identity as its server gave it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServedRecord {
    /// The server's base URL.
    pub url: String,
    /// The model's name on the server.
    pub name: String,
    /// The model's entry in the server's `GET /v1/models`.
    pub description: serde_json::Value,
    /// The tokenizer the prompts were encoded with, and its sha256.
    pub tokenizer: String,
    /// The tokenizer file's sha256.
    pub tokenizer_sha256: String,
}
