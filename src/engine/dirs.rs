//! Parent-directory locking: each missing remote directory is created once per run, however
//! many operations find it missing; they wait on it and are released together.
//!
//! Nothing is probed in advance: an operation first tries its request, and only a
//! NO_SUCH_FILE brings it here. A MKDIR that fails for want of a parent makes the parent wait
//! in turn, so a deep new tree is built top-down with one MKDIR per level; on a server that
//! acts in order, a new tree found missing by the checks is made whole in one flight under
//! a stand-in name and renamed into place ([`staging`]). A MKDIR that fails otherwise is
//! checked with one STAT: the directory may already exist (OpenSSH answers FAILURE for
//! EEXIST).
//!
//! Pure: requests are queued on the session, replies handed in; no I/O, no clock. It never
//! makes the target directory or anything above it (see [`DirTable::base`]).

use std::collections::HashMap;

use super::confine::{Confinement, Known, Verdict};
use super::op::{Cause, Reply, Req, Status, Tag};
use crate::remote_path::RemotePath;
use crate::sftp::session::Session;
use crate::sftp::wire::{Attrs, Request, Response, StatusCode};

mod names;
mod staging;

pub(crate) use names::{Chunked, Name, Names};
use staging::{Staging, under_stand_in};

/// Who waits for a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiter {
    Op(usize),
    Dir(usize),
}

/// Where an undecided directory is.
#[derive(Debug)]
enum Stage {
    /// MKDIR (or the STAT after a failed MKDIR, keeping the MKDIR's failure) in flight.
    Creating { mkdir_failure: Option<Cause> },
    /// Waiting for the parent directory before MKDIR is retried.
    WaitingParent,
    /// Waiting to know whether the parent, which this run did not make, is inside the
    /// target (see [`super::confine`]) before MKDIR is sent.
    Confining,
    /// The MKDIR failed (its failure kept): asking again what stands at the name, before
    /// a STAT (which would follow a symlink planted there since) says whether it is a
    /// directory.
    Rechecking { mkdir_failure: Cause },
    /// Made in a tree under a stand-in name (see [`staging`]): `built` once its MKDIR
    /// there is answered; it is there once the tree's RENAME is.
    Staged { tree: usize, built: Option<bool> },
}

/// A directory on its way, and who waits for it.
#[derive(Debug)]
struct Pending {
    stage: Stage,
    waiters: Vec<Waiter>,
    /// A MKDIR that found no parent although the parent exists may have overtaken the
    /// parent's MKDIR on a server that answers out of order: it is retried once.
    retried: bool,
    /// Our MKDIR made it (it did not exist): what is below it cannot exist yet either.
    made: bool,
}

/// What is known of a directory, as it is put into and taken out of [`States`].
#[derive(Debug)]
enum State {
    /// The name is the confinement's only (or a directory above the base).
    Absent,
    Pending(Box<Pending>),
    /// `made`: our MKDIR made it (it did not exist): what is below it cannot exist yet
    /// either.
    Ready {
        made: bool,
    },
    Failed(Box<Cause>),
}

/// [`State`], borrowed from [`States`].
#[derive(Debug)]
enum StateRef<'a> {
    Absent,
    Pending(&'a Pending),
    Ready { made: bool },
    Failed(&'a Cause),
}

/// What [`States`] holds of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Absent,
    Pending,
    Ready,
    /// Ready, made by our MKDIR.
    Made,
    Failed,
}

/// The [`State`] of each name: a byte a name, and what the few directories on their way
/// (and the rare ones that failed) carry beside it, by name. A run may make a directory per
/// file: 16 bytes a name, grown by doubling, were megabytes of a large push's peak.
#[derive(Debug, Default)]
struct States {
    marks: Chunked<Mark>,
    pending: HashMap<Name, Box<Pending>>,
    failed: HashMap<Name, Box<Cause>>,
}

impl States {
    fn mark(&self, i: usize) -> Mark {
        self.marks.get(i).copied().unwrap_or(Mark::Absent)
    }

    fn get(&self, i: usize) -> StateRef<'_> {
        let name = i as Name;
        match self.mark(i) {
            Mark::Absent => StateRef::Absent,
            Mark::Pending => StateRef::Pending(&self.pending[&name]),
            Mark::Ready => StateRef::Ready { made: false },
            Mark::Made => StateRef::Ready { made: true },
            Mark::Failed => StateRef::Failed(&self.failed[&name]),
        }
    }

    /// Directory `i`'s progress, while it is on its way.
    fn pending_mut(&mut self, i: usize) -> Option<&mut Pending> {
        self.pending.get_mut(&(i as Name)).map(|p| &mut **p)
    }

    /// Puts `state` for directory `i`; what it was is returned.
    fn replace(&mut self, i: usize, state: State) -> State {
        let name = i as Name;
        self.marks.fill_to(i + 1, Mark::Absent);
        let old = match self.marks[i] {
            Mark::Absent => State::Absent,
            Mark::Pending => State::Pending(self.pending.remove(&name).expect("marked")),
            Mark::Ready => State::Ready { made: false },
            Mark::Made => State::Ready { made: true },
            Mark::Failed => State::Failed(self.failed.remove(&name).expect("marked")),
        };
        self.marks[i] = match state {
            State::Absent => Mark::Absent,
            State::Pending(p) => {
                self.pending.insert(name, p);
                Mark::Pending
            }
            State::Ready { made: false } => Mark::Ready,
            State::Ready { made: true } => Mark::Made,
            State::Failed(cause) => {
                self.failed.insert(name, cause);
                Mark::Failed
            }
        };
        old
    }

    fn set(&mut self, i: usize, state: State) {
        self.replace(i, state);
    }

    /// Lets go of a decided directory: it is as if never met.
    fn forget(&mut self, i: usize) {
        if let Some(mark @ (Mark::Ready | Mark::Made)) = self.marks.get_mut(i) {
            *mark = Mark::Absent;
        }
    }
}

