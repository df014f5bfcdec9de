//! The tracker client against a real tracker: Debian's opentracker (HTTP and UDP on one port,
//! whitelist-only), started once for this test binary on a free loopback port.
//!
//! Lifetime: opentracker drops privileges to `nobody`, which clears `PR_SET_PDEATHSIG`, so it
//! cannot simply die with us. Instead a small watchdog shell holds the read end of a pipe
//! whose write end only this process has; when this process exits for any reason (even
//! `kill -9`), the pipe closes, `read` returns and the watchdog kills opentracker.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bt_trace::tracker::{
    self, http1, query, reply, udp, AnnounceRequest, Event, NoopObserver, ScrapeResponse,
    TrackerConfig, TrackerError, TrackerWire, UdpConfig,
};

/// Info hashes this binary uses; each test has its own so tests can run in parallel.
fn hash(n: u8) -> [u8; 20] {
    let mut h = [n; 20];
    h[0] = 0xb7;
    h[19] = 0x7e;
    h
}
const HTTP_SWARM: u8 = 1;
const UDP_SWARM: u8 = 2;
const SCRAPE_SWARM: u8 = 3;
const TIERS_SWARM: u8 = 4;
const READY: u8 = 5;
const NOT_WHITELISTED: u8 = 99;
const WHITELISTED: [u8; 5] = [HTTP_SWARM, UDP_SWARM, SCRAPE_SWARM, TIERS_SWARM, READY];

struct Opentracker {
    port: u16,
    _daemon: Child,
    _watchdog: Child,
}

fn opentracker() -> &'static Opentracker {
    static TRACKER: OnceLock<Opentracker> = OnceLock::new();
    TRACKER.get_or_init(start_opentracker)
}

/// A port free for both TCP and UDP on 127.0.0.1 (at the moment of asking).
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind TCP");
        let port = l.local_addr().expect("local addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// opentracker loads its whitelist in a background thread after it starts listening; until
/// then it refuses every torrent. Ready = a whitelisted hash is accepted (a `stopped`
/// announce, which leaves no peer behind).
fn whitelist_loaded(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /announce?info_hash={}&peer_id=-BT0001-readyreadyre&port=1&uploaded=0&downloaded=0\
         &left=0&compact=1&event=stopped HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        query::encode_bytes(&hash(READY))
    );
    let mut resp = Vec::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_end(&mut resp).is_ok()
        && resp.starts_with(b"HTTP/1.1 200")
        && !resp.windows(7).any(|w| w == b"failure")
}

