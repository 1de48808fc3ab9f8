//! The SFTP engine against real servers spawned directly.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use outsftphook::{Cause, Engine, EngineConfig, EngineErrorKind, Op, Outcome, Req, Status};
use outsftphook::{ServerCommand, TransportError};

use crate::support::{Sandbox, pattern, rpath};

/// OpenSSH's announced WRITE size: sizes around it exercise chunk boundaries.
const CHUNK: usize = 261_120;

fn sizes() -> Vec<usize> {
    let mut sizes = vec![
        0,
        1,
        2,
        4095,
        4096,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        3 * CHUNK + 7,
    ];
    // And a spread of ordinary package sizes.
    for i in 0..40 {
        sizes.push(1000 + i * 9_973);
    }
    sizes
}

/// Uploads `n` files into deep, new directory trees and checks every byte.
fn upload_many(sandbox: &Sandbox, server: ServerCommand, n: usize) -> Engine {
    let sizes = sizes();
    let mut ops = Vec::new();
    for i in 0..n {
        let rel = format!("pool/c{}/d{}/e/f{}/file{i}.deb", i % 3, i % 7, i % 11);
        let local = sandbox.local_file(&rel, sizes[i % sizes.len()], i as u8);
        ops.push(Op::Upload {
            local,
            remote: rpath(&rel),
            fsync: i % 5 == 0,
            mtime: None,
        });
    }
    let mut engine = Engine::connect(&server, EngineConfig::default()).expect("connect");
    let mut reported = 0;
    let results = engine.run(&ops, |_, _| reported += 1).expect("run");
    assert_eq!(reported, n, "every operation is reported as it finishes");
    for (op, result) in ops.iter().zip(&results) {
        assert_eq!(result, &Ok(Outcome::Done), "{op:?}");
    }
    for i in 0..n {
        let rel = format!("pool/c{}/d{}/e/f{}/file{i}.deb", i % 3, i % 7, i % 11);
        let got = fs::read(sandbox.remote().join(&rel)).unwrap();
        assert!(
            got == pattern(sizes[i % sizes.len()], i as u8),
            "{rel} differs"
        );
    }
    let stats = engine.stats();
    assert_eq!(stats.files_uploaded, n as u64);
    assert!(stats.max_open_files_seen <= outsftphook::DEFAULT_MAX_OPEN_FILES);
    engine
}

#[test]
fn openssh_uploads_hundreds_of_files_into_new_trees() {
    let sandbox = Sandbox::new();
    let engine = upload_many(&sandbox, sandbox.openssh(), 300);
    // Directories: pool, 3 c*, 21 d*, 21 e, and 231 distinct f* leaves... each created once.
    let mut dirs = std::collections::BTreeSet::new();
    for i in 0..300 {
        let mut p = String::new();
        for part in [
            "pool".to_string(),
            format!("c{}", i % 3),
            format!("d{}", i % 7),
            "e".to_string(),
            format!("f{}", i % 11),
        ] {
            if !p.is_empty() {
                p.push('/');
            }
            p.push_str(&part);
            dirs.insert(p.clone());
        }
    }
    for dir in &dirs {
        assert_eq!(sandbox.mkdirs_logged(dir), 1, "MKDIR {dir}");
    }
    // A level is tried once more after its parent was made, never more.
    assert!(engine.stats().mkdirs_sent < 2 * dirs.len() as u64);
    assert!(sandbox.max_open_logged() <= outsftphook::DEFAULT_MAX_OPEN_FILES);
    // A server given 5 ms to exit by itself may be stopped instead on a loaded machine:
    // what is pinned is that it never exits with a failure.
    assert_ne!(engine.close().map(|s| s.success()), Some(false));
}

#[test]
fn greenend_uploads_hundreds_of_files_into_new_trees() {
    let sandbox = Sandbox::new();
    let engine = upload_many(&sandbox, sandbox.greenend(), 200);
    engine.close();
}

#[test]
fn many_uploads_waiting_on_one_missing_directory_send_one_mkdir() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.remote().join("x/y")).unwrap();
    let ops: Vec<Op> = (0..100)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), 100 + i, i as u8),
            remote: rpath(&format!("x/y/z/f{i}")),
            fsync: false,
            mtime: None,
        })
        .collect();
    let mut engine = Engine::connect(&sandbox.openssh(), EngineConfig::default()).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    engine.close();
    let mkdirs: Vec<String> = sandbox
        .log_lines()
        .into_iter()
        .filter(|l| l.starts_with("mkdir"))
        .collect();
    // Exactly one MKDIR for the missing directory. Before it, on this in-order server, the
    // first missing directory of the run sends its ancestors' MKDIRs too (pipelined, once
    // each): they fail, as they exist, and cost no round trip.
    let count = |d: &str| {
        mkdirs
            .iter()
            .filter(|l| **l == format!("mkdir name \"{d}\" mode 0755"))
            .count()
    };
    assert_eq!(count("x/y/z"), 1, "{mkdirs:?}");
    assert!(count("x") <= 1 && count("x/y") <= 1, "{mkdirs:?}");
    assert_eq!(mkdirs.len(), count("x") + count("x/y") + 1, "{mkdirs:?}");
}

