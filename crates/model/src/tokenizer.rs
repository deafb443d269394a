//! BPE tokenizer built from a GGUF file's metadata (byte-level BPE, or a SentencePiece
//! vocabulary with scores), a `tokenizer.json` (byte-level as GPT-2,
//! SmolLM2 and Qwen2 have it, or SentencePiece-style with byte fallback as Llama 2 and Mistral
//! have it), or GPT-2's `vocab.json` + `merges.txt`. It must give exactly the ids Hugging Face
//! gives; it does not add special tokens, and it refuses text it cannot represent: bytes
//! missing from a byte-level alphabet (tokenizers 0.23 would silently drop them and every
//! score would be of another text) or anything that becomes the unknown token.

use std::collections::HashSet;
use std::path::Path;

use candle_core::quantized::{gguf_file, tokenizer::TokenizerFromGguf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::error::{Error, Result};

/// A model's tokenizer (Hugging Face `tokenizer.json`, GPT-2's vocab/merges, or GGUF's embedded vocabulary) and its special tokens.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Bytes that have no token of their own in the byte-level alphabet.
    unrepresentable: HashSet<u8>,
    /// The model's unknown token, which no scored text may contain.
    unknown: Option<u32>,
    /// Document-start token used as scoring context (`<|endoftext|>` when the vocab has it).
    document_start: Option<u32>,
    eos: Option<u32>,
}

