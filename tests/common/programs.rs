//! Which third-party programs are installed, and the one rule for a test that needs a missing one.
//!
//! Every test that drives a real program starts with [`skip_unless_installed!`]. When a program is
//! missing the test prints one line naming itself and the program, and passes; with
//! `BT_TRACE_REQUIRE_ALL=1` (what `.ci/run` sets) it fails instead, so CI never passes a test it did
//! not run. `BT_TRACE_HIDE=opentracker,aria2c` makes programs count as missing, to check that rule
//! without uninstalling anything.
//!
//! This module only looks programs up; starting them is the rest of the harness's job.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A program (or, for libtorrent, a Python module) that some test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Opentracker,
    Aria2c,
    TransmissionDaemon,
    TransmissionRemote,
    TransmissionShow,
    /// The plain leecher `transmission-cli` (it only accepts: the seeder dials it).
    TransmissionCli,
    /// Debian's `python3-libtorrent`, imported by [`super::PYTHON`].
    Libtorrent,
    Mktorrent,
    Tshark,
    /// Debian's `chromium`, headless: renders the HTML report (`tests/it/view_report.rs`).
    Chromium,
}

/// What a test that starts the full swarm ([`super::Swarm`] with [`super::Tracker`] and torrents
/// made by `mktorrent` and read back with `transmission-show`) needs.
pub const SWARM: &[Program] = &[
    Program::Opentracker,
    Program::Aria2c,
    Program::TransmissionDaemon,
    Program::TransmissionRemote,
    Program::TransmissionShow,
    Program::Libtorrent,
    Program::Mktorrent,
];

impl Program {
    pub const ALL: [Program; 10] = [
        Program::Opentracker,
        Program::Aria2c,
        Program::TransmissionDaemon,
        Program::TransmissionRemote,
        Program::TransmissionShow,
        Program::TransmissionCli,
        Program::Libtorrent,
        Program::Mktorrent,
        Program::Tshark,
        Program::Chromium,
    ];

