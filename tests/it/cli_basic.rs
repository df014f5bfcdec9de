//! Runs the built `bt-trace` binary: `decode`, `encode`, `info` and `magnet_parse`, with the
//! CodeCrafters formats byte-exact, and every kind of bad input giving one `error:` line,
//! exit status 1 (2 for usage errors) and never a panic. Torrents are built here with
//! `bencode::Value`; one test also makes torrents with `mktorrent` and checks `info` against
//! `transmission-show` (skipped when those programs are not installed). The signal tests run
//! a traced `handshake` or `peers` against a listener of ours that never answers, signal it
//! and check the exit and the trace with `tshark` (skipped without it).

use crate::common::{skip_unless_installed, tshark_bittorrent_frames, Program};
use bt_trace::bencode::Value;
use sha1::{Digest, Sha1};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bt-trace");

fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run bt-trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "bt-trace panicked: {stderr}");
    out
}

/// Runs a command that must succeed and returns its stdout.
fn ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "expected success, got {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs a command that must fail at run time: exit 1, nothing on stdout, exactly one
/// `error: ...` line on stderr. Returns that line.
fn fails<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout should be empty on error");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn usage_error<S: AsRef<OsStr>>(args: &[S]) {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn sha1(b: &[u8]) -> [u8; 20] {
    Sha1::digest(b).into()
}

/// Deterministic pseudo-random bytes (xorshift), so info hashes are stable between runs.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn piece_hashes(content: &[u8], piece_length: usize) -> Vec<u8> {
    content.chunks(piece_length).flat_map(sha1).collect()
}

fn b(s: &str) -> Value {
    Value::bytes(s)
}

#[test]
fn decode_codecrafters_examples() {
    for (input, want) in [
        ("5:hello", "\"hello\"\n"),
        ("i52e", "52\n"),
        ("i-52e", "-52\n"),
        ("i4294967300e", "4294967300\n"),
        ("l5:helloi52ee", "[\"hello\",52]\n"),
        ("lli4eei5ee", "[[4],5]\n"),
        ("d3:foo3:bare", "{\"foo\":\"bar\"}\n"),
        (
            "d3:foo5:grape5:helloi52ee",
            "{\"foo\":\"grape\",\"hello\":52}\n",
        ),
        ("le", "[]\n"),
        ("de", "{}\n"),
    ] {
        assert_eq!(ok(&["decode", input]), want, "decode {input}");
    }
}

#[cfg(unix)]
#[test]
fn decode_binary_strings() {
    use std::os::unix::ffi::OsStrExt;
    let arg = OsStr::from_bytes(b"l3:\xff\x01ai1ee");
    assert_eq!(
        ok(&[OsStr::new("decode"), arg]),
        "[\"\u{fffd}\\u0001a\",1]\n"
    );
    assert_eq!(
        ok(&[OsStr::new("decode"), OsStr::new("--hex"), arg]),
        "[\"<hex:ff0161>\",1]\n"
    );
}

#[test]
fn decode_errors() {
    let e = fails(&["decode", "5:abc"]);
    assert_eq!(
        e,
        "error: decoding the argument: bencode: string at byte 0 claims 5 bytes but only 3 remain"
    );
    for bad in ["", "i-0e", "i1ei2e", "d1:ae", "x"] {
        fails(&["decode", bad]);
    }
    let deep = format!("{}{}", "l".repeat(50_000), "e".repeat(50_000));
    assert!(fails(&["decode", &deep]).contains("nesting deeper"));
}

