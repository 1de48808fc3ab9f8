//! One comparison of the local tree with the remote one, and the changes it calls for, in
//! the safe order [`MirrorPlan`] gives: `mirror`'s passes, and the hook's refresh of the
//! copies a server without symlinks holds of reprepro's suite links. For `mirror` it guards
//! each distribution's finalisation ([`crate::run::guard`]). It must not print the
//! command's summary or decide the exit status: its callers do.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::config::{Settings, Symlinks};
use crate::engine::{Cause, Engine, Op, OpError, Outcome};
use crate::exit::Fatal;
use crate::interrupt::{Interrupt, signal_name};
use crate::plan::mirror::{Change, MirrorPlan, plan_mirror};
use crate::plan::order::dist_dir_of;
use crate::plan::tree::{self, Difference, Node, Tree, remote_path};
use crate::relpath::RelPath;
use crate::repo::scan;
use crate::run::deletions::Deletions;
use crate::run::guard::{Guard, Words};
use crate::run::links::{refused_error, refuses_symlinks, warn_copying};
use crate::run::output::{Tally, human_time, show, tell};
use crate::run::remote_tree;
use crate::run::runner::{Judged, Runner};
use crate::run::session::warn_unless_atomic_renames;

/// The engine operation that makes a planned change.
fn op_of(change: &Change, settings: &Settings) -> Op {
    let target = settings.targetdir.as_ref();
    match change {
        Change::Upload {
            path,
            dot_new,
            mtime,
            ..
        } => {
            let remote = remote_path(target, path);
            Op::Upload {
                local: path.under(&settings.outdir),
                remote: if *dot_new {
                    remote.with_suffix(b".new")
                } else {
                    remote
                },
                fsync: *dot_new,
                mtime: Some(*mtime),
            }
        }
        Change::Rename { path } => {
            let to = remote_path(target, path);
            Op::Rename {
                from: to.with_suffix(b".new"),
                to,
            }
        }
        Change::Symlink { path, target: to } => Op::Symlink {
            link: remote_path(target, path),
            target: to.clone(),
        },
        Change::Mkdir { path } => Op::Mkdir {
            path: remote_path(target, path),
        },
        Change::Remove { path } => Op::Remove {
            path: remote_path(target, path),
        },
        Change::Rmdir { path } => Op::Rmdir {
            path: remote_path(target, path),
        },
    }
}

/// How `mirror` runs: its flags.
#[derive(Debug, Clone, Default)]
pub struct MirrorOptions {
    /// Remove what is only on the remote.
    pub delete: bool,
    /// Refuse to remove more than this many files, links and directories.
    pub max_delete: Option<u64>,
    /// Also compare the content of files whose size and time match.
    pub checksum: bool,
    pub dry_run: bool,
}

impl MirrorOptions {
    /// The command line that runs this mirror again, for advice.
    fn command(&self, tops: &[RelPath]) -> String {
        command_line(self.checksum, self.delete, tops)
    }
}

/// `outsftphook mirror` with the flags that repair what was found, and the tops if given.
pub(crate) fn command_line(checksum: bool, delete: bool, tops: &[RelPath]) -> String {
    let mut words = vec!["outsftphook mirror"];
    if checksum {
        words.push("--checksum");
    }
    if delete {
        words.push("--delete");
    }
    let default = tops_are_default(tops);
    let tops = tops.iter().filter(|_| !default).map(RelPath::text);
    let mut words: Vec<std::borrow::Cow<'_, str>> = words.into_iter().map(Into::into).collect();
    words.extend(tops);
    words.join(" ")
}

pub(crate) fn tops_are_default(tops: &[RelPath]) -> bool {
    let names: Vec<_> = tops.iter().map(RelPath::text).collect();
    names == ["pool", "dists"]
}

/// What a mirror run did.
#[derive(Debug, Default)]
pub struct MirrorReport {
    pub failures: usize,
    /// What the server confirmed, by kind.
    pub(crate) tally: Tally,
}

