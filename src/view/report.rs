//! The one-file HTML report (`analyze FILE --html report.html`, `--report report.html` on
//! the networked commands): summary and per-connection tables, an SVG ladder per connection
//! (folded runs expand on click, each message with its frame number), a piece map over
//! time, throughput per peer and request pipeline depth over time, and the message list
//! with filters. Self-contained: inline CSS, JS and SVG, and a `default-src 'none'`
//! content security policy, so the page can load nothing.
//!
//! [`ReportBuilder`] takes events (from the analyzer or as an [`EventObserver`] of the
//! recorder) and keeps aggregates with caps on what is drawn (steps, dots, message rows),
//! so a 1 GiB download stays a small page; the page says what was left out. The page is the
//! minijinja template `report.html` beside this file.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::analyze::{CaptureReport, ConnReport, EventOut};
use crate::event::{Event, EventKind, Msg};
use crate::trace::EventObserver;

use super::fold::{arrow_of, size, ConnKey, Ends, FoldOptions, Folder, Step, What};

/// Steps drawn per connection, and in all.
pub const MAX_STEPS_PER_CONN: usize = 400;
pub const MAX_STEPS: usize = 4000;
/// Rows of the message list.
pub const MAX_MESSAGE_ROWS: usize = 5000;
/// Members listed when a folded run is expanded.
pub const MAX_MEMBERS: usize = 64;
/// Dots of the piece map.
pub const MAX_PIECE_DOTS: usize = 5000;
/// Time bins of the charts.
const BINS: usize = 80;
/// Samples kept for the charts (piece bytes, pipeline changes).
const MAX_SAMPLES: usize = 4_000_000;

const TEMPLATE: &str = include_str!("report.html");
const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

#[derive(Default)]
struct ConnAgg {
    steps: Vec<Step>,
    steps_not_drawn: u64,
    /// Messages sent by the left and the right column.
    msgs: [u64; 2],
    piece_bytes: [u64; 2],
    blocks: [u64; 2],
    /// Requests sent and not yet answered, per requester column.
    outstanding: [i64; 2],
    max_outstanding: i64,
    first_ts: u64,
    last_ts: u64,
}

struct PieceSeen {
    conn: ConnKey,
    ts: u64,
    bytes: u64,
    cut: bool,
}

/// Collects what the report shows; see the [module docs](self).
pub struct ReportBuilder {
    folder: Folder,
    conns: BTreeMap<ConnKey, ConnAgg>,
    steps_drawn: usize,
    start_ns: Option<u64>,
    last_ns: u64,
    messages: Vec<MsgRow>,
    messages_total: u64,
    pieces: HashMap<u32, PieceSeen>,
    /// (ts, conn, bytes) of each received block.
    blocks: Vec<(u64, ConnKey, u32)>,
    /// (ts, +1/-1) of the total request pipeline.
    pipeline: Vec<(u64, i8)>,
    samples_dropped: bool,
    summary: Vec<(String, String)>,
    /// Where [`EventObserver::finish`] writes the page, and its title.
    path: Option<PathBuf>,
    title: String,
}

#[derive(Serialize, Clone)]
struct MsgRow {
    frame: u64,
    time: String,
    conn: String,
    dir: &'static str,
    ty: &'static str,
    label: String,
}

#[derive(Serialize)]
struct MemberView {
    frame: u64,
    time: String,
    label: String,
}

#[derive(Serialize)]
struct StepView {
    y: u32,
    /// The whole label (the drawn one is cut to fit).
    full: String,
    line: bool,
    to_right: bool,
    cls: String,
    label: String,
    frame: String,
    time: String,
    count: u64,
    members: Vec<MemberView>,
}

#[derive(Serialize)]
struct ConnView {
    key: String,
    title: String,
    left: String,
    right: String,
    color: String,
    rows: Vec<(String, String, String)>,
    height: u32,
    steps: Vec<StepView>,
    steps_not_drawn: u64,
}

#[derive(Serialize)]
struct Series {
    name: String,
    color: String,
    points: String,
}

#[derive(Serialize)]
struct Chart {
    title: String,
    unit: String,
    max: String,
    series: Vec<Series>,
}

#[derive(Serialize)]
struct Dot {
    x: f64,
    y: f64,
    color: String,
    title: String,
    bad: bool,
}

