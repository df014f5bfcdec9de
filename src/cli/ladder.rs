//! The `ladder` command (and `analyze --ladder`): each file's events through
//! [`crate::view::Ladder`], drawn to the output's width. A file that cannot be read is
//! reported on stderr and the others are still drawn (exit status 1 at the end).

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::args::LadderStyleArgs;
use super::is_broken_pipe;
use crate::analyze::Filter;
use crate::view::source::read_events;
use crate::view::{FoldOptions, Ladder, Style};

/// Draws the ladder of each file into `out`, `--conn`/`--type` applied.
pub fn run(
    files: &[PathBuf],
    conns: &[u64],
    types: &[String],
    style: LadderStyleArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let filter = Filter {
        conns: conns.iter().copied().collect(),
        info_hash: None,
        types: Filter::parse_types(types).map_err(anyhow::Error::msg)?,
    };
    let look = Style::detect(io::stdout().is_terminal(), style.ascii);
    let fold = FoldOptions {
        no_fold: style.no_fold,
        ..FoldOptions::default()
    };
    let mut failed = 0;
    for (i, path) in files.iter().enumerate() {
        let mut ladder = Ladder::new(filter.clone(), fold);
        let (name, res) = if path.as_os_str() == "-" {
            (
                "standard input".to_string(),
                read_events(io::stdin().lock(), &mut ladder),
            )
        } else {
            let name = path.display().to_string();
            let r = super::open_input(path).and_then(|f| read_events(f, &mut ladder));
            (name, r)
        };
        match res {
            Ok(report) => {
                ladder.finish(report.as_ref());
                if let Some(r) = &report {
                    for w in &r.stats.warnings {
                        eprintln!("warning: {name}: {}", w.message);
                    }
                }
                if files.len() > 1 {
                    if i > 0 {
                        writeln!(out)?;
                    }
                    writeln!(out, "== {name}")?;
                }
                ladder.render(out, look)?;
            }
            Err(e) if is_broken_pipe(&e) => return Err(e),
            Err(e) => {
                eprintln!("error: {name}: {e:#}");
                failed += 1;
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        bail!("{failed} of {} files could not be read", files.len());
    }
    Ok(())
}
