//! The recorder behind `--trace DIR`: every byte bt-trace sends and receives, on every peer
//! connection and tracker exchange, written as a pcapng capture and as JSON Lines events.
//!
//! [`Recorder`] implements [`ConnObserver`] (peer connections) and [`TrackerObserver`]
//! (HTTP and UDP trackers). Those calls happen where bytes hit the socket, on the download's
//! tasks, so they only take a timestamp, copy the bytes and hand them to a dedicated writer
//! thread over a channel; they never block. The channel's memory is bounded by a byte budget:
//! a connection awaits [`ConnObserver::room`] before it reads or writes
//! more, so when the disk is slower than the network the download waits (asynchronously, no
//! worker thread is parked) and the trace is never silently incomplete. [`Recorder::finish`]
//! drains the channel, flushes both files and returns [`TraceStats`].
//!
//! On the writer thread each peer connection is a [`TcpConversation`] (SYN, SYN-ACK, ACK on
//! open; data segments; FIN on a clean close, RST on an error) and a [`ConnectionDecoder`]
//! (the analyzer's too) that turns its bytes into events and says where piece data is. Each event lists the frames that carry its bytes; the
//! frame where a message completes gets a packet comment saying what it is ("request piece 7
//! begin 16384 length 16384"). An HTTP tracker exchange becomes a TCP conversation of its
//! own, a UDP tracker packet one UDP frame.
//!
//! Options: a snap length that cuts piece data only (every message header and every other
//! message stays whole, so Wireshark still dissects every message), and a deterministic
//! mode (logical clock, ISNs hashed from the endpoints) in which the same sequence of
//! observer calls gives byte-identical files.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use super::jsonl::JsonlWriter;
use super::pcapng::{PcapngOptions, PcapngWriter};
use super::synth::{self, Frame, FrameKind, IsnMode, SynthError, TcpConversation};
use crate::event::decode::{
    decode_http_request, decode_http_response, decode_udp, ConnectionDecoder, Decoded, PeerItem,
};
use crate::event::{CloseHow, Dir, Event, EventKind, Role};
use crate::peer::conn::{ConnObserver, PeerError};
use crate::tracker::{HttpExchange, TlsExchange, TrackerObserver, UdpDatagram};
use crate::wire::message::PIECE_HEADER_LEN;

/// How long the writer thread pauses after a batch of at least [`BUSY_BATCH`] bytes before it
/// looks for more: far below what fills the queue budget at any loopback speed (1 ms is
/// 1 MiB at 1 GiB/s), and it turns one wake-up per socket read into one per millisecond.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);
/// A batch this large means data is streaming: pause before the next one.
const BUSY_BATCH: usize = 64 * 1024;

/// Bytes of connection data that may wait for the writer thread before connections wait
/// for room. Each connection may add one more read (at most 256 KiB) after it was given room.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// Timestamps of deterministic traces start here: 2024-01-01T00:00:00Z.
pub const DETERMINISTIC_EPOCH_NS: u64 = 1_704_067_200_000_000_000;

/// How to record.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// The pcapng file to write.
    pub pcapng: PathBuf,
    /// The JSON Lines file to write.
    pub jsonl: PathBuf,
    /// Keep at most this many bytes of a frame that carries piece data (like `tcpdump -s`),
    /// but never cut anything other than piece data: message headers and all other messages
    /// stay whole. The original length is recorded. `None`: full frames.
    pub snaplen: Option<u32>,
    /// Logical clock and deterministic ISNs: the same observer calls give the same files.
    pub deterministic: bool,
    /// Our listening port: a connection whose local port is this one was accepted (the peer
    /// is the TCP client); every other one was dialed by us.
    pub listen_port: Option<u16>,
    /// Bytes of connection data queued for the writer thread above which connections
    /// wait for room ([`ConnObserver::room`]).
    pub queue_bytes: usize,
    /// Write the pcapng and JSON Lines files; without, the events only go to the
    /// [`EventObserver`]s (`--live`, `--report` without `--trace`).
    pub files: bool,
}

/// Sees every event the recorder makes, in order, on the recorder's writer thread (never on
/// the runtime: it may write to stderr or a file).
pub trait EventObserver: Send {
    fn event(&mut self, e: &Event);
    /// The recording ends (after the last event).
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RecorderOptions {
    /// Files `DIR/<stem>.pcapng` and `DIR/<stem>.jsonl`, full frames, real time.
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        RecorderOptions {
            pcapng: dir.join(format!("{stem}.pcapng")),
            jsonl: dir.join(format!("{stem}.jsonl")),
            snaplen: None,
            deterministic: false,
            listen_port: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            files: true,
        }
    }

    /// No files: the events only go to observers ([`Recorder::start_observed`]).
    pub fn events_only() -> Self {
        RecorderOptions {
            pcapng: PathBuf::new(),
            jsonl: PathBuf::new(),
            files: false,
            ..RecorderOptions::in_dir(Path::new(""), "")
        }
    }
}

/// What a finished trace contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStats {
    pub pcapng: PathBuf,
    pub jsonl: PathBuf,
    /// Frames in the pcapng file.
    pub frames: u64,
    /// Size of the pcapng file.
    pub pcapng_bytes: u64,
    /// Lines in the JSON Lines file.
    pub events: u64,
    /// Size of the JSON Lines file.
    pub jsonl_bytes: u64,
    /// Application bytes recorded (sent + received, peers and trackers).
    pub payload_bytes: u64,
    /// Peer and tracker TCP connections.
    pub connections: u64,
}

/// What the observers send to the writer thread.
enum Cmd {
    Opened {
        conn: u64,
        ts: u64,
        local: SocketAddr,
        remote: SocketAddr,
    },
    Data {
        conn: u64,
        ts: u64,
        outgoing: bool,
        bytes: Vec<u8>,
    },
    Closed {
        conn: u64,
        ts: u64,
        error: Option<String>,
    },
    Note {
        conn: u64,
        ts: u64,
        text: String,
    },
    Http(Box<HttpExchange>),
    Udp(Box<UdpDatagram>),
    Tls(Box<TlsExchange>),
    Finish,
}

/// The memory bound of the channel to the writer: bytes of connection data sent and not yet
/// written. Observer calls never block; connections await [`Backlog::room`] instead.
struct Backlog {
    bytes: AtomicU64,
    limit: u64,
    /// Woken when `bytes` drops under `limit`, and when the writer stops.
    drained: tokio::sync::Notify,
    writer_gone: AtomicBool,
}

impl Backlog {
    fn new(limit: usize) -> Backlog {
        Backlog {
            bytes: AtomicU64::new(0),
            limit: limit.max(1) as u64,
            drained: tokio::sync::Notify::new(),
            writer_gone: AtomicBool::new(false),
        }
    }

    fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// The writer is done with `n` bytes.
    fn written(&self, n: usize) {
        let before = self.bytes.fetch_sub(n as u64, Ordering::AcqRel);
        if before >= self.limit && before - (n as u64) < self.limit {
            self.drained.notify_waiters();
        }
    }

    /// The writer stopped: nobody needs to wait any more.
    fn close(&self) {
        self.writer_gone.store(true, Ordering::Release);
        self.drained.notify_waiters();
    }

    async fn room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // registered before the check, so a wake-up between check and await is not lost
            drained.as_mut().enable();
            if self.bytes.load(Ordering::Acquire) < self.limit
                || self.writer_gone.load(Ordering::Acquire)
            {
                return;
            }
            drained.await;
        }
    }
}

#[cfg(test)]
mod backlog_tests {
    use super::Backlog;
    use std::sync::Arc;

    #[tokio::test(flavor = "current_thread")]
    async fn room_waits_for_the_writer_and_never_after_it_stopped() {
        let b = Arc::new(Backlog::new(10));
        b.room().await; // empty: room at once
        b.add(25);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.room().await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiter.is_finished(),
            "25 bytes queued, budget 10: must wait"
        );
        b.written(10); // still 15 queued
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        b.written(10); // 5 queued: under the budget
        waiter.await.unwrap();
        b.add(100);
        b.close();
        b.room().await; // the writer is gone: nothing to wait for
    }
}

/// Buffers for [`Cmd::Data`], handed back by the writer once their bytes are written: a
/// traced download copies each read into one of a few warm buffers instead of allocating
/// (and page-faulting) a fresh one per socket call.
#[derive(Default)]
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// Buffers kept for reuse (more are dropped): enough for the byte budget in 256 KiB reads.
    const KEEP: usize = 80;
    /// Larger buffers are not kept.
    const MAX_CAPACITY: usize = 1 << 20;

    /// A copy of `bytes`, in a reused buffer when one is free.
    fn copy(&self, bytes: &[u8]) -> Vec<u8> {
        let spare = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut v = spare.unwrap_or_default();
        v.extend_from_slice(bytes);
        v
    }

    /// Takes a buffer back.
    fn put(&self, mut v: Vec<u8>) {
        if v.capacity() > Self::MAX_CAPACITY {
            return;
        }
        v.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < Self::KEEP {
            free.push(v);
        }
    }
}

/// Closes the [`Backlog`] when the writer thread ends, however it ends (even by a panic).
struct CloseOnDrop(Arc<Backlog>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Shared {
    tx: Sender<Cmd>,
    backlog: Arc<Backlog>,
    pool: Arc<BufferPool>,
    thread: Mutex<Option<JoinHandle<io::Result<TraceStats>>>>,
    result: Mutex<Option<Result<TraceStats, String>>>,
    /// Bytes handed to the writer (for tests and progress).
    queued_bytes: AtomicU64,
    /// The two files written.
    paths: (PathBuf, PathBuf),
}

/// The trace recorder. Cheap to clone (all clones feed the same files); see the
/// [module docs](self).
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

fn now_ns() -> u64 {
    ns_of(SystemTime::now())
}

fn ns_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Creates `pcapng` and `jsonl` anew (`create_new`, so a concurrent run cannot take the same
/// names either), numbering both (`stem-2`, `stem-3`, …) until neither exists; the paths are
/// updated to the names used.
fn create_pair(pcapng: &mut PathBuf, jsonl: &mut PathBuf) -> io::Result<(File, File)> {
    let (base_p, base_j) = (pcapng.clone(), jsonl.clone());
    for n in 1u32..10_000 {
        if n > 1 {
            *pcapng = numbered(&base_p, n);
            *jsonl = numbered(&base_j, n);
        }
        let open = |p: &Path| File::options().write(true).create_new(true).open(p);
        let p = match open(pcapng) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        match open(jsonl) {
            Ok(j) => return Ok((p, j)),
            Err(e) => {
                drop(p);
                let _ = std::fs::remove_file(&*pcapng);
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: 10000 numbered traces exist already", base_p.display()),
    ))
}

/// `dir/name.ext` → `dir/name-N.ext`.
fn numbered(p: &Path, n: u32) -> PathBuf {
    let stem = p.file_stem().unwrap_or_default().to_string_lossy();
    let name = match p.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    p.with_file_name(name)
}

impl Recorder {
    /// Creates both files (and their directory) and starts the writer thread. An earlier
    /// trace is never replaced: when either file exists, the pair gets the first free number
    /// (`x.pcapng` → `x-2.pcapng`, `x-2.jsonl`); [`paths`](Self::paths) says which.
    pub fn start(opts: RecorderOptions) -> io::Result<Recorder> {
        Self::start_observed(opts, Vec::new())
    }

    /// [`start`](Self::start), with observers that see every event on the writer thread.
    pub fn start_observed(
        opts: RecorderOptions,
        observers: Vec<Box<dyn EventObserver>>,
    ) -> io::Result<Recorder> {
        let mut opts = opts;
        let (pcap_out, jsonl_out): (Box<dyn io::Write + Send>, Box<dyn io::Write + Send>) =
            if opts.files {
                for p in [&opts.pcapng, &opts.jsonl] {
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir)?;
                    }
                }
                let (p, j) = create_pair(&mut opts.pcapng, &mut opts.jsonl)?;
                (Box::new(p), Box::new(j))
            } else {
                (Box::new(io::sink()), Box::new(io::sink()))
            };
        let pcap = PcapngWriter::new(pcap_out, &PcapngOptions::default())?;
        let jsonl = JsonlWriter::new(jsonl_out);
        let (tx, rx) = mpsc::channel();
        let backlog = Arc::new(Backlog::new(opts.queue_bytes));
        let paths = (opts.pcapng.clone(), opts.jsonl.clone());
        let writer = Writer::new(pcap, jsonl, observers, opts);
        let gate = backlog.clone();
        let pool = Arc::new(BufferPool::default());
        let returns = pool.clone();
        let thread = std::thread::Builder::new()
            .name("bt-trace recorder".into())
            .spawn(move || {
                let _close = CloseOnDrop(gate.clone());
                writer.run(rx, &gate, &returns)
            })?;
        Ok(Recorder {
            shared: Arc::new(Shared {
                tx,
                backlog,
                pool,
                thread: Mutex::new(Some(thread)),
                result: Mutex::new(None),
                queued_bytes: AtomicU64::new(0),
                paths,
            }),
        })
    }

    /// The files this recorder writes: the ones asked for, or numbered ones beside them when
    /// those already existed (see [`Recorder::start`]).
    pub fn paths(&self) -> (PathBuf, PathBuf) {
        self.shared.paths.clone()
    }

    /// Queues a command; never blocks (memory is bounded by [`ConnObserver::room`]). After
    /// [`finish`](Self::finish) the writer is gone and commands are dropped.
    fn send(&self, cmd: Cmd) {
        let _ = self.shared.tx.send(cmd);
    }

    /// Stops recording: waits until everything queued is written, flushes and closes both
    /// files. Calls after the first return the same result; observer calls made after it
    /// are ignored.
    pub fn finish(&self) -> io::Result<TraceStats> {
        let mut result = self.shared.result.lock().unwrap_or_else(|e| e.into_inner());
        if result.is_none() {
            self.send(Cmd::Finish);
            let handle = self
                .shared
                .thread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let r = match handle.map(JoinHandle::join) {
                Some(Ok(r)) => r.map_err(|e| e.to_string()),
                Some(Err(_)) => Err("the recorder thread panicked".to_string()),
                None => Err("the recorder was not running".to_string()),
            };
            *result = Some(r);
        }
        match result.as_ref() {
            Some(Ok(s)) => Ok(s.clone()),
            Some(Err(e)) => Err(io::Error::other(e.clone())),
            None => Err(io::Error::other("the recorder was not running")),
        }
    }

    /// Application bytes handed to the writer so far.
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued_bytes.load(Ordering::Relaxed)
    }
}

