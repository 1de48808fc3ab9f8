//! The operations that read the remote side: listing a directory and comparing a remote
//! file with a local one. State machines like the uploads in `batch`: each reply advances
//! them; they say what to send next through the session.
//!
//! No I/O of their own and no clock: the local file a comparison reads is opened and read
//! through the connection's [`Sources`] (the engine's edge, `local`); bytes move in the
//! engine's loop. They must not hold more than the bounds say (a listing stops at
//! [`MAX_LISTING`] entries or [`MAX_LISTING_BYTES`]).

use std::path::Path;

use super::dirs::{reply_name, status_cause};
use super::local::Sources;
use super::op::{Cause, Entry, Outcome, Reply, Req, Tag};
use crate::sftp::printable::{has_controls, printable};
use crate::sftp::session::{Session, SourceId};
use crate::sftp::wire::{NameEntry, OpenFlags, Request, Response, StatusCode};

/// A listing stops here: a server that never says EOF must not fill our memory.
pub(crate) const MAX_LISTING: usize = 1_000_000;
/// And here, counting the bytes kept: names and what each entry costs us besides.
pub(crate) const MAX_LISTING_BYTES: usize = 256 * 1024 * 1024;
/// What an entry costs besides its name (the entry itself and a little slack).
const ENTRY_COST: usize = std::mem::size_of::<Entry>() + 16;
/// NAME replies in a row that add nothing (empty, or only `.` and `..`) before the listing
/// counts as stalled: a server that answers READDIR that way for ever never says EOF.
const MAX_IDLE_NAMES: u32 = 3;
/// Names refused in one listing that are each said; the rest are counted.
const MAX_REFUSED_SHOWN: usize = 4;
/// The longest path an entry listed may have (Linux's `PATH_MAX`, which no mirror comes
/// near): a server that lists a directory in every directory it lists would otherwise
/// have a walk of the tree go down for ever.
pub(crate) const MAX_LISTED_PATH: usize = 4096;

/// Why `name`, listed by a server, is no name of an entry of the directory listed: a
/// server that lists `a/b` or `../x` must not lead anyone who joins it to the directory's
/// path elsewhere. `.` and `..` are the directory's own and are left out without a word.
/// Names that are not UTF-8 pass: the caller decides what it can use.
fn not_a_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("an empty name")
    } else if name.contains(&b'/') {
        Some("it holds a '/'")
    } else if name.contains(&0) {
        Some("it holds a NUL byte")
    } else if has_controls(name) {
        Some("it holds control characters")
    } else {
        None
    }
}

/// What a reply did to a reading operation.
pub(crate) enum Step {
    /// Keep going; `released_handle` when the remote handle was just closed (or never
    /// obtained), so the open-file slot is free again.
    Continue { released_handle: bool },
    /// Finished with this result; its handle, if it had one, is closed.
    Finished {
        result: Result<Outcome, Cause>,
        released_handle: bool,
    },
}

fn tag(op: usize, req: Req) -> Tag {
    Tag::op(op, req)
}

/// The outcome once a handle's CLOSE is answered: an earlier error wins, then the CLOSE's
/// own status, else `ok`.
fn close_verdict(
    error: Option<Cause>,
    response: Response,
    ok: impl FnOnce() -> Outcome,
) -> Result<Outcome, Cause> {
    match (error, response) {
        (Some(cause), _) => Err(cause),
        (
            None,
            Response::Status {
                code: StatusCode::Ok,
                ..
            },
        ) => Ok(ok()),
        (None, Response::Status { code, message, .. }) => {
            Err(status_cause(Req::Close, code, &message))
        }
        (None, other) => Err(Cause::UnexpectedReply {
            request: Req::Close,
            reply: reply_name(&other),
        }),
    }
}

fn send_close(op: usize, handle: &[u8], session: &mut Session<Tag>) {
    session.send(
        Request::Close {
            handle: handle.to_vec(),
        },
        tag(op, Req::Close),
    );
}

