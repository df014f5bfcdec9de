//! The text filter of `analyze --messages`: info hashes and other 40-hex-digit values
//! abbreviated to their first 8 digits and lines cut to a width (with `…`), unless `--full`.
//! It only rewrites finished lines of text on their way to the output; what a line says is
//! `crate::analyze::report`'s.

use std::io::{self, IsTerminal, Write};

/// How many hex digits of a hash stay when it is abbreviated.
const HASH_KEPT: usize = 8;

/// The width lines are cut to: `COLUMNS` when set, else the terminal's width when stdout is
/// one; `None` (whole lines) for a pipe without `COLUMNS`.
pub fn width() -> Option<usize> {
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0);
    let term = || {
        io::stdout()
            .is_terminal()
            .then(crossterm::terminal::size)
            .and_then(Result::ok)
            .map(|(w, _)| usize::from(w))
            .filter(|&w| w > 0)
    };
    columns.or_else(term).map(|w| w.max(20))
}

/// A writer that passes each line through [`shorten`].
pub struct ShortLines<W: Write> {
    inner: W,
    width: Option<usize>,
    pending: Vec<u8>,
}

impl<W: Write> ShortLines<W> {
    pub fn new(inner: W, width: Option<usize>) -> Self {
        ShortLines {
            inner,
            width,
            pending: Vec::new(),
        }
    }

    fn emit_lines(&mut self) -> io::Result<()> {
        while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line[..nl]);
            writeln!(self.inner, "{}", shorten(&text, self.width))?;
        }
        Ok(())
    }
}

impl<W: Write> Write for ShortLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.emit_lines()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit_lines()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for ShortLines<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let _ = write!(
                self.inner,
                "{}",
                shorten(&String::from_utf8_lossy(&rest), self.width)
            );
        }
    }
}

/// `line` with every run of exactly 40 hex digits (a SHA-1: an info hash) cut to its first
/// [`HASH_KEPT`] digits and `…`, then cut to `width` characters (the last one `…`).
pub fn shorten(line: &str, width: Option<usize>) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
        if run == 40 && starts_word {
            out.extend(&chars[i..i + HASH_KEPT]);
            out.push('…');
            i += run;
        } else if run > 0 {
            out.extend(&chars[i..i + run]);
            i += run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    match width {
        Some(w) if out.chars().count() > w => {
            let mut cut: String = out.chars().take(w.saturating_sub(1)).collect();
            cut.push('…');
            cut
        }
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_abbreviated_and_lines_cut() {
        let h = "6aff54b59ee2c65daca4cf79e3e1858e68823213";
        let line = format!("25 tcp 2  handshake info_hash {h} peer_id \"-LT2080-\"");
        assert_eq!(
            shorten(&line, None),
            "25 tcp 2  handshake info_hash 6aff54b5… peer_id \"-LT2080-\""
        );
        // 41 digits or a run inside a word is no hash; 40 digits are
        let long = format!("{h}0 x{h}");
        assert_eq!(shorten(&long, None), long);
        assert_eq!(shorten("abc def", Some(5)), "abc …");
        assert_eq!(shorten("abc", Some(5)), "abc");
        let mut out = Vec::new();
        {
            let mut w = ShortLines::new(&mut out, Some(40));
            w.write_all(format!("frame 1 {h}\nframe 2 ").as_bytes())
                .unwrap();
            w.write_all(b"x\n").unwrap();
            w.flush().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "frame 1 6aff54b5…\nframe 2 x\n"
        );
    }
}
