//! Confinement: nothing is created, written, renamed onto or removed through a remote
//! symlink or outside the target directory.
//!
//! Each directory an operation works in is checked once per connection, before the
//! operation's request goes, with two requests in one flight: REALPATH (where the server
//! resolves it) and LSTAT (whether it is a symlink itself); so is each directory above it,
//! up to the target directory. Servers differ, and no one answer suffices on all of them:
//! OpenSSH's and ProFTPD's REALPATH resolve symlinks, but ProFTPD's LSTAT follows them;
//! paramiko's example server resolves only the text of the path, but its LSTAT is true;
//! asyncssh's in a chroot answers NO_SUCH_FILE to a REALPATH that leads out of it. A
//! directory is inside when the REALPATH gives the resolved target directory followed by the
//! rest of the path, unchanged, the LSTAT shows no symlink, and its parent is inside. It is
//! missing when both say NO_SUCH_FILE (or its parent is missing): then it can be made, by
//! this run. Anything else is outside, and nothing is done there.
//!
//! The target directory itself is resolved once, at set-up: it is the administrator's, and
//! may well be a symlink. A STAT of it goes in the same flight: where it is missing or no
//! directory, nothing below it is judged inside, and every operation fails with one cause
//! ([`Cause::Target`]) that its caller says once.
//!
//! Pure, like `dirs`: requests are queued on the session, replies handed in; no I/O, no
//! clock. It must not let anything through on a guess: what it cannot tell is outside.

use std::collections::HashMap;

use super::dirs::{ABSENT, Chunked, Name, Names, Waiter};
use super::op::{Cause, Req, Tag};
use crate::remote_path::RemotePath;
use crate::sftp::session::Session;
use crate::sftp::wire::{Request, Response, StatusCode};

/// What one of the two requests said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Answer {
    #[default]
    Awaited,
    /// REALPATH: the resolved path; LSTAT: whether it is a symlink.
    Resolved(Vec<u8>),
    Link(bool),
    NoSuchFile,
    /// The server does not do this request, or will not (OP_UNSUPPORTED, PERMISSION_DENIED:
    /// OpenSSH's `sftp-server -P` refuses requests by name so).
    Unsupported,
    /// Anything else: not known to be safe.
    Odd(String),
}

/// What is decided of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decided {
    Inside,
    Missing,
    /// Boxed: a directory costs a few bytes once decided.
    Outside(Box<Cause>),
}

/// What is asked of a directory not decided yet, and who waits for it.
#[derive(Debug, Default)]
struct Asking {
    realpath: Answer,
    lstat: Answer,
    /// The entries below it that wait for its verdict.
    children: Vec<usize>,
    waiters: Vec<Waiter>,
}

/// A directory: being asked about, or decided. What is asked (of the few directories on
/// their way) and why one is outside (rare) are held beside the table, by entry: a run may
/// check a directory per file, and each costs 12 bytes here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Asking,
    Inside,
    Missing,
    Outside,
}

#[derive(Debug, Clone, Copy)]
struct Dir {
    name: Name,
    /// The entry of the directory above, [`TOP`] where that is the target directory.
    parent: u32,
    status: Status,
    /// Asked again after a MKDIR found the name taken (see [`Confinement::recheck`]).
    rechecked: bool,
}

/// The parent of an entry right below the target directory.
const TOP: u32 = u32::MAX;

impl Dir {
    fn parent(&self) -> Option<usize> {
        (self.parent != TOP).then_some(self.parent as usize)
    }
}

/// The target directory as the server resolved it.
#[derive(Debug, Default, Clone)]
enum Root {
    /// Not asked yet, or asked and not answered.
    #[default]
    Unknown,
    Known(Vec<u8>),
    /// The server does no REALPATH: directories are judged by LSTAT alone.
    Unresolvable,
    /// The server would not resolve it: nothing can be judged inside.
    Failed(String),
}

/// What the STAT of the target directory said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Target {
    /// Not asked: there is no target directory (the server's start directory is used).
    #[default]
    Unasked,
    Awaited,
    Dir,
    Problem(TargetProblem),
}

/// Why the target directory cannot be worked in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetProblem {
    Missing,
    NotADirectory,
    /// The STAT failed otherwise (permission, ...): what the server said.
    Unreadable(String),
}

