//! `bt-trace analyze`: what BitTorrent peers and trackers said, read from a real capture.
//!
//! ```text
//! pcap/pcapng ─► capture (reader, link layers, IP, TCP reassembly)     crate::capture
//!                   │ TCP byte streams, UDP datagrams
//!                   ▼
//!              detect.rs    what each connection is: BitTorrent (handshake on any port,
//!                           or message framing mid-stream), MSE/PE-encrypted, HTTP tracker;
//!                           which UDP datagrams are BEP 15 tracker traffic
//!              analyzer.rs  the StreamSink tying it together: each peer connection through
//!                           the recorder's decoder (crate::event::decode, which recovers from
//!                           missing starts, gaps and bad messages), per-connection reports,
//!                           events (the one event model), piece data
//!              udp.rs       the UDP protocols beside BEP 15 trackers: uTP connections
//!                           (reassembled by crate::capture::utp, then decoded as TCP's),
//!              dht.rs       the DHT (BEP 5, KRPC), lsd.rs  Local Service Discovery (BEP 14)
//!              pieces.rs    `--torrent`: piece hashes; `--extract`: the files rebuilt
//!              report.rs    summary and tables, `--messages` lines, `--json`, filters
//! ```
//!
//! The events are [`crate::event::Event`]s, built by the same decoder as the recorder's, so
//! analyzing a pcapng that `--trace` wrote gives back its JSON Lines (except what a capture cannot hold: notes, HTTPS exchanges, and which end was bt-trace).
//!
//! Memory stays bounded whatever the capture's size: the capture layer's read buffer and
//! reassembly limits, one unfinished message per direction of each open connection, and
//! small counters per reported connection. `docs/analyze.md` is the user's guide.
//!
//! Contract: no input makes any of this panic (property tests in each file).

pub mod analyzer;
pub mod detect;
pub mod dht;
pub mod lsd;
pub mod order;
pub mod pieces;
pub mod report;
pub mod udp;

pub use analyzer::{
    analyze, AnalyzeError, CaptureReport, Category, ConnKind, ConnReport, EventOut, NoEvents,
    Options,
};
pub use pieces::{PieceChecker, PieceReport};
pub use report::Filter;
