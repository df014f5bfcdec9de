//! Cutting a TCP byte stream into a handshake and messages (BEP 3 framing), with the recovery
//! a capture needs: hunting for the next message, resuming after a gap, skipping piece data.
//!
//! TCP delivers bytes in arbitrary chunks: a message may arrive in ten pieces, or ten messages
//! in one read. [`StreamDecoder::next_item`] takes the next chunk as `&mut &[u8]` and decodes
//! straight from it: a whole message in the chunk is handed out borrowed from the chunk, and
//! only an unfinished one is copied into the decoder's buffer (and completed there with just
//! the bytes it still needs). The usual loop therefore copies almost nothing:
//!
//! ```
//! use bt_trace::wire::{Item, StreamDecoder};
//!
//! let mut dec = StreamDecoder::messages_only();
//! for chunk in [&[0u8, 0, 0][..], &[1, 1, 0, 0, 0, 5, 4, 0][..], &[0, 0, 9][..]] {
//!     let mut input = chunk;
//!     while let Some(d) = dec.next_item(&mut input)? {
//!         if let Item::Message(m) = d.item {
//!             println!("offset {}: {m}", d.offset); // "unchoke", then "have 9"
//!         }
//!     }
//! }
//! # Ok::<(), bt_trace::wire::StreamError>(())
//! ```
//!
//! "Incomplete" is the normal state: `Ok(None)` means the chunk is used up (decoded, or kept
//! as the start of an unfinished item) and more bytes are needed.
//!
//! **Piece headers only** ([`StreamDecoder::piece_headers`]): a piece message comes out as
//! its 13-byte header ([`Item::PieceHeader`]) followed by its data in whatever chunks it
//! arrives ([`Item::PieceData`], borrowed from the input, never buffered). The recorder and
//! the analyzer hash or skip the data without the decoder ever holding a 16 KiB block, and a
//! capture cut by a snap length still shows every piece header.
//!
//! **Recovery.** An impossible item (too long, wrong fixed length, not a handshake) stops the
//! decoder; it keeps returning the same [`StreamError`] until the caller calls
//! [`resync`](StreamDecoder::resync), which hunts for the next plausible message start. A
//! capture that lost bytes calls [`gap`](StreamDecoder::gap): a gap inside a message whose
//! length prefix was seen (or inside piece data) resumes exactly at the next message; any
//! other gap hunts. [`StreamDecoder::hunting`] starts a stream picked up mid-connection.
//!
//! Memory: the buffer holds at most one unfinished message (its length prefix is checked
//! against the cap before waiting for the body), or while hunting one candidate frame.
//!
//! No-panic contract: no input bytes, in any chunking, with any gaps, make the decoder panic.

use thiserror::Error;

use super::handshake::Handshake;
use super::message::{id, BlockRef, Message, MessageKind, MAX_MESSAGE_LEN, PIECE_HEADER_LEN};
use super::{be_u32, WireError};

/// A decoding error with the stream offset (bytes since the start of the stream, or since the
/// offset given to [`StreamDecoder::starting_at`]) where the offending item begins.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at stream offset {offset}: {error}")]
pub struct StreamError {
    /// Stream offset of the first byte of the bad item.
    pub offset: u64,
    /// What was wrong.
    pub error: WireError,
}

/// One thing decoded from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Handshake(Handshake),
    /// A message. With [`StreamDecoder::piece_headers`], never a piece.
    Message(Message<'a>),
    /// With [`StreamDecoder::piece_headers`]: the 13-byte header of a piece message carrying
    /// the block `length` bytes at `begin` in piece `index`. The data follows as
    /// [`Item::PieceData`] (none for an empty block).
    PieceHeader(BlockRef),
    /// Bytes of the current piece's data ([`Decoded::bytes`]); `rest` more follow.
    PieceData {
        rest: u32,
    },
}

/// An [`Item`] with where it was in the stream. Borrows from the decoder or the input: drop
/// it before the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Stream offset of the item's first byte.
    pub offset: u64,
    /// The item's wire bytes, as received (for a piece header: its 13 bytes; for piece
    /// data: the data).
    pub bytes: &'a [u8],
    /// The decoded item.
    pub item: Item<'a>,
}

/// What the decoder expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecoderState {
    /// The 68-byte handshake, then messages.
    ExpectHandshake,
    /// Length-prefixed messages.
    Messages,
    /// Looking for the next plausible message start.
    Hunting,
}

