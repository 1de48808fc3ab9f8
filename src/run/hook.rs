//! The hook's run: lock, select and parse the logs, plan, then drive the plan's rounds
//! through the engine, journalling each item the moment the server confirms it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::config::{Settings, Symlinks};
use crate::engine::{Cause, Engine, Op, OpError, OpResult, Outcome, Req, Status};
use crate::interrupt::{Interrupt, signal_name};
use crate::plan::{self, Action, Job, Plan};
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;
use crate::repo::journal::Journal;
use crate::repo::logs::{self, Selection};
use crate::repo::outlog::{self, DoneMessage, Line, Outlog};
use crate::run::progress::Progress;
use crate::run::tree::{Node, local_mtime, remote_path};

/// An error found before anything was sent: exit status 2.
#[derive(Debug)]
pub struct SetupError(pub anyhow::Error);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for SetupError {}

/// An error before anything was sent is a setup error (exit 2), unless a signal ended it.
fn setup<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| {
        if e.downcast_ref::<crate::interrupt::StoppedWaiting>()
            .is_some()
        {
            e
        } else {
            SetupError(e).into()
        }
    })
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

/// Processes outlogs: the hook's whole job. Once `interrupt` fires, the run finishes what
/// is in flight, starts nothing new and returns an error.
pub fn run(
    settings: &Settings,
    files: &[PathBuf],
    how: Selection,
    dry_run: bool,
    interrupt: &Interrupt,
) -> anyhow::Result<Report> {
    setup(settings.check_dirs(true).map_err(anyhow::Error::new))?;
    let (_lock, paths) = lock_and_select(settings, files, how, interrupt)?;
    let Planned { plan, paths, torn } = read_and_plan(settings, &paths)?;
    if dry_run {
        // What a run would do, in its order; nothing is sent and nothing journalled.
        for job in crate::run::status::ordered(&plan) {
            match &job.action {
                Action::Symlink { target } if settings.symlinks == Symlinks::Copy => {
                    println!("copy {} (what the symlink to {target} leads to)", job.path)
                }
                _ => println!("{}", crate::run::status::describe(job)),
            }
        }
        if !settings.keepdirectories && (!plan.pool_deletes.is_empty() || !plan.prune.is_empty()) {
            println!("rmdir the pool directories left empty");
        }
        return Ok(Report::default());
    }
    let mut journal = Journal::new(paths, &plan.remaining, settings.verbose > 0);
    for (log, offset) in torn {
        journal.cut_torn_tail(log, offset)?;
    }
    for (log, path) in &plan.obsoleted {
        journal.record(*log, DoneMessage::Obsoleted, path)?;
    }
    if plan.is_empty() {
        journal.finish_empty()?;
        log::info!("nothing to do");
        return Ok(Report::default());
    }
    let (upload_files, upload_bytes) = upload_totals(&plan, &settings.outdir);
    let connections = crate::engine::connections_for_bytes(upload_bytes, settings.connections);
    let config = settings.engine_config(connections, interrupt);
    let started = Instant::now();
    let mut engine = Engine::connect(&settings.server, config)
        .with_context(|| format!("cannot start an SFTP session with {}", describe(settings)))?;
    log::info!("connected after {:.2} s", started.elapsed().as_secs_f64());
    if !plan.dist_dirs.is_empty() {
        crate::run::mirror::warn_unless_atomic_renames(&engine, settings);
    }
    let mut exec = Executor {
        engine: &mut engine,
        journal: &mut journal,
        targetdir: settings.targetdir.clone(),
        report: Report::default(),
        interrupt: interrupt.clone(),
        supersedes: &plan.supersedes,
        outdir: &settings.outdir,
        progress: Progress::new(upload_files, upload_bytes),
        started,
        settings,
        dist_root: setup(dist_root(settings))?,
        copying: settings.symlinks == Symlinks::Copy,
    };
    let result = exec.rounds(&plan, settings.keepdirectories);
    exec.progress.finish();
    let mut report = exec.report;
    if result.is_ok() && report.failures == 0 {
        journal.finish_empty()?;
    }
    journal.sync().context("cannot flush the journal")?;
    report.pending_logs = journal.pending().map(Path::to_path_buf).collect();
    let stats = engine.stats();
    report.files_uploaded = stats.files_uploaded;
    report.bytes_uploaded = stats.bytes_uploaded;
    // What was done is said whichever way the run ended: a cut-off run too.
    let summary = format!(
        "outsftphook: {} file(s), {} uploaded, {} change(s), {} error(s), in {:.1} s",
        report.files_uploaded,
        crate::run::progress::human_bytes(report.bytes_uploaded),
        report.completed,
        report.failures,
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => crate::run::mirror::close_quietly(engine),
        Err(e) if e.downcast_ref::<JournalStopped>().is_some() => {
            eprintln!("{summary}");
            return Err(e.context(format!("the push to {} stopped", describe(settings))));
        }
        Err(e) => {
            eprintln!("{summary}");
            return Err(e.context(format!(
                "the push to {} was cut off; what completed is journalled, run again to finish",
                describe(settings)
            )));
        }
    }
    eprintln!("{summary}");
    Ok(report)
}

