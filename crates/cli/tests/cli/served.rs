//! Served models (issue 15): `fairlm serve` on loopback, started and stopped by each test, and
//! the client of `--model http://…` against it — the same numbers as in process, bit for bit —
//! and against servers written here that answer what a wrong server answers (llama.cpp's
//! completions without echo, other tokens, 503/429 before the real answer, no answer at all).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{assert_one_line_error, default_model, fairlm, fixture, scratch};

/// A running `fairlm serve`, stopped with SIGTERM (and checked to exit 0) when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fairlm"))
            .args(["serve", "--port", "0", "--model"])
            .arg(model)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let start = line.find("http://").expect(&line);
        let url = line[start..].split_whitespace().next().unwrap().to_string();
        Server { child, url }
    }

    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn results(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.join("results.json")).unwrap()).unwrap()
}

/// `bench crows` in process and through `url`: the same markdown and the same per-pair
/// log-probabilities, to the bit; results.json records the server.
fn crows_both_ways(model: &Path, url: &str, tokenizer: &Path, name: &str) {
    let dir = scratch(name);
    let run = |m: &str, out: &Path| {
        let o = fairlm(&["bench", "crows", "--file"])
            .arg(fixture("crows-sample.csv"))
            .args(["--model", m, "--tokenizer"])
            .arg(tokenizer)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let local = run(model.to_str().unwrap(), &dir.join("local"));
    let served = run(url, &dir.join("served"));
    assert_eq!(local, served);
    let (a, b) = (results(&dir.join("local")), results(&dir.join("served")));
    assert_eq!(a["pairs"], b["pairs"]);
    assert_eq!(a["pair_table"], b["pair_table"]);
    assert_eq!(b["model"]["served"]["url"], url);
    assert!(
        b["model"]["served"]["tokenizer_sha256"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
}

#[test]
fn served_tiny_model_scores_as_in_process_and_stops_on_sigterm() {
    let model = fixture("tiny-llama");
    let server = Server::start(&model, &[]);
    crows_both_ways(&model, &server.url, &model, "served-tiny");
    // score --per-token, perplexity and seeded samples: the same JSON lines.
    for args in [
        vec![
            "score",
            "--per-token",
            "The nurse said that she was tired.",
            "A b c d.",
        ],
        vec!["perplexity", "--window", "64"],
        vec!["generate", "The nurse", "A b", "-n", "3", "--seed", "5"],
    ] {
        let local = fairlm(&args).arg("--model").arg(&model).output().unwrap();
        let served = fairlm(&args)
            .args(["--model", &server.url, "--tokenizer"])
            .arg(&model)
            .output()
            .unwrap();
        assert!(
            served.status.success(),
            "{}",
            String::from_utf8_lossy(&served.stderr)
        );
        assert_eq!(local.stdout, served.stdout, "{args:?}");
    }
    // The quick audit: the same results.json but for the model's record and the run's config
    // (which names the model as it was reached), to the bit (samples decoded in the batches
    // fairlm forms, with every sample's seed; continuations scored from their prompts' caches
    // in the same batches).
    let dir = scratch("served-audit");
    for (m, out) in [
        (model.to_str().unwrap(), "local"),
        (server.url.as_str(), "served"),
    ] {
        let o = fairlm(&["audit", "--quick", "--model", m, "--tokenizer"])
            .arg(&model)
            .arg("--out")
            .arg(dir.join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let without_model = |out: &str| {
        let mut r = results(&dir.join(out));
        let fields = r.as_object_mut().unwrap();
        let model = fields.remove("model").unwrap();
        let run = fields.remove("run_config").unwrap();
        (r, model, run)
    };
    let ((a, local, run_a), (b, served, run_b)) = (without_model("local"), without_model("served"));
    assert_eq!(run_a["model"], model.to_str().unwrap());
    assert_eq!(run_b["model"], server.url.as_str());
    assert!(!a["records"].as_array().unwrap().is_empty());
    assert_eq!(a, b);
    assert!(local.get("served").is_none());
    assert_eq!(served["served"]["url"], server.url.as_str());
    assert!(
        server.stop().success(),
        "SIGTERM must end the server with exit 0"
    );
}

#[test]
fn served_default_model_scores_crows_as_in_process() {
    let model = default_model();
    let server = Server::start(&model, &[]);
    crows_both_ways(&model, &server.url, &model, "served-default");
}

#[test]
fn served_model_errors_are_one_line() {
    let model = fixture("tiny-llama");
    let server = Server::start(&model, &["--served-name", "tiny"]);
    let score = |url: &str, extra: &[&str]| {
        fairlm(&[
            "score",
            "hello",
            "--max-retries",
            "1",
            "--model",
            url,
            "--tokenizer",
        ])
        .arg(&model)
        .args(extra)
        .output()
        .unwrap()
    };
    assert_one_line_error(
        score(&server.url, &["--served-name", "other"]),
        &[&server.url, "no model named `other`", "tiny"],
    );
    let out = fairlm(&["score", "hello", "--model", &server.url])
        .output()
        .unwrap();
    assert_one_line_error(out, &["--tokenizer"]);
    // Commands that need the weights say so.
    let out = fairlm(&["mitigate", "--out", "never", "--model", &server.url])
        .output()
        .unwrap();
    assert_one_line_error(out, &[&server.url, "needs the model's weights"]);
    // Nothing listens: the URL and the connection error, after the retries.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", free.local_addr().unwrap());
    drop(free);
    assert_one_line_error(score(&dead, &[]), &[&dead, "after 1 retries"]);
    // TLS to a server that speaks plain HTTP: the URL and the handshake's failure.
    let tls = server.url.replace("http://", "https://");
    assert_one_line_error(score(&tls, &[]), &[&tls]);
    drop(server);
}

/// What a fake server answers to one request (method and path, body).
type Answer = Box<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// A loopback HTTP server that answers each request with `answer` (None: never answer), one
/// connection at a time, `Connection: close`.
fn fake_server(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let Some((head, body)) = read_request(&mut stream) else {
                    return;
                };
                match answer(&head, &body) {
                    Some(response) => {
                        let _ = stream.write_all(response.as_bytes());
                    }
                    None => std::thread::sleep(std::time::Duration::from_secs(30)),
                }
            });
        }
    });
    url
}

fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let head = request_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    Some((head, String::from_utf8_lossy(&body).into_owned()))
}

fn http(status: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

const MODELS: &str = r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#;

/// The ids of the prompt(s) in a completions request.
fn prompt_ids(body: &str) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["prompt"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn servers_that_do_not_echo_the_prompt_are_refused() {
    let tokenizer = fixture("tiny-llama");
    let score = |url: &str| {
        fairlm(&[
            "score",
            "a b c",
            "--max-retries",
            "0",
            "--timeout",
            "2",
            "--model",
            url,
        ])
        .arg("--tokenizer")
        .arg(&tokenizer)
        .output()
        .unwrap()
    };
    let no_echo = "the server does not return prompt log-probabilities (echo)";
    // llama.cpp's server: log-probabilities of the generated token only.
    let llama_cpp = fake_server(Box::new(|head, _| {
        Some(if head.starts_with("GET") {
            http("200 OK", "", MODELS)
        } else {
            http(
                "200 OK",
                "",
                r#"{"choices":[{"index":0,"text":" x","logprobs":{"tokens":[" x"],"token_logprobs":[-1.5]}}]}"#,
            )
        })
    }));
    assert_one_line_error(score(&llama_cpp), &[&llama_cpp, no_echo]);
    // Echo of other tokens than those sent.
    let other_tokens = fake_server(Box::new(|head, body| {
        Some(if head.starts_with("GET") {
            http("200 OK", "", MODELS)
        } else {
            let ids = prompt_ids(body);
            let tokens: Vec<String> = ids.iter().map(|i| format!("token_id:{}", i + 1)).collect();
            let mut values = vec![serde_json::Value::Null];
            values.extend(ids.iter().skip(1).map(|_| serde_json::json!(-1.0)));
            values.push(serde_json::json!(-1.0));
            http(
                "200 OK",
                "",
                &serde_json::json!({"choices": [{"index": 0, "logprobs": {"tokens": tokens, "token_logprobs": values}}]}).to_string(),
            )
        })
    }));
    assert_one_line_error(
        score(&other_tokens),
        &[&other_tokens, no_echo, "came back as"],
    );
    // A server that is not OpenAI-compatible, one that wants a key, one that never answers.
    let not_openai = fake_server(Box::new(|_, _| Some(http("404 Not Found", "", "{}"))));
    assert_one_line_error(
        score(&not_openai),
        &[&not_openai, "not an OpenAI-compatible server"],
    );
    let locked = fake_server(Box::new(|_, _| {
        Some(http(
            "401 Unauthorized",
            "",
            r#"{"error":{"message":"bad key"}}"#,
        ))
    }));
    assert_one_line_error(score(&locked), &[&locked, "API key"]);
    let hung = fake_server(Box::new(|_, _| None));
    assert_one_line_error(score(&hung), &[&hung, "no answer within 2 s"]);
}

/// Sends the request (`METHOD PATH`, body) to `upstream` (`host:port`) and returns its whole
/// answer; None when nothing listens there.
fn forward(upstream: &str, head: &str, body: &str) -> Option<String> {
    let (method, path) = head.split_once(' ')?;
    let mut up = TcpStream::connect(upstream).ok()?;
    write!(
        up,
        "{method} {path} HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    up.read_to_string(&mut response).ok()?;
    Some(response)
}

/// A proxy in front of `fairlm serve` that answers the first completions requests with 503
/// and 429 (Retry-After: 1) and forwards the rest: the client retries and gets the in-process
/// numbers.
#[test]
fn overloaded_servers_are_retried() {
    let model = fixture("tiny-llama");
    let server = Server::start(&model, &[]);
    let upstream = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string();
    let faults = Arc::new(AtomicUsize::new(0));
    let seen = faults.clone();
    let proxy = fake_server(Box::new(move |head, body| {
        if head.starts_with("POST") {
            match seen.fetch_add(1, Ordering::SeqCst) {
                0 => return Some(http("503 Service Unavailable", "", "{}")),
                1 => return Some(http("429 Too Many Requests", "Retry-After: 1\r\n", "{}")),
                _ => {}
            }
        }
        forward(&upstream, head, body)
    }));
    let args = ["score", "--per-token", "The nurse said that she was tired."];
    let local = fairlm(&args).arg("--model").arg(&model).output().unwrap();
    let served = fairlm(&args)
        .args(["--model", &proxy, "--concurrency", "1", "--tokenizer"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        served.status.success(),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
    assert_eq!(local.stdout, served.stdout);
    assert_eq!(
        faults.load(Ordering::SeqCst),
        3,
        "two faults, then the answer"
    );
    drop(server);
}

/// The server killed in the middle of an audit and started again: the same command with
/// `--resume` sends only the requests that were not answered (the templates probed are kept
/// in OUT/probe-checkpoint.json, the answers in OUT/requests), ends with the uninterrupted
/// run's results, and a third run sends none.
#[test]
fn a_served_audit_resumes_after_the_server_dies() {
    let model = fixture("tiny-llama");
    let first = Server::start(&model, &[]);
    let host = |s: &Server| {
        s.url
            .trim_start_matches("http://")
            .trim_end_matches("/v1")
            .to_string()
    };
    let upstream = Arc::new(std::sync::Mutex::new(host(&first)));
    let first = Arc::new(std::sync::Mutex::new(Some(first)));
    let posts = Arc::new(AtomicUsize::new(0));
    // After this many completions requests the proxy kills the server (0: never).
    let kill_after = Arc::new(AtomicUsize::new(0));
    let (to, count, kill, victim) = (
        upstream.clone(),
        posts.clone(),
        kill_after.clone(),
        first.clone(),
    );
    let proxy = fake_server(Box::new(move |head, body| {
        if head.starts_with("POST") {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            if n == kill.load(Ordering::SeqCst) {
                if let Some(server) = victim.lock().unwrap().take() {
                    drop(server);
                }
            }
        }
        let up = to.lock().unwrap().clone();
        // Nothing listening: the connection is closed without an answer.
        forward(&up, head, body).or(Some(String::new()))
    }));
    let dir = scratch("served-resume");
    let audit = |out: &str, extra: &[&str]| {
        fairlm(&[
            "audit",
            "--quick",
            "--max-retries",
            "0",
            "--model",
            &proxy,
            "--tokenizer",
        ])
        .arg(&model)
        .arg("--out")
        .arg(dir.join(out))
        .args(extra)
        .output()
        .unwrap()
    };
    let whole = audit("whole", &[]);
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    let total = posts.swap(0, Ordering::SeqCst);
    assert!(total > 20, "{total} requests");
    kill_after.store(total / 2, Ordering::SeqCst);
    let broken = audit("resumed", &[]);
    assert_eq!(
        broken.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
    let kept = std::fs::read_dir(dir.join("resumed/requests"))
        .unwrap()
        .count();
    // Requests queued in the server when it died (up to the 8 in flight) are lost with it.
    assert!(
        kept + 8 >= total / 2 && kept < total / 2,
        "{kept} of {total} kept"
    );
    let second = Server::start(&model, &[]);
    *upstream.lock().unwrap() = host(&second);
    posts.store(0, Ordering::SeqCst);
    kill_after.store(0, Ordering::SeqCst);
    // The templates probed before the server died were saved as each finished.
    assert!(dir.join("resumed/probe-checkpoint.json").exists());
    let resumed = audit("resumed", &["--resume"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        posts.load(Ordering::SeqCst),
        total - kept,
        "only the missing requests"
    );
    assert_eq!(results(&dir.join("whole")), results(&dir.join("resumed")));
    posts.store(0, Ordering::SeqCst);
    assert!(!dir.join("resumed/probe-checkpoint.json").exists());
    let again = audit("resumed", &[]);
    assert!(again.status.success());
    assert_eq!(posts.load(Ordering::SeqCst), 0, "a rerun costs no request");
    drop(second);
}

/// The answer shape of vLLM's `/v1/completions` with `echo` and `logprobs` (vLLM's
/// `vllm/entrypoints/openai/protocol.py`, `CompletionResponse` / `CompletionLogProbs`:
/// `text_offset`, `token_logprobs` with `null` for the first prompt token, `tokens`,
/// `top_logprobs` as a list of {token: logprob} or null; built in `serving_completion.py`'s
/// `_create_completion_logprobs`, tokens as `token_id:N` with `return_tokens_as_token_ids`,
/// else each id decoded alone): fairlm reads the prompt positions from it.
#[test]
fn vllm_shaped_answers_are_read() {
    let model = fixture("tiny-llama");
    for as_ids in [true, false] {
        let url = fake_server(Box::new(move |head, body| {
            if head.starts_with("GET") {
                return Some(http(
                    "200 OK",
                    "",
                    r#"{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"vllm","root":"m","parent":null,"max_model_len":128,"permission":[]}]}"#,
                ));
            }
            let request: serde_json::Value = serde_json::from_str(body).unwrap();
            let choices: Vec<serde_json::Value> = request["prompt"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(k, ids)| {
                    let ids: Vec<u64> = ids
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap())
                        .collect();
                    // The prompt's tokens, then the one generated token (id 7).
                    let all: Vec<u64> = ids.iter().copied().chain([7]).collect();
                    let tokens: Vec<String> = all
                        .iter()
                        .map(|id| {
                            if as_ids {
                                format!("token_id:{id}")
                            } else {
                                decoded(*id)
                            }
                        })
                        .collect();
                    let mut values = vec![serde_json::Value::Null];
                    values.extend((1..all.len()).map(|i| serde_json::json!(-(i as f64) / 8.0)));
                    let mut top = vec![serde_json::Value::Null];
                    top.extend(
                        (1..all.len())
                            .map(|i| serde_json::json!({ tokens[i].clone(): -(i as f64) / 8.0 })),
                    );
                    serde_json::json!({
                        "index": k,
                        "text": "echoed text",
                        "logprobs": {
                            "text_offset": (0..all.len()).collect::<Vec<_>>(),
                            "token_logprobs": values,
                            "tokens": tokens,
                            "top_logprobs": top,
                        },
                        "finish_reason": "length",
                        "stop_reason": null,
                        "prompt_logprobs": null,
                    })
                })
                .collect();
            Some(http(
                "200 OK",
                "",
                &serde_json::json!({
                    "id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                    "choices": choices,
                    "usage": {"prompt_tokens": 1, "total_tokens": 2, "completion_tokens": 1},
                })
                .to_string(),
            ))
        }));
        let out = fairlm(&[
            "score",
            "--per-token",
            "a b c",
            "--model",
            &url,
            "--tokenizer",
        ])
        .arg(&model)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let got: Vec<f64> = line["token_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        // Positions 1.. of the prompt (after the context token), not the generated token.
        let want: Vec<f64> = (1..=got.len()).map(|i| -(i as f64) / 8.0).collect();
        assert_eq!(got, want, "tokens as ids: {as_ids}");
    }
}

/// An id of the tiny model's vocabulary decoded alone, as vLLM writes `tokens` by default.
fn decoded(id: u64) -> String {
    let tok = fairlm_model::Tokenizer::from_dir(&fixture("tiny-llama")).unwrap();
    tok.decode(&[id as u32]).unwrap()
}

/// The yardstick benchmarks through `fairlm serve`: HolisticBias (whole sentences, scored in
/// the batches fairlm forms) and BBQ (answers scored from their prompt's cache, in the passes
/// fairlm forms) give the in-process records bit for bit, and so does BOLD (its samples and
/// the probe's Δ on them).
#[test]
fn served_yardstick_benchmarks_match_in_process() {
    let model = fixture("tiny-llama");
    let server = Server::start(&model, &[]);
    let dir = scratch("served-yardstick");
    let run = |bench: &str, file: &str, extra: &[&str], m: &str, out: &str| {
        let o = fairlm(&["bench", bench, "--file"])
            .arg(fixture(file))
            .args(extra)
            .args(["--model", m, "--tokenizer"])
            .arg(&model)
            .arg("--out")
            .arg(dir.join(out))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{bench}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        results(&dir.join(out))
    };
    let both = |bench: &str, file: &str, extra: &[&str]| {
        let local = run(
            bench,
            file,
            extra,
            model.to_str().unwrap(),
            &format!("{bench}-local"),
        );
        let served = run(bench, file, extra, &server.url, &format!("{bench}-served"));
        (local, served)
    };
    let (a, b) = both("holistic", "holistic-sample", &["--bootstrap", "20"]);
    assert_eq!(a["records"], b["records"]);
    assert_eq!(a["table"], b["table"]);
    let (a, b) = both(
        "bbq",
        "bbq-sample.jsonl",
        &["--per-stratum", "0", "--bootstrap", "20"],
    );
    assert_eq!(a["table"], b["table"]);
    assert!(!a["records"].as_array().unwrap().is_empty());
    assert_eq!(a["records"], b["records"]);
    let (a, b) = both(
        "bold",
        "bold-sample",
        &["--per-group", "2", "--bootstrap", "20"],
    );
    assert!(!a["records"].as_array().unwrap().is_empty());
    assert_eq!(a["records"], b["records"]);
    drop(server);
}
