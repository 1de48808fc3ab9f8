//! Full disks, real ones: a tmpfs mounted by the test (root only) for the log dir, which
//! fills up while the hook journals, or for the remote, which fills up mid-upload.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo::Repo;
use crate::support::skip;

/// A small tmpfs mounted for the test, unmounted when dropped.
pub(crate) struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts it at `dir`, or says why it cannot: not root, or mounting is not allowed.
    pub(crate) fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }

    /// Gives the file system more room, keeping what is on it.
    pub(crate) fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Writes a file until the file system is full.
    pub(crate) fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..1]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn a_journal_line_torn_by_a_full_log_disk_is_repaired_and_the_push_finishes() {
    let repo = Repo::new();
    let tmpfs = match Tmpfs::mount(&repo.logs(), "64k") {
        Ok(t) => t,
        Err(why) => {
            return skip(
                "a_journal_line_torn_by_a_full_log_disk_is_repaired_and_the_push_finishes",
                &why,
            );
        }
    };
    // Many long pool paths: their journal lines are more than the last page of the log
    // can take, whatever room is left in it.
    repo.set_conf("servername nowhere.invalid\n");
    let debs: Vec<String> = (0..40)
        .map(|i| {
            repo.deb(&format!("p{i:02}-{}", "x".repeat(60)), "1.0", 100)
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["includedeb", "bookworm"];
    args.extend(debs.iter().map(String::as_str));
    assert_ne!(repo.reprepro(&args).code(), 0);
    let pending = repo.logs().join(&repo.outlogs()[0]);
    repo.use_server();
    // The lock file takes its page before the disk is full.
    repo.hook(&["--basedir", ".", "--pending", "--dry-run"])
        .expect(0);
    let filler = tmpfs.fill();

    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(1);
    for needle in ["make room for the log", "No space left on device"] {
        assert!(ran.stderr().contains(needle), "{needle}: {}", ran.stderr());
    }
    // The line the full disk cut short is cut off again at once: another mirror's journal
    // could append behind it, and a fragment mid-log would be no torn tail. (A run
    // killed mid-line leaves a torn tail, which the next run cuts off: unit-tested.)
    let cut = fs::read(&pending).unwrap();
    assert_eq!(
        cut.last(),
        Some(&b'\n'),
        "the torn line was left in the log"
    );

    // Space again: reprepro's next run retries the log first (autoretry) and finishes it.
    fs::remove_file(filler).unwrap();
    repo.reprepro(&["export"]).expect(0);
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
    repo.assert_mirrored(&[]);
    for name in repo.done_logs() {
        let text = fs::read_to_string(repo.logs().join(&name)).unwrap();
        assert!(text.ends_with('\n'), "{name}: {text}");
        outsftphook::parse_outlog(Path::new(&name), text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
    drop(tmpfs);
}

/// Every temporary file (`.NAME.tmp`) an upload left below `dir`. (A failed run may leave
/// a dist file's `NAME.new`, journalled `asdotnew`: the retry renames it.)
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else if name.ends_with(".tmp") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_full_remote_disk_fails_the_push_truthfully_and_leaves_nothing_half_written() {
    let repo = Repo::new();
    let tmpfs = match Tmpfs::mount(&repo.remote(), "512k") {
        Ok(t) => t,
        Err(why) => {
            return skip(
                "a_full_remote_disk_fails_the_push_truthfully_and_leaves_nothing_half_written",
                &why,
            );
        }
    };
    let small = repo.deb("small", "1.0", 2_000);
    repo.reprepro(&["includedeb", "bookworm", small.to_str().unwrap()])
        .expect(0);
    // The server's disk cannot take this package: ENOSPC in the middle of its WRITEs.
    let big = repo.deb("big", "1.0", 800_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", big.to_str().unwrap()]);
    assert_ne!(ran.code(), 0, "{}", ran.stderr());
    assert!(
        ran.stderr().contains("big_1.0_amd64.deb"),
        "{}",
        ran.stderr()
    );
    // No index names the missing file, no partial file at its name, nothing half done.
    assert!(
        !repo
            .remote()
            .join("pool/main/b/big/big_1.0_amd64.deb")
            .exists()
    );
    assert!(!repo.remote_index_names("big"));
    assert_eq!(leftovers(&repo.remote()), Vec::<PathBuf>::new());
    let pending = fs::read_to_string(repo.logs().join(&repo.outlogs()[0])).unwrap();
    assert!(
        !pending.contains("DONE\tdone\tpool/main/b/big/"),
        "{pending}"
    );
    // Room again (the same file system, grown): the retry completes.
    tmpfs.grow("4m");
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
    drop(tmpfs);
}

#[test]
fn a_mirror_onto_a_full_remote_disk_is_never_taken_for_current() {
    let repo = Repo::new();
    fs::write(repo.base().join("conf/options"), "").unwrap();
    let tmpfs = match Tmpfs::mount(&repo.remote(), "512k") {
        Ok(t) => t,
        Err(why) => {
            return skip(
                "a_mirror_onto_a_full_remote_disk_is_never_taken_for_current",
                &why,
            );
        }
    };
    for (name, size) in [("a", 2_000), ("b", 300_000), ("c", 300_000)] {
        let deb = repo.deb(name, "1.0", size);
        repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
            .expect(0);
    }
    repo.hook(&["--basedir", ".", "mirror"]).expect(1);
    assert_eq!(leftovers(&repo.remote()), Vec::<PathBuf>::new());
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(1);
    assert!(ran.stdout().contains(": missing"), "{}", ran.stdout());
    tmpfs.grow("4m");
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    repo.hook(&["--basedir", ".", "verify", "--checksum"])
        .expect(0);
    repo.assert_mirrored(&["dists/stable"]);
    drop(tmpfs);
}

#[test]
fn a_full_remote_disk_is_said_once_with_the_room_left() {
    let repo = Repo::new();
    fs::write(repo.base().join("conf/options"), "").unwrap();
    let tmpfs = match Tmpfs::mount(&repo.remote(), "512k") {
        Ok(t) => t,
        Err(why) => return skip("a_full_remote_disk_is_said_once_with_the_room_left", &why),
    };
    for i in 0..12 {
        let deb = repo.deb(&format!("p{i}"), "1.0", 100_000);
        repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
            .expect(0);
    }
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    ran.expect(1);
    let stderr = ran.stderr();
    let full: Vec<&str> = stderr.lines().filter(|l| l.contains("disk")).collect();
    assert_eq!(full.len(), 1, "{stderr}");
    assert!(
        full[0].contains("full") && full[0].contains(" free of "),
        "{stderr}"
    );
    assert_eq!(stderr.matches("WRITE failed").count(), 1, "{stderr}");
    assert_eq!(leftovers(&repo.remote()), Vec::<PathBuf>::new());
    drop(tmpfs);
}
