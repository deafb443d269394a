//! Statistics with confidence intervals: seeded percentile bootstrap over clusters
//! (template × group units), so that samples of one prompt are resampled together; the
//! permutation null of a gap statistic; Wilson intervals; the Mann-Whitney U test; the sign
//! test of paired flips; the paired t-test.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, StudentsT};

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
    let stats = replicates(&mut rng, clusters.len(), resamples, |pick| {
        let picked: Vec<&[T]> = pick.iter().map(|&i| all[i]).collect();
        statistic(&picked)
    });
    percentile_interval(stats, value)
}

/// One bootstrap resample of `n` clusters: `n` indexes drawn with replacement from `rng`.
/// Every bootstrap of fairlm draws through here, so that one seed gives one stream of picks
/// whichever figure reads them.
pub fn resample(rng: &mut StdRng, n: usize) -> Vec<usize> {
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

/// `statistic` of `resamples` bootstrap resamples of `n` clusters drawn from `rng` in turn
/// (a paired statistic reads both models' figures at the same picks).
pub fn replicates<R>(
    rng: &mut StdRng,
    n: usize,
    resamples: usize,
    mut statistic: impl FnMut(&[usize]) -> R,
) -> Vec<R> {
    (0..resamples)
        .map(|_| statistic(&resample(rng, n)))
        .collect()
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

/// Two-sided p-value of the Mann-Whitney U test of `a` against `b`, as scipy's
/// `mannwhitneyu(method="auto")` computes it: the exact distribution when a sample has at
/// most 8 values and there are no ties, else the normal approximation with tie correction
/// and continuity correction. None when a sample is empty.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> Option<f64> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Ranks of the pooled sample, ties averaged.
    let mut pooled: Vec<(f64, usize)> = a
        .iter()
        .map(|&x| (x, 0))
        .chain(b.iter().map(|&x| (x, 1)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = pooled.len();
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_a += pooled[i..=j].iter().filter(|p| p.1 == 0).count() as f64 * rank;
        i = j + 1;
    }
    let u1 = rank_sum_a - (n1 * (n1 + 1)) as f64 / 2.0;
    let (f1, f2) = (n1 as f64, n2 as f64);
    let mean = f1 * f2 / 2.0;
    let u = u1.max(f1 * f2 - u1);
    if n1.min(n2) <= 8 && tie_term == 0.0 {
        // Exact: the count of arrangements with U ≥ u, doubled (the distribution is
        // symmetric), over all C(n1 + n2, n1).
        let max_u = n1 * n2;
        // counts[k][u] for samples of sizes (k, n2), built up in k.
        let mut ways = vec![vec![0f64; max_u + 1]; n2 + 1];
        for row in ways.iter_mut() {
            row[0] = 1.0;
        }
        for _ in 1..=n1 {
            let mut next = vec![vec![0f64; max_u + 1]; n2 + 1];
            for m in 0..=n2 {
                for v in 0..=max_u {
                    // The largest value belongs to the first sample (adds m to U) or not.
                    let from_first = if v >= m { ways[m][v - m] } else { 0.0 };
                    let from_second = if m > 0 { next[m - 1][v] } else { 0.0 };
                    next[m][v] = from_first + from_second;
                }
            }
            ways = next;
        }
        let dist = &ways[n2];
        let total: f64 = dist.iter().sum();
        let at_least: f64 = dist[(u.round() as usize).min(max_u)..].iter().sum();
        return Some((2.0 * at_least / total).min(1.0));
    }
    let var = f1 * f2 / 12.0 * ((n + 1) as f64 - tie_term / (n * (n - 1)) as f64);
    if var <= 0.0 {
        return Some(1.0);
    }
    let z = (u - mean - 0.5) / var.sqrt();
    Some((2.0 * normal_sf(z)).min(1.0))
}

/// The exact sign test of paired changes: `toward` pairs moved one way, `away` the other
/// (ties left out, as the test does). `one_sided` is P(X ≥ toward) for X ~ Binomial(toward +
/// away, ½), the chance of at least this many moving the right way if each direction were
/// equally likely; `two_sided` is scipy's `binomtest(toward, n, 0.5)` p-value (for p = ½, twice
/// the smaller tail, at most 1). Both are 1 when no pair moved.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SignTest {
    /// P(X ≥ toward).
    pub one_sided: f64,
    /// Two-sided p-value.
    pub two_sided: f64,
}

/// See [`SignTest`].
pub fn sign_test(toward: usize, away: usize) -> SignTest {
    let n = toward + away;
    if n == 0 {
        return SignTest {
            one_sided: 1.0,
            two_sided: 1.0,
        };
    }
    #[allow(clippy::expect_used)] // p = ½ is a probability: Binomial::new cannot refuse it.
    let b = Binomial::new(0.5, n as u64).expect("p = 0.5 is a probability");
    // sf(k - 1) = P(X ≥ k); cdf(k) = P(X ≤ k).
    let upper = if toward == 0 {
        1.0
    } else {
        b.sf(toward as u64 - 1)
    };
    let lower = b.cdf(toward as u64);
    SignTest {
        one_sided: upper,
        two_sided: (2.0 * upper.min(lower)).min(1.0),
    }
}

/// scipy's `ttest_rel(a, b)`: the paired t statistic of the differences a − b and its
/// two-sided p-value (Student's t with n − 1 degrees of freedom). None when there are fewer than
/// two pairs, when the lengths differ, or when the differences do not vary (no t exists).
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let n = a.len();
    if n < 2 || n != b.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    if var.is_nan() || var <= 0.0 || var.is_infinite() {
        return None;
    }
    let t = mean / (var / n as f64).sqrt();
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?;
    Some((t, (2.0 * dist.sf(t.abs())).min(1.0)))
}

