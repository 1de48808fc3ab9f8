//! The engine: one or more connections to an SFTP server and the single-threaded loop that
//! drives batches of [`Op`]s through them, many requests in flight, every reply checked.
//!
//! What is where:
//! - `op`: what callers ask ([`Op`]) and get back ([`Outcome`], [`OpError`]), in the
//!   engine's own words, not the wire's.
//! - `batch` (uploads and single requests), `reading` (listings, comparisons): the
//!   per-operation state machines; `dirs`, the directory table (each missing directory made
//!   once); `confine`, what is known of where directories really are (no symlink below the
//!   target); `parts`, large uploads cut for several connections. No I/O and no clock.
//! - `local`: the edge to the local disk; every stat, open and read of a local file.
//! - `link`: one connection, its server process and its set-up (VERSION, limits, round
//!   trip); `spread`: work shared out over several connections, large uploads in parts.
//! - `together`: the loop, for one engine or several (one per server): each run kept as a
//!   job of passes, one `poll` over every engine's pipes a turn.
//! - `tuning`: open files, window and connections from the round trip; `deadline`: the
//!   stall timeout and the grace after a signal, decided by a clock passed in.
//!
//! This module owns the connections and each turn's halves around the `poll` (what to wait
//! for, then what moved); `together` runs the poll between them. The clock is read around
//! each poll and handed to what decides by time. Neither knows what an operation's requests
//! are: that is the state machines'.

mod batch;
mod confine;
mod deadline;
mod dirs;
mod link;
mod local;
mod op;
#[cfg(test)]
mod orderings;
mod parts;
#[cfg(test)]
mod peer;
mod reading;
mod spread;
mod symlinks;
mod together;
mod tuning;

use std::fmt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use batch::Stats;
pub use deadline::INTERRUPTED_GRACE;
pub use op::{
    Cause, EntryKind, Op, OpError, OpKind, OpResult, Outcome, Req, Status, TargetProblem,
};
pub use tuning::{DEFAULT_MAX_OPEN_FILES, MULTI_CONNECTION_MIN_RTT, connections_for_bytes};

use batch::Batch;
use deadline::Deadline;
use link::{Link, Setup};
use local::Locals;
use nix::poll::{PollFd, PollFlags};
use op::Tag;
use tuning::{AUTO_OPEN_FILES_MAX, Bucket, local_open_files};

