//! `mirror` and `verify`: the whole local repository against the whole remote one, without
//! outlogs. `mirror` changes the remote in the hook's safe order (pool, then each
//! distribution's files as `.new` renamed into place with `Release`/`InRelease` last, a
//! distribution whose renames fail half-way put back as it was, then deletions); `verify`
//! only reports.
//!
//! It owns the commands' edges: the tops, the refusal of an empty local side, the
//! connection, the summary and `verify`'s advice. The passes themselves are
//! `run::sync`'s; it must not journal (no outlog is involved) nor touch the hook.

use std::time::Instant;

use anyhow::Context;

use crate::config::{Settings, Symlinks};
use crate::engine::Engine;
use crate::exit::{ExitStatus, Fatal};
use crate::interrupt::Interrupt;
use crate::plan::tree::{self, Difference, Node, Tree};
use crate::relpath::RelPath;
use crate::repo::lock::{self, BusyError, RunLock};
use crate::repo::scan;
use crate::run::deletions::Deletions;
use crate::run::leftovers;
use crate::run::output::{show, summary, tell, tell_summary};
use crate::run::runner::Runner;
use crate::run::session::{close_quietly, connect};
use crate::run::sync::{self, Start, command_line};
pub use crate::run::sync::{MirrorOptions, MirrorReport};

/// The top directories to work on: those given, or `pool` and `dists`.
pub fn tops(dirs: &[String]) -> anyhow::Result<Vec<RelPath>> {
    if dirs.is_empty() {
        return Ok(vec![
            RelPath::new("pool").expect("valid"),
            RelPath::new("dists").expect("valid"),
        ]);
    }
    dirs.iter()
        .map(|d| {
            RelPath::new(d.trim_end_matches('/'))
                .with_context(|| format!("{d}: not a directory inside the repository"))
        })
        .collect()
}

/// The tops that are missing locally, or directories with nothing in them.
fn empty_tops<'a>(local: &Tree, tops: &'a [RelPath]) -> Vec<&'a RelPath> {
    tops.iter()
        .filter(|top| match local.get(*top) {
            None => true,
            Some(Node::Dir) => {
                let below = format!("{top}/");
                !local.keys().any(|k| k.text().starts_with(&below))
            }
            Some(_) => false,
        })
        .collect()
}

/// Refuses, before anything is sent, a mirror whose local side looks like a mistake (a
/// wrong base or out dir): with `--delete` it would empty the remote. With `--delete` every
/// top must have something in it; without, at least one.
fn check_tops(
    local: &Tree,
    tops: &[RelPath],
    settings: &Settings,
    delete: bool,
) -> Result<(), Fatal> {
    let empty = empty_tops(local, tops);
    if empty.is_empty() || (!delete && empty.len() < tops.len()) {
        return Ok(());
    }
    let names: Vec<String> = empty.iter().map(|t| t.to_string()).collect();
    let consequence = if delete {
        "mirror --delete would remove everything below it on the remote"
    } else {
        "there is nothing to mirror"
    };
    Err(Fatal::setup(anyhow::anyhow!(
        "{}: missing or empty in {}: {consequence}; nothing was sent. Check --basedir and \
         --outdir (or name the directories to mirror)",
        names.join(", "),
        settings.outdir.display()
    )))
}

/// Refuses directories named on the command line that are not directories in the out
/// dir: a typo would otherwise mirror (or verify) nothing and say all is well.
fn check_named_tops(local: &Tree, tops: &[RelPath], settings: &Settings) -> Result<(), Fatal> {
    if sync::tops_are_default(tops) {
        return Ok(());
    }
    let missing: Vec<String> = tops
        .iter()
        .filter(|top| !matches!(local.get(*top), Some(Node::Dir)))
        .map(|t| t.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Fatal::setup(anyhow::anyhow!(
        "{}: no such directory in {}; nothing was sent. Name directories of the repository \
         (pool, dists, or one below them), or check --basedir and --outdir",
        missing.join(", "),
        settings.outdir.display()
    )))
}

