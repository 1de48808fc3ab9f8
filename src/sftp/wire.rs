//! The SFTP version 3 wire format (draft-ietf-secsh-filexfer-02): packet types, encoding into a
//! byte buffer and incremental decoding from one ([`frame`], then
//! [`Packet::decode_from_server`]).
//!
//! Pure code: no I/O, no state between packets (ids and what is in flight are the session's),
//! no allocation sized by a peer before the length is checked against what actually arrived
//! and against [`MAX_PACKET_LEN`]. Everything a peer sends is untrusted; a bad packet is a
//! [`WireError`], never a panic. The server's side of the codec (decoding requests, the
//! request variants the client never sends) exists only under `cfg(test)`: for the round
//! trips and for the scripted peer the engine's unit tests talk to.

use std::fmt;

/// The protocol version we speak.
pub const SFTP_VERSION: u32 = 3;

/// The largest packet body we accept (the length field's value). OpenSSH's server refuses
/// messages over 256 KiB and never sends one; a little slack serves other servers' headers.
pub const MAX_PACKET_LEN: u32 = 256 * 1024 + 1024;

/// The draft: "The handle strings MUST NOT be longer than 256 bytes."
pub const MAX_HANDLE_LEN: usize = 256;

/// Packet type codes, named as in the draft.
pub mod kind {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const REALPATH: u8 = 16;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const READLINK: u8 = 19;
    pub const SYMLINK: u8 = 20;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
    pub const EXTENDED: u8 = 200;
    pub const EXTENDED_REPLY: u8 = 201;
}

/// Extension names we use.
pub mod ext {
    pub const POSIX_RENAME: &[u8] = b"posix-rename@openssh.com";
    pub const FSYNC: &[u8] = b"fsync@openssh.com";
    pub const LIMITS: &[u8] = b"limits@openssh.com";
    pub const STATVFS: &[u8] = b"statvfs@openssh.com";
    /// A second name for an existing file (link(2)); OpenSSH's PROTOCOL, section 4.8.
    pub const HARDLINK: &[u8] = b"hardlink@openssh.com";
    /// Green End's server announces which order it reads SYMLINK's arguments in.
    pub const SYMLINK_ORDER: &[u8] = b"symlink-order@rjk.greenend.org.uk";
}

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The packet ended before the named field was complete.
    Truncated(&'static str),
    /// The length field announces more than we accept.
    TooLong { len: u32, max: u32 },
    /// A packet of length zero has no type byte.
    Empty,
    /// A type code that does not belong where it arrived.
    UnexpectedType(u8),
    /// Bytes left over after a complete message.
    TrailingBytes { kind: u8, extra: usize },
    /// A handle longer than the draft's 256 bytes (it would be copied into every request).
    HandleTooLong(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated(field) => write!(f, "packet truncated in {field}"),
            WireError::TooLong { len, max } => {
                write!(f, "packet length {len} exceeds the limit of {max}")
            }
            WireError::Empty => write!(f, "packet of length zero"),
            WireError::UnexpectedType(t) => write!(f, "unexpected packet type {t}"),
            WireError::TrailingBytes { kind, extra } => {
                write!(f, "{extra} unexpected bytes after packet of type {kind}")
            }
            WireError::HandleTooLong(len) => {
                write!(
                    f,
                    "handle of {len} bytes exceeds the limit of {MAX_HANDLE_LEN}"
                )
            }
        }
    }
}

impl std::error::Error for WireError {}

/// OPEN's pflags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenFlags(pub u32);

impl OpenFlags {
    pub const READ: OpenFlags = OpenFlags(0x01);
    pub const WRITE: OpenFlags = OpenFlags(0x02);
    /// The client never appends; the round-trip tests use it.
    #[cfg(test)]
    pub const APPEND: OpenFlags = OpenFlags(0x04);
    pub const CREAT: OpenFlags = OpenFlags(0x08);
    /// The client never truncates (it writes a new file and renames it); the tests use it.
    #[cfg(test)]
    pub const TRUNC: OpenFlags = OpenFlags(0x10);
    pub const EXCL: OpenFlags = OpenFlags(0x20);

