//! A model behind an OpenAI-compatible server (vLLM, SGLang, `fairlm serve`), scored over
//! `POST /v1/completions` as lm-evaluation-harness's `local-completions` scores: the prompt as
//! token ids (so the server cannot tokenize it differently), `echo` with `logprobs: 1`,
//! `max_tokens: 1`, `temperature: 0`, and the prompt positions of
//! `choices[i].logprobs.token_logprobs` read back. Every response is checked to hold one
//! log-probability per prompt token for the tokens sent; a server that answers anything else
//! (llama.cpp's returns generated tokens only) is an error, never a score.
//!
//! Requests run `concurrency` at a time, each retried with exponential backoff and jitter on
//! connection errors, 429 and 5xx (a `Retry-After` is honoured), up to a cap. The API key
//! goes only to the given host: redirects are not followed.
//!
//! Over 600 lines because it is one protocol's client: the requests, their retries and
//! response cache, and the checks that every answer is what was asked belong together.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};

use crate::backend::{whole_items, Backend};
use crate::error::{Error, Result};
use crate::generate::{sample_seed, BatchPlan, Generation, SamplingConfig};
use crate::score::{batches, check_items, ScoreItem};
use crate::tokenizer::Tokenizer;

/// How to talk to the server.
#[derive(Debug, Clone)]
pub struct ServedOptions {
    /// The served model's name; None takes the server's only model.
    pub name: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries of one request before its error is final.
    pub max_retries: u32,
    /// Sent as a bearer token to this server only.
    pub api_key: Option<String>,
    /// A directory of answers kept by request (server, model, body): a rerun, or a run
    /// resumed after it was stopped, sends only the requests not answered yet.
    pub cache: Option<std::path::PathBuf>,
}

/// The message for every response that is not prompt log-probabilities of the tokens sent.
pub const NO_ECHO: &str =
    "the server does not return prompt log-probabilities (echo); fairlm cannot score with it";

/// What a served model's client has done so far, for a progress line; shared with the
/// caller (`ServedModel::stats`), updated as requests go and come.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// Completions answered by the server.
    pub answered: AtomicU64,
    /// Completions answered from the response cache.
    pub cached: AtomicU64,
    /// Requests sent and not yet answered.
    pub in_flight: AtomicU64,
    /// Requests sent again after a failure.
    pub retries: AtomicU64,
    /// Tokens in the server's answers (its `usage.total_tokens`).
    pub tokens: AtomicU64,
}

/// A model behind an OpenAI-compatible completions server (llama.cpp's, vLLM's): log-probabilities through `echo` + `logprobs`, continuations through sampling with a seed.
pub struct ServedModel {
    /// The base URL, ending in `/v1`.
    url: String,
    name: String,
    /// What `GET /v1/models` said of this model.
    description: Value,
    context_length: usize,
    /// The server is `fairlm serve`, which takes fairlm's per-sample seeds.
    is_fairlm: bool,
    client: reqwest::blocking::Client,
    options: ServedOptions,
    /// The tokenizer the ids come from: the returned tokens are checked against it.
    tokenizer: Tokenizer,
    stats: Arc<RequestStats>,
    /// Free request slots: `concurrency` bounds the requests in flight across every caller
    /// (batches of one call run concurrently, and so may the calls themselves).
    slots: (Mutex<usize>, std::sync::Condvar),
}

