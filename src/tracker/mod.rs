//! Trackers: asking "who else has this torrent?" (BEP 3, 12, 15, 23, 48).
//!
//! A tracker answers an *announce* (our info hash, peer id, port and progress) with a list of
//! peers and how long to wait before asking again; a *scrape* asks only for swarm counts. Two
//! transports exist:
//! - HTTP: `GET /announce?info_hash=...` with a bencoded reply (BEP 3, compact peers BEP 23,
//!   IPv6 `peers6` BEP 7, scrape BEP 48), in four files by concern: [`query`] (the query
//!   string), [`reply`] (the bencoded replies), [`http1`] (HTTP/1.1 framing) and [`http`] (the
//!   client: `http://` through our own small HTTP/1.1 client so the exact request and response
//!   bytes can be traced, `https://` through one shared reqwest client). Compact peer lists are
//!   [`crate::wire::compact`]'s.
//! - [`udp`]: the binary BEP 15 protocol (connect, then announce/scrape), with retransmissions.
//!
//! A torrent may list several trackers in tiers (BEP 12): [`announce_tiers`] tries them in order,
//! and [`Tiers`] does the one-time shuffle BEP 12 asks for.
//!
//! [`server`] is the other side: the built-in tracker (`bt-trace tracker`).
//!
//! Every byte exchanged with a tracker is reported to a [`TrackerObserver`], which is how the
//! recorder (`--trace`) turns tracker traffic into pcapng frames.
//!
//! Contract: the pure parsers ([`reply::parse_announce_response`], [`query::parse_announce_query`],
//! [`http1::parse_http_response`], [`udp::parse_request`], [`udp::parse_response`]) never panic
//! on any input and never allocate more than their configured caps.

pub mod http;
pub mod http1;
pub mod query;
pub mod reply;
pub mod server;
pub mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use udp::UdpConfig;

/// The `event` of an announce (BEP 3; BEP 15 gives them numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Event {
    /// A regular re-announce (no `event` parameter; UDP value 0).
    #[default]
    None,
    /// UDP value 1.
    Completed,
    /// First announce of a download (UDP value 2).
    Started,
    /// We are leaving the swarm (UDP value 3).
    Stopped,
    /// A UDP event number we do not know (kept so the analyzer can show it).
    Unknown(u32),
}

impl Event {
    /// The BEP 15 number of this event.
    pub fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
            Event::Unknown(n) => n,
        }
    }

    /// The event for a BEP 15 number.
    pub fn from_udp_code(n: u32) -> Event {
        match n {
            0 => Event::None,
            1 => Event::Completed,
            2 => Event::Started,
            3 => Event::Stopped,
            n => Event::Unknown(n),
        }
    }

    /// The value of the HTTP `event` parameter, or `None` when the parameter is left out
    /// (regular announces, and unknown events, which HTTP has no spelling for).
    pub fn http_value(self) -> Option<&'static str> {
        match self {
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
            Event::None | Event::Unknown(_) => None,
        }
    }

    /// The event for an HTTP `event` value (`""` and `"empty"` mean a regular announce).
    pub fn from_http_value(s: &str) -> Option<Event> {
        match s {
            "started" => Some(Event::Started),
            "completed" => Some(Event::Completed),
            "stopped" => Some(Event::Stopped),
            "" | "empty" => Some(Event::None),
            _ => None,
        }
    }
}

/// What we tell a tracker in an announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    /// The TCP port we accept peers on.
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes still missing (≥ 1 when unknown, e.g. for magnets).
    pub left: u64,
    pub event: Event,
    /// How many peers we would like (`None`: the tracker's default).
    pub numwant: Option<u32>,
    /// A random number that identifies us across IP changes.
    pub key: u32,
}

/// A tracker's answer to an announce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    /// Seconds to wait before the next regular announce.
    pub interval: u32,
    /// Seconds below which the tracker refuses re-announces (HTTP only).
    pub min_interval: Option<u32>,
    /// IPv4 and IPv6 peers, in the tracker's order (`peers` first, then `peers6`).
    pub peers: Vec<SocketAddr>,
    /// Seeders.
    pub complete: Option<u32>,
    /// Leechers.
    pub incomplete: Option<u32>,
    /// `warning message`: the announce worked, but the tracker wants us to know something.
    pub warning: Option<String>,
    /// `tracker id`: to be sent back in later announces (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
}

