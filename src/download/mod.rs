//! Downloading a torrent: piece picking, storage on disk, and the engine tying peers together.

pub mod engine;
pub mod picker;
pub mod source;
pub mod storage;

pub use engine::{
    download, AnnounceEvent, Layout, Options, PeerList, PeerSource, StaticPeers, Summary,
};
