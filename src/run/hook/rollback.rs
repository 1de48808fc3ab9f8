//! The hook's side of putting back a distribution's finalisation that fails half-way: the
//! guard itself (the links `.NAME.prev`, putting back, what is said) is
//! [`crate::run::guard`]'s; this is what it means for the journal.
//!
//! A guarded rename is journalled only once its distribution's finalisation went well and
//! the links are gone: a rename put back must not be claimed done, and no link may outlive
//! a run behind a journalled rename (nothing would remove it). A run cut off before then
//! leaves the rename unjournalled, and the rerun finds no `.new` and heals it (uploads it
//! again, renames), making and removing the links anew.
//!
//! It must not decide the order of the finalisation (the plan's, sent by
//! [`super::rounds`]) nor journal anything but the guarded renames.

use std::collections::HashSet;

use crate::engine::{Op, OpResult};
use crate::plan::order::Finalise;
use crate::plan::{Action, Job, Plan};
use crate::relpath::RelPath;
use crate::repo::outlog::DoneMessage;
use crate::run::guard::{self, Words};

use super::rounds::{Executor, JournalStopped, journal_complete};

/// The steps whose renames are put back together: all that names files.
const GUARDED: [Finalise; 3] = [Finalise::Indexes, Finalise::Release, Finalise::InRelease];

/// What the finalisation of the distributions ready for it may be put back with.
pub(super) struct Guard<'p> {
    guard: guard::Guard,
    /// The guarded renames, as [`guard::Guard::paths`] has them: what is journalled.
    jobs: Vec<&'p Job>,
    /// The links still to be made, one per file: on a server that acts in order they go
    /// ahead of the first renames, in their flight (taken by [`super::rounds`], whose
    /// results come back through [`Guard::linked`]).
    pub(super) ahead: Vec<Op>,
    /// The renames whose journal line waits for their distribution's outcome: all, where
    /// links are made.
    pub(super) deferred: HashSet<RelPath>,
}

impl Guard<'_> {
    /// Notes which of `jobs`, just sent, the server confirmed.
    pub(super) fn confirm(&mut self, jobs: &[&Job], ok: &[bool]) {
        let done = jobs.iter().zip(ok).filter(|(_, ok)| **ok);
        self.guard.confirm(done.map(|(j, _)| &j.path));
    }

    /// What became of the links, by file: kept, or nothing there to keep, or not kept.
    pub(super) fn linked(&mut self, results: Vec<(usize, OpResult)>) {
        self.guard.linked(results);
    }
}

impl<'a> Executor<'a> {
    /// Keeps the previous version of each file the finalisation of the `ready` dist dirs
    /// replaces, as a hard link, where the server offers them ([`guard::Guard`]): on a
    /// server that acts in order, in the flight of the first renames, ahead of them
    /// ([`Guard::ahead`]); on any other in a flight of their own.
    pub(super) fn keep_previous<'p>(
        &mut self,
        plan: &'p Plan,
        ready: &[bool],
    ) -> anyhow::Result<Guard<'p>> {
        let mut jobs = Vec::new();
        let mut renames = Vec::new();
        for (dist, d) in plan.dist_dirs.iter().enumerate().filter(|(i, _)| ready[*i]) {
            for step in GUARDED {
                for job in &d.steps[step] {
                    if matches!(job.action, Action::RenameDotNew { .. }) {
                        jobs.push(job);
                        renames.push((dist, job.path.clone()));
                    }
                }
            }
        }
        let dirs = plan.dist_dirs.iter().map(|d| d.dir.clone()).collect();
        let words = Words {
            run: "push",
            rerun: self.settings.pending_command(),
        };
        let mut guard = guard::Guard::new(dirs, renames, self.targetdir.as_ref(), words);
        let ahead = guard.keep_previous(&mut self.runner, self.started)?;
        let deferred = if guard.keeps_links() {
            guard.paths().cloned().collect()
        } else {
            HashSet::new()
        };
        Ok(Guard {
            guard,
            jobs,
            ahead,
            deferred,
        })
    }

    /// After the renames: a dist dir that went well has its links removed (one flight
    /// for all), then its renames journalled: a run cut off in between leaves no link
    /// behind a journalled rename (the rerun redoes the rename, and removes the link). One
    /// that failed (not `ready` any more) is put back, or, what could not be, said.
    pub(super) fn conclude(&mut self, guard: Guard<'_>, ready: &[bool]) -> anyhow::Result<()> {
        let Guard {
            guard,
            jobs,
            deferred,
            ..
        } = guard;
        guard.remove_links(&mut self.runner, ready)?;
        // What stands is journalled: every rename of a dir that went well, and of one
        // that failed, those that cannot be put back.
        for k in guard.standing(ready) {
            let job = jobs[k];
            if deferred.contains(&job.path) {
                journal_complete(self.journal, self.supersedes, job, DoneMessage::Done)
                    .map_err(|e| e.context(JournalStopped))?;
            }
        }
        guard.put_back(&mut self.runner, ready)
    }
}
