//! The one run loop of the hook and of `mirror`: drives a list of operations through the
//! engine, hears each result the moment it comes (a failure is counted and said at once, a
//! finished upload moves the progress line), stops the run once a signal came, and removes
//! emptied directories a level at a time.
//!
//! It owns the progress line and the count of failures. It must not know what an
//! operation is for: journals, plans and the commands' advice stay with the caller, which
//! judges each result ([`Judged`]) and words the message a signal ends the run with.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::engine::{
    Cause, Engine, EngineError, Op, OpError, OpKind, OpResult, Outcome, Req, Status,
};
use crate::interrupt::{Interrupt, signal_name};
use crate::plan::order::levels_deepest_first;
use crate::plan::tree::remote_path;
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;
use crate::run::output::{Progress, Tally, human_bytes};

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
    /// What the server confirmed, by kind; its bytes are those the engine sent for uploads.
    tally: Tally,
    grouped: Grouped,
    /// A run ended with the connection lost: nothing more is asked on it.
    broken: bool,
}

/// What failures share, so that one line says it: a directory that refused or could not
/// be made (named once, not each file below it), or a full disk (WRITE failing with
/// FAILURE, said once at the end with the room the server says is left).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Shared {
    Dir(RemotePath),
    DiskFull,
    /// The target directory is missing or no directory: the caller says it, once.
    Target,
}

/// The failures grouped by what they share: the first of a directory's is said at once,
/// the others counted and said in one line at the end; a full disk is said only then.
#[derive(Debug, Default)]
struct Grouped {
    /// Per group, the failures not said one by one.
    unsaid: BTreeMap<Shared, usize>,
    /// The first upload a full disk failed, for where to ask how much room is left.
    full_at: Option<RemotePath>,
}

/// Whether `a` is `b` or a directory above it.
fn at_or_above(a: &RemotePath, b: &RemotePath) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    b == a || (b.starts_with(a) && b.get(a.len()) == Some(&b'/'))
}

/// Whether `cause` is the server refusing permission.
fn denied(cause: &Cause) -> bool {
    matches!(
        cause,
        Cause::Status {
            code: Status::PermissionDenied,
            ..
        }
    )
}

/// What failure `e` shares with others, if it is one said by its group: the directory
/// that refused (for a MKDIR refused, the one it was to be made in), or a full disk.
fn shared(e: &OpError) -> Option<Shared> {
    match &e.cause {
        Cause::Target(_) => Some(Shared::Target),
        Cause::Directory { cause, .. } if matches!(**cause, Cause::Target(_)) => {
            Some(Shared::Target)
        }
        Cause::Directory { dir, cause } if denied(cause) => {
            Some(Shared::Dir(dir.parent().unwrap_or_else(|| dir.clone())))
        }
        Cause::Directory { dir, .. } => Some(Shared::Dir(dir.clone())),
        Cause::Status {
            request: Req::Write,
            code: Status::Failure,
            ..
        } => Some(Shared::DiskFull),
        // A directory that refuses changes in it refuses them all: named once. (A SYMLINK
        // refused is the request refused, which its callers word.)
        Cause::Status {
            request,
            code: Status::PermissionDenied,
            ..
        } if e.op == OpKind::Upload
            || matches!(
                request,
                Req::Remove | Req::Rename | Req::PosixRename | Req::Rmdir
            ) =>
        {
            e.path.parent().map(Shared::Dir)
        }
        _ => None,
    }
}

impl Grouped {
    /// The line to say now for failure `e` (said as `message` when alone), or `None` when
    /// its group says it later.
    fn on_failure(&mut self, e: &OpError, message: String) -> Option<String> {
        let Some(group) = shared(e) else {
            return Some(message);
        };
        let dir = match group {
            Shared::Target => return None,
            Shared::DiskFull => {
                self.full_at.get_or_insert_with(|| e.path.clone());
                *self.unsaid.entry(group).or_default() += 1;
                return None;
            }
            Shared::Dir(dir) => dir,
        };
        // A directory below one that failed fails for it: counted there.
        let known = self.unsaid.iter_mut().find(|(g, _)| match g {
            Shared::Dir(d) => at_or_above(d, &dir),
            Shared::DiskFull | Shared::Target => false,
        });
        if let Some((_, n)) = known {
            *n += 1;
            return None;
        }
        self.unsaid.insert(Shared::Dir(dir.clone()), 0);
        let cause = match &e.cause {
            Cause::Directory { cause, .. } => cause,
            cause => cause,
        };
        Some(match cause {
            cause if denied(cause) => {
                format!(
                    "{dir}: the server refuses changes in this directory ({cause}, for {}): \
                     let the SFTP user write there",
                    e.path
                )
            }
            _ => message,
        })
    }

