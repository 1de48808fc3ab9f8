//! Nothing is written, renamed onto or removed through a remote symlinked directory, or
//! outside the target directory; a target directory that is itself a symlink is the
//! administrator's and works.

use std::fs;
use std::os::unix::fs::symlink;

use outsftphook::RemotePath;
use outsftphook::ServerCommand;
use outsftphook::{Cause, Engine, EngineConfig, Op, OpResult};

use crate::support::{Sandbox, names_in, pattern, rpath};

/// A sandbox whose remote `pool/main` is a symlink to `elsewhere/`, which holds a file.
fn planted(sandbox: &Sandbox) -> std::path::PathBuf {
    let elsewhere = sandbox.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("old.deb"), "not yours").unwrap();
    fs::create_dir(sandbox.remote().join("pool")).unwrap();
    symlink(&elsewhere, sandbox.remote().join("pool/main")).unwrap();
    elsewhere
}

fn run(server: &ServerCommand, config: EngineConfig, ops: &[Op]) -> Vec<OpResult> {
    let mut engine = Engine::connect(server, config).unwrap();
    let results = engine.run(ops, |_, _| {}).unwrap();
    engine.close();
    results
}

fn assert_outside(result: &OpResult) {
    let err = result.as_ref().unwrap_err();
    assert!(matches!(err.cause, Cause::Outside { .. }), "{err}");
    assert!(
        err.to_string().contains("outside the target directory"),
        "{err}"
    );
}

#[test]
fn nothing_lands_or_goes_through_a_symlinked_directory() {
    for greenend in [false, true] {
        let sandbox = Sandbox::new();
        let elsewhere = planted(&sandbox);
        let server = if greenend {
            sandbox.greenend()
        } else {
            sandbox.openssh()
        };
        let ops = [
            Op::Upload {
                local: sandbox.local_file("new.deb", 5000, 1),
                remote: rpath("pool/main/new.deb"),
                fsync: false,
                mtime: None,
            },
            Op::Upload {
                local: sandbox.local_file("old.deb", 5000, 2),
                remote: rpath("pool/main/old.deb"),
                fsync: false,
                mtime: None,
            },
        ];
        let results = run(&server, EngineConfig::default(), &ops);
        results.iter().for_each(assert_outside);
        let ops = [
            Op::Remove {
                path: rpath("pool/main/old.deb"),
            },
            Op::Rename {
                from: rpath("pool/main/x.new"),
                to: rpath("pool/main/old.deb"),
            },
            Op::Symlink {
                link: rpath("pool/main/old.deb"),
                target: b"x".to_vec(),
            },
            Op::Rmdir {
                path: rpath("pool/main/sub"),
            },
        ];
        let results = run(&server, EngineConfig::default(), &ops);
        results.iter().for_each(assert_outside);
        // The file out there is untouched, and no temporary file of ours is left there.
        assert_eq!(names_in(&elsewhere), ["old.deb"], "greenend {greenend}");
        assert_eq!(fs::read(elsewhere.join("old.deb")).unwrap(), b"not yours");
    }
}

#[test]
fn a_target_directory_that_is_a_symlink_is_the_administrators_and_works() {
    let sandbox = Sandbox::new();
    let target = sandbox.dir.path().join("target-link");
    symlink(sandbox.remote(), &target).unwrap();
    fs::create_dir_all(sandbox.remote().join("pool/main")).unwrap();
    fs::write(sandbox.remote().join("pool/main/old.deb"), "old").unwrap();
    let root = RemotePath::new(target.to_str().unwrap()).unwrap();
    let at = |rel: &str| root.join(rel.as_bytes()).unwrap();
    let config = EngineConfig {
        targetdir: Some(root.clone()),
        ..EngineConfig::default()
    };
    let ops = [
        Op::Upload {
            local: sandbox.local_file("new.deb", 5000, 3),
            remote: at("pool/main/new.deb"),
            fsync: false,
            mtime: None,
        },
        Op::Upload {
            local: sandbox.local_file("other.deb", 10, 4),
            remote: at("pool/contrib/other.deb"),
            fsync: false,
            mtime: None,
        },
        Op::Remove {
            path: at("pool/main/old.deb"),
        },
    ];
    let results = run(&sandbox.openssh(), config, &ops);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(names_in(&sandbox.remote().join("pool/main")), ["new.deb"]);
    assert_eq!(
        fs::read(sandbox.remote().join("pool/main/new.deb")).unwrap(),
        pattern(5000, 3)
    );
}

