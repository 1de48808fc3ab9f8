//! Round 1 of several mirrors at once: every mirror's new pool files and `.new` indexes
//! driven by one loop over all their connections ([`run_together`]), so that a push to
//! three mirrors takes about the time of one. Each mirror's results are judged and
//! journalled as its own ([`Judge`]); one whose connection is lost drops out, the others
//! go on.

use crate::engine::{Op, OpResult};
use crate::plan::{Job, Plan};
use crate::run::runner::{JudgeFn, Runner, run_together};

use super::Report;
use super::rounds::{Executor, Judge, SLICE, upload_jobs};

/// Runs round 1 of each executor (`plans[m]` its plan) together; returns, by mirror, what
/// [`Executor::upload_round`] returns.
pub(super) fn upload_rounds(
    execs: &mut [&mut Executor<'_>],
    plans: &[&Plan],
) -> Vec<anyhow::Result<Option<Vec<bool>>>> {
    let jobs: Vec<Vec<&Job>> = plans.iter().map(|p| upload_jobs(p)).collect();
    let mut ok: Vec<Vec<bool>> = jobs.iter().map(|j| Vec::with_capacity(j.len())).collect();
    let mut lost: Vec<Option<anyhow::Error>> = jobs.iter().map(|_| None).collect();
    let slices = jobs
        .iter()
        .map(|j| j.len().div_ceil(SLICE))
        .max()
        .unwrap_or(0);
    for n in 0..slices {
        let live: Vec<usize> = (0..execs.len()).filter(|&m| lost[m].is_none()).collect();
        let parts: Vec<&[&Job]> = live
            .iter()
            .map(|&m| {
                let j = &jobs[m];
                &j[(n * SLICE).min(j.len())..((n + 1) * SLICE).min(j.len())]
            })
            .collect();
        let mut chosen: Vec<&mut Executor<'_>> = execs
            .iter_mut()
            .enumerate()
            .filter(|(m, _)| lost[*m].is_none())
            .map(|(_, e)| &mut **e)
            .collect();
        for (k, sent) in send_together(&mut chosen, &parts).into_iter().enumerate() {
            match sent {
                Ok(good) => ok[live[k]].extend(good),
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

/// One slice of uploads per executor, all sent in one loop: which succeeded, by mirror;
/// an `Err` is that mirror's connection lost, its journal failing, or the run stopped.
fn send_together(
    execs: &mut [&mut Executor<'_>],
    slices: &[&[&Job]],
) -> Vec<anyhow::Result<Vec<bool>>> {
    let ops: Vec<Vec<Op>> = execs
        .iter()
        .zip(slices)
        .map(|(e, jobs)| jobs.iter().map(|j| e.op(j)).collect())
        .collect();
    let mut runners: Vec<&mut Runner<'_>> = Vec::new();
    let mut judges: Vec<Judge<'_>> = Vec::new();
    let mut reports: Vec<&mut Report> = Vec::new();
    for (exec, jobs) in execs.iter_mut().zip(slices) {
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
        judges.push(Judge::of_uploads(jobs, settings, journal, supersedes));
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
    let mut sent = Vec::new();
    for (((runner, judge), report), ran) in runners.into_iter().zip(judges).zip(reports).zip(ran) {
        sent.push(ran.and_then(|()| judge.verdict()).and_then(|ok| {
            let completed = ok.iter().filter(|b| **b).count() + report.completed;
            runner.stop_if_interrupted(|signal| {
                format!(
                    "interrupted by {signal}: stopped once the requests in flight were \
                     answered; {completed} operation(s) completed and are journalled"
                )
            })?;
            report.completed += ok.iter().filter(|b| **b).count();
            Ok(ok)
        }));
    }
    sent
}
