//! Fetching a torrent's info dictionary from a peer: BEP 9 (metadata exchange) over BEP 10 (the
//! extension protocol). This is how a magnet link, which carries only the info hash, becomes a
//! torrent.
//!
//! ```text
//!  us                                              peer
//!  handshake (reserved bit 0x10 in byte 5) ───────►
//!          ◄─────── handshake (same bit set: it speaks BEP 10)
//!          ◄─────── bitfield, extended handshake {m: {ut_metadata: 3}, metadata_size: 31235}
//!  extended handshake {m: {ut_metadata: 1}} ─────►    first message after the handshake
//!  ut_metadata request piece 0 (sent under id 3) ─►    second message
//!          ◄─────── ut_metadata data piece 0 total_size 31235 + 16384 bytes (sent under id 1)
//!  ut_metadata request piece 1 ───────────────────►
//!          ◄─────── ut_metadata data piece 1 + 14851 bytes
//!  SHA-1(piece 0 ‖ piece 1) == info hash of the magnet link?  → the info dictionary
//! ```
//! Each side sends extension messages under the id the *receiver* chose in its `m`
//! dictionary, which is why the two directions above use different ids.
//!
//! The pieces are assembled by [`Assembler`], a pure state machine (no I/O) that refuses
//! anything a hostile peer could use to make us misbehave: a `total_size` above
//! [`MAX_METADATA_SIZE`] (checked before allocating), a size that changes, a piece we did not
//! ask for, a piece of the wrong length. The result is only trusted once it has every info hash
//! the magnet link names ([`Info::from_metadata`]): its SHA-1 the `btih`, its SHA-256 the
//! `btmh`, both for a hybrid link.
//!
//! All socket I/O goes through [`Conn`], so a trace recorder attached as its observer sees every
//! byte of the exchange.
//!
//! Contract: nothing here panics on what a peer sends; every failure is a [`MetadataError`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::metainfo::{Info, InfoHashes, MetainfoError};
use crate::peer::conn::{next_conn_id, Conn, ConnObserver, PeerError};
use crate::wire::extension::{metadata_piece_count, UT_METADATA};
use crate::wire::{ExtendedHandshake, Handshake, Message, Reserved, UtMetadata, WireError};

pub use crate::wire::extension::METADATA_PIECE_LEN;

/// The largest info dictionary we accept (16 MiB). Real ones are rarely above 1 MiB; a bigger
/// `metadata_size` or `total_size` is refused before anything is allocated.
pub const MAX_METADATA_SIZE: u64 = 16 * 1024 * 1024;

/// The id under which we ask peers to send us `ut_metadata` messages (our `m` entry): the
/// one the peer session announces when it serves metadata.
pub use crate::peer::session::OUR_UT_METADATA_ID;

/// How many metadata piece requests we keep outstanding at once.
const REQUEST_WINDOW: u32 = 8;

/// Why fetching metadata from one peer failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("the peer does not support the extension protocol (BEP 10): reserved bit 0x10 of byte 5 is not set")]
    NoExtensionProtocol,
    #[error("the peer does not offer ut_metadata (BEP 9) in its extended handshake ({0})")]
    NoUtMetadata(String),
    #[error("bad extended handshake from the peer: {0}")]
    BadExtendedHandshake(WireError),
    #[error("bad ut_metadata message from the peer: {0}")]
    BadMessage(WireError),
    #[error("metadata size {size} is larger than the maximum {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("the peer announced an empty info dictionary (size 0)")]
    Empty,
    #[error("metadata size changed from {expected} to {found}")]
    SizeChanged { expected: u64, found: u64 },
    #[error("metadata piece {piece} was not requested (or arrived twice)")]
    UnexpectedPiece { piece: u32 },
    #[error("metadata piece {piece} has {found} bytes, expected {expected}")]
    WrongPieceLength {
        piece: u32,
        expected: usize,
        found: usize,
    },
    #[error("the peer rejected our request for metadata piece {piece}")]
    Rejected { piece: u32 },
    #[error("the metadata is not the torrent we asked for: {0}")]
    Invalid(MetainfoError),
    #[error("timed out {0}")]
    Timeout(&'static str),
}

