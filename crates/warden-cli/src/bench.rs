//! `warden bench`: timing loops over the DESIGN.md §6 workloads, one JSON line each.
//!
//! Each sample times a batch of calls (so the clock read does not dominate
//! nanosecond-scale work); the figures are per-call medians and 99th
//! percentiles over the batch samples.

use anyhow::Result;
use serde::Serialize;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Benchmark groups.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Group {
    /// policy-N, policy-cel.
    Policy,
    /// kernel-full/100-rules: all stages, quota, 100-rule policy, audit.
    Kernel,
    /// kernel-full/100-rules sustained for `--decisions` (default 10 M) on two
    /// threads with batched audit: one line per million decisions.
    KernelSustained,
    /// sidecar/decide: `warden serve`'s `/v1/decide` over loopback HTTP with 64 connections.
    Sidecar,
    /// mcp/tools-call: `tools/call` round trips to a local echo MCP server,
    /// direct and through `warden mcp`; the difference is the gateway's cost.
    Mcp,
}

#[derive(Serialize)]
struct Line<'a> {
    workload: &'a str,
    median_ns: f64,
    p99_ns: f64,
    ops_per_sec: f64,
    samples: usize,
    batch: u64,
}

/// Times `f`: picks a batch size of ~20 µs, then samples batches for `budget`.
pub(crate) fn measure(budget: Duration, mut f: impl FnMut()) -> (f64, f64, usize, u64) {
    let mut batch = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed() >= Duration::from_micros(20) || batch >= 1 << 24 {
            break;
        }
        batch *= 2;
    }
    let mut samples = Vec::new();
    let end = Instant::now() + budget;
    while Instant::now() < end || samples.len() < 50 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        samples.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        samples
            .get(((samples.len() - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (pick(0.5), pick(0.99), samples.len(), batch)
}

pub(crate) fn run(group: Group, time_ms: u64, decisions: u64) -> Result<u8> {
    match group {
        Group::Policy => {
            for w in warden_policy::workloads::all()? {
                let (median, p99, samples, batch) = measure(Duration::from_millis(time_ms), || {
                    black_box(w.set.evaluate(black_box(&w.action)).verdict);
                });
                let line = Line {
                    workload: &w.name,
                    median_ns: (median * 10.0).round() / 10.0,
                    p99_ns: (p99 * 10.0).round() / 10.0,
                    ops_per_sec: (1e9 / median).round(),
                    samples,
                    batch,
                };
                println!("{}", serde_json::to_string(&line)?);
            }
        }
        Group::Kernel => kernel(time_ms)?,
        Group::KernelSustained => sustained(decisions)?,
        Group::Sidecar => crate::bench_sidecar::run(time_ms)?,
        Group::Mcp => crate::mcp_cmd::bench(time_ms)?,
    }
    Ok(0)
}

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct ScratchDir(pub(crate) std::path::PathBuf);

impl ScratchDir {
    pub(crate) fn new(tag: &str) -> Result<Self> {
        let p = std::env::temp_dir().join(format!(
            "warden-bench-{tag}-{}-{}",
            std::process::id(),
            warden_core::Decision::new_id()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(ScratchDir(p))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * p) as usize)
        .copied()
        .unwrap_or(0)
}

/// Kernel workloads (DESIGN.md §6 `kernel-full/100-rules`): a 100-rule
/// policy, a rate-limit quota, the kill switch and the audit log in a
/// scratch data directory. Per-call latency percentiles on one thread, then
/// throughput on two threads (batched) and with many concurrent callers (sync).
fn kernel(time_ms: u64) -> Result<()> {
    use warden_audit::Durability;
    use warden_kernel::Kernel;
    use warden_policy::{PolicyHandle, PolicySet, workloads};
    let mut yaml = workloads::policy_n_yaml(100);
    yaml.push_str("quotas:\n  - id: bench-rate\n    per: agent\n    rate: 1000000000/second\n");
    let action = workloads::action_for("action_99")?;
    let budget = Duration::from_millis(time_ms);
    for (name, durability, threads) in [
        ("kernel-full/100-rules", Durability::Batched, 2usize),
        ("kernel-full/100-rules-sync", Durability::Sync, 64usize),
    ] {
        let dir = ScratchDir::new("kernel")?;
        let kernel = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(&yaml)?))
            .data_dir(&dir.0, durability)?
            .build()?;
        let rss_before = rss_bytes();
        let mut lat: Vec<u64> = Vec::with_capacity(1 << 20);
        if durability == Durability::Batched {
            for _ in 0..10_000 {
                black_box(kernel.decide(black_box(&action)));
            }
            // Latency as a caller sees it at a sustainable rate (50 000
            // decisions/s, paced), so the figure is not back-pressure from a
            // saturated audit writer; saturation is the throughput phase below.
            let end = Instant::now() + budget;
            let mut next = Instant::now();
            while next < end {
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
                let t = Instant::now();
                black_box(kernel.decide(black_box(&action)));
                lat.push(t.elapsed().as_nanos() as u64);
                next += Duration::from_micros(20);
            }
        }
        let done = std::sync::atomic::AtomicU64::new(0);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut n = 0u64;
                    let mut mine = Vec::new();
                    while t0.elapsed() < budget {
                        for _ in 0..64 {
                            let t = Instant::now();
                            black_box(kernel.decide(black_box(&action)));
                            if durability == Durability::Sync {
                                mine.push(t.elapsed().as_nanos() as u64);
                            }
                        }
                        n += 64;
                    }
                    done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    mine
                });
            }
        });
        let ops =
            done.load(std::sync::atomic::Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
        kernel.flush()?;
        lat.sort_unstable();
        let line = serde_json::json!({
            "workload": name,
            "median_ns": percentile(&lat, 0.5),
            "p99_ns": percentile(&lat, 0.99),
            "p999_ns": percentile(&lat, 0.999),
            "ops_per_sec": ops.round(),
            "threads": threads,
            "samples": lat.len(),
            "paced_rate_per_sec": if lat.is_empty() { 0 } else { 50_000 },
            "durability": format!("{durability:?}").to_lowercase(),
            "rss_bytes": rss_bytes(),
            "rss_before_bytes": rss_before,
        });
        println!("{line}");
    }
    Ok(())
}

