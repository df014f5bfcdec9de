//! A load generator for `bt-trace seed`: many leechers (and some abusive ones) at once on
//! loopback, speaking the peer wire protocol through bt-trace's own codec (`bt_trace::wire`).
//!
//! Shared by the test (`tests/it/load.rs`) and the benchmark (`examples/load.rs`, run by
//! `bench/load.sh`); each includes this file as a module and uses the same [`run`]. Blocking
//! sockets, one thread per connection (a few hundred threads with small stacks): nothing here
//! shares a runtime with the seeder, which is always the real binary in its own process.
//!
//! An honest leecher handshakes (fast extension), sends `interested`, waits for the seed's
//! `have all`/bitfield and for `unchoke`, keeps [`DEPTH`] requests in flight, re-requests what
//! is rejected or dropped by a `choke`, checks every piece's SHA-1 against the torrent and
//! hangs up once it has all of them. An abuser ([`Abuse`]) misbehaves in one way and waits for
//! the seeder to close its connection.
//!
//! It never starts or stops the seeder: its callers do (through the test harness or the
//! benchmark's own `Command`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bt_trace::wire::{BlockRef, Handshake, Message, Reserved, WireError, HANDSHAKE_LEN};
use sha1::{Digest, Sha1};

/// Block size every leecher requests (what all current clients use).
pub const BLOCK: u32 = 16 * 1024;
/// Requests an honest leecher keeps in flight (512 KiB).
pub const DEPTH: usize = 32;
/// How many requests the request-flood abuser sends in one go.
pub const FLOOD_REQUESTS: usize = 5_000;
/// `have` messages per second the have-flood abuser sends.
pub const HAVES_PER_SECOND: usize = 10_000;
/// Stack of each connection thread (they keep their buffers on the heap).
const STACK: usize = 256 * 1024;

/// What a leecher knows about the torrent and where the seeder is.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub info_hash: [u8; 20],
    pub piece_length: u64,
    pub total_length: u64,
    pub hashes: Vec<[u8; 20]>,
}

impl Target {
    /// Reads `torrent` (with bt-trace's metainfo parser); the seeder listens on `addr`.
    pub fn load(torrent: &Path, addr: SocketAddr) -> Result<Target, String> {
        let bytes =
            std::fs::read(torrent).map_err(|e| format!("reading {}: {e}", torrent.display()))?;
        let t = bt_trace::metainfo::Torrent::parse(&bytes)
            .map_err(|e| format!("parsing {}: {e}", torrent.display()))?;
        Ok(Target {
            addr,
            info_hash: t.info_hash,
            piece_length: t.info.piece_length,
            total_length: t.info.total_length,
            hashes: t.info.pieces.clone(),
        })
    }

    fn piece_size(&self, index: u32) -> u32 {
        let start = u64::from(index) * self.piece_length;
        (self.total_length - start).min(self.piece_length) as u32
    }

    /// Every block of the torrent, in order.
    fn blocks(&self) -> VecDeque<BlockRef> {
        let mut v = VecDeque::new();
        for index in 0..self.hashes.len() as u32 {
            let size = self.piece_size(index);
            let mut begin = 0;
            while begin < size {
                v.push_back(BlockRef::new(index, begin, BLOCK.min(size - begin)));
                begin += BLOCK;
            }
        }
        v
    }
}

/// One way of misbehaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abuse {
    /// [`FLOOD_REQUESTS`] requests for valid blocks at once.
    RequestFlood,
    /// One request for a block reaching past the end of its piece.
    OutsidePiece,
    /// One request for 128 KiB (BEP 3: implementations close connections that ask for more
    /// than 16 KiB).
    Oversized,
    /// [`HAVES_PER_SECOND`] `have` messages a second, all for the same piece.
    HaveFlood,
    /// Text instead of messages after the handshake.
    Garbage,
    /// `not interested` and `interested` in turn, [`HAVES_PER_SECOND`] messages a second.
    InterestFlood,
}

