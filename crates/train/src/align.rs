//! Aligns a sentence with its swapped twin token by token: the positions after which both
//! have read the same text (up to the swap), so that their next-token distributions should
//! agree. Works on byte offsets of byte-level BPE tokens (one token character per byte).

use fairlm_bias::swap::SwapSpan;

/// Byte offset at the end of each token of `tokens` (byte-level alphabet strings).
pub fn token_ends(tokens: &[String]) -> Vec<usize> {
    let mut end = 0;
    tokens
        .iter()
        .map(|t| {
            end += t.chars().count();
            end
        })
        .collect()
}

/// Pairs `(ka, kb)` of prefix lengths in tokens such that the first `ka` tokens of the
/// sentence and the first `kb` tokens of its twin cover corresponding text, that text ends at
/// or after the end of the first swapped span, and the sentence goes on after it. `ends_a` and
/// `ends_b` are `token_ends` of the two texts; `spans` map the sentence's bytes to the twin's.
pub fn aligned_prefixes(
    ends_a: &[usize],
    ends_b: &[usize],
    spans: &[SwapSpan],
) -> Vec<(usize, usize)> {
    let Some(first) = spans.first() else {
        return Vec::new();
    };
    let len_a = ends_a.last().copied().unwrap_or(0);
    let mut out = Vec::new();
    for (i, &x) in ends_a.iter().enumerate() {
        if x < first.from.end || x >= len_a {
            continue;
        }
        let Some(y) = map_offset(x, spans) else {
            continue;
        };
        if let Ok(j) = ends_b.binary_search(&y) {
            out.push((i + 1, j + 1));
        }
    }
    out
}

/// The twin's offset of the sentence's byte offset `x`, or None inside a replaced span.
fn map_offset(x: usize, spans: &[SwapSpan]) -> Option<usize> {
    let mut shift: isize = 0;
    for s in spans {
        if x > s.from.start && x < s.from.end {
            return None;
        }
        if s.from.end <= x {
            shift += s.to.len() as isize - s.from.len() as isize;
        }
    }
    Some((x as isize + shift) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(from: std::ops::Range<usize>, to: std::ops::Range<usize>) -> SwapSpan {
        SwapSpan { from, to }
    }

    #[test]
    fn aligns_after_the_swap_and_skips_inside_it() {
        // "The woman said she" / "The man said he", tokens split at word starts.
        let a: Vec<String> = ["The", "Ġwoman", "Ġsaid", "Ġshe", "."]
            .map(String::from)
            .to_vec();
        let b: Vec<String> = ["The", "Ġman", "Ġsaid", "Ġhe", "."]
            .map(String::from)
            .to_vec();
        let spans = [span(4..9, 4..7), span(15..18, 13..15)];
        let got = aligned_prefixes(&token_ends(&a), &token_ends(&b), &spans);
        // After "woman", after "said", after "she"; not after the final ".".
        assert_eq!(got, vec![(2, 2), (3, 3), (4, 4)]);
    }

    #[test]
    fn a_token_that_crosses_a_span_edge_is_not_aligned() {
        let a: Vec<String> = ["The", "Ġwo", "man", "Ġran", "."]
            .map(String::from)
            .to_vec();
        let b: Vec<String> = ["The", "Ġman", "Ġran", "."].map(String::from).to_vec();
        let spans = [span(4..9, 4..7)];
        let got = aligned_prefixes(&token_ends(&a), &token_ends(&b), &spans);
        assert_eq!(got, vec![(3, 2), (4, 3)]);
    }

    #[test]
    fn no_spans_no_alignment() {
        let a: Vec<String> = ["Hi", "."].map(String::from).to_vec();
        assert!(aligned_prefixes(&token_ends(&a), &token_ends(&a), &[]).is_empty());
    }
}