#[test]
fn encode_round_trip_and_errors() {
    let out = run(&["encode", r#"{"foo":"bar","n":[1,-2,{"x":"y"}]}"#]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"d3:foo3:bar1:nli1ei-2ed1:x1:yeee");
    assert_eq!(run(&["encode", "-5"]).stdout, b"i-5e");
    let e = fails(&["encode", "{not json"]);
    assert!(e.starts_with("error: reading the JSON: "), "{e}");
    let e = fails(&["encode", "1.5"]);
    assert!(e.contains("64-bit integers"), "{e}");
    fails(&["encode", "[true]"]);
}

#[test]
fn info_single_file_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(100_000, 7);
    let info = Value::dict([
        ("length", Value::Int(content.len() as i64)),
        ("name", b("sample.bin")),
        ("piece length", Value::Int(32768)),
        ("pieces", Value::Bytes(piece_hashes(&content, 32768))),
    ]);
    let raw_info = info.encode();
    let t = Value::dict([
        ("announce", b("http://127.0.0.1:9/announce")),
        ("info", info),
    ]);
    let path = write(dir.path(), "s.torrent", &t.encode());

    let mut want = format!(
        "Tracker URL: http://127.0.0.1:9/announce\nLength: 100000\nInfo Hash: {}\n\
         Piece Length: 32768\nPiece Hashes:\n",
        hex::encode(sha1(&raw_info))
    );
    for c in content.chunks(32768) {
        want += &format!("{}\n", hex::encode(sha1(c)));
    }
    assert_eq!(ok(&[OsStr::new("info"), path.as_os_str()]), want);
    // Four pieces, the last one short.
    assert_eq!(want.lines().count(), 5 + 4);

    let j: serde_json::Value = serde_json::from_str(&ok(&[
        OsStr::new("info"),
        OsStr::new("--json"),
        path.as_os_str(),
    ]))
    .unwrap();
    assert_eq!(j["length"], 100_000);
    assert_eq!(j["num_pieces"], 4);
    assert_eq!(j["multi_file"], false);
    assert_eq!(j["info_hash"], hex::encode(sha1(&raw_info)));
    assert_eq!(j["files"][0]["path"], "sample.bin");
}

fn multi_file_torrent(paths: &[&[&str]], announce_list: bool) -> Vec<u8> {
    let files: Vec<Value> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Value::dict([
                ("length", Value::Int(10 + i as i64)),
                ("path", Value::List(p.iter().map(|c| b(c)).collect())),
            ])
        })
        .collect();
    let total: usize = (0..paths.len()).map(|i| 10 + i).sum();
    let info = Value::dict([
        ("files", Value::List(files)),
        ("name", b("album")),
        ("piece length", Value::Int(16)),
        ("pieces", Value::Bytes(vec![0xab; total.div_ceil(16) * 20])),
    ]);
    let mut top = vec![("announce", b("udp://127.0.0.1:1")), ("info", info)];
    if announce_list {
        top.push((
            "announce-list",
            Value::List(vec![
                Value::List(vec![b("udp://127.0.0.1:1"), b("http://127.0.0.1:2/a")]),
                Value::List(vec![b("http://127.0.0.1:3/a")]),
            ]),
        ));
    }
    Value::dict(top).encode()
}

#[test]
fn info_multi_file_lists_files_and_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "m.torrent",
        &multi_file_torrent(&[&["one.txt"], &["cd 2", "two.txt"]], true),
    );
    let out = ok(&[OsStr::new("info"), path.as_os_str()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Tracker URL: udp://127.0.0.1:1");
    assert_eq!(lines[1], "Length: 21");
    assert_eq!(lines[3], "Piece Length: 16");
    assert_eq!(lines[4], "Piece Hashes:");
    assert_eq!(lines[5], "ab".repeat(20));
    assert_eq!(
        &lines[7..],
        [
            "Files:",
            "  10  one.txt",
            "  11  cd 2/two.txt",
            "Announce List:",
            "  tier 1: udp://127.0.0.1:1, http://127.0.0.1:2/a",
            "  tier 2: http://127.0.0.1:3/a",
        ]
    );
}

#[test]
fn info_without_tracker_keeps_the_line_empty() {
    let dir = tempfile::tempdir().unwrap();
    let info = Value::dict([
        ("length", Value::Int(5)),
        ("name", b("x")),
        ("piece length", Value::Int(16)),
        ("pieces", Value::Bytes(vec![1; 20])),
    ]);
    let path = write(
        dir.path(),
        "t.torrent",
        &Value::dict([("info", info)]).encode(),
    );
    let out = run(&[OsStr::new("info"), path.as_os_str()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Tracker URL: \nLength: 5\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tracker"));
}

#[test]
fn info_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.torrent");
    let e = fails(&[OsStr::new("info"), missing.as_os_str()]);
    assert!(
        e.starts_with("error: reading ") && e.contains("No such file"),
        "{e}"
    );

    let garbage = write(
        dir.path(),
        "garbage.torrent",
        b"\x00\x01this is not bencode",
    );
    let e = fails(&[OsStr::new("info"), garbage.as_os_str()]);
    assert!(
        e.contains("is not a usable torrent: not a valid torrent: bencode"),
        "{e}"
    );

    let not_dict = write(dir.path(), "list.torrent", b"li1ee");
    assert!(
        fails(&[OsStr::new("info"), not_dict.as_os_str()]).contains("not a bencoded dictionary")
    );

    // unsafe paths are shown sanitized (as libtorrent does), one warning each on stderr
    let evil = write(
        dir.path(),
        "evil.torrent",
        &multi_file_torrent(&[&["ok"], &["..", "..", "etc", "passwd"]], false),
    );
    let out = run(&[OsStr::new("info"), evil.as_os_str()]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\n  11  etc/passwd\n"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "unsafe path \"../../etc/passwd\" in `info.files[1].path` (`.` and `..` components \
             are dropped): written as \"etc/passwd\""
        ),
        "{stderr}"
    );
    let abs = write(
        dir.path(),
        "abs.torrent",
        &multi_file_torrent(&[&["/etc/passwd"]], false),
    );
    let out = run(&[OsStr::new("info"), abs.as_os_str()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("  10  etcpasswd\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("are removed): written as \"etcpasswd\""));

    let mut deep = b"d8:announce1:u4:info".to_vec();
    deep.extend(vec![b'l'; 200_000]);
    deep.extend(vec![b'e'; 200_001]);
    let deep = write(dir.path(), "deep.torrent", &deep);
    assert!(fails(&[OsStr::new("info"), deep.as_os_str()]).contains("nesting deeper"));

    let cut = write(dir.path(), "cut.torrent", b"d8:announce13:http://x");
    assert_eq!(
        fails(&[OsStr::new("info"), cut.as_os_str()]),
        format!(
            "error: {} is not a usable torrent: not a valid torrent: \
             bencode: string at byte 11 claims 13 bytes but only 8 remain",
            cut.display()
        )
    );
    let full = multi_file_torrent(&[&["a"], &["b"]], true);
    for cut in [1, full.len() / 3, full.len() / 2, full.len() - 1] {
        let p = write(dir.path(), "cut.torrent", &full[..cut]);
        let e = fails(&[OsStr::new("info"), p.as_os_str()]);
        assert!(e.contains("unexpected end") || e.contains("remain"), "{e}");
    }

    let huge = Value::dict([(
        "info",
        Value::dict([
            ("length", Value::Int(i64::MAX)),
            ("name", b("x")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![0; 20])),
        ]),
    )]);
    let p = write(dir.path(), "huge.torrent", &huge.encode());
    assert!(fails(&[OsStr::new("info"), p.as_os_str()]).contains("piece hash(es)"));
}

