//! Read-side operations on a log directory: verification, proofs, tail,
//! record iteration and export. They never modify the directory and may run
//! while a writer appends (they see the records present when they start).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{AuditError, Violation};
use crate::keys::PublicKey;
use crate::merkle::{
    ConsistencyProof, Frontier, Hash, InclusionProof, build_consistency, build_inclusion,
    leaf_hash, root_from_leaves,
};
use crate::sth::{SignedTreeHead, SthError};
use crate::store::{
    self, AUDIT_DIR, FrameScanner, Scan, Snapshot, index_path, list_segments, read_index_leaves,
    segment_path,
};

/// Options for [`verify`].
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Key to check signatures against. `None` reads `<data_dir>/audit.pub`;
    /// pin the key obtained out of band to detect a replaced key pair.
    pub public_key: Option<PublicKey>,
}

/// Outcome of a successful [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records in the log.
    pub records: u64,
    /// Root recomputed over all records.
    pub root: Hash,
    /// Signed tree heads checked.
    pub signed_tree_heads: u64,
    /// The latest STH (it covers `records - unsigned_records` records).
    pub latest_sth: Option<SignedTreeHead>,
    /// Records after the latest STH (not yet attested; a writer signs them
    /// within its STH interval, on flush, close, or when it next opens).
    pub unsigned_records: u64,
    /// An incomplete frame or STH line at the very end that no STH covers:
    /// the trace of a crash mid-append. The next writer open moves it aside.
    pub torn_tail: Option<String>,
    /// Key id the signatures were checked against.
    pub key_id: String,
}

/// The violation an STH that fails [`SignedTreeHead::verify`] at `position` is.
pub(crate) fn sth_violation(position: u64, err: SthError) -> Violation {
    match err {
        SthError::WrongKey { found, expected } => Violation::SthWrongKey {
            sth_position: position,
            key_id: found,
            expected,
        },
        SthError::MalformedSignature => Violation::SthMalformed {
            sth_position: position,
            reason: err.to_string(),
        },
        SthError::BadSignature => Violation::SthBadSignature {
            sth_position: position,
        },
    }
}

/// Reads and checks every STH: well-formed, signed by `key`, sizes never
/// decreasing. Returns `(position, sth)` pairs and whether the file ends in a
/// torn line.
fn checked_sths(
    dir: &Path,
    key: &PublicKey,
) -> Result<(Vec<(u64, SignedTreeHead)>, bool), AuditError> {
    let (lines, torn) = store::read_sth_file(dir)?;
    let mut out: Vec<(u64, SignedTreeHead)> = Vec::with_capacity(lines.len());
    for line in lines {
        let sth = line.parsed.map_err(|reason| Violation::SthMalformed {
            sth_position: line.position,
            reason,
        })?;
        sth.verify(key)
            .map_err(|e| sth_violation(line.position, e))?;
        if let Some((_, prev)) = out.last()
            && sth.size < prev.size
        {
            return Err(Violation::SthSizeDecreased {
                sth_position: line.position,
                size: sth.size,
                previous: prev.size,
            }
            .into());
        }
        out.push((line.position, sth));
    }
    Ok((out, torn.is_some()))
}

fn audit_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(AUDIT_DIR)
}