/// The plan of a run and what it needs besides to journal it.
struct Planned {
    plan: Plan,
    /// The logs planned (the empty ones are left out), indexed as in the plan.
    paths: Vec<PathBuf>,
    /// (log, offset): logs whose torn last journal line is to be cut off at offset.
    torn: Vec<(usize, u64)>,
}

/// Parses the logs, checks their local sources and plans. The parsed logs are dropped once
/// planned: only the plan is kept in memory.
fn read_and_plan(settings: &Settings, paths: &[PathBuf]) -> anyhow::Result<Planned> {
    let mut outlogs = Vec::with_capacity(paths.len());
    for path in paths {
        log::info!("reading {}", path.display());
        let log = setup(outlog::parse_file(path))?;
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
    setup(check_local_sources(&outlogs, settings))?;
    Ok(Planned {
        plan: plan::plan(&outlogs),
        paths: outlogs.into_iter().map(|l| l.path).collect(),
        torn,
    })
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
) -> anyhow::Result<(crate::repo::lock::RunLock, Vec<PathBuf>)> {
    let started = Instant::now();
    let deadline = started + settings.lock_timeout;
    let handed_by_reprepro = settings.reprepro_env && !how.pending;
    let reprepro_lock = match &settings.dbdir {
        _ if handed_by_reprepro => None,
        Some(dbdir) => Some(crate::repo::lock::reprepro_lock_path(dbdir)),
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
            crate::repo::lock::wait_for_reprepro(
                lockfile,
                deadline,
                settings.lock_timeout,
                interrupt,
            )?;
        }
        let lock = setup(crate::repo::lock::acquire_until(
            &settings.logdir,
            deadline,
            interrupt,
        ))?;
        let paths = setup(logs::select(files, &settings.logdir, how).map_err(|e| {
            match e.downcast_ref::<logs::OlderPending>() {
                Some(older) => anyhow::anyhow!(
                    "{older}; process them first ('{}'), or set 'autoretry yes' in {}",
                    settings.pending_command(),
                    settings.confdir.join("outsftphook.conf").display()
                ),
                None => e,
            }
        }))?;
        match &reprepro_lock {
            Some(lockfile) if setup(crate::repo::lock::reprepro_running(lockfile))? => {
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

fn describe(settings: &Settings) -> String {
    let argv: Vec<String> = settings
        .server
        .argv()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match &settings.server {
        crate::transport::ServerCommand::Ssh { host, .. } => host.to_string_lossy().into_owned(),
        crate::transport::ServerCommand::Direct(_) => format!("'{}'", argv.join(" ")),
    }
}

/// reprepro writes DISTFILE paths as it knows them, relative to its own working directory
/// when its dist dir is relative (`-b .` gives `./dists/...`). Run by hand from elsewhere,
/// such a path is found from the base dir instead.
fn resolve_relative_sources(outlogs: &mut [Outlog], basedir: Option<&Path>) {
    let Some(basedir) = basedir else { return };
    for log in outlogs {
        for (_, line) in &mut log.lines {
            if let Line::DistFile { local, .. } = line
                && local.is_relative()
                && !local.exists()
            {
                let from_base = basedir.join(&*local);
                if from_base.exists() {
                    *local = from_base;
                }
            }
        }
    }
}

/// Refuses, before anything is sent, a local source that an outlog may not make us publish:
/// a DISTFILE's file outside the dist dir, a pool file outside the pool (both after
/// resolving symlinks, so that `..` or a symlinked component cannot lead out; a dist dir or
/// `pool` that is itself a symlink is the administrator's layout and is followed), or one
/// that exists but is not a regular file (a directory, a device, a FIFO: an outlog must not
/// make us read /dev/zero).
fn check_local_sources(outlogs: &[Outlog], settings: &Settings) -> anyhow::Result<()> {
    let dist_root = dist_root(settings)?;
    let pool = settings.outdir.join("pool");
    let pool_root =
        resolve_path(&pool).with_context(|| format!("cannot resolve {}", pool.display()))?;
    for log in outlogs {
        for (number, line) in &log.lines {
            let at = || format!("{}:{number}", log.path.display());
            let (local, root, what) = match line {
                Line::PoolNew(key) => (settings.outdir.join(key.as_str()), &pool_root, "pool"),
                Line::DistFile { local, .. } => (local.clone(), &dist_root, "dist dir"),
                // With `symlinks copy` a link's copy is a local source too.
                Line::DistSymlink { dir, name, target } if settings.symlinks == Symlinks::Copy => {
                    let path = dir.join(name);
                    let source = link_source(&settings.distdir, &path, target);
                    match crate::run::tree::follow(&source, &path, &dist_root) {
                        Err(e) if !e.dangling => {
                            anyhow::bail!("{}: {e}; nothing was sent", at())
                        }
                        _ => continue,
                    }
                }
                _ => continue,
            };
            let resolved = resolve_path(&local).with_context(|| {
                format!(
                    "{}: cannot resolve the local file {}",
                    at(),
                    local.display()
                )
            })?;
            if !resolved.starts_with(root) {
                anyhow::bail!(
                    "{}: {} lies outside the {what} {}{}: refused (reprepro writes only \
                     there; is the log forged, or a directory a symlink to elsewhere?); \
                     nothing was sent",
                    at(),
                    local.display(),
                    root.display(),
                    if resolved == local {
                        String::new()
                    } else {
                        format!(" (it resolves to {})", resolved.display())
                    }
                );
            }
            if let Ok(meta) = std::fs::metadata(&resolved)
                && !meta.is_file()
            {
                anyhow::bail!("{}: {} is not a regular file", at(), local.display());
            }
        }
    }
    Ok(())
}

/// The dist dir with every symlink resolved: where the local sources of dist files (and the
/// copies of dist links) must lie.
fn dist_root(settings: &Settings) -> anyhow::Result<PathBuf> {
    resolve_path(&settings.distdir)
        .with_context(|| format!("cannot resolve the dist dir {}", settings.distdir.display()))
}

/// Where the local link of the dist path `path` (`dists/CODENAME/...`) leads, unresolved:
/// its directory in the dist dir, joined with `target`.
fn link_source(distdir: &Path, path: &RelPath, target: &str) -> PathBuf {
    let below = path
        .as_str()
        .strip_prefix("dists/")
        .unwrap_or(path.as_str());
    let link = distdir.join(below);
    link.parent().unwrap_or(distdir).join(target)
}

/// `path` made absolute with every symlink resolved, for the part that exists; a missing
/// rest is appended as it is (an upload of it fails later, and says so), but may not
/// climb out with `..`, which could not be resolved.
fn resolve_path(path: &Path) -> anyhow::Result<PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut resolved) => {
                for part in rest.iter().rev() {
                    match part {
                        Component::Normal(name) => resolved.push(name),
                        Component::CurDir => {}
                        _ => anyhow::bail!(
                            "{}: '..' below a directory that does not exist",
                            path.display()
                        ),
                    }
                }
                return Ok(resolved);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(parent) = existing.parent() else {
                    return Err(e.into());
                };
                rest.extend(existing.components().next_back());
                existing = parent;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A journal line could not be written: the run stops, since what it does next could not
/// be recorded. Told apart because "run again" is not enough advice then.
#[derive(Debug)]
struct JournalStopped;

impl fmt::Display for JournalStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "its journal could not be written, so nothing more was sent (what the journal \
             says is true; an item whose line is missing is done again); make room for the \
             log (is its disk full?), then run again",
        )
    }
}

/// The most jobs given to the engine at once.
const SLICE: usize = 4096;

struct Executor<'a> {
    engine: &'a mut Engine,
    journal: &'a mut Journal,
    targetdir: Option<RemotePath>,
    report: Report,
    interrupt: Interrupt,
    supersedes: &'a HashMap<RelPath, Vec<usize>>,
    outdir: &'a Path,
    progress: Progress,
    started: Instant,
    settings: &'a Settings,
    /// The dist dir, resolved: what a copy of a link may lead to.
    dist_root: PathBuf,
    /// Links are uploaded as copies of what they lead to: `symlinks copy`, or `auto` once
    /// the server refused one.
    copying: bool,
}

