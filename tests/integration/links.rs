//! Servers that refuse SYMLINK (issue 11, point 17): OpenSSH's `sftp-server -P symlink`
//! answers PERMISSION_DENIED, rclone OP_UNSUPPORTED. With `symlinks auto` (the default) a
//! refused link is uploaded as a copy of what it leads to, said once; `yes` fails and says
//! what to set; `copy` never sends a SYMLINK. No distribution's `Release` is held back.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::repo::{Ran, Repo};

const WARNING: &str = "the server refuses symlinks (";

/// Points the conf at OpenSSH's server refusing SYMLINK (logging at DEBUG1, which names
/// each refused request), with `extra` conf lines.
fn refusing_server(repo: &Repo, extra: &str) {
    let script = repo.dir.path().join("refusing.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec /usr/lib/openssh/sftp-server -e -l DEBUG1 -P symlink -d '{}' \
             2>>'{}'\n",
            repo.remote().display(),
            repo.server_log().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n{extra}", script.display()));
}

/// Points the conf at the normal server (which makes links), with `extra` conf lines.
fn linking_server(repo: &Repo, extra: &str) {
    repo.use_server();
    let conf = repo.base().join("conf/outsftphook.conf");
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(conf, format!("{text}{extra}")).unwrap();
}

/// How many SYMLINK requests the server refused, and how many it carried out.
fn symlinks_logged(repo: &Repo) -> (usize, usize) {
    let log = fs::read_to_string(repo.server_log()).unwrap_or_default();
    (
        log.matches("Refusing denylisted symlink request").count(),
        log.lines()
            .filter(|l| l.starts_with("symlink old "))
            .count(),
    )
}

fn warnings(ran: &Ran) -> usize {
    ran.stderr().matches(WARNING).count()
}

/// A dist dir `dists/b` with an index, a Release, and (as reprepro would have made them)
/// the links `main/current -> binary-amd64` (a directory) and `Packages-link ->
/// main/binary-amd64/Packages` (a file); a log naming all of them.
fn hook_repository() -> Repo {
    let repo = Repo::new();
    fs::create_dir_all(repo.logs()).unwrap();
    let dist = repo.base().join("dists/b");
    fs::create_dir_all(dist.join("main/binary-amd64")).unwrap();
    fs::write(
        dist.join("main/binary-amd64/Packages"),
        "Package: foo\n".repeat(500),
    )
    .unwrap();
    fs::write(dist.join("Release"), "Codename: b\n").unwrap();
    symlink("binary-amd64", dist.join("main/current")).unwrap();
    symlink("main/binary-amd64/Packages", dist.join("Packages-link")).unwrap();
    let local = |name: &str| dist.join(name).display().to_string();
    fs::write(
        repo.logs().join("1795639216-links.outlog"),
        format!(
            "BEGIN-DISTRIBUTION\tb\tdists/b\n\
             DISTFILE\tdists/b\tmain/binary-amd64/Packages\t{}\n\
             DISTSYMLINK\tdists/b\tmain/current\tbinary-amd64\n\
             DISTSYMLINK\tdists/b\tPackages-link\tmain/binary-amd64/Packages\n\
             DISTFILE\tdists/b\tRelease\t{}\n\
             END-DISTRIBUTION\tb\tdists/b\n",
            local("main/binary-amd64/Packages"),
            local("Release")
        ),
    )
    .unwrap();
    repo
}

/// The remote `dists/b` holds copies where the links are, its Release, and no `.new`.
fn assert_copied(repo: &Repo) {
    let remote = repo.remote().join("dists/b");
    let packages = fs::read(repo.base().join("dists/b/main/binary-amd64/Packages")).unwrap();
    for copy in ["main/current/Packages", "Packages-link"] {
        let path = remote.join(copy);
        assert!(
            fs::symlink_metadata(&path).unwrap().is_file(),
            "{copy} is no file"
        );
        assert_eq!(fs::read(&path).unwrap(), packages, "{copy}");
    }
    assert!(
        fs::symlink_metadata(remote.join("main/current"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(fs::read(remote.join("Release")).unwrap(), b"Codename: b\n");
    assert_no_dot_new(&repo.remote());
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
}

fn assert_no_dot_new(dir: &Path) {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p: PathBuf = e.unwrap().path();
            let name = p.to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".new") && !name.ends_with(".tmp"),
                "{name} is left"
            );
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p);
            }
        }
    }
}

