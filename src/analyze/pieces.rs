//! `--torrent` and `--extract`: checking the piece data seen in a capture against the
//! torrent's SHA-1 piece hashes (BEP 3), and writing it back into the torrent's files.
//!
//! Blocks (`piece` messages) arrive from any connection, in any order, possibly twice
//! (endgame) or with bad data. Memory stays bounded either way:
//! - **Checking only**: each piece is hashed as its bytes arrive in order; a block that comes
//!   before the ones ahead of it waits in a buffer capped at [`MAX_PENDING`] bytes over all
//!   pieces. A piece whose blocks do not fit is counted as "not checkable".
//! - **With `--extract DIR`**: every block is written straight to its place in the files
//!   (positional writes); once a piece's byte ranges are all covered, it is read back from
//!   disk and hashed. Nothing is held in memory but the covered ranges.
//!
//! A piece that fails its check may be sent again (clients re-download bad pieces); the next
//! complete copy is checked again. Paths come from [`FileEntry::relative_path`], which
//! never leaves the output directory.
//!
//! Contract: blocks with out-of-range indexes or offsets are counted and ignored; nothing
//! panics on any input.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha1::{Digest, Sha1};

use crate::metainfo::Torrent;
use crate::wire::BlockRef;

/// Out-of-order block bytes buffered over all pieces when checking without `--extract`.
pub const MAX_PENDING: usize = 16 << 20;
/// Files kept open at once while extracting.
const MAX_OPEN_FILES: usize = 64;

/// The outcome of the checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PieceReport {
    pub num_pieces: u64,
    /// Pieces whose complete data matched the hash.
    pub good: u64,
    /// Pieces that never matched, though at least one complete copy was seen.
    pub bad: u64,
    /// Pieces with some data but never all of it (or whose blocks did not fit the buffer).
    pub incomplete: u64,
    /// Pieces with no data at all in the capture.
    pub missing: u64,
    /// Complete copies that failed the check (a bad piece sent twice counts twice).
    pub failed_checks: u64,
    /// Blocks outside the torrent (index or offset out of range).
    pub ignored_blocks: u64,
    /// The first few bad pieces, by index.
    pub bad_indexes: Vec<u32>,
    /// The first few incomplete pieces, by index.
    pub incomplete_indexes: Vec<u32>,
    /// Where the files were written (`--extract`).
    pub extracted_to: Option<PathBuf>,
    /// Bytes written into the files.
    pub bytes_written: u64,
}

/// Bad and incomplete pieces listed by index (the others are counted).
pub const MAX_LISTED: usize = 50;

/// Where one piece stands.
enum Acc {
    /// Checking only: the SHA-1 of bytes `0..hashed`, and blocks that start further on.
    Stream {
        sha: Box<Sha1>,
        hashed: u64,
        pending: BTreeMap<u64, Vec<u8>>,
        pending_bytes: usize,
    },
    /// Extracting: which byte ranges of the piece are on disk.
    Disk { covered: Vec<(u64, u64)> },
    /// Blocks did not fit the buffer: this copy cannot be checked.
    Overflow,
}

/// Checks (and with `extract`, writes) the pieces of one torrent. See the [module docs](self).
pub struct PieceChecker {
    torrent: Arc<Torrent>,
    good: Vec<bool>,
    seen: Vec<bool>,
    failed: Vec<bool>,
    accs: HashMap<u32, Acc>,
    pending_total: usize,
    report: PieceReport,
    out: Option<Extractor>,
}

/// The files being written.
struct Extractor {
    dir: PathBuf,
    open: HashMap<usize, File>,
}

