//! UDP trackers (BEP 15): a tiny binary protocol, one datagram per request and per reply.
//!
//! ```text
//! connect   → [protocol id 0x41727101980: u64][action 0: u32][transaction id: u32]        16 bytes
//!           ← [action 0][transaction id][connection id: u64]                              16 bytes
//! announce  → [connection id][action 1][transaction id][info hash: 20][peer id: 20]
//!             [downloaded: u64][left: u64][uploaded: u64][event: u32][ip: u32][key: u32]
//!             [num want: i32, -1 = default][port: u16]                                   98 bytes
//!           ← [action 1][transaction id][interval][leechers][seeders] + 6 bytes per peer
//! scrape    → [connection id][action 2][transaction id] + 20 bytes per info hash
//!           ← [action 2][transaction id] + [seeders][completed][leechers] per hash
//! error     ← [action 3][transaction id][message text]
//! ```
//! All integers are big-endian. The connection id proves to the tracker that we can receive
//! at our address (it stops spoofed announces); it stays valid for a minute, so we reuse it.
//! Over IPv6 the peers in an announce reply are 18 bytes (16-byte address + port).
//!
//! UDP may lose datagrams, so the client retransmits: BEP 15 waits 15·2ⁿ seconds, far too long
//! for a command line tool; [`UdpConfig`] sets the base wait and the number of tries. Replies
//! whose transaction id, action or length is wrong are ignored (and counted), never trusted.
//!
//! The packet codecs ([`parse_request`], [`parse_response`], [`Request::emit`],
//! [`Response::emit`]) are pure: no I/O, never panic on any input, and allocate only in
//! proportion to the datagram they are given, so the capture analyzer reuses them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

use super::{
    AnnounceRequest, AnnounceResponse, Event, ScrapeResponse, TrackerError, TrackerObserver,
    UdpDatagram,
};
use crate::wire::compact;

/// The magic constant that opens every connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// At most this many info hashes fit in one scrape request (BEP 15).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// BEP 15 action numbers.
pub mod action {
    pub const CONNECT: u32 = 0;
    pub const ANNOUNCE: u32 = 1;
    pub const SCRAPE: u32 = 2;
    pub const ERROR: u32 = 3;
}

/// Length of a BEP 15 announce request without BEP 41 options.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;

/// Retransmission settings. BEP 15 waits `15 · 2ⁿ` s; a CLI wants `base_timeout · 2ⁿ` with a
/// small base. The total wait for one request is `base · (2^tries − 1)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Wait for the first try; each retransmission doubles it.
    pub base_timeout: Duration,
    /// How many times a request is sent before giving up (at least 1).
    pub tries: u32,
    /// How long a connection id is reused (BEP 15: one minute).
    pub connection_id_ttl: Duration,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            base_timeout: Duration::from_secs(2),
            tries: 3,
            connection_id_ttl: Duration::from_secs(60),
        }
    }
}

impl UdpConfig {
    /// The wait after try `n` (0-based): `base · 2ⁿ`, the exponent capped at 8 like BEP 15.
    pub fn wait(&self, n: u32) -> Duration {
        self.base_timeout.saturating_mul(1 << n.min(8))
    }
}

/// A BEP 15 announce request, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncePacket {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Event,
    /// 0: "use the address the datagram came from".
    pub ip: Ipv4Addr,
    pub key: u32,
    /// -1: the tracker's default.
    pub num_want: i32,
    pub port: u16,
    /// Bytes after the 98 fixed ones (BEP 41 options), kept as they are.
    pub options: Vec<u8>,
}

/// A datagram sent to a UDP tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect {
        transaction_id: u32,
    },
    Announce(AnnouncePacket),
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        info_hashes: Vec<[u8; 20]>,
    },
    /// An action number we do not know, kept with its payload.
    Unknown {
        connection_id: u64,
        action: u32,
        transaction_id: u32,
        payload: Vec<u8>,
    },
}

/// A datagram received from a UDP tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Connect {
        transaction_id: u32,
        connection_id: u64,
    },
    Announce {
        transaction_id: u32,
        interval: u32,
        leechers: u32,
        seeders: u32,
        peers: Vec<SocketAddr>,
    },
    /// One entry per requested info hash, in request order.
    Scrape {
        transaction_id: u32,
        entries: Vec<ScrapeResponse>,
    },
    /// The tracker's error message (usually text).
    Error {
        transaction_id: u32,
        message: Vec<u8>,
    },
    Unknown {
        action: u32,
        transaction_id: u32,
        payload: Vec<u8>,
    },
}

/// Why a datagram is not a valid BEP 15 packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    #[error("UDP tracker packet too short: need {needed} more byte(s)")]
    Incomplete { needed: usize },
    #[error("connect request with protocol id {0:#x}, expected 0x41727101980")]
    BadProtocolId(u64),
    #[error("UDP tracker packet: {0}")]
    Malformed(String),
}

