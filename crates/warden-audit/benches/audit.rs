//! Append throughput of the audit log, as seen by callers, including the
//! final flush (so the figure is sustained throughput, not queue filling).
//!
//! `cargo bench -p warden-audit --bench audit`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use warden_audit::merkle::{Frontier, leaf_hash};
use warden_audit::{AuditConfig, AuditLog, Durability};

/// Shaped like the kernel's decision record.
#[derive(Serialize, Clone)]
struct Decision {
    #[serde(rename = "type")]
    kind: &'static str,
    decision_id: String,
    ts_ms: u64,
    policy_hash: &'static str,
    point: &'static str,
    agent: String,
    session: String,
    tool: &'static str,
    action: Action,
    verdict: &'static str,
    reasons: Vec<&'static str>,
    rule_ids: Vec<&'static str>,
    obligations: Vec<u8>,
}

#[derive(Serialize, Clone)]
struct Action {
    digest: &'static str,
}

fn decision(n: u64) -> Decision {
    Decision {
        kind: "decision",
        decision_id: format!("0196a3b2-7c4d-7e00-8000-{n:012x}"),
        ts_ms: 1_777_000_000_000 + n,
        policy_hash: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        point: "pre_tool_call",
        agent: format!("agent-{}", n % 50),
        session: format!("session-{}", n % 500),
        tool: "action_99",
        action: Action {
            digest: "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        },
        verdict: "deny",
        reasons: vec!["rule:r99"],
        rule_ids: vec!["r99"],
        obligations: vec![],
    }
}

fn config(durability: Durability) -> AuditConfig {
    AuditConfig {
        durability,
        ..AuditConfig::default()
    }
}

/// Times `iters` appends spread over `threads` threads, plus the flush that
/// makes them durable and signed.
fn timed_appends(log: &Arc<AuditLog<Decision>>, threads: u64, iters: u64) -> Duration {
    let per = iters.div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let log = Arc::clone(log);
            s.spawn(move || {
                for i in 0..per {
                    log.append(decision(t * per + i)).unwrap();
                }
            });
        }
    });
    log.flush().unwrap();
    start.elapsed() * u32::try_from(iters).unwrap_or(1) / u32::try_from(per * threads).unwrap_or(1)
}

fn append(c: &mut Criterion) {
    let record_len = serde_json_canonicalizer::to_vec(&decision(1))
        .unwrap()
        .len();
    eprintln!("record size: {record_len} bytes of canonical JSON");
    for (mode, durability, secs) in [
        ("batched", Durability::Batched, 5),
        ("sync", Durability::Sync, 5),
    ] {
        let mut group = c.benchmark_group(format!("audit/append/{mode}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(secs));
        // Sync throughput is fsync latency times the number of appenders
        // sharing each fsync: 32 threads show the group commit at work.
        let thread_counts: &[u64] = if durability == Durability::Sync {
            &[1, 2, 32]
        } else {
            &[1, 2]
        };
        for &threads in thread_counts {
            let dir = tempfile::tempdir().unwrap();
            let log = Arc::new(AuditLog::open(dir.path(), config(durability)).unwrap());
            group.bench_function(format!("{threads}-thread"), |b| {
                b.iter_custom(|iters| timed_appends(&log, threads, iters));
            });
            drop(log);
        }
        group.finish();
    }
}

/// What the writer thread pays per record, without I/O.
fn writer_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit/writer-cpu");
    group.throughput(Throughput::Elements(1));
    let r = decision(7);
    group.bench_function("canonicalize/serde_json_canonicalizer", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            serde_json_canonicalizer::to_writer(std::hint::black_box(&r), &mut buf).unwrap();
            buf.len()
        });
    });
    group.bench_function("canonicalize/warden", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            warden_audit::to_canonical_json(std::hint::black_box(&r), &mut buf).unwrap();
            buf.len()
        });
    });
    let bytes = serde_json_canonicalizer::to_vec(&r).unwrap();
    group.bench_function("leaf-hash", |b| {
        b.iter(|| leaf_hash(std::hint::black_box(&bytes)))
    });
    group.bench_function("frontier-push", |b| {
        let mut f = Frontier::new();
        let leaf = leaf_hash(&bytes);
        b.iter(|| f.push(std::hint::black_box(leaf)));
    });
    group.finish();
}

criterion_group!(benches, append, writer_cost);
criterion_main!(benches);
