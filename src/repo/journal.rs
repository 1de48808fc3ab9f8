//! The only writer of `DONE` lines and of the `X.outlog` -> `X.done` rename.
//!
//! Each line goes out in one `write(2)` as soon as its item has completed, so a killed run
//! leaves a journal that says exactly what was finished. Logs with nothing left are renamed
//! when the run says so ([`Journal::finish_empty`]), after the clean-up that follows the
//! last item (pruning emptied directories), so that a cut-off run leaves the log pending
//! and the next one does the clean-up.
//!
//! It must not decide what completed: the run tells it, item by item.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::relpath::RelPath;
use crate::repo::outlog::DoneMessage;

/// `X.outlog` -> `X.done`.
pub fn done_path(outlog: &Path) -> PathBuf {
    let name = outlog.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.strip_suffix(".outlog").unwrap_or(&name);
    outlog.with_file_name(format!("{stem}.done"))
}

struct LogJournal {
    outlog: PathBuf,
    file: Option<File>,
    remaining: usize,
    finished: bool,
}

impl LogJournal {
    /// The log, opened for appending on first use.
    fn open(&mut self) -> anyhow::Result<&mut File> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .open(&self.outlog)
                .with_context(|| format!("cannot open {} to journal", self.outlog.display()))?;
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened"))
    }
}

/// The journals of the logs a run processes, indexed as in the plan: one mirror's.
pub struct Journal {
    logs: Vec<LogJournal>,
    /// The keyword of its lines: `DONE` for the first mirror, `DONE@NAME` for the mirror
    /// NAME.
    keyword: String,
    /// Whether a log with nothing left is renamed `.done` by this journal: not where other
    /// mirrors share the logs ([`finish_together`] renames them then).
    renames: bool,
    /// The run said its push is over and clean ([`Journal::finish_empty`]): shared logs
    /// this mirror has all of may be renamed. A push cut off, or with a failure, leaves
    /// its logs pending: the clean-up after the last item (pruning) is the next run's.
    clean: bool,
    /// Told each line once it is written (`-v`): the run side shows it; the journal itself
    /// never prints.
    echo: Option<fn(DoneMessage, &RelPath)>,
}

impl Journal {
    /// `remaining[i]` is how many items log `i` still has; `echo` is told of each line
    /// written (the run side words it).
    pub fn new(
        outlogs: Vec<PathBuf>,
        remaining: &[usize],
        echo: Option<fn(DoneMessage, &RelPath)>,
    ) -> Journal {
        let logs = outlogs
            .into_iter()
            .zip(remaining)
            .map(|(outlog, &remaining)| LogJournal {
                outlog,
                file: None,
                remaining,
                finished: false,
            })
            .collect();
        Journal {
            logs,
            keyword: "DONE".into(),
            renames: true,
            clean: false,
            echo,
        }
    }

    /// The journal of the mirror NAME (`journal_tag`; `None` for the first mirror), one of
    /// several sharing the logs when `shared`: it never renames them ([`finish_together`]
    /// does).
    pub fn for_mirror(mut self, journal_tag: Option<&str>, shared: bool) -> Journal {
        if let Some(name) = journal_tag {
            self.keyword = format!("DONE@{name}");
        }
        self.renames = !shared;
        self
    }

    /// Whether log `log` has nothing left for this mirror.
    fn has_nothing_left(&self, log: usize) -> bool {
        self.logs[log].remaining == 0
    }

    /// Cuts a torn last journal line off log `log`, back to `offset` (the end of its last
    /// whole line), so that the next line starts on a line of its own.
    pub fn cut_torn_tail(&mut self, log: usize, offset: u64) -> anyhow::Result<()> {
        let entry = &mut self.logs[log];
        let outlog = entry.outlog.clone();
        let file = entry.open()?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot look at {}", outlog.display()))?
            .len();
        anyhow::ensure!(
            len >= offset,
            "{} shrank while it was read: leave it to the run that is changing it",
            outlog.display()
        );
        file.set_len(offset)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot cut the torn line off {}", outlog.display()))?;
        log::info!(
            "{}: cut off its torn last journal line ({} bytes)",
            outlog.display(),
            len - offset
        );
        Ok(())
    }

