//! Making `.torrent` files (BEP 3, BEP 12 announce-list, BEP 19 web seeds, BEP 27 private,
//! BEP 47 pad files, BEP 52 v2 and hybrid torrents).
//!
//! Two steps, so that a caller can show progress against the total size:
//! 1. [`Layout::scan`] walks the path: one file, or a directory's regular files in the order
//!    mktorrent uses (sorted by their `/`-joined relative path, byte by byte; hidden and empty
//!    files included), so the same data and piece length give mktorrent's info hash.
//! 2. [`Layout::build`] reads the files once and hashes them: for v1, as one byte stream cut
//!    into pieces (SHA-1), with BEP 47 pad files (zeros) when asked ([`CreateOptions::pad`]);
//!    for v2, each file on its own as a BEP 52 merkle tree ([`crate::merkle`]). A v2 or
//!    hybrid torrent lists its files in the order of the v2 `file tree` (paths compared
//!    component by component, byte by byte, as libtorrent sorts them), and a hybrid's v1 view
//!    pads every file, the last one too, as libtorrent does, so each file starts on a piece
//!    boundary.
//!    It returns the bencoded torrent (made with [`crate::bencode`]), parsed back with
//!    [`Torrent::parse`] (v1, v2 and hybrid: what `info` will show, a hybrid's two file lists
//!    checked against each other), and the info hashes of what was parsed.
//!
//! The module is synchronous and pure apart from reading the data: paths in, bytes out. It
//! never writes a file and never touches the network; the `create` command writes the result.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::bencode::Value;
use crate::merkle::{FileHasher, FileHashes};
use crate::metainfo::{MetainfoError, Torrent, MAX_PIECE_LENGTH};

/// The smallest piece length we make (and the BEP 3 block size: libtorrent refuses less).
pub const MIN_PIECE_LENGTH: u64 = 16 * 1024;

/// The largest piece length [`default_piece_length`] picks.
pub const MAX_DEFAULT_PIECE_LENGTH: u64 = 16 * 1024 * 1024;

/// How many pieces [`default_piece_length`] aims at, at most: enough pieces to share the
/// work between peers, few enough to keep `pieces` (20 bytes each) small.
const TARGET_PIECES: u64 = 1500;

/// What went wrong while making a torrent.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: the file name is not valid UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error("{path}: holds no data (every file is empty)")]
    Empty { path: PathBuf },
    #[error("{path} changed while it was being hashed: expected {expected} bytes, read {read}")]
    Changed {
        path: PathBuf,
        expected: u64,
        read: u64,
    },
    #[error(
        "piece length {0} is not a power of two between {MIN_PIECE_LENGTH} and {MAX_PIECE_LENGTH}"
    )]
    PieceLength(u64),
    #[error("the torrent made is not valid: {0}")]
    Invalid(MetainfoError),
}

/// By hand rather than `#[from]`: the message already says the cause, so it is no `source`.
impl From<MetainfoError> for CreateError {
    fn from(e: MetainfoError) -> CreateError {
        CreateError::Invalid(e)
    }
}

type Result<T, E = CreateError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |error| CreateError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Which metadata a torrent carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetaVersion {
    /// BEP 3: `pieces` (SHA-1), `length` or `files`.
    #[default]
    V1,
    /// BEP 52 only: `meta version` 2, `file tree`, `piece layers`.
    V2,
    /// Both views of the same files: v1 with pad files so that every file starts on a piece
    /// boundary, and v2.
    Hybrid,
}

impl MetaVersion {
    fn has_v1(self) -> bool {
        self != MetaVersion::V2
    }

    fn has_v2(self) -> bool {
        self != MetaVersion::V1
    }
}

/// What goes into the torrent besides the data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Tracker URLs: the first is `announce`; two or more also make an `announce-list` with
    /// one tier per URL, in this order.
    pub announce: Vec<String>,
    /// Bytes per piece; `None`: [`default_piece_length`] of the total size.
    pub piece_length: Option<u64>,
    /// BEP 27: peers only from the tracker (no DHT, no PEX).
    pub private: bool,
    /// BEP 19 `url-list`.
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    /// `created by`; left out when `None`.
    pub created_by: Option<String>,
    /// `creation date` (seconds since the Unix epoch); left out when `None`.
    pub creation_date: Option<i64>,
    /// v1, v2 or both.
    pub version: MetaVersion,
    /// BEP 47 pad files in a v1 torrent: `Some(min)` puts a pad file before every file longer
    /// than `min` bytes that would not start on a piece boundary (libtorrent 1.2's
    /// `pad_file_limit`, qBittorrent's "align to piece boundary for files larger than");
    /// `Some(0)` aligns every file with data. Hybrids are always padded; v2 has no pad files.
    pub pad: Option<u64>,
}

