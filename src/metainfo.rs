//! Metainfo: the contents of a `.torrent` file (BEP 3), with tracker tiers (BEP 12), private
//! torrents (BEP 27) and file attributes (BEP 47: padding files, symlinks, executable and
//! hidden files).
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
//! Paths are sanitized, not refused, as libtorrent 2.0 does (every torrent libtorrent opens,
//! `info` can show): each component of `path` (and the `name`) goes through
//! [`sanitize_component`] (separators and NUL removed, `.`/`..` dropped, an empty component
//! becomes `_`, control characters `_`), two files that land on the same path get numbered
//! names (`a.txt`, `a.1.txt`), and symlink targets that would leave the torrent are not kept.
//! Each change is one entry of [`Info::warnings`]. [`FileEntry::path`] is what gets written, and
//! [`FileEntry::relative_path`] therefore always stays inside the output directory. Trailing
//! bytes after the top-level dictionary are a warning too ([`Torrent::warnings`]).
//!
//! BitTorrent v2 (BEP 52): a torrent with `meta version` 2 has a `file tree` and top-level
//! `piece layers` (read in [`v2`]); a *hybrid* has both the v1 fields and the v2 ones, which
//! must describe the same files. [`Torrent::info_hash`] is what goes on the wire: the v1 SHA-1
//! when the torrent has v1 `pieces`, else the first 20 bytes of the v2 SHA-256. A v2-only
//! torrent's files are laid out at piece boundaries, as libtorrent does; a download checks its
//! pieces against the v2 merkle trees (`download::verify`).
//!
//! Contract: [`Torrent::parse`] and [`Info::from_raw_bytes`] never panic on any input; they
//! return a [`MetainfoError`] that says what is wrong and where. Nothing here touches the disk.

use crate::bencode::{self, BencodeError, Value};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;

pub mod v2;
pub use v2::{PieceLayers, V2File, V2Info};

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
    /// Metadata whose `hash` (SHA-1 or SHA-256) is not the expected info hash.
    #[error("info dictionary's {hash} is {found}, expected {expected}")]
    InfoHashMismatch {
        hash: &'static str,
        expected: String,
        found: String,
    },
    #[error("hybrid torrent refused: its v1 and v2 file lists disagree: {why}")]
    HybridMismatch { why: String },
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
    /// The info hash used on the wire (same as `info.info_hash()`): SHA-1 of the raw `info`
    /// bytes, or for a v2-only torrent the first 20 bytes of their SHA-256.
    pub info_hash: [u8; 20],
    /// BEP 52 `piece layers` (empty for a v1 torrent).
    pub piece_layers: PieceLayers,
    /// Bytes after the top-level dictionary (ignored, as libtorrent does; see
    /// [`Torrent::warnings`]).
    pub trailing_bytes: usize,
}

/// The info hashes a torrent is known by before its metadata arrives: a magnet link's `btih`
/// (SHA-1 of the info dictionary) and `btmh` (its SHA-256), one or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoHashes {
    V1([u8; 20]),
    V2([u8; 32]),
    /// A hybrid torrent's two hashes; metadata must match both.
    Hybrid([u8; 20], [u8; 32]),
}

impl InfoHashes {
    /// The hash used on the wire (handshakes, trackers): the v1 one, else the first 20 bytes
    /// of the v2 one.
    pub fn wire(&self) -> [u8; 20] {
        match self {
            InfoHashes::V1(h) | InfoHashes::Hybrid(h, _) => *h,
            InfoHashes::V2(h) => {
                let mut w = [0u8; 20];
                w.copy_from_slice(&h[..20]);
                w
            }
        }
    }

