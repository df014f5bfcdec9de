//! The pieces of a BitTorrent v2-only download (BEP 52): what each piece must hash to, and the
//! answers to `hash request`s.
//!
//! A v2 torrent's pieces never span files: every file starts at a piece boundary, and the
//! torrent's byte space (see `metainfo`) pads each file with zeros up to the next one. So
//! piece `i` is one file's bytes, `data_len(i)` long, then padding that is never written nor
//! requested. Each file has a SHA-256 merkle tree over 16 KiB blocks (`crate::merkle`); a
//! piece is good when the root of its blocks' subtree (a short last block hashed as it is,
//! missing leaves zero hashes) is the file's piece-layer hash, or for a file of at most one
//! piece its `pieces root` (that tree is only as tall as the file's block count needs).
//!
//! [`V2Pieces::new`] checks every file's piece layer against its `pieces root` before anything
//! is downloaded, and keeps the tree from the piece layer up to the root, so that hash requests
//! at or above the piece layer are answered from memory; lower layers (the blocks' hashes) are
//! computed from a verified piece the caller reads. Pure computation: no I/O here, so the
//! engine decides where it runs (the blocking pool).

use std::collections::HashMap;

use crate::merkle::{self, Hash, BLOCK_SIZE};
use crate::metainfo::{MetainfoError, Torrent};
use crate::wire::message::HashRef;

/// The most hashes a `hash request` may ask for (as libtorrent: 8192 hashes, 256 KiB).
pub const MAX_HASHES: u32 = 8192;

/// One non-empty file's merkle tree, from its piece layer up.
#[derive(Debug)]
struct FileTree {
    root: Hash,
    /// The torrent's index of the file's first piece.
    first_piece: u32,
    num_pieces: u32,
    length: u64,
    /// log2 of the tree's leaves: the file's block count rounded up to a power of two.
    height: u32,
    /// Height of a piece's subtree: log2(blocks per piece), or the whole tree's height for a
    /// file of at most one piece.
    piece_height: u32,
    /// The levels from the piece layer (`upper[0]`, one hash per piece) to the root.
    upper: Vec<Vec<Hash>>,
}

impl FileTree {
    /// The node `index` of the level `h` above the leaves, when it does not need the blocks'
    /// hashes (`h >= piece_height`): past the file, a pad hash.
    fn upper_node(&self, h: u32, index: u64) -> Hash {
        let level = self.upper.get((h - self.piece_height) as usize);
        level
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .unwrap_or_else(|| merkle::pad_hash(h))
    }
}

/// What each piece of a v2-only torrent must hash to, and the trees behind it.
#[derive(Debug)]
pub struct V2Pieces {
    piece_len: u64,
    /// The non-empty files, in the torrent's order (so by `first_piece`).
    files: Vec<FileTree>,
    /// `pieces root` → index in `files`.
    by_root: HashMap<Hash, usize>,
    num_pieces: u32,
}

