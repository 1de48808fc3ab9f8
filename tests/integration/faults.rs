//! Real faults during a real push: a killed server, a killed or signalled hook, full disks
//! and forbidden directories. After each, the journal holds only the truth and a rerun
//! completes the mirror with nothing left over.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::repo::{FaultyServer, Repo, kinds_first_and_last};

/// A repository with pending logs that need all three rounds: new pool files, two
/// distributions' indexes, and pool deletions of files the remote already has.
fn pending_push() -> Repo {
    let repo = Repo::new();
    for (name, size) in [("old", 40_000), ("gone", 3_000)] {
        let deb = repo.deb(name, "1.0", size);
        repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
            .expect(0);
    }
    repo.reprepro(&["copy", "trixie", "bookworm", "old", "gone"])
        .expect(0);
    repo.assert_mirrored(&[]);
    // From here on the server cannot be reached: the logs pile up.
    repo.set_conf("servername nowhere.invalid\n");
    for (name, size) in [("a", 500), ("b", 70_000), ("c", 300_000), ("d", 2_000)] {
        let deb = repo.deb(name, "1.0", size);
        assert_ne!(
            repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
                .code(),
            0
        );
    }
    assert_ne!(
        repo.reprepro(&["copy", "trixie", "bookworm", "a", "c"])
            .code(),
        0
    );
    assert_ne!(
        repo.reprepro(&["remove", "bookworm", "gone", "old"]).code(),
        0
    );
    assert_ne!(
        repo.reprepro(&["remove", "trixie", "gone", "old"]).code(),
        0
    );
    assert!(repo.outlogs().len() >= 5, "{:?}", repo.outlogs());
    repo
}

/// Every DONE line names something that is really on the remote (or really gone).
fn assert_journal_true(repo: &Repo) {
    for name in repo.outlogs().iter().chain(repo.done_logs().iter()) {
        let text = fs::read_to_string(repo.logs().join(name)).unwrap();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f[0] != "DONE" {
                continue;
            }
            let remote = repo.remote().join(f[2]);
            match f[1] {
                "done" => {
                    if remote.exists() {
                        // Content is checked where it matters: by the final comparison.
                        continue;
                    }
                    // Done, then deleted by a later log's finished deletion: fine only if
                    // the local one is gone too.
                    assert!(
                        !repo.base().join(f[2]).exists(),
                        "{name}: {line}: not on the remote"
                    );
                }
                // The .new was uploaded; it is gone only once renamed into place.
                "asdotnew" => assert!(
                    remote
                        .with_file_name(format!(
                            "{}.new",
                            remote.file_name().unwrap().to_string_lossy()
                        ))
                        .exists()
                        || remote.exists(),
                    "{name}: {line}: neither the .new nor the file is on the remote"
                ),
                // Gone from the remote, unless a later log put it back (then it is local).
                "deleted" | "already deleted" => assert!(
                    !remote.exists() || repo.base().join(f[2]).exists(),
                    "{name}: {line}: still on the remote"
                ),
                _ => {}
            }
        }
    }
}

#[test]
fn killing_the_server_at_any_point_loses_nothing_and_a_rerun_completes() {
    let repo = pending_push();
    repo.save_state();
    // Measure the whole push once.
    repo.use_faulty_server(-1, "kill-server");
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
    let total = repo.bytes_sent() as i64;
    assert!(total > 350_000, "{total}");

    // At least 20 points spread over the whole push, all three rounds included; the last
    // ones fall among the final renames and deletions, which are small.
    let mut points: Vec<i64> = (1..=20).map(|k| total * k / 21).collect();
    points.extend([
        1,
        9,
        100,
        total - 2000,
        total - 500,
        total - 100,
        total - 10,
        total - 1,
    ]);
    // A push's byte count varies by a few bytes from run to run (what the server's replies
    // make the engine send); a point past the end of a shorter push kills nothing, and that
    // push must then simply succeed. Nearly every point must really kill the server.
    let mut missed = Vec::new();
    for after in points {
        repo.restore_state();
        repo.use_faulty_server(after, "kill-server");
        let ran = repo.hook(&["--basedir", ".", "--pending", "-v"]);
        let sent = repo.bytes_sent() as i64;
        if sent < after {
            ran.expect(0);
            missed.push((after, sent));
        } else {
            assert_ne!(
                ran.code(),
                0,
                "killed after {after} of {total} bytes, yet exit 0"
            );
        }
        assert_journal_true(&repo);
        repo.use_server();
        let rerun = repo.hook(&["--basedir", ".", "--pending", "-v"]);
        rerun.expect(0);
        if std::env::var_os("DEBUG_FAULTS").is_some() {
            eprintln!(
                "=== after {after}\n--- killed run\n{}{}\n--- rerun\n{}{}",
                ran.stdout(),
                ran.stderr(),
                rerun.stdout(),
                rerun.stderr()
            );
            for l in repo.done_logs() {
                eprintln!(
                    "--- {l}\n{}",
                    fs::read_to_string(repo.logs().join(&l)).unwrap()
                );
            }
        }
        repo.assert_mirrored(&[]);
        assert!(
            repo.outlogs().is_empty(),
            "after {after}: {:?}",
            repo.outlogs()
        );
    }
    assert!(
        missed.len() <= 2,
        "points past the end of their push: {missed:?}"
    );
}

