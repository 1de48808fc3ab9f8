//! Uploads into a directory that is not there yet, on a server that acts in order: the
//! OPEN goes in the flight of the directory's MKDIR, aside (in the directory right above,
//! where that is known to be inside), and the file is renamed into its directory once that
//! is made. Nothing is ever created in the directory before its MKDIR is confirmed; what is
//! aside goes again where the directory fails, and what a killed run left aside is cleared
//! by the next upload (or removal) of the file.

use super::{both, pattern, rp, unstaged, upload};
use crate::engine::op::{Cause, Op, Req, Status};
use crate::engine::peer::{Flavour, Node, Pair, Peer};
use crate::sftp::wire::StatusCode;

/// Every temporary file (`*.tmp`) anywhere in the peer's tree.
fn temporaries(pair: &Pair) -> Vec<String> {
    let fs = &pair.peer.fs;
    let mut found = Vec::new();
    let mut todo = vec!["/".to_string()];
    while let Some(dir) = todo.pop() {
        for name in fs.names(&dir) {
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            if fs.get(&path) == Some(&Node::Dir) {
                todo.push(path);
            } else if name.ends_with(".tmp") {
                found.push(path);
            }
        }
    }
    found
}

/// Where upload of `remote` is written aside, in `dir`.
fn aside(remote: &str, dir: &str) -> String {
    rp(remote).temp_aside(&rp(dir)).to_string()
}

/// The number of the flight `line` went in.
fn flight_of(pair: &Pair, line: &str) -> usize {
    let flights = &pair.peer.flights;
    flights
        .iter()
        .position(|f| f.iter().any(|l| unstaged(l) == line))
        .unwrap_or_else(|| panic!("{line} was never sent: {flights:#?}"))
}

/// Nothing but questions went below `dir`: no request that creates, writes, renames or
/// removes anything there.
fn only_asked_below(pair: &Pair, dir: &str) {
    let below = format!(" {dir}/");
    for line in pair.peer.flights.concat() {
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

/// Whether `result` failed because directory `dir` could not be made.
fn failed_in(result: &crate::engine::op::OpResult, dir: &str) -> bool {
    matches!(result, Err(e) if matches!(&e.cause, Cause::Directory { dir: d, .. } if *d == rp(dir)))
}

#[test]
fn an_in_order_server_gets_the_mkdir_and_the_open_aside_in_one_flight() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool/main/z");
    let mut pair = Pair::new(peer);
    let ops = [upload(
        &pair,
        "/m/pool/main/z/znew/a.deb",
        &pattern(3000, 1),
    )];
    let results = pair.run(&ops);
    assert!(results[0].is_ok(), "{results:?}");
    let tmp = aside("/m/pool/main/z/znew/a.deb", "/m/pool/main/z");
    let made = flight_of(&pair, "MKDIR /m/pool/main/z/znew");
    let opened = flight_of(&pair, &format!("OPEN {tmp} excl"));
    assert_eq!(made, opened, "{:#?}", pair.peer.flights);
    // The rename into the new directory right behind the CLOSE: the MKDIR was answered.
    let closed = flight_of(&pair, &format!("CLOSE {tmp}"));
    let landed = format!("RENAME {tmp} /m/pool/main/z/znew/a.deb");
    assert_eq!(flight_of(&pair, &landed), closed);
    assert_eq!(closed, opened + 1, "{:#?}", pair.peer.flights);
    let fs = &pair.peer.fs;
    assert_eq!(
        fs.read("/m/pool/main/z/znew/a.deb"),
        Some(&pattern(3000, 1)[..])
    );
    assert_eq!(fs.names("/m/pool/main/z"), ["znew"]);
    assert!(temporaries(&pair).is_empty(), "{:?}", temporaries(&pair));
    assert!(
        !pair
            .peer
            .log
            .iter()
            .any(|l| l.starts_with("OPEN /m/pool/main/z/znew/")),
        "{:#?}",
        pair.peer.log
    );
}

/// The typical change reprepro pushes: three new packages, each in a directory of its own
/// below an existing one. The flights it takes, after the directories' checks (which the
/// engine asks right behind INIT): MKDIRs and OPENs; the data, CLOSEs and renames.
#[test]
fn three_new_package_directories_cost_two_flights_after_their_checks() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool/main/z");
    let mut pair = Pair::new(peer);
    let name = |k: usize| format!("/m/pool/main/z/znew{k}/znew{k}_1.0_amd64.deb");
    let ops: Vec<Op> = (1..=3)
        .map(|k| upload(&pair, &name(k), &pattern(2000, k as u8)))
        .collect();
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let flights = &pair.peer.flights;
    let mkdirs = flight_of(&pair, "MKDIR /m/pool/main/z/znew1");
    let last = flight_of(
        &pair,
        &format!("RENAME {} {}", aside(&name(3), "/m/pool/main/z"), name(3)),
    );
    assert_eq!(last, mkdirs + 1, "{flights:#?}");
    assert_eq!(flights.len(), mkdirs + 2, "{flights:#?}");
    for k in 1..=3 {
        assert_eq!(
            pair.peer.fs.read(&name(k)),
            Some(&pattern(2000, k as u8)[..])
        );
    }
    assert!(temporaries(&pair).is_empty());
    eprintln!(
        "flights: {}, requests: {}: {flights:#?}",
        flights.len(),
        flights.concat().len()
    );
}

