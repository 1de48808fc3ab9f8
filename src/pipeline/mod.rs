//! The engine: one connection to an SFTP server and the single-threaded loop that drives
//! batches of [`Op`]s through it, many requests in flight, every reply checked.
//!
//! `batch` holds the per-operation state machines and `dirs` the directory table; both are
//! sans-IO. This module owns the [`Transport`] and the clock (the stall timeout).

mod batch;
mod dirs;
mod op;

use std::fmt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use batch::Stats;
pub use op::{Cause, Op, OpError, OpResult, Outcome, Req};

use batch::{Batch, Conn, Limits};
use op::Tag;

use crate::interrupt::Interrupt;
use crate::sftp::session::{ServerInfo, Session};
use crate::sftp::wire::{self, ExtendedRequest, Response};
use crate::transport::{ServerCommand, Transport, TransportError, Turn};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Remote file handles open at once.
    pub max_open_files: usize,
    /// Requests awaiting a reply at once.
    pub max_requests: usize,
    /// WRITE data bytes awaiting a reply at once.
    pub window: u64,
    /// With no byte moving for this long, give up with an error.
    pub stall_timeout: Duration,
    /// Use `posix-rename@openssh.com` when the server offers it.
    pub posix_rename: bool,
    /// Checked every turn: once it has fired, batches stop (see [`Interrupt`]).
    pub interrupt: Interrupt,
}

/// Default for [`EngineConfig::max_open_files`]; see the README for the measurement.
pub const DEFAULT_MAX_OPEN_FILES: usize = 32;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            max_requests: 1024,
            window: 8 * 1024 * 1024,
            stall_timeout: Duration::from_secs(120),
            posix_rename: true,
            interrupt: Interrupt::default(),
        }
    }
}

/// WRITE size when the server does not announce `limits@openssh.com`: the draft's minimum
/// that every server must accept.
const FALLBACK_WRITE_CHUNK: u32 = 32 * 1024;
/// Never more than this per WRITE, whatever a server announces: the message must stay
/// under OpenSSH's 256 KiB limit.
const MAX_WRITE_CHUNK: u32 = 255 * 1024;

/// The connection failed as a whole; what was in flight is unknown.
#[derive(Debug)]
pub struct EngineError {
    pub kind: EngineErrorKind,
    /// The requests that had no answer, described.
    pub in_flight: Vec<String>,
}