impl PieceChecker {
    /// A checker for `torrent`; with `extract`, files are written under that directory (it is
    /// created if needed).
    pub fn new(torrent: Arc<Torrent>, extract: Option<&Path>) -> io::Result<Self> {
        let n = torrent.info.num_pieces();
        let out = match extract {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                Some(Extractor {
                    dir: dir.to_path_buf(),
                    open: HashMap::new(),
                })
            }
            None => None,
        };
        Ok(PieceChecker {
            good: vec![false; n],
            seen: vec![false; n],
            failed: vec![false; n],
            accs: HashMap::new(),
            pending_total: 0,
            report: PieceReport {
                num_pieces: n as u64,
                extracted_to: extract.map(Path::to_path_buf),
                ..Default::default()
            },
            out,
            torrent,
        })
    }

    /// The torrent's info hash.
    pub fn info_hash(&self) -> &[u8; 20] {
        &self.torrent.info_hash
    }

    /// The info hashes that name this torrent in handshakes (see [`PieceChecker::matches`]).
    pub fn info_hashes(&self) -> Vec<[u8; 20]> {
        std::iter::once(self.torrent.info_hash)
            .chain(self.v2_name())
            .collect()
    }

    /// Whether a handshake's info hash names this torrent: its info hash, or for a hybrid
    /// torrent also the truncated v2 hash that v2 peers use (BEP 52).
    pub fn matches(&self, h: &[u8; 20]) -> bool {
        *h == self.torrent.info_hash || self.v2_name() == Some(*h)
    }

    /// The truncated v2 hash, when it is another name than the info hash (a hybrid).
    fn v2_name(&self) -> Option<[u8; 20]> {
        let v2 = self.torrent.info.v2.as_ref()?.truncated_hash();
        (v2 != self.torrent.info_hash).then_some(v2)
    }

    /// Whether a whole block lies inside the torrent (a known piece, inside its length): the
    /// analyzer feeds the checker a block's data in parts only when it does.
    pub fn fits(&self, b: BlockRef) -> bool {
        let end = u64::from(b.begin) + u64::from(b.length);
        b.length > 0
            && self
                .torrent
                .info
                .piece_len(b.index as usize)
                .is_some_and(|plen| end <= plen)
    }

    /// Counts a block that does not fit the torrent (see [`fits`](Self::fits)).
    pub fn ignore(&mut self) {
        self.report.ignored_blocks += 1;
    }

    /// A block of piece `index` at offset `begin`. I/O errors come from `--extract`.
    pub fn block(&mut self, index: u32, begin: u32, data: &[u8]) -> io::Result<()> {
        let info = &self.torrent.info;
        let Some(plen) = info.piece_len(index as usize) else {
            self.report.ignored_blocks += 1;
            return Ok(());
        };
        let (begin, end) = (u64::from(begin), u64::from(begin) + data.len() as u64);
        if end > plen || data.is_empty() {
            self.report.ignored_blocks += 1;
            return Ok(());
        }
        let i = index as usize;
        self.seen[i] = true;
        if self.good[i] {
            return Ok(()); // already checked good: a duplicate
        }
        let piece_start = index as u64 * info.piece_length;
        if let Some(x) = &mut self.out {
            x.write(&self.torrent, piece_start + begin, data)?;
            self.report.bytes_written += data.len() as u64;
        }
        let disk = self.out.is_some();
        let acc = self.accs.entry(index).or_insert_with(|| {
            if disk {
                Acc::Disk {
                    covered: Vec::new(),
                }
            } else {
                Acc::Stream {
                    sha: Box::new(Sha1::new()),
                    hashed: 0,
                    pending: BTreeMap::new(),
                    pending_bytes: 0,
                }
            }
        });
        let complete = match acc {
            Acc::Overflow => false,
            Acc::Disk { covered } => {
                cover(covered, begin, end);
                covered.as_slice() == [(0, plen)]
            }
            Acc::Stream {
                sha,
                hashed,
                pending,
                pending_bytes,
            } => {
                if begin > *hashed {
                    if self.pending_total + data.len() > MAX_PENDING {
                        self.pending_total -= *pending_bytes;
                        *acc = Acc::Overflow;
                        return Ok(());
                    }
                    if pending.get(&begin).is_none_or(|p| p.len() < data.len()) {
                        let old = pending.insert(begin, data.to_vec()).map_or(0, |p| p.len());
                        *pending_bytes += data.len() - old;
                        self.pending_total += data.len() - old;
                    }
                } else {
                    hash_from(sha, hashed, begin, data);
                    while let Some(e) = pending.first_entry() {
                        if *e.key() > *hashed {
                            break;
                        }
                        let at = *e.key();
                        let p = e.remove();
                        *pending_bytes -= p.len();
                        self.pending_total -= p.len();
                        hash_from(sha, hashed, at, &p);
                    }
                }
                *hashed == plen
            }
        };
        if complete {
            let ok = match self.accs.remove(&index) {
                Some(Acc::Stream {
                    sha, pending_bytes, ..
                }) => {
                    self.pending_total -= pending_bytes;
                    sha.finalize().as_slice() == info.pieces[i]
                }
                Some(Acc::Disk { .. }) => match &mut self.out {
                    Some(x) => x.hash(&self.torrent, piece_start, plen)? == info.pieces[i],
                    None => false,
                },
                _ => false,
            };
            if ok {
                self.good[i] = true;
            } else {
                self.failed[i] = true;
                self.report.failed_checks += 1;
            }
        }
        Ok(())
    }

    /// The counts; with `--extract`, sets every file to its full length (missing pieces stay
    /// zeros) and closes them.
    pub fn finish(mut self) -> io::Result<PieceReport> {
        if let Some(x) = &mut self.out {
            x.open.clear();
            for f in &self.torrent.info.files {
                if f.padding {
                    continue;
                }
                let path = x.dir.join(f.relative_path());
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)?;
                if file.metadata()?.len() != f.length {
                    file.set_len(f.length)?;
                }
            }
        }
        let r = &mut self.report;
        for i in 0..self.good.len() {
            if self.good[i] {
                r.good += 1;
            } else if self.failed[i] {
                r.bad += 1;
                if r.bad_indexes.len() < MAX_LISTED {
                    r.bad_indexes.push(i as u32);
                }
            } else if self.seen[i] {
                r.incomplete += 1;
                if r.incomplete_indexes.len() < MAX_LISTED {
                    r.incomplete_indexes.push(i as u32);
                }
            } else {
                r.missing += 1;
            }
        }
        Ok(self.report)
    }
}

