//! Nothing is written, renamed onto or removed through a remote symlinked directory, or
//! outside the target directory; a target directory that is itself a symlink is the
//! administrator's and works.

use std::fs;
use std::os::unix::fs::symlink;

use outsftphook::pipeline::{Cause, Engine, EngineConfig, Op, OpResult};
use outsftphook::remote_path::RemotePath;
use outsftphook::transport::ServerCommand;

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
        root: Some(root.clone()),
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
