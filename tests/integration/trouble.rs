//! When things go wrong, an administrator's view: a missing target directory, a missing
//! local directory, and the exit statuses a monitoring check reads (0 fine, 1 failed or
//! differs, 2 misconfigured, 3 unreachable, 4 pending, 75 busy).

use std::fs;

use crate::repo::Repo;

/// The conf of `repo`'s normal server, with `targetdir` below its `remote/` set to `dir`.
fn with_targetdir(repo: &Repo, dir: &str) {
    repo.set_conf(&format!(
        "sftpcommand {}\ntargetdir {}\n",
        repo.dir.path().join("server.sh").display(),
        repo.remote().join(dir).display()
    ));
}

/// The lines of `text` that say something (not empty).
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Everything below `remote/`.
fn remote_entries(repo: &Repo) -> Vec<String> {
    crate::support::names_in(&repo.remote())
}

#[test]
fn a_missing_targetdir_is_said_once_for_mirror_and_verify_and_nothing_is_sent() {
    let repo = crate::interop::repository(true);
    with_targetdir(&repo, "nowhere");
    for command in ["mirror", "verify"] {
        repo.clear_server_log();
        let ran = repo.hook(&["--basedir", ".", command]);
        ran.expect(2);
        let stderr = ran.stderr();
        assert_eq!(lines(&stderr).len(), 1, "{command}: {stderr}");
        assert!(stderr.contains("nowhere does not exist"), "{stderr}");
        assert!(stderr.contains("create it"), "{stderr}");
        assert!(
            !stderr.contains("mirror\n") || command == "mirror",
            "{stderr}"
        );
        assert_eq!(remote_entries(&repo), Vec::<String>::new(), "{command}");
        let ops = repo.server_ops();
        assert!(
            !ops.iter()
                .any(|l| l.contains("mkdir") || l.contains("open")),
            "{command}: {ops:#?}"
        );
    }
}

#[test]
fn a_missing_targetdir_fails_the_hook_once_with_2_and_keeps_the_log_pending() {
    let repo = Repo::new();
    with_targetdir(&repo, "nowhere");
    let deb = repo.deb("foo", "1.0", 3_000);
    // reprepro goes on (the outhook's status is its own to report); the log stays.
    let _ = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_eq!(repo.outlogs().len(), 1);
    repo.clear_server_log();
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(2);
    let stderr = ran.stderr();
    assert_eq!(lines(&stderr).len(), 1, "{stderr}");
    assert!(stderr.contains("nowhere does not exist"), "{stderr}");
    assert_eq!(remote_entries(&repo), Vec::<String>::new());
    assert_eq!(repo.outlogs().len(), 1, "still pending");
    // The engine's first flight asked (no round trip before it), and nothing was made.
    let ops = repo.server_ops();
    assert!(
        !ops.iter()
            .any(|l| l.contains("mkdir") || l.contains("open") || l.contains("remove")),
        "{ops:#?}"
    );
    // A target that is a file is said so, once, as well.
    fs::write(repo.remote().join("afile"), "x").unwrap();
    with_targetdir(&repo, "afile");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(2);
    assert_eq!(lines(&ran.stderr()).len(), 1, "{}", ran.stderr());
    assert!(ran.stderr().contains("afile on "), "{}", ran.stderr());
    assert!(
        ran.stderr().contains("is not a directory"),
        "{}",
        ran.stderr()
    );
    assert_eq!(fs::read(repo.remote().join("afile")).unwrap(), b"x");
    assert_eq!(repo.outlogs().len(), 1, "still pending");
}

#[test]
fn a_targetdir_that_is_a_file_is_said_so() {
    let repo = crate::interop::repository(false);
    fs::write(repo.remote().join("afile"), "x").unwrap();
    with_targetdir(&repo, "afile");
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(2);
    assert!(
        ran.stderr().contains("is not a directory"),
        "{}",
        ran.stderr()
    );
    assert_eq!(fs::read(repo.remote().join("afile")).unwrap(), b"x");
}

#[test]
fn mirror_and_verify_of_a_directory_missing_locally_exit_2_naming_it() {
    let repo = crate::interop::repository(false);
    for command in ["mirror", "verify"] {
        let ran = repo.hook(&["--basedir", ".", command, "nosuchdir"]);
        ran.expect(2);
        assert!(ran.stderr().contains("nosuchdir"), "{}", ran.stderr());
        // One named that exists does not excuse one that does not.
        let ran = repo.hook(&["--basedir", ".", command, "pool", "nosuchdir"]);
        ran.expect(2);
        assert!(ran.stderr().contains("nosuchdir"), "{}", ran.stderr());
    }
    assert_eq!(remote_entries(&repo), Vec::<String>::new());
}

#[test]
fn verify_tells_same_differs_and_unreachable_apart() {
    let repo = crate::interop::repository(false);
    repo.hook(&["--basedir", ".", "verify"]).expect(1);
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    repo.hook(&["--basedir", ".", "verify"]).expect(0);
    fs::remove_dir_all(repo.remote().join("dists")).unwrap();
    repo.hook(&["--basedir", ".", "verify"]).expect(1);
    repo.set_conf("sftpcommand /bin/false\n");
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(3);
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(3);
}

