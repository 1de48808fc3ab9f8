//! The hostile cases of confinement.rs, landing.rs and sources.rs (there on OpenSSH's
//! `sftp-server` and Green End's `gesftpserver`) on every other real server, reached
//! through `ssh` as users reach them: ProFTPD's mod_sftp, rclone (with and without its
//! write cache), asyncssh's server (chrooted and not) and the paramiko-based one. The
//! promises: nothing is written or removed outside the target directory or through a
//! remote symlink; an upload that fails leaves no partial file of ours; what lands is one
//! whole file as it was when its upload opened it.
//!
//! One server per kind serves a repository's temporary directory; each case works in a
//! directory of its own inside it (`CASE/remote` the target, `CASE/elsewhere` or
//! `CASE/victim` beside it: outside the target, inside a chroot, so that a server could
//! reach it). Planted links are relative, so that they lead to the same place inside a
//! chroot and out of it.
//!
//! Where a server makes the program break a promise, the case is left out of that server's
//! test and an ignored `bug_` test below shows it (see [`known_bug`]): rclone's local
//! backend shows no symlinks over SFTP yet writes through them; a server trusted to act
//! in order gets an OPEN that follows a link planted at a failed MKDIR.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::symlink;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outsftphook::{Cause, Engine, EngineConfig, Op, OpResult, RemotePath, ServerCommand};

use crate::repo::Repo;
use crate::servers::{Kind, Server, skip};
use crate::support::{names_in, pattern};

/// Waits until `landed` holds: rclone's write cache puts a file at its name some time
/// after its CLOSE was answered (and could write it through a link only then).
fn settle(kind: Kind, landed: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while kind == Kind::RcloneCached && !landed() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A hostile case: what it plants in its own directory `CASE` (with `remote/`, its target,
/// and `local/`) before the server starts (rclone reads a directory once and keeps what it
/// saw), then what it runs there and checks.
struct Hostile {
    name: &'static str,
    plant: fn(&Repo, &Path),
    run: fn(&Case),
}

/// A case at its run: its directory, its server, and the repository both live in.
struct Case<'a> {
    server: &'a Server,
    repo: &'a Repo,
    dir: PathBuf,
    /// `KIND: CASE`, for the messages.
    what: String,
}

impl Case<'_> {
    fn kind(&self) -> Kind {
        self.server.kind
    }

    fn remote(&self) -> PathBuf {
        self.dir.join("remote")
    }

    /// How the server names `rel` below the target directory.
    fn at(&self, rel: &str) -> RemotePath {
        RemotePath::new(format!("{}/{rel}", self.server.remote_name(&self.remote()))).unwrap()
    }

    fn upload(&self, name: &str, size: usize, seed: u8, rel: &str) -> Op {
        let local = self.dir.join("local").join(name);
        fs::write(&local, pattern(size, seed)).unwrap();
        Op::Upload {
            local,
            remote: self.at(rel),
            fsync: false,
            mtime: Some(1_000_000_000),
        }
    }

    fn config(&self) -> EngineConfig {
        let target = self.server.remote_name(&self.remote());
        EngineConfig {
            targetdir: Some(RemotePath::new(target).unwrap()),
            ..EngineConfig::default()
        }
    }

    fn run_through(&self, command: &ServerCommand, ops: &[Op]) -> Vec<OpResult> {
        let mut engine = Engine::connect(command, self.config()).unwrap();
        let results = engine.run(ops, |_, _| {}).unwrap();
        engine.close();
        results
    }

    fn run(&self, ops: &[Op]) -> Vec<OpResult> {
        self.run_through(&self.server.engine_command(), ops)
    }

    /// The file at `rel` below `remote/`, once it is there (see [`settle`]).
    fn landed(&self, rel: &str, want: &[u8]) -> Option<Vec<u8>> {
        let path = self.remote().join(rel);
        settle(self.kind(), || fs::read(&path).is_ok_and(|b| b == want));
        let meta = fs::symlink_metadata(&path).ok()?;
        assert!(meta.is_file(), "{}: {rel} is not a file", self.what);
        fs::read(&path).ok()
    }

    fn names(&self, rel: &str) -> Vec<String> {
        names_in(&self.remote().join(rel))
    }
}

/// `result` is refused for leading outside the target directory (itself or its directory).
fn assert_outside(result: &OpResult, what: &str) {
    let err = result.as_ref().expect_err(what);
    let outside = matches!(&err.cause, Cause::Outside { .. })
        || matches!(&err.cause, Cause::Directory { cause, .. }
            if matches!(**cause, Cause::Outside { .. }));
    assert!(outside, "{what}: {err}");
    assert!(
        err.to_string().contains("outside the target directory"),
        "{what}: {err}"
    );
}

