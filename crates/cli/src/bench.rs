//! `fairlm bench crows|stereoset|pairs`: argument handling and printing; the work is
//! `fairlm_bias::pairs`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fairlm_bias::audit::write_atomic;
use fairlm_bias::pairs;
use fairlm_model::fetch;

use crate::engine::ModelArgs;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// CrowS-Pairs CSV: pct_stereotype per bias type (ideal 50), both conventions.
    Crows(BenchArgs),
    /// StereoSet JSON (intrasentence): ss, lms, icat per bias type, both conventions.
    Stereoset(BenchArgs),
    /// fairlm's JSONL pairs ({"stereo", "anti", "bias_type"} per line).
    Pairs(BenchArgs),
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long)]
    pub file: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Fail on the first malformed row instead of skipping and counting it.
    #[arg(long)]
    pub strict: bool,
    /// Directory for results.json (tables and per-pair records).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    let (name, a) = match cmd {
        BenchCommand::Crows(a) => ("crows", a),
        BenchCommand::Stereoset(a) => ("stereoset", a),
        BenchCommand::Pairs(a) => ("pairs", a),
    };
    // Read and check the file before loading the model: bad input fails fast.
    let (input, skipped) = pairs::read_benchmark(name, &a.file, a.strict)?;
    if let Some(first) = skipped.first() {
        eprintln!(
            "fairlm: skipped {} malformed rows of {} (first: line {}: {}); --strict fails on them",
            skipped.len(),
            a.file.display(),
            first.line,
            first.reason
        );
    }
    let path = fetch::resolve(&a.model.model)?;
    let ck = a.model.open()?;
    let model = ck.build()?;
    let record = crate::engine::model_record(&path, model.as_ref())?;
    let results = pairs::run_benchmark(
        name,
        &a.file,
        &input,
        skipped,
        model.as_ref(),
        &ck.tokenizer,
        record,
        a.batch_size,
    )?;
    print!("{}", pairs::markdown(&results));
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        write_atomic(
            &out.join("results.json"),
            serde_json::to_string_pretty(&results)?.as_bytes(),
        )?;
        eprintln!("fairlm: wrote {}/results.json", out.display());
    }
    Ok(())
}
