//! [`Names`]: the remote directories the directory table and the confinement know, each
//! name held once, as its parent's number and its last component. A run may know a
//! directory per file (100 000 of them, deep): full paths, twice in each table, were most
//! of its memory; a tree of last components costs a few bytes more than the names
//! themselves.
//!
//! Pure: bytes in, numbers out. The parent of a path is [`RemotePath::parent`]'s, so a
//! path has one decomposition and one number.

use std::hash::{BuildHasher, RandomState};

use crate::remote_path::RemotePath;

/// A directory's number in its [`Names`].
pub(crate) type Name = u32;

/// The parent of a name that has none (a single component, or `/x`); in
/// [`Names::index`], a free slot.
const TOP: Name = Name::MAX;

/// The bytes of a chunk of [`Names::bytes`], and the nodes of one of [`Names::nodes`]:
/// held in chunks that never move, the tables grow by a chunk at a time, not by doubling
/// (which held up to twice what they need, and the old copy beside the new one while
/// they grew).
const CHUNK_BYTES: usize = 64 * 1024;

/// [`Node::at`] of a name forgotten: no chunk has that number.
const FORGOTTEN: u32 = u32::MAX;
const CHUNK_NODES: usize = 4096;

/// A vector in chunks of [`CHUNK_NODES`] that never move: it grows by a chunk at a time,
/// never to twice what it holds, nor with the old copy beside the new one while it grows.
/// The per-directory tables of the directory table and the confinement are held so: a
/// run may know a directory per file.
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, value: T) {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK_NODES) {
            self.chunks.push(Vec::with_capacity(CHUNK_NODES));
        }
        self.chunks.last_mut().expect("just made").push(value);
        self.len += 1;
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK_NODES)?.get(i % CHUNK_NODES)
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(i / CHUNK_NODES)?
            .get_mut(i % CHUNK_NODES)
    }
}

impl<T: Clone> Chunked<T> {
    /// Grows to `len` entries (if shorter), the new ones `value`.
    pub(crate) fn fill_to(&mut self, len: usize, value: T) {
        while self.len < len {
            self.push(value.clone());
        }
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        self.get(i).expect("an index within the table")
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        self.get_mut(i).expect("an index within the table")
    }
}

#[derive(Debug, Clone, Copy)]
struct Node {
    parent: Name,
    /// The last component (the whole path for a top name): the chunk of [`Names::bytes`]
    /// it is in (high 16 bits) and where in it (low 16 bits). A component longer than a
    /// chunk has a chunk of its own, at 0.
    at: u32,
    len: u32,
}

/// The directories known, numbered in the order they were first named. Names forgotten
/// ([`Names::forget`]) are no longer found and their numbers are never given again.
#[derive(Debug, Default)]
pub(crate) struct Names {
    nodes: Chunked<Node>,
    /// Every last component, one after the other, in chunks.
    bytes: Vec<Vec<u8>>,
    /// An open-addressed table of names by the hash of their full path ([`TOP`]: free),
    /// its length a power of two, at most three quarters full: 4 bytes a slot, where a map
    /// of hashes to names took 16 and more.
    index: Vec<Name>,
    len: usize,
    /// The names not forgotten ([`Names::forget`]).
    live: usize,
    hasher: RandomState,
    /// For tests: every path hashes alike, as if all collided.
    #[cfg(test)]
    colliding: bool,
}

impl Names {
    /// The number of `path`, if it has one.
    pub(crate) fn find(&self, path: &RemotePath) -> Option<Name> {
        self.find_bytes(path.as_bytes(), self.hash(path.as_bytes()))
            .ok()
    }

    fn hash(&self, path: &[u8]) -> u32 {
        #[cfg(test)]
        if self.colliding {
            return 7;
        }
        // The low bits: a slot's position comes from them.
        self.hasher.hash_one(path) as u32
    }

