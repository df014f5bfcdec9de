//! The one event model (schema v1): everything seen on the wire, shared by the recorder
//! (`--trace`, written as JSON Lines), the capture analyzer (`analyze --json`) and the reports.
//!
//! An [`Event`] has common fields (schema version, timestamp, connection, endpoints,
//! direction, the pcapng frames that carry it) and a [`EventKind`] with the decoded fields.
//! Serialized with serde as one flat JSON object per event; `docs/trace-format.md` documents
//! every field with an example of each kind.
//!
//! - [`decode`]: bytes to events, with no I/O: one [`decode::ConnectionDecoder`] for a peer
//!   connection's two directions (used by the recorder and the analyzer alike), and the HTTP
//!   and UDP tracker decoders.
//! - Here: the types, and the conversion functions (`from_*`) that turn the wire codec's types
//!   into event fields. Message `type` strings and ids come from the wire codec's message table
//!   ([`MessageKind`]).
//!
//! This module owns the event types and their decoding; it never does I/O, never writes files
//! (that is `trace`) and never formats reports (that is `analyze::report`). Nothing here panics.

pub mod decode;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::tracker::query::AnnounceQuery;
use crate::tracker::udp;
use crate::tracker::{AnnounceResponse, ScrapeResponse};
use crate::wire::{
    BlockRef, ExtendedHandshake, ExtensionMessage, Handshake, Message, MessageKind, UtMetadata,
    UtPex,
};

/// Version of the event schema; bumped when a field changes meaning or disappears (new
/// optional fields do not bump it).
pub const SCHEMA_VERSION: u32 = 1;

/// One thing seen on the wire (or, for [`EventKind::Note`] and [`EventKind::TrackerHttps`],
/// known to the client but not visible in a capture).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// Nanoseconds since the Unix epoch: the timestamp of the frame where the event completes.
    pub ts: u64,
    /// The connection: Wireshark's `tcp.stream` number for TCP (peer connections and HTTP
    /// tracker exchanges), `udp.stream` for UDP tracker datagrams. `None` when the event
    /// belongs to no conversation (e.g. an HTTPS exchange, which is not in the capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
    /// The sender of the bytes (for `conn_opened`: the client, which sent the SYN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<SocketAddr>,
    /// The receiver of the bytes (for `conn_opened`: the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<SocketAddr>,
    /// Which way the bytes went on a TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<Dir>,
    /// The transport of the connection `conn`, when it is not TCP: `utp` (BEP 29; `conn`
    /// then numbers uTP connections, apart from TCP's). Absent for TCP and for datagrams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Numbers (1-based, as Wireshark counts) of the pcapng frames that carry the event's
    /// bytes, in order; empty when it is not in the capture.
    #[serde(default)]
    pub frames: Vec<u64>,
    /// What happened, with its decoded fields (`"kind": "..."` in JSON).
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event with the current schema version, no connection, endpoints or frames.
    pub fn new(ts: u64, kind: EventKind) -> Self {
        Event {
            v: SCHEMA_VERSION,
            ts,
            conn: None,
            src: None,
            dst: None,
            dir: None,
            transport: None,
            frames: Vec::new(),
            kind,
        }
    }
}

/// Direction on a TCP connection: from the client (the side that sent the SYN) to the
/// server, or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Client to server.
    C2s,
    /// Server to client.
    S2c,
}

impl Dir {
    /// 0 for client → server, 1 for server → client (for per-direction arrays).
    pub fn index(self) -> usize {
        match self {
            Dir::C2s => 0,
            Dir::S2c => 1,
        }
    }

    /// Whether the client sends in this direction.
    pub fn from_client(self) -> bool {
        self == Dir::C2s
    }
}

/// The transport a peer connection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    /// uTP (BEP 29) over UDP.
    Utp,
}

impl Transport {
    /// `tcp` or `utp`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Utp => "utp",
        }
    }
}

/// One end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Client,
    Server,
}

/// How a TCP connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseHow {
    /// Orderly close (FIN in both directions).
    Fin,
    /// Abortive close (RST).
    Rst,
}

