//! The built-in tracker: HTTP (BEP 3, 7, 23, 48) and UDP (BEP 15) on one port, as opentracker
//! serves them, for swarms on one machine or one classroom network.
//!
//! [`Tracker::start`] binds a TCP listener and a UDP socket on the same address and serves both
//! until its cancellation token fires; the demo runs it in-process, `bt-trace tracker` as a
//! command. [`Swarms`] is the whole state, kept behind one mutex that is held only for the
//! bookkeeping of one request (no I/O under it):
//! - an announce adds or refreshes a peer (its address is the one the request came from, the
//!   port the one it announced; `ip=` parameters are ignored), `stopped` removes it,
//!   `completed` counts a download, and the reply lists up to `numwant` other peers;
//! - a peer that has not announced for [`ServerConfig::peer_timeout`] is dropped, and a torrent
//!   without peers goes with it;
//! - memory is bounded: at most [`ServerConfig::max_torrents`] torrents,
//!   [`ServerConfig::max_peers_per_torrent`] peers in one and [`ServerConfig::max_peers`] in
//!   all. A full swarm drops its least recently seen peer for a new one (expired peers are gone
//!   before that); a full tracker refuses new torrents and peers with a failure reason.
//!
//! The transports are `server/udp.rs` (datagrams, connection ids) and `server/http.rs` (one
//! request per connection); both only translate requests into [`Swarms`] calls and replies
//! into bytes, with the tracker client's codecs ([`super::udp`], [`super::query`],
//! [`super::http1`]) and [`crate::wire::compact`]. Nothing a client sends can make the server panic: malformed requests get an error reply
//! (`failure reason`, UDP action 3) or are dropped.
//!
//! This module never talks to other trackers or to peers.

mod http;
mod udp;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Event, ScrapeResponse};

/// Settings of the built-in tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `interval`: how long clients wait between regular announces.
    pub interval: Duration,
    /// `min interval` (HTTP).
    pub min_interval: Duration,
    /// A peer that has not announced for this long is dropped.
    pub peer_timeout: Duration,
    /// Peers in a reply when the client does not say (`numwant`).
    pub default_numwant: usize,
    /// Peers in a reply at most, whatever `numwant` says.
    pub max_numwant: usize,
    /// Torrents tracked at most.
    pub max_torrents: usize,
    /// Peers in one torrent at most.
    pub max_peers_per_torrent: usize,
    /// Peers in all torrents at most.
    pub max_peers: usize,
    /// Info hashes in one scrape at most (a scrape without any lists every torrent, up to this).
    pub max_scrape: usize,
    /// HTTP connections served at once; more wait to be accepted.
    pub max_http_connections: usize,
    /// How long an HTTP client may take to send its request.
    pub http_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            interval: Duration::from_secs(120),
            min_interval: Duration::from_secs(30),
            peer_timeout: Duration::from_secs(300),
            default_numwant: 50,
            max_numwant: 200,
            max_torrents: 10_000,
            max_peers_per_torrent: 5_000,
            max_peers: 100_000,
            max_scrape: 1_000,
            max_http_connections: 256,
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// One announce, from either transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    /// The sender's address with the port it announced.
    pub addr: SocketAddr,
    pub left: u64,
    pub event: Event,
    /// `None`: [`ServerConfig::default_numwant`].
    pub numwant: Option<usize>,
}

/// What an announce gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceReply {
    pub interval: u32,
    pub min_interval: u32,
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// Other peers of the torrent (never the one that asked), at most `numwant`.
    pub peers: Vec<([u8; 20], SocketAddr)>,
}

/// Why an announce was refused (sent as `failure reason` or a UDP error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("tracker full: it tracks {0} torrents already")]
    TooManyTorrents(usize),
    #[error("tracker full: it tracks {0} peers already")]
    TooManyPeers(usize),
}

struct Peer {
    addr: SocketAddr,
    seeder: bool,
    last_seen: Instant,
}

#[derive(Default)]
struct Swarm {
    peers: HashMap<[u8; 20], Peer>,
    /// `completed` events seen.
    downloaded: u32,
}

