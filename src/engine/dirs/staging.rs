//! New trees built under a stand-in name: where a missing directory is to be made with more
//! missing ones below it, on a server that acts in order, the whole tree is made in one
//! flight under a name no one can guess (beside it, in its parent, which is known to be
//! inside) and renamed into place in the same flight, instead of a round trip per level.
//!
//! A MKDIR may only go right behind its parent's where the parent cannot be anything but
//! the directory just made: below the real name, a symlink planted after the check (the
//! MKDIR then fails) would be followed. Nothing can have been planted at a name drawn
//! from this process's random keys, and the plain RENAME refuses a name that is taken
//! (OpenSSH's checks that nothing stands there, following symlinks): the tree arrives whole
//! where it should, or not at all.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::remote_path::RemotePath;
use crate::sftp::wire::Response;

/// The longest name a directory may have to be staged: its stand-in adds 18 bytes, and a
/// name must stay within the usual 255.
const NAME_MAX_STAGED: usize = 255 - 18;

/// One tree on its way: its top (the missing directory whose parent is inside), and the
/// directories below it, parents before children.
#[derive(Debug)]
pub(super) struct Tree {
    pub(super) top: usize,
    pub(super) members: Vec<usize>,
    /// Where it is built, once its requests are sent.
    pub(super) stand_in: Option<RemotePath>,
    /// The answer to the top's MKDIR under the stand-in, where it failed.
    pub(super) top_failure: Option<Response>,
}

/// The trees of a run, and the keys their names are drawn from.
#[derive(Debug, Default)]
pub(super) struct Staging {
    /// By number; a tree whose fate is decided is dropped (a run may make one per
    /// directory it adds).
    trees: Vec<Option<Box<Tree>>>,
    /// Trees whose requests are still to be sent ([`super::DirTable::flush`]).
    pub(super) unsent: Vec<usize>,
    /// The server would not rename a tree into place: no more are staged.
    pub(super) refused: bool,
    keys: RandomState,
}

impl Staging {
    /// A name for the tree `top` will head, beside it: `.NAME.` and 16 hex digits no one
    /// outside this process can tell; `None` where the name would be too long.
    pub(super) fn stand_in(&self, top: &RemotePath, tree: usize) -> Option<RemotePath> {
        if !fits(top) {
            return None;
        }
        let bytes = top.as_bytes();
        let slash = bytes.iter().rposition(|&b| b == b'/')?;
        let name = &bytes[slash + 1..];
        let mut hasher = self.keys.build_hasher();
        hasher.write_usize(tree);
        let mut out = bytes[..=slash].to_vec();
        out.push(b'.');
        out.extend_from_slice(name);
        out.extend_from_slice(format!(".{:016x}", hasher.finish()).as_bytes());
        RemotePath::new(out).ok()
    }

    /// Tree `k`, on its way.
    pub(super) fn tree(&mut self, k: usize) -> &mut Tree {
        self.trees[k].as_deref_mut().expect("a tree on its way")
    }

    /// Tree `k`, if its requests are still to be sent: directories may join it.
    pub(super) fn unsent_tree(&mut self, k: usize) -> Option<&mut Tree> {
        self.trees[k]
            .as_deref_mut()
            .filter(|t| t.stand_in.is_none())
    }

    /// The trees whose requests went and whose fate is not known: their stand-ins may be
    /// on the server.
    pub(super) fn undecided(&self) -> impl Iterator<Item = &Tree> {
        self.trees
            .iter()
            .flatten()
            .map(|t| &**t)
            .filter(|t| t.stand_in.is_some())
    }

    /// Tree `k` is decided: what it held goes.
    pub(super) fn end(&mut self, k: usize) {
        self.trees[k] = None;
    }

    /// The tree `top` heads: a new one.
    pub(super) fn begin(&mut self, top: usize) -> usize {
        let k = self.trees.len();
        self.trees.push(Some(Box::new(Tree {
            top,
            members: vec![top],
            stand_in: None,
            top_failure: None,
        })));
        self.unsent.push(k);
        k
    }
}

/// Whether `top` can have a stand-in: its name is short enough for one, and it has a
/// directory above it.
pub(super) fn fits(top: &RemotePath) -> bool {
    let bytes = top.as_bytes();
    bytes
        .iter()
        .rposition(|&b| b == b'/')
        .is_some_and(|slash| bytes.len() - slash - 1 <= NAME_MAX_STAGED)
}

/// Where `member`, below `top`, is built under `stand_in`.
pub(super) fn under_stand_in(
    stand_in: &RemotePath,
    top: &RemotePath,
    member: &RemotePath,
) -> RemotePath {
    let rest = &member.as_bytes()[top.as_bytes().len()..];
    let mut out = stand_in.as_bytes().to_vec();
    out.extend_from_slice(rest);
    RemotePath::new(out).expect("a path below a valid path")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RemotePath {
        RemotePath::new(s).unwrap()
    }

    #[test]
    fn a_stand_in_is_hidden_beside_its_top_and_differs_by_tree() {
        let staging = Staging::default();
        let a = staging.stand_in(&rp("/m/pool/main"), 0).unwrap();
        let b = staging.stand_in(&rp("/m/pool/main"), 1).unwrap();
        assert!(a.as_bytes().starts_with(b"/m/pool/.main."), "{a}");
        assert_eq!(a.as_bytes().len(), "/m/pool/.main.".len() + 16);
        assert_ne!(a, b);
        // Another process draws other names.
        let other = Staging::default().stand_in(&rp("/m/pool/main"), 0).unwrap();
        assert_ne!(a, other);
        let long = format!("/m/{}", "n".repeat(240));
        assert_eq!(staging.stand_in(&rp(&long), 0), None);
    }

    #[test]
    fn a_member_is_built_at_its_place_under_the_stand_in() {
        let got = under_stand_in(
            &rp("/m/pool/.main.0123456789abcdef"),
            &rp("/m/pool/main"),
            &rp("/m/pool/main/a/apt"),
        );
        assert_eq!(got, rp("/m/pool/.main.0123456789abcdef/a/apt"));
    }
}