#[test]
fn magnet_parse_codecrafters_example() {
    let link = "magnet:?xt=urn:btih:ad42ce8109f54c99613ce38f9b4d87e70f24a165&dn=magnet1.gif\
                &tr=http%3A%2F%2Fbittorrent-test-tracker.codecrafters.io%2Fannounce";
    assert_eq!(
        ok(&["magnet_parse", link]),
        "Tracker URL: http://bittorrent-test-tracker.codecrafters.io/announce\n\
         Info Hash: ad42ce8109f54c99613ce38f9b4d87e70f24a165\n"
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["magnet_parse", "--json", link])).unwrap();
    assert_eq!(j["display_name"], "magnet1.gif");
    assert_eq!(j["info_hash"], "ad42ce8109f54c99613ce38f9b4d87e70f24a165");

    let e = fails(&["magnet_parse", "magnet:?dn=x"]);
    assert_eq!(
        e,
        "error: parsing the magnet link: magnet link has no BitTorrent info hash (`xt=urn:btih:...`)"
    );
    fails(&["magnet_parse", "http://example.com"]);
    fails(&["magnet_parse", "magnet:?xt=urn:btih:1234"]);
}

#[test]
fn usage_errors_exit_2() {
    usage_error::<&str>(&[]);
    usage_error(&["bogus"]);
    usage_error(&["info"]);
    usage_error(&["decode"]);
    usage_error(&["info", "a", "b"]);
    usage_error(&["magnet_parse", "--nope", "x"]);
    let out = run(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("magnet_parse"));
}

#[test]
fn closed_stdout_is_not_an_error() {
    // ~800 KB of piece hashes: far more than a pipe buffer holds.
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000usize;
    let info = Value::dict([
        ("length", Value::Int(n as i64 * 16384)),
        ("name", b("big")),
        ("piece length", Value::Int(16384)),
        ("pieces", Value::Bytes(vec![7; n * 20])),
    ]);
    let path = write(
        dir.path(),
        "big.torrent",
        &Value::dict([("info", info)]).encode(),
    );
    let mut child = Command::new(BIN)
        .arg("info")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 12];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // dropped: pipe closed
    assert_eq!(&first, b"Tracker URL:");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error:"),
        "{stderr}"
    );
    assert!(out.status.success(), "{:?} {stderr}", out.status);
}

