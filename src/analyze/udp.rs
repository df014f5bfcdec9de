//! The UDP protocols of a BitTorrent capture beside BEP 15 trackers, per datagram: uTP
//! (BEP 29) packets go to [`crate::capture::utp`]'s reassembler, whose streams reach the
//! analyzer through the same [`crate::capture::StreamSink`] callbacks as TCP's (so uTP peer
//! connections get the same decoder, tables, events, `--torrent` and `--extract`); DHT
//! (BEP 5) messages and LSD (BEP 14) announces become events of their own.
//!
//! Real clients run uTP and the DHT on one port: a datagram is DHT when it is a bencoded
//! KRPC dict (it starts with `d`), uTP when it parses as a version-1 uTP packet, LSD when it
//! starts with `BT-SEARCH * HTTP/1.1`. The three cannot be confused: `d` (0x64) is packet
//! type 6, version 4 to uTP, and `B` (0x42) version 2.
//!
//! This module owns the classification and the counters of those protocols
//! ([`UdpProtocols`]); it never touches TCP's and never decodes peer messages itself.

use super::analyzer::CaptureReport;
use super::dht::{self, Dht, DhtReport};
use super::lsd::{self, LsdReport};
use crate::capture::utp::{UtpReassembler, UtpStats};
use crate::capture::ReassemblyConfig;
use crate::event::EventKind;

/// What a datagram is.
pub enum Classified {
    /// A uTP packet: hand it to [`UdpProtocols::utp`].
    Utp,
    /// A DHT or LSD message: its event kind and words.
    Event(Box<EventKind>, String),
    /// None of these.
    Other,
}

/// The connection counters of the summary: TCP's are [`CaptureReport`]'s own fields; uTP
/// connections are counted here, by swapping these in while uTP callbacks run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounts {
    pub bittorrent: u64,
    pub mid_stream: u64,
    pub encrypted: u64,
    pub tracker_http: u64,
    pub empty: u64,
    pub other: u64,
    pub refused: u64,
    pub unanswered: u64,
}

impl ConnCounts {
    /// Exchanges these counters with the report's (TCP) ones.
    pub fn swap_with(&mut self, r: &mut CaptureReport) {
        std::mem::swap(&mut self.bittorrent, &mut r.bittorrent);
        std::mem::swap(&mut self.mid_stream, &mut r.mid_stream);
        std::mem::swap(&mut self.encrypted, &mut r.encrypted);
        std::mem::swap(&mut self.tracker_http, &mut r.tracker_http);
        std::mem::swap(&mut self.empty, &mut r.empty);
        std::mem::swap(&mut self.other, &mut r.other);
        std::mem::swap(&mut self.refused, &mut r.refused);
        std::mem::swap(&mut self.unanswered, &mut r.unanswered);
    }
}

/// The summary of the uTP, DHT and LSD traffic of a capture.
#[derive(Debug, Clone, Default)]
pub struct UdpReport {
    /// The uTP reassembler's counters (connections, packets, retransmissions, gaps).
    pub utp: UtpStats,
    /// uTP connections by what they carried.
    pub utp_conns: ConnCounts,
    pub dht: DhtReport,
    pub lsd: LsdReport,
}

/// The state of the UDP protocols of one capture.
#[derive(Default)]
pub struct UdpProtocols {
    pub utp: UtpReassembler,
    dht: Dht,
    lsd: LsdReport,
    /// uTP connection counters while TCP's are in the report (see [`ConnCounts`]).
    pub counts: ConnCounts,
}

impl UdpProtocols {
    pub fn new(limits: ReassemblyConfig) -> Self {
        UdpProtocols {
            utp: UtpReassembler::new(limits),
            ..UdpProtocols::default()
        }
    }

    /// Tells what a datagram from `src` to `dst` is; DHT and LSD are decoded and counted.
    pub fn classify(
        &mut self,
        src: std::net::SocketAddr,
        dst: std::net::SocketAddr,
        b: &[u8],
    ) -> Classified {
        match b.first() {
            Some(b'd') => match self.dht.datagram(src, dst, b) {
                Some(p) => {
                    let words = dht::words(&p);
                    Classified::Event(
                        Box::new(EventKind::Dht {
                            len: b.len() as u64,
                            packet: p,
                        }),
                        words,
                    )
                }
                None => Classified::Other,
            },
            Some(b'B') => match lsd::parse(b) {
                Some(a) => {
                    self.lsd.add(&a);
                    let words = lsd::words(&a);
                    Classified::Event(
                        Box::new(EventKind::Lsd {
                            len: b.len() as u64,
                            announce: a,
                        }),
                        words,
                    )
                }
                None => Classified::Other,
            },
            _ if crate::capture::utp::is_utp(b) => Classified::Utp,
            _ => Classified::Other,
        }
    }

    /// The summary, at the end of the capture.
    pub fn report(&self) -> UdpReport {
        UdpReport {
            utp: *self.utp.stats(),
            utp_conns: self.counts,
            dht: self.dht.report.clone(),
            lsd: self.lsd.clone(),
        }
    }
}

