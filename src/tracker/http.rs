//! The HTTP(S) tracker client: announce and scrape as a `GET`, with redirects.
//!
//! `http://` trackers are spoken to with our own small HTTP/1.1 client (one connection per
//! request, `Connection: close`, codec in `http1.rs`), so the exact request and response bytes
//! can be reported to the [`TrackerObserver`] and traced as a TCP conversation. It reads
//! `Content-Length`, chunked and close-delimited bodies, follows up to 3 redirects, and asks
//! for `Accept-Encoding: identity` (gzip is refused). `https://` goes through one shared
//! reqwest client, and such exchanges can only be traced as "TLS, not decoded".
//!
//! Owns the sockets and timeouts only: query strings are `query.rs`'s, bencoded replies
//! `reply.rs`'s, HTTP framing `http1.rs`'s.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use url::{Host, Url};

use super::http1::{build_request, parse_http_response, HttpError, HttpResponse, MAX_HEAD};
use super::query::{announce_url, append_query, encode_bytes, scrape_url};
use super::reply::{decode_dict, parse_announce_response, parse_scrape_response};
use super::{
    AnnounceRequest, AnnounceResponse, HttpExchange, ScrapeResponse, TlsExchange, TrackerConfig,
    TrackerError, TrackerObserver,
};

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
            TrackerError::Malformed(format!(
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
            .map_err(|error| TrackerError::Unreachable {
                target: target.clone(),
                error,
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
            Ok(Err(error)) => {
                // the address a name resolved to, unless the URL already says it
                let target = if a.to_string() == target {
                    target.clone()
                } else {
                    format!("{target} ({a})")
                };
                last_err = Some(TrackerError::Unreachable { target, error })
            }
            Err(_) => return Err(timeout(format!("a TCP connection to {a}"))),
        }
    }
    let Some(mut stream) = stream else {
        return Err(last_err.unwrap_or_else(|| TrackerError::Unreachable {
            target,
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no address found"),
        }));
    };
    let (local, remote) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(error), _) | (_, Err(error)) => return Err(TrackerError::Io { target, error }),
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
            error: std::io::Error::other("connection failed mid-response"),
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

/// The reqwest client of every `https://` request, built on first use: its TLS setup (root
/// certificates) is done once. It keeps no idle connections, because a tracker is asked every
/// few minutes at most and a pooled connection would outlive the tokio runtime that made it
/// (each test has its own). The user agent and timeout are set per request, from the
/// [`TrackerConfig`] of that request.
fn https_client() -> Result<reqwest::Client, reqwest::Error> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()?;
    // Two first requests at once may both build one; either is fine to keep.
    Ok(CLIENT.get_or_init(|| c).clone())
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
    let client = https_client().map_err(https_err)?;
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
            .timeout(config.http_timeout)
            .header(reqwest::header::USER_AGENT, config.user_agent.as_str())
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
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
    use crate::tracker::http1::head_end;
    use crate::tracker::query::tests::req;
    use crate::tracker::{NoopObserver, TrackerWire};
    use std::time::Duration;
    use tokio::net::TcpListener;

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
