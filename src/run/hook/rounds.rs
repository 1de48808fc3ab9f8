//! The hook's rounds: the plan's jobs sent in the safe order (pool and `.new` uploads,
//! each distribution finalised step by step, pool deletions, emptied directories), each
//! job journalled the moment the server confirms it. A rename whose `.new` went missing is
//! healed; with `symlinks auto` a refused link becomes a copy ([`super::copies`]).
//! It must not plan (the order is [`crate::plan`]'s) nor print but through the runner.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Settings, Symlinks};
use crate::engine::Status;
use crate::engine::{Cause, Op, OpError, OpResult, Outcome, Req};
use crate::plan::order::Finalise;
use crate::plan::tree::remote_path;
use crate::plan::{self, Action, HeldBack, Job, Plan};
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;
use crate::repo::journal::Journal;
use crate::repo::outlog::DoneMessage;
use crate::repo::scan::local_mtime;
use crate::run::deletions::Deletions;
use crate::run::links::{refused_error, refuses_symlinks, warn_copying};
use crate::run::output::Tally;
use crate::run::runner::{Judged, Runner};

use super::Report;
use super::rollback::Guard;
use super::sources::link_source;
use super::together::send_together;

/// A journal line could not be written: the run stops, since what it does next could not
/// be recorded. Told apart because "run again" is not enough advice then.
#[derive(Debug)]
pub(super) struct JournalStopped;

impl fmt::Display for JournalStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "its journal could not be written, so nothing more was sent (what the journal \
             says is true; an item whose line is missing is done again); make room for the \
             log (is its disk full?), then run again",
        )
    }
}

/// What a [`Judge`] found: which jobs succeeded and what it held, or the journal error;
/// and the results of the operations sent ahead (a guard's links).
pub(super) type Verdict = (anyhow::Result<(Vec<bool>, Held)>, Vec<(usize, OpResult)>);

/// For each path, the older logs whose entries for it a job's completion obsoletes.
pub(super) type Supersedes = HashMap<RelPath, Vec<usize>>;

/// The most jobs given to the engine at once.
pub(super) const SLICE: usize = 1024;

/// A run of the plan: the runner and what journalling needs.
pub(super) struct Executor<'a> {
    pub(super) runner: Runner<'a>,
    pub(super) journal: &'a mut Journal,
    pub(super) targetdir: Option<RemotePath>,
    /// What completed (failures are the runner's).
    pub(super) report: Report,
    pub(super) supersedes: &'a HashMap<RelPath, Vec<usize>>,
    pub(super) outdir: &'a Path,
    pub(super) started: std::time::Instant,
    pub(super) settings: &'a Settings,
    /// The dist dir, resolved: what a copy of a link may lead to.
    pub(super) dist_root: PathBuf,
    /// Links are uploaded as copies of what they lead to: `symlinks copy`, or `auto` once
    /// the server refused one.
    pub(super) copying: bool,
    /// The deletions held back, and those this plan brings (`keepdeleted`; none taken
    /// out when it is 0).
    pub(super) deletions: &'a mut Deletions,
    pub(super) held_back: HeldBack,
}

/// A finalisation under way on one mirror ([`Executor::begin_finalise`]).
pub(super) struct Finalising<'p> {
    pub(super) guard: Option<Guard<'p>>,
    /// The first step not sent yet.
    step: usize,
    /// By dist dir: still going through (every job so far succeeded).
    pub(super) ready: Vec<bool>,
}

/// One batch of a finalisation: its jobs, each one's dist dir, and the last step in it.
pub(super) struct Step<'p> {
    pub(super) jobs: Vec<&'p Job>,
    owner: Vec<usize>,
    last: usize,
}

/// A batch's jobs by index: those sent, and the links known to be copied.
pub(super) struct Split {
    copies: Vec<usize>,
    pub(super) sent: Vec<usize>,
}

/// What [`Executor::send`] leaves to its caller, by index.
#[derive(Default)]
pub(super) struct Held {
    /// Renames that found no `.new`.
    missing: Vec<usize>,
    /// Symlinks the server refused (`symlinks auto`): to be copied instead.
    refused: Vec<usize>,
    /// Symlinks whose REMOVE failed, where a copy of a directory stands (`auto`).
    in_the_way: Vec<usize>,
    /// The first refusal, for the warning.
    refusal: Option<OpError>,
}

