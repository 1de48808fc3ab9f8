//! Several engines (one per server) driven by one single-threaded loop: each turn steps
//! every engine's run, then one `poll` waits on all their pipes, sleeping no longer than the
//! soonest of their deadlines and buckets. The single-engine runs are this with one engine.
//!
//! A run is a sequence of passes over the loop (a spread run with parts: the round trip,
//! the temporary names cleared, the parts, their sizes, renames, clean-up, what goes again
//! whole); each engine's [`Job`] keeps where it is, so that one engine's later pass goes on
//! while another's first is still under way. An engine whose connection fails ends with its
//! error; the others are not disturbed.

use std::cell::OnceCell;
use std::io;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use super::batch::Batch;
use super::local::Locals;
use super::op::{Op, OpResult};
use super::parts::Split;
use super::spread::shared_pass;
use super::{Engine, EngineError, EngineErrorKind, take_work};
use crate::transport::{Slots, TransportError, wait};

/// Which of the engine's runs a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// [`Engine::run`]: in order on the first connection.
    First,
    /// [`Engine::run_spread`].
    Spread,
    /// [`Engine::run_batch`]: one of the two, as the operations allow.
    Batch,
}

/// Which pass of its run a job is in: it says what a finished operation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The operations as given: each is reported as it finishes.
    Plain,
    /// Temporary names of cut uploads removed ([`Job::after_clear`]).
    Clear,
    /// The parts and the uploads not cut, in [`Store::work`].
    Parts,
    /// The size and time of each upload whose parts are all in.
    Sizing,
    /// Those renamed into place.
    Renames,
    /// Temporary files of failed ones removed.
    Discard,
    /// Uploads whose parts the server refused, sent again whole.
    Whole,
}

/// The operations a job makes for its later passes. Each pass runs at most once a run, so
/// each is set once, while the batches of earlier passes still borrow the others.
#[derive(Default)]
pub(super) struct Store {
    pub(super) clear: OnceCell<Vec<Op>>,
    pub(super) work: OnceCell<Vec<Op>>,
    pub(super) sizing: OnceCell<Vec<Op>>,
    pub(super) renames: OnceCell<Vec<Op>>,
    pub(super) discard: OnceCell<Vec<Op>>,
    pub(super) whole: OnceCell<Vec<Op>>,
}

/// One pass of the loop over an engine's connections: `assignment[k]` are the operations
/// connection `k` runs; with `share_out`, connections take work from each other.
pub(super) struct Pass<'a> {
    ops: &'a [Op],
    locals: &'a Locals,
    batches: Vec<Batch<'a>>,
    assignment: Vec<Vec<usize>>,
    share_out: bool,
}

