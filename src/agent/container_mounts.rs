//! What an agent container sees: the standard mounts of a group, and the extra mounts
//! a group's `container_config` asks for, checked against the owner's allowlist.
//!
//! ```text
//! /workspace/group     groups/<folder>/            rw   (the working directory)
//! /workspace/global    groups/global/              ro   (rw for main)
//! /workspace/ipc       data/ipc/<folder>/          rw   (the agent's requests)
//! /workspace/codex     data/sessions/<f>/codex/    rw   (CODEX_HOME)
//! /workspace/home      data/sessions/<f>/home/     rw   (HOME)
//! /workspace/project   <root>/                     ro   main only; .env, store/, data/ masked
//! /workspace/extra/<n> an allowlisted host dir     ro unless allowed
//! ```
//!
//! The allowlist lives OUTSIDE every project (`~/.config/rust-claw/mount-allowlist.json`)
//! and is never mounted, so no agent can extend its own reach. Without it a group gets
//! no extra mounts at all. Its format:
//!
//! ```json
//! { "allowed_roots": [ { "path": "~/projects", "read_write": false } ],
//!   "blocked_patterns": ["secrets"],
//!   "non_main_read_only": true }
//! ```
//! A group's `container_config` names its mounts:
//! `{"additional_mounts": [{"host_path": "~/projects/app", "container_path": "app", "readonly": true}]}`.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// Where the standard mounts appear inside the container.
pub(crate) const GROUP: &str = "/workspace/group";
pub(crate) const GLOBAL: &str = "/workspace/global";
pub(crate) const IPC: &str = "/workspace/ipc";
pub(crate) const CODEX_HOME: &str = "/workspace/codex";
pub(crate) const HOME: &str = "/workspace/home";
pub(crate) const PROJECT: &str = "/workspace/project";
pub(crate) const EXTRA: &str = "/workspace/extra";
/// The `rust_claw` executable inside the image (serves `agent-tools`).
pub(crate) const TOOLS_EXE: &str = "/usr/local/bin/rust_claw";

/// Path components no extra mount may contain, whatever the allowlist says.
pub(crate) const BLOCKED_ALWAYS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".gpg",
    ".aws",
    ".azure",
    ".gcloud",
    ".kube",
    ".docker",
    ".config/rust-claw",
    ".codex",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".password-store",
    "id_rsa",
    "id_ed25519",
    "id_ecdsa",
    "private_key",
    "credentials",
];

/// One bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub(crate) host: PathBuf,
    pub(crate) container: PathBuf,
    pub(crate) read_only: bool,
}

/// What to hide inside a mounted directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mask {
    /// An empty read-only tmpfs over a directory.
    Dir(PathBuf),
    /// `/dev/null` over a file.
    File(PathBuf),
}

/// The owner's mount allowlist.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Allowlist {
    #[serde(default)]
    pub(crate) allowed_roots: Vec<AllowedRoot>,
    /// Extra path components refused (added to [`BLOCKED_ALWAYS`]).
    #[serde(default)]
    pub(crate) blocked_patterns: Vec<String>,
    /// Non-main groups get every extra mount read-only (default true).
    #[serde(default = "yes")]
    pub(crate) non_main_read_only: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowedRoot {
    pub(crate) path: String,
    /// Mounts under this root may be writable when the group asks (default false).
    #[serde(default)]
    pub(crate) read_write: bool,
}

/// The part of a group's stored `container_config` the runner reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct GroupContainerConfig {
    #[serde(default)]
    pub(crate) additional_mounts: Vec<RequestedMount>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RequestedMount {
    pub(crate) host_path: String,
    /// Relative: the mount appears at `/workspace/extra/<container_path>`. Default: the
    /// host directory's name.
    #[serde(default)]
    pub(crate) container_path: Option<String>,
    #[serde(default = "yes")]
    pub(crate) readonly: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    #[error("cannot read the mount allowlist {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

/// `~/.config/rust-claw/mount-allowlist.json` (`$XDG_CONFIG_HOME` if set).
pub(crate) fn default_allowlist_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("rust-claw").join("mount-allowlist.json"))
}

