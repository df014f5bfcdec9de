//! The built-in tracker's HTTP side: `GET /announce?...` (BEP 3, compact peers BEP 23, `peers6`
//! BEP 7) and `GET /scrape?info_hash=...` (BEP 48), one request per connection.
//!
//! Requests are read with the client's parsers ([`parse_http_request`],
//! [`parse_announce_query`], [`parse_scrape_query`]) and answered with bencoded dictionaries. What a client gets wrong
//! (a missing `info_hash`, a 19-byte `peer_id`, an unknown `event`) is answered with HTTP 200
//! and a `failure reason`, as clients expect; an unknown path gets 404, another method than GET 405, and
//! bytes that are not an HTTP request 400. At most [`ServerConfig::max_http_connections`] requests are served at once,
//! each within [`ServerConfig::http_timeout`], and a request head may not exceed
//! [`MAX_HEAD`] bytes.
//!
//! [`ServerConfig::max_http_connections`]: super::ServerConfig::max_http_connections
//! [`ServerConfig::http_timeout`]: super::ServerConfig::http_timeout

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Announce, AnnounceReply, Shared};
use crate::bencode::Value;
use crate::tracker::http1::{parse_http_request, HttpError, MAX_HEAD};
use crate::tracker::query::{parse_announce_query, parse_scrape_query};
use crate::tracker::Event;
use crate::wire::compact;

/// Accepts connections until `cancel` fires.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let (max, timeout) = {
        let s = shared.swarms();
        (s.config().max_http_connections, s.config().http_timeout)
    };
    let slots = Arc::new(Semaphore::new(max.max(1)));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(got) => got,
                Err(e) => {
                    // out of file descriptors, a connection reset before accept...
                    tracing::debug!("tracker accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = tokio::time::timeout(timeout, serve_one(stream, from, &shared)) => match r {
                    Ok(Err(e)) => tracing::debug!("tracker HTTP {from}: {e}"),
                    Err(_) => tracing::debug!("tracker HTTP {from}: timed out"),
                    Ok(Ok(())) => {}
                },
            }
        });
    }
}