/// Swarm counts for one info hash, from a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeResponse {
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// How many times the download was completed.
    pub downloaded: u32,
}

/// Everything that can go wrong talking to a tracker.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("invalid tracker URL {url:?}: {why}")]
    InvalidUrl { url: String, why: String },
    #[error(
        "unsupported tracker URL scheme {scheme:?} in {url} (bt-trace speaks http, https and udp)"
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("cannot reach tracker {target}: {error}")]
    Unreachable {
        target: String,
        error: std::io::Error,
    },
    #[error("timed out after {after:.1?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error(
        "UDP tracker {remote} sent no valid reply with transaction id {expected:#010x} after \
         {tries} tries ({ignored} datagram(s) ignored: wrong transaction id, action or length)"
    )]
    TransactionMismatch {
        remote: SocketAddr,
        expected: u32,
        tries: u32,
        ignored: u32,
    },
    #[error("tracker answered HTTP {status} {reason}{}", body_hint(.body))]
    HttpStatus {
        status: u16,
        reason: String,
        body: Vec<u8>,
    },
    /// The tracker refused: its `failure reason` (HTTP) or error message (UDP), verbatim.
    #[error("tracker failure: {0}")]
    Failure(String),
    #[error("malformed tracker response: {0}")]
    Malformed(String),
    #[error("tracker response larger than the {limit}-byte limit{}", claimed.map(|c| format!(" (it announced {c} bytes)")).unwrap_or_default())]
    TooLarge { limit: usize, claimed: Option<u64> },
    #[error("more than {0} HTTP redirects")]
    TooManyRedirects(u8),
    #[error("tracker {0} has no scrape URL (its path does not end in /announce..., BEP 48)")]
    ScrapeUnsupported(String),
    #[error("HTTPS request to {url} failed: {detail}")]
    Https { url: String, detail: String },
    #[error("network error talking to {target}: {error}")]
    Io {
        target: String,
        error: std::io::Error,
    },
    #[error("the torrent lists no trackers")]
    NoTrackers,
    #[error("all {} trackers failed: {}", .0.len(), all_failed(.0))]
    AllFailed(Vec<(String, TrackerError)>),
}

fn body_hint(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    format!(": {:?}", text.trim())
}

fn all_failed(list: &[(String, TrackerError)]) -> String {
    list.iter()
        .map(|(url, e)| format!("{url}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Settings for tracker exchanges.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Whole HTTP(S) exchange, from DNS to the last response byte (per redirect hop).
    pub http_timeout: Duration,
    /// Largest HTTP response body we accept.
    pub max_response_bytes: usize,
    /// How many HTTP redirects we follow.
    pub max_redirects: u8,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Retransmission settings for UDP trackers.
    pub udp: UdpConfig,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            http_timeout: Duration::from_secs(10),
            max_response_bytes: 2 * 1024 * 1024,
            max_redirects: 3,
            user_agent: concat!("bt-trace/", env!("CARGO_PKG_VERSION")).to_string(),
            udp: UdpConfig::default(),
        }
    }
}

/// One plain-HTTP exchange (one TCP connection): the exact bytes we wrote and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpExchange {
    /// The URL requested (each redirect hop is its own exchange).
    pub url: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub request: Vec<u8>,
    /// Everything read from the socket, possibly partial (see `complete`).
    pub response: Vec<u8>,
    /// When the connection was established.
    pub started: SystemTime,
    /// When the last byte was read (or the exchange was abandoned).
    pub finished: SystemTime,
    /// `false` when the response was cut short (timeout, error, size limit).
    pub complete: bool,
}

/// One UDP datagram sent to or received from a tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `true` for datagrams we sent.
    pub outgoing: bool,
    pub bytes: Vec<u8>,
    pub at: SystemTime,
}

/// An HTTPS exchange: encrypted, so only its endpoints and outcome can be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsExchange {
    pub url: String,
    /// The tracker's address, when reqwest got far enough to know it.
    pub remote: Option<SocketAddr>,
    pub started: SystemTime,
    pub finished: SystemTime,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Body bytes received.
    pub response_len: usize,
}

