//! Directories an agent can write, reached only through verified descriptors.
//!
//! Anything inside an agent-writable directory (its IPC directory, its group folder,
//! `groups/global/` for main) may be a symlink, a FIFO, a huge file, or swapped for
//! one between a check and a use. A [`SafeDir`] is an open descriptor of a directory
//! that was opened with `O_DIRECTORY | O_NOFOLLOW` from a parent descriptor and
//! checked (`fstat`) to be a real directory owned by us; every read, write, rename and
//! unlink below it is an `*at()` call on that descriptor, so no path is ever resolved
//! through something an agent planted.
//!
//! The one path-based step is [`SafeDir::open_trusted`], for directories only the owner
//! controls (the root, `data/sessions/<folder>` parents, a temp directory).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, renameat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Mode of directories the host creates: private to the daemon's uid (containers run
/// as that uid, so agents need nothing more).
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of files the host writes.
pub(crate) const FILE_MODE: u32 = 0o600;
/// How deep [`SafeDir::remove`] and [`SafeDir::copy_tree`] descend.
const MAX_DEPTH: usize = 16;
/// How often [`SafeDir::ensure_dir`] retries when the entry keeps being swapped.
const ENSURE_TRIES: usize = 32;

/// Whether a write must survive a power cut before it is reported done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync the file and the directory (credentials, anything not re-derivable).
    Durable,
    /// Atomic only (snapshots, responses: re-derivable from the store).
    Atomic,
}

/// An open, verified directory. Cheap to share (`Arc`), `Send + Sync`.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
    /// For messages only: never used to reach anything.
    path: PathBuf,
}

/// What is at a name that should be a directory.
#[derive(Debug)]
pub(crate) enum Lookup {
    Dir(SafeDir),
    Missing,
    /// Something else: a link, a file, a FIFO, a directory of another owner.
    Impostor(&'static str),
}

/// Names the kind of an entry for messages ("a symbolic link").
pub(crate) fn kind_of(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFBLK | SFlag::S_IFCHR => "a device",
        SFlag::S_IFREG => "a regular file",
        _ => "an unknown kind of file",
    }
}

fn is_type(st: &FileStat, t: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == t.bits()
}

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

/// A single path component: no `/`, not `.` or `..`, not empty.
fn component(name: &OsStr) -> std::io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(name)
}

/// Why a file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Nothing there (already handled, or removed by its writer).
    Gone,
    /// Hostile or unusable: a link, FIFO, directory, device, or over the size limit.
    Refused(String),
    /// A host-side failure (e.g. out of descriptors): try again later.
    Io(std::io::Error),
}