#[test]
fn a_mkdir_refused_fails_the_upload_naming_its_directory_and_removes_what_was_aside() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool");
        // The first MKDIR: of `new` (on an in-order server, under its tree's stand-in).
        peer.on("MKDIR").nth(1).fail(StatusCode::PermissionDenied);
    }) {
        // The second waits (its directory's parent is being made too): it fails the same.
        let ops = [
            upload(&pair, "/m/pool/new/a.deb", &pattern(3000, 1)),
            upload(&pair, "/m/pool/new/sub/b.deb", &pattern(3000, 2)),
        ];
        let results = pair.run(&ops);
        for result in &results {
            assert!(failed_in(result, "/m/pool/new"), "{flavour:?}: {results:?}");
            let Err(e) = result else { unreachable!() };
            let Cause::Directory { cause, .. } = &e.cause else {
                unreachable!()
            };
            assert!(
                matches!(
                    **cause,
                    Cause::Status {
                        request: Req::Mkdir,
                        code: Status::PermissionDenied,
                        ..
                    }
                ),
                "{flavour:?}: {cause:?}"
            );
        }
        assert!(pair.peer.fs.names("/m/pool").is_empty(), "{flavour:?}");
        if flavour == Flavour::OpenSsh {
            only_asked_below(&pair, "/m/pool/new");
            let tmp = aside("/m/pool/new/a.deb", "/m/pool");
            assert_eq!(pair.peer.count_succeeded(&format!("OPEN {tmp} excl")), 1);
            assert_eq!(pair.peer.count_succeeded(&format!("REMOVE {tmp}")), 1);
        }
    }
}

/// A large file stops being sent as soon as its directory is known to have failed.
#[test]
fn a_file_being_written_aside_stops_when_its_directory_fails() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    peer.on("MKDIR /m/pool/new")
        .fail(StatusCode::PermissionDenied);
    let mut pair = Pair::new(peer);
    let ops = [upload(&pair, "/m/pool/new/big.deb", &pattern(200_000, 3))];
    let results = pair.run(&ops);
    assert!(failed_in(&results[0], "/m/pool/new"), "{results:?}");
    let tmp = aside("/m/pool/new/big.deb", "/m/pool");
    let writes = pair
        .peer
        .log
        .iter()
        .filter(|l| l.starts_with(&format!("WRITE {tmp} ")))
        .count();
    // Writes of 1 KiB within a window of 16: the directory's fate is known in a few flights.
    assert!(0 < writes && writes < 100, "{writes} writes");
    assert!(pair.peer.fs.names("/m/pool").is_empty());
    assert_eq!(pair.peer.count_succeeded(&format!("REMOVE {tmp}")), 1);
}

/// Between the check that found `/m/pool/new` missing and our MKDIR, a symlink is planted
/// there: the MKDIR fails, nothing is created or written through the link, and the file
/// written aside is removed.
#[test]
fn a_symlink_planted_at_the_new_directory_gets_nothing_and_what_was_aside_goes() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool").dir("/elsewhere");
        // Before the first MKDIR: of `new` (on an in-order server, of its tree's stand-in,
        // whose RENAME then finds the name taken).
        peer.on("MKDIR").nth(1).before(|fs| {
            fs.link("/m/pool/new", "/elsewhere");
        });
    }) {
        let ops = [
            upload(&pair, "/m/pool/new/a.deb", &pattern(3000, 1)),
            upload(&pair, "/m/pool/new/deep/b.deb", &pattern(3000, 2)),
        ];
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_err),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        assert!(
            fs.names("/elsewhere").is_empty(),
            "{flavour:?}: written through"
        );
        assert_eq!(fs.names("/m/pool"), ["new"], "{flavour:?}: the link alone");
        assert!(temporaries(&pair).is_empty(), "{flavour:?}");
        // (Another server's upload clears its temporary name there first: before the
        // MKDIR, so while nothing stands there.)
        if flavour == Flavour::OpenSsh {
            only_asked_below(&pair, "/m/pool/new");
        }
    }
}

