//! The capture layer of `bt-trace analyze`: capture file → frames → IP → TCP byte streams and UDP datagrams.
//!
//! ```text
//! reader.rs      pcap / pcapng, streamed from any Read over one reused buffer   -> Packet<'_>
//! link.rs        Ethernet(+VLAN) / SLL / SLL2 / raw IP / NULL / LOOP, IPv4, IPv6 -> Dissected<'_>
//! reassembly.rs  TCP per connection and direction, bounded buffers, the life of
//!                each connection (SYN ... FIN/RST, with frame numbers)           -> StreamSink callbacks
//! utp.rs         uTP (BEP 29) over UDP, on any port: the same per-direction streams
//!                and callbacks, by seq_nr, for sinks that feed it their UDP datagrams
//! ```
//! [`process`] ties them together: it pulls every packet, dissects it, feeds TCP segments to a [`Reassembler`]
//! and UDP datagrams straight to the sink, and counts what it saw in [`Stats`]. Nothing on this path allocates
//! per packet except out-of-order segments (copied into the bounded reassembly buffer) and warnings.
//!
//! Contract: no input panics; memory is bounded by the read buffer (grows only up to
//! [`reader::MAX_BLOCK_LEN`]) plus the reassembly limits in [`ReassemblyConfig`].

pub mod link;
pub mod reader;
pub mod reassembly;
pub mod utp;

use std::io::Read;
use std::net::SocketAddr;

pub use link::{
    dissect, Dissected, LinkType, Skipped, TcpFlags, TcpSegment, Transport, UdpDatagram,
};
pub use reader::{
    CaptureError, CaptureFormat, CaptureReader, Endian, InterfaceInfo, Packet, ReaderWarning,
};
pub use reassembly::{
    CloseReason, Conflict, ConnId, ConnInfo, Datagram, Direction, Gap, GapReason, Life,
    Reassembler, ReassemblyConfig, ReassemblyStats, SeqNumber, StreamSink,
};

/// Warnings kept in [`Stats::warnings`]; later ones are only counted.
pub const MAX_WARNINGS: usize = 100;

/// A problem worth telling the user that did not stop the analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Frame concerned, if any.
    pub frame_no: Option<u64>,
    /// Byte offset in the input, if known.
    pub offset: Option<u64>,
    pub message: String,
}

/// What the capture layer saw. Accumulates over several files if the same value is passed again.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub frames: u64,
    /// Captured bytes of all frames.
    pub captured_bytes: u64,
    /// On-the-wire bytes of all frames.
    pub original_bytes: u64,
    pub first_ts_ns: Option<i64>,
    pub last_ts_ns: Option<i64>,
    /// Frames per link type, in order of first appearance.
    pub link_types: Vec<(LinkType, u64)>,
    /// Frames whose captured length is below their length on the wire.
    pub snaplen_cut_frames: u64,
    /// TCP/UDP payloads cut short by the snap length (a prefix was used).
    pub truncated_payloads: u64,
    pub unknown_link_frames: u64,
    pub non_ip_frames: u64,
    pub ip_fragments: u64,
    pub other_ip_protocol: u64,
    /// Frames ending inside a header, or with impossible header fields.
    pub undecodable_frames: u64,
    pub tcp_segments: u64,
    pub tcp_payload_bytes: u64,
    pub udp_datagrams: u64,
    pub udp_payload_bytes: u64,
    pub reassembly: ReassemblyStats,
    pub warnings: Vec<Warning>,
    pub warnings_dropped: u64,
}

impl Stats {
    pub fn warn(&mut self, frame_no: Option<u64>, offset: Option<u64>, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(Warning {
                frame_no,
                offset,
                message,
            });
        } else {
            self.warnings_dropped += 1;
        }
    }

    fn count_link(&mut self, lt: LinkType) {
        // A handful of link types at most: a linear scan beats a map.
        match self.link_types.iter_mut().find(|(l, _)| *l == lt) {
            Some((_, n)) => *n += 1,
            None => self.link_types.push((lt, 1)),
        }
    }
}

/// Reads a whole capture into `sink` with a fresh [`Reassembler`] (default limits), then closes every
/// connection still open.
///
/// On a truncated or corrupt input, everything before the damage is delivered and flushed, the problem is added
/// to `stats.warnings`, and the error is returned so the caller can say the report is partial.
pub fn process<R: Read, S: StreamSink + ?Sized>(
    reader: &mut CaptureReader<R>,
    sink: &mut S,
    stats: &mut Stats,
) -> Result<(), CaptureError> {
    process_with(reader, ReassemblyConfig::default(), sink, stats)
}

