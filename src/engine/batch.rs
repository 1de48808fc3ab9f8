//! One batch of operations, each an explicit state machine driven by replies, and the
//! scheduling within one connection: which operation starts, which upload gets the window,
//! where each reply goes. The state machines are in `upload` (a file written under its
//! temporary name and renamed into place), `single` (operations of one request or a few in
//! a row) and [`super::reading`] (listings, comparisons). It queues requests on a
//! [`Session`] and is told each reply; the engine moves the bytes.
//!
//! No I/O of its own and no clock: a source's size and mode come from the run's one stat
//! ([`Locals`]), its file is opened, read and closed through the connection's [`Sources`]
//! (the engine's edge, `local`), and nothing here waits or measures time.
//!
//! Limits kept here: at most `max_open_files` remote handles, at most `max_requests`
//! requests and `window` WRITE bytes outstanding. Handles are closed on every path, errors
//! included, and a batch is only over once no request of it is in flight.

mod single;
mod upload;

use std::collections::{BTreeSet, VecDeque};

use single::Stepwise;
use upload::{Stage, Upload};

use super::dirs::{DirTable, Ensure, Waiter};
use super::local::{Locals, Sources};
use super::op::{Cause, Op, OpError, OpResult, Outcome, Req, Tag};
use super::reading::{CompareRun, ListRun, Step};
use crate::sftp::session::Session;
use crate::sftp::wire::{Attrs, ExtendedRequest, Request, Response, StatusCode};

/// A directory's failure, as an operation that needed it reports it.
fn in_dir(dir: &crate::remote_path::RemotePath, cause: Cause) -> Cause {
    match cause {
        // A directory above failed: that one is named, the cause.
        Cause::Directory { .. } => cause,
        cause => Cause::Directory {
            dir: dir.clone(),
            cause: Box::new(cause),
        },
    }
}

/// What the connection offers and what we allow ourselves on it.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_open_files: usize,
    pub max_requests: usize,
    pub window: u64,
    pub write_chunk: u32,
    pub read_chunk: u32,
    /// The server answers requests strictly in the order they were sent (OpenSSH's does),
    /// so a request may follow one it depends on without waiting for its reply.
    pub in_order: bool,
    pub posix_rename: bool,
    pub fsync: bool,
    /// The modification time is set (until the server refuses it).
    pub set_times: bool,
    /// By path (SETSTAT of the temporary name) rather than by handle (FSETSTAT): the
    /// server would not take an FSETSTAT.
    pub times_by_path: bool,
    pub symlink_order: crate::sftp::wire::SymlinkOrder,
    /// Whether `symlink_order` is known to be how the server reads SYMLINK.
    pub symlinks: super::symlinks::SymlinkTrust,
}

/// Counters over a run, for tests and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub files_uploaded: u64,
    pub bytes_uploaded: u64,
    pub mkdirs_sent: u64,
    /// Parts of large uploads written (see [`EngineConfig::part_size`](super::EngineConfig::part_size)).
    pub parts_uploaded: u64,
    /// The most remote file handles that were open at once.
    pub max_open_files_seen: usize,
}

/// The connection state a batch works on.
pub(crate) struct Conn {
    pub session: Session<Tag>,
    /// The local files its operations hold open (uploads, comparisons).
    pub sources: Sources,
    pub dirs: DirTable,
    pub limits: Limits,
    pub stats: Stats,
    /// Several connections share the work, or more may come: start uploads only while those
    /// under way have less
    /// than a window left to send, so that the others find work (see [`Batch::hungry`]).
    pub hold_back: bool,
    open_files: usize,
    bytes_in_flight: u64,
}

impl Conn {
    pub(crate) fn new(session: Session<Tag>, limits: Limits) -> Conn {
        Conn {
            session,
            sources: Sources::default(),
            dirs: DirTable::default(),
            limits,
            stats: Stats::default(),
            hold_back: false,
            open_files: 0,
            bytes_in_flight: 0,
        }
    }