/// Reads one request head, answers it, closes.
async fn serve_one(
    mut stream: TcpStream,
    from: SocketAddr,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head = loop {
        match parse_http_request(&buf) {
            Ok((head, _)) => break head,
            Err(HttpError::Incomplete) if buf.len() < MAX_HEAD => {}
            Err(e) => {
                let reply = response(400, "Bad Request", &failure(&e.to_string()));
                return stream.write_all(&reply).await;
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(()); // closed before the end of the head
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (status, reason, body) = if head.method != "GET" {
        (405, "Method Not Allowed", failure("only GET is served"))
    } else {
        respond(shared, &head.target, from, Instant::now())
    };
    stream.write_all(&response(status, reason, &body)).await?;
    stream.shutdown().await
}

/// An HTTP/1.1 response with a bencoded body; the connection closes after it.
fn response(status: u16, reason: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn failure(why: &str) -> Vec<u8> {
    Value::dict([("failure reason", Value::bytes(why))]).encode()
}

/// Status, reason and body for the request target `target` from `from`.
pub(super) fn respond(
    shared: &Shared,
    target: &str,
    from: SocketAddr,
    now: Instant,
) -> (u16, &'static str, Vec<u8>) {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let body = if path.ends_with("/announce") {
        announce(shared, target, from, now)
    } else if path.ends_with("/scrape") {
        scrape(shared, target)
    } else {
        return (
            404,
            "Not Found",
            failure("no such path: announce at /announce, scrape at /scrape"),
        );
    };
    (200, "OK", body.unwrap_or_else(|why| failure(&why)))
}

fn announce(
    shared: &Shared,
    target: &str,
    from: SocketAddr,
    now: Instant,
) -> Result<Vec<u8>, String> {
    let q = parse_announce_query(target).map_err(|e| e.to_string())?;
    let info_hash = q.info_hash.ok_or("missing info_hash")?;
    let peer_id: [u8; 20] = q
        .peer_id
        .as_deref()
        .ok_or("missing peer_id")?
        .try_into()
        .map_err(|_| "peer_id is not 20 bytes")?;
    let port = q.port.ok_or("missing port")?;
    let event = q.event().ok_or_else(|| {
        format!(
            "unknown event {:?} (started, completed, stopped or none)",
            q.event.as_deref().unwrap_or("")
        )
    })?;
    let a = Announce {
        info_hash,
        peer_id,
        addr: SocketAddr::new(from.ip(), port),
        // a client that does not say how much it lacks is not counted as a seeder
        left: q.left.unwrap_or(1),
        event,
        numwant: q.numwant.map(|n| n as usize),
    };
    let r = shared
        .swarms()
        .announce(&a, now)
        .map_err(|e| e.to_string())?;
    let compact = q.compact != Some(false);
    let no_peer_id = q.other.iter().any(|(k, v)| k == "no_peer_id" && v != b"0");
    Ok(announce_body(&r, compact, no_peer_id, event))
}

/// The announce reply: counts, and the peers either compact (`peers` with the IPv4 ones,
/// `peers6` with the IPv6 ones when there are any) or as a list of dictionaries.
fn announce_body(r: &AnnounceReply, compact: bool, no_peer_id: bool, event: Event) -> Vec<u8> {
    let mut d = vec![
        ("interval", Value::Int(i64::from(r.interval))),
        ("min interval", Value::Int(i64::from(r.min_interval))),
        ("complete", Value::Int(i64::from(r.complete))),
        ("incomplete", Value::Int(i64::from(r.incomplete))),
    ];
    // a peer that leaves needs no peers
    let peers: &[([u8; 20], SocketAddr)] = if event == Event::Stopped {
        &[]
    } else {
        &r.peers
    };
    if compact {
        let addrs: Vec<SocketAddr> = peers.iter().map(|(_, a)| *a).collect();
        let (v4, v6) = compact::emit_split(&addrs);
        d.push(("peers", Value::Bytes(v4)));
        if !v6.is_empty() {
            d.push(("peers6", Value::Bytes(v6)));
        }
    } else {
        let list = peers
            .iter()
            .map(|(id, a)| {
                let mut p = vec![
                    ("ip", Value::bytes(a.ip().to_string())),
                    ("port", Value::Int(i64::from(a.port()))),
                ];
                if !no_peer_id {
                    p.push(("peer id", Value::bytes(id)));
                }
                Value::dict(p)
            })
            .collect();
        d.push(("peers", Value::List(list)));
    }
    Value::dict(d).encode()
}

/// BEP 48: `files` maps each asked info hash (or every torrent, when none is given) to its
/// `complete`, `incomplete` and `downloaded` counts.
fn scrape(shared: &Shared, target: &str) -> Result<Vec<u8>, String> {
    let hashes = parse_scrape_query(target).map_err(|e| e.to_string())?;
    let files = shared.swarms().scrape(&hashes).into_iter().map(|(h, c)| {
        let counts = Value::dict([
            ("complete", Value::Int(i64::from(c.complete))),
            ("downloaded", Value::Int(i64::from(c.downloaded))),
            ("incomplete", Value::Int(i64::from(c.incomplete))),
        ]);
        (h, counts)
    });
    Ok(Value::dict([("files", Value::dict(files))]).encode())
}

#[cfg(test)]
mod tests {
    use super::super::{ServerConfig, Swarms};
    use super::*;
    use crate::bencode;
    use crate::tracker::query::encode_bytes;
    use crate::tracker::reply::{parse_announce_response, parse_scrape_response};
    use crate::tracker::{ScrapeResponse, TrackerError};
    use std::sync::Mutex;

    fn shared() -> Shared {
        Shared {
            swarms: Mutex::new(Swarms::new(ServerConfig::default())),
            started: Instant::now(),
        }
    }

    fn v4(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn target(hash: u8, peer: u8, port: u16, left: u64, extra: &str) -> String {
        format!(
            "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}{extra}",
            encode_bytes(&[hash; 20]),
            encode_bytes(&[peer; 20])
        )
    }

    fn get(s: &Shared, target: &str, from: SocketAddr) -> (u16, Vec<u8>) {
        let (status, _, body) = respond(s, target, from, s.started);
        (status, body)
    }

    fn failure_of(body: &[u8]) -> String {
        match parse_announce_response(body) {
            Err(TrackerError::Failure(why)) => why,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn announce_compact_dict_and_v6() {
        let s = shared();
        let (st, body) = get(
            &s,
            &target(1, 1, 6881, 0, "&event=started&compact=1"),
            v4(40001),
        );
        assert_eq!(st, 200);
        let r = parse_announce_response(&body).expect("a reply");
        assert_eq!((r.interval, r.min_interval), (120, Some(30)));
        assert!(r.peers.is_empty());
        let v6: SocketAddr = "[::1]:40002".parse().expect("addr");
        get(&s, &target(1, 2, 6882, 5, "&compact=1"), v6);
        // a third peer sees both, the IPv6 one in peers6; the port is the announced one
        let (_, body) = get(&s, &target(1, 3, 6883, 5, "&compact=1"), v4(40003));
        let r = parse_announce_response(&body).expect("a reply");
        let mut peers = r.peers.clone();
        peers.sort();
        assert_eq!(peers, [v4(6881), "[::1]:6882".parse().expect("addr")]);
        assert_eq!((r.complete, r.incomplete), (Some(1), Some(2)));
        let raw = bencode::decode(&body).expect("bencode");
        assert_eq!(
            raw.get("peers").and_then(Value::as_bytes).map(<[u8]>::len),
            Some(6)
        );
        assert_eq!(
            raw.get("peers6").and_then(Value::as_bytes).map(<[u8]>::len),
            Some(18)
        );

        // the dictionary model, with and without peer ids
        let (_, body) = get(
            &s,
            &target(1, 3, 6883, 5, "&compact=0&numwant=1"),
            v4(40003),
        );
        let raw = bencode::decode(&body).expect("bencode");
        let list = raw.get("peers").and_then(Value::as_list).expect("a list");
        assert_eq!(list.len(), 1);
        assert!(list[0].get("peer id").is_some());
        assert_eq!(
            parse_announce_response(&body).expect("reply").peers.len(),
            1
        );
        let (_, body) = get(
            &s,
            &target(1, 3, 6883, 5, "&compact=0&no_peer_id=1"),
            v4(40003),
        );
        let raw = bencode::decode(&body).expect("bencode");
        let list = raw.get("peers").and_then(Value::as_list).expect("a list");
        assert_eq!(list.len(), 2);
        assert!(list
            .iter()
            .all(|p| p.get("peer id").is_none() && p.get("ip").is_some()));
    }

    #[test]
    fn stopped_completed_and_scrape() {
        let s = shared();
        get(&s, &target(1, 1, 6881, 10, "&event=started"), v4(1));
        get(&s, &target(1, 1, 6881, 0, "&event=completed"), v4(1));
        get(&s, &target(1, 2, 6882, 10, ""), v4(2));
        get(&s, &target(2, 2, 6882, 10, ""), v4(2));
        let one = format!("info_hash={}", encode_bytes(&[1; 20]));
        let unknown = format!("info_hash={}", encode_bytes(&[3; 20]));
        let (st, body) = get(&s, &format!("/scrape?{one}&{unknown}"), v4(9));
        assert_eq!(st, 200);
        let mut got = parse_scrape_response(&body).expect("scrape");
        got.sort_by_key(|(h, _)| *h);
        let c = |complete, incomplete, downloaded| ScrapeResponse {
            complete,
            incomplete,
            downloaded,
        };
        assert_eq!(got, [([1; 20], c(1, 1, 1)), ([3; 20], c(0, 0, 0))]);
        // no info_hash: every torrent
        assert_eq!(
            parse_scrape_response(&get(&s, "/scrape", v4(9)).1)
                .expect("s")
                .len(),
            2
        );
        // stopped leaves; its reply lists nobody
        let (_, body) = get(&s, &target(1, 1, 6881, 0, "&event=stopped"), v4(1));
        assert!(parse_announce_response(&body)
            .expect("reply")
            .peers
            .is_empty());
        let got = parse_scrape_response(&get(&s, &format!("/scrape?{one}"), v4(9)).1).expect("s");
        assert_eq!(got, [([1; 20], c(0, 1, 1))]);
    }

    #[test]
    fn malformed_requests_get_a_failure_reason() {
        let s = shared();
        let hash = encode_bytes(&[1; 20]);
        let peer = encode_bytes(&[2; 20]);
        for (t, why) in [
            (
                format!("/announce?peer_id={peer}&port=1&left=0"),
                "missing info_hash",
            ),
            (
                format!("/announce?info_hash={hash}&port=1"),
                "missing peer_id",
            ),
            (
                format!("/announce?info_hash={hash}&peer_id={peer}"),
                "missing port",
            ),
            (
                format!("/announce?info_hash=%01%02&peer_id={peer}&port=1"),
                "20 bytes",
            ),
            (
                format!("/announce?info_hash={hash}&peer_id=abc&port=1"),
                "peer_id is not 20",
            ),
            (
                format!("/announce?info_hash={hash}&peer_id={peer}&port=99999"),
                "port",
            ),
            (
                format!("/announce?info_hash={hash}&peer_id={peer}&port=1&event=bogus"),
                "unknown event",
            ),
            ("/scrape?info_hash=%01".to_string(), "20 bytes"),
        ] {
            let (st, body) = get(&s, &t, v4(1));
            assert_eq!(st, 200, "{t}");
            let f = failure_of(&body);
            assert!(f.contains(why), "{t}: {f}");
        }
        let (st, body) = get(&s, "/favicon.ico", v4(1));
        assert_eq!(st, 404);
        assert!(failure_of(&body).contains("/announce"));
        assert_eq!(s.swarms().len(), (0, 0));
    }

    #[test]
    fn random_targets_never_panic() {
        let s = shared();
        let pieces = [
            "/announce",
            "/scrape",
            "?",
            "&",
            "=",
            "info_hash",
            "peer_id",
            "port",
            "left",
            "event",
            "numwant",
            "compact",
            "%",
            "%0",
            "%ff",
            "%01%02",
            "99999999999999999999",
            "-1",
            "stopped",
            "0",
            "#",
            "no_peer_id",
            "\u{0}",
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let mut t = String::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.push_str(pieces[(x % pieces.len() as u64) as usize]);
            }
            let (status, _, body) = respond(&s, &t, v4(1), s.started);
            assert!(status == 200 || status == 404, "{t}");
            assert!(crate::bencode::decode(&body).is_ok(), "{t}");
        }
    }

    #[tokio::test]
    async fn serves_over_tcp_and_survives_junk() {
        let cancel = CancellationToken::new();
        let (h, task) = super::super::Tracker::start(
            ServerConfig::default(),
            "127.0.0.1:0".parse().expect("addr"),
            cancel.clone(),
        )
        .await
        .expect("start");
        let ask = |req: Vec<u8>| async move {
            let mut s = TcpStream::connect(h.local_addr).await.expect("connect");
            s.write_all(&req).await.expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read");
            out
        };
        let junk = ask(b"\x00\x01garbage\r\n\r\n".to_vec()).await;
        assert!(
            junk.starts_with(b"HTTP/1.1 400 "),
            "{}",
            String::from_utf8_lossy(&junk)
        );
        let post = ask(b"POST /announce HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(post.starts_with(b"HTTP/1.1 405 "));
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            target(1, 1, 6881, 0, "&compact=1")
        );
        let reply = ask(req.into_bytes()).await;
        let (resp, _) =
            crate::tracker::http1::parse_http_response(&reply, true, 1 << 20).expect("response");
        assert_eq!(resp.status, 200);
        parse_announce_response(&resp.body).expect("an announce reply");
        assert_eq!(h.counts(), (1, 1));
        cancel.cancel();
        task.await.expect("the tracker stops");
    }
}
