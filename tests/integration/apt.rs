//! Real apt clients against the mirror the hook pushes to: a client that read the indexes
//! before a push must still get every package those indexes name (issue 14).
//!
//! [`AptClient`] runs the system's `apt-get` with all of its state in a temporary
//! directory: its own configuration (through `APT_CONFIG`, so not even
//! `/etc/apt/apt.conf.d` is read: Docker images put `Post-Invoke` commands there that
//! would delete files under `/var/cache/apt`), lists, caches, logs and an empty dpkg status.
//! It never takes apt's locks and never writes to `/var/lib/apt`, `/var/cache/apt` or
//! `/etc/apt`. Its only source is `deb [trusted=yes] file:REMOTE CODENAME main`: apt's
//! `file:` method reads the files where they are, at the moment it fetches them, so the
//! client sees the remote directory exactly as a web server in front of it would serve it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo::{Ran, Repo};
use crate::support::skip;

/// A private apt client whose one source is the mirror at `mirror`.
pub struct AptClient {
    dir: tempfile::TempDir,
}

/// What apt said, with the lines that count as a failure for a client picked out.
pub struct AptRun {
    pub ran: Ran,
}

impl AptRun {
    /// stdout then stderr: apt prints `Get:`/`Err:` lines on stdout and `W:`/`E:` on stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.ran.stdout(), self.ran.stderr())
    }

    /// The lines a user would call a failure: errors, warnings, and the messages of a
    /// missing file or of an index that disagrees with its Release file.
    pub fn problems(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| is_problem(l))
            .map(str::to_owned)
            .collect()
    }

    /// Panics with apt's output unless it exited 0 and reported nothing wrong.
    pub fn expect_clean(&self) -> &AptRun {
        assert!(
            self.ran.code() == 0 && self.problems().is_empty(),
            "{} exited {} with problems {:?}\n--- output\n{}",
            self.ran.what,
            self.ran.code(),
            self.problems(),
            self.text()
        );
        self
    }
}

/// Whether one line of apt's output reports a failure. `Ign:` lines are not: apt tries
/// `InRelease` and `Release.gpg` on an unsigned repository and ignores their absence. A
/// missing file is "File not found" from the `file:` method, "404  Not Found" from http; an
/// index that disagrees with its Release file is "File has unexpected size" when the sizes
/// differ, "Hash Sum mismatch" when only the content does.
pub fn is_problem(line: &str) -> bool {
    line.starts_with("W:")
        || line.starts_with("E:")
        || line.starts_with("Err:")
        || [
            "Hash Sum mismatch",
            "File has unexpected size",
            "404  Not Found",
            "Failed to fetch",
            "File not found",
        ]
        .iter()
        .any(|p| line.contains(p))
}