impl Tokenizer {
    /// From the GGUF metadata (`tokenizer.ggml.*`). candle's builder gets the pre-tokenizer
    /// of `smollm` and `gpt2` wrong (it adds a prefix space), so those are set here; any
    /// other than these and `qwen2` is refused rather than tokenized some other way.
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        let special = |key: &str| content.metadata.get(key).and_then(|v| v.to_u32().ok());
        let kind = content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .cloned();
        if kind.as_deref() == Some("llama") {
            let inner = sentencepiece_from_gguf(content, path)?;
            let eos = special("tokenizer.ggml.eos_token_id");
            let bos = special("tokenizer.ggml.bos_token_id");
            return Self::finish(inner, eos, bos, path);
        }
        let mut inner =
            tokenizers::Tokenizer::from_gguf(content).map_err(|e| Error::Tokenizer {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let pre = content
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "gpt2".to_string());
        let byte_level = ByteLevel::new(false, true, true);
        match pre.as_str() {
            "smollm" => {
                let seq = Sequence::new(vec![
                    PreTokenizerWrapper::Digits(Digits::new(true)),
                    PreTokenizerWrapper::ByteLevel(byte_level),
                ]);
                inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(seq)));
            }
            "gpt2" | "gpt-2" | "default" => {
                inner.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(byte_level)));
            }
            // candle's builder has Qwen2's pipeline right (NFC, its split, byte-level).
            "qwen2" => {}
            other => {
                return Err(Error::Tokenizer {
                    path: path.to_path_buf(),
                    reason: format!(
                        "pre-tokenizer `{other}` (tokenizer.ggml.pre) is not supported (supported: smollm, gpt2, default, qwen2)"
                    ),
                })
            }
        }
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let eos = special("tokenizer.ggml.eos_token_id");
        let bos = special("tokenizer.ggml.bos_token_id");
        Self::finish(inner, eos, bos, path)
    }

    /// From a directory holding `tokenizer.json`, or `vocab.json` + `merges.txt` (GPT-2).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let eos = read_special_from_config(dir, "eos_token_id");
        let bos = read_special_from_config(dir, "bos_token_id");
        if json.is_file() {
            let inner = tokenizers::Tokenizer::from_file(&json).map_err(|e| Error::Tokenizer {
                path: json.clone(),
                reason: e.to_string(),
            })?;
            return Self::finish(inner, eos, bos, &json);
        }
        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        if vocab.is_file() && merges.is_file() {
            let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
                .build()
                .map_err(|e| Error::Tokenizer {
                    path: vocab.clone(),
                    reason: e.to_string(),
                })?;
            let mut inner = tokenizers::Tokenizer::new(bpe);
            inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            inner.with_decoder(Some(ByteLevelDecoder::default()));
            if inner.token_to_id(ENDOFTEXT).is_some() {
                inner
                    .add_special_tokens(vec![AddedToken::from(ENDOFTEXT, true)])
                    .map_err(|e| Error::Tokenizer {
                        path: vocab.clone(),
                        reason: e.to_string(),
                    })?;
            }
            return Self::finish(inner, eos, bos, &vocab);
        }
        Err(Error::TokenizerMissing {
            path: dir.to_path_buf(),
        })
    }

    /// From a GGUF file's metadata, a directory (`from_dir`), or a `tokenizer.json` file: the
    /// tokenizer of a model that is not loaded here (a served one).
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if path.file_name().is_some_and(|n| n == "tokenizer.json") {
            return Self::from_dir(path.parent().unwrap_or(Path::new(".")));
        }
        let mut file = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            reason: format!(
                "neither a GGUF file, a tokenizer.json nor a model directory ({})",
                crate::error::candle_message(&e)
            ),
        })?;
        Self::from_gguf(&content, path)
    }

    /// The document-start token used as scoring context is `<|endoftext|>` where the
    /// vocabulary has it (GPT-2, SmolLM2, Qwen2), else the model's BOS (`<s>` of Llama 2 and
    /// Mistral, `<|begin_of_text|>` of Llama 3).
    fn finish(
        inner: tokenizers::Tokenizer,
        eos: Option<u32>,
        bos: Option<u32>,
        path: &Path,
    ) -> Result<Self> {
        if inner.get_vocab_size(true) == 0 {
            return Err(Error::Tokenizer {
                path: path.to_path_buf(),
                reason: "the vocabulary is empty".into(),
            });
        }
        // A byte-level pipeline maps every byte to a character of its alphabet; one with byte
        // fallback (SentencePiece style) has `<0xNN>` tokens and reports misses as unknown.
        let byte_level = serde_json::to_string(&inner)
            .map(|json| json.contains("\"ByteLevel\""))
            .unwrap_or(true);
        let unrepresentable = if byte_level {
            (0u8..=255)
                .filter(|b| {
                    let ch = byte_level_char(*b);
                    inner.token_to_id(&ch.to_string()).is_none()
                })
                .collect()
        } else {
            HashSet::new()
        };
        let unknown = serde_json::to_value(inner.get_model())
            .ok()
            .and_then(|m| {
                m.get("unk_token")
                    .and_then(|u| u.as_str().map(String::from))
            })
            .and_then(|u| inner.token_to_id(&u));
        let document_start = inner
            .token_to_id(ENDOFTEXT)
            .or(bos.filter(|id| (*id as usize) < inner.get_vocab_size(true)));
        let eos = eos.or(document_start);
        Ok(Tokenizer {
            inner,
            unrepresentable,
            unknown,
            document_start,
            eos,
        })
    }

    /// Token ids of `text`, no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(b) = text.bytes().find(|b| self.unrepresentable.contains(b)) {
            return Err(Error::Invalid(format!(
                "the text contains byte 0x{b:02x}, which this vocabulary cannot represent: {text:?}"
            )));
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Invalid(format!("cannot tokenize {text:?}: {e}")))?;
        let ids = enc.get_ids().to_vec();
        if let Some(unk) = self.unknown {
            if let Some(k) = ids.iter().position(|id| *id == unk) {
                let (start, end) = enc.get_offsets()[k];
                return Err(Error::Invalid(format!(
                    "the text contains {:?}, which this vocabulary cannot represent (it becomes the unknown token): {text:?}",
                    text.get(start..end).unwrap_or("?")
                )));
            }
        }
        Ok(ids)
    }

    /// Text of token ids (special tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Invalid(format!("cannot decode {ids:?}: {e}")))
    }

    /// The token strings (byte-level alphabet) of `ids`.
    pub fn tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|id| self.inner.id_to_token(*id).unwrap_or_default())
            .collect()
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Writes the pipeline as a Hugging Face `tokenizer.json`.
    pub fn save_json(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            reason: format!("cannot write: {e}"),
        })
    }

    /// The token a document starts with for scoring (BOS, else end-of-text), if the tokenizer has one.
    pub fn document_start(&self) -> Option<u32> {
        self.document_start
    }

    /// End-of-sequence token, if the tokenizer has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
}

const ENDOFTEXT: &str = "<|endoftext|>";

