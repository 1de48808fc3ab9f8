//! Whole trees, local and remote, and their differences: what `mirror` and `verify` work on.
//!
//! A tree maps repository paths to what is there: a directory, a file (size, modification
//! time) or a symlink (target). The remote tree is listed through the engine, a directory
//! level at a time with every directory of a level listed at once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::Context;

use crate::pipeline::{Engine, Op, Outcome};
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { size: u64, mtime: u32 },
    Link(Vec<u8>),
}

/// A tree below some top directories, by repository path.
pub type Tree = BTreeMap<RelPath, Node>;

/// Where a repository path is on the remote.
pub fn remote_path(targetdir: Option<&RemotePath>, path: &RelPath) -> RemotePath {
    let rel = path.as_str().as_bytes();
    match targetdir {
        Some(t) => t.join(rel).expect("a RelPath joins to a valid remote path"),
        None => RemotePath::new(rel).expect("a RelPath is a valid remote path"),
    }
}

fn mtime_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::MetadataExt;
    u32::try_from(meta.mtime().max(0)).unwrap_or(u32::MAX)
}

/// A local file's modification time as SFTP version 3 carries it (seconds, 32 bits).
pub fn local_mtime(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| mtime_of(&m))
}

/// Scans `outdir/top` for each top directory. A missing top is an empty tree.
pub fn scan_local(outdir: &Path, tops: &[RelPath]) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    let mut todo: Vec<RelPath> = tops.to_vec();
    while let Some(path) = todo.pop() {
        let full = outdir.join(path.as_str());
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tops.contains(&path) => {
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", full.display())),
        };
        let node = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full)
                .with_context(|| format!("cannot read the link {}", full.display()))?;
            Node::Link(target.into_os_string().into_encoded_bytes())
        } else if meta.is_dir() {
            let entries = std::fs::read_dir(&full)
                .with_context(|| format!("cannot list {}", full.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("cannot list {}", full.display()))?;
                let name = entry.file_name();
                let Some(name) = name.to_str().and_then(|n| RelPath::new(n).ok()) else {
                    log::warn!(
                        "skipping {}: not a name outsftphook can mirror",
                        entry.path().display()
                    );
                    continue;
                };
                todo.push(path.join(&name));
            }
            Node::Dir
        } else if meta.is_file() {
            Node::File {
                size: meta.len(),
                mtime: mtime_of(&meta),
            }
        } else {
            log::warn!(
                "skipping {}: not a file, directory or symlink",
                full.display()
            );
            continue;
        };
        tree.insert(path, node);
    }
    Ok(tree)
}

/// Lists the remote tree below the top directories.
pub fn scan_remote(
    engine: &mut Engine,
    targetdir: Option<&RemotePath>,
    tops: &[RelPath],
) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    let mut level: Vec<RelPath> = tops.to_vec();
    let mut links = Vec::new();
    while !level.is_empty() {
        let ops: Vec<Op> = level
            .iter()
            .map(|p| Op::List {
                path: remote_path(targetdir, p),
            })
            .collect();
        let results = engine.run_spread(&ops, |_, _| {})?;
        let mut next = Vec::new();
        for (dir, result) in level.iter().zip(results) {
            let entries = match result {
                Ok(Outcome::Listing(entries)) => entries,
                Ok(Outcome::AlreadyAbsent) => continue,
                Ok(other) => anyhow::bail!("listing {dir}: unexpected {other:?}"),
                Err(e) => return Err(e).context("cannot list the remote tree"),
            };
            tree.insert(dir.clone(), Node::Dir);
            for entry in entries {
                let Some(name) = std::str::from_utf8(&entry.filename)
                    .ok()
                    .and_then(|n| RelPath::new(n).ok())
                    .filter(|n| !n.as_str().contains('/'))
                else {
                    log::warn!(
                        "skipping remote {dir}/{}: not a name outsftphook can mirror",
                        entry.filename.escape_ascii()
                    );
                    continue;
                };
                let path = dir.join(&name);
                let a = &entry.attrs;
                if a.is_dir() {
                    next.push(path);
                } else if a.is_symlink() {
                    links.push(path);
                } else {
                    let node = Node::File {
                        size: a.size.unwrap_or(0),
                        mtime: a.times.map_or(0, |(_, m)| m),
                    };
                    tree.insert(path, node);
                }
            }
        }
        level = next;
    }
    if !links.is_empty() {
        let ops: Vec<Op> = links
            .iter()
            .map(|p| Op::Readlink {
                path: remote_path(targetdir, p),
            })
            .collect();
        for (path, result) in links.into_iter().zip(engine.run(&ops, |_, _| {})?) {
            match result {
                Ok(Outcome::Target(target)) => {
                    tree.insert(path, Node::Link(target));
                }
                Ok(other) => anyhow::bail!("reading the link {path}: unexpected {other:?}"),
                Err(e) => return Err(e).context("cannot read a remote symlink"),
            }
        }
    }
    Ok(tree)
}

