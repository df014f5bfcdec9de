//! `--trace` against real programs: an aria2c seeder, opentracker, and tshark as the oracle.
//!
//! One small deterministic torrent (3 MiB + 1234 bytes, 256 KiB pieces) is seeded by aria2c
//! and announced on opentracker. `bt-trace download --trace DIR` fetches it (from the
//! tracker's peer list and `--peer`), then tshark must:
//! - dissect every handshake and message as BitTorrent: per connection, the count of each
//!   message type (and handshakes, keep-alives) equals the JSON Lines file's, and each
//!   message is shown in the very frame the JSONL names as its last;
//! - raise nothing under `_ws.malformed || _ws.expert.severity >= warning ||
//!   tcp.analysis.flags`, except tshark's one "Connection reset (RST)" warning on a
//!   connection that ended with an error (we write those as RST; see docs/tracing.md);
//! - show the tracker announce and its response as HTTP.
//!
//! The same again with `--trace-snaplen 96`, and `handshake --trace`, `peers --trace`.
//! Skipped (with a note) when aria2c, mktorrent, opentracker or tshark is missing.
//!
//! Lifetimes: opentracker drops to `nobody`, so like tests/tracker_opentracker.rs a watchdog
//! shell kills it when this process ends; aria2c is killed on drop (and by the same kind of
//! watchdog).

use std::collections::BTreeMap;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use bt_trace::event::{Event, EventKind, Msg};
use bt_trace::trace::jsonl::read_events;

use crate::common::{self, skip_unless_installed, Program};

const BIN: &str = env!("CARGO_BIN_EXE_bt-trace");
const DATA_LEN: usize = 3 * 1024 * 1024 + 1234;

/// The programs every test here drives.
const NEEDS: &[Program] = &[
    Program::Opentracker,
    Program::Aria2c,
    Program::Mktorrent,
    Program::Tshark,
];

/// Deterministic pseudo-random bytes (xorshift64*), so the info hash never changes.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The swarm shared by the tests of this binary: the torrent, opentracker and aria2c, from the
/// shared harness (tests/common), which kills them and removes their files at exit.
struct Swarm {
    torrent: PathBuf,
    tracker_port: u16,
    seeder_port: u16,
    _dir: common::TempDir,
    _seeder: common::Aria2,
}

fn swarm() -> &'static Swarm {
    static SWARM: OnceLock<Swarm> = OnceLock::new();
    SWARM.get_or_init(start_swarm)
}

