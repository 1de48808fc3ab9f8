//! The peer's file tree: files with contents, mode and time, directories, symlinks; and
//! what the requests about paths do to it, with the semantics of OpenSSH's server on
//! Linux (rename by link and unlink, realpath(3) that allows a missing last name, errno
//! mapped to the draft's codes as `sftp-server` maps them).

use std::collections::BTreeMap;

use super::status;
use crate::sftp::wire::{self, Attrs, ExtendedRequest, NameEntry, Request, Response, StatusCode};

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    File {
        data: Vec<u8>,
        mode: u32,
        mtime: u32,
    },
    Dir,
    Link(Vec<u8>),
}

/// The server's files, by absolute path without `//` or a trailing `/`; `/` always exists.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fs {
    pub(super) nodes: BTreeMap<Vec<u8>, Node>,
}

pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// `path` split into its directory and last name (`/` for a top-level one).
pub(super) fn split(path: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/".to_vec(), path[1..].to_vec()),
        Some(k) => (path[..k].to_vec(), path[k + 1..].to_vec()),
        None => (b"/".to_vec(), path.to_vec()),
    }
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

impl Fs {
    /// Makes `path` a directory, and the missing ones above it.
    pub(crate) fn dir(&mut self, path: &str) -> &mut Fs {
        let mut at = b"/".to_vec();
        for c in components(path.as_bytes()) {
            at = join(&at, &c);
            self.nodes.entry(at.clone()).or_insert(Node::Dir);
        }
        self
    }

    /// Takes away what is at `path` (nothing below it is looked at).
    pub(crate) fn remove(&mut self, path: &str) -> &mut Fs {
        self.nodes.remove(path.as_bytes());
        self
    }

    /// Puts a file with `data` at `path` (its directory must exist).
    pub(crate) fn file(&mut self, path: &str, data: &[u8]) -> &mut Fs {
        let node = Node::File {
            data: data.to_vec(),
            mode: 0o644,
            mtime: 0,
        };
        self.nodes.insert(path.as_bytes().to_vec(), node);
        self
    }

    /// Puts a symlink to `target` at `path`.
    pub(crate) fn link(&mut self, path: &str, target: &str) -> &mut Fs {
        let node = Node::Link(target.as_bytes().to_vec());
        self.nodes.insert(path.as_bytes().to_vec(), node);
        self
    }