impl std::fmt::Display for TargetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetProblem::Missing => f.write_str("the target directory does not exist"),
            TargetProblem::NotADirectory => f.write_str("the target directory is not a directory"),
            TargetProblem::Unreadable(why) => {
                write!(f, "the target directory cannot be looked at ({why})")
            }
        }
    }
}

/// What [`Confinement::known`] says of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// It is where it should be, no symlink on the way (it exists).
    Inside,
    /// It does not exist, nor does anything in its place: it may be made.
    Missing,
}

/// What [`Confinement::check`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Inside, or missing (then nothing is there to remove, and what is made is ours).
    Inside,
    Outside(Cause),
    /// Asked; the waiter is released by a later reply.
    Pending,
}

/// Operations (and directories to be made) whose directory was judged, with the verdict.
pub(crate) type Judged = Vec<(Waiter, Result<(), Cause>)>;

/// The directories checked on one connection.
#[derive(Debug, Default)]
pub(crate) struct Confinement {
    /// The target directory (the server's start directory when `None`).
    pub(crate) base: Option<RemotePath>,
    /// The server's REALPATH resolves symlinks (OpenSSH's and asyncssh's, those with
    /// `limits@openssh.com`, call realpath(3)): where it will not answer LSTAT, a REALPATH
    /// that resolves where it should suffices.
    pub(crate) realpath_resolves_links: bool,
    root: Root,
    target: Target,
    /// The names of the directories known here and in the directory table.
    pub(crate) names: Names,
    /// By name: the directory's entry here, [`ABSENT`] if none.
    slots: Chunked<u32>,
    dirs: Chunked<Dir>,
    /// By entry: what is asked of the directories not decided yet.
    asking: HashMap<u32, Asking>,
    /// By entry: why a directory decided outside is.
    outside: HashMap<u32, Box<Cause>>,
    /// For tests of what builds on it: every directory counts as inside, unasked.
    #[cfg(test)]
    pub(crate) trusting: bool,
}

impl Confinement {
    /// Asks the server where the target directory is (once, at set-up).
    pub(crate) fn ask_root(&mut self, session: &mut Session<Tag>) {
        let path = self
            .base
            .as_ref()
            .map_or(b".".to_vec(), |b| b.as_bytes().to_vec());
        session.send(Request::Realpath { path }, Tag::Root);
        if let Some(base) = &self.base {
            let path = base.as_bytes().to_vec();
            session.send(Request::Stat { path }, Tag::TargetStat);
            self.target = Target::Awaited;
        }
    }

    /// What the STAT of the target directory found; releases what waited for it. A reply
    /// without the entry's type says nothing against it: its REALPATH and the directories'
    /// checks judge.
    pub(crate) fn on_target_stat(&mut self, response: Response) -> Judged {
        self.target = match response {
            Response::Attrs(a) if a.is_dir() || a.permissions.is_none() => Target::Dir,
            Response::Attrs(_) => Target::Problem(TargetProblem::NotADirectory),
            Response::Status {
                code: StatusCode::NoSuchFile,
                ..
            } => Target::Problem(TargetProblem::Missing),
            other => Target::Problem(TargetProblem::Unreadable(describe(&other))),
        };
        self.decide_top()
    }

    /// Why the target directory cannot be worked in, once its STAT said so.
    pub(crate) fn target_problem(&self) -> Option<&TargetProblem> {
        match &self.target {
            Target::Problem(problem) => Some(problem),
            _ => None,
        }
    }

    /// Decides the directories right below the target directory (and so those below them)
    /// that can be decided now.
    fn decide_top(&mut self) -> Judged {
        let mut judged = Vec::new();
        for k in 0..self.dirs.len() {
            if self.dirs[k].parent().is_none() {
                self.decide(k, &mut judged);
            }
        }
        judged
    }

    /// The target directory's resolution; releases what waited for it.
    pub(crate) fn on_root(&mut self, response: Response) -> Judged {
        self.root = match response {
            Response::Name(names) if names.len() == 1 => {
                Root::Known(normalized(&names[0].filename))
            }
            Response::Status {
                code: StatusCode::OpUnsupported | StatusCode::PermissionDenied,
                ..
            } => {
                log::info!("the server does no REALPATH: remote symlinks are found by LSTAT alone");
                Root::Unresolvable
            }
            other => {
                let why = describe(&other);
                log::warn!(
                    "the server would not resolve the target directory ({why}): nothing is \
                     done in any directory below it"
                );
                Root::Failed(why)
            }
        };
        self.decide_top()
    }