/// Resident set size from /proc (0 where unavailable).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Two threads deciding `total` times with batched audit; every million
/// decisions a line with that window's latency percentiles (sampled 1 in 16),
/// throughput and RSS, so drift over time is visible.
fn sustained(total: u64) -> Result<()> {
    use warden_audit::Durability;
    use warden_kernel::Kernel;
    use warden_policy::{PolicyHandle, PolicySet, workloads};
    let mut yaml = workloads::policy_n_yaml(100);
    yaml.push_str("quotas:\n  - id: bench-rate\n    per: agent\n    rate: 1000000000/second\n");
    let action = workloads::action_for("action_99")?;
    let dir = ScratchDir::new("sustained")?;
    let kernel = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(&yaml)?))
        .data_dir(&dir.0, Durability::Batched)?
        .build()?;
    let window = 1_000_000u64;
    let per_thread = window / 2;
    let mut done = 0u64;
    while done < total {
        let t0 = Instant::now();
        let lats: Vec<Vec<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut lat = Vec::with_capacity((per_thread / 16) as usize + 1);
                        for i in 0..per_thread {
                            if i % 16 == 0 {
                                let t = Instant::now();
                                black_box(kernel.decide(black_box(&action)));
                                lat.push(t.elapsed().as_nanos() as u64);
                            } else {
                                black_box(kernel.decide(black_box(&action)));
                            }
                        }
                        lat
                    })
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let secs = t0.elapsed().as_secs_f64();
        let mut lat: Vec<u64> = lats.into_iter().flatten().collect();
        lat.sort_unstable();
        done += window;
        let line = serde_json::json!({
            "workload": "kernel-full/100-rules-sustained",
            "decisions": done,
            "median_ns": percentile(&lat, 0.5),
            "p99_ns": percentile(&lat, 0.99),
            "p999_ns": percentile(&lat, 0.999),
            "ops_per_sec": (window as f64 / secs).round(),
            "rss_bytes": rss_bytes(),
        });
        println!("{line}");
    }
    kernel.flush()?;
    Ok(())
}
