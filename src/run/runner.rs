//! The one run loop of the hook and of `mirror`: drives a list of operations through the
//! engine, hears each result the moment it comes (a failure is counted and said at once, a
//! finished upload moves the progress line), stops the run once a signal came, and removes
//! emptied directories a level at a time.
//!
//! It owns the progress line and the count of failures. It must not know what an
//! operation is for: journals, plans and the commands' advice stay with the caller, which
//! judges each result ([`Judged`]) and words the message a signal ends the run with.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use crate::engine::{Engine, Op, OpResult};
use crate::interrupt::{Interrupt, signal_name};
use crate::plan::order::levels_deepest_first;
use crate::plan::tree::remote_path;
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;
use crate::run::output::Progress;

/// What a result means to the caller, and so what the runner does about it.
pub(crate) enum Judged {
    /// Done as asked: an upload counts on the progress line, and the line given (if any)
    /// is said.
    Done(Option<String>),
    /// Failed: counted, and said at once as `outsftphook: MESSAGE`.
    Failed(String),
    /// Neither: interrupted, held back for the caller, or not worth counting.
    Other,
}

/// The engine, the progress line and the failures of one run (or one `mirror` pass).
pub(crate) struct Runner<'a> {
    engine: &'a mut Engine,
    interrupt: &'a Interrupt,
    /// Shared with the engine's byte watcher while a run goes on ([`Engine::watch_bytes`]).
    progress: Rc<RefCell<Progress>>,
    failures: usize,
    /// Files the uploads judged done uploaded, and the bytes the engine sent for uploads.
    uploaded: (u64, u64),
}

impl<'a> Runner<'a> {
    /// A runner whose progress line expects `files` uploads of `bytes`.
    pub(crate) fn new(
        engine: &'a mut Engine,
        interrupt: &'a Interrupt,
        files: u64,
        bytes: u64,
    ) -> Runner<'a> {
        let written = engine.bytes_written();
        Runner {
            engine,
            interrupt,
            progress: Rc::new(RefCell::new(Progress::new(files, bytes, written))),
            failures: 0,
            uploaded: (0, 0),
        }
    }

    /// The engine, for what is not a list of changes (listings, reads, comparisons).
    pub(crate) fn engine(&mut self) -> &mut Engine {
        self.engine
    }

    /// What stops the run.
    pub(crate) fn interrupt(&self) -> &'a Interrupt {
        self.interrupt
    }

    /// Operations that failed so far.
    pub(crate) fn failures(&self) -> usize {
        self.failures
    }

    /// Files and bytes of the uploads judged done so far.
    pub(crate) fn uploaded(&self) -> (u64, u64) {
        self.uploaded
    }

    /// A new progress line, for `files` uploads of `bytes`.
    pub(crate) fn restart_progress(&mut self, files: u64, bytes: u64) {
        let written = self.engine.bytes_written();
        self.progress = Rc::new(RefCell::new(Progress::new(files, bytes, written)));
    }

    /// Removes the progress line.
    pub(crate) fn finish(&mut self) {
        self.progress.borrow_mut().finish();
    }

    /// Says `line` without garbling the progress line.
    pub(crate) fn say(&mut self, line: &str) {
        self.progress.borrow_mut().say(line);
    }

    /// One failure, said at once as `outsftphook: MESSAGE`.
    pub(crate) fn fail(&mut self, message: &str) {
        self.failures += 1;
        self.progress.borrow_mut().tell(message);
    }

    /// `failures` more failures, said already.
    pub(crate) fn add_failures(&mut self, failures: usize) {
        self.failures += failures;
    }

    /// Runs `ops` together ([`Engine::run_batch`]: uploads only are spread over the
    /// connections); `judge` hears each result as soon as it comes. An `Err` is the
    /// connection lost.
    pub(crate) fn run(
        &mut self,
        ops: &[Op],
        mut judge: impl FnMut(usize, &OpResult) -> Judged,
    ) -> anyhow::Result<()> {
        // The progress line goes by the sizes the run sees now; the summary counts what the
        // engine sent (a file replaced meanwhile is sent as it is when opened).
        let sizes = self.engine.source_sizes(ops);
        let sent_before = self.engine.stats().bytes_uploaded;
        // The line moves with the bytes written too, while a long upload goes on.
        let watcher = Rc::clone(&self.progress);
        self.engine.watch_bytes(Some(Box::new(move |written| {
            watcher.borrow_mut().sent(written)
        })));
        let (progress, failures, uploaded) =
            (&self.progress, &mut self.failures, &mut self.uploaded);
        let on_done = |i: usize, result: &OpResult| match judge(i, result) {
            Judged::Done(line) => {
                let mut progress = progress.borrow_mut();
                if let (Op::Upload { .. }, Some(size)) = (&ops[i], sizes[i]) {
                    uploaded.0 += 1;
                    progress.file_done(size);
                }
                if let Some(line) = line {
                    progress.say(&line);
                }
            }
            Judged::Failed(message) => {
                *failures += 1;
                progress.borrow_mut().tell(&message);
            }
            Judged::Other => {}
        };
        let ran = self.engine.run_batch(ops, on_done);
        self.engine.watch_bytes(None);
        self.uploaded.1 += self.engine.stats().bytes_uploaded - sent_before;
        ran?;
        Ok(())
    }

    /// Ends the run when a signal came: the progress line goes, and the error says
    /// `stopped(SIGNAL NAME)`. What was in flight has been answered by then.
    pub(crate) fn stop_if_interrupted(
        &mut self,
        stopped: impl FnOnce(&str) -> String,
    ) -> anyhow::Result<()> {
        match self.interrupt.signal() {
            Some(sig) => {
                self.progress.borrow_mut().finish();
                Err(anyhow::anyhow!(stopped(&signal_name(sig))))
            }
            None => Ok(()),
        }
    }

    /// Removes directories left empty, deepest first, as reprepro does locally: a level
    /// at a time, each parent only once a child of it was removed. One that is not empty
    /// (or not ours to remove) is left alone, and so are its parents.
    pub(crate) fn prune(
        &mut self,
        dirs: BTreeSet<RelPath>,
        targetdir: Option<&RemotePath>,
    ) -> anyhow::Result<()> {
        remove_emptied(dirs, |level| {
            let ops: Vec<Op> = level
                .iter()
                .map(|p| Op::Rmdir {
                    path: remote_path(targetdir, p),
                })
                .collect();
            let results = self.engine.run(&ops, |_, _| {})?;
            self.stop_if_interrupted(|signal| {
                format!("interrupted by {signal} while removing emptied directories")
            })?;
            Ok(results.iter().map(Result::is_ok).collect())
        })
    }
}

