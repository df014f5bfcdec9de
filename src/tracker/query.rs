//! The announce and scrape query strings of HTTP trackers (BEP 3, BEP 48): building them for
//! our requests and taking them apart for the analyzer.
//!
//! ```text
//! /announce?info_hash=%124Vx%9A...&peer_id=-BT0001-...&port=6881&uploaded=0
//!     &downloaded=0&left=1024&compact=1&event=started&key=0badcafe
//! ```
//! `info_hash` and `peer_id` are raw 20-byte values, percent-encoded byte by byte (the
//! unreserved characters `A-Z a-z 0-9 - . _ ~` stay literal).
//!
//! Contract: pure functions, no I/O; [`parse_announce_query`] and [`parse_scrape_query`] never
//! panic on any input.
//! Owns nothing else: the bencoded replies are in `reply.rs`, HTTP framing in `http1.rs`.

use percent_encoding::{percent_decode_str, AsciiSet, NON_ALPHANUMERIC};

use super::{AnnounceRequest, Event, TrackerError};

/// Everything but the unreserved characters of RFC 3986 is percent-encoded.
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes raw bytes for a query string (`info_hash`, `peer_id`).
pub fn encode_bytes(b: &[u8]) -> String {
    percent_encoding::percent_encode(b, QUERY_ENCODE).to_string()
}

/// Appends `params` to `base`'s query with `?` or `&` (dropping any `#fragment`).
pub(crate) fn append_query(base: &str, params: &str) -> String {
    let base = base.split_once('#').map_or(base, |(b, _)| b);
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{params}")
}

/// The full announce URL for `req`, in the order design.md gives: `info_hash`, `peer_id`,
/// `port`, `uploaded`, `downloaded`, `left`, `compact=1`, then `event` (unless a regular
/// announce), `numwant` (if set) and `key` (8 hex digits).
pub fn announce_url(base: &str, req: &AnnounceRequest) -> String {
    let mut q = format!(
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1",
        encode_bytes(&req.info_hash),
        encode_bytes(&req.peer_id),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left
    );
    if let Some(ev) = req.event.http_value() {
        q.push_str("&event=");
        q.push_str(ev);
    }
    if let Some(n) = req.numwant {
        q.push_str(&format!("&numwant={n}"));
    }
    q.push_str(&format!("&key={:08x}", req.key));
    append_query(base, &q)
}

/// The scrape URL of an announce URL (BEP 48): the last path component must start with
/// `announce`, which becomes `scrape` (`/x/announce.php?k=1` → `/x/scrape.php?k=1`).
pub fn scrape_url(announce: &str) -> Option<String> {
    let announce = announce.split_once('#').map_or(announce, |(b, _)| b);
    let (path_part, query) = match announce.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (announce, None),
    };
    let slash = path_part.rfind('/')?;
    // The slash must belong to the path, not to `scheme://`.
    if path_part[..slash].ends_with('/') || !path_part[..slash].contains("://") {
        return None;
    }
    let last = &path_part[slash + 1..];
    let rest = last.strip_prefix("announce")?;
    let mut out = format!("{}/scrape{rest}", &path_part[..slash]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// An announce query string taken apart (for the analyzer: what did this client ask?).
/// Values are percent-decoded; `+` is kept literally (clients encode bytes, not forms).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceQuery {
    pub info_hash: Option<[u8; 20]>,
    pub peer_id: Option<Vec<u8>>,
    pub port: Option<u16>,
    pub uploaded: Option<u64>,
    pub downloaded: Option<u64>,
    pub left: Option<u64>,
    pub compact: Option<bool>,
    /// The `event` value as sent (see [`Event::from_http_value`]).
    pub event: Option<String>,
    pub numwant: Option<u32>,
    /// The `key` as sent (clients disagree on its format: hex, decimal...).
    pub key: Option<String>,
    /// Parameters not listed above (`ip`, `trackerid`, `supportcrypto`, ...), in order.
    pub other: Vec<(String, Vec<u8>)>,
}