/// A killed run, then a rerun: the killed one fails, its journal holds only the truth, the
/// rerun completes the mirror with nothing left over. `debug` names the point. Returns
/// whether the killed run recorded hidden directories it may have left.
fn killed_then_rerun(repo: &Repo, after: i64, debug: &str) -> bool {
    let push = ["--basedir", ".", "--pending", "-v"];
    killed_then_rerun_with(repo, after, debug, &push, &FaultyServer::OpenSsh)
}

/// [`killed_then_rerun`] of the command `args` (a push: its logs must end done) on
/// `server`, killed and then again for the rerun.
fn killed_then_rerun_with(
    repo: &Repo,
    after: i64,
    debug: &str,
    args: &[&str],
    server: &FaultyServer,
) -> bool {
    repo.restore_state();
    repo.use_faulty(after, "kill-server", server);
    let pushing = args.contains(&"--pending");
    let ran = repo.hook(args);
    repo.wait_for_faulty_server();
    assert_ne!(ran.code(), 0, "killed {debug}, yet exit 0");
    assert_journal_true(repo);
    let leftovers = repo.logs().join("outsftphook.leftovers");
    let recorded = leftovers.exists();
    repo.use_faulty(-1, "kill-server", server);
    let rerun = repo.hook(args);
    if std::env::var_os("DEBUG_FAULTS").is_some() {
        eprintln!(
            "=== {debug}\n--- killed run\n{}{}\n--- rerun\n{}{}",
            ran.stdout(),
            ran.stderr(),
            rerun.stdout(),
            rerun.stderr()
        );
    }
    rerun.expect(0);
    repo.assert_mirrored(&[]);
    assert!(
        !pushing || repo.outlogs().is_empty(),
        "{debug}: {:?}",
        repo.outlogs()
    );
    assert!(!leftovers.exists(), "{debug}: the rerun left {leftovers:?}");
    recorded
}

/// Byte offsets are blind to what they cut: here the server dies right before each kind
/// of request the push sends, at the first and the last of every run of one kind (the
/// MKDIRs of a new tree and its RENAME, the OPENs aside, the renames into place, the
/// guard's links, the switch's renames, their links' removal, the deletions, ...). Killed
/// between a new tree's MKDIRs and its RENAME, a run leaves the tree's hidden stand-in:
/// it says so in the log dir, and the rerun removes it.
#[test]
fn killing_the_server_before_every_kind_of_request_loses_nothing() {
    let repo = pending_push();
    repo.save_state();
    repo.use_faulty_server(-1, "kill-server");
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
    let points = kinds_first_and_last(&repo.packets_sent());
    assert!(points.len() >= 12, "{points:?}");
    let mut stand_ins_left = 0;
    for (at, kind, k) in points {
        let debug = format!("before request {k} (type {kind}, byte {at})");
        stand_ins_left += usize::from(killed_then_rerun(&repo, at, &debug));
    }
    assert!(
        stand_ins_left > 0,
        "no point fell between a tree's MKDIRs and its RENAME"
    );
}