#[derive(Serialize)]
struct Page {
    title: String,
    summary: Vec<(String, String)>,
    conn_count: usize,
    msg_count: u64,
    conns: Vec<ConnView>,
    steps_capped: bool,
    piece_dots: Vec<Dot>,
    pieces_total: usize,
    pieces_incomplete: usize,
    dots_capped: bool,
    duration: String,
    charts: Vec<Chart>,
    samples_dropped: bool,
    messages: Vec<MsgRow>,
    messages_total: u64,
    conn_keys: Vec<String>,
    types: Vec<&'static str>,
}

fn key_id(k: ConnKey) -> String {
    match k {
        ConnKey::Tcp(c) => format!("tcp{c}"),
        ConnKey::Utp(c) => format!("utp{c}"),
        ConnKey::Udp(c) => format!("udp{c}"),
        ConnKey::None => "none".into(),
    }
}

impl ReportBuilder {
    /// A builder whose page goes to `path` (when used as an observer), titled `title`.
    pub fn new(title: &str, path: Option<PathBuf>) -> Self {
        ReportBuilder {
            folder: Folder::new(FoldOptions {
                keep_members: MAX_MEMBERS,
                local_left: true,
                ..FoldOptions::default()
            }),
            conns: BTreeMap::new(),
            steps_drawn: 0,
            start_ns: None,
            last_ns: 0,
            messages: Vec::new(),
            messages_total: 0,
            pieces: HashMap::new(),
            blocks: Vec::new(),
            pipeline: Vec::new(),
            samples_dropped: false,
            summary: Vec::new(),
            path,
            title: title.to_string(),
        }
    }

    /// Takes one event.
    pub fn push(&mut self, e: &Event) {
        let start = *self.start_ns.get_or_insert(e.ts);
        self.last_ns = self.last_ns.max(e.ts);
        let key = ConnKey::of(e);
        let mut done = Vec::new();
        self.folder.push(e, &mut |s| done.push(s));
        self.take_steps(done);
        let left = self.folder.ends(key).and_then(|x| x.left);
        // the column of the sender: 0 when it is the left one
        let col = usize::from(e.src.is_some() && e.src != left);
        let agg = self.conns.entry(key).or_default();
        if agg.first_ts == 0 {
            agg.first_ts = e.ts;
        }
        agg.last_ts = e.ts;
        let Some((ty, label)) = arrow_of(&e.kind) else {
            return;
        };
        agg.msgs[col] += 1;
        self.messages_total += 1;
        if self.messages.len() < MAX_MESSAGE_ROWS {
            self.messages.push(MsgRow {
                frame: e.frames.last().copied().unwrap_or(0),
                time: format!("{:.6}", e.ts.saturating_sub(start) as f64 / 1e9),
                conn: key_id(key),
                dir: if col == 0 { "→" } else { "←" },
                ty,
                label,
            });
        }
        let room = self.blocks.len() + self.pipeline.len() < MAX_SAMPLES;
        match &e.kind {
            EventKind::Message {
                msg: Msg::Request { .. },
                ..
            } => {
                agg.outstanding[col] += 1;
                agg.max_outstanding = agg.max_outstanding.max(agg.outstanding[col]);
                if room {
                    self.pipeline.push((e.ts, 1));
                }
            }
            EventKind::Message {
                msg: Msg::Reject { .. },
                ..
            } => {
                let r = 1 - col;
                if agg.outstanding[r] > 0 {
                    agg.outstanding[r] -= 1;
                    if room {
                        self.pipeline.push((e.ts, -1));
                    }
                }
            }
            EventKind::Message {
                msg:
                    Msg::Piece {
                        index,
                        length,
                        sha1,
                        ..
                    },
                ..
            } => {
                agg.piece_bytes[col] += u64::from(*length);
                agg.blocks[col] += 1;
                let r = 1 - col;
                if agg.outstanding[r] > 0 {
                    agg.outstanding[r] -= 1;
                    if room {
                        self.pipeline.push((e.ts, -1));
                    }
                }
                if room {
                    self.blocks.push((e.ts, key, *length));
                } else {
                    self.samples_dropped = true;
                }
                let p = self.pieces.entry(*index).or_insert(PieceSeen {
                    conn: key,
                    ts: e.ts,
                    bytes: 0,
                    cut: false,
                });
                p.conn = key;
                p.ts = e.ts;
                p.bytes += u64::from(*length);
                p.cut |= sha1.is_empty();
            }
            _ => {}
        }
    }

    fn take_steps(&mut self, steps: Vec<Step>) {
        for s in steps {
            let agg = self.conns.entry(s.conn).or_default();
            if agg.steps.len() < MAX_STEPS_PER_CONN && self.steps_drawn < MAX_STEPS {
                agg.steps.push(s);
                self.steps_drawn += 1;
            } else {
                agg.steps_not_drawn += 1;
            }
        }
    }