impl AnnounceQuery {
    /// The `event` as an [`Event`], if it is one we know.
    pub fn event(&self) -> Option<Event> {
        Event::from_http_value(self.event.as_deref().unwrap_or(""))
    }
}

/// Parses an announce query. Accepts the query alone, a request target (`/announce?...`) or a
/// full URL; everything up to the first `?` is skipped.
pub fn parse_announce_query(s: &str) -> Result<AnnounceQuery, TrackerError> {
    let mut q = AnnounceQuery::default();
    for (key, val) in query_pairs(s) {
        let text = || String::from_utf8_lossy(&val).into_owned();
        let num = |what| -> Result<u64, TrackerError> {
            std::str::from_utf8(&val)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| bad(&key, &val, what))
        };
        match key.as_str() {
            "info_hash" => q.info_hash = Some(info_hash(&key, &val)?),
            "peer_id" => q.peer_id = Some(val),
            "port" => {
                q.port = Some(
                    u16::try_from(num("a port number")?)
                        .map_err(|_| bad(&key, &val, "a port number"))?,
                )
            }
            "uploaded" => q.uploaded = Some(num("a number")?),
            "downloaded" => q.downloaded = Some(num("a number")?),
            "left" => q.left = Some(num("a number")?),
            "compact" => q.compact = Some(val != b"0"),
            "event" => q.event = Some(text()),
            "numwant" => {
                q.numwant =
                    Some(u32::try_from(num("a number")?).map_err(|_| bad(&key, &val, "a u32"))?)
            }
            "key" => q.key = Some(text()),
            _ => q.other.push((key, val)),
        }
    }
    Ok(q)
}

/// The info hashes of a scrape query (BEP 48: `info_hash` repeated, none for "every torrent"),
/// in order. Accepts what [`parse_announce_query`] accepts; other parameters are ignored.
pub fn parse_scrape_query(s: &str) -> Result<Vec<[u8; 20]>, TrackerError> {
    query_pairs(s)
        .filter(|(k, _)| k == "info_hash")
        .map(|(k, v)| info_hash(&k, &v))
        .collect()
}

/// The percent-decoded `key=value` pairs of a query (everything up to the first `?` and from
/// the first `#` is skipped; `+` stays literal: clients encode bytes, not forms).
fn query_pairs(s: &str) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    let s = s.split_once('?').map_or(s, |(_, q)| q);
    let s = s.split_once('#').map_or(s, |(q, _)| q);
    s.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(k).decode_utf8_lossy().into_owned();
        (key, percent_decode_str(v).collect())
    })
}

fn bad(k: &str, v: &[u8], what: &str) -> TrackerError {
    TrackerError::Malformed(format!(
        "query parameter {k}={:?} is not {what}",
        String::from_utf8_lossy(v)
    ))
}