#[test]
fn a_deep_new_tree_is_built_top_down_each_level_created_once() {
    let sandbox = Sandbox::new();
    let ops: Vec<Op> = (0..100)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), 100 + i, i as u8),
            remote: rpath(&format!("x/y/z/f{i}")),
            fsync: false,
            mtime: None,
        })
        .collect();
    let mut engine = Engine::connect(&sandbox.openssh(), EngineConfig::default()).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    // On this in-order server, all three at once, top-down: one round trip.
    assert_eq!(engine.stats().mkdirs_sent, 3);
    engine.close();
    for dir in ["x", "x/y", "x/y/z"] {
        assert_eq!(sandbox.mkdirs_logged(dir), 1, "{dir}");
    }
}

/// On OpenSSH's in-order server a new tree is made under a name no one can guess and
/// renamed into place, all in one flight: it arrives whole under its real name, and nothing
/// of the stand-in is left.
#[test]
fn a_new_tree_is_made_aside_and_renamed_into_place_whole() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.remote().join("m")).unwrap();
    let config = EngineConfig {
        targetdir: Some(rpath("m")),
        ..EngineConfig::default()
    };
    let rel = |i: usize| format!("pool/main/p/pkg{}/f{i}.deb", i % 3);
    let ops: Vec<Op> = (0..12)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), 1000 + i, i as u8),
            remote: rpath(&format!("m/{}", rel(i))),
            fsync: false,
            mtime: None,
        })
        .collect();
    let mut engine = Engine::connect(&sandbox.openssh(), config).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    assert!(
        results.iter().all(|r| r == &Ok(Outcome::Done)),
        "{results:?}"
    );
    engine.close();
    for i in 0..12 {
        let got = fs::read(sandbox.remote().join("m").join(rel(i))).unwrap();
        assert!(got == pattern(1000 + i, i as u8), "{} differs", rel(i));
    }
    // Each level made once, and the tree renamed once, from its stand-in beside it.
    for dir in ["pool", "pool/main", "pool/main/p", "pool/main/p/pkg0"] {
        let dir = format!("m/{dir}");
        assert_eq!(sandbox.mkdirs_logged(&dir), 1, "{dir}");
    }
    let renames: Vec<String> = sandbox
        .log_lines()
        .into_iter()
        .filter(|l| l.starts_with("rename old") && l.ends_with("new \"m/pool\""))
        .collect();
    assert_eq!(renames.len(), 1, "{renames:?}");
    let names: Vec<_> = fs::read_dir(sandbox.remote().join("m"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["pool"], "nothing of the stand-in is left");
}

#[test]
fn an_existing_directory_costs_no_mkdir() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.remote().join("a/b")).unwrap();
    let ops: Vec<Op> = (0..10)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), 10, 0),
            remote: rpath(&format!("a/b/f{i}")),
            fsync: false,
            mtime: None,
        })
        .collect();
    let mut engine = Engine::connect(&sandbox.openssh(), EngineConfig::default()).unwrap();
    engine.run(&ops, |_, _| {}).unwrap();
    assert_eq!(engine.stats().mkdirs_sent, 0);
    engine.close();
    assert!(!sandbox.log_lines().iter().any(|l| l.starts_with("mkdir")));
    // And no probing either: one open per file, nothing else but the closes.
    let stats = sandbox
        .log_lines()
        .iter()
        .filter(|l| l.starts_with("stat") || l.starts_with("lstat"))
        .count();
    assert_eq!(stats, 0);
}

#[test]
fn the_open_file_limit_is_never_exceeded() {
    let sandbox = Sandbox::new();
    let ops: Vec<Op> = (0..60)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), (i % 4) * 300_000, i as u8),
            remote: rpath(&format!("d{}/f{i}", i % 2)),
            fsync: false,
            mtime: None,
        })
        .collect();
    let config = EngineConfig {
        max_open_files: 3,
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&sandbox.openssh(), config).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    assert_eq!(engine.stats().max_open_files_seen, 3);
    engine.close();
    // The server never had more open; whether it had 3 at once is the timing's (a CLOSE may
    // reach it before an OPEN that waited for its directory's MKDIR).
    assert!(sandbox.max_open_logged() <= 3);
}

