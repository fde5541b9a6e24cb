//! Two shapes of concurrency used across the crate, defined once.
//!
//! * [`BoxFuture`]: the future our object-safe traits return (`dyn Channel`,
//!   `dyn AgentChild`, the queue's handler), since `async fn` in a trait object is not
//!   object-safe.
//! * [`LockExt::lock_ignoring_poison`] (and [`RwLockExt`]'s read/write): taking a
//!   `std::sync` lock whose poisoning we ignore. Every mutex here
//!   guards plain data that a panicking holder cannot leave half-updated in a way that
//!   matters more than stopping the daemon would (a cached value, a list of lines, a
//!   slot); so a poisoned lock is taken as it is instead of spreading the panic.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A boxed, sendable future (see the module doc).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The one way to take a lock here (see the module doc).
pub(crate) trait LockExt<T: ?Sized> {
    /// Locks, taking the data as it is if a holder panicked.
    fn lock_ignoring_poison(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_ignoring_poison(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`LockExt`] for readers–writer locks.
pub(crate) trait RwLockExt<T: ?Sized> {
    /// Read-locks, taking the data as it is if a writer panicked.
    fn read_ignoring_poison(&self) -> RwLockReadGuard<'_, T>;
    /// Write-locks, taking the data as it is if a holder panicked.
    fn write_ignoring_poison(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_ignoring_poison(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_ignoring_poison(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}