/// The directories known (to the table and the confinement) beyond which the oldest are
/// forgotten: a push may make a directory per file, 200 000 new ones, and each held to the
/// end cost some 100 bytes (its name, its entries), megabytes of a large push's peak.
const FORGET_AT: usize = 1 << 13;

/// The most recently named directories, never forgotten: the next uploads' directories,
/// and their neighbours, are among them (an outlog names a directory's files together).
const KEEP_RECENT: usize = 1 << 11;

/// What [`DirTable::ensure`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ensure {
    /// Known to exist: go ahead.
    Ready,
    /// Being created; the waiter will be released by [`DirTable::on_reply`].
    Queued,
    Failed(Cause),
}

/// Directories created (or found) during this run, and those being created.
#[derive(Debug, Default)]
pub(crate) struct DirTable {
    /// By name (in `confine.names`, which numbers the directories here too): what is
    /// known of it.
    states: States,
    /// MKDIR requests sent, for statistics and tests.
    pub(crate) mkdirs_sent: u64,
    /// The server answers in order: a MKDIR may follow its parent's without waiting.
    pub(crate) in_order: bool,
    /// The directory everything goes below: neither it nor anything above it is ever made.
    pub(crate) base: Option<RemotePath>,
    /// Which existing directories are really below the base (no symlink on the way); it
    /// holds the names of both tables.
    pub(crate) confine: Confinement,
    /// New trees made under a stand-in name (in-order servers).
    staging: Staging,
}

/// A name with no entry in the confinement.
pub(crate) const ABSENT: u32 = u32::MAX;

/// Directories whose fate was decided, with their waiters.
pub(crate) type Released = Vec<(Waiter, Result<(), Cause>)>;

impl State {
    fn pending(stage: Stage) -> State {
        State::Pending(Box::new(Pending {
            stage,
            waiters: Vec::new(),
            retried: false,
            made: false,
        }))
    }
}

impl DirTable {
    /// The directories of the stand-ins this run sent and never heard the fate of (its
    /// connection ended before their RENAME was answered): each tree deepest first, its
    /// stand-in last, as they are to be removed. Nothing else names them: the caller
    /// keeps them for a later run to remove (`run::leftovers`).
    pub(crate) fn stand_ins_left(&self) -> Vec<RemotePath> {
        let mut left = Vec::new();
        for tree in self.staging.undecided() {
            let stand_in = tree.stand_in.as_ref().expect("sent");
            let top = self.path(tree.top);
            for &m in tree.members.iter().rev() {
                left.push(under_stand_in(stand_in, &top, &self.path(m)));
            }
        }
        left
    }

    pub(crate) fn path(&self, dir: usize) -> RemotePath {
        self.confine.names.path(dir as Name)
    }

    /// The number of `path` here, if it has one.
    fn find(&self, path: &RemotePath) -> Option<usize> {
        let i = self.confine.names.find(path)? as usize;
        match self.states.mark(i) {
            Mark::Absent => None,
            _ => Some(i),
        }
    }

    /// Whether this run's MKDIR made directory `i`.
    fn made(&self, i: usize) -> bool {
        self.states.mark(i) == Mark::Made
    }

    /// Directory `i`'s stage, while it is on its way.
    fn stage(&self, i: usize) -> Option<&Stage> {
        match self.states.get(i) {
            StateRef::Pending(p) => Some(&p.stage),
            _ => None,
        }
    }

    /// Moves directory `i`, on its way, to `stage`, its waiters kept.
    fn set_stage(&mut self, i: usize, stage: Stage) {
        match self.states.pending_mut(i) {
            Some(p) => p.stage = stage,
            None => self.states.set(i, State::pending(stage)),
        }
    }

    /// Adds `waiter` to directory `i`, which is on its way.
    fn wait_for(&mut self, i: usize, waiter: Waiter) {
        if let Some(p) = self.states.pending_mut(i) {
            p.waiters.push(waiter);
        }
    }

    /// Makes sure `path` exists, creating it if this run has not yet; `waiter` is released
    /// later when the answer is not known now.
    pub(crate) fn ensure(
        &mut self,
        path: &RemotePath,
        waiter: Waiter,
        session: &mut Session<Tag>,
    ) -> Ensure {
        self.ensure_for(path, Some(waiter), session)
    }

    /// Whether a new tree is still to be sent: directories made now below it join it.
    pub(crate) fn tree_open(&self) -> bool {
        !self.staging.unsent.is_empty()
    }

    /// Makes sure `path` exists, as [`DirTable::ensure`] does, for no one yet: an upload
    /// that will need it, made ahead (it joins a new tree where it can).
    pub(crate) fn ensure_ahead(&mut self, path: &RemotePath, session: &mut Session<Tag>) {
        let _ = self.ensure_for(path, None, session);
    }

    /// [`DirTable::ensure`], with `waiter` added by the caller where it wants one (a
    /// directory may rather join its parent's tree, see [`DirTable::join_tree`]).
    fn ensure_for(
        &mut self,
        path: &RemotePath,
        waiter: Option<Waiter>,
        session: &mut Session<Tag>,
    ) -> Ensure {
        if let Some(i) = self.find(path) {
            return match self.states.get(i) {
                StateRef::Absent => unreachable!("found"),
                StateRef::Ready { .. } => Ensure::Ready,
                StateRef::Failed(cause) => Ensure::Failed(cause.clone()),
                StateRef::Pending(_) => {
                    let p = self.states.pending_mut(i).expect("pending");
                    p.waiters.extend(waiter);
                    Ensure::Queued
                }
            };
        }
        if !self.may_make(path) {
            return Ensure::Failed(self.outside_base(path));
        }
        let i = self.confine.names.intern(path) as usize;
        self.states.set(
            i,
            State::pending(Stage::Creating {
                mkdir_failure: None,
            }),
        );
        if let Some(waiter) = waiter {
            self.wait_for(i, waiter);
        }
        // No one waits for it yet (a directory below that joins it, see `join_tree`, or an
        // upload made ahead of): its MKDIR need not go ahead of this turn's requests, and
        // it may head a new tree.
        let for_child = waiter.is_none();
        if let Err(cause) = self.send_mkdir(i, session, for_child) {
            self.states.set(i, State::Failed(Box::new(cause.clone())));
            return Ensure::Failed(cause);
        }
        Ensure::Queued
    }

