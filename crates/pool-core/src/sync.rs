//! Locking helpers shared by every module (kept apart so that no module depends on the pool
//! just to lock a mutex).

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering from poisoning: the guarded data is plain bookkeeping that stays
/// consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
