//! Command-line arguments (clap derive). Command names and argument order follow the
//! CodeCrafters "Build your own BitTorrent" course (see /work/shared/design.md): snake_case
//! names such as `magnet_parse`, and `download_piece -o PATH FILE INDEX`.
//!
//! Only the definitions live here: each option is declared once (shared ones in the `Args`
//! structs at the end) and nothing here runs a command.

use clap::{ArgAction, Args, Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "bt-trace",
    version,
    max_term_width = 100,
    about = "A BitTorrent client and protocol tracer",
    long_about = "A BitTorrent client and protocol tracer.\n\n\
        Results go to stdout, logs and errors to stderr. Exit status: 0 ok, 1 error, 2 usage error, \
        130 interrupted (Ctrl-C, SIGTERM or SIGHUP)."
)]
pub struct Cli {
    /// More logging on stderr: -v info, -vv debug, -vvv trace (every message sent and
    /// received). Without -v, RUST_LOG is used (e.g. RUST_LOG=bt_trace=debug), and warnings
    /// only by default.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands. The CodeCrafters ones keep the course's exact stdout format; richer output is
/// behind flags (`--json`).
#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
pub enum Command {
    /// Decode a bencoded value and print it as JSON.
    ///
    /// Byte strings that are not UTF-8 (piece hashes, compact peer lists) are printed with each
    /// invalid byte replaced by U+FFFD; --hex prints them as "<hex:...>" instead. A file
    /// (`--file x.torrent`) or standard input (`-`) is shown indented, with binary strings
    /// as hex.
    Decode {
        /// The bencoded value, e.g. 'd3:foo3:bare'; `-` reads standard input.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        bencoded: Option<OsString>,
        /// Read the bencoded value from FILE, e.g. a .torrent file.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Show byte strings that are not UTF-8 as "<hex:0a1b...>" so no byte is lost.
        #[arg(long)]
        hex: bool,
    },

    /// Encode JSON (integers, strings, arrays, objects) as bencode; the raw bytes go to stdout.
    Encode {
        /// The JSON value, e.g. '{"foo":"bar"}' (a negative number such as -5 works too).
        #[arg(allow_hyphen_values = true)]
        json: String,
    },

    /// Show what a .torrent file contains.
    ///
    /// Prints the CodeCrafters lines (Tracker URL, Length, Info Hash, Piece Length, Piece
    /// Hashes), then for multi-file torrents a `Files:` list, then `Announce List:` tiers
    /// when the torrent has any. `Tracker URL` is `announce`, or the first announce-list URL;
    /// for a trackerless torrent it is left empty (and a warning goes to stderr).
    Info {
        /// The .torrent file.
        torrent: PathBuf,
        #[command(flatten)]
        json: JsonArg,
    },

    /// Parse a magnet link: prints `Tracker URL:` (the first `tr`, empty if none) and
    /// `Info Hash:`.
    MagnetParse {
        /// The magnet link (quote it: it contains '&').
        link: String,
        #[command(flatten)]
        json: JsonArg,
    },

    /// Ask the torrent's tracker(s) for peers: one `ip:port` a line.
    Peers {
        /// The .torrent file.
        torrent: PathBuf,
        #[command(flatten)]
        port: PortArg,
        #[command(flatten)]
        trace: TraceArgs,
    },

    /// Connect to a peer and exchange handshakes: prints `Peer ID: <40 hex>`.
    Handshake {
        /// The .torrent file.
        torrent: PathBuf,
        /// The peer: IP:PORT, [IPv6]:PORT or HOST:PORT, e.g. 127.0.0.1:6881 or
        /// localhost:6881.
        #[arg(value_parser = peer_addr)]
        peer: PeerAddr,
        /// Accepted as on the other networked commands, but a handshake announces nothing.
        #[arg(long, hide = true, default_value_t = crate::client::DEFAULT_PORT)]
        port: u16,
        #[command(flatten)]
        trace: TraceArgs,
    },

    /// Download one piece and write its bytes to PATH.
    DownloadPiece {
        #[command(flatten)]
        output: OutputArg,
        /// The .torrent file.
        torrent: PathBuf,
        /// The piece index (0-based).
        index: u32,
        #[command(flatten)]
        net: NetArgs,
    },

