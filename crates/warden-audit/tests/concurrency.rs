//! Many threads appending at once, in both durability modes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::rec;
use warden_audit::{AuditConfig, AuditLog, Durability, VerifyOptions, records, verify};

fn run(durability: Durability, queue_capacity: usize) {
    run_with(durability, queue_capacity, 8, 1000);
}

fn run_with(durability: Durability, queue_capacity: usize, threads: u32, per_thread: u64) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        durability,
        queue_capacity,
        segment_bits: 10,
        sth_every_records: 500,
        ..AuditConfig::default()
    };
    let log = Arc::new(AuditLog::open(dir.path(), cfg).unwrap());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut indices = Vec::with_capacity(per_thread as usize);
                for n in 0..per_thread {
                    let mut r = rec(n);
                    r.thread = t;
                    let index = log.append(r).unwrap();
                    if durability == Durability::Sync {
                        assert!(
                            log.durable_len() > index,
                            "sync append returned before fsync"
                        );
                    }
                    indices.push((index, t, n));
                }
                indices
            })
        })
        .collect();
    let mut all: Vec<(u64, u32, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let total = u64::from(threads) * per_thread;
    let sth = log.flush().unwrap().unwrap();
    assert_eq!(sth.size, total);
    Arc::into_inner(log).unwrap().close().unwrap();

    // Indices are exactly 0..total, each record where its append said.
    all.sort_unstable();
    assert_eq!(all.len() as u64, total);
    for (i, a) in all.iter().enumerate() {
        assert_eq!(a.0, i as u64);
    }
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, total);
    assert_eq!(report.root, sth.root);
    let mut per_thread_next = vec![0u64; threads as usize];
    for (stored, &(index, t, n)) in records(dir.path(), 0).unwrap().zip(&all) {
        let stored = stored.unwrap();
        assert_eq!(stored.index, index);
        let v = stored.json().unwrap();
        assert_eq!(
            (v["thread"].as_u64(), v["n"].as_u64()),
            (Some(u64::from(t)), Some(n))
        );
        // Per thread, records appear in the order they were appended.
        assert_eq!(per_thread_next[t as usize], n);
        per_thread_next[t as usize] += 1;
    }
}

#[test]
fn eight_threads_batched() {
    run(Durability::Batched, 65_536);
}

#[test]
fn eight_threads_batched_small_queue() {
    run(Durability::Batched, 16);
}

#[test]
fn eight_threads_sync() {
    run(Durability::Sync, 65_536);
}

#[test]
fn sixty_four_threads_sync() {
    // Batches of many waiters: the writer wakes two, the woken wake the rest.
    run_with(Durability::Sync, 65_536, 64, 150);
}
