//! What a peer session sees of its torrent: the one narrow interface [`PeerSwarm`].
//!
//! The download engine implements it (picker, storage and the shared logs live behind it);
//! tests implement it with a fake. A session asks it what to request next, hands it what the
//! peer announced and sent, asks it for blocks to serve, and obeys its choker (who may
//! download from us: [`News::unchoked`]). It never sees the picker, the
//! storage or the engine's state, so `peer/` depends on nothing above it.
//!
//! Disk I/O goes through [`PeerSwarm::store`] and [`PeerSwarm::read`], which return futures:
//! an implementation does the I/O off the async workers (the blocking pool), never under a
//! lock that sessions share.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bitfield::Bitfield;
use crate::peer::conn::ConnObserver;
use crate::peer::session::Timeouts;
use crate::wire::message::HashRef;
use crate::wire::{BlockRef, Reserved};

/// The fixed facts a session needs about its torrent and about us.
#[derive(Clone)]
pub struct SessionConfig {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    /// The reserved bits of our handshake.
    pub reserved: Reserved,
    pub num_pieces: u32,
    pub timeouts: Timeouts,
    /// The port we listen on, announced in our extension handshake.
    pub listen_port: Option<u16>,
    /// The tracer, told about every byte of every connection.
    pub observer: Option<Arc<dyn ConnObserver>>,
    /// Keep sessions going once every wanted piece is verified (we seed): only a session
    /// with a peer that has everything too ends then.
    pub keep_serving: bool,
}

/// Where a session is in the swarm's logs of verified pieces and endgame cancels (so that it
/// never misses one, and nothing is queued per peer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub haves: usize,
    pub cancels: usize,
}

/// What changed in the swarm since a session last looked ([`PeerSwarm::news`]).
#[derive(Debug, Default)]
pub struct News {
    /// Pieces we verified since: send `have`.
    pub haves: Vec<u32>,
    /// Blocks that arrived from elsewhere in endgame: `cancel` them if outstanding here.
    pub cancels: Vec<BlockRef>,
    /// This peer sent data that failed verification: end the session.
    pub banned: bool,
    /// The peer has a piece we still need.
    pub interesting: bool,
    /// The swarm's choker lets this peer download from us: `unchoke` it (else `choke`).
    pub unchoked: bool,
    /// BEP 52: ask this peer for these block hashes (of a piece that failed verification);
    /// hand its `hashes` answer to [`PeerSwarm::block_hashes`].
    pub hash_request: Option<HashRef>,
}

/// What a received block is to the swarm ([`PeerSwarm::accept_block`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockVerdict {
    /// Wanted and now claimed: hand it to [`PeerSwarm::store`].
    Accepted,
    /// Already have it (endgame duplicate, late copy): discard.
    Duplicate,
    /// Not a block of this torrent we could have asked for: the peer misbehaves.
    Invalid,
}

/// Our disk failed (full, read-only, gone). Not the peer's fault: the download ends, with
/// this message (it names the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DiskError(pub String);

/// Whether other peers wait for a connection slot ([`PeerSwarm::pressure`]): a session that
/// gives nothing either way (the peer keeps us choked, or neither side wants anything) parks
/// itself when others wait, so that another peer can be tried, and makes room when the
/// connection limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Pressure {
    /// Nobody waits: keep every connection.
    None,
    /// Peers wait: a useless connection parks (it stays open but frees its slot).
    Waiting,
    /// Peers wait and no more connections may be opened: parked connections end.
    Full,
}

