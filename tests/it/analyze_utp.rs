//! `bt-trace analyze` on uTP (BEP 29), the DHT (BEP 5) and LSD (BEP 14), on a real capture
//! (`captures/lo_utp_dht_libtorrent.pcapng`: two libtorrent 2.0.8 sessions on loopback, TCP
//! off, DHT bootstrapped to each other, LSD on; see captures/README.md).
//!
//! The oracles: tshark with its uTP heuristic on (`--enable-heuristic bt_utp_udp`), which
//! must show the same BitTorrent PDUs in the same frames, and the same number of DHT and LSD
//! datagrams; and the download itself: 8 pieces of 32 KiB (16 blocks, 262,144 bytes) that
//! `--torrent` checks good and `--extract` writes back.

use crate::common::{self, analyze_json, bt_trace_output, capture, skip_unless_installed, Program};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bt_trace::event::{Event, EventKind, Transport};

fn utp_capture() -> PathBuf {
    capture("lo_utp_dht_libtorrent.pcapng")
}

/// (frame, "handshake" or message id) → count; pieces at their first frame (see below).
type Pdus = BTreeMap<(u64, String), usize>;

fn our_pdus(ev: &[Event]) -> Pdus {
    let mut p = Pdus::new();
    for e in ev {
        let class = match &e.kind {
            EventKind::Handshake { .. } => "handshake".to_string(),
            EventKind::Message { msg, .. } => match msg.id() {
                Some(i) => i.to_string(),
                None => continue,
            },
            _ => continue,
        };
        // tshark's uTP heuristic does not reassemble a piece message that spans packets: it
        // shows it ("Unreassembled") at its first frame. Other messages end where it shows them.
        let frame = if class == "7" {
            e.frames[0]
        } else {
            *e.frames.last().unwrap()
        };
        *p.entry((frame, class)).or_default() += 1;
    }
    p
}

fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file);
    cmd.args([
        "--enable-heuristic",
        "bt_utp_udp",
        "-o",
        "bittorrent.desegment:TRUE",
    ]);
    cmd.args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "separator=/t",
    ]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn tshark_pdus(file: &Path) -> Pdus {
    let mut p = Pdus::new();
    for row in tshark(
        file,
        "bittorrent",
        &[
            "frame.number",
            "bittorrent.msg.type",
            "bittorrent.protocol.name",
        ],
    ) {
        let frame: u64 = row[0].parse().unwrap();
        for t in row[1].split(',').filter(|t| !t.is_empty()) {
            *p.entry((frame, t.to_string())).or_default() += 1;
        }
        for _ in row[2].split(',').filter(|t| !t.is_empty()) {
            *p.entry((frame, "handshake".to_string())).or_default() += 1;
        }
    }
    p
}

#[test]
fn utp_messages_are_tsharks_in_the_same_frames() {
    skip_unless_installed!(&[Program::Tshark]);
    let file = utp_capture();
    let ev = analyze_json(&file);
    let (mine, theirs) = (our_pdus(&ev), tshark_pdus(&file));
    assert!(theirs.values().sum::<usize>() >= 50, "{theirs:?}");
    assert_eq!(mine, theirs);
    // Every event of a uTP connection says so; the DHT's and LSD's are datagrams.
    for e in &ev {
        match &e.kind {
            EventKind::Dht { .. } | EventKind::Lsd { .. } => assert_eq!(e.transport, None),
            _ => assert_eq!(e.transport, Some(Transport::Utp), "{e:?}"),
        }
    }
}

