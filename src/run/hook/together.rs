//! Round 1 of several mirrors at once: every mirror's new pool files and `.new` indexes
//! driven by one loop over all their connections ([`run_together`]), so that a push to
//! three mirrors takes about the time of one. Each mirror's results are judged and
//! journalled as its own ([`Judge`]); one whose connection is lost drops out, the others
//! go on.

use crate::engine::{Op, OpResult};
use crate::plan::{Job, Plan};
use crate::run::runner::{JudgeFn, Runner, run_together};

use super::Report;
use super::rollback::Guard;
use super::rounds::{
    Executor, Finalising, Held, Judge, SLICE, Split, Step, upload_count, upload_slice,
};

/// Runs round 1 of each executor (`plans[m]` its plan) together; returns, by mirror, what
/// [`Executor::upload_round`] returns.
pub(super) fn upload_rounds(
    execs: &mut [&mut Executor<'_>],
    plans: &[&Plan],
) -> Vec<anyhow::Result<Option<Vec<bool>>>> {
    let mut ok: Vec<Vec<bool>> = plans
        .iter()
        .map(|p| Vec::with_capacity(upload_count(p)))
        .collect();
    let mut lost: Vec<Option<anyhow::Error>> = plans.iter().map(|_| None).collect();
    let slices = plans
        .iter()
        .map(|p| upload_count(p).div_ceil(SLICE))
        .max()
        .unwrap_or(0);
    for n in 0..slices {
        let live: Vec<usize> = (0..execs.len()).filter(|&m| lost[m].is_none()).collect();
        let jobs: Vec<Vec<&Job>> = live.iter().map(|&m| upload_slice(plans[m], n)).collect();
        let parts: Vec<&[&Job]> = jobs.iter().map(Vec::as_slice).collect();
        let mut chosen: Vec<&mut Executor<'_>> = execs
            .iter_mut()
            .enumerate()
            .filter(|(m, _)| lost[*m].is_none())
            .map(|(_, e)| &mut **e)
            .collect();
        let mut no_guards: Vec<Option<&mut Guard<'_>>> = live.iter().map(|_| None).collect();
        let sent = send_together(&mut chosen, &parts, true, &mut no_guards);
        for (k, sent) in sent.into_iter().enumerate() {
            match sent {
                Ok((good, _)) => ok[live[k]].extend(good),
                Err(e) => lost[live[k]] = Some(e),
            }
        }
    }
    execs
        .iter()
        .zip(plans)
        .zip(ok.into_iter().zip(lost))
        .map(|((exec, plan), (ok, lost))| match lost {
            Some(e) => Err(e),
            None => Ok(exec.uploaded(plan, &ok)),
        })
        .collect()
}

/// One slice of jobs per executor (`slices[m]`), all sent in one loop, each behind what
/// its guard (`guards[m]`) sends ahead: by mirror, which succeeded and what was held for
/// the caller (as [`Executor::send`] holds it, with `heal`); an `Err` is that mirror's
/// connection lost, its journal failing, or the run stopped.
pub(super) fn send_together(
    execs: &mut [&mut Executor<'_>],
    slices: &[&[&Job]],
    heal: bool,
    guards: &mut [Option<&mut Guard<'_>>],
) -> Vec<anyhow::Result<(Vec<bool>, Held)>> {
    let mut ops: Vec<Vec<Op>> = Vec::new();
    let mut aheads = Vec::new();
    for ((exec, jobs), guard) in execs.iter().zip(slices).zip(guards.iter_mut()) {
        let ahead = guard
            .as_deref_mut()
            .map(|g| std::mem::take(&mut g.ahead))
            .unwrap_or_default();
        aheads.push(ahead.len());
        ops.push(
            ahead
                .into_iter()
                .chain(jobs.iter().map(|j| exec.op(j)))
                .collect(),
        );
    }
    let mut runners: Vec<&mut Runner<'_>> = Vec::new();
    let mut judges: Vec<Judge<'_>> = Vec::new();
    let mut reports: Vec<&mut Report> = Vec::new();
    for (m, (exec, jobs)) in execs.iter_mut().zip(slices).enumerate() {
        let Executor {
            runner,
            journal,
            supersedes,
            settings,
            report,
            ..
        } = &mut **exec;
        report.operations += jobs.len();
        runners.push(runner);
        let deferred = guards[m].as_deref().map(|g| &g.deferred);
        let own = (*settings, &mut **journal, *supersedes);
        judges.push(Judge::new(aheads[m], jobs, heal, own, deferred));
        reports.push(report);
    }
    let ran = {
        let mut hear: Vec<_> = judges
            .iter_mut()
            .map(|j| move |i: usize, r: &OpResult| j.judge(i, r))
            .collect();
        let mut fns: Vec<JudgeFn<'_>> = hear.iter_mut().map(|f| f as JudgeFn<'_>).collect();
        run_together(&mut runners, &ops, &mut fns)
    };
    let verdicts: Vec<_> = judges.into_iter().map(Judge::verdict).collect();
    let mut sent = Vec::new();
    let each = runners.into_iter().zip(reports).zip(ran).zip(verdicts);
    for ((((runner, report), ran), (verdict, linked)), guard) in each.zip(guards.iter_mut()) {
        sent.push(ran.and_then(|()| {
            if let Some(g) = guard {
                g.linked(linked);
            }
            let (ok, held) = verdict?;
            let done = ok.iter().filter(|b| **b).count();
            let completed = done + report.completed;
            runner.stop_if_interrupted(|signal| {
                format!(
                    "interrupted by {signal}: stopped once the requests in flight were \
                     answered; {completed} operation(s) completed and are journalled"
                )
            })?;
            report.completed += done;
            Ok((ok, held))
        }));
    }
    sent
}

/// The finalisation of several mirrors at once (`switch together`): batch by batch, each
/// mirror's next renames sent in one loop with the others', so that every mirror's
/// indexes, then `Release` and `InRelease`, change in the same moment, not one mirror
/// after another. `readies[m]` is mirror `m`'s dist dirs ready for it (`None`: not to be
/// finalised). Returns by mirror which dist dirs went through, as
/// [`Executor::switch`]'s finalisation does.
pub(super) fn finalise_together<'p>(
    execs: &mut [&mut Executor<'_>],
    plans: &[&'p Plan],
    readies: Vec<Option<Vec<bool>>>,
) -> Vec<anyhow::Result<Option<Vec<bool>>>> {
    let mut states: Vec<Option<anyhow::Result<Finalising<'p>>>> = execs
        .iter_mut()
        .zip(plans)
        .zip(readies)
        .map(|((exec, plan), ready)| ready.map(|r| exec.begin_finalise(plan, r)))
        .collect();
    loop {
        // Every mirror's batch holds the same steps: the fewest any server allows in one
        // (an in-order one takes the indexes and Release in one batch, another not).
        let mut lasts = Vec::new();
        for (m, state) in states.iter().enumerate() {
            if let Some(Ok(f)) = state
                && let Some(last) = execs[m].next_last(plans[m], f)
            {
                lasts.push((m, last));
            }
        }
        let Some(last) = lasts.iter().map(|(_, l)| *l).min() else {
            break;
        };
        let mut steps = Vec::new();
        for (m, _) in lasts {
            let Some(Ok(f)) = &states[m] else {
                unreachable!("only mirrors finalising have a step")
            };
            let step = execs[m].next_step(plans[m], f, last);
            let split = execs[m].split_copies(&step.jobs);
            steps.push((m, step, split));
        }
        if steps.is_empty() {
            break;
        }
        let sent = send_steps(execs, &mut states, &steps);
        for ((m, step, split), sent) in steps.into_iter().zip(sent) {
            let Some(Ok(f)) = &mut states[m] else {
                unreachable!("only mirrors finalising have a step")
            };
            let exec = &mut *execs[m];
            let ended = sent
                .and_then(|(ok, held)| {
                    exec.after_send(&step.jobs, split, ok, held, f.guard.as_mut())
                })
                .and_then(|ok| exec.end_step(f, step, &ok));
            if let Err(e) = ended {
                states[m] = Some(Err(e));
            }
        }
    }
    states
        .into_iter()
        .map(|state| match state {
            None => Ok(None),
            Some(Ok(f)) => Ok(Some(f.ready)),
            Some(Err(e)) => Err(e),
        })
        .collect()
}

/// Sends the jobs of each mirror's step (`steps`: mirror, step, what of it is sent) in one
/// loop, each behind its guard's links: by step, which were sent well and what was held.
/// A step too large for one engine run goes mirror by mirror, in slices.
fn send_steps(
    execs: &mut [&mut Executor<'_>],
    states: &mut [Option<anyhow::Result<Finalising<'_>>>],
    steps: &[(usize, Step<'_>, Split)],
) -> Vec<anyhow::Result<(Vec<bool>, Held)>> {
    let sent_jobs: Vec<Vec<&Job>> = steps
        .iter()
        .map(|(_, step, split)| split.sent.iter().map(|&i| step.jobs[i]).collect())
        .collect();
    let mut guards: Vec<Option<&mut Guard<'_>>> = Vec::new();
    let mut chosen: Vec<&mut Executor<'_>> = Vec::new();
    let mine: Vec<usize> = steps.iter().map(|(m, _, _)| *m).collect();
    for (m, (exec, state)) in execs.iter_mut().zip(states.iter_mut()).enumerate() {
        if mine.contains(&m) {
            let Some(Ok(f)) = state else {
                unreachable!("only mirrors finalising have a step")
            };
            guards.push(f.guard.as_mut());
            chosen.push(&mut **exec);
        }
    }
    if sent_jobs.iter().any(|j| j.len() > SLICE) {
        return chosen
            .into_iter()
            .zip(guards)
            .zip(&sent_jobs)
            .map(|((exec, guard), jobs)| exec.send(jobs, true, guard))
            .collect();
    }
    let slices: Vec<&[&Job]> = sent_jobs.iter().map(Vec::as_slice).collect();
    send_together(&mut chosen, &slices, true, &mut guards)
}
