//! Peer connections: dialing, the handshake, and one connection's message loop.

pub mod conn;
pub mod session;

pub use conn::{Conn, ConnObserver, PeerError};
