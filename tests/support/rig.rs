//! A whole daemon in-process: real store, real codex (host runner) against the mock
//! model, the IPC watcher and scheduler running, and a [`TestChannel`] standing where
//! Discord would (the channel interface is the outer edge here).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rust_claw::actions::{self, RegisterGroup};
use rust_claw::agent::host::HostRunner;
use rust_claw::channels::{BoxFuture, Channel, ChannelError, Inbound};
use rust_claw::config::Config;
use rust_claw::daemon::Daemon;
use rust_claw::model::{FolderName, Jid};
use rust_claw::store::Store;
use tokio::sync::{Notify, mpsc};

use super::{TestRoot, codex_bin};

/// What the channel saw the daemon do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Sent { jid: String, text: String },
    Typing { jid: String, on: bool },
}

/// A chat platform double: messages are injected by the test, replies recorded. Like
/// Discord with `enforce_nonce`, a re-sent nonce is accepted but not posted twice.
#[derive(Default)]
pub struct TestChannel {
    inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    seen: Mutex<Vec<Seen>>,
    nonces: Mutex<HashSet<String>>,
    changed: Notify,
    next_id: Mutex<u64>,
}

impl TestChannel {
    /// A message from a person in `jid`.
    pub async fn say(&self, jid: &str, content: &str) {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let tx = self
            .inbound
            .lock()
            .unwrap()
            .clone()
            .expect("channel connected");
        tx.send(Inbound {
            chat_jid: Jid::parse(jid).unwrap(),
            chat_name: Some("test chat".into()),
            external_id: Some(format!("ext-{id}")),
            sender_id: "user-1".into(),
            sender_name: "Alice".into(),
            content: content.into(),
            sent_at: Utc::now(),
            from_self: false,
            from_bot: false,
            mentions_assistant: false,
            direct: false,
        })
        .await
        .unwrap();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Texts sent to `jid`, in order.
    pub fn sent_to(&self, jid: &str) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Sent { jid: j, text } if j == jid => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Waits (30 s at most) until `jid` has received `n` messages; returns them.
    pub async fn wait_sent(&self, jid: &str, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let changed = self.changed.notified();
            let got = self.sent_to(jid);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("expected {n} replies in {jid} within 30 s, got {got:?}");
            }
        }
    }
}

impl Channel for TestChannel {
    fn name(&self) -> &'static str {
        "test"
    }

    fn owns(&self, jid: &Jid) -> bool {
        jid.is_discord()
    }

    fn connect(&self, inbound: mpsc::Sender<Inbound>) -> BoxFuture<'_, Result<(), ChannelError>> {
        *self.inbound.lock().unwrap() = Some(inbound);
        Box::pin(async { Ok(()) })
    }

    fn send<'a>(
        &'a self,
        jid: &'a Jid,
        text: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        if self.nonces.lock().unwrap().insert(nonce.to_owned()) {
            self.seen.lock().unwrap().push(Seen::Sent {
                jid: jid.to_string(),
                text: text.to_owned(),
            });
        }
        self.changed.notify_waiters();
        Box::pin(async { Ok(()) })
    }

    fn set_typing<'a>(&'a self, jid: &'a Jid, on: bool) -> BoxFuture<'a, ()> {
        self.seen.lock().unwrap().push(Seen::Typing {
            jid: jid.to_string(),
            on,
        });
        Box::pin(async {})
    }

    fn disconnect(&self) -> BoxFuture<'_, ()> {
        self.inbound.lock().unwrap().take();
        Box::pin(async {})
    }
}

/// A group to register: (jid, folder, is_main, requires_trigger).
pub type GroupSpec<'a> = (&'a str, &'a str, bool, bool);

pub struct DaemonRig {
    pub t: TestRoot,
    pub channel: Arc<TestChannel>,
    pub daemon: Option<Daemon>,
    pub config: Arc<Config>,
    /// The host runner, or a container runner (`start_with_runner`).
    pub runner: Arc<dyn rust_claw::agent::Runner>,
}

impl DaemonRig {
    /// Registers `groups`, writes `.env` with `env` (plus the test defaults) and starts
    /// the daemon.
    pub async fn start(name: &str, env: &[(&str, &str)], groups: &[GroupSpec<'_>]) -> DaemonRig {
        DaemonRig::start_with_runner(name, env, groups, |_| {
            Arc::new(HostRunner::new(codex_bin()))
        })
        .await
    }

    /// [`DaemonRig::start`] with the runner `make` builds for the test root.
    pub async fn start_with_runner(
        name: &str,
        env: &[(&str, &str)],
        groups: &[GroupSpec<'_>],
        make: impl FnOnce(&TestRoot) -> Arc<dyn rust_claw::agent::Runner>,
    ) -> DaemonRig {
        let t = TestRoot::new(name).await;
        let runner = make(&t);
        let mut dotenv = String::from("TIMEZONE=UTC\nAGENT_RUNNER=host\n");
        for (k, v) in env {
            dotenv.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(t.root.join(".env"), dotenv).unwrap();
        let config = Arc::new(Config::load(&t.root).unwrap());
        for (jid, folder, main, requires) in groups {
            let req = RegisterGroup {
                jid: Jid::parse(jid).unwrap(),
                name: folder.to_uppercase(),
                folder: FolderName::parse(folder).unwrap(),
                trigger: None,
                requires_trigger: *requires,
                is_main: *main,
                container_config: None,
            };
            t.store
                .call(move |s| s.write(|tx| actions::register_group(tx, req, "@Andy", Utc::now())))
                .await
                .unwrap();
        }
        let mut rig = DaemonRig {
            t,
            channel: Arc::new(TestChannel::default()),
            daemon: None,
            config,
            runner,
        };
        rig.restart().await;
        rig
    }

    /// Starts the daemon (again) with a fresh channel connection.
    pub async fn restart(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
        let channel: Arc<dyn Channel> = self.channel.clone();
        self.daemon = Some(self.start_daemon(channel).await);
    }

    /// A daemon on this root (its store, config, settings and runner) with `channel`
    /// as its only channel; the caller owns it (stop the rig's own daemon first).
    pub async fn start_daemon(&self, channel: Arc<dyn Channel>) -> Daemon {
        let store = Store::open(&self.t.paths.database()).unwrap();
        Daemon::start_with(
            &self.t.paths,
            self.config.clone(),
            store,
            vec![channel],
            self.t.settings.clone(),
            self.runner.clone(),
        )
        .await
        .unwrap()
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("daemon running")
    }

    pub async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
    }
}

/// The text of the last `<message …>…</message>` in what codex sent the model.
pub fn last_message(req: &serde_json::Value) -> String {
    let body = req.to_string();
    let Some(start) = body.rfind("<message ") else {
        return String::new();
    };
    let rest = &body[start..];
    let open_end = rest.find('>').map(|i| i + 1).unwrap_or(0);
    let close = rest.find("</message>").unwrap_or(rest.len());
    rest[open_end..close].to_owned()
}
