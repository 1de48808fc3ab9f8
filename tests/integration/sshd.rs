//! Through a real `sshd` on 127.0.0.1 with generated keys: the path users take.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outsftphook::{Engine, EngineConfig, Op, Outcome};
use outsftphook::{KeptConnection, ServerCommand};

use crate::support::{Sandbox, pattern, rpath};

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd serving only us, on a free loopback port, killed when dropped with every
/// connection it serves (so that no ssh kept connected to it outlives the test).
pub struct TestSshd {
    child: Child,
    log: PathBuf,
    pub port: u16,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
}

impl TestSshd {
    /// Starts sshd, or returns why it cannot run here (so the caller can skip, saying so).
    pub fn start(dir: &Path) -> Result<TestSshd, String> {
        TestSshd::start_with(dir, "")
    }

    /// Starts sshd with `extra` lines in its configuration.
    pub fn start_with(dir: &Path, extra: &str) -> Result<TestSshd, String> {
        if !Path::new(SSHD).exists() {
            return Err(format!("{SSHD} is not installed (package openssh-server)"));
        }
        if !nix::unistd::geteuid().is_root() {
            return Err("sshd needs root here to switch to the logged-in user".into());
        }
        let dir = dir.join("sshd");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        let authorized = dir.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PidFile {}\nSubsystem sftp /usr/lib/openssh/sftp-server\n{extra}",
                host_key.display(),
                authorized.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let known_hosts = dir.join("known_hosts");
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
        fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
        let log = dir.join("log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .map_err(|e| format!("cannot start sshd: {e}"))?;
        let mut sshd = TestSshd {
            child,
            log,
            port,
            client_key,
            known_hosts,
        };
        // Generous: a loaded machine starts sshd slowly, and under CI one that did not start
        // fails its test. One that exited is not waited for.
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                return Err(format!("sshd exited before listening ({status})"));
            }
            if Instant::now() > deadline {
                return Err("sshd did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(sshd)
    }

    /// How to reach it with the system ssh, keys and known_hosts from this test only.
    pub fn server_command(&self) -> ServerCommand {
        ServerCommand::Ssh {
            ssh: vec!["ssh".into(), "-F".into(), "/dev/null".into()],
            options: vec![
                format!("-oIdentityFile={}", self.client_key.display()).into(),
                format!("-oUserKnownHostsFile={}", self.known_hosts.display()).into(),
                "-oStrictHostKeyChecking=yes".into(),
                format!("-oPort={}", self.port).into(),
            ],
            user: Some("root".into()),
            host: "127.0.0.1".into(),
            kept: None,
        }
    }
}

/// Starts sshd for `test`, or says why it cannot run here (which fails the test under CI).
pub fn sshd_for(test: &str, dir: &Path) -> Option<TestSshd> {
    match TestSshd::start(dir) {
        Ok(sshd) => Some(sshd),
        Err(why) => {
            crate::support::skip(test, &why);
            None
        }
    }
}

impl TestSshd {
    /// How many times a client logged in (each ssh connection, not each channel on one).
    pub fn logins(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// The pids of the processes sshd started for its connections.
    fn connections(&self) -> Vec<i32> {
        let listener = self.child.id().to_string();
        let Ok(procs) = fs::read_dir("/proc") else {
            return vec![];
        };
        procs
            .flatten()
            .filter_map(|p| p.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status
                    .lines()
                    .any(|l| l.strip_prefix("PPid:").map(str::trim) == Some(&listener))
            })
            .collect()
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        // Its connections first: an ssh master kept connected to one (sshpersist) leaves
        // when its connection ends, and a new sshd on this port must not meet it.
        for pid in self.connections() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn uploads_through_a_real_sshd() {
    let sandbox = Sandbox::new();
    let Some(sshd) = sshd_for("uploads_through_a_real_sshd", sandbox.dir.path()) else {
        return;
    };
    let remote = sandbox.remote();
    let mut ops = Vec::new();
    for i in 0..50 {
        let size = [0, 1, 70_000, 600_000][i % 4];
        ops.push(Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), size, i as u8),
            // Absolute: the sftp session starts in root's home.
            remote: rpath(&format!("{}/pool/x{}/f{i}", remote.display(), i % 5)),
            fsync: false,
            mtime: None,
        });
    }
    let mut engine = Engine::connect(&sshd.server_command(), EngineConfig::default())
        .expect("connect through sshd");
    let results = engine.run(&ops, |_, _| {}).unwrap();
    assert!(
        results.iter().all(|r| r == &Ok(Outcome::Done)),
        "{results:?}"
    );
    // ssh is given 5 ms to exit by itself (then it is stopped, and no status is known): on
    // a loaded machine that is not always enough. What it must never say is a failure.
    assert_ne!(engine.close().map(|s| s.success()), Some(false));
    for i in 0..50 {
        let size = [0, 1, 70_000, 600_000][i % 4];
        let got = fs::read(remote.join(format!("pool/x{}/f{i}", i % 5))).unwrap();
        assert!(got == pattern(size, i as u8), "f{i} differs");
    }
}

#[test]
fn a_refused_login_fails_fast_instead_of_prompting() {
    let sandbox = Sandbox::new();
    let Some(sshd) = sshd_for(
        "a_refused_login_fails_fast_instead_of_prompting",
        sandbox.dir.path(),
    ) else {
        return;
    };
    // A user with no key authorized: BatchMode must make ssh give up, not ask.
    let ServerCommand::Ssh {
        ssh, mut options, ..
    } = sshd.server_command()
    else {
        unreachable!()
    };
    options.retain(|o| !o.to_string_lossy().starts_with("-oIdentityFile"));
    options.push("-oIdentityFile=/dev/null".into());
    let server = ServerCommand::Ssh {
        ssh,
        options,
        user: Some("nobody".into()),
        host: "127.0.0.1".into(),
        kept: None,
    };
    let started = Instant::now();
    let err = Engine::connect(&server, EngineConfig::default())
        .err()
        .expect("login must fail");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(err.to_string().contains("closed the connection"), "{err}");
}

#[test]
fn reprepro_pushes_through_a_real_sshd() {
    let repo = crate::repo::Repo::new();
    let Some(sshd) = sshd_for("reprepro_pushes_through_a_real_sshd", repo.dir.path()) else {
        return;
    };
    repo.set_conf(&format!(
        "servername 127.0.0.1\nusername root\n\
         sshcommand ssh -F /dev/null -oIdentityFile={} -oUserKnownHostsFile={} -oPort={}\n\
         targetdir {}/\n",
        sshd.client_key.display(),
        sshd.known_hosts.display(),
        sshd.port,
        repo.remote().display()
    ));
    let foo = repo.deb("foo", "1.0", 200_000);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    repo.reprepro(&["copy", "trixie", "bookworm", "foo"])
        .expect(0);
    repo.reprepro(&["export"]).expect(0);
    repo.assert_mirrored(&[]);
    assert!(repo.outlogs().is_empty());
}

/// The conf that reaches `sshd` as root with its keys, pushing to the repository's
/// `remote/`, with `extra` lines.
fn sshd_conf(repo: &crate::repo::Repo, sshd: &TestSshd, extra: &str) -> String {
    format!(
        "servername 127.0.0.1\nusername root\n\
         sshcommand ssh -F /dev/null -oIdentityFile={} -oUserKnownHostsFile={} -oPort={}\n\
         targetdir {}/\n{extra}",
        sshd.client_key.display(),
        sshd.known_hosts.display(),
        sshd.port,
        repo.remote().display()
    )
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn consecutive_runs_share_one_login_and_the_kept_connection_leaves_when_idle() {
    let repo = crate::repo::Repo::new();
    let Some(sshd) = sshd_for("consecutive_runs_share_one_login", repo.dir.path()) else {
        return;
    };
    // Long enough for a loaded machine between runs; the packages are built first.
    repo.set_conf(&sshd_conf(&repo, &sshd, "sshpersist 5\n"));
    let debs: Vec<_> = ["foo", "bar", "baz"]
        .iter()
        .enumerate()
        .map(|(i, name)| repo.deb(name, "1.0", 20_000 * (i + 1)))
        .collect();
    for deb in &debs {
        let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
        ran.expect(0);
        assert!(
            !ran.stderr().contains("ssh"),
            "nothing said of it: {}",
            ran.stderr()
        );
    }
    let masters = repo.ssh_masters();
    assert_eq!(masters.len(), 1, "{masters:?}");
    assert_eq!(sshd.logins(), 1, "three runs, one login");
    repo.assert_mirrored(&[]);
    // Idle for its five seconds, it leaves by itself; a generous wait for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone(masters[0]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone(masters[0]), "the kept connection is still there");
    let deb = repo.deb("qux", "1.0", 1_000);
    repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
        .expect(0);
    repo.assert_mirrored(&[]);
    assert_eq!(sshd.logins(), 2, "a new connection after the kept one left");
}

#[test]
fn a_kept_connection_killed_leaves_a_socket_the_next_run_replaces() {
    let repo = crate::repo::Repo::new();
    let Some(sshd) = sshd_for("a_kept_connection_killed_leaves_a_socket", repo.dir.path()) else {
        return;
    };
    repo.set_conf(&sshd_conf(&repo, &sshd, ""));
    let foo = repo.deb("foo", "1.0", 20_000);
    repo.reprepro(&["includedeb", "bookworm", foo.to_str().unwrap()])
        .expect(0);
    let [master] = repo.ssh_masters()[..] else {
        panic!("one kept connection: {:?}", repo.ssh_masters());
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    while !gone(master) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let bar = repo.deb("bar", "1.0", 30_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", bar.to_str().unwrap()]);
    ran.expect(0);
    repo.assert_mirrored(&[]);
    assert_eq!(sshd.logins(), 2);
    assert_eq!(repo.ssh_masters().len(), 1, "a new one is kept");
}

#[test]
fn a_socket_directory_others_may_enter_is_not_used_and_the_run_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    let repo = crate::repo::Repo::new();
    let Some(sshd) = sshd_for("a_socket_directory_others_may_enter", repo.dir.path()) else {
        return;
    };
    repo.set_conf(&sshd_conf(&repo, &sshd, ""));
    let dir = repo.runtime_dir().join("outsftphook");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    for name in ["foo", "bar"] {
        let deb = repo.deb(name, "1.0", 20_000);
        let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
        ran.expect(0);
        let err = ran.stderr();
        assert!(
            err.contains(&format!(
                "not keeping the ssh connection for the next run: {}: others may enter it \
                 (mode 0777): make it 0700 (chmod 700) or remove it (or set sshpersist no)",
                dir.display()
            )),
            "{err}"
        );
    }
    repo.assert_mirrored(&[]);
    assert_eq!(sshd.logins(), 2, "each run its own connection");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "no socket in it");
}

/// 60 uploads over three connections kept on one ssh connection whose socket is in `dir`.
fn spread_on_a_kept_connection(sandbox: &Sandbox, sshd: &TestSshd, dir: &Path) -> Engine {
    let ServerCommand::Ssh {
        ssh,
        options,
        user,
        host,
        ..
    } = sshd.server_command()
    else {
        unreachable!()
    };
    let server = ServerCommand::Ssh {
        ssh,
        options,
        user,
        host,
        kept: Some(KeptConnection {
            socket_dir: dir.to_owned(),
            persist: Duration::from_secs(1),
        }),
    };
    let config = EngineConfig {
        connections: 3,
        multi_connection_min_rtt: Duration::ZERO,
        ..EngineConfig::default()
    };
    let remote = sandbox.remote();
    let ops: Vec<_> = (0..60)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), 300_000, i as u8),
            remote: rpath(&format!("{}/p/f{i}", remote.display())),
            fsync: false,
            mtime: None,
        })
        .collect();
    let mut engine = Engine::connect(&server, config).expect("connect through sshd");
    let results = engine.run_spread(&ops, |_, _| {}).unwrap();
    assert!(
        results.iter().all(|r| r == &Ok(Outcome::Done)),
        "{results:?}"
    );
    for i in 0..60 {
        let got = fs::read(remote.join(format!("p/f{i}"))).unwrap();
        assert!(got == pattern(300_000, i as u8), "f{i} differs");
    }
    engine
}

