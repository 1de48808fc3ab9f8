//! The upload state machine: a local file (or a part of one) written under its temporary
//! name, its size confirmed, closed, and renamed into place; or, failed, its temporary file
//! removed. What each reply moves it to, and the WRITEs it sends within the window.
//!
//! An upload lands by rename: written under its temporary name (created exclusively), it is
//! renamed onto its real name only once every WRITE, its size and its CLOSE are confirmed,
//! or, where nothing can be lost by it (an in-order server, a free name in a directory known
//! to be inside), in the same flight, undone if anything then turns out wrong.
//!
//! Into a directory that is not there yet, an in-order server gets the OPEN in the flight of
//! the directory's MKDIR, but not into that directory: a symlink planted at its name since
//! it was looked at makes the MKDIR fail, and an OPEN behind it would create a file through
//! the link. The temporary file is made aside instead, in the directory right above, where
//! that is known to be inside ([`RemotePath::temp_aside`]); the directory's fate is known
//! before the file is written (the MKDIR is answered before the OPEN), and the rename from
//! aside into it goes only once it is made (or found to be a directory, inside). Where it
//! fails, the file aside is removed and the upload fails with the directory's cause: nothing
//! is ever created in the directory before its MKDIR is confirmed. Where the OPEN aside
//! fails, the upload goes as it did before (into its directory once that is made). Only the
//! directory right above, never higher, so that what a killed run left aside is where a
//! rerun's upload (into the directory that run made) clears it, in the flight of its OPEN.
//!
//! No I/O of its own: its source is opened, read and closed through the connection's
//! [`Sources`](crate::engine::local::Sources).

use std::path::Path;

use super::{Batch, Conn, Locals, Refusal, State, in_dir, refused};
use crate::engine::confine::Verdict;
use crate::engine::dirs::{Ensure, Waiter, reply_name, status_cause};
use crate::engine::op::{Cause, Op, Outcome, Req, Tag};
use crate::remote_path::RemotePath;
use crate::sftp::session::{FileFault, SourceId};
use crate::sftp::wire::{Attrs, ExtendedRequest, OpenFlags, Request, Response, StatusCode};

pub(super) enum Stage {
    Opening,
    WaitingDir,
    /// Waiting for a free handle after its directory was created (or a stale file removed).
    Reopen,
    /// The exclusive OPEN found a file (a stale temporary file or a planted symlink): its
    /// REMOVE is in flight, the OPEN follows.
    Clearing,
    Writing,
    /// Every WRITE is sent, on a server not trusted to act in order: the FSTAT, FSETSTAT,
    /// fsync and CLOSE wait for their replies (Go's pkg/sftp carries WRITEs out on several
    /// workers and answers an FSTAT sent behind them with the size before they land).
    Draining,
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
    /// Written aside and confirmed (see [`Aside`]): waiting to know whether its directory
    /// was made before it is renamed into it.
    AwaitingDir,
}

/// Where a temporary file written aside stands with its directory (see the module's
/// comment): the upload waits for the directory's fate as a [`Waiter::Op`], and hears
/// it whatever its stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aside {
    /// Its MKDIR (or what follows a failed one) is under way.
    Deciding,
    /// Decided: made, or found inside (a failure is the upload's error).
    Decided,
}

