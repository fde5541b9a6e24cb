//! What the benchmarks share: the run mode, the runtime they run on, one way to
//! summarise timings, where bench roots live, and a daemon root with registered groups.
//!
//! A bench includes it as `#[path = "support/mod.rs"] mod bench;` (the name `support`
//! is the integration tests' helpers, which benches include too). It depends on
//! nothing from `tests/support`, so any bench can use it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_claw::actions::{self, ActionError, RegisterGroup};
use rust_claw::model::{FolderName, Jid};
use rust_claw::store::Store;

/// `cargo bench` passes `--bench`; `cargo test --benches` (and `--all-targets`) runs
/// the binary without it: then a quick smoke run proves the benchmark still works.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The runtime every bench runs on: two workers, as on the 2-core target machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The sample at quantile `q` (0 to 1) of samples sorted ascending (nearest rank).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The distribution of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// Summarises the samples (at least one).
    pub fn of(mut xs: Vec<Duration>) -> Summary {
        assert!(!xs.is_empty(), "no samples to summarise");
        xs.sort();
        Summary {
            n: xs.len(),
            min: xs[0],
            p50: percentile(&xs, 0.5),
            p90: percentile(&xs, 0.9),
            p99: percentile(&xs, 0.99),
            max: xs[xs.len() - 1],
        }
    }

    /// One line: `name n=.. min .. p50 .. p90 .. p99 .. max ..`, in µs when the
    /// median is below a millisecond, else in ms.
    pub fn print(&self, name: &str) {
        let (scale, unit) = if self.p50 < Duration::from_millis(1) {
            (1e6, "µs")
        } else {
            (1e3, "ms")
        };
        let v = |d: Duration| d.as_secs_f64() * scale;
        println!(
            "{name:<42} n={:<5} min {:>7.1} {unit}  p50 {:>7.1} {unit}  p90 {:>7.1} {unit}  \
             p99 {:>7.1} {unit}  max {:>7.1} {unit}",
            self.n,
            v(self.min),
            v(self.p50),
            v(self.p90),
            v(self.p99),
            v(self.max)
        );
    }
}

/// Summarises the samples, prints the line and returns the summary.
pub fn report(name: &str, xs: Vec<Duration>) -> Summary {
    let s = Summary::of(xs);
    s.print(name);
    s
}

/// `~/.cache/rust_claw/bench-homes`: outside the checkout and outside $TMPDIR (codex
/// refuses a CODEX_HOME under $TMPDIR). Fails loudly if some parent is a git checkout
/// after all, since codex's per-turn git probes would then be measured too.
pub fn outside_checkout_base() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let base = Path::new(&home).join(".cache/rust_claw/bench-homes");
    std::fs::create_dir_all(&base).unwrap();
    if let Some(repo) = base.ancestors().find(|d| d.join(".git").exists()) {
        panic!(
            "{} is inside the git checkout {}: set HOME elsewhere to bench the \
             outside-a-checkout layout",
            base.display(),
            repo.display()
        );
    }
    base
}

/// Makes `dir` a fresh root for `rust_claw run`: `.env` (UTC, host runner, plus
/// `extra_env` lines) and `groups` registered Discord groups `g0..`, `g0` the main
/// group, the others answering only to the trigger.
pub fn daemon_root(dir: &Path, groups: u64, extra_env: &str) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        format!("TIMEZONE=UTC\nAGENT_RUNNER=host\n{extra_env}"),
    )
    .unwrap();
    let mut store = Store::open(&dir.join("store/messages.db")).unwrap();
    store
        .write(|tx| {
            for i in 0..groups {
                let req = RegisterGroup {
                    jid: Jid::parse(&format!("{}@discord", 100_000_000_000_000_000 + i)).unwrap(),
                    name: format!("G{i}"),
                    folder: FolderName::parse(&format!("g{i}")).unwrap(),
                    trigger: None,
                    requires_trigger: i != 0,
                    is_main: i == 0,
                    container_config: None,
                };
                actions::register_group(tx, req, "@Andy", chrono::Utc::now())?;
            }
            Ok::<_, ActionError>(())
        })
        .unwrap();
}

/// Asks a daemon to stop, as systemd does (SIGTERM).
pub fn sigterm(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM the daemon");
}
