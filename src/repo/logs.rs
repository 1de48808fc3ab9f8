//! Which outlogs a run processes, and in which order.
//!
//! reprepro names logs `SECONDS-RANDOM.outlog`: names sort by second, but not within one
//! second. Logs are therefore ordered by the seconds prefix, then by their creation time
//! (which, unlike the modification time, our own journal lines do not change), then by name.
//! Where the file system keeps no creation time, the name decides: the modification time
//! would put a log we journalled to after newer ones.
//!
//! It also removes old `.done` logs (`keepdone`): only files named as reprepro names its
//! logs, by their modification time (the time the last journal line finished them).
//!
//! It looks at names and file metadata only: it must not read or parse a log's content.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use crate::repo::journal::done_path;

/// What the run was asked to process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub pending: bool,
    pub ignore_pending: bool,
    pub force_order: bool,
    pub autoretry: bool,
}

/// Without autoretry, older logs are still pending: the run refuses to start.
#[derive(Debug)]
pub struct OlderPending(pub Vec<PathBuf>);

impl std::fmt::Display for OlderPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(|p| p.display().to_string()).collect();
        write!(f, "unprocessed earlier outlogs found: {}", list.join(", "))
    }
}

impl std::error::Error for OlderPending {}

/// A log's position in time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    seconds: Option<u64>,
    created: Option<SystemTime>,
    name: String,
}

impl Key {
    fn of(path: &Path) -> Key {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let seconds = name.split('-').next().and_then(|s| s.parse().ok());
        let created = fs::metadata(path).ok().and_then(|m| m.created().ok());
        Key {
            seconds,
            created,
            name,
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.seconds, other.seconds) {
            (Some(a), Some(b)) if a != b => return a.cmp(&b),
            _ => {}
        }
        if self.seconds == other.seconds
            && let (Some(a), Some(b)) = (self.created, other.created)
            && a != b
        {
            return a.cmp(&b);
        }
        self.name.cmp(&other.name)
    }
}

