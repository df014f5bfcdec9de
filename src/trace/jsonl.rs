//! JSON Lines: one [`Event`] a line, as `serde_json` writes it (field names are stable and
//! documented in `docs/trace-format.md`). The same format is what `analyze --json` prints.
//!
//! Contract: reading never panics; a line that is not an event is an error naming its line
//! number.

use std::io::{self, BufRead, BufWriter, Write};

use crate::event::Event;

/// Writes events, one JSON object a line, through an internal buffer.
pub struct JsonlWriter<W: Write> {
    out: BufWriter<W>,
    /// One line, serialized here first (reused: no allocation per event).
    line: Vec<u8>,
    events: u64,
    bytes: u64,
}

impl<W: Write> JsonlWriter<W> {
    /// A writer into `inner` (pass an unbuffered `File`).
    pub fn new(inner: W) -> Self {
        JsonlWriter {
            out: BufWriter::with_capacity(256 * 1024, inner),
            line: Vec::with_capacity(1024),
            events: 0,
            bytes: 0,
        }
    }

    /// Appends one event and a newline.
    pub fn write(&mut self, e: &Event) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, e).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.events += 1;
        self.bytes += self.line.len() as u64;
        Ok(())
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes written so far (buffered or not).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Flushes and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// Why a JSON Lines file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("reading line {line}: {error}")]
    Io { line: u64, error: io::Error },
    #[error("line {line} is not a trace event: {error}")]
    Parse { line: u64, error: serde_json::Error },
}

/// Reads every event of a JSON Lines file (empty lines are skipped).
pub fn read_events(input: impl BufRead) -> Result<Vec<Event>, JsonlError> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|error| JsonlError::Io {
            line: line_no,
            error,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).map_err(|error| JsonlError::Parse {
                line: line_no,
                error,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Msg};

    #[test]
    fn write_then_read_back() {
        let events = vec![
            Event::new(1, EventKind::Note { text: "hi".into() }),
            Event::new(
                2,
                EventKind::Message {
                    offset: 68,
                    len: 4,
                    msg: Msg::KeepAlive,
                },
            ),
        ];
        let mut w = JsonlWriter::new(Vec::new());
        for e in &events {
            w.write(e).unwrap();
        }
        assert_eq!(w.events(), 2);
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 2);
        assert_eq!(read_events(&bytes[..]).unwrap(), events);
        let err = read_events(&b"{\"v\":1}\n"[..]).unwrap_err();
        assert!(err.to_string().starts_with("line 1 is not a trace event"));
    }

    /// Every example line of docs/trace-format.md is an event, and writes back the same.
    #[test]
    fn documented_examples_parse() {
        let doc = include_str!("../../docs/trace-format.md");
        let mut n = 0;
        for line in doc.lines().filter(|l| l.starts_with("{\"v\":")) {
            let e: Event = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(serde_json::to_string(&e).unwrap(), line);
            n += 1;
        }
        assert!(n >= 15, "{n} examples");
        let err = read_events(&b"{\"v\":1}\n"[..]).unwrap_err();
        assert!(err.to_string().starts_with("line 1 is not a trace event"));
    }
}