/// [`process`] with the given reassembly limits.
pub fn process_with<R: Read, S: StreamSink + ?Sized>(
    reader: &mut CaptureReader<R>,
    limits: ReassemblyConfig,
    sink: &mut S,
    stats: &mut Stats,
) -> Result<(), CaptureError> {
    let mut reasm = Reassembler::new(limits);
    let res = feed(reader, &mut reasm, sink, stats);
    reasm.finish(sink);
    add_reassembly_stats(&mut stats.reassembly, reasm.stats());
    if let Err(e) = &res {
        stats.warn(
            None,
            e.offset(),
            format!("{e}; the report covers what came before"),
        );
    }
    res
}

/// Feeds every packet of `reader` to `reasm` / `sink` without finishing the reassembler (for callers that
/// drive it themselves), between [`StreamSink::on_packet`] and [`StreamSink::on_packet_end`]; stops early
/// (with `Ok`) when the sink asks to. Reassembly counters stay in `reasm.stats()`.
pub fn feed<R: Read, S: StreamSink + ?Sized>(
    reader: &mut CaptureReader<R>,
    reasm: &mut Reassembler,
    sink: &mut S,
    stats: &mut Stats,
) -> Result<(), CaptureError> {
    loop {
        let pkt = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                collect_reader_warnings(reader, stats);
                return Err(e);
            }
        };
        sink.on_packet(&pkt);
        handle_packet(&pkt, reasm, sink, stats);
        sink.on_buffered(reasm.oldest_buffered_frame());
        let flow = sink.on_packet_end();
        if reader.has_warnings() {
            collect_reader_warnings(reader, stats);
        }
        if flow.is_break() {
            break;
        }
    }
    collect_reader_warnings(reader, stats);
    Ok(())
}

fn collect_reader_warnings<R: Read>(reader: &mut CaptureReader<R>, stats: &mut Stats) {
    let (ws, dropped) = reader.take_warnings();
    for w in ws {
        stats.warn(None, Some(w.offset), w.message);
    }
    stats.warnings_dropped += dropped;
}

/// Dissects one packet and passes its payload on.
pub fn handle_packet<S: StreamSink + ?Sized>(
    pkt: &Packet<'_>,
    reasm: &mut Reassembler,
    sink: &mut S,
    stats: &mut Stats,
) {
    stats.frames += 1;
    stats.captured_bytes += pkt.data.len() as u64;
    stats.original_bytes += u64::from(pkt.orig_len);
    if stats.first_ts_ns.is_none() {
        stats.first_ts_ns = Some(pkt.ts_ns);
    }
    stats.last_ts_ns = Some(pkt.ts_ns);
    match stats.link_types.last_mut() {
        Some((l, n)) if *l == pkt.link_type => *n += 1,
        _ => stats.count_link(pkt.link_type),
    }
    if (pkt.data.len() as u64) < u64::from(pkt.orig_len) {
        stats.snaplen_cut_frames += 1;
    }
    let d = match dissect(pkt.link_type, pkt.data) {
        Ok(d) => d,
        Err(skip) => {
            match skip {
                Skipped::UnknownLink(_) => stats.unknown_link_frames += 1,
                Skipped::NotIp { .. } => stats.non_ip_frames += 1,
                Skipped::OtherProtocol { .. } => stats.other_ip_protocol += 1,
                Skipped::Fragment => stats.ip_fragments += 1,
                Skipped::Truncated { .. } if pkt.data.len() < pkt.orig_len as usize => {
                    stats.undecodable_frames += 1;
                }
                Skipped::Truncated { .. } | Skipped::Malformed { .. } => {
                    stats.undecodable_frames += 1;
                    stats.warn(
                        Some(pkt.frame_no),
                        Some(pkt.offset),
                        format!("frame {}: {skip}", pkt.frame_no),
                    );
                }
            }
            return;
        }
    };
    if d.truncated {
        stats.truncated_payloads += 1;
    }
    match d.transport {
        Transport::Tcp(seg) => {
            stats.tcp_segments += 1;
            stats.tcp_payload_bytes += seg.payload.len() as u64;
            reasm.segment(d.src, d.dst, &seg, pkt.frame_no, pkt.ts_ns, sink);
        }
        Transport::Udp(u) => {
            stats.udp_datagrams += 1;
            stats.udp_payload_bytes += u.payload.len() as u64;
            sink.on_udp(&Datagram {
                src: SocketAddr::new(d.src, u.src_port),
                dst: SocketAddr::new(d.dst, u.dst_port),
                payload: u.payload,
                frame_no: pkt.frame_no,
                ts_ns: pkt.ts_ns,
                truncated: d.truncated,
            });
        }
    }
}

