//! What the commands print: the CodeCrafters formats, byte-exact (/work/shared/design.md,
//! "CodeCrafters-compatible output"), the `--json` renderings, and the one-line download
//! report for stderr.
//!
//! Pure formatting into a `Write`: nothing here reads files, talks to the network or decides an
//! exit status. Richer output goes after the CodeCrafters lines or behind flags, never into them.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

use crate::download::Summary;
use crate::magnet::Magnet;
use crate::metainfo::Torrent;

/// The CodeCrafters `info` lines: `Tracker URL` (empty, with a warning, when the torrent names
/// none), `Length` (the total for multi-file torrents), `Info Hash`, `Piece Length`,
/// `Piece Hashes` and one lowercase hash a line. `magnet_info` prints the same lines. A
/// hybrid torrent prints them as a v1 one (the v1 SHA-1 info hash). A v2-only torrent has no
/// v1 piece hashes: `Info Hash` is its 64-hex SHA-256 (libtorrent's `info_hashes().v2`) and
/// the `Piece Hashes` lines are left out (see [`write_v2`]).
pub fn write_info(out: &mut impl Write, t: &Torrent) -> io::Result<()> {
    let tracker = t.tracker_url();
    if tracker.is_none() {
        tracing::warn!("the torrent has no tracker (no `announce` or `announce-list`)");
    }
    writeln!(out, "Tracker URL: {}", tracker.unwrap_or(""))?;
    writeln!(out, "Length: {}", t.info.total_length)?;
    match (&t.info.v2, t.info.has_v1()) {
        (Some(v2), false) => {
            writeln!(out, "Info Hash: {}", hex::encode(v2.info_hash))?;
            writeln!(out, "Piece Length: {}", t.info.piece_length)?;
        }
        _ => {
            writeln!(out, "Info Hash: {}", t.info_hash_hex())?;
            writeln!(out, "Piece Length: {}", t.info.piece_length)?;
            writeln!(out, "Piece Hashes:")?;
            for h in &t.info.pieces {
                writeln!(out, "{}", hex::encode(h))?;
            }
        }
    }
    Ok(())
}

/// After the files, for a v2 or hybrid torrent (BEP 52): `Meta Version`, `Info Hash v2` (the
/// SHA-256) and `Info Hash v2 truncated` (its first 20 bytes, what v2 peers and trackers
/// see), `Piece Count`, `File Tree:` with `  <length>  <path>  <pieces root or ->` a line, and
/// `Piece Layers:` (how many files larger than one piece have their layer). Nothing for v1.
pub fn write_v2(out: &mut impl Write, t: &Torrent) -> io::Result<()> {
    let Some(v2) = &t.info.v2 else { return Ok(()) };
    let kind = if t.info.has_v1() {
        "hybrid, v1 and v2"
    } else {
        "v2 only"
    };
    writeln!(out, "Meta Version: 2 ({kind})")?;
    writeln!(out, "Info Hash v2: {}", hex::encode(v2.info_hash))?;
    writeln!(
        out,
        "Info Hash v2 truncated: {}",
        hex::encode(v2.truncated_hash())
    )?;
    writeln!(out, "Piece Count: {}", t.info.piece_count())?;
    writeln!(out, "File Tree:")?;
    for f in &v2.files {
        let root = f.pieces_root.map_or("-".to_string(), hex::encode);
        let attr = if f.attr.is_empty() {
            String::new()
        } else {
            format!("  ({})", f.attr)
        };
        writeln!(out, "  {}  {}  {root}{attr}", f.length, f.path.join("/"))?;
    }
    let l = &t.piece_layers;
    let hashes: usize = l.layers.values().map(|v| v.len() / 32).sum();
    writeln!(
        out,
        "Piece Layers: {} of {} file(s) larger than one piece, {hashes} hash(es)",
        l.present, l.needed
    )
}

