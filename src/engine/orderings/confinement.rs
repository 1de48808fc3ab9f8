//! Nothing is created, written, renamed onto or removed through a symlinked directory
//! below the target directory; the target directory itself may be a symlink.

use super::{both, pattern, rp, upload};
use crate::engine::op::{Cause, Op, OpResult};
use crate::engine::peer::{Flavour, Pair, Peer};
use crate::sftp::wire::StatusCode;

/// A peer whose `/m/pool/main` is a symlink to `/elsewhere`, which holds `old.deb`.
fn planted(peer: &mut Peer) {
    peer.fs
        .dir("/m/pool")
        .dir("/elsewhere")
        .file("/elsewhere/old.deb", b"not yours")
        .link("/m/pool/main", "/elsewhere");
}

fn outside(result: &OpResult) -> bool {
    match result {
        Err(e) => match &e.cause {
            Cause::Outside { .. } => true,
            Cause::Directory { cause, .. } => matches!(**cause, Cause::Outside { .. }),
            _ => false,
        },
        Ok(_) => false,
    }
}

/// Everything that would change something through the planted link.
fn ops_through_it(pair: &Pair) -> Vec<Op> {
    vec![
        upload(pair, "/m/pool/main/new.deb", &pattern(3000, 1)),
        upload(pair, "/m/pool/main/old.deb", &pattern(3000, 2)),
        upload(pair, "/m/pool/main/deep/er/f.deb", b"f"),
        Op::Remove {
            path: rp("/m/pool/main/old.deb"),
        },
        Op::Rename {
            from: rp("/m/pool/main/x.new"),
            to: rp("/m/pool/main/old.deb"),
        },
        Op::Symlink {
            link: rp("/m/pool/main/old.deb"),
            target: b"x".to_vec(),
        },
        Op::Hardlink {
            from: rp("/m/pool/main/old.deb"),
            to: rp("/m/pool/main/.old.deb.prev"),
        },
        Op::Rmdir {
            path: rp("/m/pool/main/sub"),
        },
        Op::Mkdir {
            path: rp("/m/pool/main/sub"),
        },
    ]
}

/// Only questions were asked below the link: no request that changes anything.
fn only_asked_below(pair: &Pair, dir: &str) {
    let below = format!(" {dir}/");
    for line in &pair.peer.log {
        let asks = ["REALPATH ", "LSTAT ", "STAT "]
            .iter()
            .any(|q| line.starts_with(q));
        assert!(
            asks || !line.contains(&below),
            "{line}: {:#?}",
            pair.peer.log
        );
    }
}

#[test]
fn nothing_lands_or_goes_through_a_symlinked_directory() {
    for (flavour, mut pair) in both(planted) {
        let ops = ops_through_it(&pair);
        let results = pair.run(&ops);
        for (op, result) in ops.iter().zip(&results) {
            assert!(outside(result), "{flavour:?}: {} {result:?}", op.path());
        }
        let fs = &pair.peer.fs;
        assert_eq!(fs.names("/elsewhere"), ["old.deb"], "{flavour:?}");
        assert_eq!(fs.read("/elsewhere/old.deb"), Some(&b"not yours"[..]));
        only_asked_below(&pair, "/m/pool/main");
    }
}

#[test]
fn a_server_refusing_lstat_or_realpath_is_still_checked_by_the_other() {
    // OpenSSH's REALPATH resolves symlinks: without LSTAT it suffices. Another server is
    // judged by LSTAT when it does no REALPATH at all.
    for (flavour, refused) in [(Flavour::OpenSsh, "LSTAT"), (Flavour::Other, "REALPATH")] {
        let mut peer = Peer::new(flavour);
        planted(&mut peer);
        peer.on(refused).fail(StatusCode::OpUnsupported);
        let mut pair = Pair::new(peer);
        let ops = ops_through_it(&pair);
        let results = pair.run(&ops);
        for (op, result) in ops.iter().zip(&results) {
            assert!(outside(result), "{flavour:?}: {} {result:?}", op.path());
        }
        assert_eq!(pair.peer.fs.names("/elsewhere"), ["old.deb"], "{flavour:?}");
        only_asked_below(&pair, "/m/pool/main");
    }
}

#[test]
fn a_target_directory_that_is_a_symlink_is_the_administrators_and_works() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/srv/mirror/pool").link("/m", "/srv/mirror");
    }) {
        let ops = [
            upload(&pair, "/m/pool/a.deb", &pattern(3000, 1)),
            upload(&pair, "/m/pool/new/b.deb", &pattern(3000, 2)),
        ];
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        assert_eq!(
            fs.read("/srv/mirror/pool/a.deb"),
            Some(&pattern(3000, 1)[..])
        );
        assert_eq!(
            fs.read("/srv/mirror/pool/new/b.deb"),
            Some(&pattern(3000, 2)[..])
        );
    }
}

/// The confinement check found `/m/pool/new` missing; before our MKDIR, someone with
/// write access to the mirror plants a symlink there. The MKDIR fails (EEXIST); a STAT
/// would follow the link and take it for the directory, so the name is checked again
/// (REALPATH and LSTAT) first: it is outside, and nothing goes through it. On every
/// server, one acting in order too: the OPEN into the new directory waits for its MKDIR's
/// answer (sent right behind it, it would follow the link).
#[test]
fn a_symlink_planted_where_a_missing_directory_is_to_be_made_is_not_written_through() {
    for flavour in [Flavour::OpenSsh, Flavour::Other] {
        let mut peer = Peer::new(flavour);
        peer.fs.dir("/m/pool").dir("/elsewhere");
        peer.on("MKDIR /m/pool/new").before(|fs| {
            fs.link("/m/pool/new", "/elsewhere");
        });
        let mut pair = Pair::new(peer);
        let ops = [upload(&pair, "/m/pool/new/a.deb", &pattern(3000, 1))];
        let results = pair.run(&ops);
        assert!(results[0].is_err(), "{flavour:?}: {results:?}");
        assert!(
            pair.peer.fs.names("/elsewhere").is_empty(),
            "{flavour:?}: written through"
        );
    }
}

/// The target directory's STAT goes with its REALPATH at set-up: where it is missing, or
/// no directory, every operation below it fails with that one cause, and nothing is made.
#[test]
fn below_a_missing_or_file_target_everything_fails_with_one_cause_and_nothing_is_made() {
    for (flavour, file) in [
        (Flavour::OpenSsh, false),
        (Flavour::Other, false),
        (Flavour::OpenSsh, true),
    ] {
        let mut peer = Peer::new(flavour);
        peer.fs.remove("/m");
        if file {
            peer.fs.file("/m", b"not a directory");
        }
        let mut pair = Pair::new(peer);
        let ops = [
            upload(&pair, "/m/pool/main/f/a.deb", b"a"),
            Op::Remove {
                path: rp("/m/pool/main/g/old.deb"),
            },
            Op::Mkdir {
                path: rp("/m/dists/new"),
            },
        ];
        let results = pair.run(&ops);
        for result in &results {
            let cause = match result {
                Err(e) => match &e.cause {
                    Cause::Directory { cause, .. } => (**cause).clone(),
                    other => other.clone(),
                },
                Ok(_) => panic!("{flavour:?}: {results:?}"),
            };
            assert!(
                matches!(cause, Cause::Target(_)),
                "{flavour:?}: {results:?}"
            );
        }
        assert!(pair.conn().dirs.confine.target_problem().is_some());
        for request in ["MKDIR", "OPEN", "REMOVE"] {
            assert_eq!(
                pair.peer.count(request),
                0,
                "{flavour:?}: {:?}",
                pair.peer.log
            );
        }
    }
}
