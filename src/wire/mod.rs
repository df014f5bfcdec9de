//! The BitTorrent peer wire protocol: one codec for the downloader, the seeding side, the pcapng
//! recorder and the capture analyzer.
//!
//! What is covered:
//! - BEP 3 (base protocol): the 68-byte [`handshake`] and the length-prefixed
//!   [`message`]s `<len: u32 BE><id: u8><payload>`, where `len == 0` is a keep-alive.
//! - BEP 6 (fast extension): suggest, have all, have none, reject request, allowed fast.
//! - BEP 10 (extension protocol): message id 20, whose first payload byte is the extended id;
//!   extended id 0 is the extended handshake (see [`extension`]).
//! - BEP 9 (`ut_metadata`) and BEP 11 (`ut_pex`) payloads, in [`extension`].
//! - BEP 23 compact peer lists (trackers and `ut_pex`), in [`compact`].
//! - The message table ([`message`]): every message's id, name, event type and length rule in
//!   one row, from which [`MessageKind`] and everything that names messages is generated.
//! - A [`StreamDecoder`] that cuts a TCP byte stream (fed in whatever chunks TCP delivers) into a
//!   handshake followed by messages, remembering the stream offset of each, with the recovery
//!   a capture needs (hunting, gaps) and a piece-headers mode that never buffers piece data.
//!
//! Parsing is zero-copy: [`Message`] borrows its payload (piece data, bitfield, extension
//! payload) from the input slice, so the hot path never allocates.
//!
//! # No-panic contract
//! Every parser here takes untrusted bytes. For any input whatsoever they return `Ok` or a
//! [`WireError`]; they never panic, and they never allocate based on a length field before that
//! length has been checked against its cap ([`MAX_MESSAGE_LEN`] for messages). The property tests
//! in each file feed arbitrary bytes to every parser to back this up.
//!
//! # Incomplete versus broken
//! The pure parsers (`parse(&[u8]) -> Result<(T, usize), WireError>`) return
//! [`WireError::Incomplete`] when the bytes so far are a valid beginning but more are needed. That
//! is not a protocol error: the [`StreamDecoder`] treats it as "wait for more data" and only
//! reports real errors.

pub mod compact;
pub mod extension;
pub mod handshake;
pub mod message;
pub mod stream;

pub use extension::{ExtendedHandshake, ExtensionMessage, PexFlags, UtMetadata, UtPex};
pub use handshake::{looks_like_handshake_prefix, Handshake, Reserved, HANDSHAKE_LEN};
pub use message::{BlockRef, Message, MessageKind, KIND_COUNT, MAX_MESSAGE_LEN};
pub use stream::{Decoded, GapEffect, Item, StreamDecoder, StreamError};

use thiserror::Error;

/// Everything that can go wrong while decoding the peer wire protocol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The input is a valid beginning but is cut short: at least `needed` more bytes are required.
    /// Not a protocol error; a stream decoder waits for more data.
    #[error("incomplete: need {needed} more bytes")]
    Incomplete {
        /// How many more bytes are needed (at least) before parsing can succeed.
        needed: usize,
    },

    /// A message's length prefix is above the cap. Checked before anything is buffered or
    /// allocated, so a hostile `0xFFFFFFFF` costs nothing.
    #[error("message length {len} is larger than the maximum {max}")]
    TooLong {
        /// The length prefix found (id + payload bytes).
        len: usize,
        /// The cap in force.
        max: usize,
    },

    /// A message with a fixed size (choke, have, request, ...) had a different length prefix.
    #[error("{} message (id {id}) must have length {expected}, found {len}", message::id_name(*.id))]
    BadLength {
        /// The message id.
        id: u8,
        /// The length prefix found.
        len: u32,
        /// The only valid length for this id.
        expected: u32,
    },

    /// A variable-size message (piece, extended) was shorter than its fixed header.
    #[error("{} message (id {id}) must have length at least {min}, found {len}", message::id_name(*.id))]
    TooShort {
        /// The message id.
        id: u8,
        /// The length prefix found.
        len: u32,
        /// The smallest valid length for this id.
        min: u32,
    },

    /// The stream does not start with the BitTorrent handshake (`0x13` then
    /// `"BitTorrent protocol"`). An MSE/PE encrypted handshake looks like this: random bytes.
    #[error(
        "not a BitTorrent handshake: expected 0x13 \"BitTorrent protocol\", found \"{}\"",
        .found.escape_ascii()
    )]
    BadProtocol {
        /// The first bytes seen (at most 20), enough to show what the peer sent instead.
        found: Vec<u8>,
    },

    /// An extension payload (BEP 10 / 9 / 11) is malformed.
    #[error("bad {what}: {detail}")]
    BadExtension {
        /// Which payload: "extended handshake", "ut_metadata", "ut_pex".
        what: &'static str,
        /// What was expected and what was found.
        detail: String,
    },
}

/// Reads a big-endian `u32` from the first four bytes, if there are four.
#[inline]
pub(crate) fn be_u32(b: &[u8]) -> Option<u32> {
    b.first_chunk::<4>().map(|a| u32::from_be_bytes(*a))
}
