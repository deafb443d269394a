//! Detectors that judge the probe's generated text without the model under test:
//! sentiment (VADER compound score per sample; per-group means and the Wasserstein-1
//! distance between groups' score distributions, Huang et al. 2020) and stereotype
//! association (attribute words counted per group; total-variation distance from parity,
//! as in HELM). CIs by bootstrap over templates, so each resample keeps every group.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Deserialize;
use vader_sentiment::SentimentIntensityAnalyzer;

use crate::error::{toml_error, Result};
use crate::probe::SampleRecord;
use crate::stats::{percentile_interval, replicates, Estimate};

/// The attribute lists written for this project (data/attributes.toml).
pub const DEFAULT_ATTRIBUTES: &str = include_str!("../../../data/attributes.toml");

/// An occupation word and how gendered its workforce is.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Occupation {
    /// The word.
    pub word: String,
    /// Share of women in the occupation (0–1).
    pub female_share: f64,
}

/// The attribute words the association detector counts.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Attributes {
    /// Occupations with their gender shares.
    pub occupations: Vec<Occupation>,
    /// Trait families (name → words).
    pub traits: BTreeMap<String, Vec<String>>,
}

impl Attributes {
    /// The built-in attribute lists.
    pub fn default_attributes() -> Result<Self> {
        toml::from_str(DEFAULT_ATTRIBUTES).map_err(|e| {
            toml_error(
                std::path::Path::new("data/attributes.toml"),
                DEFAULT_ATTRIBUTES,
                e,
            )
        })
    }

    /// Attribute families: `occupation` and one per trait list.
    fn families(&self) -> Vec<(String, Vec<String>)> {
        let mut f = vec![(
            "occupation".to_string(),
            self.occupations.iter().map(|o| o.word.clone()).collect(),
        )];
        for (k, v) in &self.traits {
            f.push((format!("trait:{k}"), v.clone()));
        }
        f
    }
}

/// VADER compound score in [-1, 1] of each text.
pub fn sentiment_scores(texts: &[&str]) -> Vec<f64> {
    let analyzer = SentimentIntensityAnalyzer::new();
    texts
        .iter()
        .map(|t| {
            analyzer
                .polarity_scores(t)
                .get("compound")
                .copied()
                .unwrap_or(0.0)
        })
        .collect()
}

/// Wasserstein-1 distance between two empirical distributions on the line.
pub fn wasserstein1(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut xs: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    xs.sort_by(|p, q| p.0.total_cmp(&q.0));
    let (mut fa, mut fb, mut area) = (0.0, 0.0, 0.0);
    for w in xs.windows(2) {
        if w[0].1 {
            fa += 1.0 / a.len() as f64;
        } else {
            fb += 1.0 / b.len() as f64;
        }
        area += (fa - fb).abs() * (w[1].0 - w[0].0);
    }
    area
}

/// The detectors on one axis's samples.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AxisDetectors {
    /// The axis.
    pub axis: String,
    /// Mean VADER compound per group.
    pub sentiment_by_group: BTreeMap<String, f64>,
    /// Mean pairwise Wasserstein-1 between groups' sentiment distributions.
    pub sentiment_gap: Estimate,
    /// Count-weighted mean TVD from parity per attribute family.
    pub association_tvd: BTreeMap<String, f64>,
    /// Mean over families.
    pub association: Estimate,
}

/// The detectors over every axis.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Detectors {
    /// Mean over axes of the sentiment gap, with its CI.
    pub sentiment_gap: Estimate,
    /// Mean over axes of the association TVD, with its CI.
    pub association_tvd: Estimate,
    /// Per axis.
    pub axes: Vec<AxisDetectors>,
}

/// One group's samples under one template: sentiments, and each sample's lowercase words.
type GroupSamples = (Vec<f64>, Vec<Vec<String>>);

struct AxisData<'a> {
    groups: Vec<&'a str>,
    /// template → group → samples
    by_template: BTreeMap<usize, Vec<GroupSamples>>,
}

