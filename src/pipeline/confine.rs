//! Confinement: nothing is written, renamed onto or removed through a remote symlink or
//! outside the target directory.
//!
//! The server says where a path really is (REALPATH resolves every symlink on the way). At
//! set-up the target directory is resolved once; a path is inside when it resolves to the
//! resolved target directory followed by the rest of the path, unchanged. A symlinked
//! directory anywhere below the target (`pool -> /elsewhere`) resolves elsewhere and is
//! refused.
//!
//! Each directory an operation removes, renames or links in is checked once per connection
//! before that request goes ([`Confinement::check`]), one round trip for the first operation
//! in it. An upload is checked differently, at no round trip: its temporary file (which it
//! created exclusively, so nothing of anyone else's is touched) is resolved in the same
//! flight as its CLOSE, and it is renamed onto its real name only if it resolved inside
//! ([`Confinement::judge`]); what that shows of its directory is kept ([`Confinement::learn`]).
//!
//! Sans-IO: requests are queued on the session, replies handed in.

use std::collections::HashMap;

use super::dirs::Waiter;
use super::op::{Cause, Req, Tag};
use crate::remote_path::RemotePath;
use crate::sftp::session::Session;
use crate::sftp::wire::{Request, Response, StatusCode};

/// What is known of one directory.
#[derive(Debug)]
enum Check {
    /// Its REALPATH is in flight; the operations in `waiters` wait for the verdict.
    Asked,
    /// Resolved, waiting for the target directory's own resolution to be judged.
    Resolved(Vec<u8>),
    Inside,
    Outside(Vec<u8>),
    /// It does not exist: nothing to remove there, and it is made by us if needed.
    Missing,
}

#[derive(Debug)]
struct Dir {
    path: RemotePath,
    check: Check,
    waiters: Vec<Waiter>,
}

/// The target directory as the server resolved it.
#[derive(Debug, Default)]
enum Root {
    /// Not asked yet, or asked and not answered.
    #[default]
    Unknown,
    Known(Vec<u8>),
    /// The server cannot resolve paths (no REALPATH): nothing can be checked.
    Unknowable,
}

/// What [`Confinement::known`] says of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Inside,
    Missing,
}

/// What [`Confinement::check`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Inside,
    Outside(Cause),
    /// Asked; the waiter is released by a later reply.
    Pending,
}

/// Operations (and directories to be made) whose directory was judged, with the verdict.
pub(crate) type Judged = Vec<(Waiter, Result<(), Cause>)>;

/// The directories checked on one connection.
#[derive(Debug, Default)]
pub(crate) struct Confinement {
    /// The target directory (the server's start directory when `None`).
    pub(crate) base: Option<RemotePath>,
    root: Root,
    index: HashMap<RemotePath, usize>,
    dirs: Vec<Dir>,
}

impl Confinement {
    /// Asks the server where the target directory is (once, at set-up).
    pub(crate) fn ask_root(&mut self, session: &mut Session<Tag>) {
        let path = self
            .base
            .as_ref()
            .map_or(b".".to_vec(), |b| b.as_bytes().to_vec());
        session.send(Request::Realpath { path }, Tag::Root);
    }

    /// The target directory's resolution; releases the operations whose directories were
    /// resolved before it.
    pub(crate) fn on_root(&mut self, response: Response) -> Judged {
        self.root = match response {
            Response::Name(names) if names.len() == 1 => {
                Root::Known(names.into_iter().next().expect("one").filename)
            }
            other => {
                log::warn!(
                    "the server does not resolve the target directory ({}): writes through \
                     remote symlinks cannot be detected",
                    describe(&other)
                );
                Root::Unknowable
            }
        };
        let mut judged = Vec::new();
        for k in 0..self.dirs.len() {
            if let Check::Resolved(resolved) = &self.dirs[k].check {
                let resolved = resolved.clone();
                self.settle(k, &resolved, &mut judged);
            }
        }
        judged
    }

    /// Makes sure `dir` is inside before `waiter` removes, renames, links or makes a
    /// directory in it.
    pub(crate) fn check(
        &mut self,
        dir: &RemotePath,
        waiter: Waiter,
        session: &mut Session<Tag>,
    ) -> Verdict {
        // The target directory itself is the administrator's, wherever it is.
        if matches!(self.root, Root::Unknowable) || self.base.as_ref() == Some(dir) {
            return Verdict::Inside;
        }
        if let Some(&k) = self.index.get(dir) {
            let d = &mut self.dirs[k];
            return match &d.check {
                Check::Inside | Check::Missing => Verdict::Inside,
                Check::Outside(resolved) => Verdict::Outside(outside(dir, resolved)),
                Check::Asked | Check::Resolved(_) => {
                    d.waiters.push(waiter);
                    Verdict::Pending
                }
            };
        }
        let k = self.add(dir.clone(), Check::Asked);
        self.dirs[k].waiters.push(waiter);
        session.send(
            Request::Realpath {
                path: dir.as_bytes().to_vec(),
            },
            Tag::Confine { dir: k },
        );
        Verdict::Pending
    }