    /// Whether directory `i` is being made, or was made, by this run.
    fn is_new(&self, i: usize) -> bool {
        matches!(self.states.mark(i), Mark::Made | Mark::Pending)
    }

    /// Whether `path` surely does not exist: the table does not know it, and the nearest
    /// directory above it that the table knows is one this run is making or made.
    pub(crate) fn known_missing(&self, path: &RemotePath) -> bool {
        if self.find(path).is_some() {
            return false;
        }
        if self.confine.known(path) == Some(Known::Missing) {
            return true;
        }
        let mut at = self.parent_of(path);
        while let Some(p) = at {
            if let Some(i) = self.find(&p) {
                return self.is_new(i);
            }
            at = self.parent_of(&p);
        }
        false
    }
    /// Where an upload into directory `dir` that is not there yet writes aside (see the
    /// batch's `upload`): the directory above it, where that is known to be inside (made
    /// by this run, or found inside by the confinement; the base counts). Only there, never
    /// higher: a rerun then knows where a killed run may have left such a file, and clears
    /// it there (only there too, where that is known to be inside).
    pub(crate) fn aside_for(&self, dir: &RemotePath) -> Option<RemotePath> {
        let above = self.aside_dir(dir)?;
        let made = self.find(&above).is_some_and(|i| self.made(i));
        (made || self.confine.known(&above) == Some(Known::Inside)).then_some(above)
    }

    /// The directory above `dir` if it is the base or below it: where a temporary file of
    /// an upload into `dir` may be aside ([`RemotePath::temp_aside`]).
    fn aside_dir(&self, dir: &RemotePath) -> Option<RemotePath> {
        let above = dir.parent()?;
        (self.base.as_ref() == Some(&above) || self.may_make(&above)).then_some(above)
    }

    /// Whether `dir` is on its way: its MKDIR (or what follows a failed one) is in flight,
    /// or waits for its parent. Nothing goes into it until it is decided.
    pub(crate) fn on_its_way(&self, dir: &RemotePath) -> bool {
        self.find(dir)
            .is_some_and(|i| self.states.mark(i) == Mark::Pending)
    }

    /// Whether this run's MKDIR made `dir`.
    pub(crate) fn made_here(&self, dir: &RemotePath) -> bool {
        self.find(dir).is_some_and(|i| self.made(i))
    }

    /// Whether `path` may be made: strictly below the base (anywhere without one).
    fn may_make(&self, path: &RemotePath) -> bool {
        match &self.base {
            None => true,
            Some(base) => {
                let (b, p) = (base.as_bytes(), path.as_bytes());
                p.len() > b.len() && p.starts_with(b) && (p[b.len()] == b'/' || b == b"/")
            }
        }
    }

    fn outside_base(&self, path: &RemotePath) -> Cause {
        Cause::Status {
            request: Req::Mkdir,
            code: Status::NoSuchFile,
            message: format!("{path} is not below the target directory, which must exist",),
        }
    }

    /// The directory above `path`, unless that is the base or above it (never made here).
    fn parent_of(&self, path: &RemotePath) -> Option<RemotePath> {
        let parent = path.parent()?;
        if let Some(base) = &self.base {
            let (b, p) = (base.as_bytes(), parent.as_bytes());
            if b.starts_with(p) && (b.len() == p.len() || b[p.len()] == b'/' || p == b"/") {
                return None;
            }
        }
        Some(parent)
    }

    /// Why `path` could not be made, if it could not.
    pub(crate) fn failure(&self, path: &RemotePath) -> Option<Cause> {
        let i = self.find(path)?;
        match self.states.get(i) {
            StateRef::Failed(cause) => Some(cause.clone()),
            _ => None,
        }
    }

    /// Sends directory `i`'s MKDIR, once its parent is known to be ours to make it in: one
    /// this run makes, or one that resolves inside the target. A parent that resolves
    /// elsewhere (a symlink) is the error returned: nothing is made there.
    /// `for_child`: a directory below waits to join it in a new tree (see
    /// [`DirTable::mkdir_or_stage`]).
    fn send_mkdir(
        &mut self,
        i: usize,
        session: &mut Session<Tag>,
        for_child: bool,
    ) -> Result<(), Cause> {
        let Some(parent) = self.parent_of(&self.path(i)) else {
            // Its parent is the base: the administrator's, wherever it is.
            self.mkdir_or_stage(i, session, for_child);
            return Ok(());
        };
        if let Some(p) = self.find(&parent) {
            match self.states.get(p) {
                StateRef::Ready { made: true } => {
                    self.mkdir_now(i, session);
                    return Ok(());
                }
                // Right behind the parent's MKDIR (an in-order server then makes this one
                // inside it, no round trip spent) only where the parent is known to be a
                // real directory inside already. One that did not exist when looked at may
                // be a symlink by the time its MKDIR comes (another client planted it; the
                // MKDIR then fails), and a MKDIR sent behind it would be made through it.
                StateRef::Pending(pending)
                    if matches!(pending.stage, Stage::Creating { .. })
                        && self.confine.known(&parent) == Some(Known::Inside) =>
                {
                    self.mkdir_now(i, session);
                    return Ok(());
                }
                // Wait for its fate: made by this MKDIR, or found to be what it is; or made
                // in its tree, if that is still to be sent.
                StateRef::Pending(_) => {
                    self.join_or_wait(i, p);
                    return Ok(());
                }
                StateRef::Failed(cause) => return Err(cause.clone()),
                StateRef::Ready { made: false } | StateRef::Absent => {}
            }
        }
        // What is known of a parent this run has not met: below one found missing, it is
        // missing too (and nothing is asked); otherwise it is asked about below.
        self.confine.prefetch(&parent, session);
        // A parent found missing is made first, top-down: a MKDIR per level, none failing
        // for want of its parent.
        if self.confine.known(&parent) == Some(Known::Missing) {
            match self.ensure_for(&parent, None, session) {
                Ensure::Queued => {
                    let p = self.find(&parent).expect("queued");
                    self.join_or_wait(i, p);
                }
                Ensure::Ready => self.mkdir_now(i, session),
                Ensure::Failed(cause) => return Err(cause),
            }
            return Ok(());
        }
        // A parent that exists and that this run did not make: is it really below the base?
        match self.confine.check(&parent, Waiter::Dir(i), session) {
            Verdict::Inside => self.mkdir_or_stage(i, session, for_child),
            Verdict::Outside(cause) => return Err(cause),
            Verdict::Pending => self.set_stage(i, Stage::Confining),
        }
        Ok(())
    }

