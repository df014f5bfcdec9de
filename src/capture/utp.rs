//! uTP (BEP 29) over UDP: recognizing its packets on any port, and reassembling each
//! connection's two byte streams by `seq_nr` into the same [`StreamSink`] callbacks as TCP.
//!
//! A uTP packet is a 20-byte header (type and version 1 in the first byte, connection id,
//! timestamps, window, `seq_nr`, `ack_nr`), a chain of extension headers (selective ack,
//! extension bits, close reason, ...: each `next type, length, bytes`, skipped by length), then
//! the payload. [`parse`] checks all of it. A connection is the pair of endpoints and the
//! initiator's receive id `X`: its ST_SYN carries `X`, its later packets `X + 1`, the other
//! side's packets `X`. It opens on an ST_SYN, or — capture started mid-connection — once
//! packets are seen both ways with ids one apart.
//!
//! Each direction is reassembled by `seq_nr` (16 bits, wrapping): ST_SYN and ST_FIN use one
//! sequence number, ST_DATA carries the bytes, ST_STATE (acks) and ST_RESET carry none.
//! In-order payload goes to [`StreamSink::on_data`] straight from the frame; packets ahead of
//! a missing one are copied into a bounded buffer (per direction and overall, the TCP limits
//! of [`ReassemblyConfig`]); a retransmitted packet (its `seq_nr` already delivered or
//! buffered) counts once. A missing packet that will never come (the receiver acknowledged
//! it, so it was lost by the capture only; or the buffer is full; or the connection closed)
//! is a [`Gap`]: its length is unknown (uTP numbers packets, not bytes), so the stream
//! offsets after it jump by [`GAP_JUMP`], beyond any message length, and the decoder hunts
//! for the next message. The connection's life is reported as [`Life`] steps (ST_SYN,
//! the answering ST_STATE, each side's ST_FIN, ST_RESET, acks after the close).
//!
//! Connection ids of uTP connections are numbered on their own, from 0 in order of first
//! appearance, and carry [`UTP_CONN_BIT`] so they never meet TCP's in a sink.
//!
//! This module owns uTP only: it never sees TCP, and never decodes what the streams carry.
//! Contract: no datagram sequence makes it panic; buffered bytes stay under the limits.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::reassembly::{
    CloseReason, ConnId, ConnInfo, Datagram, Direction, Gap, GapReason, Life, ReassemblyConfig,
    StreamSink,
};

/// Bytes of the fixed uTP header.
pub const HEADER_LEN: usize = 20;

/// Set in the [`ConnId`] of every uTP connection (its number is the rest).
pub const UTP_CONN_BIT: u64 = 1 << 62;

/// How far the stream offsets jump over a gap of unknown length (lost packets): more than
/// any peer message, so decoding resumes by hunting for message framing.
pub const GAP_JUMP: u64 = 1 << 32;

/// Packets further ahead of the next expected one than this are not of this stream.
const MAX_AHEAD: u16 = 8192;

/// A hole the receiver acknowledged (its `ack_nr` is at or past the missing packet) in this
/// many packets was received but not captured: it will not be sent again, so it is a gap
/// right away instead of holding everything after it. (Two, not one, in case the capture
/// shows an ack just before the data it acknowledges.)
const HOLE_ACKS: u8 = 2;

/// Candidate flows remembered while waiting for the other direction (mid-stream pickup).
const MAX_CANDIDATES: usize = 4096;

impl ConnId {
    /// The id of uTP connection number `n`.
    pub fn utp(n: u64) -> ConnId {
        ConnId(n | UTP_CONN_BIT)
    }
    /// Whether this is a uTP connection.
    pub fn is_utp(self) -> bool {
        self.0 & UTP_CONN_BIT != 0
    }
    /// The connection's number (`tcp.stream`, or the uTP connection number).
    pub fn number(self) -> u64 {
        self.0 & !UTP_CONN_BIT
    }
}

/// The packet types of BEP 29.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Data,
    Fin,
    State,
    Reset,
    Syn,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<PacketType> {
        Some(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Data => "ST_DATA",
            PacketType::Fin => "ST_FIN",
            PacketType::State => "ST_STATE",
            PacketType::Reset => "ST_RESET",
            PacketType::Syn => "ST_SYN",
        }
    }
}

/// A parsed uTP packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub ty: PacketType,
    pub conn_id: u16,
    pub timestamp_us: u32,
    pub timestamp_diff_us: u32,
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
    /// Extension headers in the chain (selective ack and others).
    pub extensions: u8,
    /// Header and extension bytes: the payload starts here.
    pub payload_at: usize,
}

