//! Tampering with the files on disk is detected by `verify`, with the exact
//! position, and the writer refuses to extend a tampered log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{build_log, fix_frame_crc, frames, segment, sth_lines, write_sth_lines};
use warden_audit::{
    AuditConfig, AuditError, AuditLog, PublicKey, VerifyOptions, Violation, verify,
};

/// 40 records, 16 per segment (segments 0 and 1 sealed, 2 active with
/// records 32..40), STHs at 10, 20, 30, 40 (positions 0..=3).
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 40, 4, 10);
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!((report.records, report.signed_tree_heads), (40, 4));
    dir
}

fn violation(dir: &Path) -> Violation {
    let err = verify(dir, &VerifyOptions::default()).unwrap_err();
    // Every integrity error renders a message naming its position.
    let msg = err.to_string();
    assert!(msg.starts_with("integrity violation"), "{msg}");
    match err {
        AuditError::Integrity(v) => v,
        other => panic!("expected an integrity violation, got {other}"),
    }
}

/// Frame `i` of the segment based at `base`: (offset, length).
fn frame(dir: &Path, base: u64, i: u64) -> (usize, usize) {
    frames(&segment(dir, base))[usize::try_from(i - base).unwrap()]
}

fn edit_segment(dir: &Path, base: u64, f: impl FnOnce(&mut Vec<u8>)) {
    let path = segment(dir, base);
    let mut data = std::fs::read(&path).unwrap();
    f(&mut data);
    std::fs::write(&path, data).unwrap();
}

#[test]
fn flipped_byte_in_an_active_segment_record() {
    let dir = fixture();
    let (off, _) = frame(dir.path(), 32, 35);
    edit_segment(dir.path(), 32, |d| d[off + 16 + 12] ^= 0x01);
    let v = violation(dir.path());
    assert!(
        matches!(v, Violation::RecordCorrupt { index: 35, .. }),
        "{v}"
    );
    assert_eq!(v.first_bad_record(), Some(35));
    assert!(v.to_string().contains("record 35"), "{v}");
}

#[test]
fn flipped_byte_in_a_sealed_segment_record() {
    let dir = fixture();
    let (off, len) = frame(dir.path(), 0, 5);
    edit_segment(dir.path(), 0, |d| d[off + len - 3] ^= 0x40);
    let v = violation(dir.path());
    assert!(
        matches!(v, Violation::RecordCorrupt { index: 5, .. }),
        "{v}"
    );
}

#[test]
fn flipped_byte_in_a_frame_length() {
    let dir = fixture();
    let (off, _) = frame(dir.path(), 16, 20);
    edit_segment(dir.path(), 16, |d| d[off + 2] ^= 0x10);
    let v = violation(dir.path());
    assert_eq!(v.first_bad_record(), Some(20), "{v}");
}

#[test]
fn deleted_record() {
    let dir = fixture();
    let (off, len) = frame(dir.path(), 32, 35);
    edit_segment(dir.path(), 32, |d| {
        d.drain(off..off + len);
    });
    let v = violation(dir.path());
    assert_eq!(
        v,
        Violation::RecordOutOfSequence {
            index: 35,
            found: 36
        }
    );
    assert!(v.to_string().contains("position 35"), "{v}");

    let dir = fixture();
    let (off, len) = frame(dir.path(), 0, 5);
    edit_segment(dir.path(), 0, |d| {
        d.drain(off..off + len);
    });
    assert_eq!(
        violation(dir.path()),
        Violation::RecordOutOfSequence { index: 5, found: 6 }
    );
}

#[test]
fn two_records_swapped() {
    let dir = fixture();
    let (a, alen) = frame(dir.path(), 32, 33);
    let (b, blen) = frame(dir.path(), 32, 34);
    assert_eq!(a + alen, b);
    edit_segment(dir.path(), 32, |d| {
        let first = d[a..a + alen].to_vec();
        let second = d[b..b + blen].to_vec();
        d.splice(a..b + blen, second.into_iter().chain(first));
    });
    assert_eq!(
        violation(dir.path()),
        Violation::RecordOutOfSequence {
            index: 33,
            found: 34
        }
    );
}

