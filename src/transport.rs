//! The only place that touches processes and file descriptors: spawns `ssh` (or another
//! command that speaks SFTP on stdin/stdout), makes its pipes non-blocking and moves bytes
//! between them and a [`Session`] in one `poll` per turn (file data spliced straight from
//! the local file into the pipe where the kernel allows it).
//!
//! The child's stderr is read too (a piped stderr nobody reads would deadlock a chatty
//! server) and shown line by line on our own stderr, prefixed with the program's name,
//! its control characters escaped ([`printable`]).
//!
//! It must not look inside the bytes it moves or decide what to send: packets are the
//! session's, scheduling is the engine's. It never closes the server's input with requests
//! in flight ([`Transport::shutdown`] is for when nothing is).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::sftp::printable::printable;
use crate::sftp::session::{FileFault, Next, Session, SessionError, SourceId};

/// Where the transport finds the local files whose ranges a session queued
/// ([`Next::Source`]): they are opened and held by whoever queued them.
pub trait LocalFiles {
    /// The open file named `source`; `None` if it is no longer held.
    fn file(&self, source: SourceId) -> Option<&File>;
}

/// How to reach the SFTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCommand {
    /// `ssh` (or the given command and its words, e.g. `ssh -F FILE`) to `host`'s sftp
    /// subsystem.
    Ssh {
        ssh: Vec<OsString>,
        /// The user's own `-o` style options; placed before ours so that they win.
        options: Vec<OsString>,
        user: Option<OsString>,
        host: OsString,
        /// The connection kept between runs, if one may be.
        kept: Option<KeptConnection>,
    },
    /// Any command speaking SFTP on stdin/stdout, e.g. `/usr/lib/openssh/sftp-server`.
    Direct(Vec<OsString>),
}

/// An ssh connection kept for the next run (OpenSSH's `ControlMaster`): the first ssh
/// started becomes the master, listening on a socket in `socket_dir`; the next ssh to the
/// same user, host and port opens a channel on it instead of a connection of its own (no
/// TCP, key exchange or authentication: about 0.6 s at a 50 ms round trip). The master
/// leaves once nothing has used it for `persist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptConnection {
    /// A directory only we may enter: whoever can reach the socket can open sessions on the
    /// server as us, without authenticating.
    pub socket_dir: PathBuf,
    pub persist: Duration,
}

impl KeptConnection {
    /// The ssh options that make it: the socket named by ssh's hash of the local host,
    /// remote host, port and user (`%C`), so that each destination has its own.
    fn options(&self) -> [OsString; 3] {
        // `%` starts a token in ControlPath: a directory's own `%` is doubled.
        let dir = self.socket_dir.as_os_str().as_bytes();
        let mut path = Vec::with_capacity(dir.len() + 20);
        path.extend_from_slice(b"-oControlPath=");
        for &b in dir {
            path.push(b);
            if b == b'%' {
                path.push(b'%');
            }
        }
        path.extend_from_slice(b"/%C");
        [
            OsString::from("-oControlMaster=auto"),
            OsString::from_vec(path),
            // At least a second: 0 would be "for ever" to ssh.
            format!("-oControlPersist={}", self.persist.as_secs().max(1)).into(),
        ]
    }
}

/// Options we always give ssh: no forwarding of anything, no prompt that could hang reprepro,
/// and keepalives so a dead link is noticed. ssh keeps the first value it sees for an option,
/// so anything the user configures before these wins.
pub const SSH_DEFAULT_OPTIONS: &[&str] = &[
    "-oForwardX11=no",
    "-oForwardAgent=no",
    "-oPermitLocalCommand=no",
    "-oClearAllForwardings=yes",
    "-oBatchMode=yes",
    "-oServerAliveInterval=15",
    "-oServerAliveCountMax=4",
];

impl ServerCommand {
    /// The program and its arguments, as they will be run.
    pub fn argv(&self) -> Vec<OsString> {
        match self {
            ServerCommand::Direct(argv) => argv.clone(),
            ServerCommand::Ssh {
                ssh,
                options,
                user,
                host,
                kept,
            } => {
                let mut argv = if ssh.is_empty() {
                    vec![OsString::from("ssh")]
                } else {
                    ssh.clone()
                };
                argv.extend(options.iter().cloned());
                if let Some(kept) = kept {
                    argv.extend(kept.options());
                }
                argv.extend(SSH_DEFAULT_OPTIONS.iter().map(OsString::from));
                if let Some(user) = user {
                    argv.push("-l".into());
                    argv.push(user.clone());
                }
                argv.extend(["-s", "--"].map(OsString::from));
                argv.push(host.clone());
                argv.push("sftp".into());
                argv
            }
        }
    }
}

