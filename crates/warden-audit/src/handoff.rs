//! The caller → writer hand-off shared by the file log and the PostgreSQL
//! log: one mutex-guarded state, a bounded queue with back-pressure (a full
//! queue blocks the caller, nothing is dropped) and three condition variables.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::AuditError;

/// State shared between the callers and a log's writer thread.
pub(crate) struct Shared<S> {
    pub(crate) state: Mutex<S>,
    /// Signals the writer: records queued, flush or close requested.
    pub(crate) work: Condvar,
    /// Signals appenders blocked on a full queue.
    pub(crate) space: Condvar,
    /// Signals appenders and flushers waiting for durability or a tree head.
    pub(crate) progress: Condvar,
    /// A lock-free copy of the durable record count, for waiters the writer
    /// wakes individually (they need not take the lock to see they are done).
    pub(crate) durable: AtomicU64,
}

impl<S> Shared<S> {
    pub(crate) fn new(state: S) -> Self {
        Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            space: Condvar::new(),
            progress: Condvar::new(),
            durable: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        // A poisoned lock means a thread panicked while holding it; the state
        // is still consistent (all updates are single assignments), so go on.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Waits on `cv`, going on through poisoning like [`Shared::lock`].
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard)
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits on `cv` for at most `timeout`, going on through poisoning.
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    cv.wait_timeout(guard, timeout)
        .map(|(g, _)| g)
        .unwrap_or_else(|e| e.into_inner().0)
}

/// The queue-side fields of a log's state.
pub(crate) trait QueueState<R> {
    /// Records waiting for the writer.
    fn queue(&mut self) -> &mut Vec<R>;
    /// Whether the writer failed or the log is closing.
    fn refusal(&self) -> Option<AuditError>;
    /// Callers blocked on a full queue.
    fn full_waiters(&mut self) -> &mut usize;
    /// Clears and returns the writer's idle flag (the caller then wakes it).
    fn take_idle(&mut self) -> bool;
}

/// Queues `record`, blocking while the queue holds `capacity` records.
/// Returns the still-held lock and the record's position in the queue.
pub(crate) fn enqueue<R, S: QueueState<R>>(
    shared: &Shared<S>,
    capacity: usize,
    record: R,
) -> Result<(MutexGuard<'_, S>, usize), AuditError> {
    let mut st = shared.lock();
    loop {
        if let Some(e) = st.refusal() {
            return Err(e);
        }
        if st.queue().len() < capacity {
            break;
        }
        *st.full_waiters() += 1;
        st = wait(&shared.space, st);
        *st.full_waiters() -= 1;
    }
    let position = st.queue().len();
    st.queue().push(record);
    if st.take_idle() {
        shared.work.notify_one();
    }
    Ok((st, position))
}

/// The refusal every log gives: its writer's failure first, then closing.
pub(crate) fn refusal(failed: &Option<Arc<AuditError>>, closing: bool) -> Option<AuditError> {
    match failed {
        Some(e) => Some(AuditError::WriterFailed(Arc::clone(e))),
        None if closing => Some(AuditError::Closed),
        None => None,
    }
}