#[test]
fn reuploading_over_a_longer_file_truncates_it() {
    let sandbox = Sandbox::new();
    fs::write(sandbox.remote().join("f"), vec![b'x'; 100_000]).unwrap();
    let local = sandbox.local_file("f", 10, 1);
    let mut engine = Engine::connect(&sandbox.openssh(), EngineConfig::default()).unwrap();
    let ops = [Op::Upload {
        local,
        remote: rpath("f"),
        fsync: false,
        mtime: None,
    }];
    engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    assert_eq!(
        fs::read(sandbox.remote().join("f")).unwrap(),
        pattern(10, 1)
    );
}

#[test]
fn renames_replace_and_symlinks_point_right_on_both_servers() {
    for greenend in [false, true] {
        let sandbox = Sandbox::new();
        let server = if greenend {
            sandbox.greenend()
        } else {
            sandbox.openssh()
        };
        fs::create_dir_all(sandbox.remote().join("dists/bookworm")).unwrap();
        fs::write(sandbox.remote().join("dists/bookworm/Release"), "old").unwrap();
        fs::write(sandbox.remote().join("dists/stable"), "a file in the way").unwrap();
        let local = sandbox.local_file("Release", 5000, 3);
        for posix_rename in [true, false] {
            let config = EngineConfig {
                posix_rename,
                ..EngineConfig::default()
            };
            let mut engine = Engine::connect(&server, config).unwrap();
            assert_eq!(engine.atomic_rename(), posix_rename);
            let upload = [Op::Upload {
                local: local.clone(),
                remote: rpath("dists/bookworm/Release.new"),
                fsync: true,
                mtime: None,
            }];
            let finalise = [
                Op::Rename {
                    from: rpath("dists/bookworm/Release.new"),
                    to: rpath("dists/bookworm/Release"),
                },
                Op::Symlink {
                    link: rpath("dists/stable"),
                    target: b"bookworm".to_vec(),
                },
            ];
            for ops in [&upload[..], &finalise[..]] {
                let results = engine.run(ops, |_, _| {}).unwrap();
                assert!(
                    results.iter().all(|r| r == &Ok(Outcome::Done)),
                    "greenend={greenend} posix_rename={posix_rename}: {results:?}"
                );
            }
            engine.close();
            let remote = sandbox.remote();
            assert_eq!(
                fs::read(remote.join("dists/bookworm/Release")).unwrap(),
                pattern(5000, 3)
            );
            assert!(!remote.join("dists/bookworm/Release.new").exists());
            assert_eq!(
                fs::read_link(remote.join("dists/stable")).unwrap(),
                std::path::Path::new("bookworm")
            );
        }
    }
}

#[test]
fn server_errors_name_the_path_and_the_status() {
    let sandbox = Sandbox::new();
    fs::write(
        sandbox.remote().join("blocker"),
        "a file where a directory must be",
    )
    .unwrap();
    fs::write(sandbox.remote().join("present"), "x").unwrap();
    let local = sandbox.local_file("f", 10, 0);
    let ops = [
        Op::Upload {
            local: local.clone(),
            remote: rpath("blocker/sub/f"),
            fsync: false,
            mtime: None,
        },
        Op::Rename {
            from: rpath("missing.new"),
            to: rpath("missing"),
        },
        Op::Remove {
            path: rpath("gone"),
        },
        Op::Remove {
            path: rpath("present"),
        },
        Op::Upload {
            local: sandbox.local().join("no-such-local-file"),
            remote: rpath("g"),
            fsync: false,
            mtime: None,
        },
        Op::Upload {
            local: local.clone(),
            remote: rpath("ok/f"),
            fsync: false,
            mtime: None,
        },
    ];
    let mut engine = Engine::connect(&sandbox.openssh(), EngineConfig::default()).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();

    let err = results[0].as_ref().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            // blocker, a file, is what stands in the way: named, not blocker/sub.
            "upload blocker/sub/f: cannot create directory blocker: MKDIR failed: FAILURE"
        ),
        "{msg}"
    );
    assert_eq!(err.status(), Some(Status::Failure));

    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.status(), Some(Status::NoSuchFile));
    assert!(matches!(
        err.cause,
        Cause::Status {
            request: Req::PosixRename,
            ..
        }
    ));
    assert!(
        err.to_string()
            .starts_with("rename missing: posix-rename@openssh.com failed: NO_SUCH_FILE")
    );

    assert_eq!(results[2], Ok(Outcome::AlreadyAbsent));
    assert_eq!(results[3], Ok(Outcome::Done));
    assert!(!sandbox.remote().join("present").exists());

    let err = results[4].as_ref().unwrap_err();
    assert!(err.to_string().contains("no-such-local-file"), "{err}");
    assert!(matches!(err.cause, Cause::Local { .. }));

    // One failure does not stop the others.
    assert_eq!(results[5], Ok(Outcome::Done));
}