/// OPENDIR, READDIR until EOF, CLOSE. Bounded by entries and by bytes; of each entry only
/// the name and what [`Entry`] holds of its attributes are kept (a server may send long
/// `longname`s or extended attributes with every entry).
pub(crate) struct ListRun {
    /// The directory listed, as asked (for what is said about its names).
    path: Vec<u8>,
    /// Names left out as no names ([`not_a_name`]).
    refused: usize,
    handle: Vec<u8>,
    entries: Vec<Entry>,
    /// What `entries` holds, by [`ENTRY_COST`] and name length.
    bytes: usize,
    /// NAME replies in a row that added no entry.
    idle: u32,
    /// Whether a READDIR has been answered yet.
    answered: bool,
    /// The directory turned out not to exist after all: asyncssh answers OPENDIR of a
    /// missing directory with a handle, and NO_SUCH_FILE at the first READDIR.
    absent: bool,
    error: Option<Cause>,
    closing: bool,
}

impl ListRun {
    pub(crate) fn start(op: usize, path: &[u8], session: &mut Session<Tag>) -> ListRun {
        session.send(
            Request::Opendir {
                path: path.to_vec(),
            },
            tag(op, Req::Opendir),
        );
        ListRun {
            path: path.to_vec(),
            refused: 0,
            handle: Vec::new(),
            entries: Vec::new(),
            bytes: 0,
            idle: 0,
            answered: false,
            absent: false,
            error: None,
            closing: false,
        }
    }

    /// Keeps the entries of one NAME reply (without `.`, `..`, what is no name, and what is
    /// not used); `Err` says why the listing must stop.
    fn take_names(&mut self, names: Vec<NameEntry>) -> Result<(), Reply> {
        let before = self.entries.len();
        for entry in names {
            if entry.filename == b"." || entry.filename == b".." {
                continue;
            }
            if let Some(why) = not_a_name(&entry.filename) {
                self.refuse(&entry.filename, why);
                continue;
            }
            if self.path.len() + 1 + entry.filename.len() > MAX_LISTED_PATH {
                self.refuse(&entry.filename, "its path would be longer than 4096 bytes");
                continue;
            }
            self.bytes = self.bytes.saturating_add(ENTRY_COST + entry.filename.len());
            self.entries.push(Entry::new(entry.filename, &entry.attrs));
        }
        self.idle = if self.entries.len() == before {
            self.idle + 1
        } else {
            0
        };
        if self.idle >= MAX_IDLE_NAMES {
            Err(Reply::StalledListing)
        } else if self.entries.len() > MAX_LISTING {
            Err(Reply::TooManyEntries)
        } else if self.bytes > MAX_LISTING_BYTES {
            Err(Reply::TooLargeListing)
        } else {
            Ok(())
        }
    }

    fn refuse(&mut self, name: &[u8], why: &str) {
        self.refused += 1;
        if self.refused <= MAX_REFUSED_SHOWN {
            log::warn!(
                "the server listed \"{}\" in {}, which is no file name ({why}): left out",
                printable(name, 256),
                printable(&self.path, 512)
            );
        }
    }

    /// The entries, once the listing is over: each name once (a server that lists a name
    /// twice must not have it, or a whole tree below it, handled twice), by name.
    fn take_entries(&mut self) -> Vec<Entry> {
        if self.refused > MAX_REFUSED_SHOWN {
            log::warn!(
                "the server listed {} more names in {} that are no file names: left out",
                self.refused - MAX_REFUSED_SHOWN,
                printable(&self.path, 512)
            );
        }
        let mut entries = std::mem::take(&mut self.entries);
        // Stable: of the copies of a name, the first listed stays.
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let listed = entries.len();
        entries.dedup_by(|later, first| later.name == first.name);
        if entries.len() < listed {
            log::warn!(
                "the server listed {} names in {} more than once: each is taken once",
                listed - entries.len(),
                printable(&self.path, 512)
            );
        }
        entries
    }

    fn close(&mut self, op: usize, session: &mut Session<Tag>) {
        self.closing = true;
        send_close(op, &self.handle, session);
    }