/// Where a [`sync`] starts from.
pub(crate) struct Start<'a> {
    /// Every local link is copied.
    pub(crate) copying: bool,
    /// The fallback to remove-then-rename was told already.
    pub(crate) renames_warned: bool,
    /// Files known to have changed: uploaded even where size and time match.
    pub(crate) changed: &'a BTreeSet<RelPath>,
    /// The deletions held back: their files belong on the remote (`mirror`; `None` for
    /// the hook's copies of links, which hold none).
    pub(crate) held: Option<&'a Deletions>,
    /// A distribution whose finalisation fails half-way is put back ([`Guard`]; `mirror`,
    /// not the hook's copies of links).
    pub(crate) guarded: bool,
}

/// Makes the remote equal to `local` below `tops`; with `symlinks auto`, once the server
/// refused a link, what is left is done again with every link copied (the copies then go
/// in the safe order like the rest). Returns what was done, also when it ended early (a
/// lost connection, a signal: the summary says it all the same), and how many conflicts
/// (differences it cannot repair) it reported; the report's failures leave those out.
pub(crate) fn sync(
    engine: &mut Engine,
    settings: &Settings,
    tops: &[RelPath],
    options: &MirrorOptions,
    interrupt: &Interrupt,
    local: Tree,
    start: Start<'_>,
) -> (MirrorReport, Result<usize, Fatal>) {
    let mut pass = Pass {
        runner: Runner::new(engine, interrupt, 0, 0),
        settings,
        tops,
        options,
        refused: None,
        copying: start.copying,
        renames_warned: start.renames_warned,
        changed: start.changed,
        held: start.held,
        guarded: start.guarded,
        started: Instant::now(),
    };
    let mut conflicts = pass.run(local);
    if conflicts.is_ok()
        && let Some(refusal) = pass.refused.take()
    {
        warn_copying(&refusal);
        pass.copying = true;
        pass.renames_warned = true;
        conflicts = scan::scan_local(&settings.outdir, tops)
            .map_err(Fatal::from)
            .and_then(|local| pass.run(local));
    }
    let report = MirrorReport {
        failures: pass.runner.failures(),
        tally: pass.runner.tally(),
    };
    (report, conflicts)
}

/// Brings the remote copies of local links at `tops` up to date, as `mirror --delete
/// TOPS` would with `symlinks copy`: the hook's way to keep the copy a server that refuses
/// symlinks holds of `dists/stable -> bookworm` equal to `bookworm` (reprepro's
/// createsymlinks links are named by no outlog).
pub(crate) fn refresh_copies(
    engine: &mut Engine,
    settings: &Settings,
    tops: &[RelPath],
    changed: &BTreeSet<RelPath>,
    interrupt: &Interrupt,
) -> Result<MirrorReport, Fatal> {
    let options = MirrorOptions {
        delete: true,
        ..MirrorOptions::default()
    };
    let start = Start {
        copying: true,
        renames_warned: true,
        changed,
        held: None,
        guarded: false,
    };
    let local = scan::scan_local(&settings.outdir, tops)?;
    let (mut report, conflicts) = sync(engine, settings, tops, &options, interrupt, local, start);
    report.failures += conflicts?;
    Ok(report)
}

/// Replaces the local links that are to be copied by what they lead to: every one with
/// `symlinks copy` (or once the server refused one), none with `yes`; with `auto` those
/// where the remote has a file or directory (a copy an earlier run made, where a link was
/// refused), which is compared as the copy it is rather than replaced.
pub(crate) fn follow_copied_links(
    local: &mut Tree,
    remote: &Tree,
    settings: &Settings,
    copying: bool,
) -> Result<(), Fatal> {
    let which: Box<dyn Fn(&RelPath) -> bool> = match settings.symlinks {
        _ if copying => Box::new(|_| true),
        Symlinks::Copy => Box::new(|_| true),
        Symlinks::Yes => Box::new(|_| false),
        Symlinks::Auto => Box::new(|p| remote.get(p).is_some_and(|n| !n.is_link())),
    };
    scan::follow_links(local, &settings.outdir, &*which)
        .map(|_| ())
        .map_err(Fatal::setup)
}

