//! The hook's run: lock, select and parse the logs, plan, then drive the plan's rounds
//! through the engine (`rounds`), journalling each item the moment the server confirms
//! it. It must not talk to the server but through the runner and the engine.

mod copies;
mod rollback;
mod rounds;
mod sources;
mod staged;
mod together;
mod trace;

use staged::Push;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{Settings, Symlinks};
use crate::exit::{ExitStatus, Fatal};
use crate::interrupt::{Interrupt, StoppedWaiting};
use crate::plan::{self, Action, Plan};
use crate::relpath::RelPath;
use crate::repo::journal::{Journal, finish_together};
use crate::repo::lock::{self, BusyError, RunLock};
use crate::repo::logs::{self, Selection};
use crate::repo::outlog::{self, DoneMessage};
use crate::repo::owner;
use crate::run::deletions::Deletions;
use crate::run::output::{Tally, echo_done, human_time, show, summary, tell};
use crate::run::session::server_name;
use crate::run::timeline::Timeline;

use rounds::JournalStopped;
use sources::{check_local_sources, resolve_relative_sources};

/// A wait for a lock that ended in `error`: busy (75) when the lock was held for too
/// long, failed (1) when a signal ended the wait, else `otherwise`.
fn waited(error: anyhow::Error, otherwise: ExitStatus) -> Fatal {
    let status = if error.is::<BusyError>() {
        ExitStatus::Busy
    } else if error.is::<StoppedWaiting>() {
        ExitStatus::Failed
    } else {
        otherwise
    };
    Fatal { status, error }
}

/// [`waited`], and a wait that a signal ended is a run interrupted: it ends with its
/// summary too, before its error. (A lock held too long is one line that says it all.)
fn wait_ended(error: anyhow::Error, otherwise: ExitStatus, started: Instant) -> Fatal {
    let fatal = waited(error, otherwise);
    if fatal.error.is::<StoppedWaiting>() {
        tell(&summary("", &Tally::default(), 1, started));
    }
    fatal
}

/// What a run achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Operations that failed (each was reported on stderr as it happened).
    pub failures: usize,
    /// Operations that completed.
    pub completed: usize,
    pub files_uploaded: u64,
    pub bytes_uploaded: u64,
    pub operations: usize,
    /// Logs that still have work (empty when everything is on the remote).
    pub pending_logs: Vec<PathBuf>,
}

/// Processes outlogs: the hook's whole job, for every mirror of `mirrors` (the selected
/// ones, the first mirror's settings telling the local side); `unselected` are the mirrors
/// configured but not picked (`--only`), whose journals keep a log from being renamed
/// `.done` before they have it. Once `interrupt` fires, the run finishes what is in
/// flight, starts nothing new and returns an error.
pub fn run(
    mirrors: &[Settings],
    unselected: &[Settings],
    files: &[PathBuf],
    how: Selection,
    dry_run: bool,
    interrupt: &Interrupt,
) -> Result<Report, Fatal> {
    let settings = &mirrors[0];
    let mut timeline = Timeline::new(settings.timeline, Instant::now());
    let several = mirrors.len() + unselected.len() > 1;
    settings.check_dirs(true).map_err(Fatal::setup)?;
    let (_lock, paths) = lock_and_select(settings, files, how, interrupt)?;
    let conf = settings.confdir.join("outsftphook.conf");
    owner::check(&settings.logdir, &conf, !dry_run).map_err(Fatal::setup)?;
    let Read { outlogs, torn } = read_logs(settings, &paths)?;
    let paths: Vec<PathBuf> = outlogs.iter().map(|l| l.path.clone()).collect();
    let mut pushes = Vec::new();
    for mirror in mirrors {
        pushes.push(push_of(mirror, &outlogs, &paths, several, dry_run)?);
    }
    let mut idle: Vec<Journal> = unselected
        .iter()
        .map(|m| {
            let plan = plan::plan_for(&outlogs, m.journal_tag());
            let journal = Journal::new(paths.clone(), &plan.remaining, None);
            journal.for_mirror(m.journal_tag(), true).untouched()
        })
        .collect();
    drop(outlogs);
    if dry_run {
        for push in &pushes {
            if several {
                show(&format!("mirror {}:", push.settings.mirror.name));
            }
            print_dry_run(&push.plan, push.settings, &push.deletions);
        }
        return Ok(Report::default());
    }
    for (log, offset) in torn {
        pushes[0].journal.cut_torn_tail(log, offset)?;
    }
    for push in &mut pushes {
        for (log, path) in &push.plan.obsoleted {
            push.journal.record(*log, DoneMessage::Obsoleted, path)?;
        }
    }
    if pushes.iter().all(Push::is_idle) {
        for push in &mut pushes {
            push.journal.finish_empty()?;
        }
        finish_logs(&mut pushes, &mut idle, several)?;
        log::info!("nothing to do");
        remove_old_done(settings);
        return Ok(Report::default());
    }
    timeline.end("prepare", []);
    let mut report = staged::push_all(&mut pushes, several, interrupt, &mut timeline)?;
    finish_logs(&mut pushes, &mut idle, several)?;
    timeline.end("journal", []);
    let mut pending: Vec<PathBuf> = pushes
        .iter()
        .flat_map(|p| p.journal.pending().map(Path::to_path_buf))
        .collect();
    pending.sort();
    pending.dedup();
    report.pending_logs = pending;
    remove_old_done(settings);
    if report.unfinished() {
        tell_unfinished(&report, settings);
    }
    Ok(report)
}