#[test]
fn mirror_delete_never_deletes_through_a_symlinked_top() {
    let repo = crate::repo::Repo::new();
    fs::write(repo.base().join("conf/options"), "").unwrap();
    let deb = repo.deb("foo", "1.0", 3_000);
    repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
        .expect(0);
    let elsewhere = repo.dir.path().join("elsewhere");
    fs::create_dir_all(elsewhere.join("main")).unwrap();
    fs::write(elsewhere.join("main/precious"), "not yours").unwrap();
    symlink(&elsewhere, repo.remote().join("pool")).unwrap();
    let ran = repo.hook(&["--basedir", ".", "mirror", "--delete"]);
    assert_eq!(
        names_in(&elsewhere.join("main")),
        ["precious"],
        "{}",
        ran.stderr()
    );
    assert_eq!(
        fs::read(elsewhere.join("main/precious")).unwrap(),
        b"not yours"
    );
    // The link is replaced by a real directory; the mirror is then complete.
    ran.expect(0);
    repo.hook(&["--basedir", ".", "verify"]).expect(0);
}

/// A server that refuses REALPATH, or LSTAT (`sftp-server -P`): symlinks are still found
/// with the other, and pushes go on; one that refuses both leaves nothing to tell by, and
/// nothing is done, said so.
#[test]
fn a_server_refusing_realpath_or_lstat_is_still_checked_by_the_other() {
    use std::os::unix::fs::PermissionsExt;
    for (refused, works) in [
        ("realpath", true),
        ("lstat", true),
        ("realpath,lstat", false),
    ] {
        let repo = crate::repo::Repo::new();
        let script = repo.dir.path().join("refusing.sh");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec /usr/lib/openssh/sftp-server -P {refused} -d '{}'\n",
                repo.remote().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        repo.set_conf(&format!("sftpcommand {}\n", script.display()));
        let elsewhere = repo.dir.path().join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::create_dir_all(repo.remote().join("dists")).unwrap();
        symlink(&elsewhere, repo.remote().join("dists/bookworm")).unwrap();
        let deb = repo.deb("foo", "1.0", 3_000);
        let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
        // The planted link is refused either way: nothing lands out there.
        assert_eq!(names_in(&elsewhere), Vec::<String>::new(), "-P {refused}");
        assert_ne!(ran.code(), 0, "-P {refused}: {}", ran.stderr());
        if works {
            assert!(
                ran.stderr().contains("outside the target directory"),
                "-P {refused}: {}",
                ran.stderr()
            );
            // Once it is a real directory, the push completes.
            fs::remove_file(repo.remote().join("dists/bookworm")).unwrap();
            repo.hook(&["--basedir", ".", "--pending"]).expect(0);
            repo.assert_mirrored(&["dists/stable"]);
        } else {
            for needle in [
                "cannot tell whether",
                "LSTAT: OP_UNSUPPORTED",
                "let the server",
            ] {
                assert!(
                    ran.stderr().contains(needle),
                    "-P {refused}: {needle}: {}",
                    ran.stderr()
                );
            }
        }
    }
}

/// Another client plants a symlink where this run found nothing and is about to make a
/// directory (a relay in front of the real server plays it, on the MKDIR's way): the MKDIR
/// fails, and the upload must not follow the link that now stands there: the OPEN into the
/// new directory waits for the MKDIR's answer (here on Green End's server;
/// across_servers.rs runs it on OpenSSH's and asyncssh's, which act in order).
#[test]
fn a_symlink_planted_in_the_way_of_a_mkdir_is_not_written_through() {
    let sandbox = Sandbox::new();
    let elsewhere = sandbox.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::create_dir(sandbox.remote().join("pool")).unwrap();
    let greenend = match sandbox.greenend() {
        ServerCommand::Direct(argv) => argv,
        other => panic!("{other:?}"),
    };
    let relay = format!(
        "{}/tests/fixtures/planting_relay.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut argv = vec!["python3".into(), relay.into(), "pool/new".into()];
    argv.push(elsewhere.clone().into_os_string());
    argv.push("--".into());
    argv.extend(greenend);
    // The relay resolves the client's relative paths from where the server starts.
    let server = sandbox.shell(&format!(
        "cd '{}' && exec \"$@\"",
        sandbox.remote().display()
    ));
    let ServerCommand::Direct(mut shell) = server else {
        unreachable!()
    };
    shell.push("relay".into());
    shell.extend(argv);
    let ops = [Op::Upload {
        local: sandbox.local_file("a.deb", 5000, 4),
        remote: rpath("pool/new/a.deb"),
        fsync: false,
        mtime: None,
    }];
    let results = run(&ServerCommand::Direct(shell), EngineConfig::default(), &ops);
    assert!(
        fs::symlink_metadata(sandbox.remote().join("pool/new"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the relay planted its link"
    );
    let err = results[0].as_ref().unwrap_err();
    let Cause::Directory { cause, .. } = &err.cause else {
        panic!("{err}");
    };
    assert!(matches!(**cause, Cause::Outside { .. }), "{err}");
    assert_eq!(
        names_in(&elsewhere),
        Vec::<String>::new(),
        "written through"
    );
}
