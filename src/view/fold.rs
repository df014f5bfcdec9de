//! From events to ladder steps: each message becomes an arrow with its name and key fields,
//! runs of the same message in the same direction are folded into one arrow ("× 16 request
//! 11:0..256 KiB"), and connection life (open, close, errors, notes) becomes lines of their
//! own. Shared by the terminal ladder, `--live` and the HTML report, so all three say the
//! same thing in the same words.
//!
//! Folding: per connection, up to [`FoldOptions::max_open`] runs are open at once, one per
//! (direction, message type) of the foldable types (requests, pieces, haves, ...): a
//! download's interleaved requests and pieces fold into one run each. Any other event (an
//! unchoke, a bitfield, a close) ends the connection's open runs first, so the order of
//! everything that is not a run stays the capture order. A run is shown where its first
//! message is.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::event::{CloseHow, Dir, Event, EventKind, ExtPayload, Msg, Role, Transport, UdpPacket};

/// Which conversation a step belongs to: a TCP connection (`tcp.stream`), a uTP one
/// (numbered on their own), a UDP one (`udp.stream`: trackers, DHT, LSD), or none (HTTPS
/// exchanges, notes about no connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnKey {
    Tcp(u64),
    Utp(u64),
    Udp(u64),
    None,
}

impl ConnKey {
    /// The conversation of an event.
    pub fn of(e: &Event) -> ConnKey {
        match (e.conn, &e.kind) {
            (None, _) => ConnKey::None,
            (
                Some(c),
                EventKind::TrackerUdp { .. } | EventKind::Dht { .. } | EventKind::Lsd { .. },
            ) => ConnKey::Udp(c),
            (Some(c), _) if e.transport == Some(Transport::Utp) => ConnKey::Utp(c),
            (Some(c), _) => ConnKey::Tcp(c),
        }
    }

    /// "connection 3", "UDP conversation 1", "no connection".
    pub fn words(self) -> String {
        match self {
            ConnKey::Tcp(c) => format!("connection {c}"),
            ConnKey::Utp(c) => format!("uTP connection {c}"),
            ConnKey::Udp(c) => format!("UDP conversation {c}"),
            ConnKey::None => "outside connections".into(),
        }
    }
}

/// What a line of its own is about (for colors and CSS classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Open,
    Close,
    Error,
    Note,
}

impl LineKind {
    pub fn class(self) -> &'static str {
        match self {
            LineKind::Open => "open",
            LineKind::Close => "close",
            LineKind::Error => "error",
            LineKind::Note => "note",
        }
    }
}

/// One message of a folded run (kept for the HTML report's expansion).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub ts: u64,
    pub frame: u64,
    pub label: String,
}

/// What a step shows.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// A message (or a folded run of `count` messages) from one side to the other.
    Arrow {
        /// From the left column to the right one.
        to_right: bool,
        /// The message type (`request`, `ut_metadata`, `handshake`, ...), for colors.
        ty: &'static str,
        /// "request 11:0..16 KiB", or for a run "× 16 request 11:0..256 KiB".
        label: String,
        count: u64,
        /// The run's first messages, at most [`FoldOptions::keep_members`] (empty when
        /// `count` is 1).
        members: Vec<Member>,
    },
    /// Something that is not a message: TCP open/close, an error, a gap, a note.
    Line { kind: LineKind, text: String },
}

/// One row of a ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub conn: ConnKey,
    /// Timestamp (ns since the epoch) of the first event, and of the last one of a run.
    pub ts: u64,
    pub ts_end: u64,
    /// The frame where the (first) message ends, and the last run member's; 0 when not in
    /// a capture.
    pub frame: u64,
    pub frame_end: u64,
    pub what: What,
}

/// How to fold.
#[derive(Debug, Clone, Copy)]
pub struct FoldOptions {
    /// Runs open at once per connection.
    pub max_open: usize,
    /// A run ends when it spans more than this (for `--live`, so runs show while a transfer
    /// goes on); `None`: runs are as long as they go.
    pub max_span_ns: Option<u64>,
    /// Members kept per run.
    pub keep_members: usize,
    /// Put bt-trace's side (known from `conn_opened.local`) in the left column, instead of
    /// the TCP client.
    pub local_left: bool,
    /// Do not fold at all.
    pub no_fold: bool,
}

impl Default for FoldOptions {
    fn default() -> Self {
        FoldOptions {
            max_open: 3,
            max_span_ns: None,
            keep_members: 256,
            local_left: false,
            no_fold: false,
        }
    }
}