impl ServedModel {
    /// Connects to `url` (`http(s)://host:port/v1`), lists its models and picks the served one.
    pub fn connect(url: &str, tokenizer: Tokenizer, options: ServedOptions) -> Result<Self> {
        let url = url.trim_end_matches('/').to_string();
        let err = |reason: String| Error::Served {
            url: url.clone(),
            reason,
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| err(format!("cannot build an HTTP client: {e}")))?;
        let slots = options.concurrency.max(1);
        let mut this = ServedModel {
            url: url.clone(),
            name: String::new(),
            description: Value::Null,
            context_length: usize::MAX,
            is_fairlm: false,
            client,
            options,
            tokenizer,
            stats: Arc::default(),
            slots: (Mutex::new(slots), std::sync::Condvar::new()),
        };
        let listing = this.send(reqwest::Method::GET, "models", None)?;
        let models = listing
            .get("data")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                err("GET /v1/models did not list any model: not an OpenAI-compatible server".into())
            })?;
        let ids: Vec<&str> = models
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .collect();
        let chosen = match &this.options.name {
            Some(n) => models
                .iter()
                .find(|m| m.get("id").and_then(Value::as_str) == Some(n))
                .ok_or_else(|| {
                    err(format!(
                        "the server has no model named `{n}` (it serves: {})",
                        ids.join(", ")
                    ))
                })?,
            None if models.len() == 1 => &models[0],
            None => {
                return Err(err(format!(
                    "the server hosts several models; choose one with --served-name ({})",
                    ids.join(", ")
                )))
            }
        };
        this.name = chosen
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| err("GET /v1/models listed a model without an id".into()))?
            .to_string();
        // vLLM and `fairlm serve` report the context; others leave it to the server to refuse.
        // A scoring request also asks one generated token, which vLLM counts against the
        // context; `fairlm serve` generates none past it, so its whole context scores.
        this.is_fairlm = chosen.get("owned_by").and_then(Value::as_str) == Some("fairlm");
        if let Some(n) = chosen.get("max_model_len").and_then(Value::as_u64) {
            let fairlm = this.is_fairlm;
            this.context_length = if fairlm {
                n as usize
            } else {
                (n as usize).saturating_sub(1)
            };
        }
        this.description = chosen.clone();
        Ok(this)
    }

    /// The base URL, ending in `/v1`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The model name the server reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's own description of the model (`GET /v1/models`), recorded in results.
    pub fn description(&self) -> &Value {
        &self.description
    }

    /// The client's request counts, updated while it works.
    pub fn stats(&self) -> Arc<RequestStats> {
        Arc::clone(&self.stats)
    }

    /// The local tokenizer the server's tokens are checked against.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Served {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    /// A completions request, answered from the cache when it holds the answer; a new answer
    /// is written to the cache (atomically) once it has been checked by `check`.
    fn complete<T>(&self, body: &Value, check: impl Fn(&Value) -> Result<T>) -> Result<T> {
        let entry = self.options.cache.as_ref().map(|dir| {
            let key = format!("{}\n{}\n{}", self.url, self.name, body);
            dir.join(format!(
                "{}.json",
                crate::fetch::sha256_bytes(key.as_bytes())
            ))
        });
        if let Some(answer) = entry
            .as_ref()
            .and_then(|e| std::fs::read(e).ok())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        {
            // A cached answer that no longer passes the checks is asked again.
            if let Ok(value) = check(&answer) {
                self.stats.cached.fetch_add(1, Ordering::Relaxed);
                return Ok(value);
            }
        }
        let answer = self.send(reqwest::Method::POST, "completions", Some(body))?;
        let value = check(&answer)?;
        self.stats.answered.fetch_add(1, Ordering::Relaxed);
        let tokens = answer
            .pointer("/usage/total_tokens")
            .and_then(Value::as_u64);
        self.stats
            .tokens
            .fetch_add(tokens.unwrap_or(0), Ordering::Relaxed);
        if let Some(e) = entry {
            let written = e
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| crate::files::write_atomic(&e, answer.to_string().as_bytes()));
            written.map_err(|err| {
                self.error(format!(
                    "cannot write the response cache {}: {err}",
                    e.display()
                ))
            })?;
        }
        Ok(value)
    }

    /// One request with retries; the JSON body of a 2xx answer.
    fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let endpoint = format!("{}/{path}", self.url);
        let mut attempt = 0u32;
        /// A request slot, and its count in flight, held while the request lives.
        struct InFlight<'a>(&'a ServedModel);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                let (free, freed) = &self.0.slots;
                if let Ok(mut n) = free.lock() {
                    *n += 1;
                }
                freed.notify_one();
            }
        }
        {
            let (free, freed) = &self.slots;
            let mut n = free
                .lock()
                .map_err(|_| self.error("a request thread panicked"))?;
            while *n == 0 {
                n = freed
                    .wait(n)
                    .map_err(|_| self.error("a request thread panicked"))?;
            }
            *n -= 1;
        }
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(self);
        loop {
            let mut request = self.client.request(method.clone(), &endpoint);
            if let Some(key) = &self.options.api_key {
                request = request.bearer_auth(key);
            }
            if let Some(b) = body {
                request = request.json(b);
            }
            let (retry, wait) = match request.send() {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return response.json::<Value>().map_err(|e| {
                            self.error(format!(
                                "{method} /v1/{path} answered with a body that is not JSON: {e}"
                            ))
                        });
                    }
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().unwrap_or_default();
                    let message = server_message(&text);
                    match status.as_u16() {
                        401 | 403 => {
                            return Err(self.error(format!(
                                "the server refused the API key ({status}); set FAIRLM_API_KEY"
                            )))
                        }
                        404 if path == "models" => {
                            return Err(self.error(format!(
                                "no /v1/models here ({status}): not an OpenAI-compatible server"
                            )))
                        }
                        429 | 500..=599 => (
                            format!("{method} /v1/{path}: {status} {message}"),
                            retry_after,
                        ),
                        _ => {
                            return Err(
                                self.error(format!("{method} /v1/{path}: {status} {message}"))
                            )
                        }
                    }
                }
                Err(e) if e.is_timeout() => (
                    format!(
                        "no answer within {} s (--timeout)",
                        self.options.timeout.as_secs_f64()
                    ),
                    None,
                ),
                Err(e) if e.is_connect() || e.is_request() => (describe(&e), None),
                Err(e) => return Err(self.error(describe(&e))),
            };
            if attempt >= self.options.max_retries {
                return Err(self.error(format!(
                    "{retry} (after {} retries)",
                    self.options.max_retries
                )));
            }
            // Exponential backoff from 0.25 s, capped at 8 s, with full jitter; a server's
            // Retry-After wins.
            let backoff = 0.25 * 2f64.powi(attempt as i32).min(32.0);
            let pause = wait.unwrap_or_else(|| {
                Duration::from_secs_f64(rand::rng().random_range(backoff / 2.0..=backoff))
            });
            std::thread::sleep(pause);
            attempt += 1;
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prompt log-probabilities of one batch: `rows[k]` is the whole sequence; the answer has
    /// log-probabilities for positions 1.. of each.
    fn score_batch(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f64>>> {
        let body = json!({
            "model": self.name,
            "prompt": rows,
            "echo": true,
            "logprobs": 1,
            "max_tokens": 1,
            "temperature": 0,
            "return_tokens_as_token_ids": true,
        });
        self.complete(&body, |answer| self.read_scores(answer, rows))
    }

    /// The prompt log-probabilities of one scoring answer, checked.
    fn read_scores(&self, answer: &Value, rows: &[&[u32]]) -> Result<Vec<Vec<f64>>> {
        let choices = answer
            .get("choices")
            .and_then(Value::as_array)
            .ok_or_else(|| self.error(format!("{NO_ECHO} (no choices in the answer)")))?;
        let mut out: Vec<Option<Vec<f64>>> = vec![None; rows.len()];
        for (k, choice) in choices.iter().enumerate() {
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .map_or(k, |i| i as usize);
            let Some(row) = rows.get(index) else {
                return Err(self.error(format!(
                    "{NO_ECHO} (choice {index} for {} prompts)",
                    rows.len()
                )));
            };
            out[index] = Some(self.prompt_logprobs(choice, row)?);
        }
        out.into_iter()
            .enumerate()
            .map(|(k, r)| {
                r.ok_or_else(|| self.error(format!("{NO_ECHO} (no choice for prompt {k})")))
            })
            .collect()
    }

    /// Positions 1.. of `row` from one choice, after checking count, tokens and values.
    fn prompt_logprobs(&self, choice: &Value, row: &[u32]) -> Result<Vec<f64>> {
        let logprobs = choice.get("logprobs").filter(|v| !v.is_null());
        let values = logprobs
            .and_then(|l| l.get("token_logprobs"))
            .and_then(Value::as_array)
            .ok_or_else(|| self.error(format!("{NO_ECHO} (no logprobs.token_logprobs)")))?;
        let tokens = logprobs
            .and_then(|l| l.get("tokens"))
            .and_then(Value::as_array)
            .ok_or_else(|| self.error(format!("{NO_ECHO} (no logprobs.tokens)")))?;
        if values.len() < row.len() || tokens.len() < row.len() {
            return Err(self.error(format!(
                "{NO_ECHO} ({} log-probabilities for a prompt of {} tokens)",
                values.len(),
                row.len()
            )));
        }
        for (position, (&id, token)) in row.iter().zip(tokens).enumerate() {
            if !self.is_token(token, id) {
                return Err(self.error(format!(
                    "{NO_ECHO} (token {} came back as {token}, fairlm sent id {id})",
                    position + 1
                )));
            }
        }
        values[1..row.len()]
            .iter()
            .enumerate()
            .map(|(position, v)| {
                v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                    self.error(format!(
                        "{NO_ECHO} (prompt token {} has log-probability {v})",
                        position + 2
                    ))
                })
            })
            .collect()
    }

    /// A returned token matches the id sent: `token_id:N` (vLLM's `return_tokens_as_token_ids`,
    /// `fairlm serve`), the id's text as the tokenizer decodes it alone (vLLM's default), or
    /// its vocabulary entry (`convert_ids_to_tokens`, older vLLM).
    fn is_token(&self, token: &Value, id: u32) -> bool {
        match token.as_str() {
            Some(t) => match t.strip_prefix("token_id:") {
                Some(n) => n.parse::<u32>() == Ok(id),
                None => {
                    self.tokenizer.decode(&[id]).is_ok_and(|d| d == t)
                        || self.tokenizer.tokens(&[id]).first().is_some_and(|p| p == t)
                }
            },
            None => false,
        }
    }
}

