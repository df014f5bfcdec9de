//! Peer messages after the handshake: BEP 3 (base), BEP 6 (fast extension), BEP 10 (extended),
//! BEP 52 (v2 hash request, hashes, hash reject).
//!
//! Every message is framed as `<len: u32 BE><id: u8><payload>`, where `len` counts the id and the
//! payload but not itself; `len == 0` (no id) is a keep-alive.
//!
//! Every message this codec knows is one row of the message table below (`message_table!`):
//! id, name in words, event `type`, and the rule for its length prefix; [`MessageKind`] and
//! everything that names or counts messages (packet comments, report rows, `--type`, the JSON
//! `type`) comes from it. Each row's doc says its payload and BEP.
//!
//! [`Message`] borrows its variable-size payloads from the input, so parsing copies nothing.
//! Ids not in the table are kept as [`Message::Unknown`] with their payload.
//!
//! No-panic contract: [`Message::parse`] accepts any bytes and never panics. The length prefix is
//! compared with the cap ([`MAX_MESSAGE_LEN`]) before anything else, so a hostile length never
//! makes anyone wait for, buffer or allocate gigabytes.

use std::fmt;

use super::{be_u32, WireError};

/// The largest length prefix accepted by [`Message::parse`] (id + payload bytes).
///
/// Why 2 MiB + 13: the two big messages are `piece` and `bitfield`. Blocks are 16 KiB in practice
/// and no client sends more than 128 KiB; a bitfield of 2 MiB covers 16.7 million pieces, far more
/// than any real torrent. 2 MiB of payload plus 13 bytes of header (the largest fixed header,
/// request-sized) keeps a wide margin while bounding what one peer can make us buffer.
pub const MAX_MESSAGE_LEN: usize = 2 * 1024 * 1024 + 13;

/// Length of a piece message's header on the wire: length prefix, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;
/// Length of a request (or cancel, reject) message on the wire.
pub const REQUEST_LEN: usize = 17;

/// One block of a piece: `length` bytes at offset `begin` of piece `index`. The payload of
/// request, cancel and reject request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// Piece index.
    pub index: u32,
    /// Byte offset inside the piece.
    pub begin: u32,
    /// Block length in bytes.
    pub length: u32,
}

impl BlockRef {
    /// A block reference.
    pub const fn new(index: u32, begin: u32, length: u32) -> Self {
        BlockRef {
            index,
            begin,
            length,
        }
    }

