//! Which blocks to ask which peer for.
//!
//! A piece is split into 16 KiB blocks (the largest request peers accept). The picker keeps,
//! for every piece, whether it is untouched, in progress (block by block: free, requested,
//! received) or done, and how many connected peers have it (its availability).
//!
//! Policy, as in most clients:
//! 1. finish pieces already in progress first (fewer half-done pieces, earlier verification);
//! 2. otherwise start the *rarest* piece the peer has (it may vanish with its few owners),
//!    breaking ties from a per-peer rotating offset so peers spread over different pieces;
//! 3. endgame: once every block has been requested from someone, a peer with (almost) nothing
//!    of its own outstanding asks for a few blocks others have outstanding (one extra copy
//!    each, [`ENDGAME_DEPTH`] at a time); the first copy wins and the other is cancelled. Asking
//!    every peer for every outstanding block at once would fetch a small torrent twice.
//!
//! A received block is first claimed (`Writing`: its bytes are on their way to the disk, so a
//! second copy is a duplicate) and counts as received once written; a piece is complete, and
//! verified, only when every block is on disk.
//!
//! The picker is plain data with no I/O; the engine holds it under a lock.

use std::collections::HashSet;

use crate::bitfield::Bitfield;
use crate::wire::BlockRef;

/// The block size we request. BEP 3 clients reject longer requests.
pub const BLOCK_LEN: u32 = 16 * 1024;

/// How many peers may be asked for the same block in endgame.
const MAX_DUPLICATES: u8 = 2;
/// In endgame a peer asks for duplicates only while it has fewer requests than this
/// outstanding.
pub const ENDGAME_DEPTH: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Free,
    Requested(u8),
    /// Claimed by an arrived copy that is being written.
    Writing,
    /// On disk.
    Received,
}

#[derive(Debug)]
enum PieceState {
    Idle,
    Active(Vec<BlockState>),
    /// All blocks received; the engine is verifying it.
    Verifying,
    Done,
}

/// What a received block means to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Claimed: write it, then call [`Picker::written`]. `dups` other peers may still send it.
    Accepted { dups: u8 },
    /// We already have this block, or a copy is being written (endgame duplicate or a stray
    /// resend): discard.
    Duplicate,
    /// Not a block we could want (wrong piece, offset or length): the peer misbehaves.
    Invalid,
}

pub struct Picker {
    piece_len: u64,
    total_len: u64,
    num_pieces: u32,
    have: Bitfield,
    wanted: Bitfield,
    availability: Vec<u32>,
    pieces: Vec<PieceState>,
    /// In-progress pieces, oldest first.
    active: Vec<u32>,
    /// Free blocks left in wanted pieces we do not have; zero means endgame.
    free_blocks: u64,
    /// v2: the bytes of file data at the start of each piece; the rest is padding.
    data_len: Option<Vec<u32>>,
}

impl Picker {
    /// A picker for a torrent; `wanted` is the set of pieces to download (all, or one for
    /// `download_piece`), `have` what storage already verified.
    pub fn new(piece_len: u64, total_len: u64, have: Bitfield, wanted: Bitfield) -> Picker {
        let num_pieces = have.len();
        let mut p = Picker {
            piece_len,
            total_len,
            num_pieces,
            availability: vec![0; num_pieces as usize],
            pieces: (0..num_pieces)
                .map(|i| {
                    if have.get(i) {
                        PieceState::Done
                    } else {
                        PieceState::Idle
                    }
                })
                .collect(),
            have,
            wanted,
            active: Vec::new(),
            free_blocks: 0,
            data_len: None,
        };
        p.count_free();
        p
    }

    /// A v2 torrent's pieces end in padding (each file is padded to a piece boundary): piece
    /// `i` holds `data_len[i]` bytes of data. A block wholly inside the padding is never
    /// requested (as libtorrent, which marks such blocks as pad blocks); the block the data
    /// ends in is requested whole, its padding included.
    pub fn with_padding(mut self, data_len: Vec<u32>) -> Picker {
        if data_len.len() == self.num_pieces as usize {
            self.data_len = Some(data_len);
            self.count_free();
        }
        self
    }

