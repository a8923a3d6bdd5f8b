//! The log through its public API, on real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Rec, build_log, config, rec};
use serde::Serialize;
use warden_audit::merkle::{consistency_proof, inclusion_proof, leaf_hash, root_from_leaves};
use warden_audit::{
    AuditConfig, AuditError, AuditLog, Durability, ExportFormat, ExportOptions, LogReader,
    PublicKey, VerifyOptions, export, prove_consistency, prove_inclusion, records, tail, verify,
    verify_consistency,
};

#[test]
fn append_flush_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(Durability::Sync, 16)).unwrap();
    assert!(log.is_empty());
    assert_eq!(
        log.flush().unwrap(),
        None,
        "an empty log has nothing to sign"
    );
    for i in 0..100 {
        assert_eq!(log.append(rec(i)).unwrap(), i);
    }
    assert_eq!(log.durable_len(), 100);
    let sth = log.flush().unwrap().unwrap();
    assert_eq!(sth.size, 100);
    sth.verify(&log.public_key()).unwrap();
    log.close().unwrap();

    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, 100);
    assert_eq!(report.root, sth.root);
    assert_eq!(report.unsigned_records, 0);
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.latest_sth.as_ref(), Some(&sth));

    // Records are stored as RFC 8785 canonical JSON, and leaves hash them.
    let stored: Vec<_> = records(dir.path(), 0)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 100);
    let mut leaves = Vec::new();
    for (i, r) in stored.iter().enumerate() {
        assert_eq!(r.index, i as u64);
        assert_eq!(
            r.bytes,
            serde_json_canonicalizer::to_vec(&rec(i as u64)).unwrap()
        );
        assert_eq!(r.leaf_hash, leaf_hash(&r.bytes));
        leaves.push(r.leaf_hash);
    }
    assert_eq!(root_from_leaves(&leaves), sth.root);
    assert!(
        stored[3]
            .as_str()
            .starts_with(r#"{"agent":"agent-3","n":3,"#)
    );

    let b = prove_inclusion(dir.path(), 42).unwrap();
    assert_eq!(b.record["n"], 42);
    b.proof.verify(&leaves[42], &sth.root).unwrap();
    let c = prove_consistency(dir.path(), 10, None).unwrap();
    assert_eq!(c.new_root, sth.root);
    c.proof
        .verify(&root_from_leaves(&leaves[..10]), &sth.root)
        .unwrap();
}

#[test]
fn reopen_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 10, 3, 0);
    let log = AuditLog::open(dir.path(), config(Durability::Sync, 3)).unwrap();
    assert_eq!(log.len(), 10);
    assert_eq!(log.latest_sth().unwrap().size, 10);
    assert_eq!(log.append(rec(10)).unwrap(), 10);
    log.close().unwrap();
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, 11);
    assert_eq!(report.signed_tree_heads, 2);
}

#[test]
fn segments_rotate_and_seal() {
    let dir = tempfile::tempdir().unwrap();
    // 2^3 = 8 records per segment.
    build_log(dir.path(), 100, 3, 7);
    let segs = common::segments(dir.path());
    assert_eq!(segs.len(), 13);
    let idx = std::fs::read_dir(common::audit_dir(dir.path()))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "idx")
        })
        .count();
    assert_eq!(idx, 12, "every full segment is sealed with an index");
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, 100);
    // 14 STHs at multiples of 7, one at close.
    assert_eq!(report.signed_tree_heads, 15);
    // An existing log keeps its segment size whatever the config says.
    let log = AuditLog::open(dir.path(), config(Durability::Sync, 10)).unwrap();
    for i in 100..120 {
        log.append(rec(i)).unwrap();
    }
    log.close().unwrap();
    assert_eq!(
        common::segments(dir.path()).len(),
        16,
        "a full segment is followed by a fresh one"
    );
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        120
    );
}

