//! Tracing: what bt-trace sent and received, as a pcapng capture (and, later, JSON Lines).
//!
//! - [`synth`]: synthesizes the frames a capture would have shown (Ethernet, IPv4/IPv6,
//!   TCP conversations with handshake, data, ACKs and FIN/RST; UDP datagrams).
//! - [`pcapng`]: writes those frames, with timestamps and packet comments, as pcapng.
//!
//! The event model (`event.rs`), the JSON Lines writer (`jsonl.rs`) and the recorder that
//! ties connections to these pieces (`recorder.rs`) live next to them. `docs/tracing.md`
//! explains how the synthesized conversations are built.

pub mod pcapng;
pub mod synth;
