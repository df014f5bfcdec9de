//! `bt-trace seed` under load on 127.0.0.1: 200 leechers at once (the load generator in
//! `tests/common/load.rs`, shared with `examples/load.rs` and `bench/load.sh`), then the same
//! 200 with abusive leechers mixed in. Needs nothing but bt-trace: the torrent is made by
//! `bt-trace create`, the seeder is the real binary.
//!
//! Checked: every leecher gets every piece SHA-1-verified, the seeder survives both runs, each
//! abuser is dropped (the seeder closes its connection, and says why at `-v`), the abusers
//! slow the honest leechers by less than 2x, and the seeder's peak RSS stays under a bound;
//! with the default `--max-peers` the leechers beyond it are told (handshake, then closed) and
//! complete by dialing again.

use crate::common;

#[path = "../common/load.rs"]
mod generator;

use common::*;
use generator::{Abuse, Plan, Target};
use sha1::{Digest, Sha1};
use std::time::Duration;

const LEECHERS: usize = 200;
/// 2 MiB in 64 pieces of 32 KiB: 400 MiB served per run, quick even in the dev profile.
const SIZE: u64 = 2 << 20;
const PIECE: u64 = 32 << 10;
/// Only stops a hung run.
const TIMEOUT: Duration = Duration::from_secs(50);
/// Bound on the seeder's peak RSS. What it holds: the torrent's state (a few KiB), per
/// connection a session with its read buffer (up to 256 KiB, filled only as far as messages
/// arrive: a choked leecher sends a few bytes) and up to 500 queued requests, and per
/// unchoked peer one read job of 16 blocks (256 KiB) at a time; plus the runtime and the
/// blocking pool's threads (2 MiB stacks, touched only a little). Measured: about 20 MiB;
/// the bound leaves room for a busy machine's allocator, not for per-connection copies of
/// the data (200 x 2 MiB would be 400 MiB).
const RSS_BOUND_KIB: u64 = 96 * 1024;

#[test]
fn two_hundred_leechers_and_abusers_against_one_seeder() {
    let dir = temp_dir("load");
    let data = dir.path().join("load.bin");
    let torrent = dir.path().join("load.torrent");
    generator::write_data(&data, SIZE, 1313).expect("write the data");
    bt_trace(generator::create_args(&data, &torrent, PIECE), NET).assert_ok();

    let port = free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let target = Target::load(&torrent, addr).expect("read the torrent");
    // the generator checks pieces against the torrent's hashes; check those against the data
    let bytes = std::fs::read(&data).expect("read the data");
    let want: Vec<[u8; 20]> = bytes
        .chunks(PIECE as usize)
        .map(|p| Sha1::digest(p).into())
        .collect();
    assert_eq!(target.hashes, want, "the torrent's piece hashes");

    // room for all 200 (and the abusers) at once: the default --max-peers is 50
    let seeder = bt_trace_spawn(
        generator::seed_args(&torrent, &data, port, Some(LEECHERS + 50)),
        &dir.path().join("seed.log"),
    );
    seeder.wait_port(port);

    let honest = Plan {
        honest: LEECHERS,
        abusers: Vec::new(),
        timeout: TIMEOUT,
    };
    let mixed = Plan {
        abusers: Abuse::ALL.iter().flat_map(|&a| [a, a]).collect(),
        ..honest.clone()
    };
    // each twice, alternating, and the quicker run of each compared: one run is short enough
    // (about 0.5 s) for a busy neighbour to double it
    let (mut base_best, mut mixed_best) = (Duration::MAX, Duration::MAX);
    for round in 1..=2 {
        let base = generator::run(&target, &honest);
        eprintln!("round {round}, honest only:  {}", base.summary());
        assert!(base.failures().is_empty(), "{:#?}", base.failures());
        seeder.assert_running();
        base_best = base_best.min(base.all_done);

        let run = generator::run(&target, &mixed);
        eprintln!("round {round}, with abusers: {}", run.summary());
        assert!(run.failures().is_empty(), "{:#?}", run.failures());
        seeder.assert_running();
        for a in &run.abusers {
            eprintln!(
                "  {:?}: dropped after {:?}, {} sent",
                a.abuse, a.dropped_after, a.sent
            );
            assert!(a.error.is_none(), "{a:?}");
            assert!(
                a.dropped_after.is_some(),
                "{:?} was not dropped: {a:?}\n{}",
                a.abuse,
                seeder.log_tail()
            );
        }
        mixed_best = mixed_best.min(run.all_done);
    }
    // the seeder says why it dropped each (at -v)
    let log = seeder.log_text();
    for reason in [
        "request flood",
        "past the end of piece",
        "longer than 16 KiB",
        "repeated `have` flood",
        "larger than the maximum",
        "interest flood",
    ] {
        assert!(
            log.contains(reason),
            "no {reason:?} in the seeder's log:\n{}",
            tail(&log, 40)
        );
    }
    // the abusers cost the honest leechers less than half their speed
    assert!(
        mixed_best <= base_best * 2,
        "all complete with abusers after {mixed_best:?}, without {base_best:?}"
    );

    let peak = generator::peak_rss_kib(seeder.id()).expect("the seeder's VmHWM");
    eprintln!(
        "seeder peak RSS: {:.1} MiB (bound {} MiB)",
        peak as f64 / 1024.0,
        RSS_BOUND_KIB / 1024
    );
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    assert!(!log.contains("panicked"), "{}", tail(&log, 40));
    drop(seeder);

    // With the default --max-peers (50) the seeder refuses the others, and says so: its
    // handshake, then it closes (a silent close before the handshake would fail the leecher).
    // The refused leechers dial again, as real clients do, and all complete.
    let port = free_port();
    let target = Target {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ..target
    };
    let seeder = bt_trace_spawn(
        generator::seed_args(&torrent, &data, port, None),
        &dir.path().join("seed-default.log"),
    );
    seeder.wait_port(port);
    let run = generator::run(&target, &honest);
    eprintln!("default --max-peers: {}", run.summary());
    assert!(run.failures().is_empty(), "{:#?}", run.failures());
    assert!(run.refused > 0, "200 leechers at once, none refused");
    seeder.assert_running();
    assert!(seeder
        .log_text()
        .contains("refused, 50 peers connected (--max-peers 50)"));
}

/// Bound for the one-shot `bt-trace create`.
const NET: Duration = Duration::from_secs(60);
