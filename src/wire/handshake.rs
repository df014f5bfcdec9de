//! The BEP 3 handshake: the first 68 bytes each side sends.
//!
//! ```text
//! offset  size  field
//!      0     1  pstrlen = 19
//!      1    19  pstr = "BitTorrent protocol"
//!     20     8  reserved bits (extension flags, BEP 4 lists who owns which)
//!     28    20  info hash
//!     48    20  peer id
//! ```
//!
//! No-panic contract: [`Handshake::parse`] and [`looks_like_handshake_prefix`] accept any bytes and
//! never panic; a wrong prefix is reported as soon as the first wrong byte is seen, so an MSE
//! (encrypted) connection is recognised after one byte rather than after 68.

use std::fmt;

use super::WireError;

/// Length of a handshake on the wire.
pub const HANDSHAKE_LEN: usize = 68;

/// The protocol string, including its length byte: `0x13 "BitTorrent protocol"`.
pub const PROTOCOL_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Byte ranges of the handshake fields.
mod field {
    use std::ops::Range;
    pub const PREFIX: Range<usize> = 0..20;
    pub const RESERVED: Range<usize> = 20..28;
    pub const INFO_HASH: Range<usize> = 28..48;
    pub const PEER_ID: Range<usize> = 48..68;
}

/// A parsed handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// The eight reserved bytes: which extensions the sender supports.
    pub reserved: Reserved,
    /// SHA-1 of the raw bencoded `info` dictionary of the torrent.
    pub info_hash: [u8; 20],
    /// The sender's peer id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// A handshake with the given fields.
    pub fn new(reserved: Reserved, info_hash: [u8; 20], peer_id: [u8; 20]) -> Self {
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// Parses a handshake from the start of `buf`; returns it and the bytes used (always 68).
    ///
    /// - [`WireError::BadProtocol`] as soon as a byte of the 20-byte prefix differs;
    /// - [`WireError::Incomplete`] if the prefix is right so far but fewer than 68 bytes are there.
    pub fn parse(buf: &[u8]) -> Result<(Handshake, usize), WireError> {
        let seen = &buf[..buf.len().min(field::PREFIX.end)];
        if !PROTOCOL_PREFIX.starts_with(seen) {
            return Err(WireError::BadProtocol {
                found: seen.to_vec(),
            });
        }
        let Some(hs) = buf.first_chunk::<HANDSHAKE_LEN>() else {
            return Err(WireError::Incomplete {
                needed: HANDSHAKE_LEN - buf.len(),
            });
        };
        let mut reserved = [0u8; 8];
        let mut info_hash = [0u8; 20];
        let mut peer_id = [0u8; 20];
        reserved.copy_from_slice(&hs[field::RESERVED]);
        info_hash.copy_from_slice(&hs[field::INFO_HASH]);
        peer_id.copy_from_slice(&hs[field::PEER_ID]);
        Ok((
            Handshake {
                reserved: Reserved(reserved),
                info_hash,
                peer_id,
            },
            HANDSHAKE_LEN,
        ))
    }

    /// The 68 bytes to send.
    pub fn emit(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[field::PREFIX].copy_from_slice(PROTOCOL_PREFIX);
        out[field::RESERVED].copy_from_slice(&self.reserved.0);
        out[field::INFO_HASH].copy_from_slice(&self.info_hash);
        out[field::PEER_ID].copy_from_slice(&self.peer_id);
        out
    }
}

impl fmt::Display for Handshake {
    /// `handshake info_hash <hex> peer_id <printable> reserved <flags>`, for pcapng comments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handshake info_hash ")?;
        for b in self.info_hash {
            write!(f, "{b:02x}")?;
        }
        write!(f, " peer_id \"{}\"", self.peer_id.escape_ascii())?;
        write!(f, " reserved {}", self.reserved)
    }
}

/// True if `buf` could be the beginning of a handshake: every byte present matches
/// `0x13 "BitTorrent protocol"` (only the first 20 bytes are looked at). An empty slice gives
/// `true` since nothing contradicts it. Useful to spot connections in a capture.
pub fn looks_like_handshake_prefix(buf: &[u8]) -> bool {
    let seen = &buf[..buf.len().min(PROTOCOL_PREFIX.len())];
    PROTOCOL_PREFIX.starts_with(seen)
}

