//! From bytes to events, with no I/O: the one place where a connection's byte streams become
//! [`EventKind`]s. The recorder feeds it the bytes bt-trace wrote and read; the capture
//! analyzer feeds it reassembled TCP streams. Both therefore describe the same bytes with the
//! same events (`analyze` on a bt-trace trace gives back the trace's JSON Lines).
//!
//! - [`ConnectionDecoder`]: a BitTorrent peer connection, both directions through the wire
//!   codec's [`StreamDecoder`] (piece headers mode: piece data is hashed in passing, never
//!   buffered), with each side's BEP 10 extension table so that an extended message is named
//!   with the ids its *receiver* announced, and the recovery real captures need:
//!   - **hunting** ([`Start::Hunt`], and after a gap or an error): the direction looks for the
//!     next plausible message start, then decodes normally; [`PeerItem::Resynced`] says where
//!     it picked up;
//!   - **gaps** ([`ConnectionDecoder::gap`]): bytes lost inside a message whose length prefix
//!     was seen, or inside piece data, resume exactly at the next message; otherwise it hunts;
//!   - **a start that is not a handshake** (MSE/PE): one error, then a search for a plain
//!     handshake further on (an MSE/PE handshake that selected plaintext), for
//!     [`MAX_HANDSHAKE_SCAN`] bytes.
//! - [`decode_http_request`] / [`decode_http_response`]: an HTTP tracker exchange.
//! - [`decode_udp`]: a BEP 15 datagram.
//!
//! The decoder hands out raw [`PeerItem`]s (borrowed, no allocation: the analyzer's default
//! report only counts them); [`PeerItem::to_decoded`] builds the event and its words (the
//! packet comment, "request piece 7 begin 16384 length 16384") when one is wanted.
//!
//! Contract: no bytes in any chunking, no gap and no error make this panic; memory is the two
//! stream decoders' buffers (at most one unfinished message each, never piece data) and the
//! extension tables.

use sha1::{Digest, Sha1};

use crate::tracker::http1::{parse_http_request, parse_http_response, HttpError};
use crate::tracker::query::parse_announce_query;
use crate::tracker::reply::{parse_announce_response, parse_scrape_response};
use crate::tracker::TrackerError;
use crate::wire::handshake::PROTOCOL_PREFIX;
use crate::wire::message::PIECE_HEADER_LEN;
use crate::wire::{
    extension::EXTENDED_HANDSHAKE_ID, BlockRef, ExtendedHandshake, ExtensionMessage, GapEffect,
    Handshake, Item, Message, MessageKind, StreamDecoder, StreamError,
};

use super::{scrape_entries, AnnounceFields, Dir, EventKind, HandshakeFields, Msg};
use super::{TrackerReply, UdpPacket};

/// One decoded item of a byte stream, as an event with its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The direction whose stream it is in.
    pub dir: Dir,
    /// Stream offset of its first byte.
    pub offset: u64,
    /// Its length on the wire.
    pub len: u64,
    /// The event ([`EventKind::Handshake`], [`EventKind::Message`],
    /// [`EventKind::ProtocolError`], or for HTTP the tracker request/response).
    pub kind: EventKind,
    /// The item in words, for a packet comment.
    pub words: String,
}

impl Decoded {
    /// Stream offset one past its last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// How a direction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the 68-byte handshake (the connection's start is in the capture).
    Handshake,
    /// Somewhere in the middle: hunt for the first message.
    Hunt,
    /// Unknown (the direction's SYN is not in the capture): the handshake if the bytes begin
    /// with one, else a hunt for the first message (with no error).
    Unknown,
}

/// How far into a direction that does not start with a handshake one is looked for.
pub const MAX_HANDSHAKE_SCAN: u64 = 64 * 1024;

/// One thing found in a direction.
#[derive(Debug)]
pub enum PeerItem<'a> {
    /// The 68-byte handshake at `offset`.
    Handshake {
        dir: Dir,
        offset: u64,
        handshake: Handshake,
    },
    /// A message other than piece (pieces come as [`PeerItem::PieceData`] and
    /// [`PeerItem::Piece`]).
    Message {
        dir: Dir,
        offset: u64,
        len: u64,
        msg: Message<'a>,
        /// The extended handshake of the side that *receives* it (names extended ids).
        receiver_ext: Option<&'a ExtendedHandshake>,
        /// When the message is an extended handshake that parses: its table (now the
        /// sender's).
        sender_ext: Option<&'a ExtendedHandshake>,
    },
    /// Bytes of a piece message's data as they pass (for `--extract` and piece checks):
    /// `data` is at offset `at` of the message's block `block`. `whole`: none of the block's
    /// data before these bytes was lost.
    PieceData {
        dir: Dir,
        offset: u64,
        block: BlockRef,
        at: u32,
        data: &'a [u8],
        whole: bool,
    },
    /// A piece message ended (at `offset + len`): its block, and the SHA-1 of its data when
    /// hashing and all of it was seen. `cut`: some of its data was not in the capture.
    Piece {
        dir: Dir,
        offset: u64,
        len: u64,
        block: BlockRef,
        sha1: Option<[u8; 20]>,
        cut: bool,
    },
    /// The direction cannot be decoded at `error.offset`; what follows is a search (see the
    /// [module docs](self)). `encrypted`: the direction opened with random-looking bytes
    /// instead of a handshake, an MSE/PE (encrypted) handshake rather than a broken one.
    Error {
        dir: Dir,
        error: StreamError,
        encrypted: bool,
    },
    /// Decoding picks up again at stream offset `at`; `from..at` was skipped. `handshake`:
    /// what was found is a handshake (after an MSE/PE preamble), else a message (hunting).
    Resynced {
        dir: Dir,
        from: u64,
        at: u64,
        handshake: bool,
    },
}