/// The ends of a conversation, as its events show them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ends {
    /// The left and the right column's address.
    pub left: Option<SocketAddr>,
    pub right: Option<SocketAddr>,
    /// The client names from the handshakes ("Transmission 3.00"), left and right.
    pub names: [Option<String>; 2],
    /// Which column bt-trace is, when known.
    pub local: Option<usize>,
}

/// An open run.
struct Run {
    to_right: bool,
    ty: &'static str,
    first_label: String,
    count: u64,
    ts: u64,
    ts_end: u64,
    frame: u64,
    frame_end: u64,
    /// First block (index, begin) and the end of the last one (index, begin + length).
    from: Option<(u32, u32)>,
    to: Option<(u32, u32)>,
    bytes: u64,
    /// Smallest and largest piece index (have, suggest, allowed fast).
    lo: u32,
    hi: u32,
    members: Vec<Member>,
}

impl Run {
    fn label(&self) -> String {
        if self.count == 1 {
            return self.first_label.clone();
        }
        let what = match (self.from, self.to) {
            (Some(a), Some(b)) => format!("{} {}", self.ty_words(), range(a, b)),
            _ if matches!(self.ty, "have" | "suggest" | "allowed_fast") => {
                format!("{} {}..{}", self.ty_words(), self.lo, self.hi)
            }
            _ => self.ty_words().to_string(),
        };
        format!("× {} {what}", self.count)
    }

    fn ty_words(&self) -> &'static str {
        match self.ty {
            "keep_alive" => "keep-alive",
            "allowed_fast" => "allowed fast",
            t => t,
        }
    }

    fn step(self, conn: ConnKey) -> Step {
        let label = self.label();
        let members = if self.count > 1 {
            self.members
        } else {
            Vec::new()
        };
        Step {
            conn,
            ts: self.ts,
            ts_end: self.ts_end,
            frame: self.frame,
            frame_end: self.frame_end,
            what: What::Arrow {
                to_right: self.to_right,
                ty: self.ty,
                label,
                count: self.count,
                members,
            },
        }
    }
}

#[derive(Default)]
struct ConnState {
    ends: Ends,
    /// bt-trace is the TCP server: columns are swapped (with `local_left`).
    swap: bool,
    runs: Vec<Run>,
}

/// Turns events into [`Step`]s, folding runs; see the [module docs](self).
pub struct Folder {
    opts: FoldOptions,
    conns: BTreeMap<ConnKey, ConnState>,
}

impl Folder {
    pub fn new(opts: FoldOptions) -> Self {
        Folder {
            opts,
            conns: BTreeMap::new(),
        }
    }

    /// The ends of a conversation seen so far.
    pub fn ends(&self, key: ConnKey) -> Option<&Ends> {
        self.conns.get(&key).map(|c| &c.ends)
    }

