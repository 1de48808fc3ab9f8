//! A hostile or broken server, end to end: OpenSSH's sftp-server behind a relay that breaks
//! the protocol in one way per test (tests/fixtures/tampering_relay.py). Whatever the
//! server does, the run ends on its own, soon, without a panic, exits non-zero with one
//! line naming the server's fault, shows nothing of the server's raw control characters,
//! and journals only what the server really confirmed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo::{BIN, Repo};

/// A repository with one pending log (a package added while the server was out of reach).
fn pending() -> Repo {
    let repo = Repo::new();
    repo.pending_include("foo", "1.0");
    repo
}

/// Points `repo`'s conf at the real server behind the relay in `mode`, with a stall timeout
/// of `timeout` seconds.
fn tampered(repo: &Repo, mode: &str, timeout: u32) {
    repo.set_conf(&format!(
        "sftpcommand python3 {}/tests/fixtures/tampering_relay.py --log {} {mode} -- \
         /usr/lib/openssh/sftp-server -e -l INFO -d {}\ntimeout {timeout}\n",
        env!("CARGO_MANIFEST_DIR"),
        repo.server_log().display(),
        repo.remote().display()
    ));
}

/// How a run ended.
struct Ended {
    /// None when it had to be killed.
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    took: Duration,
}

impl Ended {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The lines on stderr that say something.
    fn said(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Runs the program with `args` in the repository, its address space capped at 1 GiB (a
/// run that buffered what a server announces would die of it), killed after `limit`.
fn run_within(repo: &Repo, args: &[&str], limit: Duration) -> Ended {
    let (out, err) = (
        repo.dir.path().join("stdout"),
        repo.dir.path().join("stderr"),
    );
    let start = Instant::now();
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -v 1048576 && exec \"$0\" \"$@\"", BIN])
        .args(args)
        .current_dir(repo.base())
        .env_remove("RUST_LOG")
        .env("XDG_RUNTIME_DIR", repo.runtime_dir())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ended {
        code,
        stdout: fs::read(out).unwrap(),
        stderr: fs::read(err).unwrap(),
        took: start.elapsed(),
    }
}

/// Pushes the pending log through the relay in `mode`.
fn push(repo: &Repo, mode: &str, timeout: u32) -> Ended {
    tampered(repo, mode, timeout);
    run_within(
        repo,
        &["--basedir", ".", "--pending"],
        Duration::from_secs(60),
    )
}

/// The run ended by itself, soon, with a failure, nothing raw of the server's on the
/// terminal and no panic; returns the line that names the fault (`fault`).
fn assert_refused(ended: &Ended, mode: &str, fault: &str) -> String {
    let context = format!(
        "{mode}: exit {:?} in {:?}\n{}",
        ended.code,
        ended.took,
        ended.stderr()
    );
    assert!(ended.code.is_some(), "killed: {context}");
    assert_ne!(ended.code, Some(0), "{context}");
    assert!(!ended.stderr().contains("panicked"), "{context}");
    assert_printable(&ended.stderr, &context);
    assert_printable(&ended.stdout, &context);
    let line = ended
        .said()
        .into_iter()
        .find(|l| l.contains(fault))
        .unwrap_or_else(|| panic!("no line says {fault:?}: {context}"));
    // Shown with --nocapture: what the operator reads of each fault.
    eprintln!("{mode}: {line}");
    line
}

/// No control character but the newline, no byte that is not UTF-8.
fn assert_printable(text: &[u8], context: &str) {
    let text = std::str::from_utf8(text).unwrap_or_else(|e| panic!("{e}: {context}"));
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| c != '\n' && (c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)))
        .collect();
    assert!(bad.is_empty(), "{bad:?} shown raw: {context}");
}

/// Nothing journalled: the log is pending as before and no DONE line was written.
fn assert_nothing_journalled(repo: &Repo, context: &str) {
    assert_eq!(repo.outlogs().len(), 1, "{context}");
    assert!(repo.done_logs().is_empty(), "{context}");
    let log = fs::read_to_string(repo.logs().join(&repo.outlogs()[0])).unwrap();
    assert!(!log.contains("DONE\t"), "{context}: {log}");
}

