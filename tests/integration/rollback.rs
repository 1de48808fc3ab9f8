//! A push (or a `mirror`) whose finalisation fails half-way (one rename of the batch fails,
//! as a full disk or a permission error would fail it) leaves the distribution as it was
//! before it, byte for byte, where the server makes hard links; without them it says what
//! state the distribution is in. Either way a rerun finishes the push, also after a server killed
//! anywhere in the finalisation or while putting back. Real reprepro, real `sftp-server`
//! (and gesftpserver, ProFTPD, asyncssh, rclone), and a relay in front of the server that
//! makes it fail the renames of one file (tests/fixtures/failing_rename_relay.py).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo::Repo;

/// A repository whose bookworm is signed (by a script: `InRelease` is a copy of
/// `Release`).
fn signed() -> Repo {
    let repo = Repo::new();
    let sign = repo.dir.path().join("sign.sh");
    fs::write(
        &sign,
        "#!/bin/sh\ncp \"$1\" \"$2\"\necho signature > \"$3\"\n",
    )
    .unwrap();
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
    repo
}

/// Pushes package `old` to bookworm.
fn push_old(repo: &Repo) {
    let deb = repo.deb("old", "1.0", 2_000);
    repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
        .expect(0);
    repo.assert_mirrored(&[]);
    assert!(repo.remote().join("dists/bookworm/InRelease").exists());
}

