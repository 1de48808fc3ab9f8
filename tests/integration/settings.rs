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
