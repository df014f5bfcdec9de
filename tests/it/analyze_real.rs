//! `bt-trace analyze` on the real captures of `captures/`, with tshark as the oracle.
//!
//! For every capture, per connection (`tcp.stream`), the BitTorrent PDUs tshark dissects
//! (`-Y bittorrent -T fields -e tcp.stream -e bittorrent.msg.type -e bittorrent.piece.index
//! -E occurrence=a`, with the issue's reassembly options) must be the ones `analyze --json`
//! finds: the same handshakes and message types, the same count of each, the same piece
//! indexes, each in the frame where tshark shows it. tshark gets `-d tcp.port==P,bittorrent`
//! for the peers' ports outside 6881–6889; what it misses without them (a connection picked
//! up mid-stream on port 7001) and what it has no dissector for (BEP 15 UDP trackers) is
//! asserted explicitly. Keep-alives carry no `msg.type` in tshark's fields and are left out.
//!
//! Also: the truncated capture gives its messages plus a warning (exit 0), garbage input a
//! clear error (exit 1), `-` reads stdin, and the filters and `--torrent` / `--extract` work.
//! Skipped (with a note) when tshark is missing.

use crate::common::{self, analyze_json, bt_trace_output, capture, skip_unless_installed, Program};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use bt_trace::event::{Event, EventKind, Msg, UdpPacket};

const BIN: &str = env!("CARGO_BIN_EXE_bt-trace");

const ALL: &[&str] = &[
    "lo_aria2_to_libtorrent.pcapng",
    "any_sll_libtorrent_to_aria2.pcapng",
    "any_sll2_transmission_to_libtorrent.pcapng",
    "lo_middownload.pcapng",
    "lo_middownload.pcap",
    "lo_middownload_ns.pcap",
    "lo_middownload_be.pcap",
    "lo_middownload_be.pcapng",
    "lo_middownload_truncated.pcapng",
    "lo_mse_plain_libtorrent.pcapng",
    "lo_mse_plain_aria2_to_libtorrent.pcapng",
];

/// What a PDU is: "handshake" or the message id (keep-alives: `None`).
fn class_of(e: &Event) -> Option<String> {
    match &e.kind {
        EventKind::Handshake { .. } => Some("handshake".into()),
        EventKind::Message { msg, .. } => msg.id().map(|i| i.to_string()),
        _ => None,
    }
}

/// The piece index a message carries, as tshark's `bittorrent.piece.index` shows it.
fn index_of(m: &Msg) -> Option<u32> {
    match m {
        Msg::Have { index }
        | Msg::Suggest { index }
        | Msg::AllowedFast { index }
        | Msg::Request { index, .. }
        | Msg::Piece { index, .. }
        | Msg::Cancel { index, .. }
        | Msg::Reject { index, .. } => Some(*index),
        _ => None,
    }
}

/// Message ids whose PDU has a `bittorrent.piece.index` field.
const INDEXED: &[u8] = &[4, 6, 7, 8, 13, 16, 17];

/// (connection, frame, class) → count, and (connection, class, index) → count.
type Pdus = BTreeMap<(u64, u64, String), usize>;
type Indexes = BTreeMap<(u64, String, u32), usize>;

fn our_pdus(ev: &[Event]) -> (Pdus, Indexes) {
    let mut pdus = Pdus::new();
    let mut idx = Indexes::new();
    for e in ev {
        let Some(class) = class_of(e) else { continue };
        let conn = e.conn.unwrap();
        let frame = *e.frames.last().unwrap();
        *pdus.entry((conn, frame, class.clone())).or_default() += 1;
        if let EventKind::Message { msg, .. } = &e.kind {
            if let Some(i) = index_of(msg) {
                *idx.entry((conn, class, i)).or_default() += 1;
            }
        }
    }
    (pdus, idx)
}

