//! Magnet links (BEP 9): a torrent named by its info hash alone, e.g.
//! `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<tracker url>&x.pe=<ip:port>`.
//!
//! Parameters we read (all values are percent-decoded):
//! - `xt=urn:btih:` the v1 info hash: 40 hex digits, or 32 base32 characters (older links).
//! - `xt=urn:btmh:1220<64 hex>` the BitTorrent v2 info hash (BEP 52), a SHA-256 multihash
//!   (`12` = sha2-256, `20` = 32 bytes). A hybrid torrent's link has both `xt`. At least one is
//!   required; repeated `xt` of one kind must name the same torrent.
//! - `dn` display name (a `+` means a space here, as in HTML forms).
//! - `tr` tracker URLs, any number, tried in order.
//! - `x.pe` peer addresses (`host:port`, `1.2.3.4:port`, `[::1]:port`) to contact directly.
//! - `xl` exact length in bytes.
//!
//! Parameters we do not know are kept in [`Magnet::other`] (unknown is a value, not dropped).
//! The info dictionary itself is not in the link: it is fetched from peers with the
//! ut_metadata extension and checked against every hash of the link
//! ([`Magnet::info_hashes`]): a hybrid's metadata must have both.
//!
//! Contract: [`Magnet::parse`] never panics; errors say which parameter is wrong.

use crate::metainfo::{InfoHashes, Torrent};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::net::SocketAddr;

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The hash used on the wire: the `btih` one, or for a v2-only link the first 20 bytes of
    /// the `btmh` one.
    pub info_hash: [u8; 20],
    /// True when the link has a `btih` (v1) hash.
    pub has_v1: bool,
    /// The `btmh` (v2, SHA-256) hash, if any.
    pub info_hash_v2: Option<[u8; 32]>,
    /// `dn`
    pub display_name: Option<String>,
    /// `tr`, in the order given.
    pub trackers: Vec<String>,
    /// `x.pe`, as given (`host:port`); see [`Magnet::peer_addrs`].
    pub peers: Vec<String>,
    /// `xl`
    pub exact_length: Option<u64>,
    /// Every other parameter, `(key, decoded value)`, in order.
    pub other: Vec<(String, String)>,
}

/// What is wrong with a magnet link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    #[error("not a magnet link: it should start with `magnet:?`")]
    NotMagnet,
    #[error("magnet link has no BitTorrent info hash (`xt=urn:btih:...`)")]
    MissingInfoHash,
    #[error("magnet link info hash {value:?} is invalid: {why}")]
    BadInfoHash { value: String, why: String },
    #[error("magnet link names two different info hashes: {first} and {second}")]
    ConflictingInfoHash { first: String, second: String },
    #[error("magnet link parameter `{key}={value}`: {why}")]
    BadParam {
        key: String,
        value: String,
        why: &'static str,
    },
}