/// confinement.rs `a_symlink_planted_in_the_way_of_a_mkdir_is_not_written_through`: the
/// relay sits between the engine and `ssh`, and plants `pool/new -> ../../elsewhere` on
/// the served disk as the MKDIR of `pool/new` passes.
const PLANTED_AT_MKDIR: Hostile = Hostile {
    name: "a_symlink_planted_in_the_way_of_a_mkdir_is_not_written_through",
    plant: |_, dir| {
        fs::create_dir(dir.join("elsewhere")).unwrap();
        fs::create_dir(dir.join("remote/pool")).unwrap();
    },
    run: |case| {
        let ServerCommand::Direct(ssh) = case.server.engine_command() else {
            unreachable!("engine_command is a command line")
        };
        let relay = format!(
            "{}/tests/fixtures/planting_relay.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut argv: Vec<OsString> = vec!["python3".into(), relay.into(), "--root".into()];
        argv.push(case.server.shown_as_root().into());
        argv.extend(["pool/new", "../../elsewhere", "--"].map(OsString::from));
        argv.extend(ssh);
        let ops = [case.upload("a.deb", 5000, 4, "pool/new/a.deb")];
        let results = case.run_through(&ServerCommand::Direct(argv), &ops);
        let what = &case.what;
        assert!(
            fs::symlink_metadata(case.remote().join("pool/new"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{what}: the relay planted its link"
        );
        let elsewhere = case.dir.join("elsewhere");
        assert_eq!(
            names_in(&elsewhere),
            Vec::<String>::new(),
            "{what}: written through ({results:?})"
        );
        assert_outside(&results[0], what);
    },
};

/// orderings/directories.rs `a_symlink_planted_where_a_new_tree_goes_is_not_written_through`:
/// an upload two new levels deep, and the relay plants `pool/new -> ../../elsewhere` as the
/// first MKDIR for it passes: on a server that acts in order that is the MKDIR of the
/// tree's stand-in (`pool/.new.*`), and the link then takes the name the tree is renamed
/// to; elsewhere it is the MKDIR of `pool/new` itself. Either way nothing goes through the
/// link, and nothing of a stand-in is left.
const PLANTED_AT_A_NEW_TREE: Hostile = Hostile {
    name: "a_symlink_planted_where_a_new_tree_goes_is_not_written_through",
    plant: |_, dir| {
        fs::create_dir(dir.join("elsewhere")).unwrap();
        fs::create_dir(dir.join("remote/pool")).unwrap();
    },
    run: |case| {
        let ServerCommand::Direct(ssh) = case.server.engine_command() else {
            unreachable!("engine_command is a command line")
        };
        let relay = format!(
            "{}/tests/fixtures/planting_relay.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut argv: Vec<OsString> = vec!["python3".into(), relay.into(), "--root".into()];
        argv.push(case.server.shown_as_root().into());
        argv.extend(["--tree", "pool/new", "../../elsewhere", "--"].map(OsString::from));
        argv.extend(ssh);
        let ops = [case.upload("a.deb", 5000, 4, "pool/new/sub/a.deb")];
        let results = case.run_through(&ServerCommand::Direct(argv), &ops);
        let what = &case.what;
        assert!(
            fs::symlink_metadata(case.remote().join("pool/new"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{what}: the relay planted its link"
        );
        assert_eq!(
            names_in(&case.dir.join("elsewhere")),
            Vec::<String>::new(),
            "{what}: written through ({results:?})"
        );
        assert_outside(&results[0], what);
        assert_eq!(case.names("pool"), ["new"], "{what}: only the link is left");
    },
};

/// confinement.rs `nothing_lands_or_goes_through_a_symlinked_directory`: the remote
/// `pool/main` is a symlink to `CASE/elsewhere`, which holds a file.
const SYMLINKED_DIRECTORY: Hostile = Hostile {
    name: "nothing_lands_or_goes_through_a_symlinked_directory",
    plant: |_, dir| {
        let elsewhere = dir.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("old.deb"), "not yours").unwrap();
        fs::create_dir(dir.join("remote/pool")).unwrap();
        symlink("../../elsewhere", dir.join("remote/pool/main")).unwrap();
    },
    run: |case| {
        let what = &case.what;
        let uploads = [
            case.upload("new.deb", 5000, 1, "pool/main/new.deb"),
            case.upload("old.deb", 5000, 2, "pool/main/old.deb"),
        ];
        let others = [
            Op::Remove {
                path: case.at("pool/main/old.deb"),
            },
            Op::Rename {
                from: case.at("pool/main/x.new"),
                to: case.at("pool/main/old.deb"),
            },
            Op::Symlink {
                link: case.at("pool/main/old.deb"),
                target: b"x".to_vec(),
            },
            Op::Rmdir {
                path: case.at("pool/main/sub"),
            },
        ];
        let results: Vec<OpResult> = [&uploads[..], &others[..]]
            .iter()
            .flat_map(|ops| case.run(ops))
            .collect();
        // The file out there is untouched, and no temporary file of ours is left there.
        let elsewhere = case.dir.join("elsewhere");
        assert_eq!(names_in(&elsewhere), ["old.deb"], "{what}: {results:?}");
        assert_eq!(
            fs::read(elsewhere.join("old.deb")).unwrap(),
            b"not yours",
            "{what}: {results:?}"
        );
        results.iter().for_each(|r| assert_outside(r, what));
    },
};

/// landing.rs `a_symlink_at_the_real_name_is_replaced_not_written_through`.
const LINK_AT_REAL_NAME: Hostile = Hostile {
    name: "a_symlink_at_the_real_name_is_replaced_not_written_through",
    plant: |_, dir| {
        fs::write(dir.join("victim"), "not yours").unwrap();
        fs::create_dir(dir.join("remote/pool")).unwrap();
        symlink("../../victim", dir.join("remote/pool/a.deb")).unwrap();
    },
    run: |case| {
        let what = &case.what;
        let results = case.run(&[case.upload("a.deb", 70_000, 1, "pool/a.deb")]);
        let landed = case.landed("pool/a.deb", &pattern(70_000, 1));
        assert_eq!(
            fs::read(case.dir.join("victim")).unwrap(),
            b"not yours",
            "{what}: {results:?}"
        );
        assert!(results[0].is_ok(), "{what}: {results:?}");
        assert!(landed == Some(pattern(70_000, 1)), "{what}: not whole");
        assert_eq!(case.names("pool"), ["a.deb"], "{what}");
    },
};

/// landing.rs `a_symlink_or_stale_file_at_the_temporary_name_is_removed_first`.
const LINK_AT_TEMPORARY_NAME: Hostile = Hostile {
    name: "a_symlink_or_stale_file_at_the_temporary_name_is_removed_first",
    plant: |_, dir| {
        fs::write(dir.join("victim"), "not yours").unwrap();
        let pool = dir.join("remote/pool");
        fs::create_dir(&pool).unwrap();
        symlink("../../victim", pool.join(".a.deb.tmp")).unwrap();
        // What a killed run left: longer than the new file, with other bytes.
        fs::write(pool.join(".b.deb.tmp"), vec![7u8; 200_000]).unwrap();
        // A dangling link: an open that followed it would create a file out there.
        symlink("../../created", pool.join(".c.deb.tmp")).unwrap();
    },
    run: |case| {
        let what = &case.what;
        let files = [("a.deb", 1000, 2), ("b.deb", 5000, 3), ("c.deb", 10, 4)];
        let ops =
            files.map(|(name, size, seed)| case.upload(name, size, seed, &format!("pool/{name}")));
        let results = case.run(&ops);
        for (name, size, seed) in files {
            let landed = case.landed(&format!("pool/{name}"), &pattern(size, seed));
            let whole = landed == Some(pattern(size, seed));
            assert!(whole, "{what}: {name} not whole: {results:?}");
        }
        let victim = fs::read(case.dir.join("victim")).unwrap();
        assert_eq!(victim, b"not yours", "{what}: {results:?}");
        assert!(
            !case.dir.join("created").exists(),
            "{what}: written through"
        );
        assert!(results.iter().all(Result::is_ok), "{what}: {results:?}");
        assert_eq!(case.names("pool"), ["a.deb", "b.deb", "c.deb"], "{what}");
    },
};

/// sources.rs: the source `local/Release` is stated as a run does before it starts, then
/// `change` replaces it, then it is uploaded: it lands whole as it is now, `now`.
fn a_changed_source_lands_whole_as_it_is_now(case: &Case, change: impl FnOnce(&Path), now: &[u8]) {
    let what = &case.what;
    let Op::Upload { local, remote, .. } = case.upload("Release", 3000, 1, "Release") else {
        unreachable!("an upload")
    };
    let ops = [Op::Upload {
        local: local.clone(),
        remote,
        fsync: true,
        mtime: None,
    }];
    let mut engine = Engine::connect(&case.server.engine_command(), case.config()).unwrap();
    assert_eq!(engine.source_sizes(&ops), [Some(3000)], "{what}");
    change(&local);
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    assert!(results[0].is_ok(), "{what}: {results:?}");
    let whole = case.landed("Release", now).as_deref() == Some(now);
    assert!(whole, "{what}: not whole as it is now");
    assert_eq!(case.names(""), ["Release"], "{what}");
}

const SOURCE_NOW_LARGER: Hostile = Hostile {
    name: "a_source_replaced_by_a_larger_file_is_sent_whole_as_it_is_now",
    plant: |_, _| {},
    run: |case| {
        let change = |local: &Path| {
            let new = local.with_extension("tmp");
            fs::write(&new, pattern(3500, 2)).unwrap();
            fs::rename(&new, local).unwrap();
        };
        a_changed_source_lands_whole_as_it_is_now(case, change, &pattern(3500, 2));
    },
};

const SOURCE_NOW_SMALLER: Hostile = Hostile {
    name: "a_source_replaced_by_a_smaller_file_is_sent_whole_as_it_is_now",
    plant: |_, _| {},
    run: |case| {
        let change = |local: &Path| fs::write(local, pattern(100, 3)).unwrap();
        a_changed_source_lands_whole_as_it_is_now(case, change, &pattern(100, 3));
    },
};

/// confinement.rs `mirror_delete_never_deletes_through_a_symlinked_top`, the program run
/// as the administrator runs it, on the repository's own `remote/` (its `pool` a symlink
/// to `elsewhere/`, beside `remote/`); the case's own directory is not used.
const MIRROR_DELETE: Hostile = Hostile {
    name: "mirror_delete_never_deletes_through_a_symlinked_top",
    plant: |repo, _| {
        fs::write(repo.base().join("conf/options"), "").unwrap();
        let deb = repo.deb("foo", "1.0", 3_000);
        repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
            .expect(0);
        let elsewhere = repo.dir.path().join("elsewhere");
        fs::create_dir_all(elsewhere.join("main")).unwrap();
        fs::write(elsewhere.join("main/precious"), "not yours").unwrap();
        symlink("../elsewhere", repo.remote().join("pool")).unwrap();
    },
    run: |case| {
        let (repo, what) = (case.repo, &case.what);
        repo.set_conf(&case.server.conf(&repo.remote()));
        let ran = repo.hook(&["--basedir", ".", "mirror", "--delete"]);
        let elsewhere = repo.dir.path().join("elsewhere/main");
        assert_eq!(
            names_in(&elsewhere),
            ["precious"],
            "{what}: {}",
            ran.stderr()
        );
        assert_eq!(
            fs::read(elsewhere.join("precious")).unwrap(),
            b"not yours",
            "{what}"
        );
        if case.kind() == Kind::AsyncsshChroot {
            // asyncssh in a chroot fails READLINK of a relative link (it resolves it from
            // its own working directory): the mirror cannot tell `pool` is a link of the
            // tree to replace, and refuses to go through it, said once.
            ran.expect(1);
            let refused = "/remote/pool resolves to a symlink on the server, outside the \
                           target directory";
            assert!(ran.stderr().contains(refused), "{what}: {}", ran.stderr());
            return;
        }
        // The link is replaced by a real directory; the mirror is then complete.
        ran.expect(0);
        repo.hook(&["--basedir", ".", "verify"]).expect(0);
    },
};

/// A target directory that is missing, or a file: the engine's first flight STATs it, and
/// every operation below it fails with that one cause, nothing made (the hook says it once;
/// see trouble.rs).
const MISSING_TARGET: Hostile = Hostile {
    name: "below_a_missing_or_file_target_nothing_is_made",
    plant: |_, dir| fs::write(dir.join("remote/afile"), "x").unwrap(),
    run: |case| {
        for target in ["nowhere", "afile"] {
            let what = format!("{}: {target}", case.what);
            let config = EngineConfig {
                targetdir: Some(case.at(target)),
                ..EngineConfig::default()
            };
            let remote = |rel: &str| case.at(&format!("{target}/{rel}"));
            let local = case.dir.join("local/a.deb");
            fs::write(&local, pattern(3000, 1)).unwrap();
            let ops = [
                Op::Upload {
                    local,
                    remote: remote("pool/main/a/a.deb"),
                    fsync: false,
                    mtime: None,
                },
                Op::Remove {
                    path: remote("pool/main/b/old.deb"),
                },
            ];
            let mut engine = Engine::connect(&case.server.engine_command(), config).unwrap();
            let results = engine.run(&ops, |_, _| {}).unwrap();
            engine.close();
            for result in &results {
                let cause = match result {
                    Err(e) => match &e.cause {
                        Cause::Directory { cause, .. } => (**cause).clone(),
                        other => other.clone(),
                    },
                    Ok(_) => panic!("{what}: {results:?}"),
                };
                assert!(matches!(cause, Cause::Target(_)), "{what}: {results:?}");
            }
            assert_eq!(case.names(""), ["afile"], "{what}");
            assert_eq!(
                fs::read(case.remote().join("afile")).unwrap(),
                b"x",
                "{what}"
            );
        }
    },
};

static EVERY_CASE: [Hostile; 9] = [
    PLANTED_AT_MKDIR,
    PLANTED_AT_A_NEW_TREE,
    SYMLINKED_DIRECTORY,
    LINK_AT_REAL_NAME,
    LINK_AT_TEMPORARY_NAME,
    SOURCE_NOW_LARGER,
    SOURCE_NOW_SMALLER,
    MIRROR_DELETE,
    MISSING_TARGET,
];

/// The cases in which a promise is broken on `kind`: the ignored tests below show them.
fn known_bug(kind: Kind, case: &Hostile) -> bool {
    match kind {
        Kind::Rclone | Kind::RcloneCached => RCLONE_WRITES_THROUGH
            .iter()
            .any(|bug| bug.name == case.name),
        Kind::Asyncssh | Kind::AsyncsshChroot | Kind::Proftpd | Kind::Paramiko => false,
    }
}

/// The cases rclone breaks: it shows no symlink over SFTP, yet its local backend follows
/// them when it writes, makes directories and removes.
const RCLONE_WRITES_THROUGH: [&Hostile; 5] = [
    &PLANTED_AT_MKDIR,
    &PLANTED_AT_A_NEW_TREE,
    &SYMLINKED_DIRECTORY,
    &LINK_AT_TEMPORARY_NAME,
    &MIRROR_DELETE,
];

/// Every entry below `dirs`, one a line: its path, and its size or where it links to.
fn tree(dirs: &[PathBuf]) -> String {
    fn walk(path: &Path, out: &mut String) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        let shown = path.display();
        if meta.is_symlink() {
            let target = fs::read_link(path).unwrap_or_default();
            out.push_str(&format!("{shown} -> {}\n", target.display()));
        } else if meta.is_dir() {
            out.push_str(&format!("{shown}/\n"));
            let mut names: Vec<PathBuf> = fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            names.sort();
            names.iter().for_each(|p| walk(p, out));
        } else {
            let bytes = fs::read(path).unwrap_or_default();
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(12)]).into_owned();
            out.push_str(&format!("{shown}: {} bytes {head:?}\n", bytes.len()));
        }
    }
    let mut out = String::new();
    dirs.iter().for_each(|dir| walk(dir, &mut out));
    out
}

/// `cases` on one server of `kind`, each planted in its own directory before the server
/// starts; every case runs whatever the others do, and the test names those that failed.
fn on_one_server(kind: Kind, test: &str, cases: &[&Hostile]) {
    let repo = Repo::new();
    let served = repo.dir.path();
    for case in cases {
        let dir = served.join("cases").join(case.name);
        fs::create_dir_all(dir.join("remote")).unwrap();
        fs::create_dir_all(dir.join("local")).unwrap();
        (case.plant)(&repo, &dir);
    }
    let server = match Server::start(kind, served, served) {
        Ok(server) => server,
        Err(why) => return skip(test, &why),
    };
    let failed: Vec<&str> = cases
        .iter()
        .filter(|case| {
            let run = Case {
                server: &server,
                repo: &repo,
                dir: served.join("cases").join(case.name),
                what: format!("{}: {}", kind.name(), case.name),
            };
            let failed = catch_unwind(AssertUnwindSafe(|| (case.run)(&run))).is_err();
            if failed {
                let dirs = [run.dir.clone(), repo.remote(), served.join("elsewhere")];
                eprintln!("{}: what is on the disk:\n{}", run.what, tree(&dirs));
            }
            failed
        })
        .map(|case| case.name)
        .collect();
    assert!(
        failed.is_empty(),
        "{}: {failed:?} failed (their panics are above); server log:\n{}",
        kind.name(),
        server.log()
    );
}

/// Every case but the known bugs on `kind`.
fn every_hostile_case(kind: Kind, test: &str) {
    let cases: Vec<&Hostile> = EVERY_CASE.iter().filter(|c| !known_bug(kind, c)).collect();
    on_one_server(kind, test, &cases);
}

#[test]
fn hostile_cases_on_proftpd() {
    every_hostile_case(Kind::Proftpd, "hostile_cases_on_proftpd");
}

#[test]
fn hostile_cases_on_rclone() {
    every_hostile_case(Kind::Rclone, "hostile_cases_on_rclone");
}

#[test]
fn hostile_cases_on_rclone_cached() {
    every_hostile_case(Kind::RcloneCached, "hostile_cases_on_rclone_cached");
}

#[test]
fn hostile_cases_on_asyncssh_chroot() {
    every_hostile_case(Kind::AsyncsshChroot, "hostile_cases_on_asyncssh_chroot");
}

#[test]
fn hostile_cases_on_asyncssh() {
    every_hostile_case(Kind::Asyncssh, "hostile_cases_on_asyncssh");
}

#[test]
fn hostile_cases_on_paramiko() {
    every_hostile_case(Kind::Paramiko, "hostile_cases_on_paramiko");
}

/// On OpenSSH's server, which the engine trusts to act in order, another client puts a
/// symlink where a directory is about to be made: the MKDIR fails (the name is taken), and
/// nothing may follow it through the link. The OPEN of the temporary file once went right
/// behind the MKDIR, followed the link, and the upload reported `Ok(Done)` with
/// `CASE/elsewhere/a.deb` written outside the target; now it goes aside, in the directory
/// above. (asyncssh's, which copies OpenSSH's extensions and so is trusted too, runs the
/// same case among its hostile cases.)
#[test]
fn a_link_planted_at_a_mkdir_is_not_written_through_on_servers_that_act_in_order() {
    planted_at_mkdir_on_openssh();
}

/// The case on OpenSSH's own server (started directly, the relay in front), whose log is
/// the request log of the bug.
fn planted_at_mkdir_on_openssh() {
    let sandbox = crate::support::Sandbox::new();
    let elsewhere = sandbox.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::create_dir(sandbox.remote().join("pool")).unwrap();
    let relay = format!(
        "{}/tests/fixtures/planting_relay.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = sandbox.shell(&format!(
        "cd '{}' && exec python3 '{relay}' pool/new ../../elsewhere -- \
         {} -e -l DEBUG3 -d '{}' 2>>'{}'",
        sandbox.remote().display(),
        crate::support::OPENSSH_SFTP_SERVER,
        sandbox.remote().display(),
        sandbox.server_log().display()
    ));
    let local = sandbox.local_file("a.deb", 5000, 4);
    let ops = [Op::Upload {
        local,
        remote: crate::support::rpath("pool/new/a.deb"),
        fsync: false,
        mtime: None,
    }];
    let mut engine = Engine::connect(&server, EngineConfig::default()).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    assert_eq!(
        names_in(&elsewhere),
        Vec::<String>::new(),
        "OpenSSH: written through ({results:?}); request log:\n{}",
        sandbox.log_lines().join("\n")
    );
}

/// Bug (rclone's, which the program cannot see round): rclone's local backend shows no
/// symlink over SFTP (it logs "Can't follow symlink without -L/--copy-links" and leaves it
/// out of listings and LSTAT), yet it follows them when it writes, makes directories or
/// removes: a MKDIR of a name that is a link to a directory succeeds, uploads below it
/// land out there (`elsewhere/a.deb`, `elsewhere/new.deb`, `elsewhere/main/f/foo/...` by
/// `mirror --delete`), a REMOVE through it removes `elsewhere/old.deb`, an upload whose
/// temporary name is a link overwrites the file it points to (the victim then holds the
/// 1000 bytes of `a.deb`; a dangling link's target is created) and only then fails
/// ("corrupted on transfer: sizes differ 1000 vs 12", 12 being the link's own size).
/// With its write cache it does the same after the CLOSE; shown here without it.
#[test]
#[ignore = "bug: rclone writes through symlinks it does not show over SFTP"]
fn bug_rclone_writes_and_removes_through_symlinks_it_does_not_show() {
    let test = "bug_rclone_writes_and_removes_through_symlinks_it_does_not_show";
    on_one_server(Kind::Rclone, test, &RCLONE_WRITES_THROUGH);
}
