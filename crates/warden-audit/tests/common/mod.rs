//! Helpers shared by the integration tests: a record type, and readers of the
//! documented on-disk layout used to tamper with files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use warden_audit::{AuditConfig, AuditLog, Durability};

/// A record shaped like the kernel's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rec {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub agent: String,
    pub n: u64,
    pub thread: u32,
    pub ts_ms: u64,
}

pub fn rec(n: u64) -> Rec {
    Rec {
        kind: "decision",
        agent: format!("agent-{}", n % 7),
        n,
        thread: 0,
        ts_ms: 1_777_000_000_000 + n,
    }
}

pub fn config(durability: Durability, bits: u32) -> AuditConfig {
    AuditConfig {
        durability,
        segment_bits: bits,
        sth_every_records: 0,
        sth_interval: Duration::ZERO,
        ..AuditConfig::default()
    }
}

/// A closed log with `n` records; an STH after every `sth_every` records
/// (and at the end).
pub fn build_log(dir: &Path, n: u64, bits: u32, sth_every: u64) {
    let log = AuditLog::open(dir, config(Durability::Batched, bits)).unwrap();
    for i in 0..n {
        log.append(rec(i)).unwrap();
        if sth_every > 0 && (i + 1) % sth_every == 0 {
            log.flush().unwrap();
        }
    }
    log.close().unwrap();
}

pub fn audit_dir(dir: &Path) -> PathBuf {
    dir.join("audit")
}

pub fn segment(dir: &Path, base: u64) -> PathBuf {
    audit_dir(dir).join(format!("{base:020}.seg"))
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(audit_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

pub const SEG_HEADER: usize = 32;
pub const FRAME_HEADER: usize = 16;

/// (offset, total frame length) of every frame of a segment.
pub fn frames(path: &Path) -> Vec<(usize, usize)> {
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = SEG_HEADER;
    while pos + FRAME_HEADER <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        if pos + FRAME_HEADER + len > data.len() {
            break;
        }
        out.push((pos, FRAME_HEADER + len));
        pos += FRAME_HEADER + len;
    }
    out
}

/// Rewrites a frame's checksum after its payload was edited, as a careful
/// attacker would.
pub fn fix_frame_crc(data: &mut [u8], offset: usize) {
    let len = u32::from_le_bytes(data[offset..offset + 4].try_into().unwrap()) as usize;
    let index = &data[offset + 8..offset + 16];
    let crc = crc32c::crc32c_append(crc32c::crc32c(index), &data[offset + 16..offset + 16 + len]);
    data[offset + 4..offset + 8].copy_from_slice(&crc.to_le_bytes());
}

pub fn sth_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(audit_dir(dir).join("sth.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn write_sth_lines(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(audit_dir(dir).join("sth.jsonl"), text).unwrap();
}
