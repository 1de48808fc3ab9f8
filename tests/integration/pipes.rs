//! A stdout whose reader has gone (`status -v | head -c 100`): the run ends quietly, never
//! with a panic (exit 101) or a SIGPIPE death (141). Either the reader goes after 100 bytes of
//! output larger than a pipe holds, or before the command starts: either way a write fails
//! for certain.

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};

use crate::repo::{BIN, Repo};

/// A repository whose pool has enough files (and a pending outlog naming each) that every
/// command here writes far more than a pipe holds (64 KiB), with an empty remote.
fn big_repository() -> Repo {
    let repo = Repo::new();
    let dir = repo.base().join("pool/main/p/package-with-a-long-name");
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(repo.logs()).unwrap();
    let mut outlog = String::new();
    for i in 0..2500 {
        let name = format!("package-with-a-long-name_1.0-{i}_amd64.deb");
        fs::write(dir.join(&name), "x").unwrap();
        outlog.push_str(&format!(
            "POOLNEW\tpool/main/p/package-with-a-long-name/{name}\n"
        ));
    }
    fs::write(repo.logs().join("1764612000-abcd.outlog"), outlog).unwrap();
    repo
}

/// Runs the binary with `args`, reads 100 bytes of its stdout and closes the pipe; returns
/// its exit status and stderr.
fn with_stdout_closed_early(repo: &Repo, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .current_dir(repo.base())
        .args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0; 100];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_status_verify_and_dry_runs_quietly() {
    crate::support::require("/usr/lib/openssh/sftp-server");
    let repo = big_repository();
    for args in [
        &["--basedir", ".", "status", "-v"][..],
        &["--basedir", ".", "--pending", "--dry-run"],
        &["--basedir", ".", "mirror", "--dry-run"],
        &["--basedir", ".", "verify"],
    ] {
        let (code, stderr) = with_stdout_closed_early(&repo, args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(code, Some(0), "{args:?} exited {code:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
    // Nothing was sent or marked done by any of them.
    assert!(fs::read_dir(repo.remote()).unwrap().next().is_none());
    assert_eq!(repo.outlogs().len(), 1);
}

/// Runs the binary with `args` and a stdout pipe whose reader is closed before it starts.
fn with_stdout_closed_before(repo: &Repo, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .current_dir(repo.base())
        .args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_stdout_closed_from_the_start_ends_each_showing_command_quietly() {
    crate::support::require("/usr/lib/openssh/sftp-server");
    let repo = big_repository();
    for args in [
        &["--basedir", ".", "status"][..],
        &["--basedir", ".", "--pending", "--dry-run"],
        &["--basedir", ".", "verify"],
        &["completions", "bash"],
        &["completions", "zsh"],
    ] {
        let (code, stderr) = with_stdout_closed_before(&repo, args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(code, Some(0), "{args:?} exited {code:?}: {stderr}");
    }
    assert_eq!(repo.outlogs().len(), 1);
}

#[test]
fn a_push_whose_stdout_closes_goes_on_to_the_end() {
    crate::support::require("/usr/lib/openssh/sftp-server");
    let repo = big_repository();
    let (code, stderr) = with_stdout_closed_early(&repo, &["--basedir", ".", "-v", "--pending"]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(repo.outlogs(), Vec::<String>::new(), "{stderr}");
    assert_eq!(repo.done_logs().len(), 1);
    let uploaded = fs::read_dir(repo.remote().join("pool/main/p/package-with-a-long-name"))
        .unwrap()
        .count();
    assert_eq!(uploaded, 2500);
}
