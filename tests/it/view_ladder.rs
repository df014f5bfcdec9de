//! `bt-trace ladder` (and `analyze --ladder`) on the real captures of `captures/`: golden
//! files at 80 columns in `--ascii` (`tests/it/view_golden/`; `UPDATE_GOLDEN=1` rewrites
//! them after a deliberate change), the width honoured (`COLUMNS`), the filters, JSON Lines
//! input giving the same ladder as the capture, and colors only on request of a terminal.

use crate::common::capture;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bt-trace");

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/view_golden")
        .join(format!("{name}.txt"))
}

fn ladder(columns: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("COLUMNS", columns)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run bt-trace")
}

fn ok_text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

const GOLDEN: &[&str] = &[
    "lo_aria2_to_libtorrent.pcapng",
    "any_sll_libtorrent_to_aria2.pcapng",
    "any_sll2_transmission_to_libtorrent.pcapng",
    "lo_middownload.pcapng",
    "lo_utp_dht_libtorrent.pcapng",
    "lo_lossy.pcapng",
];

#[test]
fn ladders_match_the_golden_files() {
    for name in GOLDEN {
        let f = capture(name);
        let text = ok_text(&ladder("80", &["ladder", "--ascii", f.to_str().unwrap()]));
        let g = golden(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&g, &text).unwrap();
        }
        let want = std::fs::read_to_string(&g).unwrap_or_default();
        assert_eq!(text, want, "{name}: ladder differs from {}", g.display());
        assert!(text.is_ascii());
        for l in text.lines() {
            assert!(l.chars().count() <= 80, "{name}: too wide: {l}");
        }
        // the same through analyze --ladder
        let a = ok_text(&ladder(
            "80",
            &["analyze", "--ladder", "--ascii", f.to_str().unwrap()],
        ));
        assert_eq!(a, text, "{name}: analyze --ladder differs");
    }
    let g = std::fs::read_to_string(golden("lo_aria2_to_libtorrent.pcapng")).unwrap();
    for want in [
        "TCP open: SYN, SYN-ACK, ACK",
        "MSE/PE handshake",
        "x 8 request 5:0..11:64 KiB",
        "x 10 allowed fast 2..15",
        "handshake libtorrent 2.0.8",
        "TCP close: FIN",
        "UDP connect request",
    ] {
        assert!(g.contains(want), "{want:?} missing");
    }
}

#[test]
fn width_filters_colors_and_unfolding() {
    let f = capture("any_sll2_transmission_to_libtorrent.pcapng");
    let f = f.to_str().unwrap();
    let narrow = ok_text(&ladder("50", &["ladder", f]));
    assert!(narrow.lines().all(|l| l.chars().count() <= 50), "{narrow}");
    assert!(!narrow.contains('\x1b'), "no colors when piped");
    let only = ok_text(&ladder(
        "80",
        &[
            "ladder",
            "--ascii",
            "--conn",
            "3",
            "--type",
            "request,piece",
            f,
        ],
    ));
    assert!(only.starts_with("connection 3:"), "{only}");
    assert!(!only.contains("connection 1:") && !only.contains("have"));
    assert!(
        only.contains("x 64 request") && only.contains("x 64 piece"),
        "{only}"
    );
    let unfolded = ok_text(&ladder(
        "80",
        &[
            "ladder",
            "--ascii",
            "--no-fold",
            "--conn",
            "3",
            "--type",
            "piece",
            f,
        ],
    ));
    assert_eq!(
        unfolded.lines().filter(|l| l.contains(" piece ")).count(),
        64
    );
    let bad = ladder("80", &["ladder", "--type", "bogus", f]);
    assert!(!bad.status.success());
}

#[test]
fn a_jsonl_trace_gives_the_ladder_of_its_capture() {
    let f = capture("lo_aria2_to_libtorrent.pcapng");
    let json = Command::new(BIN)
        .args(["analyze", "--json", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(json.status.success());
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("events.jsonl");
    std::fs::write(&j, &json.stdout).unwrap();
    let from_jsonl = ok_text(&ladder(
        "80",
        &["ladder", "--ascii", "--conn", "2", j.to_str().unwrap()],
    ));
    let from_capture = ok_text(&ladder(
        "80",
        &["ladder", "--ascii", "--conn", "2", f.to_str().unwrap()],
    ));
    // the capture's ladder also has the analyzer's notes; the messages are the same
    let arrows = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains("->|") || l.contains("|<-"))
            .map(String::from)
            .collect()
    };
    assert!(!arrows(&from_jsonl).is_empty());
    assert_eq!(arrows(&from_jsonl), arrows(&from_capture));
    let garbage = dir.path().join("x.bin");
    std::fs::write(&garbage, b"not a capture").unwrap();
    let out = ladder("80", &["ladder", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}