/// One mirror's part of a run: its plan from its own journal lines, its journal, its held
/// deletions (`dry_run`: only read).
fn push_of<'s>(
    mirror: &'s Settings,
    outlogs: &[outlog::Outlog],
    paths: &[PathBuf],
    several: bool,
    dry_run: bool,
) -> Result<Push<'s>, Fatal> {
    let deletions = if dry_run {
        Deletions::read(mirror)
    } else {
        Deletions::load(mirror)
    };
    let echo = (mirror.verbose > 0).then_some(echo_done as fn(DoneMessage, &RelPath));
    let tag = mirror.journal_tag();
    let plan = plan::plan_for(outlogs, tag);
    let journal = Journal::new(paths.to_vec(), &plan.remaining, echo).for_mirror(tag, several);
    Ok(Push {
        settings: mirror,
        plan,
        journal,
        deletions: deletions.map_err(Fatal::setup)?,
        totals: None,
    })
}

/// With several mirrors, renames the logs every mirror has all of (each mirror's journal
/// renames none itself).
fn finish_logs(pushes: &mut [Push<'_>], idle: &mut [Journal], several: bool) -> Result<(), Fatal> {
    if !several {
        return Ok(());
    }
    let mut journals: Vec<&mut Journal> = pushes
        .iter_mut()
        .map(|p| &mut p.journal)
        .chain(idle.iter_mut())
        .collect();
    finish_together(&mut journals).map_err(Fatal::setup)
}

/// `keepdone`: removes the old `.done` logs, under the run lock; a file it cannot remove
/// is a warning, not a failed push.
fn remove_old_done(settings: &Settings) {
    let Some(keep) = settings.keep_done else {
        return;
    };
    let removed = logs::remove_old_done(&settings.logdir, keep, std::time::SystemTime::now());
    if removed.count > 0 {
        log::info!(
            "removed {} .done log(s) older than {} day(s) (keepdone)",
            removed.count,
            keep.as_secs() / 86400
        );
    }
    for problem in removed.problems {
        tell(&format!("keepdone: {problem}"));
    }
}

impl Report {
    /// Whether something is left to do: an operation failed, or a log is still pending.
    pub fn unfinished(&self) -> bool {
        self.failures > 0 || !self.pending_logs.is_empty()
    }
}

/// Says what failed, what is still pending and how to finish it.
fn tell_unfinished(report: &Report, settings: &Settings) {
    let logs: Vec<String> = report
        .pending_logs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    tell(&format!(
        "{} operation(s) failed; still pending: {}. Fix the cause, then run '{}'{}.",
        report.failures,
        logs.join(", "),
        settings.pending_command(),
        if settings.autoretry {
            " (or let the next reprepro run retry)"
        } else {
            ""
        }
    ));
}

/// What a run would do, in its order; nothing is sent and nothing journalled.
fn print_dry_run(plan: &Plan, settings: &Settings, deletions: &Deletions) {
    for job in plan.jobs() {
        match &job.action {
            Action::Delete if deletions.holding() => show(&format!(
                "hold back the deletion of {}: removed by the first run after {}",
                job.path,
                human_time(deletions.due_if_held_now())
            )),
            Action::Symlink { target } if settings.symlinks == Symlinks::Copy => show(&format!(
                "copy {} (what the symlink to {target} leads to)",
                job.path
            )),
            _ => show(&job.describe()),
        }
    }
    let due = deletions.due();
    for path in &due {
        show(&format!("remove {path} (its held deletion is due)"));
    }
    let pool_deletes = !plan.pool_deletes.is_empty() && !deletions.holding();
    if !settings.keepdirectories && (pool_deletes || !plan.prune.is_empty() || !due.is_empty()) {
        show("rmdir the pool directories left empty");
    }
}

/// The error a push that `e` ended ends the run with, saying what to do next: a rerun
/// finishes it, unless the journal could not be written (its own advice says so).
pub(super) fn cut_off(e: anyhow::Error, settings: &Settings) -> Fatal {
    let server = server_name(settings);
    let context = if e.is::<JournalStopped>() {
        format!("the push to {server} stopped")
    } else {
        format!(
            "the push to {server} was cut off; what completed is journalled, run again to finish"
        )
    };
    e.context(context).into()
}

/// The logs of a run, parsed, and what their journals need.
struct Read {
    /// The logs to plan (the empty ones are left out).
    outlogs: Vec<outlog::Outlog>,
    /// (log, offset): logs whose torn last journal line is to be cut off at offset.
    torn: Vec<(usize, u64)>,
}

/// Parses the logs and checks their local sources. Each mirror's plan is made from them;
/// they are dropped then: only the plans are kept in memory.
fn read_logs(settings: &Settings, paths: &[PathBuf]) -> Result<Read, Fatal> {
    let mut outlogs = Vec::with_capacity(paths.len());
    for path in paths {
        log::info!("reading {}", path.display());
        let log = outlog::parse_file(path).map_err(Fatal::setup)?;
        if log.lines.is_empty() {
            skip_empty(path);
        } else {
            outlogs.push(log);
        }
    }
    let torn = outlogs
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.torn_tail.map(|t| (i, t.offset)))
        .collect();
    resolve_relative_sources(&mut outlogs, settings.basedir.as_deref());
    check_local_sources(&outlogs, settings).map_err(Fatal::setup)?;
    Ok(Read { outlogs, torn })
}

