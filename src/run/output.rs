//! Everything the run side shows the user, and on which stream. stdout carries what the
//! command was asked to show: `--dry-run`'s actions, `status`, `verify`'s differences
//! ([`show`]). stderr carries what happened: failures, conflicts, summaries and advice, as
//! `outsftphook: MESSAGE` ([`tell`]), and, on a terminal, a live progress line
//! ([`Progress`]) that those messages are said around. Not on a terminal (under reprepro,
//! in cron) the progress line is not drawn; messages pass through either way.
//!
//! It must not decide what is said or when: the commands and the runner do; the journal's
//! `-v` lines come here too (the journal is handed [`echo`]). It does decide what a closed
//! stdout means, and nothing here panics on one: [`show`] ends a command that only shows,
//! [`echo`] lets a push go on. Outside it: the server's own
//! stderr, relayed line by line where it is read (`transport`), and the error that ends a
//! run, printed by `main`.

use std::io::{ErrorKind, IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::exit::ExitStatus;

/// A line of what the command was asked to show, on stdout (`--dry-run`, `status`,
/// `verify`). When the reader has gone (`status -v | head`), there is no one left to show
/// anything to: the run ends there, quietly, exit 0, as ripgrep does (not a panic, not
/// 141). Nothing is half done by that: these commands change nothing.
pub(crate) fn show(line: &str) {
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        if error.kind() == ErrorKind::BrokenPipe {
            std::process::exit(ExitStatus::Success as i32);
        }
        tell(&format!("cannot write the output to stdout: {error}"));
        std::process::exit(ExitStatus::Failed as i32);
    }
}

/// A `-v` line of a run that changes the remote (the journal's), on stdout. A stdout that
/// is closed or failing loses the line but never stops the push: its outcome is the remote
/// and the journal, not this text.
pub(crate) fn echo(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A message about the run, on stderr, as `outsftphook: MESSAGE`.
pub(crate) fn tell(message: &str) {
    eprintln!("outsftphook: {message}");
}

/// The summary a run ends with, whichever way it ended: `WHAT` followed by files, bytes,
/// changes, errors and time; said with [`tell`].
pub(crate) fn summary(
    what: &str,
    files: u64,
    bytes: u64,
    changes: usize,
    errors: usize,
    started: Instant,
) -> String {
    format!(
        "{what}{files} file(s), {} uploaded, {changes} change(s), {errors} error(s), in \
         {:.1} s",
        human_bytes(bytes),
        started.elapsed().as_secs_f64()
    )
}

/// The live line of files and bytes done, rate and time left, redrawn at most ten times a
/// second on stderr while a terminal shows it.
pub(crate) struct Progress {
    total_files: u64,
    total_bytes: u64,
    files: u64,
    bytes: u64,
    started: Instant,
    last_draw: Option<Instant>,
    live: bool,
    drawn: bool,
}

const REDRAW: Duration = Duration::from_millis(100);

/// `12.3 MB` and the like.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Progress {
    /// A progress display for `total_files` uploads of `total_bytes`; live only when
    /// stderr is a terminal.
    pub(crate) fn new(total_files: u64, total_bytes: u64) -> Progress {
        Progress {
            total_files,
            total_bytes,
            files: 0,
            bytes: 0,
            started: Instant::now(),
            last_draw: None,
            live: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// An upload of `size` bytes finished.
    pub(crate) fn file_done(&mut self, size: u64) {
        self.files += 1;
        self.bytes += size;
        if self.live && self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.bytes as f64 / secs;
        let eta = if rate > 0.0 && self.total_bytes > self.bytes {
            format!(
                ", {:.0} s left",
                (self.total_bytes - self.bytes) as f64 / rate
            )
        } else {
            String::new()
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{}/{} files, {} of {}, {}/s{eta}",
            self.files,
            self.total_files,
            human_bytes(self.bytes),
            human_bytes(self.total_bytes),
            human_bytes(rate as u64)
        );
        let _ = err.flush();
        self.drawn = true;
        self.last_draw = Some(Instant::now());
    }

    fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
            self.drawn = false;
        }
    }

    /// Prints a message without garbling the live line.
    pub(crate) fn say(&mut self, line: &str) {
        self.clear();
        eprintln!("{line}");
        if self.live && self.last_draw.is_some() {
            self.draw();
        }
    }

    /// Says a message about the run (as [`tell`] does) without garbling the live line.
    pub(crate) fn tell(&mut self, message: &str) {
        self.say(&format!("outsftphook: {message}"));
    }

    /// Removes the live line.
    pub(crate) fn finish(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_345_678), "12.3 MB");
        assert_eq!(human_bytes(3_000_000_000), "3.0 GB");
    }

    #[test]
    fn the_summary_names_files_bytes_changes_errors_and_time() {
        let line = summary("mirror: ", 2, 1500, 3, 1, Instant::now());
        assert!(
            line.starts_with("mirror: 2 file(s), 1.5 kB uploaded, 3 change(s), 1 error(s), in "),
            "{line}"
        );
        assert!(line.ends_with(" s"), "{line}");
    }
}