    /// Everything its session queued, taken as if written, file data read from its
    /// sources as the transport would: for tests that play the server.
    #[cfg(test)]
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        let (session, sources) = (&mut self.session, &self.sources);
        session.take_output_with(|source, offset, len| sources.read(source, offset, len))
    }

    fn room_for_request(&self) -> bool {
        self.session.in_flight() < self.limits.max_requests
    }

    fn take_handle(&mut self) {
        self.open_files += 1;
        self.stats.max_open_files_seen = self.stats.max_open_files_seen.max(self.open_files);
    }
}

enum State {
    NotStarted,
    Upload(Box<Upload>),
    Single(Stepwise),
    /// A Mkdir operation waiting for its directory.
    WaitingDir,
    /// A symlink waiting for its parent directory before it is sent again.
    LinkWaitingDir,
    /// Waiting to know whether its directory is inside the target (see [`super::confine`]),
    /// or, known, for the operations started before it (`Some`: the verdict).
    Confining(Option<Result<(), Cause>>),
    List(Box<ListRun>),
    Compare(Box<CompareRun>),
    Finished,
}

/// Operations that hold a remote handle while they run, and so count against the limit.
fn needs_handle(op: &Op) -> bool {
    matches!(
        op,
        Op::Upload { .. } | Op::UploadPart { .. } | Op::List { .. } | Op::Compare { .. }
    )
}

/// How many operations beyond those started have their new directories made ahead.
const DIRS_AHEAD: usize = 2048;

