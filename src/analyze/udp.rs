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
                 {} without data, {} other, {} unanswered (ST_SYN only); {} packets, \
                 {} retransmitted, {} out of order, {} gaps ({} packets not captured)",
                s.connections,
                c.bittorrent,
                c.mid_stream,
                c.encrypted,
                c.empty,
                c.other,
                s.connections.saturating_sub(
                    c.bittorrent + c.encrypted + c.tracker_http + c.empty + c.other
                ),
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