    /// Whether `dir` is where it should be below the base, for `waiter` to remove, rename
    /// or link in it: known already (this run made it, or it resolved so), or asked.
    pub(crate) fn check_inside(
        &mut self,
        dir: &RemotePath,
        waiter: Waiter,
        session: &mut Session<Tag>,
    ) -> Verdict {
        let known = self.find(dir);
        if known.is_some_and(|i| self.made(i)) {
            return Verdict::Inside;
        }
        // Below a directory this run made, nothing was there before: no symlink either,
        // and nothing to ask.
        let parent_made = self
            .parent_of(dir)
            .and_then(|p| self.find(&p))
            .is_some_and(|i| self.made(i));
        if known.is_none() && parent_made {
            return Verdict::Inside;
        }
        self.confine.check(dir, waiter, session)
    }

    /// Sends the MKDIR of directory `i`, or decides it failed when that cannot be.
    fn mkdir_or_fail(&mut self, i: usize, session: &mut Session<Tag>, released: &mut Released) {
        if let Err(cause) = self.send_mkdir(i, session, false) {
            self.settle(i, Err(cause), session, released);
        }
    }

    /// The answers on where directories are: the target directory's resolution (`dir`
    /// `None`) or request `req` about directory `dir`. Directories waiting for a verdict get
    /// their MKDIR or fail; operations waiting are returned.
    pub(crate) fn on_confine_reply(
        &mut self,
        dir: Option<(usize, Req)>,
        response: Response,
        session: &mut Session<Tag>,
    ) -> Released {
        let judged = match dir {
            None => self.confine.on_root(response),
            Some((k, req)) => self.confine.on_reply(k, req, response),
        };
        self.release(judged, session)
    }

    /// The answer of the target directory's STAT (see [`Confinement::on_target_stat`]).
    pub(crate) fn on_target_stat(
        &mut self,
        response: Response,
        session: &mut Session<Tag>,
    ) -> Released {
        let judged = self.confine.on_target_stat(response);
        self.release(judged, session)
    }

    /// Passes the confinement's verdicts on: directories waiting get their MKDIR or fail;
    /// operations waiting are returned.
    fn release(&mut self, judged: super::confine::Judged, session: &mut Session<Tag>) -> Released {
        let mut released = Vec::new();
        for (waiter, verdict) in judged {
            match (waiter, verdict) {
                (Waiter::Op(_), verdict) => released.push((waiter, verdict)),
                (Waiter::Dir(d), Ok(()))
                    if matches!(self.stage(d), Some(Stage::Rechecking { .. })) =>
                {
                    self.stat_after_failed_mkdir(d, session)
                }
                (Waiter::Dir(d), Ok(())) => self.mkdir_now(d, session),
                (Waiter::Dir(d), Err(cause)) => self.settle(d, Err(cause), session, &mut released),
            }
        }
        released
    }

    /// Sends the STAT that tells whether directory `i`, whose MKDIR failed and whose name
    /// resolved where it should, is a directory.
    fn stat_after_failed_mkdir(&mut self, i: usize, session: &mut Session<Tag>) {
        let mkdir_failure = match self.states.pending_mut(i) {
            Some(p) => match std::mem::replace(&mut p.stage, Stage::WaitingParent) {
                Stage::Rechecking { mkdir_failure } => Some(mkdir_failure),
                _ => None,
            },
            None => None,
        };
        self.set_stage(i, Stage::Creating { mkdir_failure });
        session.send(
            Request::Stat {
                path: self.path(i).as_bytes().to_vec(),
            },
            Tag::Dir {
                dir: i,
                req: Req::Stat,
            },
        );
    }

    /// Directory `i`, whose parent is inside, is to be made: on an in-order server, where
    /// the check found it missing and a directory below is to be made too (`for_child`),
    /// as the top of a tree under a stand-in name (sent by [`DirTable::flush`], with
    /// whatever joins it meanwhile); else by its MKDIR now. A directory with nothing to be
    /// made below it gains nothing by a tree, and its MKDIR goes ahead of the uploads into
    /// it: their OPENs aside are answered after it, so their renames into it go at once.
    fn mkdir_or_stage(&mut self, i: usize, session: &mut Session<Tag>, for_child: bool) {
        let path = self.path(i);
        let fits = staging::fits(&path);
        let missing = self.confine.known(&path) == Some(Known::Missing);
        if !(for_child && self.in_order && !self.staging.refused && fits && missing) {
            return self.mkdir_now(i, session);
        }
        let tree = self.staging.begin(i);
        self.set_stage(i, Stage::Staged { tree, built: None });
    }

    /// Directory `i` is made with its parent `p`, on its way: in `p`'s tree if that is still
    /// to be sent, else once `p` is decided.
    fn join_or_wait(&mut self, i: usize, p: usize) {
        if !self.join_tree(i, p) {
            self.wait_for(p, Waiter::Dir(i));
            self.set_stage(i, Stage::WaitingParent);
        }
    }

    /// Puts directory `i` into the tree of its parent `p`, if that is still to be sent;
    /// false otherwise.
    fn join_tree(&mut self, i: usize, p: usize) -> bool {
        let Some(&Stage::Staged { tree, built: None }) = self.stage(p) else {
            return false;
        };
        match self.staging.unsent_tree(tree) {
            Some(t) => t.members.push(i),
            None => return false,
        }
        self.set_stage(i, Stage::Staged { tree, built: None });
        true
    }