/// By hand rather than `#[from]`: the message already says the cause, so it is no `source`.
impl From<MetainfoError> for MetadataError {
    fn from(e: MetainfoError) -> MetadataError {
        MetadataError::Invalid(e)
    }
}

/// Timeouts of one metadata exchange.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    /// From connecting until the peer's extended handshake has arrived.
    pub handshake: Duration,
    /// Waiting for the next metadata piece.
    pub piece: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            handshake: Duration::from_secs(10),
            piece: Duration::from_secs(10),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pure part: assembling pieces

/// Collects the 16 KiB pieces of an info dictionary of a known size.
#[derive(Debug)]
pub struct Assembler {
    total_size: u64,
    buf: Vec<u8>,
    received: Vec<bool>,
    missing: u32,
}

impl Assembler {
    /// For an info dictionary of `total_size` bytes; refuses 0 and sizes above
    /// [`MAX_METADATA_SIZE`] before allocating.
    pub fn new(total_size: u64) -> Result<Assembler, MetadataError> {
        if total_size == 0 {
            return Err(MetadataError::Empty);
        }
        if total_size > MAX_METADATA_SIZE {
            return Err(MetadataError::TooLarge {
                size: total_size,
                max: MAX_METADATA_SIZE,
            });
        }
        // ≤ 16 MiB / 16 KiB = 1024 pieces: the casts below cannot truncate.
        let pieces = metadata_piece_count(total_size) as u32;
        Ok(Assembler {
            total_size,
            buf: vec![0; total_size as usize],
            received: vec![false; pieces as usize],
            missing: pieces,
        })
    }

    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    pub fn piece_count(&self) -> u32 {
        self.received.len() as u32
    }

    /// The length piece `piece` must have: 16 KiB, except the last one.
    pub fn piece_len(&self, piece: u32) -> usize {
        let start = u64::from(piece) * METADATA_PIECE_LEN as u64;
        self.total_size
            .saturating_sub(start)
            .min(METADATA_PIECE_LEN as u64) as usize
    }

    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Whether piece `piece` is still needed.
    pub fn needs(&self, piece: u32) -> bool {
        self.received.get(piece as usize) == Some(&false)
    }

    /// Stores one `data` message. Returns whether the metadata is now complete.
    pub fn add(&mut self, piece: u32, total_size: u64, data: &[u8]) -> Result<bool, MetadataError> {
        if total_size != self.total_size {
            return Err(MetadataError::SizeChanged {
                expected: self.total_size,
                found: total_size,
            });
        }
        if !self.needs(piece) {
            return Err(MetadataError::UnexpectedPiece { piece });
        }
        let expected = self.piece_len(piece);
        if data.len() != expected {
            return Err(MetadataError::WrongPieceLength {
                piece,
                expected,
                found: data.len(),
            });
        }
        let start = piece as usize * METADATA_PIECE_LEN;
        self.buf[start..start + expected].copy_from_slice(data);
        self.received[piece as usize] = true;
        self.missing -= 1;
        Ok(self.is_complete())
    }

    /// The assembled bytes, checked against the expected info hashes and parsed.
    pub fn finish(self, expected: &InfoHashes) -> Result<Info, MetadataError> {
        if !self.is_complete() {
            // Only reachable by misuse; report it rather than hashing a hole.
            let piece = self.received.iter().position(|r| !r).unwrap_or(0) as u32;
            return Err(MetadataError::UnexpectedPiece { piece });
        }
        Ok(Info::from_metadata(&self.buf, expected)?)
    }
}

// ---------------------------------------------------------------------------------------------
// The networked part

/// A peer after the BEP 3 handshake and the BEP 10 extended handshake.
#[derive(Debug, Clone)]
pub struct ExtendedPeer {
    pub addr: SocketAddr,
    pub handshake: Handshake,
    pub extended: ExtendedHandshake,
}