fn need(buf: &[u8], n: usize) -> Result<(), UdpError> {
    if buf.len() < n {
        Err(UdpError::Incomplete {
            needed: n - buf.len(),
        })
    } else {
        Ok(())
    }
}

// Callers check the length first (`need`), so these reads are in bounds; they still return
// 0 rather than panic if that ever were not so.
fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}
fn hash_at(b: &[u8], at: usize) -> [u8; 20] {
    b.get(at..at + 20)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 20])
}

/// Parses a datagram sent *to* a tracker. Returns the request and the bytes used (the whole
/// datagram except for a connect request, which is always 16 bytes).
pub fn parse_request(buf: &[u8]) -> Result<(Request, usize), UdpError> {
    need(buf, 16)?;
    let connection_id = u64_at(buf, 0);
    let act = u32_at(buf, 8);
    let transaction_id = u32_at(buf, 12);
    match act {
        action::CONNECT => {
            if connection_id != PROTOCOL_ID {
                return Err(UdpError::BadProtocolId(connection_id));
            }
            Ok((Request::Connect { transaction_id }, 16))
        }
        action::ANNOUNCE => {
            need(buf, ANNOUNCE_REQUEST_LEN)?;
            let p = AnnouncePacket {
                connection_id,
                transaction_id,
                info_hash: hash_at(buf, 16),
                peer_id: hash_at(buf, 36),
                downloaded: u64_at(buf, 56),
                left: u64_at(buf, 64),
                uploaded: u64_at(buf, 72),
                event: Event::from_udp_code(u32_at(buf, 80)),
                ip: Ipv4Addr::from(u32_at(buf, 84)),
                key: u32_at(buf, 88),
                num_want: u32_at(buf, 92) as i32,
                port: u16_at(buf, 96),
                options: buf[ANNOUNCE_REQUEST_LEN..].to_vec(),
            };
            Ok((Request::Announce(p), buf.len()))
        }
        action::SCRAPE => {
            let rest = &buf[16..];
            if rest.len() % 20 != 0 {
                return Err(UdpError::Malformed(format!(
                    "scrape request carries {} bytes of info hashes, not a multiple of 20",
                    rest.len()
                )));
            }
            let info_hashes = rest.chunks_exact(20).map(|c| hash_at(c, 0)).collect();
            Ok((
                Request::Scrape {
                    connection_id,
                    transaction_id,
                    info_hashes,
                },
                buf.len(),
            ))
        }
        action => Ok((
            Request::Unknown {
                connection_id,
                action,
                transaction_id,
                payload: buf[16..].to_vec(),
            },
            buf.len(),
        )),
    }
}

/// Parses a datagram sent *by* a tracker. `ipv6` says whether it came over IPv6, which makes
/// announce peers 18 bytes instead of 6. Returns the response and the bytes used.
pub fn parse_response(buf: &[u8], ipv6: bool) -> Result<(Response, usize), UdpError> {
    need(buf, 8)?;
    let act = u32_at(buf, 0);
    let transaction_id = u32_at(buf, 4);
    match act {
        action::CONNECT => {
            need(buf, 16)?;
            Ok((
                Response::Connect {
                    transaction_id,
                    connection_id: u64_at(buf, 8),
                },
                16,
            ))
        }
        action::ANNOUNCE => {
            need(buf, 20)?;
            let peers = compact::parse(&buf[20..], ipv6)
                .map_err(|e| UdpError::Malformed(format!("compact peer list is {e}")))?;
            Ok((
                Response::Announce {
                    transaction_id,
                    interval: u32_at(buf, 8),
                    leechers: u32_at(buf, 12),
                    seeders: u32_at(buf, 16),
                    peers,
                },
                buf.len(),
            ))
        }
        action::SCRAPE => {
            let rest = &buf[8..];
            if rest.len() % 12 != 0 {
                return Err(UdpError::Malformed(format!(
                    "scrape reply carries {} bytes of counts, not a multiple of 12",
                    rest.len()
                )));
            }
            let entries = rest
                .chunks_exact(12)
                .map(|c| ScrapeResponse {
                    complete: u32_at(c, 0),
                    downloaded: u32_at(c, 4),
                    incomplete: u32_at(c, 8),
                })
                .collect();
            Ok((
                Response::Scrape {
                    transaction_id,
                    entries,
                },
                buf.len(),
            ))
        }
        action::ERROR => Ok((
            Response::Error {
                transaction_id,
                message: buf[8..].to_vec(),
            },
            buf.len(),
        )),
        action => Ok((
            Response::Unknown {
                action,
                transaction_id,
                payload: buf[8..].to_vec(),
            },
            buf.len(),
        )),
    }
}

