//! `bt-trace demo`: the classroom swarm, hermetic (the built-in tracker and bt-trace seeders on
//! 127.0.0.1, nothing else), with a small `--size` so each run takes a second or two. The real
//! clients of `--with` and tshark are under the skip rule.

use crate::common::*;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

const RUN: Duration = Duration::from_secs(120);

/// Runs `bt-trace demo --out OUT --port PORT --size 256K -q ARGS…`.
fn demo(out: &Path, port: u16, args: &[&str]) -> Run {
    let mut all = vec![
        "demo".to_string(),
        "--out".into(),
        out.display().to_string(),
        "--port".into(),
        port.to_string(),
        "--size".into(),
        "256K".into(),
        "-q".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    bt_trace(&all, RUN)
}

/// Every line of the demo's JSON Lines trace, parsed.
fn events(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("trace/demo-classroom.jsonl")).expect("jsonl");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The downloaded files are the content's, byte for byte.
fn assert_same_content(out: &Path) {
    for f in ["README.txt", "random.bin", "short-last-piece.bin"] {
        let a = std::fs::read(out.join("data/classroom").join(f)).expect("content");
        let b = std::fs::read(out.join("download/classroom").join(f)).expect("download");
        assert!(a == b && !a.is_empty(), "{f} differs");
    }
}

#[test]
fn the_demo_downloads_and_shows_every_peer() {
    let dir = temp_dir("demo");
    let out = dir.path().join("out");
    let run = demo(&out, free_port(), &[]);
    run.assert_ok();
    assert_same_content(&out);
    for want in [
        "Downloaded",
        "bt-trace seeder 1",
        "bt-trace seeder 3",
        "tshark -r ",
        "bt-trace analyze ",
        "demo-classroom.pcapng",
    ] {
        assert!(
            run.stdout.contains(want),
            "{want:?} missing:\n{}",
            run.stdout
        );
    }
    let ev = events(&out);
    let pieces = ev
        .iter()
        .filter(|e| e["kind"] == "message" && e["msg"]["type"] == "piece")
        .count();
    assert!(pieces >= 16, "{pieces} piece messages in the trace"); // 256K+ = 16+ blocks
    let peers: std::collections::BTreeSet<String> = ev
        .iter()
        .filter(|e| e["kind"] == "handshake" && e["dir"] == "c2s")
        .map(|e| e["dst"].to_string())
        .collect();
    assert_eq!(peers.len(), 3, "the three seeders: {peers:?}");
}

#[test]
fn the_demo_trace_dissects_in_tshark() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = temp_dir("demo-tshark");
    let out = dir.path().join("out");
    demo(&out, free_port(), &[]).assert_ok();
    let seeder_port = events(&out)
        .iter()
        .find(|e| e["kind"] == "handshake" && e["dir"] == "c2s")
        .and_then(|e| e["dst"].as_str()?.rsplit(':').next()?.parse::<u16>().ok())
        .expect("a handshake we sent");
    let pcapng = out.join("trace/demo-classroom.pcapng");
    let frames = tshark_bittorrent_frames(&pcapng, seeder_port);
    assert!(frames.len() > 10, "{} BitTorrent frames", frames.len());
    assert_tshark_clean(&pcapng, seeder_port);
}

#[test]
fn an_earlier_run_is_kept_without_force() {
    let dir = temp_dir("demo-force");
    let out = dir.path().join("out");
    let port = free_port();
    demo(&out, port, &[]).assert_ok();
    let keep = out.join("notes.txt");
    std::fs::write(&keep, "mine").expect("write");
    let before = std::fs::read(out.join("trace/demo-classroom.pcapng")).expect("pcapng");
    let again = demo(&out, port, &[]);
    again.assert_clean_failure();
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let after = std::fs::read(out.join("trace/demo-classroom.pcapng")).expect("pcapng");
    assert!(before == after, "the refused run touched the trace");
    demo(&out, port, &["--force"]).assert_ok();
    assert_same_content(&out);
    assert_eq!(std::fs::read_to_string(&keep).expect("kept"), "mine");
}