    pub(crate) fn on_reply(
        &mut self,
        op: usize,
        req: Req,
        response: Response,
        session: &mut Session<Tag>,
    ) -> Step {
        match (req, response) {
            (Req::Opendir, Response::Handle(h)) => {
                self.handle = h;
                self.read_more(op, session);
            }
            (Req::Opendir, Response::Status { code, message, .. }) => {
                let result = if code == StatusCode::NoSuchFile {
                    Ok(Outcome::AlreadyAbsent)
                } else if code == StatusCode::Failure {
                    // Erlang's ssh_sftpd answers OPENDIR of a missing directory with a
                    // FAILURE ("Not a directory"): whether anything is there is asked.
                    self.error = Some(status_cause(req, code, &message));
                    session.send(
                        Request::Lstat {
                            path: self.path.clone(),
                        },
                        tag(op, Req::Lstat),
                    );
                    return Step::Continue {
                        released_handle: false,
                    };
                } else {
                    Err(status_cause(req, code, &message))
                };
                return finished(result, true);
            }
            (Req::Lstat, response) => {
                let failure = self.error.take().expect("an OPENDIR failed");
                let result = match response {
                    Response::Status {
                        code: StatusCode::NoSuchFile,
                        ..
                    } => Ok(Outcome::AlreadyAbsent),
                    _ => Err(failure),
                };
                return finished(result, true);
            }
            (Req::Readdir, Response::Name(names)) => {
                self.answered = true;
                if let Err(reply) = self.take_names(names) {
                    self.error = Some(Cause::UnexpectedReply {
                        request: req,
                        reply,
                    });
                    self.close(op, session);
                } else {
                    self.read_more(op, session);
                }
            }
            (Req::Readdir, Response::Status { code, message, .. }) => {
                if code == StatusCode::NoSuchFile && !self.answered {
                    self.absent = true;
                } else if code != StatusCode::Eof {
                    self.error = Some(status_cause(req, code, &message));
                }
                self.answered = true;
                self.close(op, session);
            }
            (Req::Close, response) => {
                let entries = self.take_entries();
                let absent = self.absent;
                let result = close_verdict(self.error.take(), response, || {
                    if absent {
                        Outcome::AlreadyAbsent
                    } else {
                        Outcome::Listing(entries)
                    }
                });
                return finished(result, true);
            }
            (request, other) => {
                let cause = Cause::UnexpectedReply {
                    request,
                    reply: reply_name(&other),
                };
                if request == Req::Opendir {
                    return finished(Err(cause), true);
                }
                self.error.get_or_insert(cause);
                if !self.closing {
                    self.close(op, session);
                }
            }
        }
        Step::Continue {
            released_handle: false,
        }
    }

    fn read_more(&mut self, op: usize, session: &mut Session<Tag>) {
        session.send(
            Request::Readdir {
                handle: self.handle.clone(),
            },
            tag(op, Req::Readdir),
        );
    }
}

/// OPEN for reading, FSTAT, READs pipelined and compared with the local file, CLOSE.
pub(crate) struct CompareRun {
    local: std::path::PathBuf,
    /// The local file, open in the connection's [`Sources`] while the comparison runs.
    source: SourceId,
    size: u64,
    handle: Vec<u8>,
    /// Next offset to ask for.
    next_offset: u64,
    outstanding: u32,
    differs: bool,
    error: Option<Cause>,
    closing: bool,
    opened: bool,
    /// READ bytes asked for since the caller last took the count (for its window).
    requested: u64,
}

impl CompareRun {
    pub(crate) fn start(
        op: usize,
        local: &Path,
        remote: &[u8],
        session: &mut Session<Tag>,
        sources: &mut Sources,
    ) -> Result<CompareRun, Cause> {
        let (source, size) = sources.open_sized(local)?;
        session.send(
            Request::Open {
                path: remote.to_vec(),
                flags: OpenFlags::READ,
                attrs: Default::default(),
            },
            tag(op, Req::Open),
        );
        Ok(CompareRun {
            local: local.to_owned(),
            source,
            size,
            handle: Vec::new(),
            next_offset: 0,
            outstanding: 1,
            differs: false,
            error: None,
            closing: false,
            opened: false,
            requested: 0,
        })
    }

    /// Whether it still has ranges to ask for.
    pub(crate) fn wants_reads(&self) -> bool {
        self.opened && !self.closing && self.next_offset < self.size
    }

