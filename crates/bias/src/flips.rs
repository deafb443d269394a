//! Flips: the pairs of a pair benchmark that changed side between two runs on the same file
//! (a model before and after a change), per bias type and overall, under both conventions,
//! with the sign test. A mean can move the right way while the pairs near the boundary cross
//! the wrong way; the flips are what pct_stereotype reads, so they decide.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::pairs::PairRecord;
use crate::stats::{sign_test, SignTest};

/// The pairs that changed side under one convention.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Flips {
    /// Preferred the more stereotyping sentence before, not after.
    pub to_anti: usize,
    /// Preferred it after, not before.
    pub to_stereo: usize,
    /// The sign test of `to_anti` against `to_stereo` (one-sided: toward the anti-stereotype).
    pub test: SignTest,
}

impl Flips {
    fn of(pairs: &[(&PairRecord, &PairRecord)], side: impl Fn(&PairRecord) -> bool) -> Flips {
        let to_anti = pairs.iter().filter(|(b, a)| side(b) && !side(a)).count();
        let to_stereo = pairs.iter().filter(|(b, a)| !side(b) && side(a)).count();
        Flips {
            to_anti,
            to_stereo,
            test: sign_test(to_anti, to_stereo),
        }
    }
}

/// One bias type's flips (or `overall`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlipRow {
    /// The bias type.
    pub bias_type: String,
    /// Pairs read in both runs.
    pub pairs: usize,
    /// pct_stereotype before and after (sum convention).
    pub pct_sum: (f64, f64),
    /// Flips under the sum convention.
    pub sum: Flips,
    /// pct_stereotype before and after (mean convention).
    pub pct_mean: (f64, f64),
    /// Flips under the mean convention.
    pub mean: Flips,
}

/// Per bias type (sorted) and `overall` last, of two runs that read the same pairs in the
/// same order (refused otherwise: flips of different pairs mean nothing).
pub fn flip_table(before: &[PairRecord], after: &[PairRecord]) -> Result<Vec<FlipRow>> {
    if before.len() != after.len() {
        return Err(Error::Invalid(format!(
            "the baseline read {} pairs and this run {}: not the same pairs",
            before.len(),
            after.len()
        )));
    }
    let mut groups: BTreeMap<&str, Vec<(&PairRecord, &PairRecord)>> = BTreeMap::new();
    for (b, a) in before.iter().zip(after) {
        let (pb, pa) = (&b.pair, &a.pair);
        if (pb.line, &pb.bias_type, &pb.more, &pb.less)
            != (pa.line, &pa.bias_type, &pa.more, &pa.less)
        {
            return Err(Error::Invalid(format!(
                "the baseline's pair at line {} is not this run's (line {}): not the same pairs",
                pb.line, pa.line
            )));
        }
        groups
            .entry(pb.bias_type.as_str())
            .or_default()
            .push((b, a));
    }
    let row = |name: &str, ps: &[(&PairRecord, &PairRecord)]| {
        let pct = |f: &dyn Fn(&PairRecord) -> bool, first: bool| {
            let n = ps
                .iter()
                .filter(|(b, a)| f(if first { b } else { a }))
                .count();
            100.0 * n as f64 / ps.len() as f64
        };
        let sum = |r: &PairRecord| r.stereotyped_sum;
        let mean = |r: &PairRecord| r.stereotyped_mean;
        FlipRow {
            bias_type: name.into(),
            pairs: ps.len(),
            pct_sum: (pct(&sum, true), pct(&sum, false)),
            sum: Flips::of(ps, sum),
            pct_mean: (pct(&mean, true), pct(&mean, false)),
            mean: Flips::of(ps, mean),
        }
    };
    let mut out: Vec<FlipRow> = groups.iter().map(|(k, v)| row(k, v)).collect();
    let all: Vec<(&PairRecord, &PairRecord)> = groups.into_values().flatten().collect();
    if !all.is_empty() {
        out.push(row("overall", &all));
    }
    Ok(out)
}

/// The flip table in Markdown.
pub fn markdown(rows: &[FlipRow]) -> String {
    let mut s = String::from(
        "| bias type | pairs | pct_stereotype (sum) | flips to anti / to stereo (sum) | sign test p one-sided / two-sided (sum) | pct_stereotype (mean) | flips (mean) | p (mean) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.1} → {:.1} | {} / {} | {:.3} / {:.3} | {:.1} → {:.1} | {} / {} | {:.3} / {:.3} |\n",
            r.bias_type,
            r.pairs,
            r.pct_sum.0,
            r.pct_sum.1,
            r.sum.to_anti,
            r.sum.to_stereo,
            r.sum.test.one_sided,
            r.sum.test.two_sided,
            r.pct_mean.0,
            r.pct_mean.1,
            r.mean.to_anti,
            r.mean.to_stereo,
            r.mean.test.one_sided,
            r.mean.test.two_sided,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairs::Pair;

    fn rec(line: usize, bias_type: &str, more: f64, less: f64) -> PairRecord {
        PairRecord {
            pair: Pair {
                line,
                bias_type: bias_type.into(),
                more: format!("more {line}"),
                less: format!("less {line}"),
                direction: "stereo".into(),
            },
            more_sum: more,
            less_sum: less,
            more_mean: more / 2.0,
            less_mean: less / 2.0,
            stereotyped_sum: more > less,
            stereotyped_mean: more > less,
        }
    }

    #[test]
    fn flips_count_the_pairs_that_changed_side() {
        // Hand-made: pairs 1–3 of `a` cross to the anti-stereotype, pair 4 to the stereotype,
        // pair 5 stays stereotyped, pair 6 (type `b`) stays anti.
        let before = [
            rec(1, "a", -1.0, -2.0),
            rec(2, "a", -1.0, -1.5),
            rec(3, "a", -3.0, -3.1),
            rec(4, "a", -2.0, -1.0),
            rec(5, "a", -1.0, -9.0),
            rec(6, "b", -5.0, -1.0),
        ];
        let after = [
            rec(1, "a", -2.0, -1.0),
            rec(2, "a", -1.6, -1.5),
            rec(3, "a", -3.2, -3.1),
            rec(4, "a", -0.5, -1.0),
            rec(5, "a", -1.0, -8.0),
            rec(6, "b", -5.0, -2.0),
        ];
        let t = flip_table(&before, &after).unwrap();
        assert_eq!(
            t.iter().map(|r| r.bias_type.as_str()).collect::<Vec<_>>(),
            ["a", "b", "overall"]
        );
        let a = &t[0];
        assert_eq!((a.sum.to_anti, a.sum.to_stereo), (3, 1));
        assert_eq!(a.pct_sum, (80.0, 40.0));
        // scipy.stats.binomtest(3, 4, 0.5, alternative="greater").pvalue = 5/16; two-sided 0.625.
        assert!((a.sum.test.one_sided - 0.3125).abs() < 1e-12);
        assert!((a.sum.test.two_sided - 0.625).abs() < 1e-12);
        assert_eq!((t[1].sum.to_anti, t[1].sum.to_stereo), (0, 0));
        assert_eq!(t[1].sum.test.one_sided, 1.0);
        assert_eq!(t[2].pairs, 6);
        assert_eq!((t[2].mean.to_anti, t[2].mean.to_stereo), (3, 1));
    }

    #[test]
    fn flips_refuse_other_pairs() {
        let before = [rec(1, "a", -1.0, -2.0)];
        let after = [rec(2, "a", -1.0, -2.0)];
        assert!(flip_table(&before, &after).is_err());
        assert!(flip_table(&before, &[]).is_err());
    }
}