#[test]
fn the_utp_download_is_whole_and_checks_good() {
    let file = utp_capture();
    let torrent = capture("sample_utp.torrent");
    let dir = common::temp_dir("analyze_utp_extract");
    let out = bt_trace_output(&[
        "analyze",
        "--torrent",
        torrent.to_str().unwrap(),
        "--extract",
        dir.path().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("8 good, 0 bad, 0 incomplete, 0 not in the capture (of 8)"),
        "{text}"
    );
    assert!(text.contains("Connection 0 (uTP), BitTorrent"), "{text}");
    assert!(text.contains("8 / 16 / 262,144"), "{text}");
    assert!(text.contains("uTP connections"), "{text}");
    let data = std::fs::read(dir.path().join("utp.bin")).unwrap();
    assert_eq!(data.len(), 1 << 18);
    // The pieces of the JSON: 16 blocks of 16 KiB, all of pieces 0..8.
    let ev = analyze_json(&file);
    let blocks: Vec<(u32, u32)> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Message {
                msg:
                    bt_trace::event::Msg::Piece {
                        index,
                        begin,
                        length,
                        ..
                    },
                ..
            } => {
                assert_eq!(*length, 16384);
                Some((*index, *begin))
            }
            _ => None,
        })
        .collect();
    let mut sorted = blocks.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 16);
    assert_eq!(blocks.len(), 16, "a block counted twice");
    // --messages names the transport.
    let out = bt_trace_output(&[
        "analyze",
        "--messages",
        "--type",
        "piece",
        file.to_str().unwrap(),
    ]);
    let lines = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        lines.lines().filter(|l| l.contains(" utp 0 ")).count(),
        16,
        "{lines}"
    );
}