#[test]
fn further_connections_are_channels_on_the_kept_one() {
    let sandbox = Sandbox::new();
    let Some(sshd) = sshd_for(
        "further_connections_are_channels_on_the_kept_one",
        sandbox.dir.path(),
    ) else {
        return;
    };
    let dir = sandbox.dir.path().join("sockets");
    fs::create_dir(&dir).unwrap();
    let engine = spread_on_a_kept_connection(&sandbox, &sshd, &dir);
    assert_eq!(engine.connection_stats().len(), 3);
    assert_eq!(sshd.logins(), 1, "three sessions, one login");
}

#[test]
fn a_server_allowing_one_session_per_connection_still_gets_every_upload() {
    let sandbox = Sandbox::new();
    let sshd = match TestSshd::start_with(sandbox.dir.path(), "MaxSessions 1\n") {
        Ok(sshd) => sshd,
        Err(why) => {
            crate::support::skip("a_server_allowing_one_session_per_connection", &why);
            return;
        }
    };
    let dir = sandbox.dir.path().join("sockets");
    fs::create_dir(&dir).unwrap();
    // A further channel is refused: that ssh logs in on its own (and says so only in -v).
    let engine = spread_on_a_kept_connection(&sandbox, &sshd, &dir);
    assert_eq!(engine.connection_stats().len(), 3);
    assert_eq!(sshd.logins(), 3);
}

