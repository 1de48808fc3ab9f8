//! The engine's one edge to the local disk: every stat, open and read of a local file the
//! engine does is here.
//!
//! A source is stat'ed once per run ([`Locals`]): the size and mode fixed then are what the
//! upload sends, confirms and counts, and what spreading and cutting it into parts go by.
//! It is opened only when its upload starts ([`open`]), so that a plan of many files holds
//! few descriptors; its data is read from that one open file. This module owns no state
//! machine and must not decide anything about the server; the state machines call it at
//! the points where they need a file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::op::Cause;

/// A local regular file as it was when first looked at in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalFile {
    /// What is sent: a file that has grown since is sent to this size, one that has shrunk
    /// fails its upload.
    pub(crate) size: u64,
    /// Its permission bits, given to the remote file.
    pub(crate) mode: u32,
}

/// The local sources of one run, each stat'ed at most once.
#[derive(Debug, Default)]
pub(crate) struct Locals {
    known: HashMap<PathBuf, Result<LocalFile, String>>,
}

impl Locals {
    /// `path` as it is now, or as it was when first asked in this run; an error when it is
    /// missing, unreadable or not a regular file.
    pub(crate) fn stat(&mut self, path: &Path) -> Result<LocalFile, Cause> {
        if !self.known.contains_key(path) {
            self.known.insert(path.to_owned(), stat(path));
        }
        self.known[path].clone().map_err(|message| Cause::Local {
            path: path.to_owned(),
            message,
        })
    }

    /// What [`Locals::stat`] found for `path`, if it was asked.
    pub(crate) fn known(&self, path: &Path) -> Option<Result<LocalFile, Cause>> {
        let found = self.known.get(path)?;
        Some(found.clone().map_err(|message| Cause::Local {
            path: path.to_owned(),
            message,
        }))
    }

    /// The size of `path` (stat'ed once), if it is a regular file.
    pub(crate) fn size(&mut self, path: &Path) -> Option<u64> {
        self.stat(path).ok().map(|f| f.size)
    }

    /// Forgets what was learnt: the next run looks at the files again.
    pub(crate) fn clear(&mut self) {
        self.known = HashMap::new();
    }
}

fn stat(path: &Path) -> Result<LocalFile, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    Ok(LocalFile {
        size: meta.len(),
        mode: meta.permissions().mode() & 0o777,
    })
}

/// The size of `path` now, looked at again: the parts of a cut upload open the file each
/// on its own, so once they are all in, whether it still has the size it was cut at is
/// checked (a file replaced meanwhile would have sent a mix).
pub(crate) fn size_now(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Opens `path` for reading, when its upload (or comparison) starts; no stat.
pub(crate) fn open(path: &Path) -> Result<File, Cause> {
    File::open(path).map_err(|e| Cause::Local {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Opens `path` and gives its size now: for a comparison, which reads the file at once.
pub(crate) fn open_sized(path: &Path) -> Result<(File, u64), Cause> {
    let local_error = |e: std::io::Error| Cause::Local {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(local_error)?;
    let size = file.metadata().map_err(local_error)?.len();
    Ok((file, size))
}

/// Appends `len` bytes of `file` from `offset` to `out`, read straight into its spare room
/// (never zeroed first): the one copy of a small WRITE's data, into the output buffer. A
/// file that ends sooner is an `UnexpectedEof` error.
pub(crate) fn append_range(
    mut file: &File,
    offset: u64,
    len: u32,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    let got = file.take(u64::from(len)).read_to_end(out)?;
    if got < len as usize {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Whether `file` holds `data` at `offset`; a file that ends sooner does not.
pub(crate) fn holds(file: &File, offset: u64, data: &[u8]) -> std::io::Result<bool> {
    let mut local = vec![0; data.len()];
    match file.read_exact_at(&mut local, offset) {
        Ok(()) => Ok(local == data),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_range_is_appended_after_what_is_there() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let mut out = b"head".to_vec();
        append_range(&f, 3, 4, &mut out).unwrap();
        assert_eq!(out, b"head3456");
    }

    #[test]
    fn a_file_shorter_than_its_range_is_an_unexpected_end() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123").unwrap();
        let mut out = Vec::new();
        let e = append_range(&f, 2, 4, &mut out).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_source_is_stated_once_per_run_and_what_was_found_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let mut locals = Locals::default();
        assert_eq!(locals.size(&path), Some(5));
        std::fs::write(&path, b"1234567").unwrap();
        assert_eq!(locals.stat(&path).unwrap().size, 5);
        locals.clear();
        assert_eq!(locals.size(&path), Some(7));
    }

    #[test]
    fn a_directory_or_a_missing_file_is_no_source() {
        let dir = tempfile::tempdir().unwrap();
        let mut locals = Locals::default();
        let Err(Cause::Local { message, .. }) = locals.stat(dir.path()) else {
            panic!("a directory is a source")
        };
        assert_eq!(message, "not a regular file");
        assert!(locals.stat(&dir.path().join("missing")).is_err());
        assert!(locals.known(&dir.path().join("other")).is_none());
    }
}