    /// Adds the analyzer's summary rows (file, frames, time, connections).
    pub fn capture_summary(&mut self, name: &str, r: &CaptureReport) {
        let s = &r.stats;
        self.summary.push(("file".into(), name.into()));
        self.summary.push((
            "frames".into(),
            format!("{} ({})", s.frames, size(s.captured_bytes)),
        ));
        self.summary.push((
            "TCP connections".into(),
            format!(
                "{} found: {} BitTorrent, {} encrypted (MSE/PE), {} HTTP tracker",
                r.tcp_connections, r.bittorrent, r.encrypted, r.tracker_http
            ),
        ));
        for c in &r.conns {
            for n in &c.notes {
                self.summary
                    .push((format!("connection {}", c.id), n.clone()));
            }
        }
    }

    /// The page.
    pub fn render(&mut self) -> Result<String, minijinja::Error> {
        let mut done = Vec::new();
        self.folder.finish(&mut |s| done.push(s));
        self.take_steps(done);
        let page = self.page();
        let mut env = minijinja::Environment::new();
        env.add_template("report.html", TEMPLATE)?;
        env.get_template("report.html")?
            .render(minijinja::value::Serde(&page))
    }

    fn page(&self) -> Page {
        let start = self.start_ns.unwrap_or(0);
        let span = self.last_ns.saturating_sub(start).max(1);
        let secs = |ts: u64| format!("{:.6}", ts.saturating_sub(start) as f64 / 1e9);
        let colors: HashMap<ConnKey, String> = self
            .conns
            .keys()
            .enumerate()
            .map(|(i, k)| (*k, PALETTE[i % PALETTE.len()].to_string()))
            .collect();
        let empty = Ends::default();
        let mut conns = Vec::new();
        for (k, agg) in &self.conns {
            let ends = self.folder.ends(*k).unwrap_or(&empty);
            let col = |i: usize| {
                let a = if i == 0 { ends.left } else { ends.right };
                let mut t = a.map_or("?".into(), |a| a.to_string());
                if let Some(n) = &ends.names[i] {
                    t = format!("{t} ({n})");
                } else if ends.local == Some(i) {
                    t.push_str(" (bt-trace)");
                }
                t
            };
            let steps: Vec<StepView> = agg
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| step_view(s, 40 + 24 * i as u32, &secs))
                .collect();
            let rows = vec![
                (
                    "messages".to_string(),
                    agg.msgs[0].to_string(),
                    agg.msgs[1].to_string(),
                ),
                (
                    "blocks / piece bytes".into(),
                    format!("{} / {}", agg.blocks[0], size(agg.piece_bytes[0])),
                    format!("{} / {}", agg.blocks[1], size(agg.piece_bytes[1])),
                ),
                (
                    "time".into(),
                    format!("{} s → {} s", secs(agg.first_ts), secs(agg.last_ts)),
                    format!("max requests outstanding: {}", agg.max_outstanding),
                ),
            ];
            conns.push(ConnView {
                key: key_id(*k),
                title: k.words(),
                left: col(0),
                right: col(1),
                color: colors.get(k).cloned().unwrap_or_default(),
                rows,
                height: 60 + 24 * steps.len() as u32,
                steps,
                steps_not_drawn: agg.steps_not_drawn,
            });
        }
        // the piece map: one dot per piece at the time its last block came
        let max_bytes = self.pieces.values().map(|p| p.bytes).max().unwrap_or(0);
        let max_index = self.pieces.keys().max().copied().unwrap_or(0);
        let mut idx: Vec<&u32> = self.pieces.keys().collect();
        idx.sort_unstable();
        let step = idx.len().div_ceil(MAX_PIECE_DOTS).max(1);
        let mut incomplete = 0;
        let mut piece_dots = Vec::new();
        for (n, i) in idx.iter().enumerate() {
            let p = &self.pieces[*i];
            let bad = p.cut || (p.bytes < max_bytes && **i != max_index);
            incomplete += usize::from(bad);
            if n % step != 0 && !bad {
                continue;
            }
            piece_dots.push(Dot {
                x: 50.0 + 700.0 * p.ts.saturating_sub(start) as f64 / span as f64,
                y: 210.0 - 200.0 * f64::from(**i) / f64::from(max_index.max(1)),
                color: colors.get(&p.conn).cloned().unwrap_or_default(),
                title: format!(
                    "piece {i} from {} at {} s{}",
                    p.conn.words(),
                    secs(p.ts),
                    if bad { ": incomplete" } else { "" }
                ),
                bad,
            });
        }
        let mut types: Vec<&'static str> = self.messages.iter().map(|m| m.ty).collect();
        types.sort_unstable();
        types.dedup();
        Page {
            title: self.title.clone(),
            summary: self.summary_rows(span),
            conn_count: self
                .conns
                .keys()
                .filter(|k| matches!(k, ConnKey::Tcp(_)))
                .count(),
            msg_count: self.messages_total,
            steps_capped: conns.iter().any(|c| c.steps_not_drawn > 0),
            conns,
            dots_capped: step > 1,
            piece_dots,
            pieces_total: self.pieces.len(),
            pieces_incomplete: incomplete,
            duration: format!("{:.3}", span as f64 / 1e9),
            charts: self.charts(start, span, &colors),
            samples_dropped: self.samples_dropped,
            messages: self.messages.clone(),
            messages_total: self.messages_total,
            conn_keys: self.conns.keys().map(|k| key_id(*k)).collect(),
            types,
        }
    }

    fn summary_rows(&self, span: u64) -> Vec<(String, String)> {
        let mut rows = self.summary.clone();
        let bytes: u64 = self
            .conns
            .values()
            .map(|c| c.piece_bytes[0] + c.piece_bytes[1])
            .sum();
        rows.push((
            "connections".into(),
            format!(
                "{} TCP, {} other conversations",
                self.conns
                    .keys()
                    .filter(|k| matches!(k, ConnKey::Tcp(_)))
                    .count(),
                self.conns
                    .keys()
                    .filter(|k| !matches!(k, ConnKey::Tcp(_)))
                    .count()
            ),
        ));
        rows.push(("messages".into(), self.messages_total.to_string()));
        rows.push((
            "piece data".into(),
            format!("{} in {} pieces", size(bytes), self.pieces.len()),
        ));
        rows.push(("duration".into(), format!("{:.3} s", span as f64 / 1e9)));
        rows
    }

    fn charts(&self, start: u64, span: u64, colors: &HashMap<ConnKey, String>) -> Vec<Chart> {
        let bin_of = |ts: u64| {
            ((ts.saturating_sub(start) as u128 * BINS as u128 / (span as u128 + 1)) as usize)
                .min(BINS - 1)
        };
        let bin_secs = span as f64 / 1e9 / BINS as f64;
        let mut per: BTreeMap<ConnKey, Vec<f64>> = BTreeMap::new();
        for (ts, k, n) in &self.blocks {
            per.entry(*k).or_insert_with(|| vec![0.0; BINS])[bin_of(*ts)] += f64::from(*n);
        }
        let mut tp: Vec<(ConnKey, Vec<f64>)> = per
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.into_iter().map(|b| b / 1_048_576.0 / bin_secs).collect(),
                )
            })
            .collect();
        tp.sort_by(|a, b| {
            let s = |v: &Vec<f64>| v.iter().sum::<f64>();
            s(&b.1).total_cmp(&s(&a.1))
        });
        tp.truncate(PALETTE.len());
        let max = tp
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0f64, f64::max);
        let throughput = Chart {
            title: "throughput per peer".into(),
            unit: "MiB/s".into(),
            max: format!("{max:.1}"),
            series: tp
                .iter()
                .map(|(k, v)| Series {
                    name: k.words(),
                    color: colors.get(k).cloned().unwrap_or_default(),
                    points: polyline(v, max),
                })
                .collect(),
        };
        // per bin the deepest the pipeline was; a bin without changes keeps the depth
        let mut depth = vec![0.0f64; BINS];
        let mut cur = 0i64;
        let mut sorted = self.pipeline.clone();
        sorted.sort_by_key(|p| p.0);
        let mut changes = sorted.into_iter().peekable();
        for (b, slot) in depth.iter_mut().enumerate() {
            let mut deepest = cur;
            while let Some((_, d)) = changes.next_if(|(ts, _)| bin_of(*ts) == b) {
                cur += i64::from(d);
                deepest = deepest.max(cur);
            }
            *slot = deepest as f64;
        }
        let dmax = depth.iter().copied().fold(0.0f64, f64::max);
        let pipeline = Chart {
            title: "request pipeline depth (requests outstanding, all peers)".into(),
            unit: "requests".into(),
            max: format!("{dmax:.0}"),
            series: vec![Series {
                name: "outstanding".into(),
                color: "#444".into(),
                points: polyline(&depth, dmax),
            }],
        };
        vec![throughput, pipeline]
    }
}

