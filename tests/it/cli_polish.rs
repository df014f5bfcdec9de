//! The command line as a student meets it: help that fits 100 columns and lists only the
//! options each command uses, `decode` of a file or standard input, peer addresses given as
//! host names, each fact of an error said once, usage errors with exit status 2, shell
//! completions and the man page. Runs the built binary; network targets are 127.0.0.1 only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bt-trace");

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env("COLUMNS", "100")
        .output()
        .expect("run bt-trace");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{out:?}"
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sample_torrent() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/sample.torrent")
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Asserts that `phrase` occurs exactly once in `text`.
fn once(text: &str, phrase: &str) {
    assert_eq!(
        text.matches(phrase).count(),
        1,
        "{phrase:?} once in: {text}"
    );
}

const COMMANDS: &[&str] = &[
    "decode",
    "encode",
    "info",
    "magnet_parse",
    "peers",
    "handshake",
    "download_piece",
    "download",
    "seed",
    "magnet_handshake",
    "magnet_info",
    "magnet_download_piece",
    "magnet_download",
    "analyze",
    "ladder",
    "create",
    "tracker",
    "demo",
    "completions",
    "man",
];

#[test]
fn help_fits_100_columns() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let mut all = vec![stdout(&top)];
    for c in COMMANDS {
        let o = run(&[c, "--help"]);
        assert!(o.status.success(), "{c}: {}", stderr(&o));
        all.push(stdout(&o));
    }
    for text in &all {
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{} columns: {line}",
                line.len()
            );
        }
    }
}

