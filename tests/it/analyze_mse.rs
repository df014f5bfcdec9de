//! `bt-trace analyze` on real MSE/PE (Message Stream Encryption) captures made by
//! `captures/make_mse.sh` (see captures/README.md), of one known download: `sample_mse.torrent`,
//! 256 KiB in 8 pieces of 32 KiB, fetched as 16 blocks of 16 KiB.
//!
//! - `lo_mse_plain_libtorrent.pcapng`: libtorrent on both sides with encryption forced and only
//!   plaintext allowed. The responder's handshake follows its MSE preamble in clear; the
//!   initiator's is inside the RC4-encrypted initial payload, so its messages come in clear
//!   with no handshake before them.
//! - `lo_mse_plain_aria2_to_libtorrent.pcapng`: aria2c (plain allowed) dialing a forced
//!   libtorrent: both handshakes in clear after the preambles.
//! - `lo_mse_rc4_libtorrent.pcapng`: RC4 throughout: encrypted, nothing decoded.
//!
//! The oracles: the download itself (blocks, bytes, pieces, `--torrent` verification) and
//! tshark's heuristic BitTorrent dissector (port 6881), which finds the same messages in each
//! direction. Per frame, analyze_real.rs compares these captures with tshark too.

use crate::common::{self, analyze_json, bt_trace_output, capture, skip_unless_installed, Program};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bt_trace::event::{Dir, Event, EventKind, Msg};

const BIN: &str = env!("CARGO_BIN_EXE_bt-trace");

/// The known download: 8 pieces, 16 blocks of 16 KiB, 262,144 bytes.
const PIECES: usize = 8;
const BLOCKS: usize = 16;
const BYTES: u64 = 262_144;

