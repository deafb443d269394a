//! The `fairlm._fairlm` extension module. Each function takes its run's config as JSON — the
//! Python layer (`python/fairlm/__init__.py`) builds it from keyword arguments, and the
//! library's `Default` fills what is not given, as for the CLI — and returns the results as
//! JSON, the content of the file the CLI writes. Long runs release the GIL and stop at their
//! next unit of work on Ctrl-C (KeyboardInterrupt), their checkpoint kept.

use std::path::PathBuf;
use std::sync::Arc;

use fairlm_bias::audit::AuditResults;
use fairlm_pipeline::audit::Output;
use fairlm_pipeline::bench::{BenchConfig, Benchmark};
use fairlm_pipeline::{AuditConfig, CompareConfig, ExperimentConfig, MitigateConfig, ScoreConfig};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;

create_exception!(
    _fairlm,
    Error,
    PyException,
    "A fairlm error; its message is the line the CLI prints after `fairlm: error: `."
);
create_exception!(
    _fairlm,
    DataError,
    Error,
    "A data file is wrong (the message names the file and, where it has one, the line)."
);
create_exception!(
    _fairlm,
    ModelError,
    Error,
    "The model cannot be opened or computed with (a file, a config, a server's answer)."
);
create_exception!(
    _fairlm,
    ConfigError,
    Error,
    "Settings that cannot run: an unknown option, a value out of range, options that conflict."
);

fn to_py(e: fairlm_pipeline::Error) -> PyErr {
    use fairlm_pipeline::Error as E;
    let message = e.to_string();
    match e {
        E::Data(_) | E::File { .. } => DataError::new_err(message),
        E::Model(_) => ModelError::new_err(message),
        E::Config(_) => ConfigError::new_err(message),
        E::Interrupted => PyKeyboardInterrupt::new_err(message),
    }
}

/// A config from its JSON; an unknown or mistyped option is a `ConfigError` naming it.
fn config<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| ConfigError::new_err(format!("{what}: {e}")))
}

fn to_json(value: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| Error::new_err(e.to_string()))
}

/// The stderr display the CLI shows (bars and `fairlm:` lines), stopping a run at its next unit
/// of work when Python has a signal to handle (Ctrl-C): the run holds no GIL, so the handler
/// runs when the poll asks for it.
fn python_terminal() -> Arc<fairlm_terminal::Terminal> {
    Arc::new(
        fairlm_terminal::Terminal::new()
            .stopped_by(|| Python::attach(|py| py.check_signals().is_err())),
    )
}

/// The audit `config` (AuditConfig as JSON) describes; its results.json as JSON. With `out`,
/// the files `fairlm audit --out` writes are written there, and `resume` continues an audit
/// stopped there.
#[pyfunction]
#[pyo3(signature = (config_json, out=None, resume=false))]
fn audit(
    py: Python<'_>,
    config_json: &str,
    out: Option<PathBuf>,
    resume: bool,
) -> PyResult<String> {
    let cfg: AuditConfig = config("audit", config_json)?;
    let output = Output { dir: out, resume };
    let results = py
        .detach(|| fairlm_pipeline::audit(&cfg, &output, python_terminal()))
        .map_err(to_py)?;
    to_json(&results)
}

/// Each text's log-probability under the model `config` (ScoreConfig as JSON) names; a JSON
/// list of the objects `fairlm score` prints.
#[pyfunction]
fn score(py: Python<'_>, texts: Vec<String>, config_json: &str) -> PyResult<String> {
    let cfg: ScoreConfig = config("score", config_json)?;
    let scores = py
        .detach(|| fairlm_pipeline::score(&texts, &cfg, python_terminal()))
        .map_err(to_py)?;
    to_json(&scores)
}

