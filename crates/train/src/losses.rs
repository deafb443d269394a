//! The mitigation's losses over one batch (design.md §4): LM cross-entropy on every
//! sentence; swap-aware counterfactual consistency between a sentence and its twin at aligned
//! positions; the equalising loss over aligned group-word classes; the attribute-gap penalty;
//! the KL anchor to the frozen original on neutral text and, on counterfactual pairs, to the
//! original's counterfactual average; the sequence-level counterfactual log-ratio; the
//! adversary's loss. The one forward pass they all read is `forward`'s.

use candle_core::{Device, Tensor, D};
use fairlm_model::fused::log_softmax;
use fairlm_model::ops::{softmax_last_dim, Kernels};
use fairlm_model::{CausalLm, KvCache};

use crate::adversary::Adversary;
use crate::classes::ClassPairs;
use crate::error::Result;
pub use crate::forward::{bucketed_hidden, Batch, PairItem, Sentence};
use crate::forward::{index, padded, swapped_span, Forward};

/// Weights of the loss terms (0 turns a term off).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LossWeights {
    /// LM cross-entropy on every sentence.
    pub ce: f64,
    /// Swap-aware counterfactual consistency (symmetric KL at aligned positions).
    pub consistency: f64,
    /// Equalising: the group-word classes' log-ratio at every position.
    pub equalising: f64,
    /// Attribute-gap penalty (needs attribute words).
    pub attribute: f64,
    /// KL to the frozen original on neutral sentences.
    pub anchor: f64,
    /// KL to the original model's counterfactual average at the pairs' aligned positions.
    #[serde(default)]
    pub pair_anchor: f64,
    /// Sequence-level counterfactual term: a pair's whole-sentence log-ratio against the
    /// original's log-ratio of the group words alone (see `batch_loss`).
    #[serde(default)]
    pub sequence: f64,
    /// Group-prior anchor: at the positions that predict a pair's first swapped words, the
    /// KL from the original's next-token distribution instead of the cross-entropy (see
    /// `group_prior`).
    #[serde(default)]
    pub group_prior: f64,
    /// λ of the gradient-reversal layer in front of the adversary (0 = no adversary).
    pub adversary: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights {
            ce: 1.0,
            consistency: 2.0,
            equalising: 0.0,
            attribute: 0.0,
            anchor: 1.0,
            pair_anchor: 0.0,
            sequence: 0.0,
            group_prior: 0.0,
            adversary: 0.0,
        }
    }
}

/// A class table on the device: the tokens of every class and the 0/1 maps from those tokens
/// to the 2K class slots (own forms first, then the other group's) for each side.
pub struct ClassTable {
    tokens: Tensor,
    map_g: Tensor,
    map_h: Tensor,
    k: usize,
}

impl ClassTable {
    /// The class table of aligned classes on the device (`None` when none is aligned).
    pub fn new(classes: &ClassPairs) -> Result<Option<ClassTable>> {
        if classes.is_empty() {
            return Ok(None);
        }
        let tokens = classes.tokens();
        let k = classes.pairs.len();
        let mut map_g = vec![0f32; tokens.len() * 2 * k];
        let mut map_h = vec![0f32; tokens.len() * 2 * k];
        let mut row = 0;
        for (c, (a, b)) in classes.pairs.iter().enumerate() {
            for _ in a {
                map_g[row * 2 * k + c] = 1.0;
                map_h[row * 2 * k + k + c] = 1.0;
                row += 1;
            }
            for _ in b {
                map_g[row * 2 * k + k + c] = 1.0;
                map_h[row * 2 * k + c] = 1.0;
                row += 1;
            }
        }
        let n = tokens.len();
        Ok(Some(ClassTable {
            tokens: Tensor::new(tokens.as_slice(), &Device::Cpu)?,
            map_g: Tensor::from_vec(map_g, (n, 2 * k), &Device::Cpu)?,
            map_h: Tensor::from_vec(map_h, (n, 2 * k), &Device::Cpu)?,
            k,
        }))
    }
}

