//! One run at a time per log dir: reprepro's run and a manual one must not work on the same
//! logs. An exclusive `flock` on `LOGDIR/outsftphook.lock`, held for the whole run; the
//! holder writes its pid there so that a waiting run can say who holds it.
//!
//! And no log that reprepro may still be writing: reprepro creates its lock file
//! `DBDIR/lockfile` (O_EXCL) before it creates its log, and deletes it only after the hook it
//! called has returned. A run that reprepro did not start waits here while that file exists
//! ([`wait_for_reprepro`]).
//!
//! It must not touch the logs, nor ever remove reprepro's lock file: a message says when a
//! stale one is in the way.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::interrupt::{Interrupt, StoppedWaiting};

/// Held while the run lasts; dropping it releases the lock.
pub struct RunLock {
    _file: Flock<File>,
}

/// The lock was held by someone else for longer than the lock timeout: nothing was
/// touched, and a later run may succeed (exit status 75, sysexits' EX_TEMPFAIL).
#[derive(Debug)]
pub struct BusyError(pub String);

impl fmt::Display for BusyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BusyError {}

pub fn lock_path(logdir: &Path) -> PathBuf {
    logdir.join("outsftphook.lock")
}

/// reprepro's lock file in its database dir.
pub fn reprepro_lock_path(dbdir: &Path) -> PathBuf {
    dbdir.join("lockfile")
}

/// Whether reprepro's lock file exists (a dangling symlink counts: reprepro's O_EXCL
/// would fail on it too).
pub fn reprepro_running(lockfile: &Path) -> anyhow::Result<bool> {
    match std::fs::symlink_metadata(lockfile) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot tell whether reprepro is running: cannot look at its lock file {}",
                lockfile.display()
            )
        }),
    }
}

/// Waits until reprepro's `lockfile` is gone, at most until `deadline` (`limit` from now
/// when the wait began, for the message).
pub fn wait_for_reprepro(
    lockfile: &Path,
    deadline: Instant,
    limit: Duration,
    interrupt: &Interrupt,
) -> anyhow::Result<()> {
    let mut said = false;
    while reprepro_running(lockfile)? {
        stop_if_asked(interrupt, "waiting for reprepro to finish")?;
        if Instant::now() >= deadline {
            return Err(BusyError(format!(
                "reprepro is running (its lock file {} exists) and did not finish within {} seconds; \
                 its own outhook call will push its change, and no log was touched. If no \
                 reprepro is running, the lock file is stale (left by a killed reprepro): \
                 remove it, then run outsftphook --pending again",
                lockfile.display(),
                limit.as_secs()
            ))
            .into());
        }
        if !said {
            log::info!(
                "reprepro is running ({} exists): waiting for it to finish",
                lockfile.display()
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A wait asked to stop by a signal ends at once: nothing was sent, no log touched.
fn stop_if_asked(interrupt: &Interrupt, waiting: &'static str) -> anyhow::Result<()> {
    match interrupt.signal() {
        Some(signal) => Err(StoppedWaiting { signal, waiting }.into()),
        None => Ok(()),
    }
}

/// What the run holding the lock wrote into it: `pid N`.
fn holder(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    match holder.trim() {
        "" => "unknown pid".to_owned(),
        pid => pid.to_owned(),
    }
}

/// Takes the lock, waiting until `deadline` for another run to finish.
pub fn acquire_until(
    logdir: &Path,
    deadline: Instant,
    limit: Duration,
    interrupt: &Interrupt,
) -> anyhow::Result<RunLock> {
    let path = lock_path(logdir);
    let mut said = false;
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut locked) => {
                locked.set_len(0)?;
                locked.rewind()?;
                writeln!(locked, "pid {}", std::process::id())?;
                return Ok(RunLock { _file: locked });
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                stop_if_asked(interrupt, "waiting for another outsftphook")?;
                let holder = holder(&mut file);
                if Instant::now() >= deadline {
                    return Err(BusyError(format!(
                        "another outsftphook ({holder}) is working on {} and did not finish \
                         within {} seconds; try again later (or raise --lock-timeout)",
                        logdir.display(),
                        limit.as_secs()
                    ))
                    .into());
                }
                if !said {
                    log::warn!(
                        "waiting for another outsftphook ({holder}) working on {}",
                        logdir.display()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, errno)) => {
                return Err(std::io::Error::from(errno))
                    .with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes the lock, waiting up to `timeout` for another run to finish.
    fn acquire(logdir: &Path, timeout: Duration, interrupt: &Interrupt) -> anyhow::Result<RunLock> {
        acquire_until(logdir, Instant::now() + timeout, timeout, interrupt)
    }

    #[test]
    fn the_wait_for_reprepro_ends_when_its_lock_file_goes() {
        let dir = tempfile::tempdir().unwrap();
        let lockfile = reprepro_lock_path(dir.path());
        let interrupt = Interrupt::default();
        wait_for_reprepro(&lockfile, Instant::now(), Duration::ZERO, &interrupt).unwrap();
        std::fs::write(&lockfile, "").unwrap();
        let remover = {
            let lockfile = lockfile.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                std::fs::remove_file(lockfile).unwrap();
            })
        };
        let started = Instant::now();
        let limit = Duration::from_secs(10);
        wait_for_reprepro(&lockfile, started + limit, limit, &interrupt).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        remover.join().unwrap();
        std::os::unix::fs::symlink("nowhere", &lockfile).unwrap();
        let err = wait_for_reprepro(&lockfile, Instant::now(), limit, &interrupt).unwrap_err();
        assert!(err.downcast_ref::<BusyError>().is_some(), "{err}");
    }

    #[test]
    fn a_signal_ends_a_wait_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let lockfile = reprepro_lock_path(dir.path());
        std::fs::write(&lockfile, "").unwrap();
        let interrupt = Interrupt::default();
        interrupt.trigger(15);
        let limit = Duration::from_secs(600);
        let started = Instant::now();
        let err = wait_for_reprepro(&lockfile, started + limit, limit, &interrupt).unwrap_err();
        assert!(err.to_string().contains("interrupted by SIGTERM"), "{err}");
        let _held = acquire(dir.path(), limit, &Interrupt::default()).unwrap();
        let Err(err) = acquire(dir.path(), limit, &interrupt) else {
            panic!("took a held lock")
        };
        assert!(err.downcast_ref::<StoppedWaiting>().is_some(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// The time left after the wait for reprepro is what the run lock gets; the message names
    /// the --lock-timeout the administrator set.
    #[test]
    fn a_timed_out_wait_names_the_lock_timeout_given() {
        let dir = tempfile::tempdir().unwrap();
        let _held = acquire(dir.path(), Duration::from_secs(1), &Interrupt::default()).unwrap();
        let deadline = Instant::now() + Duration::from_millis(300);
        let limit = Duration::from_secs(1);
        let Err(err) = acquire_until(dir.path(), deadline, limit, &Interrupt::default()) else {
            panic!("a held lock was taken");
        };
        assert!(err.to_string().contains("within 1 seconds"), "{err}");
    }

    #[test]
    fn a_second_run_waits_then_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), Duration::from_secs(1), &Interrupt::default()).unwrap();
        let started = Instant::now();
        let err = acquire(
            dir.path(),
            Duration::from_millis(300),
            &Interrupt::default(),
        )
        .err()
        .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("another outsftphook (pid {})", std::process::id())),
            "{msg}"
        );
        drop(held);
        acquire(dir.path(), Duration::from_secs(1), &Interrupt::default()).unwrap();
    }
}
