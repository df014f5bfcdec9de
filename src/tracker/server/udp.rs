//! The built-in tracker's UDP side (BEP 15): one datagram in, at most one out.
//!
//! Connection ids are not stored: an id is a keyed hash (SipHash with a random key) of the
//! client's address and the current minute since the tracker started, and the ids of this
//! minute and the last one are accepted, so an id stays valid for one to two minutes (BEP 15
//! asks for at least one) and a spoofed source address cannot get one it can use.
//!
//! Datagrams are read with the client's codec ([`crate::tracker::udp::parse_request`]) and
//! answered with [`Response::emit`]. A datagram too short to carry a transaction id (16 bytes)
//! is dropped; any other bad one gets an error (action 3) saying what is wrong.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{Announce, Shared};
use crate::tracker::udp::{parse_request, Request, Response};

/// The largest datagram read; longer ones are cut (and then malformed, or options ignored).
const MAX_DATAGRAM: usize = 2048;

/// How long one connection id epoch lasts, in seconds.
const EPOCH_SECS: u64 = 60;

/// Issues and checks connection ids.
pub(super) struct ConnIds {
    key: RandomState,
    started: Instant,
}

impl ConnIds {
    pub(super) fn new(started: Instant) -> ConnIds {
        ConnIds {
            key: RandomState::new(),
            started,
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_secs() / EPOCH_SECS
    }

    fn id(&self, from: SocketAddr, epoch: u64) -> u64 {
        let mut h = self.key.build_hasher();
        from.hash(&mut h);
        epoch.hash(&mut h);
        h.finish()
    }

    fn issue(&self, from: SocketAddr, now: Instant) -> u64 {
        self.id(from, self.epoch(now))
    }

    fn valid(&self, id: u64, from: SocketAddr, now: Instant) -> bool {
        let e = self.epoch(now);
        id == self.id(from, e) || (e > 0 && id == self.id(from, e - 1))
    }
}

/// Answers datagrams until `cancel` fires.
pub(super) async fn serve(socket: UdpSocket, shared: Arc<Shared>, cancel: CancellationToken) {
    let ids = ConnIds::new(shared.started);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(got) => got,
                Err(e) => {
                    // e.g. an ICMP error for an earlier reply: nothing to do with the next one
                    tracing::debug!("tracker UDP receive: {e}");
                    continue;
                }
            },
        };
        if let Some(reply) = handle(&shared, &ids, &buf[..n], from, Instant::now()) {
            if let Err(e) = socket.send_to(&reply, from).await {
                tracing::debug!("tracker UDP reply to {from}: {e}");
            }
        }
    }
}

/// The reply to one datagram from `from`, if any.
pub(super) fn handle(
    shared: &Shared,
    ids: &ConnIds,
    dgram: &[u8],
    from: SocketAddr,
    now: Instant,
) -> Option<Vec<u8>> {
    let error = |transaction_id, message: String| {
        Some(
            Response::Error {
                transaction_id,
                message: message.into_bytes(),
            }
            .emit(),
        )
    };
    let req = match parse_request(dgram) {
        Ok((req, _)) => req,
        Err(e) => {
            let tid = dgram.get(12..16)?.try_into().ok().map(u32::from_be_bytes)?;
            return error(tid, e.to_string());
        }
    };
    let tid = req.transaction_id();
    let connection_id = match &req {
        Request::Connect { transaction_id } => {
            return Some(
                Response::Connect {
                    transaction_id: *transaction_id,
                    connection_id: ids.issue(from, now),
                }
                .emit(),
            )
        }
        Request::Announce(p) => p.connection_id,
        Request::Scrape { connection_id, .. } => *connection_id,
        Request::Unknown { action, .. } => return error(tid, format!("unknown action {action}")),
    };
    if !ids.valid(connection_id, from, now) {
        return error(
            tid,
            "unknown or expired connection id; connect again".into(),
        );
    }
    let reply = match req {
        Request::Announce(p) => {
            let a = Announce {
                info_hash: p.info_hash,
                peer_id: p.peer_id,
                addr: SocketAddr::new(from.ip(), p.port),
                left: p.left,
                event: p.event,
                numwant: usize::try_from(p.num_want).ok(),
            };
            let r = match shared.swarms().announce(&a, now) {
                Ok(r) => r,
                Err(e) => return error(tid, e.to_string()),
            };
            // BEP 15: 6-byte peers over IPv4, 18-byte peers over IPv6, never mixed
            let peers = r
                .peers
                .into_iter()
                .map(|(_, addr)| addr)
                .filter(|addr| addr.is_ipv4() == from.is_ipv4())
                .collect();
            Response::Announce {
                transaction_id: tid,
                interval: r.interval,
                leechers: r.incomplete,
                seeders: r.complete,
                peers,
            }
        }
        Request::Scrape { info_hashes, .. } if info_hashes.is_empty() => {
            return error(tid, "scrape without info hashes".into())
        }
        Request::Scrape { info_hashes, .. } => Response::Scrape {
            transaction_id: tid,
            entries: shared
                .swarms()
                .scrape(&info_hashes)
                .into_iter()
                .map(|(_, c)| c)
                .collect(),
        },
        Request::Connect { .. } | Request::Unknown { .. } => return None,
    };
    Some(reply.emit())
}

