//! Load benchmark of `bt-trace seed` (run by `bench/load.sh`): makes a torrent with
//! `bt-trace create`, starts the seeder on 127.0.0.1, and runs the load generator of the test
//! (`tests/common/load.rs`) against it: ROUNDS rounds of N honest leechers, then the same with
//! the abusive leechers mixed in. Prints per run the time until all complete and the upload
//! rate, and at the end the seeder's peak RSS.
//!
//! ```text
//! cargo run --release --example load -- [--leechers 200] [--size-mib 4] [--piece-kib 32]
//!     [--rounds 3] [--bt-trace target/release/bt-trace]
//! ```

#[path = "../tests/common/load.rs"]
mod generator;

use generator::{Abuse, Plan, Target};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    leechers: usize,
    size_mib: u64,
    piece_kib: u64,
    rounds: usize,
    bt_trace: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    // next to this example's directory: target/<profile>/bt-trace
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let default_bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("bt-trace"))
        .unwrap_or_else(|| PathBuf::from("bt-trace"));
    let mut a = Args {
        leechers: 200,
        size_mib: 4,
        piece_kib: 32,
        rounds: 3,
        bt_trace: default_bin,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--leechers" => a.leechers = num()? as usize,
            "--size-mib" => a.size_mib = num()?,
            "--piece-kib" => a.piece_kib = num()?,
            "--rounds" => a.rounds = num()? as usize,
            "--bt-trace" => a.bt_trace = PathBuf::from(&value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let args = parse_args()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("load.bin");
    let torrent = dir.path().join("load.torrent");
    generator::write_data(&data, args.size_mib << 20, 1313).map_err(|e| e.to_string())?;
    let status = Command::new(&args.bt_trace)
        .args(generator::create_args(
            &data,
            &torrent,
            args.piece_kib << 10,
        ))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", args.bt_trace.display()))?;
    if !status.success() {
        return Err(format!("bt-trace create: {status}"));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log = std::fs::File::create(dir.path().join("seed.log")).map_err(|e| e.to_string())?;
    let mut seeder = Command::new(&args.bt_trace)
        .args(generator::seed_args(
            &torrent,
            &data,
            port,
            Some(args.leechers + 50),
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ready = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if ready.elapsed() > Duration::from_secs(60) {
            let _ = seeder.kill();
            return Err("the seeder never listened".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let target = Target::load(&torrent, addr)?;
    println!(
        "{} leechers, {} MiB torrent in {} KiB pieces, seeder pid {}",
        args.leechers,
        args.size_mib,
        args.piece_kib,
        seeder.id()
    );
    let mut failed = false;
    for round in 1..=args.rounds {
        for abusers in [
            Vec::new(),
            Abuse::ALL.iter().flat_map(|&a| [a, a]).collect(),
        ] {
            let plan = Plan {
                honest: args.leechers,
                abusers,
                timeout: Duration::from_secs(300),
            };
            let r = generator::run(&target, &plan);
            let dropped = r
                .abusers
                .iter()
                .filter(|a| a.dropped_after.is_some())
                .count();
            if r.abusers.is_empty() {
                println!("round {round}: {}", r.summary());
            } else {
                let n = r.abusers.len();
                println!("round {round}: {}, {dropped} of {n} dropped", r.summary());
            }
            for f in r.failures().iter().take(5) {
                println!("  {f}");
            }
            for a in r.abusers.iter().filter(|a| a.dropped_after.is_none()) {
                println!(
                    "  {:?} not dropped ({} sent): {:?}",
                    a.abuse, a.sent, a.error
                );
            }
            failed |= !r.failures().is_empty() || dropped < r.abusers.len();
        }
    }
    let peak = generator::peak_rss_kib(seeder.id());
    let _ = seeder.kill();
    let _ = seeder.wait();
    match peak {
        Some(kib) => println!("seeder peak RSS: {:.1} MiB", kib as f64 / 1024.0),
        None => println!("seeder peak RSS: unknown (no /proc)"),
    }
    if failed {
        return Err("some leechers failed or some abusers were not dropped".into());
    }
    Ok(())
}
