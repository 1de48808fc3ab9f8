//! How a server reads SYMLINK. The draft puts the link's path first and its target second;
//! OpenSSH swapped them, and most servers copied OpenSSH, but not all (Twisted Conch,
//! MySecureShell, Erlang's ssh_sftpd, pysftpserver read the draft's order), and a server
//! does not say which it follows, except Green End's (an extension) and OpenSSH's own. Sent
//! the other way round, the target's text is taken as the link's path: a link is made at
//! a name of the target's choosing, relative to wherever the server starts, outside the
//! target directory. Some servers also rewrite the target's text (make it absolute), which
//! points the link elsewhere once the mirror is served from another root.
//!
//! So before its first SYMLINK a connection to a server of another kind is probed, inside
//! the target directory: one SYMLINK whose two paths are both fresh hidden names there
//! (either way round the link lands inside), READLINK of both tells which way round it
//! read them (the one that is a link); a second SYMLINK, the right way round, with a bare name as its target, read
//! back, tells whether the text is kept as sent. A server that fails either gets no
//! SYMLINK at all: its symlink operations fail as unsupported (`symlinks auto` copies).
//!
//! It owns the probe and its verdict. It must not send a SYMLINK whose first path is not a
//! name inside the target directory, nor leave its probe links behind where the server
//! answers.

use std::hash::{BuildHasher, Hasher};

use super::Engine;
use super::op::{Op, OpResult, Outcome};
use crate::remote_path::RemotePath;
use crate::sftp::wire::SymlinkOrder;

/// What a connection knows of how its server makes symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SymlinkTrust {
    /// Its kind says which way round it reads SYMLINK (OpenSSH's, Green End's).
    Known,
    /// Not known: probed before the first SYMLINK.
    Unknown,
    /// Being probed: the probe's own SYMLINKs go as they are.
    Probing,
    /// It does not make links as asked; why, for the operations that would have.
    Unusable(String),
}

/// The probe's hidden names, below `targetdir` (or the server's start directory).
struct Names {
    first: RemotePath,
    second: RemotePath,
    third: RemotePath,
}

impl Names {
    fn new(targetdir: Option<&RemotePath>) -> Names {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u8(0);
        let stem = format!(".outsftphook-links.{:016x}", hasher.finish());
        let at = |n: u8| {
            let name = format!("{stem}.{n}").into_bytes();
            match targetdir {
                Some(dir) => dir.join(&name).expect("a hidden name below a valid path"),
                None => RemotePath::new(name).expect("a hidden name is a path"),
            }
        };
        Names {
            first: at(1),
            second: at(2),
            third: at(3),
        }
    }
}

/// The text a READLINK `result` read, if it read one.
fn text(result: &OpResult) -> Option<&[u8]> {
    match result {
        Ok(Outcome::Target(t)) => Some(t),
        _ => None,
    }
}

impl Engine {
    /// Whether the connections still have to learn how their server makes symlinks.
    pub(super) fn symlinks_unknown(&self) -> bool {
        self.links
            .first()
            .is_some_and(|l| l.conn.limits.symlinks == SymlinkTrust::Unknown)
    }

    /// Probes, on the first connection, how the server makes symlinks (see the module),
    /// and gives every connection the verdict. Probing costs a few round trips, once a
    /// run, and only where the run makes a symlink on a server of another kind.
    pub(super) fn learn_symlinks(&mut self) {
        self.set_symlinks(SymlinkTrust::Probing, None);
        let names = Names::new(self.config.targetdir.as_ref());
        let (trust, order) = match self.probe(&names) {
            Ok(found) => found,
            Err(why) => (SymlinkTrust::Unusable(why), None),
        };
        let clear: Vec<Op> = [&names.first, &names.second, &names.third]
            .into_iter()
            .map(|path| Op::Remove { path: path.clone() })
            .collect();
        let _ = self.run(&clear, |_, _| {});
        if let SymlinkTrust::Unusable(why) = &trust {
            log::info!("symlinks on this server: {why}");
        }
        self.set_symlinks(trust, order);
    }

    fn set_symlinks(&mut self, trust: SymlinkTrust, order: Option<SymlinkOrder>) {
        for link in &mut self.links {
            link.conn.limits.symlinks = trust.clone();
            if let Some(order) = order {
                link.conn.limits.symlink_order = order;
            }
        }
    }

