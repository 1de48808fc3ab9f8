//! Listings against a hostile scripted server (tests/fixtures/hostile_server.py): READDIR
//! replies that never end, or entries carrying huge fields the program never uses. The run
//! ends, on its own, in bounded memory.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo::{BIN, Repo};

/// A repository with a local pool file and the hostile server in `mode` as its server.
fn hostile(mode: &str) -> Repo {
    let repo = Repo::new();
    let pool = repo.base().join("pool");
    fs::create_dir_all(&pool).unwrap();
    fs::write(pool.join("a.deb"), "abc").unwrap();
    repo.set_conf(&format!(
        "sftpcommand python3 {}/tests/fixtures/hostile_server.py {mode}\n",
        env!("CARGO_MANIFEST_DIR")
    ));
    repo
}

/// Runs `verify` after the shell command `setup`, killed after `limit`; returns its exit
/// code (None when it had to be killed) and its stdout and stderr.
fn verify_within(repo: &Repo, setup: &str, limit: Duration) -> (Option<i32>, String, String) {
    let (out, err) = (
        repo.dir.path().join("stdout"),
        repo.dir.path().join("stderr"),
    );
    let mut child = Command::new("sh")
        .args(["-c", &format!("{setup} && exec \"$0\" \"$@\""), BIN])
        .args(["--basedir", ".", "verify"])
        .current_dir(repo.base())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p| fs::read_to_string(p).unwrap_or_default();
    (code, read(&out), read(&err))
}

#[test]
fn readdir_answered_with_empty_names_for_ever_is_a_stall() {
    let repo = hostile("empty-names");
    let (code, out, err) = verify_within(&repo, "true", Duration::from_secs(30));
    // A server that stalls cannot be read: 3, not a difference.
    assert_eq!(code, Some(3), "verify did not end by itself\n{out}\n{err}");
    assert!(err.contains("READDIR") && err.contains("stalled"), "{err}");
}

#[test]
fn huge_longnames_are_not_kept() {
    // 1500 entries with 200 KB longnames: 300 MB the program must not keep. With 250 MB
    // of address space it cannot, and it still lists every entry.
    let repo = hostile("long-longnames 1500");
    let (code, out, err) = verify_within(&repo, "ulimit -v 250000", Duration::from_secs(120));
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("pool/f1499.deb: extra"), "{out}\n{err}");
    assert!(out.contains("pool/a.deb: missing"), "{out}\n{err}");
}
