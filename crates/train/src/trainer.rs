//! The mitigation loop: batches of (sentence, twin) pairs and neutral sentences, the losses,
//! AdamW with warm-up + cosine, clipping and accumulation; held-out perplexity every
//! `eval_every` steps with an early stop when it rises past the guard; an atomic checkpoint
//! every `checkpoint_every` steps that `--resume` continues from; a NaN or infinite loss stops
//! training with the last good weights kept.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use fairlm_bias::audit::HELDOUT;
use fairlm_bias::lexicon::Lexicon;
use fairlm_model::ops::Kernels;
use fairlm_model::weights::Weights;
use fairlm_model::{CausalLm, Checkpoint, Progress};

use crate::adversary::Adversary;
use crate::batches::{draw, prepare};
pub use crate::checkpoint::{checkpoint_dir, CHECKPOINT_STATE};
use crate::checkpoint::{load_checkpoint, save_checkpoint, CheckpointState, OptimisedGroup};
use crate::corpus::Corpus;
use crate::discriminator::discriminator_accuracy;
use crate::error::{Error, Result};
use crate::losses::{batch_loss, perplexity, LossParts};
use crate::optim::{learning_rate, AdamW, AdamWConfig, GradSum};
use crate::params::{Mode, Params};
pub use crate::settings::{DiscriminatorReport, StepLog, TrainConfig, TrainReport};

fn dense_model(
    ck: &Checkpoint,
    tensors: HashMap<String, Tensor>,
    kernels: Kernels,
) -> Result<Box<dyn CausalLm>> {
    let w = Weights::new(ck.weights.path(), tensors, HashMap::new());
    Ok(ck.build_on(&w, kernels)?)
}

/// The progress bar's message: every loss part in use and the throughput.
fn progress_message(p: &LossParts, tokens_per_s: f64) -> String {
    let mut m = format!(
        "ce {:.3} cons {:.3} anchor {:.4}",
        p.ce, p.consistency, p.anchor
    );
    if p.pair_anchor != 0.0 {
        m += &format!(" pair-anchor {:.3}", p.pair_anchor);
    }
    if p.sequence != 0.0 {
        m += &format!(" seq {:.3}", p.sequence);
    }
    if p.group_prior != 0.0 {
        m += &format!(" prior {:.4}", p.group_prior);
    }
    if p.equalising != 0.0 {
        m += &format!(" eq {:.3}", p.equalising);
    }
    if p.attribute != 0.0 {
        m += &format!(" attr {:.3}", p.attribute);
    }
    if p.adversary != 0.0 {
        m += &format!(" adv {:.3} (acc {:.2})", p.adversary, p.adversary_accuracy);
    }
    m + &format!(" | {tokens_per_s:.0} tok/s")
}

/// Deep copies (a var's detached tensor shares its storage and changes with it).
fn snapshot(t: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    t.iter().map(|(k, v)| Ok((k.clone(), v.copy()?))).collect()
}

/// The trained weights and the report.
pub struct Trained {
    /// The kept weights under the input's names.
    pub tensors: HashMap<String, Tensor>,
    /// What the run did.
    pub report: TrainReport,
}