/// Verifies the whole log in `data_dir`: every STH signature, every record
/// frame and sequence number, every leaf hash against the sealed segment
/// indexes, and every STH root against the tree recomputed from the record
/// bytes (which also proves successive STHs consistent: each is a prefix of
/// the same recomputed tree).
///
/// Streams the records once; memory is O(segment size).
///
/// # Errors
/// [`AuditError::Integrity`] with the first [`Violation`] found (STH
/// problems are checked before records), or I/O / key errors.
pub fn verify(data_dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let key = match options.public_key {
        Some(k) => k,
        None => PublicKey::load(data_dir)?,
    };
    let dir = audit_dir(data_dir);
    let (sths, torn_sth) = checked_sths(&dir, &key)?;
    let max_signed = sths.last().map_or(0, |(_, s)| s.size);

    let mut frontier = Frontier::new();
    let mut next_sth = 0usize;
    let mut last_matched = 0u64;
    // Checks every STH whose size equals the current tree size.
    let check_sths = |frontier: &Frontier, next_sth: &mut usize, last_matched: &mut u64| {
        while let Some((position, sth)) = sths.get(*next_sth) {
            if sth.size != frontier.size() {
                break;
            }
            let computed = frontier.root();
            if computed != sth.root {
                return Err(AuditError::Integrity(Violation::SthRootMismatch {
                    sth_position: *position,
                    size: sth.size,
                    signed: sth.root,
                    computed,
                    first_suspect: *last_matched,
                }));
            }
            *last_matched = sth.size;
            *next_sth += 1;
        }
        Ok(())
    };
    check_sths(&frontier, &mut next_sth, &mut last_matched)?;

    let bases = list_segments(&dir)?;
    let mut torn_tail = None;
    let mut buf = Vec::new();
    let mut bits = 0u32;
    let nsegs = bases.len();
    for (i, base) in bases.into_iter().enumerate() {
        let path = segment_path(&dir, base);
        let is_last = i + 1 == nsegs;
        let (mut scanner, seg_bits, header_base) = FrameScanner::open(&path)?;
        let invalid = |reason: String| {
            AuditError::Integrity(Violation::SegmentInvalid {
                segment: path.clone(),
                reason,
            })
        };
        if i == 0 {
            bits = seg_bits;
        } else if seg_bits != bits {
            return Err(invalid(format!(
                "segment size 2^{seg_bits} differs from 2^{bits}"
            )));
        }
        if header_base != base {
            return Err(invalid(format!(
                "header says it starts at record {header_base}"
            )));
        }
        let seg_len = 1u64 << bits;
        if base != frontier.size() {
            // Either a whole segment is missing or the previous one is short.
            return Err(Violation::RecordOutOfSequence {
                index: frontier.size(),
                found: base,
            }
            .into());
        }
        let idx_file = index_path(&dir, base);
        let sealed = if idx_file.exists() {
            let (leaves, root) = read_index_leaves(&dir, bits, base)?;
            if root_from_leaves(&leaves) != root {
                return Err(Violation::IndexCorrupt {
                    index_file: idx_file.clone(),
                    reason: "root does not match its leaf hashes".into(),
                }
                .into());
            }
            Some(leaves)
        } else {
            None
        };
        let mut count = 0u64;
        loop {
            match scanner.next(&mut buf)? {
                Scan::Frame { offset, index } => {
                    let expected = frontier.size();
                    if index != expected {
                        return Err(Violation::RecordOutOfSequence {
                            index: expected,
                            found: index,
                        }
                        .into());
                    }
                    if count == seg_len {
                        return Err(Violation::RecordCorrupt {
                            index: expected,
                            segment: path.clone(),
                            offset,
                            reason: "segment holds more records than its size".into(),
                        }
                        .into());
                    }
                    let leaf = leaf_hash(&buf);
                    if let Some(leaves) = &sealed
                        && leaves.get(usize::try_from(count).unwrap_or(usize::MAX)) != Some(&leaf)
                    {
                        return Err(Violation::LeafHashMismatch {
                            index: expected,
                            index_file: idx_file.clone(),
                        }
                        .into());
                    }
                    frontier.push(leaf);
                    count += 1;
                    check_sths(&frontier, &mut next_sth, &mut last_matched)?;
                }
                Scan::End => break,
                Scan::Bad {
                    offset,
                    reason,
                    incomplete,
                } => {
                    let index = frontier.size();
                    if is_last && index >= max_signed {
                        torn_tail = Some(format!(
                            "{} at byte {offset} (record {index}): {reason}{}",
                            path.display(),
                            if incomplete {
                                ""
                            } else {
                                " (damaged last frame)"
                            }
                        ));
                        break;
                    }
                    return Err(Violation::RecordCorrupt {
                        index,
                        segment: path.clone(),
                        offset,
                        reason,
                    }
                    .into());
                }
            }
        }
        if !is_last && count != seg_len {
            // The next segment's first record will not follow this one.
            continue;
        }
    }
    if let Some((position, sth)) = sths.get(next_sth) {
        return Err(Violation::Truncated {
            records: frontier.size(),
            sth_position: *position,
            sth_size: sth.size,
        }
        .into());
    }
    if torn_sth && torn_tail.is_none() {
        torn_tail = Some(format!(
            "{} ends with a partial line",
            dir.join(store::STH_FILE).display()
        ));
    }
    let records = frontier.size();
    let latest_sth = sths.last().map(|(_, s)| s.clone());
    Ok(VerifyReport {
        records,
        root: frontier.root(),
        signed_tree_heads: sths.len() as u64,
        unsigned_records: records - latest_sth.as_ref().map_or(0, |s| s.size),
        latest_sth,
        torn_tail,
        key_id: key.key_id(),
    })
}