/// The event as given, or (an event of a uTP connection) a copy that says so in its
/// `transport` field.
pub fn tagged<'e>(
    e: &'e crate::event::Event,
    conn: Option<&super::analyzer::ConnReport>,
) -> std::borrow::Cow<'e, crate::event::Event> {
    match conn {
        Some(r) if r.transport == crate::event::Transport::Utp && e.transport.is_none() => {
            let mut e = e.clone();
            e.transport = Some(r.transport);
            std::borrow::Cow::Owned(e)
        }
        _ => std::borrow::Cow::Borrowed(e),
    }
}

/// The summary's rows for uTP, the DHT and LSD (only those that occur).
pub fn summary_rows(r: &CaptureReport) -> Vec<(&'static str, String)> {
    use super::report::thousands;
    let u = &r.udp;
    let mut rows = Vec::new();
    if u.utp.connections > 0 {
        let c = &u.utp_conns;
        let s = &u.utp;
        rows.push((
            "uTP connections",
            format!(
                "{} found: {} BitTorrent ({} picked up mid-stream), {} encrypted (MSE/PE), \
                 {} without data, {} other, {} refused (ST_SYN answered by ST_RESET), \
                 {} unanswered (ST_SYN only); {} packets, \
                 {} retransmitted, {} out of order, {} gaps ({} packets not captured)",
                s.connections,
                c.bittorrent,
                c.mid_stream,
                c.encrypted,
                c.empty,
                c.other,
                c.refused,
                c.unanswered,
                thousands(s.packets),
                thousands(s.duplicate_packets),
                thousands(s.out_of_order_packets),
                s.gaps,
                s.lost_packets
            ),
        ));
    }
    let d = &u.dht;
    if d.datagrams > 0 {
        let queries: Vec<String> = d.queries.iter().map(|(m, n)| format!("{n} {m}")).collect();
        let mut hashes: Vec<&str> = d.info_hashes.iter().map(String::as_str).collect();
        hashes.truncate(10);
        rows.push((
            "DHT (BEP 5)",
            format!(
                "{} messages: queries {}; {} responses, {} errors ({} unpaired); \
                 {} info hashes looked up{}; {} peers learned, {} nodes",
                thousands(d.datagrams),
                if queries.is_empty() {
                    "none".to_string()
                } else {
                    queries.join(", ")
                },
                d.responses,
                d.errors,
                d.unpaired,
                d.info_hashes.len(),
                if hashes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", hashes.join(", "))
                },
                d.peers.len(),
                d.nodes
            ),
        ));
    }
    let l = &u.lsd;
    if l.announces > 0 {
        let ports: Vec<String> = l.ports.iter().map(u16::to_string).collect();
        let hashes: Vec<&str> = l.info_hashes.iter().map(String::as_str).collect();
        rows.push((
            "LSD (BEP 14)",
            format!(
                "{} announces: info hashes {}; ports {}",
                l.announces,
                hashes.join(", "),
                ports.join(", ")
            ),
        ));
    }
    rows
}

