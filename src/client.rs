//! The client commands as library functions: `peers`, `handshake`, `download_piece`,
//! `download`, `seed`, and the magnet-link forms (`magnet_handshake`, `magnet_info`,
//! `magnet_download_piece`, `magnet_download`). The CLI formats their results; tests and the
//! demo call them directly.
//!
//! A magnet command first finds peers (the link's `tr` trackers, its `x.pe` peers and
//! `--peer`), fetches the info dictionary from one of them ([`crate::metadata`]), and then runs
//! exactly the same download code as a `.torrent` file, advertising only the extension
//! protocol in the handshake ([`Reserved::EXTENSION_ONLY`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;

use crate::bitfield::Bitfield;
use crate::download::engine::{self, Layout, Options, Summary};
use crate::download::source::TrackerSource;
use crate::download::storage::DiskFile;
use crate::download::verify::PieceHashes;
use crate::magnet::Magnet;
use crate::metadata::{self, ExtendedPeer, MetadataError};
use crate::metainfo::Torrent;
use crate::peer::conn::{next_conn_id, Conn, ConnObserver};
use crate::tracker::{Event, Tiers, TrackerObserver};
use crate::wire::{Handshake, Reserved};

/// The port we announce when not told otherwise.
pub const DEFAULT_PORT: u16 = 6881;

/// Settings shared by the networked commands.
#[derive(Clone)]
pub struct ClientConfig {
    pub peer_id: [u8; 20],
    pub port: u16,
    /// The address our listening socket binds (every interface by default; the demo keeps
    /// its swarm on 127.0.0.1).
    pub listen_ip: std::net::IpAddr,
    pub max_peers: usize,
    /// Peers to use besides (or instead of) the tracker's.
    pub extra_peers: Vec<SocketAddr>,
    pub progress: bool,
    /// Handshake reserved bits of downloads; `None` = the engine's default (fast extension and
    /// extension protocol). The magnet commands use [`Reserved::EXTENSION_ONLY`].
    pub reserved: Option<Reserved>,
    pub conn_observer: Option<Arc<dyn ConnObserver>>,
    pub tracker_observer: Option<Arc<std::sync::Mutex<dyn TrackerObserver>>>,
    pub cancel: tokio_util::sync::CancellationToken,
    /// Keep seeding after a download completes, until `cancel` (`download --seed`).
    pub seed: bool,
    /// Regular upload slots of the choker (`--upload-slots`).
    pub upload_slots: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            peer_id: crate::peer_id(),
            port: DEFAULT_PORT,
            listen_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            max_peers: 50,
            extra_peers: Vec::new(),
            progress: false,
            reserved: None,
            conn_observer: None,
            tracker_observer: None,
            cancel: Default::default(),
            seed: false,
            upload_slots: crate::download::choker::DEFAULT_SLOTS,
        }
    }
}

struct SharedObserver(Arc<std::sync::Mutex<dyn TrackerObserver>>);

impl TrackerObserver for SharedObserver {
    fn http_exchange(&mut self, ex: &crate::tracker::HttpExchange) {
        if let Ok(mut o) = self.0.lock() {
            o.http_exchange(ex)
        }
    }
    fn udp_datagram(&mut self, d: &crate::tracker::UdpDatagram) {
        if let Ok(mut o) = self.0.lock() {
            o.udp_datagram(d)
        }
    }
    fn tls_exchange(&mut self, ex: &crate::tracker::TlsExchange) {
        if let Ok(mut o) = self.0.lock() {
            o.tls_exchange(ex)
        }
    }
}

fn tracker_source(t: &Torrent, cfg: &ClientConfig, port: u16) -> TrackerSource {
    tracker_source_for(
        Tiers::new(t.announce.as_deref(), &t.tiers()),
        t.info_hash,
        cfg,
        port,
    )
}

fn tracker_source_for(
    tiers: Tiers,
    info_hash: [u8; 20],
    cfg: &ClientConfig,
    port: u16,
) -> TrackerSource {
    let mut src = TrackerSource::new(tiers, info_hash, cfg.peer_id, port);
    if let Some(o) = &cfg.tracker_observer {
        src.observer = Box::new(SharedObserver(o.clone()));
    }
    src
}