/// A record as stored: its index, its leaf hash and its canonical JSON bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Zero-based position in the log.
    pub index: u64,
    /// RFC 6962 leaf hash of `bytes`.
    pub leaf_hash: Hash,
    /// The RFC 8785 canonical JSON the record was logged as.
    pub bytes: Vec<u8>,
}

impl StoredRecord {
    /// The record as a JSON value.
    ///
    /// # Errors
    /// When the stored bytes are not JSON (not possible for bytes written by
    /// this crate and passing their checksum).
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.bytes)
    }

    /// The record as UTF-8 text (canonical JSON is always UTF-8).
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes).unwrap_or("")
    }
}

/// Iterator over stored records, in order, from a starting index. Yields an
/// error (and then stops) on a damaged frame or a sequence break; stops
/// quietly at a torn frame at the very end.
pub struct Records {
    dir: PathBuf,
    bases: std::vec::IntoIter<u64>,
    scanner: Option<(FrameScanner, bool)>,
    from: u64,
    expected: u64,
    buf: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("dir", &self.dir)
            .field("next", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Iterator for Records {
    type Item = Result<StoredRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Records {
    fn advance(&mut self) -> Result<Option<StoredRecord>, AuditError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some((scanner, is_last)) = self.scanner.as_mut() else {
                let Some(base) = self.bases.next() else {
                    self.done = true;
                    return Ok(None);
                };
                let is_last = self.bases.len() == 0;
                let (scanner, _, _) = FrameScanner::open(&segment_path(&self.dir, base))?;
                self.expected = base;
                self.scanner = Some((scanner, is_last));
                continue;
            };
            match scanner.next(&mut self.buf)? {
                Scan::Frame { index, .. } => {
                    if index != self.expected {
                        return Err(Violation::RecordOutOfSequence {
                            index: self.expected,
                            found: index,
                        }
                        .into());
                    }
                    self.expected += 1;
                    if index < self.from {
                        continue;
                    }
                    return Ok(Some(StoredRecord {
                        index,
                        leaf_hash: leaf_hash(&self.buf),
                        bytes: self.buf.clone(),
                    }));
                }
                Scan::End => self.scanner = None,
                Scan::Bad {
                    offset,
                    reason,
                    incomplete,
                } => {
                    if *is_last && incomplete {
                        self.done = true;
                        return Ok(None);
                    }
                    return Err(Violation::RecordCorrupt {
                        index: self.expected,
                        segment: scanner.path.clone(),
                        offset,
                        reason,
                    }
                    .into());
                }
            }
        }
    }
}

/// Iterates the records of the log in `data_dir` starting at index `from`.
///
/// # Errors
/// When the directory cannot be listed.
pub fn records(data_dir: &Path, from: u64) -> Result<Records, AuditError> {
    let dir = audit_dir(data_dir);
    let mut bases = list_segments(&dir)?;
    // Skip whole segments before `from` (segment i starts at i << bits).
    if let Some(&first) = bases.first()
        && first == 0
        && bases.len() > 1
    {
        let (_, bits, _) = FrameScanner::open(&segment_path(&dir, bases[0]))?;
        let skip = usize::try_from(from >> bits).unwrap_or(usize::MAX);
        let skip = skip.min(bases.len() - 1);
        bases.drain(..skip);
    }
    Ok(Records {
        dir,
        bases: bases.into_iter(),
        scanner: None,
        from,
        expected: 0,
        buf: Vec::new(),
        done: false,
    })
}

/// Number of records in the log (reads only the last segment).
///
/// # Errors
/// I/O errors or a damaged last segment.
pub fn count(data_dir: &Path) -> Result<u64, AuditError> {
    let dir = audit_dir(data_dir);
    let bases = list_segments(&dir)?;
    let Some(&last) = bases.last() else {
        return Ok(0);
    };
    let mut n = last;
    for r in records(data_dir, last)? {
        r?;
        n += 1;
    }
    Ok(n)
}

/// The last `n` records (fewer if the log is shorter), oldest first.
///
/// # Errors
/// I/O errors or damaged frames.
pub fn tail(data_dir: &Path, n: u64) -> Result<Vec<StoredRecord>, AuditError> {
    let total = count(data_dir)?;
    records(data_dir, total.saturating_sub(n))?.collect()
}

/// A read-only view of a log for serving proofs: the records present and the
/// STHs written when it was opened. Opening costs one scan of the last
/// segment; each proof then reads at most two segment index files.
/// Signatures are checked lazily, only for the STHs a proof returns.
pub struct LogReader {
    data_dir: PathBuf,
    key: PublicKey,
    sths: Vec<(u64, SignedTreeHead)>,
    checked: Vec<bool>,
    snap: Snapshot,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("data_dir", &self.data_dir)
            .field("records", &self.snap.size)
            .field("sths", &self.sths.len())
            .finish_non_exhaustive()
    }
}

