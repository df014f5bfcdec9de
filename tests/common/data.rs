//! Deterministic test data, torrents made by `mktorrent`, and `transmission-show` as a second opinion.
//!
//! The data comes from a seeded SplitMix64 generator, so the same (length, seed) always gives the same
//! bytes and therefore the same info hash, run after run and machine after machine.

use super::run_ok;
use serde::Deserialize;
use sha1::{Digest, Sha1};
use std::fs;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for test payloads.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Writes `len` pseudo-random bytes made from `seed` to `path` (creating parent directories).
pub fn make_data(path: &Path, len: u64, seed: u64) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create data dir");
    }
    let file = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = SplitMix64(seed);
    let mut left = len;
    let mut chunk = vec![0u8; 1 << 16];
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n]).expect("write data");
        left -= n as u64;
    }
    out.flush().expect("flush data");
}

/// Makes a directory tree under `root`: `files` are (relative path with `/`, length); file `i` gets seed
/// `seed + i`. Nested directories are created as needed.
pub fn make_tree(root: &Path, files: &[(&str, u64)], seed: u64) {
    for (i, (rel, len)) in files.iter().enumerate() {
        make_data(&root.join(rel), *len, seed.wrapping_add(i as u64));
    }
}

/// Lowercase hex SHA-1 of `bytes`.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

/// Lowercase hex SHA-1 of a file's contents (streamed).
pub fn sha1_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// One file of a torrent: its path inside the torrent (below the torrent's name for multi-file
/// torrents; just the name for single-file ones) and its length.
#[derive(Clone, Debug)]
pub struct TorrentFile {
    pub path: PathBuf,
    pub length: u64,
}

/// What the tests know about a .torrent file: parsed by serde_bencode, info hash by transmission-show.
#[derive(Clone, Debug)]
pub struct Torrent {
    pub path: PathBuf,
    /// 40 lowercase hex digits, from transmission-show (an independent implementation).
    pub info_hash: String,
    pub name: String,
    pub announce: Option<String>,
    pub tiers: Vec<Vec<String>>,
    pub piece_length: u64,
    pub total_length: u64,
    pub multi_file: bool,
    /// In torrent order.
    pub files: Vec<TorrentFile>,
    /// 40 lowercase hex digits each.
    pub piece_hashes: Vec<String>,
}

#[derive(Deserialize)]
struct RawMeta {
    announce: Option<String>,
    #[serde(rename = "announce-list")]
    announce_list: Option<Vec<Vec<String>>>,
    info: RawInfo,
}

#[derive(Deserialize)]
struct RawInfo {
    name: String,
    #[serde(rename = "piece length")]
    piece_length: u64,
    pieces: serde_bytes::ByteBuf,
    length: Option<u64>,
    files: Option<Vec<RawFile>>,
}

#[derive(Deserialize)]
struct RawFile {
    length: u64,
    path: Vec<String>,
}

impl Torrent {
    /// Reads a .torrent file; panics if it is not a valid torrent.
    pub fn load(path: &Path) -> Torrent {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let raw: RawMeta = serde_bencode::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        let show = transmission_show(path);
        let (multi_file, files) = match (raw.info.length, raw.info.files) {
            (Some(length), None) => (
                false,
                vec![TorrentFile {
                    path: PathBuf::from(&raw.info.name),
                    length,
                }],
            ),
            (None, Some(files)) => (
                true,
                files
                    .into_iter()
                    .map(|f| TorrentFile {
                        path: f.path.iter().collect(),
                        length: f.length,
                    })
                    .collect(),
            ),
            _ => panic!("{}: neither length nor files", path.display()),
        };
        let piece_hashes: Vec<String> = raw.info.pieces.chunks(20).map(hex::encode).collect();
        assert_eq!(
            show.piece_count,
            piece_hashes.len(),
            "transmission-show disagrees on the piece count"
        );
        assert_eq!(
            show.piece_size, raw.info.piece_length,
            "transmission-show disagrees on the piece size"
        );
        Torrent {
            path: path.to_path_buf(),
            info_hash: show.hash,
            name: raw.info.name,
            announce: raw.announce,
            tiers: raw.announce_list.unwrap_or_default(),
            piece_length: raw.info.piece_length,
            total_length: files.iter().map(|f| f.length).sum(),
            multi_file,
            files,
            piece_hashes,
        }
    }

