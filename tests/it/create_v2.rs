//! `bt-trace create --v2`, `--hybrid` and `--pad` against python3-libtorrent 2.0.8: libtorrent
//! loads what we make with the info hashes `create` printed, its own `create_torrent` on the same
//! files (same piece length, flags that match) gives the same `pieces root`s and info hashes, it
//! checks our torrent against the data and ends up seeding (so our piece layers, roots and v1
//! pieces verify), `info` and `info --json` show libtorrent's hashes and piece count for each
//! (v2-only included), `--pad=MIN` pads only the larger files and libtorrent checks that too,
//! and a padded torrent seeded by libtorrent downloads without pad files.

use crate::common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Loads OURS, makes libtorrent's own torrent of CONTENT with FLAGS and PIECE_LENGTH, checks OURS
/// against the data below PARENT; prints one JSON object.
const ORACLE: &str = r#"
import json, os, sys, time
import libtorrent as lt

ours, content, flags, piece_length, parent = sys.argv[1:6]

def describe(ti):
    h = ti.info_hashes()
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        pad = bool(fs.file_flags(i) & lt.file_storage.flag_pad_file)
        root = fs.root(i).to_bytes().hex() if h.has_v2() and not pad else None
        files.append({"path": fs.file_path(i), "size": fs.file_size(i), "pad": pad,
                      "root": None if root == "00" * 32 else root})
    return {"v1": h.v1.to_bytes().hex() if h.has_v1() else None,
            "v2": h.v2.to_bytes().hex() if h.has_v2() else None,
            "pieces": ti.num_pieces(), "files": files}

ti = lt.torrent_info(ours)
mine = describe(ti)

fs = lt.file_storage()
lt.add_files(fs, content)
ct = lt.create_torrent(fs, int(piece_length), flags=int(flags))
lt.set_piece_hashes(ct, os.path.dirname(content))
theirs = describe(lt.torrent_info(ct.generate()))

ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                  "enable_upnp": False, "enable_natpmp": False, "alert_mask": 0})
atp = lt.add_torrent_params()
atp.ti = ti
atp.save_path = parent
handle = ses.add_torrent(atp)
deadline = time.time() + 30
while time.time() < deadline and handle.status().state != lt.torrent_status.seeding:
    time.sleep(0.1)
st = handle.status()
print(json.dumps({"ours": mine, "theirs": theirs, "state": str(st.state),
                  "have": st.num_pieces}))
"#;

/// libtorrent's `create_torrent` flags.
const LT_V2_ONLY: u32 = 1 << 5;
const LT_V1_ONLY: u32 = 1 << 6;
const LT_CANONICAL_NO_TAIL: u32 = 1 << 9;

