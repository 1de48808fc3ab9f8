//! Several mirrors from one run (issue 15): two local `sftp-server` targets and one through a
//! real `sshd`, all three appending their request logs (`-l INFO`) to one shared file, so
//! that its lines are in the real order across mirrors. Each mirror's tree is a directory
//! `mirror-TAG` and every `targetdir` is absolute: each path a server logs names its mirror.
//!
//! The `today_*` test checks the harness alone (servers, shared log, fault wrapper), with
//! one mirror at a time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::repo::{Ran, Repo, describe_tree, tree};
use crate::sshd::TestSshd;
use crate::support::{OPENSSH_SFTP_SERVER, require, skip};

/// The first mirror (the keys before any `mirror` line), through sshd: named by its
/// servername.
const SSHD: &str = "127.0.0.1";
/// The first mirror's name when it has no servername (an sftpcommand).
const DEFAULT: &str = "default";
const NEAR: &str = "near";
/// The mirror whose server the tests slow down or kill (through faulty_server.py).
const FAR: &str = "far";

/// A repository and up to three mirrors of it; the sshd is stopped when dropped.
struct Mirrors {
    repo: Repo,
    sshd: Option<TestSshd>,
}

impl Mirrors {
    /// Starts the mirrors' servers (sshd only `with_sshd`), or returns `None` when this
    /// machine cannot run sshd (a failure under CI, as everywhere in these tests).
    fn start(test: &str, with_sshd: bool) -> Option<Mirrors> {
        require(OPENSSH_SFTP_SERVER);
        let repo = Repo::new();
        let sshd = if with_sshd {
            Some(crate::sshd::sshd_for(test, repo.dir.path())?)
        } else {
            None
        };
        let m = Mirrors { repo, sshd };
        for name in [SSHD, NEAR, FAR] {
            fs::create_dir_all(m.dir(name)).unwrap();
        }
        m.script("near.sh", &m.logging_server(NEAR));
        m.set_far(None);
        if let Some(sshd) = &m.sshd {
            // A forced command: sshd runs it for the client's `sftp` subsystem request, so
            // the real ssh and sshd carry a server that logs into the shared file.
            m.script("sshd.sh", &m.logging_server(SSHD));
            let key = fs::read_to_string(sshd.client_key.with_extension("pub")).unwrap();
            fs::write(
                sshd.client_key.with_file_name("authorized_keys"),
                format!("command=\"{}\" {key}", m.path("sshd.sh").display()),
            )
            .unwrap();
        }
        Some(m)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.repo.dir.path().join(name)
    }

    /// Mirror `name`'s tree.
    fn dir(&self, name: &str) -> PathBuf {
        let tag = match name {
            SSHD => "sshd",
            DEFAULT => NEAR,
            other => other,
        };
        self.path(&format!("mirror-{tag}"))
    }

    /// Every server's requests, in the order they were carried out.
    fn shared_log(&self) -> PathBuf {
        self.path("requests.log")
    }

    fn clear_shared_log(&self) {
        let _ = fs::remove_file(self.shared_log());
    }

    fn logging_server(&self, name: &str) -> String {
        format!(
            "{OPENSSH_SFTP_SERVER} -e -l INFO -d '{}'",
            self.dir(name).display()
        )
    }

