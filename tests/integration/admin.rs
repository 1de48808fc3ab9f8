//! Operating by hand: mirror, verify, status and dry runs, on a real reprepro repository.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::repo::Repo;

/// A repository built without the hook (no outhook): two distributions, a suite symlink.
fn repository() -> Repo {
    let repo = crate::interop::repository(true);
    assert!(repo.outlogs().is_empty(), "no hook, no logs");
    repo
}

/// Every byte, link and directory below `dir`, for before/after comparisons.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        let meta = fs::symlink_metadata(&p).unwrap();
        let key = p.strip_prefix(dir).unwrap().display().to_string();
        if meta.file_type().is_symlink() {
            out.push((
                key,
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            ));
        } else if meta.is_dir() {
            out.push((key, b"<dir>".to_vec()));
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        } else {
            out.push((key, fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

fn set_mtime(path: &Path, like: &Path) {
    let status = std::process::Command::new("touch")
        .arg("-h")
        .arg("-r")
        .arg(like)
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn mirror_seeds_an_empty_target_and_a_second_run_transfers_nothing() {
    let repo = repository();
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    repo.assert_mirrored(&[]);
    assert!(repo.remote().join("dists/stable").is_symlink());
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    assert!(
        ran.stderr()
            .contains("mirror: 0 file(s) uploaded (0 B), 0 error(s)"),
        "{}",
        ran.stderr()
    );
    let ran = repo.hook(&["--basedir", ".", "verify", "--checksum"]);
    ran.expect(0);
    assert!(
        ran.stderr().contains("the remote matches"),
        "{}",
        ran.stderr()
    );
}

#[test]
fn verify_finds_each_kind_of_tampering_and_mirror_delete_repairs_it() {
    let repo = repository();
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    let remote = repo.remote();
    let local = repo.base();
    // 1. A changed byte, same size and time: only content comparison can see it.
    let packages = "dists/bookworm/main/binary-amd64/Packages";
    let mut bytes = fs::read(remote.join(packages)).unwrap();
    bytes[10] ^= 0x20;
    fs::write(remote.join(packages), &bytes).unwrap();
    set_mtime(&remote.join(packages), &local.join(packages));
    // 2. A deleted file, 3. an extra file, 4. a wrong symlink.
    let bar = "pool/main/b/bar/bar_1.0_amd64.deb";
    fs::remove_file(remote.join(bar)).unwrap();
    fs::write(remote.join("pool/main/stray.deb"), "stray").unwrap();
    fs::remove_file(remote.join("dists/stable")).unwrap();
    symlink("trixie", remote.join("dists/stable")).unwrap();

    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(1);
    let out = ran.stdout();
    assert!(out.contains(&format!("{bar}: missing")), "{out}");
    assert!(out.contains("pool/main/stray.deb: extra"), "{out}");
    assert!(
        out.contains("dists/stable: differs: local symlink to bookworm, remote symlink to trixie"),
        "{out}"
    );
    assert!(!out.contains(packages), "size and time match: {out}");

    let ran = repo.hook(&["--basedir", ".", "verify", "--checksum"]);
    ran.expect(1);
    assert!(
        ran.stdout().contains(&format!(
            "{packages}: differs: same size and time, other content"
        )),
        "{}",
        ran.stdout()
    );

    // mirror without --delete leaves the extra file; the changed content is invisible to
    // it (same size and time) unless the file's time changes locally.
    let status = std::process::Command::new("touch")
        .args(["-d", "2020-01-01 00:00:00"])
        .arg(local.join(packages))
        .status()
        .unwrap();
    assert!(status.success());
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    assert!(remote.join("pool/main/stray.deb").exists());
    repo.hook(&["--basedir", ".", "mirror", "--delete"])
        .expect(0);
    repo.assert_mirrored(&[]);
    repo.hook(&["--basedir", ".", "verify", "--checksum"])
        .expect(0);
}

#[test]
fn dry_runs_change_nothing() {
    let repo = repository();
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    fs::write(repo.remote().join("pool/extra"), "x").unwrap();
    fs::remove_file(repo.remote().join("dists/trixie/Release")).unwrap();
    let before = snapshot(&repo.remote());
    let ran = repo.hook(&["--basedir", ".", "--dry-run", "mirror", "--delete"]);
    ran.expect(0);
    assert_eq!(
        ran.stdout(),
        "upload dists/trixie/Release.new\nrename dists/trixie/Release.new dists/trixie/Release\nremove pool/extra\n"
    );
    assert_eq!(snapshot(&repo.remote()), before);

    // The hook: a pending log, printed in the order a run would do it, not sent, not
    // journalled.
    let server = repo.dir.path().join("server.sh");
    fs::write(
        repo.base().join("conf/options"),
        format!("outhook {}\n", crate::repo::BIN),
    )
    .unwrap();
    repo.set_conf("servername nowhere.invalid\n");
    let qux = repo.deb("qux", "1.0", 100);
    assert_ne!(
        repo.reprepro(&["includedeb", "bookworm", qux.to_str().unwrap()])
            .code(),
        0
    );
    repo.set_conf(&format!("sftpcommand {}\n", server.display()));
    let log = repo.logs().join(&repo.outlogs()[0]);
    let journal_before = fs::read(&log).unwrap();
    let ran = repo.hook(&["--basedir", ".", "--pending", "--dry-run"]);
    ran.expect(0);
    let stdout = ran.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "upload pool/main/q/qux/qux_1.0_amd64.deb");
    assert!(lines.contains(&"rename dists/bookworm/Release.new dists/bookworm/Release"));
    let release = lines
        .iter()
        .position(|l| l.ends_with(" dists/bookworm/Release"))
        .unwrap();
    let index = lines
        .iter()
        .position(|l| l.starts_with("rename dists/bookworm/main/binary-amd64/Packages.new"))
        .unwrap();
    assert!(index < release, "indexes before Release: {lines:?}");
    assert_eq!(snapshot(&repo.remote()), before);
    assert_eq!(fs::read(&log).unwrap(), journal_before);

    let ran = repo.hook(&["--basedir", ".", "status", "-v"]);
    ran.expect(4);
    assert!(
        ran.stdout().contains(".outlog: ") && ran.stdout().contains("upload pool/main/q/qux"),
        "{}",
        ran.stdout()
    );
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    let ran = repo.hook(&["--basedir", ".", "status"]);
    ran.expect(0);
    assert!(
        ran.stdout().starts_with("no pending outlogs"),
        "{}",
        ran.stdout()
    );
}

#[test]
fn completions_in_contrib_match_the_command_line() {
    for (shell, file) in [
        ("bash", "contrib/completions/outsftphook.bash"),
        ("zsh", "contrib/completions/_outsftphook"),
        ("fish", "contrib/completions/outsftphook.fish"),
    ] {
        let out = std::process::Command::new(crate::repo::BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let committed = fs::read(&path).unwrap_or_default();
        assert!(
            committed == out.stdout,
            "{file} is out of date: run `outsftphook completions {shell} > {file}`"
        );
    }
}

#[test]
fn mirror_replaces_a_remote_symlink_instead_of_writing_through_it() {
    let repo = repository();
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    let outside = repo.dir.path().join("outside");
    fs::write(&outside, "precious").unwrap();
    let foo = repo.remote().join("pool/main/f/foo/foo_1.0_amd64.deb");
    fs::remove_file(&foo).unwrap();
    symlink(&outside, &foo).unwrap();
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
    assert!(!foo.is_symlink());
    repo.assert_mirrored(&[]);
}

#[test]
fn a_conflict_is_reported_and_the_rest_is_still_mirrored() {
    let repo = repository();
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    let remote = repo.remote();
    fs::remove_file(remote.join("dists/bookworm/main/binary-amd64/Packages")).unwrap();
    let release = remote.join("dists/bookworm/main/source/Release");
    fs::remove_file(&release).unwrap();
    fs::create_dir(&release).unwrap();
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(1);
    assert!(
        ran.stderr()
            .contains("dists/bookworm/main/source/Release: a directory on the remote"),
        "{}",
        ran.stderr()
    );
    // Everything else was fixed, and no .new was left behind.
    assert!(
        remote
            .join("dists/bookworm/main/binary-amd64/Packages")
            .is_file()
    );
    assert!(
        !remote
            .join("dists/bookworm/main/binary-amd64/Packages.new")
            .exists()
    );
}
