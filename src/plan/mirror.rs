//! `mirror`'s plan: from the differences between the local and the remote tree to the
//! changes that repair them, grouped in the safe order of [`super::order`]. Pure: no I/O;
//! the run side turns each [`Change`] into an engine operation.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::order::{Finalise, Stage, Steps, dist_dir_of, levels_deepest_first};
use super::tree::{Difference, Node, Tree};
use crate::relpath::RelPath;

/// One change to the remote, by repository path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Upload the out dir's file of the path, to `PATH.new` when `dot_new` (distribution
    /// files, renamed into place later) and made durable then; `size` and `mtime` are the
    /// local file's as scanned.
    Upload {
        path: RelPath,
        dot_new: bool,
        size: u64,
        mtime: u32,
    },
    /// Rename `PATH.new` to the path.
    Rename {
        path: RelPath,
    },
    Symlink {
        path: RelPath,
        target: Vec<u8>,
    },
    Mkdir {
        path: RelPath,
    },
    Remove {
        path: RelPath,
    },
    Rmdir {
        path: RelPath,
    },
}

impl Change {
    /// The repository path it changes.
    pub fn path(&self) -> &RelPath {
        match self {
            Change::Upload { path, .. }
            | Change::Rename { path }
            | Change::Symlink { path, .. }
            | Change::Mkdir { path }
            | Change::Remove { path }
            | Change::Rmdir { path } => path,
        }
    }

    /// One line, as `--dry-run` and `-v` print it.
    pub fn describe(&self) -> String {
        match self {
            Change::Upload {
                path,
                dot_new: true,
                ..
            } => format!("upload {path}.new"),
            Change::Upload { path, .. } => format!("upload {path}"),
            Change::Rename { path } => format!("rename {path}.new {path}"),
            Change::Symlink { path, target } => {
                format!("symlink {path} -> {}", target.escape_ascii())
            }
            Change::Mkdir { path } => format!("mkdir {path}"),
            Change::Remove { path } => format!("remove {path}"),
            Change::Rmdir { path } => format!("rmdir {path}"),
        }
    }
}

/// What a mirror run does, in order: each group finishes before the next starts.
#[derive(Debug, Default)]
pub struct MirrorPlan {
    pub groups: Vec<Vec<Change>>,
    /// Uploads and their bytes, for the progress line and summary.
    pub files: u64,
    pub bytes: u64,
    /// Differences that mirroring cannot fix (a directory where a file must be).
    pub conflicts: Vec<String>,
    /// Remote files, links and directories `--delete` removes (what `--max-delete` counts).
    pub deletions: u64,
    /// The groups that finalise distributions (indexes, then `Release`, then `InRelease`):
    /// what the run guards, to put a distribution back should one of them fail.
    pub finalising: Range<usize>,
}

/// The changes of one plan, by stage, before they are put in order.
#[derive(Default)]
struct Stages {
    clear: Vec<Change>,
    mkdirs: Vec<Change>,
    pool_uploads: Vec<Change>,
    dist_uploads: Vec<Change>,
    pool_links: Vec<Change>,
    finalise: Steps<Change>,
    removes: Vec<Change>,
    rmdirs: Vec<RelPath>,
}

