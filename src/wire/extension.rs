//! Payloads of extended messages (message id 20): BEP 10 extended handshake, BEP 9 `ut_metadata`,
//! BEP 11 `ut_pex`.
//!
//! An extended message is `<len><20><ext_id><payload>` ([`Message::Extended`]). `ext_id` 0 is
//! the extended handshake, a bencoded dictionary whose `m` entry maps extension names to the ids
//! the *sender* wants to receive them under. So when A sends `ut_metadata` to B, A uses the id
//! from B's `m`, and B reads it with its own table. [`ExtensionMessage::parse`] does that lookup
//! given the receiver's handshake.
//!
//! | payload | shape |
//! |---|---|
//! | handshake | `d1:md11:ut_metadatai1e6:ut_pexi2ee1:pi6881e1:v10:bt-trace 013:metadata_sizei31235ee` |
//! | ut_metadata request | `d8:msg_typei0e5:piecei0ee` |
//! | ut_metadata data | `d8:msg_typei1e5:piecei0e10:total_sizei31235ee` followed by up to 16 KiB of raw data |
//! | ut_metadata reject | `d8:msg_typei2e5:piecei0ee` |
//! | ut_pex | `d5:added6:<compact v4>7:added.f1:<flags>7:dropped0:e` (and `added6`, `added6.f`, `dropped6`) |
//!
//! Parsing is lenient where real clients differ and strict where the data would be wrong: a
//! known handshake key with an unexpected type is kept in `other` rather than refused, and
//! trailing bytes after a handshake or pex dictionary are ignored; a compact peer list whose
//! length is not a multiple of 6 (or 18) is an error.
//!
//! No-panic contract: every `parse` here accepts any bytes and never panics; allocations are
//! bounded by the payload length (which the message framing caps at `MAX_MESSAGE_LEN`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::bencode::{self, Value};

use super::compact;
use super::message::{Message, MAX_MESSAGE_LEN};
use super::WireError;

/// Extended id of the extended handshake.
pub const EXTENDED_HANDSHAKE_ID: u8 = 0;
/// Extension name of BEP 9 metadata exchange.
pub const UT_METADATA: &str = "ut_metadata";
/// Extension name of BEP 11 peer exchange.
pub const UT_PEX: &str = "ut_pex";
/// Size of a metadata piece (BEP 9); only the last piece may be shorter.
pub const METADATA_PIECE_LEN: usize = 16 * 1024;

fn bad(what: &'static str, detail: impl Into<String>) -> WireError {
    WireError::BadExtension {
        what,
        detail: detail.into(),
    }
}

/// A short name of a bencode value's type, for error messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "an integer",
        Value::Bytes(_) => "a byte string",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dictionary",
    }
}

