//! Metainfo: the contents of a `.torrent` file (BEP 3), with tracker tiers (BEP 12), private
//! torrents (BEP 27) and padding files (BEP 47).
//!
//! A torrent is a bencoded dictionary. Its `info` dictionary describes the data: a suggested
//! `name`, the `piece length`, the SHA-1 of every piece concatenated in `pieces`, and either one
//! file (`length`) or a list of `files`, each with a `length` and a `path` given as a list of
//! components. The *info hash*, which names the torrent everywhere (trackers, handshakes,
//! magnets), is the SHA-1 of the raw `info` bytes exactly as they appear in the file.
//!
//! How fields are read: [`bencode::decode`] first checks the whole input (strict, depth-capped,
//! no allocation beyond the input), then the fields are read off the resulting [`Value`]
//! directly. We tried `serde_bencode` typed structs for this step, as the design card
//! suggests, and dropped them: their errors do not say *which* field is wrong (an integer where
//! a path component should be gives "Invalid Type: integer `3` (expected: `byte array`)"), the
//! file would be parsed a second time, and optional fields could not be read leniently (a
//! malformed `announce-list` would reject the whole torrent). Here every error names the field,
//! e.g. ``field `info.files[2].path[0]` should be a byte string, found an integer``.
//!
//! Safety: every file path component (and the `name`) is checked when the torrent is parsed,
//! before anything can be written: no `..`, `.`, empty components, separators (`/`, `\`), NUL
//! bytes or drive letters (`C:`). [`FileEntry::relative_path`] therefore always stays inside the
//! output directory.
//!
//! Contract: [`Torrent::parse`] and [`Info::from_raw_bytes`] never panic on any input; they
//! return a [`MetainfoError`] that says what is wrong and where.

use crate::bencode::{self, BencodeError, Value};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;

/// Largest `piece length` we accept (256 MiB). Real torrents use 16 KiB to 16 MiB; a larger
/// value would make every piece buffer huge.
pub const MAX_PIECE_LENGTH: u64 = 256 * 1024 * 1024;

/// What is wrong with a torrent (or with an info dictionary received from a peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// The bytes are not valid bencode. (Shown in the message rather than as an error
    /// `source`, so that `{:#}` chains do not print it twice.)
    #[error("not a valid torrent: {0}")]
    Bencode(BencodeError),
    #[error("not a torrent: the file holds {found}, not a bencoded dictionary")]
    NotADict { found: &'static str },
    #[error("missing field `{field}`")]
    Missing { field: String },
    #[error("field `{field}` should be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}`: {why}")]
    Invalid { field: String, why: String },
    #[error("`info.pieces` is {len} bytes long, not a multiple of 20 (one SHA-1 hash per piece)")]
    PiecesLength { len: usize },
    #[error(
        "{total_length} bytes in pieces of {piece_length} need {expected} piece hash(es), \
         but `info.pieces` holds {found}"
    )]
    PieceCount {
        total_length: u64,
        piece_length: u64,
        expected: u64,
        found: usize,
    },
    #[error("unsafe file path {path:?} in `{field}`: {why}; refusing the torrent")]
    UnsafePath {
        field: String,
        path: String,
        why: &'static str,
    },
    #[error("two files map to the same place: {path:?}")]
    PathConflict { path: String },
    #[error("info dictionary hashes to {found}, expected {expected}")]
    InfoHashMismatch { expected: String, found: String },
    #[error("BitTorrent v2-only torrents (BEP 52) are not supported: `info` has no `pieces`")]
    V2Only,
}

impl From<BencodeError> for MetainfoError {
    fn from(e: BencodeError) -> Self {
        MetainfoError::Bencode(e)
    }
}

type Result<T, E = MetainfoError> = std::result::Result<T, E>;

/// A parsed `.torrent` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torrent {
    /// The `announce` URL, if any (absent in trackerless torrents).
    pub announce: Option<String>,
    /// BEP 12 `announce-list` tiers exactly as given (empty when the torrent has none; see
    /// [`Torrent::tiers`] for the list to actually try).
    pub announce_list: Vec<Vec<String>>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// Seconds since the Unix epoch.
    pub creation_date: Option<i64>,
    pub info: Info,
    /// SHA-1 of the raw `info` bytes (same as `info.info_hash()`).
    pub info_hash: [u8; 20],
}