    /// The lines that end the groups; `room` is what the server says of the full disk
    /// (available, size), if it was asked.
    fn take_lines(&mut self, room: Option<(u64, u64)>) -> Vec<String> {
        let mut lines = Vec::new();
        let first = self.full_at.take();
        for (group, n) in std::mem::take(&mut self.unsaid) {
            match group {
                Shared::DiskFull => {
                    // OpenSSH's server says FAILURE for ENOSPC, and also for a quota or an
                    // I/O error: the room it reports tells (asked after what was half
                    // written was removed, so "now").
                    let first = first
                        .as_ref()
                        .map(|p| format!(", the first {p}"))
                        .unwrap_or_default();
                    lines.push(match room {
                        // Room to spare now (gesftpserver says FAILURE when too much is asked
                        // of it at once): the disk is one cause among others.
                        Some((available, size)) if !nearly_full(available, size) => format!(
                            "{n} upload(s) failed writing (WRITE failed: FAILURE){first}; the \
                             server says {} free of {} now: a disk that filled while they were \
                             written, a quota, an I/O error or a limit of the server's (its log \
                             says which); what was half written is removed. Make room or fix \
                             that, and run again (a server that takes little at once may need \
                             a lower 'maxopenfiles')",
                            human_bytes(available),
                            human_bytes(size)
                        ),
                        Some((available, size)) => format!(
                            "the remote disk is full: {n} upload(s) failed writing (WRITE \
                             failed: FAILURE){first}; the server says {} free of {} now; what \
                             was half written is removed. Make room there (or raise the quota) \
                             and run again",
                            human_bytes(available),
                            human_bytes(size)
                        ),
                        None => format!(
                            "the remote disk is probably full: {n} upload(s) failed writing \
                             (WRITE failed: FAILURE){first}; what was half written is removed. \
                             Make room there (or raise the quota) and run again"
                        ),
                    });
                }
                Shared::Dir(dir) if n > 0 => lines.push(format!(
                    "{dir}: {n} more operation(s) below it failed the same way"
                )),
                Shared::Dir(_) | Shared::Target => {}
            }
        }
        lines
    }
}