impl V2Pieces {
    /// The trees of a v2 torrent's files, each piece layer checked against its `pieces root`
    /// (the error names the file). `None` for a torrent without v2 fields.
    pub fn new(t: &Torrent) -> Option<Result<V2Pieces, MetainfoError>> {
        let v2 = t.info.v2.as_ref()?;
        let piece_len = t.info.piece_length;
        let per_piece = (piece_len / BLOCK_SIZE as u64).trailing_zeros();
        let mut files = Vec::new();
        let mut next_piece = 0u64;
        for f in v2.files.iter().filter(|f| f.length > 0) {
            let root = f.pieces_root?;
            let layer = match t.piece_layers.checked(f, piece_len) {
                Ok(l) if l.is_empty() => vec![root],
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            let blocks = f.length.div_ceil(BLOCK_SIZE as u64);
            let height = blocks.next_power_of_two().trailing_zeros();
            let num_pieces = f.num_pieces(piece_len);
            files.push(FileTree {
                root,
                first_piece: u32::try_from(next_piece).ok()?,
                num_pieces: u32::try_from(num_pieces).ok()?,
                length: f.length,
                height,
                piece_height: per_piece.min(height),
                upper: merkle::levels(&layer, per_piece.min(height)),
            });
            next_piece += num_pieces;
        }
        let by_root = files.iter().enumerate().map(|(i, f)| (f.root, i)).collect();
        Some(Ok(V2Pieces {
            piece_len,
            files,
            by_root,
            num_pieces: u32::try_from(next_piece).ok()?,
        }))
    }

    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// The file of piece `index` and the piece's index in it.
    fn locate(&self, index: u32) -> Option<(&FileTree, u32)> {
        let i = self
            .files
            .partition_point(|f| f.first_piece + f.num_pieces <= index);
        let f = self.files.get(i)?;
        (index >= f.first_piece).then(|| (f, index - f.first_piece))
    }

    /// Bytes of file data in piece `index` (the rest of the piece is padding): the piece
    /// length, or less for the last piece of a file. 0 for an index out of range.
    pub fn data_len(&self, index: u32) -> u32 {
        self.locate(index).map_or(0, |(f, k)| {
            (f.length - u64::from(k) * self.piece_len).min(self.piece_len) as u32
        })
    }

    /// Whether `piece` (piece `index` as read from the byte space: its data, then padding)
    /// hashes to the piece's hash in its file's tree.
    pub fn verify(&self, index: u32, piece: &[u8]) -> bool {
        let Some((f, k)) = self.locate(index) else {
            return false;
        };
        if piece.len() < self.data_len(index) as usize {
            return false;
        }
        let got = merkle::layer(&self.leaves(index, piece), 0, f.piece_height);
        got.first() == f.upper.first().and_then(|l| l.get(k as usize))
    }

    /// The leaf hashes of piece `index` (its bytes as read from the byte space): one per 16
    /// KiB block of file data, a short last block hashed as it is.
    pub fn leaves(&self, index: u32, piece: &[u8]) -> Vec<Hash> {
        let data = &piece[..(self.data_len(index) as usize).min(piece.len())];
        data.chunks(BLOCK_SIZE).map(merkle::block_hash).collect()
    }

    /// The `hash request` for the block hashes of piece `index` (layer 0, the piece's
    /// subtree, no uncles: its root is the piece hash we have). `None` for a piece of one
    /// block, whose hash is already its block's.
    pub fn block_request(&self, index: u32) -> Option<HashRef> {
        let (f, k) = self.locate(index)?;
        if f.piece_height == 0 {
            return None;
        }
        Some(HashRef {
            pieces_root: f.root,
            base_layer: 0,
            index: u32::try_from(u64::from(k) << f.piece_height).ok()?,
            length: 1 << f.piece_height,
            proof_layers: f.piece_height - 1,
        })
    }

    /// A peer's answer to our [`V2Pieces::block_request`]: the piece and its blocks' hashes
    /// (without the zero leaves past the file's end), when they hash up to the piece's hash.
    /// `None` for an answer to anything else, of the wrong size, or that does not prove.
    pub fn proven_blocks(&self, req: &HashRef, payload: &[u8]) -> Option<(u32, Vec<Hash>)> {
        let f = &self.files[*self.by_root.get(&req.pieces_root)?];
        let k = req.index.checked_shr(f.piece_height)?;
        let index = f.first_piece.checked_add(k).filter(|_| k < f.num_pieces)?;
        if self.block_request(index).as_ref() != Some(req)
            || payload.len() != 32 * req.length as usize
        {
            return None;
        }
        let leaves = merkle::split_hashes(payload);
        let got = merkle::merkle_root(&leaves, 0)?;
        if f.upper.first().and_then(|l| l.get(k as usize)) != Some(&got) {
            return None;
        }
        let blocks = (self.data_len(index) as usize).div_ceil(BLOCK_SIZE);
        Some((index, leaves[..blocks.min(leaves.len())].to_vec()))
    }

    /// The payload of our `hashes` answer to `req` (BEP 52): the `length` hashes of layer
    /// `base layer` from `index`, then the uncle hashes that prove their subtree up to the
    /// layer `proof layers` above the base (none below the subtree's own root). `None` (send
    /// `hash reject`) for a file we do not know, a range outside its tree, a range that is not
    /// one aligned subtree of a power of two of hashes, more than [`MAX_HASHES`] hashes, proof
    /// layers reaching the root, or block hashes of a piece `read` cannot give (not verified):
    /// hashes below the piece layer are computed from the piece that `read(index)` returns.
    pub fn hashes(
        &self,
        req: &HashRef,
        read: impl FnOnce(u32) -> Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let f = &self.files[*self.by_root.get(&req.pieces_root)?];
        let (base, count, proof) = (req.base_layer, req.length, req.proof_layers);
        let index = u64::from(req.index);
        let level_size = 1u64 << f.height.checked_sub(base)?;
        if base >= f.height
            || count == 0
            || count > MAX_HASHES
            || !count.is_power_of_two()
            || index % u64::from(count) != 0
            || index + u64::from(count) > level_size
            || proof >= f.height - base
        {
            return None;
        }
        // below the piece layer: the subtree of the one piece the range lies in
        let below = if base < f.piece_height {
            let span = f.piece_height - base;
            if count > 1 << span {
                return None;
            }
            let k = index >> span;
            match u32::try_from(k).ok().filter(|&k| k < f.num_pieces) {
                // a piece past the end of the file: all its nodes are pad hashes
                None => Some((k, Vec::new())),
                Some(k) => {
                    let piece = read(f.first_piece + k)?;
                    if piece.len() < self.data_len(f.first_piece + k) as usize {
                        return None;
                    }
                    let mut levels = vec![self.leaves(f.first_piece + k, &piece)];
                    for h in 0..f.piece_height - 1 {
                        let up = merkle::layer(&levels[h as usize], h, 1);
                        levels.push(up);
                    }
                    Some((u64::from(k), levels))
                }
            }
        } else {
            None
        };
        let node = |h: u32, i: u64| -> Hash {
            match &below {
                Some((k, levels)) if h < f.piece_height => {
                    let first = k << (f.piece_height - h);
                    levels
                        .get(h as usize)
                        .and_then(|l| l.get(usize::try_from(i.checked_sub(first)?).ok()?))
                        .copied()
                        .unwrap_or_else(|| merkle::pad_hash(h))
                }
                _ => f.upper_node(h, i),
            }
        };
        let sub = count.trailing_zeros();
        let mut out = Vec::with_capacity(32 * (count as usize + proof as usize + 1));
        for i in index..index + u64::from(count) {
            out.extend_from_slice(&node(base, i));
        }
        for r in sub..=proof {
            out.extend_from_slice(&node(base + r, (index >> r) ^ 1));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::{CreateOptions, Layout, MetaVersion};

    const PIECE: u64 = 4 * BLOCK_SIZE as u64;

    /// (path, length) of the test torrent: a file of 3 pieces and a bit, one of one short
    /// piece, an empty one, one of exactly one block.
    const FILES: [(&str, usize); 4] = [
        ("a", 3 * PIECE as usize + 5000),
        ("b", 20000),
        ("c", 0),
        ("d", BLOCK_SIZE),
    ];

    fn content(len: usize, seed: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 31 + seed + i / 4099) % 251) as u8)
            .collect()
    }