    /// The raw 20-byte info hash.
    pub fn info_hash_bytes(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        hex::decode_to_slice(&self.info_hash, &mut out).expect("40 hex digits");
        out
    }

    /// `%xx`-escaped info hash for tracker URLs.
    pub fn info_hash_urlencoded(&self) -> String {
        url_escape(&self.info_hash_bytes())
    }

    pub fn piece_count(&self) -> usize {
        self.piece_hashes.len()
    }

    /// Length of piece `index` (the last one may be short).
    pub fn piece_len(&self, index: usize) -> u64 {
        let start = index as u64 * self.piece_length;
        (self.total_length - start).min(self.piece_length)
    }

    /// Where the content lives below `parent` (the directory a seeder is told to use): the file for a
    /// single-file torrent, the top directory for a multi-file one.
    pub fn content_path(&self, parent: &Path) -> PathBuf {
        parent.join(&self.name)
    }

    /// Paths of the torrent's files below `parent`, in torrent order, with their lengths.
    pub fn file_paths(&self, parent: &Path) -> Vec<(PathBuf, u64)> {
        if self.multi_file {
            let top = self.content_path(parent);
            self.files
                .iter()
                .map(|f| (top.join(&f.path), f.length))
                .collect()
        } else {
            vec![(self.content_path(parent), self.total_length)]
        }
    }

    /// The bytes of piece `index` read from the source data below `parent` (pieces span files).
    pub fn piece_bytes(&self, parent: &Path, index: usize) -> Vec<u8> {
        let mut want_start = index as u64 * self.piece_length;
        let mut want = self.piece_len(index);
        let mut out = Vec::with_capacity(want as usize);
        let mut file_start = 0u64;
        for (path, len) in self.file_paths(parent) {
            let file_end = file_start + len;
            if want > 0 && want_start < file_end && len > 0 {
                let offset = want_start - file_start;
                let n = want.min(len - offset);
                let mut f = fs::File::open(&path).expect("open source file");
                f.seek(SeekFrom::Start(offset)).expect("seek");
                let mut buf = vec![0u8; n as usize];
                f.read_exact(&mut buf).expect("read source piece");
                out.extend_from_slice(&buf);
                want_start += n;
                want -= n;
            }
            file_start = file_end;
        }
        assert_eq!(want, 0, "source data shorter than the torrent");
        out
    }

    /// Checks every piece hash against the source data below `parent` (proves the fixture is sane).
    pub fn verify_source(&self, parent: &Path) {
        for i in 0..self.piece_count() {
            assert_eq!(
                sha1_hex(&self.piece_bytes(parent, i)),
                self.piece_hashes[i],
                "{}: piece {i} of the source data does not match its hash",
                self.name
            );
        }
    }
}

/// Percent-escapes every byte (`%ab`), as trackers accept for `info_hash` and `peer_id`.
pub fn url_escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02x}")).collect()
}

/// Makes `out` from `content` (a file, or a directory for a multi-file torrent) with `mktorrent`:
/// pieces of `2^piece_len_log2` bytes (15..=28); each inner slice of `tiers` is one announce-list tier
/// (the first URL of the first tier is also `announce`). No creation date, so equal inputs give equal
/// files. The info hash depends only on the content, name and piece length, not on the trackers.
pub fn mktorrent(content: &Path, out: &Path, piece_len_log2: u32, tiers: &[&[&str]]) -> Torrent {
    let mut cmd = Command::new("mktorrent");
    cmd.arg("-d") // no creation date
        .arg("-l")
        .arg(piece_len_log2.to_string())
        .arg("-o")
        .arg(out);
    // mktorrent 1.1 refuses to overwrite (and has no -f).
    let _ = fs::remove_file(out);
    for tier in tiers {
        cmd.arg("-a").arg(tier.join(","));
    }
    cmd.arg(content);
    run_ok(&mut cmd);
    Torrent::load(out)
}