impl Held {
    /// Adds what a later slice, whose first job is `at`, held.
    fn extend(&mut self, other: Held, at: usize) {
        let shift = |v: Vec<usize>| v.into_iter().map(move |i| i + at);
        self.missing.extend(shift(other.missing));
        self.refused.extend(shift(other.refused));
        self.in_the_way.extend(shift(other.in_the_way));
        self.refusal = self.refusal.take().or(other.refusal);
    }
}

/// Journals `job` finished with `message`, and the older logs' entries it supersedes
/// obsoleted: now, and only now, are they moot.
pub(super) fn journal_complete(
    journal: &mut Journal,
    supersedes: &HashMap<RelPath, Vec<usize>>,
    job: &Job,
    message: DoneMessage,
) -> anyhow::Result<()> {
    journal.complete(job.log, message, &job.path)?;
    let mut older = supersedes.get(&job.path).into_iter().flatten();
    older.try_for_each(|&log| journal.record(log, DoneMessage::Obsoleted, &job.path))
}

/// How many files the plan uploads, and how many bytes.
pub(super) fn upload_totals(plan: &Plan, outdir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for job in plan.jobs() {
        if let Some(local) = upload_source(job, outdir) {
            files += 1;
            bytes += std::fs::metadata(local).map_or(0, |m| m.len());
        }
    }
    (files, bytes)
}

/// The local file a job uploads, if it uploads one.
fn upload_source(job: &Job, outdir: &Path) -> Option<PathBuf> {
    match &job.action {
        Action::Upload => Some(job.path.under(outdir)),
        Action::UploadDotNew { local } => Some(local.to_path_buf()),
        _ => None,
    }
}

/// Round 1's jobs: new pool files, together with round 2's uploads of dist files as .new:
/// nothing names a .new, so sending them early is safe and saves the round trips of a
/// separate round. None of them is a link, a rename or a copy: sent as they are.
fn upload_jobs(plan: &Plan) -> impl Iterator<Item = &Job> {
    plan.pool_uploads
        .iter()
        .chain(plan.dist_dirs.iter().flat_map(|d| &d.uploads))
}

/// How many jobs [`upload_jobs`] has.
pub(super) fn upload_count(plan: &Plan) -> usize {
    plan.pool_uploads.len()
        + plan
            .dist_dirs
            .iter()
            .map(|d| d.uploads.len())
            .sum::<usize>()
}

/// Slice `n` ([`SLICE`] jobs) of [`upload_jobs`]: taken a slice at a time, not all at
/// once (a list of 100 000 of them was a megabyte and more of a big push's peak).
pub(super) fn upload_slice(plan: &Plan, n: usize) -> Vec<&Job> {
    upload_jobs(plan).skip(n * SLICE).take(SLICE).collect()
}

/// Whether every dist dir's finalisation step `step` only renames.
fn renames_only(plan: &Plan, step: usize) -> bool {
    plan.dist_dirs.iter().all(|d| {
        d.steps[Finalise::ALL[step]]
            .iter()
            .all(|j| matches!(j.action, Action::RenameDotNew { .. }))
    })
}

/// How one [`Executor::send`] judges each result: a success is journalled at once; with
/// `heal`, what the caller can still repair is held back rather than failed.
pub(super) struct Judge<'j> {
    /// The operations sent ahead of the jobs ([`Guard::ahead`]): their results are kept.
    ahead: usize,
    linked: Vec<(usize, OpResult)>,
    jobs: &'j [&'j Job],
    heal: bool,
    auto: bool,
    settings: &'j Settings,
    journal: &'j mut Journal,
    supersedes: &'j Supersedes,
    /// Renames confirmed but not journalled here (see [`super::rollback`]).
    deferred: Option<&'j HashSet<RelPath>>,
    ok: Vec<bool>,
    held: Held,
    /// The first journal line that could not be written.
    journal_error: Option<anyhow::Error>,
}

