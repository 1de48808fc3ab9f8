//! Whole trees, local and remote, and their differences: what `mirror` and `verify` work on.
//!
//! A tree maps repository paths to what is there: a directory, a file (size, modification
//! time) or a symlink (target). The remote tree is listed through the engine, a directory
//! level at a time with every directory of a level listed at once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::engine::{Cause, Engine, Op, Outcome};
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File {
        size: u64,
        mtime: u32,
    },
    Link(Vec<u8>),
    /// A remote symlink whose READLINK failed (why): never equal to anything, so `verify`
    /// reports it and `mirror` replaces it. asyncssh's server in a chroot fails READLINK
    /// of every relative link.
    UnreadableLink(String),
    /// A remote directory (so its parent's listing says) that the server would not list
    /// (why): its contents are unknown, so nothing below it is compared, deleted or taken
    /// for current; `verify` reports it and `mirror` fails on it, leaving it as it is.
    UnlistableDir(String),
}

impl Node {
    pub fn is_link(&self) -> bool {
        matches!(self, Node::Link(_) | Node::UnreadableLink(_))
    }
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

/// What a copy of a local symlink holds, as `rsync -L` would send it: the file it leads to,
/// or the tree of the directory it leads to (links in it followed too), each entry at the
/// repository path it takes below `at`, with the local file it is read from.
#[derive(Debug, Default)]
pub struct Followed {
    pub entries: Vec<(RelPath, Node, PathBuf)>,
}

/// A link whose copy cannot or must not be made: what it leads to does not exist
/// (`dangling`), or lies outside `root`, or leads back into itself (refused the way a
/// forged outlog's source is).
#[derive(Debug)]
pub struct RefusedCopy {
    pub why: String,
    pub dangling: bool,
}

impl fmt::Display for RefusedCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for RefusedCopy {}

/// Follows the local link (or file) `source`, which stands at repository path `at`:
/// everything it leads to, confined to `root` (already resolved) after resolving every
/// symlink, as the hook confines its other local sources.
pub fn follow(source: &Path, at: &RelPath, root: &Path) -> Result<Followed, RefusedCopy> {
    let mut followed = Followed::default();
    let mut ancestors = Vec::new();
    follow_into(source, at, root, &mut ancestors, &mut followed)?;
    Ok(followed)
}

fn follow_into(
    source: &Path,
    at: &RelPath,
    root: &Path,
    ancestors: &mut Vec<PathBuf>,
    out: &mut Followed,
) -> Result<(), RefusedCopy> {
    let refuse = |why: String| RefusedCopy {
        why: format!("{at}: {why}"),
        dangling: false,
    };
    let resolved = source.canonicalize().map_err(|e| RefusedCopy {
        why: format!(
            "{at}: {} cannot be followed ({e}): there is nothing to copy",
            source.display()
        ),
        dangling: e.kind() == std::io::ErrorKind::NotFound,
    })?;
    if !resolved.starts_with(root) {
        return Err(refuse(format!(
            "{} leads to {}, outside {}: refused, no copy of it is uploaded",
            source.display(),
            resolved.display(),
            root.display()
        )));
    }
    let meta = std::fs::metadata(&resolved)
        .map_err(|e| refuse(format!("cannot read {}: {e}", resolved.display())))?;
    if meta.is_file() {
        out.entries.push((
            at.clone(),
            Node::File {
                size: meta.len(),
                mtime: mtime_of(&meta),
            },
            resolved,
        ));
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(refuse(format!(
            "{} is not a file or directory: no copy of it is made",
            resolved.display()
        )));
    }
    if ancestors.contains(&resolved) {
        return Err(refuse(format!(
            "{} leads back into a directory it is in: a copy would never end",
            source.display()
        )));
    }
    let entries = std::fs::read_dir(&resolved)
        .map_err(|e| refuse(format!("cannot list {}: {e}", resolved.display())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| refuse(format!("cannot list {}: {e}", resolved.display())))?;
        match entry
            .file_name()
            .to_str()
            .and_then(|n| RelPath::new(n).ok())
        {
            Some(name) => names.push(name),
            None => log::warn!(
                "skipping {}: not a name outsftphook can mirror",
                entry.path().display()
            ),
        }
    }
    names.sort();
    out.entries.push((at.clone(), Node::Dir, resolved.clone()));
    ancestors.push(resolved.clone());
    for name in names {
        follow_into(
            &resolved.join(name.as_str()),
            &at.join(&name),
            root,
            ancestors,
            out,
        )?;
    }
    ancestors.pop();
    Ok(())
}

/// Replaces each local symlink of `tree` for which `which` says so by what it leads to
/// (see [`follow`]): a link below `pool` must lead into the out dir's `pool`, one below
/// `dists` into its `dists`. Returns how many links were followed.
pub fn follow_links(
    tree: &mut Tree,
    outdir: &Path,
    which: &dyn Fn(&RelPath) -> bool,
) -> anyhow::Result<usize> {
    let links: Vec<RelPath> = tree
        .iter()
        .filter(|(p, n)| matches!(n, Node::Link(_)) && which(p))
        .map(|(p, _)| p.clone())
        .collect();
    for path in &links {
        let top = outdir.join(path.first_component());
        let root = top
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", top.display()))?;
        tree.remove(path);
        match follow(&outdir.join(path.as_str()), path, &root) {
            Ok(followed) => {
                for (p, node, _) in followed.entries {
                    tree.insert(p, node);
                }
            }
            // rsync -L says "symlink has no referent" and goes on: so does this.
            Err(e) if e.dangling => log::warn!("{e}; skipped"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(links.len())
}

/// Lists the remote tree below the top directories.
pub fn scan_remote(
    engine: &mut Engine,
    targetdir: Option<&RemotePath>,
    tops: &[RelPath],
) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    // A top that is a symlink (`pool -> /elsewhere`) is a link to replace, never a
    // directory to list: OPENDIR would follow it, and `--delete` would then delete what is
    // there. READLINK tells, where an LSTAT may follow the link (ProFTPD's does).
    let readlinks: Vec<Op> = tops
        .iter()
        .map(|p| Op::Readlink {
            path: remote_path(targetdir, p),
        })
        .collect();
    let mut level = Vec::new();
    for (top, result) in tops.iter().zip(engine.run(&readlinks, |_, _| {})?) {
        match result {
            Ok(Outcome::Target(target)) => {
                tree.insert(top.clone(), Node::Link(target));
            }
            _ => level.push(top.clone()),
        }
    }
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
            let top = tops.contains(dir);
            let entries = match result {
                Ok(Outcome::Listing(entries)) => entries,
                // A top may well be absent; a directory its parent just listed is not:
                // some servers say NO_SUCH_FILE for one they cannot list (paramiko's
                // example server, for one holding a dangling symlink).
                Ok(Outcome::AlreadyAbsent) if top => continue,
                Ok(Outcome::AlreadyAbsent) => {
                    let why = "the server says it does not exist".to_string();
                    tree.insert(dir.clone(), Node::UnlistableDir(why));
                    continue;
                }
                Ok(other) => anyhow::bail!("listing {dir}: unexpected {other:?}"),
                Err(e) if e.cause == Cause::Interrupted || top => {
                    return Err(e).context("cannot list the remote tree");
                }
                // One directory the server will not list is one difference, not the end of
                // the comparison.
                Err(e) => {
                    tree.insert(dir.clone(), Node::UnlistableDir(e.cause.to_string()));
                    continue;
                }
            };
            tree.insert(dir.clone(), Node::Dir);
            for entry in entries {
                let Some(name) = std::str::from_utf8(&entry.name)
                    .ok()
                    .and_then(|n| RelPath::new(n).ok())
                    .filter(|n| !n.as_str().contains('/'))
                else {
                    log::warn!(
                        "skipping remote {dir}/{}: not a name outsftphook can mirror",
                        entry.name.escape_ascii()
                    );
                    continue;
                };
                let path = dir.join(&name);
                let a = &entry;
                if a.is_dir() {
                    next.push(path);
                } else if a.is_symlink() {
                    links.push(path);
                } else {
                    let node = Node::File {
                        size: a.size.unwrap_or(0),
                        mtime: a.mtime.unwrap_or(0),
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
            let node = match result {
                Ok(Outcome::Target(target)) => Node::Link(target),
                Err(e) if e.cause == Cause::Interrupted => {
                    return Err(e).context("cannot read the remote symlinks");
                }
                // One link the server cannot read is one difference, not the end of the
                // comparison.
                Err(e) => Node::UnreadableLink(e.cause.to_string()),
                Ok(other) => Node::UnreadableLink(format!("READLINK answered {other:?}")),
            };
            tree.insert(path, node);
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
            Node::UnreadableLink(why) => write!(f, "symlink that cannot be read ({why})"),
            Node::UnlistableDir(why) => write!(f, "directory that cannot be listed ({why})"),
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

/// Takes the remote symlinks that mean what the local ones say as equal to them. Some
/// servers answer READLINK of a relative link with the absolute path it leads to (ProFTPD:
/// `dists/stable -> bookworm` reads as `/TARGETDIR/dists/bookworm`); such an answer matches
/// the local relative target resolved from the link's directory. Where `targetdir` is
/// relative (or unset) the absolute path of the start directory is unknown, so the answer
/// must end with the resolved path.
pub fn reconcile_links(local: &Tree, remote: &mut Tree, targetdir: Option<&RemotePath>) {
    for (path, node) in remote.iter_mut() {
        if let (Some(Node::Link(wanted)), Node::Link(got)) = (local.get(path), &*node)
            && wanted != got
            && link_means(path, wanted, got, targetdir)
        {
            *node = Node::Link(wanted.clone());
        }
    }
}

/// Removes `.` and empty components and resolves `..` lexically; `None` when `..` climbs
/// above the start of a relative path (where it leads is unknown then).
fn normalize(path: &[u8]) -> Option<Vec<&[u8]>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts)
}

/// Whether the absolute READLINK answer `got` names where the relative target `wanted`
/// of the link at `path` leads.
fn link_means(path: &RelPath, wanted: &[u8], got: &[u8], targetdir: Option<&RemotePath>) -> bool {
    if !got.starts_with(b"/") || wanted.starts_with(b"/") {
        return false;
    }
    // The link's directory as the server names it (a top directory's is the target dir).
    let from = match path.as_str().rsplit_once('/') {
        Some((dir, _)) => match RelPath::new(dir) {
            Ok(dir) => remote_path(targetdir, &dir).as_bytes().to_vec(),
            Err(_) => return false,
        },
        None => targetdir.map_or(Vec::new(), |t| t.as_bytes().to_vec()),
    };
    let absolute = from.starts_with(b"/");
    let mut resolved = from;
    resolved.push(b'/');
    resolved.extend_from_slice(wanted);
    let (Some(resolved), Some(got)) = (normalize(&resolved), normalize(got)) else {
        return false;
    };
    if absolute {
        resolved == got
    } else {
        got.ends_with(&resolved)
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
    // Below a directory the server would not list nothing is known: the one difference is
    // the directory itself.
    let unlistable: Vec<RelPath> = remote
        .iter()
        .filter(|(_, n)| matches!(n, Node::UnlistableDir(_)))
        .map(|(p, _)| p.clone())
        .collect();
    out.retain(|(p, _)| !unlistable.iter().any(|u| p != u && p.starts_with(u)));
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
    fn absolute_readlink_answers_match_the_relative_links_they_resolve() {
        let t = |s: &str| RemotePath::new(s).unwrap();
        let stable = r("dists/stable");
        let abs = Some(t("/srv/mirror"));
        assert!(link_means(
            &stable,
            b"bookworm",
            b"/srv/mirror/dists/bookworm",
            abs.as_ref()
        ));
        assert!(link_means(
            &stable,
            b"./bookworm/",
            b"/srv/mirror/dists/bookworm",
            abs.as_ref()
        ));
        assert!(!link_means(
            &stable,
            b"bookworm",
            b"/srv/other/dists/bookworm",
            abs.as_ref()
        ));
        assert!(!link_means(
            &stable,
            b"trixie",
            b"/srv/mirror/dists/bookworm",
            abs.as_ref()
        ));
        let deep = r("pool/main/f/foo/link.deb");
        assert!(link_means(
            &deep,
            b"../../b/bar/x.deb",
            b"/srv/mirror/pool/main/b/bar/x.deb",
            abs.as_ref()
        ));
        // A relative or unset target dir: the answer ends with where the link leads.
        let rel = Some(t("mirror"));
        assert!(link_means(
            &stable,
            b"bookworm",
            b"/home/u/mirror/dists/bookworm",
            rel.as_ref()
        ));
        assert!(link_means(&stable, b"bookworm", b"/dists/bookworm", None));
        assert!(!link_means(&stable, b"bookworm", b"/dists/trixie", None));
        // Climbing above where the path is known, or absolute on both sides: no guess.
        assert!(!link_means(&stable, b"../../x", b"/x", None));
        assert!(!link_means(&stable, b"/a/b", b"/a/c", None));
    }

    #[test]
    fn reconciled_links_leave_no_difference_and_other_ones_stay() {
        let local = Tree::from([
            (r("dists/stable"), Node::Link(b"bookworm".to_vec())),
            (r("dists/testing"), Node::Link(b"trixie".to_vec())),
        ]);
        let mut remote = Tree::from([
            (r("dists/stable"), Node::Link(b"/m/dists/bookworm".to_vec())),
            (
                r("dists/testing"),
                Node::Link(b"/m/dists/bookworm".to_vec()),
            ),
        ]);
        let target = RemotePath::new("/m").unwrap();
        reconcile_links(&local, &mut remote, Some(&target));
        let d = diff(&local, &remote);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, r("dists/testing"));
    }

    #[test]
    fn following_a_link_copies_its_file_or_tree_and_stays_confined() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let dists = out.join("dists");
        std::fs::create_dir_all(dists.join("bookworm/main")).unwrap();
        std::fs::write(dists.join("bookworm/Release"), "R").unwrap();
        std::fs::write(dists.join("bookworm/main/Packages"), "PP").unwrap();
        std::fs::create_dir_all(dists.join("bookworm/empty")).unwrap();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, dists.join(at));
        link("bookworm", "stable").unwrap();
        link("bookworm/Release", "rel").unwrap();
        link("../..", "out").unwrap();
        link("nowhere", "dangling").unwrap();
        link(".", "bookworm/self").unwrap();
        let root = dists.canonicalize().unwrap();

        let file = follow(&dists.join("rel"), &r("dists/rel"), &root).unwrap();
        assert_eq!(file.entries.len(), 1);
        assert_eq!(file.entries[0].0, r("dists/rel"));
        assert!(matches!(file.entries[0].1, Node::File { size: 1, .. }));
        assert_eq!(file.entries[0].2, root.join("bookworm/Release"));

        // A loop inside is refused (the copy would never end).
        let looped = follow(&dists.join("stable"), &r("dists/stable"), &root).unwrap_err();
        assert!(
            !looped.dangling && looped.why.contains("leads back"),
            "{looped}"
        );
        std::fs::remove_file(dists.join("bookworm/self")).unwrap();
        let tree = follow(&dists.join("stable"), &r("dists/stable"), &root).unwrap();
        let paths: Vec<&str> = tree.entries.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dists/stable",
                "dists/stable/Release",
                "dists/stable/empty",
                "dists/stable/main",
                "dists/stable/main/Packages"
            ]
        );

        let outside = follow(&dists.join("out"), &r("dists/out"), &root).unwrap_err();
        assert!(
            !outside.dangling && outside.why.contains("outside"),
            "{outside}"
        );
        let dangling = follow(&dists.join("dangling"), &r("dists/dangling"), &root).unwrap_err();
        assert!(dangling.dangling, "{dangling}");

        // follow_links: the chosen links become what they lead to; a dangling one goes.
        let mut tree = scan_local(&out, &[r("dists")]).unwrap();
        std::fs::remove_file(dists.join("out")).unwrap();
        tree.remove(&r("dists/out"));
        let n = follow_links(&mut tree, &out, &|p| p.as_str() != "dists/rel").unwrap();
        assert_eq!(n, 2);
        assert_eq!(tree[&r("dists/stable")], Node::Dir);
        assert!(matches!(
            tree[&r("dists/stable/main/Packages")],
            Node::File { size: 2, .. }
        ));
        assert_eq!(
            tree[&r("dists/rel")],
            Node::Link(b"bookworm/Release".to_vec())
        );
        assert!(!tree.contains_key(&r("dists/dangling")));
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