    /// Takes one event; the steps it completes go to `out` (in order).
    pub fn push(&mut self, e: &Event, out: &mut dyn FnMut(Step)) {
        let key = ConnKey::of(e);
        let opts = self.opts;
        let st = self.conns.entry(key).or_default();
        if let (EventKind::ConnOpened { local: Some(role) }, true) = (&e.kind, opts.local_left) {
            st.swap = *role == Role::Server;
        }
        if st.ends.left.is_none() {
            // The left column: the TCP client (or bt-trace), or a UDP datagram's sender.
            let (client, server) = match e.dir {
                Some(Dir::S2c) => (e.dst, e.src),
                _ => (e.src, e.dst),
            };
            let (l, r) = if st.swap {
                (server, client)
            } else {
                (client, server)
            };
            st.ends.left = l;
            st.ends.right = r;
        }
        if let EventKind::ConnOpened { local: Some(role) } = &e.kind {
            let client_col = usize::from(st.swap);
            st.ends.local = Some(match role {
                Role::Client => client_col,
                Role::Server => 1 - client_col,
            });
        }
        let to_right = match e.dir {
            Some(d) => d.from_client() != st.swap,
            None => e.src.is_some() && e.src == st.ends.left,
        };
        if let EventKind::Handshake { hs, .. } = &e.kind {
            st.ends.names[usize::from(!to_right)] = Some(hs.client.clone());
        }
        let frame = e.frames.last().copied().unwrap_or(0);
        let Some((ty, label)) = arrow_of(&e.kind) else {
            let (kind, text) = line_of(e, st.ends.left);
            flush_runs(st, key, out);
            out(Step {
                conn: key,
                ts: e.ts,
                ts_end: e.ts,
                frame,
                frame_end: frame,
                what: What::Line { kind, text },
            });
            return;
        };
        // Runs that are too old end first (`--live`).
        if let Some(span) = opts.max_span_ns {
            if st.runs.iter().any(|r| e.ts.saturating_sub(r.ts) > span) {
                flush_runs(st, key, out);
            }
        }
        let foldable = !opts.no_fold && FOLDABLE.contains(&ty);
        let member = Member {
            ts: e.ts,
            frame,
            label: label.clone(),
        };
        if foldable {
            if let Some(r) = st
                .runs
                .iter_mut()
                .find(|r| r.to_right == to_right && r.ty == ty)
            {
                r.count += 1;
                r.ts_end = e.ts;
                r.frame_end = frame;
                if let Some(b) = block_of(&e.kind) {
                    r.to = Some((b.0, b.1.saturating_add(b.2)));
                    r.bytes += u64::from(b.2);
                }
                if let Some(i) = index_of(&e.kind) {
                    r.lo = r.lo.min(i);
                    r.hi = r.hi.max(i);
                }
                if r.members.len() < opts.keep_members {
                    r.members.push(member);
                }
                return;
            }
            if st.runs.len() >= opts.max_open.max(1) {
                flush_runs(st, key, out);
            }
        } else {
            flush_runs(st, key, out);
        }
        let b = block_of(&e.kind);
        let i = index_of(&e.kind).unwrap_or(0);
        let run = Run {
            to_right,
            ty,
            first_label: label,
            count: 1,
            ts: e.ts,
            ts_end: e.ts,
            frame,
            frame_end: frame,
            from: b.map(|b| (b.0, b.1)),
            to: b.map(|b| (b.0, b.1.saturating_add(b.2))),
            bytes: b.map_or(0, |b| u64::from(b.2)),
            lo: i,
            hi: i,
            members: vec![member],
        };
        if foldable {
            st.runs.push(run);
        } else {
            out(run.step(key));
        }
    }

    /// Ends the open runs of every conversation (at the end of the input).
    pub fn finish(&mut self, out: &mut dyn FnMut(Step)) {
        for (key, st) in self.conns.iter_mut() {
            flush_runs(st, *key, out);
        }
    }

    /// Ends the open runs of one conversation.
    pub fn flush(&mut self, key: ConnKey, out: &mut dyn FnMut(Step)) {
        if let Some(st) = self.conns.get_mut(&key) {
            flush_runs(st, key, out);
        }
    }
}

/// Message types whose runs fold.
const FOLDABLE: &[&str] = &[
    "keep_alive",
    "have",
    "request",
    "piece",
    "cancel",
    "reject",
    "suggest",
    "allowed_fast",
    "ut_metadata",
    "ut_pex",
];

fn flush_runs(st: &mut ConnState, key: ConnKey, out: &mut dyn FnMut(Step)) {
    for r in st.runs.drain(..) {
        out(r.step(key));
    }
}

fn block_of(k: &EventKind) -> Option<(u32, u32, u32)> {
    match k {
        EventKind::Message {
            msg:
                Msg::Request {
                    index,
                    begin,
                    length,
                }
                | Msg::Cancel {
                    index,
                    begin,
                    length,
                }
                | Msg::Reject {
                    index,
                    begin,
                    length,
                }
                | Msg::Piece {
                    index,
                    begin,
                    length,
                    ..
                },
            ..
        } => Some((*index, *begin, *length)),
        _ => None,
    }
}

fn index_of(k: &EventKind) -> Option<u32> {
    match k {
        EventKind::Message {
            msg: Msg::Have { index } | Msg::Suggest { index } | Msg::AllowedFast { index },
            ..
        } => Some(*index),
        _ => None,
    }
}

pub use crate::units::size;

/// A block range: `11:0..256 KiB` (piece 11, bytes 0 to 256 KiB), `11:0..12:64 KiB` across
/// pieces, in bytes when not KiB-aligned.
pub fn range(from: (u32, u32), to: (u32, u32)) -> String {
    let kib = from.1 % 1024 == 0 && to.1 % 1024 == 0;
    let (u, unit) = if kib { (1024, "KiB") } else { (1, "B") };
    if from.0 == to.0 {
        format!("{}:{}..{} {unit}", from.0, from.1 / u, to.1 / u)
    } else {
        format!("{}:{}..{}:{} {unit}", from.0, from.1 / u, to.0, to.1 / u)
    }
}

