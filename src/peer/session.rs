//! One peer connection's state machine (BEP 3 with the BEP 6 fast extension and BEP 10).
//!
//! After the handshake each side says what it has (a `bitfield`, or `have all`/`have none`
//! with the fast extension), then:
//! - we send `interested` when the peer has a piece we still need;
//! - once the peer `unchoke`s us we keep a pipeline of block `request`s outstanding (deeper for
//!   fast peers, never above what the peer announced as `reqq`, and well below the 512 that
//!   Transmission accepts);
//! - each `piece` is checked against what we asked for and handed to the swarm, which writes
//!   it off the async workers and verifies the piece once its last block is written;
//! - `choke` without the fast extension cancels everything outstanding; with it the peer
//!   `reject`s explicitly;
//! - we serve the peer's requests for pieces we have (unchoking interested peers).
//!
//! The loop never trusts the peer: wrong bitfield sizes, out-of-range indexes, blocks we did
//! not ask for with a wrong size, or silence while requests are pending end the connection.
//!
//! The session sees the torrent only through [`PeerSwarm`]; it never touches the picker, the
//! storage or the engine.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bencode::Value;
use crate::bitfield::Bitfield;
use crate::peer::conn::{Conn, PeerError};
use crate::peer::swarm::{BlockVerdict, Cursor, News, PeerSwarm};
use crate::wire::{BlockRef, Handshake, Message, Reserved};

/// The reserved bits bt-trace advertises: fast extension and extension protocol.
pub const OUR_RESERVED: Reserved = Reserved::new().with_fast().with_extended();

/// Largest block a peer may ask us for (BEP 3 peers use 16 KiB; some allow up to 128 KiB).
const MAX_SERVE_LEN: u32 = 128 * 1024;
/// How many of the peer's requests we queue before rejecting more.
const MAX_PEER_REQUESTS: usize = 500;
/// Request pipeline bounds.
const MIN_DEPTH: usize = 32;
const MAX_DEPTH: usize = 250;

/// Timeouts of a session.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub handshake: Duration,
    /// Requests pending and no block for this long: the peer is snubbing us.
    pub snub: Duration,
    /// Nothing at all received for this long: the peer is gone.
    pub idle: Duration,
    /// Send a keep-alive when we have sent nothing for this long.
    pub keepalive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            handshake: Duration::from_secs(10),
            snub: Duration::from_secs(30),
            idle: Duration::from_secs(150),
            keepalive: Duration::from_secs(60),
        }
    }
}

/// How a session ended, for the connection manager.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The download finished or was cancelled.
    Done,
    /// Our disk failed; the swarm is ending (not the peer's fault).
    DiskError,
}

/// The id we announce `ut_metadata` under in our extended handshake.
pub const OUR_UT_METADATA_ID: u8 = 1;

struct PeerState {
    addr: SocketAddr,
    has: Bitfield,
    fast: bool,
    extended: bool,
    am_choked: bool,
    am_interested: bool,
    peer_choked: bool,
    peer_interested: bool,
    outstanding: HashSet<BlockRef>,
    depth: usize,
    reqq: usize,
    their_requests: std::collections::VecDeque<BlockRef>,
    cursor: Cursor,
    news: News,
    /// Accepted blocks of the current read, written together.
    arrived: Vec<(BlockRef, Bytes)>,
    last_block: Instant,
    last_recv: Instant,
    last_sent: Instant,
    blocks_this_second: usize,
    rate_mark: Instant,
    rotate: u32,
    added_to_picker: bool,
    scratch: Vec<BlockRef>,
    /// The id the peer wants `ut_metadata` messages under (from its extended handshake).
    their_ut_metadata: Option<u8>,
}

/// Connects to `addr` and runs the session until the download is done, the swarm is cancelled,
/// or the connection fails.
pub async fn run<S: PeerSwarm>(swarm: S, addr: SocketAddr) -> Result<SessionEnd, PeerError> {
    let cfg = swarm.config();
    let id = crate::peer::conn::next_conn_id();
    let conn = Conn::connect(addr, cfg.timeouts.connect, id, cfg.observer.clone()).await?;
    run_on(swarm, conn, None).await
}