/// What `transmission-show` says about a torrent.
#[derive(Clone, Debug, Default)]
pub struct ShowInfo {
    pub name: String,
    pub hash: String,
    pub piece_count: usize,
    /// Bytes (parsed from e.g. `256.0 KiB`).
    pub piece_size: u64,
    /// Tier by tier.
    pub tiers: Vec<Vec<String>>,
    /// File lines in torrent order (`-u`), like `dir/file.bin (1.00 MB)`.
    pub files: Vec<String>,
}

/// Runs `transmission-show -u` and parses its GENERAL, TRACKERS and FILES sections.
pub fn transmission_show(torrent: &Path) -> ShowInfo {
    let text = run_ok(Command::new("transmission-show").arg("-u").arg(torrent));
    let mut info = ShowInfo::default();
    let mut section = "";
    for line in text.lines() {
        let t = line.trim();
        match t {
            "GENERAL" | "TRACKERS" | "FILES" => {
                section = if t == "GENERAL" {
                    "g"
                } else if t == "TRACKERS" {
                    "t"
                } else {
                    "f"
                };
                continue;
            }
            "" => continue,
            _ => {}
        }
        match section {
            "g" => {
                if let Some(v) = t.strip_prefix("Name: ") {
                    info.name = v.to_string();
                } else if let Some(v) = t.strip_prefix("Hash: ") {
                    info.hash = v.to_string();
                } else if let Some(v) = t.strip_prefix("Piece Count: ") {
                    info.piece_count = v.parse().expect("piece count");
                } else if let Some(v) = t.strip_prefix("Piece Size: ") {
                    info.piece_size = parse_size(v);
                }
            }
            "t" => {
                if t.starts_with("Tier #") {
                    info.tiers.push(Vec::new());
                } else if let Some(tier) = info.tiers.last_mut() {
                    tier.push(t.to_string());
                }
            }
            "f" => info.files.push(t.to_string()),
            _ => {}
        }
    }
    assert_eq!(
        info.hash.len(),
        40,
        "transmission-show gave no hash:\n{text}"
    );
    info
}

/// `256.0 KiB` → 262144 (transmission-show's binary units for piece sizes).
fn parse_size(v: &str) -> u64 {
    let mut it = v.split_whitespace();
    let num: f64 = it.next().and_then(|n| n.parse().ok()).expect("size number");
    let unit = match it.next() {
        Some("B") | None => 1.0,
        Some("KiB") => 1024.0,
        Some("MiB") => 1024.0 * 1024.0,
        Some("GiB") => 1024.0 * 1024.0 * 1024.0,
        Some(u) => panic!("unknown unit {u} in {v:?}"),
    };
    (num * unit).round() as u64
}

/// Checks that every file of `torrent` where the download went (`got`) has the length and SHA-1 of
/// the same file of the source data below `src_parent`.
pub fn assert_same_files(torrent: &Torrent, src_parent: &Path, got: &DownloadedAt) {
    let src = torrent.file_paths(src_parent);
    let got_paths: Vec<PathBuf> = match got {
        DownloadedAt::File(p) => {
            assert!(
                !torrent.multi_file,
                "a multi-file torrent downloads into a directory"
            );
            vec![p.clone()]
        }
        DownloadedAt::Dir(d) => torrent.files.iter().map(|f| d.join(&f.path)).collect(),
    };
    for ((src_path, len), got_path) in src.iter().zip(&got_paths) {
        let meta = fs::metadata(got_path)
            .unwrap_or_else(|e| panic!("{}: missing download ({e})", got_path.display()));
        assert_eq!(meta.len(), *len, "{}: wrong length", got_path.display());
        assert_eq!(
            sha1_file(got_path),
            sha1_file(src_path),
            "{}: content differs from {}",
            got_path.display(),
            src_path.display()
        );
    }
}

/// Where a download went: a single file, or the directory that holds a multi-file torrent's files
/// (`DIR/<path in torrent>`, without the torrent's name).
pub enum DownloadedAt {
    File(PathBuf),
    Dir(PathBuf),
}