/// Why bytes are not a uTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotUtp {
    #[error("shorter than the 20-byte uTP header")]
    Short,
    #[error("version {0} (uTP is version 1)")]
    Version(u8),
    #[error("packet type {0} (uTP knows 0 to 4)")]
    Type(u8),
    #[error("extension type {0} is not one uTP uses")]
    Extension(u8),
    #[error("the extension chain runs past the end of the packet")]
    ExtensionTruncated,
    #[error("a selective ack of {0} bytes (a positive multiple of 4)")]
    BadSack(u8),
    #[error("{0} with a payload")]
    PayloadOnControl(&'static str),
}

/// Extension types seen in the wild: 1 selective ack (BEP 29), 2 extension bits, 3 close
/// reason (libtorrent). Higher ones make the packet "not uTP" (a guard against other
/// protocols on the same port).
const MAX_EXTENSION: u8 = 4;

/// Parses a uTP packet: its header (extension chain walked and checked) and payload.
pub fn parse(b: &[u8]) -> Result<(Header, &[u8]), NotUtp> {
    if b.len() < HEADER_LEN {
        return Err(NotUtp::Short);
    }
    if b[0] & 0x0f != 1 {
        return Err(NotUtp::Version(b[0] & 0x0f));
    }
    let ty = PacketType::from_nibble(b[0] >> 4).ok_or(NotUtp::Type(b[0] >> 4))?;
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut next = b[1];
    let mut at = HEADER_LEN;
    let mut extensions = 0u8;
    while next != 0 {
        if next > MAX_EXTENSION {
            return Err(NotUtp::Extension(next));
        }
        let (Some(&following), Some(&len)) = (b.get(at), b.get(at + 1)) else {
            return Err(NotUtp::ExtensionTruncated);
        };
        if next == 1 && (len == 0 || len % 4 != 0) {
            return Err(NotUtp::BadSack(len));
        }
        at += 2 + usize::from(len);
        if at > b.len() {
            return Err(NotUtp::ExtensionTruncated);
        }
        extensions = extensions.saturating_add(1);
        next = following;
    }
    let payload = &b[at..];
    if !payload.is_empty() && matches!(ty, PacketType::State | PacketType::Syn) {
        return Err(NotUtp::PayloadOnControl(ty.name()));
    }
    Ok((
        Header {
            ty,
            conn_id: u16_at(2),
            timestamp_us: u32_at(4),
            timestamp_diff_us: u32_at(8),
            wnd_size: u32_at(12),
            seq_nr: u16_at(16),
            ack_nr: u16_at(18),
            extensions,
            payload_at: at,
        },
        payload,
    ))
}

/// Whether a datagram is a uTP packet ([`parse`] accepts it).
pub fn is_utp(b: &[u8]) -> bool {
    parse(b).is_ok()
}

/// Counters of the uTP reassembler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UtpStats {
    /// uTP connections seen (opened by ST_SYN or picked up mid-stream).
    pub connections: u64,
    /// Of those, picked up mid-stream (no ST_SYN in the capture).
    pub mid_stream: u64,
    /// Datagrams that parse as uTP packets.
    pub packets: u64,
    /// Of those, belonging to no connection (a lone packet, or one before both ways were seen).
    pub unmatched_packets: u64,
    /// ST_DATA payload bytes seen, retransmissions included.
    pub payload_bytes: u64,
    /// Bytes handed to `on_data` (each stream byte once).
    pub delivered_bytes: u64,
    /// Packets whose `seq_nr` was already delivered or buffered (retransmissions).
    pub duplicate_packets: u64,
    /// Packets that arrived ahead of a missing one.
    pub out_of_order_packets: u64,
    /// Gaps, and the packets (sequence numbers) they lost.
    pub gaps: u64,
    pub lost_packets: u64,
    pub closed_fin: u64,
    pub closed_reset: u64,
    pub peak_buffered_bytes: u64,
}

/// A packet held until the ones before it come.
struct Pending {
    ty: PacketType,
    data: Vec<u8>,
    frame_no: u64,
    ts_ns: i64,
}

/// One direction of a uTP connection.
#[derive(Default)]
struct Half {
    started: bool,
    /// `seq_nr` of the next packet to deliver.
    next_seq: u16,
    /// Stream offset of the next byte.
    offset: u64,
    /// Packets ahead of `next_seq`, by their absolute sequence count (`consumed` + distance).
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    /// Sequence numbers consumed so far (the absolute number of `next_seq`).
    consumed: u64,
    /// The ST_FIN was delivered: the direction is over.
    done: bool,
    fin_seen: bool,
    last_frame: Option<u64>,
    /// Packets of the other side acking past the hole before `pending` (see [`HOLE_ACKS`]).
    hole_acks: u8,
}

struct Conn {
    id: ConnId,
    syn_seq: Option<u16>,
    half: [Half; 2],
    synack: bool,
    last_ts: i64,
    closed: bool,
}

type Key = (SocketAddr, SocketAddr, u16);

