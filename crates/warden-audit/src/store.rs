//! The on-disk format: segment files of framed records, sealed segment index
//! files, and the STH file. See `docs/audit.md` for the byte layout.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{AuditError, Violation};
use crate::keys::sync_dir;
use crate::merkle::{Hash, SubtreeSource, leaf_hash, node_hash, root_from_leaves, split_point};
use crate::sth::SignedTreeHead;

/// Sub-directory of the data directory holding the log.
pub(crate) const AUDIT_DIR: &str = "audit";
/// STH file name inside [`AUDIT_DIR`].
pub(crate) const STH_FILE: &str = "sth.jsonl";
/// Writer lock file name inside [`AUDIT_DIR`].
pub(crate) const LOCK_FILE: &str = "LOCK";

const SEG_MAGIC: &[u8; 8] = b"WDNAUDSG";
const IDX_MAGIC: &[u8; 8] = b"WDNAUDIX";
const FORMAT_VERSION: u16 = 1;
pub(crate) const SEG_HEADER_LEN: u64 = 32;
pub(crate) const FRAME_HEADER_LEN: usize = 16;
const IDX_HEADER_LEN: u64 = 24;
const IDX_TRAILER_LEN: u64 = 40;
/// Largest canonical record accepted (16 MiB).
pub(crate) const MAX_RECORD_LEN: usize = 16 << 20;

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

pub(crate) fn encode_segment_header(bits: u32, base: u64) -> [u8; SEG_HEADER_LEN as usize] {
    let mut h = [0u8; SEG_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEG_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10] = u8::try_from(bits).unwrap_or(0);
    h[16..24].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Returns `(segment_bits, base_index)`.
pub(crate) fn decode_segment_header(h: &[u8]) -> Result<(u32, u64), String> {
    if h.len() < SEG_HEADER_LEN as usize {
        return Err("header too short".into());
    }
    if &h[..8] != SEG_MAGIC {
        return Err("bad magic".into());
    }
    if le_u32(&h[28..32]) != crc32c::crc32c(&h[..28]) {
        return Err("header checksum mismatch".into());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let bits = u32::from(h[10]);
    if !(1..=32).contains(&bits) {
        return Err(format!("invalid segment size 2^{bits}"));
    }
    Ok((bits, le_u64(&h[16..24])))
}

/// Checksum of a frame: CRC-32C over the sequence number then the payload.
pub(crate) fn frame_crc(index: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&index.to_le_bytes()), payload)
}

/// Fills in the 16-byte frame header at `buf[start..start + 16]` for the
/// payload that follows it.
pub(crate) fn seal_frame(buf: &mut [u8], start: usize, index: u64) {
    let payload_len = buf.len() - start - FRAME_HEADER_LEN;
    let (head, payload) = buf[start..].split_at_mut(FRAME_HEADER_LEN);
    let len = u32::try_from(payload_len).unwrap_or(u32::MAX);
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..8].copy_from_slice(&frame_crc(index, payload).to_le_bytes());
    head[8..16].copy_from_slice(&index.to_le_bytes());
}

/// One step of a frame scan.
#[derive(Debug)]
pub(crate) enum Scan {
    /// A well-formed frame; its payload is in the caller's buffer.
    Frame {
        /// Byte offset of the frame.
        offset: u64,
        /// Sequence number stored in the frame.
        index: u64,
    },
    /// Clean end of the data.
    End,
    /// The frame at `offset` is unreadable. `incomplete` is true when it
    /// simply runs past the end of the file (a torn append).
    Bad {
        offset: u64,
        reason: String,
        incomplete: bool,
    },
}

/// Sequential reader of the frames of one segment, up to the length the file
/// had when the scanner was opened (a concurrent writer may append more).
pub(crate) struct FrameScanner {
    reader: BufReader<File>,
    pos: u64,
    end: u64,
    pub(crate) path: PathBuf,
}

impl FrameScanner {
    /// Opens a segment, checks its header and returns `(scanner, bits, base)`.
    pub(crate) fn open(path: &Path) -> Result<(Self, u32, u64), AuditError> {
        let file = File::open(path).map_err(AuditError::io("open", path))?;
        let end = file.metadata().map_err(AuditError::io("stat", path))?.len();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut header = [0u8; SEG_HEADER_LEN as usize];
        let invalid = |reason: String| {
            AuditError::Integrity(Violation::SegmentInvalid {
                segment: path.to_path_buf(),
                reason,
            })
        };
        if end < SEG_HEADER_LEN {
            return Err(invalid("shorter than its header".into()));
        }
        reader
            .read_exact(&mut header)
            .map_err(AuditError::io("read", path))?;
        let (bits, base) = decode_segment_header(&header).map_err(invalid)?;
        Ok((
            Self {
                reader,
                pos: SEG_HEADER_LEN,
                end,
                path: path.to_path_buf(),
            },
            bits,
            base,
        ))
    }

