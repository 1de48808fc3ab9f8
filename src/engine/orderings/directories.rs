//! Missing directories: each made once, however many operations find it missing, its
//! waiters released together; one that appears meanwhile is used.

use super::{both, pattern, rp, unstaged, upload};
use crate::engine::op::Op;
use crate::engine::peer::{Flavour, Node, Pair, Peer};
use crate::sftp::wire::StatusCode;

/// How many requests were `line`, a stand-in name counting as the real one.
fn count_made(pair: &Pair, line: &str) -> usize {
    pair.peer.log.iter().filter(|l| unstaged(l) == line).count()
}

#[test]
fn stand_in_names_read_as_the_real_ones() {
    assert_eq!(
        unstaged("MKDIR /m/pool/.main.0123456789abcdef/a"),
        "MKDIR /m/pool/main/a"
    );
    assert_eq!(
        unstaged("RENAME /m/pool/.main.0123456789abcdef /m/pool/main"),
        "RENAME /m/pool/main /m/pool/main"
    );
    assert_eq!(unstaged("OPEN /m/.a.deb.tmp"), "OPEN /m/.a.deb.tmp");
}

#[test]
fn a_directory_made_by_someone_else_meanwhile_is_uploaded_into() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool");
        // Another client makes it just before our MKDIR, which then fails (EEXIST).
        peer.on("MKDIR /m/pool/new").before(|fs| {
            fs.dir("/m/pool/new");
        });
    }) {
        let ops = [upload(&pair, "/m/pool/new/a.deb", &pattern(3000, 1))];
        let results = pair.run(&ops);
        assert!(results[0].is_ok(), "{flavour:?}: {results:?}");
        let fs = &pair.peer.fs;
        assert_eq!(fs.read("/m/pool/new/a.deb"), Some(&pattern(3000, 1)[..]));
        assert_eq!(fs.names("/m/pool/new"), ["a.deb"], "{flavour:?}");
        assert_eq!(fs.names("/m/pool"), ["new"], "{flavour:?}");
        assert_eq!(pair.peer.count("MKDIR /m/pool/new"), 1, "{flavour:?}");
        if flavour == Flavour::OpenSsh {
            // Aside, then renamed into it once it was found a directory, inside.
            let tmp = rp("/m/pool/new/a.deb").temp_aside(&rp("/m/pool"));
            assert_eq!(pair.peer.count(&format!("OPEN {tmp} excl")), 1);
        }
    }
}

#[test]
fn a_directory_made_by_someone_else_below_one_this_run_made_is_uploaded_into() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool");
        // Our MKDIR of `new` succeeds; another client makes `new/sub` before ours.
        peer.on("MKDIR /m/pool/new/sub").before(|fs| {
            fs.dir("/m/pool/new/sub");
        });
    }) {
        let ops = [upload(&pair, "/m/pool/new/sub/a.deb", &pattern(3000, 2))];
        let results = pair.run(&ops);
        assert!(results[0].is_ok(), "{flavour:?}: {results:?}");
        let fs = &pair.peer.fs;
        assert_eq!(
            fs.read("/m/pool/new/sub/a.deb"),
            Some(&pattern(3000, 2)[..])
        );
    }
}

/// A MKDIR below a directory this run is making waits for that one's answer, where the
/// server is not known to act in order: sent right behind it, it would be made through a
/// symlink planted there. (An in-order server gets the new tree under a stand-in name:
/// see the next test.)
#[test]
fn a_symlink_planted_below_a_directory_this_run_made_is_not_written_through() {
    for (at, planted) in [
        ("/m/pool/new/sub", "/m/pool/new/sub"),
        ("/m/pool/new", "/m/pool/new"),
    ] {
        let flavour = Flavour::Other;
        let mut peer = Peer::new(flavour);
        peer.fs.dir("/m/pool").dir("/elsewhere");
        peer.on(&format!("MKDIR {at}")).before(move |fs| {
            fs.link(planted, "/elsewhere");
        });
        let mut pair = Pair::new(peer);
        let ops = [upload(&pair, "/m/pool/new/sub/a.deb", &pattern(3000, 3))];
        let results = pair.run(&ops);
        assert!(results[0].is_err(), "{flavour:?} {at}: {results:?}");
        assert!(
            pair.peer.fs.names("/elsewhere").is_empty(),
            "{flavour:?} {at}: written through: {:?}",
            pair.peer.log
        );
    }
}

