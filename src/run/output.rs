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

use std::collections::VecDeque;
use std::io::{ErrorKind, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::exit::ExitStatus;
use crate::relpath::RelPath;
use crate::repo::outlog::DoneMessage;

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

/// What the journal just recorded, in an administrator's words (`-v`), with [`echo`].
pub(crate) fn echo_done(message: DoneMessage, path: &RelPath) {
    echo(&match message {
        DoneMessage::Done => format!("{path}: on the remote"),
        DoneMessage::AsDotNew => {
            format!("{path}: uploaded as {path}.new, renamed into place with its distribution")
        }
        DoneMessage::SymlinkDone => format!("{path}: symlink made"),
        DoneMessage::Deleted => format!("{path}: removed"),
        DoneMessage::AlreadyDeleted => format!("{path}: removed (it was gone already)"),
        DoneMessage::Obsoleted => format!("{path}: nothing to do (a newer log has it)"),
        DoneMessage::HeldBack => format!("{path}: deletion held back (keepdeleted)"),
    });
}

/// A message about the run, on stderr, as `outsftphook: MESSAGE`.
pub(crate) fn tell(message: &str) {
    eprintln!("outsftphook: {message}");
}

/// What a run changed on the remote, by kind, for its summary: each count is of requests
/// the server confirmed (a removal of what was gone already counts as removed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Files uploaded, and the bytes sent for them.
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    /// Files renamed into place (`NAME.new` to `NAME`).
    pub(crate) renamed: usize,
    pub(crate) symlinks: usize,
    /// Files and symlinks removed.
    pub(crate) removed: usize,
    /// Directories made (empty ones: a file's directories are made with it, uncounted).
    pub(crate) dirs_made: usize,
    /// Directories removed once empty.
    pub(crate) dirs_removed: usize,
    /// Deletions held back (`keepdeleted`): recorded, nothing sent.
    pub(crate) held: usize,
    /// Files of a failed finalisation put back as they were (restored, or new ones taken
    /// away again): their renames into place are counted too.
    pub(crate) put_back: usize,
}

impl Tally {
    /// How many changes it counts, of every kind.
    pub(crate) fn changes(&self) -> usize {
        self.files as usize
            + self.renamed
            + self.symlinks
            + self.removed
            + self.dirs_made
            + self.dirs_removed
    }

    /// Adds what `other` counted.
    pub(crate) fn add(&mut self, other: &Tally) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.renamed += other.renamed;
        self.symlinks += other.symlinks;
        self.removed += other.removed;
        self.dirs_made += other.dirs_made;
        self.dirs_removed += other.dirs_removed;
        self.held += other.held;
        self.put_back += other.put_back;
    }
}

/// The summary a run ends with, whichever way it ended: `WHAT` followed by what it
/// changed on the remote ([`Tally`]: the files uploaded always, the other kinds where there
/// were any), the errors and the time; said with [`tell`].
pub(crate) fn summary(what: &str, tally: &Tally, errors: usize, started: Instant) -> String {
    let mut parts = vec![format!(
        "{} file(s) uploaded ({})",
        tally.files,
        human_bytes(tally.bytes)
    )];
    for (n, kind) in [
        (tally.renamed, "renamed into place"),
        (tally.symlinks, "symlink(s) made"),
        (tally.removed, "removed"),
        (tally.dirs_made, "director(ies) made"),
        (tally.dirs_removed, "empty director(ies) removed"),
        (tally.held, "deletion(s) held back"),
        (tally.put_back, "put back after a failed finalisation"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {kind}"));
        }
    }
    format!(
        "{what}{}, {errors} error(s), in {:.1} s",
        parts.join(", "),
        started.elapsed().as_secs_f64()
    )
}

/// A time (seconds since the epoch) as `2026-12-03 07:00 UTC`.
pub(crate) fn human_time(secs: u64) -> String {
    let t = Civil::of(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

/// A time (seconds since the epoch) in the calendar, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    /// 1 to 12.
    pub month: i64,
    pub day: i64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    /// 0 is Sunday.
    pub weekday: u64,
}

impl Civil {
    pub(crate) fn of(secs: u64) -> Civil {
        let (days, rest) = (secs / 86_400, secs % 86_400);
        // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rest / 3600,
            minute: rest % 3600 / 60,
            second: rest % 60,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4) % 7,
        }
    }
}

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

