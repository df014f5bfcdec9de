//! TCP reassembly (RFC 9293 sequence-number arithmetic) into per-direction byte streams.
//!
//! Each connection is found by its normalized 4-tuple (both directions map to one entry) and gets a [`ConnId`]
//! in order of first appearance, like Wireshark's `tcp.stream`. Its two directions are reassembled separately:
//! in-order bytes are handed to a [`StreamSink`] straight from the captured frame (zero-copy; every chunk comes
//! from exactly one frame); out-of-order segments are copied into a bounded buffer until the hole before them is
//! filled. Retransmitted and overlapping bytes are dropped (the first copy wins, except that the segment that
//! fills a hole is delivered whole); when two copies disagree while one is still buffered, the sink hears of the
//! conflict. A hole that never fills — the buffer limit is hit, or the flow ends — becomes a
//! [`Gap`] (missing byte range and the frames around it); the stream then resynchronizes after it.
//!
//! Lifecycle: SYN sets a direction's start; without one (capture started mid-connection) the first segment
//! carrying data or FIN does. FIN ends a direction once every byte before it arrived; FIN in both directions or
//! RST closes the connection, which stays as a small tombstone (late ACKs do not open a new one) until idle
//! expiry or a new SYN reuses the 4-tuple. Idle connections expire; the number of connections is capped.
//! The steps of a connection's life that its flags show (SYN, SYN-ACK, the handshake's last ACK, each side's
//! first FIN, a RST, a SYN refused with a RST, ACKs after the close) are reported as [`Life`] events with
//! their frame numbers, before the segment's data, so a sink never needs to look at the packets itself.
//!
//! Delivered bytes are not retained (constant memory), so a retransmission of already-delivered bytes is counted
//! as duplicate but not compared; overlaps are compared while the bytes are still buffered.
//!
//! Contract: no segment sequence makes this panic, and buffered bytes never exceed the configured limits
//! (by more than one segment, briefly, for the overall limit).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;

use super::link::{TcpFlags, TcpSegment};
use super::reader::Packet;

/// A TCP sequence number; comparisons wrap around 2^32 (`a < b` iff `(a - b) as i32 < 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    #[inline]
    pub fn wrapping_add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }
    /// Signed distance `self - other`, valid when the two are less than 2^31 apart.
    #[inline]
    pub fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<std::cmp::Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

/// Connection number, in order of first appearance (0-based, like Wireshark's `tcp.stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Direction within a connection. `A` is the endpoint that sent the SYN, or (capture started mid-connection) the
/// sender of the first segment seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    AtoB,
    BtoA,
}

impl Direction {
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Direction::AtoB => 0,
            Direction::BtoA => 1,
        }
    }
    pub fn reverse(self) -> Direction {
        match self {
            Direction::AtoB => Direction::BtoA,
            Direction::BtoA => Direction::AtoB,
        }
    }
}

/// What is known of a connection when it first appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub id: ConnId,
    pub a: SocketAddr,
    pub b: SocketAddr,
    pub first_frame: u64,
    pub first_ts_ns: i64,
    /// The first segment seen was the opening SYN (or SYN-ACK): the streams start at their beginning.
    pub syn_seen: bool,
}

/// Bytes missing from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Stream offset of the first missing byte; the stream goes on at `offset + len`.
    pub offset: u64,
    pub len: u64,
    /// Frame of the last bytes delivered before the hole (`None` if nothing was).
    pub frame_before: Option<u64>,
    /// Frame whose bytes resume after the hole (or the FIN's frame when the tail is missing).
    pub frame_after: Option<u64>,
    /// Timestamp of `frame_after`.
    pub ts_after: Option<i64>,
    pub reason: GapReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The out-of-order buffer filled up before the hole was filled.
    BufferLimit,
    /// The connection ended (FIN, RST, idle, end of capture) with the hole still open.
    Closed,
    /// The direction's start is not in the capture (no SYN) and the other side's ACKs show
    /// bytes sent before the first one seen: the gap is at stream offset 0.
    StartMissing,
}

/// Two copies of the same stream bytes that differ (only checked while both are buffered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    pub offset: u64,
    /// Length of the overlap compared, and how many of its bytes differ.
    pub len: u64,
    pub differing: u64,
    /// Frame whose copy was kept, and frame whose copy was dropped.
    pub kept_frame: u64,
    pub dropped_frame: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// FIN seen and all data before it delivered, both ways.
    Fin,
    Rst,
    /// No segment for longer than the idle timeout.
    Idle,
    /// Dropped to stay under the connection limit.
    Evicted,
    /// A new SYN reused the 4-tuple with another initial sequence number.
    Reused,
    EndOfCapture,
}

/// A step in a connection's life, read off the TCP flags of one of its segments. Each is reported once per
/// connection, except [`Life::AckAfterClose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// A's opening SYN (it opened the connection).
    Syn,
    /// B's SYN-ACK (it may have opened the connection, when the SYN was not captured).
    SynAck,
    /// A's first ACK after the SYN-ACK: the three-way handshake is complete.
    Established,
    /// The first FIN sent in this direction.
    Fin(Direction),
    /// A RST sent in this direction: the connection is reset and closes ([`CloseReason::Rst`]).
    Reset(Direction),
    /// B answered A's SYN with a RST, without a SYN-ACK: the dial was refused. The connection closes
    /// ([`CloseReason::Rst`]), as for [`Life::Reset`]`(BtoA)`.
    Refused,
    /// An ACK sent in this direction after the connection closed: the last ACK of a FIN exchange, or a late
    /// one.
    AckAfterClose(Direction),
}

/// A UDP datagram handed to the sink as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: &'a [u8],
    pub frame_no: u64,
    pub ts_ns: i64,
    /// The payload was cut by the snap length.
    pub truncated: bool,
}

/// Receives reassembled streams. Only `on_data` is required.
pub trait StreamSink {
    /// A packet begins (when driven by [`super::feed`]): the callbacks up to [`StreamSink::on_packet_end`]
    /// come from it.
    fn on_packet(&mut self, _pkt: &Packet<'_>) {}
    /// The packet's callbacks are over; `Break` stops the reading there (the sink cannot go on).
    fn on_packet_end(&mut self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn on_open(&mut self, _info: &ConnInfo) {}
    /// In-order bytes of one direction, starting at stream `offset`, all from frame `frame_no`.
    fn on_data(
        &mut self,
        conn: ConnId,
        dir: Direction,
        offset: u64,
        data: &[u8],
        frame_no: u64,
        ts_ns: i64,
    );
    fn on_gap(&mut self, _conn: ConnId, _dir: Direction, _gap: &Gap) {}
    fn on_conflict(&mut self, _conn: ConnId, _dir: Direction, _conflict: &Conflict) {}
    fn on_close(&mut self, _conn: ConnId, _reason: CloseReason, _ts_ns: i64) {}
    /// A step of the connection's life, seen in frame `frame_no` (before that frame's data, if any).
    fn on_life(&mut self, _conn: ConnId, _life: Life, _frame_no: u64, _ts_ns: i64) {}
    fn on_udp(&mut self, _dg: &Datagram<'_>) {}
    /// After each packet (when driven by [`super::feed`]): the oldest frame whose bytes the
    /// reassembly still holds (out-of-order segments), `None` when it holds none. Bytes of
    /// older frames can no longer come; a sink that orders its output by frame uses this.
    fn on_buffered(&mut self, _oldest_frame: Option<u64>) {}
}

/// Limits of the reassembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Out-of-order bytes buffered per direction before giving up on the hole.
    pub max_buffered_per_direction: usize,
    /// Out-of-order bytes buffered over all connections.
    pub max_buffered_total: usize,
    /// A connection with no segment for this long (capture time) is closed and forgotten.
    pub idle_timeout_ns: i64,
    /// Connections (open or closed tombstones) tracked at once; the least recently active go first.
    pub max_connections: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_buffered_per_direction: 4 << 20,
            max_buffered_total: 24 << 20,
            idle_timeout_ns: 600 * 1_000_000_000,
            max_connections: 65_536,
        }
    }
}

