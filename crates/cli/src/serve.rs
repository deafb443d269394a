//! `fairlm serve`: a model behind the subset of the OpenAI-compatible API that fairlm's own
//! served-model client uses, shaped as vLLM shapes it — `GET /v1/models`, `POST
//! /v1/completions` (token-id or text prompts, `echo` with prompt log-probabilities, `n`,
//! `seed`, `temperature`, `top_p`, `max_tokens`, `stop`), `POST /tokenize`, `POST /detokenize`.
//! A mitigated model can be served as it is, and the client has a real server in tests.
//!
//! Requests are computed one at a time (queued behind a lock, never interleaved); the prompts
//! of one request are scored as one batch, so a client that sends the batches `score_items`
//! would form gets the numbers this process computes, bit for bit. SIGINT and SIGTERM stop
//! accepting connections, finish the requests in flight and exit 0.
//!
//! Over 600 lines because it is one protocol's server (routes, request checks, the answers'
//! shapes); it holds no metric and no default the library also holds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use fairlm_model::generate::Generation;
use fairlm_model::generate::{generate_streams, SamplingConfig};
use fairlm_model::score::{score_items, score_items_and_next, ScoreItem};
use fairlm_model::{CausalLm, Tokenizer};
use serde_json::{json, Value};

use crate::engine::ModelArgs;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The name clients ask for (`model` in requests); the `--model` argument by default.
    #[arg(long)]
    pub served_name: Option<String>,
    /// Address to listen on: loopback by default; anything else exposes the model to the
    /// network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Request bodies larger than this are refused with 413.
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
}

struct Served {
    model: Box<dyn CausalLm>,
    tokenizer: Tokenizer,
    name: String,
    /// Held while a request computes: requests queue, their rows never mix.
    busy: Mutex<()>,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let ck = a.model.open()?;
    let model = ck.build()?;
    let name = a
        .served_name
        .clone()
        .unwrap_or_else(|| a.model.model.clone());
    let state = Arc::new(Served {
        model,
        tokenizer: ck.tokenizer,
        name,
        busy: Mutex::new(()),
    });
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .layer(DefaultBodyLimit::max(a.max_body_bytes))
        .with_state(state.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(a.host, a.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("{addr}: cannot listen"))?;
        let bound = listener.local_addr()?;
        // The one line the server prints: where it is (tests and scripts read the port).
        eprintln!(
            "fairlm serve: listening on http://{bound}/v1 (model `{}`)",
            state.name
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")?;
        eprintln!("fairlm serve: stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// A generated continuation and its tokens' log-probabilities (empty unless asked for).
type Sampled = (Generation, Vec<f64>);

/// A request that gets an OpenAI-style error answer.
struct ApiError {
    status: StatusCode,
    message: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status == StatusCode::NOT_FOUND {
            "NotFoundError"
        } else if self.status.is_client_error() {
            "BadRequestError"
        } else {
            "InternalServerError"
        };
        let body =
            json!({"error": {"message": self.message, "type": kind, "code": self.status.as_u16()}});
        (self.status, Json(body)).into_response()
    }
}

async fn models(State(s): State<Arc<Served>>) -> Response {
    let info = s.model.info();
    Json(json!({
        "object": "list",
        "data": [{
            "id": s.name,
            "object": "model",
            "created": 0,
            "owned_by": "fairlm",
            "root": info.source.display().to_string(),
            "max_model_len": info.context_length,
            "architecture": info.architecture,
            "numeric_path": info.numeric_path,
            "fairlm_version": env!("CARGO_PKG_VERSION"),
        }]
    }))
    .into_response()
}

/// Runs `work` on a blocking thread with the model to itself.
async fn compute(
    s: Arc<Served>,
    work: impl FnOnce(&Served) -> std::result::Result<Value, ApiError> + Send + 'static,
) -> Response {
    let answer = tokio::task::spawn_blocking(move || {
        let _turn = s.busy.lock().unwrap_or_else(|p| p.into_inner());
        work(&s)
    })
    .await;
    match answer {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request's worker failed",
        )
        .into_response(),
    }
}

/// The prompts of a request: a string, a list of strings, a list of token ids, or a list of
/// token-id lists.
fn prompts(s: &Served, v: &Value) -> std::result::Result<Vec<Vec<u32>>, ApiError> {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, m);
    let ids = |list: &[Value]| -> std::result::Result<Vec<u32>, ApiError> {
        list.iter()
            .map(|x| {
                x.as_u64()
                    .filter(|&id| (id as usize) < s.model.info().vocab_size)
                    .map(|id| id as u32)
                    .ok_or_else(|| bad(&format!("prompt token {x} is not an id of the vocabulary")))
            })
            .collect()
    };
    let text = |t: &str| {
        s.tokenizer
            .encode(t)
            .map_err(|e| bad(&format!("prompt cannot be tokenized: {e}")))
    };
    let out = match v {
        Value::String(t) => vec![text(t)?],
        Value::Array(list) if list.iter().all(Value::is_number) && !list.is_empty() => {
            vec![ids(list)?]
        }
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|p| match p {
                Value::String(t) => text(t),
                Value::Array(l) => ids(l),
                _ => Err(bad("each prompt must be a string or a list of token ids")),
            })
            .collect::<std::result::Result<_, _>>()?,
        _ => {
            return Err(bad(
                "`prompt` must be a string, a list of ids, or a list of those",
            ))
        }
    };
    if out.iter().any(Vec::is_empty) {
        return Err(bad("a prompt has no tokens"));
    }
    Ok(out)
}

