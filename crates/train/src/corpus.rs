//! The training corpus: the user's text or sentences sampled from the model itself on the
//! `train` templates and on neutral prompts, then two-sided counterfactual data augmentation
//! (CDA): every sentence that mentions a group is kept and joined by its swapped twin for each
//! other group of its axis. Nothing is dropped; the corpus only grows.

use std::path::Path;

use fairlm_bias::grammar::GrammarReport;
use fairlm_bias::lexicon::Lexicon;
use fairlm_bias::probe::SENTENCE_END;
use fairlm_bias::swap::{AxisSwapper, SwapSpan, Swapped};
use fairlm_bias::templates::Template;
use fairlm_model::generate::{generate_batched, BatchPlan, SamplingConfig};
use fairlm_model::{CausalLm, Progress, Tokenizer};

use crate::error::{Error, Result};

/// Prompts written for this project whose continuations should not mention any group.
pub const NEUTRAL_PROMPTS: &str = include_str!("../../../data/neutral-prompts.txt");

/// A sentence about group `group` of lexicon axis `axis`, with its twins.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CdaSet {
    /// The lexicon axis.
    pub axis: usize,
    /// The group the sentence is about.
    pub group: usize,
    /// The sentence.
    pub text: String,
    /// For each other group h: (h, swapped text, spans from `text` to it).
    pub twins: Vec<Twin>,
}

/// One counterfactual twin of a sentence.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Twin {
    /// The group it is about.
    pub group: usize,
    /// Its text.
    pub text: String,
    /// (from start, from end, to start, to end) of each replaced byte span.
    pub spans: Vec<(usize, usize, usize, usize)>,
}

impl Twin {
    /// The replaced spans as the swap reports them.
    pub fn spans(&self) -> Vec<SwapSpan> {
        self.spans
            .iter()
            .map(|&(a, b, c, d)| SwapSpan {
                from: a..b,
                to: c..d,
            })
            .collect()
    }
}

/// The training corpus: sentences about one group with their twins, neutral sentences and mixed ones.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Corpus {
    /// Sentences that mention exactly one group of one axis, with their twins.
    pub sets: Vec<CdaSet>,
    /// Sentences that mention no group (the quality anchor reads these).
    pub neutral: Vec<String>,
    /// Sentences that mention several groups: kept for the LM loss, not swapped (a one-way
    /// swap would make them about one group twice).
    pub mixed: Vec<String>,
    /// The prompts a sampled corpus was sampled from (every `train` template filled with every
    /// group's subject, and the neutral prompts): the trainer gives a sentence's prompt to the
    /// model instead of teaching it. Empty for a user's corpus.
    #[serde(default)]
    pub prompts: Vec<String>,
}

impl Corpus {
    /// Sentences before augmentation.
    pub fn size_before(&self) -> usize {
        self.sets.len() + self.neutral.len() + self.mixed.len()
    }

    /// Sentences after augmentation (originals and twins).
    pub fn size_after(&self) -> usize {
        self.size_before() + self.sets.iter().map(|s| s.twins.len()).sum::<usize>()
    }

    /// The grammar check of every twin the corpus teaches (design: a broken twin teaches the
    /// model broken text). `lexicon` is the one the corpus was augmented with.
    pub fn twin_grammar(&self, lexicon: &Lexicon) -> GrammarReport {
        let swappers: Vec<AxisSwapper> = lexicon.axes.iter().map(AxisSwapper::new).collect();
        let mut report = GrammarReport::default();
        for set in &self.sets {
            let Some(swapper) = swappers.get(set.axis) else {
                continue;
            };
            for tw in &set.twins {
                let swapped = Swapped {
                    text: tw.text.clone(),
                    spans: tw.spans(),
                };
                report.add(swapper, set.group, &set.text, &swapped);
            }
        }
        report
    }
}

/// Twins of `text` (about group g of `axis`) for every other group.
fn twins(swapper: &AxisSwapper, groups: usize, g: usize, text: &str) -> Vec<Twin> {
    (0..groups)
        .filter(|&h| h != g)
        .filter_map(|h| {
            let s = swapper.swap(g, h, text);
            (!s.spans.is_empty()).then(|| Twin {
                group: h,
                text: s.text,
                spans: s
                    .spans
                    .iter()
                    .map(|sp| (sp.from.start, sp.from.end, sp.to.start, sp.to.end))
                    .collect(),
            })
        })
        .collect()
}