    /// Reads the 12 payload bytes `index, begin, length`.
    fn from_array(b: &[u8; 12]) -> Self {
        BlockRef {
            index: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            begin: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.begin.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

/// BEP 52: a run of hashes in one file's merkle tree, the payload of hash request and hash
/// reject and the header of hashes (48 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HashRef {
    /// The file's `pieces root`.
    pub pieces_root: [u8; 32],
    /// The tree layer of the hashes asked for (0: the 16 KiB leaf blocks).
    pub base_layer: u32,
    /// Offset of the first hash in that layer.
    pub index: u32,
    /// Number of hashes.
    pub length: u32,
    /// Number of uncle-hash layers asked for as proof.
    pub proof_layers: u32,
}

/// Bytes of a [`HashRef`] on the wire.
pub const HASH_REF_LEN: usize = 48;

impl HashRef {
    fn from_array(b: &[u8; HASH_REF_LEN]) -> Self {
        let u = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut pieces_root = [0u8; 32];
        pieces_root.copy_from_slice(&b[..32]);
        HashRef {
            pieces_root,
            base_layer: u(32),
            index: u(36),
            length: u(40),
            proof_layers: u(44),
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pieces_root);
        for n in [self.base_layer, self.index, self.length, self.proof_layers] {
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

impl fmt::Display for HashRef {
    /// `root 1c13…9641 base 0 index 0 length 512 proof 3`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "root {} base {} index {} length {} proof {}",
            hex::encode(self.pieces_root),
            self.base_layer,
            self.index,
            self.length,
            self.proof_layers
        )
    }
}

impl fmt::Display for BlockRef {
    /// `piece 7 begin 16384 length 16384`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "piece {} begin {} length {}",
            self.index, self.begin, self.length
        )
    }
}

/// Declares the message table: the [`id`] constants, [`MessageKind`] with its id, name, JSON
/// type and slot, and the length rule of each id. Keep-alive (no id) and unknown ids are
/// added here; every other message is one row of the invocation below.
macro_rules! message_table {
    ($(
        $(#[$doc:meta])*
        $kind:ident = $konst:ident $id:literal, $name:literal, $json:literal, $rule:expr;
    )*) => {
        /// Wire ids of the messages.
        pub mod id {
            $(pub const $konst: u8 = $id;)*
        }

        /// The kind of a message, without its fields: for counters, tables and filters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MessageKind {
            /// `len == 0`: no id, no payload.
            KeepAlive,
            $($(#[$doc])* $kind,)*
            /// An id this codec does not know, kept as is.
            Unknown(u8),
        }

        impl MessageKind {
            /// Every kind in table order (keep-alive first, then by id, unknown last; the
            /// unknown entry stands for all unknown ids). Reports list their rows in this order.
            pub const ALL: [MessageKind; 2 + [$($id),*].len()] =
                [MessageKind::KeepAlive, $(MessageKind::$kind,)* MessageKind::Unknown(0)];

            /// The kind for a wire id (never `KeepAlive`, which has no id).
            pub const fn from_id(id: u8) -> Self {
                match id {
                    $(id::$konst => MessageKind::$kind,)*
                    other => MessageKind::Unknown(other),
                }
            }

            /// The wire id; `None` for keep-alive, which has none.
            pub const fn id(self) -> Option<u8> {
                match self {
                    MessageKind::KeepAlive => None,
                    $(MessageKind::$kind => Some(id::$konst),)*
                    MessageKind::Unknown(other) => Some(other),
                }
            }

            /// The name in words, as packet comments, `--messages` lines and report rows
            /// say it: "keep-alive", "not interested", "suggest piece", "reject request", ...
            pub const fn name(self) -> &'static str {
                match self {
                    MessageKind::KeepAlive => "keep-alive",
                    $(MessageKind::$kind => $name,)*
                    MessageKind::Unknown(_) => "unknown",
                }
            }

            /// The `type` of the message in trace events (JSON `msg.type`, `--type`):
            /// "keep_alive", "not_interested", "suggest", "reject", ...
            pub const fn type_name(self) -> &'static str {
                match self {
                    MessageKind::KeepAlive => "keep_alive",
                    $(MessageKind::$kind => $json,)*
                    MessageKind::Unknown(_) => "unknown",
                }
            }
        }

        /// What the length prefix of a message with id `id` must be.
        const fn len_rule(id: u8) -> LenRule {
            match id {
                $(id::$konst => $rule,)*
                _ => LenRule::Any,
            }
        }
    };
}

/// What the length prefix of an id must be.
enum LenRule {
    Exact(u32),
    AtLeast(u32),
    Any,
}

use LenRule::{Any, AtLeast, Exact};

// THE message table. A new message is one row here plus its `Message` variant (fields, parse,
// emit); names, ids, report rows, event `type` strings and filters all come from this row.
message_table! {
    // kind                         id                words             JSON type         length prefix
    /// BEP 3, no payload.
    Choke = CHOKE 0,                                  "choke",          "choke",          Exact(1);
    /// BEP 3, no payload.
    Unchoke = UNCHOKE 1,                              "unchoke",        "unchoke",        Exact(1);
    /// BEP 3, no payload.
    Interested = INTERESTED 2,                        "interested",     "interested",     Exact(1);
    /// BEP 3, no payload.
    NotInterested = NOT_INTERESTED 3,                 "not interested", "not_interested", Exact(1);
    /// BEP 3: piece index.
    Have = HAVE 4,                                    "have",           "have",           Exact(5);
    /// BEP 3: one bit per piece, high bit first.
    Bitfield = BITFIELD 5,                            "bitfield",       "bitfield",       Any;
    /// BEP 3: index, begin, length.
    Request = REQUEST 6,                              "request",        "request",        Exact(13);
    /// BEP 3: index, begin, block data.
    Piece = PIECE 7,                                  "piece",          "piece",          AtLeast(9);
    /// BEP 3: index, begin, length.
    Cancel = CANCEL 8,                                "cancel",         "cancel",         Exact(13);
    /// BEP 5: DHT port (u16).
    Port = PORT 9,                                    "port",           "port",           Exact(3);
    /// BEP 6: piece index.
    Suggest = SUGGEST 13,                             "suggest piece",  "suggest",        Exact(5);
    /// BEP 6, no payload.
    HaveAll = HAVE_ALL 14,                            "have all",       "have_all",       Exact(1);
    /// BEP 6, no payload.
    HaveNone = HAVE_NONE 15,                          "have none",      "have_none",      Exact(1);
    /// BEP 6: index, begin, length.
    Reject = REJECT 16,                               "reject request", "reject",         Exact(13);
    /// BEP 6: piece index.
    AllowedFast = ALLOWED_FAST 17,                    "allowed fast",   "allowed_fast",   Exact(5);
    /// BEP 10: extended id, payload (bencode, see [`super::extension`]).
    Extended = EXTENDED 20,                           "extended",       "extended",       AtLeast(2);
    /// BEP 52: pieces root, base layer, index, length, proof layers ([`HashRef`]).
    HashRequest = HASH_REQUEST 21,                    "hash request",   "hash_request",   Exact(49);
    /// BEP 52: a [`HashRef`], then the hashes and proof hashes, 32 bytes each.
    Hashes = HASHES 22,                               "hashes",         "hashes",         AtLeast(49);
    /// BEP 52: the [`HashRef`] of a hash request the sender will not answer.
    HashReject = HASH_REJECT 23,                      "hash reject",    "hash_reject",    Exact(49);
}

/// Number of [`MessageKind::ALL`] entries (report counters are arrays of this size).
pub const KIND_COUNT: usize = MessageKind::ALL.len();

/// Slot of each wire id in [`MessageKind::ALL`], computed once at compile time.
const SLOT_BY_ID: [u8; 256] = {
    let mut t = [(KIND_COUNT - 1) as u8; 256];
    let mut i = 1;
    while i < KIND_COUNT - 1 {
        if let Some(id) = MessageKind::ALL[i].id() {
            t[id as usize] = i as u8;
        }
        i += 1;
    }
    t
};

impl MessageKind {
    /// Index of this kind in [`MessageKind::ALL`] (all unknown ids share the last one).
    pub const fn slot(self) -> usize {
        match self {
            MessageKind::KeepAlive => 0,
            MessageKind::Unknown(_) => KIND_COUNT - 1,
            known => match known.id() {
                Some(id) => SLOT_BY_ID[id as usize] as usize,
                None => 0,
            },
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name of a wire id, for error messages.
pub(crate) const fn id_name(id: u8) -> &'static str {
    MessageKind::from_id(id).name()
}

/// Checks a length prefix against the rule for `id`.
fn check_len(id: u8, len: u32) -> Result<(), WireError> {
    match len_rule(id) {
        Exact(expected) if len != expected => Err(WireError::BadLength { id, len, expected }),
        AtLeast(min) if len < min => Err(WireError::TooShort { id, len, min }),
        _ => Ok(()),
    }
}

/// A peer message, borrowing its payload from the buffer it was parsed from.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    /// The sender now has piece `index`.
    Have {
        index: u32,
    },
    /// Which pieces the sender has: bit 7 of byte 0 is piece 0.
    Bitfield(&'a [u8]),
    Request(BlockRef),
    /// A block of data: `data.len()` bytes at `begin` in piece `index`.
    Piece {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel(BlockRef),
    /// The sender's DHT port (BEP 5).
    Port(u16),
    /// BEP 6: the sender suggests downloading this piece.
    Suggest(u32),
    HaveAll,
    HaveNone,
    /// BEP 6: the sender will not serve this request.
    Reject(BlockRef),
    /// BEP 6: this piece may be requested even while choked.
    AllowedFast(u32),
    /// BEP 10: `ext_id` 0 is the extended handshake; others are resolved through the `m`
    /// dictionary that the *receiver* announced.
    Extended {
        ext_id: u8,
        payload: &'a [u8],
    },
    /// BEP 52: asks for hashes of a file's merkle tree.
    HashRequest(HashRef),
    /// BEP 52: the hashes asked for, then the proof (uncle) hashes, 32 bytes each (a trailing
    /// partial hash is kept in `hashes` as received).
    Hashes {
        hashes_of: HashRef,
        hashes: &'a [u8],
    },
    /// BEP 52: the sender will not answer this hash request.
    HashReject(HashRef),
    /// An id not known here, kept with its payload.
    Unknown {
        id: u8,
        payload: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Parses one message from the start of `buf` with the default cap [`MAX_MESSAGE_LEN`].
    /// Returns the message and the bytes used (4 + length prefix).
    pub fn parse(buf: &'a [u8]) -> Result<(Message<'a>, usize), WireError> {
        Self::parse_with_limit(buf, MAX_MESSAGE_LEN)
    }

    /// Parses one message from the start of `buf`, refusing length prefixes above `max`.
    ///
    /// Order of checks, so that bad input is rejected as early as possible:
    /// 1. fewer than 4 bytes: `Incomplete`;
    /// 2. length prefix above `max`: `TooLong` (nothing else is looked at);
    /// 3. the id is there and the length is impossible for it: `BadLength` / `TooShort`;
    /// 4. fewer than `4 + len` bytes: `Incomplete` with how many more.
    fn parse_with_limit(buf: &'a [u8], max: usize) -> Result<(Message<'a>, usize), WireError> {
        let Some((len_bytes, rest)) = buf.split_first_chunk::<4>() else {
            return Err(WireError::Incomplete {
                needed: 4 - buf.len(),
            });
        };
        let len = u32::from_be_bytes(*len_bytes);
        let ulen = len as usize;
        if ulen > max {
            return Err(WireError::TooLong { len: ulen, max });
        }
        if len == 0 {
            return Ok((Message::KeepAlive, 4));
        }
        let Some(&id) = rest.first() else {
            return Err(WireError::Incomplete { needed: ulen });
        };
        check_len(id, len)?;
        let Some(body) = rest.get(1..ulen) else {
            return Err(WireError::Incomplete {
                needed: ulen - rest.len(),
            });
        };
        Ok((Self::parse_body(id, len, body)?, 4 + ulen))
    }

    /// Builds the message from its id and the payload after the id, whose length has been
    /// checked by [`check_len`]. The `bad` fallbacks cannot happen after that check, but keep this
    /// function panic-free on its own.
    fn parse_body(id: u8, len: u32, body: &'a [u8]) -> Result<Message<'a>, WireError> {
        let bad = |expected| WireError::BadLength { id, len, expected };
        let u32_body = || be_u32(body).ok_or(bad(5));
        let block = || {
            body.first_chunk::<12>()
                .map(BlockRef::from_array)
                .ok_or(bad(13))
        };
        let hash_ref = || {
            body.first_chunk::<HASH_REF_LEN>()
                .map(HashRef::from_array)
                .ok_or(bad(49))
        };
        Ok(match id {
            id::CHOKE => Message::Choke,
            id::UNCHOKE => Message::Unchoke,
            id::INTERESTED => Message::Interested,
            id::NOT_INTERESTED => Message::NotInterested,
            id::HAVE => Message::Have { index: u32_body()? },
            id::BITFIELD => Message::Bitfield(body),
            id::REQUEST => Message::Request(block()?),
            id::PIECE => {
                let Some((head, data)) = body.split_first_chunk::<8>() else {
                    return Err(WireError::TooShort { id, len, min: 9 });
                };
                Message::Piece {
                    index: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
                    begin: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
                    data,
                }
            }
            id::CANCEL => Message::Cancel(block()?),
            id::PORT => {
                let port = body.first_chunk::<2>().ok_or(bad(3))?;
                Message::Port(u16::from_be_bytes(*port))
            }
            id::SUGGEST => Message::Suggest(u32_body()?),
            id::HAVE_ALL => Message::HaveAll,
            id::HAVE_NONE => Message::HaveNone,
            id::REJECT => Message::Reject(block()?),
            id::ALLOWED_FAST => Message::AllowedFast(u32_body()?),
            id::EXTENDED => {
                let Some((&ext_id, payload)) = body.split_first() else {
                    return Err(WireError::TooShort { id, len, min: 2 });
                };
                Message::Extended { ext_id, payload }
            }
            id::HASH_REQUEST => Message::HashRequest(hash_ref()?),
            id::HASHES => {
                let Some((head, hashes)) = body.split_first_chunk::<HASH_REF_LEN>() else {
                    return Err(WireError::TooShort { id, len, min: 49 });
                };
                Message::Hashes {
                    hashes_of: HashRef::from_array(head),
                    hashes,
                }
            }
            id::HASH_REJECT => Message::HashReject(hash_ref()?),
            id => Message::Unknown { id, payload: body },
        })
    }

    /// The kind of this message.
    pub const fn kind(&self) -> MessageKind {
        match self {
            Message::KeepAlive => MessageKind::KeepAlive,
            Message::Choke => MessageKind::Choke,
            Message::Unchoke => MessageKind::Unchoke,
            Message::Interested => MessageKind::Interested,
            Message::NotInterested => MessageKind::NotInterested,
            Message::Have { .. } => MessageKind::Have,
            Message::Bitfield(_) => MessageKind::Bitfield,
            Message::Request(_) => MessageKind::Request,
            Message::Piece { .. } => MessageKind::Piece,
            Message::Cancel(_) => MessageKind::Cancel,
            Message::Port(_) => MessageKind::Port,
            Message::Suggest(_) => MessageKind::Suggest,
            Message::HaveAll => MessageKind::HaveAll,
            Message::HaveNone => MessageKind::HaveNone,
            Message::Reject(_) => MessageKind::Reject,
            Message::AllowedFast(_) => MessageKind::AllowedFast,
            Message::Extended { .. } => MessageKind::Extended,
            Message::HashRequest(_) => MessageKind::HashRequest,
            Message::Hashes { .. } => MessageKind::Hashes,
            Message::HashReject(_) => MessageKind::HashReject,
            Message::Unknown { id, .. } => MessageKind::Unknown(*id),
        }
    }

    /// The value of the length prefix: id + payload bytes (0 for keep-alive).
    pub fn wire_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have { .. } | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Port(_) => 3,
            Message::Bitfield(b) => 1 + b.len(),
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Extended { payload, .. } => 2 + payload.len(),
            Message::HashRequest(_) | Message::HashReject(_) => 1 + HASH_REF_LEN,
            Message::Hashes { hashes, .. } => 1 + HASH_REF_LEN + hashes.len(),
            Message::Unknown { payload, .. } => 1 + payload.len(),
        }
    }

    /// Bytes on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + self.wire_len()
    }

    /// Appends the message's wire bytes to `out`.
    ///
    /// The length prefix is a `u32`: payloads must be below 4 GiB (and below
    /// [`MAX_MESSAGE_LEN`] for the peer to accept them).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        if let Message::Piece { index, begin, data } = self {
            // The one piece header writer, shared with the seeder's fast path.
            Self::emit_piece_header(out, *index, *begin, data.len());
            out.extend_from_slice(data);
            return;
        }
        out.extend_from_slice(&(self.wire_len() as u32).to_be_bytes());
        let Some(id) = self.kind().id() else {
            return; // keep-alive: the length prefix is all there is
        };
        out.push(id);
        match self {
            Message::Have { index: n } | Message::Suggest(n) | Message::AllowedFast(n) => {
                out.extend_from_slice(&n.to_be_bytes())
            }
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => b.emit(out),
            Message::Port(p) => out.extend_from_slice(&p.to_be_bytes()),
            Message::Bitfield(payload) | Message::Unknown { payload, .. } => {
                out.extend_from_slice(payload)
            }
            Message::Extended { ext_id, payload } => {
                out.push(*ext_id);
                out.extend_from_slice(payload);
            }
            Message::HashRequest(h) | Message::HashReject(h) => h.emit(out),
            Message::Hashes { hashes_of, hashes } => {
                hashes_of.emit(out);
                out.extend_from_slice(hashes);
            }
            // No payload (choke, unchoke, interested, not interested, have all, have none);
            // keep-alive and piece were handled above.
            _ => {}
        }
    }