    /// Download the whole torrent. For a single-file torrent PATH is the file; for a
    /// multi-file torrent it is the directory the torrent's files go into. Running the same
    /// command again after an interruption keeps every verified piece.
    Download {
        #[command(flatten)]
        output: OutputArg,
        /// The .torrent file.
        torrent: PathBuf,
        /// Once complete, keep seeding (serving the torrent to other peers) until Ctrl-C.
        #[arg(long)]
        seed: bool,
        #[command(flatten)]
        slots: UploadSlotsArg,
        #[command(flatten)]
        net: NetArgs,
    },

    /// Seed a torrent from data on disk until Ctrl-C/SIGTERM: checks every piece first (only
    /// verified pieces are served), announces to the trackers, accepts peers on --port and
    /// dials the --peer addresses; choking with --upload-slots slots plus an optimistic unchoke.
    /// See docs/seeding.md.
    Seed {
        /// The .torrent file.
        torrent: PathBuf,
        /// The data: the file of a single-file torrent, or the directory that holds the files
        /// of a multi-file torrent (as `download -o` writes them).
        #[arg(long, value_name = "PATH")]
        data: PathBuf,
        #[command(flatten)]
        slots: UploadSlotsArg,
        #[command(flatten)]
        net: NetArgs,
    },

    /// Connect to a magnet link's peers (its `tr` trackers, `x.pe` peers and --peer) until one
    /// completes the handshake and the extension handshake; prints `Peer ID: <40 hex>` and
    /// `Peer Metadata Extension ID: <n>` (the peer's id for ut_metadata).
    MagnetHandshake {
        /// The magnet link (quote it: it contains '&').
        link: String,
        #[command(flatten)]
        peers: PeersArg,
        #[command(flatten)]
        port: PortArg,
        #[command(flatten)]
        trace: TraceArgs,
    },

    /// Fetch a magnet link's info dictionary from its peers (BEP 9) and print the same lines as
    /// `info` (`Tracker URL` is the link's first `tr`).
    MagnetInfo {
        /// The magnet link.
        link: String,
        #[command(flatten)]
        peers: PeersArg,
        #[command(flatten)]
        port: PortArg,
        #[command(flatten)]
        trace: TraceArgs,
    },

    /// Fetch a magnet link's metadata, then download one piece and write its bytes to PATH.
    MagnetDownloadPiece {
        #[command(flatten)]
        output: OutputArg,
        /// The magnet link.
        link: String,
        /// The piece index (0-based).
        index: u32,
        #[command(flatten)]
        net: NetArgs,
    },

    /// Fetch a magnet link's metadata, then download the whole torrent (PATH as for
    /// `download`).
    MagnetDownload {
        #[command(flatten)]
        output: OutputArg,
        /// The magnet link.
        link: String,
        #[command(flatten)]
        net: NetArgs,
    },

    /// Decode BitTorrent in capture files (pcap, pcapng) taken with Wireshark, tcpdump or
    /// dumpcap: every peer connection on any port, tracker exchanges (HTTP and UDP), a
    /// summary and a table per connection.
    ///
    /// Connections picked up mid-stream are decoded from the first valid message framing;
    /// MSE/PE-encrypted ones are reported as such. A capture that is cut short is analyzed
    /// up to the damage, with a warning (exit status 0). See docs/analyze.md.
    Analyze(AnalyzeArgs),

    /// Draw the messages of a capture (pcap, pcapng) or of a bt-trace JSON Lines trace as a
    /// ladder: per connection a two-column sequence diagram, an arrow per message with its
    /// key fields, frame number and time; runs of the same message are folded ("× 16 request
    /// 11:0..256 KiB"). Fits the terminal (or COLUMNS, else 80 columns). See docs/view.md.
    Ladder(LadderArgs),

    /// Make a .torrent file of a file or a directory; prints `Info Hash: <40 hex>`.
    ///
    /// A directory's files go in the order mktorrent uses (their relative paths sorted byte by
    /// byte; hidden and empty files included), so mktorrent with the same piece length makes
    /// the same info hash.
    Create(CreateArgs),

