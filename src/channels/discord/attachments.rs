//! Attachments of received messages.
//!
//! Images (png, jpeg, gif, webp; at most [`images::MAX_BYTES`]) sent in a registered
//! chat are downloaded into `attachments/` of the group's folder and referenced in
//! the message text by a marker, which makes the next turn carry them as image
//! input (see `agent::images`). Anything else — and an image that cannot be stored —
//! reaches the agent as its name and URL.
//!
//! The group folder is writable by the agent, so the file is created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` relative to a directory descriptor opened without
//! following symlinks: a planted link or a swapped folder makes the write fail, it is
//! never followed.

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use serenity::model::channel::Attachment;

use crate::agent::images;

/// The image types handed to codex, by file extension.
const IMAGE_EXTENSIONS: &[(&str, &str)] = &[
    ("png", "png"),
    ("jpg", "jpg"),
    ("jpeg", "jpg"),
    ("gif", "gif"),
    ("webp", "webp"),
];

/// The extension to store an attachment under, if it is an image we take.
pub(crate) fn image_extension(a: &Attachment) -> Option<&'static str> {
    let from_type = a.content_type.as_deref().and_then(|t| match t {
        "image/png" => Some("png"),
        "image/jpeg" => Some("jpg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    });
    from_type.or_else(|| {
        let ext = a.filename.rsplit_once('.')?.1.to_ascii_lowercase();
        IMAGE_EXTENSIONS
            .iter()
            .find(|(e, _)| *e == ext)
            .map(|(_, stored)| *stored)
    })
}

/// The text line for an attachment the agent gets as name + URL.
pub(crate) fn link_line(a: &Attachment, note: &str) -> String {
    format!("[attachment: {}{note}] {}", a.filename, a.url)
}

/// The client attachments are downloaded with, made on first use (serenity's own is
/// private). It uses the system's TLS roots, like serenity's.
pub(crate) fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_default()
    })
}

/// Downloads `a` into the group folder's attachments as `name`. Returns `Err` with a
/// short reason on any failure (the caller then sends the link instead).
pub(crate) async fn download_image(
    client: &reqwest::Client,
    a: &Attachment,
    group_dir: PathBuf,
    name: String,
) -> Result<(), String> {
    if u64::from(a.size) > images::MAX_BYTES {
        return Err("too large".into());
    }
    if !(a.url.starts_with("https://") || a.url.starts_with("http://")) {
        return Err("not an http(s) URL".into());
    }
    let mut resp = client
        .get(&a.url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("download failed: {e}"))?;
    let mut bytes = Vec::with_capacity(a.size as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("download failed: {e}"))?
    {
        if (bytes.len() + chunk.len()) as u64 > images::MAX_BYTES {
            return Err("too large".into());
        }
        bytes.extend_from_slice(&chunk);
    }
    if images::sniff(&bytes).is_none() {
        return Err("not an image".into());
    }
    tokio::task::spawn_blocking(move || write_new(&group_dir, &name, &bytes))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot store it: {e}"))
}

/// Creates `attachments/<name>` in `group_dir` with `bytes`. An existing file of that
/// name (the same message redelivered) is left as it is.
fn write_new(group_dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir: OwnedFd = images::open_dir(group_dir, true)?;
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NONBLOCK;
    let fd = match openat(&dir, name, flags, Mode::from_bits_truncate(0o644)) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::EEXIST) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut file = std::fs::File::from(fd);
    if let Err(e) = file.write_all(bytes) {
        drop(file);
        let _ = nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_never_follow_a_planted_link() {
        let group = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        std::fs::write(&target, b"keep").unwrap();
        std::fs::create_dir(group.path().join(images::DIR)).unwrap();
        std::os::unix::fs::symlink(&target, group.path().join("attachments/1-0.png")).unwrap();
        write_new(group.path(), "1-0.png", b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");

        write_new(group.path(), "2-0.png", b"data").unwrap();
        assert_eq!(
            std::fs::read(group.path().join("attachments/2-0.png")).unwrap(),
            b"data"
        );

        // The attachments folder swapped for a link elsewhere: refused.
        std::fs::remove_dir_all(group.path().join(images::DIR)).unwrap();
        std::os::unix::fs::symlink(outside.path(), group.path().join(images::DIR)).unwrap();
        assert!(write_new(group.path(), "3-0.png", b"x").is_err());
        assert!(!outside.path().join("3-0.png").exists());
    }
}