/// Counters kept by the reassembler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub connections: u64,
    pub segments: u64,
    /// TCP payload bytes seen, retransmissions included.
    pub payload_bytes: u64,
    /// Bytes handed to `on_data` (each stream byte once).
    pub delivered_bytes: u64,
    pub duplicate_bytes: u64,
    pub out_of_order_segments: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub conflicts: u64,
    pub conflict_bytes: u64,
    pub closed_fin: u64,
    pub closed_rst: u64,
    pub expired_idle: u64,
    pub evicted: u64,
    /// Segments for a connection that was already closed (late ACKs, retransmitted FINs).
    pub after_close_segments: u64,
    pub peak_buffered_bytes: u64,
}

/// A small, fast, deterministic hasher for flow keys (FxHash). Keys come from the capture, not from an
/// attacker-chosen stream of inserts, and the connection count is capped.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Normalized 4-tuple: the smaller endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl FlowKey {
    fn new(x: (IpAddr, u16), y: (IpAddr, u16)) -> FlowKey {
        if x <= y {
            FlowKey { lo: x, hi: y }
        } else {
            FlowKey { lo: y, hi: x }
        }
    }
}

/// An out-of-order segment copied from its frame.
struct Pending {
    data: Vec<u8>,
    frame_no: u64,
    ts_ns: i64,
}

/// One direction of a connection.
#[derive(Default)]
struct Half {
    started: bool,
    isn: Option<SeqNumber>,
    /// Sequence number of the byte at stream `offset`.
    next_seq: SeqNumber,
    /// Stream offset of the next byte to deliver.
    offset: u64,
    /// Out-of-order segments by stream offset; all keys are > `offset`, and they do not overlap.
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    fin_at: Option<u64>,
    fin_frame: u64,
    fin_ts: i64,
    /// The first acknowledgment number the other side sent, while this direction has not
    /// started (to see bytes missing before its first segment).
    acked_by_peer: Option<SeqNumber>,
    /// Everything up to FIN was delivered.
    done: bool,
    last_frame: Option<u64>,
}

struct Conn {
    id: ConnId,
    a: (IpAddr, u16),
    half: [Half; 2],
    last_ts: i64,
    closed: bool,
    life: LifeSeen,
}

/// The [`Life`] steps a connection has shown so far (each is reported once).
#[derive(Default, Clone, Copy)]
struct LifeSeen {
    syn: bool,
    synack: bool,
    established: bool,
    fin: [bool; 2],
}

impl LifeSeen {
    /// The steps the flags of one segment take, in order (at most three: an opening step, a FIN,
    /// a RST); `opened`: the segment opened the connection.
    fn steps(&mut self, dir: Direction, f: TcpFlags, opened: bool) -> [Option<Life>; 3] {
        let mut out = [None; 3];
        if opened && f.syn() {
            if f.ack() {
                self.synack = true;
                out[0] = Some(Life::SynAck);
            } else {
                self.syn = true;
                out[0] = Some(Life::Syn);
            }
        } else if f.syn() && f.ack() && dir == Direction::BtoA && !self.synack {
            self.synack = true;
            out[0] = Some(Life::SynAck);
        } else if !f.syn() && f.ack() && dir == Direction::AtoB && self.synack && !self.established
        {
            self.established = true;
            out[0] = Some(Life::Established);
        }
        if f.fin() && !self.fin[dir.index()] {
            self.fin[dir.index()] = true;
            out[1] = Some(Life::Fin(dir));
        }
        if f.rst() {
            out[2] = Some(if self.syn && !self.synack && dir == Direction::BtoA {
                Life::Refused
            } else {
                Life::Reset(dir)
            });
        }
        out
    }
}

/// The context a direction needs to report to the sink and keep the counters.
struct Ctx<'c> {
    id: ConnId,
    dir: Direction,
    cfg: &'c ReassemblyConfig,
    stats: &'c mut ReassemblyStats,
    total_buffered: &'c mut usize,
    /// Frames of the buffered segments (frame → pieces buffered from it), over all connections.
    held: &'c mut BTreeMap<u64, u32>,
}

impl Half {
    fn start(&mut self, seq: SeqNumber) {
        self.started = true;
        self.next_seq = seq;
        self.offset = 0;
    }

    /// Stream offset of sequence number `seq` (may be negative: before the start).
    fn offset_of(&self, seq: SeqNumber) -> i64 {
        self.offset as i64 + i64::from(seq.diff(self.next_seq))
    }

    /// Handles `data` found at sequence number `seq`.
    fn segment<S: StreamSink + ?Sized>(
        &mut self,
        seq: SeqNumber,
        data: &[u8],
        frame_no: u64,
        ts_ns: i64,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) {
        let abs = self.offset_of(seq);
        let mut data = data;
        let abs = if abs < 0 {
            let cut = abs.unsigned_abs().min(data.len() as u64) as usize;
            ctx.stats.duplicate_bytes += cut as u64;
            data = &data[cut..];
            0
        } else {
            abs as u64
        };
        if !data.is_empty() {
            self.place(abs, data, frame_no, ts_ns, ctx, sink);
        }
    }

    fn place<S: StreamSink + ?Sized>(
        &mut self,
        abs: u64,
        data: &[u8],
        frame_no: u64,
        ts_ns: i64,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) {
        loop {
            let end = abs + data.len() as u64;
            if end <= self.offset {
                ctx.stats.duplicate_bytes += data.len() as u64;
                return;
            }
            if abs <= self.offset {
                let skip = (self.offset - abs) as usize;
                ctx.stats.duplicate_bytes += skip as u64;
                let new = &data[skip..];
                self.compare_with_pending(self.offset, new, frame_no, ctx, sink);
                self.deliver(new, frame_no, ts_ns, ctx, sink);
                // Segments that waited for this one were out of order.
                self.drain(true, ctx, sink);
                return;
            }
            let cap = ctx.cfg.max_buffered_per_direction;
            if data.len() <= cap && self.pending_bytes + data.len() <= cap {
                self.insert(abs, data, frame_no, ts_ns, ctx, sink);
                return;
            }
            // The buffer is full: give up on the oldest hole, then look at this segment again.
            if !self.skip_first_hole(ctx, sink) {
                self.gap(
                    abs - self.offset,
                    Some((frame_no, ts_ns)),
                    GapReason::BufferLimit,
                    ctx,
                    sink,
                );
            }
        }
    }

    fn deliver<S: StreamSink + ?Sized>(
        &mut self,
        data: &[u8],
        frame_no: u64,
        ts_ns: i64,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) {
        sink.on_data(ctx.id, ctx.dir, self.offset, data, frame_no, ts_ns);
        self.offset += data.len() as u64;
        self.next_seq = self.next_seq.wrapping_add(data.len() as u32);
        self.last_frame = Some(frame_no);
        ctx.stats.delivered_bytes += data.len() as u64;
    }