    /// Whether every flag of `other` is set: what a server asks (the scripted peer).
    #[cfg(test)]
    pub fn contains(self, other: OpenFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for OpenFlags {
    type Output = OpenFlags;
    fn bitor(self, rhs: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | rhs.0)
    }
}

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Extension name/data pairs, as in INIT, VERSION and extended attributes.
pub type Extensions = Vec<(Vec<u8>, Vec<u8>)>;

/// File attributes; each field is present only when the peer sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    /// (atime, mtime) in seconds since the epoch.
    pub times: Option<(u32, u32)>,
    pub extended: Extensions,
}

/// `S_IFMT` and friends, as carried in the permissions field.
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

impl Attrs {
    fn file_type(&self) -> Option<u32> {
        self.permissions.map(|p| p & S_IFMT)
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == Some(S_IFDIR)
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == Some(S_IFLNK)
    }
}

/// STATUS codes, named as in the draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Ok,
    Eof,
    NoSuchFile,
    PermissionDenied,
    Failure,
    BadMessage,
    NoConnection,
    ConnectionLost,
    OpUnsupported,
    Other(u32),
}

impl StatusCode {
    pub fn from_u32(code: u32) -> StatusCode {
        match code {
            0 => StatusCode::Ok,
            1 => StatusCode::Eof,
            2 => StatusCode::NoSuchFile,
            3 => StatusCode::PermissionDenied,
            4 => StatusCode::Failure,
            5 => StatusCode::BadMessage,
            6 => StatusCode::NoConnection,
            7 => StatusCode::ConnectionLost,
            8 => StatusCode::OpUnsupported,
            other => StatusCode::Other(other),
        }
    }

    pub fn to_u32(self) -> u32 {
        match self {
            StatusCode::Ok => 0,
            StatusCode::Eof => 1,
            StatusCode::NoSuchFile => 2,
            StatusCode::PermissionDenied => 3,
            StatusCode::Failure => 4,
            StatusCode::BadMessage => 5,
            StatusCode::NoConnection => 6,
            StatusCode::ConnectionLost => 7,
            StatusCode::OpUnsupported => 8,
            StatusCode::Other(code) => code,
        }
    }

    /// The draft's name without the `SSH_FX_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Ok => "OK",
            StatusCode::Eof => "EOF",
            StatusCode::NoSuchFile => "NO_SUCH_FILE",
            StatusCode::PermissionDenied => "PERMISSION_DENIED",
            StatusCode::Failure => "FAILURE",
            StatusCode::BadMessage => "BAD_MESSAGE",
            StatusCode::NoConnection => "NO_CONNECTION",
            StatusCode::ConnectionLost => "CONNECTION_LOST",
            StatusCode::OpUnsupported => "OP_UNSUPPORTED",
            StatusCode::Other(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusCode::Other(code) => write!(f, "status {code}"),
            known => f.write_str(known.name()),
        }
    }
}

/// Which order a server reads SYMLINK's two paths in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SymlinkOrder {
    /// OpenSSH (and most servers in practice): target path first, then link path.
    #[default]
    TargetFirst,
    /// The draft's order: link path first, then target path.
    LinkFirst,
}

