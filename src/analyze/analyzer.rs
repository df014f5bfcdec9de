//! The analyzer proper: a [`StreamSink`] behind the capture layer's TCP reassembly that
//! finds BitTorrent connections and tracker exchanges ([`super::detect`]), decodes them
//! ([`crate::event::decode`]: the recorder's peer and tracker decoders), keeps a
//! [`ConnReport`] per connection for the tables, hands [`Event`]s (the recorder's event
//! model) to an [`EventOut`], and feeds piece data to the [`PieceChecker`].
//!
//! [`analyze`] drives one capture file: every packet goes once through
//! [`capture::handle_packet`], whose reassembly reports each connection's life ([`Life`]: the
//! frames of its opening SYN, SYN-ACK and ACK, its FINs or RST, and the last ACK after a FIN
//! exchange); the `conn_opened` and `conn_closed` events list those frames like the recorder's.
//!
//! Memory: per open connection, its decoder state (at most one unfinished message per
//! direction), the frames of that unfinished message, and up to [`SNIFF_LEN`] bytes a
//! direction while it is undecided; per reported connection, its counters. Nothing grows with
//! the size of the capture.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::detect::{classify, Sniff, UdpStreams, UdpTrackers, Verdict, SNIFF_LEN};
use super::order::Reorder;
use super::pieces::PieceChecker;
use super::udp::{Classified, UdpProtocols, UdpReport};
use crate::capture::{
    self, CaptureError, CaptureFormat, CaptureReader, CloseReason, Conflict, ConnId, ConnInfo,
    Datagram, Direction, Gap, Life, Packet, ReassemblyConfig, Stats, StreamSink,
};
use crate::event::decode::{
    decode_http_request, decode_http_response, decode_udp, ConnectionDecoder, Decoded, PeerItem,
    Start,
};
use crate::event::{CloseHow, Dir, Event, EventKind, Transport};
use crate::wire::{
    extension::EXTENDED_HANDSHAKE_ID, looks_like_handshake_prefix, ExtendedHandshake, GapEffect,
    Message, MessageKind, Reserved, KIND_COUNT,
};

/// How to analyze.
#[derive(Debug, Clone)]
pub struct Options {
    /// Build [`Event`]s and hand them to the [`EventOut`] (for `--json` and `--messages`).
    /// Without, only the counters of the report are kept, which is faster.
    pub events: bool,
    /// A direction picked up mid-stream that shows no message framing within this many bytes
    /// is not BitTorrent.
    pub max_hunt: u64,
    /// Reassembly limits.
    pub reassembly: ReassemblyConfig,
    /// At most this many connection reports are kept (later ones are only counted).
    pub max_reports: usize,
    /// Set from elsewhere (a SIGINT handler) to stop after the current packet; what was
    /// read is still reported.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            events: false,
            max_hunt: 4 << 20,
            reassembly: ReassemblyConfig::default(),
            max_reports: 10_000,
            stop: None,
        }
    }
}

/// Receives the events of a capture, in capture order: by the frame that completes each
/// (see [`super::order`]).
pub trait EventOut {
    /// One event, its description in words, and the report of its TCP connection (with what
    /// is known so far: handshakes, info hash), if it belongs to one.
    fn event(&mut self, e: &Event, words: &str, conn: Option<&ConnReport>) -> io::Result<()>;
    /// [`EventOut::event`] with the frame that completes the event (the capture order's key:
    /// the last of its frames, or for what a gap or a close ended, the frame where that
    /// became known).
    fn event_at(
        &mut self,
        _frame: u64,
        e: &Event,
        words: &str,
        conn: Option<&ConnReport>,
    ) -> io::Result<()> {
        self.event(e, words, conn)
    }
    /// The timestamp of the capture's first frame, before any event.
    fn capture_start(&mut self, _ts_ns: i64) {}
}

/// An [`EventOut`] that drops everything.
pub struct NoEvents;

impl EventOut for NoEvents {
    fn event(&mut self, _: &Event, _: &str, _: Option<&ConnReport>) -> io::Result<()> {
        Ok(())
    }
}

/// What a reported connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    BitTorrent,
    /// MSE/PE-encrypted: bytes counted, not decoded.
    Encrypted,
    TrackerHttp,
}

impl ConnKind {
    pub fn name(self) -> &'static str {
        match self {
            ConnKind::BitTorrent => "BitTorrent",
            ConnKind::Encrypted => "encrypted (MSE/PE)",
            ConnKind::TrackerHttp => "HTTP tracker",
        }
    }
}

/// A side's handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeInfo {
    pub reserved: Reserved,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    /// From the peer id ([`crate::peer_id::client_name`]).
    pub client: String,
}

/// Distinct piece indexes, as a bitset (indexes up to 2^22; higher ones are only counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PieceSet {
    words: Vec<u64>,
    /// Blocks with an index too high for the set.
    pub beyond: u64,
}

const PIECE_SET_MAX: u32 = 1 << 22;

impl PieceSet {
    pub fn insert(&mut self, i: u32) {
        if i >= PIECE_SET_MAX {
            self.beyond += 1;
            return;
        }
        let w = (i / 64) as usize;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }
    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn contains(&self, i: u32) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// One direction of a reported connection: what its sender said.
#[derive(Debug, Clone, Default)]
pub struct SideReport {
    /// Stream bytes seen.
    pub bytes: u64,
    pub handshake: Option<HandshakeInfo>,
    /// The sender's BEP 10 extended handshake.
    pub ext: Option<ExtendedHandshake>,
    /// Messages by kind, indexed by [`MessageKind::slot`] (rows of the wire codec's message
    /// table).
    pub counts: [u64; KIND_COUNT],
    /// Extended messages by extension name ("handshake", "ut_metadata", or "id N").
    pub extended: BTreeMap<String, u64>,
    /// `piece` messages, their data bytes, and the distinct pieces they belong to.
    pub blocks: u64,
    pub piece_bytes: u64,
    pub pieces: PieceSet,
    /// Timestamp of the first unchoke this side sent.
    pub first_unchoke_ns: Option<i64>,
    /// This direction's start was not in the capture.
    pub mid_stream: bool,
    pub protocol_errors: u64,
    /// `piece` messages whose data is not in the capture (cut by a snap length, or lost in
    /// a gap); counted in `blocks` and `piece_bytes` from their headers.
    pub cut_blocks: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub http_messages: u64,
}

impl SideReport {
    /// Messages of all kinds.
    pub fn messages(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What the tables say about one connection.
#[derive(Debug, Clone)]
pub struct ConnReport {
    /// Wireshark's `tcp.stream` (for uTP, the uTP connection number).
    pub id: u64,
    /// TCP, or uTP (BEP 29).
    pub transport: Transport,
    /// The side that sent the SYN (or, when the start is missing, the first sender seen).
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub kind: ConnKind,
    pub syn_seen: bool,
    pub first_frame: u64,
    pub last_frame: u64,
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    /// Client → server, then server → client.
    pub sides: [SideReport; 2],
    /// "started mid-stream", "gap of N bytes at frame F", ... (at most [`MAX_NOTES`]).
    pub notes: Vec<String>,
    pub notes_dropped: u64,
    /// How it ended, in words.
    pub end: String,
    /// It opened with an MSE/PE handshake (then stayed encrypted, unless a plaintext
    /// BitTorrent handshake followed).
    pub mse: bool,
}

/// The summary's category of a TCP connection (each is in exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    BitTorrent,
    Encrypted,
    TrackerHttp,
    /// A dial answered by a RST.
    Refused,
    /// A dial never answered.
    Unanswered,
    /// No byte of data either way.
    Empty,
    Other,
}

impl Category {
    /// In words, as the summary says it.
    pub fn words(self) -> &'static str {
        match self {
            Category::BitTorrent => "BitTorrent",
            Category::Encrypted => "encrypted (MSE/PE)",
            Category::TrackerHttp => "HTTP tracker",
            Category::Refused => "refused dial (answered by a RST)",
            Category::Unanswered => "unanswered dial (SYN without answer)",
            Category::Empty => "without data",
            Category::Other => "other traffic (not BitTorrent, not a tracker)",
        }
    }
}

/// Notes kept per connection; later ones are counted.
pub const MAX_NOTES: usize = 20;

impl ConnReport {
    fn new(info: &ConnInfo) -> Self {
        ConnReport {
            id: info.id.number(),
            transport: if info.id.is_utp() {
                Transport::Utp
            } else {
                Transport::Tcp
            },
            client: info.a,
            server: info.b,
            kind: ConnKind::BitTorrent,
            syn_seen: info.syn_seen,
            first_frame: info.first_frame,
            last_frame: info.first_frame,
            first_ts_ns: info.first_ts_ns,
            last_ts_ns: info.first_ts_ns,
            sides: Default::default(),
            notes: Vec::new(),
            notes_dropped: 0,
            end: "still open at the end of the capture".into(),
            mse: false,
        }
    }

    /// Adds a note (or counts it past [`MAX_NOTES`]).
    pub fn note(&mut self, text: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(text);
        } else {
            self.notes_dropped += 1;
        }
    }

    /// The info hash of the first handshake seen.
    pub fn info_hash(&self) -> Option<&[u8; 20]> {
        self.sides
            .iter()
            .find_map(|s| s.handshake.as_ref().map(|h| &h.info_hash))
    }

    /// `sender → receiver` of `dir`.
    pub fn dir_words(&self, dir: Dir) -> String {
        let (s, d) = self.endpoints(dir);
        format!("{s} → {d}")
    }

    /// The endpoints of `dir`: (sender, receiver).
    pub fn endpoints(&self, dir: Dir) -> (SocketAddr, SocketAddr) {
        match dir {
            Dir::C2s => (self.client, self.server),
            Dir::S2c => (self.server, self.client),
        }
    }
}