    /// A v2-only torrent of [`FILES`] and its byte space (files padded to whole pieces).
    fn torrent() -> (Torrent, Vec<u8>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("t");
        let mut space = Vec::new();
        for (i, (name, len)) in FILES.iter().enumerate() {
            let data = content(*len, i);
            std::fs::create_dir_all(&root).expect("mkdir");
            std::fs::write(root.join(name), &data).expect("write");
            space.extend_from_slice(&data);
            space.resize(space.len().next_multiple_of(PIECE as usize), 0);
        }
        let opts = CreateOptions {
            piece_length: Some(PIECE),
            version: MetaVersion::V2,
            ..CreateOptions::default()
        };
        let made = Layout::scan(&root)
            .and_then(|l| l.build(&opts, |_| {}))
            .expect("create");
        (Torrent::parse(&made.bytes).expect("parse"), space)
    }

    fn piece(space: &[u8], i: u32) -> &[u8] {
        &space[i as usize * PIECE as usize..(i as usize + 1) * PIECE as usize]
    }

    #[test]
    fn pieces_verify_per_file_and_a_changed_byte_fails() {
        let (t, space) = torrent();
        let v2 = V2Pieces::new(&t).expect("v2").expect("layers match");
        // a: 4 pieces, b: 1, c: none, d: 1
        assert_eq!(v2.num_pieces(), 6);
        assert_eq!(t.info.piece_count(), 6);
        let lens: Vec<u32> = (0..6).map(|i| v2.data_len(i)).collect();
        assert_eq!(lens, [65536, 65536, 65536, 5000, 20000, 16384]);
        for i in 0..6 {
            assert!(v2.verify(i, piece(&space, i)), "piece {i}");
            let mut bad = piece(&space, i).to_vec();
            bad[v2.data_len(i) as usize - 1] ^= 1;
            assert!(
                !v2.verify(i, &bad),
                "piece {i} with its last data byte changed"
            );
            // the padding is not hashed
            assert!(v2.verify(i, &piece(&space, i)[..v2.data_len(i) as usize]));
        }
        assert!(!v2.verify(6, piece(&space, 0)), "out of range");
        assert!(!v2.verify(3, &piece(&space, 3)[..100]), "too short");
    }

