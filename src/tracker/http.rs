//! HTTP trackers (BEP 3 announce, BEP 23 compact peers, BEP 7 `peers6`, BEP 48 scrape).
//!
//! An announce is a `GET` of the announce URL with our parameters in the query string:
//! ```text
//! GET /announce?info_hash=%124Vx%9A...&peer_id=-BT0001-...&port=6881&uploaded=0
//!     &downloaded=0&left=1024&compact=1&event=started&key=0badcafe HTTP/1.1
//! ```
//! `info_hash` and `peer_id` are raw 20-byte values, percent-encoded byte by byte (the
//! unreserved characters `A-Z a-z 0-9 - . _ ~` stay literal). The reply is a bencoded
//! dictionary: `interval` and `peers` (a string of 6-byte `IPv4 + port` entries, or a list of
//! `{ip, port, peer id}` dictionaries), or just `failure reason`.
//!
//! `http://` trackers are spoken to with the small HTTP/1.1 client in this file (one
//! connection per request, `Connection: close`), so the exact request and response bytes can
//! be reported to the [`TrackerObserver`] and traced as a TCP conversation. It reads
//! `Content-Length`, chunked and close-delimited bodies, follows up to 3 redirects, and asks
//! for `Accept-Encoding: identity` (gzip is refused). `https://` goes through reqwest, and such
//! exchanges can only be traced as "TLS, not decoded".
//!
//! The pure functions ([`announce_url`], [`parse_announce_query`],
//! [`parse_announce_response`], [`parse_scrape_response`], [`parse_http_request`],
//! [`parse_http_response`], [`decode_chunked`]) do no I/O, never panic and allocate at most
//! what their input or cap allows, so the capture analyzer can reuse them.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use percent_encoding::{percent_decode_str, AsciiSet, NON_ALPHANUMERIC};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use url::{Host, Position, Url};

use super::{
    AnnounceRequest, AnnounceResponse, Event, HttpExchange, ScrapeResponse, TlsExchange,
    TrackerConfig, TrackerError, TrackerObserver,
};
use crate::bencode::{self, Value};

/// Largest HTTP header section we accept (status line + headers).
pub const MAX_HEAD: usize = 64 * 1024;

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
fn append_query(base: &str, params: &str) -> String {
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
    let s = s.split_once('?').map_or(s, |(_, q)| q);
    let s = s.split_once('#').map_or(s, |(q, _)| q);
    let mut q = AnnounceQuery::default();
    let bad = |k: &str, v: &[u8], what: &str| {
        TrackerError::Malformed(format!(
            "query parameter {k}={:?} is not {what}",
            String::from_utf8_lossy(v)
        ))
    };
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(k).decode_utf8_lossy().into_owned();
        let val: Vec<u8> = percent_decode_str(v).collect();
        let text = || String::from_utf8_lossy(&val).into_owned();
        let num = |what| -> Result<u64, TrackerError> {
            std::str::from_utf8(&val)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| bad(&key, &val, what))
        };
        match key.as_str() {
            "info_hash" => {
                let h: [u8; 20] = val
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad(&key, &val, "20 bytes"))?;
                q.info_hash = Some(h);
            }
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

/// Decodes a BEP 23 compact peer list: 6 bytes (IPv4 + port) or, with `v6`, 18 bytes
/// (IPv6 + port) per peer, all big-endian. Returns what was wrong if the length does not fit.
pub fn parse_compact_peers(b: &[u8], v6: bool) -> Result<Vec<SocketAddr>, String> {
    let size = if v6 { 18 } else { 6 };
    if b.len() % size != 0 {
        return Err(format!(
            "compact peer list is {} bytes, not a multiple of {size}",
            b.len()
        ));
    }
    Ok(b.chunks_exact(size)
        .map(|c| {
            let (ip, port) = c.split_at(size - 2);
            let port = u16::from_be_bytes([port[0], port[1]]);
            let ip = if v6 {
                let mut a = [0u8; 16];
                a.copy_from_slice(ip);
                IpAddr::from(a)
            } else {
                IpAddr::from([ip[0], ip[1], ip[2], ip[3]])
            };
            SocketAddr::new(ip, port)
        })
        .collect())
}