impl Stages {
    /// The groups in the order of [`Stage`]: what is in the way, directories, uploads, pool
    /// links, each finalisation step (deletions of a distribution's files go with every
    /// other deletion, after it), deletions, then directories deepest first; and which of
    /// them finalise distributions.
    fn into_groups(mut self) -> (Vec<Vec<Change>>, Range<usize>) {
        let mut groups = Vec::new();
        let mut add = |stage: Stage, group: Vec<Change>| {
            debug_assert!(groups.last().is_none_or(|(s, _)| *s <= stage));
            groups.push((stage, group));
        };
        add(Stage::Clear, self.clear);
        add(Stage::Mkdir, self.mkdirs);
        self.pool_uploads.append(&mut self.dist_uploads);
        add(Stage::Upload, self.pool_uploads);
        add(Stage::PoolLinks, self.pool_links);
        for step in [Finalise::Indexes, Finalise::Release, Finalise::InRelease] {
            add(
                Stage::Finalise(step),
                std::mem::take(&mut self.finalise[step]),
            );
        }
        add(Stage::Delete, self.removes);
        for level in levels_deepest_first(self.rmdirs) {
            add(
                Stage::Prune,
                level
                    .into_iter()
                    .map(|path| Change::Rmdir { path })
                    .collect(),
            );
        }
        groups.retain(|(_, g)| !g.is_empty());
        // The finalisation's groups follow each other (the stages are in order).
        let finalises = |(stage, _): &(Stage, Vec<Change>)| matches!(stage, Stage::Finalise(_));
        let first = groups.iter().position(finalises).unwrap_or(0);
        let finalising = first..first + groups.iter().filter(|g| finalises(g)).count();
        (groups.into_iter().map(|(_, g)| g).collect(), finalising)
    }
}

fn is_dists(path: &RelPath) -> bool {
    path.first_component() == "dists"
}

/// Whether `path` is a distribution file's previous version kept while it is replaced,
/// `.NAME.prev` beside it (the run's guard names them so: `run::guard::kept_name`), which
/// a run cut off before removing it leaves: no file of reprepro's, and never one to keep.
pub fn is_kept(path: &RelPath) -> bool {
    let name = path.file_name();
    is_dists(path)
        && name.len() > ".prev".len() + 1
        && name.starts_with('.')
        && name.ends_with(".prev")
}

/// `path.new`, if that is a valid path.
fn dot_new(path: &RelPath) -> Option<RelPath> {
    RelPath::new(&format!("{path}.new")).ok()
}

/// Plans the changes that make the remote like `local`, given their `differences`; with
/// `delete`, what only the remote has goes too.
pub fn plan_mirror(
    local: &Tree,
    differences: Vec<(RelPath, Difference)>,
    delete: bool,
) -> MirrorPlan {
    let mut planner = Planner {
        local,
        delete,
        // What is only on the remote, to find what stands at an index's `.new` name; those
        // removed before the upload are not deletions.
        extras: differences
            .iter()
            .filter_map(|(p, d)| match d {
                Difference::Extra(n) => Some((p.clone(), n.clone())),
                _ => None,
            })
            .collect(),
        cleared: BTreeSet::new(),
        plan: MirrorPlan::default(),
        stages: Stages::default(),
    };
    for (path, difference) in differences {
        planner.add(path, difference);
    }
    let mut plan = planner.plan;
    (plan.groups, plan.finalising) = planner.stages.into_groups();
    plan
}

struct Planner<'a> {
    local: &'a Tree,
    delete: bool,
    extras: BTreeMap<RelPath, Node>,
    /// `.new` names whose remote leftovers are removed before an upload.
    cleared: BTreeSet<RelPath>,
    plan: MirrorPlan,
    stages: Stages,
}