impl ConnObserver for Recorder {
    fn opened(&self, conn: u64, local: SocketAddr, remote: SocketAddr) {
        self.send(Cmd::Opened {
            conn,
            ts: now_ns(),
            local,
            remote,
        });
    }

    fn sent(&self, conn: u64, bytes: &[u8]) {
        self.data(conn, true, bytes);
    }

    fn received(&self, conn: u64, bytes: &[u8]) {
        self.data(conn, false, bytes);
    }

    fn closed(&self, conn: u64, error: Option<&str>) {
        self.send(Cmd::Closed {
            conn,
            ts: now_ns(),
            error: error.map(str::to_string),
        });
    }

    fn note(&self, conn: u64, text: &str) {
        self.send(Cmd::Note {
            conn,
            ts: now_ns(),
            text: text.to_string(),
        });
    }

    fn room(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.shared.backlog.room())
    }
}

impl Recorder {
    fn data(&self, conn: u64, outgoing: bool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.shared
            .queued_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.shared.backlog.add(bytes.len());
        self.send(Cmd::Data {
            conn,
            ts: now_ns(),
            outgoing,
            bytes: self.shared.pool.copy(bytes),
        });
    }
}

impl TrackerObserver for Recorder {
    fn http_exchange(&mut self, ex: &HttpExchange) {
        self.send(Cmd::Http(Box::new(ex.clone())));
    }
    fn udp_datagram(&mut self, d: &UdpDatagram) {
        self.send(Cmd::Udp(Box::new(d.clone())));
    }
    fn tls_exchange(&mut self, ex: &TlsExchange) {
        self.send(Cmd::Tls(Box::new(ex.clone())));
    }
}

// ---------------------------------------------------------------------------------------------
// The writer thread

/// Frame timestamps: strictly increasing; real time, or a logical clock.
struct Clock {
    deterministic: bool,
    last: u64,
}

impl Clock {
    /// Starts a command that happened at `at` (ignored by the logical clock, which moves to
    /// the next whole millisecond instead).
    fn command(&mut self, at: u64) -> u64 {
        let t = if self.deterministic {
            (self.last / 1_000_000 + 1) * 1_000_000
        } else {
            at.max(self.last + 1)
        };
        self.last = t;
        t
    }

    /// The next frame's timestamp, not before `at`.
    fn frame(&mut self, at: u64) -> u64 {
        let step = if self.deterministic { 1_000 } else { 1 };
        let t = at.max(self.last + step);
        self.last = t;
        t
    }
}

/// A data frame of one direction: its number, timestamp and stream range.
#[derive(Debug, Clone, Copy)]
struct Carried {
    frame: u64,
    ts: u64,
    start: u64,
    end: u64,
}

/// One traced peer connection.
struct PeerConn {
    /// Wireshark's `tcp.stream` number.
    stream: u64,
    conv: TcpConversation,
    local_is_client: bool,
    dec: ConnectionDecoder,
    /// Per direction: data frames not yet wholly inside decoded items.
    carried: [VecDeque<Carried>; 2],
}

impl PeerConn {
    fn endpoints(&self, dir: Dir) -> (SocketAddr, SocketAddr) {
        let (c, s) = (self.conv.client(), self.conv.server());
        match dir {
            Dir::C2s => (c, s),
            Dir::S2c => (s, c),
        }
    }
}

/// The files, the clock and the counters.
struct Out {
    pcap: PcapngWriter<Box<dyn io::Write + Send>>,
    jsonl: JsonlWriter<Box<dyn io::Write + Send>>,
    observers: Vec<Box<dyn EventObserver>>,
    clock: Clock,
    snaplen: Option<u32>,
    payload_bytes: u64,
    connections: u64,
}

impl Out {
    fn event(&mut self, e: &Event) -> io::Result<()> {
        for o in &mut self.observers {
            o.event(e);
        }
        self.jsonl.write(e)
    }

    /// Writes a control frame (SYN, ACK, FIN, RST) at the next timestamp after `at`.
    fn control(&mut self, at: u64, f: &Frame<'_>, comment: Option<&str>) -> io::Result<Carried> {
        let ts = self.clock.frame(at);
        let frame = self.pcap.write_frame(ts, f, comment)?;
        Ok(Carried {
            frame,
            ts,
            start: 0,
            end: 0,
        })
    }

