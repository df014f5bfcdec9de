//! BitTorrent v2-only torrents (BEP 52) against python3-libtorrent 2.0.8 on 127.0.0.1:
//! libtorrent makes and seeds v2-only torrents (one file of odd size; several files with an
//! empty one, files smaller and larger than a piece; pieces of 16 and 64 KiB) that bt-trace
//! downloads, byte for byte; a resume keeps the pieces already on disk; a lying raw-socket peer
//! is caught by the merkle check, told apart from the honest seeder by the block hashes that
//! seeder gives for the failed piece, and the honest seeder completes the download; libtorrent
//! downloads from `bt-trace seed`, also from a magnet link (the piece layers then come from our
//! answers to its hash requests); `--trace` of a v2 download dissects in tshark with no
//! malformed frame; a torrent whose piece layer does not hash to its `pieces root` is refused
//! before anything is written.

use crate::common::{
    assert_tshark_clean, bt_trace, bt_trace_spawn, free_port, skip_unless_installed, temp_dir,
    tshark_bittorrent_frames, ChildGuard, Program, PYTHON,
};
use bt_trace::bencode::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Bounds that only stop a hung run.
const NET: Duration = Duration::from_secs(120);

/// `make ROOT PIECE LAYOUT`: writes `ROOT/data/<name>` and `ROOT/v2.torrent` (v2 only).
/// `seed ROOT PORT [RATE]`: seeds it until stdin closes (RATE: upload bytes/s, 0 = no limit).
/// `leech TORRENT SAVE PORT`: downloads it from 127.0.0.1:PORT, prints `complete` when done
/// (TORRENT may be a magnet link: then the metadata and piece layers come from the peer too).
/// `liar ROOT PORT`: a raw-socket peer that has every piece and answers requests with the
/// right data, except the first one for a block of the first file (`a.bin`): that one gets a
/// corrupted byte, then the liar hangs up and listens no more.
const LT: &str = r#"
import libtorrent as lt, os, sys, time, socket, struct
mode = sys.argv[1]
LAYOUTS = {
    "single": [("odd.bin", 300001)],
    "multi": [("a.bin", 300001), ("sub/b", 5), ("c", None), ("sub/empty", 0),
              ("d", "p+1"), ("e", "3p-7")],
}
def settings(port):
    return {"listen_interfaces": "127.0.0.1:%d" % port, "enable_dht": False,
            "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
            "enable_outgoing_utp": False, "enable_incoming_utp": False}
