//! What each kind of server is sent. One known to carry out requests in the order sent
//! (OpenSSH's, which announces `limits@openssh.com`) gets a request right behind the one
//! it depends on; any other gets it only once the reply it depends on is in.

use super::{pattern, rp, upload};
use crate::engine::op::Op;
use crate::engine::peer::{Flavour, Pair, Peer};

/// The number of the first flight `line` went in, and its place there.
fn sent_at(pair: &Pair, line: &str) -> (usize, usize) {
    let flights = &pair.peer.flights;
    flights
        .iter()
        .enumerate()
        .find_map(|(f, flight)| flight.iter().position(|l| l == line).map(|k| (f, k)))
        .unwrap_or_else(|| panic!("{line} was never sent: {flights:#?}"))
}

fn never_sent(pair: &Pair, prefix: &str) -> bool {
    !pair
        .peer
        .flights
        .concat()
        .iter()
        .any(|l| l.starts_with(prefix))
}

fn pair_with_release(flavour: Flavour) -> Pair {
    let mut peer = Peer::new(flavour);
    peer.fs
        .dir("/m/pool")
        .dir("/m/dists")
        .file("/m/dists/Release", b"old")
        .file("/m/dists/Release.new", b"new");
    Pair::new(peer)
}

fn release() -> Op {
    Op::Rename {
        from: rp("/m/dists/Release.new"),
        to: rp("/m/dists/Release"),
    }
}

#[test]
fn a_server_not_known_to_act_in_order_gets_each_request_after_the_reply_it_needs() {
    let mut pair = pair_with_release(Flavour::Other);
    let ops = [upload(&pair, "/m/pool/a.deb", &pattern(3000, 1)), release()];
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The temporary name is cleared first: such a server may follow a dangling symlink
    // even with EXCL, and would not keep a REMOVE ahead of the OPEN behind it.
    let (removed, _) = sent_at(&pair, "REMOVE /m/pool/.a.deb.tmp");
    let (opened, _) = sent_at(&pair, "OPEN /m/pool/.a.deb.tmp excl");
    assert!(removed < opened);
    // Whether the real name is a symlink is asked with the CLOSE; the rename waits for
    // every reply (no plain RENAME in the same flight).
    let (closed, _) = sent_at(&pair, "CLOSE /m/pool/.a.deb.tmp");
    assert_eq!(sent_at(&pair, "READLINK /m/pool/a.deb").0, closed);
    let (landed, _) = sent_at(&pair, "posix-rename /m/pool/.a.deb.tmp /m/pool/a.deb");
    assert!(landed > closed);
    assert!(never_sent(&pair, "RENAME "));
    // A rename asks first whether its destination is a symlink.
    let (inspected, _) = sent_at(&pair, "READLINK /m/dists/Release");
    let (renamed, _) = sent_at(&pair, "posix-rename /m/dists/Release.new /m/dists/Release");
    assert!(inspected < renamed);
}

#[test]
fn an_in_order_server_gets_dependent_requests_in_one_flight() {
    let mut pair = pair_with_release(Flavour::OpenSsh);
    let ops = [
        upload(&pair, "/m/pool/a.deb", &pattern(3000, 1)),
        upload(&pair, "/m/pool/new/b.deb", &pattern(3000, 2)),
        release(),
    ];
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The exclusive OPEN goes at once: it fails on anything at the name there.
    assert!(never_sent(&pair, "REMOVE /m/pool/.a.deb.tmp"));
    // A free real name: the plain RENAME goes right behind the CLOSE.
    let (closed, k) = sent_at(&pair, "CLOSE /m/pool/.a.deb.tmp");
    assert_eq!(
        sent_at(&pair, "RENAME /m/pool/.a.deb.tmp /m/pool/a.deb"),
        (closed, k + 1)
    );
    // A directory known missing: its MKDIR, and in the same flight the OPEN, but aside, in
    // the directory above: were a symlink planted at its name meanwhile, the MKDIR would
    // fail, and an OPEN into it right behind would follow the link, even on a server that
    // acts in order. The rename into it goes once it is made, behind the CLOSE.
    let aside = rp("/m/pool/new/b.deb").temp_aside(&rp("/m/pool"));
    let (made, _) = sent_at(&pair, "MKDIR /m/pool/new");
    assert_eq!(sent_at(&pair, &format!("OPEN {aside} excl")).0, made);
    let (closed, k) = sent_at(&pair, &format!("CLOSE {aside}"));
    let landed = format!("RENAME {aside} /m/pool/new/b.deb");
    assert_eq!(sent_at(&pair, &landed), (closed, k + 1));
    assert!(
        never_sent(&pair, "OPEN /m/pool/new/"),
        "{:?}",
        pair.peer.log
    );
    // Nothing asks for symlinks: OpenSSH's rename replaces a link itself.
    assert!(never_sent(&pair, "READLINK"));
    assert!(never_sent(&pair, "posix-rename /m/pool/"));
    sent_at(&pair, "posix-rename /m/dists/Release.new /m/dists/Release");
    assert_eq!(pair.peer.fs.names("/m/pool"), ["a.deb", "new"]);
}