/// Runs `bt-trace create` and returns the hashes it printed: (`Info Hash`, `Info Hash v2`).
fn create(content: &Path, out: &Path, extra: &[&str]) -> (Option<String>, Option<String>) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["create".as_ref(), content.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend([
        "--no-date".as_ref(),
        "-q".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let run = bt_trace(&args, TIMEOUT);
    run.assert_ok();
    let field = |name: &str| {
        run.stdout_lines()
            .iter()
            .find_map(|l| l.strip_prefix(name))
            .map(str::to_string)
    };
    (field("Info Hash: "), field("Info Hash v2: "))
}

/// Runs [`ORACLE`].
fn oracle(torrent: &Path, content: &Path, flags: u32, piece_length: u64) -> serde_json::Value {
    let parent = content.parent().expect("content has a parent");
    let out = run_ok(
        Command::new(PYTHON)
            .arg("-c")
            .arg(ORACLE)
            .arg(torrent)
            .arg(content)
            .arg(flags.to_string())
            .arg(piece_length.to_string())
            .arg(parent),
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("oracle output {out:?}: {e}"))
}

/// The (path, size, pad, root) of every file libtorrent lists.
fn files(d: &serde_json::Value) -> Vec<(String, u64, bool, Option<String>)> {
    d["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().expect("path").to_string(),
                f["size"].as_u64().expect("size"),
                f["pad"].as_bool().expect("pad"),
                f["root"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn v2_hybrid_and_padded_torrents_match_libtorrent() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let src = temp_dir("create-v2");
    let tree = src.path().join("tree");
    // odd sizes, a file of exactly one piece, nested directories, an empty file; `a.b` sorts
    // after `a/…` in the v2 tree but before it in mktorrent's order
    make_tree(
        &tree,
        &[
            ("a/x.bin", 40_000),
            ("a.b", 3),
            ("a/y/deep.bin", 65_536),
            ("z.bin", 1_000_001),
            ("B/upper", 200_000),
        ],
        7,
    );
    make_data(&tree.join("empty"), 0, 0);
    // a tree whose order is the same in every convention, for --pad against libtorrent's own
    let flat = src.path().join("flat");
    make_tree(&flat, &[("1.bin", 20_000), ("3.bin", 150_000)], 8);
    make_data(&flat.join("2.bin"), 0, 0);
    let single = src.path().join("single.bin");
    make_data(&single, 3_000_077, 9);

    let piece = 65_536u64;
    let cases: [(&Path, &str, u32); 7] = [
        (&tree, "--v2", LT_V2_ONLY),
        (&tree, "--hybrid", 0),
        (&single, "--v2", LT_V2_ONLY),
        (&single, "--hybrid", 0),
        (&flat, "--pad", LT_V1_ONLY | LT_CANONICAL_NO_TAIL),
        (&tree, "--pad", LT_V1_ONLY | LT_CANONICAL_NO_TAIL),
        // only z.bin is larger than 100000 bytes and unaligned (libtorrent 1.2's pad_file_limit)
        (&tree, "--pad=100000", LT_V1_ONLY | LT_CANONICAL_NO_TAIL),
    ];
    for (i, (content, mode, flags)) in cases.into_iter().enumerate() {
        let out = src.path().join(format!("t{i}.torrent"));
        let what = format!("{} {mode}", content.display());
        let (v1, v2) = create(content, &out, &[mode, "--piece-length", "64K"]);
        assert_eq!(v1.is_some(), mode != "--v2", "{what}: printed Info Hash");
        let padded = mode.starts_with("--pad");
        assert_eq!(v2.is_some(), !padded, "{what}: printed Info Hash v2");
        let got = oracle(&out, content, flags, piece);
        let (ours, theirs) = (&got["ours"], &got["theirs"]);
        assert_eq!(
            ours["v1"].as_str(),
            v1.as_deref(),
            "{what}: libtorrent's v1 hash"
        );
        assert_eq!(
            ours["v2"].as_str(),
            v2.as_deref(),
            "{what}: libtorrent's v2 hash"
        );
        assert_eq!(
            got["state"].as_str(),
            Some("seeding"),
            "{what}: libtorrent checked the data: {got}"
        );
        let ours_files = files(ours);
        let theirs_files = files(theirs);
        if mode == "--pad=100000" {
            // libtorrent 2.0 has no threshold: it pads every file, we only one
            assert_ne!(ours_files, theirs_files, "{what}");
        } else if mode == "--pad" && content == tree.as_path() {
            // mktorrent's order (ours) is not libtorrent's canonical one here: the same data
            // files and pad files, in another order
            let mut a = ours_files.clone();
            let mut b = theirs_files.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{what}");
            assert_ne!(ours["v1"], theirs["v1"], "{what}: orders differ");
        } else {
            // same settings: same files, pad files, roots, and info hashes
            assert_eq!(ours_files, theirs_files, "{what}");
            assert_eq!(ours["v1"], theirs["v1"], "{what}: libtorrent's own v1 hash");
            assert_eq!(ours["v2"], theirs["v2"], "{what}: libtorrent's own v2 hash");
        }
        if mode != "--pad=100000" {
            assert_eq!(ours["pieces"], theirs["pieces"], "{what}: piece count");
        }
        let pads = ours_files.iter().filter(|f| f.2).count();
        let roots = ours_files.iter().filter(|f| f.3.is_some()).count();
        match (content == tree.as_path(), mode) {
            // after a/x.bin, a.b and B/upper and (a hybrid's tail pad) z.bin; none after the
            // one-piece file or the empty one. libtorrent lays a v2-only torrent's files out
            // the same way (its own pad files: there are none in the torrent)
            (true, "--pad") => assert_eq!((pads, roots), (3, 0), "{what}"),
            (true, "--pad=100000") => {
                assert_eq!((pads, roots), (1, 0), "{what}");
                let before_z = ours_files.iter().position(|f| f.0.ends_with("z.bin"));
                assert!(
                    before_z.is_some_and(|i| ours_files[i - 1].2),
                    "{what}: {ours_files:?}"
                );
            }
            (true, _) => assert_eq!((pads, roots), (4, 5), "{what}"),
            (false, "--pad") => assert_eq!((pads, roots), (1, 0), "{what}"),
            // a v2 single file gets libtorrent's tail pad; a hybrid's v1 view has `length`
            (false, "--v2") => assert_eq!((pads, roots), (1, 1), "{what}"),
            (false, _) => assert_eq!((pads, roots), (0, 1), "{what}"),
        }

        // `info --json` shows libtorrent's hashes and piece count, v2-only torrents included
        let j = info_json(&out);
        assert_eq!(j["info_hash_v1"], ours["v1"], "{what}: info --json v1");
        assert_eq!(j["info_hash_v2"], ours["v2"], "{what}: info --json v2");
        assert_eq!(
            j["num_pieces"], ours["pieces"],
            "{what}: info --json pieces"
        );
        // the wire hash: v1, or the first 40 hex digits of v2 for a v2-only torrent
        let wire = v1
            .clone()
            .or_else(|| v2.as_ref().map(|h| h[..40].to_string()));
        assert_eq!(
            j["info_hash"].as_str(),
            wire.as_deref(),
            "{what}: info hash"
        );
        if v1.is_some() {
            // the v1 view with its pad files
            let shown_pads = j["files"]
                .as_array()
                .map_or(0, |f| f.iter().filter(|f| f["padding"] == true).count());
            assert_eq!(shown_pads, pads, "{what}: info --json pad files");
        }
        // and `info` prints them: `Info Hash` (the v2 one for a v2-only torrent), the v2 block
        let info = bt_trace(["info".as_ref(), out.as_os_str()], TIMEOUT);
        info.assert_ok();
        let main = v1.clone().or_else(|| v2.clone()).expect("a hash");
        let mut want = vec![format!("Info Hash: {main}")];
        if let Some(h) = &v2 {
            let kind = if v1.is_some() {
                "hybrid, v1 and v2"
            } else {
                "v2 only"
            };
            want.push(format!("Meta Version: 2 ({kind})"));
            want.push(format!("Info Hash v2: {h}"));
            want.push(format!("Info Hash v2 truncated: {}", &h[..40]));
            want.push(format!("Piece Count: {}", ours["pieces"]));
        }
        for line in want {
            assert!(
                info.stdout_lines().contains(&line.as_str()),
                "{what}: {line:?} in\n{}",
                info.stdout
            );
        }
    }
}

#[test]
fn a_padded_torrent_downloads_without_pad_files() {
    skip_unless_installed!(SWARM);
    let tracker = Tracker::shared();
    let src = temp_dir("create-pad-src");
    let tree = src.path().join("padded");
    make_tree(
        &tree,
        &[("a.bin", 100_001), ("b/c.bin", 300_000), ("d.bin", 5)],
        11,
    );
    let out = src.path().join("padded.torrent");
    let url = tracker.http_url();
    create(&tree, &out, &["--pad", "-a", &url, "--piece-length", "32K"]);
    let torrent = Torrent::load(&out);
    let pads: Vec<&TorrentFile> = torrent
        .files
        .iter()
        .filter(|f| f.path.starts_with(".pad"))
        .collect();
    assert_eq!(pads.len(), 2, "pad files after a.bin and b/c.bin");

    tracker.allow(&[&torrent.info_hash]);
    let lt = LtSeeder::start(None);
    lt.add(&torrent, src.path());
    lt.wait_seeding(&torrent);
    tracker.wait_seeding(&torrent.info_hash, 1);

    let dl = temp_dir("create-pad-out");
    let got = dl.path().join("padded");
    bt_trace(
        [
            "download".as_ref(),
            "-q".as_ref(),
            "-o".as_ref(),
            got.as_os_str(),
            torrent.path.as_os_str(),
        ],
        TIMEOUT,
    )
    .assert_ok();
    for f in torrent.files.iter().filter(|f| !f.path.starts_with(".pad")) {
        let (want, have) = (tree.join(&f.path), got.join(&f.path));
        assert_eq!(sha1_file(&have), sha1_file(&want), "{}", f.path.display());
    }
    assert!(!got.join(".pad").exists(), "a download writes no pad files");
}
