//! A distribution's finalisation that fails half-way is put back as it was. Before its
//! renames, each file they replace is kept as a hard link, `.NAME.prev` beside it (where
//! the server offers `hardlink@openssh.com`; reprepro names no file with a leading dot).
//! If a change of the finalisation fails (an index, `Release` or `InRelease`), every file
//! already replaced is put back from its link and every new one taken away, so that apt
//! sees the distribution exactly as before the push instead of new indexes under the old
//! `Release` ("Hash Sum mismatch"); the new content stays as `NAME.new`, which the rerun
//! renames as usual. Once all went well the links go.
//!
//! A guarded rename is journalled only once its distribution's finalisation went well and
//! the links are gone: a rename put back must not be claimed done, and no link may outlive
//! a run behind a journalled rename (nothing would remove it). A run cut off before then
//! leaves the rename unjournalled, and the rerun finds no `.new` and heals it (uploads it
//! again, renames), making and removing the links anew.
//! Without a link (not offered, or refused) a failure is said in one line: which files are
//! new beside which old ones, and that a rerun finishes the push.
//!
//! It must not decide the order of the finalisation (the plan's, sent by
//! [`super::rounds`]) nor journal anything but the guarded renames.

use std::collections::HashSet;

use crate::engine::{Op, OpResult, Status};
use crate::plan::order::Finalise;
use crate::plan::tree::remote_path;
use crate::plan::{Action, DistDir, Job, Plan};
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;
use crate::repo::outlog::DoneMessage;
use crate::run::output::Tally;

use super::rounds::{Executor, JournalStopped, journal_complete};

/// The steps whose renames are put back together: all that names files.
const GUARDED: [Finalise; 3] = [Finalise::Indexes, Finalise::Release, Finalise::InRelease];

/// The name the previous version of `path` is kept under while it is replaced.
pub(super) fn kept_name(path: &RemotePath) -> RemotePath {
    let bytes = path.as_bytes();
    let slash = bytes.iter().rposition(|&b| b == b'/').map_or(0, |s| s + 1);
    let mut kept = bytes[..slash].to_vec();
    kept.push(b'.');
    kept.extend_from_slice(&bytes[slash..]);
    kept.extend_from_slice(b".prev");
    RemotePath::new(kept).expect("a remote path with a longer last name is one")
}

/// What was at a renamed file's name before the finalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prior {
    /// A file, kept as a hard link under this name.
    Kept(RemotePath),
    /// Nothing: the file is new in this finalisation.
    Fresh,
    /// Not known, or not kept (why is the guard's).
    Unknown,
}

/// One rename of a guarded step.
struct File<'p> {
    dist: usize,
    job: &'p Job,
    remote: RemotePath,
    prior: Prior,
    /// The server confirmed the rename.
    renamed: bool,
}

/// What the finalisation of the distributions ready for it may be put back with.
pub(super) struct Guard<'p> {
    dists: &'p [DistDir],
    files: Vec<File<'p>>,
    /// The links still to be made, one per file: on a server that acts in order they go
    /// ahead of the first renames, in their flight (taken by [`super::rounds`], whose
    /// results come back through [`Guard::linked`]).
    pub(super) ahead: Vec<Op>,
    /// The renames whose journal line waits for their distribution's outcome: all, where
    /// links are made.
    pub(super) deferred: HashSet<RelPath>,
    /// Why some file could not be kept (the first reason), for the line a failure says.
    unkept: Option<String>,
}