/// What an event is, with its decoded fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A TCP connection was established (SYN, SYN-ACK, ACK). `src` is the client.
    ConnOpened {
        /// Which end is bt-trace, when known (in bt-trace's own traces, the SYN's comment
        /// says so: "bt-trace connects" or "peer connects to bt-trace").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<Role>,
    },
    /// A TCP connection ended. `src` is the side that closed (or reset) first.
    ConnClosed {
        how: CloseHow,
        /// Why, when bt-trace knows (the text of the closing frame's comment).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The 68-byte BitTorrent handshake.
    Handshake {
        /// Stream offset of the first byte in its direction (0: the handshake comes first).
        offset: u64,
        /// Bytes on the wire (68).
        len: u64,
        #[serde(flatten)]
        hs: HandshakeFields,
    },
    /// One peer message (BEP 3, 6, 10).
    Message {
        /// Stream offset of the length prefix in its direction.
        offset: u64,
        /// Bytes on the wire, length prefix included.
        len: u64,
        msg: Msg,
    },
    /// The byte stream in `dir` cannot be decoded from `offset` on (not a BitTorrent
    /// handshake, e.g. MSE encryption; a length over the cap; a malformed message). Nothing
    /// more is decoded in that direction.
    ProtocolError { offset: u64, error: String },
    /// Bytes of the stream in `dir` that are not in the capture: `len` bytes from stream
    /// offset `offset` (packets lost or cut by a snap length, or a start before the capture).
    /// `frames`: the frames around the hole. Decoding goes on after it.
    Gap { offset: u64, len: u64 },
    /// Something the client knows about a connection that is not bytes ("dropped: sent bad
    /// piece data"). Not in the capture.
    Note { text: String },
    /// An HTTP request to a tracker (`src` is bt-trace).
    TrackerHttpRequest {
        offset: u64,
        len: u64,
        method: String,
        /// The request target, e.g. `/announce?info_hash=...`.
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// The announce query decoded (absent for other targets, e.g. a scrape).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        announce: Option<AnnounceFields>,
        /// Why the request could not be decoded, if it could not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The tracker's HTTP response.
    TrackerHttpResponse {
        offset: u64,
        len: u64,
        status: u16,
        reason: String,
        body_len: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response: Option<TrackerReply>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A BEP 15 UDP tracker datagram (request or response; see `packet`).
    TrackerUdp { len: u64, packet: UdpPacket },
    /// A mainline DHT (BEP 5) KRPC message over UDP (`conn` is the `udp.stream`).
    Dht {
        len: u64,
        packet: crate::analyze::dht::DhtPacket,
    },
    /// A Local Service Discovery (BEP 14) announce over UDP multicast.
    Lsd {
        len: u64,
        #[serde(flatten)]
        announce: crate::analyze::lsd::LsdAnnounce,
    },
    /// An HTTPS tracker exchange: encrypted, so not in the capture; only its outcome.
    TrackerHttps {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        response_len: u64,
    },
}

/// The decoded fields of a handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeFields {
    /// The 8 reserved bytes in hex.
    pub reserved: String,
    /// Names of the known reserved bits that are set ("extended", "fast", "dht", ...).
    pub extensions: Vec<String>,
    /// Set bits with no known name, in hex (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_bits: Option<String>,
    /// 40 hex digits.
    pub info_hash: String,
    /// 40 hex digits.
    pub peer_id: String,
    /// The client the peer id suggests ([`crate::peer_id::client_name`]).
    pub client: String,
}

impl HandshakeFields {
    /// The event fields of a handshake.
    pub fn from_handshake(h: &Handshake) -> Self {
        let unknown = h.reserved.unknown_bits();
        HandshakeFields {
            reserved: hex::encode(h.reserved.0),
            extensions: h.reserved.known_names().map(str::to_string).collect(),
            unknown_bits: (unknown != [0; 8]).then(|| hex::encode(unknown)),
            info_hash: hex::encode(h.info_hash),
            peer_id: hex::encode(h.peer_id),
            client: crate::peer_id::client_name(&h.peer_id),
        }
    }
}

/// A peer message's decoded fields (`"type": "..."` in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have {
        index: u32,
    },
    Bitfield {
        /// The payload in hex (bit 7 of the first byte is piece 0).
        hex: String,
        /// How many bits are set: the pieces the sender has.
        pieces: u64,
        /// Bits in the payload (8 per byte; the torrent's piece count rounded up).
        bits: u64,
    },
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// A block of data; the data itself is not inlined.
    Piece {
        index: u32,
        begin: u32,
        /// Block bytes.
        length: u32,
        /// SHA-1 of the block bytes, in hex.
        sha1: String,
    },
    Cancel {
        index: u32,
        begin: u32,
        length: u32,
    },
    Port {
        port: u16,
    },
    Suggest {
        index: u32,
    },
    HaveAll,
    HaveNone,
    Reject {
        index: u32,
        begin: u32,
        length: u32,
    },
    AllowedFast {
        index: u32,
    },
    /// BEP 10: `ext_id` 0 is the extended handshake; others are named by the receiver's `m`.
    Extended {
        ext_id: u8,
        /// The extension's name from the receiver's `m` ("ut_metadata"), when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        payload: ExtPayload,
    },
    /// BEP 52: hashes of a file's merkle tree asked for (fields of [`HashRef`], the root in hex).
    HashRequest {
        pieces_root: String,
        base_layer: u32,
        index: u32,
        length: u32,
        proof_layers: u32,
    },
    /// BEP 52: the hashes asked for and their proof, each in hex.
    Hashes {
        pieces_root: String,
        base_layer: u32,
        index: u32,
        length: u32,
        proof_layers: u32,
        hashes: Vec<String>,
    },
    /// BEP 52: a hash request the sender will not answer.
    HashReject {
        pieces_root: String,
        base_layer: u32,
        index: u32,
        length: u32,
        proof_layers: u32,
    },
    /// A message id not known here, with its payload in hex.
    Unknown {
        id: u8,
        hex: String,
    },
}

