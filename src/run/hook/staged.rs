//! The push of one run to every mirror selected, staged as Debian's mirrors are
//! (ftpsync's "stages"): the new pool files and the `.new` indexes go to every mirror
//! first; only once each has answered do the renames, `Release` last, go to any of them
//! (`switch together`), so that clients behind a round-robin name never see one mirror
//! new and another old for longer than the switch. With `switch each` every mirror
//! switches as soon as its own uploads are in.
//!
//! A mirror that cannot be reached, or fails, is left behind and said; the others go
//! on. With one mirror configured the push is what it always was, messages included.

use std::time::Instant;

use anyhow::Context;

use crate::config::{Settings, Symlinks};
use crate::engine::{Engine, EngineConfig, connections_for_bytes};
use crate::exit::Fatal;
use crate::interrupt::Interrupt;
use crate::plan::tree::remote_path;
use crate::plan::{HeldBack, Plan};
use crate::remote_path::RemotePath;
use crate::repo::journal::Journal;
use crate::run::deletions::Deletions;
use crate::run::leftovers;
use crate::run::output::{Tally, summary, tell, tell_summary};
use crate::run::runner::Runner;
use crate::run::session::{close_quietly, open_all, target_error, warn_unless_atomic_renames};
use crate::run::timeline::Timeline;

use super::Report;
use super::cut_off;
use super::rounds::{Executor, upload_totals};
use super::sources::dist_root;
use super::together::{finalise_together, upload_rounds};

/// One mirror's part of a run: its plan (from its own journal lines), its journal and its
/// held deletions.
pub(super) struct Push<'s> {
    pub(super) settings: &'s Settings,
    pub(super) plan: Plan,
    pub(super) journal: Journal,
    pub(super) deletions: Deletions,
    /// The files and bytes its plan uploads, once looked at.
    pub(super) totals: Option<(u64, u64)>,
}

impl Push<'_> {
    /// Whether this mirror has nothing to do.
    pub(super) fn is_idle(&self) -> bool {
        self.plan.is_empty() && self.deletions.due().is_empty()
    }
}

/// How a mirror's part ended, before its summary.
enum Ended {
    /// Connected, ran: how its rounds went.
    Ran(anyhow::Result<()>),
    /// Could not be reached, or its target is not there.
    Behind(Fatal),
}