/// Inclusion and consistency proofs served from the store, for every size
/// 1..=64 and every index, checked against the signed tree heads and against
/// the in-memory reference.
#[test]
fn store_proofs_for_all_sizes_up_to_64() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(Durability::Sync, 2)).unwrap();
    let mut leaves = Vec::new();
    let mut roots = vec![warden_audit::merkle::empty_root()];
    let key = log.public_key();
    for n in 1..=64u64 {
        log.append(rec(n - 1)).unwrap();
        leaves.push(leaf_hash(
            &serde_json_canonicalizer::to_vec(&rec(n - 1)).unwrap(),
        ));
        let sth = log.flush().unwrap().unwrap();
        assert_eq!(sth.size, n);
        assert_eq!(sth.root, root_from_leaves(&leaves));
        roots.push(sth.root);
        sth.verify(&key).unwrap();
        let mut reader = LogReader::open(dir.path()).unwrap();
        for i in 0..n {
            let bundle = reader.prove_inclusion(i).unwrap();
            assert_eq!(bundle.sth, sth);
            assert_eq!(bundle.leaf_hash, leaves[i as usize]);
            assert_eq!(
                bundle.proof.audit_path,
                inclusion_proof(&leaves, i).unwrap()
            );
            bundle.proof.verify(&bundle.leaf_hash, &sth.root).unwrap();
            assert_eq!(bundle.record["n"], i);
        }
        assert!(matches!(
            reader.prove_inclusion(n),
            Err(AuditError::OutOfRange(_))
        ));
    }
    log.close().unwrap();
    let mut reader = LogReader::open(dir.path()).unwrap();
    for new in 1..=64u64 {
        for old in 0..=new {
            let b = reader.prove_consistency(old, Some(new)).unwrap();
            let expected = if old == 0 {
                vec![]
            } else {
                consistency_proof(&leaves[..new as usize], old).unwrap()
            };
            assert_eq!(b.proof.path, expected, "{old} -> {new}");
            assert_eq!(b.new_root, roots[new as usize]);
            assert_eq!(b.old_root, roots[old as usize]);
            verify_consistency(
                old,
                new,
                &roots[old as usize],
                &roots[new as usize],
                &b.proof.path,
            )
            .unwrap();
            if old > 0 {
                assert_eq!(b.old_sth.as_ref().unwrap().size, old);
            }
            assert_eq!(b.new_sth.as_ref().unwrap().size, new);
        }
    }
    let latest = prove_consistency(dir.path(), 10, None).unwrap();
    assert_eq!(latest.proof.new_size, 64);
    assert!(prove_consistency(dir.path(), 65, None).is_err());
    assert!(prove_consistency(dir.path(), 20, Some(10)).is_err());
}

/// Random indices in a larger log with many sealed segments: proofs are
/// computed from segment roots and index files.
#[test]
fn store_proofs_in_a_larger_log() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 5_000, 6, 0);
    let all: Vec<_> = records(dir.path(), 0)
        .unwrap()
        .map(|r| r.unwrap().leaf_hash)
        .collect();
    assert_eq!(all.len(), 5_000);
    let root = root_from_leaves(&all);
    let mut reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.len(), 5_000);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..50 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % 5_000;
        let b = reader.prove_inclusion(i).unwrap();
        assert_eq!(b.sth.root, root);
        assert_eq!(b.proof.audit_path, inclusion_proof(&all, i).unwrap());
        let old = 1 + x % 4_999;
        let c = reader.prove_consistency(old, None).unwrap();
        assert_eq!(c.proof.path, consistency_proof(&all, old).unwrap());
        assert_eq!(c.old_root, root_from_leaves(&all[..old as usize]));
    }
}

