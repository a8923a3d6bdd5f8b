//! Criterion benches for the kernel (`kernel-full/100-rules` of DESIGN.md §6)
//! and for what the audit hand-off adds.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group};
use std::hint::black_box;
use std::sync::Arc;
use warden_kernel::{AuditEvent, AuditSink, Kernel};
use warden_policy::{PolicyHandle, PolicySet, workloads};

/// Builds the record and drops it: the caller-side cost of auditing with a
/// sink that does not recycle records.
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

/// Hands every record straight back for reuse: the caller-side cost of
/// auditing when the sink recycles records (as the file log does).
struct Recycle;
impl AuditSink for Recycle {
    fn append(&self, event: AuditEvent) -> Result<(), String> {
        drop(black_box(event));
        Ok(())
    }
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
    fn append_recycling(
        &self,
        event: Box<AuditEvent>,
        spare: &mut Option<Box<AuditEvent>>,
    ) -> Result<(), String> {
        *spare = Some(black_box(event));
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
    let recycle = Kernel::builder(policy())
        .audit(Arc::new(Recycle))
        .build()
        .unwrap();
    g.bench_function("kernel-full/100-rules/record-reused", |b| {
        b.iter(|| black_box(recycle.decide(black_box(&action))))
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

/// CPU ticks (utime + stime, 1/100 s) of a `/proc/.../stat` file.
fn cpu_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// `WARDEN_CPU_COST=N cargo bench -p warden-kernel --bench kernel`: CPU time
/// (not wall time, so other load on the machine matters less) per audited
/// decision: the deciding thread's and the whole process's (writer
/// included), for N decisions on one thread, batched audit.
fn cpu_cost(n: u64) {
    let action = workloads::action_for("action_99").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kernel = Kernel::builder(policy())
        .data_dir(dir.path(), warden_audit::Durability::Batched)
        .unwrap()
        .build()
        .unwrap();
    for _ in 0..100_000 {
        black_box(kernel.decide(black_box(&action)));
    }
    kernel.flush().unwrap();
    let (t0, p0) = (
        cpu_ticks("/proc/thread-self/stat"),
        cpu_ticks("/proc/self/stat"),
    );
    let wall = std::time::Instant::now();
    for _ in 0..n {
        black_box(kernel.decide(black_box(&action)));
    }
    kernel.flush().unwrap();
    let wall = wall.elapsed();
    let (t1, p1) = (
        cpu_ticks("/proc/thread-self/stat"),
        cpu_ticks("/proc/self/stat"),
    );
    let per = |ticks: u64| ticks as f64 * 10_000_000.0 / n as f64;
    println!(
        "{}",
        serde_json::json!({
            "workload": "kernel-full/100-rules/cpu-per-decision",
            "decisions": n,
            "caller_cpu_ns": per(t1 - t0).round(),
            "process_cpu_ns": per(p1 - p0).round(),
            "wall_ns": (wall.as_nanos() as f64 / n as f64).round(),
        })
    );
}

criterion_group!(benches, kernel);

fn main() {
    if let Some(n) = std::env::var("WARDEN_CPU_COST")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cpu_cost(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