/// The unprocessed logs in `logdir`.
pub(crate) fn pending_in(logdir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries =
        fs::read_dir(logdir).with_context(|| format!("cannot list {}", logdir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", logdir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".outlog") && entry.file_type()?.is_file() {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Whether `name` is a finished log as reprepro names its logs: `%010llu-XXXXXX.outlog`
/// (the seconds, at least ten digits, and mkstemp's six letters or digits) renamed to
/// `.done`. Anything else in the log dir is not ours to remove.
fn is_done_log_name(name: &[u8]) -> bool {
    let Some(stem) = name.strip_suffix(b".done") else {
        return false;
    };
    let Some((seconds, random)) = stem.split_last_chunk::<7>() else {
        return false;
    };
    seconds.len() >= 10
        && seconds.iter().all(u8::is_ascii_digit)
        && random[0] == b'-'
        && random[1..].iter().all(u8::is_ascii_alphanumeric)
}

/// What [`remove_old_done`] did: how many logs it removed, and what it could not do.
#[derive(Debug, Default)]
pub struct Removed {
    pub count: usize,
    pub problems: Vec<String>,
}

/// Removes the `.done` logs in `logdir` last modified more than `keep` before `now`:
/// regular files named as reprepro's logs only (no symlink, no other name).
pub fn remove_old_done(logdir: &Path, keep: Duration, now: SystemTime) -> Removed {
    use std::os::unix::ffi::OsStrExt;
    let mut removed = Removed::default();
    let entries = match fs::read_dir(logdir) {
        Ok(entries) => entries,
        Err(e) => {
            removed
                .problems
                .push(format!("cannot list {}: {e}", logdir.display()));
            return removed;
        }
    };
    let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
    for entry in entries.flatten() {
        if !is_done_log_name(entry.file_name().as_bytes()) {
            continue;
        }
        let path = entry.path();
        // symlink_metadata: a link named like a log is not one of reprepro's.
        let old = fs::symlink_metadata(&path)
            .and_then(|m| Ok(m.is_file() && m.modified()? < cutoff))
            .unwrap_or(false);
        if !old {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed.count += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => removed
                .problems
                .push(format!("cannot remove {}: {e}", path.display())),
        }
    }
    removed
}

fn sort(logs: &mut [PathBuf]) {
    let mut keyed: Vec<(Key, PathBuf)> = logs.iter().map(|p| (Key::of(p), p.clone())).collect();
    keyed.sort();
    for (slot, (_, p)) in logs.iter_mut().zip(keyed) {
        *slot = p;
    }
}

/// The logs to process, oldest first.
pub fn select(files: &[PathBuf], logdir: &Path, how: Selection) -> anyhow::Result<Vec<PathBuf>> {
    if how.pending {
        let mut logs = pending_in(logdir)?;
        sort(&mut logs);
        return Ok(logs);
    }
    let given = given_logs(files)?;
    let keys: Vec<Key> = given.iter().map(|f| Key::of(f)).collect();
    if !how.force_order {
        check_order(&given, &keys)?;
    }
    if how.ignore_pending {
        return Ok(given);
    }
    let Some(newest) = keys.iter().max() else {
        return Ok(given);
    };
    let mut older = older_pending(logdir, &given, newest)?;
    if !older.is_empty() && !how.autoretry {
        return Err(OlderPending(older).into());
    }
    older.extend(given);
    Ok(older)
}

/// The logs named on the command line that are still to do.
fn given_logs(files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if files.is_empty() {
        bail!(
            "no .outlog files given: name them, or use --pending to process what is in the log dir"
        );
    }
    let mut given = Vec::new();
    for f in files {
        if !f.to_string_lossy().ends_with(".outlog") {
            bail!("{}: does not look like an .outlog file", f.display());
        }
        if !f.exists() {
            if done_path(f).exists() {
                // Another run (holding the lock before us) finished it already.
                log::info!("{} was processed already", f.display());
                continue;
            }
            bail!("{}: no such file", f.display());
        }
        given.push(f.clone());
    }
    Ok(given)
}

/// Refuses logs given out of order (`keys` are theirs).
fn check_order(given: &[PathBuf], keys: &[Key]) -> anyhow::Result<()> {
    for (w, pair) in keys.windows(2).enumerate() {
        if pair[0] >= pair[1] {
            bail!(
                "the logs are not given in order ({} comes after {}); applying them in this \
                 order might not be safe (use --force-order to do it anyway)",
                given[w].display(),
                given[w + 1].display()
            );
        }
    }
    Ok(())
}

/// The unprocessed logs of `logdir` older than `newest` and not among `given`, oldest first.
fn older_pending(logdir: &Path, given: &[PathBuf], newest: &Key) -> anyhow::Result<Vec<PathBuf>> {
    let names: Vec<_> = given.iter().filter_map(|g| g.file_name()).collect();
    let mut older: Vec<PathBuf> = pending_in(logdir)?
        .into_iter()
        .filter(|p| !p.file_name().is_some_and(|n| names.contains(&n)))
        .filter(|p| Key::of(p) < *newest)
        .collect();
    sort(&mut older);
    Ok(older)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn how() -> Selection {
        Selection {
            pending: false,
            ignore_pending: false,
            force_order: false,
            autoretry: true,
        }
    }

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, "").unwrap();
        // Creation times must differ for the same-second ordering to be seen.
        std::thread::sleep(std::time::Duration::from_millis(15));
        p
    }

    #[test]
    fn only_reprepros_done_log_names_are_removable() {
        for name in [
            "1796148733-WLJvvC.done",
            "0000000100-abc123.done",
            "17961487330-WLJvvC.done",
        ] {
            assert!(is_done_log_name(name.as_bytes()), "{name}");
        }
        for name in [
            "1796148733-WLJvvC.outlog",
            "1796148733-WLJvvC.done.bak",
            "notes.done",
            "179614873-WLJvvC.done",
            "1796148733-WLJvv.done",
            "1796148733-WLJv-C.done",
            "1796148733_WLJvvC.done",
            "x796148733-WLJvvC.done",
            ".done",
        ] {
            assert!(!is_done_log_name(name.as_bytes()), "{name}");
        }
        assert!(!is_done_log_name(b"1796148733-WLJ\xffvC.done"));
    }

    #[test]
    fn old_done_logs_go_and_everything_else_stays() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let old = touch(d, "1700000000-aaaaaa.done");
        let new = touch(d, "1700000001-bbbbbb.done");
        let pending = touch(d, "1700000002-cccccc.outlog");
        let foreign = touch(d, "my-notes.done");
        std::os::unix::fs::symlink(&old, d.join("1700000003-dddddd.done")).unwrap();
        let now = SystemTime::now() + Duration::from_secs(10 * 86400);
        let old_time = SystemTime::now() - Duration::from_secs(86400);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(old_time)
            .unwrap();
        let removed = remove_old_done(
            d,
            Duration::from_secs(10 * 86400) + Duration::from_secs(3600),
            now,
        );
        assert_eq!(removed.count, 1);
        assert!(removed.problems.is_empty(), "{:?}", removed.problems);
        assert!(!old.exists());
        for p in [&new, &pending, &foreign] {
            assert!(p.exists(), "{}", p.display());
        }
        assert!(d.join("1700000003-dddddd.done").is_symlink());
    }

    #[test]
    fn older_pending_logs_come_first_in_creation_order_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = touch(d, "0000000100-zzz.outlog");
        let b = touch(d, "0000000100-aaa.outlog");
        let _done = touch(d, "0000000099-x.done");
        let c = touch(d, "0000000101-mmm.outlog");
        let newer = touch(d, "0000000102-new.outlog");
        let got = select(std::slice::from_ref(&c), d, how()).unwrap();
        assert_eq!(got, vec![a.clone(), b.clone(), c.clone()]);
        let all = select(
            &[],
            d,
            Selection {
                pending: true,
                ..how()
            },
        )
        .unwrap();
        assert_eq!(all, vec![a, b, c.clone(), newer]);
        let alone = select(
            std::slice::from_ref(&c),
            d,
            Selection {
                ignore_pending: true,
                ..how()
            },
        )
        .unwrap();
        assert_eq!(alone, vec![c]);
    }

    #[test]
    fn without_autoretry_older_pending_logs_are_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(d, "0000000100-a.outlog");
        let c = touch(d, "0000000101-b.outlog");
        let err = select(
            &[c],
            d,
            Selection {
                autoretry: false,
                ..how()
            },
        )
        .unwrap_err();
        assert!(err.downcast_ref::<OlderPending>().is_some(), "{err}");
        let err = err.to_string();
        assert!(err.contains("unprocessed earlier outlogs found"), "{err}");
    }

    #[test]
    fn arguments_must_be_outlogs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = touch(d, "0000000100-a.outlog");
        let b = touch(d, "0000000101-b.outlog");
        let err = select(&[b.clone(), a.clone()], d, how()).unwrap_err();
        assert!(err.to_string().contains("not given in order"), "{err}");
        let forced = select(
            &[b.clone(), a.clone()],
            d,
            Selection {
                force_order: true,
                ..how()
            },
        )
        .unwrap();
        assert_eq!(forced, vec![b, a]);
        let err = select(&[d.join("x.log")], d, how()).unwrap_err();
        assert!(err.to_string().contains("does not look like an .outlog"));
        let err = select(&[d.join("1-gone.outlog")], d, how()).unwrap_err();
        assert!(err.to_string().contains("no such file"));
    }

    #[test]
    fn a_log_finished_by_another_run_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(d, "0000000100-a.done");
        let got = select(&[d.join("0000000100-a.outlog")], d, how()).unwrap();
        assert!(got.is_empty());
    }
}