/// Receives the wire bytes of every tracker exchange, for tracing. All methods default to
/// doing nothing. Calls happen after the bytes went on (or came off) the wire, in order.
///
/// Pass `&mut NoopObserver` when not tracing, `&mut Vec<TrackerWire>` to collect events,
/// or an `Arc<Mutex<T>>` to share one observer between tasks.
pub trait TrackerObserver: Send {
    fn http_exchange(&mut self, _ex: &HttpExchange) {}
    fn udp_datagram(&mut self, _d: &UdpDatagram) {}
    fn tls_exchange(&mut self, _ex: &TlsExchange) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;
impl TrackerObserver for NoopObserver {}

/// One observed tracker exchange, owned (what `Vec<TrackerWire>` collects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerWire {
    Http(HttpExchange),
    Udp(UdpDatagram),
    Tls(TlsExchange),
}

impl TrackerObserver for Vec<TrackerWire> {
    fn http_exchange(&mut self, ex: &HttpExchange) {
        self.push(TrackerWire::Http(ex.clone()));
    }
    fn udp_datagram(&mut self, d: &UdpDatagram) {
        self.push(TrackerWire::Udp(d.clone()));
    }
    fn tls_exchange(&mut self, ex: &TlsExchange) {
        self.push(TrackerWire::Tls(ex.clone()));
    }
}

impl<T: TrackerObserver + ?Sized> TrackerObserver for &mut T {
    fn http_exchange(&mut self, ex: &HttpExchange) {
        (**self).http_exchange(ex)
    }
    fn udp_datagram(&mut self, d: &UdpDatagram) {
        (**self).udp_datagram(d)
    }
    fn tls_exchange(&mut self, ex: &TlsExchange) {
        (**self).tls_exchange(ex)
    }
}

impl<T: TrackerObserver + ?Sized> TrackerObserver for Box<T> {
    fn http_exchange(&mut self, ex: &HttpExchange) {
        (**self).http_exchange(ex)
    }
    fn udp_datagram(&mut self, d: &UdpDatagram) {
        (**self).udp_datagram(d)
    }
    fn tls_exchange(&mut self, ex: &TlsExchange) {
        (**self).tls_exchange(ex)
    }
}

/// A shared observer: each call locks the mutex briefly (never across an `.await`).
impl<T: TrackerObserver + ?Sized> TrackerObserver for Arc<Mutex<T>> {
    fn http_exchange(&mut self, ex: &HttpExchange) {
        if let Ok(mut o) = self.lock() {
            o.http_exchange(ex)
        }
    }
    fn udp_datagram(&mut self, d: &UdpDatagram) {
        if let Ok(mut o) = self.lock() {
            o.udp_datagram(d)
        }
    }
    fn tls_exchange(&mut self, ex: &TlsExchange) {
        if let Ok(mut o) = self.lock() {
            o.tls_exchange(ex)
        }
    }
}

/// The transport a tracker URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Udp,
}

/// Which transport `url` uses, or a clear error for anything else (`wss://`, typos, ...).
pub fn scheme_of(url: &str) -> Result<Scheme, TrackerError> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(TrackerError::InvalidUrl {
            url: url.to_string(),
            why: "no scheme (expected http://, https:// or udp://)".into(),
        });
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Ok(Scheme::Http),
        "https" => Ok(Scheme::Https),
        "udp" => Ok(Scheme::Udp),
        _ => Err(TrackerError::UnsupportedScheme {
            url: url.to_string(),
            scheme: scheme.to_string(),
        }),
    }
}

