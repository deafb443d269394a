//! `fairlm bench crows|stereoset|pairs`: argument handling and printing; the work is
//! `fairlm_bias::pairs`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fairlm_bias::audit::write_atomic;
use fairlm_bias::pairs::{self, BenchResults};
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
    enum Input {
        Pairs(Vec<pairs::Pair>),
        Stereo(Vec<pairs::StereoEntry>),
    }
    let (input, skipped) = match name {
        "crows" => {
            let (p, s) = pairs::read_crows(&a.file, a.strict)?;
            (Input::Pairs(p), s)
        }
        "pairs" => {
            let (p, s) = pairs::read_pairs_jsonl(&a.file, a.strict)?;
            (Input::Pairs(p), s)
        }
        _ => {
            let (e, s) = pairs::read_stereoset(&a.file, a.strict)?;
            (Input::Stereo(e), s)
        }
    };
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
    let mut results = BenchResults {
        schema_version: 1,
        benchmark: name.into(),
        file: a.file.clone(),
        model: record,
        skipped,
        pair_table: None,
        stereoset_table: None,
        pairs: None,
        entries: None,
    };
    match input {
        Input::Pairs(p) => {
            let recs = pairs::score_pairs(model.as_ref(), &ck.tokenizer, &p, a.batch_size)?;
            let table = pairs::pair_table(&recs);
            println!("| bias type | pairs | pct_stereotype (sum) | pct_stereotype (mean) |\n|---|---|---|---|");
            for r in &table {
                println!(
                    "| {} | {} | {:.1} | {:.1} |",
                    r.bias_type, r.pairs, r.pct_stereotype_sum, r.pct_stereotype_mean
                );
            }
            results.pair_table = Some(table);
            results.pairs = Some(recs);
        }
        Input::Stereo(e) => {
            let recs = pairs::score_stereoset(model.as_ref(), &ck.tokenizer, &e, a.batch_size)?;
            let table = pairs::stereo_table(&recs);
            println!("| bias type | entries | ss (sum) | lms (sum) | icat (sum) | ss (mean) | lms (mean) | icat (mean) |\n|---|---|---|---|---|---|---|---|");
            for r in &table {
                println!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    r.bias_type,
                    r.entries,
                    r.sum.ss,
                    r.sum.lms,
                    r.sum.icat,
                    r.mean.ss,
                    r.mean.lms,
                    r.mean.icat
                );
            }
            results.stereoset_table = Some(table);
            results.entries = Some(recs);
        }
    }
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
