//! Every packet round-trips, is framed at every split point, and no truncation or random
//! corruption of one panics.
use super::*;

fn full_attrs() -> Attrs {
    Attrs {
        size: Some(0x0102_0304_0506_0708),
        uid_gid: Some((1000, 1001)),
        permissions: Some(0o100644),
        times: Some((1_700_000_000, 1_700_000_001)),
        extended: vec![(b"x@example.com".to_vec(), b"\x00\xffdata".to_vec())],
    }
}

fn requests() -> Vec<Request> {
    let h = b"\x00\x01handle".to_vec();
    let p = b"pool/main/\xfflib/foo.deb".to_vec();
    vec![
        Request::Open {
            path: p.clone(),
            flags: OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::TRUNC,
            attrs: Attrs::default(),
        },
        Request::Open {
            path: p.clone(),
            flags: OpenFlags::READ | OpenFlags::APPEND | OpenFlags::EXCL,
            attrs: full_attrs(),
        },
        Request::Close { handle: h.clone() },
        Request::Read {
            handle: h.clone(),
            offset: u64::MAX,
            len: 32768,
        },
        Request::Write {
            handle: h.clone(),
            offset: 5,
            data: vec![0, 1, 2, 255],
        },
        Request::Write {
            handle: h.clone(),
            offset: 0,
            data: vec![],
        },
        Request::Lstat { path: p.clone() },
        Request::Fstat { handle: h.clone() },
        Request::Setstat {
            path: p.clone(),
            attrs: full_attrs(),
        },
        Request::Fsetstat {
            handle: h.clone(),
            attrs: Attrs {
                times: Some((1, 2)),
                ..Attrs::default()
            },
        },
        Request::Opendir { path: p.clone() },
        Request::Readdir { handle: h.clone() },
        Request::Remove { path: p.clone() },
        Request::Mkdir {
            path: p.clone(),
            attrs: Attrs {
                permissions: Some(0o755),
                ..Attrs::default()
            },
        },
        Request::Rmdir { path: p.clone() },
        Request::Realpath {
            path: b".".to_vec(),
        },
        Request::Stat { path: p.clone() },
        Request::Rename {
            from: b"a.new".to_vec(),
            to: b"a".to_vec(),
        },
        Request::Readlink { path: p.clone() },
        Request::Symlink {
            link: b"dists/stable".to_vec(),
            target: b"bookworm".to_vec(),
            order: SymlinkOrder::TargetFirst,
        },
        Request::Extended(ExtendedRequest::PosixRename {
            from: b"Release.new".to_vec(),
            to: b"Release".to_vec(),
        }),
        Request::Extended(ExtendedRequest::Fsync { handle: h.clone() }),
        Request::Extended(ExtendedRequest::Limits),
        Request::Extended(ExtendedRequest::Statvfs {
            path: b"/srv/m\xff".to_vec(),
        }),
        Request::Extended(ExtendedRequest::Hardlink {
            from: b"dists/b/Release".to_vec(),
            to: b"dists/b/.Release\xff.prev".to_vec(),
        }),
        Request::Extended(ExtendedRequest::Other {
            name: b"copy-data".to_vec(),
            data: b"\x00\x00\x00\x01x".to_vec(),
        }),
    ]
}

fn responses() -> Vec<Response> {
    let mut limits = Vec::new();
    Limits {
        max_packet_len: 262144,
        max_read_len: 261120,
        max_write_len: 261120,
        max_open_handles: 1019,
    }
    .encode(&mut limits);
    vec![
        Response::Status {
            code: StatusCode::Ok,
            message: b"Success".to_vec(),
            language: b"".to_vec(),
        },
        Response::Status {
            code: StatusCode::Other(77),
            message: b"\xffodd".to_vec(),
            language: b"en".to_vec(),
        },
        Response::Handle(b"\x00\x00\x00\x07".to_vec()),
        Response::Data(vec![9; 1000]),
        Response::Data(vec![]),
        Response::Name(vec![]),
        Response::Name(vec![
            NameEntry {
                filename: b"a".to_vec(),
                longname: b"-rw-r--r-- a".to_vec(),
                attrs: full_attrs(),
            },
            NameEntry {
                filename: b"b".to_vec(),
                longname: vec![],
                attrs: Attrs::default(),
            },
        ]),
        Response::Attrs(full_attrs()),
        Response::Attrs(Attrs::default()),
        Response::ExtendedReply(limits),
        Response::ExtendedReply(vec![]),
    ]
}