/// One file of a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutFile {
    /// Where to read it.
    pub source: PathBuf,
    /// Its path in the torrent, relative to the torrent's root (empty for a single file).
    pub path: Vec<String>,
    pub length: u64,
}

/// The data a torrent describes: its name and its files in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The torrent's `name`: the file or directory name.
    pub name: String,
    /// True for a directory (a `files` list), false for one file (`length`).
    pub multi_file: bool,
    pub files: Vec<LayoutFile>,
    /// Sum of the file lengths.
    pub total_length: u64,
}

/// A torrent made by [`Layout::build`].
#[derive(Debug, Clone)]
pub struct Created {
    /// The `.torrent` file's bytes.
    pub bytes: Vec<u8>,
    /// The torrent parsed back (v1, v2 and hybrid).
    pub torrent: Torrent,
    /// SHA-1 of the `info` dictionary (v1 and hybrid), from [`Created::torrent`].
    pub info_hash_v1: Option<[u8; 20]>,
    /// SHA-256 of the `info` dictionary (v2 and hybrid), from [`Created::torrent`].
    pub info_hash_v2: Option<[u8; 32]>,
    pub name: String,
    /// Files with data or empty, pad files not counted.
    pub file_count: usize,
    /// Sum of the file lengths, pad files not counted.
    pub total_length: u64,
    pub piece_length: u64,
    /// v1 pieces (pad files included); for v2 only, the sum of every file's pieces.
    pub piece_count: u64,
}

/// A sensible piece length for `total` bytes: the smallest power of two that cuts the data
/// into at most ~1500 pieces, between 16 KiB and 16 MiB (1 MiB → 16 KiB, 100 MiB → 128 KiB,
/// 1 GiB → 1 MiB, 16 GiB → 16 MiB).
pub fn default_piece_length(total: u64) -> u64 {
    total
        .div_ceil(TARGET_PIECES)
        .next_power_of_two()
        .clamp(MIN_PIECE_LENGTH, MAX_DEFAULT_PIECE_LENGTH)
}

/// Checks a piece length given by the user: a power of two, 16 KiB to 256 MiB (which is also
/// what BEP 52 asks of a v2 piece length).
pub fn check_piece_length(n: u64) -> Result<u64> {
    if n.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&n) {
        Ok(n)
    } else {
        Err(CreateError::PieceLength(n))
    }
}

/// One entry of the v1 file list: a file of the layout, or a pad file of zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry<'a> {
    File(&'a LayoutFile),
    Pad(u64),
}

/// What hashing the data gives: v1 piece hashes (SHA-1s, concatenated) and, per file in
/// order, the v2 hashes.
struct Hashed {
    pieces: Vec<u8>,
    v2: Vec<FileHashes>,
}