    /// Delivers buffered segments that have become in order; `reordered`: a hole was filled
    /// (count them as out of order), else the stream jumped over a gap (they were not).
    fn drain<S: StreamSink + ?Sized>(&mut self, reordered: bool, ctx: &mut Ctx<'_>, sink: &mut S) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.offset {
                break;
            }
            let p = entry.remove();
            self.pending_bytes -= p.data.len();
            *ctx.total_buffered -= p.data.len();
            unhold(ctx.held, p.frame_no);
            if reordered {
                ctx.stats.out_of_order_segments += 1;
            }
            let end = start + p.data.len() as u64;
            if end > self.offset {
                let skip = (self.offset - start) as usize;
                ctx.stats.duplicate_bytes += skip as u64;
                self.deliver(&p.data[skip..], p.frame_no, p.ts_ns, ctx, sink);
            } else {
                ctx.stats.duplicate_bytes += p.data.len() as u64;
            }
        }
    }

    /// Jumps over the hole before the first buffered segment (reporting it) and drains. False if none is buffered.
    fn skip_first_hole<S: StreamSink + ?Sized>(&mut self, ctx: &mut Ctx<'_>, sink: &mut S) -> bool {
        let Some((&start, p)) = self.pending.first_key_value() else {
            return false;
        };
        let (frame, ts) = (p.frame_no, p.ts_ns);
        self.gap(
            start - self.offset,
            Some((frame, ts)),
            GapReason::BufferLimit,
            ctx,
            sink,
        );
        self.drain(false, ctx, sink);
        true
    }

    fn gap<S: StreamSink + ?Sized>(
        &mut self,
        len: u64,
        after: Option<(u64, i64)>,
        reason: GapReason,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) {
        if len == 0 {
            return;
        }
        let gap = Gap {
            offset: self.offset,
            len,
            frame_before: self.last_frame,
            frame_after: after.map(|a| a.0),
            ts_after: after.map(|a| a.1),
            reason,
        };
        sink.on_gap(ctx.id, ctx.dir, &gap);
        self.offset += len;
        self.next_seq = self.next_seq.wrapping_add(len as u32);
        ctx.stats.gaps += 1;
        ctx.stats.gap_bytes += len;
    }

    /// Compares bytes about to be delivered at `off` with buffered copies of the same range.
    fn compare_with_pending<S: StreamSink + ?Sized>(
        &self,
        off: u64,
        data: &[u8],
        frame_no: u64,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) {
        let end = off + data.len() as u64;
        for (&ps, p) in self.pending.range(off..end) {
            let o_end = end.min(ps + p.data.len() as u64);
            let a = &data[(ps - off) as usize..(o_end - off) as usize];
            let b = &p.data[..(o_end - ps) as usize];
            report_conflict(ps, a, b, frame_no, p.frame_no, ctx, sink);
        }
    }

    /// Buffers an out-of-order segment, keeping earlier copies of bytes already buffered.
    fn insert<S: StreamSink + ?Sized>(
        &mut self,
        abs: u64,
        data: &[u8],
        frame_no: u64,
        ts_ns: i64,
        ctx: &mut Ctx<'_>,
        sink: &mut S,
    ) {
        let end = abs + data.len() as u64;
        let mut cur = abs;
        // A buffered segment that starts before this one may cover its beginning.
        if let Some((&ps, p)) = self.pending.range(..abs).next_back() {
            let pend = ps + p.data.len() as u64;
            if pend > abs {
                let o_end = pend.min(end);
                let a = &p.data[(abs - ps) as usize..(o_end - ps) as usize];
                let b = &data[..(o_end - abs) as usize];
                report_conflict(abs, a, b, p.frame_no, frame_no, ctx, sink);
                ctx.stats.duplicate_bytes += o_end - abs;
                cur = o_end;
            }
        }
        while cur < end {
            let next = self
                .pending
                .range(cur..end)
                .next()
                .map(|(&ps, p)| (ps, p.data.len() as u64, p.frame_no));
            let piece_end = match next {
                Some((ps, _, _)) => ps,
                None => end,
            };
            if piece_end > cur {
                let piece = &data[(cur - abs) as usize..(piece_end - abs) as usize];
                self.pending.insert(
                    cur,
                    Pending {
                        data: piece.to_vec(),
                        frame_no,
                        ts_ns,
                    },
                );
                *ctx.held.entry(frame_no).or_default() += 1;
                self.pending_bytes += piece.len();
                *ctx.total_buffered += piece.len();
            }
            let Some((ps, plen, pframe)) = next else {
                break;
            };
            let o_end = (ps + plen).min(end);
            if let Some(p) = self.pending.get(&ps) {
                let a = &p.data[..(o_end - ps) as usize];
                let b = &data[(ps - abs) as usize..(o_end - abs) as usize];
                report_conflict(ps, a, b, pframe, frame_no, ctx, sink);
            }
            ctx.stats.duplicate_bytes += o_end - ps;
            cur = o_end;
        }
        ctx.stats.peak_buffered_bytes = ctx
            .stats
            .peak_buffered_bytes
            .max(*ctx.total_buffered as u64);
    }

    /// Records a FIN at sequence number `seq` (after any payload of its segment).
    fn fin(&mut self, seq: SeqNumber, frame_no: u64, ts_ns: i64) {
        let at = self.offset_of(seq);
        if self.fin_at.is_none() && at >= 0 {
            self.fin_at = Some(at as u64);
            self.fin_frame = frame_no;
            self.fin_ts = ts_ns;
        }
    }

    fn check_done(&mut self) {
        if let Some(f) = self.fin_at {
            if self.offset >= f {
                self.done = true;
            }
        }
    }

    /// Gives up on every hole: delivers all buffered bytes and reports what is missing up to the FIN.
    fn flush<S: StreamSink + ?Sized>(&mut self, ctx: &mut Ctx<'_>, sink: &mut S) {
        while let Some((&start, p)) = self.pending.first_key_value() {
            let after = (p.frame_no, p.ts_ns);
            self.gap(
                start - self.offset,
                Some(after),
                GapReason::Closed,
                ctx,
                sink,
            );
            self.drain(false, ctx, sink);
        }
        if let Some(f) = self.fin_at {
            if f > self.offset {
                self.gap(
                    f - self.offset,
                    Some((self.fin_frame, self.fin_ts)),
                    GapReason::Closed,
                    ctx,
                    sink,
                );
            }
        }
        self.done = true;
    }
}

/// The most bytes the other side's ACKs may show missing before a direction's first segment
/// (more is taken for an unrelated number, e.g. an ACK of another connection's incarnation).
const MAX_START_MISSING: i32 = 16 << 20;

/// One buffered piece of frame `frame` left the buffer.
fn unhold(held: &mut BTreeMap<u64, u32>, frame: u64) {
    if let Some(n) = held.get_mut(&frame) {
        *n -= 1;
        if *n == 0 {
            held.remove(&frame);
        }
    }
}

fn report_conflict<S: StreamSink + ?Sized>(
    offset: u64,
    kept: &[u8],
    dropped: &[u8],
    kept_frame: u64,
    dropped_frame: u64,
    ctx: &mut Ctx<'_>,
    sink: &mut S,
) {
    let differing = kept.iter().zip(dropped).filter(|(x, y)| x != y).count() as u64;
    if differing > 0 {
        ctx.stats.conflicts += 1;
        ctx.stats.conflict_bytes += differing;
        let c = Conflict {
            offset,
            len: kept.len() as u64,
            differing,
            kept_frame,
            dropped_frame,
        };
        sink.on_conflict(ctx.id, ctx.dir, &c);
    }
}

/// TCP reassembler over all connections of a capture; see the module doc.
pub struct Reassembler {
    cfg: ReassemblyConfig,
    flows: HashMap<FlowKey, Conn, BuildHasherDefault<FxHasher>>,
    next_id: u64,
    total_buffered: usize,
    /// Frames of the buffered segments, for [`Reassembler::oldest_buffered_frame`].
    held: BTreeMap<u64, u32>,
    stats: ReassemblyStats,
    now: i64,
    next_sweep: i64,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(ReassemblyConfig::default())
    }
}