/// The eight reserved bytes of the handshake, where each side advertises extensions.
///
/// Bits named here (BEP 4's list): `extended` (BEP 10, byte 5 `0x10`), `fast` (BEP 6, byte 7
/// `0x04`), `dht` (BEP 5, byte 7 `0x01`), plus a few less common ones shown by name in
/// `Display`. Every other bit is kept and shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reserved(pub [u8; 8]);

/// Known reserved bits: (byte, mask, name).
const KNOWN_BITS: &[(usize, u8, &str)] = &[
    (0, 0x80, "azureus"),
    (2, 0x08, "location"),
    (5, 0x10, "extended"),
    (7, 0x01, "dht"),
    (7, 0x02, "xbt-pex"),
    (7, 0x04, "fast"),
    (7, 0x08, "nat-traversal"),
    (7, 0x10, "v2-upgrade"),
];

impl Reserved {
    /// Only the extension protocol bit (`00 00 00 00 00 10 00 00`): what the CodeCrafters peers
    /// accept on the magnet commands.
    pub const EXTENSION_ONLY: Reserved = Reserved([0, 0, 0, 0, 0, 0x10, 0, 0]);

    /// No bits set.
    pub const fn new() -> Self {
        Reserved([0; 8])
    }

    const fn with_bit(mut self, byte: usize, mask: u8) -> Self {
        self.0[byte] |= mask;
        self
    }

    /// BEP 6 fast extension (byte 7, `0x04`).
    pub const fn fast(&self) -> bool {
        self.0[7] & 0x04 != 0
    }
    /// BEP 10 extension protocol (byte 5, `0x10`).
    pub const fn extended(&self) -> bool {
        self.0[5] & 0x10 != 0
    }
    /// BEP 5 DHT (byte 7, `0x01`): the peer will send a `port` message.
    pub const fn dht(&self) -> bool {
        self.0[7] & 0x01 != 0
    }

    /// With the fast extension bit set.
    pub const fn with_fast(self) -> Self {
        self.with_bit(7, 0x04)
    }
    /// With the extension protocol bit set.
    pub const fn with_extended(self) -> Self {
        self.with_bit(5, 0x10)
    }

    /// The bits that are set but not in the known list.
    pub fn unknown_bits(&self) -> [u8; 8] {
        let mut rest = self.0;
        for &(byte, mask, _) in KNOWN_BITS {
            rest[byte] &= !mask;
        }
        rest
    }

    /// Names of the known bits that are set, in byte order.
    pub fn known_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        KNOWN_BITS
            .iter()
            .filter(|&&(byte, mask, _)| self.0[byte] & mask != 0)
            .map(|&(_, _, name)| name)
    }
}

