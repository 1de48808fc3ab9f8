//! A scripted in-memory SFTP server for the engine's unit tests, in the manner of
//! quinn-proto's test `Pair`: the engine's requests are decoded with the server side of the
//! wire codec, carried out on an in-memory tree ([`Fs`]: files, directories, symlinks) with
//! OpenSSH's semantics, and answered; a [`Rule`] of the script can fail a chosen request,
//! answer it with anything, change the tree just before it (a race), hold its reply back,
//! or never answer it. [`Pair`](pair::Pair) connects it to a session and drives batches.
//!
//! Test code only: it must stay small enough to trust, and it never reaches into the engine
//! beyond what the engine's own loop does.

mod fs;
pub(crate) mod pair;

use std::collections::HashMap;

use crate::sftp::wire::{
    self, Attrs, ExtendedRequest, Frame, NameEntry, OpenFlags, Packet, Request, Response,
    StatusCode, ext,
};

pub(crate) use fs::{Fs, Node};
use fs::{join, split};
pub(crate) use pair::Pair;

/// What a [`Rule`] does to the requests it matches.
pub(crate) enum Action {
    /// Answer this instead of carrying the request out.
    Answer(Response),
    /// Change the tree (another client, a race), then carry the request out.
    Before(Box<dyn FnMut(&mut Fs)>),
    /// Carry it out, and keep its reply back until nothing else is left to answer.
    Hold,
    /// Neither carry it out nor answer it.
    Drop,
    /// Carry it out, and send these bytes instead of its reply.
    Raw(Vec<u8>),
    /// Carry it out, and have the run asked to stop (a signal) at this moment.
    Signal,
}

/// A scripted exception to the server's plain behaviour.
pub(crate) struct Rule {
    /// See [`Peer::on`].
    pattern: String,
    /// Only the `nth` match (from 1), or every one.
    nth: Option<usize>,
    seen: usize,
    action: Action,
}

impl Rule {
    /// Applies to the `n`th matching request only (counted from 1).
    pub(crate) fn nth(&mut self, n: usize) -> &mut Rule {
        self.nth = Some(n);
        self
    }

    /// Answers the request with this status instead of carrying it out.
    pub(crate) fn fail(&mut self, code: StatusCode) -> &mut Rule {
        self.action = Action::Answer(status(code));
        self
    }

    /// Answers the request with `response` (of any kind) instead of carrying it out.
    pub(crate) fn answer(&mut self, response: Response) -> &mut Rule {
        self.action = Action::Answer(response);
        self
    }

    /// Changes the tree just before the request is carried out: a race with another client.
    pub(crate) fn before(&mut self, change: impl FnMut(&mut Fs) + 'static) -> &mut Rule {
        self.action = Action::Before(Box::new(change));
        self
    }

    /// Delays the reply until the peer has nothing else to send on that connection.
    pub(crate) fn hold(&mut self) -> &mut Rule {
        self.action = Action::Hold;
        self
    }

    /// Never carries the request out nor answers it.
    pub(crate) fn drop_it(&mut self) -> &mut Rule {
        self.action = Action::Drop;
        self
    }

    /// Carries the request out and sends `bytes` instead of its reply.
    pub(crate) fn raw(&mut self, bytes: Vec<u8>) -> &mut Rule {
        self.action = Action::Raw(bytes);
        self
    }

    /// Carries the request out; the run is then asked to stop, as by a signal.
    pub(crate) fn signal(&mut self) -> &mut Rule {
        self.action = Action::Signal;
        self
    }

    fn applies(&mut self, line: &str) -> bool {
        let matched = line == self.pattern
            || line.starts_with(&self.pattern) && line[self.pattern.len()..].starts_with(' ');
        if !matched {
            return false;
        }
        self.seen += 1;
        self.nth.is_none_or(|n| n == self.seen)
    }
}

pub(crate) fn status(code: StatusCode) -> Response {
    Response::Status {
        code,
        message: Vec::new(),
        language: Vec::new(),
    }
}