#[test]
fn the_open_file_and_request_limits_hold_on_every_server() {
    for flavour in [Flavour::OpenSsh, Flavour::Other] {
        let mut peer = Peer::new(flavour);
        peer.fs.dir("/m/pool");
        let mut pair = Pair::new(peer);
        let ops: Vec<Op> = (0..30)
            .map(|k| upload(&pair, &format!("/m/pool/f{k}"), &pattern(3000, k)))
            .collect();
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        assert_eq!(pair.peer.fs.names("/m/pool").len(), 30);
        // Eight files open at once at most (`Pair`'s limits), and reached.
        assert_eq!(pair.peer.most_handles, 8, "{flavour:?}");
        assert_eq!(pair.conn().stats.max_open_files_seen, 8, "{flavour:?}");
        let most = pair.peer.flights.iter().map(Vec::len).max();
        assert!(most <= Some(64), "{flavour:?}: {most:?} requests at once");
    }
}

#[test]
fn a_hard_link_keeps_what_the_rename_behind_it_replaces() {
    let mut pair = pair_with_release(Flavour::OpenSsh);
    let kept = rp("/m/dists/.Release.prev");
    let ops = [
        Op::Hardlink {
            from: rp("/m/dists/Release"),
            to: kept.clone(),
        },
        release(),
    ];
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // An in-order server carries them out as sent: the link is made before the rename,
    // and the LSTAT that confirms it goes right behind it.
    let (linked, at) = sent_at(&pair, "hardlink /m/dists/Release /m/dists/.Release.prev");
    let renamed = sent_at(&pair, "posix-rename /m/dists/Release.new /m/dists/Release");
    assert!((linked, at) < renamed);
    assert_eq!(sent_at(&pair, "LSTAT /m/dists/.Release.prev").0, linked);
    let fs = &pair.peer.fs;
    assert_eq!(fs.read("/m/dists/.Release.prev"), Some(&b"old"[..]));
    assert_eq!(fs.read("/m/dists/Release"), Some(&b"new"[..]));
}

#[test]
fn a_hard_link_replaces_what_stands_at_its_name_and_fails_on_a_missing_file() {
    use crate::engine::op::Status;
    for flavour in [Flavour::OpenSsh, Flavour::Other] {
        let mut pair = pair_with_release(flavour);
        // What an earlier, killed run left there.
        pair.peer.fs.file("/m/dists/.Release.prev", b"of long ago");
        let link = |from: &str, to: &str| Op::Hardlink {
            from: rp(from),
            to: rp(to),
        };
        let results = pair.run(&[
            link("/m/dists/Release", "/m/dists/.Release.prev"),
            link("/m/dists/InRelease", "/m/dists/.InRelease.prev"),
        ]);
        assert!(results[0].is_ok(), "{flavour:?}: {results:?}");
        let fs = &pair.peer.fs;
        assert_eq!(fs.read("/m/dists/.Release.prev"), Some(&b"old"[..]));
        let status = results[1].as_ref().err().and_then(|e| e.status());
        assert_eq!(status, Some(Status::NoSuchFile), "{flavour:?}");
        assert_eq!(fs.get("/m/dists/.InRelease.prev"), None);
        let cleared = sent_at(&pair, "REMOVE /m/dists/.Release.prev");
        let linked = sent_at(&pair, "hardlink /m/dists/Release /m/dists/.Release.prev");
        match flavour {
            // All at once: the server carries them out in order.
            Flavour::OpenSsh => assert_eq!(cleared.0, linked.0),
            // The name is cleared only once the link found it taken, and linked again.
            Flavour::Other => {
                assert!(linked < cleared);
                let line = "hardlink /m/dists/Release /m/dists/.Release.prev";
                assert_eq!(pair.peer.count(line), 2);
            }
        }
    }
}

#[test]
fn a_hard_link_the_server_only_says_it_made_fails() {
    use crate::engine::op::Cause;
    use crate::engine::peer::status;
    use crate::sftp::wire::StatusCode;
    for flavour in [Flavour::OpenSsh, Flavour::Other] {
        let mut pair = pair_with_release(flavour);
        // As rclone's server does: OK, and nothing made.
        let hardlink = "hardlink /m/dists/Release /m/dists/.Release.prev";
        pair.peer.on(hardlink).answer(status(StatusCode::Ok));
        let results = pair.run(&[Op::Hardlink {
            from: rp("/m/dists/Release"),
            to: rp("/m/dists/.Release.prev"),
        }]);
        let cause = results[0].as_ref().err().map(|e| &e.cause);
        assert_eq!(cause, Some(&Cause::LinkNotMade), "{flavour:?}");
        if flavour == Flavour::Other {
            // Asked only once the server has answered.
            assert!(sent_at(&pair, hardlink).0 < sent_at(&pair, "LSTAT /m/dists/.Release.prev").0);
        }
    }
}