impl AptClient {
    /// A client of `codename` (component main, amd64: the test repository's) on the mirror
    /// at `mirror`, or None, with a printed reason, where apt-get is not installed.
    pub fn new(test: &str, mirror: &Path, codename: &str) -> Option<AptClient> {
        if Command::new("apt-get").arg("--version").output().is_err() {
            skip(test, "apt-get is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "etc/auth.conf.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
            "download",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        // No package is installed: dpkg's own status file is not read.
        fs::write(root.join("state/status"), "").unwrap();
        fs::write(
            root.join("etc/sources.list"),
            format!(
                "deb [trusted=yes] file:{} {codename} main\n",
                mirror.display()
            ),
        )
        .unwrap();
        let r = root.display();
        fs::write(
            root.join("apt.conf"),
            format!(
                "Dir \"{r}/\";\n\
                 Dir::State \"{r}/state/\";\n\
                 Dir::State::status \"{r}/state/status\";\n\
                 Dir::Cache \"{r}/cache/\";\n\
                 Dir::Etc \"{r}/etc/\";\n\
                 Dir::Log \"{r}/log/\";\n\
                 Debug::NoLocking \"true\";\n\
                 APT::Architecture \"amd64\";\n\
                 APT::Architectures {{ \"amd64\"; }};\n\
                 Acquire::Languages \"none\";\n\
                 APT::Get::AllowUnauthenticated \"true\";\n\
                 APT::Sandbox::User \"root\";\n\
                 APT::Color \"false\";\n"
            ),
        )
        .unwrap();
        // `Dir` moves every relative path into the client's directory; the methods and
        // the decompressors keep their absolute defaults.
        Some(AptClient { dir })
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where [`AptClient::download`] puts the packages it fetched.
    pub fn download_dir(&self) -> PathBuf {
        self.root().join("download")
    }

    fn apt_get(&self, cwd: &Path, args: &[&str]) -> AptRun {
        let output = Command::new("apt-get")
            .current_dir(cwd)
            .env("APT_CONFIG", self.root().join("apt.conf"))
            .env("LC_ALL", "C")
            .args(["-q", "-y"])
            .args(args)
            .output()
            .expect("apt-get");
        AptRun {
            ran: Ran {
                what: format!("apt-get {}", args.join(" ")),
                output,
            },
        }
    }

    /// `apt-get update`: reads Release and the indexes it names from the mirror.
    pub fn update(&self) -> AptRun {
        self.apt_get(self.root(), &["update"])
    }

    /// `apt-get download PKG=VERSION...` into an emptied [`AptClient::download_dir`], from
    /// the indexes of the last update.
    pub fn download(&self, packages: &[&str]) -> AptRun {
        let dir = self.download_dir();
        fs::remove_dir_all(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        self.apt_get(
            &dir,
            &["download"]
                .iter()
                .chain(packages)
                .copied()
                .collect::<Vec<_>>(),
        )
    }

    /// The versions of `package` the client's lists offer, as `apt-cache madison` says.
    pub fn versions(&self, package: &str) -> Vec<String> {
        let out = Command::new("apt-cache")
            .env("APT_CONFIG", self.root().join("apt.conf"))
            .env("LC_ALL", "C")
            .args(["madison", package])
            .output()
            .expect("apt-cache");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('|').nth(1).map(|v| v.trim().to_owned()))
            .collect()
    }
}

/// The pool file of package `name` at `version` (reprepro's layout, main component).
fn pool_file(name: &str, version: &str) -> String {
    format!("pool/main/{}/{name}/{name}_{version}_amd64.deb", &name[..1])
}

/// A repository with foo 1.0 and bar 1.0 in bookworm, pushed by the hook, and a client
/// that has read its indexes.
fn mirror_with_foo_and_bar(test: &str, conf: &str) -> Option<(Repo, AptClient)> {
    let repo = Repo::new();
    let conf_path = repo.base().join("conf/outsftphook.conf");
    // Repo's conf, with the test's keepdeleted instead of Repo's.
    let mut text: String = fs::read_to_string(&conf_path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("keepdeleted"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(conf);
    repo.set_conf(&text);
    let client = AptClient::new(test, &repo.remote(), "bookworm")?;
    for name in ["foo", "bar"] {
        let deb = repo.deb(name, "1.0", 3000);
        repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
            .expect(0);
    }
    client.update().expect_clean();
    assert_eq!(client.versions("foo"), ["1.0"]);
    assert_eq!(client.versions("bar"), ["1.0"]);
    Some((repo, client))
}

/// reprepro replaces foo 1.0 by foo 2.0 and removes bar; the hook pushes each change.
fn replace_foo_and_remove_bar(repo: &Repo) {
    let foo2 = repo.deb("foo", "2.0", 4000);
    repo.reprepro(&["includedeb", "bookworm", foo2.to_str().unwrap()])
        .expect(0);
    repo.reprepro(&["remove", "bookworm", "bar"]).expect(0);
    assert!(
        repo.outlogs().is_empty(),
        "every push done: {:?}",
        repo.outlogs()
    );
    assert!(!repo.remote_index_names("bar"));
}

/// Deletions are carried out at once (`keepdeleted 0`, the behaviour before issue 14): a
/// client that updated before the push fails for every package the push replaced or
/// removed. This is what the tests below must not see, and shows that the client reads
/// the mirror directory itself, not a copy.
#[test]
fn without_held_deletions_a_client_that_updated_before_a_push_cannot_fetch_what_it_removed() {
    let test =
        "without_held_deletions_a_client_that_updated_before_a_push_cannot_fetch_what_it_removed";
    let Some((repo, client)) = mirror_with_foo_and_bar(test, "keepdeleted 0\n") else {
        return;
    };
    replace_foo_and_remove_bar(&repo);
    assert!(!repo.remote().join(pool_file("foo", "1.0")).exists());
    assert!(!repo.remote().join(pool_file("bar", "1.0")).exists());

    let run = client.download(&["foo=1.0", "bar=1.0"]);
    assert_eq!(run.ran.code(), 100, "{}", run.text());
    let text = run.text();
    for name in ["foo", "bar"] {
        let missing = format!(
            "Failed to fetch file:{}/{}",
            repo.remote().display(),
            pool_file(name, "1.0")
        );
        assert!(text.contains(&missing), "{missing}\n{text}");
    }
}

/// The grace period of the pushes below: far longer than a test takes, so that no run
/// within the test carries out a deletion however slow the machine is. The run "after the
/// grace period" is given a shorter one on its command line (the held record keeps the
/// time each file became unreferenced, so the period in force when a run looks at it
/// decides), after a sleep longer than that.
const LONG_GRACE: &str = "keepdeleted 1h\n";

/// Runs the hook as a later run after the grace period: sleeps past `keepdeleted 2s`
/// (3 s: the record's times are whole seconds) and runs `--pending` with it.
fn run_after_grace_period(repo: &Repo) {
    std::thread::sleep(std::time::Duration::from_millis(3100));
    repo.hook(&["--basedir", ".", "--pending", "--keepdeleted", "2s"])
        .expect(0);
}

/// Asserts that the record of held deletions (`logs/outsftphook.held`: per line the unix
/// time the file became unreferenced, a TAB, its path) names `path`.
fn assert_recorded_as_held(repo: &Repo, path: &str) {
    let record = fs::read_to_string(repo.logs().join("outsftphook.held")).unwrap_or_default();
    assert!(
        record.lines().any(|l| l
            .split_once('\t')
            .is_some_and(|(t, p)| t.parse::<u64>().is_ok() && p == path)),
        "{path} is not recorded as held:\n{record}"
    );
}

fn verify_is_clean(repo: &Repo) {
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(0);
    assert!(
        ran.stderr().contains("the remote matches"),
        "{}",
        ran.stderr()
    );
}

#[test]
fn a_client_that_updated_before_a_push_still_fetches_what_it_replaced_or_removed() {
    let test = "a_client_that_updated_before_a_push_still_fetches_what_it_replaced_or_removed";
    let Some((repo, client)) = mirror_with_foo_and_bar(test, LONG_GRACE) else {
        return;
    };
    replace_foo_and_remove_bar(&repo);
    let (foo1, bar1) = (pool_file("foo", "1.0"), pool_file("bar", "1.0"));

    // No index names them any more, but they are still there, and recorded as held.
    for held in [&foo1, &bar1] {
        assert!(repo.remote().join(held).is_file(), "{held} was deleted");
    }
    for held in [&foo1, &bar1] {
        assert_recorded_as_held(&repo, held);
    }
    // A run before the grace period has passed deletes nothing either.
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    for held in [&foo1, &bar1] {
        assert!(repo.remote().join(held).is_file(), "{held} was deleted");
    }
    // The client, without updating again, gets both old packages, byte for byte.
    client.download(&["foo=1.0", "bar=1.0"]).expect_clean();
    for (name, held) in [("foo", &foo1), ("bar", &bar1)] {
        let got = client.download_dir().join(format!("{name}_1.0_amd64.deb"));
        assert_eq!(
            fs::read(got).unwrap(),
            fs::read(repo.remote().join(held)).unwrap()
        );
    }
    // A client that updates now sees the new indexes and gets what they name, as usual.
    let newcomer = AptClient::new(test, &repo.remote(), "bookworm").unwrap();
    newcomer.update().expect_clean();
    assert_eq!(newcomer.versions("foo"), ["2.0"]);
    assert!(newcomer.versions("bar").is_empty());
    newcomer.download(&["foo=2.0"]).expect_clean();
    // Held files are no differences, and status says what is held (each with -v).
    verify_is_clean(&repo);
    let ran = repo.hook(&["--basedir", ".", "status"]);
    ran.expect(0);
    let said = format!("{}{}", ran.stdout(), ran.stderr());
    assert!(said.contains("2 deletion(s) held back"), "{said}");
    let ran = repo.hook(&["--basedir", ".", "status", "-v"]);
    ran.expect(0);
    let said = format!("{}{}", ran.stdout(), ran.stderr());
    for held in [&foo1, &bar1] {
        assert!(
            said.contains(&format!("{held}: removed after ")),
            "status -v does not name {held}:\n{said}"
        );
    }

    // After the grace period a later run deletes them, and bar's emptied pool directories.
    run_after_grace_period(&repo);
    for held in [&foo1, &bar1] {
        assert!(!repo.remote().join(held).exists(), "{held} is still there");
    }
    assert!(!repo.remote().join("pool/main/b").exists());
    repo.assert_mirrored(&[]);
    verify_is_clean(&repo);
    // The first client, updating at last, gets the new state.
    client.update().expect_clean();
    assert_eq!(client.versions("foo"), ["2.0"]);
    assert!(client.versions("bar").is_empty());
    client.download(&["foo=2.0"]).expect_clean();
}

#[test]
fn a_package_removed_and_added_again_within_the_grace_period_is_not_deleted() {
    let test = "a_package_removed_and_added_again_within_the_grace_period_is_not_deleted";
    let Some((repo, client)) = mirror_with_foo_and_bar(test, LONG_GRACE) else {
        return;
    };
    let foo1 = pool_file("foo", "1.0");
    repo.reprepro(&["remove", "bookworm", "foo"]).expect(0);
    assert!(!repo.remote_index_names("foo"));
    assert_recorded_as_held(&repo, &foo1);
    let deb = repo.deb("foo", "1.0", 3000);
    repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
        .expect(0);
    assert!(repo.remote_index_names("foo"));

    // The deletion recorded by the remove is due now, but the file is back.
    run_after_grace_period(&repo);
    assert!(repo.remote().join(&foo1).is_file(), "{foo1} was deleted");
    repo.assert_mirrored(&[]);
    verify_is_clean(&repo);
    client.update().expect_clean();
    client.download(&["foo=1.0", "bar=1.0"]).expect_clean();
}

/// The mirror of [`mirror_with_foo_and_bar`] with a client that read it; then reprepro
/// adds foo 2.0 and the push fails half-way: the server (`sftp-server ARGS`) fails the
/// rename of the amd64 Packages.gz, as a full disk or a permission error would. Returns
/// what the push said, and the conf without the fault.
fn failed_publish(test: &str, args: &str) -> Option<(Repo, AptClient, String, String)> {
    let (repo, client) = mirror_with_foo_and_bar(test, LONG_GRACE)?;
    let plain = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    let relay = repo.dir.path().join("failing.sh");
    fs::write(
        &relay,
        format!(
            "#!/bin/sh\nexec python3 {}/tests/fixtures/failing_rename_relay.py \
             main/binary-amd64/Packages.gz.new -- /usr/lib/openssh/sftp-server {args} -d '{}'\n",
            env!("CARGO_MANIFEST_DIR"),
            repo.remote().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&relay, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n{LONG_GRACE}", relay.display()));
    let foo2 = repo.deb("foo", "2.0", 4000);
    let ran = repo.reprepro(&["includedeb", "bookworm", foo2.to_str().unwrap()]);
    assert_ne!(ran.code(), 0, "the push failed");
    Some((repo, client, ran.stderr(), plain))
}

/// Where the server makes hard links the failed publish is put back: a client updating
/// right after sees the old distribution, whole and consistent (no "Hash Sum mismatch"),
/// and still gets what it names; once a rerun finished the push, it sees the new one.
#[test]
fn a_client_updating_right_after_a_failed_publish_sees_the_old_distribution_whole() {
    let test = "a_client_updating_right_after_a_failed_publish_sees_the_old_distribution_whole";
    let Some((repo, client, said, plain)) = failed_publish(test, "") else {
        return;
    };
    assert!(said.contains("so it was put back"), "{said}");
    assert!(
        said.contains(" put back after a failed finalisation, 1 error(s)"),
        "{said}"
    );
    let newcomer = AptClient::new(test, &repo.remote(), "bookworm").unwrap();
    for c in [&client, &newcomer] {
        c.update().expect_clean();
        assert_eq!(c.versions("foo"), ["1.0"]);
        c.download(&["foo=1.0", "bar=1.0"]).expect_clean();
    }
    repo.set_conf(&plain);
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    client.update().expect_clean();
    assert_eq!(client.versions("foo"), ["2.0"]);
    client.download(&["foo=2.0"]).expect_clean();
}

/// Without hard links (`sftp-server -P hardlink`) nothing can be put back: the client
/// sees the "Hash Sum mismatch" the run warned of. (What the test above must not see.)
#[test]
fn without_hard_links_a_client_updating_after_a_failed_publish_sees_a_mismatch() {
    let test = "without_hard_links_a_client_updating_after_a_failed_publish_sees_a_mismatch";
    let Some((_repo, client, said, _)) = failed_publish(test, "-P hardlink") else {
        return;
    };
    assert!(said.contains("could not be put back"), "{said}");
    let update = client.update();
    assert!(
        update
            .problems()
            .iter()
            .any(|p| p.contains("Hash Sum mismatch")),
        "{}",
        update.text()
    );
}