/// A set of operations run together, in any order the server answers them.
pub(crate) struct Batch<'a> {
    ops: Vec<&'a Op>,
    /// The run's local sources, each stat'ed once before the batch started.
    locals: &'a Locals,
    states: Vec<State>,
    next_to_start: usize,
    /// Uploads whose directory now exists, waiting for a handle slot; served first.
    reopen: VecDeque<usize>,
    /// Uploads with data left to send, in the order they started: the oldest file gets the
    /// window first, so files complete (and are journalled) early.
    writers: BTreeSet<usize>,
    /// Comparisons with ranges left to read.
    readers: BTreeSet<usize>,
    results: Vec<Option<OpResult>>,
    finished: Vec<usize>,
    unfinished: usize,
    /// Bytes of the started uploads not yet sent.
    unsent: u64,
    /// Uploads started and not finished: each holds its local file open.
    files_held: usize,
    /// Removals, renames and symlinks waiting for their directory's verdict, or behind one
    /// that does, in the order they were started.
    confining: VecDeque<usize>,
    /// Asked to stop: nothing new starts, uploads send no more data.
    interrupted: bool,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(ops: Vec<&'a Op>, locals: &'a Locals) -> Batch<'a> {
        Batch {
            locals,
            states: ops.iter().map(|_| State::NotStarted).collect(),
            next_to_start: 0,
            reopen: VecDeque::new(),
            writers: BTreeSet::new(),
            readers: BTreeSet::new(),
            results: ops.iter().map(|_| None).collect(),
            finished: Vec::new(),
            unfinished: ops.len(),
            unsent: 0,
            files_held: 0,
            confining: VecDeque::new(),
            interrupted: false,
            ops,
        }
    }

    pub(crate) fn is_done(&self, conn: &Conn) -> bool {
        self.unfinished == 0 && conn.session.in_flight() == 0
    }

    /// Operations finished since the last call, for the caller to report (journal) at once.
    pub(crate) fn take_finished(&mut self) -> impl Iterator<Item = (usize, &OpResult)> {
        let done = std::mem::take(&mut self.finished);
        done.into_iter()
            .map(|i| (i, self.results[i].as_ref().expect("finished has a result")))
    }

    pub(crate) fn into_results(self) -> Vec<OpResult> {
        self.results
            .into_iter()
            .map(|r| r.expect("batch ran to completion"))
            .collect()
    }

    /// A description of operation `i`, for messages about what was in flight.
    pub(crate) fn describe(&self, i: usize) -> String {
        match self.ops.get(i) {
            Some(op) => format!("{} {}", op.kind(), op.path()),
            // A request an earlier run left in flight when its connection broke.
            None => "an operation of an earlier run".into(),
        }
    }

    /// How many operations have not started.
    pub(crate) fn unstarted(&self) -> usize {
        self.ops.len() - self.next_to_start
    }

    /// Whether the batch would start another upload if it had one (see [`Conn::hold_back`]).
    pub(crate) fn hungry(&self, conn: &Conn) -> bool {
        !self.interrupted
            && self.unstarted() == 0
            && self.unsent < conn.limits.window
            && conn.open_files < conn.limits.max_open_files
            && self.files_held < conn.limits.max_open_files
            && conn.room_for_request()
    }

    /// Adds an operation (one another connection gave up).
    pub(crate) fn push(&mut self, op: &'a Op) {
        self.ops.push(op);
        self.states.push(State::NotStarted);
        self.results.push(None);
        self.unfinished += 1;
    }

    /// Gives up the last `n` operations (at most those not started), for another connection
    /// to run; returns how many the batch keeps.
    pub(crate) fn split_off_unstarted(&mut self, n: usize) -> usize {
        let keep = self.ops.len() - n.min(self.unstarted());
        self.unfinished -= self.ops.len() - keep;
        self.ops.truncate(keep);
        self.states.truncate(keep);
        self.results.truncate(keep);
        keep
    }

    fn finish(&mut self, i: usize, result: OpResult, conn: &mut Conn) {
        match &self.states[i] {
            State::Upload(u) => {
                self.unsent -= u.size.saturating_sub(u.next_offset);
                self.files_held -= 1;
                conn.sources.close(u.source);
            }
            State::Compare(run) => conn.sources.close(run.source()),
            _ => {}
        }
        if let (Ok(_), State::Upload(u)) = (&result, &self.states[i]) {
            // A file counts once, with its first part.
            if u.start == 0 {
                conn.stats.files_uploaded += 1;
            }
            conn.stats.bytes_uploaded += u.size - u.start;
            if !u.whole {
                conn.stats.parts_uploaded += 1;
            }
        }
        self.states[i] = State::Finished;
        self.writers.remove(&i);
        self.readers.remove(&i);
        self.results[i] = Some(result);
        self.finished.push(i);
        self.unfinished -= 1;
    }

    fn fail(&mut self, i: usize, cause: Cause, conn: &mut Conn) {
        let op = &self.ops[i];
        let err = OpError {
            op: op.kind(),
            path: op.path().clone(),
            cause,
        };
        self.finish(i, Err(err), conn);
    }

    /// Stops the batch: operations not started fail as interrupted, uploads stop sending
    /// data and close their handles; requests in flight are answered and count as usual, and
    /// multi-step operations already under way (a rename after its REMOVE) are completed.
    pub(crate) fn interrupt(&mut self, conn: &mut Conn) {
        if self.interrupted {
            return;
        }
        self.interrupted = true;
        for i in self.next_to_start..self.ops.len() {
            self.fail(i, Cause::Interrupted, conn);
        }
        self.next_to_start = self.ops.len();
        self.advance(conn);
    }

    /// Starts what the limits allow and sends the data they allow.
    pub(crate) fn advance(&mut self, conn: &mut Conn) {
        if self.interrupted {
            while let Some(i) = self.reopen.pop_front() {
                self.fail(i, Cause::Interrupted, conn);
            }
            self.pump_writes(conn);
            return;
        }
        while let Some(&i) = self.reopen.front() {
            if conn.open_files >= conn.limits.max_open_files || !conn.room_for_request() {
                break;
            }
            self.reopen.pop_front();
            self.resume_upload(i, conn);
        }
        while self.next_to_start < self.ops.len() && conn.room_for_request() {
            let i = self.next_to_start;
            // Every upload started holds its local file open, whether its remote one is open
            // yet or it waits (for its directory's verdict, or its MKDIR): the limit counts
            // both, so that local descriptors never run out.
            if needs_handle(self.ops[i])
                && (conn.open_files >= conn.limits.max_open_files
                    || self.files_held >= conn.limits.max_open_files)
            {
                break;
            }
            if conn.hold_back && self.unsent >= conn.limits.window {
                break;
            }
            self.next_to_start += 1;
            self.start(i, conn);
        }
        if conn.dirs.tree_open() {
            self.make_dirs_ahead(conn);
        }
        // The new trees the turn's operations need, each in one flight.
        conn.dirs.flush(&mut conn.session);
        self.pump_writes(conn);
    }

    /// While a new tree is still to be sent (see `dirs::staging`, in-order servers only),
    /// makes the new directories the next uploads will need below it, before those uploads
    /// start (they wait for open-file slots): they join the tree's flight instead of costing
    /// a MKDIR each when their uploads come. Only below directories this run makes: nothing
    /// is asked about a directory no upload has started into.
    fn make_dirs_ahead(&mut self, conn: &mut Conn) {
        let end = self.ops.len().min(self.next_to_start + DIRS_AHEAD);
        for &op in &self.ops[self.next_to_start..end] {
            if !matches!(op, Op::Upload { .. }) {
                continue;
            }
            if let Some(dir) = op.path().parent()
                && conn.dirs.known_missing(&dir)
            {
                conn.dirs.ensure_ahead(&dir, &mut conn.session);
            }
        }
    }

    /// Starts operation `i`: its first requests go out, or it waits for what it needs.
    fn start(&mut self, i: usize, conn: &mut Conn) {
        match &self.ops[i] {
            Op::Upload { local, .. } | Op::UploadPart { local, .. } => {
                self.start_upload(i, local, conn)
            }
            Op::SetSize { path, size, mtime } => {
                self.states[i] = State::Single(Stepwise::Final);
                conn.session.send(
                    Request::Setstat {
                        path: path.as_bytes().to_vec(),
                        attrs: Attrs {
                            size: Some(*size),
                            times: mtime.map(|t| (t, t)),
                            ..Attrs::default()
                        },
                    },
                    Tag::op(i, Req::Setstat),
                );
            }
            Op::Remove { path }
            | Op::Rmdir { path }
            | Op::Rename { to: path, .. }
            | Op::Hardlink { to: path, .. }
            | Op::Symlink { link: path, .. } => self.start_changing(i, path, conn),
            Op::List { path } => {
                conn.take_handle();
                self.states[i] = State::List(Box::new(ListRun::start(
                    i,
                    path.as_bytes(),
                    &mut conn.session,
                )));
            }
            Op::Compare { local, remote } => {
                let (session, sources) = (&mut conn.session, &mut conn.sources);
                match CompareRun::start(i, local, remote.as_bytes(), session, sources) {
                    Ok(run) => {
                        conn.take_handle();
                        self.states[i] = State::Compare(Box::new(run));
                    }
                    Err(cause) => self.fail(i, cause, conn),
                }
            }
            Op::Readlink { path } => {
                self.states[i] = State::Single(Stepwise::Final);
                conn.session.send(
                    Request::Readlink {
                        path: path.as_bytes().to_vec(),
                    },
                    Tag::op(i, Req::Readlink),
                );
            }
            Op::Stat { path } => {
                self.states[i] = State::Single(Stepwise::Final);
                conn.session.send(
                    Request::Stat {
                        path: path.as_bytes().to_vec(),
                    },
                    Tag::op(i, Req::Stat),
                );
            }
            Op::Statvfs { path } => {
                self.states[i] = State::Single(Stepwise::Final);
                conn.session.send_extended(
                    ExtendedRequest::Statvfs {
                        path: path.as_bytes().to_vec(),
                    },
                    Tag::op(i, Req::Statvfs),
                );
            }
            Op::Mkdir { path } => match conn.dirs.ensure(path, Waiter::Op(i), &mut conn.session) {
                Ensure::Ready => self.finish(i, Ok(Outcome::Done), conn),
                Ensure::Queued => self.states[i] = State::WaitingDir,
                Ensure::Failed(cause) => self.fail(i, in_dir(path, cause), conn),
            },
        }
    }

    /// Sends READs for the comparisons with ranges left, within the same limits as WRITEs.
    fn pump_reads(&mut self, conn: &mut Conn) {
        let readers: Vec<usize> = self.readers.iter().copied().collect();
        for i in readers {
            let State::Compare(run) = &mut self.states[i] else {
                self.readers.remove(&i);
                continue;
            };
            let (window, max_requests) = (conn.limits.window, conn.limits.max_requests);
            let mut budget = conn.bytes_in_flight;
            run.pump(i, conn.limits.read_chunk, &mut conn.session, |len, s| {
                let room = budget < window && s.in_flight() < max_requests;
                if room {
                    budget += len;
                }
                room
            });
            conn.bytes_in_flight += run.take_requested();
            if !run.wants_reads() {
                self.readers.remove(&i);
            }
            if conn.bytes_in_flight >= window {
                break;
            }
        }
    }

    /// Routes one reply of this batch.
    pub(crate) fn on_reply(&mut self, tag: Tag, response: Response, conn: &mut Conn) {
        match tag {
            Tag::Op {
                op,
                req,
                bytes,
                offset,
            } => {
                if matches!(req, Req::Write | Req::Read) {
                    conn.bytes_in_flight -= u64::from(bytes);
                }
                match &mut self.states[op] {
                    State::Upload(_) => self.upload_reply(op, req, response, conn),
                    State::Single(_) => self.single_reply(op, req, response, conn),
                    State::List(run) => {
                        let step = run.on_reply(op, req, response, &mut conn.session);
                        self.reading_step(op, step, conn);
                    }
                    State::Compare(run) => {
                        let (session, sources) = (&mut conn.session, &conn.sources);
                        let asked = (bytes, offset);
                        let step = run.on_reply(op, req, asked, response, session, sources);
                        conn.bytes_in_flight += run.take_requested();
                        if run.wants_reads() {
                            self.readers.insert(op);
                        }
                        self.reading_step(op, step, conn);
                    }
                    State::NotStarted
                    | State::WaitingDir
                    | State::LinkWaitingDir
                    | State::Confining(_)
                    | State::Finished => {
                        log::warn!("reply to {req} for {} arrived late", self.describe(op));
                    }
                }
            }
            Tag::Dir { dir, req } => {
                let released = conn.dirs.on_reply(dir, req, response, &mut conn.session);
                for (waiter, result) in released {
                    if let Waiter::Op(i) = waiter {
                        self.dir_settled(i, result, conn);
                    }
                }
            }
            Tag::Root | Tag::TargetStat | Tag::Confine { .. } => {
                let released = match tag {
                    Tag::TargetStat => conn.dirs.on_target_stat(response, &mut conn.session),
                    Tag::Confine { dir, req } => {
                        conn.dirs
                            .on_confine_reply(Some((dir, req)), response, &mut conn.session)
                    }
                    _ => conn
                        .dirs
                        .on_confine_reply(None, response, &mut conn.session),
                };
                for (waiter, result) in released {
                    let Waiter::Op(i) = waiter else { continue };
                    if let State::Confining(verdict) = &mut self.states[i] {
                        *verdict = Some(result);
                    } else {
                        self.dir_settled(i, result, conn);
                    }
                }
                self.send_confined(conn);
            }
            Tag::Sweep => {}
            Tag::Setup(req) => log::warn!("late reply to {req}"),
        }
    }

    fn reading_step(&mut self, i: usize, step: Step, conn: &mut Conn) {
        match step {
            Step::Continue { released_handle } => {
                if released_handle {
                    conn.open_files -= 1;
                }
            }
            Step::Finished {
                result,
                released_handle,
            } => {
                if released_handle {
                    conn.open_files -= 1;
                }
                match result {
                    Ok(outcome) => self.finish(i, Ok(outcome), conn),
                    Err(cause) => self.fail(i, cause, conn),
                }
            }
        }
    }

    fn dir_settled(&mut self, i: usize, result: Result<(), Cause>, conn: &mut Conn) {
        // An upload written aside holds a handle, or soon will: it finishes its own way.
        if self.is_aside(i) {
            return self.aside_settled(i, result, conn);
        }
        match (&mut self.states[i], result) {
            (State::WaitingDir, Ok(())) => self.finish(i, Ok(Outcome::Done), conn),
            (State::WaitingDir | State::LinkWaitingDir, Err(cause)) => self.fail(i, cause, conn),
            (State::LinkWaitingDir, Ok(())) => {
                self.send_final(i, conn);
                self.states[i] = State::Single(Stepwise::Retried);
            }
            (State::Upload(_), Ok(())) if self.interrupted => {
                self.fail(i, Cause::Interrupted, conn)
            }
            (State::Upload(u), Ok(())) => {
                u.stage = Stage::Reopen;
                self.reopen.push_back(i);
            }
            (State::Upload(_), Err(cause)) => self.fail(i, cause, conn),
            _ => {}
        }
    }

    /// What the operations with requests in flight are, for an error message.
    pub(crate) fn in_flight(&self, conn: &Conn) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for tag in conn.session.in_flight_tags() {
            let line = match *tag {
                Tag::Op { op, req, .. } => {
                    if !seen.insert((op, req as u8)) {
                        continue;
                    }
                    format!("{req} for {}", self.describe(op))
                }
                Tag::Dir { dir, req } => format!("{req} {}", conn.dirs.path(dir)),
                Tag::Setup(req) => req.to_string(),
                Tag::Root => "REALPATH of the target directory".to_string(),
                Tag::TargetStat => "STAT of the target directory".to_string(),
                Tag::Sweep => "REMOVE of a leftover temporary file".to_string(),
                Tag::Confine { req, .. } => format!("{req} of a directory"),
            };
            out.push(line);
        }
        out.sort();
        out
    }
}

