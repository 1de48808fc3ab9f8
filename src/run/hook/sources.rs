//! The hook's local sources: what an outlog names is found (a relative DISTFILE path from
//! the base dir) and checked before anything is sent: it must lie where reprepro writes
//! (the dist dir, the pool) and be a regular file. It must not send or journal anything.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Settings, Symlinks};
use crate::relpath::RelPath;
use crate::repo::outlog::{Line, Outlog};

/// reprepro writes DISTFILE paths as it knows them, relative to its own working directory
/// when its dist dir is relative (`-b .` gives `./dists/...`). Run by hand from elsewhere,
/// such a path is found from the base dir instead.
pub(super) fn resolve_relative_sources(outlogs: &mut [Outlog], basedir: Option<&Path>) {
    let Some(basedir) = basedir else { return };
    for log in outlogs {
        for (_, line) in &mut log.lines {
            if let Line::DistFile { local, .. } = line
                && local.is_relative()
                && !local.exists()
            {
                let from_base = basedir.join(&**local);
                if from_base.exists() {
                    **local = from_base;
                }
            }
        }
    }
}

/// Refuses, before anything is sent, a local source that an outlog may not make us publish:
/// a DISTFILE's file outside the dist dir, a pool file outside the pool (both after
/// resolving symlinks, so that `..` or a symlinked component cannot lead out; a dist dir or
/// `pool` that is itself a symlink is the administrator's layout and is followed), or one
/// that exists but is not a regular file (a directory, a device, a FIFO: an outlog must not
/// make us read /dev/zero).
pub(super) fn check_local_sources(outlogs: &[Outlog], settings: &Settings) -> anyhow::Result<()> {
    let dist_root = dist_root(settings)?;
    let pool = settings.outdir.join("pool");
    let pool_root =
        resolve_path(&pool).with_context(|| format!("cannot resolve {}", pool.display()))?;
    for log in outlogs {
        for (number, line) in &log.lines {
            let at = || format!("{}:{number}", log.path.display());
            let (local, root, what) = match line {
                Line::PoolNew(key) => (key.under(&settings.outdir), &pool_root, "pool"),
                Line::DistFile { local, .. } => (local.to_path_buf(), &dist_root, "dist dir"),
                // With `symlinks copy` a link's copy is a local source too.
                Line::DistSymlink { dir, name, target } if settings.symlinks == Symlinks::Copy => {
                    let path = dir.join(name);
                    let source = link_source(&settings.distdir, &path, target);
                    match crate::repo::scan::follow(&source, &path, &dist_root) {
                        Err(e) if !e.dangling => {
                            anyhow::bail!("{}: {e}; nothing was sent", at())
                        }
                        _ => continue,
                    }
                }
                _ => continue,
            };
            let resolved = resolve_path(&local).with_context(|| {
                format!(
                    "{}: cannot resolve the local file {}",
                    at(),
                    local.display()
                )
            })?;
            if !resolved.starts_with(root) {
                anyhow::bail!(
                    "{}: {} lies outside the {what} {}{}: refused (reprepro writes only \
                     there; is the log forged, or a directory a symlink to elsewhere?); \
                     nothing was sent",
                    at(),
                    local.display(),
                    root.display(),
                    if resolved == local {
                        String::new()
                    } else {
                        format!(" (it resolves to {})", resolved.display())
                    }
                );
            }
            if let Ok(meta) = std::fs::metadata(&resolved)
                && !meta.is_file()
            {
                anyhow::bail!("{}: {} is not a regular file", at(), local.display());
            }
        }
    }
    Ok(())
}

/// The dist dir with every symlink resolved: where the local sources of dist files (and the
/// copies of dist links) must lie.
pub(super) fn dist_root(settings: &Settings) -> anyhow::Result<PathBuf> {
    resolve_path(&settings.distdir)
        .with_context(|| format!("cannot resolve the dist dir {}", settings.distdir.display()))
}

/// Where the local link of the dist path `path` (`dists/CODENAME/...`) leads, unresolved:
/// its directory in the dist dir, joined with `target`.
pub(super) fn link_source(distdir: &Path, path: &RelPath, target: &str) -> PathBuf {
    let path = path.text();
    let below = path.strip_prefix("dists/").unwrap_or(&path);
    let link = distdir.join(below);
    link.parent().unwrap_or(distdir).join(target)
}

/// `path` made absolute with every symlink resolved, for the part that exists; a missing
/// rest is appended as it is (an upload of it fails later, and says so), but may not
/// climb out with `..`, which could not be resolved.
fn resolve_path(path: &Path) -> anyhow::Result<PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut resolved) => {
                for part in rest.iter().rev() {
                    match part {
                        Component::Normal(name) => resolved.push(name),
                        Component::CurDir => {}
                        _ => anyhow::bail!(
                            "{}: '..' below a directory that does not exist",
                            path.display()
                        ),
                    }
                }
                return Ok(resolved);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(parent) = existing.parent() else {
                    return Err(e.into());
                };
                rest.extend(existing.components().next_back());
                existing = parent;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
