//! Symlinks as copies, for servers that refuse them: the hook's copies of the links its
//! outlogs name (what each leads to uploaded at its path), and the refresh of the copies
//! of reprepro's suite links (`dists/stable -> bookworm`), which no outlog names. It must
//! not decide whether links are copied: [`super::rounds`] does.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::Symlinks;
use crate::engine::Status;
use crate::engine::{Cause, Op};
use crate::exit::ExitStatus;
use crate::plan::tree::{Node, remote_path};
use crate::plan::{self, Action, Job};
use crate::relpath::RelPath;
use crate::repo::outlog::DoneMessage;
use crate::run::runner::Judged;
use crate::run::sync;

use super::rounds::{Executor, JournalStopped, journal_complete};
use super::sources::link_source;

/// The operations that make the copies of some links, in the order they go: what stands
/// in the way, directories to make, files to upload; each with the index of its link.
#[derive(Default)]
struct CopyOps {
    clears: Vec<(usize, Op)>,
    mkdirs: Vec<(usize, Op)>,
    uploads: Vec<(usize, Op)>,
}

impl Executor<'_> {
    /// Keeps the remote copies of reprepro's suite links current: `dists/stable ->
    /// bookworm` (made by `reprepro createsymlinks`, named by no outlog) is a directory on a
    /// server that refuses symlinks, which `mirror` filled. When `bookworm` was finalised,
    /// the copy is brought up to date as `mirror --delete dists/stable` would, before the
    /// pool deletions that its old indexes may still name. Not with `symlinks yes` (the
    /// remote has links then), and only where the remote holds no link there: one READLINK
    /// per alias, together (one round trip per push that has aliases).
    pub(super) fn refresh_copies(&mut self, finalised: &[&plan::DistDir]) -> anyhow::Result<()> {
        if self.settings.symlinks == Symlinks::Yes {
            return Ok(());
        }
        let (aliases, changed) = self.suite_aliases(finalised);
        if aliases.is_empty() {
            return Ok(());
        }
        let Some(copies) = self.remote_copies(aliases)? else {
            return Ok(());
        };
        if copies.is_empty() {
            return Ok(());
        }
        log::info!(
            "updating the remote copies of {}",
            copies
                .iter()
                .map(RelPath::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let interrupt = self.runner.interrupt();
        let settings = self.settings;
        let refreshed =
            sync::refresh_copies(self.runner.engine(), settings, &copies, &changed, interrupt);
        match refreshed {
            Ok(report) => {
                self.runner.add_failures(report.failures);
                self.runner.add_tally(&report.tally);
                self.report.completed += report.tally.changes();
            }
            // A copy that must not be made (its link leads out of the repository) is one
            // failure, said; a lost connection or a signal ends the run.
            Err(e) if e.status == ExitStatus::Setup => {
                self.runner.fail(&e.to_string());
            }
            Err(e) => return Err(e.error),
        }
        Ok(())
    }

    /// The local links in `dists` that lead to a finalised distribution (`dists/CODENAME`),
    /// and the paths below them that the hook changed in that distribution.
    fn suite_aliases(&self, finalised: &[&plan::DistDir]) -> (Vec<RelPath>, BTreeSet<RelPath>) {
        let dists = RelPath::new("dists").expect("valid");
        let local_dists = self.outdir.join("dists");
        // The distributions themselves (`dists/CODENAME`), resolved.
        let targets: Vec<(PathBuf, &plan::DistDir)> = finalised
            .iter()
            .filter(|d| d.dir.parent().as_ref() == Some(&dists))
            .filter_map(|d| {
                let resolved = d.dir.under(self.outdir).canonicalize().ok()?;
                Some((resolved, *d))
            })
            .collect();
        let (mut aliases, mut changed) = (Vec::new(), BTreeSet::new());
        let Ok(entries) = std::fs::read_dir(&local_dists) else {
            return (aliases, changed);
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str().and_then(|n| RelPath::new(n).ok()) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            let Ok(resolved) = entry.path().canonicalize() else {
                continue;
            };
            if let Some((_, d)) = targets.iter().find(|(r, _)| *r == resolved) {
                aliases.push(dists.join(&name));
                // What the hook changed in the distribution changes in the copy too, even
                // where size and time (to the second) could not tell.
                for job in d.steps.iter().flatten() {
                    if let Some(rest) = job.path.text().strip_prefix(&*d.dir.text())
                        && let Ok(path) = RelPath::new(&format!("{}{rest}", dists.join(&name)))
                    {
                        changed.insert(path);
                    }
                }
            }
        }
        (aliases, changed)
    }

    /// The aliases whose remote is a copy to refresh; `None` when a signal came. A link
    /// there is what it should be. A copy is not, nor is what a server without links
    /// answers (rclone: OP_UNSUPPORTED); nothing there is left alone, as `mirror` would
    /// add it.
    fn remote_copies(&mut self, aliases: Vec<RelPath>) -> anyhow::Result<Option<Vec<RelPath>>> {
        let readlinks: Vec<Op> = aliases
            .iter()
            .map(|a| Op::Readlink {
                path: remote_path(self.targetdir.as_ref(), a),
            })
            .collect();
        let results = self.runner.engine().run(&readlinks, |_, _| {})?;
        let mut copies = Vec::new();
        for (alias, result) in aliases.into_iter().zip(results) {
            match result {
                Ok(_) => {}
                Err(e) if e.cause == Cause::Interrupted => return Ok(None),
                Err(e) if e.status() == Some(Status::NoSuchFile) => {}
                Err(_) => copies.push(alias),
            }
        }
        Ok(Some(copies))
    }

    /// Makes, for each link job, a copy of what the link leads to locally at its path:
    /// the file, or the directory's tree (links in it followed, as `rsync -L` does), each
    /// file uploaded straight to its final name (an upload lands atomically by itself).
    /// A job is journalled `done` once all of its copy is up. What the link leads to must
    /// lie in the dist dir, as every dist file's source must; a link that leads nowhere
    /// has nothing to copy: what stands at its path is removed, and it is done.
    pub(super) fn copy_links(&mut self, jobs: &[&Job]) -> anyhow::Result<Vec<bool>> {
        let mut failed = vec![false; jobs.len()];
        let mut ops = CopyOps::default();
        for (i, job) in jobs.iter().enumerate() {
            failed[i] = !self.copy_ops(i, job, &mut ops);
        }
        for (group, counts) in [(ops.clears, false), (ops.mkdirs, true), (ops.uploads, true)] {
            self.send_copies(&group, counts, &mut failed)?;
        }
        let mut ok = vec![false; jobs.len()];
        for (i, job) in jobs.iter().enumerate() {
            if failed[i] {
                continue;
            }
            journal_complete(self.journal, self.supersedes, job, DoneMessage::Done)
                .context(JournalStopped)?;
            ok[i] = true;
            self.report.completed += 1;
            if self.settings.verbose > 0 {
                self.runner.say(&format!("copied {} (a symlink)", job.path));
            }
        }
        Ok(ok)
    }

    /// Adds to `ops` what makes the copy of link job `i`; false when it cannot be made
    /// (said, and counted as a failure).
    fn copy_ops(&mut self, i: usize, job: &Job, ops: &mut CopyOps) -> bool {
        let Action::Symlink { target } = &job.action else {
            unreachable!("only links are copied")
        };
        let source = link_source(&self.settings.distdir, &job.path, target);
        let link = remote_path(self.targetdir.as_ref(), &job.path);
        let followed = match crate::repo::scan::follow(&source, &job.path, &self.dist_root) {
            Ok(followed) => followed,
            Err(e) if e.dangling => {
                log::warn!("{e}: nothing is uploaded for it");
                ops.clears.push((i, Op::Remove { path: link }));
                return true;
            }
            Err(e) => {
                self.runner.fail(&e.to_string());
                return false;
            }
        };
        let dirs_with_files: BTreeSet<RelPath> = followed
            .entries
            .iter()
            .filter(|(_, n, _)| matches!(n, Node::File { .. }))
            .filter_map(|(p, _, _)| p.parent())
            .collect();
        for (path, node, local) in followed.entries {
            let remote = remote_path(self.targetdir.as_ref(), &path);
            match node {
                Node::Dir => {
                    if path == job.path {
                        // A link or file standing where the directory goes (a
                        // directory there is kept: its REMOVE fails harmlessly).
                        ops.clears.push((i, Op::Remove { path: link.clone() }));
                    }
                    if !dirs_with_files.contains(&path) {
                        ops.mkdirs.push((i, Op::Mkdir { path: remote }));
                    }
                }
                Node::File { mtime, .. } => ops.uploads.push((
                    i,
                    Op::Upload {
                        local,
                        remote,
                        fsync: true,
                        mtime: Some(mtime),
                    },
                )),
                Node::Link(_) | Node::UnreadableLink(_) | Node::UnlistableDir(_) => {}
            }
        }
        true
    }

    /// Runs one group of copy operations; a link whose operation failed (and, where
    /// `counts`, is said and counted) or was interrupted is marked in `failed`.
    fn send_copies(
        &mut self,
        group: &[(usize, Op)],
        counts: bool,
        failed: &mut [bool],
    ) -> anyhow::Result<()> {
        if group.is_empty() {
            return Ok(());
        }
        let ops: Vec<Op> = group.iter().map(|(_, op)| op.clone()).collect();
        self.report.operations += ops.len();
        // Copies are not in the progress line's totals: a done one is not counted there.
        self.runner.run(&ops, |k, result| match result {
            Err(e) if e.cause == Cause::Interrupted => {
                failed[group[k].0] = true;
                Judged::Other
            }
            Err(e) if counts => {
                failed[group[k].0] = true;
                Judged::Failed(e.to_string())
            }
            _ => Judged::Other,
        })?;
        let completed = self.report.completed;
        self.runner.stop_if_interrupted(|signal| {
            format!(
                "interrupted by {signal} while uploading copies of symlinks: stopped once the \
                 requests in flight were answered; {completed} operation(s) completed and are \
                 journalled"
            )
        })
    }
}