/// SVG polyline points of `v` in a 700×200 plot at (50, 10).
fn polyline(v: &[f64], max: f64) -> String {
    let n = v.len().max(2) - 1;
    v.iter()
        .enumerate()
        .map(|(i, y)| {
            let x = 50.0 + 700.0 * i as f64 / n as f64;
            let y = 210.0 - if max > 0.0 { 200.0 * y / max } else { 0.0 };
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Characters of a label drawn in the SVG ladder.
const LABEL_CHARS: usize = 88;

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn step_view(s: &Step, y: u32, secs: &dyn Fn(u64) -> String) -> StepView {
    let frame = if s.frame > 0 {
        s.frame.to_string()
    } else {
        String::new()
    };
    match &s.what {
        What::Arrow {
            to_right,
            ty,
            label,
            count,
            members,
        } => StepView {
            y,
            line: false,
            to_right: *to_right,
            cls: ty.to_string(),
            full: label.clone(),
            label: clip(label, LABEL_CHARS),
            frame,
            time: secs(s.ts),
            count: *count,
            members: members
                .iter()
                .map(|m| MemberView {
                    frame: m.frame,
                    time: secs(m.ts),
                    label: m.label.clone(),
                })
                .collect(),
        },
        What::Line { kind, text } => StepView {
            y,
            line: true,
            to_right: false,
            cls: kind.class().to_string(),
            full: text.clone(),
            label: clip(text, LABEL_CHARS),
            frame,
            time: secs(s.ts),
            count: 1,
            members: Vec::new(),
        },
    }
}

impl EventOut for ReportBuilder {
    fn event(&mut self, e: &Event, _: &str, conn: Option<&ConnReport>) -> io::Result<()> {
        // In an MSE/PE connection the undecodable start is the encryption (in the summary).
        let mse_start = conn.is_some_and(|r| r.mse)
            && matches!(e.kind, EventKind::ProtocolError { offset: 0, .. });
        if !mse_start {
            self.push(e);
        }
        Ok(())
    }
}

impl EventObserver for ReportBuilder {
    fn event(&mut self, e: &Event) {
        self.push(e);
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let html = self.render().map_err(io::Error::other)?;
        std::fs::write(&path, html)?;
        eprintln!("report: {}", path.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Dir;

    fn ev(ts: u64, dir: Dir, msg: Msg) -> Event {
        let mut e = Event::new(
            ts,
            EventKind::Message {
                offset: 0,
                len: 0,
                msg,
            },
        );
        e.conn = Some(0);
        e.dir = Some(dir);
        let a: std::net::SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: std::net::SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let (src, dst) = if dir == Dir::C2s { (a, b) } else { (b, a) };
        (e.src, e.dst) = (Some(src), Some(dst));
        e.frames = vec![ts];
        e
    }

    #[test]
    fn a_big_transfer_is_capped_and_says_so() {
        let mut b = ReportBuilder::new("big", None);
        let n = 20_000u32;
        for i in 0..n {
            let ts = 1 + u64::from(i) * 1000;
            b.push(&ev(
                ts,
                Dir::C2s,
                Msg::Request {
                    index: i / 16,
                    begin: (i % 16) * 16384,
                    length: 16384,
                },
            ));
            b.push(&ev(
                ts + 500,
                Dir::S2c,
                Msg::Piece {
                    index: i / 16,
                    begin: (i % 16) * 16384,
                    length: 16384,
                    sha1: "00".into(),
                },
            ));
            if i % 1000 == 999 {
                // something unfoldable ends the runs now and then
                b.push(&ev(ts + 600, Dir::S2c, Msg::Choke));
                b.push(&ev(ts + 700, Dir::S2c, Msg::Unchoke));
            }
        }
        let html = b.render().unwrap();
        assert!(html.contains(&format!("id=\"msg-count\">{}", 2 * n + 40)));
        assert_eq!(html.matches("<tr data-conn=").count(), MAX_MESSAGE_ROWS);
        assert!(html.contains("× 1000 request 0:0..62:128 KiB"), "runs fold");
        assert!(html.contains("<circle"), "the piece map has dots");
        assert!(html.len() < 3_000_000, "{} bytes", html.len());
        let page = b.page();
        assert_eq!(page.pieces_total, (n / 16) as usize);
        assert_eq!(page.pieces_incomplete, 0);
        assert_eq!(
            page.conns[0].rows[0].1,
            n.to_string(),
            "requests from the left"
        );
    }
}
