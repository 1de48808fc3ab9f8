//! How outsftphook talks to people when things go wrong: each cause said once, in words.

use std::os::unix::fs::PermissionsExt;

use crate::repo::Repo;

/// ssh names itself in what it says (`ssh: Could not resolve hostname`): it is relayed as
/// it is, not as `ssh: ssh: ...`.
#[test]
fn what_ssh_says_is_relayed_with_its_name_once() {
    let repo = Repo::new();
    std::fs::create_dir(repo.base().join("bin")).unwrap();
    let fake = repo.base().join("bin/ssh");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'ssh: Could not resolve hostname nohost: Name or service not known' >&2\nexit 255\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.set_conf(&format!(
        "servername nohost\nsshcommand {}\n",
        fake.display()
    ));
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    let stderr = ran.stderr();
    assert_ne!(ran.code(), 0, "{stderr}");
    assert!(!stderr.contains("ssh: ssh:"), "{stderr}");
    assert!(
        stderr.contains("\nssh: Could not resolve hostname nohost")
            || stderr.starts_with("ssh: Could not"),
        "{stderr}"
    );
}
