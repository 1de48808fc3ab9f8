//! A distribution's finalisation that fails half-way is put back as it was: the guard the
//! hook ([`super::hook`]) and `mirror` ([`super::sync`]) both put around the renames that
//! publish a distribution. Before them, each file they replace is kept as a hard link,
//! `.NAME.prev` beside it (where the server offers `hardlink@openssh.com`; reprepro names
//! no file with a leading dot). If a change of the finalisation fails (an index, `Release`
//! or `InRelease`), every file already replaced is put back from its link and every new
//! one taken away, so that apt sees the distribution exactly as before the run instead of
//! new indexes under the old `Release` ("Hash Sum mismatch"); the new content stays as
//! `NAME.new`. Once all went well the links go.
//!
//! Without a link (not offered, or refused) a failure is said in one line: which files are
//! new beside which old ones, and that a rerun finishes the run.
//!
//! It owns the links, their removal, putting back and what is said of it. It must not
//! decide the order of the finalisation (its callers send the renames in the plan's
//! order, the links ahead of them where the server acts in order) nor journal (the hook
//! defers its journal lines around it, [`super::hook`]'s rollback).

use std::collections::HashSet;
use std::time::Instant;

use crate::engine::{Op, OpResult, Status};
use crate::plan::order::dist_dir_of;
use crate::plan::tree::remote_path;
use crate::relpath::RelPath;
use crate::remote_path::RemotePath;
use crate::run::output::Tally;
use crate::run::runner::Runner;

/// The name the previous version of `path` is kept under while it is replaced.
pub(crate) fn kept_name(path: &RemotePath) -> RemotePath {
    let bytes = path.as_bytes();
    let slash = bytes.iter().rposition(|&b| b == b'/').map_or(0, |s| s + 1);
    let mut kept = bytes[..slash].to_vec();
    kept.push(b'.');
    kept.extend_from_slice(&bytes[slash..]);
    kept.extend_from_slice(b".prev");
    RemotePath::new(kept).expect("a remote path with a longer last name is one")
}

/// What the lines say of the run a guard is in.
#[derive(Debug, Clone)]
pub(crate) struct Words {
    /// What the run is called: "push", "mirror run".
    pub(crate) run: &'static str,
    /// The command that runs it again.
    pub(crate) rerun: String,
}

/// What was at a renamed file's name before the finalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prior {
    /// A file, kept as a hard link under this name.
    Kept(RemotePath),
    /// Nothing: the file is new in this finalisation.
    Fresh,
    /// Not known, or not kept (why is [`Guard::unkept`]).
    Unknown,
}

/// One rename of the finalisation.
struct File {
    /// Its distribution, by index into [`Guard::dirs`].
    dist: usize,
    path: RelPath,
    remote: RemotePath,
    prior: Prior,
    /// The server confirmed the rename.
    renamed: bool,
}

/// The renames of the finalisation of some distributions, with what they may be put back
/// with.
pub(crate) struct Guard {
    /// The distribution directories, by index.
    dirs: Vec<RelPath>,
    files: Vec<File>,
    /// Links are asked for, one per file.
    keeping: bool,
    /// Why some file could not be kept (the first reason), for the line a failure says.
    unkept: Option<String>,
    words: Words,
}

impl Guard {
    /// A guard for `renames` (each with its distribution, by index into `dirs`), in the
    /// order they are sent, below `targetdir`.
    pub(crate) fn new(
        dirs: Vec<RelPath>,
        renames: Vec<(usize, RelPath)>,
        targetdir: Option<&RemotePath>,
        words: Words,
    ) -> Guard {
        let files = renames
            .into_iter()
            .map(|(dist, path)| File {
                dist,
                remote: remote_path(targetdir, &path),
                path,
                prior: Prior::Unknown,
                renamed: false,
            })
            .collect();
        Guard {
            dirs,
            files,
            keeping: false,
            unkept: None,
            words,
        }
    }