/// Announces to one tracker, choosing HTTP(S) or UDP by the URL's scheme.
pub async fn announce(
    url: &str,
    req: &AnnounceRequest,
    config: &TrackerConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<AnnounceResponse, TrackerError> {
    match scheme_of(url)? {
        Scheme::Http | Scheme::Https => http::announce(url, req, config, observer).await,
        Scheme::Udp => udp::announce(url, req, &config.udp, observer).await,
    }
}

/// Scrapes one tracker for the given info hashes. Hashes the tracker does not know are
/// simply absent from the result.
pub async fn scrape(
    url: &str,
    info_hashes: &[[u8; 20]],
    config: &TrackerConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<Vec<([u8; 20], ScrapeResponse)>, TrackerError> {
    match scheme_of(url)? {
        Scheme::Http | Scheme::Https => http::scrape(url, info_hashes, config, observer).await,
        Scheme::Udp => udp::scrape(url, info_hashes, &config.udp, observer).await,
    }
}

/// Announces through tiers of trackers (BEP 12): tiers in order, trackers of a tier in
/// order; the first that answers is moved to the front of its tier (so the next announce
/// asks it first) and its URL is returned with the response.
///
/// This does not shuffle: BEP 12 shuffles each tier *once*, when the torrent is loaded; use
/// [`shuffle_tiers`] or [`Tiers`] for that. When every tracker fails, the error lists each
/// URL's failure ([`TrackerError::AllFailed`]); with a single tracker, its own error is
/// returned as is.
pub async fn announce_tiers(
    tiers: &mut [Vec<String>],
    req: &AnnounceRequest,
    config: &TrackerConfig,
    observer: &mut dyn TrackerObserver,
) -> Result<(String, AnnounceResponse), TrackerError> {
    let mut failures = Vec::new();
    for tier in tiers.iter_mut() {
        for i in 0..tier.len() {
            let url = tier[i].clone();
            match announce(&url, req, config, observer).await {
                Ok(resp) => {
                    let working = tier.remove(i);
                    tier.insert(0, working);
                    return Ok((url, resp));
                }
                Err(e) => {
                    tracing::debug!("tracker {url} failed: {e}");
                    failures.push((url, e));
                }
            }
        }
    }
    match failures.len() {
        0 => Err(TrackerError::NoTrackers),
        1 => Err(failures
            .pop()
            .map(|(_, e)| e)
            .unwrap_or(TrackerError::NoTrackers)),
        _ => Err(TrackerError::AllFailed(failures)),
    }
}

/// Shuffles the trackers inside each tier (not the tiers themselves), as BEP 12 asks once
/// per torrent, so that load spreads over a tier's trackers.
pub fn shuffle_tiers(tiers: &mut [Vec<String>]) {
    use rand::seq::SliceRandom;
    let mut rng = rand::thread_rng();
    for tier in tiers {
        tier.shuffle(&mut rng);
    }
}

/// A torrent's trackers as BEP 12 tiers, shuffled once at construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    tiers: Vec<Vec<String>>,
}

impl Tiers {
    /// Builds the tiers from a torrent's `announce` and `announce-list`: when the list is
    /// present and non-empty it is used and `announce` ignored (BEP 12); empty tiers and
    /// repeated URLs are dropped.
    pub fn new(announce: Option<&str>, announce_list: &[Vec<String>]) -> Tiers {
        let mut t = Tiers::unshuffled(announce, announce_list);
        shuffle_tiers(&mut t.tiers);
        t
    }

    /// Like [`Tiers::new`] without the shuffle (for reproducible runs and tests).
    pub fn unshuffled(announce: Option<&str>, announce_list: &[Vec<String>]) -> Tiers {
        let mut seen = std::collections::HashSet::new();
        let mut tiers: Vec<Vec<String>> = announce_list
            .iter()
            .map(|tier| {
                tier.iter()
                    .filter(|u| !u.is_empty() && seen.insert(u.to_string()))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|tier| !tier.is_empty())
            .collect();
        if tiers.is_empty() {
            if let Some(a) = announce.filter(|a| !a.is_empty()) {
                tiers.push(vec![a.to_string()]);
            }
        }
        Tiers { tiers }
    }

    /// The tiers in their current order.
    pub fn tiers(&self) -> &[Vec<String>] {
        &self.tiers
    }

    /// [`announce_tiers`] over these tiers.
    pub async fn announce(
        &mut self,
        req: &AnnounceRequest,
        config: &TrackerConfig,
        observer: &mut dyn TrackerObserver,
    ) -> Result<(String, AnnounceResponse), TrackerError> {
        announce_tiers(&mut self.tiers, req, config, observer).await
    }
}

impl fmt::Display for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, tier) in self.tiers.iter().enumerate() {
            writeln!(f, "tier {}: {}", i + 1, tier.join(" "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [1; 20],
            peer_id: *b"-BT0001-abcdefghijkl",
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 1,
            event: Event::Started,
            numwant: None,
            key: 7,
        }
    }

    #[test]
    fn events_round_trip() {
        for e in [
            Event::None,
            Event::Completed,
            Event::Started,
            Event::Stopped,
        ] {
            assert_eq!(Event::from_udp_code(e.udp_code()), e);
            if let Some(v) = e.http_value() {
                assert_eq!(Event::from_http_value(v), Some(e));
            }
        }
        assert_eq!(Event::from_udp_code(9), Event::Unknown(9));
        assert_eq!(Event::Unknown(9).http_value(), None);
    }

    #[test]
    fn schemes() {
        assert_eq!(scheme_of("http://a/announce").unwrap(), Scheme::Http);
        assert_eq!(scheme_of("HTTPS://a/announce").unwrap(), Scheme::Https);
        assert_eq!(scheme_of("udp://a:1").unwrap(), Scheme::Udp);
        assert!(matches!(
            scheme_of("wss://a/announce"),
            Err(TrackerError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            scheme_of("nonsense"),
            Err(TrackerError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn tiers_from_metainfo() {
        let t = Tiers::unshuffled(Some("http://a/announce"), &[]);
        assert_eq!(t.tiers(), &[vec!["http://a/announce".to_string()]]);
        let list = vec![
            vec!["udp://b:1".to_string(), "http://c/announce".to_string()],
            vec![],
            vec!["udp://b:1".to_string(), "http://d/announce".to_string()],
        ];
        let t = Tiers::unshuffled(Some("http://a/announce"), &list);
        assert_eq!(
            t.tiers(),
            &[
                vec!["udp://b:1".to_string(), "http://c/announce".to_string()],
                vec!["http://d/announce".to_string()]
            ]
        );
        let shuffled = Tiers::new(None, &list);
        assert_eq!(shuffled.tiers().len(), 2);
        assert_eq!(shuffled.tiers()[1], vec!["http://d/announce".to_string()]);
        assert_eq!(Tiers::new(None, &[]).tiers().len(), 0);
    }

    #[tokio::test]
    async fn tiers_errors_combined_and_single() {
        let cfg = TrackerConfig::default();
        let mut tiers = vec![
            vec!["wss://x/announce".to_string()],
            vec!["ftp://y".to_string()],
        ];
        let err = announce_tiers(&mut tiers, &req(), &cfg, &mut NoopObserver)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("all 2 trackers failed"), "{msg}");
        assert!(msg.contains("wss://x/announce: unsupported tracker URL scheme \"wss\""));
        assert!(msg.contains("ftp://y: unsupported"));

        let mut one = vec![vec!["gopher://z".to_string()]];
        let err = announce_tiers(&mut one, &req(), &cfg, &mut NoopObserver)
            .await
            .unwrap_err();
        assert!(matches!(err, TrackerError::UnsupportedScheme { .. }));

        let mut none: Vec<Vec<String>> = vec![];
        let err = announce_tiers(&mut none, &req(), &cfg, &mut NoopObserver)
            .await
            .unwrap_err();
        assert!(matches!(err, TrackerError::NoTrackers));
    }

    #[tokio::test]
    async fn working_tracker_moves_to_front() {
        // A tiny HTTP tracker on loopback answering every request with one compact peer.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = b"d8:intervali60e5:peers6:\x7f\x00\x00\x01\x1a\xe1e";
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
            }
        });
        let good = format!("http://{addr}/announce");
        let mut tiers = vec![
            vec!["ftp://nope".to_string()],
            vec![
                "wss://bad".to_string(),
                good.clone(),
                "udp://never:1".to_string(),
            ],
        ];
        let mut seen: Vec<TrackerWire> = Vec::new();
        let cfg = TrackerConfig::default();
        let (url, resp) = announce_tiers(&mut tiers, &req(), &cfg, &mut seen)
            .await
            .unwrap();
        assert_eq!(url, good);
        assert_eq!(resp.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!(tiers[1][0], good);
        assert_eq!(tiers[1][1], "wss://bad");
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn observers_are_send() {
        fn is_send<T: Send>(_: &T) {}
        let shared: Arc<Mutex<Vec<TrackerWire>>> = Arc::default();
        is_send(&shared);
        let cfg = TrackerConfig::default();
        let mut obs = shared.clone();
        let r = req();
        let fut = async move {
            let o: &mut dyn TrackerObserver = &mut obs;
            let _ = announce("udp://127.0.0.1:9", &r, &cfg, o).await;
        };
        is_send(&fut);
    }
}