impl LogReader {
    /// Opens the log in `data_dir` with the key in `<data_dir>/audit.pub`.
    ///
    /// # Errors
    /// I/O and key errors; [`AuditError::Integrity`] for malformed STH lines
    /// or damaged segments.
    pub fn open(data_dir: &Path) -> Result<Self, AuditError> {
        Self::open_with_key(data_dir, PublicKey::load(data_dir)?)
    }

    /// Opens the log checking signatures against a pinned key.
    ///
    /// # Errors
    /// As [`LogReader::open`].
    pub fn open_with_key(data_dir: &Path, key: PublicKey) -> Result<Self, AuditError> {
        let dir = audit_dir(data_dir);
        let (lines, _) = store::read_sth_file(&dir)?;
        let mut sths = Vec::with_capacity(lines.len());
        for line in lines {
            let sth = line.parsed.map_err(|reason| Violation::SthMalformed {
                sth_position: line.position,
                reason,
            })?;
            sths.push((line.position, sth));
        }
        let snap = Snapshot::load(&dir, 16)?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            key,
            checked: vec![false; sths.len()],
            sths,
            snap,
        })
    }

    /// Number of records present.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.snap.size
    }

    /// Whether the log holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.snap.size == 0
    }

    /// The latest STH, signature checked (`None` if none was written).
    ///
    /// # Errors
    /// [`AuditError::Integrity`] when its signature does not verify or it
    /// covers more records than present.
    pub fn latest_sth(&mut self) -> Result<Option<SignedTreeHead>, AuditError> {
        match self.sths.len().checked_sub(1) {
            Some(i) => self.checked_sth(i).map(Some),
            None => Ok(None),
        }
    }

    fn checked_sth(&mut self, i: usize) -> Result<SignedTreeHead, AuditError> {
        let (position, sth) = self
            .sths
            .get(i)
            .cloned()
            .ok_or_else(|| AuditError::OutOfRange(format!("no signed tree head {i}")))?;
        if !self.checked.get(i).copied().unwrap_or(false) {
            sth.verify(&self.key)
                .map_err(|e| AuditError::Integrity(sth_violation(position, e)))?;
            if self.snap.size < sth.size {
                return Err(Violation::Truncated {
                    records: self.snap.size,
                    sth_position: position,
                    sth_size: sth.size,
                }
                .into());
            }
            let computed = self.snap.root_at(sth.size)?;
            if computed != sth.root {
                return Err(Violation::SthRootMismatch {
                    sth_position: position,
                    size: sth.size,
                    signed: sth.root,
                    computed,
                    first_suspect: 0,
                }
                .into());
            }
            if let Some(c) = self.checked.get_mut(i) {
                *c = true;
            }
        }
        Ok(sth)
    }

    /// Root of the first `size` records (`size <= len()`).
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] beyond the log.
    pub fn root_at(&mut self, size: u64) -> Result<Hash, AuditError> {
        if size > self.snap.size {
            return Err(AuditError::OutOfRange(format!(
                "size {size} is beyond the {} records present",
                self.snap.size
            )));
        }
        self.snap.root_at(size)
    }

    /// Proves that record `index` is in the tree signed by the latest STH.
    /// The proof is checked against the STH before it is returned.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] when no STH covers `index` yet;
    /// [`AuditError::Integrity`] when the data does not match the STH.
    pub fn prove_inclusion(&mut self, index: u64) -> Result<InclusionBundle, AuditError> {
        let Some(sth) = self.latest_sth()? else {
            return Err(AuditError::OutOfRange(
                "the log has no signed tree head yet".into(),
            ));
        };
        if index >= sth.size {
            return Err(AuditError::OutOfRange(format!(
                "record {index} is not covered by the latest signed tree head (size {})",
                sth.size
            )));
        }
        let mut path = Vec::new();
        build_inclusion(&mut self.snap, index, 0, sth.size, &mut path)?;
        let proof = InclusionProof {
            leaf_index: index,
            tree_size: sth.size,
            audit_path: path,
        };
        let stored = records(&self.data_dir, index)?
            .next()
            .transpose()?
            .ok_or_else(|| AuditError::OutOfRange(format!("record {index} not found")))?;
        let leaf = self.snap.leaf(index)?;
        let bits = self.snap.bits;
        if stored.leaf_hash != leaf {
            return Err(Violation::LeafHashMismatch {
                index,
                index_file: index_path(&self.snap.dir, (index >> bits) << bits),
            }
            .into());
        }
        proof.verify(&leaf, &sth.root)?;
        let record = stored.json().map_err(|e| {
            AuditError::Integrity(Violation::RecordCorrupt {
                index,
                segment: segment_path(&self.snap.dir, (index >> bits) << bits),
                offset: 0,
                reason: format!("not JSON: {e}"),
            })
        })?;
        Ok(InclusionBundle {
            index,
            record,
            leaf_hash: leaf,
            proof,
            sth,
        })
    }

    /// Proves that the first `old_size` records are a prefix of the first
    /// `new_size` records (`None`: the latest STH's size). `new_size` must be
    /// covered by the latest STH.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] for sizes out of order or not yet signed;
    /// [`AuditError::Integrity`] when the data does not match the STHs.
    pub fn prove_consistency(
        &mut self,
        old_size: u64,
        new_size: Option<u64>,
    ) -> Result<ConsistencyBundle, AuditError> {
        let signed = self.latest_sth()?.map_or(0, |s| s.size);
        let new_size = new_size.unwrap_or(signed);
        if old_size > new_size || new_size > signed {
            return Err(AuditError::OutOfRange(format!(
                "need old size {old_size} <= new size {new_size} <= latest signed size {signed}"
            )));
        }
        let old_sth = self.sth_of_size(old_size)?;
        let new_sth = self.sth_of_size(new_size)?;
        let old_root = self.snap.root_at(old_size)?;
        let new_root = self.snap.root_at(new_size)?;
        let mut path = Vec::new();
        build_consistency(&mut self.snap, old_size, 0, new_size, true, &mut path)?;
        let proof = ConsistencyProof {
            old_size,
            new_size,
            path,
        };
        proof.verify(&old_root, &new_root)?;
        Ok(ConsistencyBundle {
            proof,
            old_root,
            new_root,
            old_sth,
            new_sth,
        })
    }

    /// The newest STH of exactly `size`, checked.
    fn sth_of_size(&mut self, size: u64) -> Result<Option<SignedTreeHead>, AuditError> {
        match self.sths.iter().rposition(|(_, s)| s.size == size) {
            Some(i) => self.checked_sth(i).map(Some),
            None => Ok(None),
        }
    }
}