/// Requests the client sends, one variant per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Open {
        path: Vec<u8>,
        flags: OpenFlags,
        attrs: Attrs,
    },
    Close {
        handle: Vec<u8>,
    },
    Read {
        handle: Vec<u8>,
        offset: u64,
        len: u32,
    },
    /// The client writes with [`encode_write_header`], file data straight from the file;
    /// this variant is what a server decodes.
    #[cfg(test)]
    Write {
        handle: Vec<u8>,
        offset: u64,
        data: Vec<u8>,
    },
    Lstat {
        path: Vec<u8>,
    },
    Fstat {
        handle: Vec<u8>,
    },
    Setstat {
        path: Vec<u8>,
        attrs: Attrs,
    },
    Fsetstat {
        handle: Vec<u8>,
        attrs: Attrs,
    },
    Opendir {
        path: Vec<u8>,
    },
    Readdir {
        handle: Vec<u8>,
    },
    Remove {
        path: Vec<u8>,
    },
    Mkdir {
        path: Vec<u8>,
        attrs: Attrs,
    },
    Rmdir {
        path: Vec<u8>,
    },
    Realpath {
        path: Vec<u8>,
    },
    Stat {
        path: Vec<u8>,
    },
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Readlink {
        path: Vec<u8>,
    },
    /// Make `link` a symlink pointing to `target`; `order` is the server's argument order.
    Symlink {
        link: Vec<u8>,
        target: Vec<u8>,
        order: SymlinkOrder,
    },
    Extended(ExtendedRequest),
}

/// The EXTENDED requests we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendedRequest {
    /// Rename that atomically replaces `to` (rename(2) semantics).
    PosixRename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Fsync {
        handle: Vec<u8>,
    },
    Limits,
    /// The file system holding `path`: a [`Statvfs`] reply.
    Statvfs {
        path: Vec<u8>,
    },
    /// Make `to` a hard link to the existing file `from` (link(2): `to` must not exist),
    /// answered by STATUS.
    Hardlink {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// Any other extension, by name: what the server side decodes from a name it does not
    /// know.
    #[cfg(test)]
    Other {
        name: Vec<u8>,
        data: Vec<u8>,
    },
}

/// Replies the server sends to requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Status {
        code: StatusCode,
        message: Vec<u8>,
        language: Vec<u8>,
    },
    Handle(Vec<u8>),
    Data(Vec<u8>),
    Name(Vec<NameEntry>),
    Attrs(Attrs),
    ExtendedReply(Vec<u8>),
}

/// One entry of a NAME reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    pub filename: Vec<u8>,
    pub longname: Vec<u8>,
    pub attrs: Attrs,
}

/// A whole packet as either side sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Init {
        version: u32,
        extensions: Extensions,
    },
    Version {
        version: u32,
        extensions: Extensions,
    },
    Request {
        id: u32,
        request: Request,
    },
    Response {
        id: u32,
        response: Response,
    },
}

/// The body of `statvfs@openssh.com`'s reply (OpenSSH's PROTOCOL, section 4.4): the
/// fields of statvfs(3), of which the room left is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statvfs {
    pub fragment_size: u64,
    pub blocks: u64,
    /// Blocks free for an unprivileged user.
    pub blocks_available: u64,
}

impl Statvfs {
    pub fn decode(data: &[u8]) -> Result<Statvfs, WireError> {
        let mut r = Reader::new(data);
        let _block_size = r.u64("f_bsize")?;
        let fragment_size = r.u64("f_frsize")?;
        let blocks = r.u64("f_blocks")?;
        let _free = r.u64("f_bfree")?;
        let blocks_available = r.u64("f_bavail")?;
        for what in [
            "f_files",
            "f_ffree",
            "f_favail",
            "f_fsid",
            "f_flag",
            "f_namemax",
        ] {
            r.u64(what)?;
        }
        r.finish(kind::EXTENDED_REPLY)?;
        Ok(Statvfs {
            fragment_size,
            blocks,
            blocks_available,
        })
    }

    /// Bytes free for an unprivileged user.
    pub fn available_bytes(&self) -> u64 {
        self.blocks_available.saturating_mul(self.fragment_size)
    }

    /// The file system's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.fragment_size)
    }
}

/// The body of `limits@openssh.com`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub max_packet_len: u64,
    pub max_read_len: u64,
    pub max_write_len: u64,
    pub max_open_handles: u64,
}

impl Limits {
    pub fn decode(data: &[u8]) -> Result<Limits, WireError> {
        let mut r = Reader::new(data);
        let limits = Limits {
            max_packet_len: r.u64("max-packet-length")?,
            max_read_len: r.u64("max-read-length")?,
            max_write_len: r.u64("max-write-length")?,
            max_open_handles: r.u64("max-open-handles")?,
        };
        r.finish(kind::EXTENDED_REPLY)?;
        Ok(limits)
    }

