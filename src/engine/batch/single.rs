//! Operations of one request, or a few in a row: SETSTAT of a size (then its STAT), REMOVE,
//! RMDIR, RENAME (READLINK first where a rename may write through a link; REMOVE first
//! without posix-rename), SYMLINK (REMOVE first; its directory made if missing), hard link,
//! READLINK. Removals, renames, hard links and symlinks go only once their directory is
//! known to be inside.
//!
//! Pure: requests are queued on the session, replies handed in.

use super::{Batch, Conn, Refusal, State, in_dir, refused};
use crate::engine::confine::Verdict;
use crate::engine::dirs::{Ensure, Waiter, reply_name, status_cause};
use crate::engine::op::{Cause, Entry, Op, Outcome, Req, Tag};
use crate::engine::symlinks::SymlinkTrust;
use crate::remote_path::RemotePath;
use crate::sftp::wire::{ExtendedRequest, Request, Response, StatusCode, Statvfs};

pub(super) enum Stepwise {
    /// A rename's LSTAT of its destination is in flight (see [`Batch::send_changing`]).
    Inspecting,
    /// A REMOVE of the destination is in flight; the real request follows its reply.
    Clearing,
    /// The same, of a symlink found at a rename's destination: one the server will not
    /// remove stops the rename (a server may rename through a link onto its target).
    ClearingLink,
    Final,
    /// The final request found no parent directory and was sent again once it was made.
    Retried,
    /// A hard link under way; with `pipelined` (an in-order server), all its requests went
    /// at once.
    Hardlink {
        step: LinkStep,
        pipelined: bool,
    },
}

/// The requests of a hard link: REMOVE of what stands at its name, HARDLINK, then the
/// LSTAT that confirms it. An in-order server gets all three at once; any other first the
/// HARDLINK alone, and the REMOVE (then the HARDLINK again) only if the name is taken.
pub(super) enum LinkStep {
    Clearing,
    /// The HARDLINK; `retry`: a FAILURE (the name taken) clears the name and links once
    /// more.
    Making {
        retry: bool,
    },
    /// `failed`: the HARDLINK's failure, answered before the LSTAT sent behind it.
    Confirming {
        failed: Option<Cause>,
    },
}

