//! What must happen on the remote, in the safe order: from parsed outlogs to a [`Plan`] for
//! the hook, and ([`mirror`]) from two [`tree`]s to a plan for `mirror`. Pure: no I/O, no
//! engine; [`order`] is the one definition of the order both follow.
//!
//! The newest log wins for a path: an older log's entry for a path a newer log also names
//! (or already finished) is *obsoleted*: journalled so once the newer entry is done, never
//! before (should the logs ever be seen in another order, nothing is lost, some work is done
//! twice). Entries a log's journal marks finished are skipped; dist files journalled
//! `asdotnew` are only renamed. A plan has three rounds, run in [`order`]'s stages:
//!
//! 1. new pool files, uploaded to their final names (nothing names them yet), with each
//!    distribution's files uploaded as `NAME.new`;
//! 2. per dist dir whose files are all up, its finalisation step by step ([`order::Finalise`]);
//! 3. pool deletions (nothing names those files any more), then empty pool directories.
//!
//! A path an older log uploads and a newer one deletes or makes a symlink may have a
//! `PATH.new` on the remote from an earlier run (journalled `asdotnew`, or in flight when that
//! run was killed) that nothing will rename: it is removed with the dir's deletions, as a job
//! of the older log, so that a run that succeeds leaves no `.new` of ours behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;

use crate::relpath::RelPath;
use crate::repo::outlog::{DoneMessage, Line, Outlog};

pub mod mirror;
pub mod order;
pub mod tree;

use order::{Finalise, Steps};

/// What to do for one path. What the dist jobs carry is behind a pointer: a plan holds a
/// job per file, most of them plain uploads, and an action of 16 bytes keeps 100 000 jobs
/// in 4 MB. A dist file's source is shared (an [`Arc`]) by its upload and its rename: a
/// log of many distributions may have 100 000 of them, each a long local path.
// Thin pointers (not `Box<str>` or `Arc<Path>`, 16 bytes): the action is 16 bytes, tag and
// pointer.
#[allow(clippy::box_collection)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Upload the out dir's file of the same path (pool files).
    Upload,
    /// Upload `local` to `PATH.new` (dist files; renamed at finalisation).
    UploadDotNew { local: Arc<PathBuf> },
    /// Rename `PATH.new` to the path; `local` is its source, should `PATH.new` have gone
    /// missing since it was uploaded.
    RenameDotNew { local: Arc<PathBuf> },
    /// Make the path a symlink to `target`.
    Symlink { target: Box<String> },
    /// Remove the path: a file the repository no longer has (`POOLDELETE`, `DISTDELETE`),
    /// which `keepdeleted` holds back.
    Delete,
    /// Remove the path: a `.new` of ours left by a cut-off run, never renamed; not held.
    RemoveStale,
}

/// An action with the log it came from (whose journal records it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub log: usize,
    pub path: RelPath,
    pub action: Action,
}

/// One distribution (or snapshot) directory's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistDir {
    pub dir: RelPath,
    /// Files to upload as `.new`.
    pub uploads: Vec<Job>,
    /// Its finalisation, step by step.
    pub steps: Steps<Job>,
}

/// Everything a run has to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Entries superseded by a newer log's finished entry: to be journalled `obsoleted` in
    /// their (older) log now.
    pub obsoleted: Vec<(usize, RelPath)>,
    /// Older logs whose entry for a path the planned job for that path supersedes: they are
    /// journalled `obsoleted` when (and only when) that job completes.
    pub supersedes: HashMap<RelPath, Vec<usize>>,
    pub pool_uploads: Vec<Job>,
    pub dist_dirs: Vec<DistDir>,
    pub pool_deletes: Vec<Job>,
    /// Directories of pool files whose deletion an earlier, cut-off run journalled: they may
    /// still need pruning.
    pub prune: BTreeSet<RelPath>,
    /// For each log, how many jobs are left for it; a log at 0 is finished.
    pub remaining: Vec<usize>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.pool_uploads.is_empty()
            && self.dist_dirs.is_empty()
            && self.pool_deletes.is_empty()
            && self.prune.is_empty()
    }

    /// Every job, in the order the rounds run them (see [`order`]): uploads, pool and
    /// distributions together, then each finalisation step of every distribution, then
    /// pool deletions.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        let uploads = self.dist_dirs.iter().flat_map(|d| &d.uploads);
        let finalising = Finalise::ALL
            .into_iter()
            .flat_map(|step| self.dist_dirs.iter().flat_map(move |d| &d.steps[step]));
        self.pool_uploads
            .iter()
            .chain(uploads)
            .chain(finalising)
            .chain(&self.pool_deletes)
    }
}

