//! The demo's content: a small directory whose bytes are the same on every machine and every
//! run (a text file, a pseudo-random binary file and a file that ends in a short last piece),
//! and the torrent made of it with [`crate::create`].
//!
//! Owns only the files under the demo's `data/` directory and its `.torrent`; never touches
//! anything else in the output directory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::create::{self, CreateOptions, Layout};
use crate::metainfo::Torrent;

/// The torrent's name: the directory that holds the files, and the stem of the trace files.
pub const NAME: &str = "classroom";

/// The smallest `--size`: a few pieces in every file.
pub const MIN_SIZE: u64 = 64 * 1024;

/// Bytes past the size that the last file gets, so the last piece is short.
const TAIL_EXTRA: u64 = 1234;

/// Pieces are 256 KiB, or bigger for very big `--size` (at most ~1500 pieces).
pub fn piece_length(size: u64) -> u64 {
    create::default_piece_length(size).max(256 * 1024)
}

/// The files of the content, in torrent order, with their lengths for a `size` byte demo:
/// one sixteenth text, then the binary file, then an eighth (plus a little) that ends in a
/// short last piece.
pub fn files(size: u64) -> [(&'static str, u64); 3] {
    let size = size.max(MIN_SIZE);
    let text = size / 16;
    let mut tail = size / 8 + TAIL_EXTRA;
    let binary = size - text - size / 8;
    if (text + binary + tail) % piece_length(size) == 0 {
        tail += 1;
    }
    [
        ("README.txt", text),
        ("random.bin", binary),
        ("short-last-piece.bin", tail),
    ]
}

/// The content and its torrent, made.
pub struct Content {
    /// The directory named [`NAME`] that holds the files (`seed --data`).
    pub dir: PathBuf,
    /// The `.torrent` file.
    pub torrent_path: PathBuf,
    pub torrent: Torrent,
}

/// Writes the files under `data_parent/classroom/` and the torrent (announcing
/// `announce`, no creation date, so the same size gives the same info hash) at
/// `torrent_path`. Blocking file I/O: run it before the runtime or on the blocking pool.
pub fn make(data_parent: &Path, torrent_path: &Path, size: u64, announce: &str) -> Result<Content> {
    let dir = data_parent.join(NAME);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = SplitMix64(0x6274_2d74_7261_6365); // "bt-trace"
    for (name, len) in files(size) {
        let path = dir.join(name);
        let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::new(f);
        if name.ends_with(".txt") {
            write_text(&mut w, len)
        } else {
            write_random(&mut w, len, &mut rng)
        }
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let layout = Layout::scan(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let opts = CreateOptions {
        announce: vec![announce.to_string()],
        piece_length: Some(piece_length(size)),
        private: false,
        web_seeds: Vec::new(),
        comment: Some("the bt-trace classroom swarm (bt-trace demo)".into()),
        created_by: Some(format!("bt-trace {}", env!("CARGO_PKG_VERSION"))),
        creation_date: None,
        ..Default::default()
    };
    let made = layout
        .build(&opts, |_| {})
        .with_context(|| format!("hashing {}", dir.display()))?;
    std::fs::write(torrent_path, &made.bytes)
        .with_context(|| format!("writing {}", torrent_path.display()))?;
    Ok(Content {
        dir,
        torrent_path: torrent_path.to_path_buf(),
        torrent: made.torrent,
    })
}

/// Numbered lines of plain text, cut at exactly `len` bytes.
fn write_text(w: &mut impl Write, len: u64) -> std::io::Result<()> {
    let mut left = len;
    let mut n = 1u64;
    while left > 0 {
        let line = format!(
            "{n:06} The bt-trace classroom swarm: every byte of this file is the same on every \
             machine, so every run shows the same pieces.\n"
        );
        let take = left.min(line.len() as u64) as usize;
        w.write_all(&line.as_bytes()[..take])?;
        left -= take as u64;
        n += 1;
    }
    Ok(())
}

/// `len` pseudo-random bytes from `rng`.
fn write_random(w: &mut impl Write, len: u64, rng: &mut SplitMix64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// SplitMix64: a tiny generator whose output is fixed by its definition (a library's
/// generator may change between versions, and the info hash must not).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_piece_is_short() {
        for size in [
            MIN_SIZE,
            4 << 20,
            (4 << 20) - TAIL_EXTRA,
            300 << 20,
            12_345_678,
        ] {
            let total: u64 = files(size).iter().map(|f| f.1).sum();
            assert_ne!(total % piece_length(size), 0, "size {size}");
            assert!(total >= size, "size {size}");
        }
    }

    #[test]
    fn same_size_same_torrent() {
        let a = tempfile::tempdir().expect("temp dir");
        let b = tempfile::tempdir().expect("temp dir");
        let url = "http://127.0.0.1:6969/announce";
        let ca = make(a.path(), &a.path().join("x.torrent"), MIN_SIZE, url).expect("make");
        let cb = make(b.path(), &b.path().join("x.torrent"), MIN_SIZE, url).expect("make");
        assert_eq!(ca.torrent.info_hash, cb.torrent.info_hash);
        assert_eq!(ca.torrent.info.files.len(), 3);
        assert!(ca.torrent.info.total_length % ca.torrent.info.piece_length != 0);
        let text = std::fs::read_to_string(ca.dir.join("README.txt")).expect("text");
        assert!(text.starts_with("000001 The bt-trace classroom swarm"));
        // a known value: the generator must never change
        let mut r = SplitMix64(0);
        assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
    }
}
