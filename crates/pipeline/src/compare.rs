//! `compare` as a run: two audits' results, the gates they are held to, and the seeded
//! bootstrap of the paired changes, with the defaults every front end takes.

use fairlm_bias::audit::AuditResults;
use fairlm_bias::compare::{self as measures, Comparison, Gates};

use crate::error::Result;

/// What a comparison checks and how its CIs are drawn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompareConfig {
    /// The limits checked (none by default: the table only).
    pub gates: Gates,
    /// Bootstrap resamples of each paired CI.
    pub bootstrap: usize,
    /// The bootstrap's seed.
    pub seed: u64,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            gates: Gates::default(),
            bootstrap: 1000,
            seed: 0,
        }
    }
}

/// Every headline metric before and after with its paired change, and each gate's verdict;
/// refused when the two audits did not run the same settings.
pub fn compare(
    before: &AuditResults,
    after: &AuditResults,
    cfg: &CompareConfig,
) -> Result<Comparison> {
    Ok(measures::compare(
        before,
        after,
        &cfg.gates,
        cfg.bootstrap,
        cfg.seed,
    )?)
}