    /// The name of `path` (hashed `hash`), or the free slot of the index where it goes.
    fn find_bytes(&self, path: &[u8], hash: u32) -> Result<Name, usize> {
        if self.index.is_empty() {
            return Err(0);
        }
        let mask = self.index.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            match self.index[slot] {
                TOP => return Err(slot),
                n if self.is(n, path) => return Ok(n),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// The number of `path`, given one (and its parents) if it has none yet.
    pub(crate) fn intern(&mut self, path: &RemotePath) -> Name {
        self.intern_bytes(path.as_bytes())
    }

    fn intern_bytes(&mut self, path: &[u8]) -> Name {
        let hash = self.hash(path);
        if let Ok(n) = self.find_bytes(path, hash) {
            return n;
        }
        let (parent, leaf) = match parent_end(path) {
            Some(slash) => (self.intern_bytes(&path[..slash]), &path[slash + 1..]),
            None => (TOP, path),
        };
        let n = Name::try_from(self.len)
            .ok()
            .filter(|&n| n != TOP)
            .expect("fewer than 4 billion directories");
        let node = Node {
            parent,
            at: self.store(leaf),
            len: u32::try_from(leaf.len()).expect("a name shorter than 4 GiB"),
        };
        if (self.live + 1) * 4 > self.index.len() * 3 {
            self.grow_index();
        }
        self.nodes.push(node);
        self.len += 1;
        self.live += 1;
        // Looked up again: the parent's interning, or the growth, may have moved its slot.
        let slot = self.find_bytes(path, hash).expect_err("not there yet");
        self.index[slot] = n;
        n
    }

    /// Puts `leaf` in the chunks of bytes; where it is ([`Node::at`]).
    fn store(&mut self, leaf: &[u8]) -> u32 {
        store(&mut self.bytes, leaf)
    }

    /// Twice as many slots in the index, every name put in again (hashed again: a hash
    /// kept with each name would cost more than the rare growth).
    fn grow_index(&mut self) {
        self.rebuild_index((self.index.len() * 2).max(64));
    }

    /// An index of `slots` slots (a power of two) of the live names.
    fn rebuild_index(&mut self, slots: usize) {
        let mut index = vec![TOP; slots];
        let mask = slots - 1;
        for n in 0..self.len as Name {
            if self.node(n).at == FORGOTTEN {
                continue;
            }
            let hash = self.hash(self.path(n).as_bytes());
            let mut slot = hash as usize & mask;
            while index[slot] != TOP {
                slot = (slot + 1) & mask;
            }
            index[slot] = n;
        }
        self.index = index;
    }

    /// The names not forgotten.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// How many numbers were given: every name is below it.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `n` is a name not forgotten.
    pub(crate) fn is_live(&self, n: Name) -> bool {
        self.node(n).at != FORGOTTEN
    }

    /// Forgets every name that `keep` does not keep: it is found no more, and its text is
    /// let go (the rest is packed again). `keep` must keep the parents of what it keeps.
    /// The numbers stay: a forgotten one is never given again, and one kept keeps its own.
    pub(crate) fn forget(&mut self, keep: impl Fn(Name) -> bool) {
        let mut bytes: Vec<Vec<u8>> = Vec::new();
        let old = std::mem::take(&mut self.bytes);
        self.live = 0;
        for n in 0..self.len as Name {
            let node = *self.node(n);
            if node.at == FORGOTTEN {
                continue;
            }
            if !keep(n) {
                self.nodes[n as usize].at = FORGOTTEN;
                continue;
            }
            debug_assert!(self.parent(n).is_none_or(&keep), "a parent is kept");
            let offset = (node.at & 0xffff) as usize;
            let leaf = &old[(node.at >> 16) as usize][offset..offset + node.len as usize];
            self.nodes[n as usize].at = store(&mut bytes, leaf);
            self.live += 1;
        }
        self.bytes = bytes;
        let mut slots = 64;
        while self.live * 4 > slots * 3 {
            slots *= 2;
        }
        self.rebuild_index(slots);
    }

    fn node(&self, n: Name) -> &Node {
        &self.nodes[n as usize]
    }

    /// The parent of `n`, if it has one.
    pub(crate) fn parent(&self, n: Name) -> Option<Name> {
        let parent = self.node(n).parent;
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
        let node = self.node(n);
        let offset = (node.at & 0xffff) as usize;
        &self.bytes[(node.at >> 16) as usize][offset..offset + node.len as usize]
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

/// Puts `leaf` in `chunks` of bytes; where it is ([`Node::at`]).
fn store(chunks: &mut Vec<Vec<u8>>, leaf: &[u8]) -> u32 {
    let fits = |c: &Vec<u8>| c.capacity() - c.len() >= leaf.len();
    if !chunks.last().is_some_and(fits) {
        chunks.push(Vec::with_capacity(CHUNK_BYTES.max(leaf.len())));
    }
    let chunk = chunks.len() - 1;
    let bytes = chunks.last_mut().expect("just made");
    let offset = bytes.len();
    bytes.extend_from_slice(leaf);
    let at = u32::try_from(chunk)
        .ok()
        .filter(|&c| c < 0xffff)
        .expect("less than 4 GiB of names")
        << 16
        | offset as u32;
    debug_assert_ne!(at, FORGOTTEN);
    at
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
        let mut names = Names {
            colliding: true,
            ..Names::default()
        };
        let paths: Vec<String> = (0..200).map(|k| format!("/x/{k}/y")).collect();
        let numbers: Vec<Name> = paths.iter().map(|p| names.intern(&rp(p))).collect();
        for (p, &n) in paths.iter().zip(&numbers) {
            assert_eq!(names.find(&rp(p)), Some(n));
            assert_eq!(names.intern(&rp(p)), n);
            assert_eq!(names.path(n), rp(p));
        }
        assert_eq!(names.find(&rp("/x/200/y")), None);
        assert_eq!(
            names.find(&rp("/x")),
            names.parent(names.find(&rp("/x/3")).unwrap())
        );
    }

    #[test]
    fn forgotten_names_are_not_found_and_their_numbers_not_given_again() {
        let mut names = Names::default();
        let paths: Vec<String> = (0..1000).map(|k| format!("/srv/{}/{k}", k % 7)).collect();
        let numbers: Vec<Name> = paths.iter().map(|p| names.intern(&rp(p))).collect();
        // Kept: `/srv`, `/srv/K` and every third below them.
        let kept: Vec<bool> = (0..names.len() as Name)
            .map(|n| names.path(n).as_bytes().split(|&b| b == b'/').count() <= 3 || n % 3 == 0)
            .collect();
        let keep = |n: Name| kept[n as usize];
        names.forget(keep);
        for (p, &n) in paths.iter().zip(&numbers) {
            assert_eq!(names.find(&rp(p)), keep(n).then_some(n), "{p}");
            if keep(n) {
                assert_eq!(names.path(n), rp(p));
            }
        }
        assert_eq!(
            names.find(&rp("/srv/3")).map(|n| names.path(n)),
            Some(rp("/srv/3"))
        );
        let len = names.len();
        let forgotten = paths
            .iter()
            .zip(&numbers)
            .find(|(_, n)| !keep(**n))
            .unwrap();
        let again = names.intern(&rp(forgotten.0));
        assert_eq!(again as usize, len);
        assert_eq!(names.path(again), rp(forgotten.0));
        assert_eq!(
            names.live(),
            names.len() - (0..len as Name).filter(|&n| !keep(n)).count()
        );
    }

    #[test]
    fn many_names_and_long_ones_span_chunks() {
        let mut names = Names::default();
        let long = "n".repeat(CHUNK_BYTES + 10);
        let paths: Vec<String> = (0..3 * CHUNK_NODES)
            .map(|k| match k % 1000 {
                500 => format!("/srv/{long}{k}"),
                _ => format!("/srv/{}/{k}", "d".repeat(k % 300 + 1)),
            })
            .collect();
        let numbers: Vec<Name> = paths.iter().map(|p| names.intern(&rp(p))).collect();
        for (p, &n) in paths.iter().zip(&numbers) {
            assert_eq!(names.find(&rp(p)), Some(n));
            assert_eq!(names.path(n), rp(p));
        }
        assert!(names.bytes.len() > 2 && names.nodes.chunks.len() > 2);
    }
}
