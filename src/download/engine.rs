//! The download engine: a swarm of peer sessions sharing one picker and one storage.
//!
//! ```text
//!  announce task ──peer lists──► connection manager ──spawns──► peer sessions (one task each)
//!  --peer, incoming ───────────►   ▲                               │ blocks (via PeerSwarm)
//!                                  └──── ended / banned ◄──────────┤
//!                                                                  ▼
//!       Swarm { picker } ◄── commit ── write + verify (blocking pool) ◄── claimed blocks
//! ```
//! The `Swarm` is the shared state, which sessions see only as a [`PeerSwarm`]: the picker
//! under a mutex (held for microseconds, never during I/O), the storage, counters, and a
//! `watch` channel that wakes every session when something changed that may give it work (a
//! piece verified, blocks released, endgame cancels). Sessions read the logs of verified
//! pieces and cancels from a cursor, so a wake-up is never lost and nothing is queued per peer.
//!
//! A block is claimed under the lock, written on the blocking pool, then committed under the
//! lock; the last commit of a piece verifies it (still on the blocking pool). Each session has
//! at most one batch of blocks (one read's worth) in flight, so memory stays bounded. A disk
//! error ends the download with that error; no peer is blamed for it.
//!
//! Announces run in a task of their own and deliver peer lists by channel, so a silent
//! tracker delays nothing: `--peer` peers and incoming peers are used at once, and Ctrl-C is
//! seen at once. The engine owns no socket to the tracker and never waits on one, except for
//! a short `completed`/`stopped` announce at the end to a tracker that answered before.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha1::{Digest, Sha1};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::bitfield::Bitfield;
use crate::download::choker::Choker;
use crate::download::picker::Picker;
use crate::download::picker::{Received, BLOCK_LEN};
use crate::download::storage::Storage;
use crate::download::verify::PieceHashes;
use crate::peer::conn::{next_conn_id, Conn, ConnObserver};
use crate::peer::session::{self, SessionEnd, Timeouts};
use crate::peer::swarm::{
    BlockVerdict, Cursor, DiskError, News, PeerSwarm, Pressure, SessionConfig,
};
use crate::wire::message::HashRef;
use crate::wire::{BlockRef, Reserved};

/// The shape of a torrent's data, as the engine needs it.
#[derive(Debug, Clone)]
pub struct Layout {
    pub info_hash: [u8; 20],
    pub piece_len: u64,
    /// What each piece must hash to (v1 SHA-1, or v2 merkle trees).
    pub hashes: PieceHashes,
    /// The files of the byte space, in metainfo order.
    pub files: Vec<crate::download::storage::DiskFile>,
    /// The raw `info` dictionary, served to peers that ask for metadata (BEP 9).
    pub info_bytes: Option<Vec<u8>>,
}

impl Layout {
    pub fn total_len(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }
}

/// Shared state of one torrent's swarm; sessions see it as a [`PeerSwarm`].
struct Swarm {
    config: SessionConfig,
    piece_len: u64,
    total_len: u64,
    hashes: PieceHashes,
    storage: Storage,
    info_bytes: Option<Vec<u8>>,
    downloaded: AtomicU64,
    uploaded: AtomicU64,
    wasted: AtomicU64,
    state: Mutex<SwarmState>,
    wake_tx: watch::Sender<u64>,
    /// Cancelled when the swarm ends: finished, interrupted or failed.
    cancel: CancellationToken,
    finished: AtomicBool,
    done: tokio::sync::Notify,
    /// The first disk error; it ends the download.
    disk_error: Mutex<Option<DiskError>>,
    /// [`Pressure`] as set by the connection manager (0 none, 1 waiting, 2 full).
    pressure: AtomicU8,
    /// Sessions parked (useless while others wait); they do not count against `max_peers`.
    parked: AtomicUsize,
}

/// The part of the swarm behind the lock (held for microseconds: no I/O under it).
struct SwarmState {
    picker: Picker,
    /// Pieces verified since start, in order (sessions send `have` from a cursor).
    have_log: Vec<u32>,
    /// Endgame blocks that arrived while others also had them outstanding.
    cancel_log: Vec<BlockRef>,
    /// Peers that sent bad data.
    banned: HashSet<SocketAddr>,
    /// Who sent each block of the pieces in progress: `(begin, peer)`.
    block_senders: HashMap<u32, Vec<(u32, SocketAddr)>>,
    /// Blocks of pieces that failed verification: `(begin, peer, SHA-1 of what it sent)`.
    /// Compared with the good data once the piece verifies ("smart ban").
    suspects: HashMap<u32, Vec<(u32, SocketAddr, [u8; 20])>>,
    /// v2: blocks of failed pieces whose block hashes we ask a peer for: `(begin, peer, leaf
    /// hash of what it sent)`.
    block_checks: HashMap<u32, Vec<(u32, SocketAddr, crate::merkle::Hash)>>,
    /// v2: failed pieces in `block_checks` not asked about yet.
    to_ask: Vec<u32>,
    /// Peers that sent us at least one useful block.
    sources: HashSet<SocketAddr>,
    /// Peers we sent at least one block.
    served: HashSet<SocketAddr>,
    /// Who may download from us.
    choker: Choker,
    pieces_failed: u32,
}