/// The repository's deletions, taken out of a plan to be held back (`keepdeleted`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeldBack {
    /// `POOLDELETE`s.
    pub pool: Vec<Job>,
    /// For each of the plan's distribution directories (as indexed there), its
    /// `DISTDELETE`s: held once it is finalised.
    pub dists: Vec<Vec<Job>>,
}

impl Plan {
    /// Takes the repository's deletions (not the removals of stale `.new` files of ours)
    /// out of the plan, to be held back instead of carried out.
    pub fn take_deletions(&mut self) -> HeldBack {
        let pool = std::mem::take(&mut self.pool_deletes);
        let dists = self
            .dist_dirs
            .iter_mut()
            .map(|d| {
                let (held, stale) = std::mem::take(&mut d.steps[Finalise::Deletions])
                    .into_iter()
                    .partition(|j| j.action == Action::Delete);
                d.steps[Finalise::Deletions] = stale;
                held
            })
            .collect();
        HeldBack { pool, dists }
    }
}

impl Job {
    /// One line, as `--dry-run` and `status -v` print it.
    pub fn describe(&self) -> String {
        let p = &self.path;
        match &self.action {
            Action::Upload => format!("upload {p}"),
            Action::UploadDotNew { .. } => format!("upload {p}.new"),
            Action::RenameDotNew { .. } => format!("rename {p}.new {p}"),
            Action::Symlink { target } => format!("symlink {p} -> {target}"),
            Action::Delete | Action::RemoveStale => format!("remove {p}"),
        }
    }

    /// Where in the finalisation of its distribution directory `dir` the job goes.
    fn finalise_step(&self, dir: &RelPath) -> Finalise {
        let path = self.path.text();
        let name = &path[dir.text().len() + 1..];
        Finalise::of(
            name,
            matches!(self.action, Action::Delete | Action::RemoveStale),
        )
    }
}

/// Who claimed a path for the plan.
#[derive(Debug, Clone, Copy)]
struct Claim {
    /// The log, as a u32: a claim per path, and 100 000 paths in a plan.
    log: u32,
    finished: bool,
    /// The claim deletes the path or makes it a symlink: no `.new` of it is ever renamed.
    ends_file: bool,
}

/// Who claimed each pool path: an open-addressed table of the lines that claimed one (the
/// path is found there) and their claims, 8 bytes a slot, at most seven eighths full. A map
/// of paths to claims took 17 bytes a slot, 2 MB of a plan of 100 000 files, at its peak
/// (the logs, the plan and the claims all held).
struct PoolClaims {
    /// (the line's index in its log, the claim packed by [`PoolClaims::pack`]); a free
    /// slot's line is [`FREE`]. Its length is a power of two.
    slots: Vec<(u32, u32)>,
    len: usize,
    hasher: RandomState,
}

/// The line of a free slot of [`PoolClaims`].
const FREE: u32 = u32::MAX;

impl PoolClaims {
    fn with_capacity(n: usize) -> PoolClaims {
        PoolClaims {
            slots: vec![(FREE, 0); Self::slots_for(n)],
            len: 0,
            hasher: RandomState::new(),
        }
    }

    /// Slots enough for `n` claims.
    fn slots_for(n: usize) -> usize {
        (n + n / 7 + 1).next_power_of_two().max(16)
    }