impl Request {
    pub fn transaction_id(&self) -> u32 {
        match self {
            Request::Connect { transaction_id }
            | Request::Scrape { transaction_id, .. }
            | Request::Unknown { transaction_id, .. } => *transaction_id,
            Request::Announce(p) => p.transaction_id,
        }
    }

    /// The datagram bytes.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ANNOUNCE_REQUEST_LEN);
        match self {
            Request::Connect { transaction_id } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&action::CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
            }
            Request::Announce(p) => {
                out.extend_from_slice(&p.connection_id.to_be_bytes());
                out.extend_from_slice(&action::ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&p.transaction_id.to_be_bytes());
                out.extend_from_slice(&p.info_hash);
                out.extend_from_slice(&p.peer_id);
                out.extend_from_slice(&p.downloaded.to_be_bytes());
                out.extend_from_slice(&p.left.to_be_bytes());
                out.extend_from_slice(&p.uploaded.to_be_bytes());
                out.extend_from_slice(&p.event.udp_code().to_be_bytes());
                out.extend_from_slice(&p.ip.octets());
                out.extend_from_slice(&p.key.to_be_bytes());
                out.extend_from_slice(&p.num_want.to_be_bytes());
                out.extend_from_slice(&p.port.to_be_bytes());
                out.extend_from_slice(&p.options);
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                out.extend_from_slice(&connection_id.to_be_bytes());
                out.extend_from_slice(&action::SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                for h in info_hashes {
                    out.extend_from_slice(h);
                }
            }
            Request::Unknown {
                connection_id,
                action,
                transaction_id,
                payload,
            } => {
                out.extend_from_slice(&connection_id.to_be_bytes());
                out.extend_from_slice(&action.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                out.extend_from_slice(payload);
            }
        }
        out
    }
}

impl Response {
    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect { transaction_id, .. }
            | Response::Announce { transaction_id, .. }
            | Response::Scrape { transaction_id, .. }
            | Response::Error { transaction_id, .. }
            | Response::Unknown { transaction_id, .. } => *transaction_id,
        }
    }

    /// The BEP 15 action number.
    pub fn action(&self) -> u32 {
        match self {
            Response::Connect { .. } => action::CONNECT,
            Response::Announce { .. } => action::ANNOUNCE,
            Response::Scrape { .. } => action::SCRAPE,
            Response::Error { .. } => action::ERROR,
            Response::Unknown { action, .. } => *action,
        }
    }

    /// The datagram bytes. Announce peers are written in the family they have (a tracker
    /// answering over IPv4 should only list IPv4 peers).
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.action().to_be_bytes());
        out.extend_from_slice(&self.transaction_id().to_be_bytes());
        match self {
            Response::Connect { connection_id, .. } => {
                out.extend_from_slice(&connection_id.to_be_bytes())
            }
            Response::Announce {
                interval,
                leechers,
                seeders,
                peers,
                ..
            } => {
                for n in [interval, leechers, seeders] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                let (v4, v6) = compact::emit_split(peers);
                out.extend_from_slice(&v4);
                out.extend_from_slice(&v6);
            }
            Response::Scrape { entries, .. } => {
                for e in entries {
                    for n in [e.complete, e.downloaded, e.incomplete] {
                        out.extend_from_slice(&n.to_be_bytes());
                    }
                }
            }
            Response::Error { message, .. } => out.extend_from_slice(message),
            Response::Unknown { payload, .. } => out.extend_from_slice(payload),
        }
        out
    }
}

/// Connection ids we got, per tracker address, with when we got them.
fn conn_cache() -> &'static Mutex<HashMap<SocketAddr, (u64, Instant)>> {
    static CACHE: OnceLock<Mutex<HashMap<SocketAddr, (u64, Instant)>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// One UDP socket connected to one tracker, reporting every datagram to the observer.
struct Client<'a> {
    socket: UdpSocket,
    local: SocketAddr,
    remote: SocketAddr,
    cfg: &'a UdpConfig,
    observer: &'a mut dyn TrackerObserver,
    buf: Vec<u8>,
}