    /// Offset of the next frame.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Reads the next frame's payload into `buf`.
    pub(crate) fn next(&mut self, buf: &mut Vec<u8>) -> Result<Scan, AuditError> {
        let offset = self.pos;
        if offset == self.end {
            return Ok(Scan::End);
        }
        let bad = |reason: &str, incomplete: bool| {
            Ok(Scan::Bad {
                offset,
                reason: reason.to_owned(),
                incomplete,
            })
        };
        if self.end - offset < FRAME_HEADER_LEN as u64 {
            return bad("incomplete frame header", true);
        }
        let mut head = [0u8; FRAME_HEADER_LEN];
        self.reader
            .read_exact(&mut head)
            .map_err(AuditError::io("read", &self.path))?;
        let len = le_u32(&head[..4]) as usize;
        let crc = le_u32(&head[4..8]);
        let index = le_u64(&head[8..16]);
        if len == 0 || len > MAX_RECORD_LEN {
            return bad(&format!("invalid frame length {len}"), false);
        }
        if self.end - offset - (FRAME_HEADER_LEN as u64) < len as u64 {
            return bad("frame runs past the end of the file", true);
        }
        buf.clear();
        buf.resize(len, 0);
        self.reader
            .read_exact(buf)
            .map_err(AuditError::io("read", &self.path))?;
        if frame_crc(index, buf) != crc {
            return bad("checksum mismatch", false);
        }
        self.pos = offset + (FRAME_HEADER_LEN + len) as u64;
        Ok(Scan::Frame { offset, index })
    }
}