/// Whether `available` of `size` bytes is as good as no room: under 64 MiB or 1 %.
fn nearly_full(available: u64, size: u64) -> bool {
    available < 64 << 20 || available < size / 100
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
            tally: Tally::default(),
            grouped: Grouped::default(),
            broken: false,
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

    /// What the server confirmed so far, by kind.
    pub(crate) fn tally(&self) -> Tally {
        self.tally
    }

    /// Counts what another runner on the same engine confirmed (a pass of its own).
    pub(crate) fn add_tally(&mut self, other: &Tally) {
        self.tally.add(other);
    }

    /// A new progress line, for `files` uploads of `bytes`.
    pub(crate) fn restart_progress(&mut self, files: u64, bytes: u64) {
        let written = self.engine.bytes_written();
        self.progress = Rc::new(RefCell::new(Progress::new(files, bytes, written)));
    }

    /// Removes the progress line, and says what the failures of a group share: for a full
    /// disk, with the room the server says is left (`statvfs@openssh.com`, where offered).
    pub(crate) fn finish(&mut self) {
        self.progress.borrow_mut().finish();
        let room = match &self.grouped.full_at {
            // Not on a connection a failed run left broken, with its requests in flight.
            Some(path) if self.engine.offers_statvfs() && !self.broken => {
                let dir = path.parent().unwrap_or_else(|| path.clone());
                match self.engine.run(&[Op::Statvfs { path: dir }], |_, _| {}) {
                    Ok(results) => match results.first() {
                        Some(Ok(Outcome::Space { available, size })) => Some((*available, *size)),
                        _ => None,
                    },
                    Err(_) => None,
                }
            }
            _ => None,
        };
        self.tell_grouped(room);
    }

    fn tell_grouped(&mut self, room: Option<(u64, u64)>) {
        for line in self.grouped.take_lines(room) {
            self.progress.borrow_mut().tell(&line);
        }
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
        let begun = self.begin(ops);
        let (engine, mut heard) = self.split();
        let ran = engine.run_batch(ops, |i, result| {
            heard.absorb(&ops[i], begun.sizes[i], judge(i, result), result)
        });
        self.end(&begun, ran.map(drop))
    }

    /// Before a run of `ops`: the sizes the progress line goes by (the summary counts what
    /// the engine sent: a file replaced meanwhile is sent as it is when opened), and the
    /// line set to move with the bytes written while a long upload goes on.
    fn begin(&mut self, ops: &[Op]) -> Begun {
        let sizes = self.engine.source_sizes(ops);
        let sent_before = self.engine.stats().bytes_uploaded;
        let watcher = Rc::clone(&self.progress);
        self.engine.watch_bytes(Some(Box::new(move |written| {
            watcher.borrow_mut().sent(written)
        })));
        Begun { sizes, sent_before }
    }

    /// The engine, and what hears its results.
    fn split(&mut self) -> (&mut Engine, Hearing<'_>) {
        let hearing = Hearing {
            progress: &self.progress,
            failures: &mut self.failures,
            tally: &mut self.tally,
            grouped: &mut self.grouped,
        };
        (self.engine, hearing)
    }

    /// After a run: the bytes sent counted, the watcher gone.
    fn end(&mut self, begun: &Begun, ran: Result<(), EngineError>) -> anyhow::Result<()> {
        self.broken |= ran.is_err();
        self.engine.watch_bytes(None);
        self.tally.bytes += self.engine.stats().bytes_uploaded - begun.sent_before;
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
            self.tally.dirs_removed += results.iter().filter(|r| r.is_ok()).count();
            self.stop_if_interrupted(|signal| {
                format!("interrupted by {signal} while removing emptied directories")
            })?;
            Ok(results.iter().map(Result::is_ok).collect())
        })
    }
}

/// What a run of the runner notes before it starts.
struct Begun {
    sizes: Vec<Option<u64>>,
    sent_before: u64,
}

/// The parts of a runner that hear each result of a run, beside its engine.
struct Hearing<'r> {
    progress: &'r Rc<RefCell<Progress>>,
    failures: &'r mut usize,
    tally: &'r mut Tally,
    grouped: &'r mut Grouped,
}

impl Hearing<'_> {
    /// One result of `op` (of `size`, if an upload), as the caller judged it: counted,
    /// and said where it is to be.
    fn absorb(&mut self, op: &Op, size: Option<u64>, judged: Judged, result: &OpResult) {
        match judged {
            Judged::Done(line) => {
                count(self.tally, op);
                let mut progress = self.progress.borrow_mut();
                if let (Op::Upload { .. }, Some(size)) = (op, size) {
                    progress.file_done(size);
                }
                if let Some(line) = line {
                    progress.say(&line);
                }
            }
            Judged::Failed(message) => {
                *self.failures += 1;
                let said = match result {
                    Err(e) => self.grouped.on_failure(e, message),
                    Ok(_) => Some(message),
                };
                if let Some(line) = said {
                    self.progress.borrow_mut().tell(&line);
                }
            }
            // Confirmed, though not counted as done (a step of something larger).
            Judged::Other if result.is_ok() => count(self.tally, op),
            Judged::Other => {}
        }
    }
}

/// A judge of the results of one runner's operations.
pub(crate) type JudgeFn<'j> = &'j mut dyn FnMut(usize, &OpResult) -> Judged;

