//! reprepro's `conf/options`: only its directory lines (`basedir`, `outdir`, `logdir`,
//! `confdir`, `distdir`, `dbdir`), and reprepro's `+b/`, `+o/`, `+c/` prefixes. Every other
//! line is reprepro's business and ignored; this never fails and never reads a file.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The directory lines of reprepro's `conf/options`.
#[derive(Debug, Default)]
pub(super) struct Options {
    pub basedir: Option<PathBuf>,
    pub outdir: Option<PathBuf>,
    pub logdir: Option<PathBuf>,
    pub confdir: Option<PathBuf>,
    pub distdir: Option<PathBuf>,
    pub dbdir: Option<PathBuf>,
}

pub(super) fn parse(text: &str) -> Options {
    let mut o = Options::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        // reprepro also accepts its long options with their dashes here.
        let key = words.next().unwrap_or("").trim_start_matches("--");
        let Some(value) = words.next().map(PathBuf::from) else {
            continue;
        };
        match key {
            "basedir" => o.basedir = Some(value),
            "outdir" => o.outdir = Some(value),
            "logdir" => o.logdir = Some(value),
            "confdir" => o.confdir = Some(value),
            "distdir" => o.distdir = Some(value),
            "dbdir" => o.dbdir = Some(value),
            _ => {}
        }
    }
    o
}

/// reprepro's `+b/`, `+o/`, `+c/` prefixes: relative to the base, out or conf dir.
pub(super) fn expand(
    path: PathBuf,
    basedir: Option<&Path>,
    outdir: Option<&Path>,
    confdir: Option<&Path>,
) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let base = match bytes.get(..3) {
        Some(b"+b/") => basedir,
        Some(b"+o/") => outdir,
        Some(b"+c/") => confdir,
        _ => return path,
    };
    match base {
        Some(base) => base.join(OsStr::from_bytes(&bytes[3..])),
        None => path,
    }
}