/// The `info` dictionary: what the data is and how it is cut into pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Suggested name: the file name (single-file) or the directory name (multi-file).
    /// Checked to be one safe path component.
    pub name: String,
    /// Bytes per piece (the last piece may be shorter). `1..=MAX_PIECE_LENGTH`.
    pub piece_length: u64,
    /// One SHA-1 per piece.
    pub pieces: Vec<[u8; 20]>,
    /// The files in the order of the torrent's byte space (one entry for single-file torrents).
    pub files: Vec<FileEntry>,
    /// Sum of all file lengths (padding files included), > 0.
    pub total_length: u64,
    /// BEP 27: `private` = 1 (no DHT, no PEX).
    pub private: bool,
    /// True when the torrent has a `files` list (even of one file).
    pub multi_file: bool,
    raw: Vec<u8>,
    info_hash: [u8; 20],
}

/// One file of the torrent, placed in the torrent's byte space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components relative to the torrent's root (`[name]` for a single-file torrent;
    /// for multi-file torrents the components of `path`, without the torrent's `name`).
    pub path: Vec<String>,
    pub length: u64,
    /// Where the file starts in the torrent's byte space (sum of the lengths before it).
    pub offset: u64,
    /// BEP 47 padding file (`attr` contains `p`): its bytes are zeros and need not be written.
    pub padding: bool,
}

impl FileEntry {
    /// The path relative to the output directory. It never escapes that directory: the
    /// components were checked when the torrent was parsed, and any component that is not
    /// one plain name (possible only if the struct was built by hand) becomes `_`.
    pub fn relative_path(&self) -> PathBuf {
        self.path
            .iter()
            .map(|c| {
                if component_problem(c).is_none() {
                    c.as_str()
                } else {
                    "_"
                }
            })
            .collect()
    }

    /// The path joined with `/`, for display.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }

    /// The file's bytes in the torrent's byte space.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.length
    }
}

impl Torrent {
    /// Parses the bytes of a `.torrent` file.
    pub fn parse(buf: &[u8]) -> Result<Torrent> {
        let root = bencode::decode(buf)?;
        let dict = root
            .as_dict()
            .ok_or(MetainfoError::NotADict { found: kind(&root) })?;
        // The info dictionary is read from its raw span (not from `root`), so the fields we use
        // are exactly the bytes that were hashed, even if a hostile file repeats the `info` key.
        let span = bencode::dict_value_span(buf, b"info")?.ok_or_else(|| missing("info"))?;
        let info = Info::from_raw_bytes(&buf[span])?;

        let announce = opt_text(dict, "announce", "announce")?.filter(|s| !s.is_empty());
        let announce_list = announce_list(dict.get(&b"announce-list"[..]));
        let comment = opt_text(dict, "comment", "comment")?;
        let created_by = opt_text(dict, "created by", "created by")?;
        let creation_date = match dict.get(&b"creation date"[..]) {
            None => None,
            Some(Value::Int(n)) => Some(*n),
            Some(other) => {
                tracing::warn!("ignoring `creation date`: not an integer ({})", kind(other));
                None
            }
        };
        Ok(Torrent {
            announce,
            announce_list,
            comment,
            created_by,
            creation_date,
            info_hash: info.info_hash,
            info,
        })
    }

    /// Builds a torrent from an info dictionary obtained some other way (BEP 9 metadata
    /// exchange for magnet links) and the tracker tiers to use.
    pub fn from_info(info: Info, tiers: Vec<Vec<String>>) -> Torrent {
        Torrent {
            announce: tiers.first().and_then(|t| t.first()).cloned(),
            announce_list: tiers,
            comment: None,
            created_by: None,
            creation_date: None,
            info_hash: info.info_hash,
            info,
        }
    }

    /// The tracker tiers to try, in order (BEP 12): the `announce-list` when it has any URL,
    /// otherwise one tier holding `announce`, otherwise none (a trackerless torrent).
    pub fn tiers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else if let Some(a) = &self.announce {
            vec![vec![a.clone()]]
        } else {
            Vec::new()
        }
    }

    /// The tracker a simple client would ask first: `announce`, or else the first URL of the
    /// `announce-list`.
    pub fn tracker_url(&self) -> Option<&str> {
        self.announce.as_deref().or_else(|| {
            self.announce_list
                .iter()
                .flatten()
                .next()
                .map(String::as_str)
        })
    }

    /// The info hash as 40 lowercase hex digits.
    pub fn info_hash_hex(&self) -> String {
        hex::encode(self.info_hash)
    }
}

impl Info {
    /// Parses a raw bencoded `info` dictionary: the span of a `.torrent` file, or the metadata
    /// a peer sent (BEP 9). Keeps `raw` as given; the info hash is its SHA-1.
    pub fn from_raw_bytes(raw: &[u8]) -> Result<Info> {
        let v = bencode::decode(raw)?;
        let d = v
            .as_dict()
            .ok_or_else(|| wrong("info", "a dictionary", &v))?;
        Info::from_dict(d, raw)
    }

