//! `--live`: the ladder's rows on stderr as the messages happen. A [`LiveLadder`] is an
//! observer of the recorder's events ([`EventObserver`]), so it runs on the recorder's
//! writer thread, never on the runtime. bt-trace's side is the left column; each row names
//! the connection and the peer. Runs fold as in the ladder but end after a second, so a
//! transfer shows while it goes on.

use std::io::{self, IsTerminal, Write};

use crate::event::Event;
use crate::trace::EventObserver;

use super::fold::{ConnKey, FoldOptions, Folder, Step};
use super::ladder::{render_step, Style};

/// How long a live run may span before it is printed.
pub const LIVE_RUN_NS: u64 = 1_000_000_000;

/// The live ladder; see the [module docs](self).
pub struct LiveLadder<W: Write + Send> {
    out: W,
    style: Style,
    folder: Folder,
    start_ns: Option<u64>,
}

impl LiveLadder<io::Stderr> {
    /// Rows on stderr, fitted to it (colors when it is a terminal).
    pub fn stderr() -> Self {
        let style = Style::detect(io::stderr().is_terminal(), false);
        LiveLadder::new(io::stderr(), style)
    }
}

impl<W: Write + Send> LiveLadder<W> {
    pub fn new(out: W, style: Style) -> Self {
        LiveLadder {
            out,
            style,
            folder: Folder::new(FoldOptions {
                max_span_ns: Some(LIVE_RUN_NS),
                local_left: true,
                ..FoldOptions::default()
            }),
            start_ns: None,
        }
    }

    fn write(&mut self, steps: Vec<Step>) {
        let start = self.start_ns.unwrap_or(0);
        for s in steps {
            let t = s.ts.saturating_sub(start) as f64 / 1e9;
            let peer = self
                .folder
                .ends(s.conn)
                .and_then(|e| if e.local == Some(1) { e.left } else { e.right })
                .map_or(String::new(), |a| a.to_string());
            let conn = match s.conn {
                ConnKey::Tcp(c) => format!("#{c}"),
                ConnKey::Utp(c) => format!("µ{c}"),
                ConnKey::Udp(c) => format!("u{c}"),
                ConnKey::None => "-".into(),
            };
            let prefix = format!("{t:>9.3} {conn:<4}{peer:<21} ");
            for row in render_step(&s, &prefix, self.style) {
                // stderr gone: nothing to do about it, the command goes on
                let _ = writeln!(self.out, "{row}");
            }
        }
        let _ = self.out.flush();
    }
}

impl<W: Write + Send> EventObserver for LiveLadder<W> {
    fn event(&mut self, e: &Event) {
        self.start_ns.get_or_insert(e.ts);
        let mut steps = Vec::new();
        self.folder.push(e, &mut |s| steps.push(s));
        self.write(steps);
    }

    fn finish(&mut self) -> io::Result<()> {
        let mut steps = Vec::new();
        self.folder.finish(&mut |s| steps.push(s));
        self.write(steps);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Dir, EventKind, Msg, Role};

    #[test]
    fn rows_appear_as_events_come_with_our_side_left() {
        let style = Style {
            width: 80,
            ascii: true,
            color: false,
        };
        let mut live = LiveLadder::new(Vec::new(), style);
        let (us, peer) = (
            "127.0.0.1:6881".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
        );
        let mut open = Event::new(
            1_000,
            EventKind::ConnOpened {
                local: Some(Role::Server),
            },
        );
        open.conn = Some(0);
        open.src = Some(peer);
        open.dst = Some(us);
        live.event(&open);
        let mut m = Event::new(
            2_000,
            EventKind::Message {
                offset: 68,
                len: 5,
                msg: Msg::Interested,
            },
        );
        m.conn = Some(0);
        m.dir = Some(Dir::C2s);
        m.src = Some(peer);
        m.dst = Some(us);
        live.event(&m);
        let text = String::from_utf8(live.out.clone()).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].contains("#0  127.0.0.1:5000") && rows[0].contains("TCP open"));
        assert!(
            rows[1].contains("|<") && rows[1].contains("interested -|"),
            "{text}"
        );
        assert!(rows.iter().all(|r| r.chars().count() == 80));
    }
}