/// Files that are the same by size and time: those whose content `--checksum` compares.
pub(crate) fn same_files<'a>(local: &'a Tree, remote: &Tree) -> Vec<&'a RelPath> {
    local
        .iter()
        .filter(|(p, n)| matches!(n, Node::File { .. }) && remote.get(*p) == Some(n))
        .map(|(p, _)| p)
        .collect()
}

/// Compares the content of `paths` with the remote; returns those that differ, each with
/// the error when it could not be compared.
pub(crate) fn compare_contents(
    engine: &mut Engine,
    settings: &Settings,
    paths: &[&RelPath],
    interrupt: &Interrupt,
) -> anyhow::Result<Vec<(RelPath, Option<OpError>)>> {
    let ops: Vec<Op> = paths
        .iter()
        .map(|p| Op::Compare {
            local: p.under(&settings.outdir),
            remote: remote_path(settings.targetdir.as_ref(), p),
        })
        .collect();
    let results = engine.run_spread(&ops, |_, _| {})?;
    if let Some(sig) = interrupt.signal() {
        anyhow::bail!(
            "interrupted by {} while comparing contents; nothing was changed",
            signal_name(sig)
        );
    }
    Ok(paths
        .iter()
        .zip(results)
        .filter_map(|(path, result)| match result {
            Ok(Outcome::Same) => None,
            Ok(_) => Some(((*path).clone(), None)),
            Err(e) => Some(((*path).clone(), Some(e))),
        })
        .collect())
}

/// One comparison of the trees and the changes it calls for.
struct Pass<'a> {
    runner: Runner<'a>,
    settings: &'a Settings,
    tops: &'a [RelPath],
    options: &'a MirrorOptions,
    /// The first symlink the server refused (with `symlinks auto`): the pass stopped there.
    refused: Option<OpError>,
    /// Every local link is copied.
    copying: bool,
    /// The fallback to remove-then-rename was told already.
    renames_warned: bool,
    /// Files known to have changed: uploaded even where size and time match.
    changed: &'a BTreeSet<RelPath>,
    held: Option<&'a Deletions>,
    /// The finalisation is guarded.
    guarded: bool,
    started: Instant,
}