/// Characters left as they are in [`Magnet::to_uri`]: RFC 3986 "unreserved".
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Magnet {
    /// Parses a magnet link.
    pub fn parse(link: &str) -> Result<Magnet, MagnetError> {
        let link = link.trim();
        let query = link
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &link[8..])
            .ok_or(MagnetError::NotMagnet)?;

        let mut info_hash: Option<[u8; 20]> = None;
        let mut v2: Option<[u8; 32]> = None;
        let mut m = Magnet {
            info_hash: [0; 20],
            has_v1: false,
            info_hash_v2: None,
            display_name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            exact_length: None,
            other: Vec::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(raw_key);
            // `xt.1`, `tr.2`: numbered variants of a parameter (a magnet URI convention).
            let base = match key.split_once('.') {
                Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
                _ => key.as_str(),
            };
            match base {
                "xt" => {
                    let v = decode(raw_value);
                    if let Some(h) = strip_prefix_ci(&v, "urn:btih:") {
                        same_hash(&mut info_hash, parse_hash(h)?)?;
                    } else if let Some(h) = strip_prefix_ci(&v, "urn:btmh:") {
                        same_hash(&mut v2, parse_multihash(h)?)?;
                    } else {
                        m.other.push((key, v));
                    }
                }
                "dn" => m.display_name = Some(decode(&raw_value.replace('+', " "))),
                "tr" => {
                    let v = decode(raw_value);
                    if !v.is_empty() {
                        m.trackers.push(v);
                    }
                }
                "x.pe" => {
                    let v = decode(raw_value);
                    if !looks_like_host_port(&v) {
                        return Err(MagnetError::BadParam {
                            key,
                            value: v,
                            why: "expected host:port",
                        });
                    }
                    m.peers.push(v);
                }
                "xl" => {
                    let v = decode(raw_value);
                    m.exact_length = Some(v.parse().map_err(|_| MagnetError::BadParam {
                        key,
                        value: v.clone(),
                        why: "expected a length in bytes",
                    })?);
                }
                _ => m.other.push((key, decode(raw_value))),
            }
        }
        m.has_v1 = info_hash.is_some();
        m.info_hash_v2 = v2;
        m.info_hash = match (info_hash, v2) {
            (Some(h), _) => h,
            (None, Some(h2)) => {
                let mut h = [0u8; 20];
                h.copy_from_slice(&h2[..20]);
                h
            }
            (None, None) => return Err(MagnetError::MissingInfoHash),
        };
        Ok(m)
    }

    /// The hashes the link names, which the metadata fetched for it must all have
    /// ([`Info::from_metadata`](crate::metainfo::Info::from_metadata)): the `btih`, the
    /// `btmh`, or both for a hybrid torrent.
    pub fn info_hashes(&self) -> InfoHashes {
        match (self.has_v1, self.info_hash_v2) {
            (true, Some(v2)) => InfoHashes::Hybrid(self.info_hash, v2),
            (false, Some(v2)) => InfoHashes::V2(v2),
            (_, None) => InfoHashes::V1(self.info_hash),
        }
    }

    /// The magnet link for a torrent: its info hash, name and trackers.
    pub fn from_torrent(t: &Torrent) -> Magnet {
        Magnet {
            info_hash: t.info_hash,
            has_v1: t.info.has_v1(),
            info_hash_v2: t.info.v2.as_ref().map(|v| v.info_hash),
            display_name: Some(t.info.name.clone()),
            trackers: t.tiers().into_iter().flatten().collect(),
            peers: Vec::new(),
            exact_length: None,
            other: Vec::new(),
        }
    }

    /// Writes the link back out: `xt` (`btih` 40 hex, then `btmh` `1220` + 64 hex, as
    /// libtorrent orders them), `dn`, `xl`, each `tr`, each `x.pe`, then the other parameters,
    /// values percent-encoded. `parse(to_uri(m)) == m`.
    pub fn to_uri(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, KEEP).to_string();
        let xt: Vec<String> = [
            self.has_v1
                .then(|| format!("xt=urn:btih:{}", hex::encode(self.info_hash))),
            self.info_hash_v2
                .map(|h| format!("xt=urn:btmh:1220{}", hex::encode(h))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut s = format!("magnet:?{}", xt.join("&"));
        if let Some(dn) = &self.display_name {
            s += &format!("&dn={}", enc(dn));
        }
        if let Some(xl) = self.exact_length {
            s += &format!("&xl={xl}");
        }
        for t in &self.trackers {
            s += &format!("&tr={}", enc(t));
        }
        for p in &self.peers {
            s += &format!("&x.pe={}", enc(p));
        }
        for (k, v) in &self.other {
            s += &format!("&{}={}", enc(k), enc(v));
        }
        s
    }

    /// The info hash as 40 lowercase hex digits.
    pub fn info_hash_hex(&self) -> String {
        hex::encode(self.info_hash)
    }

    /// Tracker tiers in BEP 12 shape: each `tr` is its own tier, so they are tried in order.
    pub fn tiers(&self) -> Vec<Vec<String>> {
        self.trackers.iter().map(|t| vec![t.clone()]).collect()
    }

    /// The `x.pe` peers that are IP literals. Host names are skipped (no DNS lookups here).
    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        self.peers.iter().filter_map(|p| p.parse().ok()).collect()
    }
}

impl std::str::FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Magnet::parse(s)
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

/// `host:port` with a numeric port; IPv6 literals in brackets (`[::1]:6881`). No DNS lookup.
fn looks_like_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains([':', '[', ']', '/', ' '])
                && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// Keeps the first hash of a kind; a different one later is an error.
fn same_hash<const N: usize>(slot: &mut Option<[u8; N]>, h: [u8; N]) -> Result<(), MagnetError> {
    match slot {
        Some(prev) if *prev != h => Err(MagnetError::ConflictingInfoHash {
            first: hex::encode(*prev),
            second: hex::encode(h),
        }),
        _ => {
            *slot = Some(h);
            Ok(())
        }
    }
}

