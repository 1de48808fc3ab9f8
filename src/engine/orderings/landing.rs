//! How uploads land: under the temporary name, then renamed onto the real name, whatever
//! order the server answers in.

use super::{both, pattern, rp, upload};
use crate::engine::op::{Cause, Op};
use crate::engine::peer::{Flavour, Pair, Peer};
use crate::sftp::wire::{Attrs, Response, StatusCode};

#[test]
fn replies_out_of_order_still_land_every_upload_by_rename_from_its_temporary_name() {
    let mut peer = Peer::new(Flavour::Other);
    peer.fs.dir("/m/pool").file("/m/pool/a.deb", b"the old a");
    // Until its rename, the real name keeps the old file.
    peer.on("posix-rename /m/pool/.a.deb.tmp /m/pool/a.deb")
        .before(|fs| {
            assert_eq!(fs.read("/m/pool/a.deb"), Some(&b"the old a"[..]));
        });
    let mut pair = Pair::new(peer);
    let sizes = [0, 1, 1023, 1024, 1025, 5000, 20_000, 70_000];
    let mut ops = vec![upload(&pair, "/m/pool/a.deb", &pattern(3000, 99))];
    for (k, &size) in sizes.iter().enumerate() {
        ops.push(upload(
            &pair,
            &format!("/m/pool/f{k}.deb"),
            &pattern(size, k as u8),
        ));
    }
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let fs = &pair.peer.fs;
    assert_eq!(fs.read("/m/pool/a.deb"), Some(&pattern(3000, 99)[..]));
    for (k, &size) in sizes.iter().enumerate() {
        let name = format!("/m/pool/f{k}.deb");
        assert_eq!(fs.read(&name), Some(&pattern(size, k as u8)[..]), "{name}");
    }
    let mut names: Vec<String> = (0..sizes.len()).map(|k| format!("f{k}.deb")).collect();
    names.insert(0, "a.deb".into());
    assert_eq!(fs.names("/m/pool"), names, "no temporary file is left");
    let log = &pair.peer.log;
    for name in names {
        let real = format!("/m/pool/{name}");
        let tmp = format!("/m/pool/.{name}");
        let written_at = |l: &String| {
            ["OPEN ", "WRITE ", "FSETSTAT ", "SETSTAT "]
                .iter()
                .any(|w| l.starts_with(&format!("{w}{real} ")) || *l == format!("{w}{real}"))
        };
        assert!(
            !log.iter().any(written_at),
            "{real} written in place: {log:#?}"
        );
        let renamed = format!("posix-rename {tmp}.tmp {real}");
        assert_eq!(log.iter().filter(|l| **l == renamed).count(), 1, "{log:#?}");
    }
    let sent: Vec<String> = pair.peer.flights.concat();
    assert_ne!(*log, sent, "the server carried the flights out of order");
}

#[test]
fn a_symlink_at_the_real_name_is_replaced_and_one_at_the_temporary_name_removed_first() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs
            .dir("/m/pool")
            .file("/victim", b"not yours")
            .link("/m/pool/a.deb", "/victim")
            .link("/m/pool/.b.deb.tmp", "/victim")
            // What a killed run left: longer than the new file, with other bytes.
            .file("/m/pool/.c.deb.tmp", &[7; 9000])
            // A dangling link: an OPEN that followed it would create a file out there.
            .link("/m/pool/.d.deb.tmp", "/created");
    }) {
        let ops: Vec<Op> = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(k, n)| upload(&pair, &format!("/m/pool/{n}.deb"), &pattern(3000, k as u8)))
            .collect();
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        assert_eq!(fs.read("/victim"), Some(&b"not yours"[..]), "{flavour:?}");
        assert!(fs.get("/created").is_none(), "{flavour:?}: written through");
        for (k, n) in ["a", "b", "c", "d"].iter().enumerate() {
            let name = format!("/m/pool/{n}.deb");
            assert_eq!(fs.read(&name), Some(&pattern(3000, k as u8)[..]), "{name}");
        }
        assert_eq!(fs.names("/m/pool"), ["a.deb", "b.deb", "c.deb", "d.deb"]);
    }
}

