//! The hook end to end: a real reprepro calls the built binary after each change.

use std::fs;

use crate::repo::Repo;

/// reprepro's `createsymlinks` makes `dists/stable` without any outlog line.
const NOT_IN_OUTLOGS: &[&str] = &["dists/stable"];

#[test]
fn reprepro_changes_reach_the_remote_and_every_log_is_done() {
    let repo = Repo::new();
    repo.reprepro(&["export"]).expect(0);
    repo.assert_mirrored(&[]);
    let foo = repo.deb("foo", "1.0", 3000);
    let bar = repo.deb("bar", "2.0", 300_000);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    repo.reprepro(&["includedeb", "bookworm", bar.to_str().unwrap()])
        .expect(0);
    repo.assert_mirrored(&[]);
    repo.reprepro(&["copy", "trixie", "bookworm", "foo", "bar"])
        .expect(0);
    repo.assert_mirrored(&[]);
    let foo2 = repo.deb("foo", "1.1", 5000);
    repo.reprepro(&["includedeb", "bookworm", foo2.to_str().unwrap()])
        .expect(0);
    repo.assert_mirrored(&[]);
    repo.reprepro(&["remove", "bookworm", "bar"]).expect(0);
    repo.reprepro(&["remove", "trixie", "bar", "foo"]).expect(0);
    repo.assert_mirrored(&[]);
    // bar is gone from every distribution: its pool file and emptied directories too.
    assert!(!repo.remote().join("pool/main/b").exists());
    repo.reprepro(&["createsymlinks"]).expect(0);
    repo.reprepro(&["export"]).expect(0);
    repo.assert_mirrored(NOT_IN_OUTLOGS);
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
    assert!(repo.done_logs().len() >= 7);

    // A run with nothing to do sends nothing at all.
    repo.clear_server_log();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    assert!(repo.server_ops().is_empty(), "{:?}", repo.server_ops());
}

#[test]
fn journal_lines_say_what_completed_in_the_references_words() {
    let repo = Repo::new();
    let foo = repo.deb("foo", "1.0", 100);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    let done = repo.done_logs();
    let last = fs::read_to_string(repo.logs().join(done.last().unwrap())).unwrap();
    assert!(
        last.contains("DONE\tdone\tpool/main/f/foo/foo_1.0_amd64.deb\n"),
        "{last}"
    );
    assert!(
        last.contains("DONE\tasdotnew\tdists/bookworm/Release\n"),
        "{last}"
    );
    assert!(
        last.contains("DONE\tdone\tdists/bookworm/Release\n"),
        "{last}"
    );
    // The final rename of Release is journalled after every index of its directory.
    let pos = |needle: &str| last.find(needle).unwrap();
    assert!(
        pos("DONE\tdone\tdists/bookworm/main/binary-amd64/Packages.gz")
            < pos("DONE\tdone\tdists/bookworm/Release")
    );
}

#[test]
fn a_log_half_done_by_the_reference_hook_is_finished() {
    let repo = Repo::new();
    repo.set_conf("servername nowhere.invalid\n");
    let foo = repo.deb("foo", "1.0", 100);
    // The hook cannot reach the server: reprepro reports the failure, the log stays.
    let ran = repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    let pending = repo.outlogs();
    assert_eq!(pending.len(), 1);
    let log = repo.logs().join(&pending[0]);
    // As the reference would have left it after uploading the pool file and one index as
    // .new: the .new is on the remote and journalled asdotnew.
    let mut text = fs::read_to_string(&log).unwrap();
    text.push_str("DONE\tdone\tpool/main/f/foo/foo_1.0_amd64.deb\n");
    text.push_str("DONE\tasdotnew\tdists/bookworm/main/binary-amd64/Packages\n");
    fs::write(&log, text).unwrap();
    let remote_pool = repo.remote().join("pool/main/f/foo");
    fs::create_dir_all(&remote_pool).unwrap();
    fs::copy(
        repo.base().join("pool/main/f/foo/foo_1.0_amd64.deb"),
        remote_pool.join("foo_1.0_amd64.deb"),
    )
    .unwrap();
    let packages = "dists/bookworm/main/binary-amd64/Packages";
    fs::create_dir_all(repo.remote().join("dists/bookworm/main/binary-amd64")).unwrap();
    fs::copy(
        repo.base().join(packages),
        repo.remote().join(format!("{packages}.new")),
    )
    .unwrap();

    let server = repo.dir.path().join("server.sh");
    repo.set_conf(&format!("sftpcommand {}\n", server.display()));
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    // Only the rest was sent: the pool file was not uploaded again, Packages only renamed.
    let ops = repo.server_ops();
    assert!(
        !ops.iter().any(|l| l.contains("foo_1.0_amd64.deb")),
        "{ops:?}"
    );
    assert!(
        !ops.iter()
            .any(|l| l.starts_with(&format!("open \"{packages}.new\""))),
        "{ops:?}"
    );
    assert!(repo.outlogs().is_empty());
    // The rest of the export (sources, other indexes) came from earlier logs: export all.
    repo.reprepro(&["export"]).expect(0);
    repo.assert_mirrored(&[]);
}

