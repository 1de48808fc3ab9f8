//! One batch of operations as explicit state machines, driven by replies, and the
//! scheduling within one connection (which operation starts, which upload gets the window).
//! It queues requests on a [`Session`] and is told each reply; the engine moves the bytes.
//!
//! No I/O of its own and no clock: a source's size and mode come from the run's one stat
//! ([`Locals`]), its file is opened, read and closed through the connection's [`Sources`]
//! (the engine's edge, `local`), and nothing here waits or measures time.
//!
//! Limits kept here: at most `max_open_files` remote handles, at most `max_requests`
//! requests and `window` WRITE bytes outstanding. Handles are closed on every path, errors
//! included, and a batch is only over once no request of it is in flight.
//!
//! An upload lands by rename: written under its temporary name (created exclusively), it is
//! renamed onto its real name only once every WRITE, its size and its CLOSE are confirmed,
//! or, where nothing can be lost by it (an in-order server, a free name in a directory known
//! to be inside), in the same flight, undone if anything then turns out wrong.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

use super::confine::Verdict;
use super::dirs::{DirTable, Ensure, Waiter, reply_name, status_cause};
use super::local::{Locals, Sources};
use super::op::{Cause, Op, OpError, OpResult, Outcome, Req, Tag};
use super::reading::{CompareRun, ListRun, Step};
use crate::remote_path::RemotePath;
use crate::sftp::session::{FileFault, Session, SourceId};
use crate::sftp::wire::{Attrs, ExtendedRequest, OpenFlags, Request, Response, StatusCode};