    /// Writes the frames of `bytes` sent in `dir` on `conv`: a comment on each frame where
    /// an item of `items` completes, piece data cut to the snap length (ranges in
    /// `pieces`), and every data frame remembered in `carried`.
    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        conv: &mut TcpConversation,
        dir: Dir,
        bytes: &[u8],
        at: u64,
        items: &[Decoded],
        pieces: &[(u64, u64)],
        carried: &mut VecDeque<Carried>,
    ) -> Result<(), SynthError> {
        let base = conv.stream_len(dir.from_client());
        let Out {
            pcap,
            clock,
            snaplen,
            ..
        } = self;
        let mut next_item = 0;
        let mut comment = String::new();
        conv.data(dir.from_client(), bytes, |f| {
            let ts = clock.frame(at);
            if f.kind != FrameKind::Data {
                pcap.write_frame(ts, f, None)?;
                return Ok(());
            }
            let start = f.stream_offset;
            let end = start + f.payload.len() as u64;
            comment.clear();
            while let Some(item) = items.get(next_item) {
                if anchor(item, base) > end {
                    break;
                }
                if !comment.is_empty() {
                    comment.push_str("; ");
                }
                comment.push_str(&item.words);
                next_item += 1;
            }
            let keep = match snaplen {
                Some(n) => keep_len(*n, f.headers.len(), start, end, pieces),
                None => f.payload.len(),
            };
            let comment = (!comment.is_empty()).then_some(comment.as_str());
            let frame = if keep >= f.payload.len() {
                pcap.write_frame(ts, f, comment)?
            } else {
                pcap.write_frame_keep(ts, f, keep, comment)?
            };
            carried.push_back(Carried {
                frame,
                ts,
                start,
                end,
            });
            Ok(())
        })
    }

    /// Writes the events of `items` (sent in `dir` on the connection `stream` between
    /// `src` and `dst`), each with the frames of `carried` that hold its bytes.
    fn item_events(
        &mut self,
        stream: u64,
        (src, dst): (SocketAddr, SocketAddr),
        dir: Dir,
        items: &mut Vec<Decoded>,
        carried: &VecDeque<Carried>,
    ) -> io::Result<()> {
        for item in items.drain(..) {
            let (lo, hi) = (item.offset, item.end().max(item.offset + 1));
            let first = carried.partition_point(|c| c.end <= lo);
            let n = carried.range(first..).take_while(|c| c.start < hi).count();
            let frames = carried.range(first..first + n);
            let ts = frames.clone().next_back().map_or(self.clock.last, |c| c.ts);
            let mut e = Event::new(ts, item.kind);
            e.conn = Some(stream);
            e.src = Some(src);
            e.dst = Some(dst);
            e.dir = Some(dir);
            e.frames = frames.map(|c| c.frame).collect();
            self.event(&e)?;
        }
        Ok(())
    }
}

/// One past the stream offset of the byte whose frame gets an item's comment: its last byte
/// (for a zero-length error, its first), and never before `base`, the first byte at hand.
fn anchor(item: &Decoded, base: u64) -> u64 {
    item.end().max(item.offset + 1).max(base + 1)
}

/// How many payload bytes of a frame covering stream bytes `start..end` to keep under snap
/// length `snaplen` (whole frame bytes): everything up to the last byte that is not piece
/// data, and at least what the snap length allows.
fn keep_len(snaplen: u32, headers: usize, start: u64, end: u64, pieces: &[(u64, u64)]) -> usize {
    let payload = (end - start) as usize;
    let allowed = (snaplen as usize).saturating_sub(headers);
    // Piece data ranges are sorted; find the one holding the frame's last byte, if any.
    let i = pieces.partition_point(|&(_, e)| e < end);
    let needed_end = match pieces.get(i) {
        Some(&(s, e)) if s < end && e >= end => s.max(start),
        _ => end,
    };
    allowed.max((needed_end - start) as usize).min(payload)
}

/// The writer thread's state.
struct Writer {
    out: Out,
    deterministic: bool,
    listen_port: Option<u16>,
    conns: HashMap<u64, PeerConn>,
    /// Connections that are the other end of a traced one (bt-trace connected to itself):
    /// their bytes are already in the trace, so they are ignored.
    mirrors: std::collections::HashSet<u64>,
    next_tcp_stream: u64,
    udp_streams: HashMap<(SocketAddr, SocketAddr), u64>,
    paths: (PathBuf, PathBuf),
    items: Vec<Decoded>,
    pieces: Vec<(u64, u64)>,
}

impl Writer {
    fn new(
        pcap: PcapngWriter<Box<dyn io::Write + Send>>,
        jsonl: JsonlWriter<Box<dyn io::Write + Send>>,
        observers: Vec<Box<dyn EventObserver>>,
        opts: RecorderOptions,
    ) -> Self {
        Writer {
            out: Out {
                pcap,
                jsonl,
                observers,
                clock: Clock {
                    deterministic: opts.deterministic,
                    last: if opts.deterministic {
                        DETERMINISTIC_EPOCH_NS
                    } else {
                        0
                    },
                },
                snaplen: opts.snaplen.filter(|&n| n > 0),
                payload_bytes: 0,
                connections: 0,
            },
            deterministic: opts.deterministic,
            listen_port: opts.listen_port,
            conns: HashMap::new(),
            mirrors: Default::default(),
            next_tcp_stream: 0,
            udp_streams: HashMap::new(),
            paths: (opts.pcapng, opts.jsonl),
            items: Vec::new(),
            pieces: Vec::new(),
        }
    }