/// Everything learned from one capture file.
#[derive(Debug, Clone, Default)]
pub struct CaptureReport {
    pub format: Option<CaptureFormat>,
    /// The capture layer's counters and warnings (a truncated file is one of them).
    pub stats: Stats,
    /// The capture could not be read to its end (the report covers what came before).
    pub read_error: Option<String>,
    /// Reported connections (BitTorrent, encrypted, HTTP tracker), by connection number.
    pub conns: Vec<ConnReport>,
    /// Reported connections not kept because of [`Options::max_reports`].
    pub conns_dropped: u64,
    pub tcp_connections: u64,
    pub bittorrent: u64,
    pub mid_stream: u64,
    pub encrypted: u64,
    pub tracker_http: u64,
    /// Dials answered by a RST (no SYN-ACK, no data).
    pub refused: u64,
    /// Dials never answered (SYN without SYN-ACK, no data).
    pub unanswered: u64,
    /// Other connections that carried no byte (established, or picked up without data).
    pub empty: u64,
    /// Connections with data that are none of the above.
    pub other: u64,
    /// Connections without a table: number, category, endpoints (at most
    /// [`Options::max_reports`]), for `--conn N` to say what they are.
    pub unreported: Vec<(u64, Category, SocketAddr, SocketAddr)>,
    pub udp_conversations: u64,
    pub udp_tracker_datagrams: u64,
    /// uTP connections, DHT and LSD ([`super::udp`]).
    pub udp: UdpReport,
    /// Tracker exchanges in words (HTTP and UDP), at most [`MAX_TRACKER_LOG`].
    pub tracker_log: Vec<String>,
    pub events: u64,
}

/// Tracker exchanges listed in the summary.
pub const MAX_TRACKER_LOG: usize = 200;

/// Why an analysis stopped.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Not a capture file at all, or unreadable from the start.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// Writing the output (or `--extract` files) failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A data frame of one direction: its number, timestamp and stream range.
#[derive(Debug, Clone, Copy)]
struct Carried {
    frame: u64,
    ts: i64,
    start: u64,
    end: u64,
}

/// The frames holding stream bytes `lo..hi` (at least the one holding `lo`), and the
/// timestamp of the last.
fn frames_for(carried: &VecDeque<Carried>, lo: u64, hi: u64) -> (Vec<u64>, Option<i64>) {
    let hi = hi.max(lo + 1);
    let first = carried.partition_point(|c| c.end <= lo);
    let mut frames: Vec<u64> = Vec::new();
    let mut ts = None;
    for c in carried.range(first..).take_while(|c| c.start < hi) {
        if frames.last() != Some(&c.frame) {
            frames.push(c.frame);
        }
        ts = Some(c.ts);
    }
    (frames, ts)
}

/// The frame of this direction holding stream byte `at` (`or` when it is no longer known).
fn frame_at(carried: &VecDeque<Carried>, at: u64, or: u64) -> u64 {
    frames_for(carried, at, at + 1)
        .0
        .first()
        .copied()
        .unwrap_or(or)
}

fn ts_u64(ns: i64) -> u64 {
    ns.max(0) as u64
}

fn dir_of(d: Direction) -> Dir {
    match d {
        Direction::AtoB => Dir::C2s,
        Direction::BtoA => Dir::S2c,
    }
}

/// An HTTP tracker conversation: the bytes of the request or response being read.
#[derive(Debug, Default)]
struct Http {
    buf: [Vec<u8>; 2],
    /// Stream offset of `buf[d][0]`.
    base: [u64; 2],
    /// For each request read, whether it was a scrape (answered in order).
    scrapes: VecDeque<bool>,
    failed: [bool; 2],
}

/// Largest HTTP message (head and body) read from a tracker conversation.
const MAX_HTTP: usize = 1 << 20;

/// What a live connection is doing.
enum Live {
    Undecided {
        pre: [Vec<u8>; 2],
        /// Where each direction's first byte is, if bytes before it were lost.
        start: [Option<u64>; 2],
    },
    Peer(Box<ConnectionDecoder>),
    Http(Box<Http>),
    /// Other traffic: ignored.
    Ignored,
}

#[derive(Debug, Default, Clone, Copy)]
struct OpenTrack {
    syn: Option<(u64, i64)>,
    synack: Option<u64>,
    ack: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct CloseTrack {
    /// The first FIN or RST: from the client?, frame, ts.
    first: Option<(bool, u64, i64)>,
    fin: [Option<u64>; 2],
    rst: Option<(bool, u64)>,
}

struct Conn {
    r: ConnReport,
    open: OpenTrack,
    close: CloseTrack,
    opened_emitted: bool,
    /// First speaker (0 client, 1 server), its first flight, and whether it was answered.
    speaker: Option<usize>,
    flight: u64,
    answered: bool,
    live: Live,
    carried: [VecDeque<Carried>; 2],
    /// A message was decoded (for connections picked up mid-stream).
    found: bool,
    reportable: bool,
    kind: Verdict,
    /// The frame this undecided connection holds in the event order (its events may start
    /// there).
    hold: Option<u64>,
    /// The frame each hunting direction holds (a message found by a hunt is only confirmed
    /// by the header after it, so it comes out late).
    hunt_hold: [Option<u64>; 2],
}

/// A `conn_closed` waiting for the last ACK of a FIN exchange.
struct PendingClose {
    conn: u64,
    /// The direction of the last ACK (from the side that closed first).
    acker: Direction,
    event: Event,
    report: Option<ConnReport>,
}

/// The analyzer state for one capture file. See the [module docs](self).
pub struct Analyzer<'o> {
    opts: Options,
    em: Emitter<'o>,
    conns: HashMap<u64, Conn>,
    /// Connections closed during the current packet (handled at its end).
    closing: Vec<(u64, CloseReason, i64)>,
    pending_closes: Vec<PendingClose>,
    udp: UdpTrackers,
    udp_streams: UdpStreams,
    udp_protocols: UdpProtocols,
    checker: Option<&'o mut PieceChecker>,
    report: CaptureReport,
    /// A packet is being handled (not the end of the capture).
    in_packet: bool,
    cur_frame: u64,
    cur_ts: i64,
}

/// Reads a whole capture and analyzes it; events go to `out` as they are found, piece data
/// to `checker` (which may go on over several captures).
///
/// A capture that is cut short or corrupt is not an error: everything before the damage is
/// analyzed and [`CaptureReport::read_error`] says where it stopped. Errors are a file that
/// is not a capture at all ([`CaptureReader::new`] fails before this is called) and failures
/// to write the output.
pub fn analyze<R: Read>(
    reader: &mut CaptureReader<R>,
    opts: Options,
    out: &mut dyn EventOut,
    checker: Option<&mut PieceChecker>,
) -> Result<CaptureReport, AnalyzeError> {
    let limits = opts.reassembly;
    let mut a = Analyzer::new(opts, out, checker);
    a.report.format = Some(reader.format());
    let mut stats = Stats::default();
    let res = capture::process_with(reader, limits, &mut a, &mut stats);
    a.finish_utp();
    // What the end of the capture closed, then the FIN exchanges still waiting for a last ACK.
    a.end_packet();
    a.flush_pending_closes(None);
    a.em.release_all();
    if let Some(e) = a.em.error.take() {
        return Err(e.into());
    }
    let mut report = a.finish();
    report.tcp_connections = stats.reassembly.connections;
    report.stats = stats;
    report.read_error = res.err().map(|e| e.to_string());
    Ok(report)
}

impl<'o> Analyzer<'o> {
    fn new(
        opts: Options,
        out: &'o mut dyn EventOut,
        checker: Option<&'o mut PieceChecker>,
    ) -> Self {
        let limits = opts.reassembly;
        Analyzer {
            opts,
            em: Emitter {
                out,
                order: Reorder::default(),
                buffered: None,
                error: None,
                n: 0,
            },
            conns: HashMap::new(),
            closing: Vec::new(),
            pending_closes: Vec::new(),
            udp: UdpTrackers::default(),
            udp_streams: UdpStreams::default(),
            udp_protocols: UdpProtocols::new(limits),
            checker,
            report: CaptureReport::default(),
            in_packet: false,
            cur_frame: 0,
            cur_ts: 0,
        }
    }

    fn finish(mut self) -> CaptureReport {
        self.report.conns.sort_by_key(|c| c.id);
        self.report.events = self.em.n;
        self.report.udp_conversations = self.udp_streams.count();
        self.report.udp = self.udp_protocols.report();
        self.report
    }

    /// Emits an event completed by the last of its frames.
    fn emit(&mut self, e: &Event, words: &str, conn: Option<&ConnReport>) {
        let key = e.frames.iter().max().copied().unwrap_or(self.cur_frame);
        self.em.emit(key, e, words, conn);
    }

    /// The event of a gap in `dir` of `c`, completed by `end` (frame, timestamp).
    #[allow(clippy::too_many_arguments)]
    fn emit_gap(
        &mut self,
        c: &Conn,
        dir: Dir,
        offset: u64,
        len: u64,
        frames: Vec<u64>,
        end: (u64, i64),
        words: &str,
    ) {
        if !self.opts.events {
            return;
        }
        let mut e = Event::new(ts_u64(end.1), EventKind::Gap { offset, len });
        let (src, dst) = c.r.endpoints(dir);
        e.conn = Some(c.r.id);
        e.src = Some(src);
        e.dst = Some(dst);
        e.dir = Some(dir);
        e.frames = if frames.is_empty() {
            vec![end.0]
        } else {
            frames
        };
        self.em.emit(
            end.0.max(e.frames.iter().max().copied().unwrap_or(0)),
            &e,
            words,
            Some(&c.r),
        );
    }

