//! The download engine: a swarm of peer sessions sharing one picker and one storage.
//!
//! ```text
//!  tracker ──► candidates ──► connection manager ──spawns──► peer sessions (one task each)
//!                                   ▲                               │ blocks
//!                                   └──── ended / banned ◄──────────┤
//!                                                                   ▼
//!                       Swarm { picker, storage } ◄── verify (blocking pool) ── piece complete
//! ```
//! The [`Swarm`] is the shared state: the picker under a mutex (held for microseconds), the
//! storage (positional I/O, no lock needed), counters, and a `watch` channel that wakes every
//! session when something changed that may give it work (a piece verified, blocks released,
//! endgame cancels). Sessions read the logs of verified pieces and cancels from a cursor, so a
//! wake-up is never lost and nothing is queued per peer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bitfield::Bitfield;
use crate::download::picker::Picker;
use crate::download::storage::Storage;
use crate::peer::conn::{Conn, ConnObserver};
use crate::peer::session::{self, Timeouts};
use crate::wire::{BlockRef, Reserved};

/// The shape of a torrent's data, as the engine needs it.
#[derive(Debug, Clone)]
pub struct Layout {
    pub info_hash: [u8; 20],
    pub piece_len: u64,
    pub hashes: Vec<[u8; 20]>,
    /// Final file paths and lengths, in metainfo order.
    pub files: Vec<(PathBuf, u64)>,
    /// The raw `info` dictionary, served to peers that ask for metadata (BEP 9).
    pub info_bytes: Option<Vec<u8>>,
}

impl Layout {
    pub fn total_len(&self) -> u64 {
        self.files.iter().map(|f| f.1).sum()
    }
}

/// Shared state of one torrent's swarm.
pub struct Swarm {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    /// The reserved bits of our handshake.
    pub reserved: Reserved,
    pub num_pieces: u32,
    pub piece_len: u64,
    pub total_len: u64,
    pub hashes: Vec<[u8; 20]>,
    pub storage: Storage,
    pub observer: Option<Arc<dyn ConnObserver>>,
    pub timeouts: Timeouts,
    pub listen_port: Option<u16>,
    pub info_bytes: Option<Vec<u8>>,
    pub downloaded: AtomicU64,
    pub uploaded: AtomicU64,
    pub wasted: AtomicU64,
    state: Mutex<SwarmState>,
    wake_tx: watch::Sender<u64>,
    cancel: CancellationToken,
    finished: AtomicBool,
    done: tokio::sync::Notify,
}

/// The part of the swarm behind the lock.
pub struct SwarmState {
    pub picker: Picker,
    /// Pieces verified since start, in order (sessions send `have` from a cursor).
    pub have_log: Vec<u32>,
    /// Endgame blocks that arrived while others also had them outstanding.
    pub cancel_log: Vec<BlockRef>,
    /// Peers that sent bad data.
    pub banned: HashSet<SocketAddr>,
    contributors: HashMap<u32, Vec<SocketAddr>>,
    strikes: HashMap<SocketAddr, u32>,
    /// Peers that sent us at least one useful block.
    sources: HashSet<SocketAddr>,
    pub pieces_failed: u32,
}

impl SwarmState {
    /// Remembers that `addr` sent a block of piece `index` (to blame it if the hash fails).
    pub fn note_contributor(&mut self, index: u32, addr: SocketAddr) {
        self.sources.insert(addr);
        let v = self.contributors.entry(index).or_default();
        if !v.contains(&addr) {
            v.push(addr);
        }
    }
}

impl Swarm {
    pub fn lock(&self) -> MutexGuard<'_, SwarmState> {
        // a panic in another task must not wedge the download: take the state anyway
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every session (something may have work for them).
    pub fn wake(&self) {
        self.wake_tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake_tx.subscribe()
    }

    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// A fresh connection id, unique in the process ([`crate::peer::conn::next_conn_id`]).
    pub fn next_conn_id(&self) -> u64 {
        crate::peer::conn::next_conn_id()
    }

    pub fn metadata_size(&self) -> Option<usize> {
        self.info_bytes.as_ref().map(Vec::len)
    }

    pub fn piece_size(&self, index: u32) -> u32 {
        self.storage.piece_range(index).1 as u32
    }

