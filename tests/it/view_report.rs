//! The HTML report in a real browser: a `bt-trace download --report --trace` from a
//! `bt-trace seed` on loopback, then Debian's chromium, headless, loads the report from
//! disk. The DOM must hold the connection and message counts of the run's own JSON Lines
//! trace, a ladder per connection and the message rows; the screenshot must not be blank
//! (much bigger than a blank page's); and chromium's network log must show no request made
//! by the page. A control page with an `<img>` on 127.0.0.1 shows that the check does see
//! a page's request (chromium's own background requests carry no `file://` isolation key
//! and are not the page's). Also `analyze --html` of a capture. Skipped without chromium.

use crate::common::*;
use crate::view_live::swarm;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bt_trace::event::EventKind;

/// Runs headless chromium on `page` with `args`; returns stdout and the URLs the page
/// requested (from `--log-net-log`), file: URLs left out.
fn chromium(page: &Path, args: &[&str], dir: &Path) -> (String, Vec<String>) {
    let netlog = dir.join(format!(
        "net-{}.json",
        page.file_stem().unwrap().to_string_lossy()
    ));
    let profile = dir.join("profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--window-size=1000,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed");
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&netlog).expect("net log")).expect("net log JSON");
    let mut urls = Vec::new();
    for e in log["events"].as_array().into_iter().flatten() {
        let p = &e["params"];
        let (Some(url), Some(key)) = (p["url"].as_str(), p["network_isolation_key"].as_str())
        else {
            continue;
        };
        if key.contains("file://") && !url.starts_with("file:") {
            urls.push(url.to_string());
        }
    }
    (String::from_utf8_lossy(&out.stdout).into_owned(), urls)
}

fn number_in(dom: &str, id: &str) -> u64 {
    let at = dom.find(&format!("id=\"{id}\">")).expect(id) + id.len() + 6;
    dom[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a number")
}

#[test]
fn report_of_a_real_download_renders_offline() {
    skip_unless_installed!(&[Program::Chromium]);
    let s = swarm("view-report", 5 * 1024 * 1024 + 77);
    let dir = s.dir.path();
    let report = dir.join("report.html");
    let traces = dir.join("traces");
    s.download(
        &dir.join("out.bin"),
        &[
            "-q",
            "--report",
            report.to_str().unwrap(),
            "--trace",
            traces.to_str().unwrap(),
        ],
    );
    // what the run's own trace says
    let jsonl = std::fs::read_dir(&traces)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a .jsonl trace");
    let events = bt_trace::trace::jsonl::read_events(std::io::BufReader::new(
        std::fs::File::open(&jsonl).unwrap(),
    ))
    .unwrap();
    let messages = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Handshake { .. }
                    | EventKind::Message { .. }
                    | EventKind::TrackerHttpRequest { .. }
                    | EventKind::TrackerHttpResponse { .. }
                    | EventKind::TrackerUdp { .. }
            )
        })
        .count() as u64;
    let mut conns: Vec<u64> = events
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::TrackerUdp { .. }))
        .filter_map(|e| e.conn)
        .collect();
    conns.sort_unstable();
    conns.dedup();
    assert!(messages > 20 && !conns.is_empty());

    let (dom, requested) = chromium(&report, &["--dump-dom"], dir);
    assert_eq!(number_in(&dom, "conn-count"), conns.len() as u64);
    assert_eq!(number_in(&dom, "msg-count"), messages);
    assert_eq!(dom.matches("<section class=\"conn\"").count(), conns.len());
    assert_eq!(
        dom.matches("<tr data-conn=").count() as u64,
        messages.min(bt_trace::view::report::MAX_MESSAGE_ROWS as u64)
    );
    assert!(dom.contains("<svg class=\"ladder\"") && dom.contains("id=\"piecemap\""));
    // the script ran: the filter line counts the rows
    assert!(
        dom.contains(&format!("{messages} shown")),
        "the page's script did not run"
    );
    assert!(requested.is_empty(), "the report requested {requested:?}");

    // not blank: far bigger than the screenshot of an empty page
    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<html><body></body></html>").unwrap();
    let shot = |page: &Path, png: &Path| {
        chromium(page, &[&format!("--screenshot={}", png.display())], dir);
        std::fs::metadata(png).expect("screenshot").len()
    };
    let full = shot(&report, &dir.join("report.png"));
    let empty = shot(&blank, &dir.join("blank.png"));
    assert!(
        full > 10 * empty,
        "screenshot {full} bytes, blank page {empty}"
    );

    // the check sees a page's request
    let control = dir.join("control.html");
    let port = free_port();
    std::fs::write(
        &control,
        format!("<html><body><img src=\"http://127.0.0.1:{port}/x.png\">x</body></html>"),
    )
    .unwrap();
    let (_, requested) = chromium(&control, &["--dump-dom"], dir);
    assert!(
        requested
            .iter()
            .any(|u| u.contains(&format!("127.0.0.1:{port}"))),
        "the network log shows no request of the control page: {requested:?}"
    );
}

#[test]
fn analyze_html_of_a_capture() {
    let dir = temp_dir("view-html");
    let report = dir.path().join("r.html");
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/lo_aria2_to_libtorrent.pcapng");
    let r = bt_trace(
        [
            "analyze",
            cap.to_str().unwrap(),
            "--html",
            report.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    r.assert_ok();
    assert!(
        r.stdout.contains("Connection 2"),
        "the tables still go to stdout"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("default-src 'none'"));
    for bad in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(bad), "external resource: {bad}");
    }
    assert_eq!(number_in(&html, "conn-count"), 4);
    assert_eq!(
        html.matches("<section class=\"conn\"").count(),
        5,
        "4 TCP + 1 UDP"
    );
    assert!(html.contains("× 8 request 5:0..11:64 KiB"));
    assert!(
        html.contains("class=\"members\""),
        "folded runs list their messages"
    );
}