impl<'j> Judge<'j> {
    /// The judge of `jobs`, sent behind `ahead` operations of a guard (whose renames
    /// `deferred` are not journalled here); with `heal`, what the caller can still repair
    /// is held back rather than failed.
    pub(super) fn new(
        ahead: usize,
        jobs: &'j [&'j Job],
        heal: bool,
        (settings, journal, supersedes): (&'j Settings, &'j mut Journal, &'j Supersedes),
        deferred: Option<&'j HashSet<RelPath>>,
    ) -> Judge<'j> {
        Judge {
            ahead,
            linked: Vec::new(),
            jobs,
            heal,
            auto: settings.symlinks == Symlinks::Auto,
            settings,
            journal,
            supersedes,
            deferred,
            ok: vec![false; jobs.len()],
            held: Held::default(),
            journal_error: None,
        }
    }

    /// Which jobs succeeded and what was held for the caller, what became of the links
    /// sent ahead, or the first journal line that could not be written.
    pub(super) fn verdict(self) -> Verdict {
        let verdict = match self.journal_error {
            Some(e) => Err(e.context(JournalStopped)),
            None => Ok((self.ok, self.held)),
        };
        (verdict, self.linked)
    }
}

impl Judge<'_> {
    pub(super) fn judge(&mut self, i: usize, result: &OpResult) -> Judged {
        let Some(i) = i.checked_sub(self.ahead) else {
            self.linked.push((i, result.clone()));
            return Judged::Other;
        };
        let job = self.jobs[i];
        let (heal, auto) = (self.heal, self.auto);
        match result {
            Ok(outcome) => {
                self.ok[i] = true;
                self.journal(job, outcome);
                Judged::Done(None)
            }
            Err(e)
                if heal
                    && matches!(job.action, Action::RenameDotNew { .. })
                    && e.status() == Some(Status::NoSuchFile) =>
            {
                self.held.missing.push(i);
                Judged::Other
            }
            Err(e) if e.cause == Cause::Interrupted => Judged::Other,
            Err(e) if heal && auto && refuses_symlinks(e) => {
                self.held.refused.push(i);
                self.held.refusal.get_or_insert_with(|| e.clone());
                Judged::Other
            }
            Err(e) if refuses_symlinks(e) => Judged::Failed(refused_error(e, self.settings)),
            // The REMOVE before the SYMLINK failed where the link leads to a directory:
            // a copy of it made earlier stands there (a directory cannot be removed
            // so): it is kept up to date instead.
            Err(OpError {
                cause:
                    Cause::Status {
                        request: Req::Remove,
                        ..
                    },
                ..
            }) if heal
                && auto
                && matches!(&job.action, Action::Symlink { target }
                    if link_source(&self.settings.distdir, &job.path, target).is_dir()) =>
            {
                self.held.in_the_way.push(i);
                Judged::Other
            }
            Err(e) => Judged::Failed(e.to_string()),
        }
    }

    /// Journals a job the server confirmed.
    fn journal(&mut self, job: &Job, outcome: &Outcome) {
        if matches!(job.action, Action::RenameDotNew { .. })
            && self.deferred.is_some_and(|d| d.contains(&job.path))
        {
            return;
        }
        let (message, completes) = match (&job.action, outcome) {
            (Action::UploadDotNew { .. }, _) => (DoneMessage::AsDotNew, false),
            (Action::Symlink { .. }, _) => (DoneMessage::SymlinkDone, true),
            (Action::Delete | Action::RemoveStale, Outcome::AlreadyAbsent) => {
                (DoneMessage::AlreadyDeleted, true)
            }
            (Action::Delete | Action::RemoveStale, Outcome::Done) => (DoneMessage::Deleted, true),
            _ => (DoneMessage::Done, true),
        };
        let journalled = if completes {
            journal_complete(self.journal, self.supersedes, job, message)
        } else {
            self.journal.record(job.log, message, &job.path)
        };
        if let Err(e) = journalled {
            self.journal_error.get_or_insert(e);
        }
    }
}