#[test]
fn truncated_tail() {
    // Cut at a frame boundary: records 37.. are gone but STH 3 covers 40.
    let dir = fixture();
    let (off, _) = frame(dir.path(), 32, 37);
    edit_segment(dir.path(), 32, |d| d.truncate(off));
    let v = violation(dir.path());
    assert_eq!(
        v,
        Violation::Truncated {
            records: 37,
            sth_position: 3,
            sth_size: 40
        }
    );
    assert_eq!(v.first_bad_record(), Some(37));

    // Cut inside a frame: the partial frame is covered by an STH, so it is
    // corruption, not a crash trace.
    let dir = fixture();
    let (off, _) = frame(dir.path(), 32, 37);
    edit_segment(dir.path(), 32, |d| d.truncate(off + 20));
    assert_eq!(violation(dir.path()).first_bad_record(), Some(37));

    // The whole last segment removed.
    let dir = fixture();
    std::fs::remove_file(segment(dir.path(), 32)).unwrap();
    assert_eq!(
        violation(dir.path()),
        Violation::Truncated {
            records: 32,
            sth_position: 3,
            sth_size: 40
        }
    );
}

#[test]
fn missing_middle_segment() {
    let dir = fixture();
    std::fs::remove_file(segment(dir.path(), 16)).unwrap();
    assert_eq!(
        violation(dir.path()),
        Violation::RecordOutOfSequence {
            index: 16,
            found: 32
        }
    );
}

#[test]
fn forged_sth_with_another_key() {
    let dir = fixture();
    let other = tempfile::tempdir().unwrap();
    build_log(other.path(), 50, 4, 0);
    let foreign = sth_lines(other.path()).pop().unwrap();

    // Appended as is: it names another key.
    let mut lines = sth_lines(dir.path());
    lines.push(foreign.clone());
    write_sth_lines(dir.path(), &lines);
    let v = violation(dir.path());
    assert!(
        matches!(
            v,
            Violation::SthWrongKey {
                sth_position: 4,
                ..
            }
        ),
        "{v}"
    );
    assert_eq!(v.sth_position(), Some(4));

    // Claiming our key id: the signature does not verify.
    let ours: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(&foreign).unwrap();
    forged["key_id"] = ours["key_id"].clone();
    let mut lines = sth_lines(dir.path());
    lines.truncate(4);
    lines[2] = serde_json::to_string(&forged).unwrap();
    write_sth_lines(dir.path(), &lines);
    assert_eq!(
        violation(dir.path()),
        Violation::SthBadSignature { sth_position: 2 }
    );
}

#[test]
fn altered_sth_root_or_size() {
    let dir = fixture();
    let mut lines = sth_lines(dir.path());
    let mut sth: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    sth["root"] = serde_json::Value::String("00".repeat(32));
    lines[1] = serde_json::to_string(&sth).unwrap();
    write_sth_lines(dir.path(), &lines);
    assert_eq!(
        violation(dir.path()),
        Violation::SthBadSignature { sth_position: 1 }
    );

    let dir = fixture();
    let mut lines = sth_lines(dir.path());
    let mut sth: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    sth["size"] = 25.into();
    lines[2] = serde_json::to_string(&sth).unwrap();
    write_sth_lines(dir.path(), &lines);
    assert_eq!(
        violation(dir.path()),
        Violation::SthBadSignature { sth_position: 2 }
    );

    let dir = fixture();
    let mut lines = sth_lines(dir.path());
    lines[0] = "{not json".into();
    write_sth_lines(dir.path(), &lines);
    assert!(matches!(
        violation(dir.path()),
        Violation::SthMalformed {
            sth_position: 0,
            ..
        }
    ));
}