/// On an in-order server a new tree is made under a name no one can guess and renamed into
/// place in the same flight; a symlink planted at its real name meanwhile makes the RENAME
/// fail (the name is taken), and nothing is made or written through it.
#[test]
fn a_symlink_planted_where_a_new_tree_goes_is_not_written_through() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool").dir("/elsewhere");
    peer.on("RENAME").before(|fs| {
        fs.link("/m/pool/new", "/elsewhere");
    });
    let mut pair = Pair::new(peer);
    let ops = [upload(&pair, "/m/pool/new/sub/a.deb", &pattern(3000, 3))];
    let results = pair.run(&ops);
    assert!(results[0].is_err(), "{results:?}");
    let fs = &pair.peer.fs;
    assert!(fs.names("/elsewhere").is_empty(), "{:?}", pair.peer.log);
    // The stand-in is cleared: only the planted link is left.
    assert_eq!(fs.names("/m/pool"), ["new"], "{:?}", pair.peer.log);
}

/// The tree's MKDIRs and its RENAME go in one flight, the upload's OPEN once it is in
/// place: two round trips for any depth, where a MKDIR a level cost one each.
#[test]
fn on_an_in_order_server_a_new_tree_is_made_in_one_flight() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m");
    let mut pair = Pair::new(peer);
    let ops = [upload(&pair, "/m/pool/main/a/apt/f.deb", b"f")];
    let results = pair.run(&ops);
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(
        pair.peer.fs.read("/m/pool/main/a/apt/f.deb"),
        Some(&b"f"[..])
    );
    let log: Vec<String> = pair.peer.log.iter().map(|l| unstaged(l)).collect();
    let made: Vec<&str> = log
        .iter()
        .filter(|l| l.starts_with("MKDIR") || l.starts_with("RENAME /m/pool "))
        .map(String::as_str)
        .collect();
    assert_eq!(
        made,
        [
            "MKDIR /m/pool",
            "MKDIR /m/pool/main",
            "MKDIR /m/pool/main/a",
            "MKDIR /m/pool/main/a/apt",
            "RENAME /m/pool /m/pool",
        ]
    );
    assert_eq!(pair.peer.fs.names("/m"), ["pool"], "no stand-in is left");
}

#[test]
fn waiters_on_a_missing_directory_are_released_together_and_each_is_made_once() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool");
    }) {
        let dir = |k: usize| if k.is_multiple_of(4) { "b" } else { "a" };
        let name = |k: usize| format!("/m/pool/main/{}/f{k}.deb", dir(k));
        let ops: Vec<_> = (0..20)
            .map(|k| upload(&pair, &name(k), &pattern(100 * k, k as u8)))
            .collect();
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        for k in 0..20 {
            let expected = pattern(100 * k, k as u8);
            assert_eq!(fs.read(&name(k)), Some(&expected[..]), "{}", name(k));
        }
        assert_eq!(fs.names("/m/pool/main/a").len(), 15);
        assert_eq!(fs.names("/m/pool/main/b").len(), 5);
        for dir in ["/m/pool/main", "/m/pool/main/a", "/m/pool/main/b"] {
            let mkdir = format!("MKDIR {dir}");
            // However many uploads wait on it, and never one failing for want of a parent
            // (on an in-order server, under the tree's stand-in name).
            assert_eq!(count_made(&pair, &mkdir), 1, "{flavour:?}: {mkdir}");
        }
        // The pool exists: no MKDIR for it.
        assert_eq!(pair.peer.count("MKDIR /m/pool"), 0, "{flavour:?}");
        assert_eq!(pair.conn().dirs.mkdirs_sent, 3, "{:?}", pair.peer.log);
    }
}

