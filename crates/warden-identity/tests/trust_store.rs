//! Trust stores through the public API: several books sharing one
//! `trust.json` lose no signal, an operator's set survives other writers,
//! failing stores keep signals queued and fail closed when the queue is
//! full, corrupt files are errors naming the file.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use warden_identity::trust::{
    Anchor, ApplyFailure, Batch, MAX_QUEUED_SIGNALS, Snapshot, TrustStore,
};
use warden_identity::{IdentityError, Signal, TrustBook, TrustConfig};

const T0: u64 = 1_800_000_000;

/// `n` successes from the baseline, all at one instant: the same sequence
/// of float operations any order of the same signals performs.
fn successes(n: usize) -> f64 {
    let c = TrustConfig::default();
    (0..n).fold(c.baseline, |s, _| TrustConfig::apply(s, c.success))
}

#[test]
fn books_sharing_a_file_lose_no_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (books, threads, per_thread) = (3, 4, 50);
    let books: Vec<Arc<TrustBook>> = (0..books)
        .map(|_| Arc::new(TrustBook::open(dir.path(), TrustConfig::default()).unwrap()))
        .collect();
    std::thread::scope(|s| {
        for (i, book) in books.iter().enumerate() {
            for t in 0..threads {
                s.spawn(move || {
                    for k in 0..per_thread {
                        book.record("shared", Signal::Success, &[], T0).unwrap();
                        if (k + t + i) % 7 == 0 {
                            book.save().unwrap();
                        }
                    }
                });
            }
        }
    });
    for b in &books {
        b.save().unwrap();
    }
    let total = books.len() * threads * per_thread;
    // JSON numbers may round-trip a float to its neighbour (serde_json's
    // fast parser), so the file store agrees to within 1e-9, not bit for bit.
    let fresh = TrustBook::open(dir.path(), TrustConfig::default()).unwrap();
    let close = |s: f64| (s - successes(total)).abs() < 1e-9;
    assert!(close(fresh.score("shared", T0).unwrap()));
    // One more signal would be visible: `total` is exact, not `total ± 1`.
    assert!((successes(total + 1) - successes(total)).abs() > 1e-3);
    // After a save each book's view is the store's.
    books[0].save().unwrap();
    assert!(close(books[0].score("shared", T0).unwrap()));
    assert_eq!(books[0].queued(), 0);
}

#[test]
fn operator_set_is_kept_and_later_signals_apply_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let server = TrustBook::open(dir.path(), TrustConfig::default()).unwrap();
    server
        .record("a", Signal::PolicyViolation, &[], T0)
        .unwrap();
    server.record("b", Signal::Success, &[], T0).unwrap();
    server.save().unwrap();
    let operator = TrustBook::open(dir.path(), TrustConfig::default()).unwrap();
    operator.set("a", 900.0, T0).unwrap();
    // The server saves again without new signals for `a`: the set stays.
    server.record("b", Signal::Success, &[], T0).unwrap();
    server.save().unwrap();
    assert_eq!(server.score("a", T0).unwrap(), 900.0);
    // A signal the server records after the set applies on top of it.
    server
        .record("a", Signal::PolicyViolation, &[], T0)
        .unwrap();
    server.save().unwrap();
    let fresh = TrustBook::open(dir.path(), TrustConfig::default()).unwrap();
    assert!((fresh.score("a", T0).unwrap() - 810.0).abs() < 1e-9);
    assert!((fresh.score("b", T0).unwrap() - successes(2)).abs() < 1e-9);
}

#[test]
fn corrupt_file_is_an_error_at_open_and_at_save_and_signals_wait() {
    let dir = tempfile::tempdir().unwrap();
    let book = TrustBook::open(dir.path(), TrustConfig::default()).unwrap();
    book.record("a", Signal::Success, &[], T0).unwrap();
    let path = dir.path().join("trust.json");
    for bad in [
        "garbage",
        "{\"version\":2,\"agents\":{}}",
        "{\"version\":1,\"agents\":{\"a\":{\"score\":1001,\"at\":0}}}",
        "{\"version\":1,\"agents\":{\"a\":{\"score\":1,\"at\":0,\"x\":1}}}",
        "{\"version\":1,\"agents\":{},\"extra\":true}",
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = TrustBook::open(dir.path(), TrustConfig::default()).unwrap_err();
        assert!(e.to_string().contains("trust.json"), "{bad}: {e}");
        let e = book.save().unwrap_err();
        assert!(e.to_string().contains("trust.json"), "{bad}: {e}");
        assert_eq!(book.queued(), 1, "the signal stays queued");
        assert_eq!(book.score("a", T0).unwrap(), successes(1));
    }
    std::fs::remove_file(&path).unwrap();
    book.save().unwrap();
    assert_eq!(book.queued(), 0);
    let fresh = TrustBook::open(dir.path(), TrustConfig::default()).unwrap();
    assert_eq!(fresh.score("a", T0).unwrap(), successes(1));
}