/// A directory's failure, as an operation that needed it reports it.
fn in_dir(dir: &crate::remote_path::RemotePath, cause: Cause) -> Cause {
    Cause::Directory {
        dir: dir.clone(),
        cause: Box::new(cause),
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
    /// FSETSTAT of the modification time is sent (until the server refuses it).
    pub set_times: bool,
    pub symlink_order: crate::sftp::wire::SymlinkOrder,
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

    fn room_for_request(&self) -> bool {
        self.session.in_flight() < self.limits.max_requests
    }

    fn take_handle(&mut self) {
        self.open_files += 1;
        self.stats.max_open_files_seen = self.stats.max_open_files_seen.max(self.open_files);
    }
}

enum Stage {
    Opening,
    WaitingDir,
    /// Waiting for a free handle after its directory was created (or a stale file removed).
    Reopen,
    /// The exclusive OPEN found a file (a stale temporary file or a planted symlink): its
    /// REMOVE is in flight, the OPEN follows.
    Clearing,
    Writing,
    /// FSTAT, fsync and CLOSE are sent; collecting their replies.
    Closing,
    /// The FSTAT had no size: a STAT of the closed file is in flight.
    Confirming,
    /// Every byte is confirmed: the rename onto the real name is in flight.
    Landing,
    /// A server without posix-rename refused to rename onto an existing file: its REMOVE is
    /// in flight, the RENAME follows.
    ClearingDestination,
    /// The upload failed: its temporary file is being removed before that is reported.
    Discarding,
}

struct Upload {
    /// Its local file, open in [`Conn::sources`] while the upload runs; the WRITEs queued
    /// for the transport name it.
    source: SourceId,
    /// Where the bytes are written: for a whole file its temporary name, created
    /// exclusively and renamed onto the real name once every byte is confirmed; for a part,
    /// the name the parts share (see [`super::parts`]).
    target: RemotePath,
    /// The stale file found at `target` was removed once already.
    cleared: bool,
    /// The destination was removed once already (a rename without posix-rename).
    destination_cleared: bool,
    /// A FSTAT or STAT reply was checked against the size sent.
    size_checked: bool,
    /// The real name is a symlink (where that was looked at): it is removed before the
    /// rename.
    destination_is_link: bool,
    /// Where its directory is known to be inside, an in-order server gets a plain RENAME
    /// onto the real name right behind the CLOSE: `Some(true)` once it took (the real name
    /// was free), `Some(false)` when it refused (something stood there, left untouched).
    landed: Option<bool>,
    /// The range sent: `start..size`; the whole file (`0..` its length) unless a part.
    start: u64,
    size: u64,
    /// A whole file is created or truncated, and must end up exactly `size` long; a part
    /// neither truncates nor expects the file to end where it does.
    whole: bool,
    mode: u32,
    stage: Stage,
    handle: Vec<u8>,
    next_offset: u64,
    outstanding: u32,
    error: Option<Cause>,
    /// How the missing directory was dealt with so far: 0 not yet, 1 its MKDIR was sent
    /// right ahead of a new OPEN (in-order servers), 2 the OPEN waited for it.
    dir_attempts: u8,
}

impl Upload {
    /// Sends one request of this upload (operation `i`) and counts it as awaited.
    fn send(&mut self, i: usize, request: Request, req: Req, conn: &mut Conn) {
        conn.session.send(request, Tag::op(i, req));
        self.outstanding += 1;
    }

    /// Sends a REMOVE of `path` for this upload.
    fn send_remove(&mut self, i: usize, path: &RemotePath, conn: &mut Conn) {
        let path = path.as_bytes().to_vec();
        self.send(i, Request::Remove { path }, Req::Remove, conn);
    }

    /// Sends a REMOVE of its temporary file.
    fn remove_target(&mut self, i: usize, conn: &mut Conn) {
        let path = self.target.as_bytes().to_vec();
        self.send(i, Request::Remove { path }, Req::Remove, conn);
    }
}

enum Stepwise {
    /// A rename's LSTAT of its destination is in flight (see [`Batch::send_changing`]).
    Inspecting,
    /// A REMOVE of the destination is in flight; the real request follows its reply.
    Clearing,
    Final,
    /// The final request found no parent directory and was sent again once it was made.
    Retried,
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

/// WRITEs up to this size carry their data in the output buffer, read there at once: small
/// files then go out with their requests in one write to the pipe. Larger ones are spliced
/// from the file by the transport (see [`crate::sftp::session::Next::Source`]).
const INLINE_WRITE_MAX: u32 = 64 * 1024;

/// Operations that hold a remote handle while they run, and so count against the limit.
fn needs_handle(op: &Op) -> bool {
    matches!(
        op,
        Op::Upload { .. } | Op::UploadPart { .. } | Op::List { .. } | Op::Compare { .. }
    )
}

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
        let op = &self.ops[i];
        format!("{} {}", op.kind(), op.path())
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
        self.pump_writes(conn);
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
            Op::Mkdir { path } => match conn.dirs.ensure(path, Waiter::Op(i), &mut conn.session) {
                Ensure::Ready => self.finish(i, Ok(Outcome::Done), conn),
                Ensure::Queued => self.states[i] = State::WaitingDir,
                Ensure::Failed(cause) => self.fail(i, in_dir(path, cause), conn),
            },
        }
    }

    /// Starts an upload (or a part of one): its source, as stat'ed once for the run, is
    /// opened now, and the range it is to send fixed.
    fn start_upload(&mut self, i: usize, local: &Path, conn: &mut Conn) {
        let part = match &self.ops[i] {
            Op::UploadPart { range, .. } => Some(range.clone()),
            _ => None,
        };
        let source = self
            .locals
            .known(local)
            .expect("every source is stat'ed before its batch runs");
        let opened = source.and_then(|found| {
            if part.as_ref().is_some_and(|r| found.size < r.end) {
                return Err(Cause::Local {
                    path: local.to_owned(),
                    message: SHRANK.into(),
                });
            }
            Ok((conn.sources.open(local)?, found))
        });
        let (source, found) = match opened {
            Ok(opened) => opened,
            Err(cause) => return self.fail(i, cause, conn),
        };
        self.files_held += 1;
        let range = part.clone().unwrap_or(0..found.size);
        self.unsent += range.end - range.start;
        let remote = self.ops[i].path();
        self.states[i] = State::Upload(Box::new(Upload {
            source,
            target: if part.is_none() {
                remote.temp_sibling()
            } else {
                remote.clone()
            },
            cleared: false,
            destination_cleared: false,
            size_checked: false,
            destination_is_link: false,
            landed: None,
            start: range.start,
            size: range.end,
            whole: part.is_none(),
            mode: found.mode,
            stage: Stage::Opening,
            handle: Vec::new(),
            next_offset: range.start,
            outstanding: 0,
            error: None,
            dir_attempts: 0,
        }));
        self.confine_upload(i, conn);
    }

    /// Starts a removal, rename or symlink: what removes or replaces a name goes only once
    /// its directory is known to be inside the target (see [`super::confine`]); and never
    /// ahead of one started before it that waits so: an in-order server carries them out in
    /// the order sent, and the caller may rely on that (Release last).
    fn start_changing(&mut self, i: usize, path: &RemotePath, conn: &mut Conn) {
        let verdict = match path.parent() {
            Some(dir) => conn
                .dirs
                .check_inside(&dir, Waiter::Op(i), &mut conn.session),
            None => Verdict::Inside,
        };
        let verdict = match verdict {
            Verdict::Inside => Some(Ok(())),
            Verdict::Outside(cause) => Some(Err(cause)),
            Verdict::Pending => None,
        };
        self.states[i] = State::Confining(verdict);
        self.confining.push_back(i);
        self.send_confined(conn);
    }

    /// Sends a request that removes or replaces a name (its directory is confined).
    fn send_changing(&mut self, i: usize, conn: &mut Conn) {
        match &self.ops[i] {
            Op::Remove { path } => {
                self.states[i] = State::Single(Stepwise::Final);
                // What an interrupted upload of it may have left goes with it.
                conn.session.send(
                    Request::Remove {
                        path: path.temp_sibling().as_bytes().to_vec(),
                    },
                    Tag::Sweep,
                );
                conn.session.send(
                    Request::Remove {
                        path: path.as_bytes().to_vec(),
                    },
                    Tag::op(i, Req::Remove),
                );
            }
            Op::Rmdir { path } => {
                self.states[i] = State::Single(Stepwise::Final);
                conn.session.send(
                    Request::Rmdir {
                        path: path.as_bytes().to_vec(),
                    },
                    Tag::op(i, Req::Rmdir),
                );
            }
            Op::Rename { to, .. } if !conn.limits.in_order => {
                // Not every server renames onto a symlink itself (ProFTPD replaces the
                // link's target): whether `to` is one is asked first. READLINK, as an
                // LSTAT may follow the link (ProFTPD's does).
                self.states[i] = State::Single(Stepwise::Inspecting);
                conn.session.send(
                    Request::Readlink {
                        path: to.as_bytes().to_vec(),
                    },
                    Tag::op(i, Req::Readlink),
                );
            }
            Op::Rename { .. } => self.send_rename_op(i, conn),
            Op::Symlink { link, .. } => self.clear_then(i, link.as_bytes(), conn),
            _ => unreachable!("only removals, renames and symlinks change a name"),
        }
    }

    /// Sends a rename operation's request: posix-rename, or REMOVE then RENAME.
    fn send_rename_op(&mut self, i: usize, conn: &mut Conn) {
        match &self.ops[i] {
            Op::Rename { from, to } => {
                if conn.limits.posix_rename {
                    self.states[i] = State::Single(Stepwise::Final);
                    conn.session.send_extended(
                        ExtendedRequest::PosixRename {
                            from: from.as_bytes().to_vec(),
                            to: to.as_bytes().to_vec(),
                        },
                        Tag::op(i, Req::PosixRename),
                    );
                } else {
                    // Plain RENAME refuses to replace an existing file: remove it first.
                    self.clear_then(i, to.as_bytes(), conn);
                }
            }
            _ => unreachable!("only renames"),
        }
    }

    /// Sends, in the order they were started, the operations whose directory was judged:
    /// they go on, or fail; the first one still waiting holds back those after it.
    fn send_confined(&mut self, conn: &mut Conn) {
        while let Some(&i) = self.confining.front() {
            let State::Confining(verdict) = &mut self.states[i] else {
                unreachable!("only confining operations are queued")
            };
            let Some(verdict) = verdict.take() else {
                break;
            };
            self.confining.pop_front();
            match verdict {
                Ok(()) if self.interrupted => self.fail(i, Cause::Interrupted, conn),
                Ok(()) => self.send_changing(i, conn),
                Err(cause) => self.fail(i, cause, conn),
            }
        }
    }

    fn clear_then(&mut self, i: usize, path: &[u8], conn: &mut Conn) {
        self.states[i] = State::Single(Stepwise::Clearing);
        conn.session.send(
            Request::Remove {
                path: path.to_vec(),
            },
            Tag::op(i, Req::Remove),
        );
    }

    /// The request that follows a successful clearing REMOVE.
    fn send_final(&mut self, i: usize, conn: &mut Conn) {
        self.states[i] = State::Single(Stepwise::Final);
        match &self.ops[i] {
            Op::Rename { from, to } => {
                conn.session.send(
                    Request::Rename {
                        from: from.as_bytes().to_vec(),
                        to: to.as_bytes().to_vec(),
                    },
                    Tag::op(i, Req::Rename),
                );
            }
            Op::Symlink { link, target } => {
                conn.session.send(
                    Request::Symlink {
                        link: link.as_bytes().to_vec(),
                        target: target.clone(),
                        order: conn.limits.symlink_order,
                    },
                    Tag::op(i, Req::Symlink),
                );
            }
            _ => unreachable!("only renames and symlinks clear their destination"),
        }
    }

    /// An upload goes only into a directory known to be inside the target (see
    /// [`super::confine`]): one this run made, or one whose REALPATH and LSTAT said so. The
    /// first upload into a directory asks, and waits (as the others there do) for the
    /// verdict; in a missing one, its MKDIR then goes at once with the OPEN.
    fn confine_upload(&mut self, i: usize, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!("uploads are confined")
        };
        let verdict = match u.target.parent() {
            Some(dir) => conn
                .dirs
                .check_inside(&dir, Waiter::Op(i), &mut conn.session),
            None => Verdict::Inside,
        };
        match verdict {
            Verdict::Inside => self.clear_temporary(i, conn),
            Verdict::Outside(cause) => self.fail(i, cause, conn),
            // Released by `dir_settled` into the queue of uploads to (re)open.
            Verdict::Pending => u.stage = Stage::WaitingDir,
        }
    }

    /// Opens an upload taken from the queue: its temporary name cleared first where that
    /// was not done yet.
    fn resume_upload(&mut self, i: usize, conn: &mut Conn) {
        match &self.states[i] {
            State::Upload(u) if !u.cleared => self.clear_temporary(i, conn),
            _ => self.send_open(i, conn),
        }
    }

    /// Starts a whole upload. Its temporary name is opened with `EXCL`, which on OpenSSH's
    /// server (and asyncssh's: those with `limits@openssh.com`) fails on anything that
    /// stands there, a dangling symlink included; what stands there is then removed and the
    /// OPEN sent again. Other servers may follow a dangling symlink even so (gesftpserver
    /// and rclone create its target): there the name is removed first, and the OPEN waits
    /// for that answer, as those servers are not known to act in order.
    fn clear_temporary(&mut self, i: usize, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!("uploads clear their temporary name")
        };
        if !u.whole || conn.limits.in_order {
            return self.send_open(i, conn);
        }
        u.cleared = true;
        u.stage = Stage::Clearing;
        u.remove_target(i, conn);
    }

    fn send_open(&mut self, i: usize, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!("open is sent for uploads")
        };
        // Into a directory that surely does not exist yet (below one this run is making):
        // with an in-order server its MKDIR goes right ahead, instead of a failed OPEN first.
        if u.dir_attempts == 0
            && conn.limits.in_order
            && let Some(dir) = self.ops[i].path().parent()
            && conn.dirs.known_missing(&dir)
        {
            u.dir_attempts = 1;
            if let Ensure::Failed(cause) = conn.dirs.ensure_pipelined(&dir, &mut conn.session) {
                return self.fail(i, in_dir(&dir, cause), conn);
            }
        }
        u.stage = Stage::Opening;
        conn.take_handle();
        conn.session.send(
            Request::Open {
                path: u.target.as_bytes().to_vec(),
                // Exclusive: never opens an existing file, so never writes through a
                // symlink. A part writes into the file its upload prepared.
                flags: if u.whole {
                    OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::EXCL
                } else {
                    OpenFlags::WRITE | OpenFlags::CREAT
                },
                attrs: Attrs {
                    permissions: Some(u.mode),
                    ..Attrs::default()
                },
            },
            Tag::op(i, Req::Open),
        );
        u.outstanding += 1;
    }

    /// Sends WRITEs for the uploads that have data left, oldest first, while the window and
    /// the request limit allow; after an upload's last WRITE its FSTAT, fsync and CLOSE go out
    /// at once, without waiting: requests on one handle are processed in order.
    fn pump_writes(&mut self, conn: &mut Conn) {
        let writers: Vec<usize> = self.writers.iter().copied().collect();
        for i in writers {
            if !self.interrupted
                && (conn.bytes_in_flight >= conn.limits.window || !conn.room_for_request())
            {
                break;
            }
            let State::Upload(u) = &mut self.states[i] else {
                continue;
            };
            if self.interrupted {
                u.error.get_or_insert(Cause::Interrupted);
            }
            while u.next_offset < u.size
                && u.error.is_none()
                && conn.bytes_in_flight < conn.limits.window
                && conn.room_for_request()
            {
                let len = (u.size - u.next_offset).min(u64::from(conn.limits.write_chunk)) as u32;
                let offset = u.next_offset;
                let tag = Tag::Op {
                    op: i,
                    req: Req::Write,
                    bytes: len,
                    offset,
                };
                if len <= INLINE_WRITE_MAX {
                    let (source, sources) = (u.source, &conn.sources);
                    let sent = conn.session.send_write(&u.handle, offset, len, tag, |out| {
                        sources.append(source, offset, len, out)
                    });
                    if let Err(e) = sent {
                        let fault = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                            FileFault::Ended
                        } else {
                            FileFault::Unreadable(e.to_string())
                        };
                        u.error.get_or_insert(fault_cause(self.ops[i], fault));
                        break;
                    }
                } else {
                    let source = u.source;
                    conn.session
                        .send_write_source(&u.handle, offset, len, tag, source, i);
                }
                self.unsent -= u64::from(len);
                u.next_offset += u64::from(len);
                u.outstanding += 1;
                conn.bytes_in_flight += u64::from(len);
            }
            if u.next_offset >= u.size || u.error.is_some() {
                self.writers.remove(&i);
                let (fsync, mtime) = match self.ops[i] {
                    Op::Upload { fsync, mtime, .. } => (*fsync, *mtime),
                    _ => (false, None),
                };
                let destination = self.ops[i].path();
                Self::send_close(u, i, destination, fsync && conn.limits.fsync, mtime, conn);
            }
        }
        self.pump_reads(conn);
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

    /// After the last WRITE (or an error): FSTAT to confirm the size, FSETSTAT for the
    /// time, fsync, READLINK of the real name (where a rename may write through a link),
    /// CLOSE, and on an in-order server the plain RENAME into place, all at once; on an
    /// error only the CLOSE.
    fn send_close(
        u: &mut Upload,
        i: usize,
        destination: &RemotePath,
        fsync: bool,
        mtime: Option<u32>,
        conn: &mut Conn,
    ) {
        u.stage = Stage::Closing;
        if u.error.is_none() {
            conn.session.send(
                Request::Fstat {
                    handle: u.handle.clone(),
                },
                Tag::op(i, Req::Fstat),
            );
            u.outstanding += 1;
            if let Some(t) = mtime.filter(|_| conn.limits.set_times) {
                conn.session.send(
                    Request::Fsetstat {
                        handle: u.handle.clone(),
                        attrs: Attrs {
                            times: Some((t, t)),
                            ..Attrs::default()
                        },
                    },
                    Tag::op(i, Req::Fsetstat),
                );
                u.outstanding += 1;
            }
            if fsync {
                conn.session.send_extended(
                    ExtendedRequest::Fsync {
                        handle: u.handle.clone(),
                    },
                    Tag::op(i, Req::Fsync),
                );
                u.outstanding += 1;
            }
            if u.whole {
                // Not every server renames onto a symlink itself (ProFTPD replaces the
                // link's target): on one not known to, whether the real name is a link is
                // asked in the same flight (READLINK: an LSTAT may follow it, ProFTPD's
                // does).
                if !conn.limits.in_order {
                    conn.session.send(
                        Request::Readlink {
                            path: destination.as_bytes().to_vec(),
                        },
                        Tag::op(i, Req::Readlink),
                    );
                    u.outstanding += 1;
                }
            }
        }
        conn.session.send(
            Request::Close {
                handle: u.handle.clone(),
            },
            Tag::op(i, Req::Close),
        );
        u.outstanding += 1;
        // No round trip for the rename where nothing can be lost by it: an in-order server
        // carries it out after the CLOSE, and a plain RENAME refuses an existing real name
        // (OpenSSH links, which fails on one). If a WRITE or the size then turns out wrong,
        // the file it put at the free name is removed again; if the name was taken, the
        // replacing rename waits for every confirmation as usual.
        if u.whole && u.error.is_none() && conn.limits.in_order {
            let (from, to) = (
                u.target.as_bytes().to_vec(),
                destination.as_bytes().to_vec(),
            );
            u.send(i, Request::Rename { from, to }, Req::Rename, conn);
        }
    }

    /// Uploads whose file could not give all its data (the transport made up the rest
    /// with zeros): they fail, whatever the server answers.
    pub(crate) fn note_failed_files(&mut self, conn: &mut Conn) {
        for (i, fault) in conn.session.take_failed_files() {
            if let State::Upload(u) = &mut self.states[i] {
                u.error.get_or_insert(fault_cause(self.ops[i], fault));
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
            Tag::Root | Tag::Confine { .. } => {
                let dir = match tag {
                    Tag::Confine { dir, req } => Some((dir, req)),
                    _ => None,
                };
                let released = conn.dirs.on_confine_reply(dir, response, &mut conn.session);
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

    /// A reply to an operation of one or a few requests in a row (not an upload, not a
    /// reading one).
    fn single_reply(&mut self, i: usize, req: Req, response: Response, conn: &mut Conn) {
        let State::Single(step) = &self.states[i] else {
            unreachable!()
        };
        let clearing = matches!(step, Stepwise::Clearing);
        let retried = matches!(step, Stepwise::Retried);
        if matches!(step, Stepwise::Inspecting) {
            let Op::Rename { to, .. } = self.ops[i] else {
                unreachable!("only renames inspect")
            };
            return match response {
                // A symlink is removed (the link itself), then the file renamed there.
                Response::Name(_) => self.clear_then(i, to.as_bytes(), conn),
                _ => self.send_rename_op(i, conn),
            };
        }
        if let (Req::Readlink, Response::Name(names)) = (req, &response)
            && let [entry] = names.as_slice()
        {
            let target = entry.filename.clone();
            return self.finish(i, Ok(Outcome::Target(target)), conn);
        }
        if let Op::SetSize { .. } = self.ops[i] {
            return self.set_size_reply(i, req, response, conn);
        }
        let Response::Status { code, message, .. } = response else {
            let reply = reply_name(&response);
            let cause = Cause::UnexpectedReply {
                request: req,
                reply,
            };
            return self.fail(i, cause, conn);
        };
        // Offered, then refused (`sftp-server -P posix-rename`): remove, then rename.
        if req == Req::PosixRename
            && refused(code)
            && let Op::Rename { to, .. } = self.ops[i]
        {
            conn.refused(Refusal::PosixRename);
            return self.clear_then(i, to.as_bytes(), conn);
        }
        match (clearing, code) {
            (true, StatusCode::Ok | StatusCode::NoSuchFile) => self.send_final(i, conn),
            (false, StatusCode::Ok) => self.finish(i, Ok(Outcome::Done), conn),
            (false, StatusCode::NoSuchFile) if matches!(req, Req::Remove | Req::Rmdir) => {
                self.finish(i, Ok(Outcome::AlreadyAbsent), conn)
            }
            (false, StatusCode::NoSuchFile) if req == Req::Symlink && !retried => {
                self.symlink_dir_missing(i, status_cause(req, code, &message), conn)
            }
            (_, code) => self.fail(i, status_cause(req, code, &message), conn),
        }
    }

    /// A reply to a SETSTAT of a file's size, or to the STAT that confirms it: the size a
    /// SETSTAT gave is confirmed before the file counts as whole.
    fn set_size_reply(&mut self, i: usize, req: Req, response: Response, conn: &mut Conn) {
        let Op::SetSize { path, size, .. } = self.ops[i] else {
            unreachable!("only SetSize sets a size")
        };
        let cause = match (req, response) {
            (Req::Stat, Response::Attrs(a)) if a.size == Some(*size) => {
                return self.finish(i, Ok(Outcome::Done), conn);
            }
            (Req::Stat, Response::Attrs(a)) => match a.size {
                Some(actual) => Cause::SizeMismatch {
                    expected: *size,
                    actual,
                },
                None => Cause::SizeUnconfirmed,
            },
            (
                Req::Setstat,
                Response::Status {
                    code: StatusCode::Ok,
                    ..
                },
            ) => {
                let path = path.as_bytes().to_vec();
                conn.session
                    .send(Request::Stat { path }, Tag::op(i, Req::Stat));
                return;
            }
            (req, Response::Status { code, message, .. }) => status_cause(req, code, &message),
            (req, other) => Cause::UnexpectedReply {
                request: req,
                reply: reply_name(&other),
            },
        };
        self.fail(i, cause, conn);
    }

    /// A symlink into a directory that does not exist yet: it is made, and the SYMLINK sent
    /// once more; without a directory to make, it fails with `cause`.
    fn symlink_dir_missing(&mut self, i: usize, cause: Cause, conn: &mut Conn) {
        let Some(dir) = self.ops[i].path().parent() else {
            return self.fail(i, cause, conn);
        };
        match conn.dirs.ensure(&dir, Waiter::Op(i), &mut conn.session) {
            Ensure::Queued => self.states[i] = State::LinkWaitingDir,
            Ensure::Ready => {
                self.send_final(i, conn);
                self.states[i] = State::Single(Stepwise::Retried);
            }
            Ensure::Failed(cause) => self.fail(i, in_dir(&dir, cause), conn),
        }
    }

    fn upload_reply(&mut self, i: usize, req: Req, response: Response, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        u.outstanding -= 1;
        match (&u.stage, req, response) {
            (Stage::Opening, Req::Open, Response::Handle(handle)) => {
                u.handle = handle;
                u.stage = Stage::Writing;
                self.writers.insert(i);
            }
            (Stage::Opening, Req::Open, Response::Status { code, message, .. }) => {
                conn.open_files -= 1;
                self.open_failed(i, code, &message, conn);
            }
            (Stage::Clearing, Req::Remove, Response::Status { code, message, .. }) => match code {
                StatusCode::Ok | StatusCode::NoSuchFile if !self.interrupted => {
                    u.stage = Stage::Reopen;
                    self.reopen.push_back(i);
                }
                StatusCode::Ok | StatusCode::NoSuchFile => self.fail(i, Cause::Interrupted, conn),
                code => self.fail(i, status_cause(req, code, &message), conn),
            },
            (Stage::Confirming, Req::Stat, response) => {
                check_size(u, req, response);
                u.size_checked = true;
                self.closed(i, conn);
            }
            (Stage::Landing | Stage::ClearingDestination, _, response) => {
                self.landing_reply(i, req, response, conn)
            }
            (Stage::Discarding, _, response) => {
                if !matches!(
                    &response,
                    Response::Status {
                        code: StatusCode::Ok | StatusCode::NoSuchFile,
                        ..
                    }
                ) {
                    log::warn!(
                        "a failed upload of {} may have left a partial file there or at its \
                         temporary name: its REMOVE was answered {}",
                        self.ops[i].path(),
                        reply_name(&response)
                    );
                }
                let cause = u.error.take().expect("a discarded upload has failed");
                self.fail(i, cause, conn);
            }
            // A REMOVE answered with anything but a status: nothing is known to be gone.
            (Stage::Clearing, req, other) => {
                let reply = reply_name(&other);
                self.fail(
                    i,
                    Cause::UnexpectedReply {
                        request: req,
                        reply,
                    },
                    conn,
                );
            }
            (_, req, response) => {
                if self.transfer_reply(i, req, response, conn) {
                    self.closed(i, conn);
                }
            }
        }
    }

    /// The exclusive OPEN failed: a file in the way is removed once, a missing directory is
    /// made, anything else fails the upload.
    fn open_failed(&mut self, i: usize, code: StatusCode, message: &[u8], conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        // A stale temporary file, or anything planted at its name: OpenSSH says FAILURE
        // (EEXIST), later protocol versions FILE_ALREADY_EXISTS. REMOVE takes a symlink
        // itself, never what it points to.
        let exists = matches!(code, StatusCode::Failure | StatusCode::Other(11));
        if exists && u.whole && !u.cleared && !self.interrupted {
            u.cleared = true;
            u.stage = Stage::Clearing;
            u.remove_target(i, conn);
            return;
        }
        let parent = self.ops[i].path().parent();
        match parent {
            // A server that answers in order makes the directory and then opens the file
            // sent right behind its MKDIR: no round trip spent waiting.
            Some(dir)
                if code == StatusCode::NoSuchFile
                    && u.dir_attempts == 0
                    && conn.limits.in_order
                    && !self.interrupted =>
            {
                u.dir_attempts = 1;
                match conn.dirs.ensure_pipelined(&dir, &mut conn.session) {
                    Ensure::Failed(cause) => self.fail(i, in_dir(&dir, cause), conn),
                    _ => self.send_open(i, conn),
                }
            }
            Some(_) if code == StatusCode::NoSuchFile && self.interrupted => {
                self.fail(i, Cause::Interrupted, conn)
            }
            Some(dir) if code == StatusCode::NoSuchFile && u.dir_attempts < 2 => {
                u.dir_attempts = 2;
                u.stage = Stage::WaitingDir;
                match conn.dirs.ensure(&dir, Waiter::Op(i), &mut conn.session) {
                    Ensure::Queued => {}
                    // Created meanwhile by another upload's MKDIR: just retry.
                    Ensure::Ready => {
                        u.stage = Stage::Reopen;
                        self.reopen.push_back(i);
                    }
                    Ensure::Failed(cause) => self.fail(i, in_dir(&dir, cause), conn),
                }
            }
            // The directory was to be made first: say why it was not.
            Some(dir) if let Some(cause) = conn.dirs.failure(&dir) => {
                self.fail(i, in_dir(&dir, cause), conn)
            }
            _ => self.fail(i, status_cause(Req::Open, code, message), conn),
        }
    }

    /// A reply to a WRITE, FSTAT, FSETSTAT, fsync or CLOSE; true once all of them are in.
    fn transfer_reply(&mut self, i: usize, req: Req, response: Response, conn: &mut Conn) -> bool {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        match (req, response) {
            // A server that will not flush (`sftp-server -P fsync`): the file is whole all the
            // same; what is lost is only the flush. Said once, not asked for again.
            (Req::Fsync, Response::Status { code, .. }) if refused(code) => {
                conn.refused(Refusal::Fsync);
            }
            // Nor set times (`-P fsetstat`): the file is whole; `mirror` and `verify` will
            // see it as changed (its time is not the local one). Said once.
            (Req::Fsetstat, Response::Status { code, .. }) if refused(code) => {
                conn.refused(Refusal::Times);
            }
            (Req::Write | Req::Fsync | Req::Fsetstat, Response::Status { code, message, .. }) => {
                if code != StatusCode::Ok {
                    u.error.get_or_insert(status_cause(req, code, &message));
                    if matches!(u.stage, Stage::Writing) {
                        // Stop sending data; close once what is in flight is answered.
                        self.writers.remove(&i);
                        Self::send_close(u, i, self.ops[i].path(), false, None, conn);
                    }
                }
            }
            (Req::Fstat, response) => {
                // A server that leaves the size out is asked again once the file is closed.
                if !matches!(&response, Response::Attrs(a) if a.size.is_none()) {
                    check_size(u, req, response);
                    u.size_checked = true;
                }
            }
            (Req::Close, Response::Status { code, message, .. }) => {
                conn.open_files -= 1;
                if code != StatusCode::Ok {
                    u.error.get_or_insert(status_cause(req, code, &message));
                }
            }
            (Req::Readlink, response) => {
                u.destination_is_link = matches!(response, Response::Name(_));
            }
            // The real name is taken, or the server would not (`-P rename`): the file is put
            // in place once all is confirmed, as on any other server.
            (Req::Rename, Response::Status { code, .. }) => {
                u.landed = Some(code == StatusCode::Ok);
            }
            (request, other) => {
                if matches!(request, Req::Open | Req::Close) {
                    conn.open_files -= 1;
                }
                u.error.get_or_insert(Cause::UnexpectedReply {
                    request,
                    reply: reply_name(&other),
                });
                if request == Req::Open {
                    // An OPEN answered without a handle has nothing to close.
                    let cause = u.error.take().expect("just set");
                    self.fail(i, cause, conn);
                    return false;
                }
            }
        }
        u.outstanding == 0 && matches!(u.stage, Stage::Closing)
    }

    /// Every reply up to the CLOSE is in: confirm the size if the FSTAT could not, then put
    /// the file in place; a failed upload's temporary file is removed first.
    fn closed(&mut self, i: usize, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        let at = if u.landed == Some(true) {
            self.ops[i].path()
        } else {
            &u.target
        };
        if u.error.is_none() && !u.size_checked {
            u.stage = Stage::Confirming;
            let path = at.as_bytes().to_vec();
            u.send(i, Request::Stat { path }, Req::Stat, conn);
            return;
        }
        if u.error.is_some() {
            if !u.whole {
                // A part leaves the shared file to its upload's end.
                let cause = u.error.take().expect("checked");
                return self.fail(i, cause, conn);
            }
            // What landed at a free name is ours, and incomplete: it goes.
            let at = at.clone();
            u.stage = Stage::Discarding;
            return u.send_remove(i, &at, conn);
        }
        if !u.whole || u.landed == Some(true) {
            return self.finish(i, Ok(Outcome::Done), conn);
        }
        let to = self.ops[i].path();
        // The pipelined plain RENAME found the name taken: without posix-rename, the same
        // RENAME again would fail too; what is there goes first.
        let taken_plain = u.landed == Some(false) && !conn.limits.posix_rename;
        if (u.destination_is_link || taken_plain) && !u.destination_cleared {
            u.destination_cleared = true;
            u.stage = Stage::ClearingDestination;
            u.send_remove(i, to, conn);
            return;
        }
        u.stage = Stage::Landing;
        u.outstanding += 1;
        send_rename(&u.target, to, conn, Tag::op(i, rename_request(conn)));
    }

    /// The reply to the rename of a confirmed file onto its real name (or to the REMOVE of
    /// what stood there, on a server without posix-rename).
    fn landing_reply(&mut self, i: usize, req: Req, response: Response, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        let to = self.ops[i].path();
        let Response::Status { code, message, .. } = response else {
            u.error = Some(Cause::UnexpectedReply {
                request: req,
                reply: reply_name(&response),
            });
            return self.discard(i, conn);
        };
        match (req, code) {
            (Req::Rename | Req::PosixRename, StatusCode::Ok) => {
                self.finish(i, Ok(Outcome::Done), conn)
            }
            // A server that offers posix-rename and will not do it (`sftp-server -P
            // posix-rename`): remove, then rename, from now on, said once.
            (Req::PosixRename, code) if refused(code) => {
                conn.refused(Refusal::PosixRename);
                u.outstanding += 1;
                send_rename(&u.target, to, conn, Tag::op(i, Req::Rename));
            }
            // Plain RENAME refuses to replace an existing file: remove it, then rename.
            (Req::Rename, StatusCode::Failure) if !u.destination_cleared => {
                u.destination_cleared = true;
                u.stage = Stage::ClearingDestination;
                u.send_remove(i, to, conn);
            }
            (Req::Remove, StatusCode::Ok | StatusCode::NoSuchFile) => {
                u.stage = Stage::Landing;
                u.outstanding += 1;
                send_rename(&u.target, to, conn, Tag::op(i, Req::Rename));
            }
            (req, code) => {
                u.error = Some(status_cause(req, code, &message));
                self.discard(i, conn);
            }
        }
    }

    /// Removes a failed upload's temporary file; the failure is reported with the reply.
    fn discard(&mut self, i: usize, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        u.stage = Stage::Discarding;
        u.remove_target(i, conn);
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
                Tag::Sweep => "REMOVE of a leftover temporary file".to_string(),
                Tag::Confine { req, .. } => format!("{req} of a directory"),
            };
            out.push(line);
        }
        out.sort();
        out
    }
}

const SHRANK: &str = "the file shrank while it was being sent";

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

/// The request that renames onto an existing name on this connection.
fn rename_request(conn: &Conn) -> Req {
    if conn.limits.posix_rename {
        Req::PosixRename
    } else {
        Req::Rename
    }
}

/// Renames `from` onto `to`: atomically with posix-rename where the server has it (and it
/// is on), otherwise with a plain RENAME (which refuses an existing `to`).
fn send_rename(from: &RemotePath, to: &RemotePath, conn: &mut Conn, tag: Tag) {
    let (from, to) = (from.as_bytes().to_vec(), to.as_bytes().to_vec());
    match tag {
        Tag::Op {
            req: Req::PosixRename,
            ..
        } => conn
            .session
            .send_extended(ExtendedRequest::PosixRename { from, to }, tag),
        _ => conn.session.send(Request::Rename { from, to }, tag),
    };
}

/// Checks the size a FSTAT or STAT reply gives against what was sent: a whole file must
/// have exactly its size, a part at least reach its end. No size is no confirmation.
fn check_size(u: &mut Upload, req: Req, response: Response) {
    match response {
        Response::Attrs(attrs) => match attrs.size {
            Some(actual) if actual < u.size || u.whole && actual != u.size => {
                u.error.get_or_insert(Cause::SizeMismatch {
                    expected: u.size,
                    actual,
                });
            }
            Some(_) => {}
            None => {
                u.error.get_or_insert(Cause::SizeUnconfirmed);
            }
        },
        Response::Status { code, message, .. } => {
            u.error.get_or_insert(status_cause(req, code, &message));
        }
        other => {
            u.error.get_or_insert(Cause::UnexpectedReply {
                request: req,
                reply: reply_name(&other),
            });
        }
    }
}

/// Why upload `op` failed when its local file could not give all its data.
fn fault_cause(op: &Op, fault: FileFault) -> Cause {
    let (Op::Upload { local, .. } | Op::UploadPart { local, .. }) = op else {
        unreachable!("only uploads read files")
    };
    Cause::Local {
        path: local.clone(),
        message: match fault {
            FileFault::Ended => SHRANK.into(),
            FileFault::Unreadable(e) => e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            symlink_order: crate::sftp::wire::SymlinkOrder::TargetFirst,
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
        let mut bytes = conn.session.take_output();
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
    fn an_upload_sends_the_size_stated_once_from_a_file_open_only_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("f");
        std::fs::write(&local, b"0123456789").unwrap();
        let mut locals = Locals::default();
        assert_eq!(locals.size(&local), Some(10));
        // It grows after the run looked at it: what was seen then is what goes.
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
                size: Some(10),
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
        assert_eq!(data, b"0123456789");
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
        assert_eq!(conn.stats.bytes_uploaded, 10);
        assert!(batch.is_done(&conn));
    }
}