/// Lists segment bases in `dir`, sorted.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, AuditError> {
    let mut bases = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bases),
        Err(e) => return Err(AuditError::io("list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(AuditError::io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() == 20
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Writes a sealed segment index atomically (temp file, fsync, rename,
/// directory fsync). Returns the segment root.
pub(crate) fn write_index(
    dir: &Path,
    bits: u32,
    base: u64,
    leaves: &[Hash],
) -> Result<Hash, AuditError> {
    let root = root_from_leaves(leaves);
    let mut out =
        Vec::with_capacity(IDX_HEADER_LEN as usize + leaves.len() * 32 + IDX_TRAILER_LEN as usize);
    out.extend_from_slice(IDX_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(u8::try_from(bits).unwrap_or(0));
    out.extend_from_slice(&[0u8; 5]);
    out.extend_from_slice(&base.to_le_bytes());
    for l in leaves {
        out.extend_from_slice(l.as_bytes());
    }
    let crc_leaves = crc32c::crc32c(&out[IDX_HEADER_LEN as usize..]);
    out.extend_from_slice(root.as_bytes());
    out.extend_from_slice(&crc_leaves.to_le_bytes());
    let trailer_crc = index_trailer_crc(&out[..IDX_HEADER_LEN as usize], &root, crc_leaves);
    out.extend_from_slice(&trailer_crc.to_le_bytes());

    let path = index_path(dir, base);
    let tmp = dir.join(format!("{base:020}.idx.tmp"));
    {
        let mut f = File::create(&tmp).map_err(AuditError::io("create", &tmp))?;
        f.write_all(&out).map_err(AuditError::io("write", &tmp))?;
        f.sync_all().map_err(AuditError::io("fsync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(AuditError::io("rename", &path))?;
    sync_dir(dir)?;
    Ok(root)
}

fn index_trailer_crc(header: &[u8], root: &Hash, crc_leaves: u32) -> u32 {
    let c = crc32c::crc32c(header);
    let c = crc32c::crc32c_append(c, root.as_bytes());
    crc32c::crc32c_append(c, &crc_leaves.to_le_bytes())
}

fn index_len(bits: u32) -> u64 {
    IDX_HEADER_LEN + (32u64 << bits) + IDX_TRAILER_LEN
}

fn check_index_header(path: &Path, header: &[u8], bits: u32, base: u64) -> Result<(), AuditError> {
    let corrupt = |reason: &str| {
        AuditError::Integrity(Violation::IndexCorrupt {
            index_file: path.to_path_buf(),
            reason: reason.to_owned(),
        })
    };
    if &header[..8] != IDX_MAGIC {
        return Err(corrupt("bad magic"));
    }
    if u16::from_le_bytes([header[8], header[9]]) != FORMAT_VERSION {
        return Err(corrupt("unsupported version"));
    }
    if u32::from(header[10]) != bits || le_u64(&header[16..24]) != base {
        return Err(corrupt("header does not match its segment"));
    }
    Ok(())
}

/// Reads just the root of a sealed segment index (`None` if the file does not
/// exist).
pub(crate) fn read_index_root(
    dir: &Path,
    bits: u32,
    base: u64,
) -> Result<Option<Hash>, AuditError> {
    let path = index_path(dir, base);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io("open", &path)(e)),
    };
    let corrupt = |reason: &str| {
        AuditError::Integrity(Violation::IndexCorrupt {
            index_file: path.clone(),
            reason: reason.to_owned(),
        })
    };
    let len = f.metadata().map_err(AuditError::io("stat", &path))?.len();
    if len != index_len(bits) {
        return Err(corrupt("wrong length"));
    }
    let mut header = [0u8; IDX_HEADER_LEN as usize];
    f.read_exact(&mut header)
        .map_err(AuditError::io("read", &path))?;
    check_index_header(&path, &header, bits, base)?;
    f.seek(SeekFrom::Start(len - IDX_TRAILER_LEN))
        .map_err(AuditError::io("seek", &path))?;
    let mut trailer = [0u8; IDX_TRAILER_LEN as usize];
    f.read_exact(&mut trailer)
        .map_err(AuditError::io("read", &path))?;
    let mut root = Hash::default();
    root.0.copy_from_slice(&trailer[..32]);
    let crc_leaves = le_u32(&trailer[32..36]);
    if le_u32(&trailer[36..40]) != index_trailer_crc(&header, &root, crc_leaves) {
        return Err(corrupt("trailer checksum mismatch"));
    }
    Ok(Some(root))
}

/// Reads all leaf hashes of a sealed segment index and checks its checksums.
pub(crate) fn read_index_leaves(
    dir: &Path,
    bits: u32,
    base: u64,
) -> Result<(Vec<Hash>, Hash), AuditError> {
    let path = index_path(dir, base);
    let data = fs::read(&path).map_err(AuditError::io("read", &path))?;
    let corrupt = |reason: &str| {
        AuditError::Integrity(Violation::IndexCorrupt {
            index_file: path.clone(),
            reason: reason.to_owned(),
        })
    };
    if data.len() as u64 != index_len(bits) {
        return Err(corrupt("wrong length"));
    }
    let header = &data[..IDX_HEADER_LEN as usize];
    check_index_header(&path, header, bits, base)?;
    let leaves_end = data.len() - IDX_TRAILER_LEN as usize;
    let leaf_bytes = &data[IDX_HEADER_LEN as usize..leaves_end];
    let trailer = &data[leaves_end..];
    let mut root = Hash::default();
    root.0.copy_from_slice(&trailer[..32]);
    let crc_leaves = le_u32(&trailer[32..36]);
    if le_u32(&trailer[36..40]) != index_trailer_crc(header, &root, crc_leaves)
        || crc32c::crc32c(leaf_bytes) != crc_leaves
    {
        return Err(corrupt("checksum mismatch"));
    }
    let leaves = leaf_bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = Hash::default();
            h.0.copy_from_slice(c);
            h
        })
        .collect();
    Ok((leaves, root))
}

/// One line of `sth.jsonl`.
pub(crate) struct SthLine {
    pub(crate) position: u64,
    pub(crate) parsed: Result<SignedTreeHead, String>,
}

/// Reads `sth.jsonl`. Returns the lines and, when the file ends with a
/// partial line (a torn append), the byte offset where it starts.
pub(crate) fn read_sth_file(dir: &Path) -> Result<(Vec<SthLine>, Option<u64>), AuditError> {
    let path = dir.join(STH_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(AuditError::io("read", &path)(e)),
    };
    let mut lines = Vec::new();
    let mut start = 0usize;
    let mut position = 0u64;
    while start < data.len() {
        let Some(nl) = data[start..].iter().position(|&b| b == b'\n') else {
            return Ok((lines, Some(start as u64)));
        };
        let line = &data[start..start + nl];
        let parsed = serde_json::from_slice::<SignedTreeHead>(line).map_err(|e| e.to_string());
        lines.push(SthLine { position, parsed });
        position += 1;
        start += nl + 1;
    }
    Ok((lines, None))
}

/// What is known about one segment after opening the log.
pub(crate) struct SegmentInfo {
    pub(crate) base: u64,
    pub(crate) count: u64,
    /// Root of a full segment (from its index file or recomputed).
    pub(crate) root: Option<Hash>,
    /// Leaf hashes, when scanned or loaded.
    pub(crate) leaves: Option<Vec<Hash>>,
    /// Whether a valid index file exists.
    pub(crate) indexed: bool,
}

/// A partial or damaged frame at the end of the last segment.
#[derive(Debug, Clone)]
pub(crate) struct TornTail {
    pub(crate) segment: PathBuf,
    pub(crate) offset: u64,
    pub(crate) index: u64,
    pub(crate) reason: String,
}

/// A read-only view of the records on disk: segment roots and (lazily) leaf
/// hashes, enough to compute any subtree hash without rescanning records of
/// sealed segments.
pub(crate) struct Snapshot {
    pub(crate) dir: PathBuf,
    pub(crate) bits: u32,
    pub(crate) segments: Vec<SegmentInfo>,
    pub(crate) size: u64,
    pub(crate) torn: Option<TornTail>,
    /// Byte offset just past the last good frame of the last segment.
    pub(crate) last_valid_len: u64,
}

impl Snapshot {
    /// Loads the log structure. Full segments with an index are not scanned;
    /// the last segment (and any full segment lacking an index) is scanned.
    /// `default_bits` applies when the log has no segment yet.
    pub(crate) fn load(dir: &Path, default_bits: u32) -> Result<Self, AuditError> {
        let bases = list_segments(dir)?;
        let mut snap = Self {
            dir: dir.to_path_buf(),
            bits: default_bits,
            segments: Vec::with_capacity(bases.len()),
            size: 0,
            torn: None,
            last_valid_len: SEG_HEADER_LEN,
        };
        let count = bases.len();
        let mut buf = Vec::new();
        for (i, base) in bases.into_iter().enumerate() {
            let path = segment_path(dir, base);
            let is_last = i + 1 == count;
            let invalid = |reason: String| {
                AuditError::Integrity(Violation::SegmentInvalid {
                    segment: path.clone(),
                    reason,
                })
            };
            let (mut scanner, bits, header_base) = FrameScanner::open(&path)?;
            if i == 0 {
                snap.bits = bits;
            } else if bits != snap.bits {
                return Err(invalid(format!(
                    "segment size 2^{bits} differs from 2^{}",
                    snap.bits
                )));
            }
            let seg_len = 1u64 << bits;
            if header_base != base {
                return Err(invalid(format!(
                    "header says it starts at record {header_base}"
                )));
            }
            let expected_base = (i as u64) << bits;
            if base != expected_base {
                return Err(invalid(format!(
                    "starts at record {base}, expected {expected_base} (a segment is missing)"
                )));
            }
            if !is_last && let Some(root) = read_index_root(dir, bits, base)? {
                snap.segments.push(SegmentInfo {
                    base,
                    count: seg_len,
                    root: Some(root),
                    leaves: None,
                    indexed: true,
                });
                continue;
            }
            let indexed = is_last && index_path(dir, base).exists();
            let mut leaves = Vec::new();
            loop {
                match scanner.next(&mut buf)? {
                    Scan::Frame { offset, index } => {
                        let expected = base + leaves.len() as u64;
                        if index != expected {
                            return Err(AuditError::Integrity(Violation::RecordOutOfSequence {
                                index: expected,
                                found: index,
                            }));
                        }
                        if leaves.len() as u64 == seg_len {
                            return Err(AuditError::Integrity(Violation::RecordCorrupt {
                                index: expected,
                                segment: path.clone(),
                                offset,
                                reason: "segment holds more records than its size".into(),
                            }));
                        }
                        leaves.push(leaf_hash(&buf));
                    }
                    Scan::End => break,
                    Scan::Bad {
                        offset,
                        reason,
                        incomplete: _,
                    } => {
                        let index = base + leaves.len() as u64;
                        if !is_last {
                            return Err(AuditError::Integrity(Violation::RecordCorrupt {
                                index,
                                segment: path.clone(),
                                offset,
                                reason,
                            }));
                        }
                        snap.torn = Some(TornTail {
                            segment: path.clone(),
                            offset,
                            index,
                            reason,
                        });
                        break;
                    }
                }
            }
            if is_last {
                snap.last_valid_len = snap.torn.as_ref().map_or(scanner.position(), |t| t.offset);
            }
            let n = leaves.len() as u64;
            if !is_last && n != seg_len {
                return Err(AuditError::Integrity(Violation::RecordOutOfSequence {
                    index: base + n,
                    found: base + seg_len,
                }));
            }
            let root = (n == seg_len).then(|| root_from_leaves(&leaves));
            snap.segments.push(SegmentInfo {
                base,
                count: n,
                root,
                leaves: Some(leaves),
                indexed,
            });
        }
        snap.size = snap.segments.iter().map(|s| s.count).sum();
        Ok(snap)
    }

    fn seg_len(&self) -> u64 {
        1u64 << self.bits
    }

    /// Leaf hashes of segment `s`, loading its index if needed.
    pub(crate) fn segment_leaves(&mut self, s: usize) -> Result<&[Hash], AuditError> {
        let bits = self.bits;
        let dir = self.dir.clone();
        let Some(seg) = self.segments.get_mut(s) else {
            return Err(AuditError::OutOfRange(format!("no segment {s}")));
        };
        if seg.leaves.is_none() {
            let (leaves, root) = read_index_leaves(&dir, bits, seg.base)?;
            if root_from_leaves(&leaves) != root {
                return Err(AuditError::Integrity(Violation::IndexCorrupt {
                    index_file: index_path(&dir, seg.base),
                    reason: "root does not match its leaf hashes".into(),
                }));
            }
            seg.leaves = Some(leaves);
        }
        Ok(seg.leaves.as_deref().unwrap_or(&[]))
    }

    /// Leaf hash at `index`.
    pub(crate) fn leaf(&mut self, index: u64) -> Result<Hash, AuditError> {
        let s = usize::try_from(index >> self.bits).unwrap_or(usize::MAX);
        let off = usize::try_from(index & (self.seg_len() - 1)).unwrap_or(usize::MAX);
        self.segment_leaves(s)?
            .get(off)
            .copied()
            .ok_or_else(|| AuditError::OutOfRange(format!("no record {index}")))
    }

    fn segment_root(&self, s: usize) -> Result<Hash, AuditError> {
        self.segments
            .get(s)
            .and_then(|seg| seg.root)
            .ok_or_else(|| AuditError::OutOfRange(format!("segment {s} is not full")))
    }

    /// Root of a complete run of full segments `[first, first + count)`.
    fn segments_root(&self, first: usize, count: usize) -> Result<Hash, AuditError> {
        if count == 1 {
            return self.segment_root(first);
        }
        let half = count / 2;
        Ok(node_hash(
            &self.segments_root(first, half)?,
            &self.segments_root(first + half, count - half)?,
        ))
    }

    /// Root of the first `size` records.
    pub(crate) fn root_at(&mut self, size: u64) -> Result<Hash, AuditError> {
        if size == 0 {
            return Ok(crate::merkle::empty_root());
        }
        self.subtree_root(0, size)
    }
}

impl SubtreeSource for Snapshot {
    type Error = AuditError;

    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, AuditError> {
        if end > self.size || start >= end {
            return Err(AuditError::OutOfRange(format!(
                "range {start}..{end} is outside a log of {} records",
                self.size
            )));
        }
        let n = end - start;
        if n == 1 {
            return self.leaf(start);
        }
        let seg_len = self.seg_len();
        if n.is_power_of_two() && n >= seg_len && start.is_multiple_of(n) {
            let first = usize::try_from(start >> self.bits).unwrap_or(usize::MAX);
            let count = usize::try_from(n >> self.bits).unwrap_or(usize::MAX);
            return self.segments_root(first, count);
        }
        if start >> self.bits == (end - 1) >> self.bits {
            let s = usize::try_from(start >> self.bits).unwrap_or(usize::MAX);
            let lo = usize::try_from(start & (seg_len - 1)).unwrap_or(usize::MAX);
            let hi = lo + usize::try_from(n).unwrap_or(usize::MAX);
            let leaves = self.segment_leaves(s)?;
            return leaves
                .get(lo..hi)
                .map(root_from_leaves)
                .ok_or_else(|| AuditError::OutOfRange(format!("range {start}..{end}")));
        }
        let k = split_point(n);
        let left = self.subtree_root(start, start + k)?;
        let right = self.subtree_root(start + k, end)?;
        Ok(node_hash(&left, &right))
    }
}

/// Creates an empty segment atomically (temp file with header, fsync,
/// rename, directory fsync) and opens it for appending.
pub(crate) fn create_segment(dir: &Path, bits: u32, base: u64) -> Result<File, AuditError> {
    let path = segment_path(dir, base);
    let tmp = dir.join(format!("{base:020}.seg.tmp"));
    {
        let mut f = File::create(&tmp).map_err(AuditError::io("create", &tmp))?;
        f.write_all(&encode_segment_header(bits, base))
            .map_err(AuditError::io("write", &tmp))?;
        f.sync_all().map_err(AuditError::io("fsync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(AuditError::io("rename", &path))?;
    sync_dir(dir)?;
    open_append(&path)
}

pub(crate) fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(AuditError::io("open", path))
}
