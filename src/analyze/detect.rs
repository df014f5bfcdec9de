//! Telling what a TCP connection or a UDP datagram carries, from its first bytes, on any port.
//!
//! TCP ([`classify`]): each direction's first bytes (up to [`SNIFF_LEN`]) decide.
//! - **BitTorrent**: a direction starts with `0x13 "BitTorrent protocol"` (BEP 3), checked
//!   with [`looks_like_handshake_prefix`] as the bytes arrive.
//! - **HTTP tracker**: the client's first line is `GET /…announce?…` or `/…scrape?…` (or
//!   carries `info_hash=`), answered with a bencoded body.
//! - **Encrypted (MSE/PE)**: the opening side's first flight (what it sent before the other
//!   side said anything) is 96 to 608 bytes of high-entropy data: a Diffie-Hellman public key
//!   (96 bytes) and 0–512 bytes of random padding, as the Message Stream Encryption spec has
//!   it. aria2 and libtorrent open every outgoing connection this way unless told not to.
//! - **Mid-stream**: a connection whose SYN is not in the capture and whose bytes are none of
//!   the above may be a peer connection picked up in the middle: it is handed to the decoder,
//!   which hunts for valid message framing ([`crate::event::decode::Start::Hunt`]).
//! - Anything else is **other** traffic and ignored.
//!
//! UDP ([`UdpTrackers`]): BEP 15 tracker datagrams on any port. A connect request carries the
//! magic `0x41727101980`; it makes its destination a known tracker. Later datagrams to a known
//! tracker with a BEP 15 action are requests; datagrams from it are responses only if their
//! transaction id answers a request seen (uTP and DHT on the same ports are left alone).
//!
//! Contract: pure functions over byte slices and bounded maps; nothing panics on any input.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::tracker::udp::{action, PROTOCOL_ID};
use crate::wire::looks_like_handshake_prefix;

/// Bytes of each direction kept while a connection is undecided. An HTTP request line, a
/// handshake and an MSE first flight all fit.
pub const SNIFF_LEN: usize = 4096;
/// Shortest MSE/PE first flight: the 768-bit Diffie-Hellman public key.
pub const MSE_MIN: usize = 96;
/// Longest MSE/PE first flight: the key and at most 512 bytes of padding.
pub const MSE_MAX: usize = 96 + 512;

/// What a TCP connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough bytes yet.
    Undecided,
    /// A BitTorrent handshake opens at least one direction.
    BitTorrent,
    /// Possibly a peer connection picked up mid-stream: hunt for message framing.
    MidStream,
    /// An HTTP request to a tracker (announce or scrape).
    TrackerHttp,
    /// MSE/PE-encrypted (probably a peer connection; not decodable).
    Encrypted,
    /// Something else.
    Other,
}

/// What [`classify`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Sniff<'a> {
    /// The first bytes of each direction (client → server first).
    pub bytes: [&'a [u8]; 2],
    /// The connection's start (SYN) is in the capture.
    pub syn_seen: bool,
    /// Which direction spoke first, and how many bytes it sent before the other spoke
    /// (its "first flight"); `answered` once the other direction has sent something.
    pub first_speaker: Option<usize>,
    pub first_flight: u64,
    pub answered: bool,
    /// No more bytes will come (the connection closed or the capture ended).
    pub done: bool,
}

/// Decides what a connection is, or [`Verdict::Undecided`] if its bytes so far do not tell.
pub fn classify(s: &Sniff<'_>) -> Verdict {
    let mut undecided = false;
    for (d, b) in s.bytes.iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        if looks_like_handshake_prefix(b) {
            if b.len() >= 20 || s.done {
                return Verdict::BitTorrent;
            }
            undecided = true;
            continue;
        }
        if d == 0 || s.first_speaker == Some(d) {
            match sniff_http_request(b, s.done) {
                HttpSniff::Tracker => return Verdict::TrackerHttp,
                HttpSniff::Other => return Verdict::Other,
                HttpSniff::NeedMore => undecided = true,
                HttpSniff::NotHttp => {}
            }
        }
    }
    if undecided && !s.done {
        return Verdict::Undecided;
    }
    let Some(speaker) = s.first_speaker else {
        return if s.done {
            Verdict::Other
        } else {
            Verdict::Undecided
        };
    };
    if !s.syn_seen {
        return Verdict::MidStream;
    }
    // The start is known and it is neither a handshake nor HTTP: MSE, or not BitTorrent.
    let flight = s.first_flight as usize;
    if !s.answered && !s.done && flight <= MSE_MAX {
        return Verdict::Undecided;
    }
    let first = s.bytes[speaker];
    if (MSE_MIN..=MSE_MAX).contains(&flight) && looks_random(&first[..flight.min(first.len())]) {
        Verdict::Encrypted
    } else {
        Verdict::Other
    }
}

