//! Lexicons: axes (gender, race, ...), their groups, the phrase each group puts into a
//! template, and aligned term rows for counterfactual swaps. Read from TOML (`data/lexicon.toml`
//! is embedded; users add axes with `--lexicon FILE`). Does not swap text (see `swap`).

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{line_of, toml_error, Error, Result};

/// The lexicon written for this project.
pub const DEFAULT_LEXICON: &str = include_str!("../../../data/lexicon.toml");

/// One axis of the lexicon: its groups and the aligned forms a swap exchanges.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Axis {
    /// The axis's name (`gender`, `religion`, …).
    pub name: String,
    /// Its groups, in the order of every aligned row.
    pub groups: Vec<String>,
    /// One subject phrase per group that fills a template's slot.
    pub subjects: Vec<String>,
    /// Aligned rows: `terms[r][g]` is row r's form for group g.
    pub terms: Vec<Vec<String>>,
    /// Aligned rows of the forms a term takes when it stands alone as a noun ("a Christian
    /// who" → "a Jew who"), where the noun and the adjective differ for some group. A form in
    /// both `terms` and `nouns` is read as a noun when it is not followed by a word it modifies
    /// and not used as a predicate ("was Christian").
    pub nouns: Vec<Vec<String>>,
    /// Variant spellings matched as their canonical form and never produced by a swap:
    /// (variant, canonical), e.g. ("Koran", "Quran"), so no form names two rows of one group.
    pub aliases: Vec<(String, String)>,
    /// Forms that are adjectives only ("Jewish", "elderly"): the grammar check flags them where
    /// a twin uses them as a noun ("a Jewish who").
    pub adjectives: Vec<String>,
    /// Given names aligned by index: `names[g][i]`.
    pub names: Vec<Vec<String>>,
    /// The axis swaps English pronouns (a [female, male] axis).
    pub pronouns: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    axis: Vec<Spanned<RawAxis>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAxis {
    name: String,
    groups: Vec<String>,
    subjects: Vec<String>,
    #[serde(default)]
    terms: Vec<Spanned<Vec<String>>>,
    #[serde(default)]
    nouns: Vec<Spanned<Vec<String>>>,
    #[serde(default)]
    aliases: Vec<Spanned<Vec<String>>>,
    #[serde(default)]
    adjectives: Vec<String>,
    #[serde(default)]
    names: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pronouns: bool,
}

/// The axes a probe audits and a swap reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lexicon {
    /// Every axis.
    pub axes: Vec<Axis>,
}

impl Lexicon {
    /// The built-in lexicon (data/lexicon.toml).
    pub fn default_lexicon() -> Result<Self> {
        Self::parse(DEFAULT_LEXICON, Path::new("data/lexicon.toml"))
    }