impl Planner<'_> {
    /// Plans the repair of one difference.
    fn add(&mut self, path: RelPath, difference: Difference) {
        if let Difference::Changed {
            remote: Node::UnlistableDir(why),
            ..
        }
        | Difference::Extra(Node::UnlistableDir(why)) = &difference
        {
            self.plan.conflicts.push(format!(
                "{path}: the server cannot list this remote directory ({why}): nothing in it \
                 is compared, uploaded or deleted (check it on the server)"
            ));
            return;
        }
        if let Difference::Changed {
            local: Node::File { .. } | Node::Link(_),
            remote: Node::Dir,
        } = &difference
        {
            self.plan.conflicts.push(format!(
                "{path}: a directory on the remote, a file locally (remove it by hand)"
            ));
            return;
        }
        let wanted = match &difference {
            Difference::Missing(n) => Some(n.clone()),
            Difference::Changed { local, .. } => Some(local.clone()),
            // Same size and time, other content (found by --checksum): upload it again.
            Difference::Content => self.local.get(&path).cloned(),
            Difference::Extra(_) => None,
        };
        match (wanted, &difference) {
            (Some(Node::File { size, mtime }), _) => self.file(path, &difference, size, mtime),
            (Some(Node::Link(target)), _) => self.link(path, target),
            (Some(Node::Dir), Difference::Missing(_)) => {
                self.stages.mkdirs.push(Change::Mkdir { path });
            }
            (Some(Node::Dir), _) => {
                // A file or link where a directory must be: it goes, then the directory.
                self.stages
                    .clear
                    .push(Change::Remove { path: path.clone() });
                self.stages.mkdirs.push(Change::Mkdir { path });
            }
            (None, Difference::Extra(_)) if self.cleared.contains(&path) => {}
            // Ours, not the repository's: it goes with the deletions, `--delete` or not,
            // and is not one (a run that replaces the file again replaces it first).
            (None, Difference::Extra(Node::File { .. })) if is_kept(&path) => {
                self.stages.removes.push(Change::Remove { path });
            }
            (None, Difference::Extra(Node::Dir)) if self.delete => {
                self.plan.deletions += 1;
                self.stages.rmdirs.push(path);
            }
            (None, Difference::Extra(_)) if self.delete => {
                self.plan.deletions += 1;
                self.stages.removes.push(Change::Remove { path });
            }
            _ => {}
        }
    }

    /// A file to upload: pool files to their names, distribution files to `.new` and renamed
    /// in their finalisation step.
    fn file(&mut self, path: RelPath, difference: &Difference, size: u64, mtime: u32) {
        // Whatever stands at an index's `.new` name (a leftover, or a symlink that would
        // take the upload elsewhere) goes first.
        let new = dot_new(&path).filter(|_| is_dists(&path));
        match new.as_ref().and_then(|n| self.extras.get(n)) {
            Some(Node::Dir) => {
                self.plan.conflicts.push(format!(
                    "{path}.new: a directory on the remote, in the way of the upload of \
                     {path} (remove it by hand)"
                ));
                return;
            }
            Some(_) => {
                let new = new.expect("found by it");
                self.stages.clear.push(Change::Remove { path: new.clone() });
                self.cleared.insert(new);
            }
            None => {}
        }
        self.plan.files += 1;
        self.plan.bytes += size;
        // A remote symlink in the file's place goes first: opening it for writing would
        // write through it, wherever it points, and so would a rename onto it on ProFTPD
        // (which renames onto the link's target).
        if let Difference::Changed { remote, .. } = difference
            && remote.is_link()
        {
            self.stages
                .clear
                .push(Change::Remove { path: path.clone() });
        }
        let dot_new = is_dists(&path);
        if dot_new {
            let step = finalise_step(&path);
            self.stages.finalise[step].push(Change::Rename { path: path.clone() });
        }
        let upload = Change::Upload {
            path,
            dot_new,
            size,
            mtime,
        };
        if dot_new {
            self.stages.dist_uploads.push(upload);
        } else {
            self.stages.pool_uploads.push(upload);
        }
    }

    /// A symlink to make: in a distribution with its indexes, in the pool before them.
    fn link(&mut self, path: RelPath, target: Vec<u8>) {
        let dists = is_dists(&path);
        let change = Change::Symlink { path, target };
        if dists {
            self.stages.finalise[Finalise::Indexes].push(change);
        } else {
            self.stages.pool_links.push(change);
        }
    }
}