fn all_client_packets() -> Vec<Packet> {
    let mut packets = vec![
        Packet::Init {
            version: 3,
            extensions: vec![],
        },
        Packet::Init {
            version: 3,
            extensions: vec![(b"a".to_vec(), b"1".to_vec())],
        },
    ];
    for (i, request) in requests().into_iter().enumerate() {
        packets.push(Packet::Request {
            id: i as u32 * 0x0101_0101,
            request,
        });
    }
    packets
}

fn all_server_packets() -> Vec<Packet> {
    let mut packets = vec![Packet::Version {
        version: 3,
        extensions: vec![
            (b"posix-rename@openssh.com".to_vec(), b"1".to_vec()),
            (b"vendor-id".to_vec(), b"\x00\x00\x00\x01".to_vec()),
        ],
    }];
    for (i, response) in responses().into_iter().enumerate() {
        packets.push(Packet::Response {
            id: u32::MAX - i as u32,
            response,
        });
    }
    packets
}

fn decode_one(bytes: &[u8], from_client: bool) -> Result<(Packet, usize), WireError> {
    match frame(bytes)? {
        Frame::Partial => panic!("incomplete"),
        Frame::Complete { body, consumed } => {
            let p = if from_client {
                Packet::decode_from_client(body)?
            } else {
                Packet::decode_from_server(body)?
            };
            Ok((p, consumed))
        }
    }
}

#[test]
fn every_packet_round_trips() {
    for (packets, from_client) in [(all_client_packets(), true), (all_server_packets(), false)] {
        for p in packets {
            let mut bytes = Vec::new();
            p.encode(&mut bytes);
            let (back, consumed) = decode_one(&bytes, from_client).unwrap();
            assert_eq!(back, p);
            assert_eq!(consumed, bytes.len());
        }
    }
}

