//! Local Service Discovery (BEP 14): `BT-SEARCH * HTTP/1.1` announces, multicast to
//! 239.192.152.143:6771 or [ff15::efc0:988f]:6771, decoded into [`LsdAnnounce`] event fields
//! (host, port, info hashes, cookie), and summarized.
//!
//! Recognized by their first line on any address (a capture on one host sees its own announces
//! on `lo`, and others' on the LAN). This module owns LSD decoding only; no state but the
//! summary, whose sets are capped.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The first line of every LSD announce.
pub const REQUEST_LINE: &[u8] = b"BT-SEARCH * HTTP/1.1\r\n";

/// Distinct info hashes kept for the summary.
const MAX_HASHES: usize = 1000;

/// One LSD announce, as event fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsdAnnounce {
    /// The `Host` header (the multicast group and port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The `Port` header: where the announcer accepts peer connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Every `Infohash` header (40 hex digits, lower case; v2 hashes as given).
    pub info_hashes: Vec<String>,
    /// The `cookie` header, which lets a client recognize its own announces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// Decodes an LSD announce, or `None` if the datagram is not one.
pub fn parse(b: &[u8]) -> Option<LsdAnnounce> {
    let rest = b.strip_prefix(REQUEST_LINE)?;
    let text = String::from_utf8_lossy(rest);
    let mut a = LsdAnnounce {
        host: None,
        port: None,
        info_hashes: Vec::new(),
        cookie: None,
    };
    for line in text.split("\r\n").take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "host" => a.host = Some(value.to_string()),
            "port" => a.port = value.parse().ok(),
            "infohash" => a.info_hashes.push(value.to_ascii_lowercase()),
            "cookie" => a.cookie = Some(value.to_string()),
            _ => {}
        }
    }
    Some(a)
}

/// An announce in words: "LSD announce port 6881, 1 info hash 6aff54b5…, cookie 1a2b".
pub fn words(a: &LsdAnnounce) -> String {
    let mut s = "LSD announce".to_string();
    if let Some(p) = a.port {
        s += &format!(" port {p}");
    }
    s += &format!(", info hash {}", a.info_hashes.join(" "));
    if let Some(c) = &a.cookie {
        s += &format!(", cookie {c}");
    }
    s
}

/// What the LSD traffic of a capture amounted to.
#[derive(Debug, Clone, Default)]
pub struct LsdReport {
    pub announces: u64,
    /// Distinct announced info hashes (hex), and the ports announced.
    pub info_hashes: BTreeSet<String>,
    pub ports: BTreeSet<u16>,
}

impl LsdReport {
    pub fn add(&mut self, a: &LsdAnnounce) {
        self.announces += 1;
        for h in &a.info_hashes {
            if self.info_hashes.len() < MAX_HASHES {
                self.info_hashes.insert(h.clone());
            }
        }
        if let Some(p) = a.port {
            if self.ports.len() < MAX_HASHES {
                self.ports.insert(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// BEP 14's exact format (the capture in captures/lo_utp_dht_libtorrent.pcapng has real ones).
    #[test]
    fn bep14_announce() {
        let d = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 6AFF54B59EE2C65DACA4CF79E3E1858E68823213\r\nInfohash: 0000000000000000000000000000000000000001\r\ncookie: abc1\r\n\r\n\r\n";
        let a = parse(d).unwrap();
        assert_eq!(a.host.as_deref(), Some("239.192.152.143:6771"));
        assert_eq!(a.port, Some(6881));
        assert_eq!(
            a.info_hashes,
            [
                "6aff54b59ee2c65daca4cf79e3e1858e68823213",
                "0000000000000000000000000000000000000001"
            ]
        );
        assert_eq!(a.cookie.as_deref(), Some("abc1"));
        assert!(words(&a).starts_with("LSD announce port 6881, info hash 6aff"));
        let mut r = LsdReport::default();
        r.add(&a);
        assert_eq!((r.announces, r.info_hashes.len()), (1, 2));
        assert!(parse(b"M-SEARCH * HTTP/1.1\r\n\r\n").is_none());
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = REQUEST_LINE.to_vec();
            d.extend(&b);
            prop_assert!(parse(&d).is_some());
            let _ = parse(&b);
        }
    }
}
