//! `mirror` as a careful administrator uses it: a wrong out dir never empties the mirror,
//! `--max-delete` bounds what `--delete` may remove, and `--checksum` repairs what
//! `verify --checksum` finds, as verify's advice says.

use std::fs;
use std::path::Path;

use crate::interop::repository;
use crate::repo::Repo;

/// Nothing reached the server: it was never even started.
fn assert_nothing_sent(repo: &Repo) {
    let log = fs::read_to_string(repo.server_log()).unwrap_or_default();
    assert!(log.is_empty(), "the server was used:\n{log}");
}

fn mirrored() -> Repo {
    let repo = repository(true);
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    repo.assert_mirrored(&[]);
    repo.clear_server_log();
    repo
}

#[test]
fn mirror_delete_from_a_missing_or_empty_top_is_refused_before_anything_is_sent() {
    let repo = mirrored();
    let empty = repo.dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let outdir = empty.to_str().unwrap();
    // A wrong out dir: no pool/, no dists/.
    let ran = repo.hook(&["--basedir", ".", "--outdir", outdir, "mirror", "--delete"]);
    ran.expect(2);
    assert!(
        ran.stderr().contains("pool, dists: missing or empty in")
            && ran.stderr().contains("would remove everything below it"),
        "{}",
        ran.stderr()
    );
    // Without --delete it does nothing harmful, but a tree with nothing to mirror is still
    // a mistake worth saying.
    let ran = repo.hook(&["--basedir", ".", "--outdir", outdir, "mirror"]);
    ran.expect(2);
    assert!(
        ran.stderr().contains("nothing to mirror"),
        "{}",
        ran.stderr()
    );
    // One empty top is enough to refuse --delete.
    fs::create_dir(empty.join("dists")).unwrap();
    let pool = repo.base().join("pool");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&pool)
        .arg(&empty)
        .status()
        .unwrap();
    assert!(status.success());
    let ran = repo.hook(&["--basedir", ".", "--outdir", outdir, "mirror", "--delete"]);
    ran.expect(2);
    assert!(
        ran.stderr().contains("dists: missing or empty"),
        "{}",
        ran.stderr()
    );
    // A DIR given that does not exist.
    let ran = repo.hook(&["--basedir", ".", "mirror", "--delete", "pool/main/q"]);
    ran.expect(2);
    assert_nothing_sent(&repo);
    repo.assert_mirrored(&[]);
}

#[test]
fn max_delete_refuses_more_deletions_than_allowed() {
    let repo = mirrored();
    let stray = repo.remote().join("pool/main/stray");
    fs::create_dir_all(&stray).unwrap();
    for name in ["a.deb", "b.deb"] {
        fs::write(stray.join(name), "stray").unwrap();
    }
    // Two files and their directory: three deletions.
    let ran = repo.hook(&["--basedir", ".", "mirror", "--delete", "--max-delete", "2"]);
    ran.expect(2);
    assert!(
        ran.stderr().contains(
            "would remove 3 remote files, links and directories, more than --max-delete 2"
        ),
        "{}",
        ran.stderr()
    );
    // The advice is a command that runs as it is written.
    assert!(
        ran.stderr()
            .contains("See them with 'outsftphook mirror --delete --dry-run'"),
        "{}",
        ran.stderr()
    );
    assert!(stray.join("a.deb").exists());
    // A dry run lists them, and says the same.
    let ran = repo.hook(&[
        "--basedir",
        ".",
        "--dry-run",
        "mirror",
        "--delete",
        "--max-delete=2",
    ]);
    ran.expect(2);
    assert!(
        ran.stdout().contains("remove pool/main/stray/a.deb"),
        "{}",
        ran.stdout()
    );
    assert!(
        ran.stdout().contains("rmdir pool/main/stray"),
        "{}",
        ran.stdout()
    );
    repo.hook(&["--basedir", ".", "mirror", "--delete", "--max-delete", "3"])
        .expect(0);
    assert!(!stray.exists());
    repo.assert_mirrored(&[]);
}