/// Everything a third party needs to check that a record is in the log: the
/// record, its leaf hash, the audit path and the STH it leads to.
#[derive(Clone, Debug, Serialize)]
pub struct InclusionBundle {
    /// The record's position.
    pub index: u64,
    /// The record (its canonical JSON, parsed).
    pub record: serde_json::Value,
    /// `SHA-256(0x00 || canonical record bytes)`.
    pub leaf_hash: Hash,
    /// Audit path to the root of `sth`.
    pub proof: InclusionProof,
    /// The latest signed tree head (it covers `index`).
    pub sth: SignedTreeHead,
}

/// Proves that record `index` is in the tree signed by the latest STH (see
/// [`LogReader::prove_inclusion`]; use a [`LogReader`] for many proofs).
///
/// # Errors
/// As [`LogReader::prove_inclusion`].
pub fn prove_inclusion(data_dir: &Path, index: u64) -> Result<InclusionBundle, AuditError> {
    LogReader::open(data_dir)?.prove_inclusion(index)
}

/// A consistency proof between two tree sizes, with both roots and the STHs
/// that signed exactly those sizes, when there are such.
#[derive(Clone, Debug, Serialize)]
pub struct ConsistencyBundle {
    /// The proof.
    pub proof: ConsistencyProof,
    /// Root of the first `old_size` records.
    pub old_root: Hash,
    /// Root of the first `new_size` records.
    pub new_root: Hash,
    /// An STH of size `old_size`, if one was signed.
    pub old_sth: Option<SignedTreeHead>,
    /// An STH of size `new_size`, if one was signed.
    pub new_sth: Option<SignedTreeHead>,
}