    /// Run a BitTorrent tracker: HTTP and UDP (BEP 15) on one port, like opentracker.
    ///
    /// Prints `listening on http://ADDR/announce and udp://ADDR` on stderr and serves until
    /// Ctrl-C, SIGTERM or SIGHUP (exit status 0). Any info hash is accepted; peers that stop
    /// announcing are dropped after twice the interval and a minute. See docs/trackers.md.
    Tracker(TrackerArgs),

    /// The classroom swarm, on 127.0.0.1 with nothing outside bt-trace: a tracker, a few
    /// seeders and a traced download, then a table per peer and the commands to look at the
    /// trace.
    ///
    /// Starts the built-in tracker on --port, makes deterministic content (a text file, a
    /// binary file, one that ends in a short last piece) and its torrent, starts --seeders
    /// bt-trace seeders (and the real clients of --with), and downloads with --trace. Everything
    /// goes under --out DIR. See docs/demo.md.
    Demo(DemoArgs),

    /// Print a shell completion script to stdout, e.g.
    /// `bt-trace completions bash > /etc/bash_completion.d/bt-trace`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) to stdout, e.g. `bt-trace man | man -l -`.
    Man,
}

/// `demo` options.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where everything goes: data/, classroom.torrent, download/, trace/ (and clients/).
    #[arg(long, value_name = "DIR", default_value = crate::demo::DEFAULT_OUT)]
    pub out: PathBuf,
    /// Replace the demo's files of an earlier run in --out (other files there are kept).
    #[arg(long)]
    pub force: bool,
    /// About how many bytes of content (suffixes K and M), at least 64K.
    #[arg(long, value_name = "N", default_value = "4M", value_parser = parse_demo_size)]
    pub size: u64,
    /// How many bt-trace seeders to start.
    #[arg(long, value_name = "N", default_value_t = crate::demo::DEFAULT_SEEDERS,
          value_parser = parse_seeders)]
    pub seeders: usize,
    /// The tracker's port on 127.0.0.1 (HTTP and UDP); 0 picks a free one. Seeders and the
    /// downloader take free ports (with --reproducible: the ports right after this one).
    #[arg(long, default_value_t = crate::demo::DEFAULT_PORT)]
    pub port: u16,
    /// Real clients that join as seeders, comma-separated: aria2, libtorrent, transmission
    /// (each must be installed).
    #[arg(long, value_name = "CLIENTS", value_delimiter = ',')]
    pub with: Vec<crate::demo::RealClient>,
    /// Start the download from a magnet link: the trace shows the metadata exchange (BEP 9).
    #[arg(long)]
    pub magnet: bool,
    /// Two runs give byte-identical traces: fixed peer ids and ports, a logical clock, one
    /// seeder at a time with a fixed share of the pieces (docs/demo.md).
    #[arg(long)]
    pub reproducible: bool,
    /// Show the downloader's messages on stderr as they happen, as ladder rows (docs/view.md).
    #[arg(long)]
    pub live: bool,
    /// Write the one-file HTML report of the downloader's messages to FILE at the end.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--seeders`: 0 to 64.
fn parse_seeders(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|&n| n <= 64)
        .ok_or_else(|| format!("{s:?} is not a number of seeders from 0 to 64"))
}

/// A `--size` for the demo: [`parse_size`], at least [`crate::demo::content::MIN_SIZE`].
fn parse_demo_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < crate::demo::content::MIN_SIZE {
        return Err(format!("{s:?} is too small: the demo needs at least 64K"));
    }
    Ok(n)
}

/// `tracker` options.
#[derive(Args, Debug, Clone)]
pub struct TrackerArgs {
    /// The port, for both TCP (HTTP) and UDP; 0 picks a free one.
    #[arg(long, default_value_t = 6969)]
    pub port: u16,
    /// The address to listen on (0.0.0.0 or :: for every interface).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub bind: std::net::IpAddr,
    /// Seconds clients wait between announces (`interval`).
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub interval: u64,
}

