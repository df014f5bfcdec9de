//! A BitTorrent peer connection seen in a capture: both directions through the wire codec's
//! [`StreamDecoder`], with each side's BEP 10 extension table, recovering from what real
//! captures do to a stream (a start that is missing, bytes lost in a gap, a corrupt message).
//!
//! This is [`ConnectionDecoder`](crate::trace::decode::ConnectionDecoder) plus recovery: on a
//! stream that starts at its handshake and loses nothing, [`PeerDecoder::new`] hands out the
//! very same items, and [`PeerItem::to_decoded`] turns them into the very same
//! [`Decoded`] events and words (a test below checks it on arbitrary streams), so `analyze
//! --json` on a bt-trace trace gives back its JSON Lines. What it adds:
//!
//! - **Hunting** ([`Start::Hunt`], and after a gap or an error): the direction looks for the
//!   next plausible message start with [`StreamDecoder::resync`]'s rule (a header with a known
//!   id and a valid length for it, followed right after its frame by another one), then decodes
//!   normally. [`PeerItem::Resynced`] says where it picked up.
//! - **Gaps** ([`PeerDecoder::gap`]): when the bytes lost fall inside a message whose length
//!   prefix was seen, decoding resumes exactly at the next message; otherwise it hunts.
//! - **Raw items**: the caller sees each [`wire::Decoded`](crate::wire::Decoded) (piece data
//!   included, for hashing and `--extract`) and builds an event only when it needs one, which
//!   keeps the default report fast.
//!
//! It should become part of `ConnectionDecoder` (one decoder for the recorder and the
//! analyzer). `message_words` is `trace::decode`'s, so both say a message in the same words.
//!
//! Contract: no bytes in any chunking, no gap and no error make this panic; memory is the two
//! stream decoders' buffers (at most one unfinished message each) and the extension tables.

use crate::trace::decode::Decoded;
use crate::trace::event::{Dir, EventKind, HandshakeFields, Msg};
use crate::wire::{
    self, extension::EXTENDED_HANDSHAKE_ID, BlockRef, DecoderState, ExtendedHandshake, Item,
    Message, StreamDecoder, StreamError, MAX_MESSAGE_LEN,
};

/// How a direction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the 68-byte handshake (the connection's start is in the capture).
    Handshake,
    /// Somewhere in the middle: hunt for the first message.
    Hunt,
}

/// One thing found in a direction.
#[derive(Debug)]
pub enum PeerItem<'a> {
    /// A handshake or message, borrowed from the decoder.
    Wire {
        dir: Dir,
        item: wire::Decoded<'a>,
        /// The extended handshake of the side that *receives* it (names extended ids).
        receiver_ext: Option<&'a ExtendedHandshake>,
    },
    /// The direction cannot be decoded at `error.offset`. After an error at the very start of
    /// a direction that should begin with a handshake (MSE encryption, not BitTorrent), the
    /// direction looks for a handshake further on (an MSE/PE handshake that selected
    /// plaintext is followed by a plain BitTorrent handshake) for [`MAX_HANDSHAKE_SCAN`]
    /// bytes, then stops; after any other error, it hunts for the next message.
    Error { dir: Dir, error: StreamError },
    /// Decoding picks up again at stream offset `at`; `from..at` was skipped. `handshake`:
    /// what was found is a handshake (after an MSE/PE preamble), else a message (hunting).
    Resynced {
        dir: Dir,
        from: u64,
        at: u64,
        handshake: bool,
    },
}

/// How far into a direction that does not start with a handshake one is looked for.
pub const MAX_HANDSHAKE_SCAN: u64 = 64 * 1024;

impl PeerItem<'_> {
    /// The event and its words, exactly as `ConnectionDecoder` builds them. `None` for
    /// [`PeerItem::Resynced`], which is not an event.
    pub fn to_decoded(&self) -> Option<Decoded> {
        Some(match self {
            PeerItem::Wire {
                dir,
                item,
                receiver_ext,
            } => {
                let (offset, len) = (item.offset, item.bytes.len() as u64);
                let (kind, words) = match item.item {
                    Item::Handshake(h) => {
                        let hs = HandshakeFields::from_handshake(&h);
                        let words = format!("{h} ({})", hs.client);
                        (EventKind::Handshake { offset, len, hs }, words)
                    }
                    Item::Message(m) => {
                        let words = message_words(&m, *receiver_ext);
                        let msg = Msg::from_message(&m, *receiver_ext);
                        (EventKind::Message { offset, len, msg }, words)
                    }
                };
                Decoded {
                    dir: *dir,
                    offset,
                    len,
                    kind,
                    words,
                }
            }
            PeerItem::Error { dir, error } => Decoded {
                dir: *dir,
                offset: error.offset,
                len: 0,
                words: format!("protocol error: {}", error.error),
                kind: EventKind::ProtocolError {
                    offset: error.offset,
                    error: error.error.to_string(),
                },
            },
            PeerItem::Resynced { .. } => return None,
        })
    }
}