impl Layout {
    /// Walks `path`: a file gives a single-file layout, a directory every regular file below
    /// it (symbolic links to files are followed; links to directories are skipped, so a link
    /// loop cannot make the walk endless). Fails on names that are not UTF-8 and on data of
    /// total length 0.
    pub fn scan(path: &Path) -> Result<Layout> {
        let full = path.canonicalize().map_err(io_err(path))?;
        let name = utf8_name(&full)?;
        let meta = std::fs::metadata(&full).map_err(io_err(path))?;
        let (multi_file, files) = if meta.is_dir() {
            let mut files = Vec::new();
            walk(&full, &mut Vec::new(), &mut files)?;
            // mktorrent's order: the joined relative paths compared byte by byte
            files.sort_by_cached_key(|f| f.path.join("/"));
            (true, files)
        } else {
            let file = LayoutFile {
                source: full.clone(),
                path: Vec::new(),
                length: meta.len(),
            };
            (false, vec![file])
        };
        let total_length = files.iter().map(|f| f.length).sum();
        if total_length == 0 {
            return Err(CreateError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Layout {
            name,
            multi_file,
            files,
            total_length,
        })
    }

    /// Hashes the data and makes the torrent. `progress` is called with the bytes of data
    /// hashed so far after every piece and at the end of every file.
    pub fn build(&self, opts: &CreateOptions, mut progress: impl FnMut(u64)) -> Result<Created> {
        let piece_length = match opts.piece_length {
            Some(n) => check_piece_length(n)?,
            None => default_piece_length(self.total_length),
        };
        let files = self.ordered(opts.version);
        let entries = entries(&files, self.multi_file, opts, piece_length);
        let hashed = hash(&entries, opts.version, piece_length, &mut progress)?;
        let piece_count = if opts.version.has_v1() {
            hashed.pieces.len() as u64 / 20
        } else {
            files.iter().map(|f| f.length.div_ceil(piece_length)).sum()
        };
        let info = self.info(opts, piece_length, &entries, &files, &hashed);
        let bytes = encode(opts, info, &hashed.v2);
        let torrent = Torrent::parse(&bytes)?;
        let info_hash_v1 = torrent.info.has_v1().then(|| torrent.info.info_hash());
        let info_hash_v2 = torrent.info.v2.as_ref().map(|v2| v2.info_hash);
        Ok(Created {
            bytes,
            torrent,
            info_hash_v1,
            info_hash_v2,
            name: self.name.clone(),
            file_count: files.len(),
            total_length: self.total_length,
            piece_length,
            piece_count,
        })
    }

    /// The files in torrent order: the scan's (mktorrent's) for v1; for v2 and hybrids the
    /// order of the `file tree`, the paths compared component by component.
    fn ordered(&self, version: MetaVersion) -> Vec<&LayoutFile> {
        let mut files: Vec<&LayoutFile> = self.files.iter().collect();
        if version.has_v2() {
            files.sort_by(|a, b| a.path.cmp(&b.path));
        }
        files
    }

    /// The `info` dictionary.
    fn info(
        &self,
        opts: &CreateOptions,
        piece_length: u64,
        entries: &[Entry],
        files: &[&LayoutFile],
        hashed: &Hashed,
    ) -> Value {
        let mut info = vec![
            ("name", Value::bytes(&self.name)),
            ("piece length", int(piece_length)),
        ];
        if opts.version.has_v1() {
            info.push(("pieces", Value::Bytes(hashed.pieces.clone())));
            if self.multi_file {
                let list = entries.iter().map(|e| v1_file(*e)).collect();
                info.push(("files", Value::List(list)));
            } else {
                info.push(("length", int(self.total_length)));
            }
        }
        if opts.version.has_v2() {
            info.push(("meta version", Value::Int(2)));
            info.push(("file tree", self.file_tree(files, &hashed.v2)));
        }
        if opts.private {
            info.push(("private", Value::Int(1)));
        }
        Value::dict(info)
    }

    /// BEP 52 `file tree`: nested directories, each file a dictionary under the key "" with
    /// its `length` and (when not empty) `pieces root`. A single file sits under the name.
    fn file_tree(&self, files: &[&LayoutFile], hashes: &[FileHashes]) -> Value {
        let mut tree = Value::Dict(BTreeMap::new());
        for (f, h) in files.iter().zip(hashes) {
            let mut leaf = vec![("length", int(h.length))];
            if let Some(root) = h.root {
                leaf.push(("pieces root", Value::bytes(root)));
            }
            let file = Value::dict([("", Value::dict(leaf))]);
            let path: Vec<&str> = if self.multi_file {
                f.path.iter().map(String::as_str).collect()
            } else {
                vec![self.name.as_str()]
            };
            insert(&mut tree, &path, file);
        }
        tree
    }
}

/// Puts `file` at `path` in a tree of dictionaries, making the directories on the way.
fn insert(tree: &mut Value, path: &[&str], file: Value) {
    let (Value::Dict(map), Some((first, rest))) = (tree, path.split_first()) else {
        return;
    };
    let key = first.as_bytes().to_vec();
    if rest.is_empty() {
        map.insert(key, file);
    } else {
        let dir = map
            .entry(key)
            .or_insert_with(|| Value::Dict(BTreeMap::new()));
        insert(dir, rest, file);
    }
}

fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// An entry of the v1 `files` list; a pad file as libtorrent writes it.
fn v1_file(e: Entry) -> Value {
    match e {
        Entry::File(f) => {
            let path = f.path.iter().map(Value::bytes).collect();
            Value::dict([("length", int(f.length)), ("path", Value::List(path))])
        }
        Entry::Pad(n) => Value::dict([
            ("attr", Value::bytes("p")),
            ("length", int(n)),
            (
                "path",
                Value::List(vec![Value::bytes(".pad"), Value::bytes(n.to_string())]),
            ),
        ]),
    }
}

/// The v1 file list: `files` with pad files so that files start on a piece boundary, as
/// libtorrent places them. With `pad: Some(min)` (v1), a pad file goes before each file longer
/// than `min` that would not start on one (so never after the last file, and after any empty
/// files in between), as libtorrent 1.2 does with a `pad_file_limit` (without reordering the
/// files); a hybrid pads right after every file that does not end on a piece boundary, the
/// last one too, as libtorrent 2.0 does. A single file has none.
fn entries<'a>(
    files: &[&'a LayoutFile],
    multi_file: bool,
    opts: &CreateOptions,
    piece_length: u64,
) -> Vec<Entry<'a>> {
    let after = multi_file && opts.version == MetaVersion::Hybrid;
    let before = opts
        .pad
        .filter(|_| multi_file && opts.version == MetaVersion::V1);
    let mut out = Vec::with_capacity(files.len() * 2);
    let mut offset = 0u64;
    let align = |out: &mut Vec<Entry<'a>>, offset: &mut u64| {
        let rest = *offset % piece_length;
        if rest != 0 {
            out.push(Entry::Pad(piece_length - rest));
            *offset += piece_length - rest;
        }
    };
    for f in files {
        if before.is_some_and(|min| f.length > min) {
            align(&mut out, &mut offset);
        }
        out.push(Entry::File(f));
        offset += f.length;
        if after {
            align(&mut out, &mut offset);
        }
    }
    out
}