/// `dirs.rs` promises a deep new tree is built top-down with one MKDIR per level: a
/// directory the confinement check found missing is made once its parent is, never sent
/// first to fail for want of it (which cost a MKDIR per level, and two round trips, on a
/// server not known to act in order).
#[test]
fn on_any_server_a_new_tree_costs_one_mkdir_per_level() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool");
    }) {
        let ops = [
            upload(&pair, "/m/pool/main/a/f.deb", b"a"),
            upload(&pair, "/m/pool/main/b/g.deb", b"b"),
        ];
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        for dir in ["/m/pool/main/a", "/m/pool/main/b"] {
            let mkdir = format!("MKDIR {dir}");
            assert_eq!(
                count_made(&pair, &mkdir),
                1,
                "{flavour:?}: {:?}",
                pair.peer.log
            );
        }
    }
}

#[test]
fn a_mkdir_answered_after_everything_else_releases_all_its_waiters() {
    let mut peer = Peer::new(Flavour::Other);
    peer.fs.dir("/m/pool");
    peer.on("MKDIR /m/pool/new").hold();
    let mut pair = Pair::new(peer);
    let mut ops: Vec<Op> = (0..6)
        .map(|k| upload(&pair, &format!("/m/pool/new/f{k}"), &pattern(2000, k)))
        .collect();
    // Work that needs no new directory goes on meanwhile, to its end.
    ops.push(upload(&pair, "/m/pool/big.deb", &pattern(40_000, 9)));
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(pair.peer.fs.names("/m/pool/new").len(), 6);
    assert_eq!(pair.peer.count("MKDIR /m/pool/new"), 1);
    let log = &pair.peer.log;
    let opens: Vec<usize> = (0..log.len())
        .filter(|&k| log[k].starts_with("OPEN /m/pool/new/"))
        .collect();
    assert_eq!(
        opens.len(),
        12,
        "each upload: an OPEN that failed, one that did not"
    );
    let landed = log
        .iter()
        .position(|l| l == "posix-rename /m/pool/.big.deb.tmp /m/pool/big.deb")
        .expect("the big file landed");
    assert!(landed < opens[6], "{log:#?}");
}

#[test]
fn symlinks_into_a_missing_directory_make_it_once_and_are_sent_again() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/dists");
    }) {
        let link = |name: &str| Op::Symlink {
            link: rp(&format!("/m/dists/stable/{name}")),
            target: format!("../{name}").into_bytes(),
        };
        let results = pair.run(&[link("a"), link("b")]);
        assert!(
            results.iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        for name in ["a", "b"] {
            let at = format!("/m/dists/stable/{name}");
            let target = format!("../{name}").into_bytes();
            assert_eq!(fs.get(&at), Some(&Node::Link(target)), "{flavour:?}");
            let sent = format!("SYMLINK {at} ../{name}");
            assert_eq!(pair.peer.count_succeeded(&sent), 1, "{flavour:?}");
            assert!(pair.peer.count(&sent) <= 2, "{flavour:?}: retried once");
        }
        assert_eq!(pair.peer.count("MKDIR /m/dists/stable"), 1, "{flavour:?}");
    }
}

/// A new tree whose first MKDIR is refused: the upload fails naming the directory that
/// could not be made, as a plain MKDIR's would, and no stand-in is left.
#[test]
fn a_refused_new_tree_fails_naming_its_directory_and_leaves_nothing() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    peer.on("MKDIR").nth(1).fail(StatusCode::PermissionDenied);
    let mut pair = Pair::new(peer);
    let ops = [upload(&pair, "/m/pool/new/sub/a.deb", b"a")];
    let results = pair.run(&ops);
    let err = results[0].as_ref().expect_err("refused");
    assert!(err.to_string().contains("/m/pool/new"), "{err}");
    assert!(
        pair.peer.fs.names("/m/pool").is_empty(),
        "{:?}",
        pair.peer.log
    );
}