/// Every DONE line names a file the remote really has, with the local bytes: at its name
/// (`done`), or at its `.new` name where that is what was journalled (`asdotnew`: renamed
/// into place later, and then at its name).
fn assert_journal_true(repo: &Repo, context: &str) {
    for name in repo.outlogs().iter().chain(repo.done_logs().iter()) {
        let text = fs::read_to_string(repo.logs().join(name)).unwrap();
        for line in text.lines().filter(|l| l.starts_with("DONE\t")) {
            let fields: Vec<&str> = line.split('\t').collect();
            let local = fs::read(repo.base().join(fields[2])).ok();
            let at = |path: String| fs::read(repo.remote().join(path)).ok() == local;
            let whole = match fields[1] {
                "done" => at(fields[2].to_string()),
                "asdotnew" => at(format!("{}.new", fields[2])) || at(fields[2].to_string()),
                other => panic!("{context}: {other} in {line}"),
            };
            assert!(
                whole,
                "{context}: {line} is not on the remote as it is locally"
            );
        }
    }
}

/// After the fault, the real server alone finishes the push.
fn assert_rerun_finishes(repo: &Repo, context: &str) {
    repo.use_server();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    assert!(repo.outlogs().is_empty(), "{context}");
    repo.assert_mirrored(&[]);
}

fn remote_has_nothing(repo: &Repo) -> bool {
    crate::support::names_in(&repo.remote()).is_empty()
}

#[test]
fn a_version_out_of_turn_or_of_another_protocol_ends_the_run_before_anything_is_changed() {
    for (mode, fault) in [
        ("version-twice", "the server sent a second VERSION"),
        (
            "version-4",
            "the server speaks SFTP version 4; version 3 is required",
        ),
        ("version-2", "version 2"),
        (
            "reply-before-version",
            "the server sent a reply before VERSION",
        ),
    ] {
        let repo = pending();
        let ended = push(&repo, mode, 30);
        assert_refused(&ended, mode, fault);
        assert!(remote_has_nothing(&repo), "{mode}");
        assert_nothing_journalled(&repo, mode);
    }
}

#[test]
fn a_length_of_4_gib_or_a_packet_cut_off_ends_the_run_at_once_in_bounded_memory() {
    for (mode, fault) in [
        ("huge-length", "packet length 4294967295 exceeds the limit"),
        ("close-mid", "the server closed the connection"),
        ("attrs-ext-huge", "extended attribute count"),
    ] {
        let repo = pending();
        let ended = push(&repo, mode, 30);
        let line = assert_refused(&ended, mode, fault);
        assert!(
            ended.took < Duration::from_secs(20),
            "{mode}: {:?}",
            ended.took
        );
        if mode != "close-mid" {
            assert!(
                line.contains("--debug-sftp 1"),
                "{mode}: what to do: {line}"
            );
        }
        assert_journal_true(&repo, mode);
        assert_eq!(repo.outlogs().len(), 1, "{mode}: still pending");
        assert_rerun_finishes(&repo, mode);
    }
}

#[test]
fn a_server_that_never_answers_or_trickles_a_packet_meets_the_stall_timeout() {
    for mode in ["silent", "trickle"] {
        let repo = pending();
        let ended = push(&repo, mode, 2);
        assert_refused(&ended, mode, "no progress for 2 seconds");
        assert!(
            ended.took < Duration::from_secs(15),
            "{mode}: {:?}",
            ended.took
        );
        assert_nothing_journalled(&repo, mode);
    }
}

#[test]
fn replies_to_requests_never_sent_or_answered_already_end_the_run_and_only_the_truth_is_journalled()
{
    for (mode, fault) in [
        ("unknown-id", "which was never sent"),
        ("duplicate", "replied a second time to request id"),
    ] {
        let repo = pending();
        let ended = push(&repo, mode, 30);
        let line = assert_refused(&ended, mode, fault);
        assert!(
            line.contains("--debug-sftp 1"),
            "{mode}: what to do: {line}"
        );
        assert_journal_true(&repo, mode);
        assert_eq!(repo.outlogs().len(), 1, "{mode}: still pending");
        assert_rerun_finishes(&repo, mode);
    }
}