impl Abuse {
    pub const ALL: [Abuse; 6] = [
        Abuse::RequestFlood,
        Abuse::OutsidePiece,
        Abuse::Oversized,
        Abuse::HaveFlood,
        Abuse::Garbage,
        Abuse::InterestFlood,
    ];
}

/// What to run: `honest` leechers and the `abusers`, all started at the same moment.
#[derive(Clone, Debug)]
pub struct Plan {
    pub honest: usize,
    pub abusers: Vec<Abuse>,
    /// Every connection gives up at this point.
    pub timeout: Duration,
}

/// How an abuser's connection ended.
#[derive(Clone, Debug)]
pub struct AbuserOutcome {
    pub abuse: Abuse,
    /// The seeder closed the connection this long after the abuser connected (`None`: it was
    /// still open at the timeout, or the abuser failed before misbehaving).
    pub dropped_after: Option<Duration>,
    /// Messages of its kind the abuser got out before the connection closed.
    pub sent: usize,
    pub error: Option<String>,
}

/// The numbers of one run.
#[derive(Debug)]
pub struct Report {
    /// Per honest leecher: how long from the start until it had every piece verified.
    pub honest: Vec<Result<Duration, String>>,
    pub abusers: Vec<AbuserOutcome>,
    /// Until the last honest leecher finished.
    pub all_done: Duration,
    /// Piece bytes the honest leechers received and verified.
    pub verified_bytes: u64,
    /// Connections the seeder refused (its handshake, then closed: `--max-peers` reached);
    /// the leecher dialed again, as real clients do.
    pub refused: usize,
}

impl Report {
    pub fn failures(&self) -> Vec<String> {
        self.honest
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("leecher {i}: {e}")))
            .collect()
    }

    /// The seeder's upload rate to the honest leechers over the whole run.
    pub fn mib_per_s(&self) -> f64 {
        self.verified_bytes as f64 / (1024.0 * 1024.0) / self.all_done.as_secs_f64().max(1e-6)
    }

    /// Completion times of the honest leechers that finished, sorted.
    pub fn sorted_times(&self) -> Vec<Duration> {
        let mut v: Vec<Duration> = self.honest.iter().filter_map(|r| r.clone().ok()).collect();
        v.sort();
        v
    }

    /// One line: leechers, time to all complete, median, rate.
    pub fn summary(&self) -> String {
        let times = self.sorted_times();
        let at = |q: usize| {
            times
                .get(times.len() * q / 100)
                .copied()
                .unwrap_or_default()
        };
        format!(
            "{} of {} leechers complete in {:.2} s (median {:.2} s, p90 {:.2} s), \
             {:.1} MiB/s upload, {} abusers, {} connections refused",
            times.len(),
            self.honest.len(),
            self.all_done.as_secs_f64(),
            at(50).as_secs_f64(),
            at(90).as_secs_f64(),
            self.mib_per_s(),
            self.abusers.len(),
            self.refused
        )
    }
}