    /// Appends `DONE<TAB>message<TAB>path` to log `log`.
    pub fn record(
        &mut self,
        log: usize,
        message: DoneMessage,
        path: &RelPath,
    ) -> anyhow::Result<()> {
        let entry = &mut self.logs[log];
        entry.open()?;
        let line = format!("{}\t{}\t{path}\n", self.keyword, message.as_str());
        let file = entry.file.as_mut().expect("opened");
        // A line cut short by a full disk is cut off again: another mirror's journal may
        // append to this log after it, and a fragment in the middle is no torn tail.
        let before = file.metadata().map(|m| m.len());
        if let Err(e) = file.write_all(line.as_bytes()) {
            if let Ok(len) = before {
                let _ = file.set_len(len);
            }
            return Err(e).with_context(|| format!("cannot journal to {}", entry.outlog.display()));
        }
        if let Some(echo) = self.echo {
            echo(message, path);
        }
        Ok(())
    }

    /// Records a finished item.
    pub fn complete(
        &mut self,
        log: usize,
        message: DoneMessage,
        path: &RelPath,
    ) -> anyhow::Result<()> {
        self.record(log, message, path)?;
        let entry = &mut self.logs[log];
        entry.remaining = entry.remaining.saturating_sub(1);
        Ok(())
    }

    /// The journal of a mirror not pushed to in this run (`--only` left it out): what it
    /// has is as clean as its last run left it.
    pub fn untouched(mut self) -> Journal {
        self.clean = true;
        self
    }

    /// Renames every log that has nothing left (some have nothing from the start); where
    /// the logs are shared, marks this mirror's push clean for [`finish_together`].
    pub fn finish_empty(&mut self) -> anyhow::Result<()> {
        self.clean = true;
        for log in 0..self.logs.len() {
            self.finish_if_empty(log)?;
        }
        Ok(())
    }

    fn finish_if_empty(&mut self, log: usize) -> anyhow::Result<()> {
        let entry = &mut self.logs[log];
        if entry.remaining > 0 || entry.finished || !self.renames {
            return Ok(());
        }
        self.rename(log)
    }

    /// Renames log `log` `.done`, its lines flushed first.
    fn rename(&mut self, log: usize) -> anyhow::Result<()> {
        let entry = &mut self.logs[log];
        if let Some(file) = entry.file.take() {
            // What the journal says must survive a crash before the rename does.
            file.sync_data()
                .with_context(|| format!("cannot flush {}", entry.outlog.display()))?;
        }
        let done = done_path(&entry.outlog);
        fs::rename(&entry.outlog, &done).with_context(|| {
            format!(
                "cannot rename {} to {}",
                entry.outlog.display(),
                done.display()
            )
        })?;
        entry.finished = true;
        log::info!("{} is done", entry.outlog.display());
        Ok(())
    }

    /// Flushes what was written to the logs that are still pending.
    pub fn sync(&mut self) -> io::Result<()> {
        for entry in &mut self.logs {
            if let Some(file) = &entry.file {
                file.sync_data()?;
            }
        }
        Ok(())
    }

    /// Flushes log `log`'s lines and forgets it: another journal renamed it.
    fn renamed_elsewhere(&mut self, log: usize) -> anyhow::Result<()> {
        let entry = &mut self.logs[log];
        if let Some(file) = entry.file.take() {
            file.sync_data()
                .with_context(|| format!("cannot flush {}", entry.outlog.display()))?;
        }
        entry.finished = true;
        Ok(())
    }

    /// The logs that still have work for this mirror. (Shared with other mirrors, a log
    /// it has all of may wait for them: not its work.)
    pub fn pending(&self) -> impl Iterator<Item = &Path> {
        self.logs
            .iter()
            .filter(|l| !l.finished && (l.remaining > 0 || self.renames))
            .map(|l| l.outlog.as_path())
    }
}

