//! What `bt-trace analyze` prints: the summary and one table per connection (default),
//! one line per message (`--messages`), or the events as JSON Lines (`--json`), with the
//! filters `--conn`, `--info-hash` and `--type`. `docs/analyze.md` explains every field.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, Write};

use comfy_table::{presets, Cell, ContentArrangement, Table};

use crate::event::{Event, EventKind, Msg, UdpPacket};
use crate::trace::jsonl::JsonlWriter;
use crate::wire::{MessageKind, Reserved};

use super::analyzer::{CaptureReport, ConnKind, ConnReport, EventOut, SideReport};
use super::pieces::PieceReport;

/// Which connections and events to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Connection numbers (`--conn`); empty: all.
    pub conns: BTreeSet<u64>,
    /// `--info-hash`.
    pub info_hash: Option<[u8; 20]>,
    /// Event type names (`--type`), normalized; empty: all.
    pub types: BTreeSet<String>,
}

/// The `--type` names other than message types: extension names and the other event kinds.
const OTHER_TYPE_NAMES: &[&str] = &[
    "ut_metadata",
    "ut_pex",
    "conn_opened",
    "conn_closed",
    "protocol_error",
    "gap",
    "tracker",
    "dht",
    "lsd",
];

/// The names `--type` accepts: the message types of the message table (as in the JSON
/// `msg.type`), extension names, and the other event kinds.
fn type_names_known() -> impl Iterator<Item = &'static str> {
    std::iter::once("handshake")
        .chain(MessageKind::ALL.iter().map(|k| k.type_name()))
        .chain(OTHER_TYPE_NAMES.iter().copied())
}

/// The `type` a name in words stands for ("suggest piece", "reject-request", "keepalive"
/// → `suggest`, `reject`, `keep_alive`), from the message table; other names as they are.
fn type_of_words(t: &str) -> String {
    let alias = match t {
        "keepalive" => Some("keep_alive"),
        "metadata" => Some("ut_metadata"),
        "pex" => Some("ut_pex"),
        _ => MessageKind::ALL
            .iter()
            .find(|k| k.name().replace([' ', '-'], "_") == t)
            .map(|k| k.type_name()),
    };
    alias.unwrap_or(t).to_string()
}

impl Filter {
    /// Normalizes `--type` names ("not-interested", "Keep Alive" → `not_interested`,
    /// `keep_alive`); an unknown name is an error that lists the known ones.
    pub fn parse_types(list: &[String]) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        for raw in list.iter().flat_map(|s| s.split(',')) {
            let t = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
            if t.is_empty() {
                continue;
            }
            let t = type_of_words(&t);
            if !type_names_known().any(|k| k == t) {
                return Err(format!(
                    "unknown message type {raw:?}; known: {}",
                    type_names_known().collect::<Vec<_>>().join(", ")
                ));
            }
            out.insert(t);
        }
        Ok(out)
    }

    /// Parses a 40-hex-digit info hash.
    pub fn parse_info_hash(s: &str) -> Result<[u8; 20], String> {
        let mut h = [0u8; 20];
        hex::decode_to_slice(s.trim(), &mut h)
            .map_err(|_| format!("{s:?} is not an info hash (40 hex digits)"))?;
        Ok(h)
    }

    /// Whether a connection's table is shown.
    pub fn conn_ok(&self, r: &ConnReport) -> bool {
        (self.conns.is_empty() || self.conns.contains(&r.id))
            && self.info_hash.is_none_or(|h| r.info_hash() == Some(&h))
    }

    /// Whether an event is shown. TCP events follow their connection; tracker events pass
    /// `--info-hash` when they name that hash.
    pub fn event_ok(&self, e: &Event, conn: Option<&ConnReport>) -> bool {
        if !self.types.is_empty() && !type_names(e).iter().any(|t| self.types.contains(*t)) {
            return false;
        }
        let tracker = is_tracker(e);
        if !self.conns.is_empty() {
            // `--conn` numbers TCP connections; UDP tracker datagrams have their own.
            let tcp = conn.is_some();
            if !tcp || !e.conn.is_some_and(|c| self.conns.contains(&c)) {
                return false;
            }
        }
        match &self.info_hash {
            None => true,
            Some(h) if tracker => tracker_names_hash(e, &hex::encode(h)),
            Some(h) => conn.and_then(ConnReport::info_hash) == Some(h),
        }
    }
}

