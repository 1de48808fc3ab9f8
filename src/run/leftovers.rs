//! The hidden trees a run left on a mirror. A new tree of directories is made under a
//! stand-in name beside its place and renamed into place in one flight (the engine's
//! directory staging); a run whose connection ends between the two (the server killed,
//! the link gone) leaves the stand-in, `.NAME.` and 16 hex digits, which nothing names and
//! nothing else would ever remove. The engine says which it may have left; they are kept
//! here, in the log dir (`outsftphook.leftovers`, `outsftphook.MIRROR.leftovers`), and the
//! next run that reaches the mirror removes them before its push.
//!
//! It owns that file and the removal. It must not look for stand-ins on the server (it
//! knows only what a run of ours recorded) nor remove anything but those directories, and
//! those only where they are empty (RMDIR, deepest first, each confined as any request).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::engine::{Cause, Engine, Op, Status};
use crate::remote_path::RemotePath;

/// Where `settings`' mirror keeps its leftovers.
fn file_in(logdir: &Path, journal_tag: Option<&str>) -> PathBuf {
    logdir.join(match journal_tag {
        None => "outsftphook.leftovers".to_owned(),
        Some(name) => format!("outsftphook.{name}.leftovers"),
    })
}

fn file(settings: &Settings) -> PathBuf {
    file_in(&settings.logdir, settings.journal_tag())
}

/// The directories recorded in `text`, one a line. A line that is no remote path, or no
/// path at or below a stand-in, is passed over: the file is ours, and whatever else is in
/// it is nothing a run of ours wrote and nothing to remove.
fn parse(text: &[u8]) -> Vec<RemotePath> {
    text.split(|&b| b == b'\n')
        .filter(|line| line.split(|&b| b == b'/').any(is_stand_in))
        .filter_map(|line| RemotePath::new(line.to_vec()).ok())
        .collect()
}

/// Whether `name` is a stand-in's: `.NAME.` and 16 hex digits.
fn is_stand_in(name: &[u8]) -> bool {
    let Some(hex) = name.len().checked_sub(16).map(|at| &name[at..]) else {
        return false;
    };
    name.len() > 18
        && name[0] == b'.'
        && name[name.len() - 17] == b'.'
        && hex.iter().all(u8::is_ascii_hexdigit)
}

fn render(dirs: &[RemotePath]) -> Vec<u8> {
    let mut text = Vec::new();
    for dir in dirs.iter().filter(|d| !d.as_bytes().contains(&b'\n')) {
        text.extend_from_slice(dir.as_bytes());
        text.push(b'\n');
    }
    text
}

/// Writes `dirs` as the leftovers of `settings`' mirror, whole (none: no file). A file
/// lost to a crash leaves some hidden directories on the mirror, nothing worse: it is
/// renamed into place but not synced.
fn save(settings: &Settings, dirs: &[RemotePath]) -> io::Result<()> {
    let path = file(settings);
    if dirs.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let temporary = path.with_extension("leftovers.new");
    fs::write(&temporary, render(dirs))?;
    fs::rename(&temporary, &path)
}

/// Adds what `engine` may have left on `settings`' mirror to its leftovers. Said, not
/// failed, where the file cannot be written: the push's own outcome is what counts.
pub(crate) fn record(settings: &Settings, engine: &Engine) {
    let left = engine.stand_ins_left();
    if left.is_empty() {
        return;
    }
    let path = file(settings);
    let mut dirs = fs::read(&path).map_or_else(|_| Vec::new(), |t| parse(&t));
    for dir in left {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    log::info!(
        "{} hidden director(y/ies) of a new tree may be left on the mirror; the next run removes them",
        dirs.len()
    );
    if let Err(e) = save(settings, &dirs) {
        log::warn!(
            "cannot write {}: {e}; the hidden directory {} stays on the mirror (remove it by hand)",
            path.display(),
            dirs.last().expect("some")
        );
    }
}

/// Removes the leftovers of `settings`' mirror through `engine`, deepest first, before a
/// push. One that is gone is forgotten; one the server will not remove (not empty: someone
/// put something there) is said once and forgotten too, for the administrator to judge.
/// A lost connection is left to the push to report; what was not removed is kept.
pub(crate) fn remove(settings: &Settings, engine: &mut Engine) {
    let path = file(settings);
    let dirs = match fs::read(&path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => return log::warn!("cannot read {}: {e}", path.display()),
    };
    let ops: Vec<Op> = dirs.iter().map(|d| Op::Rmdir { path: d.clone() }).collect();
    let Ok(results) = engine.run(&ops, |_, _| {}) else {
        return;
    };
    let mut kept = Vec::new();
    for (dir, result) in dirs.into_iter().zip(results) {
        match result {
            Ok(_) => log::info!("{dir}: removed, left by an earlier run"),
            Err(e) if e.status() == Some(Status::NoSuchFile) => {}
            Err(e) if e.cause == Cause::Interrupted => kept.push(dir),
            Err(e) => log::warn!(
                "{dir}: left by an earlier run while it made a new tree, not removed: {e}; \
                 remove it by hand if nothing of yours is in it"
            ),
        }
    }
    if let Err(e) = save(settings, &kept) {
        log::warn!("cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RemotePath {
        RemotePath::new(s.as_bytes().to_vec()).unwrap()
    }

    const HEX: &str = "0123456789abcdef";

    #[test]
    fn directories_are_kept_a_line_each_and_read_back_in_order() {
        let dirs = vec![
            rp(&format!("pool/main/.a.{HEX}/a")),
            rp(&format!("/srv/m/.b.{HEX}")),
        ];
        assert_eq!(parse(&render(&dirs)), dirs);
    }

    #[test]
    fn only_stand_ins_and_what_is_below_them_are_read() {
        let text = format!("\n\npool/.x.{HEX}\n/etc\npool/main\npool/.x.{HEX}x\n.{HEX}\n");
        assert_eq!(parse(text.as_bytes()), vec![rp(&format!("pool/.x.{HEX}"))]);
    }

    #[test]
    fn each_mirror_has_a_file_of_its_own() {
        let logs = Path::new("/r/logs");
        assert_eq!(
            file_in(logs, None),
            Path::new("/r/logs/outsftphook.leftovers")
        );
        assert_eq!(
            file_in(logs, Some("b")),
            Path::new("/r/logs/outsftphook.b.leftovers")
        );
    }
}