/// Runs `plan` against `target`: every connection on its own thread, all released at once.
pub fn run(target: &Target, plan: &Plan) -> Report {
    let target = Arc::new(target.clone());
    let barrier = Arc::new(Barrier::new(plan.honest + plan.abusers.len() + 1));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut honest = Vec::new();
    for i in 0..plan.honest {
        let (t, b, timeout) = (target.clone(), barrier.clone(), plan.timeout);
        let refused = refused.clone();
        honest.push(spawn(move || {
            b.wait();
            leech(&t, i, Instant::now() + timeout, &refused)
        }));
    }
    let mut abusers = Vec::new();
    for (i, &abuse) in plan.abusers.iter().enumerate() {
        let (t, b, timeout) = (target.clone(), barrier.clone(), plan.timeout);
        abusers.push(spawn(move || {
            b.wait();
            abuse_once(&t, abuse, i, timeout)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let honest: Vec<Result<Duration, String>> = honest
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("thread panicked".into()))
                .map(|done| done.duration_since(start))
        })
        .collect();
    let all_done = honest
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .max()
        .copied()
        .unwrap_or_else(|| start.elapsed());
    let finished = honest.iter().filter(|r| r.is_ok()).count() as u64;
    let abusers = abusers
        .into_iter()
        .zip(&plan.abusers)
        .map(|(h, &abuse)| {
            h.join().unwrap_or_else(|_| AbuserOutcome {
                abuse,
                dropped_after: None,
                sent: 0,
                error: Some("thread panicked".into()),
            })
        })
        .collect();
    Report {
        honest,
        abusers,
        all_done,
        verified_bytes: finished * target.total_length,
        refused: refused.load(Ordering::Relaxed),
    }
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn a load thread")
}

fn peer_id(tag: &[u8; 4], i: usize) -> [u8; 20] {
    let mut id = *b"-LG0001-xxxx00000000";
    id[8..12].copy_from_slice(tag);
    id[12..].copy_from_slice(format!("{:08}", i % 100_000_000).as_bytes());
    id
}

/// Connects, sends our handshake and `extra`, reads the seeder's handshake.
fn open(target: &Target, id: [u8; 20], extra: &[u8]) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect_timeout(&target.addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let reserved = Reserved::new().with_fast().with_extended();
    let mut out = Handshake::new(reserved, target.info_hash, id)
        .emit()
        .to_vec();
    out.extend_from_slice(extra);
    s.write_all(&out)
        .map_err(|e| format!("sending the handshake: {e}"))?;
    let mut hs = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut hs)
        .map_err(|e| format!("reading the seeder's handshake: {e}"))?;
    let (theirs, _) = Handshake::parse(&hs).map_err(|e| format!("seeder's handshake: {e}"))?;
    if theirs.info_hash != target.info_hash {
        return Err("the seeder answered for another torrent".into());
    }
    Ok(s)
}

/// What an honest leecher keeps track of.
struct Leecher<'a> {
    target: &'a Target,
    seed_has_all: bool,
    unchoked: bool,
    todo: VecDeque<BlockRef>,
    outstanding: HashSet<BlockRef>,
    /// Pieces being assembled: bytes and how many of them arrived.
    partial: HashMap<u32, (Vec<u8>, u32)>,
    verified: usize,
}