    /// Keeps the previous version of each file, as a hard link, where the server offers
    /// them (each made over a link a killed run left). On a server that acts in order it
    /// returns them, to go ahead of the first renames in their flight (their results come
    /// back through [`Guard::linked`]); on any other it makes them in a flight of its own
    /// and returns none.
    pub(crate) fn keep_previous(
        &mut self,
        runner: &mut Runner<'_>,
        started: Instant,
    ) -> anyhow::Result<Vec<Op>> {
        if self.files.is_empty() {
            return Ok(Vec::new());
        }
        let engine = runner.engine();
        if !engine.offers_hardlink() {
            self.unkept = Some("the server does not offer hardlink@openssh.com".into());
            return Ok(Vec::new());
        }
        self.keeping = true;
        let links: Vec<Op> = self
            .files
            .iter()
            .map(|f| Op::Hardlink {
                from: f.remote.clone(),
                to: kept_name(&f.remote),
            })
            .collect();
        if engine.in_order() {
            return Ok(links);
        }
        let results = engine.run(&links, |_, _| {})?;
        self.linked(results.into_iter().enumerate().collect());
        log::info!(
            "{} file(s) the finalisation replaces kept as hard links, after {:.2} s",
            self.files
                .iter()
                .filter(|f| matches!(f.prior, Prior::Kept(_)))
                .count(),
            started.elapsed().as_secs_f64()
        );
        Ok(Vec::new())
    }

    /// Whether links are asked for: the server offers them and there is something to keep.
    pub(crate) fn keeps_links(&self) -> bool {
        self.keeping
    }

    /// The paths guarded, in order (indexes for [`Guard::standing`]).
    pub(crate) fn paths(&self) -> impl Iterator<Item = &RelPath> {
        self.files.iter().map(|f| &f.path)
    }