/// `create` options.
#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// The file or directory to share.
    pub path: PathBuf,
    /// Tracker URL (repeatable): the first is `announce`; two or more also make an
    /// announce-list, one tier each, in the order given.
    #[arg(short = 'a', long = "announce", value_name = "URL")]
    pub announce: Vec<String>,
    /// Bytes per piece, a power of two from 16K to 256M (suffixes K and M are powers of
    /// 1024). Default: the smallest that makes at most ~1500 pieces, 16K to 16M.
    #[arg(long, value_name = "N", value_parser = parse_size)]
    pub piece_length: Option<u64>,
    /// Set the private flag (BEP 27): peers come only from the tracker.
    #[arg(long)]
    pub private: bool,
    /// A web seed URL (BEP 19 `url-list`; repeatable).
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// A comment stored in the torrent.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Leave out `creation date`, so the same data and options give the same file.
    #[arg(long)]
    pub no_date: bool,
    /// Add BEP 47 pad files so that every file after the first starts on a piece boundary
    /// (a client can then fetch or verify one file without its neighbours); `--pad=MIN`
    /// aligns only the files larger than MIN bytes (e.g. `--pad=1M`), as qBittorrent's "align
    /// to piece boundary for files larger than" does.
    #[arg(long, value_name = "MIN", num_args = 0..=1, require_equals = true,
          default_missing_value = "0", value_parser = parse_size, conflicts_with = "v2")]
    pub pad: Option<u64>,
    /// Make a BitTorrent v2 torrent only (BEP 52: SHA-256 merkle trees, `file tree`, `piece
    /// layers`); v1-only clients cannot use it. Prints `Info Hash v2`.
    #[arg(long, conflicts_with = "hybrid")]
    pub v2: bool,
    /// Make a hybrid torrent: v1 and v2 views of the same files (pad files between them, files
    /// sorted as in the v2 file tree), usable by v1 and v2 clients. Prints both info hashes.
    #[arg(long)]
    pub hybrid: bool,
    /// Where to write the .torrent file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A byte count: digits, optionally followed by `K` or `M` (KiB, MiB; case-insensitive).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{s:?} is not a size such as 262144, 256K or 1M"))
}

/// A `--type` name `analyze` knows (an unknown one is a usage error).
fn type_arg(s: &str) -> Result<String, String> {
    crate::analyze::Filter::parse_types(&[s.to_string()]).map(|_| s.to_string())
}

/// A 40-hex-digit `--info-hash` (anything else is a usage error).
fn info_hash_arg(s: &str) -> Result<String, String> {
    crate::analyze::Filter::parse_info_hash(s).map(|_| s.to_string())
}

/// `analyze` options.
#[derive(Args, Debug, Clone)]
pub struct AnalyzeArgs {
    /// Capture files, analyzed one after the other; `-` reads standard input.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,
    /// One line per message instead of the tables: frame, time, connection, direction and
    /// fields.
    #[arg(long, conflicts_with = "json")]
    pub messages: bool,
    /// With --messages: whole info hashes (abbreviated to 8 hex digits by default) and whole
    /// lines (by default cut to COLUMNS, or to the terminal's width).
    #[arg(long, requires = "messages")]
    pub full: bool,
    /// The events as JSON Lines (the format of `--trace`'s .jsonl; docs/trace-format.md).
    #[arg(long)]
    pub json: bool,
    /// The ladder instead of the tables (as `bt-trace ladder`): per connection a
    /// two-column sequence diagram.
    #[arg(long, conflicts_with_all = ["json", "messages"])]
    pub ladder: bool,
    #[command(flatten)]
    pub ladder_style: LadderStyleArgs,
    /// Also write a one-file HTML report (tables, a ladder per connection, piece map,
    /// throughput, message list) to FILE; one capture only.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["json", "messages", "ladder"])]
    pub html: Option<PathBuf>,
    /// Only these connections (tcp.stream numbers, as in Wireshark); repeatable.
    #[arg(long = "conn", value_name = "N")]
    pub conns: Vec<u64>,
    /// Only connections (and tracker requests) of this info hash (40 hex digits).
    #[arg(long, value_name = "HEX", value_parser = info_hash_arg)]
    pub info_hash: Option<String>,
    /// Only these message types, comma-separated: request,piece,have,handshake,ut_metadata,
    /// tracker,... (with --messages or --json).
    #[arg(long = "type", value_name = "TYPES", value_delimiter = ',', value_parser = type_arg)]
    pub types: Vec<String>,
    /// Check every piece seen in full against this torrent's SHA-1 hashes.
    #[arg(long, value_name = "FILE")]
    pub torrent: Option<PathBuf>,
    /// With --torrent: write the torrent's files, rebuilt from the piece data in the
    /// capture, under DIR (missing pieces stay zeros).
    #[arg(long, value_name = "DIR", requires = "torrent")]
    pub extract: Option<PathBuf>,
}