impl PeerItem<'_> {
    /// The event and its words. `None` for piece data and [`PeerItem::Resynced`], which are
    /// not events.
    pub fn to_decoded(&self) -> Option<Decoded> {
        let (dir, offset, len, kind, words) = match *self {
            PeerItem::Handshake {
                dir,
                offset,
                ref handshake,
            } => {
                let hs = HandshakeFields::from_handshake(handshake);
                let words = format!("{handshake} ({})", hs.client);
                let len = crate::wire::HANDSHAKE_LEN as u64;
                (
                    dir,
                    offset,
                    len,
                    EventKind::Handshake { offset, len, hs },
                    words,
                )
            }
            PeerItem::Message {
                dir,
                offset,
                len,
                ref msg,
                receiver_ext,
                ..
            } => {
                let words = message_words(msg, receiver_ext);
                let msg = Msg::from_message(msg, receiver_ext);
                (
                    dir,
                    offset,
                    len,
                    EventKind::Message { offset, len, msg },
                    words,
                )
            }
            PeerItem::Piece {
                dir,
                offset,
                len,
                block,
                ref sha1,
                cut,
            } => {
                let mut words = piece_words(block);
                if cut {
                    words.push_str(" (data not in the capture)");
                }
                let msg = Msg::piece(block, sha1.as_ref());
                (
                    dir,
                    offset,
                    len,
                    EventKind::Message { offset, len, msg },
                    words,
                )
            }
            PeerItem::Error {
                dir,
                ref error,
                encrypted,
            } => {
                let kind = EventKind::ProtocolError {
                    offset: error.offset,
                    error: error.error.to_string(),
                };
                let words = if encrypted {
                    // as the analyzer's tables say it
                    format!(
                        "encrypted (MSE/PE): random-looking bytes from stream offset {}, not a \
                         BitTorrent handshake",
                        error.offset
                    )
                } else {
                    format!("protocol error: {}", error.error)
                };
                (dir, error.offset, 0, kind, words)
            }
            PeerItem::PieceData { .. } | PeerItem::Resynced { .. } => return None,
        };
        Some(Decoded {
            dir,
            offset,
            len,
            kind,
            words,
        })
    }
}

/// A piece message being passed, in piece headers mode.
#[derive(Debug)]
struct Piece {
    at: u64,
    block: BlockRef,
    /// Data bytes accounted for (seen or lost).
    done: u32,
    /// SHA-1 of the data so far; `None` when not hashing or after a gap in it.
    sha: Option<Sha1>,
    cut: bool,
}

impl Piece {
    fn finish(self, dir: Dir, f: &mut dyn FnMut(PeerItem<'_>)) {
        f(PeerItem::Piece {
            dir,
            offset: self.at,
            len: PIECE_HEADER_LEN as u64 + u64::from(self.block.length),
            block: self.block,
            sha1: self.sha.map(|s| s.finalize().into()),
            cut: self.cut,
        });
    }
}

/// A search for `0x13 "BitTorrent protocol"` across chunks.
#[derive(Debug)]
struct Scan {
    /// Where the search began.
    from: u64,
    /// The last bytes seen (fewer than the prefix), at stream offset `at`.
    tail: Vec<u8>,
    at: u64,
}

impl Scan {
    /// Looks at the next bytes; the stream offset of the prefix and the bytes from there on,
    /// once found.
    fn push(&mut self, bytes: &[u8]) -> Option<(u64, Vec<u8>)> {
        let mut v = std::mem::take(&mut self.tail);
        v.extend_from_slice(bytes);
        if let Some(p) = v
            .windows(PROTOCOL_PREFIX.len())
            .position(|w| w == PROTOCOL_PREFIX)
        {
            let at = self.at + p as u64;
            v.drain(..p);
            return Some((at, v));
        }
        let keep = v.len().min(PROTOCOL_PREFIX.len() - 1);
        self.at += (v.len() - keep) as u64;
        v.drain(..v.len() - keep);
        self.tail = v;
        None
    }
}

/// One direction.
#[derive(Debug)]
struct Side {
    dec: StreamDecoder,
    /// The extended handshake this side sent (its `m` names the ids it wants to receive).
    ext: Option<ExtendedHandshake>,
    /// Stopped for good (no handshake found after a start that was not one).
    stopped: bool,
    /// Stream offset where the current hunt began, while hunting.
    hunt_from: Option<u64>,
    /// Stream offset where this direction's bytes began (0, unless it was picked up later).
    start_offset: u64,
    start: Start,
    /// Looking for a handshake after a start that was not one.
    scan: Option<Scan>,
    /// The piece message whose data is passing.
    piece: Option<Piece>,
}

impl Side {
    fn new(start: Start, offset: u64) -> Self {
        let (dec, hunt_from) = match start {
            Start::Handshake | Start::Unknown => (StreamDecoder::new(), None),
            Start::Hunt => (StreamDecoder::hunting(), Some(offset)),
        };
        Side {
            dec: dec.starting_at(offset).piece_headers(),
            ext: None,
            stopped: false,
            hunt_from,
            start_offset: offset,
            start,
            scan: None,
            piece: None,
        }
    }
}

/// Both directions of one peer connection. See the [module docs](self).
#[derive(Debug)]
pub struct ConnectionDecoder {
    sides: [Side; 2],
    /// Hash piece data (for the events' `sha1`).
    hash: bool,
}

impl Default for ConnectionDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionDecoder {
    /// A decoder for a connection seen from its start: each direction begins with the
    /// 68-byte handshake. Piece data is hashed.
    pub fn new() -> Self {
        Self::with_starts([Start::Handshake, Start::Handshake])
    }

    /// Each direction (client → server first) as given.
    pub fn with_starts(starts: [Start; 2]) -> Self {
        ConnectionDecoder {
            sides: starts.map(|s| Side::new(s, 0)),
            hash: true,
        }
    }

    /// Whether piece data is hashed; without, [`PeerItem::Piece`] has no `sha1` (faster when
    /// no events are wanted).
    pub fn hash_pieces(mut self, on: bool) -> Self {
        self.hash = on;
        self
    }

    /// The direction's bytes begin at `offset` instead of 0 (set before the first push).
    pub fn set_start_offset(&mut self, dir: Dir, offset: u64) {
        let side = &mut self.sides[dir.index()];
        *side = Side::new(side.start, offset);
    }

    /// Whether `dir` stopped for good (or, after a start that was not a handshake, is only
    /// looking for one).
    pub fn stopped(&self, dir: Dir) -> bool {
        let s = &self.sides[dir.index()];
        s.stopped || s.scan.is_some()
    }

    /// Where `dir` started hunting, while it hunts.
    pub fn hunting(&self, dir: Dir) -> Option<u64> {
        self.sides[dir.index()].hunt_from
    }

    /// Stream offset of the first byte of `dir` that belongs to no finished item (the start
    /// of an unfinished message, or of the piece whose data is passing): frames wholly before
    /// it are no longer needed. `u64::MAX` once the direction stopped.
    pub fn pending_offset(&self, dir: Dir) -> u64 {
        let s = &self.sides[dir.index()];
        if s.stopped {
            u64::MAX
        } else if s.scan.is_some() {
            // Hunting for messages in clear meanwhile (see `push`).
            s.dec.offset()
        } else {
            s.piece.as_ref().map_or(s.dec.offset(), |p| p.at)
        }
    }