/// The default report (tables), flattened to one line of words.
fn report(file: &Path, extra: &[&str]) -> String {
    let mut args = vec!["analyze"];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    let out = bt_trace_output(&args);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.replace(['│', '┆', '\n'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// (sender's TCP port, "handshake" or message id) → count.
type Counts = BTreeMap<(u16, String), usize>;

fn our_counts(ev: &[Event]) -> Counts {
    let mut c = Counts::new();
    for e in ev {
        let class = match &e.kind {
            EventKind::Handshake { .. } => "handshake".to_string(),
            EventKind::Message { msg, .. } => match msg.id() {
                Some(id) => id.to_string(),
                None => continue, // keep-alives carry no msg.type in tshark's fields
            },
            _ => continue,
        };
        *c.entry((e.src.unwrap().port(), class)).or_default() += 1;
    }
    c
}

/// What tshark's heuristic dissector (and its default ports 6881–6889) finds, per sender.
fn tshark_counts(file: &Path) -> Counts {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(file)
        .args([
            "-o",
            "tcp.desegment_tcp_streams:TRUE",
            "-o",
            "bittorrent.desegment:TRUE",
            "-o",
            "tcp.reassemble_out_of_order:TRUE",
            "-Y",
            "bittorrent",
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "bittorrent.msg.type",
            "-e",
            "bittorrent.protocol.name",
            "-E",
            "occurrence=a",
        ])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "{out:?}");
    let mut c = Counts::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let port: u16 = f[0].parse().unwrap();
        let list = |i: usize| {
            f.get(i)
                .map_or(0, |s| s.split(',').filter(|x| !x.is_empty()).count())
        };
        for _ in 0..list(2) {
            *c.entry((port, "handshake".into())).or_default() += 1;
        }
        for t in f.get(1).into_iter().flat_map(|s| s.split(',')) {
            if !t.is_empty() {
                *c.entry((port, t.to_string())).or_default() += 1;
            }
        }
    }
    c
}

/// The messages of one direction of one connection.
fn msgs(ev: &[Event], conn: u64, dir: Dir) -> Vec<&Msg> {
    ev.iter()
        .filter(|e| e.conn == Some(conn) && e.dir == Some(dir))
        .filter_map(|e| match &e.kind {
            EventKind::Message { msg, .. } => Some(msg),
            _ => None,
        })
        .collect()
}

fn handshakes(ev: &[Event], conn: u64, dir: Dir) -> usize {
    ev.iter()
        .filter(|e| e.conn == Some(conn) && e.dir == Some(dir))
        .filter(|e| matches!(e.kind, EventKind::Handshake { .. }))
        .count()
}

/// The pieces one direction carries: (blocks, bytes, distinct pieces).
fn pieces(m: &[&Msg]) -> (usize, u64, usize) {
    let mut idx = std::collections::BTreeSet::new();
    let mut bytes = 0;
    let mut n = 0;
    for msg in m {
        if let Msg::Piece { index, length, .. } = msg {
            n += 1;
            bytes += u64::from(*length);
            idx.insert(*index);
        }
    }
    (n, bytes, idx.len())
}

fn count(m: &[&Msg], pred: impl Fn(&Msg) -> bool) -> usize {
    m.iter().filter(|m| pred(m)).count()
}

fn torrent() -> String {
    capture("sample_mse.torrent").to_str().unwrap().to_string()
}

const ALL_GOOD: &str = "8 good, 0 bad, 0 incomplete, 0 not in the capture (of 8)";

#[test]
fn libtorrent_plaintext_after_mse_without_the_initiators_handshake() {
    skip_unless_installed!(&[Program::Tshark]);
    let file = capture("lo_mse_plain_libtorrent.pcapng");
    let flat = report(&file, &["--torrent", &torrent()]);
    assert!(
        flat.contains("1 found: 1 BitTorrent (0 picked up mid-stream), 0 encrypted (MSE/PE)"),
        "{flat}"
    );
    assert!(flat.contains(ALL_GOOD), "{flat}");
    assert!(!flat.contains("protocol errors"), "{flat}");
    assert!(
        flat.contains(
            "selected plaintext, the BitTorrent handshake inside its encrypted initial payload"
        ),
        "{flat}"
    );

    let ev = analyze_json(&file);
    // The responder's handshake only; the initiator's travelled encrypted.
    assert_eq!(handshakes(&ev, 0, Dir::S2c), 1);
    assert_eq!(handshakes(&ev, 0, Dir::C2s), 0);
    let up = msgs(&ev, 0, Dir::C2s);
    let down = msgs(&ev, 0, Dir::S2c);
    // The initiator (leecher): extended handshake, have_none, interested first, then one
    // request per block and one have per piece.
    assert!(
        matches!(up[0], Msg::Extended { ext_id: 0, .. }),
        "{:?}",
        &up[..3]
    );
    assert!(matches!(up[1], Msg::HaveNone) && matches!(up[2], Msg::Interested));
    assert_eq!(count(&up, |m| matches!(m, Msg::Request { .. })), BLOCKS);
    assert_eq!(count(&up, |m| matches!(m, Msg::Have { .. })), PIECES);
    assert_eq!(pieces(&down), (BLOCKS, BYTES, PIECES));
    // The same messages in each direction as tshark's heuristic dissector.
    assert_eq!(tshark_counts(&file), our_counts(&ev));
}

/// The same capture without frame 12 (`editcap … 12`), the initiator's first segment in
/// clear: its extended handshake, `have_none`, `interested` and 4 requests (as tshark shows
/// frame 12). What follows the gap is still found and the preamble is still no error.
#[test]
fn libtorrent_plaintext_after_mse_then_a_gap() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = common::temp_dir("analyze_mse_gap");
    let cut = dir.path().join("cut.pcapng");
    let ok = Command::new("editcap")
        .arg(capture("lo_mse_plain_libtorrent.pcapng"))
        .arg(&cut)
        .arg("12")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "editcap");
    let flat = report(&cut, &["--torrent", &torrent()]);
    assert!(flat.contains("1 found: 1 BitTorrent"), "{flat}");
    assert!(flat.contains(ALL_GOOD), "{flat}");
    assert!(!flat.contains("protocol errors"), "{flat}");
    assert!(
        flat.contains("encrypted initial payload: after a gap, messages in clear"),
        "{flat}"
    );
    let ev = analyze_json(&cut);
    let up = msgs(&ev, 0, Dir::C2s);
    assert_eq!(count(&up, |m| matches!(m, Msg::Request { .. })), BLOCKS - 4);
    assert_eq!(count(&up, |m| matches!(m, Msg::Interested)), 0);
    assert!(ev
        .iter()
        .any(|e| e.dir == Some(Dir::C2s) && matches!(e.kind, EventKind::Gap { .. })));
}

#[test]
fn aria2_plaintext_after_mse_to_libtorrent() {
    skip_unless_installed!(&[Program::Tshark]);
    let file = capture("lo_mse_plain_aria2_to_libtorrent.pcapng");
    let flat = report(&file, &["--torrent", &torrent()]);
    // aria2 → libtorrent in clear after MSE/PE; libtorrent's dial to aria2 abandoned after
    // the key exchange (no method chosen, nothing in clear); two tracker connections.
    assert!(
        flat.contains(
            "4 found: 1 BitTorrent (0 picked up mid-stream), 1 encrypted (MSE/PE), 1 HTTP tracker"
        ),
        "{flat}"
    );
    assert!(flat.contains(ALL_GOOD), "{flat}");
    let ev = analyze_json(&file);
    let conn = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::Handshake { .. }))
        .and_then(|e| e.conn)
        .expect("a handshake");
    assert_eq!(
        (
            handshakes(&ev, conn, Dir::C2s),
            handshakes(&ev, conn, Dir::S2c)
        ),
        (1, 1)
    );
    let up = msgs(&ev, conn, Dir::C2s);
    assert!(matches!(up[0], Msg::Extended { ext_id: 0, .. }));
    assert_eq!(count(&up, |m| matches!(m, Msg::Request { .. })), BLOCKS);
    assert_eq!(pieces(&msgs(&ev, conn, Dir::S2c)), (BLOCKS, BYTES, PIECES));
    assert_eq!(tshark_counts(&file), our_counts(&ev));
}