/// `transmission-show` output, parsed: (hash, piece count, tiers, file names).
fn transmission_show(torrent: &Path) -> (String, usize, Vec<Vec<String>>, Vec<String>) {
    let out = Command::new("transmission-show")
        .arg(torrent)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(str::to_string))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let hash = field("Hash: ");
    let pieces = field("Piece Count: ").parse().unwrap();
    let section = |title: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| *l != title)
            .skip(1)
            .take_while(|l| !l.chars().next().is_some_and(char::is_alphabetic))
            .map(str::trim)
            .map(str::to_string)
            .collect()
    };
    let mut tiers: Vec<Vec<String>> = Vec::new();
    for l in section("TRACKERS") {
        if l.starts_with("Tier #") {
            tiers.push(Vec::new());
        } else if !l.is_empty() {
            tiers.last_mut().unwrap().push(l);
        }
    }
    let files = section("FILES")
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit_once(" (").map(|(n, _)| n.to_string()).unwrap_or(l))
        .collect();
    (hash, pieces, tiers, files)
}

#[test]
fn info_agrees_with_mktorrent_and_transmission_show() {
    skip_unless_installed!(&[Program::Mktorrent, Program::TransmissionShow]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("payload");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let files: [(&str, Vec<u8>); 3] = [
        ("a.bin", data(300_001, 1)),
        ("sub/b.bin", data(70_000, 2)),
        ("z.txt", b"hello\n".to_vec()),
    ];
    for (name, content) in &files {
        std::fs::write(root.join(name), content).unwrap();
    }
    std::fs::write(dir.path().join("single.bin"), data(123_456, 3)).unwrap();

    for (target, multi) in [("payload", true), ("single.bin", false)] {
        let torrent = dir.path().join(format!("{target}.torrent"));
        let st = Command::new("mktorrent")
            .current_dir(dir.path())
            .args(["-l", "16", "-a", "http://127.0.0.1:6969/announce"])
            .args(["-a", "udp://127.0.0.1:6969", "-o"])
            .arg(&torrent)
            .arg(target)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "mktorrent failed");

        let (hash, pieces, tiers, tfiles) = transmission_show(&torrent);
        let j: serde_json::Value = serde_json::from_str(&ok(&[
            OsStr::new("info"),
            OsStr::new("--json"),
            torrent.as_os_str(),
        ]))
        .unwrap();
        assert_eq!(j["info_hash"], hash);
        assert_eq!(j["num_pieces"], pieces);
        assert_eq!(j["multi_file"], multi);
        assert_eq!(j["announce_list"], serde_json::json!(tiers));

        // Our file list, prefixed with the torrent name as transmission-show shows it.
        let ours: Vec<String> = j["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let p = f["path"].as_str().unwrap();
                if multi {
                    format!("{target}/{p}")
                } else {
                    p.to_string()
                }
            })
            .collect();
        let mut sorted = ours.clone();
        sorted.sort();
        let mut theirs = tfiles.clone();
        theirs.sort();
        assert_eq!(sorted, theirs);

        // The piece hashes are the SHA-1 of the files concatenated in the torrent's order.
        let mut content = Vec::new();
        for p in &ours {
            content.extend(std::fs::read(dir.path().join(p)).unwrap());
        }
        assert_eq!(j["length"], content.len());
        let want: Vec<String> = content
            .chunks(1 << 16)
            .map(|c| hex::encode(sha1(c)))
            .collect();
        assert_eq!(j["piece_hashes"], serde_json::json!(want));

        // And the plain output carries the same values in the CodeCrafters lines.
        let text = ok(&[OsStr::new("info"), torrent.as_os_str()]);
        assert!(text.starts_with(&format!(
            "Tracker URL: http://127.0.0.1:6969/announce\nLength: {}\nInfo Hash: {hash}\n\
             Piece Length: 65536\nPiece Hashes:\n",
            content.len()
        )));
    }
}

/// A one-piece torrent whose tracker is `tracker`.
fn small_torrent(dir: &Path, tracker: &str) -> PathBuf {
    let info = Value::dict([
        ("length", Value::Int(5)),
        ("name", b("signal.bin")),
        ("piece length", Value::Int(16384)),
        ("pieces", Value::Bytes(sha1(b"hello").to_vec())),
    ]);
    let t = Value::dict([("announce", b(tracker)), ("info", info)]);
    write(dir, "signal.torrent", &t.encode())
}