/// What a gap did to the stream (see [`StreamDecoder::gap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapEffect {
    /// The gap fell inside the data of the piece message at `message_at` (piece headers
    /// mode): decoding goes on; `rest` data bytes of it follow.
    PieceData { message_at: u64, rest: u64 },
    /// The gap fell inside the message starting at `message_at` (id `id`, when its fifth byte
    /// was seen), which is lost; decoding resumes at `next`, where the following message
    /// starts. `again`: an earlier gap already lost this message.
    LostMessage {
        message_at: u64,
        id: Option<u8>,
        next: u64,
        again: bool,
    },
    /// Where the next message starts is unknown: the decoder hunts from `from`.
    Hunting { from: u64 },
}

/// Decoder of one direction of a peer connection. See the [module docs](self).
#[derive(Debug)]
pub struct StreamDecoder {
    /// Bytes received but not yet decoded start at `buf[start]`.
    buf: Vec<u8>,
    start: usize,
    /// Stream offset of `buf[start]` (of the next byte to decode).
    offset: u64,
    /// What to decode next.
    state: DecoderState,
    /// Set after an error; cleared by the recovery methods.
    failed: Option<StreamError>,
    /// Bytes still to drop: the rest of a message lost in a gap.
    pending_skip: u64,
    /// The message lost in a gap being skipped: its start, id, and where the next begins.
    lost: Option<(u64, Option<u8>, u64)>,
    /// Piece headers mode.
    headers_only: bool,
    /// Piece data still to hand out, and where its message began.
    piece_left: u64,
    piece_at: u64,
}