/// The relay that fails every rename of `NAME.new`, as a command's first words.
fn relay(name: &str) -> String {
    format!(
        "python3 {}/tests/fixtures/failing_rename_relay.py {name}.new --",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A script running `command` (a shell command line) as the conf's `sftpcommand`: its
/// conf line.
fn sftpcommand(repo: &Repo, name: &str, command: &str) -> String {
    let script = repo.dir.path().join(name);
    fs::write(&script, format!("#!/bin/sh\n{command}\n")).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    format!("sftpcommand {}\n", script.display())
}

/// The conf that reaches OpenSSH's `sftp-server ARGS` serving `remote/` (logging each
/// request), through the relay that fails `failing` if given.
fn openssh(repo: &Repo, args: &str, failing: Option<&str>) -> String {
    let relay = failing.map(relay).unwrap_or_default();
    let command = format!(
        "exec {relay} /usr/lib/openssh/sftp-server -e -l INFO {args} -d '{}' 2>>'{}'",
        repo.remote().display(),
        repo.server_log().display()
    );
    sftpcommand(
        repo,
        if failing.is_some() {
            "relay.sh"
        } else {
            "plain.sh"
        },
        &command,
    )
}

/// Every file of `dir` but the `.new` ones (nothing names them), with its bytes.
fn files_in(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if !path.to_string_lossy().ends_with(".new") {
                let rel = path.strip_prefix(root).unwrap().to_owned();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The files `Release` lists in its SHA256 section that do not have the checksum it
/// gives: what apt would call a "Hash Sum mismatch". (reprepro lists the uncompressed
/// Sources it does not write: apt fetches one of the forms there are.)
fn mismatching(dist: &Path) -> Vec<String> {
    let release = fs::read_to_string(dist.join("Release")).unwrap();
    let listed: Vec<(String, String)> = release
        .lines()
        .skip_while(|l| *l != "SHA256:")
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect();
    assert!(
        !listed.is_empty(),
        "Release lists no SHA256 sums:\n{release}"
    );
    listed
        .into_iter()
        .filter(|(_, name)| dist.join(name).exists())
        .filter(|(sum, name)| sha256(&dist.join(name)).as_deref() != Some(sum.as_str()))
        .map(|(_, name)| name)
        .collect()
}

fn sha256(path: &Path) -> Option<String> {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().next().map(str::to_owned)
}

/// With `conf` (which reaches a server), then `failing` (which reaches it through the
/// relay that fails the renames of `name`): a push that fails there leaves bookworm as it
/// was before it; with `conf` again, a rerun finishes the push.
fn check_put_back(repo: &Repo, conf: &str, failing: &str, name: &str) {
    let (dist, before, err) = push_failing(repo, conf, failing, name);
    assert!(
        err.contains("dists/bookworm: its finalisation failed half-way, so it was put back"),
        "{name}: {err}"
    );
    // Right after: what apt can read of the distribution is the old one, whole.
    assert_eq!(files_in(&dist), before, "{name}: {err}");
    assert_eq!(mismatching(&dist), Vec::<String>::new(), "{name}");
    assert!(!repo.remote_index_names("new"), "{name}");
    // The new indexes wait as NAME.new: the rerun renames them, uploading nothing again,
    // and its journal claims no rename that was put back.
    let local = repo.base().join("dists/bookworm");
    for index in ["Release", "main/binary-amd64/Packages.gz"] {
        let waiting = fs::read(dist.join(format!("{index}.new"))).ok();
        assert_eq!(
            waiting,
            Some(fs::read(local.join(index)).unwrap()),
            "{name}"
        );
    }
    let pending: String = repo
        .outlogs()
        .iter()
        .map(|l| fs::read_to_string(repo.logs().join(l)).unwrap())
        .collect();
    assert!(!pending.contains("DONE\tdone\tdists/"), "{name}: {pending}");
    rerun_finishes(repo, conf, name);
}

/// Pushes package `new` with `failing` (after `old` with `conf`), which fails: returns
/// the remote bookworm, what it held before, and what the push said.
fn push_failing(
    repo: &Repo,
    conf: &str,
    failing: &str,
    name: &str,
) -> (PathBuf, BTreeMap<PathBuf, Vec<u8>>, String) {
    repo.set_conf(conf);
    push_old(repo);
    let dist = repo.remote().join("dists/bookworm");
    let before = files_in(&dist);
    repo.set_conf(failing);
    let deb = repo.deb("new", "1.0", 3_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_ne!(ran.code(), 0, "{name}: the push failed");
    (dist, before, ran.stderr())
}

/// With `conf`, a rerun finishes the push: the remote is the out dir, consistent.
fn rerun_finishes(repo: &Repo, conf: &str, name: &str) {
    repo.set_conf(conf);
    repo.clear_server_log();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
    assert!(repo.remote_index_names("new"), "{name}");
    let dist = repo.remote().join("dists/bookworm");
    assert_eq!(mismatching(&dist), Vec::<String>::new(), "{name}");
}

#[test]
fn a_failed_rename_puts_the_distribution_back_as_it_was_and_a_rerun_finishes() {
    // The last rename (InRelease, after its Release: as bad as an index) and one in the
    // middle of the batch, with Release and InRelease renamed after it.
    for name in ["dists/bookworm/InRelease", "main/binary-amd64/Packages.gz"] {
        let repo = signed();
        let (conf, failing) = (openssh(&repo, "", None), openssh(&repo, "", Some(name)));
        check_put_back(&repo, &conf, &failing, name);
        // The rerun only renamed: every dist file was uploaded once, by the failed push.
        let uploads = repo
            .server_ops()
            .iter()
            .filter(|l| l.contains("open \"dists/"))
            .count();
        assert_eq!(uploads, 0, "{name}: {:#?}", repo.server_ops());
    }
}

#[test]
fn a_failed_rename_is_put_back_on_green_ends_server_too() {
    let ge = crate::support::GESFTPSERVER;
    if !Path::new(ge).exists() {
        crate::support::skip("gesftpserver rollback", "gesftpserver is not installed");
        return;
    }
    let repo = signed();
    let remote = repo.remote();
    let at = |relay: &str| format!("cd '{}' && exec {relay} {ge}", remote.display());
    let conf = sftpcommand(&repo, "ge.sh", &at(""));
    let failing = sftpcommand(
        &repo,
        "ge-relay.sh",
        &at(&relay("dists/bookworm/InRelease")),
    );
    check_put_back(&repo, &conf, &failing, "InRelease on gesftpserver");
}

#[test]
fn a_failed_rename_is_put_back_on_the_other_servers() {
    use crate::servers::{Kind, Server};
    for kind in [Kind::Proftpd, Kind::AsyncsshChroot, Kind::Rclone] {
        let repo = signed();
        let server = match Server::start(kind, repo.dir.path(), repo.dir.path()) {
            Ok(server) => server,
            Err(why) => {
                crate::support::skip(&format!("{} rollback", kind.name()), &why);
                continue;
            }
        };
        let conf = server.conf(&repo.remote());
        // The relay goes between the program and ssh.
        let failing = conf.replace(
            "sshcommand ",
            &format!("sshcommand {} ", relay("dists/bookworm/InRelease")),
        );
        if kind != Kind::Rclone {
            check_put_back(&repo, &conf, &failing, kind.name());
            continue;
        }
        // rclone answers hardlink@openssh.com with OK and makes no link: seen, and said.
        let (_, _, err) = push_failing(&repo, &conf, &failing, kind.name());
        let said: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("could not be put back"))
            .collect();
        assert_eq!(said.len(), 1, "{err}");
        assert!(said[0].contains("made no link"), "{err}");
        rerun_finishes(&repo, &conf, kind.name());
    }
}

#[test]
fn without_hard_links_a_failed_rename_says_what_is_new_under_the_old_release() {
    let repo = signed();
    repo.set_conf(&openssh(&repo, "", None));
    push_old(&repo);
    let dist = repo.remote().join("dists/bookworm");
    // OpenSSH's server does not announce a request it is told to deny.
    let failing = openssh(&repo, "-P hardlink", Some("dists/bookworm/Release"));
    repo.set_conf(&failing);
    let deb = repo.deb("new", "1.0", 3_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    says_not_put_back(&ran.stderr(), "until a rerun", &dist);
    repo.set_conf(&openssh(&repo, "", None));
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
    assert_eq!(mismatching(&dist), Vec::<String>::new());
}

#[test]
fn links_a_killed_run_left_are_replaced_never_put_back() {
    let repo = signed();
    let conf = openssh(&repo, "", None);
    repo.set_conf(&conf);
    push_old(&repo);
    let dist = repo.remote().join("dists/bookworm");
    let before = files_in(&dist);
    // What a run killed after keeping them, long ago, left (stale: not what is there now).
    let plant = || {
        for stale in ["main/binary-amd64/.Packages.gz.prev", ".InRelease.prev"] {
            fs::write(dist.join(stale), "a version of long ago").unwrap();
        }
    };
    plant();
    repo.set_conf(&openssh(&repo, "", Some("dists/bookworm/InRelease")));
    let deb = repo.deb("new", "1.0", 3_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    let err = ran.stderr();
    assert!(err.contains("so it was put back"), "{err}");
    // What is put back is what was there before this push, and the stale links are gone.
    assert_eq!(files_in(&dist), before, "{err}");
    // A push that goes well removes them too.
    plant();
    rerun_finishes(&repo, &conf, "stale links");
}

#[test]
fn only_the_distribution_that_failed_is_put_back() {
    let repo = signed();
    let conf = openssh(&repo, "", None);
    repo.set_conf(&conf);
    for dist in ["bookworm", "trixie"] {
        let deb = repo.deb("old", "1.0", 2_000);
        repo.reprepro(&["includedeb", dist, deb.to_str().unwrap()])
            .expect(0);
    }
    let trixie = repo.remote().join("dists/trixie");
    let before = files_in(&trixie);
    // Both changes wait for one run, which finalises both distributions together.
    repo.set_conf("servername nowhere.invalid\n");
    let deb = repo.deb("new", "1.0", 3_000);
    for dist in ["bookworm", "trixie"] {
        let ran = repo.reprepro(&["includedeb", dist, deb.to_str().unwrap()]);
        assert_ne!(ran.code(), 0);
    }
    repo.set_conf(&openssh(&repo, "", Some("dists/trixie/Release")));
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    let err = ran.stderr();
    assert!(err.contains("dists/trixie: its finalisation failed half-way, so it was put back"));
    assert!(!err.contains("dists/bookworm: its finalisation"), "{err}");
    assert_eq!(files_in(&trixie), before, "{err}");
    assert!(repo.remote_index_names("new"), "bookworm is pushed: {err}");
    let bookworm = repo.remote().join("dists/bookworm");
    for dist in [&bookworm, &trixie] {
        assert_eq!(
            mismatching(dist),
            Vec::<String>::new(),
            "{}",
            dist.display()
        );
    }
    rerun_finishes(&repo, &conf, "trixie");
}

#[test]
fn a_server_killed_anywhere_in_the_finalisation_leaves_no_link_after_a_rerun() {
    let repo = signed();
    repo.set_conf(&openssh(&repo, "", None));
    push_old(&repo);
    repo.set_conf("servername nowhere.invalid\n");
    let deb = repo.deb("new", "1.0", 3_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    repo.save_state();
    repo.use_faulty_server(-1, "kill-server");
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    let total = repo.bytes_sent() as i64;
    // The finalisation is the end of this push: the links with the renames, then their
    // removal. Points every 25 bytes through its last 1500.
    let mut killed = 0;
    for after in (1..=60).map(|k| total - 25 * k) {
        repo.restore_state();
        repo.use_faulty_server(after, "kill-server");
        let ran = repo.hook(&["--basedir", ".", "--pending"]);
        killed += usize::from(ran.code() != 0);
        repo.use_server();
        repo.hook(&["--basedir", ".", "--pending"]).expect(0);
        repo.assert_mirrored(&[]);
        let dist = repo.remote().join("dists/bookworm");
        assert_eq!(mismatching(&dist), Vec::<String>::new(), "after {after}");
    }
    assert!(killed > 50, "{killed} of 60 points killed the push");
}

/// Points the conf at sftp-server behind the relay failing the renames of `name`, behind
/// the wrapper that kills it after `after` bytes (tests/fixtures/faulty_server.py); returns
/// the file the wrapper writes the bytes it passed to once it has ended.
fn kill_after(repo: &Repo, after: i64, name: &str) -> PathBuf {
    let count = repo.dir.path().join("killed-after");
    let _ = fs::remove_file(&count);
    let command = format!(
        "exec python3 '{}/tests/fixtures/faulty_server.py' '{}' {after} kill-server -- {} \
         /usr/lib/openssh/sftp-server -d '{}'",
        env!("CARGO_MANIFEST_DIR"),
        count.display(),
        relay(name),
        repo.remote().display()
    );
    repo.set_conf(&sftpcommand(repo, "killing.sh", &command));
    count
}

/// What the wrapper passed, once it has ended (it outlives the hook it served).
fn passed(count: &Path) -> i64 {
    for _ in 0..6000 {
        if let Ok(text) = fs::read_to_string(count) {
            return text.trim().parse().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{} never came", count.display());
}

#[test]
fn a_server_killed_anywhere_while_putting_back_leaves_a_rerun_to_finish() {
    let repo = signed();
    let conf = openssh(&repo, "", None);
    repo.set_conf(&conf);
    push_old(&repo);
    repo.set_conf("servername nowhere.invalid\n");
    let deb = repo.deb("new", "1.0", 3_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    repo.save_state();
    let count = kill_after(&repo, -1, "dists/bookworm/InRelease");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    assert!(
        ran.stderr().contains("so it was put back"),
        "{}",
        ran.stderr()
    );
    let total = passed(&count);
    // Putting back is the end of this push. Points every 20 bytes through its last 1000.
    for after in (1..=50).map(|k| total - 20 * k) {
        repo.restore_state();
        let count = kill_after(&repo, after, "dists/bookworm/InRelease");
        let _ = repo.hook(&["--basedir", ".", "--pending"]);
        passed(&count);
        repo.set_conf(&conf);
        let rerun = repo.hook(&["--basedir", ".", "--pending"]);
        rerun.expect(0);
        let dist = repo.remote().join("dists/bookworm");
        assert_eq!(mismatching(&dist), Vec::<String>::new(), "after {after}");
        repo.assert_mirrored(&[]);
    }
}

/// bookworm pushed with package `old` (with `conf`), then `new` added while the server
/// was out of reach: a distribution for `mirror` to publish over the old one. Returns the
/// remote bookworm and what it holds.
fn new_to_mirror(repo: &Repo, conf: &str) -> (PathBuf, BTreeMap<PathBuf, Vec<u8>>) {
    repo.set_conf(conf);
    push_old(repo);
    let dist = repo.remote().join("dists/bookworm");
    // Older than what comes: a Release written again within the same second, of the same
    // size, would look the same to mirror (which compares size and time).
    let aged = Command::new("find")
        .arg(&dist)
        .args([
            "-type",
            "f",
            "-exec",
            "touch",
            "-d",
            "@1000000000",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(aged.success());
    let before = files_in(&dist);
    repo.set_conf("servername nowhere.invalid\n");
    let deb = repo.deb("new", "1.0", 3_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    (dist, before)
}

/// `mirror` (with `conf`) finishes what a failed one left, and `verify` finds the remote
/// as the out dir, consistent.
fn mirror_again_finishes(repo: &Repo, conf: &str) {
    repo.set_conf(conf);
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    repo.hook(&["--basedir", ".", "verify"]).expect(0);
    repo.assert_mirrored(&[]);
    assert!(repo.remote_index_names("new"));
    let dist = repo.remote().join("dists/bookworm");
    assert_eq!(mismatching(&dist), Vec::<String>::new());
}

#[test]
fn a_failed_rename_during_mirror_puts_the_distribution_back_and_mirror_again_finishes() {
    let repo = signed();
    let conf = openssh(&repo, "", None);
    let (dist, before) = new_to_mirror(&repo, &conf);
    // An index in the middle of the batch: others are renamed before it.
    repo.set_conf(&openssh(
        &repo,
        "",
        Some("dists/bookworm/main/binary-amd64/Packages.gz"),
    ));
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(1);
    let err = ran.stderr();
    for needle in [
        "dists/bookworm/main/binary-amd64/Packages.gz",
        "dists/bookworm: its finalisation failed half-way, so it was put back as it was \
         before this mirror run",
        "apt clients see the old distribution, whole; a rerun ('outsftphook mirror') \
         finishes the mirror run",
        "put back after a failed finalisation",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // Right after: what apt can read of the distribution is the old one, whole, and no
    // link is left beside it.
    assert_eq!(files_in(&dist), before, "{err}");
    assert_eq!(mismatching(&dist), Vec::<String>::new());
    assert!(!repo.remote_index_names("new"));
    mirror_again_finishes(&repo, &conf);
    // A previous version a mirror cut off left is no file of the repository's: verify
    // says so, and a plain mirror (no --delete) removes it.
    fs::write(dist.join(".Release.prev"), "a version of long ago").unwrap();
    repo.hook(&["--basedir", ".", "verify"]).expect(1);
    mirror_again_finishes(&repo, &conf);
}

#[test]
fn without_hard_links_a_failed_rename_during_mirror_says_what_is_new_under_the_old_release() {
    let repo = signed();
    let conf = openssh(&repo, "", None);
    let (dist, _) = new_to_mirror(&repo, &conf);
    // OpenSSH's server does not announce a request it is told to deny.
    repo.set_conf(&openssh(
        &repo,
        "-P hardlink",
        Some("dists/bookworm/Release"),
    ));
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(1);
    says_not_put_back(
        &ran.stderr(),
        "until a rerun ('outsftphook mirror') finishes the mirror run",
        &dist,
    );
    mirror_again_finishes(&repo, &conf);
}

/// A push without hard links said in one line (`err`, ending with `rerun`) that bookworm
/// could not be put back, naming what is new beside the old Release; and it is so: the
/// renamed index disagrees with the old Release.
fn says_not_put_back(err: &str, rerun: &str, dist: &Path) {
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("could not be put back"))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    for needle in [
        "dists/bookworm: its finalisation failed half-way",
        "the server does not offer hardlink@openssh.com",
        "main/binary-amd64/Packages",
        "beside the old Release",
        "Hash Sum mismatch",
        rerun,
    ] {
        assert!(said[0].contains(needle), "{needle}: {err}");
    }
    assert!(
        mismatching(dist).contains(&"main/binary-amd64/Packages".to_string()),
        "{err}"
    );
}
