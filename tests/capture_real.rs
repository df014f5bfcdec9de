//! The capture layer on the real captures in `captures/` (see captures/README.md), checked against fixed counts
//! and, when `tshark` is on PATH (it is in CI), against tshark's own reading of the same files: frame and UDP
//! counts, TCP payload bytes, every TCP stream's bytes in both directions (`-z follow,tcp,raw`), and the frames
//! of each connection's life (SYN, SYN-ACK, ACK, FIN, RST) from tshark's TCP flags.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use bt_trace::capture::{
    process, CaptureError, CaptureFormat, CaptureReader, CloseReason, ConnId, ConnInfo, Datagram,
    Direction, Endian, Gap, Life, LinkType, Stats, StreamSink,
};

fn captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

#[derive(Default)]
struct Collect {
    conns: BTreeMap<u64, ConnInfo>,
    streams: BTreeMap<(u64, usize), Vec<u8>>,
    gaps: Vec<(u64, Gap)>,
    closes: Vec<(u64, CloseReason)>,
    /// Life steps other than ACKs after the close: (connection, step, frame).
    lives: Vec<(u64, Life, u64)>,
    udp: u64,
    udp_bytes: u64,
}

impl StreamSink for Collect {
    fn on_open(&mut self, info: &ConnInfo) {
        self.conns.insert(info.id.0, *info);
    }
    fn on_data(
        &mut self,
        conn: ConnId,
        dir: Direction,
        offset: u64,
        data: &[u8],
        _frame: u64,
        _ts: i64,
    ) {
        let s = self.streams.entry((conn.0, dir.index())).or_default();
        assert_eq!(
            offset,
            s.len() as u64,
            "conn {} {dir:?}: no gaps in these captures",
            conn.0
        );
        s.extend_from_slice(data);
    }
    fn on_gap(&mut self, conn: ConnId, _dir: Direction, gap: &Gap) {
        self.gaps.push((conn.0, *gap));
    }
    fn on_close(&mut self, conn: ConnId, reason: CloseReason, _ts: i64) {
        self.closes.push((conn.0, reason));
    }
    fn on_life(&mut self, conn: ConnId, life: Life, frame_no: u64, _ts: i64) {
        if !matches!(life, Life::AckAfterClose(_)) {
            self.lives.push((conn.0, life, frame_no));
        }
    }
    fn on_udp(&mut self, dg: &Datagram<'_>) {
        self.udp += 1;
        self.udp_bytes += dg.payload.len() as u64;
    }
}

fn run(name: &str) -> (Collect, Stats, Result<(), CaptureError>, CaptureFormat) {
    let f = BufReader::new(File::open(captures().join(name)).expect("capture file"));
    let mut reader = CaptureReader::new(f).expect("header");
    let format = reader.format();
    let mut sink = Collect::default();
    let mut stats = Stats::default();
    let res = process(&mut reader, &mut sink, &mut stats);
    (sink, stats, res, format)
}

struct Expect {
    file: &'static str,
    link: LinkType,
    frames: u64,
    tcp_conns: u64,
    udp: u64,
    tcp_payload: u64,
}

/// Counts from `capinfos` / tshark on the checked-in files (update them if `captures/make.sh` is rerun).
const EXPECT: &[Expect] = &[
    Expect {
        file: "lo_aria2_to_libtorrent.pcapng",
        link: LinkType::Ethernet,
        frames: 112,
        tcp_conns: 4,
        udp: 10,
        tcp_payload: 1_053_344,
    },
    Expect {
        file: "any_sll_libtorrent_to_aria2.pcapng",
        link: LinkType::LinuxSll,
        frames: 138,
        tcp_conns: 9,
        udp: 0,
        tcp_payload: 1_054_322,
    },
    Expect {
        file: "any_sll2_transmission_to_libtorrent.pcapng",
        link: LinkType::LinuxSll2,
        frames: 133,
        tcp_conns: 7,
        udp: 4,
        tcp_payload: 1_052_765,
    },
    Expect {
        file: "lo_middownload.pcapng",
        link: LinkType::Ethernet,
        frames: 51,
        tcp_conns: 3,
        udp: 0,
        tcp_payload: 427_434,
    },
    Expect {
        file: "lo_middownload.pcap",
        link: LinkType::Ethernet,
        frames: 51,
        tcp_conns: 3,
        udp: 0,
        tcp_payload: 427_434,
    },
    Expect {
        file: "lo_middownload_ns.pcap",
        link: LinkType::Ethernet,
        frames: 51,
        tcp_conns: 3,
        udp: 0,
        tcp_payload: 427_434,
    },
    Expect {
        file: "lo_middownload_be.pcap",
        link: LinkType::Ethernet,
        frames: 51,
        tcp_conns: 3,
        udp: 0,
        tcp_payload: 427_434,
    },
    Expect {
        file: "lo_middownload_be.pcapng",
        link: LinkType::Ethernet,
        frames: 51,
        tcp_conns: 3,
        udp: 0,
        tcp_payload: 427_434,
    },
    Expect {
        file: "lo_middownload_truncated.pcapng",
        link: LinkType::Ethernet,
        frames: 15,
        tcp_conns: 1,
        udp: 0,
        tcp_payload: 245_911,
    },
];

