//! Comparisons and listings: READs answered in any order and in short pieces still tell
//! the same file from a different one; a listing has every entry once.

use super::{both, pattern, rp};
use crate::engine::op::{Cause, Op, Outcome, Req};

#[test]
fn comparisons_answered_out_of_order_and_in_short_reads_tell_same_from_different() {
    for short_reads in [None, Some(300)] {
        for (flavour, mut pair) in both(|peer| {
            let mut last = pattern(5000, 1);
            last[4999] ^= 1;
            let mut first = pattern(5000, 1);
            first[0] ^= 1;
            peer.fs
                .dir("/m/pool")
                .file("/m/pool/same", &pattern(5000, 1))
                .file("/m/pool/last", &last)
                .file("/m/pool/first", &first)
                .file("/m/pool/shorter", &pattern(4999, 1))
                .file("/m/pool/longer", &pattern(5001, 1))
                .file("/m/pool/empty", b"");
            peer.short_reads = short_reads;
        }) {
            let local = pair.local("local", &pattern(5000, 1));
            let compare = |name: &str| Op::Compare {
                local: local.clone(),
                remote: rp(&format!("/m/pool/{name}")),
            };
            let names = [
                "same", "last", "first", "shorter", "longer", "empty", "missing",
            ];
            let ops: Vec<Op> = names.iter().map(|n| compare(n)).collect();
            let results = pair.run(&ops);
            let context = format!("{flavour:?}, short reads {short_reads:?}");
            assert_eq!(results[0], Ok(Outcome::Same), "{context}");
            for (k, result) in results.iter().enumerate().take(6).skip(1) {
                assert_eq!(*result, Ok(Outcome::Differs), "{context}: {}", names[k]);
            }
            let Err(e) = &results[6] else {
                panic!("{context}: {:?}", results[6])
            };
            assert!(
                matches!(
                    e.cause,
                    Cause::Status {
                        request: Req::Open,
                        code: crate::engine::Status::NoSuchFile,
                        ..
                    }
                ),
                "{context}: {e}"
            );
            assert_eq!(pair.peer.most_handles, 6, "{context}: every handle closed");
        }
    }
}

#[test]
fn a_listing_has_every_entry_once_and_a_missing_directory_is_absent() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool/sub").link("/m/pool/link", "sub");
        for k in 0..30 {
            peer.fs.file(&format!("/m/pool/f{k:02}"), &pattern(k, 0));
        }
    }) {
        let ops = [
            Op::List {
                path: rp("/m/pool"),
            },
            Op::List {
                path: rp("/m/nothing"),
            },
            Op::Readlink {
                path: rp("/m/pool/link"),
            },
        ];
        let results = pair.run(&ops);
        let Ok(Outcome::Listing(entries)) = &results[0] else {
            panic!("{flavour:?}: {:?}", results[0])
        };
        let mut names: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect();
        names.sort();
        assert_eq!(names, pair.peer.fs.names("/m/pool"), "{flavour:?}");
        assert_eq!(names.len(), 32, "{flavour:?}: without . and ..");
        let link = entries.iter().find(|e| e.name == b"link").expect("link");
        assert!(link.is_symlink(), "{flavour:?}: as LSTAT sees it");
        assert_eq!(results[1], Ok(Outcome::AlreadyAbsent), "{flavour:?}");
        assert_eq!(
            results[2],
            Ok(Outcome::Target(b"sub".to_vec())),
            "{flavour:?}"
        );
    }
}