    /// An undecided connection holds the event order from `frame` (its first events may
    /// be completed there), if it does not yet.
    fn hold(&mut self, c: &mut Conn, frame: u64) {
        Self::hold_open(&mut self.em, c, frame, self.opts.events);
    }

    /// A connection's conn_opened is completed at `frame`, whenever it is decided: the
    /// order is held there until then.
    fn hold_open(em: &mut Emitter<'_>, c: &mut Conn, frame: u64, events: bool) {
        if events && c.hold.is_none() && matches!(c.live, Live::Undecided { .. }) {
            c.hold = Some(frame);
            em.order.hold(frame);
        }
    }

    /// Gives back the hold of a connection once it is decided (`gone`: or it ended).
    fn unhold(&mut self, c: &mut Conn, gone: bool) {
        if gone || !matches!(c.live, Live::Undecided { .. }) {
            if let Some(h) = c.hold.take() {
                self.em.order.unhold(h);
            }
        }
        if gone {
            for h in c.hunt_hold.iter_mut().filter_map(Option::take) {
                self.em.order.unhold(h);
            }
        }
    }

    /// A direction that hunts holds the oldest frame it keeps; one that does not, nothing.
    fn sync_hunt_hold(&mut self, c: &mut Conn, dir: Dir) {
        let d = dir.index();
        let want = match &c.live {
            Live::Peer(dec) if self.opts.events => {
                dec.hunting(dir).and(c.carried[d].front().map(|x| x.frame))
            }
            _ => None,
        };
        if want != c.hunt_hold[d] {
            if let Some(h) = c.hunt_hold[d] {
                self.em.order.unhold(h);
            }
            if let Some(h) = want {
                self.em.order.hold(h);
            }
            c.hunt_hold[d] = want;
        }
    }

    /// After a packet: connections that closed during it, and old FIN exchanges.
    fn end_packet(&mut self) {
        for (id, reason, ts) in std::mem::take(&mut self.closing) {
            self.close_conn(id, reason, ts);
        }
        // A FIN exchange whose last ACK never comes: give up after two seconds.
        if !self.pending_closes.is_empty() {
            self.flush_pending_closes(Some(self.cur_ts - 2_000_000_000));
        }
    }

    /// Emits the waiting `conn_closed` events older than `before` (all with `None`).
    fn flush_pending_closes(&mut self, before: Option<i64>) {
        let mut i = 0;
        while i < self.pending_closes.len() {
            let old = before.is_none_or(|b| (self.pending_closes[i].event.ts as i64) < b);
            if old {
                let p = self.pending_closes.swap_remove(i);
                self.em.order.unhold(close_key(&p));
                self.emit_close(p);
            } else {
                i += 1;
            }
        }
    }

    fn emit_close(&mut self, p: PendingClose) {
        let words = match &p.event.kind {
            EventKind::ConnClosed {
                how: CloseHow::Rst, ..
            } => "connection reset (RST)",
            _ => "connection closed (FIN)",
        };
        let words = super::udp::life_words(words, p.report.as_ref());
        self.emit(&p.event, words, p.report.as_ref());
    }