/// How a path differs between the local and the remote tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Local, not on the remote.
    Missing(Node),
    /// On the remote, not local.
    Extra(Node),
    /// On both, not the same; `local` is what it should be.
    Changed { local: Node, remote: Node },
    /// Same size and time, other content (only found by comparing content).
    Content,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Dir => write!(f, "directory"),
            Node::File { size, mtime } => write!(f, "file of {size} bytes, time {mtime}"),
            Node::Link(t) => write!(f, "symlink to {}", t.escape_ascii()),
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Missing(n) => write!(f, "missing: local {n}"),
            Difference::Extra(n) => write!(f, "extra: remote {n}"),
            Difference::Changed { local, remote } => {
                write!(f, "differs: local {local}, remote {remote}")
            }
            Difference::Content => write!(f, "differs: same size and time, other content"),
        }
    }
}

/// Every path that is not the same on both sides, in path order.
pub fn diff(local: &Tree, remote: &Tree) -> Vec<(RelPath, Difference)> {
    let mut out = Vec::new();
    for (path, l) in local {
        match remote.get(path) {
            None => out.push((path.clone(), Difference::Missing(l.clone()))),
            Some(r) if r != l => out.push((
                path.clone(),
                Difference::Changed {
                    local: l.clone(),
                    remote: r.clone(),
                },
            )),
            Some(_) => {}
        }
    }
    for (path, r) in remote {
        if !local.contains_key(path) {
            out.push((path.clone(), Difference::Extra(r.clone())));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn differences_are_found_by_type_size_time_and_target() {
        let file = |size, mtime| Node::File { size, mtime };
        let local = Tree::from([
            (r("pool"), Node::Dir),
            (r("pool/a"), file(1, 10)),
            (r("pool/b"), file(2, 20)),
            (r("pool/c"), file(3, 30)),
            (r("dists/stable"), Node::Link(b"bookworm".to_vec())),
        ]);
        let remote = Tree::from([
            (r("pool"), Node::Dir),
            (r("pool/a"), file(1, 10)),
            (r("pool/b"), file(2, 21)),
            (r("pool/x"), file(9, 9)),
            (r("dists/stable"), Node::Link(b"trixie".to_vec())),
        ]);
        let d = diff(&local, &remote);
        let paths: Vec<&str> = d.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["dists/stable", "pool/b", "pool/c", "pool/x"]);
        assert!(matches!(d[0].1, Difference::Changed { .. }));
        assert!(matches!(d[2].1, Difference::Missing(_)));
        assert!(matches!(d[3].1, Difference::Extra(_)));
        assert_eq!(
            d[1].1.to_string(),
            "differs: local file of 2 bytes, time 20, remote file of 2 bytes, time 21"
        );
        assert!(diff(&local, &local).is_empty());
    }

    #[test]
    fn a_local_scan_sees_files_links_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::create_dir_all(out.join("pool/main")).unwrap();
        std::fs::write(out.join("pool/main/x.deb"), "abc").unwrap();
        std::fs::create_dir_all(out.join("dists/bookworm")).unwrap();
        std::os::unix::fs::symlink("bookworm", out.join("dists/stable")).unwrap();
        let tree = scan_local(out, &[r("pool"), r("dists"), r("missing")]).unwrap();
        assert_eq!(tree.len(), 6);
        assert!(matches!(
            tree[&r("pool/main/x.deb")],
            Node::File { size: 3, .. }
        ));
        assert_eq!(tree[&r("dists/stable")], Node::Link(b"bookworm".to_vec()));
        assert_eq!(tree[&r("pool/main")], Node::Dir);
    }
}