    /// Sends READs while `room(len)` allows (and counts them in).
    pub(crate) fn pump(
        &mut self,
        op: usize,
        chunk: u32,
        session: &mut Session<Tag>,
        mut room: impl FnMut(u64, &Session<Tag>) -> bool,
    ) {
        while self.wants_reads() {
            let len = (self.size - self.next_offset).min(u64::from(chunk)) as u32;
            if !room(u64::from(len), session) {
                break;
            }
            self.read(op, self.next_offset, len, session);
            self.next_offset += u64::from(len);
        }
        self.maybe_close(op, session);
    }

    /// The READ bytes asked for since the last call.
    pub(crate) fn take_requested(&mut self) -> u64 {
        std::mem::take(&mut self.requested)
    }

    fn read(&mut self, op: usize, offset: u64, len: u32, session: &mut Session<Tag>) {
        self.requested += u64::from(len);
        session.send(
            Request::Read {
                handle: self.handle.clone(),
                offset,
                len,
            },
            Tag::Op {
                op,
                req: Req::Read,
                bytes: len,
                offset,
            },
        );
        self.outstanding += 1;
    }

    fn maybe_close(&mut self, op: usize, session: &mut Session<Tag>) {
        let all_asked = self.next_offset >= self.size;
        if self.opened
            && !self.closing
            && (self.differs || self.error.is_some() || (all_asked && self.outstanding == 0))
        {
            self.closing = true;
            send_close(op, &self.handle, session);
            self.outstanding += 1;
        }
    }

    /// Its local file, to close once it is over.
    pub(crate) fn source(&self) -> SourceId {
        self.source
    }

    fn compare(&self, offset: u64, data: &[u8], sources: &Sources) -> Result<bool, Cause> {
        sources
            .holds(self.source, offset, data)
            .map_err(|e| Cause::Local {
                path: self.local.clone(),
                message: e.to_string(),
            })
    }

    pub(crate) fn on_reply(
        &mut self,
        op: usize,
        req: Req,
        (bytes, offset): (u32, u64),
        response: Response,
        session: &mut Session<Tag>,
        sources: &Sources,
    ) -> Step {
        self.outstanding -= 1;
        match (req, response) {
            (Req::Open, Response::Handle(h)) => {
                self.handle = h;
                self.opened = true;
                session.send(
                    Request::Fstat {
                        handle: self.handle.clone(),
                    },
                    tag(op, Req::Fstat),
                );
                self.outstanding += 1;
            }
            (Req::Open, Response::Status { code, message, .. }) => {
                return finished(Err(status_cause(req, code, &message)), true);
            }
            (Req::Fstat, Response::Attrs(a)) => {
                if a.size.is_some_and(|s| s != self.size) {
                    self.differs = true;
                }
            }
            (Req::Read, Response::Data(data)) => {
                let read = (bytes, offset, data.as_slice());
                self.on_data(op, read, session, sources)
            }
            (Req::Read, Response::Status { code, message, .. }) => {
                if code == StatusCode::Eof {
                    // The remote file ends before the local one does.
                    self.differs = true;
                } else {
                    self.error.get_or_insert(status_cause(req, code, &message));
                }
            }
            (Req::Close, response) => return self.on_close(response),
            (request, other) => {
                self.error.get_or_insert(Cause::UnexpectedReply {
                    request,
                    reply: reply_name(&other),
                });
                if request == Req::Open {
                    return finished(Err(self.error.take().expect("set")), true);
                }
            }
        }
        if self.closing && self.outstanding == 0 {
            // The CLOSE reply came before the last READ replies.
            return finished(self.verdict(), false);
        }
        self.maybe_close(op, session);
        Step::Continue {
            released_handle: false,
        }
    }

    /// A READ's data, asked as `bytes` at `offset`: compared with the local file; a short
    /// read asks again for the rest.
    fn on_data(
        &mut self,
        op: usize,
        (bytes, offset, data): (u32, u64, &[u8]),
        session: &mut Session<Tag>,
        sources: &Sources,
    ) {
        if data.is_empty() {
            // Nothing at an offset before the end: not the same file (and asking again would
            // loop for ever).
            self.differs = true;
            return;
        }
        if data.len() > bytes as usize {
            self.error.get_or_insert(Cause::UnexpectedReply {
                request: Req::Read,
                reply: Reply::MoreDataThanAsked,
            });
            return;
        }
        match self.compare(offset, data, sources) {
            Ok(true) => {
                // A short read: ask again for the rest of the range, unless the handle is
                // being closed.
                if data.len() < bytes as usize
                    && !self.differs
                    && !self.closing
                    && self.error.is_none()
                {
                    let got = data.len() as u32;
                    self.read(op, offset + u64::from(got), bytes - got, session);
                }
            }
            Ok(false) => self.differs = true,
            Err(cause) => {
                self.error.get_or_insert(cause);
            }
        }
    }