/// Runs a session on an established connection. `their_handshake` is set when we accepted the
/// connection and already read the peer's handshake (then we answer with ours).
pub async fn run_on<S: PeerSwarm>(
    swarm: S,
    mut conn: Conn,
    their_handshake: Option<Handshake>,
) -> Result<SessionEnd, PeerError> {
    let cfg = swarm.config();
    let ours = Handshake::new(cfg.reserved, cfg.info_hash, cfg.peer_id);
    let theirs = match their_handshake {
        Some(h) => {
            conn.out().extend_from_slice(&ours.emit());
            conn.flush().await?;
            h
        }
        None => conn.handshake(&ours, cfg.timeouts.handshake).await?,
    };
    tracing::debug!(
        "{}: handshake ok, peer id {}, reserved {}",
        conn.remote,
        String::from_utf8_lossy(&theirs.peer_id),
        theirs.reserved
    );
    if theirs.peer_id == cfg.peer_id {
        return Err(PeerError::Protocol("connected to ourselves".into()));
    }
    let mut st = PeerState {
        addr: conn.remote,
        has: Bitfield::new(cfg.num_pieces),
        fast: theirs.reserved.fast() && cfg.reserved.fast(),
        extended: theirs.reserved.extended(),
        am_choked: true,
        am_interested: false,
        peer_choked: true,
        peer_interested: false,
        outstanding: HashSet::new(),
        depth: 64,
        reqq: MAX_DEPTH,
        their_requests: Default::default(),
        cursor: Cursor::default(),
        news: News::default(),
        arrived: Vec::new(),
        last_block: Instant::now(),
        last_recv: Instant::now(),
        last_sent: Instant::now(),
        blocks_this_second: 0,
        rate_mark: Instant::now(),
        rotate: rand::random::<u32>(),
        added_to_picker: false,
        scratch: Vec::new(),
        their_ut_metadata: None,
    };
    let mut result = session_loop(&swarm, &mut conn, &mut st).await;
    // blocks accepted before the loop ended mid-read: store them, they are claimed
    if !st.arrived.is_empty() {
        let blocks = std::mem::take(&mut st.arrived);
        if swarm.store(st.addr, blocks).await.is_err() {
            result = Ok(SessionEnd::DiskError);
        }
    }
    // give back everything this peer held
    let announced = st.added_to_picker.then_some(&st.has);
    swarm.peer_left(announced, &mut st.outstanding.drain());
    match &result {
        Ok(_) => conn.report_closed(None),
        Err(e) => conn.report_closed(Some(&e.to_string())),
    }
    if result.is_ok() {
        conn.shutdown().await;
    }
    result
}