fn start_swarm() -> Swarm {
    let tracker = common::Tracker::shared();
    let dir = common::temp_dir("trace-real");
    let content = dir.path().join("sample.bin");
    std::fs::write(&content, data(DATA_LEN)).expect("write sample data");
    let t = common::mktorrent(
        &content,
        &dir.path().join("sample.torrent"),
        18,
        &[&[&tracker.http_url()]],
    );
    tracker.allow(&[&t.info_hash]);
    let seeder = common::Aria2::seed(&t, dir.path(), dir.path(), &[]);
    // ready when opentracker knows aria2c as a seeder (data checked, listening, announced)
    tracker.wait_seeding(&t.info_hash, 1);
    Swarm {
        torrent: t.path.clone(),
        tracker_port: tracker.port,
        seeder_port: seeder.port,
        _dir: dir,
        _seeder: seeder,
    }
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bt-trace");
    assert!(
        out.status.success(),
        "bt-trace {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tshark(file: &Path, extra: &[&str]) -> String {
    let s = swarm();
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file);
    for o in [
        "tcp.desegment_tcp_streams:TRUE",
        "bittorrent.desegment:TRUE",
        "tcp.check_checksum:TRUE",
        "ip.check_checksum:TRUE",
    ] {
        cmd.arg("-o").arg(o);
    }
    cmd.arg("-d")
        .arg(format!("tcp.port=={},bittorrent", s.seeder_port));
    cmd.arg("-d")
        .arg(format!("tcp.port=={},http", s.tracker_port));
    cmd.args(extra);
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn events(jsonl: &Path) -> Vec<Event> {
    read_events(std::io::BufReader::new(std::fs::File::open(jsonl).unwrap())).unwrap()
}

/// What a BitTorrent PDU is, as both sides name it: "handshake", "keep-alive" or the
/// message type number.
fn class_of(e: &Event) -> Option<String> {
    match &e.kind {
        EventKind::Handshake { .. } => Some("handshake".into()),
        EventKind::Message { msg, .. } => Some(match msg {
            Msg::KeepAlive => "keep-alive".into(),
            m => m.id().unwrap_or_default().to_string(),
        }),
        _ => None,
    }
}

/// Every BitTorrent PDU tshark dissects: (tcp.stream, frame.number, class), from PDML.
/// In a frame cut by the snap length, what follows a piece's header is piece data that
/// tshark shows as an untyped "BitTorrent" or "Continuation data": not a PDU, skipped.
fn tshark_pdus(file: &Path) -> Vec<(u64, u64, String)> {
    let pdml = tshark(file, &["-Y", "bittorrent", "-T", "pdml"]);
    let show = |s: &str, field: &str| -> Option<String> {
        let at = s.find(&format!("<field name=\"{field}\""))?;
        let rest = &s[at..];
        let v = rest.find("show=\"")? + 6;
        let end = rest[v..].find('"')?;
        Some(rest[v..v + end].to_string())
    };
    let mut out = Vec::new();
    for packet in pdml.split("<packet>").skip(1) {
        let frame: u64 = show(packet, "frame.number").unwrap().parse().unwrap();
        let stream: u64 = show(packet, "tcp.stream").unwrap().parse().unwrap();
        let cut = show(packet, "frame.cap_len") != show(packet, "frame.len");
        for proto in packet.split("<proto name=\"bittorrent\"").skip(1) {
            let proto = proto.split("</proto>").next().unwrap_or_default();
            let class = if proto.contains("bittorrent.protocol.name") {
                "handshake".to_string()
            } else if let Some(t) = show(proto, "bittorrent.msg.type") {
                t
            } else if cut {
                continue;
            } else if proto.contains("\"bittorrent.continuous_data\"") {
                "continuation".to_string()
            } else {
                "keep-alive".to_string()
            };
            out.push((stream, frame, class));
        }
    }
    out
}

/// The checks of the module docs on one trace. With `cut` (a snap length), tshark shows a
/// piece message in its first frame (the one with its header; the data is cut, so it cannot
/// be reassembled), every other message in its last.
fn check_trace(pcapng: &Path, jsonl: &Path, cut: bool) -> Vec<Event> {
    let ev = events(jsonl);
    assert!(!ev.is_empty());
    // 1. Per connection, the same PDUs of each class; and each at the frame the JSONL names
    //    as its last (where Wireshark shows a reassembled PDU).
    let mut from_jsonl: BTreeMap<(u64, u64, String), usize> = BTreeMap::new();
    let mut per_conn_jsonl: BTreeMap<(u64, String), usize> = BTreeMap::new();
    for e in &ev {
        if let Some(class) = class_of(e) {
            let conn = e.conn.unwrap();
            let frame = if cut && class == "7" {
                e.frames.first()
            } else {
                e.frames.last()
            };
            *from_jsonl
                .entry((conn, *frame.unwrap(), class.clone()))
                .or_default() += 1;
            *per_conn_jsonl.entry((conn, class)).or_default() += 1;
        }
    }
    let mut from_tshark: BTreeMap<(u64, u64, String), usize> = BTreeMap::new();
    let mut per_conn_tshark: BTreeMap<(u64, String), usize> = BTreeMap::new();
    for (stream, frame, class) in tshark_pdus(pcapng) {
        *from_tshark
            .entry((stream, frame, class.clone()))
            .or_default() += 1;
        *per_conn_tshark.entry((stream, class)).or_default() += 1;
    }
    assert_eq!(
        per_conn_tshark, per_conn_jsonl,
        "per-connection counts: tshark (left) vs JSONL (right)"
    );
    assert_eq!(from_tshark, from_jsonl, "frames of each PDU");

    // 2. Nothing malformed, no warning, no TCP analysis flag, except tshark's warning on
    //    each RST, which we write for connections that ended with an error. Every checksum
    //    verified good (a TCP checksum of a cut frame cannot be verified).
    let bad = tshark(
        pcapng,
        &[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning || tcp.analysis.flags \
             || ip.checksum.status != 1 \
             || (tcp.checksum.status != 1 && frame.cap_len == frame.len)",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "tcp.flags.reset",
            "-e",
            "_ws.expert.message",
            "-E",
            "occurrence=a",
        ],
    );
    let resets = ev
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::ConnClosed {
                    how: bt_trace::event::CloseHow::Rst,
                    ..
                }
            )
        })
        .count();
    let mut rst_lines = 0;
    for line in bad.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(
            f.get(1) == Some(&"1") && f.get(2) == Some(&"Connection reset (RST)"),
            "tshark found a problem: {line}"
        );
        rst_lines += 1;
    }
    assert_eq!(rst_lines, resets, "{bad}");

    // 3. The HTTP tracker exchanges, as HTTP.
    let http_events = ev
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TrackerHttpRequest { .. }))
        .count();
    let http = tshark(
        pcapng,
        &[
            "-Y",
            "http.request.method == \"GET\"",
            "-T",
            "fields",
            "-e",
            "http.request.uri",
        ],
    );
    assert_eq!(http.lines().count(), http_events, "{http}");
    for line in http.lines() {
        assert!(line.starts_with("/announce?info_hash="), "{line}");
    }
    let ok = tshark(pcapng, &["-Y", "http.response.code == 200"]);
    assert_eq!(ok.lines().count(), http_events);

    // 4. The files are what finish() said: frames in the file = the last frame named.
    let frames = tshark(pcapng, &["-T", "fields", "-e", "frame.number"]);
    let last = ev.iter().flat_map(|e| e.frames.iter()).max().copied();
    assert!(last.unwrap() <= frames.lines().count() as u64);
    ev
}