    /// The connection ended: decide what it was if still undecided, flush what is
    /// pending, write `conn_closed`, and keep its report.
    fn close_conn(&mut self, id: u64, reason: CloseReason, _ts: i64) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        // Both FINs (or a RST) were seen, but bytes before them never came (a snap length
        // cut them, or they were lost): still a close.
        let reason = match reason {
            CloseReason::EndOfCapture | CloseReason::Idle if c.close.rst.is_some() => {
                CloseReason::Rst
            }
            CloseReason::EndOfCapture | CloseReason::Idle
                if c.close.fin.iter().all(Option::is_some) =>
            {
                CloseReason::Fin
            }
            r => r,
        };
        // An undecided connection is decided now, with what there is.
        if matches!(c.live, Live::Undecided { .. }) {
            self.decide(&mut c, true);
        }
        let floor = Some((self.cur_frame, self.cur_ts));
        let mut ctx = self.ctx();
        ctx.floor = floor;
        match &mut c.live {
            Live::Http(h) => {
                let (r, carried) = (&mut c.r, &mut c.carried);
                http_responses(&mut ctx, r, carried, h, true);
            }
            Live::Peer(dec) => {
                let info_hash = c.r.info_hash().copied();
                for dir in [Dir::C2s, Dir::S2c] {
                    let (r, carried, found) = (&mut c.r, &c.carried[dir.index()], &mut c.found);
                    dec.end(dir, &mut |item| {
                        peer_item(&mut ctx, r, carried, info_hash, found, item);
                    });
                }
                for dir in [Dir::C2s, Dir::S2c] {
                    if dec.hunting(dir).is_some() && c.r.sides[dir.index()].bytes > 0 {
                        if c.found {
                            c.r.note(format!(
                                "{}: no message framing found after offset {}",
                                c.r.dir_words(dir),
                                dec.hunting(dir).unwrap_or_default()
                            ));
                        }
                    } else if dec.unfinished(dir) > 0 && !dec.stopped(dir) {
                        c.r.note(format!(
                            "{}: the connection ended inside a message ({} bytes of it seen)",
                            c.r.dir_words(dir),
                            dec.unfinished(dir)
                        ));
                    }
                }
            }
            _ => {}
        }
        // A connection picked up mid-stream that never showed BitTorrent framing is not one.
        if c.kind == Verdict::MidStream && !c.found {
            c.reportable = false;
        }
        // Every connection in exactly one category.
        let empty = c.r.sides.iter().all(|s| s.bytes == 0);
        let dialed = c.open.syn.is_some() && c.open.synack.is_none();
        let category = match (empty, c.reportable, c.r.kind) {
            (true, ..) if dialed && c.close.rst.is_some() => Category::Refused,
            (true, ..) if dialed => Category::Unanswered,
            (true, ..) => Category::Empty,
            (false, true, ConnKind::BitTorrent) => Category::BitTorrent,
            (false, true, ConnKind::Encrypted) => Category::Encrypted,
            (false, true, ConnKind::TrackerHttp) => Category::TrackerHttp,
            (false, false, _) => Category::Other,
        };
        let n = match category {
            Category::BitTorrent => {
                if c.kind == Verdict::MidStream {
                    self.report.mid_stream += 1;
                }
                &mut self.report.bittorrent
            }
            Category::Encrypted => &mut self.report.encrypted,
            Category::TrackerHttp => &mut self.report.tracker_http,
            Category::Refused => &mut self.report.refused,
            Category::Unanswered => &mut self.report.unanswered,
            Category::Empty => &mut self.report.empty,
            Category::Other => &mut self.report.other,
        };
        *n += 1;
        if !c.reportable && self.report.unreported.len() < self.opts.max_reports {
            self.report
                .unreported
                .push((c.r.id, category, c.r.client, c.r.server));
        }
        let by = |client: bool| if client { c.r.client } else { c.r.server };
        c.r.end = match (reason, c.close.first) {
            (CloseReason::Fin, Some((client, ..))) => format!("closed (FIN) by {}", by(client)),
            (CloseReason::Rst, Some((client, ..))) => format!("reset (RST) by {}", by(client)),
            (CloseReason::Fin, None) => "closed (FIN)".into(),
            (CloseReason::Rst, None) => "reset (RST)".into(),
            (CloseReason::Idle, _) => "no more packets (idle timeout)".into(),
            (CloseReason::Evicted, _) => "dropped to stay under the connection limit".into(),
            (CloseReason::Reused, _) => "its ports were reused by a new connection".into(),
            (CloseReason::EndOfCapture, _) => {
                if c.close.fin.iter().any(Option::is_some) {
                    "half-closed (one FIN) at the end of the capture".into()
                } else {
                    "still open at the end of the capture".into()
                }
            }
        };
        let established = c.open.syn.is_some() && c.open.synack.is_some();
        if empty && established && !c.reportable {
            self.emit_opened(&mut c);
        }
        let report = (c.reportable || (empty && established)).then(|| c.r.clone());
        let pending = match (reason, c.opened_emitted && self.opts.events) {
            (CloseReason::Fin | CloseReason::Rst, true) => {
                let how = if reason == CloseReason::Rst {
                    CloseHow::Rst
                } else {
                    CloseHow::Fin
                };
                let (closer_is_client, _, ts) = c.close.first.unwrap_or((true, 0, self.cur_ts));
                let (src, dst) = if closer_is_client {
                    (c.r.client, c.r.server)
                } else {
                    (c.r.server, c.r.client)
                };
                let mut frames: Vec<u64> = c.close.fin.iter().flatten().copied().collect();
                if let Some((_, f)) = c.close.rst {
                    frames.push(f);
                }
                frames.sort_unstable();
                let mut e = Event::new(ts_u64(ts), EventKind::ConnClosed { how, reason: None });
                e.conn = Some(c.r.id);
                e.src = Some(src);
                e.dst = Some(dst);
                e.frames = frames;
                Some(PendingClose {
                    conn: id,
                    acker: if closer_is_client {
                        Direction::AtoB
                    } else {
                        Direction::BtoA
                    },
                    event: e,
                    report: report.clone(),
                })
            }
            _ => None,
        };
        match pending {
            Some(p) if reason == CloseReason::Fin => {
                self.em.order.hold(close_key(&p));
                self.pending_closes.push(p);
            }
            Some(p) => self.emit_close(p),
            None => {}
        }
        self.unhold(&mut c, true);
        if c.reportable {
            if self.report.conns.len() < self.opts.max_reports {
                self.report.conns.push(c.r);
            } else {
                self.report.conns_dropped += 1;
            }
        }
    }

    /// A uTP packet: its reassembler calls back into this sink, as TCP's does, with uTP's
    /// connection counters swapped in; what it closed is closed before the TCP counters return.
    fn utp_datagram(&mut self, dg: &Datagram<'_>) {
        let mut p = std::mem::take(&mut self.udp_protocols);
        p.counts.swap_with(&mut self.report);
        p.utp.datagram(dg, self);
        for (id, reason, ts) in std::mem::take(&mut self.closing) {
            self.close_conn(id, reason, ts);
        }
        p.counts.swap_with(&mut self.report);
        self.udp_protocols = p;
    }

    /// The end of the capture for uTP: connections still open are closed.
    fn finish_utp(&mut self) {
        let mut p = std::mem::take(&mut self.udp_protocols);
        p.counts.swap_with(&mut self.report);
        p.utp.finish(self);
        for (id, reason, ts) in std::mem::take(&mut self.closing) {
            self.close_conn(id, reason, ts);
        }
        p.counts.swap_with(&mut self.report);
        self.udp_protocols = p;
    }

    fn ctx(&mut self) -> Ctx<'_, 'o> {
        Ctx {
            events: self.opts.events,
            em: &mut self.em,
            floor: None,
            checker: self.checker.as_deref_mut(),
            tracker_log: &mut self.report.tracker_log,
            frame: self.cur_frame,
            ts: self.cur_ts,
        }
    }

    /// Writes `conn_opened` (once, when the start was seen).
    fn emit_opened(&mut self, c: &mut Conn) {
        if c.opened_emitted {
            return;
        }
        c.opened_emitted = true;
        let Some((syn, ts)) = c.open.syn else {
            return;
        };
        if !self.opts.events {
            return;
        }
        let mut e = Event::new(ts_u64(ts), EventKind::ConnOpened { local: None });
        e.conn = Some(c.r.id);
        e.src = Some(c.r.client);
        e.dst = Some(c.r.server);
        e.frames = [Some(syn), c.open.synack, c.open.ack]
            .into_iter()
            .flatten()
            .collect();
        let words = super::udp::life_words("connection opened (SYN, SYN-ACK, ACK)", Some(&c.r));
        self.emit(&e, words, Some(&c.r));
    }

    /// Tries to tell what `c` is from its first bytes (`done`: no more will come), and if it
    /// can, switches it to that and replays the bytes kept so far.
    fn decide(&mut self, c: &mut Conn, done: bool) {
        let Live::Undecided { pre, start } = &mut c.live else {
            return;
        };
        let verdict = classify(&Sniff {
            bytes: [&pre[0], &pre[1]],
            syn_seen: c.r.syn_seen && start.iter().all(Option::is_none),
            first_speaker: c.speaker,
            first_flight: c.flight,
            answered: c.answered,
            done,
        });
        let verdict = match verdict {
            Verdict::Undecided if done => Verdict::Other,
            v => v,
        };
        if verdict == Verdict::Undecided {
            return;
        }
        let pre = std::mem::take(pre);
        let start = *start;
        c.kind = verdict;
        let kind = match verdict {
            Verdict::BitTorrent | Verdict::MidStream => ConnKind::BitTorrent,
            Verdict::Encrypted => ConnKind::Encrypted,
            Verdict::TrackerHttp => ConnKind::TrackerHttp,
            _ => {
                c.live = Live::Ignored;
                c.carried = Default::default();
                return;
            }
        };
        c.r.kind = kind;
        c.reportable = true;
        c.live = match verdict {
            Verdict::TrackerHttp => Live::Http(Box::default()),
            _ => {
                // A direction starts with the handshake if its SYN was seen; without, the
                // handshake if it is there, else the first message found.
                let own_syn = [c.open.syn.is_some(), c.open.synack.is_some()];
                let starts = [0, 1].map(|d| {
                    let b = &pre[d];
                    if start[d].is_some() || verdict == Verdict::MidStream {
                        Start::Hunt
                    } else if own_syn[d] || (!b.is_empty() && looks_like_handshake_prefix(b)) {
                        Start::Handshake
                    } else {
                        Start::Unknown
                    }
                });
                let mut dec = ConnectionDecoder::with_starts(starts).hash_pieces(self.opts.events);
                for (d, s) in start.iter().enumerate() {
                    if let Some(at) = s {
                        dec.set_start_offset([Dir::C2s, Dir::S2c][d], *at);
                    }
                }
                for (d, s) in starts.iter().enumerate() {
                    if *s != Start::Handshake {
                        c.r.sides[d].mid_stream = true;
                    }
                }
                Live::Peer(Box::new(dec))
            }
        };
        if verdict == Verdict::Encrypted {
            c.r.mse = true;
            let first = c.speaker.unwrap_or(0);
            c.r.note(format!(
                "MSE/PE handshake: the {} opened with {} bytes of random-looking data{}",
                side_name(first == 0),
                c.flight,
                if c.answered {
                    " and was answered in kind".to_string()
                } else {
                    String::new()
                }
            ));
        }
        if verdict == Verdict::MidStream {
            c.r.note("started mid-stream: the connection's start is not in the capture".into());
        }
        self.emit_opened(c);
        // A direction whose first bytes were not captured: that is a gap at its start.
        for (d, at) in start.iter().enumerate() {
            let Some(at) = *at else { continue };
            let dir = [Dir::C2s, Dir::S2c][d];
            let Some(first) = c.carried[d].front().copied() else {
                continue;
            };
            let words = format!(
                "gap: the start of this direction is not in the capture ({at} bytes missing \
                 before frame {})",
                first.frame
            );
            c.r.note(format!("{}: {}", c.r.dir_words(dir), &words[5..]));
            self.emit_gap(
                c,
                dir,
                0,
                at,
                vec![first.frame],
                (first.frame, first.ts),
                &words,
            );
        }
        // Replay what was kept, first speaker first.
        let order = if c.speaker == Some(1) { [1, 0] } else { [0, 1] };
        for d in order {
            if !pre[d].is_empty() {
                let base = start[d].unwrap_or(0);
                self.feed(c, [Dir::C2s, Dir::S2c][d], base, &pre[d]);
            }
        }
    }

    /// Hands stream bytes of `dir` at `offset` to the connection's decoder.
    fn feed(&mut self, c: &mut Conn, dir: Dir, offset: u64, data: &[u8]) {
        let d = dir.index();
        let events = self.opts.events;
        let max_hunt = self.opts.max_hunt;
        let mut ctx = self.ctx();
        let Conn {
            r,
            live,
            carried,
            found,
            reportable,
            ..
        } = c;
        match live {
            Live::Peer(dec) => {
                let info_hash = r.info_hash().copied();
                let carried_d = &carried[d];
                dec.push(dir, data, &mut |item| {
                    peer_item(&mut ctx, r, carried_d, info_hash, found, item);
                });
                if events {
                    prune(&mut carried[d], dec.pending_offset(dir));
                }
                if let Some(from) = dec.hunting(dir) {
                    let now = offset + data.len() as u64;
                    if now.saturating_sub(from) > max_hunt && !*found {
                        // Not BitTorrent after all: stop looking.
                        *live = Live::Ignored;
                        *carried = Default::default();
                        *reportable = false;
                    }
                }
                self.sync_hunt_hold(c, dir);
            }
            Live::Http(h) => {
                if h.failed[d] {
                    return;
                }
                if h.buf[d].is_empty() {
                    h.base[d] = offset;
                }
                if h.buf[d].len() + data.len() > MAX_HTTP {
                    h.failed[d] = true;
                    h.buf[d] = Vec::new();
                    r.note(format!(
                        "{}: HTTP message longer than {MAX_HTTP} bytes: not decoded",
                        r.dir_words(dir)
                    ));
                    return;
                }
                h.buf[d].extend_from_slice(data);
                if dir == Dir::C2s {
                    http_requests(&mut ctx, r, carried, h);
                } else {
                    http_responses(&mut ctx, r, carried, h, false);
                }
            }
            Live::Undecided { .. } | Live::Ignored => {}
        }
    }
}

fn side_name(client: bool) -> &'static str {
    if client {
        "client"
    } else {
        "server"
    }
}

/// Events on their way out: counted, put in capture order ([`Reorder`]) and written.
struct Emitter<'o> {
    out: &'o mut dyn EventOut,
    order: Reorder,
    /// The reassembly's oldest buffered frame (as of the last packet's end).
    buffered: Option<u64>,
    error: Option<io::Error>,
    n: u64,
}

impl Emitter<'_> {
    /// An event completed by frame `key`.
    fn emit(&mut self, key: u64, e: &Event, words: &str, conn: Option<&ConnReport>) {
        self.n += 1;
        if self.error.is_some() {
            return;
        }
        let e = &*super::udp::tagged(e, conn);
        if self.order.passes(key, self.buffered) {
            self.write(key, e, words, conn);
        } else {
            self.order
                .push(key, e.clone(), words.to_string(), conn.cloned());
            self.release(0);
        }
    }

    fn write(&mut self, key: u64, e: &Event, words: &str, conn: Option<&ConnReport>) {
        if self.error.is_none() {
            if let Err(err) = self.out.event_at(key, e, words, conn) {
                self.error = Some(err);
            }
        }
    }

    /// Writes the waiting events whose turn has come, up to frame `upto`.
    fn release(&mut self, upto: u64) {
        while let Some(h) = self.order.ready(upto, self.buffered) {
            self.write(h.key, &h.event, &h.words, h.conn.as_ref());
        }
    }

    /// Writes every waiting event (nothing else can come).
    fn release_all(&mut self) {
        while let Some(h) = self.order.drain() {
            self.write(h.key, &h.event, &h.words, h.conn.as_ref());
        }
    }
}

