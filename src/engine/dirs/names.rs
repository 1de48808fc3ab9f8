//! [`Names`]: the remote directories the directory table and the confinement know, each
//! name held once, as its parent's number and its last component. A run may know a
//! directory per file (100 000 of them, deep): full paths, twice in each table, were most
//! of its memory; a tree of last components costs a few bytes more than the names
//! themselves.
//!
//! Pure: bytes in, numbers out. The parent of a path is [`RemotePath::parent`]'s, so a
//! path has one decomposition and one number.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use crate::remote_path::RemotePath;

/// A directory's number in its [`Names`].
pub(crate) type Name = u32;

/// The parent of a name that has none (a single component, or `/x`).
const TOP: Name = Name::MAX;

#[derive(Debug)]
struct Node {
    parent: Name,
    /// The last component, in [`Names::bytes`] (the whole path for a top name).
    start: u32,
    len: u32,
}

/// The keys of [`Names::index`] are already hashes: they are used as they are.
#[derive(Default)]
struct Unhashed(u64);

impl Hasher for Unhashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The directories known, numbered in the order they were first named.
#[derive(Debug, Default)]
pub(crate) struct Names {
    nodes: Vec<Node>,
    /// Every last component, one after the other.
    bytes: Vec<u8>,
    /// By the hash of its full path: the first name with that hash.
    index: HashMap<u64, Name, BuildHasherDefault<Unhashed>>,
    /// The names whose hash an earlier name has (hardly ever any).
    overflow: HashMap<Vec<u8>, Name>,
    hasher: RandomState,
}

impl std::fmt::Debug for Unhashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unhashed")
    }
}

impl Names {
    /// The number of `path`, if it has one.
    pub(crate) fn find(&self, path: &RemotePath) -> Option<Name> {
        self.find_bytes(path.as_bytes())
    }

    fn find_bytes(&self, path: &[u8]) -> Option<Name> {
        match self.index.get(&self.hasher.hash_one(path)) {
            Some(&n) if self.is(n, path) => Some(n),
            Some(_) => self.overflow.get(path).copied(),
            None => None,
        }
    }

    /// The number of `path`, given one (and its parents) if it has none yet.
    pub(crate) fn intern(&mut self, path: &RemotePath) -> Name {
        self.intern_bytes(path.as_bytes())
    }

    fn intern_bytes(&mut self, path: &[u8]) -> Name {
        if let Some(n) = self.find_bytes(path) {
            return n;
        }
        let (parent, leaf) = match parent_end(path) {
            Some(slash) => (self.intern_bytes(&path[..slash]), &path[slash + 1..]),
            None => (TOP, path),
        };
        let n = Name::try_from(self.nodes.len()).expect("fewer than 4 billion directories");
        let start = u32::try_from(self.bytes.len()).expect("less than 4 GiB of names");
        self.bytes.extend_from_slice(leaf);
        self.nodes.push(Node {
            parent,
            start,
            len: leaf.len() as u32,
        });
        match self.index.entry(self.hasher.hash_one(path)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(n);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.overflow.insert(path.to_vec(), n);
            }
        }
        n
    }

    /// The parent of `n`, if it has one.
    pub(crate) fn parent(&self, n: Name) -> Option<Name> {
        let parent = self.nodes[n as usize].parent;
        (parent != TOP).then_some(parent)
    }

    /// The full path of `n`.
    pub(crate) fn path(&self, n: Name) -> RemotePath {
        let mut chain = vec![n];
        while let Some(p) = self.parent(*chain.last().expect("not empty")) {
            chain.push(p);
        }
        let mut bytes = Vec::new();
        for (i, &n) in chain.iter().rev().enumerate() {
            if i > 0 {
                bytes.push(b'/');
            }
            bytes.extend_from_slice(self.leaf(n));
        }
        RemotePath::new(bytes).expect("made of a RemotePath's parts")
    }

    fn leaf(&self, n: Name) -> &[u8] {
        let node = &self.nodes[n as usize];
        &self.bytes[node.start as usize..(node.start + node.len) as usize]
    }

    /// Whether `n` is `path`: its last component ends it, after a `/`, and its parent is
    /// the rest.
    fn is(&self, mut n: Name, mut path: &[u8]) -> bool {
        loop {
            let leaf = self.leaf(n);
            let Some(parent) = self.parent(n) else {
                return path == leaf;
            };
            match path.strip_suffix(leaf).and_then(|p| p.strip_suffix(b"/")) {
                Some(rest) => (n, path) = (parent, rest),
                None => return false,
            }
        }
    }
}

/// Where the parent of `path` ends (its last `/`), as [`RemotePath::parent`] has it: none
/// for a single component or a top-level absolute one.
fn parent_end(path: &[u8]) -> Option<usize> {
    path.iter().rposition(|&b| b == b'/').filter(|&s| s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RemotePath {
        RemotePath::new(s).unwrap()
    }

    #[test]
    fn each_path_has_one_number_and_comes_back_whole() {
        let mut names = Names::default();
        let deep = names.intern(&rp("/srv/m/pool/main/f"));
        let other = names.intern(&rp("/srv/m/pool/main/g"));
        assert_ne!(deep, other);
        assert_eq!(names.intern(&rp("/srv/m/pool/main/f")), deep);
        assert_eq!(names.path(deep), rp("/srv/m/pool/main/f"));
        let main = names.find(&rp("/srv/m/pool/main")).unwrap();
        assert_eq!(names.parent(deep), Some(main));
        assert_eq!(names.path(main), rp("/srv/m/pool/main"));
        assert_eq!(names.parent(names.find(&rp("/srv")).unwrap()), None);
        assert_eq!(names.find(&rp("/srv/m/pool/main/h")), None);
        assert_eq!(names.find(&rp("srv/m")), None);
        let rel = names.intern(&rp("a/b"));
        assert_eq!(names.path(rel), rp("a/b"));
        assert_eq!(names.path(names.parent(rel).unwrap()), rp("a"));
        let slash = names.intern(&rp("/"));
        assert_eq!(names.path(slash), rp("/"));
        assert_eq!(names.find(&rp("/a/b")), None);
    }

    #[test]
    fn names_whose_hashes_collide_are_still_told_apart() {
        let mut names = Names::default();
        let a = names.intern(&rp("x/a"));
        // Another name filed under the same hash, as a collision would.
        let b = names.intern_bytes(b"x/b");
        let hash_a = names.hasher.hash_one(b"x/a".as_slice());
        let hash_b = names.hasher.hash_one(b"x/b".as_slice());
        names.index.remove(&hash_b);
        names.index.insert(hash_b, a);
        names.overflow.insert(b"x/b".to_vec(), b);
        assert_eq!(names.find(&rp("x/b")), Some(b));
        assert_eq!(names.index[&hash_a], a);
        assert_eq!(names.find(&rp("x/a")), Some(a));
        assert_eq!(names.intern(&rp("x/b")), b);
    }
}
