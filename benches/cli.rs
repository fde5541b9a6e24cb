//! Benchmark: wall time of one admin CLI call (`list-tasks --json`) against a store with
//! 1,000 tasks, and of opening a current store (no migration work).
//!
//! `cargo bench --bench cli` (release profile) prints median and p90 over 50 runs;
//! `cargo test --bench cli` (what `cargo test --all-targets` does) is a short smoke run.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use rust_claw::actions::{self, NewTask, RegisterGroup};
use rust_claw::model::{ContextMode, FolderName, Jid, ScheduleType};
use rust_claw::store::Store;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: median {:.2} ms, p90 {:.2} ms, min {:.2} ms ({} runs)",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    let runs = if std::env::args().any(|a| a == "--bench") {
        50
    } else {
        3
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("store").join("messages.db");
    let mut store = Store::open(&db).expect("open store");
    let jid = Jid::parse("123456789012345678@discord").unwrap();
    let folder = FolderName::parse("main").unwrap();
    store
        .write(|tx| {
            let now = Utc::now();
            actions::register_group(
                tx,
                RegisterGroup::main(jid.clone(), "Main", folder.clone()),
                "@Andy",
                now,
            )?;
            for i in 0..1_000 {
                let (kind, value) = match i % 3 {
                    0 => (ScheduleType::Cron, "0 9 * * 1-5".to_owned()),
                    1 => (ScheduleType::Interval, format!("{}", 60_000 + i)),
                    _ => (ScheduleType::Once, "2099-01-01T00:00:00Z".to_owned()),
                };
                actions::create_task(
                    tx,
                    NewTask {
                        id: None,
                        group_folder: folder.clone(),
                        chat_jid: jid.clone(),
                        prompt: format!("task number {i}: summarise the channel"),
                        schedule_type: kind,
                        schedule_value: value,
                        context_mode: ContextMode::Group,
                        timezone: None,
                    },
                    "bench",
                    chrono_tz::Tz::UTC,
                    now,
                )?;
            }
            Ok::<_, actions::ActionError>(())
        })
        .expect("seed");
    drop(store);

    let opens: Vec<Duration> = (0..runs * 4)
        .map(|_| {
            let t = Instant::now();
            let s = Store::open(&db).expect("reopen");
            let e = t.elapsed();
            drop(s);
            e
        })
        .collect();
    report("Store::open (schema current)", opens);

    let exe = env!("CARGO_BIN_EXE_rust_claw");
    let run = || {
        let t = Instant::now();
        let out = Command::new(exe)
            .args(["list-tasks", "--json"])
            .env("RUST_CLAW_ROOT", dir.path())
            .env("TIMEZONE", "UTC")
            .output()
            .expect("run rust_claw");
        let e = t.elapsed();
        assert!(out.status.success());
        assert!(out.stdout.len() > 100_000, "expected 1,000 tasks of JSON");
        e
    };
    for _ in 0..5 {
        run();
    }
    report(
        "rust_claw list-tasks --json, 1,000 tasks",
        (0..50).map(|_| run()).collect(),
    );
    let run_groups = || {
        let t = Instant::now();
        let out = Command::new(exe)
            .args(["list-groups"])
            .env("RUST_CLAW_ROOT", dir.path())
            .env("TIMEZONE", "UTC")
            .output()
            .expect("run rust_claw");
        assert!(out.status.success());
        t.elapsed()
    };
    report(
        "rust_claw list-groups",
        (0..50).map(|_| run_groups()).collect(),
    );
}