/// The words of a TCP connection's opening or closing, as a uTP connection's say them.
pub fn life_words<'w>(tcp: &'w str, conn: Option<&super::analyzer::ConnReport>) -> &'w str {
    if conn.is_none_or(|r| r.transport != crate::event::Transport::Utp) {
        return tcp;
    }
    match tcp {
        "connection opened (SYN, SYN-ACK, ACK)" => "connection opened (ST_SYN, ST_STATE)",
        "connection reset (RST)" => "connection reset (ST_RESET)",
        "connection closed (FIN)" => "connection closed (ST_FIN)",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::analyzer::{analyze, Options};
    use crate::capture::reader::tests::Builder;
    use crate::capture::CaptureReader;
    use crate::event::Event;
    use crate::wire::{Handshake, Message, Reserved};
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    struct Collect(Vec<(Event, String)>);
    impl crate::analyze::EventOut for Collect {
        fn event(
            &mut self,
            e: &Event,
            w: &str,
            _: Option<&crate::analyze::ConnReport>,
        ) -> std::io::Result<()> {
            self.0.push((e.clone(), w.to_string()));
            Ok(())
        }
    }

    fn udp(from_a: bool, payload: &[u8]) -> Vec<u8> {
        let (s, d) = if from_a { (6881, 6882) } else { (6882, 6881) };
        let mut v = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .udp(s, d)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn utp(ty: u8, id: u16, seq: u16, ack: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![ty << 4 | 1, 0];
        v.extend(id.to_be_bytes());
        v.extend([0u8; 12]);
        v.extend(seq.to_be_bytes());
        v.extend(ack.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn run(frames: &[Vec<u8>]) -> (CaptureReport, Vec<(Event, String)>) {
        let mut b = Builder::new(true);
        b.shb().idb(1, Some(9), None);
        for (i, f) in frames.iter().enumerate() {
            b.epb(0, 1_000_000 * (i as u64 + 1), f, f.len() as u32);
        }
        let mut r = CaptureReader::new(&b.out[..]).unwrap();
        let mut out = Collect(Vec::new());
        let opts = Options {
            events: true,
            ..Options::default()
        };
        let rep = analyze(&mut r, opts, &mut out, None).unwrap();
        (rep, out.0)
    }

    #[test]
    fn a_utp_connection_dht_and_lsd_on_one_port() {
        let mut hs = Handshake::new(Reserved::new(), [5; 20], *b"-LT2080-aaaaaaaaaaaa")
            .emit()
            .to_vec();
        let mut back = Handshake::new(Reserved::new(), [5; 20], *b"-LT2080-bbbbbbbbbbbb")
            .emit()
            .to_vec();
        Message::HaveAll.emit(&mut back);
        Message::Interested.emit(&mut hs);
        let frames = vec![
            udp(true, &utp(4, 77, 10, 0, b"")),
            udp(false, &utp(2, 77, 500, 10, b"")),
            udp(true, b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"),
            udp(true, &utp(0, 78, 11, 499, &hs[..40])),
            udp(false, b"d1:rd2:id20:0123456789abcdefghije1:t2:aa1:y1:re"),
            udp(true, &utp(0, 78, 12, 499, &hs[40..])),
            udp(false, &utp(0, 77, 500, 12, &back)),
            udp(
                true,
                b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 0505050505050505050505050505050505050505\r\n\r\n\r\n",
            ),
            udp(true, &utp(1, 78, 13, 500, b"")),
            udp(false, &utp(1, 77, 501, 13, b"")),
        ];
        let (rep, ev) = run(&frames);
        assert_eq!(rep.conns.len(), 1);
        assert_eq!(rep.conns[0].transport, crate::event::Transport::Utp);
        assert_eq!((rep.bittorrent, rep.udp.utp_conns.bittorrent), (0, 1));
        let words: Vec<&str> = ev.iter().map(|(_, w)| w.as_str()).collect();
        // Capture order: the connection is opened at frame 2, before the DHT query of frame 3.
        assert_eq!(words[0], "connection opened (ST_SYN, ST_STATE)");
        assert_eq!(words[1], "DHT ping query t=6161");
        assert!(words.contains(&"DHT ping response t=6161: 0 peers, 0 nodes"));
        let opened = words
            .iter()
            .position(|w| *w == "connection opened (ST_SYN, ST_STATE)");
        assert_eq!(ev[opened.unwrap()].0.frames, [1, 2]);
        let hs = words
            .iter()
            .position(|w| w.starts_with("handshake"))
            .unwrap();
        assert_eq!(ev[hs].0.frames, [4, 6]);
        assert!(words.contains(&"interested") && words.contains(&"have all"));
        assert!(words
            .iter()
            .any(|w| w.starts_with("LSD announce port 6881")));
        assert_eq!(words.last(), Some(&"connection closed (ST_FIN)"));
        assert_eq!(rep.udp.dht.queries.get("ping"), Some(&1));
        assert_eq!(rep.udp.lsd.announces, 1);
        let rows: Vec<&str> = summary_rows(&rep).iter().map(|r| r.0).collect();
        assert_eq!(rows, ["uTP connections", "DHT (BEP 5)", "LSD (BEP 14)"]);
    }

    proptest! {
        /// uTP packets with random fields and payloads, DHT-like and LSD-like datagrams and
        /// noise through the whole analyzer: no panic, and uTP's counters stay apart from TCP's.
        #[test]
        fn any_udp_never_panics(
            dgs in proptest::collection::vec(
                (any::<bool>(), 0u8..8, 0u16..3, 0u16..30, proptest::collection::vec(any::<u8>(), 0..120)),
                0..50),
        ) {
            let hs = Handshake::new(Reserved::new(), [5; 20], [6; 20]).emit().to_vec();
            let frames: Vec<Vec<u8>> = dgs
                .iter()
                .map(|(a, kind, id, seq, bytes)| {
                    let p = match kind {
                        0..=4 => {
                            let payload = if *seq % 3 == 0 { &hs[..] } else { &bytes[..] };
                            utp(*kind, 100 + id, *seq, 0, if *kind == 0 { payload } else { b"" })
                        }
                        5 => [b"d1:t1:x1:y1:q".as_slice(), bytes].concat(),
                        6 => [b"BT-SEARCH * HTTP/1.1\r\n".as_slice(), bytes].concat(),
                        _ => bytes.clone(),
                    };
                    udp(*a, &p)
                })
                .collect();
            let (rep, _) = run(&frames);
            let c = rep.udp.utp_conns;
            prop_assert!(c.bittorrent + c.encrypted + c.empty + c.other <= rep.udp.utp.connections);
            prop_assert_eq!(rep.bittorrent + rep.other + rep.empty + rep.encrypted, 0);
        }
    }
}