pub(super) struct Upload {
    /// Its local file, open in [`Conn::sources`] while the upload runs; the WRITEs queued
    /// for the transport name it.
    pub(super) source: SourceId,
    /// Where the bytes are written: for a whole file its temporary name (beside the real
    /// name, or aside: see [`Aside`]), created exclusively and renamed onto the real name
    /// once every byte is confirmed; for a part, the name the parts share (see
    /// [`parts`](crate::engine::parts)).
    target: RemotePath,
    /// The stale file found at `target` was removed once already.
    cleared: bool,
    /// The exclusive OPEN found `target` taken (the REMOVE that clears it must succeed).
    taken: bool,
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
    pub(super) start: u64,
    pub(super) size: u64,
    /// A whole file is created or truncated, and must end up exactly `size` long; a part
    /// neither truncates nor expects the file to end where it does.
    pub(super) whole: bool,
    mode: u32,
    pub(super) stage: Stage,
    handle: Vec<u8>,
    pub(super) next_offset: u64,
    outstanding: u32,
    error: Option<Cause>,
    /// How the missing directory was dealt with so far: 0 not yet, 1 its MKDIR was sent
    /// right ahead of a new OPEN (in-order servers), 2 the OPEN waited for it (or went
    /// aside).
    dir_attempts: u8,
    /// The temporary file is aside, in a directory above its own, which is being made
    /// (`target` is there); `None` for one beside its real name.
    aside: Option<Aside>,
    /// What a killed run may have left aside was removed (or never could be there).
    swept: bool,
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

impl<'a> Batch<'a> {
    /// Starts an upload (or a part of one): its source is opened now, and the range it is
    /// to send fixed: a whole file as it is open, a part as the file was cut.
    pub(super) fn start_upload(&mut self, i: usize, local: &Path, conn: &mut Conn) {
        let part = match &self.ops[i] {
            Op::UploadPart { range, .. } => Some(range.clone()),
            _ => None,
        };
        // The engine stats every source before its batch runs; a batch driven on its own
        // (a test's) looks at the file as it starts.
        let source = self
            .locals
            .known(local)
            .unwrap_or_else(|| Locals::default().stat(local));
        let opened = source.and_then(|cut| {
            let (source, now) = conn.sources.open(local)?;
            match &part {
                // A whole upload sends the file as it is open.
                None => Ok((source, now)),
                Some(range) if now.size == cut.size && range.end <= now.size => Ok((source, cut)),
                // The parts were cut by the size the run saw: it must not have changed.
                Some(_) => {
                    conn.sources.close(source);
                    Err(Cause::Local {
                        path: local.to_owned(),
                        message: CHANGED_SIZE.into(),
                    })
                }
            }
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
            taken: false,
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
            aside: None,
            swept: false,
        }));
        self.confine_upload(i, conn);
    }

