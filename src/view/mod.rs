//! Seeing the protocol: the ladder (a two-column sequence diagram per connection) in the
//! terminal (`bt-trace ladder`, `analyze --ladder`), live on stderr (`--live`), and the
//! one-file HTML report (`analyze --html`, `--report`).
//!
//! ```text
//! events (crate::event) ─► fold.rs    steps: an arrow per message with its key fields, runs
//!                                     folded, lines for open/close/errors/gaps/notes
//!                            ├─► ladder.rs  text rows fitted to a width, colors, --ascii
//!                            ├─► live.rs    the same rows on stderr as events happen
//!                            └─► report.rs  the one-file HTML report (report.html template)
//! source.rs: a file's events (a capture through the analyzer, or JSON Lines)
//! ```
//!
//! This module only reads events and draws them: it never decodes bytes (that is
//! `crate::event`), never touches a connection and never writes trace files.

pub mod fold;
pub mod ladder;
pub mod live;
pub mod report;
pub mod source;

pub use fold::{ConnKey, FoldOptions, Folder, Step, What};
pub use ladder::{Ladder, Style};
