//! One run at a time per log dir: reprepro's run and a manual one must not work on the same
//! logs. An exclusive `flock` on `LOGDIR/outsftphook.lock`, held for the whole run; the
//! holder writes its pid there so that a waiting run can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held while the run lasts; dropping it releases the lock.
pub struct RunLock {
    _file: Flock<File>,
}

pub fn lock_path(logdir: &Path) -> PathBuf {
    logdir.join("outsftphook.lock")
}

/// Takes the lock, waiting up to `timeout` for another run to finish.
pub fn acquire(logdir: &Path, timeout: Duration) -> anyhow::Result<RunLock> {
    let path = lock_path(logdir);
    let deadline = Instant::now() + timeout;
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
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "unknown pid"
                } else {
                    holder
                };
                if Instant::now() >= deadline {
                    bail!(
                        "another outsftphook ({holder}) is working on {} and did not finish \
                         within {} seconds; try again later (or raise --lock-timeout)",
                        logdir.display(),
                        timeout.as_secs()
                    );
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

    #[test]
    fn a_second_run_waits_then_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), Duration::from_secs(1)).unwrap();
        let started = Instant::now();
        let err = acquire(dir.path(), Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("another outsftphook (pid {})", std::process::id())),
            "{msg}"
        );
        drop(held);
        acquire(dir.path(), Duration::from_secs(1)).unwrap();
    }
}
