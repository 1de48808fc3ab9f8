//! A push whose finalisation fails half-way (one rename of the batch fails, as a full disk
//! or a permission error would fail it) leaves the distribution as it was before the push,
//! byte for byte, where the server makes hard links; without them it says what state the
//! distribution is in. Either way a rerun finishes the push. Real reprepro, real
//! `sftp-server`, and a relay in front of it that makes it fail one rename
//! (tests/fixtures/failing_rename_relay.py).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo::Repo;

/// A repository whose bookworm is signed (by a script: `InRelease` is a copy of
/// `Release`), pushed once with package `old`.
fn signed_and_pushed() -> Repo {
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
    let deb = repo.deb("old", "1.0", 2_000);
    repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
        .expect(0);
    repo.assert_mirrored(&[]);
    assert!(repo.remote().join("dists/bookworm/InRelease").exists());
    repo
}

/// Points the conf at `sftp-server ARGS` behind the relay that fails the first rename
/// onto a path ending in `name`.
fn fail_rename_of(repo: &Repo, name: &str, args: &str) {
    let script = repo.dir.path().join("relay.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec python3 '{}/tests/fixtures/failing_rename_relay.py' '{name}' -- \
             /usr/lib/openssh/sftp-server -e -l INFO {args} -d '{}' 2>>'{}'\n",
            env!("CARGO_MANIFEST_DIR"),
            repo.remote().display(),
            repo.server_log().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    repo.set_conf(&format!("sftpcommand {}\n", script.display()));
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

#[test]
fn a_failed_rename_puts_the_distribution_back_as_it_was_and_a_rerun_finishes() {
    // The last rename (InRelease, after its Release: as bad as an index) and one in the
    // middle of the batch, with Release and InRelease renamed after it.
    for failing in ["dists/bookworm/InRelease", "main/binary-amd64/Packages.gz"] {
        let repo = signed_and_pushed();
        let dist = repo.remote().join("dists/bookworm");
        let before = files_in(&dist);
        fail_rename_of(&repo, failing, "");
        let deb = repo.deb("new", "1.0", 3_000);
        let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
        assert_ne!(ran.code(), 0, "{failing}: the push failed");
        let err = ran.stderr();
        assert!(
            err.contains("dists/bookworm: its finalisation failed half-way, so it was put back"),
            "{failing}: {err}"
        );
        // Right after: what apt can read of the distribution is the old one, whole.
        assert_eq!(files_in(&dist), before, "{failing}: {err}");
        assert_eq!(mismatching(&dist), Vec::<String>::new(), "{failing}");
        assert!(!repo.remote_index_names("new"), "{failing}");
        repo.use_server();
        repo.hook(&["--basedir", ".", "--pending"]).expect(0);
        repo.assert_mirrored(&[]);
        assert!(repo.remote_index_names("new"), "{failing}");
        assert_eq!(mismatching(&dist), Vec::<String>::new(), "{failing}");
    }
}

#[test]
fn without_hard_links_a_failed_rename_says_what_is_new_under_the_old_release() {
    let repo = signed_and_pushed();
    let dist = repo.remote().join("dists/bookworm");
    // OpenSSH's server announces no request it is told to deny.
    fail_rename_of(&repo, "dists/bookworm/Release", "-P hardlink");
    let deb = repo.deb("new", "1.0", 3_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    assert_ne!(ran.code(), 0);
    let err = ran.stderr();
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
        "until a rerun",
    ] {
        assert!(said[0].contains(needle), "{needle}: {err}");
    }
    // It is as the line says: the renamed indexes disagree with the old Release.
    assert!(
        mismatching(&dist).contains(&"main/binary-amd64/Packages".to_string()),
        "{err}"
    );
    repo.use_server();
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    repo.assert_mirrored(&[]);
    assert_eq!(mismatching(&dist), Vec::<String>::new());
}