/// Each loss part's value (before weighting) for logging.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct LossParts {
    /// The weighted total.
    pub total: f64,
    /// Cross-entropy.
    pub ce: f64,
    /// Counterfactual consistency.
    pub consistency: f64,
    /// Equalising loss.
    pub equalising: f64,
    /// Attribute-gap penalty.
    pub attribute: f64,
    /// Neutral anchor.
    pub anchor: f64,
    /// Pair anchor.
    #[serde(default)]
    pub pair_anchor: f64,
    /// Sequence-level counterfactual term.
    #[serde(default)]
    pub sequence: f64,
    /// Group-prior anchor.
    #[serde(default)]
    pub group_prior: f64,
    /// The adversary's loss.
    pub adversary: f64,
    /// The adversary's accuracy on the batch.
    pub adversary_accuracy: f64,
}

impl LossParts {
    /// Every part, in declaration order.
    fn fields_mut(&mut self) -> [&mut f64; 11] {
        [
            &mut self.total,
            &mut self.ce,
            &mut self.consistency,
            &mut self.equalising,
            &mut self.attribute,
            &mut self.anchor,
            &mut self.pair_anchor,
            &mut self.sequence,
            &mut self.group_prior,
            &mut self.adversary,
            &mut self.adversary_accuracy,
        ]
    }
}

impl std::ops::AddAssign for LossParts {
    fn add_assign(&mut self, mut other: LossParts) {
        for (sum, part) in self.fields_mut().into_iter().zip(other.fields_mut()) {
            *sum += *part;
        }
    }
}

impl std::ops::Div<f64> for LossParts {
    type Output = LossParts;
    /// Every part divided by `m`: a micro-batch's share of a step's mean.
    fn div(mut self, m: f64) -> LossParts {
        for part in self.fields_mut() {
            *part /= m;
        }
        self
    }
}

/// ½ Σ (p − q)(log p − log q) per row, summed over rows: the symmetric KL of two batches of
/// distributions given as log-probs, with the class tokens projected through the swap map.
/// Without a table (no group word is a single token) the distributions are compared as they are.
fn swap_aware_sym_kl(lpa: &Tensor, lpb: &Tensor, table: Option<&ClassTable>) -> Result<Tensor> {
    let (pa, pb) = (lpa.exp()?, lpb.exp()?);
    let per_token = ((&pa - &pb)? * (lpa - lpb)?)?;
    let Some(table) = table else {
        return Ok((per_token.sum_all()? * 0.5)?);
    };
    let rest = per_token
        .broadcast_mul(&class_mask(table, lpa.dim(1)?, false)?)?
        .sum_all()?;
    let qa = pa.index_select(&table.tokens, 1)?.matmul(&table.map_g)?;
    let qb = pb.index_select(&table.tokens, 1)?.matmul(&table.map_h)?;
    let class = ((&qa - &qb)? * (safe_log(&qa)? - safe_log(&qb)?)?)?.sum_all()?;
    Ok(((rest + class)? * 0.5)?)
}

/// [vocab] with `on_class` at the table's class tokens and the other value elsewhere.
fn class_mask(table: &ClassTable, vocab: usize, on_class: bool) -> Result<Tensor> {
    let (class, rest) = if on_class { (1f32, 0f32) } else { (0f32, 1f32) };
    let mut mask = vec![rest; vocab];
    for t in table.tokens.to_vec1::<u32>()? {
        mask[t as usize] = class;
    }
    Ok(Tensor::from_vec(mask, vocab, &Device::Cpu)?)
}