/// Reassembles the uTP connections of a capture. Feed every UDP datagram to
/// [`UtpReassembler::datagram`]; call [`UtpReassembler::finish`] at the end.
pub struct UtpReassembler {
    cfg: ReassemblyConfig,
    /// By (initiator, other side, initiator's receive id).
    conns: HashMap<Key, Conn>,
    /// Flows seen without a connection: (sender, receiver, id) → last timestamp.
    candidates: HashMap<Key, i64>,
    next_id: u64,
    total_buffered: usize,
    last_sweep_ts: i64,
    stats: UtpStats,
}

impl Default for UtpReassembler {
    fn default() -> Self {
        UtpReassembler::new(ReassemblyConfig::default())
    }
}

/// What a sink is told about one direction, gathered while a packet is handled.
struct Out<'s, S: StreamSink + ?Sized> {
    sink: &'s mut S,
    id: ConnId,
    dir: Direction,
}

impl UtpReassembler {
    pub fn new(cfg: ReassemblyConfig) -> Self {
        UtpReassembler {
            cfg,
            conns: HashMap::new(),
            candidates: HashMap::new(),
            next_id: 0,
            total_buffered: 0,
            last_sweep_ts: i64::MIN,
            stats: UtpStats::default(),
        }
    }

    pub fn stats(&self) -> &UtpStats {
        &self.stats
    }

    /// Handles one UDP datagram; returns whether it is a uTP packet (if not, nothing was done).
    pub fn datagram<S: StreamSink + ?Sized>(&mut self, dg: &Datagram<'_>, sink: &mut S) -> bool {
        let Ok((h, payload)) = parse(dg.payload) else {
            return false;
        };
        self.stats.packets += 1;
        if h.ty == PacketType::Data {
            self.stats.payload_bytes += payload.len() as u64;
        }
        self.sweep(dg.ts_ns, sink);
        if h.ty == PacketType::Syn {
            self.syn(dg, &h, sink);
            return true;
        }
        let Some((key, dir)) = self.find(dg, &h, sink) else {
            self.stats.unmatched_packets += 1;
            return true;
        };
        let Some(c) = self.conns.get_mut(&key) else {
            return true;
        };
        c.last_ts = dg.ts_ns;
        let mut out = Out {
            sink,
            id: c.id,
            dir,
        };
        if c.closed {
            if h.ty == PacketType::State {
                out.sink
                    .on_life(c.id, Life::AckAfterClose(dir), dg.frame_no, dg.ts_ns);
            }
            return true;
        }
        // The life steps first, as TCP's: the answer to the SYN, a RESET.
        if dir == Direction::BtoA && h.ty == PacketType::State && !c.synack && c.syn_seq.is_some() {
            c.synack = true;
            out.sink.on_life(c.id, Life::SynAck, dg.frame_no, dg.ts_ns);
        }
        if h.ty == PacketType::Reset {
            out.sink
                .on_life(c.id, Life::Reset(dir), dg.frame_no, dg.ts_ns);
            self.stats.closed_reset += 1;
            Self::close(
                c,
                &mut self.total_buffered,
                &mut self.stats,
                out.sink,
                CloseReason::Rst,
                dg.ts_ns,
            );
            return true;
        }
        // The other side's ack says whether a hole in its incoming direction was received.
        {
            let mut back = Out {
                sink: &mut *out.sink,
                id: c.id,
                dir: dir.reverse(),
            };
            let other = &mut c.half[dir.reverse().index()];
            if other.started && !other.done && !other.pending.is_empty() {
                if h.ack_nr.wrapping_sub(other.next_seq) < 0x8000 {
                    other.hole_acks += 1;
                }
                if other.hole_acks >= HOLE_ACKS {
                    let (total, stats) = (&mut self.total_buffered, &mut self.stats);
                    Self::skip_hole(other, stats, &mut back, GapReason::BufferLimit);
                    Self::drain(other, total, stats, &mut back);
                }
            }
        }
        let d = dir.index();
        // The other side's first packet (ST_STATE answering the SYN, or its first data)
        // starts its stream: ST_STATE does not use a sequence number.
        if !c.half[d].started {
            let h_d = &mut c.half[d];
            h_d.started = true;
            h_d.next_seq = h.seq_nr;
        }
        if matches!(h.ty, PacketType::Data | PacketType::Fin) {
            Self::packet(
                c,
                &mut self.total_buffered,
                &mut self.stats,
                &self.cfg,
                &mut out,
                h.ty,
                h.seq_nr,
                payload,
                dg.frame_no,
                dg.ts_ns,
            );
        }
        if c.half.iter().all(|x| x.done) {
            self.stats.closed_fin += 1;
            Self::close(
                c,
                &mut self.total_buffered,
                &mut self.stats,
                out.sink,
                CloseReason::Fin,
                dg.ts_ns,
            );
        }
        true
    }