impl Pass<'_> {
    /// Lists the remote, compares it with `local` and makes the changes; returns how many
    /// conflicts it reported (differences it cannot repair).
    fn run(&mut self, local: Tree) -> Result<usize, Fatal> {
        let (local, differences) = self.differences(local)?;
        let (settings, options, tops) = (self.settings, self.options, self.tops);
        let plan = plan_mirror(&local, differences, options.delete);
        for conflict in &plan.conflicts {
            tell(conflict);
        }
        if options.dry_run {
            for action in plan.groups.iter().flatten() {
                show(&action.describe());
            }
        }
        if let Some(max) = options.max_delete
            && plan.deletions > max
        {
            return Err(Fatal::setup(anyhow::anyhow!(
                "--delete would remove {} remote files, links and directories, more than \
                 --max-delete {max}: nothing was changed. See them with '{} --dry-run'; if \
                 they must go, raise --max-delete",
                plan.deletions,
                options.command(tops)
            )));
        }
        if options.dry_run {
            return Ok(plan.conflicts.len());
        }
        if plan
            .groups
            .iter()
            .flatten()
            .any(|a| matches!(a, Change::Rename { .. }))
            && !self.renames_warned
        {
            warn_unless_atomic_renames(self.runner.engine(), settings);
            self.renames_warned = true;
        }
        self.changes(&plan)?;
        Ok(plan.conflicts.len())
    }

    /// The remote listed and compared with `local` (its links to copy followed first), in
    /// path order; with `--checksum`, files of equal size and time compared byte for byte.
    fn differences(
        &mut self,
        mut local: Tree,
    ) -> Result<(Tree, Vec<(RelPath, Difference)>), Fatal> {
        let (settings, tops) = (self.settings, self.tops);
        let targetdir = settings.targetdir.as_ref();
        let mut remote = remote_tree::scan_remote(self.runner.engine(), targetdir, tops)?;
        follow_copied_links(&mut local, &remote, settings, self.copying)?;
        tree::reconcile_links(&local, &mut remote, targetdir);
        let mut differences = tree::diff(&local, &remote);
        if let Some(held) = self.held {
            let left_out = held.leave_out(&mut differences);
            self.say_kept(held, &left_out);
        }
        for path in same_files(&local, &remote) {
            if self.changed.contains(path) {
                differences.push((path.clone(), Difference::Content));
            }
        }
        differences.sort_by(|a, b| a.0.cmp(&b.0));
        if self.options.checksum {
            let mut same = same_files(&local, &remote);
            same.retain(|p| !self.changed.contains(*p));
            let interrupt = self.runner.interrupt();
            for (path, error) in compare_contents(self.runner.engine(), settings, &same, interrupt)?
            {
                if let Some(e) = error {
                    log::warn!("{path}: cannot compare the content ({e}): uploading it again");
                }
                differences.push((path, Difference::Content));
            }
            differences.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok((local, differences))
    }

    /// With `--delete`, says what it leaves of what is held back (`left_out`, each with
    /// when it goes): each line on a dry run, a count otherwise. What is due goes at the
    /// end of the run, as with every run, and is said there.
    fn say_kept(&self, held: &Deletions, left_out: &[(RelPath, u64)]) {
        if !self.options.delete {
            return;
        }
        let kept: Vec<&(RelPath, u64)> = left_out
            .iter()
            .filter(|(_, at)| !held.is_due(*at))
            .collect();
        if self.options.dry_run {
            for (path, at) in kept {
                show(&format!(
                    "keep {path}: its deletion is held back until {} (keepdeleted)",
                    human_time(*at)
                ));
            }
        } else if !kept.is_empty() {
            tell(&format!(
                "mirror: {} file(s) the repository no longer has are kept for apt clients \
                 until keepdeleted has passed ('status -v' says when each goes)",
                kept.len()
            ));
        }
    }

    /// Runs the plan's groups in order; however they end, the failures that share a cause
    /// are said ([`Runner::finish`]).
    fn changes(&mut self, plan: &MirrorPlan) -> anyhow::Result<()> {
        let ran = self.run_groups(plan);
        self.runner.finish();
        ran
    }

    /// Runs the groups in order, each once the one before went well. The finalisation of
    /// the distributions is guarded ([`crate::run::guard`]): the files it replaces are kept
    /// first (on a server that acts in order, in the flight of the first renames), a
    /// distribution one of whose changes failed is left out of the later steps and put
    /// back, the others finalised; the links go once all is known.
    fn run_groups(&mut self, plan: &MirrorPlan) -> anyhow::Result<()> {
        let settings = self.settings;
        let auto = settings.symlinks == Symlinks::Auto && !self.copying;
        let verbose = settings.verbose > 0;
        self.runner.restart_progress(plan.files, plan.bytes);
        let mut guarded: Option<Guarded> = None;
        for (g, group) in plan.groups.iter().enumerate() {
            let finalising = plan.finalising.contains(&g);
            let mut ahead = Vec::new();
            if finalising && guarded.is_none() && self.guarded {
                let mut guard = self.guard(plan);
                ahead = guard.guard.keep_previous(&mut self.runner, self.started)?;
                guarded = Some(guard);
            }
            // A distribution that failed a step takes no later one.
            let changes: Vec<&Change> = group
                .iter()
                .filter(|c| guarded.as_ref().is_none_or(|g| g.goes_on(c)))
                .collect();
            let skip = ahead.len();
            let ops: Vec<Op> = ahead
                .into_iter()
                .chain(changes.iter().map(|c| op_of(c, settings)))
                .collect();
            let mut linked = Vec::new();
            let mut ok = vec![false; changes.len()];
            let refused = &mut self.refused;
            self.runner.run(&ops, |i, result| {
                let Some(i) = i.checked_sub(skip) else {
                    linked.push((i, result.clone()));
                    return Judged::Other;
                };
                match result {
                    Ok(_) => {
                        ok[i] = true;
                        Judged::Done(verbose.then(|| changes[i].describe()))
                    }
                    Err(e) if e.cause == Cause::Interrupted => Judged::Other,
                    // Not a change: the link is copied in the next pass.
                    Err(e) if auto && refuses_symlinks(e) => {
                        refused.get_or_insert_with(|| e.clone());
                        Judged::Other
                    }
                    Err(e) if refuses_symlinks(e) => Judged::Failed(refused_error(e, settings)),
                    Err(e) => Judged::Failed(e.to_string()),
                }
            })?;
            if let Some(guard) = &mut guarded {
                guard.guard.linked(linked);
                guard.heard(&changes, &ok);
            }
            let command = self.options.command(self.tops);
            self.runner.stop_if_interrupted(|signal| {
                format!(
                    "interrupted by {signal}: stopped once the requests in flight were \
                     answered; run '{command}' again to finish"
                )
            })?;
            if g + 1 == plan.finalising.end
                && let Some(Guarded {
                    guard, went_well, ..
                }) = guarded.take()
            {
                guard.remove_links(&mut self.runner, &went_well)?;
                guard.put_back(&mut self.runner, &went_well)?;
            }
            // Later groups rely on earlier ones (renames on uploads, deletions on renames,
            // a Release on the links its distribution has); within the finalisation only
            // on those of their own distribution.
            let finalising_on = finalising && g + 1 < plan.finalising.end;
            if (self.runner.failures() > 0 || self.refused.is_some()) && !finalising_on {
                break;
            }
        }
        Ok(())
    }

    /// The guard of the plan's finalisation: its renames, by distribution.
    fn guard(&self, plan: &MirrorPlan) -> Guarded {
        let mut dirs: Vec<RelPath> = Vec::new();
        let mut renames = Vec::new();
        for change in plan.groups[plan.finalising.clone()].iter().flatten() {
            let Change::Rename { path } = change else {
                continue;
            };
            let Some((dir, _)) = dist_dir_of(path) else {
                continue;
            };
            let dist = match dirs.iter().position(|d| d.text() == dir) {
                Some(dist) => dist,
                None => {
                    dirs.push(RelPath::new(&dir).expect("a part of a path is one"));
                    dirs.len() - 1
                }
            };
            renames.push((dist, path.clone()));
        }
        let words = Words {
            run: "mirror run",
            rerun: self.options.command(self.tops),
        };
        let went_well = vec![true; dirs.len()];
        Guarded {
            guard: Guard::new(
                dirs.clone(),
                renames,
                self.settings.targetdir.as_ref(),
                words,
            ),
            dirs,
            went_well,
        }
    }
}