/// The finalisation step of a file of `dists/` (one directly in `dists/`, outside any
/// distribution, goes with the indexes).
fn finalise_step(path: &RelPath) -> Finalise {
    dist_dir_of(path).map_or(Finalise::Indexes, |(_, name)| Finalise::of(&name, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn file() -> Node {
        Node::File { size: 3, mtime: 7 }
    }

    fn described(plan: &MirrorPlan) -> Vec<Vec<String>> {
        plan.groups
            .iter()
            .map(|g| g.iter().map(Change::describe).collect())
            .collect()
    }

    #[test]
    fn a_mirror_runs_in_the_safe_order_of_the_hook() {
        let local: Tree = [
            (r("dists/b/InRelease"), file()),
            (r("dists/b/Release"), file()),
            (r("dists/b/main/Packages"), file()),
            (r("dists/stable"), Node::Link(b"b".to_vec())),
            (r("pool/a.deb"), file()),
        ]
        .into_iter()
        .collect();
        let mut differences: Vec<(RelPath, Difference)> = local
            .iter()
            .map(|(p, n)| (p.clone(), Difference::Missing(n.clone())))
            .collect();
        differences.push((r("pool/old"), Difference::Extra(Node::Dir)));
        differences.push((r("pool/old/x.deb"), Difference::Extra(file())));
        differences.push((r("dists/b/main/Packages.new"), Difference::Extra(file())));
        differences.sort_by(|a, b| a.0.cmp(&b.0));
        let plan = plan_mirror(&local, differences, true);
        assert_eq!(
            described(&plan),
            [
                vec!["remove dists/b/main/Packages.new"],
                vec![
                    "upload pool/a.deb",
                    "upload dists/b/InRelease.new",
                    "upload dists/b/Release.new",
                    "upload dists/b/main/Packages.new",
                ],
                vec![
                    "rename dists/b/main/Packages.new dists/b/main/Packages",
                    "symlink dists/stable -> b"
                ],
                vec!["rename dists/b/Release.new dists/b/Release"],
                vec!["rename dists/b/InRelease.new dists/b/InRelease"],
                vec!["remove pool/old/x.deb"],
                vec!["rmdir pool/old"],
            ]
        );
        // The leftover .new removed first is not a deletion.
        assert_eq!((plan.files, plan.bytes, plan.deletions), (4, 12, 2));
        assert_eq!(plan.finalising, 2..5);
    }

    #[test]
    fn what_mirroring_cannot_repair_is_a_conflict_and_nothing_is_planned_for_it() {
        let local: Tree = [(r("pool/a"), file())].into_iter().collect();
        let differences = vec![(
            r("pool/a"),
            Difference::Changed {
                local: file(),
                remote: Node::Dir,
            },
        )];
        let plan = plan_mirror(&local, differences, true);
        assert!(plan.groups.is_empty());
        assert_eq!(plan.conflicts.len(), 1, "{:?}", plan.conflicts);
    }

    #[test]
    fn a_previous_version_a_cut_off_run_kept_goes_with_or_without_delete() {
        for delete in [false, true] {
            let differences = vec![
                (r("dists/b/.Release.prev"), Difference::Extra(file())),
                (
                    r("dists/b/main/.Packages.gz.prev"),
                    Difference::Extra(file()),
                ),
                (r("dists/b/main/Release.prev"), Difference::Extra(file())),
                (r("pool/.a.deb.prev"), Difference::Extra(file())),
            ];
            let plan = plan_mirror(&Tree::new(), differences, delete);
            let mut removed = vec![
                "remove dists/b/.Release.prev",
                "remove dists/b/main/.Packages.gz.prev",
            ];
            if delete {
                removed.push("remove dists/b/main/Release.prev");
                removed.push("remove pool/.a.deb.prev");
            }
            assert_eq!(described(&plan), [removed], "--delete {delete}");
            assert_eq!(plan.deletions, if delete { 2 } else { 0 });
        }
    }

    #[test]
    fn without_delete_what_only_the_remote_has_stays() {
        let differences = vec![(r("pool/x"), Difference::Extra(file()))];
        let plan = plan_mirror(&Tree::new(), differences, false);
        assert!(plan.groups.is_empty());
        assert_eq!(plan.deletions, 0);
    }
}
