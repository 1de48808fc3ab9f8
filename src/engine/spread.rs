//! Work spread over several connections: operations shared out by the bytes they move
//! ([`spread`]), and large uploads cut into parts that several connections write at once
//! (see [`super::parts`]), then sized, confirmed and renamed into place.
//!
//! It decides what goes where; the loop that runs it is the engine's ([`Engine::run_assigned`]).
//! Local sizes come from the run's one stat of each source.

use super::link::Setup;
use super::local::{self, Locals};
use super::op::{Cause, Op, OpError, OpResult};
use super::parts;
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
        let results = self.run_in_parts(ops, on_done);
        self.locals.clear();
        results
    }

    /// [`Engine::run_spread`] within a run.
    fn run_in_parts(
        &mut self,
        ops: &[Op],
        mut on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        if self.config.connections <= 1 {
            return self.run_shared(ops, on_done);
        }
        let locals = &mut self.locals;
        let size_of = |p: &std::path::Path| locals.size(p);
        let Some(mut split) = parts::Split::new(ops, self.config.part_size.max(1), size_of) else {
            return self.run_shared(ops, on_done);
        };
        // Parts pay only where several connections share them: that takes the round trip,
        // so it is learnt first (one round trip, nothing next to 16 MiB or more of data).
        self.settle_round_trip()?;
        if self.links.len() <= 1 || !self.links[0].info.takes_offset_writes() {
            return self.run_shared(ops, on_done);
        }
        // The parts open the temporary name without EXCL: what stands there goes first.
        let clear: Vec<Op> = split
            .cut_uploads()
            .map(|i| Op::Remove {
                path: ops[i].path().temp_sibling(),
            })
            .collect();
        if self
            .run_first(&clear, |_, _| {})?
            .iter()
            .any(Result::is_err)
        {
            return self.run_shared(ops, on_done);
        }
        let work = std::mem::take(&mut split.ops);
        let mut results: Vec<Option<OpResult>> = vec![None; ops.len()];
        let mut complete = Vec::new();
        let mut again = Vec::new();
        self.run_shared(&work, |j, result| match split.on_done(j, result) {
            parts::Event::AsGiven(i) => {
                on_done(i, result);
                results[i] = Some(result.clone());
            }
            // The server refused a part (a server that cannot take writes at offsets
            // through several handles says so here): the file goes again, whole.
            parts::Event::Failed(i, Err(e)) if matches!(e.cause, Cause::Status { .. }) => {
                log::info!("{e}: sending {} whole", ops[i].path());
                again.push(i);
            }
            parts::Event::Failed(i, failure) => {
                on_done(i, &failure);
                results[i] = Some(failure);
            }
            parts::Event::Complete(i) => complete.push(i),
            parts::Event::Pending => {}
        })?;
        let finished = self.finish_parts(ops, &split, complete)?;
        for (i, result) in finished {
            on_done(i, &result);
            results[i] = Some(result);
        }
        if !again.is_empty() {
            let whole: Vec<Op> = again.iter().map(|&i| ops[i].clone()).collect();
            self.run_first(&whole, |k, result| {
                on_done(again[k], result);
                results[again[k]] = Some(result.clone());
            })?;
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every operation was reported"))
            .collect())
    }

    /// Ends the cut uploads whose parts are all in: each gets its size and time, the size is
    /// confirmed, and it is renamed into place; a failed one's temporary file is removed.
    fn finish_parts(
        &mut self,
        ops: &[Op],
        split: &parts::Split,
        complete: Vec<usize>,
    ) -> Result<Vec<(usize, OpResult)>, EngineError> {
        let as_upload = |i: usize, e: &OpError| OpError {
            op: ops[i].kind(),
            path: ops[i].path().clone(),
            cause: e.cause.clone(),
        };
        let mut out = Vec::new();
        let mut sizing = Vec::new();
        let mut owners = Vec::new();
        for i in complete {
            if self.interrupt.signal().is_some() {
                let cause = Cause::Interrupted;
                let (op, path) = (ops[i].kind(), ops[i].path().clone());
                out.push((i, Err(OpError { op, path, cause })));
                continue;
            }
            match split.finishing(&ops[i], i, local::size_now) {
                Ok(op) => {
                    sizing.push(op);
                    owners.push(i);
                }
                Err(failure) => out.push((i, failure)),
            }
        }
        let sized = self.run_first(&sizing, |_, _| {})?;
        let mut renames = Vec::new();
        let mut renamed_owners = Vec::new();
        for (k, result) in sized.into_iter().enumerate() {
            let i = owners[k];
            match result {
                Ok(_) => {
                    renames.push(Op::Rename {
                        from: ops[i].path().temp_sibling(),
                        to: ops[i].path().clone(),
                    });
                    renamed_owners.push(i);
                }
                Err(e) => out.push((i, Err(as_upload(i, &e)))),
            }
        }
        for (k, result) in self.run_first(&renames, |_, _| {})?.into_iter().enumerate() {
            let i = renamed_owners[k];
            out.push((i, result.map_err(|e| as_upload(i, &e))));
        }
        // What failed leaves no temporary file behind (best effort: the failure is reported
        // either way, and a rerun clears the name before writing it).
        let discard: Vec<Op> = out
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| Op::Remove {
                path: ops[*i].path().temp_sibling(),
            })
            .collect();
        self.run_first(&discard, |_, _| {})?;
        Ok(out)
    }

    /// [`Engine::run_spread`] with the operations as they are.
    fn run_shared(
        &mut self,
        ops: &[Op],
        on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        let ready: Vec<usize> = (0..self.links.len())
            .filter(|&k| self.links[k].setup == Setup::Ready)
            .collect();
        let mut assignment = vec![Vec::new(); self.links.len()];
        for (k, share) in ready.iter().zip(spread(ops, ready.len(), &mut self.locals)) {
            assignment[*k] = share;
        }
        self.run_assigned(ops, assignment, true, on_done)
    }
}

/// Splits operations over `n` connections, largest uploads first to the least loaded one;
/// each connection keeps them in their original order.
fn spread(ops: &[Op], n: usize, locals: &mut Locals) -> Vec<Vec<usize>> {
    let mut cost = |op: &Op| match op {
        Op::Upload { local, .. } => locals.size(local).unwrap_or(0) + 4096,
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