    /// The message's wire bytes in a new `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.emit(&mut out);
        out
    }

    /// Fast path: appends a request for `block` (17 bytes) without building a `Message`.
    #[inline]
    pub fn emit_request(out: &mut Vec<u8>, block: BlockRef) {
        out.extend_from_slice(&[0, 0, 0, 13, id::REQUEST]);
        block.emit(out);
    }

    /// Fast path for the seeder: appends the 13-byte header of a piece message carrying
    /// `data_len` bytes. The caller then writes the block data itself (e.g. straight from the
    /// file), so the data is never copied into a message buffer.
    #[inline]
    pub fn emit_piece_header(out: &mut Vec<u8>, index: u32, begin: u32, data_len: usize) {
        out.extend_from_slice(&Self::piece_header(index, begin, data_len));
    }

    /// The 13-byte header of a piece message carrying `data_len` bytes, for vectored writes.
    #[inline]
    pub fn piece_header(index: u32, begin: u32, data_len: usize) -> [u8; PIECE_HEADER_LEN] {
        let len = (9 + data_len) as u32;
        let mut h = [0u8; PIECE_HEADER_LEN];
        h[0..4].copy_from_slice(&len.to_be_bytes());
        h[4] = id::PIECE;
        h[5..9].copy_from_slice(&index.to_be_bytes());
        h[9..13].copy_from_slice(&begin.to_be_bytes());
        h
    }
}