#[test]
fn tail_and_export() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 20, 3, 0);
    let last = tail(dir.path(), 5).unwrap();
    assert_eq!(
        last.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![15, 16, 17, 18, 19]
    );
    assert_eq!(tail(dir.path(), 100).unwrap().len(), 20);
    assert_eq!(warden_audit::count(dir.path()).unwrap(), 20);

    let mut out = Vec::new();
    let n = export(dir.path(), &ExportOptions::default(), &mut out).unwrap();
    assert_eq!(n, 20);
    let text = String::from_utf8(out).unwrap();
    for (i, line) in text.lines().enumerate() {
        // Each line is itself canonical JSON.
        assert_eq!(serde_json_canonicalizer::pipe(line).unwrap(), line);
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["index"], i);
        assert_eq!(v["record"]["n"], i);
        assert_eq!(v["leaf_hash"].as_str().unwrap().len(), 64);
    }

    let mut out = Vec::new();
    let options = ExportOptions {
        format: ExportFormat::CloudEvents,
        from: 18,
        ..ExportOptions::default()
    };
    assert_eq!(export(dir.path(), &options, &mut out).unwrap(), 2);
    let key = PublicKey::load(dir.path()).unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let e = &events[0];
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["id"], "18");
    assert_eq!(e["source"], format!("urn:warden:audit:{}", key.key_id()));
    assert_eq!(e["type"], "dev.warden.audit.decision");
    assert_eq!(e["time"], "2026-04-24T03:06:40.018Z");
    assert_eq!(e["datacontenttype"], "application/json");
    assert_eq!(e["auditindex"], 18);
    assert_eq!(e["data"]["n"], 18);

    let mut out = Vec::new();
    let limited = ExportOptions {
        limit: Some(3),
        ..ExportOptions::default()
    };
    assert_eq!(export(dir.path(), &limited, &mut out).unwrap(), 3);
}

#[cfg(unix)]
#[test]
fn key_files_and_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 1, 16, 0);
    let key_path = dir.path().join("audit.key");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = PublicKey::load(dir.path()).unwrap();
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.key_id, public.key_id());
    assert_eq!(public.key_id().len(), 64);
    assert_eq!(PublicKey::from_hex(&public.to_hex()).unwrap(), public);

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = AuditLog::<Rec>::open(dir.path(), AuditConfig::default()).unwrap_err();
    assert!(
        matches!(err, AuditError::KeyPermissions { mode: 0o644, .. }),
        "{err}"
    );
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A replaced audit.pub is refused.
    let other = tempfile::tempdir().unwrap();
    build_log(other.path(), 1, 16, 0);
    std::fs::copy(other.path().join("audit.pub"), dir.path().join("audit.pub")).unwrap();
    let err = AuditLog::<Rec>::open(dir.path(), AuditConfig::default()).unwrap_err();
    assert!(matches!(err, AuditError::Key { .. }), "{err}");
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = AuditLog::<Rec>::open(dir.path(), AuditConfig::default()).unwrap();
    let err = AuditLog::<Rec>::open(dir.path(), AuditConfig::default()).unwrap_err();
    assert!(matches!(err, AuditError::Locked(_)), "{err}");
    drop(first);
    AuditLog::<Rec>::open(dir.path(), AuditConfig::default()).unwrap();
}

/// A record that cannot be serialised.
enum MaybeBad {
    Good(u64),
    Bad,
}

impl Serialize for MaybeBad {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Good(n) => s.serialize_u64(*n),
            Self::Bad => s.serialize_f64(f64::NAN),
        }
    }
}

#[test]
fn writer_failure_surfaces_in_batched_mode() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(Durability::Batched, 16)).unwrap();
    log.append(MaybeBad::Good(1)).unwrap();
    log.append(MaybeBad::Bad).unwrap();
    let err = log.flush().unwrap_err();
    assert!(
        matches!(&err, AuditError::WriterFailed(inner) if matches!(**inner, AuditError::Record { index: 1, .. })),
        "{err}"
    );
    assert!(matches!(
        log.append(MaybeBad::Good(2)),
        Err(AuditError::WriterFailed(_))
    ));
    assert!(log.close().is_err());
    // The good record before it is durable and the log reopens cleanly.
    let log = AuditLog::<MaybeBad>::open(dir.path(), config(Durability::Sync, 16)).unwrap();
    assert_eq!(log.len(), 1);
    log.close().unwrap();
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        1
    );
}

#[test]
fn writer_failure_surfaces_in_sync_mode() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(Durability::Sync, 16)).unwrap();
    assert_eq!(log.append(MaybeBad::Good(1)).unwrap(), 0);
    assert!(matches!(
        log.append(MaybeBad::Bad),
        Err(AuditError::WriterFailed(_))
    ));
    assert!(matches!(log.flush(), Err(AuditError::WriterFailed(_))));
}

