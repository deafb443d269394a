//! `fairlm config --print audit|mitigate|experiment`: a command's full default config as commented TOML, the
//! starting point of a `--config FILE`.

use anyhow::Result;
use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct ConfigArgs {
    /// The command whose default config to print.
    #[arg(long, value_enum)]
    pub print: ConfigOf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ConfigOf {
    Audit,
    Mitigate,
    Experiment,
}

pub fn run(a: ConfigArgs) -> Result<()> {
    let text = match a.print {
        ConfigOf::Audit => fairlm_pipeline::AuditConfig::commented_default()?,
        ConfigOf::Mitigate => fairlm_pipeline::MitigateConfig::commented_default()?,
        ConfigOf::Experiment => fairlm_pipeline::ExperimentConfig::commented_default()?,
    };
    out!("{text}")?;
    Ok(())
}