/// Asks the torrent's trackers for peers (`bt-trace peers`).
pub async fn peers(t: &Torrent, cfg: &ClientConfig) -> Result<Vec<SocketAddr>> {
    let mut src = tracker_source(t, cfg, cfg.port);
    if src.tiers.tiers().is_empty() {
        bail!("the torrent names no tracker");
    }
    let left = t.info.total_length.max(1);
    let (_, resp) = src.announce_once(Event::Started, 0, 0, left).await?;
    // we only asked: leave, so that the tracker does not hand us out to others
    leave(&mut src, left).await;
    Ok(resp.peers)
}

/// Connects to a peer and exchanges handshakes (`bt-trace handshake`). `reserved` is what we
/// advertise: the course's peers accept all zeros or [`Reserved::EXTENSION_ONLY`].
pub async fn handshake(
    addr: SocketAddr,
    info_hash: [u8; 20],
    reserved: Reserved,
    cfg: &ClientConfig,
) -> Result<Handshake> {
    let mut conn = Conn::connect(
        addr,
        Duration::from_secs(5),
        next_conn_id(),
        cfg.conn_observer.clone(),
    )
    .await?; // its error names the address
    let ours = Handshake::new(reserved, info_hash, cfg.peer_id);
    let theirs = conn
        .handshake(&ours, Duration::from_secs(10))
        .await
        .with_context(|| format!("handshake with {addr}"))?;
    conn.shutdown().await;
    Ok(theirs)
}

/// Where each file of `t`'s byte space goes: for a single-file torrent `out` is the file
/// itself; for a multi-file torrent `out` is the directory the torrent's files go into, at
/// their sanitized paths. Symlinks are not in the byte space (see [`make_symlinks`]).
pub fn file_layout(t: &Torrent, out: &Path) -> Vec<DiskFile> {
    if t.info.multi_file {
        t.info
            .files
            .iter()
            .filter(|f| f.symlink.is_none())
            .map(|f| DiskFile {
                path: out.join(f.relative_path()),
                length: f.length,
                padding: f.padding,
                executable: f.executable,
            })
            .collect()
    } else {
        // the file, and for a v2 torrent the padding to its last piece's end (never written)
        t.info
            .files
            .iter()
            .map(|f| DiskFile {
                path: out.to_path_buf(),
                length: f.length,
                padding: f.padding,
                executable: f.executable,
            })
            .collect()
    }
}

/// Creates the BEP 47 symlinks of a multi-file torrent under `out`: only those whose target
/// stays inside the torrent (the others were warned about when it was read), and never over
/// something that is already there (a warning instead). Blocking file-system work.
fn make_symlinks(t: &Torrent, out: &Path) {
    for f in t.info.files.iter().filter(|_| t.info.multi_file) {
        let Some(target) = f.symlink.as_ref().and_then(|l| l.target.as_ref()) else {
            continue;
        };
        let link = out.join(f.relative_path());
        if std::fs::symlink_metadata(&link).is_ok_and(|m| {
            m.file_type().is_symlink() && std::fs::read_link(&link).ok().as_ref() == Some(target)
        }) {
            continue;
        }
        let made = link
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::os::unix::fs::symlink(target, &link));
        if let Err(e) = made {
            tracing::warn!("symlink {} -> {}: {e}", link.display(), target.display());
        }
    }
}

/// The engine's view of `t`: for a v2-only torrent, each file's piece layer is checked against
/// its `pieces root` here, before any file is opened (a mismatch refuses the torrent).
fn layout(t: &Torrent, files: Vec<DiskFile>) -> Result<Layout> {
    Ok(Layout {
        info_hash: t.info_hash,
        piece_len: t.info.piece_length,
        hashes: PieceHashes::of(t)?,
        files,
        info_bytes: Some(t.info.raw_bytes().to_vec()),
    })
}

/// Binds our listening socket: the asked port, or any free one when it is taken (two
/// `download_piece` runs at once). Returns the socket and the port to announce.
fn listen(ip: std::net::IpAddr, port: u16) -> (Option<Arc<std::net::TcpListener>>, u16) {
    let bound = bind_listener(ip, port).or_else(|_| bind_listener(ip, 0));
    match bound.and_then(|l| Ok((l.local_addr()?.port(), l))) {
        Ok((p, l)) => (Some(Arc::new(l)), p),
        Err(e) => {
            tracing::warn!("cannot listen for incoming peers: {e}");
            (None, port)
        }
    }
}