#[test]
fn sth_cadence_by_count_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        durability: Durability::Sync,
        sth_every_records: 10,
        sth_interval: Duration::ZERO,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(dir.path(), cfg).unwrap();
    for i in 0..35 {
        log.append(rec(i)).unwrap();
    }
    let sizes: Vec<u64> = common::sth_lines(dir.path())
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["size"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(sizes, vec![10, 20, 30]);
    log.close().unwrap();
    assert_eq!(
        common::sth_lines(dir.path()).len(),
        4,
        "close signs the rest"
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        durability: Durability::Batched,
        sth_every_records: 0,
        sth_interval: Duration::from_millis(50),
        ..AuditConfig::default()
    };
    let log = AuditLog::open(dir.path(), cfg).unwrap();
    log.append(rec(0)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.latest_sth().is_none_or(|s| s.size < 1) {
        assert!(std::time::Instant::now() < deadline, "no timed STH");
        std::thread::sleep(Duration::from_millis(10));
    }
    log.close().unwrap();
}

/// `threads` appenders of `per_thread` records each on a batched log with
/// `capacity` queue slots; checks the flushed head and the verified count.
fn concurrent_batched_appends(capacity: usize, threads: u64, per_thread: u64) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        queue_capacity: capacity,
        ..config(Durability::Batched, 8)
    };
    let log = std::sync::Arc::new(AuditLog::open(dir.path(), cfg).unwrap());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    log.append(rec(t * 100_000 + i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = threads * per_thread;
    assert_eq!(log.flush().unwrap().unwrap().size, total);
    let log = std::sync::Arc::into_inner(log).unwrap();
    log.close().unwrap();
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        total
    );
    // Every record once, whoever encoded it (appenders help a writer that
    // falls behind) — and each thread's in its own order.
    let stored: Vec<u64> = records(dir.path(), 0)
        .unwrap()
        .map(|r| r.unwrap().json().unwrap()["n"].as_u64().unwrap())
        .collect();
    for t in 0..threads {
        let mine: Vec<u64> = stored
            .iter()
            .copied()
            .filter(|n| n / 100_000 == t)
            .collect();
        assert_eq!(
            mine,
            (0..per_thread).map(|i| t * 100_000 + i).collect::<Vec<_>>()
        );
    }
}

#[test]
fn back_pressure_with_a_tiny_queue() {
    concurrent_batched_appends(1, 4, 250);
}

#[test]
fn many_batched_appenders_with_a_small_queue() {
    // Above the lingering writer's early-wake threshold (a quarter of 64).
    concurrent_batched_appends(64, 4, 2_000);
}

/// Waits (up to a generous bound, not a timing assertion) until `log` has
/// `n` durable records.
fn wait_durable(log: &AuditLog<Rec>, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while log.durable_len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} records became durable",
            log.durable_len()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn batched_records_reach_the_disk_without_a_flush() {
    // Batched appenders never wake the writer while it lingers after a
    // batch; it must still pick records up by itself, both right after a
    // batch (lingering) and after it went idle (woken by the appender).
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(Durability::Batched, 16)).unwrap();
    for i in 0..5u64 {
        log.append(rec(i)).unwrap();
        wait_durable(&log, i + 1);
        // Long enough for the writer to stop lingering and go idle.
        std::thread::sleep(std::time::Duration::from_millis(5 * i));
    }
    // A burst while it lingers, larger than the early-wake threshold.
    for i in 5..20_005u64 {
        log.append(rec(i)).unwrap();
    }
    wait_durable(&log, 20_005);
    log.close().unwrap();
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        20_005
    );
}

