//! The corpus tokenised for training (each sentence with its twins, token alignments and the
//! tokens given rather than predicted), the class tables of each group pair, and the
//! micro-batches drawn from them: pairs round-robin over the axes in seeded epoch-wise
//! permutations, neutral and mixed sentences likewise.

use std::collections::BTreeMap;

use fairlm_bias::lexicon::Lexicon;
use fairlm_model::Tokenizer;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::align::{aligned_prefixes, token_ends};
use crate::classes::class_pairs;
use crate::corpus::Corpus;
use crate::error::Result;
use crate::losses::{Batch, ClassTable, PairItem, Sentence};
use crate::settings::TrainConfig;

/// A CDA set tokenised: the sentence and each twin with its alignment.
pub(crate) struct PreparedSet {
    pub(crate) axis: usize,
    pub(crate) group: usize,
    pub(crate) ids: Vec<u32>,
    pub(crate) given: usize,
    pub(crate) twins: Vec<PreparedTwin>,
}

impl PreparedSet {
    /// The training item of this sentence and its twin `twin`, whose loss reads class table
    /// `table`.
    pub(crate) fn pair(&self, twin: usize, table: usize) -> PairItem {
        let t = &self.twins[twin];
        PairItem {
            a: self.ids.clone(),
            b: t.ids.clone(),
            aligned: t.aligned.clone(),
            given_a: self.given,
            given_b: t.given,
            table,
            axis: self.axis,
            group_a: self.group,
            group_b: t.group,
        }
    }
}

pub(crate) struct PreparedTwin {
    pub(crate) group: usize,
    pub(crate) ids: Vec<u32>,
    pub(crate) given: usize,
    /// Prefix lengths (logit positions) aligned between the sentence and this twin.
    pub(crate) aligned: Vec<(usize, usize)>,
}

fn encode(tok: &Tokenizer, text: &str, ctx: &[u32], max_len: usize) -> Result<Vec<u32>> {
    let mut ids = ctx.to_vec();
    ids.extend(tok.encode(text)?);
    ids.truncate(max_len);
    Ok(ids)
}

/// Leading tokens of a sentence that are given rather than predicted: the context and, when
/// the sentence begins with one of the corpus's sampling prompts (the longest that fits), the
/// tokens that lie inside it. `ends` are the sentence's token ends after the context.
fn given_tokens(text: &str, ends: &[usize], prompts: &[String], ctx: usize) -> usize {
    let prompt = prompts
        .iter()
        .filter(|p| text.starts_with(p.as_str()))
        .map(|p| p.len())
        .max()
        .unwrap_or(0);
    ctx + ends.iter().take_while(|&&e| e <= prompt).count()
}

/// Longest sentence (tokens) a training batch holds; longer ones are cut.
const MAX_TOKENS: usize = 64;

pub(crate) struct Prepared {
    pub(crate) sets: Vec<PreparedSet>,
    /// Indices into `sets` per axis that has any.
    pub(crate) by_axis: Vec<Vec<usize>>,
    pub(crate) neutral: Vec<Sentence>,
    pub(crate) mixed: Vec<Sentence>,
    /// (axis, g, h) → class table index.
    pub(crate) table_index: BTreeMap<(usize, usize, usize), usize>,
    pub(crate) tables: Vec<Option<ClassTable>>,
}

