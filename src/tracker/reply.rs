//! The bencoded replies of HTTP trackers: announce (BEP 3, compact peers BEP 23, `peers6`
//! BEP 7) and scrape (BEP 48).
//!
//! An announce reply is a dictionary: `interval` and `peers` (a compact string, see
//! [`crate::wire::compact`], or a list of `{ip, port, peer id}` dictionaries), or just
//! `failure reason`.
//!
//! Contract: pure functions, no I/O; they never panic and allocate at most what their input
//! holds, so the capture analyzer reuses them. The HTTP framing around a body is `http1.rs`'s.

use std::net::{IpAddr, SocketAddr};

use super::{AnnounceResponse, ScrapeResponse, TrackerError};
use crate::bencode::{self, Value};
use crate::wire::compact;

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "an integer",
        Value::Bytes(_) => "a string",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dictionary",
    }
}

fn malformed(s: impl Into<String>) -> TrackerError {
    TrackerError::Malformed(s.into())
}

/// Reads an optional non-negative 32-bit integer field.
fn u32_field(d: &Value, key: &str) -> Result<Option<u32>, TrackerError> {
    match d.get(key) {
        None => Ok(None),
        Some(Value::Int(n)) => u32::try_from(*n)
            .map(Some)
            .map_err(|_| malformed(format!("`{key}` is {n}, expected 0..=4294967295"))),
        Some(v) => Err(malformed(format!(
            "`{key}` is {}, expected an integer",
            kind(v)
        ))),
    }
}

/// Decodes the body as a bencoded dictionary; a body that is not bencode is described.
pub(crate) fn decode_dict(body: &[u8]) -> Result<Value, TrackerError> {
    let v = bencode::decode(body).map_err(|e| {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        malformed(format!("{e} (body starts with {shown:?})"))
    })?;
    if v.as_dict().is_none() {
        return Err(malformed(format!(
            "expected a bencoded dictionary, found {}",
            kind(&v)
        )));
    }
    if let Some(f) = v.get("failure reason") {
        let text = match f {
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            other => other.to_json().to_string(),
        };
        return Err(TrackerError::Failure(text));
    }
    Ok(v)
}

/// Peers in the dictionary model: a list of `{ip, port, peer id}`. Entries whose `ip` is a
/// host name rather than an address are skipped (we do not resolve names from a tracker).
fn dict_peers(list: &[Value], field: &str) -> Result<Vec<SocketAddr>, TrackerError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        if p.as_dict().is_none() {
            return Err(malformed(format!(
                "{field}[{i}] is {}, expected a dictionary",
                kind(p)
            )));
        }
        let ip = p
            .get("ip")
            .and_then(Value::as_bytes)
            .ok_or_else(|| malformed(format!("{field}[{i}] has no `ip` string")))?;
        let port = match p.get("port") {
            Some(Value::Int(n)) => u16::try_from(*n)
                .map_err(|_| malformed(format!("{field}[{i}]: port {n} out of range")))?,
            _ => return Err(malformed(format!("{field}[{i}] has no integer `port`"))),
        };
        if let Some(ip) = std::str::from_utf8(ip)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            out.push(SocketAddr::new(ip, port));
        }
    }
    Ok(out)
}

fn peers_field(d: &Value, field: &str, v6: bool) -> Result<Vec<SocketAddr>, TrackerError> {
    match d.get(field) {
        None => Ok(Vec::new()),
        Some(Value::Bytes(b)) => compact::parse(b, v6)
            .map_err(|e| malformed(format!("`{field}`: compact peer list is {e}"))),
        Some(Value::List(l)) => dict_peers(l, field),
        Some(v) => Err(malformed(format!(
            "`{field}` is {}, expected a string or a list",
            kind(v)
        ))),
    }
}