    /// Notes the renames of `done` as confirmed by the server.
    pub(crate) fn confirm<'a>(&mut self, done: impl IntoIterator<Item = &'a RelPath>) {
        let done: HashSet<&RelPath> = done.into_iter().collect();
        for f in &mut self.files {
            f.renamed |= done.contains(&f.path);
        }
    }

    /// What became of the links, by file: kept, or nothing there to keep, or not kept.
    pub(crate) fn linked(&mut self, results: Vec<(usize, OpResult)>) {
        for (k, result) in results {
            let f = &mut self.files[k];
            f.prior = match result {
                Ok(_) => Prior::Kept(kept_name(&f.remote)),
                Err(e) if e.status() == Some(Status::NoSuchFile) => Prior::Fresh,
                Err(e) => {
                    log::info!("{} cannot be kept to put back: {e}", f.remote);
                    self.unkept.get_or_insert_with(|| match e.status() {
                        Some(s) if s.is_refusal() => {
                            format!("the server refuses hardlink@openssh.com: {e}")
                        }
                        _ => format!("a hard link failed: {e}"),
                    });
                    Prior::Unknown
                }
            };
        }
    }

    /// Removes the links of the distributions that went well (`went_well`, by index), in
    /// one flight.
    pub(crate) fn remove_links(
        &self,
        runner: &mut Runner<'_>,
        went_well: &[bool],
    ) -> anyhow::Result<()> {
        let removals: Vec<Op> = self
            .files
            .iter()
            .filter(|f| went_well[f.dist])
            .filter_map(|f| match &f.prior {
                Prior::Kept(kept) => Some(Op::Remove { path: kept.clone() }),
                _ => None,
            })
            .collect();
        if removals.is_empty() {
            return Ok(());
        }
        let results = runner.engine().run(&removals, |_, _| {})?;
        for (op, result) in removals.iter().zip(results) {
            if let Err(e) = result {
                log::warn!(
                    "{}: {e}; the previous version stays there until the next {} of it",
                    op.path(),
                    self.words.run
                );
            }
        }
        Ok(())
    }

    /// The renames that stand, by index into [`Guard::paths`]: every one confirmed of a
    /// distribution that went well, and of one that failed, those that cannot be put back.
    pub(crate) fn standing<'g>(&'g self, went_well: &'g [bool]) -> impl Iterator<Item = usize> {
        self.files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.renamed && (went_well[f.dist] || f.prior == Prior::Unknown))
            .map(|(k, _)| k)
    }

    /// Puts each distribution that failed (not `went_well`) back as it was, or says what
    /// could not be.
    pub(crate) fn put_back(
        &self,
        runner: &mut Runner<'_>,
        went_well: &[bool],
    ) -> anyhow::Result<()> {
        let mut failed: Vec<usize> = Vec::new();
        for f in &self.files {
            if !went_well[f.dist] && !failed.contains(&f.dist) {
                failed.push(f.dist);
            }
        }
        for dist in failed {
            let files: Vec<&File> = self.files.iter().filter(|f| f.dist == dist).collect();
            self.roll_back(runner, &self.dirs[dist], &files)?;
        }
        Ok(())
    }

    /// Puts dist dir `dir` back as it was before its finalisation: each replaced file
    /// from its link, the indexes last, then the new files taken away (renamed back to
    /// `NAME.new`). What cannot be put back is said in one line.
    ///
    /// The new content of a replaced file is kept for the rerun too: linked first as the
    /// temporary name of its `.new` (`.NAME.new.tmp`, which an upload clears), and renamed
    /// to `NAME.new` only once the old file is back. Were `NAME.new` made while `NAME`
    /// still holds the same file, a rerun's rename of one onto the other would do nothing
    /// (rename(2) on two links of one file) and leave the `.new` behind.
    fn roll_back(
        &self,
        runner: &mut Runner<'_>,
        dir: &RelPath,
        files: &[&File],
    ) -> anyhow::Result<()> {
        let relinked = keep_new_content(runner, files)?;
        let undo = undoing(files);
        let ops: Vec<Op> = undo.iter().map(|(_, op)| op.clone()).collect();
        let results = if ops.is_empty() {
            Vec::new()
        } else {
            runner.engine().run(&ops, |_, _| {})?
        };
        let mut still_new: Vec<&File> = files
            .iter()
            .copied()
            .filter(|f| f.renamed && f.prior == Prior::Unknown)
            .collect();
        let (mut restored, mut taken_away) = (0, 0);
        let mut waiting = Vec::new();
        for ((f, op), result) in undo.iter().zip(results) {
            let putting_back = f.renamed;
            match result {
                Ok(_) if !putting_back => {}
                Ok(_) if f.prior == Prior::Fresh => taken_away += 1,
                Ok(_) => {
                    restored += 1;
                    if relinked.contains(&f.path) {
                        waiting.push(Op::Rename {
                            from: new_kept(f),
                            to: dotnew(f),
                        });
                    }
                }
                Err(e) if putting_back => {
                    runner.fail(&format!("{dir}: cannot put {} back: {e}", f.path));
                    still_new.push(f);
                }
                Err(e) => log::warn!("{}: {e}", op.path()),
            }
        }
        if !waiting.is_empty() {
            let results = runner.engine().run(&waiting, |_, _| {})?;
            for (op, result) in waiting.iter().zip(results) {
                if let Err(e) = result {
                    log::info!("{e}: the rerun uploads {} again", op.path());
                }
            }
        }
        runner.add_tally(&Tally {
            put_back: restored + taken_away,
            ..Tally::default()
        });
        self.say_rolled_back(runner, dir, files, &still_new, (restored, taken_away));
        Ok(())
    }

    /// Says how dist dir `dir` was left: put back (`restored` and `taken_away` counted), or
    /// not, with the files `still_new` beside the old ones.
    fn say_rolled_back(
        &self,
        runner: &mut Runner<'_>,
        dir: &RelPath,
        files: &[&File],
        still_new: &[&File],
        (restored, taken_away): (usize, usize),
    ) {
        let Words { run, rerun } = &self.words;
        if still_new.is_empty() {
            if restored + taken_away > 0 {
                runner.say(&format!(
                    "outsftphook: {dir}: its finalisation failed half-way, so it was put back \
                     as it was before this {run} ({restored} file(s) restored, {taken_away} \
                     new one(s) taken away): apt clients see the old distribution, whole; a \
                     rerun ('{rerun}') finishes the {run}"
                ));
            }
            return;
        }
        let name =
            |f: &File| dist_dir_of(&f.path).map_or(f.path.to_string(), |(_, n)| n.to_string());
        let new: HashSet<&RelPath> = still_new.iter().map(|f| &f.path).collect();
        let old: Vec<String> = files
            .iter()
            .filter(|f| !new.contains(&f.path))
            .map(|f| name(f))
            .collect();
        let new: Vec<String> = still_new.iter().map(|f| name(f)).collect();
        let why = self.unkept.as_deref().unwrap_or("putting back failed");
        runner.say(&format!(
            "outsftphook: {dir}: its finalisation failed half-way and could not be put back \
             ({why}): new {} stand beside the old {}, so apt clients may see 'Hash Sum \
             mismatch' until a rerun ('{rerun}') finishes the {run}",
            few(&new),
            few(&old),
        ));
    }
}

