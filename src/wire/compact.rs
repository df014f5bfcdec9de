//! BEP 23 compact peer lists, the one codec for them: tracker replies (HTTP `peers` /
//! `peers6`, BEP 15 UDP announce replies) and BEP 11 `ut_pex` (`added`, `dropped`, ...).
//!
//! A compact list is a byte string of fixed-size entries, all big-endian:
//!
//! | form | entry | example |
//! |---|---|---|
//! | IPv4 | 4 address bytes + 2 port bytes (6) | `7f 00 00 01 1a e1` = `127.0.0.1:6881` |
//! | IPv6 | 16 address bytes + 2 port bytes (18) | `00 .. 00 01 1a e1` = `[::1]:6881` |
//!
//! Contract: parsing never panics; a length that is not a whole number of entries is a
//! [`CompactError`], and nothing is allocated beyond one address per entry of the input.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::slice::ChunksExact;

/// Bytes of one IPv4 entry.
pub const V4_LEN: usize = 6;
/// Bytes of one IPv6 entry.
pub const V6_LEN: usize = 18;

/// A compact list whose length is not a multiple of its entry size. Displays as
/// `7 bytes, not a multiple of 6`, for the caller to prefix with what the list was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes, not a multiple of {entry}")]
pub struct CompactError {
    /// Length of the list.
    pub len: usize,
    /// Entry size of its form ([`V4_LEN`] or [`V6_LEN`]).
    pub entry: usize,
}

/// The entries of a list whose length must be a multiple of `entry`.
fn entries(b: &[u8], entry: usize) -> Result<ChunksExact<'_, u8>, CompactError> {
    let chunks = b.chunks_exact(entry);
    if !chunks.remainder().is_empty() {
        return Err(CompactError {
            len: b.len(),
            entry,
        });
    }
    Ok(chunks)
}

/// Parses an IPv4 list (6 bytes a peer).
pub fn parse_v4(b: &[u8]) -> Result<Vec<SocketAddrV4>, CompactError> {
    Ok(entries(b, V4_LEN)?
        .map(|e| {
            SocketAddrV4::new(
                Ipv4Addr::new(e[0], e[1], e[2], e[3]),
                u16::from_be_bytes([e[4], e[5]]),
            )
        })
        .collect())
}

/// Parses an IPv6 list (18 bytes a peer).
pub fn parse_v6(b: &[u8]) -> Result<Vec<SocketAddrV6>, CompactError> {
    Ok(entries(b, V6_LEN)?
        .map(|e| {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&e[..16]);
            SocketAddrV6::new(Ipv6Addr::from(ip), u16::from_be_bytes([e[16], e[17]]), 0, 0)
        })
        .collect())
}

/// Parses a list of either form (`v6`: 18-byte entries), as socket addresses.
pub fn parse(b: &[u8], v6: bool) -> Result<Vec<SocketAddr>, CompactError> {
    Ok(if v6 {
        parse_v6(b)?.into_iter().map(SocketAddr::V6).collect()
    } else {
        parse_v4(b)?.into_iter().map(SocketAddr::V4).collect()
    })
}

/// Appends one IPv4 entry.
pub fn emit_v4(a: &SocketAddrV4, out: &mut Vec<u8>) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// Appends one IPv6 entry (flow info and scope id are not part of the form).
pub fn emit_v6(a: &SocketAddrV6, out: &mut Vec<u8>) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// Encodes peers in both forms at once: (IPv4 list, IPv6 list), each in the given order.
pub fn emit_split(peers: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for p in peers {
        match p {
            SocketAddr::V4(a) => emit_v4(a, &mut v4),
            SocketAddr::V6(a) => emit_v6(a, &mut v6),
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v4_exact_bytes() {
        // Two peers as opentracker 1.0 sent them for a swarm on 127.0.0.1 (ports 6881, 80).
        let b = [127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80];
        let p = parse(&b, false).unwrap();
        assert_eq!(
            p,
            vec![
                "127.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
        assert_eq!(emit_split(&p), (b.to_vec(), vec![]));
        assert_eq!(
            parse(&b[..7], false).unwrap_err().to_string(),
            "7 bytes, not a multiple of 6"
        );
        assert_eq!(parse(&[], false).unwrap(), vec![]);
    }

    #[test]
    fn v6_exact_bytes() {
        let mut b = vec![0u8; 15];
        b.extend_from_slice(&[1, 0x1a, 0xe1]);
        let p = parse(&b, true).unwrap();
        assert_eq!(p, vec!["[::1]:6881".parse().unwrap()]);
        assert_eq!(emit_split(&p), (vec![], b.clone()));
        assert_eq!(
            parse_v6(&b[..17]).unwrap_err(),
            CompactError { len: 17, entry: 18 }
        );
        // An IPv4 list is never read as IPv6 by accident: 18 bytes are three v4 peers.
        assert_eq!(parse_v4(&b).unwrap().len(), 3);
    }

    proptest! {
        #[test]
        fn parse_emit_round_trip(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            match parse_v4(&data) {
                Ok(p) => {
                    let mut out = Vec::new();
                    p.iter().for_each(|a| emit_v4(a, &mut out));
                    prop_assert_eq!(out, data.clone());
                }
                Err(e) => prop_assert!(data.len() % V4_LEN != 0, "{e}"),
            }
            match parse_v6(&data) {
                Ok(p) => {
                    let mut out = Vec::new();
                    p.iter().for_each(|a| emit_v6(a, &mut out));
                    prop_assert_eq!(out, data);
                }
                Err(e) => prop_assert!(data.len() % V6_LEN != 0, "{e}"),
            }
        }
    }
}