/// Runs, for each runner `m`, `ops[m]` as [`Runner::run`] would, all of them in one loop
/// of the engines ([`Engine::run_together`]): several mirrors at once. One whose
/// connection is lost ends with its `Err`; the others go on.
pub(crate) fn run_together(
    runners: &mut [&mut Runner<'_>],
    ops: &[Vec<Op>],
    judges: &mut [JudgeFn<'_>],
) -> Vec<anyhow::Result<()>> {
    let begun: Vec<Begun> = runners
        .iter_mut()
        .zip(ops)
        .map(|(r, ops)| r.begin(ops))
        .collect();
    let slices: Vec<&[Op]> = ops.iter().map(Vec::as_slice).collect();
    let results = {
        let (mut engines, mut hearings): (Vec<&mut Engine>, Vec<Hearing<'_>>) =
            runners.iter_mut().map(|r| r.split()).unzip();
        Engine::run_together(&mut engines, &slices, |m, i, result| {
            let judged = judges[m](i, result);
            hearings[m].absorb(&ops[m][i], begun[m].sizes[i], judged, result)
        })
    };
    runners
        .iter_mut()
        .zip(&begun)
        .zip(results)
        .map(|((r, begun), ran)| r.end(begun, ran.map(drop)))
        .collect()
}

/// Counts `op`, which the server confirmed, in `tally` (the bytes are counted apart).
fn count(tally: &mut Tally, op: &Op) {
    match op {
        Op::Upload { .. } => tally.files += 1,
        Op::Rename { .. } => tally.renamed += 1,
        Op::Symlink { .. } => tally.symlinks += 1,
        Op::Remove { .. } => tally.removed += 1,
        Op::Mkdir { .. } => tally.dirs_made += 1,
        Op::Rmdir { .. } => tally.dirs_removed += 1,
        _ => {}
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

    fn rp(s: &str) -> RemotePath {
        RemotePath::new(s).unwrap()
    }

    fn status(request: Req, code: Status) -> Cause {
        Cause::Status {
            request,
            code,
            message: String::new(),
        }
    }

    fn failed(op: OpKind, path: &str, cause: Cause) -> OpError {
        OpError {
            op,
            path: rp(path),
            cause,
        }
    }

    #[test]
    fn failures_below_a_refusing_directory_name_it_once_and_are_counted() {
        let mut g = Grouped::default();
        let denied = status(Req::Mkdir, Status::PermissionDenied);
        let in_pool = |dir: &str| Cause::Directory {
            dir: rp(dir),
            cause: Box::new(denied.clone()),
        };
        let first = failed(OpKind::Mkdir, "pool/main", in_pool("pool/main"));
        let said = g.on_failure(&first, first.to_string()).unwrap();
        assert!(
            said.starts_with("pool: the server refuses changes"),
            "{said}"
        );
        for p in ["pool/main/a/a.deb", "pool/main/b/b.deb"] {
            let e = failed(OpKind::Upload, p, in_pool("pool/main"));
            assert_eq!(g.on_failure(&e, e.to_string()), None);
        }
        // Another cause elsewhere is said as it is.
        let other = failed(OpKind::Remove, "x", status(Req::Remove, Status::Failure));
        assert_eq!(g.on_failure(&other, "alone".into()), Some("alone".into()));
        assert_eq!(
            g.take_lines(None),
            ["pool: 2 more operation(s) below it failed the same way"]
        );
    }

    #[test]
    fn a_full_disk_is_one_line_at_the_end_with_the_room_left() {
        let mut g = Grouped::default();
        for p in ["pool/a.deb", "pool/b.deb", "dists/x/Release.new"] {
            let e = failed(OpKind::Upload, p, status(Req::Write, Status::Failure));
            assert_eq!(g.on_failure(&e, e.to_string()), None);
        }
        let lines = g.take_lines(Some((0, 1_000_000)));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("the remote disk is full: 3 upload(s) failed writing")
                && lines[0].contains("the first pool/a.deb")
                && lines[0].contains("free of 1.0 MB now"),
            "{lines:?}"
        );
        assert!(g.take_lines(None).is_empty(), "said once");
        // With room to spare, it is not the disk that is said.
        for p in ["pool/a.deb", "pool/b.deb"] {
            let e = failed(OpKind::Upload, p, status(Req::Write, Status::Failure));
            assert_eq!(g.on_failure(&e, e.to_string()), None);
        }
        let lines = g.take_lines(Some((25 << 30, 26 << 30)));
        assert!(
            lines[0].starts_with("2 upload(s) failed writing")
                && lines[0].contains("a quota")
                && !lines[0].contains("disk is full"),
            "{lines:?}"
        );
    }

    #[test]
    fn emptied_directories_go_deepest_first_and_a_parent_only_after_a_child() {
        let dirs = [r("pool/main/a/b"), r("pool/main/c"), r("pool/other/d")];
        let mut levels = Vec::new();
        remove_emptied(dirs.into_iter().collect(), |level| {
            levels.push(level.iter().map(|p| p.to_string()).collect::<Vec<_>>());
            // pool/main/c is not empty: neither it nor (for it) its parent goes.
            Ok(level.iter().map(|p| p.text() != "pool/main/c").collect())
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
