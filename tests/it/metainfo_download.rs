//! A download of a torrent with BEP 47 padding, an executable, symlinks and an unsafe path,
//! from a bt-trace seeder (hermetic, 127.0.0.1): the sanitized layout is written, no padding
//! file, nothing outside `-o`, and only the symlink whose target stays inside is created.

use crate::common::{bt_trace, bt_trace_spawn, free_port, temp_dir};
use bt_trace::bencode::Value;
use sha1::{Digest, Sha1};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn b(s: &str) -> Value {
    Value::bytes(s)
}

fn path(p: &[&str]) -> Value {
    Value::List(p.iter().map(|c| b(c)).collect())
}

/// Every path under `dir`, relative, sorted (symlinks not followed).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            out.push(
                p.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            );
            if e.file_type().expect("file type").is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn download_writes_the_sanitized_layout_without_padding_and_nothing_outside() {
    let dir = temp_dir("metainfo-download");
    let ok: Vec<u8> = (0..20u8).collect();
    let evil: Vec<u8> = (100..110u8).collect();
    let mut space = ok.clone();
    space.extend([0u8; 12]); // the padding file
    space.extend(&evil);
    let pieces: Vec<u8> = space
        .chunks(16)
        .flat_map(|c| Sha1::digest(c).to_vec())
        .collect();
    let files = vec![
        Value::dict([("length", Value::Int(20)), ("path", path(&["ok.bin"]))]),
        Value::dict([("attr", b("p")), ("length", Value::Int(12))]),
        Value::dict([
            ("attr", b("x")),
            ("length", Value::Int(10)),
            ("path", path(&["..", "..", "evil.bin"])),
        ]),
        Value::dict([
            ("attr", b("l")),
            ("path", path(&["sub", "link"])),
            ("symlink path", path(&["ok.bin"])),
        ]),
        Value::dict([
            ("attr", b("l")),
            ("path", path(&["out"])),
            ("symlink path", path(&["..", "..", "etc"])),
        ]),
    ];
    let info = Value::dict([
        ("name", b("t")),
        ("files", Value::List(files)),
        ("piece length", Value::Int(16)),
        ("pieces", Value::Bytes(pieces)),
    ]);
    let torrent = dir.path().join("t.torrent");
    std::fs::write(&torrent, Value::dict([("info", info)]).encode()).expect("write torrent");

    let seed = dir.path().join("seed");
    std::fs::create_dir_all(&seed).expect("mkdir");
    std::fs::write(seed.join("ok.bin"), &ok).expect("write");
    std::fs::write(seed.join("evil.bin"), &evil).expect("write");
    let port = free_port();
    let seeder = bt_trace_spawn(
        [
            "seed".as_ref(),
            torrent.as_os_str(),
            "--data".as_ref(),
            seed.as_os_str(),
            "--port".as_ref(),
            port.to_string().as_ref(),
            "-q".as_ref(),
        ],
        &dir.path().join("seed.log"),
    );
    seeder.wait_port(port);

    // -o is two levels down, so that `../../evil.bin` would land inside `dir` if it escaped
    let out = dir.path().join("a/b/out");
    let r = bt_trace(
        [
            "download".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            torrent.as_os_str(),
            "--peer".as_ref(),
            format!("127.0.0.1:{port}").as_ref(),
        ],
        Duration::from_secs(120),
    );
    r.assert_ok();
    assert!(
        r.stderr.contains("written as \"evil.bin\"") && r.stderr.contains("outside the torrent"),
        "{}",
        r.describe()
    );
    assert_eq!(tree(&out), ["evil.bin", "ok.bin", "sub", "sub/link"]);
    assert_eq!(std::fs::read(out.join("ok.bin")).expect("ok.bin"), ok);
    assert_eq!(std::fs::read(out.join("evil.bin")).expect("evil.bin"), evil);
    let mode = std::fs::metadata(out.join("evil.bin"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o100, 0o100, "x attribute: mode {mode:o}");
    assert_eq!(
        std::fs::read_link(out.join("sub/link")).expect("symlink"),
        Path::new("../ok.bin")
    );
    assert_eq!(
        std::fs::read(out.join("sub/link")).expect("through the link"),
        ok
    );
    // nothing was written beside -o or above it
    assert_eq!(
        tree(&dir.path().join("a")),
        [
            "b",
            "b/out",
            "b/out/evil.bin",
            "b/out/ok.bin",
            "b/out/sub",
            "b/out/sub/link"
        ]
    );
    assert!(!dir.path().join("evil.bin").exists());
    seeder.kill();
}
