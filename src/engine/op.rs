//! What the engine can be asked to do ([`Op`]), what comes of it ([`Outcome`], [`OpError`]),
//! and the tags that route each reply back to the operation that sent the request.
//!
//! These are the engine's own types: what callers see of the server is said here in the
//! engine's words ([`Status`], [`Entry`]), never in the wire's. Plain data: no I/O.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

pub use super::confine::TargetProblem;
use crate::remote_path::RemotePath;
use crate::sftp::wire::{Attrs, StatusCode};

/// One remote change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Copy a local regular file to `remote`, replacing (truncating) whatever was there.
    /// With `fsync`, ask the server to flush it to disk before it counts as done; with
    /// `mtime`, set its modification (and access) time.
    Upload {
        local: PathBuf,
        remote: RemotePath,
        fsync: bool,
        mtime: Option<u32>,
    },
    /// One part of a large [`Op::Upload`] that [`super::Engine::run_spread`] spreads over
    /// its connections: write `range` of `local` into `remote`, creating it if missing but
    /// not truncating it (the other parts write the rest). An [`Op::SetSize`] ends the
    /// upload once every part is in.
    UploadPart {
        local: PathBuf,
        remote: RemotePath,
        range: Range<u64>,
    },
    /// Give a remote file exactly `size` bytes (truncating what is beyond) and, with
    /// `mtime`, that modification (and access) time.
    SetSize {
        path: RemotePath,
        size: u64,
        mtime: Option<u32>,
    },
    /// Remove a file or symlink; a missing one is [`Outcome::AlreadyAbsent`].
    Remove { path: RemotePath },
    /// Move `from` to `to`, replacing `to` (atomically where the server offers
    /// `posix-rename@openssh.com`).
    Rename { from: RemotePath, to: RemotePath },
    /// Make `link` a symlink to `target`, replacing whatever file `link` was.
    Symlink { link: RemotePath, target: Vec<u8> },
    /// Give the existing file `from` a second name `to` (a hard link, where
    /// [`super::Engine::offers_hardlink`]), replacing a file or symlink that stands at `to`:
    /// what `from` holds now stays reachable as `to` when `from` is replaced. A missing
    /// `from` is [`Status::NoSuchFile`]; a link the server says it made and did not,
    /// [`Cause::LinkNotMade`]. Like a rename, it goes only once `to`'s directory is known to
    /// be inside the target.
    Hardlink { from: RemotePath, to: RemotePath },
    /// Create a directory and its missing parents.
    Mkdir { path: RemotePath },
    /// Remove an empty directory; a missing one is [`Outcome::AlreadyAbsent`].
    Rmdir { path: RemotePath },
    /// List a directory: [`Outcome::Listing`] (without `.` and `..`), or
    /// [`Outcome::AlreadyAbsent`] when it does not exist.
    List { path: RemotePath },
    /// Read a symlink: [`Outcome::Target`].
    Readlink { path: RemotePath },
    /// STAT a path (following symlinks): [`Outcome::Kind`], or [`Outcome::AlreadyAbsent`]
    /// when nothing is there. The run checks its target directory with it before anything
    /// is sent.
    Stat { path: RemotePath },
    /// Ask how much room the file system holding `path` has left (`statvfs@openssh.com`,
    /// where [`super::Engine::offers_statvfs`]): [`Outcome::Space`].
    Statvfs { path: RemotePath },
    /// Compare a remote file's content with a local file's: [`Outcome::Same`] or
    /// [`Outcome::Differs`].
    Compare { local: PathBuf, remote: RemotePath },
}

