//! tshark as the oracle for synthesized traces: a hand-made BitTorrent exchange (IPv4 and
//! IPv6), an HTTP tracker announce and a UDP tracker packet are written as pcapng, then
//! tshark must dissect every BitTorrent message, show every comment, verify every checksum
//! and raise no warning at all. A BEP 52 exchange (v2 handshakes, messages 21-23) must raise
//! no malformed frame either, and what tshark 4.0 shows for it is pinned down (docs/tracing.md).
//! Skipped, with a note, when tshark is not on PATH.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::common::{skip_unless_installed, Program};
use bt_trace::trace::pcapng::{PcapngOptions, PcapngWriter};
use bt_trace::trace::synth::{udp_datagram, Frame, TcpConversation};
use bt_trace::wire::message::HashRef;
use bt_trace::wire::Message;

const PIECE: usize = 16 * 1024;
const START_NS: u64 = 1_700_000_000_000_000_000;

/// `<len><id><payload>`.
fn msg(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

fn ints(vals: &[u32]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn handshake(peer_id: &[u8; 20]) -> Vec<u8> {
    let mut h = vec![19u8];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    h.extend_from_slice(&[0xab; 20]);
    h.extend_from_slice(peer_id);
    h
}

fn piece(index: u32, begin: u32) -> Vec<u8> {
    let mut p = ints(&[index, begin]);
    p.extend((0..PIECE).map(|i| (i * 7 + index as usize) as u8));
    msg(7, &p)
}

/// One socket write: its bytes and the messages that end in it (end offset, comment).
struct Write {
    from_client: bool,
    bytes: Vec<u8>,
    ends: Vec<(usize, String)>,
    /// `Some(starts_here)` when the write is (part of) one piece message.
    piece: Option<bool>,
}

/// Builds writes from whole messages; `split` cuts the write's bytes at an offset into two
/// writes (a message split across segments and socket calls).
fn w(from_client: bool, msgs: &[(Vec<u8>, &str)]) -> Write {
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for (m, c) in msgs {
        bytes.extend_from_slice(m);
        ends.push((bytes.len(), c.to_string()));
    }
    let piece = (msgs.len() == 1 && msgs[0].0.get(4) == Some(&7)).then_some(true);
    Write {
        from_client,
        bytes,
        ends,
        piece,
    }
}

fn split(write: Write, at: usize) -> [Write; 2] {
    let second = Write {
        from_client: write.from_client,
        bytes: write.bytes[at..].to_vec(),
        ends: write
            .ends
            .iter()
            .filter(|(e, _)| *e > at)
            .map(|(e, c)| (e - at, c.clone()))
            .collect(),
        piece: write.piece.map(|_| false),
    };
    let first = Write {
        from_client: write.from_client,
        bytes: write.bytes[..at].to_vec(),
        ends: write.ends.into_iter().filter(|(e, _)| *e <= at).collect(),
        piece: write.piece,
    };
    [first, second]
}

/// The exchange, and the message types tshark must list, in wire order.
fn exchange() -> (Vec<Write>, Vec<u8>) {
    let mut writes = vec![
        w(true, &[(handshake(b"-BT0001-aaaaaaaaaaaa"), "handshake")]),
        w(
            false,
            &[
                (handshake(b"-TR3000-bbbbbbbbbbbb"), "handshake"),
                (msg(5, &[0xff, 0xff]), "bitfield 16 pieces"),
            ],
        ),
        w(
            true,
            &[(
                msg(20, b"\x00d1:md11:ut_metadatai1eee"),
                "extended handshake",
            )],
        ),
        w(true, &[(msg(2, &[]), "interested")]),
        w(false, &[(msg(1, &[]), "unchoke")]),
        w(
            true,
            &[
                (
                    msg(6, &ints(&[0, 0, 16384])),
                    "request piece 0 begin 0 length 16384",
                ),
                (
                    msg(6, &ints(&[0, 16384, 16384])),
                    "request piece 0 begin 16384 length 16384",
                ),
                (
                    msg(6, &ints(&[1, 0, 16384])),
                    "request piece 1 begin 0 length 16384",
                ),
                (
                    msg(6, &ints(&[1, 16384, 16384])),
                    "request piece 1 begin 16384 length 16384",
                ),
            ],
        ),
        w(false, &[(piece(0, 0), "piece 0 begin 0 length 16384")]),
        w(
            false,
            &[(piece(0, 16384), "piece 0 begin 16384 length 16384")],
        ),
        w(true, &[(msg(4, &ints(&[0])), "have piece 0")]),
    ];
    // A piece split across two socket writes at an odd offset, and a `have` split inside
    // its length prefix.
    writes.extend(split(
        w(false, &[(piece(1, 0), "piece 1 begin 0 length 16384")]),
        5001,
    ));
    writes.extend(split(
        w(
            true,
            &[(
                msg(8, &ints(&[1, 16384, 16384])),
                "cancel piece 1 begin 16384 length 16384",
            )],
        ),
        3,
    ));
    writes.push(w(true, &[(vec![0, 0, 0, 0], "keep-alive")]));
    writes.push(w(
        false,
        &[
            (msg(9, &6881u16.to_be_bytes()), "port 6881"),
            (msg(0, &[]), "choke"),
        ],
    ));
    writes.push(w(true, &[(msg(3, &[]), "not interested")]));
    let types = vec![5, 20, 2, 1, 6, 6, 6, 6, 7, 7, 4, 7, 8, 9, 0, 3];
    (writes, types)
}

/// Writes every message of `writes` on `conv` into `out`, one comment per frame listing the
/// messages that complete in it. With `cut_pieces`, frames of piece messages keep only
/// the 13-byte message header.
fn play<W: std::io::Write>(
    conv: &mut TcpConversation,
    out: &mut PcapngWriter<W>,
    ts: &mut u64,
    writes: &[Write],
    initiator_closes: bool,
    cut_pieces: bool,
) {
    let mut sink = |f: &Frame<'_>, ends: &[(usize, String)], piece: Option<bool>| {
        let comment: Vec<&str> = ends
            .iter()
            .filter(|(e, _)| f.carries_end(*e))
            .map(|(_, c)| c.as_str())
            .collect();
        *ts += 50_000;
        let comment = (!comment.is_empty()).then(|| comment.join("; "));
        let comment = comment.as_deref();
        match piece {
            Some(starts) if cut_pieces => {
                let keep = if starts && f.data_range.start == 0 {
                    13
                } else {
                    0
                };
                out.write_frame_keep(*ts, f, keep, comment)
            }
            _ => out.write_frame(*ts, f, comment),
        }
        .map(|_| ())
    };
    conv.open(|f| sink(f, &[], None)).unwrap();
    for wr in writes {
        conv.data(wr.from_client, &wr.bytes, |f| sink(f, &wr.ends, wr.piece))
            .unwrap();
    }
    conv.close_fin(initiator_closes, |f| sink(f, &[], None))
        .unwrap();
}

const PORT_V4: u16 = 40123;
const PORT_V6: u16 = 40124;
const PORT_HTTP: u16 = 40125;
const PORT_UDP: u16 = 40126;
const PORT_V2: u16 = 40127;

fn write_trace(path: &Path, snaplen: Option<u32>, cut_pieces: bool) -> usize {
    let opts = PcapngOptions {
        snaplen,
        ..PcapngOptions::default()
    };
    let file = std::fs::File::create(path).unwrap();
    let mut out = PcapngWriter::new(file, &opts).unwrap();
    let mut ts = START_NS;
    let (writes, types) = exchange();

    let c4: SocketAddr = "192.0.2.10:50001".parse().unwrap();
    let s4: SocketAddr = format!("198.51.100.7:{PORT_V4}").parse().unwrap();
    let mut conv = TcpConversation::new(c4, s4, 0xffff_f000, 0x1234_5678, 1460).unwrap();
    play(&mut conv, &mut out, &mut ts, &writes, true, cut_pieces);

    let c6: SocketAddr = "[2001:db8::10]:50002".parse().unwrap();
    let s6: SocketAddr = format!("[2001:db8::7]:{PORT_V6}").parse().unwrap();
    let mut conv = TcpConversation::new(c6, s6, 42, 0xffff_ff00, 1440).unwrap();
    play(&mut conv, &mut out, &mut ts, &writes, false, cut_pieces);

    // An HTTP tracker announce.
    let tracker: SocketAddr = format!("198.51.100.1:{PORT_HTTP}").parse().unwrap();
    let mut conv = TcpConversation::new(c4, tracker, 7, 9, 1460).unwrap();
    let req = b"GET /announce?info_hash=%ab%ab&peer_id=-BT0001-aaaaaaaaaaaa&port=50001&uploaded=0&downloaded=0&left=32768&compact=1 HTTP/1.1\r\nHost: 198.51.100.1\r\nUser-Agent: bt-trace\r\n\r\n";
    let body = b"d8:intervali1800e5:peers6:\xc6\x33\x64\x07\x9c\xbbe";
    let mut resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    resp.extend_from_slice(body);
    let http = [
        w(true, &[(req.to_vec(), "announce")]),
        w(false, &[(resp, "announce response: 1 peer")]),
    ];
    play(&mut conv, &mut out, &mut ts, &http, false, cut_pieces);

    // A UDP tracker connect request (BEP 15).
    let udp_tracker: SocketAddr = format!("198.51.100.1:{PORT_UDP}").parse().unwrap();
    let mut buf = Vec::new();
    let mut connect = 0x41727101980u64.to_be_bytes().to_vec();
    connect.extend_from_slice(&ints(&[0, 0xdead_beef]));
    let f = udp_datagram(&mut buf, c4, udp_tracker, &connect).unwrap();
    out.write_frame(ts + 1, &f, Some("UDP tracker connect"))
        .unwrap();

    out.finish().unwrap();
    types.len()
}

fn tshark(file: &Path, extra: &[&str]) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file);
    for o in [
        "tcp.check_checksum:TRUE",
        "ip.check_checksum:TRUE",
        "udp.check_checksum:TRUE",
        "tcp.desegment_tcp_streams:TRUE",
        "bittorrent.desegment:TRUE",
    ] {
        cmd.arg("-o").arg(o);
    }
    for p in [PORT_V4, PORT_V6, PORT_V2] {
        cmd.arg("-d").arg(format!("tcp.port=={p},bittorrent"));
    }
    cmd.arg("-d").arg(format!("tcp.port=={PORT_HTTP},http"));
    cmd.args(extra);
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tshark_dissects_every_message_without_warnings() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.pcapng");
    write_trace(&file, None, false);
    if let Some(keep) = std::env::var_os("BT_TRACE_KEEP_TRACE") {
        // To look at the trace in Wireshark: BT_TRACE_KEEP_TRACE=/tmp/x.pcapng cargo test ...
        std::fs::copy(&file, keep).unwrap();
    }
    let (_, types) = exchange();

    // Every message, in order, once per connection (IPv4 then IPv6). Frames with only a
    // handshake, a keep-alive or piece continuation give empty lines.
    let out = tshark(
        &file,
        &[
            "-Y",
            "bittorrent",
            "-T",
            "fields",
            "-e",
            "bittorrent.msg.type",
            "-E",
            "occurrence=a",
        ],
    );
    let got: Vec<u8> = out
        .split([',', '\n'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let mut want = types.clone();
    want.extend_from_slice(&types);
    assert_eq!(got, want, "tshark's message types:\n{out}");

    // Both handshakes of both connections, each in its own frame, and the keep-alives.
    let hs = tshark(
        &file,
        &["-Y", "bittorrent.protocol.name == \"BitTorrent protocol\""],
    );
    assert_eq!(hs.lines().count(), 4, "{hs}");
    let pieces = tshark(
        &file,
        &[
            "-Y",
            "bittorrent.msg.type == 7",
            "-T",
            "fields",
            "-e",
            "bittorrent.piece.index",
            "-e",
            "bittorrent.piece.begin",
        ],
    );
    let want = "0x00000000\t0x00000000\n0x00000000\t0x00004000\n0x00000001\t0x00000000\n";
    assert_eq!(pieces, want.repeat(2));

    // No malformed packet, no expert info of warning level or above, no TCP analysis flag
    // (lost or ACKed-unseen segments, retransmissions, out-of-order, window full, dup ACK,
    // window update, keep-alive...). Also no bad checksum (those are errors).
    let bad = tshark(
        &file,
        &[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning || tcp.analysis.flags \
             || tcp.checksum.status != 1 || ip.checksum.status != 1 || udp.checksum.status != 1",
        ],
    );
    assert_eq!(bad, "", "tshark found problems");
    // ... and checksums were really verified (status 1 = "Good", 2 would be "Unverified").
    let good = tshark(
        &file,
        &[
            "-Y",
            "tcp.checksum.status == 1 || udp.checksum.status == 1",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    let frames = tshark(&file, &["-T", "fields", "-e", "frame.number"]);
    assert_eq!(good.lines().count(), frames.lines().count());

    // The HTTP announce and its response were dissected.
    let http = tshark(
        &file,
        &[
            "-Y",
            "http.request.method == \"GET\" || http.response.code == 200",
        ],
    );
    assert_eq!(http.lines().count(), 2, "{http}");
    // The UDP datagram is there with its comment.
    let udp = tshark(&file, &["-Y", "udp", "-T", "fields", "-e", "frame.comment"]);
    assert_eq!(udp, "UDP tracker connect\n");

    // Comments: every message's sentence, on the frame where it completes.
    let comments = tshark(
        &file,
        &[
            "-Y",
            "frame.comment",
            "-T",
            "fields",
            "-e",
            "frame.comment",
            "-e",
            "bittorrent.msg.type",
            "-E",
            "occurrence=a",
        ],
    );
    assert!(comments.contains("request piece 0 begin 0 length 16384; request piece 0 begin 16384 length 16384; request piece 1 begin 0 length 16384; request piece 1 begin 16384 length 16384\t6,6,6,6\n"), "{comments}");
    assert!(
        comments.contains("piece 1 begin 0 length 16384\t7\n"),
        "{comments}"
    );
    assert!(
        comments.contains("cancel piece 1 begin 16384 length 16384\t8\n"),
        "{comments}"
    );
    assert!(comments.contains("port 6881; choke\t9,0\n"), "{comments}");
    // The frame that completes a message carries exactly that message's comment
    // (handshakes and keep-alives have no message type in tshark).
    let untyped = ["handshake", "keep-alive", "announce", "UDP tracker"];
    for line in comments.lines() {
        let (text, types) = line.split_once('\t').unwrap();
        let typed = text
            .split("; ")
            .filter(|c| !untyped.iter().any(|p| c.starts_with(p)))
            .count();
        let types = types.split(',').filter(|t| !t.is_empty()).count();
        assert_eq!(typed, types, "{line}");
    }
}

#[test]
fn snaplen_truncates_frames_and_keeps_original_length() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.pcapng");
    let cut = dir.path().join("cut.pcapng");
    write_trace(&full, None, false);
    write_trace(&cut, Some(96), false);
    if let Some(keep) = std::env::var_os("BT_TRACE_KEEP_CUT") {
        std::fs::copy(&cut, keep).unwrap();
    }
    let fields = ["-T", "fields", "-e", "frame.len", "-e", "frame.cap_len"];
    let a = tshark(&full, &fields);
    let b = tshark(&cut, &fields);
    assert_eq!(a.lines().count(), b.lines().count());
    let mut truncated = 0;
    for (la, lb) in a.lines().zip(b.lines()) {
        let (len_a, cap_a) = la.split_once('\t').unwrap();
        let (len_b, cap_b) = lb.split_once('\t').unwrap();
        assert_eq!(len_a, cap_a, "full trace keeps whole frames");
        assert_eq!(len_a, len_b, "original length kept");
        let (len, cap): (usize, usize) = (len_b.parse().unwrap(), cap_b.parse().unwrap());
        assert_eq!(cap, len.min(96));
        truncated += usize::from(cap < len);
    }
    assert!(truncated > 20, "{truncated} frames truncated");
    let capinfos = Command::new("capinfos").arg("-l").arg(&cut).output();
    if let Ok(o) = capinfos {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("96 bytes"), "{text}");
    }
    let size_full = std::fs::metadata(&full).unwrap().len();
    let size_cut = std::fs::metadata(&cut).unwrap().len();
    assert!(size_cut * 3 < size_full, "{size_cut} vs {size_full}");
}

/// The one warning a synthesized trace may raise: tshark flags every RST as
/// "Connection reset (RST)" (expert severity warning), even a clean one. Nothing else.
#[test]
fn reset_and_refused_raise_only_the_rst_warning() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rst.pcapng");
    let out = std::fs::File::create(&file).unwrap();
    let mut out = PcapngWriter::new(out, &PcapngOptions::default()).unwrap();
    let mut ts = START_NS;
    let mut sink = |f: &Frame<'_>| {
        ts += 1000;
        out.write_frame(ts, f, None).map(|_| ())
    };
    let c: SocketAddr = "[2001:db8::10]:50003".parse().unwrap();
    let s: SocketAddr = format!("[2001:db8::7]:{PORT_V6}").parse().unwrap();
    let mut conv = TcpConversation::new(c, s, 1, u32::MAX - 1, 1440).unwrap();
    conv.open(&mut sink).unwrap();
    conv.data(true, &handshake(b"-BT0001-aaaaaaaaaaaa"), &mut sink)
        .unwrap();
    conv.data(false, &piece(3, 0), &mut sink).unwrap();
    conv.reset(true, &mut sink).unwrap();
    let c4: SocketAddr = "192.0.2.10:50004".parse().unwrap();
    let s4: SocketAddr = format!("198.51.100.7:{PORT_V4}").parse().unwrap();
    let mut refused = TcpConversation::new(c4, s4, 5, 6, 1460).unwrap();
    refused.open_refused(&mut sink).unwrap();
    out.finish().unwrap();
    if let Some(keep) = std::env::var_os("BT_TRACE_KEEP_RST") {
        std::fs::copy(&file, keep).unwrap();
    }

    let warnings = tshark(
        &file,
        &[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning || tcp.analysis.flags",
            "-T",
            "fields",
            "-e",
            "tcp.flags.reset",
            "-e",
            "_ws.expert.message",
            "-E",
            "occurrence=a",
        ],
    );
    let lines: Vec<&str> = warnings.lines().collect();
    assert_eq!(lines.len(), 2, "{warnings}");
    for l in lines {
        assert!(
            l.starts_with("1\t") && l.contains("Connection reset (RST)"),
            "{l}"
        );
    }
    let types = tshark(
        &file,
        &[
            "-Y",
            "bittorrent.msg.type",
            "-T",
            "fields",
            "-e",
            "bittorrent.msg.type",
        ],
    );
    assert_eq!(types, "7\n");
}

