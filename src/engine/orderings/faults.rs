//! A request failed mid-batch, a reply of the wrong kind, a reply that never comes, bytes
//! that are no reply: the one operation concerned fails (or the run ends with an error),
//! never a panic, and what was in place stays so.

use super::{both, pattern, rp, upload};
use crate::engine::op::{Cause, Op, OpResult, Outcome, Req};
use crate::engine::peer::pair::Broken;
use crate::engine::peer::{Flavour, Node, Pair, Peer, status};
use crate::sftp::session::SessionError;
use crate::sftp::wire::{Attrs, Packet, Response, StatusCode, WireError};

#[test]
fn a_failed_write_mid_batch_leaves_the_real_name_untouched_and_the_rest_finishes() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs
            .dir("/m/pool")
            .dir("/m/dists")
            .file("/m/pool/a.deb", b"the old a")
            .file("/m/pool/gone.deb", b"x")
            .file("/m/dists/Release.new", b"new release");
        peer.on("WRITE /m/pool/.a.deb.tmp")
            .nth(3)
            .fail(StatusCode::Failure);
        // A new file: on an in-order server its rename goes right behind its CLOSE, before
        // the failure is known; what it put at the real name goes again.
        peer.on("WRITE /m/pool/.new.deb.tmp")
            .nth(2)
            .fail(StatusCode::Failure);
    }) {
        let ops = [
            upload(&pair, "/m/pool/a.deb", &pattern(5000, 1)),
            upload(&pair, "/m/pool/new.deb", &pattern(5000, 2)),
            upload(&pair, "/m/pool/ok.deb", &pattern(5000, 3)),
            Op::Remove {
                path: rp("/m/pool/gone.deb"),
            },
            Op::Rename {
                from: rp("/m/dists/Release.new"),
                to: rp("/m/dists/Release"),
            },
            Op::Symlink {
                link: rp("/m/pool/link"),
                target: b"ok.deb".to_vec(),
            },
            Op::Mkdir {
                path: rp("/m/pool/d"),
            },
        ];
        let results = pair.run(&ops);
        for (k, result) in results.iter().enumerate().take(2) {
            let err = result
                .as_ref()
                .expect_err("a failed WRITE fails the upload");
            let Cause::Status { request, code, .. } = &err.cause else {
                panic!("{flavour:?}: {err}")
            };
            assert_eq!(
                (*request, *code),
                (Req::Write, crate::engine::Status::Failure),
                "{k}"
            );
        }
        assert!(
            results[2..].iter().all(Result::is_ok),
            "{flavour:?}: {results:?}"
        );
        let fs = &pair.peer.fs;
        let untouched = Node::File {
            data: b"the old a".to_vec(),
            mode: 0o644,
            mtime: 0,
        };
        assert_eq!(fs.get("/m/pool/a.deb"), Some(&untouched), "{flavour:?}");
        assert_eq!(fs.read("/m/pool/ok.deb"), Some(&pattern(5000, 3)[..]));
        assert_eq!(fs.read("/m/dists/Release"), Some(&b"new release"[..]));
        assert_eq!(
            fs.names("/m/pool"),
            ["a.deb", "d", "link", "ok.deb"],
            "{flavour:?}: no temporary file, nothing at the new name"
        );
    }
}

#[test]
fn a_reply_of_the_wrong_kind_fails_its_operation_only() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool").file("/m/pool/x", b"x");
        peer.on("REMOVE /m/pool/x")
            .answer(Response::Handle(b"h".to_vec()));
        peer.on("OPEN /m/pool/.a.deb.tmp excl")
            .answer(Response::Attrs(Attrs::default()));
        peer.on("READLINK /m/pool/l")
            .answer(Response::Data(b"d".to_vec()));
    }) {
        let ops = [
            Op::Remove {
                path: rp("/m/pool/x"),
            },
            upload(&pair, "/m/pool/a.deb", b"a"),
            Op::Readlink {
                path: rp("/m/pool/l"),
            },
            upload(&pair, "/m/pool/b.deb", b"b"),
        ];
        let results = pair.run(&ops);
        for (k, request) in [(0, Req::Remove), (1, Req::Open), (2, Req::Readlink)] {
            let err = results[k].as_ref().expect_err("a wrong reply is a failure");
            assert!(
                matches!(err.cause, Cause::UnexpectedReply { request: r, .. } if r == request),
                "{flavour:?}: {err}"
            );
        }
        assert_eq!(results[3], Ok(Outcome::Done), "{flavour:?}");
        assert_eq!(pair.peer.fs.names("/m/pool"), ["b.deb", "x"], "{flavour:?}");
    }
}

/// The encoded reply to request `id`.
fn reply_bytes(id: u32, response: Response) -> Vec<u8> {
    let mut out = Vec::new();
    Packet::Response { id, response }.encode(&mut out);
    out
}