#[test]
fn each_command_lists_only_its_options() {
    let help = |c: &str| stdout(&run(&[c, "--help"]));
    let unused = ["--max-peers", "--quiet", "--trace-snaplen"];
    for c in ["peers", "handshake", "magnet_handshake", "magnet_info"] {
        let h = help(c);
        for opt in unused {
            assert!(!h.contains(opt), "{c} lists {opt}:\n{h}");
        }
        assert!(h.contains("--trace <DIR>"), "{c}:\n{h}");
    }
    // peers asks trackers only; handshake talks to its positional peer only
    assert!(!help("peers").contains("--peer"));
    let hs = help("handshake");
    assert!(!hs.contains("--peer") && !hs.contains("--port"), "{hs}");
    assert!(hs.contains("<PEER>"), "{hs}");
    for c in [
        "download",
        "download_piece",
        "magnet_download",
        "magnet_download_piece",
        "seed",
    ] {
        let h = help(c);
        for opt in unused.iter().chain(&["--peer <HOST:PORT>", "--port"]) {
            assert!(h.contains(opt), "{c} lacks {opt}:\n{h}");
        }
    }
    // scripts that pass --port to handshake keep working
    let port = closed_port().to_string();
    let t = sample_torrent();
    let o = run(&[
        "handshake",
        "--port",
        "7000",
        t.to_str().unwrap(),
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn decode_reads_a_file_and_stdin() {
    let t = sample_torrent();
    let o = run(&["decode", "--file", t.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["announce"], "http://127.0.0.1:6969/announce");
    assert_eq!(v["info"]["name"], "sample.bin");
    let pieces = v["info"]["pieces"].as_str().expect("a string");
    // 16 SHA-1 hashes as hex, no byte lost
    assert_eq!(pieces.len(), "<hex:>".len() + 16 * 40, "{pieces}");
    assert!(pieces.starts_with("<hex:"));

    let mut child = Command::new(BIN)
        .args(["decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let bytes = std::fs::read(&t).expect("the torrent");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bytes)
        .expect("write");
    let piped = child.wait_with_output().expect("wait");
    assert!(piped.status.success());
    assert_eq!(stdout(&piped), text);

    // the course's form is unchanged
    assert_eq!(
        stdout(&run(&["decode", "d3:foo3:bare"])),
        "{\"foo\":\"bar\"}\n"
    );
    let bad = run(&["decode", "--file", "/nonexistent.torrent"]);
    assert_eq!(bad.status.code(), Some(1));
    once(&stderr(&bad), "No such file");
}

/// A peer on 127.0.0.1 that answers one handshake with its own peer id.
fn one_handshake_peer(peer_id: [u8; 20]) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs).expect("their handshake");
        hs[48..].copy_from_slice(&peer_id);
        s.write_all(&hs).expect("our handshake");
        let _ = s.read(&mut [0u8; 16]);
    });
    (port, h)
}

#[test]
fn peers_by_host_name_and_ipv6_brackets() {
    let id = *b"-XX0001-abcdefghijkl";
    let (port, h) = one_handshake_peer(id);
    let t = sample_torrent();
    let o = run(&[
        "handshake",
        t.to_str().unwrap(),
        &format!("localhost:{port}"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("Peer ID: {}\n", hex::encode(id)));
    h.join().expect("the peer");

    // brackets for IPv6 (nothing listens: the address is parsed, then refused)
    let port = closed_port();
    let o = run(&["handshake", t.to_str().unwrap(), &format!("[::1]:{port}")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    once(&stderr(&o), &format!("[::1]:{port}"));
    // without brackets an IPv6 address is a usage error, and so is a name that does not resolve
    for bad in [format!("::1:{port}"), "no-such-host.invalid:1".to_string()] {
        let o = run(&["handshake", t.to_str().unwrap(), &bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
    }
    let o = run(&[
        "download_piece",
        "-o",
        "/nonexistent/x",
        t.to_str().unwrap(),
        "0",
        "--peer",
        "localhost:notaport",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn errors_say_each_thing_once() {
    let t = sample_torrent();
    let t = t.to_str().unwrap();
    let port = closed_port();

    let o = run(&["handshake", t, &format!("127.0.0.1:{port}")]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    once(&e, "Connection refused");
    once(&e, &format!("127.0.0.1:{port}"));

    // the sample torrent's tracker is 127.0.0.1:6969; a refused announce names it once
    let dir = tempfile::tempdir().expect("tempdir");
    let torrent = std::fs::read(t).expect("the torrent");
    let url = b"30:http://127.0.0.1:6969/announce";
    let at = torrent
        .windows(url.len())
        .position(|w| w == url)
        .expect("the announce URL");
    let ours = format!("http://127.0.0.1:{port}/announce");
    let mut moved_bytes = torrent[..at].to_vec();
    moved_bytes.extend(format!("{}:{ours}", ours.len()).bytes());
    moved_bytes.extend(&torrent[at + url.len()..]);
    let moved = dir.path().join("closed.torrent");
    std::fs::write(&moved, &moved_bytes).expect("write");
    let o = run(&["peers", moved.to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    once(&e, &format!("127.0.0.1:{port}"));
    once(&e, "Connection refused");

    // a directory where a capture should be
    let o = run(&["analyze", dir.path().to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    once(&e, "is a directory");

    // a file where a directory should be: "not a directory", not "File exists"
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let f = file.to_str().unwrap();
    let peer = format!("127.0.0.1:{port}");
    for args in [
        vec!["peers", t, "--trace", f],
        vec![
            "download",
            "-o",
            &format!("{f}/out.bin"),
            t,
            "--peer",
            &peer,
            "-q",
        ],
        vec![
            "download_piece",
            "-o",
            &format!("{f}/sub/p"),
            t,
            "0",
            "--peer",
            &peer,
        ],
    ] {
        let o = run(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains("is not a directory"), "{args:?}: {e}");
        assert!(!e.contains("File exists"), "{args:?}: {e}");
        once(&e, f);
    }
}

#[test]
fn usage_errors_exit_2() {
    let t = sample_torrent();
    let t = t.to_str().unwrap();
    let cap = concat!(env!("CARGO_MANIFEST_DIR"), "/captures/lo_lossy.pcapng");
    for args in [
        vec![
            "download_piece",
            "-o",
            "/tmp/never",
            t,
            "16",
            "--peer",
            "127.0.0.1:1",
        ],
        vec!["ladder", cap, "--type", "bogus"],
        vec!["analyze", "--html", "/tmp/never.html", cap, cap],
        vec!["decode"],
        vec!["decode", "x", "--file", t],
        vec!["completions", "tcsh"],
        vec!["handshake", t, "127.0.0.1"],
        vec!["peers", t, "--max-peers", "3"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn completions_and_man_page() {
    let o = run(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bash = stdout(&o);
    for c in COMMANDS {
        assert!(bash.contains(c), "bash completion lacks {c}");
    }
    assert!(bash.contains("complete -F"), "not a bash completion script");
    for shell in ["zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert!(
            o.status.success() && stdout(&o).contains("magnet_download"),
            "{shell}"
        );
    }
    let o = run(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let man = stdout(&o);
    let th = man
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("a .TH line");
    assert!(th.starts_with(".TH bt-trace 1"), "{th}");
    assert!(
        man.contains(".SH NAME") && man.contains("magnet_download"),
        "{man}"
    );
}

#[test]
fn messages_fit_columns_and_abbreviate_hashes() {
    let cap = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/captures/any_sll2_transmission_to_libtorrent.pcapng"
    );
    let hash = "6aff54b59ee2c65daca4cf79e3e1858e68823213";
    let messages = |columns: &str, full: bool| {
        let mut c = Command::new(BIN);
        c.args(["analyze", "--messages", cap])
            .env("COLUMNS", columns);
        if full {
            c.arg("--full");
        }
        let o = c.output().expect("run bt-trace");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let short = messages("60", false);
    assert!(short.lines().count() > 10, "{short}");
    for line in short.lines() {
        assert!(line.chars().count() <= 60, "{line}");
    }
    let wide = messages("1000", false);
    assert!(!wide.contains(hash), "{wide}");
    assert!(wide.contains("info_hash 6aff54b5…"), "{wide}");
    let full = messages("60", true);
    assert!(full.contains(&format!("info_hash {hash}")), "{full}");
    assert!(full.lines().any(|l| l.chars().count() > 60));
    // the same lines, only shortened
    assert_eq!(wide.lines().count(), full.lines().count());
}