/// A store that fails while `down`, applying only the first agent of a
/// batch before failing when `partial`.
#[derive(Debug, Default)]
struct Flaky {
    down: AtomicBool,
    partial: AtomicBool,
    stored: std::sync::Mutex<Snapshot>,
}

impl TrustStore for Flaky {
    fn apply(&self, config: &TrustConfig, batch: &Batch) -> Result<Snapshot, ApplyFailure> {
        let mut stored = self.stored.lock().unwrap();
        let fail = |applied| ApplyFailure {
            applied,
            error: IdentityError::Internal("store down".into()),
        };
        if self.down.load(Ordering::SeqCst) {
            if self.partial.load(Ordering::SeqCst)
                && let Some((agent, deltas)) = batch.first()
            {
                let mut a = stored.get(agent).copied();
                for d in deltas {
                    a = Some(config.step(a, *d));
                }
                stored.insert(agent.clone(), a.unwrap());
                return Err(fail(1));
            }
            return Err(fail(0));
        }
        for (agent, deltas) in batch {
            let mut a = stored.get(agent).copied();
            for d in deltas {
                a = Some(config.step(a, *d));
            }
            stored.insert(agent.clone(), a.unwrap());
        }
        Ok(stored.clone())
    }

    fn set(&self, agent: &str, anchor: Anchor) -> Result<(), IdentityError> {
        self.stored.lock().unwrap().insert(agent.to_owned(), anchor);
        Ok(())
    }

    fn location(&self) -> String {
        "flaky".into()
    }
}

#[test]
fn failed_saves_keep_signals_in_order_and_partial_commits_count() {
    let store = Arc::new(Flaky::default());
    #[derive(Debug)]
    struct Shared(Arc<Flaky>);
    impl TrustStore for Shared {
        fn apply(&self, c: &TrustConfig, b: &Batch) -> Result<Snapshot, ApplyFailure> {
            self.0.apply(c, b)
        }
        fn set(&self, a: &str, x: Anchor) -> Result<(), IdentityError> {
            self.0.set(a, x)
        }
        fn location(&self) -> String {
            self.0.location()
        }
    }
    let book = TrustBook::with_store(Box::new(Shared(Arc::clone(&store))), TrustConfig::default())
        .unwrap();
    store.down.store(true, Ordering::SeqCst);
    book.record("a", Signal::PolicyViolation, &[], T0).unwrap();
    book.record("a", Signal::Success, &[], T0 + 10).unwrap();
    assert!(book.save().is_err());
    assert_eq!(book.queued(), 2);
    store.partial.store(true, Ordering::SeqCst);
    book.record("b", Signal::Success, &[], T0).unwrap();
    assert!(book.save().is_err());
    // One agent committed (which one is the map's order), the other's
    // signals are still queued.
    let queued = book.queued();
    assert!(queued == 1 || queued == 2, "{queued}");
    store.down.store(false, Ordering::SeqCst);
    book.save().unwrap();
    assert_eq!(book.queued(), 0);
    let c = TrustConfig::default();
    let expect_a = c.step(
        Some(c.step(
            None,
            warden_identity::trust::Delta {
                weight: c.violation,
                at: T0,
            },
        )),
        warden_identity::trust::Delta {
            weight: c.success,
            at: T0 + 10,
        },
    );
    assert_eq!(book.score("a", T0 + 10).unwrap(), expect_a.score);
    assert_eq!(store.stored.lock().unwrap()["b"].score, successes(1));
}

#[test]
fn an_unreachable_store_fails_closed_once_the_queue_is_full() {
    let store = Flaky::default();
    store.down.store(true, Ordering::SeqCst);
    // Opening needs the store: down means no book at all.
    assert!(
        TrustBook::with_store(
            Box::new(Flaky {
                down: AtomicBool::new(true),
                ..Flaky::default()
            }),
            TrustConfig::default()
        )
        .is_err()
    );
    let book = TrustBook::with_store(Box::new(Flaky::default()), TrustConfig::default()).unwrap();
    // (The book's own store is up; fill its queue without saving.)
    for i in 0..MAX_QUEUED_SIGNALS {
        book.record(if i % 2 == 0 { "x" } else { "y" }, Signal::Success, &[], T0)
            .unwrap();
    }
    let e = book.record("x", Signal::Success, &[], T0).unwrap_err();
    assert!(e.to_string().contains("not yet persisted"), "{e}");
    // A penalty with delegators needs room for all of them.
    assert!(
        book.record("x", Signal::PolicyViolation, &["p"], T0)
            .is_err()
    );
    assert_eq!(book.queued(), MAX_QUEUED_SIGNALS);
    book.save().unwrap();
    assert_eq!(book.queued(), 0);
    book.record("x", Signal::Success, &[], T0).unwrap();
}