/// `user` (JSON) laid over `default`: objects merged key by key at every depth, so that a
/// nested setting given alone (a gate, a training option) keeps its neighbours' defaults.
fn over_default<T: serde::Serialize + serde::de::DeserializeOwned>(
    what: &str,
    default: &T,
    user: &str,
) -> PyResult<T> {
    fn merge(base: &mut serde_json::Value, top: serde_json::Value) {
        match (base, top) {
            (serde_json::Value::Object(b), serde_json::Value::Object(t)) => {
                for (k, v) in t {
                    match b.get_mut(&k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            b.insert(k, v);
                        }
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }
    let mut base = serde_json::to_value(default).map_err(|e| Error::new_err(e.to_string()))?;
    let top: serde_json::Value =
        serde_json::from_str(user).map_err(|e| ConfigError::new_err(format!("{what}: {e}")))?;
    merge(&mut base, top);
    serde_json::from_value(base).map_err(|e| ConfigError::new_err(format!("{what}: {e}")))
}

/// The mitigation `config` (MitigateConfig as JSON, over the defaults) describes, run into
/// `out`; the train.json it writes, as JSON. `resume` continues one stopped there.
#[pyfunction]
#[pyo3(signature = (config_json, out, resume=false))]
fn mitigate(py: Python<'_>, config_json: &str, out: PathBuf, resume: bool) -> PyResult<String> {
    let cfg: MitigateConfig = over_default("mitigate", &MitigateConfig::default(), config_json)?;
    py.detach(|| fairlm_pipeline::mitigate(&cfg, &out, resume, python_terminal()))
        .map_err(to_py)?;
    let path = out.join("train.json");
    std::fs::read_to_string(&path)
        .map_err(|e| DataError::new_err(format!("{}: cannot read: {e}", path.display())))
}

/// The experiment `config` (ExperimentConfig as JSON, over the defaults) describes, run into
/// `out`: its comparison (rows and gates) and the compare.md and mitigation.md it wrote, as
/// JSON. `resume` continues one stopped there.
#[pyfunction]
#[pyo3(signature = (config_json, out, resume=false))]
fn experiment(py: Python<'_>, config_json: &str, out: PathBuf, resume: bool) -> PyResult<String> {
    let cfg: ExperimentConfig =
        over_default("experiment", &ExperimentConfig::default(), config_json)?;
    let e = py
        .detach(|| fairlm_pipeline::experiment(&cfg, &out, resume, python_terminal()))
        .map_err(to_py)?;
    to_json(&serde_json::json!({
        "rows": e.comparison.rows,
        "gates": e.comparison.gates,
        "passed": e.passed(),
        "compare_md": e.compare_markdown,
        "mitigation_md": e.mitigation_markdown,
    }))
}

/// The benchmark `name` run as `config` (BenchConfig as JSON, over the defaults) describes;
/// its results.json as JSON (written into `out` too, when given).
#[pyfunction(name = "bench")]
#[pyo3(signature = (name, config_json, out=None))]
fn run_bench(
    py: Python<'_>,
    name: &str,
    config_json: &str,
    out: Option<PathBuf>,
) -> PyResult<String> {
    let Some(benchmark) = Benchmark::parse(name) else {
        return Err(ConfigError::new_err(format!(
            "`{name}` is not crows, stereoset, pairs, winoqueer, redditbias, winobias, holistic, bold or bbq"
        )));
    };
    let cfg: BenchConfig = over_default("bench", &BenchConfig::default(), config_json)?;
    let run = py
        .detach(|| {
            fairlm_pipeline::bench::bench(benchmark, &cfg, out.as_deref(), python_terminal())
        })
        .map_err(to_py)?;
    to_json(&run.results)
}

/// An audit's results from the JSON of a results.json, checked as `fairlm compare` checks it.
fn results(which: &str, json: &str) -> PyResult<AuditResults> {
    let r: AuditResults = serde_json::from_str(json)
        .map_err(|e| DataError::new_err(format!("{which}: not an audit results.json: {e}")))?;
    r.check()
        .map_err(|reason| DataError::new_err(format!("{which}: {reason}")))?;
    Ok(r)
}

/// Before/after comparison of two audits' results (JSON) under `config` (JSON, over the
/// defaults of `fairlm compare`: gates, bootstrap, seed): the table's rows with paired
/// bootstrap CIs, and each gate's verdict.
#[pyfunction]
fn compare(py: Python<'_>, before: &str, after: &str, config: &str) -> PyResult<String> {
    let (before, after) = (results("before", before)?, results("after", after)?);
    let cfg: CompareConfig = over_default("compare", &CompareConfig::default(), config)?;
    let comparison = py
        .detach(|| fairlm_pipeline::compare(&before, &after, &cfg))
        .map_err(to_py)?;
    to_json(&comparison)
}

#[pymodule]
fn _fairlm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(audit, m)?)?;
    m.add_function(wrap_pyfunction!(score, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(mitigate, m)?)?;
    m.add_function(wrap_pyfunction!(run_bench, m)?)?;
    m.add_function(wrap_pyfunction!(experiment, m)?)?;
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
