//! [`RelPath`]: a path inside the repository (relative to the out dir locally and to the
//! target directory remotely) that cannot leave it, and [`check_symlink_target`] for the
//! links that point inside it.
//!
//! Pure string checks: it must not touch the file system (what a path is on disk is the
//! caller's to find out).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A relative path of normal components: not empty, no leading `/`, no empty, `.` or `..`
/// component, no NUL. Anything an outlog names on the remote side is one of these, so no
/// line can make us write outside the target directory.
///
/// It is held as a directory shared with other paths (or none) and the rest of the path
/// as text. A path on its own is all text, one allocation; paths in one directory
/// ([`RelPath::share_dir`]) share it, and that directory what it has in common with the
/// directory before it (held as one piece below that): a plan of 100 000 files in deep
/// directories holds each directory once, not in every path.
/// Cloning shares everything: a plan refers to the same path from several places. Paths
/// compare, hash and order by their components however they are held (`a/b` sorts before
/// `a-b`: below a directory come its own entries first).
#[derive(Clone)]
pub struct RelPath {
    /// The directory the rest is in, shared; `None`: the rest is the whole path.
    parent: Option<Arc<RelPath>>,
    /// The rest: one component or more.
    tail: Arc<str>,
}

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

fn check(s: &str) -> Result<(), RelPathError> {
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
    Ok(())
}

impl RelPath {
    pub fn new(s: &str) -> Result<RelPath, RelPathError> {
        check(s)?;
        Ok(RelPath::whole(s))
    }

    /// `s`, known to be a path, held whole.
    fn whole(s: &str) -> RelPath {
        RelPath {
            parent: None,
            tail: Arc::from(s),
        }
    }

    /// `a` and `b` (made after it) again, sharing their directory when they are in the
    /// same one: an outlog names the files of a directory one after the other. `dirs` is
    /// the last directory shared so, whose parents the next one shares where it can. `None`
    /// when they are not in one directory, or already share it (then `a` is as it was).
    pub fn share_dir(
        a: &RelPath,
        b: &RelPath,
        dirs: &mut Option<Arc<RelPath>>,
    ) -> Option<(Option<RelPath>, RelPath)> {
        let (b_dir, b_name) = match (&b.parent, b.tail.rsplit_once('/')) {
            (None, Some(split)) => split,
            _ => return None,
        };
        if let (Some(parent), false) = (&a.parent, a.tail.contains('/')) {
            let shared = RelPath {
                parent: Some(Arc::clone(parent)),
                tail: Arc::from(b_name),
            };
            return parent.is(b_dir).then_some((None, shared));
        }
        let (a_dir, a_name) = a.tail.rsplit_once('/').filter(|_| a.parent.is_none())?;
        if a_dir != b_dir {
            return None;
        }
        let dir = dir_near(b_dir, dirs.as_ref());
        *dirs = Some(Arc::clone(&dir));
        let in_dir = |name: &str| RelPath {
            parent: Some(Arc::clone(&dir)),
            tail: Arc::from(name),
        };
        Some((Some(in_dir(a_name)), in_dir(b_name)))
    }