/// How a ladder is drawn (`ladder`, `analyze --ladder`).
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct LadderStyleArgs {
    /// Plain ASCII characters and no colors (for pasting into a text file).
    #[arg(long)]
    pub ascii: bool,
    /// One arrow per message: do not fold runs of the same message.
    #[arg(long)]
    pub no_fold: bool,
}

/// `ladder` options.
#[derive(Args, Debug, Clone)]
pub struct LadderArgs {
    /// Captures (pcap, pcapng) or bt-trace .jsonl traces; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Only these connections (tcp.stream numbers, as in Wireshark); repeatable.
    #[arg(long = "conn", value_name = "N")]
    pub conns: Vec<u64>,
    /// Only these message types, comma-separated (as for `analyze --messages`).
    #[arg(long = "type", value_name = "TYPES", value_delimiter = ',', value_parser = type_arg)]
    pub types: Vec<String>,
    #[command(flatten)]
    pub style: LadderStyleArgs,
}

/// `-o PATH` of the download commands: where the piece, the file (single-file torrent) or the
/// directory (multi-file torrent) goes.
#[derive(Args, Debug, Clone)]
pub struct OutputArg {
    /// Where to write: the piece (`download_piece`, `magnet_download_piece`), or the file of a
    /// single-file torrent / the directory of a multi-file torrent (`download`,
    /// `magnet_download`).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: PathBuf,
}

/// `--upload-slots` of `seed` and `download --seed`.
#[derive(Args, Debug, Clone, Copy)]
pub struct UploadSlotsArg {
    /// How many interested peers may download from us at once (the fastest ones, rechoked
    /// every 10 s), plus one optimistic unchoke rotated every 30 s.
    #[arg(long, value_name = "N", default_value_t = crate::download::choker::DEFAULT_SLOTS)]
    pub upload_slots: usize,
}

/// `--json` of `info` and `magnet_parse`.
#[derive(Args, Debug, Clone, Copy)]
pub struct JsonArg {
    /// Print one JSON object with every field instead of the lines.
    #[arg(long)]
    pub json: bool,
}

/// A peer address as given on the command line (`--peer`, `handshake`'s peer) and what it
/// resolved to, once, when the arguments were parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// As typed: `127.0.0.1:6881`, `[::1]:6881` or `localhost:6881`.
    pub text: String,
    /// Its addresses (a host name may have several, e.g. an IPv4 and an IPv6 one).
    pub addrs: Vec<SocketAddr>,
}