    /// Bytes seen of the unfinished message of `dir`, if any (a piece's data is counted, not
    /// held).
    pub fn unfinished(&self, dir: Dir) -> u64 {
        let s = &self.sides[dir.index()];
        match &s.piece {
            Some(p) => PIECE_HEADER_LEN as u64 + u64::from(p.done),
            None => s.dec.buffered().len() as u64,
        }
    }

    /// Feeds the next `bytes` of direction `dir` and hands every item they complete to `f`,
    /// in stream order.
    pub fn push(&mut self, dir: Dir, bytes: &[u8], f: &mut dyn FnMut(PeerItem<'_>)) {
        let side = &mut self.sides[dir.index()];
        if side.stopped {
            return;
        }
        if let Some(scan) = &mut side.scan {
            match scan.push(bytes) {
                Some((at, rest)) => {
                    f(PeerItem::Resynced {
                        dir,
                        from: scan.from,
                        at,
                        handshake: true,
                    });
                    side.scan = None;
                    side.hunt_from = None;
                    side.dec = StreamDecoder::new().starting_at(at).piece_headers();
                    side.dec.push(&rest);
                    self.decode(dir, &[], f);
                }
                None => {
                    if scan.at.saturating_sub(scan.from) > MAX_HANDSHAKE_SCAN {
                        side.scan = None;
                        side.hunt_from = None;
                        side.stopped = true;
                    } else {
                        // Messages in clear with no handshake before them: after an MSE/PE
                        // handshake that selected plaintext, the initiator's BitTorrent
                        // handshake was inside the encrypted initial payload.
                        self.decode(dir, bytes, f);
                    }
                }
            }
            return;
        }
        self.decode(dir, bytes, f);
    }

    fn decode(&mut self, dir: Dir, bytes: &[u8], f: &mut dyn FnMut(PeerItem<'_>)) {
        let hash = self.hash;
        let [a, b] = &mut self.sides;
        let (side, other) = match dir {
            Dir::C2s => (a, b),
            Dir::S2c => (b, a),
        };
        let mut input = bytes;
        loop {
            let Side {
                dec,
                ext,
                hunt_from,
                start_offset,
                start,
                scan,
                piece,
                ..
            } = &mut *side;
            match dec.next_item(&mut input) {
                Ok(Some(d)) => {
                    *scan = None;
                    if let Some(from) = hunt_from.take() {
                        f(PeerItem::Resynced {
                            dir,
                            from,
                            at: d.offset,
                            handshake: false,
                        });
                    }
                    let offset = d.offset;
                    match d.item {
                        Item::Handshake(handshake) => f(PeerItem::Handshake {
                            dir,
                            offset,
                            handshake,
                        }),
                        Item::Message(msg) => {
                            let mut sender_ext = None;
                            if let Message::Extended {
                                ext_id: EXTENDED_HANDSHAKE_ID,
                                payload,
                            } = msg
                            {
                                if let Ok(h) = ExtendedHandshake::parse(payload) {
                                    sender_ext = Some(&*ext.insert(h));
                                }
                            }
                            f(PeerItem::Message {
                                dir,
                                offset,
                                len: d.bytes.len() as u64,
                                msg,
                                receiver_ext: other.ext.as_ref(),
                                sender_ext,
                            });
                        }
                        Item::PieceHeader(block) => {
                            let p = Piece {
                                at: offset,
                                block,
                                done: 0,
                                sha: hash.then(Sha1::new),
                                cut: false,
                            };
                            if block.length == 0 {
                                p.finish(dir, f);
                            } else if let Some(old) = piece.replace(p) {
                                old.finish(dir, f); // not reached: data ends a piece
                            }
                        }
                        Item::PieceData { rest } => {
                            let Some(p) = piece else { continue };
                            if let Some(sha) = &mut p.sha {
                                sha.update(d.bytes);
                            }
                            f(PeerItem::PieceData {
                                dir,
                                offset,
                                block: p.block,
                                at: p.done,
                                data: d.bytes,
                                whole: !p.cut,
                            });
                            p.done += d.bytes.len() as u32;
                            if rest == 0 {
                                if let Some(p) = piece.take() {
                                    p.finish(dir, f);
                                }
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let from = error.offset;
                    let first = error.offset == *start_offset && hunt_from.is_none();
                    if first && *start == Start::Unknown {
                        // Picked up after its start: hunt from the first byte, no error.
                        let held = dec.buffered().to_vec();
                        *dec = StreamDecoder::hunting().starting_at(from).piece_headers();
                        dec.push(&held);
                        *start = Start::Hunt;
                        *hunt_from = Some(from);
                        continue;
                    }
                    let at_start = *start == Start::Handshake && first;
                    let encrypted = at_start && looks_random(dec.buffered());
                    f(PeerItem::Error {
                        dir,
                        error,
                        encrypted,
                    });
                    if at_start {
                        // Not a BitTorrent handshake (e.g. MSE): look for one further on.
                        let mut sc = Scan {
                            from,
                            tail: Vec::new(),
                            at: from,
                        };
                        let held = dec.buffered().to_vec();
                        let found = sc.push(&held);
                        // Meanwhile, hunt for messages in clear (see `push`).
                        *dec = StreamDecoder::hunting().starting_at(from).piece_headers();
                        match found {
                            Some((at, rest)) => {
                                f(PeerItem::Resynced {
                                    dir,
                                    from,
                                    at,
                                    handshake: true,
                                });
                                *dec = StreamDecoder::new().starting_at(at).piece_headers();
                                dec.push(&rest);
                                continue;
                            }
                            None => {
                                *scan = Some(sc);
                                *hunt_from = Some(from);
                                dec.push(&held);
                                continue;
                            }
                        }
                    }
                    dec.resync();
                    hunt_from.get_or_insert(from);
                }
            }
        }
    }

    /// The connection ended. A piece message of `dir` that already lost data in a gap ends
    /// as cut (a snap length also cuts the last frame's tail, a hole nothing follows); any
    /// other unfinished message gives nothing.
    pub fn end(&mut self, dir: Dir, f: &mut dyn FnMut(PeerItem<'_>)) {
        let side = &mut self.sides[dir.index()];
        if side.piece.as_ref().is_some_and(|p| p.cut) {
            if let Some(p) = side.piece.take() {
                p.finish(dir, f);
            }
        }
    }

    /// Bytes of `dir` from `resume_at - lost` to `resume_at` were never seen. Decoding goes on
    /// at `resume_at` as the returned effect says (`None`: the direction had stopped, or is
    /// looking for a handshake after an MSE/PE preamble, which goes on after the gap). A piece
    /// message that loses data ends as cut (a [`PeerItem::Piece`] to `f`).
    pub fn gap(
        &mut self,
        dir: Dir,
        lost: u64,
        resume_at: u64,
        f: &mut dyn FnMut(PeerItem<'_>),
    ) -> Option<GapEffect> {
        let side = &mut self.sides[dir.index()];
        if let Some(scan) = &mut side.scan {
            scan.tail.clear();
            scan.at = resume_at;
            // The hunt for messages in clear goes on after the gap too.
            side.dec.gap(lost, resume_at);
            return None;
        }
        if side.stopped {
            return None;
        }
        let effect = side.dec.gap(lost, resume_at);
        if let Some(mut p) = side.piece.take() {
            p.cut = true;
            p.sha = None;
            match effect {
                GapEffect::PieceData { rest, .. } if rest > 0 => {
                    p.done = p.block.length.saturating_sub(rest as u32);
                    side.piece = Some(p);
                }
                _ => p.finish(dir, f),
            }
        }
        if let GapEffect::Hunting { from } = effect {
            side.hunt_from = Some(from);
        }
        Some(effect)
    }
}

/// A piece message in words: "piece 7 begin 0 length 16384".
fn piece_words(b: BlockRef) -> String {
    format!(
        "{} {} begin {} length {}",
        MessageKind::Piece.name(),
        b.index,
        b.begin,
        b.length
    )
}

/// A message in words: [`Message`]'s `Display` (names from the message table), with extended
/// payloads decoded. Used for the recorder's packet comments and the analyzer's `--messages`
/// lines alike.
pub fn message_words(m: &Message<'_>, receiver: Option<&ExtendedHandshake>) -> String {
    match *m {
        Message::Extended { ext_id, payload } => {
            match ExtensionMessage::parse(ext_id, payload, receiver) {
                Ok(e) => e.to_string(),
                Err(e) => format!("extended id {ext_id}: {e}"),
            }
        }
        Message::Piece { index, begin, data } => {
            piece_words(BlockRef::new(index, begin, data.len() as u32))
        }
        _ => m.to_string(),
    }
}

/// Decodes an HTTP request to a tracker at the start of `bytes`. `None` while the head is
/// incomplete. Announce queries are decoded; other targets (scrape) are shown as they are.
pub fn decode_http_request(bytes: &[u8]) -> Option<Decoded> {
    let (kind, used, words) = match parse_http_request(bytes) {
        Ok((head, used)) => {
            let path = head.target.split('?').next().unwrap_or_default();
            let is_announce = path.rsplit('/').next().unwrap_or_default() == "announce";
            let (announce, error) = if is_announce {
                match parse_announce_query(&head.target) {
                    Ok(q) => (Some(AnnounceFields::from_query(&q)), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            } else {
                (None, None)
            };
            let words = match &announce {
                Some(a) => format!(
                    "tracker announce{}{}",
                    a.event
                        .as_deref()
                        .filter(|e| !e.is_empty())
                        .map(|e| format!(" event {e}"))
                        .unwrap_or_default(),
                    a.left.map(|l| format!(" left {l}")).unwrap_or_default()
                ),
                None => format!("tracker request {} {}", head.method, path),
            };
            let kind = EventKind::TrackerHttpRequest {
                offset: 0,
                len: used as u64,
                host: head.header("host").map(str::to_string),
                method: head.method,
                target: head.target,
                announce,
                error,
            };
            (kind, used, words)
        }
        Err(HttpError::Incomplete) => return None,
        Err(e) => {
            let kind = EventKind::ProtocolError {
                offset: 0,
                error: format!("HTTP request: {e}"),
            };
            (kind, 0, format!("bad HTTP request: {e}"))
        }
    };
    Some(Decoded {
        dir: Dir::C2s,
        offset: 0,
        len: used as u64,
        kind,
        words,
    })
}

/// Decodes a tracker's HTTP response at the start of `bytes` (`at_eof`: the server has
/// closed, so a body without a length ends here). `scrape` says the request was a scrape.
/// `None` while incomplete.
pub fn decode_http_response(bytes: &[u8], at_eof: bool, scrape: bool) -> Option<Decoded> {
    let (kind, used, words) = match parse_http_response(bytes, at_eof, bytes.len()) {
        Ok((r, used)) => {
            let (response, error) = if r.status != 200 {
                (None, None)
            } else if scrape {
                match parse_scrape_response(&r.body) {
                    Ok(files) => (
                        Some(TrackerReply::Scrape {
                            files: scrape_entries(&files),
                        }),
                        None,
                    ),
                    Err(e) => (None, Some(e.to_string())),
                }
            } else {
                match parse_announce_response(&r.body) {
                    Ok(a) => (Some(TrackerReply::from_announce(&a)), None),
                    Err(TrackerError::Failure(reason)) => {
                        (Some(TrackerReply::Failure { reason }), None)
                    }
                    Err(e) => (None, Some(e.to_string())),
                }
            };
            let words = match &response {
                Some(TrackerReply::Announce {
                    interval, peers, ..
                }) => format!(
                    "tracker response: interval {interval}, {} peer{}",
                    peers.len(),
                    if peers.len() == 1 { "" } else { "s" }
                ),
                Some(TrackerReply::Failure { reason }) => format!("tracker failure: {reason}"),
                Some(TrackerReply::Scrape { files }) => {
                    format!("tracker scrape response: {} torrents", files.len())
                }
                None => format!("tracker response HTTP {} {}", r.status, r.reason),
            };
            let kind = EventKind::TrackerHttpResponse {
                offset: 0,
                len: used as u64,
                status: r.status,
                reason: r.reason,
                body_len: r.body.len() as u64,
                response,
                error,
            };
            (kind, used, words)
        }
        Err(HttpError::Incomplete) => return None,
        Err(e) => {
            let kind = EventKind::ProtocolError {
                offset: 0,
                error: format!("HTTP response: {e}"),
            };
            (kind, 0, format!("bad HTTP response: {e}"))
        }
    };
    Some(Decoded {
        dir: Dir::S2c,
        offset: 0,
        len: used as u64,
        kind,
        words,
    })
}

/// Decodes a BEP 15 datagram sent to a tracker (`to_tracker`) or by one; `ipv6` if it went
/// over IPv6. Returns the event and its words.
pub fn decode_udp(bytes: &[u8], to_tracker: bool, ipv6: bool) -> (EventKind, String) {
    let packet = UdpPacket::decode(bytes, to_tracker, ipv6);
    let words = match &packet {
        UdpPacket::ConnectRequest { .. } => "UDP tracker connect request".to_string(),
        UdpPacket::ConnectResponse { .. } => "UDP tracker connect response".to_string(),
        UdpPacket::AnnounceRequest { event, left, .. } => {
            format!("UDP tracker announce event {event} left {left}")
        }
        UdpPacket::AnnounceResponse {
            interval, peers, ..
        } => format!(
            "UDP tracker announce response: interval {interval}, {} peers",
            peers.len()
        ),
        UdpPacket::ScrapeRequest { info_hashes, .. } => {
            format!("UDP tracker scrape of {} torrents", info_hashes.len())
        }
        UdpPacket::ScrapeResponse { .. } => "UDP tracker scrape response".to_string(),
        UdpPacket::Error { message, .. } => format!("UDP tracker error: {message}"),
        UdpPacket::Unknown { action, .. } => format!("UDP tracker action {action}"),
        UdpPacket::Invalid { error, .. } => format!("not a UDP tracker packet: {error}"),
    };
    let kind = EventKind::TrackerUdp {
        len: bytes.len() as u64,
        packet,
    };
    (kind, words)
}

/// Whether `b` looks like random bytes (key material, ciphertext): nearly as many distinct byte
/// values as uniformly random bytes of that length would show, and no long runs of one value.
/// Text, BitTorrent messages and most binary protocols repeat a few values (zeros) far more.
pub fn looks_random(b: &[u8]) -> bool {
    if b.len() < 32 {
        return false;
    }
    let mut seen = [false; 256];
    let mut distinct = 0u32;
    let mut run = 1usize;
    let mut longest = 1usize;
    for (i, &x) in b.iter().enumerate() {
        if !seen[x as usize] {
            seen[x as usize] = true;
            distinct += 1;
        }
        if i > 0 && b[i - 1] == x {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 1;
        }
    }
    // Expected distinct values among n uniform bytes: 256 · (1 − (255/256)^n).
    let n = b.len() as f64;
    let expected = 256.0 * (1.0 - (255.0f64 / 256.0).powf(n));
    f64::from(distinct) >= 0.85 * expected - 3.0 && longest <= 4
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::ExtPayload;
    use crate::wire::message::tests::any_message_bytes;
    use crate::wire::{Reserved, WireError};
    use proptest::prelude::*;

    /// A handshake (extension protocol on, info hash all 7s) from `peer`.
    pub(crate) fn hs(peer: &[u8; 20]) -> Vec<u8> {
        Handshake::new(Reserved::new().with_extended(), [7; 20], *peer)
            .emit()
            .to_vec()
    }

    /// An extended message, encoded.
    pub(crate) fn ext(id: u8, payload: &[u8]) -> Vec<u8> {
        Message::Extended {
            ext_id: id,
            payload,
        }
        .to_vec()
    }

    fn collect(d: &mut ConnectionDecoder, dir: Dir, bytes: &[u8], out: &mut Vec<Decoded>) {
        d.push(dir, bytes, &mut |it| out.extend(it.to_decoded()));
    }

    /// Items in short words: "offset what".
    fn items(d: &mut ConnectionDecoder, dir: Dir, bytes: &[u8]) -> Vec<String> {
        let mut v = Vec::new();
        d.push(dir, bytes, &mut |it| v.extend(short(&it)));
        v
    }

    fn short(it: &PeerItem<'_>) -> Option<String> {
        Some(match it {
            PeerItem::Handshake { offset, .. } => format!("{offset} handshake"),
            PeerItem::Message { offset, msg, .. } => format!("{offset} {msg}"),
            PeerItem::Piece {
                offset, block, cut, ..
            } => format!(
                "{offset} piece {}{}",
                block.index,
                if *cut { " cut" } else { "" }
            ),
            PeerItem::PieceData { .. } => return None,
            PeerItem::Error { error, .. } => format!("error at {}", error.offset),
            PeerItem::Resynced {
                from,
                at,
                handshake,
                ..
            } => format!(
                "{} {from}..{at}",
                if *handshake {
                    "handshake at"
                } else {
                    "resynced"
                }
            ),
        })
    }

    /// A two-sided conversation with extension tables on both sides.
    fn sample() -> (Vec<u8>, Vec<u8>) {
        let mut c2s = hs(b"-bt0100-aaaaaaaaaaaa");
        c2s.extend(ext(0, b"d1:md11:ut_metadatai3eee"));
        c2s.extend(Message::Request(BlockRef::new(1, 0, 4)).to_vec());
        let mut s2c = hs(b"-TR3000-bbbbbbbbbbbb");
        s2c.extend(ext(0, b"d1:md11:ut_metadatai5eee"));
        // The server sends ut_metadata with the *client's* id 3.
        s2c.extend(ext(3, b"d8:msg_typei0e5:piecei0ee"));
        s2c.extend(
            Message::Piece {
                index: 1,
                begin: 0,
                data: b"abcd",
            }
            .to_vec(),
        );
        (c2s, s2c)
    }

    /// Both directions, fed one byte at a time, interleaved: the same items as fed whole.
    #[test]
    fn decodes_both_directions_in_any_chunking() {
        let (c2s, s2c) = sample();
        let mut whole = Vec::new();
        let mut d = ConnectionDecoder::new();
        collect(&mut d, Dir::C2s, &c2s, &mut whole);
        collect(&mut d, Dir::S2c, &s2c, &mut whole);

        let mut bytewise = Vec::new();
        let mut d = ConnectionDecoder::new();
        for i in 0..c2s.len().max(s2c.len()) {
            if let Some(b) = c2s.get(i) {
                collect(&mut d, Dir::C2s, &[*b], &mut bytewise);
            }
            if let Some(b) = s2c.get(i) {
                collect(&mut d, Dir::S2c, &[*b], &mut bytewise);
            }
        }
        let key = |v: &[Decoded], dir| {
            v.iter()
                .filter(|x| x.dir == dir)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&whole, Dir::C2s), key(&bytewise, Dir::C2s));
        assert_eq!(key(&whole, Dir::S2c), key(&bytewise, Dir::S2c));

        let s2c_items = key(&whole, Dir::S2c);
        assert_eq!(s2c_items.len(), 4);
        assert_eq!(s2c_items[0].offset, 0);
        assert_eq!(s2c_items[0].len, 68);
        assert!(s2c_items[0].words.contains("Transmission 3.00"));
        match &s2c_items[2].kind {
            EventKind::Message {
                msg: Msg::Extended { name, payload, .. },
                ..
            } => {
                assert_eq!(name.as_deref(), Some("ut_metadata"));
                assert!(matches!(
                    payload,
                    ExtPayload::UtMetadata { msg_type: 0, .. }
                ));
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(s2c_items[2].words, "ut_metadata request piece 0");
        assert_eq!(s2c_items[3].words, "piece 1 begin 0 length 4");
        assert_eq!(s2c_items[3].end(), s2c.len() as u64);
        // The piece's SHA-1, hashed in passing, is the one of its whole data.
        let whole_piece = Msg::from_message(
            &Message::Piece {
                index: 1,
                begin: 0,
                data: b"abcd",
            },
            None,
        );
        assert!(
            matches!(&s2c_items[3].kind, EventKind::Message { msg, len: 17, .. } if *msg == whole_piece)
        );
        let c2s_items = key(&whole, Dir::C2s);
        assert_eq!(c2s_items[2].words, "request piece 1 begin 0 length 4");
    }

    /// An MSE/PE handshake (random-looking bytes where the handshake should be) is described
    /// as the analyzer's tables describe it, in the recorder's traces too.
    #[test]
    fn a_random_looking_start_is_called_encrypted() {
        let mut out = Vec::new();
        let mut d = ConnectionDecoder::new();
        collect(
            &mut d,
            Dir::C2s,
            &crate::analyze::detect::noise(300, 5),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(matches!(
            out[0].kind,
            EventKind::ProtocolError { offset: 0, .. }
        ));
        assert_eq!(
            out[0].words,
            "encrypted (MSE/PE): random-looking bytes from stream offset 0, not a BitTorrent \
             handshake"
        );
    }

    #[test]
    fn a_broken_start_reports_once_then_looks_for_a_handshake() {
        let mut out = Vec::new();
        let mut d = ConnectionDecoder::new();
        collect(&mut d, Dir::S2c, &[0x42; 100], &mut out);
        collect(&mut d, Dir::S2c, &[0x42; 100], &mut out);
        assert_eq!(out.len(), 1);
        assert!(matches!(
            out[0].kind,
            EventKind::ProtocolError { offset: 0, .. }
        ));
        assert_eq!(out[0].words, "protocol error: not a BitTorrent handshake: expected 0x13 \"BitTorrent protocol\", found \"BBBBBBBBBBBBBBBBBBBB\"");
        assert!(d.stopped(Dir::S2c));
        assert!(!d.stopped(Dir::C2s));
        // Meanwhile a hunt for messages in clear keeps only what may start one (the last 4
        // bytes, too short for a header).
        assert_eq!(d.pending_offset(Dir::S2c), 196);
        // The search gives up after MAX_HANDSHAKE_SCAN bytes.
        collect(
            &mut d,
            Dir::S2c,
            &vec![7u8; MAX_HANDSHAKE_SCAN as usize + 100],
            &mut out,
        );
        collect(&mut d, Dir::S2c, &hs(b"-bt0100-aaaaaaaaaaaa"), &mut out);
        assert_eq!(out.len(), 1, "stopped for good");
    }

    #[test]
    fn plaintext_messages_after_an_mse_preamble_without_a_handshake() {
        // The initiator's handshake went inside the encrypted initial payload: only its later
        // messages are in clear (libtorrent with plaintext selected).
        let preamble: Vec<u8> = (0..700u32).map(|i| (i * 97 + 13) as u8).collect();
        let mut s = preamble.clone();
        s.extend(ext(0, b"d1:md11:ut_metadatai3eee"));
        s.extend(Message::HaveNone.to_vec());
        s.extend(Message::Interested.to_vec());
        for cut in [1usize, 64, 701, 5000] {
            let mut d = ConnectionDecoder::new();
            let mut got = Vec::new();
            for c in s.chunks(cut) {
                got.extend(items(&mut d, Dir::C2s, c));
            }
            let n = got.len();
            assert_eq!(got[0], "error at 0", "chunks of {cut}: {got:?}");
            assert_eq!(got[1], "resynced 0..700", "chunks of {cut}");
            assert!(
                got[2].starts_with("700 extended"),
                "chunks of {cut}: {got:?}"
            );
            assert_eq!(
                got[3..n],
                ["730 have none", "735 interested"],
                "chunks of {cut}"
            );
        }
    }

    #[test]
    fn an_unknown_start_takes_a_handshake_or_hunts_without_an_error() {
        let mut d = ConnectionDecoder::with_starts([Start::Unknown, Start::Unknown]);
        let mut s = hs(b"-bt0100-aaaaaaaaaaaa");
        s.extend(Message::Unchoke.to_vec());
        assert_eq!(items(&mut d, Dir::C2s, &s), ["0 handshake", "68 unchoke"]);
        let mut m = Message::Have { index: 3 }.to_vec();
        m.extend(Message::Interested.to_vec());
        assert_eq!(
            items(&mut d, Dir::S2c, &m),
            ["resynced 0..0", "0 have 3", "9 interested"]
        );
    }

    #[test]
    fn plaintext_handshake_after_an_mse_preamble() {
        // aria2's MSE handshake that selected plaintext: key, padding, then the handshake
        // (`captures/lo_aria2_to_libtorrent.pcapng`, stream 1).
        let preamble: Vec<u8> = (0..433u32).map(|i| (i * 97 + 13) as u8).collect();
        let mut s = preamble.clone();
        s.extend(hs(b"A2-1-36-0-abcdefghij"));
        s.extend(Message::Interested.to_vec());
        for cut in [1usize, 19, 100, 440, 1000] {
            let mut d = ConnectionDecoder::new();
            let mut got = Vec::new();
            for c in s.chunks(cut) {
                got.extend(items(&mut d, Dir::C2s, c));
            }
            assert_eq!(
                got,
                [
                    "error at 0".to_string(),
                    "handshake at 0..433".into(),
                    "433 handshake".into(),
                    "501 interested".into()
                ],
                "chunks of {cut}"
            );
        }
    }

    #[test]
    fn hunting_finds_messages_mid_stream() {
        // The tail of a piece (its start not captured), then messages.
        let mut s: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        let first = s.len() as u64;
        s.extend(Message::Have { index: 5 }.to_vec());
        s.extend(Message::Unchoke.to_vec());
        s.extend(Message::KeepAlive.to_vec());
        let mut d = ConnectionDecoder::with_starts([Start::Hunt, Start::Hunt]);
        assert_eq!(d.hunting(Dir::C2s), Some(0));
        let mut got = Vec::new();
        for c in s.chunks(33) {
            got.extend(items(&mut d, Dir::C2s, c));
        }
        assert_eq!(
            got,
            [
                format!("resynced 0..{first}"),
                format!("{first} have 5"),
                format!("{} unchoke", first + 9),
                format!("{} keep-alive", first + 14),
            ]
        );
        assert_eq!(d.hunting(Dir::C2s), None);
        assert_eq!(d.pending_offset(Dir::C2s), s.len() as u64);
        // A message at the very start is found too.
        let mut s = Message::Have { index: 1 }.to_vec();
        s.extend(Message::Interested.to_vec());
        let mut d = ConnectionDecoder::with_starts([Start::Hunt, Start::Hunt]);
        assert_eq!(
            items(&mut d, Dir::S2c, &s),
            ["resynced 0..0", "0 have 1", "9 interested"]
        );
    }

    #[test]
    fn gaps_in_piece_data_cut_the_piece_and_go_on() {
        let data = [9u8; 100];
        let piece = Message::Piece {
            index: 2,
            begin: 0,
            data: &data,
        }
        .to_vec();
        let mut s = hs(b"-bt0100-aaaaaaaaaaaa");
        let piece_at = s.len() as u64;
        s.extend(&piece);
        let next = s.len() as u64;
        s.extend(Message::Have { index: 2 }.to_vec());
        let mut d = ConnectionDecoder::new();
        let mut data_seen = Vec::new();
        let mut got = Vec::new();
        let mut sink = |it: PeerItem<'_>| {
            if let PeerItem::PieceData {
                block,
                at,
                data,
                whole,
                ..
            } = &it
            {
                assert_eq!(*block, BlockRef::new(2, 0, 100));
                data_seen.push((*at, data.len(), *whole));
            }
            got.extend(short(&it));
        };
        // Handshake and the piece's first 20 bytes, then 30 bytes lost, 10 seen, 20 lost
        // (a snap length cuts every frame of a piece).
        let cut = piece_at as usize + 20;
        d.push(Dir::C2s, &s[..cut], &mut sink);
        let e = d.gap(Dir::C2s, 30, cut as u64 + 30, &mut sink);
        assert_eq!(
            e,
            Some(GapEffect::PieceData {
                message_at: piece_at,
                rest: 100 - 37
            })
        );
        let at = cut + 30;
        d.push(Dir::C2s, &s[at..at + 10], &mut sink);
        d.gap(Dir::C2s, 20, at as u64 + 30, &mut sink);
        d.push(Dir::C2s, &s[at + 30..], &mut sink);
        assert_eq!(
            got,
            [
                "0 handshake".to_string(),
                format!("{piece_at} piece 2 cut"),
                format!("{next} have 2")
            ]
        );
        assert_eq!(data_seen, [(0, 7, true), (37, 10, false), (67, 33, false)]);
    }

    #[test]
    fn a_gap_past_a_message_hunts_and_ends_a_cut_piece() {
        let mut s = hs(b"-bt0100-aaaaaaaaaaaa");
        s.extend(
            Message::Piece {
                index: 4,
                begin: 0,
                data: &[1; 50],
            }
            .to_vec(),
        );
        let lost_from = s.len() - 10;
        s.extend(Message::Have { index: 2 }.to_vec());
        let h3 = s.len() as u64;
        s.extend(Message::Have { index: 3 }.to_vec());
        s.extend(Message::Have { index: 4 }.to_vec());
        let resume = lost_from + 12; // inside "have 2"
        let mut d = ConnectionDecoder::new();
        let mut got = items(&mut d, Dir::C2s, &s[..lost_from]);
        let mut sink = |it: PeerItem<'_>| got.extend(short(&it));
        assert_eq!(
            d.gap(Dir::C2s, 12, resume as u64, &mut sink),
            Some(GapEffect::Hunting {
                from: resume as u64
            })
        );
        got.extend(items(&mut d, Dir::C2s, &s[resume..]));
        assert_eq!(
            got,
            [
                "0 handshake".to_string(),
                "68 piece 4 cut".into(),
                format!("resynced {resume}..{h3}"),
                format!("{h3} have 3"),
                format!("{} have 4", h3 + 9)
            ]
        );
    }

    #[test]
    fn an_error_mid_stream_hunts_for_the_next_message() {
        let mut s = hs(b"-bt0100-aaaaaaaaaaaa");
        s.extend([0, 0, 0, 3, 4, 1, 1]); // "have" with length 3: impossible
        let at = s.len() as u64;
        s.extend(Message::Have { index: 8 }.to_vec());
        s.extend(Message::Choke.to_vec());
        let mut d = ConnectionDecoder::new();
        let mut errors = Vec::new();
        let mut got = Vec::new();
        d.push(Dir::S2c, &s, &mut |it| {
            if let PeerItem::Error { error, .. } = &it {
                errors.push(error.error.clone());
            }
            got.extend(short(&it));
        });
        assert!(matches!(errors[..], [WireError::BadLength { .. }]));
        assert_eq!(
            got,
            [
                "0 handshake".to_string(),
                "error at 68".into(),
                format!("resynced 68..{at}"),
                format!("{at} have 8"),
                format!("{} choke", at + 9)
            ]
        );
        assert!(!d.stopped(Dir::S2c));
    }

    #[test]
    fn unfinished_counts_piece_data_it_does_not_hold() {
        let mut s = hs(b"-bt0100-aaaaaaaaaaaa");
        s.extend(
            Message::Piece {
                index: 0,
                begin: 0,
                data: &[5; 40],
            }
            .to_vec(),
        );
        let mut d = ConnectionDecoder::new();
        assert_eq!(items(&mut d, Dir::C2s, &s[..68 + 18]), ["0 handshake"]);
        assert_eq!(d.unfinished(Dir::C2s), 18);
        assert_eq!(d.pending_offset(Dir::C2s), 68);
        assert_eq!(items(&mut d, Dir::C2s, &s[68 + 18..]), ["68 piece 0"]);
        assert_eq!(d.unfinished(Dir::C2s), 0);
        items(&mut d, Dir::C2s, &[0, 0, 0]);
        assert_eq!(d.unfinished(Dir::C2s), 3);
        // A piece cut short by the end of the connection gives nothing, unless a gap cut it.
        let mut got = Vec::new();
        d.end(Dir::C2s, &mut |it| got.extend(short(&it)));
        assert!(got.is_empty());
    }

    #[test]
    fn start_offset_numbers_from_there() {
        let mut d = ConnectionDecoder::new();
        d.set_start_offset(Dir::C2s, 1000);
        let s = hs(b"-bt0100-aaaaaaaaaaaa");
        assert_eq!(items(&mut d, Dir::C2s, &s), ["1000 handshake"]);
    }

    proptest! {
        /// Clean streams in any chunking: the same events as fed whole, one per message.
        #[test]
        fn any_chunking_gives_the_same_events(
            a in proptest::collection::vec(any_message_bytes(), 0..8),
            b in proptest::collection::vec(any_message_bytes(), 0..8),
            chunk in 1usize..90,
        ) {
            let mut c2s = hs(b"-bt0100-aaaaaaaaaaaa");
            c2s.extend(ext(0, b"d1:md6:ut_pexi1e11:ut_metadatai2eee"));
            for m in &a { c2s.extend_from_slice(m); }
            let mut s2c = hs(b"-LT2080-bbbbbbbbbbbb");
            s2c.extend(ext(0, b"d1:md11:ut_metadatai3eee"));
            for m in &b { s2c.extend_from_slice(m); }
            let mut want = Vec::new();
            let mut d = ConnectionDecoder::new();
            collect(&mut d, Dir::S2c, &s2c, &mut want);
            collect(&mut d, Dir::C2s, &c2s, &mut want);
            // In the same order of directions (an extended message is named by what its
            // receiver announced so far), in chunks.
            let mut got = Vec::new();
            let mut d = ConnectionDecoder::new();
            for (dir, s) in [(Dir::S2c, &s2c), (Dir::C2s, &c2s)] {
                for c in s.chunks(chunk) {
                    collect(&mut d, dir, c, &mut got);
                }
            }
            let by_dir = |v: &[Decoded], dir| v.iter().filter(|x| x.dir == dir).cloned().collect::<Vec<_>>();
            for dir in [Dir::C2s, Dir::S2c] {
                prop_assert_eq!(by_dir(&got, dir), by_dir(&want, dir));
            }
            prop_assert_eq!(want.len(), a.len() + b.len() + 4);
            // Each message event is what the wire codec says about its bytes.
            let mut at = 68 + ext(0, b"d1:md6:ut_pexi1e11:ut_metadatai2eee").len() as u64;
            for (e, m) in by_dir(&want, Dir::C2s)[2..].iter().zip(&a) {
                let (msg, _) = Message::parse(m).unwrap();
                prop_assert_eq!((e.offset, e.len), (at, m.len() as u64));
                let receiver = ExtendedHandshake::parse(b"d1:md11:ut_metadatai3eee").ok();
                let receiver = receiver.as_ref();
                prop_assert_eq!(&e.words, &message_words(&msg, receiver));
                prop_assert_eq!(&e.kind, &EventKind::Message { offset: at, len: m.len() as u64, msg: Msg::from_message(&msg, receiver) });
                at += m.len() as u64;
            }
        }

        /// Arbitrary bytes, chunks, gaps and start modes: no panic, offsets move forward.
        #[test]
        fn arbitrary_input_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            ops in proptest::collection::vec((0usize..80, 0u64..50, any::<bool>()), 1..12),
            hunt in any::<bool>(),
        ) {
            let start = if hunt { Start::Hunt } else { Start::Handshake };
            let mut d = ConnectionDecoder::with_starts([start, Start::Hunt]);
            let mut pos = 0usize;
            let mut stream = 0u64;
            let mut last = 0u64;
            let mut check = |it: PeerItem<'_>| {
                if let PeerItem::Message { dir: Dir::C2s, offset, .. } = &it {
                    assert!(*offset >= last);
                    last = *offset;
                }
                let _ = it.to_decoded();
            };
            for (n, gap, dir) in ops {
                let dir = if dir { Dir::C2s } else { Dir::S2c };
                if gap > 0 && dir == Dir::C2s {
                    stream += gap;
                    d.gap(dir, gap, stream, &mut check);
                }
                let end = (pos + n).min(bytes.len());
                let chunk = &bytes[pos..end];
                pos = end;
                if dir == Dir::C2s { stream += chunk.len() as u64; }
                d.push(dir, chunk, &mut check);
            }
        }
    }

    #[test]
    fn http_announce_and_response() {
        let req = b"GET /announce?info_hash=%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab&peer_id=-bt0100-aaaaaaaaaaaa&port=6881&uploaded=0&downloaded=0&left=10&compact=1&event=started HTTP/1.1\r\nHost: t:1\r\n\r\n";
        let d = decode_http_request(req).unwrap();
        assert_eq!(d.len, req.len() as u64);
        assert_eq!(d.words, "tracker announce event started left 10");
        match d.kind {
            EventKind::TrackerHttpRequest { announce, host, .. } => {
                let a = announce.unwrap();
                assert_eq!(a.client.as_deref(), Some("bt-trace 0.1.0"));
                assert_eq!(a.left, Some(10));
                assert_eq!(host.as_deref(), Some("t:1"));
            }
            k => panic!("{k:?}"),
        }
        assert!(decode_http_request(&req[..20]).is_none());

        let body = b"d8:intervali1800e5:peers6:\x7f\x00\x00\x01\x1a\xe1e";
        let mut resp =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        resp.extend_from_slice(body);
        assert!(decode_http_response(&resp[..resp.len() - 1], false, false).is_none());
        let d = decode_http_response(&resp, false, false).unwrap();
        assert_eq!(d.words, "tracker response: interval 1800, 1 peer");
        let failure = b"HTTP/1.1 200 OK\r\n\r\nd14:failure reason4:nopee";
        let d = decode_http_response(failure, true, false).unwrap();
        assert_eq!(d.words, "tracker failure: nope");
    }

    proptest! {
        #[test]
        fn tracker_decoders_never_panic(a in proptest::collection::vec(any::<u8>(), 0..300),
                                        b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_http_request(&a);
            let _ = decode_http_response(&b, true, false);
            let _ = decode_udp(&a, true, false);
            let _ = decode_udp(&b, false, true);
        }
    }
}
