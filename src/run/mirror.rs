//! `mirror` and `verify`: the whole local repository against the whole remote one, without
//! outlogs. `mirror` changes the remote in the hook's safe order (pool, then each
//! distribution's files as `.new` renamed into place with `Release`/`InRelease` last, then
//! deletions); `verify` only reports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::Context;

use crate::config::{Settings, Symlinks};
use crate::engine::{Cause, Engine, Op, OpError, OpResult, Outcome, Req, Status};
use crate::interrupt::{Interrupt, signal_name};
use crate::relpath::RelPath;
use crate::run::hook::SetupError;
use crate::run::progress::Progress;
use crate::run::tree::{self, Difference, Node, Tree, remote_path};

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

/// Whether a failed operation is the server refusing to make a symlink: OP_UNSUPPORTED
/// (rclone), or PERMISSION_DENIED for the SYMLINK itself (`sftp-server -P symlink`).
pub(crate) fn refuses_symlinks(e: &OpError) -> bool {
    matches!(
        e.cause,
        Cause::Status {
            request: Req::Symlink,
            code: Status::Unsupported | Status::PermissionDenied,
            ..
        }
    )
}

/// Says, once per run, that links are copied from now on (`symlinks auto`).
pub(crate) fn warn_copying(e: &OpError) {
    log::warn!(
        "the server refuses symlinks ({}): uploading copies of their targets instead; set \
         'symlinks copy' to say so",
        e.cause
    );
}

/// A refused symlink under `symlinks yes`: what to do about it.
pub(crate) fn refused_error(e: &OpError, settings: &Settings) -> String {
    format!(
        "{e}: the server refuses symlinks; set 'symlinks copy' (or auto) in {} to upload \
         copies of their targets instead",
        settings.confdir.join("outsftphook.conf").display()
    )
}

/// Replaces the local links that are to be copied by what they lead to: every one with
/// `symlinks copy` (or once the server refused one), none with `yes`; with `auto` those
/// where the remote has a file or directory (a copy an earlier run made, where a link was
/// refused), which is compared as the copy it is rather than replaced.
fn follow_copied_links(
    local: &mut Tree,
    remote: &Tree,
    settings: &Settings,
    copying: bool,
) -> anyhow::Result<()> {
    let which: Box<dyn Fn(&RelPath) -> bool> = match settings.symlinks {
        _ if copying => Box::new(|_| true),
        Symlinks::Copy => Box::new(|_| true),
        Symlinks::Yes => Box::new(|_| false),
        Symlinks::Auto => Box::new(|p| remote.get(p).is_some_and(|n| !n.is_link())),
    };
    tree::follow_links(local, &settings.outdir, &*which)
        .map(|_| ())
        .map_err(|e| SetupError(e).into())
}

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

fn connect(
    settings: &Settings,
    connections: usize,
    interrupt: &Interrupt,
) -> anyhow::Result<Engine> {
    let config = settings.engine_config(connections, interrupt);
    Engine::connect(&settings.server, config).context("cannot start an SFTP session")
}

/// Where a file goes in a distribution's finalisation (0 indexes, 1 `Release` and
/// `Release.gpg`, 2 `InRelease`), by its place: directly in `dists/NAME` or in a snapshot.
fn step_of(path: &RelPath) -> usize {
    let parts: Vec<&str> = path.as_str().split('/').collect();
    let top_of_dist = parts.len() == 3 || (parts.len() == 5 && parts[2] == "snapshots");
    match (top_of_dist, path.file_name()) {
        (true, "InRelease") => 2,
        (true, "Release" | "Release.gpg") => 1,
        _ => 0,
    }
}

fn is_dists(path: &RelPath) -> bool {
    path.first_component() == "dists"
}

/// One action of a mirror run, as printed by `--dry-run`.
#[derive(Debug, Clone)]
struct Action {
    describe: String,
    op: Op,
}

