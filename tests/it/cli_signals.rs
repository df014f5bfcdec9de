//! SIGTERM in the middle of a real traced download (a rate-limited aria2c seeder behind
//! opentracker, on 127.0.0.1): bt-trace must stop cleanly (exit status 130, `error:
//! interrupted: ...` saying how many pieces are on disk), leave trace files that tshark reads
//! without a complaint, and keep its verified pieces for the next run.
//!
//! The quicker signal tests (every signal, `handshake` and `peers` against listeners that never
//! answer) are in `cli_basic.rs`.

use crate::common::*;
use std::time::{Duration, Instant};

const DOWNLOAD: Duration = Duration::from_secs(180);

/// The `K` of "(K resumed from disk)" in a download's report line.
fn resumed(stderr: &str) -> u32 {
    stderr
        .split(" resumed from disk")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resume count in:\n{stderr}"))
}

#[test]
fn sigterm_mid_download_finishes_the_trace_and_keeps_the_pieces() {
    skip_unless_installed!(&[Program::Aria2c, Program::Mktorrent, Program::Tshark]);
    // 32 MiB from one aria2c limited to 4 MiB/s: ~8 s, so the signal lands mid-transfer.
    let tracker = Tracker::shared();
    let src = temp_dir("signal-src");
    let content = src.path().join("signal.bin");
    make_data(&content, 32 << 20, 501);
    let t = mktorrent(
        &content,
        &src.path().join("signal.torrent"),
        18,
        &[&[&tracker.http_url()]],
    );
    tracker.allow(&[&t.info_hash]);
    let seeder = Aria2::seed(&t, src.path(), src.path(), &["--max-upload-limit=4M"]);
    tracker.wait_seeding(&t.info_hash, 1);

    let out_dir = temp_dir("signal-out");
    let out = out_dir.path().join("signal.bin");
    let traces = out_dir.path().join("traces");
    let pcapng = traces.join("download-signal.bin.pcapng");
    let jsonl = traces.join("download-signal.bin.jsonl");
    let run = bt_trace_spawn(
        [
            "download".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            t.path.as_os_str(),
            "--trace".as_ref(),
            traces.as_os_str(),
        ],
        &out_dir.path().join("run.log"),
    );
    // Piece data is flowing once the capture holds a few MiB.
    let deadline = Instant::now() + DOWNLOAD;
    while std::fs::metadata(&pcapng).map_or(0, |m| m.len()) < 2 << 20 {
        run.assert_running();
        assert!(
            Instant::now() < deadline,
            "no data after {DOWNLOAD:?}:\n{}",
            run.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) on the child the guard holds (not reaped: it is running).
    assert_eq!(
        unsafe { libc::kill(run.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = run
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no exit within 60 s of SIGTERM:\n{}", run.log_tail()));
    let log = run.log_text();
    assert_eq!(status.code(), Some(130), "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: interrupted: ")
            && last.ends_with("pieces are verified on disk; run the same command again to resume"),
        "{log}"
    );
    let have: u32 = last
        .trim_start_matches("error: interrupted: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no piece count in {last:?}"));

    // The trace is whole: tshark reads every frame, the event log ends with a complete line.
    assert!(!tshark_bittorrent_frames(&pcapng, seeder.port).is_empty());
    let events = std::fs::read_to_string(&jsonl).expect("the .jsonl");
    assert!(events.ends_with('\n'), "the event log ends mid-line");
    for line in events.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    // The verified pieces are kept: the next run resumes them and completes.
    let again = bt_trace(
        [
            "download".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            t.path.as_os_str(),
        ],
        DOWNLOAD,
    );
    again.assert_ok();
    assert!(
        resumed(&again.stderr) >= have,
        "{have} pieces were verified at the signal:\n{}",
        again.stderr
    );
    assert_same_files(&t, src.path(), &DownloadedAt::File(out.clone()));
    seeder.child.assert_running();
}