    /// Asks about `dir` now, with nobody waiting yet, unless it is known or asked.
    pub(crate) fn prefetch(&mut self, dir: &RemotePath, session: &mut Session<Tag>) {
        if matches!(self.root, Root::Unknowable)
            || self.base.as_ref() == Some(dir)
            || self.index.contains_key(dir)
        {
            return;
        }
        let k = self.add(dir.clone(), Check::Asked);
        session.send(
            Request::Realpath {
                path: dir.as_bytes().to_vec(),
            },
            Tag::Confine { dir: k },
        );
    }

    /// The reply to the REALPATH of directory `k`.
    pub(crate) fn on_reply(&mut self, k: usize, response: Response) -> Judged {
        let mut judged = Vec::new();
        match response {
            Response::Name(names) if names.len() == 1 => {
                let resolved = names.into_iter().next().expect("one").filename;
                self.dirs[k].check = Check::Resolved(resolved.clone());
                self.settle(k, &resolved, &mut judged);
            }
            // A directory that does not exist holds nothing to remove, and one that is made
            // is made by us; a server that cannot resolve it cannot be checked.
            Response::Status {
                code: code @ (StatusCode::NoSuchFile | StatusCode::OpUnsupported),
                ..
            } => {
                self.dirs[k].check = if code == StatusCode::NoSuchFile {
                    Check::Missing
                } else {
                    Check::Inside
                };
                let waiters = std::mem::take(&mut self.dirs[k].waiters);
                judged.extend(waiters.into_iter().map(|w| (w, Ok(()))));
            }
            other => {
                let cause = Cause::UnexpectedReply {
                    request: Req::Realpath,
                    reply: super::dirs::reply_name(&other),
                };
                // Not known to be safe: its operations fail, and the next batch asks again.
                self.index.remove(&self.dirs[k].path);
                let waiters = std::mem::take(&mut self.dirs[k].waiters);
                judged.extend(waiters.into_iter().map(|w| (w, Err(cause.clone()))));
            }
        }
        judged
    }

    /// Whether `path`, which the server resolved to `resolved`, is inside: `None` while the
    /// target directory's own resolution is awaited.
    pub(crate) fn judge(&self, path: &RemotePath, resolved: &[u8]) -> Option<Result<(), Cause>> {
        match &self.root {
            Root::Unknown => None,
            Root::Unknowable => Some(Ok(())),
            Root::Known(root) => Some(match self.expected(root, path) {
                Some(expected) if expected == resolved => Ok(()),
                _ => Err(outside(path, resolved)),
            }),
        }
    }

    /// Whether `dir` was asked about already (or needs no asking).
    pub(crate) fn is_asked(&self, dir: &RemotePath) -> bool {
        matches!(self.root, Root::Unknowable)
            || self.base.as_ref() == Some(dir)
            || self.index.contains_key(dir)
    }

    /// What is known of `dir`: [`Known::Inside`] (it resolves where it should, whether it
    /// exists or not: OpenSSH resolves a missing last component), [`Known::Missing`] (the
    /// server said it does not exist), or nothing yet.
    pub(crate) fn known(&self, dir: &RemotePath) -> Option<Known> {
        if matches!(self.root, Root::Unknowable) || self.base.as_ref() == Some(dir) {
            return Some(Known::Inside);
        }
        let k = *self.index.get(dir)?;
        match self.dirs[k].check {
            Check::Inside => Some(Known::Inside),
            Check::Missing => Some(Known::Missing),
            _ => None,
        }
    }

    /// Keeps what an upload's resolved (and judged inside) file shows of its directory.
    pub(crate) fn learn_inside(&mut self, dir: &RemotePath) {
        if !self.index.contains_key(dir) {
            self.add(dir.clone(), Check::Inside);
        }
    }

    fn add(&mut self, path: RemotePath, check: Check) -> usize {
        let k = self.dirs.len();
        self.index.insert(path.clone(), k);
        self.dirs.push(Dir {
            path,
            check,
            waiters: Vec::new(),
        });
        k
    }

    fn settle(&mut self, k: usize, resolved: &[u8], judged: &mut Judged) {
        let Some(verdict) = self.judge(&self.dirs[k].path, resolved) else {
            return;
        };
        self.dirs[k].check = match &verdict {
            Ok(()) => Check::Inside,
            Err(_) => Check::Outside(resolved.to_vec()),
        };
        let waiters = std::mem::take(&mut self.dirs[k].waiters);
        judged.extend(waiters.into_iter().map(|w| (w, verdict.clone())));
    }

