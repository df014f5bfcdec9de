//! BEP 52 against python3-libtorrent 2.0.8 seeders (127.0.0.1 only): a `urn:btmh:` magnet link
//! of a v2-only torrent fetches and checks its metadata (handshake with the truncated v2 hash),
//! then `magnet_download` fetches the piece layers with hash requests and downloads it, byte
//! for byte (`download` of the `.torrent`: v2_download.rs); a hybrid torrent downloads through
//! its v1 fields from a libtorrent hybrid seeder, byte for byte, and libtorrent's own hybrid
//! magnet link (both `xt`) fetches metadata that must match both hashes.

use crate::common::{
    bt_trace, free_port, info_json, skip_unless_installed, temp_dir, ChildGuard, Program, PYTHON,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Makes `d/` (four files, one empty), `<kind>.torrent` (v2-only when argv[3] is `v2`, else
/// hybrid) and its magnet link as libtorrent writes it (`<kind>.magnet`), and seeds it on
/// 127.0.0.1:argv[2] until stdin closes.
const SEEDER: &str = r#"
import libtorrent as lt, os, sys, time
root, port, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = os.path.join(root, "data")
for rel, size in [("a.bin", 300000), ("sub/b", 5), ("c", 16384), ("sub/empty", 0)]:
    p = os.path.join(data, "d", rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").write(bytes((i * 13 + len(rel)) % 251 for i in range(size)))
fs = lt.file_storage(); lt.add_files(fs, os.path.join(data, "d"))
ct = lt.create_torrent(fs, 16384, flags=lt.create_torrent.v2_only if kind == "v2" else 0)
lt.set_piece_hashes(ct, data)
path = os.path.join(root, kind + ".torrent")
open(path, "wb").write(lt.bencode(ct.generate()))
open(os.path.join(root, kind + ".magnet"), "w").write(lt.make_magnet_uri(lt.torrent_info(path)))
ses = lt.session({"listen_interfaces": "127.0.0.1:%d" % port, "enable_dht": False,
                  "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False})
h = ses.add_torrent({"ti": lt.torrent_info(path), "save_path": data})
while not h.status().is_seeding:  # checked its files: it now answers for this torrent
    time.sleep(0.05)
print("ready", flush=True)
sys.stdin.read()
"#;

/// Starts a libtorrent seeder of `kind` in `dir`; returns it (and its stdin, its lifeline).
fn seeder(dir: &Path, kind: &str, port: u16) -> (ChildGuard, std::process::ChildStdin) {
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-c", SEEDER])
        .arg(dir)
        .arg(port.to_string())
        .arg(kind);
    let (g, stdin) = ChildGuard::spawn_with_stdin(kind, cmd, &dir.join(format!("{kind}.log")));
    g.wait_log("ready");
    g.wait_port(port);
    (g, stdin)
}

#[test]
fn v2_magnet_fetches_metadata_then_piece_layers_and_downloads() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let dir = temp_dir("magnet-v2");
    let port = free_port();
    let (_seeder, _lifeline) = seeder(dir.path(), "v2", port);
    let torrent = dir.path().join("v2.torrent");
    let j = info_json(&torrent);
    let v2 = j["info_hash_v2"].as_str().expect("a v2 hash").to_string();
    let link = format!("magnet:?xt=urn:btmh:1220{v2}&x.pe=127.0.0.1:{port}");

    let info = bt_trace(["magnet_info", link.as_str()], Duration::from_secs(60));
    info.assert_ok();
    assert!(
        info.stdout.contains(&format!("Info Hash: {v2}\n")),
        "{}",
        info.stdout
    );
    assert!(
        info.stdout.contains("Meta Version: 2 (v2 only)\n"),
        "{}",
        info.stdout
    );
    assert!(info.stdout.contains("  300000  a.bin  "), "{}", info.stdout);

    let out = dir.path().join("out");
    bt_trace(
        [
            "magnet_download".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            link.as_ref(),
        ],
        Duration::from_secs(60),
    )
    .assert_ok();
    assert_same(dir.path(), &out);
}

/// The download at `out` holds the seeder's files, byte for byte, and no padding file.
fn assert_same(dir: &Path, out: &Path) {
    let src = dir.join("data").join("d");
    for f in ["a.bin", "sub/b", "c", "sub/empty"] {
        let want = std::fs::read(src.join(f)).expect("source file");
        let got = std::fs::read(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(got == want, "{f} differs from the seeder's");
    }
    assert!(
        !out.join(".pad").exists(),
        "padding files are never written"
    );
}

#[test]
fn hybrid_downloads_through_v1_from_a_libtorrent_hybrid_seeder() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let dir = temp_dir("magnet-hybrid");
    let port = free_port();
    let (_seeder, _lifeline) = seeder(dir.path(), "hybrid", port);
    let torrent = dir.path().join("hybrid.torrent");
    let j = info_json(&torrent);
    assert_eq!(j["meta_version"], 2);
    assert_eq!(j["info_hash"], j["info_hash_v1"]);
    let out = dir.path().join("out");
    let peer = format!("127.0.0.1:{port}");
    bt_trace(
        [
            "download".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            torrent.as_os_str(),
            "--peer".as_ref(),
            peer.as_ref(),
        ],
        Duration::from_secs(90),
    )
    .assert_ok();
    assert_same(dir.path(), &out);
}

#[test]
fn hybrid_magnet_metadata_must_match_both_hashes() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let dir = temp_dir("magnet-hybrid-both");
    let port = free_port();
    let (_seeder, _lifeline) = seeder(dir.path(), "hybrid", port);
    let j = info_json(&dir.path().join("hybrid.torrent"));
    let (v1, v2) = (
        j["info_hash_v1"].as_str().expect("a v1 hash"),
        j["info_hash_v2"].as_str().expect("a v2 hash"),
    );
    // libtorrent's link names both hashes, the ones `info` computes
    let lt_link = std::fs::read_to_string(dir.path().join("hybrid.magnet")).expect("magnet");
    assert!(
        lt_link.contains(&format!("xt=urn:btih:{v1}"))
            && lt_link.contains(&format!("xt=urn:btmh:1220{v2}")),
        "{lt_link}"
    );
    let with_peer = |link: &str| format!("{link}&x.pe=127.0.0.1:{port}");
    let fetch = |link: &str| bt_trace(["magnet_info", link], Duration::from_secs(60));

    let ok = fetch(&with_peer(lt_link.trim()));
    ok.assert_ok();
    for line in [
        format!("Info Hash: {v1}\n"),
        format!("Info Hash v2: {v2}\n"),
        "Meta Version: 2 (hybrid, v1 and v2)\n".to_string(),
    ] {
        assert!(ok.stdout.contains(&line), "{line:?} in\n{}", ok.stdout);
    }

    // the right btih (the handshake works, libtorrent sends the metadata) with another btmh:
    // its SHA-256 does not match, so it is refused as a bad v1 metadata would be
    let mut other = v2.to_string();
    other.replace_range(63.., if v2.ends_with('0') { "1" } else { "0" });
    let bad_v2 = fetch(&with_peer(&format!(
        "magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{other}"
    )));
    bad_v2.assert_clean_failure();
    assert!(
        bad_v2.stderr.contains(&format!(
            "the metadata is not the torrent we asked for: info dictionary's SHA-256 is {v2}, \
             expected {other}"
        )),
        "{}",
        bad_v2.stderr
    );
    assert!(bad_v2.stdout.is_empty(), "{}", bad_v2.stdout);
}