/// The guard of a pass's finalisation, and how each distribution's went so far.
struct Guarded {
    guard: Guard,
    /// The distributions, by index, as the guard has them.
    dirs: Vec<RelPath>,
    /// Whether each distribution's changes all went well so far.
    went_well: Vec<bool>,
}

impl Guarded {
    /// The distribution `change` is of, by index, if it is of one.
    fn dist_of(&self, change: &Change) -> Option<usize> {
        let (dir, _) = dist_dir_of(change.path())?;
        self.dirs.iter().position(|d| d.text() == dir)
    }

    /// Whether `change` is still to be sent: its distribution, if any, went well so far.
    fn goes_on(&self, change: &Change) -> bool {
        self.dist_of(change).is_none_or(|d| self.went_well[d])
    }

    /// Notes how `changes`, just sent, went (`ok`, by change).
    fn heard(&mut self, changes: &[&Change], ok: &[bool]) {
        let done = changes.iter().zip(ok).filter(|(_, ok)| **ok);
        self.guard.confirm(done.filter_map(|(c, _)| match c {
            Change::Rename { path } => Some(path),
            _ => None,
        }));
        for (change, ok) in changes.iter().zip(ok) {
            if let (Some(d), false) = (self.dist_of(change), ok) {
                self.went_well[d] = false;
            }
        }
    }
}