/// What kind of operation failed, as [`OpError`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Upload,
    Remove,
    Rename,
    Symlink,
    Hardlink,
    Mkdir,
    Rmdir,
    List,
    Readlink,
    Stat,
    Statvfs,
    Compare,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Upload => "upload",
            OpKind::Remove => "remove",
            OpKind::Rename => "rename",
            OpKind::Symlink => "symlink",
            OpKind::Hardlink => "hard link",
            OpKind::Mkdir => "mkdir",
            OpKind::Rmdir => "rmdir",
            OpKind::List => "list",
            OpKind::Readlink => "readlink",
            OpKind::Stat => "stat",
            OpKind::Statvfs => "statvfs",
            OpKind::Compare => "compare",
        })
    }
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            // The parts of an upload fail as the upload.
            Op::Upload { .. } | Op::UploadPart { .. } | Op::SetSize { .. } => OpKind::Upload,
            Op::Remove { .. } => OpKind::Remove,
            Op::Rename { .. } => OpKind::Rename,
            Op::Symlink { .. } => OpKind::Symlink,
            Op::Hardlink { .. } => OpKind::Hardlink,
            Op::Mkdir { .. } => OpKind::Mkdir,
            Op::Rmdir { .. } => OpKind::Rmdir,
            Op::List { .. } => OpKind::List,
            Op::Readlink { .. } => OpKind::Readlink,
            Op::Stat { .. } => OpKind::Stat,
            Op::Statvfs { .. } => OpKind::Statvfs,
            Op::Compare { .. } => OpKind::Compare,
        }
    }

    /// The remote path the operation is about (for a rename or a hard link, the name it
    /// makes).
    pub fn path(&self) -> &RemotePath {
        match self {
            Op::Upload { remote, .. } | Op::UploadPart { remote, .. } => remote,
            Op::SetSize { path, .. } => path,
            Op::Remove { path }
            | Op::Mkdir { path }
            | Op::Rmdir { path }
            | Op::List { path }
            | Op::Readlink { path }
            | Op::Stat { path }
            | Op::Statvfs { path } => path,
            Op::Compare { remote, .. } => remote,
            Op::Rename { to, .. } | Op::Hardlink { to, .. } => to,
            Op::Symlink { link, .. } => link,
        }
    }
}

/// How an operation succeeded, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A removal (of a file or directory) found nothing to remove; a listing, no directory.
    AlreadyAbsent,
    /// A directory's entries (as `lstat` sees them).
    Listing(Vec<Entry>),
    /// A symlink's target.
    Target(Vec<u8>),
    /// What a STAT found (a symlink followed).
    Kind(EntryKind),
    /// The room a file system has: bytes free for us, and its size.
    Space {
        available: u64,
        size: u64,
    },
    /// Compared contents are equal.
    Same,
    /// Compared contents differ.
    Differs,
}

pub type OpResult = Result<Outcome, OpError>;

/// One entry of a remote directory listing: its name and what is used of its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
    /// Its size, if the server says.
    pub size: Option<u64>,
    /// Its modification time (seconds since the epoch), if the server says.
    pub mtime: Option<u32>,
}

/// What a listed entry is, as `lstat` sees it (a symlink is not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    Symlink,
    /// Anything else: a regular file, or an entry whose type the server does not give.
    Other,
}