/// What [`Executor::batch_once`] leaves to its caller, by index.
#[derive(Default)]
struct Held {
    /// Renames that found no `.new`.
    missing: Vec<usize>,
    /// Symlinks the server refused (`symlinks auto`): to be copied instead.
    refused: Vec<usize>,
    /// Symlinks whose REMOVE failed, where a copy of a directory stands (`auto`).
    in_the_way: Vec<usize>,
    /// The first refusal, for the warning.
    refusal: Option<crate::engine::OpError>,
}

/// Journals `job` finished with `message`, and the older logs' entries it supersedes
/// obsoleted: now, and only now, are they moot.
fn journal_complete(
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
fn upload_totals(plan: &Plan, outdir: &Path) -> (u64, u64) {
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
        Action::Upload => Some(outdir.join(job.path.as_str())),
        Action::UploadDotNew { local } => Some(local.clone()),
        _ => None,
    }
}

impl Executor<'_> {
    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn rounds(&mut self, plan: &Plan, keepdirectories: bool) -> anyhow::Result<()> {
        // Round 1, new pool files, together with round 2's uploads of dist files as .new:
        // nothing names a .new, so sending them early is safe and saves the round trips of
        // a separate round. Nothing is renamed unless every pool file is up.
        let pool = plan.pool_uploads.len();
        let uploads: Vec<&Job> = plan
            .pool_uploads
            .iter()
            .chain(plan.dist_dirs.iter().flat_map(|d| &d.uploads))
            .collect();
        let ok = self.batch(&uploads)?;
        log::info!(
            "{} upload(s) answered after {:.2} s",
            uploads.len(),
            self.elapsed()
        );
        if !ok[..pool].iter().all(|b| *b) {
            return Ok(());
        }
        // Round 2: each dist dir whose files are all up is finalised, step by step.
        let ok = &ok[pool..];
        let mut ready: Vec<bool> = Vec::new();
        let mut at = 0;
        for d in &plan.dist_dirs {
            ready.push(ok[at..at + d.uploads.len()].iter().all(|b| *b));
            at += d.uploads.len();
        }
        // A server that answers in order (OpenSSH's) also carries them out in order: the
        // renames of the indices and of Release/InRelease then go in one batch, Release
        // still last, and the moment in which a reader can see new indices with the old
        // Release lasts one round trip, not three. Only plain renames are sent so: a
        // symlink may need a REMOVE or MKDIR first, which is answered before it goes.
        // The price: an index rename that fails no longer holds back its Release. Either
        // way the mirror then has indices its Release does not match until a rerun (new
        // indices under the old Release, or one old index under the new one); the pool is
        // complete in both, which is what the waits before this guard.
        let in_order = self.engine.in_order() && self.engine.atomic_rename();
        let renames_only = |step: usize| {
            plan.dist_dirs.iter().all(|d| {
                d.steps[step]
                    .iter()
                    .all(|j| matches!(j.action, Action::RenameDotNew { .. }))
            })
        };
        let mut step = 0;
        while step < plan::FINALISE_STEPS {
            // The deletions (the last step) always wait for the renames.
            let mut last = step;
            while in_order
                && last + 2 < plan::FINALISE_STEPS
                && renames_only(last)
                && renames_only(last + 1)
            {
                last += 1;
            }
            let mut jobs = Vec::new();
            let mut owner = Vec::new();
            for (i, d) in plan.dist_dirs.iter().enumerate() {
                if ready[i] {
                    for s in step..=last {
                        jobs.extend(&d.steps[s]);
                        owner.extend(std::iter::repeat_n(i, d.steps[s].len()));
                    }
                }
            }
            let ok = self.batch(&jobs)?;
            if !jobs.is_empty() {
                log::info!(
                    "finalising step {step}{}: {} change(s) answered after {:.2} s",
                    if last > step {
                        format!("-{last}")
                    } else {
                        String::new()
                    },
                    jobs.len(),
                    self.elapsed()
                );
            }
            step = last + 1;
            for (j, good) in ok.iter().enumerate() {
                if !good {
                    ready[owner[j]] = false;
                }
            }
        }
        let finalised: Vec<&plan::DistDir> = plan
            .dist_dirs
            .iter()
            .zip(&ready)
            .filter(|(_, ready)| **ready)
            .map(|(d, _)| d)
            .collect();
        self.refresh_copies(&finalised)?;
        if self.report.failures > 0 {
            return Ok(());
        }
        // Round 3: pool deletions, then the directories they emptied.
        let deletes: Vec<&Job> = plan.pool_deletes.iter().collect();
        let ok = self.batch(&deletes)?;
        if !keepdirectories {
            let emptied = deletes
                .iter()
                .zip(&ok)
                .filter(|(_, good)| **good)
                .filter_map(|(job, _)| job.path.parent());
            self.prune(emptied.chain(plan.prune.iter().cloned()).collect())?;
        }
        Ok(())
    }

    /// Runs jobs together; journals each success at once and reports each failure. Returns
    /// which succeeded. A rename whose `.new` has gone missing (its upload was journalled,
    /// but the file is not there: the rename happened and its journal line was lost, or
    /// someone cleaned up) is healed by uploading the file again and renaming it.
    fn batch(&mut self, jobs: &[&Job]) -> anyhow::Result<Vec<bool>> {
        let mut ok = vec![false; jobs.len()];
        // Links already known to be copied are not sent as SYMLINKs.
        let (mut copies, sent): (Vec<usize>, Vec<usize>) = (0..jobs.len())
            .partition(|&i| self.copying && matches!(jobs[i].action, Action::Symlink { .. }));
        let sent_jobs: Vec<&Job> = sent.iter().map(|&i| jobs[i]).collect();
        let (sent_ok, held) = self.batch_once(&sent_jobs, true)?;
        for (k, good) in sent_ok.into_iter().enumerate() {
            ok[sent[k]] = good;
        }
        if let Some(e) = &held.refusal
            && !self.copying
        {
            // `symlinks auto`: said once; this link and every later one are copies.
            crate::run::mirror::warn_copying(e);
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
        if missing.is_empty() {
            return Ok(ok);
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
        let (uploaded, _) = self.batch_once(&uploads.iter().collect::<Vec<_>>(), false)?;
        let renames: Vec<usize> = missing
            .iter()
            .zip(uploaded)
            .filter(|(_, up)| *up)
            .map(|(&i, _)| i)
            .collect();
        let again: Vec<&Job> = renames.iter().map(|&i| jobs[i]).collect();
        let (renamed, _) = self.batch_once(&again, false)?;
        for (i, good) in renames.into_iter().zip(renamed) {
            ok[i] = good;
        }
        Ok(ok)
    }

    /// One engine run of `jobs`. With `heal`, renames that find no `.new` are not reported
    /// but returned (by index) for [`Executor::batch`] to heal; so are, with `symlinks
    /// auto`, the links the server refuses, to be copied instead.
    fn batch_once(&mut self, jobs: &[&Job], heal: bool) -> anyhow::Result<(Vec<bool>, Held)> {
        // Huge plans go in slices, so that memory stays bounded whatever the plan's size; a
        // slice costs one round trip of tail, nothing at this size.
        if jobs.len() > SLICE {
            let (mut ok, mut held) = (Vec::with_capacity(jobs.len()), Held::default());
            for (n, slice) in jobs.chunks(SLICE).enumerate() {
                let (o, h) = self.batch_once(slice, heal)?;
                ok.extend(o);
                let shift = |v: Vec<usize>| v.into_iter().map(move |i| i + n * SLICE);
                held.missing.extend(shift(h.missing));
                held.refused.extend(shift(h.refused));
                held.in_the_way.extend(shift(h.in_the_way));
                held.refusal = held.refusal.or(h.refusal);
            }
            return Ok((ok, held));
        }
        if jobs.is_empty() {
            return Ok((Vec::new(), Held::default()));
        }
        let ops: Vec<Op> = jobs.iter().map(|j| self.op(j)).collect();
        let mut ok = vec![false; jobs.len()];
        let mut held = Held::default();
        let mut journal_error = None;
        let settings = self.settings;
        let auto = settings.symlinks == Symlinks::Auto;
        let journal = &mut *self.journal;
        let report = &mut self.report;
        let supersedes = self.supersedes;
        let progress = &mut self.progress;
        let outdir = self.outdir;
        report.operations += jobs.len();
        let mut on_done = |i: usize, result: &OpResult| {
            let job = jobs[i];
            match result {
                Ok(outcome) => {
                    ok[i] = true;
                    if let Some(local) = upload_source(job, outdir) {
                        progress.file_done(std::fs::metadata(local).map_or(0, |m| m.len()));
                    }
                    let (message, completes) = match (&job.action, outcome) {
                        (Action::UploadDotNew { .. }, _) => (DoneMessage::AsDotNew, false),
                        (Action::Symlink { .. }, _) => (DoneMessage::SymlinkDone, true),
                        (Action::Delete, Outcome::AlreadyAbsent) => {
                            (DoneMessage::AlreadyDeleted, true)
                        }
                        (Action::Delete, Outcome::Done) => (DoneMessage::Deleted, true),
                        _ => (DoneMessage::Done, true),
                    };
                    let journalled = if completes {
                        journal_complete(journal, supersedes, job, message)
                    } else {
                        journal.record(job.log, message, &job.path)
                    };
                    if let Err(e) = journalled {
                        journal_error.get_or_insert(e);
                    }
                }
                Err(e)
                    if heal
                        && matches!(job.action, Action::RenameDotNew { .. })
                        && e.status() == Some(Status::NoSuchFile) =>
                {
                    held.missing.push(i);
                }
                Err(e) if e.cause == Cause::Interrupted => {}
                Err(e) if heal && auto && crate::run::mirror::refuses_symlinks(e) => {
                    held.refused.push(i);
                    held.refusal.get_or_insert_with(|| e.clone());
                }
                Err(e) if crate::run::mirror::refuses_symlinks(e) => {
                    report.failures += 1;
                    progress.say(&format!(
                        "outsftphook: {}",
                        crate::run::mirror::refused_error(e, settings)
                    ));
                }
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
                        if link_source(&settings.distdir, &job.path, target).is_dir()) =>
                {
                    held.in_the_way.push(i);
                }
                Err(e) => {
                    report.failures += 1;
                    progress.say(&format!("outsftphook: {e}"));
                }
            }
        };
        self.engine.run_batch(&ops, &mut on_done)?;
        if let Some(e) = journal_error {
            return Err(e.context(JournalStopped));
        }
        if let Some(sig) = self.interrupt.signal() {
            anyhow::bail!(
                "interrupted by {}: stopped once the requests in flight were answered; \
                 {} operation(s) completed and are journalled",
                signal_name(sig),
                ok.iter().filter(|b| **b).count() + self.report.completed
            );
        }
        self.report.completed += ok.iter().filter(|b| **b).count();
        Ok((ok, held))
    }

    /// Keeps the remote copies of reprepro's suite links current: `dists/stable ->
    /// bookworm` (made by `reprepro createsymlinks`, named by no outlog) is a directory on a
    /// server that refuses symlinks, which `mirror` filled. When `bookworm` was finalised,
    /// the copy is brought up to date as `mirror --delete dists/stable` would, before the
    /// pool deletions that its old indexes may still name. Not with `symlinks yes` (the
    /// remote has links then), and only where the remote holds no link there: one READLINK
    /// per alias, together (one round trip per push that has aliases).
    fn refresh_copies(&mut self, finalised: &[&plan::DistDir]) -> anyhow::Result<()> {
        if self.settings.symlinks == Symlinks::Yes {
            return Ok(());
        }
        let dists = RelPath::new("dists").expect("valid");
        let local_dists = self.outdir.join("dists");
        // The distributions themselves (`dists/CODENAME`), resolved.
        let targets: Vec<(PathBuf, &plan::DistDir)> = finalised
            .iter()
            .filter(|d| d.dir.parent().as_ref() == Some(&dists))
            .filter_map(|d| {
                let resolved = self.outdir.join(d.dir.as_str()).canonicalize().ok()?;
                Some((resolved, *d))
            })
            .collect();
        let Ok(entries) = std::fs::read_dir(&local_dists) else {
            return Ok(());
        };
        let (mut aliases, mut changed) = (Vec::new(), BTreeSet::new());
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
                    if let Some(rest) = job.path.as_str().strip_prefix(d.dir.as_str())
                        && let Ok(path) = RelPath::new(&format!("{}{rest}", dists.join(&name)))
                    {
                        changed.insert(path);
                    }
                }
            }
        }
        if aliases.is_empty() {
            return Ok(());
        }
        // A link there is what it should be. A copy is not, nor is what a server without
        // links answers (rclone: OP_UNSUPPORTED); nothing there is left alone, as `mirror`
        // would add it.
        let readlinks: Vec<Op> = aliases
            .iter()
            .map(|a| Op::Readlink {
                path: remote_path(self.targetdir.as_ref(), a),
            })
            .collect();
        let mut copies = Vec::new();
        for (alias, result) in aliases
            .into_iter()
            .zip(self.engine.run(&readlinks, |_, _| {})?)
        {
            match result {
                Ok(_) => {}
                Err(e) if e.cause == Cause::Interrupted => return Ok(()),
                Err(e) if e.status() == Some(Status::NoSuchFile) => {}
                Err(_) => copies.push(alias),
            }
        }
        if copies.is_empty() {
            return Ok(());
        }
        log::info!(
            "updating the remote copies of {}",
            copies
                .iter()
                .map(RelPath::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let refreshed = crate::run::mirror::refresh_copies(
            self.engine,
            self.settings,
            &copies,
            &changed,
            &self.interrupt,
        );
        match refreshed {
            Ok(report) => {
                self.report.failures += report.failures;
                self.report.completed += report.changes.saturating_sub(report.failures);
            }
            // A copy that must not be made (its link leads out of the repository) is one
            // failure, said; a lost connection or a signal ends the run.
            Err(e) if e.downcast_ref::<SetupError>().is_some() => {
                self.report.failures += 1;
                self.progress.say(&format!("outsftphook: {e:#}"));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Makes, for each link job, a copy of what the link leads to locally at its path:
    /// the file, or the directory's tree (links in it followed, as `rsync -L` does), each
    /// file uploaded straight to its final name (an upload lands atomically by itself).
    /// A job is journalled `done` once all of its copy is up. What the link leads to must
    /// lie in the dist dir, as every dist file's source must; a link that leads nowhere
    /// has nothing to copy: what stands at its path is removed, and it is done.
    fn copy_links(&mut self, jobs: &[&Job]) -> anyhow::Result<Vec<bool>> {
        let mut failed = vec![false; jobs.len()];
        let (mut clears, mut mkdirs, mut uploads) = (Vec::new(), Vec::new(), Vec::new());
        for (i, job) in jobs.iter().enumerate() {
            let Action::Symlink { target } = &job.action else {
                unreachable!("only links are copied")
            };
            let source = link_source(&self.settings.distdir, &job.path, target);
            let link = remote_path(self.targetdir.as_ref(), &job.path);
            let followed = match crate::run::tree::follow(&source, &job.path, &self.dist_root) {
                Ok(followed) => followed,
                Err(e) if e.dangling => {
                    log::warn!("{e}: nothing is uploaded for it");
                    clears.push((i, Op::Remove { path: link }));
                    continue;
                }
                Err(e) => {
                    failed[i] = true;
                    self.report.failures += 1;
                    self.progress.say(&format!("outsftphook: {e}"));
                    continue;
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
                            clears.push((i, Op::Remove { path: link.clone() }));
                        }
                        if !dirs_with_files.contains(&path) {
                            mkdirs.push((i, Op::Mkdir { path: remote }));
                        }
                    }
                    Node::File { mtime, .. } => uploads.push((
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
        }
        for (group, counts) in [(clears, false), (mkdirs, true), (uploads, true)] {
            if group.is_empty() {
                continue;
            }
            let ops: Vec<Op> = group.iter().map(|(_, op)| op.clone()).collect();
            self.report.operations += ops.len();
            let (report, progress) = (&mut self.report, &mut self.progress);
            let mut on_done = |k: usize, result: &OpResult| match result {
                Err(e) if e.cause == Cause::Interrupted => failed[group[k].0] = true,
                Err(e) if counts => {
                    failed[group[k].0] = true;
                    report.failures += 1;
                    progress.say(&format!("outsftphook: {e}"));
                }
                _ => {}
            };
            self.engine.run_batch(&ops, &mut on_done)?;
            if let Some(sig) = self.interrupt.signal() {
                anyhow::bail!(
                    "interrupted by {} while uploading copies of symlinks: stopped once the \
                     requests in flight were answered; {} operation(s) completed and are \
                     journalled",
                    signal_name(sig),
                    self.report.completed
                );
            }
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
                self.progress
                    .say(&format!("copied {} (a symlink)", job.path));
            }
        }
        Ok(ok)
    }

    fn op(&self, job: &Job) -> Op {
        let path = remote_path(self.targetdir.as_ref(), &job.path);
        match &job.action {
            // The local time goes along, so that `verify` and `mirror` see equal files.
            Action::Upload => {
                let local = self.outdir.join(job.path.as_str());
                Op::Upload {
                    mtime: local_mtime(&local),
                    local,
                    remote: path,
                    fsync: false,
                }
            }
            Action::UploadDotNew { local } => Op::Upload {
                local: local.clone(),
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
            Action::Delete => Op::Remove { path },
        }
    }

    /// Removes directories left empty, deepest first, as reprepro does locally: a level
    /// at a time, each parent only once a child of it was removed.
    fn prune(&mut self, dirs: BTreeSet<RelPath>) -> anyhow::Result<()> {
        let mut todo = dirs;
        let depth = |p: &RelPath| p.as_str().matches('/').count();
        while let Some(deepest) = todo.iter().map(depth).max() {
            let level: Vec<RelPath> = todo
                .iter()
                .filter(|p| depth(p) == deepest)
                .cloned()
                .collect();
            let ops: Vec<Op> = level
                .iter()
                .map(|p| Op::Rmdir {
                    path: remote_path(self.targetdir.as_ref(), p),
                })
                .collect();
            let results = self.engine.run(&ops, |_, _| {})?;
            if let Some(sig) = self.interrupt.signal() {
                anyhow::bail!(
                    "interrupted by {} while removing emptied directories",
                    signal_name(sig)
                );
            }
            for (dir, result) in level.iter().zip(results) {
                todo.remove(dir);
                // Not empty (or not ours to remove): leave it and its parents alone.
                if result.is_ok()
                    && let Some(parent) = dir.parent()
                {
                    todo.insert(parent);
                }
            }
        }
        Ok(())
    }
}