    /// Handles commands until `Finish` (or until every sender is gone), then closes the
    /// files. After a write error the rest of the commands are drained and dropped, so that
    /// no connection waits for room forever; the error is returned.
    fn run(
        mut self,
        rx: Receiver<Cmd>,
        backlog: &Backlog,
        pool: &BufferPool,
    ) -> io::Result<TraceStats> {
        let mut error: Option<io::Error> = None;
        let mut busy = false;
        'run: loop {
            if busy {
                // Let a busy connection's data pile up for a moment: a sender wakes this
                // thread only when it is parked in `recv`, and at hundreds of MiB/s a wake-up
                // per socket read costs more CPU than the frames do.
                std::thread::sleep(BATCH_PAUSE);
            }
            let Ok(mut cmd) = rx.recv() else { break };
            let mut batch = 0;
            loop {
                if matches!(cmd, Cmd::Finish) {
                    break 'run;
                }
                let data_len = match &cmd {
                    Cmd::Data { bytes, .. } => bytes.len(),
                    _ => 0,
                };
                if error.is_none() {
                    if let Err(e) = self.handle(cmd, pool) {
                        error = Some(e);
                    }
                }
                backlog.written(data_len);
                batch += data_len;
                match rx.try_recv() {
                    Ok(next) => cmd = next,
                    Err(_) => break,
                }
            }
            busy = batch >= BUSY_BATCH;
        }
        // `rx` is dropped here: later observer calls fail to send and are ignored.
        if let Some(e) = error {
            return Err(e);
        }
        self.close()
    }

    fn close(mut self) -> io::Result<TraceStats> {
        let mut open: Vec<u64> = self.conns.values().map(|c| c.stream).collect();
        open.sort_unstable();
        for stream in open {
            let mut e = Event::new(
                self.out.clock.last,
                EventKind::Note {
                    text: "the trace ended while the connection was open".into(),
                },
            );
            e.conn = Some(stream);
            self.out.event(&e)?;
        }
        let frames = self.out.pcap.frames();
        let pcapng_bytes = self.out.pcap.bytes_written();
        let events = self.out.jsonl.events();
        let jsonl_bytes = self.out.jsonl.bytes_written();
        // Flushed to the OS, not synced to the disk: an fsync of a big trace would make
        // every traced command wait for the disk, for no benefit to the reader.
        self.out.pcap.finish()?;
        self.out.jsonl.finish()?;
        for o in &mut self.out.observers {
            o.finish()?;
        }
        Ok(TraceStats {
            pcapng: self.paths.0,
            jsonl: self.paths.1,
            frames,
            pcapng_bytes,
            events,
            jsonl_bytes,
            payload_bytes: self.out.payload_bytes,
            connections: self.out.connections,
        })
    }

    fn handle(&mut self, cmd: Cmd, pool: &BufferPool) -> io::Result<()> {
        match cmd {
            Cmd::Opened {
                conn,
                ts,
                local,
                remote,
            } => self.opened(conn, ts, local, remote),
            Cmd::Data {
                conn,
                ts,
                outgoing,
                bytes,
            } => {
                let r = self.data(conn, ts, outgoing, &bytes);
                pool.put(bytes);
                r
            }
            Cmd::Closed { conn, ts, error } => self.closed(conn, ts, error),
            Cmd::Note { conn, ts, text } => {
                let at = self.out.clock.command(ts);
                let mut e = Event::new(at, EventKind::Note { text });
                e.conn = self.conns.get(&conn).map(|c| c.stream);
                self.out.event(&e)
            }
            Cmd::Http(ex) => self.http(&ex),
            Cmd::Udp(d) => self.udp(&d),
            Cmd::Tls(ex) => {
                let at = self.out.clock.command(ns_of(ex.finished));
                let mut e = Event::new(
                    at,
                    EventKind::TrackerHttps {
                        url: ex.url.clone(),
                        status: ex.status,
                        response_len: ex.response_len as u64,
                    },
                );
                e.dst = ex.remote;
                self.out.event(&e)
            }
            Cmd::Finish => Ok(()),
        }
    }

    /// A new TCP conversation: its stream number and ISNs.
    fn conversation(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
    ) -> Result<(u64, TcpConversation), SynthError> {
        let stream = self.next_tcp_stream;
        let mode = if self.deterministic {
            IsnMode::Deterministic { salt: stream }
        } else {
            IsnMode::Random
        };
        let conv = TcpConversation::with_isn_mode(client, server, mode)?;
        self.next_tcp_stream += 1;
        self.out.connections += 1;
        Ok((stream, conv))
    }

    /// Writes the three-way handshake and the `conn_opened` event.
    fn open(
        &mut self,
        stream: u64,
        conv: &mut TcpConversation,
        at: u64,
        local: Role,
    ) -> io::Result<()> {
        let comment = match local {
            Role::Client => format!("bt-trace connects to {}", conv.server()),
            Role::Server => format!("{} connects to bt-trace", conv.client()),
        };
        let mut frames = Vec::new();
        let out = &mut self.out;
        conv.open(|f| {
            let c = (f.kind == FrameKind::Syn).then_some(comment.as_str());
            frames.push(out.control(at, f, c)?);
            Ok(())
        })
        .map_err(synth_io)?;
        let mut e = Event::new(
            frames.first().map_or(at, |c| c.ts),
            EventKind::ConnOpened { local: Some(local) },
        );
        e.conn = Some(stream);
        e.src = Some(conv.client());
        e.dst = Some(conv.server());
        e.frames = frames.iter().map(|c| c.frame).collect();
        self.out.event(&e)
    }

    /// Writes FIN or RST frames and the `conn_closed` event.
    fn close_conv(
        &mut self,
        stream: u64,
        conv: &mut TcpConversation,
        at: u64,
        how: CloseHow,
        closer_is_client: bool,
        reason: Option<String>,
    ) -> io::Result<()> {
        if !conv.is_open() {
            return Ok(());
        }
        let mut frames = Vec::new();
        let out = &mut self.out;
        let mut first = true;
        let mut sink = |f: &Frame<'_>| {
            let c = if first { reason.as_deref() } else { None };
            first = false;
            frames.push(out.control(at, f, c)?);
            Ok(())
        };
        match how {
            CloseHow::Fin => conv.close_fin(closer_is_client, &mut sink),
            CloseHow::Rst => conv.reset(closer_is_client, &mut sink),
        }
        .map_err(synth_io)?;
        let (src, dst) = if closer_is_client {
            (conv.client(), conv.server())
        } else {
            (conv.server(), conv.client())
        };
        let mut e = Event::new(
            frames.first().map_or(at, |c| c.ts),
            EventKind::ConnClosed { how, reason },
        );
        e.conn = Some(stream);
        e.src = Some(src);
        e.dst = Some(dst);
        e.frames = frames.iter().map(|c| c.frame).collect();
        self.out.event(&e)
    }

    fn opened(
        &mut self,
        conn: u64,
        at: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<()> {
        let at = self.out.clock.command(at);
        if let Some(mut old) = self.conns.remove(&conn) {
            let reason = Some("connection id reused before it was closed".to_string());
            let client = old.local_is_client;
            self.close_conv(old.stream, &mut old.conv, at, CloseHow::Rst, client, reason)?;
        }
        self.mirrors.remove(&conn);
        let local_is_client = self.listen_port != Some(local.port());
        let (client, server) = if local_is_client {
            (local, remote)
        } else {
            (remote, local)
        };
        // bt-trace connected to itself: both ends report the same TCP connection. Trace it
        // once, from the end that reported first.
        let twin = self
            .conns
            .values()
            .find(|c| c.conv.client() == client && c.conv.server() == server)
            .map(|c| c.stream);
        if let Some(stream) = twin {
            self.mirrors.insert(conn);
            let mut e = Event::new(
                at,
                EventKind::Note {
                    text: "bt-trace connected to itself: this connection is traced once, \
                           from the end that opened first"
                        .into(),
                },
            );
            e.conn = Some(stream);
            return self.out.event(&e);
        }
        let (stream, mut conv) = match self.conversation(client, server) {
            Ok(x) => x,
            Err(err) => {
                let text = format!("connection {local} <-> {remote} not traced: {err}");
                return self.out.event(&Event::new(at, EventKind::Note { text }));
            }
        };
        let role = if local_is_client {
            Role::Client
        } else {
            Role::Server
        };
        self.open(stream, &mut conv, at, role)?;
        self.conns.insert(
            conn,
            PeerConn {
                stream,
                conv,
                local_is_client,
                dec: ConnectionDecoder::new(),
                carried: [VecDeque::new(), VecDeque::new()],
            },
        );
        Ok(())
    }

    fn data(&mut self, conn: u64, at: u64, outgoing: bool, bytes: &[u8]) -> io::Result<()> {
        let at = self.out.clock.command(at);
        let Some(pc) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        self.out.payload_bytes += bytes.len() as u64;
        let dir = if outgoing == pc.local_is_client {
            Dir::C2s
        } else {
            Dir::S2c
        };
        let d = dir.index();
        // One pass of the decoder gives the events and, for the snap length, where piece
        // data is.
        self.items.clear();
        self.pieces.clear();
        let (items, pieces) = (&mut self.items, &mut self.pieces);
        let cutting = self.out.snaplen.is_some();
        pc.dec.push(dir, bytes, &mut |item| match item {
            PeerItem::PieceData { offset, data, .. } if cutting => {
                pieces.push((offset, offset + data.len() as u64));
            }
            _ => items.extend(item.to_decoded()),
        });
        // With a snap length, every piece message starts a new segment and its data ends
        // one, so that each message begins a frame: Wireshark cannot reassemble across cut
        // segments, but it dissects a message that starts a frame.
        let base = pc.conv.stream_len(dir.from_client());
        let stop = base + bytes.len() as u64;
        let mut splits = vec![base];
        for &(s, e) in &self.pieces {
            splits.push(s.saturating_sub(PIECE_HEADER_LEN as u64));
            splits.push(e);
        }
        splits.push(stop);
        splits.retain(|&x| x >= base && x <= stop);
        splits.sort_unstable();
        splits.dedup();
        let mut first_item = 0;
        for w in splits.windows(2) {
            let (g0, g1) = (w[0], w[1]);
            let n = self.items[first_item..]
                .iter()
                .take_while(|d| anchor(d, base) <= g1)
                .count();
            let group = &self.items[first_item..first_item + n];
            first_item += n;
            let slice = &bytes[(g0 - base) as usize..(g1 - base) as usize];
            self.out
                .data(
                    &mut pc.conv,
                    dir,
                    slice,
                    at,
                    group,
                    &self.pieces,
                    &mut pc.carried[d],
                )
                .map_err(synth_io)?;
        }
        let ends = pc.endpoints(dir);
        self.out
            .item_events(pc.stream, ends, dir, &mut self.items, &pc.carried[d])?;
        // Frames wholly before the first undecoded byte are no longer needed.
        let keep_from = pc.dec.pending_offset(dir);
        let carried = &mut pc.carried[d];
        while carried.front().is_some_and(|c| c.end <= keep_from) {
            carried.pop_front();
        }
        Ok(())
    }

    fn closed(&mut self, conn: u64, at: u64, error: Option<String>) -> io::Result<()> {
        let at = self.out.clock.command(at);
        if self.mirrors.remove(&conn) {
            return Ok(());
        }
        let Some(mut pc) = self.conns.remove(&conn) else {
            return Ok(());
        };
        let peer_closed = PeerError::Closed.to_string();
        let (how, closer_is_client) = match &error {
            None => (CloseHow::Fin, pc.local_is_client),
            Some(e) if *e == peer_closed => (CloseHow::Fin, !pc.local_is_client),
            Some(_) => (CloseHow::Rst, pc.local_is_client),
        };
        self.close_conv(pc.stream, &mut pc.conv, at, how, closer_is_client, error)
    }

    fn http(&mut self, ex: &HttpExchange) -> io::Result<()> {
        let at = self.out.clock.command(ns_of(ex.started));
        let (stream, mut conv) = match self.conversation(ex.local, ex.remote) {
            Ok(x) => x,
            Err(err) => {
                let text = format!("tracker exchange with {} not traced: {err}", ex.remote);
                return self.out.event(&Event::new(at, EventKind::Note { text }));
            }
        };
        self.open(stream, &mut conv, at, Role::Client)?;
        self.out.payload_bytes += (ex.request.len() + ex.response.len()) as u64;
        let mut carried = VecDeque::new();
        // The request.
        self.items.clear();
        self.items.extend(decode_http_request(&ex.request));
        let scrape = self.items.iter().any(|d| {
            matches!(&d.kind, EventKind::TrackerHttpRequest { target, .. }
                if target.split('?').next().unwrap_or_default().contains("/scrape"))
        });
        self.out
            .data(
                &mut conv,
                Dir::C2s,
                &ex.request,
                at,
                &self.items,
                &[],
                &mut carried,
            )
            .map_err(synth_io)?;
        let ends = (conv.client(), conv.server());
        self.out
            .item_events(stream, ends, Dir::C2s, &mut self.items, &carried)?;
        // The response.
        let at = self.out.clock.command(ns_of(ex.finished));
        carried.clear();
        self.items
            .extend(decode_http_response(&ex.response, true, scrape));
        self.out
            .data(
                &mut conv,
                Dir::S2c,
                &ex.response,
                at,
                &self.items,
                &[],
                &mut carried,
            )
            .map_err(synth_io)?;
        let ends = (conv.server(), conv.client());
        self.out
            .item_events(stream, ends, Dir::S2c, &mut self.items, &carried)?;
        let (how, reason) = if ex.complete {
            (CloseHow::Fin, None)
        } else {
            (
                CloseHow::Rst,
                Some("tracker response incomplete".to_string()),
            )
        };
        self.close_conv(stream, &mut conv, at, how, true, reason)
    }

    fn udp(&mut self, d: &UdpDatagram) -> io::Result<()> {
        let at = self.out.clock.command(ns_of(d.at));
        let next = self.udp_streams.len() as u64;
        let stream = *self.udp_streams.entry((d.local, d.remote)).or_insert(next);
        let (src, dst) = if d.outgoing {
            (d.local, d.remote)
        } else {
            (d.remote, d.local)
        };
        let ipv6 = d.remote.ip().to_canonical().is_ipv6();
        let (kind, words) = decode_udp(&d.bytes, d.outgoing, ipv6);
        self.out.payload_bytes += d.bytes.len() as u64;
        let mut buf = Vec::new();
        let mut e = Event::new(at, kind);
        match synth::udp_datagram(&mut buf, src, dst, &d.bytes) {
            Ok(f) => {
                let c = self.out.control(at, &f, Some(&words))?;
                e.ts = c.ts;
                e.frames = vec![c.frame];
            }
            Err(err) => {
                let text = format!("UDP datagram {src} -> {dst} not traced: {err}");
                self.out.event(&Event::new(at, EventKind::Note { text }))?;
            }
        }
        e.conn = Some(stream);
        e.src = Some(src);
        e.dst = Some(dst);
        self.out.event(&e)
    }
}