    /// The CLOSE's reply: the verdict, unless replies to READs sent before it are still due
    /// (a server may answer out of order); then it is kept until they are in.
    fn on_close(&mut self, response: Response) -> Step {
        let differs = self.differs;
        let result = close_verdict(self.error.take(), response, || {
            if differs {
                Outcome::Differs
            } else {
                Outcome::Same
            }
        });
        if self.outstanding == 0 {
            return finished(result, true);
        }
        self.error = result.err();
        Step::Continue {
            released_handle: true,
        }
    }

    /// What the comparison found, all replies in.
    fn verdict(&mut self) -> Result<Outcome, Cause> {
        match self.error.take() {
            Some(cause) => Err(cause),
            None if self.differs => Ok(Outcome::Differs),
            None => Ok(Outcome::Same),
        }
    }
}

/// A reading operation is over with `result`; `released_handle` as in [`Step`].
fn finished(result: Result<Outcome, Cause>, released_handle: bool) -> Step {
    Step::Finished {
        result,
        released_handle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::wire::{Attrs, Frame, Packet, frame};

    /// The requests queued on the session since the last call.
    fn sent(session: &mut Session<Tag>) -> Vec<Request> {
        let mut out = Vec::new();
        let mut bytes = session.take_output();
        while let Ok(Frame::Complete { body, consumed }) = frame(&bytes) {
            if let Ok(Packet::Request { request, .. }) = Packet::decode_from_client(body) {
                out.push(request);
            }
            bytes.drain(..consumed);
        }
        out
    }

    fn status(code: StatusCode) -> Response {
        Response::Status {
            code,
            message: vec![],
            language: vec![],
        }
    }

    /// A comparison of a local file of `size` sevens, opened, its size confirmed, and its
    /// READs of 100 bytes sent.
    fn comparing(size: usize) -> (tempfile::TempDir, CompareRun, Session<Tag>, Sources) {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("f");
        std::fs::write(&local, vec![7u8; size]).unwrap();
        let mut s: Session<Tag> = Session::new();
        sent(&mut s);
        let mut sources = Sources::default();
        let mut run = CompareRun::start(0, &local, b"f", &mut s, &mut sources).unwrap();
        run.on_reply(
            0,
            Req::Open,
            (0, 0),
            Response::Handle(b"h".to_vec()),
            &mut s,
            &sources,
        );
        let attrs = Attrs {
            size: Some(size as u64),
            ..Attrs::default()
        };
        run.on_reply(
            0,
            Req::Fstat,
            (0, 0),
            Response::Attrs(attrs),
            &mut s,
            &sources,
        );
        run.pump(0, 100, &mut s, |_, _| true);
        sent(&mut s);
        (dir, run, s, sources)
    }

    #[test]
    fn nothing_is_read_on_a_handle_being_closed() {
        let (_dir, mut run, mut s, sources) = comparing(200);
        // The first READ fails: CLOSE goes out.
        run.on_reply(
            0,
            Req::Read,
            (100, 0),
            status(StatusCode::Failure),
            &mut s,
            &sources,
        );
        assert!(matches!(sent(&mut s)[..], [Request::Close { .. }]));
        // The second comes back short but equal: no READ for the rest any more.
        run.on_reply(
            0,
            Req::Read,
            (100, 100),
            Response::Data(vec![7; 50]),
            &mut s,
            &sources,
        );
        assert!(sent(&mut s).is_empty());
        let step = run.on_reply(
            0,
            Req::Close,
            (0, 0),
            status(StatusCode::Ok),
            &mut s,
            &sources,
        );
        assert!(matches!(
            step,
            Step::Finished {
                result: Err(Cause::Status { .. }),
                ..
            }
        ));
    }

    #[test]
    fn a_comparison_answered_with_the_wrong_kind_or_too_much_fails_and_closes_its_handle() {
        let oversized = Response::Data(vec![7; 101]);
        let wrong = [
            (
                Req::Read,
                Response::Handle(b"h2".to_vec()),
                "READ with HANDLE",
            ),
            (Req::Read, Response::Name(vec![]), "READ with NAME"),
            (Req::Read, oversized, "more data than asked for"),
        ];
        for (req, response, said) in wrong {
            let (_dir, mut run, mut s, sources) = comparing(200);
            run.on_reply(0, req, (100, 0), response, &mut s, &sources);
            // The other READ's answer still comes; then the handle is closed.
            run.on_reply(
                0,
                Req::Read,
                (100, 100),
                Response::Data(vec![7; 100]),
                &mut s,
                &sources,
            );
            assert!(
                matches!(sent(&mut s)[..], [Request::Close { .. }]),
                "{said}"
            );
            let step = run.on_reply(
                0,
                Req::Close,
                (0, 0),
                status(StatusCode::Ok),
                &mut s,
                &sources,
            );
            let Step::Finished { result: Err(e), .. } = step else {
                panic!("{said}: not a failure")
            };
            assert!(e.to_string().contains(said), "{e}");
        }
        // An FSTAT answered with DATA: the size is unknown, the comparison an error.
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("f");
        std::fs::write(&local, [7u8; 10]).unwrap();
        let mut s: Session<Tag> = Session::new();
        let mut sources = Sources::default();
        let mut run = CompareRun::start(0, &local, b"f", &mut s, &mut sources).unwrap();
        let handle = Response::Handle(b"h".to_vec());
        run.on_reply(0, Req::Open, (0, 0), handle, &mut s, &sources);
        let data = Response::Data(b"x".to_vec());
        run.on_reply(0, Req::Fstat, (0, 0), data, &mut s, &sources);
        let step = run.on_reply(
            0,
            Req::Close,
            (0, 0),
            status(StatusCode::Ok),
            &mut s,
            &sources,
        );
        let Step::Finished { result: Err(e), .. } = step else {
            panic!("not a failure")
        };
        assert!(e.to_string().contains("FSTAT with DATA"), "{e}");
    }

    #[test]
    fn an_empty_data_reply_is_a_difference_not_a_loop() {
        let (_dir, mut run, mut s, sources) = comparing(100);
        run.on_reply(
            0,
            Req::Read,
            (100, 0),
            Response::Data(vec![]),
            &mut s,
            &sources,
        );
        assert!(matches!(sent(&mut s)[..], [Request::Close { .. }]));
        let step = run.on_reply(
            0,
            Req::Close,
            (0, 0),
            status(StatusCode::Ok),
            &mut s,
            &sources,
        );
        assert!(matches!(
            step,
            Step::Finished {
                result: Ok(Outcome::Differs),
                ..
            }
        ));
    }

    #[test]
    fn a_short_read_asks_for_the_rest() {
        let (_dir, mut run, mut s, sources) = comparing(100);
        run.on_reply(
            0,
            Req::Read,
            (100, 0),
            Response::Data(vec![7; 60]),
            &mut s,
            &sources,
        );
        assert!(matches!(
            sent(&mut s)[..],
            [Request::Read {
                offset: 60,
                len: 40,
                ..
            }]
        ));
        assert_eq!(run.take_requested(), 100 + 40);
        run.on_reply(
            0,
            Req::Read,
            (40, 60),
            Response::Data(vec![7; 40]),
            &mut s,
            &sources,
        );
        assert!(matches!(sent(&mut s)[..], [Request::Close { .. }]));
        let step = run.on_reply(
            0,
            Req::Close,
            (0, 0),
            status(StatusCode::Ok),
            &mut s,
            &sources,
        );
        assert!(matches!(
            step,
            Step::Finished {
                result: Ok(Outcome::Same),
                ..
            }
        ));
    }

    fn entry(name: &[u8], longname: usize) -> NameEntry {
        NameEntry {
            filename: name.to_vec(),
            longname: vec![b'x'; longname],
            attrs: Attrs {
                extended: vec![(b"big".to_vec(), vec![0; longname])],
                ..Attrs::default()
            },
        }
    }

    /// A listing of `dir`, its handle `h` given and the first READDIR sent.
    fn listing() -> (ListRun, Session<Tag>) {
        let mut s: Session<Tag> = Session::new();
        sent(&mut s);
        let mut run = ListRun::start(0, b"dir", &mut s);
        sent(&mut s);
        run.on_reply(0, Req::Opendir, Response::Handle(b"h".to_vec()), &mut s);
        assert!(matches!(sent(&mut s)[..], [Request::Readdir { .. }]));
        (run, s)
    }

    fn finished(step: Step) -> Result<Outcome, Cause> {
        match step {
            Step::Finished { result, .. } => result,
            Step::Continue { .. } => panic!("not finished"),
        }
    }

    #[test]
    fn empty_names_for_ever_are_a_stall_not_a_loop() {
        let (mut run, mut s) = listing();
        run.on_reply(
            0,
            Req::Readdir,
            Response::Name(vec![entry(b"a", 0)]),
            &mut s,
        );
        let mut readdirs = 0;
        loop {
            let reqs = sent(&mut s);
            if matches!(reqs[..], [Request::Close { .. }]) {
                break;
            }
            assert!(matches!(reqs[..], [Request::Readdir { .. }]));
            readdirs += 1;
            assert!(readdirs < 10, "still asking");
            let names = if readdirs % 2 == 0 {
                vec![]
            } else {
                vec![entry(b".", 0), entry(b"..", 0)]
            };
            run.on_reply(0, Req::Readdir, Response::Name(names), &mut s);
        }
        let step = run.on_reply(0, Req::Close, status(StatusCode::Ok), &mut s);
        let err = finished(step).unwrap_err();
        assert!(err.to_string().contains("stalled"), "{err}");
    }

    #[test]
    fn listings_keep_no_longname_and_no_extended_attributes() {
        let (mut run, mut s) = listing();
        let names = (0..10)
            .map(|i| entry(format!("f{i}").as_bytes(), 100_000))
            .collect();
        run.on_reply(0, Req::Readdir, Response::Name(names), &mut s);
        run.on_reply(0, Req::Readdir, status(StatusCode::Eof), &mut s);
        let step = run.on_reply(0, Req::Close, status(StatusCode::Ok), &mut s);
        let Ok(Outcome::Listing(entries)) = finished(step) else {
            panic!("no listing")
        };
        assert_eq!(entries.len(), 10);
        // An entry holds no longname nor extended attributes (see [`Entry`]): only its name
        // and the attributes used.
        assert_eq!(entries[3].name, b"f3");
        assert!(entries.iter().all(|e| e.name.capacity() < 16));
    }

    #[test]
    fn a_listing_is_bounded_by_bytes() {
        let (mut run, mut s) = listing();
        // Names of 4000 bytes, 60 a reply (as a packet holds them): the byte bound stops
        // it long before a million entries.
        let mut replies = 0;
        loop {
            replies += 1;
            let names = (0..60)
                .map(|k| {
                    let mut name = vec![b'n'; 4000];
                    name.extend(format!("{replies}.{k}").bytes());
                    entry(&name, 0)
                })
                .collect();
            run.on_reply(0, Req::Readdir, Response::Name(names), &mut s);
            if !matches!(sent(&mut s)[..], [Request::Readdir { .. }]) {
                break;
            }
        }
        assert!(replies <= MAX_LISTING_BYTES / (60 * 4000) + 1, "{replies}");
        let step = run.on_reply(0, Req::Close, status(StatusCode::Ok), &mut s);
        let err = finished(step).unwrap_err();
        assert!(err.to_string().contains("256 MiB"), "{err}");
    }

    #[test]
    fn no_such_file_at_the_first_readdir_is_an_absent_directory() {
        let (mut run, mut s) = listing();
        run.on_reply(0, Req::Readdir, status(StatusCode::NoSuchFile), &mut s);
        assert!(matches!(sent(&mut s)[..], [Request::Close { .. }]));
        let step = run.on_reply(0, Req::Close, status(StatusCode::Ok), &mut s);
        assert_eq!(finished(step), Ok(Outcome::AlreadyAbsent));
        // Later on, it is an error (the directory went away while being listed).
        let (mut run, mut s) = listing();
        run.on_reply(
            0,
            Req::Readdir,
            Response::Name(vec![entry(b"a", 0)]),
            &mut s,
        );
        run.on_reply(0, Req::Readdir, status(StatusCode::NoSuchFile), &mut s);
        let step = run.on_reply(0, Req::Close, status(StatusCode::Ok), &mut s);
        assert!(finished(step).is_err());
    }

    #[test]
    fn names_that_are_no_file_names_are_left_out_and_each_name_is_kept_once() {
        let (mut run, mut s) = listing();
        let mut names: Vec<NameEntry> = [
            &b"b.deb"[..],
            b"..",
            b".",
            b"",
            b"../../escape",
            b"/etc/passwd",
            b"a/b",
            b"nul\0x",
            b"\x1b[2Jclear",
            "rtl\u{202e}bed.exe".as_bytes(),
            b"latin1-\xe4",
            b"a.deb",
            b"b.deb",
        ]
        .iter()
        .map(|n| entry(n, 0))
        .collect();
        // The second b.deb is a directory: the first one listed stays.
        names[12].attrs.permissions = Some(0o040755);
        run.on_reply(0, Req::Readdir, Response::Name(names), &mut s);
        run.on_reply(0, Req::Readdir, status(StatusCode::Eof), &mut s);
        let step = run.on_reply(0, Req::Close, status(StatusCode::Ok), &mut s);
        let Ok(Outcome::Listing(entries)) = finished(step) else {
            panic!("no listing")
        };
        let names: Vec<&[u8]> = entries.iter().map(|e| &e.name[..]).collect();
        assert_eq!(names, [&b"a.deb"[..], b"b.deb", b"latin1-\xe4"]);
        assert!(!entries[1].is_dir());
    }

    #[test]
    fn no_entry_is_listed_whose_path_would_be_longer_than_a_file_system_holds() {
        let mut s: Session<Tag> = Session::new();
        let deep = vec![b'd'; MAX_LISTED_PATH - 4];
        let mut run = ListRun::start(0, &deep, &mut s);
        run.on_reply(0, Req::Opendir, Response::Handle(b"h".to_vec()), &mut s);
        let names = vec![entry(b"abc", 0), entry(b"abcd", 0)];
        run.on_reply(0, Req::Readdir, Response::Name(names), &mut s);
        run.on_reply(0, Req::Readdir, status(StatusCode::Eof), &mut s);
        let step = run.on_reply(0, Req::Close, status(StatusCode::Ok), &mut s);
        let Ok(Outcome::Listing(entries)) = finished(step) else {
            panic!("no listing")
        };
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, b"abc");
    }

    #[test]
    fn a_server_listing_only_names_that_are_no_names_is_a_stall_not_a_loop() {
        let (mut run, mut s) = listing();
        for _ in 0..MAX_IDLE_NAMES {
            let names = vec![entry(b"../x", 0), entry(b"a/b", 0)];
            run.on_reply(0, Req::Readdir, Response::Name(names), &mut s);
        }
        assert!(matches!(sent(&mut s).last(), Some(Request::Close { .. })));
        let step = run.on_reply(0, Req::Close, status(StatusCode::Ok), &mut s);
        let err = finished(step).unwrap_err();
        assert!(err.to_string().contains("stalled"), "{err}");
    }

    #[test]
    fn hostile_names_from_a_server_never_reach_the_listing() {
        use crate::engine::op::Op;
        use crate::engine::peer::{Flavour, Pair, Peer};
        use crate::remote_path::RemotePath;
        let mut peer = Peer::new(Flavour::OpenSsh);
        peer.fs.dir("/m/pool").file("/m/pool/a.deb", b"a");
        let hostile: Vec<NameEntry> = [&b"../../etc"[..], b"/etc", b"x/../../y", b"", b"a.deb"]
            .iter()
            .map(|n| entry(n, 0))
            .collect();
        peer.on("READDIR /m/pool")
            .nth(1)
            .answer(Response::Name(hostile));
        let mut pair = Pair::new(peer);
        let ops = [Op::List {
            path: RemotePath::new("/m/pool").unwrap(),
        }];
        let results = pair.run(&ops);
        let Ok(Outcome::Listing(entries)) = &results[0] else {
            panic!("{:?}", results[0])
        };
        let names: Vec<&[u8]> = entries.iter().map(|e| &e.name[..]).collect();
        assert_eq!(names, [b"a.deb"]);
    }
}