/// The original model's counterfactual average, the target of both sides of a pair: outside
/// the class tokens the normalised geometric mean of p_g and p_h, which keeps what both
/// contexts find likely (the arithmetic mean also keeps what only one finds likely, and a
/// model that samples that mixture writes text its original finds unlikely after either
/// group); inside, each side keeps its own proportions ("she" stays with "the woman") scaled
/// to the mean's class mass, so each row sums to one.
fn counterfactual_average(
    lp0a: &Tensor,
    lp0b: &Tensor,
    table: Option<&ClassTable>,
) -> Result<(Tensor, Tensor)> {
    // A fixed target (the frozen model's), so the kernel without backward will do.
    let mean = softmax_last_dim(&((lp0a + lp0b)? * 0.5)?, Kernels::Fused)?;
    let Some(table) = table else {
        return Ok((mean.clone(), mean));
    };
    let vocab = mean.dim(1)?;
    let rest = mean.broadcast_mul(&class_mask(table, vocab, false)?)?;
    let on_class = class_mask(table, vocab, true)?;
    let target_mass = mean.broadcast_mul(&on_class)?.sum_keepdim(1)?;
    let (pa, pb) = (lp0a.exp()?, lp0b.exp()?);
    let (ca, cb) = (pa.broadcast_mul(&on_class)?, pb.broadcast_mul(&on_class)?);
    let scale = |class: &Tensor| -> Result<Tensor> {
        let mass = class.sum_keepdim(1)?;
        Ok(((&target_mass + 1e-30)? / (mass + 1e-30)?)?)
    };
    let qa = (&rest + ca.broadcast_mul(&scale(&ca)?)?)?;
    let qb = (&rest + cb.broadcast_mul(&scale(&cb)?)?)?;
    Ok((qa, qb))
}

/// KL(q ‖ p) = Σ q (log q − log p) summed over rows, for a fixed target q (probabilities)
/// and the model's log-probs: a distillation whose gradient is one product with q.
fn kl_from(q: &Tensor, lp: &Tensor) -> Result<Tensor> {
    Ok((q * (safe_log(q)? - lp)?)?.sum_all()?)
}

/// Adds `x` to a running sum that starts empty.
fn accumulate(sum: &mut Option<Tensor>, x: Tensor) -> Result<()> {
    *sum = Some(match sum.take() {
        None => x,
        Some(s) => (s + x)?,
    });
    Ok(())
}

fn safe_log(q: &Tensor) -> Result<Tensor> {
    Ok((q + 1e-30)?.log()?)
}

/// Mean negative log-likelihood of every next token of every sentence that is not given.
fn cross_entropy(f: &Forward) -> Result<Tensor> {
    Ok((f
        .token_logp
        .index_select(&index(&f.predicted)?, 0)?
        .sum_all()?
        * (-1.0 / f.predicted.len().max(1) as f64))?)
}

/// Swap-aware symmetric KL between each sentence and its twin at aligned positions, averaged
/// over aligned positions; `None` when the batch has none.
fn consistency(f: &Forward, tables: &[Option<ClassTable>]) -> Result<Option<Tensor>> {
    let mut sum: Option<Tensor> = None;
    for (&key, rows) in &f.by_table {
        if rows.sentence.is_empty() {
            continue;
        }
        let kl = swap_aware_sym_kl(
            &f.logp_at(&rows.sentence)?,
            &f.logp_at(&rows.twin)?,
            tables[key].as_ref(),
        )?;
        accumulate(&mut sum, kl)?;
    }
    sum.map(|s| Ok((s / f.all_sentence.len() as f64)?))
        .transpose()
}

/// KL from the original model's counterfactual average to each side of a pair at aligned
/// positions, averaged over both sides' positions.
fn pair_anchor(
    f: &Forward,
    frozen: &dyn CausalLm,
    frozen_hidden: &Tensor,
    tables: &[Option<ClassTable>],
) -> Result<Option<Tensor>> {
    let mut sum: Option<Tensor> = None;
    for (&key, rows) in &f.by_table {
        if rows.sentence.is_empty() {
            continue;
        }
        let original = |ix: &[u32]| -> Result<Tensor> {
            let h = frozen_hidden.index_select(&index(ix)?, 0)?;
            Ok(log_softmax(&frozen.logits(&h)?)?.detach())
        };
        let (qa, qb) = counterfactual_average(
            &original(&rows.frozen_sentence)?,
            &original(&rows.frozen_twin)?,
            tables[key].as_ref(),
        )?;
        let kl =
            (kl_from(&qa, &f.logp_at(&rows.sentence)?)? + kl_from(&qb, &f.logp_at(&rows.twin)?)?)?;
        accumulate(&mut sum, kl)?;
    }
    sum.map(|s| Ok((s / (2 * f.all_sentence.len()) as f64)?))
        .transpose()
}