    /// The whole path as text: borrowed where it is held whole, else put together.
    pub fn text(&self) -> Cow<'_, str> {
        match &self.parent {
            None => Cow::Borrowed(&self.tail),
            Some(_) => Cow::Owned(self.to_string()),
        }
    }

    /// The path below the local directory `dir`.
    pub fn under(&self, dir: &Path) -> PathBuf {
        dir.join(&*self.text())
    }

    /// `self/other`: still inside, since both are. Held whole: paths held alike compare
    /// fastest (a tree of 100 000 joined paths is sorted by them).
    pub fn join(&self, other: &RelPath) -> RelPath {
        RelPath {
            parent: None,
            tail: Arc::from(format!("{self}/{other}")),
        }
    }

    /// The components, from the top.
    fn components(&self) -> Vec<&str> {
        let mut held: Vec<&str> = std::iter::successors(Some(self), |p| p.parent.as_deref())
            .map(|p| &*p.tail)
            .collect();
        held.reverse();
        held.into_iter().flat_map(|t| t.split('/')).collect()
    }

    fn depth(&self) -> usize {
        let here = self.tail.split('/').count();
        here + self.parent.as_ref().map_or(0, |p| p.depth())
    }

    /// The first component (`pool`, `dists`).
    pub fn first_component(&self) -> &str {
        match &self.parent {
            Some(parent) => parent.first_component(),
            None => self.tail.split('/').next().expect("non-empty"),
        }
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.tail.rsplit('/').next().expect("non-empty")
    }

    /// The containing directory, `None` for a single component.
    pub fn parent(&self) -> Option<RelPath> {
        match self.tail.rsplit_once('/') {
            Some((dir, _)) => Some(RelPath {
                parent: self.parent.clone(),
                tail: Arc::from(dir),
            }),
            None => self.parent.as_deref().cloned(),
        }
    }

    /// Whether `self` is `dir` or lies below it.
    pub fn starts_with(&self, dir: &RelPath) -> bool {
        self.components().starts_with(&dir.components())
    }

    /// Whether the path is the text `s`.
    fn is(&self, s: &str) -> bool {
        match &self.parent {
            None => *self.tail == *s,
            Some(parent) => s
                .strip_suffix(&*self.tail)
                .and_then(|rest| rest.strip_suffix('/'))
                .is_some_and(|rest| parent.is(rest)),
        }
    }

    /// Whether the rest of both is below the same directory (or both are held whole).
    fn same_parent(&self, other: &RelPath) -> bool {
        match (&self.parent, &other.parent) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn hash_into<H: Hasher>(&self, state: &mut H) {
        if let Some(parent) = &self.parent {
            parent.hash_into(state);
        }
        for component in self.tail.split('/') {
            state.write(component.as_bytes());
            state.write_u8(0xff);
        }
    }
}

/// The directory `dir`, shared with `near` (the directory shared last) where it can be:
/// `dir` itself, if `near` or a directory above it is; else a new one below the part the
/// two have in common. What is below that part is held as one piece of text, however many
/// components it has: a layout of two new levels a directory holds one, not two (each of
/// them an allocation for the directory and one for its text). The part in common is
/// shared whole if `near` has it as a directory of its own, else made once, here, for the
/// directories that come next: those of one directory come one after the other.
fn dir_near(dir: &str, near: Option<&Arc<RelPath>>) -> Arc<RelPath> {
    let Some(near) = near else {
        return Arc::new(RelPath::whole(dir));
    };
    // The directories from `near` up, and the length of each one's text.
    let mut chain: Vec<&Arc<RelPath>> =
        std::iter::successors(Some(near), |n| n.parent.as_ref()).collect();
    chain.reverse();
    let mut lens = Vec::with_capacity(chain.len());
    for n in &chain {
        let above = lens.last().map_or(0, |len| len + 1);
        lens.push(above + n.tail.len());
    }
    let near_text = near.to_string();
    let common = common_dirs(dir, &near_text);
    // The lowest directory of the chain that `dir` is, or is below: its text is a
    // prefix of `near`'s, and so of `dir`'s, up to `common`.
    let held = lens.iter().rposition(|&len| len <= common);
    let held_len = held.map(|i| lens[i]);
    if held_len == Some(dir.len()) {
        return Arc::clone(chain[held.expect("has a length")]);
    }
    let below = |parent: Option<&Arc<RelPath>>, from: Option<usize>, to: usize| match from {
        Some(from) => RelPath {
            parent: parent.map(Arc::clone),
            tail: Arc::from(&dir[from + 1..to]),
        },
        None => RelPath::whole(&dir[..to]),
    };
    let held = held.map(|i| chain[i]);
    if common == dir.len() || common == held_len.unwrap_or(0) {
        // `dir` is above `near`, or nothing more is in common: below what is held.
        return Arc::new(below(held, held_len, dir.len()));
    }
    let shared = Arc::new(below(held, held_len, common));
    Arc::new(below(Some(&shared), Some(common), dir.len()))
}