/// The local tops, refused where one named is missing, or where `--delete` would empty
/// one on the remote.
fn scan_tops(settings: &Settings, tops: &[RelPath], delete: bool) -> Result<Tree, Fatal> {
    let scanned = scan::scan_local(&settings.outdir, tops)?;
    check_named_tops(&scanned, tops, settings)?;
    check_tops(&scanned, tops, settings, delete)?;
    Ok(scanned)
}

/// The bytes of the files of `tree`.
fn bytes_of(tree: &Tree) -> u64 {
    tree.values()
        .map(|n| match n {
            Node::File { size, .. } => *size,
            _ => 0,
        })
        .sum()
}

/// Makes the remote equal to the local tops.
pub fn mirror(
    settings: &Settings,
    tops: &[RelPath],
    options: &MirrorOptions,
    interrupt: &Interrupt,
) -> Result<MirrorReport, Fatal> {
    let started = Instant::now();
    settings.check_dirs(false).map_err(Fatal::setup)?;
    let (_lock, mut deletions) = held_deletions(settings, options.dry_run, interrupt)?;
    let scanned = scan_tops(settings, tops, options.delete)?;
    let connections =
        crate::engine::connections_for_bytes(bytes_of(&scanned), settings.connections);
    // With several mirrors, each summary names its mirror.
    let what = match settings.mirrors_configured {
        1 => "mirror: ".to_owned(),
        _ => format!("mirror {}: ", settings.mirror.name),
    };
    let say_summary = |report: &MirrorReport| {
        let line = summary(&what, &report.tally, report.failures, started);
        tell_summary(&line, report.failures)
    };
    // Every run that got this far ends with a summary: one that could not connect, or
    // was cut off, too (the error follows it).
    let mut engine = connect(settings, connections, interrupt).inspect_err(|e| {
        // Unless the target is not there: its one line says all.
        if !options.dry_run && e.status != ExitStatus::Setup {
            say_summary(&MirrorReport {
                failures: 1,
                ..MirrorReport::default()
            });
        }
    })?;
    if !options.dry_run {
        leftovers::remove(settings, &mut engine);
    }
    let start = Start {
        copying: settings.symlinks == Symlinks::Copy,
        renames_warned: false,
        changed: &Default::default(),
        held: Some(&deletions),
        guarded: true,
    };
    let (mut report, synced) = sync::sync(
        &mut engine,
        settings,
        tops,
        options,
        interrupt,
        scanned,
        start,
    );
    if !options.dry_run {
        leftovers::record(settings, &engine);
    }
    let conflicts = match synced {
        Ok(conflicts) => conflicts,
        Err(e) if e.status == ExitStatus::Setup => {
            engine.close();
            return Err(e);
        }
        Err(e) => {
            if !options.dry_run {
                say_summary(&report);
            }
            return Err(e);
        }
    };
    if options.dry_run {
        engine.close();
        for path in deletions.due() {
            show(&format!("remove {path} (its held deletion is due)"));
        }
        return Ok(report);
    }
    // The held deletions now due go with this run, as with every run.
    if let Err(e) = carry_out_due(
        &mut engine,
        &mut deletions,
        settings,
        interrupt,
        &mut report,
    ) {
        say_summary(&report);
        return Err(Fatal::from(e));
    }
    close_quietly(engine);
    // Conflicts were reported up front; they do not stop the rest, but the run failed.
    report.failures += conflicts;
    say_summary(&report);
    Ok(report)
}

/// Removes the held files whose deletion is due (see [`Deletions::carry_out`]), counted in
/// `report`.
fn carry_out_due(
    engine: &mut Engine,
    deletions: &mut Deletions,
    settings: &Settings,
    interrupt: &Interrupt,
    report: &mut MirrorReport,
) -> anyhow::Result<()> {
    let mut runner = Runner::new(engine, interrupt, 0, 0);
    let carried = deletions.carry_out(
        &mut runner,
        settings.targetdir.as_ref(),
        settings.keepdirectories,
        settings.verbose > 0,
    );
    runner.finish();
    report.failures += runner.failures();
    report.tally.add(&runner.tally());
    carried
}