#[test]
fn one_name_in_two_new_directories_lands_in_both() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/dists/x/main");
    }) {
        let at = |arch: &str| format!("/m/dists/x/main/binary-{arch}/Packages");
        let ops = [
            upload(&pair, &at("amd64"), &pattern(3000, 1)),
            upload(&pair, &at("i386"), &pattern(3000, 2)),
        ];
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        assert_eq!(
            fs.read(&at("amd64")),
            Some(&pattern(3000, 1)[..]),
            "{flavour:?}"
        );
        assert_eq!(
            fs.read(&at("i386")),
            Some(&pattern(3000, 2)[..]),
            "{flavour:?}"
        );
        assert_eq!(
            fs.names("/m/dists/x/main"),
            ["binary-amd64", "binary-i386"],
            "{flavour:?}"
        );
        assert!(temporaries(&pair).is_empty(), "{flavour:?}");
    }
}

/// Only the directory right above goes: where it is being made too (a deep new tree, made
/// a level at a time, as before), the OPEN waits for the MKDIR as before. A rerun then
/// knows where a killed run may have left a file aside.
#[test]
fn into_a_deep_new_tree_the_open_waits_as_before() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    let mut pair = Pair::new(peer);
    let remote = "/m/pool/a/b/c/f.deb";
    let results = pair.run(&[upload(&pair, remote, &pattern(3000, 4))]);
    assert!(results[0].is_ok(), "{results:?}");
    let made = flight_of(&pair, "MKDIR /m/pool/a/b/c");
    assert!(flight_of(&pair, "OPEN /m/pool/a/b/c/.f.deb.tmp excl") > made);
    let log = &pair.peer.log;
    assert!(
        !log.iter().any(|l| l.starts_with("OPEN /m/pool/.")),
        "{log:#?}"
    );
    assert_eq!(pair.peer.fs.read(remote), Some(&pattern(3000, 4)[..]));
    assert!(temporaries(&pair).is_empty());
}

/// Below a directory this run made, a new one is as good as below one that was there.
#[test]
fn below_a_directory_this_run_made_a_new_one_gets_the_open_aside() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    let mut pair = Pair::new(peer);
    let first = pair.run(&[upload(&pair, "/m/pool/a/x.deb", b"x")]);
    assert!(first[0].is_ok(), "{first:?}");
    let remote = "/m/pool/a/b/f.deb";
    let results = pair.run(&[upload(&pair, remote, &pattern(3000, 7))]);
    assert!(results[0].is_ok(), "{results:?}");
    let tmp = aside(remote, "/m/pool/a");
    assert_eq!(
        flight_of(&pair, &format!("OPEN {tmp} excl")),
        flight_of(&pair, "MKDIR /m/pool/a/b")
    );
    assert_eq!(pair.peer.fs.read(remote), Some(&pattern(3000, 7)[..]));
    assert!(temporaries(&pair).is_empty());
}

/// A run killed while its file was aside left it there, and made the directory: the rerun
/// writes into the directory, which is there now, and clears what was left aside in the
/// same flight; so does the removal of the file.
#[test]
fn what_a_killed_run_left_aside_is_cleared_by_the_next_upload_or_removal() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    let (a, b) = ("/m/pool/new/a.deb", "/m/pool/new/b.deb");
    peer.fs
        .dir("/m/pool/new")
        .file(&aside(a, "/m/pool"), b"half of a")
        .file(&aside(b, "/m/pool"), b"half of b")
        .file(b, b"the old b");
    let mut pair = Pair::new(peer);
    let ops = [
        upload(&pair, a, &pattern(3000, 8)),
        Op::Remove { path: rp(b) },
    ];
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let fs = &pair.peer.fs;
    assert_eq!(fs.read(a), Some(&pattern(3000, 8)[..]));
    assert_eq!(fs.names("/m/pool"), ["new"]);
    assert_eq!(fs.names("/m/pool/new"), ["a.deb"]);
    let swept = format!("REMOVE {}", aside(a, "/m/pool"));
    assert_eq!(
        flight_of(&pair, &swept),
        flight_of(&pair, "OPEN /m/pool/new/.a.deb.tmp excl")
    );
}

/// Where the directory above will not take the file (no right to write there), the
/// upload goes as it did before: into its directory once that is made.
#[test]
fn an_open_aside_refused_goes_into_the_directory_once_it_is_made() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    let remote = "/m/pool/new/a.deb";
    let tmp = aside(remote, "/m/pool");
    peer.on(&format!("OPEN {tmp}"))
        .fail(StatusCode::PermissionDenied);
    let mut pair = Pair::new(peer);
    let results = pair.run(&[upload(&pair, remote, &pattern(3000, 9))]);
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(pair.peer.fs.read(remote), Some(&pattern(3000, 9)[..]));
    assert!(temporaries(&pair).is_empty());
}

