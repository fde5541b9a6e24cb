//! `AGENT_RUNNER=container` (the default): each group's `codex app-server` in its own
//! podman or docker container, spoken to over `run -i`'s stdio.
//!
//! The container is the boundary: the agent sees its group folder, its IPC directory,
//! its codex home, `groups/global` (read-only except for main) and, for main, the
//! project read-only with `.env`, `store/` and `data/` masked (see
//! [`super::container_mounts`]). Hardened by default: no capabilities, no new
//! privileges, a read-only root filesystem with a private tmpfs `/tmp`, pid, memory and
//! CPU limits, an init process. Secrets never appear in the runtime's argv: a variable
//! a model provider needs is passed as `-e NAME` and its value only in the runtime
//! CLI's own environment.
//!
//! Lifecycle: each container is named `rustclaw-<folder>-<ms>` and labelled with this
//! installation's id; stopping an agent removes its container (not just the CLI
//! client), and the daemon removes its own leftovers at start and shutdown
//! ([`Runner::cleanup`]).

use crate::sync::LockExt as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::process::Child;

use super::container_mounts::{self as mounts, Allowlist, GroupContainerConfig, Mask, Mount};
use super::container_runtime::{
    ContainerError, LABEL_INSTALL, LABEL_ROOT, NAME_PREFIX, Runtime, RuntimeKind, install_id,
};
use super::runner::{
    AgentChild, AgentProcess, BoxFuture, Runner, RunnerError, SpawnSpec, StderrTail, spawn_piped,
};
use crate::paths::Paths;

/// How agent containers are run (from the daemon's configuration).
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub image: String,
    /// `--network`; `None` for the runtime's default.
    pub network: Option<String>,
    pub pids_limit: u64,
    pub memory: String,
    pub cpus: String,
    /// The host's `rust_claw` executable (what `agent_path` maps to the image's).
    pub host_tools_exe: PathBuf,
    /// The mount allowlist file (`None`: no extra mounts ever).
    pub allowlist: Option<PathBuf>,
}

pub struct ContainerRunner {
    runtime: Result<Runtime, ContainerError>,
    settings: ContainerSettings,
    paths: Paths,
    /// The canonical root: what the project mount and the mapping start from.
    root: PathBuf,
    install: String,
    /// The last image check: re-done on each spawn until it succeeds, so building
    /// the image fixes a running daemon without a restart.
    image_ok: Mutex<Option<Result<(), ContainerError>>>,
}

impl ContainerRunner {
    pub fn new(
        runtime: Result<Runtime, ContainerError>,
        settings: ContainerSettings,
        paths: Paths,
    ) -> ContainerRunner {
        let root = std::fs::canonicalize(paths.root()).unwrap_or_else(|_| paths.root().to_owned());
        ContainerRunner {
            install: install_id(&root),
            runtime,
            settings,
            paths,
            root,
            image_ok: Mutex::new(None),
        }
    }

    /// This installation's label value (tests look for its containers).
    pub fn install_id(&self) -> &str {
        &self.install
    }

    pub(crate) fn runtime(&self) -> Result<&Runtime, ContainerError> {
        self.runtime.as_ref().map_err(Clone::clone)
    }

    /// Runtime present, image present and speaking our IPC version: the daemon runs
    /// this at start-up (and logs the error with its fix); each agent start re-runs it
    /// ([`Runner::preflight`]) until it succeeds once.
    pub async fn check(&self) -> Result<(), ContainerError> {
        let rt = self.runtime()?;
        let res = rt
            .check_image(&self.settings.image, crate::agent_tools::IPC_VERSION)
            .await;
        *self.image_ok.lock_ignoring_poison() = Some(res.clone());
        res
    }

    fn last_check(&self) -> Option<Result<(), ContainerError>> {
        self.image_ok.lock_ignoring_poison().clone()
    }

    /// Where a host path appears inside the container.
    fn map(&self, host: &Path, spec_folder: Option<&str>) -> PathBuf {
        if host == self.settings.host_tools_exe {
            return PathBuf::from(mounts::TOOLS_EXE);
        }
        let host = self
            .root
            .join(host.strip_prefix(self.paths.root()).unwrap_or(host));
        let global = self.root.join("groups").join("global");
        if let Ok(rest) = host.strip_prefix(&global) {
            return Path::new(mounts::GLOBAL).join(rest);
        }
        let ipc_root = self.root.join("data").join("ipc");
        if let Ok(rest) = host.strip_prefix(&ipc_root) {
            let mut parts = rest.components();
            let folder = parts.next();
            if folder.is_some()
                && spec_folder.is_none_or(|f| folder.map(|c| c.as_os_str()) == Some(f.as_ref()))
            {
                return Path::new(mounts::IPC).join(parts.as_path());
            }
        }
        host
    }