pub use crate::trace::decode::message_words;

/// What a gap did to a direction (see [`PeerDecoder::gap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapEffect {
    /// The direction had stopped (or is looking for a handshake after an MSE/PE preamble,
    /// which goes on after the gap); nothing else changes.
    Stopped,
    /// The gap fell inside the message starting at `message_at` (id `id`, when its fifth byte
    /// was seen), which is lost; decoding resumes at `next`, where the following message
    /// starts. `piece`: the block of a `piece` message whose 13-byte header was seen
    /// (a capture with a snap length keeps just that). `again`: an earlier gap already lost
    /// this message.
    LostMessage {
        message_at: u64,
        id: Option<u8>,
        next: u64,
        piece: Option<BlockRef>,
        again: bool,
    },
    /// Where the next message starts is unknown: the direction hunts from `from`.
    Hunting { from: u64 },
}

/// One direction.
#[derive(Debug)]
struct Side {
    dec: StreamDecoder,
    /// The extended handshake this side sent (its `m` names the ids it wants to receive).
    ext: Option<ExtendedHandshake>,
    /// Stopped for good (an error at the start of a handshake direction).
    stopped: bool,
    /// The decoder's offsets are the stream's plus this (1 while a hunt started with a
    /// sacrificial byte, see [`Side::hunt_from`]).
    shift: u64,
    /// Stream offset where the current hunt began, while hunting.
    hunt_from: Option<u64>,
    /// Stream offset where this direction's bytes began (0, unless it was picked up later).
    start_offset: u64,
    start: Start,
    /// Looking for a handshake after a start that was not one.
    scan: Option<Scan>,
    /// A message lost in a gap, being skipped: where it starts, its id, where the next one
    /// starts.
    lost: Option<(u64, Option<u8>, u64)>,
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
        let prefix = crate::wire::handshake::PROTOCOL_PREFIX;
        let mut v = std::mem::take(&mut self.tail);
        v.extend_from_slice(bytes);
        if let Some(p) = v.windows(prefix.len()).position(|w| w == prefix) {
            let at = self.at + p as u64;
            v.drain(..p);
            return Some((at, v));
        }
        let keep = v.len().min(prefix.len() - 1);
        self.at += (v.len() - keep) as u64;
        v.drain(..v.len() - keep);
        self.tail = v;
        None
    }
}

impl Side {
    fn new(start: Start) -> Self {
        let mut s = Side {
            dec: StreamDecoder::new(),
            ext: None,
            stopped: false,
            shift: 0,
            hunt_from: None,
            start_offset: 0,
            start,
            scan: None,
            lost: None,
        };
        if start == Start::Hunt {
            s.hunt_from(0);
        }
        s
    }

    /// Hunts for a message from stream offset `at` on, including a message right at `at`.
    /// `StreamDecoder::resync` always drops one byte first (it is called on a bad byte), so a
    /// sacrificial byte is put in front of the stream and the decoder's offsets shifted by one.
    fn hunt_from(&mut self, at: u64) {
        self.dec = StreamDecoder::messages_only().starting_at(at);
        self.dec.push(&[0xff]);
        self.dec.resync();
        self.shift = 1;
        self.hunt_from = Some(at);
    }

    /// Decodes messages from `next` on, dropping the bytes from `at` to there.
    fn restart_skipping(&mut self, at: u64, next: u64) {
        self.dec = StreamDecoder::messages_only().starting_at(at);
        self.dec.skip(next - at);
        self.shift = 0;
        self.hunt_from = None;
    }

    /// Stream offset of the first byte not yet decoded.
    fn offset(&self) -> u64 {
        self.dec.offset().saturating_sub(self.shift)
    }
}

/// Both directions of one peer connection. See the [module docs](self).
#[derive(Debug)]
pub struct PeerDecoder {
    sides: [Side; 2],
}