/// Survival function of the standard normal (erfc by Numerical Recipes' Chebyshev fit,
/// relative error < 1.2e-7).
fn normal_sf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let tau = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { tau } else { 2.0 - tau };
    erfc / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy 1.17.1, scipy.stats.mannwhitneyu(a, b).pvalue (method="auto"):
        // exact (n ≤ 8, no ties), complete separation: 2 / C(10, 5).
        let p = mann_whitney_p(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.5]).unwrap();
        assert!((p - 0.007936507936507936).abs() < 1e-12, "{p}");
        let p = mann_whitney_p(&[1.0, 3.0, 5.0, 7.0], &[2.0, 4.0, 6.0, 8.0, 10.0]).unwrap();
        assert!((p - 0.4126984126984127).abs() < 1e-12, "{p}");
        // asymptotic (n > 8): np.arange(10) against np.arange(5, 15) + 0.5.
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        let b: Vec<f64> = (5..15).map(|x| f64::from(x) + 0.5).collect();
        let p = mann_whitney_p(&a, &b).unwrap();
        assert!((p - 0.0028272720911168077).abs() < 1e-6, "{p}");
        // asymptotic with ties: [1, 2, 2, 3] against [2, 3, ..., 9].
        let b: Vec<f64> = (2..10).map(f64::from).collect();
        let p = mann_whitney_p(&[1.0, 2.0, 2.0, 3.0], &b).unwrap();
        assert!((p - 0.02591406278957709).abs() < 1e-6, "{p}");
        assert_eq!(mann_whitney_p(&[], &[1.0]), None);
    }

    #[test]
    fn sign_test_matches_scipy_binomtest() {
        // scipy 1.16, stats.binomtest(k, n, 0.5[, alternative="greater"]).pvalue: the filer's
        // CrowS-Pairs reading (60 of 153 toward the anti-stereotype) and StereoSet's (88 of 153).
        let t = sign_test(60, 93);
        assert!((t.two_sided - 0.009453836147291133).abs() < 1e-12, "{t:?}");
        let t = sign_test(88, 65);
        assert!((t.one_sided - 0.037480788764105724).abs() < 1e-12, "{t:?}");
        assert!((t.two_sided - 0.07496157752821145).abs() < 1e-12, "{t:?}");
        assert_eq!(sign_test(0, 5).one_sided, 1.0);
        assert!((sign_test(5, 0).two_sided - 0.0625).abs() < 1e-15);
        assert_eq!(sign_test(0, 0).two_sided, 1.0);
    }

    #[test]
    fn paired_t_test_matches_scipy_ttest_rel() {
        // stats.ttest_rel([1, 2, 4, 7, 11], [1.5, 2, 3, 5, 8]).
        let (t, p) =
            paired_t_test(&[1.0, 2.0, 4.0, 7.0, 11.0], &[1.5, 2.0, 3.0, 5.0, 8.0]).unwrap();
        assert!((t - 1.7179113807746669).abs() < 1e-12, "{t}");
        assert!((p - 0.16094301069703293).abs() < 1e-9, "{p}");
        // No t without variation, or with fewer than two pairs.
        assert_eq!(paired_t_test(&[1.0, 2.0], &[0.0, 1.0]), None);
        assert_eq!(paired_t_test(&[1.0], &[0.0]), None);
    }

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