    /// The server side: a scripted peer's reply.
    #[cfg(test)]
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.max_packet_len,
            self.max_read_len,
            self.max_write_len,
            self.max_open_handles,
        ] {
            put_u64(out, v);
        }
    }
}

/// Where the next packet stands in a buffer of received bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// More bytes are needed before a packet is complete.
    Partial,
    /// A complete packet body (type byte first) and how many bytes of the buffer it used.
    Complete { body: &'a [u8], consumed: usize },
}

/// Finds the first packet in `buf`, checking its length field before anything else.
pub fn frame(buf: &[u8]) -> Result<Frame<'_>, WireError> {
    let Some(len_bytes) = buf.get(..4) else {
        return Ok(Frame::Partial);
    };
    let len = u32::from_be_bytes(len_bytes.try_into().expect("four bytes"));
    if len == 0 {
        return Err(WireError::Empty);
    }
    if len > MAX_PACKET_LEN {
        return Err(WireError::TooLong {
            len,
            max: MAX_PACKET_LEN,
        });
    }
    let end = 4 + len as usize;
    match buf.get(4..end) {
        Some(body) => Ok(Frame::Complete {
            body,
            consumed: end,
        }),
        None => Ok(Frame::Partial),
    }
}

impl Request {
    /// One line for logs: the message and what it is about, never file data.
    pub fn summary(&self) -> String {
        let p = |b: &[u8]| b.escape_ascii().to_string();
        let h = |b: &[u8]| format!("handle {}", b.escape_ascii());
        match self {
            Request::Open { path, flags, .. } => format!("OPEN {} flags {:#x}", p(path), flags.0),
            Request::Close { handle } => format!("CLOSE {}", h(handle)),
            Request::Read {
                handle,
                offset,
                len,
            } => format!("READ {} at {offset} len {len}", h(handle)),
            #[cfg(test)]
            Request::Write {
                handle,
                offset,
                data,
            } => format!("WRITE {} at {offset} len {}", h(handle), data.len()),
            Request::Lstat { path } => format!("LSTAT {}", p(path)),
            Request::Fstat { handle } => format!("FSTAT {}", h(handle)),
            Request::Setstat { path, .. } => format!("SETSTAT {}", p(path)),
            Request::Fsetstat { handle, .. } => format!("FSETSTAT {}", h(handle)),
            Request::Opendir { path } => format!("OPENDIR {}", p(path)),
            Request::Readdir { handle } => format!("READDIR {}", h(handle)),
            Request::Remove { path } => format!("REMOVE {}", p(path)),
            Request::Mkdir { path, .. } => format!("MKDIR {}", p(path)),
            Request::Rmdir { path } => format!("RMDIR {}", p(path)),
            Request::Realpath { path } => format!("REALPATH {}", p(path)),
            Request::Stat { path } => format!("STAT {}", p(path)),
            Request::Rename { from, to } => format!("RENAME {} {}", p(from), p(to)),
            Request::Readlink { path } => format!("READLINK {}", p(path)),
            Request::Symlink { link, target, .. } => {
                format!("SYMLINK {} -> {}", p(link), p(target))
            }
            Request::Extended(e) => match e {
                ExtendedRequest::PosixRename { from, to } => {
                    format!("posix-rename {} {}", p(from), p(to))
                }
                ExtendedRequest::Fsync { handle } => format!("fsync {}", h(handle)),
                ExtendedRequest::Limits => "limits".to_string(),
                ExtendedRequest::Statvfs { path } => format!("statvfs {}", p(path)),
                ExtendedRequest::Hardlink { from, to } => {
                    format!("hardlink {} {}", p(from), p(to))
                }
                #[cfg(test)]
                ExtendedRequest::Other { name, .. } => format!("EXTENDED {}", p(name)),
            },
        }
    }
}

