//! `status`: the pending outlogs and, for each, what is left to do, as a run would see it.
//! It reads the logs and plans, nothing more: it must not take the run lock, connect, or
//! write a journal line.

use crate::config::Settings;
use crate::plan::{self, Action, Job};
use crate::repo::logs::{self, Selection};
use crate::repo::outlog;
use crate::run::deletions::Deletions;
use crate::run::output::{human_time, show};

/// Prints the pending logs and what is left of each, then the deletions held back; all of
/// it with `verbose`. True when some (non-empty) outlog is pending.
/// With several mirrors (`mirrors`, the selected ones), each one's part is said apart,
/// its lines led by its name.
pub fn run(mirrors: &[Settings], verbose: bool) -> anyhow::Result<bool> {
    let settings = &mirrors[0];
    let conf = settings.confdir.join("outsftphook.conf");
    crate::repo::owner::check(&settings.logdir, &conf, false)?;
    let several = mirrors.len() > 1 || mirrors[0].mirrors_configured > 1;
    let pending = logs(mirrors, several, verbose)?;
    for settings in mirrors {
        let label = label(settings, several);
        held(&Deletions::read(settings)?, settings, &label, verbose);
    }
    Ok(pending)
}

/// What leads the lines of `settings`' mirror: its name, when there are several.
fn label(settings: &Settings, several: bool) -> String {
    if several {
        format!("{}: ", settings.mirror.name)
    } else {
        String::new()
    }
}

/// What is held back, and when it goes.
fn held(deletions: &Deletions, settings: &Settings, label: &str, verbose: bool) {
    let due = deletions.due();
    let kept = deletions.kept();
    let keep = settings.keep_deleted.as_secs();
    if !kept.is_empty() {
        let next = kept.iter().map(|(_, at)| *at).min().unwrap_or_default();
        show(&format!(
            "{label}{} deletion(s) held back: the files stay on the mirror for apt clients with \
             older indexes until keepdeleted ({}) has passed; the next goes after {}",
            kept.len(),
            human_duration(keep),
            human_time(next)
        ));
        if verbose {
            for (path, at) in &kept {
                show(&format!("  {path}: removed after {}", human_time(*at)));
            }
        }
    }
    if !due.is_empty() {
        show(&format!(
            "{label}{} held deletion(s) due: the next run removes them ('{}')",
            due.len(),
            settings.pending_command()
        ));
        if verbose {
            for path in &due {
                show(&format!("  {path}: due"));
            }
        }
    }
}

/// `36h`, `2d`, `90s`: as `keepdeleted` takes it.
fn human_duration(secs: u64) -> String {
    match secs {
        0 => "0".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Prints the pending logs and what is left of each; true when some (non-empty) outlog
/// is pending.
fn logs(mirrors: &[Settings], several: bool, verbose: bool) -> anyhow::Result<bool> {
    let settings = &mirrors[0];
    let how = Selection {
        pending: true,
        ignore_pending: false,
        force_order: false,
        autoretry: true,
    };
    let paths = logs::select(&[], &settings.logdir, how)?;
    if paths.is_empty() {
        show(&format!(
            "no pending outlogs in {}",
            settings.logdir.display()
        ));
        return Ok(false);
    }
    if let Some(dbdir) = &settings.dbdir {
        let lockfile = crate::repo::lock::reprepro_lock_path(dbdir);
        if crate::repo::lock::reprepro_running(&lockfile)? {
            show(&format!(
                "reprepro is running ({} exists): its outhook call will push its change",
                lockfile.display()
            ));
        }
    }
    let mut outlogs = Vec::new();
    for path in &paths {
        let log = outlog::parse_file(path)?;
        if log.lines.is_empty() {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            show(&format!(
                "{name}: empty: reprepro has not written it (yet); it is never marked done"
            ));
        } else {
            outlogs.push(log);
        }
    }
    for mirror in mirrors {
        left(&outlogs, mirror, &label(mirror, several), verbose);
    }
    if outlogs.is_empty() {
        return Ok(false);
    }
    show(&format!(
        "{} pending; '{}' processes them",
        outlogs.len(),
        settings.pending_command()
    ));
    Ok(true)
}

/// Says what is left of each log for one mirror (whose journal lines are its own).
fn left(outlogs: &[outlog::Outlog], settings: &Settings, label: &str, verbose: bool) {
    let plan = plan::plan_for(outlogs, settings.journal_tag());
    let jobs: Vec<&Job> = plan.jobs().collect();
    if !label.is_empty() && jobs.is_empty() {
        show(&format!("{label}up to date"));
        return;
    }
    for (log, outlog) in outlogs.iter().enumerate() {
        let path = &outlog.path;
        let mine: Vec<&&Job> = jobs.iter().filter(|j| j.log == log).collect();
        let count = |f: fn(&Action) -> bool| mine.iter().filter(|j| f(&j.action)).count();
        let uploads = count(|a| matches!(a, Action::Upload | Action::UploadDotNew { .. }));
        let renames = count(|a| matches!(a, Action::RenameDotNew { .. }));
        let others = mine.len() - uploads - renames;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if mine.is_empty() {
            show(&format!(
                "{label}{name}: nothing left (the next run marks it done)"
            ));
            continue;
        }
        show(&format!(
            "{label}{name}: {} left: {uploads} upload(s), {renames} rename(s), {others} other(s)",
            mine.len()
        ));
        if verbose {
            for job in mine {
                show(&format!("  {}", job.describe()));
            }
        }
    }
}