    #[test]
    fn a_piece_layer_that_does_not_hash_to_its_root_is_refused_naming_the_file() {
        let (mut t, _) = torrent();
        for layer in t.piece_layers.layers.values_mut() {
            layer[40] ^= 1;
        }
        let err = V2Pieces::new(&t).expect("v2").expect_err("refused");
        assert!(
            err.to_string()
                .contains("does not hash to the `pieces root` of \"a\""),
            "{err}"
        );
        t.piece_layers.layers.clear();
        let err = V2Pieces::new(&t).expect("v2").expect_err("refused");
        assert!(err.to_string().contains("has no layer for \"a\""), "{err}");
    }

    fn req(root: Hash, base: u32, index: u32, length: u32, proof: u32) -> HashRef {
        HashRef {
            pieces_root: root,
            base_layer: base,
            index,
            length,
            proof_layers: proof,
        }
    }

    #[test]
    fn hash_answers_prove_up_to_the_root() {
        let (t, space) = torrent();
        let v2 = V2Pieces::new(&t).expect("v2").expect("layers");
        let a = t.info.v2.as_ref().expect("v2").files[0]
            .pieces_root
            .expect("root");
        let read = |i: u32| Some(piece(&space, i).to_vec());
        // a: 13 blocks → 16 leaves (height 4); pieces of 4 blocks (height 2)
        // the piece layer, padded to 4 hashes, proves itself (no uncles asked)
        let got = merkle::split_hashes(&v2.hashes(&req(a, 2, 0, 4, 0), read).expect("piece layer"));
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[..],
            *t.piece_layers
                .checked(&t.info.v2.as_ref().expect("v2").files[0], PIECE)
                .expect("layer")
        );
        // the blocks of piece 1 and the uncles above their subtree (heights 2 and 3)
        let got = merkle::split_hashes(&v2.hashes(&req(a, 0, 4, 4, 3), read).expect("blocks"));
        assert_eq!(got.len(), 4 + 2);
        let leaves: Vec<Hash> = piece(&space, 1)
            .chunks(BLOCK_SIZE)
            .map(merkle::block_hash)
            .collect();
        assert_eq!(got[..4], leaves[..]);
        let sub = merkle::merkle_root(&got[..4], 0).expect("subtree");
        assert!(merkle::verify_proof(&sub, 1, &got[4..], &a));
        // one block of the last piece (block 12, then 3 zero leaves) with its full proof
        let got = merkle::split_hashes(&v2.hashes(&req(a, 0, 12, 1, 3), read).expect("one block"));
        assert_eq!(got.len(), 1 + 4);
        assert_eq!(got[1], [0; 32], "its sibling is a zero leaf past the file");
        assert!(merkle::verify_proof(&got[0], 12, &got[1..], &a));
        // a node above the piece layer and its proof
        let got = merkle::split_hashes(&v2.hashes(&req(a, 3, 1, 1, 0), read).expect("upper"));
        assert!(merkle::verify_proof(&got[0], 1, &got[1..], &a));
        // a file of one piece: its blocks prove up to its root (b: 2 blocks, height 1)
        let b = t.info.v2.as_ref().expect("v2").files[1]
            .pieces_root
            .expect("root");
        let got = merkle::split_hashes(&v2.hashes(&req(b, 0, 0, 1, 0), read).expect("b"));
        assert!(merkle::verify_proof(&got[0], 0, &got[1..], &b));
    }

    #[test]
    fn block_hashes_of_a_piece_are_asked_for_and_proven() {
        let (t, space) = torrent();
        let v2 = V2Pieces::new(&t).expect("v2").expect("layers");
        let read = |i: u32| Some(piece(&space, i).to_vec());
        for index in [1, 3, 4] {
            let r = v2.block_request(index).expect("a request");
            // our own answer to it proves
            let payload = v2.hashes(&r, read).expect("answer");
            let (got, leaves) = v2.proven_blocks(&r, &payload).expect("proven");
            assert_eq!(got, index);
            assert_eq!(leaves, v2.leaves(index, piece(&space, index)));
            let mut bad = payload.clone();
            bad[0] ^= 1;
            assert!(v2.proven_blocks(&r, &bad).is_none(), "a wrong hash");
            assert!(v2.proven_blocks(&r, &payload[32..]).is_none(), "short");
            let other = HashRef {
                index: r.index + 1,
                ..r
            };
            assert!(
                v2.proven_blocks(&other, &payload).is_none(),
                "not our request"
            );
        }
        // piece 3 (5000 bytes) has one block of data, then zero leaves
        assert_eq!(v2.leaves(3, piece(&space, 3)).len(), 1);
        // d is one block: nothing to ask
        assert!(v2.block_request(5).is_none());
        assert!(v2.block_request(6).is_none());
    }

    #[test]
    fn requests_we_cannot_answer_are_rejected() {
        let (t, space) = torrent();
        let v2 = V2Pieces::new(&t).expect("v2").expect("layers");
        let files = &t.info.v2.as_ref().expect("v2").files;
        let (a, d) = (
            files[0].pieces_root.expect("a"),
            files[3].pieces_root.expect("d"),
        );
        let read = |i: u32| Some(piece(&space, i).to_vec());
        let none = |r: HashRef| v2.hashes(&r, read).is_none();
        assert!(!none(req(a, 0, 0, 4, 3)));
        assert!(none(req([7; 32], 0, 0, 4, 0)), "unknown root");
        assert!(none(req(a, 0, 2, 4, 0)), "not aligned");
        assert!(none(req(a, 0, 0, 3, 0)), "not a power of two");
        assert!(none(req(a, 0, 0, 0, 0)), "no hash");
        assert!(none(req(a, 0, 0, 8, 0)), "blocks of two pieces");
        assert!(none(req(a, 0, 0, 4, 4)), "proof up to the root");
        assert!(none(req(a, 4, 0, 1, 0)), "the root layer");
        assert!(none(req(a, 2, 0, 8, 0)), "past the layer");
        assert!(none(req(a, 0, u32::MAX - 3, 4, 0)), "far past the layer");
        assert!(none(req(a, u32::MAX, 0, 1, 0)), "no such layer");
        assert!(
            none(req(d, 0, 0, 1, 0)),
            "a one-block file has nothing below its root"
        );
        assert!(
            v2.hashes(&req(a, 0, 0, 4, 0), |_| None).is_none(),
            "blocks of a piece we do not have"
        );
    }
}
