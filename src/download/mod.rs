//! Downloading a torrent: piece picking, storage on disk, the peer source (trackers), and the
//! engine tying peers together.
//!
//! Owns the torrent's shared state and all its disk I/O; sessions (`peer/`) reach it only
//! through [`crate::peer::PeerSwarm`], which the engine implements. Nothing here reads or writes
//! a peer socket itself, and nothing here blocks an async worker: disk work runs on the
//! blocking pool, announces in a task of their own.

pub mod choker;
pub mod engine;
pub mod picker;
pub mod source;
pub mod storage;
pub mod v2;
pub mod verify;

pub use engine::{
    download, AnnounceEvent, Layout, Options, PeerList, PeerSource, StaticPeers, Summary,
};