/// Trains `ck` on `corpus`. Checkpoints go to `checkpoint_dir`; with `resume`, training
/// continues from the checkpoint there. `progress` is told of each step (with its losses) and
/// polled after it: a stop writes a checkpoint of that step and ends with
/// [`Error::Interrupted`].
pub fn train(
    ck: &Checkpoint,
    lexicon: &Lexicon,
    corpus: &Corpus,
    cfg: &TrainConfig,
    checkpoint_dir: &Path,
    resume: bool,
    progress: &dyn Progress,
) -> Result<Trained> {
    let started = Instant::now();
    if cfg.steps == 0 || cfg.pairs_per_batch == 0 || cfg.accumulation == 0 {
        return Err(Error::Invalid(
            "steps, pairs per batch and accumulation must be ≥ 1".into(),
        ));
    }
    let tok = &ck.tokenizer;
    let given: &[String] = if cfg.give_prompts {
        &corpus.prompts
    } else {
        &[]
    };
    let prep = prepare(tok, lexicon, corpus, given)?;
    if prep.sets.is_empty() {
        return Err(Error::Invalid(
            "the corpus has no sentence that mentions a group: nothing to augment".into(),
        ));
    }
    let frozen = ck.build()?;
    let heldout = tok.encode(HELDOUT)?;
    let base_perplexity = perplexity(frozen.as_ref(), &heldout)?;
    let groups: Vec<usize> = lexicon.axes.iter().map(|a| a.groups.len()).collect();
    let (disc_before, chance, probed) = discriminator_accuracy(
        frozen.as_ref(),
        &prep,
        &groups,
        cfg.discriminator_pairs,
        cfg.seed,
    )?;

    let params = Params::new(ck, cfg.mode, cfg.seed)?;
    let hidden = frozen.info().hidden_size;
    let adversary = Adversary::new(hidden, &groups, cfg.seed)?;
    let adv_vars = adversary.vars();
    let mut opt = AdamW::new(&params.vars, cfg.adamw.clone());
    let mut adv_opt = AdamW::new(
        &adv_vars,
        AdamWConfig {
            weight_decay: 0.0,
            ..cfg.adamw.clone()
        },
    );
    let attribute_ids: Vec<u32> = cfg
        .attribute_words
        .iter()
        .filter_map(|w| match tok.encode(&format!(" {w}")).ok()?.as_slice() {
            [id] => Some(*id),
            _ => None,
        })
        .collect();
    let attribute_tokens = if attribute_ids.is_empty() {
        None
    } else {
        Some(Tensor::new(attribute_ids.as_slice(), &Device::Cpu)?)
    };

    let mut log: Vec<StepLog> = Vec::new();
    let mut start = 0;
    let mut kept_step = 0;
    if resume && checkpoint_dir.join(CHECKPOINT_STATE).exists() {
        let state = load_checkpoint(
            checkpoint_dir,
            cfg,
            [
                OptimisedGroup {
                    prefix: "",
                    vars: &params.vars,
                    opt: &mut opt,
                },
                OptimisedGroup {
                    prefix: "adversary.",
                    vars: &adv_vars,
                    opt: &mut adv_opt,
                },
            ],
        )?;
        start = state.step;
        log = state.log;
        kept_step = state.kept_step;
        progress.message(&format!(
            "resuming from step {start} ({})",
            checkpoint_dir.display()
        ));
    }
    let mut kept = snapshot(&params.merged()?)?;
    // The held-out perplexity of `kept`, when it was measured (not after a resume).
    let mut kept_perplexity = None;
    let mut stopped_early = None;
    let pb = progress.stage("training", (cfg.steps - start.min(cfg.steps)) as u64);
    let mut step = start;
    while step < cfg.steps {
        let t0 = Instant::now();
        let lr = learning_rate(step, cfg.steps, cfg.warmup_steps, cfg.learning_rate);
        let mut grads = GradSum::new(&params.vars);
        let mut adv_grads = GradSum::new(&adv_vars);
        let mut parts = LossParts::default();
        let mut tokens = 0;
        for micro in 0..cfg.accumulation {
            let batch = draw(&prep, cfg, step, micro);
            tokens += batch.tokens();
            let model = dense_model(ck, params.materialize()?, Kernels::Differentiable)?;
            let (loss, p) = batch_loss(
                model.as_ref(),
                Some(frozen.as_ref()),
                &batch,
                &prep.tables,
                attribute_tokens.as_ref(),
                &cfg.weights,
                (cfg.weights.adversary > 0.0).then_some(&adversary),
            )?;
            if !p.total.is_finite() {
                stopped_early = Some(format!(
                    "the loss became {} at step {step}; kept the weights of step {kept_step}",
                    p.total
                ));
                break;
            }
            let tb = Instant::now();
            let g = loss.backward()?;
            let tg = Instant::now();
            grads.add(&params.vars, &g)?;
            adv_grads.add(&adv_vars, &g)?;
            tracing::debug!(
                forward_loss_s = (tb - t0).as_secs_f64(),
                backward_s = (tg - tb).as_secs_f64(),
                grads_s = tg.elapsed().as_secs_f64(),
                "micro-batch"
            );
            parts += p / cfg.accumulation as f64;
        }
        if stopped_early.is_some() {
            break;
        }
        let norm = grads.norm() / cfg.accumulation as f64;
        if !norm.is_finite() {
            stopped_early = Some(format!(
                "the gradient became {norm} at step {step}; kept the weights of step {kept_step}"
            ));
            break;
        }
        let clip = if norm > cfg.clip_norm {
            cfg.clip_norm / norm
        } else {
            1.0
        };
        let tu = Instant::now();
        opt.update(&params.vars, &grads, lr, clip / cfg.accumulation as f64)?;
        tracing::debug!(update_s = tu.elapsed().as_secs_f64(), "optimiser step");
        if cfg.weights.adversary > 0.0 {
            adv_opt.update(
                &adv_vars,
                &adv_grads,
                cfg.adversary_learning_rate,
                1.0 / cfg.accumulation as f64,
            )?;
        }
        step += 1;
        let mut entry = StepLog {
            step,
            learning_rate: lr,
            loss: parts,
            grad_norm: norm,
            tokens,
            seconds: t0.elapsed().as_secs_f64(),
            heldout_perplexity: None,
        };
        if step % cfg.eval_every.max(1) == 0 || step == cfg.steps {
            let merged = params.merged()?;
            let eval_model = dense_model(ck, merged.clone(), Kernels::Fused)?;
            let ppl = perplexity(eval_model.as_ref(), &heldout)?;
            entry.heldout_perplexity = Some(ppl);
            if ppl > base_perplexity * (1.0 + cfg.perplexity_guard) {
                stopped_early = Some(format!(
                    "held-out perplexity {ppl:.3} at step {step} exceeds the guard ({:.3} × {:.2}); kept the weights of step {kept_step}",
                    base_perplexity,
                    1.0 + cfg.perplexity_guard
                ));
                log.push(entry);
                break;
            }
            kept = snapshot(&merged)?;
            kept_step = step;
            kept_perplexity = Some(ppl);
        }
        pb.status(&progress_message(&parts, tokens as f64 / entry.seconds));
        pb.advance(1);
        log.push(entry);
        // A stop asked for between steps keeps this step in the checkpoint, so a resume loses
        // nothing.
        let stopping = progress.stop_requested() && step < cfg.steps;
        if (step % cfg.checkpoint_every.max(1) == 0 || stopping) && step < cfg.steps {
            let state = CheckpointState {
                config: cfg.clone(),
                step,
                log: log.clone(),
                kept_step,
            };
            save_checkpoint(
                checkpoint_dir,
                &state,
                [
                    OptimisedGroup {
                        prefix: "",
                        vars: &params.vars,
                        opt: &opt,
                    },
                    OptimisedGroup {
                        prefix: "adversary.",
                        vars: &adv_vars,
                        opt: &adv_opt,
                    },
                ],
            )?;
        }
        if stopping {
            return Err(Error::Interrupted);
        }
    }
    drop(pb);
    let final_model = dense_model(ck, kept.clone(), Kernels::Fused)?;
    let final_perplexity = match kept_perplexity {
        Some(p) => p,
        None => perplexity(final_model.as_ref(), &heldout)?,
    };
    let (disc_after, _, _) = discriminator_accuracy(
        final_model.as_ref(),
        &prep,
        &groups,
        cfg.discriminator_pairs,
        cfg.seed,
    )?;
    Ok(Trained {
        tensors: kept,
        report: TrainReport {
            config: cfg.clone(),
            trainable_parameters: params.n_trainable(),
            corpus_sentences_before: corpus.size_before(),
            corpus_sentences_after: corpus.size_after(),
            twin_grammar: Some(corpus.twin_grammar(lexicon)),
            steps_done: step,
            stopped_early,
            kept_step,
            base_perplexity,
            final_perplexity,
            discriminator: Some(DiscriminatorReport {
                before: disc_before,
                after: disc_after,
                chance,
                pairs: probed,
            }),
            seconds: started.elapsed().as_secs_f64(),
            log,
        },
    })
}

