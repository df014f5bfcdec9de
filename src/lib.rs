//! bt-trace: a BitTorrent client and protocol tracer.
//!
//! The library behind the `bt-trace` binary. See `docs/architecture.md` for the map.
//!
//! No `unsafe` anywhere: the codecs take hostile bytes, and safe Rust is what makes their
//! no-panic, no-overrun contracts believable.
#![forbid(unsafe_code)]
pub mod analyze;
pub mod bencode;
pub mod bitfield;
pub mod capture;
pub mod cli;
pub mod client;
pub mod create;
pub mod demo;
pub mod download;
pub mod event;
pub mod magnet;
pub mod merkle;
pub mod metadata;
pub mod metainfo;
pub mod peer;
pub mod peer_id;
pub mod trace;
pub mod tracker;
pub mod units;
pub mod view;
pub mod wire;

/// A fresh peer id: `-bt0100-` (Azureus style: client code `bt`, version 0.1.0.0) and 12 random
/// alphanumeric characters.
pub fn peer_id() -> [u8; 20] {
    use rand::Rng;
    let mut id = *b"-bt0100-000000000000";
    let mut rng = rand::thread_rng();
    for b in &mut id[8..] {
        *b = rng.sample(rand::distributions::Alphanumeric);
    }
    id
}
