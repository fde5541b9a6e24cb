//! The local terminal channel: `rust_claw chat`.
//!
//! Lines typed on the terminal (or piped in) become messages in chat `<folder>@local`,
//! routed to the group with that folder; replies are printed. It is a one-to-one
//! conversation, so every line is addressed to the assistant whatever the group's
//! trigger rules. The reader and writer are injected, so tests can drive it through
//! pipes exactly as a person drives it through a terminal.

use std::sync::Arc;

use chrono::Utc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, Notify, mpsc};

use super::{BoxFuture, Channel, ChannelError, Inbound};
use crate::model::{FolderName, Jid};

type Reader = Box<dyn AsyncBufRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

pub(crate) struct LocalChannel {
    jid: Jid,
    user: String,
    assistant: String,
    reader: Mutex<Option<Reader>>,
    writer: Arc<Mutex<Writer>>,
    /// Notified when the input ends (EOF): the chat session is over once replies are out.
    input_closed: Arc<Notify>,
    /// Lines handed to the daemon so far (final once `input_closed` fired).
    lines_sent: Arc<std::sync::atomic::AtomicU64>,
}

impl LocalChannel {
    pub(crate) fn new(
        folder: &FolderName,
        assistant: &str,
        reader: Reader,
        writer: Writer,
    ) -> LocalChannel {
        let user = std::env::var("USER").unwrap_or_else(|_| "you".to_owned());
        LocalChannel {
            jid: Jid::local_for(folder),
            user,
            assistant: assistant.to_owned(),
            reader: Mutex::new(Some(reader)),
            writer: Arc::new(Mutex::new(writer)),
            input_closed: Arc::new(Notify::new()),
            lines_sent: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// How many lines were handed to the daemon (all of them, once the input closed).
    pub(crate) fn lines_sent(&self) -> u64 {
        self.lines_sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The terminal's own stdin and stdout. Must be called inside a tokio runtime.
    ///
    /// stdin is copied by a plain thread into a socket pair the channel reads. A
    /// blocking read cannot be cancelled, and in tokio's blocking pool it would hold
    /// the runtime's shutdown (and so Ctrl-C) until the next line or Ctrl-D; a thread
    /// of our own simply ends with the process.
    pub(crate) fn stdio(folder: &FolderName, assistant: &str) -> std::io::Result<LocalChannel> {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                // Ends at EOF (dropping `theirs` ends the channel's input) or when the
                // channel's side is gone.
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut theirs);
            })?;
        ours.set_nonblocking(true)?;
        let reader = tokio::net::UnixStream::from_std(ours)?;
        let reader = Box::new(tokio::io::BufReader::new(reader));
        Ok(LocalChannel::new(
            folder,
            assistant,
            reader,
            Box::new(tokio::io::stdout()),
        ))
    }

    pub(crate) fn jid(&self) -> &Jid {
        &self.jid
    }

    /// Resolves when the input has ended.
    pub(crate) fn input_closed(&self) -> Arc<Notify> {
        self.input_closed.clone()
    }
}

impl Channel for LocalChannel {
    fn name(&self) -> &'static str {
        "local"
    }

    fn owns(&self, jid: &Jid) -> bool {
        *jid == self.jid
    }

    fn connect(&self, inbound: mpsc::Sender<Inbound>) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let Some(mut reader) = self.reader.lock().await.take() else {
                return Err(ChannelError::Permanent(
                    "the local channel is already connected".into(),
                ));
            };
            let jid = self.jid.clone();
            let user = self.user.clone();
            let closed = self.input_closed.clone();
            let sent = self.lines_sent.clone();
            tokio::spawn(async move {
                let mut line = String::new();
                let mut n: u64 = 0;
                loop {
                    line.clear();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let text = line.trim();
                    if text.is_empty() {
                        continue;
                    }
                    n += 1;
                    let msg = Inbound {
                        chat_jid: jid.clone(),
                        chat_name: Some("terminal".into()),
                        // Unique per process start and line: a message is stored once.
                        external_id: Some(format!(
                            "{}-{}-{n}",
                            std::process::id(),
                            Utc::now().timestamp_millis()
                        )),
                        sender_id: format!("local:{user}"),
                        sender_name: user.clone(),
                        content: text.to_owned(),
                        sent_at: Utc::now(),
                        from_self: false,
                        from_bot: false,
                        mentions_assistant: false,
                        direct: true,
                    };
                    if inbound.send(msg).await.is_err() {
                        break;
                    }
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                closed.notify_one();
            });
            Ok(())
        })
    }

    fn send<'a>(
        &'a self,
        jid: &'a Jid,
        text: &'a str,
        _nonce: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if *jid != self.jid {
                return Err(ChannelError::Permanent(format!(
                    "the local channel does not own {jid}"
                )));
            }
            let mut w = self.writer.lock().await;
            let out = format!("{}: {}\n", self.assistant, text);
            w.write_all(out.as_bytes())
                .await
                .and(w.flush().await)
                .map_err(|e| ChannelError::Permanent(format!("cannot write to the terminal: {e}")))
        })
    }

    fn set_typing<'a>(&'a self, _jid: &'a Jid, _on: bool) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn disconnect(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