fn is_tracker(e: &Event) -> bool {
    matches!(
        e.kind,
        EventKind::TrackerHttpRequest { .. }
            | EventKind::TrackerHttpResponse { .. }
            | EventKind::TrackerUdp { .. }
            | EventKind::TrackerHttps { .. }
    )
}

fn tracker_names_hash(e: &Event, hex: &str) -> bool {
    match &e.kind {
        EventKind::TrackerHttpRequest {
            announce: Some(a), ..
        } => a.info_hash.as_deref() == Some(hex),
        EventKind::TrackerHttpRequest { target, .. } => target.contains("info_hash"),
        EventKind::TrackerUdp { packet, .. } => match packet {
            UdpPacket::AnnounceRequest { info_hash, .. } => info_hash == hex,
            UdpPacket::ScrapeRequest { info_hashes, .. } => info_hashes.iter().any(|x| x == hex),
            _ => false,
        },
        _ => false,
    }
}

/// The `--type` names an event answers to (a message type, and an extension name).
pub fn type_names(e: &Event) -> Vec<&'static str> {
    match &e.kind {
        EventKind::ConnOpened { .. } => vec!["conn_opened"],
        EventKind::ConnClosed { .. } => vec!["conn_closed"],
        EventKind::Handshake { .. } => vec!["handshake"],
        EventKind::ProtocolError { .. } => vec!["protocol_error"],
        EventKind::Gap { .. } => vec!["gap"],
        EventKind::Note { .. } => vec![],
        EventKind::Dht { .. } => vec!["dht"],
        EventKind::Lsd { .. } => vec!["lsd"],
        EventKind::TrackerHttpRequest { .. }
        | EventKind::TrackerHttpResponse { .. }
        | EventKind::TrackerUdp { .. }
        | EventKind::TrackerHttps { .. } => vec!["tracker"],
        EventKind::Message { msg, .. } => match msg {
            Msg::Extended { name, .. } => match name.as_deref() {
                Some("ut_metadata") => vec!["extended", "ut_metadata"],
                Some("ut_pex") => vec!["extended", "ut_pex"],
                _ => vec!["extended"],
            },
            m => vec![m.kind().type_name()],
        },
    }
}

/// `--json`: the events as JSON Lines (the recorder's format), filtered.
pub struct JsonOut<W: Write> {
    pub w: JsonlWriter<W>,
    pub filter: Filter,
}

impl<W: Write> EventOut for JsonOut<W> {
    fn event(&mut self, e: &Event, _: &str, conn: Option<&ConnReport>) -> io::Result<()> {
        if self.filter.event_ok(e, conn) {
            self.w.write(e)?;
        }
        Ok(())
    }
}

/// `--messages`: one line per event, filtered:
/// `frame  time  tcp|udp N  src → dst  words  [frames …]`.
pub struct MessagesOut<W: Write> {
    pub w: W,
    pub filter: Filter,
    /// Timestamp of the capture's first frame (times are shown relative to it).
    pub start_ns: Option<i64>,
    /// Flush after each line (live input: each message shows as soon as it is decoded).
    pub flush_each: bool,
    line: String,
}

impl<W: Write> MessagesOut<W> {
    pub fn new(w: W, filter: Filter) -> Self {
        MessagesOut {
            w,
            filter,
            start_ns: None,
            flush_each: false,
            line: String::new(),
        }
    }
}

impl<W: Write> EventOut for MessagesOut<W> {
    fn capture_start(&mut self, ts_ns: i64) {
        self.start_ns = Some(ts_ns);
    }

    fn event(&mut self, e: &Event, words: &str, conn: Option<&ConnReport>) -> io::Result<()> {
        let frame = e.frames.iter().max().copied().unwrap_or(0);
        self.event_at(frame, e, words, conn)
    }