    /// Makes sure `dir` is inside before `waiter` creates, removes, renames or links in it.
    pub(crate) fn check(
        &mut self,
        dir: &RemotePath,
        waiter: Waiter,
        session: &mut Session<Tag>,
    ) -> Verdict {
        let Some(k) = self.entry(dir, session) else {
            return Verdict::Inside;
        };
        match self.decided(k) {
            Some(Decided::Inside | Decided::Missing) => Verdict::Inside,
            Some(Decided::Outside(cause)) => Verdict::Outside(*cause),
            None => {
                self.asking_mut(k).expect("undecided").waiters.push(waiter);
                Verdict::Pending
            }
        }
    }

    /// Asks about `dir` (and the directories above it) now, before anything waits for it:
    /// a later [`Confinement::check`] finds the answer there, or on its way.
    pub(crate) fn prefetch(&mut self, dir: &RemotePath, session: &mut Session<Tag>) {
        self.entry(dir, session);
    }

    /// What is decided of `dir`, if anything.
    pub(crate) fn known(&self, dir: &RemotePath) -> Option<Known> {
        if self.base.as_ref() == Some(dir) {
            return Some(Known::Inside);
        }
        match self.decided(self.find(dir)?) {
            Some(Decided::Inside) => Some(Known::Inside),
            Some(Decided::Missing) => Some(Known::Missing),
            _ => None,
        }
    }

    /// Whether the entry of name `n` (if it has one) is to be kept: it is being asked
    /// about, or was found outside (that is not asked again).
    pub(crate) fn must_keep(&self, n: Name) -> bool {
        match self.slots.get(n as usize) {
            Some(&k) if k != ABSENT => {
                matches!(
                    self.dirs[k as usize].status,
                    Status::Asking | Status::Outside
                )
            }
            _ => false,
        }
    }

    /// The name of entry `k`.
    pub(crate) fn name_of(&self, k: usize) -> Name {
        self.dirs[k].name
    }

    /// Lets go of what is known of name `n`, forgotten (see [`Names::forget`]): it is
    /// asked about again should it be needed. Its entry stays, found no more, its number
    /// never given again (a late reply for it is then taken for what it is).
    pub(crate) fn forget(&mut self, n: Name) {
        if let Some(slot) = self.slots.get_mut(n as usize) {
            *slot = ABSENT;
        }
    }

    /// What is decided of entry `k`, if it is.
    fn decided(&self, k: usize) -> Option<Decided> {
        Some(match self.dirs[k].status {
            Status::Asking => return None,
            Status::Inside => Decided::Inside,
            Status::Missing => Decided::Missing,
            Status::Outside => Decided::Outside(self.outside[&(k as u32)].clone()),
        })
    }

    /// What is asked of entry `k`, while it is not decided.
    fn asking_mut(&mut self, k: usize) -> Option<&mut Asking> {
        self.asking.get_mut(&(k as u32))
    }

    /// The entry of `dir`, if it has one.
    fn find(&self, dir: &RemotePath) -> Option<usize> {
        let name = self.names.find(dir)?;
        match self.slots.get(name as usize) {
            Some(&k) if k != ABSENT => Some(k as usize),
            _ => None,
        }
    }

    /// The reply to request `req` (REALPATH or LSTAT) about directory `k`.
    pub(crate) fn on_reply(&mut self, k: usize, req: Req, response: Response) -> Judged {
        let answer = match (req, response) {
            (Req::Realpath, Response::Name(names)) if names.len() == 1 => {
                Answer::Resolved(normalized(&names[0].filename))
            }
            (Req::Lstat, Response::Attrs(a)) => Answer::Link(a.is_symlink()),
            (
                _,
                Response::Status {
                    code: StatusCode::NoSuchFile,
                    ..
                },
            ) => Answer::NoSuchFile,
            (
                _,
                Response::Status {
                    code: StatusCode::OpUnsupported | StatusCode::PermissionDenied,
                    ..
                },
            ) => Answer::Unsupported,
            (_, other) => Answer::Odd(describe(&other)),
        };
        // A late reply for a directory decided since (a recheck's first answers) says
        // nothing more.
        let Some(asking) = self.asking_mut(k) else {
            return Vec::new();
        };
        match req {
            Req::Realpath => asking.realpath = answer,
            _ => asking.lstat = answer,
        }
        let mut judged = Vec::new();
        self.decide(k, &mut judged);
        judged
    }