/// Removes `dirs` a level at a time, the deepest first (as the plan groups levels), with
/// `rmdir`, which says which of a level it removed; the parent of one removed is tried in
/// its turn.
fn remove_emptied(
    mut todo: BTreeSet<RelPath>,
    mut rmdir: impl FnMut(&[RelPath]) -> anyhow::Result<Vec<bool>>,
) -> anyhow::Result<()> {
    let deepest = |todo: &BTreeSet<RelPath>| {
        levels_deepest_first(todo.iter().cloned().collect())
            .into_iter()
            .next()
    };
    while let Some(level) = deepest(&todo) {
        let removed = rmdir(&level)?;
        for (dir, removed) in level.iter().zip(removed) {
            todo.remove(dir);
            if removed && let Some(parent) = dir.parent() {
                todo.insert(parent);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn emptied_directories_go_deepest_first_and_a_parent_only_after_a_child() {
        let dirs = [r("pool/main/a/b"), r("pool/main/c"), r("pool/other/d")];
        let mut levels = Vec::new();
        remove_emptied(dirs.into_iter().collect(), |level| {
            levels.push(
                level
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect::<Vec<_>>(),
            );
            // pool/main/c is not empty: neither it nor (for it) its parent goes.
            Ok(level.iter().map(|p| p.as_str() != "pool/main/c").collect())
        })
        .unwrap();
        assert_eq!(
            levels,
            [
                vec!["pool/main/a/b"],
                vec!["pool/main/a", "pool/main/c", "pool/other/d"],
                vec!["pool/main", "pool/other"],
                vec!["pool"],
            ]
        );
    }

    #[test]
    fn a_failed_level_ends_the_pruning() {
        let dirs = [r("pool/main/a"), r("pool/main/b/c")];
        let mut calls = 0;
        let stopped = remove_emptied(dirs.into_iter().collect(), |_| {
            calls += 1;
            anyhow::bail!("interrupted by SIGTERM while removing emptied directories")
        });
        assert!(stopped.is_err());
        assert_eq!(calls, 1);
    }
}