    /// Sends the trees staged since the last call: each tree's MKDIRs under its stand-in
    /// name, parents first, then the RENAME that puts it in place. A tree of one directory
    /// is made by its MKDIR, as any other. Called once a turn's requests are queued, before
    /// they are written; then, when many directories are known, the oldest decided ones are
    /// forgotten ([`DirTable::forget_old`]).
    pub(crate) fn flush(&mut self, session: &mut Session<Tag>) {
        self.send_trees(session);
        self.forget_old(session);
    }

    /// Forgets the oldest directories decided, once [`FORGET_AT`] are known: a directory
    /// met again is then asked about again (its REALPATH and LSTAT), as one this run never
    /// met, and found where it is. Forgetting only ever leaves less known: nothing is taken
    /// for inside, or missing, that was not found so. Kept: the [`KEEP_RECENT`] named last,
    /// what is on its way (its MKDIR, its confinement's questions, a tree) or failed, what
    /// was found outside, anything a request in flight is about, and every directory above
    /// one kept.
    fn forget_old(&mut self, session: &Session<Tag>) {
        let names = &self.confine.names;
        if names.live() < FORGET_AT {
            return;
        }
        let len = names.len();
        let mut keep = vec![false; len];
        let mut hold = |n: usize| {
            let mut at = Some(n as Name);
            while let Some(m) = at.filter(|&m| !keep[m as usize]) {
                keep[m as usize] = true;
                at = names.parent(m);
            }
        };
        for n in 0..len {
            let held = n + KEEP_RECENT >= len
                || matches!(self.states.mark(n), Mark::Pending | Mark::Failed)
                || self.confine.must_keep(n as Name);
            if held && names.is_live(n as Name) {
                hold(n);
            }
        }
        for tag in session.in_flight_tags() {
            match *tag {
                Tag::Dir { dir, .. } => hold(dir),
                Tag::Confine { dir, .. } => hold(self.confine.name_of(dir) as usize),
                _ => {}
            }
        }
        self.confine.names.forget(|n| keep[n as usize]);
        for (n, _) in keep.iter().enumerate().filter(|(_, kept)| !**kept) {
            self.states.forget(n);
            self.confine.forget(n as Name);
        }
    }

    /// Sends the trees staged since the last call (see [`DirTable::flush`]).
    fn send_trees(&mut self, session: &mut Session<Tag>) {
        for tree in std::mem::take(&mut self.staging.unsent) {
            let (top, members) = {
                let t = self.staging.tree(tree);
                (t.top, t.members.clone())
            };
            let top_path = self.path(top);
            let stand_in = match self.staging.stand_in(&top_path, tree) {
                Some(stand_in) if members.len() > 1 => stand_in,
                _ => {
                    self.staging.end(tree);
                    self.mkdir_now(top, session);
                    continue;
                }
            };
            for &m in &members {
                self.mkdirs_sent += 1;
                let at = under_stand_in(&stand_in, &top_path, &self.path(m));
                session.send(
                    Request::Mkdir {
                        path: at.as_bytes().to_vec(),
                        attrs: Attrs {
                            permissions: Some(0o755),
                            ..Attrs::default()
                        },
                    },
                    Tag::Dir {
                        dir: m,
                        req: Req::Mkdir,
                    },
                );
            }
            session.send(
                Request::Rename {
                    from: stand_in.as_bytes().to_vec(),
                    to: top_path.as_bytes().to_vec(),
                },
                Tag::Dir {
                    dir: top,
                    req: Req::Rename,
                },
            );
            self.staging.tree(tree).stand_in = Some(stand_in);
        }
    }

    /// A reply about a directory of a staged tree: its MKDIR under the stand-in, or the
    /// tree's RENAME into place.
    fn staged_reply(
        &mut self,
        i: usize,
        tree: usize,
        req: Req,
        response: Response,
        session: &mut Session<Tag>,
        released: &mut Released,
    ) {
        let ok = matches!(
            response,
            Response::Status {
                code: StatusCode::Ok,
                ..
            }
        );
        if req == Req::Mkdir {
            self.set_stage(
                i,
                Stage::Staged {
                    tree,
                    built: Some(ok),
                },
            );
            if !ok && i == self.staging.tree(tree).top {
                self.staging.tree(tree).top_failure = Some(response);
            }
            return;
        }
        let members = std::mem::take(&mut self.staging.tree(tree).members);
        if ok {
            self.staging.end(tree);
            return self.tree_in_place(&members, session, released);
        }
        self.tree_not_in_place(tree, &members, response, session, released);
    }

    /// A staged tree's RENAME failed: the name was taken meanwhile, or the tree could not
    /// be moved. The stand-in is cleared, best effort, and the top is dealt with as a MKDIR
    /// that failed; the rest wait for it and are made as usual.
    fn tree_not_in_place(
        &mut self,
        tree: usize,
        members: &[usize],
        response: Response,
        session: &mut Session<Tag>,
        released: &mut Released,
    ) {
        let stand_in = self.staging.tree(tree).stand_in.clone().expect("sent");
        let top_path = self.path(members[0]);
        for &m in members.iter().rev() {
            let at = under_stand_in(&stand_in, &top_path, &self.path(m));
            session.send(
                Request::Rmdir {
                    path: at.as_bytes().to_vec(),
                },
                Tag::Sweep,
            );
        }
        for &m in &members[1..] {
            let p = self.parent_of(&self.path(m)).and_then(|p| self.find(&p));
            self.set_stage(m, Stage::WaitingParent);
            self.wait_for(
                p.expect("a member's parent is in the table"),
                Waiter::Dir(m),
            );
        }
        self.set_stage(
            members[0],
            Stage::Creating {
                mkdir_failure: None,
            },
        );
        // As a MKDIR of the top that failed as its MKDIR under the stand-in did; or, where
        // the name is taken (OpenSSH says FAILURE), as one that found it taken: what is
        // there is looked at.
        let taken = matches!(
            response,
            Response::Status {
                code: StatusCode::Failure,
                ..
            }
        );
        let top_failure = self.staging.tree(tree).top_failure.take();
        self.staging.end(tree);
        match top_failure {
            Some(failed) => self.step(members[0], Req::Mkdir, failed, session, released),
            None if taken => self.step(members[0], Req::Mkdir, response, session, released),
            // A server that will not rename (`sftp-server -P rename`) gets plain MKDIRs,
            // from now on.
            None => {
                log::debug!(
                    "a new tree could not be renamed into place ({:?}): directories are made \
                     one level at a time",
                    reply_name(&response)
                );
                self.staging.refused = true;
                self.mkdir_now(members[0], session);
            }
        }
    }

