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
mod links;
pub mod mirror;
pub(crate) mod output;
pub mod remote_tree;
mod runner;
mod session;
pub mod status;
mod sync;

pub(crate) use output::show;

/// The name the journal lines and the record of held deletions of `settings`' mirror
/// carry: `None` for the first mirror (the reference hook's `DONE` lines).
pub(crate) fn journal_tag(settings: &crate::config::Settings) -> Option<&str> {
    settings.mirror.journal_tag.as_deref()
}

/// The name of `settings`' mirror, as `--only` and the messages name it.
pub(crate) fn mirror_name(settings: &crate::config::Settings) -> String {
    settings.mirror.name.clone()
}

/// Whether the mirrors switch together (`switch together`, the default).
pub(crate) fn switch_together(settings: &crate::config::Settings) -> bool {
    settings.switch == crate::config::Switch::Together
}

/// How many mirrors the configuration of `settings` has, selected or not.
pub(crate) fn configured_mirrors(settings: &crate::config::Settings) -> usize {
    settings.mirrors_configured
}

/// `tracefile NAME` of `settings`' mirror.
pub(crate) fn tracefile(settings: &crate::config::Settings) -> Option<&str> {
    settings.tracefile.as_deref()
}

/// Runs `one` (`mirror`, `verify`) on every mirror of `mirrors` in turn; true when one
/// found something failed or different. With several, each mirror's part is headed by
/// its name, and one that cannot be reached is said and counted, while the others go on.
pub fn each_mirror(
    mirrors: &[crate::config::Settings],
    mut one: impl FnMut(&crate::config::Settings) -> Result<bool, crate::exit::Fatal>,
) -> Result<bool, crate::exit::Fatal> {
    if let [only] = mirrors
        && configured_mirrors(only) == 1
    {
        return one(only);
    }
    let mut failed = false;
    for settings in mirrors {
        show(&format!("mirror {}:", mirror_name(settings)));
        match one(settings) {
            Ok(f) => failed |= f,
            Err(e) => {
                output::tell(&format!("mirror {}: {:#}", mirror_name(settings), e.error));
                failed = true;
            }
        }
    }
    Ok(failed)
}