#[cfg(test)]
mod tests {
    use super::super::{ServerConfig, Swarms};
    use super::*;
    use crate::tracker::udp::{parse_response, PROTOCOL_ID};
    use crate::tracker::ScrapeResponse;
    use std::sync::Mutex;
    use std::time::Duration;

    fn shared() -> Shared {
        Shared {
            swarms: Mutex::new(Swarms::new(ServerConfig::default())),
            started: Instant::now(),
        }
    }

    fn from(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn connect(tid: u32) -> Vec<u8> {
        let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend(0u32.to_be_bytes());
        p.extend(tid.to_be_bytes());
        p
    }

    /// A 98-byte announce, field by field as BEP 15 lays it out.
    fn announce(
        conn: u64,
        tid: u32,
        hash: u8,
        peer: u8,
        left: u64,
        event: u32,
        port: u16,
    ) -> Vec<u8> {
        let mut p = conn.to_be_bytes().to_vec();
        p.extend(1u32.to_be_bytes());
        p.extend(tid.to_be_bytes());
        p.extend([hash; 20]);
        p.extend([peer; 20]);
        p.extend(0u64.to_be_bytes()); // downloaded
        p.extend(left.to_be_bytes());
        p.extend(0u64.to_be_bytes()); // uploaded
        p.extend(event.to_be_bytes());
        p.extend(0u32.to_be_bytes()); // ip: the sender's
        p.extend(0x1234u32.to_be_bytes()); // key
        p.extend((-1i32).to_be_bytes()); // num want: default
        p.extend(port.to_be_bytes());
        assert_eq!(p.len(), 98);
        p
    }

    fn scrape(conn: u64, tid: u32, hashes: &[u8]) -> Vec<u8> {
        let mut p = conn.to_be_bytes().to_vec();
        p.extend(2u32.to_be_bytes());
        p.extend(tid.to_be_bytes());
        for h in hashes {
            p.extend([*h; 20]);
        }
        p
    }

    fn reply(s: &Shared, ids: &ConnIds, dgram: &[u8], port: u16, now: Instant) -> Response {
        let bytes = handle(s, ids, dgram, from(port), now).expect("a reply");
        parse_response(&bytes, false).expect("a valid reply").0
    }

    fn conn_id(s: &Shared, ids: &ConnIds, port: u16, now: Instant) -> u64 {
        match reply(s, ids, &connect(7), port, now) {
            Response::Connect {
                transaction_id: 7,
                connection_id,
            } => connection_id,
            other => panic!("not a connect reply: {other:?}"),
        }
    }

    #[test]
    fn connect_announce_scrape() {
        let s = shared();
        let ids = ConnIds::new(s.started);
        let now = s.started;
        let c1 = conn_id(&s, &ids, 5001, now);
        let c2 = conn_id(&s, &ids, 5002, now);
        assert_ne!(c1, c2, "ids depend on the address");

        let r = reply(&s, &ids, &announce(c1, 11, 1, 1, 0, 2, 6881), 5001, now);
        assert_eq!(
            r,
            Response::Announce {
                transaction_id: 11,
                interval: 120,
                leechers: 0,
                seeders: 1,
                peers: vec![]
            }
        );
        let r = reply(&s, &ids, &announce(c2, 12, 1, 2, 99, 2, 6882), 5002, now);
        assert_eq!(
            r,
            Response::Announce {
                transaction_id: 12,
                interval: 120,
                leechers: 1,
                seeders: 1,
                peers: vec![from(6881)]
            }
        );
        // completed, then scrape two hashes (one unknown)
        reply(&s, &ids, &announce(c2, 13, 1, 2, 0, 1, 6882), 5002, now);
        let r = reply(&s, &ids, &scrape(c1, 14, &[1, 2]), 5001, now);
        let one = ScrapeResponse {
            complete: 2,
            incomplete: 0,
            downloaded: 1,
        };
        assert_eq!(
            r,
            Response::Scrape {
                transaction_id: 14,
                entries: vec![one, ScrapeResponse::default()]
            }
        );
        // stopped removes the peer
        reply(&s, &ids, &announce(c1, 15, 1, 1, 0, 3, 6881), 5001, now);
        assert_eq!(s.swarms().len(), (1, 1));
    }

    #[test]
    fn peers_of_the_clients_family_only() {
        let s = shared();
        let ids = ConnIds::new(s.started);
        let now = s.started;
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5006));
        let c6 = match handle(&s, &ids, &connect(1), v6, now).map(|b| parse_response(&b, true)) {
            Some(Ok((Response::Connect { connection_id, .. }, _))) => connection_id,
            other => panic!("no connect reply: {other:?}"),
        };
        handle(&s, &ids, &announce(c6, 2, 1, 6, 0, 2, 6886), v6, now).expect("a reply");
        let c4 = conn_id(&s, &ids, 5004, now);
        reply(&s, &ids, &announce(c4, 3, 1, 4, 0, 2, 6884), 5004, now);
        // a third peer over IPv4 gets the IPv4 one only, in 6 bytes
        let c = conn_id(&s, &ids, 5005, now);
        let r = reply(&s, &ids, &announce(c, 4, 1, 5, 9, 2, 6885), 5005, now);
        assert!(
            matches!(r, Response::Announce { ref peers, seeders: 2, .. } if *peers == [from(6884)]),
            "{r:?}"
        );
        // and a second IPv6 peer the first one, in 18 bytes
        let v6b = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5007));
        let bytes = handle(&s, &ids, &connect(5), v6b, now).expect("reply");
        let Ok((Response::Connect { connection_id, .. }, _)) = parse_response(&bytes, true) else {
            panic!("no connect reply")
        };
        let bytes = handle(
            &s,
            &ids,
            &announce(connection_id, 6, 1, 7, 9, 0, 6887),
            v6b,
            now,
        )
        .expect("reply");
        assert_eq!(bytes.len(), 20 + 18);
        match parse_response(&bytes, true).expect("valid").0 {
            Response::Announce { peers, .. } => {
                assert_eq!(
                    peers,
                    [SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 6886))]
                )
            }
            other => panic!("not an announce reply: {other:?}"),
        }
    }

    #[test]
    fn connection_ids_are_checked_and_expire() {
        let s = shared();
        let ids = ConnIds::new(s.started);
        let t0 = s.started + Duration::from_secs(30);
        let c = conn_id(&s, &ids, 5001, t0);
        let error = |r: Response| match r {
            Response::Error {
                transaction_id,
                message,
            } => (
                transaction_id,
                String::from_utf8_lossy(&message).into_owned(),
            ),
            other => panic!("not an error: {other:?}"),
        };
        // from another address, or made up: refused
        let (tid, msg) = error(reply(&s, &ids, &announce(c, 21, 1, 1, 0, 0, 1), 5002, t0));
        assert_eq!(tid, 21);
        assert!(msg.contains("connection id"), "{msg}");
        error(reply(&s, &ids, &scrape(12345, 22, &[1]), 5001, t0));
        // valid a minute later, not two minutes later
        let later = t0 + Duration::from_secs(60);
        assert!(matches!(
            reply(&s, &ids, &scrape(c, 23, &[1]), 5001, later),
            Response::Scrape { .. }
        ));
        let too_late = t0 + Duration::from_secs(120);
        error(reply(&s, &ids, &scrape(c, 24, &[1]), 5001, too_late));
        assert_eq!(s.swarms().len(), (0, 0), "nothing was announced");
    }

    #[test]
    fn malformed_datagrams_get_an_error_or_nothing() {
        let s = shared();
        let ids = ConnIds::new(s.started);
        let now = s.started;
        let c = conn_id(&s, &ids, 5001, now);
        // too short for a transaction id: dropped
        for short in [&b""[..], b"x", &[0u8; 15]] {
            assert_eq!(handle(&s, &ids, short, from(5001), now), None);
        }
        let is_error = |dgram: &[u8], tid: u32| match reply(&s, &ids, dgram, 5001, now) {
            Response::Error { transaction_id, .. } => assert_eq!(transaction_id, tid),
            other => panic!("not an error: {other:?}"),
        };
        // a connect with the wrong magic, a short announce, a ragged scrape, an unknown action
        let mut bad_magic = connect(31);
        bad_magic[0] = 9;
        is_error(&bad_magic, 31);
        is_error(&announce(c, 32, 1, 1, 0, 0, 1)[..60], 32);
        is_error(&scrape(c, 33, &[1])[..30], 33);
        is_error(&scrape(c, 34, &[]), 34);
        let mut unknown = scrape(c, 35, &[1]);
        unknown[11] = 9;
        is_error(&unknown, 35);
        // random garbage never panics
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = handle(&s, &ids, &junk, from(5001), now);
        }
    }
}