/// Decodes the bencoded dictionary at the start of `payload`; returns it and the bytes used.
fn leading_dict(
    what: &'static str,
    payload: &[u8],
) -> Result<(BTreeMap<Vec<u8>, Value>, usize), WireError> {
    let (v, used) = bencode::decode_prefix(payload).map_err(|e| bad(what, e.to_string()))?;
    match v {
        Value::Dict(d) => Ok((d, used)),
        other => Err(bad(
            what,
            format!("expected a dictionary, found {}", type_name(&other)),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// BEP 10 extended handshake

/// The BEP 10 extended handshake (extended id 0).
///
/// Known keys with the expected type become fields; every other key, and a known key with an
/// unexpected type or range, is kept in `other` and emitted back unchanged. Entries of `m` whose
/// name is not UTF-8 or whose id is not in `0..=255` are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtendedHandshake {
    /// Extension name → the id the sender wants to receive it under; 0 means "disabled".
    pub m: BTreeMap<String, u8>,
    /// Client name and version, e.g. "libtorrent 2.0.8".
    pub v: Option<String>,
    /// The sender's listening TCP port.
    pub p: Option<u16>,
    /// How many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// Size of the info dictionary in bytes (BEP 9), when the sender has it.
    pub metadata_size: Option<u64>,
    /// The receiver's IP address as the sender sees it.
    pub yourip: Option<IpAddr>,
    /// All other keys, raw.
    pub other: BTreeMap<Vec<u8>, Value>,
}

impl ExtendedHandshake {
    const WHAT: &'static str = "extended handshake";

    /// An empty handshake (no extensions).
    pub fn new() -> Self {
        Self::default()
    }

    /// With extension `name` announced under `id`.
    pub fn with_extension(mut self, name: &str, id: u8) -> Self {
        self.m.insert(name.to_string(), id);
        self
    }

    /// The id the sender announced for `name`, unless absent or 0 (disabled).
    pub fn extension_id(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    /// The extension name the sender announced under `id` (never for 0).
    pub fn name_of(&self, id: u8) -> Option<&str> {
        if id == EXTENDED_HANDSHAKE_ID {
            return None;
        }
        self.m
            .iter()
            .find(|(_, &v)| v == id)
            .map(|(k, _)| k.as_str())
    }

    /// Parses the payload of an extended message with id 0 (the bencoded dictionary; bytes
    /// after it are ignored).
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        let (dict, _) = leading_dict(Self::WHAT, payload)?;
        let mut hs = ExtendedHandshake::default();
        for (key, value) in dict {
            let kept = match key.as_slice() {
                b"m" => match &value {
                    Value::Dict(m) => {
                        hs.m = m
                            .iter()
                            .filter_map(|(name, id)| {
                                let name = std::str::from_utf8(name).ok()?;
                                let id = u8::try_from(id.as_int()?).ok()?;
                                Some((name.to_string(), id))
                            })
                            .collect();
                        true
                    }
                    _ => false,
                },
                b"v" => set(&mut hs.v, value.as_str().map(str::to_string)),
                b"p" => set(&mut hs.p, value.as_int().and_then(|n| n.try_into().ok())),
                b"reqq" => set(&mut hs.reqq, value.as_int().and_then(|n| n.try_into().ok())),
                b"metadata_size" => set(
                    &mut hs.metadata_size,
                    value.as_int().and_then(|n| n.try_into().ok()),
                ),
                b"yourip" => set(&mut hs.yourip, value.as_bytes().and_then(ip_from_bytes)),
                _ => false,
            };
            if !kept {
                hs.other.insert(key, value);
            }
        }
        Ok(hs)
    }

    /// The bencoded payload (without the message header).
    pub fn emit(&self) -> Vec<u8> {
        let mut dict = self.other.clone();
        let m = self
            .m
            .iter()
            .map(|(k, &v)| (k.as_bytes().to_vec(), Value::Int(v.into())))
            .collect();
        dict.insert(b"m".to_vec(), Value::Dict(m));
        if let Some(v) = &self.v {
            dict.insert(b"v".to_vec(), Value::bytes(v));
        }
        if let Some(p) = self.p {
            dict.insert(b"p".to_vec(), Value::Int(p.into()));
        }
        if let Some(n) = self.reqq {
            dict.insert(b"reqq".to_vec(), Value::Int(n.into()));
        }
        if let Some(n) = self.metadata_size {
            // Sizes above i64::MAX do not exist; saturate rather than wrap.
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            dict.insert(b"metadata_size".to_vec(), Value::Int(n));
        }
        if let Some(ip) = self.yourip {
            let b = match ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            dict.insert(b"yourip".to_vec(), Value::Bytes(b));
        }
        bencode::encode(&Value::Dict(dict))
    }

    /// Appends the whole framed message (`<len><20><0><dict>`) to `out`.
    pub fn emit_message(&self, out: &mut Vec<u8>) {
        let payload = self.emit();
        Message::Extended {
            ext_id: EXTENDED_HANDSHAKE_ID,
            payload: &payload,
        }
        .emit(out)
    }
}

/// Stores `parsed` in `field` if it is `Some`; says whether it did.
fn set<T>(field: &mut Option<T>, parsed: Option<T>) -> bool {
    let ok = parsed.is_some();
    if ok {
        *field = parsed;
    }
    ok
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        Some(IpAddr::V4(Ipv4Addr::from(a)))
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        Some(IpAddr::V6(Ipv6Addr::from(a)))
    } else {
        None
    }
}

impl fmt::Display for ExtendedHandshake {
    /// E.g. `extended handshake m {ut_metadata: 1, ut_pex: 2} v "libtorrent 2.0.8" p 6881
    /// metadata_size 31235`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("extended handshake m {")?;
        for (i, (name, id)) in self.m.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}: {id}")?;
        }
        f.write_str("}")?;
        if let Some(v) = &self.v {
            write!(f, " v {v:?}")?;
        }
        if let Some(p) = self.p {
            write!(f, " p {p}")?;
        }
        if let Some(n) = self.reqq {
            write!(f, " reqq {n}")?;
        }
        if let Some(n) = self.metadata_size {
            write!(f, " metadata_size {n}")?;
        }
        if let Some(ip) = self.yourip {
            write!(f, " yourip {ip}")?;
        }
        for key in self.other.keys() {
            write!(f, " +{}", key.escape_ascii())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// BEP 9 ut_metadata

/// A BEP 9 `ut_metadata` message. `Data` borrows the metadata bytes from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtMetadata<'a> {
    /// `msg_type` 0: please send metadata piece `piece`.
    Request { piece: u32 },
    /// `msg_type` 1: metadata piece `piece` of an info dictionary of `total_size` bytes.
    Data {
        piece: u32,
        total_size: u64,
        data: &'a [u8],
    },
    /// `msg_type` 2: the sender will not send piece `piece`.
    Reject { piece: u32 },
    /// Another `msg_type`, kept with its piece (if any) and any bytes after the dictionary.
    Unknown {
        msg_type: i64,
        piece: Option<i64>,
        trailing: &'a [u8],
    },
}

impl<'a> UtMetadata<'a> {
    const WHAT: &'static str = "ut_metadata";

    /// Parses a `ut_metadata` payload: a dictionary, then (for data) the raw piece bytes.
    pub fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let (dict, used) = leading_dict(Self::WHAT, payload)?;
        let trailing = payload.get(used..).unwrap_or_default();
        let int = |key: &str| -> Result<Option<i64>, WireError> {
            match dict.get(key.as_bytes()) {
                None => Ok(None),
                Some(Value::Int(n)) => Ok(Some(*n)),
                Some(v) => Err(bad(
                    Self::WHAT,
                    format!("{key} must be an integer, found {}", type_name(v)),
                )),
            }
        };
        let Some(msg_type) = int("msg_type")? else {
            return Err(bad(Self::WHAT, "missing msg_type"));
        };
        let piece_opt = int("piece")?;
        if !(0..=2).contains(&msg_type) {
            return Ok(UtMetadata::Unknown {
                msg_type,
                piece: piece_opt,
                trailing,
            });
        }
        let Some(piece) = piece_opt else {
            return Err(bad(
                Self::WHAT,
                format!("msg_type {msg_type} without piece"),
            ));
        };
        let piece = u32::try_from(piece)
            .map_err(|_| bad(Self::WHAT, format!("piece {piece} out of range")))?;
        Ok(match msg_type {
            0 => UtMetadata::Request { piece },
            2 => UtMetadata::Reject { piece },
            _ => {
                let Some(total) = int("total_size")? else {
                    return Err(bad(Self::WHAT, "data message without total_size"));
                };
                let total_size = u64::try_from(total)
                    .map_err(|_| bad(Self::WHAT, format!("total_size {total} is negative")))?;
                UtMetadata::Data {
                    piece,
                    total_size,
                    data: trailing,
                }
            }
        })
    }

    /// Appends the payload (dictionary, then data for `Data`) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let (msg_type, piece, total_size, tail): (i64, Option<i64>, Option<u64>, &[u8]) =
            match *self {
                UtMetadata::Request { piece } => (0, Some(piece.into()), None, &[]),
                UtMetadata::Data {
                    piece,
                    total_size,
                    data,
                } => (1, Some(piece.into()), Some(total_size), data),
                UtMetadata::Reject { piece } => (2, Some(piece.into()), None, &[]),
                UtMetadata::Unknown {
                    msg_type,
                    piece,
                    trailing,
                } => (msg_type, piece, None, trailing),
            };
        let mut dict = BTreeMap::new();
        dict.insert(b"msg_type".to_vec(), Value::Int(msg_type));
        if let Some(p) = piece {
            dict.insert(b"piece".to_vec(), Value::Int(p));
        }
        if let Some(t) = total_size {
            let t = i64::try_from(t).unwrap_or(i64::MAX);
            dict.insert(b"total_size".to_vec(), Value::Int(t));
        }
        Value::Dict(dict).encode_into(out);
        out.extend_from_slice(tail);
    }

    /// The payload in a new `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }

    /// Appends the whole framed message, sent under `ext_id` (the receiver's id for
    /// `ut_metadata`).
    pub fn emit_message(&self, ext_id: u8, out: &mut Vec<u8>) {
        let payload = self.to_vec();
        Message::Extended {
            ext_id,
            payload: &payload,
        }
        .emit(out)
    }
}