/// Mean absolute log-ratio of each class's own form to its counterpart over every position of
/// the pairs; `None` when no pair has a class table.
fn equalising(f: &Forward, tables: &[Option<ClassTable>]) -> Result<Option<Tensor>> {
    let mut sum: Option<Tensor> = None;
    let mut n = 0usize;
    for (&key, rows) in &f.by_table {
        let Some(table) = &tables[key] else { continue };
        let q = f
            .logp_at(&rows.every)?
            .index_select(&table.tokens, 1)?
            .exp()?
            .matmul(&table.map_g)?;
        let lq = safe_log(&q)?;
        let gap = (lq.narrow(1, 0, table.k)? - lq.narrow(1, table.k, table.k)?)?.abs()?;
        n += rows.every.len() * table.k;
        accumulate(&mut sum, gap.sum_all()?)?;
    }
    sum.map(|s| Ok((s / n.max(1) as f64)?)).transpose()
}

/// Mean absolute gap of the attribute words' log-probs between sentence and twin at aligned
/// positions.
fn attribute_gap(f: &Forward, attribute_tokens: &Tensor) -> Result<Tensor> {
    let la = f
        .logp_at(&f.all_sentence)?
        .index_select(attribute_tokens, 1)?;
    let lb = f.logp_at(&f.all_twin)?.index_select(attribute_tokens, 1)?;
    Ok((la - lb)?.abs()?.mean_all()?)
}

/// KL(model ‖ original) on the neutral sentences, per position.
fn neutral_anchor(f: &Forward, frozen: &dyn CausalLm) -> Result<Tensor> {
    let neutral: Vec<&Vec<u32>> = f.batch.neutral.iter().map(|s| &s.ids).collect();
    let neutral_start = 2 * f.batch.pairs.len();
    let (nids, nt) = padded(&neutral)?;
    let ref_hidden = frozen.hidden(&nids, &mut KvCache::new(frozen.info().n_layers))?;
    let ref_hidden = ref_hidden.reshape((neutral.len() * nt, f.hidden.dim(D::Minus1)?))?;
    let (mut own, mut reference) = (Vec::new(), Vec::new());
    for (r, row) in neutral.iter().enumerate() {
        for pos in 0..row.len().saturating_sub(1) {
            own.push(f.at(neutral_start + r, pos));
            reference.push((r * nt + pos) as u32);
        }
    }
    let lp0 =
        log_softmax(&frozen.logits(&ref_hidden.index_select(&index(&reference)?, 0)?)?)?.detach();
    let lp = f.logp_at(&own)?;
    let kl = (lp.exp()? * (&lp - lp0)?)?.sum_all()?;
    Ok((kl / own.len().max(1) as f64)?)
}

/// The group-prior anchor: KL(original ‖ model) at the positions that predict each pair's
/// first swapped words, averaged over those positions. Two-sided augmentation teaches "The
/// Muslim …" as often as "The Christian …", and the cross-entropy at the group word then
/// evens out how often the model names each group — which raises every sentence about the
/// less-named group, the stereotyped side of most minimal pairs (CrowS-Pairs' religion,
/// 53.8 → 62.5, issue 32). These positions (left out of the cross-entropy by `Forward`) keep
/// the original's distribution instead, prefix by prefix: the corpus is unchanged, only what
/// the group word's own prediction is taught.
fn group_prior(f: &Forward, frozen: &dyn CausalLm) -> Result<Tensor> {
    let p = f.batch.pairs.len();
    // The frozen model needs each row only up to its last prior position's next token.
    let mut keep = vec![0usize; 2 * p];
    for &(r, pos) in &f.prior_rows {
        keep[r] = keep[r].max(pos + 1);
    }
    let rows: Vec<Vec<u32>> = (0..2 * p)
        .map(|r| {
            let item = &f.batch.pairs[r % p];
            let ids = if r < p { &item.a } else { &item.b };
            ids[..keep[r].min(ids.len())].to_vec()
        })
        .collect();
    let refs: Vec<&Vec<u32>> = rows.iter().collect();
    let (hidden, start) = bucketed_hidden(frozen, &refs)?;
    let reference: Vec<u32> = f
        .prior_rows
        .iter()
        .map(|&(r, pos)| (start[r] + pos) as u32)
        .collect();
    let lp0 = log_softmax(&frozen.logits(&hidden.index_select(&index(&reference)?, 0)?)?)?.detach();
    let lp = f.logp_at(&f.prior)?;
    let kl = (lp0.exp()? * (&lp0 - lp)?)?.sum_all()?;
    Ok((kl / f.prior.len().max(1) as f64)?)
}