async fn completions(State(s): State<Arc<Served>>, Json(body): Json<Value>) -> Response {
    compute(s, move |s| complete(s, &body)).await
}

fn complete(s: &Served, body: &Value) -> std::result::Result<Value, ApiError> {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, m);
    let wanted = body.get("model").and_then(Value::as_str);
    if let Some(m) = wanted.filter(|m| *m != s.name) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("The model `{m}` does not exist."),
        ));
    }
    let prompts = prompts(s, body.get("prompt").unwrap_or(&Value::Null))?;
    let number = |key: &str| body.get(key).filter(|v| !v.is_null());
    let echo = number("echo").and_then(Value::as_bool).unwrap_or(false);
    let logprobs = number("logprobs").and_then(Value::as_u64);
    let keep_stop = number("include_stop_str_in_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let as_ids = number("return_tokens_as_token_ids")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let with_token_ids = number("return_token_ids")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let n = number("n").and_then(Value::as_u64).unwrap_or(1) as usize;
    let seed = number("seed")
        .and_then(Value::as_u64)
        .unwrap_or_else(rand::random);
    // fairlm's extension: the seed of every (prompt, sample), so that a client that sends the
    // batches fairlm decodes together gets fairlm's samples, computed as fairlm computes them.
    let sample_seeds: Option<Vec<Vec<u64>>> = match number("fairlm_sample_seeds") {
        None => None,
        Some(v) => Some(
            v.as_array()
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| r.as_array()?.iter().map(Value::as_u64).collect())
                        .collect()
                })
                .ok_or_else(|| {
                    bad("`fairlm_sample_seeds` must be a list of lists of seeds".into())
                })?,
        ),
    };
    let stop = match number("stop") {
        None => Vec::new(),
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(l)) => l
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("`stop` must be a string or a list of strings".into()))?,
        Some(_) => return Err(bad("`stop` must be a string or a list of strings".into())),
    };
    let cfg = SamplingConfig {
        temperature: number("temperature").and_then(Value::as_f64).unwrap_or(1.0),
        top_k: number("top_k")
            .and_then(Value::as_i64)
            .filter(|&k| k > 0)
            .map(|k| k as usize),
        top_p: number("top_p").and_then(Value::as_f64),
        max_new_tokens: number("max_tokens").and_then(Value::as_u64).unwrap_or(16) as usize,
        stop,
    };
    if n == 0 {
        return Err(bad("`n` must be at least 1".into()));
    }
    if let Some(seeds) = &sample_seeds {
        if seeds.len() != prompts.len() || seeds.iter().any(|r| r.len() != n) {
            return Err(bad(format!(
                "`fairlm_sample_seeds` must hold {n} seeds for each of the {} prompts",
                prompts.len()
            )));
        }
    }
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    let context = s.model.info().context_length;
    if let Some(p) = prompts.iter().find(|p| p.len() > context) {
        return Err(bad(format!(
            "This model's maximum context length is {context} tokens; the prompt has {}",
            p.len()
        )));
    }
    // Generation stops at the context: a prompt that fills it is scored (echo) and gets no
    // token, finish_reason `length`.
    let room = prompts.iter().map(|p| context - p.len()).min().unwrap_or(0);
    let cfg = SamplingConfig {
        max_new_tokens: cfg.max_new_tokens.min(room),
        ..cfg
    };
    let internal = |e: fairlm_model::Error| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    // fairlm's extension for scoring continuations after shared prompts: every prompt starts
    // with one of a few prefixes of `fairlm_prompt_len` tokens, and the sequences after each
    // prefix are scored from its cache in batches of `fairlm_batch_size`, as fairlm does in
    // process (`score::score_after_prompts`), to the bit. Nothing is generated.
    let shared_prefix = match (number("fairlm_prompt_len"), number("fairlm_batch_size")) {
        (None, None) => None,
        (Some(len), Some(batch)) => {
            let (Some(len), Some(batch)) = (len.as_u64(), batch.as_u64()) else {
                return Err(bad(
                    "`fairlm_prompt_len` and `fairlm_batch_size` must be counts".into(),
                ));
            };
            let (len, batch) = (len as usize, batch as usize);
            if len == 0 || batch == 0 || prompts.iter().any(|p| p.len() < len) {
                return Err(bad(
                    "`fairlm_prompt_len` must be at least 1 and at most every prompt's length, `fairlm_batch_size` at least 1".into(),
                ));
            }
            if !echo || logprobs.is_none() || cfg.max_new_tokens != 0 || n != 1 {
                return Err(bad(
                    "`fairlm_prompt_len` scores prompts: it needs `echo`, `logprobs`, `max_tokens` 0 and `n` 1".into(),
                ));
            }
            Some((len, batch))
        }
        _ => {
            return Err(bad(
                "`fairlm_prompt_len` and `fairlm_batch_size` go together".into(),
            ))
        }
    };
    if let Some((len, batch)) = shared_prefix {
        let scores = score_after_shared_prefixes(s, &prompts, len, batch).map_err(internal)?;
        let choices = prompts
            .iter()
            .zip(scores)
            .enumerate()
            .map(|(p, (prompt, scores))| {
                let mut values = vec![Value::Null];
                values.extend(scores.iter().map(|&x| json!(x)));
                let tokens = token_strings(s, prompt, as_ids).map_err(internal)?;
                Ok(json!({
                    "index": p,
                    "text": s.tokenizer.decode(prompt).map_err(internal)?,
                    "logprobs": {"tokens": tokens, "token_logprobs": values, "top_logprobs": Value::Null},
                    "finish_reason": "length",
                }))
            })
            .collect::<std::result::Result<Vec<Value>, ApiError>>()?;
        let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
        return Ok(json!({
            "id": format!("cmpl-{seed:016x}"),
            "object": "text_completion",
            "model": s.name,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens},
        }));
    }
    // The prompts' log-probabilities, as one batch (see the module doc), with the greedy next
    // token of each read off the same pass.
    let (prompt_scores, greedy) = if echo && logprobs.is_some() {
        let items: Vec<ScoreItem> = prompts
            .iter()
            .map(|p| ScoreItem {
                tokens: p.clone(),
                first_scored: 1,
            })
            .collect();
        score_items_and_next(s.model.as_ref(), &items, items.len(), |_| {}).map_err(internal)?
    } else {
        (vec![Vec::new(); prompts.len()], vec![None; prompts.len()])
    };
    // One greedy token without stop strings (how scoring clients ask for prompt log-probs)
    // is that pass's next token; anything else is sampled.
    let one_greedy = cfg.temperature == 0.0 && cfg.max_new_tokens == 1 && cfg.stop.is_empty();
    let mut generations: Vec<Option<Vec<Sampled>>> = vec![None; prompts.len()];
    if one_greedy && n == 1 {
        for (slot, next) in generations.iter_mut().zip(&greedy) {
            if let Some((id, logprob)) = *next {
                let eos = s.tokenizer.eos() == Some(id);
                let token_ids = if eos { Vec::new() } else { vec![id] };
                let g = Generation {
                    sample: 0,
                    text: s.tokenizer.decode(&token_ids).map_err(internal)?,
                    token_ids,
                    finish: if eos { "eos" } else { "length" },
                    logprobs: Vec::new(),
                };
                *slot = Some(vec![(g, if eos { Vec::new() } else { vec![logprob] })]);
            }
        }
    }
    // The rest, decoded together (`generate_streams` left-pads prompts of different lengths),
    // as `generate_batched` decodes one of its batches.
    let rest: Vec<usize> = (0..prompts.len())
        .filter(|&p| generations[p].is_none())
        .collect();
    // Sample i of prompt p draws from its `fairlm_sample_seeds` entry, else from the stream
    // seeded s + i for a request seeded s (a client that asks one sample per request with
    // fairlm's per-sample seed gets fairlm's stream).
    let stream = |p: u64, i: u64| match &sample_seeds {
        Some(seeds) => seeds[p as usize][i as usize],
        None => seed.wrapping_add(i),
    };
    if !rest.is_empty() {
        let batch: Vec<(&[u32], u64)> = rest
            .iter()
            .map(|&p| (prompts[p].as_slice(), p as u64))
            .collect();
        let sampled = generate_streams(s.model.as_ref(), &s.tokenizer, &batch, n, &cfg, &stream)
            .map_err(internal)?;
        for (&p, gs) in rest.iter().zip(sampled) {
            generations[p] = Some(
                gs.into_iter()
                    .map(|mut g| {
                        // The sampled tokens' log-probabilities, from the logits they were drawn from.
                        let values = match logprobs {
                            Some(_) => std::mem::take(&mut g.logprobs),
                            None => Vec::new(),
                        };
                        (g, values)
                    })
                    .collect(),
            );
        }
    }
    let mut choices = Vec::new();
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    for (p, ((prompt, scores), generated)) in prompts
        .iter()
        .zip(&prompt_scores)
        .zip(generations)
        .enumerate()
    {
        prompt_tokens += prompt.len();
        for (i, (g, generated_logprobs)) in generated.unwrap_or_default().into_iter().enumerate() {
            completion_tokens += g.token_ids.len();
            let prompt_text = s.tokenizer.decode(prompt).map_err(internal)?;
            // Stop strings are left out of the text unless asked for, as vLLM does.
            let mut generated = g.text.clone();
            if g.finish == "stop" && !keep_stop {
                if let Some(stop) = cfg.stop.iter().find(|st| generated.ends_with(st.as_str())) {
                    generated.truncate(generated.len() - stop.len());
                }
            }
            let text = if echo {
                format!("{prompt_text}{generated}")
            } else {
                generated
            };
            let logprobs_value = if logprobs.is_some() {
                let mut ids: Vec<u32> = Vec::new();
                let mut values: Vec<Value> = Vec::new();
                if echo {
                    ids.extend(prompt);
                    values.push(Value::Null);
                    values.extend(scores.iter().map(|&x| json!(x)));
                }
                ids.extend(&g.token_ids);
                values.extend(generated_logprobs.iter().map(|&x| json!(x)));
                let tokens = token_strings(s, &ids, as_ids).map_err(internal)?;
                let mut offset = 0usize;
                let offsets: Vec<usize> = tokens
                    .iter()
                    .map(|t| {
                        let at = offset;
                        offset += t.len();
                        at
                    })
                    .collect();
                json!({
                    "tokens": tokens,
                    "token_logprobs": values,
                    "top_logprobs": Value::Null,
                    "text_offset": offsets,
                })
            } else {
                Value::Null
            };
            let mut choice = json!({
                "index": p * n + i,
                "text": text,
                "logprobs": logprobs_value,
                "finish_reason": if g.finish == "length" { "length" } else { "stop" },
            });
            // vLLM's `return_token_ids`: the generated ids (a stop string's included, as
            // vLLM's are when the text keeps it).
            if with_token_ids {
                choice["token_ids"] = json!(g.token_ids);
            }
            choices.push(choice);
        }
    }
    Ok(json!({
        "id": format!("cmpl-{seed:016x}"),
        "object": "text_completion",
        "created": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "model": s.name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
}

/// The `logprobs.tokens` of an answer: `token_id:N` (vLLM's `return_tokens_as_token_ids`), or
/// each id decoded alone as vLLM writes them by default.
fn token_strings(s: &Served, ids: &[u32], as_ids: bool) -> fairlm_model::Result<Vec<String>> {
    ids.iter()
        .map(|&id| {
            if as_ids {
                Ok(format!("token_id:{id}"))
            } else {
                s.tokenizer.decode(&[id])
            }
        })
        .collect()
}

/// Log-probabilities of positions 1.. of each prompt, which begin with one of a few prefixes
/// of `len` tokens: the prefixes in the order they first appear are scored whole, and what
/// follows each from its cache (`score_after_prompts`, batches of `batch`).
fn score_after_shared_prefixes(
    s: &Served,
    prompts: &[Vec<u32>],
    len: usize,
    batch: usize,
) -> fairlm_model::Result<Vec<Vec<f64>>> {
    let mut prefixes: Vec<&[u32]> = Vec::new();
    let mut items: Vec<(usize, &[u32])> = Vec::new();
    for p in prompts {
        let (prefix, rest) = p.split_at(len);
        let k = match prefixes.iter().position(|q| *q == prefix) {
            Some(k) => k,
            None => {
                prefixes.push(prefix);
                prefixes.len() - 1
            }
        };
        items.push((k, rest));
    }
    let whole: Vec<ScoreItem> = prefixes
        .iter()
        .map(|p| ScoreItem {
            tokens: p.to_vec(),
            first_scored: 1,
        })
        .collect();
    let within = score_items(s.model.as_ref(), &whole, whole.len(), |_| {})?;
    let after =
        fairlm_model::score::score_after_prompts(s.model.as_ref(), &prefixes, &items, batch)?;
    Ok(items
        .iter()
        .zip(after)
        .map(|((k, _), rest)| [within[*k].clone(), rest].concat())
        .collect())
}

async fn tokenize(State(s): State<Arc<Served>>, Json(body): Json<Value>) -> Response {
    compute(s, move |s| {
        let Some(text) = body.get("prompt").and_then(Value::as_str) else {
            return Err(error(StatusCode::BAD_REQUEST, "`prompt` must be a string"));
        };
        let ids = s
            .tokenizer
            .encode(text)
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(json!({
            "count": ids.len(),
            "max_model_len": s.model.info().context_length,
            "tokens": ids,
        }))
    })
    .await
}

async fn detokenize(State(s): State<Arc<Served>>, Json(body): Json<Value>) -> Response {
    compute(s, move |s| {
        let ids: Option<Vec<u32>> = body.get("tokens").and_then(Value::as_array).and_then(|l| {
            l.iter()
                .map(|x| {
                    x.as_u64()
                        .filter(|&id| (id as usize) < s.model.info().vocab_size)
                        .map(|id| id as u32)
                })
                .collect()
        });
        let Some(ids) = ids else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "`tokens` must be a list of ids of the vocabulary",
            ));
        };
        let text = s
            .tokenizer
            .decode(&ids)
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(json!({ "prompt": text }))
    })
    .await
}