impl<'a> Client<'a> {
    async fn open(
        url: &str,
        cfg: &'a UdpConfig,
        observer: &'a mut dyn TrackerObserver,
    ) -> Result<Client<'a>, TrackerError> {
        let invalid = |why: &str| TrackerError::InvalidUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(invalid("no host")),
        };
        let port = parsed
            .port()
            .ok_or_else(|| invalid("a udp:// tracker URL needs a port"))?;
        let target = format!("{}:{port}", parsed.host_str().unwrap_or_default());
        let unreachable = |error| TrackerError::Unreachable {
            target: target.clone(),
            error,
        };
        let budget = cfg.wait(cfg.tries.max(1));
        let remote = timeout_at(
            Instant::now() + budget,
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| TrackerError::Timeout {
            what: format!("the address of {host}"),
            after: budget,
        })?
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| {
            unreachable(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address found",
            ))
        })?;
        let bind: SocketAddr = if remote.is_ipv6() {
            (IpAddr::from([0u16; 8]), 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await.map_err(unreachable)?;
        socket.connect(remote).await.map_err(unreachable)?;
        let local = socket.local_addr().map_err(unreachable)?;
        Ok(Client {
            socket,
            local,
            remote,
            cfg,
            observer,
            buf: vec![0u8; 65536],
        })
    }

    fn io_error(&self, error: std::io::Error) -> TrackerError {
        let target = self.remote.to_string();
        if error.kind() == std::io::ErrorKind::ConnectionRefused {
            TrackerError::Unreachable { target, error }
        } else {
            TrackerError::Io { target, error }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), TrackerError> {
        self.socket
            .send(bytes)
            .await
            .map_err(|e| self.io_error(e))?;
        self.observer.udp_datagram(&UdpDatagram {
            local: self.local,
            remote: self.remote,
            outgoing: true,
            bytes: bytes.to_vec(),
            at: SystemTime::now(),
        });
        Ok(())
    }

    /// Sends `packet` up to `tries` times until a reply with transaction id `tid` and action
    /// `want` arrives. An error reply with our transaction id ends it with the tracker's text.
    async fn transact(
        &mut self,
        packet: &[u8],
        tid: u32,
        want: u32,
    ) -> Result<Response, TrackerError> {
        let tries = self.cfg.tries.max(1);
        let mut ignored = 0u32;
        let mut waited = Duration::ZERO;
        for n in 0..tries {
            self.send(packet).await?;
            let wait = self.cfg.wait(n);
            let deadline = Instant::now() + wait;
            waited += wait;
            loop {
                let len = match timeout_at(deadline, self.socket.recv(&mut self.buf)).await {
                    Err(_) => break, // retransmit
                    Ok(Err(e)) => return Err(self.io_error(e)),
                    Ok(Ok(len)) => len,
                };
                let bytes = &self.buf[..len];
                self.observer.udp_datagram(&UdpDatagram {
                    local: self.local,
                    remote: self.remote,
                    outgoing: false,
                    bytes: bytes.to_vec(),
                    at: SystemTime::now(),
                });
                match parse_response(bytes, self.remote.is_ipv6()) {
                    Ok((resp, _)) if resp.transaction_id() == tid => match resp {
                        Response::Error { message, .. } => {
                            return Err(TrackerError::Failure(
                                String::from_utf8_lossy(&message).into_owned(),
                            ))
                        }
                        r if r.action() == want => return Ok(r),
                        _ => ignored += 1,
                    },
                    Ok((resp, _)) => {
                        tracing::debug!(
                            "UDP tracker {}: ignoring reply with transaction id {:#x} (want {tid:#x})",
                            self.remote,
                            resp.transaction_id()
                        );
                        ignored += 1
                    }
                    // Our transaction id and action, but a broken body: the tracker did
                    // answer (a random 32-bit id is not guessed by accident), so say what
                    // was wrong now instead of timing out.
                    Err(e) if u32_at(bytes, 4) == tid && u32_at(bytes, 0) == want => {
                        let mut why = format!("reply of {len} bytes to our request: {e}");
                        if want == action::ANNOUNCE && len == 8 {
                            why.push_str(
                                " (opentracker answers like this for a torrent that is not \
                                 on its whitelist)",
                            );
                        }
                        return Err(TrackerError::Malformed(why));
                    }
                    Err(e) => {
                        tracing::debug!("UDP tracker {}: ignoring datagram: {e}", self.remote);
                        ignored += 1
                    }
                }
            }
        }
        if ignored > 0 {
            Err(TrackerError::TransactionMismatch {
                remote: self.remote,
                expected: tid,
                tries,
                ignored,
            })
        } else {
            Err(TrackerError::Timeout {
                what: format!("a reply from UDP tracker {} ({tries} tries)", self.remote),
                after: waited,
            })
        }
    }

    /// A connection id: reused from the cache if younger than the TTL, else a fresh connect.
    /// The flag says whether it came from the cache.
    async fn connection_id(&mut self) -> Result<(u64, bool), TrackerError> {
        if let Ok(cache) = conn_cache().lock() {
            if let Some(&(id, at)) = cache.get(&self.remote) {
                if at.elapsed() < self.cfg.connection_id_ttl {
                    return Ok((id, true));
                }
            }
        }
        let tid = rand::random::<u32>();
        let packet = Request::Connect {
            transaction_id: tid,
        }
        .emit();
        match self.transact(&packet, tid, action::CONNECT).await? {
            Response::Connect { connection_id, .. } => {
                if let Ok(mut cache) = conn_cache().lock() {
                    cache.insert(self.remote, (connection_id, Instant::now()));
                }
                Ok((connection_id, false))
            }
            other => Err(TrackerError::Malformed(format!(
                "expected a connect reply, got {other:?}"
            ))),
        }
    }

    fn forget_connection_id(&self) {
        if let Ok(mut cache) = conn_cache().lock() {
            cache.remove(&self.remote);
        }
    }

    /// Connects (or reuses the id), then runs one request built by `build(connection id,
    /// transaction id)`. If a cached id fails, it may have expired at the tracker: forget it
    /// and try once more with a fresh connect.
    async fn request(
        &mut self,
        want: u32,
        build: impl Fn(u64, u32) -> Request,
    ) -> Result<Response, TrackerError> {
        for attempt in 0.. {
            let (cid, cached) = self.connection_id().await?;
            let tid = rand::random::<u32>();
            let packet = build(cid, tid).emit();
            match self.transact(&packet, tid, want).await {
                Err(e) if cached && attempt == 0 => {
                    tracing::debug!(
                        "UDP tracker {}: {e}; retrying with a new connection id",
                        self.remote
                    );
                    self.forget_connection_id();
                }
                other => return other,
            }
        }
        unreachable!("the loop above returns")
    }
}

/// Announces to a `udp://host:port` tracker.
pub async fn announce(
    url: &str,
    req: &AnnounceRequest,
    cfg: &UdpConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<AnnounceResponse, TrackerError> {
    let mut c = Client::open(url, cfg, observer).await?;
    let num_want = req
        .numwant
        .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
    let resp = c
        .request(action::ANNOUNCE, |connection_id, transaction_id| {
            Request::Announce(AnnouncePacket {
                connection_id,
                transaction_id,
                info_hash: req.info_hash,
                peer_id: req.peer_id,
                downloaded: req.downloaded,
                left: req.left,
                uploaded: req.uploaded,
                event: req.event,
                ip: Ipv4Addr::UNSPECIFIED,
                key: req.key,
                num_want,
                port: req.port,
                options: Vec::new(),
            })
        })
        .await?;
    match resp {
        Response::Announce {
            interval,
            leechers,
            seeders,
            peers,
            ..
        } => Ok(AnnounceResponse {
            interval,
            min_interval: None,
            peers,
            complete: Some(seeders),
            incomplete: Some(leechers),
            warning: None,
            tracker_id: None,
        }),
        other => Err(TrackerError::Malformed(format!(
            "expected an announce reply, got {other:?}"
        ))),
    }
}

/// Scrapes a `udp://host:port` tracker (74 info hashes per datagram).
pub async fn scrape(
    url: &str,
    info_hashes: &[[u8; 20]],
    cfg: &UdpConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<Vec<([u8; 20], ScrapeResponse)>, TrackerError> {
    let mut c = Client::open(url, cfg, observer).await?;
    let mut out = Vec::with_capacity(info_hashes.len());
    for batch in info_hashes.chunks(MAX_SCRAPE_HASHES) {
        let resp = c
            .request(action::SCRAPE, |connection_id, transaction_id| {
                Request::Scrape {
                    connection_id,
                    transaction_id,
                    info_hashes: batch.to_vec(),
                }
            })
            .await?;
        let Response::Scrape { entries, .. } = resp else {
            return Err(TrackerError::Malformed(format!(
                "expected a scrape reply, got {resp:?}"
            )));
        };
        if entries.len() != batch.len() {
            return Err(TrackerError::Malformed(format!(
                "scrape reply has {} entries for {} info hashes",
                entries.len(),
                batch.len()
            )));
        }
        out.extend(batch.iter().copied().zip(entries));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{NoopObserver, TrackerWire};

    fn announce_packet() -> AnnouncePacket {
        AnnouncePacket {
            connection_id: 0x1122_3344_5566_7788,
            transaction_id: 0xdead_beef,
            info_hash: [0xab; 20],
            peer_id: *b"-BT0001-abcdefghijkl",
            downloaded: 1,
            left: 2,
            uploaded: 3,
            event: Event::Started,
            ip: Ipv4Addr::UNSPECIFIED,
            key: 0x0102_0304,
            num_want: -1,
            port: 6881,
            options: vec![],
        }
    }

    #[test]
    fn connect_bytes() {
        let b = Request::Connect {
            transaction_id: 0x0a0b_0c0d,
        }
        .emit();
        assert_eq!(
            b,
            [0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d]
        );
        assert_eq!(
            parse_request(&b).unwrap(),
            (
                Request::Connect {
                    transaction_id: 0x0a0b_0c0d
                },
                16
            )
        );
        let mut bad = b.clone();
        bad[0] = 1;
        assert!(matches!(
            parse_request(&bad),
            Err(UdpError::BadProtocolId(_))
        ));
        let reply = [0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            parse_response(&reply, false).unwrap(),
            (
                Response::Connect {
                    transaction_id: 0x0a0b_0c0d,
                    connection_id: 0x0102_0304_0506_0708
                },
                16
            )
        );
        assert_eq!(
            parse_response(&reply[..12], false).unwrap_err(),
            UdpError::Incomplete { needed: 4 }
        );
    }

    #[test]
    fn announce_request_layout() {
        let b = Request::Announce(announce_packet()).emit();
        assert_eq!(b.len(), 98);
        assert_eq!(&b[0..8], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        assert_eq!(&b[8..12], &[0, 0, 0, 1]);
        assert_eq!(&b[12..16], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&b[16..36], &[0xab; 20]);
        assert_eq!(&b[36..56], b"-BT0001-abcdefghijkl");
        assert_eq!(&b[56..64], &1u64.to_be_bytes());
        assert_eq!(&b[64..72], &2u64.to_be_bytes());
        assert_eq!(&b[72..80], &3u64.to_be_bytes());
        assert_eq!(&b[80..84], &[0, 0, 0, 2]);
        assert_eq!(&b[84..88], &[0, 0, 0, 0]);
        assert_eq!(&b[88..92], &[1, 2, 3, 4]);
        assert_eq!(&b[92..96], &[0xff; 4]);
        assert_eq!(&b[96..98], &[0x1a, 0xe1]);
        assert_eq!(
            parse_request(&b).unwrap(),
            (Request::Announce(announce_packet()), 98)
        );
        // BEP 41 options are kept; truncation says how much is missing.
        let mut with_opts = b.clone();
        with_opts.extend_from_slice(&[2, 3, b'/', b'a', b'n']);
        let (Request::Announce(p), used) = parse_request(&with_opts).unwrap() else {
            panic!()
        };
        assert_eq!((p.options.len(), used), (5, 103));
        assert_eq!(
            parse_request(&b[..97]).unwrap_err(),
            UdpError::Incomplete { needed: 1 }
        );
        for i in 0..16 {
            assert!(matches!(
                parse_request(&b[..i]),
                Err(UdpError::Incomplete { .. })
            ));
        }
    }

    #[test]
    fn announce_reply() {
        let mut b = vec![
            0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0x07, 0x08, 0, 0, 0, 2, 0, 0, 0, 1,
        ];
        b.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 1, 2, 3, 0, 80]);
        let (r, used) = parse_response(&b, false).unwrap();
        assert_eq!(used, b.len());
        assert_eq!(
            r,
            Response::Announce {
                transaction_id: 9,
                interval: 1800,
                leechers: 2,
                seeders: 1,
                peers: vec![
                    "127.0.0.1:6881".parse().unwrap(),
                    "10.1.2.3:80".parse().unwrap()
                ]
            }
        );
        assert_eq!(r.emit(), b);
        // Over IPv6 the same 12 bytes are not a whole 18-byte peer.
        assert!(matches!(
            parse_response(&b, true),
            Err(UdpError::Malformed(_))
        ));
        let e = parse_response(&b[..25], false).unwrap_err();
        assert!(
            e.to_string().contains("5 bytes, not a multiple of 6"),
            "{e}"
        );
        let mut v6 = b[..20].to_vec();
        v6.extend_from_slice(&[0; 15]);
        v6.extend_from_slice(&[1, 0x1a, 0xe1]);
        let (Response::Announce { peers, .. }, _) = parse_response(&v6, true).unwrap() else {
            panic!()
        };
        assert_eq!(peers, vec!["[::1]:6881".parse().unwrap()]);
        assert_eq!(
            parse_response(&b[..19], false).unwrap_err(),
            UdpError::Incomplete { needed: 1 }
        );
    }

    #[test]
    fn scrape_and_error() {
        let req = Request::Scrape {
            connection_id: 5,
            transaction_id: 6,
            info_hashes: vec![[1; 20], [2; 20]],
        };
        let b = req.emit();
        assert_eq!(b.len(), 56);
        assert_eq!(parse_request(&b).unwrap(), (req, 56));
        assert!(matches!(
            parse_request(&b[..55]),
            Err(UdpError::Malformed(_))
        ));

        let reply = [0, 0, 0, 2, 0, 0, 0, 6, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5];
        let (r, _) = parse_response(&reply, false).unwrap();
        assert_eq!(
            r,
            Response::Scrape {
                transaction_id: 6,
                entries: vec![ScrapeResponse {
                    complete: 3,
                    downloaded: 4,
                    incomplete: 5
                }]
            }
        );
        assert_eq!(r.emit(), reply);
        assert!(matches!(
            parse_response(&reply[..19], false),
            Err(UdpError::Malformed(_))
        ));

        let err = b"\x00\x00\x00\x03\x00\x00\x00\x06not whitelisted";
        assert_eq!(
            parse_response(err, false).unwrap().0,
            Response::Error {
                transaction_id: 6,
                message: b"not whitelisted".to_vec()
            }
        );
        let unk = [0, 0, 0, 9, 0, 0, 0, 1, 0xff];
        assert_eq!(
            parse_response(&unk, false).unwrap().0,
            Response::Unknown {
                action: 9,
                transaction_id: 1,
                payload: vec![0xff]
            }
        );
        let unk_req = Request::Unknown {
            connection_id: 1,
            action: 7,
            transaction_id: 2,
            payload: vec![3],
        };
        assert_eq!(parse_request(&unk_req.emit()).unwrap().0, unk_req);
    }

    #[test]
    fn backoff() {
        let c = UdpConfig::default();
        assert_eq!(c.wait(0), Duration::from_secs(2));
        assert_eq!(c.wait(2), Duration::from_secs(8));
        assert_eq!(c.wait(20), Duration::from_secs(512));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), v6: bool) {
            let _ = parse_request(&data);
            let _ = parse_response(&data, v6);
        }

        #[test]
        fn announce_round_trip(cid: u64, tid: u32, ih: [u8; 20], pid: [u8; 20], d: u64, l: u64, u: u64,
                               ev: u32, key: u32, nw: i32, port: u16,
                               opts in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20)) {
            let p = Request::Announce(AnnouncePacket {
                connection_id: cid, transaction_id: tid, info_hash: ih, peer_id: pid, downloaded: d,
                left: l, uploaded: u, event: Event::from_udp_code(ev), ip: Ipv4Addr::UNSPECIFIED,
                key, num_want: nw, port, options: opts,
            });
            let b = p.emit();
            proptest::prop_assert_eq!(parse_request(&b).unwrap(), (p, b.len()));
        }
    }

    /// Replies to one request, built from its transaction id.
    type Reply = Box<dyn Fn(u32) -> Vec<Vec<u8>> + Send>;

    /// A fake UDP tracker answering each received datagram with the scripted replies
    /// (built from the request's transaction id). Returns its address.
    async fn fake_tracker(script: Vec<Reply>) -> SocketAddr {
        fake_tracker_on("127.0.0.1:0", script).await
    }

    async fn fake_tracker_on(bind: &str, script: Vec<Reply>) -> SocketAddr {
        let s = UdpSocket::bind(bind).await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            for replies in script {
                let Ok((n, from)) = s.recv_from(&mut buf).await else {
                    return;
                };
                let tid = u32_at(&buf[..n], 12);
                for r in replies(tid) {
                    let _ = s.send_to(&r, from).await;
                }
            }
            // Keep the socket open (silent) for a while.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        addr
    }

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [7; 20],
            peer_id: [8; 20],
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 1,
            event: Event::Started,
            numwant: Some(10),
            key: 1,
        }
    }

    fn fast() -> UdpConfig {
        UdpConfig {
            base_timeout: Duration::from_millis(100),
            tries: 3,
            connection_id_ttl: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn ignores_wrong_ids_and_short_replies() {
        let addr = fake_tracker(vec![
            Box::new(|tid| {
                vec![
                    vec![0, 0, 0, 0, 1, 2, 3], // short
                    Response::Connect {
                        transaction_id: tid ^ 1,
                        connection_id: 1,
                    }
                    .emit(), // wrong id
                    Response::Connect {
                        transaction_id: tid,
                        connection_id: 42,
                    }
                    .emit(),
                ]
            }),
            Box::new(|tid| {
                vec![
                    Response::Error {
                        transaction_id: tid.wrapping_add(1),
                        message: b"spoofed".to_vec(),
                    }
                    .emit(),
                    Response::Announce {
                        transaction_id: tid,
                        interval: 60,
                        leechers: 1,
                        seeders: 2,
                        peers: vec!["127.0.0.1:1".parse().unwrap()],
                    }
                    .emit(),
                ]
            }),
        ])
        .await;
        let mut seen: Vec<TrackerWire> = Vec::new();
        let r = announce(
            &format!("udp://{addr}/announce"),
            &req(),
            &fast(),
            &mut seen,
        )
        .await
        .unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:1".parse().unwrap()]);
        assert_eq!(
            (r.complete, r.incomplete, r.interval),
            (Some(2), Some(1), 60)
        );
        // connect out, 3 in, announce out, 2 in.
        let dirs: Vec<bool> = seen
            .iter()
            .map(|w| match w {
                TrackerWire::Udp(d) => d.outgoing,
                _ => panic!(),
            })
            .collect();
        assert_eq!(dirs, [true, false, false, false, true, false, false]);
        let TrackerWire::Udp(d) = &seen[4] else {
            panic!()
        };
        let (Request::Announce(p), _) = parse_request(&d.bytes).unwrap() else {
            panic!()
        };
        assert_eq!((p.connection_id, p.num_want, p.port), (42, 10, 6881));
        assert_eq!(d.remote, addr);
        assert!(d.local.ip().is_loopback());
    }

    #[tokio::test]
    async fn ipv6_tracker_gives_18_byte_peers() {
        let addr = fake_tracker_on(
            "[::1]:0",
            vec![
                Box::new(|tid| {
                    vec![Response::Connect {
                        transaction_id: tid,
                        connection_id: 9,
                    }
                    .emit()]
                }),
                Box::new(|tid| {
                    vec![Response::Announce {
                        transaction_id: tid,
                        interval: 30,
                        leechers: 0,
                        seeders: 1,
                        peers: vec!["[::1]:6881".parse().unwrap()],
                    }
                    .emit()]
                }),
            ],
        )
        .await;
        let mut seen: Vec<TrackerWire> = Vec::new();
        let r = announce(
            &format!("udp://{addr}/announce"),
            &req(),
            &fast(),
            &mut seen,
        )
        .await
        .unwrap();
        assert_eq!(r.peers, vec!["[::1]:6881".parse().unwrap()]);
        let TrackerWire::Udp(d) = &seen[0] else {
            panic!()
        };
        assert!(d.local.is_ipv6() && d.remote.is_ipv6());
    }

    #[tokio::test]
    async fn retransmits_then_mismatch_or_timeout() {
        // Only wrong transaction ids: a mismatch error after `tries` sends.
        let wrong: Vec<Reply> = (0..3)
            .map(|_| {
                Box::new(|tid: u32| {
                    vec![Response::Connect {
                        transaction_id: tid ^ 0xff,
                        connection_id: 1,
                    }
                    .emit()]
                }) as Reply
            })
            .collect();
        let addr = fake_tracker(wrong).await;
        let mut seen: Vec<TrackerWire> = Vec::new();
        let e = announce(&format!("udp://{addr}"), &req(), &fast(), &mut seen)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                TrackerError::TransactionMismatch {
                    tries: 3,
                    ignored: 3,
                    ..
                }
            ),
            "{e}"
        );
        let sent = seen
            .iter()
            .filter(|w| matches!(w, TrackerWire::Udp(d) if d.outgoing))
            .count();
        assert_eq!(sent, 3);

        // Silence: a timeout naming the tries.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let e = announce(&format!("udp://{addr}"), &req(), &fast(), &mut NoopObserver)
            .await
            .unwrap_err();
        assert!(matches!(e, TrackerError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("(3 tries)"), "{e}");
        let mut buf = [0u8; 100];
        let mut got = 0;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(10), silent.recv(&mut buf)).await
        {
            assert_eq!(n, 16);
            got += 1;
        }
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn error_reply_and_bad_urls() {
        let addr = fake_tracker(vec![Box::new(|tid| {
            vec![Response::Error {
                transaction_id: tid,
                message: b"go away".to_vec(),
            }
            .emit()]
        })])
        .await;
        let e = announce(&format!("udp://{addr}"), &req(), &fast(), &mut NoopObserver)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, TrackerError::Failure(m) if m == "go away"),
            "{e}"
        );
        // Our id and action with a truncated body (what opentracker sends for a torrent
        // that is not whitelisted): malformed at once, no waiting.
        let addr = fake_tracker(vec![
            Box::new(|tid| {
                vec![Response::Connect {
                    transaction_id: tid,
                    connection_id: 3,
                }
                .emit()]
            }),
            Box::new(|tid| {
                let mut r = action::ANNOUNCE.to_be_bytes().to_vec();
                r.extend_from_slice(&tid.to_be_bytes());
                vec![r]
            }),
        ])
        .await;
        let e = announce(&format!("udp://{addr}"), &req(), &fast(), &mut NoopObserver)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("reply of 8 bytes"), "{e}");
        assert!(e.to_string().contains("whitelist"), "{e}");
        let e = announce(
            "udp://127.0.0.1/announce",
            &req(),
            &fast(),
            &mut NoopObserver,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("needs a port"), "{e}");

        // A closed port answers with ICMP "port unreachable": a quick, clear error.
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let e = announce(
            &format!("udp://{closed}"),
            &req(),
            &fast(),
            &mut NoopObserver,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, TrackerError::Unreachable { .. }), "{e}");
    }
}