#[test]
fn the_hook_copies_refused_symlinks_says_so_once_and_releases_the_distribution() {
    let repo = hook_repository();
    refusing_server(&repo, "");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(0);
    assert_eq!(warnings(&ran), 1, "{}", ran.stderr());
    assert!(
        ran.stderr()
            .contains("uploading copies of their targets instead; set 'symlinks copy' to say so"),
        "{}",
        ran.stderr()
    );
    assert_copied(&repo);
    let done = fs::read_to_string(repo.logs().join("1795639216-links.done")).unwrap();
    assert!(
        done.contains("DONE\tdone\tdists/b/main/current\n"),
        "{done}"
    );
    assert!(
        done.contains("DONE\tdone\tdists/b/Packages-link\n"),
        "{done}"
    );
}

#[test]
fn with_symlinks_yes_a_refused_link_fails_the_run_and_says_what_to_set() {
    let repo = hook_repository();
    refusing_server(&repo, "symlinks yes\n");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    assert!(
        ran.stderr()
            .contains("the server refuses symlinks; set 'symlinks copy' (or auto) in"),
        "{}",
        ran.stderr()
    );
    assert_eq!(warnings(&ran), 0, "{}", ran.stderr());
    // Release waits for its links, and says why; set as told, the next run finishes.
    assert!(repo.remote().join("dists/b/Release.new").exists());
    refusing_server(&repo, "symlinks copy\n");
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    assert_copied(&repo);
}

#[test]
fn with_symlinks_copy_the_hook_sends_no_symlink_at_all() {
    for refusing in [true, false] {
        let repo = hook_repository();
        if refusing {
            refusing_server(&repo, "symlinks copy\n");
        } else {
            linking_server(&repo, "symlinks copy\n");
        }
        let ran = repo.hook(&["--basedir", ".", "--pending"]);
        ran.expect(0);
        assert_eq!(warnings(&ran), 0, "{}", ran.stderr());
        assert_eq!(symlinks_logged(&repo), (0, 0), "refusing: {refusing}");
        assert_copied(&repo);
    }
}

#[test]
fn with_symlinks_copy_a_link_leading_out_of_the_dist_dir_is_refused_before_anything_is_sent() {
    let repo = hook_repository();
    fs::write(
        repo.logs().join("1795639217-out.outlog"),
        "BEGIN-DISTRIBUTION\tb\tdists/b\n\
         DISTSYMLINK\tdists/b\tup\t../../conf\n\
         END-DISTRIBUTION\tb\tdists/b\n",
    )
    .unwrap();
    refusing_server(&repo, "symlinks copy\n");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(2);
    assert!(
        ran.stderr()
            .contains("1795639217-out.outlog:2: dists/b/up:")
            && ran.stderr().contains("refused, no copy of it is uploaded"),
        "{}",
        ran.stderr()
    );
    assert!(repo.server_ops().is_empty(), "{:?}", repo.server_ops());
}

/// A reprepro repository with `dists/stable -> bookworm` (createsymlinks).
fn mirror_repository() -> Repo {
    crate::interop::repository(true)
}

#[test]
fn mirror_copies_a_refused_suite_link_and_verify_then_matches() {
    let repo = mirror_repository();
    refusing_server(&repo, "");
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    assert_eq!(warnings(&ran), 1, "{}", ran.stderr());
    let stable = repo.remote().join("dists/stable");
    assert!(fs::symlink_metadata(&stable).unwrap().is_dir());
    assert_eq!(
        fs::read(stable.join("Release")).unwrap(),
        fs::read(repo.base().join("dists/bookworm/Release")).unwrap()
    );
    assert_no_dot_new(&repo.remote());
    let ran = repo.hook(&["--basedir", ".", "verify", "--checksum"]);
    ran.expect(0);
    assert!(
        ran.stderr().contains("the remote matches"),
        "{}",
        ran.stderr()
    );
    // The copy is taken as one: a second mirror sends nothing, not even a SYMLINK.
    repo.clear_server_log();
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    assert!(
        ran.stderr()
            .contains("mirror: 0 file(s) uploaded (0 B), 0 error(s)"),
        "{}",
        ran.stderr()
    );
    assert_eq!(warnings(&ran), 0, "{}", ran.stderr());
    assert_eq!(symlinks_logged(&repo), (0, 0));
}

#[test]
fn mirror_with_symlinks_yes_fails_on_a_refused_link_and_holds_no_release_for_ever() {
    let repo = mirror_repository();
    refusing_server(&repo, "symlinks yes\n");
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(1);
    assert!(
        ran.stderr()
            .contains("symlink dists/stable: SYMLINK failed: PERMISSION_DENIED")
            && ran.stderr().contains("set 'symlinks copy' (or auto)"),
        "{}",
        ran.stderr()
    );
    // Set as told, the next mirror finishes: every Release lands, no .new is left.
    refusing_server(&repo, "symlinks copy\n");
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    assert_no_dot_new(&repo.remote());
    repo.hook(&["--basedir", ".", "verify"]).expect(0);
}