/// What a mirror run does, in order: each group finishes before the next starts.
#[derive(Default)]
struct MirrorPlan {
    groups: Vec<Vec<Action>>,
    /// Uploads and their bytes, for the progress line and summary.
    files: u64,
    bytes: u64,
    /// Differences that mirroring cannot fix (a directory where a file must be).
    conflicts: Vec<String>,
    /// Remote files, links and directories `--delete` removes (what `--max-delete` counts).
    deletions: u64,
}

fn plan_mirror(
    local: &Tree,
    differences: Vec<(RelPath, Difference)>,
    settings: &Settings,
    delete: bool,
) -> MirrorPlan {
    let target = settings.targetdir.as_ref();
    let mut plan = MirrorPlan::default();
    // pool uploads, dist .new uploads, dist steps 0..2 (renames and links), pool links,
    // deletions of files, deletions of directories (deepest first, added below).
    let mut pool_uploads = Vec::new();
    let mut dist_uploads = Vec::new();
    let mut steps: [Vec<Action>; 3] = Default::default();
    let mut links = Vec::new();
    let mut mkdirs = Vec::new();
    let mut early_removes = Vec::new();
    let mut removes = Vec::new();
    let mut rmdirs: Vec<RelPath> = Vec::new();
    // What is only on the remote, to find what stands at an index's `.new` name; those
    // removed before the upload are not deletions.
    let extras: BTreeMap<RelPath, Node> = differences
        .iter()
        .filter_map(|(p, d)| match d {
            Difference::Extra(n) => Some((p.clone(), n.clone())),
            _ => None,
        })
        .collect();
    let mut cleared: BTreeSet<RelPath> = BTreeSet::new();
    for (path, difference) in differences {
        let rpath = remote_path(target, &path);
        if let Difference::Changed {
            remote: Node::UnlistableDir(why),
            ..
        }
        | Difference::Extra(Node::UnlistableDir(why)) = &difference
        {
            plan.conflicts.push(format!(
                "{path}: the server cannot list this remote directory ({why}): nothing in it \
                 is compared, uploaded or deleted (check it on the server)"
            ));
            continue;
        }
        let wanted = match &difference {
            Difference::Missing(n) => Some(n),
            Difference::Changed { local, .. } => Some(local),
            // Same size and time, other content (found by --checksum): upload it again.
            Difference::Content => local.get(&path),
            Difference::Extra(_) => None,
        };
        if let Difference::Changed {
            local: Node::File { .. } | Node::Link(_),
            remote: Node::Dir,
        } = &difference
        {
            plan.conflicts.push(format!(
                "{path}: a directory on the remote, a file locally (remove it by hand)"
            ));
            continue;
        }
        match (wanted, &difference) {
            (Some(Node::File { size, mtime }), _) => {
                // Whatever stands at an index's `.new` name (a leftover, or a symlink that
                // would take the upload elsewhere) goes first.
                let new_rel = RelPath::new(&format!("{path}.new")).ok();
                match new_rel
                    .as_ref()
                    .filter(|_| is_dists(&path))
                    .and_then(|n| extras.get(n))
                {
                    Some(Node::Dir) => {
                        plan.conflicts.push(format!(
                            "{path}.new: a directory on the remote, in the way of the upload \
                             of {path} (remove it by hand)"
                        ));
                        continue;
                    }
                    Some(_) => {
                        early_removes.push(Action {
                            describe: format!("remove {path}.new"),
                            op: Op::Remove {
                                path: rpath.with_suffix(b".new"),
                            },
                        });
                        cleared.extend(new_rel);
                    }
                    None => {}
                }
                plan.files += 1;
                plan.bytes += size;
                let local_file = settings.outdir.join(path.as_str());
                // A remote symlink in the file's place goes first: opening it for writing
                // would write through it, wherever it points, and so would a rename onto it
                // on ProFTPD (which renames onto the link's target).
                if let Difference::Changed { remote, .. } = &difference
                    && remote.is_link()
                {
                    early_removes.push(Action {
                        describe: format!("remove {path}"),
                        op: Op::Remove {
                            path: rpath.clone(),
                        },
                    });
                }
                if is_dists(&path) {
                    let new = rpath.with_suffix(b".new");
                    dist_uploads.push(Action {
                        describe: format!("upload {path}.new"),
                        op: Op::Upload {
                            local: local_file,
                            remote: new.clone(),
                            fsync: true,
                            mtime: Some(*mtime),
                        },
                    });
                    steps[step_of(&path)].push(Action {
                        describe: format!("rename {path}.new {path}"),
                        op: Op::Rename {
                            from: new,
                            to: rpath,
                        },
                    });
                } else {
                    pool_uploads.push(Action {
                        describe: format!("upload {path}"),
                        op: Op::Upload {
                            local: local_file,
                            remote: rpath,
                            fsync: false,
                            mtime: Some(*mtime),
                        },
                    });
                }
            }
            (Some(Node::Link(target)), _) => {
                let action = Action {
                    describe: format!("symlink {path} -> {}", target.escape_ascii()),
                    op: Op::Symlink {
                        link: rpath,
                        target: target.clone(),
                    },
                };
                if is_dists(&path) {
                    steps[0].push(action);
                } else {
                    links.push(action);
                }
            }
            (Some(Node::Dir), Difference::Missing(_)) => mkdirs.push(Action {
                describe: format!("mkdir {path}"),
                op: Op::Mkdir { path: rpath },
            }),
            (Some(Node::Dir), _) => {
                // A file or link where a directory must be: it goes, then the directory.
                early_removes.push(Action {
                    describe: format!("remove {path}"),
                    op: Op::Remove {
                        path: rpath.clone(),
                    },
                });
                mkdirs.push(Action {
                    describe: format!("mkdir {path}"),
                    op: Op::Mkdir { path: rpath },
                });
            }
            (None, Difference::Extra(_)) if cleared.contains(&path) => {}
            (None, Difference::Extra(Node::Dir)) if delete => {
                plan.deletions += 1;
                rmdirs.push(path);
            }
            (None, Difference::Extra(_)) if delete => {
                plan.deletions += 1;
                removes.push(Action {
                    describe: format!("remove {path}"),
                    op: Op::Remove { path: rpath },
                });
            }
            _ => {}
        }
    }
    // What stands where a directory or a file must go is removed first, in its own group.
    plan.groups.push(early_removes);
    plan.groups.push(mkdirs);
    plan.groups
        .push(pool_uploads.into_iter().chain(dist_uploads).collect());
    plan.groups.push(links);
    plan.groups.extend(steps);
    plan.groups.push(removes);
    rmdirs.sort_by_key(|p| std::cmp::Reverse(p.as_str().matches('/').count()));
    let depth = |p: &RelPath| p.as_str().matches('/').count();
    let mut at = 0;
    while at < rmdirs.len() {
        let d = depth(&rmdirs[at]);
        let level: Vec<Action> = rmdirs[at..]
            .iter()
            .take_while(|p| depth(p) == d)
            .map(|p| Action {
                describe: format!("rmdir {p}"),
                op: Op::Rmdir {
                    path: remote_path(target, p),
                },
            })
            .collect();
        at += level.len();
        plan.groups.push(level);
    }
    plan.groups.retain(|g| !g.is_empty());
    plan
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
fn command_line(checksum: bool, delete: bool, tops: &[RelPath]) -> String {
    let mut words = vec!["outsftphook mirror"];
    if checksum {
        words.push("--checksum");
    }
    if delete {
        words.push("--delete");
    }
    let default = tops_are_default(tops);
    words.extend(tops.iter().filter(|_| !default).map(RelPath::as_str));
    words.join(" ")
}

fn tops_are_default(tops: &[RelPath]) -> bool {
    let names: Vec<&str> = tops.iter().map(RelPath::as_str).collect();
    names == ["pool", "dists"]
}

/// The tops that are missing locally, or directories with nothing in them.
fn empty_tops<'a>(local: &Tree, tops: &'a [RelPath]) -> Vec<&'a RelPath> {
    tops.iter()
        .filter(|top| match local.get(*top) {
            None => true,
            Some(Node::Dir) => {
                let below = format!("{top}/");
                !local.keys().any(|k| k.as_str().starts_with(&below))
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
) -> anyhow::Result<()> {
    let empty = empty_tops(local, tops);
    if empty.is_empty() || (!delete && empty.len() < tops.len()) {
        return Ok(());
    }
    let names: Vec<&str> = empty.iter().map(|t| t.as_str()).collect();
    let consequence = if delete {
        "mirror --delete would remove everything below it on the remote"
    } else {
        "there is nothing to mirror"
    };
    Err(SetupError(anyhow::anyhow!(
        "{}: missing or empty in {}: {consequence}; nothing was sent. Check --basedir and \
         --outdir (or name the directories to mirror)",
        names.join(", "),
        settings.outdir.display()
    ))
    .into())
}

/// Files that are the same by size and time: those whose content `--checksum` compares.
fn same_files<'a>(local: &'a Tree, remote: &Tree) -> Vec<&'a RelPath> {
    local
        .iter()
        .filter(|(p, n)| matches!(n, Node::File { .. }) && remote.get(*p) == Some(n))
        .map(|(p, _)| p)
        .collect()
}