    /// A lexicon file (TOML).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::error::read_text(path)?;
        Self::parse(&text, path)
    }

    /// Parses a lexicon's TOML, checking its rows line by line (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(path, text, e))?;
        let err = |offset: usize, reason: String| Error::Data {
            path: path.to_path_buf(),
            line: line_of(text, offset),
            reason,
        };
        let mut axes = Vec::new();
        for sp in raw.axis {
            let at = sp.span().start;
            let a = sp.into_inner();
            let k = a.groups.len();
            if k < 2 {
                return Err(err(
                    at,
                    format!("axis `{}` needs at least two groups", a.name),
                ));
            }
            if a.subjects.len() != k {
                return Err(err(
                    at,
                    format!(
                        "axis `{}`: {} subjects for {k} groups",
                        a.name,
                        a.subjects.len()
                    ),
                ));
            }
            if a.pronouns && k != 2 {
                return Err(err(
                    at,
                    format!(
                        "axis `{}`: pronoun morphology needs exactly two groups [female, male]",
                        a.name
                    ),
                ));
            }
            let aligned =
                |rows: Vec<Spanned<Vec<String>>>, what: &str| -> Result<Vec<Vec<String>>> {
                    let mut out = Vec::new();
                    for row in rows {
                        let row_at = row.span().start;
                        let row = row.into_inner();
                        if row.len() != k {
                            return Err(err(
                                row_at,
                                format!(
                                    "axis `{}`: a {what} row has {} forms for {k} groups",
                                    a.name,
                                    row.len()
                                ),
                            ));
                        }
                        if row.iter().any(|t| t.trim().is_empty()) {
                            return Err(err(row_at, format!("axis `{}`: empty term", a.name)));
                        }
                        out.push(row);
                    }
                    Ok(out)
                };
            let terms = aligned(a.terms, "term")?;
            let nouns = aligned(a.nouns, "noun")?;
            let known = |form: &str| {
                terms
                    .iter()
                    .chain(&nouns)
                    .flatten()
                    .any(|t| t.eq_ignore_ascii_case(form))
            };
            let mut aliases = Vec::new();
            for pair in a.aliases {
                let at = pair.span().start;
                let pair = pair.into_inner();
                let [variant, canonical] = pair.as_slice() else {
                    return Err(err(
                        at,
                        format!(
                            "axis `{}`: an alias is [variant, canonical], got {} forms",
                            a.name,
                            pair.len()
                        ),
                    ));
                };
                if !known(canonical) {
                    return Err(err(
                        at,
                        format!(
                            "axis `{}`: alias `{variant}` names `{canonical}`, which no term or noun row has",
                            a.name
                        ),
                    ));
                }
                if known(variant) {
                    return Err(err(
                        at,
                        format!(
                            "axis `{}`: alias `{variant}` is itself a term (a variant is never produced by a swap)",
                            a.name
                        ),
                    ));
                }
                aliases.push((variant.clone(), canonical.clone()));
            }
            let mut names = vec![Vec::new(); k];
            if let Some(table) = a.names {
                let names_at = table.span().start;
                for (group, list) in table.into_inner() {
                    let Some(g) = a.groups.iter().position(|x| *x == group) else {
                        return Err(err(
                            names_at,
                            format!(
                                "axis `{}`: names for unknown group `{group}` (groups: {})",
                                a.name,
                                a.groups.join(", ")
                            ),
                        ));
                    };
                    let list: Vec<String> = list
                        .as_array()
                        .map(|xs| {
                            xs.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .ok_or_else(|| {
                            err(
                                names_at,
                                format!(
                                    "axis `{}`: names.{group} must be a list of strings",
                                    a.name
                                ),
                            )
                        })?;
                    names[g] = list;
                }
            }
            axes.push(Axis {
                name: a.name,
                groups: a.groups,
                subjects: a.subjects,
                terms,
                nouns,
                aliases,
                adjectives: a.adjectives,
                names,
                pronouns: a.pronouns,
            });
        }
        Ok(Lexicon { axes })
    }

    /// Adds (or replaces, by name) the axes of `other`.
    pub fn extend(&mut self, other: Lexicon) {
        for a in other.axes {
            match self.axes.iter_mut().find(|x| x.name == a.name) {
                Some(x) => *x = a,
                None => self.axes.push(a),
            }
        }
    }

    /// The axis of this name.
    pub fn axis(&self, name: &str) -> Option<&Axis> {
        self.axes.iter().find(|a| a.name == name)
    }

    /// Keeps only the named axes; an unknown name is an error listing the known ones.
    pub fn select(&mut self, names: &[String]) -> Result<()> {
        for n in names {
            if self.axis(n).is_none() {
                let known: Vec<&str> = self.axes.iter().map(|a| a.name.as_str()).collect();
                return Err(Error::Invalid(format!(
                    "unknown axis `{n}` (known: {})",
                    known.join(", ")
                )));
            }
        }
        self.axes.retain(|a| names.contains(&a.name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lexicon_has_seven_axes_and_forty_names_per_gender() {
        let lx = Lexicon::default_lexicon().unwrap();
        assert!(lx.axes.len() >= 7);
        let g = lx.axis("gender").unwrap();
        assert!(g.names.iter().all(|n| n.len() >= 40));
    }

    #[test]
    fn misaligned_row_names_its_line() {
        let text = "[[axis]]\nname = \"x\"\ngroups = [\"a\", \"b\"]\nsubjects = [\"a\", \"b\"]\nterms = [\n  [\"p\", \"q\"],\n  [\"r\"],\n]\n";
        let e = Lexicon::parse(text, Path::new("lx.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("lx.toml:7:"), "{e}");
        assert!(e.contains("1 forms for 2 groups"), "{e}");
    }

    #[test]
    fn names_for_a_missing_group_are_refused() {
        let text = "[[axis]]\nname = \"x\"\ngroups = [\"a\", \"b\"]\nsubjects = [\"a\", \"b\"]\n[axis.names]\nc = [\"Zed\"]\n";
        let e = Lexicon::parse(text, Path::new("lx.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown group `c`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text = "[[axis]]\nname = \"x\"\ngroup = [\"a\", \"b\"]\n";
        let e = Lexicon::parse(text, Path::new("lx.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("lx.toml:"), "{e}");
    }
}