/// Encodes peers in BEP 23 compact form: (IPv4 6-byte list, IPv6 18-byte list).
pub fn encode_compact_peers(peers: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for p in peers {
        match p.ip() {
            IpAddr::V4(a) => {
                v4.extend_from_slice(&a.octets());
                v4.extend_from_slice(&p.port().to_be_bytes());
            }
            IpAddr::V6(a) => {
                v6.extend_from_slice(&a.octets());
                v6.extend_from_slice(&p.port().to_be_bytes());
            }
        }
    }
    (v4, v6)
}

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
fn decode_dict(body: &[u8]) -> Result<Value, TrackerError> {
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
        Some(Value::Bytes(b)) => {
            parse_compact_peers(b, v6).map_err(|e| malformed(format!("`{field}`: {e}")))
        }
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

/// Why an HTTP message could not be parsed (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Not an error: more bytes are needed.
    #[error("incomplete HTTP message")]
    Incomplete,
    #[error("{0}")]
    Malformed(String),
    #[error("HTTP body larger than {limit} bytes")]
    TooLarge { limit: usize, claimed: Option<u64> },
}

impl From<HttpError> for TrackerError {
    fn from(e: HttpError) -> TrackerError {
        match e {
            HttpError::Incomplete => malformed("HTTP response ended early"),
            HttpError::Malformed(m) => malformed(format!("HTTP: {m}")),
            HttpError::TooLarge { limit, claimed } => TrackerError::TooLarge { limit, claimed },
        }
    }
}

/// A parsed HTTP response with its body de-chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The head of an HTTP request (trackers get `GET` without a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequestHead {
    pub method: String,
    /// `/announce?info_hash=...`: feed it to [`parse_announce_query`].
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl HttpRequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Finds the end of the header section (after the blank line); accepts bare `\n` endings.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        i = next;
    }
    None
}

/// Splits a head into its first line and `Name: value` headers.
fn parse_head(head: &[u8]) -> Result<(String, Vec<(String, String)>), HttpError> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty());
    let first = lines
        .next()
        .ok_or_else(|| HttpError::Malformed("empty message head".into()))?
        .to_string();
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| HttpError::Malformed(format!("header line without ':': {l:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((first, headers))
}

fn find_head(buf: &[u8], at_eof: bool) -> Result<usize, HttpError> {
    match head_end(&buf[..buf.len().min(MAX_HEAD)]) {
        Some(e) => Ok(e),
        None if buf.len() >= MAX_HEAD => Err(HttpError::Malformed(format!(
            "no end of headers within {MAX_HEAD} bytes"
        ))),
        None if at_eof => Err(HttpError::Malformed(format!(
            "connection closed inside the headers after {} bytes",
            buf.len()
        ))),
        None => Err(HttpError::Incomplete),
    }
}

/// Parses a request head (`GET /announce?... HTTP/1.1` + headers). Returns it and the bytes
/// it used; [`HttpError::Incomplete`] until the blank line has arrived.
pub fn parse_http_request(buf: &[u8]) -> Result<(HttpRequestHead, usize), HttpError> {
    let end = find_head(buf, false)?;
    let (first, headers) = parse_head(&buf[..end])?;
    let mut parts = first.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(format!("bad request line {first:?}")));
    };
    if !version.starts_with("HTTP/") {
        return Err(HttpError::Malformed(format!("bad request line {first:?}")));
    }
    let head = HttpRequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
    };
    Ok((head, end))
}

/// Parses one HTTP response at the start of `buf`, with its body (de-chunked). The body is
/// framed by `Transfer-Encoding: chunked`, else `Content-Length`, else by the end of the
/// connection: pass `at_eof = true` once the peer has closed. Bodies over `max_body` bytes
/// are refused before anything is allocated. Returns the response and the bytes used.
pub fn parse_http_response(
    buf: &[u8],
    at_eof: bool,
    max_body: usize,
) -> Result<(HttpResponse, usize), HttpError> {
    let end = find_head(buf, at_eof)?;
    let (first, headers) = parse_head(&buf[..end])?;
    let mut parts = first.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/"), status) else {
        return Err(HttpError::Malformed(format!("bad status line {first:?}")));
    };
    let reason = parts.next().unwrap_or_default().to_string();
    let rest = &buf[end..];
    let te = header(&headers, "transfer-encoding").unwrap_or_default();
    let done = |body: Vec<u8>, used: usize| {
        let resp = HttpResponse {
            status,
            reason: reason.clone(),
            headers: headers.clone(),
            body,
        };
        Ok((resp, end + used))
    };
    if status / 100 == 1 || status == 204 || status == 304 {
        return done(Vec::new(), 0);
    }
    if te.to_ascii_lowercase().contains("chunked") {
        return match decode_chunked(rest, max_body) {
            Ok((body, used)) => done(body, used),
            Err(HttpError::Incomplete) if at_eof => Err(HttpError::Malformed(
                "connection closed inside the chunked body".into(),
            )),
            Err(e) => Err(e),
        };
    }
    if let Some(cl) = header(&headers, "content-length") {
        let len: u64 = cl
            .parse()
            .map_err(|_| HttpError::Malformed(format!("bad Content-Length {cl:?}")))?;
        if len > max_body as u64 {
            return Err(HttpError::TooLarge {
                limit: max_body,
                claimed: Some(len),
            });
        }
        let len = len as usize;
        if rest.len() < len {
            return Err(if at_eof {
                HttpError::Malformed(format!(
                    "connection closed after {} of {len} body bytes",
                    rest.len()
                ))
            } else {
                HttpError::Incomplete
            });
        }
        return done(rest[..len].to_vec(), len);
    }
    if rest.len() > max_body {
        return Err(HttpError::TooLarge {
            limit: max_body,
            claimed: None,
        });
    }
    if !at_eof {
        return Err(HttpError::Incomplete);
    }
    done(rest.to_vec(), rest.len())
}

