//! Work spread over several connections: operations shared out by the bytes they move
//! ([`spread`]), and large uploads cut into parts that several connections write at once
//! (see [`super::parts`]), then sized, confirmed and renamed into place.
//!
//! It decides what goes where and what pass follows which; the loop that runs the passes
//! is the engine's ([`super::together`]). Local sizes come from the run's one stat of each
//! source.

use std::time::Instant;

use super::batch::Batch;
use super::link::Setup;
use super::local::{self, Locals};
use super::op::{Cause, Op, OpError, OpResult};
use super::parts;
use super::together::{self, Books, Job, Pass, Phase, Stage, first_pass};
use super::{Engine, EngineError};

impl Engine {
    /// As [`Engine::run`], but spread over all connections, balancing the bytes to upload:
    /// for operations that need no order among themselves (one server channel moves at most
    /// its window per round trip; several move several). A connection that becomes ready
    /// meanwhile takes its share of the operations not yet started. Where several
    /// connections are in use, on a server known to take writes at any offset through
    /// several handles, large uploads go in parts (see [`EngineConfig::part_size`](super::EngineConfig::part_size)); each is
    /// reported once, when all of it is confirmed and in place.
    pub fn run_spread(
        &mut self,
        ops: &[Op],
        on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        self.run_one(ops, together::Mode::Spread, on_done)
    }

    /// The large uploads of a spread run cut in parts, if several connections may share
    /// them and there are any.
    pub(super) fn split(&mut self, ops: &[Op]) -> Option<parts::Split> {
        if self.config.connections <= 1 {
            return None;
        }
        let locals = &mut self.locals;
        parts::Split::new(ops, self.config.part_size.max(1), |p| locals.size(p))
    }
}

/// A pass of `ops` spread over the connections ready now.
pub(super) fn shared_pass<'a>(
    engine: &Engine,
    ops: &'a [Op],
    locals: &'a Locals,
    phase: Phase,
) -> Stage<'a> {
    let ready: Vec<usize> = (0..engine.links.len())
        .filter(|&k| engine.links[k].setup == Setup::Ready)
        .collect();
    let mut assignment = vec![Vec::new(); engine.links.len()];
    for (k, share) in ready.iter().zip(spread(ops, ready.len(), locals)) {
        assignment[*k] = share;
    }
    Stage::Run(phase, Pass::new(ops, locals, assignment, true))
}

impl<'a> Job<'a> {
    /// Parts pay only where several connections share them: that takes the round trip,
    /// so it is learnt first (one round trip, nothing next to 16 MiB or more of data).
    pub(super) fn settle(&mut self, engine: &mut Engine) -> Stage<'a> {
        if engine.more_considered {
            return self.after_settle(engine);
        }
        engine.links[0].ask_limits(Instant::now());
        Stage::Settle(Batch::new(Vec::new(), self.locals))
    }

    /// With the round trip known: the parts, if several connections share them.
    pub(super) fn after_settle(&mut self, engine: &Engine) -> Stage<'a> {
        if engine.links.len() <= 1 || !engine.links[0].info.takes_offset_writes() {
            return shared_pass(engine, self.ops, self.locals, Phase::Plain);
        }
        // The parts open the temporary name without EXCL: what stands there goes first.
        let (ops, split) = (self.ops, self.books.split.as_ref().expect("cut"));
        let clear = self.store.clear.get_or_init(|| {
            split
                .cut_uploads()
                .map(|i| Op::Remove {
                    path: ops[i].path().temp_sibling(),
                })
                .collect()
        });
        first_pass(engine, clear, self.locals, Phase::Clear)
    }

    pub(super) fn after_clear(&mut self, engine: &Engine, results: &[OpResult]) -> Stage<'a> {
        if results.iter().any(Result::is_err) {
            return shared_pass(engine, self.ops, self.locals, Phase::Plain);
        }
        let split = self.books.split.as_mut().expect("cut");
        let work = self
            .store
            .work
            .get_or_init(|| std::mem::take(&mut split.ops));
        self.books.results = vec![None; self.ops.len()];
        shared_pass(engine, work, self.locals, Phase::Parts)
    }

    /// The cut uploads whose parts are all in get their size and time.
    pub(super) fn after_parts(&mut self, engine: &Engine) -> Stage<'a> {
        let (ops, books) = (self.ops, &mut self.books);
        let split = books.split.as_ref().expect("cut");
        let mut sizing = Vec::new();
        for i in std::mem::take(&mut books.complete) {
            if engine.interrupt.signal().is_some() {
                let cause = Cause::Interrupted;
                let (op, path) = (ops[i].kind(), ops[i].path().clone());
                books.finished.push((i, Err(OpError { op, path, cause })));
                continue;
            }
            match split.finishing(&ops[i], i, local::size_now) {
                Ok(op) => {
                    sizing.push(op);
                    books.owners.push(i);
                }
                Err(failure) => books.finished.push((i, failure)),
            }
        }
        let sizing = self.store.sizing.get_or_init(|| sizing);
        first_pass(engine, sizing, self.locals, Phase::Sizing)
    }

    /// The size is confirmed: each is renamed into place.
    pub(super) fn after_sizing(&mut self, engine: &Engine, sized: Vec<OpResult>) -> Stage<'a> {
        let (ops, books) = (self.ops, &mut self.books);
        let mut renames = Vec::new();
        let mut renamed = Vec::new();
        for (k, result) in sized.into_iter().enumerate() {
            let i = books.owners[k];
            match result {
                Ok(_) => {
                    renames.push(Op::Rename {
                        from: ops[i].path().temp_sibling(),
                        to: ops[i].path().clone(),
                    });
                    renamed.push(i);
                }
                Err(e) => books.finished.push((i, Err(as_upload(ops, i, &e)))),
            }
        }
        books.owners = renamed;
        let renames = self.store.renames.get_or_init(|| renames);
        first_pass(engine, renames, self.locals, Phase::Renames)
    }

    /// What failed leaves no temporary file behind (best effort: the failure is reported
    /// either way, and a rerun clears the name before writing it).
    pub(super) fn after_renames(&mut self, engine: &Engine, renamed: Vec<OpResult>) -> Stage<'a> {
        let (ops, books) = (self.ops, &mut self.books);
        for (k, result) in renamed.into_iter().enumerate() {
            let i = books.owners[k];
            books
                .finished
                .push((i, result.map_err(|e| as_upload(ops, i, &e))));
        }
        let discard: Vec<Op> = books
            .finished
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| Op::Remove {
                path: ops[*i].path().temp_sibling(),
            })
            .collect();
        let discard = self.store.discard.get_or_init(|| discard);
        first_pass(engine, discard, self.locals, Phase::Discard)
    }

    /// The cut uploads are reported; those whose parts the server refused go again whole.
    pub(super) fn after_discard(
        &mut self,
        engine: &Engine,
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) -> Stage<'a> {
        let books = &mut self.books;
        for (i, result) in std::mem::take(&mut books.finished) {
            on_done(i, &result);
            books.results[i] = Some(result);
        }
        if books.again.is_empty() {
            return self.collect();
        }
        let ops = self.ops;
        let whole = self
            .store
            .whole
            .get_or_init(|| books.again.iter().map(|&i| ops[i].clone()).collect());
        first_pass(engine, whole, self.locals, Phase::Whole)
    }

    /// Every operation given has its result.
    pub(super) fn collect(&mut self) -> Stage<'a> {
        let results = std::mem::take(&mut self.books.results);
        Stage::Done(Ok(results
            .into_iter()
            .map(|r| r.expect("every operation was reported"))
            .collect()))
    }
}