    /// Checks that `raw` (an info dictionary) has every one of these hashes.
    pub fn check(&self, raw: &[u8]) -> Result<()> {
        let (v1, v2) = match self {
            InfoHashes::V1(h) => (Some(h), None),
            InfoHashes::V2(h) => (None, Some(h)),
            InfoHashes::Hybrid(h1, h2) => (Some(h1), Some(h2)),
        };
        let mismatch = |hash, expected: &[u8], found: &[u8]| MetainfoError::InfoHashMismatch {
            hash,
            expected: hex::encode(expected),
            found: hex::encode(found),
        };
        if let Some(want) = v1 {
            let found: [u8; 20] = Sha1::digest(raw).into();
            if &found != want {
                return Err(mismatch("SHA-1", want, &found));
            }
        }
        if let Some(want) = v2 {
            let found: [u8; 32] = Sha256::digest(raw).into();
            if &found != want {
                return Err(mismatch("SHA-256", want, &found));
            }
        }
        Ok(())
    }
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
    /// True when the torrent has a `files` list (even of one file), or a v2 file tree that is
    /// not one file at its top level.
    pub multi_file: bool,
    /// The BEP 52 fields (`meta version` 2): `None` for a v1 torrent. With `pieces` empty,
    /// a v2-only torrent; otherwise a hybrid.
    pub v2: Option<V2Info>,
    /// What was changed to make the torrent safe to write, one line each: a sanitized `name` or
    /// path, a numbered duplicate, a symlink that will not be created.
    pub warnings: Vec<String>,
    raw: Vec<u8>,
    info_hash: [u8; 20],
}

/// One file of the torrent, placed in the torrent's byte space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components relative to the torrent's root, sanitized and made unique: what is
    /// written (`[name]` for a single-file torrent; for multi-file torrents the components of
    /// `path`, without the torrent's `name`; `.pad/<length>` for a padding file without one).
    pub path: Vec<String>,
    /// Bytes in the torrent's byte space (0 for a symlink, whatever its `length` says).
    pub length: u64,
    /// Where the file starts in the torrent's byte space (sum of the lengths before it).
    pub offset: u64,
    /// BEP 47 padding file (`attr` contains `p`, or a BitComet `_____padding_file_` name): its
    /// bytes are zeros, hashed but never written.
    pub padding: bool,
    /// BEP 47 `x`: written with the executable bits set.
    pub executable: bool,
    /// BEP 47 `h`: a hidden file (shown; nothing to do for it on Unix).
    pub hidden: bool,
    /// BEP 47 `l`: a symbolic link instead of data.
    pub symlink: Option<Symlink>,
}

/// A BEP 47 symlink's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symlink {
    /// `symlink path` as given: relative to the torrent's root (BEP 47), or, in torrents made
    /// by libtorrent, to the link's directory.
    pub given: Vec<String>,
    /// What the link is created with: a relative path from the link's directory to a place
    /// inside the torrent. `None` when the target would leave the torrent (not created).
    pub target: Option<PathBuf>,
}

impl FileEntry {
    /// The path relative to the output directory. It never escapes that directory: the
    /// components were sanitized when the torrent was parsed, and any component that is not
    /// one plain name (possible only if the struct was built by hand) becomes `_`.
    pub fn relative_path(&self) -> PathBuf {
        self.path
            .iter()
            .map(|c| if is_plain(c) { c.as_str() } else { "_" })
            .collect()
    }