impl Reassembler {
    pub fn new(cfg: ReassemblyConfig) -> Reassembler {
        Reassembler {
            cfg,
            flows: HashMap::default(),
            next_id: 0,
            total_buffered: 0,
            held: BTreeMap::new(),
            stats: ReassemblyStats::default(),
            now: i64::MIN,
            next_sweep: i64::MIN,
        }
    }

    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// Connections currently tracked (open or closed tombstones).
    pub fn tracked_connections(&self) -> usize {
        self.flows.len()
    }

    /// Out-of-order bytes buffered right now.
    pub fn buffered_bytes(&self) -> usize {
        self.total_buffered
    }

    /// The oldest frame whose bytes are buffered (waiting for a hole before them), if any.
    pub fn oldest_buffered_frame(&self) -> Option<u64> {
        self.held.keys().next().copied()
    }

    /// Feeds one TCP segment.
    pub fn segment<S: StreamSink + ?Sized>(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        seg: &TcpSegment<'_>,
        frame_no: u64,
        ts_ns: i64,
        sink: &mut S,
    ) {
        self.stats.segments += 1;
        self.stats.payload_bytes += seg.payload.len() as u64;
        if ts_ns > self.now {
            self.now = ts_ns;
        }
        if self.now >= self.next_sweep {
            self.sweep(sink);
        }
        let from = (src, seg.src_port);
        let key = FlowKey::new(from, (dst, seg.dst_port));
        let opening_syn = seg.flags.syn() && !seg.flags.ack();

        if let Some(conn) = self.flows.get_mut(&key) {
            let dir = if from == conn.a {
                Direction::AtoB
            } else {
                Direction::BtoA
            };
            let isn_differs = conn.half[dir.index()].isn.is_some_and(|i| i.0 != seg.seq);
            if opening_syn && (conn.closed || isn_differs) {
                // The 4-tuple is reused by a new connection.
                if let Some(mut old) = self.flows.remove(&key) {
                    if !old.closed {
                        Self::close(
                            &mut old,
                            CloseReason::Reused,
                            self.now,
                            &self.cfg,
                            &mut self.stats,
                            &mut self.total_buffered,
                            &mut self.held,
                            sink,
                        );
                    }
                }
            } else if conn.closed {
                self.stats.after_close_segments += 1;
                conn.last_ts = self.now;
                if seg.flags.ack() && !seg.flags.syn() {
                    sink.on_life(conn.id, Life::AckAfterClose(dir), frame_no, ts_ns);
                }
                return;
            }
        }
        let opened = !self.flows.contains_key(&key);
        if opened {
            if self.flows.len() >= self.cfg.max_connections.max(1) {
                self.evict(sink);
            }
            let id = ConnId(self.next_id);
            self.next_id += 1;
            self.stats.connections += 1;
            // A SYN-ACK seen first comes from B.
            let a = if seg.flags.syn() && seg.flags.ack() {
                (dst, seg.dst_port)
            } else {
                from
            };
            let b = if a == from { (dst, seg.dst_port) } else { from };
            sink.on_open(&ConnInfo {
                id,
                a: SocketAddr::new(a.0, a.1),
                b: SocketAddr::new(b.0, b.1),
                first_frame: frame_no,
                first_ts_ns: ts_ns,
                syn_seen: seg.flags.syn(),
            });
            let conn = Conn {
                id,
                a,
                half: [Half::default(), Half::default()],
                last_ts: self.now,
                closed: false,
                life: LifeSeen::default(),
            };
            self.flows.insert(key, conn);
        }
        let Some(conn) = self.flows.get_mut(&key) else {
            return;
        };
        conn.last_ts = self.now;
        let dir = if from == conn.a {
            Direction::AtoB
        } else {
            Direction::BtoA
        };
        for life in conn
            .life
            .steps(dir, seg.flags, opened)
            .into_iter()
            .flatten()
        {
            sink.on_life(conn.id, life, frame_no, ts_ns);
        }
        let mut ctx = Ctx {
            id: conn.id,
            dir,
            cfg: &self.cfg,
            stats: &mut self.stats,
            total_buffered: &mut self.total_buffered,
            held: &mut self.held,
        };
        if seg.flags.rst() {
            Self::close(
                conn,
                CloseReason::Rst,
                self.now,
                &self.cfg,
                ctx.stats,
                ctx.total_buffered,
                ctx.held,
                sink,
            );
            return;
        }
        if seg.flags.ack() {
            let other = &mut conn.half[dir.reverse().index()];
            // The first acknowledgment: later ones may cover bytes not captured.
            if !other.started && other.acked_by_peer.is_none() {
                other.acked_by_peer = Some(SeqNumber(seg.ack));
            }
        }
        let half = &mut conn.half[dir.index()];
        let mut seq = SeqNumber(seg.seq);
        if seg.flags.syn() {
            if !half.started {
                half.start(seq.wrapping_add(1));
                half.isn = Some(seq);
            }
            seq = seq.wrapping_add(1);
        }
        if !half.started && (!seg.payload.is_empty() || seg.flags.fin()) {
            // No SYN: the other side's acknowledgment tells where the stream stood before.
            let missing = half
                .acked_by_peer
                .map(|a| seq.diff(a))
                .filter(|&d| d > 0 && d <= MAX_START_MISSING);
            match (half.acked_by_peer, missing) {
                (Some(a), Some(d)) => {
                    half.start(a);
                    half.gap(
                        d as u64,
                        Some((frame_no, ts_ns)),
                        GapReason::StartMissing,
                        &mut ctx,
                        sink,
                    );
                }
                _ => half.start(seq),
            }
        }
        if half.started {
            if !seg.payload.is_empty() {
                half.segment(seq, seg.payload, frame_no, ts_ns, &mut ctx, sink);
            }
            if seg.flags.fin() {
                half.fin(seq.wrapping_add(seg.payload.len() as u32), frame_no, ts_ns);
            }
            half.check_done();
        }
        if conn.half[0].done && conn.half[1].done {
            Self::close(
                conn,
                CloseReason::Fin,
                self.now,
                &self.cfg,
                &mut self.stats,
                &mut self.total_buffered,
                &mut self.held,
                sink,
            );
        }
        if self.total_buffered > self.cfg.max_buffered_total {
            self.shed(sink);
        }
    }

    // The reassembler's fields, split so that `conn` (one of its flows) can be borrowed too.
    #[allow(clippy::too_many_arguments)]
    fn close<S: StreamSink + ?Sized>(
        conn: &mut Conn,
        reason: CloseReason,
        now: i64,
        cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        total_buffered: &mut usize,
        held: &mut BTreeMap<u64, u32>,
        sink: &mut S,
    ) {
        if conn.closed {
            return;
        }
        for dir in [Direction::AtoB, Direction::BtoA] {
            let mut ctx = Ctx {
                id: conn.id,
                dir,
                cfg,
                stats: &mut *stats,
                total_buffered: &mut *total_buffered,
                held: &mut *held,
            };
            conn.half[dir.index()].flush(&mut ctx, sink);
        }
        conn.closed = true;
        match reason {
            CloseReason::Fin => stats.closed_fin += 1,
            CloseReason::Rst => stats.closed_rst += 1,
            CloseReason::Idle => stats.expired_idle += 1,
            CloseReason::Evicted => stats.evicted += 1,
            CloseReason::Reused | CloseReason::EndOfCapture => {}
        }
        sink.on_close(conn.id, reason, now);
    }

