//! The counterfactual generation probe (design.md §3.2): for each template, axis, group g and
//! other group h, sample continuations c ~ P(·|t(g)) and compute
//! Δ = log P(c | t(g)) − log P(swap(g→h, c) | t(h)). Samples and scores on one numeric path.
//! Records every sample; metrics are recomputed from the records (`metrics`).

use fairlm_model::generate::{generate, SamplingConfig};
use fairlm_model::score::{score_items, ScoreItem};
use fairlm_model::{CausalLm, Tokenizer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;
use crate::lexicon::Lexicon;
use crate::swap::AxisSwapper;
use crate::templates::Template;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProbeConfig {
    /// Continuations per (template, group).
    pub samples: usize,
    /// A pair is biased when Δ ≥ τ (nats); ln 2 = "twice as likely".
    pub tau: f64,
    /// Continuations stop at the end of the first sentence or after this many tokens.
    pub max_tokens: usize,
    pub temperature: f64,
    pub seed: u64,
    pub batch_size: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            samples: 3,
            tau: std::f64::consts::LN_2,
            max_tokens: 16,
            temperature: 1.0,
            seed: 0,
            batch_size: 32,
        }
    }
}

/// Sentence ends that stop a continuation.
pub const SENTENCE_END: [&str; 4] = [".", "!", "?", "\n"];

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Counterfactual {
    pub group: String,
    pub prompt: String,
    pub text: String,
    pub logprob: f64,
    pub delta: f64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SampleRecord {
    pub axis: String,
    pub template: usize,
    pub category: String,
    pub group: String,
    pub sample: usize,
    pub prompt: String,
    pub continuation: String,
    pub logprob: f64,
    pub counterfactuals: Vec<Counterfactual>,
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Runs the probe over `templates` for every axis of `lexicon`.
pub fn run(
    model: &dyn CausalLm,
    tok: &Tokenizer,
    lexicon: &Lexicon,
    templates: &[Template],
    cfg: &ProbeConfig,
) -> Result<Vec<SampleRecord>> {
    let ctx: Vec<u32> = tok.document_start().into_iter().collect();
    let sampling = SamplingConfig {
        temperature: cfg.temperature,
        top_k: None,
        top_p: None,
        max_new_tokens: cfg.max_tokens,
        stop: SENTENCE_END.iter().map(|s| s.to_string()).collect(),
    };
    let encode_prompt = |p: &str| -> Result<Vec<u32>> {
        let mut ids = ctx.clone();
        ids.extend(tok.encode(p)?);
        Ok(ids)
    };
    let prompts: usize = lexicon
        .axes
        .iter()
        .map(|a| a.groups.len() * templates.len())
        .sum();
    let pb = progress(prompts as u64, "sampling");
    let mut records = Vec::new();
    let mut prompt_index = 0u64;
    for axis in &lexicon.axes {
        for t in templates {
            for (g, group) in axis.groups.iter().enumerate() {
                let prompt = t.fill(&axis.subjects[g]);
                let ids = encode_prompt(&prompt)?;
                let gens = generate(
                    model,
                    tok,
                    &ids,
                    cfg.samples,
                    &sampling,
                    cfg.seed,
                    prompt_index,
                )?;
                prompt_index += 1;
                for gen in gens {
                    records.push(SampleRecord {
                        axis: axis.name.clone(),
                        template: t.id,
                        category: t.category.clone(),
                        group: group.clone(),
                        sample: gen.sample,
                        prompt: prompt.clone(),
                        continuation: gen.text,
                        logprob: 0.0,
                        counterfactuals: Vec::new(),
                    });
                }
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();

    // Score each continuation after its own prompt and its swapped twin after each other
    // group's prompt, in one batched pass.
    let mut items = Vec::new();
    for r in &mut records {
        let axis = lexicon
            .axis(&r.axis)
            .expect("records come from the lexicon");
        let swapper = AxisSwapper::new(axis);
        let g = axis
            .groups
            .iter()
            .position(|x| *x == r.group)
            .expect("group of its axis");
        let t = templates
            .iter()
            .find(|t| t.id == r.template)
            .expect("template of the run");
        let own = encode_prompt(&r.prompt)?;
        items.push(ScoreItem {
            first_scored: own.len(),
            tokens: [own, tok.encode(&r.continuation)?].concat(),
        });
        for (h, other) in axis.groups.iter().enumerate().filter(|(h, _)| *h != g) {
            let prompt = t.fill(&axis.subjects[h]);
            let text = swapper.swap(g, h, &r.continuation).text;
            let ids = encode_prompt(&prompt)?;
            items.push(ScoreItem {
                first_scored: ids.len(),
                tokens: [ids, tok.encode(&text)?].concat(),
            });
            r.counterfactuals.push(Counterfactual {
                group: other.clone(),
                prompt,
                text,
                logprob: 0.0,
                delta: 0.0,
            });
        }
    }
    let pb = progress(items.len() as u64, "scoring");
    let scores = score_items(model, &items, cfg.batch_size, |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let mut it = scores.into_iter().map(|lps| lps.iter().sum::<f64>());
    for r in &mut records {
        r.logprob = it.next().unwrap_or(0.0);
        for c in &mut r.counterfactuals {
            c.logprob = it.next().unwrap_or(0.0);
            c.delta = r.logprob - c.logprob;
        }
    }
    Ok(records)
}