/// How many 16 KiB pieces an info dictionary of `total_size` bytes has (BEP 9).
pub fn metadata_piece_count(total_size: u64) -> u64 {
    total_size.div_ceil(METADATA_PIECE_LEN as u64)
}

impl fmt::Display for UtMetadata<'_> {
    /// E.g. `ut_metadata request piece 0`, `ut_metadata data piece 1 total_size 31235 (14851 bytes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UtMetadata::Request { piece } => write!(f, "ut_metadata request piece {piece}"),
            UtMetadata::Data {
                piece,
                total_size,
                data,
            } => write!(
                f,
                "ut_metadata data piece {piece} total_size {total_size} ({} bytes)",
                data.len()
            ),
            UtMetadata::Reject { piece } => write!(f, "ut_metadata reject piece {piece}"),
            UtMetadata::Unknown {
                msg_type, trailing, ..
            } => write!(
                f,
                "ut_metadata msg_type {msg_type} ({} bytes after the dictionary)",
                trailing.len()
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// BEP 11 ut_pex

/// Per-peer flags of `added.f` / `added6.f` (BEP 11).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// Prefers encrypted connections.
    pub const ENCRYPTION: u8 = 0x01;
    /// Is a seed / upload only.
    pub const SEED: u8 = 0x02;
    /// Supports uTP.
    pub const UTP: u8 = 0x04;
    /// Supports the ut_holepunch extension.
    pub const HOLEPUNCH: u8 = 0x08;
    /// Reachable: the sender connected to it (outgoing connection).
    pub const REACHABLE: u8 = 0x10;

    const NAMES: [(u8, &'static str); 5] = [
        (Self::ENCRYPTION, "encryption"),
        (Self::SEED, "seed"),
        (Self::UTP, "utp"),
        (Self::HOLEPUNCH, "holepunch"),
        (Self::REACHABLE, "reachable"),
    ];

    /// True if the peer is a seed.
    pub fn seed(self) -> bool {
        self.0 & Self::SEED != 0
    }
}

impl fmt::Debug for PexFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PexFlags(0x{:02x}: {self})", self.0)
    }
}