/// What the start of a client's stream says about HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpSniff {
    NotHttp,
    /// Starts like an HTTP request; the request line is not complete yet.
    NeedMore,
    /// A request to a tracker: `announce` or `scrape` path, or an `info_hash` parameter.
    Tracker,
    /// Some other HTTP request.
    Other,
}

/// Looks at the request line at the start of `b` (`done`: no more bytes will come).
pub fn sniff_http_request(b: &[u8], done: bool) -> HttpSniff {
    const METHODS: [&[u8]; 3] = [b"GET ", b"POST ", b"HEAD "];
    let Some(m) = METHODS
        .iter()
        .find(|m| m.starts_with(&b[..b.len().min(m.len())]))
    else {
        return HttpSniff::NotHttp;
    };
    if b.len() < m.len() {
        return if done {
            HttpSniff::NotHttp
        } else {
            HttpSniff::NeedMore
        };
    }
    let rest = &b[m.len()..];
    let line_end = rest.iter().position(|&c| c == b'\n');
    let target_end = rest
        .iter()
        .position(|&c| c == b' ' || c == b'\r' || c == b'\n');
    let Some(end) = target_end.or(line_end) else {
        return if done || b.len() >= SNIFF_LEN {
            HttpSniff::Other
        } else {
            HttpSniff::NeedMore
        };
    };
    let target = &rest[..end];
    let path = target.split(|&c| c == b'?').next().unwrap_or_default();
    let last = path.rsplit(|&c| c == b'/').next().unwrap_or_default();
    let tracker = last.starts_with(b"announce")
        || last.starts_with(b"scrape")
        || target.windows(10).any(|w| w == b"info_hash=");
    if tracker {
        HttpSniff::Tracker
    } else {
        HttpSniff::Other
    }
}

pub use crate::event::decode::looks_random;

/// Tracker endpoints and outstanding transaction ids of BEP 15, learned from the datagrams.
#[derive(Debug, Default)]
pub struct UdpTrackers {
    trackers: HashMap<SocketAddr, ()>,
    /// (client, tracker, transaction id) of requests not answered yet.
    pending: HashMap<(SocketAddr, SocketAddr, u32), ()>,
    /// Responses from a known tracker that answered nothing seen.
    pub unmatched: u64,
}

/// At most this many tracker endpoints and outstanding requests are remembered; past that
/// the map is cleared (a capture with that many is not a tracker exchange worth following).
const MAX_UDP_STATE: usize = 4096;

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

impl UdpTrackers {
    /// Whether the datagram `src → dst` is BEP 15 tracker traffic: `Some(true)` for a request
    /// (to the tracker), `Some(false)` for a response, `None` for anything else.
    pub fn classify(&mut self, src: SocketAddr, dst: SocketAddr, p: &[u8]) -> Option<bool> {
        let act = be_u32(p, 8);
        let tid = be_u32(p, 12);
        if p.len() >= 16 && be_u64(p, 0) == Some(PROTOCOL_ID) && act == Some(action::CONNECT) {
            self.learn(dst);
            self.expect(src, dst, tid?);
            return Some(true);
        }
        if self.trackers.contains_key(&dst) && p.len() >= 16 {
            let a = act?;
            let plausible = match a {
                action::ANNOUNCE => p.len() >= 98,
                action::SCRAPE => p.len() >= 36,
                _ => false,
            };
            if plausible {
                self.expect(src, dst, tid?);
                return Some(true);
            }
        }
        if self.trackers.contains_key(&src) && p.len() >= 8 {
            let tid = be_u32(p, 4)?;
            if self.pending.remove(&(dst, src, tid)).is_some() {
                return Some(false);
            }
            self.unmatched += 1;
            return None;
        }
        // An announce whose connect was before the capture: 98 bytes (plus BEP 41 options)
        // with action 1, and a port and `num_want` that make sense.
        if p.len() >= 98 && act == Some(action::ANNOUNCE) {
            let num_want = be_u32(p, 92).map(|n| n as i32);
            let options_ok = p.len() == 98 || matches!(p.get(98), Some(0..=2));
            if matches!(num_want, Some(n) if n >= -1) && options_ok {
                self.learn(dst);
                self.expect(src, dst, tid?);
                return Some(true);
            }
        }
        None
    }

    fn learn(&mut self, tracker: SocketAddr) {
        if self.trackers.len() >= MAX_UDP_STATE {
            self.trackers.clear();
        }
        self.trackers.insert(tracker, ());
    }

