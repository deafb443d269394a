//! The discriminator probe of a mitigation, before and after: the pooled hidden states of
//! held-out counterfactual pairs and a fresh adversary trained on every other pair's and
//! tested on the rest — how much group information the model's states still carry. (Kept
//! apart from `adversary`, which the losses use: reading the losses from there would make
//! the two modules import each other.)

use candle_core::{Device, Tensor};
use fairlm_model::CausalLm;

use crate::adversary::probe_accuracy;
use crate::batches::Prepared;
use crate::error::{Error, Result};
use crate::losses::{bucketed_hidden, pair_labels, pool_aligned, Batch};

/// Pooled hidden states and labels of up to `max_sets` pairs (each set with its first twin),
/// from an inference model.
/// Pooled states [rows, hidden], each row's (axis, group) and the ordinal of the CDA set it
/// came from among the probed ones.
struct Features {
    x: Tensor,
    labels: Vec<(usize, usize)>,
    set_of_row: Vec<usize>,
}

fn pair_features(model: &dyn CausalLm, prep: &Prepared, max_sets: usize) -> Result<Features> {
    let n = prep.sets.len();
    let stride = (n / max_sets.max(1)).max(1);
    let chosen: Vec<usize> = (0..n).step_by(stride).take(max_sets).collect();
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    let mut set_of_row = Vec::new();
    for (c, chunk) in chosen.chunks(16).enumerate() {
        let batch = Batch {
            pairs: chunk
                .iter()
                // The class table is not read: the probe runs the model forward only.
                .map(|&i| prep.sets[i].pair(0, 0))
                .collect(),
            ..Default::default()
        };
        let rows: Vec<&Vec<u32>> = batch
            .pairs
            .iter()
            .map(|p| &p.a)
            .chain(batch.pairs.iter().map(|p| &p.b))
            .collect();
        let (hidden, start) = bucketed_hidden(model, &rows)?;
        feats.push(pool_aligned(&hidden, &batch, &start)?);
        labels.extend(pair_labels(&batch));
        // The ordinal of each row's set among the chosen ones (sentence rows, then twins).
        let ordinals = (0..chunk.len()).map(|i| c * 16 + i);
        set_of_row.extend(ordinals.clone().chain(ordinals));
    }
    Ok(Features {
        x: Tensor::cat(&feats, 0)?,
        labels,
        set_of_row,
    })
}

/// Held-out discriminator accuracy on `model`'s states: trained on every other probed set,
/// tested on the rest (a sentence and its twin stay on one side).
pub(crate) fn discriminator_accuracy(
    model: &dyn CausalLm,
    prep: &Prepared,
    groups: &[usize],
    max_pairs: usize,
    seed: u64,
) -> Result<(f64, f64, usize)> {
    let Features {
        x,
        labels,
        set_of_row: sets,
    } = pair_features(model, prep, max_pairs)?;
    let (mut tr, mut te) = (Vec::new(), Vec::new());
    for (i, &s) in sets.iter().enumerate() {
        if s % 2 == 0 {
            tr.push(i as u32)
        } else {
            te.push(i as u32)
        }
    }
    if tr.is_empty() || te.is_empty() {
        return Err(Error::Invalid(
            "too few counterfactual pairs to probe a discriminator".into(),
        ));
    }
    let pick = |ix: &[u32]| -> Result<(Tensor, Vec<(usize, usize)>)> {
        Ok((
            x.index_select(&Tensor::new(ix, &Device::Cpu)?, 0)?,
            ix.iter().map(|&i| labels[i as usize]).collect(),
        ))
    };
    let (xtr, ltr) = pick(&tr)?;
    let (xte, lte) = pick(&te)?;
    let acc = probe_accuracy(&xtr, &ltr, &xte, &lte, groups, seed)?;
    let chance = lte.iter().map(|l| 1.0 / groups[l.0] as f64).sum::<f64>() / lte.len() as f64;
    Ok((acc, chance, sets.len() / 2))
}