impl fmt::Display for Message<'_> {
    /// Words for pcapng comments and logs, e.g. `request piece 7 begin 16384 length 16384`,
    /// `piece 7 begin 0 (16384 bytes)`, `bitfield (2 bytes)`, `have 3`, `extended id 1 (93 bytes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.kind().name();
        match self {
            Message::Have { index: n } | Message::Suggest(n) | Message::AllowedFast(n) => {
                write!(f, "{name} {n}")
            }
            Message::Bitfield(b) => write!(f, "{name} ({} bytes)", b.len()),
            Message::Request(b) | Message::Cancel(b) => write!(f, "{name} {b}"),
            Message::Reject(b) => write!(f, "{name} {b}"),
            Message::Piece { index, begin, data } => {
                write!(f, "piece {index} begin {begin} ({} bytes)", data.len())
            }
            Message::Port(p) => write!(f, "{name} {p}"),
            Message::Extended { ext_id, payload } => {
                write!(f, "extended id {ext_id} ({} bytes)", payload.len())
            }
            Message::HashRequest(h) | Message::HashReject(h) => write!(f, "{name} {h}"),
            Message::Hashes { hashes_of, hashes } => {
                write!(f, "{name} {hashes_of} ({} hashes)", hashes.len() / 32)
            }
            Message::Unknown { id, payload } => {
                write!(f, "unknown id {id} ({} bytes)", payload.len())
            }
            _ => f.write_str(name),
        }
    }
}