impl Guard<'_> {
    /// Notes which of `jobs`, just sent, the server confirmed.
    pub(super) fn confirm(&mut self, jobs: &[&Job], ok: &[bool]) {
        let done: HashSet<&RelPath> = jobs
            .iter()
            .zip(ok)
            .filter(|(_, ok)| **ok)
            .map(|(j, _)| &j.path)
            .collect();
        for f in &mut self.files {
            f.renamed |= done.contains(&f.job.path);
        }
    }

    /// What became of the links, by file: kept, or nothing there to keep, or not kept.
    pub(super) fn linked(&mut self, results: Vec<(usize, OpResult)>) {
        for (k, result) in results {
            let f = &mut self.files[k];
            f.prior = match result {
                Ok(_) => Prior::Kept(kept_name(&f.remote)),
                Err(e) if e.status() == Some(Status::NoSuchFile) => Prior::Fresh,
                Err(e) => {
                    log::info!("{} cannot be kept to put back: {e}", f.remote);
                    self.unkept.get_or_insert_with(|| match e.status() {
                        Some(s) if s.is_refusal() => {
                            format!("the server refuses hardlink@openssh.com: {e}")
                        }
                        _ => format!("a hard link failed: {e}"),
                    });
                    Prior::Unknown
                }
            };
        }
    }
}