    /// Closes and forgets connections idle for longer than the timeout.
    fn sweep<S: StreamSink + ?Sized>(&mut self, sink: &mut S) {
        self.next_sweep = self
            .now
            .saturating_add((self.cfg.idle_timeout_ns / 8).max(1));
        let limit = self.now.saturating_sub(self.cfg.idle_timeout_ns);
        let mut idle: Vec<(ConnId, FlowKey)> = self
            .flows
            .iter()
            .filter(|(_, c)| c.last_ts < limit)
            .map(|(k, c)| (c.id, *k))
            .collect();
        idle.sort_unstable_by_key(|(id, _)| *id);
        for (_, key) in idle {
            if let Some(mut conn) = self.flows.remove(&key) {
                Self::close(
                    &mut conn,
                    CloseReason::Idle,
                    self.now,
                    &self.cfg,
                    &mut self.stats,
                    &mut self.total_buffered,
                    &mut self.held,
                    sink,
                );
            }
        }
    }

    /// Forgets the least recently active eighth of the connections.
    fn evict<S: StreamSink + ?Sized>(&mut self, sink: &mut S) {
        let mut all: Vec<(i64, ConnId, FlowKey)> = self
            .flows
            .iter()
            .map(|(k, c)| (c.last_ts, c.id, *k))
            .collect();
        let n = (all.len() / 8).max(1).min(all.len());
        all.sort_unstable_by_key(|(ts, id, _)| (*ts, *id));
        for (_, _, key) in all.into_iter().take(n) {
            if let Some(mut conn) = self.flows.remove(&key) {
                Self::close(
                    &mut conn,
                    CloseReason::Evicted,
                    self.now,
                    &self.cfg,
                    &mut self.stats,
                    &mut self.total_buffered,
                    &mut self.held,
                    sink,
                );
            }
        }
    }

    /// Over the overall buffer limit: flush the directions holding the most bytes.
    fn shed<S: StreamSink + ?Sized>(&mut self, sink: &mut S) {
        while self.total_buffered > self.cfg.max_buffered_total {
            let biggest = self
                .flows
                .values_mut()
                .flat_map(|c| {
                    let id = c.id;
                    c.half
                        .iter_mut()
                        .enumerate()
                        .map(move |(i, h)| (h.pending_bytes, id, i, h))
                })
                .max_by_key(|(n, id, i, _)| (*n, std::cmp::Reverse((*id, *i))));
            let Some((n, id, i, half)) = biggest else {
                break;
            };
            if n == 0 {
                break;
            }
            let dir = if i == 0 {
                Direction::AtoB
            } else {
                Direction::BtoA
            };
            let mut ctx = Ctx {
                id,
                dir,
                cfg: &self.cfg,
                stats: &mut self.stats,
                total_buffered: &mut self.total_buffered,
                held: &mut self.held,
            };
            while half.pending_bytes > 0 && half.skip_first_hole(&mut ctx, sink) {}
        }
    }