/// GPT-2's byte-to-unicode map: printable bytes map to themselves, the rest to U+0100 onward.
fn byte_level_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return b as char;
    }
    let offset = (0u8..b).filter(|x| !printable(*x)).count() as u32;
    char::from_u32(256 + offset).unwrap_or('\u{FFFD}')
}

/// A SentencePiece vocabulary from GGUF metadata (`tokenizer.ggml.model` = `llama`: Llama 2,
/// Mistral) as a BPE with byte fallback whose merges rank each pair by the score of the piece
/// it makes (transformers' GGUF converter builds it the same way). Spaces become `▁` and one
/// is prepended when `tokenizer.ggml.add_space_prefix` (default true), as sentencepiece and
/// llama.cpp do even before a leading space (transformers' Metaspace does not: the reference
/// for a GGUF is llama.cpp).
fn sentencepiece_from_gguf(
    content: &gguf_file::Content,
    path: &Path,
) -> Result<tokenizers::Tokenizer> {
    let bad = |reason: String| Error::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let array = |key: &str| {
        content
            .metadata
            .get(key)
            .and_then(|v| v.to_vec().ok())
            .ok_or_else(|| bad(format!("missing metadata `{key}`")))
    };
    let tokens: Vec<String> = array("tokenizer.ggml.tokens")?
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| bad("a token that is not a string".into()))
        })
        .collect::<Result<_>>()?;
    let scores: Vec<f32> = array("tokenizer.ggml.scores")?
        .iter()
        .map(|v| {
            v.to_f32()
                .map_err(|_| bad("a token score that is not a number".into()))
        })
        .collect::<Result<_>>()?;
    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|_| bad("`tokenizer.ggml.token_type` is not an array".into()))?
            .iter()
            .map(|t| {
                t.to_i32()
                    .map_err(|_| bad("a token type that is not an integer".into()))
            })
            .collect::<Result<_>>()?,
        None => vec![1; tokens.len()],
    };
    if scores.len() != tokens.len() || types.len() != tokens.len() {
        return Err(bad(format!(
            "{} tokens but {} scores and {} types",
            tokens.len(),
            scores.len(),
            types.len()
        )));
    }
    let ids: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    // Every split of every piece into two pieces, ranked by the whole piece's score.
    let mut merges: Vec<(usize, usize, usize)> = Vec::new();
    for (whole, piece) in tokens.iter().enumerate() {
        let mut local: Vec<(usize, usize, usize)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = piece.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, whole))
            })
            .collect();
        local.sort();
        merges.extend(local);
    }
    merges.sort_by(|a, b| scores[b.2].total_cmp(&scores[a.2]));
    const CONTROL: i32 = 3;
    const UNKNOWN: i32 = 2;
    let unk = content
        .metadata
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(|v| v.to_u32().ok())
        .map(|id| id as usize)
        .or_else(|| types.iter().position(|t| *t == UNKNOWN))
        .and_then(|id| tokens.get(id).cloned());
    let add_prefix = content
        .metadata
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(true);
    let mut normalizers = Vec::new();
    if add_prefix {
        normalizers.push(serde_json::json!({"type": "Prepend", "prepend": "▁"}));
    }
    normalizers
        .push(serde_json::json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == CONTROL || **t == UNKNOWN)
        .map(|(id, _)| {
            serde_json::json!({"id": id, "content": tokens[id], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::Value::from(i)))
        .collect();
    let merges: Vec<[&str; 2]> = merges
        .iter()
        .map(|(l, r, _)| [tokens[*l].as_str(), tokens[*r].as_str()])
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": usize::from(add_prefix), "stop": 0}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges}
    });
    json.to_string()
        .parse::<tokenizers::Tokenizer>()
        .map_err(|e| bad(format!("cannot build the SentencePiece vocabulary: {e}")))
}

fn read_special_from_config(dir: &Path, key: &str) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get(key).and_then(|v| v.as_u64()).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::byte_level_char;

    #[test]
    fn byte_level_alphabet_matches_gpt2() {
        assert_eq!(byte_level_char(b'A'), 'A');
        assert_eq!(byte_level_char(b' '), '\u{120}');
        assert_eq!(byte_level_char(b'\n'), '\u{10A}');
        assert_eq!(byte_level_char(0), '\u{100}');
        assert_eq!(byte_level_char(0xAD), '\u{143}');
    }
}