/// Tokenises the corpus; `prompts` are the prompts given to the model (empty: all taught).
pub(crate) fn prepare(
    tok: &Tokenizer,
    lexicon: &Lexicon,
    corpus: &Corpus,
    prompts: &[String],
) -> Result<Prepared> {
    let ctx: Vec<u32> = tok.document_start().into_iter().collect();
    let mut sets = Vec::new();
    for s in &corpus.sets {
        let ids = encode(tok, &s.text, &ctx, MAX_TOKENS)?;
        let ends_a = token_ends(&tok.tokens(&ids[ctx.len()..]));
        let given = given_tokens(&s.text, &ends_a, prompts, ctx.len());
        let mut twins = Vec::new();
        for tw in &s.twins {
            let tids = encode(tok, &tw.text, &ctx, MAX_TOKENS)?;
            let ends_b = token_ends(&tok.tokens(&tids[ctx.len()..]));
            let given_twin = given_tokens(&tw.text, &ends_b, prompts, ctx.len());
            // Prefix lengths count the context token.
            let aligned = aligned_prefixes(&ends_a, &ends_b, &tw.spans())
                .into_iter()
                .map(|(a, b)| (a + ctx.len() - 1, b + ctx.len() - 1))
                .filter(|&(a, b)| a < ids.len() && b < tids.len())
                .collect();
            twins.push(PreparedTwin {
                group: tw.group,
                ids: tids,
                given: given_twin,
                aligned,
            });
        }
        if !twins.is_empty() {
            sets.push(PreparedSet {
                axis: s.axis,
                group: s.group,
                ids,
                given,
                twins,
            });
        }
    }
    let sentence = |text: &String| -> Result<Sentence> {
        let ids = encode(tok, text, &ctx, MAX_TOKENS)?;
        let ends = token_ends(&tok.tokens(&ids[ctx.len()..]));
        let given = given_tokens(text, &ends, prompts, ctx.len());
        Ok(Sentence { ids, given })
    };
    let neutral = corpus.neutral.iter().map(sentence).collect::<Result<_>>()?;
    let mixed = corpus.mixed.iter().map(sentence).collect::<Result<_>>()?;
    let mut table_index = BTreeMap::new();
    let mut tables = Vec::new();
    for (a, axis) in lexicon.axes.iter().enumerate() {
        for g in 0..axis.groups.len() {
            for h in 0..axis.groups.len() {
                if g != h {
                    table_index.insert((a, g, h), tables.len());
                    tables.push(ClassTable::new(&class_pairs(axis, g, h, tok))?);
                }
            }
        }
    }
    let mut by_axis: Vec<Vec<usize>> = vec![Vec::new(); lexicon.axes.len()];
    for (i, s) in sets.iter().enumerate() {
        by_axis[s.axis].push(i);
    }
    by_axis.retain(|v| !v.is_empty());
    Ok(Prepared {
        sets,
        by_axis,
        neutral,
        mixed,
        table_index,
        tables,
    })
}

/// Element `flat` of an endless sequence of seeded permutations of 0..n (one per epoch).
fn permuted(n: usize, flat: usize, seed: u64) -> usize {
    let epoch = flat / n;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ ((epoch as u64) << 20)));
    order[flat % n]
}

/// The micro-batch `micro` of step `step`. Pairs go round-robin over the axes, so that every
/// axis gets an equal share of training (axes weigh equally in the bias score), each axis's
/// sets in epoch-wise seeded permutations; the twin is a seeded choice; neutral sentences
/// likewise.
pub(crate) fn draw(prep: &Prepared, cfg: &TrainConfig, step: usize, micro: usize) -> Batch {
    let k = step * cfg.accumulation + micro;
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x7_0000 ^ k as u64);
    let n_axes = prep.by_axis.len();
    let pairs = (0..cfg.pairs_per_batch)
        .map(|i| {
            let slot = k * cfg.pairs_per_batch + i;
            let sets = &prep.by_axis[slot % n_axes];
            let s = &prep.sets
                [sets[permuted(sets.len(), slot / n_axes, cfg.seed ^ (slot % n_axes) as u64)]];
            let twin = rng.random_range(0..s.twins.len());
            let table = prep.table_index[&(s.axis, s.group, s.twins[twin].group)];
            s.pair(twin, table)
        })
        .collect();
    let pick = |n: usize, per: usize, stream: u64| -> Vec<usize> {
        if n == 0 {
            return Vec::new();
        }
        (0..per)
            .map(|i| permuted(n, k * per + i, cfg.seed ^ (stream << 40)))
            .collect()
    };
    let neutral = pick(prep.neutral.len(), cfg.neutral_per_batch, 2)
        .into_iter()
        .map(|i| prep.neutral[i].clone())
        .collect();
    let plain = pick(prep.mixed.len(), usize::from(!prep.mixed.is_empty()), 3)
        .into_iter()
        .map(|i| prep.mixed[i].clone())
        .collect();
    Batch {
        pairs,
        neutral,
        plain,
    }
}