/// The deletions held back, for `mirror`: under the run lock (a hook run may be changing
/// them) when the log dir exists and something may be written; read only on a dry run.
fn held_deletions(
    settings: &Settings,
    dry_run: bool,
    interrupt: &Interrupt,
) -> Result<(Option<RunLock>, Deletions), Fatal> {
    if dry_run || !settings.logdir.is_dir() {
        return Ok((None, Deletions::read(settings).map_err(Fatal::setup)?));
    }
    let deadline = Instant::now() + settings.lock_timeout;
    let lock = lock::acquire_until(&settings.logdir, deadline, settings.lock_timeout, interrupt)
        .map_err(|error| {
            let status = if error.is::<BusyError>() {
                ExitStatus::Busy
            } else {
                ExitStatus::Setup
            };
            Fatal { status, error }
        })?;
    Ok((Some(lock), Deletions::load(settings).map_err(Fatal::setup)?))
}

/// Compares the remote with the local tops; returns how many differences it printed.
pub fn verify(
    settings: &Settings,
    tops: &[RelPath],
    checksum: bool,
    interrupt: &Interrupt,
) -> Result<usize, Fatal> {
    settings.check_dirs(false).map_err(Fatal::setup)?;
    let mut local = scan::scan_local(&settings.outdir, tops)?;
    check_named_tops(&local, tops, settings)?;
    let deletions = Deletions::read(settings).map_err(Fatal::setup)?;
    let mut engine = connect(settings, 1, interrupt)?;
    // What stops the remote being read is not a difference: verify says so apart (3),
    // unless a signal stopped it (1, as every run a signal stops).
    let unread = |e: anyhow::Error| match interrupt.signal() {
        Some(_) => Fatal::from(e),
        None => Fatal::unreachable(e),
    };
    let mut remote =
        crate::run::remote_tree::scan_remote(&mut engine, settings.targetdir.as_ref(), tops)
            .map_err(unread)?;
    sync::follow_copied_links(&mut local, &remote, settings, false)?;
    tree::reconcile_links(&local, &mut remote, settings.targetdir.as_ref());
    let mut differences = tree::diff(&local, &remote);
    let held = deletions.leave_out(&mut differences).len();
    let mut compared = 0;
    if checksum {
        let same = sync::same_files(&local, &remote);
        compared = same.len();
        let compared_contents =
            sync::compare_contents(&mut engine, settings, &same, interrupt).map_err(unread)?;
        for (path, error) in compared_contents {
            if let Some(e) = error {
                return Err(unread(
                    anyhow::Error::new(e).context("cannot compare contents"),
                ));
            }
            differences.push((path, Difference::Content));
        }
        differences.sort_by(|a, b| a.0.cmp(&b.0));
    }
    engine.close();
    for (path, difference) in &differences {
        show(&format!("{path}: {difference}"));
    }
    let files = local
        .values()
        .filter(|n| matches!(n, Node::File { .. }))
        .count();
    let links = local.values().filter(|n| n.is_link()).count();
    // Held files are on the remote by design: said, not counted as differences.
    let held = match held {
        0 => String::new(),
        n => format!(
            "; it also keeps {n} file(s) the repository no longer has, held back for apt \
             clients until keepdeleted has passed ('status -v' says when each goes)"
        ),
    };
    if differences.is_empty() {
        tell(&format!(
            "verify: the remote matches ({files} files, {links} symlinks{}){held}",
            if checksum {
                format!(", {compared} compared byte for byte")
            } else {
                String::new()
            }
        ));
    } else {
        tell(&format!(
            "verify: {} difference(s); {}",
            differences.len(),
            advice(&differences, tops)
        ));
    }
    tell_pending(settings);
    Ok(differences.len())
}

/// Says so when outlogs are pending: what they change is not on the remote yet, which a
/// difference may be, and `--pending` is what brings it (not `mirror`).
fn tell_pending(settings: &Settings) {
    let Ok(pending) = crate::repo::logs::pending_in(&settings.logdir) else {
        return;
    };
    if !pending.is_empty() {
        tell(&format!(
            "verify: {} outlog(s) are pending: what they change is not on the remote yet; \
             run '{}' to push them",
            pending.len(),
            settings.pending_command()
        ));
    }
}