/// Renames the logs that no mirror has anything left of, each mirror's lines flushed
/// first: a log is `.done` only when every mirror has all of it. The journals are those of
/// every mirror configured, indexed alike.
pub fn finish_together(journals: &mut [&mut Journal]) -> anyhow::Result<()> {
    let Some(logs) = journals.first().map(|j| j.logs.len()) else {
        return Ok(());
    };
    for log in 0..logs {
        let all_have_it = journals.iter().all(|j| j.clean && j.has_nothing_left(log));
        if journals[0].logs[log].finished || !all_have_it {
            continue;
        }
        for journal in &mut journals[1..] {
            journal.renamed_elsewhere(log)?;
        }
        journals[0].rename(log)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_the_log_renamed_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("1795639216-abc.outlog");
        fs::write(&log, "POOLNEW\tpool/a/b\nPOOLDELETE\tpool/c/d\n").unwrap();
        let mut j = Journal::new(vec![log.clone()], &[2], None);
        let p = RelPath::new("pool/a/b").unwrap();
        j.complete(0, DoneMessage::Done, &p).unwrap();
        j.finish_empty().unwrap();
        assert!(log.exists());
        assert_eq!(j.pending().count(), 1);
        let q = RelPath::new("pool/c/d").unwrap();
        j.complete(0, DoneMessage::AlreadyDeleted, &q).unwrap();
        assert!(log.exists(), "renamed only when the run says so");
        j.finish_empty().unwrap();
        assert!(!log.exists());
        let done = dir.path().join("1795639216-abc.done");
        assert_eq!(
            fs::read_to_string(done).unwrap(),
            "POOLNEW\tpool/a/b\nPOOLDELETE\tpool/c/d\nDONE\tdone\tpool/a/b\nDONE\talready deleted\tpool/c/d\n"
        );
        assert_eq!(j.pending().count(), 0);
    }

    #[test]
    fn a_log_with_nothing_left_is_renamed_by_finish_empty() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("1-a.outlog");
        // Everything journalled by an earlier run (an empty log is never planned: the hook
        // leaves it out, since reprepro may still be writing it).
        fs::write(&log, "POOLNEW\tpool/a/b\nDONE\tdone\tpool/a/b\n").unwrap();
        let mut j = Journal::new(vec![log.clone()], &[0], None);
        j.finish_empty().unwrap();
        assert!(dir.path().join("1-a.done").exists());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_next_line_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("1-a.outlog");
        let whole = "POOLNEW\tpool/a/b\nPOOLNEW\tpool/c/d\nDONE\tdone\tpool/a/b\n";
        fs::write(&log, format!("{whole}DONE\tdone\tpo")).unwrap();
        let mut j = Journal::new(vec![log.clone()], &[1], None);
        j.cut_torn_tail(0, whole.len() as u64).unwrap();
        j.complete(0, DoneMessage::Done, &RelPath::new("pool/c/d").unwrap())
            .unwrap();
        j.finish_empty().unwrap();
        let done = fs::read_to_string(dir.path().join("1-a.done")).unwrap();
        assert_eq!(done, format!("{whole}DONE\tdone\tpool/c/d\n"));
    }

    #[test]
    fn with_several_mirrors_each_writes_its_own_lines_and_the_log_is_done_when_all_are() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("1-a.outlog");
        fs::write(&log, "POOLNEW\tpool/a/b\n").unwrap();
        let p = RelPath::new("pool/a/b").unwrap();
        let mut first = Journal::new(vec![log.clone()], &[1], None).for_mirror(None, true);
        let mut offsite =
            Journal::new(vec![log.clone()], &[1], None).for_mirror(Some("offsite"), true);
        let mut journals = [&mut first, &mut offsite];
        journals[0].complete(0, DoneMessage::Done, &p).unwrap();
        journals[0].finish_empty().unwrap();
        finish_together(&mut journals).unwrap();
        assert!(log.exists(), "offsite has not got it yet");
        journals[1].complete(0, DoneMessage::Done, &p).unwrap();
        finish_together(&mut journals).unwrap();
        assert!(
            log.exists(),
            "offsite's push has not ended clean (its pruning may be left)"
        );
        journals[1].finish_empty().unwrap();
        finish_together(&mut journals).unwrap();
        let done = fs::read_to_string(dir.path().join("1-a.done")).unwrap();
        assert_eq!(
            done,
            "POOLNEW\tpool/a/b\nDONE\tdone\tpool/a/b\nDONE@offsite\tdone\tpool/a/b\n"
        );
        assert!(journals.iter().all(|j| j.pending().count() == 0));
    }

    #[test]
    fn done_path_replaces_the_suffix() {
        assert_eq!(
            done_path(Path::new("/l/1-x.outlog")),
            Path::new("/l/1-x.done")
        );
    }
}
