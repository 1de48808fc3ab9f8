//! The other real SFTP servers, each on 127.0.0.1 with keys generated for the test, started
//! and stopped by it: ProFTPD's mod_sftp, `rclone serve sftp` (with and without its write
//! cache), asyncssh's server (tests/fixtures/asyncssh_server.py) and a paramiko-based one
//! (tests/fixtures/paramiko_server.py). The program reaches
//! them as users do, through `ssh` and the `sshcommand` key of its conf.
//!
//! A server that is not installed skips its test with a printed reason; with `CI` set
//! (`.ci/run` installs them all) it fails the test instead.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROFTPD: &str = "/usr/sbin/proftpd";
const PROFTPD_MOD_SFTP: &str = "/usr/lib/proftpd/mod_sftp.so";
const RCLONE: &str = "/usr/bin/rclone";

/// Which server, and how it is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ProFTPD's mod_sftp, `DefaultRoot` (a chroot) at the served directory.
    Proftpd,
    /// `rclone serve sftp DIR`: writes go straight to the files.
    Rclone,
    /// `rclone serve sftp DIR --vfs-cache-mode writes`: writes go to a cache, and the files
    /// reach DIR after their CLOSE.
    RcloneCached,
    /// asyncssh's server with `chroot` at the served directory.
    AsyncsshChroot,
    /// asyncssh's server without chroot (paths are the machine's).
    Asyncssh,
    /// paramiko's SFTPServer over the file system, rooted at the served directory.
    Paramiko,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Proftpd => "proftpd",
            Kind::Rclone => "rclone",
            Kind::RcloneCached => "rclone --vfs-cache-mode writes",
            Kind::AsyncsshChroot => "asyncssh (chroot)",
            Kind::Asyncssh => "asyncssh",
            Kind::Paramiko => "paramiko",
        }
    }

    /// Whether the server shows the served directory as `/`.
    fn rooted(self) -> bool {
        !matches!(self, Kind::Asyncssh)
    }
}

/// A running server, stopped (by its pid) when dropped.
pub struct Server {
    pub kind: Kind,
    child: Child,
    pub port: u16,
    client_key: PathBuf,
    known_hosts: PathBuf,
    /// The directory it serves, as the machine sees it.
    served: PathBuf,
}

pub use crate::support::skip;

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (package openssh-client)");
    assert!(status.success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits for `child` to listen on `port`. The deadline is generous: a loaded machine starts
/// servers slowly, and under CI one that did not start fails its test.
fn wait_listening(port: u16, child: &mut Child, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited before listening ({status})"));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not start listening"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A file in `dir` holding the server's log (its stderr).
/// Starts a server that listens on `port` once up, its output in the test's server log.
fn spawn_listening(mut cmd: Command, dir: &Path, port: u16, what: &str) -> Result<Child, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(dir))
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    wait_listening(port, &mut child, what)?;
    Ok(child)
}

fn log_file(dir: &Path) -> fs::File {
    fs::File::create(dir.join("server.log")).unwrap()
}

impl Server {
    /// Starts `kind` serving `served` (which must exist), with its keys and logs in
    /// `dir/KIND`; `Err` says why it cannot run here.
    pub fn start(kind: Kind, dir: &Path, served: &Path) -> Result<Server, String> {
        let dir = dir.join(format!(
            "server-{}",
            kind.name().replace([' ', '(', ')'], "")
        ));
        fs::create_dir_all(&dir).unwrap();
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        let (child, port) = match kind {
            Kind::Proftpd => start_proftpd(&dir, &host_key, &client_key, served)?,
            Kind::Rclone | Kind::RcloneCached => {
                start_rclone(&dir, &host_key, &client_key, served, kind)?
            }
            Kind::Asyncssh | Kind::AsyncsshChroot => {
                start_asyncssh(&dir, &host_key, &client_key, served, kind)?
            }
            Kind::Paramiko => start_paramiko(&dir, &host_key, &client_key, served)?,
        };
        let known_hosts = dir.join("known_hosts");
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
        fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
        Ok(Server {
            kind,
            child,
            port,
            client_key,
            known_hosts,
            served: served.to_owned(),
        })
    }

    /// The `ssh` command line (as the conf's `sshcommand` takes it) that reaches it.
    pub fn ssh_command(&self) -> String {
        format!(
            "ssh -F /dev/null -oIdentityFile={} -oUserKnownHostsFile={} \
             -oStrictHostKeyChecking=yes -oPort={}",
            self.client_key.display(),
            self.known_hosts.display(),
            self.port
        )
    }

    /// The server command that reaches it, for driving the engine directly.
    pub fn engine_command(&self) -> outsftphook::ServerCommand {
        outsftphook::ServerCommand::Direct(vec![
            "sh".into(),
            "-c".into(),
            format!("exec {} -l root -s 127.0.0.1 sftp", self.ssh_command()).into(),
        ])
    }

    /// The conf lines that make the program push to `dir` (below the served directory).
    pub fn conf(&self, dir: &Path) -> String {
        format!(
            "servername 127.0.0.1\nusername root\nsshcommand {}\ntargetdir {}\n",
            self.ssh_command(),
            self.remote_name(dir)
        )
    }

    /// How the server names `dir`, a directory below the one it serves.
    pub fn remote_name(&self, dir: &Path) -> String {
        if self.kind.rooted() {
            let rel = dir
                .strip_prefix(&self.served)
                .expect("below the served dir");
            format!("/{}", rel.display())
        } else {
            dir.display().to_string()
        }
    }