#[test]
fn rc4_throughout_is_encrypted_and_nothing_is_decoded() {
    skip_unless_installed!(&[Program::Tshark]);
    let file = capture("lo_mse_rc4_libtorrent.pcapng");
    let flat = report(&file, &["--torrent", &torrent()]);
    assert!(
        flat.contains("1 found: 0 BitTorrent (0 picked up mid-stream), 1 encrypted (MSE/PE)"),
        "{flat}"
    );
    assert!(
        flat.contains("0 good, 0 bad, 0 incomplete, 8 not in the capture (of 8)"),
        "{flat}"
    );
    let ev = analyze_json(&file);
    assert!(our_counts(&ev).is_empty(), "{ev:?}");
    // tshark claims the stream on port 6881 too, but as "Continuation data" only.
    assert!(tshark_counts(&file).is_empty());
}

/// `dumpcap -i lo -w - | bt-trace analyze --messages -` while a download runs (libtorrent on both
/// sides, MSE/PE selecting plaintext, in a private network namespace as captures/make_mse.sh
/// does): lines come out while the peers talk, before the download is over; Ctrl-C (SIGINT to
/// both, as a terminal sends it) ends with the summary on standard error and exit status 130.
/// Needs root.
#[test]
fn live_capture_from_dumpcap_on_a_pipe() {
    skip_unless_installed!(&[Program::Libtorrent]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: live_capture_from_dumpcap_on_a_pipe needs root (netns, dumpcap)");
        return;
    }
    let dir = common::temp_dir("analyze_mse_live");
    let d = dir.path();
    let ns = format!("btmselive{}", std::process::id());
    let ip = |args: &[&str]| {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?}");
    };
    ip(&["netns", "add", &ns]);
    struct DelNs(String);
    impl Drop for DelNs {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = DelNs(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    // The data of sample_mse.torrent (captures/make_mse.sh).
    let data = Command::new(common::PYTHON)
        .args([
            "-c",
            "import random, sys; \
             sys.stdout.buffer.write(random.Random(20240601).randbytes(1 << 18))",
        ])
        .output()
        .expect("python3")
        .stdout;
    for sub in ["seed", "leech"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(d.join("seed/mse.bin"), &data).unwrap();

    // `ip netns exec` execs dumpcap: its pid is dumpcap's.
    let dumpcap_err = d.join("dumpcap.err");
    let mut dumpcap = Command::new("ip")
        .args([
            "netns", "exec", &ns, "dumpcap", "-q", "-i", "lo", "-f", "tcp", "-w", "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&dumpcap_err).unwrap())
        .spawn()
        .expect("start dumpcap");
    let mut analyze = Command::new(BIN)
        .args(["analyze", "--messages", "-"])
        .stdin(Stdio::from(dumpcap.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bt-trace");
    // Each line with the moment it came.
    let stdout = analyze.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|l| (Instant::now(), l))
            .collect::<Vec<_>>()
    });
    let started = Instant::now();
    while !std::fs::read_to_string(&dumpcap_err).is_ok_and(|s| s.contains("Capturing")) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "dumpcap did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));

    // The download: the leecher prints "done" when it has everything, then waits a second
    // before it closes the connection.
    let mut pair = Command::new("ip")
        .args(["netns", "exec", &ns, common::PYTHON])
        .arg(capture("lt_mse.py"))
        .arg("pair")
        .arg(capture("sample_mse.torrent"))
        .arg(d.join("seed"))
        .arg(d.join("leech"))
        .arg("plaintext")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start lt_mse.py");
    let mut done_line = String::new();
    BufReader::new(pair.stdout.take().unwrap())
        .read_line(&mut done_line)
        .unwrap();
    let done = Instant::now();
    assert_eq!(done_line.trim(), "done 8 262144");
    assert!(pair.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));

    // Ctrl-C: SIGINT to the pipeline, as a terminal sends it to the whole process group: to
    // both at once (no pause between the two), so dumpcap closes the pipe while bt-trace handles the signal. The end of
    // the input must not be taken for a normal end (exit 0).
    let sigint = |pid: u32| {
        // SAFETY: kill has no memory preconditions; the pid is our child, still running.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    };
    sigint(analyze.id());
    sigint(dumpcap.id());
    let _ = dumpcap.wait();
    let out = analyze.wait_with_output().unwrap();
    let lines = lines.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");

    let when = |what: &str| {
        lines
            .iter()
            .find(|(_, l)| l.contains(what))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no {what:?} line in {lines:#?}"))
    };
    // Live: the handshake and the first piece were printed before the download was over.
    assert!(when("handshake info_hash 0c21b8f0") < done, "{lines:#?}");
    assert!(when("piece ") < done, "{lines:#?}");
    let count = |what: &str| {
        lines
            .iter()
            .filter(|(_, l)| l.split("  ").any(|w| w.starts_with(what)))
            .count()
    };
    assert_eq!(count("piece "), BLOCKS, "{lines:#?}");
    assert_eq!(count("request "), BLOCKS, "{lines:#?}");
    assert_eq!(count("connection closed"), 1, "{lines:#?}");
    // The summary of what was read, on standard error.
    assert!(
        stderr.contains("1 found: 1 BitTorrent") && stderr.contains("interrupted"),
        "{stderr}"
    );
}
