//! The deletions held back (`keepdeleted`) as the runs see them: the record in the log dir
//! ([`Record`]) with the setting and the clock. A file the repository no longer references
//! stays on the mirror until `keepdeleted` has passed, so that an apt client that read the
//! old indexes still finds every file they name; the first run after that (the hook,
//! `--pending`, `mirror`) removes it. A held file that is back in the out dir (re-added
//! before it was due) is the repository's again: forgotten, never removed.
//!
//! It owns the record's life during a run; what the server is asked goes through the
//! [`Runner`] like every other change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Settings;
use crate::engine::{Cause, Op};
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;
use crate::repo::held::{self, Record};
use crate::run::runner::{Judged, Runner};

use crate::plan::tree::{Difference, Node, remote_path};

/// The held deletions of one run.
pub(crate) struct Deletions {
    record: Record,
    logdir: PathBuf,
    /// Whose record it is: the mirror's journal tag (`None` for the first mirror).
    tag: Option<String>,
    keep: Duration,
    /// The run's clock, read once: what is due is decided once per run.
    now: u64,
    /// Changed since read: to be saved.
    changed: bool,
}

impl Deletions {
    /// The record of `settings`' log dir, without the files back in the out dir (the
    /// record is saved when that forgot any).
    pub(crate) fn load(settings: &Settings) -> anyhow::Result<Deletions> {
        let deletions = Deletions::read(settings)?;
        if deletions.changed {
            deletions.save()?;
        }
        Ok(deletions)
    }

    /// As [`Deletions::load`], but writing nothing (`status`, `--dry-run`, `verify`).
    pub(crate) fn read(settings: &Settings) -> anyhow::Result<Deletions> {
        let mut deletions = Deletions {
            record: Record::load(&settings.logdir, settings.journal_tag())?,
            logdir: settings.logdir.clone(),
            tag: settings.journal_tag().map(str::to_owned),
            keep: settings.keep_deleted,
            now: held::now(),
            changed: false,
        };
        deletions.forget_returned(&settings.outdir);
        Ok(deletions)
    }

    /// Forgets the held files that exist in `outdir` again.
    fn forget_returned(&mut self, outdir: &Path) {
        let back: Vec<RelPath> = self
            .record
            .iter(self.keep)
            .map(|(path, _)| path.clone())
            .filter(|path| path.under(outdir).symlink_metadata().is_ok())
            .collect();
        for path in &back {
            log::info!("{path} is in the repository again: its held deletion is forgotten");
            self.record.release(path);
        }
        self.changed |= !back.is_empty();
    }

    fn save(&self) -> anyhow::Result<()> {
        self.record.save(&self.logdir, self.tag.as_deref())
    }

    /// Whether deletions are held back at all (`keepdeleted` is not 0).
    pub(crate) fn holding(&self) -> bool {
        !self.keep.is_zero()
    }

    /// Records the deletions of `paths` as held from now, durably: only then may their
    /// logs say so.
    pub(crate) fn hold<'p>(
        &mut self,
        paths: impl IntoIterator<Item = &'p RelPath>,
    ) -> anyhow::Result<()> {
        for path in paths {
            self.record.hold(path.clone(), self.now);
        }
        self.save()
            .context("cannot record the deletions held back; nothing was deleted")
    }

    /// When a deletion held now would be due.
    pub(crate) fn due_if_held_now(&self) -> u64 {
        self.now.saturating_add(self.keep.as_secs())
    }

    /// The held files whose deletion is due now.
    pub(crate) fn due(&self) -> Vec<RelPath> {
        self.record.due(self.now, self.keep)
    }

    /// The held files not yet due, each with when it goes (seconds since the epoch).
    pub(crate) fn kept(&self) -> Vec<(RelPath, u64)> {
        self.record
            .iter(self.keep)
            .filter(|(_, due)| *due > self.now)
            .map(|(path, due)| (path.clone(), due))
            .collect()
    }

    /// Leaves out of `differences` the held files the remote has (and the directories
    /// that hold them): they belong there until due, and then [`Deletions::carry_out`]
    /// removes them, not a comparison. Returns the files it left out, each with when its
    /// deletion is due.
    pub(crate) fn leave_out(
        &self,
        differences: &mut Vec<(RelPath, Difference)>,
    ) -> Vec<(RelPath, u64)> {
        let mut above: BTreeSet<RelPath> = BTreeSet::new();
        for (path, _) in self.record.iter(self.keep) {
            let mut dir = path.parent();
            while let Some(d) = dir {
                dir = d.parent();
                above.insert(d);
            }
        }
        let due: BTreeMap<&RelPath, u64> = self.record.iter(self.keep).collect();
        let mut files = Vec::new();
        differences.retain(|(path, difference)| match difference {
            Difference::Extra(Node::Dir) => !above.contains(path),
            Difference::Extra(_) => match due.get(path) {
                Some(at) => {
                    files.push((path.clone(), *at));
                    false
                }
                None => true,
            },
            _ => true,
        });
        files
    }

    /// Whether a deletion due at `at` is due now.
    pub(crate) fn is_due(&self, at: u64) -> bool {
        at <= self.now
    }

    /// Forgets `paths`, removed by the run (`mirror --delete`).
    pub(crate) fn forget(&mut self, paths: &[RelPath]) -> anyhow::Result<()> {
        let mut any = false;
        for path in paths {
            any |= self.record.release(path);
        }
        if any { self.save() } else { Ok(()) }
    }

    /// Removes the files whose deletion is due, then (unless `keepdirectories`) the
    /// directories that emptied; each one the server confirmed is forgotten.
    pub(crate) fn carry_out(
        &mut self,
        runner: &mut Runner<'_>,
        targetdir: Option<&RemotePath>,
        keepdirectories: bool,
        verbose: bool,
    ) -> anyhow::Result<()> {
        let due = self.due();
        if due.is_empty() {
            return Ok(());
        }
        let ops: Vec<Op> = due
            .iter()
            .map(|path| Op::Remove {
                path: remote_path(targetdir, path),
            })
            .collect();
        let mut removed = vec![false; due.len()];
        let ran = runner.run(&ops, |i, result| match result {
            Ok(_) => {
                removed[i] = true;
                Judged::Done(verbose.then(|| format!("{}: removed (held back until now)", due[i])))
            }
            Err(e) if e.cause == Cause::Interrupted => Judged::Other,
            Err(e) => Judged::Failed(format!(
                "{e}: the held deletion of {} is tried again by the next run",
                due[i]
            )),
        });
        let gone: Vec<RelPath> = due
            .iter()
            .zip(&removed)
            .filter(|(_, r)| **r)
            .map(|(p, _)| p.clone())
            .collect();
        // What the server removed is forgotten even when the run then ended.
        self.forget(&gone)?;
        ran?;
        log::info!("{} held deletion(s) carried out", gone.len());
        if !keepdirectories {
            runner.prune(gone.iter().filter_map(RelPath::parent).collect(), targetdir)?;
        }
        Ok(())
    }
}