    /// An ST_SYN: a new connection, unless it is a retransmission.
    fn syn<S: StreamSink + ?Sized>(&mut self, dg: &Datagram<'_>, h: &Header, sink: &mut S) {
        let key = (dg.src, dg.dst, h.conn_id);
        match self.conns.get(&key) {
            Some(c) if c.syn_seq.is_none_or(|s| s == h.seq_nr) => {
                self.stats.duplicate_packets += 1;
                return;
            }
            Some(_) => {
                // The same ids again with another SYN: a new connection.
                if let Some(mut old) = self.conns.remove(&key) {
                    let reason = CloseReason::Reused;
                    Self::close(
                        &mut old,
                        &mut self.total_buffered,
                        &mut self.stats,
                        sink,
                        reason,
                        dg.ts_ns,
                    );
                }
            }
            None => {}
        }
        let Some(mut c) = self.open(key, Some(h.seq_nr), dg, sink) else {
            self.stats.unmatched_packets += 1;
            return;
        };
        sink.on_life(c.id, Life::Syn, dg.frame_no, dg.ts_ns);
        // The SYN uses one sequence number of the initiator's stream.
        let a = &mut c.half[0];
        a.started = true;
        a.next_seq = h.seq_nr.wrapping_add(1);
        a.consumed = 1;
        a.last_frame = Some(dg.frame_no);
        self.conns.insert(key, c);
    }

    /// The connection and direction of a packet other than ST_SYN, opening a connection
    /// mid-stream when the flow's partner (the other direction, id one apart) was seen.
    fn find<S: StreamSink + ?Sized>(
        &mut self,
        dg: &Datagram<'_>,
        h: &Header,
        sink: &mut S,
    ) -> Option<(Key, Direction)> {
        let (s, r, id) = (dg.src, dg.dst, h.conn_id);
        let as_a = (s, r, id.wrapping_sub(1));
        if self.conns.contains_key(&as_a) {
            return Some((as_a, Direction::AtoB));
        }
        let as_b = (r, s, id);
        if self.conns.contains_key(&as_b) {
            return Some((as_b, Direction::BtoA));
        }
        // Mid-stream: open once the other direction was seen with the id one apart.
        let (key, dir) = if self
            .candidates
            .remove(&(r, s, id.wrapping_add(1)))
            .is_some()
        {
            // The other side sends id + 1: it is the initiator.
            ((r, s, id), Direction::BtoA)
        } else if self
            .candidates
            .remove(&(r, s, id.wrapping_sub(1)))
            .is_some()
        {
            (as_a, Direction::AtoB)
        } else {
            if self.candidates.len() >= MAX_CANDIDATES {
                self.candidates.clear();
            }
            self.candidates.insert((s, r, id), dg.ts_ns);
            return None;
        };
        let c = self.open(key, None, dg, sink)?;
        self.conns.insert(key, c);
        self.stats.mid_stream += 1;
        Some((key, dir))
    }

    fn open<S: StreamSink + ?Sized>(
        &mut self,
        key: Key,
        syn: Option<u16>,
        dg: &Datagram<'_>,
        sink: &mut S,
    ) -> Option<Conn> {
        if self.conns.len() >= self.cfg.max_connections {
            return None;
        }
        let id = ConnId::utp(self.next_id);
        self.next_id += 1;
        self.stats.connections += 1;
        sink.on_open(&ConnInfo {
            id,
            a: key.0,
            b: key.1,
            first_frame: dg.frame_no,
            first_ts_ns: dg.ts_ns,
            syn_seen: syn.is_some(),
        });
        Some(Conn {
            id,
            syn_seq: syn,
            half: Default::default(),
            synack: false,
            last_ts: dg.ts_ns,
            closed: false,
        })
    }

    /// An ST_DATA or ST_FIN packet of one direction.
    #[allow(clippy::too_many_arguments)]
    fn packet<S: StreamSink + ?Sized>(
        c: &mut Conn,
        total: &mut usize,
        stats: &mut UtpStats,
        cfg: &ReassemblyConfig,
        out: &mut Out<'_, S>,
        ty: PacketType,
        seq: u16,
        payload: &[u8],
        frame_no: u64,
        ts_ns: i64,
    ) {
        let half = &mut c.half[out.dir.index()];
        if half.done {
            stats.duplicate_packets += 1;
            return;
        }
        if ty == PacketType::Fin && !half.fin_seen {
            half.fin_seen = true;
            out.sink
                .on_life(out.id, Life::Fin(out.dir), frame_no, ts_ns);
        }
        let ahead = seq.wrapping_sub(half.next_seq);
        if ahead >= 0x8000 {
            // Behind the next expected one: already delivered.
            stats.duplicate_packets += 1;
            return;
        }
        if ahead > MAX_AHEAD {
            return;
        }
        if ahead > 0 {
            let key = half.consumed + u64::from(ahead);
            if half.pending.contains_key(&key) {
                stats.duplicate_packets += 1;
                return;
            }
            stats.out_of_order_packets += 1;
            half.pending.insert(
                key,
                Pending {
                    ty,
                    data: payload.to_vec(),
                    frame_no,
                    ts_ns,
                },
            );
            half.pending_bytes += payload.len();
            *total += payload.len();
            stats.peak_buffered_bytes = stats.peak_buffered_bytes.max(*total as u64);
            if half.pending_bytes > cfg.max_buffered_per_direction
                || *total > cfg.max_buffered_total
            {
                // Give up on the hole: skip to the first packet held.
                Self::skip_hole(half, stats, out, GapReason::BufferLimit);
                Self::drain(half, total, stats, out);
            }
            return;
        }
        Self::deliver(half, stats, out, ty, payload, frame_no, ts_ns);
        Self::drain(half, total, stats, out);
    }

