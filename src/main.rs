//! The `bt-trace` binary: parse the arguments, run the command, report errors.
//!
//! As in ripgrep: `main` parses and calls [`cli::run`]; an error is printed as one line
//! `error: <context>: <cause>` on stderr, and the exit status is [`cli::exit_status`]'s: 0 ok
//! (also when stdout was closed early, `bt-trace info x.torrent | head -3`), 1 runtime error,
//! 2 usage error, 130 interrupted. Everything else lives in the library's `cli` module.

use bt_trace::cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                cli::EXIT_USAGE
            } else {
                cli::EXIT_OK
            });
        }
    };
    cli::init_logging(args.verbose);
    let result = cli::run(args, &mut std::io::stdout().lock());
    if let Err(e) = &result {
        if !cli::is_broken_pipe(e) {
            eprintln!("error: {e:#}");
        }
    }
    ExitCode::from(cli::exit_status(&result))
}