impl SafeDir {
    fn verify(fd: OwnedFd, path: PathBuf) -> Result<SafeDir, Lookup> {
        let st = fstat(&fd).map_err(|_| Lookup::Impostor("unreadable"))?;
        if !is_type(&st, SFlag::S_IFDIR) {
            return Err(Lookup::Impostor(kind_of(&st)));
        }
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(Lookup::Impostor("a directory owned by another user"));
        }
        Ok(SafeDir {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
            path,
        })
    }

    /// Opens a directory the owner controls, by path (links followed: the owner's
    /// choice). Creates it (and its parents) first when `create` is set.
    pub(crate) fn open_trusted(path: &Path, create: bool) -> std::io::Result<SafeDir> {
        if create {
            std::fs::create_dir_all(path)?;
        }
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        SafeDir::verify(fd, path.to_owned()).map_err(|l| {
            let what = match l {
                Lookup::Impostor(k) => k,
                _ => "not a directory",
            };
            std::io::Error::other(format!("{} is {what}", path.display()))
        })
    }

    /// Where this directory was when it was opened (for messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `/proc/self/fd/<n>`: names exactly this directory (e.g. for `inotify_add_watch`),
    /// whatever has been renamed since.
    pub(crate) fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Opens the subdirectory `name` without following a link.
    pub(crate) fn open_dir(&self, name: impl AsRef<OsStr>) -> std::io::Result<Lookup> {
        let name = component(name.as_ref())?;
        let path = self.path.join(name);
        match openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(match SafeDir::verify(fd, path) {
                Ok(d) => Lookup::Dir(d),
                Err(l) => l,
            }),
            Err(Errno::ENOENT) => Ok(Lookup::Missing),
            Err(Errno::ELOOP) => Ok(Lookup::Impostor("a symbolic link")),
            Err(Errno::ENOTDIR) => Ok(Lookup::Impostor(self.kind(name))),
            Err(e) => Err(io(e)),
        }
    }

    /// Opens the chain `a/b/c` below this directory, each step without following links.
    pub(crate) fn open_path(&self, names: &[&str]) -> std::io::Result<Lookup> {
        let mut names = names.iter();
        let Some(first) = names.next() else {
            return Err(std::io::Error::new(ErrorKind::InvalidInput, "empty path"));
        };
        let mut cur = match self.open_dir(first)? {
            Lookup::Dir(d) => d,
            other => return Ok(other),
        };
        for n in names {
            cur = match cur.open_dir(n)? {
                Lookup::Dir(d) => d,
                other => return Ok(other),
            };
        }
        Ok(Lookup::Dir(cur))
    }

    fn kind(&self, name: &OsStr) -> &'static str {
        self.stat(name)
            .map(|st| kind_of(&st))
            .unwrap_or("not a directory")
    }

    /// Makes sure `name` is a real directory of ours and opens it. Whatever else is
    /// there (a link, a file, ...) is handed to `displace` (which must move or remove
    /// it) and a directory is created with `mkdirat`. Racing an agent that keeps
    /// swapping the entry can only fail, never yield a descriptor of anything but a
    /// real directory. Returns the directory and whether it was (re)created.
    pub(crate) fn ensure_dir(
        &self,
        name: &str,
        mut displace: impl FnMut(&SafeDir, &str, &'static str),
    ) -> std::io::Result<(SafeDir, bool)> {
        let mut created = false;
        for _ in 0..ENSURE_TRIES {
            match self.open_dir(name)? {
                Lookup::Dir(d) => return Ok((d, created)),
                Lookup::Missing => {}
                Lookup::Impostor(kind) => {
                    displace(self, name, kind);
                    created = true;
                }
            }
            match mkdirat(&self.fd, name, Mode::from_bits_truncate(DIR_MODE)) {
                Ok(()) => created = true,
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(io(e)),
            }
        }
        Err(std::io::Error::other(format!(
            "{} keeps being replaced; gave up after {ENSURE_TRIES} tries",
            self.path.join(name).display()
        )))
    }

    /// Like [`SafeDir::ensure_dir`], removing whatever is in the way.
    pub(crate) fn ensure_dir_removing(&self, name: &str) -> std::io::Result<SafeDir> {
        self.ensure_dir(name, |d, n, _| d.remove(n)).map(|(d, _)| d)
    }

    /// True when `name` in `parent` is still this very directory.
    pub(crate) fn is_at(&self, parent: &SafeDir, name: &str) -> bool {
        parent.stat(name).is_ok_and(|st| {
            is_type(&st, SFlag::S_IFDIR) && st.st_dev == self.dev && st.st_ino == self.ino
        })
    }

    /// `lstat` of `name` (links not followed).
    pub(crate) fn stat(&self, name: impl AsRef<OsStr>) -> std::io::Result<FileStat> {
        let name = component(name.as_ref())?;
        fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io)
    }

    /// Reads the regular file `name`, at most `max` bytes: never through a link, never
    /// blocking on a FIFO, never opening a device.
    pub(crate) fn read_file(
        &self,
        name: impl AsRef<OsStr>,
        max: u64,
    ) -> Result<Vec<u8>, ReadError> {
        let name = component(name.as_ref()).map_err(ReadError::Io)?;
        let refuse = |what: &str| {
            ReadError::Refused(format!("the file is {what}; only regular files are read"))
        };
        let too_big = |n: u64| {
            ReadError::Refused(format!("the file is {n} bytes, over the {max}-byte limit"))
        };
        let gone = |e: Errno| match e {
            Errno::ENOENT => ReadError::Gone,
            e => ReadError::Io(io(e)),
        };
        let before = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(gone)?;
        if !is_type(&before, SFlag::S_IFREG) {
            return Err(refuse(kind_of(&before)));
        }
        if before.st_size as u64 > max {
            return Err(too_big(before.st_size as u64));
        }
        let fd = match openat(
            &self.fd,
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Swapped between the stat and the open.
            Err(Errno::ELOOP) => return Err(refuse("a symbolic link")),
            Err(Errno::ENXIO) => return Err(refuse("a socket or device")),
            Err(e) => return Err(gone(e)),
        };
        let st = fstat(&fd).map_err(gone)?;
        if !is_type(&st, SFlag::S_IFREG) || st.st_ino != before.st_ino {
            return Err(refuse(kind_of(&st)));
        }
        let mut buf = Vec::with_capacity((st.st_size as u64).min(max) as usize);
        File::from(fd)
            .take(max + 1)
            .read_to_end(&mut buf)
            .map_err(ReadError::Io)?;
        if buf.len() as u64 > max {
            return Err(too_big(buf.len() as u64));
        }
        Ok(buf)
    }

    /// Writes `name` atomically: a private dot-temp file created with
    /// `O_EXCL | O_NOFOLLOW` in this directory, then moved to `name` (a link planted
    /// at `name` is replaced, never followed). Readers see the old content or the new,
    /// never a torn file.
    ///
    /// A [`Durability::Atomic`] write that replaces an existing file swaps the two
    /// names (`RENAME_EXCHANGE`) and then unlinks the old content, instead of renaming
    /// over it: ext4 (`auto_da_alloc`, on by default) starts writing back the data of
    /// a file renamed over another one at the rename, and the next journal commit
    /// waits for it — 1.1 ms on the request path for a 300 KB task list and megabytes
    /// in the journal for main's, measured. The price is ext4's old one: after a power
    /// cut such a file may come back empty, which for `Atomic` files (re-derived by
    /// the daemon at start-up) is harmless. `Durable` files are synced before the
    /// rename, so they rename over.
    pub(crate) fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
        d: Durability,
    ) -> std::io::Result<()> {
        self.write_atomic_with(name, d, |f| f.write_all(bytes))
    }

    /// [`SafeDir::write_atomic`] with the content produced by `fill`, which writes
    /// into the temp file (so a large file can be assembled without one buffer).
    pub(crate) fn write_atomic_with(
        &self,
        name: &str,
        d: Durability,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        component(name.as_ref())?;
        let tmp = format!(
            ".{name}.{}.{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        );
        let fd = openat(
            &self.fd,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(FILE_MODE),
        )
        .map_err(io)?;
        let result = (|| {
            let mut f = File::from(fd);
            fill(&mut f)?;
            if d == Durability::Durable {
                f.sync_all()?;
            }
            drop(f);
            if d == Durability::Durable {
                renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(io)?;
                return nix::unistd::fsync(&self.fd).map_err(io);
            }
            self.replace_by_exchange(&tmp, name)
        })();
        if result.is_err() {
            let _ = unlinkat(&self.fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Puts the temp file `tmp` at `name` by exchanging the two (see
    /// [`SafeDir::write_atomic`]), then removes what was at `name` — now at `tmp`,
    /// whatever it was (a planted link or directory is removed, never followed).
    /// Nothing at `name`, or a file system without exchange: a plain rename.
    fn replace_by_exchange(&self, tmp: &str, name: &str) -> std::io::Result<()> {
        match renameat2(&self.fd, tmp, &self.fd, name, RenameFlags::RENAME_EXCHANGE) {
            Ok(()) => {
                self.remove(tmp);
                Ok(())
            }
            Err(Errno::ENOENT | Errno::EINVAL | Errno::ENOSYS) => {
                renameat(&self.fd, tmp, &self.fd, name).map_err(io)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Overwrites the regular file `name` in place (created 0600 if missing), keeping
    /// its inode: no file is created or freed, which on some file systems costs more
    /// than the write (ext4 without a journal scans recently freed inodes on every
    /// create). Not atomic: only for the owner's private, re-derivable files whose
    /// readers are serialised with the writer (the snapshot chunk cache), never for a
    /// file an agent reads.
    pub(crate) fn write_in_place(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let fd = openat(
            &self.fd,
            component(name.as_ref())?,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(FILE_MODE),
        )
        .map_err(io)?;
        let st = fstat(&fd).map_err(io)?;
        if !is_type(&st, SFlag::S_IFREG) {
            return Err(std::io::Error::other(format!("{name} is {}", kind_of(&st))));
        }
        let mut f = File::from(fd);
        f.write_all(bytes)?;
        // Shrinks to the new length without truncating to zero first (which would
        // make ext4 flush the file on close, `auto_da_alloc`).
        f.set_len(bytes.len() as u64)
    }

    /// Moves `name` (whatever it is: a link is moved, not followed) to `to/to_name`.
    pub(crate) fn rename_to(
        &self,
        name: &OsStr,
        to: &SafeDir,
        to_name: &str,
    ) -> std::io::Result<()> {
        let name = component(name)?;
        renameat(&self.fd, name, &to.fd, to_name).map_err(io)
    }

    /// Removes `name`: a file, link, FIFO, or a directory tree (walked by descriptor,
    /// never through a link). Missing is fine; failures are logged.
    pub(crate) fn remove(&self, name: impl AsRef<OsStr>) {
        if let Err(e) = self.remove_depth(name.as_ref(), 0)
            && e.kind() != ErrorKind::NotFound
        {
            tracing::error!(dir = %self.path.display(), entry = ?name.as_ref(), error = %e, "cannot remove an entry");
        }
    }

    fn remove_depth(&self, name: &OsStr, depth: usize) -> std::io::Result<()> {
        let name = component(name)?;
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => return Ok(()),
            Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
            Err(e) => return Err(io(e)),
        }
        if depth >= MAX_DEPTH {
            return Err(std::io::Error::other("directory tree too deep to remove"));
        }
        if let Lookup::Dir(sub) = self.open_dir(name)? {
            for (child, _) in sub.entries()? {
                sub.remove_depth(&child, depth + 1)?;
            }
        }
        unlinkat(&self.fd, name, UnlinkatFlags::RemoveDir).map_err(io)
    }

    /// The entries of this directory (not `.`/`..`), with their type when the file
    /// system reports it (`None`: ask [`SafeDir::stat`]).
    pub(crate) fn entries(&self) -> std::io::Result<Vec<(OsString, Option<nix::dir::Type>)>> {
        let mut dir = nix::dir::Dir::openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(io)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push((OsStr::from_bytes(name).to_owned(), e.file_type()));
        }
        Ok(out)
    }

    /// Copies the tree below `self` into `dst`: directories and regular files only
    /// (links, FIFOs and devices are skipped), each reached by descriptor.
    pub(crate) fn copy_tree(&self, dst: &SafeDir) -> std::io::Result<()> {
        self.copy_depth(dst, 0)
    }

    fn copy_depth(&self, dst: &SafeDir, depth: usize) -> std::io::Result<()> {
        if depth >= MAX_DEPTH {
            return Ok(());
        }
        for (name, _) in self.entries()? {
            let Some(n) = name.to_str() else { continue };
            let Ok(st) = self.stat(&name) else { continue };
            if is_type(&st, SFlag::S_IFDIR) {
                if let Lookup::Dir(src) = self.open_dir(&name)? {
                    let sub = dst.ensure_dir_removing(n)?;
                    src.copy_depth(&sub, depth + 1)?;
                }
            } else if is_type(&st, SFlag::S_IFREG) {
                self.copy_file(&name, dst, n)?;
            }
        }
        Ok(())
    }

    fn copy_file(&self, name: &OsStr, dst: &SafeDir, to: &str) -> std::io::Result<()> {
        let src = match openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOENT | Errno::ENXIO) => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        if !fstat(&src).is_ok_and(|st| is_type(&st, SFlag::S_IFREG)) {
            return Ok(());
        }
        dst.remove(to);
        let out = openat(
            &dst.fd,
            to,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(FILE_MODE),
        )
        .map_err(io)?;
        std::io::copy(&mut File::from(src), &mut File::from(out))?;
        Ok(())
    }
}

/// Creates `path` (and missing parents) and makes it private to the daemon's uid
/// (mode 0700), tightening an existing directory that other users could read.
pub(crate) fn ensure_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700 | 0o700))?;
    }
    Ok(())
}

