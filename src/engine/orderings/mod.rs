//! The engine's tricky orderings, driven against the scripted in-memory server of
//! [`super::peer`]: replies out of order, directories raced for, requests failed mid-batch.
//! They pin what the state machines promise on any server; the integration tests against
//! real servers (tests/integration) pin that the servers behave as the peer plays them.

mod aside;
mod confinement;
mod directories;
mod faults;
mod landing;
mod parts;
mod reading;
mod servers;

use super::op::Op;
use super::peer::{Flavour, Pair, Peer};
use crate::remote_path::RemotePath;

pub(super) fn rp(path: &str) -> RemotePath {
    RemotePath::new(path).expect("a remote path")
}

/// `len` bytes that differ from one `seed` to another.
pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// An upload of `data` (written locally first) to `remote`, with a time.
pub(super) fn upload(pair: &Pair, remote: &str, data: &[u8]) -> Op {
    let name = remote.replace('/', "_");
    Op::Upload {
        local: pair.local(&name, data),
        remote: rp(remote),
        fsync: false,
        mtime: Some(1_000_000_000),
    }
}

/// A pair for each flavour of server, whose tree `setup` prepares.
pub(super) fn both(setup: impl Fn(&mut Peer)) -> [(Flavour, Pair); 2] {
    [Flavour::OpenSsh, Flavour::Other].map(|flavour| {
        let mut peer = Peer::new(flavour);
        setup(&mut peer);
        (flavour, Pair::new(peer))
    })
}

/// A request line with a stand-in name (`/.NAME.` and 16 hex digits, see
/// `dirs::staging`) written as the real name: what the request makes, once the tree is
/// renamed into place.
pub(super) fn unstaged(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(k) = rest.find("/.") {
        out.push_str(&rest[..k + 1]);
        let after = &rest[k + 2..];
        let end = after.find([' ', '/']).unwrap_or(after.len());
        let word = &after[..end];
        match word.rsplit_once('.') {
            Some((name, tag)) if tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.push_str(name)
            }
            _ => {
                out.push('.');
                out.push_str(word);
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}
