//! The engine's side of a test conversation: a connection (session, directory table,
//! limits) set up as the engine sets up each of its own, and the loop that drives batches
//! against a [`Peer`], as `Engine::run` does against a server.
//!
//! Every test goes through [`Pair::run`] or [`Pair::try_run`]: when the engine's inner API
//! changes, only this file needs adapting.

use std::path::PathBuf;

use super::Peer;
use crate::engine::batch::{Batch, Conn, Limits};
use crate::engine::local::Locals;
use crate::engine::op::{Op, OpResult};
use crate::engine::parts::{Event, Split};
use crate::remote_path::RemotePath;
use crate::sftp::session::{Session, SessionError};
use crate::sftp::wire::SymlinkOrder;

/// The target directory of every test conversation.
pub(crate) const ROOT: &str = "/m";

/// How a run ended early.
#[derive(Debug)]
pub(crate) enum Broken {
    /// The session refused what the server sent.
    Session(SessionError),
    /// Requests are in flight and the server will answer none of them (or, with nothing
    /// in flight, the batch waits for nothing: a hang).
    Stalled,
}

/// A run that ended early: why, what had finished, and what was in flight.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) broken: Broken,
    pub(crate) finished: Vec<(usize, OpResult)>,
    pub(crate) in_flight: Vec<String>,
}

/// Client connections to a [`Peer`] (one, unless [`Pair::connect_another`] adds more),
/// with a directory for the local files to upload.
pub(crate) struct Pair {
    pub(crate) peer: Peer,
    conns: Vec<Conn>,
    local: tempfile::TempDir,
}

/// INIT and VERSION on connection `k` of `peer`, then the set-up `Link::setup_step` does,
/// with small limits (writes of 1 KiB, a 16 KiB window, 8 files open) so that a few
/// kilobytes make the orderings of a large run.
fn connect(peer: &mut Peer, k: usize) -> Conn {
    let limits = Limits {
        max_open_files: 8,
        max_requests: 64,
        window: 16 * 1024,
        write_chunk: 1024,
        read_chunk: 1024,
        in_order: false,
        posix_rename: false,
        fsync: false,
        set_times: true,
        times_by_path: false,
        symlink_order: SymlinkOrder::TargetFirst,
        // The peer reads SYMLINK as OpenSSH does, whatever its flavour.
        symlinks: crate::engine::symlinks::SymlinkTrust::Known,
    };
    let mut conn = Conn::new(Session::new(), limits);
    let version = peer.turn(k, &conn.take_output());
    conn.session.handle_input(&version).expect("VERSION");
    let info = conn.session.server_info().expect("VERSION arrived").clone();
    let limits = &mut conn.limits;
    limits.posix_rename = info.has_posix_rename();
    limits.fsync = info.has_fsync();
    limits.symlink_order = info.symlink_order();
    limits.in_order = info.is_openssh();
    conn.dirs.in_order = limits.in_order;
    let root = RemotePath::new(ROOT).expect("a remote path");
    conn.dirs.base = Some(root.clone());
    conn.dirs.confine.base = Some(root);
    conn.dirs.confine.realpath_resolves_links = info.has_limits();
    conn.dirs.confine.ask_root(&mut conn.session);
    conn
}

