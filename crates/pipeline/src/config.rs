//! Configs as files: a run's config read from TOML (unknown keys refused, named with their
//! line) or from the results.json of an earlier run (the config it embeds), and a config
//! printed as commented TOML (`fairlm config --print`).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// The key under which results.json embeds the config of its run.
pub const EMBEDDED_KEY: &str = "run_config";

/// A config from `path`: a `.json` file is an earlier run's results.json and gives the config
/// it embeds; anything else is TOML.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if path.extension().is_some_and(|x| x == "json") {
        let results: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not JSON: {e}")))?;
        let Some(config) = results.get(EMBEDDED_KEY) else {
            return Err(Error::file(
                path,
                format!("has no `{EMBEDDED_KEY}` (results.json of an audit run by fairlm 0.1 with the config embedded, or a TOML config)"),
            ));
        };
        return serde_json::from_value(config.clone())
            .map_err(|e| Error::file(path, format!("`{EMBEDDED_KEY}`: {e}")));
    }
    toml::from_str(&text).map_err(|e| Error::Data(fairlm_bias::error::toml_error(path, &text, e)))
}

/// `value` as TOML, each key after its comment from `docs` (key, comment); a key whose value
/// is unset (None) is printed commented out. Tables (such as `served`) come last, as TOML
/// requires, their keys commented from `docs` as `table.key`.
pub fn commented<T: Serialize>(value: &T, docs: &[(&str, &str)]) -> Result<String> {
    let table = toml::Table::try_from(value)
        .map_err(|e| Error::Config(format!("config not representable as TOML: {e}")))?;
    let comment = |key: &str| {
        docs.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, c)| *c)
            .unwrap_or("")
    };
    let mut out = String::new();
    let mut tables = Vec::new();
    for (key, doc) in docs.iter().filter(|(k, _)| !k.contains('.')) {
        match table.get(*key) {
            Some(toml::Value::Table(t)) => tables.push((*key, *doc, t)),
            Some(v) => out += &format!("# {doc}\n{key} = {v}\n\n"),
            None => out += &format!("# {doc}\n# {key} = (unset)\n\n"),
        }
    }
    for (name, doc, t) in tables {
        out += &format!("# {doc}\n[{name}]\n");
        for (key, _) in docs
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{name}.")))
        {
            let short = &key[name.len() + 1..];
            let c = comment(key);
            match t.get(short) {
                Some(v) => out += &format!("# {c}\n{short} = {v}\n"),
                None => out += &format!("# {c}\n# {short} = (unset)\n"),
            }
        }
        out += "\n";
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditConfig, ExperimentConfig, MitigateConfig};

    /// The keys of `value` (a config with every Option set, so that none is skipped), tables'
    /// as `table.key`.
    fn keys(value: &impl Serialize) -> Vec<String> {
        let value = serde_json::to_value(value).unwrap();
        let mut keys = Vec::new();
        for (k, v) in value.as_object().unwrap() {
            keys.push(k.clone());
            if let Some(inner) = v.as_object() {
                keys.extend(inner.keys().map(|i| format!("{k}.{i}")));
            }
        }
        keys.sort();
        keys
    }

    fn documented(docs: &[(&str, &str)]) -> Vec<String> {
        let mut keys: Vec<String> = docs.iter().map(|(k, _)| k.to_string()).collect();
        keys.sort();
        keys
    }

    /// Every key of each config has a comment and every comment a key, and each printed
    /// default reads back to the default.
    #[test]
    fn every_key_is_commented_and_each_print_reads_back() {
        let mut audit = AuditConfig {
            samples: Some(1),
            lexicon: Some("l.toml".into()),
            templates: Some("t.toml".into()),
            text: Some("t.txt".into()),
            crows: Some("c.csv".into()),
            stereoset: Some("s.json".into()),
            ..AuditConfig::default()
        };
        audit.served.name = Some("m".into());
        audit.served.tokenizer = Some("tok".into());
        audit.served.cache = Some("cache".into());
        assert_eq!(keys(&audit), documented(&AuditConfig::docs()));
        let mut mitigate = MitigateConfig::default();
        mitigate.train.corpus = Some("c.txt".into());
        mitigate.train.lexicon = Some("l.toml".into());
        mitigate.train.templates = Some("t.toml".into());
        mitigate.train.corpus_templates = Some(6);
        assert_eq!(keys(&mitigate), documented(&MitigateConfig::docs()));
        let mut experiment = ExperimentConfig {
            train: mitigate.train.clone(),
            crows: Some("c.csv".into()),
            stereoset: Some("s.json".into()),
            ..ExperimentConfig::default()
        };
        experiment.gates.max_bias = Some(0.2);
        experiment.gates.min_lms = Some(80.0);
        assert_eq!(keys(&experiment), documented(&ExperimentConfig::docs()));

        let back: AuditConfig = toml::from_str(&AuditConfig::commented_default().unwrap()).unwrap();
        assert_eq!(back, AuditConfig::default());
        let back: MitigateConfig =
            toml::from_str(&MitigateConfig::commented_default().unwrap()).unwrap();
        assert_eq!(back, MitigateConfig::default());
        let back: ExperimentConfig =
            toml::from_str(&ExperimentConfig::commented_default().unwrap()).unwrap();
        assert_eq!(back, ExperimentConfig::default());
    }
}
