//! `info` against python3-libtorrent 2.0.8 on edge-case torrents (issue 14): unsafe paths,
//! duplicates, BEP 47 padding files and symlinks, trailing bytes; and BitTorrent v2 (BEP 52)
//! v2-only and hybrid torrents made by libtorrent, inconsistent hybrids and broken v2 fields.
//! For each, both must agree on the info hash(es), the total length and the piece count, or
//! both must refuse.

use crate::common::{bt_trace, skip_unless_installed, temp_dir, Program, PYTHON};
use bt_trace::bencode::Value;
use std::path::Path;
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

/// libtorrent's verdict on the torrent at `p` (`oracle`: a python script printing a line, or
/// `ERR …`) and `bt-trace info --json` on it. `None` when libtorrent refuses it, after checking
/// that bt-trace refuses it too with a clean error.
fn oracle_and_ours(oracle: &str, p: &Path) -> Option<(String, serde_json::Value)> {
    let lt = Command::new(PYTHON)
        .args(["-c", oracle])
        .arg(p)
        .output()
        .expect("run python3");
    let lt = String::from_utf8_lossy(&lt.stdout).trim().to_string();
    let ours = bt_trace(
        ["info".as_ref(), "--json".as_ref(), p.as_os_str()],
        Duration::from_secs(30),
    );
    if lt.starts_with("ERR") {
        ours.assert_clean_failure();
        return None;
    }
    ours.assert_ok();
    let j = serde_json::from_str(&ours.stdout).expect("info --json");
    Some((lt, j))
}