/// Which server the peer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// OpenSSH's: announces `limits@openssh.com` (so the engine counts on it to carry out
    /// requests in the order sent, which it does), posix-rename and fsync.
    OpenSsh,
    /// Another server (gesftpserver, rclone): announces posix-rename only, and carries out
    /// and answers each flight of requests last first, keeping the order only among the
    /// requests about one file.
    Other,
}

/// What the peer keeps for each client connection.
#[derive(Default)]
struct Connection {
    input: Vec<u8>,
    held: Vec<Vec<u8>>,
}

/// What became of one request.
enum Served {
    Reply(Vec<u8>),
    Held(Vec<u8>),
    Dropped,
}

/// An open handle: the file or directory it was opened on.
enum Handle {
    File(Vec<u8>),
    Dir { path: Vec<u8>, listed: bool },
}

/// The in-memory server: its tree, its script, and what it was sent.
pub(crate) struct Peer {
    pub(crate) fs: Fs,
    pub(crate) flavour: Flavour,
    /// What the VERSION announces.
    pub(crate) extensions: wire::Extensions,
    /// READs answer at most this many bytes (as rclone's may), else all asked for.
    pub(crate) short_reads: Option<usize>,
    /// A [`Rule::signal`] fired: the run is to stop.
    pub(crate) signalled: bool,
    /// The most handles that were open at once.
    pub(crate) most_handles: usize,
    script: Vec<Rule>,
    handles: HashMap<Vec<u8>, Handle>,
    next_handle: u32,
    /// Per connection: bytes received and not yet a whole packet, and replies held back.
    connections: Vec<Connection>,
    /// The requests received, one list per flight (what the client sent before it next
    /// waited for replies), described as [`Peer::describe`] does, in the order sent.
    pub(crate) flights: Vec<Vec<String>>,
    /// For each of `flights`, the connection it came on.
    pub(crate) flights_on: Vec<usize>,
    /// The requests carried out, in the order they were.
    pub(crate) log: Vec<String>,
    /// For each of `log`, whether it succeeded (a reply other than an error status).
    succeeded: Vec<bool>,
}

impl Peer {
    /// A server of `flavour` whose tree holds the directory `/m` (the target directory).
    pub(crate) fn new(flavour: Flavour) -> Peer {
        let one = |name: &[u8]| (name.to_vec(), b"1".to_vec());
        let extensions = match flavour {
            Flavour::OpenSsh => vec![
                one(ext::POSIX_RENAME),
                one(ext::FSYNC),
                one(ext::HARDLINK),
                one(ext::LIMITS),
            ],
            Flavour::Other => vec![one(ext::POSIX_RENAME)],
        };
        let mut fs = Fs::default();
        fs.dir("/m");
        Peer {
            fs,
            flavour,
            extensions,
            short_reads: None,
            signalled: false,
            most_handles: 0,
            script: Vec::new(),
            handles: HashMap::new(),
            next_handle: 0,
            connections: Vec::new(),
            flights: Vec::new(),
            flights_on: Vec::new(),
            log: Vec::new(),
            succeeded: Vec::new(),
        }
    }

    /// Adds a rule for the requests described as `pattern`, or as `pattern` followed by a
    /// space and more (`"WRITE /m/.a.tmp"` matches every WRITE of that file); say what it
    /// does with [`Rule::fail`] and the others. Where several rules match, the first added
    /// that applies wins.
    pub(crate) fn on(&mut self, pattern: &str) -> &mut Rule {
        self.script.push(Rule {
            pattern: pattern.to_string(),
            nth: None,
            seen: 0,
            // Until told otherwise, the request is carried out as usual.
            action: Action::Before(Box::new(|_| {})),
        });
        self.script.last_mut().expect("just pushed")
    }

    /// How many requests described as `line` were carried out.
    pub(crate) fn count(&self, line: &str) -> usize {
        self.log.iter().filter(|l| *l == line).count()
    }

    /// How many requests described as `line` were carried out and succeeded.
    pub(crate) fn count_succeeded(&self, line: &str) -> usize {
        self.log
            .iter()
            .zip(&self.succeeded)
            .filter(|(l, ok)| *l == line && **ok)
            .count()
    }