fn tshark_pdus(file: &Path, ports: &BTreeSet<u16>) -> (Pdus, Indexes) {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file);
    for o in [
        "tcp.desegment_tcp_streams:TRUE",
        "bittorrent.desegment:TRUE",
        "tcp.reassemble_out_of_order:TRUE",
    ] {
        cmd.arg("-o").arg(o);
    }
    for p in ports {
        cmd.arg("-d").arg(format!("tcp.port=={p},bittorrent"));
    }
    cmd.args(["-Y", "bittorrent", "-T", "fields"]);
    for f in [
        "frame.number",
        "tcp.stream",
        "bittorrent.msg.type",
        "bittorrent.piece.index",
        "bittorrent.protocol.name",
    ] {
        cmd.arg("-e").arg(f);
    }
    cmd.args(["-E", "occurrence=a"]);
    let out = cmd.output().expect("run tshark");
    // tshark exits 2 on a capture cut short, after printing what it read.
    let text = String::from_utf8(out.stdout).unwrap();
    let mut pdus = Pdus::new();
    let mut idx = Indexes::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let frame: u64 = f[0].parse().unwrap();
        let stream: u64 = f[1].parse().unwrap();
        let list = |s: Option<&&str>| -> Vec<String> {
            s.map(|s| {
                s.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        let types = list(f.get(2));
        let indexes: Vec<u32> = list(f.get(3))
            .iter()
            .map(|x| u32::from_str_radix(x.trim_start_matches("0x"), 16).unwrap())
            .collect();
        let handshakes = list(f.get(4)).len();
        for _ in 0..handshakes {
            *pdus.entry((stream, frame, "handshake".into())).or_default() += 1;
        }
        let mut next = indexes.iter();
        for t in &types {
            *pdus.entry((stream, frame, t.clone())).or_default() += 1;
            let id: u8 = t.parse().unwrap();
            if INDEXED.contains(&id) {
                let i = next.next().unwrap_or_else(|| panic!("no index for {line}"));
                *idx.entry((stream, t.clone(), *i)).or_default() += 1;
            }
        }
        assert!(next.next().is_none(), "indexes left over in {line}");
    }
    (pdus, idx)
}

/// The TCP ports of the peers our analysis found (for tshark's `-d`), outside 6881–6889.
fn peer_ports(ev: &[Event]) -> BTreeSet<u16> {
    ev.iter()
        .filter(|e| class_of(e).is_some())
        .flat_map(|e| [e.src.unwrap().port(), e.dst.unwrap().port()])
        .filter(|p| !(6881..=6889).contains(p) && *p < 32768)
        .collect()
}

fn by_conn<K: Ord + Clone, V: Clone>(
    m: &BTreeMap<K, V>,
    conn: impl Fn(&K) -> u64,
) -> BTreeMap<u64, Vec<(K, V)>> {
    let mut out: BTreeMap<u64, Vec<(K, V)>> = BTreeMap::new();
    for (k, v) in m {
        out.entry(conn(k)).or_default().push((k.clone(), v.clone()));
    }
    out
}

#[test]
fn every_capture_matches_tshark_per_connection() {
    skip_unless_installed!(&[Program::Tshark]);
    for name in ALL {
        let file = capture(name);
        let ev = analyze_json(&file);
        let ports = peer_ports(&ev);
        let (our, our_idx) = our_pdus(&ev);
        let (theirs, their_idx) = tshark_pdus(&file, &ports);
        assert!(!our.is_empty(), "{name}: nothing decoded");
        assert_eq!(
            by_conn(&theirs, |k| k.0),
            by_conn(&our, |k| k.0),
            "{name}: PDUs per connection and frame, tshark (left) vs analyze (right), ports {ports:?}"
        );
        assert_eq!(
            by_conn(&their_idx, |k| k.0),
            by_conn(&our_idx, |k| k.0),
            "{name}: piece indexes per connection"
        );
    }
}

/// Counts of one class in one connection.
fn count(p: &Pdus, conn: u64, class: &str) -> usize {
    p.iter()
        .filter(|((c, _, k), _)| *c == conn && k == class)
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn what_tshark_misses() {
    skip_unless_installed!(&[Program::Tshark]);
    // 1. A connection picked up mid-stream on port 7001: without `-d`, tshark's heuristic
    //    (which needs the handshake) finds none of its messages; analyze finds them all.
    let file = capture("lo_middownload.pcapng");
    let ev = analyze_json(&file);
    let (our, _) = our_pdus(&ev);
    let (bare, _) = tshark_pdus(&file, &BTreeSet::new());
    assert_eq!(count(&bare, 0, "7"), 0, "tshark should not see the pieces");
    assert_eq!(count(&our, 0, "7"), 26, "pieces analyze finds mid-stream");
    assert_eq!(count(&our, 0, "4"), 6, "haves");
    assert_eq!(count(&our, 0, "6"), 2, "requests");
    assert!(ev
        .iter()
        .all(|e| !matches!(e.kind, EventKind::Handshake { .. })));

    // 2. BEP 15 UDP tracker traffic: tshark 4.0 has no dissector; analyze decodes the
    //    connect and three announces of libtorrent, each answered (matched by transaction id).
    let ev = analyze_json(&capture("lo_aria2_to_libtorrent.pcapng"));
    let udp: Vec<&UdpPacket> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TrackerUdp { packet, .. } => Some(packet),
            _ => None,
        })
        .collect();
    assert_eq!(udp.len(), 8, "{udp:?}");
    assert!(matches!(udp[0], UdpPacket::ConnectRequest { .. }));
    assert!(matches!(udp[1], UdpPacket::ConnectResponse { .. }));
    let events: Vec<&str> = udp
        .iter()
        .filter_map(|p| match p {
            UdpPacket::AnnounceRequest { event, .. } => Some(event.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(events, ["started", "completed", "stopped"]);

    // 3. The plaintext BitTorrent handshakes that follow an MSE/PE handshake (aria2 dialing
    //    itself, stream 1) are found at their offsets (tshark finds them with "contains").
    let hs: Vec<(u64, u64)> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Handshake { offset, .. } => Some((e.conn.unwrap(), *offset)),
            _ => None,
        })
        .collect();
    assert!(hs.contains(&(1, 905)) && hs.contains(&(1, 517)), "{hs:?}");
}

#[test]
fn transmission_on_a_non_standard_port_without_hints() {
    skip_unless_installed!(&[Program::Tshark]);
    // Port 51413: both tshark's heuristic and analyze find it by its handshake.
    let file = capture("any_sll2_transmission_to_libtorrent.pcapng");
    let (our, _) = our_pdus(&analyze_json(&file));
    let (bare, _) = tshark_pdus(&file, &BTreeSet::new());
    assert_eq!(count(&our, 3, "7"), 64);
    assert_eq!(count(&bare, 3, "7"), 64);
}

#[test]
fn truncated_capture_gives_results_and_a_warning() {
    let file = capture("lo_middownload_truncated.pcapng");
    let out = bt_trace_output(&["analyze", file.to_str().unwrap()]);
    assert!(out.status.success(), "a cut capture is not a failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("cut short at byte offset 247664"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cut short"), "the summary repeats it");
    assert!(stdout.contains("Connection 0, BitTorrent"), "{stdout}");
    let ev = analyze_json(&file);
    let pieces = ev
        .iter()
        .filter(|e| class_of(e).as_deref() == Some("7"))
        .count();
    assert!(pieces > 5, "{pieces}");
}