if mode == "make":
    root, piece, layout = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    name = "d" if layout == "multi" else ""
    for rel, size in LAYOUTS[layout]:
        size = {None: piece, "p+1": piece + 1, "3p-7": 3 * piece - 7}.get(size, size)
        p = os.path.join(root, "data", name, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "wb").write(bytes((i * 13 + len(rel) + i // 977) % 251 for i in range(size)))
    fs = lt.file_storage()
    lt.add_files(fs, os.path.join(root, "data", name or LAYOUTS[layout][0][0]))
    ct = lt.create_torrent(fs, piece, flags=lt.create_torrent.v2_only)
    lt.set_piece_hashes(ct, os.path.join(root, "data"))
    open(os.path.join(root, "v2.torrent"), "wb").write(lt.bencode(ct.generate()))
elif mode == "seed":
    root, port = sys.argv[2], int(sys.argv[3])
    s = settings(port)
    if len(sys.argv) > 4:
        s["upload_rate_limit"] = int(sys.argv[4]); s["ignore_limits_on_local_network"] = False
    ses = lt.session(s)
    h = ses.add_torrent({"ti": lt.torrent_info(os.path.join(root, "v2.torrent")),
                         "save_path": os.path.join(root, "data")})
    while not h.status().is_seeding: time.sleep(0.05)
    print("ready", flush=True)
    sys.stdin.read()
elif mode == "leech":
    torrent, save, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
    ses = lt.session(settings(0))
    if torrent.startswith("magnet:"):
        p = lt.parse_magnet_uri(torrent); p.save_path = save
        h = ses.add_torrent(p)
    else:
        h = ses.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
    h.connect_peer(("127.0.0.1", port))
    end = time.time() + 90
    while time.time() < end and not h.status().is_seeding: time.sleep(0.1)
    print("complete" if h.status().is_seeding else "incomplete %f" % h.status().progress, flush=True)
elif mode == "liar":
    root, port = sys.argv[2], int(sys.argv[3])
    ti = lt.torrent_info(os.path.join(root, "v2.torrent"))
    fs = ti.files(); space = bytearray()
    for i in range(fs.num_files()):
        if fs.file_flags(i) & 1: space += bytes(fs.file_size(i))
        else: space += open(os.path.join(root, "data", fs.file_path(i)), "rb").read()
    plen, n = ti.piece_length(), ti.num_pieces()
    first_file_pieces = (fs.file_size(0) + plen - 1) // plen
    ih = ti.info_hashes().v2.to_bytes()[:20]
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port)); srv.listen(4)
    print("ready", flush=True)
    lied = False
    def read(c, k):
        b = b""
        while len(b) < k:
            x = c.recv(k - len(b))
            if not x: raise EOFError
            b += x
        return b
    while True:
        c, _ = srv.accept()
        try:
            hs = read(c, 68)
            if hs[28:48] != ih: c.close(); continue
            c.sendall(b"\x13BitTorrent protocol" + bytes(8) + ih + b"-LIAR0-" + bytes(13))
            bits = bytearray((n + 7) // 8)
            for i in range(n): bits[i // 8] |= 0x80 >> (i % 8)
            c.sendall(struct.pack(">IB", 1 + len(bits), 5) + bits + struct.pack(">IB", 1, 1))
            while True:
                ln = struct.unpack(">I", read(c, 4))[0]
                if ln == 0: continue
                body = read(c, ln)
                if body[0] != 6: continue
                idx, begin, length = struct.unpack(">III", body[1:13])
                at = idx * plen + begin
                data = bytearray(space[at:at + length])
                if not lied and idx < first_file_pieces:
                    data[0] ^= 0xff; lied = True
                    print("lied about piece %d begin %d" % (idx, begin), flush=True)
                c.sendall(struct.pack(">IBII", 9 + len(data), 7, idx, begin) + data)
                if lied:
                    # hang up cleanly (FIN after the data), read what is left, listen no more
                    srv.close(); c.shutdown(socket.SHUT_WR)
                    while c.recv(65536): pass
                    c.close(); sys.stdin.read(); sys.exit(0)
        except (EOFError, OSError):
            c.close()
"#;

fn python(args: &[&str]) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-c", LT]).args(args);
    cmd
}

/// Makes a v2-only torrent of `layout` with pieces of `piece` bytes in `root` with libtorrent.
fn make(root: &Path, piece: u64, layout: &str) -> PathBuf {
    let out = python(&[
        "make",
        &root.display().to_string(),
        &piece.to_string(),
        layout,
    ])
    .output()
    .expect("run python3");
    assert!(
        out.status.success(),
        "making the torrent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.join("v2.torrent")
}

/// A libtorrent seeder of `root` (or the lying raw peer, `mode` `liar`); keep the stdin open.
fn start(root: &Path, mode: &str, extra: &[&str]) -> (u16, ChildGuard, std::process::ChildStdin) {
    let port = free_port();
    let mut args = vec![
        mode.to_string(),
        root.display().to_string(),
        port.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = root.join(format!("{mode}-{port}.log"));
    let (g, stdin) = ChildGuard::spawn_with_stdin(mode, python(&args), &log);
    g.wait_log("ready");
    g.wait_port(port);
    (port, g, stdin)
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The download at `got` holds exactly the files of `want`, byte for byte (and no padding).
fn assert_same_files(want: &Path, got: &Path) {
    let names = files(want);
    assert_eq!(files(got), names, "the files written");
    for f in names {
        let (a, b) = (std::fs::read(want.join(&f)), std::fs::read(got.join(&f)));
        assert!(
            a.expect("source") == b.expect("download"),
            "{} differs",
            f.display()
        );
    }
}

/// `download -o out torrent --peer ...` (plus `extra`), which must succeed.
fn download(torrent: &Path, out: &Path, peers: &[u16], extra: &[&str]) -> crate::common::Run {
    let mut args: Vec<String> = vec![
        "download".into(),
        "-o".into(),
        out.display().to_string(),
        torrent.display().to_string(),
    ];
    for p in peers {
        args.extend(["--peer".into(), format!("127.0.0.1:{p}")]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let r = bt_trace(&args, NET);
    r.assert_ok();
    r
}

/// Where the torrent's content is below `root/data`: the file, or the directory `d`.
fn content(root: &Path, layout: &str) -> PathBuf {
    match layout {
        "single" => root.join("data/odd.bin"),
        _ => root.join("data/d"),
    }
}

#[test]
fn downloads_v2_only_torrents_from_libtorrent_byte_for_byte() {
    skip_unless_installed!(&[Program::Libtorrent, Program::Tshark]);
    for (layout, piece) in [
        ("single", 16384),
        ("multi", 16384),
        ("single", 65536),
        ("multi", 65536),
    ] {
        let dir = temp_dir(&format!("v2-{layout}-{piece}"));
        let torrent = make(dir.path(), piece, layout);
        let (port, _seeder, _lifeline) = start(dir.path(), "seed", &[]);
        let out = dir.path().join("out");
        let trace = dir.path().join("trace");
        let r = download(
            &torrent,
            &out,
            &[port],
            &["--trace", &trace.display().to_string()],
        );
        assert!(
            r.stderr.contains("(0 resumed from disk)"),
            "{}",
            r.describe()
        );
        let want = content(dir.path(), layout);
        if layout == "single" {
            assert!(std::fs::read(&want).expect("source") == std::fs::read(&out).expect("out"));
        } else {
            assert_same_files(&want, &out);
        }
        if layout == "multi" {
            // piece 4 is the end of a.bin (300 001 bytes): its bytes without the padding
            let p4 = dir.path().join("piece4");
            bt_trace(
                [
                    "download_piece".as_ref(),
                    "-o".as_ref(),
                    p4.as_os_str(),
                    torrent.as_os_str(),
                    "4".as_ref(),
                    "--peer".as_ref(),
                    format!("127.0.0.1:{port}").as_ref(),
                ],
                NET,
            )
            .assert_ok();
            let a = std::fs::read(want.join("a.bin")).expect("a.bin");
            let start = (4 * piece).min(a.len() as u64) as usize;
            let end = (5 * piece).min(a.len() as u64) as usize;
            assert!(
                std::fs::read(&p4).expect("piece") == a[start..end],
                "piece 4"
            );
        }
        // the trace dissects in tshark, nothing malformed
        let pcapng = std::fs::read_dir(&trace)
            .expect("trace dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "pcapng"))
            .expect("a pcapng");
        let frames = tshark_bittorrent_frames(&pcapng, port);
        assert!(frames.len() > 5, "{} BitTorrent frames", frames.len());
        assert_tshark_clean(&pcapng, port);
    }
}

/// The `(N resumed from disk)` of the report line.
fn resumed(stderr: &str) -> u32 {
    let at = stderr.find(" resumed from disk)").expect("the report line");
    let head = &stderr[..at];
    let start = head.rfind('(').expect("(") + 1;
    head[start..].parse().expect("a count")
}

#[test]
fn a_resume_keeps_the_verified_pieces_on_disk() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let dir = temp_dir("v2-resume");
    let torrent = make(dir.path(), 65536, "multi");
    let (port, _seeder, _lifeline) = start(dir.path(), "seed", &[]);
    let src = content(dir.path(), "multi");
    let out = dir.path().join("out");
    // pre-seed: a.bin whole but one byte changed, e whole, d cut in half, the rest missing
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut a = std::fs::read(src.join("a.bin")).expect("a.bin");
    a[200_000] ^= 1;
    std::fs::write(out.join("a.bin"), &a).expect("write");
    std::fs::copy(src.join("e"), out.join("e")).expect("copy");
    let d = std::fs::read(src.join("d")).expect("d");
    std::fs::write(out.join("d"), &d[..d.len() / 2]).expect("write");
    let r = download(&torrent, &out, &[port], &[]);
    // a.bin: 5 pieces, 4 of them good; e: 3 pieces; d: none whole
    assert_eq!(resumed(&r.stderr), 4 + 3, "{}", r.describe());
    assert_same_files(&src, &out);
    // everything there: nothing to fetch
    let again = download(&torrent, &out, &[port], &[]);
    assert!(
        again
            .stderr
            .contains("12 of 12 pieces verified (12 resumed from disk)"),
        "{}",
        again.describe()
    );
}

/// The liar sends one bad block of a piece of four, whose other blocks come from the honest
/// seeder: the piece fails with two senders, and the block hashes the honest seeder gives for
/// it (a hash request) tell which block was bad.
#[test]
fn a_lying_peer_is_caught_by_the_merkle_check_and_the_honest_seeder_completes() {
    skip_unless_installed!(&[Program::Libtorrent]);
    let dir = temp_dir("v2-liar");
    let torrent = make(dir.path(), 65536, "multi");
    // the honest seeder is slow (256 KiB/s, on 127.0.0.1 too), so the liar is asked first
    let (honest, _seeder, _l1) = start(dir.path(), "seed", &["262144"]);
    let (liar, liar_guard, _l2) = start(dir.path(), "liar", &[]);
    let out = dir.path().join("out");
    let r = download(&torrent, &out, &[liar, honest], &["-v"]);
    assert!(
        liar_guard.log_text().contains("lied about piece"),
        "{}",
        liar_guard.log_text()
    );
    assert!(r.stderr.contains("failed verification"), "{}", r.describe());
    assert!(
        r.stderr
            .contains(&format!("127.0.0.1:{liar} sent a bad block of piece"))
            && r.stderr.contains("told by its block hash"),
        "{}",
        r.describe()
    );
    assert_same_files(&content(dir.path(), "multi"), &out);
}

/// `bt-trace seed` of a v2-only torrent (pieces of `piece` bytes) with a trace; libtorrent
/// downloads it from the `.torrent` or from a `urn:btmh:` magnet link (`magnet`: then the
/// metadata and the piece layers come from us). Returns the seeder's JSONL events.
fn libtorrent_leeches_from_bt_trace(piece: u64, magnet: bool) -> String {
    let dir = temp_dir(&format!("v2-seed-{piece}-{magnet}"));
    let torrent = make(dir.path(), piece, "multi");
    let src = content(dir.path(), "multi");
    let port = free_port();
    let trace = dir.path().join("trace");
    let seeder = bt_trace_spawn(
        [
            "seed".as_ref(),
            torrent.as_os_str(),
            "--data".as_ref(),
            src.as_os_str(),
            "--port".as_ref(),
            port.to_string().as_ref(),
            "--trace".as_ref(),
            trace.as_os_str(),
            "-q".as_ref(),
        ],
        &dir.path().join("seed.log"),
    );
    seeder.wait_port(port);
    let what = if magnet {
        let j = crate::common::info_json(&torrent);
        let v2 = j["info_hash_v2"].as_str().expect("a v2 hash").to_string();
        format!("magnet:?xt=urn:btmh:1220{v2}")
    } else {
        torrent.display().to_string()
    };
    let save = dir.path().join("lt");
    let out = python(&[
        "leech",
        &what,
        &save.display().to_string(),
        &port.to_string(),
    ])
    .output()
    .expect("run python3");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("complete") && !said.contains("incomplete"),
        "{said} {}",
        seeder.log_tail()
    );
    assert_same_files(&src, &save.join("d"));
    // SIGTERM: the seeder finishes its trace and exits
    unsafe { libc::kill(seeder.id() as libc::pid_t, libc::SIGTERM) };
    seeder.wait_exit(NET).expect("the seeder exits on SIGTERM");
    let jsonl = std::fs::read_dir(&trace)
        .expect("trace dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a jsonl");
    std::fs::read_to_string(jsonl).expect("jsonl")
}

/// How many `kind` messages the JSONL events hold.
fn count(events: &str, kind: &str) -> usize {
    events.matches(&format!("\"type\":\"{kind}\"")).count()
}

#[test]
fn libtorrent_downloads_a_v2_only_torrent_from_bt_trace_seed() {
    skip_unless_installed!(&[Program::Libtorrent]);
    // from the .torrent: libtorrent has the piece layers; say whether it asked for hashes
    let events = libtorrent_leeches_from_bt_trace(16384, false);
    eprintln!(
        "libtorrent with the .torrent sent {} hash request(s)",
        count(&events, "hash_request")
    );
    // from a magnet link: the piece layers come from our `hashes` answers, which libtorrent
    // checks against each file's pieces root (at 16 KiB pieces the piece layer is layer 0)
    for piece in [16384, 65536] {
        let events = libtorrent_leeches_from_bt_trace(piece, true);
        let (asked, answered) = (count(&events, "hash_request"), count(&events, "hashes"));
        eprintln!("libtorrent from a magnet link, pieces of {piece}: {asked} hash request(s)");
        assert!(asked > 0, "libtorrent asked for no hashes");
        assert_eq!(answered, asked, "every hash request answered");
        assert_eq!(count(&events, "hash_reject"), 0);
    }
}

/// Rewrites the first piece layer of a `.torrent` with one bit flipped.
fn corrupt_layer(torrent: &Path) {
    let bytes = std::fs::read(torrent).expect("torrent");
    let mut v = bt_trace::bencode::decode(&bytes).expect("bencode");
    let Value::Dict(top) = &mut v else {
        panic!("not a dict")
    };
    let Some(Value::Dict(layers)) = top.get_mut(&b"piece layers"[..]) else {
        panic!("no piece layers")
    };
    let Some(Value::Bytes(layer)) = layers.values_mut().next() else {
        panic!("no layer")
    };
    layer[5] ^= 1;
    std::fs::write(torrent, v.encode()).expect("write");
}

#[test]
fn a_piece_layer_that_does_not_match_its_root_is_refused_before_anything_is_written() {
    let dir = temp_dir("v2-bad-layer");
    let data = dir.path().join("big.bin");
    std::fs::write(&data, vec![7u8; 100_000]).expect("write");
    let torrent = dir.path().join("big.torrent");
    bt_trace(
        [
            "create".as_ref(),
            "--v2".as_ref(),
            "--piece-length".as_ref(),
            "16384".as_ref(),
            "-o".as_ref(),
            torrent.as_os_str(),
            data.as_os_str(),
        ],
        NET,
    )
    .assert_ok();
    corrupt_layer(&torrent);
    let out = dir.path().join("out.bin");
    let r = bt_trace(
        [
            "download".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            torrent.as_os_str(),
            "--peer".as_ref(),
            "127.0.0.1:9".as_ref(),
        ],
        NET,
    );
    r.assert_clean_failure();
    assert!(
        r.stderr
            .contains("does not hash to the `pieces root` of \"big.bin\""),
        "{}",
        r.describe()
    );
    assert!(!out.exists(), "nothing is written for a refused torrent");
}