    /// One line for a request, with the path of a handle in place of the handle:
    /// `"WRITE /m/.a.tmp at 0"`, `"RENAME /m/.a.tmp /m/a"`.
    pub(crate) fn describe(&self, request: &Request) -> String {
        let p = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let h = |handle: &[u8]| match self.handles.get(handle) {
            Some(Handle::File(path) | Handle::Dir { path, .. }) => p(path),
            None => format!("handle {}", p(handle)),
        };
        match request {
            Request::Open { path, flags, .. } if flags.contains(OpenFlags::EXCL) => {
                format!("OPEN {} excl", p(path))
            }
            Request::Open { path, .. } => format!("OPEN {}", p(path)),
            Request::Close { handle } => format!("CLOSE {}", h(handle)),
            Request::Read { handle, offset, .. } => format!("READ {} at {offset}", h(handle)),
            Request::Write { handle, offset, .. } => format!("WRITE {} at {offset}", h(handle)),
            Request::Fstat { handle } => format!("FSTAT {}", h(handle)),
            Request::Fsetstat { handle, .. } => format!("FSETSTAT {}", h(handle)),
            Request::Readdir { handle } => format!("READDIR {}", h(handle)),
            Request::Lstat { path } => format!("LSTAT {}", p(path)),
            Request::Setstat { path, .. } => format!("SETSTAT {}", p(path)),
            Request::Opendir { path } => format!("OPENDIR {}", p(path)),
            Request::Remove { path } => format!("REMOVE {}", p(path)),
            Request::Mkdir { path, .. } => format!("MKDIR {}", p(path)),
            Request::Rmdir { path } => format!("RMDIR {}", p(path)),
            Request::Realpath { path } => format!("REALPATH {}", p(path)),
            Request::Stat { path } => format!("STAT {}", p(path)),
            Request::Readlink { path } => format!("READLINK {}", p(path)),
            Request::Rename { from, to } => format!("RENAME {} {}", p(from), p(to)),
            Request::Symlink { link, target, .. } => format!("SYMLINK {} {}", p(link), p(target)),
            Request::Extended(ExtendedRequest::PosixRename { from, to }) => {
                format!("posix-rename {} {}", p(from), p(to))
            }
            Request::Extended(ExtendedRequest::Hardlink { from, to }) => {
                format!("hardlink {} {}", p(from), p(to))
            }
            Request::Extended(ExtendedRequest::Fsync { handle }) => format!("fsync {}", h(handle)),
            Request::Extended(ExtendedRequest::Limits) => "limits".into(),
            Request::Extended(other) => format!("EXTENDED {other:?}"),
        }
    }

    /// Takes what client connection number `k` (from 0) wrote and returns what the server
    /// writes back: each request of the flight carried out and answered, as the flavour
    /// and the script say; replies held back go once there is nothing else to send. The
    /// connections share the tree and the handles, as one server's processes share a file
    /// system.
    pub(crate) fn turn(&mut self, k: usize, bytes: &[u8]) -> Vec<u8> {
        if self.connections.len() <= k {
            self.connections.resize_with(k + 1, Connection::default);
        }
        let input = &mut self.connections[k].input;
        input.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut requests = Vec::new();
        let mut used = 0;
        while let Frame::Complete { body, consumed } =
            wire::frame(&input[used..]).expect("the client frames its packets")
        {
            let packet = Packet::decode_from_client(body).expect("the client's packets decode");
            used += consumed;
            match packet {
                Packet::Init { .. } => Packet::Version {
                    version: wire::SFTP_VERSION,
                    extensions: self.extensions.clone(),
                }
                .encode(&mut out),
                Packet::Request { id, request } => requests.push((id, request)),
                other => panic!("a client sent {other:?}"),
            }
        }
        input.drain(..used);
        if !requests.is_empty() {
            let lines = requests.iter().map(|(_, r)| self.describe(r)).collect();
            self.flights.push(lines);
            self.flights_on.push(k);
        }
        for i in self.order(&requests) {
            let (id, request) = &requests[i];
            match self.serve(*id, request) {
                Served::Reply(bytes) => out.extend(bytes),
                Served::Held(bytes) => self.connections[k].held.push(bytes),
                Served::Dropped => {}
            }
        }
        if out.is_empty() {
            for reply in std::mem::take(&mut self.connections[k].held) {
                out.extend(reply);
            }
        }
        out
    }