/// What repairs `differences`, in words that are true for each kind found.
fn advice(differences: &[(RelPath, Difference)], tops: &[RelPath]) -> String {
    // A directory on the remote where a file or link belongs: mirror leaves it alone.
    let conflict = |d: &Difference| match d {
        Difference::Changed { local, remote } => *remote == Node::Dir && *local != Node::Dir,
        _ => false,
    };
    // One the server will not list: mirror leaves it alone too.
    let unlistable_dir = |d: &Difference| {
        matches!(
            d,
            Difference::Changed {
                remote: Node::UnlistableDir(_),
                ..
            } | Difference::Extra(Node::UnlistableDir(_))
        )
    };
    let unlistable = differences
        .iter()
        .filter(|(_, d)| unlistable_dir(d))
        .count();
    let conflicts = differences.iter().filter(|(_, d)| conflict(d)).count();
    let unreadable = differences
        .iter()
        .filter(|(_, d)| {
            matches!(
                d,
                Difference::Changed {
                    remote: Node::UnreadableLink(_),
                    ..
                }
            )
        })
        .count();
    let checksum = differences
        .iter()
        .any(|(_, d)| matches!(d, Difference::Content));
    let delete = differences
        .iter()
        .any(|(_, d)| matches!(d, Difference::Extra(_)));
    let mut words = Vec::new();
    let left = conflicts + unlistable;
    if left < differences.len() {
        words.push(format!(
            "'{}' repairs {}",
            command_line(checksum, delete, tops),
            if left > 0 { "the others" } else { "them" }
        ));
    }
    if conflicts > 0 {
        words.push(format!(
            "{conflicts} remote director{} where a file belongs must be removed by hand",
            if conflicts == 1 { "y" } else { "ies" }
        ));
    }
    if unlistable > 0 {
        words.push(format!(
            "{unlistable} remote director{} cannot be listed (the reason is above): see to \
             {} on the server, then verify again",
            if unlistable == 1 { "y" } else { "ies" },
            if unlistable == 1 { "it" } else { "them" }
        ));
    }
    if unreadable > 0 {
        words.push(format!(
            "{unreadable} remote symlink(s) could not be read: mirror makes them anew, but \
             this server may never let verify read them"
        ));
    }
    words.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn the_advice_names_what_repairs_each_kind_of_difference() {
        let file = Node::File { size: 1, mtime: 1 };
        let default = tops(&[]).unwrap();
        let missing = (r("pool/a"), Difference::Missing(file.clone()));
        let content = (r("pool/b"), Difference::Content);
        let extra = (r("pool/c"), Difference::Extra(file.clone()));
        let conflict = (
            r("pool/d"),
            Difference::Changed {
                local: file.clone(),
                remote: Node::Dir,
            },
        );
        let unreadable = (
            r("dists/stable"),
            Difference::Changed {
                local: Node::Link(b"bookworm".to_vec()),
                remote: Node::UnreadableLink("READLINK failed".into()),
            },
        );
        assert_eq!(
            advice(std::slice::from_ref(&missing), &default),
            "'outsftphook mirror' repairs them"
        );
        assert_eq!(
            advice(&[missing.clone(), content, extra], &[r("pool")]),
            "'outsftphook mirror --checksum --delete pool' repairs them"
        );
        assert_eq!(
            advice(std::slice::from_ref(&conflict), &default),
            "1 remote directory where a file belongs must be removed by hand"
        );
        let unlistable = (
            r("pool/main/f"),
            Difference::Changed {
                local: Node::Dir,
                remote: Node::UnlistableDir("PERMISSION_DENIED".into()),
            },
        );
        assert_eq!(
            advice(std::slice::from_ref(&unlistable), &default),
            "1 remote directory cannot be listed (the reason is above): see to it on the \
             server, then verify again"
        );
        let both = advice(&[missing, conflict, unreadable], &default);
        assert!(both.starts_with("'outsftphook mirror' repairs the others; 1 remote directory"));
        assert!(
            both.contains("1 remote symlink(s) could not be read"),
            "{both}"
        );
    }
}