    fn count_free(&mut self) {
        self.free_blocks = (0..self.num_pieces)
            .filter(|&i| self.needs(i))
            .map(|i| u64::from(self.blocks_in(i)))
            .sum();
    }

    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Length of piece `index` (the last one may be short).
    pub fn piece_size(&self, index: u32) -> u32 {
        let start = u64::from(index) * self.piece_len;
        (self.total_len.saturating_sub(start)).min(self.piece_len) as u32
    }

    /// Blocks we request of piece `index`: those holding data.
    fn blocks_in(&self, index: u32) -> u32 {
        let data = match &self.data_len {
            Some(d) => d.get(index as usize).copied().unwrap_or(0),
            None => self.piece_size(index),
        };
        data.min(self.piece_size(index)).div_ceil(BLOCK_LEN)
    }

    fn block_ref(&self, index: u32, block: u32) -> BlockRef {
        let begin = block * BLOCK_LEN;
        BlockRef {
            index,
            begin,
            length: (self.piece_size(index) - begin).min(BLOCK_LEN),
        }
    }

    /// True while `index` is wanted and not verified yet.
    fn needs(&self, index: u32) -> bool {
        self.wanted.get(index) && !self.have.get(index)
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        (0..self.num_pieces).all(|i| !self.needs(i))
    }

    /// Number of wanted pieces still missing.
    pub fn pieces_left(&self) -> u32 {
        (0..self.num_pieces).filter(|&i| self.needs(i)).count() as u32
    }

    pub fn in_endgame(&self) -> bool {
        self.free_blocks == 0
    }

    /// A peer announced all its pieces (bitfield or have all).
    pub fn add_peer(&mut self, has: &Bitfield) {
        for i in has.iter_ones() {
            self.availability[i as usize] += 1;
        }
    }

    /// A peer left: forget its pieces.
    pub fn remove_peer(&mut self, has: &Bitfield) {
        for i in has.iter_ones() {
            let a = &mut self.availability[i as usize];
            *a = a.saturating_sub(1);
        }
    }

    /// A peer announced one more piece (`have`).
    pub fn add_have(&mut self, index: u32) {
        if let Some(a) = self.availability.get_mut(index as usize) {
            *a += 1;
        }
    }

    /// Whether a peer with `has` has anything we still need.
    pub fn is_interesting(&self, has: &Bitfield) -> bool {
        has.iter_ones().any(|i| self.needs(i))
    }

    /// Whether piece `index` is one we still need (for `have` messages).
    pub fn wants(&self, index: u32) -> bool {
        index < self.num_pieces && self.needs(index)
    }

    /// Appends up to `max` blocks for a peer that has `has` to `out`. `mine` are the blocks
    /// this peer has outstanding (endgame never asks one peer twice, and only asks a peer
    /// that has little outstanding); `rotate` spreads peers over equally rare pieces.
    pub fn pick(
        &mut self,
        has: &Bitfield,
        max: usize,
        out: &mut Vec<BlockRef>,
        mine: &HashSet<BlockRef>,
        rotate: u32,
    ) {
        let start = out.len();
        let goal = start + max;
        // 1. pieces in progress
        for ai in 0..self.active.len() {
            if out.len() >= goal || self.free_blocks == 0 {
                break;
            }
            let index = self.active[ai];
            if has.get(index) {
                self.take_free(index, goal, out);
            }
        }
        // 2. new pieces, rarest first
        while out.len() < goal && self.free_blocks > 0 {
            let Some(index) = self.rarest_idle(has, rotate) else {
                break;
            };
            let n = self.blocks_in(index) as usize;
            self.pieces[index as usize] = PieceState::Active(vec![BlockState::Free; n]);
            self.active.push(index);
            self.take_free(index, goal, out);
        }
        // 3. endgame: duplicate a few outstanding blocks
        let asked = mine.len() + (out.len() - start);
        let goal = goal.min(out.len() + ENDGAME_DEPTH.saturating_sub(asked));
        if out.len() < goal && self.free_blocks == 0 {
            for ai in 0..self.active.len() {
                let index = self.active[ai];
                if !has.get(index) {
                    continue;
                }
                let n = self.blocks_in(index);
                for b in 0..n {
                    if out.len() >= goal {
                        return;
                    }
                    let r = self.block_ref(index, b);
                    if let PieceState::Active(blocks) = &mut self.pieces[index as usize] {
                        if let BlockState::Requested(k) = blocks[b as usize] {
                            if k < MAX_DUPLICATES
                                && !mine.contains(&r)
                                && !out[start..].contains(&r)
                            {
                                blocks[b as usize] = BlockState::Requested(k + 1);
                                out.push(r);
                            }
                        }
                    }
                }
            }
        }
    }

