//! The command layer behind the `bt-trace` binary: argument definitions ([`args`]), one
//! dispatch ([`run`], with one helper that runs every networked command), the output formats
//! ([`output`]) and the `analyze` command. `src/main.rs` only parses, calls [`run`] and exits
//! with [`exit_status`].
//!
//! This layer owns what the user sees: stdout formats, error lines, exit statuses, signals. It
//! never implements protocol or download logic; that is the library's (`client`, `analyze`).
//!
//! Exit statuses: [`EXIT_OK`], [`EXIT_ERROR`], [`EXIT_USAGE`] and [`EXIT_INTERRUPTED`] (Ctrl-C,
//! SIGTERM or SIGHUP; the trace files are finished first). A closed stdout (`bt-trace info x |
//! head -3`) is not an error.

mod analyze;
pub mod args;
mod dispatch;
mod ladder;
mod lines;
pub mod output;

pub use args::Cli;
pub use dispatch::run;

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};

use crate::magnet::Magnet;
use crate::metainfo::Torrent;

/// Success (also when stdout was closed early).
pub const EXIT_OK: u8 = 0;
/// A runtime error: bad input, network failure, incomplete download.
pub const EXIT_ERROR: u8 = 1;
/// Bad arguments (clap's usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Ended by Ctrl-C, SIGTERM or SIGHUP (128 + SIGINT, as shells report Ctrl-C).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The error of a command ended by a signal. Shown as `interrupted`, or `interrupted: <detail>`
/// when the command could say how far it got.
#[derive(Debug, thiserror::Error)]
#[error("interrupted{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct Interrupted {
    pub detail: Option<String>,
}

/// Bad arguments found after parsing (e.g. `analyze --conn N` of a connection that is not in
/// the capture): exit status [`EXIT_USAGE`], like clap's usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit status for what [`run`] returned.
pub fn exit_status(result: &Result<()>) -> u8 {
    match result {
        Ok(()) => EXIT_OK,
        Err(e) if is_broken_pipe(e) => EXIT_OK,
        Err(e) if is_interrupted(e) => EXIT_INTERRUPTED,
        Err(e) if e.chain().any(|c| c.is::<UsageError>()) => EXIT_USAGE,
        Err(_) => EXIT_ERROR,
    }
}

/// True when a signal ended the command: [`Interrupted`] is the error, a context of it or a
/// cause in its chain.
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.is::<Interrupted>() || e.chain().any(|c| c.is::<Interrupted>())
}

/// True when the error comes from writing to a closed pipe: the reader has all it wanted.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Fails when `dir`, which is to be a directory, cannot be one because it or one of its
/// parents is an existing file: "`<that file>` is not a directory" (creating it would only
/// say "File exists"). A path that does not exist yet is fine.
pub fn check_dir(dir: &Path) -> Result<()> {
    for a in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(a) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => anyhow::bail!("{} is not a directory", a.display()),
            Err(_) => continue, // not there (yet): its parent decides
        }
    }
    Ok(())
}

/// [`check_dir`] for the directory that `file` goes into.
pub fn check_parent(file: &Path) -> Result<()> {
    file.parent().map_or(Ok(()), check_dir)
}

/// Opens a file to read (`analyze`, `ladder`); a directory is refused here, where it is
/// found, rather than by the first read.
pub fn open_input(path: &Path) -> Result<std::fs::File> {
    let f = std::fs::File::open(path)?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        anyhow::bail!("is a directory, not a file");
    }
    Ok(f)
}

/// Reads and parses a .torrent file; errors name the file.
pub fn read_torrent(path: &Path) -> Result<Torrent> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Torrent::parse(&bytes).with_context(|| format!("{} is not a usable torrent", path.display()))
}

/// Parses a magnet link given on the command line.
pub fn read_magnet(link: &str) -> Result<Magnet> {
    Magnet::parse(link).context("parsing the magnet link")
}

/// Logs go to stderr. `-v` sets the level; without it RUST_LOG decides, default `warn`.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => None,
        1 => Some("info"),
        2 => Some("debug"),
        _ => Some("trace"),
    };
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(&Ok(())), EXIT_OK);
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the output");
        assert_eq!(exit_status(&Err(pipe)), EXIT_OK);
        let other = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(exit_status(&Err(other)), EXIT_ERROR);
        let int = anyhow::Error::new(Interrupted { detail: None }).context("downloading");
        assert_eq!(exit_status(&Err(int)), EXIT_INTERRUPTED);
        let ctx = anyhow::anyhow!("reset")
            .context(Interrupted { detail: None })
            .context("fetching the metadata");
        assert_eq!(exit_status(&Err(ctx)), EXIT_INTERRUPTED);
    }

    #[test]
    fn interrupted_message() {
        let plain = anyhow::Error::new(Interrupted { detail: None });
        assert_eq!(format!("{plain:#}"), "interrupted");
        let detail = Interrupted {
            detail: Some("2 of 5 pieces are verified on disk".into()),
        };
        assert_eq!(
            detail.to_string(),
            "interrupted: 2 of 5 pieces are verified on disk"
        );
    }

    #[test]
    fn torrent_errors_name_the_file() {
        let e = read_torrent(Path::new("/nonexistent/x.torrent")).expect_err("no such file");
        assert!(
            format!("{e:#}").starts_with("reading /nonexistent/x.torrent: "),
            "{e:#}"
        );
        let e = read_magnet("http://example.com").expect_err("not a magnet link");
        assert!(format!("{e:#}").starts_with("parsing the magnet link: "));
    }
}