#[test]
fn info_agrees_with_libtorrent_on_edge_case_torrents() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let dir = temp_dir("metainfo-oracle");
    let mut refused_by_both = 0;
    for (name, bytes) in cases() {
        let p = dir.path().join(format!("{name}.torrent"));
        std::fs::write(&p, &bytes).expect("write torrent");
        let Some((lt, j)) = oracle_and_ours(ORACLE, &p) else {
            refused_by_both += 1;
            continue;
        };
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

/// Writes v2-only and hybrid torrents made by libtorrent (`create_torrent` with `v2_only`, or
/// the default hybrid, hashed by `set_piece_hashes`) into `argv[1]`, and copies edited by hand:
/// hybrids whose v1 and v2 file lists disagree, broken v2 fields.
const MAKE_V2: &str = r#"
import os, sys, libtorrent as lt
out = sys.argv[1]
def content(name, files):
    root = os.path.join(out, "data", name)
    for rel, size in files:
        p = os.path.join(root, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f: f.write(bytes((i * 7 + len(rel)) % 251 for i in range(size)))
    return root
def make(name, root, flags, pl=16384):
    fs = lt.file_storage(); lt.add_files(fs, root)
    ct = lt.create_torrent(fs, pl, flags=flags)
    ct.add_tracker("http://127.0.0.1:1/announce")
    lt.set_piece_hashes(ct, os.path.dirname(root))
    return ct.generate()
def write(name, d):
    with open(os.path.join(out, name + ".torrent"), "wb") as f: f.write(lt.bencode(d))
sets = {
    "single": [("f.bin", 100000)],
    "small": [("tiny.txt", 1)],
    "exact": [("x", 32768)],
    "multi": [("a.bin", 40000), ("sub/b.bin", 5), ("sub/c.bin", 16384), ("z", 70000)],
    "empty_file": [("a", 20000), ("e/empty", 0), ("b", 3)],
}
V2 = lt.create_torrent.v2_only
for name, files in sets.items():
    root = content(name, files)
    write(name + "_v2", make(name, root, V2))
    write(name + "_hybrid", make(name, root, 0))
write("multi_v2_pl64k", make("multi", os.path.join(out, "data", "multi"), V2, 65536))
# edited: inconsistent hybrids and broken v2 fields
base = make("multi", os.path.join(out, "data", "multi"), 0)
import copy
def edit(name, f):
    d = copy.deepcopy(base); f(d); write(name, d)
def v1files(d): return [x for x in d[b"info"][b"files"] if b"p" not in x.get(b"attr", b"")]
edit("bad_hybrid_length", lambda d: v1files(d)[1].__setitem__(b"length", 6))
edit("bad_hybrid_name", lambda d: v1files(d)[0].__setitem__(b"path", [b"other.bin"]))
def swap(d):
    ft = d[b"info"][b"file tree"]; ft[b"a.bin"], ft[b"z"] = ft[b"z"], ft[b"a.bin"]
edit("bad_hybrid_order", swap)
def drop_file(d):
    del d[b"info"][b"file tree"][b"z"]
edit("bad_hybrid_missing", drop_file)
def nopads(d):
    d[b"info"][b"files"] = v1files(d)
edit("hybrid_without_pads", nopads)
vbase = make("multi", os.path.join(out, "data", "multi"), V2)
def vedit(name, f):
    d = copy.deepcopy(vbase); f(d); write(name, d)
vedit("v2_short_layer", lambda d: [d[b"piece layers"].__setitem__(k, v[:-32]) for k, v in list(d[b"piece layers"].items())])
vedit("v2_no_layers", lambda d: d.pop(b"piece layers"))
vedit("v2_bad_piece_length", lambda d: d[b"info"].__setitem__(b"piece length", 16384 * 3))
vedit("v2_small_piece_length", lambda d: d[b"info"].__setitem__(b"piece length", 8192))
vedit("v2_short_root", lambda d: d[b"info"][b"file tree"][b"z"][b""].__setitem__(b"pieces root", b"x" * 31))
vedit("v2_no_length", lambda d: d[b"info"][b"file tree"][b"z"][b""].pop(b"length"))
vedit("v2_meta_version_3", lambda d: d[b"info"].__setitem__(b"meta version", 3))
vedit("v2_no_meta_version", lambda d: d[b"info"].pop(b"meta version"))
vedit("v2_empty_tree", lambda d: d[b"info"].__setitem__(b"file tree", {}))
vedit("v2_dotdot", lambda d: d[b"info"][b"file tree"].__setitem__(b"..", {b"evil": d[b"info"][b"file tree"].pop(b"z")}))
"#;

/// libtorrent's view of a v2 or hybrid torrent: `<v1 hash or -> <v2 hash or -> <total>
/// <pieces>`, or `ERR <message>`.
const ORACLE_V2: &str = r#"
import sys, libtorrent as lt
try:
    ti = lt.torrent_info(sys.argv[1])
    h = ti.info_hashes()
    v1 = str(h.v1) if h.has_v1() else "-"
    v2 = str(h.v2) if h.has_v2() else "-"
    print(v1, v2, ti.total_size(), ti.num_pieces())
except Exception as e:
    print("ERR", e)
"#;

#[test]
fn info_agrees_with_libtorrent_on_v2_and_hybrid_torrents() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let dir = temp_dir("metainfo-oracle-v2");
    let made = Command::new(PYTHON)
        .args(["-c", MAKE_V2])
        .arg(dir.path())
        .output()
        .expect("run python3");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "torrent"))
        .collect();
    names.sort();
    let (mut agreed, mut refused_by_both, mut v2_only) = (0, 0, 0);
    for p in &names {
        let name = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let Some((lt, j)) = oracle_and_ours(ORACLE_V2, p) else {
            refused_by_both += 1;
            continue;
        };
        let hash = |k: &str| j[k].as_str().unwrap_or("-").to_string();
        let mine = format!(
            "{} {} {} {}",
            hash("info_hash_v1"),
            hash("info_hash_v2"),
            j["length"],
            j["num_pieces"]
        );
        assert_eq!(mine, lt, "{name}: bt-trace vs libtorrent");
        // the hash on the wire: v1 SHA-1 for a hybrid, the truncated SHA-256 for v2-only
        let wire = if j["info_hash_v1"].is_null() {
            v2_only += 1;
            hash("info_hash_v2")[..40].to_string()
        } else {
            hash("info_hash_v1")
        };
        assert_eq!(hash("info_hash"), wire, "{name}");
        assert_eq!(j["meta_version"], 2, "{name}");
        agreed += 1;
    }
    // 5 content sets as v2-only and hybrid, one more v2-only piece size, a `..` directory and
    // missing piece layers (shown with a warning)
    assert_eq!((agreed, v2_only), (13, 8));
    // 5 inconsistent hybrids (one without its v1 padding files), 8 broken v2 fields
    assert_eq!(refused_by_both, 13);
}
