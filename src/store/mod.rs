//! The SQLite store (`store/messages.db`): the only module that speaks SQL.
//!
//! One file in WAL mode, so CLI processes can read and write while the daemon runs
//! (`busy_timeout` makes them wait for each other instead of failing). The schema is
//! versioned with `PRAGMA user_version`; opening a current database runs no migration.
//!
//! Query functions live in one submodule per table family and take a `&Connection`,
//! so they compose inside a [`rusqlite::Transaction`] (which derefs to one): the IPC
//! watcher applies a request and writes its ledger row in the same transaction.
//!
//! Async code never calls SQLite on a runtime thread: it goes through
//! [`SharedStore::call`], which runs the closure on tokio's blocking pool.
//!
//! Durability: `synchronous = NORMAL` in WAL mode survives a crash of the process
//! (`kill -9`) at any point with every committed transaction intact; after a power
//! loss the most recent commits may be rolled back, never corrupted.

pub mod chats;
pub mod groups;
pub(crate) mod ipc_ledger;
pub mod messages;
pub(crate) mod outbox;
pub(crate) mod overview;
pub mod retention;
pub(crate) mod rfc3339;
pub mod sessions;
pub(crate) mod skills;
pub mod tasks;

use crate::sync::LockExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;

use crate::model::Jid;

/// Migrations in order; `user_version` = how many have been applied.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_2_task_runs.sql"),
    include_str!("schema_3_task_listing.sql"),
    include_str!("schema_4_run_skips.sql"),
    include_str!("schema_5_active_counts.sql"),
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database error: {0} (if it persists, stop the daemon and check the file with `sqlite3 store/messages.db 'PRAGMA integrity_check'`)"
    )]
    Sqlite(rusqlite::Error),
    /// Another connection held the write lock longer than the busy timeout.
    #[error(
        "the database is busy: another process has held its write lock for over {} s (a stuck rust_claw command, a backup, an open sqlite3 shell?); try again, and look for what holds store/messages.db (e.g. `fuser -v store/messages.db`)",
        BUSY_TIMEOUT.as_secs()
    )]
    Busy,
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the database {path} has schema version {found}, newer than this rust_claw understands ({SCHEMA_VERSION}); upgrade rust_claw"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// How long a connection waits for another one's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open database connection with the schema at [`SCHEMA_VERSION`].
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to
    /// date.
    pub fn open(path: &Path) -> Result<Store> {
        // The store holds every chat: private to the daemon's uid (store/ 0700, the
        // database files 0600; SQLite gives -wal and -shm the database's mode).
        if let Some(dir) = path.parent() {
            crate::safe_dir::ensure_private_dir(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path);
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = crate::safe_dir::make_private_file(Path::new(&p));
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode is persistent: on an existing database this is a cheap read.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Every statement on a request's path stays prepared (rusqlite keeps 16).
        conn.set_prepared_statement_cache_capacity(64);
        // Keep `-wal` and `-shm` when the last connection closes (emptied, not
        // deleted): otherwise every CLI call made while the daemon is stopped creates,
        // sizes and unlinks both files, which costs more than the query it runs.
        conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
        persist_wal(&conn)?;
        let mut store = Store { conn };
        store.migrate(path)?;
        Ok(store)
    }

    fn migrate(&mut self, path: &Path) -> Result<()> {
        let current: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        if current > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: current,
            });
        }
        // IMMEDIATE: two processes opening a fresh database at once must not both
        // run the migration; the loser waits, then sees the new version.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Runs `f` in an IMMEDIATE transaction (the write lock is taken up front, so a
    /// concurrent writer waits instead of failing halfway) and commits if it succeeds.
    pub fn write<T, E>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<rusqlite::Error>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// A store shared by the daemon's tasks. SQLite work runs on the blocking pool.
#[derive(Clone)]
pub struct SharedStore {
    inner: Arc<Mutex<Store>>,
}

impl SharedStore {
    pub fn new(store: Store) -> SharedStore {
        SharedStore {
            inner: Arc::new(Mutex::new(store)),
        }
    }

