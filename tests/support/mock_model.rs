//! A scripted mock of the OpenAI Responses API on 127.0.0.1, for the real codex.
//!
//! codex POSTs `{base_url}/responses` and reads server-sent events. Each request pops
//! the next [`Reply`] of the script (an empty script answers `Text("ok")`), and every
//! request body is recorded so tests can assert on what codex sent the model:
//! instructions, tools, skills, memory and the conversation so far.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete assistant message.
    Text(String),
    /// A message streamed as deltas, waiting `gap` before each piece.
    Stream { pieces: Vec<String>, gap: Duration },
    /// The model calls a function tool; codex runs it and asks again with the output.
    FunctionCall {
        name: String,
        arguments: Value,
        /// Set for tools codex groups in a `namespace` entry (MCP servers' tools).
        namespace: Option<String>,
    },
    /// An HTTP error status with a JSON error body.
    HttpError { status: u16, message: String },
    /// Starts a message, then sends nothing more for a long time (an endless turn).
    Hang,
}

impl Reply {
    pub fn text(t: &str) -> Reply {
        Reply::Text(t.to_owned())
    }
    pub fn call(name: &str, arguments: Value) -> Reply {
        Reply::FunctionCall {
            name: name.to_owned(),
            arguments,
            namespace: None,
        }
    }
    /// A call of tool `name` inside `namespace` (as `support::find_tool` reports it).
    pub fn call_in(namespace: &str, name: &str, arguments: Value) -> Reply {
        Reply::FunctionCall {
            name: name.to_owned(),
            arguments,
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        }
    }
}

/// Computes a reply from the request body (when the script is empty).
pub type Responder = Box<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    responder: Mutex<Option<Responder>>,
    requests: Mutex<Vec<Value>>,
    arrivals: Mutex<Vec<std::time::Instant>>,
    arrived: Notify,
}

#[derive(Clone)]
pub struct MockModel {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl MockModel {
    pub async fn start() -> MockModel {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/v1/responses", post(respond))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).await.unwrap();
        });
        MockModel { addr, inner }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Appends replies to the script.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.script.lock().unwrap().extend(replies);
    }

    /// Answers every request the script does not cover with `f(request body)`.
    pub fn respond_with(&self, f: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        *self.inner.responder.lock().unwrap() = Some(Box::new(f));
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// When each request arrived (for benchmarks: time spent before the model).
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.inner.arrivals.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (panics after 30 s).
    pub async fn wait_requests(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.inner.arrived.notified();
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "mock model: expected {n} requests, got {}",
                    self.requests().len()
                );
            }
        }
    }
}

async fn respond(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    inner
        .arrivals
        .lock()
        .unwrap()
        .push(std::time::Instant::now());
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut r = inner.requests.lock().unwrap();
        r.push(body);
        r.len()
    };
    inner.arrived.notify_waiters();
    let scripted = inner.script.lock().unwrap().pop_front();
    let reply = scripted.unwrap_or_else(|| match &*inner.responder.lock().unwrap() {
        Some(f) => f(&body_of(&inner, n)),
        None => Reply::text("ok"),
    });
    let id = format!("resp_{n}");
    match reply {
        Reply::HttpError { status, message } => Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                // The error `type` (and `code`) OpenAI's API sends with each status.
                json!({"error": {"message": message, "type": match status {
                    429 => "rate_limit_error",
                    500..=599 => "server_error",
                    _ => "invalid_request_error",
                }, "code": match status {
                    401 => Value::from("invalid_api_key"),
                    _ => Value::Null,
                }}})
                .to_string(),
            ))
            .unwrap(),
        Reply::Text(text) => sse(vec![
            (Duration::ZERO, created(&id)),
            (Duration::ZERO, message_done(&id, &text)),
            (Duration::ZERO, completed(&id)),
        ]),
        Reply::Stream { pieces, gap } => {
            let mut events = vec![
                (Duration::ZERO, created(&id)),
                (Duration::ZERO, message_added(&id)),
            ];
            for p in &pieces {
                events.push((
                    gap,
                    json!({"type": "response.output_text.delta", "item_id": format!("msg_{id}"),
                           "output_index": 0, "content_index": 0, "delta": p}),
                ));
            }
            events.push((Duration::ZERO, message_done(&id, &pieces.concat())));
            events.push((Duration::ZERO, completed(&id)));
            sse(events)
        }
        Reply::FunctionCall {
            name,
            arguments,
            namespace,
        } => sse(vec![
            (Duration::ZERO, created(&id)),
            (Duration::ZERO, {
                let mut item = json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": format!("call_{id}"),
                                      "name": name, "arguments": arguments.to_string()});
                if let Some(ns) = namespace {
                    item["namespace"] = json!(ns);
                }
                json!({"type": "response.output_item.done", "output_index": 0, "item": item})
            }),
            (Duration::ZERO, completed(&id)),
        ]),
        Reply::Hang => sse(vec![
            (Duration::ZERO, created(&id)),
            (Duration::ZERO, message_added(&id)),
            (Duration::from_secs(600), completed(&id)),
        ]),
    }
}

fn body_of(inner: &Inner, n: usize) -> Value {
    inner.requests.lock().unwrap()[n - 1].clone()
}

fn created(id: &str) -> Value {
    json!({"type": "response.created", "response": {"id": id}})
}

fn message_added(id: &str) -> Value {
    json!({"type": "response.output_item.added", "output_index": 0,
           "item": {"type": "message", "role": "assistant", "id": format!("msg_{id}"), "content": []}})
}

fn message_done(id: &str, text: &str) -> Value {
    json!({"type": "response.output_item.done", "output_index": 0,
           "item": {"type": "message", "role": "assistant", "id": format!("msg_{id}"),
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}})
}

fn completed(id: &str) -> Value {
    json!({"type": "response.completed",
           "response": {"id": id, "usage": {"input_tokens": 10, "input_tokens_details": null,
                        "output_tokens": 5, "output_tokens_details": null, "total_tokens": 15}}})
}

/// A `text/event-stream` body sending each event after its delay.
fn sse(events: Vec<(Duration, Value)>) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        for (delay, ev) in events {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let kind = ev["type"].as_str().unwrap_or("message").to_owned();
            let frame = format!("event: {kind}\ndata: {ev}\n\n");
            if tx.send(Bytes::from(frame)).await.is_err() {
                return; // codex hung up (e.g. the turn was interrupted)
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}