/// Decodes a chunked body (`<hex size>[;ext]\r\n<data>\r\n ... 0\r\n<trailers>\r\n`).
/// Returns the body and the bytes used; refuses bodies over `max` before allocating.
pub fn decode_chunked(buf: &[u8], max: usize) -> Result<(Vec<u8>, usize), HttpError> {
    let line = |pos: usize| -> Result<(&[u8], usize), HttpError> {
        let rest = buf.get(pos..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                let l = &rest[..n];
                Ok((l.strip_suffix(b"\r").unwrap_or(l), pos + n + 1))
            }
            None if rest.len() > 4096 => Err(HttpError::Malformed("chunk line too long".into())),
            None => Err(HttpError::Incomplete),
        }
    };
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let (l, next) = line(pos)?;
        let size_text = String::from_utf8_lossy(l);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16)
            .ok()
            .filter(|_| !size_text.is_empty() && size_text.len() <= 16)
            .ok_or_else(|| HttpError::Malformed(format!("bad chunk size {size_text:?}")))?;
        pos = next;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let (l, next) = line(pos)?;
                pos = next;
                if l.is_empty() {
                    return Ok((body, pos));
                }
            }
        }
        if size > (max - body.len()) as u64 {
            return Err(HttpError::TooLarge {
                limit: max,
                claimed: None,
            });
        }
        let size = size as usize;
        let Some(data) = buf.get(pos..pos + size) else {
            return Err(HttpError::Incomplete);
        };
        body.extend_from_slice(data);
        pos += size;
        let (l, next) = line(pos)?;
        if !l.is_empty() {
            return Err(HttpError::Malformed(format!(
                "chunk data not followed by CRLF at byte {pos}"
            )));
        }
        pos = next;
    }
}