impl Response {
    /// One line for logs.
    pub fn summary(&self) -> String {
        match self {
            Response::Status { code, message, .. } => {
                format!("STATUS {code} {}", message.escape_ascii())
            }
            Response::Handle(h) => format!("HANDLE {}", h.escape_ascii()),
            Response::Data(d) => format!("DATA len {}", d.len()),
            Response::Name(n) => format!("NAME with {} entries", n.len()),
            Response::Attrs(a) => format!("ATTRS size {:?}", a.size),
            Response::ExtendedReply(d) => format!("EXTENDED_REPLY len {}", d.len()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, u32::try_from(s.len()).expect("string under 4 GiB"));
    out.extend_from_slice(s);
}

fn put_attrs(out: &mut Vec<u8>, a: &Attrs) {
    let mut flags = 0;
    if a.size.is_some() {
        flags |= ATTR_SIZE;
    }
    if a.uid_gid.is_some() {
        flags |= ATTR_UIDGID;
    }
    if a.permissions.is_some() {
        flags |= ATTR_PERMISSIONS;
    }
    if a.times.is_some() {
        flags |= ATTR_ACMODTIME;
    }
    if !a.extended.is_empty() {
        flags |= ATTR_EXTENDED;
    }
    put_u32(out, flags);
    if let Some(size) = a.size {
        put_u64(out, size);
    }
    if let Some((uid, gid)) = a.uid_gid {
        put_u32(out, uid);
        put_u32(out, gid);
    }
    if let Some(p) = a.permissions {
        put_u32(out, p);
    }
    if let Some((atime, mtime)) = a.times {
        put_u32(out, atime);
        put_u32(out, mtime);
    }
    if !a.extended.is_empty() {
        put_u32(out, u32::try_from(a.extended.len()).expect("count"));
        for (name, data) in &a.extended {
            put_str(out, name);
            put_str(out, data);
        }
    }
}

fn put_extensions(out: &mut Vec<u8>, extensions: &[(Vec<u8>, Vec<u8>)]) {
    for (name, data) in extensions {
        put_str(out, name);
        put_str(out, data);
    }
}

/// Appends one whole packet (length field included) whose body `fill` writes.
fn packet(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    fill(out);
    let len = u32::try_from(out.len() - start - 4).expect("packet under 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends the header of a WRITE whose `len` data bytes the caller appends right after.
/// This lets file data be read straight into the output buffer, copied once.
pub fn encode_write_header(out: &mut Vec<u8>, id: u32, handle: &[u8], offset: u64, len: u32) {
    let body_len = 1 + 4 + 4 + handle.len() + 8 + 4 + len as usize;
    put_u32(out, u32::try_from(body_len).expect("packet under 4 GiB"));
    out.push(kind::WRITE);
    put_u32(out, id);
    put_str(out, handle);
    put_u64(out, offset);
    put_u32(out, len);
}

impl Packet {
    /// Appends this packet, length field first, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        packet(out, |out| match self {
            Packet::Init {
                version,
                extensions,
            } => {
                out.push(kind::INIT);
                put_u32(out, *version);
                put_extensions(out, extensions);
            }
            Packet::Version {
                version,
                extensions,
            } => {
                out.push(kind::VERSION);
                put_u32(out, *version);
                put_extensions(out, extensions);
            }
            Packet::Request { id, request } => encode_request(out, *id, request),
            Packet::Response { id, response } => encode_response(out, *id, response),
        })
    }

    /// Decodes a packet body (type byte first), as a server would see it from a client. The
    /// server side exists for the tests: the round trips and the scripted peer.
    #[cfg(test)]
    pub fn decode_from_client(body: &[u8]) -> Result<Packet, WireError> {
        let mut r = Reader::new(body);
        let t = r.u8("type")?;
        let packet = if t == kind::INIT {
            Packet::Init {
                version: r.u32("version")?,
                extensions: r.extensions()?,
            }
        } else {
            let id = r.u32("request id")?;
            Packet::Request {
                id,
                request: decode_request(t, &mut r)?,
            }
        };
        r.finish(t)?;
        Ok(packet)
    }

    /// Decodes a packet body (type byte first), as a client sees it from the server.
    pub fn decode_from_server(body: &[u8]) -> Result<Packet, WireError> {
        let mut r = Reader::new(body);
        let t = r.u8("type")?;
        let packet = if t == kind::VERSION {
            Packet::Version {
                version: r.u32("version")?,
                extensions: r.extensions()?,
            }
        } else {
            let id = r.u32("request id")?;
            Packet::Response {
                id,
                response: decode_response(t, &mut r)?,
            }
        };
        r.finish(t)?;
        Ok(packet)
    }
}

fn encode_request(out: &mut Vec<u8>, id: u32, request: &Request) {
    let mut head = |t: u8| {
        out.push(t);
        put_u32(out, id);
    };
    match request {
        Request::Open { path, flags, attrs } => {
            head(kind::OPEN);
            put_str(out, path);
            put_u32(out, flags.0);
            put_attrs(out, attrs);
        }
        Request::Close { handle } => {
            head(kind::CLOSE);
            put_str(out, handle);
        }
        Request::Read {
            handle,
            offset,
            len,
        } => {
            head(kind::READ);
            put_str(out, handle);
            put_u64(out, *offset);
            put_u32(out, *len);
        }
        #[cfg(test)]
        Request::Write {
            handle,
            offset,
            data,
        } => {
            head(kind::WRITE);
            put_str(out, handle);
            put_u64(out, *offset);
            put_str(out, data);
        }
        Request::Lstat { path } => {
            head(kind::LSTAT);
            put_str(out, path);
        }
        Request::Fstat { handle } => {
            head(kind::FSTAT);
            put_str(out, handle);
        }
        Request::Setstat { path, attrs } => {
            head(kind::SETSTAT);
            put_str(out, path);
            put_attrs(out, attrs);
        }
        Request::Fsetstat { handle, attrs } => {
            head(kind::FSETSTAT);
            put_str(out, handle);
            put_attrs(out, attrs);
        }
        Request::Opendir { path } => {
            head(kind::OPENDIR);
            put_str(out, path);
        }
        Request::Readdir { handle } => {
            head(kind::READDIR);
            put_str(out, handle);
        }
        Request::Remove { path } => {
            head(kind::REMOVE);
            put_str(out, path);
        }
        Request::Mkdir { path, attrs } => {
            head(kind::MKDIR);
            put_str(out, path);
            put_attrs(out, attrs);
        }
        Request::Rmdir { path } => {
            head(kind::RMDIR);
            put_str(out, path);
        }
        Request::Realpath { path } => {
            head(kind::REALPATH);
            put_str(out, path);
        }
        Request::Stat { path } => {
            head(kind::STAT);
            put_str(out, path);
        }
        Request::Rename { from, to } => {
            head(kind::RENAME);
            put_str(out, from);
            put_str(out, to);
        }
        Request::Readlink { path } => {
            head(kind::READLINK);
            put_str(out, path);
        }
        Request::Symlink {
            link,
            target,
            order,
        } => {
            head(kind::SYMLINK);
            let (first, second) = match order {
                SymlinkOrder::TargetFirst => (target, link),
                SymlinkOrder::LinkFirst => (link, target),
            };
            put_str(out, first);
            put_str(out, second);
        }
        Request::Extended(e) => {
            head(kind::EXTENDED);
            match e {
                ExtendedRequest::PosixRename { from, to } => {
                    put_str(out, ext::POSIX_RENAME);
                    put_str(out, from);
                    put_str(out, to);
                }
                ExtendedRequest::Fsync { handle } => {
                    put_str(out, ext::FSYNC);
                    put_str(out, handle);
                }
                ExtendedRequest::Limits => put_str(out, ext::LIMITS),
                ExtendedRequest::Statvfs { path } => {
                    put_str(out, ext::STATVFS);
                    put_str(out, path);
                }
                ExtendedRequest::Hardlink { from, to } => {
                    put_str(out, ext::HARDLINK);
                    put_str(out, from);
                    put_str(out, to);
                }
                #[cfg(test)]
                ExtendedRequest::Other { name, data } => {
                    put_str(out, name);
                    out.extend_from_slice(data);
                }
            }
        }
    }
}

fn encode_response(out: &mut Vec<u8>, id: u32, response: &Response) {
    let mut head = |t: u8| {
        out.push(t);
        put_u32(out, id);
    };
    match response {
        Response::Status {
            code,
            message,
            language,
        } => {
            head(kind::STATUS);
            put_u32(out, code.to_u32());
            put_str(out, message);
            put_str(out, language);
        }
        Response::Handle(handle) => {
            head(kind::HANDLE);
            put_str(out, handle);
        }
        Response::Data(data) => {
            head(kind::DATA);
            put_str(out, data);
        }
        Response::Name(entries) => {
            head(kind::NAME);
            put_u32(out, u32::try_from(entries.len()).expect("count"));
            for e in entries {
                put_str(out, &e.filename);
                put_str(out, &e.longname);
                put_attrs(out, &e.attrs);
            }
        }
        Response::Attrs(attrs) => {
            head(kind::ATTRS);
            put_attrs(out, attrs);
        }
        Response::ExtendedReply(data) => {
            head(kind::EXTENDED_REPLY);
            out.extend_from_slice(data);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A cursor over a packet body that never reads past its end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(WireError::Truncated(what))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes(b.try_into().expect("four bytes")))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        Ok(u64::from_be_bytes(b.try_into().expect("eight bytes")))
    }

    /// A length-prefixed string; the length is checked against the bytes present before any
    /// allocation.
    fn str(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u32(what)?;
        self.take(len as usize, what)
    }

    fn string(&mut self, what: &'static str) -> Result<Vec<u8>, WireError> {
        self.str(what).map(<[u8]>::to_vec)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }

    /// A count of items each at least `min_item` bytes long, checked against what is left so
    /// that a lying count cannot make us reserve memory.
    fn count(&mut self, min_item: usize, what: &'static str) -> Result<usize, WireError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(WireError::Truncated(what));
        }
        Ok(n)
    }

