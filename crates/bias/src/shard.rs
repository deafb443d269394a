//! Which part of an audit a shard owns (`fairlm audit --shard K/N`). The probe is split by
//! template — every axis's groups filled into it — because a template is what the probe
//! samples and scores together (`probe::run`); templates go round-robin to the shards. Perplexity goes to the first shard and
//! the i-th pair benchmark to the shard after it (wrapping), so that the first does not carry
//! both. The assignment depends only on the unit's position and N, never on timing.

use crate::error::{Error, Result};

/// The K-th of N parts (K counted from 0 here; the CLI writes it from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// The part's number, from 0.
    pub index: usize,
    /// How many parts.
    pub count: usize,
}

impl Shard {
    /// The whole audit: one part of one.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `K/N` with 1 ≤ K ≤ N, as a user writes it.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || {
            Error::Invalid(format!(
                "--shard `{text}`: expected K/N with 1 <= K <= N, e.g. 2/3"
            ))
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard {
            index: k - 1,
            count: n,
        })
    }

    /// One part of one: the whole audit.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// Does this shard run the probe on the template at position `unit`?
    pub fn owns_unit(&self, unit: usize) -> bool {
        unit % self.count == self.index
    }

    /// Does this shard compute the perplexities?
    pub fn owns_perplexity(&self) -> bool {
        self.index == 0
    }

    /// Does this shard run the `i`-th pair benchmark of the audit?
    pub fn owns_benchmark(&self, i: usize) -> bool {
        (i + 1) % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k_of_n_and_refuses_the_rest() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 1, count: 3 });
        assert_eq!(Shard::parse("1/1").unwrap(), Shard::WHOLE);
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "-1/3", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::parse("2/3").unwrap().to_string(), "2/3");
    }

    /// Every unit, the perplexity and every benchmark belong to exactly one shard.
    #[test]
    fn every_part_has_one_owner() {
        for n in 1..6 {
            let shards: Vec<Shard> = (0..n).map(|index| Shard { index, count: n }).collect();
            for unit in 0..40 {
                assert_eq!(shards.iter().filter(|s| s.owns_unit(unit)).count(), 1);
            }
            for b in 0..3 {
                assert_eq!(shards.iter().filter(|s| s.owns_benchmark(b)).count(), 1);
            }
            assert_eq!(shards.iter().filter(|s| s.owns_perplexity()).count(), 1);
        }
    }
}