    /// Hashes a complete piece on disk and records the verdict. Runs on the blocking pool.
    pub fn verify_piece(&self, index: u32) {
        let mut buf = Vec::new();
        let ok = match self.storage.hash_piece(index, &mut buf) {
            Ok(h) => h == self.hashes[index as usize],
            Err(e) => {
                tracing::error!("reading piece {index} back failed: {e}");
                false
            }
        };
        let mut s = self.lock();
        let contributors = s.contributors.remove(&index).unwrap_or_default();
        if ok {
            s.picker.verified(index);
            s.have_log.push(index);
            if s.picker.is_complete() {
                self.finished.store(true, Ordering::Release);
                self.done.notify_one();
            }
        } else {
            s.picker.failed(index);
            s.pieces_failed += 1;
            tracing::warn!(
                "piece {index} failed SHA-1 verification (blocks from {contributors:?}); fetching it again"
            );
            // A lone contributor is certainly guilty; among several, ban on a second strike.
            for addr in &contributors {
                let strikes = s.strikes.entry(*addr).or_insert(0);
                *strikes += 1;
                if contributors.len() == 1 || *strikes >= 2 {
                    s.banned.insert(*addr);
                }
            }
        }
        drop(s);
        self.wake();
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
    /// Pieces to fetch; `None` = all.
    pub wanted: Option<Bitfield>,
    /// Show a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    pub observer: Option<Arc<dyn ConnObserver>>,
    /// Cancelled on Ctrl-C by the CLI.
    pub cancel: CancellationToken,
    /// How many times to retry a peer that failed (not one that was banned).
    pub peer_retries: u32,
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
            wanted: None,
            progress: false,
            observer: None,
            cancel: CancellationToken::new(),
            peer_retries: 3,
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
    pub peers_banned: usize,
    pub elapsed: Duration,
}

struct PeerRecord {
    failures: u32,
    last_error: Option<String>,
}

/// Downloads (the wanted pieces of) a torrent into its files, resuming from what is on disk.
pub async fn download(
    layout: Layout,
    mut source: Box<dyn PeerSource>,
    opts: Options,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let total_len = layout.total_len();
    let num_pieces = layout.hashes.len() as u32;
    // open the files and, when resuming, hash what is already there (blocking work)
    let (files, piece_len, hashes) = (
        layout.files.clone(),
        layout.piece_len,
        layout.hashes.clone(),
    );
    let (storage, have) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let storage = Storage::open(&files, piece_len)?;
        let have = if storage.existed() {
            storage.check_existing(&hashes)?
        } else {
            Bitfield::new(hashes.len() as u32)
        };
        Ok((storage, have))
    })
    .await??;
    let pieces_resumed = have.count();
    let wanted = opts
        .wanted
        .clone()
        .unwrap_or_else(|| Bitfield::full(num_pieces));
    let picker = Picker::new(layout.piece_len, total_len, have, wanted);
    let (wake_tx, _) = watch::channel(0u64);
    let swarm = Arc::new(Swarm {
        info_hash: layout.info_hash,
        peer_id: opts.peer_id,
        reserved: opts.reserved,
        num_pieces,
        piece_len: layout.piece_len,
        total_len,
        hashes: layout.hashes,
        storage,
        observer: opts.observer.clone(),
        timeouts: opts.timeouts.clone(),
        listen_port: opts.listen_port,
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
            contributors: HashMap::new(),
            strikes: HashMap::new(),
            sources: HashSet::new(),
            pieces_failed: 0,
        }),
        wake_tx,
        cancel: opts.cancel.child_token(),
        done: tokio::sync::Notify::new(),
    });

    let left = |sw: &Swarm| -> u64 {
        let s = sw.lock();
        let p = &s.picker;
        (0..p.num_pieces())
            .filter(|&i| p.wants(i))
            .map(|i| u64::from(p.piece_size(i)))
            .sum()
    };

    let bar = progress_bar(opts.progress, &swarm);
    let mut interrupted = false;
    if !swarm.is_finished() {
        let first = source
            .announce(AnnounceEvent::Started, 0, 0, left(&swarm).max(1))
            .await?;
        if first.peers.is_empty() {
            tracing::warn!("the tracker returned no peers yet; will ask again");
        }
        let mut records: HashMap<SocketAddr, PeerRecord> = HashMap::new();
        let mut candidates: VecDeque<SocketAddr> = VecDeque::new();
        let mut retry: Vec<(Instant, SocketAddr)> = Vec::new();
        let add_peers = |list: &[SocketAddr],
                         records: &mut HashMap<SocketAddr, PeerRecord>,
                         candidates: &mut VecDeque<SocketAddr>| {
            for a in list {
                if let std::collections::hash_map::Entry::Vacant(e) = records.entry(*a) {
                    e.insert(PeerRecord {
                        failures: 0,
                        last_error: None,
                    });
                    candidates.push_back(*a);
                }
            }
        };
        add_peers(&first.peers, &mut records, &mut candidates);
        let mut interval = first
            .interval
            .clamp(Duration::from_secs(5), Duration::from_secs(1800));
        let mut next_announce = Instant::now() + interval;
        let mut quick_announces = 0u32;
        let mut tasks = tokio::task::JoinSet::new();
        let mut active: HashSet<SocketAddr> = HashSet::new();
        let listener = match &opts.listener {
            Some(l) => {
                let l = l.try_clone()?;
                l.set_nonblocking(true)?;
                Some(tokio::net::TcpListener::from_std(l)?)
            }
            None => None,
        };
        let mut incoming = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            while active.len() < opts.max_peers {
                let Some(addr) = candidates.pop_front() else {
                    break;
                };
                if swarm.lock().banned.contains(&addr) || active.contains(&addr) {
                    continue;
                }
                active.insert(addr);
                let sw = swarm.clone();
                tasks.spawn(async move { (addr, session::run(sw, addr).await) });
            }
            if swarm.is_finished() {
                break;
            }
            // nobody to talk to: ask the tracker sooner, and give up after a while
            if active.is_empty() && candidates.is_empty() && retry.is_empty() {
                if quick_announces >= 6 {
                    let why: Vec<String> = records
                        .iter()
                        .filter_map(|(a, r)| r.last_error.as_ref().map(|e| format!("{a}: {e}")))
                        .collect();
                    anyhow::bail!(
                        "no peer could provide the data ({} of {} pieces verified); peers tried: {}",
                        swarm.lock().picker.have().count(),
                        num_pieces,
                        if why.is_empty() { "none".to_string() } else { why.join("; ") }
                    );
                }
                next_announce = next_announce.min(Instant::now() + Duration::from_secs(2));
            }
            tokio::select! {
                accepted = accept(listener.as_ref()) => {
                    if let Ok((stream, addr)) = accepted {
                        if incoming.len() < opts.max_peers {
                            incoming.spawn(serve_incoming(swarm.clone(), stream, addr));
                        }
                    }
                }
                Some(_) = incoming.join_next() => {}
                Some(joined) = tasks.join_next() => {
                    let Ok((addr, result)) = joined else { continue };
                    active.remove(&addr);
                    if let Some(rec) = records.get_mut(&addr) {
                        match result {
                            Ok(_) => {}
                            Err(e) => {
                                tracing::info!("peer {addr}: {e}");
                                rec.failures += 1;
                                rec.last_error = Some(e.to_string());
                                let banned = swarm.lock().banned.contains(&addr);
                                if !banned && rec.failures <= opts.peer_retries && !swarm.is_finished() {
                                    let backoff = Duration::from_millis(500 << rec.failures.min(6));
                                    retry.push((Instant::now() + backoff, addr));
                                }
                            }
                        }
                    }
                }
                _ = swarm.done.notified() => {}
                _ = tokio::time::sleep_until(next_announce.into()) => {
                    let (d, u) = (swarm.downloaded.load(Ordering::Relaxed), swarm.uploaded.load(Ordering::Relaxed));
                    match source.announce(AnnounceEvent::Periodic, d, u, left(&swarm).max(1)).await {
                        Ok(list) => {
                            interval = list.interval.clamp(Duration::from_secs(5), Duration::from_secs(1800));
                            // peers that failed before get another chance when the tracker lists them again
                            for a in &list.peers {
                                if let Some(r) = records.get_mut(a) {
                                    if !active.contains(a) && r.failures > opts.peer_retries {
                                        r.failures = 0;
                                        candidates.push_back(*a);
                                    }
                                }
                            }
                            add_peers(&list.peers, &mut records, &mut candidates);
                        }
                        Err(e) => tracing::warn!("announce failed: {e:#}"),
                    }
                    if active.is_empty() && candidates.is_empty() && retry.is_empty() {
                        quick_announces += 1;
                    } else {
                        quick_announces = 0;
                    }
                    next_announce = Instant::now() + interval;
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    retry.retain(|(t, a)| {
                        if *t <= now { candidates.push_back(*a); false } else { true }
                    });
                    if let Some(b) = &bar {
                        b.set_position(swarm.lock().picker.have().count() as u64 * swarm.piece_len);
                        b.set_message(format!("{} peers", active.len()));
                    }
                }
                _ = opts.cancel.cancelled() => { interrupted = true; break; }
            }
        }
        swarm.cancel.cancel();
        // let sessions finish their current step and release their state
        let drain = async {
            while tasks.join_next().await.is_some() {}
            while incoming.join_next().await.is_some() {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        tasks.abort_all();
        incoming.abort_all();
        let d = swarm.downloaded.load(Ordering::Relaxed);
        let u = swarm.uploaded.load(Ordering::Relaxed);
        let ev = if swarm.is_finished() {
            AnnounceEvent::Completed
        } else {
            AnnounceEvent::Stopped
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            source.announce(ev, d, u, left(&swarm)),
        )
        .await;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    swarm.storage.sync()?;
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
        peers_banned: s.banned.len(),
        elapsed: started.elapsed(),
    })
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

/// A peer connected to us: read its handshake first. Anything but a plaintext BitTorrent
/// handshake for our torrent (e.g. aria2's MSE/PE encrypted attempt, which it retries in
/// plaintext) is closed right away.
async fn serve_incoming(swarm: Arc<Swarm>, stream: tokio::net::TcpStream, addr: SocketAddr) {
    let id = swarm.next_conn_id();
    let mut conn = match Conn::from_stream(stream, id, swarm.observer.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("incoming {addr}: {e}");
            return;
        }
    };
    let theirs = match tokio::time::timeout(swarm.timeouts.handshake, conn.read_handshake()).await {
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
    if theirs.info_hash != swarm.info_hash {
        tracing::debug!("incoming {addr}: wants another torrent; closing");
        conn.report_closed(Some("handshake for another torrent"));
        return;
    }
    if let Err(e) = session::run_on(swarm, conn, Some(theirs)).await {
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