/// After the `info` lines of a multi-file torrent: `Files:` and one `  <length>  <path>` a line
/// (the path as it is written, sanitized), then the BEP 47 attributes in parentheses:
/// `padding`, `symlink to <target>`, `executable`, `hidden`.
pub fn write_files(out: &mut impl Write, t: &Torrent) -> io::Result<()> {
    // a v2-only torrent's files are listed by `write_v2`
    if t.info.multi_file && t.info.has_v1() {
        writeln!(out, "Files:")?;
        for f in &t.info.files {
            let mut attrs = Vec::new();
            if f.padding {
                attrs.push("padding".to_string());
            }
            if let Some(l) = &f.symlink {
                attrs.push(match &l.target {
                    Some(to) => format!("symlink to {}", to.display()),
                    None => format!("symlink to {}, outside: not created", l.given.join("/")),
                });
            }
            if f.executable {
                attrs.push("executable".into());
            }
            if f.hidden {
                attrs.push("hidden".into());
            }
            let attrs = if attrs.is_empty() {
                String::new()
            } else {
                format!("  ({})", attrs.join(", "))
            };
            writeln!(out, "  {}  {}{attrs}", f.length, f.display_path())?;
        }
    }
    Ok(())
}

/// Last in `info`: `Announce List:` and one `  tier <n>: <url>, <url>` a line, if any.
pub fn write_tiers(out: &mut impl Write, t: &Torrent) -> io::Result<()> {
    if !t.announce_list.is_empty() {
        writeln!(out, "Announce List:")?;
        for (i, tier) in t.announce_list.iter().enumerate() {
            writeln!(out, "  tier {}: {}", i + 1, tier.join(", "))?;
        }
    }
    Ok(())
}

/// `info --json`: every field of the torrent in one object.
pub fn info_json(t: &Torrent) -> serde_json::Value {
    let i = &t.info;
    serde_json::json!({
        "tracker_url": t.tracker_url(),
        "announce": t.announce,
        "announce_list": t.announce_list,
        "comment": t.comment,
        "created_by": t.created_by,
        "creation_date": t.creation_date,
        "info_hash": t.info_hash_hex(),
        "meta_version": i.meta_version(),
        "info_hash_v1": i.has_v1().then(|| hex::encode(i.info_hash())),
        "info_hash_v2": i.v2.as_ref().map(|v| hex::encode(v.info_hash)),
        "info_hash_v2_truncated": i.v2.as_ref().map(|v| hex::encode(v.truncated_hash())),
        "name": i.name,
        "length": i.total_length,
        "piece_length": i.piece_length,
        "num_pieces": i.piece_count(),
        "piece_hashes": i.pieces.iter().map(hex::encode).collect::<Vec<_>>(),
        "private": i.private,
        "multi_file": i.multi_file,
        "files": i.files.iter().map(|f| serde_json::json!({
            "path": f.display_path(),
            "length": f.length,
            "offset": f.offset,
            "padding": f.padding,
            "attr": f.attr(),
            "symlink": f.symlink.as_ref().map(|l| serde_json::json!({
                "given": l.given.join("/"),
                "target": l.target.as_ref().map(|p| p.display().to_string()),
            })),
        })).collect::<Vec<_>>(),
        "file_tree": i.v2.as_ref().map(|v| v.files.iter().map(|f| serde_json::json!({
            "path": f.path.join("/"),
            "length": f.length,
            "pieces_root": f.pieces_root.map(hex::encode),
            "attr": f.attr,
            "piece_layer": f.pieces_root
                .and_then(|r| t.piece_layers.layers.get(&r))
                .filter(|_| f.layer_len(i.piece_length) > 0)
                .map(|l| l.len() / 32),
        })).collect::<Vec<_>>()),
        "piece_layers": i.v2.as_ref().map(|_| serde_json::json!({
            "needed": t.piece_layers.needed,
            "present": t.piece_layers.present,
        })),
        "warnings": t.warnings(),
    })
}

/// The CodeCrafters `magnet_parse` lines: `Tracker URL` (the first `tr`, empty with a warning
/// when there is none) and `Info Hash` (the `btih` one). A link with a v2 hash (`btmh`) adds
/// `Info Hash v2: <64 hex>`; a v2-only link shows the 64 hex digits as `Info Hash`, as `info`
/// does for a v2-only torrent.
pub fn write_magnet(out: &mut impl Write, m: &Magnet) -> io::Result<()> {
    let tracker = m.trackers.first().map(String::as_str);
    if tracker.is_none() {
        tracing::warn!("the magnet link has no tracker (`tr`)");
    }
    writeln!(out, "Tracker URL: {}", tracker.unwrap_or(""))?;
    match (m.has_v1, m.info_hash_v2) {
        (true, None) => writeln!(out, "Info Hash: {}", m.info_hash_hex()),
        (true, Some(v2)) => {
            writeln!(out, "Info Hash: {}", m.info_hash_hex())?;
            writeln!(out, "Info Hash v2: {}", hex::encode(v2))
        }
        (false, v2) => writeln!(
            out,
            "Info Hash: {}",
            v2.map(hex::encode).unwrap_or_default()
        ),
    }
}