/// Parses an announce response body. `failure reason` becomes [`TrackerError::Failure`]
/// with the tracker's text; a missing or invalid `interval` is malformed.
pub fn parse_announce_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let d = decode_dict(body)?;
    let interval = u32_field(&d, "interval")?
        .ok_or_else(|| malformed("no `interval` (and no `failure reason`)"))?;
    let mut peers = peers_field(&d, "peers", false)?;
    peers.extend(peers_field(&d, "peers6", true)?);
    let text = |key| {
        d.get(key)
            .and_then(Value::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    Ok(AnnounceResponse {
        interval,
        min_interval: u32_field(&d, "min interval")?,
        peers,
        complete: u32_field(&d, "complete")?,
        incomplete: u32_field(&d, "incomplete")?,
        warning: text("warning message"),
        tracker_id: d
            .get("tracker id")
            .and_then(Value::as_bytes)
            .map(<[u8]>::to_vec),
    })
}

/// Parses a scrape response body (BEP 48): `files` maps each 20-byte info hash to
/// `{complete, incomplete, downloaded}` (absent counts are 0).
pub fn parse_scrape_response(body: &[u8]) -> Result<Vec<([u8; 20], ScrapeResponse)>, TrackerError> {
    let d = decode_dict(body)?;
    let files = d
        .get("files")
        .ok_or_else(|| malformed("scrape response has no `files`"))?
        .as_dict()
        .ok_or_else(|| malformed("`files` is not a dictionary"))?;
    let mut out = Vec::with_capacity(files.len());
    for (k, v) in files {
        let hash: [u8; 20] = k.as_slice().try_into().map_err(|_| {
            malformed(format!(
                "`files` key is {} bytes, expected a 20-byte info hash",
                k.len()
            ))
        })?;
        if v.as_dict().is_none() {
            return Err(malformed(format!(
                "`files` entry for {} is {}, expected a dictionary",
                hex::encode(hash),
                kind(v)
            )));
        }
        out.push((
            hash,
            ScrapeResponse {
                complete: u32_field(v, "complete")?.unwrap_or(0),
                incomplete: u32_field(v, "incomplete")?.unwrap_or(0),
                downloaded: u32_field(v, "downloaded")?.unwrap_or(0),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_from_opentracker() {
        // Exact body opentracker 1.0 (Debian 12) sent for a swarm of two on 127.0.0.1.
        let body = b"d8:completei1e10:downloadedi0e10:incompletei1e8:intervali1964e\
                     12:min intervali982e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x01\x1a\xe2e";
        let r = parse_announce_response(body).unwrap();
        assert_eq!(r.interval, 1964);
        assert_eq!(r.min_interval, Some(982));
        assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:6882".parse().unwrap()
            ]
        );
        assert_eq!(r.warning, None);
    }

    #[test]
    fn response_dict_peers_peers6_warning() {
        let body = b"d8:intervali60e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti1eed2:ip3:::14:porti2eed2:ip11:example.org4:porti3eee\
                     6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x0515:warning message4:slow10:tracker id3:xyze";
        let r = parse_announce_response(body).unwrap();
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:1".parse::<SocketAddr>().unwrap(),
                "[::1]:2".parse().unwrap(),
                "[::1]:5".parse().unwrap()
            ]
        );
        assert_eq!(r.warning.as_deref(), Some("slow"));
        assert_eq!(r.tracker_id.as_deref(), Some(&b"xyz"[..]));
        assert_eq!(r.min_interval, None);
    }

    #[test]
    fn response_hostile() {
        let fail = parse_announce_response(b"d14:failure reason63:Requested download is not authorized for use with this tracker.e");
        match fail {
            Err(TrackerError::Failure(m)) => {
                assert_eq!(
                    m,
                    "Requested download is not authorized for use with this tracker."
                )
            }
            other => panic!("{other:?}"),
        }
        let cases: &[(&[u8], &str)] = &[
            (
                b"d8:intervali60e5:peers7:1234567e",
                "7 bytes, not a multiple of 6",
            ),
            (b"d8:intervali60e6:peers65:12345e", "`peers6`"),
            (b"d5:peers0:e", "no `interval`"),
            (b"d8:intervali-1ee", "`interval` is -1"),
            (b"d8:intervali4294967296ee", "`interval` is 4294967296"),
            (b"d8:interval2:60e", "`interval` is a string"),
            (b"d8:intervali60e5:peersi3ee", "`peers` is an integer"),
            (b"d8:intervali60e5:peersli1eee", "peers[0] is an integer"),
            (b"d8:intervali60e5:peersldeee", "peers[0] has no `ip`"),
            (
                b"d8:intervali60e5:peersld2:ip1:14:porti70000eeee",
                "port 70000 out of range",
            ),
            (b"d8:intervali60e5:peers", "not bencode"),
            (b"<html>Not Found</html>", "body starts with \"<html>"),
            (b"li1ee", "found a list"),
            (b"", "end of input"),
        ];
        for (body, want) in cases {
            let e = parse_announce_response(body).unwrap_err().to_string();
            assert!(
                e.contains(want) || (*want == "not bencode" && e.contains("bencode")),
                "{:?}: {e}",
                String::from_utf8_lossy(body)
            );
        }
        // A non-string failure reason is still a failure, shown as JSON.
        assert!(matches!(
            parse_announce_response(b"d14:failure reasoni3ee"),
            Err(TrackerError::Failure(m)) if m == "3"
        ));
    }

    #[test]
    fn scrape_responses() {
        let body = b"d5:filesd20:\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67d8:completei1e10:downloadedi0e10:incompletei1eeee";
        let s = parse_scrape_response(body).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            hex::encode(s[0].0),
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(
            s[0].1,
            ScrapeResponse {
                complete: 1,
                incomplete: 1,
                downloaded: 0
            }
        );
        assert!(parse_scrape_response(b"d5:filesd3:abcdeee").is_err());
        assert!(parse_scrape_response(b"de").is_err());
        assert!(matches!(
            parse_scrape_response(b"d14:failure reason2:noe"),
            Err(TrackerError::Failure(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn reply_parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_announce_response(&data);
            let _ = parse_scrape_response(&data);
        }
    }
}