/// Reads the allowlist; `Ok(None)` when there is none (then no extra mounts).
pub(crate) fn load_allowlist(path: &Path) -> Result<Option<Allowlist>, AllowlistError> {
    let unreadable = |reason: String| AllowlistError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| unreadable(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(e.to_string())),
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ if p == "~" => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default(),
        _ => PathBuf::from(p),
    }
}

/// Characters podman/docker `--mount` and `-v` cannot carry in a path.
pub(crate) fn mountable(p: &Path) -> bool {
    p.is_absolute() && !p.to_string_lossy().contains([',', ':', '\n', '='])
}

/// Checks the mounts a group asks for. Returns the accepted mounts and, for each
/// refused one, why (the caller logs them; the agent starts without them).
/// `project_root` (canonical) and everything above or below it is refused: it holds
/// `.env`, the store and every group's data.
pub(crate) fn extra_mounts(
    requested: &GroupContainerConfig,
    allowlist: Option<&Allowlist>,
    is_main: bool,
    project_root: &Path,
) -> (Vec<Mount>, Vec<String>) {
    let mut accepted: Vec<Mount> = Vec::new();
    let mut refused = Vec::new();
    for m in &requested.additional_mounts {
        match check_one(m, allowlist, is_main, project_root) {
            Ok(mount) if accepted.iter().any(|a| a.container == mount.container) => {
                refused.push(format!(
                    "{}: {} is already used by another mount",
                    m.host_path,
                    mount.container.display()
                ))
            }
            Ok(mount) => accepted.push(mount),
            Err(reason) => refused.push(format!("{}: {reason}", m.host_path)),
        }
    }
    (accepted, refused)
}