/// `magnet_parse --json`: every parameter of the link in one object.
pub fn magnet_json(m: &Magnet) -> serde_json::Value {
    serde_json::json!({
        "info_hash": m.info_hash_hex(),
        "info_hash_v1": m.has_v1.then(|| m.info_hash_hex()),
        "info_hash_v2": m.info_hash_v2.map(hex::encode),
        "display_name": m.display_name,
        "trackers": m.trackers,
        "peers": m.peers,
        "exact_length": m.exact_length,
        "other": m.other.iter().map(|(k, v)| serde_json::json!([k, v])).collect::<Vec<_>>(),
    })
}

/// A JSON value pretty-printed, then a newline.
pub fn write_json(out: &mut impl Write, v: &serde_json::Value) -> io::Result<()> {
    writeln!(out, "{v:#}")
}

/// `peers`: one `ip:port` a line (IPv6 as `[addr]:port`).
pub fn write_peers(out: &mut impl Write, peers: &[SocketAddr]) -> io::Result<()> {
    for p in peers {
        writeln!(out, "{p}")?;
    }
    Ok(())
}

/// `handshake`: `Peer ID: <40 lowercase hex>`.
pub fn write_peer_id(out: &mut impl Write, peer_id: &[u8; 20]) -> io::Result<()> {
    writeln!(out, "Peer ID: {}", hex::encode(peer_id))
}

/// `magnet_handshake`: the `Peer ID` line, then `Peer Metadata Extension ID: <n>` (the id the
/// peer wants ut_metadata messages under).
pub fn write_magnet_handshake(
    out: &mut impl Write,
    peer_id: &[u8; 20],
    ut_metadata_id: u8,
) -> io::Result<()> {
    write_peer_id(out, peer_id)?;
    writeln!(out, "Peer Metadata Extension ID: {ut_metadata_id}")
}

/// `download_piece` and `magnet_download_piece` on success.
pub fn write_piece_done(out: &mut impl Write, index: u32, path: &Path) -> io::Result<()> {
    writeln!(out, "Piece {index} downloaded to {}.", path.display())
}

/// `download` (what = the .torrent file) and `magnet_download` (what = the torrent's name) on
/// success.
pub fn write_download_done(out: &mut impl Write, what: &str, path: &Path) -> io::Result<()> {
    writeln!(out, "Downloaded {what} to {}.", path.display())
}

/// `create`: `Info Hash: <40 lowercase hex>` (v1 and hybrid), as in `info`, and `Info Hash
/// v2: <64 lowercase hex>` (v2 and hybrid).
pub fn write_created_hashes(out: &mut impl Write, c: &crate::create::Created) -> io::Result<()> {
    if let Some(h) = c.info_hash_v1 {
        writeln!(out, "Info Hash: {}", hex::encode(h))?;
    }
    if let Some(h) = c.info_hash_v2 {
        writeln!(out, "Info Hash v2: {}", hex::encode(h))?;
    }
    Ok(())
}

/// The line on stderr after `create`: where the torrent went and what it holds.
pub fn created_report(c: &crate::create::Created, path: &Path) -> String {
    let files = c.file_count;
    format!(
        "wrote {}: {} ({} file{}, {} bytes) in {} pieces of {} bytes",
        path.display(),
        c.name,
        files,
        if files == 1 { "" } else { "s" },
        c.total_length,
        c.piece_count,
        c.piece_length
    )
}

/// The progress bar of `create` while it hashes `total` bytes.
pub fn hashing_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "hashing {bar:40} {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The line on stderr once `tracker` listens.
pub fn tracker_listening(h: &crate::tracker::server::TrackerHandle) -> String {
    format!("listening on {} and {}", h.http_url(), h.udp_url())
}