    /// Hands the packet at `next_seq` on.
    fn deliver<S: StreamSink + ?Sized>(
        half: &mut Half,
        stats: &mut UtpStats,
        out: &mut Out<'_, S>,
        ty: PacketType,
        payload: &[u8],
        frame_no: u64,
        ts_ns: i64,
    ) {
        if !payload.is_empty() {
            out.sink
                .on_data(out.id, out.dir, half.offset, payload, frame_no, ts_ns);
            half.offset += payload.len() as u64;
            stats.delivered_bytes += payload.len() as u64;
        }
        half.last_frame = Some(frame_no);
        half.next_seq = half.next_seq.wrapping_add(1);
        half.consumed += 1;
        if ty == PacketType::Fin {
            half.done = true;
        }
    }

    /// Delivers the held packets that are now in order.
    fn drain<S: StreamSink + ?Sized>(
        half: &mut Half,
        total: &mut usize,
        stats: &mut UtpStats,
        out: &mut Out<'_, S>,
    ) {
        while !half.done {
            let Some(p) = half.pending.remove(&half.consumed) else {
                break;
            };
            half.hole_acks = 0;
            half.pending_bytes -= p.data.len();
            *total -= p.data.len();
            Self::deliver(half, stats, out, p.ty, &p.data, p.frame_no, p.ts_ns);
        }
        if half.done {
            Self::drop_pending(half, total);
        }
    }

    fn drop_pending(half: &mut Half, total: &mut usize) {
        *total -= half.pending_bytes;
        half.pending_bytes = 0;
        half.pending.clear();
    }

    /// The packets before the first one held never came: a gap up to it.
    fn skip_hole<S: StreamSink + ?Sized>(
        half: &mut Half,
        stats: &mut UtpStats,
        out: &mut Out<'_, S>,
        reason: GapReason,
    ) {
        let Some((&first, p)) = half.pending.iter().next() else {
            return;
        };
        let lost = first - half.consumed;
        stats.gaps += 1;
        stats.lost_packets += lost;
        out.sink.on_gap(
            out.id,
            out.dir,
            &Gap {
                offset: half.offset,
                len: GAP_JUMP,
                frame_before: half.last_frame,
                frame_after: Some(p.frame_no),
                ts_after: Some(p.ts_ns),
                reason,
            },
        );
        half.offset += GAP_JUMP;
        half.next_seq = half.next_seq.wrapping_add(lost as u16);
        half.consumed = first;
        half.hole_acks = 0;
    }

    /// Ends a connection: what is still held is delivered after gaps, then the sink hears of
    /// the close. The connection stays as a tombstone (late acks) until it is idle.
    fn close<S: StreamSink + ?Sized>(
        c: &mut Conn,
        total: &mut usize,
        stats: &mut UtpStats,
        sink: &mut S,
        reason: CloseReason,
        ts_ns: i64,
    ) {
        if c.closed {
            return;
        }
        for dir in [Direction::AtoB, Direction::BtoA] {
            let mut out = Out {
                sink: &mut *sink,
                id: c.id,
                dir,
            };
            let half = &mut c.half[dir.index()];
            while !half.pending.is_empty() && !half.done {
                Self::skip_hole(half, stats, &mut out, GapReason::Closed);
                Self::drain(half, total, stats, &mut out);
            }
            Self::drop_pending(half, total);
        }
        c.closed = true;
        sink.on_close(c.id, reason, ts_ns);
    }