/// Takes the run lock and lists the logs to process, none of which reprepro may still be
/// writing. reprepro holds its lock file from before it creates its log until after the
/// hook it called returns; a run reprepro did not hand a log to (no hook environment, or
/// `--pending`) therefore waits while that file exists, and checks it again after listing:
/// absent then, every listed log was closed. The run lock is not held while waiting, so
/// that reprepro's own hook call can take it meanwhile and push the change.
fn lock_and_select(
    settings: &Settings,
    files: &[PathBuf],
    how: Selection,
    interrupt: &Interrupt,
) -> Result<(RunLock, Vec<PathBuf>), Fatal> {
    let started = Instant::now();
    let deadline = started + settings.lock_timeout;
    let handed_by_reprepro = settings.reprepro_env && !how.pending;
    let reprepro_lock = match &settings.dbdir {
        _ if handed_by_reprepro => None,
        Some(dbdir) => Some(lock::reprepro_lock_path(dbdir)),
        None => {
            log::warn!(
                "cannot tell reprepro's database dir (give --basedir, or dbdir in \
                 conf/options): not checking that reprepro has finished writing its logs"
            );
            None
        }
    };
    loop {
        if let Some(lockfile) = &reprepro_lock {
            lock::wait_for_reprepro(lockfile, deadline, settings.lock_timeout, interrupt)
                .map_err(|e| wait_ended(e, ExitStatus::Failed, started))?;
        }
        let lock =
            lock::acquire_until(&settings.logdir, deadline, settings.lock_timeout, interrupt)
                .map_err(|e| wait_ended(e, ExitStatus::Setup, started))?;
        let paths = logs::select(files, &settings.logdir, how).map_err(|e| match e
            .downcast_ref::<logs::OlderPending>()
        {
            Some(older) => anyhow::anyhow!(
                "{older}; process them first ('{}'), or set 'autoretry yes' in {}",
                settings.pending_command(),
                settings.confdir.join("outsftphook.conf").display()
            ),
            None => e,
        });
        let paths = paths.map_err(Fatal::setup)?;
        match &reprepro_lock {
            Some(lockfile) if lock::reprepro_running(lockfile).map_err(Fatal::setup)? => {
                // reprepro started after we looked: a listed log may be its new one.
                drop(lock);
            }
            _ => return Ok((lock, paths)),
        }
    }
}

/// An empty log was never written by reprepro: it is still being written (when its lock
/// cannot be checked), or its reprepro was killed; reprepro deletes the logs it leaves
/// empty. Marking it done could lose what reprepro writes into it later.
fn skip_empty(path: &Path) {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    if age > STALE_EMPTY_LOG {
        log::warn!(
            "{} is empty and {} minutes old: left by a reprepro that was killed before it \
             wrote it? It is never marked done; remove it if no reprepro is running",
            path.display(),
            age.as_secs() / 60
        );
    } else {
        log::info!(
            "{} is empty (reprepro has not written it yet): skipped",
            path.display()
        );
    }
}

/// How old an empty log must be to look abandoned rather than about to be written.
const STALE_EMPTY_LOG: std::time::Duration = std::time::Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_wait_ends_busy_stopped_or_as_its_caller_says() {
        let busy = || anyhow::Error::new(BusyError("held for 600 s".into()));
        assert_eq!(waited(busy(), ExitStatus::Setup).status, ExitStatus::Busy);
        assert_eq!(waited(busy(), ExitStatus::Failed).status, ExitStatus::Busy);
        let stopped = StoppedWaiting {
            signal: 15,
            waiting: "waiting for the lock",
        };
        let stopped = waited(anyhow::Error::new(stopped), ExitStatus::Setup);
        assert_eq!(stopped.status, ExitStatus::Failed);
        let other = || anyhow::anyhow!("permission denied");
        assert_eq!(waited(other(), ExitStatus::Setup).status, ExitStatus::Setup);
        assert_eq!(
            waited(other(), ExitStatus::Failed).status,
            ExitStatus::Failed
        );
    }
}
