//! The engine's one edge to the local disk: every stat, open and read of a local file the
//! engine does is here, and every descriptor of one is held here.
//!
//! A source is stat'ed once per run before its batch ([`Locals`]): what spreading, cutting
//! into parts and the progress line go by. It is opened only when its upload starts, so
//! that a plan of many files holds few descriptors, and the open file's own stat is what a
//! whole upload sends and confirms: a file replaced since the run looked at it (reprepro
//! writes a new `Release` and renames it into place) is sent as it is when opened, never as
//! the first bytes of the new one cut to the old length. A part checks that the file still
//! has the size it was cut at. The open file goes into a connection's [`Sources`], which
//! names it by a [`SourceId`]; the
//! session queues its ranges by that name, the transport splices them from the file it finds
//! here ([`LocalFiles`]), and small WRITEs' data is read from it straight into the output
//! buffer ([`Sources::append`]). The file is closed when its operation finishes. This
//! module owns no state machine and must not decide anything about the server; the state
//! machines call it at the points where they need a file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::op::Cause;
use crate::sftp::session::SourceId;
use crate::transport::LocalFiles;

/// A local regular file as a stat found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalFile {
    /// Its length; of an open file, what is sent (one that shrinks while it is sent fails
    /// its upload).
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

/// The local files one connection holds open, each named by the [`SourceId`] its WRITEs (or
/// a comparison's reads) use. Names are never reused: a stale one finds nothing.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    open: HashMap<SourceId, File>,
    next: u64,
}

impl Sources {
    /// Opens `path` for reading, when its upload starts, and gives the open file's own
    /// stat: what is sent. Never blocks: a FIFO put in the file's place is refused, not
    /// waited on.
    pub(crate) fn open(&mut self, path: &Path) -> Result<(SourceId, LocalFile), Cause> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(|e| local_error(path, e))?;
        let meta = file.metadata().map_err(|e| local_error(path, e))?;
        if !meta.is_file() {
            return Err(Cause::Local {
                path: path.to_owned(),
                message: "not a regular file".into(),
            });
        }
        let found = LocalFile {
            size: meta.len(),
            mode: meta.permissions().mode() & 0o777,
        };
        Ok((self.hold(file), found))
    }

    /// Opens `path` and gives its size now: for a comparison, which reads the file at once.
    pub(crate) fn open_sized(&mut self, path: &Path) -> Result<(SourceId, u64), Cause> {
        let file = File::open(path).map_err(|e| local_error(path, e))?;
        let size = file.metadata().map_err(|e| local_error(path, e))?.len();
        Ok((self.hold(file), size))
    }

    fn hold(&mut self, file: File) -> SourceId {
        let id = SourceId(self.next);
        self.next += 1;
        self.open.insert(id, file);
        id
    }

    /// Closes `source`: its operation is over (every WRITE of it was sent).
    pub(crate) fn close(&mut self, source: SourceId) {
        self.open.remove(&source);
    }

    /// Up to `len` bytes of `source` from `offset` (fewer where it ends, none if it is not
    /// open): what the transport would send, for tests.
    #[cfg(test)]
    pub(crate) fn read(&self, source: SourceId, offset: u64, len: u64) -> Vec<u8> {
        let Ok(file) = self.get(source) else {
            return Vec::new();
        };
        let mut buf = vec![0; len as usize];
        let n = file.read_at(&mut buf, offset).unwrap_or(0);
        buf.truncate(n);
        buf
    }

    /// How many files are open.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.open.len()
    }

    fn get(&self, source: SourceId) -> std::io::Result<&File> {
        self.open
            .get(&source)
            .ok_or_else(|| std::io::Error::other("no longer open"))
    }

    /// Appends `len` bytes of `source` from `offset` to `out`, read straight into its spare
    /// room (never zeroed first): the one copy of a small WRITE's data, into the output
    /// buffer. A file that ends sooner is an `UnexpectedEof` error.
    pub(crate) fn append(
        &self,
        source: SourceId,
        offset: u64,
        len: u32,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        append_range(self.get(source)?, offset, len, out)
    }

    /// Whether `source` holds `data` at `offset`; a file that ends sooner does not.
    pub(crate) fn holds(
        &self,
        source: SourceId,
        offset: u64,
        data: &[u8],
    ) -> std::io::Result<bool> {
        let mut local = vec![0; data.len()];
        match self.get(source)?.read_exact_at(&mut local, offset) {
            Ok(()) => Ok(local == data),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl LocalFiles for Sources {
    fn file(&self, source: SourceId) -> Option<&File> {
        self.open.get(&source)
    }
}

fn local_error(path: &Path, e: std::io::Error) -> Cause {
    Cause::Local {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn append_range(mut file: &File, offset: u64, len: u32, out: &mut Vec<u8>) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    let got = file.take(u64::from(len)).read_to_end(out)?;
    if got < len as usize {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(())
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
    fn a_source_is_named_while_it_is_open_and_its_name_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut sources = Sources::default();
        let (a, _) = sources.open(&path).unwrap();
        let mut out = Vec::new();
        sources.append(a, 2, 3, &mut out).unwrap();
        assert_eq!(out, b"234");
        assert!(sources.holds(a, 8, b"89").unwrap());
        assert!(!sources.holds(a, 8, b"890").unwrap());
        sources.close(a);
        let (b, _) = sources.open(&path).unwrap();
        assert_ne!(a, b);
        assert!(sources.file(a).is_none() && sources.file(b).is_some());
        assert!(sources.append(a, 0, 1, &mut out).is_err());
        assert_eq!(sources.held(), 1);
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