#[test]
fn mirror_with_symlinks_copy_sends_no_symlink_and_verify_matches() {
    let repo = mirror_repository();
    linking_server(&repo, "symlinks copy\n");
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    assert_eq!(warnings(&ran), 0, "{}", ran.stderr());
    assert_eq!(symlinks_logged(&repo), (0, 0));
    assert!(
        fs::symlink_metadata(repo.remote().join("dists/stable"))
            .unwrap()
            .is_dir()
    );
    repo.hook(&["--basedir", ".", "verify", "--checksum"])
        .expect(0);
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    assert!(
        ran.stderr()
            .contains("mirror: 0 file(s) uploaded (0 B), 0 error(s)"),
        "{}",
        ran.stderr()
    );
}

#[test]
fn the_hook_keeps_the_copy_of_a_suite_link_current() {
    // `dists/stable -> bookworm` is named by no outlog (createsymlinks): its copy follows
    // bookworm's changes, before the pool deletions its old indexes still name.
    let repo = mirror_repository();
    refusing_server(&repo, "");
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    fs::write(
        repo.base().join("conf/options"),
        format!("outhook {}\n", crate::repo::BIN),
    )
    .unwrap();
    let qux = repo.deb("qux", "1.0", 7_000);
    repo.reprepro(&["includedeb", "bookworm", qux.to_str().unwrap()])
        .expect(0);
    repo.clear_server_log();
    repo.reprepro(&["remove", "bookworm", "bar"]).expect(0);
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
    let log = fs::read_to_string(repo.server_log()).unwrap();
    let at = |what: &dyn Fn(&str) -> bool| log.lines().position(what);
    let renamed = at(&|l| l.contains("rename old") && l.contains("dists/stable/"));
    let removed = at(&|l| l.starts_with("remove name") && l.ends_with("/bar_1.0_amd64.deb\""));
    assert!(
        matches!((renamed, removed), (Some(r), Some(d)) if r < d),
        "the copy of stable must be current before bar leaves the pool:\n{log}"
    );
    let ran = repo.hook(&["--basedir", ".", "verify", "--checksum"]);
    ran.expect(0);
    let stable = repo.remote().join("dists/stable");
    assert!(fs::symlink_metadata(&stable).unwrap().is_dir());
    assert_no_dot_new(&repo.remote());
    let packages = "main/binary-amd64/Packages";
    let copy = fs::read_to_string(stable.join(packages)).unwrap();
    assert!(
        copy.contains("Package: qux") && !copy.contains("Package: bar"),
        "{copy}"
    );
}

#[test]
fn a_copy_of_a_directory_in_the_way_of_its_link_is_kept_current() {
    // The copy made where links were refused stands where a later link goes, on a server
    // that makes links: a directory cannot be removed as a link's place is cleared, so it
    // stays a copy, brought up to date, and the distribution is finalised.
    let repo = hook_repository();
    refusing_server(&repo, "");
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    let dist = repo.base().join("dists/b");
    fs::write(
        dist.join("main/binary-amd64/Packages"),
        "Package: bar\n".repeat(300),
    )
    .unwrap();
    fs::write(dist.join("Release"), "Codename: b\nVersion: 2\n").unwrap();
    let local = |name: &str| dist.join(name).display().to_string();
    fs::write(
        repo.logs().join("1795639217-again.outlog"),
        format!(
            "BEGIN-DISTRIBUTION\tb\tdists/b\n\
             DISTFILE\tdists/b\tmain/binary-amd64/Packages\t{}\n\
             DISTSYMLINK\tdists/b\tmain/current\tbinary-amd64\n\
             DISTFILE\tdists/b\tRelease\t{}\n\
             END-DISTRIBUTION\tb\tdists/b\n",
            local("main/binary-amd64/Packages"),
            local("Release")
        ),
    )
    .unwrap();
    linking_server(&repo, "");
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(0);
    assert_eq!(warnings(&ran), 0, "{}", ran.stderr());
    let remote = repo.remote().join("dists/b");
    assert_eq!(
        fs::read_to_string(remote.join("main/current/Packages")).unwrap(),
        "Package: bar\n".repeat(300)
    );
    assert_eq!(
        fs::read_to_string(remote.join("Release")).unwrap(),
        "Codename: b\nVersion: 2\n"
    );
    assert_no_dot_new(&repo.remote());
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
}
