//! The deletions held back (`keepdeleted`): files the repository no longer references that
//! stay on the mirror for a grace period, so that an apt client that read the old indexes
//! can still fetch what they name. The record is `LOGDIR/outsftphook.held`, one line per
//! file, `SINCE<TAB>PATH`: when the deletion was held (seconds since the epoch) and the
//! path below the target directory, with `#` comment lines, e.g.
//! `1795639216<TAB>pool/main/f/foo/foo_1.0_amd64.deb`.
//!
//! It is written whole (a temporary file, synced, renamed over, the directory synced), so a
//! killed run or a crash leaves the old record or the new one, never half of one; a
//! deletion is recorded here before its log is journalled done. It must not decide when a
//! deletion is due, nor talk to the server: the run does, with the clock and the setting.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::relpath::RelPath;

/// The record's name in the log dir.
pub(crate) const FILE_NAME: &str = "outsftphook.held";

/// What the record holds: for each path, since when its deletion has been held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    since: BTreeMap<RelPath, u64>,
}

/// A record that cannot be read as one: where, and why.
#[derive(Debug)]
pub(crate) struct HeldError {
    file: PathBuf,
    line: usize,
    why: String,
}

impl fmt::Display for HeldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}; this file lists the deletions held back (keepdeleted): fix the \
             line, or remove the file to forget them (the files then stay on the mirror \
             until 'mirror --delete')",
            self.file.display(),
            self.line,
            self.why
        )
    }
}

impl std::error::Error for HeldError {}

/// Where the record of `logdir` is: the first mirror's is [`FILE_NAME`], the mirror NAME's
/// (`journal_tag`) `outsftphook.NAME.held`: each mirror's deletions come due on its own.
pub(crate) fn path_in(logdir: &Path, journal_tag: Option<&str>) -> PathBuf {
    logdir.join(file_name(journal_tag))
}

fn file_name(journal_tag: Option<&str>) -> String {
    match journal_tag {
        None => FILE_NAME.to_owned(),
        Some(name) => format!("outsftphook.{name}.held"),
    }
}

impl Record {
    /// The record in `logdir`; none there is nothing held.
    pub(crate) fn load(logdir: &Path, journal_tag: Option<&str>) -> anyhow::Result<Record> {
        let file = path_in(logdir, journal_tag);
        let text = match fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Record::default()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", file.display()));
            }
        };
        Record::parse(&text).map_err(|(line, why)| HeldError { file, line, why }.into())
    }

    /// Reads the record's text; an error is the line (from 1) and why.
    fn parse(text: &[u8]) -> Result<Record, (usize, String)> {
        let mut held = Record::default();
        let text = std::str::from_utf8(text).map_err(|e| {
            let line = text[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            (line, "not UTF-8".to_string())
        })?;
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| (n + 1, why);
            let (since, path) = line
                .split_once('\t')
                .ok_or_else(|| bad(format!("'{line}' is not SINCE<TAB>PATH")))?;
            let since: u64 = since
                .parse()
                .map_err(|_| bad(format!("'{since}' is not a time in seconds")))?;
            let path = RelPath::new(path).map_err(|e| bad(format!("'{path}': {e}")))?;
            held.hold(path, since);
        }
        Ok(held)
    }

    /// The record's text.
    fn render(&self) -> String {
        let mut text =
            String::from("# outsftphook: deletions held back; see outsftphook(1), keepdeleted\n");
        for (path, since) in &self.since {
            text.push_str(&format!("{since}\t{path}\n"));
        }
        text
    }

    /// Writes the record to `logdir` whole, durably; an empty one removes the file.
    pub(crate) fn save(&self, logdir: &Path, journal_tag: Option<&str>) -> anyhow::Result<()> {
        let file = path_in(logdir, journal_tag);
        let written = if self.since.is_empty() {
            match fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            let temporary = logdir.join(format!("{}.new", file_name(journal_tag)));
            File::create(&temporary)
                .and_then(|mut f| {
                    f.write_all(self.render().as_bytes())?;
                    f.sync_all()
                })
                .and_then(|()| fs::rename(&temporary, &file))
        };
        written
            .and_then(|()| File::open(logdir)?.sync_all())
            .with_context(|| format!("cannot write {}", file.display()))
    }

    /// Holds the deletion of `path` from `since`; one held already keeps its time (it has
    /// been unreferenced since then).
    pub(crate) fn hold(&mut self, path: RelPath, since: u64) {
        self.since.entry(path).or_insert(since);
    }

    /// Forgets `path` (deleted, or back in the repository); whether it was held.
    pub(crate) fn release(&mut self, path: &RelPath) -> bool {
        self.since.remove(path).is_some()
    }

    /// Each path with the time its deletion is due, `keep` after it was held.
    pub(crate) fn iter(&self, keep: Duration) -> impl Iterator<Item = (&RelPath, u64)> {
        self.since
            .iter()
            .map(move |(path, since)| (path, since.saturating_add(keep.as_secs())))
    }

    /// The paths whose deletion is due at `now`.
    pub(crate) fn due(&self, now: u64, keep: Duration) -> Vec<RelPath> {
        self.iter(keep)
            .filter(|(_, due)| *due <= now)
            .map(|(path, _)| path.clone())
            .collect()
    }
}