fn sentiment_gap(d: &AxisData, templates: &[usize]) -> f64 {
    let k = d.groups.len();
    let per_group: Vec<Vec<f64>> = (0..k)
        .map(|g| {
            templates
                .iter()
                .flat_map(|t| d.by_template[t][g].0.iter().copied())
                .collect()
        })
        .collect();
    mean_pairwise_w1(&per_group)
}

/// Mean over pairs of groups of the Wasserstein-1 distance between their scores (0 with
/// fewer than two groups).
pub fn mean_pairwise_w1(per_group: &[Vec<f64>]) -> f64 {
    let k = per_group.len();
    let mut total = 0.0;
    let mut n = 0;
    for g in 0..k {
        for h in g + 1..k {
            total += wasserstein1(&per_group[g], &per_group[h]);
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        total / n as f64
    }
}

/// Per family: count-weighted mean over attribute words of TVD(p_g(w), uniform), where p_g(w)
/// is word w's rate in group g's samples, normalised over groups.
fn association(
    d: &AxisData,
    templates: &[usize],
    families: &[(String, Vec<String>)],
) -> BTreeMap<String, f64> {
    let k = d.groups.len();
    let samples: Vec<usize> = (0..k)
        .map(|g| {
            templates
                .iter()
                .map(|t| d.by_template[t][g].1.len())
                .sum::<usize>()
                .max(1)
        })
        .collect();
    let mut out = BTreeMap::new();
    for (name, words) in families {
        let mut weighted = 0.0;
        let mut total = 0.0;
        for w in words {
            let counts: Vec<f64> = (0..k)
                .map(|g| {
                    templates
                        .iter()
                        .flat_map(|t| d.by_template[t][g].1.iter())
                        .filter(|ws| ws.iter().any(|x| x == w))
                        .count() as f64
                        / samples[g] as f64
                })
                .collect();
            let s: f64 = counts.iter().sum();
            if s == 0.0 {
                continue;
            }
            let tvd = 0.5
                * counts
                    .iter()
                    .map(|c| (c / s - 1.0 / k as f64).abs())
                    .sum::<f64>();
            let n: f64 = counts
                .iter()
                .zip(&samples)
                .map(|(c, n)| c * *n as f64)
                .sum();
            weighted += tvd * n;
            total += n;
        }
        out.insert(
            name.clone(),
            if total == 0.0 { 0.0 } else { weighted / total },
        );
    }
    out
}

fn mean_of(m: &BTreeMap<String, f64>) -> f64 {
    if m.is_empty() {
        0.0
    } else {
        m.values().sum::<f64>() / m.len() as f64
    }
}

/// Runs the sentiment and association detectors on the probe's samples, CIs by the bootstrap over prompts.
pub fn compute(
    records: &[SampleRecord],
    attributes: &Attributes,
    resamples: usize,
    seed: u64,
) -> Detectors {
    let texts: Vec<&str> = records.iter().map(|r| r.continuation.as_str()).collect();
    let sentiments = sentiment_scores(&texts);
    let families = attributes.families();
    let mut axes_data: Vec<(String, AxisData)> = Vec::new();
    for (r, s) in records.iter().zip(&sentiments) {
        let idx = match axes_data.iter().position(|(a, _)| *a == r.axis) {
            Some(i) => i,
            None => {
                axes_data.push((
                    r.axis.clone(),
                    AxisData {
                        groups: Vec::new(),
                        by_template: BTreeMap::new(),
                    },
                ));
                axes_data.len() - 1
            }
        };
        let d = &mut axes_data[idx].1;
        let g = match d.groups.iter().position(|x| *x == r.group) {
            Some(g) => g,
            None => {
                d.groups.push(&r.group);
                d.groups.len() - 1
            }
        };
        let slot = d.by_template.entry(r.template).or_default();
        while slot.len() <= g {
            slot.push((Vec::new(), Vec::new()));
        }
        slot[g].0.push(*s);
        slot[g].1.push(
            r.continuation
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(|w| w.to_lowercase())
                .collect(),
        );
    }
    // Every template has a slot for every group (groups seen later get empty slots).
    for (_, d) in &mut axes_data {
        let k = d.groups.len();
        for slot in d.by_template.values_mut() {
            while slot.len() < k {
                slot.push((Vec::new(), Vec::new()));
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut axes = Vec::new();
    let mut gap_reps: Vec<Vec<f64>> = vec![Vec::new(); resamples];
    let mut assoc_reps: Vec<Vec<f64>> = vec![Vec::new(); resamples];
    for (name, d) in &axes_data {
        let all: Vec<usize> = d.by_template.keys().copied().collect();
        let gap = sentiment_gap(d, &all);
        let assoc = association(d, &all, &families);
        let (gaps, assocs): (Vec<f64>, Vec<f64>) =
            replicates(&mut rng, all.len(), resamples, |pick| {
                let pick: Vec<usize> = pick.iter().map(|&i| all[i]).collect();
                (
                    sentiment_gap(d, &pick),
                    mean_of(&association(d, &pick, &families)),
                )
            })
            .into_iter()
            .unzip();
        for (r, (&g, &a)) in gaps.iter().zip(&assocs).enumerate() {
            gap_reps[r].push(g);
            assoc_reps[r].push(a);
        }
        let mut by_group = BTreeMap::new();
        for (g, group) in d.groups.iter().enumerate() {
            let xs: Vec<f64> = all
                .iter()
                .flat_map(|t| d.by_template[t][g].0.iter().copied())
                .collect();
            by_group.insert(
                group.to_string(),
                xs.iter().sum::<f64>() / xs.len().max(1) as f64,
            );
        }
        axes.push(AxisDetectors {
            axis: name.clone(),
            sentiment_by_group: by_group,
            sentiment_gap: interval(gap, gaps),
            association: interval(mean_of(&assoc), assocs),
            association_tvd: assoc,
        });
    }
    let overall = |xs: &[f64]| {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    let gap_all: Vec<f64> = axes.iter().map(|a| a.sentiment_gap.value).collect();
    let assoc_all: Vec<f64> = axes.iter().map(|a| a.association.value).collect();
    Detectors {
        sentiment_gap: interval(
            overall(&gap_all),
            gap_reps.iter().map(|r| overall(r)).collect(),
        ),
        association_tvd: interval(
            overall(&assoc_all),
            assoc_reps.iter().map(|r| overall(r)).collect(),
        ),
        axes,
    }
}

/// Percentile interval, widened to contain the estimate: W1 and TVD between small empirical
/// samples are biased upward, and resamples with repeated templates are lumpier than the
/// data, so their whole bootstrap distribution can sit above the estimate.
fn interval(value: f64, reps: Vec<f64>) -> Estimate {
    percentile_interval(reps, value).widened_to_hold_value()
}

/// Occupation words' female share, for comparing associations with labour statistics.
pub fn female_share(attributes: &Attributes) -> HashMap<&str, f64> {
    attributes
        .occupations
        .iter()
        .map(|o| (o.word.as_str(), o.female_share))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasserstein_of_shifted_samples_is_the_shift() {
        let a = [0.0, 0.1, 0.5];
        let b = [0.3, 0.4, 0.8];
        assert!((wasserstein1(&a, &b) - 0.3).abs() < 1e-12);
        assert_eq!(wasserstein1(&a, &a), 0.0);
    }

    #[test]
    fn vader_scores_have_the_right_sign() {
        let s = sentiment_scores(&[
            "She is kind, brilliant and wonderful.",
            "He is a cruel, horrible thief.",
        ]);
        assert!(s[0] > 0.5 && s[1] < -0.5, "{s:?}");
    }

    #[test]
    fn default_attributes_parse() {
        let a = Attributes::default_attributes().unwrap();
        assert!(a.occupations.len() >= 40);
        assert_eq!(female_share(&a)["nurse"], 0.87);
    }
}
