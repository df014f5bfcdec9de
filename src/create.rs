//! Making `.torrent` files (BEP 3, BEP 12 announce-list, BEP 19 web seeds, BEP 27 private).
//!
//! Two steps, so that a caller can show progress against the total size:
//! 1. [`Layout::scan`] walks the path: one file, or a directory's regular files in the order
//!    mktorrent uses (sorted by their `/`-joined relative path, byte by byte; hidden and empty
//!    files included), so the same data and piece length give mktorrent's info hash.
//! 2. [`Layout::build`] reads the files once, in that order, as one byte stream cut into pieces,
//!    hashes every piece with SHA-1 and returns the bencoded torrent (made with
//!    [`crate::bencode`]), checked by parsing it back with [`Torrent::parse`].
//!
//! The module is synchronous and pure apart from reading the data: paths in, bytes out. It
//! never writes a file and never touches the network; the `create` command writes the result.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::bencode::Value;
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
    /// The same bytes, parsed back.
    pub torrent: Torrent,
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

/// Checks a piece length given by the user: a power of two, 16 KiB to 256 MiB.
pub fn check_piece_length(n: u64) -> Result<u64> {
    if n.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&n) {
        Ok(n)
    } else {
        Err(CreateError::PieceLength(n))
    }
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

    /// Hashes the data and makes the torrent. `progress` is called with the bytes hashed so
    /// far after every piece.
    pub fn build(&self, opts: &CreateOptions, mut progress: impl FnMut(u64)) -> Result<Created> {
        let piece_length = match opts.piece_length {
            Some(n) => check_piece_length(n)?,
            None => default_piece_length(self.total_length),
        };
        let pieces = self.hash_pieces(piece_length, &mut progress)?;
        let bytes = self.encode(opts, piece_length, pieces);
        let torrent = Torrent::parse(&bytes)?;
        Ok(Created { bytes, torrent })
    }

    /// The SHA-1 of every piece, the files read as one stream in order.
    fn hash_pieces(&self, piece_length: u64, progress: &mut impl FnMut(u64)) -> Result<Vec<u8>> {
        let count = self.total_length.div_ceil(piece_length);
        let mut pieces = Vec::with_capacity(usize::try_from(count).unwrap_or(0) * 20);
        // piece_length ≤ MAX_PIECE_LENGTH (checked), so this fits in memory and in usize
        let mut buf = vec![0u8; piece_length as usize];
        let mut filled = 0usize;
        let mut done = 0u64;
        for f in &self.files {
            let file = File::open(&f.source).map_err(io_err(&f.source))?;
            let mut reader = file.take(f.length);
            let mut read = 0u64;
            loop {
                let n = reader.read(&mut buf[filled..]).map_err(io_err(&f.source))?;
                if n == 0 {
                    break;
                }
                filled += n;
                read += n as u64;
                if filled == buf.len() {
                    pieces.extend_from_slice(&Sha1::digest(&buf));
                    filled = 0;
                    done += piece_length;
                    progress(done);
                }
            }
            if read != f.length {
                return Err(CreateError::Changed {
                    path: f.source.clone(),
                    expected: f.length,
                    read,
                });
            }
        }
        if filled > 0 {
            pieces.extend_from_slice(&Sha1::digest(&buf[..filled]));
            progress(self.total_length);
        }
        Ok(pieces)
    }

    /// The bencoded torrent (dictionary keys come out sorted, as BEP 3 requires).
    fn encode(&self, opts: &CreateOptions, piece_length: u64, pieces: Vec<u8>) -> Vec<u8> {
        let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        let mut info = vec![
            ("name", Value::bytes(&self.name)),
            ("piece length", int(piece_length)),
            ("pieces", Value::Bytes(pieces)),
        ];
        if self.multi_file {
            let files = self
                .files
                .iter()
                .map(|f| {
                    let path = f.path.iter().map(Value::bytes).collect();
                    Value::dict([("length", int(f.length)), ("path", Value::List(path))])
                })
                .collect();
            info.push(("files", Value::List(files)));
        } else {
            info.push(("length", int(self.total_length)));
        }
        if opts.private {
            info.push(("private", Value::Int(1)));
        }

        let mut root = vec![("info", Value::dict(info))];
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