/// A file's `NAME.new`.
fn dotnew(f: &File) -> RemotePath {
    f.remote.with_suffix(b".new")
}

/// Where the new content of a replaced file waits while the old one is put back: the
/// temporary name of its `.new`.
fn new_kept(f: &File) -> RemotePath {
    dotnew(f).temp_sibling()
}

/// Links the new content of each replaced file to [`new_kept`], for the rerun; returns the
/// files whose content is so kept (the others the rerun uploads again).
fn keep_new_content<'f>(
    runner: &mut Runner<'_>,
    files: &[&'f File],
) -> anyhow::Result<HashSet<&'f RelPath>> {
    let replaced: Vec<&File> = files
        .iter()
        .copied()
        .filter(|f| f.renamed && matches!(f.prior, Prior::Kept(_)))
        .collect();
    let mut relinked = HashSet::new();
    if replaced.is_empty() {
        return Ok(relinked);
    }
    let relinks: Vec<Op> = replaced
        .iter()
        .map(|f| Op::Hardlink {
            from: f.remote.clone(),
            to: new_kept(f),
        })
        .collect();
    let results = runner.engine().run(&relinks, |_, _| {})?;
    for (f, result) in replaced.iter().zip(results) {
        match result {
            Ok(_) => {
                relinked.insert(&f.path);
            }
            Err(e) => log::info!("{e}: the rerun uploads {}.new again", f.path),
        }
    }
    Ok(relinked)
}

/// What puts `files` back, each with its file: in the reverse of the finalisation's order,
/// InRelease first (at each moment what a reader sees named is there), each replaced file
/// from its link (a link made for one not renamed is just removed); then the new files
/// taken away, back to `NAME.new`.
fn undoing<'f>(files: &[&'f File]) -> Vec<(&'f File, Op)> {
    let mut undo: Vec<(&File, Op)> = Vec::new();
    for f in files.iter().rev() {
        match (&f.prior, f.renamed) {
            (Prior::Kept(kept), true) => undo.push((
                f,
                Op::Rename {
                    from: kept.clone(),
                    to: f.remote.clone(),
                },
            )),
            (Prior::Kept(kept), false) => undo.push((f, Op::Remove { path: kept.clone() })),
            _ => {}
        }
    }
    for f in files
        .iter()
        .filter(|f| f.renamed && f.prior == Prior::Fresh)
    {
        let op = Op::Rename {
            from: f.remote.clone(),
            to: dotnew(f),
        };
        undo.push((f, op));
    }
    undo
}

/// At most a few names, and how many more.
fn few(names: &[String]) -> String {
    const SHOWN: usize = 4;
    match names.len() {
        0 => "(none)".to_string(),
        n if n <= SHOWN => names.join(", "),
        n => format!("{} and {} more", names[..SHOWN].join(", "), n - SHOWN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_version_is_kept_under_a_hidden_name_beside_it() {
        let kept = |p: &str| kept_name(&RemotePath::new(p).unwrap());
        assert_eq!(
            kept("/srv/m/dists/b/main/binary-amd64/Packages.xz").as_bytes(),
            b"/srv/m/dists/b/main/binary-amd64/.Packages.xz.prev"
        );
        assert_eq!(
            kept("dists/b/InRelease").as_bytes(),
            b"dists/b/.InRelease.prev"
        );
        assert_eq!(kept("Release").as_bytes(), b".Release.prev");
        // The name `mirror` knows as a leftover of a run cut off.
        let path = |p: &str| RelPath::new(p).unwrap();
        let kept = String::from_utf8(kept("dists/b/main/Packages.gz").as_bytes().to_vec());
        assert!(crate::plan::mirror::is_kept(&path(&kept.unwrap())));
    }

    #[test]
    fn a_few_names_are_listed_and_the_rest_counted() {
        let names = |n: usize| (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>();
        assert_eq!(few(&names(0)), "(none)");
        assert_eq!(few(&names(2)), "f0, f1");
        assert_eq!(few(&names(6)), "f0, f1, f2, f3 and 2 more");
    }
}