/// Shows short payloads in hex and long ones as a byte count, so that `{:?}` of a piece does
/// not print 16 KiB.
struct Payload<'a>(&'a [u8]);

impl fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 32 {
            f.write_str("[")?;
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
            f.write_str("]")
        } else {
            write!(f, "<{} bytes>", self.0.len())
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::KeepAlive => f.write_str("KeepAlive"),
            Message::Choke => f.write_str("Choke"),
            Message::Unchoke => f.write_str("Unchoke"),
            Message::Interested => f.write_str("Interested"),
            Message::NotInterested => f.write_str("NotInterested"),
            Message::HaveAll => f.write_str("HaveAll"),
            Message::HaveNone => f.write_str("HaveNone"),
            Message::Have { index } => f.debug_struct("Have").field("index", index).finish(),
            Message::Bitfield(b) => f.debug_tuple("Bitfield").field(&Payload(b)).finish(),
            Message::Request(b) => f.debug_tuple("Request").field(b).finish(),
            Message::Piece { index, begin, data } => f
                .debug_struct("Piece")
                .field("index", index)
                .field("begin", begin)
                .field("data", &Payload(data))
                .finish(),
            Message::Cancel(b) => f.debug_tuple("Cancel").field(b).finish(),
            Message::Port(p) => f.debug_tuple("Port").field(p).finish(),
            Message::Suggest(i) => f.debug_tuple("Suggest").field(i).finish(),
            Message::Reject(b) => f.debug_tuple("Reject").field(b).finish(),
            Message::AllowedFast(i) => f.debug_tuple("AllowedFast").field(i).finish(),
            Message::Extended { ext_id, payload } => f
                .debug_struct("Extended")
                .field("ext_id", ext_id)
                .field("payload", &Payload(payload))
                .finish(),
            Message::HashRequest(h) => f.debug_tuple("HashRequest").field(h).finish(),
            Message::HashReject(h) => f.debug_tuple("HashReject").field(h).finish(),
            Message::Hashes { hashes_of, hashes } => f
                .debug_struct("Hashes")
                .field("hashes_of", hashes_of)
                .field("hashes", &Payload(hashes))
                .finish(),
            Message::Unknown { id, payload } => f
                .debug_struct("Unknown")
                .field("id", id)
                .field("payload", &Payload(payload))
                .finish(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(buf: &[u8]) -> Message<'_> {
        let (m, used) = Message::parse(buf).unwrap();
        assert_eq!(used, buf.len(), "{m:?} should use the whole buffer");
        m
    }

    #[test]
    fn request_is_byte_exact() {
        let bytes = [
            0x00, 0x00, 0x00, 0x0d, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x40, 0x00,
        ];
        let block = BlockRef::new(0, 0, 16384);
        assert_eq!(parse_all(&bytes), Message::Request(block));
        assert_eq!(Message::Request(block).to_vec(), bytes);
        let mut fast = Vec::new();
        Message::emit_request(&mut fast, block);
        assert_eq!(fast, bytes);
    }

    #[test]
    fn byte_exact_vectors() {
        let cases: Vec<(Message<'static>, &[u8])> = vec![
            (Message::KeepAlive, &[0, 0, 0, 0]),
            (Message::Choke, &[0, 0, 0, 1, 0]),
            (Message::Unchoke, &[0, 0, 0, 1, 1]),
            (Message::Interested, &[0, 0, 0, 1, 2]),
            (Message::NotInterested, &[0, 0, 0, 1, 3]),
            (Message::Have { index: 3 }, &[0, 0, 0, 5, 4, 0, 0, 0, 3]),
            (
                Message::Bitfield(&[0xff, 0x80]),
                &[0, 0, 0, 3, 5, 0xff, 0x80],
            ),
            (
                Message::Piece {
                    index: 1,
                    begin: 0x4000,
                    data: b"abc",
                },
                &[0, 0, 0, 12, 7, 0, 0, 0, 1, 0, 0, 0x40, 0, b'a', b'b', b'c'],
            ),
            (
                Message::Cancel(BlockRef::new(1, 2, 3)),
                &[0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
            ),
            (Message::Port(6881), &[0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (Message::Suggest(9), &[0, 0, 0, 5, 13, 0, 0, 0, 9]),
            (Message::HaveAll, &[0, 0, 0, 1, 14]),
            (Message::HaveNone, &[0, 0, 0, 1, 15]),
            (
                Message::Reject(BlockRef::new(7, 16384, 16384)),
                &[0, 0, 0, 13, 16, 0, 0, 0, 7, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (Message::AllowedFast(258), &[0, 0, 0, 5, 17, 0, 0, 1, 2]),
            (
                Message::Extended {
                    ext_id: 0,
                    payload: b"de",
                },
                &[0, 0, 0, 4, 20, 0, b'd', b'e'],
            ),
            (
                Message::Unknown {
                    id: 99,
                    payload: &[1, 2],
                },
                &[0, 0, 0, 3, 99, 1, 2],
            ),
        ];
        for (msg, bytes) in cases {
            assert_eq!(parse_all(bytes), msg, "parse {bytes:02x?}");
            assert_eq!(msg.to_vec(), bytes, "emit {msg:?}");
            assert_eq!(msg.encoded_len(), bytes.len(), "encoded_len {msg:?}");
        }
    }

    /// BEP 52 messages, built by hand from the spec's layout: pieces root (32 bytes), then
    /// base layer, index, length, proof layers (u32 each), then for `hashes` the hashes.
    #[test]
    fn bep52_hash_messages_are_byte_exact() {
        let h = HashRef {
            pieces_root: [0xab; 32],
            base_layer: 0,
            index: 512,
            length: 2,
            proof_layers: 1,
        };
        let head = |len: u8, id: u8| {
            let mut b = vec![0, 0, 0, len, id];
            b.extend([0xab; 32]);
            b.extend([0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 1]);
            b
        };
        let req = head(49, 21);
        assert_eq!(parse_all(&req), Message::HashRequest(h));
        assert_eq!(Message::HashRequest(h).to_vec(), req);
        let rej = head(49, 23);
        assert_eq!(parse_all(&rej), Message::HashReject(h));
        assert_eq!(Message::HashReject(h).to_vec(), rej);
        let hashes = [0x11u8; 96];
        let mut got = head(49 + 96, 22);
        got.extend(hashes);
        let m = Message::Hashes {
            hashes_of: h,
            hashes: &hashes,
        };
        assert_eq!(parse_all(&got), m);
        assert_eq!(m.to_vec(), got);
        assert_eq!(m.encoded_len(), got.len());
        assert_eq!(
            m.to_string(),
            format!(
                "hashes root {} base 0 index 512 length 2 proof 1 (3 hashes)",
                "ab".repeat(32)
            )
        );
        assert_eq!(MessageKind::from_id(21).name(), "hash request");
        assert_eq!(MessageKind::from_id(22).type_name(), "hashes");
        assert_eq!(MessageKind::from_id(23).type_name(), "hash_reject");
        // a fixed 49-byte length: anything else is refused before the payload is read
        let mut short = req.clone();
        short[3] = 48;
        assert!(matches!(
            Message::parse(&short),
            Err(WireError::BadLength {
                id: 21,
                len: 48,
                expected: 49
            })
        ));
        let mut hshort = got.clone();
        hshort[3] = 40;
        assert!(matches!(
            Message::parse(&hshort),
            Err(WireError::TooShort {
                id: 22,
                len: 40,
                min: 49
            })
        ));
    }

    #[test]
    fn piece_header_fast_path() {
        let data = vec![0xabu8; 16384];
        let msg = Message::Piece {
            index: 7,
            begin: 0,
            data: &data,
        };
        let mut out = Vec::new();
        Message::emit_piece_header(&mut out, 7, 0, data.len());
        assert_eq!(out, [0, 0, 0x40, 0x09, 7, 0, 0, 0, 7, 0, 0, 0, 0]);
        out.extend_from_slice(&data);
        assert_eq!(out, msg.to_vec());
    }

    #[test]
    fn emit_appends() {
        let mut out = vec![0xee];
        Message::Choke.emit(&mut out);
        Message::Piece {
            index: 0,
            begin: 0,
            data: b"x",
        }
        .emit(&mut out);
        assert_eq!(
            out,
            [0xee, 0, 0, 0, 1, 0, 0, 0, 0, 10, 7, 0, 0, 0, 0, 0, 0, 0, 0, b'x']
        );
    }

    #[test]
    fn trailing_bytes_are_left_alone() {
        let bytes = [0, 0, 0, 1, 1, 0, 0, 0, 0];
        assert_eq!(Message::parse(&bytes), Ok((Message::Unchoke, 5)));
    }

    #[test]
    fn incomplete_says_how_much_more() {
        let full = Message::Have { index: 1 }.to_vec();
        for cut in 0..full.len() {
            // Before the length prefix is complete, only the prefix is known to be needed.
            let needed = if cut < 4 { 4 - cut } else { full.len() - cut };
            assert_eq!(
                Message::parse(&full[..cut]),
                Err(WireError::Incomplete { needed }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn huge_length_is_too_long_at_once() {
        // Only the 4 length bytes: rejected without waiting for (or allocating) 4 GiB.
        assert_eq!(
            Message::parse(&[0xff, 0xff, 0xff, 0xff]),
            Err(WireError::TooLong {
                len: 0xffff_ffff,
                max: MAX_MESSAGE_LEN
            })
        );
        let just_over = (MAX_MESSAGE_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(
            Message::parse(&just_over),
            Err(WireError::TooLong { .. })
        ));
        let at_max = (MAX_MESSAGE_LEN as u32).to_be_bytes();
        assert!(matches!(
            Message::parse(&at_max),
            Err(WireError::Incomplete { .. })
        ));
        // A custom limit.
        assert_eq!(
            Message::parse_with_limit(&[0, 0, 0, 100, 7], 50),
            Err(WireError::TooLong { len: 100, max: 50 })
        );
        let err = Message::parse(&[0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("message length 4294967295 is larger than the maximum {MAX_MESSAGE_LEN}")
        );
    }

    #[test]
    fn wrong_fixed_lengths() {
        // have with 4 bytes of payload missing... rejected as soon as the id is seen
        assert_eq!(
            Message::parse(&[0, 0, 0, 2, 4]),
            Err(WireError::BadLength {
                id: 4,
                len: 2,
                expected: 5
            })
        );
        // choke with a payload
        assert_eq!(
            Message::parse(&[0, 0, 0, 2, 0, 0]),
            Err(WireError::BadLength {
                id: 0,
                len: 2,
                expected: 1
            })
        );
        // request with 16 bytes
        assert!(matches!(
            Message::parse(&[0, 0, 0, 17, 6]),
            Err(WireError::BadLength {
                id: 6,
                len: 17,
                expected: 13
            })
        ));
        assert!(matches!(
            Message::parse(&[0, 0, 0, 4, 9]),
            Err(WireError::BadLength {
                id: 9,
                expected: 3,
                ..
            })
        ));
        for id in [13u8, 17] {
            assert!(matches!(
                Message::parse(&[0, 0, 0, 1, id]),
                Err(WireError::BadLength { expected: 5, .. })
            ));
        }
        for id in [14u8, 15] {
            assert!(matches!(
                Message::parse(&[0, 0, 0, 5, id]),
                Err(WireError::BadLength { expected: 1, .. })
            ));
        }
        // piece shorter than its header, extended without its id
        assert_eq!(
            Message::parse(&[0, 0, 0, 8, 7]),
            Err(WireError::TooShort {
                id: 7,
                len: 8,
                min: 9
            })
        );
        assert_eq!(
            Message::parse(&[0, 0, 0, 1, 20]),
            Err(WireError::TooShort {
                id: 20,
                len: 1,
                min: 2
            })
        );
        let err = Message::parse(&[0, 0, 0, 17, 6]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "request message (id 6) must have length 13, found 17"
        );
    }

    #[test]
    fn empty_piece_and_empty_bitfield_are_fine() {
        let m = Message::Piece {
            index: 0,
            begin: 0,
            data: &[],
        };
        assert_eq!(parse_all(&m.to_vec()), m);
        assert_eq!(parse_all(&[0, 0, 0, 1, 5]), Message::Bitfield(&[]));
    }

    #[test]
    fn display_words() {
        let data = vec![0u8; 16384];
        let cases: Vec<(Message<'_>, &str)> = vec![
            (Message::KeepAlive, "keep-alive"),
            (Message::NotInterested, "not interested"),
            (
                Message::Request(BlockRef::new(7, 16384, 16384)),
                "request piece 7 begin 16384 length 16384",
            ),
            (
                Message::Piece {
                    index: 7,
                    begin: 0,
                    data: &data,
                },
                "piece 7 begin 0 (16384 bytes)",
            ),
            (Message::Bitfield(&[0, 0]), "bitfield (2 bytes)"),
            (Message::Have { index: 3 }, "have 3"),
            (
                Message::Extended {
                    ext_id: 1,
                    payload: &data[..93],
                },
                "extended id 1 (93 bytes)",
            ),
            (
                Message::Cancel(BlockRef::new(1, 0, 16384)),
                "cancel piece 1 begin 0 length 16384",
            ),
            (
                Message::Reject(BlockRef::new(1, 0, 16384)),
                "reject request piece 1 begin 0 length 16384",
            ),
            (Message::Port(6881), "port 6881"),
            (Message::Suggest(4), "suggest piece 4"),
            (Message::AllowedFast(5), "allowed fast 5"),
            (Message::HaveAll, "have all"),
            (
                Message::Unknown {
                    id: 99,
                    payload: &[1],
                },
                "unknown id 99 (1 bytes)",
            ),
        ];
        for (m, s) in cases {
            assert_eq!(m.to_string(), s);
        }
        // Debug does not dump 16 KiB of data.
        let dbg = format!(
            "{:?}",
            Message::Piece {
                index: 7,
                begin: 0,
                data: &data
            }
        );
        assert_eq!(dbg, "Piece { index: 7, begin: 0, data: <16384 bytes> }");
    }

    #[test]
    fn kinds_and_ids() {
        for id in 0..=255u8 {
            let kind = MessageKind::from_id(id);
            assert_eq!(kind.id(), Some(id));
        }
        assert_eq!(MessageKind::KeepAlive.id(), None);
        assert_eq!(MessageKind::from_id(16).name(), "reject request");
        assert_eq!(MessageKind::from_id(14).name(), "have all");
        assert_eq!(MessageKind::from_id(17).name(), "allowed fast");
        assert_eq!(MessageKind::from_id(20).name(), "extended");
        assert_eq!(MessageKind::from_id(200), MessageKind::Unknown(200));
        assert_eq!(MessageKind::from_id(200).name(), "unknown");
        assert_eq!(
            Message::Unknown {
                id: 21,
                payload: &[]
            }
            .kind(),
            MessageKind::Unknown(21)
        );
    }

    #[test]
    fn the_table_is_consistent() {
        // Slots number ALL in order; every unknown id shares the last slot.
        for (i, k) in MessageKind::ALL.iter().enumerate() {
            assert_eq!(k.slot(), i, "{k:?}");
        }
        assert_eq!(MessageKind::Unknown(99).slot(), KIND_COUNT - 1);
        assert_eq!(MessageKind::ALL[0], MessageKind::KeepAlive);
        // Ids increase along the table; JSON types are the words with `_` (two are shorter).
        let ids: Vec<u8> = MessageKind::ALL[1..KIND_COUNT - 1]
            .iter()
            .filter_map(|k| k.id())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        for k in MessageKind::ALL {
            let snake = k.name().replace([' ', '-'], "_");
            match k {
                MessageKind::Suggest => assert_eq!(k.type_name(), "suggest"),
                MessageKind::Reject => assert_eq!(k.type_name(), "reject"),
                _ => assert_eq!(k.type_name(), snake),
            }
        }
        // Fixed lengths agree with what the encoder writes.
        assert_eq!(Message::Port(1).wire_len(), 3);
        assert!(check_len(id::PORT, 3).is_ok());
    }

    /// The wire bytes of any one message (every kind, arbitrary fields and payloads).
    pub(crate) fn any_message_bytes() -> impl Strategy<Value = Vec<u8>> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
        let block = || any::<(u32, u32, u32)>().prop_map(|(i, b, l)| BlockRef::new(i, b, l));
        let fixed = |m: Message<'static>| Just(m.to_vec());
        prop_oneof![
            fixed(Message::KeepAlive),
            fixed(Message::Choke),
            fixed(Message::Unchoke),
            fixed(Message::Interested),
            fixed(Message::NotInterested),
            any::<u32>().prop_map(|index| Message::Have { index }.to_vec()),
            bytes().prop_map(|b| Message::Bitfield(&b).to_vec()),
            block().prop_map(|b| Message::Request(b).to_vec()),
            (any::<u32>(), any::<u32>(), bytes()).prop_map(|(index, begin, data)| {
                Message::Piece {
                    index,
                    begin,
                    data: &data,
                }
                .to_vec()
            }),
            block().prop_map(|b| Message::Cancel(b).to_vec()),
            any::<u16>().prop_map(|p| Message::Port(p).to_vec()),
            any::<u32>().prop_map(|i| Message::Suggest(i).to_vec()),
            fixed(Message::HaveAll),
            fixed(Message::HaveNone),
            block().prop_map(|b| Message::Reject(b).to_vec()),
            any::<u32>().prop_map(|i| Message::AllowedFast(i).to_vec()),
            (any::<u8>(), bytes()).prop_map(|(ext_id, payload)| {
                Message::Extended {
                    ext_id,
                    payload: &payload,
                }
                .to_vec()
            }),
            (
                any::<u8>().prop_filter("unknown id", |id| matches!(
                    MessageKind::from_id(*id),
                    MessageKind::Unknown(_)
                )),
                bytes()
            )
                .prop_map(|(id, payload)| Message::Unknown {
                    id,
                    payload: &payload
                }
                .to_vec()),
        ]
    }

    proptest! {
        #[test]
        fn parse_emit_roundtrip(bytes in any_message_bytes()) {
            let (parsed, used) = Message::parse(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(parsed.encoded_len(), bytes.len());
            prop_assert_eq!(parsed.to_vec(), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match Message::parse(&bytes) {
                Ok((m, used)) => {
                    prop_assert!(used <= bytes.len());
                    prop_assert_eq!(m.encoded_len(), used);
                    prop_assert_eq!(m.to_vec(), &bytes[..used]);
                }
                Err(WireError::Incomplete { needed }) => prop_assert!(needed > 0),
                Err(_) => {}
            }
            let _ = Message::parse_with_limit(&bytes, 0);
            let _ = Message::parse_with_limit(&bytes, 10);
        }

        #[test]
        fn small_lengths_never_panic(len in 0u32..40, id in any::<u8>(), tail in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Arbitrary bytes rarely hit a plausible length prefix; this does.
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.push(id);
            bytes.extend_from_slice(&tail);
            if let Ok((m, used)) = Message::parse(&bytes) {
                prop_assert_eq!(m.to_vec(), &bytes[..used]);
            }
        }
    }
}