    /// The probe itself: which way round, then whether the text stays as sent.
    fn probe(&mut self, names: &Names) -> Result<(SymlinkTrust, Option<SymlinkOrder>), String> {
        let unusable = |why: String| Ok((SymlinkTrust::Unusable(why), None));
        let asked = self.symlink_order_now();
        // `first` as the target, `second` as the link, in the order the connection uses
        // now: read either way round, the link lands on one of the two.
        let made = self.run_one_op(Op::Symlink {
            link: names.second.clone(),
            target: names.first.as_bytes().to_vec(),
        })?;
        if let Err(e) = made {
            return unusable(format!("its SYMLINK fails ({e})"));
        }
        let read = self.run_ops(&[
            Op::Readlink {
                path: names.first.clone(),
            },
            Op::Readlink {
                path: names.second.clone(),
            },
        ])?;
        // Which name the link is at tells the order; its text may differ (a server in a
        // chroot may show an absolute target otherwise): what counts is the relative
        // text of the next step, as reprepro's links have.
        let order = match (text(&read[0]), text(&read[1])) {
            (None, Some(_)) => asked,
            (Some(_), None) => swapped(asked),
            (None, None) => return unusable("it answers SYMLINK and makes no link".into()),
            (Some(_), Some(_)) => {
                return unusable("it answers READLINK of a link it did not make".into());
            }
        };
        self.set_symlinks(SymlinkTrust::Probing, Some(order));
        let bare = b"outsftphook-probe".to_vec();
        let made = self.run_one_op(Op::Symlink {
            link: names.third.clone(),
            target: bare.clone(),
        })?;
        if let Err(e) = made {
            return unusable(format!("its SYMLINK fails ({e})"));
        }
        let read = self.run_one_op(Op::Readlink {
            path: names.third.clone(),
        })?;
        match text(&read) {
            Some(t) if t == bare.as_slice() => Ok((SymlinkTrust::Known, Some(order))),
            // ProFTPD shows a relative target made absolute, and keeps it as sent; Twisted
            // and Erlang's ssh_sftpd keep it absolute. The link's own size (what lstat
            // says of a link: its target's length) tells which.
            Some(t)
                if t.ends_with(&[b"/", bare.as_slice()].concat())
                    && self.link_size(&names.third)? == Some(bare.len() as u64) =>
            {
                Ok((SymlinkTrust::Known, Some(order)))
            }
            Some(t) => unusable(format!(
                "it rewrites a link's target (sent '{}', made '{}')",
                String::from_utf8_lossy(&bare),
                String::from_utf8_lossy(t)
            )),
            None => unusable("it does not read back the link it made".into()),
        }
    }

    /// The size its directory's listing gives the link `path`.
    fn link_size(&mut self, path: &RemotePath) -> Result<Option<u64>, String> {
        let Some(name) = path.as_bytes().rsplit(|&b| b == b'/').next() else {
            return Ok(None);
        };
        // A bare name is in the server's start directory.
        let dir = path
            .parent()
            .unwrap_or_else(|| RemotePath::new(&b"."[..]).expect("a path"));
        let listed = self.run_one_op(Op::List { path: dir })?;
        let Ok(Outcome::Listing(entries)) = listed else {
            return Ok(None);
        };
        Ok(entries
            .into_iter()
            .find(|e| e.name == name)
            .and_then(|e| e.size))
    }

    fn symlink_order_now(&self) -> SymlinkOrder {
        self.links[0].conn.limits.symlink_order
    }

    fn run_ops(&mut self, ops: &[Op]) -> Result<Vec<OpResult>, String> {
        self.run(ops, |_, _| {})
            .map_err(|e| format!("the probe of how it makes links was cut off: {e}"))
    }

    fn run_one_op(&mut self, op: Op) -> Result<OpResult, String> {
        let mut results = self.run_ops(&[op])?;
        Ok(results.pop().expect("one result"))
    }
}

fn swapped(order: SymlinkOrder) -> SymlinkOrder {
    match order {
        SymlinkOrder::TargetFirst => SymlinkOrder::LinkFirst,
        SymlinkOrder::LinkFirst => SymlinkOrder::TargetFirst,
    }
}