impl Default for PeerDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerDecoder {
    /// Both directions start with their handshake (like `ConnectionDecoder::new`).
    pub fn new() -> Self {
        Self::with_starts([Start::Handshake, Start::Handshake])
    }

    /// Each direction (client → server first) as given.
    pub fn with_starts(starts: [Start; 2]) -> Self {
        PeerDecoder {
            sides: starts.map(Side::new),
        }
    }

    /// The extended handshake the sender of `dir` announced, if seen.
    pub fn extensions(&self, dir: Dir) -> Option<&ExtendedHandshake> {
        self.sides[dir.index()].ext.as_ref()
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

    /// How `dir` started.
    pub fn start(&self, dir: Dir) -> Start {
        self.sides[dir.index()].start
    }

    /// Stream offset of the first byte of `dir` not yet decoded (the start of an unfinished
    /// message). Frames wholly before it are no longer needed.
    pub fn pending_offset(&self, dir: Dir) -> u64 {
        let s = &self.sides[dir.index()];
        if s.stopped || s.scan.is_some() {
            u64::MAX
        } else {
            s.offset()
        }
    }

    /// Bytes of `dir` held in the decoder (one unfinished message at most).
    pub fn buffered(&self, dir: Dir) -> usize {
        self.sides[dir.index()].dec.buffered().len()
    }

    /// Feeds the next `bytes` of direction `dir` and hands every item they complete to `f`,
    /// in stream order.
    pub fn push(&mut self, dir: Dir, bytes: &[u8], f: &mut dyn FnMut(PeerItem<'_>)) {
        let (tx, rx) = match dir {
            Dir::C2s => (0, 1),
            Dir::S2c => (1, 0),
        };
        let [a, b] = &mut self.sides;
        let (side, other) = if tx == 0 { (a, b) } else { (b, a) };
        debug_assert_eq!(rx, 1 - tx);
        if side.stopped {
            return;
        }
        match &mut side.scan {
            None => side.dec.push(bytes),
            Some(scan) => match scan.push(bytes) {
                Some((at, rest)) => {
                    f(PeerItem::Resynced {
                        dir,
                        from: scan.from,
                        at,
                        handshake: true,
                    });
                    side.scan = None;
                    side.dec = StreamDecoder::new().starting_at(at);
                    side.shift = 0;
                    side.dec.push(&rest);
                }
                None => {
                    if scan.at.saturating_sub(scan.from) > MAX_HANDSHAKE_SCAN {
                        side.scan = None;
                        side.stopped = true;
                    }
                    return;
                }
            },
        }
        loop {
            let Side {
                dec,
                ext,
                shift,
                hunt_from,
                stopped,
                start_offset,
                start,
                scan,
                lost: _,
            } = side;
            let mut new_ext = None;
            match dec.next_item() {
                Ok(Some(mut d)) => {
                    d.offset -= *shift;
                    if let Some(from) = hunt_from.take() {
                        f(PeerItem::Resynced {
                            dir,
                            from,
                            at: d.offset,
                            handshake: false,
                        });
                    }
                    if let Item::Message(Message::Extended {
                        ext_id: EXTENDED_HANDSHAKE_ID,
                        payload,
                    }) = d.item
                    {
                        new_ext = ExtendedHandshake::parse(payload).ok();
                    }
                    f(PeerItem::Wire {
                        dir,
                        item: d,
                        receiver_ext: other.ext.as_ref(),
                    });
                }
                Ok(None) => break,
                Err(mut error) => {
                    error.offset = error.offset.saturating_sub(*shift);
                    let at_start = *start == Start::Handshake
                        && error.offset == *start_offset
                        && hunt_from.is_none();
                    let from = error.offset;
                    f(PeerItem::Error { dir, error });
                    if at_start {
                        // Not a BitTorrent handshake (e.g. MSE): look for one further on.
                        let mut sc = Scan {
                            from,
                            tail: Vec::new(),
                            at: from,
                        };
                        let found = sc.push(dec.buffered());
                        *dec = StreamDecoder::messages_only();
                        match found {
                            Some((at, rest)) => {
                                f(PeerItem::Resynced {
                                    dir,
                                    from,
                                    at,
                                    handshake: true,
                                });
                                *dec = StreamDecoder::new().starting_at(at);
                                *shift = 0;
                                dec.push(&rest);
                                continue;
                            }
                            None => {
                                *scan = Some(sc);
                                break;
                            }
                        }
                    }
                    let _ = stopped;
                    let at = dec.offset().saturating_sub(*shift);
                    dec.resync();
                    hunt_from.get_or_insert(at);
                }
            }
            if new_ext.is_some() {
                *ext = new_ext;
            }
        }
    }

    /// Bytes of `dir` from `resume_at - lost` to `resume_at` were never seen. Decoding goes on
    /// at `resume_at` (see [`GapEffect`]).
    pub fn gap(&mut self, dir: Dir, lost: u64, resume_at: u64) -> GapEffect {
        let side = &mut self.sides[dir.index()];
        if let Some(scan) = &mut side.scan {
            // Still looking for a handshake: go on looking after the gap.
            scan.tail.clear();
            scan.at = resume_at;
            return GapEffect::Stopped;
        }
        if side.stopped {
            return GapEffect::Stopped;
        }
        let gap_start = resume_at.saturating_sub(lost);
        // Still skipping a message lost in an earlier gap?
        if let Some((message_at, id, next)) = side.lost.take() {
            if side.offset() < next && side.offset() == gap_start {
                if resume_at <= next {
                    side.restart_skipping(resume_at, next);
                    side.lost = Some((message_at, id, next));
                    return GapEffect::LostMessage {
                        message_at,
                        id,
                        next,
                        piece: None,
                        again: true,
                    };
                }
                side.hunt_from(resume_at);
                return GapEffect::Hunting { from: resume_at };
            }
        }
        let pending = side.dec.buffered();
        let msg_at = side.offset();
        // The length prefix of the unfinished message, if it was seen and is plausible.
        let known_end = match (side.dec.state(), wire::be_u32(pending)) {
            (DecoderState::Messages, Some(len)) if (len as usize) <= MAX_MESSAGE_LEN => {
                Some(msg_at + 4 + u64::from(len))
            }
            _ => None,
        };
        match known_end {
            Some(next) if resume_at <= next && msg_at + pending.len() as u64 == gap_start => {
                let id = pending.get(4).copied();
                let piece = match (id, pending.get(5..13)) {
                    (Some(wire::message::id::PIECE), Some(h)) => Some(BlockRef::new(
                        u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
                        u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        (next - msg_at - 13) as u32,
                    )),
                    _ => None,
                };
                side.restart_skipping(resume_at, next);
                side.lost = Some((msg_at, id, next));
                GapEffect::LostMessage {
                    message_at: msg_at,
                    id,
                    next,
                    piece,
                    again: false,
                }
            }
            _ => {
                side.hunt_from(resume_at);
                GapEffect::Hunting { from: resume_at }
            }
        }
    }

    /// The direction's bytes begin at `offset` instead of 0 (set before the first push).
    pub fn set_start_offset(&mut self, dir: Dir, offset: u64) {
        let side = &mut self.sides[dir.index()];
        side.start_offset = offset;
        match side.start {
            Start::Handshake => side.dec = StreamDecoder::new().starting_at(offset),
            Start::Hunt => side.hunt_from(offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::decode::tests::{ext, hs};
    use crate::trace::decode::ConnectionDecoder;
    use crate::wire::message::tests::any_owned_message;
    use crate::wire::WireError;
    use proptest::prelude::*;

    fn collect(d: &mut PeerDecoder, dir: Dir, bytes: &[u8], out: &mut Vec<Decoded>) {
        d.push(dir, bytes, &mut |it| out.extend(it.to_decoded()));
    }

    fn items(d: &mut PeerDecoder, dir: Dir, bytes: &[u8]) -> Vec<String> {
        let mut v = Vec::new();
        d.push(dir, bytes, &mut |it| {
            v.push(match it {
                PeerItem::Wire { item, .. } => format!(
                    "{} {}",
                    item.offset,
                    match item.item {
                        Item::Handshake(_) => "handshake".to_string(),
                        Item::Message(m) => m.to_string(),
                    }
                ),
                PeerItem::Error { error, .. } => format!("error at {}", error.offset),
                PeerItem::Resynced {
                    from,
                    at,
                    handshake,
                    ..
                } => format!(
                    "{} {from}..{at}",
                    if handshake {
                        "handshake at"
                    } else {
                        "resynced"
                    }
                ),
            })
        });
        v
    }

    /// The two-sided stream of `trace::decode`'s own test.
    fn sample() -> (Vec<u8>, Vec<u8>) {
        let mut c2s = hs(b"-bt0100-aaaaaaaaaaaa");
        c2s.extend(ext(0, b"d1:md11:ut_metadatai3eee"));
        c2s.extend(Message::Request(BlockRef::new(1, 0, 4)).to_vec());
        let mut s2c = hs(b"-TR3000-bbbbbbbbbbbb");
        s2c.extend(ext(0, b"d1:md11:ut_metadatai5eee"));
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

    #[test]
    fn same_events_as_connection_decoder() {
        let (c2s, s2c) = sample();
        for cut in [1usize, 7, 68, 70, 1000] {
            let mut want = Vec::new();
            let mut cd = ConnectionDecoder::new();
            let mut got = Vec::new();
            let mut pd = PeerDecoder::new();
            for i in (0..c2s.len().max(s2c.len())).step_by(cut) {
                for (dir, s) in [(Dir::C2s, &c2s), (Dir::S2c, &s2c)] {
                    if i < s.len() {
                        let chunk = &s[i..(i + cut).min(s.len())];
                        cd.push(dir, chunk, &mut want);
                        collect(&mut pd, dir, chunk, &mut got);
                    }
                }
            }
            assert_eq!(got, want, "chunks of {cut}");
            assert_eq!(got.len(), 7);
            assert_eq!(
                pd.extensions(Dir::S2c)
                    .and_then(|e| e.extension_id("ut_metadata")),
                Some(5)
            );
        }
    }

    #[test]
    fn mse_start_stops_like_connection_decoder() {
        let noise: Vec<u8> = (0..200u32).map(|i| (i * 97 + 13) as u8).collect();
        let mut want = Vec::new();
        ConnectionDecoder::new().push(Dir::C2s, &noise, &mut want);
        let mut d = PeerDecoder::new();
        let mut got = Vec::new();
        collect(&mut d, Dir::C2s, &noise, &mut got);
        collect(&mut d, Dir::C2s, &noise, &mut got);
        assert_eq!(got, want);
        assert!(d.stopped(Dir::C2s));
        assert_eq!(d.pending_offset(Dir::C2s), u64::MAX);
        // The scan gives up after MAX_HANDSHAKE_SCAN bytes.
        collect(
            &mut d,
            Dir::C2s,
            &vec![7u8; MAX_HANDSHAKE_SCAN as usize + 100],
            &mut got,
        );
        assert_eq!(got.len(), 1);
        collect(&mut d, Dir::C2s, &hs(b"-bt0100-aaaaaaaaaaaa"), &mut got);
        assert_eq!(got.len(), 1, "stopped for good");
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
            let mut d = PeerDecoder::new();
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
        let mut d = PeerDecoder::with_starts([Start::Hunt, Start::Hunt]);
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
    }

    #[test]
    fn hunting_accepts_a_message_at_the_very_start() {
        let mut s = Message::Have { index: 1 }.to_vec();
        s.extend(Message::Interested.to_vec());
        let mut d = PeerDecoder::with_starts([Start::Hunt, Start::Hunt]);
        assert_eq!(
            items(&mut d, Dir::S2c, &s),
            ["resynced 0..0", "0 have 1", "9 interested"]
        );
    }

    #[test]
    fn gap_inside_a_known_message_resumes_at_the_next() {
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
        let mut d = PeerDecoder::new();
        // Handshake and the piece's first 20 bytes, then 30 bytes lost.
        let cut = piece_at as usize + 20;
        assert_eq!(items(&mut d, Dir::C2s, &s[..cut]), ["0 handshake"]);
        let e = d.gap(Dir::C2s, 30, cut as u64 + 30);
        assert_eq!(
            e,
            GapEffect::LostMessage {
                message_at: piece_at,
                id: Some(7),
                next,
                piece: Some(BlockRef::new(2, 0, 100)),
                again: false,
            }
        );
        // 10 bytes seen, then another gap inside the same message (a snap length cuts
        // every frame of a piece).
        let at = cut + 30;
        assert!(items(&mut d, Dir::C2s, &s[at..at + 10]).is_empty());
        assert_eq!(
            d.gap(Dir::C2s, 20, at as u64 + 30),
            GapEffect::LostMessage {
                message_at: piece_at,
                id: Some(7),
                next,
                piece: None,
                again: true,
            }
        );
        assert_eq!(
            items(&mut d, Dir::C2s, &s[at + 30..]),
            [format!("{next} have 2")]
        );
    }

    #[test]
    fn gap_past_the_message_end_hunts() {
        let mut s = hs(b"-bt0100-aaaaaaaaaaaa");
        s.extend(Message::Have { index: 1 }.to_vec());
        let lost_from = s.len();
        s.extend(Message::Have { index: 2 }.to_vec());
        s.extend(Message::Have { index: 3 }.to_vec());
        let resume = lost_from + 3; // inside "have 2"
        s.extend(Message::Have { index: 4 }.to_vec());
        let mut d = PeerDecoder::new();
        assert_eq!(items(&mut d, Dir::C2s, &s[..lost_from]).len(), 2);
        assert_eq!(
            d.gap(Dir::C2s, 3, resume as u64),
            GapEffect::Hunting {
                from: resume as u64
            }
        );
        let h3 = lost_from as u64 + 9;
        assert_eq!(
            items(&mut d, Dir::C2s, &s[resume..]),
            [
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
        let mut d = PeerDecoder::new();
        let mut got = Vec::new();
        d.push(Dir::S2c, &s, &mut |it| {
            got.push(match it {
                PeerItem::Error { error, .. } => {
                    assert!(matches!(error.error, WireError::BadLength { .. }));
                    format!("error at {}", error.offset)
                }
                PeerItem::Resynced { from, at, .. } => format!("resynced {from}..{at}"),
                PeerItem::Wire { item, .. } => format!("{}", item.offset),
            })
        });
        assert_eq!(
            got,
            [
                "0".to_string(),
                "error at 68".into(),
                format!("resynced 68..{at}"),
                format!("{at}"),
                format!("{}", at + 9)
            ]
        );
        assert!(!d.stopped(Dir::S2c));
    }

    #[test]
    fn start_offset_numbers_from_there() {
        let mut d = PeerDecoder::new();
        d.set_start_offset(Dir::C2s, 1000);
        let s = hs(b"-bt0100-aaaaaaaaaaaa");
        assert_eq!(items(&mut d, Dir::C2s, &s), ["1000 handshake"]);
    }

    proptest! {
        /// On clean streams in any chunking, the same events as `ConnectionDecoder`.
        #[test]
        fn matches_connection_decoder(
            a in proptest::collection::vec(any_owned_message(), 0..8),
            b in proptest::collection::vec(any_owned_message(), 0..8),
            chunk in 1usize..90,
        ) {
            let mut c2s = hs(b"-bt0100-aaaaaaaaaaaa");
            c2s.extend(ext(0, b"d1:md6:ut_pexi1e11:ut_metadatai2eee"));
            for m in &a { m.emit(&mut c2s); }
            let mut s2c = hs(b"-LT2080-bbbbbbbbbbbb");
            s2c.extend(ext(0, b"d1:md11:ut_metadatai3eee"));
            for m in &b { m.emit(&mut s2c); }
            let mut want = Vec::new();
            let mut cd = ConnectionDecoder::new();
            let mut got = Vec::new();
            let mut pd = PeerDecoder::new();
            for i in (0..c2s.len().max(s2c.len())).step_by(chunk) {
                for (dir, s) in [(Dir::S2c, &s2c), (Dir::C2s, &c2s)] {
                    if i < s.len() {
                        let c = &s[i..(i + chunk).min(s.len())];
                        cd.push(dir, c, &mut want);
                        collect(&mut pd, dir, c, &mut got);
                    }
                }
            }
            prop_assert_eq!(got, want);
        }

        /// Arbitrary bytes, chunks, gaps and start modes: no panic, offsets move forward.
        #[test]
        fn arbitrary_input_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            ops in proptest::collection::vec((0usize..80, 0u64..50, any::<bool>()), 1..12),
            hunt in any::<bool>(),
        ) {
            let start = if hunt { Start::Hunt } else { Start::Handshake };
            let mut d = PeerDecoder::with_starts([start, Start::Hunt]);
            let mut pos = 0usize;
            let mut stream = 0u64;
            let mut last = 0u64;
            for (n, gap, dir) in ops {
                let dir = if dir { Dir::C2s } else { Dir::S2c };
                if gap > 0 && dir == Dir::C2s {
                    stream += gap;
                    d.gap(dir, gap, stream);
                }
                let end = (pos + n).min(bytes.len());
                let chunk = &bytes[pos..end];
                pos = end;
                if dir == Dir::C2s { stream += chunk.len() as u64; }
                d.push(dir, chunk, &mut |it| {
                    if let PeerItem::Wire { dir: Dir::C2s, item, .. } = &it {
                        assert!(item.offset >= last);
                        last = item.offset;
                    }
                    let _ = it.to_decoded();
                });
            }
        }
    }
}