    /// The standard mounts of `spec`'s group (host paths canonical).
    fn standard_mounts(&self, spec: &SpawnSpec) -> Result<(Vec<Mount>, Vec<Mask>), RunnerError> {
        let mount = |host: &Path, container: &str, read_only: bool| -> Result<Mount, RunnerError> {
            let host = std::fs::canonicalize(host)
                .map_err(|e| RunnerError::Other(format!("cannot mount {}: {e}", host.display())))?;
            if !mounts::mountable(&host) {
                return Err(RunnerError::Other(format!(
                    "cannot mount {}: container runtimes cannot mount paths containing , : or =",
                    host.display()
                )));
            }
            Ok(Mount {
                host,
                container: PathBuf::from(container),
                read_only,
            })
        };
        std::fs::create_dir_all(&spec.global_dir).map_err(|e| {
            RunnerError::Other(format!("cannot create {}: {e}", spec.global_dir.display()))
        })?;
        let mut list = vec![
            mount(&spec.workdir, mounts::GROUP, false)?,
            mount(&spec.global_dir, mounts::GLOBAL, !spec.is_main)?,
            mount(&spec.ipc_dir, mounts::IPC, false)?,
            mount(&spec.codex_home, mounts::CODEX_HOME, false)?,
            mount(&spec.home_dir, mounts::HOME, false)?,
        ];
        let mut masks = Vec::new();
        if spec.is_main {
            list.push(mount(&self.root, mounts::PROJECT, true)?);
            let project = Path::new(mounts::PROJECT);
            for dir in ["store", "data"] {
                if self.root.join(dir).is_dir() {
                    masks.push(Mask::Dir(project.join(dir)));
                }
            }
            // `.env` (and variants like `.env.local`) hold the daemon's secrets.
            if let Ok(entries) = std::fs::read_dir(&self.root) {
                for e in entries.flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if (name == ".env" || name.starts_with(".env."))
                        && name != ".env.example"
                        && mounts::mountable(&project.join(&*name))
                    {
                        masks.push(Mask::File(project.join(&*name)));
                    }
                }
            }
        }
        Ok((list, masks))
    }

    fn extra_mounts(&self, spec: &SpawnSpec) -> Vec<Mount> {
        let Some(config) = &spec.container_config else {
            return Vec::new();
        };
        let requested: GroupContainerConfig = match serde_json::from_value(config.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(group = %spec.folder, error = %e, "the group's container_config is not understood; no extra mounts");
                return Vec::new();
            }
        };
        if requested.additional_mounts.is_empty() {
            return Vec::new();
        }
        let allowlist: Option<Allowlist> = match &self.settings.allowlist {
            None => None,
            Some(path) => match mounts::load_allowlist(path) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(group = %spec.folder, error = %e, "no extra mounts");
                    return Vec::new();
                }
            },
        };
        let (ok, refused) =
            mounts::extra_mounts(&requested, allowlist.as_ref(), spec.is_main, &self.root);
        for reason in refused {
            tracing::warn!(group = %spec.folder, "extra mount refused: {reason}");
        }
        ok
    }

    /// The full argv after the runtime program, and the secret variables whose values
    /// go in the CLI's environment (named in argv only as `-e NAME`).
    pub fn run_args(
        &self,
        rt: &Runtime,
        spec: &SpawnSpec,
        name: &str,
    ) -> Result<Vec<OsString>, RunnerError> {
        let (mut list, masks) = self.standard_mounts(spec)?;
        list.extend(self.extra_mounts(spec));
        let s = &self.settings;
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&str]| a.extend(parts.iter().map(OsString::from));
        push(&["run", "-i", "--rm", "--init", "--pull=never"]);
        // The conversation streams through stdio: the runtime must not also keep it
        // in a log file on disk.
        push(&["--log-driver=none"]);
        push(&["--name", name]);
        let install = format!("{LABEL_INSTALL}={}", self.install);
        let root_label = format!("{LABEL_ROOT}={}", self.root.display());
        push(&["--label", &install, "--label", &root_label]);
        push(&["--cap-drop=ALL", "--security-opt=no-new-privileges"]);
        let pids = s.pids_limit.to_string();
        push(&[
            "--pids-limit",
            &pids,
            "--memory",
            &s.memory,
            "--cpus",
            &s.cpus,
        ]);
        push(&["--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,mode=1777"]);
        if let Some(net) = &s.network {
            push(&["--network", net]);
        }
        // Files the agent writes in its folder belong to the daemon's user on the host.
        let user = format!(
            "{}:{}",
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw()
        );
        if rt.kind == RuntimeKind::Podman && rt.rootless {
            push(&["--userns=keep-id"]);
        }
        push(&["--user", &user, "--workdir", mounts::GROUP]);
        for m in &list {
            let spec = format!(
                "type=bind,source={},destination={}{}",
                m.host.display(),
                m.container.display(),
                if m.read_only { ",readonly" } else { "" }
            );
            push(&["--mount", &spec]);
        }
        for mask in &masks {
            match mask {
                Mask::Dir(d) => {
                    // podman copies what the tmpfs hides into it unless told not to.
                    let copy = if rt.kind == RuntimeKind::Podman {
                        ",notmpcopyup"
                    } else {
                        ""
                    };
                    let t = format!("{}:ro,size=4k,mode=0500{copy}", d.display());
                    push(&["--tmpfs", &t]);
                }
                Mask::File(f) => {
                    let m = format!(
                        "type=bind,source=/dev/null,destination={},readonly",
                        f.display()
                    );
                    push(&["--mount", &m]);
                }
            }
        }
        let log = std::env::var("CODEX_RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
        let env = [
            format!("CODEX_HOME={}", mounts::CODEX_HOME),
            format!("HOME={}", mounts::HOME),
            "TMPDIR=/tmp".to_owned(),
            format!("RUST_LOG={log}"),
            // See host.rs: git must not climb out of the group folder.
            "GIT_CEILING_DIRECTORIES=/workspace".to_owned(),
        ];
        for e in &env {
            push(&["-e", e]);
        }
        for (k, _) in &spec.env {
            push(&["-e", k]);
        }
        push(&[&s.image, "/usr/local/bin/codex-native", "app-server"]);
        Ok(a)
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl Runner for ContainerRunner {
    fn kind(&self) -> &'static str {
        "container"
    }

    fn spawn(&self, spec: &SpawnSpec) -> Result<AgentProcess, RunnerError> {
        let rt = self.runtime().map_err(RunnerError::from)?;
        let name = format!("{NAME_PREFIX}{}-{}", spec.folder, now_ms());
        let args = self.run_args(rt, spec, &name)?;
        let mut cmd = rt.command();
        cmd.args(&args);
        // `-e NAME` takes the value from the CLI's environment: never in argv.
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        spawn_piped(&mut cmd, &rt.program, &spec.folder, |child, tail| {
            tracing::debug!(group = %spec.folder, container = %name, "agent container started");
            Box::new(ContainerChild {
                child,
                tail,
                name,
                runtime: rt.clone(),
                removed: false,
            })
        })
    }

    fn agent_path(&self, host_path: &Path) -> PathBuf {
        self.map(host_path, None)
    }

    fn sandbox_mode(&self) -> &'static str {
        // The container is the boundary; codex's bubblewrap sandbox cannot create
        // namespaces inside an unprivileged container anyway.
        "danger-full-access"
    }

    fn cleanup(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Ok(rt) = self.runtime() else { return };
            match rt.remove_ours(&self.install).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    removed = n,
                    "removed agent containers left by an earlier run of this installation"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot remove leftover agent containers"),
            }
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), RunnerError>> {
        Box::pin(async move {
            if matches!(self.last_check(), Some(Ok(()))) {
                return Ok(());
            }
            self.check().await.map_err(RunnerError::from)
        })
    }
}