/// Makes an existing file private (mode 0600 or narrower); a missing file is fine.
pub(crate) fn make_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(m.permissions().mode() & 0o600),
        ),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `path` atomically through its parent directory (which the owner controls):
/// the one atomic-write helper for paths outside agent-writable trees.
pub(crate) fn write_atomic_path(path: &Path, bytes: &[u8], d: Durability) -> std::io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    SafeDir::open_trusted(parent, false)?.write_atomic(name, bytes, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = SafeDir::open_trusted(tmp.path(), false).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("link")).unwrap();
        assert!(matches!(
            root.open_dir("link").unwrap(),
            Lookup::Impostor("a symbolic link")
        ));
        std::os::unix::fs::symlink(outside.path().join("secret"), tmp.path().join("f")).unwrap();
        assert!(matches!(
            root.read_file("f", 10),
            Err(ReadError::Refused(_))
        ));
        // ensure_dir displaces the link and makes a real directory.
        let mut displaced = Vec::new();
        let (d, created) = root
            .ensure_dir("link", |p, n, k| {
                displaced.push(k);
                p.remove(n)
            })
            .unwrap();
        assert!(created);
        assert_eq!(displaced, ["a symbolic link"]);
        assert!(d.is_at(&root, "link"));
        assert!(outside.path().join("secret").exists());
        // An atomic write replaces a planted link instead of writing through it.
        std::os::unix::fs::symlink(outside.path().join("secret"), tmp.path().join("w")).unwrap();
        root.write_atomic("w", b"new", Durability::Durable).unwrap();
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"s");
        assert_eq!(root.read_file("w", 10).unwrap(), b"new");
        // So does an exchange (Atomic): the link, a planted directory and the old
        // content are removed, nothing outside is touched, no temp file is left.
        std::os::unix::fs::symlink(outside.path().join("secret"), tmp.path().join("x")).unwrap();
        root.write_atomic("x", b"one", Durability::Atomic).unwrap();
        root.write_atomic("x", b"two", Durability::Atomic).unwrap();
        std::fs::create_dir_all(tmp.path().join("y/z")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("y/z/out")).unwrap();
        root.write_atomic("y", b"three", Durability::Atomic)
            .unwrap();
        assert_eq!(root.read_file("x", 10).unwrap(), b"two");
        assert_eq!(root.read_file("y", 10).unwrap(), b"three");
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"s");
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["f", "link", "w", "x", "y"]);
        assert!(root.open_dir("..").is_err());
        assert!(matches!(root.read_file("a/b", 10), Err(ReadError::Io(_))));
    }

    #[test]
    fn removes_and_copies_trees_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let keep = tempfile::tempdir().unwrap();
        std::fs::write(keep.path().join("k"), "k").unwrap();
        std::fs::create_dir_all(tmp.path().join("t/a/b")).unwrap();
        std::fs::write(tmp.path().join("t/a/b/f"), "f").unwrap();
        std::os::unix::fs::symlink(keep.path(), tmp.path().join("t/a/l")).unwrap();
        let root = SafeDir::open_trusted(tmp.path(), false).unwrap();
        let dst = root.ensure_dir_removing("copy").unwrap();
        let Lookup::Dir(t) = root.open_dir("t").unwrap() else {
            panic!()
        };
        t.copy_tree(&dst).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("copy/a/b/f")).unwrap(), b"f");
        assert!(!tmp.path().join("copy/a/l").exists());
        root.remove("t");
        assert!(!tmp.path().join("t").exists());
        assert!(keep.path().join("k").exists());
    }
}
