//! The PostgreSQL store against the local server (DESIGN.md §4):
//! `postgres://root@127.0.0.1:5432/test`, or `WARDEN_TEST_PG_URL`. Every test
//! works in a fresh schema with a random name and drops it at the end.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Rec, rec};
use warden_audit::merkle::{inclusion_proof, leaf_hash, root_from_leaves};
use warden_audit::pg::{
    PgAuditLog, execute_sql, pg_prove_consistency, pg_prove_inclusion, pg_verify,
};
use warden_audit::{
    AuditConfig, AuditError, Durability, PublicKey, Violation, to_canonical_json,
    verify_consistency, verify_inclusion,
};

fn url() -> String {
    std::env::var("WARDEN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// A fresh schema (dropped on drop) and a key directory per writer.
struct Fixture {
    schema: String,
    keys: Vec<tempfile::TempDir>,
}

impl Fixture {
    fn new(writers: usize) -> Self {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).unwrap();
        let schema = format!("warden_test_{}_{}", std::process::id(), hex::encode(random));
        Self {
            schema,
            keys: (0..writers).map(|_| tempfile::tempdir().unwrap()).collect(),
        }
    }

    fn open(&self, writer: usize, config: AuditConfig) -> PgAuditLog<Rec> {
        PgAuditLog::open(&url(), &self.schema, self.keys[writer].path(), config).unwrap()
    }

    fn public_key(&self, writer: usize) -> PublicKey {
        PublicKey::load(self.keys[writer].path()).unwrap()
    }

    /// Runs SQL as an attacker with owner rights: the append-only triggers
    /// are bypassed (`session_replication_role = replica`).
    fn tamper(&self, sql: &str) -> u64 {
        let sql = sql.replace("S.", &format!("\"{}\".", self.schema));
        execute_sql(
            &url(),
            &format!("SET session_replication_role = replica; {sql}"),
        )
        .unwrap()
    }

    fn verify(&self) -> Result<warden_audit::pg::PgVerifyReport, AuditError> {
        pg_verify(&url(), &self.schema, None)
    }

    fn violation(&self) -> Violation {
        match self.verify() {
            Err(AuditError::Integrity(v)) => {
                assert!(!v.to_string().is_empty());
                v
            }
            other => panic!("expected an integrity violation, got {other:?}"),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = execute_sql(
            &url(),
            &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema),
        );
    }
}

fn sync_config() -> AuditConfig {
    AuditConfig {
        durability: Durability::Sync,
        sth_every_records: 0,
        sth_interval: Duration::ZERO,
        ..AuditConfig::default()
    }
}

fn canonical(r: &Rec) -> Vec<u8> {
    let mut out = Vec::new();
    to_canonical_json(r, &mut out).unwrap();
    out
}

/// 35 records appended one by one (Sync), an STH every 10 records, then a
/// flush: STHs at sizes 10, 20, 30, 35 (positions 0..=3).
fn fixture() -> Fixture {
    let f = Fixture::new(1);
    let log = f.open(
        0,
        AuditConfig {
            sth_every_records: 10,
            ..sync_config()
        },
    );
    for n in 0..35 {
        assert_eq!(log.append(rec(n)).unwrap(), n);
    }
    assert_eq!(log.flush().unwrap().unwrap().size, 35);
    log.close().unwrap();
    let report = f.verify().unwrap();
    assert_eq!((report.records, report.signed_tree_heads), (35, 4));
    f
}

#[test]
fn round_trip_verify_and_reopen() {
    let f = Fixture::new(1);
    let log = f.open(0, sync_config());
    for n in 0..100 {
        assert_eq!(log.append(rec(n)).unwrap(), n);
    }
    assert_eq!(log.committed(), 100);
    let sth = log.flush().unwrap().unwrap();
    assert_eq!(sth.size, 100);
    sth.verify(&log.public_key()).unwrap();
    assert_eq!(log.latest_sth(), Some(sth.clone()));
    // Flushing again signs nothing new.
    assert_eq!(log.flush().unwrap(), Some(sth.clone()));
    log.close().unwrap();

    // The exact canonical bytes were stored: the recomputed root matches.
    let leaves: Vec<_> = (0..100).map(|n| leaf_hash(&canonical(&rec(n)))).collect();
    let report = f.verify().unwrap();
    assert_eq!(report.records, 100);
    assert_eq!(report.root, root_from_leaves(&leaves));
    assert_eq!(report.signed_tree_heads, 1);
    assert_eq!(report.unsigned_records, 0);
    assert_eq!(report.latest_sth, Some(sth.clone()));
    assert_eq!(report.signing_keys, vec![f.public_key(0).key_id()]);
    let pinned = [f.public_key(0)];
    assert_eq!(pg_verify(&url(), &f.schema, Some(&pinned)).unwrap(), report);

    // Reopening continues the same log with the same key.
    let log = f.open(0, sync_config());
    assert_eq!(log.latest_sth(), Some(sth));
    assert_eq!(log.append(rec(100)).unwrap(), 100);
    log.close().unwrap();
    let report = f.verify().unwrap();
    assert_eq!((report.records, report.signed_tree_heads), (101, 2));
    assert_eq!(report.signing_keys.len(), 1);
}

#[test]
fn batched_submit_back_pressure_and_flush() {
    let f = Fixture::new(1);
    let log = Arc::new(f.open(
        0,
        AuditConfig {
            durability: Durability::Batched,
            queue_capacity: 8,
            sth_every_records: 500,
            sth_interval: Duration::from_millis(50),
            ..AuditConfig::default()
        },
    ));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for n in 0..500 {
                    log.submit(rec(t * 1000 + n)).unwrap();
                }
                // `append` in batched mode still learns the index.
                log.append(rec(t * 1000 + 999)).unwrap()
            })
        })
        .collect();
    let mut indexes: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let sth = log.flush().unwrap().unwrap();
    assert_eq!(sth.size, 2004);
    assert_eq!(log.committed(), 2004);
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 4);
    assert!(indexes.iter().all(|i| *i < 2004));
    let log = Arc::into_inner(log).unwrap();
    log.close().unwrap();
    let report = f.verify().unwrap();
    assert_eq!(report.records, 2004);
    assert_eq!(report.unsigned_records, 0);
    assert!(report.signed_tree_heads >= 4, "{report:?}");
}