async fn session_loop<S: PeerSwarm>(
    swarm: &S,
    conn: &mut Conn,
    st: &mut PeerState,
) -> Result<SessionEnd, PeerError> {
    let cfg = swarm.config();
    let metadata_size = swarm.metadata().map(<[u8]>::len);
    // Extension handshake first (BEP 10), then what we have.
    if st.extended && cfg.reserved.extended() {
        let mut m = Vec::new();
        if metadata_size.is_some() {
            m.push(("ut_metadata", Value::Int(1)));
        }
        let mut hs = vec![
            ("m", Value::dict(m)),
            (
                "v",
                Value::bytes(format!("bt-trace {}", env!("CARGO_PKG_VERSION"))),
            ),
            ("reqq", Value::Int(MAX_PEER_REQUESTS as i64)),
        ];
        if let Some(port) = cfg.listen_port {
            hs.push(("p", Value::Int(i64::from(port))));
        }
        if let Some(size) = metadata_size {
            hs.push(("metadata_size", Value::Int(size as i64)));
        }
        let payload = Value::dict(hs).encode();
        conn.queue(&Message::Extended {
            ext_id: 0,
            payload: &payload,
        });
    }
    {
        let (have, cursor) = swarm.our_pieces();
        st.cursor = cursor;
        if have.is_full() && st.fast {
            conn.queue(&Message::HaveAll);
        } else if have.count() == 0 {
            if st.fast {
                conn.queue(&Message::HaveNone);
            }
        } else {
            conn.queue(&Message::Bitfield(have.as_bytes()));
        }
    }
    conn.flush().await?;
    st.last_sent = Instant::now();

    let mut wake = swarm.subscribe();
    let cancel = swarm.cancel_token().clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // 1. handle every complete message in the buffer; blocks are kept (without a copy:
        //    they are split off the read buffer) and stored together
        while let Some((msg, used)) = conn.next_message()? {
            st.last_recv = Instant::now();
            if let Message::Piece { index, begin, data } = msg {
                let r = BlockRef {
                    index,
                    begin,
                    length: data.len() as u32,
                };
                if on_block(swarm, st, r)? {
                    let frame = conn.take(used);
                    st.arrived
                        .push((r, frame.slice(used - r.length as usize..)));
                } else {
                    conn.consume(used);
                }
                continue;
            }
            let out = handle(swarm, st, msg)?;
            conn.consume(used);
            if let Some(bytes) = out {
                conn.out().extend_from_slice(&bytes);
            }
        }
        if !st.arrived.is_empty() {
            let blocks = std::mem::take(&mut st.arrived);
            if let Err(e) = swarm.store(st.addr, blocks).await {
                tracing::debug!("{}: {e}", st.addr);
                return Ok(SessionEnd::DiskError);
            }
        }
        // 2. catch up with the swarm and refill the pipeline
        if swarm.is_finished() {
            return Ok(SessionEnd::Done);
        }
        sync(swarm, st, conn)?;
        if let Err(e) = serve(swarm, st, conn).await? {
            tracing::debug!("{}: {e}", st.addr);
            return Ok(SessionEnd::DiskError);
        }
        if conn.has_output() {
            conn.flush().await?;
            st.last_sent = Instant::now();
        }
        // 3. wait for bytes, a change in the swarm, or the clock
        tokio::select! {
            r = conn.fill() => { r?; }
            _ = wake.changed() => {}
            _ = tick.tick() => housekeeping(&cfg.timeouts, st, conn)?,
            _ = cancel.cancelled() => return Ok(SessionEnd::Done),
        }
    }
}

/// Reacts to one message. Returns bytes to send, if any, so that `msg` (which borrows the
/// connection's read buffer) need not outlive this call.
fn handle(
    swarm: &impl PeerSwarm,
    st: &mut PeerState,
    msg: Message<'_>,
) -> Result<Option<Vec<u8>>, PeerError> {
    let n = swarm.config().num_pieces;
    tracing::trace!("{}: received {msg}", st.addr);
    match msg {
        Message::KeepAlive => {}
        Message::Choke => {
            st.am_choked = true;
            if !st.fast {
                // BEP 3: a choke discards all pending requests
                for r in st.outstanding.drain() {
                    swarm.release(&r);
                }
            }
        }
        Message::Unchoke => st.am_choked = false,
        Message::Interested => st.peer_interested = true,
        Message::NotInterested => st.peer_interested = false,
        Message::Have { index } => {
            if index >= n {
                return Err(PeerError::Protocol(format!(
                    "have for piece {index}, but the torrent has {n} pieces"
                )));
            }
            if !st.has.get(index) {
                st.has.set(index);
                if st.added_to_picker {
                    swarm.peer_has(index);
                } else {
                    swarm.peer_announced(&st.has);
                    st.added_to_picker = true;
                }
            }
        }
        Message::Bitfield(bits) => {
            // BEP 3 wants it first, but real clients send their extension handshake (and
            // aria2 sometimes haves) before it: accept it until the peer announced pieces.
            if st.added_to_picker {
                return Err(PeerError::Protocol(
                    "bitfield sent after the peer had already announced pieces".into(),
                ));
            }
            st.has =
                Bitfield::from_bytes(bits, n).map_err(|e| PeerError::Protocol(e.to_string()))?;
            swarm.peer_announced(&st.has);
            st.added_to_picker = true;
        }
        Message::HaveAll | Message::HaveNone => {
            if st.added_to_picker {
                return Err(PeerError::Protocol(
                    "have all/have none sent after the peer had already announced pieces".into(),
                ));
            }
            st.has = if matches!(msg, Message::HaveAll) {
                Bitfield::full(n)
            } else {
                Bitfield::new(n)
            };
            swarm.peer_announced(&st.has);
            st.added_to_picker = true;
        }
        Message::Request(r) => {
            if st.peer_choked {
                // requests while choked are ignored (or rejected with the fast extension)
                return Ok(reject(st, r));
            }
            if st.their_requests.len() >= MAX_PEER_REQUESTS {
                return Ok(reject(st, r));
            }
            st.their_requests.push_back(r);
        }
        Message::Cancel(r) => st.their_requests.retain(|q| *q != r),
        Message::Reject(r) => {
            if st.outstanding.remove(&r) {
                swarm.release(&r);
            }
        }
        Message::Extended { ext_id: 0, payload } => {
            if let Ok(v) = crate::bencode::decode(payload) {
                if let Some(q) = v.get("reqq").and_then(Value::as_int) {
                    st.reqq = (q.clamp(1, MAX_DEPTH as i64 + 8) as usize)
                        .saturating_sub(4)
                        .max(1);
                }
            }
            if let Ok(hs) = crate::wire::ExtendedHandshake::parse(payload) {
                st.their_ut_metadata = hs.extension_id(crate::wire::extension::UT_METADATA);
            }
        }
        Message::Extended { ext_id, payload } if ext_id == OUR_UT_METADATA_ID => {
            return Ok(metadata_reply(
                swarm.metadata(),
                st.their_ut_metadata,
                payload,
            ));
        }
        // blocks are taken by the session loop before it calls us ([`on_block`])
        Message::Piece { .. }
        | Message::Port(_)
        | Message::Suggest(_)
        | Message::AllowedFast(_)
        | Message::Extended { .. }
        | Message::Unknown { .. } => {}
    }
    Ok(None)
}