#[test]
fn every_capture_reads_with_the_expected_counts() {
    for e in EXPECT {
        let (sink, stats, res, _) = run(e.file);
        if e.file.contains("truncated") {
            let err = res.expect_err("a truncated file ends with an error");
            assert!(matches!(err, CaptureError::Truncated { .. }), "{err}");
            assert!(err.offset().unwrap() > 0);
            assert!(!stats.warnings.is_empty());
        } else {
            res.unwrap_or_else(|err| panic!("{}: {err}", e.file));
            assert!(
                stats.warnings.is_empty(),
                "{}: {:?}",
                e.file,
                stats.warnings
            );
        }
        assert_eq!(stats.frames, e.frames, "{}", e.file);
        assert_eq!(stats.link_types, vec![(e.link, e.frames)], "{}", e.file);
        assert_eq!(stats.reassembly.connections, e.tcp_conns, "{}", e.file);
        assert_eq!(sink.conns.len() as u64, e.tcp_conns);
        assert_eq!(stats.udp_datagrams, e.udp, "{}", e.file);
        assert_eq!(sink.udp, e.udp);
        assert_eq!(stats.tcp_payload_bytes, e.tcp_payload, "{}", e.file);
        assert_eq!(
            stats.non_ip_frames + stats.undecodable_frames + stats.snaplen_cut_frames,
            0,
            "{}",
            e.file
        );
        assert!(sink.gaps.is_empty(), "{}: {:?}", e.file, sink.gaps);
        // Every connection is closed exactly once.
        assert_eq!(sink.closes.len() as u64, e.tcp_conns, "{}", e.file);
        let delivered: u64 = sink.streams.values().map(|s| s.len() as u64).sum();
        assert_eq!(delivered, stats.reassembly.delivered_bytes);
        assert_eq!(
            delivered + stats.reassembly.duplicate_bytes,
            stats.tcp_payload_bytes,
            "{}",
            e.file
        );
    }
}

#[test]
fn formats_and_byte_orders() {
    let le = Endian::Little;
    let be = Endian::Big;
    assert_eq!(
        run("lo_middownload.pcapng").3,
        CaptureFormat::PcapNg { endian: le }
    );
    assert_eq!(
        run("lo_middownload_be.pcapng").3,
        CaptureFormat::PcapNg { endian: be }
    );
    assert_eq!(
        run("lo_middownload.pcap").3,
        CaptureFormat::Pcap {
            endian: le,
            nanos: false,
            modified: false
        }
    );
    assert_eq!(
        run("lo_middownload_ns.pcap").3,
        CaptureFormat::Pcap {
            endian: le,
            nanos: true,
            modified: false
        }
    );
    assert_eq!(
        run("lo_middownload_be.pcap").3,
        CaptureFormat::Pcap {
            endian: be,
            nanos: false,
            modified: false
        }
    );
}

/// Frames of a file as (timestamp in µs, bytes).
fn frames_of(r: impl Read) -> Vec<(i64, Vec<u8>)> {
    let mut reader = CaptureReader::new(r).unwrap();
    let mut v = Vec::new();
    while let Some(p) = reader.next_packet().unwrap() {
        v.push((p.ts_ns.div_euclid(1000), p.data.to_vec()));
    }
    v
}