impl fmt::Display for PexFlags {
    /// E.g. `seed, reachable`, `none`, or `utp, 0x80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut rest = self.0;
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                parts.push(name.to_string());
                rest &= !bit;
            }
        }
        if rest != 0 {
            parts.push(format!("0x{rest:02x}"));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A BEP 11 peer exchange message: peers the sender connected to or dropped since its last one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UtPex {
    /// New IPv4 peers, with flags (0 when the sender gave none).
    pub added: Vec<(SocketAddrV4, PexFlags)>,
    /// IPv4 peers dropped.
    pub dropped: Vec<SocketAddrV4>,
    /// New IPv6 peers, with flags.
    pub added6: Vec<(SocketAddrV6, PexFlags)>,
    /// IPv6 peers dropped.
    pub dropped6: Vec<SocketAddrV6>,
}

impl UtPex {
    const WHAT: &'static str = "ut_pex";

    /// Parses a `ut_pex` payload. Missing lists are empty; a flags list shorter than its
    /// address list gives flags 0 for the rest.
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        let (dict, _) = leading_dict(Self::WHAT, payload)?;
        let bytes = |key: &'static str| -> Result<&[u8], WireError> {
            match dict.get(key.as_bytes()) {
                None => Ok(&[]),
                Some(Value::Bytes(b)) => Ok(b),
                Some(v) => Err(bad(
                    Self::WHAT,
                    format!("{key} must be a byte string, found {}", type_name(v)),
                )),
            }
        };
        Ok(UtPex {
            added: with_flags(
                compact_list("added", bytes("added")?, compact::parse_v4)?,
                bytes("added.f")?,
            ),
            dropped: compact_list("dropped", bytes("dropped")?, compact::parse_v4)?,
            added6: with_flags(
                compact_list("added6", bytes("added6")?, compact::parse_v6)?,
                bytes("added6.f")?,
            ),
            dropped6: compact_list("dropped6", bytes("dropped6")?, compact::parse_v6)?,
        })
    }

    /// The bencoded payload. All six keys are always present (empty lists as empty strings).
    pub fn emit(&self) -> Vec<u8> {
        let (v4, v6) = (compact::emit_v4, compact::emit_v6);
        let mut added = Vec::new();
        self.added.iter().for_each(|(a, _)| v4(a, &mut added));
        let mut dropped = Vec::new();
        self.dropped.iter().for_each(|a| v4(a, &mut dropped));
        let mut added6 = Vec::new();
        self.added6.iter().for_each(|(a, _)| v6(a, &mut added6));
        let mut dropped6 = Vec::new();
        self.dropped6.iter().for_each(|a| v6(a, &mut dropped6));
        let added_f: Vec<u8> = self.added.iter().map(|(_, f)| f.0).collect();
        let added6_f: Vec<u8> = self.added6.iter().map(|(_, f)| f.0).collect();
        bencode::encode(&Value::dict([
            ("added", Value::Bytes(added)),
            ("added.f", Value::Bytes(added_f)),
            ("added6", Value::Bytes(added6)),
            ("added6.f", Value::Bytes(added6_f)),
            ("dropped", Value::Bytes(dropped)),
            ("dropped6", Value::Bytes(dropped6)),
        ]))
    }

    /// Appends the whole framed message, sent under `ext_id` (the receiver's id for `ut_pex`).
    pub fn emit_message(&self, ext_id: u8, out: &mut Vec<u8>) {
        let payload = self.emit();
        Message::Extended {
            ext_id,
            payload: &payload,
        }
        .emit(out)
    }

    /// All added peers, IPv4 then IPv6.
    pub fn all_added(&self) -> impl Iterator<Item = (SocketAddr, PexFlags)> + '_ {
        let v4 = self.added.iter().map(|&(a, f)| (SocketAddr::V4(a), f));
        let v6 = self.added6.iter().map(|&(a, f)| (SocketAddr::V6(a), f));
        v4.chain(v6)
    }

    /// All dropped peers, IPv4 then IPv6.
    pub fn all_dropped(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let v4 = self.dropped.iter().map(|&a| SocketAddr::V4(a));
        let v6 = self.dropped6.iter().map(|&a| SocketAddr::V6(a));
        v4.chain(v6)
    }
}

impl fmt::Display for UtPex {
    /// E.g. `ut_pex added 2 dropped 1` (plus `added6` / `dropped6` counts when non-zero).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ut_pex added {} dropped {}",
            self.added.len(),
            self.dropped.len()
        )?;
        if !self.added6.is_empty() || !self.dropped6.is_empty() {
            write!(
                f,
                " added6 {} dropped6 {}",
                self.added6.len(),
                self.dropped6.len()
            )?;
        }
        Ok(())
    }
}