/// The one line on stderr after a download: pieces, bytes, time, rate, peers, and failed
/// pieces and banned peers when there were any.
pub fn download_report(s: &Summary) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-6);
    let mib = s.bytes_downloaded as f64 / 1048576.0;
    let mut line = format!(
        "{} of {} pieces verified ({} resumed from disk); {mib:.1} MiB in {secs:.2} s \
         ({:.1} MiB/s) from {} peer(s)",
        s.pieces_have,
        s.pieces_total,
        s.pieces_resumed,
        mib / secs,
        s.peers_used,
    );
    if s.pieces_failed > 0 {
        line += &format!(", {} piece(s) failed verification", s.pieces_failed);
    }
    if s.peers_banned > 0 {
        line += &format!(", {} peer(s) dropped for bad data", s.peers_banned);
    }
    line
}

/// `seed`, on stderr once the data is checked: how many pieces we can serve.
pub fn seed_checked(verified: u32, total: u32) -> String {
    if verified == total {
        format!("seeding: all {total} pieces verified")
    } else {
        format!(
            "seeding: {verified} of {total} pieces verified (the other {} fail their SHA-1 and are not served)",
            total - verified
        )
    }
}

/// The line on stderr when seeding stops: bytes uploaded, to how many peers, for how long.
pub fn seed_report(s: &Summary) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-6);
    let mib = s.bytes_uploaded as f64 / 1048576.0;
    format!(
        "seeded {mib:.1} MiB to {} peer(s) in {secs:.1} s ({:.1} MiB/s)",
        s.peers_served,
        mib / secs
    )
}

/// `demo`, on stdout: what was downloaded, the table per peer, the trace files and the exact
/// commands to look at them.
pub fn write_demo(
    out: &mut impl Write,
    o: &crate::demo::Outcome,
    table: &comfy_table::Table,
    trace: &crate::trace::TraceStats,
) -> io::Result<()> {
    let s = &o.summary;
    writeln!(
        out,
        "Downloaded {} pieces ({:.1} MiB) from {} peer(s); the demo took {:.2} s.",
        s.pieces_have,
        s.bytes_downloaded as f64 / 1048576.0,
        s.peers_used,
        o.elapsed.as_secs_f64()
    )?;
    writeln!(out, "\nWhat each peer sent us (read back from the trace):")?;
    writeln!(out, "{table}")?;
    let (pcapng, jsonl) = (shell_quote(&trace.pcapng), shell_quote(&trace.jsonl));
    writeln!(out, "\nThe trace:")?;
    writeln!(out, "  {pcapng}  ({} frames)", trace.frames)?;
    writeln!(
        out,
        "  {jsonl}  ({} events, one JSON object a line)",
        trace.events
    )?;
    writeln!(out, "\nLook at it:")?;
    writeln!(
        out,
        "  wireshark {pcapng}        # display filter: bittorrent"
    )?;
    writeln!(out, "  tshark -r {pcapng} -Y bittorrent")?;
    writeln!(out, "  bt-trace analyze {pcapng}")?;
    Ok(())
}

