//! A large upload in parts over several connections: each part writes its range into the
//! shared temporary name, in whatever order the writes land; the whole is sized, confirmed
//! and renamed once every part is in.

use super::{pattern, upload};
use crate::engine::peer::{Flavour, Node, Pair, Peer};

#[test]
fn a_file_uploaded_in_parts_over_two_connections_arrives_whole() {
    let mut peer = Peer::new(Flavour::OpenSsh);
    peer.fs
        .dir("/m/pool")
        .file("/m/pool/big.deb", b"the old version")
        // What a killed run left: longer than the new file.
        .file("/m/pool/.big.deb.tmp", &[7; 50_000]);
    // The reply to the first part's first WRITE comes after every other of its connection.
    peer.on("WRITE /m/pool/.big.deb.tmp at 0").hold();
    let mut pair = Pair::new(peer);
    pair.connect_another();
    let data = pattern(23_000, 5);
    let op = upload(&pair, "/m/pool/big.deb", &data);
    assert_eq!(
        pair.upload_in_parts(&op, 4096),
        Ok(crate::engine::op::Outcome::Done)
    );

    let fs = &pair.peer.fs;
    let Some(Node::File {
        data: got, mtime, ..
    }) = fs.get("/m/pool/big.deb")
    else {
        panic!("no file: {:?}", fs.names("/m/pool"))
    };
    assert_eq!(got.len(), data.len());
    assert!(*got == data, "the parts make the file");
    assert_eq!(*mtime, 1_000_000_000);
    assert_eq!(fs.names("/m/pool"), ["big.deb"]);
    for k in 0..2 {
        let opened = (0..pair.peer.flights.len())
            .filter(|&f| pair.peer.flights_on[f] == k)
            .flat_map(|f| &pair.peer.flights[f])
            .filter(|l| *l == "OPEN /m/pool/.big.deb.tmp")
            .count();
        assert_eq!(opened, 3, "connection {k} wrote three parts");
    }
    let log = &pair.peer.log;
    // Six parts, each opened without EXCL on the shared temporary name, never the real one.
    assert_eq!(pair.peer.count("OPEN /m/pool/.big.deb.tmp"), 6, "{log:#?}");
    assert!(!log.iter().any(|l| l.starts_with("OPEN /m/pool/big.deb")));
    let at = |line: &str| log.iter().position(|l| l == line).expect(line);
    let last_write = log
        .iter()
        .rposition(|l| l.starts_with("WRITE "))
        .expect("writes");
    let sized = at("SETSTAT /m/pool/.big.deb.tmp");
    assert!(last_write < sized);
    assert!(sized < at("STAT /m/pool/.big.deb.tmp"));
    assert!(
        at("STAT /m/pool/.big.deb.tmp") < at("posix-rename /m/pool/.big.deb.tmp /m/pool/big.deb")
    );
}