#[test]
fn the_hook_says_1_for_an_unreachable_server_as_reprepro_expects() {
    let repo = Repo::new();
    repo.set_conf("sftpcommand /bin/false\n");
    let deb = repo.deb("foo", "1.0", 3_000);
    let _ = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_eq!(repo.outlogs().len(), 1);
    repo.hook(&["--basedir", ".", "--pending"]).expect(1);
}

#[test]
fn status_says_4_while_logs_are_pending_and_0_once_pushed() {
    let repo = Repo::new();
    repo.set_conf("sftpcommand /bin/false\n");
    let deb = repo.deb("foo", "1.0", 3_000);
    let _ = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    let ran = repo.hook(&["--basedir", ".", "status"]);
    ran.expect(4);
    assert!(ran.stdout().contains("1 pending"), "{}", ran.stdout());
    repo.use_server();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.hook(&["--basedir", ".", "status"]).expect(0);
}

/// Points `repo`'s conf at OpenSSH's sftp-server run as `nobody`, so that directory
/// permissions hold (the tests may run as root); `remote/` is writable by everyone.
/// False (after saying why) when that cannot be done here.
fn serve_as_nobody(repo: &Repo, test: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        crate::support::skip(test, "running the server as nobody needs root and setpriv");
        return false;
    }
    fs::set_permissions(repo.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(repo.remote(), fs::Permissions::from_mode(0o777)).unwrap();
    let script = repo.dir.path().join("nobody.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec setpriv --reuid=nobody --regid=nogroup --clear-groups \
             /usr/lib/openssh/sftp-server -e -d '{}'\n",
            repo.remote().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n", script.display()));
    true
}

#[test]
fn a_directory_that_refuses_is_named_once_not_each_file_below_it() {
    use std::os::unix::fs::PermissionsExt;
    let repo = crate::interop::repository(false);
    let test = "a_directory_that_refuses_is_named_once_not_each_file_below_it";
    if !serve_as_nobody(&repo, test) {
        return;
    }
    let pool = repo.remote().join("pool");
    fs::create_dir(&pool).unwrap();
    fs::set_permissions(&pool, fs::Permissions::from_mode(0o555)).unwrap();
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(1);
    let stderr = ran.stderr();
    let said: Vec<&str> = lines(&stderr);
    // One line for the directory, one for the others below it, the summary.
    assert!(said.len() <= 3, "{stderr}");
    assert_eq!(stderr.matches("PERMISSION_DENIED").count(), 1, "{stderr}");
    assert!(stderr.contains("mirror: "), "no summary: {stderr}");
    assert!(said.iter().all(|l| !l.contains(".deb")), "{stderr}");
}

#[test]
fn the_hook_names_the_refusing_directory_once() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::new();
    if !serve_as_nobody(&repo, "the_hook_names_the_refusing_directory_once") {
        return;
    }
    let pool = repo.remote().join("pool");
    fs::create_dir(&pool).unwrap();
    fs::set_permissions(&pool, fs::Permissions::from_mode(0o555)).unwrap();
    let debs: Vec<String> = ["foo", "bar", "baz"]
        .iter()
        .map(|n| repo.deb(n, "1.0", 3_000).display().to_string())
        .collect();
    let mut args = vec!["includedeb", "bookworm"];
    args.extend(debs.iter().map(String::as_str));
    let _ = repo.reprepro(&args);
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    let stderr = ran.stderr();
    assert_eq!(stderr.matches("PERMISSION_DENIED").count(), 1, "{stderr}");
    assert!(
        stderr.contains("pool: the server refuses changes"),
        "{stderr}"
    );
    assert!(!stderr.contains(".deb:"), "{stderr}");
    assert!(stderr.contains("error(s)"), "no summary: {stderr}");
}

#[test]
fn a_run_that_cannot_connect_ends_with_a_summary() {
    let repo = crate::interop::repository(false);
    repo.set_conf("sftpcommand /bin/false\n");
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(3);
    assert!(
        ran.stderr().contains("mirror: 0 file(s)"),
        "{}",
        ran.stderr()
    );
    assert!(
        ran.stderr().contains("cannot start an SFTP session"),
        "{}",
        ran.stderr()
    );

    let repo = Repo::new();
    repo.set_conf("sftpcommand /bin/false\n");
    let deb = repo.deb("foo", "1.0", 3_000);
    let _ = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    assert!(
        ran.stderr().contains(", 1 error(s), in "),
        "{}",
        ran.stderr()
    );
}

#[test]
fn sigterm_ends_a_stalled_mirror_with_a_summary() {
    let repo = crate::interop::repository(false);
    repo.use_faulty_server(100_000, "stall-term-hook");
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(1);
    let stderr = ran.stderr();
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(
        stderr.contains("mirror: ") && stderr.contains(" file(s) uploaded ("),
        "{stderr}"
    );
}

#[test]
fn sigint_ends_a_slow_mirror_with_a_summary() {
    use std::process::{Command, Stdio};
    let repo = crate::interop::repository(false);
    // Every chunk the server sends waits: the mirror is still running when SIGINT comes.
    repo.use_faulty_server(-1, "delay-300");
    let child = Command::new(crate::repo::BIN)
        .args(["--basedir", ".", "mirror"])
        .current_dir(repo.base())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(
        stderr.contains("mirror: ") && stderr.contains(" file(s) uploaded ("),
        "{stderr}"
    );
}
