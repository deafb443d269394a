//! Statistics with confidence intervals: seeded percentile bootstrap over clusters
//! (template × group units), so that samples of one prompt are resampled together.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A figure with its 95% CI.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// The CI's lower bound.
    pub ci_low: f64,
    /// The CI's upper bound.
    pub ci_high: f64,
}

impl Estimate {
    /// The interval widened to contain the point estimate (for statistics such as W1 and TVD
    /// between small samples, biased upward, whose bootstrap distribution can sit wholly above
    /// the estimate).
    pub fn widened_to_hold_value(self) -> Estimate {
        Estimate {
            value: self.value,
            ci_low: self.ci_low.min(self.value),
            ci_high: self.ci_high.max(self.value),
        }
    }
}

/// A seeded sample of at most `per_stratum` items of each stratum (`stratum(item)`), in the
/// items' order; `None` keeps every item. Strata are drawn in key order, each shuffled with one
/// seeded stream.
pub fn stratified_sample<T, K: Ord>(
    items: Vec<T>,
    stratum: impl Fn(&T) -> K,
    per_stratum: Option<usize>,
    seed: u64,
) -> Vec<T> {
    let Some(n) = per_stratum else {
        return items;
    };
    let mut strata: std::collections::BTreeMap<K, Vec<usize>> = Default::default();
    for (i, item) in items.iter().enumerate() {
        strata.entry(stratum(item)).or_default().push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keep = vec![false; items.len()];
    for idx in strata.values_mut() {
        idx.shuffle(&mut rng);
        for &i in idx.iter().take(n) {
            keep[i] = true;
        }
    }
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, k)| k.then_some(item))
        .collect()
}

/// Percentile bootstrap of `statistic` over `clusters` (each a list of observations):
/// resamples clusters with replacement `resamples` times with a seeded stream.
pub fn bootstrap<T>(
    clusters: &[Vec<T>],
    statistic: impl Fn(&[&[T]]) -> f64,
    resamples: usize,
    seed: u64,
) -> Estimate {
    let all: Vec<&[T]> = clusters.iter().map(|c| c.as_slice()).collect();
    let value = statistic(&all);
    if clusters.is_empty() || resamples == 0 {
        return Estimate {
            value,
            ci_low: value,
            ci_high: value,
        };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let stats: Vec<f64> = (0..resamples)
        .map(|_| {
            let pick: Vec<&[T]> = (0..clusters.len())
                .map(|_| all[rng.random_range(0..clusters.len())])
                .collect();
            statistic(&pick)
        })
        .collect();
    percentile_interval(stats, value)
}

/// The 2.5% and 97.5% percentiles of bootstrap replicates (non-finite ones dropped) around
/// the point estimate `value`; a point interval when there are no replicates.
pub fn percentile_interval(mut reps: Vec<f64>, value: f64) -> Estimate {
    reps.retain(|x| x.is_finite());
    if reps.is_empty() {
        return Estimate {
            value,
            ci_low: value,
            ci_high: value,
        };
    }
    reps.sort_by(f64::total_cmp);
    let q = |p: f64| reps[((p * (reps.len() - 1) as f64).round() as usize).min(reps.len() - 1)];
    Estimate {
        value,
        ci_low: q(0.025),
        ci_high: q(0.975),
    }
}

/// Mean of all observations in the picked clusters.
pub fn pooled_mean(picked: &[&[f64]]) -> f64 {
    let (s, n) = picked.iter().fold((0.0, 0usize), |(s, n), c| {
        (s + c.iter().sum::<f64>(), n + c.len())
    });
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

/// Where a statistic lies when the labels it compares carry no information: the mean and the
/// 2.5%/97.5% percentiles of its replicates under permuted labels, and the one-sided
/// permutation p-value of the observed value, (1 + #{replicate ≥ observed}) / (1 + replicates).
/// A gap statistic (W1, max − min) is positive even between groups drawn from one population;
/// this says how large it is by chance at the sample's size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NullLevel {
    /// The null's mean with its 95% range.
    pub level: Estimate,
    /// One-sided permutation p-value of the observed value.
    pub p_value: f64,
}

impl NullLevel {
    /// The null level from the permutation replicates.
    pub fn from_replicates(observed: f64, replicates: Vec<f64>) -> NullLevel {
        let n = replicates.len();
        let mean = replicates.iter().sum::<f64>() / n.max(1) as f64;
        let above = replicates.iter().filter(|&&r| r >= observed).count();
        NullLevel {
            level: percentile_interval(replicates, mean),
            p_value: (1 + above) as f64 / (1 + n) as f64,
        }
    }
}

/// `resamples` seeded shuffles of `labels` (one stream for all), for a permutation null.
pub fn permuted<L: Clone>(labels: &[L], resamples: usize, seed: u64) -> Vec<Vec<L>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..resamples)
        .map(|_| {
            let mut l = labels.to_vec();
            l.shuffle(&mut rng);
            l
        })
        .collect()
}