use crate::interrupt::Interrupt;
use crate::remote_path::RemotePath;
use crate::sftp::session::ServerInfo;
use crate::transport::{ServerCommand, Slots, TransportError, Turn};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Remote file handles open at once (per connection).
    pub max_open_files: usize,
    /// Choose the open-file limit from the round trip measured in the first run instead:
    /// [`DEFAULT_MAX_OPEN_FILES`] on a fast link, more the slower it is, so that enough
    /// files are in flight to cover the link's latency.
    pub auto_open_files: bool,
    /// Requests awaiting a reply at once.
    pub max_requests: usize,
    /// WRITE data bytes awaiting a reply at once (per connection).
    pub window: u64,
    /// Choose the window from the measured round trip instead (see [`tuning::window_for`]).
    pub auto_window: bool,
    /// `timeout`: with no byte moving for this long, give up with an error.
    pub timeout: Duration,
    /// Use `posix-rename@openssh.com` when the server offers it.
    pub posix_rename: bool,
    /// Checked every turn: once it has fired, batches stop (see [`Interrupt`]).
    pub interrupt: Interrupt,
    /// Connections to open; [`Engine::run_spread`] uses them all, [`Engine::run`] the first.
    pub connections: usize,
    /// Open the others only if the first one's round trip is at least this long (default
    /// [`MULTI_CONNECTION_MIN_RTT`]).
    pub multi_connection_min_rtt: Duration,
    /// With several connections, uploads of at least two parts of this size go in parts
    /// (default 8 MiB; see [`Engine::run_spread`]).
    pub part_size: u64,
    /// `targetdir`: the directory everything goes below: missing directories are
    /// made below it, never it or above it.
    pub targetdir: Option<RemotePath>,
    /// Rely on a server known to carry out requests in the order sent (OpenSSH's; conf key
    /// `inorder`, [`crate::config::Settings::in_order`]): send a request right behind one it
    /// depends on (an OPEN behind the MKDIR of its directory) instead of waiting. One name
    /// from the conf key down: this, then each connection's `in_order`.
    pub in_order: bool,
    /// `bwlimit`: bytes per second written into the servers' pipes, all connections
    /// together; `None` for no limit.
    pub bwlimit: Option<u64>,
    /// Directories the first run will work in (a hint, never a promise): the first
    /// connection asks where they are right behind INIT, so that the answers come with
    /// VERSION instead of one round trip after it. Anything not named here is asked when an
    /// operation needs it, as always.
    pub first_dirs: Vec<RemotePath>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            auto_open_files: false,
            max_requests: 4096,
            window: 8 * 1024 * 1024,
            auto_window: false,
            timeout: Duration::from_secs(120),
            posix_rename: true,
            interrupt: Interrupt::default(),
            connections: 1,
            multi_connection_min_rtt: MULTI_CONNECTION_MIN_RTT,
            part_size: parts::PART_SIZE,
            targetdir: None,
            in_order: true,
            bwlimit: None,
            first_dirs: Vec::new(),
        }
    }
}

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
    /// Asked to stop by this signal, and the server answered nothing more for
    /// [`INTERRUPTED_GRACE`]: what it had not answered is given up.
    Interrupted(i32),
    /// An earlier run ended in an error with requests in flight: their replies could be
    /// taken for another run's, so nothing more is sent on these connections.
    Broken,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EngineErrorKind::Transport(e) => write!(f, "{e}")?,
            EngineErrorKind::Stalled(d) => write!(
                f,
                "no progress for {} seconds: the server or the link is stalled (raise \
                 'timeout' for a link this slow)",
                d.as_secs()
            )?,
            EngineErrorKind::Broken => write!(
                f,
                "the connection was lost in an earlier step of this run: nothing more is sent \
                 on it"
            )?,
            EngineErrorKind::Interrupted(sig) => write!(
                f,
                "interrupted by {}, and the server answered nothing more for {} seconds",
                crate::interrupt::signal_name(*sig),
                INTERRUPTED_GRACE.as_secs()
            )?,
        }
        let protocol = matches!(
            self.kind,
            EngineErrorKind::Transport(TransportError::Protocol(_))
        );
        if self.in_flight == ["INIT"] && !protocol {
            // Nothing of SFTP happened yet: say what that means before the request's name.
            // (Not after a protocol error: the server did answer, wrongly, and that is said.)
            return write!(
                f,
                "; it never answered as an SFTP server (check that ssh logs in without a \
                 prompt and that the server offers the sftp subsystem; unanswered: INIT)"
            );
        }
        if !self.in_flight.is_empty() {
            const SHOWN: usize = 8;
            let shown: Vec<&str> = self
                .in_flight
                .iter()
                .take(SHOWN)
                .map(String::as_str)
                .collect();
            write!(f, "; requests left unanswered: {}", shown.join(", "))?;
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
    links: Vec<Link>,
    deadline: Deadline,
    interrupt: Interrupt,
    config: EngineConfig,
    server: ServerCommand,
    /// Local files each connection may hold open (see [`local_open_files`]).
    local_files: usize,
    /// Whether more connections were started, or found not worth it.
    more_considered: bool,
    /// The local sources of the run under way (or, from [`Engine::source_sizes`], of the
    /// next), each stat'ed once.
    locals: Locals,
    /// A run ended in an error with requests in flight (see [`EngineErrorKind::Broken`]).
    broken: bool,
    /// Told the file data written so far while uploads run (see [`Engine::watch_bytes`]).
    watch: Option<Watch>,
    /// What `bwlimit` lets the loop write.
    bucket: Option<Bucket>,
    /// Times every connection had sent all it could and waited for a reply, and for how
    /// long (see [`Wire`]); since when they all are waiting now, if they are.
    waits: u64,
    waited: Duration,
    waiting: Option<Instant>,
}

