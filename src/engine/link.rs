//! One connection: its server process ([`Transport`]), its conversation ([`Conn`]) and its
//! set-up: INIT with the target directory's checks right behind it, VERSION, then the limits (or a REALPATH where the server has none), whose round
//! trip sets the automatic settings (see [`super::tuning`]).
//!
//! It owns nothing of the work: replies other than its set-up's go to the batch it is given.
//! No clock read here: the times are passed in.

use std::time::{Duration, Instant};

use super::EngineConfig;
use super::batch::{Batch, Conn, Limits};
use super::op::{Req, Tag};
use super::symlinks::SymlinkTrust;
use super::tuning::{PROVISIONAL_OPEN_FILES, RoundTrip, WINDOW_MIN, open_files_for, window_for};
use crate::sftp::session::{ServerInfo, Session};
use crate::sftp::wire::{self, ExtendedRequest, Request, Response};
use crate::transport::{ServerCommand, Transport, TransportError};

/// WRITE size when the server does not announce `limits@openssh.com`: the draft's minimum
/// that every server must accept.
const FALLBACK_WRITE_CHUNK: u32 = 32 * 1024;
/// Never more than this per WRITE, whatever a server announces: the message must stay
/// under OpenSSH's 256 KiB limit.
const MAX_WRITE_CHUNK: u32 = 255 * 1024;

/// Where a connection is in its set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    /// INIT sent, waiting for VERSION.
    Version,
    /// Working; its limits may still be on their way (see [`Link::round_trip`]).
    Ready,
    /// An extra connection that failed before it was ready: the others go on without it.
    Failed,
}

/// One connection: its server process and its conversation.
pub(crate) struct Link {
    pub(crate) transport: Transport,
    pub(crate) conn: Conn,
    pub(crate) info: ServerInfo,
    pub(crate) setup: Setup,
    /// The set-up request's round trip, while it is measured.
    pub(crate) round_trip: RoundTrip,
    /// The set-up request is still to be sent.
    limits_due: bool,
    pub(crate) rtt: Option<Duration>,
}

impl Link {
    /// Starts the server command; INIT is queued, the set-up goes on in the loop.
    pub(crate) fn spawn(
        server: &ServerCommand,
        config: &EngineConfig,
    ) -> Result<Link, TransportError> {
        let limits = Limits {
            max_open_files: config.max_open_files.max(1),
            max_requests: config.max_requests.max(8),
            window: config.window.max(1),
            write_chunk: FALLBACK_WRITE_CHUNK,
            read_chunk: FALLBACK_WRITE_CHUNK,
            in_order: false,
            posix_rename: false,
            fsync: false,
            set_times: true,
            times_by_path: false,
            symlink_order: wire::SymlinkOrder::TargetFirst,
            symlinks: SymlinkTrust::Unknown,
        };
        let mut conn = Conn::new(Session::new(), limits);
        conn.dirs.base = config.targetdir.clone();
        // Where the target directory really is, asked right behind INIT, before any work:
        // its reply comes back with VERSION, before any operation needs it (see
        // [`confine`](super::confine)). No request depends on what VERSION says.
        conn.dirs.confine.base = config.targetdir.clone();
        conn.dirs.confine.ask_root(&mut conn.session);
        Ok(Link {
            transport: Transport::spawn(server)?,
            conn,
            info: ServerInfo {
                version: 0,
                extensions: Vec::new(),
            },
            setup: Setup::Version,
            round_trip: RoundTrip::default(),
            limits_due: false,
            rtt: None,
        })
    }

    pub(crate) fn is_connecting(&self) -> bool {
        self.setup == Setup::Version
    }

    /// Hands the replies that have arrived to `batch`, and the set-up reply to
    /// [`Link::on_limits`].
    pub(crate) fn take_replies(
        &mut self,
        batch: &mut Batch<'_>,
        config: &EngineConfig,
        local_files: usize,
        now: Instant,
    ) {
        batch.note_failed_files(&mut self.conn);
        while let Some((tag, response)) = self.conn.session.poll_reply() {
            match tag {
                Tag::Setup(req) => self.on_limits(req, response, config, local_files, now),
                tag => batch.on_reply(tag, response, &mut self.conn),
            }
        }
    }