fn check_one(
    m: &RequestedMount,
    allowlist: Option<&Allowlist>,
    is_main: bool,
    project_root: &Path,
) -> Result<Mount, String> {
    let Some(allow) = allowlist else {
        return Err(format!(
            "no mount allowlist ({}): extra mounts are off",
            default_allowlist_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.config/rust-claw/mount-allowlist.json".into())
        ));
    };
    // Resolve symlinks: the check applies to where the path really leads.
    let host = std::fs::canonicalize(expand_home(&m.host_path))
        .map_err(|e| format!("cannot resolve it: {e}"))?;
    if !mountable(&host) {
        return Err(
            "the path contains , : = or a newline, which mount options cannot carry".into(),
        );
    }
    let text = host.to_string_lossy();
    for pattern in BLOCKED_ALWAYS
        .iter()
        .copied()
        .chain(allow.blocked_patterns.iter().map(String::as_str))
    {
        let hit = host
            .components()
            .any(|c| c.as_os_str().to_string_lossy() == pattern)
            || (pattern.contains('/') && text.contains(&format!("/{pattern}")));
        if hit {
            return Err(format!("it matches the blocked pattern {pattern:?}"));
        }
    }
    if host.starts_with(project_root) || project_root.starts_with(&host) {
        return Err("it overlaps the RustClaw root (its .env, store and data)".into());
    }
    if let Some(list) = default_allowlist_path()
        && (list.starts_with(&host) || host.starts_with(list.parent().unwrap_or(&list)))
    {
        return Err("it would expose the mount allowlist".into());
    }
    let root = allow
        .allowed_roots
        .iter()
        .filter_map(|r| {
            std::fs::canonicalize(expand_home(&r.path))
                .ok()
                .map(|p| (p, r.read_write))
        })
        .find(|(p, _)| host.starts_with(p))
        .ok_or_else(|| "it is not under any allowed root of the mount allowlist".to_owned())?;
    let name = match &m.container_path {
        Some(p) => p.clone(),
        None => host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let rel = Path::new(&name);
    let simple = !name.is_empty()
        && rel.components().all(|c| matches!(c, Component::Normal(_)))
        && mountable(&Path::new("/").join(rel));
    if !simple {
        return Err(format!(
            "container_path {name:?} must be a relative path without .. (it goes under {EXTRA})"
        ));
    }
    let writable = !m.readonly && root.1 && (is_main || !allow.non_main_read_only);
    Ok(Mount {
        host,
        container: Path::new(EXTRA).join(rel),
        read_only: !writable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &Path, ro: bool) -> GroupContainerConfig {
        GroupContainerConfig {
            additional_mounts: vec![RequestedMount {
                host_path: host.to_string_lossy().into_owned(),
                container_path: None,
                readonly: ro,
            }],
        }
    }

    #[test]
    fn allowlist_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let project = base.join("rustclaw");
        let allowed = base.join("work");
        let other = base.join("other");
        for d in [
            &project,
            &allowed.join("app"),
            &allowed.join(".ssh"),
            &other,
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&other, allowed.join("link")).unwrap();
        let list: Allowlist = serde_json::from_str(&format!(
            r#"{{"allowed_roots":[{{"path":"{}","read_write":true}}]}}"#,
            allowed.display()
        ))
        .unwrap();
        assert!(list.non_main_read_only);

        // No allowlist: nothing.
        let (ok, no) = extra_mounts(&req(&allowed.join("app"), true), None, true, &project);
        assert!(
            ok.is_empty() && no[0].contains("no mount allowlist"),
            "{no:?}"
        );
        // Allowed: read-only unless asked, allowed and main.
        let (ok, _) = extra_mounts(
            &req(&allowed.join("app"), false),
            Some(&list),
            false,
            &project,
        );
        assert_eq!(ok[0].container, Path::new("/workspace/extra/app"));
        assert!(ok[0].read_only, "non-main groups are read-only");
        let (ok, _) = extra_mounts(
            &req(&allowed.join("app"), false),
            Some(&list),
            true,
            &project,
        );
        assert!(!ok[0].read_only);
        // Refused: outside the roots, via a symlink out, blocked, the project, bad names.
        for (path, why) in [
            (other.clone(), "not under any allowed root"),
            (allowed.join("link"), "not under any allowed root"),
            (allowed.join(".ssh"), "blocked pattern"),
            (allowed.join("missing"), "cannot resolve"),
        ] {
            let (ok, no) = extra_mounts(&req(&path, true), Some(&list), true, &project);
            assert!(ok.is_empty() && no[0].contains(why), "{path:?}: {no:?}");
        }
        let inside: Allowlist = serde_json::from_str(&format!(
            r#"{{"allowed_roots":[{{"path":"{}"}}]}}"#,
            base.display()
        ))
        .unwrap();
        let (ok, no) = extra_mounts(&req(&project, true), Some(&inside), true, &project);
        assert!(ok.is_empty() && no[0].contains("RustClaw root"), "{no:?}");
        let (ok, no) = extra_mounts(&req(&base, true), Some(&inside), true, &project);
        assert!(ok.is_empty() && no[0].contains("RustClaw root"), "{no:?}");
        let mut escape = req(&allowed.join("app"), true);
        escape.additional_mounts[0].container_path = Some("../../etc".into());
        let (ok, no) = extra_mounts(&escape, Some(&list), true, &project);
        assert!(ok.is_empty() && no[0].contains("container_path"), "{no:?}");
    }

    #[test]
    fn missing_allowlist_is_no_allowlist_and_bad_json_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            load_allowlist(&tmp.path().join("none.json"))
                .unwrap()
                .is_none()
        );
        let bad = tmp.path().join("bad.json");
        std::fs::write(&bad, r#"{"allowed_roots": 3}"#).unwrap();
        assert!(
            load_allowlist(&bad)
                .unwrap_err()
                .to_string()
                .contains("bad.json")
        );
    }
}