#[test]
fn a_denied_write_is_reported_with_the_servers_status() {
    let sandbox = Sandbox::new();
    let local = sandbox.local_file("f", 100_000, 0);
    // -P denies the named requests: here every WRITE.
    let server = sandbox.shell(&format!(
        "exec /usr/lib/openssh/sftp-server -P write -d '{}' 2>/dev/null",
        sandbox.remote().display()
    ));
    let mut engine = Engine::connect(&server, EngineConfig::default()).unwrap();
    let ops = [Op::Upload {
        local,
        remote: rpath("f"),
        fsync: false,
        mtime: None,
    }];
    let results = engine.run(&ops, |_, _| {}).unwrap();
    let err = results[0].as_ref().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("upload f: WRITE failed: PERMISSION_DENIED"),
        "{err}"
    );
    // The handle was closed all the same: the engine ends cleanly.
    assert_ne!(engine.close().map(|s| s.success()), Some(false));
}

#[test]
fn a_killed_server_is_an_error_naming_what_was_in_flight() {
    let sandbox = Sandbox::new();
    let pidfile = sandbox.dir.path().join("server.pid");
    let server = sandbox.shell(&format!(
        "echo $$ > '{}'; exec /usr/lib/openssh/sftp-server -d '{}'",
        pidfile.display(),
        sandbox.remote().display()
    ));
    let ops: Vec<Op> = (0..40)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), 2_000_000, i as u8),
            remote: rpath(&format!("f{i}")),
            fsync: false,
            mtime: None,
        })
        .collect();
    let mut engine = Engine::connect(&server, EngineConfig::default()).unwrap();
    let started = Instant::now();
    let mut killed = false;
    let err = engine
        .run(&ops, |_, _| {
            if !killed {
                let pid: i32 = fs::read_to_string(&pidfile)
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
                killed = true;
            }
        })
        .unwrap_err();
    assert!(killed);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(matches!(
        err.kind,
        EngineErrorKind::Transport(TransportError::Closed { .. })
    ));
    let msg = err.to_string();
    assert!(msg.contains("the server closed the connection"), "{msg}");
    assert!(msg.contains("signal: 9"), "{msg}");
    assert!(msg.contains("unanswered: "), "{msg}");
    assert!(msg.contains("for upload f"), "{msg}");
    // Nothing more goes on a connection whose requests were left unanswered: their replies
    // could be taken for the next run's.
    let again = engine.run(&ops[..1], |_, _| {}).unwrap_err();
    assert!(matches!(again.kind, EngineErrorKind::Broken), "{again}");
}

#[test]
fn a_silent_server_stalls_into_an_error_not_a_hang() {
    let sandbox = Sandbox::new();
    let config = EngineConfig {
        timeout: Duration::from_secs(1),
        ..EngineConfig::default()
    };
    let started = Instant::now();
    let err = Engine::connect(&sandbox.shell("exec sleep 60"), config)
        .err()
        .expect("a server that never answers");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err.kind, EngineErrorKind::Stalled(_)));
    assert_eq!(
        err.to_string(),
        "no progress for 1 seconds: the server or the link is stalled (raise 'timeout' for a \
         link this slow); it never answered as an SFTP server (check that ssh logs in without a prompt and that the server offers the \
         sftp subsystem; unanswered: INIT)"
    );
}