/// A buffer that grew past this (one big message) is given back once it is empty.
const KEEP_CAPACITY: usize = 64 * 1024;

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    fn with_state(state: DecoderState) -> Self {
        StreamDecoder {
            buf: Vec::new(),
            start: 0,
            offset: 0,
            state,
            failed: None,
            pending_skip: 0,
            lost: None,
            headers_only: false,
            piece_left: 0,
            piece_at: 0,
        }
    }

    /// A decoder for a whole connection: the handshake first, then messages.
    pub fn new() -> Self {
        Self::with_state(DecoderState::ExpectHandshake)
    }

    /// A decoder that expects messages only (the handshake was handled elsewhere).
    pub fn messages_only() -> Self {
        Self::with_state(DecoderState::Messages)
    }

    /// A decoder for a stream picked up mid-connection: it hunts for the first plausible
    /// message (one may start at the very first byte).
    pub fn hunting() -> Self {
        Self::with_state(DecoderState::Hunting)
    }

    /// Numbers offsets from `offset` instead of 0 (e.g. a TCP stream picked up mid-way).
    pub fn starting_at(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// Piece headers mode: piece messages come out as [`Item::PieceHeader`] and
    /// [`Item::PieceData`]; their data is never buffered.
    pub fn piece_headers(mut self) -> Self {
        self.headers_only = true;
        self
    }

    /// Stream offset of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes received but not yet decoded (at most one unfinished item; after an error, the
    /// bytes from the bad item on).
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Forgets the buffer once everything in it is decoded (giving back a big one).
    fn tidy(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf.shrink_to(KEEP_CAPACITY);
            }
        }
    }

    /// Appends to the buffer, first moving the undecoded bytes to the front when the decoded
    /// ones are at least half of it (so the moves cost O(1) per byte).
    fn append(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Keeps `data` in the buffer, to be decoded at the next call (bytes the caller had to
    /// hold back, e.g. while looking for a handshake).
    pub fn push(&mut self, data: &[u8]) {
        self.append(data);
    }

    /// Drops `n` undecoded bytes from the front of the buffer.
    fn discard(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.start);
        self.start += n;
        self.offset += n as u64;
    }

    /// Keeps all of `input` in the buffer.
    fn absorb(&mut self, input: &mut &[u8]) {
        self.append(input);
        *input = &[];
    }

    fn fail(&mut self, error: WireError) -> StreamError {
        let e = StreamError {
            offset: self.offset,
            error,
        };
        self.failed = Some(e.clone());
        e
    }

    /// The next item, taking bytes from `input` (advanced past what was used). `Ok(None)`:
    /// `input` is used up and more bytes are needed. After an error (returned again on every
    /// call until [`resync`](Self::resync) or [`gap`](Self::gap)) the rest of `input` is
    /// kept in the buffer at the first call, and dropped at later ones.
    pub fn next_item<'s, 'a: 's>(
        &'s mut self,
        input: &mut &'a [u8],
    ) -> Result<Option<Decoded<'s>>, StreamError> {
        if let Some(e) = &self.failed {
            let e = e.clone();
            *input = &[];
            return Err(e);
        }
        self.tidy();
        if self.pending_skip > 0 {
            let from_buf = usize::try_from(self.pending_skip).unwrap_or(usize::MAX);
            let before = self.offset;
            self.discard(from_buf);
            self.pending_skip -= self.offset - before;
            let k = usize::try_from(self.pending_skip)
                .unwrap_or(usize::MAX)
                .min(input.len());
            *input = &input[k..];
            self.offset += k as u64;
            self.pending_skip -= k as u64;
            if self.pending_skip > 0 {
                return Ok(None);
            }
            self.lost = None;
        }
        if self.piece_left > 0 {
            return Ok(self.piece_data(input));
        }
        if self.state == DecoderState::Hunting {
            self.absorb(input);
            if !self.hunt_step() {
                return Ok(None);
            }
            self.state = DecoderState::Messages;
        }
        let rules = Rules {
            state: self.state,
            headers_only: self.headers_only,
        };
        // Complete an unfinished item in the buffer with just the bytes it still needs.
        while self.start < self.buf.len() {
            match rules.parse(&self.buf[self.start..]) {
                Ok(_) => break,
                Err(WireError::Incomplete { needed }) => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let k = needed.clamp(1, input.len());
                    self.append(&input[..k]);
                    *input = &input[k..];
                }
                Err(error) => {
                    self.absorb(input);
                    return Err(self.fail(error));
                }
            }
        }
        let from_buffer = self.start < self.buf.len();
        if !from_buffer {
            match rules.parse(input) {
                Ok(_) => {}
                Err(WireError::Incomplete { .. }) => {
                    self.absorb(input);
                    return Ok(None);
                }
                Err(error) => {
                    self.absorb(input);
                    return Err(self.fail(error));
                }
            }
        }
        // A whole item is at the front of the buffer, or (buffer empty) of `input`.
        let StreamDecoder {
            buf,
            start,
            offset,
            state,
            failed,
            piece_left,
            piece_at,
            ..
        } = self;
        // The input slice itself (not a reborrow of `input`), so the item may borrow it.
        let whole: &'a [u8] = std::mem::take(input);
        *input = whole;
        let avail: &'s [u8] = if from_buffer { &buf[*start..] } else { whole };
        let (item, n) = match rules.parse(avail) {
            Ok(x) => x,
            Err(error) => {
                // Not reached: the same bytes parsed above.
                let e = StreamError {
                    offset: *offset,
                    error,
                };
                *failed = Some(e.clone());
                return Err(e);
            }
        };
        if from_buffer {
            *start += n;
        } else {
            *input = &whole[n..];
        }
        let at = *offset;
        *offset += n as u64;
        *state = DecoderState::Messages;
        if let Item::PieceHeader(b) = item {
            *piece_left = u64::from(b.length);
            *piece_at = at;
        }
        Ok(Some(Decoded {
            offset: at,
            bytes: &avail[..n],
            item,
        }))
    }

    /// The next bytes of the current piece's data, from the buffer or else from `input`.
    fn piece_data<'s, 'a: 's>(&'s mut self, input: &mut &'a [u8]) -> Option<Decoded<'s>> {
        let StreamDecoder {
            buf,
            start,
            offset,
            piece_left,
            ..
        } = self;
        let from_buffer = *start < buf.len();
        let whole: &'a [u8] = std::mem::take(input);
        *input = whole;
        let avail: &'s [u8] = if from_buffer { &buf[*start..] } else { whole };
        let k = usize::try_from(*piece_left)
            .unwrap_or(usize::MAX)
            .min(avail.len());
        if k == 0 {
            return None;
        }
        if from_buffer {
            *start += k;
        } else {
            *input = &whole[k..];
        }
        let at = *offset;
        *offset += k as u64;
        *piece_left -= k as u64;
        Some(Decoded {
            offset: at,
            bytes: &avail[..k],
            item: Item::PieceData {
                rest: u32::try_from(*piece_left).unwrap_or(u32::MAX),
            },
        })
    }

    /// Clears a failure and hunts for the next plausible message start, at least one byte
    /// past the current position. [`next_item`](Self::next_item) does the hunting as bytes
    /// arrive and continues normally from the first candidate, whose `offset` tells how much
    /// was skipped.
    ///
    /// A candidate is a non-keep-alive header with a known id and a length valid for it, whose
    /// whole frame is followed by another such header (or a keep-alive). This is a heuristic:
    /// piece data can in principle contain such bytes.
    pub fn resync(&mut self) {
        self.failed = None;
        self.piece_left = 0;
        self.discard(1);
        self.state = DecoderState::Hunting;
    }

    /// Bytes from `resume_at - lost` up to `resume_at` were never seen (a hole in a capture);
    /// the next byte pushed is at `resume_at`. Says how decoding goes on (see [`GapEffect`]).
    pub fn gap(&mut self, lost: u64, resume_at: u64) -> GapEffect {
        let gap_start = resume_at.saturating_sub(lost);
        if self.pending_skip > 0 {
            return match self.lost {
                Some((message_at, id, next)) if resume_at <= next => {
                    self.restart(resume_at);
                    self.pending_skip = next - resume_at;
                    self.lost = Some((message_at, id, next));
                    GapEffect::LostMessage {
                        message_at,
                        id,
                        next,
                        again: true,
                    }
                }
                _ => self.hunt_at(resume_at),
            };
        }
        if self.piece_left > 0 {
            let data_end = self.offset + self.piece_left;
            if resume_at > data_end {
                return self.hunt_at(resume_at);
            }
            let message_at = self.piece_at;
            self.restart(resume_at);
            self.piece_left = data_end - resume_at;
            return GapEffect::PieceData {
                message_at,
                rest: self.piece_left,
            };
        }
        let pending = &self.buf[self.start..];
        let seen_end = self.offset + pending.len() as u64;
        let known_end = match be_u32(pending) {
            Some(len) if (len as usize) <= MAX_MESSAGE_LEN => {
                Some(self.offset + 4 + u64::from(len))
            }
            _ => None,
        };
        match known_end {
            Some(next)
                if self.failed.is_none()
                    && self.state == DecoderState::Messages
                    && seen_end == gap_start
                    && resume_at <= next =>
            {
                let message_at = self.offset;
                let id = pending.get(4).copied();
                self.restart(resume_at);
                self.pending_skip = next - resume_at;
                self.lost = Some((message_at, id, next));
                GapEffect::LostMessage {
                    message_at,
                    id,
                    next,
                    again: false,
                }
            }
            _ => self.hunt_at(resume_at),
        }
    }

    /// Drops everything buffered and pending; the next byte is at `offset`.
    fn restart(&mut self, offset: u64) {
        self.failed = None;
        self.buf.clear();
        self.start = 0;
        self.offset = offset;
        self.pending_skip = 0;
        self.lost = None;
        self.piece_left = 0;
        self.state = DecoderState::Messages;
    }

    fn hunt_at(&mut self, at: u64) -> GapEffect {
        self.restart(at);
        self.state = DecoderState::Hunting;
        GapEffect::Hunting { from: at }
    }

    /// One round of hunting over the buffered bytes: `true` with `start` on a candidate, or
    /// `false` after dropping the bytes that cannot start one (more data is needed).
    fn hunt_step(&mut self) -> bool {
        let avail = &self.buf[self.start..];
        let mut i = 0;
        while i + 5 <= avail.len() {
            if let Some(frame) = plausible_frame_len(&avail[i..]) {
                let next = i + frame;
                if next + 5 > avail.len() {
                    // Wait for the frame and the next header before deciding.
                    self.discard(i);
                    return false;
                }
                let next_ok = avail[next..next + 4] == [0, 0, 0, 0]
                    || plausible_frame_len(&avail[next..]).is_some();
                if next_ok {
                    self.discard(i);
                    return true;
                }
            }
            i += 1;
        }
        self.discard(i);
        false
    }
}