/// Pushes to every mirror of `pushes` (those with nothing to do included: they are told
/// so); `several` when more than one mirror is configured. Returns what the run
/// achieved; with one mirror, what stopped it is the error, as it always was.
pub(super) fn push_all(
    pushes: &mut [Push<'_>],
    several: bool,
    interrupt: &Interrupt,
    timeline: &mut Timeline,
) -> Result<Report, Fatal> {
    let started = Instant::now();
    let busy: Vec<(&Settings, EngineConfig)> = pushes
        .iter_mut()
        .filter(|p| !p.is_idle())
        .map(|p| {
            let (files, bytes) = upload_totals(&p.plan, &p.settings.outdir);
            p.totals = Some((files, bytes));
            let connections = connections_for_bytes(bytes, p.settings.connections);
            let mut config = p.settings.engine_config(connections, interrupt);
            config.first_dirs = first_dirs(&p.plan, p.settings.targetdir.as_ref());
            (p.settings, config)
        })
        .collect();
    let mut opened = open_all(&busy).into_iter();
    let mut engines: Vec<Option<Engine>> = Vec::new();
    let mut ended: Vec<Option<Ended>> = Vec::new();
    for push in pushes.iter() {
        if push.is_idle() {
            engines.push(None);
            ended.push(Some(Ended::Ran(Ok(()))));
            continue;
        }
        match opened.next().expect("one per mirror with work") {
            Ok(engine) => {
                engines.push(Some(engine));
                ended.push(None);
            }
            Err(e) if several => {
                engines.push(None);
                ended.push(Some(Ended::Behind(e)));
            }
            Err(e) => {
                // A run that could not connect ends with a summary too.
                tell(&summary("", &Tally::default(), 1, started));
                return Err(e);
            }
        }
    }
    log::info!("connected after {:.2} s", started.elapsed().as_secs_f64());
    timeline.end("connect", engines.iter().flatten());
    for (push, engine) in pushes.iter().zip(engines.iter_mut()) {
        if let Some(engine) = engine {
            leftovers::remove(push.settings, engine);
        }
    }
    let together = pushes[0].settings.switch == crate::config::Switch::Together;
    let stage = Stage {
        together,
        interrupt,
        started,
    };
    let outcomes = run_staged(pushes, &mut engines, &stage, timeline)?;
    let mut achieved: Vec<Option<Achieved>> = (0..pushes.len()).map(|_| None).collect();
    for (i, outcome, got) in outcomes {
        ended[i] = Some(outcome);
        achieved[i] = Some(got);
    }
    let mut report = Report::default();
    for (i, push) in pushes.iter_mut().enumerate() {
        let outcome = ended[i].take().expect("every mirror ended");
        let got = conclude(
            push,
            engines[i].take(),
            outcome,
            achieved[i].take(),
            several,
            started,
        )?;
        add(&mut report, &got);
    }
    timeline.end("close", []);
    Ok(report)
}

/// The first uploads looked at for [`first_dirs`]: about what the first flight opens.
const FIRST_UPLOADS: usize = 256;

/// The remote directories of the plan's first uploads, each once: the engine asks where
/// they are right behind INIT (see [`EngineConfig::first_dirs`]), which saves the round
/// trip after VERSION that those checks would otherwise cost before the first OPEN.
fn first_dirs(plan: &Plan, targetdir: Option<&RemotePath>) -> Vec<RemotePath> {
    let mut dirs: Vec<RemotePath> = Vec::new();
    let uploads = plan.pool_uploads.iter();
    let uploads = uploads.chain(plan.dist_dirs.iter().flat_map(|d| &d.uploads));
    // Round 1's jobs, as [`upload_jobs`](super::rounds::upload_jobs) lists them.
    for job in uploads.take(FIRST_UPLOADS) {
        let Some(dir) = remote_path(targetdir, &job.path).parent() else {
            continue;
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// What a mirror's rounds confirmed: the runner's count and failures, and the rounds'
/// report.
type Achieved = (Tally, usize, Report);

fn add(total: &mut Report, (tally, failures, report): &Achieved) {
    total.failures += failures;
    total.completed += report.completed;
    total.operations += report.operations;
    total.files_uploaded += tally.files;
    total.bytes_uploaded += tally.bytes;
}

/// How the stages of [`run_staged`] go: finalised `together` or each mirror on its own,
/// stopping on `interrupt`, the run having `started` then.
struct Stage<'a> {
    together: bool,
    interrupt: &'a Interrupt,
    started: Instant,
}

/// Runs the rounds of every connected mirror, staged: each one's uploads, then (with
/// `together`, once all have answered) each one's switch. Returns, by mirror, how its
/// rounds went and what they achieved; a mirror whose target turned out missing is
/// behind.
fn run_staged(
    pushes: &mut [Push<'_>],
    engines: &mut [Option<Engine>],
    stage: &Stage<'_>,
    timeline: &mut Timeline,
) -> Result<Vec<(usize, Ended, Achieved)>, Fatal> {
    let &Stage {
        together,
        interrupt,
        started,
    } = stage;
    let wall_started = crate::repo::held::now();
    let mut execs = Vec::new();
    for (i, (push, engine)) in pushes.iter_mut().zip(engines.iter_mut()).enumerate() {
        if let Some(engine) = engine {
            let (exec, plan) = executor(push, engine, interrupt, started)?;
            execs.push((i, exec, plan));
        }
    }
    let staged = stage_one(&mut execs, together);
    timeline.end(
        "uploads",
        execs.iter_mut().map(|(_, e, _)| &*e.runner.engine()),
    );
    let finalised = stage_two(&mut execs, staged, together);
    timeline.end(
        "switch",
        execs.iter_mut().map(|(_, e, _)| &*e.runner.engine()),
    );
    let mut outcomes = Vec::new();
    for ((i, mut exec, plan), finalised) in execs.into_iter().zip(finalised) {
        let mut result = match finalised {
            Ok(Some(ready)) => exec.after_finalise(plan, ready),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let (Ok(()), 0, Some(name)) = (
            &result,
            exec.runner.failures(),
            exec.settings.tracefile.as_deref(),
        ) {
            result = exec.trace(name, wall_started);
        }
        exec.runner.finish();
        let outcome = match exec.runner.engine().target_problem() {
            Some(problem) => Ended::Behind(target_error(exec.settings, &problem)),
            None => Ended::Ran(result),
        };
        let achieved = (exec.runner.tally(), exec.runner.failures(), exec.report);
        outcomes.push((i, outcome, achieved));
    }
    timeline.end("after", engines.iter().flatten());
    Ok(outcomes)
}

/// A mirror's executor and its plan, by the mirror's place in the run.
type Exec<'a> = (usize, Executor<'a>, &'a Plan);

/// What a stage left a mirror: the files whose switch is due (`None`: nothing is), or why
/// it stopped.
type Staged = anyhow::Result<Option<Vec<bool>>>;

/// Stage one: every mirror's new pool files and `.new` indexes (with `switch each`, each
/// mirror's switch right behind its own).
fn stage_one(execs: &mut [Exec<'_>], together: bool) -> Vec<Staged> {
    if together {
        let (mut all, plans): (Vec<&mut Executor<'_>>, Vec<&Plan>) =
            execs.iter_mut().map(|(_, e, p)| (e, *p)).unzip();
        return upload_rounds(&mut all, &plans);
    }
    let mut staged = Vec::new();
    for (_, exec, plan) in execs {
        staged.push(match exec.upload_round(plan) {
            Ok(Some(ready)) => exec.switch(plan, ready).map(|()| None),
            uploaded => uploaded,
        });
    }
    staged
}

/// Stage two: the switch, on every mirror whose uploads are all in, in the same moment
/// (with `switch each`, done already in stage one).
fn stage_two(execs: &mut [Exec<'_>], staged: Vec<Staged>, together: bool) -> Vec<Staged> {
    if !together {
        return staged;
    }
    let readies = staged
        .iter()
        .map(|u| u.as_ref().ok().and_then(Clone::clone))
        .collect();
    let (mut all, plans): (Vec<&mut Executor<'_>>, Vec<&Plan>) =
        execs.iter_mut().map(|(_, e, p)| (e, *p)).unzip();
    let switched = finalise_together(&mut all, &plans, readies);
    staged
        .into_iter()
        .zip(switched)
        .map(|(uploaded, switched)| uploaded.and(switched))
        .collect()
}

/// The executor of `push`'s rounds on `engine`, and the plan it runs.
fn executor<'a>(
    push: &'a mut Push<'_>,
    engine: &'a mut Engine,
    interrupt: &'a Interrupt,
    started: Instant,
) -> Result<(Executor<'a>, &'a Plan), Fatal> {
    let settings = push.settings;
    let held_back = if push.deletions.holding() {
        push.plan.take_deletions()
    } else {
        HeldBack::default()
    };
    let plan = &push.plan;
    if !plan.dist_dirs.is_empty() {
        warn_unless_atomic_renames(engine, settings);
    }
    let (files, bytes) = push
        .totals
        .unwrap_or_else(|| upload_totals(plan, &settings.outdir));
    let exec = Executor {
        runner: Runner::new(engine, interrupt, files, bytes),
        journal: &mut push.journal,
        targetdir: settings.targetdir.clone(),
        report: Report::default(),
        supersedes: &plan.supersedes,
        outdir: &settings.outdir,
        started,
        settings,
        dist_root: dist_root(settings).map_err(Fatal::setup)?,
        copying: settings.symlinks == Symlinks::Copy,
        deletions: &mut push.deletions,
        held_back,
    };
    Ok((exec, plan))
}

/// Ends one mirror's part: its journal flushed (its logs left for the caller to rename),
/// its session closed, its summary said. With one mirror, what stopped it is returned as
/// the error, as it always was; with several, it is said and the mirror is behind.
fn conclude(
    push: &mut Push<'_>,
    engine: Option<Engine>,
    ended: Ended,
    achieved: Option<Achieved>,
    several: bool,
    started: Instant,
) -> Result<Achieved, Fatal> {
    let settings = push.settings;
    if let Some(engine) = &engine {
        leftovers::record(settings, engine);
    }
    let (tally, failures, report) = achieved.unwrap_or_default();
    let label = if several {
        format!("{}: ", settings.mirror.name)
    } else {
        String::new()
    };
    let result = match ended {
        Ended::Behind(fatal) => {
            if let Some(engine) = engine {
                close_quietly(engine);
            }
            if !several {
                return Err(fatal);
            }
            tell(&summary(&label, &tally, failures.max(1), started));
            say_behind(settings, &format!("{:#}", fatal.error));
            return Ok((tally, failures.max(1), report));
        }
        Ended::Ran(result) => result,
    };
    if result.is_ok() && failures == 0 {
        push.journal.finish_empty()?;
    }
    push.journal.sync().context("cannot flush the journal")?;
    let line = summary(&label, &tally, failures, started);
    match result {
        Ok(()) => {
            if let Some(engine) = engine {
                close_quietly(engine);
            }
            tell_summary(&line, failures);
            if several && failures > 0 {
                say_behind(settings, &format!("{failures} operation(s) failed"));
            }
            Ok((tally, failures, report))
        }
        Err(e) => {
            tell(&line);
            let fatal = cut_off(e, settings);
            if !several {
                return Err(fatal);
            }
            say_behind(settings, &format!("{:#}", fatal.error));
            Ok((tally, failures.max(1), report))
        }
    }
}

/// Says that the mirror of `settings` is behind, why, and what brings it up to date.
fn say_behind(settings: &Settings, why: &str) {
    let name = &settings.mirror.name;
    let next = if settings.autoretry {
        ", or the next reprepro run"
    } else {
        ""
    };
    tell(&format!(
        "mirror {name} is behind: {why}; the mirrors that finished have switched. The next \
         run brings it up to date: '{} --only {name}'{next}",
        settings.pending_command(),
    ));
}
