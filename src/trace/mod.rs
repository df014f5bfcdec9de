//! Tracing: what bt-trace sent and received, as a pcapng capture and as JSON Lines.
//!
//! - [`event`]: the event model, shared with the capture analyzer (`analyze --json`).
//! - [`decode`]: bytes to events, with no I/O ([`decode::ConnectionDecoder`] for peer
//!   connections, plus HTTP and UDP tracker exchanges).
//! - [`synth`]: synthesizes the frames a capture would have shown (Ethernet, IPv4/IPv6,
//!   TCP conversations with handshake, data, ACKs and FIN/RST; UDP datagrams).
//! - [`pcapng`]: writes those frames, with timestamps and packet comments, as pcapng.
//! - [`jsonl`]: writes and reads events, one JSON object a line.
//! - [`recorder`]: the observer behind `--trace DIR` that ties them together on a writer
//!   thread.
//!
//! `docs/tracing.md` explains how the synthesized conversations are built and how to read a
//! trace; `docs/trace-format.md` documents the JSON Lines schema.

pub mod decode;
pub mod event;
pub mod jsonl;
pub mod pcapng;
pub mod recorder;
pub mod synth;

pub use event::{Dir, Event, EventKind, Msg};
pub use recorder::{Recorder, RecorderOptions, TraceStats};