#[test]
fn a_server_that_is_not_sftp_is_a_clear_error() {
    let sandbox = Sandbox::new();
    let connect = |script: &str| {
        Engine::connect(&sandbox.shell(script), EngineConfig::default())
            .err()
            .unwrap()
    };
    // A shell that greets: its words are no SFTP packet ("hell" read as a length is far over
    // the limit). It stays, so that the greeting is what the client reads, never the end of
    // the pipe: only a protocol error can come of it.
    let err = connect("echo hello; sleep 5");
    assert!(
        matches!(
            err.kind,
            EngineErrorKind::Transport(TransportError::Protocol(_))
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("malformed packet from server: packet length 1751477356 exceeds"),
        "{msg}"
    );
    // One that says nothing and goes: whether INIT was written before it exited or not (a
    // broken pipe is taken as the end), its output ends, and its status is waited for.
    let err = connect("exit 3");
    assert!(
        matches!(
            &err.kind,
            EngineErrorKind::Transport(TransportError::Closed { status: Some(s) })
                if s.code() == Some(3)
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("the server closed the connection (exit status: 3)"),
        "{err}"
    );
}

#[test]
fn files_keep_their_permission_bits() {
    let sandbox = Sandbox::new();
    let local = sandbox.local_file("script", 10, 0);
    fs::set_permissions(&local, fs::Permissions::from_mode(0o640)).unwrap();
    let mut engine = Engine::connect(&sandbox.openssh(), EngineConfig::default()).unwrap();
    engine
        .run(
            &[Op::Upload {
                local,
                remote: rpath("script"),
                fsync: false,
                mtime: None,
            }],
            |_, _| {},
        )
        .unwrap();
    engine.close();
    let mode = fs::metadata(sandbox.remote().join("script"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn a_server_flooding_its_stderr_still_times_out() {
    let sandbox = Sandbox::new();
    let config = EngineConfig {
        timeout: Duration::from_secs(2),
        ..EngineConfig::default()
    };
    let started = Instant::now();
    // `yes` writes lines to stderr as fast as it can; the shell keeps stdout open, silent.
    let err = Engine::connect(&sandbox.shell("yes flood >&2"), config)
        .err()
        .expect("no SFTP server there");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(err.kind, EngineErrorKind::Stalled(_)), "{err}");
}

#[test]
fn a_symlink_into_a_missing_directory_creates_it() {
    let sandbox = Sandbox::new();
    let mut engine = Engine::connect(&sandbox.openssh(), EngineConfig::default()).unwrap();
    let ops = [Op::Symlink {
        link: rpath("dists/b/main/current"),
        target: b"binary-amd64".to_vec(),
    }];
    let results = engine.run(&ops, |_, _| {}).unwrap();
    assert_eq!(results, vec![Ok(Outcome::Done)]);
    engine.close();
    assert_eq!(
        fs::read_link(sandbox.remote().join("dists/b/main/current")).unwrap(),
        std::path::Path::new("binary-amd64")
    );
}

/// `n` uploads of `size(i)` bytes to `remote(i)`, sources made in the sandbox.
fn uploads(
    sandbox: &Sandbox,
    n: usize,
    size: impl Fn(usize) -> usize,
    remote: impl Fn(usize) -> String,
) -> Vec<Op> {
    (0..n)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), size(i), i as u8),
            remote: rpath(&remote(i)),
            fsync: false,
            mtime: None,
        })
        .collect()
}

/// Each of those uploads arrived whole.
fn assert_uploaded(
    sandbox: &Sandbox,
    n: usize,
    size: impl Fn(usize) -> usize,
    remote: impl Fn(usize) -> String,
) {
    for i in 0..n {
        let got = fs::read(sandbox.remote().join(remote(i))).unwrap();
        assert!(got == pattern(size(i), i as u8), "{} differs", remote(i));
    }
}

/// SETSTATs of a size the OpenSSH server logged: one ends each upload that went in parts.
fn sizes_set(sandbox: &Sandbox) -> usize {
    let lines = sandbox.log_lines();
    lines.iter().filter(|l| l.contains("\" size ")).count()
}

/// Files uploaded by each connection.
fn files_per_connection(engine: &Engine) -> Vec<u64> {
    engine
        .connection_stats()
        .iter()
        .map(|s| s.files_uploaded)
        .collect()
}

#[test]
fn uploads_spread_over_several_connections_arrive_whole() {
    let sandbox = Sandbox::new();
    let size = |i| (i % 9) * 100_000;
    let remote = |i| format!("p/d{}/f{i}", i % 4);
    let ops = uploads(&sandbox, 90, size, remote);
    let config = EngineConfig {
        connections: 3,
        // Loopback: the others would not be opened at all.
        multi_connection_min_rtt: Duration::ZERO,
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&sandbox.openssh(), config).unwrap();
    // The first is up; the others start once its round trip is known, and join while the
    // work goes on.
    assert_eq!((engine.connections(), engine.connecting()), (1, 0));
    let mut reported = vec![false; ops.len()];
    let results = engine
        .run_spread(&ops, |i, _| {
            assert!(!reported[i], "reported twice");
            reported[i] = true;
        })
        .unwrap();
    assert!(reported.iter().all(|r| *r));
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    // Ordered work goes over the first connection.
    let rename = [Op::Rename {
        from: rpath("p/d0/f0"),
        to: rpath("p/d0/renamed"),
    }];
    assert_eq!(
        engine.run(&rename, |_, _| {}).unwrap(),
        vec![Ok(Outcome::Done)]
    );
    let per_connection = files_per_connection(&engine);
    assert_eq!(per_connection.iter().sum::<u64>(), 90);
    // The last to come up may find nothing left: the work is not held for it.
    let working = per_connection.iter().filter(|n| **n > 0).count();
    assert!(working >= 2, "{per_connection:?}");
    engine.close();
    // f0 was renamed.
    assert_uploaded(&sandbox, 90, size, |i| {
        if i == 0 {
            "p/d0/renamed".into()
        } else {
            remote(i)
        }
    });
    assert_eq!(sandbox.sessions_opened(), 3);
}

