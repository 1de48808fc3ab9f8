//! Through a real `sshd` on 127.0.0.1 with generated keys: the path users take.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outsftphook::ServerCommand;
use outsftphook::{Engine, EngineConfig, Op, Outcome};

use crate::support::{Sandbox, pattern, rpath};

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd serving only us, on a free loopback port, killed when dropped.
pub struct TestSshd {
    child: Child,
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
                 PidFile {}\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
                host_key.display(),
                authorized.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let known_hosts = dir.join("known_hosts");
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
        fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start sshd: {e}"))?;
        let mut sshd = TestSshd {
            child,
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
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn uploads_through_a_real_sshd() {
    let sandbox = Sandbox::new();
    let sshd = match TestSshd::start(sandbox.dir.path()) {
        Ok(sshd) => sshd,
        Err(why) => {
            crate::support::skip("uploads_through_a_real_sshd", &why);
            return;
        }
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
    let sshd = match TestSshd::start(sandbox.dir.path()) {
        Ok(sshd) => sshd,
        Err(why) => {
            crate::support::skip("a_refused_login_fails_fast_instead_of_prompting", &why);
            return;
        }
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
    let sshd = match TestSshd::start(repo.dir.path()) {
        Ok(sshd) => sshd,
        Err(why) => {
            crate::support::skip("reprepro_pushes_through_a_real_sshd", &why);
            return;
        }
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