fn block(b: &BlockRef) -> (u32, u32, u32) {
    (b.index, b.begin, b.length)
}

impl Msg {
    /// Decodes a message. `receiver_ext` is the extended handshake of the side that receives
    /// it (its `m` names the extended ids), if seen.
    pub fn from_message(m: &Message<'_>, receiver_ext: Option<&ExtendedHandshake>) -> Msg {
        match *m {
            Message::KeepAlive => Msg::KeepAlive,
            Message::Choke => Msg::Choke,
            Message::Unchoke => Msg::Unchoke,
            Message::Interested => Msg::Interested,
            Message::NotInterested => Msg::NotInterested,
            Message::Have { index } => Msg::Have { index },
            Message::Bitfield(b) => Msg::Bitfield {
                hex: hex::encode(b),
                pieces: b.iter().map(|x| u64::from(x.count_ones())).sum(),
                bits: b.len() as u64 * 8,
            },
            Message::Request(b) => {
                let (index, begin, length) = block(&b);
                Msg::Request {
                    index,
                    begin,
                    length,
                }
            }
            Message::Piece { index, begin, data } => Msg::piece(
                BlockRef::new(index, begin, data.len() as u32),
                Some(&Sha1::digest(data).into()),
            ),
            Message::Cancel(b) => {
                let (index, begin, length) = block(&b);
                Msg::Cancel {
                    index,
                    begin,
                    length,
                }
            }
            Message::Port(port) => Msg::Port { port },
            Message::Suggest(index) => Msg::Suggest { index },
            Message::HaveAll => Msg::HaveAll,
            Message::HaveNone => Msg::HaveNone,
            Message::Reject(b) => {
                let (index, begin, length) = block(&b);
                Msg::Reject {
                    index,
                    begin,
                    length,
                }
            }
            Message::AllowedFast(index) => Msg::AllowedFast { index },
            Message::Extended { ext_id, payload } => {
                let name = receiver_ext
                    .and_then(|h| h.name_of(ext_id))
                    .map(str::to_string);
                let payload = match ExtensionMessage::parse(ext_id, payload, receiver_ext) {
                    Ok(e) => ExtPayload::from_extension(&e),
                    Err(e) => ExtPayload::Error {
                        error: e.to_string(),
                        hex: hex::encode(payload),
                    },
                };
                Msg::Extended {
                    ext_id,
                    name,
                    payload,
                }
            }
            Message::HashRequest(h) => Msg::HashRequest {
                pieces_root: hex::encode(h.pieces_root),
                base_layer: h.base_layer,
                index: h.index,
                length: h.length,
                proof_layers: h.proof_layers,
            },
            Message::HashReject(h) => Msg::HashReject {
                pieces_root: hex::encode(h.pieces_root),
                base_layer: h.base_layer,
                index: h.index,
                length: h.length,
                proof_layers: h.proof_layers,
            },
            Message::Hashes {
                hashes_of: h,
                hashes,
            } => Msg::Hashes {
                pieces_root: hex::encode(h.pieces_root),
                base_layer: h.base_layer,
                index: h.index,
                length: h.length,
                proof_layers: h.proof_layers,
                hashes: hashes.chunks(32).map(hex::encode).collect(),
            },
            Message::Unknown { id, payload } => Msg::Unknown {
                id,
                hex: hex::encode(payload),
            },
        }
    }