/// Why the conversation with the server ended unexpectedly.
#[derive(Debug)]
pub enum TransportError {
    Spawn {
        program: OsString,
        error: io::Error,
    },
    Io(io::Error),
    /// The server closed its output (or its input) and exited with `status`.
    Closed {
        status: Option<ExitStatus>,
    },
    Protocol(SessionError),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Spawn { program, error } => {
                write!(f, "cannot run {}: {error}", program.to_string_lossy())
            }
            TransportError::Io(e) => write!(f, "talking to the server: {e}"),
            TransportError::Closed { status: Some(s) } => {
                write!(f, "the server closed the connection ({s})")
            }
            TransportError::Closed { status: None } => {
                write!(f, "the server closed the connection")
            }
            TransportError::Protocol(e @ SessionError::UnsupportedVersion(_)) => write!(
                f,
                "{e} (OpenSSH's server and every common one speak it: check sftpcommand or \
                 the server's configuration)"
            ),
            // Says what to do itself.
            TransportError::Protocol(e @ SessionError::NotSftp(_)) => write!(f, "{e}"),
            TransportError::Protocol(e) => write!(
                f,
                "{e} (the server, or what runs between it and outsftphook, breaks the SFTP \
                 protocol: --debug-sftp 1 shows the exchange; report it to the server's \
                 maintainers)"
            ),
        }
    }
}

impl std::error::Error for TransportError {}

/// What one turn of the loop achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Bytes moved into the server, or a whole packet came from it. Bytes of a packet that
    /// is not complete yet are no progress: a server sending a byte now and then of a packet
    /// that never ends must meet the stall timeout like one that sends nothing.
    Progress,
    /// Nothing moved before the timeout (or a signal interrupted the wait).
    Idle,
}

/// Where a transport's pipes stand in the `poll` array.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slots {
    stdout: Option<usize>,
    stderr: Option<usize>,
    stdin: Option<usize>,
}