#[test]
fn sync_appends_are_committed_when_they_return() {
    let f = Fixture::new(1);
    let log = Arc::new(f.open(0, sync_config()));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..50)
                    .map(|n| log.append(rec(t * 100 + n)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for t in threads {
        for i in t.join().unwrap() {
            assert!(all.insert(i));
        }
    }
    assert_eq!(all, (0..400).collect());
    // Committed before any flush: a reader sees them (unsigned).
    let report = f.verify().unwrap();
    assert_eq!(report.records, 400);
    assert_eq!(report.signed_tree_heads, 0);
    assert_eq!(report.unsigned_records, 400);
    Arc::into_inner(log).unwrap().close().unwrap();
    assert_eq!(f.verify().unwrap().unsigned_records, 0);
}

#[test]
fn idle_writer_signs_its_records_within_the_interval() {
    let f = Fixture::new(1);
    let log = f.open(
        0,
        AuditConfig {
            sth_interval: Duration::from_millis(100),
            ..sync_config()
        },
    );
    for n in 0..3 {
        log.append(rec(n)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.verify().unwrap().unsigned_records > 0 {
        assert!(Instant::now() < deadline, "records never signed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = f.verify().unwrap();
    assert_eq!((report.records, report.signed_tree_heads), (3, 1));
    assert_eq!(log.latest_sth().map(|s| s.size), Some(3));
    log.close().unwrap();
    // Nothing new to sign on close.
    assert_eq!(f.verify().unwrap().signed_tree_heads, 1);
}

#[test]
fn two_writers_with_two_keys_share_one_log() {
    let f = Fixture::new(2);
    // Both open (and race to create the tables) at the same time.
    let opened: Vec<_> = (0..2)
        .map(|w| {
            let schema = f.schema.clone();
            let dir = f.keys[w].path().to_path_buf();
            std::thread::spawn(move || {
                let config = AuditConfig {
                    durability: if w == 0 {
                        Durability::Sync
                    } else {
                        Durability::Batched
                    },
                    sth_every_records: 300,
                    sth_interval: Duration::from_millis(20),
                    ..AuditConfig::default()
                };
                Arc::new(PgAuditLog::<Rec>::open(&url(), &schema, &dir, config).unwrap())
            })
        })
        .collect();
    let logs: Vec<_> = opened.into_iter().map(|t| t.join().unwrap()).collect();
    assert_ne!(logs[0].public_key(), logs[1].public_key());

    let mut threads = Vec::new();
    for (w, log) in logs.iter().enumerate() {
        for t in 0..4u32 {
            let log = Arc::clone(log);
            threads.push(std::thread::spawn(move || {
                (0..250u64)
                    .map(|n| {
                        let mut r = rec(n);
                        r.agent = format!("writer-{w}");
                        r.thread = t;
                        (log.append(r).unwrap(), w, t, n)
                    })
                    .collect::<Vec<_>>()
            }));
        }
    }
    let mut appended = Vec::new();
    for t in threads {
        appended.extend(t.join().unwrap());
    }
    let indexes: BTreeSet<u64> = appended.iter().map(|a| a.0).collect();
    assert_eq!(appended.len(), 2000);
    assert_eq!(indexes, (0..2000).collect(), "every index exactly once");

    for log in &logs {
        let sth = log.flush().unwrap().unwrap();
        assert!(sth.size >= log.committed());
    }
    for log in logs {
        Arc::into_inner(log).unwrap().close().unwrap();
    }
    let report = f.verify().unwrap();
    assert_eq!(report.records, 2000);
    assert_eq!(report.unsigned_records, 0);
    let mut signers = report.signing_keys.clone();
    signers.sort();
    let mut expected = vec![f.public_key(0).key_id(), f.public_key(1).key_id()];
    expected.sort();
    assert_eq!(signers, expected, "both writers signed tree heads");

    // Pinning both keys passes; pinning one names the first STH by the other.
    let both = [f.public_key(0), f.public_key(1)];
    assert_eq!(pg_verify(&url(), &f.schema, Some(&both)).unwrap(), report);
    let only_first = [f.public_key(0)];
    match pg_verify(&url(), &f.schema, Some(&only_first)) {
        Err(AuditError::Integrity(Violation::SthWrongKey { key_id, .. })) => {
            assert_eq!(key_id, f.public_key(1).key_id());
        }
        other => panic!("{other:?}"),
    }

    // Each returned index holds the record its caller appended.
    for &(index, w, t, n) in appended.iter().step_by(97) {
        let bundle = pg_prove_inclusion(&url(), &f.schema, index).unwrap();
        assert_eq!(bundle.record["agent"], format!("writer-{w}"));
        assert_eq!(bundle.record["thread"], t);
        assert_eq!(bundle.record["n"], n);
    }
}

#[test]
fn inclusion_and_consistency_proofs() {
    let f = fixture();
    let leaves: Vec<_> = (0..35).map(|n| leaf_hash(&canonical(&rec(n)))).collect();
    let key = f.public_key(0);
    for index in 0..35 {
        let b = pg_prove_inclusion(&url(), &f.schema, index).unwrap();
        assert_eq!(b.index, index);
        assert_eq!(b.leaf_hash, leaves[index as usize]);
        assert_eq!(b.record, serde_json::to_value(rec(index)).unwrap());
        assert_eq!(b.sth.size, 35);
        b.sth.verify(&key).unwrap();
        assert_eq!(b.proof.audit_path, inclusion_proof(&leaves, index).unwrap());
        verify_inclusion(
            &b.leaf_hash,
            b.proof.leaf_index,
            b.proof.tree_size,
            &b.proof.audit_path,
            &b.sth.root,
        )
        .unwrap();
    }
    assert!(matches!(
        pg_prove_inclusion(&url(), &f.schema, 35),
        Err(AuditError::OutOfRange(_))
    ));

    for old in [0, 1, 7, 10, 20, 30, 35] {
        let c = pg_prove_consistency(&url(), &f.schema, old, None).unwrap();
        assert_eq!(c.new_root, root_from_leaves(&leaves));
        assert_eq!(c.old_root, root_from_leaves(&leaves[..old as usize]));
        verify_consistency(old, 35, &c.old_root, &c.new_root, &c.proof.path).unwrap();
        assert_eq!(c.old_sth.is_some(), [10, 20, 30, 35].contains(&old));
        assert_eq!(c.new_sth.as_ref().map(|s| s.size), Some(35));
    }
    let c = pg_prove_consistency(&url(), &f.schema, 10, Some(30)).unwrap();
    verify_consistency(10, 30, &c.old_root, &c.new_root, &c.proof.path).unwrap();
    assert!(matches!(
        pg_prove_consistency(&url(), &f.schema, 10, Some(36)),
        Err(AuditError::OutOfRange(_))
    ));
}

#[test]
fn tables_are_append_only() {
    let f = fixture();
    for sql in [
        "UPDATE S.records SET bytes = bytes || '\\x20'::bytea WHERE idx = 3",
        "DELETE FROM S.records WHERE idx = 34",
        "TRUNCATE S.records",
        "UPDATE S.sths SET size = size + 1",
        "DELETE FROM S.keys",
    ] {
        let sql = sql.replace("S.", &format!("\"{}\".", f.schema));
        let err = execute_sql(&url(), &sql).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    f.verify().unwrap();
}

#[test]
fn flipped_byte_is_found_at_its_record() {
    let f = fixture();
    f.tamper(
        "UPDATE S.records SET bytes = set_byte(bytes, 5, get_byte(bytes, 5) # 1) WHERE idx = 17",
    );
    match f.violation() {
        Violation::LeafHashMismatch { index, .. } => assert_eq!(index, 17),
        v => panic!("{v}"),
    }
    // Proofs for the record fail too.
    assert!(pg_prove_inclusion(&url(), &f.schema, 17).is_err());
}

#[test]
fn rewritten_record_with_fixed_leaf_hash_is_caught_by_the_next_sth() {
    let f = fixture();
    f.tamper(
        "UPDATE S.records SET bytes = set_byte(bytes, 5, get_byte(bytes, 5) # 1) WHERE idx = 17;
         UPDATE S.records SET leaf_hash = sha256('\\x00'::bytea || bytes) WHERE idx = 17",
    );
    match f.violation() {
        Violation::SthRootMismatch {
            sth_position,
            size,
            first_suspect,
            ..
        } => assert_eq!((sth_position, size, first_suspect), (1, 20, 10)),
        v => panic!("{v}"),
    }
}

#[test]
fn deleted_record_is_found_at_its_position() {
    let f = fixture();
    assert_eq!(f.tamper("DELETE FROM S.records WHERE idx = 12"), 1);
    assert_eq!(
        f.violation(),
        Violation::RecordOutOfSequence {
            index: 12,
            found: 13
        }
    );
}

#[test]
fn swapped_records_are_found() {
    // Bytes only: the stored leaf hash pins the first swapped position.
    let f = fixture();
    f.tamper(
        "UPDATE S.records r SET bytes = o.bytes FROM S.records o
         WHERE (r.idx, o.idx) IN ((25, 26), (26, 25))",
    );
    match f.violation() {
        Violation::LeafHashMismatch { index, .. } => assert_eq!(index, 25),
        v => panic!("{v}"),
    }
    drop(f);

    // Bytes and leaf hashes (a consistent reorder): the STH covering them.
    let f = fixture();
    f.tamper(
        "UPDATE S.records r SET bytes = o.bytes, leaf_hash = o.leaf_hash FROM S.records o
         WHERE (r.idx, o.idx) IN ((25, 26), (26, 25))",
    );
    match f.violation() {
        Violation::SthRootMismatch {
            sth_position,
            first_suspect,
            ..
        } => assert_eq!((sth_position, first_suspect), (2, 20)),
        v => panic!("{v}"),
    }
}

#[test]
fn forged_sth_signature_is_found() {
    let f = fixture();
    // Signature altered consistently in the column and the JSON.
    f.tamper(
        "UPDATE S.sths SET
             signature = set_byte(signature, 0, get_byte(signature, 0) # 1),
             sth_json = replace(sth_json, encode(signature, 'hex'),
                 encode(set_byte(signature, 0, get_byte(signature, 0) # 1), 'hex'))
         WHERE pos = 2",
    );
    assert_eq!(
        f.violation(),
        Violation::SthBadSignature { sth_position: 2 }
    );
    drop(f);

    // A root edited in both places keeps a signature that no longer fits.
    let f = fixture();
    f.tamper(
        "UPDATE S.sths SET
             root = sha256(root),
             sth_json = replace(sth_json, encode(root, 'hex'), encode(sha256(root), 'hex'))
         WHERE pos = 1",
    );
    assert_eq!(
        f.violation(),
        Violation::SthBadSignature { sth_position: 1 }
    );
    drop(f);

    // Columns that disagree with the signed JSON.
    let f = fixture();
    f.tamper("UPDATE S.sths SET size = 21 WHERE pos = 1");
    match f.violation() {
        Violation::SthMalformed {
            sth_position,
            reason,
        } => {
            assert_eq!(sth_position, 1);
            assert!(reason.contains("size"), "{reason}");
        }
        v => panic!("{v}"),
    }
}

#[test]
fn deleted_sth_and_unregistered_signer_are_found() {
    let f = fixture();
    f.tamper("DELETE FROM S.sths WHERE pos = 1");
    match f.violation() {
        Violation::SthMalformed {
            sth_position,
            reason,
        } => {
            assert_eq!(sth_position, 1);
            assert!(reason.contains("missing"), "{reason}");
        }
        v => panic!("{v}"),
    }
    drop(f);

    // The last STH removed: the head still counts it.
    let f = fixture();
    f.tamper("DELETE FROM S.sths WHERE pos = 3");
    match f.violation() {
        Violation::HeadMismatch { reason, .. } => assert!(reason.contains("counts 4"), "{reason}"),
        v => panic!("{v}"),
    }
    drop(f);

    let f = fixture();
    f.tamper("DELETE FROM S.keys");
    match f.violation() {
        Violation::SthWrongKey {
            sth_position,
            key_id,
            ..
        } => {
            assert_eq!(sth_position, 0);
            assert_eq!(key_id, f.public_key(0).key_id());
        }
        v => panic!("{v}"),
    }
    drop(f);

    // A key row whose id is not its key's hash.
    let f = fixture();
    f.tamper(&format!(
        "INSERT INTO S.keys (key_id, public_key) VALUES ('{}', '{}')",
        "00".repeat(32),
        f.public_key(0).to_hex()
    ));
    assert!(matches!(f.violation(), Violation::KeyInvalid { .. }));
}

#[test]
fn truncated_tail_is_found_and_writers_refuse_it() {
    let f = fixture();
    assert_eq!(f.tamper("DELETE FROM S.records WHERE idx >= 33"), 2);
    assert_eq!(
        f.violation(),
        Violation::Truncated {
            records: 33,
            sth_position: 3,
            sth_size: 35
        }
    );
    // A writer does not extend a log whose records end before its head.
    match PgAuditLog::<Rec>::open(&url(), &f.schema, f.keys[0].path(), sync_config()) {
        Err(AuditError::Integrity(Violation::HeadMismatch {
            records, head_size, ..
        })) => assert_eq!((records, head_size), (33, 35)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn removed_unsigned_records_are_found_through_the_head() {
    let f = fixture();
    let log = f.open(0, sync_config());
    for n in 35..38 {
        assert_eq!(log.append(rec(n)).unwrap(), n);
    }
    // No STH covers 35..38 yet: the writer is left running, unsigned.
    assert_eq!(f.verify().unwrap().unsigned_records, 3);
    f.tamper("DELETE FROM S.records WHERE idx >= 35");
    match f.violation() {
        Violation::HeadMismatch {
            records, head_size, ..
        } => assert_eq!((records, head_size), (35, 38)),
        v => panic!("{v}"),
    }
    // The writer now extends a head whose records are gone; its STH covers
    // them and verification reports the truncation against it.
    log.close().unwrap();
    assert!(matches!(
        f.violation(),
        Violation::Truncated {
            records: 35,
            sth_position: 4,
            sth_size: 38
        }
    ));
}

#[test]
fn writer_failure_surfaces_on_the_next_call() {
    // Sync: the append whose transaction fails reports it.
    let f = Fixture::new(1);
    let log = f.open(0, sync_config());
    assert_eq!(log.append(rec(0)).unwrap(), 0);
    execute_sql(&url(), &format!("DROP SCHEMA \"{}\" CASCADE", f.schema)).unwrap();
    let err = log.append(rec(1)).unwrap_err();
    assert!(
        matches!(&err, AuditError::WriterFailed(inner) if matches!(**inner, AuditError::Database { .. })),
        "{err}"
    );
    assert!(matches!(
        log.append(rec(2)),
        Err(AuditError::WriterFailed(_))
    ));
    assert!(matches!(log.flush(), Err(AuditError::WriterFailed(_))));
    assert!(matches!(log.close(), Err(AuditError::WriterFailed(_))));

    // Batched: the queued record is lost with its batch, and the next call
    // says so.
    let f = Fixture::new(1);
    let log = f.open(
        0,
        AuditConfig {
            durability: Durability::Batched,
            ..sync_config()
        },
    );
    log.submit(rec(0)).unwrap();
    log.flush().unwrap();
    execute_sql(&url(), &format!("DROP SCHEMA \"{}\" CASCADE", f.schema)).unwrap();
    log.submit(rec(1)).unwrap();
    assert!(matches!(log.flush(), Err(AuditError::WriterFailed(_))));
    assert!(matches!(
        log.submit(rec(2)),
        Err(AuditError::WriterFailed(_))
    ));
    assert!(matches!(log.close(), Err(AuditError::WriterFailed(_))));
}

#[derive(serde::Serialize)]
struct Measured {
    n: u64,
    x: f64,
}

#[test]
fn unserialisable_record_fails_the_writer_after_the_good_ones() {
    let f = Fixture::new(1);
    let log: PgAuditLog<Measured> =
        PgAuditLog::open(&url(), &f.schema, f.keys[0].path(), sync_config()).unwrap();
    assert_eq!(log.append(Measured { n: 0, x: 1.5 }).unwrap(), 0);
    let err = log.append(Measured { n: 1, x: f64::NAN }).unwrap_err();
    assert!(
        matches!(&err, AuditError::WriterFailed(inner) if matches!(**inner, AuditError::Record { index: 1, .. })),
        "{err}"
    );
    assert!(log.close().is_err());
    let report = f.verify().unwrap();
    assert_eq!((report.records, report.unsigned_records), (1, 0));
}

#[test]
fn bad_schema_names_and_missing_logs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "",
        "Audit",
        "a-b",
        "pg_audit",
        "x\"; DROP TABLE y; --",
        &"a".repeat(64),
    ] {
        let err = PgAuditLog::<Rec>::open(&url(), name, dir.path(), sync_config()).unwrap_err();
        assert!(matches!(err, AuditError::Database { .. }), "{name}: {err}");
    }
    let f = Fixture::new(1);
    assert!(matches!(f.verify(), Err(AuditError::Database { .. })));
    assert!(matches!(
        PgAuditLog::<Rec>::open(
            "postgres://root@127.0.0.1:1/test",
            &f.schema,
            dir.path(),
            sync_config()
        ),
        Err(AuditError::Database { .. })
    ));
}

#[test]
fn usable_from_inside_an_async_runtime() {
    let f = Fixture::new(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = f.open(0, sync_config());
        assert_eq!(log.append(rec(0)).unwrap(), 0);
        log.close().unwrap();
        assert_eq!(f.verify().unwrap().records, 1);
        assert_eq!(pg_prove_inclusion(&url(), &f.schema, 0).unwrap().index, 0);
    });
}

/// Append throughput; run with
/// `cargo test -p warden-audit --features postgres --release --test pg -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn throughput() {
    fn run(writers: usize, threads: usize, per_thread: u64, mode: Durability, submit: bool) {
        let f = Fixture::new(writers);
        let logs: Vec<_> = (0..writers)
            .map(|w| {
                Arc::new(f.open(
                    w,
                    AuditConfig {
                        durability: mode,
                        ..AuditConfig::default()
                    },
                ))
            })
            .collect();
        let start = Instant::now();
        let handles: Vec<_> = (0..writers * threads)
            .map(|i| {
                let log = Arc::clone(&logs[i % writers]);
                std::thread::spawn(move || {
                    for n in 0..per_thread {
                        if submit {
                            log.submit(rec(n)).unwrap();
                        } else {
                            log.append(rec(n)).unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for log in &logs {
            log.flush().unwrap();
        }
        let elapsed = start.elapsed();
        let total = per_thread * (writers * threads) as u64;
        for log in logs {
            Arc::into_inner(log).unwrap().close().unwrap();
        }
        let verify_start = Instant::now();
        let report = f.verify().unwrap();
        assert_eq!(report.records, total);
        println!(
            "{{\"writers\":{writers},\"threads_per_writer\":{threads},\"mode\":\"{mode:?}\",\"call\":\"{}\",\"records\":{total},\"records_per_s\":{:.0},\"verify_records_per_s\":{:.0}}}",
            if submit { "submit" } else { "append" },
            total as f64 / elapsed.as_secs_f64(),
            total as f64 / verify_start.elapsed().as_secs_f64(),
        );
    }
    for writers in [1, 2] {
        run(
            writers,
            1,
            200_000 / writers as u64,
            Durability::Batched,
            true,
        );
        run(writers, 1, 2_000, Durability::Batched, false);
        run(writers, 16, 2_000, Durability::Batched, false);
        run(writers, 1, 2_000, Durability::Sync, false);
        run(writers, 16, 1_000, Durability::Sync, false);
    }
}
