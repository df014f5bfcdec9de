//! Hostile peers next to an honest real seeder (aria2c): each fake peer below misbehaves in one
//! way. bt-trace must drop it, re-fetch anything it spoiled from the honest seeder, and finish
//! with correct files, without a panic.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const DOWNLOAD: Duration = Duration::from_secs(120);

/// How a fake peer misbehaves once the handshake is done.
#[derive(Clone, Copy, Debug)]
enum Evil {
    /// A length prefix of almost 4 GiB.
    HugeLength,
    /// Has everything, unchokes, and answers every request with garbage of the right size.
    WrongData,
    /// `have` for a piece past the end of the torrent.
    BadIndex,
    /// A bitfield one byte too long.
    WrongBitfieldSize,
    /// A `piece` for a block nobody asked for, with a wrong length.
    UnrequestedBlock,
    /// Random bytes instead of a handshake.
    GarbageHandshake,
}

struct FakePeer {
    addr: SocketAddr,
    /// How many of its connections the client closed (EOF, reset or broken pipe).
    closed_by_client: Arc<AtomicUsize>,
    /// How many garbage blocks it sent.
    lies: Arc<AtomicUsize>,
}

fn spawn_fake(evil: Evil, info_hash: [u8; 20], pieces: usize) -> FakePeer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake peer");
    let addr = listener.local_addr().expect("addr");
    let closed_by_client = Arc::new(AtomicUsize::new(0));
    let lies = Arc::new(AtomicUsize::new(0));
    let (closed, lies2) = (closed_by_client.clone(), lies.clone());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (closed, lies) = (closed.clone(), lies2.clone());
            thread::spawn(move || {
                // Ok: EOF; Err: reset or broken pipe on write. Both mean the client hung up
                // (a read timeout would mean it left the connection hanging).
                match serve_fake(stream, evil, info_hash, pieces, &lies) {
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    _ => {
                        closed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    FakePeer {
        addr,
        closed_by_client,
        lies,
    }
}

/// Runs one fake connection; returns Ok when the client closed it.
fn serve_fake(
    mut s: TcpStream,
    evil: Evil,
    info_hash: [u8; 20],
    pieces: usize,
    lies: &AtomicUsize,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs)?;
    if let Evil::GarbageHandshake = evil {
        s.write_all(&[0x5a; 68])?;
    } else {
        let mut reply = Vec::from(&b"\x13BitTorrent protocol"[..]);
        reply.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        reply.extend_from_slice(&info_hash);
        reply.extend_from_slice(b"-XX0000-evilevilevil");
        s.write_all(&reply)?;
    }
    let bits = pieces.div_ceil(8);
    let full_bitfield = |extra: usize| {
        let mut m = ((1 + bits + extra) as u32).to_be_bytes().to_vec();
        m.push(5);
        let mut b = vec![0xffu8; bits + extra];
        if pieces % 8 != 0 && extra == 0 {
            b[bits - 1] = 0xffu8 << (8 - pieces % 8);
        }
        m.extend_from_slice(&b);
        m
    };
    match evil {
        Evil::HugeLength => s.write_all(&[0xff, 0xff, 0xff, 0xf0, 7])?,
        Evil::BadIndex => {
            let mut m = vec![0, 0, 0, 5, 4];
            m.extend_from_slice(&((pieces + 5) as u32).to_be_bytes());
            s.write_all(&m)?;
        }
        Evil::WrongBitfieldSize => s.write_all(&full_bitfield(1))?,
        Evil::UnrequestedBlock => {
            s.write_all(&full_bitfield(0))?;
            s.write_all(&[0, 0, 0, 1, 1])?; // unchoke
            let mut m = (9u32 + 100).to_be_bytes().to_vec();
            m.push(7);
            m.extend_from_slice(&0u32.to_be_bytes());
            m.extend_from_slice(&3u32.to_be_bytes()); // begin 3: never a block boundary
            m.extend_from_slice(&[0u8; 100]);
            s.write_all(&m)?;
        }
        Evil::WrongData => {
            s.write_all(&full_bitfield(0))?;
            s.write_all(&[0, 0, 0, 1, 1])?; // unchoke
        }
        Evil::GarbageHandshake => {}
    }
    // Then answer requests (WrongData) or just read until the client hangs up.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let msg: Vec<u8> = buf.drain(..4 + len).collect();
            if let (Evil::WrongData, Some(6)) = (evil, msg.get(4)) {
                if len == 13 {
                    let index = &msg[5..9];
                    let begin = &msg[9..13];
                    let length = u32::from_be_bytes([msg[13], msg[14], msg[15], msg[16]]);
                    let mut reply = (9 + length).to_be_bytes().to_vec();
                    reply.push(7);
                    reply.extend_from_slice(index);
                    reply.extend_from_slice(begin);
                    reply.extend(std::iter::repeat_n(0xa5u8, length as usize));
                    s.write_all(&reply)?;
                    lies.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}

#[test]
fn hostile_peers_are_dropped_and_the_download_completes() {
    skip_unless_installed!(&[Program::Opentracker, Program::Aria2c, Program::Mktorrent]);
    let tracker = Tracker::shared();
    let src = temp_dir("hostile-src");
    let content = src.path().join("hostile.bin");
    make_data(&content, 8 << 20, 77);
    let t = mktorrent(
        &content,
        &src.path().join("hostile.torrent"),
        16,
        &[&[&tracker.http_url()]],
    );
    tracker.allow(&[&t.info_hash]);
    let _seeder = Aria2::seed(&t, src.path(), src.path(), &["--max-upload-limit=4M"]);
    tracker.wait_seeding(&t.info_hash, 1);

    let all = [
        Evil::HugeLength,
        Evil::WrongData,
        Evil::BadIndex,
        Evil::WrongBitfieldSize,
        Evil::UnrequestedBlock,
        Evil::GarbageHandshake,
    ];
    let fakes: Vec<(Evil, FakePeer)> = all
        .iter()
        .map(|&e| (e, spawn_fake(e, t.info_hash_bytes(), t.piece_count())))
        .collect();

    let out_dir = temp_dir("hostile-out");
    let out = out_dir.path().join("hostile.bin");
    let mut args: Vec<String> = vec![
        "download".into(),
        "-o".into(),
        out.display().to_string(),
        t.path.display().to_string(),
    ];
    for (_, f) in &fakes {
        args.push("--peer".into());
        args.push(f.addr.to_string());
    }
    let run = bt_trace(&args, DOWNLOAD);
    run.assert_ok();
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_same_files(&t, src.path(), &DownloadedAt::File(out.clone()));

    // The liar really lied, and was dropped for it.
    let liar = &fakes[1].1;
    assert!(
        liar.lies.load(Ordering::SeqCst) > 0,
        "the liar got no request"
    );
    assert!(
        run.stderr.contains("failed verification") && run.stderr.contains("dropped for bad data"),
        "summary does not report the bad data:\n{}",
        run.stderr
    );
    // Every fake was connected to, and its connection ended (the fakes' threads notice the
    // hang-up a moment after bt-trace's exit at the latest).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (evil, f) in &fakes {
        while f.closed_by_client.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{evil:?}: no connection of this fake peer ended"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}
