//! Deletions held back (`keepdeleted`): a file reprepro no longer references stays on the
//! mirror for the grace period, recorded in the log dir, and the first run after it removes
//! it; one that comes back meanwhile is never removed.

use std::fs;

use crate::repo::Repo;

const FOO: &str = "pool/main/f/foo/foo_1.0_amd64.deb";

/// A repository with bar and foo pushed, then foo removed by reprepro, with deletions
/// held `keep`.
fn removed_with(keep: &str) -> Repo {
    let repo = Repo::new();
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    let conf = conf.replace("keepdeleted 0\n", &format!("keepdeleted {keep}\n"));
    repo.set_conf(&conf);
    // bar stays: the pool is never empty.
    for name in ["bar", "foo"] {
        let deb = repo.deb(name, "1.0", 100);
        repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
            .expect(0);
    }
    repo.reprepro(&["remove", "bookworm", "foo"]).expect(0);
    repo
}

fn record(repo: &Repo) -> Option<String> {
    fs::read_to_string(repo.logs().join("outsftphook.held")).ok()
}

#[test]
fn a_removed_package_stays_on_the_mirror_until_its_deletion_is_due() {
    let repo = removed_with("1h");
    // The indexes no longer name foo, but its file is still there for older clients.
    assert!(!repo.remote_index_names("foo"));
    assert!(repo.remote().join(FOO).exists());
    assert!(repo.outlogs().is_empty(), "every log is done");
    let journals: String = repo
        .done_logs()
        .iter()
        .map(|log| fs::read_to_string(repo.logs().join(log)).unwrap())
        .collect();
    assert!(
        journals.contains(&format!("DONE\theld back\t{FOO}\n")),
        "{journals}"
    );
    let held = record(&repo).expect("a record of held deletions");
    assert!(held.contains(&format!("\t{FOO}\n")), "{held}");

    // Not due: a run with nothing pending leaves it, and sends nothing.
    repo.clear_server_log();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    assert!(repo.server_ops().is_empty(), "{:?}", repo.server_ops());
    assert!(repo.remote().join(FOO).exists());

    // Due (the grace period set to none): the next run removes it and its directories.
    let ran = repo.hook(&["--basedir", ".", "--pending", "--keepdeleted", "0"]);
    ran.expect(0);
    assert!(!repo.remote().join(FOO).exists());
    assert!(
        !repo.remote().join("pool/main/f").exists(),
        "emptied dirs pruned"
    );
    assert_eq!(record(&repo), None, "nothing held any more");
    assert!(ran.stderr().contains("1 removed"), "{}", ran.stderr());
    repo.hook(&["--basedir", ".", "verify"]).expect(0);
}

#[test]
fn a_package_added_again_before_its_deletion_is_due_is_never_removed() {
    let repo = removed_with("1h");
    let foo = repo.deb("foo", "1.0", 100);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    assert_eq!(record(&repo), None, "forgotten once back in the repository");
    repo.hook(&["--basedir", ".", "--pending", "--keepdeleted", "0"])
        .expect(0);
    assert!(repo.remote().join(FOO).exists());
    repo.assert_mirrored(&[]);
}

#[test]
fn with_keepdeleted_0_a_deletion_goes_with_the_push_that_brings_it() {
    let repo = removed_with("0");
    assert!(!repo.remote().join(FOO).exists());
    assert_eq!(record(&repo), None);
    repo.assert_mirrored(&[]);
}

#[test]
fn a_hostile_record_is_refused_with_its_line_and_nothing_is_sent() {
    let repo = removed_with("1h");
    fs::write(
        repo.logs().join("outsftphook.held"),
        "0\tpool/../../etc/passwd\n",
    )
    .unwrap();
    repo.clear_server_log();
    let ran = repo.hook(&["--basedir", ".", "--pending", "--keepdeleted", "0"]);
    ran.expect(2);
    let err = ran.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("outsftphook.held:1: 'pool/../../etc/passwd'"),
        "{err}"
    );
    assert!(repo.server_ops().is_empty(), "{:?}", repo.server_ops());
    assert!(repo.remote().join(FOO).exists());
}

#[test]
fn status_verify_and_mirror_treat_held_files_as_belonging_until_due() {
    let repo = removed_with("1h");
    let ran = repo.hook(&["--basedir", ".", "status", "-v"]);
    ran.expect(0);
    let out = ran.stdout();
    assert!(out.contains("1 deletion(s) held back"), "{out}");
    assert!(out.contains(&format!("  {FOO}: removed after ")), "{out}");

    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(0);
    assert!(
        ran.stderr()
            .contains("1 file(s) the repository no longer has, held back"),
        "{}",
        ran.stderr()
    );

    // --delete leaves what is held and not yet due, and its dry run says nothing of it.
    let ran = repo.hook(&["--basedir", ".", "mirror", "--delete", "--dry-run"]);
    ran.expect(0);
    assert!(!ran.stdout().contains(FOO), "{}", ran.stdout());
    repo.hook(&["--basedir", ".", "mirror", "--delete"])
        .expect(0);
    assert!(repo.remote().join(FOO).exists());

    // Once due, the dry run says it goes, and mirror (even without --delete) removes it.
    let ran = repo.hook(&[
        "--basedir",
        ".",
        "mirror",
        "--dry-run",
        "--keepdeleted",
        "0",
    ]);
    ran.expect(0);
    assert!(
        ran.stdout()
            .contains(&format!("remove {FOO} (its held deletion is due)")),
        "{}",
        ran.stdout()
    );
    assert!(
        repo.remote().join(FOO).exists(),
        "a dry run changes nothing"
    );
    let ran = repo.hook(&["--basedir", ".", "status", "--keepdeleted", "0"]);
    assert!(
        ran.stdout().contains("1 held deletion(s) due"),
        "{}",
        ran.stdout()
    );
    repo.hook(&["--basedir", ".", "mirror", "--keepdeleted", "0"])
        .expect(0);
    assert!(!repo.remote().join(FOO).exists());
    assert_eq!(record(&repo), None);
    repo.hook(&["--basedir", ".", "verify"]).expect(0);
}