/// What went over the wire so far, all connections together: what a timeline of the run
/// is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wire {
    /// Bytes written into the servers' input, and read from their output.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Times the engine had nothing left to send and waited for replies, and how long
    /// that was in all: the round trips the work depended on (a round of requests that
    /// needs the answers to the one before, a window to refill) and the server's time.
    pub waits: u64,
    pub waited: Duration,
    /// The first connection's round trip, once measured.
    pub rtt: Option<Duration>,
}

impl Wire {
    /// How many round trips the time [`Wire::waited`] is worth: with many requests
    /// answered one after another, waits come in more pieces than the round trips they
    /// add up to.
    pub fn round_trips(&self) -> Option<f64> {
        let rtt = self.rtt.filter(|r| !r.is_zero())?;
        Some(self.waited.as_secs_f64() / rtt.as_secs_f64())
    }
}

/// A callback told [`Engine::bytes_written`] from the loop, at most every [`WATCH_EVERY`].
struct Watch {
    tell: Box<dyn FnMut(u64)>,
    last: Option<Instant>,
}

/// How often the loop tells a watcher of the bytes written: a progress line moves with
/// them without being redrawn more than a few times a second.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// How long a server may take to exit by itself once its input is closed, before it is told
/// to: enough for a local one; ssh would wait a round trip for the remote side (see
/// [`Transport::shutdown`](crate::transport::Transport::shutdown)).
const CLOSE_GRACE: Duration = Duration::from_millis(5);

fn transport_error(e: TransportError) -> EngineError {
    EngineError {
        kind: EngineErrorKind::Transport(e),
        in_flight: Vec::new(),
    }
}

impl Engine {
    /// Starts the server command and exchanges versions. The server's limits and the round
    /// trip are learnt in the first run, whose work does not wait for them. If `connections`
    /// asks for more and the round trip makes them worth it (at least
    /// [`MULTI_CONNECTION_MIN_RTT`]), [`Engine::run_spread`] starts the others then, and they
    /// join while work goes on, taking uploads the others have not started.
    pub fn connect(server: &ServerCommand, config: EngineConfig) -> Result<Engine, EngineError> {
        let mut engines = Engine::connect_all(&[(server.clone(), config)]);
        engines.pop().expect("one engine")
    }

    /// [`Engine::connect`] to each server, all set up in one loop (one `poll` over every
    /// server's pipes a turn): they connect in the time of the slowest. Each has its own
    /// result, in the order given; one that fails does not disturb the others.
    pub fn connect_all(
        servers: &[(ServerCommand, EngineConfig)],
    ) -> Vec<Result<Engine, EngineError>> {
        let mut spawned: Vec<Result<Engine, EngineError>> = servers
            .iter()
            .map(|(server, config)| Engine::spawn(server, config.clone()))
            .collect();
        let failed = {
            let mut engines: Vec<&mut Engine> =
                spawned.iter_mut().filter_map(|r| r.as_mut().ok()).collect();
            together::set_up(&mut engines)
        };
        let mut failed = failed.into_iter();
        for result in &mut spawned {
            let Ok(engine) = result else { continue };
            if let Some(e) = failed.next().expect("one per engine") {
                *result = Err(e);
                continue;
            }
            log::debug!(
                "server extensions: {:?}",
                engine.links[0]
                    .info
                    .extensions
                    .iter()
                    .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                    .collect::<Vec<_>>()
            );
        }
        spawned
    }

    /// An engine with its first server started; INIT is queued.
    fn spawn(server: &ServerCommand, config: EngineConfig) -> Result<Engine, EngineError> {
        let mut engine = Engine {
            links: Vec::new(),
            deadline: Deadline::new(config.timeout),
            interrupt: config.interrupt.clone(),
            local_files: local_open_files(
                config.connections,
                if config.auto_open_files {
                    AUTO_OPEN_FILES_MAX
                } else {
                    config.max_open_files
                },
            ),
            more_considered: config.connections <= 1,
            locals: Locals::default(),
            broken: false,
            watch: None,
            bucket: config.bwlimit.map(|rate| Bucket::new(rate, Instant::now())),
            waits: 0,
            waited: Duration::ZERO,
            waiting: None,
            config,
            server: server.clone(),
        };
        engine.spawn_link().map_err(transport_error)?;
        let first = &mut engine.links[0];
        for dir in &engine.config.first_dirs {
            first
                .conn
                .dirs
                .confine
                .prefetch(dir, &mut first.conn.session);
        }
        Ok(engine)
    }