/// The adversary's loss on the pairs' pooled hidden states behind a gradient-reversal layer,
/// and its accuracy.
fn adversary_loss(f: &Forward, adversary: &Adversary, lambda: f64) -> Result<(Tensor, f64)> {
    let pooled = pool_aligned(&f.hidden, f.batch, &f.start)?;
    // Gradient reversal: the value is the hidden state, the gradient reaching the model is
    // −λ times the adversary's.
    let reversed = ((pooled.detach() * (1.0 + lambda))? - (&pooled * lambda)?)?;
    adversary.loss(&reversed, &pair_labels(f.batch))
}

/// Runs the model on `batch` once and returns the weighted total of the losses `weights`
/// turns on, and each part's value before weighting.
#[allow(clippy::too_many_arguments)]
pub fn batch_loss(
    model: &dyn CausalLm,
    frozen: Option<&dyn CausalLm>,
    batch: &Batch,
    tables: &[Option<ClassTable>],
    attribute_tokens: Option<&Tensor>,
    weights: &LossWeights,
    adversary: Option<&Adversary>,
) -> Result<(Tensor, LossParts)> {
    let f = Forward::run(
        model,
        frozen,
        batch,
        weights.pair_anchor > 0.0,
        weights.group_prior > 0.0 && frozen.is_some(),
    )?;
    let has_pairs = !batch.pairs.is_empty();
    let has_aligned = !f.all_sentence.is_empty();
    let mut parts = LossParts::default();
    let ce = cross_entropy(&f)?;
    parts.ce = scalar(&ce)?;
    let mut total = (&ce * weights.ce)?;
    // Adds a term's weighted value to the total and records its unweighted value.
    let mut add = |loss: Option<Tensor>, weight: f64, part: &mut f64| -> Result<()> {
        if let Some(loss) = loss {
            *part = scalar(&loss)?;
            total = (&total + (loss * weight)?)?;
        }
        Ok(())
    };
    if has_aligned && weights.consistency > 0.0 {
        add(
            consistency(&f, tables)?,
            weights.consistency,
            &mut parts.consistency,
        )?;
    }
    if let (Some((frozen, frozen_hidden)), true) = (&f.pair_anchor, has_aligned) {
        let loss = pair_anchor(&f, *frozen, frozen_hidden, tables)?;
        add(loss, weights.pair_anchor, &mut parts.pair_anchor)?;
    }
    if let (Some(frozen), true) = (frozen, weights.sequence > 0.0 && has_pairs) {
        let loss = sequence_loss(frozen, batch, &f.token_logp, &f.offsets)?;
        add(Some(loss), weights.sequence, &mut parts.sequence)?;
    }
    if let (Some(frozen), false) = (frozen, f.prior.is_empty()) {
        let loss = group_prior(&f, frozen)?;
        add(Some(loss), weights.group_prior, &mut parts.group_prior)?;
    }
    if weights.equalising > 0.0 {
        add(
            equalising(&f, tables)?,
            weights.equalising,
            &mut parts.equalising,
        )?;
    }
    if let (Some(attr), true) = (attribute_tokens, weights.attribute > 0.0 && has_aligned) {
        add(
            Some(attribute_gap(&f, attr)?),
            weights.attribute,
            &mut parts.attribute,
        )?;
    }
    if let (Some(frozen), true) = (frozen, weights.anchor > 0.0 && !batch.neutral.is_empty()) {
        add(
            Some(neutral_anchor(&f, frozen)?),
            weights.anchor,
            &mut parts.anchor,
        )?;
    }
    if let (Some(adv), true) = (adversary, weights.adversary > 0.0 && has_pairs) {
        let (loss, accuracy) = adversary_loss(&f, adv, weights.adversary)?;
        parts.adversary_accuracy = accuracy;
        // The reversal layer carries λ; the adversary's own loss is added unweighted.
        add(Some(loss), 1.0, &mut parts.adversary)?;
    }
    parts.total = scalar(&total)?;
    Ok((total, parts))
}