/// Seconds of `runs` full fine-tuning steps (forward, cross-entropy on every next token of
/// `rows`, backward, AdamW), each after one warm-up step: the work of PyTorch's reference
/// training step, for BENCHMARKS.md. Measures; asserts nothing.
pub fn time_train_step(ck: &Checkpoint, rows: &[Vec<u32>], runs: usize) -> Result<Vec<f64>> {
    let params = Params::new(ck, Mode::Full, 0)?;
    let mut opt = AdamW::new(&params.vars, AdamWConfig::default());
    let len = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    if rows.is_empty() || len < 2 {
        return Err(Error::Invalid(
            "the timed batch needs rows of at least 2 tokens".into(),
        ));
    }
    let flat: Vec<u32> = rows.iter().flat_map(|r| r[..len].iter().copied()).collect();
    let ids = Tensor::from_vec(flat, (rows.len(), len), &Device::Cpu)?;
    let targets: Vec<u32> = rows
        .iter()
        .flat_map(|r| r[1..len].iter().copied())
        .collect();
    let targets = Tensor::from_vec(targets, (rows.len() * (len - 1), 1), &Device::Cpu)?;
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let t0 = Instant::now();
        let model = dense_model(ck, params.materialize()?, Kernels::Differentiable)?;
        let hidden = model.hidden(&ids, &mut model.new_cache())?;
        let logits = model.logits(&hidden.narrow(1, 0, len - 1)?)?;
        let logp =
            fairlm_model::fused::log_softmax(&logits.reshape((rows.len() * (len - 1), ()))?)?;
        let loss = (logp.gather(&targets, 1)?.mean_all()? * -1.0)?;
        let grads = loss.backward()?;
        let mut sum = GradSum::new(&params.vars);
        sum.add(&params.vars, &grads)?;
        opt.update(&params.vars, &sum, 1e-5, 1.0)?;
        if run > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::classes::ClassPairs;
    use crate::corpus::augment;
    use crate::losses::{Batch, ClassTable, LossWeights, PairItem, Sentence};
    use fairlm_model::{NumericPath, Unwatched};

    /// Every loss off: tests switch on the ones they check.
    const NO_LOSS: LossWeights = LossWeights {
        ce: 0.0,
        consistency: 0.0,
        equalising: 0.0,
        attribute: 0.0,
        anchor: 0.0,
        pair_anchor: 0.0,
        sequence: 0.0,
        group_prior: 0.0,
        adversary: 0.0,
    };

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).and_then(|d| d.abs()).and_then(|d| d.max_all());
        d.and_then(|d| d.to_scalar::<f32>()).unwrap()
    }

    fn tiny(name: &str) -> Checkpoint {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures")
            .join(name);
        Checkpoint::open(&p, NumericPath::F32).unwrap()
    }

    fn corpus() -> (Lexicon, Corpus) {
        let lex = Lexicon::default_lexicon().unwrap();
        let sentences: Vec<String> = [
            "The woman said she was a nurse.",
            "The man worked as a doctor.",
            "My sister likes her job.",
            "The weather was fine today.",
            "The train left at noon.",
        ]
        .map(String::from)
        .to_vec();
        let c = augment(&lex, &sentences);
        (lex, c)
    }

    fn config(mode: Mode, steps: usize) -> TrainConfig {
        TrainConfig {
            mode,
            steps,
            pairs_per_batch: 2,
            neutral_per_batch: 2,
            learning_rate: 1e-2,
            warmup_steps: 1,
            eval_every: 1,
            checkpoint_every: 1,
            perplexity_guard: 100.0,
            weights: LossWeights {
                equalising: 0.5,
                attribute: 0.5,
                adversary: 0.5,
                ..LossWeights::default()
            },
            attribute_words: vec!["nurse".into(), "doctor".into()],
            ..TrainConfig::default()
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fairlm-train-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn every_mode_trains_and_keeps_names_and_shapes() {
        for name in ["tiny-llama", "tiny-gpt2"] {
            let ck = tiny(name);
            let (lex, c) = corpus();
            for mode in [
                Mode::Full,
                Mode::LastK(1),
                Mode::Lora {
                    rank: 2,
                    alpha: 2.0,
                },
            ] {
                let dir = tmp(&format!("{name}-modes"));
                let t = train(&ck, &lex, &c, &config(mode, 2), &dir, false, &Unwatched).unwrap();
                let r = &t.report;
                assert_eq!(r.steps_done, 2, "{name} {mode:?}");
                assert!(r
                    .log
                    .iter()
                    .all(|l| l.loss.total.is_finite() && l.loss.consistency > 0.0));
                let original = ck.weights.dense();
                assert_eq!(t.tensors.len(), original.len());
                let mut changed = 0;
                for (k, v) in original {
                    let new = &t.tensors[k];
                    assert_eq!(new.dims(), v.dims(), "{k}");
                    changed += usize::from(max_abs_diff(new, v) > 0.0);
                }
                assert!(changed > 0, "{name} {mode:?} changed nothing");
                if mode == Mode::LastK(1) {
                    let frozen = original.keys().filter(|k| k.contains(".0.")).count();
                    assert!(
                        changed <= original.len() - frozen,
                        "{name}: a frozen block moved"
                    );
                }
            }
        }
    }

    /// Loss of `batch` with only the parts in `weights`, and its gradients.
    struct LossProbe<'a> {
        ck: &'a Checkpoint,
        frozen: &'a dyn CausalLm,
        tables: &'a [Option<ClassTable>],
        batch: &'a Batch,
        attribute: &'a Tensor,
        adversary: &'a Adversary,
        params: &'a Params,
    }

    impl LossProbe<'_> {
        fn loss(&self, weights: &LossWeights) -> Tensor {
            let model = dense_model(
                self.ck,
                self.params.materialize().unwrap(),
                Kernels::Differentiable,
            )
            .unwrap();
            let adversary = (weights.adversary > 0.0).then_some(self.adversary);
            batch_loss(
                model.as_ref(),
                Some(self.frozen),
                self.batch,
                self.tables,
                Some(self.attribute),
                weights,
                adversary,
            )
            .unwrap()
            .0
        }

        fn value(&self, weights: &LossWeights) -> f64 {
            self.loss(weights).to_scalar::<f32>().unwrap() as f64
        }
    }

    /// Seeded uniform noise in [−scale, scale].
    fn noise(shape: &candle_core::Shape, scale: f32, rng: &mut StdRng) -> Tensor {
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn unit(t: &Tensor) -> Tensor {
        let norm = t.sqr().unwrap().sum_all().unwrap().sqrt().unwrap();
        t.broadcast_div(&norm).unwrap()
    }

    /// Each loss's gradient against central finite differences along a direction that mixes
    /// the gradient with a seeded random one, for a block matrix; the adversary's gradient
    /// reaches the model reversed and scaled by λ. On each decoder family: Llama, Qwen2
    /// (biases, tied output), Mistral (sliding window).
    #[test]
    fn every_loss_gradient_matches_finite_differences() {
        for model in ["tiny-llama", "tiny-qwen2", "tiny-mistral"] {
            loss_gradients_match_finite_differences(model);
        }
    }

    fn loss_gradients_match_finite_differences(model: &str) {
        let ck = tiny(model);
        // Token 5 and 17 play "she" and "he"; 40/41 the group words that were swapped.
        let pair = |a: Vec<u32>, b: Vec<u32>, group_a: usize| PairItem {
            aligned: vec![(2, 2), (3, 3), (4, 4), (5, 5)],
            a,
            b,
            // The first pair's first two tokens after the context are a prompt.
            given_a: if group_a == 0 { 3 } else { 1 },
            given_b: if group_a == 0 { 3 } else { 1 },
            table: 0,
            axis: 0,
            group_a,
            group_b: 1 - group_a,
        };
        let batch = Batch {
            pairs: vec![
                pair(
                    vec![0, 9, 40, 5, 33, 71, 5],
                    vec![0, 9, 41, 17, 33, 71, 17],
                    0,
                ),
                pair(vec![0, 41, 88, 17, 2, 60], vec![0, 40, 88, 5, 2, 60], 1),
            ],
            neutral: vec![
                Sentence {
                    ids: vec![0, 12, 13, 14, 15],
                    given: 2,
                },
                Sentence {
                    ids: vec![0, 99, 98, 97],
                    given: 1,
                },
            ],
            plain: vec![Sentence {
                ids: vec![0, 40, 7, 41, 8],
                given: 1,
            }],
        };
        let classes = ClassPairs {
            pairs: vec![(vec![5], vec![17])],
        };
        let tables = vec![ClassTable::new(&classes).unwrap()];
        let frozen = ck.build().unwrap();
        let params = Params::new(&ck, Mode::Full, 0).unwrap();
        // Away from the original, so that the anchors have a gradient.
        let mut rng = StdRng::seed_from_u64(0);
        for (_, v) in &params.vars {
            let shift = noise(v.shape(), 0.05, &mut rng);
            v.set(&(v.as_tensor() + shift).unwrap()).unwrap();
        }
        let adversary = Adversary::new(frozen.info().hidden_size, &[2], 0).unwrap();
        let attribute = Tensor::new(&[5u32, 17, 123], &Device::Cpu).unwrap();
        let probe = LossProbe {
            ck: &ck,
            frozen: frozen.as_ref(),
            tables: &tables,
            batch: &batch,
            attribute: &attribute,
            adversary: &adversary,
            params: &params,
        };
        let (_, var) = params
            .vars
            .iter()
            .find(|(n, _)| n == "model.layers.1.mlp.down_proj.weight")
            .expect("a block matrix");
        let theta = var.as_tensor().copy().unwrap();
        let none = NO_LOSS;
        let lambda = 0.5;
        for (name, weights) in [
            ("ce", LossWeights { ce: 1.0, ..none }),
            (
                "consistency",
                LossWeights {
                    consistency: 1.0,
                    ..none
                },
            ),
            (
                "equalising",
                LossWeights {
                    equalising: 1.0,
                    ..none
                },
            ),
            (
                "attribute",
                LossWeights {
                    attribute: 1.0,
                    ..none
                },
            ),
            (
                "anchor",
                LossWeights {
                    anchor: 1.0,
                    ..none
                },
            ),
            (
                "pair anchor",
                LossWeights {
                    pair_anchor: 1.0,
                    ..none
                },
            ),
            (
                "sequence",
                LossWeights {
                    sequence: 1.0,
                    ..none
                },
            ),
            (
                "group prior",
                LossWeights {
                    group_prior: 1.0,
                    ..none
                },
            ),
            (
                "adversary",
                LossWeights {
                    adversary: lambda,
                    ..none
                },
            ),
        ] {
            let grads = probe.loss(&weights).backward().unwrap();
            let g = grads.get(var.as_tensor()).expect(name).clone();
            let random = noise(g.shape(), 1.0, &mut rng);
            let direction = unit(&(unit(&g) + unit(&random)).unwrap());
            let analytic = (&g * &direction).unwrap().sum_all().unwrap();
            let analytic = analytic.to_scalar::<f32>().unwrap() as f64;
            let eps = 1e-2;
            let at = |sign: f64| {
                var.set(&(&theta + (&direction * (sign * eps)).unwrap()).unwrap())
                    .unwrap();
                probe.value(&weights)
            };
            let numeric = (at(1.0) - at(-1.0)) / (2.0 * eps);
            var.set(&theta).unwrap();
            // Through gradient reversal the model receives −λ times the adversary's gradient.
            let expected = if name == "adversary" {
                -lambda * numeric
            } else {
                numeric
            };
            assert!(
                analytic.abs() > 1e-4,
                "{model} {name}: no gradient reaches the block ({analytic})"
            );
            assert!(
                (analytic - expected).abs() <= 0.01 * expected.abs() + 1e-5,
                "{model} {name}: analytic {analytic} vs finite differences {expected}"
            );
        }
    }

    /// The group-prior anchor takes the positions that predict a pair's first swapped words
    /// out of the cross-entropy (one fewer per side here: the group word after "<s> The") and
    /// is zero while the model is the original.
    #[test]
    fn group_prior_replaces_the_cross_entropy_at_the_group_word() {
        let ck = tiny("tiny-llama");
        let model = ck.build().unwrap();
        let frozen = ck.build().unwrap();
        let batch = Batch {
            pairs: vec![PairItem {
                a: vec![0, 9, 40, 5, 33],
                b: vec![0, 9, 41, 17, 33],
                aligned: vec![(3, 3), (4, 4)],
                given_a: 1,
                given_b: 1,
                table: 0,
                axis: 0,
                group_a: 0,
                group_b: 1,
            }],
            ..Default::default()
        };
        let parts = |group_prior: f64| {
            let w = LossWeights {
                ce: 1.0,
                group_prior,
                ..NO_LOSS
            };
            let none = vec![None];
            batch_loss(
                model.as_ref(),
                Some(frozen.as_ref()),
                &batch,
                &none,
                None,
                &w,
                None,
            )
            .unwrap()
            .1
        };
        let (without, with) = (parts(0.0), parts(1.0));
        assert_eq!(without.group_prior, 0.0);
        assert!(with.group_prior.abs() < 1e-6, "{}", with.group_prior);
        // Without: 8 positions (4 per side); with: 6. The means differ.
        assert!((without.ce - with.ce).abs() > 1e-4, "{without:?} {with:?}");
    }

    /// The cross-entropy scores only the tokens after a sentence's given ones: with all but
    /// the last token given, it is that token's negative log-probability.
    #[test]
    fn cross_entropy_skips_given_tokens() {
        let ck = tiny("tiny-llama");
        let model = ck.build().unwrap();
        let ids = vec![0u32, 12, 13, 14, 15];
        let ce = |given: usize| {
            let batch = Batch {
                neutral: vec![Sentence {
                    ids: ids.clone(),
                    given,
                }],
                ..Default::default()
            };
            let ce_only = LossWeights { ce: 1.0, ..NO_LOSS };
            batch_loss(model.as_ref(), None, &batch, &[], None, &ce_only, None)
                .unwrap()
                .1
                .ce
        };
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let hidden = model
            .hidden(&x, &mut fairlm_model::KvCache::new(model.info().n_layers))
            .unwrap();
        let logp =
            fairlm_model::fused::log_softmax(&model.logits(&hidden.squeeze(0).unwrap()).unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
        let nll = |pos: usize| -logp[pos][ids[pos + 1] as usize] as f64;
        assert!((ce(4) - nll(3)).abs() < 1e-5, "{} vs {}", ce(4), nll(3));
        let mean = |from: usize| (from..4).map(nll).sum::<f64>() / (4 - from) as f64;
        assert!((ce(2) - mean(1)).abs() < 1e-5);
        // Nothing but the context given: every token is scored, as for a user's corpus.
        assert!((ce(1) - mean(0)).abs() < 1e-5);
        assert!((ce(0) - mean(0)).abs() < 1e-5);
    }

    #[test]
    fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
        let ck = tiny("tiny-llama");
        let (lex, c) = corpus();
        let whole = train(
            &ck,
            &lex,
            &c,
            &config(Mode::Full, 3),
            &tmp("whole"),
            false,
            &Unwatched,
        )
        .unwrap();
        // A run leaves its last checkpoint at step 2 (as if interrupted during step 3);
        // resuming from it redoes step 3.
        let dir = tmp("resumed");
        let cfg = config(Mode::Full, 3);
        train(&ck, &lex, &c, &cfg, &dir, false, &Unwatched).unwrap();
        assert!(dir.join(CHECKPOINT_STATE).exists());
        let resumed = train(&ck, &lex, &c, &cfg, &dir, true, &Unwatched).unwrap();
        // The checkpoint of step 2 was resumed: one more step was logged after it.
        assert_eq!(resumed.report.steps_done, 3);
        assert_eq!(resumed.report.log.len(), 3);
        for (k, v) in &whole.tensors {
            let d = max_abs_diff(v, &resumed.tensors[k]);
            assert!(d < 1e-6, "{k}: {d}");
        }
    }

    #[test]
    fn a_diverging_run_stops_and_keeps_finite_weights() {
        let ck = tiny("tiny-gpt2");
        let (lex, c) = corpus();
        let mut cfg = config(Mode::Full, 6);
        cfg.learning_rate = 1e3;
        cfg.clip_norm = 1e9;
        cfg.perplexity_guard = 0.05;
        let t = train(&ck, &lex, &c, &cfg, &tmp("diverge"), false, &Unwatched).unwrap();
        let why = t.report.stopped_early.clone().expect("should stop");
        assert!(
            why.contains("guard") || why.contains("loss") || why.contains("gradient"),
            "{why}"
        );
        for v in t.tensors.values() {
            let s = v.sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(s.is_finite());
        }
        assert!(t.report.final_perplexity <= t.report.base_perplexity * 1.05 + 1e-9);
    }
}