    /// Starts the connections beyond the first that `connections` allows; their set-up goes
    /// on in the loop.
    fn add_connections(&mut self) {
        while self.links.len() < self.config.connections {
            if let Err(e) = self.spawn_link() {
                log::warn!("cannot start another connection ({e}): going on with fewer");
                break;
            }
        }
    }

    /// Called with the first connection's round trip: more connections only pay where one
    /// channel is bound by its window (see [`MULTI_CONNECTION_MIN_RTT`]).
    fn consider_more_connections(&mut self) {
        let Some(rtt) = self.links[0].rtt.filter(|_| !self.more_considered) else {
            return;
        };
        self.more_considered = true;
        if rtt < self.config.multi_connection_min_rtt {
            log::debug!(
                "round trip under {:?}: one connection is enough",
                self.config.multi_connection_min_rtt
            );
            return;
        }
        log::info!(
            "round trip {:.0} ms: starting {} more connection(s)",
            rtt.as_secs_f64() * 1000.0,
            self.config.connections - 1
        );
        self.add_connections();
    }

    /// Starts one more server command; its set-up goes on in the loop.
    fn spawn_link(&mut self) -> Result<(), TransportError> {
        self.links.push(Link::spawn(&self.server, &self.config)?);
        Ok(())
    }

    /// What the server announced.
    pub fn server_info(&self) -> &ServerInfo {
        &self.links[0].info
    }

    /// Whether renames replace atomically on this connection.
    pub fn atomic_rename(&self) -> bool {
        self.links[0].conn.limits.posix_rename
    }

    /// Why the target directory cannot be worked in, once a connection's STAT of it (sent
    /// at set-up, beside its REALPATH) said so: every operation below it then failed with
    /// [`Cause::Target`], and this says it once.
    pub fn target_problem(&self) -> Option<TargetProblem> {
        self.links
            .iter()
            .find_map(|link| link.conn.dirs.confine.target_problem().cloned())
    }

    /// Whether the server offers `statvfs@openssh.com` ([`Op::Statvfs`]).
    pub fn offers_statvfs(&self) -> bool {
        self.links[0]
            .info
            .extension(crate::sftp::wire::ext::STATVFS)
            .is_some()
    }

    /// Whether the server offers `hardlink@openssh.com` ([`Op::Hardlink`]). It may still
    /// refuse it: `sftp-server -P hardlink` announces it and denies every one.
    pub fn offers_hardlink(&self) -> bool {
        self.links[0].info.has_hardlink()
    }

    /// Whether the server is known to answer (and so to carry out) requests in the order
    /// they were sent, as OpenSSH's does.
    pub fn in_order(&self) -> bool {
        self.links[0].conn.limits.in_order
    }

    /// How many connections are ready for work.
    pub fn connections(&self) -> usize {
        self.links
            .iter()
            .filter(|l| l.setup == Setup::Ready)
            .count()
    }

    /// How many connections are still being set up (they join [`Engine::run_spread`] when
    /// ready).
    pub fn connecting(&self) -> usize {
        self.links.iter().filter(|l| l.is_connecting()).count()
    }

    /// Each connection's counters, in the order they were opened.
    pub fn connection_stats(&self) -> Vec<Stats> {
        self.links
            .iter()
            .map(|l| Stats {
                mkdirs_sent: l.conn.dirs.mkdirs_sent,
                ..l.conn.stats
            })
            .collect()
    }

