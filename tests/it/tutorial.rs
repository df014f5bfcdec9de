//! The tutorial (`docs/tutorial.md`) run as written: every ```` ```sh ```` block in page order, in
//! a new directory, with the `bt-trace` under test first on `PATH`; every command must succeed and
//! print the lines of the ```` ```text ```` block after it. The page states the rules in its last
//! section ("How this page is tested"); this file implements them, so the page and the program
//! cannot drift apart.
//!
//! Hermetic: bt-trace (its tracker and seeders) and the shell tools the page uses; the tshark
//! blocks follow the harness's rule for a missing program. Background commands (the page's
//! "terminal 2" and "terminal 3") are stopped with SIGINT by the test, and killed by their
//! [`ChildGuard`] if it fails first.

use crate::common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const PAGE: &str = include_str!("../../docs/tutorial.md");
const PAGE_PATH: &str = "docs/tutorial.md";

/// The ports the page uses (tracker, seeder, downloader); the test replaces them with free ones.
const PAGE_PORTS: [u16; 3] = [6969, 6881, 6882];

/// How long a command may run, and how long lines shown before a `^C` may take to appear.
const TIMEOUT: Duration = Duration::from_secs(60);

/// One ```` ```sh ```` block of the page and the ```` ```text ```` block right after it.
#[derive(Debug)]
struct Block {
    /// Line of the opening fence (1-based), for messages.
    line: usize,
    /// `Some("terminal-2")`: runs in the background, as in another terminal.
    terminal: Option<String>,
    needs_tshark: bool,
    commands: Vec<String>,
    /// Output lines before `^C` (all of them when there is none).
    before: Vec<String>,
    /// Output lines after `^C`; `None` when the output shows no `^C`.
    after: Option<Vec<String>>,
}

/// The page's command blocks, in order. Panics on a tag the rules do not know.
fn parse_page(page: &str) -> Vec<Block> {
    let lines: Vec<&str> = page.lines().collect();
    let mut blocks: Vec<Block> = Vec::new();
    // Line index just after the last closed `sh` block, while only blank lines follow it.
    let mut after_sh: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            if !lines[i].trim().is_empty() {
                after_sh = None;
            }
            i += 1;
            continue;
        };
        let open = i;
        let close = (open + 1..lines.len())
            .find(|&j| lines[j].trim_end() == "```")
            .unwrap_or_else(|| panic!("{PAGE_PATH}:{}: unclosed code block", open + 1));
        let body = &lines[open + 1..close];
        let mut words = info.split_whitespace();
        match words.next() {
            Some("sh") => {
                let mut block = Block {
                    line: open + 1,
                    terminal: None,
                    needs_tshark: false,
                    commands: Vec::new(),
                    before: Vec::new(),
                    after: None,
                };
                for tag in words {
                    match tag {
                        "tshark" => block.needs_tshark = true,
                        t if t.starts_with("terminal-") => block.terminal = Some(t.to_string()),
                        t => panic!("{PAGE_PATH}:{}: unknown tag {t:?}", open + 1),
                    }
                }
                for cmd in body.iter().map(|l| l.trim()) {
                    if cmd.is_empty() || cmd.starts_with('#') {
                        continue;
                    }
                    assert!(
                        !cmd.ends_with('\\'),
                        "{PAGE_PATH}:{}: one command a line, please",
                        open + 1
                    );
                    block.commands.push(cmd.to_string());
                }
                blocks.push(block);
                after_sh = Some(close + 1);
            }
            Some("text") if after_sh.is_some() => {
                let block = blocks.last_mut().expect("a sh block before");
                let mut shown: Vec<String> = body.iter().map(|l| l.to_string()).collect();
                if let Some(cut) = shown.iter().position(|l| l.trim() == "^C") {
                    block.after = Some(shown.split_off(cut + 1));
                    shown.pop();
                }
                block.before = shown;
                after_sh = None;
            }
            _ => after_sh = None,
        }
        i = close + 1;
    }
    blocks
}