/// The frame a waiting `conn_closed` holds (the last of its frames).
fn close_key(p: &PendingClose) -> u64 {
    p.event.frames.iter().max().copied().unwrap_or(0)
}

/// What item handlers need from the analyzer (split from the connection they work on).
struct Ctx<'a, 'o> {
    events: bool,
    em: &'a mut Emitter<'o>,
    /// Items found because a gap or a close ended them are completed by this frame (and
    /// timestamp), not by the last frame carrying them.
    floor: Option<(u64, i64)>,
    checker: Option<&'a mut PieceChecker>,
    tracker_log: &'a mut Vec<String>,
    frame: u64,
    ts: i64,
}

impl Ctx<'_, '_> {
    /// Emits the event of a decoded item of connection `r`, with the frames carrying it.
    fn item(&mut self, r: &ConnReport, carried: &VecDeque<Carried>, d: Decoded) {
        if !self.events {
            return;
        }
        let (frames, ts) = frames_for(carried, d.offset, d.end());
        let last = frames.iter().max().copied();
        let (key, ts) = match (self.floor, last) {
            (Some((f, fts)), Some(l)) if f > l => (f, Some(fts)),
            (Some((f, fts)), None) => (f, Some(fts)),
            (_, l) => (l.unwrap_or(self.frame), ts),
        };
        let mut e = Event::new(ts_u64(ts.unwrap_or(self.ts)), d.kind);
        let (src, dst) = r.endpoints(d.dir);
        e.conn = Some(r.id);
        e.src = Some(src);
        e.dst = Some(dst);
        e.dir = Some(d.dir);
        e.frames = frames;
        self.em.emit(key, &e, &d.words, Some(r));
    }
}

/// Counts (and emits) one item of a peer connection.
fn peer_item(
    ctx: &mut Ctx<'_, '_>,
    r: &mut ConnReport,
    carried: &VecDeque<Carried>,
    info_hash: Option<[u8; 20]>,
    found: &mut bool,
    item: PeerItem<'_>,
) {
    match &item {
        PeerItem::Resynced {
            dir,
            from,
            at,
            handshake,
        } => {
            let who = r.dir_words(*dir);
            let side = &mut r.sides[dir.index()];
            let note = if *handshake && r.mse {
                // The "error" at offset 0 was the MSE/PE preamble.
                side.protocol_errors = side.protocol_errors.saturating_sub(1);
                r.kind = ConnKind::BitTorrent;
                format!(
                    "{who}: the MSE/PE handshake ({} bytes) selected plaintext: BitTorrent \
                     handshake at stream offset {at}",
                    at - from
                )
            } else if *handshake {
                format!(
                    "{who}: {} bytes before the handshake at stream offset {at}",
                    at - from
                )
            } else if r.mse
                && !side.mid_stream
                && side.handshake.is_none()
                && side.messages() == 0
                && side.protocol_errors == 1
            {
                // The first messages in clear after this side's MSE/PE preamble: the
                // preamble was the "error" at its start, and the BitTorrent handshake
                // travelled inside the RC4-encrypted initial payload.
                side.protocol_errors = 0;
                r.kind = ConnKind::BitTorrent;
                if side.gaps == 0 {
                    format!(
                        "{who}: the MSE/PE handshake ({} bytes) selected plaintext, the \
                         BitTorrent handshake inside its encrypted initial payload: messages in \
                         clear from stream offset {at}",
                        at - from
                    )
                } else {
                    // Where the preamble ended is lost in the gap.
                    format!(
                        "{who}: the MSE/PE handshake selected plaintext, the BitTorrent \
                         handshake inside its encrypted initial payload: after a gap, messages \
                         in clear from stream offset {at}"
                    )
                }
            } else if side.mid_stream && side.messages() == 0 && side.handshake.is_none() {
                format!("{who}: started mid-stream; first message at stream offset {at}")
            } else {
                format!(
                    "{who}: resynchronized at stream offset {at} after skipping {} bytes \
                     (frame {})",
                    at - from,
                    frame_at(carried, *at, r.last_frame)
                )
            };
            r.note(note);
            return;
        }
        PeerItem::Error { dir, error, .. } => {
            let side = &mut r.sides[dir.index()];
            side.protocol_errors += 1;
            if r.kind != ConnKind::Encrypted {
                r.note(format!(
                    "{}: protocol error at stream offset {} (frame {}): {}",
                    r.dir_words(*dir),
                    error.offset,
                    frame_at(carried, error.offset, r.last_frame),
                    error.error
                ));
            }
        }
        PeerItem::Handshake { dir, handshake, .. } => {
            *found = true;
            r.sides[dir.index()].handshake = Some(HandshakeInfo {
                reserved: handshake.reserved,
                info_hash: handshake.info_hash,
                peer_id: handshake.peer_id,
                client: crate::peer_id::client_name(&handshake.peer_id),
            });
        }
        PeerItem::Message {
            dir,
            msg,
            receiver_ext,
            sender_ext,
            ..
        } => {
            *found = true;
            let side = &mut r.sides[dir.index()];
            side.counts[msg.kind().slot()] += 1;
            match *msg {
                Message::Unchoke => {
                    side.first_unchoke_ns.get_or_insert(ctx.ts);
                }
                Message::Extended { ext_id, .. } => {
                    let name = if ext_id == EXTENDED_HANDSHAKE_ID {
                        if let Some(h) = sender_ext {
                            side.ext = Some((*h).clone());
                        }
                        "handshake".to_string()
                    } else {
                        receiver_ext
                            .and_then(|x| x.name_of(ext_id))
                            .map_or_else(|| format!("id {ext_id}"), str::to_string)
                    };
                    *side.extended.entry(name).or_default() += 1;
                }
                _ => {}
            }
        }
        PeerItem::PieceData {
            block,
            at,
            data,
            whole,
            ..
        } => {
            // The checker gets a block's data in parts, as long as none of it was lost.
            let Some(ch) = ctx.checker.as_deref_mut() else {
                return;
            };
            if !*whole || info_hash.is_some_and(|h| !ch.matches(&h)) {
                return;
            }
            if !ch.fits(*block) {
                if *at == 0 {
                    ch.ignore();
                }
                return;
            }
            if let Err(e) = ch.block(block.index, block.begin + at, data) {
                if ctx.em.error.is_none() {
                    ctx.em.error = Some(e);
                }
            }
            return;
        }
        PeerItem::Piece {
            dir, block, cut, ..
        } => {
            *found = true;
            // A piece whose data is not all in the capture (a snap length, or lost) still
            // counts: its header tells which block it was.
            let side = &mut r.sides[dir.index()];
            side.counts[MessageKind::Piece.slot()] += 1;
            side.blocks += 1;
            side.piece_bytes += u64::from(block.length);
            side.pieces.insert(block.index);
            if *cut {
                side.cut_blocks += 1;
            }
        }
    }
    if ctx.events {
        if let Some(mut d) = item.to_decoded() {
            if r.kind == ConnKind::Encrypted && matches!(item, PeerItem::Error { .. }) {
                // Described as the table does: the bytes are MSE/PE, not a broken handshake.
                d.words = format!(
                    "encrypted (MSE/PE): random-looking bytes from stream offset {}, not a \
                     BitTorrent handshake",
                    d.offset
                );
            }
            ctx.item(r, carried, d);
        }
    }
}

/// Decodes the complete requests buffered in a tracker conversation.
fn http_requests(
    ctx: &mut Ctx<'_, '_>,
    r: &mut ConnReport,
    carried: &mut [VecDeque<Carried>; 2],
    h: &mut Http,
) {
    while !h.buf[0].is_empty() && !h.failed[0] {
        let Some(mut d) = decode_http_request(&h.buf[0]) else {
            return;
        };
        let base = h.base[0];
        d.offset = base;
        let used = d.len as usize;
        let mut scrape = false;
        match &mut d.kind {
            EventKind::TrackerHttpRequest { offset, target, .. } => {
                *offset = base;
                let path = target.split('?').next().unwrap_or_default();
                scrape = path
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .starts_with("scrape");
            }
            EventKind::ProtocolError { offset, .. } => {
                *offset = base;
                h.failed[0] = true;
            }
            _ => {}
        }
        h.scrapes.push_back(scrape);
        r.sides[0].http_messages += 1;
        log_tracker(ctx.tracker_log, r, &d.words);
        ctx.item(r, &carried[0], d);
        h.buf[0].drain(..used.min(h.buf[0].len()));
        h.base[0] += used as u64;
        prune(&mut carried[0], h.base[0]);
        if used == 0 {
            h.failed[0] = true;
        }
    }
}

/// Decodes the complete responses buffered in a tracker conversation (`eof`: the server
/// closed, so a body without a length ends here).
fn http_responses(
    ctx: &mut Ctx<'_, '_>,
    r: &mut ConnReport,
    carried: &mut [VecDeque<Carried>; 2],
    h: &mut Http,
    eof: bool,
) {
    while !h.buf[1].is_empty() && !h.failed[1] {
        let scrape = h.scrapes.front().copied().unwrap_or(false);
        let Some(mut d) = decode_http_response(&h.buf[1], eof, scrape) else {
            return;
        };
        h.scrapes.pop_front();
        let base = h.base[1];
        d.offset = base;
        let used = d.len as usize;
        match &mut d.kind {
            EventKind::TrackerHttpResponse { offset, .. } => *offset = base,
            EventKind::ProtocolError { offset, .. } => {
                *offset = base;
                h.failed[1] = true;
            }
            _ => {}
        }
        r.sides[1].http_messages += 1;
        log_tracker(ctx.tracker_log, r, &d.words);
        ctx.item(r, &carried[1], d);
        h.buf[1].drain(..used.min(h.buf[1].len()));
        h.base[1] += used as u64;
        prune(&mut carried[1], h.base[1]);
        if used == 0 {
            h.failed[1] = true;
        }
    }
}

