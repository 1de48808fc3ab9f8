//! The client side of one SFTP conversation, without I/O: request ids, the in-flight table,
//! the output and input buffers and the version handshake.
//!
//! The caller moves bytes: it writes [`Session::output`] to the server and calls
//! [`Session::consume_output`] with what was written, feeds what it read to
//! [`Session::handle_input`], and takes replies from [`Session::poll_reply`], each with the tag
//! it was sent with. It holds bytes and names: no file descriptors (a WRITE's file data is
//! queued as a range of a [`SourceId`], which the transport finds at whoever opened the
//! file), no clock, no decisions about what to send. A STATUS message, text that the engine
//! only ever shows, is handed on made printable ([`printable`](super::printable)).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use super::outbox::Outbox;
pub use super::outbox::{FileFault, Next, SourceId};
use super::printable::printable;
use super::wire::{
    self, ExtendedRequest, Frame, Packet, Request, Response, SFTP_VERSION, SymlinkOrder, WireError,
    ext,
};

/// What the server told us in its VERSION packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: u32,
    pub extensions: wire::Extensions,
}

impl ServerInfo {
    /// The data of extension `name`, if announced.
    pub fn extension(&self, name: &[u8]) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }

    pub fn has_posix_rename(&self) -> bool {
        self.extension(ext::POSIX_RENAME) == Some(b"1")
    }

    pub fn has_fsync(&self) -> bool {
        self.extension(ext::FSYNC) == Some(b"1")
    }

    /// Whether the server makes hard links (`hardlink@openssh.com`, version "1"): OpenSSH's
    /// does, and asyncssh's; a server may still refuse it (`sftp-server -P hardlink`).
    pub fn has_hardlink(&self) -> bool {
        self.extension(ext::HARDLINK) == Some(b"1")
    }

    pub fn has_limits(&self) -> bool {
        self.extension(ext::LIMITS) == Some(b"1")
    }

    /// Whether this looks like OpenSSH's server, which handles one request at a time, in
    /// the order received: it alone announces `limits@openssh.com`.
    pub fn is_openssh(&self) -> bool {
        self.has_limits()
    }

    /// Whether several handles may write one file at any offsets: OpenSSH's server (and
    /// asyncssh's, which copies its extensions) write with `pwrite` to a real file. Servers
    /// without `limits@openssh.com` are not trusted with it: some (rclone without a write
    /// cache, paramiko-based ones) refuse a seek or write parts over each other.
    pub fn takes_offset_writes(&self) -> bool {
        self.has_limits()
    }

    /// OpenSSH reverses the draft's SYMLINK arguments and most servers copy it; Green End's
    /// server follows the draft and says so in an extension.
    pub fn symlink_order(&self) -> SymlinkOrder {
        match self.extension(ext::SYMLINK_ORDER) {
            Some(b"linkpath-targetpath") => SymlinkOrder::LinkFirst,
            _ => SymlinkOrder::TargetFirst,
        }
    }
}

/// A protocol violation by the server; the conversation cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    Wire(WireError),
    /// A reply to an id we have no request for.
    UnknownId(u32),
    /// A second reply to a request answered already.
    DuplicateReply(u32),
    /// The first packet was not VERSION, or VERSION came again.
    UnexpectedPacket(&'static str),
    /// A HANDLE reply gave a handle still open for another request (shown printable).
    HandleInUse(String),
    UnsupportedVersion(u32),
    /// What came before VERSION is no SFTP packet but starts like text (these bytes): what
    /// a login script that prints something does to the subsystem's output.
    NotSftp([u8; 4]),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Wire(e) => write!(f, "malformed packet from server: {e}"),
            SessionError::UnknownId(id) => {
                write!(
                    f,
                    "the server replied to request id {id}, which was never sent"
                )
            }
            SessionError::DuplicateReply(id) => {
                write!(f, "the server replied a second time to request id {id}")
            }
            SessionError::UnexpectedPacket(what) => write!(f, "the server sent {what}"),
            SessionError::HandleInUse(handle) => write!(
                f,
                "the server gave handle '{handle}' for a second file while it was still open \
                 for another, so their writes and replies cannot be told apart; nothing more \
                 is sent (with this server set 'maxopenfiles 1')"
            ),
            SessionError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "the server speaks SFTP version {v}; version 3 is required"
                )
            }
            SessionError::NotSftp(start) => write!(
                f,
                "malformed packet from server: packet length {} exceeds the limit of {}: \
                 the server's output starts with \"{}\", not with SFTP's VERSION, so something \
                 on the server prints text (a login script such as .bashrc must print nothing \
                 for a session without a terminal)",
                u32::from_be_bytes(*start),
                wire::MAX_PACKET_LEN,
                printable(start, 16)
            ),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<WireError> for SessionError {
    fn from(e: WireError) -> Self {
        SessionError::Wire(e)
    }
}