    /// The directory on the machine that the server shows as `/`: the served one, or the
    /// machine's root for a server that shows the machine's paths.
    pub fn shown_as_root(&self) -> &Path {
        if self.kind.rooted() {
            &self.served
        } else {
            Path::new("/")
        }
    }

    /// The server's own log (its stderr and, for ProFTPD, its SFTP log).
    pub fn log(&self) -> String {
        let dir = self.client_key.parent().unwrap();
        let mut text = String::new();
        for name in ["server.log", "sftp.log"] {
            text.push_str(&fs::read_to_string(dir.join(name)).unwrap_or_default());
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: ProFTPD's master passes it on to its session processes.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_proftpd(
    dir: &Path,
    host_key: &Path,
    client_key: &Path,
    served: &Path,
) -> Result<(Child, u16), String> {
    for (path, package) in [
        (PROFTPD, "proftpd-core"),
        (PROFTPD_MOD_SFTP, "proftpd-mod-crypto"),
    ] {
        if !Path::new(path).exists() {
            return Err(format!("{path} is not installed (package {package})"));
        }
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("ProFTPD needs root here to switch to the logged-in user".into());
    }
    // mod_sftp reads authorized keys in RFC 4716 format only.
    let out = Command::new("ssh-keygen")
        .arg("-e")
        .arg("-f")
        .arg(client_key.with_extension("pub"))
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let authorized = dir.join("authorized_keys.rfc4716");
    fs::write(&authorized, out.stdout).unwrap();
    let port = free_port();
    let conf = dir.join("proftpd.conf");
    let d = dir.display();
    fs::write(
        &conf,
        format!(
            "LoadModule mod_sftp.c\nServerType standalone\nServerName \"outsftphook test\"\n\
             DefaultAddress 127.0.0.1\nSocketBindTight on\nPort {port}\nUseIPv6 off\n\
             User root\nGroup root\nRootLogin on\nUseFtpUsers off\nRequireValidShell off\n\
             AuthOrder mod_auth_unix.c\nUseReverseDNS off\nDelayTable none\nWtmpLog off\n\
             TransferLog none\nPidFile {d}/proftpd.pid\nScoreboardFile {d}/scoreboard\n\
             SystemLog {d}/system.log\nDefaultRoot {}\nAllowOverwrite on\n\
             SFTPEngine on\nSFTPLog {d}/sftp.log\nSFTPHostKey {}\n\
             SFTPAuthorizedUserKeys file:{}\nSFTPAuthMethods publickey\n",
            served.display(),
            host_key.display(),
            authorized.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(PROFTPD);
    cmd.args(["-n", "-q", "-c"]).arg(&conf);
    Ok((spawn_listening(cmd, dir, port, "proftpd")?, port))
}

fn start_rclone(
    dir: &Path,
    host_key: &Path,
    client_key: &Path,
    served: &Path,
    kind: Kind,
) -> Result<(Child, u16), String> {
    if !Path::new(RCLONE).exists() {
        return Err(format!("{RCLONE} is not installed (package rclone)"));
    }
    let port = free_port();
    let mut cmd = Command::new(RCLONE);
    cmd.args(["serve", "sftp"])
        .arg(served)
        .args(["--config", "/dev/null", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--key")
        .arg(host_key)
        .arg("--authorized-keys")
        .arg(client_key.with_extension("pub"))
        .arg("--cache-dir")
        .arg(dir.join("cache"));
    if kind == Kind::RcloneCached {
        // Written back as soon as a file is closed, so the tests can see the files.
        cmd.args(["--vfs-cache-mode", "writes", "--vfs-write-back", "0s"]);
    }
    Ok((spawn_listening(cmd, dir, port, "rclone")?, port))
}

fn start_asyncssh(
    dir: &Path,
    host_key: &Path,
    client_key: &Path,
    served: &Path,
    kind: Kind,
) -> Result<(Child, u16), String> {
    let root = if kind == Kind::AsyncsshChroot {
        served.as_os_str()
    } else {
        "-".as_ref()
    };
    let authorized = client_key.with_extension("pub");
    let args = [host_key.as_os_str(), authorized.as_os_str(), root];
    start_python(dir, "asyncssh", "asyncssh_server.py", &args)
}

fn start_paramiko(
    dir: &Path,
    host_key: &Path,
    client_key: &Path,
    served: &Path,
) -> Result<(Child, u16), String> {
    let authorized = client_key.with_extension("pub");
    let args = [
        host_key.as_os_str(),
        authorized.as_os_str(),
        served.as_os_str(),
    ];
    start_python(dir, "paramiko", "paramiko_server.py", &args)
}

/// Runs `tests/fixtures/SCRIPT ARGS` with the python3 first on PATH (CI installs `module`
/// for it with pip), and reads the port it chose from its first line.
fn start_python(
    dir: &Path,
    module: &str,
    script: &str,
    args: &[&std::ffi::OsStr],
) -> Result<(Child, u16), String> {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Err(format!(
            "python3 cannot import {module} (pip install {module})"
        ));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(script);
    let mut child = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(dir))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
    // Its first line is the port it listens on (it chose a free one).
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    // (A failed read leaves it empty, which says it did not start.)
    let _ = BufReader::new(stdout).read_line(&mut line);
    match line.trim().parse() {
        Ok(port) => Ok((child, port)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{} did not start: {:?}",
                script.display(),
                line.trim()
            ))
        }
    }
}