/// The Wilson score 95% interval of a share of `successes` in `n` trials (n > 0): unlike the
/// normal approximation it stays inside [0, 1] and is honest near 0 and 1, where agreement
/// shares live.
pub fn wilson_interval(successes: usize, n: usize) -> Estimate {
    const Z: f64 = 1.959_963_984_540_054;
    let (k, n) = (successes as f64, n as f64);
    let p = k / n;
    let d = 1.0 + Z * Z / n;
    let centre = (p + Z * Z / (2.0 * n)) / d;
    let half = Z * (p * (1.0 - p) / n + Z * Z / (4.0 * n * n)).sqrt() / d;
    Estimate {
        value: p,
        ci_low: (centre - half).max(0.0),
        ci_high: (centre + half).min(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_level_says_where_chance_puts_the_statistic() {
        let n = NullLevel::from_replicates(0.5, vec![0.1, 0.2, 0.3, 0.6]);
        assert!((n.level.value - 0.3).abs() < 1e-12);
        assert_eq!(n.p_value, 2.0 / 5.0);
        let shuffles = permuted(&[1, 2, 3, 4], 50, 7);
        assert_eq!(shuffles, permuted(&[1, 2, 3, 4], 50, 7));
        assert!(shuffles.iter().all(|l| {
            let mut s = l.clone();
            s.sort();
            s == [1, 2, 3, 4]
        }));
        assert!(shuffles.iter().any(|l| l != &[1, 2, 3, 4]));
    }

    #[test]
    fn wilson_interval_matches_the_published_formula() {
        // 241 of 252: Wilson (1927)'s closed form evaluated independently in Python.
        let e = wilson_interval(241, 252);
        assert!((e.value - 0.956_349).abs() < 1e-6);
        assert!((e.ci_low - 0.923_540).abs() < 1e-6, "{e:?}");
        assert!((e.ci_high - 0.975_454).abs() < 1e-6, "{e:?}");
        let all = wilson_interval(5, 5);
        assert_eq!(all.ci_high, 1.0);
        assert!(all.ci_low > 0.5 && all.ci_low < 0.6, "{all:?}");
    }

    #[test]
    fn constant_data_has_a_degenerate_interval() {
        let c = vec![vec![1.0, 1.0], vec![1.0]];
        let e = bootstrap(&c, pooled_mean, 200, 1);
        assert_eq!((e.value, e.ci_low, e.ci_high), (1.0, 1.0, 1.0));
    }

    #[test]
    fn interval_covers_the_mean_and_is_seeded() {
        let c: Vec<Vec<f64>> = (0..50).map(|i| vec![(i % 7) as f64]).collect();
        let a = bootstrap(&c, pooled_mean, 1000, 3);
        assert!(a.ci_low < a.value && a.value < a.ci_high);
        assert_eq!(a, bootstrap(&c, pooled_mean, 1000, 3));
        assert_ne!(a, bootstrap(&c, pooled_mean, 1000, 4));
    }
}