    /// What is at `path` itself (a symlink is not followed).
    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path.as_bytes())
    }

    /// The content of the regular file at `path` (a symlink is not followed).
    pub(crate) fn read(&self, path: &str) -> Option<&[u8]> {
        match self.get(path) {
            Some(Node::File { data, .. }) => Some(data),
            _ => None,
        }
    }

    /// The names directly in directory `dir`, sorted.
    pub(crate) fn names(&self, dir: &str) -> Vec<String> {
        self.entries(dir.as_bytes())
            .into_iter()
            .map(|(name, _)| String::from_utf8_lossy(&name).into_owned())
            .collect()
    }

    pub(super) fn entries(&self, dir: &[u8]) -> Vec<(Vec<u8>, &Node)> {
        self.nodes
            .iter()
            .filter_map(|(p, node)| {
                let (parent, name) = split(p);
                (parent == dir && p.as_slice() != b"/").then_some((name, node))
            })
            .collect()
    }

    pub(super) fn is_dir(&self, path: &[u8]) -> bool {
        path == b"/" || matches!(self.nodes.get(path), Some(Node::Dir))
    }

    /// `path` with every symlink resolved (the last one too where `follow_last`), as
    /// realpath(3) on OpenSSH's server: the last name may be missing, no other.
    pub(super) fn resolve(&self, path: &[u8], follow_last: bool) -> Result<Vec<u8>, StatusCode> {
        let mut todo = components(path);
        todo.reverse();
        let mut at = b"/".to_vec();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == b".." {
                at = split(&at).0;
                continue;
            }
            let next = join(&at, &c);
            let last = todo.is_empty();
            match self.nodes.get(&next) {
                Some(Node::Link(target)) if !last || follow_last => {
                    hops += 1;
                    if hops > 32 {
                        return Err(StatusCode::Failure);
                    }
                    if target.starts_with(b"/") {
                        at = b"/".to_vec();
                    }
                    todo.extend(components(target).into_iter().rev());
                }
                Some(Node::Dir) => at = next,
                _ if last => at = next,
                _ => return Err(StatusCode::NoSuchFile),
            }
        }
        Ok(at)
    }

    /// Where a request about the name `path` itself acts: its directory resolved, its last
    /// name not followed; the directory must exist.
    pub(super) fn locate(&self, path: &[u8]) -> Result<Vec<u8>, StatusCode> {
        let (dir, name) = split(path);
        let dir = self.resolve(&dir, true)?;
        if !self.is_dir(&dir) {
            return Err(StatusCode::NoSuchFile);
        }
        Ok(join(&dir, &name))
    }

    pub(super) fn attrs(&self, path: &[u8]) -> Result<Attrs, StatusCode> {
        let (size, permissions, mtime) = match self.nodes.get(path) {
            None if path == b"/" => (0, 0o040755, 0),
            None => return Err(StatusCode::NoSuchFile),
            Some(Node::Dir) => (0, 0o040755, 0),
            Some(Node::Link(t)) => (t.len() as u64, 0o120777, 0),
            Some(Node::File { data, mode, mtime }) => (data.len() as u64, 0o100000 | mode, *mtime),
        };
        Ok(Attrs {
            size: Some(size),
            permissions: Some(permissions),
            times: Some((mtime, mtime)),
            ..Attrs::default()
        })
    }

    pub(super) fn file_mut(&mut self, path: &[u8]) -> Result<(&mut Vec<u8>, &mut u32), StatusCode> {
        match self.nodes.get_mut(path) {
            Some(Node::File { data, mtime, .. }) => Ok((data, mtime)),
            _ => Err(StatusCode::Failure),
        }
    }

    /// RENAME (OpenSSH's links and unlinks: an existing `to` is refused) or, with
    /// `replace`, posix-rename (rename(2): a file or symlink at `to` is replaced).
    fn rename(&mut self, from: &[u8], to: &[u8], replace: bool) -> Result<Response, StatusCode> {
        let (from, to) = (self.locate(from)?, self.locate(to)?);
        if !self.nodes.contains_key(&from) {
            return Err(StatusCode::NoSuchFile);
        }
        if self.is_dir(&to) || !replace && self.nodes.contains_key(&to) {
            return Err(StatusCode::Failure);
        }
        self.nodes.remove(&to);
        // What is below `from` moves with it.
        let below: Vec<Vec<u8>> = self
            .nodes
            .keys()
            .filter(|p| *p == &from || p.starts_with(&join(&from, b"")))
            .cloned()
            .collect();
        for p in below {
            let node = self.nodes.remove(&p).expect("listed");
            let mut moved = to.clone();
            moved.extend_from_slice(&p[from.len()..]);
            self.nodes.insert(moved, node);
        }
        Ok(status(StatusCode::Ok))
    }

    pub(super) fn set_attrs(&mut self, path: &[u8], attrs: &Attrs) -> Result<Response, StatusCode> {
        let (data, mtime) = self.file_mut(path)?;
        if let Some(size) = attrs.size {
            data.resize(size as usize, 0);
        }
        if let Some((_, m)) = attrs.times {
            *mtime = m;
        }
        Ok(status(StatusCode::Ok))
    }

    /// What the tree answers to a request about paths, as OpenSSH's server would.
    pub(super) fn carry_out(&mut self, request: &Request) -> Result<Response, StatusCode> {
        let ok = Ok(status(StatusCode::Ok));
        let fs = self;
        match request {
            Request::Setstat { path, attrs } => {
                let path = fs.resolve(path, true)?;
                fs.set_attrs(&path, attrs)
            }
            Request::Lstat { path } => Ok(Response::Attrs(fs.attrs(&fs.locate(path)?)?)),
            Request::Stat { path } => Ok(Response::Attrs(fs.attrs(&fs.resolve(path, true)?)?)),
            Request::Realpath { path } => Ok(one_name(fs.resolve(path, true)?)),
            Request::Readlink { path } => match fs.nodes.get(&fs.locate(path)?) {
                Some(Node::Link(target)) => Ok(one_name(target.clone())),
                Some(_) => Err(StatusCode::Failure),
                None => Err(StatusCode::NoSuchFile),
            },
            Request::Remove { path } => {
                let at = fs.locate(path)?;
                match fs.nodes.get(&at) {
                    Some(Node::Dir) => Err(StatusCode::Failure),
                    Some(_) => {
                        fs.nodes.remove(&at);
                        ok
                    }
                    None => Err(StatusCode::NoSuchFile),
                }
            }
            Request::Mkdir { path, .. } => {
                let at = fs.locate(path)?;
                if fs.is_dir(&at) || fs.nodes.contains_key(&at) {
                    return Err(StatusCode::Failure);
                }
                fs.nodes.insert(at, Node::Dir);
                ok
            }
            Request::Rmdir { path } => {
                let at = fs.locate(path)?;
                match fs.nodes.get(&at) {
                    Some(Node::Dir) if fs.entries(&at).is_empty() => {
                        fs.nodes.remove(&at);
                        ok
                    }
                    Some(_) => Err(StatusCode::Failure),
                    None => Err(StatusCode::NoSuchFile),
                }
            }
            Request::Symlink { link, target, .. } => {
                let at = fs.locate(link)?;
                if fs.nodes.contains_key(&at) {
                    return Err(StatusCode::Failure);
                }
                fs.nodes.insert(at, Node::Link(target.clone()));
                ok
            }
            Request::Rename { from, to } => fs.rename(from, to, false),
            Request::Extended(ExtendedRequest::PosixRename { from, to }) => {
                fs.rename(from, to, true)
            }
            // link(2): a second name for a file; neither name is followed if a symlink.
            Request::Extended(ExtendedRequest::Hardlink { from, to }) => {
                let (from, to) = (fs.locate(from)?, fs.locate(to)?);
                match fs.nodes.get(&from) {
                    None => Err(StatusCode::NoSuchFile),
                    Some(Node::Dir) => Err(StatusCode::PermissionDenied),
                    Some(_) if fs.nodes.contains_key(&to) => Err(StatusCode::Failure),
                    // The tree has no inodes: the link is a copy, which is what it holds
                    // for as long as nothing writes into the file in place (we never do).
                    Some(node) => {
                        let node = node.clone();
                        fs.nodes.insert(to, node);
                        ok
                    }
                }
            }
            Request::Extended(ExtendedRequest::Limits) => {
                let mut data = Vec::new();
                let limits = wire::Limits {
                    max_packet_len: 256 * 1024,
                    max_read_len: 255 * 1024,
                    max_write_len: 255 * 1024,
                    max_open_handles: 1019,
                };
                limits.encode(&mut data);
                Ok(Response::ExtendedReply(data))
            }
            _ => Err(StatusCode::OpUnsupported),
        }
    }
}

/// A NAME reply of one entry.
fn one_name(filename: Vec<u8>) -> Response {
    Response::Name(vec![NameEntry {
        filename,
        longname: Vec::new(),
        attrs: Attrs::default(),
    }])
}
