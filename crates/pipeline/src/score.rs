//! Log-probabilities of texts under a model (`fairlm score`, `fairlm.score`).

use std::sync::Arc;

use fairlm_model::score::{ScoreItem, TextScore};
use fairlm_model::NumericPath;

use crate::error::{Error, Result};
use crate::model::{ModelSpec, ScoringModel, ServedSpec};
use crate::Observer;

/// Everything that decides the scores of texts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreConfig {
    /// `smollm2`, a GGUF file, a Hugging Face directory or hub id, or
    /// `http(s)://HOST:PORT/v1`.
    pub model: String,
    /// `f32` or `quantized`.
    pub dtype: NumericPath,
    /// Fetch a hub id that the Hugging Face cache lacks (network).
    pub allow_download: bool,
    /// How to reach a served model.
    pub served: ServedSpec,
    /// The token before each text: `auto` (the model's `<|endoftext|>`), `none`, or an id.
    pub context_token: String,
    /// Keep each scored token's id and log-probability.
    pub per_token: bool,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// `none`, or `self` (Self-Debias, Schick et al. 2021).
    #[serde(default = "no_debias")]
    pub debias: String,
}

fn no_debias() -> String {
    "none".into()
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            model: ModelSpec::default().model,
            dtype: ModelSpec::default().dtype,
            allow_download: false,
            served: ServedSpec::default(),
            context_token: "auto".into(),
            per_token: false,
            batch_size: 16,
            debias: no_debias(),
        }
    }
}

/// One text's score: the sum and mean of its tokens' log-probabilities (natural log).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredText {
    /// The text as given.
    pub text: String,
    /// Sum of its tokens' log-probabilities.
    pub logprob_sum: f64,
    /// Their mean.
    pub logprob_mean: f64,
    /// Tokens scored.
    pub n_tokens: usize,
    /// Each scored token's id (with `per_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<Vec<u32>>,
    /// Each scored token's log-probability (with `per_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_logprobs: Option<Vec<f64>>,
}

/// The token ids `spec` puts before each text.
fn context_ids(tokenizer: &fairlm_model::Tokenizer, spec: &str) -> Result<Vec<u32>> {
    match spec {
        "auto" => Ok(tokenizer.document_start().into_iter().collect()),
        "none" => Ok(Vec::new()),
        id => {
            let id: u32 = id.parse().map_err(|_| {
                Error::Config(format!(
                    "--context-token: `{id}` is not auto, none or an id"
                ))
            })?;
            let vocab = tokenizer.vocab_size();
            if id as usize >= vocab {
                return Err(Error::Config(format!(
                    "--context-token: {id} is not a token id of this model (its vocabulary has {vocab})"
                )));
            }
            Ok(vec![id])
        }
    }
}

/// Scores `texts` (each after the context token), in their order.
pub fn score(
    texts: &[String],
    cfg: &ScoreConfig,
    observer: Arc<dyn Observer>,
) -> Result<Vec<ScoredText>> {
    if texts.is_empty() {
        return Err(Error::Config("no text given to score".into()));
    }
    if cfg.batch_size == 0 {
        return Err(Error::Config("the batch size must be at least 1".into()));
    }
    let spec = ModelSpec {
        model: cfg.model.clone(),
        dtype: cfg.dtype,
        allow_download: cfg.allow_download,
    };
    let scoring = ScoringModel::open(&spec, &cfg.served, None, observer)?;
    let ctx = context_ids(scoring.tokenizer(), &cfg.context_token)?;
    let mut items = Vec::with_capacity(texts.len());
    let mut ids_all = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let ids = scoring.tokenizer().encode(t)?;
        if ids.is_empty() || (ctx.is_empty() && ids.len() < 2) {
            return Err(Error::Config(format!(
                "text {} ({t:?}) has no token to score",
                i + 1
            )));
        }
        items.push(if ctx.is_empty() {
            ScoreItem {
                tokens: ids.clone(),
                first_scored: 1,
            }
        } else {
            ScoreItem::after_context(&ctx, &ids)
        });
        ids_all.push(ids);
    }
    let scores =
        scoring
            .scorer_debiased(&cfg.debias)?
            .score(&items, cfg.batch_size, &mut |_| {})?;
    Ok(texts
        .iter()
        .zip(ids_all)
        .zip(scores)
        .map(|((text, ids), lps)| {
            let s = TextScore::from_logprobs(lps);
            let scored_ids = ids[ids.len() - s.n_tokens..].to_vec();
            ScoredText {
                text: text.clone(),
                logprob_sum: s.logprob_sum,
                logprob_mean: s.logprob_mean,
                n_tokens: s.n_tokens,
                token_ids: cfg.per_token.then_some(scored_ids),
                token_logprobs: cfg.per_token.then_some(s.token_logprobs),
            }
        })
        .collect())
}
