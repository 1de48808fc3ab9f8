//! [`RelPath`]: a path inside the repository (relative to the out dir locally and to the
//! target directory remotely) that cannot leave it, and [`check_symlink_target`] for the
//! links that point inside it.
//!
//! Pure string checks: it must not touch the file system (what a path is on disk is the
//! caller's to find out).

use std::fmt;
use std::sync::Arc;

/// A relative path of normal components: not empty, no leading `/`, no empty, `.` or `..`
/// component, no NUL. Anything an outlog names on the remote side is one of these, so no
/// line can make us write outside the target directory. Cloning shares the string: a plan
/// refers to the same path from several places.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Arc<str>);

/// Why a string is not a [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelPathError {
    Empty,
    Absolute,
    Nul,
    EmptyComponent,
    Dot,
    DotDot,
}

impl fmt::Display for RelPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelPathError::Empty => "empty path",
            RelPathError::Absolute => "absolute path",
            RelPathError::Nul => "path contains a NUL byte",
            RelPathError::EmptyComponent => "path has an empty component (//, or a trailing /)",
            RelPathError::Dot => "path has a '.' component",
            RelPathError::DotDot => "path has a '..' component",
        })
    }
}

impl std::error::Error for RelPathError {}

impl RelPath {
    pub fn new(s: &str) -> Result<RelPath, RelPathError> {
        if s.is_empty() {
            return Err(RelPathError::Empty);
        }
        if s.starts_with('/') {
            return Err(RelPathError::Absolute);
        }
        if s.contains('\0') {
            return Err(RelPathError::Nul);
        }
        for component in s.split('/') {
            match component {
                "" => return Err(RelPathError::EmptyComponent),
                "." => return Err(RelPathError::Dot),
                ".." => return Err(RelPathError::DotDot),
                _ => {}
            }
        }
        Ok(RelPath(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/other`: still inside, since both are.
    pub fn join(&self, other: &RelPath) -> RelPath {
        RelPath(Arc::from(format!("{}/{}", self.0, other.0)))
    }

    /// The first component (`pool`, `dists`).
    pub fn first_component(&self) -> &str {
        self.0.split('/').next().expect("non-empty")
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().expect("non-empty")
    }

    /// The containing directory, `None` for a single component.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rfind('/').map(|i| RelPath(Arc::from(&self.0[..i])))
    }

    /// Whether `self` is `dir` or lies below it.
    pub fn starts_with(&self, dir: &RelPath) -> bool {
        self.0 == dir.0
            || (self.0.len() > dir.0.len()
                && self.0.starts_with(&*dir.0)
                && self.0.as_bytes()[dir.0.len()] == b'/')
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a symlink target is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymlinkTargetError {
    Empty,
    Absolute(String),
    Nul,
    /// Followed from the link's directory, it climbs above the top of the repository.
    LeavesRepository(String),
}

impl fmt::Display for SymlinkTargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymlinkTargetError::Empty => f.write_str("empty symlink target"),
            SymlinkTargetError::Absolute(target) => {
                write!(f, "symlink target {target} is absolute")
            }
            SymlinkTargetError::Nul => f.write_str("symlink target contains a NUL byte"),
            SymlinkTargetError::LeavesRepository(target) => {
                write!(f, "symlink target {target} leads out of the repository")
            }
        }
    }
}

impl std::error::Error for SymlinkTargetError {}

/// Checks a symlink target relative to the directory `link_dir` the link lives in: it must be
/// relative and, followed from there, stay inside the repository.
pub fn check_symlink_target(
    link_dir: Option<&RelPath>,
    target: &str,
) -> Result<(), SymlinkTargetError> {
    if target.is_empty() {
        return Err(SymlinkTargetError::Empty);
    }
    if target.starts_with('/') {
        return Err(SymlinkTargetError::Absolute(target.to_owned()));
    }
    if target.contains('\0') {
        return Err(SymlinkTargetError::Nul);
    }
    let mut depth = link_dir.map_or(0, |d| d.as_str().split('/').count());
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| SymlinkTargetError::LeavesRepository(target.to_owned()))?;
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_are_accepted() {
        let p = RelPath::new("pool/main/f/foo/foo_1.0_amd64.deb").unwrap();
        assert_eq!(p.first_component(), "pool");
        assert_eq!(p.file_name(), "foo_1.0_amd64.deb");
        assert_eq!(p.parent().unwrap().as_str(), "pool/main/f/foo");
        assert!(p.starts_with(&RelPath::new("pool/main").unwrap()));
        assert!(!p.starts_with(&RelPath::new("pool/mai").unwrap()));
        assert_eq!(RelPath::new("a").unwrap().parent(), None);
        assert_eq!(RelPath::new("a...b").unwrap().as_str(), "a...b");
    }

    #[test]
    fn hostile_paths_are_refused() {
        for (s, e) in [
            ("", RelPathError::Empty),
            ("/etc/passwd", RelPathError::Absolute),
            ("pool/../../etc", RelPathError::DotDot),
            ("..", RelPathError::DotDot),
            ("pool/./x", RelPathError::Dot),
            ("pool//x", RelPathError::EmptyComponent),
            ("pool/x/", RelPathError::EmptyComponent),
            ("pool/\0x", RelPathError::Nul),
        ] {
            assert_eq!(RelPath::new(s), Err(e), "{s:?}");
        }
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        let dists = RelPath::new("dists").unwrap();
        assert!(check_symlink_target(Some(&dists), "bookworm").is_ok());
        assert!(check_symlink_target(Some(&dists), "../pool/x").is_ok());
        assert!(check_symlink_target(Some(&dists), "../../etc").is_err());
        assert!(check_symlink_target(Some(&dists), "/etc/passwd").is_err());
        assert!(check_symlink_target(None, "..").is_err());
        assert!(check_symlink_target(None, "").is_err());
        let deep = RelPath::new("dists/bookworm/main").unwrap();
        assert!(check_symlink_target(Some(&deep), "../../../pool").is_ok());
        assert!(check_symlink_target(Some(&deep), "../../../../x").is_err());
    }
}
