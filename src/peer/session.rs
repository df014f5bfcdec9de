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
//! - we serve the peer's requests for pieces we have while the swarm's choker lets it download
//!   (`unchoke`/`choke` follow [`News::unchoked`]); a request no honest peer sends (piece index
//!   out of range, empty or above 16 KiB, past the end of its piece, a piece we never
//!   announced) drops the peer; those that come while the peer is choked, beyond our `reqq`,
//!   and all pending ones when we choke it are `reject`ed under the fast extension, and a peer
//!   that keeps flooding us with them is dropped;
//! - a peer that repeats `have`s (or bitfields) for pieces it had already announced is dropped
//!   after [`MAX_REDUNDANT_ANNOUNCES`] of them;
//! - BEP 52 `hash request`s are answered with `hashes` or `hash reject` (the swarm computes the
//!   answer, [`PeerSwarm::hashes`]); at most [`MAX_HASH_REQUESTS`] wait, more are rejected; the
//!   swarm may have us ask for the block hashes of a failed piece ([`News::hash_request`]), and
//!   gets the answer ([`PeerSwarm::block_hashes`]).
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
use crate::peer::swarm::{BlockVerdict, Cursor, News, PeerSwarm, Pressure};
use crate::wire::message::HashRef;
use crate::wire::{BlockRef, Handshake, Message, Reserved};

/// The reserved bits bt-trace advertises: fast extension and extension protocol.
pub const OUR_RESERVED: Reserved = Reserved::new().with_fast().with_extended();

/// Largest block a peer may ask us for: 16 KiB, what every current client requests (BEP 3
/// says clients should; larger requests are rejected).
const MAX_SERVE_LEN: u32 = 16 * 1024;
/// How many of the peer's requests we queue (our `reqq`) before rejecting more; a peer whose
/// requests beyond it reach as many again is flooding us and is dropped.
const MAX_PEER_REQUESTS: usize = 500;
/// How many `have`s for pieces the peer had already announced (and bitfields that add no
/// piece) we take before dropping it. An honest peer announces each piece once, so this only
/// bounds a flood: at 10 000 `have`s a second the peer is gone within 0.1 s.
const MAX_REDUNDANT_ANNOUNCES: usize = 1000;
/// How often a peer may switch between `interested` and `not interested` within
/// [`INTEREST_WINDOW`]: each switch makes the choker look again, so a peer toggling in a loop
/// would keep it busy. An honest peer switches when it runs out of (or finds) pieces it wants
/// from us: a few times a minute at most.
const MAX_INTEREST_CHANGES: u32 = 100;
const INTEREST_WINDOW: Duration = Duration::from_secs(10);
/// How many of the peer's `hash request`s wait for an answer; more are rejected at once.
const MAX_HASH_REQUESTS: usize = 64;
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
    /// The peer's `hash request`s still to answer.
    hash_requests: std::collections::VecDeque<HashRef>,
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
    /// Requests rejected since the last unchoke (sent while choked, or with
    /// [`MAX_PEER_REQUESTS`] queued already).
    flood: usize,
    /// `have`s, bitfields and interest messages that told us nothing new (see
    /// [`MAX_REDUNDANT_ANNOUNCES`]).
    redundant: usize,
    /// Interest switches since `interest_since` (see [`MAX_INTEREST_CHANGES`]).
    interest_changes: u32,
    interest_since: Instant,
    /// The last moment data could flow either way (see [`rotation`]).
    useful_at: Instant,
    /// Parked: useless while other peers wait ([`PeerSwarm::set_parked`]).
    parked: bool,
}