/// `mirror --delete --checksum` of a mirror that is behind (new packages in new
/// directories, others gone), its server killed right before every kind of request: each
/// run fails, and the next one makes the mirror equal to the repository, nothing left over.
#[test]
fn killing_the_server_during_mirror_before_every_kind_of_request_loses_nothing() {
    let repo = pending_push();
    repo.save_state();
    // --checksum: a file a killed run left in its old version may have the new one's size
    // and time (reprepro rewrote it within the same second), which only its content tells.
    let args = ["--basedir", ".", "mirror", "--delete", "--checksum"];
    repo.use_faulty_server(-1, "kill-server");
    repo.hook(&args).expect(0);
    repo.assert_mirrored(&[]);
    let points = kinds_first_and_last(&repo.packets_sent());
    assert!(points.len() >= 8, "{points:?}");
    for (at, kind, k) in points {
        let debug = format!("mirror, before request {k} (type {kind}, byte {at})");
        killed_then_rerun_with(&repo, at, &debug, &args, &FaultyServer::OpenSsh);
    }
}

/// The same push on Green End's server, which is not trusted to act in order (it offers no
/// `limits@openssh.com`): every step the plain way (a MKDIR a level at a time, no file
/// aside, each switch step answered before the next), killed right before every kind of
/// request.
#[test]
fn killing_gesftpserver_before_every_kind_of_request_loses_nothing() {
    crate::support::require(crate::support::GESFTPSERVER);
    let repo = pending_push();
    repo.save_state();
    let server = FaultyServer::GreenEnd;
    repo.use_faulty(-1, "kill-server", &server);
    let push = ["--basedir", ".", "--pending", "-v"];
    repo.hook(&push).expect(0);
    repo.assert_mirrored(&[]);
    let points = kinds_first_and_last(&repo.packets_sent());
    assert!(points.len() >= 8, "{points:?}");
    for (at, kind, k) in points {
        let debug = format!("gesftpserver, before request {k} (type {kind}, byte {at})");
        killed_then_rerun_with(&repo, at, &debug, &push, &server);
    }
}

#[test]
fn killing_the_hook_itself_loses_nothing() {
    let repo = pending_push();
    repo.use_faulty_server(200_000, "kill-hook");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    assert_eq!(
        ran.output.status.code(),
        None,
        "the hook should have died by SIGKILL"
    );
    // What the killed hook had sent is still being carried out.
    repo.wait_for_faulty_server();
    assert_journal_true(&repo);
    repo.use_server();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
    assert!(repo.outlogs().is_empty());
}

#[test]
fn sigterm_stops_the_hook_cleanly_with_a_summary() {
    let repo = pending_push();
    repo.save_state();
    repo.use_faulty_server(-1, "kill-server");
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    let total = repo.bytes_sent() as i64;
    // In the pool round, and in the last requests (deletions, pruning).
    for after in [200_000, total - 500, total - 60, total - 17, total - 1] {
        repo.restore_state();
        repo.use_faulty_server(after, "term-hook");
        let ran = repo.hook(&["--basedir", ".", "--pending"]);
        if ran.code() == 0 {
            // The signal came after the last request: all must be done, truly.
            repo.assert_mirrored(&[]);
            assert!(repo.outlogs().is_empty());
        } else {
            ran.expect(1);
            assert!(
                ran.stderr().contains("interrupted by SIGTERM"),
                "{}",
                ran.stderr()
            );
            assert!(
                !repo.outlogs().is_empty(),
                "after {after}: a cut-off run left no log pending"
            );
        }
        assert_journal_true(&repo);
        repo.use_server();
        repo.hook(&["--basedir", ".", "--pending"]).expect(0);
        repo.assert_mirrored(&[]);
        assert!(repo.outlogs().is_empty());
    }
    // The first point stopped a run in full swing: the summary says what to do.
    repo.restore_state();
    repo.use_faulty_server(200_000, "term-hook");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    assert!(
        ran.stderr().contains("run again to finish"),
        "{}",
        ran.stderr()
    );
}

