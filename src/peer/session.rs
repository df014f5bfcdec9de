//! One peer connection's state machine (BEP 3 with the BEP 6 fast extension and BEP 10).
//!
//! After the handshake each side says what it has (a `bitfield`, or `have all`/`have none`
//! with the fast extension), then:
//! - we send `interested` when the peer has a piece we still need;
//! - once the peer `unchoke`s us we keep a pipeline of block `request`s outstanding (deeper for
//!   fast peers, never above what the peer announced as `reqq`, and well below the 512 that
//!   Transmission accepts);
//! - each `piece` is checked against what we asked for, written in place, and the piece is
//!   SHA-1 verified once its last block is in;
//! - `choke` without the fast extension cancels everything outstanding; with it the peer
//!   `reject`s explicitly;
//! - we serve the peer's requests for pieces we have (unchoking interested peers).
//!
//! The loop never trusts the peer: wrong bitfield sizes, out-of-range indexes, blocks we did
//! not ask for with a wrong size, or silence while requests are pending end the connection.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bencode::Value;
use crate::bitfield::Bitfield;
use crate::download::engine::Swarm;
use crate::download::picker::Received;
use crate::peer::conn::{Conn, PeerError};
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
#[derive(Debug)]
pub enum SessionEnd {
    /// The download finished or was cancelled.
    Done,
}

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
    have_cursor: usize,
    cancel_cursor: usize,
    last_block: Instant,
    last_recv: Instant,
    last_sent: Instant,
    blocks_this_second: usize,
    rate_mark: Instant,
    rotate: u32,
    added_to_picker: bool,
    scratch: Vec<BlockRef>,
    serve_buf: Vec<u8>,
    /// The id the peer wants `ut_metadata` messages under (from its extended handshake).
    their_ut_metadata: Option<u8>,
}

/// Connects to `addr` and runs the session until the download is done, the swarm is cancelled,
/// or the connection fails.
pub async fn run(swarm: Arc<Swarm>, addr: SocketAddr) -> Result<SessionEnd, PeerError> {
    let id = swarm.next_conn_id();
    let conn = Conn::connect(addr, swarm.timeouts.connect, id, swarm.observer.clone()).await?;
    run_on(swarm, conn, None).await
}

/// Runs a session on an established connection. `their_handshake` is set when we accepted the
/// connection and already read the peer's handshake (then we answer with ours).
pub async fn run_on(
    swarm: Arc<Swarm>,
    mut conn: Conn,
    their_handshake: Option<Handshake>,
) -> Result<SessionEnd, PeerError> {
    let ours = Handshake::new(swarm.reserved, swarm.info_hash, swarm.peer_id);
    let theirs = match their_handshake {
        Some(h) => {
            conn.out().extend_from_slice(&ours.emit());
            conn.flush().await?;
            h
        }
        None => conn.handshake(&ours, swarm.timeouts.handshake).await?,
    };
    tracing::debug!(
        "{}: handshake ok, peer id {}, reserved {}",
        conn.remote,
        String::from_utf8_lossy(&theirs.peer_id),
        theirs.reserved
    );
    if theirs.peer_id == swarm.peer_id {
        return Err(PeerError::Protocol("connected to ourselves".into()));
    }
    let mut st = PeerState {
        addr: conn.remote,
        has: Bitfield::new(swarm.num_pieces),
        fast: theirs.reserved.fast() && swarm.reserved.fast(),
        extended: theirs.reserved.extended(),
        am_choked: true,
        am_interested: false,
        peer_choked: true,
        peer_interested: false,
        outstanding: HashSet::new(),
        depth: 64,
        reqq: MAX_DEPTH,
        their_requests: Default::default(),
        have_cursor: 0,
        cancel_cursor: 0,
        last_block: Instant::now(),
        last_recv: Instant::now(),
        last_sent: Instant::now(),
        blocks_this_second: 0,
        rate_mark: Instant::now(),
        rotate: rand::random::<u32>(),
        added_to_picker: false,
        scratch: Vec::new(),
        serve_buf: Vec::new(),
        their_ut_metadata: None,
    };
    let result = session_loop(&swarm, &mut conn, &mut st).await;
    // give back everything this peer held
    {
        let mut s = swarm.lock();
        for r in st.outstanding.drain() {
            s.picker.release(&r);
        }
        if st.added_to_picker {
            s.picker.remove_peer(&st.has);
        }
    }
    swarm.wake();
    match &result {
        Ok(_) => conn.report_closed(None),
        Err(e) => conn.report_closed(Some(&e.to_string())),
    }
    if result.is_ok() {
        conn.shutdown().await;
    }
    result
}