impl Swarm {
    fn counts(&self) -> ScrapeResponse {
        let complete = self.peers.values().filter(|p| p.seeder).count();
        ScrapeResponse {
            complete: clamp_u32(complete),
            incomplete: clamp_u32(self.peers.len() - complete),
            downloaded: self.downloaded,
        }
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Every torrent the tracker knows, with its peers. Time is passed in (`now`) so the tests
/// can move it.
pub struct Swarms {
    cfg: ServerConfig,
    torrents: HashMap<[u8; 20], Swarm>,
    /// Peers in all torrents.
    peers: usize,
}

impl Swarms {
    pub fn new(cfg: ServerConfig) -> Swarms {
        Swarms {
            cfg,
            torrents: HashMap::new(),
            peers: 0,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Torrents and peers tracked now.
    pub fn len(&self) -> (usize, usize) {
        (self.torrents.len(), self.peers)
    }

    pub fn is_empty(&self) -> bool {
        self.torrents.is_empty()
    }

    /// Handles one announce at time `now`.
    pub fn announce(&mut self, a: &Announce, now: Instant) -> Result<AnnounceReply, Refused> {
        let timeout = self.cfg.peer_timeout;
        if a.event == Event::Stopped {
            if let Some(swarm) = self.torrents.get_mut(&a.info_hash) {
                if swarm.peers.remove(&a.peer_id).is_some() {
                    self.peers -= 1;
                }
            }
        } else {
            if !self.torrents.contains_key(&a.info_hash)
                && self.torrents.len() >= self.cfg.max_torrents
            {
                self.expire(now);
                if self.torrents.len() >= self.cfg.max_torrents {
                    return Err(Refused::TooManyTorrents(self.torrents.len()));
                }
            }
            let known = self
                .torrents
                .get(&a.info_hash)
                .is_some_and(|s| s.peers.contains_key(&a.peer_id));
            if !known && self.peers >= self.cfg.max_peers {
                self.expire(now);
                if self.peers >= self.cfg.max_peers {
                    return Err(Refused::TooManyPeers(self.peers));
                }
            }
            let swarm = self.torrents.entry(a.info_hash).or_default();
            if !known {
                let before = swarm.peers.len();
                swarm
                    .peers
                    .retain(|_, p| now.saturating_duration_since(p.last_seen) < timeout);
                if swarm.peers.len() >= self.cfg.max_peers_per_torrent {
                    let oldest = swarm
                        .peers
                        .iter()
                        .min_by_key(|(_, p)| p.last_seen)
                        .map(|(id, _)| *id);
                    if let Some(id) = oldest {
                        swarm.peers.remove(&id);
                    }
                }
                self.peers = self.peers + swarm.peers.len() + 1 - before;
            }
            let seeder = a.left == 0;
            let was_seeder = swarm.peers.get(&a.peer_id).is_some_and(|p| p.seeder);
            if a.event == Event::Completed && !was_seeder {
                swarm.downloaded = swarm.downloaded.saturating_add(1);
            }
            swarm.peers.insert(
                a.peer_id,
                Peer {
                    addr: a.addr,
                    seeder,
                    last_seen: now,
                },
            );
        }

        let want = a
            .numwant
            .unwrap_or(self.cfg.default_numwant)
            .min(self.cfg.max_numwant);
        let (counts, mut peers) = match self.torrents.get(&a.info_hash) {
            Some(swarm) => {
                let others: Vec<([u8; 20], SocketAddr)> = swarm
                    .peers
                    .iter()
                    .filter(|(id, p)| {
                        **id != a.peer_id && now.saturating_duration_since(p.last_seen) < timeout
                    })
                    .map(|(id, p)| (*id, p.addr))
                    .collect();
                (swarm.counts(), others)
            }
            None => (ScrapeResponse::default(), Vec::new()),
        };
        if peers.len() > want {
            peers.shuffle(&mut rand::thread_rng());
            peers.truncate(want);
        }
        Ok(AnnounceReply {
            interval: clamp_secs(self.cfg.interval),
            min_interval: clamp_secs(self.cfg.min_interval),
            complete: counts.complete,
            incomplete: counts.incomplete,
            peers,
        })
    }

    /// The counts of each torrent in `info_hashes` (zeros for unknown ones), or of every torrent
    /// (at most [`ServerConfig::max_scrape`]) when it is empty.
    pub fn scrape(&self, info_hashes: &[[u8; 20]]) -> Vec<([u8; 20], ScrapeResponse)> {
        if info_hashes.is_empty() {
            return self
                .torrents
                .iter()
                .take(self.cfg.max_scrape)
                .map(|(h, s)| (*h, s.counts()))
                .collect();
        }
        info_hashes
            .iter()
            .take(self.cfg.max_scrape)
            .map(|h| {
                (
                    *h,
                    self.torrents.get(h).map(Swarm::counts).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Drops the peers not seen for [`ServerConfig::peer_timeout`], and the torrents left
    /// without peers.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.cfg.peer_timeout;
        let mut left = 0;
        self.torrents.retain(|_, s| {
            s.peers
                .retain(|_, p| now.saturating_duration_since(p.last_seen) < timeout);
            left += s.peers.len();
            !s.peers.is_empty()
        });
        self.peers = left;
    }
}

fn clamp_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// What the transports share: the swarms, and when the tracker started.
struct Shared {
    swarms: Mutex<Swarms>,
    /// The base of UDP connection id epochs.
    started: Instant,
}

impl Shared {
    fn swarms(&self) -> MutexGuard<'_, Swarms> {
        // a panic while holding the lock cannot leave the counts inconsistent in a way that
        // matters more than stopping the tracker would
        self.swarms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The built-in tracker.
pub struct Tracker;

/// A running tracker: its address, and a way to look at it and stop it.
#[derive(Clone)]
pub struct TrackerHandle {
    /// Where it listens (TCP and UDP).
    pub local_addr: SocketAddr,
    cancel: CancellationToken,
    shared: Arc<Shared>,
}

impl TrackerHandle {
    /// `http://ADDR/announce`.
    pub fn http_url(&self) -> String {
        format!("http://{}/announce", self.local_addr)
    }

    /// `udp://ADDR`.
    pub fn udp_url(&self) -> String {
        format!("udp://{}", self.local_addr)
    }

    /// Torrents and peers tracked now.
    pub fn counts(&self) -> (usize, usize) {
        self.shared.swarms().len()
    }

    /// The swarm counts of one torrent.
    pub fn scrape(&self, info_hash: &[u8; 20]) -> ScrapeResponse {
        self.shared
            .swarms()
            .scrape(&[*info_hash])
            .first()
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }

    /// Stops the tracker (the same as cancelling the token it was started with).
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Tracker {
    /// Binds TCP and UDP on `bind` (port 0: any free port that is free for both) and serves
    /// until `cancel` fires. Returns the handle and the task, which ends after the token fires.
    pub async fn start(
        cfg: ServerConfig,
        bind: SocketAddr,
        cancel: CancellationToken,
    ) -> io::Result<(TrackerHandle, JoinHandle<()>)> {
        let (tcp, udp) = bind_both(bind).await?;
        let local_addr = tcp.local_addr()?;
        let shared = Arc::new(Shared {
            swarms: Mutex::new(Swarms::new(cfg)),
            started: Instant::now(),
        });
        let handle = TrackerHandle {
            local_addr,
            cancel: cancel.clone(),
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            let http = tokio::spawn(http::serve(tcp, shared.clone(), cancel.clone()));
            let udp = tokio::spawn(udp::serve(udp, shared.clone(), cancel.clone()));
            expire_loop(&shared, &cancel).await;
            for t in [http, udp] {
                if let Err(e) = t.await {
                    tracing::error!("tracker task failed: {e}");
                }
            }
        });
        Ok((handle, task))
    }
}

/// Drops expired peers now and then, until `cancel` fires.
async fn expire_loop(shared: &Shared, cancel: &CancellationToken) {
    let every = {
        let cfg = shared.swarms().cfg.clone();
        (cfg.peer_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => shared.swarms().expire(Instant::now()),
        }
    }
}

/// A TCP listener and a UDP socket on the same address. With port 0 the kernel picks the TCP
/// port, which may be taken for UDP: then try again with another.
async fn bind_both(bind: SocketAddr) -> io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..20 {
        let tcp = TcpListener::bind(bind).await?;
        let addr = tcp.local_addr()?;
        match UdpSocket::bind(addr).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if bind.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    pub(super) fn addr(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    pub(super) fn ann(hash: u8, peer: u8, port: u16, left: u64, event: Event) -> Announce {
        Announce {
            info_hash: [hash; 20],
            peer_id: [peer; 20],
            addr: addr(port),
            left,
            event,
            numwant: None,
        }
    }

    #[test]
    fn announce_lists_the_others_and_counts() {
        let mut s = Swarms::new(ServerConfig::default());
        let t0 = Instant::now();
        let r = s
            .announce(&ann(1, 1, 1001, 0, Event::Started), t0)
            .expect("ok");
        assert!(r.peers.is_empty(), "the only peer gets nobody");
        assert_eq!((r.complete, r.incomplete), (1, 0));
        assert_eq!(r.interval, 120);
        let r = s
            .announce(&ann(1, 2, 1002, 5, Event::Started), t0)
            .expect("ok");
        assert_eq!(r.peers, [([1; 20], addr(1001))]);
        assert_eq!((r.complete, r.incomplete), (1, 1));
        // another torrent is separate
        let r = s
            .announce(&ann(9, 3, 1003, 5, Event::None), t0)
            .expect("ok");
        assert!(r.peers.is_empty());
        assert_eq!(s.len(), (2, 3));
        // re-announcing does not add a peer; a new port replaces the old one
        s.announce(&ann(1, 2, 2002, 5, Event::None), t0)
            .expect("ok");
        assert_eq!(s.len(), (2, 3));
        let r = s
            .announce(&ann(1, 1, 1001, 0, Event::None), t0)
            .expect("ok");
        assert_eq!(r.peers, [([2; 20], addr(2002))]);
    }

    #[test]
    fn completed_counts_once_and_stopped_removes() {
        let mut s = Swarms::new(ServerConfig::default());
        let t0 = Instant::now();
        s.announce(&ann(1, 1, 1001, 10, Event::Started), t0)
            .expect("ok");
        s.announce(&ann(1, 1, 1001, 0, Event::Completed), t0)
            .expect("ok");
        s.announce(&ann(1, 1, 1001, 0, Event::Completed), t0)
            .expect("ok");
        s.announce(&ann(1, 2, 1002, 10, Event::Started), t0)
            .expect("ok");
        let counts = s.scrape(&[[1; 20], [7; 20]]);
        assert_eq!(
            counts,
            [
                (
                    [1; 20],
                    ScrapeResponse {
                        complete: 1,
                        incomplete: 1,
                        downloaded: 1
                    }
                ),
                ([7; 20], ScrapeResponse::default())
            ]
        );
        let r = s
            .announce(&ann(1, 1, 1001, 0, Event::Stopped), t0)
            .expect("ok");
        assert_eq!((r.complete, r.incomplete), (0, 1));
        assert_eq!(s.len(), (1, 1));
        // stopping an unknown peer or torrent is harmless
        s.announce(&ann(5, 5, 1005, 0, Event::Stopped), t0)
            .expect("ok");
        assert_eq!(s.len(), (1, 1));
        // a full scrape lists every torrent
        assert_eq!(s.scrape(&[]).len(), 1);
    }

    #[test]
    fn numwant_is_honoured_and_capped() {
        let cfg = ServerConfig {
            max_numwant: 10,
            ..Default::default()
        };
        let mut s = Swarms::new(cfg);
        let t0 = Instant::now();
        for p in 0..30u8 {
            s.announce(&ann(1, p, 1000 + u16::from(p), 1, Event::None), t0)
                .expect("ok");
        }
        let mut a = ann(1, 200, 999, 1, Event::None);
        a.numwant = Some(3);
        assert_eq!(s.announce(&a, t0).expect("ok").peers.len(), 3);
        a.numwant = Some(0);
        assert!(s.announce(&a, t0).expect("ok").peers.is_empty());
        a.numwant = Some(1000);
        let r = s.announce(&a, t0).expect("ok");
        assert_eq!(r.peers.len(), 10);
        assert!(r.peers.iter().all(|(id, _)| *id != [200; 20]));
    }

    #[test]
    fn peers_expire() {
        let mut s = Swarms::new(ServerConfig::default());
        let t0 = Instant::now();
        let timeout = s.config().peer_timeout;
        s.announce(&ann(1, 1, 1001, 0, Event::None), t0)
            .expect("ok");
        s.announce(&ann(2, 2, 1002, 0, Event::None), t0 + timeout / 2)
            .expect("ok");
        // a new peer clears its swarm's expired peers before joining
        let r = s
            .announce(&ann(1, 3, 1003, 1, Event::None), t0 + timeout)
            .expect("ok");
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete), (0, 1));
        s.expire(t0 + timeout);
        assert_eq!(s.len(), (2, 2));
        s.expire(t0 + timeout * 3);
        assert_eq!(s.len(), (0, 0));
        assert!(s.is_empty());
    }

    #[test]
    fn caps_bound_memory() {
        let cfg = ServerConfig {
            max_torrents: 2,
            max_peers_per_torrent: 3,
            max_peers: 4,
            ..Default::default()
        };
        let mut s = Swarms::new(cfg);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        // a full swarm drops its least recently seen peer
        for p in 1..=3u8 {
            let at = t0 + Duration::from_millis(u64::from(p));
            s.announce(&ann(1, p, 1000 + u16::from(p), 1, Event::None), at)
                .expect("ok");
        }
        s.announce(&ann(1, 1, 1001, 1, Event::None), later)
            .expect("ok");
        let r = s
            .announce(&ann(1, 4, 1004, 1, Event::None), later)
            .expect("ok");
        let mut ids: Vec<u8> = r.peers.iter().map(|(id, _)| id[0]).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 3], "peer 2 was the oldest");
        assert_eq!(s.len(), (1, 3));
        // a third torrent is refused while two are live
        s.announce(&ann(2, 9, 1009, 1, Event::None), later)
            .expect("ok");
        assert_eq!(
            s.announce(&ann(3, 8, 1008, 1, Event::None), later),
            Err(Refused::TooManyTorrents(2))
        );
        // the total cap refuses a fifth peer, but a known one may re-announce
        assert_eq!(
            s.announce(&ann(2, 7, 1007, 1, Event::None), later),
            Err(Refused::TooManyPeers(4))
        );
        s.announce(&ann(2, 9, 1009, 0, Event::None), later)
            .expect("ok");
        // once the old peers expire, there is room again
        let much_later = later + s.config().peer_timeout;
        s.announce(&ann(3, 8, 1008, 1, Event::None), much_later)
            .expect("room after expiry");
        assert_eq!(s.len(), (1, 1));
    }
}