    /// A staged tree is in place: each directory whose MKDIR under the stand-in worked is
    /// made; one whose MKDIR did not is made now, where it is (its parent is ours).
    fn tree_in_place(
        &mut self,
        members: &[usize],
        session: &mut Session<Tag>,
        released: &mut Released,
    ) {
        for &m in members {
            match self.stage(m) {
                Some(Stage::Staged {
                    built: Some(true), ..
                }) => {
                    if let Some(p) = self.states.pending_mut(m) {
                        p.made = true;
                    }
                    self.settle(m, Ok(()), session, released);
                }
                _ => {
                    self.set_stage(m, Stage::WaitingParent);
                    self.mkdir_or_fail(m, session, released);
                }
            }
        }
    }

    fn mkdir_now(&mut self, i: usize, session: &mut Session<Tag>) {
        self.mkdirs_sent += 1;
        session.send(
            Request::Mkdir {
                path: self.path(i).as_bytes().to_vec(),
                attrs: Attrs {
                    permissions: Some(0o755),
                    ..Attrs::default()
                },
            },
            Tag::Dir {
                dir: i,
                req: Req::Mkdir,
            },
        );
        self.set_stage(
            i,
            Stage::Creating {
                mkdir_failure: None,
            },
        );
    }

    /// Handles the reply to a request this table sent; returns the waiters it releases.
    pub(crate) fn on_reply(
        &mut self,
        i: usize,
        req: Req,
        response: Response,
        session: &mut Session<Tag>,
    ) -> Released {
        let mut released = Vec::new();
        self.step(i, req, response, session, &mut released);
        released
    }

    /// Moves directory `i` on with the reply to its MKDIR, or to the STAT after a failed one.
    fn step(
        &mut self,
        i: usize,
        req: Req,
        response: Response,
        session: &mut Session<Tag>,
        released: &mut Released,
    ) {
        if let Some(&Stage::Staged { tree, .. }) = self.stage(i) {
            return self.staged_reply(i, tree, req, response, session, released);
        }
        match (req, response) {
            (
                Req::Mkdir,
                Response::Status {
                    code: StatusCode::Ok,
                    ..
                },
            ) => {
                if let Some(p) = self.states.pending_mut(i) {
                    p.made = true;
                }
                self.settle(i, Ok(()), session, released)
            }
            (
                Req::Mkdir,
                Response::Status {
                    code: StatusCode::NoSuchFile,
                    message,
                    ..
                },
            ) => {
                let failure = status_cause(Req::Mkdir, StatusCode::NoSuchFile, &message);
                self.parent_missing(i, failure, session, released);
            }
            (Req::Mkdir, Response::Status { code, message, .. }) => {
                // Perhaps it exists already: where it resolves, then one STAT, tell.
                let mkdir_failure = status_cause(Req::Mkdir, code, &message);
                self.set_stage(i, Stage::Rechecking { mkdir_failure });
                let path = self.path(i);
                match self.confine.recheck(&path, Waiter::Dir(i), session) {
                    Verdict::Inside => self.stat_after_failed_mkdir(i, session),
                    Verdict::Outside(cause) => self.settle(i, Err(cause), session, released),
                    Verdict::Pending => {}
                }
            }
            (Req::Stat, response) => {
                let mkdir_failure = match self.states.pending_mut(i) {
                    Some(p) => match &mut p.stage {
                        Stage::Creating { mkdir_failure } => mkdir_failure.take(),
                        _ => None,
                    },
                    None => None,
                };
                let failure = mkdir_failure.unwrap_or(Cause::UnexpectedReply {
                    request: Req::Mkdir,
                    reply: Reply::Failure,
                });
                let result = match response {
                    Response::Attrs(a) if a.is_dir() => Ok(()),
                    _ => Err(failure),
                };
                self.settle(i, result, session, released);
            }
            (request, other) => {
                let cause = Cause::UnexpectedReply {
                    request,
                    reply: reply_name(&other),
                };
                self.settle(i, Err(cause), session, released);
            }
        }
    }

    /// The MKDIR of directory `i` found no parent (`failure`): the parent is made first and
    /// the MKDIR sent again, once.
    fn parent_missing(
        &mut self,
        i: usize,
        failure: Cause,
        session: &mut Session<Tag>,
        released: &mut Released,
    ) {
        // The parent first, and this one again once it is made: not both at once, even on
        // an in-order server (a MKDIR behind one that fails could be made through a
        // symlink planted there; see `send_mkdir`).
        let parent = self.parent_of(&self.path(i));
        match parent {
            None => self.settle(i, Err(failure), session, released),
            Some(parent) => match self.ensure(&parent, Waiter::Dir(i), session) {
                Ensure::Queued => self.set_stage(i, Stage::WaitingParent),
                Ensure::Ready if self.first_retry(i) => self.mkdir_or_fail(i, session, released),
                // Still no parent although it exists: give up rather than loop.
                Ensure::Ready => self.settle(i, Err(failure), session, released),
                Ensure::Failed(cause) => self.settle(i, Err(cause), session, released),
            },
        }
    }

    /// Whether directory `i`'s MKDIR, which found no parent, was not retried yet: it is now.
    fn first_retry(&mut self, i: usize) -> bool {
        match self.states.pending_mut(i) {
            Some(p) if !p.retried => {
                p.retried = true;
                true
            }
            _ => false,
        }
    }

