//! Criterion benches for the kernel (`kernel-full/100-rules` of DESIGN.md §6)
//! and for what the audit hand-off adds.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use warden_kernel::{AuditEvent, AuditSink, Kernel};
use warden_policy::{PolicyHandle, PolicySet, workloads};

/// Builds the record and drops it: the caller-side cost of auditing.
struct Discard;
impl AuditSink for Discard {
    fn append(&self, event: AuditEvent) -> Result<(), String> {
        drop(black_box(event));
        Ok(())
    }
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
}

fn policy() -> PolicyHandle {
    let mut yaml = workloads::policy_n_yaml(100);
    yaml.push_str("quotas:\n  - id: bench-rate\n    per: agent\n    rate: 1000000000/second\n");
    PolicyHandle::new(PolicySet::from_yaml(&yaml).unwrap())
}

fn kernel(c: &mut Criterion) {
    let action = workloads::action_for("action_99").unwrap();
    let mut g = c.benchmark_group("kernel");
    let bare = Kernel::builder(policy()).build().unwrap();
    g.bench_function("kernel-full/100-rules/no-audit", |b| {
        b.iter(|| black_box(bare.decide(black_box(&action))))
    });
    let discard = Kernel::builder(policy())
        .audit(Arc::new(Discard))
        .build()
        .unwrap();
    g.bench_function("kernel-full/100-rules/record-built", |b| {
        b.iter(|| black_box(discard.decide(black_box(&action))))
    });
    let dir = tempfile::tempdir().unwrap();
    let logged = Kernel::builder(policy())
        .data_dir(dir.path(), warden_audit::Durability::Batched)
        .unwrap()
        .build()
        .unwrap();
    g.bench_function("kernel-full/100-rules", |b| {
        b.iter(|| black_box(logged.decide(black_box(&action))))
    });
    g.finish();
}

criterion_group!(benches, kernel);
criterion_main!(benches);
