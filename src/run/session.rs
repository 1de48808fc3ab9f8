//! Opening and ending the SFTP session of a command, and what the session tells the user
//! about the server once connected. It must not run operations: that is
//! [`super::runner`]'s.

use anyhow::Context;

use crate::config::Settings;
use crate::engine::{Engine, EngineConfig, EntryKind, Op, Outcome, TargetProblem};
use crate::exit::Fatal;
use crate::interrupt::Interrupt;
use crate::transport::ServerCommand;

/// Connects with `connections` connections (the engine may open fewer), and checks the
/// target directory ([`check_target`]). A failed connection is [`ExitStatus::Unreachable`](crate::exit::ExitStatus::Unreachable).
pub(crate) fn connect(
    settings: &Settings,
    connections: usize,
    interrupt: &Interrupt,
) -> Result<Engine, Fatal> {
    let mut engine = open(settings, connections, interrupt)?;
    check_target(&mut engine, settings)?;
    Ok(engine)
}

/// Connects as [`connect`] does, without waiting for the target directory's check: the
/// engine asks for it at set-up, and every operation below a target that is missing or no
/// directory fails with [`Cause::Target`](crate::engine::Cause::Target), before anything
/// is changed; [`target_error`] then says it once. The hook's push saves the round trip so.
pub(crate) fn open(
    settings: &Settings,
    connections: usize,
    interrupt: &Interrupt,
) -> Result<Engine, Fatal> {
    let config = settings.engine_config(connections, interrupt);
    let mut opened = open_all(&[(settings, config)]);
    opened.pop().expect("one engine per mirror")
}

/// Connects to every mirror of `mirrors` (each with its engine's configuration) at once, in
/// one loop ([`Engine::connect_all`]): the slowest handshake is paid, not their sum. Each
/// as [`open`] would.
pub(crate) fn open_all(mirrors: &[(&Settings, EngineConfig)]) -> Vec<Result<Engine, Fatal>> {
    let servers: Vec<_> = mirrors
        .iter()
        .map(|(s, config)| {
            let server = super::kept::keep(&s.server, s.ssh_persist);
            (server, config.clone())
        })
        .collect();
    Engine::connect_all(&servers)
        .into_iter()
        .zip(mirrors)
        .map(|(engine, (settings, _))| {
            engine
                .with_context(|| {
                    format!(
                        "cannot start an SFTP session with {}",
                        server_name(settings)
                    )
                })
                .map_err(Fatal::unreachable)
        })
        .collect()
}

/// The one line that ends a run whose target directory cannot be worked in
/// ([`ExitStatus::Setup`](crate::exit::ExitStatus::Setup): the configuration, or the server,
/// is not ready).
pub(crate) fn target_error(settings: &Settings, problem: &TargetProblem) -> Fatal {
    let target = settings
        .targetdir
        .as_ref()
        .map_or(b".".as_slice(), |t| t.as_bytes());
    let shown = String::from_utf8_lossy(target).into_owned();
    let server = server_name(settings);
    let problem = match problem {
        TargetProblem::Missing => format!(
            "targetdir {shown} does not exist on {server}: create it there (mkdir -p \
             {shown}) and run again"
        ),
        TargetProblem::NotADirectory => format!(
            "targetdir {shown} on {server} is not a directory: set targetdir to the \
             mirror's directory"
        ),
        TargetProblem::Unreadable(why) => format!(
            "cannot check targetdir {shown} on {server} ({why}): check that the SFTP user \
             may reach it"
        ),
    };
    Fatal::setup(anyhow::anyhow!("{problem}; nothing was changed"))
}

/// Makes sure the target directory is a directory on the server before anything is sent:
/// a missing one would otherwise fail every MKDIR below it, one line each. One STAT; its
/// failure ends the run with one line that names the directory ([`ExitStatus::Setup`](crate::exit::ExitStatus::Setup): the
/// configuration, or the server, is not ready). Without `targetdir` the server's start
/// directory is used, which exists.
pub(crate) fn check_target(engine: &mut Engine, settings: &Settings) -> Result<(), Fatal> {
    let Some(target) = &settings.targetdir else {
        return Ok(());
    };
    let ops = [Op::Stat {
        path: target.clone(),
    }];
    let mut results = engine
        .run(&ops, |_, _| {})
        .context("cannot check the target directory")
        .map_err(Fatal::unreachable)?;
    let problem = match results.pop() {
        Some(Ok(Outcome::Kind(EntryKind::Dir))) => return Ok(()),
        Some(Ok(Outcome::AlreadyAbsent)) => TargetProblem::Missing,
        Some(Ok(_)) => TargetProblem::NotADirectory,
        Some(Err(e)) => TargetProblem::Unreadable(e.cause.to_string()),
        None => unreachable!("one operation, one result"),
    };
    Err(target_error(settings, &problem))
}

/// The server, as messages name it: the ssh host, or the command line in quotes.
pub(crate) fn server_name(settings: &Settings) -> String {
    match &settings.server {
        ServerCommand::Ssh { host, .. } => host.to_string_lossy().into_owned(),
        ServerCommand::Direct(_) => {
            let argv: Vec<String> = settings
                .server
                .argv()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            format!("'{}'", argv.join(" "))
        }
    }
}

/// Says that index files will be replaced by remove-then-rename (so that for a moment each
/// is missing on the mirror) when the connection cannot replace them atomically: the hook
/// and `mirror` take the same fallback, and both say so.
pub(crate) fn warn_unless_atomic_renames(engine: &Engine, settings: &Settings) {
    if !engine.atomic_rename() {
        log::warn!(
            "{}: index files are replaced by remove-then-rename, so for a moment each is \
             missing on the mirror",
            if settings.posix_rename {
                "the server does not offer posix-rename@openssh.com"
            } else {
                "posixrename is off"
            }
        );
    }
}

/// Ends the session after a run whose every operation was answered. The exit status then
/// tells nothing about the mirror, and is often not the server's at all: ssh exits 255
/// when the server closes the channel without sending one, as rclone's and asyncssh's
/// servers do after a clean end of input. So it is only logged at debug level.
pub(crate) fn close_quietly(engine: Engine) {
    if let Some(status) = engine.close()
        && !status.success()
    {
        log::debug!("the SFTP server (or ssh) exited with {status} after the session ended");
    }
}