struct ContainerChild {
    child: Child,
    tail: StderrTail,
    name: String,
    runtime: Runtime,
    removed: bool,
}

impl AgentChild for ContainerChild {
    fn id(&self) -> Option<u32> {
        self.child.id()
    }

    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<std::process::ExitStatus>> {
        Box::pin(async move {
            let status = self.child.wait().await?;
            // `run --rm` removed the container before its client exited.
            self.removed = true;
            Ok(status)
        })
    }

    fn kill(&mut self) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            // The container, not just the client: a killed `run -i` client leaves its
            // container running.
            let names = [self.name.clone()];
            let res = self.runtime.remove(&names).await;
            let _ = self.child.kill().await;
            self.removed = res.is_ok();
            res.map_err(std::io::Error::other)
        })
    }

    fn stderr_tail(&self) -> String {
        self.tail.text()
    }
}

impl Drop for ContainerChild {
    /// A session dropped without `close`/`kill` (a task cancelled at shutdown): start
    /// the removal anyway; the daemon's clean-up at shutdown and start catches the rest.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let mut cmd = self.runtime.std_command();
        cmd.args(["rm", "-f"]);
        if self.runtime.kind == RuntimeKind::Podman {
            cmd.args(["-t", "0"]);
        }
        cmd.arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(mut c) = cmd.spawn() {
            // Reap it in the background so it leaves no zombie.
            std::thread::spawn(move || c.wait());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FolderName;

    fn runner(root: &Path) -> ContainerRunner {
        let rt = Runtime {
            program: PathBuf::from("/usr/bin/podman"),
            kind: RuntimeKind::Podman,
            rootless: true,
        };
        ContainerRunner::new(
            Ok(rt),
            ContainerSettings {
                image: "img:1".into(),
                network: Some("none".into()),
                pids_limit: 64,
                memory: "512m".into(),
                cpus: "1.5".into(),
                host_tools_exe: PathBuf::from("/opt/bin/rust_claw"),
                allowlist: None,
            },
            Paths::new(root),
        )
    }

    fn spec(paths: &Paths, name: &str, is_main: bool) -> SpawnSpec {
        let f = FolderName::parse(name).unwrap();
        let s = SpawnSpec {
            folder: f.clone(),
            is_main,
            codex_home: paths.codex_home(&f),
            workdir: paths.group_dir(&f),
            global_dir: paths.global_dir(),
            ipc_dir: paths.ipc_dir(&f),
            tmp_dir: paths.agent_tmp_dir(&f),
            home_dir: paths.agent_home_dir(&f),
            env: vec![("PROVIDER_KEY".into(), "sk-very-secret".into())],
            container_config: None,
        };
        for d in [&s.codex_home, &s.workdir, &s.ipc_dir, &s.home_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        s
    }

    #[test]
    fn argv_is_hardened_and_names_secrets_without_their_values() {
        let tmp = tempfile::tempdir().unwrap();
        let r = runner(tmp.path());
        let paths = Paths::new(tmp.path());
        std::fs::create_dir_all(paths.store_dir()).unwrap();
        std::fs::write(tmp.path().join(".env"), "X=1").unwrap();
        let rt = r.runtime().unwrap().clone();
        let args: Vec<String> = r
            .run_args(&rt, &spec(&paths, "team", false), "rustclaw-team-1")
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        for flag in [
            "run -i --rm --init --pull=never",
            "--name rustclaw-team-1",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--read-only",
            "--pids-limit 64 --memory 512m --cpus 1.5",
            "--network none",
            "--userns=keep-id",
            "--workdir /workspace/group",
            "-e PROVIDER_KEY ",
            "img:1 /usr/local/bin/codex-native app-server",
        ] {
            assert!(joined.contains(flag), "{flag:?} missing: {joined}");
        }
        assert!(!joined.contains("sk-very-secret"), "{joined}");
        assert!(joined.contains(&format!("{LABEL_INSTALL}={}", r.install_id())));
        assert!(joined.contains("destination=/workspace/global,readonly"));
        assert!(!joined.contains("/workspace/project"), "non-main: {joined}");

        let main: Vec<String> = r
            .run_args(&rt, &spec(&paths, "main", true), "rustclaw-main-1")
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = main.join(" ");
        assert!(!joined.contains("destination=/workspace/global,readonly"));
        assert!(joined.contains("destination=/workspace/project,readonly"));
        assert!(joined.contains("--tmpfs /workspace/project/store:ro"));
        assert!(joined.contains("--tmpfs /workspace/project/data:ro"));
        assert!(joined.contains("source=/dev/null,destination=/workspace/project/.env,readonly"));
    }

    #[test]
    fn host_paths_map_to_mount_points() {
        let tmp = tempfile::tempdir().unwrap();
        let r = runner(tmp.path());
        let paths = Paths::new(tmp.path());
        let f = FolderName::parse("team").unwrap();
        assert_eq!(
            r.agent_path(Path::new("/opt/bin/rust_claw")),
            Path::new(mounts::TOOLS_EXE)
        );
        assert_eq!(
            r.agent_path(&paths.ipc_dir(&f)),
            Path::new("/workspace/ipc")
        );
        assert_eq!(
            r.agent_path(&paths.global_dir().join("AGENTS.md")),
            Path::new("/workspace/global/AGENTS.md")
        );
        assert_eq!(r.sandbox_mode(), "danger-full-access");
    }
}
