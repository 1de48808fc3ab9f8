//! The engine: one or more connections to an SFTP server and the single-threaded loop that
//! drives batches of [`Op`]s through them, many requests in flight, every reply checked.
//!
//! `batch` holds the per-operation state machines and `dirs` the directory table; both are
//! sans-IO. This module owns the [`Transport`]s, the one `poll` over all their pipes, and the
//! clock (the stall timeout).

mod batch;
mod dirs;
mod op;
mod reading;

use std::fmt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use batch::Stats;
pub use op::{Cause, Op, OpError, OpResult, Outcome, Req};

use batch::{Batch, Conn, Limits};
use op::Tag;

use crate::interrupt::Interrupt;
use crate::remote_path::RemotePath;
use crate::sftp::session::{ServerInfo, Session};
use crate::sftp::wire::{self, ExtendedRequest, Response};
use crate::transport::{ServerCommand, Slots, Transport, TransportError, Turn, wait};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Remote file handles open at once (per connection).
    pub max_open_files: usize,
    /// Choose the open-file limit from the round trip measured while connecting instead:
    /// [`DEFAULT_MAX_OPEN_FILES`] on a fast link, more the slower it is, so that enough
    /// files are in flight to cover the link's latency.
    pub auto_open_files: bool,
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
    /// Connections to open; [`Engine::run_spread`] uses them all, [`Engine::run`] the first.
    pub connections: usize,
    /// The directory everything goes below (the target directory): missing directories are
    /// made below it, never it or above it.
    pub root: Option<RemotePath>,
    /// With a server known to answer in order (OpenSSH's), send a request right behind one
    /// it depends on (an OPEN behind the MKDIR of its directory) instead of waiting.
    pub pipeline_dependent: bool,
}

/// Default for [`EngineConfig::max_open_files`]; see the README for the measurement.
pub const DEFAULT_MAX_OPEN_FILES: usize = 64;

/// With [`EngineConfig::auto_open_files`]: files added per millisecond of round trip, and
/// the most. Measured (README): on loopback 64 files open are fastest; at 50 ms 256 to 512
/// (1.4-1.6 s for 1004 files), while 1024 stalled now and then (up to 3.6 s).
const OPEN_FILES_PER_MS: usize = 20;
const AUTO_OPEN_FILES_MAX: usize = 512;