/// Cutting only piece data (each piece frame keeps its headers and at most the 13-byte
/// message header) keeps every message visible to tshark.
#[test]
fn cutting_piece_data_keeps_every_message() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pieces-cut.pcapng");
    write_trace(&file, None, true);
    if let Some(keep) = std::env::var_os("BT_TRACE_KEEP_PIECES_CUT") {
        std::fs::copy(&file, keep).unwrap();
    }
    let out = tshark(
        &file,
        &[
            "-Y",
            "bittorrent.msg.type",
            "-T",
            "fields",
            "-e",
            "bittorrent.msg.type",
            "-E",
            "occurrence=a",
        ],
    );
    let got: Vec<u8> = out
        .split([',', '\n'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let (_, types) = exchange();
    assert_eq!(got, [types.clone(), types].concat(), "{out}");
    // tshark shows "[BoundError]" in the info column of a cut piece and a note
    // ("Unreassembled fragment"), but nothing malformed and no warning.
    let bad = tshark(
        &file,
        &[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning || tcp.analysis.flags",
        ],
    );
    assert_eq!(bad, "");
}

/// Same frames, same ISNs, same timestamps: the same bytes (the basis of
/// `--trace-deterministic`). Needs no tshark.
#[test]
fn same_input_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pcapng");
    let b = dir.path().join("b.pcapng");
    write_trace(&a, None, false);
    write_trace(&b, None, false);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

/// BEP 52 on the wire: two v2 handshakes (the upgrade bit, byte 7 `0x10`, and the truncated
/// SHA-256), a bitfield, a `hash request` (21) answered by `hashes` (22, split across two
/// socket writes), a second request answered by `hash reject` (23) with a `have` in the same
/// write, then `interested`. Each message is built by `wire::Message` and commented with its
/// own words, as the recorder does. Also returns the bytes of every message from the first
/// hash request to the `have`, in wire order.
fn v2_exchange() -> (Vec<Write>, Vec<u8>) {
    let hs = |peer_id: &[u8; 20]| {
        let mut h = handshake(peer_id);
        h[27] |= 0x10;
        h[28..48].copy_from_slice(&[0x5a; 20]);
        (h, "handshake".to_string())
    };
    let first = HashRef {
        pieces_root: [0x1c; 32],
        base_layer: 0,
        index: 0,
        length: 2,
        proof_layers: 1,
    };
    let second = HashRef {
        index: 512,
        ..first
    };
    let hashes: Vec<u8> = (0..3u8).flat_map(|i| [i + 1; 32]).collect();
    let m = |msg: Message<'_>| (msg.to_vec(), msg.to_string());
    let v2_msgs = [
        m(Message::HashRequest(first)),
        m(Message::Hashes {
            hashes_of: first,
            hashes: &hashes,
        }),
        m(Message::HashRequest(second)),
        m(Message::HashReject(second)),
        m(Message::Have { index: 3 }),
    ];
    let unknown_to_tshark = v2_msgs.iter().flat_map(|(b, _)| b.clone()).collect();
    let [req1, hashes, req2, reject, have] = v2_msgs;
    let writes = vec![
        w2(true, vec![hs(b"-BT0001-aaaaaaaaaaaa")]),
        w2(
            false,
            vec![
                hs(b"-lt20800-bbbbbbbbbbb"),
                m(Message::Bitfield(&[0xff, 0xe0])),
            ],
        ),
        w2(true, vec![req1]),
        w2(false, vec![hashes]),
        w2(true, vec![req2]),
        w2(false, vec![reject, have]),
        w2(true, vec![m(Message::Interested)]),
    ];
    let mut out = Vec::new();
    for wr in writes {
        // the `hashes` message arrives in two writes, cut inside its hashes
        if wr.bytes.get(4) == Some(&22) {
            out.extend(split(wr, 70));
        } else {
            out.push(wr);
        }
    }
    (out, unknown_to_tshark)
}

/// [`w`] with owned comments.
fn w2(from_client: bool, msgs: Vec<(Vec<u8>, String)>) -> Write {
    let msgs: Vec<(Vec<u8>, &str)> = msgs.iter().map(|(b, c)| (b.clone(), c.as_str())).collect();
    w(from_client, &msgs)
}

#[test]
fn tshark_shows_v2_hash_messages_without_malformed_frames() {
    skip_unless_installed!(&[Program::Tshark]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v2.pcapng");
    let (writes, unknown_to_tshark) = v2_exchange();
    {
        let f = std::fs::File::create(&file).unwrap();
        let mut out = PcapngWriter::new(f, &PcapngOptions::default()).unwrap();
        let c: SocketAddr = "192.0.2.10:50003".parse().unwrap();
        let s: SocketAddr = format!("198.51.100.7:{PORT_V2}").parse().unwrap();
        let mut conv = TcpConversation::new(c, s, 0x0100_0000, 0x7700_0000, 1460).unwrap();
        let mut ts = START_NS;
        play(&mut conv, &mut out, &mut ts, &writes, true, false);
        out.finish().unwrap();
    }
    if let Some(keep) = std::env::var_os("BT_TRACE_KEEP_V2") {
        std::fs::copy(&file, keep).unwrap();
    }
    // No malformed frame, no warning, no TCP analysis flag: as for the v1 exchange.
    let bad = tshark(
        &file,
        &[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning || tcp.analysis.flags",
        ],
    );
    assert_eq!(bad, "", "tshark found problems");
    // Both v2 handshakes dissect: the reserved bytes as hex (0x10 of byte 7 set, not named),
    // the truncated SHA-256 under "SHA1 Hash of info dictionary".
    let hs = tshark(
        &file,
        &[
            "-Y",
            "bittorrent.info_hash",
            "-T",
            "fields",
            "-e",
            "bittorrent.reserved",
            "-e",
            "bittorrent.info_hash",
        ],
    );
    let line = format!("0000000000100015\t{}\n", "5a".repeat(20));
    assert_eq!(hs, line.repeat(2));
    // tshark 4.0 knows no message 21, 22 or 23: only the bitfield and `interested` get a type;
    // a frame holding one of them is "Continuation data", its bytes under "Extended Message"
    // (`bittorrent.continuous_data`), the `have` behind the reject in the same segment
    // included. It resynchronizes on the next segment (`interested`).
    let types = tshark(
        &file,
        &[
            "-Y",
            "bittorrent.msg.type",
            "-T",
            "fields",
            "-e",
            "bittorrent.msg.type",
        ],
    );
    assert_eq!(types, "5\n2\n");
    let cont = tshark(
        &file,
        &[
            "-Y",
            "bittorrent.continuous_data",
            "-T",
            "fields",
            "-e",
            "_ws.col.Info",
            "-e",
            "bittorrent.continuous_data",
            "-e",
            "frame.comment",
        ],
    );
    let rows: Vec<Vec<&str>> = cont.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 5, "{cont}");
    assert!(
        rows.iter().all(|r| r[0].trim() == "Continuation data"),
        "{cont}"
    );
    let shown: String = rows.iter().map(|r| r[1]).collect();
    assert_eq!(shown, hex::encode(&unknown_to_tshark), "{cont}");
    // ... and our comments name each message on the frame where it ends
    let comments: Vec<&str> = rows
        .iter()
        .map(|r| r[2])
        .filter(|c| !c.is_empty())
        .collect();
    let words = |w: &str| w.replace("ROOT", &"1c".repeat(32));
    assert_eq!(
        comments,
        [
            words("hash request root ROOT base 0 index 0 length 2 proof 1"),
            words("hashes root ROOT base 0 index 0 length 2 proof 1 (3 hashes)"),
            words("hash request root ROOT base 0 index 512 length 2 proof 1"),
            words("hash reject root ROOT base 0 index 512 length 2 proof 1; have 3"),
        ]
    );
}