/// Answers a BEP 9 `ut_metadata` message sent to us: a request for a piece of our info
/// dictionary gets the piece (`data`, 16 KiB or the shorter last one) or, for a piece out of
/// range, a `reject`. Nothing is sent when we have no metadata (we did not announce
/// `ut_metadata` then), when the peer gave no id to answer under, or for other message types
/// (a malformed payload is ignored, not fatal).
fn metadata_reply(info: Option<&[u8]>, their_id: Option<u8>, payload: &[u8]) -> Option<Vec<u8>> {
    use crate::wire::extension::{metadata_piece_count, METADATA_PIECE_LEN};
    use crate::wire::UtMetadata;
    let (info, their_id) = (info?, their_id?);
    let UtMetadata::Request { piece } = UtMetadata::parse(payload).ok()? else {
        return None;
    };
    let mut out = Vec::new();
    let reply = if u64::from(piece) < metadata_piece_count(info.len() as u64) {
        let start = piece as usize * METADATA_PIECE_LEN; // < info.len(): no overflow
        let end = (start + METADATA_PIECE_LEN).min(info.len());
        UtMetadata::Data {
            piece,
            total_size: info.len() as u64,
            data: &info[start..end],
        }
    } else {
        UtMetadata::Reject { piece }
    };
    reply.emit_message(their_id, &mut out);
    Some(out)
}

fn reject(st: &PeerState, r: BlockRef) -> Option<Vec<u8>> {
    if st.fast {
        let mut b = Vec::new();
        Message::Reject(r).emit(&mut b);
        Some(b)
    } else {
        None
    }
}

/// A block arrived: check it against the swarm. Returns whether to store it (the caller keeps
/// its bytes); a block we could not have asked for ends the connection.
fn on_block(swarm: &impl PeerSwarm, st: &mut PeerState, r: BlockRef) -> Result<bool, PeerError> {
    st.outstanding.remove(&r);
    st.last_block = Instant::now();
    st.blocks_this_second += 1;
    match swarm.accept_block(&r) {
        BlockVerdict::Accepted => Ok(true),
        BlockVerdict::Duplicate => Ok(false),
        BlockVerdict::Invalid => Err(PeerError::Protocol(format!(
            "sent a block we cannot use: piece {} begin {} length {}",
            r.index, r.begin, r.length
        ))),
    }
}

