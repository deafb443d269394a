//! Perplexity of a long text, from any backend: the sliding window (Hugging Face's recipe) and
//! the window every perplexity fairlm reports uses unless told otherwise.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::score::ScoreItem;

/// Log-probabilities of every token after the first of a long sequence, with a sliding
/// window of `window` positions advanced by `stride` (Hugging Face's perplexity recipe):
/// each token is predicted once, with up to `window - stride` tokens of extra context.
pub fn sliding_logprobs(
    model: &dyn Backend,
    ids: &[u32],
    window: usize,
    stride: usize,
    mut on_window: impl FnMut(usize),
) -> Result<Vec<f64>> {
    if ids.len() < 2 {
        return Err(Error::Invalid(
            "perplexity needs at least two tokens".into(),
        ));
    }
    if window < 2 || window > model.context_length() {
        return Err(Error::Invalid(format!(
            "window {window} must be in 2..={} (the model's context)",
            model.context_length()
        )));
    }
    if stride == 0 || stride > window {
        return Err(Error::Invalid(format!(
            "stride {stride} must be in 1..={window}"
        )));
    }
    let mut items = Vec::new();
    let mut predicted_to = 1; // tokens [0, predicted_to) are done
    let mut begin = 0;
    while predicted_to < ids.len() {
        let end = (begin + window).min(ids.len());
        items.push(ScoreItem {
            tokens: ids[begin..end].to_vec(),
            first_scored: predicted_to - begin,
        });
        predicted_to = end;
        begin += stride;
        if begin >= predicted_to {
            begin = predicted_to - 1;
        }
    }
    Ok(model
        .score(&items, 1, &mut on_window)?
        .into_iter()
        .flatten()
        .collect())
}

/// The sliding window of every perplexity fairlm reports unless told otherwise: the model's
/// context up to 1,024 tokens, advanced by half of it (window, stride).
pub fn perplexity_window(context_length: usize) -> (usize, usize) {
    let window = context_length.min(1024);
    (window, default_stride(window))
}

/// The stride of a window given without one: half of it.
pub fn default_stride(window: usize) -> usize {
    (window / 2).max(1)
}

/// Perplexity of `ids` under `model`: exp of the mean negative log-probability per predicted
/// token, [`sliding_logprobs`] over `window` (default: [`perplexity_window`]); with the
/// log-probabilities it averaged.
pub fn perplexity(
    model: &dyn Backend,
    ids: &[u32],
    window: Option<(usize, usize)>,
) -> Result<(f64, Vec<f64>)> {
    let (window, stride) = window.unwrap_or(perplexity_window(model.context_length()));
    let lps = sliding_logprobs(model, ids, window, stride, |_| {})?;
    let ppl = (-lps.iter().sum::<f64>() / lps.len().max(1) as f64).exp();
    Ok((ppl, lps))
}
