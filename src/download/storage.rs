//! Where pieces live on disk.
//!
//! A torrent is one long byte space (all files end to end, in the order of the metainfo);
//! piece `i` covers `[i * piece_len, min((i + 1) * piece_len, total))`, so a piece may span
//! several files. Storage maps that byte space onto the files with positional reads and writes
//! (`pread`/`pwrite`), so any number of tasks can use it at once without a seek position.
//!
//! New files are created at their final length (sparse) before the download starts; files
//! that already hold data are first checked as they are (a file of another size is neither
//! cut nor grown before that, so an unrelated file can be reported before it is reused) and
//! then brought to their length ([`Storage::fit`]). Blocks are
//! written straight to their place as they arrive; a piece counts only once its SHA-1 over the
//! bytes on disk matches (v1 SHA-1 or the v2 merkle tree: [`PieceHashes`]). Resuming needs no side file: on start, every piece already on disk is
//! hashed (SHA-1 runs at ~2 GB/s with the CPU's SHA instructions) and the good ones are kept.
//! Because only verified pieces are trusted, a crash or `kill -9` at any moment loses at most
//! the pieces that were still incomplete.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::bitfield::Bitfield;
use crate::download::verify::PieceHashes;

/// One file of the torrent's byte space, as the storage places it on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    pub path: PathBuf,
    pub length: u64,
    /// BEP 47 padding: zeros that are never written (reads give zeros, writes are dropped).
    pub padding: bool,
    /// BEP 47 `x`: the file gets the executable bits (where it has read bits).
    pub executable: bool,
}

impl DiskFile {
    /// A plain file.
    pub fn plain(path: PathBuf, length: u64) -> DiskFile {
        DiskFile {
            path,
            length,
            padding: false,
            executable: false,
        }
    }
}

struct Slot {
    /// `None` for a padding file.
    file: Option<File>,
    path: PathBuf,
    /// Where this file starts in the torrent's byte space.
    offset: u64,
    length: u64,
    /// Its length when opened (0: new or empty).
    found: u64,
    /// Its length on disk now (the torrent's after [`Storage::fit`]).
    on_disk: u64,
}

pub struct Storage {
    slots: Vec<Slot>,
    piece_len: u64,
    total_len: u64,
    /// Whether any file already existed with data (then resume checks are worth doing).
    existed: bool,
}