/// Proves that the first `old_size` records are a prefix of the first
/// `new_size` (see [`LogReader::prove_consistency`]).
///
/// # Errors
/// As [`LogReader::prove_consistency`].
pub fn prove_consistency(
    data_dir: &Path,
    old_size: u64,
    new_size: Option<u64>,
) -> Result<ConsistencyBundle, AuditError> {
    LogReader::open(data_dir)?.prove_consistency(old_size, new_size)
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One canonical JSON object per line:
    /// `{"index":N,"leaf_hash":"<hex>","record":{…}}`.
    JsonLines,
    /// One CloudEvents 1.0 structured-mode JSON event per line.
    CloudEvents,
}

/// Options for [`export`].
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Output format.
    pub format: ExportFormat,
    /// First record index to export.
    pub from: u64,
    /// Maximum number of records (`None`: all).
    pub limit: Option<u64>,
    /// CloudEvents `source` (`None`: `urn:warden:audit:<key_id>`).
    pub source: Option<String>,
    /// CloudEvents `type` prefix; the record's string `type` (or `kind`)
    /// member is appended (`<prefix>.<type>`, or `<prefix>.record` without
    /// one). `time` comes from the record's `time` member (RFC 3339 string or
    /// Unix ms) or `ts_ms` (Unix ms), and is omitted otherwise.
    pub type_prefix: String,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            format: ExportFormat::JsonLines,
            from: 0,
            limit: None,
            source: None,
            type_prefix: "dev.warden.audit".into(),
        }
    }
}