    /// Like [`Info::from_raw_bytes`], but first checks that `raw` hashes to `expected`
    /// (metadata from a peer must match the magnet link's info hash).
    pub fn from_metadata(raw: &[u8], expected: &[u8; 20]) -> Result<Info> {
        let found: [u8; 20] = Sha1::digest(raw).into();
        if &found != expected {
            return Err(MetainfoError::InfoHashMismatch {
                expected: hex::encode(expected),
                found: hex::encode(found),
            });
        }
        Info::from_raw_bytes(raw)
    }

    fn from_dict(d: &BTreeMap<Vec<u8>, Value>, raw: &[u8]) -> Result<Info> {
        if !d.contains_key(&b"pieces"[..]) && d.contains_key(&b"file tree"[..]) {
            return Err(MetainfoError::V2Only);
        }
        let name = utf8_variant(d, "name")
            .map(Ok)
            .or_else(|| d.get(&b"name"[..]).map(|v| text(v, "info.name")))
            .ok_or_else(|| missing("info.name"))??;
        if let Some(why) = component_problem(&name) {
            return Err(unsafe_path("info.name", &name, why));
        }

        let piece_length = match d.get(&b"piece length"[..]) {
            None => return Err(missing("info.piece length")),
            Some(v) => non_negative(v, "info.piece length")?,
        };
        if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
            return Err(MetainfoError::Invalid {
                field: "info.piece length".into(),
                why: format!("{piece_length} is not between 1 and {MAX_PIECE_LENGTH}"),
            });
        }

        let pieces_raw = match d.get(&b"pieces"[..]) {
            Some(v) => v
                .as_bytes()
                .ok_or_else(|| wrong("info.pieces", "a byte string", v))?,
            None => return Err(missing("info.pieces")),
        };
        if pieces_raw.len() % 20 != 0 {
            return Err(MetainfoError::PiecesLength {
                len: pieces_raw.len(),
            });
        }
        let pieces: Vec<[u8; 20]> = pieces_raw
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect();

        let (files, multi_file) = match (d.get(&b"length"[..]), d.get(&b"files"[..])) {
            (Some(_), Some(_)) => {
                return Err(MetainfoError::Invalid {
                    field: "info".into(),
                    why: "has both `length` (single file) and `files` (multi-file)".into(),
                })
            }
            (None, None) => return Err(missing("info.length` or `info.files")),
            (Some(len), None) => {
                let length = non_negative(len, "info.length")?;
                let file = FileEntry {
                    path: vec![name.clone()],
                    length,
                    offset: 0,
                    padding: false,
                };
                (vec![file], false)
            }
            (None, Some(list)) => (files(list)?, true),
        };
        let total_length = files.last().map_or(0, |f| f.offset + f.length);
        if total_length == 0 {
            return Err(MetainfoError::Invalid {
                field: "info".into(),
                why: "the torrent holds no data (total length 0)".into(),
            });
        }
        let expected = total_length.div_ceil(piece_length);
        if expected != pieces.len() as u64 {
            return Err(MetainfoError::PieceCount {
                total_length,
                piece_length,
                expected,
                found: pieces.len(),
            });
        }
        if expected > u64::from(u32::MAX) {
            return Err(MetainfoError::Invalid {
                field: "info.pieces".into(),
                why: format!("{expected} pieces do not fit the wire protocol's 32-bit indexes"),
            });
        }

        let private = matches!(d.get(&b"private"[..]), Some(Value::Int(1)));
        Ok(Info {
            name,
            piece_length,
            pieces,
            files,
            total_length,
            private,
            multi_file,
            raw: raw.to_vec(),
            info_hash: Sha1::digest(raw).into(),
        })
    }

    /// SHA-1 of the raw info dictionary.
    pub fn info_hash(&self) -> [u8; 20] {
        self.info_hash
    }

    /// The raw bencoded info dictionary, exactly as received (served to peers by BEP 9).
    pub fn raw_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Number of pieces (at least 1, at most `u32::MAX`).
    pub fn num_pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Length of piece `index`: `piece_length`, except for a shorter last piece. `None` when
    /// `index` is out of range.
    pub fn piece_len(&self, index: usize) -> Option<u64> {
        self.piece_range(index).map(|r| r.end - r.start)
    }

    /// The bytes of piece `index` in the torrent's byte space.
    pub fn piece_range(&self, index: usize) -> Option<Range<u64>> {
        if index >= self.pieces.len() {
            return None;
        }
        // index < num_pieces = ceil(total / piece_length), so start < total: no overflow.
        let start = index as u64 * self.piece_length;
        let end = (start + self.piece_length).min(self.total_length);
        Some(start..end)
    }

    /// The expected SHA-1 of piece `index`.
    pub fn piece_hash(&self, index: usize) -> Option<&[u8; 20]> {
        self.pieces.get(index)
    }

    /// Which parts of which files a byte range of the torrent covers: `(file index, range
    /// inside that file)`, in order. Empty files are skipped. Used to read and write pieces
    /// that span file boundaries.
    pub fn file_spans(&self, range: Range<u64>) -> Vec<(usize, Range<u64>)> {
        // First file whose end is past range.start (files are sorted by offset).
        let first = self
            .files
            .partition_point(|f| f.offset + f.length <= range.start);
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate().skip(first) {
            if f.offset >= range.end {
                break;
            }
            let start = range.start.max(f.offset);
            let end = range.end.min(f.offset + f.length);
            if start < end {
                out.push((i, start - f.offset..end - f.offset));
            }
        }
        out
    }
}