/// Adds the counters of `b` to `a` (peak buffered bytes: the larger one).
pub fn add_reassembly_stats(a: &mut ReassemblyStats, b: &ReassemblyStats) {
    a.connections += b.connections;
    a.segments += b.segments;
    a.payload_bytes += b.payload_bytes;
    a.delivered_bytes += b.delivered_bytes;
    a.duplicate_bytes += b.duplicate_bytes;
    a.out_of_order_segments += b.out_of_order_segments;
    a.gaps += b.gaps;
    a.gap_bytes += b.gap_bytes;
    a.conflicts += b.conflicts;
    a.conflict_bytes += b.conflict_bytes;
    a.closed_fin += b.closed_fin;
    a.closed_rst += b.closed_rst;
    a.expired_idle += b.expired_idle;
    a.evicted += b.evicted;
    a.after_close_segments += b.after_close_segments;
    a.peak_buffered_bytes = a.peak_buffered_bytes.max(b.peak_buffered_bytes);
}

#[cfg(test)]
mod tests {
    use super::reader::tests::Builder;
    use super::reassembly::tests::Rec;
    use super::*;
    use etherparse::PacketBuilder;

    fn eth_tcp(sport: u16, dport: u16, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64);
        let b = if syn {
            b.tcp(sport, dport, seq, 100).syn()
        } else {
            b.tcp(sport, dport, seq, 100).ack(1)
        };
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn eth_udp(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([127, 0, 0, 1], [127, 0, 0, 2], 64)
            .udp(5000, 6969)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    #[test]
    fn driver_counts_and_delivers() {
        let mut b = Builder::new(true);
        b.shb().idb(1, Some(9), None).idb(0x4242, None, None);
        b.epb(0, 1, &eth_tcp(40000, 6881, 10, true, b""), 54);
        b.epb(0, 2, &eth_tcp(40000, 6881, 11, false, b"hello"), 59);
        let cut = eth_tcp(40000, 6881, 16, false, b"world!!!");
        b.epb(0, 3, &cut[..cut.len() - 3], cut.len() as u32); // snaplen cut: 3 bytes lost
        b.epb(0, 4, &eth_udp(b"\x00\x00\x04\x17\x27\x10\x19\x80"), 50);
        b.epb(1, 5, b"frame of an unknown link type", 29);
        let mut arp = vec![0xffu8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4]);
        b.epb(0, 6, &arp, 20);
        b.epb(0, 7, &eth_tcp(40000, 6881, 24, false, b"again"), 59);
        let mut reader = CaptureReader::new(&b.out[..]).unwrap();
        let mut rec = Rec::default();
        let mut stats = Stats::default();
        process(&mut reader, &mut rec, &mut stats).unwrap();
        assert_eq!(stats.frames, 7);
        assert_eq!((stats.first_ts_ns, stats.last_ts_ns), (Some(1), Some(7)));
        assert_eq!(
            stats.link_types,
            vec![(LinkType::Ethernet, 6), (LinkType::Unknown(0x4242), 1)]
        );
        assert_eq!((stats.unknown_link_frames, stats.non_ip_frames), (1, 1));
        assert_eq!((stats.snaplen_cut_frames, stats.truncated_payloads), (1, 1));
        assert_eq!(
            (stats.tcp_segments, stats.tcp_payload_bytes),
            (4, 5 + 5 + 5)
        );
        assert_eq!((stats.udp_datagrams, stats.udp_payload_bytes), (1, 8));
        assert_eq!(rec.stream(0, Direction::AtoB), b"helloworldagain");
        let g = rec.gaps();
        assert_eq!(
            (
                g.len(),
                g[0].offset,
                g[0].len,
                g[0].frame_before,
                g[0].frame_after
            ),
            (1, 10, 3, Some(3), Some(7))
        );
        assert_eq!(rec.closes(), vec![(0, CloseReason::EndOfCapture)]);
        assert_eq!(stats.reassembly.gaps, 1);
        assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
    }