#[test]
fn download_trace_is_what_tshark_sees() {
    skip_unless_installed!(NEEDS);
    let s = swarm();
    let work = tempfile::tempdir().unwrap();
    let traces = work.path().join("traces");
    let out = work.path().join("sample.bin");
    let our_port = common::free_port().to_string();
    let peer = format!("127.0.0.1:{}", s.seeder_port);
    let res = run(&[
        "download",
        "-q",
        "--port",
        &our_port,
        "--trace",
        traces.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        s.torrent.to_str().unwrap(),
        "--peer",
        &peer,
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), data(DATA_LEN));
    let pcapng = traces.join("download-sample.bin.pcapng");
    let jsonl = traces.join("download-sample.bin.jsonl");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains(&*pcapng.to_string_lossy()), "{stderr}");
    if let Some(keep) = std::env::var_os("BT_TRACE_KEEP_REAL") {
        // BT_TRACE_KEEP_REAL=/tmp/real cargo test --test trace_real
        std::fs::copy(&pcapng, format!("{}.pcapng", keep.to_string_lossy())).unwrap();
        std::fs::copy(&jsonl, format!("{}.jsonl", keep.to_string_lossy())).unwrap();
    }
    let ev = check_trace(&pcapng, &jsonl, false);
    assert!(ev.iter().any(|e| class_of(e).as_deref() == Some("7")));

    // The story: a tracker announce (started) that names aria2c; the peer's handshake says
    // aria2; every piece arrives with a SHA-1; a `completed` announce at the end.
    let announces: Vec<String> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TrackerHttpRequest {
                announce: Some(a), ..
            } => a.event.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(announces.first().map(String::as_str), Some("started"));
    assert!(announces.iter().any(|a| a == "completed"), "{announces:?}");
    let seeder: SocketAddr = peer.parse().unwrap();
    assert!(ev.iter().any(|e| matches!(&e.kind,
        EventKind::TrackerHttpResponse { response: Some(bt_trace::event::TrackerReply::Announce { peers, .. }), .. }
        if peers.contains(&seeder))));
    assert!(ev.iter().any(|e| matches!(&e.kind,
        EventKind::Handshake { hs, .. } if hs.client.starts_with("aria2 ") && e.src == Some(seeder))));
    let piece_bytes: u64 = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Message {
                msg: Msg::Piece { length, sha1, .. },
                ..
            } => {
                assert_eq!(sha1.len(), 40);
                Some(u64::from(*length))
            }
            _ => None,
        })
        .sum();
    assert!(piece_bytes >= DATA_LEN as u64, "{piece_bytes}");
}

