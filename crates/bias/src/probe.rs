//! The counterfactual generation probe (design.md §3.2): for each template, axis, group g and
//! other group h, sample continuations c ~ P(·|t(g)) and compute
//! Δ = log P(c | t(g)) − log P(swap(g→h, c) | t(h)). Samples and scores on one numeric path.
//! Records every sample; metrics are recomputed from the records (`metrics`).

use fairlm_model::backend::Backend;
use fairlm_model::generate::{BatchPlan, SamplingConfig};
use std::collections::BTreeMap;

use fairlm_model::{Progress, Tokenizer};

use crate::error::Result;
use crate::lexicon::Lexicon;
use crate::shard::Shard;
use crate::swap::AxisSwapper;
use crate::templates::Template;

/// The counterfactual generation probe's settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProbeConfig {
    /// Continuations per (template, group).
    pub samples: usize,
    /// A pair is biased when Δ ≥ τ (nats); ln 2 = "twice as likely".
    pub tau: f64,
    /// Continuations stop at the end of the first sentence or after this many tokens.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// The seed every sample derives from.
    pub seed: u64,
    /// Rows decoded together.
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

/// A prompt's ids and the continuations scored after it, each with its item index.
type PromptGroup = (Vec<u32>, Vec<(usize, Vec<u32>)>);

/// Sentence ends that stop a continuation.
pub const SENTENCE_END: [&str; 4] = [".", "!", "?", "\n"];

/// A sample scored after another group's prompt.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Counterfactual {
    /// The other group.
    pub group: String,
    /// Its prompt.
    pub prompt: String,
    /// The continuation with the group's words swapped.
    pub text: String,
    /// Its total log-probability after that prompt.
    pub logprob: f64,
    /// Δ: the sample's log-prob after its own prompt minus this one (nats).
    pub delta: f64,
    /// Δ ≥ τ: the model found the sample at least e^τ times as likely for its own group.
    #[serde(default)]
    pub flagged: bool,
}

/// One sampled continuation and its counterfactual scores.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SampleRecord {
    /// The axis.
    pub axis: String,
    /// The template's id.
    pub template: usize,
    /// The template's category.
    pub category: String,
    /// The group the prompt names.
    pub group: String,
    /// The sample's number for its prompt.
    pub sample: usize,
    /// The prompt.
    pub prompt: String,
    /// The sampled continuation.
    pub continuation: String,
    /// Its total log-probability after its own prompt.
    pub logprob: f64,
    /// The continuation scored after every other group's prompt.
    pub counterfactuals: Vec<Counterfactual>,
}

/// Ancestral sampling at `temperature` (no top-k/top-p) that stops at the end of the first
/// sentence or after `max_tokens`: how the probe and `bench bold` sample continuations.
pub fn first_sentence_sampling(temperature: f64, max_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        temperature,
        top_k: None,
        top_p: None,
        max_new_tokens: max_tokens,
        stop: SENTENCE_END.iter().map(|s| s.to_string()).collect(),
    }
}

/// One template's records, per axis of the lexicon.
pub type TemplateRecords = Vec<Vec<SampleRecord>>;

/// Templates already probed, by position, and a hook told of each one probed now: how an
/// interrupted audit resumes (`audit::run_part`).
pub struct Resume<'a> {
    /// Records of the templates already probed, by position.
    pub done: BTreeMap<usize, TemplateRecords>,
    /// Called with each template once it is probed (the caller saves it).
    pub on_template: &'a mut dyn FnMut(usize, &TemplateRecords) -> Result<()>,
}