/// A peer id (40 hex digits) escaped for reading: `-TR3000-k3j2...`, non-printable bytes as
/// `\xNN`.
pub fn peer_id_words(hex_id: &str) -> String {
    match hex::decode(hex_id) {
        Ok(b) => b.escape_ascii().to_string(),
        Err(_) => hex_id.to_string(),
    }
}

/// Keeps at most `n` entries of an `m` table in words (`ut_metadata=3 ut_pex=1 +2`).
fn m_summary(m: &BTreeMap<String, u8>, n: usize) -> String {
    let mut parts: Vec<String> = m
        .iter()
        .take(n)
        .map(|(k, v)| format!("{}={v}", k.escape_default()))
        .collect();
    if m.len() > n {
        parts.push(format!("+{}", m.len() - n));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

/// The arrow of a message event: its type and its label; `None` for other events.
pub fn arrow_of(k: &EventKind) -> Option<(&'static str, String)> {
    let msg = match k {
        EventKind::Handshake { hs, .. } => {
            let mut l = format!("handshake {}", hs.client);
            if !hs.extensions.is_empty() {
                l.push_str(&format!(" [{}]", hs.extensions.join(",")));
            }
            l.push_str(&format!(" id {}", peer_id_words(&hs.peer_id)));
            return Some(("handshake", l));
        }
        EventKind::TrackerHttpRequest {
            method,
            target,
            announce,
            ..
        } => {
            let l = match announce {
                Some(a) => format!(
                    "announce{} left={}",
                    a.event
                        .as_ref()
                        .map(|e| format!(" {e}"))
                        .unwrap_or_default(),
                    a.left.map_or("?".into(), |n| n.to_string())
                ),
                None => format!("{method} {}", target.chars().take(40).collect::<String>()),
            };
            return Some(("tracker", l));
        }
        EventKind::TrackerHttpResponse {
            status,
            reason,
            response,
            ..
        } => {
            let l = match response {
                Some(crate::event::TrackerReply::Announce {
                    interval, peers, ..
                }) => format!("{status} {} peers, interval {interval} s", peers.len()),
                Some(crate::event::TrackerReply::Failure { reason }) => {
                    format!("{status} failure: {}", reason.escape_default())
                }
                Some(crate::event::TrackerReply::Scrape { files }) => {
                    format!("{status} scrape, {} torrents", files.len())
                }
                None => format!("{status} {}", reason.escape_default()),
            };
            return Some(("tracker", l));
        }
        EventKind::TrackerUdp { packet, .. } => return Some(("tracker", udp_words(packet))),
        EventKind::Dht { packet, .. } => return Some(("dht", crate::analyze::dht::words(packet))),
        EventKind::Lsd { announce, .. } => {
            return Some(("lsd", crate::analyze::lsd::words(announce)))
        }
        EventKind::Message { msg, .. } => msg,
        _ => return None,
    };
    let ty = match msg {
        Msg::Extended {
            name: Some(n),
            ext_id,
            ..
        } if *ext_id != 0 => match n.as_str() {
            "ut_metadata" => "ut_metadata",
            "ut_pex" => "ut_pex",
            _ => "extended",
        },
        m => m.kind().type_name(),
    };
    Some((ty, msg_words(msg)))
}

/// A message in words, with its key fields.
pub fn msg_words(msg: &Msg) -> String {
    let name = msg.kind().name();
    match msg {
        Msg::Have { index } | Msg::Suggest { index } | Msg::AllowedFast { index } => {
            format!("{name} {index}")
        }
        Msg::Bitfield { pieces, bits, .. } => format!("bitfield {pieces}/{bits} pieces"),
        Msg::Request {
            index,
            begin,
            length,
        }
        | Msg::Cancel {
            index,
            begin,
            length,
        }
        | Msg::Reject {
            index,
            begin,
            length,
        }
        | Msg::Piece {
            index,
            begin,
            length,
            ..
        } => format!(
            "{name} {}",
            range((*index, *begin), (*index, begin.saturating_add(*length)))
        ),
        Msg::Port { port } => format!("port {port}"),
        Msg::HashRequest {
            pieces_root,
            index,
            length,
            ..
        }
        | Msg::HashReject {
            pieces_root,
            index,
            length,
            ..
        }
        | Msg::Hashes {
            pieces_root,
            index,
            length,
            ..
        } => format!(
            "{name} {}… {index}+{length}",
            pieces_root.get(..8).unwrap_or(pieces_root)
        ),
        Msg::Unknown { id, hex } => format!("unknown id {id}, {} bytes", hex.len() / 2),
        Msg::Extended {
            ext_id,
            name,
            payload,
        } => ext_words(*ext_id, name.as_deref(), payload),
        _ => name.to_string(),
    }
}

fn ext_words(ext_id: u8, name: Option<&str>, p: &ExtPayload) -> String {
    match p {
        ExtPayload::Handshake {
            m,
            v,
            reqq,
            metadata_size,
            ..
        } => {
            let mut l = format!("ext handshake m: {}", m_summary(m, 4));
            if let Some(v) = v {
                l.push_str(&format!(" v: {}", v.escape_default()));
            }
            if let Some(q) = reqq {
                l.push_str(&format!(" reqq {q}"));
            }
            if let Some(s) = metadata_size {
                l.push_str(&format!(" metadata {}", size(*s)));
            }
            l
        }
        ExtPayload::UtMetadata {
            msg_type,
            piece,
            total_size,
            data_len,
        } => {
            let what = match msg_type {
                0 => "request",
                1 => "data",
                2 => "reject",
                _ => "message",
            };
            let mut l = format!("ut_metadata {what}");
            if let Some(p) = piece {
                l.push_str(&format!(" {p}"));
            }
            if let (Some(d), Some(t)) = (data_len, total_size) {
                l.push_str(&format!(" ({} of {})", size(*d), size(*t)));
            }
            l
        }
        ExtPayload::UtPex { added, dropped } => {
            format!("ut_pex +{} -{} peers", added.len(), dropped.len())
        }
        ExtPayload::Unknown { hex } => format!(
            "extended {} ({} bytes)",
            name.map_or_else(|| format!("id {ext_id}"), str::to_string),
            hex.len() / 2
        ),
        ExtPayload::Error { error, .. } => format!(
            "extended {}: {error}",
            name.map_or_else(|| format!("id {ext_id}"), str::to_string)
        ),
    }
}

fn udp_words(p: &UdpPacket) -> String {
    let s = serde_json::to_value(p).ok();
    let ty = s
        .as_ref()
        .and_then(|v| v.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("datagram")
        .replace('_', " ");
    format!("UDP {ty}")
}

/// The line of an event that is not a message: its kind and text.
fn line_of(e: &Event, left: Option<SocketAddr>) -> (LineKind, String) {
    let by = |a: Option<SocketAddr>| match a {
        Some(a) if Some(a) == left => "left",
        Some(_) => "right",
        None => "?",
    };
    let frames = || match e.frames.len() {
        0 => String::new(),
        _ => format!(
            " (frames {})",
            e.frames
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let utp = e.transport == Some(Transport::Utp);
    match &e.kind {
        EventKind::ConnOpened { .. } if utp => (
            LineKind::Open,
            format!("uTP open: ST_SYN, ST_STATE{}", frames()),
        ),
        EventKind::ConnOpened { .. } => (
            LineKind::Open,
            format!("TCP open: SYN, SYN-ACK, ACK{}", frames()),
        ),
        EventKind::ConnClosed { how, reason } => {
            let how = match (how, utp) {
                (CloseHow::Fin, false) => "TCP close: FIN",
                (CloseHow::Rst, false) => "TCP reset: RST",
                (CloseHow::Fin, true) => "uTP close: ST_FIN",
                (CloseHow::Rst, true) => "uTP reset: ST_RESET",
            };
            let mut t = format!("{how} from the {} side", by(e.src));
            if let Some(r) = reason {
                t.push_str(&format!(": {}", r.escape_default()));
            }
            (LineKind::Close, t)
        }
        EventKind::ProtocolError { offset, error } => (
            LineKind::Error,
            format!(
                "{} side: cannot decode from offset {offset}: {error}",
                by(e.src)
            ),
        ),
        EventKind::Note { text } => (LineKind::Note, text.clone()),
        // A uTP gap's length is not known: packets were lost.
        EventKind::Gap { offset, .. } if utp => (
            LineKind::Error,
            format!(
                "{} side: gap, uTP packets not in the capture after stream offset {offset}",
                by(e.src)
            ),
        ),
        EventKind::Gap { offset, len } => (
            LineKind::Error,
            format!(
                "{} side: gap, {} not in the capture at stream offset {offset}",
                by(e.src),
                size(*len)
            ),
        ),
        EventKind::TrackerHttps {
            url,
            status,
            response_len,
        } => (
            LineKind::Note,
            format!(
                "HTTPS tracker {url}: {} ({})",
                status.map_or("no status".into(), |s| s.to_string()),
                size(*response_len)
            ),
        ),
        // messages are arrows; this is never reached for them
        other => (LineKind::Note, format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Msg;

    fn msg(ts: u64, dir: Dir, m: Msg) -> Event {
        let mut e = Event::new(
            ts,
            EventKind::Message {
                offset: 0,
                len: 0,
                msg: m,
            },
        );
        e.conn = Some(1);
        e.dir = Some(dir);
        e.frames = vec![ts];
        e
    }

    fn req(ts: u64, index: u32, begin: u32) -> Event {
        msg(
            ts,
            Dir::C2s,
            Msg::Request {
                index,
                begin,
                length: 16384,
            },
        )
    }

    fn piece(ts: u64, index: u32, begin: u32) -> Event {
        msg(
            ts,
            Dir::S2c,
            Msg::Piece {
                index,
                begin,
                length: 16384,
                sha1: String::new(),
            },
        )
    }

    fn labels(events: &[Event], opts: FoldOptions) -> Vec<String> {
        let mut f = Folder::new(opts);
        let mut out = Vec::new();
        let mut push = |s: Step| {
            out.push(match s.what {
                What::Arrow {
                    to_right, label, ..
                } => format!("{}{label}", if to_right { "> " } else { "< " }),
                What::Line { text, .. } => format!("| {text}"),
            })
        };
        for e in events {
            f.push(e, &mut push);
        }
        f.finish(&mut push);
        out
    }

    #[test]
    fn interleaved_requests_and_pieces_fold_into_one_run_each() {
        let mut ev = vec![msg(1, Dir::S2c, Msg::Unchoke)];
        for i in 0..16 {
            ev.push(req(2 + 2 * i, 11, i as u32 * 16384));
            ev.push(piece(3 + 2 * i, 11, i as u32 * 16384));
        }
        ev.push(msg(40, Dir::C2s, Msg::NotInterested));
        assert_eq!(
            labels(&ev, FoldOptions::default()),
            [
                "< unchoke",
                "> × 16 request 11:0..256 KiB",
                "< × 16 piece 11:0..256 KiB",
                "> not interested"
            ]
        );
    }

    #[test]
    fn single_messages_keep_their_own_label_and_unfolded_mode_folds_nothing() {
        let ev = [req(1, 3, 0), req(2, 4, 16384)];
        assert_eq!(
            labels(&ev, FoldOptions::default()),
            ["> × 2 request 3:0..4:32 KiB"]
        );
        let no = FoldOptions {
            no_fold: true,
            ..Default::default()
        };
        assert_eq!(
            labels(&ev, no),
            ["> request 3:0..16 KiB", "> request 4:16..32 KiB"]
        );
    }

    #[test]
    fn live_runs_end_after_their_span() {
        let opts = FoldOptions {
            max_span_ns: Some(10),
            ..Default::default()
        };
        let ev = [req(1, 0, 0), req(5, 0, 16384), req(20, 1, 0)];
        assert_eq!(
            labels(&ev, opts),
            ["> × 2 request 0:0..32 KiB", "> request 1:0..16 KiB"]
        );
    }

    #[test]
    fn local_side_goes_left_when_asked() {
        let mut open = Event::new(
            1,
            EventKind::ConnOpened {
                local: Some(Role::Server),
            },
        );
        open.conn = Some(1);
        open.src = Some("10.0.0.2:5000".parse().unwrap());
        open.dst = Some("10.0.0.1:6881".parse().unwrap());
        open.dir = Some(Dir::C2s);
        let ev = [open, piece(2, 0, 0)];
        let opts = FoldOptions {
            local_left: true,
            ..Default::default()
        };
        assert_eq!(
            labels(&ev, opts)[1],
            "> piece 0:0..16 KiB",
            "bt-trace (the server) sends the piece from the left"
        );
        let mut f = Folder::new(opts);
        f.push(&ev[0], &mut |_| {});
        let ends = f.ends(ConnKey::Tcp(1)).unwrap();
        assert_eq!(ends.left, Some("10.0.0.1:6881".parse().unwrap()));
        assert_eq!(ends.local, Some(0));
    }

    #[test]
    fn formats() {
        assert_eq!(size(16384), "16 KiB");
        assert_eq!(size(3 << 20), "3 MiB");
        assert_eq!(size(100), "100 B");
        assert_eq!(range((1, 100), (1, 200)), "1:100..200 B");
        assert_eq!(peer_id_words("2d5452333030302d0001"), "-TR3000-\\x00\\x01");
    }
}