    /// Moves the set-up on with what has arrived; true once the link is ready. Work starts
    /// on VERSION: until the first run has measured the round trip (see
    /// [`Link::ask_limits`]), at most [`PROVISIONAL_OPEN_FILES`] files are opened and an
    /// automatic window is the smallest.
    pub(crate) fn setup_step(&mut self, config: &EngineConfig, local_files: usize) -> bool {
        if self.setup != Setup::Version {
            return self.setup == Setup::Ready;
        }
        let Some(info) = self.conn.session.server_info() else {
            return false;
        };
        self.info = info.clone();
        let (info, limits) = (&self.info, &mut self.conn.limits);
        limits.posix_rename = config.posix_rename && info.has_posix_rename();
        limits.fsync = info.has_fsync();
        limits.symlink_order = info.symlink_order();
        limits.symlinks = symlinks_known(info);
        limits.in_order = config.in_order && info.is_openssh();
        limits.max_open_files = limits
            .max_open_files
            .min(PROVISIONAL_OPEN_FILES)
            .min(local_files);
        if config.auto_window {
            limits.window = WINDOW_MIN;
        }
        self.conn.dirs.in_order = limits.in_order;
        // Before any reply to the confinement's requests is read: they are taken only once
        // the link is ready.
        self.conn.dirs.confine.realpath_resolves_links = self.info.has_limits();
        self.limits_due = true;
        self.setup = Setup::Ready;
        true
    }

    /// Whether the set-up is done: VERSION is in ([`Link::setup_step`]), and so are the
    /// answers to what was asked behind INIT (the target directory's and the first
    /// directories' checks, which come in VERSION's flight): the first run then starts
    /// knowing which directories are missing, and makes their new trees in its first
    /// flight.
    pub(crate) fn set_up(&mut self, config: &EngineConfig, local_files: usize) -> bool {
        self.setup_step(config, local_files) && self.conn.session.in_flight() == 0
    }

    /// Sends the set-up request if it is still due: the limits, or where the server does
    /// not offer them a REALPATH of ".", which every server answers. That is left to the
    /// start of the first run, where its reply is read as soon as it comes: it measures the
    /// round trip.
    pub(crate) fn ask_limits(&mut self, now: Instant) {
        if !std::mem::take(&mut self.limits_due) {
            return;
        }
        if self.info.has_limits() {
            self.conn
                .session
                .send_extended(ExtendedRequest::Limits, Tag::Setup(Req::Limits));
        } else {
            self.conn.session.send(
                Request::Realpath {
                    path: b".".to_vec(),
                },
                Tag::Setup(Req::Realpath),
            );
        }
        self.round_trip.sent(now);
    }

    /// The set-up reply: the round trip it took sets the automatic settings, the server's
    /// limits (if it has them) cap them.
    fn on_limits(
        &mut self,
        req: Req,
        reply: Response,
        config: &EngineConfig,
        local_files: usize,
        now: Instant,
    ) {
        let Some(rtt) = self.round_trip.end(now) else {
            return;
        };
        self.rtt = Some(rtt);
        let limits = &mut self.conn.limits;
        limits.max_open_files = if config.auto_open_files {
            open_files_for(rtt)
        } else {
            config.max_open_files.max(1)
        };
        if config.auto_window {
            limits.window = window_for(rtt);
        }
        if req == Req::Limits {
            self.apply_limits(reply);
        }
        let limits = &mut self.conn.limits;
        limits.max_open_files = limits.max_open_files.min(local_files);
        log::debug!(
            "round trip {:.1} ms: up to {} files open, {} KiB unanswered, writes of {} bytes",
            rtt.as_secs_f64() * 1000.0,
            limits.max_open_files,
            limits.window / 1024,
            limits.write_chunk
        );
    }

    fn apply_limits(&mut self, reply: Response) {
        let Response::ExtendedReply(data) = reply else {
            log::warn!("the server announced limits@openssh.com but did not answer it");
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

/// What a server's kind says of how it reads SYMLINK: OpenSSH's own order, or Green End's
/// (which says it follows the draft); any other is probed ([`super::symlinks`]).
pub(super) fn symlinks_known(info: &ServerInfo) -> SymlinkTrust {
    if info.is_openssh() || info.symlink_order() == wire::SymlinkOrder::LinkFirst {
        SymlinkTrust::Known
    } else {
        SymlinkTrust::Unknown
    }
}