impl Entry {
    /// An entry of a NAME reply, keeping only what listings use.
    pub(crate) fn new(name: Vec<u8>, attrs: &Attrs) -> Entry {
        let kind = if attrs.is_dir() {
            EntryKind::Dir
        } else if attrs.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        Entry {
            name,
            kind,
            size: attrs.size,
            mtime: attrs.times.map(|(_, mtime)| mtime),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    pub fn is_symlink(&self) -> bool {
        self.kind == EntryKind::Symlink
    }
}

/// A server's error status, in what callers and the engine branch on; other codes are kept
/// by number, for messages (which name them as the draft does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// NO_SUCH_FILE: the path, or a directory on the way, does not exist.
    NoSuchFile,
    /// PERMISSION_DENIED; also how `sftp-server -P` refuses a request it is told to deny.
    PermissionDenied,
    /// OP_UNSUPPORTED: the server does not do this request.
    Unsupported,
    /// FAILURE: any other failure (an existing name, a full disk, ...).
    Failure,
    /// Any other code, by its number.
    Other(u32),
}

impl Status {
    /// Whether the request was refused as such rather than failed on its object:
    /// `sftp-server -P` denies requests by name with PERMISSION_DENIED, other servers say
    /// OP_UNSUPPORTED.
    pub fn is_refusal(self) -> bool {
        matches!(self, Status::PermissionDenied | Status::Unsupported)
    }
}

impl From<StatusCode> for Status {
    fn from(code: StatusCode) -> Status {
        match code {
            StatusCode::NoSuchFile => Status::NoSuchFile,
            StatusCode::PermissionDenied => Status::PermissionDenied,
            StatusCode::OpUnsupported => Status::Unsupported,
            StatusCode::Failure => Status::Failure,
            other => Status::Other(other.to_u32()),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match *self {
            Status::NoSuchFile => StatusCode::NoSuchFile,
            Status::PermissionDenied => StatusCode::PermissionDenied,
            Status::Unsupported => StatusCode::OpUnsupported,
            Status::Failure => StatusCode::Failure,
            Status::Other(n) => StatusCode::from_u32(n),
        };
        write!(f, "{code}")
    }
}

/// The kind of request, for messages and for routing replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Req {
    Open,
    Write,
    Fstat,
    Fsync,
    Close,
    Remove,
    Rename,
    PosixRename,
    Hardlink,
    Symlink,
    Mkdir,
    Rmdir,
    Stat,
    Limits,
    Statvfs,
    Fsetstat,
    Setstat,
    Opendir,
    Readdir,
    Readlink,
    Lstat,
    Read,
    Realpath,
}

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Req::Open => "OPEN",
            Req::Write => "WRITE",
            Req::Fstat => "FSTAT",
            Req::Fsync => "fsync@openssh.com",
            Req::Close => "CLOSE",
            Req::Remove => "REMOVE",
            Req::Rename => "RENAME",
            Req::PosixRename => "posix-rename@openssh.com",
            Req::Hardlink => "hardlink@openssh.com",
            Req::Symlink => "SYMLINK",
            Req::Mkdir => "MKDIR",
            Req::Rmdir => "RMDIR",
            Req::Stat => "STAT",
            Req::Limits => "limits@openssh.com",
            Req::Statvfs => "statvfs@openssh.com",
            Req::Realpath => "REALPATH",
            Req::Fsetstat => "FSETSTAT",
            Req::Setstat => "SETSTAT",
            Req::Opendir => "OPENDIR",
            Req::Readdir => "READDIR",
            Req::Readlink => "READLINK",
            Req::Lstat => "LSTAT",
            Req::Read => "READ",
        })
    }
}