impl<'a> Pass<'a> {
    pub(super) fn new(
        ops: &'a [Op],
        locals: &'a Locals,
        assignment: Vec<Vec<usize>>,
        share_out: bool,
    ) -> Pass<'a> {
        let batches = assignment
            .iter()
            .map(|idx| Batch::new(idx.iter().map(|&i| &ops[i]).collect(), locals))
            .collect();
        Pass {
            ops,
            locals,
            batches,
            assignment,
            share_out,
        }
    }

    /// Moves every connection on at `now`, reporting what finished; true once all is done.
    fn step(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) -> bool {
        let several = engine.holding_back(self.share_out);
        let mut all_done = true;
        for k in 0..engine.links.len() {
            if !engine.step_link(k, &mut self.batches[k], self.share_out, several, now) {
                continue;
            }
            while several && self.batches[k].hungry(&engine.links[k].conn) {
                if !take_work(k, self.ops, &mut self.batches, &mut self.assignment) {
                    break;
                }
                self.batches[k].advance(&mut engine.links[k].conn);
            }
            for (i, result) in self.batches[k].take_finished() {
                on_done(self.assignment[k][i], result);
            }
            all_done &= self.batches[k].is_done(&engine.links[k].conn);
        }
        // Only work that can be spread is worth another handshake.
        if self.share_out && !engine.more_considered {
            engine.consider_more_connections();
            let locals = self.locals;
            self.batches
                .resize_with(engine.links.len(), || Batch::new(Vec::new(), locals));
            self.assignment.resize(engine.links.len(), Vec::new());
        }
        all_done
    }

    /// The results, in the order of the pass's operations.
    fn finish(self, engine: &mut Engine) -> Vec<OpResult> {
        for link in &mut engine.links {
            link.conn.hold_back = false;
        }
        let mut results: Vec<Option<OpResult>> = vec![None; self.ops.len()];
        for (k, batch) in self.batches.into_iter().enumerate() {
            for (i, result) in batch.into_results().into_iter().enumerate() {
                results[self.assignment[k][i]] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every operation ran on a connection"))
            .collect()
    }

    /// The pass ends on `kind`: what made it still counts, the rest is in flight.
    fn fail(
        mut self,
        engine: &mut Engine,
        kind: EngineErrorKind,
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) -> EngineError {
        let in_flight = engine.wind_up(&mut self.batches, &self.assignment, on_done);
        engine.broken = !in_flight.is_empty();
        EngineError { kind, in_flight }
    }
}

/// Where a job is.
pub(super) enum Stage<'a> {
    /// Waiting for the first connection's round trip (see [`Engine::run_spread`]).
    Settle(Batch<'a>),
    Run(Phase, Pass<'a>),
    Done(Result<Vec<OpResult>, EngineError>),
}

/// What a spread run in parts keeps between its passes.
#[derive(Default)]
pub(super) struct Books {
    pub(super) split: Option<Split>,
    pub(super) results: Vec<Option<OpResult>>,
    /// Cut uploads whose parts are all in.
    pub(super) complete: Vec<usize>,
    /// Cut uploads to send again whole.
    pub(super) again: Vec<usize>,
    /// Cut uploads finished, reported once the clean-up has run.
    pub(super) finished: Vec<(usize, OpResult)>,
    /// For each operation of the current finishing pass, the upload it is for.
    pub(super) owners: Vec<usize>,
}

/// One engine's run.
pub(super) struct Job<'a> {
    pub(super) ops: &'a [Op],
    pub(super) locals: &'a Locals,
    pub(super) store: &'a Store,
    pub(super) stage: Stage<'a>,
    pub(super) books: Books,
    /// When bytes last moved in the current pass: the stall timeout counts from it.
    pub(super) last_progress: Instant,
}

impl<'a> Job<'a> {
    fn new(
        engine: &mut Engine,
        ops: &'a [Op],
        locals: &'a Locals,
        store: &'a Store,
        mode: Mode,
        split: Option<Split>,
    ) -> Job<'a> {
        let mut job = Job {
            ops,
            locals,
            store,
            stage: Stage::Done(Ok(Vec::new())),
            books: Books {
                split,
                ..Books::default()
            },
            last_progress: Instant::now(),
        };
        job.stage = match mode {
            _ if engine.broken => Stage::Done(Err(EngineError {
                kind: EngineErrorKind::Broken,
                in_flight: Vec::new(),
            })),
            Mode::First => first_pass(engine, ops, locals, Phase::Plain),
            _ if job.books.split.is_none() => shared_pass(engine, ops, locals, Phase::Plain),
            _ => job.settle(engine),
        };
        job
    }

    /// Moves the job on at `now`, through as many passes as end without waiting; true once
    /// it is done.
    fn step(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) -> bool {
        loop {
            let next = match &mut self.stage {
                Stage::Done(_) => return true,
                Stage::Settle(nothing) => {
                    let link = &mut engine.links[0];
                    link.take_replies(nothing, &engine.config, engine.local_files, now);
                    if link.rtt.is_none() {
                        return false;
                    }
                    engine.consider_more_connections();
                    self.after_settle(engine)
                }
                Stage::Run(phase, pass) => {
                    let phase = *phase;
                    let books = &mut self.books;
                    let ops = self.ops;
                    let mut report =
                        |j: usize, r: &OpResult| books.on_op(phase, ops, j, r, on_done);
                    if !pass.step(engine, now, &mut report) {
                        return false;
                    }
                    let Stage::Run(_, pass) =
                        std::mem::replace(&mut self.stage, Stage::Done(Ok(Vec::new())))
                    else {
                        unreachable!("in a pass")
                    };
                    let results = pass.finish(engine);
                    self.after_pass(engine, phase, results, on_done)
                }
            };
            if !matches!(next, Stage::Done(_)) {
                self.last_progress = Instant::now();
            }
            self.stage = next;
        }
    }

    /// What comes after a pass.
    fn after_pass(
        &mut self,
        engine: &mut Engine,
        phase: Phase,
        results: Vec<OpResult>,
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) -> Stage<'a> {
        match phase {
            Phase::Plain => Stage::Done(Ok(results)),
            Phase::Clear => self.after_clear(engine, &results),
            Phase::Parts => self.after_parts(engine),
            Phase::Sizing => self.after_sizing(engine, results),
            Phase::Renames => self.after_renames(engine, results),
            Phase::Discard => self.after_discard(engine, on_done),
            Phase::Whole => self.collect(),
        }
    }

    /// The job's connection failed with `kind`.
    fn fail(
        &mut self,
        engine: &mut Engine,
        kind: EngineErrorKind,
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) {
        let stage = std::mem::replace(&mut self.stage, Stage::Done(Ok(Vec::new())));
        let error = match stage {
            Stage::Settle(_) => EngineError {
                kind,
                in_flight: vec!["the set-up request".to_string()],
            },
            Stage::Run(phase, pass) => {
                let (books, ops) = (&mut self.books, self.ops);
                let mut report = |j: usize, r: &OpResult| books.on_op(phase, ops, j, r, on_done);
                pass.fail(engine, kind, &mut report)
            }
            Stage::Done(_) => unreachable!("a job that is done is not polled"),
        };
        self.stage = Stage::Done(Err(error));
    }

    fn into_result(self) -> Result<Vec<OpResult>, EngineError> {
        match self.stage {
            Stage::Done(result) => result,
            _ => unreachable!("the loop ends when every job is done"),
        }
    }
}