/// Now, in seconds since the epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn a_record_survives_a_save_and_a_load_and_an_empty_one_is_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Record::load(dir.path(), None).unwrap();
        assert_eq!(held, Record::default());
        held.hold(p("pool/main/f/foo/foo_1.0_amd64.deb"), 100);
        held.hold(p("dists/bookworm/main/Contents-amd64.gz"), 200);
        held.save(dir.path(), None).unwrap();
        let text = fs::read_to_string(path_in(dir.path(), None)).unwrap();
        assert!(
            text.starts_with("# outsftphook: deletions held back"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "200\tdists/bookworm/main/Contents-amd64.gz\n\
                 100\tpool/main/f/foo/foo_1.0_amd64.deb\n"
            ),
            "{text}"
        );
        assert_eq!(Record::load(dir.path(), None).unwrap(), held);
        for path in held.clone().since.keys() {
            held.release(path);
        }
        held.save(dir.path(), None).unwrap();
        assert!(!path_in(dir.path(), None).exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temporary file"
        );
    }

    #[test]
    fn a_deletion_held_again_keeps_its_first_time_and_is_due_keep_after_it() {
        let mut held = Record::default();
        held.hold(p("pool/a"), 100);
        held.hold(p("pool/a"), 500);
        held.hold(p("pool/b"), 300);
        let keep = Duration::from_secs(60);
        assert_eq!(held.due(159, keep), Vec::<RelPath>::new());
        assert_eq!(held.due(160, keep), vec![p("pool/a")]);
        assert_eq!(held.due(400, keep), vec![p("pool/a"), p("pool/b")]);
        assert_eq!(held.due(100, Duration::ZERO), vec![p("pool/a")]);
        assert!(held.release(&p("pool/a")));
        assert!(!held.release(&p("pool/a")));
        assert_eq!(held.due(400, keep), vec![p("pool/b")]);
    }

    #[test]
    fn a_hostile_or_broken_record_is_refused_naming_its_line() {
        for (text, line, why) in [
            ("# c\n1\t../etc/passwd\n", 2, "'..' component"),
            ("1\t/etc/passwd\n", 1, "absolute path"),
            ("\n\nsoon\tpool/a\n", 3, "'soon' is not a time"),
            ("1 pool/a\n", 1, "is not SINCE<TAB>PATH"),
            ("1\tpool/a\n2\tpool/\u{0}b\n", 2, "NUL"),
        ] {
            let (n, said) = Record::parse(text.as_bytes()).unwrap_err();
            assert_eq!(n, line, "{text:?}: {said}");
            assert!(said.contains(why), "{text:?}: {said}");
        }
        let (n, said) = Record::parse(b"1\tpool/a\n2\tpool/\xff\n").unwrap_err();
        assert_eq!((n, said.as_str()), (2, "not UTF-8"));
    }

    #[test]
    fn an_unreadable_record_names_the_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path_in(dir.path(), None), "1\t../x\n").unwrap();
        let err = Record::load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("outsftphook.held:1: '../x'"), "{err}");
        assert!(err.contains("remove the file to forget them"), "{err}");
    }
}
