//! Peer connections: dialing, the handshake, one connection's message loop, and the narrow
//! interface through which a session sees its torrent ([`PeerSwarm`]). Nothing here knows the
//! download engine above it.

pub mod conn;
pub mod layers;
pub mod session;
pub mod swarm;

pub use conn::{Conn, ConnObserver, PeerError};
pub use swarm::{BlockVerdict, Cursor, DiskError, News, PeerSwarm, SessionConfig};