#[test]
fn sigterm_ends_a_stalled_push_within_seconds() {
    let repo = pending_push();
    // The link goes silent in the middle of the pool uploads; the stall timeout (120 s)
    // is far away when SIGTERM comes.
    repo.use_faulty_server(200_000, "stall-term-hook");
    let started = std::time::Instant::now();
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    let took = started.elapsed();
    ran.expect(1);
    assert!(
        took < std::time::Duration::from_secs(30),
        "took {took:?}: {}",
        ran.stderr()
    );
    assert!(
        ran.stderr().contains("interrupted by SIGTERM"),
        "{}",
        ran.stderr()
    );
    // What it did is said all the same.
    assert!(
        ran.stderr().contains(" file(s) uploaded ("),
        "{}",
        ran.stderr()
    );
    assert_journal_true(&repo);
    repo.use_server();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
}

/// Points the conf at sftp-server started by `prefix` (a shell command line before it).
fn use_server_with(repo: &Repo, prefix: &str) {
    let script = repo.dir.path().join("limited.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n{prefix} /usr/lib/openssh/sftp-server -d '{}'\n",
            repo.remote().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n", script.display()));
}

#[test]
fn a_file_size_limit_on_the_server_fails_the_push_truthfully() {
    let repo = pending_push();
    // 100 blocks: the 300 kB package cannot be written whole.
    use_server_with(&repo, "ulimit -f 100; exec");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    if std::env::var_os("DEBUG_FAULTS").is_some() {
        eprintln!("{}", ran.stderr());
    }
    assert!(ran.stderr().contains("c_1.0_amd64.deb"), "{}", ran.stderr());
    assert_journal_true(&repo);
    // Nothing that names the missing file was published.
    assert!(!repo.remote_index_names("c"));
    repo.use_server();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
}

#[test]
fn a_low_descriptor_limit_caps_the_files_open_instead_of_failing_them() {
    let repo = Repo::new();
    let pool = repo.base().join("pool/main/m/many");
    fs::create_dir_all(&pool).unwrap();
    for i in 0..400 {
        fs::write(pool.join(format!("f{i}")), vec![i as u8; 30_000]).unwrap();
    }
    if !nix::unistd::geteuid().is_root() {
        crate::support::skip(
            "a_low_descriptor_limit",
            "needs root to give the server more descriptors than the hook",
        );
        return;
    }
    // The server gets plenty (it inherits the hook's limit otherwise, and says so in its
    // limits); the hook 150, soft and hard, and is told to keep 1024 files open: 400 sources
    // held open at once would run out.
    use_server_with(&repo, "ulimit -n 4096; exec");
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    repo.set_conf(&format!("{conf}maxopenfiles 1024\n"));
    let ran = repo.hook_after("ulimit -n 150", &["--basedir", ".", "mirror"]);
    ran.expect(0);
    for i in 0..400 {
        assert!(
            fs::read(repo.remote().join(format!("pool/main/m/many/f{i}"))).unwrap()
                == vec![i as u8; 30_000]
        );
    }
    // The hook too, into a directory it has yet to find missing: the uploads waiting for
    // its verdict hold their sources open as well, and count.
    fs::remove_dir_all(repo.remote().join("pool")).unwrap();
    fs::create_dir_all(repo.logs()).unwrap();
    let lines: String = (0..400)
        .map(|i| format!("POOLNEW\tpool/main/m/many/f{i}\n"))
        .collect();
    fs::write(repo.logs().join("1700000000-abcdef.outlog"), lines).unwrap();
    let ran = repo.hook_after("ulimit -n 150", &["--basedir", ".", "--pending"]);
    ran.expect(0);
    for i in 0..400 {
        let got = fs::read(repo.remote().join(format!("pool/main/m/many/f{i}"))).unwrap();
        assert!(got == vec![i as u8; 30_000], "f{i}");
    }
}

#[test]
fn an_unprivileged_server_user_fails_with_permission_denied_then_completes() {
    if !nix::unistd::geteuid().is_root() {
        crate::support::skip(
            "an_unprivileged_server_user",
            "needs root to run the server as another user",
        );
        return;
    }
    let repo = pending_push();
    // nobody must reach the remote directory, but may not write below pool/.
    fs::set_permissions(repo.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    use_server_with(&repo, "exec runuser -u nobody --");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    assert!(
        ran.stderr().contains("PERMISSION_DENIED"),
        "{}",
        ran.stderr()
    );
    assert!(
        ran.stderr()
            .contains("pool/main: the server refuses changes in this directory"),
        "{}",
        ran.stderr()
    );
    assert_journal_true(&repo);
    assert!(!repo.outlogs().is_empty(), "the logs stay pending");
    // The administrator hands the tree to the server's user; the next run completes.
    let status = std::process::Command::new("chown")
        .args(["-R", "nobody"])
        .arg(repo.remote())
        .status()
        .unwrap();
    assert!(status.success());
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
}

#[test]
fn hostile_outlogs_are_refused_with_file_and_line_and_nothing_is_sent() {
    let begin = "BEGIN-DISTRIBUTION\tb\tdists/b\n";
    let end = "END-DISTRIBUTION\tb\tdists/b\n";
    let huge = format!("POOLNEW\tpool/{}\n", "a".repeat(100_000));
    let cases: Vec<(Vec<u8>, usize, &str)> = vec![
        (
            b"POOLNEW\tpool/../../etc/passwd\n".to_vec(),
            1,
            "'..' component",
        ),
        (b"POOLNEW\t/etc/passwd\n".to_vec(), 1, "absolute path"),
        (b"POOLNEW\tpool/main/./x.deb\n".to_vec(), 1, "'.' component"),
        (
            b"POOLDELETE\tdists/b/Release\n".to_vec(),
            1,
            "not below pool/",
        ),
        (b"POOLNEW\tpool/a\0b\n".to_vec(), 1, "NUL"),
        (huge.into_bytes(), 1, "longer than"),
        (
            b"\x7fELF\x02\x01\x01\0\0\0\n".to_vec(),
            1,
            "unknown keyword",
        ),
        (b"POOLNEW\tpool/\xc3\x28\n".to_vec(), 1, "not valid UTF-8"),
        (
            b"POOLNEW\tpool/a/b.deb".to_vec(),
            1,
            "does not end in a newline",
        ),
        (
            b"DISTFILE\tdists/b\tRelease\t/etc/passwd\n".to_vec(),
            1,
            "outside BEGIN/END",
        ),
        (
            format!("{begin}DISTFILE\tdists/b\tRelease\t/dev/zero\n{end}").into_bytes(),
            2,
            "/dev/zero lies outside the dist dir",
        ),
        (
            format!("{begin}DISTFILE\tdists/b\tRelease\t/etc\n{end}").into_bytes(),
            2,
            "/etc lies outside the dist dir",
        ),
        (
            format!("{begin}DISTFILE\tdists/b\t../../../etc/x\t/etc/passwd\n{end}").into_bytes(),
            2,
            "'..' component",
        ),
        (
            format!("{begin}DISTSYMLINK\tdists/b\tx\t../../../../etc\n{end}").into_bytes(),
            2,
            "leads out of the repository",
        ),
        (
            format!("{begin}DISTSYMLINK\tdists/b\tx\t/etc\n{end}").into_bytes(),
            2,
            "is absolute",
        ),
        (
            b"BEGIN-DISTRIBUTION\tb\tdists/../..\n".to_vec(),
            1,
            "'..' component",
        ),
        (
            format!("{begin}DISTFILE\tdists/c\tRelease\t/etc/passwd\n{end}").into_bytes(),
            2,
            "but the open section is dists/b",
        ),
        (b"DONE\tdone\t../../x\n".to_vec(), 1, "'..' component"),
    ];
    let repo = Repo::new();
    fs::create_dir_all(repo.logs()).unwrap();
    for (i, (bytes, line, needle)) in cases.iter().enumerate() {
        let name = format!("1795639216-hostile{i:02}.outlog");
        let log = repo.logs().join(&name);
        fs::write(&log, bytes).unwrap();
        let ran = repo.hook(&["--basedir", ".", &format!("logs/{name}")]);
        ran.expect(2);
        let want = format!("{name}:{line}: ");
        assert!(
            ran.stderr().contains(&want) && ran.stderr().contains(needle),
            "case {i}: wanted {want}...{needle} in {}",
            ran.stderr()
        );
        assert!(
            !repo.server_log().exists(),
            "case {i}: the server was started"
        );
        assert_eq!(fs::read_dir(repo.remote()).unwrap().count(), 0);
        fs::remove_file(log).unwrap();
    }
}