#[test]
fn a_refused_posix_rename_falls_back_to_remove_then_rename_from_then_on() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs
            .dir("/m/pool")
            .dir("/m/dists")
            .file("/m/pool/a.deb", b"the old a")
            .file("/m/dists/Release", b"old release")
            .file("/m/dists/Release.new", b"new release");
        // As `sftp-server -P posix-rename`: offered, then refused.
        peer.on("posix-rename").fail(StatusCode::PermissionDenied);
    }) {
        let ops = [
            upload(&pair, "/m/pool/a.deb", &pattern(3000, 1)),
            Op::Rename {
                from: rp("/m/dists/Release.new"),
                to: rp("/m/dists/Release"),
            },
        ];
        let results = pair.run(&ops);
        assert!(
            results.iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        assert_eq!(fs.read("/m/pool/a.deb"), Some(&pattern(3000, 1)[..]));
        assert_eq!(fs.read("/m/dists/Release"), Some(&b"new release"[..]));
        assert_eq!(fs.names("/m/dists"), ["Release"], "{flavour:?}");
        let refused = pair.peer.flights.concat();
        let refused = refused.iter().filter(|l| l.starts_with("posix-rename "));
        assert!(
            refused.count() <= 2,
            "{flavour:?}: each at most once, in one flight"
        );
        assert!(
            !pair.conn().limits.posix_rename,
            "{flavour:?}: done without from now on"
        );

        // The next batch does not ask again.
        let sent_before = pair.peer.flights.len();
        let ops = [upload(&pair, "/m/pool/a.deb", &pattern(4000, 2))];
        assert!(pair.run(&ops)[0].is_ok(), "{flavour:?}");
        let later = pair.peer.flights[sent_before..].concat();
        assert!(
            !later.iter().any(|l| l.starts_with("posix-rename")),
            "{later:#?}"
        );
        assert_eq!(
            pair.peer.fs.read("/m/pool/a.deb"),
            Some(&pattern(4000, 2)[..])
        );
        assert_eq!(pair.peer.fs.names("/m/pool"), ["a.deb"], "{flavour:?}");
    }
}

#[test]
fn an_upload_whose_size_the_server_does_not_confirm_lands_nowhere() {
    let no_size = Response::Attrs(Attrs::default());
    let one_byte = Response::Attrs(Attrs {
        size: Some(1),
        ..Attrs::default()
    });
    let cases = [
        (
            "FSTAT",
            no_size.clone(),
            Some(no_size),
            Cause::SizeUnconfirmed,
        ),
        (
            "FSTAT",
            one_byte,
            None,
            Cause::SizeMismatch {
                expected: 3000,
                actual: 1,
            },
        ),
    ];
    for (fstat, fstat_reply, stat_reply, cause) in cases {
        for (flavour, mut pair) in both(|peer| {
            peer.fs.dir("/m/pool").file("/m/pool/a.deb", b"the old a");
            peer.on(fstat).answer(fstat_reply.clone());
            if let Some(reply) = &stat_reply {
                peer.on("STAT").answer(reply.clone());
            }
        }) {
            let ops = [
                upload(&pair, "/m/pool/a.deb", &pattern(3000, 1)),
                upload(&pair, "/m/pool/new.deb", &pattern(3000, 2)),
            ];
            let results = pair.run(&ops);
            for result in &results {
                let err = result.as_ref().expect_err("unconfirmed");
                assert_eq!(err.cause, cause, "{flavour:?}");
            }
            let fs = &pair.peer.fs;
            assert_eq!(
                fs.read("/m/pool/a.deb"),
                Some(&b"the old a"[..]),
                "{flavour:?}"
            );
            assert_eq!(fs.names("/m/pool"), ["a.deb"], "{flavour:?}");
        }
    }
}

#[test]
fn a_refused_rename_behind_the_close_lands_the_file_once_confirmed() {
    // As `sftp-server -P rename`: the plain RENAME an in-order server gets right behind
    // the CLOSE is refused; the file goes in place by posix-rename once all is confirmed.
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs.dir("/m/pool");
    peer.on("RENAME").fail(StatusCode::PermissionDenied);
    let mut pair = Pair::new(peer);
    let ops = [
        upload(&pair, "/m/pool/a.deb", &pattern(3000, 1)),
        upload(&pair, "/m/pool/b.deb", &pattern(3000, 2)),
    ];
    let results = pair.run(&ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let fs = &pair.peer.fs;
    assert_eq!(fs.read("/m/pool/a.deb"), Some(&pattern(3000, 1)[..]));
    assert_eq!(fs.read("/m/pool/b.deb"), Some(&pattern(3000, 2)[..]));
    assert_eq!(fs.names("/m/pool"), ["a.deb", "b.deb"]);
    let (log, sent) = (&pair.peer.log, pair.peer.flights.concat());
    let landed = |name: &str| {
        let line = format!("posix-rename /m/pool/.{name}.tmp /m/pool/{name}");
        let refused = format!("RENAME /m/pool/.{name}.tmp /m/pool/{name}");
        let closed = format!("CLOSE /m/pool/.{name}.tmp");
        let at = |l: &str| log.iter().position(|x| x == l).expect(l);
        assert!(sent.contains(&refused), "{sent:#?}");
        assert!(at(&closed) < at(&line), "{log:#?}");
    };
    landed("a.deb");
    landed("b.deb");
}