impl Swarm {
    fn lock(&self) -> MutexGuard<'_, SwarmState> {
        // a panic in another task must not wedge the download: take the state anyway
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every session (something may have work for them).
    fn wake(&self) {
        self.wake_tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    fn offset(&self, r: &BlockRef) -> u64 {
        u64::from(r.index) * self.piece_len + u64::from(r.begin)
    }

    /// Records the first disk error and ends the swarm.
    fn fail(&self, e: DiskError) {
        tracing::debug!("disk error: {e}");
        self.disk_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
        self.cancel.cancel();
    }

    fn disk_error(&self) -> Option<DiskError> {
        self.disk_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes accepted blocks, commits them in the picker, and verifies the pieces they
    /// complete. Runs on the blocking pool; the lock is taken only between the I/O.
    fn store_blocking(
        &self,
        from: SocketAddr,
        blocks: &[(BlockRef, Bytes)],
    ) -> Result<(), DiskError> {
        let mut error = None;
        let mut written = 0;
        for (r, data) in blocks {
            if let Err(e) = self.storage.write_at(self.offset(r), data) {
                error = Some(DiskError(format!("writing {e}")));
                break;
            }
            written += 1;
        }
        let mut complete = Vec::new();
        {
            let mut s = self.lock();
            for (r, data) in &blocks[..written] {
                self.downloaded
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                s.sources.insert(from);
                s.block_senders
                    .entry(r.index)
                    .or_default()
                    .push((r.begin, from));
                if s.picker.written(r) {
                    complete.push(r.index);
                }
            }
            for (r, _) in &blocks[written..] {
                s.picker.unwritten(r);
            }
        }
        for index in complete {
            self.verify_piece(index);
        }
        match error {
            Some(e) => {
                self.fail(e.clone());
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Hashes a complete piece on disk and records the verdict. Runs on the blocking pool.
    fn verify_piece(&self, index: u32) {
        let mut buf = Vec::new();
        let ok = match self.storage.read_piece(index, &mut buf) {
            Ok(()) => self.hashes.check(index, &buf),
            Err(e) => {
                // our disk, not the peers: nobody is blamed
                self.lock().picker.failed(index);
                self.fail(DiskError(format!("reading {e}")));
                return;
            }
        };
        let block = |begin: u32| {
            let b = begin as usize;
            &buf[b.min(buf.len())..(b + crate::download::picker::BLOCK_LEN as usize).min(buf.len())]
        };
        let mut s = self.lock();
        let senders = s.block_senders.remove(&index).unwrap_or_default();
        if ok {
            // Peers whose blocks of an earlier, failed attempt differ from the good data lied.
            for (begin, addr, h) in s.suspects.remove(&index).unwrap_or_default() {
                if <[u8; 20]>::from(Sha1::digest(block(begin))) != h && s.banned.insert(addr) {
                    tracing::warn!("{addr} sent bad data for piece {index} begin {begin}: dropped");
                }
            }
            s.block_checks.remove(&index);
            s.to_ask.retain(|&i| i != index);
            s.picker.verified(index);
            s.have_log.push(index);
            if s.picker.is_complete() {
                self.finished.store(true, Ordering::Release);
                self.done.notify_one();
            }
        } else {
            s.picker.failed(index);
            s.pieces_failed += 1;
            let peers: HashSet<SocketAddr> = senders.iter().map(|(_, a)| *a).collect();
            tracing::warn!(
                "piece {index} failed verification (blocks from {peers:?}); fetching it again"
            );
            if peers.len() == 1 {
                // a lone sender is certainly the culprit
                s.banned.extend(peers);
            } else {
                // several senders: remember what each sent, judge when the piece verifies
                let sus: Vec<_> = senders
                    .iter()
                    .map(|&(begin, addr)| (begin, addr, Sha1::digest(block(begin)).into()))
                    .collect();
                s.suspects.entry(index).or_default().extend(sus);
                // v2: a peer's block hashes can tell the bad blocks at once
                if let Some(v2) = self
                    .hashes
                    .v2()
                    .filter(|v2| v2.block_request(index).is_some())
                {
                    let leaves = v2.leaves(index, &buf);
                    let checks = senders.iter().map(|&(begin, addr)| {
                        let leaf = leaves.get((begin / BLOCK_LEN) as usize).copied();
                        (begin, addr, leaf.unwrap_or_default())
                    });
                    s.block_checks.insert(index, checks.collect());
                    s.to_ask.push(index);
                }
            }
        }
        drop(s);
        self.wake();
    }
}

impl PeerSwarm for Arc<Swarm> {
    fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn metadata(&self) -> Option<&[u8]> {
        self.info_bytes.as_deref()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake_tx.subscribe()
    }

    fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    fn is_finished(&self) -> bool {
        Swarm::is_finished(self)
    }

    fn our_pieces(&self) -> (Bitfield, Cursor) {
        let s = self.lock();
        let cursor = Cursor {
            haves: s.have_log.len(),
            cancels: s.cancel_log.len(),
        };
        (s.picker.have().clone(), cursor)
    }

    fn peer_announced(&self, has: &Bitfield) {
        self.lock().picker.add_peer(has);
    }

    fn peer_has(&self, index: u32) {
        self.lock().picker.add_have(index);
    }

    fn peer_joined(&self, addr: SocketAddr) {
        self.lock().choker.add(addr);
    }

    fn peer_interest(&self, addr: SocketAddr, interested: bool) {
        let changed = self
            .lock()
            .choker
            .set_interested(&addr, interested, Instant::now());
        if changed {
            self.wake();
        }
    }

    fn peer_left(
        &self,
        addr: SocketAddr,
        announced: Option<&Bitfield>,
        outstanding: &mut dyn Iterator<Item = BlockRef>,
    ) {
        let mut s = self.lock();
        for r in outstanding {
            s.picker.release(&r);
        }
        if let Some(has) = announced {
            s.picker.remove_peer(has);
        }
        s.choker.remove(&addr, Instant::now());
        drop(s);
        self.wake();
    }

    fn news(&self, addr: SocketAddr, has: &Bitfield, cursor: &mut Cursor, out: &mut News) {
        let mut s = self.lock();
        out.hash_request = None;
        if let Some(at) = s.to_ask.iter().position(|&i| has.get(i)) {
            let index = s.to_ask.swap_remove(at);
            out.hash_request = self.hashes.v2().and_then(|v2| v2.block_request(index));
        }
        out.banned = s.banned.contains(&addr);
        out.haves
            .extend_from_slice(s.have_log.get(cursor.haves..).unwrap_or_default());
        out.cancels
            .extend_from_slice(s.cancel_log.get(cursor.cancels..).unwrap_or_default());
        cursor.haves = s.have_log.len();
        cursor.cancels = s.cancel_log.len();
        out.interesting = s.picker.is_interesting(has);
        out.unchoked = s.choker.is_unchoked(&addr);
    }

    fn pick(
        &self,
        has: &Bitfield,
        max: usize,
        outstanding: &HashSet<BlockRef>,
        rotate: u32,
        out: &mut Vec<BlockRef>,
    ) {
        self.lock().picker.pick(has, max, out, outstanding, rotate);
    }

    fn release(&self, r: &BlockRef) {
        self.lock().picker.release(r);
        self.wake();
    }

    fn accept_block(&self, r: &BlockRef) -> BlockVerdict {
        let mut s = self.lock();
        match s.picker.received(r) {
            Received::Invalid => BlockVerdict::Invalid,
            Received::Duplicate => {
                self.wasted
                    .fetch_add(u64::from(r.length), Ordering::Relaxed);
                BlockVerdict::Duplicate
            }
            Received::Accepted { dups } => {
                if dups > 0 {
                    s.cancel_log.push(*r);
                    drop(s);
                    self.wake();
                }
                BlockVerdict::Accepted
            }
        }
    }

    fn store(
        &self,
        from: SocketAddr,
        blocks: Vec<(BlockRef, Bytes)>,
    ) -> impl Future<Output = Result<(), DiskError>> + Send {
        let sw = self.clone();
        // the job commits what it wrote even if the session is gone by then
        let job = tokio::task::spawn_blocking(move || sw.store_blocking(from, &blocks));
        async move {
            job.await
                .unwrap_or_else(|e| Err(DiskError(format!("the disk task failed: {e}"))))
        }
    }

    fn can_serve(&self, r: &BlockRef) -> bool {
        let s = self.lock();
        r.index < self.config.num_pieces
            && u64::from(r.begin) + u64::from(r.length) <= u64::from(s.picker.piece_size(r.index))
            && s.picker.have().get(r.index)
    }

    fn read(
        &self,
        blocks: Vec<BlockRef>,
    ) -> impl Future<Output = Result<Vec<u8>, DiskError>> + Send {
        let sw = self.clone();
        let job = tokio::task::spawn_blocking(move || {
            let total = blocks.iter().map(|r| r.length as usize).sum();
            let mut buf = vec![0; total];
            let mut at = 0;
            for r in &blocks {
                let end = at + r.length as usize;
                if let Err(e) = sw.storage.read_at(sw.offset(r), &mut buf[at..end]) {
                    let e = DiskError(format!("reading {e}"));
                    sw.fail(e.clone());
                    return Err(e);
                }
                at = end;
            }
            Ok(buf)
        });
        async move {
            job.await
                .unwrap_or_else(|e| Err(DiskError(format!("the disk task failed: {e}"))))
        }
    }

    fn hashes(&self, req: HashRef) -> impl Future<Output = Option<Vec<u8>>> + Send {
        let sw = self.clone();
        let job = tokio::task::spawn_blocking(move || {
            let v2 = sw.hashes.v2()?;
            v2.hashes(&req, |piece| {
                // block hashes only of a piece we verified
                if !sw.lock().picker.have().get(piece) {
                    return None;
                }
                let mut buf = Vec::new();
                sw.storage.read_piece(piece, &mut buf).ok()?;
                Some(buf)
            })
        });
        async move { job.await.ok().flatten() }
    }

    fn block_hashes(&self, from: SocketAddr, req: &HashRef, hashes: &[u8]) {
        let Some((index, leaves)) = self
            .hashes
            .v2()
            .and_then(|v2| v2.proven_blocks(req, hashes))
        else {
            tracing::debug!("{from}: hashes for {req} that we did not ask for or do not prove");
            return;
        };
        let mut s = self.lock();
        for (begin, addr, leaf) in s.block_checks.remove(&index).unwrap_or_default() {
            let good = leaves.get((begin / BLOCK_LEN) as usize);
            if good != Some(&leaf) && s.banned.insert(addr) {
                tracing::warn!(
                    "{addr} sent a bad block of piece {index} (begin {begin}), told by its block \
                     hash from {from}: dropped"
                );
            }
        }
    }

    fn uploaded(&self, addr: SocketAddr, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
        let mut s = self.lock();
        s.choker.uploaded(&addr, bytes);
        s.served.insert(addr);
    }

    fn pressure(&self) -> Pressure {
        match self.pressure.load(Ordering::Relaxed) {
            0 => Pressure::None,
            1 => Pressure::Waiting,
            _ => Pressure::Full,
        }
    }

    fn set_parked(&self, addr: SocketAddr, parked: bool) {
        tracing::debug!(
            "{addr}: {}",
            if parked {
                "parked: nothing flows either way while other peers wait"
            } else {
                "useful again"
            }
        );
        if parked {
            self.parked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.parked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Why we talk to the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceEvent {
    Started,
    Periodic,
    Completed,
    Stopped,
}

/// What an announce returned.
#[derive(Debug, Clone, Default)]
pub struct PeerList {
    pub peers: Vec<SocketAddr>,
    pub interval: Duration,
}

/// Where peers come from (trackers, a fixed list, later DHT/PEX). Boxed futures keep it
/// object-safe.
pub trait PeerSource: Send {
    fn announce(
        &mut self,
        event: AnnounceEvent,
        downloaded: u64,
        uploaded: u64,
        left: u64,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<PeerList>> + Send + '_>>;
}

/// A fixed list of peers (`--peer`, tests).
pub struct StaticPeers(pub Vec<SocketAddr>);

impl PeerSource for StaticPeers {
    fn announce(
        &mut self,
        _: AnnounceEvent,
        _: u64,
        _: u64,
        _: u64,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<PeerList>> + Send + '_>> {
        let peers = self.0.clone();
        Box::pin(async move {
            Ok(PeerList {
                peers,
                interval: Duration::from_secs(30),
            })
        })
    }
}

/// Knobs of a download.
#[derive(Clone)]
pub struct Options {
    pub peer_id: [u8; 20],
    /// Handshake reserved bits; default fast extension + extension protocol.
    pub reserved: Reserved,
    pub max_peers: usize,
    pub timeouts: Timeouts,
    /// The port we announce (and listen on).
    pub listen_port: Option<u16>,
    /// A bound listening socket: peers that connect to us join the swarm.
    pub listener: Option<Arc<std::net::TcpListener>>,
    /// Peers to dial at once, whatever the trackers say (`--peer`, a magnet's `x.pe`).
    pub peers: Vec<SocketAddr>,
    /// Pieces to fetch; `None` = all.
    pub wanted: Option<Bitfield>,
    /// Show a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    pub observer: Option<Arc<dyn ConnObserver>>,
    /// Cancelled on Ctrl-C by the CLI.
    pub cancel: CancellationToken,
    /// How many times to retry a peer that failed (not one that was banned).
    pub peer_retries: u32,
    /// Keep serving once every wanted piece is verified, until `cancel` (`seed`,
    /// `download --seed`).
    pub seed: bool,
    /// Regular upload slots of the choker (plus one optimistic unchoke).
    pub upload_slots: usize,
    /// Told `(verified, total)` once the data on disk is checked, before any peer is contacted.
    pub on_checked: Option<Arc<dyn Fn(u32, u32) + Send + Sync>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            peer_id: crate::peer_id(),
            reserved: session::OUR_RESERVED,
            max_peers: 50,
            timeouts: Timeouts::default(),
            listen_port: None,
            listener: None,
            peers: Vec::new(),
            wanted: None,
            progress: false,
            observer: None,
            cancel: CancellationToken::new(),
            peer_retries: 3,
            seed: false,
            upload_slots: crate::download::choker::DEFAULT_SLOTS,
            on_checked: None,
        }
    }
}

/// The outcome of [`download`].
#[derive(Debug, Clone)]
pub struct Summary {
    pub complete: bool,
    pub interrupted: bool,
    pub bytes_downloaded: u64,
    pub bytes_wasted: u64,
    pub bytes_uploaded: u64,
    /// Pieces that were already on disk and verified at start (resume).
    pub pieces_resumed: u32,
    pub pieces_total: u32,
    pub pieces_have: u32,
    pub pieces_failed: u32,
    /// Peers that sent at least one useful block.
    pub peers_used: usize,
    /// Peers we sent at least one block.
    pub peers_served: usize,
    pub peers_banned: usize,
    pub elapsed: Duration,
}

struct PeerRecord {
    /// Failures since it was last listed again (retries left: `max_retries - failures`).
    failures: u32,
    /// All its failures: the delay before the next try grows with them ([`retry_delay`]).
    tries: u32,
    last_error: Option<String>,
}

/// The longest wait before dialing a failed peer again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// With no data coming, say which peers were tried this often at first (then twice as
/// seldom each time, up to [`MAX_RETRY_DELAY`]).
const STALL_REPORT: Duration = Duration::from_secs(10);

/// 1 s, 2 s, 4 s, … after a peer's `tries`-th failure, at most [`MAX_RETRY_DELAY`].
fn retry_delay(tries: u32) -> Duration {
    Duration::from_millis(500u64 << tries.min(7)).min(MAX_RETRY_DELAY)
}

/// Files of other sizes were at the output path and none of the torrent's pieces is in them:
/// not a partial download of this torrent (an interrupted one has the torrent's sizes). Said
/// before they are cut or grown and overwritten.
fn warn_unrelated(storage: &Storage) {
    for (path, found, length) in storage.misfits() {
        tracing::warn!(
            "{} is already there ({}, the torrent's file is {}) and holds none of the torrent's \
             pieces: not a partial download of it; overwriting it",
            path.display(),
            crate::units::size(found),
            crate::units::size(length)
        );
    }
}

/// Downloads (the wanted pieces of) a torrent into its files, resuming from what is on disk.
pub async fn download(
    layout: Layout,
    source: Box<dyn PeerSource>,
    opts: Options,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let total_len = layout.total_len();
    let num_pieces = layout.hashes.num_pieces();
    // open the files and, when resuming, hash what is already there (blocking work)
    let (files, piece_len, hashes) = (
        layout.files.clone(),
        layout.piece_len,
        layout.hashes.clone(),
    );
    let stop = opts.cancel.clone();
    let opening = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut storage =
            Storage::open(&files, piece_len).map_err(|e| anyhow::anyhow!("opening {e}"))?;
        let have = if storage.existed() {
            storage
                .check_existing(&hashes, || stop.is_cancelled())
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::Interrupted => anyhow::anyhow!("{e}"),
                    _ => anyhow::anyhow!("reading {e}"),
                })?
        } else {
            Bitfield::new(hashes.num_pieces())
        };
        if storage.existed() && have.count() == 0 {
            warn_unrelated(&storage);
        }
        storage.fit().map_err(|e| anyhow::anyhow!("sizing {e}"))?;
        Ok((storage, have))
    });
    let (storage, have) = opening.await??;
    let pieces_resumed = have.count();
    if let Some(f) = &opts.on_checked {
        f(pieces_resumed, num_pieces);
    }
    if opts.seed && pieces_resumed == 0 && opts.wanted.as_ref().is_some_and(|w| w.count() == 0) {
        anyhow::bail!(
            "none of the {num_pieces} pieces on disk matches the torrent's hashes: nothing to seed"
        );
    }
    let wanted = opts
        .wanted
        .clone()
        .unwrap_or_else(|| Bitfield::full(num_pieces));
    let mut picker = Picker::new(layout.piece_len, total_len, have, wanted);
    if let Some(v2) = layout.hashes.v2() {
        picker = picker.with_padding((0..num_pieces).map(|i| v2.data_len(i)).collect());
    }
    let (wake_tx, _) = watch::channel(0u64);
    let swarm = Arc::new(Swarm {
        config: SessionConfig {
            info_hash: layout.info_hash,
            peer_id: opts.peer_id,
            reserved: opts.reserved,
            num_pieces,
            timeouts: opts.timeouts.clone(),
            listen_port: opts.listen_port,
            observer: opts.observer.clone(),
            keep_serving: opts.seed,
        },
        piece_len: layout.piece_len,
        total_len,
        hashes: layout.hashes,
        storage,
        info_bytes: layout.info_bytes,
        downloaded: AtomicU64::new(0),
        uploaded: AtomicU64::new(0),
        wasted: AtomicU64::new(0),
        finished: AtomicBool::new(picker.is_complete()),
        state: Mutex::new(SwarmState {
            picker,
            have_log: Vec::new(),
            cancel_log: Vec::new(),
            banned: HashSet::new(),
            block_senders: HashMap::new(),
            suspects: HashMap::new(),
            block_checks: HashMap::new(),
            to_ask: Vec::new(),
            sources: HashSet::new(),
            served: HashSet::new(),
            choker: Choker::new(opts.upload_slots),
            pieces_failed: 0,
        }),
        wake_tx,
        cancel: opts.cancel.child_token(),
        done: tokio::sync::Notify::new(),
        disk_error: Mutex::new(None),
        pressure: AtomicU8::new(0),
        parked: AtomicUsize::new(0),
    });

    let bar = progress_bar(opts.progress, &swarm);
    let mut interrupted = false;
    if !swarm.is_finished() || opts.seed {
        interrupted = run_swarm(&swarm, source, &opts, bar.as_ref()).await?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // No fsync at the end: every byte is with the kernel already (a crash of this process
    // loses nothing), and after a crash of the machine the pieces are verified again on the
    // next start anyway. Waiting for the disk cost about 0.6 s per GiB, a quarter of a
    // loopback download; aria2, Transmission and libtorrent do not wait either.
    let s = swarm.lock();
    Ok(Summary {
        complete: s.picker.is_complete(),
        interrupted,
        bytes_downloaded: swarm.downloaded.load(Ordering::Relaxed),
        bytes_wasted: swarm.wasted.load(Ordering::Relaxed),
        bytes_uploaded: swarm.uploaded.load(Ordering::Relaxed),
        pieces_resumed,
        pieces_total: num_pieces,
        pieces_have: s.picker.have().count(),
        pieces_failed: s.pieces_failed,
        peers_used: s.sources.len(),
        peers_served: s.served.len(),
        peers_banned: s.banned.len(),
        elapsed: started.elapsed(),
    })
}

/// Connections allowed, as a multiple of `max_peers`, while some are parked (see
/// [`Pressure`]): useless connections free their slot for other peers up to this limit, then
/// end to make room.
const PARKED_FACTOR: usize = 4;

/// How long the last announce may take when we leave: `completed` after a finished download,
/// `stopped` after Ctrl-C (short: the command must end within a second).
const COMPLETED_ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(3);
const STOPPED_ANNOUNCE_TIMEOUT: Duration = Duration::from_millis(400);
/// How long sessions get to wind down (release their blocks, close cleanly) before they are
/// aborted.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
/// With nobody to talk to, ask the tracker again this soon.
const QUICK_ANNOUNCE: Duration = Duration::from_secs(2);

/// What the connection manager knows of the peers it heard of.
struct PeerBook {
    records: HashMap<SocketAddr, PeerRecord>,
    /// Peers to dial, in order.
    candidates: VecDeque<SocketAddr>,
    /// Failed peers to dial again at a time.
    retry: Vec<(Instant, SocketAddr)>,
    /// Peers with a session running.
    active: HashSet<SocketAddr>,
    /// Our own listening port: the tracker lists us too.
    listen_port: Option<u16>,
    max_retries: u32,
}

impl PeerBook {
    fn is_ourselves(&self, a: &SocketAddr) -> bool {
        Some(a.port()) == self.listen_port && (a.ip().is_loopback() || a.ip().is_unspecified())
    }

    /// Peers from a tracker or `--peer`: new ones are dialed; ones that failed too often get
    /// another chance, since someone lists them again.
    fn add(&mut self, list: &[SocketAddr]) {
        for &a in list {
            if self.is_ourselves(&a) {
                continue;
            }
            match self.records.entry(a) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(PeerRecord {
                        failures: 0,
                        tries: 0,
                        last_error: None,
                    });
                    self.candidates.push_back(a);
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    // listed again: another round of tries, after the delay its failures
                    // earned (a peer that closes every connection is not redialed every few
                    // seconds because the tracker keeps listing it)
                    let r = e.get_mut();
                    let queued = self.retry.iter().any(|(_, x)| *x == a);
                    if !self.active.contains(&a) && r.failures > self.max_retries && !queued {
                        r.failures = 0;
                        self.retry.push((Instant::now() + retry_delay(r.tries), a));
                    }
                }
            }
        }
    }

    /// Nobody to talk to now or soon.
    fn is_idle(&self) -> bool {
        self.active.is_empty() && self.candidates.is_empty() && self.retry.is_empty()
    }

    /// A session ended; a failed, unbanned peer is retried after a growing delay.
    fn ended(&mut self, addr: SocketAddr, error: Option<String>, may_retry: bool) {
        self.active.remove(&addr);
        let (Some(rec), Some(e)) = (self.records.get_mut(&addr), error) else {
            return;
        };
        rec.failures += 1;
        rec.tries += 1;
        rec.last_error = Some(e);
        if may_retry && rec.failures <= self.max_retries {
            self.retry
                .push((Instant::now() + retry_delay(rec.tries), addr));
        }
    }

    /// Moves peers whose retry time has come back to the candidates.
    fn due(&mut self, now: Instant) {
        let candidates = &mut self.candidates;
        self.retry.retain(|(t, a)| {
            if *t <= now {
                candidates.push_back(*a);
                false
            } else {
                true
            }
        });
    }

    /// Why each peer we tried failed, for the final error.
    fn failures(&self) -> String {
        let why: Vec<String> = self
            .records
            .iter()
            .filter_map(|(a, r)| {
                let e = r.last_error.as_ref()?;
                Some(match r.tries {
                    1 => format!("{a}: {e}"),
                    n => format!("{a}: {e} ({n} tries)"),
                })
            })
            .collect();
        if why.is_empty() {
            "none".to_string()
        } else {
            why.join("; ")
        }
    }
}

/// Bytes of the torrent we do not have (the `left` of an announce): of the whole torrent,
/// also when only some pieces are wanted (`download_piece`), so that a tracker never counts a
/// partial download as a seed.
fn left(swarm: &Swarm) -> u64 {
    let s = swarm.lock();
    let p = &s.picker;
    (0..p.num_pieces())
        .filter(|&i| !p.have().get(i))
        .map(|i| u64::from(p.piece_size(i)))
        .sum()
}

/// The announce task: `started`, then again every interval the tracker asks for (sooner when
/// the engine has nobody to talk to), each result sent to the engine. It never blocks the
/// engine: a silent tracker only delays its own peer lists. Returns the source for the last
/// announce, and whether the tracker ever answered.
async fn announce_loop(
    mut source: Box<dyn PeerSource>,
    swarm: Arc<Swarm>,
    results: mpsc::Sender<anyhow::Result<PeerList>>,
    soon: Arc<tokio::sync::Notify>,
    completed: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) -> (Box<dyn PeerSource>, bool) {
    let mut event = AnnounceEvent::Started;
    let mut answered = false;
    let mut interval = Duration::from_secs(30);
    loop {
        let d = swarm.downloaded.load(Ordering::Relaxed);
        let u = swarm.uploaded.load(Ordering::Relaxed);
        // a seed says `left=0`; a leecher at least 1, so that the tracker lists seeds to it
        let remaining = left(&swarm);
        let result = tokio::select! {
            r = source.announce(event, d, u, remaining) => r,
            _ = stop.cancelled() => return (source, answered),
        };
        if let Ok(list) = &result {
            answered = true;
            event = AnnounceEvent::Periodic;
            interval = list
                .interval
                .clamp(Duration::from_secs(5), Duration::from_secs(1800));
        }
        if results.send(result).await.is_err() {
            return (source, answered);
        }
        let last = Instant::now();
        let mut next = last + interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => break,
                _ = soon.notified() => next = next.min(last + QUICK_ANNOUNCE),
                // finished and seeding on: tell the tracker at once
                _ = completed.notified() => {
                    if answered && left(&swarm) == 0 {
                        event = AnnounceEvent::Completed;
                    }
                    break;
                }
                _ = stop.cancelled() => return (source, answered),
            }
        }
    }
}