/// A file where a directory must be: confinement finds it inside (it is no symlink), so
/// the OPEN goes aside into it, and fails; the upload fails as it did before, naming the
/// file that stands in the way (its MKDIR's failure), not the failed OPEN.
#[test]
fn a_file_in_the_way_fails_the_upload_with_the_directorys_cause() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs
            .file("/m/blocker", b"a file where a directory must be");
    }) {
        let results = pair.run(&[upload(&pair, "/m/blocker/sub/f", b"f")]);
        let Err(e) = &results[0] else {
            panic!("{flavour:?}: {results:?}")
        };
        let Cause::Directory { dir, cause } = &e.cause else {
            panic!("{flavour:?}: {e:?}")
        };
        assert_eq!(*dir, rp("/m/blocker"), "{flavour:?}: {e}");
        assert!(
            matches!(
                **cause,
                Cause::Status {
                    request: Req::Mkdir,
                    ..
                }
            ),
            "{flavour:?}: {e}"
        );
        assert_eq!(pair.peer.fs.names("/m"), ["blocker"]);
    }
}

/// What a killed run left at the name aside is cleared, as at a temporary name beside.
#[test]
fn a_stale_file_at_the_name_aside_is_removed_first() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    let remote = "/m/pool/new/a.deb";
    peer.fs
        .dir("/m/pool")
        .file("/victim", b"not yours")
        .link(&aside(remote, "/m/pool"), "/victim");
    let mut pair = Pair::new(peer);
    let results = pair.run(&[upload(&pair, remote, &pattern(3000, 5))]);
    assert!(results[0].is_ok(), "{results:?}");
    let fs = &pair.peer.fs;
    assert_eq!(fs.read("/victim"), Some(&b"not yours"[..]));
    assert_eq!(fs.read(remote), Some(&pattern(3000, 5)[..]));
    assert!(temporaries(&pair).is_empty());
}

/// Not on a server that may reorder, nor for a part: the OPEN waits as before.
#[test]
fn a_server_not_known_to_act_in_order_gets_no_open_aside() {
    let mut peer = Peer::new(Flavour::Other);
    peer.fs.dir("/m/pool");
    let mut pair = Pair::new(peer);
    let results = pair.run(&[upload(&pair, "/m/pool/new/a.deb", &pattern(3000, 6))]);
    assert!(results[0].is_ok(), "{results:?}");
    let tmp = aside("/m/pool/new/a.deb", "/m/pool");
    assert!(
        !pair.peer.log.iter().any(|l| l.contains(&tmp)),
        "{:#?}",
        pair.peer.log
    );
}

/// Asked to stop while the file is aside: it is closed and removed, nothing is left, and
/// nothing was written into the new directory.
#[test]
fn an_interrupt_while_a_file_is_aside_leaves_nothing() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    peer.on("MKDIR /m/pool/new").signal();
    let mut pair = Pair::new(peer);
    let ops = [
        upload(&pair, "/m/pool/new/a.deb", &pattern(60_000, 1)),
        upload(&pair, "/m/pool/new/b.deb", &pattern(500, 2)),
    ];
    let results = pair.run(&ops);
    for result in &results {
        assert!(
            matches!(result, Err(e) if e.cause == Cause::Interrupted),
            "{results:?}"
        );
    }
    assert!(temporaries(&pair).is_empty(), "{:#?}", pair.peer.log);
    assert!(pair.peer.fs.names("/m/pool/new").is_empty());
    only_asked_below(&pair, "/m/pool/new");
}

/// Several uploads into one new directory: the first asks for its MKDIR, the others find
/// it on its way; none of them writes into it before it is made, a symlink planted there
/// gets nothing.
#[test]
fn uploads_into_a_directory_on_its_way_wait_for_it_or_go_aside_too() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool").dir("/elsewhere");
        peer.on("MKDIR /m/pool/new").before(|fs| {
            fs.link("/m/pool/new", "/elsewhere");
        });
    }) {
        let ops: Vec<Op> = (0..4)
            .map(|k| upload(&pair, &format!("/m/pool/new/f{k}.deb"), &pattern(3000, k)))
            .collect();
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_err),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        assert!(
            fs.names("/elsewhere").is_empty(),
            "{flavour:?}: {:#?}",
            pair.peer.log
        );
        assert!(temporaries(&pair).is_empty(), "{flavour:?}");
        if flavour == Flavour::OpenSsh {
            only_asked_below(&pair, "/m/pool/new");
        }
    }
}