    /// A pool claim: its log and whether it is finished (a pool claim never ends a file).
    fn pack(claim: Claim) -> u32 {
        debug_assert!(!claim.ends_file);
        assert!(claim.log < 1 << 31, "fewer than 2 billion logs");
        claim.log << 1 | u32::from(claim.finished)
    }

    fn unpack(packed: u32) -> Claim {
        Claim {
            log: packed >> 1,
            finished: packed & 1 == 1,
            ends_file: false,
        }
    }

    /// The pool path of line `line` of log `log`.
    fn path(logs: &[Outlog], log: u32, line: u32) -> &RelPath {
        match &logs[log as usize].lines[line as usize].1 {
            Line::PoolNew(path) | Line::PoolDelete(path) => path,
            _ => unreachable!("a pool claim is a pool line's"),
        }
    }

    /// The slot of `path`'s claim, or the free one where it goes.
    fn slot(&self, logs: &[Outlog], path: &RelPath) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut slot = self.hasher.hash_one(path) as usize & mask;
        loop {
            match self.slots[slot] {
                (FREE, _) => return Err(slot),
                (line, packed) if Self::path(logs, packed >> 1, line) == path => return Ok(slot),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    fn get(&self, logs: &[Outlog], path: &RelPath) -> Option<Claim> {
        let slot = self.slot(logs, path).ok()?;
        Some(Self::unpack(self.slots[slot].1))
    }

    /// Records the claim of `path`, named by line `line` of the claim's log.
    fn insert(&mut self, logs: &[Outlog], path: &RelPath, line: u32, claim: Claim) {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow(logs);
        }
        let slot = match self.slot(logs, path) {
            Ok(slot) | Err(slot) => slot,
        };
        if self.slots[slot].0 == FREE {
            self.len += 1;
        }
        self.slots[slot] = (line, Self::pack(claim));
    }

    /// Twice as many slots, every claim put in again.
    fn grow(&mut self, logs: &[Outlog]) {
        let slots = vec![(FREE, 0); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, slots);
        let mask = self.slots.len() - 1;
        for (line, packed) in old.into_iter().filter(|&(line, _)| line != FREE) {
            let path = Self::path(logs, packed >> 1, line);
            let mut slot = self.hasher.hash_one(path) as usize & mask;
            while self.slots[slot].0 != FREE {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = (line, packed);
        }
    }
}

/// `path.new`, where dist files wait to be renamed into place.
fn dot_new(path: &RelPath) -> RelPath {
    RelPath::new(&format!("{path}.new")).expect("a RelPath with a suffix is one")
}

/// The dist dir `dir` of the plan, made on first use.
fn dist_dir_entry<'a>(dists: &'a mut BTreeMap<RelPath, DistDir>, dir: &RelPath) -> &'a mut DistDir {
    dists.entry(dir.clone()).or_insert_with(|| DistDir {
        dir: dir.clone(),
        uploads: Vec::new(),
        steps: Default::default(),
    })
}

/// Builds the plan from logs given oldest first, for the first mirror (its journal lines
/// are `DONE`).
#[cfg(test)]
pub fn plan(logs: &[Outlog]) -> Plan {
    plan_for(logs, None)
}