/// The torrent as a peer session sees it. See the [module docs](self). Implemented by a cheap
/// handle (an `Arc`): each session holds a clone.
pub trait PeerSwarm: Clone + Send + Sync + 'static {
    fn config(&self) -> &SessionConfig;
    /// The raw info dictionary, when we serve metadata (BEP 9).
    fn metadata(&self) -> Option<&[u8]>;
    /// Changes whenever something may give a session work (a verified piece, released
    /// blocks, endgame cancels).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// Cancelled when the download ends (finished, interrupted, or a disk error).
    fn cancel_token(&self) -> &CancellationToken;
    /// Every wanted piece is verified.
    fn is_finished(&self) -> bool;
    /// Our verified pieces now, and a cursor at the current end of the logs.
    fn our_pieces(&self) -> (Bitfield, Cursor);
    /// The peer announced all its pieces at once (`bitfield`, `have all`, `have none`).
    fn peer_announced(&self, has: &Bitfield);
    /// The peer announced one more piece (`have`) after [`PeerSwarm::peer_announced`].
    fn peer_has(&self, index: u32);
    /// A session with the peer at `addr` starts (choked, not interested, for the choker).
    fn peer_joined(&self, addr: SocketAddr);
    /// The peer said `interested` (true) or `not interested`.
    fn peer_interest(&self, addr: SocketAddr, interested: bool);
    /// The session ends: forget the pieces the peer announced (if it did), release the
    /// blocks still outstanding there, and free its upload slot.
    fn peer_left(
        &self,
        addr: SocketAddr,
        announced: Option<&Bitfield>,
        outstanding: &mut dyn Iterator<Item = BlockRef>,
    );
    /// What changed since `cursor` for the peer at `addr` that has `has`; moves the cursor.
    fn news(&self, addr: SocketAddr, has: &Bitfield, cursor: &mut Cursor, out: &mut News);
    /// Claims up to `max` blocks to request from a peer that has `has` and `outstanding`
    /// requested already; appends them to `out`. `rotate` spreads peers over equal pieces.
    fn pick(
        &self,
        has: &Bitfield,
        max: usize,
        outstanding: &HashSet<BlockRef>,
        rotate: u32,
        out: &mut Vec<BlockRef>,
    );
    /// A requested block will not come (choke, reject).
    fn release(&self, r: &BlockRef);
    /// A block arrived: is it wanted? `Accepted` claims it for [`PeerSwarm::store`].
    fn accept_block(&self, r: &BlockRef) -> BlockVerdict;
    /// Writes accepted blocks from `from` to disk and commits them (verifying pieces they
    /// complete). Completes even if the returned future is dropped.
    fn store(
        &self,
        from: SocketAddr,
        blocks: Vec<(BlockRef, Bytes)>,
    ) -> impl Future<Output = Result<(), DiskError>> + Send;
    /// Whether we can serve `r` (a verified piece, a range inside it).
    fn can_serve(&self, r: &BlockRef) -> bool;
    /// Reads blocks we serve, end to end in one buffer.
    fn read(
        &self,
        blocks: Vec<BlockRef>,
    ) -> impl Future<Output = Result<Vec<u8>, DiskError>> + Send;
    /// The payload of our `hashes` answer to the peer's `hash request` (BEP 52: the hashes
    /// asked for, then their proof), or `None` to send `hash reject`. It may read a piece to
    /// hash its blocks (off the async workers). Only a v2 torrent has hashes to give.
    fn hashes(&self, _req: HashRef) -> impl Future<Output = Option<Vec<u8>>> + Send {
        std::future::ready(None)
    }
    /// The peer at `from` answered a hash request with `hashes` (BEP 52): block hashes of a
    /// failed piece tell which of its blocks were bad, and so who sent them.
    fn block_hashes(&self, _from: SocketAddr, _req: &HashRef, _hashes: &[u8]) {}
    /// Counts bytes served to `addr` (its upload rate for the choker).
    fn uploaded(&self, addr: SocketAddr, bytes: u64);
    /// Whether other peers wait for a connection.
    fn pressure(&self) -> Pressure {
        Pressure::None
    }
    /// The session parks (true: it gives nothing and others wait) or is useful again.
    fn set_parked(&self, _addr: SocketAddr, _parked: bool) {}
}