#[test]
fn the_same_capture_in_every_format_gives_the_same_frames() {
    let open = |n: &str| BufReader::new(File::open(captures().join(n)).unwrap());
    let reference = frames_of(open("lo_middownload.pcapng"));
    assert_eq!(reference.len(), 51);
    for other in [
        "lo_middownload.pcap",
        "lo_middownload_ns.pcap",
        "lo_middownload_be.pcap",
        "lo_middownload_be.pcapng",
    ] {
        assert!(frames_of(open(other)) == reference, "{other} differs");
    }
    // Two sections of different byte orders in one stream, as `cat a.pcapng b.pcapng` makes.
    let mut both = std::fs::read(captures().join("lo_middownload.pcapng")).unwrap();
    both.extend(std::fs::read(captures().join("lo_middownload_be.pcapng")).unwrap());
    let frames = frames_of(&both[..]);
    assert_eq!(frames.len(), 102);
    assert!(frames[51..] == reference[..]);
}

// ---- tshark as the oracle -------------------------------------------------------------------------------

fn tshark(args: &[&str]) -> Option<String> {
    let out = Command::new("tshark").args(args).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Both directions of a followed stream: (node address, bytes sent by that node).
type Nodes = [(String, Vec<u8>); 2];

/// tshark's reassembled bytes of each TCP stream.
fn tshark_follow(path: &str, streams: u64) -> BTreeMap<u64, Nodes> {
    let mut args = vec!["-n".to_string(), "-r".into(), path.into(), "-q".into()];
    for s in 0..streams {
        args.push("-z".into());
        args.push(format!("follow,tcp,raw,{s}"));
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = tshark(&args).unwrap_or_default();
    let mut res = BTreeMap::new();
    let mut cur: Option<(u64, Nodes)> = None;
    for line in out.lines() {
        if let Some(n) = line.strip_prefix("Filter: tcp.stream eq ") {
            if let Some((k, v)) = cur.take() {
                res.insert(k, v);
            }
            cur = Some((n.trim().parse().unwrap(), Default::default()));
        } else if let Some(rest) = line.strip_prefix("Node ") {
            if let (Some(c), Some((i, addr))) = (cur.as_mut(), rest.split_once(": ")) {
                c.1[i.parse::<usize>().unwrap()].0 = addr.to_string();
            }
        } else if let Some(c) = cur.as_mut() {
            if line.is_empty() || line.starts_with('=') || line.starts_with("Follow:") {
                continue;
            }
            let node = usize::from(line.starts_with('\t'));
            c.1[node].1.extend(hex(line.trim()));
        }
    }
    if let Some((k, v)) = cur {
        res.insert(k, v);
    }
    res
}

#[test]
fn matches_tshark() {
    if tshark(&["-v"]).is_none() {
        eprintln!("tshark not on PATH: skipping the comparison with tshark");
        return;
    }
    let mut all_lives = Vec::new();
    for e in EXPECT {
        let path = captures().join(e.file);
        let path = path.to_str().unwrap();
        let (sink, stats, _, _) = run(e.file);

        let fields = tshark(&[
            "-n",
            "-r",
            path,
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "tcp.len",
            "-e",
            "udp.length",
            "-e",
            "tcp.stream",
        ])
        .unwrap();
        let (mut frames, mut tcp_bytes, mut udp, mut udp_bytes, mut tcp_streams) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for line in fields.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            frames += 1;
            if let Some(Ok(n)) = f.get(1).filter(|s| !s.is_empty()).map(|s| s.parse::<u64>()) {
                tcp_bytes += n;
            }
            if let Some(Ok(n)) = f.get(2).filter(|s| !s.is_empty()).map(|s| s.parse::<u64>()) {
                udp += 1;
                udp_bytes += n - 8;
            }
            if let Some(Ok(n)) = f.get(3).filter(|s| !s.is_empty()).map(|s| s.parse::<u64>()) {
                tcp_streams = tcp_streams.max(n + 1);
            }
        }
        assert_eq!(stats.frames, frames, "{}: frames", e.file);
        assert_eq!(
            stats.tcp_payload_bytes, tcp_bytes,
            "{}: TCP payload bytes",
            e.file
        );
        assert_eq!(
            (sink.udp, sink.udp_bytes),
            (udp, udp_bytes),
            "{}: UDP",
            e.file
        );
        assert_eq!(
            sink.conns.len() as u64,
            tcp_streams,
            "{}: connections",
            e.file
        );

        let follow = tshark_follow(path, tcp_streams);
        assert_eq!(follow.len() as u64, tcp_streams, "{}", e.file);
        let mut compared = 0;
        for (stream, nodes) in &follow {
            // Connection ids are given in order of first appearance, like tcp.stream.
            let info = sink.conns[stream];
            for dir in [Direction::AtoB, Direction::BtoA] {
                let from = if dir == Direction::AtoB {
                    info.a
                } else {
                    info.b
                }
                .to_string();
                let theirs = nodes
                    .iter()
                    .find(|(addr, _)| *addr == from)
                    .map(|(_, b)| b.as_slice())
                    .unwrap_or_default();
                let mine = sink
                    .streams
                    .get(&(*stream, dir.index()))
                    .map(|v| v.as_slice())
                    .unwrap_or_default();
                assert!(
                    mine == theirs,
                    "{}: stream {stream} from {from}: {} bytes here, {} in tshark",
                    e.file,
                    mine.len(),
                    theirs.len()
                );
                compared += mine.len() as u64;
            }
        }
        assert_eq!(
            compared, stats.reassembly.delivered_bytes,
            "{}: every delivered byte was compared",
            e.file
        );
        assert!(compared > 100_000);

        let theirs = tshark_lives(path, &sink.conns);
        assert_eq!(sink.lives, theirs, "{}: connection life", e.file);
        all_lives.extend(sink.lives.iter().map(|(_, l, _)| *l));
    }
    // The captures have complete handshakes and closes, so the comparison was not empty.
    for l in [
        Life::Syn,
        Life::SynAck,
        Life::Established,
        Life::Fin(Direction::AtoB),
        Life::Fin(Direction::BtoA),
    ] {
        assert!(all_lives.contains(&l), "no {l:?} in any capture");
    }
}

/// The life steps of every connection, from tshark's TCP flags: the first SYN (opening the
/// connection), the first SYN-ACK from B, A's first ACK after it, each side's first FIN, the
/// first RST (a refusal if no SYN-ACK came before it); nothing after a RST or after both FINs.
fn tshark_lives(path: &str, conns: &BTreeMap<u64, ConnInfo>) -> Vec<(u64, Life, u64)> {
    let out = tshark(&[
        "-n",
        "-r",
        path,
        "-Y",
        "tcp",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "tcp.stream",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.flags",
    ])
    .unwrap_or_default();
    #[derive(Default)]
    struct Seen {
        syn: bool,
        synack: bool,
        ack: bool,
        fin: [bool; 2],
        closed: bool,
    }
    let mut seen: BTreeMap<u64, Seen> = BTreeMap::new();
    let mut steps = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(frame), Some(stream), Some(port), Some(flags)) = (
            f.first().and_then(|s| s.parse::<u64>().ok()),
            f.get(1).and_then(|s| s.parse::<u64>().ok()),
            f.get(2).and_then(|s| s.parse::<u16>().ok()),
            f.get(3)
                .and_then(|s| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok()),
        ) else {
            continue;
        };
        let info = conns[&stream];
        let dir = if port == info.a.port() {
            Direction::AtoB
        } else {
            Direction::BtoA
        };
        let (fin, syn, rst, ack) = (
            flags & 1 != 0,
            flags & 2 != 0,
            flags & 4 != 0,
            flags & 0x10 != 0,
        );
        let opened = !seen.contains_key(&stream);
        let s = seen.entry(stream).or_default();
        if s.closed {
            continue;
        }
        let mut step = |l| steps.push((stream, l, frame));
        if opened && syn {
            if ack {
                s.synack = true;
                step(Life::SynAck);
            } else {
                s.syn = true;
                step(Life::Syn);
            }
        } else if syn && ack && dir == Direction::BtoA && !s.synack {
            s.synack = true;
            step(Life::SynAck);
        } else if !syn && ack && dir == Direction::AtoB && s.synack && !s.ack {
            s.ack = true;
            step(Life::Established);
        }
        if fin && !s.fin[dir.index()] {
            s.fin[dir.index()] = true;
            step(Life::Fin(dir));
        }
        if rst {
            s.closed = true;
            step(if s.syn && !s.synack && dir == Direction::BtoA {
                Life::Refused
            } else {
                Life::Reset(dir)
            });
        }
        s.closed |= s.fin == [true, true];
    }
    steps
}