/// Announces over HTTP(S).
pub async fn announce(
    url: &str,
    req: &AnnounceRequest,
    config: &TrackerConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<AnnounceResponse, TrackerError> {
    let resp = get(&announce_url(url, req), config, observer).await?;
    check_status(&resp)?;
    parse_announce_response(&resp.body).map_err(|e| explain_encoding(&resp, e))
}

/// Scrapes over HTTP(S) (BEP 48), all hashes in one request.
pub async fn scrape(
    url: &str,
    info_hashes: &[[u8; 20]],
    config: &TrackerConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<Vec<([u8; 20], ScrapeResponse)>, TrackerError> {
    let base = scrape_url(url).ok_or_else(|| TrackerError::ScrapeUnsupported(url.to_string()))?;
    let q: Vec<String> = info_hashes
        .iter()
        .map(|h| format!("info_hash={}", encode_bytes(h)))
        .collect();
    let resp = get(&append_query(&base, &q.join("&")), config, observer).await?;
    check_status(&resp)?;
    parse_scrape_response(&resp.body).map_err(|e| explain_encoding(&resp, e))
}

/// We ask for `Accept-Encoding: identity`; a tracker that compresses anyway gets named.
fn explain_encoding(resp: &HttpResponse, e: TrackerError) -> TrackerError {
    match (resp.header("content-encoding"), e) {
        (Some(enc), TrackerError::Malformed(m)) if !enc.eq_ignore_ascii_case("identity") => {
            malformed(format!(
                "body is `Content-Encoding: {enc}` although we asked for identity \
                 (bt-trace does not decompress): {m}"
            ))
        }
        (_, e) => e,
    }
}

/// A non-200 status is an error, unless the body carries a `failure reason` (then that).
fn check_status(resp: &HttpResponse) -> Result<(), TrackerError> {
    if resp.status == 200 {
        return Ok(());
    }
    if let Err(e @ TrackerError::Failure(_)) = decode_dict(&resp.body) {
        return Err(e);
    }
    Err(TrackerError::HttpStatus {
        status: resp.status,
        reason: resp.reason.clone(),
        body: resp.body[..resp.body.len().min(200)].to_vec(),
    })
}

fn parse_url(url: &str) -> Result<Url, TrackerError> {
    Url::parse(url).map_err(|e| TrackerError::InvalidUrl {
        url: url.to_string(),
        why: e.to_string(),
    })
}

/// GETs `url`, following up to `config.max_redirects` redirects (also between http and
/// https). Any status is returned; the caller judges it.
pub async fn get(
    url: &str,
    config: &TrackerConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<HttpResponse, TrackerError> {
    let mut current = parse_url(url)?;
    let mut hops = 0u8;
    loop {
        let resp = match current.scheme() {
            "http" => get_plain(&current, config, observer).await?,
            "https" => get_tls(&current, config, observer).await?,
            other => {
                return Err(TrackerError::UnsupportedScheme {
                    url: current.to_string(),
                    scheme: other.to_string(),
                })
            }
        };
        let redirect = matches!(resp.status, 301 | 302 | 303 | 307 | 308);
        match resp.header("location") {
            Some(loc) if redirect => {
                if hops >= config.max_redirects {
                    return Err(TrackerError::TooManyRedirects(config.max_redirects));
                }
                hops += 1;
                current = current.join(loc).map_err(|e| TrackerError::InvalidUrl {
                    url: loc.to_string(),
                    why: format!("bad redirect target: {e}"),
                })?;
            }
            _ => return Ok(resp),
        }
    }
}

/// The request bytes we send for `url`.
pub fn build_request(url: &Url, user_agent: &str) -> Vec<u8> {
    let target = &url[Position::BeforePath..Position::AfterQuery];
    let target = if target.is_empty() { "/" } else { target };
    let mut host = url.host_str().unwrap_or_default().to_string();
    if let Some(p) = url.port() {
        host.push_str(&format!(":{p}"));
    }
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// One plain HTTP/1.1 exchange over a fresh TCP connection, reported to the observer.
async fn get_plain(
    url: &Url,
    config: &TrackerConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<HttpResponse, TrackerError> {
    let deadline = Instant::now() + config.http_timeout;
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_string(),
        Some(Host::Ipv4(a)) => a.to_string(),
        Some(Host::Ipv6(a)) => a.to_string(),
        None => {
            return Err(TrackerError::InvalidUrl {
                url: url.to_string(),
                why: "no host".into(),
            })
        }
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let target = format!("{}:{port}", url.host_str().unwrap_or_default());
    let timeout = |what: String| TrackerError::Timeout {
        what,
        after: config.http_timeout,
    };
    let addrs: Vec<SocketAddr> =
        timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| timeout(format!("the address of {host}")))?
            .map_err(|source| TrackerError::Unreachable {
                target: target.clone(),
                source,
            })?
            .collect();
    let mut last_err = None;
    let mut stream = None;
    for a in addrs {
        match timeout_at(deadline, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(source)) => {
                last_err = Some(TrackerError::Unreachable {
                    target: format!("{target} ({a})"),
                    source,
                })
            }
            Err(_) => return Err(timeout(format!("a TCP connection to {a}"))),
        }
    }
    let Some(mut stream) = stream else {
        return Err(last_err.unwrap_or_else(|| TrackerError::Unreachable {
            target,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address found"),
        }));
    };
    let (local, remote) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(source), _) | (_, Err(source)) => return Err(TrackerError::Io { target, source }),
    };
    let request = build_request(url, &config.user_agent);
    let started = SystemTime::now();
    let mut response = Vec::new();
    let result = timeout_at(
        deadline,
        exchange(
            &mut stream,
            &request,
            &mut response,
            config.max_response_bytes,
        ),
    )
    .await;
    observer.http_exchange(&HttpExchange {
        url: url.to_string(),
        local,
        remote,
        request,
        response,
        started,
        finished: SystemTime::now(),
        complete: matches!(result, Ok(Ok(_))),
    });
    match result {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(HttpError::Incomplete)) => Err(TrackerError::Io {
            target: remote.to_string(),
            source: std::io::Error::other("connection failed mid-response"),
        }),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(timeout(format!("the HTTP response from {remote}"))),
    }
}

