//! Line-delimited JSON-RPC over any async reader/writer pair.
//!
//! `codex app-server` speaks one JSON object per line on stdio. Three shapes arrive:
//! `{id, result|error}` answers one of our requests; `{method, id}` is a request from
//! the server (numbered by the server, so its ids live apart from ours); `{method}` is
//! a notification. A reader task sorts them: answers complete the waiting request's
//! oneshot, server requests are answered at once by a handler (so a turn never hangs
//! on an unanswered request), notifications go to one channel in arrival order.
//!
//! Bytes are collected up to each newline and decoded as UTF-8 per *line*: a
//! multi-byte character split across two reads is never broken.

use crate::sync::LockExt as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// JSON-RPC "method not found": the answer to server requests we do not support.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("the agent process closed its connection")]
    Closed,
    #[error("{method} failed: {message} (code {code})")]
    Server {
        method: String,
        code: i64,
        message: String,
    },
    #[error("unexpected answer to {method}: {reason}")]
    Decode { method: String, reason: String },
}

/// A notification from the server, params undecoded: the caller picks what it knows.
#[derive(Debug, Clone)]
pub struct Notification {
    pub(crate) method: String,
    pub(crate) params: Value,
}

/// The error half of a JSON-RPC answer to a server request.
#[derive(Debug, Clone)]
pub struct HandlerError {
    pub code: i64,
    pub message: String,
}

/// Answers a server→client request synchronously: `Ok(result)` or a JSON-RPC error.
pub(crate) type RequestHandler =
    Arc<dyn Fn(&str, &Value) -> Result<Value, HandlerError> + Send + Sync + 'static>;

type Pending = HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>;

struct Inner {
    /// Lines for the writer task; `None` once closed (dropping it closes the writer,
    /// which closes the child's stdin).
    out: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// Requests waiting for an answer; `None` once the reader saw end of stream.
    pending: Mutex<Option<Pending>>,
    next_id: AtomicU64,
}

/// A cloneable handle: any task may send requests while another reads notifications.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

impl RpcClient {
    /// Starts the reader and writer tasks. Notifications arrive on the returned
    /// receiver, which ends when the server's output ends.
    pub fn spawn<R, W>(
        reader: R,
        writer: W,
        handler: RequestHandler,
    ) -> (RpcClient, mpsc::UnboundedReceiver<Notification>)
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (note_tx, note_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            out: Mutex::new(Some(out_tx)),
            pending: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(write_loop(writer, out_rx));
        tokio::spawn(read_loop(reader, inner.clone(), note_tx, handler));
        (RpcClient { inner }, note_rx)
    }