/// A synthesis error as an I/O error (a sink error stays what it was).
fn synth_io(e: SynthError) -> io::Error {
    match e {
        SynthError::Sink(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Msg;
    use crate::trace::jsonl::read_events;
    use crate::wire::{BlockRef, Handshake, Message, Reserved};

    fn hs(peer: &[u8; 20]) -> Vec<u8> {
        Handshake::new(Reserved::new().with_extended().with_fast(), [9; 20], *peer)
            .emit()
            .to_vec()
    }

    fn piece(index: u32, begin: u32, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + index as usize) as u8).collect();
        Message::Piece {
            index,
            begin,
            data: &data,
        }
        .to_vec()
    }

    /// A download's worth of observer calls: a tracker announce, one peer connection that
    /// ends cleanly, one that is reset, a UDP tracker packet.
    fn script(rec: &Recorder) {
        let mut t = rec.clone();
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let tracker: SocketAddr = "127.0.0.1:6969".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:51413".parse().unwrap();
        let body = b"d8:intervali1800e5:peers6:\x7f\x00\x00\x01\xc8\xd5e";
        let mut resp =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        resp.extend_from_slice(body);
        t.http_exchange(&HttpExchange {
            url: "http://127.0.0.1:6969/announce".into(),
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: tracker,
            request: b"GET /announce?info_hash=%09%09%09%09%09%09%09%09%09%09%09%09%09%09%09%09%09%09%09%09&peer_id=-bt0100-aaaaaaaaaaaa&port=6881&uploaded=0&downloaded=0&left=40000&compact=1&event=started HTTP/1.1\r\nHost: 127.0.0.1:6969\r\n\r\n".to_vec(),
            response: resp,
            started: SystemTime::now(),
            finished: SystemTime::now(),
            complete: true,
        });

        rec.opened(7, local, peer);
        rec.sent(7, &hs(b"-bt0100-aaaaaaaaaaaa"));
        let mut theirs = hs(b"-TR3000-bbbbbbbbbbbb");
        theirs.extend(Message::Bitfield(&[0xc0]).to_vec());
        rec.received(7, &theirs[..30]);
        rec.received(7, &theirs[30..]);
        let mut out = Message::Extended {
            ext_id: 0,
            payload: b"d1:md11:ut_metadatai1eee",
        }
        .to_vec();
        out.extend(Message::Interested.to_vec());
        rec.sent(7, &out);
        rec.received(7, &Message::Unchoke.to_vec());
        let mut reqs = Vec::new();
        for b in 0..3 {
            Message::emit_request(&mut reqs, BlockRef::new(0, b * 16384, 16384));
        }
        rec.sent(7, &reqs);
        // Three pieces in odd chunks: 20000 bytes, then the rest in one read.
        let mut pieces = piece(0, 0, 16384);
        pieces.extend(piece(0, 16384, 16384));
        pieces.extend(piece(0, 32768, 7232));
        rec.received(7, &pieces[..20000]);
        rec.received(7, &pieces[20000..]);
        rec.sent(7, &Message::Have { index: 0 }.to_vec());
        rec.sent(7, &[0, 0, 0, 0]);
        rec.note(7, "download complete");
        rec.closed(7, None);

        // A peer that sends garbage: protocol error, reset.
        let other: SocketAddr = "127.0.0.1:6882".parse().unwrap();
        rec.opened(8, "127.0.0.1:50001".parse().unwrap(), other);
        rec.sent(8, &hs(b"-bt0100-aaaaaaaaaaaa"));
        rec.received(8, &[0x42; 40]);
        rec.closed(
            8,
            Some("protocol error: not a BitTorrent handshake: expected 0x13"),
        );
        // A peer that closes first.
        rec.opened(9, "127.0.0.1:50002".parse().unwrap(), other);
        rec.closed(9, Some(&PeerError::Closed.to_string()));

        let mut connect = 0x41727101980u64.to_be_bytes().to_vec();
        connect.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3, 4]);
        t.udp_datagram(&UdpDatagram {
            local: "127.0.0.1:40001".parse().unwrap(),
            remote: tracker,
            outgoing: true,
            bytes: connect,
            at: SystemTime::now(),
        });
    }

    fn record(dir: &Path, name: &str, snaplen: Option<u32>, deterministic: bool) -> TraceStats {
        let opts = RecorderOptions {
            snaplen,
            deterministic,
            ..RecorderOptions::in_dir(dir, name)
        };
        let rec = Recorder::start(opts).unwrap();
        script(&rec);
        let stats = rec.finish().unwrap();
        assert_eq!(rec.finish().unwrap(), stats, "finish is idempotent");
        rec.sent(7, b"after the end"); // ignored, no panic
        stats
    }

    #[test]
    fn scripted_calls_give_events_with_frames() {
        let dir = tempfile::tempdir().unwrap();
        let stats = record(dir.path(), "t", None, false);
        if let Some(keep) = std::env::var_os("BT_TRACE_KEEP_SCRIPT") {
            // To look at it: BT_TRACE_KEEP_SCRIPT=/tmp/s cargo test --lib scripted_calls
            std::fs::copy(&stats.pcapng, format!("{}.pcapng", keep.to_string_lossy())).unwrap();
            std::fs::copy(&stats.jsonl, format!("{}.jsonl", keep.to_string_lossy())).unwrap();
        }
        let events =
            read_events(std::io::BufReader::new(File::open(&stats.jsonl).unwrap())).unwrap();
        assert_eq!(events.len() as u64, stats.events);
        assert_eq!(stats.connections, 4);
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Message { msg, .. } => format!("{:?}", msg.id()),
                k => serde_json::to_value(k).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            })
            .collect();
        let want = [
            "conn_opened",
            "tracker_http_request",
            "tracker_http_response",
            "conn_closed",
            "conn_opened",
            "handshake",
            "handshake",
            "Some(5)",
            "Some(20)",
            "Some(2)",
            "Some(1)",
            "Some(6)",
            "Some(6)",
            "Some(6)",
            "Some(7)",
            "Some(7)",
            "Some(7)",
            "Some(4)",
            "None",
            "note",
            "conn_closed",
            "conn_opened",
            "handshake",
            "protocol_error",
            "conn_closed",
            "conn_opened",
            "conn_closed",
            "tracker_udp",
        ];
        assert_eq!(kinds, want);
        // Stream numbers as Wireshark counts them: tracker 0, peers 1, 2, 3; UDP 0.
        let conns: Vec<Option<u64>> = events.iter().map(|e| e.conn).collect();
        assert_eq!(conns[0], Some(0));
        assert_eq!(conns[4], Some(1));
        assert_eq!(conns[21], Some(2));
        assert_eq!(conns[27], Some(0));
        // Every event but the note has frames, increasing; timestamps never go back.
        let mut last_ts = 0;
        for e in &events {
            assert!(e.ts >= last_ts);
            last_ts = e.ts;
            if !matches!(e.kind, EventKind::Note { .. }) {
                assert!(!e.frames.is_empty(), "{e:?}");
                assert!(e.frames.windows(2).all(|w| w[0] < w[1]));
                assert!(*e.frames.last().unwrap() <= stats.frames);
            }
        }
        // A 16 KiB piece spans 12 frames at MSS 1460 (here: split over two reads).
        let pieces: Vec<&Event> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Message {
                        msg: Msg::Piece { .. },
                        ..
                    }
                )
            })
            .collect();
        assert!(pieces[0].frames.len() >= 12, "{:?}", pieces[0].frames);
        assert_eq!(pieces[0].dir, Some(Dir::S2c));
        // The second piece starts in the frame where the first ends: they share it.
        assert_eq!(pieces[0].frames.last(), pieces[1].frames.first());
        // Closes: clean FIN by us, RST by us with the reason, FIN by the peer.
        let closes: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ConnClosed { .. }))
            .collect();
        assert!(matches!(
            closes[1].kind,
            EventKind::ConnClosed {
                how: CloseHow::Fin,
                reason: None
            }
        ));
        assert_eq!(closes[1].frames.len(), 3);
        assert!(matches!(
            &closes[2].kind,
            EventKind::ConnClosed { how: CloseHow::Rst, reason: Some(r) } if r.starts_with("protocol error")
        ));
        assert_eq!(closes[3].src, Some("127.0.0.1:6882".parse().unwrap()));
    }

    #[test]
    fn deterministic_mode_gives_identical_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = record(dir.path(), "a", None, true);
        let b = record(dir.path(), "b", None, true);
        assert_eq!(
            std::fs::read(&a.pcapng).unwrap(),
            std::fs::read(&b.pcapng).unwrap()
        );
        assert_eq!(
            std::fs::read(&a.jsonl).unwrap(),
            std::fs::read(&b.jsonl).unwrap()
        );
        // Real time differs (random ISNs and clock).
        let c = record(dir.path(), "c", None, false);
        assert_ne!(
            std::fs::read(&a.pcapng).unwrap(),
            std::fs::read(&c.pcapng).unwrap()
        );
        let first =
            read_events(std::io::BufReader::new(File::open(&a.jsonl).unwrap())).unwrap()[0].ts;
        assert_eq!(first, DETERMINISTIC_EPOCH_NS + 1_000_000 + 1_000);
    }

    #[test]
    fn snaplen_cuts_piece_data_only() {
        let dir = tempfile::tempdir().unwrap();
        let full = record(dir.path(), "full", None, true);
        let cut = record(dir.path(), "cut", Some(96), true);
        assert!(cut.pcapng_bytes * 3 < full.pcapng_bytes);
        // The same events; only frames differ (each piece message starts a segment).
        let read = |p: &Path| {
            let mut v = read_events(std::io::BufReader::new(File::open(p).unwrap())).unwrap();
            for e in &mut v {
                e.frames.clear();
                e.ts = 0;
            }
            v
        };
        assert_eq!(read(&full.jsonl), read(&cut.jsonl));
        // Every piece event's first frame starts with the piece's length prefix.
        let events = read_events(std::io::BufReader::new(File::open(&cut.jsonl).unwrap())).unwrap();
        let mut starts = Vec::new();
        for e in &events {
            if let EventKind::Message {
                msg: Msg::Piece { .. },
                offset,
                ..
            } = e.kind
            {
                starts.push((e.frames[0], offset));
            }
        }
        assert_eq!(starts.len(), 3);
        let bytes = std::fs::read(&cut.pcapng).unwrap();
        let mut r = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
        let mut n = 0;
        let mut seen = 0;
        while let Some(b) = r.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = b.unwrap() {
                n += 1;
                if let Some(&(_, _)) = starts.iter().find(|(f, _)| *f == n) {
                    // Ethernet 14 + IPv4 20 + TCP 20, then `<len = 16393 or 7241><7>`.
                    assert_eq!(p.data[54 + 4], 7, "frame {n}");
                    assert!(p.data.len() <= 96);
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 3);
    }

    /// bt-trace dialing its own listener: both ends report the connection; it is traced once.
    #[test]
    fn a_connection_to_itself_is_traced_once() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RecorderOptions {
            listen_port: Some(6881),
            deterministic: true,
            ..RecorderOptions::in_dir(dir.path(), "self")
        };
        let rec = Recorder::start(opts).unwrap();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:6881".parse().unwrap(),
        );
        let ours = hs(b"-bt0100-aaaaaaaaaaaa");
        rec.opened(1, a, b); // we dial
        rec.opened(2, b, a); // we accept
        rec.sent(1, &ours);
        rec.received(2, &ours);
        rec.sent(2, &ours);
        rec.received(1, &ours);
        rec.closed(2, Some("connected to ourselves"));
        rec.closed(1, Some("connected to ourselves"));
        let stats = rec.finish().unwrap();
        assert_eq!(stats.connections, 1);
        let events =
            read_events(std::io::BufReader::new(File::open(&stats.jsonl).unwrap())).unwrap();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e.kind {
                EventKind::ConnOpened { .. } => "opened",
                EventKind::Note { .. } => "note",
                EventKind::Handshake { .. } => "handshake",
                EventKind::ConnClosed { .. } => "closed",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["opened", "note", "handshake", "handshake", "closed"]
        );
        assert!(events.iter().all(|e| e.conn == Some(0)));
    }

    #[test]
    fn keep_len_keeps_everything_but_trailing_piece_data() {
        let pieces = [(113, 16497)];
        // A frame that is all piece data: only the snap length.
        assert_eq!(keep_len(96, 54, 1000, 2460, &pieces), 42);
        // A frame whose tail is piece data: up to the data's start, or the snap length.
        assert_eq!(keep_len(96, 54, 100, 1560, &pieces), 42);
        assert_eq!(keep_len(54, 54, 100, 1560, &pieces), 13);
        assert_eq!(keep_len(54, 54, 1000, 2460, &pieces), 0);
        // A frame that ends after the piece: everything.
        assert_eq!(keep_len(96, 54, 16000, 16600, &pieces), 600);
    }

    #[test]
    fn a_second_run_never_replaces_the_first_runs_trace() {
        let dir = tempfile::tempdir().unwrap();
        let opts = || RecorderOptions::in_dir(dir.path(), "download-x");
        let first = Recorder::start(opts()).unwrap();
        let first_stats = first.finish().unwrap();
        let before = std::fs::read(&first_stats.pcapng).unwrap();
        // A stray JSONL of the second name: the pair moves on to the third.
        std::fs::write(dir.path().join("download-x-2.jsonl"), b"keep").unwrap();
        let second = Recorder::start(opts()).unwrap();
        let (p, j) = second.paths();
        assert_eq!(p, dir.path().join("download-x-3.pcapng"));
        assert_eq!(j, dir.path().join("download-x-3.jsonl"));
        assert!(!dir.path().join("download-x-2.pcapng").exists());
        second.finish().unwrap();
        assert_eq!(std::fs::read(&first_stats.pcapng).unwrap(), before);
        assert_eq!(
            std::fs::read(dir.path().join("download-x-2.jsonl")).unwrap(),
            b"keep"
        );
    }
}
