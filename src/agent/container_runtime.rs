//! The container CLI (podman or docker): which one, whether the agent image is there
//! and speaks our IPC version, and removing this installation's leftover containers.
//!
//! Every container we start carries two labels: [`LABEL_INSTALL`] (a hash of the
//! canonical RustClaw root: the same root always gives the same id) and [`LABEL_ROOT`]
//! (the root itself, for people reading `podman ps`). Clean-up removes exactly the
//! containers with our install id, never another installation's or project's.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::config::ContainerRuntime;

pub const LABEL_INSTALL: &str = "io.rust-claw.install";
pub(crate) const LABEL_ROOT: &str = "io.rust-claw.root";
pub(crate) const LABEL_IPC_VERSION: &str = "io.rust-claw.ipc-version";
/// Every agent container's name starts with this: `rustclaw-<folder>-<ms>`.
pub(crate) const NAME_PREFIX: &str = "rustclaw-";

/// Why agents cannot run in containers right now. Each message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    #[error("{}; {}", self.problem(), FIX_RUNTIME)]
    RuntimeMissing { wanted: String },
    #[error("{}; {}", self.problem(), FIX_IMAGE)]
    ImageMissing { image: String },
    #[error("{}; {}", self.problem(), FIX_REBUILD)]
    VersionSkew {
        image: String,
        found: String,
        want: u32,
    },
    #[error("{}", self.problem())]
    Broken {
        runtime: String,
        what: String,
        stderr: String,
    },
}

const FIX_RUNTIME: &str = "install podman (Debian/Ubuntu: apt-get install podman) and build \
     the agent image with scripts/build-image.sh, or set AGENT_RUNNER=host";
const FIX_IMAGE: &str = "run scripts/build-image.sh (or set AGENT_RUNNER=host)";
const FIX_REBUILD: &str = "rebuild it with scripts/build-image.sh";

impl ContainerError {
    /// What is wrong, without the fix.
    pub(crate) fn problem(&self) -> String {
        match self {
            ContainerError::RuntimeMissing { wanted } => {
                format!("no container runtime: {wanted} is not installed (not found on PATH)")
            }
            ContainerError::ImageMissing { image } => {
                format!("the agent image {image} is not built")
            }
            ContainerError::VersionSkew { image, found, want } => format!(
                "the agent image {image} speaks IPC version {found}, this rust_claw speaks {want}"
            ),
            ContainerError::Broken {
                runtime,
                what,
                stderr,
            } => format!("{runtime} failed ({what}): {stderr}"),
        }
    }

    /// What the owner must do; `None` when retrying may help (the runtime failed).
    pub(crate) fn fix(&self) -> Option<&'static str> {
        match self {
            ContainerError::RuntimeMissing { .. } => Some(FIX_RUNTIME),
            ContainerError::ImageMissing { .. } => Some(FIX_IMAGE),
            ContainerError::VersionSkew { .. } => Some(FIX_REBUILD),
            ContainerError::Broken { .. } => None,
        }
    }
}

/// The container CLI to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// `podman` or `docker` (as found on PATH).
    pub(crate) program: PathBuf,
    pub(crate) kind: RuntimeKind,
    /// Rootless podman maps the caller's uid into the container (`--userns=keep-id`).
    pub(crate) rootless: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuntimeKind {
    Podman,
    Docker,
}

impl RuntimeKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RuntimeKind::Podman => "podman",
            RuntimeKind::Docker => "docker",
        }
    }
}

/// Finds an executable on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
}