    /// The name in messages and in `BT_TRACE_HIDE`: the executable's name, or `libtorrent`.
    pub fn name(self) -> &'static str {
        match self {
            Program::Opentracker => "opentracker",
            Program::Aria2c => "aria2c",
            Program::TransmissionDaemon => "transmission-daemon",
            Program::TransmissionRemote => "transmission-remote",
            Program::TransmissionShow => "transmission-show",
            Program::TransmissionCli => "transmission-cli",
            Program::Libtorrent => "libtorrent",
            Program::Mktorrent => "mktorrent",
            Program::Tshark => "tshark",
            Program::Chromium => "chromium",
        }
    }

    /// The Debian package that has it (what `.ci/run` installs).
    pub fn package(self) -> &'static str {
        match self {
            Program::Opentracker => "opentracker",
            Program::Aria2c => "aria2",
            Program::TransmissionDaemon => "transmission-daemon",
            Program::TransmissionRemote | Program::TransmissionShow | Program::TransmissionCli => {
                "transmission-cli"
            }
            Program::Libtorrent => "python3-libtorrent",
            Program::Mktorrent => "mktorrent",
            Program::Tshark => "tshark",
            Program::Chromium => "chromium",
        }
    }

    /// Looks the program up (executables on `PATH`; the module by importing it). Not cached.
    fn probe(self) -> bool {
        match self {
            Program::Libtorrent => Command::new(super::PYTHON)
                .args(["-c", "import libtorrent"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            _ => on_path(self.name(), std::env::var_os("PATH").as_deref()),
        }
    }
}

/// True if some directory of `path` (a `PATH` value) holds an executable file named `program`.
fn on_path(program: &str, path: Option<&OsStr>) -> bool {
    let Some(path) = path else { return false };
    std::env::split_paths(path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(file: &Path) -> bool {
    file.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True if `program` is named in `hide`, a comma-separated `BT_TRACE_HIDE` value.
fn hidden(program: Program, hide: &str) -> bool {
    hide.split(',').any(|n| n.trim() == program.name())
}

/// Whether `program` is installed here (looked up once per process) and not hidden.
pub fn have(program: Program) -> bool {
    static FOUND: [OnceLock<bool>; Program::ALL.len()] =
        [const { OnceLock::new() }; Program::ALL.len()];
    let hide = std::env::var("BT_TRACE_HIDE").unwrap_or_default();
    !hidden(program, &hide) && *FOUND[program as usize].get_or_init(|| program.probe())
}

/// What a test does about the programs it needs.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Run,
    /// Print this one line and pass.
    Skip(String),
    /// Panic with this message.
    Fail(String),
}

/// The rule, apart from the lookups: `test` needs the `missing` programs, and `require_all` is
/// `BT_TRACE_REQUIRE_ALL=1`.
fn verdict(test: &str, missing: &[Program], require_all: bool) -> Verdict {
    if missing.is_empty() {
        return Verdict::Run;
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name()).collect();
    let mut packages: Vec<&str> = missing.iter().map(|p| p.package()).collect();
    packages.sort_unstable();
    packages.dedup();
    let (names, packages) = (names.join(", "), packages.join(" "));
    if require_all {
        Verdict::Fail(format!(
            "{test}: {names} not installed, and BT_TRACE_REQUIRE_ALL=1 requires every program \
             (apt-get install {packages}, or run .ci/run)"
        ))
    } else {
        Verdict::Skip(format!(
            "SKIPPED {test}: {names} not installed (apt-get install {packages})"
        ))
    }
}

/// The one decision for every test that drives real programs: true if all of `needs` are installed.
/// Otherwise prints one line naming the test and the missing programs and returns false (the test
/// then returns and passes), or panics if `BT_TRACE_REQUIRE_ALL=1`. Use [`skip_unless_installed!`].
pub fn installed(needs: &[Program]) -> bool {
    let missing: Vec<Program> = needs.iter().copied().filter(|p| !have(*p)).collect();
    let require_all = std::env::var("BT_TRACE_REQUIRE_ALL").is_ok_and(|v| v == "1");
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    match verdict(test, &missing, require_all) {
        Verdict::Run => true,
        Verdict::Skip(line) => {
            // Straight to stderr: libtest would hide an `eprintln!` of a passing test.
            let _ = writeln!(std::io::stderr(), "{line}");
            false
        }
        Verdict::Fail(message) => panic!("{message}"),
    }
}

/// Returns from the calling test (which then passes) unless every program in the slice is installed;
/// see [`installed`].
macro_rules! skip_unless_installed {
    ($needs:expr) => {
        if !$crate::common::installed($needs) {
            return;
        }
    };
}
pub(crate) use skip_unless_installed;

#[test]
fn verdict_runs_skips_or_fails() {
    use Program::*;
    assert_eq!(verdict("t", &[], false), Verdict::Run);
    assert_eq!(verdict("t", &[], true), Verdict::Run);
    assert_eq!(
        verdict("cli_real::x", &[Aria2c, Libtorrent], false),
        Verdict::Skip(
            "SKIPPED cli_real::x: aria2c, libtorrent not installed \
             (apt-get install aria2 python3-libtorrent)"
                .into()
        )
    );
    match verdict(
        "trace_real::y",
        &[TransmissionRemote, TransmissionShow],
        true,
    ) {
        Verdict::Fail(m) => assert!(
            m.starts_with("trace_real::y: transmission-remote, transmission-show not installed")
                && m.contains("(apt-get install transmission-cli, or run .ci/run)")
                && m.contains("BT_TRACE_REQUIRE_ALL=1"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lookup_finds_only_executables_on_path_and_honours_hide() {
    let a = tempfile::tempdir().expect("temp dir");
    let b = tempfile::tempdir().expect("temp dir");
    let write = |dir: &Path, name: &str, mode: u32| {
        let f = dir.join(name);
        std::fs::write(&f, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write(a.path(), "aria2c", 0o644); // not executable
    write(b.path(), "aria2c", 0o755);
    write(a.path(), "tshark", 0o755);
    std::fs::create_dir(b.path().join("mktorrent")).expect("mkdir"); // a directory
    let path = std::env::join_paths([a.path(), b.path()]).expect("join");
    assert!(on_path("aria2c", Some(&path)));
    assert!(on_path("tshark", Some(&path)));
    assert!(!on_path("mktorrent", Some(&path)));
    assert!(!on_path("opentracker", Some(&path)));
    assert!(!on_path("tshark", Some(OsStr::new(b.path().as_os_str()))));
    assert!(!on_path("tshark", None));

    assert!(hidden(Program::Aria2c, "opentracker,aria2c"));
    assert!(hidden(Program::Opentracker, "opentracker, aria2c"));
    assert!(!hidden(Program::Tshark, "opentracker,aria2c"));
    assert!(!hidden(Program::Aria2c, ""));
}
