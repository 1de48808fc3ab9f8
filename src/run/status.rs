//! `status`: the pending outlogs and, for each, what is left to do, as a run would see it.
//! It reads the logs and plans, nothing more: it must not take the run lock, connect, or
//! write a journal line.

use crate::config::Settings;
use crate::plan::{self, Action, Job};
use crate::repo::logs::{self, Selection};
use crate::repo::outlog;
use crate::run::output::show;

/// Prints the pending logs and what is left of each; all of it with `verbose`. True when
/// some (non-empty) outlog is pending.
pub fn run(settings: &Settings, verbose: bool) -> anyhow::Result<bool> {
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
    let plan = plan::plan(&outlogs);
    let jobs: Vec<&Job> = plan.jobs().collect();
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
                "{name}: nothing left (the next run marks it done)"
            ));
            continue;
        }
        show(&format!(
            "{name}: {} left: {uploads} upload(s), {renames} rename(s), {others} other(s)",
            mine.len()
        ));
        if verbose {
            for job in mine {
                show(&format!("  {}", job.describe()));
            }
        }
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