    /// The entry for `dir` (and those above it), asking about each new one; `None` for the
    /// target directory itself and for what is not below it (no check applies there).
    fn entry(&mut self, dir: &RemotePath, session: &mut Session<Tag>) -> Option<usize> {
        #[cfg(test)]
        if self.trusting {
            return None;
        }
        if let Some(k) = self.find(dir) {
            return Some(k);
        }
        if !self.below_base(dir) {
            return None;
        }
        let parent = dir.parent().and_then(|p| self.entry(&p, session));
        // Below a directory known missing, nothing is there either: nothing to ask.
        let below_missing = parent.is_some_and(|p| self.dirs[p].status == Status::Missing);
        let k = self.dirs.len();
        let name = self.names.intern(dir);
        self.slots.fill_to(name as usize + 1, ABSENT);
        let entry = u32::try_from(k)
            .ok()
            .filter(|&k| k != TOP)
            .expect("fewer than 4 billion directories");
        self.slots[name as usize] = entry;
        self.dirs.push(Dir {
            name,
            // Entries are numbered below 4 billion, as the slots just said.
            parent: parent.map_or(TOP, |p| p as u32),
            status: if below_missing {
                Status::Missing
            } else {
                self.asking.insert(entry, Asking::default());
                Status::Asking
            },
            rechecked: false,
        });
        if !below_missing {
            self.ask(k, session);
        }
        Some(k)
    }

    /// Asks the server where directory `k` is and whether it is a symlink.
    fn ask(&mut self, k: usize, session: &mut Session<Tag>) {
        let path = self.names.path(self.dirs[k].name).as_bytes().to_vec();
        session.send(
            Request::Realpath { path: path.clone() },
            Tag::Confine {
                dir: k,
                req: Req::Realpath,
            },
        );
        session.send(
            Request::Lstat { path },
            Tag::Confine {
                dir: k,
                req: Req::Lstat,
            },
        );
    }

    /// Asks again about `dir`, whose MKDIR found the name taken: what stands there now is
    /// not what the first check found missing (a symlink may have been planted since, and
    /// a STAT would follow it). The directory above counts as there, however it was
    /// decided: missing then, made since. `waiter` hears the new verdict.
    pub(crate) fn recheck(
        &mut self,
        dir: &RemotePath,
        waiter: Waiter,
        session: &mut Session<Tag>,
    ) -> Verdict {
        let Some(k) = self.entry(dir, session) else {
            return Verdict::Inside;
        };
        if let Some(Decided::Outside(cause)) = self.decided(k) {
            return Verdict::Outside(*cause);
        }
        let d = &mut self.dirs[k];
        d.rechecked = true;
        if d.status != Status::Asking {
            d.status = Status::Asking;
            self.asking.insert(k as u32, Asking::default());
            self.ask(k, session);
        }
        if let Some(asking) = self.asking_mut(k) {
            asking.waiters.push(waiter);
        }
        Verdict::Pending
    }

    /// Decides directory `k` if all it needs is in, then those below it that waited.
    fn decide(&mut self, k: usize, judged: &mut Judged) {
        let Some(asking) = self.asking.get(&(k as u32)) else {
            return;
        };
        let parent = match self.dirs[k].parent() {
            None => Some(Decided::Inside),
            Some(p) => self.decided(p),
        };
        let Some(parent) = parent else {
            // It hears from its parent once that is decided.
            let p = self.dirs[k].parent().expect("decided without a parent");
            if let Some(above) = self.asking_mut(p)
                && !above.children.contains(&k)
            {
                above.children.push(k);
            }
            return;
        };
        let Some(decided) = self.judge(k, asking, parent) else {
            return;
        };
        let verdict = match &decided {
            Decided::Inside | Decided::Missing => Ok(()),
            Decided::Outside(cause) => Err(Cause::clone(cause)),
        };
        let Asking {
            children, waiters, ..
        } = self.asking.remove(&(k as u32)).expect("asking above");
        self.dirs[k].status = match decided {
            Decided::Inside => Status::Inside,
            Decided::Missing => Status::Missing,
            Decided::Outside(cause) => {
                self.outside.insert(k as u32, cause);
                Status::Outside
            }
        };
        judged.extend(waiters.into_iter().map(|w| (w, verdict.clone())));
        for child in children {
            self.decide(child, judged);
        }
    }