/// A decoded `info_hash` value: exactly 20 bytes.
fn info_hash(key: &str, val: &[u8]) -> Result<[u8; 20], TrackerError> {
    val.try_into().map_err(|_| bad(key, val, "20 bytes"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An announce with bytes that need escaping in both the info hash and the peer id.
    pub(crate) fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [
                0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
                0xef, 0x12, 0x34, 0x56, 0x78, 0x9a,
            ],
            peer_id: *b"-BT0001-a.b_c~d e+f/",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            numwant: Some(50),
            key: 0xbadcafe,
        }
    }

    #[test]
    fn announce_url_exact() {
        let u = announce_url("http://t.example:8080/announce", &req());
        assert_eq!(
            u,
            "http://t.example:8080/announce?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A\
             &peer_id=-BT0001-a.b_c~d%20e%2Bf%2F&port=6881&uploaded=1&downloaded=2&left=3\
             &compact=1&event=started&numwant=50&key=0badcafe"
        );
        let mut r = req();
        r.event = Event::None;
        r.numwant = None;
        let u = announce_url("http://t/announce.php?passkey=abc#frag", &r);
        assert!(u.starts_with("http://t/announce.php?passkey=abc&info_hash=%124Vx"));
        assert!(u.ends_with("&left=3&compact=1&key=0badcafe"), "{u}");
        assert!(!u.contains("event"));
        assert!(announce_url("http://t/a?", &r).starts_with("http://t/a?info_hash="));
    }

    #[test]
    fn query_round_trip() {
        let r = req();
        let q = parse_announce_query(&announce_url("http://t/announce?passkey=x%41", &r)).unwrap();
        assert_eq!(q.info_hash, Some(r.info_hash));
        assert_eq!(q.peer_id.as_deref(), Some(&r.peer_id[..]));
        assert_eq!(q.port, Some(6881));
        assert_eq!(
            (q.uploaded, q.downloaded, q.left),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(q.compact, Some(true));
        assert_eq!(q.event(), Some(Event::Started));
        assert_eq!(q.numwant, Some(50));
        assert_eq!(q.key.as_deref(), Some("0badcafe"));
        assert_eq!(q.other, vec![("passkey".to_string(), b"xA".to_vec())]);
    }

    #[test]
    fn query_like_libtorrent() {
        // Shaped like libtorrent's announces: lowercase escapes, literal unreserved bytes,
        // extra parameters, `key` in hex.
        let t = "/announce?info_hash=%d4%1d%8c%d9%8f%00%b2%04%e9%80%09%98%ec%f8B~%124Vx\
                 &peer_id=-LT2080-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=0\
                 &corrupt=0&key=1a2b3c4d&event=started&numwant=200&compact=1&no_peer_id=1\
                 &supportcrypto=1&redundant=0";
        let q = parse_announce_query(t).unwrap();
        assert_eq!(
            hex::encode(q.info_hash.unwrap()),
            "d41d8cd98f00b204e9800998ecf8427e12345678"
        );
        assert_eq!(q.left, Some(0));
        assert_eq!(q.numwant, Some(200));
        assert_eq!(q.key.as_deref(), Some("1a2b3c4d"));
        assert_eq!(q.other.len(), 4);
    }

    #[test]
    fn query_hostile() {
        assert!(parse_announce_query("info_hash=%12%34").is_err());
        assert!(parse_announce_query("port=70000").is_err());
        assert!(parse_announce_query("left=-1").is_err());
        assert!(parse_announce_query("numwant=99999999999").is_err());
        // Broken escapes are kept literally, never a panic.
        let q = parse_announce_query("peer_id=%G1%&&=&x").unwrap();
        assert_eq!(q.peer_id.as_deref(), Some(&b"%G1%"[..]));
        assert_eq!(parse_announce_query("").unwrap(), AnnounceQuery::default());
    }

    #[test]
    fn scrape_queries() {
        let one = encode_bytes(&[1; 20]);
        let two = encode_bytes(&[0x20; 20]);
        assert_eq!(
            parse_scrape_query(&format!("/scrape?info_hash={one}&x=1&info_hash={two}"))
                .expect("two hashes"),
            [[1; 20], [0x20; 20]]
        );
        assert_eq!(
            parse_scrape_query("/scrape").expect("none"),
            Vec::<[u8; 20]>::new()
        );
        let e = parse_scrape_query("/scrape?info_hash=%01%02").expect_err("2 bytes");
        assert!(e.to_string().contains("20 bytes"), "{e}");
    }

    #[test]
    fn scrape_urls() {
        assert_eq!(
            scrape_url("http://t/announce").as_deref(),
            Some("http://t/scrape")
        );
        assert_eq!(
            scrape_url("http://t/x/announce.php?k=1").as_deref(),
            Some("http://t/x/scrape.php?k=1")
        );
        assert_eq!(scrape_url("http://t/a"), None);
        assert_eq!(scrape_url("http://t/announce/x"), None);
        assert_eq!(scrape_url("http://announce"), None);
        assert_eq!(scrape_url("announce"), None);
    }

    proptest::proptest! {
        #[test]
        fn query_parser_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_announce_query(&String::from_utf8_lossy(&data));
        }
    }
}
