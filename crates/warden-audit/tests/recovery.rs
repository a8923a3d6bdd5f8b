//! Crash recovery: torn tails are truncated on open (never anything an STH
//! covers), and a writer killed with SIGKILL mid-load loses no record whose
//! `append` returned in sync mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Rec, audit_dir, build_log, config, rec, segment};
use warden_audit::{AuditLog, Durability, VerifyOptions, records, verify};

fn append_to(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn torn_files(dir: &Path) -> usize {
    std::fs::read_dir(audit_dir(dir))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".torn-")
        })
        .count()
}

fn reopen_append_verify(dir: &Path, before: u64) {
    let log = AuditLog::open(dir, config(Durability::Sync, 3)).unwrap();
    assert_eq!(log.len(), before);
    for i in before..before + 5 {
        assert_eq!(log.append(rec(i)).unwrap(), i);
    }
    log.close().unwrap();
    let report = verify(dir, &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, before + 5);
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.unsigned_records, 0);
    for (i, r) in records(dir, 0).unwrap().enumerate() {
        assert_eq!(r.unwrap().json().unwrap()["n"], i);
    }
}

#[test]
fn garbage_after_the_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 12, 3, 0);
    // 12 records, 8 per segment: the active segment starts at 8.
    append_to(&segment(dir.path(), 8), &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0]);
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, 12);
    assert!(report.torn_tail.is_some(), "{report:?}");
    reopen_append_verify(dir.path(), 12);
    assert_eq!(torn_files(dir.path()), 1, "the torn bytes are kept aside");
}

#[test]
fn partial_frame_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 12, 3, 0);
    // A frame header announcing 100 bytes, followed by only 10.
    let mut partial = Vec::new();
    partial.extend_from_slice(&100u32.to_le_bytes());
    partial.extend_from_slice(&0u32.to_le_bytes());
    partial.extend_from_slice(&12u64.to_le_bytes());
    partial.extend_from_slice(b"{\"agent\":\"");
    append_to(&segment(dir.path(), 8), &partial);
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(
        report.torn_tail.as_deref().unwrap().contains("record 12"),
        "{report:?}"
    );
    reopen_append_verify(dir.path(), 12);
}

#[test]
fn unsigned_records_survive_and_get_signed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 6, 3, 0);
    // Simulate a crash after records were fsynced but before the STH: drop
    // the last STH line.
    let mut lines = common::sth_lines(dir.path());
    assert_eq!(lines.len(), 1);
    lines.clear();
    std::fs::write(audit_dir(dir.path()).join("sth.jsonl"), "").unwrap();
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.unsigned_records, 6);
    let log = AuditLog::<Rec>::open(dir.path(), config(Durability::Sync, 3)).unwrap();
    assert_eq!(log.latest_sth().unwrap().size, 6, "signed on open");
    drop(log);
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .unsigned_records,
        0
    );
}

#[test]
fn torn_sth_line() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 5, 3, 0);
    append_to(
        &audit_dir(dir.path()).join("sth.jsonl"),
        br#"{"key_id":"ab"#,
    );
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(report.torn_tail.is_some());
    reopen_append_verify(dir.path(), 5);
}

#[test]
fn crash_between_sealing_and_next_segment() {
    // A full segment whose index file is missing (crash before it was
    // written): the writer rebuilds it.
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 8, 3, 0);
    std::fs::remove_file(audit_dir(dir.path()).join(format!("{:020}.idx", 0))).unwrap();
    std::fs::remove_file(segment(dir.path(), 8)).unwrap();
    verify(dir.path(), &VerifyOptions::default()).unwrap();
    reopen_append_verify(dir.path(), 8);
    assert!(
        audit_dir(dir.path())
            .join(format!("{:020}.idx", 0))
            .exists()
    );
}

const CHILD_ENV: &str = "WARDEN_AUDIT_CRASH_CHILD_DIR";

/// Child role of `sigkill_mid_load_loses_no_acknowledged_record`: appends in
/// sync mode from 4 threads forever, printing `IDX <index> <thread> <n>` after
/// each append returns. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cfg = warden_audit::AuditConfig {
        durability: Durability::Sync,
        segment_bits: 7,
        sth_every_records: 100,
        sth_interval: Duration::from_millis(20),
        ..warden_audit::AuditConfig::default()
    };
    let log = Arc::new(AuditLog::open(Path::new(&dir), cfg).unwrap());
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for n in 0u64.. {
                    let mut r = rec(n);
                    r.thread = t;
                    let index = log.append(r).unwrap();
                    let out = std::io::stdout();
                    let mut out = out.lock();
                    writeln!(out, "IDX {index} {t} {n}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn sigkill_mid_load_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged: Vec<(u64, u32, u64)> = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split(' ').collect();
                if parts.len() == 4 && parts[0] == "IDX" {
                    seen.push((
                        parts[1].parse::<u64>().unwrap(),
                        parts[2].parse::<u32>().unwrap(),
                        parts[3].parse::<u64>().unwrap(),
                    ));
                }
            }
            seen
        });
        // Let it run under load for a while (longer each round), then kill.
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(400 + 300 * round));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let seen = reader.join().unwrap();
        assert!(
            !seen.is_empty(),
            "child reported nothing in {:?}",
            start.elapsed()
        );
        acknowledged.extend(seen);

        // The directory verifies as is (a torn tail is allowed) ...
        let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
        eprintln!(
            "round {round}: {} acknowledged so far, {} records on disk, torn tail: {:?}",
            acknowledged.len(),
            report.records,
            report.torn_tail
        );
        let max = acknowledged.iter().map(|a| a.0).max().unwrap();
        assert!(
            report.records > max,
            "records {} but index {max} was acknowledged",
            report.records
        );
        // ... and after a writer reopens it (recovery) and closes it.
        let log = AuditLog::<Rec>::open(dir.path(), config(Durability::Sync, 7)).unwrap();
        log.close().unwrap();
        let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
        assert_eq!(report.torn_tail, None);
        assert_eq!(report.unsigned_records, 0);

        // Every acknowledged record is present, at its index, intact.
        let stored: Vec<serde_json::Value> = records(dir.path(), 0)
            .unwrap()
            .map(|r| r.unwrap().json().unwrap())
            .collect();
        assert_eq!(stored.len() as u64, report.records);
        for &(index, thread, n) in &acknowledged {
            let r = &stored[usize::try_from(index).unwrap()];
            assert_eq!(
                (r["thread"].as_u64(), r["n"].as_u64()),
                (Some(u64::from(thread)), Some(n)),
                "record {index}"
            );
        }
    }
    assert!(
        acknowledged.len() > 100,
        "only {} appends acknowledged",
        acknowledged.len()
    );
}
