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

pub(crate) fn run(group: Group, time_ms: u64) -> Result<u8> {
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
    }
    Ok(0)
}
