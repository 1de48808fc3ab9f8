//! Opening and ending the SFTP session of a command, and what the session tells the user
//! about the server once connected. It must not run operations: that is
//! [`super::runner`]'s.

use anyhow::Context;

use crate::config::Settings;
use crate::engine::Engine;
use crate::interrupt::Interrupt;
use crate::transport::ServerCommand;

/// Connects with `connections` connections (the engine may open fewer).
pub(crate) fn connect(
    settings: &Settings,
    connections: usize,
    interrupt: &Interrupt,
) -> anyhow::Result<Engine> {
    let config = settings.engine_config(connections, interrupt);
    Engine::connect(&settings.server, config).context("cannot start an SFTP session")
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
