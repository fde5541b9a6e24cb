//! Reading request files without trusting them, and moving refused ones aside.
//!
//! A request directory is writable by an agent, so anything can be in it: a symlink
//! to `/etc/shadow`, a FIFO that blocks a reader forever, a 10 GiB file, a directory
//! named `x.json`. [`read_request`] looks before it opens (`lstat`), opens with
//! `O_NOFOLLOW | O_NONBLOCK` (never through a link, never blocking), checks again on
//! the open descriptor, and reads at most [`MAX_REQUEST_BYTES`].
//!
//! Refused requests are moved to `data/ipc/errors/<folder>/<name>.json` with a
//! `<name>.reason` beside it, so the owner can see what an agent tried.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::protocol::MAX_REQUEST_BYTES;
use crate::paths::Paths;

/// Why a request file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file is gone (already handled, or removed by its writer): nothing to do.
    Gone,
    /// The entry is hostile or unusable; quarantine it with this reason.
    Refused(String),
    /// A host-side failure (e.g. out of file descriptors): try again later.
    Io(std::io::Error),
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn refuse_type(ft: std::fs::FileType) -> ReadError {
    ReadError::Refused(format!(
        "the request is {}; request files must be regular files",
        kind_of(ft)
    ))
}

fn too_big(size: u64) -> ReadError {
    ReadError::Refused(format!(
        "the request is {size} bytes, over the {MAX_REQUEST_BYTES}-byte limit"
    ))
}

/// Reads a request file safely (see the module docs).
pub fn read_request(path: &Path) -> Result<Vec<u8>, ReadError> {
    let io = |e: std::io::Error| match e.kind() {
        ErrorKind::NotFound => ReadError::Gone,
        _ => ReadError::Io(e),
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(refuse_type(meta.file_type()));
    }
    if meta.len() > MAX_REQUEST_BYTES {
        return Err(too_big(meta.len()));
    }
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path);
    let file = match file {
        Ok(f) => f,
        // Swapped for a link between lstat and open.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(ReadError::Refused(
                "the request is a symbolic link; request files must be regular files".into(),
            ));
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
            return Err(ReadError::Refused(
                "the request is a socket or device; request files must be regular files".into(),
            ));
        }
        Err(e) => return Err(io(e)),
    };
    let meta2 = file.metadata().map_err(io)?;
    if !meta2.file_type().is_file() || meta2.ino() != meta.ino() {
        return Err(refuse_type(meta2.file_type()));
    }
    let mut buf = Vec::with_capacity(meta2.len() as usize);
    file.take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_REQUEST_BYTES {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

/// Moves the entry at `path` (whatever it is; a link is moved, not followed) to
/// `errors/<folder_component>/<name>` and writes `<stem>.reason` beside it. Never
/// fails: if the move is impossible the entry is deleted, so a refused request can
/// never be read twice.
pub fn quarantine(paths: &Paths, folder_component: &str, path: &Path, name: &str, reason: &str) {
    tracing::warn!(folder = folder_component, request = name, %reason, "IPC request refused and quarantined");
    let dir = paths.ipc_errors_dir(folder_component);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create the quarantine directory; deleting the request");
        remove_entry(path);
        return;
    }
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let mut target_stem = stem.to_owned();
    if std::fs::symlink_metadata(dir.join(format!("{target_stem}.json"))).is_ok() {
        target_stem = format!("{stem}-{}", chrono::Utc::now().timestamp_millis());
    }
    // The reason first: whoever sees the entry in the quarantine sees why.
    let reason_path = dir.join(format!("{target_stem}.reason"));
    if let Err(e) = std::fs::write(&reason_path, format!("{reason}\n")) {
        tracing::error!(path = %reason_path.display(), error = %e, "cannot write the quarantine reason");
    }
    let target = dir.join(format!("{target_stem}.json"));
    if let Err(e) = std::fs::rename(path, &target) {
        if e.kind() == ErrorKind::NotFound {
            return;
        }
        tracing::error!(from = %path.display(), error = %e, "cannot quarantine; deleting the request");
        remove_entry(path);
    }
}

/// Removes a file, link, FIFO or (hostile) directory tree.
pub fn remove_entry(path: &Path) {
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let r = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(e) = r
        && e.kind() != ErrorKind::NotFound
    {
        tracing::error!(path = %path.display(), error = %e, "cannot remove an IPC request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_links_fifos_dirs_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ok.json"), b"{}").unwrap();
        assert_eq!(read_request(&d.join("ok.json")).unwrap(), b"{}");
        std::os::unix::fs::symlink(d.join("ok.json"), d.join("link.json")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::create_dir(d.join("dir.json")).unwrap();
        std::fs::write(
            d.join("big.json"),
            vec![b' '; MAX_REQUEST_BYTES as usize + 1],
        )
        .unwrap();
        for (name, needle) in [
            ("link.json", "symbolic link"),
            ("fifo.json", "FIFO"),
            ("dir.json", "directory"),
            ("big.json", "limit"),
        ] {
            match read_request(&d.join(name)) {
                Err(ReadError::Refused(r)) => assert!(r.contains(needle), "{name}: {r}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            read_request(&d.join("missing.json")),
            Err(ReadError::Gone)
        ));
    }

    #[test]
    fn quarantine_moves_and_explains() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let src = dir.path().join("x.json");
        for _ in 0..2 {
            std::fs::write(&src, b"bad").unwrap();
            quarantine(&paths, "ops", &src, "x.json", "not valid JSON");
            assert!(!src.exists());
        }
        let errs = paths.ipc_errors_dir("ops");
        let mut names: Vec<_> = std::fs::read_dir(&errs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(
            std::fs::read_to_string(errs.join("x.reason")).unwrap(),
            "not valid JSON\n"
        );
    }
}
