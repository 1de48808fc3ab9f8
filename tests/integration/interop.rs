//! The program end to end against each real server: `mirror` seeds an empty target,
//! `verify` finds it equal, a second `mirror` sends nothing, and reprepro's own hook calls
//! push a change. The servers differ (see the README's table); what they do differently is
//! checked where it shows.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::repo::{BIN, Repo};
use crate::servers::{Kind, Server, skip};

/// A repository built without the hook: two distributions, three packages, and (with
/// `links`) the suite symlink `dists/stable -> bookworm`.
pub fn repository(links: bool) -> Repo {
    let repo = Repo::new();
    fs::write(repo.base().join("conf/options"), "").unwrap();
    let debs: Vec<String> = [("foo", 3_000), ("bar", 200_000), ("baz", 40_000)]
        .iter()
        .map(|(n, s)| repo.deb(n, "1.0", *s).display().to_string())
        .collect();
    let mut args = vec!["includedeb", "bookworm"];
    args.extend(debs.iter().map(String::as_str));
    repo.reprepro(&args).expect(0);
    repo.reprepro(&["copy", "trixie", "bookworm", "foo", "baz"])
        .expect(0);
    if links {
        repo.reprepro(&["createsymlinks"]).expect(0);
    }
    repo
}

/// The server serving the repository's temporary directory, the conf pointing at its
/// `remote/`; `None` (after saying why) when it cannot run here.
fn serve(kind: Kind, repo: &Repo, test: &str) -> Option<Server> {
    match Server::start(kind, repo.dir.path(), repo.dir.path()) {
        Ok(server) => {
            repo.set_conf(&server.conf(&repo.remote()));
            Some(server)
        }
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// Waits for the remote tree to equal the local one: rclone's write cache puts files in
/// place after their CLOSE has been answered.
fn assert_mirrored_soon(repo: &Repo, kind: Option<Kind>) {
    if kind == Some(Kind::RcloneCached) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                repo.assert_mirrored(&[]);
            }));
            if ok.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    repo.assert_mirrored(&[]);
}

/// The program's lines that are not its summary: warnings and errors.
fn complaints(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.contains(" file(s) uploaded (") && !l.contains("verify: the remote matches"))
        .collect()
}

/// What the program rightly says on a server that does not announce posix-rename
/// (paramiko's SFTPServer serves the request but leaves it out of its VERSION).
const NO_POSIX_RENAME: &str = "the server does not offer posix-rename@openssh.com: index files \
                               are replaced by remove-then-rename";

/// The complaints of a hook run that replaced index files on `kind`: none, but for the
/// remove-then-rename warning, said once, where the server has no posix-rename.
fn hook_complaints(stderr: &str, kind: Option<Kind>) -> Vec<&str> {
    let mut lines = complaints(stderr);
    if kind == Some(Kind::Paramiko) {
        let before = lines.len();
        lines.retain(|l| !l.contains(NO_POSIX_RENAME));
        assert_eq!(before - lines.len(), 1, "{stderr}");
    }
    lines
}

/// mirror, mirror again, verify, then a reprepro change through the hook.
fn round_trip(kind: Kind, links: bool, test: &str) {
    let repo = repository(links);
    let Some(server) = serve(kind, &repo, test) else {
        return;
    };
    let kept = check_round_trip(&repo, Some(kind), links, &|| server.log());
    assert_eq!(
        kept.len(),
        1,
        "{kind:?}: the first run keeps its ssh connection"
    );
}