/// How the next item is parsed.
#[derive(Clone, Copy)]
struct Rules {
    state: DecoderState,
    headers_only: bool,
}

impl Rules {
    /// The item at the start of `b` and its length on the wire (13 for a piece header).
    fn parse<'a>(&self, b: &'a [u8]) -> Result<(Item<'a>, usize), WireError> {
        if self.state == DecoderState::ExpectHandshake {
            return Handshake::parse(b).map(|(h, n)| (Item::Handshake(h), n));
        }
        if !self.headers_only {
            return Message::parse(b).map(|(m, n)| (Item::Message(m), n));
        }
        match (be_u32(b), b.get(4)) {
            (Some(len), Some(&id::PIECE)) if len as usize <= MAX_MESSAGE_LEN && len >= 9 => {
                let Some(h) = b.first_chunk::<PIECE_HEADER_LEN>() else {
                    return Err(WireError::Incomplete {
                        needed: PIECE_HEADER_LEN - b.len(),
                    });
                };
                let block = BlockRef::new(
                    u32::from_be_bytes([h[5], h[6], h[7], h[8]]),
                    u32::from_be_bytes([h[9], h[10], h[11], h[12]]),
                    len - 9,
                );
                Ok((Item::PieceHeader(block), PIECE_HEADER_LEN))
            }
            _ => match Message::parse(b) {
                // Ask for the id before the body: a piece's data is never buffered.
                Err(WireError::Incomplete { needed }) if b.len() < 5 => {
                    Err(WireError::Incomplete {
                        needed: needed.min(5 - b.len()),
                    })
                }
                r => r.map(|(m, n)| (Item::Message(m), n)),
            },
        }
    }
}