/// One `poll` over `fds`; false when a signal interrupted it (nothing is ready then).
pub fn wait(fds: &mut [PollFd<'_>], timeout: Duration) -> Result<bool, TransportError> {
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(fds, ms) {
        Ok(_) => Ok(true),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(TransportError::Io(e.into())),
    }
}

/// A running server process and its three pipes.
pub struct Transport {
    child: Child,
    label: String,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    stderr_line: Vec<u8>,
    read_buf: Vec<u8>,
    /// Whether file data can be spliced into the server's input; if not, it is read into
    /// `copy_buf` and written.
    splice_works: bool,
    copy_buf: Vec<u8>,
    /// The server's output ended after the last bytes read were handed to the session; the
    /// next turn reports it, so that those replies are delivered first.
    eof: bool,
    /// File data written into the server's input so far (WRITE payloads, not headers).
    file_bytes: u64,
    /// Every byte written into the server's input, and read from its output.
    wire_out: u64,
    wire_in: u64,
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

const READ_CHUNK: usize = 256 * 1024;
/// The most of one line of the server's stderr that is shown (what is kept of it is 64 KiB).
const MAX_STDERR_SHOWN: usize = 4096;
/// Bound one turn's reading so a fast server cannot starve our writing.
const MAX_READ_PER_TURN: usize = 4 * READ_CHUNK;

/// The size asked for the pipe into the server (1 MiB is what Linux allows anyone).
const INPUT_PIPE_SIZE: i32 = 1024 * 1024;

/// The most file data moved into the pipe in one call (as much as the pipe holds).
const MAX_FILE_MOVE: u64 = 1024 * 1024;
/// The buffer of the copying fallback.
const COPY_CHUNK: usize = 64 * 1024;

/// What one attempt to move bytes into the server's input did. Errors of the pipe are
/// `Err`; those of the file are the file's, and end only its upload.
#[derive(Debug, PartialEq, Eq)]
enum Moved {
    Bytes(usize),
    PipeFull,
    File(FileFault),
}

/// Moves up to `len` bytes of `file` from `offset` into `pipe` (non-blocking): spliced,
/// so the data never passes through our memory, or read and written where the kernel
/// cannot splice that file (then `splice_works` is cleared for good).
fn move_file_range(
    pipe: BorrowedFd<'_>,
    file: &File,
    offset: u64,
    len: u64,
    splice_works: &mut bool,
    copy_buf: &mut Vec<u8>,
) -> io::Result<Moved> {
    let want = len.min(MAX_FILE_MOVE) as usize;
    if *splice_works {
        let mut at =
            i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match splice(
            file,
            Some(&mut at),
            pipe,
            None,
            want,
            SpliceFFlags::SPLICE_F_NONBLOCK,
        ) {
            Ok(0) => return Ok(Moved::File(FileFault::Ended)),
            Ok(n) => return Ok(Moved::Bytes(n)),
            Err(Errno::EAGAIN) => return Ok(Moved::PipeFull),
            Err(e @ (Errno::EPIPE | Errno::EINTR)) => return Err(e.into()),
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                log::debug!("cannot splice from this file: copying file data instead");
                *splice_works = false;
            }
            // Anything else comes from reading the file (a pipe gives no EIO).
            Err(e) => return Ok(Moved::File(FileFault::Unreadable(e.desc().into()))),
        }
    }
    copy_buf.resize(COPY_CHUNK, 0);
    let n = match file.read_at(&mut copy_buf[..want.min(COPY_CHUNK)], offset) {
        Ok(0) => return Ok(Moved::File(FileFault::Ended)),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
        Err(e) => return Ok(Moved::File(FileFault::Unreadable(e.to_string()))),
    };
    match nix::unistd::write(pipe, &copy_buf[..n]) {
        Ok(w) => Ok(Moved::Bytes(w)),
        Err(Errno::EAGAIN) => Ok(Moved::PipeFull),
        Err(e) => Err(e.into()),
    }
}

impl Transport {
    pub fn spawn(server: &ServerCommand) -> Result<Transport, TransportError> {
        let argv = server.argv();
        let (program, args) = argv.split_first().ok_or_else(|| TransportError::Spawn {
            program: OsString::new(),
            error: io::Error::new(io::ErrorKind::InvalidInput, "empty command"),
        })?;
        let label = std::path::Path::new(program)
            .file_name()
            .unwrap_or(OsStr::new("server"))
            .to_string_lossy()
            .into_owned();
        log::debug!("running {argv:?}");
        let mut child = Command::new(program)
            .args(args)
            // Its own process group: a Ctrl-C at the terminal reaches us, and we decide how
            // to stop, instead of killing ssh under requests in flight.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| TransportError::Spawn {
                program: program.clone(),
                error,
            })?;
        // Built before anything else can fail, so that its Drop reaps the child.
        let transport = Transport {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            label,
            stderr_line: Vec::new(),
            read_buf: vec![0; READ_CHUNK],
            splice_works: true,
            file_bytes: 0,
            wire_out: 0,
            wire_in: 0,
            copy_buf: Vec::new(),
            eof: false,
        };
        transport.set_up_pipes()?;
        Ok(transport)
    }

    /// Makes the three pipes non-blocking, and the one to the server larger.
    fn set_up_pipes(&self) -> Result<(), TransportError> {
        let stdin = self.stdin.as_ref().expect("piped").as_fd();
        let stdout = self.stdout.as_ref().expect("piped").as_fd();
        let stderr = self.stderr.as_ref().expect("piped").as_fd();
        for fd in [stdin, stdout, stderr] {
            set_nonblocking(fd).map_err(TransportError::Io)?;
        }
        // A larger pipe: fewer wake-ups on both sides (measured at 0 ms, 419 MB: 2.27-2.39 s
        // against 2.32-2.53 s with the default 64 KiB). Not every system allows it.
        if let Err(e) = fcntl(stdin, FcntlArg::F_SETPIPE_SZ(INPUT_PIPE_SIZE)) {
            log::debug!("cannot enlarge the pipe to the server: {e}");
        }
        Ok(())
    }

    /// Adds this transport's pipes to `fds` for one `poll`, with what it waits for; writing
    /// only while the session has something to write.
    pub fn register<'a>(&'a self, wants_write: bool, fds: &mut Vec<PollFd<'a>>) -> Slots {
        let mut slot = |fd: Option<std::os::fd::BorrowedFd<'a>>, flags| {
            fd.map(|fd| {
                fds.push(PollFd::new(fd, flags));
                fds.len() - 1
            })
        };
        Slots {
            stdout: slot(self.stdout.as_ref().map(AsFd::as_fd), PollFlags::POLLIN),
            stderr: slot(self.stderr.as_ref().map(AsFd::as_fd), PollFlags::POLLIN),
            stdin: slot(
                self.stdin.as_ref().filter(|_| wants_write).map(AsFd::as_fd),
                PollFlags::POLLOUT,
            ),
        }
    }

    /// File data written into the server's input so far: the bytes of uploads handed over,
    /// as they go (progress is shown by them).
    pub fn file_bytes_written(&self) -> u64 {
        self.file_bytes
    }

    /// All bytes written into the server's input and read from its output so far.
    pub fn wire_bytes(&self) -> (u64, u64) {
        (self.wire_out, self.wire_in)
    }

    /// Whether the next [`Transport::handle`] reports the end without waiting.
    pub fn ending(&self) -> bool {
        self.eof
    }

    /// Moves the bytes `poll` found ready (`revents` as returned for the fds registered by
    /// [`Transport::register`]), writing at most `budget` bytes into the server's input
    /// (`bwlimit`; what is written is taken off it).
    pub fn handle<T>(
        &mut self,
        slots: &Slots,
        revents: &[Option<PollFlags>],
        session: &mut Session<T>,
        files: &impl LocalFiles,
        budget: &mut u64,
    ) -> Result<Turn, TransportError> {
        if self.eof {
            return Err(self.closed());
        }
        let ready = |slot: Option<usize>| {
            slot.and_then(|i| revents.get(i).copied().flatten())
                .is_some_and(|r| !r.is_empty())
        };
        let mut progress = false;
        if ready(slots.stderr) {
            self.read_stderr();
        }
        // Read before writing: replies that arrived are never lost to a write error.
        if ready(slots.stdout) && self.stdout.is_some() {
            progress |= self.read_in(session)?;
        }
        if ready(slots.stdin) && self.stdin.is_some() {
            progress |= self.write_out(session, files, budget)?;
        }
        Ok(if progress { Turn::Progress } else { Turn::Idle })
    }

    fn write_out<T>(
        &mut self,
        session: &mut Session<T>,
        files: &impl LocalFiles,
        budget: &mut u64,
    ) -> Result<bool, TransportError> {
        let Transport {
            stdin,
            splice_works,
            copy_buf,
            file_bytes,
            wire_out,
            ..
        } = self;
        let pipe = stdin.as_mut().expect("polled");
        let mut wrote = false;
        loop {
            if *budget == 0 {
                break;
            }
            let mut from_file = false;
            let allowed = usize::try_from(*budget).unwrap_or(usize::MAX);
            let moved = match session.output() {
                None => break,
                Some(Next::Bytes(bytes)) => match pipe.write(&bytes[..bytes.len().min(allowed)]) {
                    Ok(n) => Ok(Moved::Bytes(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Moved::PipeFull),
                    Err(e) => Err(e),
                },
                Some(Next::Source {
                    source,
                    offset,
                    len,
                }) => match files.file(source) {
                    Some(file) => {
                        from_file = true;
                        let len = len.min(*budget);
                        move_file_range(pipe.as_fd(), file, offset, len, splice_works, copy_buf)
                    }
                    None => Ok(Moved::File(FileFault::Unreadable("no longer open".into()))),
                },
            };
            match moved {
                Ok(Moved::Bytes(0)) | Ok(Moved::PipeFull) => break,
                Ok(Moved::Bytes(n)) => {
                    session.consume_output(n);
                    *wire_out += n as u64;
                    *budget = budget.saturating_sub(n as u64);
                    if from_file {
                        *file_bytes += n as u64;
                    }
                    wrote = true;
                }
                Ok(Moved::File(fault)) => {
                    session.file_failed(fault);
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    // The server stopped reading: what it still sends is read until its
                    // output ends, which then reports the closed connection.
                    *stdin = None;
                    break;
                }
                Err(e) => return Err(TransportError::Io(e)),
            }
        }
        Ok(wrote)
    }

    /// Reads what the server sent; true if that completed a packet.
    fn read_in<T>(&mut self, session: &mut Session<T>) -> Result<bool, TransportError> {
        let packets = session.packets_received();
        let mut total = 0;
        while total < MAX_READ_PER_TURN {
            let stdout = self.stdout.as_mut().expect("polled");
            match stdout.read(&mut self.read_buf) {
                Ok(0) => {
                    self.stdout = None;
                    if total > 0 {
                        self.eof = true;
                        break;
                    }
                    return Err(self.closed());
                }
                Ok(n) => {
                    total += n;
                    self.wire_in += n as u64;
                    session
                        .handle_input(&self.read_buf[..n])
                        .map_err(TransportError::Protocol)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TransportError::Io(e)),
            }
        }
        Ok(session.packets_received() > packets)
    }

    /// Shows what the server wrote on stderr; at most 64 KiB a call, so that a server
    /// flooding its stderr cannot keep the loop (and the stall timeout) from running.
    fn read_stderr(&mut self) {
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            let Some(stderr) = self.stderr.as_mut() else {
                return;
            };
            match stderr.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    self.flush_stderr_line();
                    return;
                }
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            self.flush_stderr_line();
                        } else if self.stderr_line.len() < 64 * 1024 {
                            self.stderr_line.push(b);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.stderr = None;
                    return;
                }
            }
        }
    }

    fn flush_stderr_line(&mut self) {
        if !self.stderr_line.is_empty() {
            let line = shown_line(&self.label, &self.stderr_line);
            match mux_fallback(&line) {
                Some(what) => log::info!("{what}"),
                None => eprintln!("{line}"),
            }
            self.stderr_line.clear();
        }
    }

    /// The server has gone: collect its exit status (briefly) for the message.
    fn closed(&mut self) -> TransportError {
        TransportError::Closed {
            status: self.wait_for_exit(Duration::from_secs(2)),
        }
    }

    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            // Keep showing what it says while it winds down.
            if self.stderr.is_some() {
                self.read_stderr();
            }
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => return None,
            }
        }
    }

    /// Ends the conversation once nothing is in flight: closes the server's input and gives
    /// it `grace` to exit by itself (a local server does at once), then asks it to stop with
    /// SIGTERM and, should that not do, kills it. ssh would otherwise spend a round trip
    /// waiting for the remote end to close the channel, with nothing left to say; on SIGTERM
    /// it exits quietly and still removes a ControlMaster socket it owns. Returns the exit
    /// status when the server exited by itself.
    pub fn shutdown(mut self, grace: Duration) -> Option<ExitStatus> {
        self.stdin = None;
        let status = self.wait_for_exit(grace);
        if status.is_none() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if self.wait_for_exit(Duration::from_secs(2)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        self.read_stderr();
        self.flush_stderr_line();
        status
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // A transport dropped without shutdown (an error path) must not leave a zombie or a
        // server running on.
        if let Ok(None) = self.child.try_wait() {
            self.stdin = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A line the server (or ssh) wrote on its stderr (without its newline), as shown: its
/// bytes go to the operator's terminal, so never its control characters as they are.
fn shown_line(label: &str, line: &[u8]) -> String {
    let text = line.strip_suffix(b"\r").unwrap_or(line);
    relayed(label, &printable(text, MAX_STDERR_SHOWN))
}

/// A line the server (or ssh) wrote on its stderr, as shown: named by the program, once
/// (ssh names itself already: `ssh: Could not resolve hostname`).
fn relayed(label: &str, line: &str) -> String {
    match line
        .strip_prefix(label)
        .and_then(|rest| rest.strip_prefix(": "))
    {
        Some(_) => line.to_owned(),
        None => format!("{label}: {line}"),
    }
}

/// What ssh's line means, if it is one of those ssh writes when it cannot use the kept
/// connection ([`KeptConnection`]) and makes one of its own, which works: not a trouble to
/// shout about on every run (sshd's `MaxSessions` refuses a further channel; two runs at
/// once both tried to keep theirs).
fn mux_fallback(line: &str) -> Option<String> {
    if line.contains("mux_client_request_session: session request failed") {
        Some(format!(
            "{line} (sshd's MaxSessions): this connection logs in on its own"
        ))
    } else if line.contains("ControlSocket ") && line.ends_with("disabling multiplexing") {
        Some(line.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_falling_back_from_the_kept_connection_is_no_trouble() {
        let refused =
            "ssh: mux_client_request_session: session request failed: Session open refused by peer";
        assert!(mux_fallback(refused).unwrap().contains("MaxSessions"));
        let taken = "ssh: ControlSocket /run/user/0/outsftphook/7a8c already exists, disabling \
                     multiplexing";
        assert!(mux_fallback(taken).is_some());
        assert_eq!(mux_fallback("ssh: Permission denied (publickey)."), None);
    }

    #[test]
    fn a_server_line_reaches_the_terminal_without_its_control_characters() {
        assert_eq!(
            shown_line("ssh", b"Permission denied (publickey).\r"),
            "ssh: Permission denied (publickey)."
        );
        let shown = shown_line("sftp-server", b"\x1b[2J\x1b]0;owned\x07evil\rline\x00 \xff");
        assert_eq!(
            shown,
            "sftp-server: \\x1b[2J\\x1b]0;owned\\x07evil\\x0dline\\x00 \\xff"
        );
        let flood = shown_line("x", &[b'a'; 64 * 1024]);
        assert!(flood.len() < MAX_STDERR_SHOWN + 64, "{}", flood.len());
    }

    /// Polls `t` once for up to `ms` and moves what is ready.
    fn turn(t: &mut Transport, s: &mut Session<u8>, ms: u64) -> Result<Turn, TransportError> {
        struct NoFiles;
        impl LocalFiles for NoFiles {
            fn file(&self, _: SourceId) -> Option<&File> {
                None
            }
        }
        let mut fds = Vec::new();
        let slots = t.register(s.wants_write(), &mut fds);
        wait(&mut fds, Duration::from_millis(ms)).unwrap();
        let revents: Vec<Option<PollFlags>> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        t.handle(&slots, &revents, s, &NoFiles, &mut u64::MAX.clone())
    }

    #[test]
    fn bytes_of_a_packet_that_never_ends_are_no_progress() {
        // A VERSION, then the start of a DATA packet of 192 KiB whose bytes trickle in.
        let script = concat!(
            "cat >/dev/null & printf '\\000\\000\\000\\005\\002\\000\\000\\000\\003'; sleep 0.2; ",
            "printf '\\000\\003\\000\\000\\147'; ",
            "for i in 1 2 3 4 5 6; do printf '\\000'; sleep 0.05; done; exec sleep 5"
        );
        let mut t = Transport::spawn(&ServerCommand::Direct(os(&["sh", "-c", script]))).unwrap();
        let mut s: Session<u8> = Session::new();
        let mut turns = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(900) {
            turns.push(turn(&mut t, &mut s, 50).unwrap());
        }
        assert!(s.server_info().is_some(), "VERSION came");
        assert_eq!(s.packets_received(), 1);
        // INIT written and VERSION read are progress; the trickle after them is not.
        let progress = turns.iter().filter(|t| **t == Turn::Progress).count();
        assert!((1..=2).contains(&progress), "{turns:?}");
    }

    #[test]
    fn a_server_line_is_named_once() {
        assert_eq!(
            relayed(
                "ssh",
                "ssh: Could not resolve hostname x: Name or service not known"
            ),
            "ssh: Could not resolve hostname x: Name or service not known"
        );
        assert_eq!(
            relayed("ssh", "Permission denied (publickey)."),
            "ssh: Permission denied (publickey)."
        );
        assert_eq!(relayed("ssh", "sshd: no"), "ssh: sshd: no");
    }

    fn file(content: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        f
    }

    /// A pipe whose writing end does not block, as the server's input is.
    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        set_nonblocking(&w).unwrap();
        (File::from(r), File::from(w))
    }

    fn moves_file_data_into_a_pipe(splice: bool) {
        let (mut r, w) = pipe();
        let (mut works, mut buf) = (splice, Vec::new());
        let f = file(b"0123456789");
        let moved = move_file_range(w.as_fd(), &f, 3, 4, &mut works, &mut buf).unwrap();
        assert_eq!(moved, Moved::Bytes(4));
        assert_eq!(works, splice);
        let moved = move_file_range(w.as_fd(), &f, 10, 4, &mut works, &mut buf).unwrap();
        assert_eq!(moved, Moved::File(FileFault::Ended));
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"3456");
    }

    #[test]
    fn file_data_is_spliced_into_the_pipe() {
        moves_file_data_into_a_pipe(true);
    }

    #[test]
    fn file_data_is_copied_where_splice_is_not_possible() {
        moves_file_data_into_a_pipe(false);
    }

    #[test]
    fn a_file_that_cannot_be_read_is_its_own_fault_not_the_pipes() {
        let (_r, w) = pipe();
        let dir = File::open(std::env::temp_dir()).unwrap();
        for splice in [true, false] {
            let (mut works, mut buf) = (splice, Vec::new());
            let moved = move_file_range(w.as_fd(), &dir, 0, 4, &mut works, &mut buf).unwrap();
            assert!(
                matches!(moved, Moved::File(FileFault::Unreadable(_))),
                "{moved:?}"
            );
        }
    }

    #[test]
    fn a_full_pipe_takes_no_more_file_data() {
        let (_r, w) = pipe();
        let (mut works, mut buf) = (true, Vec::new());
        let f = file(&vec![7; 4 << 20]);
        let mut total = 0;
        loop {
            match move_file_range(w.as_fd(), &f, total, 1 << 20, &mut works, &mut buf).unwrap() {
                Moved::Bytes(n) => total += n as u64,
                Moved::PipeFull => break,
                Moved::File(f) => panic!("the file is longer than a pipe holds: {f:?}"),
            }
        }
        assert!(total > 0 && total < 4 << 20, "{total}");
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn ssh_argv_puts_user_options_before_hardened_defaults() {
        let cmd = ServerCommand::Ssh {
            ssh: os(&["ssh", "-F", "/etc/x"]),
            options: os(&["-oBatchMode=no", "-p2222"]),
            user: Some("repo".into()),
            host: "mirror.example.org".into(),
            kept: None,
        };
        let argv = cmd.argv();
        let pos = |s: &str| argv.iter().position(|a| a == s).unwrap();
        assert_eq!(&argv[..3], &os(&["ssh", "-F", "/etc/x"])[..]);
        assert!(pos("-oBatchMode=no") < pos("-oBatchMode=yes"));
        assert!(pos("-oClearAllForwardings=yes") < pos("-l"));
        assert_eq!(
            &argv[argv.len() - 6..],
            &os(&["-l", "repo", "-s", "--", "mirror.example.org", "sftp"])[..]
        );
    }

    #[test]
    fn ssh_argv_without_user_or_command() {
        let cmd = ServerCommand::Ssh {
            ssh: vec![],
            options: vec![],
            user: None,
            host: "h".into(),
            kept: None,
        };
        let argv = cmd.argv();
        assert_eq!(argv[0], "ssh");
        assert!(!argv.iter().any(|a| a.to_string_lossy().contains("Control")));
        assert!(!argv.iter().any(|a| a == "-l"));
        assert_eq!(&argv[argv.len() - 4..], &os(&["-s", "--", "h", "sftp"])[..]);
    }

    #[test]
    fn a_kept_connection_comes_after_the_users_options_so_theirs_win() {
        let cmd = ServerCommand::Ssh {
            ssh: vec![],
            options: os(&["-oControlMaster=no"]),
            user: None,
            host: "h".into(),
            kept: Some(KeptConnection {
                socket_dir: "/run/user/7/out%sftp".into(),
                persist: Duration::from_secs(90),
            }),
        };
        let argv = cmd.argv();
        let pos = |s: &str| argv.iter().position(|a| a == s).unwrap();
        assert!(pos("-oControlMaster=no") < pos("-oControlMaster=auto"));
        assert!(pos("-oControlMaster=auto") < pos("-oBatchMode=yes"));
        assert!(argv.contains(&"-oControlPath=/run/user/7/out%%sftp/%C".into()));
        assert!(argv.contains(&"-oControlPersist=90".into()));
    }

    #[test]
    fn direct_command_is_run_as_given() {
        let cmd = ServerCommand::Direct(os(&["/usr/lib/openssh/sftp-server", "-e"]));
        assert_eq!(cmd.argv(), os(&["/usr/lib/openssh/sftp-server", "-e"]));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = Transport::spawn(&ServerCommand::Direct(os(&["/nonexistent/sftp"])))
            .err()
            .unwrap();
        assert!(err.to_string().contains("cannot run /nonexistent/sftp"));
    }
}