#[test]
fn reproducible_runs_give_identical_traces() {
    let dir = temp_dir("demo-repro");
    let port = free_port();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    demo(&a, port, &["--reproducible"]).assert_ok();
    demo(&b, port, &["--reproducible"]).assert_ok();
    for f in ["demo-classroom.pcapng", "demo-classroom.jsonl"] {
        let (x, y) = (
            std::fs::read(a.join("trace").join(f)).expect("first"),
            std::fs::read(b.join("trace").join(f)).expect("second"),
        );
        assert!(!x.is_empty() && x == y, "{f} differs between two runs");
    }
    assert_same_content(&b);
    // piece i from seeder i mod 3, whose port is the tracker's + 1 + (i mod 3)
    for e in events(&a) {
        if e["kind"] == "message" && e["msg"]["type"] == "piece" {
            let i = e["msg"]["index"].as_u64().expect("index");
            let from = format!("127.0.0.1:{}", u64::from(port) + 1 + i % 3);
            assert_eq!(e["src"], from.as_str(), "{e}");
        }
    }
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let dir = temp_dir("demo-port");
    let port = free_port();
    let _taken = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let run = demo(&dir.path().join("out"), port, &[]);
    run.assert_clean_failure();
    assert!(
        run.stderr.contains("--port") && run.stderr.contains(&port.to_string()),
        "{}",
        run.stderr
    );
}

#[test]
fn a_magnet_download_shows_the_metadata_exchange() {
    let dir = temp_dir("demo-magnet");
    let out = dir.path().join("out");
    let run = demo(&out, free_port(), &["--magnet"]);
    run.assert_ok();
    assert_same_content(&out);
    let metadata = events(&out)
        .iter()
        .filter(|e| e["msg"]["name"] == "ut_metadata")
        .count();
    assert!(
        metadata >= 2,
        "{metadata} ut_metadata messages (request, data)"
    );
    assert!(run.stdout.contains("ut_metadata"), "{}", run.stdout);
}

#[test]
fn real_clients_join_with_with() {
    skip_unless_installed!(&[
        Program::Aria2c,
        Program::Libtorrent,
        Program::TransmissionDaemon,
        Program::TransmissionRemote,
    ]);
    let dir = temp_dir("demo-with");
    let out = dir.path().join("out");
    let run = demo(
        &out,
        free_port(),
        &["--with", "aria2,libtorrent,transmission"],
    );
    run.assert_ok();
    assert_same_content(&out);
    for name in ["aria2", "libtorrent", "transmission"] {
        assert!(run.stdout.contains(name), "{name} missing:\n{}", run.stdout);
        let log = out.join("clients").join(name).join(format!("{name}.log"));
        assert!(log.exists(), "{}", log.display());
    }
    // libtorrent and Transmission name themselves in their handshakes
    let clients: Vec<String> = events(&out)
        .iter()
        .filter(|e| e["kind"] == "handshake" && e["dir"] == "s2c")
        .filter_map(|e| e["client"].as_str().map(str::to_string))
        .collect();
    assert!(
        clients.iter().any(|c| c.starts_with("libtorrent")),
        "{clients:?}"
    );
}

#[test]
fn ctrl_c_stops_everything() {
    let dir = temp_dir("demo-sigint");
    let out = dir.path().join("out");
    let port = free_port();
    let port_s = port.to_string();
    let out_s = out.display().to_string();
    // 128 MiB: the seeders are still checking their data when the signal comes
    let run = bt_trace_spawn(
        ["demo", "--out", &out_s, "--port", &port_s, "--size", "128M"],
        &dir.path().join("run.log"),
    );
    let jsonl = out.join("trace/demo-classroom.jsonl");
    while !jsonl.exists() {
        run.assert_running();
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: plain kill(2) on the child the guard holds (not reaped: it is running).
    assert_eq!(
        unsafe { libc::kill(run.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = run
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no exit after SIGINT:\n{}", run.log_tail()));
    assert_eq!(status.code(), Some(130), "{}", run.log_text());
    assert!(
        run.log_text().contains("error: interrupted"),
        "{}",
        run.log_text()
    );
    // nothing keeps the tracker's port, and the trace is finished
    TcpListener::bind(("127.0.0.1", port)).expect("the tracker's port is free again");
    std::net::UdpSocket::bind(("127.0.0.1", port)).expect("UDP too");
    events(&out);
}