    fn take_free(&mut self, index: u32, goal: usize, out: &mut Vec<BlockRef>) {
        let n = self.blocks_in(index);
        for b in 0..n {
            if out.len() >= goal {
                return;
            }
            let r = self.block_ref(index, b);
            if let PieceState::Active(blocks) = &mut self.pieces[index as usize] {
                if blocks[b as usize] == BlockState::Free {
                    blocks[b as usize] = BlockState::Requested(1);
                    self.free_blocks -= 1;
                    out.push(r);
                }
            }
        }
    }

    fn rarest_idle(&self, has: &Bitfield, rotate: u32) -> Option<u32> {
        let n = self.num_pieces;
        if n == 0 {
            return None;
        }
        let mut best: Option<(u32, u32)> = None;
        for k in 0..n {
            let i = (k + rotate) % n;
            if !has.get(i) || !self.needs(i) || !matches!(self.pieces[i as usize], PieceState::Idle)
            {
                continue;
            }
            let a = self.availability[i as usize];
            if best.is_none_or(|(_, ba)| a < ba) {
                best = Some((i, a));
                if a <= 1 {
                    break;
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// A requested block will not come (choke, reject, peer gone, timeout): make it free again
    /// once nobody else has it outstanding.
    pub fn release(&mut self, r: &BlockRef) {
        if let Some(PieceState::Active(blocks)) = self.pieces.get_mut(r.index as usize) {
            let b = (r.begin / BLOCK_LEN) as usize;
            if let Some(BlockState::Requested(k)) = blocks.get(b).copied() {
                if k <= 1 {
                    blocks[b] = BlockState::Free;
                    self.free_blocks += 1;
                } else {
                    blocks[b] = BlockState::Requested(k - 1);
                }
            }
        }
    }

    /// A block arrived. The caller writes it only on `Accepted`.
    pub fn received(&mut self, r: &BlockRef) -> Received {
        if r.index >= self.num_pieces
            || r.begin % BLOCK_LEN != 0
            || r.begin / BLOCK_LEN >= self.blocks_in(r.index)
        {
            return Received::Invalid;
        }
        let expect = self.block_ref(r.index, r.begin / BLOCK_LEN);
        if expect.length != r.length {
            return Received::Invalid;
        }
        let b = (r.begin / BLOCK_LEN) as usize;
        let PieceState::Active(blocks) = &mut self.pieces[r.index as usize] else {
            return Received::Duplicate;
        };
        let dups = match blocks[b] {
            BlockState::Writing | BlockState::Received => return Received::Duplicate,
            BlockState::Free => {
                // arrived after we gave up on it: still good data
                self.free_blocks -= 1;
                0
            }
            BlockState::Requested(k) => k - 1,
        };
        blocks[b] = BlockState::Writing;
        Received::Accepted { dups }
    }

    /// An accepted block is on disk. Returns true when it was the piece's last one: verify
    /// the piece now.
    pub fn written(&mut self, r: &BlockRef) -> bool {
        let Some(PieceState::Active(blocks)) = self.pieces.get_mut(r.index as usize) else {
            return false;
        };
        let Some(state) = blocks.get_mut((r.begin / BLOCK_LEN) as usize) else {
            return false;
        };
        if *state != BlockState::Writing {
            return false;
        }
        *state = BlockState::Received;
        if blocks.iter().all(|s| *s == BlockState::Received) {
            self.pieces[r.index as usize] = PieceState::Verifying;
            self.active.retain(|&i| i != r.index);
            return true;
        }
        false
    }

    /// Writing an accepted block failed: it is free again.
    pub fn unwritten(&mut self, r: &BlockRef) {
        if let Some(PieceState::Active(blocks)) = self.pieces.get_mut(r.index as usize) {
            if let Some(state) = blocks.get_mut((r.begin / BLOCK_LEN) as usize) {
                if *state == BlockState::Writing {
                    *state = BlockState::Free;
                    self.free_blocks += 1;
                }
            }
        }
    }

    /// The piece's hash matched.
    pub fn verified(&mut self, index: u32) {
        self.pieces[index as usize] = PieceState::Done;
        self.have.set(index);
    }

    /// The piece's hash did not match: download it again.
    pub fn failed(&mut self, index: u32) {
        if matches!(self.pieces[index as usize], PieceState::Verifying) {
            self.pieces[index as usize] = PieceState::Idle;
            self.free_blocks += u64::from(self.blocks_in(index));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(pieces: u32, piece_len: u64, total: u64) -> Picker {
        Picker::new(
            piece_len,
            total,
            Bitfield::new(pieces),
            Bitfield::full(pieces),
        )
    }

    #[test]
    fn short_last_piece_and_block() {
        let p = picker(3, 40_000, 90_000);
        assert_eq!(p.piece_size(2), 10_000);
        assert_eq!(p.block_ref(0, 2).length, 40_000 - 32_768);
        assert_eq!(p.free_blocks, 3 + 3 + 1);
    }

    #[test]
    fn v2_padding_blocks_are_never_requested() {
        // two pieces of 4 blocks; piece 1 holds 20 000 bytes of data, then padding
        let mut p = picker(2, 65_536, 131_072).with_padding(vec![65_536, 20_000]);
        assert_eq!(p.free_blocks, 4 + 2);
        let mut out = Vec::new();
        p.pick(&Bitfield::full(2), 10, &mut out, &none(), 0);
        let of_1: Vec<_> = out.iter().filter(|r| r.index == 1).collect();
        // the block the data ends in is asked for whole (as libtorrent does)
        assert_eq!(
            of_1,
            [
                &BlockRef::new(1, 0, 16_384),
                &BlockRef::new(1, 16_384, 16_384)
            ]
        );
        assert_eq!(
            p.received(&BlockRef::new(1, 32_768, 16_384)),
            Received::Invalid
        );
        for r in &out {
            assert!(matches!(p.received(r), Received::Accepted { .. }));
            let last = p.written(r);
            assert_eq!(
                last,
                *r == BlockRef::new(1, 16_384, 16_384) || *r == BlockRef::new(0, 49_152, 16_384)
            );
        }
    }

    fn none() -> HashSet<BlockRef> {
        HashSet::new()
    }

    #[test]
    fn rarest_first_then_finish_started() {
        let mut p = picker(4, 32_768, 4 * 32_768);
        let all = Bitfield::full(4);
        let mut only2 = Bitfield::new(4);
        only2.set(2);
        p.add_peer(&all);
        p.add_peer(&all);
        p.add_peer(&only2);
        let mut out = vec![];
        p.pick(&all, 1, &mut out, &none(), 0);
        // pieces 0,1,3 have availability 2, piece 2 has 3: rarest is 0
        assert_eq!(out[0].index, 0);
        p.pick(&all, 1, &mut out, &none(), 0);
        assert_eq!(
            out[1],
            BlockRef {
                index: 0,
                begin: 16384,
                length: 16384
            }
        );
    }

    #[test]
    fn full_cycle_with_failure_and_endgame() {
        let mut p = picker(2, 32_768, 50_000);
        let all = Bitfield::full(2);
        p.add_peer(&all);
        let mut out = vec![];
        p.pick(&all, 100, &mut out, &none(), 0);
        assert_eq!(out.len(), 4);
        assert!(p.in_endgame());
        // another peer gets duplicates in endgame
        let mut dup = vec![];
        p.pick(&all, 100, &mut dup, &out[2..].iter().copied().collect(), 0);
        assert_eq!(dup.len(), 2);
        assert_eq!(p.received(&out[0]), Received::Accepted { dups: 1 });
        // a second copy while the first is being written is a duplicate too
        assert_eq!(p.received(&out[0]), Received::Duplicate);
        assert!(!p.written(&out[0]));
        assert_eq!(p.received(&out[0]), Received::Duplicate);
        assert_eq!(p.received(&out[1]), Received::Accepted { dups: 1 });
        assert!(p.written(&out[1]));
        p.failed(0);
        assert!(!p.in_endgame());
        p.verified(1);
        assert!(!p.is_complete());
        let mut again = vec![];
        p.pick(&all, 100, &mut again, &none(), 0);
        assert_eq!(again.len(), 2);
        assert_eq!(p.received(&again[0]), Received::Accepted { dups: 0 });
        assert_eq!(p.received(&again[1]), Received::Accepted { dups: 0 });
        // the piece is complete only once both blocks are written
        assert!(!p.written(&again[1]));
        assert!(p.written(&again[0]));
        p.verified(0);
        assert!(p.is_complete());
    }

    #[test]
    fn endgame_asks_idle_peers_for_a_few_copies_only() {
        // 8 pieces of 4 blocks: 32 blocks, all requested from peer A at once.
        let mut p = picker(8, 65_536, 8 * 65_536);
        let all = Bitfield::full(8);
        let mut a = vec![];
        p.pick(&all, 100, &mut a, &none(), 0);
        assert_eq!(a.len(), 32);
        assert!(p.in_endgame());
        // B has a full queue of its own: no duplicates for it.
        let busy: HashSet<BlockRef> = (0..ENDGAME_DEPTH as u32)
            .map(|i| BlockRef {
                index: 100 + i,
                begin: 0,
                length: BLOCK_LEN,
            })
            .collect();
        let mut b = vec![];
        p.pick(&all, 100, &mut b, &busy, 0);
        assert!(b.is_empty());
        // C is idle: a few copies, not all 32.
        let mut c = vec![];
        p.pick(&all, 100, &mut c, &none(), 0);
        assert_eq!(c.len(), ENDGAME_DEPTH);
        // D is idle too: other blocks (each block is asked for twice at most).
        let mut d = vec![];
        p.pick(&all, 100, &mut d, &none(), 0);
        assert_eq!(d.len(), ENDGAME_DEPTH);
        assert!(d.iter().all(|r| !c.contains(r)));
    }

    #[test]
    fn a_failed_write_frees_the_block() {
        let mut p = picker(1, 16_384, 16_384);
        let all = Bitfield::full(1);
        let mut out = vec![];
        p.pick(&all, 1, &mut out, &none(), 0);
        assert!(p.in_endgame());
        assert_eq!(p.received(&out[0]), Received::Accepted { dups: 0 });
        p.unwritten(&out[0]);
        assert!(!p.in_endgame());
        let mut again = vec![];
        p.pick(&all, 1, &mut again, &none(), 0);
        assert_eq!(again, out);
        assert_eq!(p.received(&again[0]), Received::Accepted { dups: 0 });
        assert!(p.written(&again[0]));
    }

    #[test]
    fn release_and_invalid() {
        let mut p = picker(1, 32_768, 32_768);
        let all = Bitfield::full(1);
        let mut out = vec![];
        p.pick(&all, 1, &mut out, &none(), 0);
        p.release(&out[0]);
        assert_eq!(p.free_blocks, 2);
        let bad = BlockRef {
            index: 0,
            begin: 1,
            length: 16384,
        };
        assert_eq!(p.received(&bad), Received::Invalid);
        let bad = BlockRef {
            index: 5,
            begin: 0,
            length: 16384,
        };
        assert_eq!(p.received(&bad), Received::Invalid);
        let short = BlockRef {
            index: 0,
            begin: 0,
            length: 100,
        };
        assert_eq!(p.received(&short), Received::Invalid);
    }

    #[test]
    fn wanted_subset_only() {
        let mut wanted = Bitfield::new(3);
        wanted.set(1);
        let mut p = Picker::new(16_384, 3 * 16_384, Bitfield::new(3), wanted);
        let all = Bitfield::full(3);
        let mut out = vec![];
        p.pick(&all, 10, &mut out, &none(), 0);
        assert_eq!(
            out,
            vec![BlockRef {
                index: 1,
                begin: 0,
                length: 16384
            }]
        );
        assert_eq!(p.pieces_left(), 1);
    }
}