    /// What directory `k` is, its parent being `parent`; `None` while answers are awaited.
    fn judge(&self, k: usize, d: &Asking, parent: Decided) -> Option<Decided> {
        let path = self.names.path(self.dirs[k].name);
        let outside = |why: String| {
            Some(Decided::Outside(Box::new(Cause::Outside {
                path: path.clone(),
                resolved: why,
            })))
        };
        match parent {
            // Below it, the same: the message names the directory that is the cause.
            Decided::Outside(cause) => return Some(Decided::Outside(cause)),
            Decided::Missing if !self.dirs[k].rechecked => return Some(Decided::Missing),
            Decided::Missing | Decided::Inside => {}
        }
        if matches!(d.realpath, Answer::Awaited) || matches!(d.lstat, Answer::Awaited) {
            return None;
        }
        let unconfirmed = |said: String| {
            Some(Decided::Outside(Box::new(Cause::Unconfirmed {
                path: path.clone(),
                said,
            })))
        };
        match &self.target {
            Target::Awaited => return None,
            Target::Problem(problem) => {
                return Some(Decided::Outside(Box::new(Cause::Target(problem.clone()))));
            }
            Target::Unasked | Target::Dir => {}
        }
        let root = match &self.root {
            Root::Unknown => return None,
            Root::Failed(why) => {
                return unconfirmed(format!("the target directory's REALPATH: {why}"));
            }
            Root::Known(root) => Some(root),
            Root::Unresolvable => None,
        };
        match (&d.realpath, &d.lstat) {
            (_, Answer::Link(true)) => outside("a symlink".into()),
            (Answer::NoSuchFile, Answer::NoSuchFile) => Some(Decided::Missing),
            (Answer::Resolved(resolved), Answer::NoSuchFile | Answer::Link(false)) => {
                match root.map(|r| self.expected(r, &path)) {
                    Some(Some(expected)) if expected != *resolved => {
                        outside(crate::sftp::printable::printable(resolved, 1024))
                    }
                    Some(None) => outside(crate::sftp::printable::printable(resolved, 1024)),
                    _ if d.lstat == Answer::NoSuchFile => Some(Decided::Missing),
                    _ => Some(Decided::Inside),
                }
            }
            (Answer::Unsupported, Answer::Link(false)) => Some(Decided::Inside),
            (Answer::Unsupported, Answer::NoSuchFile) => Some(Decided::Missing),
            // No LSTAT: a REALPATH that resolves symlinks, and says where it should, does.
            (Answer::Resolved(resolved), Answer::Unsupported) if self.realpath_resolves_links => {
                match root.and_then(|r| self.expected(r, &path)) {
                    Some(expected) if expected == *resolved => Some(Decided::Inside),
                    _ => outside(crate::sftp::printable::printable(resolved, 1024)),
                }
            }
            (Answer::NoSuchFile, Answer::Unsupported) if self.realpath_resolves_links => {
                Some(Decided::Missing)
            }
            (realpath, lstat) => unconfirmed(format!(
                "REALPATH: {}, LSTAT: {}",
                said(realpath),
                said(lstat)
            )),
        }
    }

    /// Whether `path` lies strictly below the target directory (anywhere without one).
    fn below_base(&self, path: &RemotePath) -> bool {
        match &self.base {
            None => !path.as_bytes().starts_with(b"/"),
            Some(base) => {
                let (b, p) = (base.as_bytes(), path.as_bytes());
                p.len() > b.len() && p.starts_with(b) && (p[b.len()] == b'/' || b == b"/")
            }
        }
    }

    /// Where `path` must resolve to if no symlink is on its way below the target directory.
    fn expected(&self, root: &[u8], path: &RemotePath) -> Option<Vec<u8>> {
        let p = path.as_bytes();
        let rest = match &self.base {
            Some(base) => {
                let b = base.as_bytes();
                if b == b"/" {
                    p.strip_prefix(b"/")?
                } else {
                    p.strip_prefix(b)?.strip_prefix(b"/")?
                }
            }
            None if p.starts_with(b"/") => return None,
            None => p,
        };
        let mut expected = root.to_vec();
        if expected != b"/" {
            expected.push(b'/');
        }
        expected.extend_from_slice(rest);
        Some(normalized(&expected))
    }
}