#[test]
fn a_malformed_outlog_is_refused_with_file_and_line_and_nothing_is_sent() {
    let repo = Repo::new();
    fs::create_dir_all(repo.logs()).unwrap();
    let log = repo.logs().join("1795639216-evil.outlog");
    fs::write(
        &log,
        "POOLNEW\tpool/main/f/foo.deb\nPOOLNEW\tpool/../../etc/passwd\n",
    )
    .unwrap();
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(2);
    assert!(
        ran.stderr()
            .contains("1795639216-evil.outlog:2: bad pool file"),
        "{}",
        ran.stderr()
    );
    assert!(!repo.server_log().exists(), "the server was started");
    assert!(log.exists());
}

#[test]
fn a_failed_upload_exits_1_journals_only_what_completed_and_a_rerun_finishes() {
    let repo = Repo::new();
    // A file where the pool directory must be: every pool upload fails.
    fs::write(repo.remote().join("pool"), "in the way").unwrap();
    let foo = repo.deb("foo", "1.0", 100);
    let ran = repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    assert!(
        ran.stderr()
            .contains("upload pool/main/f/foo/foo_1.0_amd64.deb"),
        "{}",
        ran.stderr()
    );
    assert!(
        ran.stderr().contains("failed with exit code 1"),
        "{}",
        ran.stderr()
    );
    let pending = repo.outlogs();
    assert_eq!(pending.len(), 1);
    let text = fs::read_to_string(repo.logs().join(&pending[0])).unwrap();
    // The pool file did not arrive and is not journalled; indexes are at most up as .new.
    let done: Vec<&str> = text.lines().filter(|l| l.starts_with("DONE")).collect();
    assert!(
        done.iter().all(|l| l.starts_with("DONE\tasdotnew\t")),
        "{text}"
    );
    // Round 2 never ran: no index was published that names the missing file (the indexes
    // may wait as .new, which nothing reads).
    let published: Vec<_> = walk_files(&repo.remote().join("dists"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".new"))
        .collect();
    assert!(published.is_empty(), "{published:?}");

    fs::remove_file(repo.remote().join("pool")).unwrap();
    // The next reprepro run retries the pending log first (autoretry is the default).
    repo.reprepro(&["export"]).expect(0);
    assert!(repo.outlogs().is_empty());
    repo.assert_mirrored(&[]);
}

#[test]
fn without_autoretry_a_pending_log_blocks_the_next_run_with_advice() {
    let repo = Repo::new();
    let server = repo.dir.path().join("server.sh");
    repo.set_conf("servername nowhere.invalid\nautoretry no\n");
    let foo = repo.deb("foo", "1.0", 100);
    assert_ne!(
        repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
            .code(),
        0
    );
    repo.set_conf(&format!("sftpcommand {}\nautoretry no\n", server.display()));
    let ran = repo.reprepro(&["export"]);
    assert_ne!(ran.code(), 0);
    assert!(
        ran.stderr().contains("unprocessed earlier outlogs found"),
        "{}",
        ran.stderr()
    );
    // The advice is this repository's command, and it works.
    let advice = format!(
        "process them first ('outsftphook --basedir {} --pending'), or set 'autoretry yes' in {}",
        repo.base().display(),
        repo.base().join("conf/outsftphook.conf").display()
    );
    assert!(ran.stderr().contains(&advice), "{advice}\n{}", ran.stderr());
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
}

#[test]
fn configuration_errors_exit_2_naming_file_line_and_key() {
    let repo = Repo::new();
    repo.set_conf("servername h\nspeed fast\n");
    fs::create_dir_all(repo.logs()).unwrap();
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(2);
    assert!(
        ran.stderr()
            .contains("outsftphook.conf:2: unknown key 'speed'"),
        "{}",
        ran.stderr()
    );
}