/// SHA-1s of v1 pieces over a stream fed in slices.
struct PieceHasher {
    piece_length: u64,
    sha: Sha1,
    in_piece: u64,
    pieces: Vec<u8>,
}

impl PieceHasher {
    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = usize::try_from(self.piece_length - self.in_piece).unwrap_or(usize::MAX);
            let take = room.min(data.len());
            self.sha.update(&data[..take]);
            self.in_piece += take as u64;
            data = &data[take..];
            if self.in_piece == self.piece_length {
                let sha = std::mem::take(&mut self.sha);
                self.pieces.extend_from_slice(&sha.finalize());
                self.in_piece = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.in_piece > 0 {
            self.pieces.extend_from_slice(&self.sha.finalize());
        }
        self.pieces
    }
}

/// Reads every file once, in order, one piece at a time at most (bounded memory): v1 pieces
/// over the entries (pad files as zeros) and each file's v2 merkle tree.
fn hash(
    entries: &[Entry],
    version: MetaVersion,
    piece_length: u64,
    progress: &mut impl FnMut(u64),
) -> Result<Hashed> {
    let mut v1 = version.has_v1().then(|| PieceHasher {
        piece_length,
        sha: Sha1::new(),
        in_piece: 0,
        pieces: Vec::new(),
    });
    let mut v2 = Vec::new();
    // piece_length ≤ MAX_PIECE_LENGTH (checked), so this fits in memory and in usize
    let mut buf = vec![0u8; piece_length as usize];
    let mut done = 0u64;
    for e in entries {
        let f = match e {
            Entry::Pad(n) => {
                if let Some(v1) = &mut v1 {
                    // a pad file is shorter than a piece
                    let zeros = &mut buf[..(*n).min(piece_length) as usize];
                    zeros.fill(0);
                    v1.update(zeros);
                }
                continue;
            }
            Entry::File(f) => f,
        };
        let mut tree = if version.has_v2() {
            Some(FileHasher::new(piece_length).ok_or(CreateError::PieceLength(piece_length))?)
        } else {
            None
        };
        let file = File::open(&f.source).map_err(io_err(&f.source))?;
        let mut reader = file.take(f.length);
        let mut read = 0u64;
        loop {
            // up to the next piece boundary of the v1 stream (files start on one in v2)
            let offset = v1.as_ref().map_or(read % piece_length, |v| v.in_piece);
            let want = (piece_length - offset) as usize;
            let n = fill(&mut reader, &mut buf[..want]).map_err(io_err(&f.source))?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if let Some(v1) = &mut v1 {
                v1.update(chunk);
            }
            if let Some(t) = &mut tree {
                t.update(chunk);
            }
            read += n as u64;
            done += n as u64;
            progress(done);
        }
        if read != f.length {
            return Err(CreateError::Changed {
                path: f.source.clone(),
                expected: f.length,
                read,
            });
        }
        if let Some(t) = tree {
            v2.push(t.finish());
        }
    }
    Ok(Hashed {
        pieces: v1.map(PieceHasher::finish).unwrap_or_default(),
        v2,
    })
}