#[test]
fn snaplen_trace_keeps_every_message() {
    skip_unless_installed!(NEEDS);
    let s = swarm();
    let work = tempfile::tempdir().unwrap();
    let traces = work.path().join("traces");
    let out = work.path().join("sample.bin");
    let our_port = common::free_port().to_string();
    let peer = format!("127.0.0.1:{}", s.seeder_port);
    run(&[
        "download",
        "-q",
        "--port",
        &our_port,
        "--trace",
        traces.to_str().unwrap(),
        "--trace-snaplen",
        "96",
        "-o",
        out.to_str().unwrap(),
        s.torrent.to_str().unwrap(),
        "--peer",
        &peer,
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), data(DATA_LEN));
    let pcapng = traces.join("download-sample.bin.pcapng");
    let jsonl = traces.join("download-sample.bin.jsonl");
    check_trace(&pcapng, &jsonl, true);
    // Piece data is gone: the file is far smaller than the download.
    let size = std::fs::metadata(&pcapng).unwrap().len();
    assert!(size < DATA_LEN as u64 / 4, "{size}");
    // Frames keep their original length.
    let lens = tshark(
        &pcapng,
        &[
            "-Y",
            "frame.cap_len < frame.len",
            "-T",
            "fields",
            "-e",
            "frame.len",
        ],
    );
    assert!(lens.lines().count() > 100, "few truncated frames");
}

#[test]
fn handshake_and_peers_traces() {
    skip_unless_installed!(NEEDS);
    let s = swarm();
    let work = tempfile::tempdir().unwrap();
    let traces = work.path().join("traces");
    let peer = format!("127.0.0.1:{}", s.seeder_port);
    let our_port = common::free_port().to_string();
    let out = run(&[
        "handshake",
        "--port",
        &our_port,
        "--trace",
        traces.to_str().unwrap(),
        s.torrent.to_str().unwrap(),
        &peer,
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("Peer ID: "), "{stdout}");
    let pcapng = traces.join("handshake-sample.bin.pcapng");
    let ev = check_trace(&pcapng, &traces.join("handshake-sample.bin.jsonl"), false);
    let hs: Vec<&Event> = ev
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Handshake { .. }))
        .collect();
    assert_eq!(hs.len(), 2, "{ev:?}");
    match &hs[1].kind {
        EventKind::Handshake { hs, .. } => {
            assert_eq!(stdout.trim(), format!("Peer ID: {}", hs.peer_id));
            assert!(hs.client.starts_with("aria2 "), "{}", hs.client);
        }
        _ => unreachable!(),
    }
    assert!(matches!(
        ev.first().map(|e| &e.kind),
        Some(EventKind::ConnOpened { .. })
    ));
    assert!(matches!(
        ev.last().map(|e| &e.kind),
        Some(EventKind::ConnClosed { .. })
    ));

    let out = run(&[
        "peers",
        "--port",
        &our_port,
        "--trace",
        traces.to_str().unwrap(),
        s.torrent.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&peer), "{stdout}");
    let pcapng = traces.join("peers-sample.bin.pcapng");
    let ev = check_trace(&pcapng, &traces.join("peers-sample.bin.jsonl"), false);
    let kinds: Vec<&str> = ev
        .iter()
        .map(|e| match e.kind {
            EventKind::ConnOpened { .. } => "opened",
            EventKind::TrackerHttpRequest { .. } => "request",
            EventKind::TrackerHttpResponse { .. } => "response",
            EventKind::ConnClosed { .. } => "closed",
            _ => "other",
        })
        .collect();
    // `started` to ask, then `stopped` to leave, each on a connection of its own
    let exchange = ["opened", "request", "response", "closed"];
    assert_eq!(kinds, [exchange, exchange].concat());
    let events: Vec<Option<&str>> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TrackerHttpRequest { announce, .. } => {
                Some(announce.as_ref().and_then(|a| a.event.as_deref()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(events, [Some("started"), Some("stopped")]);
}