    fn attrs(&mut self) -> Result<Attrs, WireError> {
        let flags = self.u32("attribute flags")?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64("size")?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((self.u32("uid")?, self.u32("gid")?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32("permissions")?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.times = Some((self.u32("atime")?, self.u32("mtime")?));
        }
        if flags & ATTR_EXTENDED != 0 {
            let n = self.count(8, "extended attribute count")?;
            a.extended.reserve(n);
            for _ in 0..n {
                let name = self.string("extended attribute name")?;
                let data = self.string("extended attribute data")?;
                a.extended.push((name, data));
            }
        }
        Ok(a)
    }

    fn extensions(&mut self) -> Result<Extensions, WireError> {
        let mut out = Vec::new();
        while self.remaining() > 0 {
            let name = self.string("extension name")?;
            let data = self.string("extension data")?;
            out.push((name, data));
        }
        Ok(out)
    }

    fn finish(&self, kind: u8) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes { kind, extra }),
        }
    }
}

/// The server side of [`encode_request`], for the tests.
#[cfg(test)]
fn decode_request(t: u8, r: &mut Reader<'_>) -> Result<Request, WireError> {
    Ok(match t {
        kind::OPEN => Request::Open {
            path: r.string("path")?,
            flags: OpenFlags(r.u32("pflags")?),
            attrs: r.attrs()?,
        },
        kind::CLOSE => Request::Close {
            handle: r.string("handle")?,
        },
        kind::READ => Request::Read {
            handle: r.string("handle")?,
            offset: r.u64("offset")?,
            len: r.u32("length")?,
        },
        kind::WRITE => Request::Write {
            handle: r.string("handle")?,
            offset: r.u64("offset")?,
            data: r.string("data")?,
        },
        kind::LSTAT => Request::Lstat {
            path: r.string("path")?,
        },
        kind::FSTAT => Request::Fstat {
            handle: r.string("handle")?,
        },
        kind::SETSTAT => Request::Setstat {
            path: r.string("path")?,
            attrs: r.attrs()?,
        },
        kind::FSETSTAT => Request::Fsetstat {
            handle: r.string("handle")?,
            attrs: r.attrs()?,
        },
        kind::OPENDIR => Request::Opendir {
            path: r.string("path")?,
        },
        kind::READDIR => Request::Readdir {
            handle: r.string("handle")?,
        },
        kind::REMOVE => Request::Remove {
            path: r.string("path")?,
        },
        kind::MKDIR => Request::Mkdir {
            path: r.string("path")?,
            attrs: r.attrs()?,
        },
        kind::RMDIR => Request::Rmdir {
            path: r.string("path")?,
        },
        kind::REALPATH => Request::Realpath {
            path: r.string("path")?,
        },
        kind::STAT => Request::Stat {
            path: r.string("path")?,
        },
        kind::RENAME => Request::Rename {
            from: r.string("old path")?,
            to: r.string("new path")?,
        },
        kind::READLINK => Request::Readlink {
            path: r.string("path")?,
        },
        kind::SYMLINK => {
            // Decoded as OpenSSH's server reads it: target first.
            let target = r.string("target path")?;
            let link = r.string("link path")?;
            Request::Symlink {
                link,
                target,
                order: SymlinkOrder::TargetFirst,
            }
        }
        kind::EXTENDED => {
            let name = r.str("extension name")?;
            Request::Extended(match name {
                ext::POSIX_RENAME => ExtendedRequest::PosixRename {
                    from: r.string("old path")?,
                    to: r.string("new path")?,
                },
                ext::FSYNC => ExtendedRequest::Fsync {
                    handle: r.string("handle")?,
                },
                ext::LIMITS => ExtendedRequest::Limits,
                ext::STATVFS => ExtendedRequest::Statvfs {
                    path: r.string("path")?,
                },
                ext::HARDLINK => ExtendedRequest::Hardlink {
                    from: r.string("old path")?,
                    to: r.string("new path")?,
                },
                other => ExtendedRequest::Other {
                    name: other.to_vec(),
                    data: r.rest().to_vec(),
                },
            })
        }
        other => return Err(WireError::UnexpectedType(other)),
    })
}