/// Collapses every run of whitespace into one space and trims.
fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True if `line` holds the parts of `pattern` between its `…`s (trimmed), in order.
fn line_matches(pattern: &str, line: &str) -> bool {
    let mut rest = line;
    for part in pattern.split('…').map(str::trim).filter(|p| !p.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Checks that every shown line matches a line of `output`, in order (whitespace runs count as
/// one space; lines that are empty or only `…` are skipped). Returns the first shown line that
/// has no match.
fn find_in_order(shown: &[String], output: &str) -> Result<(), String> {
    let lines: Vec<String> = output.lines().map(normalize).collect();
    let mut at = 0;
    for pattern in shown.iter().map(|s| normalize(s)) {
        if pattern.is_empty() || pattern == "…" {
            continue;
        }
        match lines[at..].iter().position(|l| line_matches(&pattern, l)) {
            Some(i) => at += i + 1,
            None => return Err(pattern),
        }
    }
    Ok(())
}

/// `text` with each of the page's ports (a number not next to other digits) replaced.
fn with_ports(text: &str, ports: &[(u16, u16)]) -> String {
    let mut out = text.to_string();
    for (from, to) in ports {
        let (from, to) = (from.to_string(), to.to_string());
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&from) {
            let before = rest[..at].chars().next_back();
            let after = rest[at + from.len()..].chars().next();
            let alone = !before.is_some_and(|c| c.is_ascii_digit())
                && !after.is_some_and(|c| c.is_ascii_digit());
            result.push_str(&rest[..at]);
            result.push_str(if alone { &to } else { &from });
            rest = &rest[at + from.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// A background command: what its block expects once it is stopped.
struct Running {
    child: ChildGuard,
    block: usize,
    shown: Vec<String>,
}

/// The page being run: its working directory, the `PATH` entry for bt-trace, the ports.
struct Tutorial {
    work: TempDir,
    bin: TempDir,
    logs: TempDir,
    ports: Vec<(u16, u16)>,
    terminals: BTreeMap<String, Running>,
    tshark: Option<bool>,
    spawned: usize,
}

impl Tutorial {
    fn new() -> Tutorial {
        let bin = temp_dir("tutorial-bin");
        std::os::unix::fs::symlink(bt_trace_bin(), bin.path().join("bt-trace"))
            .expect("symlink bt-trace");
        Tutorial {
            work: temp_dir("tutorial"),
            bin,
            logs: temp_dir("tutorial-logs"),
            ports: PAGE_PORTS.iter().map(|&p| (p, free_port())).collect(),
            terminals: BTreeMap::new(),
            tshark: None,
            spawned: 0,
        }
    }

    /// Starts `sh -c command` in the working directory; `exec` makes the command itself the
    /// process (so that SIGINT reaches it).
    fn spawn(&mut self, block: &Block, command: &str, exec: bool) -> ChildGuard {
        self.spawned += 1;
        let log = self.logs.path().join(format!("{}.log", self.spawned));
        let path = std::env::join_paths(std::iter::once(self.bin.path().to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        let script = if exec {
            format!("exec {command}")
        } else {
            command.to_string()
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .current_dir(self.work.path())
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env_remove("COLUMNS")
            .env_remove("RUST_LOG");
        ChildGuard::spawn(
            &format!("{PAGE_PATH}:{} `{command}`", block.line),
            cmd,
            &log,
        )
    }

    fn run(&mut self, block: &Block) {
        if block.needs_tshark
            && !*self
                .tshark
                .get_or_insert_with(|| installed(&[Program::Tshark]))
        {
            return;
        }
        let commands: Vec<String> = block
            .commands
            .iter()
            .map(|c| with_ports(c, &self.ports))
            .collect();
        let before: Vec<String> = block
            .before
            .iter()
            .map(|l| with_ports(l, &self.ports))
            .collect();
        let after: Option<Vec<String>> = block
            .after
            .as_ref()
            .map(|ls| ls.iter().map(|l| with_ports(l, &self.ports)).collect());
        let all: Vec<String> = before
            .iter()
            .chain(after.iter().flatten())
            .cloned()
            .collect();
        let single = || {
            assert_eq!(
                commands.len(),
                1,
                "{PAGE_PATH}:{}: a background or interrupted block has one command",
                block.line
            );
            commands[0].as_str()
        };

        if let Some(terminal) = &block.terminal {
            self.stop(terminal);
            let child = self.spawn(block, single(), true);
            wait_for_lines(&child, &before, block.line);
            let running = Running {
                child,
                block: block.line,
                shown: all,
            };
            self.terminals.insert(terminal.clone(), running);
        } else if after.is_some() {
            let child = self.spawn(block, single(), true);
            wait_for_lines(&child, &before, block.line);
            interrupt(&child);
            let status = child.wait_exit(TIMEOUT);
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(130),
                "{}: after ^C the exit status is 130; log:\n{}",
                child.name,
                child.log_tail()
            );
            check_lines(&child, &all, block.line);
        } else {
            let mut output = String::new();
            for command in &commands {
                let child = self.spawn(block, command, false);
                let status = child.wait_exit(TIMEOUT);
                assert_eq!(
                    status.and_then(|s| s.code()),
                    Some(0),
                    "{} failed; log:\n{}",
                    child.name,
                    child.log_tail()
                );
                output.push_str(&child.log_text());
            }
            if let Err(missing) = find_in_order(&all, &output) {
                panic!(
                    "{PAGE_PATH}:{}: the output lacks the line {missing:?} (in the page's order); \
                     it was:\n{output}",
                    block.line
                );
            }
        }
    }

    /// Ctrl-C in `terminal`: SIGINT, exit status 0, and the lines its block shows.
    fn stop(&mut self, terminal: &str) {
        let Some(running) = self.terminals.remove(terminal) else {
            return;
        };
        interrupt(&running.child);
        let status = running.child.wait_exit(TIMEOUT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{}: after Ctrl-C the exit status is 0; log:\n{}",
            running.child.name,
            running.child.log_tail()
        );
        check_lines(&running.child, &running.shown, running.block);
    }
}

fn interrupt(child: &ChildGuard) {
    // SAFETY: kill(2) on our own child's pid; it is not reaped until wait_exit.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "SIGINT to {}", child.name);
}

fn wait_for_lines(child: &ChildGuard, shown: &[String], block: usize) {
    child.wait_until(
        &format!("the lines {PAGE_PATH}:{block} shows"),
        TIMEOUT,
        || find_in_order(shown, &child.log_text()).is_ok(),
    );
}

fn check_lines(child: &ChildGuard, shown: &[String], block: usize) {
    let output = child.log_text();
    if let Err(missing) = find_in_order(shown, &output) {
        panic!(
            "{PAGE_PATH}:{block}: the output lacks the line {missing:?} (in the page's order); \
             it was:\n{output}"
        );
    }
}

#[test]
fn tutorial_runs_as_written() {
    let blocks = parse_page(PAGE);
    assert!(
        blocks.len() >= 15 && blocks.iter().any(|b| b.terminal.is_some()),
        "{PAGE_PATH}: expected the tutorial's command blocks, found {}",
        blocks.len()
    );
    let mut page = Tutorial::new();
    for block in &blocks {
        page.run(block);
    }
    // the end of the page: Ctrl-C in the last terminal first (the seeder, then the tracker)
    let terminals: Vec<String> = page.terminals.keys().rev().cloned().collect();
    for terminal in terminals {
        page.stop(&terminal);
    }
    // what the downloads wrote is checked by the page itself (`diff -r share …`); the work
    // directory must hold it
    assert!(page.work.path().join("resumed/numbers.txt").is_file());
}

#[test]
fn the_rules_match_lines_and_ports_as_the_page_says() {
    let shown = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    let output = "Info Hash: 591c\n  34   hello.txt\nseeded 1.2 MiB to 3 peer(s)\n";
    assert!(find_in_order(&shown("Info Hash: 591c\n…\n34 hello.txt"), output).is_ok());
    assert!(find_in_order(&shown("seeded … MiB to … peer(s)"), output).is_ok());
    // order matters, and a wildcard does not cross lines
    assert!(find_in_order(&shown("34 hello.txt\nInfo Hash: 591c"), output).is_err());
    assert!(find_in_order(&shown("Info Hash: … hello.txt"), output).is_err());
    let ports = [(6969, 23456)];
    assert_eq!(
        with_ports("http://127.0.0.1:6969/announce 69690 16969", &ports),
        "http://127.0.0.1:23456/announce 69690 16969"
    );
    let blocks = parse_page("```sh terminal-2\nbt-trace tracker\n```\n\n```text\na\n^C\nb\n```\n");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].terminal.as_deref(), Some("terminal-2"));
    assert_eq!(blocks[0].before, ["a"]);
    assert_eq!(blocks[0].after.as_deref(), Some(&["b".to_string()][..]));
}
