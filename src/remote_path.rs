//! [`RemotePath`]: a path on the server, as bytes, that is known to be usable in a request.
//!
//! Pure: no I/O, and never a lossy `String`: remote names are bytes end to end (Display
//! escapes them, for messages only).

use std::fmt;

/// A non-empty remote path without NUL bytes, `//` or a trailing `/` (except `/` itself).
/// Paths are bytes end to end: a file name that is not UTF-8 stays exactly what it was.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemotePath(Vec<u8>);

/// Why bytes are not a [`RemotePath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemotePathError {
    Empty,
    Nul,
    EmptyComponent,
}

impl fmt::Display for RemotePathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemotePathError::Empty => "empty remote path",
            RemotePathError::Nul => "remote path contains a NUL byte",
            RemotePathError::EmptyComponent => "remote path has an empty component",
        })
    }
}

impl std::error::Error for RemotePathError {}

impl RemotePath {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<RemotePath, RemotePathError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(RemotePathError::Empty);
        }
        if bytes.contains(&0) {
            return Err(RemotePathError::Nul);
        }
        if bytes != b"/" && (bytes.ends_with(b"/") || bytes.windows(2).any(|w| w == b"//")) {
            return Err(RemotePathError::EmptyComponent);
        }
        Ok(RemotePath(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The directory containing this path; `None` for a single relative component or a
    /// top-level absolute one (the server's start directory and `/` are never created).
    pub fn parent(&self) -> Option<RemotePath> {
        let slash = self.0.iter().rposition(|&b| b == b'/')?;
        if slash == 0 {
            return None;
        }
        Some(RemotePath(self.0[..slash].to_vec()))
    }

    /// `self/name`; `name` must be a valid relative path.
    pub fn join(&self, name: &[u8]) -> Result<RemotePath, RemotePathError> {
        let mut bytes = self.0.clone();
        if bytes != b"/" {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name);
        RemotePath::new(bytes)
    }

    /// The hidden name beside this path that an upload is written under before it is renamed
    /// into place (`dir/.NAME.tmp`): a file at the real name is never replaced by a partial
    /// one (a free real name may hold one for a round trip, until a failed WRITE is known and
    /// it is removed), and a symlink planted there is replaced rather than written through.
    /// The name is the same on every run, so a rerun clears what a killed one left.
    pub fn temp_sibling(&self) -> RemotePath {
        let slash = self.0.iter().rposition(|&b| b == b'/').map_or(0, |s| s + 1);
        let mut bytes = self.0[..slash].to_vec();
        bytes.push(b'.');
        bytes.extend_from_slice(&self.0[slash..]);
        bytes.extend_from_slice(b".tmp");
        RemotePath(bytes)
    }

    /// The hidden name in `dir`, a directory above this path's own, that an upload into a
    /// directory not made yet is written under (`dir/.NAME.TAG.tmp`), so that its OPEN
    /// need not wait for that directory's MKDIR (see the engine's `upload`). `TAG` is a
    /// hash of the whole path: uploads of one name into two new directories below `dir`
    /// (`binary-amd64/Packages`, `binary-i386/Packages`) get two names. Like
    /// [`RemotePath::temp_sibling`], the same on every run; a long `NAME` is cut so that
    /// the name stays within the 255 bytes a file name may have.
    pub fn temp_aside(&self, dir: &RemotePath) -> RemotePath {
        let slash = self.0.iter().rposition(|&b| b == b'/').map_or(0, |s| s + 1);
        let tag = format!(".{:016x}.tmp", fnv1a(&self.0));
        let room = NAME_MAX - 1 - tag.len();
        let name = &self.0[slash..];
        let mut hidden = vec![b'.'];
        hidden.extend_from_slice(&name[..name.len().min(room)]);
        hidden.extend_from_slice(tag.as_bytes());
        dir.join(&hidden).expect("a name of one component")
    }

    /// The same path with `suffix` appended to its last component (e.g. `.new`).
    pub fn with_suffix(&self, suffix: &[u8]) -> RemotePath {
        let mut bytes = self.0.clone();
        bytes.extend_from_slice(suffix);
        RemotePath(bytes)
    }
}

/// The longest file name most file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// FNV-1a, 64 bits: a name's tag, the same on every run and every machine (no table of
/// names is kept between runs; the std hasher is seeded per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_name_is_hidden_beside_the_real_one() {
        let t = |p: &str| {
            RemotePath::new(p)
                .unwrap()
                .temp_sibling()
                .as_bytes()
                .to_vec()
        };
        assert_eq!(t("/srv/pool/m/foo.deb"), b"/srv/pool/m/.foo.deb.tmp");
        assert_eq!(t("Release.new"), b".Release.new.tmp");
        assert_eq!(t("/Release"), b"/.Release.tmp");
    }

    #[test]
    fn a_temporary_name_aside_is_hidden_above_tagged_by_the_whole_path_and_short_enough() {
        let aside = |p: &str, dir: &str| {
            let dir = RemotePath::new(dir).unwrap();
            RemotePath::new(p).unwrap().temp_aside(&dir)
        };
        let a = aside("/m/dists/x/binary-amd64/Packages", "/m/dists/x");
        let i = aside("/m/dists/x/binary-i386/Packages", "/m/dists/x");
        assert_ne!(a, i, "one name in two new directories");
        for t in [&a, &i] {
            let name = t.as_bytes().strip_prefix(b"/m/dists/x/").unwrap();
            assert!(
                name.starts_with(b".Packages.") && name.ends_with(b".tmp"),
                "{t}"
            );
            assert_eq!(name.len(), ".Packages.".len() + 16 + ".tmp".len(), "{t}");
        }
        assert_eq!(a, aside("/m/dists/x/binary-amd64/Packages", "/m/dists/x"));
        let long = format!("/m/new/{}", "n".repeat(255));
        let t = aside(&long, "/m");
        let name = t.as_bytes().strip_prefix(b"/m/").unwrap();
        assert_eq!(name.len(), 255, "{t}");
        assert_eq!(aside("top/f", "top").as_bytes().len(), "top/.f.".len() + 20);
    }

    #[test]
    fn valid_paths_and_their_parents() {
        let p = RemotePath::new("srv/repo/pool/main/f/foo.deb").unwrap();
        assert_eq!(p.parent().unwrap().as_bytes(), b"srv/repo/pool/main/f");
        assert_eq!(RemotePath::new("a").unwrap().parent(), None);
        assert_eq!(RemotePath::new("/a").unwrap().parent(), None);
        assert_eq!(
            RemotePath::new("/a/b")
                .unwrap()
                .parent()
                .unwrap()
                .as_bytes(),
            b"/a"
        );
    }

    #[test]
    fn invalid_paths_are_refused() {
        assert_eq!(RemotePath::new(""), Err(RemotePathError::Empty));
        assert_eq!(RemotePath::new("a\0b"), Err(RemotePathError::Nul));
        assert_eq!(
            RemotePath::new("a//b"),
            Err(RemotePathError::EmptyComponent)
        );
        assert_eq!(RemotePath::new("a/"), Err(RemotePathError::EmptyComponent));
        assert!(RemotePath::new("/").is_ok());
    }

    #[test]
    fn join_suffix_and_display_keep_bytes() {
        let base = RemotePath::new(b"r\xff".to_vec()).unwrap();
        let p = base.join(b"dists/x/Release").unwrap();
        assert_eq!(p.as_bytes(), b"r\xff/dists/x/Release");
        assert_eq!(
            p.with_suffix(b".new").as_bytes(),
            b"r\xff/dists/x/Release.new"
        );
        assert_eq!(p.to_string(), "r\\xff/dists/x/Release");
        assert_eq!(
            RemotePath::new("/").unwrap().join(b"x").unwrap().as_bytes(),
            b"/x"
        );
    }
}
