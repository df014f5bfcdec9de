//! BitTorrent v2 (BEP 52) merkle trees: SHA-256 over 16 KiB blocks, one tree per file.
//!
//! A file is cut into 16 KiB blocks (the last one hashed as it is, shorter); each block's
//! SHA-256 is a leaf. The leaves are padded with zero hashes to a power of two and hashed in
//! pairs up to the root, the file's `pieces root`. The layer `log2(piece length / 16 KiB)`
//! above the leaves holds one hash per piece: the file's piece layer (the torrent's `piece
//! layers` entry). Its last hash covers zero leaves past the end of the file, so the pad
//! hashes above the leaves are those of all-zero subtrees of the right height. A file of at
//! most one piece has no piece layer, an empty file no root.
//!
//! The module owns the hashing only: [`FileHasher`] hashes a file streamed through it in
//! bounded memory (one piece of leaves plus one hash per piece), and [`merkle_root`],
//! [`layer`] and [`verify_proof`] are the pieces a downloader reuses to check blocks and
//! piece layers. It never reads files or torrents itself.

use sha2::{Digest, Sha256};

/// The size of a leaf block (BEP 52).
pub const BLOCK_SIZE: usize = 16 * 1024;

/// A SHA-256 hash: a leaf, an inner node, a root.
pub type Hash = [u8; 32];

/// The hashes of a run of concatenated 32-byte hashes (a piece layer, a `hashes` payload);
/// a trailing partial hash is ignored (callers check the length).
pub fn split_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| Hash::try_from(c).ok())
        .collect()
}

