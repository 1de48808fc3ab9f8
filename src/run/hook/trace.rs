//! ftpsync's trace file (`project/trace/NAME`), written on a mirror after a complete push
//! (`tracefile NAME`): Debian's mirror monitoring and downstream `ftpsync` runs read it
//! to see when the mirror last changed. The fields are those ftpsync writes that mean
//! something here; the first line is the date as `date -u` prints it, which is what the
//! checkers read first.

use crate::run::output::Civil;

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Where a mirror's trace file goes, below its target.
pub(super) fn remote_name(name: &str) -> String {
    format!("project/trace/{name}")
}

/// `Tue Dec  1 22:16:24 UTC 2026`: `date -u`'s format in the POSIX locale.
fn date_u(t: Civil) -> String {
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} UTC {}",
        DAYS[t.weekday as usize],
        MONTHS[t.month as usize - 1],
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}

/// `Tue, 01 Dec 2026 22:16:24 +0000`: RFC 2822, as `date -u -R` prints it.
fn rfc2822(t: Civil) -> String {
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[t.weekday as usize],
        t.day,
        MONTHS[t.month as usize - 1],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// The trace file of a push that started at `started` and ended at `now` (seconds since
/// the epoch), written by `host`. Its serial is the end's minute (`YYYYMMDDHHMM`): every
/// mirror of one run gets the same one, and a later run a greater one.
pub(super) fn text(started: u64, now: u64, host: &str) -> String {
    let end = Civil::of(now);
    format!(
        "{}\nDate: {}\nDate-Started: {}\nArchive serial: {:04}{:02}{:02}{:02}{:02}\n\
         Creator: outsftphook {}\nRunning on host: {host}\n",
        date_u(end),
        rfc2822(end),
        rfc2822(Civil::of(started)),
        end.year,
        end.month,
        end.day,
        end.hour,
        end.minute,
        env!("CARGO_PKG_VERSION"),
    )
}

/// This machine's name, for `Running on host`.
pub(super) fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_starts_with_the_date_as_date_u_prints_it() {
        // 2026-12-01 22:16:24 UTC, a Tuesday; started 40 s before.
        let now = 1_796_163_384;
        let text = text(now - 40, now, "repo.example.org");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Tue Dec  1 22:16:24 UTC 2026");
        assert_eq!(lines[1], "Date: Tue, 01 Dec 2026 22:16:24 +0000");
        assert_eq!(lines[2], "Date-Started: Tue, 01 Dec 2026 22:15:44 +0000");
        assert_eq!(lines[3], "Archive serial: 202612012216");
        assert!(lines[4].starts_with("Creator: outsftphook "));
        assert_eq!(lines[5], "Running on host: repo.example.org");
    }
}