fn set_mtime(path: &Path, like: &Path) {
    let status = std::process::Command::new("touch")
        .arg("-r")
        .arg(like)
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn mirror_checksum_repairs_what_verify_checksum_finds() {
    let repo = mirrored();
    let foo = "pool/main/f/foo/foo_1.0_amd64.deb";
    let remote_foo = repo.remote().join(foo);
    let mut bytes = fs::read(&remote_foo).unwrap();
    bytes[100] ^= 1;
    fs::write(&remote_foo, &bytes).unwrap();
    set_mtime(&remote_foo, &repo.base().join(foo));

    let ran = repo.hook(&["--basedir", ".", "verify", "--checksum"]);
    ran.expect(1);
    assert!(
        ran.stderr()
            .contains("1 difference(s); 'outsftphook mirror --checksum' repairs them"),
        "{}",
        ran.stderr()
    );
    // Plain mirror cannot see it; the advice did not say it would.
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    assert_eq!(fs::read(&remote_foo).unwrap(), bytes);
    let ran = repo.hook(&["--basedir", ".", "mirror", "--checksum"]);
    ran.expect(0);
    assert!(
        ran.stderr().contains("mirror: 1 file(s)"),
        "{}",
        ran.stderr()
    );
    repo.assert_mirrored(&[]);

    // An extra file too: the advice names both flags, and following it repairs all.
    fs::write(&remote_foo, &bytes).unwrap();
    set_mtime(&remote_foo, &repo.base().join(foo));
    fs::write(repo.remote().join("pool/main/stray.deb"), "x").unwrap();
    let ran = repo.hook(&["--basedir", ".", "verify", "--checksum", "pool"]);
    ran.expect(1);
    assert!(
        ran.stderr()
            .contains("'outsftphook mirror --checksum --delete pool' repairs them"),
        "{}",
        ran.stderr()
    );
    repo.hook(&["--basedir", ".", "mirror", "--checksum", "--delete", "pool"])
        .expect(0);
    repo.assert_mirrored(&[]);
    repo.hook(&["--basedir", ".", "verify", "--checksum"])
        .expect(0);
}

#[test]
fn mirror_never_uploads_through_a_symlink_at_an_index_new_name() {
    let repo = mirrored();
    let outside = repo.dir.path().join("outside");
    fs::write(&outside, "precious").unwrap();
    let release = "dists/bookworm/Release";
    std::os::unix::fs::symlink(&outside, repo.remote().join(format!("{release}.new"))).unwrap();
    // Release changed locally: mirror uploads it as Release.new, then renames it.
    let status = std::process::Command::new("touch")
        .args(["-d", "2030-01-01 00:00:00"])
        .arg(repo.base().join(release))
        .status()
        .unwrap();
    assert!(status.success());
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
    repo.assert_mirrored(&[]);
}

/// A remote directory the server's user may not read is one difference, said with its
/// reason, and mirror leaves it alone and fails; nothing is taken for current below it.
#[test]
fn a_remote_directory_the_server_cannot_list_is_one_difference_not_the_end() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        crate::support::skip(
            "a_remote_directory_the_server_cannot_list",
            "needs root to run the server as another user",
        );
        return;
    }
    let repo = Repo::new();
    fs::write(repo.base().join("conf/options"), "").unwrap();
    for name in ["foo", "bar"] {
        let deb = repo.deb(name, "1.0", 3_000);
        repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
            .expect(0);
    }
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    // The server runs as nobody, who owns the mirror, but one directory is root's and
    // closed.
    fs::set_permissions(repo.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["-R", "nobody"])
        .arg(repo.remote())
        .status()
        .unwrap();
    assert!(chown.success());
    let closed = repo.remote().join("pool/main/f/foo");
    std::process::Command::new("chown")
        .arg("root")
        .arg(&closed)
        .status()
        .unwrap();
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
    let script = repo.dir.path().join("nobody.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec runuser -u nobody -- /usr/lib/openssh/sftp-server -d '{}'\n",
            repo.remote().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n", script.display()));

    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(1);
    let out = ran.stdout();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(
            "pool/main/f/foo: differs: local directory, remote directory that cannot be listed"
        ),
        "{out}"
    );
    assert!(
        ran.stderr().contains("cannot be listed"),
        "{}",
        ran.stderr()
    );
    assert!(!ran.stderr().contains("repairs"), "{}", ran.stderr());

    let ran = repo.hook(&["--basedir", ".", "mirror", "--delete"]);
    ran.expect(1);
    assert!(
        ran.stderr()
            .contains("pool/main/f/foo: the server cannot list this remote directory"),
        "{}",
        ran.stderr()
    );
    // Opened again, all is as it was.
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o755)).unwrap();
    repo.hook(&["--basedir", ".", "verify"]).expect(0);
}

/// A mistyped out dir is a setting to fix, not a remote to report as all extra.
#[test]
fn verify_and_mirror_with_a_missing_out_dir_exit_2_naming_it() {
    let repo = mirrored();
    for command in ["verify", "mirror"] {
        let ran = repo.hook(&["--basedir", ".", "--outdir", "no-such-dir", command]);
        ran.expect(2);
        assert!(ran.stderr().contains("no-such-dir"), "{}", ran.stderr());
        assert_eq!(ran.stderr().lines().count(), 1, "{}", ran.stderr());
    }
}