#[test]
fn reordered_sths() {
    let dir = fixture();
    let mut lines = sth_lines(dir.path());
    lines.swap(1, 2);
    write_sth_lines(dir.path(), &lines);
    assert_eq!(
        violation(dir.path()),
        Violation::SthSizeDecreased {
            sth_position: 2,
            size: 20,
            previous: 30
        }
    );
}

/// An attacker who also fixes the frame checksum: in the active segment only
/// the STH root catches it, bounding the position by the STH spacing.
#[test]
fn consistent_rewrite_in_the_active_segment() {
    let dir = fixture();
    let (off, len) = frame(dir.path(), 32, 35);
    edit_segment(dir.path(), 32, |d| {
        let payload = &mut d[off + 16..off + len];
        let text = std::str::from_utf8(payload)
            .unwrap()
            .replace("decision", "decisioN");
        payload.copy_from_slice(text.as_bytes());
        fix_frame_crc(d, off);
    });
    let v = violation(dir.path());
    assert!(
        matches!(
            v,
            Violation::SthRootMismatch {
                sth_position: 3,
                size: 40,
                first_suspect: 30,
                ..
            }
        ),
        "{v}"
    );
    assert_eq!(v.first_bad_record(), Some(30));
}

/// In a sealed segment the index file pins every leaf hash: exact position.
#[test]
fn consistent_rewrite_in_a_sealed_segment() {
    let dir = fixture();
    let (off, len) = frame(dir.path(), 16, 21);
    edit_segment(dir.path(), 16, |d| {
        let payload = &mut d[off + 16..off + len];
        let text = std::str::from_utf8(payload)
            .unwrap()
            .replace("decision", "decisioN");
        payload.copy_from_slice(text.as_bytes());
        fix_frame_crc(d, off);
    });
    let v = violation(dir.path());
    assert!(
        matches!(v, Violation::LeafHashMismatch { index: 21, .. }),
        "{v}"
    );
}

#[test]
fn pinned_key_detects_a_replaced_key_pair() {
    let dir = fixture();
    let other = tempfile::tempdir().unwrap();
    build_log(other.path(), 1, 4, 0);
    let pinned = PublicKey::load(other.path()).unwrap();
    let err = verify(
        dir.path(),
        &VerifyOptions {
            public_key: Some(pinned),
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err.violation(),
            Some(Violation::SthWrongKey {
                sth_position: 0,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn writer_refuses_to_extend_a_tampered_log() {
    let dir = fixture();
    let (off, _) = frame(dir.path(), 32, 37);
    edit_segment(dir.path(), 32, |d| d.truncate(off));
    let err = AuditLog::<common::Rec>::open(dir.path(), AuditConfig::default()).unwrap_err();
    assert!(
        matches!(
            err.violation(),
            Some(Violation::Truncated { records: 37, .. })
        ),
        "{err}"
    );

    let dir = fixture();
    let mut lines = sth_lines(dir.path());
    let mut sth: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    sth["root"] = serde_json::Value::String("11".repeat(32));
    lines[3] = serde_json::to_string(&sth).unwrap();
    write_sth_lines(dir.path(), &lines);
    let err = AuditLog::<common::Rec>::open(dir.path(), AuditConfig::default()).unwrap_err();
    assert!(
        matches!(
            err.violation(),
            Some(Violation::SthBadSignature { sth_position: 3 })
        ),
        "{err}"
    );

    let dir = fixture();
    let (off, len) = frame(dir.path(), 32, 38);
    edit_segment(dir.path(), 32, |d| {
        let payload = &mut d[off + 16..off + len];
        let text = std::str::from_utf8(payload)
            .unwrap()
            .replace("decision", "decisioN");
        payload.copy_from_slice(text.as_bytes());
        fix_frame_crc(d, off);
    });
    let err = AuditLog::<common::Rec>::open(dir.path(), AuditConfig::default()).unwrap_err();
    assert!(
        matches!(
            err.violation(),
            Some(Violation::SthRootMismatch { size: 40, .. })
        ),
        "{err}"
    );
}
