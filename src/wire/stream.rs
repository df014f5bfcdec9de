//! Cutting a TCP byte stream into a handshake and messages (BEP 3 framing).
//!
//! TCP delivers bytes in arbitrary chunks: a message may arrive in ten pieces, or ten messages in
//! one read. [`StreamDecoder`] keeps the bytes not yet decoded in one bounded buffer and hands out
//! items that borrow from it, so the usual loop allocates nothing per message:
//!
//! ```
//! use bt_trace::wire::{Item, StreamDecoder};
//!
//! let mut dec = StreamDecoder::messages_only();
//! for chunk in [&[0u8, 0, 0][..], &[1, 1, 0, 0, 0, 5, 4, 0][..], &[0, 0, 9][..]] {
//!     dec.push(chunk);
//!     while let Some(d) = dec.next_item()? {
//!         if let Item::Message(m) = d.item {
//!             println!("offset {}: {m}", d.offset); // "unchoke", then "have 9"
//!         }
//!     }
//! }
//! # Ok::<(), bt_trace::wire::StreamError>(())
//! ```
//!
//! A socket reader can skip the extra copy of `push` by reading straight into the decoder with
//! [`StreamDecoder::spare_capacity`] and [`StreamDecoder::commit`].
//!
//! Memory: the buffer holds at most one unfinished message (capped by the maximum message
//! length, checked on the length prefix before waiting for the body) plus one read chunk.
//!
//! Errors: an impossible message (too long, wrong fixed length, not a handshake) stops the
//! decoder. It then keeps returning the same [`StreamError`] (with the stream offset where the bad
//! item starts) until the caller decides what to do: [`skip`](StreamDecoder::skip) bytes,
//! [`reset_to_messages`](StreamDecoder::reset_to_messages), or [`resync`](StreamDecoder::resync)
//! to hunt for the next plausible message (for the capture analyzer).
//!
//! No-panic contract: no input bytes, in any chunking, make the decoder panic.

use thiserror::Error;

use super::handshake::Handshake;
use super::message::{Message, MessageKind, MAX_MESSAGE_LEN};
use super::WireError;

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
    Message(Message<'a>),
}

/// An [`Item`] with where it was in the stream. Borrows from the decoder: drop it before the
/// next `push` or `next_item`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Stream offset of the item's first byte.
    pub offset: u64,
    /// The item's wire bytes, as received (for recorders and hex dumps).
    pub bytes: &'a [u8],
    /// The decoded item.
    pub item: Item<'a>,
}

impl Decoded<'_> {
    /// Stream offset one past the item's last byte.
    pub fn end_offset(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }

    /// The message kind, or `None` for the handshake.
    pub fn message_kind(&self) -> Option<MessageKind> {
        match self.item {
            Item::Handshake(_) => None,
            Item::Message(m) => Some(m.kind()),
        }
    }
}

/// What the decoder expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderState {
    /// The 68-byte handshake, then messages.
    ExpectHandshake,
    /// A handshake if the first byte is `0x13`, messages if it is `0x00` (a length prefix).
    AutoDetect,
    /// Length-prefixed messages.
    Messages,
    /// Looking for the next plausible message start after [`StreamDecoder::resync`].
    Resync,
    /// Stopped at an error; see [`StreamDecoder::error`].
    Failed,
}

/// Decoder of one direction of a peer connection. See the [module docs](self).
#[derive(Debug)]
pub struct StreamDecoder {
    /// Backing store; `buf.len()` is its usable size (kept initialized, so reads can go straight
    /// into `buf[end..]`).
    buf: Vec<u8>,
    /// First byte not yet decoded.
    start: usize,
    /// One past the last byte received.
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// What to decode next (never `Failed`; see `failed`).
    state: DecoderState,
    /// Set after an error; cleared by the recovery methods.
    failed: Option<StreamError>,
    /// Bytes still to drop (from [`skip`](Self::skip) past the end of what is buffered).
    pending_skip: u64,
    /// Cap on a message's length prefix.
    max_len: usize,
}