    /// An upload goes only into a directory known to be inside the target (see
    /// [`confine`](crate::engine::confine)): one this run made, or one whose REALPATH and LSTAT said so. The
    /// first upload into a directory asks, and waits (as the others there do) for the
    /// verdict; in a missing one, the OPEN waits for its MKDIR.
    pub(super) fn confine_upload(&mut self, i: usize, conn: &mut Conn) {
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
    pub(super) fn resume_upload(&mut self, i: usize, conn: &mut Conn) {
        match &mut self.states[i] {
            // Its directory failed while the name aside was cleared.
            State::Upload(u) if u.error.is_some() => {
                let cause = u.error.take().expect("checked");
                self.fail(i, cause, conn)
            }
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
    pub(super) fn clear_temporary(&mut self, i: usize, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!("uploads clear their temporary name")
        };
        // Into a directory on its way (another upload's MKDIR, on a server not known to
        // act in order): nothing goes into it, a REMOVE neither, before it is decided. A
        // symlink planted there meanwhile would take them. (An in-order server's upload
        // waits, or goes aside, in `send_open`.)
        if !conn.limits.in_order
            && u.dir_attempts == 0
            && let Some(dir) = self.ops[i].path().parent()
            && conn.dirs.on_its_way(&dir)
        {
            u.dir_attempts = 2;
            match conn.dirs.ensure(&dir, Waiter::Op(i), &mut conn.session) {
                Ensure::Queued => {
                    u.stage = Stage::WaitingDir;
                    return;
                }
                Ensure::Ready => {}
                Ensure::Failed(cause) => return self.fail(i, in_dir(&dir, cause), conn),
            }
        }
        if !u.whole || conn.limits.in_order {
            return self.send_open(i, conn);
        }
        u.cleared = true;
        u.stage = Stage::Clearing;
        u.remove_target(i, conn);
    }

    pub(super) fn send_open(&mut self, i: usize, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!("open is sent for uploads")
        };
        // Into a directory that surely does not exist yet (below one this run is making),
        // or is on its way already (another upload's MKDIR): its MKDIR first (or its
        // answer awaited), instead of a failed OPEN. No OPEN goes into it before the MKDIR
        // is answered, even on a server that acts in order: if another client planted a
        // symlink there meanwhile, the MKDIR fails and an OPEN sent behind it would follow
        // the link. A whole file is opened aside in the same flight instead, in the
        // directory above where it is known to be inside, and renamed into its own once
        // that is made.
        if u.dir_attempts == 0
            && conn.limits.in_order
            && let Some(dir) = self.ops[i].path().parent()
            && (conn.dirs.known_missing(&dir) || conn.dirs.on_its_way(&dir))
        {
            u.dir_attempts = 2;
            match conn.dirs.ensure(&dir, Waiter::Op(i), &mut conn.session) {
                Ensure::Queued => match conn.dirs.aside_for(&dir).filter(|_| u.whole) {
                    Some(above) => {
                        u.target = self.ops[i].path().temp_aside(&above);
                        u.aside = Some(Aside::Deciding);
                    }
                    None => {
                        u.stage = Stage::WaitingDir;
                        return;
                    }
                },
                Ensure::Ready => {}
                Ensure::Failed(cause) => return self.fail(i, in_dir(&dir, cause), conn),
            }
        }
        // What a killed run may have left aside, where the directory was missing then and
        // is there now (made by that run): cleared in the same flight, as the EXCL OPEN
        // clears what it left beside. Not where this run made the directory: it was not
        // there, so the earlier run's OPEN aside would be the one this run sends again.
        if u.whole
            && conn.limits.in_order
            && u.aside.is_none()
            && !u.swept
            && let Some(dir) = self.ops[i].path().parent()
            && !conn.dirs.made_here(&dir)
            && let Some(above) = conn.dirs.aside_for(&dir)
        {
            u.swept = true;
            let path = self.ops[i].path().temp_aside(&above);
            let path = path.as_bytes().to_vec();
            conn.session.send(Request::Remove { path }, Tag::Sweep);
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
    pub(super) fn pump_writes(&mut self, conn: &mut Conn) {
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
                if conn.limits.in_order || u.outstanding == 0 {
                    Self::close_flight(u, i, self.ops[i], conn);
                } else {
                    u.stage = Stage::Draining;
                }
            }
        }
        self.pump_reads(conn);
    }

    /// [`Batch::send_close`] of upload `i` (`op`), with what it asks for after its data.
    fn close_flight(u: &mut Upload, i: usize, op: &Op, conn: &mut Conn) {
        let (fsync, mtime) = match op {
            Op::Upload { fsync, mtime, .. } => (*fsync, *mtime),
            _ => (false, None),
        };
        Self::send_close(u, i, op.path(), fsync && conn.limits.fsync, mtime, conn);
    }

    /// After the last WRITE (or an error): FSTAT to confirm the size, FSETSTAT for the
    /// time, fsync, READLINK of the real name (where a rename may write through a link),
    /// CLOSE, and on an in-order server the plain RENAME into place, all at once; on an
    /// error only the CLOSE.
    pub(super) fn send_close(
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
                if conn.limits.times_by_path {
                    send_setstat(u, i, t, conn);
                } else {
                    conn.session.send(
                        Request::Fsetstat {
                            handle: u.handle.clone(),
                            attrs: times(t),
                        },
                        Tag::op(i, Req::Fsetstat),
                    );
                    u.outstanding += 1;
                }
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
        // Written aside, only into a directory known to be made.
        let dir_ready = u.aside != Some(Aside::Deciding);
        if u.whole && u.error.is_none() && conn.limits.in_order && dir_ready {
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

    pub(super) fn upload_reply(&mut self, i: usize, req: Req, response: Response, conn: &mut Conn) {
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
            (Stage::Clearing, Req::Remove, Response::Status { .. }) if u.error.is_some() => {
                // Its directory failed meanwhile (the name cleared was aside).
                let cause = u.error.take().expect("checked");
                self.fail(i, cause, conn)
            }
            (Stage::Clearing, Req::Remove, Response::Status { code, message, .. }) => match code {
                StatusCode::Ok | StatusCode::NoSuchFile if !self.interrupted => {
                    u.stage = Stage::Reopen;
                    self.reopen.push_back(i);
                }
                StatusCode::Ok | StatusCode::NoSuchFile => self.fail(i, Cause::Interrupted, conn),
                _ if u.aside.is_some() => self.unaside(i),
                // The REMOVE sent ahead of an OPEN, in case a stale file is there, refused
                // (MySecureShell's `DisableRemoveFile`, an upload-only account): the
                // exclusive OPEN tells whether anything is.
                code if refused(code) && !u.taken && !self.interrupted => {
                    u.stage = Stage::Reopen;
                    self.reopen.push_back(i);
                }
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
    pub(super) fn open_failed(
        &mut self,
        i: usize,
        code: StatusCode,
        message: &[u8],
        conn: &mut Conn,
    ) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        // Aside, and its directory failed meanwhile: that is why it fails.
        if let Some(cause) = u.error.take() {
            return self.fail(i, cause, conn);
        }
        // A stale temporary file, or anything planted at its name: OpenSSH says FAILURE
        // (EEXIST), later protocol versions FILE_ALREADY_EXISTS. REMOVE takes a symlink
        // itself, never what it points to.
        let exists = matches!(code, StatusCode::Failure | StatusCode::Other(11));
        if exists && u.whole && !u.cleared && !self.interrupted {
            u.cleared = true;
            u.taken = true;
            u.stage = Stage::Clearing;
            u.remove_target(i, conn);
            return;
        }
        match u.aside {
            Some(_) if self.interrupted => return self.fail(i, Cause::Interrupted, conn),
            Some(_) => return self.unaside(i),
            None => {}
        }
        let parent = self.ops[i].path().parent();
        match parent {
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
    pub(super) fn transfer_reply(
        &mut self,
        i: usize,
        req: Req,
        response: Response,
        conn: &mut Conn,
    ) -> bool {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        match (req, response) {
            // A server that will not flush (`sftp-server -P fsync`): the file is whole all the
            // same; what is lost is only the flush. Said once, not asked for again.
            (Req::Fsync, Response::Status { code, .. }) if refused(code) => {
                conn.refused(Refusal::Fsync);
            }
            // Nor set times by handle (`-P fsetstat`, Twisted's, or Erlang's NO_SUCH_FILE): the
            // file is whole. Times are set by path from now on (SETSTAT of the temporary
            // name, this file's too); where that fails as well, not at all: `mirror` and
            // `verify` will see the files as changed (said once).
            (Req::Fsetstat, Response::Status { code, .. }) if code != StatusCode::Ok => {
                conn.limits.times_by_path = true;
                let mtime = match self.ops[i] {
                    Op::Upload { mtime, .. } => *mtime,
                    _ => None,
                };
                // On an in-order server the plain RENAME went behind the CLOSE: this one
                // file keeps the server's time (a later `mirror` sends it again).
                if let Some(t) = mtime.filter(|_| !conn.limits.in_order) {
                    send_setstat(u, i, t, conn);
                }
            }
            (Req::Setstat, Response::Status { code, .. }) => {
                if code != StatusCode::Ok {
                    conn.refused(Refusal::Times);
                }
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
                // A server that leaves the size out, or cannot FSTAT (Perl's
                // Net::SFTP::SftpServer answers NO_SUCH_FILE to every one), is asked again
                // by path once the file is closed.
                let sizeless = match &response {
                    Response::Attrs(a) => a.size.is_none(),
                    Response::Status { code, .. } => *code != StatusCode::Ok,
                    _ => false,
                };
                if !sizeless {
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
        if u.outstanding == 0 && matches!(u.stage, Stage::Draining) {
            Self::close_flight(u, i, self.ops[i], conn);
            return false;
        }
        u.outstanding == 0 && matches!(u.stage, Stage::Closing)
    }

    /// Every reply up to the CLOSE is in: confirm the size if the FSTAT could not, then put
    /// the file in place; a failed upload's temporary file is removed first.
    pub(super) fn closed(&mut self, i: usize, conn: &mut Conn) {
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
        // Written aside: renamed into its directory only once that is made.
        if u.aside == Some(Aside::Deciding) {
            u.stage = Stage::AwaitingDir;
            return;
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
    pub(super) fn landing_reply(
        &mut self,
        i: usize,
        req: Req,
        response: Response,
        conn: &mut Conn,
    ) {
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

    /// The fate of the directory of an upload written aside: kept for its landing, or, a
    /// failure, its error. One that is writing stops and closes; one that is confirmed
    /// and waited for it lands or is discarded now; the others see it at their next step.
    pub(super) fn aside_settled(&mut self, i: usize, result: Result<(), Cause>, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!("only uploads write aside")
        };
        u.aside = Some(Aside::Decided);
        let Err(cause) = result else {
            if matches!(u.stage, Stage::AwaitingDir) {
                self.closed(i, conn);
            }
            return;
        };
        // The directory's failure is why the upload fails, whatever else went wrong.
        u.error = Some(cause);
        match u.stage {
            Stage::AwaitingDir => self.closed(i, conn),
            Stage::Writing => {
                self.writers.remove(&i);
                Self::send_close(u, i, self.ops[i].path(), false, None, conn);
            }
            _ => {}
        }
    }

    /// An upload whose file aside could not be made (the directory above is no directory,
    /// or will not take it): it goes as it would have without, into its own directory once
    /// that is made, and fails, if it does, with that directory's cause.
    fn unaside(&mut self, i: usize) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!("only uploads write aside")
        };
        let decided = u.aside.take() == Some(Aside::Decided);
        u.target = self.ops[i].path().temp_sibling();
        u.cleared = false;
        if decided {
            // Made already (a failure would be its error, and it would have failed).
            u.stage = Stage::Reopen;
            self.reopen.push_back(i);
        } else {
            // Released by `dir_settled`, as any upload waiting for its directory.
            u.stage = Stage::WaitingDir;
        }
    }

    /// Whether upload `i` writes aside: it hears of its directory by
    /// [`Batch::aside_settled`], whatever it is doing.
    pub(super) fn is_aside(&self, i: usize) -> bool {
        matches!(&self.states[i], State::Upload(u) if u.aside.is_some())
    }

    /// Removes a failed upload's temporary file; the failure is reported with the reply.
    pub(super) fn discard(&mut self, i: usize, conn: &mut Conn) {
        let State::Upload(u) = &mut self.states[i] else {
            unreachable!()
        };
        u.stage = Stage::Discarding;
        u.remove_target(i, conn);
    }
}

/// WRITEs up to this size carry their data in the output buffer, read there at once: small
/// files then go out with their requests in one write to the pipe. Larger ones are spliced
/// from the file by the transport (see [`crate::sftp::session::Next::Source`]).
const INLINE_WRITE_MAX: u32 = 64 * 1024;

const SHRANK: &str = "the file shrank while it was being sent";
const CHANGED_SIZE: &str = "the file changed size while it was being sent";

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

/// The access and modification times `t`, as attributes to set.
fn times(t: u32) -> Attrs {
    Attrs {
        times: Some((t, t)),
        ..Attrs::default()
    }
}

/// SETSTAT of upload `i`'s temporary file with the times `t`: where the server will not
/// set them by handle. Before the file is renamed into place, so its real name never
/// shows the server's time.
fn send_setstat(u: &mut Upload, i: usize, t: u32, conn: &mut Conn) {
    conn.session.send(
        Request::Setstat {
            path: u.target.as_bytes().to_vec(),
            attrs: times(t),
        },
        Tag::op(i, Req::Setstat),
    );
    u.outstanding += 1;
}
