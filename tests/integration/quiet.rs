//! `--quiet` for scripts: a push that went well prints nothing; one that failed still says
//! why. And the progress line, drawn only on a terminal, moves before a large file is done.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::repo::Repo;
use crate::support;

#[test]
fn a_quiet_push_that_went_well_prints_nothing() {
    let repo = Repo::new();
    let log = repo.pending_include("foo", "1.0");
    let ran = repo.hook(&["--basedir", ".", "--quiet", "--pending"]);
    ran.expect(0);
    assert_eq!(ran.stderr(), "", "stderr of a quiet push");
    assert_eq!(ran.stdout(), "", "stdout of a quiet push");
    assert!(!log.exists(), "the log is done");
    assert!(
        repo.remote()
            .join("pool/main/f/foo/foo_1.0_amd64.deb")
            .exists()
    );

    // Without it, the same kind of run ends with its summary.
    repo.pending_include("bar", "1.0");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(0);
    assert!(
        ran.stderr().contains(" file(s) uploaded ("),
        "{}",
        ran.stderr()
    );
}

#[test]
fn a_quiet_push_that_failed_still_says_why() {
    let repo = Repo::new();
    repo.pending_include("foo", "1.0");
    repo.set_conf("servername nowhere.invalid\nsshcommand /bin/false\n");
    let ran = repo.hook(&["--basedir", ".", "-q", "--pending"]);
    assert_ne!(ran.code(), 0);
    assert!(
        ran.stderr().starts_with("outsftphook: "),
        "a quiet failure says why: {:?}",
        ran.stderr()
    );
}

#[test]
fn the_progress_line_moves_while_a_large_file_goes() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        return support::skip("progress line", "script(1) is not installed");
    }
    let repo = Repo::new();
    // A slow server: its input is throttled to about 2 MB/s, so a 6 MB file takes a few
    // seconds.
    let slow = repo.base().join("../slow.py");
    fs::write(
        &slow,
        format!(
            "#!/usr/bin/python3\nimport subprocess, sys, time\n\
             p = subprocess.Popen(['/usr/lib/openssh/sftp-server', '-d', '{}'], stdin=subprocess.PIPE)\n\
             while True:\n    b = sys.stdin.buffer.read1(65536)\n    if not b: break\n\
             \x20   p.stdin.write(b); p.stdin.flush(); time.sleep(len(b) / 2e6)\n\
             p.stdin.close(); p.wait()\n",
            repo.remote().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&slow, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(repo.base().join("pool/big")).unwrap();
    fs::write(
        repo.base().join("pool/big/file"),
        support::pattern(6_000_000, 3),
    )
    .unwrap();
    fs::create_dir_all(repo.base().join("dists")).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n", slow.display()));
    let bin = env!("CARGO_BIN_EXE_outsftphook");
    let out = Command::new("script")
        .args(["-qec"])
        .arg(format!("{bin} --basedir . mirror pool"))
        .arg("/dev/null")
        .current_dir(repo.base())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Lines drawn before the file was done show part of its bytes.
    let partial = text
        .split("\r\x1b[K")
        .filter(|l| l.starts_with("0/1 files, ") && !l.starts_with("0/1 files, 0 B"))
        .count();
    assert!(
        partial >= 2,
        "the line moved before the file was done: {text:?}"
    );
}
