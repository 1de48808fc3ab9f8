//! The one safe order of a change, which the hook's rounds, `mirror`, `status` and
//! `--dry-run` all follow: an apt client reading the remote at any moment finds every file
//! an index it can see names. Pure: no I/O.
//!
//! 1. [`Stage::Clear`], [`Stage::Mkdir`] (`mirror` only): what stands where a directory or a
//!    file must go, then the missing directories;
//! 2. [`Stage::Upload`]: new pool files at their names, distribution files as `NAME.new`
//!    (nothing names either yet), then [`Stage::PoolLinks`];
//! 3. [`Stage::Finalise`], per distribution directory and step by step ([`Finalise`]):
//!    indexes renamed into place and symlinks, then `Release` and `Release.gpg`, then
//!    `InRelease`, then what the directory no longer has (the old `Release` named it until
//!    then);
//! 4. [`Stage::Delete`]: pool files (nothing names them any more) and, for `mirror
//!    --delete`, what only the remote has; then [`Stage::Prune`]: directories left empty,
//!    deepest first.

use std::ops::{Index, IndexMut};

use crate::relpath::RelPath;

/// The stages of a change, in the order they run; each is finished before the next starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Clear,
    Mkdir,
    Upload,
    PoolLinks,
    Finalise(Finalise),
    Delete,
    Prune,
}

/// The steps that finalise a distribution directory, in order. On a server that carries out
/// requests in the order sent, the renames of the first three may go in one batch (see the
/// hook's rounds): `Release` is still renamed after its indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finalise {
    /// Indexes renamed from `NAME.new`, and symlinks.
    Indexes,
    /// `Release` and `Release.gpg`.
    Release,
    /// `InRelease`, last of what names files.
    InRelease,
    /// What the directory no longer has.
    Deletions,
}

impl Finalise {
    /// What the step does, in an administrator's words.
    pub fn describe(self) -> &'static str {
        match self {
            Finalise::Indexes => "indexes renamed into place",
            Finalise::Release => "Release files renamed into place",
            Finalise::InRelease => "InRelease files renamed into place",
            Finalise::Deletions => "what the distributions no longer have removed",
        }
    }

    pub const ALL: [Finalise; 4] = [
        Finalise::Indexes,
        Finalise::Release,
        Finalise::InRelease,
        Finalise::Deletions,
    ];

    /// The step of a change to `name` (a path relative to its distribution directory):
    /// `deletes` for a removal.
    pub fn of(name: &str, deletes: bool) -> Finalise {
        match name {
            _ if deletes => Finalise::Deletions,
            "InRelease" => Finalise::InRelease,
            "Release" | "Release.gpg" => Finalise::Release,
            _ => Finalise::Indexes,
        }
    }
}

/// Work per finalisation step, indexed by [`Finalise`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps<T>([Vec<T>; 4]);

impl<T> Default for Steps<T> {
    fn default() -> Self {
        Steps(Default::default())
    }
}

impl<T> Steps<T> {
    /// Each step's work, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Vec<T>> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Vec<T>> {
        self.0.iter_mut()
    }
}

impl<T> Index<Finalise> for Steps<T> {
    type Output = Vec<T>;
    fn index(&self, step: Finalise) -> &Vec<T> {
        &self.0[step as usize]
    }
}

impl<T> IndexMut<Finalise> for Steps<T> {
    fn index_mut(&mut self, step: Finalise) -> &mut Vec<T> {
        &mut self.0[step as usize]
    }
}

/// The distribution directory a path of `dists/` belongs to, and the path's name inside it:
/// `dists/CODENAME`, or `dists/CODENAME/snapshots/NAME` for what is in a snapshot.
pub fn dist_dir_of(path: &RelPath) -> Option<(String, String)> {
    let p = path.text();
    let parts: Vec<&str> = p.splitn(5, '/').collect();
    let dir_len = match parts.as_slice() {
        ["dists", _, "snapshots", _, _] => 4,
        ["dists", _, _, ..] => 2,
        _ => return None,
    };
    let len: usize = parts[..dir_len].iter().map(|s| s.len() + 1).sum::<usize>() - 1;
    Some((p[..len].to_owned(), p[len + 1..].to_owned()))
}

/// Directories grouped by depth, deepest first: each level can go at once once the one
/// below it is gone.
pub fn levels_deepest_first(mut dirs: Vec<RelPath>) -> Vec<Vec<RelPath>> {
    let depth = |p: &RelPath| p.text().matches('/').count();
    dirs.sort_by_key(|p| std::cmp::Reverse(depth(p)));
    let mut levels: Vec<Vec<RelPath>> = Vec::new();
    for dir in dirs {
        match levels.last_mut() {
            Some(level) if depth(&level[0]) == depth(&dir) => level.push(dir),
            _ => levels.push(vec![dir]),
        }
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(path: &str, deletes: bool) -> Finalise {
        let path = RelPath::new(path).unwrap();
        let (_, name) = dist_dir_of(&path).unwrap();
        Finalise::of(&name, deletes)
    }

    #[test]
    fn release_files_count_only_at_the_top_of_a_distribution_or_snapshot() {
        assert_eq!(step("dists/b/InRelease", false), Finalise::InRelease);
        assert_eq!(step("dists/b/Release.gpg", false), Finalise::Release);
        assert_eq!(
            step("dists/b/main/binary-amd64/Release", false),
            Finalise::Indexes
        );
        assert_eq!(
            step("dists/b/snapshots/s1/Release", false),
            Finalise::Release
        );
        assert_eq!(
            step("dists/b/snapshots/s1/main/Release", false),
            Finalise::Indexes
        );
        assert_eq!(step("dists/b/Release", true), Finalise::Deletions);
    }

    #[test]
    fn a_distribution_directory_is_a_codename_or_a_snapshot_of_one() {
        let dir = |p: &str| {
            dist_dir_of(&RelPath::new(p).unwrap()).map(|(d, n)| (d.to_owned(), n.to_owned()))
        };
        assert_eq!(
            dir("dists/b/main/Packages"),
            Some(("dists/b".into(), "main/Packages".into()))
        );
        assert_eq!(
            dir("dists/b/snapshots/s/InRelease"),
            Some(("dists/b/snapshots/s".into(), "InRelease".into()))
        );
        assert_eq!(dir("dists/b"), None);
        assert_eq!(dir("pool/main/a.deb"), None);
    }

    #[test]
    fn empty_directories_go_a_level_at_a_time_deepest_first() {
        let dirs =
            ["pool/a", "pool/a/b/c", "pool/d/e", "pool/a/b"].map(|p| RelPath::new(p).unwrap());
        let levels = levels_deepest_first(dirs.to_vec());
        let levels: Vec<Vec<String>> = levels
            .iter()
            .map(|l| l.iter().map(RelPath::to_string).collect())
            .collect();
        assert_eq!(
            levels,
            [
                vec!["pool/a/b/c"],
                vec!["pool/d/e", "pool/a/b"],
                vec!["pool/a"]
            ]
        );
    }

    #[test]
    fn stages_run_uploads_before_any_release_and_deletions_after() {
        assert!(Stage::Upload < Stage::Finalise(Finalise::Indexes));
        assert!(Stage::Finalise(Finalise::InRelease) < Stage::Finalise(Finalise::Deletions));
        assert!(Stage::Finalise(Finalise::Deletions) < Stage::Delete);
    }
}
