//! The local tree below the top directories, and the copies of symlinks: what a link leads
//! to, confined to the repository. Reads the local disk; never talks to a server.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::plan::tree::{Node, Tree};
use crate::relpath::RelPath;

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
        let full = path.under(outdir);
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
    let names = sorted_names(&resolved).map_err(refuse)?;
    out.entries.push((at.clone(), Node::Dir, resolved.clone()));
    ancestors.push(resolved.clone());
    for name in names {
        follow_into(
            &name.under(&resolved),
            &at.join(&name),
            root,
            ancestors,
            out,
        )?;
    }
    ancestors.pop();
    Ok(())
}

/// The names in directory `dir` that can be mirrored, sorted; the others are skipped with
/// a warning.
fn sorted_names(dir: &Path) -> Result<Vec<RelPath>, String> {
    let cannot_list = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(cannot_list)? {
        let entry = entry.map_err(cannot_list)?;
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
    Ok(names)
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
        match follow(&path.under(outdir), path, &root) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
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
        let paths: Vec<String> = tree.entries.iter().map(|(p, _, _)| p.to_string()).collect();
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
        let n = follow_links(&mut tree, &out, &|p| p.text() != "dists/rel").unwrap();
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