impl ExtendedPeer {
    /// The id the peer wants `ut_metadata` messages sent under.
    pub fn ut_metadata_id(&self) -> Option<u8> {
        self.extended.extension_id(UT_METADATA)
    }
}

/// Who we are and who watches the bytes, for [`connect_extended`] and [`fetch_from`].
#[derive(Clone)]
pub struct Local {
    pub peer_id: [u8; 20],
    /// Our listening port, announced as `p` in the extended handshake when set.
    pub port: Option<u16>,
    pub observer: Option<Arc<dyn ConnObserver>>,
    pub timeouts: Timeouts,
}

/// Our extended handshake: `{m: {ut_metadata: 1}, v: "bt-trace <version>"}`.
pub fn our_extended_handshake(port: Option<u16>) -> ExtendedHandshake {
    let mut hs = ExtendedHandshake::new().with_extension(UT_METADATA, OUR_UT_METADATA_ID);
    hs.v = Some(format!("bt-trace {}", env!("CARGO_PKG_VERSION")));
    hs.p = port;
    hs
}

/// Connects to `addr`, exchanges handshakes with the reserved bytes `00 00 00 00 00 10 00 00`
/// (extension protocol only), sends our extended handshake as the very first message, and
/// reads (skipping bitfield, have, …) until the peer's extended handshake arrives.
pub async fn connect_extended(
    addr: SocketAddr,
    info_hash: [u8; 20],
    local: &Local,
) -> Result<(Conn, ExtendedPeer), MetadataError> {
    let t = &local.timeouts;
    let mut conn = Conn::connect(addr, t.connect, next_conn_id(), local.observer.clone()).await?;
    match extended_handshake(&mut conn, info_hash, local).await {
        Ok(peer) => Ok((conn, peer)),
        Err(e) => {
            conn.report_closed(Some(&e.to_string()));
            Err(e)
        }
    }
}

/// The handshakes of [`connect_extended`] on an open connection (dialed or accepted: both
/// sides send their handshake without waiting for the other's).
pub async fn extended_handshake(
    conn: &mut Conn,
    info_hash: [u8; 20],
    local: &Local,
) -> Result<ExtendedPeer, MetadataError> {
    let t = &local.timeouts;
    let addr = conn.remote;
    let exchange = async {
        let ours = Handshake::new(Reserved::EXTENSION_ONLY, info_hash, local.peer_id);
        let theirs = conn.handshake(&ours, t.handshake).await?;
        if theirs.peer_id == local.peer_id {
            return Err(PeerError::Protocol("connected to ourselves".into()).into());
        }
        if !theirs.reserved.extended() {
            return Err(MetadataError::NoExtensionProtocol);
        }
        our_extended_handshake(local.port).emit_message(conn.out());
        conn.flush().await?;
        loop {
            while let Some((msg, used)) = conn.next_message()? {
                let hs = match msg {
                    Message::Extended { ext_id: 0, payload } => {
                        Some(ExtendedHandshake::parse(payload))
                    }
                    _ => None, // bitfield, have, unchoke, …: not needed here
                };
                conn.consume(used);
                if let Some(hs) = hs {
                    let extended = hs.map_err(MetadataError::BadExtendedHandshake)?;
                    return Ok(ExtendedPeer {
                        addr,
                        handshake: theirs,
                        extended,
                    });
                }
            }
            conn.fill().await?;
        }
    };
    tokio::time::timeout(t.handshake, exchange)
        .await
        .map_err(|_| MetadataError::Timeout("waiting for the peer's extended handshake"))?
}

