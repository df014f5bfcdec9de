//! bt-trace: a BitTorrent client and protocol tracer.
//!
//! The library behind the `bt-trace` binary. See `docs/architecture.md` for the map.

pub mod capture;