/// Brings this peer up to date with the swarm: our new pieces (`have`), endgame cancels,
/// interest, and the request pipeline.
fn sync(swarm: &impl PeerSwarm, st: &mut PeerState, conn: &mut Conn) -> Result<(), PeerError> {
    let news = &mut st.news;
    news.haves.clear();
    news.cancels.clear();
    swarm.news(st.addr, &st.has, &mut st.cursor, news);
    if news.banned {
        return Err(PeerError::Protocol(
            "dropped: sent data that failed SHA-1 verification".into(),
        ));
    }
    for &index in &news.haves {
        Message::Have { index }.emit(conn.out());
    }
    for r in &news.cancels {
        if st.outstanding.remove(r) {
            Message::Cancel(*r).emit(conn.out());
        }
    }
    if news.interesting != st.am_interested {
        st.am_interested = news.interesting;
        let m = if news.interesting {
            Message::Interested
        } else {
            Message::NotInterested
        };
        m.emit(conn.out());
    }
    // unchoke interested peers so they can download from us too
    if st.peer_interested && st.peer_choked && news.have_any {
        st.peer_choked = false;
        Message::Unchoke.emit(conn.out());
    }
    if !st.am_choked && st.am_interested {
        let want = st.depth.min(st.reqq);
        if st.outstanding.len() < want {
            st.scratch.clear();
            swarm.pick(
                &st.has,
                want - st.outstanding.len(),
                &st.outstanding,
                st.rotate,
                &mut st.scratch,
            );
            tracing::trace!(
                "{}: requesting {} blocks ({} outstanding, depth {want})",
                st.addr,
                st.scratch.len(),
                st.outstanding.len()
            );
            for r in st.scratch.drain(..) {
                st.outstanding.insert(r);
                Message::emit_request(conn.out(), r);
            }
            if st.outstanding.is_empty() {
                st.last_block = Instant::now();
            }
        }
    }
    Ok(())
}

/// How many of the peer's requests we serve per round, so that a greedy peer cannot starve
/// our own downloading.
const SERVE_BATCH: usize = 16;

/// Sends the blocks the peer asked for (pieces we have), read off the async workers in one go.
/// The outer error is the connection's; the inner one our disk's.
async fn serve(
    swarm: &impl PeerSwarm,
    st: &mut PeerState,
    conn: &mut Conn,
) -> Result<Result<(), crate::peer::swarm::DiskError>, PeerError> {
    let mut batch = Vec::new();
    while batch.len() < SERVE_BATCH {
        let Some(r) = st.their_requests.pop_front() else {
            break;
        };
        if r.length > 0 && r.length <= MAX_SERVE_LEN && swarm.can_serve(&r) {
            batch.push(r);
        } else if let Some(b) = reject(st, r) {
            conn.out().extend_from_slice(&b);
        }
    }
    if batch.is_empty() {
        return Ok(Ok(()));
    }
    let data = match swarm.read(batch.clone()).await {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    let mut at = 0;
    for r in batch {
        let Some(body) = data.get(at..at + r.length as usize) else {
            break;
        };
        at += r.length as usize;
        let head = Message::piece_header(r.index, r.begin, body.len());
        conn.write_two(&head, body).await?;
        swarm.uploaded(u64::from(r.length));
    }
    Ok(Ok(()))
}

/// Once a second: adapt the pipeline depth, send keep-alives, detect dead or snubbing peers.
fn housekeeping(t: &Timeouts, st: &mut PeerState, conn: &mut Conn) -> Result<(), PeerError> {
    let now = Instant::now();
    let secs = now.duration_since(st.rate_mark).as_secs_f64().max(0.001);
    let rate = st.blocks_this_second as f64 / secs;
    st.blocks_this_second = 0;
    st.rate_mark = now;
    // about half a second of blocks in flight
    // about three seconds of blocks in flight (as libtorrent does): seeders that serve in
    // pulses (Transmission) send per pulse what is outstanding, so depth must grow with rate
    st.depth = ((rate * 3.0) as usize).clamp(MIN_DEPTH, MAX_DEPTH);
    if !st.outstanding.is_empty() && now.duration_since(st.last_block) > t.snub {
        return Err(PeerError::Timeout(
            "no block while requests were pending (snubbed)",
        ));
    }
    if now.duration_since(st.last_recv) > t.idle {
        return Err(PeerError::Timeout("the peer went silent"));
    }
    if now.duration_since(st.last_sent) > t.keepalive {
        Message::KeepAlive.emit(conn.out());
    }
    Ok(())
}
