//! Which configuration journals a log dir: `LOGDIR/outsftphook.owner` names its
//! `outsftphook.conf`. A second configuration sharing the log dir would find the logs
//! renamed `.done` by the first and push nothing to its own mirror, saying "processed
//! already": it is refused instead, with what to do (one configuration with several
//! `mirror` sections, or a log dir of its own).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The record's name in the log dir.
pub(crate) const FILE_NAME: &str = "outsftphook.owner";

/// A log dir journalled by another configuration.
#[derive(Debug)]
pub(crate) struct OtherOwner {
    pub logdir: PathBuf,
    pub owner: PathBuf,
    pub conf: PathBuf,
}

impl std::fmt::Display for OtherOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the log dir {} is journalled by the configuration {}, not by {}: this one would \
             find its logs done and push nothing. Push to several mirrors from one \
             configuration ('mirror NAME' sections in {}), or give this one a log dir of its \
             own; if that configuration has moved to {}, remove {}",
            self.logdir.display(),
            self.owner.display(),
            self.conf.display(),
            self.owner.display(),
            self.conf.display(),
            self.logdir.join(FILE_NAME).display()
        )
    }
}

impl std::error::Error for OtherOwner {}

/// `conf` as the record names it: absolute, its links resolved where it can be.
fn canonical(conf: &Path) -> PathBuf {
    fs::canonicalize(conf)
        .or_else(|_| std::path::absolute(conf))
        .unwrap_or_else(|_| conf.to_owned())
}

/// Checks that `conf` journals `logdir`, and with `claim` records it when no configuration
/// does yet (under the run lock: no other run writes it meanwhile).
pub(crate) fn check(logdir: &Path, conf: &Path, claim: bool) -> anyhow::Result<()> {
    let record = logdir.join(FILE_NAME);
    let conf = canonical(conf);
    match fs::read_to_string(&record) {
        Ok(text) => {
            let owner = PathBuf::from(text.trim_end_matches('\n'));
            if owner == conf {
                return Ok(());
            }
            Err(OtherOwner {
                logdir: logdir.to_owned(),
                owner,
                conf,
            }
            .into())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if claim {
                write(&record, &conf)?;
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", record.display())),
    }
}

/// Writes the record whole (a temporary file renamed into place).
fn write(record: &Path, conf: &Path) -> anyhow::Result<()> {
    let temporary = record.with_extension("owner.new");
    let mut text = conf.as_os_str().as_encoded_bytes().to_vec();
    text.push(b'\n');
    fs::write(&temporary, text)
        .and_then(|()| fs::rename(&temporary, record))
        .with_context(|| format!("cannot write {}", record.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_configuration_claims_the_log_dir_and_a_second_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.conf"), dir.path().join("b.conf"));
        fs::write(&a, "").unwrap();
        fs::write(&b, "").unwrap();
        check(dir.path(), &b, false).unwrap();
        assert!(
            !dir.path().join(FILE_NAME).exists(),
            "a check alone claims nothing"
        );
        check(dir.path(), &a, true).unwrap();
        check(dir.path(), &a, true).unwrap();
        let refused = check(dir.path(), &b, true).unwrap_err().to_string();
        assert!(
            refused.contains("is journalled by the configuration")
                && refused.contains(&canonical(&a).display().to_string()),
            "{refused}"
        );
    }
}