/// Feeds the part of block `begin..` of `data` that is past `hashed` into the SHA-1.
fn hash_from(sha: &mut Sha1, hashed: &mut u64, begin: u64, data: &[u8]) {
    let end = begin + data.len() as u64;
    if end > *hashed {
        let skip = (*hashed - begin) as usize;
        sha.update(&data[skip..]);
        *hashed = end;
    }
}

/// Adds `start..end` to a sorted list of disjoint ranges, merging what touches.
fn cover(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    let (mut s, mut e) = (start, end);
    let mut out = Vec::with_capacity(ranges.len() + 1);
    let mut placed = false;
    for &(a, b) in ranges.iter() {
        if b < s {
            out.push((a, b));
        } else if a > e {
            if !placed {
                out.push((s, e));
                placed = true;
            }
            out.push((a, b));
        } else {
            s = s.min(a);
            e = e.max(b);
        }
    }
    if !placed {
        out.push((s, e));
    }
    *ranges = out;
}

impl Extractor {
    fn file(&mut self, t: &Torrent, idx: usize) -> io::Result<&File> {
        if !self.open.contains_key(&idx) {
            if self.open.len() >= MAX_OPEN_FILES {
                self.open.clear();
            }
            let path = self.dir.join(t.info.files[idx].relative_path());
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)?;
            self.open.insert(idx, f);
        }
        self.open
            .get(&idx)
            .ok_or_else(|| io::Error::other("file not open"))
    }

    /// Writes `data` at offset `at` of the torrent's byte space (padding files skipped).
    fn write(&mut self, t: &Torrent, at: u64, data: &[u8]) -> io::Result<()> {
        let end = at + data.len() as u64;
        for (idx, r) in t.info.file_spans(at..end) {
            if t.info.files[idx].padding {
                continue;
            }
            let from = (t.info.files[idx].offset + r.start - at) as usize;
            let len = (r.end - r.start) as usize;
            self.file(t, idx)?
                .write_all_at(&data[from..from + len], r.start)?;
        }
        Ok(())
    }

    /// The SHA-1 of `len` bytes at `at` of the torrent's byte space, read back from the files
    /// (padding files read as zeros).
    fn hash(&mut self, t: &Torrent, at: u64, len: u64) -> io::Result<[u8; 20]> {
        let mut sha = Sha1::new();
        let mut buf = vec![0u8; 64 * 1024];
        for (idx, r) in t.info.file_spans(at..at + len) {
            let mut pos = r.start;
            while pos < r.end {
                let n = ((r.end - pos) as usize).min(buf.len());
                if t.info.files[idx].padding {
                    buf[..n].fill(0);
                } else {
                    self.file(t, idx)?.read_exact_at(&mut buf[..n], pos)?;
                }
                sha.update(&buf[..n]);
                pos += n as u64;
            }
        }
        Ok(sha.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Value;

    /// A single-file torrent of `data` with `plen`-byte pieces.
    fn torrent(name: &str, data: &[u8], plen: usize) -> Arc<Torrent> {
        let pieces: Vec<u8> = data
            .chunks(plen)
            .flat_map(|c| Sha1::digest(c).to_vec())
            .collect();
        let info = Value::Dict(
            [
                (b"length".to_vec(), Value::Int(data.len() as i64)),
                (b"name".to_vec(), Value::Bytes(name.as_bytes().to_vec())),
                (b"piece length".to_vec(), Value::Int(plen as i64)),
                (b"pieces".to_vec(), Value::Bytes(pieces)),
            ]
            .into_iter()
            .collect(),
        );
        let t = Value::Dict([(b"info".to_vec(), info)].into_iter().collect());
        Arc::new(Torrent::parse(&t.encode()).unwrap())
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn in_order_out_of_order_duplicate_and_bad() {
        let d = data(10_000);
        let t = torrent("x", &d, 4096);
        let mut c = PieceChecker::new(t, None).unwrap();
        // Piece 0 in order, in two blocks.
        c.block(0, 0, &d[..2048]).unwrap();
        c.block(0, 2048, &d[2048..4096]).unwrap();
        // Piece 1 backwards, with a duplicate and an overlap.
        c.block(1, 3072, &d[4096 + 3072..8192]).unwrap();
        c.block(1, 1024, &d[4096 + 1024..4096 + 3072]).unwrap();
        c.block(1, 1024, &d[4096 + 1024..4096 + 3072]).unwrap();
        c.block(1, 0, &d[4096..4096 + 2048]).unwrap();
        // Piece 2 (short, 1808 bytes) with bad data, then good.
        let mut bad = d[8192..].to_vec();
        bad[5] ^= 1;
        c.block(2, 0, &bad).unwrap();
        c.block(2, 0, &d[8192..]).unwrap();
        // Out of range.
        c.block(3, 0, b"x").unwrap();
        c.block(2, 1800, &[0; 9]).unwrap();
        let r = c.finish().unwrap();
        assert_eq!((r.good, r.bad, r.incomplete, r.missing), (3, 0, 0, 0));
        assert_eq!((r.failed_checks, r.ignored_blocks), (1, 2));
    }

    #[test]
    fn bad_incomplete_missing() {
        let d = data(16_384);
        let t = torrent("x", &d, 4096);
        let mut c = PieceChecker::new(t, None).unwrap();
        c.block(0, 0, &[0; 4096]).unwrap();
        c.block(1, 0, &d[4096..5000]).unwrap();
        c.block(2, 100, &d[8292..8400]).unwrap();
        let r = c.finish().unwrap();
        assert_eq!((r.good, r.bad, r.incomplete, r.missing), (0, 1, 2, 1));
        assert_eq!(r.incomplete_indexes.len(), 2);
        assert_eq!(r.bad_indexes.len(), 1);
        assert_eq!(r.bad_indexes, [0]);
    }

    #[test]
    fn extract_writes_the_file_and_checks_from_disk() {
        let d = data(10_000);
        let t = torrent("sample.bin", &d, 4096);
        let dir = tempfile::tempdir().unwrap();
        let mut c = PieceChecker::new(t, Some(dir.path())).unwrap();
        for (i, chunk) in d.chunks(1000).enumerate().rev() {
            let at = i * 1000;
            let (p, b) = (at / 4096, at % 4096);
            // Blocks do not cross pieces here: split where they would.
            let first = (4096 - b).min(chunk.len());
            c.block(p as u32, b as u32, &chunk[..first]).unwrap();
            if first < chunk.len() {
                c.block(p as u32 + 1, 0, &chunk[first..]).unwrap();
            }
        }
        let r = c.finish().unwrap();
        assert_eq!((r.good, r.bad, r.incomplete), (3, 0, 0));
        assert_eq!(std::fs::read(dir.path().join("sample.bin")).unwrap(), d);
    }

    #[test]
    fn extract_pads_missing_pieces_to_the_full_length() {
        let d = data(10_000);
        let t = torrent("s.bin", &d, 4096);
        let dir = tempfile::tempdir().unwrap();
        let mut c = PieceChecker::new(t, Some(dir.path())).unwrap();
        c.block(1, 0, &d[4096..8192]).unwrap();
        let r = c.finish().unwrap();
        assert_eq!((r.good, r.missing), (1, 2));
        let out = std::fs::read(dir.path().join("s.bin")).unwrap();
        assert_eq!(out.len(), d.len());
        assert_eq!(&out[4096..8192], &d[4096..8192]);
        assert!(out[..4096].iter().all(|&b| b == 0));
    }

    #[test]
    fn cover_merges() {
        let mut r = Vec::new();
        cover(&mut r, 10, 20);
        cover(&mut r, 30, 40);
        cover(&mut r, 0, 5);
        assert_eq!(r, [(0, 5), (10, 20), (30, 40)]);
        cover(&mut r, 5, 10);
        assert_eq!(r, [(0, 20), (30, 40)]);
        cover(&mut r, 15, 35);
        assert_eq!(r, [(0, 40)]);
    }

    /// A hybrid torrent is named by its v1 hash and by its truncated v2 hash (v2 peers).
    #[test]
    fn a_hybrid_matches_both_of_its_hashes() {
        let file = Value::dict([(
            "",
            Value::dict([
                ("length", Value::Int(5)),
                ("pieces root", Value::Bytes(vec![1; 32])),
            ]),
        )]);
        let info = Value::dict([
            ("file tree", Value::dict([("f", file)])),
            ("length", Value::Int(5)),
            ("meta version", Value::Int(2)),
            ("name", Value::bytes("f")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![0; 20])),
        ]);
        let t = Torrent::parse(&Value::dict([("info", info)]).encode()).unwrap();
        let v2 = t.info.v2.as_ref().unwrap().truncated_hash();
        let c = PieceChecker::new(Arc::new(t.clone()), None).unwrap();
        assert!(c.matches(&t.info_hash) && c.matches(&v2) && !c.matches(&[0; 20]));
        assert_eq!(c.info_hashes(), vec![t.info_hash, v2]);
        let v1 = torrent("f", b"hello", 16384);
        assert_eq!(
            PieceChecker::new(v1.clone(), None).unwrap().info_hashes(),
            vec![v1.info_hash]
        );
    }
}