/// Accepts one connection on `listener` within 60 s and reads from it until `done` says the
/// client has sent all it will send before waiting for an answer (which never comes).
fn accept_and_read(
    listener: &std::net::TcpListener,
    done: impl Fn(&[u8]) -> bool,
) -> std::net::TcpStream {
    use std::time::{Duration, Instant};
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "bt-trace never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        let n = conn.read(&mut buf).expect("reading what bt-trace sends");
        assert!(n > 0, "bt-trace closed the connection early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    conn
}

/// Sends `sig` to `child` and waits (at most 60 s) for it to exit; returns its exit code and
/// stderr.
fn signal_and_wait(child: std::process::Child, sig: libc::c_int) -> (Option<i32>, String) {
    signal(&child, sig);
    wait_and_stderr(child)
}

/// Sends `sig` to `child` (started by us, not reaped yet).
fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: plain kill(2) on the child we started and have not reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Waits (at most 60 s) for `child` to exit; returns its exit code and stderr.
fn wait_and_stderr(mut child: std::process::Child) -> (Option<i32>, String) {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bt-trace did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

/// Ctrl-C, SIGTERM and SIGHUP all end a traced command the same way: exit status 130,
/// `error: interrupted` on stderr, and finished trace files (tshark reads the pcapng without
/// a complaint and finds the handshake we sent). The peer accepts and reads our handshake but
/// never answers, so the signal always lands while bt-trace waits.
#[test]
fn signals_end_a_traced_command_cleanly() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = tempfile::tempdir().unwrap();
    let torrent = small_torrent(dir.path(), "http://127.0.0.1:9/announce");
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    for (sig, name) in [
        (libc::SIGTERM, "term"),
        (libc::SIGINT, "int"),
        (libc::SIGHUP, "hup"),
    ] {
        let traces = dir.path().join(name);
        let child = Command::new(BIN)
            .arg("handshake")
            .arg(&torrent)
            .arg(format!("127.0.0.1:{port}"))
            .arg("--trace")
            .arg(&traces)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _conn = accept_and_read(&peer, |got| got.len() >= 68);
        let (code, stderr) = signal_and_wait(child, sig);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(code, Some(130), "signal {name}: {stderr}");
        assert_eq!(
            stderr.lines().last(),
            Some("error: interrupted"),
            "signal {name}: {stderr}"
        );
        assert!(stderr.contains("trace: "), "signal {name}: {stderr}");
        let pcapng = traces.join("handshake-signal.bin.pcapng");
        let frames = tshark_bittorrent_frames(&pcapng, port);
        assert!(!frames.is_empty(), "signal {name}: no BitTorrent frame");
        let jsonl = std::fs::read_to_string(traces.join("handshake-signal.bin.jsonl")).unwrap();
        assert!(
            jsonl.lines().count() >= 2 && jsonl.ends_with('\n'),
            "signal {name}: {jsonl}"
        );
    }
}

/// The same for `peers` against an HTTP tracker that reads the announce and never answers.
#[test]
fn sigterm_ends_peers_waiting_for_a_tracker() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = tempfile::tempdir().unwrap();
    let tracker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tracker.local_addr().unwrap().port();
    let torrent = small_torrent(dir.path(), &format!("http://127.0.0.1:{port}/announce"));
    let traces = dir.path().join("traces");
    let child = Command::new(BIN)
        .arg("peers")
        .arg(&torrent)
        .arg("--trace")
        .arg(&traces)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _conn = accept_and_read(&tracker, |got| got.windows(4).any(|w| w == b"\r\n\r\n"));
    let (code, stderr) = signal_and_wait(child, libc::SIGTERM);
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some("error: interrupted"),
        "{stderr}"
    );
    // a tracker exchange that never completed leaves no frames, but a valid capture
    tshark_bittorrent_frames(&traces.join("peers-signal.bin.pcapng"), port);
}

/// `analyze -` on an input that stays open: after Ctrl-C it waits for the packet being read,
/// but not for ever. A producer that ignores the signal (here: our open pipe) gets analyze to
/// exit 130 a second later, saying why; and analyze of a capture that arrives and then ends
/// (the normal live case, dumpcap closing the pipe on the same Ctrl-C) reports what it read.
#[test]
fn ctrl_c_ends_analyze_of_an_input_that_never_ends() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/lo_middownload.pcapng");
    let data = std::fs::read(&capture).unwrap();
    for close_input in [false, true] {
        let mut child = Command::new(BIN)
            .args(["analyze", "-"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&data).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        signal(&child, libc::SIGINT);
        // the pipe closed on the same Ctrl-C, or held open until analyze has gone
        let held = if close_input {
            drop(stdin);
            None
        } else {
            Some(stdin)
        };
        let (code, stderr) = wait_and_stderr(child);
        drop(held);
        let took = t0.elapsed();
        assert_eq!(code, Some(130), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        if close_input {
            assert!(
                stderr.contains("interrupted: the report covers what was read"),
                "{stderr}"
            );
        } else {
            assert!(
                stderr.contains("the input did not end within a second of the signal"),
                "{stderr}"
            );
            assert!(took < Duration::from_secs(10), "took {took:?}");
        }
    }
}