/// One SFTP client conversation. `T` tags each request so its reply finds its way back.
pub struct Session<T> {
    info: Option<ServerInfo>,
    next_id: u32,
    in_flight: HashMap<u32, T>,
    out: Outbox,
    input: Vec<u8>,
    replies: VecDeque<(T, Response)>,
    /// Whole packets received so far.
    received: u64,
    /// The handles the server gave that have not been closed (a CLOSE sent): one given
    /// again is a server's fault that would mix two files (Erlang's ssh_sftpd does it).
    open_handles: HashSet<Vec<u8>>,
}

/// The most of a STATUS message kept (OpenSSH's are a few words): a server's message is
/// shown to the operator, and one of 256 KiB would bury the line it is part of.
pub const MAX_STATUS_MESSAGE: usize = 1024;

impl<T> Default for Session<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Session<T> {
    /// A new conversation; INIT is queued for sending at once.
    pub fn new() -> Self {
        let mut out = Outbox::default();
        out.push_bytes(|b| {
            Packet::Init {
                version: SFTP_VERSION,
                extensions: Vec::new(),
            }
            .encode(b)
        });
        Session {
            info: None,
            next_id: 0,
            in_flight: HashMap::new(),
            out,
            input: Vec::new(),
            replies: VecDeque::new(),
            received: 0,
            open_handles: HashSet::new(),
        }
    }

    /// The server's VERSION, once it has arrived.
    pub fn server_info(&self) -> Option<&ServerInfo> {
        self.info.as_ref()
    }

