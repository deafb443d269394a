//! The swap map on the vocabulary for one pair of groups (g, h): classes of single-token word
//! forms, `(g side, h side)`, e.g. (" she", " he") or (" her", {" him", " his"}). Comparing a
//! sentence about g with its twin about h, the twin's probability of an h-form is compared
//! with the sentence's probability of the matching g-form (design.md §4, swap-aware).

use std::collections::HashSet;

use fairlm_bias::lexicon::Axis;
use fairlm_model::Tokenizer;

/// Token classes aligned between two groups; no token is in two classes.
#[derive(Debug, Clone, Default)]
pub struct ClassPairs {
    /// (tokens of group g's class, tokens of group h's counterpart).
    pub pairs: Vec<(Vec<u32>, Vec<u32>)>,
}

impl ClassPairs {
    /// No class aligned.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The same classes seen from h: sides exchanged.
    pub fn reversed(&self) -> ClassPairs {
        ClassPairs {
            pairs: self
                .pairs
                .iter()
                .map(|(a, b)| (b.clone(), a.clone()))
                .collect(),
        }
    }

    /// Every token in a class, in class order (g sides first, then h sides per class).
    pub fn tokens(&self) -> Vec<u32> {
        self.pairs
            .iter()
            .flat_map(|(a, b)| a.iter().chain(b.iter()).copied())
            .collect()
    }
}

fn single_token(tok: &Tokenizer, text: &str) -> Option<u32> {
    match tok.encode(text).ok()?.as_slice() {
        [id] => Some(*id),
        _ => None,
    }
}

fn capitalised(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The class pairs of groups `g` and `h` of `axis`: every aligned term row and name whose two
/// forms are single tokens, in four spellings (with and without a leading space, lower and
/// capitalised), plus the pronoun classes {her, hers} ↔ {him, his} on a pronoun axis.
pub fn class_pairs(axis: &Axis, g: usize, h: usize, tok: &Tokenizer) -> ClassPairs {
    let mut rows: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for row in &axis.terms {
        rows.push((vec![row[g].clone()], vec![row[h].clone()]));
    }
    let n_names = axis.names.iter().map(|n| n.len()).min().unwrap_or(0);
    for i in 0..n_names {
        rows.push((
            vec![axis.names[g][i].clone()],
            vec![axis.names[h][i].clone()],
        ));
    }
    if axis.pronouns && axis.groups.len() == 2 {
        let female = vec!["her".to_string(), "hers".to_string()];
        let male = vec!["him".to_string(), "his".to_string()];
        rows.push(if g == 0 {
            (female, male)
        } else {
            (male, female)
        });
    }
    let mut used = HashSet::new();
    let mut pairs = Vec::new();
    for (gw, hw) in rows {
        for spelling in 0..4 {
            let form = |w: &String| {
                let w = if spelling >= 2 {
                    capitalised(w)
                } else {
                    w.to_lowercase()
                };
                if spelling % 2 == 0 {
                    format!(" {w}")
                } else {
                    w
                }
            };
            let a: Option<Vec<u32>> = gw.iter().map(|w| single_token(tok, &form(w))).collect();
            let b: Option<Vec<u32>> = hw.iter().map(|w| single_token(tok, &form(w))).collect();
            let (Some(mut a), Some(mut b)) = (a, b) else {
                continue;
            };
            a.dedup();
            b.dedup();
            if a.iter().chain(b.iter()).any(|t| used.contains(t)) || a.iter().any(|t| b.contains(t))
            {
                continue;
            }
            used.extend(a.iter().chain(b.iter()).copied());
            pairs.push((a, b));
        }
    }
    ClassPairs { pairs }
}