/// SHA-256 of one block of data (a leaf).
pub fn block_hash(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The parent of two nodes: SHA-256 of their concatenation.
pub fn parent(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of an all-zero subtree `height` levels above the leaves (height 0: the zero leaf).
pub fn pad_hash(height: u32) -> Hash {
    (0..height).fold([0u8; 32], |h, _| parent(&h, &h))
}

/// The layer `up` levels above `nodes`, which sit at `height` above the leaves: pairs are
/// hashed `up` times, an odd node out paired with the pad hash of its height. For leaves
/// (height 0) and `up` = log2(blocks per piece) this is a piece layer; its length is
/// `ceil(nodes / 2^up)`.
pub fn layer(nodes: &[Hash], height: u32, up: u32) -> Vec<Hash> {
    let mut cur = nodes.to_vec();
    for h in height..height + up {
        cur = parents(&cur, h);
    }
    cur
}

/// The layer above `nodes` (at `height`): pairs hashed, an odd node out paired with the pad
/// hash of its height.
fn parents(nodes: &[Hash], height: u32) -> Vec<Hash> {
    let pad = pad_hash(height);
    nodes
        .chunks(2)
        .map(|pair| parent(&pair[0], pair.get(1).unwrap_or(&pad)))
        .collect()
}

/// Every layer from `nodes` (at `height`) up to the root of their tree padded to a power of
/// two: `levels[0]` is `nodes`, the last level is the root alone. A node missing at the end of
/// a level is the pad hash of that level's height. Empty for no nodes.
pub fn levels(nodes: &[Hash], height: u32) -> Vec<Vec<Hash>> {
    let mut out: Vec<Vec<Hash>> = Vec::new();
    if nodes.is_empty() {
        return out;
    }
    let mut cur = nodes.to_vec();
    let mut h = height;
    while cur.len() > 1 {
        let next = parents(&cur, h);
        out.push(std::mem::replace(&mut cur, next));
        h += 1;
    }
    out.push(cur);
    out
}

/// The root over `nodes` at `height` above the leaves, padded with pad hashes to a power of
/// two: a file's `pieces root` from its leaves (height 0) or from its piece layer (height
/// log2(blocks per piece)). `None` for no nodes (an empty file has no root).
pub fn merkle_root(nodes: &[Hash], height: u32) -> Option<Hash> {
    let up = nodes.len().checked_next_power_of_two()?.trailing_zeros();
    layer(nodes, height, up).first().copied()
}

/// Whether `leaf`, the `index`-th node of its layer, hashes up to `root` through `proof`
/// (the sibling at each level, lowest first), as in BEP 52's `hashes` message.
pub fn verify_proof(leaf: &Hash, index: u64, proof: &[Hash], root: &Hash) -> bool {
    let mut node = *leaf;
    let mut i = index;
    for sibling in proof {
        node = if i % 2 == 0 {
            parent(&node, sibling)
        } else {
            parent(sibling, &node)
        };
        i /= 2;
    }
    i == 0 && node == *root
}

/// A file's v2 hashes: its root and piece layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    pub length: u64,
    /// `pieces root`; `None` for an empty file.
    pub root: Option<Hash>,
    /// One hash per piece; empty for a file of at most one piece.
    pub piece_layer: Vec<Hash>,
}

/// Hashes one file's bytes as they come, in any slices: keeps the leaves of the current piece
/// and one hash per finished piece.
#[derive(Debug, Clone)]
pub struct FileHasher {
    /// log2(blocks per piece).
    piece_height: u32,
    blocks_per_piece: usize,
    block: Sha256,
    in_block: usize,
    leaves: Vec<Hash>,
    pieces: Vec<Hash>,
    length: u64,
}

impl FileHasher {
    /// A hasher for pieces of `piece_length` bytes: a power of two of at least [`BLOCK_SIZE`]
    /// (`None` otherwise).
    pub fn new(piece_length: u64) -> Option<FileHasher> {
        let blocks = piece_length / BLOCK_SIZE as u64;
        if !piece_length.is_power_of_two() || blocks == 0 {
            return None;
        }
        let blocks_per_piece = usize::try_from(blocks).ok()?;
        Some(FileHasher {
            piece_height: blocks.trailing_zeros(),
            blocks_per_piece,
            block: Sha256::new(),
            in_block: 0,
            leaves: Vec::with_capacity(blocks_per_piece),
            pieces: Vec::new(),
            length: 0,
        })
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        while !data.is_empty() {
            let take = (BLOCK_SIZE - self.in_block).min(data.len());
            self.block.update(&data[..take]);
            self.in_block += take;
            data = &data[take..];
            if self.in_block == BLOCK_SIZE {
                self.end_block();
            }
        }
    }

    fn end_block(&mut self) {
        let block = std::mem::take(&mut self.block);
        self.leaves.push(block.finalize().into());
        self.in_block = 0;
        if self.leaves.len() == self.blocks_per_piece {
            self.end_piece();
        }
    }

    /// The current piece's leaves, padded with zero leaves to a whole piece, become one hash.
    fn end_piece(&mut self) {
        let piece = layer(&self.leaves, 0, self.piece_height);
        self.pieces.extend(piece.first());
        self.leaves.clear();
    }

    /// The file's root and piece layer.
    pub fn finish(mut self) -> FileHashes {
        if self.in_block > 0 {
            self.end_block();
        }
        let length = self.length;
        if self.pieces.is_empty() {
            // at most one piece, not a whole one: the tree has only as many leaves as needed
            let root = merkle_root(&self.leaves, 0);
            return FileHashes {
                length,
                root,
                piece_layer: Vec::new(),
            };
        }
        if !self.leaves.is_empty() {
            self.end_piece();
        }
        let root = merkle_root(&self.pieces, self.piece_height);
        let piece_layer = if self.pieces.len() > 1 {
            self.pieces
        } else {
            Vec::new()
        };
        FileHashes {
            length,
            root,
            piece_layer,
        }
    }
}

/// The hashes of `data` as one file cut into pieces of `piece_length` bytes.
pub fn hash_file_bytes(data: &[u8], piece_length: u64) -> Option<FileHashes> {
    let mut h = FileHasher::new(piece_length)?;
    h.update(data);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Data whose 16 KiB blocks all differ (`data`'s pattern repeats every 256 bytes).
    fn blocks(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i / BLOCK_SIZE) as u8 ^ (i as u8))
            .collect()
    }

    fn hex32(s: &str) -> Hash {
        let v = hex::decode(s).expect("hex");
        v.try_into().expect("32 bytes")
    }

    /// (file length, piece length, `pieces root`, piece layer length, SHA-256 of the piece
    /// layer's bytes), from python3-libtorrent 2.0.8's `create_torrent` (v2 only) over
    /// `data(length, 7)`.
    const LIBTORRENT: [(usize, u64, &str, usize, &str); 10] = [
        (
            1,
            16384,
            "ca358758f6d27e6cf45272937977a748fd88391db679ceda7dc7bf1f005ee879",
            0,
            "",
        ),
        (
            100,
            16384,
            "c22e490daa445fb2fba44278c022df135310fd278cabca4ad7919eddcccd1dce",
            0,
            "",
        ),
        (
            16384,
            16384,
            "9038ac64e659335ccbfdd3f684f35a26a2c9e580d9af6b4807af3adbe2c257e3",
            0,
            "",
        ),
        (
            16385,
            16384,
            "f8e5d977fedb5e7216b0a5447273be907002da13e65219777df56e4948327727",
            2,
            "f8e5d977fedb5e7216b0a5447273be907002da13e65219777df56e4948327727",
        ),
        (
            40000,
            65536,
            "d114609b8e5818457eb191b9d5cd087c08a8b55885270a86c83bbb450afcd0e8",
            0,
            "",
        ),
        (
            65536,
            65536,
            "9be2b0cc98f73ee71bdb4dc268f7c6ea1a1e7c85c547cced6bc1a5752ce9fd8c",
            0,
            "",
        ),
        (
            200000,
            65536,
            "345c11e724d675726ca5d6070fe05f6448573bd67e3d104a682e1a236fb50549",
            4,
            "c52a7efb9cb637d8bf4136d60138ab74482ea8071fc8c9edd3a7738300cd5fcc",
        ),
        (
            1000000,
            65536,
            "b68d59483c7884b937c9e8f51175642111505af2dc312497d818c6b7a483405a",
            16,
            "2c90531f2f06a05c71a20e53807325b52c67d54e8a89c8b7c3d2c2f36cf6be2d",
        ),
        (
            1000000,
            16384,
            "b68d59483c7884b937c9e8f51175642111505af2dc312497d818c6b7a483405a",
            62,
            "f921c9fcc2dee4ead894d731aac68df5408c253f80e8fa9aafa074b1addb64a8",
        ),
        (
            196609,
            262144,
            "c28205f87dbafe0360bf55f770b5fb80be1fc51587a670d4882be48395729018",
            0,
            "",
        ),
    ];

    #[test]
    fn roots_and_layers_match_libtorrent() {
        for (len, piece_length, root, layer_len, layer_sha) in LIBTORRENT {
            let bytes = data(len, 7);
            let got = hash_file_bytes(&bytes, piece_length).expect("piece length");
            assert_eq!(got.length, len as u64);
            assert_eq!(
                got.root,
                Some(hex32(root)),
                "root of {len} at {piece_length}"
            );
            assert_eq!(got.piece_layer.len(), layer_len, "{len} at {piece_length}");
            if layer_len > 0 {
                let joined = got.piece_layer.concat();
                assert_eq!(hex::encode(Sha256::digest(&joined)), layer_sha);
                // the root over the layer (padded with piece-sized zero subtrees) is the root
                let height = (piece_length / BLOCK_SIZE as u64).trailing_zeros();
                assert_eq!(merkle_root(&got.piece_layer, height), got.root);
            }
        }
    }

    #[test]
    fn streaming_in_odd_slices_gives_the_same_hashes() {
        let bytes = data(1_000_000, 7);
        let whole = hash_file_bytes(&bytes, 65536).expect("whole");
        let mut h = FileHasher::new(65536).expect("hasher");
        for chunk in bytes.chunks(7777) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), whole);
    }

    #[test]
    fn empty_file_has_no_root_and_bad_piece_lengths_are_refused() {
        let got = hash_file_bytes(&[], 16384).expect("hasher");
        assert_eq!(got.root, None);
        assert!(got.piece_layer.is_empty());
        assert!(FileHasher::new(8192).is_none());
        assert!(FileHasher::new(3 * 16384).is_none());
        assert!(merkle_root(&[], 0).is_none());
    }

    #[test]
    fn a_root_from_leaves_equals_the_root_from_the_piece_layer() {
        let bytes = blocks(4 * BLOCK_SIZE + 123);
        let leaves: Vec<Hash> = bytes.chunks(BLOCK_SIZE).map(block_hash).collect();
        assert_eq!(leaves.len(), 5);
        let pieces = layer(&leaves, 0, 1); // 32 KiB pieces
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0], parent(&leaves[0], &leaves[1]));
        // the last piece: one leaf and a zero leaf
        assert_eq!(pieces[2], parent(&leaves[4], &[0; 32]));
        assert_eq!(merkle_root(&leaves, 0), merkle_root(&pieces, 1));
        let streamed = hash_file_bytes(&bytes, 32768).expect("hasher");
        assert_eq!(streamed.piece_layer, pieces);
        assert_eq!(streamed.root, merkle_root(&leaves, 0));
        assert_eq!(pad_hash(1), parent(&[0; 32], &[0; 32]));
        let all = levels(&leaves, 0);
        assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), [5, 3, 2, 1]);
        assert_eq!(all[1], pieces);
        assert_eq!(all[3].first(), merkle_root(&leaves, 0).as_ref());
        assert!(levels(&[], 0).is_empty());
        assert_eq!(levels(&pieces[..1], 1), [pieces[..1].to_vec()]);
    }

    #[test]
    fn proofs_verify_and_a_wrong_leaf_or_index_fails() {
        let bytes = blocks(6 * BLOCK_SIZE);
        let leaves: Vec<Hash> = bytes.chunks(BLOCK_SIZE).map(block_hash).collect();
        let root = merkle_root(&leaves, 0).expect("root");
        // leaf 4's proof in a tree of 8 leaves: leaf 5, then the pad pair, then the left half
        let proof = [
            leaves[5],
            pad_hash(1),
            merkle_root(&leaves[..4], 0).expect("left"),
        ];
        assert!(verify_proof(&leaves[4], 4, &proof, &root));
        assert!(!verify_proof(&leaves[3], 4, &proof, &root));
        assert!(!verify_proof(&leaves[4], 5, &proof, &root));
        assert!(
            !verify_proof(&leaves[4], 12, &proof, &root),
            "index out of range"
        );
        // a piece hash against the root through the piece layer's siblings
        let pieces = layer(&leaves, 0, 2); // 64 KiB pieces: 2 of them
        assert!(verify_proof(&pieces[1], 1, &[pieces[0]], &root));
    }
}