/// Pairs each address with its flags byte (0 where the flags list is short).
fn with_flags<A>(addrs: Vec<A>, flags: &[u8]) -> Vec<(A, PexFlags)> {
    addrs
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, PexFlags(flags.get(i).copied().unwrap_or(0))))
        .collect()
}

/// A compact peer list of `ut_pex` ([`compact`]), its error naming the key.
fn compact_list<T>(
    key: &'static str,
    b: &[u8],
    parse: fn(&[u8]) -> Result<Vec<T>, compact::CompactError>,
) -> Result<Vec<T>, WireError> {
    parse(b).map_err(|e| bad(UtPex::WHAT, format!("{key} is {e}")))
}

// ---------------------------------------------------------------------------------------------
// Dispatch

/// An extended message's payload, decoded according to the receiver's extension table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionMessage<'a> {
    Handshake(ExtendedHandshake),
    Metadata(UtMetadata<'a>),
    Pex(UtPex),
    /// An id the receiver did not announce, or an extension not decoded here (its name, if
    /// the receiver announced one).
    Other {
        ext_id: u8,
        name: Option<String>,
        payload: &'a [u8],
    },
}

impl<'a> ExtensionMessage<'a> {
    /// Decodes the payload of [`Message::Extended`]. `receiver` is the extended handshake of
    /// the side that *receives* this message (its `m` gives the meaning of `ext_id`); `None`
    /// if it has not been seen, in which case only the handshake itself is decoded.
    pub fn parse(
        ext_id: u8,
        payload: &'a [u8],
        receiver: Option<&ExtendedHandshake>,
    ) -> Result<Self, WireError> {
        if ext_id == EXTENDED_HANDSHAKE_ID {
            return ExtendedHandshake::parse(payload).map(ExtensionMessage::Handshake);
        }
        let name = receiver.and_then(|hs| hs.name_of(ext_id));
        Ok(match name {
            Some(UT_METADATA) => ExtensionMessage::Metadata(UtMetadata::parse(payload)?),
            Some(UT_PEX) => ExtensionMessage::Pex(UtPex::parse(payload)?),
            _ => ExtensionMessage::Other {
                ext_id,
                name: name.map(str::to_string),
                payload,
            },
        })
    }
}

impl fmt::Display for ExtensionMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionMessage::Handshake(h) => h.fmt(f),
            ExtensionMessage::Metadata(m) => m.fmt(f),
            ExtensionMessage::Pex(p) => p.fmt(f),
            ExtensionMessage::Other {
                ext_id,
                name: Some(name),
                payload,
            } => write!(f, "{name} (extended id {ext_id}, {} bytes)", payload.len()),
            ExtensionMessage::Other {
                ext_id,
                name: None,
                payload,
            } => write!(f, "extended id {ext_id} ({} bytes)", payload.len()),
        }
    }
}

