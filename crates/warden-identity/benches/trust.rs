//! Criterion benches of the trust book's hot-path read (`score`), alone and
//! while another thread records signals (and saves), and of `record`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use warden_identity::{Signal, TrustBook, TrustConfig, now_secs};

fn book(dir: &std::path::Path) -> Arc<TrustBook> {
    let book = Arc::new(TrustBook::open(dir, TrustConfig::default()).unwrap());
    let now = now_secs();
    for i in 0..1000 {
        book.record(&format!("agent-{i}"), Signal::Success, &[], now)
            .unwrap();
    }
    book.save().unwrap();
    book
}

fn trust(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let book = book(dir.path());
    let now = now_secs();
    let mut g = c.benchmark_group("trust");
    g.bench_function("score", |b| {
        b.iter(|| black_box(book.score(black_box("agent-500"), now).unwrap()));
    });
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (book, stop) = (Arc::clone(&book), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let agent = format!("agent-{}", i % 1000);
                book.record(&agent, Signal::Success, &[], now).unwrap();
                i += 1;
                if i.is_multiple_of(10_000) {
                    book.save().unwrap();
                }
            }
        })
    };
    g.bench_function("score/while-recording", |b| {
        b.iter(|| black_box(book.score(black_box("agent-500"), now).unwrap()));
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // Without a store (a book with one queues every signal until its next
    // save, and refuses more past MAX_QUEUED_SIGNALS).
    let memory = TrustBook::in_memory(TrustConfig::default());
    memory.record("agent-7", Signal::Success, &[], now).unwrap();
    g.bench_function("record", |b| {
        b.iter(|| black_box(memory.record("agent-7", Signal::Success, &[], now).unwrap()));
    });
    g.finish();
}

criterion_group!(benches, trust);
criterion_main!(benches);
