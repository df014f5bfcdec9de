//! `info` against python3-libtorrent 2.0.8 on edge-case torrents (issue 14): unsafe paths,
//! duplicates, BEP 47 padding files and symlinks, trailing bytes. For each, both must agree on
//! the info hash, the total length and the piece count, or both must refuse.

use crate::common::{bt_trace, skip_unless_installed, temp_dir, Program, PYTHON};
use bt_trace::bencode::Value;
use std::process::Command;
use std::time::Duration;

fn b(s: &str) -> Value {
    Value::bytes(s)
}

fn path(p: &[&str]) -> Value {
    Value::List(p.iter().map(|c| b(c)).collect())
}

fn file(p: &[&str], len: i64) -> Value {
    Value::dict([("length", Value::Int(len)), ("path", path(p))])
}

/// A torrent of `files` whose `pieces` fits `counted` bytes (what both sides should count).
fn torrent(files: Vec<Value>, counted: u64, trailing: &[u8]) -> Vec<u8> {
    let info = Value::dict([
        ("name", b("d")),
        ("files", Value::List(files)),
        ("piece length", Value::Int(16)),
        (
            "pieces",
            Value::Bytes(vec![7; counted.div_ceil(16).max(1) as usize * 20]),
        ),
    ]);
    let mut t = Value::dict([("announce", b("http://127.0.0.1:1/a")), ("info", info)]).encode();
    t.extend_from_slice(trailing);
    t
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let pad = |len| Value::dict([("attr", b("p")), ("length", Value::Int(len))]);
    let link = |p: &[&str], to: &[&str], len: Option<i64>| {
        let mut d = vec![
            ("attr", b("l")),
            ("path", path(p)),
            ("symlink path", path(to)),
        ];
        if let Some(l) = len {
            d.push(("length", Value::Int(l)));
        }
        Value::dict(d)
    };
    vec![
        (
            "dotdot",
            torrent(
                vec![file(&["ok"], 5), file(&["..", "..", "etc", "passwd"], 5)],
                10,
                b"",
            ),
        ),
        ("absolute", torrent(vec![file(&["/etc/passwd"], 5)], 5, b"")),
        (
            "separators",
            torrent(vec![file(&["a/b", "c\\d"], 5)], 5, b""),
        ),
        (
            "empty_component",
            torrent(vec![file(&["a", "", "b"], 5)], 5, b""),
        ),
        ("dot", torrent(vec![file(&["a", ".", "b"], 5)], 5, b"")),
        ("nothing_left", torrent(vec![file(&["..", "."], 5)], 5, b"")),
        ("no_components", torrent(vec![file(&[], 5)], 5, b"")),
        (
            "duplicates",
            torrent(
                vec![
                    file(&["a.txt"], 5),
                    file(&["a.txt"], 5),
                    file(&["a.txt"], 5),
                ],
                15,
                b"",
            ),
        ),
        (
            "file_and_dir",
            torrent(vec![file(&["a"], 5), file(&["a", "b"], 5)], 10, b""),
        ),
        (
            "trailing",
            torrent(vec![file(&["a"], 5)], 5, b"\ntrailing garbage"),
        ),
        (
            "pad_without_path",
            torrent(vec![file(&["a"], 3), pad(13), file(&["b"], 5)], 21, b""),
        ),
        (
            "symlinks",
            torrent(
                vec![
                    file(&["a"], 20),
                    link(&["s"], &["a"], None),
                    link(&["sized"], &["a"], Some(425)),
                    link(&["out"], &["..", "..", "etc"], None),
                    file(&["b"], 5),
                ],
                25,
                b"",
            ),
        ),
        (
            "symlink_counted_by_mistake",
            torrent(
                vec![file(&["a"], 20), link(&["s"], &["a"], Some(20))],
                40,
                b"",
            ),
        ),
        (
            "wrong_type",
            torrent(
                vec![Value::dict([
                    ("length", Value::Int(5)),
                    ("path", Value::List(vec![Value::Int(3)])),
                ])],
                5,
                b"",
            ),
        ),
        ("negative_length", torrent(vec![file(&["a"], -5)], 5, b"")),
        (
            "missing_length",
            torrent(vec![Value::dict([("path", path(&["a"]))])], 5, b""),
        ),
    ]
}

/// libtorrent's view: `<hash> <total> <pieces>`, or `ERR <message>`.
const ORACLE: &str = r#"
import sys, libtorrent as lt
try:
    ti = lt.torrent_info(sys.argv[1])
    print(ti.info_hash(), ti.total_size(), ti.num_pieces())
except Exception as e:
    print("ERR", e)
"#;

#[test]
fn info_agrees_with_libtorrent_on_edge_case_torrents() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let dir = temp_dir("metainfo-oracle");
    let mut refused_by_both = 0;
    for (name, bytes) in cases() {
        let p = dir.path().join(format!("{name}.torrent"));
        std::fs::write(&p, &bytes).expect("write torrent");
        let lt = Command::new(PYTHON)
            .args(["-c", ORACLE])
            .arg(&p)
            .output()
            .expect("run python3");
        let lt = String::from_utf8_lossy(&lt.stdout).trim().to_string();
        let ours = bt_trace(
            ["info".as_ref(), "--json".as_ref(), p.as_os_str()],
            Duration::from_secs(30),
        );
        if lt.starts_with("ERR") {
            ours.assert_clean_failure();
            refused_by_both += 1;
            continue;
        }
        ours.assert_ok();
        let j: serde_json::Value = serde_json::from_str(&ours.stdout).expect("info --json");
        let mine = format!(
            "{} {} {}",
            j["info_hash"].as_str().unwrap_or(""),
            j["length"],
            j["num_pieces"]
        );
        assert_eq!(mine, lt, "{name}: bt-trace vs libtorrent");
    }
    // no components, a symlink's length counted in `pieces`, a wrong type, a negative and a
    // missing length
    assert_eq!(refused_by_both, 5);
}