    /// The kind of message, whose row in the wire codec's message table gives its id, name
    /// and `type` string.
    pub fn kind(&self) -> MessageKind {
        match self {
            Msg::KeepAlive => MessageKind::KeepAlive,
            Msg::Choke => MessageKind::Choke,
            Msg::Unchoke => MessageKind::Unchoke,
            Msg::Interested => MessageKind::Interested,
            Msg::NotInterested => MessageKind::NotInterested,
            Msg::Have { .. } => MessageKind::Have,
            Msg::Bitfield { .. } => MessageKind::Bitfield,
            Msg::Request { .. } => MessageKind::Request,
            Msg::Piece { .. } => MessageKind::Piece,
            Msg::Cancel { .. } => MessageKind::Cancel,
            Msg::Port { .. } => MessageKind::Port,
            Msg::Suggest { .. } => MessageKind::Suggest,
            Msg::HaveAll => MessageKind::HaveAll,
            Msg::HaveNone => MessageKind::HaveNone,
            Msg::Reject { .. } => MessageKind::Reject,
            Msg::AllowedFast { .. } => MessageKind::AllowedFast,
            Msg::Extended { .. } => MessageKind::Extended,
            Msg::HashRequest { .. } => MessageKind::HashRequest,
            Msg::Hashes { .. } => MessageKind::Hashes,
            Msg::HashReject { .. } => MessageKind::HashReject,
            Msg::Unknown { id, .. } => MessageKind::Unknown(*id),
        }
    }

    /// The BEP 3/6/10 message id (`None` for keep-alive): what tshark shows as
    /// `bittorrent.msg.type`.
    pub fn id(&self) -> Option<u8> {
        self.kind().id()
    }

    /// The event fields of a piece message: its block and the SHA-1 of its data (`None`:
    /// the data is not all in the capture, `sha1` is then empty).
    pub fn piece(block: BlockRef, sha1: Option<&[u8; 20]>) -> Msg {
        Msg::Piece {
            index: block.index,
            begin: block.begin,
            length: block.length,
            sha1: sha1.map(hex::encode).unwrap_or_default(),
        }
    }
}

/// An extended message's payload (`"ext": "..."` in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ext", rename_all = "snake_case")]
pub enum ExtPayload {
    /// BEP 10 extended handshake.
    Handshake {
        /// Extension name → id the sender wants to receive it under.
        m: BTreeMap<String, u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        v: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reqq: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata_size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        yourip: Option<IpAddr>,
        /// Other keys, by name (escaped when not UTF-8).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        other: Vec<String>,
    },
    /// BEP 9 metadata exchange.
    UtMetadata {
        /// 0 request, 1 data, 2 reject (others kept).
        msg_type: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        piece: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_size: Option<u64>,
        /// Metadata bytes after the dictionary (data messages).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_len: Option<u64>,
    },
    /// BEP 11 peer exchange (IPv4 and IPv6 together).
    UtPex {
        added: Vec<PexPeer>,
        dropped: Vec<SocketAddr>,
    },
    /// An extension not decoded here (or an id the receiver did not announce).
    Unknown { hex: String },
    /// A payload that does not decode as its extension says.
    Error { error: String, hex: String },
}