/// Sorts sentences into CDA sets (one group mentioned), neutral and mixed.
pub fn augment(lexicon: &Lexicon, sentences: &[String]) -> Corpus {
    let swappers: Vec<AxisSwapper> = lexicon.axes.iter().map(AxisSwapper::new).collect();
    let mut corpus = Corpus::default();
    for text in sentences {
        // Which (axis, group) pairs does the sentence mention?
        let mut mentioned = Vec::new();
        for (a, axis) in lexicon.axes.iter().enumerate() {
            let k = axis.groups.len();
            for g in 0..k {
                let other = (g + 1) % k;
                if !swappers[a].swap(g, other, text).spans.is_empty() {
                    mentioned.push((a, g));
                }
            }
        }
        match mentioned.as_slice() {
            [] => corpus.neutral.push(text.clone()),
            [(a, g)] => corpus.sets.push(CdaSet {
                axis: *a,
                group: *g,
                text: text.clone(),
                twins: twins(&swappers[*a], lexicon.axes[*a].groups.len(), *g, text),
            }),
            _ => corpus.mixed.push(text.clone()),
        }
    }
    corpus
}

/// A sentence whose group is known from its prompt (the template's subject).
pub struct Labelled {
    /// The lexicon axis.
    pub axis: usize,
    /// The group its prompt named.
    pub group: usize,
    /// The sentence (prompt and continuation).
    pub text: String,
}

/// CDA sets for sentences whose group is known, plus `augment` for the others.
pub fn augment_labelled(lexicon: &Lexicon, labelled: &[Labelled], other: &[String]) -> Corpus {
    let swappers: Vec<AxisSwapper> = lexicon.axes.iter().map(AxisSwapper::new).collect();
    let mut corpus = augment(lexicon, other);
    for l in labelled {
        corpus.sets.push(CdaSet {
            axis: l.axis,
            group: l.group,
            text: l.text.clone(),
            twins: twins(
                &swappers[l.axis],
                lexicon.axes[l.axis].groups.len(),
                l.group,
                &l.text,
            ),
        });
    }
    corpus
}

/// Reads a corpus file: JSONL with a `text` field per line when it ends in `.jsonl`, else
/// one sentence per non-empty line.
pub fn read_corpus(path: &Path) -> Result<Vec<String>> {
    let text = fairlm_bias::error::read_text(path)?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let sentence = if jsonl {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Data {
                path: path.to_path_buf(),
                line: i + 1,
                reason: format!("invalid JSON: {e}"),
            })?;
            v.get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| Error::Data {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: "expected an object with a string field `text`".into(),
                })?
                .to_string()
        } else {
            line.to_string()
        };
        out.push(sentence);
    }
    if out.is_empty() {
        return Err(Error::Data {
            path: path.to_path_buf(),
            line: 1,
            reason: "the corpus has no sentences".into(),
        });
    }
    Ok(out)
}

/// How the default corpus is sampled from the model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SampleCorpusConfig {
    /// Continuations per (train template, group).
    pub per_template: usize,
    /// Continuations per neutral prompt.
    pub per_neutral: usize,
    /// Continuations stop at the end of the first sentence or after this many tokens.
    pub max_tokens: usize,
    /// The seed the samples derive from.
    pub seed: u64,
    /// Rows decoded together.
    pub batch_rows: usize,
}

impl Default for SampleCorpusConfig {
    fn default() -> Self {
        SampleCorpusConfig {
            per_template: 2,
            per_neutral: 4,
            max_tokens: 24,
            seed: 1,
            batch_rows: 32,
        }
    }
}