/// The round trip on a repository whose conf names the server (`kind` when it is one of
/// [`Kind`]'s); `log` is shown when a second mirror changes something. Returns the ssh
/// master the first run kept (`sshpersist`), which every later run used: the same one,
/// alive, at the end.
fn check_round_trip(
    repo: &Repo,
    kind: Option<Kind>,
    links: bool,
    log: &dyn Fn() -> String,
) -> Vec<i32> {
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    let kept = repo.ssh_masters();
    assert_mirrored_soon(repo, kind);
    if links {
        assert_eq!(
            fs::read_link(repo.remote().join("dists/stable")).unwrap(),
            Path::new("bookworm")
        );
    }
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    assert!(
        ran.stderr()
            .contains("mirror: 0 file(s) uploaded (0 B), 0 error(s)"),
        "{kind:?}: the second mirror changed something:\n{}\n{}",
        ran.stderr(),
        log()
    );
    assert!(complaints(&ran.stderr()).is_empty(), "{}", ran.stderr());
    let ran = repo.hook(&["--basedir", ".", "verify", "--checksum"]);
    ran.expect(0);
    assert!(
        ran.stderr().contains("the remote matches"),
        "{}",
        ran.stderr()
    );

    // reprepro calls the hook with its outlog: a new package and a removal.
    fs::write(repo.base().join("conf/options"), format!("outhook {BIN}\n")).unwrap();
    let qux = repo.deb("qux", "1.0", 70_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", qux.to_str().unwrap()]);
    ran.expect(0);
    assert!(
        hook_complaints(&ran.stderr(), kind).is_empty(),
        "{}",
        ran.stderr()
    );
    repo.reprepro(&["remove", "bookworm", "bar"]).expect(0);
    assert_mirrored_soon(repo, kind);
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
    repo.hook(&["--basedir", ".", "verify"]).expect(0);
    assert_eq!(
        repo.ssh_masters(),
        kept,
        "{kind:?}: one kept connection for every run"
    );
    kept
}

#[test]
fn openssh_through_sshd_mirror_verify_and_hook() {
    let repo = repository(true);
    let Some(sshd) = crate::sshd::sshd_for(
        "openssh_through_sshd_mirror_verify_and_hook",
        repo.dir.path(),
    ) else {
        return;
    };
    repo.set_conf(&format!(
        "servername 127.0.0.1\nusername root\n\
         sshcommand ssh -F /dev/null -oIdentityFile={} -oUserKnownHostsFile={} -oPort={}\n\
         targetdir {}\n",
        sshd.client_key.display(),
        sshd.known_hosts.display(),
        sshd.port,
        repo.remote().display()
    ));
    let kept = check_round_trip(&repo, None, true, &String::new);
    assert_eq!(kept.len(), 1, "the first run keeps its ssh connection");
    assert_eq!(sshd.logins(), 1, "every run after the first used it");
}

#[test]
fn gesftpserver_mirror_verify_and_hook() {
    let repo = repository(true);
    crate::support::require(crate::support::GESFTPSERVER);
    let script = repo.dir.path().join("gesftpserver.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncd '{}' && exec {}\n",
            repo.remote().display(),
            crate::support::GESFTPSERVER
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n", script.display()));
    let kept = check_round_trip(&repo, None, true, &String::new);
    assert!(kept.is_empty(), "no ssh, nothing kept: {kept:?}");
}

#[test]
fn proftpd_mirror_verify_and_hook() {
    round_trip(Kind::Proftpd, true, "proftpd_mirror_verify_and_hook");
}

#[test]
fn asyncssh_mirror_verify_and_hook() {
    round_trip(Kind::Asyncssh, true, "asyncssh_mirror_verify_and_hook");
}

#[test]
fn paramiko_mirror_verify_and_hook() {
    round_trip(Kind::Paramiko, true, "paramiko_mirror_verify_and_hook");
}

#[test]
fn rclone_mirror_verify_and_hook() {
    round_trip(Kind::Rclone, false, "rclone_mirror_verify_and_hook");
}

#[test]
fn rclone_cached_mirror_verify_and_hook() {
    round_trip(
        Kind::RcloneCached,
        false,
        "rclone_cached_mirror_verify_and_hook",
    );
}

#[test]
fn mirror_says_when_it_falls_back_to_remove_then_rename() {
    let repo = repository(false);
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    repo.set_conf(&format!("{conf}posixrename no\n"));
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    assert!(
        ran.stderr()
            .contains("posixrename is off: index files are replaced by remove-then-rename"),
        "{}",
        ran.stderr()
    );
    repo.assert_mirrored(&[]);
}

#[test]
fn an_unreadable_remote_symlink_is_one_difference_not_the_end() {
    // asyncssh's server in a chroot fails READLINK of every relative link ("File not
    // found": it resolves the target from its own working directory).
    let test = "an_unreadable_remote_symlink_is_one_difference_not_the_end";
    let repo = repository(true);
    let Some(_server) = serve(Kind::AsyncsshChroot, &repo, test) else {
        return;
    };
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    repo.assert_mirrored(&[]);
    let bar = "pool/main/b/bar/bar_1.0_amd64.deb";
    fs::remove_file(repo.remote().join(bar)).unwrap();
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(1);
    let out = ran.stdout();
    assert!(
        out.contains(
            "dists/stable: differs: local symlink to bookworm, remote symlink that cannot be read"
        ),
        "{out}"
    );
    assert!(out.contains(&format!("{bar}: missing")), "{out}");
    // mirror makes the link anew (it cannot tell it is right) and repairs the rest.
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    repo.assert_mirrored(&[]);
}

#[test]
fn rclone_mirrors_a_repository_with_symlinks() {
    // rclone answers SYMLINK with OP_UNSUPPORTED (and lists no symlinks of the tree it
    // serves): with `symlinks auto` the suite link `dists/stable -> bookworm` becomes a
    // copy of bookworm, said once, which the hook keeps current.
    let test = "rclone_mirrors_a_repository_with_symlinks";
    for kind in [Kind::Rclone, Kind::RcloneCached] {
        let repo = repository(true);
        let Some(server) = serve(kind, &repo, test) else {
            continue;
        };
        let ran = repo.hook(&["--basedir", ".", "mirror"]);
        ran.expect(0);
        let warning = "the server refuses symlinks (SYMLINK failed: OP_UNSUPPORTED";
        assert_eq!(
            ran.stderr().matches(warning).count(),
            1,
            "{kind:?}: {}",
            ran.stderr()
        );
        repo.hook(&["--basedir", ".", "verify", "--checksum"])
            .expect(0);
        let ran = repo.hook(&["--basedir", ".", "mirror"]);
        ran.expect(0);
        assert!(
            ran.stderr()
                .contains("mirror: 0 file(s) uploaded (0 B), 0 error(s)"),
            "{kind:?}: the second mirror changed something:\n{}\n{}",
            ran.stderr(),
            server.log()
        );
        assert!(complaints(&ran.stderr()).is_empty(), "{}", ran.stderr());

        // reprepro's hook calls: a new package, then a removal (whose pool deletion the
        // old copy of stable would still name).
        fs::write(repo.base().join("conf/options"), format!("outhook {BIN}\n")).unwrap();
        let qux = repo.deb("qux", "1.0", 70_000);
        let ran = repo.reprepro(&["includedeb", "bookworm", qux.to_str().unwrap()]);
        ran.expect(0);
        assert!(complaints(&ran.stderr()).is_empty(), "{}", ran.stderr());
        repo.reprepro(&["remove", "bookworm", "bar"]).expect(0);
        assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
        let ran = repo.hook(&["--basedir", ".", "verify", "--checksum"]);
        ran.expect(0);
        let stable = repo.remote().join("dists/stable");
        let deadline = Instant::now() + Duration::from_secs(60);
        while fs::read(stable.join("Release")).ok()
            != fs::read(repo.base().join("dists/bookworm/Release")).ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            fs::read(stable.join("Release")).unwrap(),
            fs::read(repo.base().join("dists/bookworm/Release")).unwrap(),
            "{kind:?}: the copy of stable is not current"
        );
    }
}

#[test]
fn proftpd_renames_onto_a_symlinks_target_so_mirror_removes_the_link_first() {
    // posix-rename onto a symlink replaces the file the link points to on ProFTPD.
    let test = "proftpd_renames_onto_a_symlinks_target_so_mirror_removes_the_link_first";
    let repo = repository(true);
    let Some(_server) = serve(Kind::Proftpd, &repo, test) else {
        return;
    };
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    let release = repo.remote().join("dists/bookworm/Release");
    fs::remove_file(&release).unwrap();
    std::os::unix::fs::symlink("../trixie/Release", &release).unwrap();
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    // trixie's Release is untouched, bookworm's is a file again.
    repo.assert_mirrored(&[]);
}

/// Plants, in a mirror of `repo`, symlinks at the names a push of package `new` writes:
/// at the pool file, at its temporary name (dangling: some servers create a dangling
/// link's target even on an EXCL open), at `Release` and at `Release.new`. Each points to
/// a victim outside `remote/` (but inside a chroot, so that the server can reach it).
/// Returns the victims' directory.
fn plant_links(repo: &Repo) -> std::path::PathBuf {
    let victims = repo.dir.path().join("victims");
    fs::create_dir_all(&victims).unwrap();
    for name in ["pool-file", "release", "release-new"] {
        fs::write(victims.join(name), "not yours").unwrap();
    }
    let pool = repo.remote().join("pool/main/n/new");
    fs::create_dir_all(&pool).unwrap();
    let up = "../../../../../victims";
    let link = |target: String, at: &Path| std::os::unix::fs::symlink(target, at).unwrap();
    link(format!("{up}/pool-file"), &pool.join("new_1.0_amd64.deb"));
    link(
        format!("{up}/created"),
        &pool.join(".new_1.0_amd64.deb.tmp"),
    );
    let dist = repo.remote().join("dists/bookworm");
    fs::remove_file(dist.join("Release")).unwrap();
    link("../../../victims/release".into(), &dist.join("Release"));
    link(
        "../../../victims/release-new".into(),
        &dist.join("Release.new"),
    );
    victims
}

fn assert_victims_untouched(victims: &Path, server: &str) {
    let names = crate::support::names_in(victims);
    assert_eq!(names, ["pool-file", "release", "release-new"], "{server}");
    for name in names {
        assert_eq!(
            fs::read(victims.join(&name)).unwrap(),
            b"not yours",
            "{server}: {name} was written through"
        );
    }
}

#[test]
fn planted_symlinks_are_replaced_never_written_through_on_every_server() {
    let test = "planted_symlinks_are_replaced_never_written_through_on_every_server";
    // Not rclone: it shows no symlinks over SFTP at all (one planted in the directory it
    // serves cannot be seen, so cannot be avoided; rclone itself writes through it, and
    // the upload then fails on its size check).
    let kinds = [Kind::Proftpd, Kind::AsyncsshChroot, Kind::Paramiko];
    for kind in std::iter::once(None).chain(kinds.map(Some)) {
        let repo = repository(false);
        let _server = match kind {
            Some(kind) => match serve(kind, &repo, test) {
                Some(server) => Some(server),
                None => continue,
            },
            None => {
                repo.set_conf(&format!(
                    "sftpcommand /usr/libexec/gesftpserver\ntargetdir {}\n",
                    repo.remote().display()
                ));
                None
            }
        };
        let name = kind.map_or("gesftpserver", Kind::name);
        repo.hook(&["--basedir", ".", "mirror"]).expect(0);
        let victims = plant_links(&repo);
        fs::write(repo.base().join("conf/options"), format!("outhook {BIN}\n")).unwrap();
        let deb = repo.deb("new", "1.0", 30_000);
        let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
        assert_eq!(ran.code(), 0, "{name}: {}", ran.stderr());
        assert_victims_untouched(&victims, name);
        let pool_file = repo.remote().join("pool/main/n/new/new_1.0_amd64.deb");
        assert!(
            fs::symlink_metadata(&pool_file).unwrap().is_file(),
            "{name}: the pool file is not a file"
        );
        repo.assert_mirrored(&[]);
    }
}

/// Issue 11, point 3: rclone (with its write cache or without) cannot take one file written
/// at offsets through several handles. Uploads there are never cut into parts, however
/// many connections share the work.
#[test]
fn large_uploads_to_rclone_are_never_cut_into_parts() {
    let test = "large_uploads_to_rclone_are_never_cut_into_parts";
    for kind in [Kind::Rclone, Kind::RcloneCached] {
        check_large_upload_is_sent_whole(kind, test);
    }
}

/// Issue 11, point 3: a paramiko-based server wrote 20 MiB pool files sent in parts as
/// zeros or with wrong parts. It announces no `limits@openssh.com`, so nothing is cut.
#[test]
fn large_uploads_to_paramiko_are_never_cut_into_parts() {
    check_large_upload_is_sent_whole(
        Kind::Paramiko,
        "large_uploads_to_paramiko_are_never_cut_into_parts",
    );
}

/// Uploads 5 MiB to `kind` over three connections with 1 MiB parts allowed: it must
/// arrive whole, and (where the server's log shows it) through one handle.
fn check_large_upload_is_sent_whole(kind: Kind, test: &str) {
    use outsftphook::RemotePath;
    use outsftphook::{Engine, EngineConfig, Op, Outcome};
    let repo = Repo::new();
    let Some(server) = serve(kind, &repo, test) else {
        return;
    };
    let local = repo.dir.path().join("big");
    let data = crate::support::pattern(5 << 20, 9);
    fs::write(&local, &data).unwrap();
    let target = server.remote_name(&repo.remote());
    let command = server.engine_command();
    let config = EngineConfig {
        connections: 3,
        multi_connection_min_rtt: Duration::ZERO,
        part_size: 1 << 20,
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&command, config).unwrap();
    let ops = [Op::Upload {
        local,
        remote: RemotePath::new(format!("{target}/big")).unwrap(),
        fsync: false,
        mtime: None,
    }];
    let results = engine.run_spread(&ops, |_, _| {}).unwrap();
    assert_eq!(results, vec![Ok(Outcome::Done)], "{}", kind.name());
    // (The same upload to OpenSSH's server goes in parts: the engine tests show it.)
    assert_eq!(engine.stats().parts_uploaded, 0, "{}", kind.name());
    engine.close();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::read(repo.remote().join("big")).ok().as_ref() != Some(&data) {
        assert!(
            Instant::now() < deadline,
            "{}: big is not whole",
            kind.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if kind == Kind::Paramiko {
        // Its log names every OPEN: one handle wrote the temporary file, so no parts.
        let log = server.log();
        let opens = log
            .lines()
            .filter(|l| l.contains("OPEN ") && l.contains("/.big.tmp "))
            .count();
        assert_eq!(opens, 1, "{log}");
    }
}

/// A symlinked directory below the target, on servers whose REALPATH does not show it:
/// paramiko's example server only tidies the path's text, asyncssh's in a chroot answers
/// NO_SUCH_FILE for a path leading out of it. Nothing is made, written or removed there.
#[test]
fn a_symlinked_directory_is_refused_on_servers_whose_realpath_hides_it() {
    use outsftphook::RemotePath;
    use outsftphook::{Cause, Engine, EngineConfig, Op};
    let test = "a_symlinked_directory_is_refused_on_servers_whose_realpath_hides_it";
    for kind in [Kind::Paramiko, Kind::AsyncsshChroot, Kind::Proftpd] {
        let repo = Repo::new();
        // A server that cannot run here is skipped (a failure under CI); the others still run.
        let Some(server) = serve(kind, &repo, test) else {
            continue;
        };
        // Outside the remote dir, inside the served one (a chrooted server reaches it).
        let outside = repo.dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("old.deb"), "not yours").unwrap();
        std::os::unix::fs::symlink(&outside, repo.remote().join("pool")).unwrap();
        let local = repo.dir.path().join("x.deb");
        fs::write(&local, b"hello world").unwrap();
        let target = server.remote_name(&repo.remote());
        let command = server.engine_command();
        let config = EngineConfig {
            targetdir: Some(RemotePath::new(target.clone()).unwrap()),
            ..EngineConfig::default()
        };
        let mut engine = Engine::connect(&command, config).unwrap();
        let at = |rel: &str| RemotePath::new(format!("{target}/{rel}")).unwrap();
        let upload = |rel: &str| Op::Upload {
            local: local.clone(),
            remote: at(rel),
            fsync: false,
            mtime: None,
        };
        let ops = [
            upload("pool/x.deb"),
            upload("pool/sub/y.deb"),
            Op::Remove {
                path: at("pool/old.deb"),
            },
        ];
        let results = engine.run(&ops, |_, _| {}).unwrap();
        engine.close();
        for result in &results {
            let err = result.as_ref().expect_err(kind.name());
            let outside_cause = matches!(&err.cause, Cause::Outside { .. })
                || matches!(&err.cause, Cause::Directory { cause, .. }
                    if matches!(**cause, Cause::Outside { .. }));
            assert!(outside_cause, "{}: {err}", kind.name());
        }
        assert_eq!(
            crate::support::names_in(&outside),
            ["old.deb"],
            "{}",
            kind.name()
        );
    }
}