/// A pass of `ops` in order on the first connection.
pub(super) fn first_pass<'a>(
    engine: &Engine,
    ops: &'a [Op],
    locals: &'a Locals,
    phase: Phase,
) -> Stage<'a> {
    let mut assignment = vec![Vec::new(); engine.links.len()];
    assignment[0] = (0..ops.len()).collect();
    Stage::Run(phase, Pass::new(ops, locals, assignment, false))
}

/// Runs `ops` on each engine (`ops[i]` on `engines[i]`) the way `mode` says, all in one loop.
pub(super) fn run_jobs(
    engines: &mut [&mut Engine],
    ops: &[&[Op]],
    mode: Mode,
    mut on_done: impl FnMut(usize, usize, &OpResult),
) -> Vec<Result<Vec<OpResult>, EngineError>> {
    assert_eq!(
        engines.len(),
        ops.len(),
        "one list of operations per engine"
    );
    // Before a symlink goes to a server that has not said how it reads SYMLINK: sent the
    // wrong way round, it would land outside the target.
    for (engine, ops) in engines.iter_mut().zip(ops) {
        if engine.symlinks_unknown() && ops.iter().any(|op| matches!(op, Op::Symlink { .. })) {
            engine.learn_symlinks();
        }
    }
    let mut modes = Vec::with_capacity(engines.len());
    let mut splits = Vec::with_capacity(engines.len());
    for (engine, ops) in engines.iter_mut().zip(ops) {
        let mode = match mode {
            Mode::Batch
                if !ops.is_empty() && ops.iter().all(|op| matches!(op, Op::Upload { .. })) =>
            {
                Mode::Spread
            }
            Mode::Batch => Mode::First,
            mode => mode,
        };
        engine.stat_sources(ops);
        splits.push((mode == Mode::Spread).then(|| engine.split(ops)).flatten());
        modes.push(mode);
    }
    // Lent to the batches for the loop; the next run looks at the sources afresh.
    let locals: Vec<Locals> = engines
        .iter_mut()
        .map(|e| std::mem::take(&mut e.locals))
        .collect();
    let stores: Vec<Store> = engines.iter().map(|_| Store::default()).collect();
    let mut jobs: Vec<Job<'_>> = Vec::with_capacity(engines.len());
    for (k, split) in splits.into_iter().enumerate() {
        let job = Job::new(engines[k], ops[k], &locals[k], &stores[k], modes[k], split);
        jobs.push(job);
    }
    let mut now = Instant::now();
    loop {
        let mut active = vec![false; jobs.len()];
        for (k, job) in jobs.iter_mut().enumerate() {
            active[k] = !job.step(engines[k], now, &mut |i, r| on_done(k, i, r));
        }
        if !active.contains(&true) {
            break;
        }
        let mut last: Vec<Instant> = jobs.iter().map(|j| j.last_progress).collect();
        let errors;
        (now, errors) = turn_all(engines, &active, &mut last);
        for (k, (job, error)) in jobs.iter_mut().zip(errors).enumerate() {
            job.last_progress = last[k];
            match error {
                Some(kind) => job.fail(engines[k], kind, &mut |i, r| on_done(k, i, r)),
                None if active[k] => engines[k].tell_watcher(now),
                None => {}
            }
        }
    }
    let results = jobs.into_iter().map(Job::into_result).collect();
    // What was learnt of the sources is given back and forgotten: the next run looks at
    // them afresh.
    for (engine, mut locals) in engines.iter_mut().zip(locals) {
        locals.clear();
        engine.locals = locals;
    }
    results
}