/// A fresh directory for opentracker to chroot into, holding the whitelist. Not a `TempDir`:
/// statics are never dropped, so the watchdog removes it.
fn make_dir(attempt: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "bt-trace-opentracker-{}-{attempt}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("temp dir");
    // opentracker chroots into the directory and runs as `nobody`: make it readable.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let list: String = WHITELISTED
        .iter()
        .map(|&n| format!("{}\n", hex::encode(hash(n))))
        .collect();
    let wl = dir.join("whitelist.txt");
    std::fs::write(&wl, list).unwrap();
    std::fs::set_permissions(&wl, std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

fn start_opentracker() -> Opentracker {
    for attempt in 0..10 {
        let dir = make_dir(attempt);
        let port = free_port();
        let p = port.to_string();
        // `-w whitelist.txt` is relative: opentracker chdirs into `-d DIR` (and chroots there
        // when it runs as root), so this finds the file either way.
        let mut daemon = Command::new("opentracker")
            .args(["-i", "127.0.0.1", "-p", &p, "-P", &p, "-A", "127.0.0.1"])
            .args(["-w", "whitelist.txt", "-d"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start opentracker (apt-get install opentracker)");
        // Reads until our end of the pipe closes (we exited, however), then cleans up.
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"read _; kill "$1" 2>/dev/null; rm -rf "$2""#)
            .arg("watchdog")
            .arg(daemon.id().to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("watchdog shell");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = daemon.try_wait() {
                break; // died (port taken meanwhile?): try another port
            }
            if whitelist_loaded(port) {
                return Opentracker {
                    port,
                    _daemon: daemon,
                    _watchdog: watchdog,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
        if let Some(mut stdin) = watchdog.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = watchdog.wait();
    }
    panic!("opentracker did not start");
}

fn http_url() -> String {
    format!("http://127.0.0.1:{}/announce", opentracker().port)
}
fn udp_url() -> String {
    format!("udp://127.0.0.1:{}/announce", opentracker().port)
}

fn peer(n: u8, swarm: u8, port: u16, left: u64) -> AnnounceRequest {
    let mut peer_id = *b"-BT0001-000000000000";
    peer_id[19] = b'0' + n;
    peer_id[18] = b'0' + swarm;
    AnnounceRequest {
        info_hash: hash(swarm),
        peer_id,
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: Some(50),
        key: 0x1000 + u32::from(n),
    }
}

fn config() -> TrackerConfig {
    TrackerConfig {
        http_timeout: Duration::from_secs(5),
        udp: UdpConfig {
            base_timeout: Duration::from_millis(500),
            tries: 3,
            ..UdpConfig::default()
        },
        ..TrackerConfig::default()
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn http_peers_see_each_other() {
    let url = http_url();
    let cfg = config();
    let mut seen: Vec<TrackerWire> = Vec::new();
    let a = tracker::announce(&url, &peer(1, HTTP_SWARM, 41001, 1000), &cfg, &mut seen)
        .await
        .unwrap();
    assert!(a.interval > 0);
    let b = tracker::announce(&url, &peer(2, HTTP_SWARM, 41002, 1000), &cfg, &mut seen)
        .await
        .unwrap();
    assert!(b.peers.contains(&addr(41001)), "{:?}", b.peers);
    assert_eq!(b.incomplete, Some(2));
    let a2 = tracker::announce(&url, &peer(1, HTTP_SWARM, 41001, 1000), &cfg, &mut seen)
        .await
        .unwrap();
    assert!(a2.peers.contains(&addr(41002)), "{:?}", a2.peers);

    // The trace holds the exact HTTP exchange, which the analyzer's parsers read back.
    assert_eq!(seen.len(), 3);
    let TrackerWire::Http(ex) = &seen[1] else {
        panic!("{seen:?}")
    };
    assert_eq!(ex.remote, addr(opentracker().port));
    let (head, used) = http1::parse_http_request(&ex.request).unwrap();
    assert_eq!(used, ex.request.len());
    let q = query::parse_announce_query(&head.target).unwrap();
    assert_eq!(q.info_hash, Some(hash(HTTP_SWARM)));
    assert_eq!(q.port, Some(41002));
    assert_eq!(q.event(), Some(Event::Started));
    let (resp, _) = http1::parse_http_response(&ex.response, true, 1 << 20).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(reply::parse_announce_response(&resp.body).unwrap(), b);
}

#[tokio::test]
async fn udp_peers_see_each_other() {
    let url = udp_url();
    let cfg = config();
    let mut seen: Vec<TrackerWire> = Vec::new();
    tracker::announce(&url, &peer(1, UDP_SWARM, 42001, 1000), &cfg, &mut seen)
        .await
        .unwrap();
    let b = tracker::announce(&url, &peer(2, UDP_SWARM, 42002, 0), &cfg, &mut seen)
        .await
        .unwrap();
    assert!(b.peers.contains(&addr(42001)), "{:?}", b.peers);
    assert_eq!((b.complete, b.incomplete), (Some(1), Some(1)));
    let a2 = tracker::announce(&url, &peer(1, UDP_SWARM, 42001, 1000), &cfg, &mut seen)
        .await
        .unwrap();
    assert!(a2.peers.contains(&addr(42002)), "{:?}", a2.peers);

    // Every datagram was reported and decodes with the pure codec.
    let mut actions = Vec::new();
    for w in &seen {
        let TrackerWire::Udp(d) = w else {
            panic!("{w:?}")
        };
        assert_eq!(d.remote, addr(opentracker().port));
        if d.outgoing {
            let (r, _) = udp::parse_request(&d.bytes).unwrap();
            actions.push(match r {
                udp::Request::Connect { .. } => "connect",
                udp::Request::Announce(_) => "announce",
                _ => "other",
            });
        } else {
            let (r, _) = udp::parse_response(&d.bytes, false).unwrap();
            assert_ne!(r.action(), udp::action::ERROR);
        }
    }
    // The connection id is reused for a minute, so at most one connect per announce and
    // usually a single one (other tests share the id cache of this process).
    assert_eq!(actions.iter().filter(|a| **a == "announce").count(), 3);
    assert!(actions.iter().filter(|a| **a == "connect").count() <= 3);
    assert_eq!(actions.iter().filter(|a| **a == "other").count(), 0);
}

#[tokio::test]
async fn scrape_counts_over_http_and_udp() {
    let cfg = config();
    let h = hash(SCRAPE_SWARM);
    tracker::announce(
        &http_url(),
        &peer(1, SCRAPE_SWARM, 43001, 0),
        &cfg,
        &mut NoopObserver,
    )
    .await
    .unwrap();
    tracker::announce(
        &udp_url(),
        &peer(2, SCRAPE_SWARM, 43002, 500),
        &cfg,
        &mut NoopObserver,
    )
    .await
    .unwrap();
    let want = ScrapeResponse {
        complete: 1,
        incomplete: 1,
        downloaded: 0,
    };
    let s = tracker::scrape(&http_url(), &[h], &cfg, &mut NoopObserver)
        .await
        .unwrap();
    assert_eq!(s, vec![(h, want)]);
    let s = tracker::scrape(&udp_url(), &[h], &cfg, &mut NoopObserver)
        .await
        .unwrap();
    assert_eq!(s, vec![(h, want)]);
}

#[tokio::test]
async fn not_whitelisted_gives_the_failure_reason() {
    let cfg = config();
    let req = peer(1, NOT_WHITELISTED, 44001, 1);
    let e = tracker::announce(&http_url(), &req, &cfg, &mut NoopObserver)
        .await
        .unwrap_err();
    match e {
        TrackerError::Failure(m) => assert_eq!(
            m,
            "Requested download is not authorized for use with this tracker."
        ),
        other => panic!("{other}"),
    }
    let e = tracker::announce(&udp_url(), &req, &cfg, &mut NoopObserver)
        .await
        .unwrap_err();
    // Over UDP opentracker sends only the 8-byte header of an announce reply.
    assert!(
        matches!(&e, TrackerError::Malformed(m) if m.contains("not on its whitelist")),
        "{e}"
    );
}

#[tokio::test]
async fn unreachable_udp_tracker_times_out_within_the_tries() {
    // A bound socket that never answers: datagrams vanish, as with a dead remote tracker.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("udp://{}/announce", silent.local_addr().unwrap());
    let cfg = TrackerConfig {
        udp: UdpConfig {
            base_timeout: Duration::from_millis(50),
            tries: 3,
            ..UdpConfig::default()
        },
        ..config()
    };
    let mut seen: Vec<TrackerWire> = Vec::new();
    let e = tracker::announce(&url, &peer(1, TIERS_SWARM, 45001, 1), &cfg, &mut seen)
        .await
        .unwrap_err();
    assert!(matches!(e, TrackerError::Timeout { .. }), "{e}");
    assert_eq!(seen.len(), 3, "one connect request per try");
}

#[tokio::test]
async fn tiers_fall_through_to_opentracker() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_udp = format!("udp://{}/announce", silent.local_addr().unwrap());
    let cfg = TrackerConfig {
        udp: UdpConfig {
            base_timeout: Duration::from_millis(50),
            tries: 2,
            ..UdpConfig::default()
        },
        ..config()
    };
    let mut tiers = vec![
        vec![
            "wss://tracker.example/announce".to_string(),
            dead_udp.clone(),
        ],
        vec![http_url(), udp_url()],
    ];
    let (used, resp) = tracker::announce_tiers(
        &mut tiers,
        &peer(1, TIERS_SWARM, 46001, 1),
        &cfg,
        &mut NoopObserver,
    )
    .await
    .unwrap();
    assert_eq!(used, http_url());
    assert!(resp.interval > 0);
    assert_eq!(tiers[1][0], http_url());

    // Only dead trackers: one error naming each.
    let mut dead = vec![vec![dead_udp.clone()], vec!["ftp://x/announce".to_string()]];
    let e = tracker::announce_tiers(
        &mut dead,
        &peer(1, TIERS_SWARM, 46001, 1),
        &cfg,
        &mut NoopObserver,
    )
    .await
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&dead_udp) && msg.contains("ftp://x/announce"),
        "{msg}"
    );
}
