//! `--live` on a real download on loopback: a `bt-trace seed` and a `bt-trace download
//! --live` of a torrent made with `bt-trace create`. The ladder rows appear on stderr (the
//! handshakes, the unchoke, folded requests and pieces, the close), all of one width (80
//! columns when stderr is not a terminal and COLUMNS is unset), without the progress bar and
//! without trace files; with `--trace` too, both happen.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

const NET: Duration = Duration::from_secs(120);

/// A seeded torrent on loopback: the torrent, its data and the seeder.
pub struct Swarm {
    pub dir: TempDir,
    pub torrent: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    _seeder: ChildGuard,
}

/// Makes `size` bytes of data, its torrent (256 KiB pieces) and a `bt-trace seed` for it.
pub fn swarm(tag: &str, size: u64) -> Swarm {
    let dir = temp_dir(tag);
    let data = dir.path().join("data.bin");
    make_data(&data, size, 7);
    let torrent = dir.path().join("x.torrent");
    bt_trace(
        [
            "create",
            data.to_str().unwrap(),
            "-a",
            "http://127.0.0.1:9/announce",
            "--piece-length",
            "256K",
            "-q",
            "-o",
            torrent.to_str().unwrap(),
        ],
        NET,
    )
    .assert_ok();
    let port = free_port();
    let seeder = bt_trace_spawn(
        [
            "seed",
            torrent.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "-q",
        ],
        &dir.path().join("seed.log"),
    );
    seeder.wait_port(port);
    Swarm {
        dir,
        torrent,
        data,
        port,
        _seeder: seeder,
    }
}

impl Swarm {
    /// `bt-trace download` of the torrent from the seeder, with `extra` arguments, in `cwd`.
    pub fn download(&self, out: &Path, extra: &[&str]) -> Run {
        let peer = format!("127.0.0.1:{}", self.port);
        let port = free_port().to_string();
        let mut args = vec![
            "download",
            "-o",
            out.to_str().unwrap(),
            self.torrent.to_str().unwrap(),
            "--peer",
            &peer,
            "--port",
            &port,
        ];
        args.extend_from_slice(extra);
        let r = bt_trace(args, NET);
        r.assert_ok();
        assert_eq!(
            std::fs::read(out).unwrap(),
            std::fs::read(&self.data).unwrap(),
            "downloaded data differs"
        );
        r
    }
}

#[test]
fn live_ladder_of_a_download() {
    let s = swarm("view-live", 3 * 1024 * 1024 + 100);
    let out = s.dir.path().join("out.bin");
    let r = s.download(&out, &["--live"]);
    let rows: Vec<&str> = r.stderr.lines().filter(|l| l.contains('│')).collect();
    let text = rows.join("\n");
    for want in [
        "TCP open",
        "handshake bt-trace",
        "ext handshake m: ut_metadata",
        "have all",
        "unchoke",
        "interested",
        "request",
        "piece",
        "TCP close",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{}", r.stderr);
    }
    assert!(text.contains("× "), "runs fold:\n{text}");
    // bt-trace (left) sends the requests, the seeder (right) the pieces
    assert!(rows
        .iter()
        .any(|l| l.contains("│─ ") && l.contains("request")));
    assert!(rows.iter().any(|l| l.contains("│◀") && l.contains("piece")));
    let width = rows[0].chars().count();
    assert!(rows.iter().all(|l| l.chars().count() == width), "{text}");
    assert!(
        !r.stderr.contains("trace:"),
        "no trace files without --trace"
    );
    assert!(!r.stderr.contains('\r'), "no progress bar with --live");

    // with --trace as well: the files and the rows
    let traces = s.dir.path().join("traces");
    let out2 = s.dir.path().join("out2.bin");
    let r = s.download(&out2, &["--live", "--trace", traces.to_str().unwrap()]);
    assert!(r.stderr.contains("trace:") && r.stderr.contains("handshake bt-trace"));
}