impl fmt::Display for Reserved {
    /// E.g. `extended, fast, dht`, `none`, or `extended, unknown 0000000000000020`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for name in self.known_names() {
            if !first {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
            first = false;
        }
        let rest = self.unknown_bits();
        if rest != [0; 8] {
            if !first {
                f.write_str(", ")?;
            }
            f.write_str("unknown ")?;
            for b in rest {
                write!(f, "{b:02x}")?;
            }
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reserved {
    /// E.g. `Reserved(0000000000100005: extended, fast, dht)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reserved(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ": {self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Handshake {
        Handshake {
            reserved: Reserved::EXTENSION_ONLY,
            info_hash: *b"\xd6\x9f\x91\xe6\xb2\xaeLT$h\xd1\x07:q\xd4\xea\x13\x87\x9a\x7f",
            peer_id: *b"-BT0001-abcdefghijkl",
        }
    }

    #[test]
    fn emit_is_byte_exact() {
        let bytes = sample().emit();
        let mut want = Vec::new();
        want.push(19);
        want.extend_from_slice(b"BitTorrent protocol");
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
        want.extend_from_slice(&sample().info_hash);
        want.extend_from_slice(b"-BT0001-abcdefghijkl");
        assert_eq!(&bytes[..], &want[..]);
    }

    #[test]
    fn parse_roundtrip_and_trailing_bytes() {
        let mut bytes = sample().emit().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 1, 1]); // an unchoke right behind it
        let (hs, used) = Handshake::parse(&bytes).unwrap();
        assert_eq!(hs, sample());
        assert_eq!(used, 68);
    }

    #[test]
    fn incomplete_says_how_much_more() {
        let bytes = sample().emit();
        for cut in 0..HANDSHAKE_LEN {
            assert_eq!(
                Handshake::parse(&bytes[..cut]),
                Err(WireError::Incomplete {
                    needed: HANDSHAKE_LEN - cut
                })
            );
            assert!(looks_like_handshake_prefix(&bytes[..cut]));
        }
    }

    #[test]
    fn wrong_protocol_is_reported_early() {
        // An MSE handshake starts with random bytes: caught on the first byte.
        let err = Handshake::parse(&[0x8a]).unwrap_err();
        assert_eq!(err, WireError::BadProtocol { found: vec![0x8a] });
        assert!(!looks_like_handshake_prefix(&[0x8a, 0x13]));
        // Right length byte, wrong string.
        let err = Handshake::parse(b"\x13BitTorrent protokol and more").unwrap_err();
        assert_eq!(
            err,
            WireError::BadProtocol {
                found: b"\x13BitTorrent protokol".to_vec()
            }
        );
        assert!(err.to_string().contains("protokol"), "{err}");
        // An HTTP request sent to a peer port.
        assert!(!looks_like_handshake_prefix(b"GET /announce"));
    }

    #[test]
    fn reserved_bits() {
        let r = Reserved([0, 0, 0, 0, 0, 0, 0, 0x01])
            .with_fast()
            .with_extended();
        assert_eq!(r.0, [0, 0, 0, 0, 0, 0x10, 0, 0x05]);
        assert!(r.fast() && r.extended() && r.dht());
        assert_eq!(r.to_string(), "extended, dht, fast");
        assert_eq!(
            format!("{r:?}"),
            "Reserved(0000000000100005: extended, dht, fast)"
        );
        assert!(Reserved::EXTENSION_ONLY.extended());
        assert!(!Reserved::EXTENSION_ONLY.fast());
        assert!(!Reserved::EXTENSION_ONLY.dht());
        assert_eq!(Reserved::new().to_string(), "none");
        assert_eq!(Reserved::new().with_extended(), Reserved::EXTENSION_ONLY);
    }

    #[test]
    fn reserved_unknown_bits_are_kept_and_shown() {
        // 0x08 in byte 5 is not in our list: kept and shown as hex.
        let r = Reserved([0, 0, 0, 0, 0, 0x18, 0, 0x05]);
        assert_eq!(r.unknown_bits(), [0, 0, 0, 0, 0, 0x08, 0, 0]);
        assert_eq!(
            r.to_string(),
            "extended, dht, fast, unknown 0000000000080000"
        );
        let r = Reserved([0x01, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.to_string(), "unknown 0100000000000000");
    }

    #[test]
    fn display_for_comments() {
        let s = sample().to_string();
        assert!(s.starts_with("handshake info_hash d69f91e6b2ae4c542468d1073a71d4ea13879a7f"));
        assert!(s.contains("peer_id \"-BT0001-abcdefghijkl\""));
        assert!(s.ends_with("reserved extended"));
    }

    proptest! {
        #[test]
        fn roundtrip(reserved in any::<[u8; 8]>(), ih in any::<[u8; 20]>(), pid in any::<[u8; 20]>()) {
            let hs = Handshake::new(Reserved(reserved), ih, pid);
            let bytes = hs.emit();
            prop_assert_eq!(Handshake::parse(&bytes), Ok((hs, HANDSHAKE_LEN)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Handshake::parse(&bytes);
            let _ = looks_like_handshake_prefix(&bytes);
        }

        #[test]
        fn valid_prefix_then_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut bytes = PROTOCOL_PREFIX.to_vec();
            bytes.extend_from_slice(&tail);
            match Handshake::parse(&bytes) {
                Ok((_, n)) => prop_assert_eq!(n, 68),
                Err(WireError::Incomplete { needed }) => prop_assert_eq!(needed, 68 - bytes.len()),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