/// What a server answered where that does not fit the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A reply of another kind than the request takes.
    Status,
    Handle,
    Data,
    Name,
    Attrs,
    Extended,
    /// A failure, where what failed is not known (a MKDIR whose failure was lost).
    Failure,
    /// DATA longer than the READ asked for.
    MoreDataThanAsked,
    /// NAME replies that add nothing, again and again, and never EOF.
    StalledListing,
    /// A listing of more than a million entries.
    TooManyEntries,
    /// A listing of more than 256 MiB of names and entries.
    TooLargeListing,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reply::Status => "STATUS",
            Reply::Handle => "HANDLE",
            Reply::Data => "DATA",
            Reply::Name => "NAME",
            Reply::Attrs => "ATTRS",
            Reply::Extended => "EXTENDED_REPLY",
            Reply::Failure => "a failure",
            Reply::MoreDataThanAsked => "more data than asked for",
            Reply::StalledListing => {
                "NAME replies that list nothing new, never EOF (a stalled listing)"
            }
            Reply::TooManyEntries => "more than a million entries",
            Reply::TooLargeListing => "more than 256 MiB of entries",
        })
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The server answered a request with an error status.
    Status {
        request: Req,
        code: Status,
        message: String,
    },
    /// The local file could not be read.
    Local { path: PathBuf, message: String },
    /// After the last write the server reported another size than we sent.
    SizeMismatch { expected: u64, actual: u64 },
    /// The server would not say what size the file has after the last write: what it holds
    /// is unconfirmed, so the upload does not count as done.
    SizeUnconfirmed,
    /// The server answered with a reply that does not fit the request.
    UnexpectedReply { request: Req, reply: Reply },
    /// The server answered a hard link with OK, and there is no link (`rclone serve sftp`
    /// does nothing).
    LinkNotMade,
    /// A directory the operation needed could not be created.
    Directory { dir: RemotePath, cause: Box<Cause> },
    /// The run was asked to stop before the operation completed.
    Interrupted,
    /// The server resolves `path` to `resolved`, which is not where it lies below the target
    /// directory: a symlink is on the way, and nothing is written or removed through it.
    Outside { path: RemotePath, resolved: String },
    /// The server's answers (`said`) do not tell whether `path` is a symlink or where it
    /// leads: nothing is done there.
    Unconfirmed { path: RemotePath, said: String },
    /// The target directory is missing, or no directory: nothing is done below it.
    Target(TargetProblem),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Status {
                request,
                code,
                message,
            } if message.is_empty() => write!(f, "{request} failed: {code}"),
            Cause::Status {
                request,
                code,
                message,
            } => write!(f, "{request} failed: {code} ({message})"),
            Cause::Local { path, message } => {
                write!(f, "cannot read {}: {message}", path.display())
            }
            Cause::SizeMismatch { expected, actual } => write!(
                f,
                "the server has {actual} bytes after {expected} were written"
            ),
            Cause::SizeUnconfirmed => write!(
                f,
                "the server does not report the file's size, so the upload cannot be confirmed"
            ),
            Cause::UnexpectedReply { request, reply } => {
                write!(f, "the server answered {request} with {reply}")
            }
            Cause::Target(problem) => write!(f, "{problem}"),
            Cause::LinkNotMade => write!(
                f,
                "the server answered hardlink@openssh.com with OK but made no link (it does \
                 not make hard links)"
            ),
            Cause::Directory { dir, cause } => {
                write!(f, "cannot create directory {dir}: {cause}")
            }
            Cause::Interrupted => write!(f, "interrupted before it completed"),
            Cause::Unconfirmed { path, said } => write!(
                f,
                "cannot tell whether {path} is a symlink, or where it leads ({said}): nothing \
                 is done there; let the server answer REALPATH and LSTAT"
            ),
            Cause::Outside { path, resolved } => write!(
                f,
                "{path} resolves to {resolved} on the server, outside the target directory (a \
                 remote symlink on the way): nothing is written or removed through it; \
                 replace the symlink by a directory"
            ),
        }
    }
}

/// A failed operation: what, where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub op: OpKind,
    pub path: RemotePath,
    pub cause: Cause,
}

impl OpError {
    /// The server's status code, when the failure was one.
    pub fn status(&self) -> Option<Status> {
        match &self.cause {
            Cause::Status { code, .. } => Some(*code),
            Cause::Directory { cause, .. } => match **cause {
                Cause::Status { code, .. } => Some(code),
                _ => None,
            },
            _ => None,
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path, self.cause)
    }
}

impl std::error::Error for OpError {}

/// Routes a reply to whoever sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// For operation `op` of the running batch; `bytes` is a WRITE's or READ's length,
    /// `offset` a READ's offset.
    Op {
        op: usize,
        req: Req,
        bytes: u32,
        offset: u64,
    },
    /// For the creation of directory number `dir` of the directory table.
    Dir { dir: usize, req: Req },
    /// For the engine's own set-up requests.
    Setup(Req),
    /// The REALPATH of the target directory (see [`super::confine`]).
    Root,
    /// The STAT of the target directory, beside its REALPATH.
    TargetStat,
    /// A REMOVE of a temporary file an interrupted upload may have left: its answer
    /// matters to nobody (there is usually nothing to remove).
    Sweep,
    /// The REALPATH or LSTAT of directory number `dir` of the confinement table.
    Confine { dir: usize, req: Req },
}

impl Tag {
    pub(crate) fn op(op: usize, req: Req) -> Tag {
        Tag::Op {
            op,
            req,
            bytes: 0,
            offset: 0,
        }
    }
}