impl Storage {
    /// Opens (creating as needed) the files of a torrent, in metainfo order; padding files are
    /// not created. Parent directories are created.
    pub fn open(files: &[DiskFile], piece_len: u64) -> io::Result<Storage> {
        let mut slots = Vec::with_capacity(files.len());
        let mut offset = 0u64;
        let mut existed = false;
        for f in files {
            let (path, length) = (&f.path, &f.length);
            if f.padding {
                slots.push(Slot {
                    file: None,
                    path: path.clone(),
                    offset,
                    length: *length,
                    found: 0,
                    on_disk: *length,
                });
                offset += length;
                continue;
            }
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
                }
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| with_path(e, path))?;
            let cur = file.metadata()?.len();
            existed |= cur > 0;
            let mut on_disk = cur;
            if cur == 0 && *length > 0 {
                file.set_len(*length).map_err(|e| with_path(e, path))?;
                on_disk = *length;
            }
            if f.executable {
                use std::os::unix::fs::PermissionsExt;
                let mode = file.metadata()?.permissions().mode();
                let exec = std::fs::Permissions::from_mode(mode | (mode & 0o444) >> 2);
                file.set_permissions(exec).map_err(|e| with_path(e, path))?;
            }
            slots.push(Slot {
                file: Some(file),
                path: path.clone(),
                offset,
                length: *length,
                found: cur,
                on_disk,
            });
            offset += length;
        }
        Ok(Storage {
            slots,
            piece_len,
            total_len: offset,
            existed,
        })
    }

    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// Whether files with data were already there when opened (a resumed download).
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// The files that held data of another length than the torrent's when opened: path, the
    /// length found, the torrent's.
    pub fn misfits(&self) -> impl Iterator<Item = (&Path, u64, u64)> {
        self.slots
            .iter()
            .filter(|s| s.found > 0 && s.found != s.length)
            .map(|s| (s.path.as_path(), s.found, s.length))
    }

    /// Brings every file to its length in the torrent (cut or grown, sparse): after the
    /// resume check, before the first write.
    pub fn fit(&mut self) -> io::Result<()> {
        for s in &mut self.slots {
            if let Some(file) = s.file.as_ref().filter(|_| s.on_disk != s.length) {
                file.set_len(s.length).map_err(|e| with_path(e, &s.path))?;
                s.on_disk = s.length;
            }
        }
        Ok(())
    }

    /// Whether `[offset, offset+len)` lies within what the files held when opened.
    fn on_disk(&self, offset: u64, len: usize) -> bool {
        let mut inside = true;
        let _ = self.for_each_span(offset, len, |slot, at, r| {
            inside &= at + r.len() as u64 <= slot.on_disk;
            Ok(())
        });
        inside
    }

    /// Calls `f(slot, file_offset, range_in_buf)` for each file piece of `[offset, offset+len)`.
    fn for_each_span(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(&Slot, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = offset + len as u64;
        if end > self.total_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "range {offset}..{end} is past the torrent's end {}",
                    self.total_len
                ),
            ));
        }
        // files are in order: find the first one that ends after `offset`
        let first = self
            .slots
            .partition_point(|s| s.offset + s.length <= offset);
        for slot in &self.slots[first..] {
            if slot.offset >= end {
                break;
            }
            let lo = offset.max(slot.offset);
            let hi = end.min(slot.offset + slot.length);
            if lo < hi {
                f(
                    slot,
                    lo - slot.offset,
                    (lo - offset) as usize..(hi - offset) as usize,
                )?;
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset` of the torrent's byte space.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.for_each_span(offset, data.len(), |slot, at, r| match &slot.file {
            Some(file) => file
                .write_all_at(&data[r], at)
                .map_err(|e| with_path(e, &slot.path)),
            None => Ok(()),
        })
    }

    /// Reads `buf.len()` bytes at `offset` of the torrent's byte space.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.for_each_span(offset, buf.len(), |slot, at, r| match &slot.file {
            Some(file) => file
                .read_exact_at(&mut buf[r], at)
                .map_err(|e| with_path(e, &slot.path)),
            None => {
                buf[r].fill(0);
                Ok(())
            }
        })
    }

    /// Byte range of piece `index`.
    pub fn piece_range(&self, index: u32) -> (u64, usize) {
        let start = u64::from(index) * self.piece_len;
        let len = self.total_len.saturating_sub(start).min(self.piece_len);
        (start, len as usize)
    }

    /// Reads piece `index` as it is on disk into `buf` (reused scratch space).
    pub fn read_piece(&self, index: u32, buf: &mut Vec<u8>) -> io::Result<()> {
        let (start, len) = self.piece_range(index);
        buf.resize(len, 0);
        self.read_at(start, buf)
    }

    /// Writes a whole piece at its place.
    pub fn write_piece(&self, index: u32, data: &[u8]) -> io::Result<()> {
        self.write_at(self.piece_range(index).0, data)
    }

    /// Resume: hashes every piece on disk and returns the ones that match. Only worth calling
    /// when [`Storage::existed`]; a fresh sparse file holds no valid piece. Stops with
    /// `ErrorKind::Interrupted` as soon as `stop()` says so (Ctrl-C during a long check).
    pub fn check_existing(
        &self,
        hashes: &PieceHashes,
        stop: impl Fn() -> bool,
    ) -> io::Result<Bitfield> {
        let mut have = Bitfield::new(hashes.num_pieces());
        let mut buf = Vec::new();
        for i in 0..hashes.num_pieces() {
            if stop() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "interrupted while checking the files on disk",
                ));
            }
            let (start, len) = self.piece_range(i);
            if self.on_disk(start, len) {
                self.read_piece(i, &mut buf)?;
                if hashes.check(i, &buf) {
                    have.set(i);
                }
            }
        }
        Ok(have)
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    #[test]
    fn pieces_span_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            DiskFile::plain(dir.path().join("a"), 5),
            DiskFile::plain(dir.path().join("sub/b"), 0),
            DiskFile::plain(dir.path().join("sub/c"), 7),
        ];
        let s = Storage::open(&files, 4).unwrap();
        assert!(!s.existed());
        let data: Vec<u8> = (0..12).collect();
        for i in 0..3 {
            let (start, len) = s.piece_range(i);
            s.write_piece(i, &data[start as usize..start as usize + len])
                .unwrap();
        }
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), &data[..5]);
        assert_eq!(std::fs::read(dir.path().join("sub/c")).unwrap(), &data[5..]);
        assert_eq!(s.piece_range(2), (8, 4));
        let mut back = vec![0; 6];
        s.read_at(3, &mut back).unwrap();
        assert_eq!(back, &data[3..9]);
        assert!(s.read_at(10, &mut back).is_err());

        let hashes: Vec<[u8; 20]> = (0..3)
            .map(|i| {
                let (st, l) = s.piece_range(i);
                Sha1::digest(&data[st as usize..st as usize + l]).into()
            })
            .collect();
        drop(s);
        // corrupt piece 1 and reopen: resume keeps 0 and 2
        let s = Storage::open(&files, 4).unwrap();
        s.write_at(4, &[99]).unwrap();
        assert!(s.existed());
        let hashes = PieceHashes::V1(hashes);
        let have = s.check_existing(&hashes, || false).unwrap();
        let stopped = s.check_existing(&hashes, || true).unwrap_err();
        assert_eq!(stopped.kind(), io::ErrorKind::Interrupted);
        assert_eq!(have.iter_ones().collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn files_of_another_size_are_checked_as_found_then_fitted() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..12).collect();
        let hashes = PieceHashes::V1(data.chunks(4).map(|c| Sha1::digest(c).into()).collect());
        let files = vec![DiskFile::plain(dir.path().join("f"), 12)];
        // longer, with the first piece right: kept, and not cut before the check
        let mut long = data[..4].to_vec();
        long.extend_from_slice(&[7; 36]);
        std::fs::write(&files[0].path, &long).unwrap();
        let mut s = Storage::open(&files, 4).unwrap();
        assert_eq!(std::fs::metadata(&files[0].path).unwrap().len(), 40);
        let misfits: Vec<_> = s.misfits().map(|(_, f, l)| (f, l)).collect();
        assert_eq!(misfits, [(40, 12)]);
        let have = s.check_existing(&hashes, || false).unwrap();
        assert_eq!(have.iter_ones().collect::<Vec<_>>(), [0]);
        s.fit().unwrap();
        assert_eq!(std::fs::metadata(&files[0].path).unwrap().len(), 12);
        drop(s);
        // shorter: pieces past its end are not read (no error), the ones inside count
        std::fs::write(&files[0].path, &data[..6]).unwrap();
        let mut s = Storage::open(&files, 4).unwrap();
        let have = s.check_existing(&hashes, || false).unwrap();
        assert_eq!(have.iter_ones().collect::<Vec<_>>(), [0]);
        s.fit().unwrap();
        s.write_piece(1, &data[4..8]).unwrap();
        s.write_piece(2, &data[8..]).unwrap();
        assert_eq!(std::fs::read(&files[0].path).unwrap(), data);
    }
}

#[cfg(test)]
mod bep47_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn padding_is_never_written_and_reads_as_zeros_executables_get_x() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            DiskFile {
                executable: true,
                ..DiskFile::plain(dir.path().join("run.sh"), 3)
            },
            DiskFile {
                padding: true,
                ..DiskFile::plain(dir.path().join(".pad/5"), 5)
            },
            DiskFile::plain(dir.path().join("b"), 4),
        ];
        let s = Storage::open(&files, 4).unwrap();
        s.write_at(0, &[1, 2, 3, 9, 9, 9, 9, 9, 4, 5, 6, 7])
            .unwrap();
        let mut back = vec![0xff; 12];
        s.read_at(0, &mut back).unwrap();
        assert_eq!(back, [1, 2, 3, 0, 0, 0, 0, 0, 4, 5, 6, 7]);
        assert!(!dir.path().join(".pad").exists());
        let mode = std::fs::metadata(dir.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o100, 0o100, "{mode:o}");
        assert_eq!(
            std::fs::metadata(dir.path().join("b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o111,
            0
        );
    }
}