/// A peer in a `ut_pex` `added` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PexPeer {
    pub addr: SocketAddr,
    /// The BEP 11 flags byte (0x01 encryption, 0x02 seed, 0x04 uTP, 0x08 holepunch, 0x10
    /// reachable).
    pub flags: u8,
}

impl ExtPayload {
    fn from_extension(e: &ExtensionMessage<'_>) -> Self {
        match e {
            ExtensionMessage::Handshake(h) => ExtPayload::Handshake {
                m: h.m.clone(),
                v: h.v.clone(),
                p: h.p,
                reqq: h.reqq,
                metadata_size: h.metadata_size,
                yourip: h.yourip,
                other: h
                    .other
                    .keys()
                    .map(|k| k.escape_ascii().to_string())
                    .collect(),
            },
            ExtensionMessage::Metadata(m) => match *m {
                UtMetadata::Request { piece } => meta(0, Some(piece.into()), None, None),
                UtMetadata::Reject { piece } => meta(2, Some(piece.into()), None, None),
                UtMetadata::Data {
                    piece,
                    total_size,
                    data,
                } => meta(
                    1,
                    Some(piece.into()),
                    Some(total_size),
                    Some(data.len() as u64),
                ),
                UtMetadata::Unknown {
                    msg_type,
                    piece,
                    trailing,
                } => meta(
                    msg_type,
                    piece,
                    None,
                    (!trailing.is_empty()).then_some(trailing.len() as u64),
                ),
            },
            ExtensionMessage::Pex(p) => pex(p),
            ExtensionMessage::Other { payload, .. } => ExtPayload::Unknown {
                hex: hex::encode(payload),
            },
        }
    }
}

fn meta(
    msg_type: i64,
    piece: Option<i64>,
    total_size: Option<u64>,
    data_len: Option<u64>,
) -> ExtPayload {
    ExtPayload::UtMetadata {
        msg_type,
        piece,
        total_size,
        data_len,
    }
}

fn pex(p: &UtPex) -> ExtPayload {
    ExtPayload::UtPex {
        added: p
            .all_added()
            .map(|(addr, f)| PexPeer { addr, flags: f.0 })
            .collect(),
        dropped: p.all_dropped().collect(),
    }
}

/// An HTTP announce query, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AnnounceFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_hash: Option<String>,
    /// In hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// The client the peer id suggests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloaded: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact: Option<bool>,
    /// `started`, `completed`, `stopped`, or absent for a regular announce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numwant: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Other parameters, values as text (escaped when not UTF-8).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, String>,
}

impl AnnounceFields {
    /// The event fields of a parsed announce query.
    pub fn from_query(q: &AnnounceQuery) -> Self {
        let client = q.peer_id.as_ref().and_then(|p| {
            <[u8; 20]>::try_from(p.as_slice())
                .ok()
                .map(|id| crate::peer_id::client_name(&id))
        });
        AnnounceFields {
            info_hash: q.info_hash.map(hex::encode),
            peer_id: q.peer_id.as_ref().map(hex::encode),
            client,
            port: q.port,
            uploaded: q.uploaded,
            downloaded: q.downloaded,
            left: q.left,
            compact: q.compact,
            event: q.event.clone(),
            numwant: q.numwant,
            key: q.key.clone(),
            other: q
                .other
                .iter()
                .map(|(k, v)| (k.clone(), v.escape_ascii().to_string()))
                .collect(),
        }
    }
}

/// A tracker's decoded answer (HTTP body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrackerReply {
    Announce {
        interval: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_interval: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        complete: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incomplete: Option<u32>,
        peers: Vec<SocketAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
        /// In hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracker_id: Option<String>,
    },
    /// The tracker refused: its `failure reason`.
    Failure {
        reason: String,
    },
    Scrape {
        files: Vec<ScrapeEntry>,
    },
}

impl TrackerReply {
    /// The event fields of an announce response.
    pub fn from_announce(r: &AnnounceResponse) -> Self {
        TrackerReply::Announce {
            interval: r.interval,
            min_interval: r.min_interval,
            complete: r.complete,
            incomplete: r.incomplete,
            peers: r.peers.clone(),
            warning: r.warning.clone(),
            tracker_id: r.tracker_id.as_ref().map(hex::encode),
        }
    }
}