#[test]
fn a_reply_of_the_wrong_kind_fails_its_file_and_nothing_unconfirmed_is_journalled() {
    for (mode, fault) in [
        ("WRITE=DATA", "the server answered WRITE with DATA"),
        ("FSTAT=HANDLE", "the server answered FSTAT with HANDLE"),
        ("RENAME=DATA", "the server answered RENAME with DATA"),
        ("all-FSTAT=ATTRS", "the server has 3 bytes after"),
        ("LSTAT=HANDLE", "LSTAT: HANDLE"),
        ("REALPATH=NAME0", "REALPATH: NAME"),
        ("REALPATH=NAME2", "REALPATH: NAME"),
        // Said as "OPEN failed: OK" (batch/upload.rs): a failure all the same.
        ("all-OPEN=OK", "OPEN failed"),
    ] {
        let repo = pending();
        let ended = push(&repo, mode, 30);
        assert_eq!(ended.code, Some(1), "{mode}: {}", ended.stderr());
        assert_refused(&ended, mode, fault);
        assert_journal_true(&repo, mode);
        assert_eq!(repo.outlogs().len(), 1, "{mode}: still pending");
        assert_rerun_finishes(&repo, mode);
    }
}

#[test]
fn lies_about_where_a_directory_leads_or_what_it_is_stop_everything_below_it() {
    for (mode, fault) in [
        (
            "realpath=/etc",
            "pool resolves to /etc on the server, outside the target",
        ),
        (
            "all-REALPATH=NAME2",
            "the target directory's REALPATH: NAME",
        ),
        ("all-LSTAT=ATTRS", "LSTAT: no symlink"),
        ("all-LSTAT=OK", "LSTAT: OK"),
    ] {
        let repo = pending();
        let ended = push(&repo, mode, 30);
        assert_eq!(ended.code, Some(1), "{mode}: {}", ended.stderr());
        assert_refused(&ended, mode, fault);
        assert_nothing_journalled(&repo, mode);
        let opened: Vec<String> = repo
            .server_ops()
            .into_iter()
            .filter(|l| l.contains("open \"") || l.contains("rename"))
            .collect();
        assert!(opened.is_empty(), "{mode}: {opened:#?}");
        assert_rerun_finishes(&repo, mode);
    }
}

#[test]
fn a_status_message_full_of_escapes_is_shown_printable_and_short() {
    let repo = pending();
    let ended = push(&repo, "CLOSE=FAILURE-EVIL", 30);
    let line = assert_refused(&ended, "CLOSE=FAILURE-EVIL", "CLOSE failed: FAILURE");
    assert!(line.contains("\\x1b[2J\\x1b]0;owned\\x07"), "{line}");
    assert!(line.contains("\\xff\\xfe"), "{line}");
    assert!(line.contains("more bytes)"), "{line}");
    assert!(line.len() < 2048, "{} bytes", line.len());
    assert_journal_true(&repo, "evil");
    assert_rerun_finishes(&repo, "evil");
}

#[test]
fn the_servers_stderr_reaches_the_terminal_without_its_control_characters() {
    let repo = pending();
    let ended = push(&repo, "stderr-evil", 30);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr());
    assert_printable(&ended.stderr, &ended.stderr());
    assert!(
        ended
            .stderr()
            .contains("python3: \\x1b[2J\\x1b]0;owned\\x07evil\\x0dline"),
        "{}",
        ended.stderr()
    );
    repo.assert_mirrored(&[]);
}

#[test]
fn limits_of_zero_or_of_the_largest_values_still_land_every_file_whole() {
    for mode in ["limits-zero", "limits-huge"] {
        let repo = pending();
        let ended = push(&repo, mode, 30);
        assert_eq!(ended.code, Some(0), "{mode}: {}", ended.stderr());
        assert!(repo.outlogs().is_empty(), "{mode}");
        repo.assert_mirrored(&[]);
    }
}

