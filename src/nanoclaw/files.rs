//! Copying a group folder without trusting either side.
//!
//! Both NanoClaw's folders and ours are written by agents, so any name in them may be
//! a symlink, a FIFO or a huge file. Every directory is opened relative to its verified
//! parent descriptor with `O_NOFOLLOW | O_DIRECTORY`, every file with `O_NOFOLLOW |
//! O_NONBLOCK` and checked with `fstat` after opening; new files are created with
//! `O_EXCL`, so nothing existing is overwritten and no link is ever followed.

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

/// The largest file copied.
pub(crate) const MAX_FILE_BYTES: u64 = 16 << 20;

/// What happened to one entry (relative path, outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Copied {
    Written(String),
    /// Already present in the target: left as it is.
    Present(String),
    Skipped(String, String),
    /// Not in the source at all.
    Missing(String),
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Opens `path` as a directory, refusing a symlink at its last component.
pub(crate) fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(path, dir_flags(), Mode::empty())
}

/// Opens (or, unless `dry_run`, creates with mode 0700) the directory `name` in `parent`.
/// `Ok(None)`: it does not exist and `dry_run` is set.
pub(crate) fn open_or_make_dir(
    parent: impl AsFd,
    name: &OsStr,
    dry_run: bool,
) -> nix::Result<Option<OwnedFd>> {
    match openat(parent.as_fd(), name, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) if dry_run => Ok(None),
        Err(nix::errno::Errno::ENOENT) => {
            mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700))?;
            openat(parent.as_fd(), name, dir_flags(), Mode::empty()).map(Some)
        }
        Err(e) => Err(e),
    }
}

/// Reads the regular file `name` in `dir` (no links, no FIFOs, at most MAX_FILE_BYTES).
pub(crate) fn read_file(dir: impl AsFd, name: &OsStr) -> Result<Vec<u8>, String> {
    let fd = openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        nix::errno::Errno::ELOOP => "a symlink".to_owned(),
        e => e.to_string(),
    })?;
    let st = fstat(&fd).map_err(|e| e.to_string())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err("not a regular file".into());
    }
    if st.st_size as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {} MiB", MAX_FILE_BYTES >> 20));
    }
    let mut bytes = Vec::with_capacity(st.st_size as usize);
    std::fs::File::from(fd)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// What is at `name` in `dir`, without following a link: `None` if nothing.
pub(crate) fn kind_at(dir: impl AsFd, name: &OsStr) -> nix::Result<Option<SFlag>> {
    match nix::sys::stat::fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the file `name` in `dir` with `bytes` (mode 0600). Fails if anything,
/// including a link, is already there.
pub(crate) fn write_new(dir: impl AsFd, name: &OsStr, bytes: &[u8]) -> nix::Result<()> {
    let fd = openat(
        dir.as_fd(),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(5)))?;
    Ok(())
}

/// Copies the tree under `src` into `dst` (both verified directory descriptors),
/// skipping names in `skip` at the top level. Never overwrites; with `dry_run`, only
/// reports. `rel` prefixes the reported paths.
pub(crate) fn copy_tree(
    src: &OwnedFd,
    dst: Option<&OwnedFd>,
    rel: &str,
    skip: &[&str],
    dry_run: bool,
    out: &mut Vec<Copied>,
) {
    let names = match list(src) {
        Ok(n) => n,
        Err(e) => {
            out.push(Copied::Skipped(rel.to_owned(), format!("cannot list: {e}")));
            return;
        }
    };
    for name in names {
        let shown = format!("{rel}{}", name.to_string_lossy());
        if skip.iter().any(|s| s.as_bytes() == name.as_bytes()) {
            continue;
        }
        let kind = match kind_at(src, &name) {
            Ok(Some(k)) => k,
            Ok(None) => continue,
            Err(e) => {
                out.push(Copied::Skipped(shown, e.to_string()));
                continue;
            }
        };
        if kind == SFlag::S_IFDIR {
            let Ok(sub) = openat(src.as_fd(), name.as_os_str(), dir_flags(), Mode::empty()) else {
                out.push(Copied::Skipped(shown, "cannot open the directory".into()));
                continue;
            };
            let target = match dst.map(|d| open_or_make_dir(d, &name, dry_run)) {
                Some(Ok(t)) => t,
                None => None,
                Some(Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP)) => {
                    out.push(Copied::Skipped(
                        shown,
                        "the target is a link or not a directory".into(),
                    ));
                    continue;
                }
                Some(Err(e)) => {
                    out.push(Copied::Skipped(shown, format!("cannot create: {e}")));
                    continue;
                }
            };
            copy_tree(
                &sub,
                target.as_ref(),
                &format!("{shown}/"),
                &[],
                dry_run,
                out,
            );
            continue;
        }
        if kind != SFlag::S_IFREG {
            out.push(Copied::Skipped(
                shown,
                "not a regular file or directory (a link, FIFO, ...)".into(),
            ));
            continue;
        }
        out.push(copy_file(src, dst, &name, &name, shown, dry_run));
    }
}

/// Copies `from` in `src` to `to` in `dst`, never overwriting.
pub(crate) fn copy_file(
    src: &OwnedFd,
    dst: Option<&OwnedFd>,
    from: &OsStr,
    to: &OsStr,
    shown: String,
    dry_run: bool,
) -> Copied {
    if let Some(d) = dst {
        match kind_at(d, to) {
            Ok(None) => {}
            Ok(Some(_)) => return Copied::Present(shown),
            Err(e) => return Copied::Skipped(shown, e.to_string()),
        }
    }
    match kind_at(src, from) {
        Ok(None) => return Copied::Missing(shown),
        Ok(Some(_)) => {}
        Err(e) => return Copied::Skipped(shown, e.to_string()),
    }
    let bytes = match read_file(src, from) {
        Ok(b) => b,
        Err(why) => return Copied::Skipped(shown, why),
    };
    if dry_run {
        return Copied::Written(shown);
    }
    let Some(d) = dst else {
        return Copied::Skipped(shown, "no target directory".into());
    };
    match write_new(d, to, &bytes) {
        Ok(()) => Copied::Written(shown),
        Err(nix::errno::Errno::EEXIST) => Copied::Present(shown),
        Err(e) => Copied::Skipped(shown, e.to_string()),
    }
}

/// The names in a directory, sorted. Read through `/proc/self/fd/<n>`: the verified
/// descriptor itself, never a path that could have been swapped.
fn list(dir: &OwnedFd) -> std::io::Result<Vec<std::ffi::OsString>> {
    use std::os::fd::AsRawFd as _;
    let mut names = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}