#[test]
fn garbage_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all, just text\n").unwrap();
    let out = bt_trace_output(&["analyze", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("junk.pcap") && stderr.contains("not a capture"),
        "{stderr}"
    );
    assert!(!stderr.contains("panick"), "{stderr}");
    let empty = dir.path().join("empty.pcapng");
    std::fs::write(&empty, b"").unwrap();
    let out = bt_trace_output(&["analyze", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out = bt_trace_output(&["analyze", "/nonexistent/capture.pcapng"]);
    assert_eq!(out.status.code(), Some(1));
    // A good file next to a bad one is still analyzed.
    let good = capture("lo_middownload.pcap");
    let out = bt_trace_output(&["analyze", junk.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Connection 0, BitTorrent"));
    // Usage errors exit 2.
    let out = bt_trace_output(&["analyze", "--type", "bogus", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = bt_trace_output(&["analyze"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stdin_and_the_pcap_variants_agree() {
    let want = analyze_json(&capture("lo_middownload.pcapng"));
    let strip = |ev: Vec<Event>| -> Vec<(Option<u64>, Vec<u64>, String)> {
        ev.into_iter()
            .map(|e| {
                let kind = serde_json::to_string(&e.kind).unwrap();
                (e.conn, e.frames, kind)
            })
            .collect()
    };
    let want = strip(want);
    for name in [
        "lo_middownload.pcap",
        "lo_middownload_ns.pcap",
        "lo_middownload_be.pcap",
        "lo_middownload_be.pcapng",
    ] {
        assert_eq!(strip(analyze_json(&capture(name))), want, "{name}");
    }
    let out = Command::new(BIN)
        .args(["analyze", "--json", "-"])
        .stdin(std::fs::File::open(capture("lo_middownload.pcapng")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let ev: Vec<Event> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(strip(ev), want);
}

#[test]
fn messages_and_filters() {
    let file = capture("lo_aria2_to_libtorrent.pcapng");
    let f = file.to_str().unwrap();
    let out = bt_trace_output(&[
        "analyze",
        "--messages",
        "--conn",
        "2",
        "--type",
        "request,piece",
        f,
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 128, "64 requests and 64 pieces:\n{text}");
    assert!(lines.iter().all(|l| l.contains(" tcp 2 ")));
    assert!(lines
        .iter()
        .any(|l| l.contains("request piece 5 begin 0 length 16384")));
    assert!(lines
        .iter()
        .all(|l| l.contains("request piece") || l.contains("  piece ")));
    // The info hash of the swarm keeps the peer connections and the tracker requests.
    let out = bt_trace_output(&[
        "analyze",
        "--json",
        "--info-hash",
        "6aff54b59ee2c65daca4cf79e3e1858e68823213",
        "--type",
        "handshake,tracker",
        f,
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let ev: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let handshakes = ev
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Handshake { .. }))
        .count();
    assert_eq!(handshakes, 5, "{text}");
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e.kind, EventKind::TrackerHttpRequest { .. }))
            .count(),
        1
    );
    // Another info hash: nothing.
    let out = bt_trace_output(&[
        "analyze",
        "--json",
        "--info-hash",
        "0000000000000000000000000000000000000000",
        f,
    ]);
    assert!(out.stdout.is_empty());
    // The table of one connection.
    let out = bt_trace_output(&["analyze", "--conn", "2", f]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Connection 2, BitTorrent"));
    assert!(!text.contains("Connection 1,"));
    for want in [
        "libtorrent 2.0.8",
        "aria2 1.36.0",
        "6aff54b59ee2c65daca4cf79e3e1858e68823213",
        "extended, dht, fast",
        "ut_metadata=2",
        "16 / 64 / 1,048,576",
        "first unchoke sent",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}

/// The 1 MiB `sample.bin` of every capture: `random.Random(20240601).randbytes(1 << 20)`,
/// made with Debian's python3 (skipped when it is missing).
fn sample_data() -> Option<Vec<u8>> {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import random,sys; sys.stdout.buffer.write(random.Random(20240601).randbytes(1 << 20))",
        ])
        .output()
        .ok()?;
    (out.status.success() && out.stdout.len() == 1 << 20).then_some(out.stdout)
}

#[test]
fn torrent_check_and_extract() {
    let torrent = capture("sample.torrent");
    let t = torrent.to_str().unwrap();
    // The complete download: every piece good; the files rebuilt byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let out = bt_trace_output(&[
        "analyze",
        "--torrent",
        t,
        "--extract",
        dir.path().to_str().unwrap(),
        capture("lo_aria2_to_libtorrent.pcapng").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("16 good, 0 bad, 0 incomplete, 0 not in the capture (of 16)"),
        "{text}"
    );
    let got = std::fs::read(dir.path().join("sample.bin")).unwrap();
    assert_eq!(got.len(), 1 << 20);
    if let Some(want) = sample_data() {
        assert!(got == want, "extracted file differs from sample.bin");
    }
    // The capture picked up mid-download: some pieces whole, some cut.
    let out = bt_trace_output(&[
        "analyze",
        "--torrent",
        t,
        capture("lo_middownload.pcapng").to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("6 good, 0 bad, 1 incomplete, 9 not in the capture (of 16)"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// `download --trace` against a real aria2c seeder, then `analyze --json` of its pcapng.

mod swarm {
    //! opentracker and an aria2c seeder on 127.0.0.1 for one small deterministic torrent, from
    //! the shared harness (tests/common), which stops them and removes their files at exit.

    use std::path::PathBuf;

    pub const DATA_LEN: usize = 2 * 1024 * 1024 + 777;

    /// Deterministic pseudo-random bytes (xorshift64*).
    pub fn data(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    pub struct Swarm {
        pub torrent: PathBuf,
        pub seeder_port: u16,
        _dir: crate::common::TempDir,
        _seeder: crate::common::Aria2,
    }

    pub fn start() -> Swarm {
        let tracker = crate::common::Tracker::shared();
        let dir = crate::common::temp_dir("analyze-real");
        let content = dir.path().join("analyzed.bin");
        std::fs::write(&content, data(DATA_LEN)).expect("write data");
        let t = crate::common::mktorrent(
            &content,
            &dir.path().join("analyzed.torrent"),
            17,
            &[&[&tracker.http_url()]],
        );
        tracker.allow(&[&t.info_hash]);
        let seeder = crate::common::Aria2::seed(&t, dir.path(), dir.path(), &[]);
        tracker.wait_seeding(&t.info_hash, 1);
        Swarm {
            torrent: t.path.clone(),
            seeder_port: seeder.port,
            _dir: dir,
            _seeder: seeder,
        }
    }
}

/// Events of a JSON Lines text, without what a capture cannot show (see
/// tests/analyze_trace.rs), grouped by conversation.
fn comparable_by_conn(ev: Vec<Event>) -> BTreeMap<(bool, u64), Vec<Event>> {
    let mut m: BTreeMap<(bool, u64), Vec<Event>> = BTreeMap::new();
    for mut e in ev {
        match &mut e.kind {
            EventKind::Note { .. } | EventKind::TrackerHttps { .. } => continue,
            EventKind::ConnOpened { local } => *local = None,
            EventKind::ConnClosed { reason, .. } => *reason = None,
            _ => {}
        }
        let udp = matches!(e.kind, EventKind::TrackerUdp { .. });
        m.entry((udp, e.conn.unwrap_or(u64::MAX)))
            .or_default()
            .push(e);
    }
    m
}

#[test]
fn download_trace_of_a_real_seeder_analyzes_to_its_jsonl() {
    skip_unless_installed!(&[Program::Opentracker, Program::Aria2c, Program::Mktorrent]);
    let s = swarm::start();
    let work = tempfile::tempdir().unwrap();
    let traces = work.path().join("traces");
    let out_file = work.path().join("analyzed.bin");
    let port = common::free_port().to_string();
    let peer = format!("127.0.0.1:{}", s.seeder_port);
    let res = bt_trace_output(&[
        "download",
        "-q",
        "--port",
        &port,
        "--trace",
        traces.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        s.torrent.to_str().unwrap(),
        "--peer",
        &peer,
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(std::fs::read(&out_file).unwrap() == swarm::data(swarm::DATA_LEN));
    let pcapng = traces.join("download-analyzed.bin.pcapng");
    let jsonl = traces.join("download-analyzed.bin.jsonl");
    let want = bt_trace::trace::jsonl::read_events(std::io::BufReader::new(
        std::fs::File::open(&jsonl).unwrap(),
    ))
    .unwrap();
    let got = analyze_json(&pcapng);
    let (want, got) = (comparable_by_conn(want), comparable_by_conn(got));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "the same conversations"
    );
    let mut pieces = 0;
    for (k, w) in &want {
        let g = &got[k];
        for (i, (a, b)) in w.iter().zip(g).enumerate() {
            assert_eq!(a, b, "conversation {k:?}, event {i}");
        }
        assert_eq!(w.len(), g.len(), "conversation {k:?}");
        pieces += g
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Message {
                        msg: Msg::Piece { .. },
                        ..
                    }
                )
            })
            .count();
    }
    assert!(pieces >= swarm::DATA_LEN / 16384, "{pieces} pieces");
    // And every piece of the trace checks out against the torrent.
    let res = bt_trace_output(&[
        "analyze",
        "--torrent",
        s.torrent.to_str().unwrap(),
        pcapng.to_str().unwrap(),
    ]);
    let text = String::from_utf8(res.stdout).unwrap();
    assert!(
        text.contains("17 good, 0 bad, 0 incomplete, 0 not in the capture (of 17)"),
        "{text}"
    );
}

/// `--messages` and `--json` are in capture order on every capture, and on one with packets
/// cut out: each line's frame (the frame that completes the event) never goes back, nor the
/// last frame of each JSON event; both list the same events.
#[test]
fn every_capture_is_in_capture_order() {
    for name in ALL.iter().chain(&["lo_lossy.pcapng"]) {
        let file = capture(name);
        let out = bt_trace_output(&["analyze", "--messages", file.to_str().unwrap()]);
        assert!(out.status.success(), "{name}");
        let text = String::from_utf8(out.stdout).unwrap();
        let frames: Vec<u64> = text
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        assert!(frames.len() > 10, "{name}: {text}");
        for (i, w) in frames.windows(2).enumerate() {
            assert!(w[0] <= w[1], "{name}: line {} goes back:\n{text}", i + 2);
        }
        let ev = analyze_json(&file);
        assert_eq!(ev.len(), frames.len(), "{name}");
        // In JSON, the last of an event's frames; a piece cut by a hole is completed where
        // the hole became known, after its frames.
        let last = |e: &Event| e.frames.iter().max().copied().unwrap_or(0);
        for w in ev.windows(2) {
            let cut = matches!(&w[1].kind, EventKind::Message { msg: Msg::Piece { sha1, .. }, .. } if sha1.is_empty());
            assert!(
                last(&w[0]) <= last(&w[1]) || cut,
                "{name}: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
}

/// `captures/lo_lossy.pcapng` is `lo_aria2_to_libtorrent.pcapng` with frames cut out
/// (`editcap … 31-37 46 56 64-101`): connection 2 without its SYN, SYN-ACK and the client's
/// handshake and extended handshake, and three holes in the download. The client's direction
/// starts with a gap (the server's ACKs show 213 bytes before the first one seen), not a
/// protocol error; every hole is a gap event between the frames around it; nothing after a
/// hole counts as out of order.
#[test]
fn packet_loss_gives_gap_events_and_no_false_errors() {
    let file = capture("lo_lossy.pcapng");
    let ev = analyze_json(&file);
    let conn2: Vec<&Event> = ev.iter().filter(|e| e.conn == Some(2)).collect();
    let gaps: Vec<(u64, u64, Vec<u64>)> = conn2
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Gap { offset, len } => Some((offset, len, e.frames.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        gaps,
        [
            (0, 213, vec![41]),
            (65853, 47104, vec![47, 49]),
            (251262, 798306, vec![54, 56]),
            (558, 784, vec![50, 57]),
        ]
    );
    assert!(
        conn2
            .iter()
            .all(|e| !matches!(e.kind, EventKind::ProtocolError { .. })),
        "{conn2:#?}"
    );
    // The client's messages right after the missing start are decoded.
    assert!(conn2.iter().any(|e| matches!(
        &e.kind,
        EventKind::Message {
            offset: 213,
            msg: Msg::Interested,
            ..
        }
    )));
    let out = bt_trace_output(&["analyze", file.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("0 out-of-order segments") && text.contains("4 gaps"),
        "{text}"
    );
}

/// Every TCP connection is in exactly one category of the summary; `--conn N` of one without
/// a table says what it is; an unknown `N`, `--type foo` and `--info-hash zz` are usage
/// errors (exit status 2, like clap's).
#[test]
fn every_connection_is_accounted_for_and_bad_filters_are_usage_errors() {
    for name in ALL.iter().chain(&["lo_lossy.pcapng"]) {
        let file = capture(name);
        let out = bt_trace_output(&["analyze", file.to_str().unwrap()]);
        let text = String::from_utf8(out.stdout).unwrap();
        let flat = text.replace(['│', '┆', '\n'], " ");
        let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
        let at = flat.find("TCP connections ").expect("summary row") + 16;
        let nums: Vec<u64> = flat[at..]
            .split(" other")
            .next()
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        // total, BitTorrent, of which mid-stream, then the other categories.
        assert_eq!(nums.len(), 9, "{name}: {flat}");
        let sum: u64 = nums[1] + nums[3..].iter().sum::<u64>();
        assert_eq!(sum, nums[0], "{name}: {flat}");
    }
    let file = capture("any_sll_libtorrent_to_aria2.pcapng");
    let f = file.to_str().unwrap();
    let out = bt_trace_output(&["analyze", "--conn", "5", f]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(
        "Connection 5, refused dial (answered by a RST): 127.0.0.1:45618 ⇄ 127.0.0.1:6881"
    ));
    for args in [
        &["analyze", "--conn", "99", f][..],
        &["analyze", "--messages", "--type", "foo", f],
        &["analyze", "--info-hash", "zz", f],
    ] {
        let out = bt_trace_output(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

/// `--torrent` lists incomplete pieces by index, and says so when the torrent's info hash is
/// in no handshake of the capture.
#[test]
fn torrent_check_lists_incomplete_pieces_and_a_foreign_torrent() {
    let file = capture("lo_lossy.pcapng");
    let f = file.to_str().unwrap();
    let sample = capture("sample.torrent");
    let out = bt_trace_output(&["analyze", "--torrent", sample.to_str().unwrap(), f]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("incomplete pieces: 11, 12"), "{text}");
    assert!(!text.contains("appears in no peer handshake"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.torrent");
    let mut t = b"d4:infod6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:".to_vec();
    t.extend([7u8; 20]);
    t.extend(b"ee");
    std::fs::write(&other, t).unwrap();
    let out = bt_trace_output(&["analyze", "--torrent", other.to_str().unwrap(), f]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("appears in no peer handshake of the capture"),
        "{text}"
    );
}
