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
    // A plain sentence before the protocol's word for what went unanswered.
    assert!(
        stderr.contains("it never answered as an SFTP server"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nssh: Could not resolve hostname nohost")
            || stderr.starts_with("ssh: Could not"),
        "{stderr}"
    );
}

/// `-v` says what happened to each file in an administrator's words, not the journal's
/// (`asdotnew: PATH`), and names the steps of a distribution's finalisation.
#[test]
fn verbose_says_what_happens_in_words() {
    let repo = Repo::new();
    repo.pending_include("foo", "1.0");
    let ran = repo.hook(&["--basedir", ".", "--pending", "-v"]);
    ran.expect(0);
    let out = ran.stdout();
    assert!(!out.contains("asdotnew:"), "{out}");
    assert!(
        out.contains("dists/bookworm/Release: uploaded as dists/bookworm/Release.new"),
        "{out}"
    );
    assert!(
        out.contains("dists/bookworm/Release: on the remote"),
        "{out}"
    );
    let err = ran.stderr();
    assert!(!err.contains("finalising step"), "{err}");
    assert!(err.contains("Release files renamed into place"), "{err}");
}

/// The summary says what it counts, by kind: files uploaded (and their bytes), indexes
/// renamed into place, files removed, emptied directories removed.
#[test]
fn the_summary_says_what_changed_by_kind() {
    let repo = Repo::new();
    let foo = repo.deb("foo", "1.0", 100);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    let conf = std::fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    repo.set_conf("servername nowhere.invalid\n");
    assert_ne!(repo.reprepro(&["remove", "bookworm", "foo"]).code(), 0);
    repo.set_conf(&conf);
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    ran.expect(0);
    let err = ran.stderr();
    let summary = err
        .lines()
        .find(|l| l.contains(" error(s), in "))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    // The indexes go up as NAME.new and are renamed; foo's file and its directories go.
    assert!(summary.contains(" file(s) uploaded ("), "{summary}");
    assert!(summary.contains(" renamed into place"), "{summary}");
    assert!(summary.contains(", 1 removed, "), "{summary}");
    assert!(
        summary.contains(" empty director(ies) removed, 0 error(s)"),
        "{summary}"
    );
    assert!(!summary.contains("change"), "{summary}");
}

/// `verify` counts symlinks too, and says when outlogs are pending: what they change is not
/// on the remote yet, and `--pending`, not `mirror`, brings it.
#[test]
fn verify_counts_symlinks_and_names_pending_logs() {
    let repo = Repo::new();
    let foo = repo.deb("foo", "1.0", 100);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    std::os::unix::fs::symlink("bookworm", repo.base().join("dists/stable")).unwrap();
    repo.hook(&["--basedir", ".", "mirror"]).expect(0);
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(0);
    assert!(ran.stderr().contains(", 1 symlinks)"), "{}", ran.stderr());
    assert!(!ran.stderr().contains("pending"), "{}", ran.stderr());
    repo.pending_include("bar", "1.0");
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(1);
    let err = ran.stderr();
    assert!(err.contains("1 outlog(s) are pending"), "{err}");
    assert!(err.contains("--pending'"), "{err}");
}

/// `--timeline` says, phase by phase, when it ran, the round trips it waited for and the
/// bytes it moved; nothing of it without the flag.
#[test]
fn the_timeline_names_each_phase_of_a_push_in_order() {
    let repo = Repo::new();
    repo.pending_include("foo", "1.0");
    let ran = repo.hook(&["--basedir", ".", "--pending", "--timeline"]);
    ran.expect(0);
    let err = ran.stderr();
    let phases: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("timeline: "))
        .collect();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "prepare", "connect", "uploads", "switch", "after", "close", "journal"
        ],
        "{err}"
    );
    let field = |phase: &str, key: &str| -> f64 {
        let value = phase
            .split(' ')
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {phase}"));
        value
            .trim_start_matches('+')
            .trim_end_matches('s')
            .parse()
            .unwrap()
    };
    let mut last_end = 0.0;
    for phase in &phases {
        assert_eq!(field(phase, "start="), last_end, "{err}");
        last_end = field(phase, "end=");
        assert!(last_end >= field(phase, "start="), "{err}");
    }
    // The package and the indexes go up in the uploads, over at least their OPEN's round trip.
    assert!(field(phases[2], "bytes=") > 1000.0, "{err}");
    assert!(field(phases[2], "waits=") >= 1.0, "{err}");
    assert!(field(phases[3], "waits=") >= 1.0, "renames wait: {err}");
    assert!(field(phases[2], "waited=") > 0.0, "{err}");
    // The round trips the waits are worth, by the measured round trip.
    assert!(field(phases[2], "rtts=") > 0.0, "{err}");
    repo.pending_include("bar", "1.0");
    let quiet = repo.hook(&["--basedir", ".", "--pending"]);
    quiet.expect(0);
    assert!(!quiet.stderr().contains("timeline"), "{}", quiet.stderr());
}