/// Reads `info.files`: lengths, offsets, safe paths, no two files at the same place.
fn files(list: &Value) -> Result<Vec<FileEntry>> {
    let items = list
        .as_list()
        .ok_or_else(|| wrong("info.files", "a list", list))?;
    if items.is_empty() {
        return Err(MetainfoError::Invalid {
            field: "info.files".into(),
            why: "the list is empty".into(),
        });
    }
    let mut out = Vec::with_capacity(items.len());
    let mut offset: u64 = 0;
    for (i, item) in items.iter().enumerate() {
        let field = format!("info.files[{i}]");
        let d = item
            .as_dict()
            .ok_or_else(|| wrong(&field, "a dictionary", item))?;
        let length = match d.get(&b"length"[..]) {
            Some(v) => non_negative(v, &format!("{field}.length"))?,
            None => return Err(missing(&format!("{field}.length"))),
        };
        let path = match path_variant_utf8(d) {
            Some(p) => p,
            None => {
                let pfield = format!("{field}.path");
                let v = d.get(&b"path"[..]).ok_or_else(|| missing(&pfield))?;
                let comps = v.as_list().ok_or_else(|| wrong(&pfield, "a list", v))?;
                comps
                    .iter()
                    .enumerate()
                    .map(|(j, c)| text(c, &format!("{pfield}[{j}]")))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        check_path(&path, &format!("{field}.path"))?;
        let padding = d
            .get(&b"attr"[..])
            .and_then(Value::as_bytes)
            .is_some_and(|a| a.contains(&b'p'));
        out.push(FileEntry {
            path,
            length,
            offset,
            padding,
        });
        offset = offset
            .checked_add(length)
            .ok_or_else(|| MetainfoError::Invalid {
                field: format!("{field}.length"),
                why: "the total length overflows 64 bits".into(),
            })?;
    }
    check_conflicts(&out)?;
    Ok(out)
}

/// Why a single path component is unsafe to write, or `None` when it is a plain name.
fn component_problem(c: &str) -> Option<&'static str> {
    let b = c.as_bytes();
    if c.is_empty() {
        Some("empty path component")
    } else if c == "." || c == ".." {
        Some("`.` and `..` components are not allowed")
    } else if c.contains('/') || c.contains('\\') {
        Some("a component contains a path separator")
    } else if c.contains('\0') {
        Some("a component contains a NUL byte")
    } else if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        Some("a component looks like a Windows drive letter")
    } else {
        None
    }
}

fn check_path(path: &[String], field: &str) -> Result<()> {
    if path.is_empty() {
        return Err(unsafe_path(field, "", "the path has no components"));
    }
    for c in path {
        if let Some(why) = component_problem(c) {
            return Err(unsafe_path(field, &path.join("/"), why));
        }
    }
    Ok(())
}

/// Refuses two real (non-padding) files with the same path, or a file that is also used as a
/// directory (`a` and `a/b`): one would overwrite the other. BEP 47 padding files are never
/// written, and their names (`.pad/N`) may repeat.
fn check_conflicts(files: &[FileEntry]) -> Result<()> {
    let mut seen_files: HashSet<&[String]> = HashSet::new();
    let mut seen_dirs: HashSet<&[String]> = HashSet::new();
    for f in files.iter().filter(|f| !f.padding) {
        let p = f.path.as_slice();
        let clash = seen_dirs.contains(p)
            || !seen_files.insert(p)
            || (1..p.len()).any(|n| seen_files.contains(&p[..n]));
        if clash {
            return Err(MetainfoError::PathConflict { path: p.join("/") });
        }
        for n in 1..p.len() {
            seen_dirs.insert(&p[..n]);
        }
    }
    Ok(())
}