    /// Where `path` must resolve to if no symlink is on its way below the target directory.
    fn expected(&self, root: &[u8], path: &RemotePath) -> Option<Vec<u8>> {
        let p = path.as_bytes();
        let rest = match &self.base {
            Some(base) => {
                let b = base.as_bytes();
                if b == b"/" {
                    p.strip_prefix(b"/")?
                } else {
                    p.strip_prefix(b)?.strip_prefix(b"/")?
                }
            }
            None if p.starts_with(b"/") => return Some(p.to_vec()),
            None => p,
        };
        let mut expected = root.to_vec();
        if expected != b"/" {
            expected.push(b'/');
        }
        expected.extend_from_slice(rest);
        Some(expected)
    }
}

fn outside(path: &RemotePath, resolved: &[u8]) -> Cause {
    Cause::Outside {
        path: path.clone(),
        resolved: String::from_utf8_lossy(resolved).into_owned(),
    }
}

fn describe(response: &Response) -> String {
    match response {
        Response::Status { code, .. } => code.to_string(),
        other => super::dirs::reply_name(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::wire::{Attrs, NameEntry};

    fn name(path: &str) -> Response {
        Response::Name(vec![NameEntry {
            filename: path.as_bytes().to_vec(),
            longname: Vec::new(),
            attrs: Attrs::default(),
        }])
    }

    fn rp(s: &str) -> RemotePath {
        RemotePath::new(s).unwrap()
    }

    fn confinement(base: Option<&str>, root: &str) -> Confinement {
        let mut c = Confinement {
            base: base.map(rp),
            ..Confinement::default()
        };
        assert!(c.on_root(name(root)).is_empty());
        c
    }

    #[test]
    fn a_path_is_inside_when_it_resolves_to_the_resolved_target_and_the_same_rest() {
        // /srv/mirror is itself a symlink to /data/mirror: that is the administrator's.
        let c = confinement(Some("/srv/mirror"), "/data/mirror");
        let file = rp("/srv/mirror/pool/main/.a.deb.tmp");
        assert_eq!(
            c.judge(&file, b"/data/mirror/pool/main/.a.deb.tmp"),
            Some(Ok(()))
        );
        let Some(Err(cause)) = c.judge(&file, b"/etc/.a.deb.tmp") else {
            panic!("a symlinked pool/main passed")
        };
        assert!(
            cause.to_string().contains("resolves to /etc/.a.deb.tmp"),
            "{cause}"
        );
        // Nothing outside the target is inside, whatever it resolves to.
        assert!(matches!(
            c.judge(&rp("/srv/other/x"), b"/data/mirror/x"),
            Some(Err(_))
        ));
    }

    #[test]
    fn without_a_target_paths_are_relative_to_the_start_directory() {
        let c = confinement(None, "/home/repo");
        assert_eq!(c.judge(&rp("pool/x"), b"/home/repo/pool/x"), Some(Ok(())));
        assert!(matches!(c.judge(&rp("pool/x"), b"/x"), Some(Err(_))));
        let c = confinement(Some("/"), "/");
        assert_eq!(c.judge(&rp("/pool/x"), b"/pool/x"), Some(Ok(())));
    }

    #[test]
    fn waiters_are_released_once_both_the_directory_and_the_root_are_resolved() {
        let mut c = Confinement {
            base: Some(rp("/m")),
            ..Confinement::default()
        };
        let mut session: Session<Tag> = Session::new();
        let pool = rp("/m/pool");
        assert_eq!(
            c.check(&pool, Waiter::Op(3), &mut session),
            Verdict::Pending
        );
        assert_eq!(
            c.check(&pool, Waiter::Dir(4), &mut session),
            Verdict::Pending
        );
        // The directory's reply overtakes the root's: nothing is decided yet.
        assert!(c.on_reply(0, name("/elsewhere")).is_empty());
        let judged = c.on_root(name("/m"));
        assert_eq!(judged.len(), 2);
        assert!(judged.iter().all(|(_, r)| r.is_err()));
        // Known now: no more requests for it.
        assert!(matches!(
            c.check(&pool, Waiter::Op(5), &mut session),
            Verdict::Outside(_)
        ));
        c.learn_inside(&rp("/m/dists"));
        assert_eq!(
            c.check(&rp("/m/dists"), Waiter::Op(6), &mut session),
            Verdict::Inside
        );
    }

    #[test]
    fn a_server_that_cannot_resolve_is_not_checked() {
        let mut c = Confinement::default();
        let judged = c.on_root(Response::Status {
            code: StatusCode::OpUnsupported,
            message: Vec::new(),
            language: Vec::new(),
        });
        assert!(judged.is_empty());
        let mut session: Session<Tag> = Session::new();
        assert_eq!(
            c.check(&rp("pool"), Waiter::Op(1), &mut session),
            Verdict::Inside
        );
        assert_eq!(c.judge(&rp("pool/x"), b"/anything"), Some(Ok(())));
    }
}