/// Another client makes the tree's top just before the RENAME: the RENAME is refused, the
/// directory found to be a real one inside, and what goes below it is made there.
#[test]
fn a_new_tree_whose_name_is_taken_by_a_real_directory_goes_into_it() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    peer.on("RENAME").nth(1).before(|fs| {
        fs.dir("/m/pool/new");
    });
    let mut pair = Pair::new(peer);
    let ops = [upload(&pair, "/m/pool/new/sub/a.deb", &pattern(5000, 4))];
    let results = pair.run(&ops);
    assert!(results[0].is_ok(), "{results:?}: {:?}", pair.peer.log);
    let fs = &pair.peer.fs;
    assert_eq!(
        fs.read("/m/pool/new/sub/a.deb"),
        Some(&pattern(5000, 4)[..])
    );
    assert_eq!(fs.names("/m/pool"), ["new"], "{:?}", pair.peer.log);
}

/// Uploads waiting for an open-file slot have their new directories made ahead: on an
/// in-order server the whole new tree goes in one flight, however many files wait.
#[test]
fn the_new_directories_of_uploads_still_waiting_join_the_first_tree() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m");
    let mut pair = Pair::new(peer);
    let path = |k: usize| format!("/m/pool/main/p{}/pkg{k}/f.deb", k % 3);
    // Thirty files, eight open at once at most (`Pair`'s limits).
    let ops: Vec<Op> = (0..30).map(|k| upload(&pair, &path(k), b"x")).collect();
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let flights = &pair.peer.flights;
    let with_mkdir: Vec<&Vec<String>> = flights
        .iter()
        .filter(|f| f.iter().any(|l| l.starts_with("MKDIR")))
        .collect();
    assert_eq!(with_mkdir.len(), 1, "{flights:#?}");
    let mkdirs = with_mkdir[0]
        .iter()
        .filter(|l| l.starts_with("MKDIR"))
        .count();
    assert_eq!(mkdirs, 1 + 1 + 3 + 30, "pool, main, three p*, thirty pkg*");
    for k in 0..30 {
        assert_eq!(pair.peer.fs.read(&path(k)), Some(&b"x"[..]), "{}", path(k));
    }
}

/// A run that ends between a new tree's MKDIRs and its RENAME (the server gone silent)
/// leaves the tree under its stand-in name, and says so (for the caller to record and a
/// later run to remove, run::leftovers); the next run makes the tree again, under a name
/// of its own, and lands its files.
#[test]
fn a_tree_left_under_its_stand_in_by_a_run_that_ended_is_made_again() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    peer.on("RENAME").nth(1).drop_it();
    let mut pair = Pair::new(peer);
    let ops = [upload(&pair, "/m/pool/new/sub/a.deb", &pattern(3000, 5))];
    let failure = pair.try_run(&ops).expect_err("the server went silent");
    assert!(failure.finished.is_empty(), "{failure:?}");
    let left = pair.peer.fs.names("/m/pool");
    assert!(
        left.len() == 1 && left[0].starts_with(".new."),
        "only the stand-in: {left:?}"
    );
    // What the caller is told may be left, to be removed: deepest first.
    let stand_in = format!("/m/pool/{}", left[0]);
    assert_eq!(
        pair.stand_ins_left(),
        [format!("{stand_in}/sub"), stand_in.clone()]
    );
    // The next run, against what the first one left.
    let mut again = Peer::new(Flavour::OpenSsh);
    again.fs = pair.peer.fs.clone();
    let mut pair = Pair::new(again);
    let ops = [upload(&pair, "/m/pool/new/sub/a.deb", &pattern(3000, 5))];
    let results = pair.run(&ops);
    assert!(results[0].is_ok(), "{results:?}");
    let fs = &pair.peer.fs;
    assert_eq!(
        fs.read("/m/pool/new/sub/a.deb"),
        Some(&pattern(3000, 5)[..])
    );
    let mut names = fs.names("/m/pool");
    names.sort();
    assert_eq!(names, [left[0].clone(), "new".to_string()]);
}