async fn session_loop(
    swarm: &Arc<Swarm>,
    conn: &mut Conn,
    st: &mut PeerState,
) -> Result<SessionEnd, PeerError> {
    // Extension handshake first (BEP 10), then what we have.
    if st.extended && swarm.reserved.extended() {
        let mut m = Vec::new();
        if swarm.metadata_size().is_some() {
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
        if let Some(port) = swarm.listen_port {
            hs.push(("p", Value::Int(i64::from(port))));
        }
        if let Some(size) = swarm.metadata_size() {
            hs.push(("metadata_size", Value::Int(size as i64)));
        }
        let payload = Value::dict(hs).encode();
        conn.queue(&Message::Extended {
            ext_id: 0,
            payload: &payload,
        });
    }
    {
        let s = swarm.lock();
        st.have_cursor = s.have_log.len();
        st.cancel_cursor = s.cancel_log.len();
        let have = s.picker.have();
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
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // 1. handle every complete message in the buffer
        while let Some((msg, used)) = conn.next_message()? {
            st.last_recv = Instant::now();
            let out = handle(swarm, st, msg)?;
            conn.consume(used);
            if let Some(bytes) = out {
                conn.out().extend_from_slice(&bytes);
            }
        }
        // 2. catch up with the swarm and refill the pipeline
        if swarm.is_finished() {
            return Ok(SessionEnd::Done);
        }
        sync(swarm, st, conn)?;
        serve(swarm, st, conn).await?;
        if conn.has_output() {
            conn.flush().await?;
            st.last_sent = Instant::now();
        }
        // 3. wait for bytes, a change in the swarm, or the clock
        tokio::select! {
            r = conn.fill() => { r?; }
            _ = wake.changed() => {}
            _ = tick.tick() => housekeeping(&swarm.timeouts, st, conn)?,
            _ = swarm.cancelled() => return Ok(SessionEnd::Done),
        }
    }
}

/// Reacts to one message. Returns bytes to send, if any, so that `msg` (which borrows the
/// connection's read buffer) need not outlive this call.
fn handle(
    swarm: &Arc<Swarm>,
    st: &mut PeerState,
    msg: Message<'_>,
) -> Result<Option<Vec<u8>>, PeerError> {
    let n = swarm.num_pieces;
    tracing::trace!("{}: received {msg}", st.addr);
    match msg {
        Message::KeepAlive => {}
        Message::Choke => {
            st.am_choked = true;
            if !st.fast {
                // BEP 3: a choke discards all pending requests
                let mut s = swarm.lock();
                for r in st.outstanding.drain() {
                    s.picker.release(&r);
                }
                drop(s);
                swarm.wake();
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
                let mut s = swarm.lock();
                if st.added_to_picker {
                    s.picker.add_have(index);
                } else {
                    s.picker.add_peer(&st.has);
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
            swarm.lock().picker.add_peer(&st.has);
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
            swarm.lock().picker.add_peer(&st.has);
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
        Message::Piece { index, begin, data } => {
            let r = BlockRef {
                index,
                begin,
                length: data.len() as u32,
            };
            st.outstanding.remove(&r);
            st.last_block = Instant::now();
            st.blocks_this_second += 1;
            on_block(swarm, st, r, data)?;
        }
        Message::Reject(r) => {
            if st.outstanding.remove(&r) {
                swarm.lock().picker.release(&r);
                swarm.wake();
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
                swarm.info_bytes.as_deref(),
                st.their_ut_metadata,
                payload,
            ));
        }
        Message::Port(_)
        | Message::Suggest(_)
        | Message::AllowedFast(_)
        | Message::Extended { .. }
        | Message::Unknown { .. } => {}
    }
    Ok(None)
}

/// The id we announce `ut_metadata` under in our extended handshake (the `1` above).
const OUR_UT_METADATA_ID: u8 = crate::metadata::OUR_UT_METADATA_ID;

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

/// A block arrived: check it, store it, and verify the piece if it was the last block.
fn on_block(
    swarm: &Arc<Swarm>,
    st: &mut PeerState,
    r: BlockRef,
    data: &[u8],
) -> Result<(), PeerError> {
    let mut s = swarm.lock();
    let outcome = s.picker.received(&r);
    match outcome {
        Received::Invalid => {
            drop(s);
            return Err(PeerError::Protocol(format!(
                "sent a block we cannot use: piece {} begin {} length {}",
                r.index, r.begin, r.length
            )));
        }
        Received::Duplicate => {
            swarm.wasted.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Received::Stored { dups } | Received::PieceComplete { dups } => {
            // written under the lock so that verification never races a pending write
            let offset = u64::from(r.index) * swarm.piece_len + u64::from(r.begin);
            swarm
                .storage
                .write_at(offset, data)
                .map_err(|e| PeerError::Protocol(format!("writing to disk failed: {e}")))?;
            swarm
                .downloaded
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            s.note_contributor(r.index, st.addr);
            if dups > 0 {
                s.cancel_log.push(r);
            }
            let complete = matches!(outcome, Received::PieceComplete { .. });
            drop(s);
            if dups > 0 {
                swarm.wake();
            }
            if complete {
                let sw = swarm.clone();
                tokio::task::spawn_blocking(move || sw.verify_piece(r.index));
            }
        }
    }
    Ok(())
}

/// Brings this peer up to date with the swarm: our new pieces (`have`), endgame cancels,
/// interest, and the request pipeline.
fn sync(swarm: &Arc<Swarm>, st: &mut PeerState, conn: &mut Conn) -> Result<(), PeerError> {
    let mut s = swarm.lock();
    if s.banned.contains(&st.addr) {
        return Err(PeerError::Protocol(
            "dropped: sent data that failed SHA-1 verification".into(),
        ));
    }
    while st.have_cursor < s.have_log.len() {
        let index = s.have_log[st.have_cursor];
        st.have_cursor += 1;
        Message::Have { index }.emit(conn.out());
    }
    while st.cancel_cursor < s.cancel_log.len() {
        let r = s.cancel_log[st.cancel_cursor];
        st.cancel_cursor += 1;
        if st.outstanding.remove(&r) {
            Message::Cancel(r).emit(conn.out());
        }
    }
    let interesting = s.picker.is_interesting(&st.has);
    if interesting != st.am_interested {
        st.am_interested = interesting;
        let m = if interesting {
            Message::Interested
        } else {
            Message::NotInterested
        };
        m.emit(conn.out());
    }
    // unchoke interested peers so they can download from us too
    if st.peer_interested && st.peer_choked && s.picker.have().count() > 0 {
        st.peer_choked = false;
        Message::Unchoke.emit(conn.out());
    }
    if !st.am_choked && st.am_interested {
        let want = st.depth.min(st.reqq);
        if st.outstanding.len() < want {
            st.scratch.clear();
            let outstanding = &st.outstanding;
            s.picker.pick(
                &st.has,
                want - outstanding.len(),
                &mut st.scratch,
                |r| outstanding.contains(r),
                st.rotate,
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

/// Sends the blocks the peer asked for (pieces we have), a few at a time so that a greedy
/// peer cannot starve our own downloading.
async fn serve(swarm: &Arc<Swarm>, st: &mut PeerState, conn: &mut Conn) -> Result<(), PeerError> {
    for _ in 0..16 {
        let Some(r) = st.their_requests.pop_front() else {
            return Ok(());
        };
        let ok = r.length > 0
            && r.length <= MAX_SERVE_LEN
            && r.index < swarm.num_pieces
            && u64::from(r.begin) + u64::from(r.length) <= u64::from(swarm.piece_size(r.index))
            && swarm.lock().picker.have().get(r.index);
        if !ok {
            if let Some(b) = reject(st, r) {
                conn.out().extend_from_slice(&b);
            }
            continue;
        }
        st.serve_buf.resize(r.length as usize, 0);
        let offset = u64::from(r.index) * swarm.piece_len + u64::from(r.begin);
        swarm.storage.read_at(offset, &mut st.serve_buf)?;
        let mut head = Vec::with_capacity(13);
        Message::emit_piece_header(&mut head, r.index, r.begin, r.length as usize);
        conn.write_two(&head, &st.serve_buf).await?;
        swarm
            .uploaded
            .fetch_add(u64::from(r.length), Ordering::Relaxed);
    }
    Ok(())
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
