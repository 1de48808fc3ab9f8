//! The engine's side of a test conversation: a connection (session, directory table,
//! limits) set up as the engine sets up each of its own, and the loop that drives batches
//! against a [`Peer`], as `Engine::run` does against a server.
//!
//! Every test goes through [`Pair::run`] or [`Pair::try_run`]: when the engine's inner API
//! changes, only this file needs adapting.

use std::path::PathBuf;

use super::Peer;
use crate::engine::batch::{Batch, Conn, Limits};
use crate::engine::op::{Op, OpResult};
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

/// A client connection to a [`Peer`], with a directory for the local files to upload.
pub(crate) struct Pair {
    pub(crate) peer: Peer,
    pub(crate) conn: Conn,
    local: tempfile::TempDir,
}

impl Pair {
    /// Connects to `peer`: INIT and VERSION, then the set-up `Link::setup_step` does, with
    /// small limits (writes of 1 KiB, a 16 KiB window, 8 files open) so that a few
    /// kilobytes make the orderings of a large run.
    pub(crate) fn new(mut peer: Peer) -> Pair {
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
            symlink_order: SymlinkOrder::TargetFirst,
        };
        let mut conn = Conn::new(Session::new(), limits);
        let version = peer.turn(&conn.session.take_output());
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
        Pair {
            peer,
            conn,
            local: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// A local file named `name` holding `data`, to upload.
    pub(crate) fn local(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.local.path().join(name);
        std::fs::write(&path, data).expect("a local file");
        path
    }

    /// Runs `ops` as one batch to the end, as `Engine::run` does; panics if the
    /// conversation breaks.
    pub(crate) fn run(&mut self, ops: &[Op]) -> Vec<OpResult> {
        match self.try_run(ops) {
            Ok(results) => results,
            Err(failure) => panic!("the run broke: {failure:?}\n{:#?}", self.peer.flights),
        }
    }

    /// Runs `ops` as one batch: each turn hands the replies that arrived to the batch, lets
    /// it send what it may, and gives that to the peer, whose answer arrives for the next.
    pub(crate) fn try_run(&mut self, ops: &[Op]) -> Result<Vec<OpResult>, Failure> {
        let mut batch = Batch::new(ops.iter().collect());
        let mut finished = Vec::new();
        loop {
            batch.note_failed_files(&mut self.conn);
            while let Some((tag, response)) = self.conn.session.poll_reply() {
                batch.on_reply(tag, response, &mut self.conn);
            }
            batch.advance(&mut self.conn);
            finished.extend(batch.take_finished().map(|(i, r)| (i, r.clone())));
            if batch.is_done(&self.conn) {
                return Ok(batch.into_results());
            }
            let answer = self.peer.turn(&self.conn.session.take_output());
            let broken = if answer.is_empty() {
                Some(Broken::Stalled)
            } else {
                self.conn
                    .session
                    .handle_input(&answer)
                    .err()
                    .map(Broken::Session)
            };
            if let Some(broken) = broken {
                // What arrived before the break still counts, as in the engine.
                while let Some((tag, response)) = self.conn.session.poll_reply() {
                    batch.on_reply(tag, response, &mut self.conn);
                }
                finished.extend(batch.take_finished().map(|(i, r)| (i, r.clone())));
                return Err(Failure {
                    broken,
                    finished,
                    in_flight: batch.in_flight(&self.conn),
                });
            }
        }
    }
}
