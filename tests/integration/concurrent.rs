//! Runs that were not handed a log by reprepro (`--pending` by hand or from the systemd
//! timer) while a real reprepro is working on the same repository.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo::{BIN, Ran, Repo};

/// A `--pending` run without reprepro's environment, in the background.
fn pending_run(repo: &Repo, extra: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(repo.base())
        .args(["--basedir", ".", "--pending"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REPREPRO_") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().unwrap()
}

/// Runs `reprepro includedeb bookworm DEBS` while starting a `--pending EXTRA` run every
/// 20 ms, then checks that reprepro and every one of those runs succeeded.
fn includedeb_under_fire(repo: &Repo, debs: &[PathBuf], extra: &[&str]) {
    let mut reprepro = Command::new("reprepro")
        .current_dir(repo.dir.path())
        .arg("-b")
        .arg(repo.base())
        .args(["includedeb", "bookworm"])
        .args(debs)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut runs = Vec::new();
    while reprepro.try_wait().unwrap().is_none() && runs.len() < 60 {
        runs.push(pending_run(repo, extra));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = reprepro.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reprepro failed after {:?}:\n{}{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        runs.len() >= 5,
        "reprepro was too quick: {} run(s)",
        runs.len()
    );
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a --pending run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A signing hook that takes its time: reprepro has flushed the first 4 KiB of its log
/// (the POOLNEW lines of many packages) and signs before it writes the rest, so the runs
/// fired meanwhile find it at work.
fn slow_signing(repo: &Repo) {
    let sign = repo.dir.path().join("sign.sh");
    fs::write(&sign, "#!/bin/sh\nsleep 1\ncp \"$1\" \"$2\"\n").unwrap();
    fs::set_permissions(&sign, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = repo.base().join("conf/distributions");
    let text = fs::read_to_string(&conf).unwrap().replacen(
        "Architectures: amd64 source\n",
        &format!(
            "Architectures: amd64 source\nSignWith: ! {}\n",
            sign.display()
        ),
        1,
    );
    fs::write(&conf, text).unwrap();
}

#[test]
fn pending_runs_during_a_reprepro_run_lose_nothing() {
    let repo = Repo::new();
    slow_signing(&repo);
    repo.reprepro(&["export"]).expect(0);
    // Big enough that reprepro spends a while between creating its log and writing to it
    // (copying and checksumming the package): the log is empty then.
    includedeb_under_fire(&repo, &[repo.deb("big", "1.0", 40_000_000)], &[]);
    let many: Vec<PathBuf> = (0..40)
        .map(|i| repo.deb(&format!("p{i:02}-{}", "x".repeat(60)), "1.0", 100))
        .collect();
    includedeb_under_fire(&repo, &many, &[]);
    // Every change is on the remote, and no log was marked done without being pushed.
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
    repo.assert_mirrored(&[]);
    for name in repo.done_logs() {
        let text = fs::read_to_string(repo.logs().join(&name)).unwrap();
        let (made, journal): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| !l.starts_with("DONE\t"));
        assert!(!made.is_empty(), "{name} is done but empty");
        assert!(
            !journal.is_empty(),
            "{name} is done but was never pushed:\n{text}"
        );
    }
}

/// A package reprepro removed (its deletion held) and now adds again, while `--pending`
/// runs fire with that deletion due: whichever run finds what first, the file ends on the
/// remote, and the mirror equals the repository.
#[test]
fn a_held_deletion_due_while_reprepro_adds_the_file_again_never_loses_it() {
    let repo = Repo::new();
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    repo.set_conf(&conf.replace("keepdeleted 0", "keepdeleted 1h"));
    // Big: reprepro copies and checksums it for a while before the pool has it again.
    let big = repo.deb("big", "1.0", 40_000_000);
    repo.reprepro(&["includedeb", "bookworm", big.to_str().unwrap()])
        .expect(0);
    repo.reprepro(&["remove", "bookworm", "big"]).expect(0);
    let pool = "pool/main/b/big/big_1.0_amd64.deb";
    assert!(repo.remote().join(pool).exists(), "held");
    includedeb_under_fire(&repo, &[big], &["--keepdeleted", "0"]);
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
    assert!(repo.remote().join(pool).exists());
    repo.assert_mirrored(&[]);
}

#[test]
fn a_run_that_outwaits_reprepros_lock_exits_75_naming_it_and_touches_nothing() {
    let repo = Repo::new();
    let pending = repo.pending_include("foo", "1.0");
    let before = fs::read(&pending).unwrap();
    // As a running (or killed) reprepro leaves it.
    let lockfile = repo.base().join("db/lockfile");
    fs::write(&lockfile, "").unwrap();
    let started = Instant::now();
    let ran = repo.hook(&["--basedir", ".", "--pending", "--lock-timeout", "1"]);
    ran.expect(75);
    assert!(started.elapsed() >= Duration::from_secs(1));
    let err = ran.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in [
        "its lock file ./db/lockfile exists",
        "reprepro is running",
        "its own outhook call will push",
        "stale",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(fs::read(&pending).unwrap(), before, "the log was touched");
    assert!(!repo.server_log().exists(), "the server was started");

    // A log given by hand is not reprepro's hand-over either.
    let name = format!("logs/{}", repo.outlogs()[0]);
    repo.hook(&["--basedir", ".", &name, "--lock-timeout", "0"])
        .expect(75);
    // With reprepro's hook environment and a log handed over, the lock is reprepro's own.
    let ran = Ran {
        what: "outsftphook as reprepro's outhook".into(),
        output: Command::new(BIN)
            .current_dir(repo.base())
            .arg(&pending)
            .env("REPREPRO_BASE_DIR", repo.base())
            .env("REPREPRO_OUT_DIR", repo.base())
            .env("REPREPRO_LOG_DIR", repo.logs())
            .env("REPREPRO_CONFIG_DIR", repo.base().join("conf"))
            .env("REPREPRO_DIST_DIR", repo.base().join("dists"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap(),
    };
    ran.expect(0);
    fs::remove_file(&lockfile).unwrap();
    repo.reprepro(&["export"]).expect(0);
    repo.assert_mirrored(&[]);
}

#[test]
fn an_empty_log_is_never_marked_done() {
    let repo = Repo::new();
    repo.reprepro(&["export"]).expect(0);
    let fresh = repo.logs().join("1795639216-fresh.outlog");
    let stale = repo.logs().join("1795639215-stale.outlog");
    fs::write(&fresh, "").unwrap();
    fs::write(&stale, "").unwrap();
    let old = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&stale)
        .status()
        .unwrap();
    assert!(old.success());
    let ran = repo.hook(&["--basedir", ".", "--pending", "-v"]);
    ran.expect(0);
    assert!(fresh.exists() && stale.exists(), "{:?}", repo.done_logs());
    let err = ran.stderr();
    assert!(
        err.contains("1795639215-stale.outlog is empty and 120 minutes old")
            && err.contains("remove it if no reprepro is running"),
        "{err}"
    );
    assert!(
        err.contains("1795639216-fresh.outlog is empty (reprepro has not written it yet)"),
        "{err}"
    );
    // Without -v, only the stale one is worth a warning.
    let quiet = repo.hook(&["--basedir", ".", "--pending"]);
    quiet.expect(0);
    assert!(!quiet.stderr().contains("fresh"), "{}", quiet.stderr());
    // The same for `status`.
    let status = repo.hook(&["--basedir", ".", "status"]);
    status.expect(0);
    assert!(
        status.stdout().contains("1795639216-fresh.outlog: empty"),
        "{}",
        status.stdout()
    );
}

#[test]
fn sigterm_ends_a_wait_for_reprepros_lock_at_once() {
    let repo = Repo::new();
    repo.pending_include("foo", "1.0");
    fs::write(repo.base().join("db/lockfile"), "").unwrap();
    // The systemd timer's run, stopped while it waits (for up to 600 s by default). `-v`
    // makes it say when it starts waiting: a signal sent before it has set up its handlers
    // (a fixed sleep on a loaded machine) would kill it instead.
    let mut child = Command::new(BIN)
        .current_dir(repo.base())
        .args(["--basedir", ".", "--pending", "-v"])
        .env_remove("REPREPRO_OUT_DIR")
        .env_remove("REPREPRO_LOG_DIR")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let _ = lines.send(line.clone());
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) if line.contains("waiting for it to finish") => break,
            Ok(_) => {}
            Err(e) => panic!("the run never said it waits for reprepro ({e:?})"),
        }
    }
    let signalled = Instant::now();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(10));
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("interrupted by SIGTERM while waiting for reprepro"),
        "{err}"
    );
    // An interrupted run ends with its summary, as every run does.
    assert!(
        err.contains("outsftphook: 0 file(s) uploaded (0 B), 1 error(s), in "),
        "{err}"
    );
    assert!(!repo.server_log().exists(), "the server was started");
}

/// The same with two mirrors: `--pending` runs firing while reprepro works never mark a
/// log done that one mirror lacks, and both end equal to the repository.
#[test]
fn pending_runs_during_a_reprepro_run_lose_nothing_on_either_mirror() {
    let repo = Repo::new();
    let second = repo.dir.path().join("second");
    fs::create_dir_all(&second).unwrap();
    let server = repo.dir.path().join("server.sh");
    repo.set_conf(&format!(
        "keepdeleted 0\nsftpcommand {}\nmirror second\nsftpcommand {} -d {}\n",
        server.display(),
        crate::support::OPENSSH_SFTP_SERVER,
        second.display()
    ));
    slow_signing(&repo);
    repo.reprepro(&["export"]).expect(0);
    let many: Vec<PathBuf> = (0..40)
        .map(|i| repo.deb(&format!("p{i:02}-{}", "x".repeat(60)), "1.0", 100))
        .collect();
    includedeb_under_fire(&repo, &many, &[]);
    includedeb_under_fire(&repo, &[repo.deb("big", "1.0", 20_000_000)], &[]);
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
    repo.assert_mirrored(&[]);
    repo.assert_mirrored_at(&second);
    for name in repo.done_logs() {
        let text = fs::read_to_string(repo.logs().join(&name)).unwrap();
        for keyword in ["DONE\t", "DONE@second\t"] {
            assert!(
                text.lines().any(|l| l.starts_with(keyword)),
                "{name} is done without {keyword:?} lines:\n{text}"
            );
        }
    }
}