#[test]
fn spent_records_are_handed_back_for_reuse() {
    // Batched, with a flush after each append: the writer encoded and wrote
    // the record, so the next append deterministically gets it back.
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(Durability::Batched, 4)).unwrap();
    let mut spare = None;
    for i in 0..40u64 {
        let index = log.append_recycling(rec(i), &mut spare).unwrap();
        assert_eq!(index, i);
        log.flush().unwrap();
        if i == 0 {
            assert_eq!(spare, None);
        } else {
            // Reused: taken out, then the slot is free for the next one.
            assert_eq!(spare.take(), Some(rec(i - 1)));
        }
    }
    log.close().unwrap();
    let stored: Vec<u64> = records(dir.path(), 0)
        .unwrap()
        .map(|r| r.unwrap().json().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, (0..40).collect::<Vec<_>>());

    // Sync: the appender encodes its own record (it waits for the disk
    // anyway), so the writer never needs it and it comes straight back.
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(Durability::Sync, 4)).unwrap();
    let mut spare = None;
    for i in 0..40u64 {
        let index = log.append_recycling(rec(i), &mut spare).unwrap();
        assert_eq!(index, i);
        assert_eq!(spare.take(), Some(rec(i)));
    }
    // A caller that already holds a spare is not given another.
    let mut held = Some(rec(999));
    log.append_recycling(rec(40), &mut held).unwrap();
    assert_eq!(held, Some(rec(999)));
    log.close().unwrap();
    let stored: Vec<u64> = records(dir.path(), 0)
        .unwrap()
        .map(|r| r.unwrap().json().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, (0..=40).collect::<Vec<_>>());
}

#[test]
fn records_encoded_by_appenders_are_stored_as_the_writer_stores_them() {
    // Sync appenders canonicalise and hash their own records; batched ones
    // (a flush after each) leave it to the writer. Both logs must hold the
    // same bytes, whatever the records contain.
    let values: Vec<serde_json::Value> = vec![
        serde_json::json!({"z": 1, "a": [3, 2, 1], "m": {"b": null, "a": true}}),
        serde_json::json!({"text": "line\nbreak \"quoted\" \\ tab\t \u{0}\u{1f} é 𝄞 \u{2028}"}),
        serde_json::json!({"float": 1.0e21, "small": 5e-7, "neg": -0.0, "int": 9007199254740993u64}),
        serde_json::json!({"\u{10000}": 1, "\u{ffff}": 2, "é": 3, "e": 4}),
        serde_json::json!({"big": "x".repeat(200_000)}),
    ];
    let write = |durability| {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), config(durability, 16)).unwrap();
        for v in &values {
            log.append(v.clone()).unwrap();
            log.flush().unwrap();
        }
        log.close().unwrap();
        assert_eq!(
            verify(dir.path(), &VerifyOptions::default())
                .unwrap()
                .records,
            values.len() as u64
        );
        let bytes = std::fs::read(common::segment(dir.path(), 0)).unwrap();
        (dir, bytes)
    };
    let (_a, by_appenders) = write(Durability::Sync);
    let (_b, by_writer) = write(Durability::Batched);
    assert_eq!(by_appenders, by_writer);
}

#[test]
fn batched_fsyncs_on_its_interval_but_writes_at_once_and_signs_only_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        // Far longer than the test: only a flush or a tree head can fsync.
        fsync_interval: Duration::from_secs(3600),
        sth_every_records: 7,
        ..config(Durability::Batched, 16)
    };
    let log = AuditLog::open(dir.path(), cfg).unwrap();
    for i in 0..5 {
        log.append(rec(i)).unwrap();
    }
    // Written to the segment (a crash of the process loses nothing) ...
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while records(dir.path(), 0).unwrap().count() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "records never written"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // ... but not fsynced: no tree head is due and the interval is far off.
    assert_eq!(log.durable_len(), 0);
    assert!(log.latest_sth().is_none());

    // A tree head covers only fsynced records: signing fsyncs first.
    for i in 5..20 {
        log.append(rec(i)).unwrap();
    }
    while log.latest_sth().map_or(0, |s| s.size) < 14 {
        assert!(std::time::Instant::now() < deadline, "no tree head signed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let sth = log.latest_sth().unwrap();
    assert!(
        log.durable_len() >= sth.size,
        "tree head of {} records signed over {} durable ones",
        sth.size,
        log.durable_len()
    );
    // A flush is a durability point whatever the interval.
    assert_eq!(log.flush().unwrap().unwrap().size, 20);
    assert_eq!(log.durable_len(), 20);
    log.close().unwrap();
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        20
    );
}