/// Builds the plan of one mirror from logs given oldest first: `journal_tag` is the name
/// its journal lines carry (`DONE@NAME`), `None` for the first mirror's plain `DONE`. The
/// other mirrors' lines are not its business.
pub fn plan_for(logs: &[Outlog], journal_tag: Option<&str>) -> Plan {
    // Sized once: a plan of 100 000 files grown by doubling holds half as much again, and
    // a map that grows holds its old table beside the new one for a moment.
    let lines = logs.iter().flat_map(|l| &l.lines);
    let pool_new = lines.filter(|(_, l)| matches!(l, Line::PoolNew(_))).count();
    let changes = logs.iter().map(|l| l.lines.len()).sum();
    let mut planner = Planner {
        plan: Plan {
            remaining: vec![0; logs.len()],
            pool_uploads: Vec::with_capacity(pool_new),
            ..Plan::default()
        },
        pool_claims: PoolClaims::with_capacity(changes),
        logs,
        dist_claims: HashMap::new(),
        dists: BTreeMap::new(),
        dot_new_removals: BTreeSet::new(),
    };
    for (log, outlog) in logs.iter().enumerate().rev() {
        let journal: HashMap<&RelPath, DoneMessage> = outlog
            .lines
            .iter()
            .filter_map(|(_, line)| match line {
                Line::Done {
                    mirror,
                    message,
                    path,
                } if mirror.as_deref().map(String::as_str) == journal_tag => Some((path, *message)),
                _ => None,
            })
            .collect();
        // Within one log a later line is newer: walk it backwards so the last one wins.
        for (at, (_, line)) in outlog.lines.iter().enumerate().rev() {
            if let Some(mut entry) = Entry::of(line, &journal) {
                entry.line = u32::try_from(at).expect("fewer than 4 billion lines in a log");
                planner.add(log, entry, &journal);
            }
        }
    }
    planner.finish()
}

/// One line of a log that asks for a change: the path, what to do, and the distribution
/// directory it belongs to (none for the pool).
struct Entry<'a> {
    path: RelPath,
    /// The path as the line holds it, for a pool line.
    pool_path: Option<&'a RelPath>,
    /// Where the line is in its log.
    line: u32,
    action: Action,
    dist_dir: Option<&'a RelPath>,
    /// A `DISTFILE`: the file is uploaded as `.new`.
    is_dist_file: bool,
}

impl<'a> Entry<'a> {
    fn of(line: &'a Line, journal: &HashMap<&RelPath, DoneMessage>) -> Option<Entry<'a>> {
        let (path, action, dist_dir) = match line {
            Line::PoolNew(key) => (key.clone(), Action::Upload, None),
            Line::PoolDelete(key) => (key.clone(), Action::Delete, None),
            Line::DistFile { dir, name, local } => {
                let path = dir.join(name);
                // One copy, shared by the upload and the rename.
                let local = Arc::new(PathBuf::clone(local));
                let action = if journal.get(&path) == Some(&DoneMessage::AsDotNew) {
                    Action::RenameDotNew { local }
                } else {
                    Action::UploadDotNew { local }
                };
                (path, action, Some(&**dir))
            }
            Line::DistSymlink { dir, name, target } => (
                dir.join(name),
                Action::Symlink {
                    target: target.clone(),
                },
                Some(&**dir),
            ),
            Line::DistDelete { dir, name } => (dir.join(name), Action::Delete, Some(&**dir)),
            Line::Begin(_) | Line::End(_) | Line::DistKeep { .. } | Line::Done { .. } => {
                return None;
            }
        };
        let pool_path = match line {
            Line::PoolNew(key) | Line::PoolDelete(key) => Some(key),
            _ => None,
        };
        Some(Entry {
            path,
            pool_path,
            line: 0,
            action,
            dist_dir,
            is_dist_file: matches!(line, Line::DistFile { .. }),
        })
    }
}

/// The plan while the logs are read, newest first.
struct Planner<'a> {
    plan: Plan,
    /// Paths claimed by a log (a newer one, or a later line of the same one), whether that
    /// entry is finished, and by which log: older entries are obsoleted.
    /// Pool paths are found in the logs' lines (a big plan is mostly pool paths); dist
    /// paths are made of a directory and a name. The two never meet.
    pool_claims: PoolClaims,
    logs: &'a [Outlog],
    dist_claims: HashMap<RelPath, Claim>,
    dists: BTreeMap<RelPath, DistDir>,
    /// The `.new` files planned for removal (one job each, by the newest log that left one).
    dot_new_removals: BTreeSet<RelPath>,
}

impl<'a> Planner<'a> {
    /// Who claimed the path of `entry`, if anyone.
    fn claim(&self, entry: &Entry<'a>) -> Option<Claim> {
        match entry.pool_path {
            Some(path) => self.pool_claims.get(self.logs, path),
            None => self.dist_claims.get(&entry.path).copied(),
        }
    }