/// The live line of files and bytes done, rate and time left, on stderr while a terminal
/// shows it (and `--quiet` was not asked for). It moves with the bytes written, not only
/// with finished files ([`Progress::sent`], fed by the engine while uploads run); rate and
/// time left are those of the last [`WINDOW`], not of the whole run, and it is redrawn at
/// most every [`REDRAW`].
pub(crate) struct Progress {
    total_files: u64,
    total_bytes: u64,
    files: u64,
    /// The sizes of the files done.
    done_bytes: u64,
    /// File data written since the line started (see [`Progress::sent`]).
    sent: u64,
    /// What the engine had written when the line started.
    base: u64,
    /// `(time, bytes shown)` samples, oldest first, at least [`SAMPLE`] apart, reaching
    /// back just beyond [`WINDOW`].
    samples: VecDeque<(Instant, u64)>,
    last_draw: Option<Instant>,
    live: bool,
    drawn: bool,
}

/// The shortest time between two redraws of the line.
const REDRAW: Duration = Duration::from_millis(250);
/// How far back the rate looks.
const WINDOW: Duration = Duration::from_secs(5);
/// The shortest time between two samples (so the window holds a few dozen).
const SAMPLE: Duration = Duration::from_millis(100);
/// The shortest span a rate is told from: less would be noise (the start of a run).
const MIN_SPAN: Duration = Duration::from_millis(500);

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: no progress line, and no summary of a run that went well.
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Says the summary of a run (as [`tell`]), unless `--quiet` was asked for and the run
/// had no `errors`.
pub(crate) fn tell_summary(summary: &str, errors: usize) {
    if errors > 0 || !QUIET.load(Ordering::Relaxed) {
        tell(summary);
    }
}

impl Progress {
    /// A progress display for `total_files` uploads of `total_bytes`, the engine having
    /// written `written` bytes of files so far; live only when stderr is a terminal and
    /// `--quiet` was not asked for.
    pub(crate) fn new(total_files: u64, total_bytes: u64, written: u64) -> Progress {
        let live = std::io::stderr().is_terminal() && !QUIET.load(Ordering::Relaxed);
        Progress::at(total_files, total_bytes, written, Instant::now(), live)
    }

    fn at(total_files: u64, total_bytes: u64, written: u64, now: Instant, live: bool) -> Progress {
        Progress {
            total_files,
            total_bytes,
            files: 0,
            done_bytes: 0,
            sent: 0,
            base: written,
            samples: VecDeque::from([(now, 0)]),
            last_draw: None,
            live,
            drawn: false,
        }
    }

    /// An upload of `size` bytes finished.
    pub(crate) fn file_done(&mut self, size: u64) {
        self.files += 1;
        self.done_bytes += size;
        self.tick(Instant::now());
    }

    fn sent_at(&mut self, written: u64, now: Instant) {
        self.sent = written.saturating_sub(self.base);
        self.tick(now);
    }

    /// The engine has written `written` bytes of files in all ([`Engine::bytes_written`](crate::engine::Engine::bytes_written)).
    pub(crate) fn sent(&mut self, written: u64) {
        self.sent_at(written, Instant::now());
    }

    /// The bytes shown: those written, as far as they can be told apart from files sent
    /// again; never less than the files done.
    fn bytes(&self) -> u64 {
        self.done_bytes.max(self.sent.min(self.total_bytes))
    }

    /// Takes a sample at `now` and redraws if it is time to.
    fn tick(&mut self, now: Instant) {
        self.sample(now);
        if self.live && self.due(now) {
            self.draw(now);
        }
    }

    fn sample(&mut self, now: Instant) {
        let bytes = self.bytes();
        if self
            .samples
            .back()
            .is_none_or(|&(t, _)| now.saturating_duration_since(t) >= SAMPLE)
        {
            self.samples.push_back((now, bytes));
        }
        // Keep one sample at or beyond the window's start, so that it spans all of it.
        while self.samples.len() > 2 && now.saturating_duration_since(self.samples[1].0) >= WINDOW {
            self.samples.pop_front();
        }
    }

    /// Whether the line may be redrawn at `now`.
    fn due(&self, now: Instant) -> bool {
        self.last_draw
            .is_none_or(|t| now.saturating_duration_since(t) >= REDRAW)
    }

    /// Bytes per second over the last [`WINDOW`], once it spans at least [`MIN_SPAN`].
    fn rate(&self, now: Instant) -> Option<f64> {
        let &(t, b) = self.samples.front()?;
        let span = now.saturating_duration_since(t);
        (span >= MIN_SPAN).then(|| self.bytes().saturating_sub(b) as f64 / span.as_secs_f64())
    }