impl Leecher<'_> {
    fn on(&mut self, msg: Message<'_>) -> Result<(), String> {
        match msg {
            Message::HaveAll => self.seed_has_all = true,
            Message::Bitfield(bits) => {
                let n = self.target.hashes.len();
                self.seed_has_all =
                    (0..n).all(|i| bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0));
            }
            Message::Unchoke => self.unchoked = true,
            // fast extension: every pending request is rejected one by one
            Message::Choke => self.unchoked = false,
            Message::Reject(r) if self.outstanding.remove(&r) => self.todo.push_front(r),
            Message::Piece { index, begin, data } => {
                let r = BlockRef::new(index, begin, data.len() as u32);
                if !self.outstanding.remove(&r) {
                    return Err(format!("a block we did not ask for: {r:?}"));
                }
                let size = self.target.piece_size(index);
                let (buf, got) = self
                    .partial
                    .entry(index)
                    .or_insert_with(|| (vec![0; size as usize], 0));
                buf[begin as usize..begin as usize + data.len()].copy_from_slice(data);
                *got += data.len() as u32;
                if *got == size {
                    let digest: [u8; 20] = Sha1::digest(&buf[..]).into();
                    if digest != self.target.hashes[index as usize] {
                        return Err(format!("piece {index} failed its SHA-1 check"));
                    }
                    self.partial.remove(&index);
                    self.verified += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn requests(&mut self, out: &mut Vec<u8>) {
        if !(self.unchoked && self.seed_has_all) {
            return;
        }
        while self.outstanding.len() < DEPTH {
            let Some(r) = self.todo.pop_front() else {
                break;
            };
            self.outstanding.insert(r);
            Message::Request(r).emit(out);
        }
    }

    fn done(&self) -> bool {
        self.verified == self.target.hashes.len()
    }
}

/// One honest leecher; returns when it had every piece verified. Refused (the seeder hangs up
/// before it says what it has), it dials again after 50, 100, 200 … 800 ms.
fn leech(
    target: &Target,
    i: usize,
    deadline: Instant,
    refused: &AtomicUsize,
) -> Result<Instant, String> {
    let mut pause = Duration::from_millis(50);
    loop {
        match leech_once(target, i, deadline) {
            Err(Refused) if Instant::now() + pause < deadline => {
                refused.fetch_add(1, Ordering::Relaxed);
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(800));
            }
            Err(Refused) => return Err("refused until the timeout".into()),
            Ok(r) => return r,
        }
    }
}

/// The seeder closed the connection right after its handshake.
struct Refused;

fn leech_once(
    target: &Target,
    i: usize,
    deadline: Instant,
) -> Result<Result<Instant, String>, Refused> {
    let mut heard = false;
    let r = leech_connection(target, i, deadline, &mut heard);
    match r {
        Err(e) if !heard && e.starts_with(HUNG_UP) => Err(Refused),
        r => Ok(r),
    }
}

const HUNG_UP: &str = "the seeder hung up";

/// One connection of an honest leecher; `heard` is set once a message arrived.
fn leech_connection(
    target: &Target,
    i: usize,
    deadline: Instant,
    heard: &mut bool,
) -> Result<Instant, String> {
    let mut interested = Vec::new();
    Message::Interested.emit(&mut interested);
    let mut s = open(target, peer_id(b"leec", i), &interested)?;
    let mut st = Leecher {
        target,
        seed_has_all: false,
        unchoked: false,
        todo: target.blocks(),
        outstanding: HashSet::new(),
        partial: HashMap::new(),
        verified: 0,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let mut at = 0;
        loop {
            match Message::parse(&buf[at..]) {
                Ok((msg, used)) => {
                    *heard = true;
                    st.on(msg)?;
                    at += used;
                }
                Err(WireError::Incomplete { .. }) => break,
                Err(e) => return Err(format!("from the seeder: {e}")),
            }
        }
        buf.drain(..at);
        if st.done() {
            let _ = s.shutdown(Shutdown::Both);
            return Ok(Instant::now());
        }
        out.clear();
        st.requests(&mut out);
        if !out.is_empty() {
            s.write_all(&out)
                .map_err(|e| format!("sending requests: {e}"))?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "timed out with {} of {} pieces (unchoked: {})",
                st.verified,
                target.hashes.len(),
                st.unchoked
            ));
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err(format!("{HUNG_UP} after {} pieces", st.verified)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(format!("{HUNG_UP} (reset) after {} pieces", st.verified))
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(format!("reading: {e}")),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One abuser: connects, misbehaves, and waits (reading everything) until the seeder closes
/// the connection or `timeout` passes.
fn abuse_once(target: &Target, abuse: Abuse, i: usize, timeout: Duration) -> AbuserOutcome {
    let start = Instant::now();
    let mut outcome = AbuserOutcome {
        abuse,
        dropped_after: None,
        sent: 0,
        error: None,
    };
    let mut hello = Vec::new();
    if abuse != Abuse::Garbage {
        Message::Interested.emit(&mut hello);
    }
    let s = match open(target, peer_id(b"abus", i), &hello) {
        Ok(s) => s,
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    };
    // a reader notices the close while the writer goes on
    let reader = match s.try_clone() {
        Ok(r) => r,
        Err(e) => {
            outcome.error = Some(e.to_string());
            return outcome;
        }
    };
    let closed = spawn(move || wait_closed(reader, start + timeout).then(Instant::now));
    let mut w = s;
    let block = |n: usize| {
        let per_piece = target.piece_size(0).div_ceil(BLOCK) as usize;
        let index = (n / per_piece) % target.hashes.len();
        let index = index as u32;
        let begin = (n % per_piece) as u32 * BLOCK;
        BlockRef::new(
            index,
            begin,
            BLOCK.min(target.piece_size(index).saturating_sub(begin)),
        )
    };
    let mut out = Vec::new();
    let result: std::io::Result<()> = (|| {
        match abuse {
            Abuse::RequestFlood => {
                for n in 0..FLOOD_REQUESTS {
                    Message::Request(block(n)).emit(&mut out);
                }
                w.write_all(&out)?;
                outcome.sent = FLOOD_REQUESTS;
            }
            Abuse::OutsidePiece => {
                let size = target.piece_size(0);
                Message::Request(BlockRef::new(0, size - BLOCK / 2, BLOCK)).emit(&mut out);
                w.write_all(&out)?;
                outcome.sent = 1;
            }
            Abuse::Oversized => {
                Message::Request(BlockRef::new(0, 0, 8 * BLOCK)).emit(&mut out);
                w.write_all(&out)?;
                outcome.sent = 1;
            }
            Abuse::HaveFlood | Abuse::InterestFlood => {
                // batches of 1/100 s; stops when the connection closes or at the timeout
                let batch = HAVES_PER_SECOND / 100;
                for i in 0..batch {
                    match abuse {
                        Abuse::HaveFlood => Message::Have { index: 0 }.emit(&mut out),
                        _ if i % 2 == 0 => Message::NotInterested.emit(&mut out),
                        _ => Message::Interested.emit(&mut out),
                    }
                }
                while !closed.is_finished() && start.elapsed() < timeout {
                    w.write_all(&out)?;
                    outcome.sent += batch;
                    thread::sleep(Duration::from_millis(10));
                }
            }
            Abuse::Garbage => {
                w.write_all(b"this is not a BitTorrent message, and neither is this\r\n")?;
                outcome.sent = 1;
            }
        }
        Ok(())
    })();
    // a write that fails because the seeder hung up is what we want; the reader tells
    let _ = result;
    match closed.join() {
        Ok(Some(at)) => outcome.dropped_after = Some(at.duration_since(start)),
        Ok(None) => {}
        Err(_) => outcome.error = Some("reader thread panicked".into()),
    }
    outcome
}

/// Reads and discards until the peer closes the connection (EOF or reset: `true`) or
/// `deadline` passes (`false`).
fn wait_closed(mut s: TcpStream, deadline: Instant) -> bool {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
}

/// The seeder's peak resident set (`VmHWM` of /proc/PID/status), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Writes `len` deterministic pseudo-random bytes (SplitMix64 from `seed`) to `path`.
pub fn write_data(path: &Path, len: u64, seed: u64) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = seed;
    let mut left = len;
    while left > 0 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let n = left.min(8) as usize;
        out.write_all(&z.to_le_bytes()[..n])?;
        left -= n as u64;
    }
    out.flush()
}

/// `bt-trace create` arguments: `data` cut into pieces of `piece_length`, no tracker.
pub fn create_args(data: &Path, torrent: &Path, piece_length: u64) -> Vec<String> {
    vec![
        "create".into(),
        data.display().to_string(),
        "--piece-length".into(),
        piece_length.to_string(),
        "--no-date".into(),
        "-q".into(),
        "-o".into(),
        torrent.display().to_string(),
    ]
}

/// `bt-trace seed` arguments: serve `torrent` from `data` on `port`, with room for
/// `max_peers` connections (`None`: its default), logging each dropped peer (`-v`).
pub fn seed_args(torrent: &Path, data: &Path, port: u16, max_peers: Option<usize>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "seed".into(),
        torrent.display().to_string(),
        "--data".into(),
        data.display().to_string(),
        "--port".into(),
        port.to_string(),
        "-q".into(),
        "-v".into(),
    ];
    if let Some(n) = max_peers {
        args.extend(["--max-peers".into(), n.to_string()]);
    }
    args
}