/// Sets up the connection each engine has just started (see [`Engine::connect_all`]): one
/// loop until each has its VERSION; an engine whose server fails gets its error.
pub(super) fn set_up(engines: &mut [&mut Engine]) -> Vec<Option<EngineError>> {
    let mut failed: Vec<Option<EngineError>> = engines.iter().map(|_| None).collect();
    let mut last = vec![Instant::now(); engines.len()];
    loop {
        let active: Vec<bool> = engines
            .iter_mut()
            .zip(&failed)
            .map(|(e, f)| f.is_none() && !e.links[0].set_up(&e.config, e.local_files))
            .collect();
        if !active.contains(&true) {
            return failed;
        }
        let (_, errors) = turn_all(engines, &active, &mut last);
        for (f, error) in failed.iter_mut().zip(errors) {
            if let Some(kind) = error {
                let in_flight = vec!["INIT".to_string()];
                *f = Some(EngineError { kind, in_flight });
            }
        }
    }
}

/// One turn for the `active` engines: one `poll` over all their pipes, for no longer than
/// the soonest of their timeouts. Returns the time after the poll and each engine's error
/// (stalled, interrupted too long, its server gone).
fn turn_all(
    engines: &mut [&mut Engine],
    active: &[bool],
    last_progress: &mut [Instant],
) -> (Instant, Vec<Option<EngineErrorKind>>) {
    let mut errors: Vec<Option<EngineErrorKind>> = engines.iter().map(|_| None).collect();
    let mut budgets = vec![0u64; engines.len()];
    let mut timeout = Duration::MAX;
    for (k, engine) in engines.iter_mut().enumerate().filter(|(k, _)| active[*k]) {
        match engine.before_poll(last_progress[k]) {
            Ok((wait, budget)) => {
                timeout = timeout.min(wait);
                budgets[k] = budget;
            }
            Err(kind) => errors[k] = Some(kind),
        }
    }
    let live: Vec<bool> = (0..engines.len())
        .map(|k| active[k] && errors[k].is_none())
        .collect();
    if !live.contains(&true) {
        return (Instant::now(), errors);
    }
    let mut slots: Vec<Vec<Slots>> = vec![Vec::new(); engines.len()];
    let revents: Vec<Option<PollFlags>>;
    {
        let mut fds = Vec::new();
        for (k, engine) in engines.iter().enumerate().filter(|(k, _)| live[*k]) {
            slots[k] = engine.register(budgets[k], &mut fds, &mut timeout);
        }
        match wait(&mut fds, timeout) {
            Ok(true) => revents = fds.iter().map(PollFd::revents).collect(),
            Ok(false) => return (Instant::now(), errors),
            Err(e) => {
                // The poll itself failed: no engine can go on.
                for (error, _) in errors.iter_mut().zip(&live).filter(|(_, live)| **live) {
                    *error = Some(EngineErrorKind::Transport(copy_error(&e)));
                }
                return (Instant::now(), errors);
            }
        }
    }
    let now = Instant::now();
    for (k, engine) in engines.iter_mut().enumerate().filter(|(k, _)| live[*k]) {
        let (slots, budget) = (&slots[k], budgets[k]);
        if let Err(kind) = engine.after_poll(slots, &revents, budget, &mut last_progress[k], now) {
            errors[k] = Some(kind);
        }
    }
    (now, errors)
}

/// The poll's error, for each engine it ends.
fn copy_error(e: &TransportError) -> TransportError {
    match e {
        TransportError::Io(io) => TransportError::Io(io::Error::new(io.kind(), io.to_string())),
        other => TransportError::Io(io::Error::other(other.to_string())),
    }
}