    /// Counters summed over the connections (the most files open at once: per connection).
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for link in &self.links {
            let s = link.conn.stats;
            total.files_uploaded += s.files_uploaded;
            total.bytes_uploaded += s.bytes_uploaded;
            total.mkdirs_sent += link.conn.dirs.mkdirs_sent;
            total.parts_uploaded += s.parts_uploaded;
            total.max_open_files_seen = total.max_open_files_seen.max(s.max_open_files_seen);
        }
        total
    }

    /// The hidden directories a new tree was being made under when the connections ended,
    /// on every connection ([`dirs::DirTable::stand_ins_left`]): for a later run to remove.
    pub fn stand_ins_left(&self) -> Vec<RemotePath> {
        self.links
            .iter()
            .flat_map(|l| l.conn.dirs.stand_ins_left())
            .collect()
    }

    /// What went over the wire so far ([`Wire`]).
    pub fn wire(&self) -> Wire {
        let mut wire = Wire {
            waits: self.waits,
            waited: self.waited,
            rtt: self.links.first().and_then(|l| l.rtt),
            ..Wire::default()
        };
        for link in &self.links {
            let (out, into) = link.transport.wire_bytes();
            wire.bytes_out += out;
            wire.bytes_in += into;
        }
        wire
    }

    /// File data handed to the servers so far, over all connections: what uploads have
    /// written into the pipes, as they go (a file's bytes count before it is confirmed).
    pub fn bytes_written(&self) -> u64 {
        self.links
            .iter()
            .map(|l| l.transport.file_bytes_written())
            .sum()
    }

    /// Has `tell` hear [`Engine::bytes_written`] while operations run, from the loop, at
    /// most every 200 ms (so a long upload moves a progress line); `None` stops it.
    pub fn watch_bytes(&mut self, tell: Option<Box<dyn FnMut(u64)>>) {
        self.watch = tell.map(|tell| Watch { tell, last: None });
    }

    /// Tells the watcher, if any, of the bytes written, if it has not heard for a while.
    fn tell_watcher(&mut self, now: Instant) {
        let written = self.bytes_written();
        if let Some(watch) = &mut self.watch
            && watch
                .last
                .is_none_or(|t| now.duration_since(t) >= WATCH_EVERY)
        {
            watch.last = Some(now);
            (watch.tell)(written);
        }
    }

    /// The size each upload of `ops` will send (`None` for other operations, and for a
    /// source that cannot be read): each source is stat'ed now, once, and the next run
    /// ([`Engine::run`], [`Engine::run_spread`], [`Engine::run_batch`]) sends, confirms and
    /// counts exactly this; so progress shown by these sizes is what was sent. After that
    /// run, sources are looked at afresh.
    pub fn source_sizes(&mut self, ops: &[Op]) -> Vec<Option<u64>> {
        ops.iter()
            .map(|op| match op {
                Op::Upload { local, .. } => self.locals.size(local),
                Op::UploadPart { range, .. } => Some(range.end - range.start),
                _ => None,
            })
            .collect()
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
        self.run_one(ops, together::Mode::First, on_done)
    }

    /// Runs `ops` the way they allow: spread over the connections ([`Engine::run_spread`])
    /// where every one is an upload, as uploads need no order among themselves; otherwise
    /// in order on the first connection ([`Engine::run`]), which an in-order server carries
    /// out as sent.
    pub fn run_batch(
        &mut self,
        ops: &[Op],
        on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        self.run_one(ops, together::Mode::Batch, on_done)
    }

    /// [`Engine::run_batch`] on several engines (several servers) at once: `ops[i]` on
    /// `engines[i]`, all in one loop with one `poll` over every engine's pipes a turn, each
    /// engine with its own limits, bucket and stall deadline. `on_done` hears of each
    /// operation as it finishes, by engine and operation index. Each engine has its own
    /// result, as [`Engine::run_batch`] gives it: one whose connection fails ends with its
    /// error while the others go on; one with nothing to do is done at once. Panics unless
    /// there is one list of operations per engine.
    pub fn run_together(
        engines: &mut [&mut Engine],
        ops: &[&[Op]],
        on_done: impl FnMut(usize, usize, &OpResult),
    ) -> Vec<Result<Vec<OpResult>, EngineError>> {
        together::run_jobs(engines, ops, together::Mode::Batch, on_done)
    }

    /// One engine's run, the way `mode` says: the loop of [`Engine::run_together`] with
    /// this engine alone.
    fn run_one(
        &mut self,
        ops: &[Op],
        mode: together::Mode,
        mut on_done: impl FnMut(usize, &OpResult),
    ) -> Result<Vec<OpResult>, EngineError> {
        together::run_jobs(&mut [self], &[ops], mode, |_, i, r| on_done(i, r))
            .pop()
            .expect("one engine")
    }

    /// Looks at the local files `ops` upload, before any is opened: what is found, an error
    /// too, is kept for the upload's start.
    fn stat_sources(&mut self, ops: &[Op]) {
        for op in ops {
            if let Op::Upload { local, .. } | Op::UploadPart { local, .. } = op {
                let _ = self.locals.stat(local);
            }
        }
    }

    /// Whether connections hold back work: with several connections, each starts uploads
    /// only while those it has under way have less than a window left to send, and one
    /// that runs out of work takes an operation another has not started, so the load
    /// evens out and connections that come up late find work. Until the round trip has
    /// decided on more connections, the first holds back as well.
    fn holding_back(&self, share_out: bool) -> bool {
        share_out
            && (!self.more_considered
                || self
                    .links
                    .iter()
                    .filter(|l| l.setup == Setup::Ready || l.is_connecting())
                    .count()
                    > 1)
    }

    /// Moves connection `k` on at `now`: its set-up, the replies it has, and what its batch
    /// can start; false if it is not ready for work.
    fn step_link(
        &mut self,
        k: usize,
        batch: &mut Batch<'_>,
        share_out: bool,
        several: bool,
        now: Instant,
    ) -> bool {
        let link = &mut self.links[k];
        if link.is_connecting() {
            if !link.setup_step(&self.config, self.local_files) {
                return false;
            }
            log::debug!("connection {} is ready", k + 1);
        }
        if link.setup != Setup::Ready {
            return false;
        }
        // An extra connection is only of use to work that can be spread.
        if k == 0 || share_out {
            link.ask_limits(now);
        }
        link.conn.hold_back = several;
        link.take_replies(batch, &self.config, self.local_files, now);
        if self.interrupt.signal().is_some() {
            batch.interrupt(&mut link.conn);
        }
        batch.advance(&mut link.conn);
        true
    }

    /// The loop ends on an error: the replies that made it before the end still count;
    /// returns what had no answer.
    fn wind_up(
        &mut self,
        batches: &mut [Batch<'_>],
        assignment: &[Vec<usize>],
        on_done: &mut dyn FnMut(usize, &OpResult),
    ) -> Vec<String> {
        let now = Instant::now();
        let mut in_flight = Vec::new();
        for (k, (link, batch)) in self.links.iter_mut().zip(batches).enumerate() {
            if link.setup != Setup::Ready {
                continue;
            }
            link.take_replies(batch, &self.config, self.local_files, now);
            for (i, result) in batch.take_finished() {
                on_done(assignment[k][i], result);
            }
            in_flight.extend(batch.in_flight(&link.conn));
        }
        in_flight
    }

    /// What may be written in this turn: with `bwlimit`, what the bucket holds (and the
    /// turn wakes when it has more, `timeout` shortened); else no limit.
    fn write_budget(&mut self, timeout: &mut Duration) -> u64 {
        let Some(bucket) = &mut self.bucket else {
            return u64::MAX;
        };
        let budget = bucket.budget(Instant::now());
        if budget == 0 {
            *timeout = (*timeout).min(bucket.wait());
        }
        budget
    }

    /// A turn before its `poll`: how long it may sleep and what it may write; an error
    /// when nothing moved for too long.
    fn before_poll(&mut self, last_progress: Instant) -> Result<(Duration, u64), EngineErrorKind> {
        let signal = self.interrupt.signal();
        let mut timeout = self
            .deadline
            .poll_wait(Instant::now(), last_progress, signal)?;
        let budget = self.write_budget(&mut timeout);
        Ok((timeout, budget))
    }

    /// Adds every connection's pipes to `fds` for the turn's `poll`, writing only with
    /// `budget` left; a transport that is ending makes the poll not wait.
    fn register<'a>(
        &'a self,
        budget: u64,
        fds: &mut Vec<PollFd<'a>>,
        timeout: &mut Duration,
    ) -> Vec<Slots> {
        let mut slots = Vec::with_capacity(self.links.len());
        for link in &self.links {
            if link.setup == Setup::Failed {
                slots.push(Slots::default());
                continue;
            }
            slots.push(
                link.transport
                    .register(budget > 0 && link.conn.session.wants_write(), fds),
            );
            if link.transport.ending() {
                *timeout = Duration::ZERO;
            }
        }
        slots
    }

    /// A turn after its `poll` (at `now`): moves the bytes found ready, at most `allowed`
    /// into the servers; an error when a server is gone.
    fn after_poll(
        &mut self,
        slots: &[Slots],
        revents: &[Option<PollFlags>],
        allowed: u64,
        last_progress: &mut Instant,
        now: Instant,
    ) -> Result<(), EngineErrorKind> {
        let mut budget = allowed;
        let mut moved = false;
        for (k, (link, slots)) in self.links.iter_mut().zip(slots).enumerate() {
            if link.setup == Setup::Failed {
                continue;
            }
            match link.transport.handle(
                slots,
                revents,
                &mut link.conn.session,
                &link.conn.sources,
                &mut budget,
            ) {
                Ok(Turn::Progress) => {
                    *last_progress = now;
                    moved = true;
                    // The round trip ends when the reply is read, not when it is handled.
                    if link.round_trip.awaited()
                        && link
                            .conn
                            .session
                            .pending_replies()
                            .any(|(tag, _)| matches!(tag, Tag::Setup(_)))
                    {
                        link.round_trip.arrived(now);
                    }
                }
                Ok(Turn::Idle) => {}
                // The first connection carries the run; an extra one that fails to come
                // up is done without.
                Err(e) if k > 0 && link.is_connecting() => {
                    log::warn!(
                        "connection {} failed while connecting ({e}): going on without it",
                        k + 1
                    );
                    link.setup = Setup::Failed;
                }
                Err(e) => return Err(EngineErrorKind::Transport(e)),
            }
        }
        if let Some(bucket) = &mut self.bucket {
            bucket.spend(allowed - budget);
        }
        // What was written is what the budget lost.
        self.count_wait(now, budget < allowed, moved);
        Ok(())
    }

    /// Keeps [`Wire::waits`] and [`Wire::waited`] after the turn at `now`, which `wrote`
    /// to the servers, or `moved` bytes either way: the engine waits from a turn that
    /// leaves nothing to send with a reply awaited until one that reads (or sends) again. A
    /// wait after requests were sent is a new round trip; one that goes on after a part of
    /// the replies came is the same one.
    fn count_wait(&mut self, now: Instant, wrote: bool, moved: bool) {
        if let Some(since) = self.waiting
            && moved
        {
            self.waited += now.saturating_duration_since(since);
            self.waiting = None;
        }
        let live = || self.links.iter().filter(|l| l.setup != Setup::Failed);
        let idle = live().all(|l| !l.conn.session.wants_write())
            && live().any(|l| l.conn.session.in_flight() > 0);
        if idle && self.waiting.is_none() {
            if wrote {
                self.waits += 1;
            }
            self.waiting = Some(now);
        }
    }

    /// Ends the conversations once nothing is in flight (a server would drop queued replies
    /// otherwise): each server sees end of input and is then stopped (see
    /// [`Transport::shutdown`](crate::transport::Transport::shutdown)). Returns the first connection's exit status if it exited by
    /// itself.
    pub fn close(self) -> Option<ExitStatus> {
        let mut first = None;
        for (k, link) in self.links.into_iter().enumerate() {
            if link.setup != Setup::Ready {
                // Never used: nothing to finish, it is stopped (by the drop).
                continue;
            }
            let status = link.transport.shutdown(CLOSE_GRACE);
            if k == 0 {
                first = status;
            }
        }
        first
    }
}

/// Connection `k` takes one operation that the connection with the most not started has
/// not started; false when none has any.
fn take_work<'a>(
    k: usize,
    ops: &'a [Op],
    batches: &mut [Batch<'a>],
    assignment: &mut [Vec<usize>],
) -> bool {
    let Some(donor) = (0..batches.len())
        .filter(|&d| d != k && batches[d].unstarted() > 0)
        .max_by_key(|&d| batches[d].unstarted())
    else {
        return false;
    };
    batches[donor].split_off_unstarted(1);
    let g = assignment[donor].pop().expect("assigned");
    batches[k].push(&ops[g]);
    assignment[k].push(g);
    true
}