/// Compares the content of `paths` with the remote; returns those that differ, each with
/// the error when it could not be compared.
fn compare_contents(
    engine: &mut Engine,
    settings: &Settings,
    paths: &[&RelPath],
    interrupt: &Interrupt,
) -> anyhow::Result<Vec<(RelPath, Option<crate::engine::OpError>)>> {
    let ops: Vec<Op> = paths
        .iter()
        .map(|p| Op::Compare {
            local: settings.outdir.join(p.as_str()),
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

/// What a mirror run did.
#[derive(Debug, Default)]
pub struct MirrorReport {
    pub failures: usize,
    pub changes: usize,
    pub files: u64,
    pub bytes: u64,
}

/// Makes the remote equal to the local tops.
pub fn mirror(
    settings: &Settings,
    tops: &[RelPath],
    options: &MirrorOptions,
    interrupt: &Interrupt,
) -> anyhow::Result<MirrorReport> {
    let started = Instant::now();
    let scanned = tree::scan_local(&settings.outdir, tops)?;
    check_tops(&scanned, tops, settings, options.delete)?;
    let local_bytes: u64 = scanned
        .values()
        .map(|n| match n {
            Node::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    let connections = crate::engine::connections_for_bytes(local_bytes, settings.connections);
    let mut engine = connect(settings, connections, interrupt)?;
    let mut report = MirrorReport::default();
    let mut pass = Pass {
        engine: &mut engine,
        settings,
        tops,
        options,
        interrupt,
        report: &mut report,
        refused: None,
        copying: settings.symlinks == Symlinks::Copy,
        renames_warned: false,
        changed: &BTreeSet::new(),
    };
    let passes = || -> anyhow::Result<usize> {
        let conflicts = pass.run(scanned)?;
        if let Some(refusal) = pass.refused.take() {
            // `symlinks auto`, and the server refused a link: what is left is done again
            // with every link copied; the copies then go in the safe order like the rest.
            warn_copying(&refusal);
            pass.copying = true;
            pass.renames_warned = true;
            return pass.run(tree::scan_local(&settings.outdir, tops)?);
        }
        Ok(conflicts)
    };
    let conflicts = match passes() {
        Ok(conflicts) => conflicts,
        Err(e) if e.downcast_ref::<SetupError>().is_some() => {
            engine.close();
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if options.dry_run {
        engine.close();
        return Ok(report);
    }
    close_quietly(engine);
    // Conflicts were reported up front; they do not stop the rest, but the run failed.
    report.failures += conflicts;
    eprintln!(
        "outsftphook: mirror: {} file(s), {} uploaded, {} change(s), {} error(s), in {:.1} s",
        report.files,
        crate::run::progress::human_bytes(report.bytes),
        report.changes,
        report.failures,
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

/// One comparison of the trees and the changes it calls for.
struct Pass<'a> {
    engine: &'a mut Engine,
    settings: &'a Settings,
    tops: &'a [RelPath],
    options: &'a MirrorOptions,
    interrupt: &'a Interrupt,
    report: &'a mut MirrorReport,
    /// The first symlink the server refused (with `symlinks auto`): the pass stopped there.
    refused: Option<OpError>,
    /// Every local link is copied.
    copying: bool,
    /// The fallback to remove-then-rename was told already.
    renames_warned: bool,
    /// Files known to have changed: uploaded even where size and time match.
    changed: &'a BTreeSet<RelPath>,
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
) -> anyhow::Result<MirrorReport> {
    let options = MirrorOptions {
        delete: true,
        ..MirrorOptions::default()
    };
    let mut report = MirrorReport::default();
    let mut pass = Pass {
        engine,
        settings,
        tops,
        options: &options,
        interrupt,
        report: &mut report,
        refused: None,
        copying: true,
        renames_warned: true,
        changed,
    };
    let conflicts = pass.run(tree::scan_local(&settings.outdir, tops)?)?;
    report.failures += conflicts;
    Ok(report)
}

impl Pass<'_> {
    /// Lists the remote, compares it with `local` and makes the changes; returns how many
    /// conflicts it reported (differences it cannot repair).
    fn run(&mut self, mut local: Tree) -> anyhow::Result<usize> {
        let (settings, options, tops) = (self.settings, self.options, self.tops);
        let mut remote = tree::scan_remote(self.engine, settings.targetdir.as_ref(), tops)?;
        follow_copied_links(&mut local, &remote, settings, self.copying)?;
        tree::reconcile_links(&local, &mut remote, settings.targetdir.as_ref());
        let mut differences = tree::diff(&local, &remote);
        for path in same_files(&local, &remote) {
            if self.changed.contains(path) {
                differences.push((path.clone(), Difference::Content));
            }
        }
        differences.sort_by(|a, b| a.0.cmp(&b.0));
        if options.checksum {
            let mut same = same_files(&local, &remote);
            same.retain(|p| !self.changed.contains(*p));
            for (path, error) in compare_contents(self.engine, settings, &same, self.interrupt)? {
                if let Some(e) = error {
                    log::warn!("{path}: cannot compare the content ({e}): uploading it again");
                }
                differences.push((path, Difference::Content));
            }
            differences.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let plan = plan_mirror(&local, differences, settings, options.delete);
        for conflict in &plan.conflicts {
            eprintln!("outsftphook: {conflict}");
        }
        if options.dry_run {
            for action in plan.groups.iter().flatten() {
                println!("{}", action.describe);
            }
        }
        if let Some(max) = options.max_delete
            && plan.deletions > max
        {
            return Err(SetupError(anyhow::anyhow!(
                "--delete would remove {} remote files, links and directories, more than \
                 --max-delete {max}: nothing was changed. See them with 'outsftphook --dry-run \
                 {}'; if they must go, raise --max-delete",
                plan.deletions,
                options.command(tops)
            ))
            .into());
        }
        if options.dry_run {
            return Ok(plan.conflicts.len());
        }
        if plan
            .groups
            .iter()
            .flatten()
            .any(|a| matches!(a.op, Op::Rename { .. }))
            && !self.renames_warned
        {
            warn_unless_atomic_renames(self.engine, settings);
            self.renames_warned = true;
        }
        self.changes(&plan)?;
        Ok(plan.conflicts.len())
    }

    /// Runs the plan's groups in order.
    fn changes(&mut self, plan: &MirrorPlan) -> anyhow::Result<()> {
        let settings = self.settings;
        let auto = settings.symlinks == Symlinks::Auto && !self.copying;
        let mut progress = Progress::new(plan.files, plan.bytes);
        for group in &plan.groups {
            let ops: Vec<Op> = group.iter().map(|a| a.op.clone()).collect();
            let report = &mut *self.report;
            let refused = &mut self.refused;
            let mut on_done = |i: usize, result: &OpResult| {
                report.changes += 1;
                match result {
                    Ok(_) => {
                        if let Op::Upload { local, .. } = &ops[i] {
                            let size = std::fs::metadata(local).map_or(0, |m| m.len());
                            report.files += 1;
                            report.bytes += size;
                            progress.file_done(size);
                        }
                        if settings.verbose > 0 {
                            progress.say(&group[i].describe);
                        }
                    }
                    Err(e) if e.cause == Cause::Interrupted => {}
                    // Not a change: the link is copied in the next pass.
                    Err(e) if auto && refuses_symlinks(e) => {
                        report.changes -= 1;
                        refused.get_or_insert_with(|| e.clone());
                    }
                    Err(e) if refuses_symlinks(e) => {
                        report.failures += 1;
                        progress.say(&format!("outsftphook: {}", refused_error(e, settings)));
                    }
                    Err(e) => {
                        report.failures += 1;
                        progress.say(&format!("outsftphook: {e}"));
                    }
                }
            };
            self.engine.run_batch(&ops, &mut on_done)?;
            if let Some(sig) = self.interrupt.signal() {
                progress.finish();
                anyhow::bail!(
                    "interrupted by {}: stopped once the requests in flight were answered; run \
                     '{}' again to finish",
                    signal_name(sig),
                    self.options.command(self.tops)
                );
            }
            // Later groups rely on earlier ones (renames on uploads, deletions on renames,
            // a Release on the links its distribution has).
            if self.report.failures > 0 || self.refused.is_some() {
                break;
            }
        }
        progress.finish();
        Ok(())
    }
}

/// Compares the remote with the local tops; returns how many differences it printed.
pub fn verify(
    settings: &Settings,
    tops: &[RelPath],
    checksum: bool,
    interrupt: &Interrupt,
) -> anyhow::Result<usize> {
    let mut local = tree::scan_local(&settings.outdir, tops)?;
    let mut engine = connect(settings, 1, interrupt)?;
    let mut remote = tree::scan_remote(&mut engine, settings.targetdir.as_ref(), tops)?;
    follow_copied_links(&mut local, &remote, settings, false)?;
    tree::reconcile_links(&local, &mut remote, settings.targetdir.as_ref());
    let mut differences = tree::diff(&local, &remote);
    let mut compared = 0;
    if checksum {
        let same = same_files(&local, &remote);
        compared = same.len();
        for (path, error) in compare_contents(&mut engine, settings, &same, interrupt)? {
            if let Some(e) = error {
                return Err(e).context("cannot compare contents");
            }
            differences.push((path, Difference::Content));
        }
        differences.sort_by(|a, b| a.0.cmp(&b.0));
    }
    engine.close();
    for (path, difference) in &differences {
        println!("{path}: {difference}");
    }
    let files = local
        .values()
        .filter(|n| matches!(n, Node::File { .. }))
        .count();
    if differences.is_empty() {
        eprintln!(
            "outsftphook: verify: the remote matches ({files} files{})",
            if checksum {
                format!(", {compared} compared byte for byte")
            } else {
                String::new()
            }
        );
    } else {
        eprintln!(
            "outsftphook: verify: {} difference(s); {}",
            differences.len(),
            advice(&differences, tops)
        );
    }
    Ok(differences.len())
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
