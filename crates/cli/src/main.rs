//! The `fairlm` binary: parses arguments, calls one library function per subcommand, prints
//! results, and maps the outcome to an exit code (0 pass, 1 gate failed, 2 error). Every
//! error is printed once, on one line.

// No unwrap/expect outside tests: a user's input or the file system must not be able to make
// fairlm panic (issue 16). Invariants that cannot fail carry an allow with the reason.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

/// Writes to stdout and returns the write's error instead of panicking as `print!` does: a
/// reader that closes the pipe (`| head`) ends the command quietly in `main`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `out!` with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `--config FILE` with flags over it: sets each named field of `$file` to `$flags`'s where its
/// flag (clap's id: the field's name, or the id given before `=>`) was given on the command
/// line of the matches `$given`.
macro_rules! flags_over_file {
    ($given:expr, $file:expr, $flags:expr; $($field:ident),* $(,)?) => {
        flags_over_file!($given, $file, $flags; $(stringify!($field) => $field),*)
    };
    ($given:expr, $file:expr, $flags:expr; $($id:expr => $field:ident),* $(,)?) => {$(
        if $given.value_source($id) == Some(clap::parser::ValueSource::CommandLine) {
            $file.$field = $flags.$field.clone();
        }
    )*};
}

mod args;
mod audit;
mod bench;
mod compare;
mod config;
mod engine;
mod experiment;
mod mitigate;
mod report;
mod serve;
mod terminal;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fairlm",
    version,
    about = "Measure and reduce social bias in generative language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit a model: counterfactual bias score, divergence, perplexity, with 95% CIs.
    Audit(audit::AuditArgs),
    /// Merge the shards of an audit (`audit --shard K/N`) into its results.json.
    Merge(audit::MergeArgs),
    /// Reduce bias by training only: counterfactual augmentation, consistency and anchor
    /// losses, optional adversary; writes the mitigated model.
    Mitigate(mitigate::MitigateArgs),
    /// Audit before → mitigate → audit after → comparison table, report.html and gates.
    Experiment(experiment::ExperimentArgs),
    /// Compare two audits: deltas with paired 95% CIs, and gates (exit 1 when one fails).
    Compare(compare::CompareArgs),
    /// A self-contained HTML report of one audit, or of a before/after pair.
    Report(report::ReportArgs),
    /// Pair benchmarks from your files: CrowS-Pairs, StereoSet, fairlm JSONL pairs.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Log-probability of each text (one JSON object per line on stdout).
    Score(engine::ScoreArgs),
    /// Sample continuations of prompts (JSONL on stdout).
    Generate(engine::GenerateArgs),
    /// Perplexity of a text (the embedded held-out text by default).
    Perplexity(engine::PerplexityArgs),
    /// Token ids and strings of each text.
    Tokenize(engine::TokenizeArgs),
    /// The default model and the cached models, with their paths.
    Models(engine::ModelsArgs),
    /// Write a model as a Hugging Face directory (f32 safetensors, config, tokenizer.json).
    Convert(engine::ConvertArgs),
    /// Engine throughput on fixed work (JSON on stdout), for BENCHMARKS.md.
    Speed(engine::SpeedArgs),
    /// Serve a model over the OpenAI-compatible completions API (loopback by default).
    Serve(serve::ServeArgs),
    /// Print a command's full default config as commented TOML (for `--config FILE`).
    Config(config::ConfigArgs),
}

/// glibc serves large blocks with mmap and unmaps them on free, so every training step faulted
/// its activation and gradient buffers in afresh (a quarter of the step in the kernel's
/// page clearing, BENCHMARKS.md). Serving everything from the heap and never trimming it
/// keeps freed pages for the next step.
fn keep_freed_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it runs before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() -> ExitCode {
    keep_freed_pages();
    fairlm_model::count_threads_once();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FAIRLM_LOG"))
        .with_writer(std::io::stderr)
        .init();
    // The matches are kept beside the parsed arguments: with `--config FILE`, the flags
    // given on the command line (and only those) override the file.
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return argument_error(e),
    };
    let given = |name: &str| {
        matches
            .subcommand_matches(name)
            .cloned()
            .unwrap_or_default()
    };
    // Ok(true): done or every gate passed; Ok(false): a gate failed.
    let outcome: anyhow::Result<bool> = match cli.command {
        Command::Audit(a) => audit::run(a, &given("audit")).map(|()| true),
        Command::Merge(a) => audit::merge(a).map(|()| true),
        Command::Mitigate(a) => mitigate::run(a, &given("mitigate")).map(|()| true),
        Command::Experiment(a) => experiment::run(a, &given("experiment")),
        Command::Bench(c) => bench::run(c).map(|()| true),
        Command::Compare(a) => compare::run(a),
        Command::Report(a) => report::run(a),
        Command::Score(a) => engine::score(a).map(|()| true),
        Command::Generate(a) => engine::generate(a).map(|()| true),
        Command::Perplexity(a) => engine::perplexity(a).map(|()| true),
        Command::Tokenize(a) => engine::tokenize(a).map(|()| true),
        Command::Models(a) => engine::models(a).map(|()| true),
        Command::Speed(a) => engine::speed(a).map(|()| true),
        Command::Convert(a) => engine::convert(a).map(|()| true),
        Command::Serve(a) => serve::run(a).map(|()| true),
        Command::Config(a) => config::run(a).map(|()| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => report(e),
    }
}

/// Help and version go to stdout with exit 0; an argument error is printed as one line,
/// `fairlm: error: …` (clap's tip, if any, on the same line) with exit 2, as every other error.
fn argument_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A closed stdout while printing help is not an error worth a message.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("fairlm: error: no command given; `fairlm --help` lists them");
            return ExitCode::from(2);
        }
        _ => {}
    }
    eprintln!("fairlm: error: {}", one_line(&e.render().to_string()));
    ExitCode::from(2)
}

/// clap's multi-line message as one line: the usage and "for more information" lines dropped,
/// the rest joined.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .fold(String::new(), |mut line, part| {
            if !line.is_empty() {
                line.push_str(if line.ends_with(':') { " " } else { "; " });
            }
            line.push_str(part);
            line
        })
}

/// Prints an error on one line (each cause's first line: candle appends backtraces on later
/// lines) and returns exit code 2.
fn report(e: anyhow::Error) -> ExitCode {
    if e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        // The reader closed stdout (`| head`): stopping is what it asked for.
        return ExitCode::SUCCESS;
    }
    let chain: Vec<String> = e
        .chain()
        .map(|c| c.to_string().lines().next().unwrap_or_default().to_string())
        .collect();
    eprintln!("fairlm: error: {}", chain.join(": "));
    ExitCode::from(2)
}
