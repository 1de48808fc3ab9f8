//! Whole trees and their differences: what `mirror` and `verify` compare. Pure: no I/O.
//!
//! A tree maps repository paths to what is there: a directory, a file (size, modification
//! time) or a symlink (target). [`crate::repo::scan`] reads the local one and
//! [`crate::run::remote_tree`] lists the remote one.

use std::collections::BTreeMap;
use std::fmt;

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
    let rel = path.text();
    let rel = rel.as_bytes();
    match targetdir {
        Some(t) => t.join(rel).expect("a RelPath joins to a valid remote path"),
        None => RemotePath::new(rel).expect("a RelPath is a valid remote path"),
    }
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
    let text = path.text();
    let from = match text.rsplit_once('/') {
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
        let paths: Vec<String> = d.iter().map(|(p, _)| p.to_string()).collect();
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
}