    /// Plans one entry of log `log`, whose journal is `journal`.
    fn add(&mut self, log: usize, entry: Entry<'a>, journal: &HashMap<&RelPath, DoneMessage>) {
        let path = &entry.path;
        let finished = journal
            .get(path)
            .is_some_and(|m| *m != DoneMessage::AsDotNew);
        if let (Some(claim), Some(dir)) = (self.claim(&entry), entry.dist_dir)
            && claim.log as usize != log
            && claim.ends_file
            && entry.is_dist_file
            && journal.get(path) != Some(&DoneMessage::Done)
            && !journal.contains_key(&dot_new(path))
        {
            self.remove_unrenamed_dot_new(log, path, dir);
        }
        if let Some(claim) = self.claim(&entry) {
            // An earlier line of the same log is superseded by its later one silently: the
            // later line's entry stands for the path in that log's journal.
            if claim.log as usize != log && !finished {
                if claim.finished {
                    self.plan.obsoleted.push((log, entry.path));
                } else {
                    self.plan
                        .supersedes
                        .entry(entry.path)
                        .or_default()
                        .push(log);
                }
            }
            return;
        }
        let claim = Claim {
            log: u32::try_from(log).expect("fewer than 4 billion logs"),
            finished,
            ends_file: entry.dist_dir.is_some() && !entry.is_dist_file,
        };
        match entry.pool_path {
            Some(pool_path) => self
                .pool_claims
                .insert(self.logs, pool_path, entry.line, claim),
            None => {
                self.dist_claims.insert(path.clone(), claim);
            }
        };
        if finished {
            if let (Action::Delete, None) = (&entry.action, entry.dist_dir) {
                self.plan.prune.extend(path.parent());
            }
            return;
        }
        self.plan.remaining[log] += 1;
        self.add_job(log, entry);
    }

    /// An older upload of `path` as `.new` (journalled asdotnew, or in flight when a run was
    /// killed) is never renamed now that a newer log deletes the path or makes it a link:
    /// it is removed, or it stays on the mirror for ever.
    fn remove_unrenamed_dot_new(&mut self, log: usize, path: &RelPath, dir: &RelPath) {
        let new = dot_new(path);
        if self.dot_new_removals.insert(new.clone()) {
            self.plan.remaining[log] += 1;
            dist_dir_entry(&mut self.dists, dir).steps[Finalise::Deletions].push(Job {
                log,
                path: new,
                action: Action::RemoveStale,
            });
        } else {
            self.plan.supersedes.entry(new).or_default().push(log);
        }
    }

    /// Puts an unfinished entry's job where it runs.
    fn add_job(&mut self, log: usize, entry: Entry<'_>) {
        let job = Job {
            log,
            path: entry.path,
            action: entry.action,
        };
        let Some(dir) = entry.dist_dir else {
            match job.action {
                Action::Delete => self.plan.pool_deletes.push(job),
                _ => self.plan.pool_uploads.push(job),
            }
            return;
        };
        let d = dist_dir_entry(&mut self.dists, dir);
        let step = job.finalise_step(dir);
        let finalising = match job.action {
            Action::UploadDotNew { ref local } => {
                let rename = Job {
                    action: Action::RenameDotNew {
                        local: local.clone(),
                    },
                    ..job.clone()
                };
                d.uploads.push(job);
                rename
            }
            _ => job,
        };
        d.steps[step].push(finalising);
    }

    /// Jobs were collected newest log first and lines backwards: puts them in log order.
    fn finish(self) -> Plan {
        let mut plan = self.plan;
        plan.pool_uploads.reverse();
        plan.pool_deletes.reverse();
        plan.obsoleted.reverse();
        for mut d in self.dists.into_values() {
            d.uploads.reverse();
            for step in d.steps.iter_mut() {
                step.reverse();
            }
            plan.dist_dirs.push(d);
        }
        plan
    }
}

#[cfg(test)]
mod tests;