#[test]
fn large_uploads_go_in_parts_over_several_connections_and_end_exact() {
    let sandbox = Sandbox::new();
    let part = 100_000;
    let size = |i| [part * 5 / 2, part * 3, 1000, part * 2 + 1][i];
    let remote = |i| format!("pool/d{}/f{i}", i % 2);
    let mut ops = uploads(&sandbox, 4, size, remote);
    let Op::Upload { mtime, .. } = &mut ops[0] else {
        unreachable!()
    };
    *mtime = Some(1_000_000_000);
    // A longer file is where the first goes: parts do not truncate, the end must.
    fs::create_dir_all(sandbox.remote().join("pool/d0")).unwrap();
    fs::write(sandbox.remote().join("pool/d0/f0"), vec![b'x'; part * 4]).unwrap();
    let config = EngineConfig {
        connections: 3,
        multi_connection_min_rtt: Duration::ZERO,
        part_size: part as u64,
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&sandbox.openssh(), config).unwrap();
    let mut reported = vec![0; ops.len()];
    let results = engine
        .run_spread(&ops, |i, result| {
            assert_eq!(result, &Ok(Outcome::Done));
            reported[i] += 1;
            // Reported only once the file is whole: the longer one is already cut to size.
            let on_remote = fs::metadata(sandbox.remote().join(remote(i))).unwrap();
            assert_eq!(
                on_remote.len(),
                size(i) as u64,
                "{} reported early",
                remote(i)
            );
        })
        .unwrap();
    assert_eq!(reported, [1, 1, 1, 1]);
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    // Each file counts once, and all its bytes do.
    let stats = engine.connection_stats();
    assert_eq!(stats.iter().map(|s| s.files_uploaded).sum::<u64>(), 4);
    assert!(stats.iter().map(|s| s.parts_uploaded).sum::<u64>() > 3);
    let bytes: usize = (0..4).map(size).sum();
    assert_eq!(
        stats.iter().map(|s| s.bytes_uploaded).sum::<u64>(),
        bytes as u64
    );
    engine.close();
    assert_uploaded(&sandbox, 4, size, remote);
    let meta = fs::metadata(sandbox.remote().join("pool/d0/f0")).unwrap();
    assert_eq!(
        meta.modified().unwrap(),
        std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
    );
    // The end of each cut upload: one SETSTAT of its size.
    assert_eq!(sizes_set(&sandbox), 3);
}

#[test]
fn uploads_are_not_cut_where_the_round_trip_keeps_to_one_connection() {
    let sandbox = Sandbox::new();
    let (size, remote) = (|_| 250_000, |i| format!("f{i}"));
    let ops = uploads(&sandbox, 2, size, remote);
    let config = EngineConfig {
        connections: 3,
        // A threshold no loopback round trip reaches: one connection does all.
        multi_connection_min_rtt: Duration::from_secs(10),
        part_size: 100_000,
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&sandbox.openssh(), config).unwrap();
    // Not even in the first run, before the round trip is known: it is learnt first.
    for op in ops.chunks(1) {
        let results = engine.run_spread(op, |_, _| {}).unwrap();
        assert_eq!(results, vec![Ok(Outcome::Done)]);
    }
    engine.close();
    assert_eq!(sizes_set(&sandbox), 0);
    assert_eq!(sandbox.sessions_opened(), 1);
    assert_uploaded(&sandbox, 2, size, remote);
}

#[test]
fn with_one_connection_uploads_are_not_cut() {
    let sandbox = Sandbox::new();
    let (size, remote) = (|_| 250_000, |i| format!("f{i}"));
    let ops = uploads(&sandbox, 2, size, remote);
    let config = EngineConfig {
        connections: 1,
        part_size: 100_000,
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&sandbox.openssh(), config).unwrap();
    let results = engine.run_spread(&ops, |_, _| {}).unwrap();
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    engine.close();
    assert_uploaded(&sandbox, 2, size, remote);
    assert_eq!(sizes_set(&sandbox), 0);
}