    /// End of input: flushes and closes every open connection (in `ConnId` order) and forgets them all.
    pub fn finish<S: StreamSink + ?Sized>(&mut self, sink: &mut S) {
        let mut conns: Vec<Conn> = self.flows.drain().map(|(_, c)| c).collect();
        conns.sort_unstable_by_key(|c| c.id);
        for mut conn in conns {
            Self::close(
                &mut conn,
                CloseReason::EndOfCapture,
                self.now,
                &self.cfg,
                &mut self.stats,
                &mut self.total_buffered,
                &mut self.held,
                sink,
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capture::link::TcpFlags;
    use std::net::Ipv4Addr;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Ev {
        Open(ConnInfo),
        Data {
            conn: u64,
            dir: Direction,
            offset: u64,
            data: Vec<u8>,
            frame: u64,
        },
        Gap {
            conn: u64,
            dir: Direction,
            gap: Gap,
        },
        Conflict {
            conn: u64,
            dir: Direction,
            c: Conflict,
        },
        Close {
            conn: u64,
            reason: CloseReason,
        },
        Life {
            conn: u64,
            life: Life,
            frame: u64,
        },
    }

    /// Records every callback and checks that data offsets follow each other.
    #[derive(Default)]
    pub(crate) struct Rec {
        pub ev: Vec<Ev>,
        next: HashMap<(u64, usize), u64>,
    }

    impl Rec {
        pub fn stream(&self, conn: u64, dir: Direction) -> Vec<u8> {
            let mut v = Vec::new();
            for e in &self.ev {
                if let Ev::Data {
                    conn: c,
                    dir: d,
                    data,
                    ..
                } = e
                {
                    if *c == conn && *d == dir {
                        v.extend_from_slice(data);
                    }
                }
            }
            v
        }
        pub fn gaps(&self) -> Vec<Gap> {
            self.ev
                .iter()
                .filter_map(|e| {
                    if let Ev::Gap { gap, .. } = e {
                        Some(*gap)
                    } else {
                        None
                    }
                })
                .collect()
        }
        pub fn closes(&self) -> Vec<(u64, CloseReason)> {
            self.ev
                .iter()
                .filter_map(|e| {
                    if let Ev::Close { conn, reason } = e {
                        Some((*conn, *reason))
                    } else {
                        None
                    }
                })
                .collect()
        }
        /// The life steps reported: (connection, step, frame).
        pub fn lives(&self) -> Vec<(u64, Life, u64)> {
            self.ev
                .iter()
                .filter_map(|e| match e {
                    Ev::Life { conn, life, frame } => Some((*conn, *life, *frame)),
                    _ => None,
                })
                .collect()
        }
        pub fn conflicts(&self) -> Vec<Conflict> {
            self.ev
                .iter()
                .filter_map(|e| {
                    if let Ev::Conflict { c, .. } = e {
                        Some(*c)
                    } else {
                        None
                    }
                })
                .collect()
        }
    }

    impl StreamSink for Rec {
        fn on_open(&mut self, info: &ConnInfo) {
            self.ev.push(Ev::Open(*info));
        }
        fn on_data(
            &mut self,
            conn: ConnId,
            dir: Direction,
            offset: u64,
            data: &[u8],
            frame_no: u64,
            _ts: i64,
        ) {
            assert!(!data.is_empty());
            let next = self.next.entry((conn.0, dir.index())).or_insert(0);
            assert_eq!(offset, *next, "data must continue where the stream stopped");
            *next += data.len() as u64;
            self.ev.push(Ev::Data {
                conn: conn.0,
                dir,
                offset,
                data: data.to_vec(),
                frame: frame_no,
            });
        }
        fn on_gap(&mut self, conn: ConnId, dir: Direction, gap: &Gap) {
            let next = self.next.entry((conn.0, dir.index())).or_insert(0);
            assert_eq!(gap.offset, *next);
            *next += gap.len;
            self.ev.push(Ev::Gap {
                conn: conn.0,
                dir,
                gap: *gap,
            });
        }
        fn on_conflict(&mut self, conn: ConnId, dir: Direction, c: &Conflict) {
            self.ev.push(Ev::Conflict {
                conn: conn.0,
                dir,
                c: *c,
            });
        }
        fn on_close(&mut self, conn: ConnId, reason: CloseReason, _ts: i64) {
            self.ev.push(Ev::Close {
                conn: conn.0,
                reason,
            });
        }
        fn on_life(&mut self, conn: ConnId, life: Life, frame_no: u64, _ts: i64) {
            self.ev.push(Ev::Life {
                conn: conn.0,
                life,
                frame: frame_no,
            });
        }
    }

    const A: (Ipv4Addr, u16) = (Ipv4Addr::new(127, 0, 0, 1), 40000);
    const B: (Ipv4Addr, u16) = (Ipv4Addr::new(127, 0, 0, 1), 6881);
    const C: (Ipv4Addr, u16) = (Ipv4Addr::new(127, 0, 0, 1), 40001);
    const D: (Ipv4Addr, u16) = (Ipv4Addr::new(127, 0, 0, 1), 40002);
    const E: (Ipv4Addr, u16) = (Ipv4Addr::new(127, 0, 0, 1), 40003);
    const SYN: u16 = TcpFlags::SYN;
    const ACK: u16 = TcpFlags::ACK;
    const FIN: u16 = TcpFlags::FIN | TcpFlags::ACK;
    const RST: u16 = TcpFlags::RST;

    /// Drives a reassembler; frame numbers count from 1.
    pub(crate) struct T {
        pub r: Reassembler,
        pub rec: Rec,
        frame: u64,
        pub ts: i64,
    }

    impl T {
        pub fn new() -> T {
            T::with(ReassemblyConfig::default())
        }
        pub fn with(cfg: ReassemblyConfig) -> T {
            T {
                r: Reassembler::new(cfg),
                rec: Rec::default(),
                frame: 0,
                ts: 0,
            }
        }
        /// A segment from `from` to `to`.
        pub fn seg_between(
            &mut self,
            from: (Ipv4Addr, u16),
            to: (Ipv4Addr, u16),
            seq: u32,
            flags: u16,
            data: &[u8],
        ) {
            self.seg_acking(from, to, seq, 0, flags, data);
        }
        /// A segment from `from` to `to` acknowledging `ack`.
        pub fn seg_acking(
            &mut self,
            from: (Ipv4Addr, u16),
            to: (Ipv4Addr, u16),
            seq: u32,
            ack: u32,
            flags: u16,
            data: &[u8],
        ) {
            self.frame += 1;
            let s = TcpSegment {
                src_port: from.1,
                dst_port: to.1,
                seq,
                ack,
                flags: TcpFlags(flags),
                window: 1000,
                payload: data,
            };
            self.r.segment(
                from.0.into(),
                to.0.into(),
                &s,
                self.frame,
                self.ts,
                &mut self.rec,
            );
        }
        pub fn ab(&mut self, seq: u32, flags: u16, data: &[u8]) {
            self.seg_between(A, B, seq, flags, data);
        }
        pub fn ba(&mut self, seq: u32, flags: u16, data: &[u8]) {
            self.seg_between(B, A, seq, flags, data);
        }
        pub fn finish(&mut self) {
            self.r.finish(&mut self.rec);
        }
    }

    #[test]
    fn life_of_a_connection_opened_and_closed_with_fins() {
        use Direction::{AtoB, BtoA};
        let mut t = T::new();
        t.ab(1000, SYN, b""); // 1
        t.ab(1000, SYN, b""); // 2: retransmitted SYN, same ISN
        t.ba(5000, SYN | ACK, b""); // 3
        t.ba(5000, SYN | ACK, b""); // 4: retransmitted SYN-ACK
        t.ab(1001, ACK, b"hello"); // 5: the handshake's last ACK carries data
        t.ab(1006, ACK, b""); // 6
        t.ab(1006, FIN, b""); // 7
        t.ab(1006, FIN, b""); // 8: retransmitted FIN
        t.ba(5001, FIN, b"bye"); // 9: FIN with data closes the connection
        t.ab(1007, ACK, b""); // 10: the last ACK, after the close
        t.ba(5005, ACK, b""); // 11: a late ACK the other way
        t.finish();
        assert_eq!(
            t.rec.lives(),
            vec![
                (0, Life::Syn, 1),
                (0, Life::SynAck, 3),
                (0, Life::Established, 5),
                (0, Life::Fin(AtoB), 7),
                (0, Life::Fin(BtoA), 9),
                (0, Life::AckAfterClose(AtoB), 10),
                (0, Life::AckAfterClose(BtoA), 11),
            ]
        );
        assert_eq!(t.rec.closes(), vec![(0, CloseReason::Fin)]);
        // Steps come before the data of their segment, and after the open.
        let at = |pred: &dyn Fn(&Ev) -> bool| t.rec.ev.iter().position(pred).unwrap();
        let est = at(&|e| {
            matches!(
                e,
                Ev::Life {
                    life: Life::Established,
                    ..
                }
            )
        });
        let hello = at(&|e| matches!(e, Ev::Data { frame: 5, .. }));
        let open = at(&|e| matches!(e, Ev::Open(_)));
        let syn = at(&|e| {
            matches!(
                e,
                Ev::Life {
                    life: Life::Syn,
                    ..
                }
            )
        });
        assert!(open < syn && est < hello, "{:?}", t.rec.ev);
    }

    #[test]
    fn life_of_refused_unanswered_and_reset_dials() {
        use Direction::{AtoB, BtoA};
        let mut t = T::new();
        // Refused: SYN answered by RST-ACK.
        t.ab(100, SYN, b"");
        t.ba(0, RST | ACK, b"");
        // Unanswered: SYN, its retransmission, nothing back.
        t.seg_between(C, B, 300, SYN, b"");
        t.seg_between(C, B, 300, SYN, b"");
        // Reset after the handshake, by B; then by A on another connection.
        t.seg_between(D, B, 500, SYN, b"");
        t.seg_between(B, D, 900, SYN | ACK, b"");
        t.seg_between(D, B, 501, ACK, b"");
        t.seg_between(B, D, 901, RST, b"");
        t.seg_between(E, B, 700, SYN, b"");
        t.seg_between(E, B, 701, RST, b""); // A gives up before any answer: a reset, not a refusal
        t.finish();
        assert_eq!(
            t.rec.lives(),
            vec![
                (0, Life::Syn, 1),
                (0, Life::Refused, 2),
                (1, Life::Syn, 3),
                (2, Life::Syn, 5),
                (2, Life::SynAck, 6),
                (2, Life::Established, 7),
                (2, Life::Reset(BtoA), 8),
                (3, Life::Syn, 9),
                (3, Life::Reset(AtoB), 10),
            ]
        );
        assert_eq!(
            t.rec.closes(),
            vec![
                (0, CloseReason::Rst),
                (2, CloseReason::Rst),
                (3, CloseReason::Rst),
                (1, CloseReason::EndOfCapture),
            ]
        );
    }

    #[test]
    fn life_of_connections_picked_up_late() {
        use Direction::{AtoB, BtoA};
        let mut t = T::new();
        // Mid-stream: no opening steps, but FIN and RST are still seen.
        t.ab(7000, ACK, b"data");
        t.ba(9000, FIN, b"");
        t.ab(7004, RST | ACK, b"");
        // The SYN was not captured: the SYN-ACK opens the connection (its receiver is A).
        t.seg_between(B, C, 400, SYN | ACK, b"");
        t.seg_between(C, B, 81, ACK, b"x");
        t.finish();
        assert_eq!(
            t.rec.lives(),
            vec![
                (0, Life::Fin(BtoA), 2),
                (0, Life::Reset(AtoB), 3),
                (1, Life::SynAck, 4),
                (1, Life::Established, 5),
            ]
        );
        let opens: Vec<&ConnInfo> = t
            .rec
            .ev
            .iter()
            .filter_map(|e| match e {
                Ev::Open(i) => Some(i),
                _ => None,
            })
            .collect();
        assert!(!opens[0].syn_seen);
        assert!(opens[1].syn_seen && opens[1].a.port() == C.1 && opens[1].b.port() == B.1);
    }

    #[test]
    fn seq_numbers_wrap() {
        let a = SeqNumber(u32::MAX - 10);
        let b = a.wrapping_add(20);
        assert_eq!(b.0, 9);
        assert!(a < b);
        assert!(b > a);
        assert!(SeqNumber(u32::MAX) < SeqNumber(0));
        assert_eq!(b.diff(a), 20);
        assert_eq!(a.diff(b), -20);
    }

    #[test]
    fn handshake_data_both_ways_and_fin_close() {
        let mut t = T::new();
        t.ab(1000, SYN, b"");
        t.ba(5000, SYN | ACK, b"");
        t.ab(1001, ACK, b"");
        t.ab(1001, ACK, b"hello ");
        t.ba(5001, ACK, b"hi");
        t.ab(1007, ACK, b"world");
        t.ab(1012, FIN, b"");
        t.ba(5003, FIN, b"!");
        t.ab(1013, ACK, b""); // last ACK: absorbed by the closed connection
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"hello world");
        assert_eq!(t.rec.stream(0, Direction::BtoA), b"hi!");
        assert_eq!(t.rec.closes(), vec![(0, CloseReason::Fin)]);
        match &t.rec.ev[0] {
            Ev::Open(i) => assert!(i.syn_seen && i.a.port() == 40000 && i.b.port() == 6881),
            e => panic!("{e:?}"),
        }
        assert_eq!(t.r.stats().after_close_segments, 1);
        assert_eq!(t.r.tracked_connections(), 1);
        t.finish();
        assert_eq!(
            t.rec.closes().len(),
            1,
            "a closed connection is not closed twice"
        );
        assert!(t.rec.gaps().is_empty());
    }

    #[test]
    fn out_of_order_segments_are_buffered_and_released() {
        let mut t = T::new();
        t.ab(0, SYN, b"");
        t.ab(7, ACK, b"789");
        t.ab(4, ACK, b"456");
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"");
        assert_eq!(t.r.buffered_bytes(), 6);
        t.ab(1, ACK, b"123");
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"123456789");
        assert_eq!(t.r.buffered_bytes(), 0);
        let frames: Vec<u64> = t
            .rec
            .ev
            .iter()
            .filter_map(|e| {
                if let Ev::Data { frame, .. } = e {
                    Some(*frame)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(frames, vec![4, 3, 2], "each chunk keeps its own frame");
        assert_eq!(t.r.stats().out_of_order_segments, 2);
    }

    #[test]
    fn retransmissions_and_overlaps_are_deduplicated() {
        let mut t = T::new();
        t.ab(100, ACK, b"abcd"); // mid-stream start: this sets the stream start
        t.ab(100, ACK, b"abcd"); // retransmission
        t.ab(102, ACK, b"cdef"); // overlaps 2 delivered bytes
        t.ab(98, ACK, b"xxab"); // before the start and delivered
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"abcdef");
        assert_eq!(t.r.stats().duplicate_bytes, 4 + 2 + 4);
        assert!(t.rec.conflicts().is_empty());
        match &t.rec.ev[0] {
            Ev::Open(i) => assert!(!i.syn_seen),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn conflicting_overlaps_are_reported_first_copy_wins() {
        let mut t = T::new();
        t.ab(0, SYN, b"");
        t.ab(5, ACK, b"EFGH"); // buffered, stream offsets 4..8
        t.ab(3, ACK, b"CDEXGHI"); // offsets 2..9: 'X' disagrees with 'F'
        t.ab(1, ACK, b"ABZ"); // offsets 0..3, 'Z' disagrees with buffered 'C' at offset 2
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"ABZDEFGHI");
        let c = t.rec.conflicts();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(
            (
                c[0].offset,
                c[0].len,
                c[0].differing,
                c[0].kept_frame,
                c[0].dropped_frame
            ),
            (4, 4, 1, 2, 3)
        );
        assert_eq!(
            (
                c[1].offset,
                c[1].differing,
                c[1].kept_frame,
                c[1].dropped_frame
            ),
            (2, 1, 4, 3)
        );
        assert_eq!(t.r.stats().conflicts, 2);
    }

    #[test]
    fn wrap_around_2_pow_32() {
        let mut t = T::new();
        let isn = u32::MAX - 5;
        t.ab(isn, SYN, b"");
        t.ab(isn.wrapping_add(1), ACK, b"01234");
        t.ab(isn.wrapping_add(10), ACK, b"9abc"); // past the wrap, out of order
        t.ab(isn.wrapping_add(6), ACK, b"5678"); // crosses 2^32
        t.ab(isn.wrapping_add(14), FIN, b"");
        t.ba(1, SYN | ACK, b"");
        t.ba(2, FIN, b"");
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"0123456789abc");
        assert_eq!(t.rec.closes(), vec![(0, CloseReason::Fin)]);
    }

    #[test]
    fn gap_when_buffer_limit_is_hit_then_resync() {
        let mut t = T::with(ReassemblyConfig {
            max_buffered_per_direction: 8,
            ..Default::default()
        });
        t.ab(0, SYN, b"");
        t.ab(1, ACK, b"aaaa"); // frame 2, offsets 0..4
                               // offsets 4..8 are lost
        t.ab(9, ACK, b"cccc"); // frame 3, buffered
        t.ab(13, ACK, b"dddd"); // frame 4, buffered (8 bytes: full)
        t.ab(17, ACK, b"eeee"); // frame 5: no room: give up on the hole
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"aaaaccccddddeeee");
        let g = t.rec.gaps();
        assert_eq!(
            g,
            vec![Gap {
                offset: 4,
                len: 4,
                frame_before: Some(2),
                frame_after: Some(3),
                ts_after: Some(0),
                reason: GapReason::BufferLimit
            }]
        );
        t.ab(5, ACK, b"bbbb"); // the lost bytes, too late: dropped as old
        t.ab(21, ACK, b"ff");
        assert!(t.rec.stream(0, Direction::AtoB).ends_with(b"eeeeff"));
    }

    #[test]
    fn segments_after_a_gap_are_not_out_of_order_and_the_oldest_buffered_frame_is_known() {
        let mut t = T::with(ReassemblyConfig {
            max_buffered_per_direction: 8,
            ..Default::default()
        });
        t.ab(0, SYN, b"");
        t.ab(1, ACK, b"aaaa"); // frame 2
        assert_eq!(t.r.oldest_buffered_frame(), None);
        t.ab(9, ACK, b"cccc"); // frame 3: buffered
        t.ab(13, ACK, b"dddd"); // frame 4: buffered
        assert_eq!(t.r.oldest_buffered_frame(), Some(3));
        t.ab(17, ACK, b"eeee"); // frame 5: gives up on the hole
        assert_eq!(t.r.oldest_buffered_frame(), None);
        assert_eq!(t.r.stats().out_of_order_segments, 0);
        let g = t.rec.gaps();
        assert_eq!(
            (g[0].frame_after, g[0].reason),
            (Some(3), GapReason::BufferLimit)
        );
        // A real reordering: counted once the hole is filled.
        t.ab(25, ACK, b"gg"); // frame 6: buffered
        assert_eq!(t.r.oldest_buffered_frame(), Some(6));
        t.ab(21, ACK, b"ffff"); // frame 7 fills the hole
        assert_eq!(t.r.stats().out_of_order_segments, 1);
        assert_eq!(t.r.oldest_buffered_frame(), None);
    }

    #[test]
    fn acks_show_bytes_missing_before_a_direction_picked_up_mid_stream() {
        let mut t = T::new();
        // B acknowledges A up to 1000, then A's first segment seen starts at 1300.
        t.seg_acking(B, A, 5000, 1000, ACK, b"xy"); // frame 1
        t.seg_acking(A, B, 1300, 5002, ACK, b"data"); // frame 2
        let g = t.rec.gaps();
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(
            (
                g[0].offset,
                g[0].len,
                g[0].frame_before,
                g[0].frame_after,
                g[0].reason
            ),
            (0, 300, None, Some(2), GapReason::StartMissing)
        );
        // The first sender seen (B) is side A of the connection.
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"xy");
        // The data is delivered at stream offset 300.
        assert!(t.rec.ev.iter().any(|e| matches!(
            e,
            Ev::Data {
                offset: 300,
                dir: Direction::BtoA,
                ..
            }
        )));
    }