/// Whether anything in `dir` (recursively) has a name in `names`.
fn holds_any(dir: &Path, names: &[&str]) -> bool {
    crate::support::names_in(dir)
        .iter()
        .any(|p| names.iter().any(|n| p.rsplit('/').next() == Some(n)))
}

#[test]
fn listed_names_that_lead_elsewhere_are_left_out_of_verify_and_mirror_delete() {
    let repo = pending();
    repo.use_server();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    // What a name like `../../escape` listed in pool/main would reach.
    let outside = repo.dir.path().join("escape");
    fs::write(&outside, "not the mirror's").unwrap();
    fs::write(repo.remote().join("escape"), "not the mirror's either").unwrap();
    tampered(&repo, "readdir-names", 30);
    let limit = Duration::from_secs(60);
    let verify = run_within(&repo, &["--basedir", ".", "verify"], limit);
    let context = verify.stderr();
    assert_eq!(verify.code, Some(0), "the mirror is whole: {context}");
    assert_printable(&verify.stderr, &context);
    assert!(context.contains("which is no file name"), "{context}");
    assert!(!context.contains("panicked"), "{context}");
    repo.clear_server_log();
    let mirror = run_within(&repo, &["--basedir", ".", "mirror", "--delete"], limit);
    let context = mirror.stderr();
    assert_eq!(mirror.code, Some(0), "{context}");
    assert_printable(&mirror.stderr, &context);
    assert!(outside.exists() && repo.remote().join("escape").exists());
    let removed: Vec<String> = repo
        .server_ops()
        .into_iter()
        .filter(|l| l.contains("remove") || l.contains("rmdir") || l.contains("rename"))
        .collect();
    assert!(removed.is_empty(), "{removed:#?}");
    assert!(!holds_any(&repo.remote(), &["b", "passwd", "x"]));
    repo.assert_mirrored(&[]);
}

#[test]
fn text_before_version_is_named_as_what_a_login_script_prints() {
    let repo = pending();
    let script = repo.dir.path().join("chatty.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho 'Welcome to the mirror'\nexec /usr/lib/openssh/sftp-server -d '{}'\n",
            repo.remote().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n", script.display()));
    let ended = run_within(
        &repo,
        &["--basedir", ".", "--pending"],
        Duration::from_secs(60),
    );
    let line = assert_refused(
        &ended,
        "chatty",
        "output starts with \"Welc\", not with SFTP's VERSION",
    );
    assert!(line.contains("login script"), "{line}");
    assert_nothing_journalled(&repo, "chatty");
}

/// What confine.rs shows of a REALPATH answer is the server's bytes as they are: an
/// escape sequence in a resolved path reaches the terminal raw. Needs confine.rs to show
/// `resolved` and `said` through `crate::sftp::printable::printable` (not owned here).
#[test]
fn a_resolved_path_full_of_escapes_is_shown_printable() {
    let repo = pending();
    let ended = push(&repo, "realpath=/tmp/%1b[2Jevil%07", 30);
    assert_refused(&ended, "realpath", "outside the target directory");
    assert_nothing_journalled(&repo, "realpath");
}

#[test]
fn a_tree_without_end_is_walked_only_as_deep_as_a_path_can_be() {
    let repo = pending();
    repo.use_server();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    tampered(&repo, "deep", 30);
    let limit = Duration::from_secs(120);
    let verify = run_within(&repo, &["--basedir", ".", "verify"], limit);
    let context = format!(
        "exit {:?} in {:?}\n{}",
        verify.code,
        verify.took,
        verify.stderr()
    );
    // The made-up directories are differences; the walk ends.
    assert_eq!(verify.code, Some(1), "{context}");
    assert_printable(&verify.stderr, &context);
    assert_printable(&verify.stdout, &context);
    assert!(
        context.contains("its path would be longer than 4096 bytes"),
        "{context}"
    );
}
