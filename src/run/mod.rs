//! The commands: the hook ([`hook`]), `mirror` and `verify` ([`mirror`]), `status`
//! ([`status`]). Each reads the repository side, asks [`crate::plan`] what to do, and drives
//! that through the [`crate::engine`], reporting progress and a summary.
//!
//! What they share: one run loop (`runner`: results judged as they come, failures said,
//! progress, interrupts, emptied directories), one comparison pass of local and remote
//! trees (`sync`, for `mirror` and the hook's copies of suite links), the session's
//! edges (`session`), putting back a distribution's finalisation that failed half-way
//! (`guard`), the answer to a server that refuses symlinks (`links`), the
//! deletions held back (`deletions`), and the one place that prints (`output`). No
//! command module imports another.

mod deletions;
mod guard;
pub mod hook;
mod kept;
mod leftovers;
mod links;
pub mod mirror;
pub(crate) mod output;
pub mod remote_tree;
mod runner;
mod session;
pub mod status;
mod sync;
mod timeline;

pub(crate) use output::show;

/// Runs `one` (`mirror`, `verify`) on every mirror of `mirrors` in turn; true when one
/// found something failed or different. With several, each mirror's part is headed by
/// its name, and one that cannot be reached is said and counted, while the others go on.
pub fn each_mirror(
    mirrors: &[crate::config::Settings],
    mut one: impl FnMut(&crate::config::Settings) -> Result<bool, crate::exit::Fatal>,
) -> Result<bool, crate::exit::Fatal> {
    if let [only] = mirrors
        && only.mirrors_configured == 1
    {
        return one(only);
    }
    let mut failed = false;
    for settings in mirrors {
        show(&format!("mirror {}:", settings.mirror.name));
        match one(settings) {
            Ok(f) => failed |= f,
            Err(e) => {
                output::tell(&format!("mirror {}: {:#}", settings.mirror.name, e.error));
                failed = true;
            }
        }
    }
    Ok(failed)
}
