//! Images a user sent, given to codex as image input for the turn that reads them.
//!
//! A channel that receives an image stores it as `attachments/<name>` in the group's
//! folder and puts [`marker`] in the message text. When a prompt carries markers, the
//! turn's input gets each image as a data URL read here — through directory
//! descriptors opened without following symlinks, since the group folder is writable
//! by the agent: a planted symlink, FIFO or oversized file is skipped, never followed.
//! codex is never handed a path it would open itself.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::Path;

use base64::Engine as _;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::Mode;

/// The folder (inside the group's folder) where received images are kept.
pub(crate) const DIR: &str = "attachments";
/// The largest image given to codex (and downloaded by a channel).
pub(crate) const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// The most images one turn carries.
const MAX_PER_TURN: usize = 8;

const PREFIX: &str = "[image: attachments/";

/// The text a message carries for a stored image `name`.
pub(crate) fn marker(name: &str) -> String {
    format!("{PREFIX}{name}]")
}

/// Whether `name` is a file name a channel would have written (no path parts).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The image names `prompt` refers to, in order, without repeats.
pub(crate) fn referenced(prompt: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = prompt;
    while let Some(at) = rest.find(PREFIX) {
        rest = &rest[at + PREFIX.len()..];
        let Some(end) = rest.find(']') else { break };
        let name = &rest[..end];
        if valid_name(name) && !out.contains(&name) && out.len() < MAX_PER_TURN {
            out.push(name);
        }
    }
    out
}

/// The MIME type of an image codex accepts, from its first bytes.
pub(crate) fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Opens `<group_dir>/attachments` as a directory, following no symlink in the last
/// two components (the group folder is the agent's; its parent is ours).
/// With `create`, the group folder (before its first agent turn) and `attachments`
/// are made when missing.
pub(crate) fn open_dir(group_dir: &Path, create: bool) -> std::io::Result<OwnedFd> {
    let dir_flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mkdir = |parent: &OwnedFd, name: &std::ffi::OsStr| match nix::sys::stat::mkdirat(
        parent,
        name,
        Mode::from_bits_truncate(0o755),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)),
    };
    let group = match (group_dir.parent(), group_dir.file_name()) {
        (Some(parent), Some(name)) if create => {
            // `groups/` is ours (the agent cannot write it): a path is fine there.
            std::fs::create_dir_all(parent)?;
            let parent = open(parent, dir_flags, Mode::empty())?;
            mkdir(&parent, name)?;
            openat(&parent, name, dir_flags, Mode::empty())?
        }
        _ => open(group_dir, dir_flags, Mode::empty())?,
    };
    if create {
        mkdir(&group, std::ffi::OsStr::new(DIR))?;
    }
    Ok(openat(&group, DIR, dir_flags, Mode::empty())?)
}

/// Reads one stored image as a data URL; `None` (logged) if it is not a regular
/// file, too large, or not an image.
fn read_data_url(dir: &OwnedFd, name: &str) -> Option<String> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(name, error = %e, "cannot open an attached image; leaving it out");
            return None;
        }
    };
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_BYTES {
        tracing::warn!(
            name,
            "an attached image is not a regular file or too large; leaving it out"
        );
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_BYTES {
        return None;
    }
    let mime = sniff(&bytes)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    Some(format!("data:{mime};base64,{b64}"))
}

/// Data URLs of the images `prompt` refers to that can be read safely.
pub(crate) fn load(group_dir: &Path, prompt: &str) -> Vec<String> {
    let names = referenced(prompt);
    if names.is_empty() {
        return Vec::new();
    }
    let dir = match open_dir(group_dir, false) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(dir = %group_dir.display(), error = %e, "cannot open the attachments folder");
            return Vec::new();
        }
    };
    names
        .into_iter()
        .filter_map(|n| read_data_url(&dir, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn markers_round_trip_and_reject_paths() {
        let p = format!(
            "look {} and {} {} [image: attachments/../../etc/passwd] {}",
            marker("1-0.png"),
            marker("2-0.jpg"),
            marker("1-0.png"),
            "[image: attachments/.hidden]"
        );
        assert_eq!(referenced(&p), ["1-0.png", "2-0.jpg"]);
    }

    #[test]
    fn only_regular_image_files_are_loaded() {
        let group = tempfile::tempdir().unwrap();
        let dir = group.path().join(DIR);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("ok.png"), PNG).unwrap();
        std::fs::write(dir.join("text.png"), b"not an image").unwrap();
        std::fs::write(group.path().join("secret.png"), PNG).unwrap();
        std::os::unix::fs::symlink(group.path().join("secret.png"), dir.join("link.png")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo.png"), Mode::from_bits_truncate(0o600)).unwrap();
        let prompt = ["ok.png", "text.png", "link.png", "fifo.png", "missing.png"]
            .map(marker)
            .join(" ");
        let urls = load(group.path(), &prompt);
        assert_eq!(urls.len(), 1);
        assert!(urls[0].starts_with("data:image/png;base64,"));

        // The attachments folder itself swapped for a symlink: nothing is read.
        std::fs::remove_dir_all(&dir).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("ok.png"), PNG).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &dir).unwrap();
        assert!(load(group.path(), &marker("ok.png")).is_empty());
    }
}