/// Initial buffer size: one typical read.
const INITIAL_CAPACITY: usize = 64 * 1024;
/// Room kept above the largest message for one read chunk before the buffer is shrunk back.
const READ_SLACK: usize = 256 * 1024;

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
            end: 0,
            offset: 0,
            state,
            failed: None,
            pending_skip: 0,
            max_len: MAX_MESSAGE_LEN,
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

    /// A decoder that looks at the first byte: `0x13` means a handshake follows, `0x00` means the
    /// stream starts at a message (a capture that begins mid-connection); anything else is
    /// [`WireError::UnknownStart`] (e.g. MSE encryption).
    pub fn auto_detect() -> Self {
        Self::with_state(DecoderState::AutoDetect)
    }

    /// Uses `max` instead of [`MAX_MESSAGE_LEN`] as the cap on length prefixes.
    pub fn with_max_message_len(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// Numbers offsets from `offset` instead of 0 (e.g. a TCP stream picked up mid-way).
    pub fn starting_at(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// What the decoder expects next, or `Failed`.
    pub fn state(&self) -> DecoderState {
        if self.failed.is_some() {
            DecoderState::Failed
        } else {
            self.state
        }
    }

    /// The error that stopped the decoder, if any.
    pub fn error(&self) -> Option<&StreamError> {
        self.failed.as_ref()
    }

    /// Stream offset of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Current size of the internal buffer (for tests and memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, data: &[u8]) {
        self.reserve_tail(data.len());
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Writable space at the end of the buffer, at least `min` bytes, for reading from a socket
    /// without an intermediate copy. Follow with [`commit`](Self::commit)`(n)` for the `n` bytes
    /// actually read.
    pub fn spare_capacity(&mut self, min: usize) -> &mut [u8] {
        self.reserve_tail(min);
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes written into [`spare_capacity`](Self::spare_capacity) as received
    /// (clamped to the space there is).
    pub fn commit(&mut self, n: usize) {
        self.end += n.min(self.buf.len() - self.end);
    }

    /// Makes room for `n` more bytes after `end`, moving undecoded bytes to the front only when
    /// the tail is too small (so a steady stream of reads copies little), and shrinking the
    /// buffer back after one huge chunk.
    fn reserve_tail(&mut self, n: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let soft_cap = self.max_len.saturating_add(4 + READ_SLACK);
        if self.buf.len() > soft_cap && self.end - self.start + n <= soft_cap {
            self.compact();
            self.buf.truncate(soft_cap);
            self.buf.shrink_to_fit();
        }
        if self.buf.len() - self.end >= n {
            return;
        }
        self.compact();
        let needed = self.end + n;
        if self.buf.len() < needed {
            // Grow geometrically (few reallocations), but not past the soft cap unless one
            // chunk alone needs more.
            let grown = needed
                .max(INITIAL_CAPACITY)
                .max(self.buf.len().saturating_mul(2))
                .min(needed.max(soft_cap));
            self.buf.resize(grown, 0);
        }
    }

    /// Moves the undecoded bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Drops `n` undecoded bytes from the front of the buffer.
    fn discard(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }

    /// The next handshake or message, `Ok(None)` if more bytes are needed, or the error that
    /// stopped the decoder (returned again on every call until a recovery method is used).
    pub fn next_item(&mut self) -> Result<Option<Decoded<'_>>, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.pending_skip > 0 {
            let n = usize::try_from(self.pending_skip).unwrap_or(usize::MAX);
            let before = self.offset;
            self.discard(n);
            self.pending_skip -= self.offset - before;
            if self.pending_skip > 0 {
                return Ok(None);
            }
        }
        loop {
            let avail = &self.buf[self.start..self.end];
            let Some(&first) = avail.first() else {
                return Ok(None);
            };
            match self.state {
                DecoderState::AutoDetect => {
                    self.state = match first {
                        0x13 => DecoderState::ExpectHandshake,
                        0x00 => DecoderState::Messages,
                        _ => return Err(self.fail(WireError::UnknownStart { first })),
                    };
                }
                DecoderState::Resync => {
                    if !self.resync_step() {
                        return Ok(None);
                    }
                    self.state = DecoderState::Messages;
                }
                DecoderState::ExpectHandshake | DecoderState::Messages | DecoderState::Failed => {
                    break
                }
            }
        }

        // Split the borrows: the returned item borrows `buf`, the bookkeeping fields change.
        let StreamDecoder {
            buf,
            start,
            end,
            offset,
            state,
            failed,
            max_len,
            ..
        } = self;
        let avail = &buf[*start..*end];
        let at = *offset;
        let result = if *state == DecoderState::ExpectHandshake {
            Handshake::parse(avail).map(|(hs, n)| (Item::Handshake(hs), n))
        } else {
            Message::parse_with_limit(avail, *max_len).map(|(m, n)| (Item::Message(m), n))
        };
        match result {
            Ok((item, n)) => {
                *start += n;
                *offset += n as u64;
                *state = DecoderState::Messages;
                Ok(Some(Decoded {
                    offset: at,
                    bytes: &avail[..n],
                    item,
                }))
            }
            Err(WireError::Incomplete { .. }) => Ok(None),
            Err(error) => {
                let e = StreamError { offset: at, error };
                *failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn fail(&mut self, error: WireError) -> StreamError {
        let e = StreamError {
            offset: self.offset,
            error,
        };
        self.failed = Some(e.clone());
        e
    }

    /// Clears a failure and drops the next `n` bytes of the stream (buffered now or arriving
    /// later), then continues in the state it was in. E.g. after `BadLength` the caller may skip
    /// the whole claimed frame (`4 + len`) and go on.
    pub fn skip(&mut self, n: u64) {
        self.failed = None;
        self.pending_skip = self.pending_skip.saturating_add(n);
        let before = self.offset;
        self.discard(usize::try_from(self.pending_skip).unwrap_or(usize::MAX));
        self.pending_skip -= self.offset - before;
    }

    /// Clears a failure and decodes messages from the current position, keeping the buffered
    /// bytes. Use when a stream without a handshake turns out to be mid-connection.
    pub fn reset_to_messages(&mut self) {
        self.failed = None;
        self.state = DecoderState::Messages;
    }

    /// Drops everything buffered and continues with messages at stream offset `offset` (after a
    /// gap in a capture: bytes that were never seen).
    pub fn restart_at(&mut self, offset: u64) {
        self.failed = None;
        self.pending_skip = 0;
        self.start = 0;
        self.end = 0;
        self.offset = offset;
        self.state = DecoderState::Messages;
    }

    /// Clears a failure and hunts for the next plausible message start, at least one byte past
    /// the current position. [`next_item`](Self::next_item) does the hunting as bytes arrive
    /// and continues normally from the first candidate, whose `offset` tells how much was
    /// skipped.
    ///
    /// A candidate is a non-keep-alive header with a known id and a length valid for it, whose
    /// whole frame is followed by another such header (or a keep-alive). This is a heuristic:
    /// piece data can in principle contain such bytes.
    pub fn resync(&mut self) {
        self.failed = None;
        self.discard(1);
        self.state = DecoderState::Resync;
    }

    /// One round of resync over the buffered bytes: `true` with `start` on a candidate, or
    /// `false` after dropping the bytes that cannot start one (more data is needed).
    fn resync_step(&mut self) -> bool {
        let avail = &self.buf[self.start..self.end];
        let mut i = 0;
        while i + 5 <= avail.len() {
            if let Some(frame) = plausible_frame_len(&avail[i..], self.max_len) {
                let next = i + frame;
                if next + 5 > avail.len() {
                    // Wait for the frame and the next header before deciding.
                    self.discard(i);
                    return false;
                }
                let next_ok = avail[next..next + 4] == [0, 0, 0, 0]
                    || plausible_frame_len(&avail[next..], self.max_len).is_some();
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

/// If `b` starts with a plausible non-keep-alive message header (5 bytes: length, known id, valid
/// length for it), the frame's total size.
fn plausible_frame_len(b: &[u8], max: usize) -> Option<usize> {
    let (len_bytes, rest) = b.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len_bytes);
    let &id = rest.first()?;
    if len == 0 || len as usize > max || matches!(MessageKind::from_id(id), MessageKind::Unknown(_))
    {
        return None;
    }
    // Reuse the parser's length rules: a 5-byte prefix gives Incomplete when they pass.
    match Message::parse_with_limit(&b[..5], max) {
        Ok(_) | Err(WireError::Incomplete { .. }) => Some(4 + len as usize),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handshake::{Reserved, HANDSHAKE_LEN};
    use crate::wire::message::tests::any_owned_message;
    use crate::wire::message::{BlockRef, OwnedMessage};
    use proptest::prelude::*;

    /// Owned copy of an item, to compare across decoders.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Handshake(Handshake),
        Message(OwnedMessage),
    }

    fn own(d: &Decoded<'_>) -> (u64, usize, Owned) {
        let item = match d.item {
            Item::Handshake(h) => Owned::Handshake(h),
            Item::Message(m) => Owned::Message(m.into_owned()),
        };
        (d.offset, d.bytes.len(), item)
    }

    /// Feeds `chunks` and collects everything, stopping at the first error.
    fn decode_chunks<'c>(
        mut dec: StreamDecoder,
        chunks: impl IntoIterator<Item = &'c [u8]>,
    ) -> (Vec<(u64, usize, Owned)>, Option<StreamError>) {
        let mut out = Vec::new();
        for chunk in chunks {
            dec.push(chunk);
            loop {
                match dec.next_item() {
                    Ok(Some(d)) => out.push(own(&d)),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
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
        assert_eq!(items.len(), 8);
        assert_eq!(items[0], (0, HANDSHAKE_LEN, Owned::Handshake(handshake())));
        assert_eq!(items[1].0, 68);
        assert_eq!(items[3].2, Owned::Message(OwnedMessage::Unchoke));
        // Offsets are contiguous and cover the stream.
        let mut at = 0;
        for (off, len, _) in &items {
            assert_eq!(*off, at);
            at += *len as u64;
        }
        assert_eq!(at, s.len() as u64);
    }

    #[test]
    fn every_split_point_gives_the_same_items() {
        let s = sample_stream();
        let (want, _) = decode_chunks(StreamDecoder::new(), [&s[..]]);
        for cut in 0..=s.len() {
            let (got, err) = decode_chunks(StreamDecoder::new(), [&s[..cut], &s[cut..]]);
            assert_eq!(err, None);
            assert_eq!(got, want, "split at {cut}");
        }
        for cut in 0..s.len() {
            for cut2 in (cut..=s.len()).step_by(7) {
                let (got, _) =
                    decode_chunks(StreamDecoder::new(), [&s[..cut], &s[cut..cut2], &s[cut2..]]);
                assert_eq!(got, want, "split at {cut} and {cut2}");
            }
        }
        // One byte at a time.
        let (got, _) = decode_chunks(StreamDecoder::new(), s.chunks(1));
        assert_eq!(got, want);
    }

    #[test]
    fn libtorrent_stream_at_every_split_point() {
        // What libtorrent 2.0.8 sent us on one connection; see `testdata/README.md`.
        let s: &[u8] = include_bytes!("testdata/libtorrent-2.0.8-seeder.bin");
        let mut dec = StreamDecoder::new();
        dec.push(s);
        let mut words = Vec::new();
        while let Some(d) = dec.next_item().unwrap() {
            words.push(match d.item {
                Item::Handshake(h) => format!("{} reserved {}", d.offset, h.reserved),
                Item::Message(m) => format!("{} {m}", d.offset),
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
    fn reading_straight_into_the_buffer() {
        let s = sample_stream();
        let (want, _) = decode_chunks(StreamDecoder::new(), [&s[..]]);
        let mut dec = StreamDecoder::new();
        let mut got = Vec::new();
        for chunk in s.chunks(33) {
            let spare = dec.spare_capacity(chunk.len());
            assert!(spare.len() >= chunk.len());
            spare[..chunk.len()].copy_from_slice(chunk);
            dec.commit(chunk.len());
            while let Some(d) = dec.next_item().unwrap() {
                got.push(own(&d));
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn auto_detect() {
        let s = sample_stream();
        let (with_hs, err) = decode_chunks(StreamDecoder::auto_detect(), [&s[..]]);
        assert_eq!(err, None);
        assert_eq!(with_hs.len(), 8);
        let (msgs, err) = decode_chunks(StreamDecoder::auto_detect(), [&s[68..]]);
        assert_eq!(err, None);
        assert_eq!(msgs.len(), 7);
        let mut dec = StreamDecoder::auto_detect();
        dec.push(&[0x8f, 0x11, 0x22]); // MSE: random DH key
        let e = dec.next_item().unwrap_err();
        assert_eq!(e.error, WireError::UnknownStart { first: 0x8f });
        assert_eq!(dec.state(), DecoderState::Failed);
    }

    #[test]
    fn bad_handshake_is_reported_at_once() {
        let mut dec = StreamDecoder::new();
        dec.push(b"\x13BitTorrent protocoX");
        let e = dec.next_item().unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(matches!(e.error, WireError::BadProtocol { .. }));
        // The error sticks until the caller acts.
        assert_eq!(dec.next_item().unwrap_err(), e);
        assert_eq!(dec.error(), Some(&e));
        assert!(e
            .to_string()
            .starts_with("at stream offset 0: not a BitTorrent handshake"));
    }

    #[test]
    fn huge_length_fails_without_buffering() {
        let mut dec = StreamDecoder::messages_only();
        dec.push(&[0, 0, 0, 1, 1]);
        dec.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            dec.next_item().unwrap().unwrap().item,
            Item::Message(Message::Unchoke)
        ));
        let e = dec.next_item().unwrap_err();
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
        assert!(dec.capacity() <= INITIAL_CAPACITY);
    }

    #[test]
    fn buffer_stays_bounded() {
        // 4 MiB of 16 KiB piece messages pushed in 60 KiB chunks.
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
        let mut dec = StreamDecoder::messages_only();
        let mut n = 0;
        let mut max_cap = 0;
        for chunk in s.chunks(60 * 1024) {
            dec.push(chunk);
            max_cap = max_cap.max(dec.capacity());
            while let Some(d) = dec.next_item().unwrap() {
                assert_eq!(d.offset, n as u64 * (16384 + 13));
                n += 1;
            }
        }
        assert_eq!(n, 256);
        assert!(max_cap <= 2 * 64 * 1024, "buffer grew to {max_cap}");
        // One huge chunk, then small ones: the buffer shrinks back.
        let mut dec = StreamDecoder::messages_only().with_max_message_len(1024);
        dec.push(&vec![0u8; 4 << 20]); // 1M keep-alives
        while dec.next_item().unwrap().is_some() {}
        dec.push(&[0, 0, 0, 1, 1]);
        assert!(dec.capacity() <= 1024 + 4 + READ_SLACK);
        assert!(dec.next_item().unwrap().is_some());
    }

    #[test]
    fn skip_after_bad_length() {
        let mut s = vec![0, 0, 0, 3, 4, 9, 9]; // have with length 3
        Message::Interested.emit(&mut s);
        let mut dec = StreamDecoder::messages_only();
        dec.push(&s[..5]);
        let e = dec.next_item().unwrap_err();
        assert_eq!(
            e.error,
            WireError::BadLength {
                id: 4,
                len: 3,
                expected: 5
            }
        );
        // Skip the claimed frame (7 bytes), only 5 of which are here yet.
        dec.skip(7);
        assert_eq!(dec.state(), DecoderState::Messages);
        assert!(dec.next_item().unwrap().is_none());
        dec.push(&s[5..]);
        let d = dec.next_item().unwrap().unwrap();
        assert_eq!(d.offset, 7);
        assert_eq!(d.item, Item::Message(Message::Interested));
    }

    #[test]
    fn reset_to_messages_after_missing_handshake() {
        let mut dec = StreamDecoder::new();
        dec.push(&[0, 0, 0, 1, 2]);
        assert!(dec.next_item().is_err());
        dec.reset_to_messages();
        let d = dec.next_item().unwrap().unwrap();
        assert_eq!(d.item, Item::Message(Message::Interested));
    }

    #[test]
    fn restart_after_gap() {
        let mut dec = StreamDecoder::messages_only();
        dec.push(&[0, 0, 0, 5, 4, 0]); // half a have, then a gap in the capture
        assert!(dec.next_item().unwrap().is_none());
        dec.restart_at(1000);
        dec.push(&[0, 0, 0, 1, 3]);
        let d = dec.next_item().unwrap().unwrap();
        assert_eq!(
            (d.offset, d.item),
            (1000, Item::Message(Message::NotInterested))
        );
    }

    #[test]
    fn resync_finds_the_next_message() {
        // Garbage (the tail of a piece whose start was lost), then real messages.
        let mut s: Vec<u8> = (0..500u32).map(|i| (i * 7 + 3) as u8).collect();
        let garbage = s.len() as u64;
        Message::Have { index: 5 }.emit(&mut s);
        Message::Request(BlockRef::new(1, 2, 3)).emit(&mut s);
        Message::Unchoke.emit(&mut s);
        let mut dec = StreamDecoder::messages_only();
        let mut got = Vec::new();
        for chunk in s.chunks(50) {
            dec.push(chunk);
            loop {
                match dec.next_item() {
                    Ok(Some(d)) => got.push((d.offset, d.item.clone_owned())),
                    Ok(None) => break,
                    Err(_) => dec.resync(),
                }
            }
        }
        assert_eq!(
            got,
            vec![
                (garbage, Owned::Message(OwnedMessage::Have { index: 5 })),
                (
                    garbage + 9,
                    Owned::Message(OwnedMessage::Request(BlockRef::new(1, 2, 3)))
                ),
                (garbage + 26, Owned::Message(OwnedMessage::Unchoke)),
            ]
        );
    }

    impl Item<'_> {
        fn clone_owned(&self) -> Owned {
            match *self {
                Item::Handshake(h) => Owned::Handshake(h),
                Item::Message(m) => Owned::Message(m.into_owned()),
            }
        }
    }

    proptest! {
        #[test]
        fn any_messages_any_chunking(
            msgs in proptest::collection::vec(any_owned_message(), 0..12),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut s = handshake().emit().to_vec();
            for m in &msgs {
                m.emit(&mut s);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(s.len() + 1)).collect();
            points.push(0);
            points.push(s.len());
            points.sort();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &s[w[0]..w[1]]).collect();
            let (got, err) = decode_chunks(StreamDecoder::new(), chunks);
            prop_assert_eq!(err, None);
            prop_assert_eq!(got.len(), msgs.len() + 1);
            for (g, m) in got[1..].iter().zip(&msgs) {
                prop_assert_eq!(&g.2, &Owned::Message(m.clone()));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..50,
            mode in 0u8..3,
        ) {
            let mut dec = match mode {
                0 => StreamDecoder::new(),
                1 => StreamDecoder::messages_only(),
                _ => StreamDecoder::auto_detect(),
            }.with_max_message_len(64);
            let mut last = 0;
            for c in bytes.chunks(chunk) {
                dec.push(c);
                for _ in 0..1000 {
                    match dec.next_item() {
                        Ok(Some(d)) => {
                            prop_assert!(d.offset >= last);
                            last = d.end_offset();
                        }
                        Ok(None) => break,
                        Err(e) => {
                            prop_assert!(e.offset <= bytes.len() as u64);
                            dec.resync();
                        }
                    }
                }
            }
            prop_assert!(dec.offset() <= bytes.len() as u64);
        }
    }
}