/// Swarm counts of one torrent in a scrape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrapeEntry {
    /// In hex (absent in UDP scrapes, whose answers are in request order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_hash: Option<String>,
    pub complete: u32,
    pub incomplete: u32,
    pub downloaded: u32,
}

impl ScrapeEntry {
    fn new(info_hash: Option<&[u8; 20]>, s: &ScrapeResponse) -> Self {
        ScrapeEntry {
            info_hash: info_hash.map(hex::encode),
            complete: s.complete,
            incomplete: s.incomplete,
            downloaded: s.downloaded,
        }
    }
}

/// A BEP 15 datagram, decoded (`"type": "..."` in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UdpPacket {
    ConnectRequest {
        transaction_id: u32,
    },
    ConnectResponse {
        transaction_id: u32,
        connection_id: u64,
    },
    AnnounceRequest {
        connection_id: u64,
        transaction_id: u32,
        info_hash: String,
        peer_id: String,
        client: String,
        downloaded: u64,
        left: u64,
        uploaded: u64,
        /// `none`, `completed`, `started`, `stopped` or the number.
        event: String,
        ip: String,
        key: u32,
        num_want: i32,
        port: u16,
    },
    AnnounceResponse {
        transaction_id: u32,
        interval: u32,
        leechers: u32,
        seeders: u32,
        peers: Vec<SocketAddr>,
    },
    ScrapeRequest {
        connection_id: u64,
        transaction_id: u32,
        info_hashes: Vec<String>,
    },
    ScrapeResponse {
        transaction_id: u32,
        files: Vec<ScrapeEntry>,
    },
    /// The tracker's error message.
    Error {
        transaction_id: u32,
        message: String,
    },
    /// An action number not known here.
    Unknown {
        action: u32,
        transaction_id: u32,
        hex: String,
    },
    /// Not a valid BEP 15 packet.
    Invalid {
        error: String,
        hex: String,
    },
}

fn udp_event_name(e: crate::tracker::Event) -> String {
    use crate::tracker::Event as E;
    match e {
        E::None => "none".into(),
        E::Completed => "completed".into(),
        E::Started => "started".into(),
        E::Stopped => "stopped".into(),
        E::Unknown(n) => n.to_string(),
    }
}

impl UdpPacket {
    /// Decodes a datagram sent to a tracker (`to_tracker`) or by one. `ipv6` tells how wide
    /// the peers of an announce response are.
    pub fn decode(bytes: &[u8], to_tracker: bool, ipv6: bool) -> Self {
        let invalid = |e: udp::UdpError| UdpPacket::Invalid {
            error: e.to_string(),
            hex: hex::encode(bytes),
        };
        if to_tracker {
            match udp::parse_request(bytes) {
                Ok((r, _)) => Self::from_request(&r),
                Err(e) => invalid(e),
            }
        } else {
            match udp::parse_response(bytes, ipv6) {
                Ok((r, _)) => Self::from_response(&r),
                Err(e) => invalid(e),
            }
        }
    }

    fn from_request(r: &udp::Request) -> Self {
        match r {
            udp::Request::Connect { transaction_id } => UdpPacket::ConnectRequest {
                transaction_id: *transaction_id,
            },
            udp::Request::Announce(a) => UdpPacket::AnnounceRequest {
                connection_id: a.connection_id,
                transaction_id: a.transaction_id,
                info_hash: hex::encode(a.info_hash),
                peer_id: hex::encode(a.peer_id),
                client: crate::peer_id::client_name(&a.peer_id),
                downloaded: a.downloaded,
                left: a.left,
                uploaded: a.uploaded,
                event: udp_event_name(a.event),
                ip: a.ip.to_string(),
                key: a.key,
                num_want: a.num_want,
                port: a.port,
            },
            udp::Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => UdpPacket::ScrapeRequest {
                connection_id: *connection_id,
                transaction_id: *transaction_id,
                info_hashes: info_hashes.iter().map(hex::encode).collect(),
            },
            udp::Request::Unknown {
                action,
                transaction_id,
                payload,
                ..
            } => UdpPacket::Unknown {
                action: *action,
                transaction_id: *transaction_id,
                hex: hex::encode(payload),
            },
        }
    }