/// A path as a shell word: as it is when it has only safe characters, else single-quoted.
fn shell_quote(p: &Path) -> String {
    let s = p.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Value;
    use std::time::Duration;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).expect("writing to a Vec");
        String::from_utf8(out).expect("UTF-8 output")
    }

    /// A two-piece single-file torrent with known hashes.
    fn single() -> Torrent {
        let mut pieces = vec![0x00; 20];
        pieces[19] = 0x01; // zero-padded: 000...01
        pieces.extend([0xab; 20]);
        let info = Value::dict([
            ("length", Value::Int(40000)),
            ("name", Value::bytes("sample.bin")),
            ("piece length", Value::Int(32768)),
            ("pieces", Value::Bytes(pieces)),
        ]);
        let t = Value::dict([
            ("announce", Value::bytes("http://127.0.0.1:6969/announce")),
            ("info", info),
        ]);
        Torrent::parse(&t.encode()).expect("a valid torrent")
    }

    fn multi() -> Torrent {
        let file = |len: i64, path: &[&str]| {
            Value::dict([
                ("length", Value::Int(len)),
                (
                    "path",
                    Value::List(path.iter().map(|c| Value::bytes(*c)).collect()),
                ),
            ])
        };
        let info = Value::dict([
            (
                "files",
                Value::List(vec![file(10, &["a.txt"]), file(11, &["cd 2", "b.txt"])]),
            ),
            ("name", Value::bytes("album")),
            ("piece length", Value::Int(16)),
            ("pieces", Value::Bytes(vec![0xcd; 40])),
        ]);
        let t = Value::dict([
            (
                "announce-list",
                Value::List(vec![
                    Value::List(vec![
                        Value::bytes("udp://127.0.0.1:1"),
                        Value::bytes("http://x/a"),
                    ]),
                    Value::List(vec![Value::bytes("http://y/a")]),
                ]),
            ),
            ("info", info),
        ]);
        Torrent::parse(&t.encode()).expect("a valid torrent")
    }

    #[test]
    fn info_lines_are_byte_exact() {
        let t = single();
        assert_eq!(
            text(|o| write_info(o, &t)),
            format!(
                "Tracker URL: http://127.0.0.1:6969/announce\nLength: 40000\nInfo Hash: {}\n\
                 Piece Length: 32768\nPiece Hashes:\n\
                 0000000000000000000000000000000000000001\n\
                 abababababababababababababababababababab\n",
                t.info_hash_hex()
            )
        );
        assert_eq!(t.info_hash_hex().len(), 40);
        // a single-file torrent without announce-list shows nothing more
        assert_eq!(text(|o| write_files(o, &t)), "");
        assert_eq!(text(|o| write_tiers(o, &t)), "");
    }

    #[test]
    fn multi_file_info_adds_files_and_tiers() {
        let t = multi();
        let info = text(|o| write_info(o, &t));
        // no `announce`: the first announce-list URL; the length is the total
        assert!(
            info.starts_with("Tracker URL: udp://127.0.0.1:1\nLength: 21\n"),
            "{info}"
        );
        assert_eq!(
            text(|o| write_files(o, &t)),
            "Files:\n  10  a.txt\n  11  cd 2/b.txt\n"
        );
        assert_eq!(
            text(|o| write_tiers(o, &t)),
            "Announce List:\n  tier 1: udp://127.0.0.1:1, http://x/a\n  tier 2: http://y/a\n"
        );
    }

    #[test]
    fn info_json_has_every_field() {
        let t = multi();
        let j = info_json(&t);
        assert_eq!(j["tracker_url"], "udp://127.0.0.1:1");
        assert_eq!(j["announce"], serde_json::Value::Null);
        assert_eq!(j["info_hash"], t.info_hash_hex());
        assert_eq!(j["name"], "album");
        assert_eq!(j["length"], 21);
        assert_eq!(j["piece_length"], 16);
        assert_eq!(j["num_pieces"], 2);
        assert_eq!(j["piece_hashes"][1], "cd".repeat(20));
        assert_eq!(j["multi_file"], true);
        assert_eq!(j["files"][1]["path"], "cd 2/b.txt");
        assert_eq!(j["files"][1]["offset"], 10);
        assert_eq!(
            j["announce_list"],
            serde_json::json!([["udp://127.0.0.1:1", "http://x/a"], ["http://y/a"]])
        );
        let pretty = text(|o| write_json(o, &j));
        assert!(
            pretty.starts_with("{\n  \"") && pretty.ends_with("}\n"),
            "{pretty}"
        );
    }

    #[test]
    fn magnet_lines_are_byte_exact() {
        let m = Magnet::parse(
            "magnet:?xt=urn:btih:ad42ce8109f54c99613ce38f9b4d87e70f24a165&dn=magnet1.gif\
             &tr=http%3A%2F%2Fbittorrent-test-tracker.codecrafters.io%2Fannounce&x.pe=127.0.0.1:1",
        )
        .expect("a valid link");
        assert_eq!(
            text(|o| write_magnet(o, &m)),
            "Tracker URL: http://bittorrent-test-tracker.codecrafters.io/announce\n\
             Info Hash: ad42ce8109f54c99613ce38f9b4d87e70f24a165\n"
        );
        let j = magnet_json(&m);
        assert_eq!(j["display_name"], "magnet1.gif");
        assert_eq!(j["peers"], serde_json::json!(["127.0.0.1:1"]));

        let bare = Magnet::parse("magnet:?xt=urn:btih:ad42ce8109f54c99613ce38f9b4d87e70f24a165")
            .expect("a valid link");
        assert_eq!(
            text(|o| write_magnet(o, &bare)),
            "Tracker URL: \nInfo Hash: ad42ce8109f54c99613ce38f9b4d87e70f24a165\n"
        );
    }

    #[test]
    fn peers_and_peer_ids_are_byte_exact() {
        let peers: Vec<SocketAddr> = vec![
            "127.0.0.1:6881".parse().expect("addr"),
            "[::1]:51413".parse().expect("addr"),
        ];
        assert_eq!(
            text(|o| write_peers(o, &peers)),
            "127.0.0.1:6881\n[::1]:51413\n"
        );
        assert_eq!(text(|o| write_peers(o, &[])), "");
        let mut id = *b"-TR4050-abcdefghijkl";
        id[19] = 0x0f;
        assert_eq!(
            text(|o| write_peer_id(o, &id)),
            "Peer ID: 2d5452343035302d6162636465666768696a6b0f\n"
        );
        assert_eq!(
            text(|o| write_magnet_handshake(o, &[0; 20], 3)),
            format!(
                "Peer ID: {}\nPeer Metadata Extension ID: 3\n",
                "0".repeat(40)
            )
        );
    }

    #[test]
    fn download_lines() {
        assert_eq!(
            text(|o| write_piece_done(o, 7, Path::new("/tmp/p-7"))),
            "Piece 7 downloaded to /tmp/p-7.\n"
        );
        assert_eq!(
            text(|o| write_download_done(o, "s.torrent", Path::new("out/s.bin"))),
            "Downloaded s.torrent to out/s.bin.\n"
        );
        let mut s = Summary {
            complete: true,
            interrupted: false,
            bytes_downloaded: 3 * 1048576,
            bytes_wasted: 0,
            bytes_uploaded: 0,
            pieces_resumed: 1,
            pieces_total: 4,
            pieces_have: 4,
            pieces_failed: 0,
            peers_used: 2,
            peers_served: 0,
            peers_banned: 0,
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(
            download_report(&s),
            "4 of 4 pieces verified (1 resumed from disk); 3.0 MiB in 1.50 s (2.0 MiB/s) from 2 peer(s)"
        );
        s.pieces_failed = 2;
        s.peers_banned = 1;
        assert!(download_report(&s).ends_with(
            "from 2 peer(s), 2 piece(s) failed verification, 1 peer(s) dropped for bad data"
        ));
        s.bytes_uploaded = 6 * 1048576;
        s.peers_served = 3;
        s.elapsed = Duration::from_secs(4);
        assert_eq!(
            seed_report(&s),
            "seeded 6.0 MiB to 3 peer(s) in 4.0 s (1.5 MiB/s)"
        );
        assert_eq!(seed_checked(4, 4), "seeding: all 4 pieces verified");
        assert!(seed_checked(3, 4).starts_with("seeding: 3 of 4 pieces verified"));
    }

    #[test]
    fn create_lines() {
        let c = crate::create::Created {
            bytes: Vec::new(),
            torrent: single(),
            info_hash_v1: Some([0xab; 20]),
            info_hash_v2: Some([0x01; 32]),
            name: "sample.bin".into(),
            file_count: 1,
            total_length: 40000,
            piece_length: 32768,
            piece_count: 2,
        };
        assert_eq!(
            text(|o| write_created_hashes(o, &c)),
            format!(
                "Info Hash: {}\nInfo Hash v2: {}\n",
                "ab".repeat(20),
                "01".repeat(32)
            )
        );
        assert_eq!(
            created_report(&c, Path::new("out/s.torrent")),
            "wrote out/s.torrent: sample.bin (1 file, 40000 bytes) in 2 pieces of 32768 bytes"
        );
        let v1 = crate::create::Created {
            info_hash_v2: None,
            file_count: 2,
            ..c
        };
        assert_eq!(
            text(|o| write_created_hashes(o, &v1)),
            format!("Info Hash: {}\n", "ab".repeat(20))
        );
        assert!(created_report(&v1, Path::new("m.torrent")).contains("(2 files, 40000 bytes)"));
    }

    #[tokio::test]
    async fn tracker_line() {
        use crate::tracker::server::{ServerConfig, Tracker};
        let cancel = tokio_util::sync::CancellationToken::new();
        let bind = "127.0.0.1:0".parse().expect("an address");
        let (h, task) = Tracker::start(ServerConfig::default(), bind, cancel.clone())
            .await
            .expect("the tracker starts");
        let port = h.local_addr.port();
        assert_eq!(
            tracker_listening(&h),
            format!("listening on http://127.0.0.1:{port}/announce and udp://127.0.0.1:{port}")
        );
        h.stop();
        task.await.expect("the tracker stops");
    }
}