impl Books {
    /// Operation `j` of the current pass finished: what that means for the operations
    /// given (`ops`), reported to `on_done` by their index.
    pub(super) fn on_op(
        &mut self,
        phase: Phase,
        ops: &[Op],
        j: usize,
        result: &OpResult,
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) {
        match phase {
            Phase::Plain => on_done(j, result),
            Phase::Parts => self.on_part(ops, j, result, on_done),
            Phase::Whole => {
                let i = self.again[j];
                on_done(i, result);
                self.results[i] = Some(result.clone());
            }
            Phase::Clear | Phase::Sizing | Phase::Renames | Phase::Discard => {}
        }
    }

    fn on_part(
        &mut self,
        ops: &[Op],
        j: usize,
        result: &OpResult,
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) {
        let split = self.split.as_mut().expect("cut");
        match split.on_done(j, result) {
            parts::Event::AsGiven(i) => {
                on_done(i, result);
                self.results[i] = Some(result.clone());
            }
            // The server refused a part (a server that cannot take writes at offsets
            // through several handles says so here): the file goes again, whole.
            parts::Event::Failed(i, Err(e)) if matches!(e.cause, Cause::Status { .. }) => {
                log::info!("{e}: sending {} whole", ops[i].path());
                self.again.push(i);
            }
            parts::Event::Failed(i, failure) => {
                on_done(i, &failure);
                self.results[i] = Some(failure);
            }
            parts::Event::Complete(i) => self.complete.push(i),
            parts::Event::Pending => {}
        }
    }
}

/// A step of finishing upload `i` failed: the upload failed, for the same cause.
fn as_upload(ops: &[Op], i: usize, e: &OpError) -> OpError {
    OpError {
        op: ops[i].kind(),
        path: ops[i].path().clone(),
        cause: e.cause.clone(),
    }
}

