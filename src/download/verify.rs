//! What a piece must hash to: a v1 SHA-1 per piece, or for a v2-only torrent the file's merkle
//! tree ([`V2Pieces`]). The engine and the resume check ask [`PieceHashes::check`] about a
//! piece's bytes as read from the byte space; nothing here does I/O.

use std::sync::Arc;

use sha1::{Digest, Sha1};

use crate::download::v2::V2Pieces;
use crate::metainfo::{MetainfoError, Torrent};

/// The expected hashes of a torrent's pieces.
#[derive(Debug, Clone)]
pub enum PieceHashes {
    /// SHA-1 of each piece (v1 and hybrid torrents).
    V1(Vec<[u8; 20]>),
    /// The files' merkle trees (v2-only torrents).
    V2(Arc<V2Pieces>),
}

impl PieceHashes {
    /// The hashes a download of `t` checks: v1 when it has them (hybrids download as v1),
    /// else the v2 trees, each file's piece layer checked against its `pieces root` first.
    pub fn of(t: &Torrent) -> Result<PieceHashes, MetainfoError> {
        if t.info.has_v1() {
            return Ok(PieceHashes::V1(t.info.pieces.clone()));
        }
        match V2Pieces::new(t) {
            Some(v2) => Ok(PieceHashes::V2(Arc::new(v2?))),
            None => Err(MetainfoError::Invalid {
                field: "info".into(),
                why: "has neither v1 `pieces` nor a v2 `file tree`".into(),
            }),
        }
    }

    pub fn num_pieces(&self) -> u32 {
        match self {
            PieceHashes::V1(h) => h.len() as u32,
            PieceHashes::V2(v2) => v2.num_pieces(),
        }
    }

    /// Whether `piece`, the bytes of piece `index` as read from the byte space, is good.
    pub fn check(&self, index: u32, piece: &[u8]) -> bool {
        match self {
            PieceHashes::V1(h) => {
                h.get(index as usize) == Some(&<[u8; 20]>::from(Sha1::digest(piece)))
            }
            PieceHashes::V2(v2) => v2.verify(index, piece),
        }
    }

    /// The v2 trees, for a v2-only torrent.
    pub fn v2(&self) -> Option<&Arc<V2Pieces>> {
        match self {
            PieceHashes::V1(_) => None,
            PieceHashes::V2(v2) => Some(v2),
        }
    }
}
