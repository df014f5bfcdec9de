//! Tracing: what bt-trace sent and received, as a pcapng capture and as JSON Lines.
//!
//! - [`synth`]: synthesizes the frames a capture would have shown (Ethernet, IPv4/IPv6,
//!   TCP conversations with handshake, data, ACKs and FIN/RST; UDP datagrams).
//! - [`pcapng`]: writes those frames, with timestamps and packet comments, as pcapng.
//! - [`jsonl`]: writes and reads events (the [`crate::event`] model), one JSON object a line.
//! - [`recorder`]: the observer behind `--trace DIR` that ties them together on a writer
//!   thread, decoding with [`crate::event::decode`].
//!
//! This module owns the recorder and its writers only; the event model and the decoders
//! live in [`crate::event`] (shared with the analyzer), the codec in [`crate::wire`].
//!
//! `docs/tracing.md` explains how the synthesized conversations are built and how to read a
//! trace; `docs/trace-format.md` documents the JSON Lines schema.

pub mod jsonl;
pub mod pcapng;
pub mod recorder;
pub mod synth;

pub use recorder::{EventObserver, Recorder, RecorderOptions, TraceStats};