/// Reads until `buf` is full or the end of the data; returns the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The bencoded torrent around `info` (dictionary keys come out sorted, as BEP 3 requires),
/// with the v2 `piece layers` of the files that have one.
fn encode(opts: &CreateOptions, info: Value, v2: &[FileHashes]) -> Vec<u8> {
    let mut root = vec![("info", info)];
    if opts.version.has_v2() {
        let layers = v2.iter().filter_map(|h| {
            let root = h.root?;
            (!h.piece_layer.is_empty()).then(|| (root, Value::Bytes(h.piece_layer.concat())))
        });
        root.push(("piece layers", Value::dict(layers)));
    }
    if let Some(first) = opts.announce.first() {
        root.push(("announce", Value::bytes(first)));
    }
    if opts.announce.len() > 1 {
        let tiers = opts
            .announce
            .iter()
            .map(|u| Value::List(vec![Value::bytes(u)]))
            .collect();
        root.push(("announce-list", Value::List(tiers)));
    }
    match opts.web_seeds.as_slice() {
        [] => {}
        [one] => root.push(("url-list", Value::bytes(one))),
        many => root.push((
            "url-list",
            Value::List(many.iter().map(Value::bytes).collect()),
        )),
    }
    if let Some(c) = &opts.comment {
        root.push(("comment", Value::bytes(c)));
    }
    if let Some(c) = &opts.created_by {
        root.push(("created by", Value::bytes(c)));
    }
    if let Some(d) = opts.creation_date {
        root.push(("creation date", Value::Int(d)));
    }
    Value::dict(root).encode()
}

/// The last component of `path` as UTF-8.
fn utf8_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| CreateError::NotUtf8 {
            path: path.to_path_buf(),
        })
}

