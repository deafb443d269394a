//! What made an output directory: fairlm's version, the model and the input files by content,
//! and the run's whole config — written when a run starts, and compared when it is resumed so
//! that finished stages made with another model, other settings or a changed lexicon, template
//! or corpus file are never reused (the first difference is named).

use std::path::Path;

use fairlm_bias::audit::write_atomic;
use fairlm_model::fetch::sha256_file;
use serde::Serialize;
use serde_json::Value;

use crate::config::EMBEDDED_KEY;
use crate::error::{Error, Result};

/// The sha256 of each input file a config names (a name with no file is left out).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inputs(std::collections::BTreeMap<String, String>);

impl Inputs {
    /// The files `named` (name, path if any) by content.
    pub fn of(named: &[(&str, Option<&Path>)]) -> Result<Inputs> {
        let mut out = std::collections::BTreeMap::new();
        for (name, path) in named {
            let Some(path) = path else { continue };
            if path.is_dir() {
                return Err(Error::file(path, "is a directory, not a file"));
            }
            if !path.exists() {
                return Err(Error::file(path, "no such file or directory"));
            }
            out.insert(format!("{name}_sha256"), sha256_file(path)?);
        }
        Ok(Inputs(out))
    }
}

/// An output directory's record: its JSON is what a resume compares.
pub struct Record(Value);

impl Record {
    /// The record of a run of `config` on the model at `model_path` reading `inputs`.
    pub fn new(model_path: &Path, inputs: Inputs, config: &impl Serialize) -> Result<Record> {
        let mut record = serde_json::Map::new();
        record.insert("fairlm_version".into(), env!("CARGO_PKG_VERSION").into());
        // The model by its content: a path may be spelt two ways.
        let sha = crate::model::model_sha256(model_path)?;
        record.insert("model_sha256".into(), sha.into());
        record.insert("inputs".into(), to_json(&inputs)?);
        record.insert(EMBEDDED_KEY.into(), to_json(config)?);
        Ok(Record(Value::Object(record)))
    }
}

fn to_json(value: &impl Serialize) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Config(e.to_string()))
}

/// Refuses a resume of the directory whose record is at `path` when `record` differs from it,
/// naming the first field that does.
pub fn check(path: &Path, record: &Record) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let text = std::fs::read_to_string(path).map_err(|_| {
        Error::Config(format!(
            "--resume: {} has finished stages but no {name} saying what made them; start a new --out",
            dir.display()
        ))
    })?;
    let then: Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(path, format!("not a fairlm run record: {e}")))?;
    if let Some(field) = first_difference(&comparable(then), &comparable(record.0.clone()), "") {
        return Err(Error::file(
            path,
            format!("--resume with other settings or inputs than the interrupted run: `{field}` differs; resume with the same ones or start a new --out"),
        ));
    }
    Ok(())
}

/// Writes `record` to `path`.
pub fn write(path: &Path, record: &Record) -> Result<()> {
    let text = serde_json::to_string_pretty(&record.0).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// A record without its config's `model`, which the record identifies by content
/// (`model_sha256`): a resume may spell the path another way.
fn comparable(mut record: Value) -> Value {
    if let Some(config) = record.get_mut(EMBEDDED_KEY).and_then(Value::as_object_mut) {
        config.remove("model");
    }
    record
}

/// The dotted path of the first leaf where `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, &path),
                    _ => Some(path),
                }
            })
        }
        _ if a == b => None,
        _ => Some(at.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_field_is_named_with_its_path() {
        let a =
            serde_json::json!({"run_config": {"train": {"steps": 140, "lr": 3e-5}}, "inputs": {}});
        let b =
            serde_json::json!({"run_config": {"train": {"steps": 140, "lr": 1e-4}}, "inputs": {}});
        assert_eq!(
            first_difference(&a, &b, ""),
            Some("run_config.train.lr".into())
        );
        let c = serde_json::json!({"run_config": {"train": {"steps": 140, "lr": 3e-5}}, "inputs": {"lexicon_sha256": "ab"}});
        assert_eq!(
            first_difference(&a, &c, ""),
            Some("inputs.lexicon_sha256".into())
        );
        assert_eq!(first_difference(&a, &a, ""), None);
    }
}