/// A request refused as such (not failed on its object): `sftp-server -P` denies requests by
/// name with PERMISSION_DENIED, other servers say OP_UNSUPPORTED.
fn refused(code: StatusCode) -> bool {
    matches!(
        code,
        StatusCode::OpUnsupported | StatusCode::PermissionDenied
    )
}

/// An extension the server offers and then will not do: the connection does without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    PosixRename,
    Fsync,
    Times,
}

impl Conn {
    /// Does without what the server refused, and says so once.
    fn refused(&mut self, what: Refusal) {
        let (on, message) = match what {
            Refusal::PosixRename => (
                &mut self.limits.posix_rename,
                "the server offers posix-rename@openssh.com but refuses it: files are now \
                 replaced by remove-then-rename, so for a moment each is missing on the mirror",
            ),
            Refusal::Fsync => (
                &mut self.limits.fsync,
                "the server offers fsync@openssh.com but refuses it: index files are no longer \
                 flushed to its disk before they are renamed into place",
            ),
            Refusal::Times => (
                &mut self.limits.set_times,
                "the server refuses to set file times: uploads keep the server's time, so \
                 'mirror' and 'verify' will see them as changed",
            ),
        };
        if std::mem::take(on) {
            log::warn!("{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_path::RemotePath;
    use crate::sftp::wire::{NameEntry, Packet};

    /// A connection to an in-order server with posix-rename, whose target directory `/m`
    /// is resolved already.
    fn in_order_conn() -> Conn {
        let limits = Limits {
            max_open_files: 8,
            max_requests: 64,
            window: 1 << 20,
            write_chunk: 32 * 1024,
            read_chunk: 32 * 1024,
            in_order: true,
            posix_rename: true,
            fsync: true,
            set_times: true,
            times_by_path: false,
            symlink_order: crate::sftp::wire::SymlinkOrder::TargetFirst,
            symlinks: crate::engine::symlinks::SymlinkTrust::Known,
        };
        let mut conn = Conn::new(Session::new(), limits);
        let base = RemotePath::new("/m").unwrap();
        conn.dirs.base = Some(base.clone());
        conn.dirs.confine.base = Some(base);
        conn.dirs
            .on_confine_reply(None, name("/m"), &mut conn.session);
        conn
    }

    fn name(path: &str) -> Response {
        Response::Name(vec![NameEntry {
            filename: path.as_bytes().to_vec(),
            longname: Vec::new(),
            attrs: Attrs::default(),
        }])
    }

    /// What the batch queued, decoded.
    fn sent(session: &mut Session<Tag>) -> Vec<String> {
        let mut out = Vec::new();
        let mut bytes = session.take_output();
        while let Ok(crate::sftp::wire::Frame::Complete { body, consumed }) =
            crate::sftp::wire::frame(&bytes)
        {
            if let Ok(Packet::Request { request, .. }) = Packet::decode_from_client(body) {
                out.push(request.summary());
            }
            bytes.drain(..consumed);
        }
        out
    }

    #[test]
    fn a_rename_waiting_for_its_directory_is_never_overtaken() {
        let mut conn = in_order_conn();
        let rp = |s: &str| RemotePath::new(s).unwrap();
        let ops = [
            Op::Rename {
                from: rp("/m/dists/a/main/Packages.new"),
                to: rp("/m/dists/a/main/Packages"),
            },
            // Its directory is the target itself, known at once; it must still go second.
            Op::Rename {
                from: rp("/m/Release.new"),
                to: rp("/m/Release"),
            },
        ];
        let locals = Locals::default();
        let mut batch = Batch::new(ops.iter().collect(), &locals);
        batch.advance(&mut conn);
        let dirs = ["/m/dists", "/m/dists/a", "/m/dists/a/main"];
        let asked: Vec<String> = dirs
            .iter()
            .flat_map(|d| [format!("REALPATH {d}"), format!("LSTAT {d}")])
            .collect();
        assert_eq!(sent(&mut conn.session), asked);
        let dir = Attrs {
            permissions: Some(0o40755),
            ..Attrs::default()
        };
        for (k, d) in dirs.iter().enumerate() {
            let (realpath, lstat) = (Req::Realpath, Req::Lstat);
            batch.on_reply(
                Tag::Confine {
                    dir: k,
                    req: realpath,
                },
                name(d),
                &mut conn,
            );
            let attrs = Response::Attrs(dir.clone());
            batch.on_reply(Tag::Confine { dir: k, req: lstat }, attrs, &mut conn);
        }
        assert_eq!(
            sent(&mut conn.session),
            [
                "posix-rename /m/dists/a/main/Packages.new /m/dists/a/main/Packages",
                "posix-rename /m/Release.new /m/Release"
            ]
        );
    }

    fn ok() -> Response {
        Response::Status {
            code: StatusCode::Ok,
            message: Vec::new(),
            language: Vec::new(),
        }
    }

    /// Plays the server for one flight: takes what the batch queued, answers each request
    /// with `answer`, in order, and hands the replies to the batch; returns the requests.
    fn exchange(
        batch: &mut Batch<'_>,
        conn: &mut Conn,
        answer: impl Fn(&Request) -> Response,
    ) -> Vec<Request> {
        let mut bytes = conn.take_output();
        let (mut requests, mut replies) = (Vec::new(), Vec::new());
        if conn.session.server_info().is_none() {
            let version = Packet::Version {
                version: 3,
                extensions: Vec::new(),
            };
            version.encode(&mut replies);
        }
        while let Ok(crate::sftp::wire::Frame::Complete { body, consumed }) =
            crate::sftp::wire::frame(&bytes)
        {
            if let Ok(Packet::Request { id, request }) = Packet::decode_from_client(body) {
                let response = answer(&request);
                Packet::Response { id, response }.encode(&mut replies);
                requests.push(request);
            }
            bytes.drain(..consumed);
        }
        conn.session.handle_input(&replies).unwrap();
        while let Some((tag, response)) = conn.session.poll_reply() {
            batch.on_reply(tag, response, conn);
        }
        requests
    }

    #[test]
    fn a_request_left_by_an_earlier_run_is_described_not_a_panic() {
        let locals = Locals::default();
        let batch = Batch::new(Vec::new(), &locals);
        assert_eq!(batch.describe(3), "an operation of an earlier run");
    }

    #[test]
    fn an_upload_sends_the_file_as_it_is_open_and_holds_it_only_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("f");
        std::fs::write(&local, b"0123456789").unwrap();
        let mut locals = Locals::default();
        assert_eq!(locals.size(&local), Some(10));
        // It is replaced after the run looked at it: what goes is the file as it is open,
        // whole, never the new one cut to the old length.
        std::fs::write(&local, b"0123456789 and more").unwrap();
        let ops = [Op::Upload {
            local: local.clone(),
            remote: RemotePath::new("/m/f").unwrap(),
            fsync: false,
            mtime: None,
        }];
        let mut conn = in_order_conn();
        let mut batch = Batch::new(ops.iter().collect(), &locals);
        batch.advance(&mut conn);
        assert_eq!(conn.sources.held(), 1, "opened as it starts");
        let handle = |_: &Request| Response::Handle(b"h".to_vec());
        let opened = exchange(&mut batch, &mut conn, handle);
        assert!(matches!(&opened[..], [Request::Open { .. }]), "{opened:?}");
        batch.advance(&mut conn);
        let server = |request: &Request| match request {
            Request::Fstat { .. } => Response::Attrs(Attrs {
                size: Some(19),
                ..Attrs::default()
            }),
            _ => ok(),
        };
        let requests = exchange(&mut batch, &mut conn, server);
        let Request::Write {
            offset: 0, data, ..
        } = &requests[0]
        else {
            panic!("not a WRITE: {:?}", requests[0]);
        };
        assert_eq!(data, b"0123456789 and more");
        let rest: Vec<String> = requests[1..].iter().map(Request::summary).collect();
        assert_eq!(
            rest,
            ["FSTAT handle h", "CLOSE handle h", "RENAME /m/.f.tmp /m/f"],
            "the size is confirmed, the file closed and renamed in one flight"
        );
        let finished: Vec<(usize, OpResult)> =
            batch.take_finished().map(|(i, r)| (i, r.clone())).collect();
        assert_eq!(finished, [(0, Ok(Outcome::Done))]);
        assert_eq!(conn.sources.held(), 0, "closed once it is done");
        assert_eq!(conn.stats.bytes_uploaded, 19);
        assert!(batch.is_done(&conn));
    }

    #[test]
    fn large_writes_queue_ranges_of_the_source_that_the_transport_reads_there() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("big");
        let content: Vec<u8> = (0..200 * 1024).map(|k| (k % 251) as u8).collect();
        std::fs::write(&local, &content).unwrap();
        let ops = [Op::Upload {
            local,
            remote: RemotePath::new("/m/big").unwrap(),
            fsync: false,
            mtime: None,
        }];
        let mut conn = in_order_conn();
        // WRITEs larger than the inline limit: their data is not copied into the buffer.
        conn.limits.write_chunk = 128 * 1024;
        let locals = Locals::default();
        let mut batch = Batch::new(ops.iter().collect(), &locals);
        batch.advance(&mut conn);
        exchange(&mut batch, &mut conn, |_| Response::Handle(b"h".to_vec()));
        batch.advance(&mut conn);
        let server = |request: &Request| match request {
            Request::Fstat { .. } => Response::Attrs(Attrs {
                size: Some(200 * 1024),
                ..Attrs::default()
            }),
            _ => ok(),
        };
        let requests = exchange(&mut batch, &mut conn, server);
        let written: Vec<u8> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Write { data, .. } => Some(data.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(written == content, "the file's bytes, in order");
        assert_eq!(batch.take_finished().count(), 1);
        assert_eq!(conn.sources.held(), 0);
    }
}