/// Splits operations over `n` connections, largest uploads first to the least loaded one;
/// each connection keeps them in their original order. Sizes are those the run stat'ed.
fn spread(ops: &[Op], n: usize, locals: &Locals) -> Vec<Vec<usize>> {
    let cost = |op: &Op| match op {
        Op::Upload { local, .. } => {
            locals
                .known(local)
                .and_then(Result::ok)
                .map_or(0, |f| f.size)
                + 4096
        }
        Op::UploadPart { range, .. } => range.end - range.start + 4096,
        _ => 4096,
    };
    let mut by_cost: Vec<(u64, usize)> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| (cost(op), i))
        .collect();
    by_cost.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut load = vec![0u64; n];
    let mut out = vec![Vec::new(); n];
    for (c, i) in by_cost {
        let k = (0..n)
            .min_by_key(|&k| load[k])
            .expect("at least one connection");
        load[k] += c;
        out[k].push(i);
    }
    for list in &mut out {
        list.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::engine::op::{Outcome, Req, Status};
    use crate::remote_path::RemotePath;

    fn upload(name: &str) -> Op {
        Op::Upload {
            local: PathBuf::from(name),
            remote: RemotePath::new(format!("/r/{name}")).unwrap(),
            fsync: false,
            mtime: None,
        }
    }

    /// "big" is cut in three parts of 10, "small" goes as given.
    fn books(ops: &[Op]) -> Books {
        let size = |p: &std::path::Path| Some(if p.ends_with("big") { 25 } else { 5 });
        Books {
            split: parts::Split::new(ops, 10, size),
            results: vec![None; ops.len()],
            ..Books::default()
        }
    }

    fn refused(op: &Op) -> OpResult {
        Err(OpError {
            op: op.kind(),
            path: op.path().clone(),
            cause: Cause::Status {
                request: Req::Write,
                code: Status::PermissionDenied,
                message: String::new(),
            },
        })
    }

    #[test]
    fn parts_report_uploads_as_given_at_once_and_cut_ones_once_all_parts_are_in() {
        let ops = [upload("small"), upload("big")];
        let mut books = books(&ops);
        let work = books.split.as_ref().unwrap().ops.clone();
        assert_eq!(work.len(), 4, "small, then big's three parts");
        let heard = std::cell::RefCell::new(Vec::new());
        let mut on_done = |i: usize, r: &OpResult| heard.borrow_mut().push((i, r.clone()));
        books.on_op(Phase::Parts, &ops, 2, &Ok(Outcome::Done), &mut on_done);
        books.on_op(Phase::Parts, &ops, 0, &Ok(Outcome::Done), &mut on_done);
        books.on_op(Phase::Parts, &ops, 1, &Ok(Outcome::Done), &mut on_done);
        assert!(books.complete.is_empty(), "a part of big is still out");
        books.on_op(Phase::Parts, &ops, 3, &Ok(Outcome::Done), &mut on_done);
        assert_eq!(*heard.borrow(), [(0, Ok(Outcome::Done))]);
        assert_eq!(books.results[0], Some(Ok(Outcome::Done)));
        assert_eq!(books.complete, [1], "big needs its size, then its rename");
        assert_eq!(books.results[1], None, "not reported before it is in place");
    }

    #[test]
    fn a_refused_part_sends_the_upload_again_whole_and_reports_it_by_its_own_index() {
        let ops = [upload("small"), upload("big")];
        let mut books = books(&ops);
        let heard = std::cell::RefCell::new(Vec::new());
        let mut on_done = |i: usize, r: &OpResult| heard.borrow_mut().push((i, r.clone()));
        for j in 1..4 {
            let result = if j == 2 {
                refused(&ops[1])
            } else {
                Ok(Outcome::Done)
            };
            books.on_op(Phase::Parts, &ops, j, &result, &mut on_done);
        }
        assert!(
            heard.borrow().is_empty(),
            "a refused part is no failure of the upload yet"
        );
        assert_eq!(books.again, [1]);
        assert!(books.complete.is_empty());
        // Sent whole, it is the first (and only) operation of its pass.
        books.on_op(Phase::Whole, &ops, 0, &Ok(Outcome::Done), &mut on_done);
        assert_eq!(*heard.borrow(), [(1, Ok(Outcome::Done))]);
        assert_eq!(books.results[1], Some(Ok(Outcome::Done)));
        // Clearing, sizes, renames and clean-up report nothing by themselves.
        for phase in [Phase::Clear, Phase::Sizing, Phase::Renames, Phase::Discard] {
            books.on_op(phase, &ops, 0, &refused(&ops[0]), &mut on_done);
        }
        assert_eq!(heard.borrow().len(), 1);
    }

    #[test]
    fn spread_balances_the_bytes_by_the_sizes_the_run_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let mut locals = Locals::default();
        let mut ops = Vec::new();
        for (i, size) in [900_000usize, 100_000, 400_000, 500_000]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, vec![0; size]).unwrap();
            let _ = locals.stat(&path);
            ops.push(Op::Upload {
                local: path,
                remote: RemotePath::new(format!("/r/f{i}")).unwrap(),
                fsync: false,
                mtime: None,
            });
        }
        // Largest first to the least loaded: 900k, then 500k and 400k beside it, then 100k.
        assert_eq!(spread(&ops, 2, &locals), [vec![0, 1], vec![2, 3]]);
        // Sizes not stat'ed count as nothing: all alike, they alternate.
        let unknown = Locals::default();
        assert_eq!(spread(&ops, 2, &unknown), [vec![0, 2], vec![1, 3]]);
    }
}