#[test]
fn a_reply_to_an_unknown_id_or_a_malformed_packet_is_an_error_naming_what_was_in_flight() {
    type Expected = fn(&SessionError) -> bool;
    let cases: [(Vec<u8>, Expected); 3] = [
        (reply_bytes(4242, status(StatusCode::Ok)), |e| {
            *e == SessionError::UnknownId(4242)
        }),
        // A packet of a type no server sends.
        (b"\x00\x00\x00\x05\xfa\x00\x00\x00\x01".to_vec(), |e| {
            matches!(e, SessionError::Wire(_))
        }),
        // A STATUS that ends inside its code.
        (
            b"\x00\x00\x00\x07\x65\x00\x00\x00\x01\x00\x00".to_vec(),
            |e| matches!(e, SessionError::Wire(WireError::Truncated(_))),
        ),
    ];
    for (bytes, expected) in cases {
        let mut peer = Peer::new(Flavour::OpenSsh);
        peer.fs.dir("/m/pool");
        peer.on("FSTAT /m/pool/.a.deb.tmp").raw(bytes.clone());
        let mut pair = Pair::new(peer);
        let ops = [upload(&pair, "/m/pool/a.deb", &pattern(3000, 1))];
        let failure = pair
            .try_run(&ops)
            .expect_err("the conversation cannot go on");
        let Broken::Session(e) = &failure.broken else {
            panic!("{failure:?}")
        };
        assert!(expected(e), "{bytes:?}: {e}");
        assert!(failure.finished.is_empty(), "{failure:?}");
        assert!(
            failure
                .in_flight
                .iter()
                .any(|l| l.contains("upload /m/pool/a.deb")),
            "{failure:?}"
        );
    }
}

#[test]
fn a_reply_that_never_comes_leaves_its_operation_in_flight_and_the_others_done() {
    let mut peer = Peer::new(Flavour::Other);
    peer.fs.dir("/m/pool");
    peer.on("CLOSE /m/pool/.a.deb.tmp").drop_it();
    let mut pair = Pair::new(peer);
    let ops = [
        upload(&pair, "/m/pool/a.deb", &pattern(3000, 1)),
        upload(&pair, "/m/pool/b.deb", &pattern(3000, 2)),
    ];
    let failure = pair.try_run(&ops).expect_err("the server went silent");
    assert!(matches!(failure.broken, Broken::Stalled), "{failure:?}");
    assert_eq!(failure.finished, [(1, Ok(Outcome::Done))]);
    assert_eq!(failure.in_flight, ["CLOSE for upload /m/pool/a.deb"]);
    assert!(pair.peer.fs.get("/m/pool/a.deb").is_none());
}

#[test]
fn an_interrupt_mid_batch_leaves_whole_files_or_nothing_and_no_temporary_file() {
    for (flavour, mut pair) in both(|peer| {
        peer.fs.dir("/m/pool").file("/m/pool/f3.deb", b"the old f3");
        // The signal comes while the fourth file, larger than the window, is being written.
        peer.on("WRITE /m/pool/.f3.deb.tmp at 0").signal();
    }) {
        // More than the eight files that may be open at once: some never start.
        let size = |k: usize| if k == 3 { 60_000 } else { 1000 + 1500 * k };
        let ops: Vec<Op> = (0..12)
            .map(|k| {
                upload(
                    &pair,
                    &format!("/m/pool/f{k}.deb"),
                    &pattern(size(k), k as u8),
                )
            })
            .collect();
        let results = pair.run(&ops);
        let interrupted = |r: &OpResult| matches!(r, Err(e) if e.cause == Cause::Interrupted);
        assert!(interrupted(&results[3]), "{flavour:?}: {:?}", results[3]);
        assert!(
            results[8..].iter().all(interrupted),
            "{flavour:?}: never started"
        );
        let fs = &pair.peer.fs;
        assert_eq!(
            fs.read("/m/pool/f3.deb"),
            Some(&b"the old f3"[..]),
            "{flavour:?}"
        );
        for (k, result) in results.iter().enumerate() {
            let name = format!("/m/pool/f{k}.deb");
            match result {
                Ok(_) => assert_eq!(fs.read(&name), Some(&pattern(size(k), k as u8)[..])),
                Err(_) if k == 3 => {}
                Err(e) => {
                    assert!(interrupted(result), "{flavour:?}: {e}");
                    assert!(fs.get(&name).is_none(), "{flavour:?}: {name} is partial");
                }
            }
        }
        let temporary: Vec<String> = fs
            .names("/m/pool")
            .into_iter()
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(temporary.is_empty(), "{flavour:?}: {temporary:?}");
        assert!(
            results.iter().any(Result::is_ok),
            "{flavour:?}: some were done before"
        );
    }
}
