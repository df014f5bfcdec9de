//! BEP 52 piece layers from a peer: what a v2 magnet download needs after the metadata (the
//! `piece layers` are outside `info`, so BEP 9 does not carry them).
//!
//! For each file of more than one piece we send `hash request`s for its piece layer, 512
//! hashes at a time as libtorrent asks (base layer log2(piece length / 16 KiB), proof layers
//! up to just below the root), and keep an answer only when its hashes prove up to the file's
//! `pieces root` ([`proven_part`]). A `hash reject`, a wrong proof or silence fails the fetch.
//! Owns this one exchange on one connection; it never touches a download's state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::merkle::{self, Hash, BLOCK_SIZE};
use crate::peer::conn::{next_conn_id, Conn, ConnObserver, PeerError};
use crate::wire::message::HashRef;
use crate::wire::{Handshake, Message, Reserved};

/// Piece hashes asked for per request (libtorrent's chunk).
const CHUNK: u64 = 512;
/// How long the whole exchange may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// One file whose piece layer we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerFile {
    pub root: Hash,
    pub length: u64,
}

/// The shape of a file's tree: (log2 of its leaves, log2 of blocks per piece, pieces).
fn geometry(f: &LayerFile, piece_len: u64) -> (u32, u32, u64) {
    let blocks = f.length.div_ceil(BLOCK_SIZE as u64).max(1);
    let height = blocks.next_power_of_two().trailing_zeros();
    let piece_height = (piece_len / BLOCK_SIZE as u64).trailing_zeros();
    (height, piece_height, f.length.div_ceil(piece_len))
}

/// The `hash request`s for the piece layer of `f` (a file of more than one piece).
pub fn layer_requests(f: &LayerFile, piece_len: u64) -> Vec<HashRef> {
    let (height, piece_height, pieces) = geometry(f, piece_len);
    if pieces < 2 || height <= piece_height {
        return Vec::new();
    }
    (0..pieces)
        .step_by(CHUNK as usize)
        .filter_map(|i| {
            Some(HashRef {
                pieces_root: f.root,
                base_layer: piece_height,
                index: u32::try_from(i).ok()?,
                length: u32::try_from((pieces - i).next_power_of_two().min(CHUNK)).ok()?,
                proof_layers: height - piece_height - 1,
            })
        })
        .collect()
}

/// The piece hashes of a `hashes` answer to `req` (one of [`layer_requests`] for `f`) when
/// they and their uncle hashes prove up to `f`'s root; pad hashes past the file's last piece
/// are dropped. `None` for a payload of the wrong size or a failed proof.
pub fn proven_part(
    f: &LayerFile,
    piece_len: u64,
    req: &HashRef,
    payload: &[u8],
) -> Option<Vec<Hash>> {
    let (_, piece_height, pieces) = geometry(f, piece_len);
    let sub = req.length.trailing_zeros();
    let uncles = req.proof_layers.saturating_add(1).saturating_sub(sub) as usize;
    if payload.len() != 32 * (req.length as usize + uncles) {
        return None;
    }
    let hashes = merkle::split_hashes(payload);
    let (nodes, proof) = hashes.split_at(req.length as usize);
    let subtree = merkle::merkle_root(nodes, piece_height)?;
    if !merkle::verify_proof(&subtree, u64::from(req.index >> sub), proof, &f.root) {
        return None;
    }
    let keep = pieces
        .saturating_sub(u64::from(req.index))
        .min(nodes.len() as u64) as usize;
    Some(nodes[..keep].to_vec())
}

/// Fetches the piece layers of `files` from the peer at `addr` (a torrent whose wire info hash
/// is `info_hash`): each file's layer as bytes, in the order of `files`.
pub async fn fetch(
    addr: SocketAddr,
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    files: &[LayerFile],
    piece_len: u64,
    observer: Option<Arc<dyn ConnObserver>>,
) -> Result<Vec<Vec<u8>>, PeerError> {
    let mut conn = Conn::connect(addr, Duration::from_secs(5), next_conn_id(), observer).await?;
    let result = tokio::time::timeout(
        TIMEOUT,
        exchange(&mut conn, info_hash, peer_id, files, piece_len),
    )
    .await
    .unwrap_or(Err(PeerError::Timeout("waiting for the piece layers")));
    conn.report_closed(result.as_ref().err().map(ToString::to_string).as_deref());
    conn.shutdown().await;
    result
}