    /// The BEP 47 attributes as letters (`p`adding, `l`ink, e`x`ecutable, `h`idden), empty for
    /// a plain file.
    pub fn attr(&self) -> String {
        [
            (self.padding, 'p'),
            (self.symlink.is_some(), 'l'),
            (self.executable, 'x'),
            (self.hidden, 'h'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| c)
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
        let (root, used) = bencode::decode_prefix(buf)?;
        let dict = root
            .as_dict()
            .ok_or(MetainfoError::NotADict { found: kind(&root) })?;
        // The info dictionary is read from its raw span (not from `root`), so the fields we use
        // are exactly the bytes that were hashed, even if a hostile file repeats the `info` key.
        let span = bencode::dict_value_span(buf, b"info")?.ok_or_else(|| missing("info"))?;
        let info = Info::from_raw_bytes(&buf[span])?;
        let piece_layers = match &info.v2 {
            Some(v2) => PieceLayers::parse(dict.get(&b"piece layers"[..]), v2, info.piece_length)?,
            None => PieceLayers::default(),
        };

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
        let t = Torrent {
            announce,
            announce_list,
            comment,
            created_by,
            creation_date,
            info_hash: info.info_hash,
            info,
            piece_layers,
            trailing_bytes: buf.len() - used,
        };
        for w in t.warnings() {
            tracing::warn!("{w}");
        }
        Ok(t)
    }

    /// Everything that was ignored or changed to read the torrent: trailing bytes, then the
    /// [`Info::warnings`]. Empty for a well-formed torrent.
    pub fn warnings(&self) -> Vec<String> {
        let trailing = (self.trailing_bytes > 0).then(|| {
            format!(
                "{} trailing byte(s) after the torrent's dictionary are ignored",
                self.trailing_bytes
            )
        });
        trailing
            .into_iter()
            .chain(self.info.warnings.iter().cloned())
            .chain(self.piece_layers.warnings.iter().cloned())
            .collect()
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
            piece_layers: PieceLayers::default(),
            trailing_bytes: 0,
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

    /// Like [`Info::from_raw_bytes`], but first checks that `raw` hashes to every hash in
    /// `expected` (metadata from a peer must match the magnet link): its SHA-1 the `btih`, its
    /// SHA-256 the `btmh`, both for a hybrid link.
    pub fn from_metadata(raw: &[u8], expected: &InfoHashes) -> Result<Info> {
        expected.check(raw)?;
        Info::from_raw_bytes(raw)
    }

    fn from_dict(d: &BTreeMap<Vec<u8>, Value>, raw: &[u8]) -> Result<Info> {
        let meta_version = match d.get(&b"meta version"[..]) {
            None => 1,
            Some(v) => non_negative(v, "info.meta version")?,
        };
        if !matches!(meta_version, 1 | 2) {
            return Err(MetainfoError::Invalid {
                field: "info.meta version".into(),
                why: format!("{meta_version} is not a version we know (1 or 2)"),
            });
        }
        let has_v1 = d.contains_key(&b"pieces"[..]);
        if meta_version == 1 && !has_v1 && d.contains_key(&b"file tree"[..]) {
            return Err(missing("info.meta version"));
        }
        let v2_hash: [u8; 32] = Sha256::digest(raw).into();
        let info_hash: [u8; 20] = if has_v1 || meta_version == 1 {
            Sha1::digest(raw).into()
        } else {
            let mut h = [0u8; 20];
            h.copy_from_slice(&v2_hash[..20]);
            h
        };
        let mut warnings = Vec::new();
        let given_name = utf8_variant(d, "name")
            .map(Ok)
            .or_else(|| d.get(&b"name"[..]).map(|v| text(v, "info.name")))
            .ok_or_else(|| missing("info.name"))??;
        // libtorrent names a torrent whose name sanitizes to nothing after its info hash
        let name = sanitize_component(&given_name).unwrap_or_else(|| hex::encode(info_hash));
        if name != given_name {
            warnings.push(sanitized_warning(
                "info.name",
                &[given_name],
                std::slice::from_ref(&name),
            ));
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

        let v2 = if meta_version == 2 {
            if !piece_length.is_power_of_two() || piece_length < v2::MIN_PIECE_LENGTH {
                return Err(MetainfoError::Invalid {
                    field: "info.piece length".into(),
                    why: format!(
                        "{piece_length} is not a power of two of at least {} (BEP 52)",
                        v2::MIN_PIECE_LENGTH
                    ),
                });
            }
            let tree = d
                .get(&b"file tree"[..])
                .ok_or_else(|| missing("info.file tree"))?;
            Some(V2Info::parse(tree, v2_hash, &mut warnings)?)
        } else {
            None
        };

        let (pieces, mut files, multi_file) = match &v2 {
            Some(v2) if !has_v1 => (Vec::new(), v2.byte_space(piece_length)?, !v2.single_file),
            _ => v1_layout(d, &name, &mut warnings)?,
        };
        if let (Some(v2), true) = (&v2, has_v1) {
            v2.check_hybrid(&files)?;
        }
        if !has_v1 {
            number_duplicates(&mut files, &mut warnings);
            resolve_symlinks(&mut files, &mut warnings);
        }
        let total_length = files.last().map_or(0, |f| f.offset + f.length);
        if total_length == 0 {
            return Err(MetainfoError::Invalid {
                field: "info".into(),
                why: "the torrent holds no data (total length 0)".into(),
            });
        }
        let expected = total_length.div_ceil(piece_length);
        if has_v1 && expected != pieces.len() as u64 {
            return Err(MetainfoError::PieceCount {
                total_length,
                piece_length,
                expected,
                found: pieces.len(),
            });
        }
        if expected > u64::from(u32::MAX) {
            return Err(MetainfoError::Invalid {
                field: if has_v1 {
                    "info.pieces"
                } else {
                    "info.file tree"
                }
                .into(),
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
            v2,
            warnings,
            raw: raw.to_vec(),
            info_hash,
        })
    }

    /// True when the torrent has v1 piece hashes (a v1 or hybrid torrent).
    pub fn has_v1(&self) -> bool {
        !self.pieces.is_empty()
    }

    /// `meta version`: 1, or 2 for v2-only and hybrid torrents.
    pub fn meta_version(&self) -> u8 {
        if self.v2.is_some() {
            2
        } else {
            1
        }
    }

    /// Number of pieces as a client counts them: the v1 pieces, or for a v2-only torrent the
    /// v2 pieces (each file rounded up to whole pieces). Same as libtorrent's `num_pieces()`.
    pub fn piece_count(&self) -> u64 {
        self.total_length.div_ceil(self.piece_length)
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

/// The v1 fields: `pieces`, and the files of `length` (one file named `name`) or `files`.
/// Returns the piece hashes, the files and whether the torrent is multi-file.
fn v1_layout(
    d: &BTreeMap<Vec<u8>, Value>,
    name: &str,
    warnings: &mut Vec<String>,
) -> Result<(Vec<[u8; 20]>, Vec<FileEntry>, bool)> {
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
            let attr = attributes(d);
            let file = FileEntry {
                path: vec![name.to_string()],
                length,
                offset: 0,
                padding: false,
                executable: attr.contains(&b'x'),
                hidden: attr.contains(&b'h'),
                symlink: None,
            };
            (vec![file], false)
        }
        (None, Some(list)) => (files(list, warnings)?, true),
    };
    Ok((pieces, files, multi_file))
}

/// Reads `info.files`: lengths, offsets, attributes, and paths made safe and unique; every
/// change is pushed to `warnings`.
fn files(list: &Value, warnings: &mut Vec<String>) -> Result<Vec<FileEntry>> {
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
        let attr = attributes(d);
        let mut padding = attr.contains(&b'p');
        // A symlink takes no room in the byte space, whatever its `length` says (libtorrent);
        // without a `symlink path` it is an empty file.
        let symlink_path = if attr.contains(&b'l') {
            d.get(&b"symlink path"[..])
                .map(|v| components(v, &format!("{field}.symlink path")))
                .transpose()?
        } else {
            None
        };
        let length = if attr.contains(&b'l') {
            0
        } else {
            match d.get(&b"length"[..]) {
                Some(v) => non_negative(v, &format!("{field}.length"))?,
                None => return Err(missing(&format!("{field}.length"))),
            }
        };
        let pfield = format!("{field}.path");
        let given = match path_variant_utf8(d) {
            Some(p) => p,
            None => match d.get(&b"path"[..]) {
                Some(v) => components(v, &pfield)?,
                None if padding => vec![".pad".into(), length.to_string()],
                None => return Err(missing(&pfield)),
            },
        };
        let path = match (given.is_empty(), padding) {
            (false, _) => sanitize_path(&given),
            (true, true) => vec![".pad".into(), length.to_string()],
            (true, false) => {
                return Err(MetainfoError::Invalid {
                    field: pfield,
                    why: "the path has no components".into(),
                })
            }
        };
        if path != given && !padding {
            warnings.push(sanitized_warning(&pfield, &given, &path));
        }
        padding |= path.iter().any(|c| c.contains("_____padding_file_"));
        out.push(FileEntry {
            path,
            length,
            offset,
            padding,
            executable: attr.contains(&b'x'),
            hidden: attr.contains(&b'h'),
            symlink: symlink_path.map(|given| Symlink {
                given,
                target: None,
            }),
        });
        offset = offset
            .checked_add(length)
            .ok_or_else(|| MetainfoError::Invalid {
                field: format!("{field}.length"),
                why: "the total length overflows 64 bits".into(),
            })?;
    }
    number_duplicates(&mut out, warnings);
    resolve_symlinks(&mut out, warnings);
    Ok(out)
}

/// A file's BEP 47 `attr` letters (empty when absent or not a byte string).
fn attributes(d: &BTreeMap<Vec<u8>, Value>) -> &[u8] {
    d.get(&b"attr"[..])
        .and_then(Value::as_bytes)
        .unwrap_or_default()
}

/// A list of path components (`path`, `symlink path`) as text.
fn components(v: &Value, field: &str) -> Result<Vec<String>> {
    let comps = v.as_list().ok_or_else(|| wrong(field, "a list", v))?;
    comps
        .iter()
        .enumerate()
        .map(|(j, c)| text(c, &format!("{field}[{j}]")))
        .collect()
}

/// Longest component libtorrent writes (in bytes) before it keeps only the extension.
const MAX_COMPONENT: usize = 240;

/// Unicode controls that change the writing direction: libtorrent removes them, since they can
/// disguise a file's extension (`evil\u{202e}gpj.exe` shows as `evilexe.jpg`).
const DIRECTION_CONTROLS: [char; 7] = [
    '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{200e}', '\u{200f}',
];

/// One path component as libtorrent 2.0 writes it, or `None` when it is dropped (`.`, `..`,
/// or nothing left). `/`, `\\`, NUL and direction controls are removed, other control
/// characters become `_`, an empty component becomes `_`, and a component longer than
/// [`MAX_COMPONENT`] bytes is cut there, keeping an extension of up to 10 bytes. The result
/// is always one plain name (see [`is_plain`]).
pub fn sanitize_component(given: &str) -> Option<String> {
    if given.is_empty() {
        return Some("_".into());
    }
    let mut out = String::with_capacity(given.len().min(MAX_COMPONENT + 10));
    let mut at = 0; // where the next character of `given` starts
    let mut extension_kept = false;
    while let Some(c) = given[at..].chars().next() {
        at += c.len_utf8();
        if matches!(c, '/' | '\\' | '\0') || DIRECTION_CONTROLS.contains(&c) {
            continue;
        }
        out.push(if c < ' ' { '_' } else { c });
        if out.len() >= MAX_COMPONENT && !extension_kept {
            // libtorrent: a `.` among the last 9 bytes, after this character, starts the
            // extension to keep; without one the component ends here.
            let from = at.max(given.len().saturating_sub(9));
            match given.as_bytes()[from..].iter().rposition(|&b| b == b'.') {
                Some(dot) => {
                    extension_kept = true;
                    at = from + dot;
                }
                None => break,
            }
        }
    }
    let only_dots = out.bytes().all(|b| b == b'.');
    if only_dots && out.len() <= 2 {
        None
    } else {
        Some(out)
    }
}

/// A path sanitized component by component ([`sanitize_component`]); `_` when no component
/// is left, as libtorrent does.
fn sanitize_path(given: &[String]) -> Vec<String> {
    let out: Vec<String> = given.iter().filter_map(|c| sanitize_component(c)).collect();
    if out.is_empty() {
        vec!["_".into()]
    } else {
        out
    }
}

/// True for a component that is one plain name: what [`sanitize_component`] returns.
fn is_plain(c: &str) -> bool {
    sanitize_component(c).as_deref() == Some(c)
}

/// Why a component needed sanitizing (for the warning), or `None` when it is a plain name.
fn component_problem(c: &str) -> Option<&'static str> {
    if c.is_empty() {
        Some("an empty component becomes `_`")
    } else if c == "." || c == ".." {
        Some("`.` and `..` components are dropped")
    } else if c.contains('/') || c.contains('\\') {
        Some("`/` and `\\` inside a component are removed")
    } else if c.contains('\0') {
        Some("NUL bytes are removed")
    } else if c.chars().any(|ch| ch < ' ') {
        Some("control characters become `_`")
    } else if c.chars().any(|ch| DIRECTION_CONTROLS.contains(&ch)) {
        Some("text-direction controls are removed")
    } else if c.len() > MAX_COMPONENT {
        Some("a component is cut to 240 bytes")
    } else {
        None
    }
}

/// The warning for a path (or name) that is written differently from how it is given.
fn sanitized_warning(field: &str, given: &[String], written: &[String]) -> String {
    let why = given
        .iter()
        .find_map(|c| component_problem(c))
        .unwrap_or("nothing is left of it");
    format!(
        "unsafe path {:?} in `{field}` ({why}): written as {:?}",
        given.join("/"),
        written.join("/")
    )
}

/// Gives files that land on a path already taken (by an earlier file, or by a directory of
/// any file) a numbered name, as libtorrent does: `a.txt` becomes `a.1.txt`, then `a.2.txt`;
/// a file `a` beside a directory `a/` becomes `a.1`. Padding files are never written and keep
/// their names (they may repeat).
fn number_duplicates(files: &mut [FileEntry], warnings: &mut Vec<String>) {
    let mut taken: HashSet<String> = HashSet::new();
    for f in files.iter().filter(|f| !f.padding) {
        for n in 1..f.path.len() {
            taken.insert(f.path[..n].join("/"));
        }
    }
    for (i, f) in files.iter_mut().enumerate().filter(|(_, f)| !f.padding) {
        let given = f.path.join("/");
        if taken.insert(given.clone()) {
            continue;
        }
        let Some(last) = f.path.pop() else { continue };
        let (base, ext) = last
            .rfind('.')
            .map_or((&last[..], ""), |d| last.split_at(d));
        let dir: String = f.path.iter().map(|c| format!("{c}/")).collect();
        let renamed = (1u64..)
            .map(|n| format!("{base}.{n}{ext}"))
            .find(|cand| taken.insert(format!("{dir}{cand}")))
            .unwrap_or_default();
        f.path.push(renamed);
        warnings.push(format!(
            "two files map to {given:?}: `info.files[{i}]` is written as {:?}",
            f.path.join("/")
        ));
    }
}

/// Fills in each symlink's [`Symlink::target`]: its `symlink path` taken relative to the
/// torrent's root when that names a file or directory of the torrent (BEP 47), otherwise
/// relative to the link's directory (what libtorrent's `create_torrent` writes) as long as it
/// stays inside the torrent; a target that leaves the torrent is `None`, with a warning.
fn resolve_symlinks(files: &mut [FileEntry], warnings: &mut Vec<String>) {
    let mut known: HashSet<Vec<String>> = HashSet::new();
    for f in files.iter().filter(|f| !f.padding) {
        for n in 1..=f.path.len() {
            known.insert(f.path[..n].to_vec());
        }
    }
    for (i, f) in files.iter_mut().enumerate() {
        let Some(link) = &mut f.symlink else { continue };
        let dir = &f.path[..f.path.len() - 1];
        let from_root: Vec<String> = link
            .given
            .iter()
            .filter_map(|c| sanitize_component(c))
            .collect();
        let target = if known.contains(&from_root) {
            Some(from_root)
        } else {
            lexical_join(dir, &link.given)
        };
        link.target = target.map(|t| {
            let up = std::iter::repeat_n("..".to_string(), dir.len());
            up.chain(t).collect()
        });
        if link.target.is_none() {
            warnings.push(format!(
                "symlink `info.files[{i}]` {:?} points to {:?}, outside the torrent: it will \
                 not be created",
                f.path.join("/"),
                link.given.join("/")
            ));
        }
    }
}

/// `dir` joined with `rel`, `.` and `..` resolved: `None` when it climbs above the root, ends
/// at the root, or a component is not a plain name.
fn lexical_join(dir: &[String], rel: &[String]) -> Option<Vec<String>> {
    let mut out = dir.to_vec();
    for c in rel {
        match c.as_str() {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c if is_plain(c) => out.push(c.to_string()),
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
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

/// A byte string as text. Bytes that are not UTF-8 become U+FFFD (never a `/`, `.` or NUL;
/// libtorrent writes `_` for them instead).
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
        assert_eq!(
            Info::from_metadata(raw, &InfoHashes::V1(want)).unwrap(),
            t.info
        );
        assert!(matches!(
            Info::from_metadata(raw, &InfoHashes::V1([0; 20])),
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

    fn paths_of(t: &Torrent) -> Vec<String> {
        t.info.files.iter().map(FileEntry::display_path).collect()
    }

    /// What libtorrent 2.0.8 writes for each given path (checked with python3-libtorrent:
    /// `torrent_info(...).files().file_path(i)`, without the torrent's name).
    #[test]
    fn unsafe_paths_are_sanitized_like_libtorrent() {
        for (given, written) in [
            (&["..", "..", "etc", "passwd"][..], "etc/passwd"),
            (&["a", ".", "b"], "a/b"),
            (&["a", "", "b"], "a/_/b"),
            (&[""], "_"),
            (&["..", "."], "_"),
            (&["/etc/passwd"], "etcpasswd"),
            (&["a/b", "c\\d"], "ab/cd"),
            (&["a/../../b"], "a....b"),
            (&["a\u{1}b"], "a_b"),
            (&["nul\0byte"], "nulbyte"),
            (&["a\u{202e}b"], "ab"),
            (&["..."], "..."),
            (&["/.."], "_"),
        ] {
            let t = Torrent::parse(&torrent(multi(&[given], 10, 1))).unwrap();
            assert_eq!(paths_of(&t), [written], "{given:?}");
            let changed = usize::from(given.join("/") != written);
            assert_eq!(t.warnings().len(), changed, "{given:?}: {:?}", t.warnings());
            let rel = t.info.files[0].relative_path();
            assert!(rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_))));
        }
        let t = Torrent::parse(&torrent(multi(
            &[&["ok"], &["..", "..", "etc", "passwd"]],
            5,
            1,
        )))
        .unwrap();
        assert_eq!(
            t.warnings(),
            ["unsafe path \"../../etc/passwd\" in `info.files[1].path` (`.` and `..` components \
              are dropped): written as \"etc/passwd\""]
        );
        // a drive letter is a plain name on Linux (libtorrent keeps it too)
        let t = Torrent::parse(&torrent(multi(&[&["C:", "x"]], 10, 1))).unwrap();
        assert_eq!(paths_of(&t), ["C:/x"]);
        assert!(t.warnings().is_empty());
        // no components at all is refused, as libtorrent does ("missing name")
        let e = Torrent::parse(&torrent(multi(&[&[]], 10, 1))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `info.files[0].path`: the path has no components"
        );
    }

    #[test]
    fn names_are_sanitized_and_a_vanished_name_becomes_the_info_hash() {
        for (given, written) in [("a/b", "ab"), ("", "_")] {
            let mut info = single(5, 10, 1);
            if let Value::Dict(d) = &mut info {
                d.insert(b"name".to_vec(), b(given));
            }
            let t = Torrent::parse(&torrent(info)).unwrap();
            assert_eq!(t.info.name, written);
            assert_eq!(t.info.files[0].path, [written]);
            assert_eq!(t.warnings().len(), 1);
        }
        let mut info = single(5, 10, 1);
        if let Value::Dict(d) = &mut info {
            d.insert(b"name".to_vec(), b(".."));
        }
        let t = Torrent::parse(&torrent(info)).unwrap();
        assert_eq!(t.info.name, t.info_hash_hex());
        assert_eq!(
            t.warnings(),
            [format!(
                "unsafe path \"..\" in `info.name` (`.` and `..` components are dropped): \
                 written as \"{}\"",
                t.info_hash_hex()
            )]
        );
    }

    #[test]
    fn long_components_keep_their_extension() {
        let long = format!("{}.tar.gz", "x".repeat(300));
        let cut = sanitize_component(&long).unwrap();
        assert_eq!(cut, format!("{}.gz", "x".repeat(240)));
        let no_ext = "y".repeat(300);
        assert_eq!(sanitize_component(&no_ext).unwrap(), "y".repeat(240));
        let short = "é".repeat(200); // 400 bytes, no extension: cut after 240 bytes
        assert_eq!(sanitize_component(&short).unwrap(), "é".repeat(120));
    }

    #[test]
    fn relative_path_cannot_escape_even_if_built_by_hand() {
        let f = FileEntry {
            path: vec!["..".into(), "/abs".into(), "ok".into()],
            length: 1,
            offset: 0,
            padding: false,
            executable: false,
            hidden: false,
            symlink: None,
        };
        assert_eq!(f.relative_path(), PathBuf::from("_/_/ok"));
    }

    /// libtorrent's numbering (`resolve_duplicate_filenames`), checked with python3-libtorrent.
    #[test]
    fn duplicates_get_numbered_names_but_padding_may_repeat() {
        for (paths, written) in [
            (
                &[&["a.txt"][..], &["a.txt"], &["a.txt"]][..],
                &["a.txt", "a.1.txt", "a.2.txt"][..],
            ),
            (&[&["a"], &["a", "b"]], &["a.1", "a/b"]),
            (&[&["a", "b"], &["a"]], &["a/b", "a.1"]),
            (&[&["a"], &["a"], &["a.1"]], &["a", "a.1", "a.1.1"]),
            (&[&["a", "b"], &["a/b"], &["ab"]], &["a/b", "ab", "ab.1"]),
        ] {
            let t =
                Torrent::parse(&torrent(multi(paths, 5, (paths.len() * 5).div_ceil(10)))).unwrap();
            assert_eq!(paths_of(&t), written, "{paths:?}");
        }
        let t = Torrent::parse(&torrent(multi(&[&["d", "x.bin"], &["d", "x.bin"]], 5, 1))).unwrap();
        assert_eq!(
            t.warnings(),
            ["two files map to \"d/x.bin\": `info.files[1]` is written as \"d/x.1.bin\""]
        );
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
        assert!(t.warnings().is_empty());
    }

    #[test]
    fn bep47_padding_symlinks_and_attributes() {
        let file = |path: &[&str], len: i64, attr: &str| {
            let mut f = vec![
                ("length", Value::Int(len)),
                ("path", Value::List(path.iter().map(|c| b(c)).collect())),
            ];
            if !attr.is_empty() {
                f.push(("attr", b(attr)));
            }
            Value::dict(f)
        };
        let link = |path: &[&str], to: &[&str]| {
            Value::dict([
                ("attr", b("l")),
                ("path", Value::List(path.iter().map(|c| b(c)).collect())),
                (
                    "symlink path",
                    Value::List(to.iter().map(|c| b(c)).collect()),
                ),
            ])
        };
        let files = vec![
            file(&["sub", "a.sh"], 3, "x"),
            // a padding file without `path`, as BEP 47 allows
            Value::dict([("attr", b("p")), ("length", Value::Int(13))]),
            file(&[".hidden"], 4, "h"),
            link(&["root-rel"], &["sub", "a.sh"]),
            link(&["sub", "dir-rel"], &["..", "sub", "a.sh"]),
            link(&["sub", "up"], &[".."]),
            link(&["out"], &["..", "..", "etc", "passwd"]),
            link(&["abs"], &["/etc"]),
            // a symlink's `length` does not count (libtorrent says 20 here, not 445)
            Value::dict([
                ("attr", b("l")),
                ("length", Value::Int(425)),
                ("path", Value::List(vec![b("sized")])),
                ("symlink path", Value::List(vec![b(".hidden")])),
            ]),
            // `l` without `symlink path`: an empty file
            Value::dict([("attr", b("l")), ("path", Value::List(vec![b("bare")]))]),
        ];
        let info = Value::dict([
            ("name", b("dir")),
            ("files", Value::List(files)),
            ("piece length", Value::Int(16)),
            ("pieces", hashes(2)),
        ]);
        let t = Torrent::parse(&torrent(info)).unwrap();
        let i = &t.info;
        assert_eq!(i.total_length, 20);
        assert_eq!(
            paths_of(&t),
            [
                "sub/a.sh",
                ".pad/13",
                ".hidden",
                "root-rel",
                "sub/dir-rel",
                "sub/up",
                "out",
                "abs",
                "sized",
                "bare"
            ]
        );
        let attrs: Vec<String> = i.files.iter().map(FileEntry::attr).collect();
        assert_eq!(attrs, ["x", "p", "h", "l", "l", "l", "l", "l", "l", ""]);
        let offsets: Vec<u64> = i.files.iter().map(|f| f.offset).collect();
        assert_eq!(offsets, [0, 3, 16, 20, 20, 20, 20, 20, 20, 20]);
        let targets: Vec<Option<PathBuf>> = i
            .files
            .iter()
            .filter_map(|f| f.symlink.as_ref().map(|s| s.target.clone()))
            .collect();
        assert_eq!(
            targets,
            [
                Some("sub/a.sh".into()),
                Some("../sub/a.sh".into()),
                None, // `..` from sub/ is the root itself
                None,
                None,
                Some(".hidden".into()),
            ]
        );
        let outside = t
            .warnings()
            .into_iter()
            .filter(|w| w.contains("outside the torrent"));
        assert_eq!(outside.count(), 3, "{:?}", t.warnings());
        assert_eq!(i.file_spans(0..20), vec![(0, 0..3), (1, 0..13), (2, 0..4)]);
    }

    #[test]
    fn trailing_bytes_are_a_warning_and_the_hash_is_of_the_info_span() {
        let clean = torrent(single(25, 10, 3));
        let mut file = clean.clone();
        file.extend_from_slice(b"\ngarbage");
        let t = Torrent::parse(&file).unwrap();
        assert_eq!(t.info_hash, Torrent::parse(&clean).unwrap().info_hash);
        assert_eq!(
            t.warnings(),
            ["8 trailing byte(s) after the torrent's dictionary are ignored"]
        );
        // the info dictionary itself (BEP 9 metadata) must be exact
        let mut raw = Torrent::parse(&clean).unwrap().info.raw_bytes().to_vec();
        raw.push(b'x');
        assert!(Info::from_raw_bytes(&raw).is_err());
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
        assert_eq!(
            Torrent::parse(&v2.encode()).unwrap_err().to_string(),
            "missing field `info.meta version`"
        );
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