/// Writes the request, then reads until one full response has arrived (or EOF).
/// I/O errors come back as `Incomplete`/`Malformed` so the caller can still report the
/// bytes that did arrive.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    max_body: usize,
) -> Result<HttpResponse, HttpError> {
    let io = |e: std::io::Error| HttpError::Malformed(format!("network error: {e}"));
    stream.write_all(request).await.map_err(io)?;
    let mut chunk = vec![0u8; 64 * 1024];
    // Framing overhead (chunk lines, trailers) is bounded too, not only the body.
    let raw_cap = max_body.saturating_mul(2).saturating_add(MAX_HEAD);
    // Where the final response starts, after any `1xx` interim responses.
    let mut start = 0;
    loop {
        let at_eof = buf.len() > raw_cap; // parse as final once over the cap
        match parse_http_response(&buf[start..], false, max_body) {
            Ok((resp, used)) if resp.status / 100 == 1 && resp.status != 101 => {
                start += used;
                continue;
            }
            Ok((resp, _)) => return Ok(resp),
            Err(HttpError::Incomplete) if at_eof => {
                return Err(HttpError::TooLarge {
                    limit: max_body,
                    claimed: None,
                })
            }
            Err(HttpError::Incomplete) => {}
            Err(e) => return Err(e),
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return parse_http_response(&buf[start..], true, max_body).map(|(r, _)| r);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One HTTPS request through reqwest (no redirects: [`get`] follows them itself).
async fn get_tls(
    url: &Url,
    config: &TrackerConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<HttpResponse, TrackerError> {
    let https_err = |e: reqwest::Error| TrackerError::Https {
        url: url.to_string(),
        detail: format!("{e:#}"),
    };
    let client = reqwest::Client::builder()
        .user_agent(config.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.http_timeout)
        .build()
        .map_err(https_err)?;
    let started = SystemTime::now();
    let mut report = TlsExchange {
        url: url.to_string(),
        remote: None,
        started,
        finished: started,
        status: None,
        response_len: 0,
    };
    let result = async {
        let mut resp = client
            .get(url.as_str())
            .header("Accept-Encoding", "identity")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    TrackerError::Timeout {
                        what: format!("the HTTPS response from {url}"),
                        after: config.http_timeout,
                    }
                } else {
                    https_err(e)
                }
            })?;
        report.remote = resp.remote_addr();
        report.status = Some(resp.status().as_u16());
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(https_err)? {
            if body.len() + c.len() > config.max_response_bytes {
                return Err(TrackerError::TooLarge {
                    limit: config.max_response_bytes,
                    claimed: None,
                });
            }
            body.extend_from_slice(&c);
            report.response_len = body.len();
        }
        Ok(HttpResponse {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or_default().to_string(),
            headers,
            body,
        })
    }
    .await;
    report.finished = SystemTime::now();
    observer.tls_exchange(&report);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{NoopObserver, TrackerWire};
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn req() -> AnnounceRequest {
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

    #[test]
    fn compact_peers() {
        let b = [127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80];
        let p = parse_compact_peers(&b, false).unwrap();
        assert_eq!(
            p,
            vec![
                "127.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
        assert_eq!(encode_compact_peers(&p).0, b.to_vec());
        let e = parse_compact_peers(&b[..7], false).unwrap_err();
        assert!(e.contains("7 bytes, not a multiple of 6"), "{e}");
        let mut v6 = vec![0u8; 15];
        v6.push(1);
        v6.extend_from_slice(&[0x1a, 0xe1]);
        let p6 = parse_compact_peers(&v6, true).unwrap();
        assert_eq!(p6, vec!["[::1]:6881".parse().unwrap()]);
        assert_eq!(encode_compact_peers(&p6).1, v6);
        assert!(parse_compact_peers(&v6[..17], true).is_err());
        assert_eq!(parse_compact_peers(&[], false).unwrap(), vec![]);
    }

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

    #[test]
    fn http_response_framing() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloEXTRA";
        let (resp, used) = parse_http_response(r, false, 100).unwrap();
        assert_eq!((resp.status, resp.reason.as_str()), (200, "OK"));
        assert_eq!(resp.body, b"hello");
        assert_eq!(used, r.len() - 5);
        assert_eq!(resp.header("x"), Some("y"));
        // Every strict prefix is incomplete, never an error.
        for i in 0..used {
            assert_eq!(
                parse_http_response(&r[..i], false, 100).unwrap_err(),
                HttpError::Incomplete
            );
        }
        // Closed early.
        assert!(matches!(
            parse_http_response(&r[..46], true, 100),
            Err(HttpError::Malformed(m)) if m.contains("closed after")
        ));
        // Huge Content-Length is refused before reading (or allocating) it.
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n";
        assert_eq!(
            parse_http_response(huge, false, 1 << 21).unwrap_err(),
            HttpError::TooLarge {
                limit: 1 << 21,
                claimed: Some(99999999999999)
            }
        );
        // Close-delimited body, bare \n line endings.
        let c = b"HTTP/1.0 200 OK\nServer: x\n\nabc";
        assert_eq!(
            parse_http_response(c, false, 10).unwrap_err(),
            HttpError::Incomplete
        );
        assert_eq!(parse_http_response(c, true, 10).unwrap().0.body, b"abc");
        assert!(matches!(
            parse_http_response(c, true, 2),
            Err(HttpError::TooLarge { .. })
        ));
        // Garbage.
        assert!(parse_http_response(b"SSH-2.0-x\r\n\r\n", false, 10).is_err());
        assert!(parse_http_response(b"HTTP/1.1 abc\r\n\r\n", false, 10).is_err());
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", false, 10).is_err());
        assert!(
            parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, 10)
                .is_err()
        );
        let endless = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(
            parse_http_response(&endless, false, 10),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse_http_response(b"HTTP/1.1 200", true, 10),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn chunked() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nd8:i\r\nA\r\nntervali1e\r\n3\r\n5:p\r\n6\r\neers0:\r\n1\r\ne\r\n0\r\nTrailer: t\r\n\r\n";
        let (resp, used) = parse_http_response(r, false, 100).unwrap();
        assert_eq!(resp.body, b"d8:intervali1e5:peers0:e");
        assert_eq!(used, r.len());
        for i in 0..r.len() {
            assert_eq!(
                parse_http_response(&r[..i], false, 100).unwrap_err(),
                HttpError::Incomplete,
                "prefix {i}"
            );
        }
        assert!(matches!(
            parse_http_response(&r[..60], true, 100),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            decode_chunked(b"zz\r\n", 10),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            decode_chunked(b"ffffffffffffffff\r\n", 10),
            Err(HttpError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_chunked(b"11111111111111111\r\n", 10),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            decode_chunked(b"b\r\nabc", 10),
            Err(HttpError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_chunked(b"3\r\nabcX\r\n", 10),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(decode_chunked(b"0\n\n", 10).unwrap(), (vec![], 3));
    }

    #[test]
    fn request_head() {
        let url = Url::parse(&announce_url("http://[::1]:8080/announce", &req())).unwrap();
        let bytes = build_request(&url, "bt-trace/0.1.0");
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("GET /announce?info_hash=%124Vx%9A%BC%DE"),
            "{text}"
        );
        assert!(text.contains(" HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: bt-trace/0.1.0\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"));
        let (head, used) = parse_http_request(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(head.method, "GET");
        assert_eq!(head.header("host"), Some("[::1]:8080"));
        let q = parse_announce_query(&head.target).unwrap();
        assert_eq!(q.info_hash, Some(req().info_hash));
        assert_eq!(q.peer_id.as_deref(), Some(&req().peer_id[..]));
        // Default port: no port in Host.
        let url = Url::parse("http://tracker.example/announce").unwrap();
        assert!(String::from_utf8(build_request(&url, "x"))
            .unwrap()
            .contains("Host: tracker.example\r\n"));
        assert!(parse_http_request(b"GET /\r\n\r\n").is_err());
        assert_eq!(
            parse_http_request(b"GET / HTTP/1.1\r\n").unwrap_err(),
            HttpError::Incomplete
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), eof: bool) {
            let _ = parse_http_response(&data, eof, 64);
            let _ = parse_http_request(&data);
            let _ = decode_chunked(&data, 64);
            let _ = parse_announce_response(&data);
            let _ = parse_scrape_response(&data);
            let _ = parse_announce_query(&String::from_utf8_lossy(&data));
        }

        #[test]
        fn chunked_prefix_is_incomplete(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100), cut in 0usize..200) {
            let mut enc = Vec::new();
            for c in body.chunks(7) {
                enc.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                enc.extend_from_slice(c);
                enc.extend_from_slice(b"\r\n");
            }
            enc.extend_from_slice(b"0\r\n\r\n");
            proptest::prop_assert_eq!(decode_chunked(&enc, 1000).unwrap(), (body.clone(), enc.len()));
            let cut = cut.min(enc.len() - 1);
            proptest::prop_assert_eq!(decode_chunked(&enc[..cut], 1000).unwrap_err(), HttpError::Incomplete);
        }
    }

    /// A fake tracker: answers each connection with the next scripted response
    /// (`None`: accept and stay silent). Returns its base URL.
    async fn fake_server(
        script: Vec<Option<Vec<u8>>>,
    ) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let mut requests = Vec::new();
            for reply in script {
                let (mut s, _) = l.accept().await.unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 4096];
                while head_end(&req).is_none() {
                    let n = s.read(&mut b).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&b[..n]);
                }
                requests.push(req);
                match reply {
                    Some(r) => {
                        // Dribble the reply to exercise reassembly.
                        for part in r.chunks(5) {
                            s.write_all(part).await.unwrap();
                            s.flush().await.unwrap();
                        }
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            }
            requests
        });
        (base, h)
    }

    fn cfg() -> TrackerConfig {
        TrackerConfig {
            http_timeout: Duration::from_millis(1500),
            ..TrackerConfig::default()
        }
    }

    #[tokio::test]
    async fn fake_chunked_and_observer_bytes() {
        let reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      10\r\nd8:intervali60e5\r\n0f\r\n:peers6:\x7f\x00\x00\x01\x00\x50e\r\n0\r\n\r\n"
            .to_vec();
        let (base, h) = fake_server(vec![Some(reply.clone())]).await;
        let mut seen: Vec<TrackerWire> = Vec::new();
        let r = announce(&format!("{base}/announce"), &req(), &cfg(), &mut seen)
            .await
            .unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:80".parse().unwrap()]);
        let requests = h.await.unwrap();
        let [TrackerWire::Http(ex)] = &seen[..] else {
            panic!("{seen:?}")
        };
        assert_eq!(ex.request, requests[0]);
        assert_eq!(ex.response, reply);
        assert!(ex.complete);
        assert_eq!(ex.remote.to_string(), base.trim_start_matches("http://"));
        assert!(ex.local.ip().is_loopback());
    }

    #[tokio::test]
    async fn fake_redirects_and_failure_reason() {
        let fail = b"d14:failure reason20:unregistered torrente";
        let (base, h) = fake_server(vec![
            Some(
                b"HTTP/1.1 302 Found\r\nLocation: /real/announce?x=1\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
            ),
            Some(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", fail.len())
                    .into_bytes()
                    .into_iter()
                    .chain(fail.iter().copied())
                    .collect(),
            ),
        ])
        .await;
        let mut seen: Vec<TrackerWire> = Vec::new();
        let e = announce(&format!("{base}/announce"), &req(), &cfg(), &mut seen)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, TrackerError::Failure(m) if m == "unregistered torrent"),
            "{e}"
        );
        assert_eq!(seen.len(), 2);
        let requests = h.await.unwrap();
        assert!(requests[1].starts_with(b"GET /real/announce?x=1 HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn fake_interim_response_and_gzip() {
        let body = b"d8:intervali5e5:peers0:e";
        let mut reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n".to_vec();
        reply.extend_from_slice(body);
        let (base, _h) = fake_server(vec![Some(reply)]).await;
        let r = announce(&format!("{base}/a"), &req(), &cfg(), &mut NoopObserver)
            .await
            .unwrap();
        assert_eq!(r.interval, 5);

        let gz =
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\n\x1f\x8b\x08";
        let (base, _h) = fake_server(vec![Some(gz.to_vec())]).await;
        let e = announce(&format!("{base}/a"), &req(), &cfg(), &mut NoopObserver)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Content-Encoding: gzip"), "{e}");
    }

    #[tokio::test]
    async fn ipv6_tracker_and_peers6() {
        let l = TcpListener::bind("[::1]:0").await.unwrap();
        let url = format!("http://{}/announce", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 4096];
            while head_end(&req).is_none() {
                let n = s.read(&mut b).await.unwrap();
                req.extend_from_slice(&b[..n]);
            }
            assert!(String::from_utf8_lossy(&req).contains("\r\nHost: [::1]:"));
            let mut body = b"d8:intervali9e5:peers0:6:peers618:".to_vec();
            body.extend_from_slice(&[0; 15]);
            body.extend_from_slice(&[1, 0x1a, 0xe1, b'e']);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&body).await.unwrap();
        });
        let mut seen: Vec<TrackerWire> = Vec::new();
        let r = announce(&url, &req(), &cfg(), &mut seen).await.unwrap();
        assert_eq!(r.peers, vec!["[::1]:6881".parse().unwrap()]);
        let [TrackerWire::Http(ex)] = &seen[..] else {
            panic!()
        };
        assert!(ex.local.is_ipv6() && ex.remote.is_ipv6());
    }

    #[tokio::test]
    async fn https_failure_is_reported() {
        // A plain-text server where TLS is expected: the handshake fails, clearly.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/announce", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await; // the ClientHello
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let mut seen: Vec<TrackerWire> = Vec::new();
        let e = announce(&url, &req(), &cfg(), &mut seen).await.unwrap_err();
        assert!(matches!(e, TrackerError::Https { .. }), "{e}");
        let [TrackerWire::Tls(t)] = &seen[..] else {
            panic!("{seen:?}")
        };
        assert_eq!(t.status, None);
        assert!(t.url.starts_with("https://127.0.0.1:"));
    }

    #[tokio::test]
    async fn fake_too_many_redirects_and_status() {
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: /announce\r\n\r\n".to_vec();
        let (base, _h) = fake_server(vec![Some(redirect); 4]).await;
        let e = announce(
            &format!("{base}/announce"),
            &req(),
            &cfg(),
            &mut NoopObserver,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, TrackerError::TooManyRedirects(3)), "{e}");

        let (base, _h) = fake_server(vec![Some(
            b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nno such tracker".to_vec(),
        )])
        .await;
        let e = announce(
            &format!("{base}/announce"),
            &req(),
            &cfg(),
            &mut NoopObserver,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "tracker answered HTTP 404 Not Found: \"no such tracker\""
        );
    }

    #[tokio::test]
    async fn fake_timeout_and_huge() {
        let (base, _h) = fake_server(vec![None]).await;
        let mut seen: Vec<TrackerWire> = Vec::new();
        let c = TrackerConfig {
            http_timeout: Duration::from_millis(200),
            ..cfg()
        };
        let e = announce(&format!("{base}/announce"), &req(), &c, &mut seen)
            .await
            .unwrap_err();
        assert!(matches!(e, TrackerError::Timeout { .. }), "{e}");
        let [TrackerWire::Http(ex)] = &seen[..] else {
            panic!()
        };
        assert!(!ex.complete);
        assert!(ex.response.is_empty());

        let (base, _h) = fake_server(vec![Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4294967296000\r\n\r\nd".to_vec(),
        )])
        .await;
        let e = announce(
            &format!("{base}/announce"),
            &req(),
            &cfg(),
            &mut NoopObserver,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                e,
                TrackerError::TooLarge {
                    claimed: Some(4294967296000),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn fake_scrape_and_refused() {
        let body = b"d5:filesd20:\x12\x34\x56\x78\x9a\xbc\xde\xf1\x23\x45\x67\x89\xab\xcd\xef\x12\x34\x56\x78\x9ad8:completei2e10:downloadedi5e10:incompletei3eeee";
        let mut reply =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        reply.extend_from_slice(body);
        let (base, h) = fake_server(vec![Some(reply)]).await;
        let s = scrape(
            &format!("{base}/announce"),
            &[req().info_hash],
            &cfg(),
            &mut NoopObserver,
        )
        .await
        .unwrap();
        assert_eq!(
            s,
            vec![(
                req().info_hash,
                ScrapeResponse {
                    complete: 2,
                    incomplete: 3,
                    downloaded: 5
                }
            )]
        );
        let requests = h.await.unwrap();
        assert!(requests[0].starts_with(b"GET /scrape?info_hash=%124Vx%9A"));

        // Nothing listens on the port of a socket we just closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = announce(
            &format!("http://127.0.0.1:{port}/announce"),
            &req(),
            &cfg(),
            &mut NoopObserver,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, TrackerError::Unreachable { .. }), "{e}");
        let e = scrape(
            "http://127.0.0.1:1/a",
            &[[0; 20]],
            &cfg(),
            &mut NoopObserver,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, TrackerError::ScrapeUnsupported(_)), "{e}");
    }
}