impl<'a> Batch<'a> {
    /// Starts a removal, rename, hard link or symlink: what removes or replaces a name goes
    /// only once its directory is known to be inside the target (see
    /// [`confine`](crate::engine::confine)); and never ahead of one started before it that
    /// waits so: an in-order server carries them out in the order sent, and the caller may
    /// rely on that (Release last).
    pub(super) fn start_changing(&mut self, i: usize, path: &RemotePath, conn: &mut Conn) {
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
    pub(super) fn send_changing(&mut self, i: usize, conn: &mut Conn) {
        match &self.ops[i] {
            Op::Remove { path } => {
                self.states[i] = State::Single(Stepwise::Final);
                // What an interrupted upload of it may have left goes with it: beside it,
                // or aside, where its directory was being made (see `upload`).
                conn.session.send(
                    Request::Remove {
                        path: path.temp_sibling().as_bytes().to_vec(),
                    },
                    Tag::Sweep,
                );
                if conn.limits.in_order
                    && let Some(above) = path.parent().and_then(|d| conn.dirs.aside_for(&d))
                {
                    let aside = path.temp_aside(&above).as_bytes().to_vec();
                    conn.session
                        .send(Request::Remove { path: aside }, Tag::Sweep);
                }
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
            Op::Symlink { link, .. } => match &conn.limits.symlinks {
                SymlinkTrust::Known | SymlinkTrust::Probing => {
                    self.clear_then(i, link.as_bytes(), conn)
                }
                // Never sent the other way round: the link would land outside.
                SymlinkTrust::Unknown => self.fail(
                    i,
                    links_unusable("it was not asked how it reads SYMLINK"),
                    conn,
                ),
                SymlinkTrust::Unusable(why) => {
                    let cause = links_unusable(why);
                    self.fail(i, cause, conn)
                }
            },
            // link(2) makes `to` and never follows a symlink there (it fails on any name
            // taken, which is cleared: a REMOVE removes a symlink, not what it leads to).
            // Not every server that answers OK made the link (rclone's does nothing): an
            // LSTAT confirms it.
            Op::Hardlink { to, .. } => {
                let pipelined = conn.limits.in_order;
                let step = if pipelined {
                    conn.session.send(
                        Request::Remove {
                            path: to.as_bytes().to_vec(),
                        },
                        Tag::op(i, Req::Remove),
                    );
                    LinkStep::Clearing
                } else {
                    LinkStep::Making { retry: true }
                };
                self.states[i] = State::Single(Stepwise::Hardlink { step, pipelined });
                self.send_link(i, conn);
                if pipelined {
                    self.confirm_link(i, conn);
                }
            }
            _ => unreachable!("only removals, renames, links and symlinks change a name"),
        }
    }

    /// Sends a rename operation's request: posix-rename, or REMOVE then RENAME.
    pub(super) fn send_rename_op(&mut self, i: usize, conn: &mut Conn) {
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
    pub(super) fn send_confined(&mut self, conn: &mut Conn) {
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

    /// Sends hard link `i`'s HARDLINK.
    fn send_link(&mut self, i: usize, conn: &mut Conn) {
        let Op::Hardlink { from, to } = self.ops[i] else {
            unreachable!("only hard links link")
        };
        conn.session.send_extended(
            ExtendedRequest::Hardlink {
                from: from.as_bytes().to_vec(),
                to: to.as_bytes().to_vec(),
            },
            Tag::op(i, Req::Hardlink),
        );
    }

    /// Sends the LSTAT that confirms hard link `i` was made.
    fn confirm_link(&mut self, i: usize, conn: &mut Conn) {
        let Op::Hardlink { to, .. } = self.ops[i] else {
            unreachable!("only hard links are confirmed")
        };
        conn.session.send(
            Request::Lstat {
                path: to.as_bytes().to_vec(),
            },
            Tag::op(i, Req::Lstat),
        );
    }

    /// A reply to one of a hard link's requests (see [`LinkStep`]).
    fn hardlink_reply(&mut self, i: usize, req: Req, response: Response, conn: &mut Conn) {
        let State::Single(Stepwise::Hardlink { step, pipelined }) = &mut self.states[i] else {
            unreachable!("a hard link's state")
        };
        let pipelined = *pipelined;
        let status = match &response {
            Response::Status { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        };
        let unexpected = Cause::UnexpectedReply {
            request: req,
            reply: reply_name(&response),
        };
        match (req, &mut *step) {
            // Whatever the REMOVE found, the HARDLINK's answer tells.
            (Req::Remove, LinkStep::Clearing) => {
                *step = LinkStep::Making { retry: false };
                if !pipelined {
                    self.send_link(i, conn);
                }
            }
            (Req::Hardlink, LinkStep::Making { retry }) => {
                let failed = match status {
                    Some((StatusCode::Ok, _)) => None,
                    Some((StatusCode::Failure, _)) if *retry && !pipelined => {
                        *step = LinkStep::Clearing;
                        let path = self.ops[i].path().as_bytes().to_vec();
                        conn.session
                            .send(Request::Remove { path }, Tag::op(i, Req::Remove));
                        return;
                    }
                    Some((code, message)) => Some(status_cause(req, code, &message)),
                    None => Some(unexpected),
                };
                match failed {
                    Some(cause) if !pipelined => self.fail(i, cause, conn),
                    failed => {
                        *step = LinkStep::Confirming { failed };
                        if !pipelined {
                            self.confirm_link(i, conn);
                        }
                    }
                }
            }
            (Req::Lstat, LinkStep::Confirming { failed }) => match (failed.take(), status) {
                (Some(cause), _) => self.fail(i, cause, conn),
                (None, None) if matches!(response, Response::Attrs(_)) => {
                    self.finish(i, Ok(Outcome::Done), conn)
                }
                (None, Some((StatusCode::NoSuchFile, _))) => self.fail(i, Cause::LinkNotMade, conn),
                (None, Some((code, message))) => {
                    self.fail(i, status_cause(req, code, &message), conn)
                }
                (None, None) => self.fail(i, unexpected, conn),
            },
            // Out of order, from a server that was to answer in order.
            _ => self.fail(i, unexpected, conn),
        }
    }

    pub(super) fn clear_then(&mut self, i: usize, path: &[u8], conn: &mut Conn) {
        self.states[i] = State::Single(Stepwise::Clearing);
        conn.session.send(
            Request::Remove {
                path: path.to_vec(),
            },
            Tag::op(i, Req::Remove),
        );
    }

    /// The request that follows a successful clearing REMOVE.
    pub(super) fn send_final(&mut self, i: usize, conn: &mut Conn) {
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

    /// A reply to an operation of one or a few requests in a row (not an upload, not a
    /// reading one).
    pub(super) fn single_reply(&mut self, i: usize, req: Req, response: Response, conn: &mut Conn) {
        let State::Single(step) = &self.states[i] else {
            unreachable!()
        };
        if let Op::Hardlink { .. } = self.ops[i] {
            return self.hardlink_reply(i, req, response, conn);
        }
        let clearing = matches!(step, Stepwise::Clearing | Stepwise::ClearingLink);
        let clearing_link = matches!(step, Stepwise::ClearingLink);
        let retried = matches!(step, Stepwise::Retried);
        if matches!(step, Stepwise::Inspecting) {
            let Op::Rename { to, .. } = self.ops[i] else {
                unreachable!("only renames inspect")
            };
            return match response {
                // A symlink is removed (the link itself), then the file renamed there.
                Response::Name(_) => {
                    self.clear_then(i, to.as_bytes(), conn);
                    self.states[i] = State::Single(Stepwise::ClearingLink);
                }
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
        if let Op::Statvfs { .. } | Op::Stat { .. } = self.ops[i] {
            return match looked_at(self.ops[i], req, response) {
                Ok(outcome) => self.finish(i, Ok(outcome), conn),
                Err(cause) => self.fail(i, cause, conn),
            };
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
            // Refused (an upload-only account): what it clears may not be there at all; the
            // RENAME or SYMLINK itself fails if it is.
            (true, code) if refused(code) && !clearing_link && !self.interrupted => {
                self.send_final(i, conn)
            }
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
    pub(super) fn set_size_reply(
        &mut self,
        i: usize,
        req: Req,
        response: Response,
        conn: &mut Conn,
    ) {
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
    pub(super) fn symlink_dir_missing(&mut self, i: usize, cause: Cause, conn: &mut Conn) {
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
}

/// What a STAT (the kind of entry, a symlink followed) or a `statvfs@openssh.com` (the room
/// left) found, from its reply.
fn looked_at(op: &Op, req: Req, response: Response) -> Result<Outcome, Cause> {
    match (op, response) {
        (Op::Statvfs { .. }, Response::ExtendedReply(data)) => Statvfs::decode(&data)
            .map(|v| Outcome::Space {
                available: v.available_bytes(),
                size: v.size_bytes(),
            })
            .map_err(|_| Cause::UnexpectedReply {
                request: req,
                reply: reply_name(&Response::ExtendedReply(data)),
            }),
        (Op::Stat { .. }, Response::Attrs(a)) => Ok(Outcome::Kind(Entry::new(Vec::new(), &a).kind)),
        (
            Op::Stat { .. },
            Response::Status {
                code: StatusCode::NoSuchFile,
                ..
            },
        ) => Ok(Outcome::AlreadyAbsent),
        (_, Response::Status { code, message, .. }) => Err(status_cause(req, code, &message)),
        (_, other) => Err(Cause::UnexpectedReply {
            request: req,
            reply: reply_name(&other),
        }),
    }
}

/// Why a symlink is not made on a server that does not make them as asked: as if it had
/// refused it (`symlinks auto` copies instead).
fn links_unusable(why: &str) -> Cause {
    Cause::Status {
        request: Req::Symlink,
        code: crate::engine::Status::Unsupported,
        message: format!("not sent: the server does not make links as asked ({why})"),
    }
}
