//! No `NAME.new` of ours is left on the remote once a run exits 0, even when a newer log
//! deletes (or makes a symlink of) a file an earlier, failed or killed run uploaded as
//! `.new`. Hand-written logs, OpenSSH's real sftp-server.

use std::fs;
use std::path::{Path, PathBuf};

use crate::repo::Repo;

const INDEXES: &[&str] = &[
    "main/binary-amd64/Packages",
    "main/binary-amd64/Packages.xz",
];

/// A repository with local index files of `dists/b` and no log yet.
fn repository() -> Repo {
    let repo = Repo::new();
    fs::create_dir_all(repo.logs()).unwrap();
    for name in INDEXES.iter().chain(&["Release"]) {
        let path = repo.base().join("dists/b").join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("{name}\n").repeat(2000)).unwrap();
    }
    repo
}

/// Writes log `NAME.outlog` with `lines` (tab-separated words, `dists/b` implied) between
/// BEGIN and END.
fn write_log(repo: &Repo, name: &str, lines: &[&str]) -> PathBuf {
    let mut text = String::from("BEGIN-DISTRIBUTION\tb\tdists/b\n");
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        text.push_str(&format!("{}\tdists/b\t{}", words[0], words[1]));
        match words[0] {
            "DISTFILE" => {
                let local = repo.base().join("dists/b").join(words[1]);
                text.push_str(&format!("\t{}", local.display()));
            }
            "DISTSYMLINK" => text.push_str(&format!("\t{}", words[2])),
            _ => {}
        }
        text.push('\n');
    }
    text.push_str("END-DISTRIBUTION\tb\tdists/b\n");
    let path = repo.logs().join(format!("{name}.outlog"));
    fs::write(&path, text).unwrap();
    path
}

/// The first log: both indexes and Release.
fn first_log(repo: &Repo) -> PathBuf {
    write_log(
        repo,
        "1795639216-first",
        &[
            "DISTFILE main/binary-amd64/Packages",
            "DISTFILE main/binary-amd64/Packages.xz",
            "DISTFILE Release",
        ],
    )
}

/// The next one: Packages.xz is gone, Packages is now a symlink.
fn next_log(repo: &Repo) -> PathBuf {
    write_log(
        repo,
        "1795639217-next",
        &[
            "DISTDELETE main/binary-amd64/Packages.xz",
            "DISTSYMLINK main/binary-amd64/Packages ../Packages-common",
            "DISTFILE Release",
        ],
    )
}

/// Every `.new` file below `dir`, and every temporary file (`.NAME.tmp`) an upload left.
fn dot_new_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().ends_with(".new") || p.to_string_lossy().ends_with(".tmp")
            {
                found.push(p);
            }
        }
    }
    found
}

/// The remote as the newest log leaves it.
fn assert_final_state(repo: &Repo) {
    let dir = repo.remote().join("dists/b");
    assert_eq!(dot_new_files(&repo.remote()), Vec::<PathBuf>::new());
    assert!(!dir.join("main/binary-amd64/Packages.xz").exists());
    assert_eq!(
        fs::read_link(dir.join("main/binary-amd64/Packages")).unwrap(),
        Path::new("../Packages-common")
    );
    assert_eq!(
        fs::read(dir.join("Release")).unwrap(),
        fs::read(repo.base().join("dists/b/Release")).unwrap()
    );
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
}

#[test]
fn a_newer_deletion_removes_the_dot_new_a_failed_run_left() {
    let repo = repository();
    first_log(&repo);
    // The uploads arrive as .new; a directory stands where Packages.xz goes, so that its
    // rename fails: the run fails, puts back what it had renamed (as .new again), and
    // leaves the three .new files.
    let in_the_way = repo
        .remote()
        .join("dists/b/main/binary-amd64/Packages.xz/x");
    fs::create_dir_all(&in_the_way).unwrap();
    repo.hook(&["--basedir", ".", "--pending"]).expect(1);
    let mut left = dot_new_files(&repo.remote());
    left.sort();
    let dir = repo.remote().join("dists/b");
    let expected: Vec<PathBuf> = [
        "Release.new",
        "main/binary-amd64/Packages.new",
        "main/binary-amd64/Packages.xz.new",
    ]
    .iter()
    .map(|n| dir.join(n))
    .collect();
    assert_eq!(left, expected);
    fs::remove_dir_all(in_the_way.parent().unwrap()).unwrap();
    let text = fs::read_to_string(repo.logs().join("1795639216-first.outlog")).unwrap();
    assert!(
        text.contains("DONE\tasdotnew\tdists/b/main/binary-amd64/Packages.xz\n"),
        "{text}"
    );

    next_log(&repo);
    repo.use_server();
    let ran = repo.hook(&["--basedir", ".", "--pending", "-v"]);
    ran.expect(0);
    assert_final_state(&repo);
    let first = fs::read_to_string(repo.logs().join("1795639216-first.done")).unwrap();
    assert!(
        first.contains("DONE\tdeleted\tdists/b/main/binary-amd64/Packages.xz.new\n"),
        "{first}"
    );
    // Nothing is left to do: a rerun sends nothing.
    repo.clear_server_log();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    assert!(repo.server_ops().is_empty(), "{:?}", repo.server_ops());
}

#[test]
fn after_the_hook_is_killed_mid_upload_the_next_log_leaves_no_dot_new() {
    let repo = repository();
    first_log(&repo);
    repo.save_state();
    repo.use_faulty_server(-1, "kill-hook");
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    let total = repo.bytes_sent() as i64;
    let mut left_some = 0;
    // Through the uploads, and closely through the end, where the .new files have landed
    // and wait for their renames.
    let points = (1..10)
        .map(|k| total * k / 10)
        .chain((1..=12).map(|k| total - 40 * k));
    for after in points {
        repo.restore_state();
        repo.use_faulty_server(after, "kill-hook");
        let ran = repo.hook(&["--basedir", ".", "--pending"]);
        assert_eq!(ran.code(), -1, "after {after}: not killed");
        // What the killed hook had sent is still being carried out.
        repo.wait_for_faulty_server();
        left_some += usize::from(!dot_new_files(&repo.remote()).is_empty());
        next_log(&repo);
        repo.use_server();
        repo.hook(&["--basedir", ".", "--pending"]).expect(0);
        assert_final_state(&repo);
    }
    assert!(
        left_some > 0,
        "no kill left a .new behind: the test tests nothing"
    );
}
