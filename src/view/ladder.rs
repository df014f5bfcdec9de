//! The ladder in the terminal: per connection a two-column sequence diagram, one row per
//! [`Step`] (an arrow per message or folded run, lines of their own for the connection's
//! life), with frame number and time, fitted to a width (80 columns, the terminal's, or
//! `COLUMNS`), colored only on a terminal, in plain ASCII with `--ascii`.
//!
//! [`Ladder`] collects the steps of a whole file (from the analyzer, as an [`EventOut`], or
//! from JSON Lines) and [`Ladder::render`] prints them; [`render_step`] draws one row and is
//! shared with `--live` ([`super::live`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use crate::analyze::report::type_names;
use crate::analyze::{CaptureReport, ConnReport, EventOut, Filter};
use crate::event::{Event, EventKind};

use super::fold::{ConnKey, Ends, FoldOptions, Folder, LineKind, Step, What};

/// How rows are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Columns a row may use.
    pub width: usize,
    /// Only ASCII characters (and no colors).
    pub ascii: bool,
    /// ANSI colors.
    pub color: bool,
}

/// Narrowest and widest rows drawn.
pub const MIN_WIDTH: usize = 40;
pub const MAX_WIDTH: usize = 160;

impl Style {
    /// The style for an output that is (`tty`) or is not a terminal: `COLUMNS` when set, else
    /// the terminal's width, else 80; colors on a terminal unless `--ascii` or `NO_COLOR`.
    pub fn detect(tty: bool, ascii: bool) -> Style {
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|&c| c > 0);
        let term = || {
            tty.then(crossterm::terminal::size)
                .and_then(Result::ok)
                .map(|(w, _)| usize::from(w))
                .filter(|&w| w > 0)
        };
        let width = columns.or_else(term).unwrap_or(80);
        Style {
            width: width.clamp(MIN_WIDTH, MAX_WIDTH),
            ascii,
            color: tty && !ascii && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

/// Whether an event passes `--conn` and `--type` (the `--messages` filters; `--conn`
/// numbers TCP connections and uTP ones). Events with no type name (notes) pass when no type is asked.
pub fn keep(filter: &Filter, e: &Event) -> bool {
    if !filter.conns.is_empty() {
        match ConnKey::of(e) {
            ConnKey::Tcp(c) | ConnKey::Utp(c) if filter.conns.contains(&c) => {}
            _ => return false,
        }
    }
    filter.types.is_empty() || type_names(e).iter().any(|t| filter.types.contains(*t))
}

/// The steps of a whole file, by conversation; see the [module docs](self).
pub struct Ladder {
    filter: Filter,
    folder: Folder,
    sections: BTreeMap<ConnKey, Vec<Step>>,
    start_ns: Option<u64>,
    /// Notes of each analyzer connection already shown.
    notes_seen: HashMap<u64, usize>,
}

impl Ladder {
    pub fn new(filter: Filter, opts: FoldOptions) -> Self {
        Ladder {
            filter,
            folder: Folder::new(opts),
            sections: BTreeMap::new(),
            start_ns: None,
            notes_seen: HashMap::new(),
        }
    }

    /// Takes one event (and, from the analyzer, its connection's report, whose new notes,
    /// such as gaps and MSE handshakes, become lines of their own first).
    pub fn push(&mut self, e: &Event, conn: Option<&ConnReport>) {
        self.start_ns.get_or_insert(e.ts);
        // Notes (gaps, MSE) come before the event they precede, but after the opening.
        let opening = matches!(e.kind, EventKind::ConnOpened { .. });
        if let Some(r) = conn.filter(|_| !opening) {
            self.new_notes(r, e.ts);
        }
        // In an MSE/PE connection the undecodable start is the encryption its note names.
        let mse_start = conn.is_some_and(|r| r.mse)
            && matches!(e.kind, EventKind::ProtocolError { offset: 0, .. });
        // The analyzer's note of a gap says more (what the decoder did after it).
        let noted_gap = conn.is_some() && matches!(e.kind, EventKind::Gap { .. });
        if keep(&self.filter, e) && !mse_start && !noted_gap {
            let sections = &mut self.sections;
            self.folder.push(e, &mut |s| {
                sections.entry(s.conn).or_default().push(s);
            });
        }
        if let Some(r) = conn.filter(|_| opening) {
            self.new_notes(r, e.ts);
        }
    }

    fn new_notes(&mut self, r: &ConnReport, ts: u64) {
        let seen = self.notes_seen.entry(r.id).or_insert(0);
        if r.notes.len() <= *seen || !self.filter.types.is_empty() {
            return;
        }
        let fresh: Vec<String> = r.notes[*seen..].to_vec();
        *seen = r.notes.len();
        for text in fresh {
            let mut n = Event::new(ts, EventKind::Note { text });
            n.conn = Some(r.id);
            n.transport = (r.transport == crate::event::Transport::Utp).then_some(r.transport);
            if keep(&self.filter, &n) {
                let sections = &mut self.sections;
                self.folder.push(&n, &mut |s| {
                    sections.entry(s.conn).or_default().push(s);
                });
            }
        }
    }

    /// Ends the open runs; with the analyzer's report, adds the notes that came after the
    /// connections' last events.
    pub fn finish(&mut self, report: Option<&CaptureReport>) {
        if let Some(r) = report {
            for c in &r.conns {
                self.new_notes(c, c.last_ts_ns.max(0) as u64);
            }
        }
        let sections = &mut self.sections;
        self.folder.finish(&mut |s| {
            sections.entry(s.conn).or_default().push(s);
        });
    }

    /// The conversations and their steps, in order.
    pub fn sections(&self) -> impl Iterator<Item = (ConnKey, &[Step], Option<&Ends>)> {
        self.sections
            .iter()
            .map(|(k, v)| (*k, v.as_slice(), self.folder.ends(*k)))
    }

    /// Timestamp of the first event.
    pub fn start_ns(&self) -> u64 {
        self.start_ns.unwrap_or(0)
    }

    /// Writes every conversation's ladder.
    pub fn render(&self, out: &mut dyn Write, style: Style) -> io::Result<()> {
        if self.sections.is_empty() {
            return writeln!(out, "no events to show");
        }
        let start = self.start_ns();
        let mut first = true;
        for (key, steps, ends) in self.sections() {
            if !first {
                writeln!(out)?;
            }
            first = false;
            for l in header(key, ends, style) {
                writeln!(out, "{}", finish_line(&l, style))?;
            }
            for s in steps {
                let t = s.ts.saturating_sub(start) as f64 / 1e9;
                let frame = if s.frame > 0 {
                    s.frame.to_string()
                } else {
                    String::new()
                };
                let prefix = format!("{frame:>6} {t:>10.6} ");
                for l in render_step(s, &prefix, style) {
                    writeln!(out, "{l}")?;
                }
            }
        }
        Ok(())
    }
}

impl EventOut for Ladder {
    fn event(&mut self, e: &Event, _: &str, conn: Option<&ConnReport>) -> io::Result<()> {
        self.push(e, conn);
        Ok(())
    }

    fn capture_start(&mut self, ts_ns: i64) {
        self.start_ns = Some(ts_ns.max(0) as u64);
    }
}

/// A column's title: its address and client name (`(bt-trace)` for our side).
fn column_title(ends: &Ends, i: usize) -> String {
    let addr = if i == 0 { ends.left } else { ends.right };
    let mut t = addr.map_or("?".to_string(), |a| a.to_string());
    if let Some(n) = &ends.names[i] {
        t.push(' ');
        t.push_str(n);
    }
    if ends.local == Some(i) && ends.names[i].is_none() {
        t.push_str(" (bt-trace)");
    }
    t
}

/// The title of a conversation and its column heads.
fn header(key: ConnKey, ends: Option<&Ends>, style: Style) -> Vec<String> {
    let empty = Ends::default();
    let ends = ends.unwrap_or(&empty);
    let (l, r) = (column_title(ends, 0), column_title(ends, 1));
    let mut title = key.words();
    if let (Some(a), Some(b)) = (ends.left, ends.right) {
        title = format!("{title}: {a} ⇄ {b}");
    }
    let mut out = vec![bold(&title, style)];
    let head = format!("{:>6} {:>10} ", "frame", "time");
    let room = style.width.saturating_sub(head.chars().count());
    let (lw, rw) = (l.chars().count(), r.chars().count());
    if lw + rw < room {
        out.push(format!("{head}{l}{}{r}", " ".repeat(room - lw - rw)));
    } else {
        out.push(format!("{head}{}", clip(&l, room)));
        let pad = " ".repeat(style.width.saturating_sub(rw.min(style.width)));
        out.push(format!("{pad}{}", clip(&r, style.width)));
    }
    out
}

fn bold(s: &str, style: Style) -> String {
    if style.color {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Cuts `s` to `n` characters, ending in `…` when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Splits `s` into pieces of at most `n` characters, at spaces where it can.
fn wrap(s: &str, n: usize) -> Vec<String> {
    let n = n.max(8);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        let (lw, ww) = (line.chars().count(), word.chars().count());
        if lw > 0 && lw + 1 + ww > n {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > n {
            let head: String = line.chars().take(n).collect();
            let rest: String = line.chars().skip(n).collect();
            out.push(head);
            line = rest;
        }
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// The ANSI color of a message type or line kind.
fn color_of(what: &What) -> &'static str {
    match what {
        What::Arrow { ty, .. } => match *ty {
            "handshake" => "1;36",
            "choke" | "unchoke" => "33",
            "interested" | "not_interested" => "35",
            "request" | "cancel" => "34",
            "piece" => "32",
            "reject" => "31",
            "extended" | "ut_metadata" | "ut_pex" => "36",
            "tracker" => "95",
            "dht" | "lsd" => "94",
            _ => "0",
        },
        What::Line { kind, .. } => match kind {
            LineKind::Open | LineKind::Close => "2",
            LineKind::Error => "1;31",
            LineKind::Note => "33",
        },
    }
}

/// The rows of one step: `prefix` (frame and time, or the live line's head), then the two
/// columns `│ … │` filling the rest of the width. Long line texts wrap; long arrow labels
/// are cut with `…`.
pub fn render_step(s: &Step, prefix: &str, style: Style) -> Vec<String> {
    let p = prefix.chars().count();
    let inner = style.width.saturating_sub(p + 2).max(12);
    let (bar, dash) = ('│', '─');
    let mut rows = Vec::new();
    match &s.what {
        What::Arrow {
            to_right, label, ..
        } => {
            let label = clip(label, inner - 4);
            let fill = inner - 4 - label.chars().count();
            let body = if *to_right {
                format!("{dash} {label} {}▶", dash.to_string().repeat(fill))
            } else {
                format!("◀{} {label} {dash}", dash.to_string().repeat(fill))
            };
            rows.push(body);
        }
        What::Line { text, .. } => {
            for (i, part) in wrap(text, inner - 4).into_iter().enumerate() {
                let fill = inner - 4 - part.chars().count();
                let lead = if i == 0 { '┄' } else { ' ' };
                let tail = if i == 0 { '┄' } else { ' ' };
                rows.push(format!(
                    "{lead} {part} {}",
                    tail.to_string().repeat(fill + 1)
                ));
            }
        }
    }
    let blank = " ".repeat(p);
    rows.into_iter()
        .enumerate()
        .map(|(i, body)| {
            let body = if style.color {
                format!("\x1b[{}m{body}\x1b[0m", color_of(&s.what))
            } else {
                body
            };
            let head = if i == 0 { prefix } else { &blank };
            finish_line(&format!("{head}{bar}{body}{bar}"), style)
        })
        .collect()
}

/// The line as written: in `--ascii`, every non-ASCII character replaced.
fn finish_line(l: &str, style: Style) -> String {
    if !style.ascii {
        return l.to_string();
    }
    l.chars()
        .map(|c| match c {
            '│' => '|',
            '─' => '-',
            '┄' => '.',
            '▶' => '>',
            '◀' => '<',
            '×' => 'x',
            '…' => '~',
            '⇄' => '=',
            '→' => '>',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow(to_right: bool, label: &str) -> Step {
        Step {
            conn: ConnKey::Tcp(0),
            ts: 0,
            ts_end: 0,
            frame: 7,
            frame_end: 7,
            what: What::Arrow {
                to_right,
                ty: "request",
                label: label.into(),
                count: 1,
                members: vec![],
            },
        }
    }

    #[test]
    fn rows_fill_the_width_exactly() {
        for width in [40, 80, 123] {
            let style = Style {
                width,
                ascii: false,
                color: false,
            };
            for s in [
                arrow(true, "request 1:0..16 KiB"),
                arrow(false, &"x".repeat(300)),
                Step {
                    what: What::Line {
                        kind: LineKind::Note,
                        text: "a gap of 1000 bytes ".repeat(12),
                    },
                    ..arrow(true, "")
                },
            ] {
                for row in render_step(&s, "     7   0.000000 ", style) {
                    assert_eq!(row.chars().count(), width, "{row}");
                }
            }
        }
    }

    #[test]
    fn ascii_and_color() {
        let s = arrow(false, "piece 3:0..16 KiB ×");
        let plain = Style {
            width: 60,
            ascii: true,
            color: false,
        };
        let row = &render_step(&s, "", plain)[0];
        assert!(row.is_ascii(), "{row}");
        assert!(row.starts_with("|<--") && row.ends_with("x -|"), "{row}");
        let colored = Style {
            color: true,
            ascii: false,
            ..plain
        };
        assert!(render_step(&s, "", colored)[0].contains("\x1b[34m"));
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("aaa bbb ccc", 8), ["aaa bbb", "ccc"]);
        assert_eq!(wrap("abcdefghijkl", 8), ["abcdefgh", "ijkl"]);
    }
}