    #[test]
    fn driver_reports_damage_after_delivering_what_came_before() {
        let mut b = Builder::new(false);
        b.shb().idb(1, None, None);
        b.epb(0, 1, &eth_tcp(40000, 6881, 10, true, b""), 54);
        b.epb(0, 2, &eth_tcp(40000, 6881, 11, false, b"complete"), 62);
        b.epb(
            0,
            3,
            &eth_tcp(40000, 6881, 19, false, b"lost in the cut"),
            69,
        );
        let cut = b.out.len() - 10;
        let mut reader = CaptureReader::new(&b.out[..cut]).unwrap();
        let mut rec = Rec::default();
        let mut stats = Stats::default();
        let err = process(&mut reader, &mut rec, &mut stats).unwrap_err();
        assert!(matches!(err, CaptureError::Truncated { .. }));
        assert_eq!(rec.stream(0, Direction::AtoB), b"complete");
        assert_eq!(rec.closes(), vec![(0, CloseReason::EndOfCapture)]);
        assert_eq!(stats.warnings.len(), 1);
        assert!(
            stats.warnings[0].message.contains("cut short"),
            "{}",
            stats.warnings[0].message
        );
    }

    /// Counts packets and stops the reading after `stop_after` of them.
    struct Stopper {
        rec: Rec,
        frames: Vec<u64>,
        stop_after: usize,
    }

    impl StreamSink for Stopper {
        fn on_packet(&mut self, pkt: &Packet<'_>) {
            self.frames.push(pkt.frame_no);
        }
        fn on_packet_end(&mut self) -> std::ops::ControlFlow<()> {
            if self.frames.len() >= self.stop_after {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        }
        fn on_data(&mut self, c: ConnId, d: Direction, o: u64, data: &[u8], f: u64, ts: i64) {
            self.rec.on_data(c, d, o, data, f, ts);
        }
        fn on_close(&mut self, conn: ConnId, reason: CloseReason, ts: i64) {
            self.rec.on_close(conn, reason, ts);
        }
    }

    #[test]
    fn the_sink_sees_each_packet_and_can_stop_the_reading() {
        let mut b = Builder::new(true);
        b.shb().idb(1, None, None);
        b.epb(0, 1, &eth_tcp(40000, 6881, 10, true, b""), 54);
        b.epb(0, 2, &eth_tcp(40000, 6881, 11, false, b"kept"), 58);
        b.epb(0, 3, &eth_tcp(40000, 6881, 15, false, b"never read"), 64);
        let mut reader = CaptureReader::new(&b.out[..]).unwrap();
        let mut sink = Stopper {
            rec: Rec::default(),
            frames: Vec::new(),
            stop_after: 2,
        };
        let mut stats = Stats::default();
        process(&mut reader, &mut sink, &mut stats).unwrap();
        assert_eq!(sink.frames, [1, 2]);
        assert_eq!(stats.frames, 2);
        assert_eq!(sink.rec.stream(0, Direction::AtoB), b"kept");
        // What was open is still closed at the end.
        assert_eq!(sink.rec.closes(), vec![(0, CloseReason::EndOfCapture)]);
    }

    proptest::proptest! {
        /// Random frames (valid headers around random bytes, or pure noise) through the whole layer: no panic.
        #[test]
        fn whole_layer_never_panics(frames in proptest::collection::vec((0u8..4, proptest::num::u32::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..80)), 0..40)) {
            let mut b = Builder::new(true);
            b.shb().idb(1, None, None).idb(113, None, None).idb(101, None, None);
            for (kind, seq, bytes) in &frames {
                let f = match kind {
                    0 => eth_tcp(40000 + (*seq % 3) as u16, 6881, *seq % 4096, seq % 7 == 0, bytes),
                    1 => eth_udp(bytes),
                    _ => bytes.clone(),
                };
                b.epb(u32::from(*kind % 3), u64::from(*seq), &f, f.len() as u32);
            }
            let mut reader = CaptureReader::new(&b.out[..]).unwrap();
            let mut rec = Rec::default();
            let mut stats = Stats::default();
            process(&mut reader, &mut rec, &mut stats).unwrap();
            proptest::prop_assert_eq!(stats.frames, frames.len() as u64);
        }
    }
}