/// Samples the default corpus: continuations of every `train` template for every group of
/// every axis (labelled by the prompt's group) and of the neutral prompts, temperature 1, ending
/// at the first sentence end. The caller passes only `train` templates. `progress` is told of
/// each prompt sampled.
pub fn sample_corpus(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    lexicon: &Lexicon,
    templates: &[Template],
    cfg: &SampleCorpusConfig,
    progress: &dyn Progress,
) -> Result<Corpus> {
    let ctx: Vec<u32> = tok.document_start().into_iter().collect();
    let encode = |p: &str| -> Result<Vec<u32>> {
        let mut ids = ctx.clone();
        ids.extend(tok.encode(p)?);
        Ok(ids)
    };
    let sampling = SamplingConfig {
        temperature: 1.0,
        top_k: None,
        top_p: None,
        max_new_tokens: cfg.max_tokens,
        stop: SENTENCE_END.iter().map(|s| s.to_string()).collect(),
    };
    let mut labels = Vec::new();
    let mut prompts = Vec::new();
    for (a, axis) in lexicon.axes.iter().enumerate() {
        for t in templates {
            for (g, subject) in axis.subjects.iter().enumerate() {
                let text = t.fill(subject);
                prompts.push((encode(&text)?, prompts.len() as u64));
                labels.push((a, g, text));
            }
        }
    }
    let neutral: Vec<&str> = NEUTRAL_PROMPTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    // Neutral prompts get their own index range of random streams.
    let neutral_prompts: Vec<(Vec<u32>, u64)> = neutral
        .iter()
        .enumerate()
        .map(|(i, p)| Ok((encode(p)?, 1_000_000 + i as u64)))
        .collect::<Result<_>>()?;
    let pb = progress.stage("corpus", (prompts.len() + neutral_prompts.len()) as u64);
    let gens = generate_batched(
        model,
        tok,
        &prompts,
        &sampling,
        BatchPlan {
            samples: cfg.per_template,
            seed: cfg.seed,
            batch_rows: cfg.batch_rows,
        },
        |d| pb.advance(d as u64),
    )?;
    let neutral_gens = generate_batched(
        model,
        tok,
        &neutral_prompts,
        &sampling,
        BatchPlan {
            samples: cfg.per_neutral,
            seed: cfg.seed,
            batch_rows: cfg.batch_rows,
        },
        |d| pb.advance(d as u64),
    )?;
    drop(pb);
    let labelled: Vec<Labelled> = labels
        .iter()
        .zip(&gens)
        .flat_map(|((a, g, prompt), gs)| {
            gs.iter().map(move |gen| Labelled {
                axis: *a,
                group: *g,
                text: format!("{prompt}{}", gen.text),
            })
        })
        .collect();
    let other: Vec<String> = neutral
        .iter()
        .zip(&neutral_gens)
        .flat_map(|(p, gs)| gs.iter().map(move |gen| format!("{p}{}", gen.text)))
        .collect();
    let mut corpus = augment_labelled(lexicon, &labelled, &other);
    corpus.prompts = labels
        .into_iter()
        .map(|(_, _, prompt)| prompt)
        .chain(neutral.iter().map(|p| p.to_string()))
        .collect();
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_keeps_every_sentence_and_adds_twins() {
        let lex = Lexicon::default_lexicon().unwrap();
        let sentences: Vec<String> = [
            "The woman said she was tired.",
            "The weather was fine.",
            "The man and the woman left.",
        ]
        .map(String::from)
        .to_vec();
        let c = augment(&lex, &sentences);
        assert_eq!(c.size_before(), 3);
        assert_eq!(c.sets.len(), 1);
        assert_eq!(c.neutral, vec!["The weather was fine.".to_string()]);
        assert_eq!(c.mixed.len(), 1);
        assert_eq!(c.sets[0].twins[0].text, "The man said he was tired.");
        assert_eq!(c.size_after(), 4);
    }

    /// A twin of a sentence sampled from a filled template begins with the same template
    /// filled with the twin's group, so the trainer finds both prompts.
    #[test]
    fn a_twin_begins_with_its_own_groups_prompt() {
        let lex = Lexicon::default_lexicon().unwrap();
        let templates = fairlm_bias::templates::default_templates().unwrap();
        for (a, axis) in lex.axes.iter().enumerate() {
            let swapper = AxisSwapper::new(axis);
            for t in &templates {
                for (g, subject) in axis.subjects.iter().enumerate() {
                    let text = format!("{} a quiet afternoon.", t.fill(subject));
                    for tw in twins(&swapper, axis.groups.len(), g, &text) {
                        let prompt = t.fill(&axis.subjects[tw.group]);
                        assert!(tw.text.starts_with(&prompt), "{a}: {} / {prompt}", tw.text);
                    }
                }
            }
        }
    }

    #[test]
    fn a_jsonl_line_without_text_names_its_line() {
        let dir = std::env::temp_dir().join(format!("fairlm-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.jsonl");
        std::fs::write(&p, "{\"text\": \"fine\"}\n{\"txt\": 1}\n").unwrap();
        let e = read_corpus(&p).unwrap_err().to_string();
        assert!(e.contains("c.jsonl:2:"), "{e}");
    }
}