impl Runtime {
    /// `CONTAINER_RUNTIME`: auto prefers podman (docker's `run --rm` through podman's
    /// docker API loses exit codes, and podman needs no daemon).
    pub fn detect(choice: ContainerRuntime) -> Result<Runtime, ContainerError> {
        let candidates: &[RuntimeKind] = match choice {
            ContainerRuntime::Auto => &[RuntimeKind::Podman, RuntimeKind::Docker],
            ContainerRuntime::Podman => &[RuntimeKind::Podman],
            ContainerRuntime::Docker => &[RuntimeKind::Docker],
        };
        for kind in candidates {
            if let Some(program) = which(kind.name()) {
                let rootless = *kind == RuntimeKind::Podman && !nix::unistd::geteuid().is_root();
                return Ok(Runtime {
                    program,
                    kind: *kind,
                    rootless,
                });
            }
        }
        Err(ContainerError::RuntimeMissing {
            wanted: candidates
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// A command for this runtime, with the environment it needs and nothing else of
    /// the daemon's (the Discord token stays out of the runtime's environment too).
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::from(self.std_command());
        cmd.kill_on_drop(true);
        cmd
    }

    /// [`Runtime::command`] for synchronous use (removal from a destructor).
    pub fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.env_clear();
        for var in RUNTIME_ENV {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    async fn output(
        &self,
        what: &str,
        args: &[&str],
    ) -> Result<std::process::Output, ContainerError> {
        self.command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| ContainerError::Broken {
                runtime: self.name().to_owned(),
                what: what.to_owned(),
                stderr: e.to_string(),
            })
    }

    /// Checks that `image` exists and that its `rust_claw` speaks `ipc_version`.
    pub(crate) async fn check_image(
        &self,
        image: &str,
        ipc_version: u32,
    ) -> Result<(), ContainerError> {
        let format = format!("{{{{index .Config.Labels \"{LABEL_IPC_VERSION}\"}}}}");
        let out = self
            .output(
                "image inspect",
                &["image", "inspect", "--format", &format, image],
            )
            .await?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            let missing = [
                "no such image",
                "image not known",
                "not found",
                "no such object",
            ];
            if missing
                .iter()
                .any(|m| stderr.to_ascii_lowercase().contains(m))
            {
                return Err(ContainerError::ImageMissing {
                    image: image.to_owned(),
                });
            }
            return Err(ContainerError::Broken {
                runtime: self.name().to_owned(),
                what: format!("image inspect {image}"),
                stderr,
            });
        }
        let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if found != ipc_version.to_string() {
            return Err(ContainerError::VersionSkew {
                image: image.to_owned(),
                found: if found.is_empty() || found == "<no value>" {
                    "none (not built by scripts/build-image.sh)".to_owned()
                } else {
                    found
                },
                want: ipc_version,
            });
        }
        Ok(())
    }

    /// Names of the containers carrying `install`'s label (running or not).
    pub(crate) async fn list_ours(&self, install: &str) -> Result<Vec<String>, ContainerError> {
        let label = format!("label={LABEL_INSTALL}={install}");
        let name = format!("name=^{NAME_PREFIX}");
        let out = self
            .output(
                "ps",
                &[
                    "ps",
                    "-a",
                    "--filter",
                    &label,
                    "--filter",
                    &name,
                    "--format",
                    "{{.Names}}",
                ],
            )
            .await?;
        if !out.status.success() {
            return Err(ContainerError::Broken {
                runtime: self.name().to_owned(),
                what: "ps".to_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with(NAME_PREFIX))
            .map(str::to_owned)
            .collect())
    }

    /// Stops and removes containers by name at once (`-t 0`: no 10 s SIGTERM grace).
    pub(crate) async fn remove(&self, names: &[String]) -> Result<(), ContainerError> {
        if names.is_empty() {
            return Ok(());
        }
        let mut args: Vec<&str> = vec!["rm", "-f"];
        if self.kind == RuntimeKind::Podman {
            args.extend(["-t", "0"]);
        }
        args.extend(names.iter().map(String::as_str));
        let out = self.output("rm", &args).await?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            // Already gone (its `run --rm` client removed it meanwhile) is fine.
            if !stderr.to_ascii_lowercase().contains("no such container") {
                return Err(ContainerError::Broken {
                    runtime: self.name().to_owned(),
                    what: "rm".to_owned(),
                    stderr,
                });
            }
        }
        Ok(())
    }

    /// Removes every container of installation `install`: left by a daemon that was
    /// killed (its containers outlive the `run -i` clients), or still running at
    /// shutdown. Returns how many were removed.
    pub(crate) async fn remove_ours(&self, install: &str) -> Result<usize, ContainerError> {
        let names = self.list_ours(install).await?;
        self.remove(&names).await?;
        Ok(names.len())
    }
}

/// What the runtime CLI needs from the daemon's environment.
const RUNTIME_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "DBUS_SESSION_BUS_ADDRESS",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "CONTAINER_HOST",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "TMPDIR",
];

/// This installation's id: 16 hex digits of FNV-1a over the canonical root path
/// (stable across runs and Rust versions; not a secret, just a tag).
pub fn install_id(root: &Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in root.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_ids_differ_per_root_and_are_stable() {
        let a = install_id(Path::new("/srv/claw-a"));
        assert_eq!(a, install_id(Path::new("/srv/claw-a")));
        assert_ne!(a, install_id(Path::new("/srv/claw-b")));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn errors_name_the_fix() {
        let e = ContainerError::ImageMissing {
            image: "img".into(),
        };
        assert!(e.to_string().contains("scripts/build-image.sh"));
        let e = ContainerError::RuntimeMissing {
            wanted: "podman or docker".into(),
        };
        assert!(e.to_string().contains("AGENT_RUNNER=host"));
        let e = ContainerError::VersionSkew {
            image: "img".into(),
            found: "0".into(),
            want: 1,
        };
        assert!(e.to_string().contains("rebuild"));
    }
}