/// Runs the swarm until every wanted piece is verified, the download is cancelled (returns
/// `true`), or it cannot go on (an error). The connection manager: dials peers from the
/// announce task and `--peer` (at once), accepts incoming peers, retries failed ones.
async fn run_swarm(
    swarm: &Arc<Swarm>,
    source: Box<dyn PeerSource>,
    opts: &Options,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<bool> {
    let mut book = PeerBook {
        records: HashMap::new(),
        candidates: VecDeque::new(),
        retry: Vec::new(),
        active: HashSet::new(),
        listen_port: opts.listen_port,
        max_retries: opts.peer_retries,
    };
    book.add(&opts.peers);
    let (results_tx, mut results) = mpsc::channel(4);
    let soon = Arc::new(tokio::sync::Notify::new());
    let completed = Arc::new(tokio::sync::Notify::new());
    let stop = CancellationToken::new();
    let announcer = tokio::spawn(announce_loop(
        source,
        swarm.clone(),
        results_tx,
        soon.clone(),
        completed.clone(),
        stop.clone(),
    ));
    let listener = match &opts.listener {
        Some(l) => {
            let l = l.try_clone()?;
            l.set_nonblocking(true)?;
            Some(tokio::net::TcpListener::from_std(l)?)
        }
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut incoming = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut announces_answered = 0u32;
    let mut idle_announces = 0u32;
    // no data for a while: say which peers were tried (see `STALL_REPORT`)
    let mut stall = Stall::new(swarm.downloaded.load(Ordering::Relaxed));
    // parked sessions (useless while others wait) free their slot, up to this many connections
    let hard_cap = opts
        .max_peers
        .saturating_mul(PARKED_FACTOR)
        .max(opts.max_peers);
    let outcome: anyhow::Result<bool> = loop {
        loop {
            let parked = swarm.parked.load(Ordering::Relaxed);
            let useful = book.active.len().saturating_sub(parked);
            if useful >= opts.max_peers || book.active.len() >= hard_cap {
                break;
            }
            let Some(addr) = book.candidates.pop_front() else {
                break;
            };
            if swarm.lock().banned.contains(&addr) || book.active.contains(&addr) {
                continue;
            }
            book.active.insert(addr);
            let sw = swarm.clone();
            tasks.spawn(async move { (addr, session::run(sw, addr).await) });
        }
        if swarm.is_finished() && !opts.seed {
            break Ok(false);
        }
        let pressure = if book.candidates.is_empty() || swarm.is_finished() {
            Pressure::None
        } else if book.active.len() >= hard_cap {
            Pressure::Full
        } else {
            Pressure::Waiting
        };
        swarm.pressure.store(pressure as u8, Ordering::Relaxed);
        // nobody to talk to: ask the tracker sooner, and give up after a while (a seed waits
        // for leechers instead)
        if book.is_idle() && incoming.is_empty() && !swarm.is_finished() {
            if idle_announces >= 6 {
                break Err(anyhow::anyhow!(
                    "no peer could provide the data ({} of {} pieces verified); peers tried: {}",
                    swarm.lock().picker.have().count(),
                    swarm.config.num_pieces,
                    book.failures()
                ));
            }
            soon.notify_one();
        }
        tokio::select! {
            accepted = accept(listener.as_ref()) => {
                if let Ok((stream, addr)) = accepted {
                    if incoming.len() < opts.max_peers {
                        incoming.spawn(serve_incoming(swarm.clone(), stream, addr));
                    } else {
                        tracing::info!(
                            "incoming {addr}: refused, {} peers connected (--max-peers {})",
                            incoming.len(),
                            opts.max_peers
                        );
                        tokio::spawn(refuse(swarm.clone(), stream));
                    }
                }
            }
            Some(_) = incoming.join_next() => {}
            Some(joined) = tasks.join_next() => {
                let Ok((addr, result)) = joined else { continue };
                let result_end = result.as_ref().ok();
                let error = result.as_ref().err().map(|e| {
                    tracing::info!("peer {addr}: {e}");
                    e.to_string()
                });
                // a session ended by our disk failing is no failure of the peer
                let error = error.filter(|_| !matches!(result_end, Some(SessionEnd::DiskError)));
                // a seed retries too: the peer may still want data
                let may_retry = !swarm.lock().banned.contains(&addr)
                    && (!swarm.is_finished() || opts.seed);
                book.ended(addr, error, may_retry);
            }
            Some(result) = results.recv() => {
                let idle = book.is_idle() && incoming.is_empty();
                match result {
                    Ok(list) => {
                        announces_answered += 1;
                        book.add(&list.peers);
                        // `--peer` peers count as listed again
                        book.add(&opts.peers);
                    }
                    // nothing else to try and the tracker never answered: that is the error
                    Err(e) if idle
                        && announces_answered == 0
                        && book.records.is_empty()
                        && !swarm.is_finished() =>
                    {
                        break Err(e);
                    }
                    Err(e) => tracing::warn!("announce failed: {e:#}"),
                }
                idle_announces = if idle { idle_announces + 1 } else { 0 };
            }
            _ = swarm.done.notified() => {
                if opts.seed {
                    tracing::info!("download complete; seeding until interrupted");
                    completed.notify_one();
                }
            }
            _ = tick.tick() => {
                book.due(Instant::now());
                if swarm.lock().choker.tick(Instant::now()) {
                    swarm.wake();
                }
                report_stall(&mut stall, swarm, &book);
                if let Some(b) = bar {
                    b.set_position(swarm.lock().picker.have().count() as u64 * swarm.piece_len);
                    b.set_message(format!("{} peers", book.active.len()));
                }
            }
            _ = opts.cancel.cancelled() => break Ok(true),
            // a disk error, or Ctrl-C seen through the child token first
            _ = swarm.cancel.cancelled() => break Ok(opts.cancel.is_cancelled()),
        }
    };
    let outcome = match swarm.disk_error() {
        Some(e) => Err(anyhow::Error::new(e)),
        None => outcome,
    };
    swarm.cancel.cancel();
    stop.cancel();
    // let sessions finish their current step and release their state
    let drain = async {
        while tasks.join_next().await.is_some() {}
        while incoming.join_next().await.is_some() {}
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    tasks.abort_all();
    incoming.abort_all();
    // the last announce, only to a tracker that answers (a silent one would only delay us)
    if let Ok((mut source, true)) = announcer.await {
        // `completed` only when the whole torrent is here (not after `download_piece`)
        let (ev, limit) = if swarm.is_finished() && !opts.seed && left(swarm) == 0 {
            (AnnounceEvent::Completed, COMPLETED_ANNOUNCE_TIMEOUT)
        } else {
            (AnnounceEvent::Stopped, STOPPED_ANNOUNCE_TIMEOUT)
        };
        let d = swarm.downloaded.load(Ordering::Relaxed);
        let u = swarm.uploaded.load(Ordering::Relaxed);
        let _ = tokio::time::timeout(limit, source.announce(ev, d, u, left(swarm))).await;
        tracing::debug!("announced {ev:?}");
    }
    outcome
}

/// When the download last made progress, and when to say so next if it does not.
struct Stall {
    bytes: u64,
    since: Instant,
    every: Duration,
    next: Instant,
}

impl Stall {
    fn new(bytes: u64) -> Self {
        let now = Instant::now();
        Stall {
            bytes,
            since: now,
            every: STALL_REPORT,
            next: now + STALL_REPORT,
        }
    }
}

/// With no piece data for a while and peers that failed: says which peers were tried and
/// what each did, then waits twice as long before saying it again. Data resets it.
fn report_stall(stall: &mut Stall, swarm: &Swarm, book: &PeerBook) {
    let now_bytes = swarm.downloaded.load(Ordering::Relaxed);
    if now_bytes != stall.bytes || swarm.is_finished() {
        *stall = Stall::new(now_bytes);
        return;
    }
    let now = Instant::now();
    if now < stall.next || book.records.values().all(|r| r.last_error.is_none()) {
        return;
    }
    tracing::warn!(
        "no piece data for {} s ({} of {} pieces verified, {} connected); peers tried: {}; \
         still waiting for peers",
        stall.since.elapsed().as_secs(),
        swarm.lock().picker.have().count(),
        swarm.config.num_pieces,
        book.active.len(),
        book.failures()
    );
    stall.every = (stall.every * 2).min(MAX_RETRY_DELAY);
    stall.next = now + stall.every;
}

/// Waits for the next incoming connection, forever when we do not listen.
async fn accept(
    l: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// A peer connected to us while we have `--max-peers` already: our handshake (so it knows it
/// reached the right torrent, and that we hang up on purpose), then close, reading what it
/// sent until it closes too (closing with unread data would reset the connection and could
/// lose our handshake); at most 1 s.
async fn refuse(swarm: Arc<Swarm>, mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = &swarm.config;
    let ours = crate::wire::Handshake::new(cfg.reserved, cfg.info_hash, cfg.peer_id).emit();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&ours).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A peer connected to us: read its handshake first. Anything but a plaintext BitTorrent
/// handshake for our torrent (e.g. aria2's MSE/PE encrypted attempt, which it retries in
/// plaintext) is closed right away.
async fn serve_incoming(swarm: Arc<Swarm>, stream: tokio::net::TcpStream, addr: SocketAddr) {
    let cfg = &swarm.config;
    let mut conn = match Conn::from_stream(stream, next_conn_id(), cfg.observer.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("incoming {addr}: {e}");
            return;
        }
    };
    let theirs = match tokio::time::timeout(cfg.timeouts.handshake, conn.read_handshake()).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::debug!(
                "incoming {addr}: not a plaintext BitTorrent handshake ({e}); closing (we do not speak MSE/PE encryption)"
            );
            conn.report_closed(Some(&format!("not a plaintext BitTorrent handshake: {e}")));
            return;
        }
        Err(_) => {
            conn.report_closed(Some("no handshake in time"));
            return;
        }
    };
    if theirs.info_hash != cfg.info_hash {
        tracing::debug!("incoming {addr}: wants another torrent; closing");
        conn.report_closed(Some("handshake for another torrent"));
        return;
    }
    if let Err(e) = session::run_on(swarm.clone(), conn, Some(theirs)).await {
        tracing::info!("incoming peer {addr}: {e}");
    }
}

fn progress_bar(enabled: bool, swarm: &Swarm) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(swarm.total_len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}