    /// The line starts with `frame`, the frame that completes the event.
    fn event_at(
        &mut self,
        frame: u64,
        e: &Event,
        words: &str,
        conn: Option<&ConnReport>,
    ) -> io::Result<()> {
        if !self.filter.event_ok(e, conn) {
            return Ok(());
        }
        let start = *self.start_ns.get_or_insert(e.ts as i64);
        let t = (e.ts as i64 - start) as f64 / 1e9;
        let l = &mut self.line;
        l.clear();
        let proto = conn.map_or("udp", |r| r.transport.name());
        let _ = write!(l, "{frame:>7} {t:>12.6} {proto} {:<3}", e.conn.unwrap_or(0));
        if let (Some(s), Some(d)) = (e.src, e.dst) {
            let _ = write!(l, " {s} → {d}");
        }
        let _ = write!(l, "  {words}");
        if e.frames.len() > 1 {
            let _ = write!(l, "  [frames {}]", frame_list(&e.frames));
        }
        l.push('\n');
        self.w.write_all(l.as_bytes())?;
        if self.flush_each {
            self.w.flush()?;
        }
        Ok(())
    }
}

/// `3,4,5` or, when long, `3-40 (12 frames)`.
fn frame_list(frames: &[u64]) -> String {
    if frames.len() <= 6 {
        frames
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    } else {
        format!(
            "{}-{} ({} frames)",
            frames.first().copied().unwrap_or(0),
            frames.last().copied().unwrap_or(0),
            frames.len()
        )
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in words: `1.0 MiB (1,048,576 bytes)`.
pub fn bytes(n: u64) -> String {
    let (v, unit) = match n {
        0..1024 => return format!("{n} bytes"),
        1024..1_048_576 => (n as f64 / 1024.0, "KiB"),
        1_048_576..1_073_741_824 => (n as f64 / 1_048_576.0, "MiB"),
        _ => (n as f64 / 1_073_741_824.0, "GiB"),
    };
    format!("{v:.1} {unit} ({} bytes)", thousands(n))
}

/// A Unix timestamp in nanoseconds as `2024-06-01 12:00:00.123456 UTC`.
pub fn utc(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06} UTC",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// The summary and the tables of one capture file.
pub fn write_report(
    out: &mut dyn Write,
    name: &str,
    r: &CaptureReport,
    filter: &Filter,
) -> io::Result<()> {
    write_summary(out, name, r)?;
    for c in r.conns.iter().filter(|c| filter.conn_ok(c)) {
        writeln!(out)?;
        write_conn(out, c, r.stats.first_ts_ns.unwrap_or(c.first_ts_ns))?;
    }
    // `--conn N` of a connection without a table: what it is.
    for (id, cat, a, b) in r.unreported.iter().filter(|u| filter.conns.contains(&u.0)) {
        writeln!(out)?;
        writeln!(out, "Connection {id}, {}: {a} ⇄ {b}", cat.words())?;
    }
    if !r.tracker_log.is_empty() && filter.conns.is_empty() {
        writeln!(out)?;
        writeln!(out, "Tracker exchanges:")?;
        for l in &r.tracker_log {
            writeln!(out, "  {l}")?;
        }
    }
    Ok(())
}

fn write_summary(out: &mut dyn Write, name: &str, r: &CaptureReport) -> io::Result<()> {
    let s = &r.stats;
    let mut t = kv_table();
    let format = r.format.map_or("unknown".to_string(), |f| f.to_string());
    t.add_row(vec![Cell::new("file"), Cell::new(name)]);
    t.add_row(vec![Cell::new("format"), Cell::new(format)]);
    let links = s
        .link_types
        .iter()
        .map(|(l, n)| format!("{} ({} frames)", l.name(), thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ");
    t.add_row(vec![Cell::new("link types"), Cell::new(links)]);
    t.add_row(vec![
        Cell::new("frames"),
        Cell::new(format!(
            "{}, {} captured{}",
            thousands(s.frames),
            bytes(s.captured_bytes),
            if s.snaplen_cut_frames > 0 {
                format!(
                    " ({} frames cut by the snap length)",
                    thousands(s.snaplen_cut_frames)
                )
            } else {
                String::new()
            }
        )),
    ]);
    if let (Some(a), Some(b)) = (s.first_ts_ns, s.last_ts_ns) {
        t.add_row(vec![
            Cell::new("time"),
            Cell::new(format!(
                "{:.3} s, from {} to {}",
                (b - a) as f64 / 1e9,
                utc(a),
                utc(b)
            )),
        ]);
    }
    t.add_row(vec![
        Cell::new("TCP connections"),
        Cell::new(format!(
            "{} found: {} BitTorrent ({} picked up mid-stream), {} encrypted (MSE/PE), \
             {} HTTP tracker, {} refused dials (RST), {} unanswered dials, {} without data, \
             {} other",
            r.tcp_connections,
            r.bittorrent,
            r.mid_stream,
            r.encrypted,
            r.tracker_http,
            r.refused,
            r.unanswered,
            r.empty,
            r.other
        )),
    ]);
    t.add_row(vec![
        Cell::new("UDP"),
        Cell::new(format!(
            "{} conversations, {} BEP 15 tracker datagrams",
            thousands(r.udp_conversations),
            r.udp_tracker_datagrams
        )),
    ]);
    for (name, value) in super::udp::summary_rows(r) {
        t.add_row(vec![Cell::new(name), Cell::new(value)]);
    }
    let ra = &s.reassembly;
    if ra.gaps + ra.conflicts + ra.out_of_order_segments > 0 {
        t.add_row(vec![
            Cell::new("reassembly"),
            Cell::new(format!(
                "{} out-of-order segments, {} retransmitted bytes, {} gaps ({} bytes missing), \
                 {} conflicting overlaps",
                thousands(ra.out_of_order_segments),
                thousands(ra.duplicate_bytes),
                ra.gaps,
                thousands(ra.gap_bytes),
                ra.conflicts
            )),
        ]);
    }
    let (msgs, pieces): (u64, u64) = r
        .conns
        .iter()
        .flat_map(|c| c.sides.iter())
        .fold((0, 0), |(m, p), s| (m + s.messages(), p + s.piece_bytes));
    t.add_row(vec![
        Cell::new("BitTorrent"),
        Cell::new(format!(
            "{} messages decoded, {} of piece data",
            thousands(msgs),
            bytes(pieces)
        )),
    ]);
    if r.conns_dropped > 0 {
        t.add_row(vec![
            Cell::new("not shown"),
            Cell::new(format!("{} more connections", r.conns_dropped)),
        ]);
    }
    let mut warnings: Vec<String> = s
        .warnings
        .iter()
        .map(|w| match (w.frame_no, w.offset) {
            (_, Some(o)) if !w.message.contains("offset") => {
                format!("{} (byte offset {o})", w.message)
            }
            _ => w.message.clone(),
        })
        .collect();
    if s.warnings_dropped > 0 {
        warnings.push(format!("and {} more warnings", s.warnings_dropped));
    }
    if !warnings.is_empty() {
        t.add_row(vec![Cell::new("warnings"), Cell::new(warnings.join("\n"))]);
    }
    writeln!(out, "{t}")
}

fn kv_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        t.set_width(120);
    }
    t
}

fn reserved_words(r: &Reserved) -> String {
    let names: Vec<&str> = r.known_names().collect();
    let unknown = r.unknown_bits();
    let mut s = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    if unknown != [0; 8] {
        let _ = write!(s, " + unknown bits {}", hex::encode(unknown));
    }
    s
}

fn secs(ns: i64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// One connection's table: a row per property, a column per side.
fn write_conn(out: &mut dyn Write, c: &ConnReport, capture_start: i64) -> io::Result<()> {
    let client_name = |s: &SideReport| s.handshake.as_ref().map(|h| h.client.clone());
    let title = format!(
        "Connection {}{}, {}: {} ⇄ {}, frames {}–{}, {} → {}",
        c.id,
        if c.transport == crate::event::Transport::Utp {
            " (uTP)"
        } else {
            ""
        },
        c.kind.name(),
        c.client,
        c.server,
        c.first_frame,
        c.last_frame,
        secs(c.first_ts_ns - capture_start),
        secs(c.last_ts_ns - capture_start),
    );
    writeln!(out, "{title}")?;
    let mut t = kv_table();
    let who = |i: usize| {
        let (addr, role) = if i == 0 {
            (c.client, if c.syn_seen { "client" } else { "first seen" })
        } else {
            (c.server, if c.syn_seen { "server" } else { "other side" })
        };
        format!("sent by {addr} ({role})")
    };
    t.set_header(vec![Cell::new(""), Cell::new(who(0)), Cell::new(who(1))]);
    let mut row = |name: &str, f: &dyn Fn(&SideReport) -> String| {
        t.add_row(vec![
            Cell::new(name),
            Cell::new(f(&c.sides[0])),
            Cell::new(f(&c.sides[1])),
        ]);
    };
    row("bytes", &|s| thousands(s.bytes));
    if c.kind == ConnKind::TrackerHttp {
        row("HTTP messages", &|s| s.http_messages.to_string());
    }
    if c.kind == ConnKind::BitTorrent {
        let any_hs = c.sides.iter().any(|s| s.handshake.is_some());
        if any_hs {
            row("client", &|s| client_name(s).unwrap_or_else(|| "-".into()));
            row("peer id", &|s| {
                s.handshake
                    .as_ref()
                    .map_or("-".into(), |h| h.peer_id.escape_ascii().to_string())
            });
            row("info hash", &|s| {
                s.handshake
                    .as_ref()
                    .map_or("-".into(), |h| hex::encode(h.info_hash))
            });
            row("reserved bits", &|s| {
                s.handshake
                    .as_ref()
                    .map_or("-".into(), |h| reserved_words(&h.reserved))
            });
        }
        if c.sides.iter().any(|s| s.ext.is_some()) {
            row("extensions (m)", &|s| {
                s.ext.as_ref().map_or("-".into(), |e| {
                    let mut v: Vec<String> =
                        e.m.iter().map(|(k, id)| format!("{k}={id}")).collect();
                    if v.is_empty() {
                        v.push("none".into());
                    }
                    let mut txt = v.join(", ");
                    if let Some(name) = &e.v {
                        let _ = write!(txt, "\nv: {name}");
                    }
                    if let Some(q) = e.reqq {
                        let _ = write!(txt, "\nreqq: {q}");
                    }
                    if let Some(n) = e.metadata_size {
                        let _ = write!(txt, "\nmetadata_size: {n}");
                    }
                    txt
                })
            });
        }
        for (i, kind) in MessageKind::ALL.iter().enumerate() {
            if c.sides.iter().any(|s| s.counts[i] > 0) {
                row(kind.name(), &|s| s.counts[i].to_string());
            }
        }
        let ext_names: BTreeSet<&String> = c.sides.iter().flat_map(|s| s.extended.keys()).collect();
        for n in ext_names {
            row(&format!("  extended: {n}"), &|s| {
                s.extended.get(n).copied().unwrap_or(0).to_string()
            });
        }
        if c.sides.iter().any(|s| s.blocks > 0) {
            row("pieces / blocks / bytes", &|s| {
                format!(
                    "{} / {} / {}",
                    s.pieces.len() + s.pieces.beyond,
                    s.blocks,
                    thousands(s.piece_bytes)
                )
            });
        }
        if c.sides.iter().any(|s| s.cut_blocks > 0) {
            row("  blocks without data", &|s| s.cut_blocks.to_string());
        }
        if c.sides.iter().any(|s| s.first_unchoke_ns.is_some()) {
            let start = c.first_ts_ns;
            let known = c.syn_seen;
            row("first unchoke sent", &|s| match s.first_unchoke_ns {
                Some(t) if known => format!("{} after the connection opened", secs(t - start)),
                Some(t) => format!("{} after the first frame seen", secs(t - start)),
                None => "-".into(),
            });
        }
        if c.sides.iter().any(|s| s.protocol_errors > 0) {
            row("protocol errors", &|s| s.protocol_errors.to_string());
        }
    }
    if c.sides.iter().any(|s| s.gaps > 0) {
        let utp = c.transport == crate::event::Transport::Utp;
        row("gaps", &|s| match utp {
            // uTP numbers packets, not bytes: a gap's length is unknown.
            true => format!("{} (lost uTP packets)", s.gaps),
            false => format!("{} ({} bytes missing)", s.gaps, thousands(s.gap_bytes)),
        });
    }
    writeln!(out, "{t}")?;
    writeln!(out, "  ended: {}", c.end)?;
    for n in &c.notes {
        writeln!(out, "  note: {n}")?;
    }
    if c.notes_dropped > 0 {
        writeln!(out, "  note: and {} more", c.notes_dropped)?;
    }
    Ok(())
}

/// The `--torrent` lines.
pub fn write_pieces(out: &mut dyn Write, p: &PieceReport) -> io::Result<()> {
    writeln!(
        out,
        "Pieces checked against the torrent: {} good, {} bad, {} incomplete, {} not in the \
         capture (of {})",
        p.good, p.bad, p.incomplete, p.missing, p.num_pieces
    )?;
    if p.failed_checks > 0 {
        writeln!(
            out,
            "  {} complete copies failed the SHA-1 check{}",
            p.failed_checks,
            if p.bad_indexes.is_empty() {
                String::new()
            } else {
                format!(
                    "; pieces never good: {}",
                    p.bad_indexes
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )?;
    }
    let list = |v: &[u32], total: u64| {
        let mut t = v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        if total > v.len() as u64 {
            let _ = write!(t, " and {} more", total - v.len() as u64);
        }
        t
    };
    if p.bad > 0 {
        writeln!(out, "  bad pieces: {}", list(&p.bad_indexes, p.bad))?;
    }
    if p.incomplete > 0 {
        writeln!(
            out,
            "  incomplete pieces: {}",
            list(&p.incomplete_indexes, p.incomplete)
        )?;
    }
    if p.ignored_blocks > 0 {
        writeln!(
            out,
            "  {} blocks do not fit the torrent (index or offset out of range)",
            p.ignored_blocks
        )?;
    }
    if let Some(dir) = &p.extracted_to {
        writeln!(
            out,
            "  files written under {} ({} of piece data; missing pieces are zeros)",
            dir.display(),
            bytes(p.bytes_written)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_normalize() {
        let t = Filter::parse_types(&["request,Piece".into(), "not-interested".into()]).unwrap();
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            ["not_interested", "piece", "request"]
        );
        assert!(Filter::parse_types(&["bogus".into()])
            .unwrap_err()
            .contains("known: handshake"));
        assert_eq!(
            Filter::parse_types(&["keepalive, reject-request, Suggest Piece, have all".into()])
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["have_all", "keep_alive", "reject", "suggest"]
        );
    }

    #[test]
    fn info_hash_parsing() {
        assert_eq!(
            Filter::parse_info_hash("6aff54b59ee2c65daca4cf79e3e1858e68823213").unwrap()[0],
            0x6a
        );
        assert!(Filter::parse_info_hash("6aff").is_err());
    }

    #[test]
    fn number_and_time_formats() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(bytes(1_048_576), "1.0 MiB (1,048,576 bytes)");
        assert_eq!(bytes(10), "10 bytes");
        assert_eq!(utc(0), "1970-01-01 00:00:00.000000 UTC");
        assert_eq!(
            utc(1_704_067_200_123_456_789),
            "2024-01-01 00:00:00.123456 UTC"
        );
        assert_eq!(
            utc(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000000 UTC"
        );
        assert_eq!(frame_list(&[1, 2, 3]), "1,2,3");
        assert_eq!(frame_list(&[1, 2, 3, 4, 5, 6, 9]), "1-9 (7 frames)");
    }
}