impl Executor<'_> {
    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// What follows the uploads: each distribution whose files are all up (`ready`)
    /// finalised, the copies of suite links, then (when nothing failed) the deletions.
    pub(super) fn switch(&mut self, plan: &Plan, ready: Vec<bool>) -> anyhow::Result<()> {
        let ready = self.finalise(plan, ready)?;
        self.after_finalise(plan, ready)
    }

    /// What follows the finalisation of the dist dirs that went through it (`ready`): the
    /// copies of suite links, then (when nothing failed) the deletions.
    pub(super) fn after_finalise(&mut self, plan: &Plan, ready: Vec<bool>) -> anyhow::Result<()> {
        let keepdirectories = self.settings.keepdirectories;
        let finalised: Vec<&plan::DistDir> = plan
            .dist_dirs
            .iter()
            .zip(&ready)
            .filter(|(_, ready)| **ready)
            .map(|(d, _)| d)
            .collect();
        self.refresh_copies(&finalised)?;
        if self.runner.failures() > 0 {
            return Ok(());
        }
        self.hold_back(&ready)?;
        self.delete_round(plan, keepdirectories)?;
        let verbose = self.settings.verbose > 0;
        self.deletions.carry_out(
            &mut self.runner,
            self.targetdir.as_ref(),
            keepdirectories,
            verbose,
        )
    }

    /// Holds back the pool's deletions and those of each finalised distribution (`ready`):
    /// recorded, durably, then journalled `held back`.
    fn hold_back(&mut self, ready: &[bool]) -> anyhow::Result<()> {
        let held = std::mem::take(&mut self.held_back);
        let jobs: Vec<&Job> = held
            .dists
            .iter()
            .zip(ready)
            .filter(|(_, ready)| **ready)
            .flat_map(|(jobs, _)| jobs)
            .chain(&held.pool)
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        self.deletions.hold(jobs.iter().map(|j| &j.path))?;
        for job in &jobs {
            journal_complete(self.journal, self.supersedes, job, DoneMessage::HeldBack)
                .context(JournalStopped)?;
            self.report.completed += 1;
        }
        self.runner.add_tally(&Tally {
            held: jobs.len(),
            ..Tally::default()
        });
        Ok(())
    }

    /// Round 1, new pool files, together with round 2's uploads of dist files as .new:
    /// nothing names a .new, so sending them early is safe and saves the round trips of a
    /// separate round. Returns, for each dist dir, whether all its files are up; `None`
    /// when a pool file is not: then nothing is renamed.
    pub(super) fn upload_round(&mut self, plan: &Plan) -> anyhow::Result<Option<Vec<bool>>> {
        let mut ok = Vec::with_capacity(upload_count(plan));
        for n in 0..upload_count(plan).div_ceil(SLICE) {
            ok.extend(self.run_jobs(&upload_slice(plan, n))?);
        }
        Ok(self.uploaded(plan, &ok))
    }

    /// What the uploads of [`upload_jobs`] achieved (`ok`, by job): for each dist dir,
    /// whether all its files are up; `None` when a pool file is not.
    pub(super) fn uploaded(&self, plan: &Plan, ok: &[bool]) -> Option<Vec<bool>> {
        log::info!(
            "{} new file(s) uploaded (distribution files as NAME.new), after {:.2} s",
            ok.len(),
            self.elapsed()
        );
        let pool = plan.pool_uploads.len();
        if !ok[..pool].iter().all(|b| *b) {
            return None;
        }
        let ok = &ok[pool..];
        let mut ready: Vec<bool> = Vec::new();
        let mut at = 0;
        for d in &plan.dist_dirs {
            ready.push(ok[at..at + d.uploads.len()].iter().all(|b| *b));
            at += d.uploads.len();
        }
        Some(ready)
    }

    /// Round 2: each dist dir whose files are all up (`ready`) is finalised, step by
    /// step; returns which dirs were finalised throughout. What the renames replace is
    /// kept first, and a dir whose renames fail half-way is put back ([`super::rollback`]).
    fn finalise(&mut self, plan: &Plan, ready: Vec<bool>) -> anyhow::Result<Vec<bool>> {
        let mut f = self.begin_finalise(plan, ready)?;
        while let Some(last) = self.next_last(plan, &f) {
            let step = self.next_step(plan, &f, last);
            let ok = self.run_jobs_deferring(&step.jobs, f.guard.as_mut())?;
            self.end_step(&mut f, step, &ok)?;
        }
        Ok(f.ready)
    }

    /// The finalisation of the `ready` dist dirs, begun: what the renames replace is kept.
    pub(super) fn begin_finalise<'p>(
        &mut self,
        plan: &'p Plan,
        ready: Vec<bool>,
    ) -> anyhow::Result<Finalising<'p>> {
        Ok(Finalising {
            guard: Some(self.keep_previous(plan, &ready)?),
            step: 0,
            ready,
        })
    }

    /// The last step the next batch of the finalisation `f` may hold, or `None` when it is
    /// over.
    pub(super) fn next_last(&mut self, plan: &Plan, f: &Finalising<'_>) -> Option<usize> {
        (f.step < Finalise::ALL.len()).then(|| self.last_step_together(plan, f.step))
    }

    /// The jobs of the next batch of the finalisation `f`, its steps up to `last` (see
    /// [`Executor::next_last`]: mirrors switching together take the fewest any may).
    pub(super) fn next_step<'p>(
        &mut self,
        plan: &'p Plan,
        f: &Finalising<'p>,
        last: usize,
    ) -> Step<'p> {
        let mut jobs = Vec::new();
        let mut owner = Vec::new();
        for (i, d) in plan.dist_dirs.iter().enumerate() {
            if f.ready[i] {
                for s in &Finalise::ALL[f.step..=last] {
                    jobs.extend(&d.steps[*s]);
                    owner.extend(std::iter::repeat_n(i, d.steps[*s].len()));
                }
            }
        }
        Step { jobs, owner, last }
    }

    /// Notes how the batch `step` of the finalisation `f` went (`ok`, by job): a dist dir
    /// with a job failed is not finalised; once InRelease is in, or what failed before it
    /// is known, what the guard kept is removed or put back.
    pub(super) fn end_step(
        &mut self,
        f: &mut Finalising<'_>,
        step: Step<'_>,
        ok: &[bool],
    ) -> anyhow::Result<()> {
        if let Some(g) = &mut f.guard {
            g.confirm(&step.jobs, ok);
        }
        if !step.jobs.is_empty() {
            let done: Vec<&str> = Finalise::ALL[f.step..=step.last]
                .iter()
                .map(|s| s.describe())
                .collect();
            log::info!(
                "{}: {} change(s), after {:.2} s",
                done.join(", then "),
                step.jobs.len(),
                self.elapsed()
            );
        }
        f.step = step.last + 1;
        for (j, good) in ok.iter().enumerate() {
            if !good {
                f.ready[step.owner[j]] = false;
            }
        }
        if f.step > Finalise::InRelease as usize
            && let Some(g) = f.guard.take()
        {
            self.conclude(g, &f.ready)?;
        }
        Ok(())
    }

    /// The last finalisation step to send in one batch with `step`.
    ///
    /// A server that answers in order (OpenSSH's) also carries them out in order: the
    /// renames of the indices and of Release/InRelease then go in one batch, Release still
    /// last, and the moment in which a reader can see new indices with the old Release
    /// lasts one round trip, not three. Only plain renames are sent so: a symlink may need
    /// a REMOVE or MKDIR first, which is answered before it goes. The price: an index
    /// rename that fails no longer holds back its Release. Either way a failed rename is
    /// put back where the server makes hard links ([`super::rollback`]); elsewhere the
    /// mirror has indices its Release does not match until a rerun (new indices under the
    /// old Release, or one old index under the new one); the pool is complete in both,
    /// which is what the waits before this guard. The deletions (the last step) always
    /// wait for the renames.
    fn last_step_together(&mut self, plan: &Plan, step: usize) -> usize {
        let engine = self.runner.engine();
        let in_order = engine.in_order() && engine.atomic_rename();
        let mut last = step;
        while in_order
            && last + 2 < Finalise::ALL.len()
            && renames_only(plan, last)
            && renames_only(plan, last + 1)
        {
            last += 1;
        }
        last
    }

    /// Round 3: pool deletions, then the directories they emptied.
    fn delete_round(&mut self, plan: &Plan, keepdirectories: bool) -> anyhow::Result<()> {
        let deletes: Vec<&Job> = plan.pool_deletes.iter().collect();
        let ok = self.run_jobs(&deletes)?;
        if !keepdirectories {
            let emptied = deletes
                .iter()
                .zip(&ok)
                .filter(|(_, good)| **good)
                .filter_map(|(job, _)| job.path.parent());
            let dirs = emptied.chain(plan.prune.iter().cloned()).collect();
            self.runner.prune(dirs, self.targetdir.as_ref())?;
        }
        Ok(())
    }

    /// Runs jobs together; journals each success at once and reports each failure. Returns
    /// which succeeded. Links known to be copied are copied, and so are those the server
    /// refused (`symlinks auto`); renames that found no `.new` are healed.
    fn run_jobs(&mut self, jobs: &[&Job]) -> anyhow::Result<Vec<bool>> {
        self.run_jobs_deferring(jobs, None)
    }

    /// [`Executor::run_jobs`] with `guard`: the links it keeps go ahead of the first of
    /// `jobs`, and the renames it defers are not journalled (their distribution's outcome
    /// decides, [`super::rollback`]).
    fn run_jobs_deferring(
        &mut self,
        jobs: &[&Job],
        mut guard: Option<&mut Guard<'_>>,
    ) -> anyhow::Result<Vec<bool>> {
        let split = self.split_copies(jobs);
        let sent_jobs: Vec<&Job> = split.sent.iter().map(|&i| jobs[i]).collect();
        let (sent_ok, held) = self.send(&sent_jobs, true, guard.as_deref_mut())?;
        self.after_send(jobs, split, sent_ok, held, guard)
    }

    /// Which of `jobs` are sent, and which are links already known to be copied: those
    /// are not sent as SYMLINKs.
    pub(super) fn split_copies(&self, jobs: &[&Job]) -> Split {
        let (copies, sent) = (0..jobs.len())
            .partition(|&i| self.copying && matches!(jobs[i].action, Action::Symlink { .. }));
        Split { copies, sent }
    }

    /// What follows the send of `split.sent` (which went as `sent_ok` says, holding
    /// `held`): the copies, those the server refused among them, and the renames healed.
    /// Returns which of `jobs` succeeded.
    pub(super) fn after_send(
        &mut self,
        jobs: &[&Job],
        split: Split,
        sent_ok: Vec<bool>,
        held: Held,
        guard: Option<&mut Guard<'_>>,
    ) -> anyhow::Result<Vec<bool>> {
        let Split { mut copies, sent } = split;
        let mut ok = vec![false; jobs.len()];
        for (k, good) in sent_ok.into_iter().enumerate() {
            ok[sent[k]] = good;
        }
        if let Some(e) = &held.refusal
            && !self.copying
        {
            // `symlinks auto`: said once; this link and every later one are copies.
            warn_copying(e);
            self.copying = true;
        }
        copies.extend(
            held.refused
                .iter()
                .chain(&held.in_the_way)
                .map(|&k| sent[k]),
        );
        if !copies.is_empty() {
            copies.sort_unstable();
            let links: Vec<&Job> = copies.iter().map(|&i| jobs[i]).collect();
            for (i, good) in copies.iter().zip(self.copy_links(&links)?) {
                ok[*i] = good;
            }
        }
        let missing: Vec<usize> = held.missing.iter().map(|&k| sent[k]).collect();
        for (i, good) in self.heal(jobs, &missing, guard)? {
            ok[i] = good;
        }
        Ok(ok)
    }

    /// A rename whose `.new` has gone missing (its upload was journalled, but the file is
    /// not there: the rename happened and its journal line was lost, or someone cleaned
    /// up) is healed by uploading the file again and renaming it. Returns how each of the
    /// renames retried went.
    fn heal(
        &mut self,
        jobs: &[&Job],
        missing: &[usize],
        guard: Option<&mut Guard<'_>>,
    ) -> anyhow::Result<Vec<(usize, bool)>> {
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let uploads: Vec<Job> = missing
            .iter()
            .map(|&i| {
                let Action::RenameDotNew { local } = &jobs[i].action else {
                    unreachable!("only renames are retried")
                };
                log::warn!(
                    "{}.new is missing on the remote: uploading it again",
                    jobs[i].path
                );
                Job {
                    action: Action::UploadDotNew {
                        local: local.clone(),
                    },
                    ..jobs[i].clone()
                }
            })
            .collect();
        let (uploaded, _) = self.send(&uploads.iter().collect::<Vec<_>>(), false, None)?;
        let renames: Vec<usize> = missing
            .iter()
            .zip(uploaded)
            .filter(|(_, up)| *up)
            .map(|(&i, _)| i)
            .collect();
        let again: Vec<&Job> = renames.iter().map(|&i| jobs[i]).collect();
        let (renamed, _) = self.send(&again, false, guard)?;
        Ok(renames.into_iter().zip(renamed).collect())
    }

    /// Sends `jobs` through the runner. With `heal`, renames that find no `.new` are not
    /// reported but returned (by index) for [`Executor::run_jobs`] to heal; so are, with
    /// `symlinks auto`, the links the server refuses, to be copied instead. Huge plans go
    /// in slices, so that memory stays bounded whatever the plan's size; a slice costs one
    /// round trip of tail, nothing at this size.
    pub(super) fn send(
        &mut self,
        jobs: &[&Job],
        heal: bool,
        mut guard: Option<&mut Guard<'_>>,
    ) -> anyhow::Result<(Vec<bool>, Held)> {
        let (mut ok, mut held) = (Vec::with_capacity(jobs.len()), Held::default());
        let mut slices: Vec<&[&Job]> = jobs.chunks(SLICE).collect();
        if slices.is_empty() && guard.as_ref().is_some_and(|g| !g.ahead.is_empty()) {
            slices.push(&[]);
        }
        for (n, slice) in slices.into_iter().enumerate() {
            let (o, h) = self.send_slice(slice, heal, guard.as_deref_mut())?;
            ok.extend(o);
            held.extend(h, n * SLICE);
        }
        Ok((ok, held))
    }

    /// One engine run of at most [`SLICE`] jobs.
    fn send_slice(
        &mut self,
        jobs: &[&Job],
        heal: bool,
        guard: Option<&mut Guard<'_>>,
    ) -> anyhow::Result<(Vec<bool>, Held)> {
        let mut me = [self];
        let mut sent = send_together(&mut me, &[jobs], heal, &mut [guard]);
        sent.pop().expect("one executor, one result")
    }

    /// Writes ftpsync's trace file `project/trace/NAME` on the mirror (`tracefile`), once
    /// its push is complete: uploaded as `.new`, then renamed into place. `started` is when
    /// the push began (seconds since the epoch).
    pub(super) fn trace(&mut self, name: &str, started: u64) -> anyhow::Result<()> {
        let local = self
            .settings
            .logdir
            .join(format!(".outsftphook.trace.{name}"));
        let text = super::trace::text(started, crate::repo::held::now(), &super::trace::host());
        std::fs::write(&local, text)
            .with_context(|| format!("cannot write {}", local.display()))?;
        let rel = RelPath::new(&super::trace::remote_name(name))
            .map_err(|e| anyhow::anyhow!("tracefile {name}: {e}"))?;
        let path = remote_path(self.targetdir.as_ref(), &rel);
        let upload = Op::Upload {
            mtime: local_mtime(&local),
            local: local.clone(),
            remote: path.with_suffix(b".new"),
            fsync: true,
        };
        let failed =
            |e: &OpError| Judged::Failed(format!("{e}: the trace file {rel} is not updated"));
        let mut uploaded = false;
        self.runner.run(&[upload], |_, r| match r {
            Ok(_) => {
                uploaded = true;
                Judged::Other
            }
            Err(e) => failed(e),
        })?;
        if uploaded {
            let rename = Op::Rename {
                from: path.with_suffix(b".new"),
                to: path,
            };
            self.runner.run(&[rename], |_, r| match r {
                Ok(_) => Judged::Other,
                Err(e) => failed(e),
            })?;
        }
        let _ = std::fs::remove_file(&local);
        Ok(())
    }

    pub(super) fn op(&self, job: &Job) -> Op {
        let path = remote_path(self.targetdir.as_ref(), &job.path);
        match &job.action {
            // The local time goes along, so that `verify` and `mirror` see equal files.
            Action::Upload => {
                let local = job.path.under(self.outdir);
                Op::Upload {
                    mtime: local_mtime(&local),
                    local,
                    remote: path,
                    fsync: false,
                }
            }
            Action::UploadDotNew { local } => Op::Upload {
                local: local.to_path_buf(),
                remote: path.with_suffix(b".new"),
                fsync: true,
                mtime: local_mtime(local),
            },
            Action::RenameDotNew { .. } => Op::Rename {
                from: path.with_suffix(b".new"),
                to: path,
            },
            Action::Symlink { target } => Op::Symlink {
                link: path,
                target: target.as_bytes().to_vec(),
            },
            Action::Delete | Action::RemoveStale => Op::Remove { path },
        }
    }
}