    /// Decides directory `i` and passes the verdict on to its waiters: operations are
    /// released to the caller, child directories get their MKDIR retried (or fail too).
    fn settle(
        &mut self,
        i: usize,
        result: Result<(), Cause>,
        session: &mut Session<Tag>,
        released: &mut Released,
    ) {
        let path = self.path(i);
        let made = matches!(self.states.get(i), StateRef::Pending(p) if p.made);
        let decided = match &result {
            Ok(()) => State::Ready { made },
            Err(cause) => State::Failed(Box::new(cause.clone())),
        };
        let waiters = match self.states.replace(i, decided) {
            State::Pending(p) => p.waiters,
            _ => Vec::new(),
        };
        // What fails below a directory that could not be made names that directory (the
        // one that is the cause), not each of its own.
        let below = |cause: &Cause| match cause {
            Cause::Directory { .. } => cause.clone(),
            _ => Cause::Directory {
                dir: path.clone(),
                cause: Box::new(cause.clone()),
            },
        };
        for waiter in waiters {
            match (waiter, &result) {
                (Waiter::Op(_), Ok(())) => released.push((waiter, Ok(()))),
                (Waiter::Op(_), Err(cause)) => released.push((waiter, Err(below(cause)))),
                (Waiter::Dir(child), Ok(())) => self.mkdir_or_fail(child, session, released),
                (Waiter::Dir(child), Err(cause)) => {
                    self.settle(child, Err(below(cause)), session, released)
                }
            }
        }
    }
}

pub(crate) fn status_cause(request: Req, code: StatusCode, message: &[u8]) -> Cause {
    Cause::Status {
        request,
        code: code.into(),
        message: String::from_utf8_lossy(message).into_owned(),
    }
}