/// A path as the server wrote it, without doubled or trailing slashes.
fn normalized(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for &b in path {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    if out.len() > 1 && out.last() == Some(&b'/') {
        out.pop();
    }
    out
}

fn said(answer: &Answer) -> String {
    match answer {
        Answer::Awaited => "nothing yet".into(),
        Answer::Resolved(r) => crate::sftp::printable::printable(r, 1024),
        Answer::Link(true) => "a symlink".into(),
        Answer::Link(false) => "no symlink".into(),
        Answer::NoSuchFile => "NO_SUCH_FILE".into(),
        Answer::Unsupported => "OP_UNSUPPORTED".into(),
        Answer::Odd(why) => why.clone(),
    }
}

fn describe(response: &Response) -> String {
    match response {
        Response::Status { code, .. } => code.to_string(),
        other => super::dirs::reply_name(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::wire::{Attrs, NameEntry};

    fn name(path: &str) -> Response {
        Response::Name(vec![NameEntry {
            filename: path.as_bytes().to_vec(),
            longname: Vec::new(),
            attrs: Attrs::default(),
        }])
    }

    fn attrs(link: bool) -> Response {
        Response::Attrs(Attrs {
            permissions: Some(if link { 0o120777 } else { 0o40755 }),
            ..Attrs::default()
        })
    }

    fn status(code: StatusCode) -> Response {
        Response::Status {
            code,
            message: Vec::new(),
            language: Vec::new(),
        }
    }

    fn rp(s: &str) -> RemotePath {
        RemotePath::new(s).unwrap()
    }

    fn confinement(base: Option<&str>, root: &str) -> Confinement {
        let mut c = Confinement {
            base: base.map(rp),
            ..Confinement::default()
        };
        assert!(c.on_root(name(root)).is_empty());
        c
    }

    /// Checks `dir` for waiter 1 and answers each directory's requests from `answers`
    /// (path, REALPATH answer, LSTAT answer), in order; returns the verdicts released.
    fn judge(c: &mut Confinement, dir: &str, answers: &[(&str, Response, Response)]) -> Judged {
        let mut session: Session<Tag> = Session::new();
        assert_eq!(
            c.check(&rp(dir), Waiter::Op(1), &mut session),
            Verdict::Pending
        );
        let mut judged = Vec::new();
        for (path, realpath, lstat) in answers {
            let k = c.find(&rp(path)).unwrap();
            judged.extend(c.on_reply(k, Req::Realpath, realpath.clone()));
            judged.extend(c.on_reply(k, Req::Lstat, lstat.clone()));
        }
        judged
    }

    #[test]
    fn a_directory_resolving_where_it_should_with_no_symlink_above_is_inside() {
        // /srv/mirror is itself a symlink to /data/mirror: that is the administrator's.
        let mut c = confinement(Some("/srv/mirror"), "/data/mirror");
        let judged = judge(
            &mut c,
            "/srv/mirror/pool/main",
            &[
                ("/srv/mirror/pool", name("/data/mirror/pool"), attrs(false)),
                (
                    "/srv/mirror/pool/main",
                    name("/data/mirror/pool/main/"),
                    attrs(false),
                ),
            ],
        );
        assert_eq!(judged, vec![(Waiter::Op(1), Ok(()))]);
        assert_eq!(c.known(&rp("/srv/mirror/pool")), Some(Known::Inside));
    }

    #[test]
    fn a_symlink_on_the_way_is_outside_whatever_the_server_resolves() {
        // OpenSSH: REALPATH resolves the link.
        let mut c = confinement(Some("/m"), "/m");
        let judged = judge(
            &mut c,
            "/m/pool/main",
            &[
                ("/m/pool", name("/etc"), attrs(true)),
                ("/m/pool/main", name("/etc/main"), attrs(false)),
            ],
        );
        let [(Waiter::Op(1), Err(cause))] = judged.as_slice() else {
            panic!("{judged:?}")
        };
        assert!(cause.to_string().contains("outside"), "{cause}");
        // paramiko's example server: REALPATH only tidies the text; its LSTAT tells.
        let mut c = confinement(Some("/m"), "/m");
        let judged = judge(
            &mut c,
            "/m/pool/main",
            &[
                ("/m/pool", name("/m/pool"), attrs(true)),
                ("/m/pool/main", name("/m/pool/main"), attrs(false)),
            ],
        );
        assert!(matches!(judged.as_slice(), [(_, Err(_))]), "{judged:?}");
        // ProFTPD: its LSTAT follows the link; its REALPATH does not hide it.
        let mut c = confinement(Some("/m"), "/m");
        let judged = judge(&mut c, "/m/pool", &[("/m/pool", name("/x"), attrs(false))]);
        assert!(matches!(judged.as_slice(), [(_, Err(_))]), "{judged:?}");
        // asyncssh in a chroot: a REALPATH leading out of it is NO_SUCH_FILE.
        let mut c = confinement(Some("/m"), "/m");
        let no = status(StatusCode::NoSuchFile);
        let judged = judge(&mut c, "/m/pool", &[("/m/pool", no, attrs(true))]);
        assert!(matches!(judged.as_slice(), [(_, Err(_))]), "{judged:?}");
    }

    #[test]
    fn a_directory_both_requests_say_is_not_there_is_missing_and_so_is_all_below() {
        let mut c = confinement(None, "/home/repo");
        let no = || status(StatusCode::NoSuchFile);
        let judged = judge(
            &mut c,
            "pool/main",
            &[
                ("pool", no(), no()),
                ("pool/main", name("/home/repo/pool/main"), no()),
            ],
        );
        assert_eq!(judged, vec![(Waiter::Op(1), Ok(()))]);
        assert_eq!(c.known(&rp("pool")), Some(Known::Missing));
        assert_eq!(c.known(&rp("pool/main")), Some(Known::Missing));
        // Below a missing directory nothing is asked: nothing can be there.
        let mut session: Session<Tag> = Session::new();
        let deep = rp("pool/main/f/foo");
        assert_eq!(c.check(&deep, Waiter::Op(2), &mut session), Verdict::Inside);
        assert_eq!(c.known(&deep), Some(Known::Missing));
        assert_eq!(session.in_flight(), 0);
    }

    #[test]
    fn nothing_is_judged_inside_when_the_target_cannot_be_resolved() {
        let mut c = Confinement::default();
        assert!(c.on_root(status(StatusCode::Failure)).is_empty());
        let judged = judge(&mut c, "pool", &[("pool", name("/x/pool"), attrs(false))]);
        assert!(matches!(judged.as_slice(), [(_, Err(_))]), "{judged:?}");
        // One that does no REALPATH at all is judged by LSTAT.
        let mut c = Confinement::default();
        c.on_root(status(StatusCode::OpUnsupported));
        let unsupported = status(StatusCode::OpUnsupported);
        let judged = judge(&mut c, "pool", &[("pool", unsupported, attrs(false))]);
        assert_eq!(judged, vec![(Waiter::Op(1), Ok(()))]);
    }

    #[test]
    fn one_flight_per_directory_and_waiters_released_when_the_root_comes_last() {
        let mut c = Confinement {
            base: Some(rp("/m")),
            ..Confinement::default()
        };
        let mut session: Session<Tag> = Session::new();
        let pool = rp("/m/pool");
        assert_eq!(
            c.check(&pool, Waiter::Op(3), &mut session),
            Verdict::Pending
        );
        assert_eq!(
            c.check(&pool, Waiter::Dir(4), &mut session),
            Verdict::Pending
        );
        assert_eq!(session.in_flight(), 2, "REALPATH and LSTAT, once");
        assert!(c.on_reply(0, Req::Realpath, name("/m/pool")).is_empty());
        assert!(c.on_reply(0, Req::Lstat, attrs(false)).is_empty());
        let judged = c.on_root(name("/m/"));
        assert_eq!(judged.len(), 2);
        assert!(judged.iter().all(|(_, r)| r.is_ok()));
        assert_eq!(c.check(&pool, Waiter::Op(5), &mut session), Verdict::Inside);
        // The target itself, and what is not below it, need no check.
        assert_eq!(
            c.check(&rp("/m"), Waiter::Op(6), &mut session),
            Verdict::Inside
        );
        assert_eq!(session.in_flight(), 2);
    }
}