    fn from_response(r: &udp::Response) -> Self {
        match r {
            udp::Response::Connect {
                transaction_id,
                connection_id,
            } => UdpPacket::ConnectResponse {
                transaction_id: *transaction_id,
                connection_id: *connection_id,
            },
            udp::Response::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            } => UdpPacket::AnnounceResponse {
                transaction_id: *transaction_id,
                interval: *interval,
                leechers: *leechers,
                seeders: *seeders,
                peers: peers.clone(),
            },
            udp::Response::Scrape {
                transaction_id,
                entries,
            } => UdpPacket::ScrapeResponse {
                transaction_id: *transaction_id,
                files: entries.iter().map(|s| ScrapeEntry::new(None, s)).collect(),
            },
            udp::Response::Error {
                transaction_id,
                message,
            } => UdpPacket::Error {
                transaction_id: *transaction_id,
                message: String::from_utf8_lossy(message).into_owned(),
            },
            udp::Response::Unknown {
                action,
                transaction_id,
                payload,
            } => UdpPacket::Unknown {
                action: *action,
                transaction_id: *transaction_id,
                hex: hex::encode(payload),
            },
        }
    }
}

/// Scrape entries of an HTTP scrape response, in info-hash order.
pub(crate) fn scrape_entries(files: &[([u8; 20], ScrapeResponse)]) -> Vec<ScrapeEntry> {
    files
        .iter()
        .map(|(h, s)| ScrapeEntry::new(Some(h), s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Reserved;

    fn roundtrip(e: &Event) -> String {
        let line = serde_json::to_string(e).unwrap();
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(&back, e, "{line}");
        line
    }

    #[test]
    fn message_event_json_is_flat_and_round_trips() {
        let mut e = Event::new(
            1_700_000_000_000_000_001,
            EventKind::Message {
                offset: 68,
                len: 17,
                msg: Msg::from_message(&Message::Request(BlockRef::new(7, 16384, 16384)), None),
            },
        );
        e.conn = Some(3);
        e.src = Some("127.0.0.1:50000".parse().unwrap());
        e.dst = Some("127.0.0.1:6881".parse().unwrap());
        e.dir = Some(Dir::C2s);
        e.frames = vec![12];
        let line = roundtrip(&e);
        assert_eq!(
            line,
            r#"{"v":1,"ts":1700000000000000001,"conn":3,"src":"127.0.0.1:50000","dst":"127.0.0.1:6881","dir":"c2s","frames":[12],"kind":"message","offset":68,"len":17,"msg":{"type":"request","index":7,"begin":16384,"length":16384}}"#
        );
    }

    #[test]
    fn piece_bitfield_and_handshake_fields() {
        let data = b"abc";
        let m = Msg::from_message(
            &Message::Piece {
                index: 1,
                begin: 0,
                data,
            },
            None,
        );
        assert_eq!(
            m,
            Msg::Piece {
                index: 1,
                begin: 0,
                length: 3,
                sha1: "a9993e364706816aba3e25717850c26c9cd0d89d".into()
            }
        );
        let b = Msg::from_message(&Message::Bitfield(&[0xff, 0x80]), None);
        assert_eq!(
            b,
            Msg::Bitfield {
                hex: "ff80".into(),
                pieces: 9,
                bits: 16
            }
        );
        let h = Handshake::new(
            Reserved([0, 0, 0, 0, 0, 0x10, 0, 0x05]),
            [0xab; 20],
            *b"-TR3000-bbbbbbbbbbbb",
        );
        let f = HandshakeFields::from_handshake(&h);
        assert_eq!(f.extensions, ["extended", "dht", "fast"]);
        assert_eq!(f.client, "Transmission 3.00");
        assert_eq!(f.unknown_bits, None);
        roundtrip(&Event::new(
            5,
            EventKind::Handshake {
                offset: 0,
                len: 68,
                hs: f,
            },
        ));
    }

    #[test]
    fn extended_payloads_use_the_receivers_table() {
        let receiver = ExtendedHandshake::new()
            .with_extension("ut_metadata", 3)
            .with_extension("ut_pex", 1);
        let req = b"d8:msg_typei0e5:piecei0ee";
        let m = Msg::from_message(
            &Message::Extended {
                ext_id: 3,
                payload: req,
            },
            Some(&receiver),
        );
        assert_eq!(
            m,
            Msg::Extended {
                ext_id: 3,
                name: Some("ut_metadata".into()),
                payload: ExtPayload::UtMetadata {
                    msg_type: 0,
                    piece: Some(0),
                    total_size: None,
                    data_len: None
                }
            }
        );
        // Unknown id: kept as hex.
        let m = Msg::from_message(
            &Message::Extended {
                ext_id: 9,
                payload: b"xy",
            },
            Some(&receiver),
        );
        assert!(matches!(
            m,
            Msg::Extended {
                name: None,
                payload: ExtPayload::Unknown { .. },
                ..
            }
        ));
        // A broken extended handshake is an error payload, not a panic.
        let m = Msg::from_message(
            &Message::Extended {
                ext_id: 0,
                payload: b"d1:m",
            },
            None,
        );
        assert!(matches!(
            m,
            Msg::Extended {
                payload: ExtPayload::Error { .. },
                ..
            }
        ));
        let hs = Msg::from_message(
            &Message::Extended {
                ext_id: 0,
                payload: b"d1:md11:ut_metadatai1ee1:pi6881e1:v5:x 1.0e",
            },
            None,
        );
        let line = serde_json::to_string(&hs).unwrap();
        assert_eq!(
            line,
            r#"{"type":"extended","ext_id":0,"payload":{"ext":"handshake","m":{"ut_metadata":1},"v":"x 1.0","p":6881}}"#
        );
    }

    #[test]
    fn udp_packets_decode_both_ways() {
        let mut connect = 0x41727101980u64.to_be_bytes().to_vec();
        connect.extend_from_slice(&[0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            UdpPacket::decode(&connect, true, false),
            UdpPacket::ConnectRequest {
                transaction_id: 0xdead_beef
            }
        );
        assert!(matches!(
            UdpPacket::decode(&[1, 2], false, false),
            UdpPacket::Invalid { .. }
        ));
        let e = Event::new(
            9,
            EventKind::TrackerUdp {
                len: 16,
                packet: UdpPacket::decode(&connect, true, false),
            },
        );
        roundtrip(&e);
    }
    /// Every row of the message table has a `Msg` whose JSON `type` is the table's.
    #[test]
    fn type_strings_come_from_the_message_table() {
        let d = [0u8; 4];
        let b = BlockRef::new(1, 2, 3);
        let h = crate::wire::message::HashRef {
            pieces_root: [9; 32],
            base_layer: 0,
            index: 0,
            length: 2,
            proof_layers: 0,
        };
        let samples = [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have { index: 1 },
            Message::Bitfield(&d),
            Message::Request(b),
            Message::Piece {
                index: 1,
                begin: 0,
                data: &d,
            },
            Message::Cancel(b),
            Message::Port(1),
            Message::Suggest(1),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(b),
            Message::AllowedFast(1),
            Message::Extended {
                ext_id: 0,
                payload: b"de",
            },
            Message::HashRequest(h),
            Message::Hashes {
                hashes_of: h,
                hashes: &[7; 64],
            },
            Message::HashReject(h),
            Message::Unknown {
                id: 99,
                payload: &d,
            },
        ];
        assert_eq!(samples.len(), MessageKind::ALL.len());
        for (m, kind) in samples.iter().zip(MessageKind::ALL) {
            let msg = Msg::from_message(m, None);
            assert_eq!(msg.kind().slot(), kind.slot());
            assert_eq!(msg.id(), m.kind().id());
            let json = serde_json::to_value(&msg).unwrap();
            assert_eq!(json["type"], kind.type_name(), "{msg:?}");
            let back: Msg = serde_json::from_value(json).unwrap();
            assert_eq!(back, msg);
        }
    }
}