    /// Sends a request and waits for its answer.
    pub async fn request<P: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<T, RpcError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match lock(&self.inner.pending).as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err(RpcError::Closed),
        };
        let line = json!({"id": id, "method": method, "params": params}).to_string();
        if !self.send_line(line) {
            if let Some(p) = lock(&self.inner.pending).as_mut() {
                p.remove(&id);
            }
            return Err(RpcError::Closed);
        }
        let value = match rx.await {
            Ok(Ok(v)) => v,
            Ok(Err(RpcError::Server { code, message, .. })) => {
                return Err(RpcError::Server {
                    method: method.to_owned(),
                    code,
                    message,
                });
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RpcError::Closed),
        };
        serde_json::from_value(value).map_err(|e| RpcError::Decode {
            method: method.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Sends a notification (no answer expected).
    pub(crate) fn notify(&self, method: &str, params: Option<Value>) -> Result<(), RpcError> {
        let msg = match params {
            Some(p) => json!({"method": method, "params": p}),
            None => json!({"method": method}),
        };
        if self.send_line(msg.to_string()) {
            Ok(())
        } else {
            Err(RpcError::Closed)
        }
    }

    /// Closes our side: the writer task flushes and drops the writer, which for a
    /// child process closes its stdin (codex then exits on its own).
    pub(crate) fn close(&self) {
        lock(&self.inner.out).take();
    }

    fn send_line(&self, line: String) -> bool {
        match lock(&self.inner.out).as_ref() {
            Some(tx) => tx.send(line).is_ok(),
            None => false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock_ignoring_poison()
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if let Err(e) = w.write_all(line.as_bytes()).await {
            tracing::debug!(error = %e, "agent stdin closed");
            break;
        }
        // Flush only when nothing else is queued: one syscall for a burst.
        if rx.is_empty()
            && let Err(e) = w.flush().await
        {
            tracing::debug!(error = %e, "agent stdin closed");
            break;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: R,
    inner: Arc<Inner>,
    notes: mpsc::UnboundedSender<Notification>,
    handler: RequestHandler,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "agent stdout failed");
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(msg) => dispatch(msg, &inner, &notes, &handler),
            Err(e) => tracing::warn!(error = %e, "agent sent a line that is not JSON; ignored"),
        }
    }
    // End of stream: every waiting request fails instead of hanging.
    if let Some(pending) = lock(&inner.pending).take() {
        for (_, tx) in pending {
            let _ = tx.send(Err(RpcError::Closed));
        }
    }
}

fn dispatch(
    mut msg: Value,
    inner: &Inner,
    notes: &mpsc::UnboundedSender<Notification>,
    handler: &RequestHandler,
) {
    let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
    let id = msg.get_mut("id").map(Value::take);
    let params = msg
        .get_mut("params")
        .map(Value::take)
        .unwrap_or(Value::Null);
    match (method, id) {
        (Some(method), Some(id)) => {
            let answer = match handler(&method, &params) {
                Ok(result) => json!({"id": id, "result": result}),
                Err(e) => {
                    tracing::debug!(%method, code = e.code, "refused a server request");
                    json!({"id": id, "error": {"code": e.code, "message": e.message}})
                }
            };
            if let Some(tx) = lock(&inner.out).as_ref() {
                let _ = tx.send(answer.to_string());
            }
        }
        (Some(method), None) => {
            let _ = notes.send(Notification { method, params });
        }
        (None, Some(id)) => {
            let Some(id) = id.as_u64() else {
                tracing::warn!(%id, "answer with an id we never used; ignored");
                return;
            };
            let Some(tx) = lock(&inner.pending).as_mut().and_then(|p| p.remove(&id)) else {
                tracing::warn!(id, "answer to no pending request; ignored");
                return;
            };
            let result = if let Some(err) = msg.get("error") {
                Err(RpcError::Server {
                    method: String::new(),
                    code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: err
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                        .to_owned(),
                })
            } else {
                Ok(msg
                    .get_mut("result")
                    .map(Value::take)
                    .unwrap_or(Value::Null))
            };
            let _ = tx.send(result);
        }
        (None, None) => tracing::warn!("agent sent a message with neither id nor method; ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    fn refuse_all() -> RequestHandler {
        Arc::new(|m, _| {
            Err(HandlerError {
                code: METHOD_NOT_FOUND,
                message: format!("{m} unsupported"),
            })
        })
    }

    /// A fake server on the other end of in-memory pipes.
    struct Peer {
        to_client: tokio::io::DuplexStream,
        from_client: BufReader<tokio::io::DuplexStream>,
    }

    impl Peer {
        async fn read_line(&mut self) -> Value {
            let mut s = String::new();
            self.from_client.read_line(&mut s).await.unwrap();
            serde_json::from_str(&s).unwrap()
        }
        async fn send(&mut self, bytes: &[u8]) {
            self.to_client.write_all(bytes).await.unwrap();
            self.to_client.flush().await.unwrap();
        }
    }

    fn pair(handler: RequestHandler) -> (RpcClient, mpsc::UnboundedReceiver<Notification>, Peer) {
        let (client_out, server_in) = duplex(1024);
        let (server_out, client_in) = duplex(1024);
        let (c, n) = RpcClient::spawn(client_in, client_out, handler);
        (
            c,
            n,
            Peer {
                to_client: server_out,
                from_client: BufReader::new(server_in),
            },
        )
    }

    #[tokio::test]
    async fn answers_are_matched_by_id_even_out_of_order() {
        let (c, _n, mut peer) = pair(refuse_all());
        let c2 = c.clone();
        let a = tokio::spawn(async move { c2.request::<_, Value>("a", &json!({})).await });
        let first = peer.read_line().await;
        let c3 = c.clone();
        let b = tokio::spawn(async move { c3.request::<_, Value>("b", &json!({})).await });
        let second = peer.read_line().await;
        // Answer b first, then a.
        peer.send(format!("{{\"id\":{},\"result\":\"B\"}}\n", second["id"]).as_bytes())
            .await;
        peer.send(
            format!(
                "{{\"id\":{},\"error\":{{\"code\":-1,\"message\":\"nope\"}}}}\n",
                first["id"]
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(b.await.unwrap().unwrap(), json!("B"));
        let err = a.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[tokio::test]
    async fn utf8_split_across_writes_is_decoded_per_line() {
        let (_c, mut n, mut peer) = pair(refuse_all());
        let line = "{\"method\":\"x\",\"params\":{\"t\":\"안녕 🦀\"}}\n".as_bytes();
        // Split inside the multi-byte characters, one byte at a time.
        for b in line {
            peer.send(&[*b]).await;
        }
        let note = n.recv().await.unwrap();
        assert_eq!(note.method, "x");
        assert_eq!(note.params["t"], "안녕 🦀");
    }

    #[tokio::test]
    async fn server_requests_are_always_answered() {
        let (_c, _n, mut peer) = pair(refuse_all());
        peer.send(b"{\"id\":0,\"method\":\"item/tool/call\",\"params\":{}}\n")
            .await;
        let answer = peer.read_line().await;
        assert_eq!(answer["id"], 0);
        assert_eq!(answer["error"]["code"], METHOD_NOT_FOUND);
    }

    #[tokio::test]
    async fn pending_requests_fail_when_the_server_goes_away() {
        let (c, mut n, peer) = pair(refuse_all());
        let req = tokio::spawn(async move { c.request::<_, Value>("a", &json!({})).await });
        tokio::task::yield_now().await;
        drop(peer);
        assert!(matches!(req.await.unwrap(), Err(RpcError::Closed)));
        assert!(
            n.recv().await.is_none(),
            "notifications end with the stream"
        );
    }

    #[tokio::test]
    async fn close_closes_the_writer() {
        let (c, _n, mut peer) = pair(refuse_all());
        c.close();
        let mut rest = Vec::new();
        peer.from_client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert!(matches!(c.notify("x", None), Err(RpcError::Closed)));
    }
}