    /// Closes connections idle for longer than the timeout (checked once per second of
    /// capture time) and forgets old tombstones and candidates.
    fn sweep<S: StreamSink + ?Sized>(&mut self, now: i64, sink: &mut S) {
        if now.saturating_sub(self.last_sweep_ts) < 1_000_000_000 {
            return;
        }
        self.last_sweep_ts = now;
        let limit = now.saturating_sub(self.cfg.idle_timeout_ns);
        let idle: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.last_ts < limit)
            .map(|(k, _)| *k)
            .collect();
        let mut idle: Vec<Conn> = idle.iter().filter_map(|k| self.conns.remove(k)).collect();
        idle.sort_by_key(|c| c.id);
        for mut c in idle {
            Self::close(
                &mut c,
                &mut self.total_buffered,
                &mut self.stats,
                sink,
                CloseReason::Idle,
                now,
            );
        }
        self.candidates.retain(|_, ts| *ts >= limit);
    }

    /// Closes every connection still open (end of capture), in order of their numbers.
    pub fn finish<S: StreamSink + ?Sized>(&mut self, sink: &mut S) {
        let mut all: Vec<Conn> = self.conns.drain().map(|(_, c)| c).collect();
        all.sort_by_key(|c| c.id);
        let ts = all.iter().map(|c| c.last_ts).max().unwrap_or(0);
        for mut c in all {
            Self::close(
                &mut c,
                &mut self.total_buffered,
                &mut self.stats,
                sink,
                CloseReason::EndOfCapture,
                ts,
            );
        }
        self.candidates.clear();
    }

    /// Bytes held out of order right now.
    pub fn buffered(&self) -> usize {
        self.total_buffered
    }
}

/// Runs framed datagrams through a reassembler that discards the streams: for a fuzz
/// target. Each datagram is a byte whose bit 0 says the direction (set: from the first
/// endpoint), a 2-byte big-endian length, and that many bytes (cut short at the end).
/// Never panics.
pub fn reassemble_framed(mut bytes: &[u8]) -> UtpStats {
    struct Discard;
    impl StreamSink for Discard {
        fn on_data(&mut self, _: ConnId, _: Direction, _: u64, _: &[u8], _: u64, _: i64) {}
    }
    let mut dgs = Vec::new();
    while let [dir, hi, lo, rest @ ..] = bytes {
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        dgs.push((dir & 1 == 1, &rest[..n]));
        bytes = &rest[n..];
    }
    reassemble_bytes(&dgs, &mut Discard)
}

/// Runs `datagrams` (payloads between two endpoints, `true` = from the initiator's side)
/// through a reassembler into `sink`: for the fuzz target and tests. Never panics.
pub fn reassemble_bytes<S: StreamSink + ?Sized>(
    datagrams: &[(bool, &[u8])],
    sink: &mut S,
) -> UtpStats {
    let a: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 6881));
    let b: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 6882));
    let mut r = UtpReassembler::default();
    for (i, (from_a, payload)) in datagrams.iter().enumerate() {
        let (src, dst) = if *from_a { (a, b) } else { (b, a) };
        r.datagram(
            &Datagram {
                src,
                dst,
                payload,
                frame_no: i as u64 + 1,
                ts_ns: i as i64 * 1000,
                truncated: false,
            },
            sink,
        );
    }
    r.finish(sink);
    *r.stats()
}

#[cfg(test)]
mod tests {
    use super::super::reassembly::tests::{Ev, Rec};
    use super::*;
    use proptest::prelude::*;

    /// A uTP packet: type, connection id, seq, ack, extensions (type, bytes), payload.
    fn pkt(ty: u8, id: u16, seq: u16, ack: u16, ext: &[(u8, &[u8])], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![ty << 4 | 1, ext.first().map_or(0, |e| e.0)];
        v.extend(id.to_be_bytes());
        v.extend([0u8; 12]);
        v.extend(seq.to_be_bytes());
        v.extend(ack.to_be_bytes());
        for (i, (_, bytes)) in ext.iter().enumerate() {
            v.push(ext.get(i + 1).map_or(0, |e| e.0));
            v.push(bytes.len() as u8);
            v.extend_from_slice(bytes);
        }
        v.extend_from_slice(payload);
        v
    }
    const SYN: u8 = 4;
    const STATE: u8 = 2;
    const DATA: u8 = 0;
    const FIN: u8 = 1;
    const RESET: u8 = 3;

    fn run(dgs: &[(bool, Vec<u8>)]) -> (Rec, UtpStats) {
        let mut rec = Rec::default();
        let v: Vec<(bool, &[u8])> = dgs.iter().map(|(a, p)| (*a, &p[..])).collect();
        let st = reassemble_bytes(&v, &mut rec);
        (rec, st)
    }