/// A scalar tensor's value, for the logged parts.
fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_scalar::<f32>()? as f64)
}

/// Summed log-probability under `model` of each row's tokens after its first (no gradient).
fn row_logprobs(model: &dyn CausalLm, rows: &[Vec<u32>]) -> Result<Vec<f64>> {
    let refs: Vec<&Vec<u32>> = rows.iter().collect();
    let (ids, width) = padded(&refs)?;
    let hidden = model.hidden(&ids, &mut KvCache::new(model.info().n_layers))?;
    let hidden = hidden.reshape((rows.len() * width, hidden.dim(D::Minus1)?))?;
    let (mut at, mut next) = (Vec::new(), Vec::new());
    for (r, row) in rows.iter().enumerate() {
        for pos in 0..row.len().saturating_sub(1) {
            at.push((r * width + pos) as u32);
            next.push(row[pos + 1]);
        }
    }
    let lp = log_softmax(&model.logits(&hidden.index_select(&index(&at)?, 0)?)?)?
        .gather(&Tensor::from_vec(next, (at.len(), 1), &Device::Cpu)?, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut out = vec![0.0f64; rows.len()];
    let mut k = 0;
    for (r, row) in rows.iter().enumerate() {
        for _ in 0..row.len().saturating_sub(1) {
            out[r] += lp[k] as f64;
            k += 1;
        }
    }
    Ok(out)
}

/// The sequence-level counterfactual term, the quantity pair benchmarks (CrowS-Pairs,
/// StereoSet) read: for a sentence s about g and its twin s' about h, the model's
/// d = log P(s) − log P(s') over every token from the first swapped one (the group words
/// themselves, so an attribute *before* them is reached, and all that follows), against the
/// original's r = log P₀(w_g | ⟨s⟩) − log P₀(w_h | ⟨s⟩) of the swapped words alone after the
/// context token: how much more often g is named than h at all, which the term does not
/// teach away. Pseudo-Huber penalty √((d − r)² + 1) − 1, averaged over pairs.
/// `token_logp` holds each compact position's log-probability of its next token, `offsets`
/// each row's first compact position (sentences first, then twins).
fn sequence_loss(
    frozen: &dyn CausalLm,
    batch: &Batch,
    token_logp: &Tensor,
    offsets: &[usize],
) -> Result<Tensor> {
    let p = batch.pairs.len();
    let n_pos = token_logp.dim(0)?;
    // Row i of `signs` sums pair i's sentence positions with +1 and its twin's with −1.
    let mut signs = vec![0f32; p * n_pos];
    let mut spans = Vec::with_capacity(2 * p);
    for (i, item) in batch.pairs.iter().enumerate() {
        let (first, end_a, end_b) = swapped_span(item);
        for (row, ids, sign) in [(i, &item.a, 1.0), (p + i, &item.b, -1.0)] {
            // Position pos predicts token pos + 1: tokens first.. are predicted from first − 1.
            for pos in first.max(1) - 1..ids.len().saturating_sub(1) {
                signs[i * n_pos + offsets[row] + pos] = sign;
            }
        }
        let context = item.a[..1.min(item.a.len())].to_vec();
        spans.push([context.as_slice(), &item.a[first..end_a]].concat());
        spans.push([context.as_slice(), &item.b[first..end_b]].concat());
    }
    let prior = row_logprobs(frozen, &spans)?;
    let reference: Vec<f32> = (0..p)
        .map(|i| (prior[2 * i] - prior[2 * i + 1]) as f32)
        .collect();
    let signs = Tensor::from_vec(signs, (p, n_pos), &Device::Cpu)?;
    let d = signs.matmul(token_logp)?;
    let gap = (d - Tensor::from_vec(reference, (p, 1), &Device::Cpu)?)?;
    let penalty = ((gap.sqr()? + 1.0)?.sqrt()? - 1.0)?;
    Ok(penalty.mean_all()?)
}

/// (axis, group) of every pooled row: the sentences first, then their twins.
pub fn pair_labels(batch: &Batch) -> Vec<(usize, usize)> {
    batch
        .pairs
        .iter()
        .map(|x| (x.axis, x.group_a))
        .chain(batch.pairs.iter().map(|x| (x.axis, x.group_b)))
        .collect()
}

/// Mean hidden state over each pair's aligned positions, for the sentences then the twins:
/// [2P, hidden]. `hidden` is `bucketed_hidden`'s matrix of rows whose first P are the pairs'
/// sentences and next P their twins; row r starts at `start[r]`.
pub fn pool_aligned(hidden: &Tensor, batch: &Batch, start: &[usize]) -> Result<Tensor> {
    let p = batch.pairs.len();
    let n_flat = hidden.dim(0)?;
    let mut weights = vec![0f32; 2 * p * n_flat];
    for (i, item) in batch.pairs.iter().enumerate() {
        let n = item.aligned.len().max(1) as f32;
        if item.aligned.is_empty() {
            // No aligned position: pool the whole sentence.
            for pos in 0..item.a.len() {
                weights[i * n_flat + start[i] + pos] = 1.0 / item.a.len() as f32;
            }
            for pos in 0..item.b.len() {
                weights[(p + i) * n_flat + start[p + i] + pos] = 1.0 / item.b.len() as f32;
            }
        }
        for &(ka, kb) in &item.aligned {
            weights[i * n_flat + start[i] + ka] = 1.0 / n;
            weights[(p + i) * n_flat + start[p + i] + kb] = 1.0 / n;
        }
    }
    let w = Tensor::from_vec(weights, (2 * p, n_flat), &Device::Cpu)?;
    Ok(w.matmul(hidden)?)
}

/// Perplexity of `model` on `ids` as the audit computes it (sliding window, half stride).
pub fn perplexity(model: &dyn CausalLm, ids: &[u32]) -> Result<f64> {
    let local = fairlm_model::backend::Local(model);
    Ok(fairlm_model::perplexity::perplexity(&local, ids, None)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_aware_kl_is_zero_for_swapped_distributions() {
        // Vocabulary of 4: token 1 ("she") ↔ token 2 ("he"). P over a-side, P' = P with 1↔2.
        let classes = ClassPairs {
            pairs: vec![(vec![1], vec![2])],
        };
        let table = ClassTable::new(&classes).unwrap().unwrap();
        let pa = Tensor::new(&[[0.1f32, 0.6, 0.2, 0.1]], &Device::Cpu).unwrap();
        let pb = Tensor::new(&[[0.1f32, 0.2, 0.6, 0.1]], &Device::Cpu).unwrap();
        let kl = swap_aware_sym_kl(&pa.log().unwrap(), &pb.log().unwrap(), Some(&table)).unwrap();
        assert!(kl.to_scalar::<f32>().unwrap().abs() < 1e-6);
        // The same distribution after "the woman" and after "the man" is inconsistent: it
        // predicts "she" for both.
        let same = swap_aware_sym_kl(&pa.log().unwrap(), &pa.log().unwrap(), Some(&table)).unwrap();
        assert!(same.to_scalar::<f32>().unwrap() > 0.1);
        let naive = ((&pa - &pb).unwrap() * (pa.log().unwrap() - pb.log().unwrap()).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(naive > 0.1);
    }

    #[test]
    fn swapped_span_is_the_first_differing_words() {
        let item = |a: Vec<u32>, b: Vec<u32>, aligned: Vec<(usize, usize)>| PairItem {
            a,
            b,
            aligned,
            given_a: 1,
            given_b: 1,
            table: 0,
            axis: 0,
            group_a: 0,
            group_b: 1,
        };
        // "The woman … she" / "The man … he": one token swapped at 2, aligned after it.
        let one = item(
            vec![0, 9, 40, 5, 33],
            vec![0, 9, 41, 17, 33],
            vec![(3, 3), (4, 4)],
        );
        assert_eq!(swapped_span(&one), (2, 3, 3));
        // A two-token group phrase on one side ("Asian American" / "Latino").
        let two = item(vec![0, 9, 50, 51, 33], vec![0, 9, 60, 33], vec![(4, 3)]);
        assert_eq!(swapped_span(&two), (2, 4, 3));
        // No aligned position past the swap: one token.
        let none = item(vec![0, 40], vec![0, 41], vec![]);
        assert_eq!(swapped_span(&none), (1, 2, 2));
    }
}