    fn expect(&mut self, client: SocketAddr, tracker: SocketAddr, tid: u32) {
        if self.pending.len() >= MAX_UDP_STATE {
            self.pending.clear();
        }
        self.pending.insert((client, tracker, tid), ());
    }
}

/// Wireshark-style `udp.stream` numbers: one per pair of endpoints, in order of appearance.
#[derive(Debug, Default)]
pub struct UdpStreams {
    ids: HashMap<(SocketAddr, SocketAddr), u64>,
    next: u64,
}

/// Endpoint pairs remembered for numbering; past that, old pairs are forgotten (and get a new
/// number if they come back).
const MAX_UDP_STREAMS: usize = 65_536;

impl UdpStreams {
    /// The stream number of the conversation between `a` and `b` (either way round).
    pub fn id(&mut self, a: SocketAddr, b: SocketAddr) -> u64 {
        let key = if a <= b { (a, b) } else { (b, a) };
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        if self.ids.len() >= MAX_UDP_STREAMS {
            self.ids.clear();
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(key, id);
        id
    }

    /// Conversations numbered so far.
    pub fn count(&self) -> u64 {
        self.next
    }
}

/// `n` pseudo-random bytes (an LCG from `seed`), like an MSE/PE public key or RC4 output: for
/// the tests here and in the analyzer.
#[cfg(test)]
pub(crate) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Handshake, Message, Reserved};
    use proptest::prelude::*;

    fn sniff<'a>(a: &'a [u8], b: &'a [u8], syn: bool, done: bool) -> Sniff<'a> {
        let speaker = if !a.is_empty() {
            Some(0)
        } else if !b.is_empty() {
            Some(1)
        } else {
            None
        };
        let flight = match speaker {
            Some(0) => a.len(),
            Some(_) => b.len(),
            None => 0,
        } as u64;
        Sniff {
            bytes: [a, b],
            syn_seen: syn,
            first_speaker: speaker,
            first_flight: flight,
            answered: !a.is_empty() && !b.is_empty(),
            done,
        }
    }

    #[test]
    fn handshake_on_either_side() {
        let hs = Handshake::new(Reserved::new(), [1; 20], [2; 20]).emit();
        assert_eq!(
            classify(&sniff(&hs[..5], b"", true, false)),
            Verdict::Undecided
        );
        assert_eq!(classify(&sniff(&hs, b"", true, false)), Verdict::BitTorrent);
        assert_eq!(
            classify(&sniff(b"", &hs[..20], false, false)),
            Verdict::BitTorrent
        );
        // The other side's garbage does not matter.
        assert_eq!(
            classify(&sniff(&noise(100, 1), &hs, true, false)),
            Verdict::BitTorrent
        );
        // A handshake cut by the end of the capture is still one.
        assert_eq!(
            classify(&sniff(&hs[..3], b"", true, true)),
            Verdict::BitTorrent
        );
    }

    #[test]
    fn http_trackers_and_other_http() {
        let req = b"GET /announce?info_hash=%12%34&peer_id=x HTTP/1.1\r\nHost: t\r\n\r\n";
        assert_eq!(
            classify(&sniff(req, b"", true, false)),
            Verdict::TrackerHttp
        );
        assert_eq!(
            classify(&sniff(&req[..10], b"", true, false)),
            Verdict::Undecided
        );
        assert_eq!(
            sniff_http_request(b"GET /tr/scrape?info_hash=x HTTP/1.0", false),
            HttpSniff::Tracker
        );
        assert_eq!(
            sniff_http_request(b"GET /x.php?info_hash=ab HTTP/1.0", false),
            HttpSniff::Tracker
        );
        assert_eq!(
            sniff_http_request(b"GET /index.html HTTP/1.1\r\n", false),
            HttpSniff::Other
        );
        assert_eq!(
            classify(&sniff(b"GET /index.html HTTP/1.1\r\n", b"", true, false)),
            Verdict::Other
        );
        assert_eq!(sniff_http_request(b"GE", false), HttpSniff::NeedMore);
        assert_eq!(sniff_http_request(b"GE", true), HttpSniff::NotHttp);
        assert_eq!(sniff_http_request(b"\x13Bit", false), HttpSniff::NotHttp);
    }

    #[test]
    fn mse_first_flight() {
        for n in [96, 200, 608] {
            let ya = noise(n, n as u64);
            // Waits until the other side answers (or the flight is over or too long).
            assert_eq!(classify(&sniff(&ya, b"", true, false)), Verdict::Undecided);
            assert_eq!(
                classify(&sniff(&ya, &noise(120, 9), true, false)),
                Verdict::Encrypted,
                "{n}"
            );
            assert_eq!(classify(&sniff(&ya, b"", true, true)), Verdict::Encrypted);
        }
        // Too short or too long for MSE.
        assert_eq!(
            classify(&sniff(&noise(60, 3), b"x", true, false)),
            Verdict::Other
        );
        assert_eq!(
            classify(&sniff(&noise(700, 3), b"", true, false)),
            Verdict::Other
        );
        // Not random: zeros, text.
        assert_eq!(
            classify(&sniff(&[0u8; 100], b"x", true, false)),
            Verdict::Other
        );
        let text = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".repeat(3);
        assert_eq!(classify(&sniff(&text, b"x", true, false)), Verdict::Other);
    }

    #[test]
    fn without_syn_it_may_be_mid_stream() {
        let mut m = Message::Have { index: 3 }.to_vec();
        m.extend(noise(50, 4));
        assert_eq!(classify(&sniff(&m, b"", false, false)), Verdict::MidStream);
        assert_eq!(classify(&sniff(&m, b"", true, true)), Verdict::Other);
        assert_eq!(classify(&sniff(b"", b"", false, true)), Verdict::Other);
    }

    #[test]
    fn looks_random_thresholds() {
        assert!(looks_random(&noise(96, 7)));
        assert!(looks_random(&noise(608, 8)));
        assert!(!looks_random(&noise(20, 7)), "too short to tell");
        let mut with_run = noise(200, 5);
        with_run[50..60].fill(0);
        assert!(!looks_random(&with_run));
        assert!(!looks_random(
            &(0..=255u8)
                .cycle()
                .take(300)
                .map(|b| b / 4)
                .collect::<Vec<_>>()
        ));
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn udp_tracker_exchange_by_transaction_id() {
        let c = addr("127.0.0.1:40000");
        let t = addr("127.0.0.1:6969");
        let mut u = UdpTrackers::default();
        let mut connect = PROTOCOL_ID.to_be_bytes().to_vec();
        connect.extend([0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(u.classify(c, t, &connect), Some(true));
        let mut resp = vec![0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        resp.extend([1; 8]);
        assert_eq!(u.classify(t, c, &resp), Some(false));
        // The same answer again matches nothing.
        assert_eq!(u.classify(t, c, &resp), None);
        assert_eq!(u.unmatched, 1);
        // An announce to the known tracker, and its answer.
        let mut ann = vec![1u8; 8];
        ann.extend([0, 0, 0, 1, 0, 0, 0, 7]);
        ann.resize(98, 0);
        assert_eq!(u.classify(c, t, &ann), Some(true));
        assert_eq!(
            u.classify(t, c, &[0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 9]),
            Some(false)
        );
        // uTP between the same ports is not tracker traffic.
        assert_eq!(u.classify(c, t, &[0x41, 0, 1, 2, 3]), None);
        assert_eq!(
            u.classify(addr("127.0.0.1:1"), addr("127.0.0.1:2"), &[0x21; 20]),
            None
        );
    }

    #[test]
    fn udp_announce_without_connect() {
        let c = addr("127.0.0.1:40000");
        let t = addr("127.0.0.1:7000");
        let mut u = UdpTrackers::default();
        let mut ann = vec![9u8; 8];
        ann.extend([0, 0, 0, 1, 0, 0, 0, 5]);
        ann.resize(92, 0);
        ann.extend((-1i32).to_be_bytes());
        ann.extend([0x1a, 0xe1]);
        assert_eq!(ann.len(), 98);
        assert_eq!(u.classify(c, t, &ann), Some(true));
        assert_eq!(
            u.classify(t, c, &[0, 0, 0, 3, 0, 0, 0, 5, b'n', b'o']),
            Some(false)
        );
    }

    #[test]
    fn udp_stream_numbers() {
        let mut s = UdpStreams::default();
        let (a, b, c) = (addr("1.1.1.1:1"), addr("2.2.2.2:2"), addr("3.3.3.3:3"));
        assert_eq!(s.id(a, b), 0);
        assert_eq!(s.id(b, a), 0);
        assert_eq!(s.id(a, c), 1);
        assert_eq!(s.count(), 2);
    }

    proptest! {
        #[test]
        fn never_panics(a in proptest::collection::vec(any::<u8>(), 0..700),
                        b in proptest::collection::vec(any::<u8>(), 0..100),
                        syn in any::<bool>(), done in any::<bool>(), flight in 0u64..1000) {
            let s = Sniff { bytes: [&a, &b], syn_seen: syn, first_speaker: Some((flight % 2) as usize),
                first_flight: flight, answered: flight % 3 == 0, done };
            let _ = classify(&s);
            let _ = looks_random(&a);
            let mut u = UdpTrackers::default();
            let x = addr("127.0.0.1:1");
            let y = addr("127.0.0.1:2");
            let _ = u.classify(x, y, &a);
            let _ = u.classify(y, x, &b);
        }
    }
}