    /// The order a flight is carried out and answered in: as sent by OpenSSH's; last first
    /// by another server, except that requests about one file keep their order.
    fn order(&self, requests: &[(u32, Request)]) -> Vec<usize> {
        let n = requests.len();
        if self.flavour == Flavour::OpenSsh {
            return (0..n).collect();
        }
        let paths: Vec<String> = requests
            .iter()
            .map(|(_, r)| {
                let line = self.describe(r);
                line.split(' ').nth(1).unwrap_or("").to_string()
            })
            .collect();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let k = (0..n)
                .rev()
                .find(|&k| !done[k] && (0..k).all(|j| done[j] || paths[j] != paths[k]))
                .expect("the first undone request is always free");
            done[k] = true;
            order.push(k);
        }
        order
    }

    /// One request: the script's rule for it, or the tree's answer.
    fn serve(&mut self, id: u32, request: &Request) -> Served {
        let line = self.describe(request);
        let rule = self.script.iter_mut().position(|r| r.applies(&line));
        let reply = |response: Response| {
            let mut bytes = Vec::new();
            Packet::Response { id, response }.encode(&mut bytes);
            bytes
        };
        let Some(rule) = rule else {
            return Served::Reply(reply(self.carry_out(line, request)));
        };
        match &mut self.script[rule].action {
            Action::Answer(response) => Served::Reply(reply(response.clone())),
            Action::Drop => Served::Dropped,
            Action::Before(change) => {
                change(&mut self.fs);
                Served::Reply(reply(self.carry_out(line, request)))
            }
            Action::Hold => Served::Held(reply(self.carry_out(line, request))),
            Action::Raw(bytes) => {
                let bytes = bytes.clone();
                self.carry_out(line, request);
                Served::Reply(bytes)
            }
            Action::Signal => {
                self.signalled = true;
                Served::Reply(reply(self.carry_out(line, request)))
            }
        }
    }

    fn new_handle(&mut self, handle: Handle) -> Response {
        let name = format!("h{}", self.next_handle).into_bytes();
        self.next_handle += 1;
        self.handles.insert(name.clone(), handle);
        self.most_handles = self.most_handles.max(self.handles.len());
        Response::Handle(name)
    }

    fn handle_path(&self, handle: &[u8]) -> Result<Vec<u8>, StatusCode> {
        match self.handles.get(handle) {
            Some(Handle::File(path) | Handle::Dir { path, .. }) => Ok(path.clone()),
            None => Err(StatusCode::Failure),
        }
    }

    /// What the tree answers to `request`, as OpenSSH's server would; logged.
    fn carry_out(&mut self, line: String, request: &Request) -> Response {
        let result = self.try_carry_out(request);
        self.log.push(line);
        self.succeeded.push(matches!(
            result,
            Ok(Response::Handle(_) | Response::Data(_) | Response::Name(_) | Response::Attrs(_))
                | Ok(Response::ExtendedReply(_))
                | Ok(Response::Status {
                    code: StatusCode::Ok,
                    ..
                })
        ));
        result.unwrap_or_else(status)
    }

    fn try_carry_out(&mut self, request: &Request) -> Result<Response, StatusCode> {
        let ok = Ok(status(StatusCode::Ok));
        match request {
            Request::Open { path, flags, attrs } => self.open(path, *flags, attrs),
            Request::Close { handle } => {
                self.handles.remove(handle).ok_or(StatusCode::Failure)?;
                ok
            }
            Request::Write {
                handle,
                offset,
                data,
            } => {
                let path = self.handle_path(handle)?;
                let (file, _) = self.fs.file_mut(&path)?;
                let (start, end) = (*offset as usize, *offset as usize + data.len());
                if file.len() < end {
                    file.resize(end, 0);
                }
                file[start..end].copy_from_slice(data);
                ok
            }
            Request::Read {
                handle,
                offset,
                len,
            } => {
                let path = self.handle_path(handle)?;
                let len = self.short_reads.unwrap_or(usize::MAX).min(*len as usize);
                let (file, _) = self.fs.file_mut(&path)?;
                let start = (*offset as usize).min(file.len());
                let end = (start + len).min(file.len());
                if start == end {
                    return Err(StatusCode::Eof);
                }
                Ok(Response::Data(file[start..end].to_vec()))
            }
            Request::Fstat { handle } => {
                let path = self.handle_path(handle)?;
                Ok(Response::Attrs(self.fs.attrs(&path)?))
            }
            Request::Fsetstat { handle, attrs } => {
                let path = self.handle_path(handle)?;
                self.fs.set_attrs(&path, attrs)
            }
            Request::Opendir { path } => {
                let path = self.fs.resolve(path, true)?;
                if !self.fs.is_dir(&path) {
                    return Err(StatusCode::NoSuchFile);
                }
                Ok(self.new_handle(Handle::Dir {
                    path,
                    listed: false,
                }))
            }
            Request::Readdir { handle } => self.readdir(handle),
            Request::Extended(ExtendedRequest::Fsync { handle }) => {
                self.handle_path(handle)?;
                ok
            }
            other => self.fs.carry_out(other),
        }
    }

    /// OPEN: with CREAT and EXCL nothing may stand at the name (a symlink neither);
    /// otherwise the name is followed, and a file created where it leads if missing.
    fn open(
        &mut self,
        path: &[u8],
        flags: OpenFlags,
        attrs: &Attrs,
    ) -> Result<Response, StatusCode> {
        let fs = &mut self.fs;
        let exclusive = flags.contains(OpenFlags::CREAT) && flags.contains(OpenFlags::EXCL);
        let at = if exclusive {
            let at = fs.locate(path)?;
            if fs.nodes.contains_key(&at) || fs.is_dir(&at) {
                return Err(StatusCode::Failure);
            }
            at
        } else {
            fs.resolve(path, true)?
        };
        match fs.nodes.get_mut(&at) {
            Some(Node::File { data, .. }) if flags.contains(OpenFlags::TRUNC) => data.clear(),
            Some(Node::File { .. }) => {}
            Some(_) => return Err(StatusCode::Failure),
            None if flags.contains(OpenFlags::CREAT) => {
                let (dir, _) = split(&at);
                if !fs.is_dir(&dir) {
                    return Err(StatusCode::NoSuchFile);
                }
                let mode = attrs.permissions.unwrap_or(0o644) & 0o7777;
                let node = Node::File {
                    data: Vec::new(),
                    mode,
                    mtime: 0,
                };
                fs.nodes.insert(at.clone(), node);
            }
            None => return Err(StatusCode::NoSuchFile),
        }
        Ok(self.new_handle(Handle::File(at)))
    }

    /// READDIR: every entry (with `.` and `..`, as servers send them) at once, then EOF.
    fn readdir(&mut self, handle: &[u8]) -> Result<Response, StatusCode> {
        let Some(Handle::Dir { path, listed }) = self.handles.get_mut(handle) else {
            return Err(StatusCode::Failure);
        };
        if std::mem::replace(listed, true) {
            return Err(StatusCode::Eof);
        }
        let path = path.clone();
        let mut names = vec![b".".to_vec(), b"..".to_vec()];
        names.extend(self.fs.entries(&path).into_iter().map(|(name, _)| name));
        let entries = names
            .into_iter()
            .map(|name| NameEntry {
                attrs: self.fs.attrs(&join(&path, &name)).unwrap_or_default(),
                filename: name,
                longname: Vec::new(),
            })
            .collect();
        Ok(Response::Name(entries))
    }
}