async fn exchange(
    conn: &mut Conn,
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    files: &[LayerFile],
    piece_len: u64,
) -> Result<Vec<Vec<u8>>, PeerError> {
    // extension protocol and v2 (byte 7, 0x10)
    let ours = Handshake::new(Reserved([0, 0, 0, 0, 0, 0x10, 0, 0x10]), info_hash, peer_id);
    conn.handshake(&ours, TIMEOUT).await?;
    let mut pending: Vec<(usize, HashRef)> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        for r in layer_requests(f, piece_len) {
            conn.queue(&Message::HashRequest(r));
            pending.push((i, r));
        }
    }
    conn.flush().await?;
    let mut parts: Vec<Vec<(u32, Vec<Hash>)>> = vec![Vec::new(); files.len()];
    while !pending.is_empty() {
        while let Some((msg, used)) = conn.next_message()? {
            let answer = match msg {
                Message::Hashes { hashes_of, hashes } => Some((hashes_of, Ok(hashes.to_vec()))),
                Message::HashReject(h) => Some((h, Err(()))),
                _ => None,
            };
            conn.consume(used);
            let Some((req, payload)) = answer else {
                continue;
            };
            let Some(at) = pending.iter().position(|(_, r)| *r == req) else {
                continue;
            };
            let (file, req) = pending.swap_remove(at);
            let Ok(payload) = payload else {
                return Err(PeerError::Protocol(format!(
                    "rejected our hash request {req}"
                )));
            };
            let Some(part) = proven_part(&files[file], piece_len, &req, &payload) else {
                return Err(PeerError::Protocol(format!(
                    "sent hashes for {req} that do not prove up to the pieces root"
                )));
            };
            parts[file].push((req.index, part));
        }
        if !pending.is_empty() {
            conn.fill().await?;
        }
    }
    Ok(parts
        .into_iter()
        .map(|mut p| {
            p.sort_by_key(|(i, _)| *i);
            p.into_iter().flat_map(|(_, h)| h).flatten().collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's leaves, its piece layer and root for pieces of `per` blocks.
    fn tree(blocks: usize, per: u32) -> (Vec<Hash>, Hash) {
        let leaves: Vec<Hash> = (0..blocks)
            .map(|i| merkle::block_hash(&[i as u8; 7]))
            .collect();
        let layer = merkle::layer(&leaves, 0, per.trailing_zeros());
        let root = merkle::merkle_root(&leaves, 0).expect("root");
        (layer, root)
    }

    /// What a peer that has the whole tree answers to `r` (the base nodes, then the uncles).
    fn answer(layer: &[Hash], piece_height: u32, r: &HashRef) -> Vec<u8> {
        let levels = merkle::levels(layer, piece_height);
        let node = |h: u32, i: u64| {
            levels
                .get(h as usize)
                .and_then(|l| l.get(i as usize))
                .copied()
                .unwrap_or_else(|| merkle::pad_hash(h + piece_height))
        };
        let mut out = Vec::new();
        for i in r.index..r.index + r.length {
            out.extend_from_slice(&node(0, u64::from(i)));
        }
        for k in r.length.trailing_zeros()..=r.proof_layers {
            out.extend_from_slice(&node(k, u64::from(r.index >> k) ^ 1));
        }
        out
    }

    #[test]
    fn layer_requests_and_their_answers_prove_to_the_root() {
        for (blocks, per) in [(3, 1), (9, 4), (1300, 2), (2000, 1)] {
            let piece_len = per as u64 * BLOCK_SIZE as u64;
            let (layer, root) = tree(blocks, per);
            let f = LayerFile {
                root,
                length: blocks as u64 * BLOCK_SIZE as u64 - 100,
            };
            let reqs = layer_requests(&f, piece_len);
            assert_eq!(reqs.len(), layer.len().div_ceil(512), "{blocks} blocks");
            let mut got = Vec::new();
            for r in &reqs {
                let mut payload = answer(&layer, per.trailing_zeros(), r);
                got.extend(proven_part(&f, piece_len, r, &payload).expect("proven"));
                payload[3] ^= 1;
                assert!(
                    proven_part(&f, piece_len, r, &payload).is_none(),
                    "a changed hash"
                );
                assert!(
                    proven_part(&f, piece_len, r, &payload[32..]).is_none(),
                    "short"
                );
            }
            assert_eq!(got, layer, "{blocks} blocks of {per} per piece");
        }
        let one = LayerFile {
            root: [1; 32],
            length: 16384,
        };
        assert!(
            layer_requests(&one, 16384).is_empty(),
            "one piece: no layer"
        );
    }
}