    fn script(&self, file: &str, command: &str) {
        let path = self.path(file);
        fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec {command} 2>>'{}'\n",
                self.shared_log().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Puts far's server behind tests/fixtures/faulty_server.py with `fault` (AFTER bytes,
    /// ACTION), or plain again with `None`.
    fn set_far(&self, fault: Option<(i64, &str)>) {
        let server = self.logging_server(FAR);
        let command = match fault {
            None => server,
            Some((after, action)) => {
                let _ = fs::remove_file(self.far_count());
                format!(
                    "python3 '{}/tests/fixtures/faulty_server.py' '{}' {after} {action} -- {server}",
                    env!("CARGO_MANIFEST_DIR"),
                    self.far_count().display()
                )
            }
        };
        self.script("far.sh", &command);
    }

    fn far_count(&self) -> PathBuf {
        self.path("far-bytes-sent")
    }

    /// Waits until far's faulty server has ended (a killed one may still be carrying out
    /// what it was sent), as `Repo::wait_for_faulty_server` does.
    fn wait_for_far(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.far_count().exists() {
            assert!(Instant::now() < deadline, "far's server did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The per-mirror keys of mirror `name`.
    fn keys(&self, name: &str) -> String {
        let dir = self.dir(name);
        match name {
            SSHD => {
                let sshd = self.sshd.as_ref().expect("started with sshd");
                format!(
                    "servername {SSHD}\nusername root\n\
                     sshcommand ssh -F /dev/null -oIdentityFile={} -oUserKnownHostsFile={} \
                     -oPort={}\ntargetdir {}\n",
                    sshd.client_key.display(),
                    sshd.known_hosts.display(),
                    sshd.port,
                    dir.display()
                )
            }
            // One connection: the fault wrapper counts the bytes of one.
            FAR => format!(
                "sftpcommand {}\ntargetdir {}\nconnections 1\n",
                self.path("far.sh").display(),
                dir.display()
            ),
            _ => format!(
                "sftpcommand {}\ntargetdir {}\n",
                self.path("near.sh").display(),
                dir.display()
            ),
        }
    }

    /// A conf of `first` (its keys before any `mirror` line), then `mirror NAME` sections
    /// for `others`. `global` goes before the first mirror line, and so does `keepdeleted 0`:
    /// `Repo::set_conf` would append it to the last section only.
    fn conf(&self, first: &str, others: &[&str], global: &str) -> String {
        let mut text = format!("{global}keepdeleted 0\n{}", self.keys(first));
        for name in others {
            text.push_str(&format!("mirror {name}\n{}", self.keys(name)));
        }
        text
    }

    /// The three mirrors: sshd first, then near and far.
    fn three(&self, global: &str) -> String {
        self.conf(SSHD, &[NEAR, FAR], global)
    }

    fn assert_all_mirrored(&self, names: &[&str]) {
        for name in names {
            self.repo.assert_mirrored_at(&self.dir(name));
        }
    }

    /// The shared log's lines about mirror `name`, in order.
    fn requests(&self, name: &str) -> Vec<String> {
        self.tagged()
            .into_iter()
            .filter(|(_, n)| n == name)
            .map(|(l, _)| l)
            .collect()
    }

    /// Each line of the shared log naming a mirror's tree, with that mirror's name.
    fn tagged(&self) -> Vec<(String, String)> {
        let text = fs::read_to_string(self.shared_log()).unwrap_or_default();
        let mut out = Vec::new();
        for line in text.lines() {
            for name in [SSHD, NEAR, FAR] {
                let dir = self.dir(name).display().to_string();
                if line.contains(&format!("{dir}/")) || line.contains(&format!("{dir}\"")) {
                    out.push((line.to_string(), name.to_string()));
                }
            }
        }
        out
    }

    /// The requests that changed something on mirror `name`: writes, renames, removals.
    fn changes(&self, name: &str) -> Vec<String> {
        self.requests(name)
            .into_iter()
            .filter(|l| {
                (l.starts_with("open ") && l.contains("WRITE"))
                    || [
                        "rename ",
                        "posix-rename ",
                        "remove ",
                        "mkdir ",
                        "rmdir ",
                        "symlink ",
                        "hardlink ",
                    ]
                    .iter()
                    .any(|w| l.starts_with(w))
            })
            .collect()
    }

    /// Adds `debs` (name, payload size) to bookworm with the hook out of the way, so that
    /// the log stays pending for every mirror; the conf is not touched. Returns the log.
    fn pending_include(&self, debs: &[(&str, usize)]) -> String {
        let options = self.repo.base().join("conf/options");
        let saved = fs::read_to_string(&options).unwrap();
        fs::write(&options, "outhook /bin/false\n").unwrap();
        let before = self.repo.outlogs();
        let mut args = vec!["includedeb".to_string(), "bookworm".to_string()];
        for (name, size) in debs {
            let deb = self.repo.deb(name, "1.0", *size);
            args.push(deb.to_str().unwrap().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_ne!(self.repo.reprepro(&args).code(), 0, "/bin/false succeeded");
        fs::write(&options, saved).unwrap();
        self.repo
            .outlogs()
            .into_iter()
            .find(|l| !before.contains(l))
            .expect("a new pending log")
    }

    fn include(&self, dist: &str, debs: &[(&str, usize)]) -> Ran {
        let mut args = vec!["includedeb".to_string(), dist.to_string()];
        for (name, size) in debs {
            let deb = self.repo.deb(name, "1.0", *size);
            args.push(deb.to_str().unwrap().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.repo.reprepro(&args)
    }

    /// The journal lines (`DONE...`) of log `name`, pending or done.
    fn journal(&self, name: &str) -> Vec<String> {
        let stem = name
            .strip_suffix(".outlog")
            .or_else(|| name.strip_suffix(".done"))
            .unwrap_or(name);
        let logs = self.repo.logs();
        let text = fs::read_to_string(logs.join(format!("{stem}.outlog")))
            .or_else(|_| fs::read_to_string(logs.join(format!("{stem}.done"))))
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("DONE"))
            .map(str::to_owned)
            .collect()
    }
}

/// Whether a journal line is mirror `name`'s: `DONE<TAB>` for the first mirror,
/// `DONE@NAME<TAB>` for the others.
fn journals(line: &str, name: Option<&str>) -> bool {
    match name {
        None => line.starts_with("DONE\t"),
        Some(n) => line.starts_with(&format!("DONE@{n}\t")),
    }
}

fn assert_no_changes(m: &Mirrors, names: &[&str]) {
    for name in names {
        let changes = m.changes(name);
        assert!(
            changes.is_empty(),
            "mirror {name} had everything, yet was sent:\n{}",
            changes.join("\n")
        );
    }
}

#[test]
fn today_each_mirror_alone_works_and_logs_its_requests() {
    let test = "today_each_mirror_alone_works_and_logs_its_requests";
    let Some(m) = Mirrors::start(test, true) else {
        return;
    };
    m.repo.set_conf(&m.keys(SSHD));
    m.include("bookworm", &[("foo", 50_000)]).expect(0);
    m.repo.assert_mirrored_at(&m.dir(SSHD));
    assert!(m.repo.outlogs().is_empty());
    assert!(!m.changes(SSHD).is_empty(), "sshd's server logged nothing");
    assert!(m.requests(NEAR).is_empty() && m.requests(FAR).is_empty());
    // A conf without mirror lines keeps the reference hook's journal.
    for log in m.repo.done_logs() {
        let lines = m.journal(&log);
        assert!(lines.iter().any(|l| journals(l, None)), "{log}: {lines:?}");
        assert!(!lines.iter().any(|l| l.starts_with("DONE@")), "{lines:?}");
    }
    // Far through the wrapper without a fault but slow, as the staged test has it.
    m.set_far(Some((-1, "delay-20")));
    for name in [NEAR, FAR] {
        m.repo.set_conf(&m.keys(name));
        m.repo.hook(&["--basedir", ".", "mirror"]).expect(0);
        m.repo.assert_mirrored_at(&m.dir(name));
        assert!(
            !m.changes(name).is_empty(),
            "{name}'s server logged nothing"
        );
    }
    // The fault wrapper: far's server killed mid-push fails the run; a rerun completes it.
    m.set_far(Some((20_000, "kill-server")));
    let ran = m.include("bookworm", &[("bar", 100_000)]);
    m.wait_for_far();
    assert_ne!(ran.code(), 0, "{}", ran.stderr());
    assert_eq!(m.repo.outlogs().len(), 1);
    m.set_far(None);
    m.repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    m.repo.assert_mirrored_at(&m.dir(FAR));
    // A log kept pending without touching the conf.
    let log = m.pending_include(&[("baz", 1_000)]);
    assert_eq!(m.repo.outlogs(), vec![log.clone()]);
    assert!(m.journal(&log).is_empty());
    m.repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    m.repo.assert_mirrored_at(&m.dir(FAR));
    // The checker of `switch together` sees these pushes one mirror after the other.
    let why = switched_together(&m).expect_err("pushes one after another are not together");
    assert!(why.contains("a switch (line"), "{why}");
}

/// Runs each reprepro step: after each, the mirrors `names` equal the out dir and no log is
/// pending.
fn follow(m: &Mirrors, steps: &[&dyn Fn() -> Ran], names: &[&str]) {
    for (i, step) in steps.iter().enumerate() {
        step().expect(0);
        m.assert_all_mirrored(names);
        assert!(
            m.repo.outlogs().is_empty(),
            "after step {i}: {:?}",
            m.repo.outlogs()
        );
    }
}

#[test]
fn three_mirrors_follow_a_reprepro_sequence() {
    let Some(m) = Mirrors::start("three_mirrors_follow_a_reprepro_sequence", true) else {
        return;
    };
    m.repo.set_conf(&m.three(""));
    let steps: [&dyn Fn() -> Ran; 4] = [
        &|| m.include("bookworm", &[("foo", 60_000), ("bar", 5_000)]),
        &|| m.repo.reprepro(&["copy", "trixie", "bookworm", "foo"]),
        &|| m.repo.reprepro(&["remove", "bookworm", "bar"]),
        &|| m.include("trixie", &[("baz", 30_000)]),
    ];
    follow(&m, &steps, &[SSHD, NEAR, FAR]);
    assert!(m.repo.done_logs().len() >= 4, "{:?}", m.repo.done_logs());
    for log in m.repo.done_logs() {
        let lines = m.journal(&log);
        for name in [None, Some(NEAR), Some(FAR)] {
            assert!(
                lines.iter().any(|l| journals(l, name)),
                "{log} has no journal lines of {name:?}: {lines:?}"
            );
        }
    }
}

#[test]
fn a_mirror_killed_mid_push_is_left_behind_and_catches_up_alone() {
    let test = "a_mirror_killed_mid_push_is_left_behind_and_catches_up_alone";
    let Some(m) = Mirrors::start(test, true) else {
        return;
    };
    m.repo.set_conf(&m.three(""));
    m.include("bookworm", &[("old", 10_000)]).expect(0);
    m.assert_all_mirrored(&[SSHD, NEAR, FAR]);
    let log = m.pending_include(&[("big", 300_000), ("small", 2_000)]);

    // Far's server dies in the middle of big's upload.
    m.set_far(Some((100_000, "kill-server")));
    let ran = m.repo.hook(&["--basedir", ".", "--pending"]);
    m.wait_for_far();
    ran.expect(1);
    let stderr = ran.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("behind") && l.contains(FAR)),
        "no line says that {FAR} is behind:\n{stderr}"
    );
    m.assert_all_mirrored(&[SSHD, NEAR]);
    assert_eq!(m.repo.outlogs(), vec![log.clone()]);
    let lines = m.journal(&log);
    assert!(lines.iter().any(|l| journals(l, None)), "{lines:?}");
    assert!(lines.iter().any(|l| journals(l, Some(NEAR))), "{lines:?}");

    // The next run brings far up to date from its own journal lines, and only far.
    m.set_far(None);
    m.clear_shared_log();
    m.repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    m.assert_all_mirrored(&[SSHD, NEAR, FAR]);
    assert!(m.repo.outlogs().is_empty());
    assert!(
        m.repo
            .done_logs()
            .contains(&log.replace(".outlog", ".done"))
    );
    assert!(!m.changes(FAR).is_empty(), "far was sent nothing");
    assert_no_changes(&m, &[SSHD, NEAR]);
}

#[test]
fn an_unreachable_mirror_is_left_behind_and_the_next_reprepro_run_catches_it_up() {
    let test = "an_unreachable_mirror_is_left_behind_and_the_next_reprepro_run_catches_it_up";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    // Far's server cannot even be started: the first mirror completes without it.
    let broken = m.conf(NEAR, &[FAR], "").replace(
        &format!("sftpcommand {}", m.path("far.sh").display()),
        "sftpcommand /bin/false",
    );
    m.repo.set_conf(&broken);
    let ran = m.include("bookworm", &[("b", 30_000)]);
    assert_ne!(ran.code(), 0, "{}", ran.stderr());
    let stderr = ran.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("behind") && l.contains(FAR)),
        "no line says that {FAR} is behind:\n{stderr}"
    );
    m.repo.assert_mirrored_at(&m.dir(NEAR));
    let pending = m.repo.outlogs();
    assert_eq!(pending.len(), 1);
    let lines = m.journal(&pending[0]);
    assert!(lines.iter().any(|l| journals(l, None)), "{lines:?}");
    assert!(!lines.iter().any(|l| l.starts_with("DONE@")), "{lines:?}");

    // Reachable again: reprepro's next run brings far up to date with both logs, and near
    // is sent only the new one.
    m.repo.set_conf(&m.conf(NEAR, &[FAR], ""));
    m.clear_shared_log();
    m.include("bookworm", &[("c", 2_000)]).expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    assert!(m.repo.outlogs().is_empty(), "{:?}", m.repo.outlogs());
    let resent: Vec<String> = m
        .changes(NEAR)
        .into_iter()
        .filter(|l| l.contains("/pool/main/b/"))
        .collect();
    assert!(
        resent.is_empty(),
        "near was sent b again:\n{}",
        resent.join("\n")
    );
    assert!(m.changes(FAR).iter().any(|l| l.contains("/pool/main/b/")));
}

/// Asserts from the shared log that no mirror's indexes or Release were switched before
/// every mirror had confirmed its last `.new` upload.
fn assert_switched_together(m: &Mirrors) {
    if let Err(why) = switched_together(m) {
        panic!("{why}");
    }
}

/// Whether the shared log shows a `.new` upload and a switch (a `.new` index renamed onto
/// its name, or a rename onto `Release`/`InRelease`) on every mirror, and no switch before
/// the last `.new` upload was confirmed on any (the server logs a request before it
/// replies, and the hook may send a switch only after the replies): why not, if not.
fn switched_together(m: &Mirrors) -> Result<(), String> {
    let tagged = m.tagged();
    let quoted = |l: &str, n: usize| l.split('"').nth(2 * n + 1).unwrap_or("").to_string();
    let is_switch = |l: &str| {
        let renamed = l.starts_with("rename ") || l.starts_with("posix-rename ");
        let (old, new) = (quoted(l, 0), quoted(l, 1));
        let base = new.rsplit('/').next().unwrap_or("");
        renamed
            && ((old.contains("/dists/") && old.ends_with(".new"))
                || base == "Release"
                || base == "InRelease")
    };
    // A `.new` lands by a rename from a temporary name (or, written in place, its close).
    let is_new_close = |l: &str| {
        (l.starts_with("close ") && quoted(l, 0).ends_with(".new"))
            || ((l.starts_with("rename ") || l.starts_with("posix-rename "))
                && quoted(l, 1).ends_with(".new"))
    };
    let show = || {
        tagged
            .iter()
            .enumerate()
            .filter(|(_, (l, _))| is_switch(l) || is_new_close(l))
            .map(|(i, (l, n))| format!("{i:4} {n}: {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for name in [SSHD, NEAR, FAR] {
        let has = |what: &dyn Fn(&str) -> bool| tagged.iter().any(|(l, n)| n == name && what(l));
        if !has(&is_new_close) || !has(&is_switch) {
            return Err(format!(
                "{name} got no .new upload or no switch:\n{}",
                show()
            ));
        }
    }
    let last_close = tagged.iter().rposition(|(l, _)| is_new_close(l)).unwrap();
    let first_switch = tagged.iter().position(|(l, _)| is_switch(l)).unwrap();
    if first_switch < last_close {
        return Err(format!(
            "a switch (line {first_switch}) before the last .new upload was confirmed \
             (line {last_close}):\n{}",
            show()
        ));
    }
    // In the same moment: every mirror's renames go before any mirror clears away the
    // previous versions it kept (`.NAME.prev`), which it does once its own renames are
    // answered. (Stale ones are cleared before its switch too, ahead of its renames.)
    // Mirrors switched one after another would clear the first's before the last's go.
    let last_switch = tagged.iter().rposition(|(l, _)| is_switch(l)).unwrap();
    let is_clear = |l: &str| l.starts_with("remove ") && quoted(l, 0).ends_with(".prev");
    let clearing = [SSHD, NEAR, FAR]
        .iter()
        .filter_map(|name| {
            let own = tagged
                .iter()
                .rposition(|(l, n)| n == name && is_switch(l))?;
            tagged
                .iter()
                .enumerate()
                .skip(own)
                .find(|(_, (l, n))| n == name && is_clear(l))
                .map(|(i, _)| i)
        })
        .min();
    if let Some(first_clear) = clearing
        && first_clear < last_switch
    {
        return Err(format!(
            "a mirror cleared its kept versions (line {first_clear}) before the last \
             switch (line {last_switch}): the mirrors did not switch together:\n{}",
            show()
        ));
    }
    Ok(())
}

#[test]
fn together_no_mirror_switches_before_every_mirror_has_its_new_indexes() {
    let test = "together_no_mirror_switches_before_every_mirror_has_its_new_indexes";
    let Some(m) = Mirrors::start(test, true) else {
        return;
    };
    // Far the slowest by far: a mirror that switched as soon as it was ready would switch
    // long before far has its indexes.
    m.set_far(Some((-1, "delay-20")));
    // `switch together` is the default...
    m.repo.set_conf(&m.three(""));
    m.include("bookworm", &[("a", 40_000), ("b", 3_000)])
        .expect(0);
    m.assert_all_mirrored(&[SSHD, NEAR, FAR]);
    assert_switched_together(&m);
    // ... and can be said.
    m.clear_shared_log();
    m.repo.set_conf(&m.three("switch together\n"));
    m.repo
        .reprepro(&["copy", "trixie", "bookworm", "a", "b"])
        .expect(0);
    m.assert_all_mirrored(&[SSHD, NEAR, FAR]);
    assert_switched_together(&m);
    // Indexes replaced: each mirror keeps the previous versions while it switches and
    // clears them after; no mirror clears before the last mirror's renames went.
    m.clear_shared_log();
    m.include("bookworm", &[("c", 2_000)]).expect(0);
    m.assert_all_mirrored(&[SSHD, NEAR, FAR]);
    assert_switched_together(&m);
    for name in [SSHD, NEAR, FAR] {
        assert!(
            m.tagged()
                .iter()
                .any(|(l, n)| n == name && l.starts_with("remove ") && l.contains(".prev\"")),
            "{name} kept no previous versions to clear: the check above proved nothing"
        );
    }
}

#[test]
fn only_pushes_to_the_named_mirrors_and_the_log_stays_pending_for_the_others() {
    let test = "only_pushes_to_the_named_mirrors_and_the_log_stays_pending_for_the_others";
    let Some(m) = Mirrors::start(test, true) else {
        return;
    };
    m.repo.set_conf(&m.three(""));
    m.include("bookworm", &[("a", 10_000)]).expect(0);
    m.assert_all_mirrored(&[SSHD, NEAR, FAR]);
    let log = m.pending_include(&[("b", 20_000)]);
    let before: Vec<_> = [SSHD, FAR].iter().map(|n| tree(&m.dir(n))).collect();

    m.repo
        .hook(&["--basedir", ".", "--pending", "--only", NEAR])
        .expect(0);
    m.repo.assert_mirrored_at(&m.dir(NEAR));
    for (name, was) in [SSHD, FAR].iter().zip(&before) {
        let now = tree(&m.dir(name));
        assert!(
            &now == was,
            "{name} changed\n--- before\n{}\n--- after\n{}",
            describe_tree(was),
            describe_tree(&now)
        );
    }
    assert_eq!(m.repo.outlogs(), vec![log.clone()]);
    let lines = m.journal(&log);
    assert!(lines.iter().any(|l| journals(l, Some(NEAR))), "{lines:?}");
    assert!(
        !lines
            .iter()
            .any(|l| journals(l, None) || journals(l, Some(FAR))),
        "{lines:?}"
    );
    m.repo.hook(&["--basedir", ".", "status"]).expect(4);

    // The first mirror is named by its servername; a list picks several.
    m.clear_shared_log();
    let only = format!("{SSHD},{FAR}");
    m.repo
        .hook(&["--basedir", ".", "--pending", "--only", &only])
        .expect(0);
    m.assert_all_mirrored(&[SSHD, NEAR, FAR]);
    assert!(m.repo.outlogs().is_empty(), "{:?}", m.repo.outlogs());
    assert_no_changes(&m, &[NEAR]);
    m.repo.hook(&["--basedir", ".", "status"]).expect(0);
}

/// Checks a trace file loosely: the first line a date as `date -u` prints it, then the
/// fields ftpsync writes.
fn assert_trace(path: &Path) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let first = text.lines().next().unwrap_or("");
    let w: Vec<&str> = first.split_whitespace().collect();
    let number = |s: &str, range: std::ops::RangeInclusive<u32>| {
        s.parse::<u32>().is_ok_and(|n| range.contains(&n))
    };
    let clock: Vec<&str> = w.get(3).map(|t| t.split(':').collect()).unwrap_or_default();
    let ok = w.len() == 6
        && ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&w[0])
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&w[1])
        && number(w[2], 1..=31)
        && clock.len() == 3
        && number(clock[0], 0..=23)
        && number(clock[1], 0..=59)
        && number(clock[2], 0..=60)
        && w[4] == "UTC"
        && number(w[5], 2000..=9999);
    assert!(
        ok,
        "{}: not a `date -u` first line: {first:?}",
        path.display()
    );
    for field in ["Archive serial: ", "Date: ", "Creator: outsftphook"] {
        assert!(
            text.lines().any(|l| l.starts_with(field)),
            "{}: no {field:?} line:\n{text}",
            path.display()
        );
    }
}

#[test]
fn tracefile_lands_on_every_mirror_and_the_first_mirror_without_servername_is_default() {
    let test = "tracefile_lands_on_every_mirror_and_the_first_mirror_without_servername_is_default";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo
        .set_conf(&m.conf(NEAR, &[FAR], "tracefile repo.example.org\n"));
    m.include("bookworm", &[("a", 10_000)]).expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    for name in [NEAR, FAR] {
        assert_trace(&m.dir(name).join("project/trace/repo.example.org"));
    }

    let log = m.pending_include(&[("b", 5_000)]);
    let far_before = tree(&m.dir(FAR));
    m.repo
        .hook(&["--basedir", ".", "--pending", "--only", DEFAULT])
        .expect(0);
    m.repo.assert_mirrored_at(&m.dir(NEAR));
    assert!(tree(&m.dir(FAR)) == far_before, "far changed");
    assert_eq!(m.repo.outlogs(), vec![log]);
    m.repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    assert!(m.repo.outlogs().is_empty());
    for name in [NEAR, FAR] {
        assert_trace(&m.dir(name).join("project/trace/repo.example.org"));
    }
}

#[test]
fn a_second_configuration_on_the_same_log_dir_is_refused_naming_the_first() {
    let repo = Repo::new();
    let base = repo.base();
    let first = base.join("conf/outsftphook.conf");
    let other_dir = base.join("other-conf");
    let other_remote = repo.dir.path().join("other-remote");
    fs::create_dir_all(&other_dir).unwrap();
    fs::create_dir_all(&other_remote).unwrap();
    fs::write(
        other_dir.join("outsftphook.conf"),
        format!(
            "sftpcommand {OPENSSH_SFTP_SERVER} -e -d {0}\ntargetdir {0}\nkeepdeleted 0\n",
            other_remote.display()
        ),
    )
    .unwrap();
    let deb = repo.deb("a", "1.0", 5_000);
    repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
        .expect(0);
    repo.assert_mirrored(&[]);
    let done = repo.done_logs();
    assert_eq!(done.len(), 1);
    let as_given = format!("logs/{}", done[0].replace(".done", ".outlog"));

    let names_first = |ran: &Ran| {
        let stderr = ran.stderr();
        let canonical = first.parent().unwrap().canonicalize().unwrap();
        let canonical = canonical.join("outsftphook.conf");
        assert!(
            stderr.lines().any(|l| {
                l.contains(&first.display().to_string())
                    || l.contains(&canonical.display().to_string())
            }),
            "{} does not name {}:\n{stderr}",
            ran.what,
            first.display()
        );
        assert!(!stderr.contains("processed already"), "{stderr}");
    };
    let confdir = other_dir.to_str().unwrap();
    let basedir = base.to_str().unwrap();
    for args in [
        vec!["--basedir", basedir, "--confdir", confdir, "--pending"],
        vec!["--basedir", basedir, "--confdir", confdir, &as_given],
    ] {
        let ran = repo.hook(&args);
        ran.expect(2);
        names_first(&ran);
    }
    assert!(
        fs::read_dir(&other_remote).unwrap().next().is_none(),
        "the refused configuration sent something"
    );
    // The first configuration goes on as before.
    let deb = repo.deb("b", "1.0", 5_000);
    repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
        .expect(0);
    repo.assert_mirrored(&[]);
    assert!(repo.outlogs().is_empty());
}

/// The two local mirrors, near first (named `default`: it has no servername) then far,
/// with `global` before the first mirror line.
fn two(m: &Mirrors, global: &str) -> String {
    m.conf(NEAR, &[FAR], global)
}

/// `out` cut at its `mirror NAME:` headings: each heading's name with the lines up to the
/// next one, in order (lines before the first heading are left out).
fn sections(out: &str) -> Vec<(String, Vec<String>)> {
    let mut parts: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines() {
        let heading = line
            .strip_prefix("mirror ")
            .and_then(|l| l.strip_suffix(':'))
            .filter(|n| !n.is_empty() && !n.contains(' '));
        match (heading, parts.last_mut()) {
            (Some(name), _) => parts.push((name.to_string(), Vec::new())),
            (None, Some((_, lines))) => lines.push(line.to_string()),
            (None, None) => {}
        }
    }
    parts
}

fn names(parts: &[(String, Vec<String>)]) -> Vec<&str> {
    parts.iter().map(|(n, _)| n.as_str()).collect()
}

/// Mirror `name`'s tree is `was`, entry for entry.
fn assert_unchanged(m: &Mirrors, name: &str, was: &[(PathBuf, crate::repo::Entry)]) {
    let now = tree(&m.dir(name));
    assert!(
        now == was,
        "{name} changed\n--- before\n{}\n--- after\n{}",
        describe_tree(was),
        describe_tree(&now)
    );
}

impl Mirrors {
    /// The conf of [`two`] with `name`'s server one that cannot start (`/bin/false`).
    fn two_with_broken(&self, name: &str) -> String {
        let script = if name == FAR { "far.sh" } else { "near.sh" };
        two(self, "").replace(
            &format!("sftpcommand {}", self.path(script).display()),
            "sftpcommand /bin/false",
        )
    }

    /// Runs the hook with its stderr merged into its stdout, in the order written.
    fn hook_merged(&self, args: &[&str]) -> Ran {
        self.repo.hook_after("exec 2>&1", args)
    }
}

#[test]
fn mirror_fills_two_empty_mirrors_each_under_its_heading_and_only_picks_one() {
    let test = "mirror_fills_two_empty_mirrors_each_under_its_heading_and_only_picks_one";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo.set_conf(&two(&m, ""));
    m.pending_include(&[("a", 20_000), ("b", 3_000)]);
    assert!(tree(&m.dir(NEAR)).is_empty() && tree(&m.dir(FAR)).is_empty());

    let ran = m.hook_merged(&["--basedir", ".", "mirror"]);
    ran.expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    let out = ran.stdout();
    let parts = sections(&out);
    assert_eq!(names(&parts), [DEFAULT, FAR], "{out}");
    // Each mirror's own part (its summary) comes after its heading.
    for (name, lines) in &parts {
        assert!(
            lines.iter().any(|l| l.starts_with("outsftphook: ")),
            "nothing said under mirror {name}:\n{out}"
        );
    }
    assert!(
        out.lines().next().is_some_and(|l| l == "mirror default:"),
        "something before the first heading:\n{out}"
    );
    assert!(!m.changes(NEAR).is_empty() && !m.changes(FAR).is_empty());

    // --only: one mirror, under its heading, the other untouched.
    m.pending_include(&[("c", 5_000)]);
    let near_before = tree(&m.dir(NEAR));
    m.clear_shared_log();
    let ran = m.repo.hook(&["--basedir", ".", "mirror", "--only", FAR]);
    ran.expect(0);
    m.repo.assert_mirrored_at(&m.dir(FAR));
    assert_unchanged(&m, NEAR, &near_before);
    assert_no_changes(&m, &[NEAR]);
    assert_eq!(names(&sections(&ran.stdout())), [FAR], "{}", ran.stdout());

    // --delete: a stray file goes from both.
    m.repo
        .hook(&["--basedir", ".", "mirror", "--only", DEFAULT])
        .expect(0);
    for name in [NEAR, FAR] {
        fs::write(m.dir(name).join("pool/main/stray.deb"), "x").unwrap();
    }
    let ran = m.repo.hook(&["--basedir", ".", "mirror", "--delete"]);
    ran.expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    assert_eq!(names(&sections(&ran.stdout())), [DEFAULT, FAR]);
}

#[test]
fn verify_checks_each_mirror_and_names_a_missing_file_under_its_mirror() {
    let test = "verify_checks_each_mirror_and_names_a_missing_file_under_its_mirror";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo.set_conf(&two(&m, ""));
    m.include("bookworm", &[("a", 10_000), ("b", 2_000)])
        .expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    let ran = m.repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(0);
    let parts = sections(&ran.stdout());
    assert_eq!(names(&parts), [DEFAULT, FAR], "{}", ran.stdout());
    assert!(
        parts.iter().all(|(_, lines)| lines.is_empty()),
        "{}",
        ran.stdout()
    );

    let gone = "pool/main/b/b/b_1.0_amd64.deb";
    fs::remove_file(m.dir(FAR).join(gone)).unwrap();
    let ran = m.repo.hook(&["--basedir", ".", "verify"]);
    ran.expect(1);
    let out = ran.stdout();
    let parts = sections(&out);
    assert_eq!(names(&parts), [DEFAULT, FAR], "{out}");
    assert!(parts[0].1.is_empty(), "near differs?\n{out}");
    // As one mirror's verify says it: `PATH: missing: local file of N bytes, ...`.
    assert_eq!(parts[1].1.len(), 1, "{out}");
    assert!(
        parts[1].1[0].starts_with(&format!("{gone}: missing")),
        "{out}"
    );
}

#[test]
fn an_unreachable_mirror_is_said_by_name_while_the_other_is_mirrored_and_verified() {
    let test = "an_unreachable_mirror_is_said_by_name_while_the_other_is_mirrored_and_verified";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo.set_conf(&two(&m, ""));
    m.pending_include(&[("a", 10_000)]);
    // The first mirror broken: the one after it still goes; then the other way round.
    for (broken, fine) in [(NEAR, FAR), (FAR, NEAR)] {
        let label = if broken == NEAR { DEFAULT } else { FAR };
        let said = |ran: &Ran| {
            let stderr = ran.stderr();
            assert!(
                stderr
                    .lines()
                    .any(|l| l.starts_with(&format!("outsftphook: mirror {label}:"))),
                "{}: no line names {label}:\n{stderr}",
                ran.what
            );
        };
        // Something new for each round, so that the reachable mirror has work to do.
        m.pending_include(&[(if broken == NEAR { "n" } else { "f" }, 4_000)]);
        m.repo.set_conf(&m.two_with_broken(broken));
        let broken_before = tree(&m.dir(broken));
        let ran = m.repo.hook(&["--basedir", ".", "mirror"]);
        ran.expect(1);
        said(&ran);
        m.repo.assert_mirrored_at(&m.dir(fine));
        assert_unchanged(&m, broken, &broken_before);

        // verify: the reachable one is compared, and its difference said under its name.
        let one = fs::read_dir(m.dir(fine).join("pool/main/a/a"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        let gone = format!("pool/main/a/a/{}", one.to_string_lossy());
        fs::remove_file(m.dir(fine).join(&gone)).unwrap();
        let ran = m.repo.hook(&["--basedir", ".", "verify"]);
        ran.expect(1);
        said(&ran);
        let out = ran.stdout();
        let fine_label = if fine == NEAR { DEFAULT } else { FAR };
        let parts = sections(&out);
        let part = parts.iter().find(|(n, _)| n == fine_label);
        assert!(
            part.is_some_and(|(_, lines)| lines
                .iter()
                .any(|l| l.starts_with(&format!("{gone}: missing")))),
            "{gone} not said missing under {fine_label}:\n{out}"
        );
        m.repo.set_conf(&two(&m, ""));
        m.repo.hook(&["--basedir", ".", "mirror"]).expect(0);
        m.assert_all_mirrored(&[NEAR, FAR]);
    }
}

#[test]
fn status_leads_each_mirrors_lines_with_its_name_and_a_finished_one_is_up_to_date() {
    let test = "status_leads_each_mirrors_lines_with_its_name_and_a_finished_one_is_up_to_date";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo.set_conf(&two(&m, ""));
    m.include("bookworm", &[("a", 5_000)]).expect(0);
    m.repo.hook(&["--basedir", ".", "status"]).expect(0);
    let log = m.pending_include(&[("b", 5_000)]);
    m.repo
        .hook(&["--basedir", ".", "--pending", "--only", FAR])
        .expect(0);
    m.repo.assert_mirrored_at(&m.dir(FAR));

    let ran = m.repo.hook(&["--basedir", ".", "status"]);
    ran.expect(4);
    let out = ran.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"far: up to date"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{DEFAULT}: {log}: ")) && l.contains(" left: ")),
        "no line says what is left of {log} for {DEFAULT}:\n{out}"
    );
    // Every line is a mirror's, but the closing count of pending logs.
    let (last, rest) = lines.split_last().expect("status said nothing");
    assert!(last.starts_with("1 pending"), "{out}");
    for line in rest {
        assert!(
            line.starts_with(&format!("{DEFAULT}: ")) || line.starts_with(&format!("{FAR}: ")),
            "a line led by no mirror's name: {line:?}\n{out}"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("far: ") && l != &"far: up to date")
    );
}

#[test]
fn switch_each_pushes_to_both_mirrors_and_marks_the_logs_done() {
    let test = "switch_each_pushes_to_both_mirrors_and_marks_the_logs_done";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo.set_conf(&two(&m, "switch each\n"));
    m.include("bookworm", &[("a", 30_000), ("b", 2_000)])
        .expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    m.repo
        .reprepro(&["copy", "trixie", "bookworm", "a"])
        .expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    assert!(m.repo.outlogs().is_empty(), "{:?}", m.repo.outlogs());
    let done = m.repo.done_logs();
    assert!(done.len() >= 2, "{done:?}");
    for log in done {
        let lines = m.journal(&log);
        for name in [None, Some(FAR)] {
            assert!(
                lines.iter().any(|l| journals(l, name)),
                "{log} has no journal lines of {name:?}: {lines:?}"
            );
        }
    }
    m.repo.hook(&["--basedir", ".", "verify"]).expect(0);
}

#[test]
fn dry_run_with_two_mirrors_heads_each_mirror_and_sends_nothing() {
    let test = "dry_run_with_two_mirrors_heads_each_mirror_and_sends_nothing";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo.set_conf(&two(&m, ""));
    m.include("bookworm", &[("a", 5_000)]).expect(0);
    let log = m.pending_include(&[("b", 5_000)]);
    let before: Vec<_> = [NEAR, FAR].iter().map(|n| tree(&m.dir(n))).collect();
    m.clear_shared_log();
    let b = "pool/main/b/b/b_1.0_amd64.deb";

    let ran = m.repo.hook(&["--basedir", ".", "--dry-run", "--pending"]);
    ran.expect(0);
    let out = ran.stdout();
    let parts = sections(&out);
    assert_eq!(names(&parts), [DEFAULT, FAR], "{out}");
    for (name, lines) in &parts {
        assert!(
            lines.iter().any(|l| l.contains(b)),
            "mirror {name}'s part does not name {b}:\n{out}"
        );
    }
    assert_eq!(m.repo.outlogs(), vec![log.clone()]);
    assert!(m.journal(&log).is_empty(), "{:?}", m.journal(&log));

    let ran = m
        .repo
        .hook(&["--basedir", ".", "--dry-run", "mirror", "--delete"]);
    ran.expect(0);
    let out = ran.stdout();
    let parts = sections(&out);
    assert_eq!(names(&parts), [DEFAULT, FAR], "{out}");
    for (name, lines) in &parts {
        assert!(
            lines.iter().any(|l| l.contains(b)),
            "mirror {name}'s part does not name {b}:\n{out}"
        );
    }
    for (name, was) in [NEAR, FAR].iter().zip(&before) {
        assert_unchanged(&m, name, was);
    }
    assert_no_changes(&m, &[NEAR, FAR]);
    assert_eq!(m.repo.outlogs(), vec![log]);
}

/// Mirrors on different servers switch together too: near on OpenSSH's (in order, atomic
/// renames, hard links to guard a switch), far on gesftpserver (none of those relied on):
/// every mirror's finalisation batches hold the steps the strictest allows, and a
/// sequence of adds, replaced indexes and removals leaves both equal to the out dir.
#[test]
fn mirrors_on_different_servers_follow_a_reprepro_sequence() {
    let test = "mirrors_on_different_servers_follow_a_reprepro_sequence";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    require(crate::support::GESFTPSERVER);
    m.script(
        "far.sh",
        &format!(
            "sh -c \"cd '{}' && exec {}\"",
            m.dir(FAR).display(),
            crate::support::GESFTPSERVER
        ),
    );
    m.repo.set_conf(&two(&m, ""));
    let steps: [&dyn Fn() -> Ran; 4] = [
        &|| m.include("bookworm", &[("foo", 40_000), ("bar", 5_000)]),
        &|| m.include("bookworm", &[("baz", 3_000)]),
        &|| m.repo.reprepro(&["remove", "bookworm", "bar"]),
        &|| m.repo.reprepro(&["copy", "trixie", "bookworm", "foo"]),
    ];
    follow(&m, &steps, &[NEAR, FAR]);
    let far_requests = fs::read_to_string(m.shared_log()).unwrap_or_default();
    assert!(
        !far_requests.contains(&format!("{}/", m.dir(FAR).display())),
        "far was to be served by gesftpserver, not the logging OpenSSH server"
    );
}

/// A mirror whose target is gone (or is a file) is behind, said once with what to do, and
/// nothing is made there; the other mirror switches. Once the target is back, the next
/// run brings that mirror up to date and leaves the other alone.
#[test]
fn a_mirror_without_its_target_is_behind_and_the_others_switch() {
    let test = "a_mirror_without_its_target_is_behind_and_the_others_switch";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo.set_conf(&two(&m, ""));
    m.include("bookworm", &[("old", 4_000)]).expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    for gone in ["missing", "a file"] {
        fs::remove_dir_all(m.dir(FAR)).unwrap();
        if gone == "a file" {
            fs::write(m.dir(FAR), "not a directory").unwrap();
        }
        m.clear_shared_log();
        let ran = m.include("bookworm", &[(&format!("new{}", gone.len()), 3_000)]);
        assert_ne!(ran.code(), 0, "{gone}: {}", ran.stderr());
        let stderr = ran.stderr();
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("targetdir") && l.contains(&*m.dir(FAR).to_string_lossy()))
            .collect();
        assert_eq!(said.len(), 1, "{gone}: {}", ran.stderr());
        assert!(
            said[0].contains("mirror far is behind"),
            "{gone}: {}",
            ran.stderr()
        );
        m.repo.assert_mirrored_at(&m.dir(NEAR));
        assert!(m.changes(FAR).is_empty(), "{gone}: {:?}", m.changes(FAR));
        assert_eq!(m.repo.outlogs().len(), 1, "{gone}: the log stays pending");
        // The target back, empty: the next run catches far up from its own lines. (An
        // emptied target lacks what the earlier logs brought: `mirror` fills it.)
        let _ = fs::remove_file(m.dir(FAR));
        fs::create_dir(m.dir(FAR)).unwrap();
        m.clear_shared_log();
        m.repo
            .hook(&["--basedir", ".", "mirror", "--only", FAR])
            .expect(0);
        m.repo.hook(&["--basedir", ".", "--pending"]).expect(0);
        m.assert_all_mirrored(&[NEAR, FAR]);
        assert!(m.repo.outlogs().is_empty(), "{:?}", m.repo.outlogs());
        assert!(m.changes(NEAR).is_empty(), "{gone}: {:?}", m.changes(NEAR));
    }
}

/// A mirror whose disk fills up mid-push is behind, with what was half written removed;
/// the other switches. With room again, the next run brings it up to date.
#[test]
fn a_mirror_whose_disk_fills_up_is_behind_and_catches_up_with_room() {
    let test = "a_mirror_whose_disk_fills_up_is_behind_and_catches_up_with_room";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    let disk = match crate::fulldisk::Tmpfs::mount(&m.dir(FAR), "160k") {
        Ok(disk) => disk,
        Err(why) => return skip(test, &why),
    };
    m.repo.set_conf(&two(&m, ""));
    let ran = m.include("bookworm", &[("big", 400_000), ("small", 2_000)]);
    assert_ne!(ran.code(), 0, "{}", ran.stderr());
    assert!(
        ran.stderr().contains("remote disk is") && ran.stderr().contains("mirror far is behind"),
        "{}",
        ran.stderr()
    );
    m.repo.assert_mirrored_at(&m.dir(NEAR));
    assert!(
        !m.dir(FAR).join("dists/bookworm/Release").exists(),
        "far switched without its pool"
    );
    assert_eq!(m.repo.outlogs().len(), 1);
    disk.grow("8m");
    m.clear_shared_log();
    m.repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    assert!(m.repo.outlogs().is_empty(), "{:?}", m.repo.outlogs());
    assert!(m.changes(NEAR).is_empty(), "{:?}", m.changes(NEAR));
}

/// A mirror on each other server the project meets (ProFTPD's mod_sftp, asyncssh chrooted,
/// rclone) beside one on OpenSSH's: the staged push follows a reprepro sequence of adds,
/// replaced indexes, removals and a copy on both, whatever each server offers (no
/// posix-rename, no hard links, its own answers).
#[test]
fn mirrors_on_proftpd_asyncssh_and_rclone_follow_a_reprepro_sequence() {
    use crate::servers::{Kind, Server};
    let test = "mirrors_on_proftpd_asyncssh_and_rclone_follow_a_reprepro_sequence";
    for kind in [Kind::Proftpd, Kind::AsyncsshChroot, Kind::Rclone] {
        let Some(m) = Mirrors::start(test, false) else {
            return;
        };
        let served = m.repo.dir.path();
        let server = match Server::start(kind, served, served) {
            Ok(server) => server,
            Err(why) => return skip(test, &why),
        };
        let text = format!(
            "keepdeleted 0\n{}mirror {FAR}\n{}",
            m.keys(NEAR),
            server.conf(&m.dir(FAR))
        );
        m.repo.set_conf(&text);
        let steps: [&dyn Fn() -> Ran; 4] = [
            &|| m.include("bookworm", &[("foo", 40_000), ("bar", 5_000)]),
            &|| m.include("bookworm", &[("baz", 3_000)]),
            &|| m.repo.reprepro(&["remove", "bookworm", "bar"]),
            &|| m.repo.reprepro(&["copy", "trixie", "bookworm", "foo"]),
        ];
        let followed = catch_unwind(AssertUnwindSafe(|| follow(&m, &steps, &[NEAR, FAR])));
        assert!(
            followed.is_ok(),
            "{}: server log:\n{}",
            kind.name(),
            server.log()
        );
    }
}

/// Copies `from` to `to` whole (`to` replaced).
fn copy_over(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    crate::repo::copy_tree(from, to);
}

/// Far's server killed right before each kind of request far is sent (the first and the
/// last of every run of one kind: a new tree's MKDIRs and RENAME, the OPENs, the renames
/// into place, the guard's links, the switch, ...): near goes through and switches, the run
/// says far is behind (exit 1), and the next run brings far up to date with nothing left
/// over on either mirror.
#[test]
fn a_mirror_killed_before_any_kind_of_request_is_behind_and_catches_up_whole() {
    let test = "a_mirror_killed_before_any_kind_of_request_is_behind_and_catches_up_whole";
    let Some(m) = Mirrors::start(test, false) else {
        return;
    };
    m.repo.set_conf(&two(&m, ""));
    m.include("bookworm", &[("old", 10_000)]).expect(0);
    m.assert_all_mirrored(&[NEAR, FAR]);
    m.pending_include(&[("big", 30_000), ("small", 2_000)]);
    let saved = |name: &str| m.path(&format!("saved-{name}"));
    for (dir, name) in [
        (m.dir(NEAR), NEAR),
        (m.dir(FAR), FAR),
        (m.repo.logs(), "logs"),
    ] {
        copy_over(&dir, &saved(name));
    }
    let restore = || {
        for (dir, name) in [
            (m.dir(NEAR), NEAR),
            (m.dir(FAR), FAR),
            (m.repo.logs(), "logs"),
        ] {
            copy_over(&saved(name), &dir);
        }
    };
    m.set_far(Some((-1, "kill-server")));
    m.repo.hook(&["--basedir", ".", "--pending"]).expect(0);
    m.wait_for_far();
    let packets = crate::repo::packets_in(&m.far_count().with_extension("packets"));
    let points = crate::repo::kinds_first_and_last(&packets);
    assert!(points.len() >= 10, "{points:?}");
    for (at, kind, k) in points {
        let debug = format!("far killed before request {k} (type {kind}, byte {at})");
        restore();
        m.set_far(Some((at, "kill-server")));
        let ran = m.repo.hook(&["--basedir", ".", "--pending"]);
        m.wait_for_far();
        assert_eq!(ran.code(), 1, "{debug}: {}", ran.stderr());
        m.assert_all_mirrored(&[NEAR]);
        m.set_far(None);
        let rerun = m.repo.hook(&["--basedir", ".", "--pending"]);
        assert_eq!(rerun.code(), 0, "{debug}, the rerun: {}", rerun.stderr());
        m.assert_all_mirrored(&[NEAR, FAR]);
        assert!(
            m.repo.outlogs().is_empty(),
            "{debug}: {:?}",
            m.repo.outlogs()
        );
        for name in ["outsftphook.leftovers", "outsftphook.far.leftovers"] {
            assert!(
                !m.repo.logs().join(name).exists(),
                "{debug}: {name} is left"
            );
        }
    }
}