/// If `b` starts with a plausible non-keep-alive message header (5 bytes: length, known id, valid
/// length for it), the frame's total size.
fn plausible_frame_len(b: &[u8]) -> Option<usize> {
    let (len_bytes, rest) = b.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len_bytes);
    let &id = rest.first()?;
    if len == 0
        || len as usize > MAX_MESSAGE_LEN
        || matches!(MessageKind::from_id(id), MessageKind::Unknown(_))
    {
        return None;
    }
    // Reuse the parser's length rules: a 5-byte prefix gives Incomplete when they pass.
    match Message::parse(&b[..5]) {
        Ok(_) | Err(WireError::Incomplete { .. }) => Some(4 + len as usize),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handshake::{Reserved, HANDSHAKE_LEN};
    use crate::wire::message::tests::any_message_bytes;
    use proptest::prelude::*;

    /// An item as text, to compare across chunkings: `offset bytes-len words`.
    fn show(d: &Decoded<'_>) -> String {
        let what = match d.item {
            Item::Handshake(h) => format!("handshake {}", h.reserved),
            Item::Message(m) => m.to_string(),
            Item::PieceHeader(b) => format!("piece header {b}"),
            Item::PieceData { rest } => format!("data {:02x?} rest {rest}", d.bytes),
        };
        format!("{} {} {what}", d.offset, d.bytes.len())
    }

    /// Feeds `chunks` and collects everything, stopping at the first error.
    fn decode_chunks<'c>(
        mut dec: StreamDecoder,
        chunks: impl IntoIterator<Item = &'c [u8]>,
    ) -> (Vec<String>, Option<StreamError>) {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input = chunk;
            loop {
                match dec.next_item(&mut input) {
                    Ok(Some(d)) => out.push(show(&d)),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
            assert!(input.is_empty());
        }
        (out, None)
    }

    /// Piece data items merged into one per piece, so that chunkings compare equal.
    fn merge_data(items: Vec<String>) -> Vec<String> {
        // "OFF LEN data [BYTES] rest R"
        fn split(s: &str) -> Option<(u64, usize, &str, &str)> {
            let (off, rest) = s.split_once(' ')?;
            let (len, rest) = rest.split_once(" data [")?;
            let (bytes, rest) = rest.split_once("] rest ")?;
            Some((off.parse().ok()?, len.parse().ok()?, bytes, rest))
        }
        let mut out: Vec<String> = Vec::new();
        for s in items {
            if let (Some(last), Some((_, n, b, r))) = (out.last_mut(), split(&s)) {
                if let Some((off, m, a, _)) = split(last) {
                    *last = format!("{off} {} data [{a}, {b}] rest {r}", m + n);
                    continue;
                }
            }
            out.push(s);
        }
        out
    }

    fn handshake() -> Handshake {
        Handshake::new(
            Reserved::new().with_extended(),
            [0xaa; 20],
            *b"-BT0001-000000000000",
        )
    }

    fn sample_stream() -> Vec<u8> {
        let mut s = handshake().emit().to_vec();
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        for m in [
            Message::Extended {
                ext_id: 0,
                payload: b"d1:md11:ut_metadatai1eee",
            },
            Message::Bitfield(&[0xff, 0xf0]),
            Message::Unchoke,
            Message::KeepAlive,
            Message::Request(BlockRef::new(0, 0, 300)),
            Message::Piece {
                index: 0,
                begin: 0,
                data: &data,
            },
            Message::Piece {
                index: 0,
                begin: 300,
                data: &[],
            },
            Message::Have { index: 0 },
        ] {
            m.emit(&mut s);
        }
        s
    }

    #[test]
    fn whole_stream_in_one_chunk() {
        let s = sample_stream();
        let (items, err) = decode_chunks(StreamDecoder::new(), [&s[..]]);
        assert_eq!(err, None);
        assert_eq!(items.len(), 9);
        assert_eq!(items[0], "0 68 handshake extended");
        assert!(items[1].starts_with("68 "), "{}", items[1]);
        assert!(items[3].ends_with(" unchoke"));
        assert!(items[8].ends_with(" have 0"));
    }

    #[test]
    fn every_split_point_gives_the_same_items() {
        let s = sample_stream();
        for mode in [StreamDecoder::new, || StreamDecoder::new().piece_headers()] {
            let (want, _) = decode_chunks(mode(), [&s[..]]);
            let want = merge_data(want);
            for cut in 0..=s.len() {
                let (got, err) = decode_chunks(mode(), [&s[..cut], &s[cut..]]);
                assert_eq!(err, None);
                assert_eq!(merge_data(got), want, "split at {cut}");
            }
            for cut in (0..s.len()).step_by(3) {
                for cut2 in (cut..=s.len()).step_by(7) {
                    let (got, _) = decode_chunks(mode(), [&s[..cut], &s[cut..cut2], &s[cut2..]]);
                    assert_eq!(merge_data(got), want, "split at {cut} and {cut2}");
                }
            }
            let (got, _) = decode_chunks(mode(), s.chunks(1));
            assert_eq!(merge_data(got), want);
        }
    }

    #[test]
    fn piece_headers_mode_never_buffers_data() {
        let s = sample_stream();
        let (items, err) = decode_chunks(StreamDecoder::new().piece_headers(), [&s[..]]);
        assert_eq!(err, None);
        let pieces: Vec<&String> = items
            .iter()
            .filter(|i| i.contains("piece header"))
            .collect();
        assert_eq!(pieces.len(), 2, "{items:?}");
        assert!(pieces[0].ends_with(" 13 piece header piece 0 begin 0 length 300"));
        assert!(pieces[1].ends_with(" 13 piece header piece 0 begin 300 length 0"));
        // Fed byte by byte, the buffer never holds more than a header.
        let mut dec = StreamDecoder::new().piece_headers();
        let mut data = 0;
        for b in s.chunks(1) {
            let mut input = b;
            while let Some(d) = dec.next_item(&mut input).unwrap() {
                if let Item::PieceData { .. } = d.item {
                    data += d.bytes.len();
                }
            }
            assert!(dec.buffered().len() <= 68);
            if dec.offset() > 200 {
                assert!(dec.buffered().len() <= 30, "{}", dec.buffered().len());
            }
        }
        assert_eq!(data, 300);
        assert_eq!(dec.offset(), s.len() as u64);
    }

    #[test]
    fn whole_messages_come_from_the_input_without_copies() {
        let s = sample_stream();
        let mut dec = StreamDecoder::new();
        let mut input = &s[..];
        let mut n = 0;
        while let Some(d) = dec.next_item(&mut input).unwrap() {
            // Borrowed from `s` itself.
            let p = d.bytes.as_ptr() as usize;
            assert!(p >= s.as_ptr() as usize && p < s.as_ptr() as usize + s.len());
            n += 1;
        }
        assert_eq!(n, 9);
        assert!(dec.buffered().is_empty());
    }

    #[test]
    fn libtorrent_stream_at_every_split_point() {
        // What libtorrent 2.0.8 sent us on one connection; see `testdata/README.md`.
        let s: &[u8] = include_bytes!("testdata/libtorrent-2.0.8-seeder.bin");
        let mut dec = StreamDecoder::new();
        let mut input = s;
        let mut words = Vec::new();
        while let Some(d) = dec.next_item(&mut input).unwrap() {
            words.push(match d.item {
                Item::Handshake(h) => format!("{} reserved {}", d.offset, h.reserved),
                Item::Message(m) => format!("{} {m}", d.offset),
                _ => unreachable!("not in piece headers mode"),
            });
        }
        assert_eq!(dec.offset(), s.len() as u64);
        assert_eq!(
            words,
            [
                "0 reserved extended, dht, fast",
                "68 extended id 0 (210 bytes)",
                "284 have all",
                "289 unchoke",
                "294 extended id 3 (280 bytes)",
                "580 extended id 3 (43 bytes)",
                "629 allowed fast 0",
                "638 allowed fast 1",
                "647 allowed fast 2",
                "656 unchoke",
                "661 piece 1 begin 0 (100 bytes)",
            ]
        );
        let (want, _) = decode_chunks(StreamDecoder::new(), [s]);
        for cut in 0..=s.len() {
            let (got, err) = decode_chunks(StreamDecoder::new(), [&s[..cut], &s[cut..]]);
            assert_eq!(err, None);
            assert_eq!(got, want, "split at {cut}");
        }
    }

    #[test]
    fn bad_handshake_is_reported_at_once() {
        let mut dec = StreamDecoder::new();
        let mut input = &b"\x13BitTorrent protocoX"[..];
        let e = dec.next_item(&mut input).unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(matches!(e.error, WireError::BadProtocol { .. }));
        // The error sticks until the caller acts; the bytes are kept for it.
        assert_eq!(dec.next_item(&mut &[1u8][..]).unwrap_err(), e);
        assert_eq!(dec.buffered(), b"\x13BitTorrent protocoX");
        assert!(e
            .to_string()
            .starts_with("at stream offset 0: not a BitTorrent handshake"));
    }

    #[test]
    fn huge_length_fails_without_buffering() {
        let mut dec = StreamDecoder::messages_only();
        let mut input = &[0, 0, 0, 1, 1, 0xff, 0xff, 0xff, 0xff][..];
        assert!(matches!(
            dec.next_item(&mut input).unwrap().unwrap().item,
            Item::Message(Message::Unchoke)
        ));
        let e = dec.next_item(&mut input).unwrap_err();
        assert_eq!(
            e,
            StreamError {
                offset: 5,
                error: WireError::TooLong {
                    len: 0xffff_ffff,
                    max: MAX_MESSAGE_LEN
                }
            }
        );
        assert_eq!(dec.buffered().len(), 4);
    }

    #[test]
    fn buffer_stays_bounded() {
        // 4 MiB of 16 KiB piece messages in 60 KiB chunks: only the tails are buffered.
        let data = vec![7u8; 16384];
        let mut s = Vec::new();
        for i in 0..256 {
            Message::Piece {
                index: i,
                begin: 0,
                data: &data,
            }
            .emit(&mut s);
        }
        for headers in [false, true] {
            let mut dec = StreamDecoder::messages_only();
            if headers {
                dec = dec.piece_headers();
            }
            let mut n = 0;
            let mut max_buf = 0;
            for chunk in s.chunks(60 * 1024) {
                let mut input = chunk;
                while let Some(d) = dec.next_item(&mut input).unwrap() {
                    if matches!(d.item, Item::Message(_) | Item::PieceHeader(_)) {
                        assert_eq!(d.offset, n as u64 * (16384 + 13));
                        n += 1;
                    }
                }
                max_buf = max_buf.max(dec.buffered().len());
            }
            assert_eq!(n, 256);
            let cap = if headers {
                PIECE_HEADER_LEN
            } else {
                16384 + 13
            };
            assert!(max_buf <= cap, "buffered {max_buf}");
        }
    }

    #[test]
    fn resync_finds_the_next_message() {
        // Garbage (the tail of a piece whose start was lost), then real messages.
        let mut s: Vec<u8> = (0..500u32).map(|i| (i * 7 + 3) as u8).collect();
        let garbage = s.len() as u64;
        Message::Have { index: 5 }.emit(&mut s);
        Message::Request(BlockRef::new(1, 2, 3)).emit(&mut s);
        Message::Unchoke.emit(&mut s);
        for dec in [StreamDecoder::messages_only(), StreamDecoder::hunting()] {
            let mut dec = dec;
            let mut got = Vec::new();
            for chunk in s.chunks(50) {
                let mut input = chunk;
                loop {
                    match dec.next_item(&mut input) {
                        Ok(Some(d)) => got.push(show(&d)),
                        Ok(None) => break,
                        Err(_) => dec.resync(),
                    }
                }
            }
            assert_eq!(
                got,
                [
                    format!("{garbage} 9 have 5"),
                    format!("{} 17 request piece 1 begin 2 length 3", garbage + 9),
                    format!("{} 5 unchoke", garbage + 26),
                ]
            );
        }
        // Hunting accepts a message at the very first byte.
        let mut s = Message::Have { index: 1 }.to_vec();
        Message::Interested.emit(&mut s);
        let (got, _) = decode_chunks(StreamDecoder::hunting().starting_at(7), [&s[..]]);
        assert_eq!(got, ["7 9 have 1", "16 5 interested"]);
    }

    #[test]
    fn gap_inside_a_known_message_resumes_at_the_next() {
        let bitfield = Message::Bitfield(&[0xff; 100]).to_vec();
        let mut s = Message::Unchoke.to_vec();
        let at = s.len() as u64;
        s.extend(&bitfield);
        let next = s.len() as u64;
        Message::Have { index: 2 }.emit(&mut s);
        let mut dec = StreamDecoder::messages_only();
        let cut = at as usize + 20;
        let (got, _) = decode_chunks_with(&mut dec, &s[..cut]);
        assert_eq!(got, ["0 5 unchoke"]);
        assert_eq!(
            dec.gap(30, cut as u64 + 30),
            GapEffect::LostMessage {
                message_at: at,
                id: Some(5),
                next,
                again: false
            }
        );
        // 10 bytes seen, then another gap inside the same message.
        let resume = cut + 30;
        assert!(decode_chunks_with(&mut dec, &s[resume..resume + 10])
            .0
            .is_empty());
        assert_eq!(
            dec.gap(20, resume as u64 + 30),
            GapEffect::LostMessage {
                message_at: at,
                id: Some(5),
                next,
                again: true
            }
        );
        let (got, _) = decode_chunks_with(&mut dec, &s[resume + 30..]);
        assert_eq!(got, [format!("{next} 9 have 2")]);
    }

    #[test]
    fn gap_in_piece_data_goes_on_and_past_the_end_hunts() {
        let data = [9u8; 100];
        let mut s = Message::Piece {
            index: 2,
            begin: 0,
            data: &data,
        }
        .to_vec();
        let next = s.len() as u64;
        Message::Have { index: 2 }.emit(&mut s);
        Message::Have { index: 3 }.emit(&mut s);
        Message::Have { index: 4 }.emit(&mut s);
        let mut dec = StreamDecoder::messages_only().piece_headers();
        let (got, _) = decode_chunks_with(&mut dec, &s[..20]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            dec.gap(30, 50),
            GapEffect::PieceData {
                message_at: 0,
                rest: 63
            }
        );
        let (got, _) = decode_chunks_with(&mut dec, &s[50..]);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].starts_with("50 63 data"));
        assert_eq!(got[1], format!("{next} 9 have 2"));
        // A gap past the piece's end: hunt.
        let mut dec = StreamDecoder::messages_only().piece_headers();
        decode_chunks_with(&mut dec, &s[..20]);
        let resume = next + 3;
        assert_eq!(
            dec.gap(resume - 20, resume),
            GapEffect::Hunting { from: resume }
        );
        let (got, _) = decode_chunks_with(&mut dec, &s[resume as usize..]);
        assert_eq!(
            got,
            [
                format!("{} 9 have 3", next + 9),
                format!("{} 9 have 4", next + 18)
            ]
        );
        // A gap where nothing was pending: hunt.
        let mut dec = StreamDecoder::messages_only();
        decode_chunks_with(&mut dec, &s[..next as usize]);
        assert_eq!(dec.gap(9, next + 9), GapEffect::Hunting { from: next + 9 });
    }

    fn decode_chunks_with(dec: &mut StreamDecoder, chunk: &[u8]) -> (Vec<String>, ()) {
        let mut out = Vec::new();
        let mut input = chunk;
        while let Some(d) = dec.next_item(&mut input).unwrap() {
            out.push(show(&d));
        }
        (out, ())
    }

    proptest! {
        #[test]
        fn any_messages_any_chunking(
            msgs in proptest::collection::vec(any_message_bytes(), 0..12),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            headers in any::<bool>(),
        ) {
            let mut s = handshake().emit().to_vec();
            for m in &msgs {
                s.extend_from_slice(m);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(s.len() + 1)).collect();
            points.push(0);
            points.push(s.len());
            points.sort();
            let mode = || if headers { StreamDecoder::new().piece_headers() } else { StreamDecoder::new() };
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &s[w[0]..w[1]]).collect();
            let (got, err) = decode_chunks(mode(), chunks);
            prop_assert_eq!(err, None);
            let (want, _) = decode_chunks(mode(), [&s[..]]);
            prop_assert_eq!(merge_data(got), merge_data(want.clone()));
            if !headers {
                prop_assert_eq!(want.len(), msgs.len() + 1);
                let mut at = HANDSHAKE_LEN as u64;
                for (w, m) in want[1..].iter().zip(&msgs) {
                    let (parsed, _) = Message::parse(m).unwrap();
                    prop_assert_eq!(w, &format!("{at} {} {parsed}", m.len()));
                    at += m.len() as u64;
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..50,
            mode in 0u8..3,
            gaps in proptest::collection::vec((any::<bool>(), 1u64..40), 0..40),
        ) {
            let mut dec = match mode {
                0 => StreamDecoder::new(),
                1 => StreamDecoder::messages_only().piece_headers(),
                _ => StreamDecoder::hunting(),
            };
            let mut last = 0;
            let mut stream = 0u64;
            for (i, c) in bytes.chunks(chunk).enumerate() {
                if let Some(&(true, lost)) = gaps.get(i) {
                    stream += lost;
                    dec.gap(lost, stream);
                    last = stream;
                }
                let mut input = c;
                stream += c.len() as u64;
                for _ in 0..1000 {
                    match dec.next_item(&mut input) {
                        Ok(Some(d)) => {
                            prop_assert!(d.offset >= last);
                            last = d.offset + d.bytes.len() as u64;
                            prop_assert!(last <= stream);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            prop_assert!(e.offset <= stream);
                            dec.resync();
                        }
                    }
                }
                prop_assert!(input.is_empty());
            }
            prop_assert!(dec.offset() <= stream);
        }
    }
}