#[test]
fn an_xdg_runtime_dir_of_another_user_is_passed_over_for_the_temporary_directory() {
    let repo = crate::repo::Repo::new();
    let Some(sshd) = sshd_for("an_xdg_runtime_dir_of_another_user", repo.dir.path()) else {
        return;
    };
    repo.set_conf(&sshd_conf(&repo, &sshd, "sshpersist 30\n"));
    // As `su` without `-` leaves it: the session's of the user we came from.
    let theirs = repo.dir.path().join("their-run");
    fs::create_dir(&theirs).unwrap();
    nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let tmp = repo.dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    repo.pending_include("foo", "1.0");
    let ran = Command::new(crate::repo::BIN)
        .current_dir(repo.base())
        .args(["--basedir", ".", "--pending"])
        .env("XDG_RUNTIME_DIR", &theirs)
        .env("TMPDIR", &tmp)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(0), "{err}");
    assert!(!err.contains("not keeping"), "{err}");
    repo.assert_mirrored(&[]);
    let uid = nix::unistd::geteuid();
    let sockets = fs::read_dir(tmp.join(format!("outsftphook-ssh-{uid}"))).unwrap();
    assert_eq!(sockets.count(), 1, "the kept connection's socket is there");
    assert_eq!(
        fs::read_dir(&theirs).unwrap().count(),
        0,
        "nothing in theirs"
    );
}