/// A `btmh` multihash: `1220` (sha2-256, 32 bytes) and 64 hex digits → 32 bytes.
fn parse_multihash(s: &str) -> Result<[u8; 32], MagnetError> {
    let bad = |why: String| MagnetError::BadInfoHash {
        value: s.to_string(),
        why,
    };
    let digest = s
        .get(..4)
        .filter(|p| *p == "1220")
        .map(|_| &s[4..])
        .ok_or_else(|| bad("a v2 hash starts with `1220` (a SHA-256 multihash)".into()))?;
    if digest.len() != 64 {
        return Err(bad(format!(
            "expected `1220` and 64 hex digits, found {} digits after `1220`",
            digest.len()
        )));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(digest, &mut out).map_err(|_| bad("not hexadecimal".into()))?;
    Ok(out)
}

/// 40 hex digits or 32 base32 characters (RFC 4648 alphabet, any case) → 20 bytes.
fn parse_hash(s: &str) -> Result<[u8; 20], MagnetError> {
    let bad = |why: &str| MagnetError::BadInfoHash {
        value: s.to_string(),
        why: why.to_string(),
    };
    let mut out = [0u8; 20];
    match s.len() {
        40 => hex::decode_to_slice(s, &mut out).map_err(|_| bad("not hexadecimal"))?,
        32 => {
            let mut acc: u64 = 0;
            let mut bits = 0;
            let mut i = 0;
            for c in s.bytes() {
                let v = match c.to_ascii_uppercase() {
                    c @ b'A'..=b'Z' => c - b'A',
                    c @ b'2'..=b'7' => c - b'2' + 26,
                    _ => return Err(bad("not base32 (A-Z, 2-7)")),
                };
                acc = (acc << 5) | u64::from(v);
                bits += 5;
                if bits >= 8 {
                    bits -= 8;
                    out[i] = (acc >> bits) as u8;
                    i += 1;
                }
            }
        }
        n => {
            return Err(bad(&format!(
                "expected 40 hex digits or 32 base32 characters, found {n} characters"
            )))
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CC: &str = "magnet:?xt=urn:btih:ad42ce8109f54c99613ce38f9b4d87e70f24a165&dn=magnet1.gif\
                      &tr=http%3A%2F%2Fbittorrent-test-tracker.codecrafters.io%2Fannounce";

    #[test]
    fn codecrafters_example() {
        let m = Magnet::parse(CC).unwrap();
        assert_eq!(
            m.info_hash_hex(),
            "ad42ce8109f54c99613ce38f9b4d87e70f24a165"
        );
        assert_eq!(m.display_name.as_deref(), Some("magnet1.gif"));
        assert_eq!(
            m.trackers,
            ["http://bittorrent-test-tracker.codecrafters.io/announce"]
        );
        assert_eq!(m.to_uri(), CC);
    }

    #[test]
    fn base32_hash_and_many_params() {
        // base32 of 20 bytes 0x00..0x13, computed independently with Python's base64.b32encode.
        let b32 = "AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT";
        let link = format!(
            "MAGNET:?xt=urn:BTIH:{}&dn=a+b%20c&tr=udp%3A%2F%2Ft%3A1&tr=http://u/a\
             &x.pe=127.0.0.1:6881&x.pe=%5B%3A%3A1%5D%3A7&x.pe=host.example:5&xl=123&ws=http://w",
            b32.to_lowercase()
        );
        let m = Magnet::parse(&link).unwrap();
        let want: Vec<u8> = (0..20).collect();
        assert_eq!(m.info_hash.as_slice(), want.as_slice());
        assert_eq!(m.display_name.as_deref(), Some("a b c"));
        assert_eq!(m.trackers, ["udp://t:1", "http://u/a"]);
        assert_eq!(m.tiers().len(), 2);
        assert_eq!(m.peers.len(), 3);
        assert_eq!(m.peer_addrs().len(), 2);
        assert_eq!(m.exact_length, Some(123));
        assert_eq!(m.other, [("ws".to_string(), "http://w".to_string())]);
        assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m);
    }

    #[test]
    fn errors() {
        let e = |s: &str| Magnet::parse(s).unwrap_err();
        assert_eq!(e("http://x"), MagnetError::NotMagnet);
        assert_eq!(e(""), MagnetError::NotMagnet);
        assert_eq!(e("magnet:?dn=x"), MagnetError::MissingInfoHash);
        assert!(matches!(
            e("magnet:?xt=urn:btmh:1220abcd"),
            MagnetError::BadInfoHash { .. }
        ));
        assert_eq!(
            e("magnet:?xt=urn:btih:abc").to_string(),
            "magnet link info hash \"abc\" is invalid: expected 40 hex digits or 32 base32 \
             characters, found 3 characters"
        );
        assert!(matches!(
            e(&format!("magnet:?xt=urn:btih:{}", "g".repeat(40))),
            MagnetError::BadInfoHash { .. }
        ));
        assert!(matches!(
            e(&format!("magnet:?xt=urn:btih:{}", "1".repeat(32))),
            MagnetError::BadInfoHash { .. }
        ));
        assert!(matches!(
            e(&format!(
                "magnet:?xt=urn:btih:{}&xt=urn:btih:{}",
                "a".repeat(40),
                "b".repeat(40)
            )),
            MagnetError::ConflictingInfoHash { .. }
        ));
        assert!(matches!(
            e(&format!("magnet:?xt=urn:btih:{}&xl=-1", "a".repeat(40))),
            MagnetError::BadParam { .. }
        ));
        assert!(matches!(
            e(&format!("magnet:?xt=urn:btih:{}&x.pe=nope", "a".repeat(40))),
            MagnetError::BadParam { .. }
        ));
        // Non-ASCII right after the scheme must not panic on a char boundary.
        assert_eq!(e("magnet:é?"), MagnetError::NotMagnet);
    }

    #[test]
    fn numbered_xt_and_duplicate_same_hash() {
        let h = "A".repeat(40);
        let m = Magnet::parse(&format!("magnet:?xt.1=urn:btih:{h}&xt.2=urn:btih:{h}")).unwrap();
        assert_eq!(m.info_hash, [0xaa; 20]);
    }

    /// Links as python3-libtorrent 2.0.8 writes them (`make_magnet_uri`) for a v2-only and a
    /// hybrid torrent.
    #[test]
    fn v2_and_hybrid_links() {
        let v2 = "fe96be30a3b5b782a6671d728d1eb53f28c870ff15103e75b52ec5c95c1b8bf2";
        let link = format!("magnet:?xt=urn:btmh:1220{v2}&dn=d");
        let m = Magnet::parse(&link).unwrap();
        assert!(!m.has_v1);
        assert_eq!(m.info_hash_v2.map(hex::encode).as_deref(), Some(v2));
        assert_eq!(m.info_hash_hex(), v2[..40]);
        assert_eq!(m.to_uri(), link);
        let full = m.info_hash_v2.unwrap();
        assert_eq!(m.info_hashes(), InfoHashes::V2(full));
        assert_eq!(m.info_hashes().wire(), m.info_hash);

        let v1 = "4401e5d4cd47247525f0f341b840f6176421e388";
        let v2 = "d222d7ee885200fce0d70203ac11b6e67c37b418424e4d6eca85081f9859f464";
        let link = format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{v2}&dn=d");
        let m = Magnet::parse(&link).unwrap();
        assert!(m.has_v1);
        assert_eq!(m.info_hash_hex(), v1);
        assert_eq!(m.info_hash_v2.map(hex::encode).as_deref(), Some(v2));
        assert_eq!(m.to_uri(), link);
        assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m);
        // the metadata must match both: SHA-1 = btih, SHA-256 = btmh
        let both = InfoHashes::Hybrid(m.info_hash, m.info_hash_v2.unwrap());
        assert_eq!(m.info_hashes(), both);
        assert_eq!(both.wire(), m.info_hash);
        let v1_only = Magnet::parse(&format!("magnet:?xt=urn:btih:{v1}")).unwrap();
        assert_eq!(v1_only.info_hashes(), InfoHashes::V1(m.info_hash));

        let e = |l: &str| Magnet::parse(l).unwrap_err().to_string();
        assert!(e(&format!("magnet:?xt=urn:btmh:1114{v2}")).contains("starts with `1220`"));
        assert!(e(&format!("magnet:?xt=urn:btmh:1220{}", &v2[..62])).contains("found 62 digits"));
        assert!(
            e(&format!("magnet:?xt=urn:btmh:1220{}", "z".repeat(64))).contains("not hexadecimal")
        );
        let other = "00".repeat(32);
        assert!(matches!(
            Magnet::parse(&format!(
                "magnet:?xt=urn:btmh:1220{v2}&xt=urn:btmh:1220{other}"
            )),
            Err(MagnetError::ConflictingInfoHash { .. })
        ));
    }
}