/// Fetches the info dictionary over an extended connection (after [`connect_extended`]):
/// requests piece 0 first, then the others (a few at a time), and checks the result against
/// every hash in `expected` (both for a hybrid magnet link). A peer request for *our* metadata
/// is answered with a reject.
pub async fn fetch_metadata(
    conn: &mut Conn,
    peer: &ExtendedPeer,
    expected: &InfoHashes,
    timeouts: &Timeouts,
) -> Result<Info, MetadataError> {
    let Some(their_id) = peer.ut_metadata_id() else {
        return Err(MetadataError::NoUtMetadata(peer.extended.to_string()));
    };
    // Refuse an absurd announced size before asking anything.
    let mut asm = match peer.extended.metadata_size {
        Some(size) => Some(Assembler::new(size)?),
        None => None,
    };
    let mut next_request = 0u32;
    let mut outstanding = 0u32;
    loop {
        // Keep the window full: piece 0 alone until the size is known.
        let limit = asm.as_ref().map_or(1, Assembler::piece_count);
        while outstanding < REQUEST_WINDOW && next_request < limit {
            UtMetadata::Request {
                piece: next_request,
            }
            .emit_message(their_id, conn.out());
            next_request += 1;
            outstanding += 1;
        }
        conn.flush().await?;

        // Read until one ut_metadata message for us arrives.
        let piece_done = tokio::time::timeout(timeouts.piece, async {
            loop {
                while let Some((msg, used)) = conn.next_message()? {
                    let step = match msg {
                        Message::Extended { ext_id, payload } if ext_id == OUR_UT_METADATA_ID => {
                            let m =
                                UtMetadata::parse(payload).map_err(MetadataError::BadMessage)?;
                            on_message(m, &mut asm, their_id)?
                        }
                        _ => Step::Nothing,
                    };
                    conn.consume(used);
                    match step {
                        Step::Nothing => {}
                        Step::Reply(bytes) => conn.out().extend_from_slice(&bytes),
                        Step::Got(done) => return Ok::<bool, MetadataError>(done),
                    }
                }
                if conn.has_output() {
                    conn.flush().await?;
                }
                conn.fill().await?;
            }
        })
        .await
        .map_err(|_| MetadataError::Timeout("waiting for a metadata piece"))??;
        outstanding = outstanding.saturating_sub(1);
        if piece_done {
            break;
        }
    }
    match asm {
        Some(a) => a.finish(expected),
        None => Err(MetadataError::Empty), // unreachable: a data message creates it
    }
}

/// What one ut_metadata message asks of the loop.
enum Step {
    Nothing,
    /// Bytes to send back (a reject of a request for our metadata).
    Reply(Vec<u8>),
    /// A piece was stored; `true` when the metadata is complete.
    Got(bool),
}

fn on_message(
    m: UtMetadata<'_>,
    asm: &mut Option<Assembler>,
    their_id: u8,
) -> Result<Step, MetadataError> {
    match m {
        UtMetadata::Data {
            piece,
            total_size,
            data,
        } => {
            let a = match asm {
                Some(a) => a,
                None => asm.insert(Assembler::new(total_size)?),
            };
            a.add(piece, total_size, data).map(Step::Got)
        }
        UtMetadata::Reject { piece } => Err(MetadataError::Rejected { piece }),
        UtMetadata::Request { piece } => {
            // We are fetching, so we have nothing to give.
            let mut out = Vec::new();
            UtMetadata::Reject { piece }.emit_message(their_id, &mut out);
            Ok(Step::Reply(out))
        }
        UtMetadata::Unknown { .. } => Ok(Step::Nothing),
    }
}