#[test]
fn help_explains_every_flag() {
    let repo = Repo::new();
    let ran = repo.hook(&["--help"]);
    ran.expect(0);
    for flag in [
        "--verbose",
        "--pending",
        "--autoretry",
        "--no-autoretry",
        "--ignore-pending",
        "--force-order",
        "--basedir",
        "--outdir",
        "--logdir",
        "--confdir",
        "--debug-sftp",
        "--lock-timeout",
        "Exit status",
    ] {
        assert!(ran.stdout().contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_pending_log_with_relative_paths_is_finished_from_another_directory() {
    let repo = Repo::new();
    let server = repo.dir.path().join("server.sh");
    repo.set_conf("servername nowhere.invalid\n");
    let foo = repo.deb("foo", "1.0", 100);
    assert_ne!(
        repo.reprepro_relative(&["includedeb", "bookworm", foo.to_str().unwrap()])
            .code(),
        0
    );
    let log = fs::read_to_string(repo.logs().join(&repo.outlogs()[0])).unwrap();
    assert!(log.contains("\t./dists/bookworm/Release\n"), "{log}");
    repo.set_conf(&format!("sftpcommand {}\n", server.display()));
    let base = repo.base();
    repo.hook_in(
        std::path::Path::new("/"),
        &["--basedir", base.to_str().unwrap(), "--pending"],
    )
    .expect(0);
    assert!(repo.outlogs().is_empty());
}

#[test]
fn a_distsymlink_is_a_relative_symlink_below_the_targetdir() {
    let repo = Repo::new();
    let server = repo.dir.path().join("server.sh");
    repo.set_conf(&format!(
        "sftpcommand {}\ntargetdir mirror/debian\n",
        server.display()
    ));
    fs::create_dir_all(repo.remote().join("mirror/debian")).unwrap();
    fs::create_dir_all(repo.logs()).unwrap();
    let release = repo.base().join("dists/b/Release");
    fs::create_dir_all(release.parent().unwrap()).unwrap();
    fs::write(&release, "Codename: b\n").unwrap();
    fs::write(
        repo.logs().join("1795639216-sym.outlog"),
        format!(
            "BEGIN-DISTRIBUTION\tb\tdists/b\n\
             DISTSYMLINK\tdists/b\tmain/current\tbinary-amd64\n\
             DISTSYMLINK\tdists/b\tup\t../../pool\n\
             DISTFILE\tdists/b\tRelease\t{}\n\
             END-DISTRIBUTION\tb\tdists/b\n",
            release.display()
        ),
    )
    .unwrap();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    let top = repo.remote().join("mirror/debian/dists/b");
    assert_eq!(
        fs::read_link(top.join("main/current")).unwrap(),
        std::path::Path::new("binary-amd64")
    );
    assert_eq!(
        fs::read_link(top.join("up")).unwrap(),
        std::path::Path::new("../../pool")
    );
    assert_eq!(
        fs::read_to_string(top.join("Release")).unwrap(),
        "Codename: b\n"
    );
    let done = fs::read_to_string(repo.logs().join("1795639216-sym.done")).unwrap();
    assert!(
        done.contains("DONE\tsymlink done\tdists/b/main/current\n"),
        "{done}"
    );
}

#[test]
fn a_distfile_naming_a_device_is_refused_before_anything_is_sent() {
    let repo = Repo::new();
    fs::create_dir_all(repo.logs()).unwrap();
    fs::create_dir_all(repo.base().join("dists/b")).unwrap();
    for (local, needle) in [
        ("/dev/zero", "/dev/zero lies outside the dist dir"),
        ("dists/b", "dists/b is not a regular file"),
    ] {
        fs::write(
            repo.logs().join("1795639216-dev.outlog"),
            format!(
                "BEGIN-DISTRIBUTION\tb\tdists/b\nDISTFILE\tdists/b\tRelease\t{local}\n\
                 END-DISTRIBUTION\tb\tdists/b\n"
            ),
        )
        .unwrap();
        let ran = repo.hook(&["--basedir", ".", "--pending"]);
        ran.expect(2);
        assert!(
            ran.stderr()
                .contains(&format!("1795639216-dev.outlog:2: {needle}")),
            "{}",
            ran.stderr()
        );
        assert!(!repo.server_log().exists());
    }
}

#[test]
fn local_sources_outside_the_dist_dir_or_the_pool_are_refused_with_file_and_line() {
    let repo = Repo::new();
    repo.reprepro(&["export"]).expect(0);
    let foo = repo.deb("foo", "1.0", 100);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    let base = repo.base();
    let secret = repo.dir.path().join("secret");
    fs::write(&secret, "root:x:0:0\n").unwrap();
    fs::create_dir_all(repo.dir.path().join("elsewhere")).unwrap();
    fs::write(repo.dir.path().join("elsewhere/Release"), "stolen\n").unwrap();
    // A symlinked component inside the dist dir and inside the pool.
    std::os::unix::fs::symlink(
        repo.dir.path().join("elsewhere"),
        base.join("dists/bookworm/up"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, base.join("pool/main/f/foo/evil_1.0_amd64.deb")).unwrap();
    let dist = |local: &str| {
        format!(
            "BEGIN-DISTRIBUTION\tbookworm\tdists/bookworm\tstable\n\
             DISTFILE\tdists/bookworm\tRelease.gpg\t{local}\n\
             END-DISTRIBUTION\tbookworm\tdists/bookworm\tstable\n"
        )
    };
    let d = base.join("dists").display().to_string();
    let cases = [
        (
            dist("/etc/shadow"),
            2,
            "/etc/shadow lies outside the dist dir".to_owned(),
        ),
        (
            dist(&format!("{d}/bookworm/../../../secret")),
            2,
            format!("(it resolves to {})", secret.display()),
        ),
        (
            dist("./dists/../../secret"),
            2,
            "lies outside the dist dir".into(),
        ),
        (
            dist(&format!("{d}/bookworm/up/Release")),
            2,
            "elsewhere/Release)".into(),
        ),
        (
            dist(&format!("{d}/bookworm/nothere/../Release")),
            2,
            "'..' below a directory that does not exist".into(),
        ),
        (
            "POOLNEW\tpool/main/f/foo/evil_1.0_amd64.deb\n".to_owned(),
            1,
            format!("lies outside the pool {}", base.join("pool").display()),
        ),
    ];
    for (i, (text, line, needle)) in cases.iter().enumerate() {
        let name = format!("1795639216-out{i}.outlog");
        let log = repo.logs().join(&name);
        fs::write(&log, text).unwrap();
        repo.clear_server_log();
        let ran = repo.hook(&["--basedir", ".", &format!("logs/{name}")]);
        ran.expect(2);
        let err = ran.stderr();
        assert!(
            err.contains(&format!("{name}:{line}: ")) && err.contains(needle.as_str()),
            "case {i}: wanted {name}:{line}: ...{needle} in {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            repo.server_ops().is_empty(),
            "case {i}: {:?}",
            repo.server_ops()
        );
        fs::remove_file(log).unwrap();
    }
    assert!(!repo.remote().join("dists/bookworm/Release.gpg").exists());
    assert!(repo.outlogs().is_empty());
}

#[test]
fn a_pool_that_is_a_symlink_to_another_disk_is_followed() {
    let repo = Repo::new();
    let disk = repo.dir.path().join("bigdisk/pool");
    fs::create_dir_all(&disk).unwrap();
    std::os::unix::fs::symlink(&disk, repo.base().join("pool")).unwrap();
    let foo = repo.deb("foo", "1.0", 100);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    let deb = "main/f/foo/foo_1.0_amd64.deb";
    assert_eq!(
        fs::read(repo.remote().join("pool").join(deb)).unwrap(),
        fs::read(disk.join(deb)).unwrap()
    );
    assert!(repo.outlogs().is_empty());
}

#[test]
fn a_dist_dir_configured_outside_the_out_dir_is_where_sources_may_be() {
    let repo = Repo::new();
    let distdir = repo.dir.path().join("elsewhere/dists");
    let options = fs::read_to_string(repo.base().join("conf/options")).unwrap();
    fs::write(
        repo.base().join("conf/options"),
        format!("{options}distdir {}\n", distdir.display()),
    )
    .unwrap();
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    let foo = repo.deb("foo", "1.0", 100);
    // As reprepro's outhook (REPREPRO_DIST_DIR), then by hand (distdir in conf/options).
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    repo.set_conf("servername nowhere.invalid\n");
    assert_ne!(repo.reprepro(&["export", "trixie"]).code(), 0);
    repo.set_conf(&conf);
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    for release in ["bookworm/Release", "trixie/Release"] {
        assert_eq!(
            fs::read(repo.remote().join("dists").join(release)).unwrap(),
            fs::read(distdir.join(release)).unwrap()
        );
    }
    // The out dir's own dists/ is not the dist dir now.
    fs::create_dir_all(repo.base().join("dists/bookworm")).unwrap();
    fs::write(repo.base().join("dists/bookworm/Release"), "x\n").unwrap();
    fs::write(
        repo.logs().join("1795639216-old.outlog"),
        format!(
            "BEGIN-DISTRIBUTION\tbookworm\tdists/bookworm\n\
             DISTFILE\tdists/bookworm\tRelease\t{}\n\
             END-DISTRIBUTION\tbookworm\tdists/bookworm\n",
            repo.base().join("dists/bookworm/Release").display()
        ),
    )
    .unwrap();
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(2);
    assert!(
        ran.stderr().contains(&format!(
            "lies outside the dist dir {}",
            distdir.canonicalize().unwrap().display()
        )),
        "{}",
        ran.stderr()
    );
}

#[test]
fn an_asdotnew_whose_new_file_is_gone_is_uploaded_again() {
    let repo = Repo::new();
    let server = repo.dir.path().join("server.sh");
    repo.set_conf("servername nowhere.invalid\n");
    let foo = repo.deb("foo", "1.0", 100);
    assert_ne!(
        repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
            .code(),
        0
    );
    let log = repo.logs().join(&repo.outlogs()[0]);
    // The journal says every index was uploaded as .new, but none is on the remote (the
    // renames happened and their journal lines were lost, say).
    let mut text = fs::read_to_string(&log).unwrap();
    for line in text.clone().lines() {
        if let Some(rest) = line.strip_prefix("DISTFILE\t") {
            let f: Vec<&str> = rest.split('\t').collect();
            text.push_str(&format!("DONE\tasdotnew\t{}/{}\n", f[0], f[1]));
        }
    }
    fs::write(&log, text).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n", server.display()));
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(0);
    assert!(
        ran.stderr()
            .contains("Release.new is missing on the remote"),
        "{}",
        ran.stderr()
    );
    assert!(repo.outlogs().is_empty());
    repo.reprepro(&["export"]).expect(0);
    repo.assert_mirrored(&[]);
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_large_push_on_a_fast_link_stays_on_one_connection() {
    let repo = Repo::new();
    let big = repo.deb("big", "1.0", 70_000_000);
    let small = repo.deb("small", "1.0", 1_000);
    // reprepro's own run of the hook cannot reach the server; the log waits for ours.
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    repo.set_conf("servername nowhere.invalid\n");
    let added = repo.reprepro(&[
        "includedeb",
        "bookworm",
        big.to_str().unwrap(),
        small.to_str().unwrap(),
    ]);
    assert_ne!(added.code(), 0);
    repo.set_conf(&conf);
    let ran = repo.hook(&["--basedir", ".", "--pending", "-v"]);
    ran.expect(0);
    repo.assert_mirrored(&[]);
    let sessions = crate::support::sessions_opened(&repo.server_log());
    // 70 MB would justify three (one per 32 MiB), but the round trip is well under 4 ms:
    // one channel is not window-bound, more would only compete for the CPU. (A machine
    // too loaded to answer a local request within 4 ms gets more, and says why.)
    let err = ran.stderr();
    assert!(
        err.contains("connected after"),
        "the hook's log reaches us: {err}"
    );
    if err.contains("starting 2 more connection(s)") {
        eprintln!("loaded machine: {err}");
        assert_eq!(sessions, 3);
    } else {
        assert_eq!(sessions, 1, "{err}");
    }
}

#[test]
fn debug_sftp_logs_each_request_and_reply() {
    let repo = Repo::new();
    fs::write(repo.base().join("conf/options"), "").unwrap();
    let foo = repo.deb("foo", "1.0", 100);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    let ran = repo.hook(&["--basedir", ".", "--debug-sftp", "1", "mirror"]);
    ran.expect(0);
    let err = ran.stderr();
    assert!(
        err.contains("-> ") && err.contains(" OPEN pool/main/f/foo/.foo_1.0_amd64.deb.tmp"),
        "{err}"
    );
    assert!(err.contains("<- ") && err.contains(" STATUS OK"), "{err}");
}

#[test]
fn on_openssh_the_renames_go_in_one_batch_with_release_last() {
    let repo = Repo::new();
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    repo.pending_include("foo", "1.0");
    let ran = repo.hook(&["--basedir", ".", "--pending", "-v"]);
    ran.expect(0);
    // One batch for the index renames and Release (OpenSSH carries them out in order).
    assert!(
        ran.stderr().contains(
            "indexes renamed into place, then Release files renamed into place, then \
             InRelease files renamed into place:"
        ),
        "{}",
        ran.stderr()
    );
    let renames: Vec<String> = repo
        .server_ops()
        .into_iter()
        .filter(|l| l.starts_with("posix-rename"))
        .collect();
    assert!(renames.len() > 2, "{renames:?}");
    assert!(
        renames
            .last()
            .unwrap()
            .contains("dists/bookworm/Release.new"),
        "{renames:?}"
    );
    repo.assert_mirrored(&[]);

    // `inorder no`: each step waits for the one before.
    let foo2 = repo.deb("foo", "1.1", 100);
    repo.set_conf("servername nowhere.invalid\n");
    assert_ne!(
        repo.reprepro(&["includedeb", "bookworm", foo2.to_str().unwrap()])
            .code(),
        0
    );
    repo.set_conf(&format!("{conf}inorder no\n"));
    let ran = repo.hook(&["--basedir", ".", "--pending", "-v"]);
    ran.expect(0);
    let err = ran.stderr();
    assert!(
        err.contains("indexes renamed into place:")
            && err.contains("Release files renamed into place:"),
        "{err}"
    );
    assert!(!err.contains("indexes renamed into place, then"), "{err}");
    repo.assert_mirrored(&[]);
}

/// The hook as reprepro runs it: its environment, with `out` as the out dir.
fn as_outhook(repo: &Repo, log: &std::path::Path, out: &std::path::Path) -> crate::repo::Ran {
    let output = std::process::Command::new(crate::repo::BIN)
        .current_dir(repo.base())
        .arg(log)
        .env("REPREPRO_BASE_DIR", repo.base())
        .env("REPREPRO_OUT_DIR", out)
        .env("REPREPRO_LOG_DIR", repo.logs())
        .env("REPREPRO_CONFIG_DIR", repo.base().join("conf"))
        .env("REPREPRO_CONF_DIR", repo.base().join("conf"))
        .env("REPREPRO_DIST_DIR", repo.base().join("dists"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    crate::repo::Ran {
        what: format!("outsftphook {} (as reprepro's outhook)", log.display()),
        output,
    }
}

#[test]
fn a_missing_out_or_log_dir_exits_2_before_anything_is_sent() {
    let repo = Repo::new();
    let log = repo.pending_include("foo", "1.0");
    let before = fs::read(&log).unwrap();
    let missing = repo.dir.path().join("no-such-out");
    let ran = as_outhook(&repo, &log, &missing);
    ran.expect(2);
    let err = ran.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "the out dir {} (from REPREPRO_OUT_DIR) does not exist",
            missing.display()
        )) && err.contains("nothing was sent"),
        "{err}"
    );
    let ran = repo.hook(&["--basedir", ".", "--outdir", "nowhere", "--pending"]);
    ran.expect(2);
    assert!(
        ran.stderr()
            .contains("the out dir nowhere (from --outdir) does not exist"),
        "{}",
        ran.stderr()
    );
    let ran = repo.hook(&["--basedir", ".", "--logdir", "log", "--pending"]);
    ran.expect(2);
    assert!(
        ran.stderr()
            .contains("the log dir log (from --logdir) does not exist"),
        "{}",
        ran.stderr()
    );
    assert!(!repo.server_log().exists(), "the server was started");
    assert_eq!(fs::read(&log).unwrap(), before, "the log was touched");
    // The right out dir: done.
    as_outhook(&repo, &log, &repo.base()).expect(0);
    assert!(repo.outlogs().is_empty());
}

#[test]
fn after_a_failure_the_advice_names_this_repositorys_retry_command() {
    let repo = Repo::new();
    fs::write(repo.remote().join("pool"), "in the way").unwrap();
    let foo = repo.deb("foo", "1.0", 100);
    let ran = repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    let want = format!(
        "then run 'outsftphook --basedir {} --pending' (or let the next reprepro run retry)",
        repo.base().display()
    );
    assert!(ran.stderr().contains(&want), "{want}\n{}", ran.stderr());
    let status = repo.hook(&["--basedir", ".", "status"]);
    status.expect(4);
    assert!(
        status.stdout().contains(&format!(
            "1 pending; 'outsftphook --basedir {} --pending' processes them",
            repo.base().display()
        )),
        "{}",
        status.stdout()
    );
}
