//! What a person at a terminal sees while a run works: a live line with files and bytes
//! done, rate and time left, redrawn at most ten times a second on stderr. Not on a
//! terminal (under reprepro, in cron) it draws nothing; messages pass through either way.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
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
pub fn human_bytes(n: u64) -> String {
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
    pub fn new(total_files: u64, total_bytes: u64) -> Progress {
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
    pub fn file_done(&mut self, size: u64) {
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
    pub fn say(&mut self, line: &str) {
        self.clear();
        eprintln!("{line}");
        if self.live && self.last_draw.is_some() {
            self.draw();
        }
    }

    /// Removes the live line.
    pub fn finish(&mut self) {
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
}