#[test]
fn extra_connections_that_fail_to_come_up_are_done_without() {
    let sandbox = Sandbox::new();
    // Only the first start finds no marker: the others exit at once, as an ssh refused by
    // MaxStartups would.
    let marker = sandbox.remote().join("../started");
    let server = sandbox.shell(&format!(
        "mkdir '{}' 2>/dev/null || {{ echo refused >&2; exit 255; }}; exec {} -d '{}'",
        marker.display(),
        crate::support::OPENSSH_SFTP_SERVER,
        sandbox.remote().display()
    ));
    let config = EngineConfig {
        connections: 3,
        multi_connection_min_rtt: Duration::ZERO,
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&server, config).unwrap();
    let (size, remote) = (|_| 300_000, |i| format!("f{i}"));
    let ops = uploads(&sandbox, 20, size, remote);
    let results = engine.run_spread(&ops, |_, _| {}).unwrap();
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    // The run does not wait for them: on a loaded machine one may still be starting.
    assert_eq!(engine.connections(), 1);
    engine.close();
    assert_uploaded(&sandbox, 20, size, remote);
}

#[test]
fn below_the_round_trip_threshold_one_connection_does_all() {
    let sandbox = Sandbox::new();
    // A threshold no loopback round trip reaches, however loaded the machine.
    let config = EngineConfig {
        connections: 4,
        multi_connection_min_rtt: Duration::from_secs(10),
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&sandbox.openssh(), config).unwrap();
    let (size, remote) = (|_| 1_000_000, |i| format!("f{i}"));
    let ops = uploads(&sandbox, 8, size, remote);
    let results = engine.run_spread(&ops, |_, _| {}).unwrap();
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    assert_eq!((engine.connections(), engine.connecting()), (1, 0));
    engine.close();
    assert_eq!(sandbox.sessions_opened(), 1);
}

#[test]
fn listing_reading_links_and_comparing_on_both_servers() {
    use std::os::unix::fs::MetadataExt;
    for greenend in [false, true] {
        let sandbox = Sandbox::new();
        let server = if greenend {
            sandbox.greenend()
        } else {
            sandbox.openssh()
        };
        let remote = sandbox.remote();
        fs::create_dir_all(remote.join("d/sub")).unwrap();
        for i in 0..300 {
            fs::write(remote.join(format!("d/f{i:03}")), format!("{i}")).unwrap();
        }
        std::os::unix::fs::symlink("f001", remote.join("d/link")).unwrap();
        // Contents to compare: equal, one byte changed, shorter, longer; big enough for
        // many READs.
        let data = pattern(1_500_000, 7);
        let local = sandbox.local().join("big");
        fs::write(&local, &data).unwrap();
        let mut changed = data.clone();
        changed[1_234_567] ^= 1;
        for (name, content) in [
            ("same", &data[..]),
            ("changed", &changed[..]),
            ("shorter", &data[..1_000_000]),
        ] {
            fs::write(remote.join(name), content).unwrap();
        }
        let mut longer = data.clone();
        longer.push(0);
        fs::write(remote.join("longer"), &longer).unwrap();

        let mut ops = vec![
            Op::List { path: rpath("d") },
            Op::List {
                path: rpath("missing"),
            },
            Op::Readlink {
                path: rpath("d/link"),
            },
        ];
        for name in ["same", "changed", "shorter", "longer"] {
            ops.push(Op::Compare {
                local: local.clone(),
                remote: rpath(name),
            });
        }
        let upload_time = 1_600_000_000u32;
        ops.push(Op::Upload {
            local: local.clone(),
            remote: rpath("timed"),
            fsync: false,
            mtime: Some(upload_time),
        });
        let mut engine = Engine::connect(&server, EngineConfig::default()).unwrap();
        let results = engine.run(&ops, |_, _| {}).unwrap();
        engine.close();
        let Ok(Outcome::Listing(entries)) = &results[0] else {
            panic!("greenend={greenend}: {:?}", results[0]);
        };
        let mut names: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 302, "greenend={greenend}");
        assert!(names.contains(&"sub".to_string()) && names.contains(&"link".to_string()));
        let link = entries.iter().find(|e| e.name == b"link").unwrap();
        assert!(link.is_symlink(), "listings see links as links");
        let sub = entries.iter().find(|e| e.name == b"sub").unwrap();
        assert!(sub.is_dir());
        assert_eq!(results[1], Ok(Outcome::AlreadyAbsent));
        assert_eq!(results[2], Ok(Outcome::Target(b"f001".to_vec())));
        assert_eq!(
            &results[3..7],
            &[
                Ok(Outcome::Same),
                Ok(Outcome::Differs),
                Ok(Outcome::Differs),
                Ok(Outcome::Differs)
            ],
            "greenend={greenend}"
        );
        assert_eq!(results[7], Ok(Outcome::Done));
        let meta = fs::metadata(remote.join("timed")).unwrap();
        assert_eq!(meta.mtime(), i64::from(upload_time));
    }
}