/// Parses and resolves a peer address: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`. A name that
/// does not resolve is a usage error.
pub fn peer_addr(s: &str) -> Result<PeerAddr, String> {
    use std::net::ToSocketAddrs;
    let usage = || {
        format!("{s:?} is not a peer address such as 127.0.0.1:6881, [::1]:6881 or localhost:6881")
    };
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(PeerAddr {
            text: s.to_string(),
            addrs: vec![a],
        });
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(usage)?;
    if host.is_empty() || host.contains(':') || port.parse::<u16>().is_err() {
        return Err(usage()); // an IPv6 address needs its brackets
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let found = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for a in found {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    Ok(PeerAddr {
        text: s.to_string(),
        addrs,
    })
}

/// `--peer` of the commands that connect to peers.
#[derive(Args, Debug, Clone, Default)]
pub struct PeersArg {
    /// Use this peer too (repeatable): IP:PORT, [IPv6]:PORT or HOST:PORT; with --peer, a
    /// torrent needs no working tracker.
    #[arg(long = "peer", value_name = "HOST:PORT", value_parser = peer_addr)]
    pub peers: Vec<PeerAddr>,
}

impl PeersArg {
    /// Every address the `--peer` options resolved to, each once, in the order given.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let mut all = Vec::new();
        for a in self.peers.iter().flat_map(|p| &p.addrs) {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        all
    }
}

/// `--port` of the commands that announce to trackers.
#[derive(Args, Debug, Clone, Copy)]
pub struct PortArg {
    /// The TCP port we announce to trackers (and listen on, when downloading or seeding).
    #[arg(long, default_value_t = crate::client::DEFAULT_PORT)]
    pub port: u16,
}

/// Options of the commands that download or seed: peers, connections, progress and tracing.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    #[command(flatten)]
    pub peers: PeersArg,
    #[command(flatten)]
    pub port: PortArg,
    /// At most this many peer connections at once.
    #[arg(long, default_value_t = 50)]
    pub max_peers: usize,
    /// No progress bar and no report line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// With --trace: store at most N bytes of each frame that carries piece data, like
    /// tcpdump -s N (message headers and all other messages are always kept whole; the
    /// original lengths are recorded). Default: whole frames.
    #[arg(long, value_name = "N", requires = "trace")]
    pub trace_snaplen: Option<u32>,
}

/// Tracing options of every networked command (`--trace DIR` and its companions).
#[derive(Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// Record every byte sent and received (peers and trackers) into DIR: a pcapng capture
    /// for Wireshark and a JSON Lines event log, named `<command>-<torrent name>.pcapng/.jsonl`.
    #[arg(long, value_name = "DIR")]
    pub trace: Option<PathBuf>,
    /// With --trace: timestamps from a logical clock and fixed TCP sequence numbers, so that
    /// the same exchange gives byte-identical files.
    #[arg(long, requires = "trace")]
    pub trace_deterministic: bool,
    /// Show the messages on stderr as they happen, as ladder rows (bt-trace on the left, the
    /// peer on the right; runs of the same message folded per second). Replaces the
    /// progress bar. See docs/view.md.
    #[arg(long)]
    pub live: bool,
    /// Write a one-file HTML report of the run's messages (ladders, piece map, throughput,
    /// message list; no external resources) to FILE when the command ends.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("262144"), Ok(262_144));
        assert_eq!(parse_size("256K"), Ok(262_144));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        for bad in ["", "K", "1.5M", "-1", "12G", "99999999999999999999M"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_arguments() {
        let cli = Cli::try_parse_from([
            "bt-trace",
            "create",
            "data",
            "-a",
            "http://a/announce",
            "-a",
            "udp://b:1",
            "--piece-length",
            "64K",
            "--private",
            "--web-seed",
            "http://w/",
            "-o",
            "x.torrent",
        ])
        .expect("parses");
        let Command::Create(c) = cli.command else {
            panic!("not create: {:?}", cli.command)
        };
        assert_eq!(c.path, PathBuf::from("data"));
        assert_eq!(c.announce, ["http://a/announce", "udp://b:1"]);
        assert_eq!(c.piece_length, Some(65536));
        assert!(c.private && !c.no_date);
        assert_eq!(c.web_seeds, ["http://w/"]);
        assert!(
            Cli::try_parse_from(["bt-trace", "create", "data"]).is_err(),
            "-o is required"
        );
        let flags = |extra: &[&str]| {
            let mut argv = vec!["bt-trace", "create", "data", "-o", "x.torrent"];
            argv.extend(extra);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Create(c) => (c.pad, c.v2, c.hybrid),
                other => panic!("not create: {other:?}"),
            })
        };
        assert_eq!(flags(&[]).ok(), Some((None, false, false)));
        assert_eq!(flags(&["--pad"]).ok(), Some((Some(0), false, false)));
        assert_eq!(
            flags(&["--pad=1M"]).ok(),
            Some((Some(1 << 20), false, false))
        );
        assert!(flags(&["--pad=x"]).is_err());
        assert_eq!(flags(&["--v2"]).ok(), Some((None, true, false)));
        assert_eq!(
            flags(&["--hybrid", "--pad"]).ok(),
            Some((Some(0), false, true))
        );
        assert!(flags(&["--v2", "--hybrid"]).is_err());
        assert!(flags(&["--v2", "--pad"]).is_err());
    }
}