/// [`connect_extended`] then [`fetch_metadata`] on one peer; closes the connection after.
pub async fn fetch_from(
    addr: SocketAddr,
    expected: InfoHashes,
    local: &Local,
) -> Result<(ExtendedPeer, Info), MetadataError> {
    let (mut conn, peer) = connect_extended(addr, expected.wire(), local).await?;
    match fetch_metadata(&mut conn, &peer, &expected, &local.timeouts).await {
        Ok(info) => {
            conn.shutdown().await;
            Ok((peer, info))
        }
        Err(e) => {
            conn.report_closed(Some(&e.to_string()));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Value;
    use sha1::{Digest, Sha1};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A valid single-file info dictionary with `pieces` piece hashes (20 bytes each), so that
    /// 1000 pieces make ~20 KB of metadata: two BEP 9 pieces.
    fn sample_info(pieces: usize) -> Vec<u8> {
        let hashes: Vec<u8> = (0..pieces * 20).map(|i| (i * 7 % 251) as u8).collect();
        Value::dict([
            ("length", Value::Int(pieces as i64 * 16384)),
            ("name", Value::bytes("sample.bin")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(hashes)),
        ])
        .encode()
    }

    fn hash(b: &[u8]) -> [u8; 20] {
        Sha1::digest(b).into()
    }

    fn ext(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Message::Extended {
            ext_id: id,
            payload,
        }
        .emit(&mut out);
        out
    }

    #[test]
    fn assembler_checks_every_piece() {
        let total = METADATA_PIECE_LEN as u64 * 2 + 100;
        let mut a = Assembler::new(total).unwrap();
        assert_eq!(a.piece_count(), 3);
        assert_eq!(a.piece_len(0), METADATA_PIECE_LEN);
        assert_eq!(a.piece_len(2), 100);
        assert_eq!(a.piece_len(u32::MAX), 0);
        let full = vec![1u8; METADATA_PIECE_LEN];
        assert!(matches!(
            a.add(0, total + 1, &full),
            Err(MetadataError::SizeChanged { .. })
        ));
        assert!(matches!(
            a.add(0, total, &full[..10]),
            Err(MetadataError::WrongPieceLength {
                piece: 0,
                expected: 16384,
                found: 10
            })
        ));
        assert!(matches!(
            a.add(3, total, &full),
            Err(MetadataError::UnexpectedPiece { piece: 3 })
        ));
        assert!(!a.add(0, total, &full).unwrap());
        assert!(matches!(
            a.add(0, total, &full),
            Err(MetadataError::UnexpectedPiece { piece: 0 })
        ));
        assert!(matches!(
            a.add(2, total, &full),
            Err(MetadataError::WrongPieceLength { .. })
        ));
        assert!(!a.add(2, total, &[2; 100]).unwrap());
        assert!(a.add(1, total, &full).unwrap());
        assert!(matches!(
            a.finish(&InfoHashes::V1([0; 20])),
            Err(MetadataError::Invalid(
                MetainfoError::InfoHashMismatch { .. }
            ))
        ));
    }

    #[test]
    fn assembler_caps_the_size_before_allocating() {
        assert!(matches!(Assembler::new(0), Err(MetadataError::Empty)));
        assert!(matches!(
            Assembler::new(u64::MAX),
            Err(MetadataError::TooLarge { .. })
        ));
        assert!(Assembler::new(MAX_METADATA_SIZE).is_ok());
        assert!(Assembler::new(MAX_METADATA_SIZE + 1).is_err());
    }

    proptest::proptest! {
        /// Whatever sizes, indexes and lengths a peer sends, the assembler answers without
        /// panicking, and never holds more than the cap.
        #[test]
        fn assembler_never_panics(
            size in 0u64..(3 * METADATA_PIECE_LEN as u64),
            msgs in proptest::collection::vec((0u32..5, 0u64..70000, 0usize..20000), 0..8),
        ) {
            if let Ok(mut a) = Assembler::new(size) {
                for (piece, total, len) in msgs {
                    let _ = a.add(piece, total, &vec![0; len]);
                }
                let _ = a.finish(&InfoHashes::V1([0; 20]));
            }
        }
    }

    #[test]
    fn assembler_builds_the_info() {
        let raw = sample_info(1000);
        let mut a = Assembler::new(raw.len() as u64).unwrap();
        for (i, chunk) in raw.chunks(METADATA_PIECE_LEN).enumerate() {
            a.add(i as u32, raw.len() as u64, chunk).unwrap();
        }
        let info = a.finish(&InfoHashes::V1(hash(&raw))).unwrap();
        assert_eq!(info.raw_bytes(), raw.as_slice());
        assert_eq!(info.num_pieces(), 1000);
    }

    /// How the scripted peer behaves.
    #[derive(Clone, Copy)]
    struct Script {
        ext_bit: bool,
        /// Its `m` entry for ut_metadata.
        ut_metadata: Option<u8>,
        /// `metadata_size` in its extended handshake: `Some(None)` = the real size.
        announce_size: Option<Option<u64>>,
        answer: Answer,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Answer {
        Good,
        /// Flips a byte of piece 0 (the hash will not match).
        Corrupt,
        Reject,
        /// Piece 0 one byte short.
        Short,
        /// `total_size` of 1 TiB in the data message.
        HugeTotal,
    }

    const GOOD: Script = Script {
        ext_bit: true,
        ut_metadata: Some(3),
        announce_size: Some(None),
        answer: Answer::Good,
    };

    async fn read_message(s: &mut TcpStream) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let len = u32::from_be_bytes(len) as usize;
        assert!(len < 1 << 20, "client sent a {len}-byte message");
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.ok()?;
        Some(body)
    }

    /// Accepts one connection and plays a seeder of `info` as the CodeCrafters peer does:
    /// after our handshake it sends its handshake, a bitfield and its extended handshake, then
    /// answers ut_metadata requests. Returns the bodies of every message the client sent.
    async fn fake_peer(listener: TcpListener, info: Vec<u8>, script: Script) -> Vec<Vec<u8>> {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs).await.unwrap();
        assert_eq!(&hs[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0], "reserved bytes");
        assert_eq!(&hs[28..48], &hash(&info), "info hash");
        let reserved = if script.ext_bit {
            Reserved::EXTENSION_ONLY
        } else {
            Reserved::new()
        };
        let mut out = Handshake::new(reserved, hash(&info), *b"-LT2080-abcdefghijkl")
            .emit()
            .to_vec();
        Message::Bitfield(&[0xff]).emit(&mut out);
        let mut theirs = ExtendedHandshake::new();
        if let Some(id) = script.ut_metadata {
            theirs = theirs.with_extension(UT_METADATA, id);
        }
        theirs.metadata_size = script.announce_size.map(|s| s.unwrap_or(info.len() as u64));
        theirs.v = Some("fake 1.0".into());
        theirs.emit_message(&mut out);
        s.write_all(&out).await.unwrap();

        let mut seen = Vec::new();
        while let Some(body) = read_message(&mut s).await {
            let request = match (body.first(), body.get(1)) {
                (Some(20), Some(&id)) if Some(id) == script.ut_metadata => {
                    match UtMetadata::parse(&body[2..]) {
                        Ok(UtMetadata::Request { piece }) => Some(piece),
                        _ => None,
                    }
                }
                _ => None,
            };
            seen.push(body);
            let Some(piece) = request else { continue };
            let start = piece as usize * METADATA_PIECE_LEN;
            let mut data = info[start..(start + METADATA_PIECE_LEN).min(info.len())].to_vec();
            let mut total = info.len() as u64;
            match script.answer {
                Answer::Good => {}
                Answer::Corrupt => data[0] ^= 1,
                Answer::Short => {
                    data.pop();
                }
                Answer::HugeTotal => total = 1 << 40,
                Answer::Reject => {}
            }
            let msg = if script.answer == Answer::Reject {
                UtMetadata::Reject { piece }
            } else {
                UtMetadata::Data {
                    piece,
                    total_size: total,
                    data: &data,
                }
            };
            let mut out = Vec::new();
            msg.emit_message(OUR_UT_METADATA_ID, &mut out);
            if s.write_all(&out).await.is_err() {
                break;
            }
        }
        seen
    }

    fn local() -> Local {
        Local {
            peer_id: *b"-bt0100-testtesttest",
            port: None,
            observer: None,
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                handshake: Duration::from_secs(5),
                piece: Duration::from_secs(5),
            },
        }
    }

    /// Runs [`fetch_from`] against a scripted peer; returns our result and what the peer saw.
    async fn run(
        info: Vec<u8>,
        script: Script,
    ) -> (Result<(ExtendedPeer, Info), MetadataError>, Vec<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = hash(&info);
        let peer = tokio::spawn(fake_peer(listener, info, script));
        let result = fetch_from(addr, InfoHashes::V1(h), &local()).await;
        (result, peer.await.unwrap())
    }

    #[tokio::test]
    async fn first_extended_handshake_then_request_for_piece_0() {
        let info = sample_info(1000);
        assert!(info.len() > METADATA_PIECE_LEN);
        let (result, seen) = run(info.clone(), GOOD).await;
        let (peer, got) = result.unwrap();
        assert_eq!(got.raw_bytes(), info.as_slice());
        assert_eq!(peer.ut_metadata_id(), Some(3));
        assert_eq!(&peer.handshake.peer_id[..3], b"-LT");
        assert_eq!(peer.extended.v.as_deref(), Some("fake 1.0"));

        // 1st message: our extended handshake, announcing ut_metadata under an id in 1..=255.
        assert_eq!(seen[0][..2], [20, 0]);
        let ours = ExtendedHandshake::parse(&seen[0][2..]).unwrap();
        assert_eq!(ours.extension_id(UT_METADATA), Some(OUR_UT_METADATA_ID));
        // 2nd: the request for piece 0, under the peer's id; then piece 1; nothing else.
        fn req(m: &[u8]) -> UtMetadata<'_> {
            UtMetadata::parse(&m[2..]).unwrap()
        }
        assert_eq!(seen[1][..2], [20, 3]);
        assert_eq!(req(&seen[1]), UtMetadata::Request { piece: 0 });
        assert_eq!(req(&seen[2]), UtMetadata::Request { piece: 1 });
        assert_eq!(seen.len(), 3);
    }

    #[tokio::test]
    async fn size_unknown_until_the_first_piece() {
        let info = sample_info(2000);
        let script = Script {
            announce_size: None,
            ..GOOD
        };
        let (result, seen) = run(info.clone(), script).await;
        assert_eq!(result.unwrap().1.raw_bytes(), info.as_slice());
        let pieces: Vec<_> = seen[1..]
            .iter()
            .map(|m| UtMetadata::parse(&m[2..]).unwrap())
            .collect();
        assert_eq!(pieces, [0, 1, 2].map(|piece| UtMetadata::Request { piece }));
    }

    #[tokio::test]
    async fn a_bad_piece_fails_the_hash_check() {
        let script = Script {
            answer: Answer::Corrupt,
            ..GOOD
        };
        let (result, _) = run(sample_info(1000), script).await;
        let e = result.unwrap_err();
        assert!(
            matches!(
                e,
                MetadataError::Invalid(MetainfoError::InfoHashMismatch { .. })
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("not the torrent we asked for"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn reject_short_piece_and_hostile_sizes() {
        let info = sample_info(10);
        let with = |answer| Script { answer, ..GOOD };
        let (r, _) = run(info.clone(), with(Answer::Reject)).await;
        assert!(matches!(r, Err(MetadataError::Rejected { piece: 0 })));
        let (r, _) = run(info.clone(), with(Answer::Short)).await;
        assert!(matches!(r, Err(MetadataError::WrongPieceLength { .. })));
        // size unknown up front, then a data message claiming 1 TiB
        let script = Script {
            announce_size: None,
            ..with(Answer::HugeTotal)
        };
        let (r, _) = run(info.clone(), script).await;
        assert!(matches!(r, Err(MetadataError::TooLarge { .. })));
        // a hostile metadata_size is refused before we ask for anything
        let script = Script {
            announce_size: Some(Some(1 << 40)),
            ..GOOD
        };
        let (r, seen) = run(info, script).await;
        assert!(matches!(r, Err(MetadataError::TooLarge { .. })));
        assert_eq!(seen.len(), 1, "only our extended handshake");
    }

    #[tokio::test]
    async fn peers_without_the_extensions() {
        let info = sample_info(10);
        let script = Script {
            ut_metadata: None,
            ..GOOD
        };
        let (r, _) = run(info.clone(), script).await;
        assert!(matches!(r, Err(MetadataError::NoUtMetadata(_))));
        let script = Script {
            ext_bit: false,
            ..GOOD
        };
        let (r, seen) = run(info, script).await;
        assert!(matches!(r, Err(MetadataError::NoExtensionProtocol)));
        assert!(
            seen.is_empty(),
            "no extended handshake to a peer without BEP 10"
        );
    }

    /// Two peers: one sends a corrupt piece, the other the right metadata. The magnet command
    /// gets the torrent anyway.
    #[tokio::test]
    async fn magnet_info_moves_on_to_the_next_peer() {
        let info = sample_info(1000);
        let bad = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = crate::client::ClientConfig {
            extra_peers: vec![bad.local_addr().unwrap(), good.local_addr().unwrap()],
            ..Default::default()
        };
        let corrupt = Script {
            answer: Answer::Corrupt,
            ..GOOD
        };
        let bad_peer = tokio::spawn(fake_peer(bad, info.clone(), corrupt));
        let good_peer = tokio::spawn(fake_peer(good, info.clone(), GOOD));
        let link = format!("magnet:?xt=urn:btih:{}&dn=x", hex::encode(hash(&info)));
        let m = crate::magnet::Magnet::parse(&link).unwrap();
        let (t, from) = crate::client::magnet_info(&m, &cfg).await.unwrap();
        assert_eq!(t.info.raw_bytes(), info.as_slice());
        assert_eq!(from, cfg.extra_peers[1]);
        assert_eq!(t.tracker_url(), None);
        bad_peer.await.unwrap();
        good_peer.await.unwrap();
    }

    /// The download engine's peer sessions serve ut_metadata requests (BEP 9) from the info
    /// dictionary they hold: our own fetcher gets it from them, and a piece out of range is
    /// rejected.
    #[tokio::test]
    async fn sessions_serve_metadata() {
        use crate::download::{engine, Layout, Options, StaticPeers};
        let info = sample_info(1000);
        let h = hash(&info);
        let parsed = Info::from_raw_bytes(&info).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let layout = Layout {
            info_hash: h,
            piece_len: parsed.piece_length,
            hashes: crate::download::verify::PieceHashes::V1(parsed.pieces.clone()),
            files: vec![crate::download::storage::DiskFile::plain(
                dir.path().join("data"),
                parsed.total_length,
            )],
            info_bytes: Some(info.clone()),
        };
        let opts = Options::default();
        let cancel = opts.cancel.clone();
        let source = Box::new(StaticPeers(vec![listener.local_addr().unwrap()]));
        let engine = tokio::spawn(engine::download(layout, source, opts));

        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = Conn::from_stream(stream, 0, None).unwrap();
        let peer = extended_handshake(&mut conn, h, &local()).await.unwrap();
        assert_eq!(peer.extended.metadata_size, Some(info.len() as u64));
        let their_id = peer
            .ut_metadata_id()
            .expect("the session announces ut_metadata");
        let got = fetch_metadata(&mut conn, &peer, &InfoHashes::V1(h), &local().timeouts)
            .await
            .unwrap();
        assert_eq!(got.raw_bytes(), info.as_slice());

        let request = UtMetadata::Request { piece: 99 }.to_vec();
        conn.out().extend_from_slice(&ext(their_id, &request));
        conn.flush().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                while let Some((msg, used)) = conn.next_message().unwrap() {
                    let found = match msg {
                        Message::Extended { ext_id, payload } if ext_id == OUR_UT_METADATA_ID => {
                            Some(UtMetadata::parse(payload).unwrap().to_vec())
                        }
                        _ => None,
                    };
                    conn.consume(used);
                    if let Some(f) = found {
                        return f;
                    }
                }
                conn.fill().await.unwrap();
            }
        })
        .await
        .unwrap();
        assert_eq!(
            UtMetadata::parse(&answer).unwrap(),
            UtMetadata::Reject { piece: 99 }
        );
        cancel.cancel();
        let summary = engine.await.unwrap().unwrap();
        assert!(summary.interrupted);
    }
}