    fn take_id(&mut self, tag: T) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.in_flight.insert(id, tag);
        id
    }

    /// Queues a request; its reply will come back from [`Session::poll_reply`] with `tag`.
    pub fn send(&mut self, request: Request, tag: T) -> u32 {
        if let Request::Close { handle } = &request {
            self.open_handles.remove(handle);
        }
        let id = self.take_id(tag);
        log::debug!("-> {id} {}", request.summary());
        self.out
            .push_bytes(|b| Packet::Request { id, request }.encode(b));
        id
    }

    /// Queues a WRITE of `len` bytes that `fill` appends to the output (e.g. read from the
    /// local file): for small WRITEs, which then share a buffer, and one write to the pipe,
    /// with other requests. `fill` must append exactly `len` bytes or fail; if it fails
    /// nothing is queued.
    pub fn send_write<E>(
        &mut self,
        handle: &[u8],
        offset: u64,
        len: u32,
        tag: T,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<u32, E> {
        let id = self.next_id;
        let size = len as usize + handle.len() + 64;
        self.out.try_push_bytes(size, |out| {
            wire::encode_write_header(out, id, handle, offset, len);
            let data_start = out.len();
            fill(out)?;
            assert_eq!(
                out.len() - data_start,
                len as usize,
                "a WRITE's fill must append exactly its length"
            );
            Ok(())
        })?;
        log::debug!(
            "-> {id} WRITE handle {} at {offset} len {len}",
            handle.escape_ascii()
        );
        Ok(self.take_id(tag))
    }

    /// Queues a WRITE of `len` bytes of local file `source` from `offset`: the transport
    /// moves them from the file into the pipe (see [`Next::Source`]). If the file ends
    /// before, the rest is sent as zeros and `token` comes back from
    /// [`Session::take_failed_files`]; so it does if it cannot be read.
    pub fn send_write_source(
        &mut self,
        handle: &[u8],
        offset: u64,
        len: u32,
        tag: T,
        source: SourceId,
        token: usize,
    ) -> u32 {
        let id = self.take_id(tag);
        log::debug!(
            "-> {id} WRITE handle {} at {offset} len {len}",
            handle.escape_ascii()
        );
        self.out
            .push_bytes(|b| wire::encode_write_header(b, id, handle, offset, len));
        self.out.push_source(source, offset, u64::from(len), token);
        id
    }

    /// Convenience for the EXTENDED requests.
    pub fn send_extended(&mut self, request: ExtendedRequest, tag: T) -> u32 {
        self.send(Request::Extended(request), tag)
    }

    /// What to write to the server next: not necessarily all that waits, write until
    /// [`Session::wants_write`] says no more.
    pub fn output(&self) -> Option<Next<'_>> {
        self.out.next()
    }

    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Marks `n` bytes of [`Session::output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// The file of [`Next::Source`] cannot give the rest of its range: that goes as zeros,
    /// which keeps the WRITE whole; its token is kept for [`Session::take_failed_files`].
    pub fn file_failed(&mut self, fault: FileFault) {
        self.out.file_failed(fault);
    }

    /// The WRITEs whose file could not be sent since the last call, by token: their data
    /// on the server is wrong.
    pub fn take_failed_files(&mut self) -> Vec<(usize, FileFault)> {
        self.out.take_failed()
    }

    /// Everything waiting to be written, taken as if written, with no local file to read
    /// (their ranges go as zeros): for tests that read what a caller sent.
    #[cfg(test)]
    pub fn take_output(&mut self) -> Vec<u8> {
        self.take_output_with(|_, _, _| Vec::new())
    }

    /// As [`Session::take_output`], the data of a range of a local file given by
    /// `read(source, offset, len)` (shorter where the file ends).
    #[cfg(test)]
    pub fn take_output_with(&mut self, read: impl Fn(SourceId, u64, u64) -> Vec<u8>) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(next) = self.output() {
            match next {
                Next::Bytes(b) => {
                    let n = b.len();
                    all.extend_from_slice(b);
                    self.consume_output(n);
                }
                Next::Source {
                    source,
                    offset,
                    len,
                } => {
                    let data = read(source, offset, len);
                    all.extend_from_slice(&data);
                    if data.is_empty() {
                        self.file_failed(FileFault::Ended);
                    } else {
                        self.consume_output(data.len());
                    }
                }
            }
        }
        all
    }

    /// Requests sent (or queued) whose reply has not arrived.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The tags of the requests still waiting for a reply.
    pub fn in_flight_tags(&self) -> impl Iterator<Item = &T> {
        self.in_flight.values()
    }

    /// Whole packets received so far: what tells a reply coming from bytes trickling in
    /// that never make one.
    pub fn packets_received(&self) -> u64 {
        self.received
    }

    /// Feeds bytes read from the server; complete packets become replies. What is kept of
    /// an incomplete packet is at most [`wire::MAX_PACKET_LEN`] and a length field: a
    /// longer length is refused as soon as its four bytes are in.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.input.extend_from_slice(bytes);
        let mut used = 0;
        let result = loop {
            match wire::frame(&self.input[used..]) {
                Ok(Frame::Partial) => break Ok(()),
                Ok(Frame::Complete { body, consumed }) => {
                    let packet = Packet::decode_from_server(body);
                    used += consumed;
                    self.received += 1;
                    if let Err(e) = packet
                        .map_err(SessionError::from)
                        .and_then(|p| self.accept(p))
                    {
                        break Err(e);
                    }
                }
                Err(e) => break Err(self.framing_error(e, used)),
            }
        };
        self.input.drain(..used);
        result
    }

    /// A length field refused at `at` in the input: before VERSION, four bytes of text
    /// are most likely not SFTP at all.
    fn framing_error(&self, e: WireError, at: usize) -> SessionError {
        let start: Option<[u8; 4]> = self.input.get(at..at + 4).and_then(|b| b.try_into().ok());
        match start {
            Some(start)
                if self.info.is_none()
                    && matches!(e, WireError::TooLong { .. })
                    && start
                        .iter()
                        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) =>
            {
                SessionError::NotSftp(start)
            }
            _ => e.into(),
        }
    }

    fn accept(&mut self, packet: Packet) -> Result<(), SessionError> {
        match packet {
            Packet::Version {
                version,
                extensions,
            } => {
                if self.info.is_some() {
                    return Err(SessionError::UnexpectedPacket("a second VERSION"));
                }
                if version != SFTP_VERSION {
                    return Err(SessionError::UnsupportedVersion(version));
                }
                self.info = Some(ServerInfo {
                    version,
                    extensions,
                });
                Ok(())
            }
            Packet::Response { id, response } => {
                if self.info.is_none() {
                    return Err(SessionError::UnexpectedPacket("a reply before VERSION"));
                }
                let Some(tag) = self.in_flight.remove(&id) else {
                    // Ids go up from 0 (after 2^32 requests an unknown id would be called a
                    // duplicate: the message is all that differs).
                    return Err(if id < self.next_id {
                        SessionError::DuplicateReply(id)
                    } else {
                        SessionError::UnknownId(id)
                    });
                };
                log::debug!("<- {id} {}", response.summary());
                if let Response::Handle(handle) = &response
                    && !self.open_handles.insert(handle.clone())
                {
                    return Err(SessionError::HandleInUse(printable(handle, 64)));
                }
                self.replies.push_back((tag, shown_status(response)));
                Ok(())
            }
            Packet::Init { .. } | Packet::Request { .. } => {
                Err(SessionError::UnexpectedPacket("a client packet"))
            }
        }
    }

    /// The replies that have arrived and not been taken, oldest first.
    pub fn pending_replies(&self) -> impl Iterator<Item = &(T, Response)> {
        self.replies.iter()
    }

    /// The next reply that has arrived, with the tag its request was sent with.
    pub fn poll_reply(&mut self) -> Option<(T, Response)> {
        self.replies.pop_front()
    }
}

/// A STATUS with its message made fit to show (see [`printable`]): the engine puts it in
/// what the operator reads, and compares it with nothing.
fn shown_status(response: Response) -> Response {
    match response {
        Response::Status {
            code,
            message,
            language,
        } => Response::Status {
            code,
            message: printable(&message, MAX_STATUS_MESSAGE).into_bytes(),
            language,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::wire::{StatusCode, kind};

    fn server_bytes(packets: &[Packet]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            p.encode(&mut out);
        }
        out
    }

    fn version() -> Packet {
        Packet::Version {
            version: 3,
            extensions: vec![
                (ext::POSIX_RENAME.to_vec(), b"1".to_vec()),
                (ext::LIMITS.to_vec(), b"1".to_vec()),
            ],
        }
    }

    fn ok(id: u32) -> Packet {
        Packet::Response {
            id,
            response: Response::Status {
                code: StatusCode::Ok,
                message: vec![],
                language: vec![],
            },
        }
    }

    #[test]
    fn init_is_sent_first_and_version_is_kept() {
        let mut s: Session<&str> = Session::new();
        assert_eq!(s.take_output(), b"\x00\x00\x00\x05\x01\x00\x00\x00\x03");
        assert!(!s.wants_write());
        s.handle_input(&server_bytes(&[version()])).unwrap();
        let info = s.server_info().unwrap();
        assert!(info.has_posix_rename());
        assert!(info.has_limits());
        assert!(!info.has_fsync());
        assert!(!info.has_hardlink());
        assert_eq!(info.symlink_order(), SymlinkOrder::TargetFirst);
    }

    #[test]
    fn hardlink_counts_as_offered_only_in_the_version_it_is_specified_in() {
        let info = |data: &[u8]| ServerInfo {
            version: 3,
            extensions: vec![(ext::HARDLINK.to_vec(), data.to_vec())],
        };
        assert!(info(b"1").has_hardlink());
        assert!(!info(b"2").has_hardlink());
        assert!(!info(b"").has_hardlink());
    }

    #[test]
    fn replies_are_routed_by_id_in_any_order_and_any_split() {
        let mut s: Session<&str> = Session::new();
        let a = s.send(
            Request::Remove {
                path: b"a".to_vec(),
            },
            "a",
        );
        let b = s.send(
            Request::Remove {
                path: b"b".to_vec(),
            },
            "b",
        );
        assert_eq!(s.in_flight(), 2);
        let bytes = server_bytes(&[version(), ok(b), ok(a)]);
        for chunk in bytes.chunks(3) {
            s.handle_input(chunk).unwrap();
        }
        assert_eq!(s.poll_reply().unwrap().0, "b");
        assert_eq!(s.poll_reply().unwrap().0, "a");
        assert!(s.poll_reply().is_none());
        assert_eq!(s.in_flight(), 0);
    }

    /// A reader of local file 0 holding `content`.
    fn file(content: &[u8]) -> impl Fn(SourceId, u64, u64) -> Vec<u8> + '_ {
        move |source, offset, len| {
            assert_eq!(source, SourceId(0));
            let from = (offset as usize).min(content.len());
            let to = (from + len as usize).min(content.len());
            content[from..to].to_vec()
        }
    }

    /// The one request in `bytes`.
    fn decode_one(bytes: &[u8]) -> Packet {
        let Ok(Frame::Complete { body, consumed }) = wire::frame(bytes) else {
            panic!("not one whole packet: {bytes:?}");
        };
        assert_eq!(consumed, bytes.len());
        Packet::decode_from_client(body).unwrap()
    }

    /// A WRITE of `data` at `offset` to handle "h".
    fn write_of(id: u32, offset: u64, data: &[u8]) -> Packet {
        Packet::Request {
            id,
            request: Request::Write {
                handle: b"h".to_vec(),
                offset,
                data: data.to_vec(),
            },
        }
    }

    #[test]
    fn a_write_sends_its_range_of_the_file() {
        let mut s: Session<u8> = Session::new();
        s.take_output();
        let id = s.send_write_source(b"h", 9, 4, 1, SourceId(0), 0);
        let bytes = s.take_output_with(file(b"0123456789abc"));
        assert_eq!(decode_one(&bytes), write_of(id, 9, b"9abc"));
        assert_eq!(bytes[4], kind::WRITE);
        assert!(s.take_failed_files().is_empty());
    }

    #[test]
    fn a_write_filled_in_place_goes_whole_and_a_failed_fill_leaves_nothing() {
        let mut s: Session<u8> = Session::new();
        s.take_output();
        let r: Result<u32, &str> = s.send_write(b"h", 0, 4, 1, |buf| {
            buf.extend_from_slice(b"da");
            Err("read failed")
        });
        assert_eq!(r, Err("read failed"));
        assert!(!s.wants_write());
        assert_eq!(s.in_flight(), 0);
        let id = s
            .send_write::<()>(b"h", 9, 4, 1, |buf| {
                buf.extend_from_slice(b"data");
                Ok(())
            })
            .unwrap();
        assert_eq!(decode_one(&s.take_output()), write_of(id, 9, b"data"));
    }

    #[test]
    fn a_write_whose_file_shrank_stays_whole_and_is_named() {
        let mut s: Session<u8> = Session::new();
        s.take_output();
        let id = s.send_write_source(b"h", 2, 4, 1, SourceId(0), 7);
        let bytes = s.take_output_with(file(b"0123"));
        assert_eq!(decode_one(&bytes), write_of(id, 2, b"23\0\0"));
        assert_eq!(s.take_failed_files(), vec![(7, FileFault::Ended)]);
    }

    #[test]
    fn partial_writes_are_resumed() {
        let mut s: Session<u8> = Session::new();
        s.send(
            Request::Stat {
                path: b"x".to_vec(),
            },
            0,
        );
        s.consume_output(9);
        let Some(Next::Bytes(all)) = s.output() else {
            panic!("a STAT is bytes")
        };
        let all = all.to_vec();
        s.consume_output(3);
        assert_eq!(s.output(), Some(Next::Bytes(&all[3..])));
        s.send(
            Request::Stat {
                path: b"y".to_vec(),
            },
            1,
        );
        assert_eq!(&s.take_output()[..all.len() - 3], &all[3..]);
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut s: Session<u8> = Session::new();
        assert_eq!(
            s.handle_input(&server_bytes(&[ok(0)])),
            Err(SessionError::UnexpectedPacket("a reply before VERSION"))
        );
        let mut s: Session<u8> = Session::new();
        assert_eq!(
            s.handle_input(&server_bytes(&[version(), ok(5)])),
            Err(SessionError::UnknownId(5))
        );
        let mut s: Session<u8> = Session::new();
        assert_eq!(
            s.handle_input(&server_bytes(&[Packet::Version {
                version: 6,
                extensions: vec![]
            }])),
            Err(SessionError::UnsupportedVersion(6))
        );
        let mut s: Session<u8> = Session::new();
        assert!(matches!(
            s.handle_input(b"\x10\x00\x00\x00"),
            Err(SessionError::Wire(WireError::TooLong { .. }))
        ));
    }

    fn status_with(id: u32, message: &[u8]) -> Packet {
        Packet::Response {
            id,
            response: Response::Status {
                code: StatusCode::Failure,
                message: message.to_vec(),
                language: b"en".to_vec(),
            },
        }
    }

    fn remove(s: &mut Session<u8>, tag: u8) -> u32 {
        s.send(
            Request::Remove {
                path: vec![b'a' + tag],
            },
            tag,
        )
    }

    #[test]
    fn versions_out_of_turn_are_errors() {
        for (packets, expected) in [
            (
                vec![version(), version()],
                SessionError::UnexpectedPacket("a second VERSION"),
            ),
            (
                vec![Packet::Version {
                    version: 2,
                    extensions: vec![],
                }],
                SessionError::UnsupportedVersion(2),
            ),
            (
                vec![Packet::Version {
                    version: u32::MAX,
                    extensions: vec![],
                }],
                SessionError::UnsupportedVersion(u32::MAX),
            ),
        ] {
            let mut s: Session<u8> = Session::new();
            assert_eq!(s.handle_input(&server_bytes(&packets)), Err(expected));
        }
        // A client's packet from the server.
        let mut s: Session<u8> = Session::new();
        let init = Packet::Init {
            version: 3,
            extensions: vec![],
        };
        assert!(matches!(
            s.handle_input(&server_bytes(&[init])),
            Err(SessionError::Wire(WireError::UnexpectedType(1)))
        ));
    }

    #[test]
    fn a_second_reply_is_told_from_one_to_a_request_never_sent() {
        let mut s: Session<u8> = Session::new();
        let a = remove(&mut s, 0);
        let b = remove(&mut s, 1);
        s.handle_input(&server_bytes(&[version(), ok(a)])).unwrap();
        assert_eq!(
            s.handle_input(&server_bytes(&[ok(a)])),
            Err(SessionError::DuplicateReply(a))
        );
        let mut s: Session<u8> = Session::new();
        remove(&mut s, 0);
        assert_eq!(
            s.handle_input(&server_bytes(&[version(), ok(b + 1)])),
            Err(SessionError::UnknownId(b + 1))
        );
        assert!(
            SessionError::DuplicateReply(7)
                .to_string()
                .contains("a second time to request id 7")
        );
    }

    #[test]
    fn text_where_version_should_be_is_named_as_such() {
        let mut s: Session<u8> = Session::new();
        let e = s
            .handle_input(b"Welcome to the mirror!\r\n\x00\x00\x00\x05\x02\x00\x00\x00\x03")
            .unwrap_err();
        assert_eq!(e, SessionError::NotSftp(*b"Welc"));
        assert!(e.to_string().contains("\"Welc\""), "{e}");
        assert!(e.to_string().contains(".bashrc"), "{e}");
        // Control characters in it are not shown as they are.
        let mut s: Session<u8> = Session::new();
        let e = s.handle_input(b"\x1b[2J").unwrap_err();
        assert!(
            matches!(e, SessionError::Wire(WireError::TooLong { .. })),
            "{e}"
        );
        let mut s: Session<u8> = Session::new();
        let e = s.handle_input(b"\t\x1b[2J").unwrap_err();
        assert!(
            matches!(e, SessionError::Wire(WireError::TooLong { .. })),
            "{e}"
        );
        let mut s: Session<u8> = Session::new();
        let e = s.handle_input(b"\n\n\nx").unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
        // After VERSION, a length too long is a malformed packet, whatever its bytes.
        let mut s: Session<u8> = Session::new();
        s.handle_input(&server_bytes(&[version()])).unwrap();
        assert!(matches!(
            s.handle_input(b"Welc"),
            Err(SessionError::Wire(WireError::TooLong { .. }))
        ));
    }

    /// Erlang's ssh_sftpd gave one handle to two OPENs: caught, not mixed; a handle closed
    /// may be given again.
    #[test]
    fn a_handle_given_while_still_open_is_the_servers_fault() {
        let handle = |id, h: &[u8]| Packet::Response {
            id,
            response: Response::Handle(h.to_vec()),
        };
        let mut s: Session<u8> = Session::new();
        let (a, b) = (remove(&mut s, 0), remove(&mut s, 1));
        s.handle_input(&server_bytes(&[version(), handle(a, b"1")]))
            .unwrap();
        s.send(
            Request::Close {
                handle: b"1".to_vec(),
            },
            2,
        );
        s.handle_input(&server_bytes(&[handle(b, b"1")])).unwrap();
        let c = remove(&mut s, 3);
        let err = s
            .handle_input(&server_bytes(&[handle(c, b"1")]))
            .unwrap_err();
        assert!(
            matches!(&err, SessionError::HandleInUse(h) if h == "1"),
            "{err}"
        );
        assert!(err.to_string().contains("maxopenfiles 1"), "{err}");
    }

    #[test]
    fn a_status_message_reaches_the_engine_printable_and_bounded() {
        let mut s: Session<u8> = Session::new();
        let a = remove(&mut s, 0);
        let b = remove(&mut s, 1);
        let mut evil = b"\x1b[2J\x1b]0;owned\x07red\rfake\nline \xff\xfe".to_vec();
        evil.extend(vec![b'x'; 200_000]);
        let packets = [
            version(),
            status_with(a, &evil),
            status_with(b, b"No such file"),
        ];
        s.handle_input(&server_bytes(&packets)).unwrap();
        let Some((0, Response::Status { message, .. })) = s.poll_reply() else {
            panic!("the first STATUS")
        };
        let message = String::from_utf8(message).expect("valid UTF-8");
        assert!(message.starts_with("\\x1b[2J\\x1b]0;owned\\x07red\\x0dfake\\x0aline \\xff\\xfe"));
        assert!(message.len() < MAX_STATUS_MESSAGE + 64, "{}", message.len());
        assert!(!message.chars().any(char::is_control), "{message}");
        let Some((1, Response::Status { message, .. })) = s.poll_reply() else {
            panic!("the second STATUS")
        };
        assert_eq!(message, b"No such file");
    }

    #[test]
    fn only_whole_packets_count_as_received_and_a_partial_one_is_held_bounded() {
        let mut s: Session<u8> = Session::new();
        let a = remove(&mut s, 0);
        let bytes = server_bytes(&[version(), ok(a)]);
        let first = server_bytes(&[version()]).len();
        for (k, b) in bytes.iter().enumerate() {
            s.handle_input(std::slice::from_ref(b)).unwrap();
            let expected = match k + 1 {
                n if n == bytes.len() => 2,
                n if n >= first => 1,
                _ => 0,
            };
            assert_eq!(s.packets_received(), expected, "after byte {k}");
        }
        // The biggest packet allowed, all but its last byte in: held, nothing more.
        let mut s: Session<u8> = Session::new();
        s.handle_input(&server_bytes(&[version()])).unwrap();
        let mut huge = wire::MAX_PACKET_LEN.to_be_bytes().to_vec();
        huge.extend(vec![0x67; wire::MAX_PACKET_LEN as usize - 1]);
        for chunk in huge.chunks(65536) {
            s.handle_input(chunk).unwrap();
        }
        assert_eq!(s.packets_received(), 1);
        assert!(s.input.len() <= wire::MAX_PACKET_LEN as usize + 4);
        // A length over the limit is refused at once: nothing of what follows is kept.
        let mut s: Session<u8> = Session::new();
        s.handle_input(&server_bytes(&[version()])).unwrap();
        assert!(s.handle_input(&[0xff, 0xff, 0xff, 0xf0, 0, 0, 0]).is_err());
    }

    #[test]
    fn greenend_symlink_order_is_detected() {
        let info = ServerInfo {
            version: 3,
            extensions: vec![(ext::SYMLINK_ORDER.to_vec(), b"linkpath-targetpath".to_vec())],
        };
        assert_eq!(info.symlink_order(), SymlinkOrder::LinkFirst);
    }
}
