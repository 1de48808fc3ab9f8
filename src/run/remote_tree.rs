//! The remote tree below the top directories, listed through the engine a directory level
//! at a time, every directory of a level at once, then every symlink read at once. It
//! must not change the remote, nor compare: that is [`crate::plan::tree`]'s.

use anyhow::Context;

use crate::engine::{Cause, Engine, Op, Outcome};
use crate::plan::tree::{Node, Tree, remote_path};
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;

/// Lists the remote tree below the top directories.
pub fn scan_remote(
    engine: &mut Engine,
    targetdir: Option<&RemotePath>,
    tops: &[RelPath],
) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    let mut level = top_dirs(engine, targetdir, tops, &mut tree)?;
    let mut links = Vec::new();
    while !level.is_empty() {
        level = list_level(engine, targetdir, tops, &level, &mut tree, &mut links)?;
    }
    read_links(engine, targetdir, links, &mut tree)?;
    Ok(tree)
}

/// The tops to list; those that are symlinks go into `tree` as links. A top that is a
/// symlink (`pool -> /elsewhere`) is a link to replace, never a directory to list:
/// OPENDIR would follow it, and `--delete` would then delete what is there. READLINK
/// tells, where an LSTAT may follow the link (ProFTPD's does).
fn top_dirs(
    engine: &mut Engine,
    targetdir: Option<&RemotePath>,
    tops: &[RelPath],
    tree: &mut Tree,
) -> anyhow::Result<Vec<RelPath>> {
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
    Ok(level)
}

/// Lists every directory of `level` at once into `tree`; returns the next level (the
/// directories found) and adds the symlinks found to `links`.
fn list_level(
    engine: &mut Engine,
    targetdir: Option<&RemotePath>,
    tops: &[RelPath],
    level: &[RelPath],
    tree: &mut Tree,
    links: &mut Vec<RelPath>,
) -> anyhow::Result<Vec<RelPath>> {
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
                .filter(|n| n.parent().is_none())
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
    Ok(next)
}

/// Reads the symlinks found, all at once, into `tree`.
fn read_links(
    engine: &mut Engine,
    targetdir: Option<&RemotePath>,
    links: Vec<RelPath>,
    tree: &mut Tree,
) -> anyhow::Result<()> {
    if links.is_empty() {
        return Ok(());
    }
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
    Ok(())
}
