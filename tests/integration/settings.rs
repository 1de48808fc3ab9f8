//! `outsftphook.conf` as the binary reads it: commands quoted as a shell would, values it
//! refuses, and `keepdone`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::repo::Repo;

/// A fake `ssh` that writes its argv, one word a line, to `argv.txt`, then serves SFTP on
/// `remote/` as ssh would have.
fn fake_ssh(repo: &Repo) -> std::path::PathBuf {
    let script = repo.dir.path().join("fake-ssh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n\
             exec /usr/lib/openssh/sftp-server -d '{}'\n",
            repo.dir.path().join("argv.txt").display(),
            repo.remote().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_quoted_sshcommand_option_reaches_ssh_as_one_word() {
    crate::support::require("/usr/lib/openssh/sftp-server");
    let repo = Repo::new();
    let ssh = fake_ssh(&repo);
    repo.set_conf(&format!(
        "servername mirror.example.org\nusername repo\n\
         sshcommand {} -o \"ConnectTimeout 5\" -o 'ServerAliveCountMax 3'\n",
        ssh.display()
    ));
    fs::create_dir_all(repo.base().join("pool/main")).unwrap();
    fs::write(repo.base().join("pool/main/a.deb"), "a").unwrap();
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    assert_eq!(
        fs::read(repo.remote().join("pool/main/a.deb")).unwrap(),
        b"a"
    );
    let argv = fs::read_to_string(repo.dir.path().join("argv.txt")).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    for want in [
        "ConnectTimeout 5",
        "ServerAliveCountMax 3",
        "mirror.example.org",
    ] {
        assert!(argv.contains(&want), "{want:?} not a word of {argv:?}");
    }
    let at = argv.iter().position(|a| *a == "ConnectTimeout 5").unwrap();
    assert_eq!(argv[at - 1], "-o", "{argv:?}");
}

#[test]
fn bad_values_exit_2_naming_file_line_and_key() {
    let repo = Repo::new();
    let cases = [
        (
            "servername h\nsshcommand ssh -o \"ConnectTimeout 5\n",
            "outsftphook.conf:2: 'sshcommand' has a quote that is not closed",
        ),
        (
            "servername h\nusername a b\n",
            "outsftphook.conf:2: 'username' takes one word, without spaces, not 'a b'",
        ),
        (
            "servername h\ndebug 7\n",
            "outsftphook.conf:2: 'debug' takes a level from 0 to 2, not '7'",
        ),
        (
            "servername h\ntargetdir /a\ntargetdir /b\n",
            "outsftphook.conf:3: 'targetdir' is set again (first on line 2)",
        ),
    ];
    for (conf, want) in cases {
        repo.set_conf(conf);
        let ran = repo.hook(&["--basedir", ".", "mirror"]);
        ran.expect(2);
        assert!(ran.stderr().contains(want), "{want}\n{}", ran.stderr());
        assert_eq!(ran.stderr().lines().count(), 1, "{}", ran.stderr());
    }
}

/// Sets the modification time of `path` to `days` days ago.
fn age(path: &std::path::Path, days: u64) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86400);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(then)
        .unwrap();
}

#[test]
fn keepdone_removes_only_old_done_logs_at_the_end_of_a_hook_run() {
    crate::support::require("/usr/lib/openssh/sftp-server");
    let repo = Repo::new();
    let logs = repo.logs();
    fs::create_dir_all(&logs).unwrap();
    fs::create_dir_all(repo.base().join("pool/main")).unwrap();
    fs::write(repo.base().join("pool/main/a.deb"), "a").unwrap();
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    let file = |name: &str, days: u64| {
        let p = logs.join(name);
        fs::write(
            &p,
            "POOLNEW\tpool/main/a.deb\nDONE\tdone\tpool/main/a.deb\n",
        )
        .unwrap();
        age(&p, days);
        p
    };
    let old = file("1700000000-aaaaaa.done", 100);
    let older = file("1600000000-Zz09Ab.done", 1000);
    let recent = file("1790000000-bbbbbb.done", 10);
    let foreign = [
        file("notes.done", 100),
        file("1700000000-aaaaaa.done.bak", 100),
        file("1700000000-aaaaaa.txt", 100),
        file("170000000-aaaaaa.done", 100),
    ];
    std::os::unix::fs::symlink(&old, logs.join("1700000001-linkkk.done")).unwrap();

    // Without keepdone (the default), a run removes nothing.
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    assert_eq!(repo.done_logs().len(), 6);

    // With it, a push removes the old ones: not the log it just finished.
    repo.set_conf(&format!("{conf}keepdone 30\n"));
    let pending = logs.join("1796000000-cccccc.outlog");
    fs::write(&pending, "POOLNEW\tpool/main/a.deb\n").unwrap();
    let ran = repo.hook(&["--basedir", ".", "-v", "--pending"]);
    ran.expect(0);
    assert!(!old.exists() && !older.exists(), "{}", ran.stderr());
    assert!(recent.exists());
    assert!(logs.join("1796000000-cccccc.done").exists());
    for f in &foreign {
        assert!(f.exists(), "{} removed", f.display());
    }
    assert!(logs.join("1700000001-linkkk.done").is_symlink());
    assert!(
        ran.stderr()
            .contains("removed 2 .done log(s) older than 30 day(s)"),
        "{}",
        ran.stderr()
    );

    // With nothing pending too (the timer's --pending).
    age(&recent, 40);
    repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    assert!(!recent.exists());
    assert!(logs.join("1796000000-cccccc.done").exists());
    // A dry run removes nothing.
    age(&logs.join("1796000000-cccccc.done"), 40);
    repo.hook(&["--basedir", ".", "--pending", "--dry-run"])
        .expect(0);
    assert!(logs.join("1796000000-cccccc.done").exists());
}
