//! The small HTTP/1.1 codec of the tracker client and of the analyzer: request heads,
//! responses with `Content-Length`, chunked or close-delimited bodies, and the request bytes
//! we send.
//!
//! Contract: pure functions, no I/O; they never panic, bodies over the caller's cap are refused
//! before anything is allocated, and "incomplete" ([`HttpError::Incomplete`]) is a normal state,
//! not an error. What the bodies mean is `reply.rs`'s business; sockets are `http.rs`'s.

use url::{Position, Url};

use super::TrackerError;

/// Largest HTTP header section we accept (status line + headers).
pub const MAX_HEAD: usize = 64 * 1024;

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
            HttpError::Incomplete => TrackerError::Malformed("HTTP response ended early".into()),
            HttpError::Malformed(m) => TrackerError::Malformed(format!("HTTP: {m}")),
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
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::query::tests::req;
    use crate::tracker::query::{announce_url, parse_announce_query};

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
        fn http_parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), eof: bool) {
            let _ = parse_http_response(&data, eof, 64);
            let _ = parse_http_request(&data);
            let _ = decode_chunked(&data, 64);
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
}