/// How much of `a` and `b` (directories) is the same directories: the length of the
/// longest text both start with that ends at the end of a component of each (0: none).
fn common_dirs(a: &str, b: &str) -> usize {
    let ends = |s: &str, i: usize| s.len() == i || s.as_bytes()[i] == b'/';
    let same = a
        .bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    (0..=same)
        .rev()
        .find(|&i| i > 0 && ends(a, i) && ends(b, i))
        .unwrap_or(0)
}

impl PartialEq for RelPath {
    fn eq(&self, other: &RelPath) -> bool {
        if self.same_parent(other) {
            return self.tail == other.tail;
        }
        self.components() == other.components()
    }
}

impl Eq for RelPath {}

impl Hash for RelPath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash_into(state);
    }
}

impl Ord for RelPath {
    /// By components from the top; a directory before what is below it.
    fn cmp(&self, other: &RelPath) -> Ordering {
        if self.same_parent(other) {
            return by_components(&self.tail, &other.tail);
        }
        self.components().cmp(&other.components())
    }
}

/// `a` and `b` ordered by their components: as bytes, a `/` below any other byte (a
/// component that ends is a prefix of the other's), without splitting them.
fn by_components(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let key = |byte: u8| if byte == b'/' { 0 } else { byte };
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => key(a[i]).cmp(&key(b[i])),
        None => a.len().cmp(&b.len()),
    }
}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &RelPath) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RelPath").field(&self.to_string()).finish()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = &self.parent {
            write!(f, "{parent}/")?;
        }
        f.write_str(&self.tail)
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
    let mut depth = link_dir.map_or(0, RelPath::depth);
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
        assert_eq!(p.parent().unwrap().text(), "pool/main/f/foo");
        assert!(p.starts_with(&RelPath::new("pool/main").unwrap()));
        assert!(!p.starts_with(&RelPath::new("pool/mai").unwrap()));
        assert_eq!(RelPath::new("a").unwrap().parent(), None);
        assert_eq!(RelPath::new("a...b").unwrap().text(), "a...b");
    }

    #[test]
    fn paths_in_one_directory_share_it_and_equal_any_other() {
        let path = |s: &str| RelPath::new(s).unwrap();
        let mut dirs = None;
        let a = path("pool/main/f/foo/foo_1.deb");
        let (a2, b) =
            RelPath::share_dir(&a, &path("pool/main/f/foo/foo_2.deb"), &mut dirs).unwrap();
        let a2 = a2.unwrap();
        let (none, c) =
            RelPath::share_dir(&b, &path("pool/main/f/foo/foo_3.deb"), &mut dirs).unwrap();
        assert!(none.is_none(), "b already is in the shared directory");
        assert!(Arc::ptr_eq(
            a2.parent.as_ref().unwrap(),
            c.parent.as_ref().unwrap()
        ));
        assert!(RelPath::share_dir(&c, &path("pool/main/g/gee/gee_1.deb"), &mut dirs).is_none());
        let g = path("pool/main/g/gee/gee_1.deb");
        let (_, g2) =
            RelPath::share_dir(&g, &path("pool/main/g/gee/gee_2.deb"), &mut dirs).unwrap();
        let h = path("pool/main/h/hee/hee_1.deb");
        let (_, h2) =
            RelPath::share_dir(&h, &path("pool/main/h/hee/hee_2.deb"), &mut dirs).unwrap();
        let above = |p: &RelPath| Arc::clone(p.parent.as_ref().unwrap().parent.as_ref().unwrap());
        assert!(
            Arc::ptr_eq(&above(&g2), &above(&h2)),
            "pool/main/ is held once"
        );
        assert_eq!(above(&h2).to_string(), "pool/main");
        assert_eq!(
            h2.parent.as_ref().unwrap().tail.as_ref(),
            "h/hee",
            "one piece"
        );
        assert_eq!(h2.parent().unwrap(), path("pool/main/h/hee"));
        assert_eq!(h2.parent().unwrap().parent().unwrap(), path("pool/main/h"));
        assert_eq!(h2.depth(), 5);
        assert!(h2.starts_with(&path("pool/main/h")) && !h2.starts_with(&path("pool/main/g")));
        for (shared, whole) in [(&a2, &a), (&b, &path("pool/main/f/foo/foo_2.deb"))] {
            assert_eq!(shared, whole);
            assert_eq!(shared.to_string(), whole.to_string());
            assert_eq!(shared.cmp(whole), Ordering::Equal);
            let state = std::hash::RandomState::new();
            let h = |p: &RelPath| std::hash::BuildHasher::hash_one(&state, p);
            assert_eq!(h(shared), h(whole));
            assert_eq!(shared.parent(), whole.parent());
            assert_eq!(shared.depth(), 5);
        }
        assert_ne!(a2, b);
        assert!(b < c && a < b && b > a2);
        assert_eq!(c.file_name(), "foo_3.deb");
        assert_eq!(c.first_component(), "pool");
        assert_eq!(c.text(), "pool/main/f/foo/foo_3.deb");
        assert!(b.starts_with(&path("pool/main")));
        assert!(!b.starts_with(&path("pool/mai")));
        assert!(!path("pool").starts_with(&b));
        let joined = path("dists/x").join(&path("main/Packages"));
        assert_eq!(joined, path("dists/x/main/Packages"));
        assert_eq!(joined.first_component(), "dists");
        assert_eq!(joined.file_name(), "Packages");
        assert_eq!(joined.parent().unwrap(), path("dists/x/main"));
    }

    #[test]
    fn directories_share_what_they_have_in_common_in_any_order() {
        assert_eq!(common_dirs("a/bc/d", "a/bc/e"), 4);
        assert_eq!(common_dirs("a/bc/d", "a/bcd"), 1);
        assert_eq!(common_dirs("a/b", "a/b/c"), 3);
        assert_eq!(common_dirs("ab", "a"), 0);
        assert_eq!(common_dirs("x", "y"), 0);
        let dirs = [
            "pool/main/p0/s0/n0",
            "pool/main/p0/s1/n1",
            "pool/main/p0/s2/n2",
            "pool/main/p1/s3/n3",
            "pool/main/p1/s3",
            "pool/main/p1/s3/n3/deeper/still",
            "pool/main/p1",
            "pool/main/p1",
            "pool/other",
            "dists/x",
            "pool/main/p1/s4/n4",
        ];
        let mut near: Option<Arc<RelPath>> = None;
        let mut made = Vec::new();
        for dir in dirs {
            let d = dir_near(dir, near.as_ref());
            assert_eq!(d.to_string(), dir);
            assert_eq!(*d, RelPath::new(dir).unwrap());
            assert_eq!(d.depth(), dir.split('/').count());
            made.push(Arc::clone(&d));
            near = Some(d);
        }
        let parent = |i: usize| Arc::clone(made[i].parent.as_ref().unwrap());
        assert!(
            Arc::ptr_eq(&parent(1), &parent(2)),
            "pool/main/p0 held once"
        );
        assert_eq!(parent(2).to_string(), "pool/main/p0");
        assert_eq!(made[2].tail.as_ref(), "s2/n2");
        assert!(Arc::ptr_eq(&made[6], &made[7]), "the same directory again");
        assert!(made[9].parent.is_none(), "nothing in common");
    }

    #[test]
    fn paths_sort_by_components_a_directory_first_then_what_is_below_it() {
        let mut paths: Vec<RelPath> = ["a-b", "a/b/c", "a", "b", "a/b", "a/a", "a-b/c"]
            .iter()
            .map(|p| RelPath::new(p).unwrap())
            .collect();
        paths.sort();
        let sorted: Vec<String> = paths.iter().map(RelPath::to_string).collect();
        assert_eq!(sorted, ["a", "a/a", "a/b", "a/b/c", "a-b", "a-b/c", "b"]);
        for (x, y) in [
            ("a/b", "a-b"),
            ("a", "a/b"),
            ("ab/c", "a/b"),
            ("x/yz", "x/y/z"),
        ] {
            let want = x.split('/').cmp(y.split('/'));
            assert_eq!(by_components(x, y), want, "{x} {y}");
            assert_eq!(
                RelPath::new(x).unwrap().cmp(&RelPath::new(y).unwrap()),
                want
            );
        }
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