impl ServedModel {
    /// `work(0..jobs)` with `concurrency` jobs in flight; `done` is told each finished job's
    /// index, on this thread. The first error stops the rest and is returned.
    fn run_concurrently<T: Send>(
        &self,
        jobs: usize,
        work: &(dyn Fn(usize) -> Result<T> + Sync),
        done: &mut dyn FnMut(usize),
    ) -> Result<Vec<T>> {
        let results: Mutex<Vec<Option<T>>> = Mutex::new((0..jobs).map(|_| None).collect());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<usize>();
        std::thread::scope(|scope| {
            for _ in 0..self.options.concurrency.clamp(1, jobs.max(1)) {
                let done_tx = done_tx.clone();
                let (results, next, failed, first_error) = (&results, &next, &failed, &first_error);
                scope.spawn(move || loop {
                    let job = next.fetch_add(1, Ordering::SeqCst);
                    if job >= jobs || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    match work(job) {
                        Ok(value) => {
                            if let Ok(mut r) = results.lock() {
                                r[job] = Some(value);
                            }
                            let _ = done_tx.send(job);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            for job in done_rx {
                done(job);
            }
        });
        if let Some(e) = first_error.into_inner().ok().flatten() {
            return Err(e);
        }
        results
            .into_inner()
            .map_err(|_| self.error("a request thread panicked"))?
            .into_iter()
            .map(|r| r.ok_or_else(|| self.error("a request was not answered")))
            .collect()
    }

    /// The seeded samples of prompts of one token length in one request, with every
    /// sample's seed in `fairlm_sample_seeds` (`fairlm serve` decodes them together as
    /// fairlm does in process, to the bit).
    fn sample_together(
        &self,
        tok: &Tokenizer,
        prompts: &[&(Vec<u32>, u64)],
        cfg: &SamplingConfig,
        plan: BatchPlan,
    ) -> Result<Vec<Vec<Generation>>> {
        let n = plan.samples;
        let seeds: Vec<Vec<u64>> = prompts
            .iter()
            .map(|(_, index)| {
                (0..n as u64)
                    .map(|i| sample_seed(plan.seed, *index, i))
                    .collect()
            })
            .collect();
        let prompts_json = json!(prompts.iter().map(|(ids, _)| ids).collect::<Vec<_>>());
        let mut body = self.sampling_body(prompts_json, n, plan.seed, cfg);
        body["fairlm_sample_seeds"] = json!(seeds);
        // The sampled tokens' log-probabilities, which `fairlm serve` has from decoding them.
        body["logprobs"] = json!(0);
        self.complete(&body, |answer| {
            let choices = answer
                .get("choices")
                .and_then(Value::as_array)
                .filter(|c| c.len() == prompts.len() * n)
                .ok_or_else(|| {
                    self.error(format!(
                        "POST /v1/completions did not answer {} choices",
                        prompts.len() * n
                    ))
                })?;
            let mut out: Vec<Vec<Generation>> = vec![Vec::new(); prompts.len()];
            for (k, choice) in choices.iter().enumerate() {
                let index = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .map_or(k, |i| i as usize);
                let (p, i) = (index / n, index % n);
                if p >= prompts.len() {
                    return Err(self.error(format!("POST /v1/completions answered choice {index}")));
                }
                out[p].push(self.read_choice(choice, tok, cfg, i)?);
            }
            for row in &mut out {
                row.sort_by_key(|g| g.sample);
            }
            Ok(out)
        })
    }

    /// One seeded sample of `prompt`: one request with `n: 1` and the sample's own seed, so a
    /// server that honours seeds repeats it, and `fairlm serve` draws fairlm's stream.
    fn sample(
        &self,
        tok: &Tokenizer,
        prompt: &[u32],
        cfg: &SamplingConfig,
        seed: u64,
        index: usize,
    ) -> Result<Generation> {
        let body = self.sampling_body(json!([prompt]), 1, seed, cfg);
        self.complete(&body, |answer| self.read_sample(answer, tok, cfg, index))
    }

    /// A sampling request's body. top_p and top_k only when set: fairlm draws from the sorted
    /// distribution when they are, from the vocabulary's order when not (the same tokens in
    /// law, other draws of one seed).
    fn sampling_body(&self, prompt: Value, n: usize, seed: u64, cfg: &SamplingConfig) -> Value {
        let mut body = json!({
            "model": self.name,
            "prompt": prompt,
            "n": n,
            "seed": seed,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_new_tokens,
            "stop": cfg.stop,
            "include_stop_str_in_output": true,
            "return_token_ids": true,
        });
        if let Some(p) = cfg.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(k) = cfg.top_k {
            body["top_k"] = json!(k);
        }
        body
    }

    /// The generation of one sampling answer.
    fn read_sample(
        &self,
        answer: &Value,
        tok: &Tokenizer,
        cfg: &SamplingConfig,
        index: usize,
    ) -> Result<Generation> {
        let choice = answer
            .pointer("/choices/0")
            .ok_or_else(|| self.error("POST /v1/completions answered without choices"))?;
        self.read_choice(choice, tok, cfg, index)
    }

    /// The generation of one choice.
    fn read_choice(
        &self,
        choice: &Value,
        tok: &Tokenizer,
        cfg: &SamplingConfig,
        index: usize,
    ) -> Result<Generation> {
        let text = choice
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| self.error("POST /v1/completions answered a choice without text"))?
            .to_string();
        // The sampled ids where the server returns them (`return_token_ids`: vLLM ≥ 0.10.2, `fairlm
        // serve`) and they spell the text; else the text's own ids (asking for logprobs would
        // cost the server a scoring pass per sample, and what fairlm measures is the text).
        let sampled: Option<Vec<u32>> =
            choice
                .get("token_ids")
                .and_then(Value::as_array)
                .and_then(|ids| {
                    ids.iter()
                        .map(|id| id.as_u64().and_then(|i| u32::try_from(i).ok()))
                        .collect()
                });
        let (token_ids, logprobs) = match sampled {
            Some(ids) if tok.decode(&ids).is_ok_and(|t| t == text) => {
                // The sampled tokens' log-probabilities where the server sent one finite
                // value per id (`fairlm serve` when asked; the caller need not score them).
                let values: Option<Vec<f64>> = choice
                    .pointer("/logprobs/token_logprobs")
                    .and_then(Value::as_array)
                    .filter(|v| v.len() == ids.len())
                    .and_then(|v| {
                        v.iter()
                            .map(|x| x.as_f64().filter(|x| x.is_finite()))
                            .collect()
                    });
                (ids, values.unwrap_or_default())
            }
            _ => (tok.encode(&text)?, Vec::new()),
        };
        let finish = match choice.get("finish_reason").and_then(Value::as_str) {
            Some("length") => "length",
            _ if cfg.stop.iter().any(|s| text.contains(s.as_str())) => "stop",
            _ => "eos",
        };
        Ok(Generation {
            sample: index,
            text,
            token_ids,
            finish,
            logprobs,
        })
    }
}

impl Backend for ServedModel {
    fn context_length(&self) -> usize {
        self.context_length
    }

    fn independent_work(&self) -> usize {
        self.options.concurrency.max(1)
    }

    fn score(
        &self,
        items: &[ScoreItem],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        check_items(items, self.context_length)?;
        let plan = batches(items, batch_size);
        let scores = self.run_concurrently(
            plan.len(),
            &|b| {
                let rows: Vec<&[u32]> = plan[b]
                    .iter()
                    .map(|&i| items[i].tokens.as_slice())
                    .collect();
                self.score_batch(&rows)
            },
            &mut |b| on_batch(plan[b].len()),
        )?;
        let mut out = vec![Vec::new(); items.len()];
        for (chunk, scores) in plan.iter().zip(scores) {
            for (&i, row) in chunk.iter().zip(scores) {
                out[i] = row[items[i].first_scored - 1..].to_vec();
            }
        }
        Ok(out)
    }

    /// From `fairlm serve`, the passes `score::score_prompted` forms, each as
    /// `score_after_prompts` sends it (concurrently); from other servers, each prompt +
    /// continuation whole.
    fn score_prompted(
        &self,
        items: &[(&[u32], &[u32])],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        if !self.is_fairlm {
            return self.score(&whole_items(items), batch_size, progress);
        }
        let passes = crate::score::prompt_passes(items);
        let scored = self.run_concurrently(
            passes.len(),
            &|k| {
                let pass = &passes[k];
                let conts: Vec<(usize, &[u32])> =
                    pass.items.iter().map(|&(p, i)| (p, items[i].1)).collect();
                self.score_after_prompts(&pass.prompts, &conts, batch_size)
            },
            &mut |k| progress(passes[k].items.len()),
        )?;
        let mut out = vec![Vec::new(); items.len()];
        for (pass, scores) in passes.iter().zip(scored) {
            for (&(_, i), sc) in pass.items.iter().zip(scores) {
                out[i] = sc;
            }
        }
        Ok(out)
    }

    /// From `fairlm serve`, one request with the prompts' length and the batch size in
    /// `fairlm_prompt_len` / `fairlm_batch_size`, which it scores from the prompts' caches as
    /// this process would, to the bit; from other servers, each prompt + continuation whole.
    fn score_after_prompts(
        &self,
        prompts: &[&[u32]],
        items: &[(usize, &[u32])],
        batch_size: usize,
    ) -> Result<Vec<Vec<f64>>> {
        let pairs: Vec<(&[u32], &[u32])> = items.iter().map(|(p, c)| (prompts[*p], *c)).collect();
        let Some(len) = prompts.first().map(|p| p.len()).filter(|_| self.is_fairlm) else {
            return self.score_prompted(&pairs, batch_size, &mut |_| {});
        };
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let items = whole_items(&pairs);
        check_items(&items, self.context_length)?;
        let rows: Vec<&[u32]> = items.iter().map(|i| i.tokens.as_slice()).collect();
        let body = json!({
            "model": self.name,
            "prompt": rows,
            "echo": true,
            "logprobs": 1,
            "max_tokens": 0,
            "temperature": 0,
            "return_tokens_as_token_ids": true,
            "fairlm_prompt_len": len,
            "fairlm_batch_size": batch_size,
        });
        let scores = self.complete(&body, |answer| self.read_scores(answer, &rows))?;
        Ok(scores.into_iter().map(|s| s[len - 1..].to_vec()).collect())
    }

    fn generate_batched(
        &self,
        tok: &Tokenizer,
        prompts: &[(Vec<u32>, u64)],
        cfg: &SamplingConfig,
        plan: BatchPlan,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<Generation>>> {
        cfg.validate()?;
        let n = plan.samples;
        if self.is_fairlm {
            // The batches `generate::generate_batched` decodes.
            let chunks = crate::generate::sampling_batches(prompts, plan);
            let answers = self.run_concurrently(
                chunks.len(),
                &|c| {
                    let batch: Vec<&(Vec<u32>, u64)> =
                        chunks[c].iter().map(|&i| &prompts[i]).collect();
                    self.sample_together(tok, &batch, cfg, plan)
                },
                &mut |c| progress(chunks[c].len()),
            )?;
            let mut out: Vec<Vec<Generation>> = vec![Vec::new(); prompts.len()];
            for (chunk, gens) in chunks.iter().zip(answers) {
                for (&i, g) in chunk.iter().zip(gens) {
                    out[i] = g;
                }
            }
            return Ok(out);
        }
        let mut left: Vec<usize> = vec![n; prompts.len()];
        let samples = self.run_concurrently(
            prompts.len() * n,
            &|job| {
                let (p, i) = (job / n, job % n);
                let (ids, index) = &prompts[p];
                self.sample(tok, ids, cfg, sample_seed(plan.seed, *index, i as u64), i)
            },
            &mut |job| {
                left[job / n] -= 1;
                if left[job / n] == 0 {
                    progress(1);
                }
            },
        )?;
        let mut it = samples.into_iter();
        Ok(prompts
            .iter()
            .map(|_| it.by_ref().take(n).collect())
            .collect())
    }
}

/// The `error.message` of an OpenAI-style error body, or the body's first line.
fn server_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            body.lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect()
        })
}

/// reqwest's error with its causes (the TLS or connection reason is in a cause).
fn describe(e: &reqwest::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