/// How long a session may give nothing either way (the peer keeps us choked, or neither side
/// wants anything) before it parks when other peers wait for a connection.
const PROBATION: Duration = Duration::from_millis(500);

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
        theirs.peer_id.escape_ascii(),
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
        hash_requests: Default::default(),
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
        flood: 0,
        redundant: 0,
        interest_changes: 0,
        interest_since: Instant::now(),
        useful_at: Instant::now(),
        parked: false,
    };
    swarm.peer_joined(st.addr);
    let mut result = session_loop(&swarm, &mut conn, &mut st).await;
    if st.parked {
        swarm.set_parked(st.addr, false);
    }
    // blocks accepted before the loop ended mid-read: store them, they are claimed
    if !st.arrived.is_empty() {
        let blocks = std::mem::take(&mut st.arrived);
        if swarm.store(st.addr, blocks).await.is_err() {
            result = Ok(SessionEnd::DiskError);
        }
    }
    // give back everything this peer held
    let announced = st.added_to_picker.then_some(&st.has);
    swarm.peer_left(st.addr, announced, &mut st.outstanding.drain());
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
    let mut rotation_tick = tokio::time::interval(PROBATION / 2);
    rotation_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
        // 2. catch up with the swarm and refill the pipeline; once we have everything we
        //    wanted, go on only to seed, and only to a peer that lacks something
        if swarm.is_finished() && (!cfg.keep_serving || st.has.is_full()) {
            return Ok(SessionEnd::Done);
        }
        sync(swarm, st, conn)?;
        answer_hashes(swarm, st, conn).await;
        if let Err(e) = serve(swarm, st, conn).await? {
            tracing::debug!("{}: {e}", st.addr);
            return Ok(SessionEnd::DiskError);
        }
        if conn.has_output() {
            conn.flush().await?;
            st.last_sent = Instant::now();
        }
        // 3. wait for bytes, a change in the swarm, or the clock (not when requests are
        //    still queued: serve the next batch right away)
        let more_to_serve = !st.peer_choked && !st.their_requests.is_empty();
        tokio::select! {
            r = conn.fill() => { r?; }
            _ = std::future::ready(()), if more_to_serve => {}
            _ = wake.changed() => {}
            _ = tick.tick() => housekeeping(&cfg.timeouts, st, conn)?,
            _ = rotation_tick.tick() => rotation(swarm, st)?,
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
        Message::Interested | Message::NotInterested => {
            let interested = matches!(msg, Message::Interested);
            if interested != st.peer_interested {
                interest_changed(st)?;
                st.peer_interested = interested;
                swarm.peer_interest(st.addr, interested);
            } else {
                redundant(
                    st,
                    "interest flood",
                    "`interested`/`not interested` messages that change nothing",
                )?;
            }
        }
        Message::Have { index } => {
            if index >= n {
                return Err(PeerError::Protocol(format!(
                    "have for piece {index}, but the torrent has {n} pieces"
                )));
            }
            if st.has.get(index) {
                redundant_announce(st, "`have` messages for pieces it had already announced")?;
            } else {
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
            // aria2 sometimes haves, Transmission `have none`) before it: a later bitfield
            // may add pieces, never take any back.
            let has =
                Bitfield::from_bytes(bits, n).map_err(|e| PeerError::Protocol(e.to_string()))?;
            if st.added_to_picker {
                if st.has.iter_ones().any(|i| !has.get(i)) {
                    return Err(PeerError::Protocol(
                        "bitfield takes back pieces the peer had announced".into(),
                    ));
                }
                if has.iter_ones().all(|i| st.has.get(i)) {
                    redundant_announce(st, "bitfields that add no piece")?;
                }
                for i in has.iter_ones() {
                    if !st.has.get(i) {
                        st.has.set(i);
                        swarm.peer_has(i);
                    }
                }
            } else {
                st.has = has;
                swarm.peer_announced(&st.has);
                st.added_to_picker = true;
            }
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
            check_request(swarm, &r)?;
            // requests while choked, or beyond our reqq, are ignored (or rejected with the
            // fast extension); a peer that keeps sending them is dropped
            if st.peer_choked || st.their_requests.len() >= MAX_PEER_REQUESTS {
                st.flood += 1;
                if st.flood > MAX_PEER_REQUESTS {
                    return Err(PeerError::Protocol(format!(
                        "request flood: {} requests while choked or beyond our reqq of \
                         {MAX_PEER_REQUESTS}",
                        st.flood
                    )));
                }
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
        Message::Hashes { hashes_of, hashes } => swarm.block_hashes(st.addr, &hashes_of, hashes),
        Message::HashRequest(h) => {
            if st.hash_requests.len() < MAX_HASH_REQUESTS {
                st.hash_requests.push_back(h);
            } else {
                let mut b = Vec::new();
                Message::HashReject(h).emit(&mut b);
                return Ok(Some(b));
            }
        }
        // blocks are taken by the session loop before it calls us ([`on_block`])
        Message::Piece { .. }
        | Message::Port(_)
        | Message::Suggest(_)
        | Message::AllowedFast(_)
        | Message::Extended { .. }
        | Message::HashReject(_)
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

/// A request no honest peer sends ends the connection: a piece index outside the torrent, a
/// length of 0 or above 16 KiB (BEP 3: "close connections which request an amount greater than
/// that"), a block reaching past the end of its piece, or a piece we never announced (we only
/// ever gain pieces, so every piece we announced is one we can serve).
fn check_request(swarm: &impl PeerSwarm, r: &BlockRef) -> Result<(), PeerError> {
    let n = swarm.config().num_pieces;
    let why = if r.index >= n {
        format!(", but the torrent has {n} pieces")
    } else if r.length == 0 || r.length > MAX_SERVE_LEN {
        ": empty or longer than 16 KiB".to_string()
    } else if !swarm.can_serve(r) {
        format!(
            ": past the end of piece {}, or a piece we never announced",
            r.index
        )
    } else {
        return Ok(());
    };
    // the words are built only for a request that ends the connection (this runs per request)
    Err(PeerError::Protocol(format!(
        "request for piece {} begin {} length {}{why}",
        r.index, r.begin, r.length
    )))
}

/// Counts a message that told us nothing new (a `have` or bitfield of pieces already
/// announced, an interest already known); too many of them is a `flood`.
fn redundant(st: &mut PeerState, flood: &str, what: &str) -> Result<(), PeerError> {
    st.redundant += 1;
    if st.redundant > MAX_REDUNDANT_ANNOUNCES {
        return Err(PeerError::Protocol(format!(
            "{flood}: more than {MAX_REDUNDANT_ANNOUNCES} {what}"
        )));
    }
    Ok(())
}

/// [`redundant`] for `have`s and bitfields.
fn redundant_announce(st: &mut PeerState, what: &str) -> Result<(), PeerError> {
    redundant(st, "repeated `have` flood", what)
}

/// Counts a switch of the peer's interest; too many within [`INTEREST_WINDOW`] end the session.
fn interest_changed(st: &mut PeerState) -> Result<(), PeerError> {
    let now = Instant::now();
    if now.duration_since(st.interest_since) > INTEREST_WINDOW {
        st.interest_since = now;
        st.interest_changes = 0;
    }
    st.interest_changes += 1;
    if st.interest_changes > MAX_INTEREST_CHANGES {
        return Err(PeerError::Protocol(format!(
            "interest flood: more than {MAX_INTEREST_CHANGES} switches between `interested` and \
             `not interested` within {} s",
            INTEREST_WINDOW.as_secs()
        )));
    }
    Ok(())
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
            "dropped: sent data that failed hash verification".into(),
        ));
    }
    for &index in &news.haves {
        conn.queue(&Message::Have { index });
    }
    if let Some(r) = news.hash_request.take() {
        conn.queue(&Message::HashRequest(r));
    }
    for r in &news.cancels {
        if st.outstanding.remove(r) {
            conn.queue(&Message::Cancel(*r));
        }
    }
    if news.interesting != st.am_interested {
        st.am_interested = news.interesting;
        let m = if news.interesting {
            Message::Interested
        } else {
            Message::NotInterested
        };
        conn.queue(&m);
    }
    // the swarm's choker decides who may download from us
    if news.unchoked == st.peer_choked {
        st.peer_choked = !news.unchoked;
        if st.peer_choked {
            conn.queue(&Message::Choke);
            // BEP 3: a choke discards the peer's pending requests; BEP 6: reject each
            for r in std::mem::take(&mut st.their_requests) {
                if let Some(b) = reject(st, r) {
                    conn.out().extend_from_slice(&b);
                }
            }
        } else {
            st.flood = 0;
            conn.queue(&Message::Unchoke);
        }
    }
    if !st.am_choked && st.am_interested {
        let want = st.depth.min(st.reqq);
        let free = want.saturating_sub(st.outstanding.len());
        // Top up in batches of a quarter of the pipeline: a seeder that treats each packet of
        // requests as one round of work (aria2) serves a trickle of a few requests a packet at
        // half the speed of batches of dozens. A nearly empty pipeline is filled at once.
        let batch = (want / 4).max(1);
        if free > 0 && (free >= batch || st.outstanding.len() < batch) {
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
                conn.queue_request(r);
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
    // every queued request was checked when it arrived ([`check_request`])
    let take = st.their_requests.len().min(SERVE_BATCH);
    let batch: Vec<BlockRef> = st.their_requests.drain(..take).collect();
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
    }
    swarm.uploaded(st.addr, at as u64);
    Ok(Ok(()))
}

/// Answers the peer's waiting `hash request`s: `hashes` with what the swarm computes, else
/// `hash reject`.
async fn answer_hashes(swarm: &impl PeerSwarm, st: &mut PeerState, conn: &mut Conn) {
    while let Some(req) = st.hash_requests.pop_front() {
        match swarm.hashes(req).await {
            Some(hashes) => conn.queue(&Message::Hashes {
                hashes_of: req,
                hashes: &hashes,
            }),
            None => {
                tracing::debug!("{}: hash reject {req}", st.addr);
                conn.queue(&Message::HashReject(req));
            }
        }
    }
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
        conn.queue(&Message::KeepAlive);
    }
    Ok(())
}

/// Every [`PROBATION`]/2: a connection that has given nothing either way for [`PROBATION`] parks
/// while other peers wait for a connection, and ends when no more may be opened, so that idle
/// peers (that never unchoke us) cannot starve the download of the ones that would serve it.
fn rotation(swarm: &impl PeerSwarm, st: &mut PeerState) -> Result<(), PeerError> {
    let now = Instant::now();
    let downloading = st.am_interested && !st.am_choked;
    let uploading = st.peer_interested && !st.peer_choked;
    if downloading || uploading || swarm.is_finished() {
        st.useful_at = now;
    }
    let pressure = swarm.pressure();
    let park = pressure != Pressure::None && now.duration_since(st.useful_at) >= PROBATION;
    if park != st.parked {
        st.parked = park;
        swarm.set_parked(st.addr, park);
    }
    if st.parked && pressure == Pressure::Full {
        return Err(PeerError::Timeout(if st.am_interested {
            "kept us choked while other peers waited; made room for them"
        } else {
            "had nothing we need while other peers waited; made room for them"
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! A session against a fake [`PeerSwarm`] (two pieces of 32 KiB in memory) and a scripted
    //! remote peer on loopback.

    use super::*;
    use crate::peer::swarm::{DiskError, SessionConfig};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    const PIECE: u32 = 32 * 1024;
    const BLOCK: u32 = 16 * 1024;
    const INFO_HASH: [u8; 20] = [7; 20];

    fn byte_at(index: u32, offset: u32) -> u8 {
        ((index * PIECE + offset) % 251) as u8
    }

    fn all_blocks() -> Vec<BlockRef> {
        (0..2)
            .flat_map(|i| (0..2).map(move |b| BlockRef::new(i, b * BLOCK, BLOCK)))
            .collect()
    }

    #[derive(Default)]
    struct FakeState {
        free: Vec<BlockRef>,
        claimed: HashSet<BlockRef>,
        stored: Vec<(BlockRef, Vec<u8>)>,
        announced: Option<Bitfield>,
        left_with: Option<(Option<Bitfield>, Vec<BlockRef>)>,
    }

    struct FakeInner {
        config: SessionConfig,
        cancel: CancellationToken,
        wake: watch::Sender<u64>,
        state: Mutex<FakeState>,
        disk_full: bool,
    }

    #[derive(Clone)]
    struct Fake(Arc<FakeInner>);

    impl Fake {
        fn new(disk_full: bool) -> Fake {
            Fake(Arc::new(FakeInner {
                config: SessionConfig {
                    info_hash: INFO_HASH,
                    peer_id: *b"-bt0000-fakeswarm000",
                    reserved: Reserved::new(),
                    num_pieces: 2,
                    timeouts: Timeouts::default(),
                    listen_port: None,
                    observer: None,
                    keep_serving: false,
                },
                cancel: CancellationToken::new(),
                wake: watch::channel(0).0,
                state: Mutex::new(FakeState {
                    free: all_blocks(),
                    ..FakeState::default()
                }),
                disk_full,
            }))
        }

        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.0.state.lock().unwrap()
        }
    }

    impl PeerSwarm for Fake {
        fn config(&self) -> &SessionConfig {
            &self.0.config
        }
        fn metadata(&self) -> Option<&[u8]> {
            None
        }
        fn subscribe(&self) -> watch::Receiver<u64> {
            self.0.wake.subscribe()
        }
        fn cancel_token(&self) -> &CancellationToken {
            &self.0.cancel
        }
        fn is_finished(&self) -> bool {
            self.state().stored.len() == all_blocks().len()
        }
        fn our_pieces(&self) -> (Bitfield, Cursor) {
            (Bitfield::new(2), Cursor::default())
        }
        fn peer_announced(&self, has: &Bitfield) {
            self.state().announced = Some(has.clone());
        }
        fn peer_has(&self, index: u32) {
            if let Some(b) = self.state().announced.as_mut() {
                b.set(index);
            }
        }
        fn peer_joined(&self, _: SocketAddr) {}
        fn peer_interest(&self, _: SocketAddr, _: bool) {}
        fn peer_left(
            &self,
            _: SocketAddr,
            announced: Option<&Bitfield>,
            outstanding: &mut dyn Iterator<Item = BlockRef>,
        ) {
            self.state().left_with = Some((announced.cloned(), outstanding.collect()));
        }
        fn news(&self, _: SocketAddr, has: &Bitfield, _: &mut Cursor, out: &mut News) {
            let s = self.state();
            out.interesting = s.free.iter().any(|r| has.get(r.index));
        }
        fn pick(
            &self,
            has: &Bitfield,
            max: usize,
            outstanding: &HashSet<BlockRef>,
            _: u32,
            out: &mut Vec<BlockRef>,
        ) {
            let mut s = self.state();
            while out.len() < max {
                let Some(at) = s
                    .free
                    .iter()
                    .position(|r| has.get(r.index) && !outstanding.contains(r))
                else {
                    break;
                };
                out.push(s.free.remove(at));
            }
        }
        fn release(&self, r: &BlockRef) {
            self.state().free.push(*r);
        }
        fn accept_block(&self, r: &BlockRef) -> BlockVerdict {
            let mut s = self.state();
            if !all_blocks().contains(r) {
                BlockVerdict::Invalid
            } else if s.claimed.insert(*r) {
                s.free.retain(|f| f != r);
                BlockVerdict::Accepted
            } else {
                BlockVerdict::Duplicate
            }
        }
        fn store(
            &self,
            _: SocketAddr,
            blocks: Vec<(BlockRef, Bytes)>,
        ) -> impl std::future::Future<Output = Result<(), DiskError>> + Send {
            let result = if self.0.disk_full {
                Err(DiskError("writing fake: No space left on device".into()))
            } else {
                let mut s = self.state();
                s.stored
                    .extend(blocks.into_iter().map(|(r, b)| (r, b.to_vec())));
                Ok(())
            };
            std::future::ready(result)
        }
        fn can_serve(&self, _: &BlockRef) -> bool {
            false
        }
        fn read(
            &self,
            _: Vec<BlockRef>,
        ) -> impl std::future::Future<Output = Result<Vec<u8>, DiskError>> + Send {
            std::future::ready(Err(DiskError("nothing to serve".into())))
        }
        fn uploaded(&self, _: SocketAddr, _: u64) {}
    }

    /// How the scripted remote peer behaves after handshake, bitfield (both pieces) and
    /// unchoke.
    #[derive(Clone, Copy)]
    enum Remote {
        /// Answers every request with the right data.
        Honest,
        /// Sends a block nobody asked for (a begin off the block grid).
        Unasked,
        /// Sends `have` for a piece it announced, again and again.
        HaveFlood,
        /// Asks us for `length` bytes of piece 0 (we have nothing to serve).
        Request(u32),
        /// Sends this many BEP 52 hash requests, then answers requests honestly; counts the
        /// `hash reject`s it gets in [`HASH_REJECTS`].
        HashRequests(u32),
    }

    static HASH_REJECTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    /// Runs the remote peer on a loopback listener; returns its address and, when the session
    /// hangs up, the requests it received.
    async fn remote(how: Remote) -> (SocketAddr, tokio::task::JoinHandle<Vec<BlockRef>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut hs = [0u8; 68];
            s.read_exact(&mut hs).await.unwrap();
            assert_eq!(&hs[28..48], &INFO_HASH);
            let mut out = Handshake::new(Reserved::new(), INFO_HASH, *b"-XX0000-remotepeer00")
                .emit()
                .to_vec();
            Message::Bitfield(&[0xc0]).emit(&mut out);
            Message::Unchoke.emit(&mut out);
            match how {
                Remote::Honest => {}
                Remote::Unasked => Message::Piece {
                    index: 0,
                    begin: 3,
                    data: &[0; 100],
                }
                .emit(&mut out),
                Remote::HaveFlood => {
                    for _ in 0..=MAX_REDUNDANT_ANNOUNCES {
                        Message::Have { index: 0 }.emit(&mut out);
                    }
                }
                Remote::Request(length) => {
                    Message::Request(BlockRef::new(0, 0, length)).emit(&mut out)
                }
                Remote::HashRequests(n) => {
                    for index in 0..n {
                        Message::HashRequest(HashRef {
                            pieces_root: [3; 32],
                            base_layer: 0,
                            index,
                            length: 1,
                            proof_layers: 0,
                        })
                        .emit(&mut out)
                    }
                }
            }
            s.write_all(&out).await.unwrap();
            let mut requests = Vec::new();
            let mut buf = Vec::new();
            loop {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return requests;
                }
                buf.extend_from_slice(&chunk[..n]);
                let mut reply = Vec::new();
                while let Ok((m, used)) = Message::parse(&buf) {
                    if let Message::HashReject(_) = m {
                        HASH_REJECTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Message::Request(r) = m {
                        requests.push(r);
                        let data: Vec<u8> = (r.begin..r.begin + r.length)
                            .map(|o| byte_at(r.index, o))
                            .collect();
                        Message::Piece {
                            index: r.index,
                            begin: r.begin,
                            data: &data,
                        }
                        .emit(&mut reply);
                    }
                    buf.drain(..used);
                }
                if s.write_all(&reply).await.is_err() {
                    return requests;
                }
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn downloads_every_block_once_through_the_interface() {
        let fake = Fake::new(false);
        let (addr, peer) = remote(Remote::Honest).await;
        let end = run(fake.clone(), addr).await.unwrap();
        assert_eq!(end, SessionEnd::Done);
        let mut requests = peer.await.unwrap();
        requests.sort_by_key(|r| (r.index, r.begin));
        assert_eq!(requests, all_blocks(), "each block requested exactly once");
        let s = fake.state();
        assert_eq!(s.stored.len(), 4);
        for (r, data) in &s.stored {
            let want: Vec<u8> = (r.begin..r.begin + r.length)
                .map(|o| byte_at(r.index, o))
                .collect();
            assert_eq!(data, &want, "block {r:?}");
        }
        let (announced, outstanding) = s.left_with.clone().expect("peer_left called");
        assert_eq!(announced, Some(Bitfield::full(2)));
        assert!(outstanding.is_empty());
    }

    #[tokio::test]
    async fn a_block_nobody_asked_for_ends_the_session() {
        let fake = Fake::new(false);
        let (addr, peer) = remote(Remote::Unasked).await;
        let err = run(fake.clone(), addr).await.unwrap_err();
        assert!(err.to_string().contains("block we cannot use"), "{err}");
        peer.await.unwrap();
        let s = fake.state();
        assert!(s.stored.is_empty());
        // what was requested before is given back
        let (announced, _) = s.left_with.clone().expect("peer_left called");
        assert_eq!(announced, Some(Bitfield::full(2)));
    }

    #[tokio::test]
    async fn a_have_flood_ends_the_session() {
        let fake = Fake::new(false);
        let (addr, peer) = remote(Remote::HaveFlood).await;
        let err = run(fake.clone(), addr).await.unwrap_err();
        assert!(err.to_string().contains("repeated `have` flood"), "{err}");
        peer.await.unwrap();
    }

    #[tokio::test]
    async fn hash_requests_are_rejected_when_the_swarm_has_no_hashes_and_bounded() {
        // more than we queue: the surplus is rejected at once, the rest once answered
        let n = MAX_HASH_REQUESTS as u32 + 6;
        let fake = Fake::new(false);
        let (addr, peer) = remote(Remote::HashRequests(n)).await;
        assert_eq!(run(fake.clone(), addr).await.unwrap(), SessionEnd::Done);
        let asked = peer.await.unwrap();
        assert_eq!(asked.len(), all_blocks().len(), "the download went on");
        assert_eq!(HASH_REJECTS.load(std::sync::atomic::Ordering::Relaxed), n);
    }

    #[tokio::test]
    async fn a_request_no_honest_peer_sends_ends_the_session() {
        for (length, why) in [
            (2 * BLOCK, "longer than 16 KiB"),
            (0, "empty"),
            // the fake serves nothing: piece 0 was never announced
            (BLOCK, "a piece we never announced"),
        ] {
            let fake = Fake::new(false);
            let (addr, peer) = remote(Remote::Request(length)).await;
            let err = run(fake.clone(), addr).await.unwrap_err();
            assert!(err.to_string().contains(why), "{length}: {err}");
            peer.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_disk_error_ends_the_session_without_blaming_the_peer() {
        let fake = Fake::new(true);
        let (addr, peer) = remote(Remote::Honest).await;
        let end = run(fake.clone(), addr).await.unwrap();
        assert_eq!(end, SessionEnd::DiskError);
        peer.await.unwrap();
        assert!(fake.state().stored.is_empty());
    }
}