#[test]
fn packets_are_framed_at_every_split_point() {
    let mut stream = Vec::new();
    let packets = all_server_packets();
    for p in &packets {
        p.encode(&mut stream);
    }
    // Feed the stream in two pieces split at every byte, decoding as a receiver would.
    for split in 0..=stream.len() {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for piece in [&stream[..split], &stream[split..]] {
            buf.extend_from_slice(piece);
            while let Frame::Complete { body, consumed } = frame(&buf).unwrap() {
                got.push(Packet::decode_from_server(body).unwrap());
                buf.drain(..consumed);
            }
        }
        assert_eq!(got, packets, "split at {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn one_byte_at_a_time_yields_each_packet_once() {
    let mut stream = Vec::new();
    for p in all_client_packets() {
        p.encode(&mut stream);
    }
    let mut buf = Vec::new();
    let mut n = 0;
    for &b in &stream {
        buf.push(b);
        if let Frame::Complete { body, consumed } = frame(&buf).unwrap() {
            Packet::decode_from_client(body).unwrap();
            buf.drain(..consumed);
            n += 1;
        }
    }
    assert_eq!(n, all_client_packets().len());
}

#[test]
fn write_header_matches_encoded_write() {
    let mut expected = Vec::new();
    Packet::Request {
        id: 42,
        request: Request::Write {
            handle: b"h1".to_vec(),
            offset: 1 << 40,
            data: b"hello".to_vec(),
        },
    }
    .encode(&mut expected);
    let mut got = Vec::new();
    encode_write_header(&mut got, 42, b"h1", 1 << 40, 5);
    got.extend_from_slice(b"hello");
    assert_eq!(got, expected);
}

#[test]
fn symlink_order_swaps_arguments_on_the_wire() {
    let encode = |order| {
        let mut out = Vec::new();
        Packet::Request {
            id: 1,
            request: Request::Symlink {
                link: b"LINK".to_vec(),
                target: b"TARGET".to_vec(),
                order,
            },
        }
        .encode(&mut out);
        out
    };
    let openssh = encode(SymlinkOrder::TargetFirst);
    let draft = encode(SymlinkOrder::LinkFirst);
    let pos = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    assert!(pos(&openssh, b"TARGET") < pos(&openssh, b"LINK"));
    assert!(pos(&draft, b"LINK") < pos(&draft, b"TARGET"));
}

#[test]
fn known_bytes_decode_as_expected() {
    // STATUS id 7, NO_SUCH_FILE, "No such file", "" as OpenSSH sends it.
    let bytes = b"\x00\x00\x00\x1d\x65\x00\x00\x00\x07\x00\x00\x00\x02\x00\x00\x00\x0cNo such file\x00\x00\x00\x00";
    let (p, n) = decode_one(bytes, false).unwrap();
    assert_eq!(n, bytes.len());
    assert_eq!(
        p,
        Packet::Response {
            id: 7,
            response: Response::Status {
                code: StatusCode::NoSuchFile,
                message: b"No such file".to_vec(),
                language: vec![],
            }
        }
    );
    // A STATUS without message or language tag, as some old servers send.
    let bare = b"\x00\x00\x00\x09\x65\x00\x00\x00\x01\x00\x00\x00\x04";
    let (p, _) = decode_one(bare, false).unwrap();
    assert!(matches!(
        p,
        Packet::Response {
            id: 1,
            response: Response::Status {
                code: StatusCode::Failure,
                ..
            }
        }
    ));
}

#[test]
fn hardlink_goes_as_openssh_reads_it_old_path_then_new() {
    let packet = Packet::Request {
        id: 3,
        request: Request::Extended(ExtendedRequest::Hardlink {
            from: b"a/R".to_vec(),
            to: b"a/.R.prev".to_vec(),
        }),
    };
    let mut bytes = Vec::new();
    packet.encode(&mut bytes);
    let mut expected = b"\x00\x00\x00\x31\xc8\x00\x00\x00\x03".to_vec();
    expected.extend_from_slice(b"\x00\x00\x00\x14hardlink@openssh.com");
    expected.extend_from_slice(b"\x00\x00\x00\x03a/R");
    expected.extend_from_slice(b"\x00\x00\x00\x09a/.R.prev");
    assert_eq!(bytes, expected);
    assert_eq!(decode_one(&bytes, true).unwrap(), (packet, bytes.len()));
}

#[test]
fn status_codes_have_names() {
    for code in 0..=9 {
        let c = StatusCode::from_u32(code);
        assert_eq!(c.to_u32(), code);
    }
    assert_eq!(StatusCode::NoSuchFile.to_string(), "NO_SUCH_FILE");
    assert_eq!(StatusCode::Other(99).to_string(), "status 99");
}

#[test]
fn limits_reply_decodes() {
    let l = Limits {
        max_packet_len: 1,
        max_read_len: 2,
        max_write_len: 3,
        max_open_handles: 4,
    };
    let mut bytes = Vec::new();
    l.encode(&mut bytes);
    assert_eq!(Limits::decode(&bytes), Ok(l));
    assert!(Limits::decode(&bytes[..31]).is_err());
    bytes.push(0);
    assert!(matches!(
        Limits::decode(&bytes),
        Err(WireError::TrailingBytes { .. })
    ));
}

#[test]
fn statvfs_reply_decodes_the_room_left() {
    // f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, then six more fields.
    let fields: [u64; 11] = [4096, 1024, 1000, 300, 200, 10, 9, 8, 7, 6, 255];
    let bytes: Vec<u8> = fields.iter().flat_map(|v| v.to_be_bytes()).collect();
    let v = Statvfs::decode(&bytes).unwrap();
    assert_eq!(
        (v.available_bytes(), v.size_bytes()),
        (200 * 1024, 1000 * 1024)
    );
    assert!(Statvfs::decode(&bytes[..87]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Statvfs::decode(&longer).is_err());
    let huge: Vec<u8> = [u64::MAX; 11]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    assert_eq!(Statvfs::decode(&huge).unwrap().available_bytes(), u64::MAX);
}

#[test]
fn oversized_and_empty_lengths_are_refused_before_buffering() {
    assert_eq!(
        frame(b"\xff\xff\xff\xff"),
        Err(WireError::TooLong {
            len: u32::MAX,
            max: MAX_PACKET_LEN
        })
    );
    assert_eq!(frame(b"\x00\x00\x00\x00\x65"), Err(WireError::Empty));
    assert_eq!(frame(b"\x00\x00"), Ok(Frame::Partial));
    assert_eq!(frame(b"\x00\x00\x00\x05\x65\x00"), Ok(Frame::Partial));
}

#[test]
fn every_truncation_of_every_packet_is_an_error_not_a_panic() {
    for (packets, from_client) in [(all_client_packets(), true), (all_server_packets(), false)] {
        for p in packets {
            let mut bytes = Vec::new();
            p.encode(&mut bytes);
            let body = &bytes[4..];
            for cut in 0..body.len() {
                let short = &body[..cut];
                let decoded = if from_client {
                    Packet::decode_from_client(short)
                } else {
                    Packet::decode_from_server(short)
                };
                // Some prefixes are themselves valid (a VERSION without its extensions, an
                // EXTENDED_REPLY or STATUS cut at a field boundary); none may panic, and a
                // decoded prefix must not claim to be the whole packet.
                // (A STATUS may lack its trailing language tag, so an empty tag may go.)
                // Nor a NAME its last entry's empty attributes.
                let lenient = match &p {
                    Packet::Response {
                        response: Response::Status { language, .. },
                        ..
                    } => language.is_empty(),
                    Packet::Response {
                        response: Response::Name(entries),
                        ..
                    } => entries.last().is_some_and(|e| e.attrs == Attrs::default()),
                    _ => false,
                };
                if let Ok(q) = decoded
                    && !lenient
                {
                    assert_ne!(q, p, "cut {cut} of {p:?}");
                }
            }
        }
    }
}

#[test]
fn nonsense_is_a_typed_error() {
    // A request type arriving from the server.
    assert_eq!(
        Packet::decode_from_server(b"\x03\x00\x00\x00\x01"),
        Err(WireError::UnexpectedType(3))
    );
    // An unknown type from the client.
    assert_eq!(
        Packet::decode_from_client(b"\x63\x00\x00\x00\x01"),
        Err(WireError::UnexpectedType(0x63))
    );
    // A HANDLE whose string claims 4 GiB.
    assert_eq!(
        Packet::decode_from_server(b"\x66\x00\x00\x00\x01\xff\xff\xff\xff"),
        Err(WireError::Truncated("handle"))
    );
    // A NAME claiming a billion entries in a few bytes must not reserve memory for them.
    assert_eq!(
        Packet::decode_from_server(b"\x68\x00\x00\x00\x01\x40\x00\x00\x00\x00\x00"),
        Err(WireError::Truncated("name count"))
    );
    // Attributes claiming many extended pairs.
    assert_eq!(
        Packet::decode_from_server(b"\x69\x00\x00\x00\x01\x80\x00\x00\x00\xff\xff\xff\xff"),
        Err(WireError::Truncated("extended attribute count"))
    );
    // A handle longer than the draft allows.
    let mut long = b"\x66\x00\x00\x00\x01\x00\x00\x01\x01".to_vec();
    long.extend([b'h'; 257]);
    assert_eq!(
        Packet::decode_from_server(&long),
        Err(WireError::HandleTooLong(257))
    );
    // A HANDLE followed by junk.
    assert_eq!(
        Packet::decode_from_server(b"\x66\x00\x00\x00\x01\x00\x00\x00\x01hX"),
        Err(WireError::TrailingBytes {
            kind: kind::HANDLE,
            extra: 1
        })
    );
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic generator: no dependency, same bytes every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for p in all_server_packets().into_iter().chain(all_client_packets()) {
        let mut b = Vec::new();
        p.encode(&mut b);
        seeds.push(b);
    }
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            let i = (next() as usize) % bytes.len();
            bytes[i] = next() as u8;
        }
        if let Ok(Frame::Complete { body, .. }) = frame(&bytes) {
            let _ = Packet::decode_from_server(body);
            let _ = Packet::decode_from_client(body);
        }
    }
}

#[test]
fn attrs_know_file_types() {
    let dir = Attrs {
        permissions: Some(0o040755),
        ..Attrs::default()
    };
    assert!(dir.is_dir() && !dir.is_symlink());
    let link = Attrs {
        permissions: Some(0o120777),
        ..Attrs::default()
    };
    assert!(link.is_symlink());
    assert!(!Attrs::default().is_dir());
}

/// Decodes a server packet body given as bytes.
fn from_server(body: &[u8]) -> Result<Packet, WireError> {
    Packet::decode_from_server(body)
}

/// The response of a server packet body that must decode.
fn response_of(body: &[u8]) -> Response {
    match from_server(body) {
        Ok(Packet::Response { response, .. }) => response,
        other => panic!("{body:?}: {other:?}"),
    }
}

#[test]
fn lengths_at_the_limit_wait_for_their_bytes_and_over_it_are_refused() {
    let at = MAX_PACKET_LEN.to_be_bytes();
    assert_eq!(frame(&at), Ok(Frame::Partial));
    let over = (MAX_PACKET_LEN + 1).to_be_bytes();
    assert!(matches!(frame(&over), Err(WireError::TooLong { .. })));
    // Refused on the length alone: the rest of a "4 GiB" packet is never looked for.
    let mut huge = b"\xff\xff\xff\xff".to_vec();
    huge.extend(vec![0; 1 << 20]);
    assert!(matches!(frame(&huge), Err(WireError::TooLong { .. })));
}

#[test]
fn a_version_whose_extensions_lie_about_their_lengths_is_refused() {
    // An extension name that claims 4 GiB.
    assert_eq!(
        from_server(b"\x02\x00\x00\x00\x03\xff\xff\xff\xff"),
        Err(WireError::Truncated("extension name"))
    );
    // A name without its data.
    assert_eq!(
        from_server(b"\x02\x00\x00\x00\x03\x00\x00\x00\x01a"),
        Err(WireError::Truncated("extension data"))
    );
    // Data that claims more than is there.
    assert_eq!(
        from_server(b"\x02\x00\x00\x00\x03\x00\x00\x00\x01a\x00\x01\x00\x00xyz"),
        Err(WireError::Truncated("extension data"))
    );
    // Three bytes left: not even a length.
    assert_eq!(
        from_server(b"\x02\x00\x00\x00\x03\x00\x00\x00"),
        Err(WireError::Truncated("extension name"))
    );
    // Many empty pairs (8 bytes each) are as many as fit in one packet, no more.
    let mut many = b"\x02\x00\x00\x00\x03".to_vec();
    many.extend(vec![0; (MAX_PACKET_LEN as usize - many.len()) / 8 * 8]);
    let Ok(Packet::Version { extensions, .. }) = from_server(&many) else {
        panic!("empty pairs are pairs")
    };
    assert_eq!(extensions.len(), (MAX_PACKET_LEN as usize - 5) / 8);
    // Names seen twice are kept as sent; the session reads the first.
    let twice =
        b"\x02\x00\x00\x00\x03\x00\x00\x00\x01a\x00\x00\x00\x011\x00\x00\x00\x01a\x00\x00\x00\x012";
    let Ok(Packet::Version { extensions, .. }) = from_server(twice) else {
        panic!("two pairs")
    };
    assert_eq!(extensions.len(), 2);
}

#[test]
fn names_with_no_entry_or_fewer_than_counted() {
    assert_eq!(
        response_of(b"\x68\x00\x00\x00\x01\x00\x00\x00\x00"),
        Response::Name(vec![])
    );
    // Two counted, one there (12 bytes for the second would fit the count check only).
    let mut one = b"\x68\x00\x00\x00\x01\x00\x00\x00\x02".to_vec();
    one.extend(b"\x00\x00\x00\x01a\x00\x00\x00\x01a\x00\x00\x00\x00");
    one.extend(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    assert!(matches!(from_server(&one), Err(WireError::Truncated(_))));
    // Names that are no file names decode as sent: the listing judges them.
    let mut odd = b"\x68\x00\x00\x00\x01\x00\x00\x00\x02".to_vec();
    for name in [&b"../x"[..], b"a\0b"] {
        odd.extend((name.len() as u32).to_be_bytes());
        odd.extend(name);
        odd.extend(b"\x00\x00\x00\x00\x00\x00\x00\x00");
    }
    let Response::Name(entries) = response_of(&odd) else {
        panic!("a NAME")
    };
    assert_eq!(entries[0].filename, b"../x");
    assert_eq!(entries[1].filename, b"a\0b");
}

/// pysftpserver's READLINK reply ends after the long name: no attributes at all.
#[test]
fn a_name_that_ends_after_its_long_name_has_no_attributes() {
    let mut reply = b"\x68\x00\x00\x00\x07\x00\x00\x00\x01".to_vec();
    reply.extend(b"\x00\x00\x00\x08bookworm\x00\x00\x00\x00");
    let Response::Name(entries) = response_of(&reply) else {
        panic!("a NAME")
    };
    assert_eq!(entries[0].filename, b"bookworm");
    assert_eq!(entries[0].attrs, Attrs::default());
}

#[test]
fn attributes_with_odd_flags_and_extended_pairs() {
    // EXTENDED set with no pair.
    let none = response_of(b"\x69\x00\x00\x00\x01\x80\x00\x00\x00\x00\x00\x00\x00");
    assert_eq!(none, Response::Attrs(Attrs::default()));
    // One pair whose data claims 4 GiB.
    assert_eq!(
        from_server(b"\x69\x00\x00\x00\x01\x80\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01n\xff\xff\xff\xff"),
        Err(WireError::Truncated("extended attribute data"))
    );
    // Flags of later versions carry no field in version 3: ignored where nothing follows,
    // a typed error where a field of theirs does.
    let later = response_of(b"\x69\x00\x00\x00\x01\x7f\xff\xff\xf0");
    assert_eq!(later, Response::Attrs(Attrs::default()));
    assert!(matches!(
        from_server(b"\x69\x00\x00\x00\x01\x00\x00\x00\x10\x00\x00\x00\x07"),
        Err(WireError::TrailingBytes { .. })
    ));
    // Every field at its extreme.
    let mut max = b"\x69\x00\x00\x00\x01\x00\x00\x00\x0f".to_vec();
    max.extend([0xff; 8 + 4 + 4 + 4 + 4 + 4]);
    let Response::Attrs(a) = response_of(&max) else {
        panic!("ATTRS")
    };
    assert_eq!(a.size, Some(u64::MAX));
    assert_eq!(a.times, Some((u32::MAX, u32::MAX)));
}

#[test]
fn data_handles_and_statuses_as_the_server_sends_them() {
    assert_eq!(
        from_server(b"\x67\x00\x00\x00\x01\x00\x00\x10\x00abc"),
        Err(WireError::Truncated("data"))
    );
    assert_eq!(
        response_of(b"\x66\x00\x00\x00\x01\x00\x00\x00\x00"),
        Response::Handle(vec![])
    );
    // A message that is not UTF-8 and holds escapes decodes as sent: the session makes it
    // printable before anyone shows it.
    let Response::Status { message, .. } = response_of(
        b"\x65\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x03\x1b\xff\n\x00\x00\x00\x00",
    ) else {
        panic!("STATUS")
    };
    assert_eq!(message, b"\x1b\xff\n");
    // A message that claims more than there is.
    assert_eq!(
        from_server(b"\x65\x00\x00\x00\x01\x00\x00\x00\x04\x7f\xff\xff\xffab"),
        Err(WireError::Truncated("status message"))
    );
}

#[test]
fn limits_of_zero_or_the_largest_values_decode_and_an_empty_reply_does_not() {
    for v in [0, u64::MAX] {
        let bytes: Vec<u8> = [v; 4].iter().flat_map(|v| v.to_be_bytes()).collect();
        let l = Limits::decode(&bytes).unwrap();
        assert_eq!(
            (l.max_packet_len, l.max_write_len, l.max_open_handles),
            (v, v, v)
        );
    }
    assert_eq!(
        Limits::decode(b""),
        Err(WireError::Truncated("max-packet-length"))
    );
    assert_eq!(
        Statvfs::decode(&[0; 88]).map(|s| s.available_bytes()),
        Ok(0)
    );
}