/// Writes records as JSON lines or CloudEvents to `out`; returns how many.
///
/// # Errors
/// I/O errors on either side, damaged records.
pub fn export(
    data_dir: &Path,
    options: &ExportOptions,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let source = match &options.source {
        Some(s) => s.clone(),
        None => match PublicKey::load(data_dir) {
            Ok(k) => format!("urn:warden:audit:{}", k.key_id()),
            Err(_) => "urn:warden:audit".into(),
        },
    };
    let limit = options.limit.unwrap_or(u64::MAX);
    let mut n = 0u64;
    let mut line = Vec::with_capacity(1024);
    let out_err = AuditError::io;
    for rec in records(data_dir, options.from)? {
        if n >= limit {
            break;
        }
        let rec = rec?;
        line.clear();
        match options.format {
            ExportFormat::JsonLines => {
                // Keys in RFC 8785 order, the record spliced in as stored: the
                // line is itself canonical JSON.
                line.extend_from_slice(b"{\"index\":");
                line.extend_from_slice(rec.index.to_string().as_bytes());
                line.extend_from_slice(b",\"leaf_hash\":\"");
                line.extend_from_slice(rec.leaf_hash.to_hex().as_bytes());
                line.extend_from_slice(b"\",\"record\":");
                line.extend_from_slice(&rec.bytes);
                line.push(b'}');
            }
            ExportFormat::CloudEvents => {
                let event = cloud_event(&rec, &source, &options.type_prefix)?;
                line.extend_from_slice(&event);
            }
        }
        line.push(b'\n');
        out.write_all(&line)
            .map_err(out_err("write export", PathBuf::from("<output>")))?;
        n += 1;
    }
    out.flush()
        .map_err(AuditError::io("flush export", PathBuf::from("<output>")))?;
    Ok(n)
}

fn cloud_event(rec: &StoredRecord, source: &str, type_prefix: &str) -> Result<Vec<u8>, AuditError> {
    let data = rec.json().map_err(|e| AuditError::Record {
        index: rec.index,
        reason: format!("stored record is not JSON: {e}"),
    })?;
    let kind = ["type", "kind"]
        .iter()
        .find_map(|k| data.get(*k).and_then(serde_json::Value::as_str))
        .filter(|k| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        })
        .unwrap_or("record");
    let time = match (data.get("time"), data.get("ts_ms")) {
        (Some(serde_json::Value::String(s)), _) => Some(s.clone()),
        (Some(serde_json::Value::Number(n)), _) | (None, Some(serde_json::Value::Number(n))) => {
            n.as_u64().map(rfc3339_from_unix_ms)
        }
        _ => None,
    };
    let mut event = serde_json::Map::new();
    event.insert("specversion".into(), "1.0".into());
    event.insert("id".into(), rec.index.to_string().into());
    event.insert("source".into(), source.into());
    event.insert("type".into(), format!("{type_prefix}.{kind}").into());
    if let Some(t) = time {
        event.insert("time".into(), t.into());
    }
    event.insert("datacontenttype".into(), "application/json".into());
    event.insert("auditindex".into(), rec.index.into());
    event.insert("auditleafhash".into(), rec.leaf_hash.to_hex().into());
    event.insert("data".into(), data);
    serde_json_canonicalizer::to_vec(&event).map_err(|e| AuditError::Record {
        index: rec.index,
        reason: e.to_string(),
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time in milliseconds.
pub(crate) fn rfc3339_from_unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_from_unix_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_unix_ms(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_from_unix_ms(1_777_000_000_000),
            "2026-04-24T03:06:40.000Z"
        );
    }
}