#[derive(Debug)]
pub enum EngineErrorKind {
    Transport(TransportError),
    Stalled(Duration),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EngineErrorKind::Transport(e) => write!(f, "{e}")?,
            EngineErrorKind::Stalled(d) => write!(
                f,
                "no progress for {} seconds: the server or the link is stalled",
                d.as_secs()
            )?,
        }
        if !self.in_flight.is_empty() {
            const SHOWN: usize = 8;
            let shown: Vec<&str> = self
                .in_flight
                .iter()
                .take(SHOWN)
                .map(String::as_str)
                .collect();
            write!(f, "; unanswered: {}", shown.join(", "))?;
            if self.in_flight.len() > SHOWN {
                write!(f, " and {} more", self.in_flight.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for EngineError {}

/// A connected SFTP client.
pub struct Engine {
    transport: Transport,
    conn: Conn,
    info: ServerInfo,
    stall_timeout: Duration,
    interrupt: Interrupt,
}

/// How long one poll may sleep, so that the loop looks at the clock (and, later, at signals)
/// regularly.
const MAX_POLL_WAIT: Duration = Duration::from_millis(500);

impl Engine {
    /// Starts the server command, exchanges versions and learns the server's limits.
    pub fn connect(server: &ServerCommand, config: EngineConfig) -> Result<Engine, EngineError> {
        let transport = Transport::spawn(server).map_err(|e| EngineError {
            kind: EngineErrorKind::Transport(e),
            in_flight: Vec::new(),
        })?;
        let limits = Limits {
            max_open_files: config.max_open_files.max(1),
            max_requests: config.max_requests.max(8),
            window: config.window.max(1),
            write_chunk: FALLBACK_WRITE_CHUNK,
            posix_rename: false,
            fsync: false,
            symlink_order: wire::SymlinkOrder::TargetFirst,
        };
        let mut engine = Engine {
            transport,
            conn: Conn::new(Session::new(), limits),
            info: ServerInfo {
                version: 0,
                extensions: Vec::new(),
            },
            stall_timeout: config.stall_timeout,
            interrupt: config.interrupt.clone(),
        };
        engine.drive(
            |conn| conn.session.server_info().is_some(),
            |_| vec!["INIT".to_string()],
        )?;
        engine.info = engine.conn.session.server_info().expect("driven").clone();
        let info = &engine.info;
        engine.conn.limits.posix_rename = config.posix_rename && info.has_posix_rename();
        engine.conn.limits.fsync = info.has_fsync();
        engine.conn.limits.symlink_order = info.symlink_order();
        if info.has_limits() {
            engine.learn_limits()?;
        }
        log::debug!(
            "server extensions: {:?}; writes of {} bytes, at most {} files open",
            engine
                .info
                .extensions
                .iter()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>(),
            engine.conn.limits.write_chunk,
            engine.conn.limits.max_open_files
        );
        Ok(engine)
    }

    fn learn_limits(&mut self) -> Result<(), EngineError> {
        self.conn
            .session
            .send_extended(ExtendedRequest::Limits, Tag::Setup(Req::Limits));
        let mut reply = None;
        self.drive(
            |conn| {
                while let Some((_, response)) = conn.session.poll_reply() {
                    reply = Some(response);
                }
                reply.is_some()
            },
            |_| vec![Req::Limits.to_string()],
        )?;
        let Some(Response::ExtendedReply(data)) = reply else {
            log::warn!("the server announced limits@openssh.com but did not answer it");
            return Ok(());
        };
        match wire::Limits::decode(&data) {
            Ok(l) => {
                let limits = &mut self.conn.limits;
                if l.max_write_len > 0 {
                    let mut chunk = l.max_write_len;
                    // The whole WRITE message must fit the server's packet limit.
                    if l.max_packet_len > 0 {
                        chunk = chunk.min(l.max_packet_len.saturating_sub(1024));
                    }
                    let chunk = u32::try_from(chunk).unwrap_or(u32::MAX);
                    limits.write_chunk = chunk.clamp(FALLBACK_WRITE_CHUNK / 8, MAX_WRITE_CHUNK);
                }
                // Stay below the server's handle limit, keeping a few for other clients.
                if l.max_open_handles > 0 {
                    let cap = usize::try_from(l.max_open_handles).unwrap_or(usize::MAX);
                    limits.max_open_files = limits.max_open_files.min(cap.max(2) - 1);
                }
            }
            Err(e) => log::warn!("ignoring an unreadable limits@openssh.com reply: {e}"),
        }
        Ok(())
    }

    /// What the server announced.
    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    /// Whether renames replace atomically on this connection.
    pub fn atomic_rename(&self) -> bool {
        self.conn.limits.posix_rename
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.conn.stats;
        stats.mkdirs_sent = self.conn.dirs.mkdirs_sent;
        stats
    }

    /// Runs `ops` to completion, all at once within the limits. `on_done` hears of each
    /// operation as soon as it has finished (to journal it at once). An `Err` means the
    /// connection is gone; operations not reported to `on_done` have an unknown fate.
    /// After an interrupt, operations not completed fail with [`Cause::Interrupted`].
    pub fn run(
        &mut self,
        ops: &[Op],
        mut on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        let mut batch = Batch::new(ops);
        self.drive_batch(&mut batch, &mut on_done)?;
        Ok(batch.into_results())
    }

    fn drive_batch(
        &mut self,
        batch: &mut Batch<'_>,
        on_done: &mut impl FnMut(usize, &OpResult),
    ) -> Result<(), EngineError> {
        let mut last_progress = Instant::now();
        loop {
            while let Some((tag, response)) = self.conn.session.poll_reply() {
                batch.on_reply(tag, response, &mut self.conn);
            }
            if self.interrupt.signal().is_some() {
                batch.interrupt(&mut self.conn);
            }
            batch.advance(&mut self.conn);
            for (i, result) in batch.take_finished() {
                on_done(i, result);
            }
            if batch.is_done(&self.conn) {
                return Ok(());
            }
            if let Err(kind) = self.turn(&mut last_progress) {
                // Replies that made it before the end still count.
                while let Some((tag, response)) = self.conn.session.poll_reply() {
                    batch.on_reply(tag, response, &mut self.conn);
                }
                for (i, result) in batch.take_finished() {
                    on_done(i, result);
                }
                return Err(EngineError {
                    kind,
                    in_flight: batch.in_flight(&self.conn),
                });
            }
        }
    }

    /// One wait on the pipes; an error when the server is gone or nothing moved for too long.
    fn turn(&mut self, last_progress: &mut Instant) -> Result<(), EngineErrorKind> {
        let waited = last_progress.elapsed();
        if waited >= self.stall_timeout {
            return Err(EngineErrorKind::Stalled(self.stall_timeout));
        }
        let wait = (self.stall_timeout - waited).min(MAX_POLL_WAIT);
        match self.transport.turn(&mut self.conn.session, wait) {
            Ok(Turn::Progress) => *last_progress = Instant::now(),
            Ok(Turn::Idle) => {}
            Err(e) => return Err(EngineErrorKind::Transport(e)),
        }
        Ok(())
    }

    /// Turns the loop until `done` says so (used for set-up exchanges).
    fn drive(
        &mut self,
        mut done: impl FnMut(&mut Conn) -> bool,
        describe: impl Fn(&Conn) -> Vec<String>,
    ) -> Result<(), EngineError> {
        let mut last_progress = Instant::now();
        while !done(&mut self.conn) {
            self.turn(&mut last_progress).map_err(|kind| EngineError {
                kind,
                in_flight: describe(&self.conn),
            })?;
        }
        Ok(())
    }

    /// Ends the conversation cleanly: the server sees end of input once nothing is in flight
    /// (it would drop queued replies otherwise) and exits. Returns its exit status.
    pub fn close(self) -> Option<ExitStatus> {
        self.transport.shutdown(Duration::from_secs(5))
    }
}