#[test]
fn dht_and_lsd_datagrams_are_tsharks() {
    skip_unless_installed!(&[Program::Tshark]);
    let file = utp_capture();
    let ev = analyze_json(&file);
    let frames_of = |f: &dyn Fn(&EventKind) -> bool| -> Vec<u64> {
        ev.iter()
            .filter(|e| f(&e.kind))
            .map(|e| e.frames[0])
            .collect()
    };
    let dht = frames_of(&|k| matches!(k, EventKind::Dht { .. }));
    let lsd = frames_of(&|k| matches!(k, EventKind::Lsd { .. }));
    let frames = |filter: &str| -> Vec<u64> {
        tshark(&file, filter, &["frame.number"])
            .iter()
            .map(|r| r[0].parse().unwrap())
            .collect()
    };
    assert_eq!(dht, frames("bt-dht"));
    assert_eq!(lsd, frames("lsd"));
    assert!(dht.len() >= 20 && lsd.len() >= 2, "{dht:?} {lsd:?}");
    // Each response is paired with its query; the torrent's hash is looked up and announced,
    // and the peers learned are the two sessions.
    let mut methods = BTreeMap::<String, usize>::new();
    let mut peers = std::collections::BTreeSet::new();
    for e in &ev {
        if let EventKind::Dht { packet, .. } = &e.kind {
            assert!(packet.method.is_some(), "unpaired: {packet:?}");
            if packet.y == "query" {
                *methods.entry(packet.method.clone().unwrap()).or_default() += 1;
            }
            peers.extend(packet.peers.iter().copied());
        }
        if let EventKind::Lsd { announce, .. } = &e.kind {
            assert_eq!(
                announce.info_hashes,
                ["b0e56873f42c1f6016b5cf517603bc6e78091627"]
            );
            assert!(matches!(announce.port, Some(6881 | 6882)));
            assert!(announce.cookie.is_some());
        }
    }
    assert!(
        methods.get("get_peers").is_some_and(|&n| n > 0),
        "{methods:?}"
    );
    assert!(
        methods.get("announce_peer").is_some_and(|&n| n > 0),
        "{methods:?}"
    );
    assert!(!peers.is_empty());
    assert!(peers
        .iter()
        .all(|p| p.ip().is_loopback() && [6881, 6882].contains(&p.port())));
    let out = bt_trace_output(&["analyze", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DHT (BEP 5)") && text.contains("LSD (BEP 14)"),
        "{text}"
    );
    let out = bt_trace_output(&["analyze", "--json", "--type", "dht", file.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        dht.len()
    );
}

/// A data packet lost by the capture (cut out with editcap): the receiver's acks show it was
/// received, so the gap is reported at once (not at the end), the decoder resynchronizes on
/// the next message, and only the piece that lost bytes is incomplete.
#[test]
fn a_utp_packet_missing_from_the_capture_is_a_gap() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = common::temp_dir("analyze_utp_gap");
    let cut = dir.path().join("gap.pcapng");
    let file = utp_capture();
    // Frame 50 carries 528 bytes in the middle of the first piece message.
    let st = Command::new("editcap")
        .arg(&file)
        .arg(&cut)
        .arg("50")
        .status()
        .expect("run editcap");
    assert!(st.success());
    let torrent = capture("sample_utp.torrent");
    let out = bt_trace_output(&[
        "analyze",
        "--torrent",
        torrent.to_str().unwrap(),
        cut.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("7 good, 0 bad, 1 incomplete"), "{text}");
    assert!(text.contains("gap of uTP packets not captured"), "{text}");
    assert!(text.contains("1 (lost uTP packets)"), "{text}");
    let pieces = |ev: &[Event]| -> Vec<(u64, String)> {
        ev.iter()
            .filter_map(|e| match &e.kind {
                EventKind::Message {
                    msg: bt_trace::event::Msg::Piece { sha1, .. },
                    ..
                } => Some((e.frames[0], sha1.clone())),
                _ => None,
            })
            .collect()
    };
    let (whole, holed) = (pieces(&analyze_json(&file)), pieces(&analyze_json(&cut)));
    assert_eq!(whole.len(), 16);
    assert_eq!(holed.len(), 16, "every piece message is still found");
    // The one that lost bytes has no hash; the others are the same blocks.
    assert_eq!(holed.iter().filter(|(_, h)| h.is_empty()).count(), 1);
    let hashes = |v: &[(u64, String)]| -> Vec<String> {
        v.iter()
            .map(|(_, h)| h.clone())
            .filter(|h| !h.is_empty())
            .collect()
    };
    assert_eq!(hashes(&holed).len(), 15);
    assert!(hashes(&holed).iter().all(|h| hashes(&whole).contains(h)));
}

/// A capture made now (captures/make_utp.sh: a private network namespace, two libtorrent
/// sessions over uTP with the DHT and LSD, dumpcap on its `lo`) is analyzed like the stored
/// one: the whole download over uTP, its pieces good, DHT and LSD messages. Needs root.
#[test]
fn a_live_utp_capture_is_analyzed() {
    skip_unless_installed!(&[Program::Tshark, Program::Libtorrent, Program::Mktorrent]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "skipped: a_live_utp_capture_is_analyzed needs root (network namespace, dumpcap)"
        );
        return;
    }
    let dir = common::temp_dir("analyze_utp_live");
    let (cap, torrent) = (
        dir.path().join("live.pcapng"),
        dir.path().join("live.torrent"),
    );
    let out = Command::new("bash")
        .arg(capture("make_utp.sh"))
        .env("OUT", &cap)
        .env("TORRENT", &torrent)
        .output()
        .expect("run make_utp.sh");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("download complete and identical"), "{log}");
    let out = bt_trace_output(&[
        "analyze",
        "--torrent",
        torrent.to_str().unwrap(),
        cap.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("8 good, 0 bad, 0 incomplete, 0 not in the capture (of 8)"),
        "{text}"
    );
    assert!(text.contains("(uTP), BitTorrent"), "{text}");
    let ev = analyze_json(&cap);
    assert!(ev.iter().any(|e| matches!(e.kind, EventKind::Dht { .. })));
    assert!(ev.iter().any(|e| e.transport == Some(Transport::Utp)));
    // Each block once, even if the load made libtorrent retransmit (tshark would count those
    // again, so it is not the oracle here).
    let pieces = our_pdus(&ev)
        .iter()
        .filter(|((_, c), _)| c == "7")
        .map(|(_, n)| n)
        .sum::<usize>();
    assert_eq!(pieces, 16);
}