    #[test]
    fn parse_checks_version_type_and_the_extension_chain() {
        let sack = [0xffu8, 0, 0, 0];
        let p = pkt(DATA, 7, 100, 5, &[(1, &sack), (2, &[0; 8])], b"hello");
        let (h, payload) = parse(&p).unwrap();
        assert_eq!(
            (h.ty, h.conn_id, h.seq_nr, h.ack_nr),
            (PacketType::Data, 7, 100, 5)
        );
        assert_eq!(
            (h.extensions, h.payload_at, payload),
            (2, 20 + 6 + 10, &b"hello"[..])
        );
        assert_eq!(parse(&p[..19]), Err(NotUtp::Short));
        let mut v2 = p.clone();
        v2[0] = DATA << 4 | 2;
        assert_eq!(parse(&v2), Err(NotUtp::Version(2)));
        v2[0] = 5 << 4 | 1;
        assert_eq!(parse(&v2), Err(NotUtp::Type(5)));
        assert_eq!(parse(&p[..24]), Err(NotUtp::ExtensionTruncated));
        assert_eq!(
            parse(&pkt(DATA, 7, 1, 1, &[(1, &[0; 3])], b"")),
            Err(NotUtp::BadSack(3))
        );
        assert_eq!(
            parse(&pkt(DATA, 7, 1, 1, &[(9, &[0; 4])], b"")),
            Err(NotUtp::Extension(9))
        );
        assert!(parse(&pkt(STATE, 7, 1, 1, &[], b"x")).is_err());
        // A DHT message is not uTP.
        assert!(!is_utp(
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
        ));
    }

    /// A connection: SYN (id 1000, seq 500), STATE (seq 9000), data both ways, FINs.
    fn exchange() -> Vec<(bool, Vec<u8>)> {
        vec![
            (true, pkt(SYN, 1000, 500, 0, &[], b"")),
            (false, pkt(STATE, 1000, 9000, 500, &[], b"")),
            (true, pkt(DATA, 1001, 501, 8999, &[], b"hello ")),
            (false, pkt(DATA, 1000, 9000, 501, &[], b"HEL")),
            (true, pkt(DATA, 1001, 502, 9000, &[], b"world")),
            (
                false,
                pkt(DATA, 1000, 9001, 502, &[(1, &[1, 0, 0, 0])], b"LO"),
            ),
            (true, pkt(FIN, 1001, 503, 9001, &[], b"")),
            (false, pkt(FIN, 1000, 9002, 503, &[], b"")),
            (true, pkt(STATE, 1001, 504, 9002, &[], b"")),
        ]
    }

    #[test]
    fn a_whole_connection_both_ways() {
        let (rec, st) = run(&exchange());
        let id = ConnId::utp(0).0;
        assert_eq!(rec.stream(id, Direction::AtoB), b"hello world");
        assert_eq!(rec.stream(id, Direction::BtoA), b"HELLO");
        assert_eq!(rec.closes(), vec![(id, CloseReason::Fin)]);
        let lives: Vec<(Life, u64)> = rec.lives().into_iter().map(|(_, l, f)| (l, f)).collect();
        assert_eq!(
            lives,
            [
                (Life::Syn, 1),
                (Life::SynAck, 2),
                (Life::Fin(Direction::AtoB), 7),
                (Life::Fin(Direction::BtoA), 8),
                (Life::AckAfterClose(Direction::AtoB), 9)
            ]
        );
        assert_eq!((st.connections, st.packets, st.delivered_bytes), (1, 9, 16));
        assert!(rec.gaps().is_empty());
    }

    #[test]
    fn reordered_and_retransmitted_packets_count_once() {
        let mut x = exchange();
        x.swap(2, 4); // "world" before "hello "
        let again = x[3].clone();
        x.insert(5, again); // "HEL" retransmitted
        let syn = x[0].clone();
        x.insert(1, syn); // SYN retransmitted
        let (rec, st) = run(&x);
        let id = ConnId::utp(0).0;
        assert_eq!(rec.stream(id, Direction::AtoB), b"hello world");
        assert_eq!(rec.stream(id, Direction::BtoA), b"HELLO");
        assert_eq!((st.duplicate_packets, st.out_of_order_packets), (2, 1));
        assert_eq!(st.connections, 1);
    }

    #[test]
    fn a_lost_packet_is_a_gap_and_the_stream_goes_on() {
        let mut x = exchange();
        x.remove(2); // "hello " never captured
        let (rec, st) = run(&x);
        let id = ConnId::utp(0).0;
        assert_eq!(rec.stream(id, Direction::AtoB), b"world");
        let g = rec.gaps();
        assert_eq!(g.len(), 1);
        // The receiver acked the lost packet twice (frames 3 and 5): a gap there and then.
        assert_eq!(
            (g[0].offset, g[0].len, g[0].reason),
            (0, GAP_JUMP, GapReason::BufferLimit)
        );
        assert_eq!((g[0].frame_before, g[0].frame_after), (Some(1), Some(4)));
        assert_eq!((st.gaps, st.lost_packets), (1, 1));
        let at = rec
            .ev
            .iter()
            .position(|e| matches!(e, Ev::Gap { .. }))
            .unwrap();
        assert!(matches!(rec.ev[at + 1], Ev::Data { .. }));
        assert_eq!(rec.closes(), vec![(id, CloseReason::Fin)]);

        // Without acks past it, the hole waits for the end of the connection.
        let mut x = exchange();
        x.remove(2);
        for p in &mut x {
            if !p.0 {
                p.1[18..20].copy_from_slice(&500u16.to_be_bytes());
            }
        }
        let (rec, _) = run(&x);
        assert_eq!(rec.gaps()[0].reason, GapReason::Closed);
        assert_eq!(rec.closes(), vec![(id, CloseReason::EndOfCapture)]);
    }