// Extension payloads travel inside messages, so the message cap bounds them too.
const _: () = assert!(MAX_MESSAGE_LEN > METADATA_PIECE_LEN + 1024);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What libtorrent 2.0.8 sent us; see `testdata/README.md`.
    const LIBTORRENT: &[u8] = include_bytes!("testdata/libtorrent-2.0.8-seeder.bin");

    /// The payload of the extended message at `at` in the fixture (after `<len><20><ext_id>`),
    /// its ext id, and the offset of the next message.
    fn extended_at(at: usize) -> (u8, &'static [u8], usize) {
        let (m, used) = Message::parse(&LIBTORRENT[at..]).unwrap();
        let Message::Extended { ext_id, payload } = m else {
            panic!("not extended: {m:?}");
        };
        (ext_id, payload, at + used)
    }

    #[test]
    fn libtorrent_extended_handshake() {
        let (ext_id, payload, _) = extended_at(68);
        assert_eq!(ext_id, 0);
        let hs = ExtendedHandshake::parse(payload).unwrap();
        let m: Vec<(&str, u8)> = hs.m.iter().map(|(k, &v)| (k.as_str(), v)).collect();
        assert_eq!(
            m,
            [
                ("lt_donthave", 7),
                ("share_mode", 8),
                ("upload_only", 3),
                ("ut_holepunch", 4),
                ("ut_metadata", 2),
                ("ut_pex", 1)
            ]
        );
        assert_eq!(hs.extension_id(UT_METADATA), Some(2));
        assert_eq!(hs.name_of(1), Some(UT_PEX));
        assert_eq!(hs.name_of(9), None);
        assert_eq!(hs.v.as_deref(), Some("libtorrent/2.0.8.0"));
        assert_eq!(hs.p, None);
        assert_eq!(hs.reqq, Some(2000));
        assert_eq!(hs.metadata_size, Some(237));
        assert_eq!(hs.yourip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(hs.other.len(), 2);
        assert_eq!(hs.other.get(&b"complete_ago"[..]), Some(&Value::Int(-1)));
        assert_eq!(hs.other.get(&b"upload_only"[..]), Some(&Value::Int(1)));
        // libtorrent's encoding is canonical, so ours is byte-identical.
        assert_eq!(hs.emit(), payload);
        assert_eq!(
            hs.to_string(),
            "extended handshake m {lt_donthave: 7, share_mode: 8, upload_only: 3, \
             ut_holepunch: 4, ut_metadata: 2, ut_pex: 1} v \"libtorrent/2.0.8.0\" reqq 2000 \
             metadata_size 237 yourip 127.0.0.1 +complete_ago +upload_only"
        );
    }

    #[test]
    fn libtorrent_ut_metadata_data_and_reject() {
        // Handshake (68), extended handshake, have all (5), unchoke (5).
        let (_, _, after_hs) = extended_at(68);
        let (ext_id, payload, next) = extended_at(after_hs + 10);
        assert_eq!(ext_id, 3, "sent under the id we announced");
        let md = UtMetadata::parse(payload).unwrap();
        let UtMetadata::Data {
            piece: 0,
            total_size: 237,
            data,
        } = md
        else {
            panic!("{md:?}");
        };
        assert_eq!(data.len(), 237);
        assert!(data.starts_with(b"d9:file tree"));
        assert_eq!(md.to_vec(), payload);
        assert_eq!(
            md.to_string(),
            "ut_metadata data piece 0 total_size 237 (237 bytes)"
        );

        let (_, payload, _) = extended_at(next);
        assert_eq!(payload, b"d8:msg_typei2e5:piecei5e10:total_sizei237ee");
        assert_eq!(
            UtMetadata::parse(payload).unwrap(),
            UtMetadata::Reject { piece: 5 }
        );
    }

    #[test]
    fn bep9_vectors() {
        let cases: [(&[u8], UtMetadata<'_>); 3] = [
            (
                b"d8:msg_typei0e5:piecei0ee",
                UtMetadata::Request { piece: 0 },
            ),
            (
                b"d8:msg_typei1e5:piecei0e10:total_sizei34256eeXYZ",
                UtMetadata::Data {
                    piece: 0,
                    total_size: 34256,
                    data: b"XYZ",
                },
            ),
            (
                b"d8:msg_typei2e5:piecei0ee",
                UtMetadata::Reject { piece: 0 },
            ),
        ];
        for (bytes, md) in cases {
            assert_eq!(UtMetadata::parse(bytes).unwrap(), md);
            assert_eq!(md.to_vec(), bytes);
        }
        let mut framed = Vec::new();
        UtMetadata::Request { piece: 1 }.emit_message(2, &mut framed);
        assert_eq!(framed[..6], [0, 0, 0, 27, 20, 2]);
        assert_eq!(&framed[6..], b"d8:msg_typei0e5:piecei1ee");
        assert_eq!(metadata_piece_count(0), 0);
        assert_eq!(metadata_piece_count(16384), 1);
        assert_eq!(metadata_piece_count(16385), 2);
    }

    #[test]
    fn ut_metadata_errors_and_unknown() {
        let err = |b: &[u8]| UtMetadata::parse(b).unwrap_err().to_string();
        assert!(err(b"le").contains("expected a dictionary, found a list"));
        assert!(err(b"d5:piecei0ee").contains("missing msg_type"));
        assert!(err(b"d8:msg_type1:0e").contains("msg_type must be an integer"));
        assert!(err(b"d8:msg_typei0ee").contains("without piece"));
        assert!(err(b"d8:msg_typei0e5:piecei-1ee").contains("piece -1 out of range"));
        assert!(err(b"d8:msg_typei1e5:piecei0ee").contains("without total_size"));
        assert!(err(b"d8:msg_typei1e5:piecei0e10:total_sizei-5ee").contains("negative"));
        assert!(err(b"d8:msg_typei0e5:piecei0e").starts_with("bad ut_metadata: bencode:"));
        let md = UtMetadata::parse(b"d8:msg_typei7e5:piecei3eeRAW").unwrap();
        assert_eq!(
            md,
            UtMetadata::Unknown {
                msg_type: 7,
                piece: Some(3),
                trailing: b"RAW"
            }
        );
        assert_eq!(md.to_vec(), b"d8:msg_typei7e5:piecei3eeRAW");
    }

    #[test]
    fn extended_handshake_leniency() {
        // p out of range, v not UTF-8, yourip of 5 bytes, m entry 300 and m entry -1: all kept
        // in `other` or dropped, none refused.
        let hs = ExtendedHandshake::parse(
            b"d1:md1:ai1e1:bi300e1:ci-1ee1:pi70000e1:v2:\xff\xfe6:yourip5:12345e",
        )
        .unwrap();
        assert_eq!(hs.m.len(), 1);
        assert_eq!(hs.extension_id("a"), Some(1));
        assert_eq!(hs.p, None);
        assert_eq!(hs.v, None);
        assert_eq!(hs.yourip, None);
        let keys: Vec<&[u8]> = hs.other.keys().map(Vec::as_slice).collect();
        assert_eq!(keys, [&b"p"[..], b"v", b"yourip"]);
        // Kept keys go back out unchanged.
        let again = ExtendedHandshake::parse(&hs.emit()).unwrap();
        assert_eq!(again, hs);
        // A disabled extension (id 0) is in `m` but has no id.
        let hs = ExtendedHandshake::parse(b"d1:md6:ut_pexi0eee").unwrap();
        assert_eq!(hs.m.get(UT_PEX), Some(&0));
        assert_eq!(hs.extension_id(UT_PEX), None);
        assert_eq!(hs.name_of(0), None);
        // IPv6 yourip.
        let mut b = b"d6:yourip16:".to_vec();
        b.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        b.push(b'e');
        assert_eq!(
            ExtendedHandshake::parse(&b).unwrap().yourip,
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert!(ExtendedHandshake::parse(b"i3e")
            .unwrap_err()
            .to_string()
            .contains("extended handshake: expected a dictionary, found an integer"));
    }

    #[test]
    fn extended_handshake_emit_is_byte_exact() {
        let hs = ExtendedHandshake::new()
            .with_extension(UT_METADATA, 1)
            .with_extension(UT_PEX, 2);
        let hs = ExtendedHandshake {
            p: Some(6881),
            v: Some("bt-trace 0.1".into()),
            metadata_size: Some(31235),
            ..hs
        };
        let want: &[u8] =
            b"d1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei31235e1:pi6881e1:v12:bt-trace 0.1e";
        assert_eq!(hs.emit(), want);
        let mut framed = Vec::new();
        hs.emit_message(&mut framed);
        assert_eq!(framed[..6], [0, 0, 0, want.len() as u8 + 2, 20, 0]);
        assert_eq!(&framed[6..], want);
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    #[test]
    fn pex_vectors() {
        let payload: &[u8] = b"d5:added12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x1a\xe27:added.f2:\x02\x107:dropped6:\x7f\x00\x00\x03\x00\x50e";
        let pex = UtPex::parse(payload).unwrap();
        assert_eq!(
            pex.added,
            [
                (v4([127, 0, 0, 1], 6881), PexFlags(PexFlags::SEED)),
                (v4([127, 0, 0, 2], 6882), PexFlags(PexFlags::REACHABLE)),
            ]
        );
        assert_eq!(pex.dropped, [v4([127, 0, 0, 3], 80)]);
        assert!(pex.added6.is_empty() && pex.dropped6.is_empty());
        assert_eq!(pex.to_string(), "ut_pex added 2 dropped 1");
        assert_eq!(pex.added[0].1.to_string(), "seed");
        assert!(pex.added[0].1.seed());
        assert_eq!(PexFlags(0x81).to_string(), "encryption, 0x80");
        assert_eq!(PexFlags(0).to_string(), "none");
        assert_eq!(UtPex::parse(&pex.emit()).unwrap(), pex);
        assert_eq!(pex.all_added().count(), 2);
        assert_eq!(
            pex.all_dropped().next(),
            Some("127.0.0.3:80".parse().unwrap())
        );

        // Flags missing: 0. IPv6.
        let mut b = b"d5:added6:\x7f\x00\x00\x01\x00\x016:added618:".to_vec();
        b.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        b.extend_from_slice(&[0x1a, 0xe1]);
        b.push(b'e');
        let pex = UtPex::parse(&b).unwrap();
        assert_eq!(pex.added, [(v4([127, 0, 0, 1], 1), PexFlags(0))]);
        assert_eq!(
            pex.added6,
            [(
                SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6881, 0, 0),
                PexFlags(0)
            )]
        );
        assert_eq!(
            pex.to_string(),
            "ut_pex added 1 dropped 0 added6 1 dropped6 0"
        );
        assert_eq!(
            UtPex::parse(&UtPex::default().emit()).unwrap(),
            UtPex::default()
        );
    }

    #[test]
    fn pex_errors() {
        let err = UtPex::parse(b"d5:added5:12345e").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad ut_pex: added is 5 bytes, not a multiple of 6"
        );
        assert!(UtPex::parse(b"d8:dropped6i1ee")
            .unwrap_err()
            .to_string()
            .contains("dropped6 must be a byte string, found an integer"));
        assert!(UtPex::parse(b"d6:added66:123456e").is_err());
    }

    #[test]
    fn dispatch_by_receiver_table() {
        let ours = ExtendedHandshake::new()
            .with_extension(UT_METADATA, 3)
            .with_extension(UT_PEX, 1)
            .with_extension("lt_donthave", 7);
        let req = b"d8:msg_typei0e5:piecei0ee";
        assert_eq!(
            ExtensionMessage::parse(3, req, Some(&ours)).unwrap(),
            ExtensionMessage::Metadata(UtMetadata::Request { piece: 0 })
        );
        let pex = UtPex::default().emit();
        assert!(matches!(
            ExtensionMessage::parse(1, &pex, Some(&ours)).unwrap(),
            ExtensionMessage::Pex(_)
        ));
        let other = ExtensionMessage::parse(7, b"i1e", Some(&ours)).unwrap();
        assert_eq!(other.to_string(), "lt_donthave (extended id 7, 3 bytes)");
        let unknown = ExtensionMessage::parse(3, req, None).unwrap();
        assert_eq!(unknown.to_string(), "extended id 3 (25 bytes)");
        assert!(matches!(
            ExtensionMessage::parse(0, b"de", None).unwrap(),
            ExtensionMessage::Handshake(_)
        ));
    }

    fn any_handshake() -> impl Strategy<Value = ExtendedHandshake> {
        (
            proptest::collection::btree_map("[a-z_]{1,12}", any::<u8>(), 0..6),
            proptest::option::of(".{0,20}"),
            any::<Option<u16>>(),
            any::<Option<u32>>(),
            proptest::option::of(0..=i64::MAX as u64),
            proptest::option::of(prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ]),
            proptest::collection::btree_map(
                "x_[a-z]{1,5}",
                prop_oneof![
                    any::<i64>().prop_map(Value::Int),
                    proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
                ],
                0..3,
            ),
        )
            .prop_map(
                |(m, v, p, reqq, metadata_size, yourip, other)| ExtendedHandshake {
                    m,
                    v,
                    p,
                    reqq,
                    metadata_size,
                    yourip,
                    other: other
                        .into_iter()
                        .map(|(k, v)| (k.into_bytes(), v))
                        .collect(),
                },
            )
    }

    fn any_pex() -> impl Strategy<Value = UtPex> {
        let a4 = || (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| v4(a, p));
        let a6 = || {
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(a, p)| SocketAddrV6::new(Ipv6Addr::from(a), p, 0, 0))
        };
        let flags = || any::<u8>().prop_map(PexFlags);
        (
            proptest::collection::vec((a4(), flags()), 0..5),
            proptest::collection::vec(a4(), 0..5),
            proptest::collection::vec((a6(), flags()), 0..5),
            proptest::collection::vec(a6(), 0..5),
        )
            .prop_map(|(added, dropped, added6, dropped6)| UtPex {
                added,
                dropped,
                added6,
                dropped6,
            })
    }

    proptest! {
        #[test]
        fn handshake_roundtrip(hs in any_handshake()) {
            prop_assert_eq!(ExtendedHandshake::parse(&hs.emit()).unwrap(), hs);
        }

        #[test]
        fn pex_roundtrip(pex in any_pex()) {
            prop_assert_eq!(UtPex::parse(&pex.emit()).unwrap(), pex);
        }

        #[test]
        fn ut_metadata_roundtrip(
            kind in 0u8..4,
            piece in any::<u32>(),
            total in 0..=i64::MAX as u64,
            msg_type in 3i64..,
            data in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let md = match kind {
                0 => UtMetadata::Request { piece },
                1 => UtMetadata::Data { piece, total_size: total, data: &data },
                2 => UtMetadata::Reject { piece },
                _ => UtMetadata::Unknown { msg_type, piece: Some(piece.into()), trailing: &data },
            };
            let bytes = md.to_vec();
            prop_assert_eq!(UtMetadata::parse(&bytes).unwrap(), md);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), id in any::<u8>()) {
            let _ = ExtendedHandshake::parse(&bytes);
            let _ = UtMetadata::parse(&bytes);
            let _ = UtPex::parse(&bytes);
            let table = ExtendedHandshake::new().with_extension(UT_METADATA, 1).with_extension(UT_PEX, 2);
            let _ = ExtensionMessage::parse(id, &bytes, Some(&table));
        }

        #[test]
        fn bencode_shaped_bytes_never_panic(
            key in prop_oneof![Just("m"), Just("p"), Just("v"), Just("added"), Just("added6"),
                               Just("msg_type"), Just("piece"), Just("total_size"), Just("yourip")],
            val in prop_oneof![
                any::<i64>().prop_map(|n| format!("i{n}e").into_bytes()),
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
                    let mut v = format!("{}:", b.len()).into_bytes();
                    v.extend_from_slice(&b);
                    v
                }),
                Just(b"le".to_vec()),
                Just(b"d1:ai-3ee".to_vec()),
            ],
            tail in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut b = format!("d{}:{}", key.len(), key).into_bytes();
            b.extend_from_slice(&val);
            b.extend_from_slice(b"8:msg_typei1e");
            b.push(b'e');
            b.extend_from_slice(&tail);
            let _ = ExtendedHandshake::parse(&b);
            let _ = UtMetadata::parse(&b);
            let _ = UtPex::parse(&b);
        }
    }
}