/// Drops the frames wholly before stream offset `keep`.
fn prune(carried: &mut VecDeque<Carried>, keep: u64) {
    while carried.front().is_some_and(|x| x.end <= keep) {
        carried.pop_front();
    }
}

fn log_tracker(log: &mut Vec<String>, r: &ConnReport, words: &str) {
    if log.len() < MAX_TRACKER_LOG {
        log.push(format!("tcp {} {} → {}: {words}", r.id, r.client, r.server));
    }
}

impl StreamSink for Analyzer<'_> {
    fn on_packet(&mut self, pkt: &Packet<'_>) {
        if pkt.frame_no == 1 {
            self.em.out.capture_start(pkt.ts_ns);
        }
        self.cur_frame = pkt.frame_no;
        self.cur_ts = pkt.ts_ns;
        self.in_packet = true;
    }

    fn on_buffered(&mut self, oldest_frame: Option<u64>) {
        self.em.buffered = oldest_frame;
    }

    fn on_packet_end(&mut self) -> ControlFlow<()> {
        self.end_packet();
        self.in_packet = false;
        self.em.release(self.cur_frame);
        let stop = self
            .opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed));
        if self.em.error.is_some() || stop {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn on_open(&mut self, info: &ConnInfo) {
        self.conns.insert(
            info.id.0,
            Conn {
                r: ConnReport::new(info),
                open: OpenTrack::default(),
                close: CloseTrack::default(),
                opened_emitted: false,
                speaker: None,
                flight: 0,
                answered: false,
                live: Live::Undecided {
                    pre: Default::default(),
                    start: [None, None],
                },
                carried: Default::default(),
                found: false,
                reportable: false,
                kind: Verdict::Undecided,
                hold: None,
                hunt_hold: [None, None],
            },
        );
    }

    fn on_data(
        &mut self,
        conn: ConnId,
        dir: Direction,
        offset: u64,
        data: &[u8],
        frame_no: u64,
        ts_ns: i64,
    ) {
        let Some(mut c) = self.conns.remove(&conn.0) else {
            return;
        };
        let dir = dir_of(dir);
        let d = dir.index();
        c.r.last_frame = frame_no;
        c.r.last_ts_ns = ts_ns;
        c.r.sides[d].bytes += data.len() as u64;
        match c.speaker {
            None => {
                c.speaker = Some(d);
                c.flight = data.len() as u64;
            }
            Some(s) if s == d && !c.answered => c.flight += data.len() as u64,
            Some(_) => c.answered = true,
        }
        if self.opts.events && !matches!(c.live, Live::Ignored) {
            let cd = &mut c.carried[d];
            let end = offset + data.len() as u64;
            match cd.back_mut() {
                Some(last) if last.frame == frame_no && last.end == offset => last.end = end,
                _ => cd.push_back(Carried {
                    frame: frame_no,
                    ts: ts_ns,
                    start: offset,
                    end,
                }),
            }
        }
        self.hold(&mut c, frame_no);
        if let Live::Undecided { pre, .. } = &mut c.live {
            let old = pre[d].len();
            let take = data.len().min(SNIFF_LEN.saturating_sub(old));
            pre[d].extend_from_slice(&data[..take]);
            let full = take < data.len() || pre[d].len() >= SNIFF_LEN;
            self.decide(&mut c, full);
            if matches!(c.live, Live::Undecided { .. }) {
                self.conns.insert(conn.0, c);
                return;
            }
            // Decided: the replay fed everything kept, this chunk's first `take` bytes
            // included; feed the rest.
            if take < data.len() {
                self.feed(&mut c, dir, offset + take as u64, &data[take..]);
            }
            self.unhold(&mut c, false);
        } else {
            self.feed(&mut c, dir, offset, data);
        }
        self.conns.insert(conn.0, c);
    }

    fn on_gap(&mut self, conn: ConnId, dir: Direction, gap: &Gap) {
        let Some(mut c) = self.conns.remove(&conn.0) else {
            return;
        };
        let dir = dir_of(dir);
        let d = dir.index();
        let known = match (gap.frame_after, gap.ts_after) {
            (Some(f), _) => f,
            _ => self.cur_frame,
        };
        self.hold(&mut c, known);
        if let Live::Undecided { pre, start } = &mut c.live {
            if pre[d].is_empty() && start[d].is_none() {
                // The direction's first bytes are missing: it starts after the gap.
                start[d] = Some(gap.offset + gap.len);
            } else {
                self.decide(&mut c, true);
            }
        }
        let resume = gap.offset + gap.len;
        // The gap is known once the bytes after it came (or the connection ended).
        let gap_end = match (gap.frame_after, gap.ts_after) {
            (Some(f), Some(t)) => (f, t),
            _ => (self.cur_frame, self.cur_ts),
        };
        // A uTP gap's length is unknown (crate::capture::utp::GAP_JUMP).
        let utp = c.r.transport == Transport::Utp;
        let side = &mut c.r.sides[d];
        side.gaps += 1;
        side.gap_bytes += if utp { 0 } else { gap.len };
        let reportable = !matches!(c.live, Live::Ignored | Live::Undecided { .. });
        let frames = match (gap.frame_before, gap.frame_after) {
            (Some(a), Some(b)) => format!("between frames {a} and {b}"),
            (None, Some(b)) => format!("before frame {b}"),
            (Some(a), None) => format!("after frame {a}"),
            (None, None) => String::new(),
        };
        let mut piece_gap = false;
        let effect = {
            let Conn {
                r,
                live,
                carried,
                found,
                ..
            } = &mut c;
            match live {
                Live::Peer(dec) => {
                    // A piece message that loses data ends as cut: handled like any item,
                    // completed where the gap became known.
                    let info_hash = r.info_hash().copied();
                    let mut ctx = self.ctx();
                    ctx.floor = Some(gap_end);
                    let effect = dec.gap(dir, gap.len, resume, &mut |item| {
                        peer_item(&mut ctx, r, &carried[d], info_hash, found, item);
                    });
                    prune(&mut carried[d], dec.pending_offset(dir));
                    match effect {
                        Some(GapEffect::PieceData { .. }) => {
                            piece_gap = true;
                            String::new()
                        }
                        Some(GapEffect::LostMessage {
                            message_at,
                            id,
                            again: false,
                            ..
                        }) => format!(
                            "; the {} message at offset {message_at} is lost",
                            id.map_or("unknown", |i| MessageKind::from_id(i).name())
                        ),
                        Some(GapEffect::Hunting { .. }) => {
                            "; resynchronizing on message framing".into()
                        }
                        Some(GapEffect::LostMessage { again: true, .. }) | None => String::new(),
                    }
                }
                Live::Http(h) => {
                    h.failed[d] = true;
                    carried[d].clear();
                    "; HTTP decoding stops".into()
                }
                _ => {
                    carried[d].clear();
                    String::new()
                }
            }
        };
        // Gaps inside piece data (a snap length cuts every frame of a piece) are counted as
        // blocks without data, not noted one by one.
        let quiet = piece_gap || (effect.is_empty() && c.r.sides[d].cut_blocks > 0);
        if reportable && !quiet {
            let what = if utp {
                "uTP packets not captured".to_string()
            } else {
                format!("{} bytes", gap.len)
            };
            c.r.note(format!(
                "{}: gap of {what} at stream offset {} {frames}{effect}",
                c.r.dir_words(dir),
                gap.offset
            ));
            let around: Vec<u64> = [gap.frame_before, gap.frame_after]
                .into_iter()
                .flatten()
                .collect();
            let words = format!(
                "gap: {what} missing at stream offset {}{}",
                gap.offset,
                if frames.is_empty() {
                    String::new()
                } else {
                    format!(" ({frames})")
                }
            );
            self.emit_gap(&c, dir, gap.offset, gap.len, around, gap_end, &words);
        }
        self.sync_hunt_hold(&mut c, dir);
        self.unhold(&mut c, false);
        self.conns.insert(conn.0, c);
    }

    fn on_conflict(&mut self, conn: ConnId, dir: Direction, x: &Conflict) {
        if let Some(c) = self.conns.get_mut(&conn.0) {
            c.r.note(format!(
                "{}: conflicting retransmission: {} of {} bytes differ at stream offset {} \
                 (frame {} kept, frame {} dropped)",
                c.r.dir_words(dir_of(dir)),
                x.differing,
                x.len,
                x.offset,
                x.kept_frame,
                x.dropped_frame
            ));
        }
    }

    /// Notes the frames of the opening and closing; the last ACK of a FIN exchange completes
    /// its waiting `conn_closed`.
    fn on_life(&mut self, conn: ConnId, life: Life, frame_no: u64, ts_ns: i64) {
        if let Life::AckAfterClose(dir) = life {
            if let Some(i) = self
                .pending_closes
                .iter()
                .position(|p| p.conn == conn.0 && p.acker == dir)
            {
                let mut p = self.pending_closes.swap_remove(i);
                self.em.order.unhold(close_key(&p));
                p.event.frames.push(frame_no);
                self.emit_close(p);
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&conn.0) else {
            return;
        };
        let ended = |dir: Direction| (dir == Direction::AtoB, frame_no, ts_ns);
        match life {
            Life::Syn => c.open.syn = Some((frame_no, ts_ns)),
            Life::SynAck => {
                c.open.synack = Some(frame_no);
                // uTP has no third packet: the ST_STATE answering the ST_SYN opens it.
                if c.r.transport == Transport::Utp {
                    Self::hold_open(&mut self.em, c, frame_no, self.opts.events);
                }
            }
            Life::Established => {
                c.open.ack = Some(frame_no);
                Self::hold_open(&mut self.em, c, frame_no, self.opts.events);
            }
            Life::Fin(dir) => {
                c.close.fin[dir.index()] = Some(frame_no);
                c.close.first.get_or_insert(ended(dir));
            }
            Life::Reset(dir) => {
                c.close.rst = Some((dir == Direction::AtoB, frame_no));
                c.close.first.get_or_insert(ended(dir));
            }
            Life::Refused => {
                c.close.rst = Some((false, frame_no));
                c.close.first.get_or_insert(ended(Direction::BtoA));
            }
            Life::AckAfterClose(_) => {}
        }
    }

    fn on_close(&mut self, conn: ConnId, reason: CloseReason, ts_ns: i64) {
        self.closing.push((conn.0, reason, ts_ns));
        // Outside a packet (end of capture), nothing more will come for it.
        if !self.in_packet {
            for (id, reason, ts) in std::mem::take(&mut self.closing) {
                self.close_conn(id, reason, ts);
            }
        }
    }

    fn on_udp(&mut self, dg: &Datagram<'_>) {
        let stream = self.udp_streams.id(dg.src, dg.dst);
        let Some(to_tracker) = self.udp.classify(dg.src, dg.dst, dg.payload) else {
            // uTP, DHT, LSD (src/analyze/udp.rs).
            match self.udp_protocols.classify(dg.src, dg.dst, dg.payload) {
                Classified::Utp => self.utp_datagram(dg),
                Classified::Event(kind, words) if self.opts.events => {
                    let mut e = Event::new(ts_u64(dg.ts_ns), *kind);
                    e.conn = Some(stream);
                    e.src = Some(dg.src);
                    e.dst = Some(dg.dst);
                    e.frames = vec![dg.frame_no];
                    self.emit(&e, &words, None);
                }
                _ => {}
            }
            return;
        };
        self.report.udp_tracker_datagrams += 1;
        let ipv6 = dg.src.ip().to_canonical().is_ipv6();
        let (kind, words) = decode_udp(dg.payload, to_tracker, ipv6);
        if self.report.tracker_log.len() < MAX_TRACKER_LOG {
            self.report
                .tracker_log
                .push(format!("udp {stream} {} → {}: {words}", dg.src, dg.dst));
        }
        if self.opts.events {
            let mut e = Event::new(ts_u64(dg.ts_ns), kind);
            e.conn = Some(stream);
            e.src = Some(dg.src);
            e.dst = Some(dg.dst);
            e.frames = vec![dg.frame_no];
            self.emit(&e, &words, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect::noise;
    use crate::capture::reader::tests::Builder;
    use crate::wire::{BlockRef, Handshake};
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    const A: ([u8; 4], u16) = ([127, 0, 0, 1], 40000);
    const B: ([u8; 4], u16) = ([127, 0, 0, 2], 7001);

    /// An Ethernet/IPv4/TCP frame.
    fn tcp(
        from: ([u8; 4], u16),
        to: ([u8; 4], u16),
        seq: u32,
        flags: &str,
        data: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4(from.0, to.0, 64);
        let mut t = b.tcp(from.1, to.1, seq, 1000);
        if flags.contains('S') {
            t = t.syn();
        }
        if flags.contains('A') {
            t = t.ack(1);
        }
        if flags.contains('F') {
            t = t.fin();
        }
        if flags.contains('R') {
            t = t.rst();
        }
        let mut v = Vec::new();
        t.write(&mut v, data).unwrap();
        v
    }

    fn pcapng(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut b = Builder::new(true);
        b.shb().idb(1, Some(9), None);
        for (i, f) in frames.iter().enumerate() {
            b.epb(0, 1_000_000 * (i as u64 + 1), f, f.len() as u32);
        }
        b.out
    }

    #[derive(Default)]
    struct Collect(Vec<(Event, String)>);
    impl EventOut for Collect {
        fn event(&mut self, e: &Event, words: &str, _: Option<&ConnReport>) -> io::Result<()> {
            self.0.push((e.clone(), words.to_string()));
            Ok(())
        }
    }

    fn run(frames: &[Vec<u8>]) -> (CaptureReport, Vec<(Event, String)>) {
        let bytes = pcapng(frames);
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        let mut out = Collect::default();
        let opts = Options {
            events: true,
            ..Options::default()
        };
        let rep = analyze(&mut r, opts, &mut out, None).unwrap();
        (rep, out.0)
    }

    fn msgs(ms: &[Message<'_>]) -> Vec<u8> {
        let mut v = Vec::new();
        for m in ms {
            m.emit(&mut v);
        }
        v
    }

    #[test]
    fn handshake_on_an_unusual_port_opens_and_closes() {
        let mut c2s = Handshake::new(
            Reserved::new().with_fast(),
            [3; 20],
            *b"-qB4500-xxxxxxxxxxxx",
        )
        .emit()
        .to_vec();
        c2s.extend(msgs(&[Message::Interested]));
        let s2c = msgs(&[Message::HaveAll, Message::Unchoke]);
        let mut s2c_all = Handshake::new(Reserved::new(), [3; 20], *b"-UT3550-yyyyyyyyyyyy")
            .emit()
            .to_vec();
        s2c_all.extend(&s2c);
        let frames = vec![
            tcp(A, B, 100, "S", b""),
            tcp(B, A, 500, "SA", b""),
            tcp(A, B, 101, "A", b""),
            tcp(A, B, 101, "A", &c2s),
            tcp(B, A, 501, "A", &s2c_all),
            tcp(A, B, 101 + c2s.len() as u32, "FA", b""),
            tcp(B, A, 501 + s2c_all.len() as u32, "FA", b""),
            tcp(A, B, 102 + c2s.len() as u32, "A", b""),
        ];
        let (rep, ev) = run(&frames);
        assert_eq!((rep.bittorrent, rep.conns.len()), (1, 1));
        let c = &rep.conns[0];
        assert_eq!(
            c.sides[0].handshake.as_ref().unwrap().client,
            "qBittorrent 4.5.0"
        );
        assert_eq!(c.sides[1].counts[MessageKind::HaveAll.slot()], 1);
        assert_eq!(c.end, "closed (FIN) by 127.0.0.1:40000");
        assert!(c.sides[1].first_unchoke_ns.is_some());
        let kinds: Vec<&str> = ev.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            kinds.first(),
            Some(&"connection opened (SYN, SYN-ACK, ACK)")
        );
        assert_eq!(kinds.last(), Some(&"connection closed (FIN)"));
        assert_eq!(ev[0].0.frames, [1, 2, 3]);
        assert_eq!(ev.last().unwrap().0.frames, [6, 7, 8]);
        assert_eq!(ev.len(), 7, "{kinds:?}");
    }

    #[test]
    fn mid_stream_with_a_gap() {
        // The tail of a piece, then haves; a segment lost inside a request; more messages.
        let mut s: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        s.extend(msgs(&[
            Message::Have { index: 1 },
            Message::Have { index: 2 },
        ]));
        let req = msgs(&[Message::Request(BlockRef::new(9, 0, 16384))]);
        let after = msgs(&[Message::Have { index: 3 }, Message::Choke]);
        let seq0 = 7_000_000u32;
        let frames = vec![
            tcp(A, B, seq0, "A", &s),
            // first 10 bytes of the request, then 7 lost
            tcp(A, B, seq0 + s.len() as u32, "A", &req[..10]),
            tcp(A, B, seq0 + (s.len() + 17) as u32, "A", &after),
        ];
        let (rep, ev) = run(&frames);
        assert_eq!((rep.bittorrent, rep.mid_stream), (1, 1));
        let c = &rep.conns[0];
        let side = &c.sides[0];
        assert!(side.mid_stream);
        assert_eq!(side.counts[MessageKind::Have.slot()], 3);
        assert_eq!(side.counts[MessageKind::Choke.slot()], 1);
        assert_eq!((side.gaps, side.gap_bytes), (1, 7));
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("the request message at offset 318 is lost")),
            "{:?}",
            c.notes
        );
        assert!(c
            .notes
            .iter()
            .any(|n| n.contains("first message at stream offset 300")));
        // No conn_opened: the start is not in the capture.
        assert!(ev
            .iter()
            .all(|(e, _)| !matches!(e.kind, EventKind::ConnOpened { .. })));
        // The gap is an event, between the frames around it, in capture order.
        let gaps: Vec<&Event> = ev
            .iter()
            .map(|(e, _)| e)
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Gap {
                        offset: 328,
                        len: 7
                    }
                )
            })
            .collect();
        assert_eq!(gaps.len(), 1, "{ev:?}");
        assert_eq!(gaps[0].frames, [2, 3]);
        assert_eq!(ev.len(), 5);
    }

    #[test]
    fn random_bytes_mid_stream_are_not_bittorrent() {
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let frames: Vec<Vec<u8>> = noise
            .chunks(1400)
            .enumerate()
            .map(|(i, c)| tcp(A, B, 1 + 1400 * i as u32, "A", c))
            .collect();
        let bytes = pcapng(&frames);
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        let opts = Options {
            max_hunt: 64 * 1024,
            ..Options::default()
        };
        let rep = analyze(&mut r, opts, &mut NoEvents, None).unwrap();
        assert_eq!((rep.bittorrent, rep.other), (0, 1));
        assert!(rep.conns.is_empty());
    }

    #[test]
    fn mse_then_rst() {
        let key = noise(300, 99);
        let frames = vec![
            tcp(A, B, 100, "S", b""),
            tcp(B, A, 500, "SA", b""),
            tcp(A, B, 101, "A", b""),
            tcp(A, B, 101, "A", &key),
            tcp(B, A, 501, "RA", b""),
        ];
        let (rep, ev) = run(&frames);
        assert_eq!((rep.encrypted, rep.bittorrent), (1, 0));
        assert_eq!(rep.conns[0].kind, ConnKind::Encrypted);
        assert_eq!(rep.conns[0].end, "reset (RST) by 127.0.0.2:7001");
        let words: Vec<&str> = ev.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(words.len(), 3, "{words:?}");
        assert_eq!(
            words[1],
            "encrypted (MSE/PE): random-looking bytes from stream offset 0, not a BitTorrent \
             handshake"
        );
        assert_eq!(words[2], "connection reset (RST)");
    }

    /// A connection where both sides open with an MSE/PE preamble (442 and 400 random-looking
    /// bytes) that selected plaintext: the responder's handshake, `have all` and `unchoke`
    /// follow in clear; the initiator's handshake was in the encrypted initial payload, and its
    /// `c_msgs` come in clear at sequence number `c_seq`, then its FIN.
    fn mse_plaintext_frames(c_seq: u32, c_msgs: &[u8]) -> Vec<Vec<u8>> {
        let c_key = noise(MSE_KEY_C, 7);
        let s_key = noise(400, 11);
        let mut s_rest = Handshake::new(Reserved::new().with_fast(), [3; 20], [4; 20])
            .emit()
            .to_vec();
        s_rest.extend(msgs(&[Message::HaveAll, Message::Unchoke]));
        vec![
            tcp(A, B, 100, "S", b""),
            tcp(B, A, 500, "SA", b""),
            tcp(A, B, 101, "A", b""),
            tcp(A, B, 101, "A", &c_key),
            tcp(B, A, 501, "A", &s_key),
            tcp(B, A, 501 + s_key.len() as u32, "A", &s_rest),
            tcp(A, B, c_seq, "A", c_msgs),
            tcp(A, B, c_seq + c_msgs.len() as u32, "FA", b""),
        ]
    }

    /// The initiator's MSE/PE preamble in [`mse_plaintext_frames`].
    const MSE_KEY_C: usize = 442;

    /// libtorrent with encryption forced and only plaintext allowed: both sides open with an
    /// MSE/PE handshake; the responder's BitTorrent handshake follows its preamble in clear,
    /// the initiator's was inside the encrypted initial payload, so its messages in clear
    /// come with no handshake before them. A BitTorrent connection with no protocol error.
    #[test]
    fn mse_selecting_plaintext_without_the_initiators_handshake() {
        let c_msgs = msgs(&[
            Message::HaveNone,
            Message::Interested,
            Message::Request(BlockRef {
                index: 5,
                begin: 0,
                length: 16384,
            }),
        ]);
        let frames = mse_plaintext_frames(101 + MSE_KEY_C as u32, &c_msgs);
        let (rep, ev) = run(&frames);
        assert_eq!((rep.bittorrent, rep.encrypted), (1, 0));
        let c = &rep.conns[0];
        assert_eq!(c.kind, ConnKind::BitTorrent);
        assert!(c.mse);
        assert_eq!(
            [c.sides[0].protocol_errors, c.sides[1].protocol_errors],
            [0, 0],
            "{:?}",
            c.notes
        );
        assert!(c.sides[0].handshake.is_none());
        assert!(c.sides[1].handshake.is_some());
        assert_eq!(c.sides[0].messages(), 3);
        assert_eq!(c.sides[1].messages(), 2);
        let client_note = "127.0.0.1:40000 → 127.0.0.2:7001: the MSE/PE handshake (442 bytes) \
                           selected plaintext, the BitTorrent handshake inside its encrypted \
                           initial payload: messages in clear from stream offset 442";
        assert!(c.notes.iter().any(|n| n == client_note), "{:?}", c.notes);
        let words: Vec<&str> = ev.iter().map(|(_, w)| w.as_str()).collect();
        let at = words
            .iter()
            .position(|w| *w == "have none")
            .expect("have none");
        assert_eq!(
            words[at..at + 3],
            [
                "have none",
                "interested",
                "request piece 5 begin 0 length 16384"
            ],
            "{words:?}"
        );
    }

    /// The same, with the initiator's first segment in clear lost: the messages after the
    /// gap are still found, the preamble is still no protocol error, and the note does not
    /// claim a preamble length the gap hides.
    #[test]
    fn mse_selecting_plaintext_then_a_gap() {
        let lost = msgs(&[Message::HaveNone, Message::Interested]);
        let c_msgs = msgs(&[
            Message::Request(BlockRef {
                index: 5,
                begin: 0,
                length: 16384,
            }),
            Message::Request(BlockRef {
                index: 5,
                begin: 16384,
                length: 16384,
            }),
        ]);
        let after = 101 + (MSE_KEY_C + lost.len()) as u32;
        let frames = mse_plaintext_frames(after, &c_msgs);
        let (rep, _) = run(&frames);
        let c = &rep.conns[0];
        assert_eq!((rep.bittorrent, rep.encrypted), (1, 0));
        assert_eq!(c.sides[0].protocol_errors, 0, "{:?}", c.notes);
        assert_eq!(c.sides[0].counts[MessageKind::Request.slot()], 2);
        assert_eq!(c.sides[0].gaps, 1);
        let note = "127.0.0.1:40000 → 127.0.0.2:7001: the MSE/PE handshake selected plaintext, \
                    the BitTorrent handshake inside its encrypted initial payload: after a gap, \
                    messages in clear from stream offset 452";
        assert!(c.notes.iter().any(|n| n == note), "{:?}", c.notes);
    }

    #[test]
    fn refused_and_unanswered_dials_are_counted_but_not_reported() {
        const C: ([u8; 4], u16) = ([127, 0, 0, 1], 40001);
        let frames = vec![
            tcp(A, B, 100, "S", b""),
            tcp(B, A, 0, "RA", b""), // refused
            tcp(C, B, 300, "S", b""),
            tcp(C, B, 300, "S", b""), // unanswered, retransmitted
        ];
        let (rep, ev) = run(&frames);
        assert_eq!(rep.tcp_connections, 2);
        assert_eq!((rep.bittorrent, rep.empty, rep.other), (0, 0, 0));
        assert_eq!((rep.refused, rep.unanswered), (1, 1));
        let cats: Vec<(u64, Category)> = rep.unreported.iter().map(|u| (u.0, u.1)).collect();
        assert_eq!(cats, [(0, Category::Refused), (1, Category::Unanswered)]);
        assert!(rep.conns.is_empty());
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn http_tracker_on_any_port() {
        let req = b"GET /tr/announce?info_hash=%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10%11%12%13%14&peer_id=-TR3000-abcdefghijkl&port=51413&uploaded=0&downloaded=0&left=5&event=started&compact=1 HTTP/1.0\r\nHost: x\r\n\r\n";
        let body = b"d8:intervali900e5:peers0:e";
        let mut resp =
            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        resp.extend_from_slice(body);
        let frames = vec![
            tcp(A, B, 100, "S", b""),
            tcp(B, A, 500, "SA", b""),
            tcp(A, B, 101, "A", b""),
            tcp(A, B, 101, "A", &req[..30]),
            tcp(A, B, 131, "A", &req[30..]),
            tcp(B, A, 501, "A", &resp),
        ];
        let (rep, ev) = run(&frames);
        assert_eq!(rep.tracker_http, 1);
        let words: Vec<&str> = ev.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            words,
            [
                "connection opened (SYN, SYN-ACK, ACK)",
                "tracker announce event started left 5",
                "tracker response: interval 900, 0 peers"
            ]
        );
        assert_eq!(ev[1].0.frames, [4, 5]);
        assert_eq!(rep.tracker_log.len(), 2);
    }

    proptest! {
        /// Arbitrary segments (valid BitTorrent bytes, HTTP, noise) in any order, with any
        /// flags, both ways, over a few connections: no panic, and a message event always
        /// names its frames.
        #[test]
        fn arbitrary_segments_never_panic(
            segs in proptest::collection::vec(
                (0u8..3, any::<bool>(), 0u32..3000, 0u8..6, 0usize..3, 0usize..400, 1usize..200),
                0..40),
        ) {
            let mut bt = Handshake::new(Reserved::new().with_extended(), [1; 20], [2; 20]).emit().to_vec();
            bt.extend(msgs(&[
                Message::Extended { ext_id: 0, payload: b"d1:md6:ut_pexi1eee" },
                Message::Bitfield(&[0xf0]),
                Message::Piece { index: 0, begin: 0, data: &[7; 300] },
                Message::Extended { ext_id: 1, payload: b"d5:added6:\x7f\0\0\x01\x1a\xe1e" },
            ]));
            let http = b"GET /announce?info_hash=abc HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\nd8:intervali5ee".to_vec();
            let noise: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
            let sources = [bt, http, noise];
            let flags = ["S", "SA", "A", "FA", "RA", "A"];
            let frames: Vec<Vec<u8>> = segs
                .iter()
                .map(|&(conn, ab, seq, fl, src, from, len)| {
                    let a = ([127, 0, 0, 1], 40000 + u16::from(conn));
                    let b = ([127, 0, 0, 2], 6881);
                    let s = &sources[src];
                    let from = from.min(s.len());
                    let to = (from + len).min(s.len());
                    let (x, y) = if ab { (a, b) } else { (b, a) };
                    tcp(x, y, seq, flags[fl as usize], &s[from..to])
                })
                .collect();
            let (_, ev) = run(&frames);
            for (e, _) in &ev {
                if matches!(e.kind, EventKind::Message { .. } | EventKind::Handshake { .. }) {
                    prop_assert!(!e.frames.is_empty(), "{:?}", ev);
                }
            }
        }
    }
}