    /// Runs `f` with exclusive access to the store, off the async runtime's threads.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        F: FnOnce(&mut Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.inner.clone();
        let job = tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the connection itself is still
            // consistent (SQLite rolled back any open transaction), so keep going.
            let mut guard = inner.lock_ignoring_poison();
            f(&mut guard)
        });
        match job.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down and will drop this task; nothing
            // is waiting for the result any more.
            Err(_) => std::future::pending().await,
        }
    }

    /// Synchronous access, for code already on a blocking thread.
    pub fn blocking<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut guard = self.inner.lock_ignoring_poison();
        f(&mut guard)
    }

    /// Hands back the memory a burst of work left behind (call on a blocking thread,
    /// once the work has gone quiet): SQLite's page cache of the shared connection,
    /// then glibc's free heap pages in every arena (each thread that allocated keeps
    /// its arena's high-water mark otherwise). Costs a few ms, nothing per request.
    pub(crate) fn release_memory(&self) {
        self.blocking(|s| {
            if let Err(e) = s.conn().execute_batch("PRAGMA shrink_memory") {
                tracing::debug!(error = %e, "PRAGMA shrink_memory failed");
            }
        });
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free pages to the kernel; it takes the
        // allocator's own locks and touches no memory the program owns.
        unsafe {
            nix::libc::malloc_trim(0);
        }
    }
}

/// Sets `SQLITE_FCNTL_PERSIST_WAL` on the main database. With a `journal_size_limit`
/// set (any value ≥ 0), the last connection to close still checkpoints everything into the database file and
/// truncates the WAL to zero bytes, so the database file alone is always complete.
fn persist_wal(conn: &Connection) -> Result<()> {
    use rusqlite::ffi;
    let mut on: std::ffi::c_int = 1;
    // SAFETY: the handle is live for the duration of the call (borrowed from `conn`),
    // "main" is a NUL-terminated schema name, and PERSIST_WAL reads and writes exactly
    // one `int` through the pointer, which points at a local that outlives the call.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::ffi::c_int).cast(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            ffi::Error::new(rc),
            Some("cannot keep the WAL file (SQLITE_FCNTL_PERSIST_WAL)".into()),
        )));
    }
    Ok(())
}

/// A time as stored: milliseconds since the epoch, UTC.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored time back as a `DateTime`.
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A chat's jid is stored as its text form (`<id>@discord`, `<name>@local`).
impl rusqlite::ToSql for Jid {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.to_string().into())
    }
}

/// Reads a validated value out of a text column, reporting bad data as a conversion
/// error that names the column (a row written by a newer or buggy build, or by hand).
pub(crate) fn parse_col<T, E: std::fmt::Display>(
    row: &rusqlite::Row<'_>,
    idx: usize,
    parse: impl FnOnce(&str) -> std::result::Result<T, E>,
) -> rusqlite::Result<T> {
    // Borrowed from SQLite's row buffer: the parsed value makes its own copy if it
    // needs one, so reading 1,000 rows does not allocate a throwaway String per column.
    let text = row.get_ref(idx)?.as_str()?;
    parse(text).map_err(|e| {
        let name = row.as_ref().column_name(idx).unwrap_or("?").to_owned();
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("column {name}: {e}").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_migrates_once_and_reopens_without_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store").join("messages.db");
        let store = Store::open(&path).unwrap();
        let v: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let mode: String = store
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn()
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        drop(store);
        // A second open finds the schema current and changes nothing.
        let store = Store::open(&path).unwrap();
        let changes: i64 = store
            .conn()
            .query_row("SELECT total_changes()", [], |r| r.get(0))
            .unwrap();
        assert_eq!(changes, 0);
    }

    #[test]
    fn closing_keeps_the_wal_files_empty_and_the_database_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages.db");
        {
            let mut store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    tx.execute_batch("INSERT INTO chats (jid, name, channel) VALUES ('1@discord', 'c', 'discord')")
                })
                .unwrap();
        }
        let wal = dir.path().join("messages.db-wal");
        assert!(dir.path().join("messages.db-shm").exists());
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            0,
            "checkpointed and emptied"
        );
        // The database file alone holds the commit (a copy without -wal/-shm is whole).
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        let n: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM chats", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .conn()
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = Store::open(&path).err().unwrap();
        assert!(
            err.to_string().contains("newer than this rust_claw"),
            "{err}"
        );
    }

    #[test]
    fn times_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 9, 30, 0).unwrap();
        assert_eq!(from_ms(to_ms(t)), t);
    }
}