/// BEP 12 tiers, read leniently: a malformed `announce-list` is ignored with a warning (the
/// torrent still has `announce`), a bare string counts as a one-URL tier, empty tiers go away.
fn announce_list(v: Option<&Value>) -> Vec<Vec<String>> {
    let Some(v) = v else { return Vec::new() };
    let Some(tiers) = v.as_list() else {
        tracing::warn!("ignoring `announce-list`: not a list ({})", kind(v));
        return Vec::new();
    };
    let url = |v: &Value| {
        v.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .filter(|s| !s.is_empty())
    };
    tiers
        .iter()
        .filter_map(|t| match t {
            Value::List(urls) => Some(urls.iter().filter_map(url).collect::<Vec<_>>()),
            Value::Bytes(_) => url(t).map(|u| vec![u]),
            other => {
                tracing::warn!("ignoring an `announce-list` tier: {}", kind(other));
                None
            }
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// `name.utf-8` when present and valid UTF-8 (some older torrents store `name` in a legacy
/// encoding and add this field).
fn utf8_variant(d: &BTreeMap<Vec<u8>, Value>, key: &str) -> Option<String> {
    let k = format!("{key}.utf-8");
    d.get(k.as_bytes())?.as_str().map(str::to_string)
}

/// `path.utf-8` when present and every component is valid UTF-8.
fn path_variant_utf8(d: &BTreeMap<Vec<u8>, Value>) -> Option<Vec<String>> {
    d.get(&b"path.utf-8"[..])?
        .as_list()?
        .iter()
        .map(|c| c.as_str().map(str::to_string))
        .collect()
}

fn opt_text(d: &BTreeMap<Vec<u8>, Value>, key: &str, field: &str) -> Result<Option<String>> {
    d.get(key.as_bytes()).map(|v| text(v, field)).transpose()
}

/// A byte string as text. Bytes that are not UTF-8 become U+FFFD (this can never produce a
/// `/`, `.` or NUL, so path checks done afterwards stay sound).
fn text(v: &Value, field: &str) -> Result<String> {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| wrong(field, "a byte string", v))
}

fn non_negative(v: &Value, field: &str) -> Result<u64> {
    let n = v.as_int().ok_or_else(|| wrong(field, "an integer", v))?;
    u64::try_from(n).map_err(|_| MetainfoError::Invalid {
        field: field.into(),
        why: format!("{n} is negative"),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "an integer",
        Value::Bytes(_) => "a byte string",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dictionary",
    }
}

fn missing(field: &str) -> MetainfoError {
    MetainfoError::Missing {
        field: field.into(),
    }
}

fn wrong(field: &str, expected: &'static str, found: &Value) -> MetainfoError {
    MetainfoError::WrongType {
        field: field.into(),
        expected,
        found: kind(found),
    }
}

fn unsafe_path(field: &str, path: &str, why: &'static str) -> MetainfoError {
    MetainfoError::UnsafePath {
        field: field.into(),
        path: path.into(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Value {
        Value::bytes(s)
    }

    fn hashes(n: usize) -> Value {
        Value::Bytes((0..n * 20).map(|i| i as u8).collect())
    }

    fn single(length: i64, piece_length: i64, n: usize) -> Value {
        Value::dict([
            ("name", b("file.bin")),
            ("length", Value::Int(length)),
            ("piece length", Value::Int(piece_length)),
            ("pieces", hashes(n)),
        ])
    }

    fn torrent(info: Value) -> Vec<u8> {
        Value::dict([("announce", b("http://t/a")), ("info", info)]).encode()
    }

    fn multi(paths: &[&[&str]], len: i64, n: usize) -> Value {
        let files = paths
            .iter()
            .map(|p| {
                Value::dict([
                    ("length", Value::Int(len)),
                    ("path", Value::List(p.iter().map(|c| b(c)).collect())),
                ])
            })
            .collect();
        Value::dict([
            ("name", b("dir")),
            ("files", Value::List(files)),
            ("piece length", Value::Int(10)),
            ("pieces", hashes(n)),
        ])
    }

    #[test]
    fn single_file_and_short_last_piece() {
        let t = Torrent::parse(&torrent(single(25, 10, 3))).unwrap();
        assert_eq!(t.announce.as_deref(), Some("http://t/a"));
        assert_eq!(t.tiers(), vec![vec!["http://t/a".to_string()]]);
        let i = &t.info;
        assert!(!i.multi_file);
        assert_eq!(i.total_length, 25);
        assert_eq!(i.num_pieces(), 3);
        assert_eq!(i.piece_len(0), Some(10));
        assert_eq!(i.piece_len(2), Some(5));
        assert_eq!(i.piece_len(3), None);
        assert_eq!(i.piece_range(2), Some(20..25));
        assert_eq!(i.files.len(), 1);
        assert_eq!(i.files[0].relative_path(), PathBuf::from("file.bin"));
        assert_eq!(i.piece_hash(1).unwrap()[0], 20);
    }

    #[test]
    fn info_hash_is_of_the_raw_bytes() {
        // Keys of `info` deliberately out of order: a re-encoding would sort them and change the
        // hash. The raw bytes must be hashed as they are.
        let raw = b"d4:name1:x6:lengthi3e12:piece lengthi4e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
        let mut file = b"d8:announce1:u4:info".to_vec();
        file.extend_from_slice(raw);
        file.push(b'e');
        let t = Torrent::parse(&file).unwrap();
        let want: [u8; 20] = Sha1::digest(raw).into();
        assert_eq!(t.info_hash, want);
        assert_eq!(t.info.raw_bytes(), raw);
        let reencoded = bencode::decode(raw).unwrap().encode();
        assert_ne!(<[u8; 20]>::from(Sha1::digest(&reencoded)), want);
        assert_eq!(Info::from_metadata(raw, &want).unwrap(), t.info);
        assert!(matches!(
            Info::from_metadata(raw, &[0; 20]),
            Err(MetainfoError::InfoHashMismatch { .. })
        ));
    }

    #[test]
    fn multi_file_offsets_and_spans() {
        let t = Torrent::parse(&torrent(multi(&[&["a"], &["sub", "b"], &["c"]], 7, 3))).unwrap();
        let i = &t.info;
        assert!(i.multi_file);
        assert_eq!(i.total_length, 21);
        let offs: Vec<u64> = i.files.iter().map(|f| f.offset).collect();
        assert_eq!(offs, [0, 7, 14]);
        assert_eq!(i.files[1].relative_path(), PathBuf::from("sub/b"));
        assert_eq!(i.file_spans(5..15), vec![(0, 5..7), (1, 0..7), (2, 0..1)]);
        assert_eq!(i.file_spans(20..21), vec![(2, 6..7)]);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            &["..", "..", "etc", "passwd"][..],
            &["a", ".", "b"],
            &["a", ""],
            &[""],
            &["/etc/passwd"],
            &["a/../../b"],
            &["a\\..\\b"],
            &["C:", "x"],
            &["c:evil"],
            &["nul\0byte"],
        ] {
            let e = Torrent::parse(&torrent(multi(&[bad], 10, 1))).unwrap_err();
            assert!(
                matches!(e, MetainfoError::UnsafePath { .. }),
                "{bad:?}: {e}"
            );
        }
        let e = Torrent::parse(&torrent(multi(&[&[]], 10, 1))).unwrap_err();
        assert!(matches!(e, MetainfoError::UnsafePath { .. }), "{e}");
        let mut info = single(5, 10, 1);
        if let Value::Dict(d) = &mut info {
            d.insert(b"name".to_vec(), b(".."));
        }
        let e = Torrent::parse(&torrent(info)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsafe file path \"..\" in `info.name`: `.` and `..` components are not allowed; \
             refusing the torrent"
        );
    }

    #[test]
    fn relative_path_cannot_escape_even_if_built_by_hand() {
        let f = FileEntry {
            path: vec!["..".into(), "/abs".into(), "ok".into()],
            length: 1,
            offset: 0,
            padding: false,
        };
        assert_eq!(f.relative_path(), PathBuf::from("_/_/ok"));
    }

    #[test]
    fn conflicting_paths_are_refused_but_padding_may_repeat() {
        for paths in [
            &[&["a"][..], &["a"]][..],
            &[&["a"], &["a", "b"]],
            &[&["a", "b"], &["a"]],
        ] {
            let e = Torrent::parse(&torrent(multi(paths, 5, 1))).unwrap_err();
            assert!(matches!(e, MetainfoError::PathConflict { .. }), "{e}");
        }
        let pad = |len| {
            Value::dict([
                ("attr", b("p")),
                ("length", Value::Int(len)),
                ("path", Value::List(vec![b(".pad"), b("5")])),
            ])
        };
        let file = Value::dict([
            ("length", Value::Int(5)),
            ("path", Value::List(vec![b("x")])),
        ]);
        let info = Value::dict([
            ("name", b("dir")),
            ("files", Value::List(vec![file, pad(5), pad(5)])),
            ("piece length", Value::Int(10)),
            ("pieces", hashes(2)),
        ]);
        let t = Torrent::parse(&torrent(info)).unwrap();
        let flags: Vec<bool> = t.info.files.iter().map(|f| f.padding).collect();
        assert_eq!(flags, [false, true, true]);
    }

    #[test]
    fn piece_checks() {
        let e = Torrent::parse(&torrent(single(25, 10, 2))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "25 bytes in pieces of 10 need 3 piece hash(es), but `info.pieces` holds 2"
        );
        let mut info = single(25, 10, 3);
        if let Value::Dict(d) = &mut info {
            d.insert(b"pieces".to_vec(), Value::Bytes(vec![0; 59]));
        }
        assert!(matches!(
            Torrent::parse(&torrent(info)),
            Err(MetainfoError::PiecesLength { len: 59 })
        ));
        for pl in [0, -1, 1 << 40] {
            assert!(Torrent::parse(&torrent(single(25, pl, 3))).is_err());
        }
        let e = Torrent::parse(&torrent(single(-5, 10, 1))).unwrap_err();
        assert_eq!(e.to_string(), "field `info.length`: -5 is negative");
        assert!(Torrent::parse(&torrent(single(0, 10, 0))).is_err());
    }

    #[test]
    fn total_length_overflow_is_an_error() {
        let info = Value::dict([
            ("name", b("d")),
            (
                "files",
                Value::List(
                    (0..3)
                        .map(|i| {
                            Value::dict([
                                ("length", Value::Int(i64::MAX)),
                                ("path", Value::List(vec![b(&i.to_string())])),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("piece length", Value::Int(10)),
            ("pieces", hashes(1)),
        ]);
        let e = Torrent::parse(&torrent(info)).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let mut info = multi(&[&["a"]], 5, 1);
        if let Value::Dict(d) = &mut info {
            d.insert(
                b"files".to_vec(),
                Value::List(vec![Value::dict([
                    ("length", Value::Int(5)),
                    ("path", Value::List(vec![Value::Int(3)])),
                ])]),
            );
        }
        let e = Torrent::parse(&torrent(info)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `info.files[0].path[0]` should be a byte string, found an integer"
        );
        assert_eq!(
            Torrent::parse(b"i3e").unwrap_err().to_string(),
            "not a torrent: the file holds an integer, not a bencoded dictionary"
        );
        assert_eq!(
            Torrent::parse(b"d8:announce1:ue").unwrap_err().to_string(),
            "missing field `info`"
        );
        let v2 = Value::dict([(
            "info",
            Value::dict([("file tree", Value::dict::<&str>([]))]),
        )]);
        assert_eq!(Torrent::parse(&v2.encode()), Err(MetainfoError::V2Only));
    }

    #[test]
    fn both_or_neither_length_and_files() {
        let mut info = multi(&[&["a"]], 5, 1);
        if let Value::Dict(d) = &mut info {
            d.insert(b"length".to_vec(), Value::Int(5));
        }
        assert!(Torrent::parse(&torrent(info)).is_err());
        let mut info = single(5, 10, 1);
        if let Value::Dict(d) = &mut info {
            d.remove(&b"length"[..]);
        }
        assert!(Torrent::parse(&torrent(info)).is_err());
    }

    #[test]
    fn announce_list_tiers_and_optional_fields() {
        let t = Value::dict([
            ("announce", b("http://a")),
            (
                "announce-list",
                Value::List(vec![
                    Value::List(vec![b("http://a"), b("http://b")]),
                    Value::List(vec![]),
                    b("udp://c:1"),
                    Value::Int(4),
                ]),
            ),
            ("comment", b("hi")),
            ("created by", b("me")),
            ("creation date", Value::Int(1_700_000_000)),
            ("info", single(5, 10, 1)),
        ]);
        let t = Torrent::parse(&t.encode()).unwrap();
        assert_eq!(
            t.tiers(),
            vec![
                vec!["http://a".to_string(), "http://b".into()],
                vec!["udp://c:1".into()]
            ]
        );
        assert_eq!(t.comment.as_deref(), Some("hi"));
        assert_eq!(t.created_by.as_deref(), Some("me"));
        assert_eq!(t.creation_date, Some(1_700_000_000));
        // A malformed announce-list does not reject the torrent.
        let t2 = Value::dict([("announce-list", b("http://x")), ("info", single(5, 10, 1))]);
        let t2 = Torrent::parse(&t2.encode()).unwrap();
        assert!(t2.tiers().is_empty());
        assert_eq!(t2.tracker_url(), None);
        let t3 = Torrent::from_info(t.info.clone(), vec![vec!["udp://z:1".into()]]);
        assert_eq!(t3.tracker_url(), Some("udp://z:1"));
        assert_eq!(t3.info_hash, t.info_hash);
    }

    #[test]
    fn private_and_utf8_variants() {
        let mut info = multi(&[&["a"]], 5, 1);
        if let Value::Dict(d) = &mut info {
            d.insert(b"private".to_vec(), Value::Int(1));
            d.insert(b"name".to_vec(), Value::Bytes(vec![0xff, b'x']));
            d.insert(b"name.utf-8".to_vec(), b("héllo"));
        }
        let t = Torrent::parse(&torrent(info)).unwrap();
        assert!(t.info.private);
        assert_eq!(t.info.name, "héllo");
        let info = Value::dict([
            ("name", Value::Bytes(vec![0xff])),
            ("length", Value::Int(5)),
            ("piece length", Value::Int(10)),
            ("pieces", hashes(1)),
        ]);
        assert_eq!(
            Torrent::parse(&torrent(info)).unwrap().info.name,
            "\u{fffd}"
        );
    }

    #[test]
    fn truncated_and_deep_inputs_are_errors() {
        let full = torrent(single(25, 10, 3));
        for n in 0..full.len() {
            assert!(Torrent::parse(&full[..n]).is_err());
        }
        let mut deep = b"d4:info".to_vec();
        deep.extend(vec![b'l'; 10_000]);
        deep.extend(vec![b'e'; 10_001]);
        assert!(matches!(
            Torrent::parse(&deep),
            Err(MetainfoError::Bencode(BencodeError::TooDeep { .. }))
        ));
    }

    fn arb_int() -> impl Strategy<Value = Value> {
        prop_oneof![
            (-3i64..40).prop_map(Value::Int),
            any::<i64>().prop_map(Value::Int),
            "[a-z.]{0,3}".prop_map(Value::bytes),
        ]
    }

    fn arb_component() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-z./\\\\:\0]{0,4}".prop_map(Value::bytes),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
            any::<i64>().prop_map(Value::Int),
        ]
    }

    /// Torrent-shaped dictionaries with random field values: exercises the checks, not just
    /// the bencode layer.
    fn arb_torrent() -> impl Strategy<Value = Vec<u8>> {
        let file = (
            arb_int(),
            proptest::collection::vec(arb_component(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(length, path, pad)| {
                let mut f = vec![("length", length), ("path", Value::List(path))];
                if pad {
                    f.push(("attr", Value::bytes("p")));
                }
                Value::dict(f)
            });
        (
            arb_component(),
            arb_int(),
            0usize..5,
            prop_oneof![
                arb_int().prop_map(|l| ("length", l)),
                proptest::collection::vec(file, 0..4).prop_map(|f| ("files", Value::List(f))),
            ],
            any::<bool>(),
        )
            .prop_map(|(name, pl, n, (k, v), announce_list)| {
                let info = Value::dict([
                    ("name", name),
                    ("piece length", pl),
                    ("pieces", hashes(n)),
                    (k, v),
                ]);
                let mut top = vec![("info", info)];
                if announce_list {
                    top.push((
                        "announce-list",
                        Value::List(vec![Value::List(vec![Value::bytes("u")]), Value::Int(1)]),
                    ));
                }
                Value::dict(top).encode()
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Torrent::parse(&b);
            let _ = Info::from_raw_bytes(&b);
            let _ = crate::magnet::Magnet::parse(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn torrent_shaped_input_never_panics(t in arb_torrent()) {
            if let Ok(t) = Torrent::parse(&t) {
                let i = &t.info;
                prop_assert!(i.total_length > 0);
                for p in 0..i.num_pieces() {
                    let len = i.piece_len(p).unwrap();
                    prop_assert!(len > 0 && len <= i.piece_length);
                    let covered: u64 = i
                        .file_spans(i.piece_range(p).unwrap())
                        .iter()
                        .map(|(_, r)| r.end - r.start)
                        .sum();
                    prop_assert_eq!(covered, len);
                }
                for f in &i.files {
                    prop_assert!(f.relative_path().components().all(|c| matches!(
                        c,
                        std::path::Component::Normal(_)
                    )));
                }
            }
        }

        #[test]
        fn arbitrary_text_after_the_scheme_never_panics(s in any::<String>()) {
            let _ = crate::magnet::Magnet::parse(&s);
            let _ = crate::magnet::Magnet::parse(&format!("magnet:?{s}"));
            let _ = crate::magnet::Magnet::parse(&format!("magnet:?xt=urn:btih:{s}"));
        }

        #[test]
        fn magnet_like_strings_never_panic(s in "magnet:\\?(xt=urn:btih:[0-9a-zA-Z]{0,41}|dn=[%0-9a-f+]{0,6}|tr=[%a-z:/]{0,8}|xl=[0-9-]{0,21}|x.pe=[0-9.:\\[\\]]{0,10}|&|=|%){0,8}") {
            let _ = crate::magnet::Magnet::parse(&s);
        }
    }
}