impl<'a> Executor<'a> {
    /// Keeps the previous version of each file the finalisation of the `ready` dist dirs
    /// replaces, as a hard link, where the server offers them (each made over a link a
    /// killed run left): on a server that acts in order, in the flight of the first
    /// renames, ahead of them ([`Guard::ahead`]); on any other in a flight of their own.
    pub(super) fn keep_previous<'p>(
        &mut self,
        plan: &'p Plan,
        ready: &[bool],
    ) -> anyhow::Result<Guard<'p>> {
        let mut files = Vec::new();
        for (dist, d) in plan.dist_dirs.iter().enumerate().filter(|(i, _)| ready[*i]) {
            for step in GUARDED {
                for job in &d.steps[step] {
                    if matches!(job.action, Action::RenameDotNew { .. }) {
                        files.push(File {
                            dist,
                            job,
                            remote: remote_path(self.targetdir.as_ref(), &job.path),
                            prior: Prior::Unknown,
                            renamed: false,
                        });
                    }
                }
            }
        }
        let mut guard = Guard {
            dists: &plan.dist_dirs,
            files,
            ahead: Vec::new(),
            deferred: HashSet::new(),
            unkept: None,
        };
        if guard.files.is_empty() {
            return Ok(guard);
        }
        let engine = self.runner.engine();
        if !engine.offers_hardlink() {
            guard.unkept = Some("the server does not offer hardlink@openssh.com".into());
            return Ok(guard);
        }
        let links: Vec<Op> = guard
            .files
            .iter()
            .map(|f| Op::Hardlink {
                from: f.remote.clone(),
                to: kept_name(&f.remote),
            })
            .collect();
        guard.deferred = guard.files.iter().map(|f| f.job.path.clone()).collect();
        if engine.in_order() {
            guard.ahead = links;
            return Ok(guard);
        }
        let results = engine.run(&links, |_, _| {})?;
        guard.linked(results.into_iter().enumerate().collect());
        log::info!(
            "{} file(s) the finalisation replaces kept as hard links, after {:.2} s",
            guard
                .files
                .iter()
                .filter(|f| matches!(f.prior, Prior::Kept(_)))
                .count(),
            self.started.elapsed().as_secs_f64()
        );
        Ok(guard)
    }

    /// After the renames: a dist dir that went well has its links removed (one flight
    /// for all), then its renames journalled: a run cut off in between leaves no link
    /// behind a journalled rename (the rerun redoes the rename, and removes the link). One
    /// that failed (not `ready` any more) is put back, or, what could not be, said.
    pub(super) fn conclude(&mut self, guard: Guard<'_>, ready: &[bool]) -> anyhow::Result<()> {
        let removals: Vec<Op> = guard
            .files
            .iter()
            .filter(|f| ready[f.dist])
            .filter_map(|f| match &f.prior {
                Prior::Kept(kept) => Some(Op::Remove { path: kept.clone() }),
                _ => None,
            })
            .collect();
        if !removals.is_empty() {
            let results = self.runner.engine().run(&removals, |_, _| {})?;
            for (op, result) in removals.iter().zip(results) {
                if let Err(e) = result {
                    log::warn!(
                        "{}: {e}; the previous version stays there until the next push of it",
                        op.path()
                    );
                }
            }
        }
        let mut failed: Vec<usize> = Vec::new();
        for f in &guard.files {
            let went_well = ready[f.dist];
            if !went_well && !failed.contains(&f.dist) {
                failed.push(f.dist);
            }
            // What stands is journalled: every rename of a dir that went well, and of one
            // that failed, those that cannot be put back.
            let stands = went_well || f.prior == Prior::Unknown;
            if f.renamed && stands && guard.deferred.contains(&f.job.path) {
                journal_complete(self.journal, self.supersedes, f.job, DoneMessage::Done)
                    .map_err(|e| e.context(JournalStopped))?;
            }
        }
        for dist in failed {
            let files: Vec<&File<'_>> = guard.files.iter().filter(|f| f.dist == dist).collect();
            self.roll_back(&guard.dists[dist].dir, &files, guard.unkept.as_deref())?;
        }
        Ok(())
    }

    /// Puts dist dir `dir` back as it was before its finalisation: each replaced file
    /// from its link, the indexes last, then the new files taken away (renamed back to
    /// `NAME.new`). What cannot be put back is said in one line.
    ///
    /// The new content of a replaced file is kept for the rerun too: linked first as the
    /// temporary name of its `.new` (`.NAME.new.tmp`, which an upload clears), and renamed
    /// to `NAME.new` only once the old file is back. Were `NAME.new` made while `NAME`
    /// still holds the same file, a rerun's rename of one onto the other would do nothing
    /// (rename(2) on two links of one file) and leave the `.new` behind.
    fn roll_back(
        &mut self,
        dir: &RelPath,
        files: &[&File<'_>],
        unkept: Option<&str>,
    ) -> anyhow::Result<()> {
        let dotnew = |f: &File<'_>| f.remote.with_suffix(b".new");
        let new_kept = |f: &File<'_>| dotnew(f).temp_sibling();
        let replaced: Vec<&File<'_>> = files
            .iter()
            .copied()
            .filter(|f| f.renamed && matches!(f.prior, Prior::Kept(_)))
            .collect();
        let relinks: Vec<Op> = replaced
            .iter()
            .map(|f| Op::Hardlink {
                from: f.remote.clone(),
                to: new_kept(f),
            })
            .collect();
        let mut relinked: HashSet<&RelPath> = HashSet::new();
        if !relinks.is_empty() {
            let results = self.runner.engine().run(&relinks, |_, _| {})?;
            for (f, result) in replaced.iter().zip(results) {
                match result {
                    Ok(_) => {
                        relinked.insert(&f.job.path);
                    }
                    Err(e) => log::info!("{e}: the rerun uploads {}.new again", f.job.path),
                }
            }
        }
        // In the reverse of the finalisation's order, InRelease first: at each moment
        // what a reader sees named is there.
        let mut undo: Vec<(&File<'_>, Op)> = Vec::new();
        for f in files.iter().rev() {
            match (&f.prior, f.renamed) {
                (Prior::Kept(kept), true) => undo.push((
                    f,
                    Op::Rename {
                        from: kept.clone(),
                        to: f.remote.clone(),
                    },
                )),
                (Prior::Kept(kept), false) => undo.push((f, Op::Remove { path: kept.clone() })),
                _ => {}
            }
        }
        for f in files
            .iter()
            .filter(|f| f.renamed && f.prior == Prior::Fresh)
        {
            let op = Op::Rename {
                from: f.remote.clone(),
                to: dotnew(f),
            };
            undo.push((f, op));
        }
        let ops: Vec<Op> = undo.iter().map(|(_, op)| op.clone()).collect();
        let results = if ops.is_empty() {
            Vec::new()
        } else {
            self.runner.engine().run(&ops, |_, _| {})?
        };
        let mut still_new: Vec<&File<'_>> = files
            .iter()
            .copied()
            .filter(|f| f.renamed && f.prior == Prior::Unknown)
            .collect();
        let (mut restored, mut taken_away) = (0, 0);
        let mut waiting = Vec::new();
        for ((f, op), result) in undo.iter().zip(results) {
            let putting_back = f.renamed;
            match result {
                Ok(_) if !putting_back => {}
                Ok(_) if f.prior == Prior::Fresh => taken_away += 1,
                Ok(_) => {
                    restored += 1;
                    if relinked.contains(&f.job.path) {
                        waiting.push(Op::Rename {
                            from: new_kept(f),
                            to: dotnew(f),
                        });
                    }
                }
                Err(e) if putting_back => {
                    self.runner
                        .fail(&format!("{dir}: cannot put {} back: {e}", f.job.path));
                    still_new.push(f);
                }
                Err(e) => log::warn!("{}: {e}", op.path()),
            }
        }
        if !waiting.is_empty() {
            let results = self.runner.engine().run(&waiting, |_, _| {})?;
            for (op, result) in waiting.iter().zip(results) {
                if let Err(e) = result {
                    log::info!("{e}: the rerun uploads {} again", op.path());
                }
            }
        }
        let name = |f: &File<'_>| {
            crate::plan::order::dist_dir_of(&f.job.path)
                .map_or(f.job.path.as_str(), |(_, n)| n)
                .to_string()
        };
        self.runner.add_tally(&Tally {
            put_back: restored + taken_away,
            ..Tally::default()
        });
        if still_new.is_empty() {
            if restored + taken_away > 0 {
                self.runner.say(&format!(
                    "outsftphook: {dir}: its finalisation failed half-way, so it was put back \
                     as it was before this push ({restored} file(s) restored, {taken_away} new \
                     one(s) taken away): apt clients see the old distribution, whole; a rerun \
                     ('{}') finishes the push",
                    self.settings.pending_command()
                ));
            }
            return Ok(());
        }
        let new: HashSet<&RelPath> = still_new.iter().map(|f| &f.job.path).collect();
        let old: Vec<String> = files
            .iter()
            .filter(|f| !new.contains(&f.job.path))
            .map(|f| name(f))
            .collect();
        let new: Vec<String> = still_new.iter().map(|f| name(f)).collect();
        let why = unkept.unwrap_or("putting back failed");
        self.runner.say(&format!(
            "outsftphook: {dir}: its finalisation failed half-way and could not be put back \
             ({why}): new {} stand beside the old {}, so apt clients may see 'Hash Sum \
             mismatch' until a rerun ('{}') finishes the push",
            few(&new),
            few(&old),
            self.settings.pending_command()
        ));
        Ok(())
    }
}

/// At most a few names, and how many more.
fn few(names: &[String]) -> String {
    const SHOWN: usize = 4;
    match names.len() {
        0 => "(none)".to_string(),
        n if n <= SHOWN => names.join(", "),
        n => format!("{} and {} more", names[..SHOWN].join(", "), n - SHOWN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_version_is_kept_under_a_hidden_name_beside_it() {
        let kept = |p: &str| kept_name(&RemotePath::new(p).unwrap());
        assert_eq!(
            kept("/srv/m/dists/b/main/binary-amd64/Packages.xz").as_bytes(),
            b"/srv/m/dists/b/main/binary-amd64/.Packages.xz.prev"
        );
        assert_eq!(
            kept("dists/b/InRelease").as_bytes(),
            b"dists/b/.InRelease.prev"
        );
        assert_eq!(kept("Release").as_bytes(), b".Release.prev");
    }

    #[test]
    fn a_few_names_are_listed_and_the_rest_counted() {
        let names = |n: usize| (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>();
        assert_eq!(few(&names(0)), "(none)");
        assert_eq!(few(&names(2)), "f0, f1");
        assert_eq!(few(&names(6)), "f0, f1, f2, f3 and 2 more");
    }
}
