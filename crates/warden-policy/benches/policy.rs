//! Criterion benches for the DESIGN.md §6 policy workloads (same workloads as `warden bench policy`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy");
    for w in warden_policy::workloads::all().unwrap() {
        g.bench_function(&w.name, |b| {
            b.iter(|| black_box(w.set.evaluate(black_box(&w.action)).verdict))
        });
    }
    g.finish();
}

criterion_group!(benches, policy);
criterion_main!(benches);
