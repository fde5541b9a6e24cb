//! Real podman for the container tests and bench: the runtime, the agent image built
//! by scripts/build-image.sh, and a container runner for a test root. Nothing here
//! skips: a missing runtime or image FAILS with the command that fixes it.

use std::path::PathBuf;
use std::sync::Arc;

use rust_claw::agent::container::{ContainerRunner, ContainerSettings};
use rust_claw::agent::container_runtime::{LABEL_INSTALL, Runtime};
use rust_claw::config::ContainerRuntime;

use super::TestRoot;

/// The image under test: `$RUST_CLAW_TEST_IMAGE`, else the default tag.
pub fn image() -> String {
    std::env::var("RUST_CLAW_TEST_IMAGE")
        .unwrap_or_else(|_| "rust-claw-codex-agent:latest".to_owned())
}

/// podman, or a failure naming the fix.
pub fn podman() -> Runtime {
    Runtime::detect(ContainerRuntime::Podman).unwrap_or_else(|e| {
        panic!("{e}\n(run scripts/install-test-deps.sh: it installs and configures podman)")
    })
}

pub fn settings(allowlist: Option<PathBuf>) -> ContainerSettings {
    ContainerSettings {
        image: image(),
        // The mock model listens on the host's 127.0.0.1.
        network: Some("host".to_owned()),
        pids_limit: 256,
        memory: "1g".to_owned(),
        cpus: "1".to_owned(),
        host_tools_exe: PathBuf::from(env!("CARGO_BIN_EXE_rust_claw")),
        allowlist,
    }
}

/// A container runner for `t` whose image check passed (fails the test otherwise).
pub async fn runner(t: &TestRoot, allowlist: Option<PathBuf>) -> Arc<ContainerRunner> {
    let r = ContainerRunner::new(Ok(podman()), settings(allowlist), t.paths.clone());
    if let Err(e) = r.check().await {
        panic!(
            "{e}\n(the container tests need the agent image: run scripts/install-test-deps.sh, \
             which builds it with scripts/build-image.sh)"
        );
    }
    Arc::new(r)
}

/// Names of the containers labelled with installation `install`.
pub fn containers_of(install: &str) -> Vec<String> {
    let out = podman()
        .std_command()
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label={LABEL_INSTALL}={install}"),
            "--format",
            "{{.Names}}",
        ])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "podman ps failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs `podman` with `args`, returning its stdout (fails the test on error).
pub fn podman_ok(args: &[&str]) -> String {
    let out = podman()
        .std_command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts a container that stands in for an orphan a killed daemon left: labelled
/// with installation `install` (or unlabelled), running `sleep 600` until removed.
/// (Whether a killed daemon's own container outlives it is up to timing: once its
/// stdin closes codex exits and `--rm` removes it.)
pub fn stand_in_container(name: &str, install: Option<&str>) {
    let mut args = vec!["run", "-d", "--rm", "--init", "--name", name];
    let label;
    if let Some(i) = install {
        label = format!("{LABEL_INSTALL}={i}");
        args.extend(["--label", &label]);
    }
    let img = image();
    args.extend(["--network", "none", &img, "sleep", "600"]);
    podman_ok(&args);
}