/// Runs the probe over `templates` for every axis of `lexicon`, or over the templates `shard`
/// owns. Each template is one block — every axis's groups filled into it, sampled, and their
/// samples and swapped twins scored — whose batches hold nothing from another template: the
/// engine's rounding depends on what shares a batch, so this is what makes a shard's records
/// the whole run's, bit for bit (and a resumed run's the uninterrupted one's). A prompt's
/// sample streams are numbered by its place in the whole probe. Records are in axis, template,
/// group, sample order. `progress` is told of each template done.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &dyn Backend,
    tok: &Tokenizer,
    lexicon: &Lexicon,
    templates: &[Template],
    cfg: &ProbeConfig,
    shard: Shard,
    resume: Resume,
    progress: &dyn Progress,
) -> Result<Vec<SampleRecord>> {
    let Resume {
        mut done,
        on_template,
    } = resume;
    let owned: Vec<usize> = (0..templates.len())
        .filter(|&t| shard.owns_unit(t))
        .collect();
    let pb = progress.stage("templates", owned.len() as u64);
    let mut blocks: BTreeMap<usize, TemplateRecords> = BTreeMap::new();
    let mut todo = Vec::new();
    for &t in &owned {
        match done.remove(&t) {
            Some(block) if block.len() == lexicon.axes.len() => {
                blocks.insert(t, block);
                pb.advance(1);
            }
            _ => todo.push(t),
        }
    }
    // Templates are independent: a backend that waits on a server probes several at once
    // (each block's numbers are the same whichever runs beside it).
    let workers = model.independent_work().clamp(1, todo.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let (sender, finished) = std::sync::mpsc::channel::<(usize, Result<TemplateRecords>)>();
    let outcome = std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let sender = sender.clone();
            let (next, failed, todo) = (&next, &failed, &todo);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= todo.len() || failed.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let block = run_template(model, tok, lexicon, templates, todo[i], cfg);
                if sender.send((todo[i], block)).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        // Saved and counted here, on the caller's thread, as each template finishes.
        for (t, block) in finished {
            let block = block.and_then(|b| on_template(t, &b).map(|()| b));
            match block {
                Ok(b) => {
                    blocks.insert(t, b);
                    pb.advance(1);
                }
                Err(e) => {
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(())
    });
    drop(pb);
    outcome?;
    // by_axis[a]: the records of axis a, template by template.
    let mut by_axis: Vec<Vec<SampleRecord>> = vec![Vec::new(); lexicon.axes.len()];
    for block in blocks.into_values() {
        for (a, records) in block.into_iter().enumerate() {
            by_axis[a].extend(records);
        }
    }
    Ok(by_axis.into_iter().flatten().collect())
}

/// The probe on template `t` alone: its records per axis of `lexicon`.
fn run_template(
    model: &dyn Backend,
    tok: &Tokenizer,
    lexicon: &Lexicon,
    templates: &[Template],
    t: usize,
    cfg: &ProbeConfig,
) -> Result<TemplateRecords> {
    let ctx: Vec<u32> = tok.document_start().into_iter().collect();
    let sampling = first_sentence_sampling(cfg.temperature, cfg.max_tokens);
    let encode_prompt = |p: &str| -> Result<Vec<u32>> {
        let mut ids = ctx.clone();
        ids.extend(tok.encode(p)?);
        Ok(ids)
    };
    let template = &templates[t];
    // Every (axis, group) prompt of the template, with its index in the whole probe (axis,
    // template, group order) for the seeded sample streams.
    struct Prompt<'a> {
        axis: usize,
        spec: &'a crate::lexicon::Axis,
        group: usize,
        text: String,
        ids: Vec<u32>,
        index: u64,
    }
    let mut prompts = Vec::new();
    let mut first_of_axis = 0;
    for (a, axis) in lexicon.axes.iter().enumerate() {
        let groups = axis.groups.len();
        for g in 0..groups {
            let text = template.fill(&axis.subjects[g]);
            let ids = encode_prompt(&text)?;
            prompts.push(Prompt {
                axis: a,
                spec: axis,
                group: g,
                text,
                ids,
                index: (first_of_axis + t * groups + g) as u64,
            });
        }
        first_of_axis += templates.len() * groups;
    }
    let keyed: Vec<(Vec<u32>, u64)> = prompts.iter().map(|p| (p.ids.clone(), p.index)).collect();
    let generated = model.generate_batched(
        tok,
        &keyed,
        &sampling,
        BatchPlan {
            samples: cfg.samples,
            seed: cfg.seed,
            batch_rows: cfg.batch_size,
        },
        &mut |_| {},
    )?;
    let mut records = Vec::new();
    // Where each record came from: its axis and group index.
    let mut origins = Vec::new();
    // Each continuation's log-probability after its prompt where the sampler computed it for
    // exactly the tokens the continuation's text encodes to (not when a stop string cut a
    // token, nor when a server did not return them): these need no scoring pass.
    let mut sampled_logprobs: Vec<Option<f64>> = Vec::new();
    for (p, gens) in prompts.iter().zip(generated) {
        for gen in gens {
            let known = !gen.token_ids.is_empty()
                && gen.logprobs.len() == gen.token_ids.len()
                && tok.encode(&gen.text)? == gen.token_ids;
            sampled_logprobs.push(known.then(|| gen.logprobs.iter().sum()));
            origins.push((p.axis, p.spec, p.group));
            records.push(SampleRecord {
                axis: p.spec.name.clone(),
                template: template.id,
                category: template.category.clone(),
                group: p.spec.groups[p.group].clone(),
                sample: gen.sample,
                prompt: p.text.clone(),
                continuation: gen.text,
                logprob: 0.0,
                counterfactuals: Vec::new(),
            });
        }
    }

    // Score each continuation after its own prompt (unless the sampler's log-probabilities
    // serve) and its swapped twin after each other group's prompt, in one batched pass.
    // Continuations grouped by the prompt they follow: each prompt is run once and its cache
    // shared by every continuation scored after it (own samples and swapped twins alike).
    let mut by_prompt: BTreeMap<String, PromptGroup> = BTreeMap::new();
    let mut n_items = 0;
    let mut add = |prompt: &str, text: &str| -> Result<usize> {
        let entry = match by_prompt.entry(prompt.to_string()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((encode_prompt(prompt)?, Vec::new()))
            }
        };
        entry.1.push((n_items, tok.encode(text)?));
        n_items += 1;
        Ok(n_items - 1)
    };
    let swappers: Vec<AxisSwapper> = lexicon.axes.iter().map(AxisSwapper::new).collect();
    // Per record: its own log-probability or the item that scores it, then its twins' items.
    let mut own: Vec<std::result::Result<f64, usize>> = Vec::with_capacity(records.len());
    let mut twins: Vec<Vec<usize>> = Vec::with_capacity(records.len());
    for ((r, &(a, axis, g)), known) in records.iter_mut().zip(&origins).zip(&sampled_logprobs) {
        let swapper = &swappers[a];
        own.push(match known {
            Some(lp) => Ok(*lp),
            None => Err(add(&r.prompt, &r.continuation)?),
        });
        let mut items = Vec::new();
        for (h, other) in axis.groups.iter().enumerate().filter(|(h, _)| *h != g) {
            let prompt = template.fill(&axis.subjects[h]);
            let text = swapper.swap(g, h, &r.continuation).text;
            items.push(add(&prompt, &text)?);
            r.counterfactuals.push(Counterfactual {
                group: other.clone(),
                prompt,
                text,
                logprob: 0.0,
                delta: 0.0,
                flagged: false,
            });
        }
        twins.push(items);
    }
    let mut sums = vec![0.0; n_items];
    // Prompts of one token length are prefilled together, a few at a time.
    let mut groups: Vec<&PromptGroup> = by_prompt.values().collect();
    groups.sort_by_key(|g| g.0.len());
    let per_pass = 16;
    let mut start = 0;
    while start < groups.len() {
        let len = groups[start].0.len();
        let mut end = start;
        while end < groups.len() && end - start < per_pass && groups[end].0.len() == len {
            end += 1;
        }
        let prompts: Vec<&[u32]> = groups[start..end].iter().map(|g| g.0.as_slice()).collect();
        let items: Vec<(usize, &[u32])> = groups[start..end]
            .iter()
            .enumerate()
            .flat_map(|(p, g)| g.1.iter().map(move |(_, c)| (p, c.as_slice())))
            .collect();
        let indices: Vec<usize> = groups[start..end]
            .iter()
            .flat_map(|g| g.1.iter().map(|(i, _)| *i))
            .collect();
        let scores = model.score_after_prompts(&prompts, &items, cfg.batch_size)?;
        for (i, lps) in indices.into_iter().zip(scores) {
            sums[i] = lps.iter().sum();
        }
        start = end;
    }
    let mut per_axis: Vec<Vec<SampleRecord>> = vec![Vec::new(); lexicon.axes.len()];
    for (((mut r, (a, _, _)), own), twins) in records.into_iter().zip(origins).zip(own).zip(twins) {
        r.logprob = own.unwrap_or_else(|i| sums[i]);
        for (c, i) in r.counterfactuals.iter_mut().zip(twins) {
            c.logprob = sums[i];
            c.delta = r.logprob - c.logprob;
            c.flagged = c.delta >= cfg.tau;
        }
        per_axis[a].push(r);
    }
    Ok(per_axis)
}