/// Connections the kernel queues for us before we accept them. The standard library's 128 is
/// too few for a seed that 200 peers dial at once: the SYNs beyond the queue are dropped and
/// those peers connect only after their 1 s retransmission (tests/it/load.rs).
const LISTEN_BACKLOG: u32 = 1024;

/// A listening socket on `ip:port` (with `SO_REUSEADDR`, as the standard library's) whose
/// accept queue holds [`LISTEN_BACKLOG`] connections. Needs the runtime (called from the async
/// commands); the socket is handed back as a standard one.
fn bind_listener(ip: std::net::IpAddr, port: u16) -> std::io::Result<std::net::TcpListener> {
    let socket = match ip {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind((ip, port).into())?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

fn options(t: &Torrent, cfg: &ClientConfig, wanted: Option<Bitfield>) -> Options {
    let (listener, port) = listen(cfg.listen_ip, cfg.port);
    let mut o = Options {
        peer_id: cfg.peer_id,
        max_peers: cfg.max_peers,
        listen_port: Some(port),
        listener,
        wanted,
        progress: cfg.progress,
        observer: cfg.conn_observer.clone(),
        cancel: cfg.cancel.clone(),
        peers: cfg.extra_peers.clone(),
        seed: cfg.seed,
        upload_slots: cfg.upload_slots,
        ..Options::default()
    };
    if let Some(r) = cfg.reserved {
        o.reserved = r;
    }
    if !t.info.has_v1() {
        // BEP 52: we speak v2 (reserved byte 7, 0x10). Only for a v2-only torrent: a hybrid
        // downloads through v1, and with the bit set the hybrid download from a libtorrent
        // 2.0.8 seeder in tests/it/magnet_v2.rs did not complete
        o.reserved.0[7] |= 0x10;
    }
    o
}

/// Downloads the whole torrent into `out` (`bt-trace download`), resuming from what is there.
pub async fn download(t: &Torrent, out: &Path, cfg: &ClientConfig) -> Result<Summary> {
    let opts = options(t, cfg, None);
    let source = tracker_source(t, cfg, opts.listen_port.unwrap_or(cfg.port));
    if source.tiers.tiers().is_empty() && opts.peers.is_empty() {
        bail!("the torrent names no tracker; give peers with --peer IP:PORT");
    }
    let layout = layout(t, file_layout(t, out))?;
    let (links, dir) = (t.clone(), out.to_path_buf());
    tokio::task::spawn_blocking(move || make_symlinks(&links, &dir)).await?;
    engine::download(layout, Box::new(source), opts).await
}

/// Downloads the pieces in `wanted` into `out` from `cfg.extra_peers` only, never asking a
/// tracker (the reproducible demo's phases, each from one seeder: `docs/demo.md`).
pub async fn download_from_peers(
    t: &Torrent,
    out: &Path,
    cfg: &ClientConfig,
    wanted: Bitfield,
) -> Result<Summary> {
    let opts = options(t, cfg, Some(wanted));
    if opts.peers.is_empty() {
        bail!("no peer to download from");
    }
    let port = opts.listen_port.unwrap_or(cfg.port);
    let source = tracker_source_for(Tiers::new(None, &[]), t.info_hash, cfg, port);
    engine::download(layout(t, file_layout(t, out))?, Box::new(source), opts).await
}

/// Downloads one piece and writes its bytes to `out` (`bt-trace download_piece`). The
/// torrent's files are staged sparsely in a hidden directory beside `out`, removed afterwards.
pub async fn download_piece(
    t: &Torrent,
    index: u32,
    out: &Path,
    cfg: &ClientConfig,
) -> Result<Summary> {
    let n = t.info.piece_count() as u32;
    if index >= n {
        bail!(
            "piece index {index} is out of range: the torrent has {n} pieces (0..={})",
            n - 1
        );
    }
    let mut wanted = Bitfield::new(n);
    wanted.set(index);
    let opts = options(t, cfg, Some(wanted));
    let source = tracker_source(t, cfg, opts.listen_port.unwrap_or(cfg.port));
    if source.tiers.tiers().is_empty() && opts.peers.is_empty() {
        bail!("the torrent names no tracker; give peers with --peer IP:PORT");
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(".bt-trace-piece-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    let files = file_layout(t, &stage.path().join("data"));
    let layout = layout(t, files.clone())?;
    // a v2 piece is its file's bytes; the padding after them is not written out
    let data_len = layout.hashes.v2().map(|v2| v2.data_len(index) as usize);
    let summary = engine::download(layout, Box::new(source), opts).await?;
    // copy the piece out and remove the staging files, off the async workers
    let (complete, piece_len, out) = (summary.complete, t.info.piece_length, out.to_path_buf());
    tokio::task::spawn_blocking(move || -> Result<()> {
        if complete {
            let storage = crate::download::storage::Storage::open(&files, piece_len)?;
            let (start, len) = storage.piece_range(index);
            let mut buf = vec![0; data_len.unwrap_or(len).min(len)];
            storage.read_at(start, &mut buf)?;
            std::fs::write(&out, &buf).with_context(|| format!("writing {}", out.display()))?;
        }
        drop(stage);
        Ok(())
    })
    .await??;
    Ok(summary)
}

/// Seeds the torrent from the data at `data` (`bt-trace seed`; `data` as `-o` of
/// [`download`]) until `cfg.cancel`: checks every piece first (only verified pieces are
/// served; `on_checked` is told how many), announces `started`, re-announces at the tracker's
/// interval and `stopped` at the end, accepts peers on `cfg.port` and dials `--peer`. Fails
/// at once when a file is missing or has the wrong length, or when no piece verifies.
pub async fn seed(
    t: &Torrent,
    data: &Path,
    cfg: &ClientConfig,
    on_checked: Arc<dyn Fn(u32, u32) + Send + Sync>,
) -> Result<Summary> {
    let layout = layout(t, file_layout(t, data))?;
    let files = layout.files.clone();
    tokio::task::spawn_blocking(move || check_data_files(&files)).await??;
    let mut cfg = cfg.clone();
    cfg.seed = true;
    // serve only: nothing is wanted, so nothing is written
    let mut opts = options(t, &cfg, Some(Bitfield::new(t.info.piece_count() as u32)));
    opts.on_checked = Some(on_checked);
    let source = tracker_source(t, &cfg, opts.listen_port.unwrap_or(cfg.port));
    engine::download(layout, Box::new(source), opts).await
}

/// Every file of the torrent must be there, at its length, before we seed it (a missing file
/// would otherwise be created empty).
fn check_data_files(files: &[DiskFile]) -> Result<()> {
    for DiskFile {
        path, length: len, ..
    } in files.iter().filter(|f| !f.padding)
    {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("the data to seed is missing: {}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "the data to seed is missing: {} is not a file",
                path.display()
            );
        }
        if meta.len() != *len {
            bail!(
                "the data to seed does not match the torrent: {} has {} bytes, the torrent says {len}",
                path.display(),
                meta.len()
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Magnet links

/// How many peers we try at once when fetching metadata.
const METADATA_PARALLEL: usize = 3;

/// The peers of a magnet link as they become known: `--peer` and the link's `x.pe` at once,
/// then what its trackers return (announcing `left` = the link's `xl`, or 1 since the length
/// is not known yet), from a task of its own so that a silent tracker delays nobody. The
/// receiver ends when the announce is done; a failed announce sends its error. Once the
/// receiver is dropped, a tracker that answered is told `stopped` (await the returned
/// [`Leave`]), so that it does not hand out a peer that is gone.
fn magnet_peers(
    m: &Magnet,
    cfg: &ClientConfig,
) -> Result<(mpsc::Receiver<Result<Vec<SocketAddr>>>, Leave)> {
    let mut known = cfg.extra_peers.clone();
    for p in m.peer_addrs() {
        if !known.contains(&p) {
            known.push(p);
        }
    }
    if m.trackers.is_empty() && known.is_empty() {
        bail!("the magnet link names no tracker (`tr`) and no peer (`x.pe`); give peers with --peer IP:PORT");
    }
    let (tx, rx) = mpsc::channel(2);
    let mut src = tracker_source_for(Tiers::new(None, &m.tiers()), m.info_hash, cfg, cfg.port);
    let left = m.exact_length.unwrap_or(1).max(1);
    let has_trackers = !m.trackers.is_empty();
    let task = tokio::spawn(async move {
        if !known.is_empty() && tx.send(Ok(known)).await.is_err() {
            return;
        }
        if has_trackers {
            // nobody listens any more (metadata found, or interrupted): stop asking
            let r = tokio::select! {
                r = src.announce_once(Event::Started, 0, 0, left) => r,
                _ = tx.closed() => return,
            };
            let answered = r.is_ok();
            let _ = tx.send(r.map(|(_, resp)| resp.peers)).await;
            if answered {
                tx.closed().await;
                leave(&mut src, left).await;
            }
        }
    });
    Ok((rx, Leave(task)))
}

/// How long a `stopped` announce may take when a command leaves.
const STOPPED_TIMEOUT: Duration = Duration::from_millis(500);

/// Tells the trackers we are gone (`stopped`), giving up after [`STOPPED_TIMEOUT`].
async fn leave(src: &mut TrackerSource, left: u64) {
    let stopped = src.announce_once(Event::Stopped, 0, 0, left);
    if let Ok(Err(e)) = tokio::time::timeout(STOPPED_TIMEOUT, stopped).await {
        tracing::debug!("the `stopped` announce failed: {e:#}");
    }
}

/// The `stopped` announce of [`magnet_peers`], sent once its receiver is gone.
struct Leave(tokio::task::JoinHandle<()>);

impl Leave {
    /// Waits (boundedly) until the `stopped` announce is sent; the receiver must be dropped.
    async fn done(self) {
        let _ = tokio::time::timeout(STOPPED_TIMEOUT * 2, self.0).await;
    }
}

fn local(cfg: &ClientConfig) -> metadata::Local {
    metadata::Local {
        peer_id: cfg.peer_id,
        // nothing listens while we fetch metadata: announcing a port would be a lie (and libtorrent
        // drops a second connection that claims the same ip:port)
        port: None,
        observer: cfg.conn_observer.clone(),
        timeouts: metadata::Timeouts::default(),
    }
}

/// Runs `attempt` on the peers as they arrive, `METADATA_PARALLEL` at a time, and returns the
/// first success. When all fail, the error lists each peer's reason; when there was no peer
/// at all, it is the tracker's error.
async fn first_success<T, F, Fut>(
    mut peers: mpsc::Receiver<Result<Vec<SocketAddr>>>,
    attempt: F,
) -> Result<T>
where
    T: Send + 'static,
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<T, MetadataError>> + Send + 'static,
{
    let mut pending = std::collections::VecDeque::new();
    let mut seen = std::collections::HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut errors = Vec::new();
    let mut tracker_error = None;
    let mut more_peers = true;
    loop {
        while tasks.len() < METADATA_PARALLEL {
            let Some(addr) = pending.pop_front() else {
                break;
            };
            let fut = attempt(addr);
            tasks.spawn(async move { (addr, fut.await) });
        }
        if tasks.is_empty() && !more_peers {
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => match joined {
                Ok((_, Ok(v))) => {
                    tasks.abort_all();
                    return Ok(v);
                }
                Ok((addr, Err(e))) => {
                    tracing::info!("peer {addr}: {e}");
                    errors.push(format!("{addr}: {e}"));
                }
                Err(e) => errors.push(format!("task failed: {e}")),
            },
            got = peers.recv(), if more_peers => match got {
                Some(Ok(list)) => pending.extend(list.into_iter().filter(|a| seen.insert(*a))),
                Some(Err(e)) => {
                    tracing::warn!("{e:#}");
                    tracker_error = Some(e);
                }
                None => more_peers = false,
            },
        }
    }
    match tracker_error {
        Some(e) if seen.is_empty() => Err(e),
        _ if seen.is_empty() => bail!("the tracker returned no peers for this magnet link"),
        _ => bail!("no peer could give us the metadata: {}", errors.join("; ")),
    }
}

/// Connects to the magnet link's peers until one completes the handshake and the extended
/// handshake with `ut_metadata` (`bt-trace magnet_handshake`).
pub async fn magnet_handshake(m: &Magnet, cfg: &ClientConfig) -> Result<ExtendedPeer> {
    let (peers, leave) = magnet_peers(m, cfg)?;
    let local = local(cfg);
    let info_hash = m.info_hash;
    let found = first_success(peers, move |addr| {
        let local = local.clone();
        async move {
            let (mut conn, peer) = metadata::connect_extended(addr, info_hash, &local).await?;
            conn.shutdown().await;
            if peer.ut_metadata_id().is_none() {
                return Err(MetadataError::NoUtMetadata(peer.extended.to_string()));
            }
            Ok(peer)
        }
    })
    .await;
    leave.done().await;
    found
}

/// Fetches the info dictionary of a magnet link from its peers and builds the torrent, whose
/// trackers are the link's `tr` (`bt-trace magnet_info`). Also returns the peer that gave it.
pub async fn magnet_info(m: &Magnet, cfg: &ClientConfig) -> Result<(Torrent, SocketAddr)> {
    let (peers, leave) = magnet_peers(m, cfg)?;
    let local = local(cfg);
    let expected = m.info_hashes();
    let found = first_success(peers, move |addr| {
        let local = local.clone();
        async move { metadata::fetch_from(addr, expected, &local).await }
    })
    .await;
    leave.done().await;
    let (peer, info) = found?;
    Ok((Torrent::from_info(info, m.tiers()), peer.addr))
}

/// [`magnet_info`], and for a v2-only torrent the piece layers of its files of more than one
/// piece, fetched with `hash request`s from the peer that gave the metadata (BEP 9 carries
/// only `info`), each proven against its file's `pieces root`.
async fn magnet_v2_info(m: &Magnet, cfg: &ClientConfig) -> Result<(Torrent, SocketAddr)> {
    use crate::peer::layers::{self, LayerFile};
    let (mut t, from) = magnet_info(m, cfg).await?;
    let Some(v2) = t.info.v2.as_ref().filter(|_| !t.info.has_v1()) else {
        return Ok((t, from));
    };
    let piece_len = t.info.piece_length;
    let mut files: Vec<LayerFile> = v2
        .files
        .iter()
        .filter(|f| f.layer_len(piece_len) > 0)
        .filter_map(|f| {
            Some(LayerFile {
                root: f.pieces_root?,
                length: f.length,
            })
        })
        .collect();
    files.dedup();
    if files.is_empty() {
        return Ok((t, from));
    }
    let got = layers::fetch(
        from,
        t.info_hash,
        cfg.peer_id,
        &files,
        piece_len,
        cfg.conn_observer.clone(),
    )
    .await
    .with_context(|| format!("fetching the piece layers from {from}"))?;
    for (f, layer) in files.iter().zip(got) {
        t.piece_layers.layers.insert(f.root, layer);
    }
    Ok((t, from))
}

/// The settings for the download after the metadata: extension protocol only in the
/// handshake, and the link's peers (with the one that gave the metadata first) besides the
/// trackers.
fn magnet_download_config(m: &Magnet, cfg: &ClientConfig, from: SocketAddr) -> ClientConfig {
    let mut cfg = cfg.clone();
    cfg.reserved = Some(Reserved::EXTENSION_ONLY);
    let mut peers = vec![from];
    for p in cfg.extra_peers.iter().copied().chain(m.peer_addrs()) {
        if !peers.contains(&p) {
            peers.push(p);
        }
    }
    cfg.extra_peers = peers;
    cfg
}

/// Fetches the metadata, then downloads the whole torrent into `out`, as [`download`] does
/// (`bt-trace magnet_download`).
pub async fn magnet_download(
    m: &Magnet,
    out: &Path,
    cfg: &ClientConfig,
) -> Result<(Torrent, Summary)> {
    let (t, from) = interruptible(cfg, magnet_v2_info(m, cfg)).await?;
    let summary = download(&t, out, &magnet_download_config(m, cfg, from)).await?;
    Ok((t, summary))
}

/// Fetches the metadata, then downloads piece `index` into `out`, as [`download_piece`] does
/// (`bt-trace magnet_download_piece`).
pub async fn magnet_download_piece(
    m: &Magnet,
    index: u32,
    out: &Path,
    cfg: &ClientConfig,
) -> Result<(Torrent, Summary)> {
    let (t, from) = interruptible(cfg, magnet_v2_info(m, cfg)).await?;
    let summary = download_piece(&t, index, out, &magnet_download_config(m, cfg, from)).await?;
    Ok((t, summary))
}

/// Runs `fut` until it ends or `cfg.cancel` is cancelled (Ctrl-C): then it fails with
/// "interrupted".
async fn interruptible<T>(
    cfg: &ClientConfig,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = fut => r,
        _ = cfg.cancel.cancelled() => bail!("interrupted"),
    }
}