fn decode_response(t: u8, r: &mut Reader<'_>) -> Result<Response, WireError> {
    Ok(match t {
        kind::STATUS => {
            let code = StatusCode::from_u32(r.u32("status code")?);
            // Some servers omit message and language tag; accept that.
            let message = if r.remaining() > 0 {
                r.string("status message")?
            } else {
                Vec::new()
            };
            let language = if r.remaining() > 0 {
                r.string("language tag")?
            } else {
                Vec::new()
            };
            Response::Status {
                code,
                message,
                language,
            }
        }
        kind::HANDLE => {
            let handle = r.string("handle")?;
            if handle.len() > MAX_HANDLE_LEN {
                return Err(WireError::HandleTooLong(handle.len()));
            }
            Response::Handle(handle)
        }
        kind::DATA => Response::Data(r.string("data")?),
        kind::NAME => {
            let n = r.count(4 + 4, "name count")?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let filename = r.string("filename")?;
                let longname = r.string("longname")?;
                // pysftpserver ends its READLINK reply after the long name: attributes
                // that are not there at the packet's end are read as none.
                let attrs = if r.remaining() == 0 {
                    Attrs::default()
                } else {
                    r.attrs()?
                };
                entries.push(NameEntry {
                    filename,
                    longname,
                    attrs,
                });
            }
            Response::Name(entries)
        }
        kind::ATTRS => Response::Attrs(r.attrs()?),
        kind::EXTENDED_REPLY => Response::ExtendedReply(r.rest().to_vec()),
        other => return Err(WireError::UnexpectedType(other)),
    })
}

#[cfg(test)]
mod tests;