    #[test]
    fn the_buffer_limit_gives_up_on_a_hole() {
        let cfg = ReassemblyConfig {
            max_buffered_per_direction: 100,
            ..ReassemblyConfig::default()
        };
        let mut r = UtpReassembler::new(cfg);
        let mut rec = Rec::default();
        let (a, b) = (
            SocketAddr::from(([10, 0, 0, 1], 1)),
            SocketAddr::from(([10, 0, 0, 2], 2)),
        );
        let mut frame = 0;
        let mut send = |r: &mut UtpReassembler, rec: &mut Rec, from_a: bool, p: Vec<u8>| {
            frame += 1;
            let (src, dst) = if from_a { (a, b) } else { (b, a) };
            r.datagram(
                &Datagram {
                    src,
                    dst,
                    payload: &p,
                    frame_no: frame,
                    ts_ns: frame as i64,
                    truncated: false,
                },
                rec,
            )
        };
        send(&mut r, &mut rec, true, pkt(SYN, 5, 10, 0, &[], b""));
        // seq 11 is lost; 12.. are held until the limit.
        for s in 12..20u16 {
            send(
                &mut r,
                &mut rec,
                true,
                pkt(DATA, 6, s, 0, &[], &[s as u8; 30]),
            );
            assert!(r.buffered() <= 100 + 30);
        }
        let id = ConnId::utp(0).0;
        assert_eq!(rec.gaps().len(), 1);
        assert_eq!(rec.gaps()[0].reason, GapReason::BufferLimit);
        assert_eq!(rec.stream(id, Direction::AtoB).len(), 8 * 30);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn mid_stream_pickup_needs_both_directions_and_reset_closes() {
        let x = vec![
            (true, pkt(DATA, 301, 40, 70, &[], b"lost: no partner yet")),
            (false, pkt(STATE, 300, 71, 40, &[], b"")),
            (true, pkt(DATA, 301, 41, 70, &[], b"kept")),
            (false, pkt(RESET, 300, 71, 41, &[], b"")),
        ];
        let (rec, st) = run(&x);
        let id = ConnId::utp(0).0;
        assert_eq!(rec.stream(id, Direction::AtoB), b"kept");
        assert_eq!(
            (st.connections, st.mid_stream, st.unmatched_packets),
            (1, 1, 1)
        );
        assert_eq!(rec.closes(), vec![(id, CloseReason::Rst)]);
        // A lone packet opens nothing.
        let (rec, st) = run(&[(true, pkt(DATA, 9, 1, 1, &[], b"x"))]);
        assert!(rec.ev.is_empty());
        assert_eq!(st.connections, 0);
    }

    proptest! {
        /// Any datagrams (valid packets of one connection with random fields, or noise), in any
        /// order: no panic, buffered bytes stay bounded, nothing held at the end.
        #[test]
        fn any_datagrams_never_panic(
            dgs in proptest::collection::vec(
                (any::<bool>(), 0u8..6, 998u16..1003, 0u16..40, 0usize..3, proptest::collection::vec(any::<u8>(), 0..60)),
                0..60),
        ) {
            let v: Vec<(bool, Vec<u8>)> = dgs
                .iter()
                .map(|(a, ty, id, seq, ext, bytes)| {
                    let p = match (ty, ext) {
                        (5, _) => bytes.clone(),
                        (_, 0) => pkt(*ty, *id, *seq, 0, &[], bytes),
                        (_, 1) => pkt(*ty, *id, *seq, 0, &[(1, &[0xff; 4])], bytes),
                        _ => pkt(*ty, *id, *seq, 0, &[(2, &[0; 8]), (3, &[1, 2])], bytes),
                    };
                    (*a, p)
                })
                .collect();
            let mut rec = Rec::default();
            let refs: Vec<(bool, &[u8])> = v.iter().map(|(a, p)| (*a, &p[..])).collect();
            let mut r = UtpReassembler::default();
            let (a, b) = (SocketAddr::from(([127, 0, 0, 1], 1)), SocketAddr::from(([127, 0, 0, 1], 2)));
            for (i, (from_a, p)) in refs.iter().enumerate() {
                let (src, dst) = if *from_a { (a, b) } else { (b, a) };
                r.datagram(&Datagram { src, dst, payload: p, frame_no: i as u64 + 1, ts_ns: i as i64, truncated: false }, &mut rec);
                prop_assert!(r.buffered() <= ReassemblyConfig::default().max_buffered_total + 60);
            }
            r.finish(&mut rec);
            prop_assert_eq!(r.buffered(), 0);
        }

        #[test]
        fn framed_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = reassemble_framed(&bytes);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse(&bytes);
        }
    }
}
