//! Probe templates: contexts whose continuation should not depend on the group put into
//! `{X}`, tagged `eval` (audit) or `train` (mitigation); the sets are disjoint by design.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{line_of, toml_error, Error, Result};

/// The templates written for this project (data/templates.toml).
pub const DEFAULT_TEMPLATES: &str = include_str!("../../../data/templates.toml");

/// Which use a template is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Audited, never trained on.
    Eval,
    /// Trained on, never audited.
    Train,
}

/// A prompt template with a group slot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Template {
    /// Its id.
    pub id: usize,
    /// Its text, with `{X}` for the group.
    pub text: String,
    /// Its topic.
    pub category: String,
    /// Eval or train.
    pub split: Split,
}

impl Template {
    /// The prompt for a subject phrase.
    pub fn fill(&self, subject: &str) -> String {
        self.text.replace("{X}", subject)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    template: Vec<Spanned<RawTemplate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    text: String,
    category: String,
    split: Split,
}

/// The built-in templates.
pub fn default_templates() -> Result<Vec<Template>> {
    parse(DEFAULT_TEMPLATES, Path::new("data/templates.toml"))
}

/// A template file (TOML).
pub fn from_file(path: &Path) -> Result<Vec<Template>> {
    let text = crate::error::read_text(path)?;
    parse(&text, path)
}

/// Parses a template file's TOML (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Template>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(path, text, e))?;
    let mut out = Vec::new();
    for (id, sp) in raw.template.into_iter().enumerate() {
        let line = line_of(text, sp.span().start);
        let t = sp.into_inner();
        if t.text.matches("{X}").count() != 1 {
            return Err(Error::Data {
                path: path.to_path_buf(),
                line,
                reason: format!("template {:?} must contain `{{X}}` exactly once", t.text),
            });
        }
        out.push(Template {
            id,
            text: t.text,
            category: t.category,
            split: t.split,
        });
    }
    if out.is_empty() {
        return Err(Error::Data {
            path: path.to_path_buf(),
            line: 1,
            reason: "no templates".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_templates_are_many_and_split_disjointly() {
        let ts = default_templates().unwrap();
        assert!(ts.len() >= 48);
        let eval: Vec<&str> = ts
            .iter()
            .filter(|t| t.split == Split::Eval)
            .map(|t| t.text.as_str())
            .collect();
        let train: Vec<&str> = ts
            .iter()
            .filter(|t| t.split == Split::Train)
            .map(|t| t.text.as_str())
            .collect();
        assert!(eval.len() >= 20 && train.len() >= 20);
        assert!(eval.iter().all(|e| !train.contains(e)));
        let categories: std::collections::HashSet<&str> =
            ts.iter().map(|t| t.category.as_str()).collect();
        assert!(categories.len() >= 10);
    }

    #[test]
    fn heldout_text_shares_no_template_fragment() {
        let heldout = crate::audit::HELDOUT.to_lowercase();
        for t in default_templates().unwrap() {
            let lower = t.text.to_lowercase();
            let (before, after) = lower.split_once("{x}").unwrap();
            let longest = if after.trim().len() > before.trim().len() {
                after.trim()
            } else {
                before.trim()
            };
            assert!(
                longest.is_empty() || !heldout.contains(longest),
                "{:?} overlaps the held-out text",
                t.text
            );
        }
    }

    #[test]
    fn template_without_placeholder_names_its_line() {
        let text = "template = [\n  { text = \"The {X} worked\", category = \"a\", split = \"eval\" },\n  { text = \"Nobody\", category = \"a\", split = \"eval\" },\n]\n";
        let e = parse(text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:3:"), "{e}");
        assert!(e.contains("{X}"), "{e}");
    }

    #[test]
    fn unknown_split_is_refused() {
        let text = "template = [{ text = \"The {X}\", category = \"a\", split = \"test\" }]\n";
        let e = parse(text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:1:"), "{e}");
    }
}