/// Adds every regular file below `dir` to `out`, `prefix` being `dir`'s path in the torrent.
fn walk(dir: &Path, prefix: &mut Vec<String>, out: &mut Vec<LayoutFile>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let source = entry.path();
        let name = utf8_name(&source)?;
        let link = entry.file_type().map_err(io_err(&source))?.is_symlink();
        let meta = std::fs::metadata(&source).map_err(io_err(&source))?;
        if meta.is_dir() {
            if link {
                tracing::warn!("skipping {}: a link to a directory", source.display());
                continue;
            }
            prefix.push(name);
            walk(&source, prefix, out)?;
            prefix.pop();
        } else if meta.is_file() {
            let mut path = prefix.clone();
            path.push(name);
            out.push(LayoutFile {
                source,
                path,
                length: meta.len(),
            });
        } else {
            tracing::warn!("skipping {}: not a regular file", source.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode;
    use sha2::Sha256;

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn default_piece_lengths() {
        assert_eq!(default_piece_length(1), 16 * 1024);
        assert_eq!(default_piece_length(1 << 20), 16 * 1024);
        assert_eq!(default_piece_length(100 << 20), 128 * 1024);
        assert_eq!(default_piece_length(1 << 30), 1 << 20);
        assert_eq!(default_piece_length(16 << 30), 16 << 20);
        assert_eq!(default_piece_length(1 << 40), 16 << 20);
        for total in [1u64, 12_345, 5 << 20, 3 << 30] {
            let n = default_piece_length(total);
            assert!(n.is_power_of_two());
            assert!(total.div_ceil(n) <= TARGET_PIECES);
        }
    }

    #[test]
    fn piece_length_checked() {
        assert!(check_piece_length(1 << 18).is_ok());
        assert!(check_piece_length(16 * 1024).is_ok());
        for bad in [0, 1000, 8 * 1024, 300_000, 512 << 20] {
            assert!(matches!(
                check_piece_length(bad),
                Err(CreateError::PieceLength(_))
            ));
        }
    }

    #[test]
    fn single_file_pieces_and_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = data(40_000, 7);
        write(dir.path(), "one.bin", &bytes);
        let layout = Layout::scan(&dir.path().join("one.bin")).expect("scan");
        assert!(!layout.multi_file);
        assert_eq!(layout.total_length, 40_000);
        let opts = CreateOptions {
            announce: vec!["http://127.0.0.1:1/announce".into()],
            piece_length: Some(16 * 1024),
            comment: Some("hello".into()),
            created_by: Some("bt-trace test".into()),
            creation_date: Some(1_700_000_000),
            ..Default::default()
        };
        let mut seen = Vec::new();
        let c = layout.build(&opts, |n| seen.push(n)).expect("build");
        assert_eq!(seen, [16384, 32768, 40_000]);
        let t = &c.torrent;
        assert_eq!(t.info.name, "one.bin");
        assert!(!t.info.multi_file);
        assert_eq!(t.info.total_length, 40_000);
        assert_eq!(t.info.piece_length, 16384);
        let want: Vec<[u8; 20]> = bytes
            .chunks(16384)
            .map(|c| Sha1::digest(c).into())
            .collect();
        assert_eq!(t.info.pieces, want);
        assert_eq!(t.announce.as_deref(), Some("http://127.0.0.1:1/announce"));
        assert!(t.announce_list.is_empty(), "one tracker: no announce-list");
        assert_eq!(t.comment.as_deref(), Some("hello"));
        assert_eq!(t.created_by.as_deref(), Some("bt-trace test"));
        assert_eq!(t.creation_date, Some(1_700_000_000));
        assert!(!t.info.private);
        // the info dictionary holds exactly the four single-file keys
        let root = bencode::decode(&c.bytes).expect("bencode");
        let keys: Vec<&[u8]> = root
            .get("info")
            .and_then(Value::as_dict)
            .expect("info")
            .keys()
            .map(Vec::as_slice)
            .collect();
        assert_eq!(keys, [&b"length"[..], b"name", b"piece length", b"pieces"]);
    }

    #[test]
    fn directory_order_is_mktorrents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("tree");
        // `a.b` sorts before `a/Y` ('.' < '/'), capitals before lower case, hidden and empty
        // files are kept
        for (i, rel) in [
            "b.txt", "a/z", "a/Y", "a.b", "Z", "_u", ".dot", "B/x", "empty",
        ]
        .iter()
        .enumerate()
        {
            let len = if *rel == "empty" { 0 } else { 1000 + i * 777 };
            write(&root, rel, &data(len, i as u8));
        }
        let layout = Layout::scan(&root).expect("scan");
        let order: Vec<String> = layout.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(
            order,
            [".dot", "B/x", "Z", "_u", "a.b", "a/Y", "a/z", "b.txt", "empty"]
        );
        let opts = CreateOptions {
            announce: vec!["http://a/announce".into(), "udp://b:1".into()],
            private: true,
            web_seeds: vec!["http://w/".into()],
            ..Default::default()
        };
        let c = layout.build(&opts, |_| {}).expect("build");
        let t = &c.torrent;
        assert!(t.info.multi_file);
        assert!(t.info.private);
        assert_eq!(t.info.name, "tree");
        assert_eq!(t.info.files.len(), 9);
        assert_eq!(t.info.files[5].path, ["a", "Y"]);
        assert_eq!(t.info.piece_length, MIN_PIECE_LENGTH);
        assert_eq!(t.announce.as_deref(), Some("http://a/announce"));
        assert_eq!(
            t.announce_list,
            [
                vec!["http://a/announce".to_string()],
                vec!["udp://b:1".into()]
            ]
        );
        let root_v = bencode::decode(&c.bytes).expect("bencode");
        assert_eq!(
            root_v.get("url-list").and_then(Value::as_str),
            Some("http://w/")
        );
        // the pieces hash the files' bytes in that order
        let mut all = Vec::new();
        for f in &layout.files {
            all.extend(std::fs::read(&f.source).expect("read"));
        }
        let want: Vec<[u8; 20]> = all
            .chunks(MIN_PIECE_LENGTH as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        assert_eq!(t.info.pieces, want);
    }

    /// A tree with an empty file, odd sizes, a file of exactly one piece and nested
    /// directories, where mktorrent's order (`a.b` before `a/x`) differs from the v2 tree's.
    fn odd_tree(root: &Path) -> Layout {
        for (i, (rel, len)) in [
            ("a/x", 40_000),
            ("a.b", 3),
            ("a/y/deep", 16384),
            ("empty", 0),
            ("z", 70_001),
        ]
        .iter()
        .enumerate()
        {
            write(root, rel, &data(*len, i as u8));
        }
        Layout::scan(root).expect("scan")
    }

    fn info_span(bytes: &[u8]) -> Vec<u8> {
        let span = bencode::dict_value_span(bytes, b"info")
            .expect("bencode")
            .expect("info");
        bytes[span].to_vec()
    }

    #[test]
    fn pad_files_align_every_file_but_the_last_has_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = odd_tree(&dir.path().join("t"));
        let opts = CreateOptions {
            piece_length: Some(16384),
            pad: Some(0),
            ..Default::default()
        };
        let c = layout.build(&opts, |_| {}).expect("build");
        let t = &c.torrent;
        let files: Vec<(String, u64, bool)> = t
            .info
            .files
            .iter()
            .map(|f| (f.path.join("/"), f.length, f.padding))
            .collect();
        let pad = |n: u64| (format!(".pad/{n}"), n, true);
        let file = |p: &str, n: u64| (p.to_string(), n, false);
        assert_eq!(
            files,
            [
                file("a.b", 3),
                pad(16381),
                file("a/x", 40_000),
                pad(9152),
                file("a/y/deep", 16384),
                file("empty", 0),
                file("z", 70_001),
            ]
        );
        // the pieces hash the stream with the pad files as zeros
        let mut stream = Vec::new();
        for f in &t.info.files {
            match layout.files.iter().find(|l| l.path == f.path) {
                Some(l) => stream.extend(std::fs::read(&l.source).expect("read")),
                None => stream.resize(stream.len() + f.length as usize, 0),
            }
        }
        let want: Vec<[u8; 20]> = stream
            .chunks(16384)
            .map(|c| Sha1::digest(c).into())
            .collect();
        assert_eq!(t.info.pieces, want);
        assert_eq!(c.piece_count, 1 + 3 + 1 + 5);
        assert_eq!(c.file_count, 5);
        assert_eq!(c.total_length, layout.total_length);
        assert_eq!(
            c.info_hash_v1,
            Some(Sha1::digest(info_span(&c.bytes)).into())
        );
        assert_eq!(c.info_hash_v2, None);
        // a pad file is written as libtorrent writes it
        let root = bencode::decode(&c.bytes).expect("bencode");
        let list = root
            .get("info")
            .and_then(|i| i.get("files"))
            .expect("files");
        let first_pad = &list.as_list().expect("list")[1];
        assert_eq!(first_pad.get("attr").and_then(Value::as_str), Some("p"));
        let path: Vec<&str> = first_pad
            .get("path")
            .and_then(Value::as_list)
            .expect("path")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(path, [".pad", "16381"]);
    }

    #[test]
    fn pad_threshold_aligns_only_the_larger_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = odd_tree(&dir.path().join("t"));
        let opts = CreateOptions {
            piece_length: Some(16384),
            pad: Some(20_000),
            ..Default::default()
        };
        let c = layout.build(&opts, |_| {}).expect("build");
        let files: Vec<(String, u64)> = c
            .torrent
            .info
            .files
            .iter()
            .map(|f| (f.display_path(), f.length))
            .collect();
        let want = [
            ("a.b", 3),
            (".pad/16381", 16381),
            ("a/x", 40_000),
            // 16384 bytes: not above the threshold, so not aligned (it starts at 56384)
            ("a/y/deep", 16384),
            ("empty", 0),
            (".pad/9152", 9152),
            ("z", 70_001),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|(p, n)| (p.to_string(), *n)).collect();
        assert_eq!(files, want);
        // a threshold above every file: no pad file at all, mktorrent's torrent
        let none = CreateOptions {
            pad: Some(70_001),
            ..opts.clone()
        };
        let plain = CreateOptions { pad: None, ..opts };
        let a = layout.build(&none, |_| {}).expect("build");
        let b = layout.build(&plain, |_| {}).expect("build");
        assert_eq!(a.bytes, b.bytes);
    }

    #[test]
    fn v2_file_tree_roots_and_piece_layers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = odd_tree(&dir.path().join("t"));
        let opts = CreateOptions {
            piece_length: Some(32768),
            version: MetaVersion::V2,
            ..Default::default()
        };
        let c = layout.build(&opts, |_| {}).expect("build");
        // parsed back as `info` reads it: no v1 view, the truncated SHA-256 on the wire
        let t = &c.torrent;
        assert!(!t.info.has_v1(), "no v1 view");
        assert_eq!(c.info_hash_v1, None);
        assert_eq!(
            Some(t.info_hash.to_vec()),
            c.info_hash_v2.map(|h| h[..20].to_vec())
        );
        assert_eq!(t.info.piece_count(), c.piece_count);
        assert_eq!(t.piece_layers.present, t.piece_layers.needed);
        assert!(t.warnings().is_empty(), "{:?}", t.warnings());
        assert_eq!(
            c.info_hash_v2,
            Some(Sha256::digest(info_span(&c.bytes)).into())
        );
        let root = bencode::decode(&c.bytes).expect("bencode");
        let info = root.get("info").expect("info");
        let keys: Vec<&[u8]> = info
            .as_dict()
            .expect("dict")
            .keys()
            .map(Vec::as_slice)
            .collect();
        assert_eq!(
            keys,
            [&b"file tree"[..], b"meta version", b"name", b"piece length"]
        );
        let tree = info.get("file tree").expect("tree");
        let node = |path: &[&str]| -> Value {
            let mut v = tree;
            for p in path {
                v = v.get(p).expect("component");
            }
            v.get("").expect("file").clone()
        };
        let mut layers = 0;
        for f in &layout.files {
            let path: Vec<&str> = f.path.iter().map(String::as_str).collect();
            let n = node(&path);
            assert_eq!(
                n.get("length").and_then(Value::as_int),
                Some(f.length as i64)
            );
            let want =
                crate::merkle::hash_file_bytes(&std::fs::read(&f.source).expect("read"), 32768)
                    .expect("hash");
            let got = n.get("pieces root").and_then(Value::as_bytes);
            assert_eq!(got, want.root.as_ref().map(|r| &r[..]), "{path:?}");
            let layer = root
                .get("piece layers")
                .and_then(|l| want.root.and_then(|r| l.as_dict()?.get(&r[..])));
            match layer {
                Some(l) => {
                    layers += 1;
                    assert_eq!(l.as_bytes(), Some(&want.piece_layer.concat()[..]));
                }
                None => assert!(want.piece_layer.is_empty(), "{path:?}"),
            }
        }
        // only a/x (2 pieces) and z (3 pieces) are longer than one piece
        assert_eq!(layers, 2);
        assert_eq!(c.piece_count, 1 + 2 + 1 + 3);
    }

    #[test]
    fn hybrid_sorts_as_the_tree_and_pads_every_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = odd_tree(&dir.path().join("t"));
        let opts = CreateOptions {
            piece_length: Some(16384),
            version: MetaVersion::Hybrid,
            ..Default::default()
        };
        let c = layout.build(&opts, |_| {}).expect("build");
        let t = &c.torrent;
        let order: Vec<String> = t.info.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(
            order,
            [
                "a/x",
                ".pad/9152",
                "a/y/deep",
                "a.b",
                ".pad/16381",
                "empty",
                "z",
                ".pad/11919"
            ]
        );
        assert_eq!(Some(t.info_hash), c.info_hash_v1);
        let span = info_span(&c.bytes);
        assert_eq!(c.info_hash_v1, Some(Sha1::digest(&span).into()));
        assert_eq!(c.info_hash_v2, Some(Sha256::digest(&span).into()));
        assert_eq!(t.info.pieces.len() as u64, c.piece_count);
        assert_eq!(c.piece_count, 3 + 1 + 1 + 5);

        // one file: no pad file, `length` and a tree under the name
        let one = Layout::scan(&layout.files[4].source).expect("scan");
        let c = one.build(&opts, |_| {}).expect("build");
        let t = &c.torrent;
        assert_eq!(t.info.total_length, 70_001);
        assert_eq!(t.info.pieces.len(), 5);
        let root = bencode::decode(&c.bytes).expect("bencode");
        let file = root
            .get("info")
            .and_then(|i| i.get("file tree"))
            .and_then(|t| t.get("z"))
            .and_then(|z| z.get(""))
            .expect("tree entry");
        assert_eq!(file.get("length").and_then(Value::as_int), Some(70_001));
    }

    #[test]
    fn empty_data_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "d/a", b"");
        write(dir.path(), "d/b/c", b"");
        let e = Layout::scan(&dir.path().join("d")).expect_err("empty");
        assert!(matches!(e, CreateError::Empty { .. }), "{e}");
        let e = Layout::scan(&dir.path().join("missing")).expect_err("missing");
        assert!(matches!(e, CreateError::Io { .. }), "{e}");
    }

    #[test]
    fn a_file_that_shrinks_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "f", &data(50_000, 1));
        let layout = Layout::scan(&dir.path().join("f")).expect("scan");
        write(dir.path(), "f", &data(10, 1));
        let e = layout
            .build(&CreateOptions::default(), |_| {})
            .expect_err("changed");
        assert!(matches!(e, CreateError::Changed { read: 10, .. }), "{e}");
    }

    #[test]
    fn a_directory_link_loop_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("r");
        write(&root, "x", b"abc");
        std::os::unix::fs::symlink(&root, root.join("loop")).expect("symlink");
        std::os::unix::fs::symlink(root.join("x"), root.join("y")).expect("symlink");
        let layout = Layout::scan(&root).expect("scan");
        let order: Vec<String> = layout.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(order, ["x", "y"]);
    }
}