#[test]
fn directories_are_made_below_the_root_only() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.remote().join("srv/mirror")).unwrap();
    let config = EngineConfig {
        targetdir: Some(rpath("srv/mirror")),
        ..EngineConfig::default()
    };
    let ops = [
        Op::Upload {
            local: sandbox.local_file("f", 10, 0),
            remote: rpath("srv/mirror/pool/a/f"),
            fsync: false,
            mtime: None,
        },
        Op::Upload {
            local: sandbox.local_file("g", 10, 0),
            remote: rpath("srv/elsewhere/g"),
            fsync: false,
            mtime: None,
        },
    ];
    let mut engine = Engine::connect(&sandbox.openssh(), config).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    assert_eq!(results[0], Ok(Outcome::Done));
    let mkdirs: Vec<String> = sandbox
        .log_lines()
        .into_iter()
        .filter(|l| l.starts_with("mkdir"))
        .collect();
    assert!(
        !mkdirs
            .iter()
            .any(|l| l.contains("\"srv\"") || l.contains("\"srv/mirror\"")),
        "{mkdirs:?}"
    );
    assert!(sandbox.remote().join("srv/mirror/pool/a/f").exists());
    // Outside the root nothing is made for the upload: srv/elsewhere does not exist.
    assert!(results[1].is_err(), "{:?}", results[1]);
}

#[test]
fn without_limits_the_round_trip_comes_from_a_realpath_and_decides_on_more_connections() {
    let sandbox = Sandbox::new();
    let config = EngineConfig {
        connections: 3,
        multi_connection_min_rtt: Duration::ZERO,
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&sandbox.greenend(), config).unwrap();
    assert!(
        !engine.server_info().has_limits(),
        "this test needs a server without limits"
    );
    let (size, remote) = (|_| 200_000, |i| format!("d{}/f{i}", i % 3));
    let ops = uploads(&sandbox, 60, size, remote);
    let results = engine.run_spread(&ops, |_, _| {}).unwrap();
    assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
    let per_connection = files_per_connection(&engine);
    // The others were started once the REALPATH had measured the round trip (on loopback
    // they may come up too late to find work: it is not held for them).
    assert_eq!(per_connection.len(), 3);
    assert_eq!(per_connection.iter().sum::<u64>(), 60);
    engine.close();
    assert_uploaded(&sandbox, 60, size, remote);
}

/// The packets a client wrote, as (type, path) where the packet names a path first after
/// its id (REALPATH 16, LSTAT 7, STAT 17), (type, "") for the others.
fn requests_in(bytes: &[u8]) -> Vec<(u8, String)> {
    let be32 = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        let len = be32(rest);
        let (body, tail) = rest[4..].split_at(len);
        let path = match body[0] {
            7 | 16 | 17 => {
                let n = be32(&body[5..]);
                String::from_utf8_lossy(&body[9..9 + n]).into_owned()
            }
            _ => String::new(),
        };
        out.push((body[0], path));
        rest = tail;
    }
    out
}

/// The checks of the directories the first run works in ride behind INIT: a server that
/// never answers has them all before it could have sent VERSION.
#[test]
fn the_first_directories_are_asked_about_before_version_comes() {
    let sandbox = Sandbox::new();
    let written = sandbox.remote().with_extension("written");
    let config = EngineConfig {
        timeout: Duration::from_secs(1),
        targetdir: Some(rpath("/srv/m")),
        first_dirs: vec![rpath("/srv/m/pool/main/a"), rpath("/srv/m/pool/main/b")],
        ..EngineConfig::default()
    };
    // Reads what comes and never answers (through fd 3: a job put in the background gets
    // /dev/null as its input before its own redirections).
    let server = sandbox.shell(&format!(
        "exec 3<&0; cat <&3 > '{}' & exec sleep 60 3<&-",
        written.display()
    ));
    let err = Engine::connect(&server, config).err().expect("no VERSION");
    assert!(matches!(err.kind, EngineErrorKind::Stalled(_)), "{err}");
    let (init, realpath, lstat, stat) = (1, 16, 7, 17);
    let asked = |t: u8, p: &str| (t, p.to_string());
    assert_eq!(
        requests_in(&fs::read(&written).unwrap()),
        [
            asked(init, ""),
            asked(realpath, "/srv/m"),
            asked(stat, "/srv/m"),
            asked(realpath, "/srv/m/pool"),
            asked(lstat, "/srv/m/pool"),
            asked(realpath, "/srv/m/pool/main"),
            asked(lstat, "/srv/m/pool/main"),
            asked(realpath, "/srv/m/pool/main/a"),
            asked(lstat, "/srv/m/pool/main/a"),
            asked(realpath, "/srv/m/pool/main/b"),
            asked(lstat, "/srv/m/pool/main/b"),
        ]
    );
}