    /// The line as it reads at `now`.
    fn line(&self, now: Instant) -> String {
        let bytes = self.bytes();
        let mut line = format!(
            "{}/{} files, {} of {}",
            self.files,
            self.total_files,
            human_bytes(bytes),
            human_bytes(self.total_bytes)
        );
        if let Some(rate) = self.rate(now) {
            line.push_str(&format!(", {}/s", human_bytes(rate as u64)));
            if rate >= 1.0 && self.total_bytes > bytes {
                let left = (self.total_bytes - bytes) as f64 / rate;
                line.push_str(&format!(", {left:.0} s left"));
            }
        }
        line
    }

    fn draw(&mut self, now: Instant) {
        let line = self.line(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.drawn = true;
        self.last_draw = Some(now);
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
            self.draw(Instant::now());
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
    fn times_read_as_dates_in_utc() {
        assert_eq!(human_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(human_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(
            human_time(1_796_083_200 + 7 * 3600 + 5 * 60),
            "2026-12-01 07:05 UTC"
        );
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_345_678), "12.3 MB");
        assert_eq!(human_bytes(3_000_000_000), "3.0 GB");
    }

    #[test]
    fn the_summary_says_what_changed_by_kind_then_errors_and_time() {
        let tally = Tally {
            files: 2,
            bytes: 1500,
            renamed: 3,
            removed: 1,
            dirs_removed: 2,
            ..Tally::default()
        };
        let line = summary("mirror: ", &tally, 1, Instant::now());
        assert!(
            line.starts_with(
                "mirror: 2 file(s) uploaded (1.5 kB), 3 renamed into place, 1 removed, \
                 2 empty director(ies) removed, 1 error(s), in "
            ),
            "{line}"
        );
        assert!(line.ends_with(" s"), "{line}");
    }

    #[test]
    fn a_summary_of_nothing_done_says_no_file_was_uploaded() {
        let line = summary("", &Tally::default(), 0, Instant::now());
        assert!(
            line.starts_with("0 file(s) uploaded (0 B), 0 error(s), in "),
            "{line}"
        );
    }

    fn after(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn the_line_moves_with_bytes_written_before_any_file_is_done() {
        let start = Instant::now();
        let mut p = Progress::at(1, 240_000_000, 1000, start, false);
        p.sent_at(1000 + 120_000_000, after(start, 2000));
        let line = p.line(after(start, 2000));
        assert!(
            line.starts_with("0/1 files, 120.0 MB of 240.0 MB, 60.0 MB/s, 2 s left"),
            "{line}"
        );
        // Bytes sent again (a retry) never show more than the total.
        p.sent_at(1000 + 500_000_000, after(start, 2100));
        assert_eq!(p.bytes(), 240_000_000);
    }

    #[test]
    fn rate_and_time_left_are_those_of_the_last_seconds() {
        let start = Instant::now();
        let mut p = Progress::at(2, 100_000_000, 0, start, false);
        // A slow start (connecting, a stalled link): 1 MB in 10 s...
        for s in 1..=10 {
            p.sent_at(s * 100_000, after(start, s * 1000));
        }
        // ...then 10 MB/s for 6 s.
        for s in 1..=60 {
            p.sent_at(1_000_000 + s * 1_000_000, after(start, 10_000 + s * 100));
        }
        let now = after(start, 16_000);
        let rate = p.rate(now).unwrap();
        assert!((9.0e6..=10.5e6).contains(&rate), "{rate}");
        let line = p.line(now);
        assert!(line.ends_with(", 4 s left"), "{line}");
        assert!(p.samples.len() <= 60, "{}", p.samples.len());
    }

    #[test]
    fn no_rate_is_told_from_the_first_moments() {
        let start = Instant::now();
        let mut p = Progress::at(1, 1_000_000_000, 0, start, false);
        p.sent_at(10, after(start, 100));
        assert_eq!(p.rate(after(start, 100)), None);
        assert_eq!(p.line(after(start, 100)), "0/1 files, 10 B of 1.0 GB");
    }

    #[test]
    fn the_line_is_redrawn_at_most_every_quarter_second() {
        let start = Instant::now();
        let mut p = Progress::at(1, 100, 0, start, false);
        assert!(p.due(start));
        p.last_draw = Some(start);
        assert!(!p.due(after(start, 100)));
        assert!(!p.due(after(start, 249)));
        assert!(p.due(after(start, 250)));
    }
}