/// What kind of reply `response` is, for a [`Cause::UnexpectedReply`].
pub(crate) fn reply_name(response: &Response) -> Reply {
    match response {
        Response::Status { .. } => Reply::Status,
        Response::Handle(_) => Reply::Handle,
        Response::Data(_) => Reply::Data,
        Response::Name(_) => Reply::Name,
        Response::Attrs(_) => Reply::Attrs,
        Response::ExtendedReply(_) => Reply::Extended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::wire::Packet;

    fn status(code: StatusCode) -> Response {
        Response::Status {
            code,
            message: b"msg".to_vec(),
            language: vec![],
        }
    }

    /// The requests the table queued, decoded, with the tags they carry.
    fn sent(session: &mut Session<Tag>) -> Vec<Request> {
        let mut out = Vec::new();
        let mut bytes = session.take_output();
        while let Ok(crate::sftp::wire::Frame::Complete { body, consumed }) =
            crate::sftp::wire::frame(&bytes)
        {
            if let Ok(Packet::Request { request, .. }) = Packet::decode_from_client(body) {
                out.push(request);
            }
            bytes.drain(..consumed);
        }
        out
    }

    fn path(s: &str) -> RemotePath {
        RemotePath::new(s).unwrap()
    }

    /// A table whose directories all count as inside: no REALPATH or LSTAT before a MKDIR.
    /// Its directories are numbered as their names are, parents first (`a/b/c` gives `a`
    /// 0, `a/b` 1 and itself 2).
    fn unconfined() -> DirTable {
        let mut t = DirTable::default();
        t.confine.trusting = true;
        t
    }

    #[test]
    fn nothing_is_made_in_a_directory_that_resolves_elsewhere() {
        let mut session = Session::new();
        let mut t = DirTable {
            base: Some(path("/m")),
            ..DirTable::default()
        };
        t.confine.base = Some(path("/m"));
        let name = |p: &str| {
            Response::Name(vec![crate::sftp::wire::NameEntry {
                filename: p.as_bytes().to_vec(),
                longname: Vec::new(),
                attrs: Attrs::default(),
            }])
        };
        assert!(
            t.on_confine_reply(None, name("/m"), &mut session)
                .is_empty()
        );
        sent(&mut session);
        // A MKDIR under an existing directory waits for where that one (and each above it)
        // is: REALPATH and LSTAT of each.
        t.ensure(&path("/m/pool/x/y"), Waiter::Op(1), &mut session);
        let asked: Vec<Request> = ["/m/pool", "/m/pool/x"]
            .iter()
            .flat_map(|p| {
                let path = p.as_bytes().to_vec();
                [
                    Request::Realpath { path: path.clone() },
                    Request::Lstat { path },
                ]
            })
            .collect();
        assert_eq!(sent(&mut session), asked);
        let dir = Attrs {
            permissions: Some(0o40755),
            ..Attrs::default()
        };
        let mut released = Vec::new();
        for (k, resolved) in [(0, "/m/pool"), (1, "/etc")] {
            released.extend(t.on_confine_reply(
                Some((k, Req::Realpath)),
                name(resolved),
                &mut session,
            ));
            let attrs = Response::Attrs(dir.clone());
            released.extend(t.on_confine_reply(Some((k, Req::Lstat)), attrs, &mut session));
        }
        assert_eq!(released.len(), 1);
        let (Waiter::Op(1), Err(cause)) = &released[0] else {
            panic!("{released:?}")
        };
        assert!(cause.to_string().contains("outside the target"), "{cause}");
        assert!(sent(&mut session).is_empty(), "a MKDIR went out");
        assert_eq!(t.mkdirs_sent, 0);
    }

    #[test]
    fn the_oldest_decided_directories_are_forgotten_and_made_again_if_met_again() {
        let mut session = Session::new();
        let mut t = unconfined();
        let dir = |k: usize| path(&format!("d/{k}"));
        // `d` is 0, `d/k` is k + 1.
        let count = FORGET_AT + 10;
        for k in 0..count {
            assert_eq!(
                t.ensure(&dir(k), Waiter::Op(k), &mut session),
                Ensure::Queued
            );
            if k != 5 {
                let released = t.on_reply(k + 1, Req::Mkdir, status(StatusCode::Ok), &mut session);
                assert_eq!(released.len(), 1);
            }
        }
        // (The replies above were handed in without the session: its requests all count
        // as in flight, and what they are about is kept.)
        let mut session = Session::new();
        t.flush(&mut session);
        let names = &t.confine.names;
        assert!(names.live() <= KEEP_RECENT + 2, "{} left", names.live());
        // What is on its way stays, and the directories above it; so do the recent ones.
        assert!(t.on_its_way(&dir(5)));
        assert!(t.made_here(&dir(count - 1)));
        assert!(!t.made_here(&dir(6)));
        let released = t.on_reply(6, Req::Mkdir, status(StatusCode::Ok), &mut session);
        assert_eq!(released, vec![(Waiter::Op(5), Ok(()))]);
        assert!(t.made_here(&dir(5)));
        // One forgotten is made (here: found made) again, under a new number.
        assert_eq!(
            t.ensure(&dir(6), Waiter::Op(1), &mut session),
            Ensure::Queued
        );
        assert_eq!(sent(&mut session).len(), 1);
        let again = count + 1;
        assert_eq!(t.path(again), dir(6));
        let released = t.on_reply(again, Req::Mkdir, status(StatusCode::Ok), &mut session);
        assert_eq!(released, vec![(Waiter::Op(1), Ok(()))]);
        assert_eq!(
            t.ensure(&dir(6), Waiter::Op(2), &mut session),
            Ensure::Ready
        );
    }

    #[test]
    fn many_waiters_one_mkdir() {
        let mut session = Session::new();
        sent(&mut session);
        let mut t = unconfined();
        for op in 0..50 {
            assert_eq!(
                t.ensure(&path("a/b"), Waiter::Op(op), &mut session),
                Ensure::Queued
            );
        }
        assert_eq!(
            sent(&mut session),
            vec![Request::Mkdir {
                path: b"a/b".to_vec(),
                attrs: Attrs {
                    permissions: Some(0o755),
                    ..Attrs::default()
                }
            }]
        );
        let released = t.on_reply(1, Req::Mkdir, status(StatusCode::Ok), &mut session);
        assert_eq!(released.len(), 50);
        assert!(released.iter().all(|(_, r)| r.is_ok()));
        assert_eq!(t.mkdirs_sent, 1);
        // Later ensures are answered from the table, with no request.
        assert_eq!(
            t.ensure(&path("a/b"), Waiter::Op(99), &mut session),
            Ensure::Ready
        );
        assert!(sent(&mut session).is_empty());
    }

    #[test]
    fn missing_parents_are_created_top_down() {
        let mut session = Session::new();
        sent(&mut session);
        let mut t = unconfined();
        t.ensure(&path("a/b/c"), Waiter::Op(7), &mut session);
        let mk = |p: &str| Request::Mkdir {
            path: p.as_bytes().to_vec(),
            attrs: Attrs {
                permissions: Some(0o755),
                ..Attrs::default()
            },
        };
        assert_eq!(sent(&mut session), vec![mk("a/b/c")]);
        assert!(
            t.on_reply(2, Req::Mkdir, status(StatusCode::NoSuchFile), &mut session)
                .is_empty()
        );
        assert_eq!(sent(&mut session), vec![mk("a/b")]);
        t.on_reply(1, Req::Mkdir, status(StatusCode::NoSuchFile), &mut session);
        assert_eq!(sent(&mut session), vec![mk("a")]);
        assert!(
            t.on_reply(0, Req::Mkdir, status(StatusCode::Ok), &mut session)
                .is_empty()
        );
        assert_eq!(sent(&mut session), vec![mk("a/b")]);
        t.on_reply(1, Req::Mkdir, status(StatusCode::Ok), &mut session);
        assert_eq!(sent(&mut session), vec![mk("a/b/c")]);
        let released = t.on_reply(2, Req::Mkdir, status(StatusCode::Ok), &mut session);
        assert_eq!(released, vec![(Waiter::Op(7), Ok(()))]);
        assert_eq!(t.mkdirs_sent, 5);
    }

    #[test]
    fn an_existing_directory_is_confirmed_by_stat() {
        let mut session = Session::new();
        sent(&mut session);
        let mut t = unconfined();
        t.ensure(&path("d"), Waiter::Op(1), &mut session);
        sent(&mut session);
        t.on_reply(0, Req::Mkdir, status(StatusCode::Failure), &mut session);
        assert_eq!(
            sent(&mut session),
            vec![Request::Stat {
                path: b"d".to_vec()
            }]
        );
        let dir = Attrs {
            permissions: Some(0o40755),
            ..Attrs::default()
        };
        let released = t.on_reply(0, Req::Stat, Response::Attrs(dir), &mut session);
        assert_eq!(released, vec![(Waiter::Op(1), Ok(()))]);
    }

    #[test]
    fn a_file_in_the_way_fails_every_waiter_with_the_mkdir_status() {
        let mut session = Session::new();
        sent(&mut session);
        let mut t = unconfined();
        t.ensure(&path("f/x"), Waiter::Op(1), &mut session);
        t.ensure(&path("f/y"), Waiter::Op(2), &mut session);
        // f/x and f/y: no parent; f is a file.
        t.on_reply(1, Req::Mkdir, status(StatusCode::NoSuchFile), &mut session);
        t.on_reply(2, Req::Mkdir, status(StatusCode::NoSuchFile), &mut session);
        t.on_reply(0, Req::Mkdir, status(StatusCode::Failure), &mut session);
        let file = Attrs {
            permissions: Some(0o100644),
            ..Attrs::default()
        };
        let released = t.on_reply(0, Req::Stat, Response::Attrs(file), &mut session);
        assert_eq!(released.len(), 2);
        for (_, r) in released {
            let Err(Cause::Directory { dir, cause }) = r else {
                panic!("expected failure")
            };
            assert_eq!(dir.as_bytes()[0], b'f');
            assert!(matches!(
                *cause,
                Cause::Status {
                    code: Status::Failure,
                    request: Req::Mkdir,
                    ..
                }
            ));
        }
        // A later op asking for f/x learns the failure without a request.
        assert!(matches!(
            t.ensure(&path("f/x"), Waiter::Op(3), &mut session),
            Ensure::Failed(_)
        ));
    }
}