/// The open-file limit for a measured round trip.
pub fn open_files_for(rtt: Duration) -> usize {
    let ms = usize::try_from(rtt.as_millis()).unwrap_or(usize::MAX);
    DEFAULT_MAX_OPEN_FILES
        .saturating_add(ms.saturating_mul(OPEN_FILES_PER_MS))
        .min(AUTO_OPEN_FILES_MAX)
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            auto_open_files: false,
            max_requests: 4096,
            window: 8 * 1024 * 1024,
            stall_timeout: Duration::from_secs(120),
            posix_rename: true,
            interrupt: Interrupt::default(),
            connections: 1,
            root: None,
            pipeline_dependent: true,
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

/// One connection: its server process and its conversation.
struct Link {
    transport: Transport,
    conn: Conn,
    info: ServerInfo,
    /// The reply to `limits@openssh.com`, while connecting.
    limits_reply: Option<Response>,
    /// When that request went out and its reply came in: one round trip.
    limits_sent: Option<Instant>,
    rtt: Option<Duration>,
}

/// A connected SFTP client.
pub struct Engine {
    links: Vec<Link>,
    stall_timeout: Duration,
    interrupt: Interrupt,
}

/// How long one poll may sleep, so that the loop looks at the clock regularly (a signal
/// interrupts the sleep at once).
const MAX_POLL_WAIT: Duration = Duration::from_millis(500);

fn transport_error(e: TransportError) -> EngineError {
    EngineError {
        kind: EngineErrorKind::Transport(e),
        in_flight: Vec::new(),
    }
}

impl Engine {
    /// Starts the server command (once per connection, all at the same time), exchanges
    /// versions and learns the server's limits.
    pub fn connect(server: &ServerCommand, config: EngineConfig) -> Result<Engine, EngineError> {
        let limits = Limits {
            max_open_files: config.max_open_files.max(1),
            max_requests: config.max_requests.max(8),
            window: config.window.max(1),
            write_chunk: FALLBACK_WRITE_CHUNK,
            read_chunk: FALLBACK_WRITE_CHUNK,
            serial: false,
            posix_rename: false,
            fsync: false,
            symlink_order: wire::SymlinkOrder::TargetFirst,
        };
        let mut links = Vec::new();
        for _ in 0..config.connections.max(1) {
            links.push(Link {
                transport: Transport::spawn(server).map_err(transport_error)?,
                conn: Conn::new(Session::new(), limits.clone()),
                info: ServerInfo {
                    version: 0,
                    extensions: Vec::new(),
                },
                limits_reply: None,
                limits_sent: None,
                rtt: None,
            });
        }
        let mut engine = Engine {
            links,
            stall_timeout: config.stall_timeout,
            interrupt: config.interrupt.clone(),
        };
        engine.drive(
            |links| links.iter().all(|l| l.conn.session.server_info().is_some()),
            |_| vec!["INIT".to_string()],
        )?;
        for link in &mut engine.links {
            link.info = link.conn.session.server_info().expect("driven").clone();
            let info = &link.info;
            link.conn.limits.posix_rename = config.posix_rename && info.has_posix_rename();
            link.conn.limits.fsync = info.has_fsync();
            link.conn.limits.symlink_order = info.symlink_order();
            link.conn.limits.serial = config.pipeline_dependent && info.is_openssh();
            link.conn.dirs.serial = link.conn.limits.serial;
            link.conn.dirs.base = config.root.clone();
            if info.has_limits() {
                link.conn
                    .session
                    .send_extended(ExtendedRequest::Limits, Tag::Setup(Req::Limits));
                link.limits_sent = Some(Instant::now());
            }
        }
        engine.drive(
            |links| {
                links.iter_mut().all(|l| {
                    while let Some((_, response)) = l.conn.session.poll_reply() {
                        l.limits_reply = Some(response);
                        l.rtt = l.limits_sent.map(|t| t.elapsed());
                    }
                    !l.info.has_limits() || l.limits_reply.is_some()
                })
            },
            |_| vec![Req::Limits.to_string()],
        )?;
        for link in &mut engine.links {
            if config.auto_open_files
                && let Some(rtt) = link.rtt
            {
                link.conn.limits.max_open_files = open_files_for(rtt);
                log::debug!(
                    "round trip {:.1} ms: up to {} files open",
                    rtt.as_secs_f64() * 1000.0,
                    link.conn.limits.max_open_files
                );
            }
            link.apply_limits();
        }
        let first = &engine.links[0];
        log::debug!(
            "{} connection(s); server extensions: {:?}; writes of {} bytes, at most {} files open",
            engine.links.len(),
            first
                .info
                .extensions
                .iter()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>(),
            first.conn.limits.write_chunk,
            first.conn.limits.max_open_files
        );
        Ok(engine)
    }

    /// What the server announced.
    pub fn server_info(&self) -> &ServerInfo {
        &self.links[0].info
    }

    /// Whether renames replace atomically on this connection.
    pub fn atomic_rename(&self) -> bool {
        self.links[0].conn.limits.posix_rename
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.links.len()
    }

    /// Counters summed over the connections (the most files open at once: per connection).
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for link in &self.links {
            let s = link.conn.stats;
            total.files_uploaded += s.files_uploaded;
            total.bytes_uploaded += s.bytes_uploaded;
            total.mkdirs_sent += link.conn.dirs.mkdirs_sent;
            total.max_open_files_seen = total.max_open_files_seen.max(s.max_open_files_seen);
        }
        total
    }

    /// Runs `ops` to completion on the first connection, all at once within the limits.
    /// `on_done` hears of each operation as soon as it has finished (to journal it at once).
    /// An `Err` means the connection is gone; operations not reported to `on_done` have an
    /// unknown fate. After an interrupt, operations not completed fail with
    /// [`Cause::Interrupted`].
    pub fn run(
        &mut self,
        ops: &[Op],
        on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        let mut assignment = vec![Vec::new(); self.links.len()];
        assignment[0] = (0..ops.len()).collect();
        self.run_assigned(ops, assignment, on_done)
    }

    /// As [`Engine::run`], but spread over all connections, balancing the bytes to upload:
    /// for operations that need no order among themselves (one server channel moves at most
    /// its window per round trip; several move several).
    pub fn run_spread(
        &mut self,
        ops: &[Op],
        on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        let assignment = spread(ops, self.links.len());
        self.run_assigned(ops, assignment, on_done)
    }

    fn run_assigned(
        &mut self,
        ops: &[Op],
        assignment: Vec<Vec<usize>>,
        mut on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        let mut batches: Vec<Batch<'_>> = assignment
            .iter()
            .map(|idx| Batch::new(idx.iter().map(|&i| &ops[i]).collect()))
            .collect();
        let mut last_progress = Instant::now();
        loop {
            let mut all_done = true;
            for (k, (link, batch)) in self.links.iter_mut().zip(&mut batches).enumerate() {
                while let Some((tag, response)) = link.conn.session.poll_reply() {
                    batch.on_reply(tag, response, &mut link.conn);
                }
                if self.interrupt.signal().is_some() {
                    batch.interrupt(&mut link.conn);
                }
                batch.advance(&mut link.conn);
                for (i, result) in batch.take_finished() {
                    on_done(assignment[k][i], result);
                }
                all_done &= batch.is_done(&link.conn);
            }
            if all_done {
                break;
            }
            if let Err(kind) = self.turn(&mut last_progress) {
                // Replies that made it before the end still count.
                let mut in_flight = Vec::new();
                for (k, (link, batch)) in self.links.iter_mut().zip(&mut batches).enumerate() {
                    while let Some((tag, response)) = link.conn.session.poll_reply() {
                        batch.on_reply(tag, response, &mut link.conn);
                    }
                    for (i, result) in batch.take_finished() {
                        on_done(assignment[k][i], result);
                    }
                    in_flight.extend(batch.in_flight(&link.conn));
                }
                return Err(EngineError { kind, in_flight });
            }
        }
        let mut results: Vec<Option<OpResult>> = vec![None; ops.len()];
        for (k, batch) in batches.into_iter().enumerate() {
            for (i, result) in batch.into_results().into_iter().enumerate() {
                results[assignment[k][i]] = Some(result);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every operation ran on a connection"))
            .collect())
    }

    /// One `poll` over every connection's pipes; an error when a server is gone or nothing
    /// moved for too long.
    fn turn(&mut self, last_progress: &mut Instant) -> Result<(), EngineErrorKind> {
        let waited = last_progress.elapsed();
        if waited >= self.stall_timeout {
            return Err(EngineErrorKind::Stalled(self.stall_timeout));
        }
        let mut timeout = (self.stall_timeout - waited).min(MAX_POLL_WAIT);
        let mut revents = Vec::new();
        let mut slots: Vec<Slots> = Vec::with_capacity(self.links.len());
        {
            let mut fds = Vec::with_capacity(3 * self.links.len());
            for link in &self.links {
                slots.push(
                    link.transport
                        .register(link.conn.session.wants_write(), &mut fds),
                );
                if link.transport.ending() {
                    timeout = Duration::ZERO;
                }
            }
            if !wait(&mut fds, timeout).map_err(EngineErrorKind::Transport)? {
                return Ok(());
            }
            revents.extend(fds.iter().map(|fd| fd.revents()));
        }
        for (link, slots) in self.links.iter_mut().zip(&slots) {
            match link
                .transport
                .handle(slots, &revents, &mut link.conn.session)
            {
                Ok(Turn::Progress) => *last_progress = Instant::now(),
                Ok(Turn::Idle) => {}
                Err(e) => return Err(EngineErrorKind::Transport(e)),
            }
        }
        Ok(())
    }

    /// Turns the loop until `done` says so (used for set-up exchanges).
    fn drive(
        &mut self,
        mut done: impl FnMut(&mut [Link]) -> bool,
        describe: impl Fn(&[Link]) -> Vec<String>,
    ) -> Result<(), EngineError> {
        let mut last_progress = Instant::now();
        while !done(&mut self.links) {
            self.turn(&mut last_progress).map_err(|kind| EngineError {
                kind,
                in_flight: describe(&self.links),
            })?;
        }
        Ok(())
    }

    /// Ends the conversations cleanly: each server sees end of input once nothing is in
    /// flight (it would drop queued replies otherwise) and exits. Returns the first
    /// connection's exit status.
    pub fn close(self) -> Option<ExitStatus> {
        let mut first = None;
        for (k, link) in self.links.into_iter().enumerate() {
            let status = link.transport.shutdown(Duration::from_secs(5));
            if k == 0 {
                first = status;
            }
        }
        first
    }
}

impl Link {
    fn apply_limits(&mut self) {
        let Some(Response::ExtendedReply(data)) = self.limits_reply.take() else {
            if self.info.has_limits() {
                log::warn!("the server announced limits@openssh.com but did not answer it");
            }
            return;
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
                if l.max_read_len > 0 {
                    let chunk = u32::try_from(l.max_read_len).unwrap_or(u32::MAX);
                    limits.read_chunk = chunk.clamp(FALLBACK_WRITE_CHUNK / 8, MAX_WRITE_CHUNK);
                }
                // Stay below the server's handle limit, keeping a few for other clients.
                if l.max_open_handles > 0 {
                    let cap = usize::try_from(l.max_open_handles).unwrap_or(usize::MAX);
                    limits.max_open_files = limits.max_open_files.min(cap.max(2) - 1);
                }
            }
            Err(e) => log::warn!("ignoring an unreadable limits@openssh.com reply: {e}"),
        }
    }
}

/// Splits operations over `n` connections, largest uploads first to the least loaded one;
/// each connection keeps them in their original order.
fn spread(ops: &[Op], n: usize) -> Vec<Vec<usize>> {
    let cost = |op: &Op| match op {
        Op::Upload { local, .. } => std::fs::metadata(local).map_or(0, |m| m.len()) + 4096,
        _ => 4096,
    };
    let mut by_cost: Vec<(u64, usize)> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| (cost(op), i))
        .collect();
    by_cost.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut load = vec![0u64; n];
    let mut out = vec![Vec::new(); n];
    for (c, i) in by_cost {
        let k = (0..n)
            .min_by_key(|&k| load[k])
            .expect("at least one connection");
        load[k] += c;
        out[k].push(i);
    }
    for list in &mut out {
        list.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_files_are_kept_open_the_longer_the_round_trip() {
        assert_eq!(open_files_for(Duration::from_micros(300)), 64);
        assert_eq!(open_files_for(Duration::from_millis(10)), 264);
        assert_eq!(open_files_for(Duration::from_millis(20)), 464);
        assert_eq!(open_files_for(Duration::from_millis(50)), 512);
        assert_eq!(open_files_for(Duration::from_secs(3)), 512);
    }
}