    #[test]
    fn a_segment_larger_than_the_buffer_is_delivered_after_a_gap() {
        let mut t = T::with(ReassemblyConfig {
            max_buffered_per_direction: 4,
            ..Default::default()
        });
        t.ab(0, ACK, b"ab");
        t.ab(10, ACK, b"0123456789");
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"ab0123456789");
        assert_eq!(t.rec.gaps()[0].len, 8);
    }

    #[test]
    fn hole_at_end_and_missing_tail_before_fin() {
        let mut t = T::new();
        t.ab(0, SYN, b"");
        t.ab(1, ACK, b"abc");
        t.ab(7, ACK, b"ghi"); // offsets 6..9, hole 3..6
        t.ab(13, FIN, b""); // FIN at offset 12: 9..12 missing too
        t.finish();
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"abcghi");
        let g = t.rec.gaps();
        assert_eq!(g.len(), 2);
        assert_eq!(
            (
                g[0].offset,
                g[0].len,
                g[0].frame_before,
                g[0].frame_after,
                g[0].reason
            ),
            (3, 3, Some(2), Some(3), GapReason::Closed)
        );
        assert_eq!((g[1].offset, g[1].len, g[1].frame_after), (9, 3, Some(4)));
        assert_eq!(t.rec.closes(), vec![(0, CloseReason::EndOfCapture)]);
    }

    #[test]
    fn rst_closes_and_new_syn_reuses_the_tuple() {
        let mut t = T::new();
        t.ab(0, SYN, b"");
        t.ab(1, ACK, b"one");
        t.ba(50, RST, b"");
        t.ab(4, ACK, b"late"); // after close: ignored
        t.ab(900, SYN, b""); // new connection, same 4-tuple
        t.ab(901, ACK, b"two");
        t.finish();
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"one");
        assert_eq!(t.rec.stream(1, Direction::AtoB), b"two");
        assert_eq!(
            t.rec.closes(),
            vec![(0, CloseReason::Rst), (1, CloseReason::EndOfCapture)]
        );
        // A SYN with another ISN on an open connection also starts a new one.
        t.ab(5000, SYN, b"");
        assert_eq!(t.rec.closes().len(), 2);
        t.ab(7000, SYN, b"");
        t.finish();
        assert_eq!(
            t.rec.closes()[2..],
            [(2, CloseReason::Reused), (3, CloseReason::EndOfCapture)]
        );
    }

    #[test]
    fn syn_ack_seen_first_makes_its_receiver_a() {
        let mut t = T::new();
        t.ba(10, SYN | ACK, b"");
        t.ba(11, ACK, b"server");
        t.ab(101, ACK, b"client");
        match &t.rec.ev[0] {
            Ev::Open(i) => assert_eq!((i.a.port(), i.b.port()), (40000, 6881)),
            e => panic!("{e:?}"),
        }
        assert_eq!(t.rec.stream(0, Direction::BtoA), b"server");
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"client");
    }

    #[test]
    fn idle_connections_expire_and_the_count_is_capped() {
        let mut t = T::with(ReassemblyConfig {
            idle_timeout_ns: 1000,
            max_connections: 4,
            ..Default::default()
        });
        t.ab(1, ACK, b"x");
        t.ab(3, ACK, b"z"); // hole at offset 1
        t.ts = 5000;
        t.seg_between((Ipv4Addr::new(10, 0, 0, 1), 1), B, 1, ACK, b"new");
        assert_eq!(t.rec.closes(), vec![(0, CloseReason::Idle)]);
        assert_eq!(t.rec.stream(0, Direction::AtoB), b"xz");
        assert_eq!(t.rec.gaps().len(), 1);
        for p in 2..10u16 {
            t.seg_between((Ipv4Addr::new(10, 0, 0, 1), p), B, 1, ACK, b"c");
        }
        assert!(t.r.tracked_connections() <= 4);
        assert!(t.r.stats().evicted > 0);
        assert!(t
            .rec
            .closes()
            .iter()
            .any(|(id, r)| *id == 1 && *r == CloseReason::Evicted));
    }

    #[test]
    fn overall_buffer_limit_sheds_the_biggest_direction() {
        let mut t = T::with(ReassemblyConfig {
            max_buffered_total: 10,
            ..Default::default()
        });
        t.ab(0, ACK, b"a");
        t.ab(5, ACK, b"123456"); // 6 buffered
        t.ba(0, ACK, b"b");
        t.ba(3, ACK, b"xxxxxx"); // 12 buffered > 10: the biggest (B->A, equal size: lower conn/dir first) flushed
        assert!(t.r.buffered_bytes() <= 10);
        assert_eq!(t.rec.gaps().len(), 1);
        assert!(t.r.stats().peak_buffered_bytes >= 12);
    }

    use proptest::prelude::*;

    proptest! {
        /// Any order, with duplicates and overlapping re-cuts, gives back the original stream.
        #[test]
        fn any_order_reassembles(isn in any::<u32>(), len in 1usize..300, cuts in proptest::collection::vec((0usize..300, 1usize..40), 1..40), order in any::<u64>()) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut segs: Vec<(usize, usize)> = (0..len).step_by(25).map(|s| (s, (s + 25).min(len))).collect();
            for (s, l) in cuts {
                let s = s % len;
                segs.push((s, (s + l).min(len)));
            }
            let mut rng = order;
            for i in (1..segs.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                segs.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let mut t = T::new();
            t.ab(isn, SYN, b"");
            for (s, e) in segs {
                t.ab(isn.wrapping_add(1 + s as u32), ACK, &data[s..e]);
            }
            t.ab(isn.wrapping_add(1 + len as u32), FIN, b"");
            t.ba(7, SYN | ACK, b"");
            t.ba(8, FIN, b"");
            prop_assert_eq!(t.rec.stream(0, Direction::AtoB), data);
            prop_assert!(t.rec.gaps().is_empty());
            prop_assert!(t.rec.conflicts().is_empty());
            prop_assert_eq!(t.rec.closes(), vec![(0, CloseReason::Fin)]);
            prop_assert_eq!(t.r.buffered_bytes(), 0);
        }

        /// Arbitrary segments never panic and respect the buffer limits.
        #[test]
        fn arbitrary_segments_stay_bounded(segs in proptest::collection::vec((any::<bool>(), any::<u32>(), 0u16..0x200, 0usize..64), 0..80), base in any::<u32>()) {
            let cfg = ReassemblyConfig { max_buffered_per_direction: 256, max_buffered_total: 300, max_connections: 3, idle_timeout_ns: 50, };
            let mut t = T::with(cfg);
            let payload = [0x5au8; 64];
            for (i, (dir, seq, flags, len)) in segs.into_iter().enumerate() {
                t.ts = i as i64 * 10;
                let seq = base.wrapping_add(seq % 2048);
                let port = B.1 + (len % 3) as u16 * (seq % 2) as u16;
                if dir { t.seg_between(A, (B.0, port), seq, flags, &payload[..len]) } else { t.seg_between((B.0, port), A, seq, flags, &payload[..len]) }
                prop_assert!(t.r.buffered_bytes() <= 300 + 64);
            }
            t.finish();
            prop_assert_eq!(t.r.buffered_bytes(), 0);
        }
    }
}