impl Pair {
    pub(crate) fn new(mut peer: Peer) -> Pair {
        let conn = connect(&mut peer, 0);
        Pair {
            peer,
            conns: vec![conn],
            local: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// Opens one more connection to the same peer (see [`Pair::run_spread`]).
    pub(crate) fn connect_another(&mut self) {
        let k = self.conns.len();
        self.conns.push(connect(&mut self.peer, k));
    }

    /// The first connection, which [`Pair::run`] uses.
    pub(crate) fn conn(&self) -> &Conn {
        &self.conns[0]
    }

    /// A local file named `name` holding `data`, to upload.
    pub(crate) fn local(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.local.path().join(name);
        std::fs::write(&path, data).expect("a local file");
        path
    }

    /// Runs `ops` as one batch on the first connection to the end, as `Engine::run` does;
    /// panics if the conversation breaks.
    pub(crate) fn run(&mut self, ops: &[Op]) -> Vec<OpResult> {
        match self.try_run(ops) {
            Ok(results) => results,
            Err(failure) => panic!("the run broke: {failure:?}\n{:#?}", self.peer.flights),
        }
    }

    /// Runs `ops` as one batch on the first connection.
    /// What [`crate::engine::Engine::stand_ins_left`] says of these connections.
    pub(crate) fn stand_ins_left(&self) -> Vec<String> {
        let left = self.conns.iter().flat_map(|c| c.dirs.stand_ins_left());
        left.map(|p| p.to_string()).collect()
    }

    pub(crate) fn try_run(&mut self, ops: &[Op]) -> Result<Vec<OpResult>, Failure> {
        let locals = Locals::default();
        let mut batches = vec![Batch::new(ops.iter().collect(), &locals)];
        let mut finished = Vec::new();
        match self.drive(&mut batches, &mut finished) {
            Ok(()) => Ok(batches.pop().expect("one batch").into_results()),
            Err(broken) => Err(Failure {
                broken,
                finished: finished.into_iter().map(|(_, i, r)| (i, r)).collect(),
                in_flight: batches[0].in_flight(&self.conns[0]),
            }),
        }
    }

    /// Runs `shares[k]` on connection `k`, all at once, each as one batch, the turns of
    /// the connections taken in turn; panics if a conversation breaks.
    pub(crate) fn run_spread(&mut self, shares: &[Vec<Op>]) -> Vec<Vec<OpResult>> {
        let locals = Locals::default();
        let mut batches: Vec<Batch<'_>> = shares
            .iter()
            .map(|ops| Batch::new(ops.iter().collect(), &locals))
            .collect();
        if let Err(broken) = self.drive(&mut batches, &mut Vec::new()) {
            panic!("the run broke: {broken:?}\n{:#?}", self.peer.flights);
        }
        batches.into_iter().map(Batch::into_results).collect()
    }

    /// Uploads `op` cut into parts of `part_size`, spread over the connections as
    /// `Engine::run_spread` and `Engine::finish_parts` do it: the temporary name cleared,
    /// part `j` written on connection `j % n`, then the size (and time) set and confirmed,
    /// then the rename into place. A failed part is the result (where the engine would
    /// send the file again whole).
    pub(crate) fn upload_in_parts(&mut self, op: &Op, part_size: u64) -> OpResult {
        let size_of = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.len());
        let given = std::slice::from_ref(op);
        let mut split = Split::new(given, part_size, size_of).expect("large enough to cut");
        let temporary = op.path().temp_sibling();
        let clear = Op::Remove {
            path: temporary.clone(),
        };
        self.run(&[clear]).remove(0)?;
        let n = self.conns.len();
        let mut shares = vec![Vec::new(); n];
        for (j, part) in split.ops.iter().enumerate() {
            shares[j % n].push(part.clone());
        }
        let results = self.run_spread(&shares);
        let mut event = Event::Pending;
        for j in 0..split.ops.len() {
            event = split.on_done(j, &results[j % n][j / n]);
        }
        match event {
            Event::Complete(0) => {}
            Event::Failed(0, failure) => return failure,
            other => panic!("the parts of one upload ended in {other:?}"),
        }
        let sizing = split
            .finishing(op, 0, size_of)
            .unwrap_or_else(|e| panic!("{e:?}"));
        self.run(&[sizing]).remove(0)?;
        let to = op.path().clone();
        self.run(&[Op::Rename {
            from: temporary,
            to,
        }])
        .remove(0)
    }

    /// Turns until every batch is done, as `Engine::run_assigned` does: each turn hands a
    /// connection's replies to its batch, lets it send what it may, and gives that to the
    /// peer, whose answer arrives for the next turn. `finished` hears of each operation
    /// (connection, index, result) as it finishes.
    fn drive(
        &mut self,
        batches: &mut [Batch<'_>],
        finished: &mut Vec<(usize, usize, OpResult)>,
    ) -> Result<(), Broken> {
        loop {
            let mut all_done = true;
            for (k, batch) in batches.iter_mut().enumerate() {
                let conn = &mut self.conns[k];
                let broken = turn(&mut self.peer, k, batch, conn, finished);
                if broken.is_some() {
                    // What arrived before the break still counts, as in the engine.
                    take_replies(batch, conn);
                    finished.extend(batch.take_finished().map(|(i, r)| (k, i, r.clone())));
                }
                if let Some(broken) = broken {
                    return Err(broken);
                }
                all_done &= batch.is_done(conn);
            }
            if all_done {
                return Ok(());
            }
        }
    }
}

fn take_replies(batch: &mut Batch<'_>, conn: &mut Conn) {
    batch.note_failed_files(conn);
    while let Some((tag, response)) = conn.session.poll_reply() {
        batch.on_reply(tag, response, conn);
    }
}

/// One turn of connection `k`; `Some` if its conversation broke.
fn turn(
    peer: &mut Peer,
    k: usize,
    batch: &mut Batch<'_>,
    conn: &mut Conn,
    finished: &mut Vec<(usize, usize, OpResult)>,
) -> Option<Broken> {
    take_replies(batch, conn);
    // As `Engine::run_assigned` does once its interrupt has fired.
    if peer.signalled {
        batch.interrupt(conn);
    }
    batch.advance(conn);
    finished.extend(batch.take_finished().map(|(i, r)| (k, i, r.clone())));
    if batch.is_done(conn) {
        return None;
    }
    let answer = peer.turn(k, &conn.take_output());
    if answer.is_empty() {
        return Some(Broken::Stalled);
    }
    conn.session
        .handle_input(&answer)
        .err()
        .map(Broken::Session)
}
