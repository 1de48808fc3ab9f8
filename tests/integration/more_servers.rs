//! More real SFTP servers, each a different implementation: Twisted Conch's
//! (tests/fixtures/twisted_sftp_server.py, pip `twisted`), Go's github.com/pkg/sftp (its own
//! standalone server, built here offline from Debian's golang-github-pkg-sftp-dev with
//! golang-go), the Perl Net::SFTP::SftpServer (libnet-sftp-sftpserver-perl), MySecureShell
//! (mysecureshell, its conf bound over /etc/ssh/sftp_config in a mount namespace of its
//! own), each speaking SFTP on its stdin/stdout as an `sftpcommand`; and Erlang/OTP's
//! ssh_sftpd (erlang-ssh, tests/fixtures/erlang_sftpd.escript) behind OTP's own SSH daemon
//! on 127.0.0.1, reached through `ssh`.
//!
//! On each: the round trip of interop.rs (mirror, mirror again sending nothing, verify,
//! reprepro's hook calls), its planted links replaced by a hook run, and the hostile cases
//! of across_servers.rs (planted symlinks, changed sources, a missing target), each case in
//! a directory of its own. Where a server makes the program fail or break a promise, the
//! test is ignored with the reason (see the findings in each test's comment). A server that
//! is not installed skips its test with a printed reason; with `CI` set it fails.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outsftphook::{Cause, Engine, EngineConfig, Op, OpResult, RemotePath, ServerCommand};

use crate::repo::{BIN, Repo};
use crate::support::{names_in, pattern, skip};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Twisted Conch's SFTPServerForUnixConchUser: the machine's paths.
    Twisted,
    /// github.com/pkg/sftp's `Server` (server_standalone): the machine's paths.
    PkgSftp,
    /// Net::SFTP::SftpServer: the served directory shown as `/`, symlinks hidden.
    Perl,
    /// MySecureShell's own server: the machine's paths, its conf bound in.
    MySecureShell,
    /// Erlang/OTP's ssh_sftpd behind OTP's SSH daemon: the served directory shown as `/`.
    Erlang,
    /// pysftpserver's `pysftpjail`: the machine's paths, none outside the served directory.
    Pysftpserver,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Twisted => "twisted",
            Kind::PkgSftp => "pkg-sftp",
            Kind::Perl => "perl-sftpserver",
            Kind::MySecureShell => "mysecureshell",
            Kind::Erlang => "erlang-ssh_sftpd",
            Kind::Pysftpserver => "pysftpserver",
        }
    }

    /// Whether the server shows the served directory as `/`.
    fn rooted(self) -> bool {
        matches!(self, Kind::Perl | Kind::Erlang)
    }
}

const GO: &str = "/usr/bin/go";
const GOCODE_PKG_SFTP: &str = "/usr/share/gocode/src/github.com/pkg/sftp/server_standalone";
const PERL_SFTPSERVER: &str = "/usr/share/perl5/Net/SFTP/SftpServer.pm";
const MYSECURESHELL: &str = "/usr/bin/mysecureshell";
const ESCRIPT: &str = "/usr/bin/escript";

/// How a server is reached.
enum Reach {
    /// A launcher script, run afresh by each session (the engine's or the program's).
    Stdio(PathBuf),
    /// A daemon on 127.0.0.1, through `ssh`; stopped (by its pid) with the server.
    Ssh {
        child: Child,
        port: u16,
        client_key: PathBuf,
        known_hosts: PathBuf,
    },
}

/// A server of `kind` serving `served`, its log in `log`.
struct Server {
    kind: Kind,
    reach: Reach,
    log: PathBuf,
    /// The directory it serves, as the machine sees it.
    served: PathBuf,
}

/// pkg/sftp's standalone server, built once per test binary into the target's tmp dir
/// (GOPATH mode, offline: Debian ships the module and its dependencies in /usr/share/gocode).
fn pkg_sftp_server() -> Result<PathBuf, String> {
    for (path, package) in [
        (GO, "golang-go"),
        (GOCODE_PKG_SFTP, "golang-github-pkg-sftp-dev"),
    ] {
        installed(path, package)?;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pkg-sftp");
    let binary = dir.join("sftp-server");
    static BUILT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if binary.exists() {
        return Ok(binary);
    }
    let out = Command::new(GO)
        .args(["build", "-o"])
        .arg(&binary)
        .arg("github.com/pkg/sftp/server_standalone")
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", dir.join("cache"))
        .env("GOFLAGS", "")
        .output()
        .map_err(|e| format!("cannot run {GO}: {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(format!("go build of pkg/sftp's server failed: {said}"));
    }
    Ok(binary)
}

/// MySecureShell reads /etc/ssh/sftp_config only: its own conf is bound over that in a
/// mount namespace of its own (root only), and its session table (a SysV shared memory
/// segment it leaves behind) lives in an IPC namespace of its own, gone with the session.
/// No speed limits, no idle time-out, links shown.
fn mysecureshell_launch(dir: &Path, served: &Path, extra: &str) -> Result<String, String> {
    installed(MYSECURESHELL, "mysecureshell")?;
    if !nix::unistd::geteuid().is_root() {
        return Err("MySecureShell's conf is bound in a mount namespace: root only".into());
    }
    let conf = dir.join("sftp_config");
    fs::write(
        &conf,
        format!(
            "<Default>\nGlobalDownload 0\nGlobalUpload 0\nDownload 0\nUpload 0\n\
             StayAtHome true\nVirtualChroot false\nLimitConnection 100\n\
             LimitConnectionByUser 100\nLimitConnectionByIP 100\nHome {}\nIdleTimeOut 0\n\
             ResolveIP false\nHideNoAccess false\nShowLinksAsLinks true\n{extra}</Default>\n",
            served.display()
        ),
    )
    .unwrap();
    // It takes the client's address from sshd's variables.
    Ok(format!(
        "export SSH_CLIENT='127.0.0.1 50000 22' SSH_CONNECTION='127.0.0.1 50000 127.0.0.1 22'\n\
         exec unshare -m -i sh -c 'mount --bind \"$0\" /etc/ssh/sftp_config && exec {MYSECURESHELL} \
         -c sftp-server' '{}'",
        conf.display()
    ))
}

/// The shell lines that start a stdio server of `kind` serving `served`.
fn stdio_launch(kind: Kind, dir: &Path, served: &Path, extra: &str) -> Result<String, String> {
    let s = served.display();
    Ok(match kind {
        Kind::Twisted => {
            python_has("twisted")?;
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/twisted_sftp_server.py");
            format!("exec python3 '{}' '{s}'", script.display())
        }
        Kind::PkgSftp => {
            let binary = pkg_sftp_server()?;
            format!("cd '{s}' && exec '{}' -e", binary.display())
        }
        Kind::Perl => {
            installed(PERL_SFTPSERVER, "libnet-sftp-sftpserver-perl")?;
            // Its root is HOME/USER, or `home` itself when that is below HOME.
            format!(
                "HOME='{}' exec perl -MNet::SFTP::SftpServer \
                 -e 'Net::SFTP::SftpServer->new(home => $ARGV[0])->run()' '{s}'",
                served.parent().unwrap().display()
            )
        }
        Kind::MySecureShell => mysecureshell_launch(dir, served, extra)?,
        Kind::Pysftpserver => {
            python_has("pysftpserver")?;
            // pysftpjail's own lines, with the python3 the tests run.
            format!(
                "exec python3 -c 'import sys\n\
                 from pysftpserver.server import SFTPServer\n\
                 from pysftpserver.virtualchroot import SFTPServerVirtualChroot\n\
                 SFTPServer(storage=SFTPServerVirtualChroot(sys.argv[1]), \
                 logfile=\"/dev/stderr\").run()' '{s}'"
            )
        }
        Kind::Erlang => unreachable!("reached through ssh"),
    })
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (package openssh-client)");
    assert!(status.success());
}

/// OTP's SSH daemon with ssh_sftpd, on a port it chose and printed.
fn start_erlang(dir: &Path, served: &Path, log: &Path) -> Result<Reach, String> {
    installed(ESCRIPT, "erlang-base")?;
    let (system, user) = (dir.join("system"), dir.join("user"));
    fs::create_dir_all(&system).unwrap();
    fs::create_dir_all(&user).unwrap();
    let host_key = system.join("ssh_host_ed25519_key");
    let client_key = dir.join("client_key");
    keygen(&host_key);
    keygen(&client_key);
    fs::copy(
        client_key.with_extension("pub"),
        user.join("authorized_keys"),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/erlang_sftpd.escript");
    let mut child = Command::new(ESCRIPT)
        .arg(&script)
        .args([&system, &user, served])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
    let mut line = String::new();
    // (A failed read leaves it empty, which says it did not start: erlang-ssh missing?)
    let _ = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
    let Ok(port) = line.trim().parse::<u16>() else {
        let _ = child.kill();
        let _ = child.wait();
        let said = fs::read_to_string(log).unwrap_or_default();
        return Err(format!(
            "ssh_sftpd did not start (package erlang-ssh?): {said}"
        ));
    };
    let known_hosts = dir.join("known_hosts");
    let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
    fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
    Ok(Reach::Ssh {
        child,
        port,
        client_key,
        known_hosts,
    })
}

impl Server {
    /// `kind` serving `served`, its files and log in `dir/server-KIND`; `Err` says why it
    /// cannot run here.
    fn start(kind: Kind, dir: &Path, served: &Path) -> Result<Server, String> {
        Server::start_with(kind, dir, served, "")
    }

    /// As [`Server::start`], with `extra` lines in the server's conf (MySecureShell's).
    fn start_with(kind: Kind, dir: &Path, served: &Path, extra: &str) -> Result<Server, String> {
        let dir = dir.join(format!("server-{}", kind.name()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        let reach = if kind == Kind::Erlang {
            start_erlang(&dir, served, &log)?
        } else {
            let exec = stdio_launch(kind, &dir, served, extra)?;
            let script = dir.join("serve.sh");
            let text = format!("#!/bin/sh\nexec 2>>'{}'\n{exec}\n", log.display());
            fs::write(&script, text).unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
            Reach::Stdio(script)
        };
        Ok(Server {
            kind,
            reach,
            log,
            served: served.to_owned(),
        })
    }

    /// The `ssh` command line (as the conf's `sshcommand` takes it) that reaches a daemon.
    fn ssh_command(&self) -> Option<String> {
        let Reach::Ssh {
            port,
            client_key,
            known_hosts,
            ..
        } = &self.reach
        else {
            return None;
        };
        Some(format!(
            "ssh -F /dev/null -oIdentityFile={} -oUserKnownHostsFile={} \
             -oStrictHostKeyChecking=yes -oPort={port}",
            client_key.display(),
            known_hosts.display(),
        ))
    }

    /// The command line that reaches it, for driving the engine directly.
    fn argv(&self) -> Vec<OsString> {
        match (&self.reach, self.ssh_command()) {
            (Reach::Stdio(script), _) => vec![script.clone().into()],
            (_, Some(ssh)) => ["sh", "-c"]
                .map(OsString::from)
                .into_iter()
                .chain([format!("exec {ssh} -l root -s 127.0.0.1 sftp").into()])
                .collect(),
            (_, None) => unreachable!("a daemon has its ssh command"),
        }
    }

    fn engine_command(&self) -> ServerCommand {
        ServerCommand::Direct(self.argv())
    }

    /// The conf lines that make the program push to `dir` (below the served directory).
    fn conf(&self, dir: &Path) -> String {
        let target = self.remote_name(dir);
        match (&self.reach, self.ssh_command()) {
            (Reach::Stdio(script), _) => {
                format!("sftpcommand {}\ntargetdir {target}\n", script.display())
            }
            (_, ssh) => format!(
                "servername 127.0.0.1\nusername root\nsshcommand {}\ntargetdir {target}\n",
                ssh.unwrap_or_default()
            ),
        }
    }

    /// How the server names `dir`, a directory below the one it serves.
    fn remote_name(&self, dir: &Path) -> String {
        if self.kind.rooted() {
            let rel = dir
                .strip_prefix(&self.served)
                .expect("below the served dir");
            format!("/{}", rel.display())
        } else {
            dir.display().to_string()
        }
    }

    /// The directory on the machine that the server shows as `/`.
    fn shown_as_root(&self) -> &Path {
        if self.kind.rooted() {
            &self.served
        } else {
            Path::new("/")
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    /// A daemon is stopped by its pid: SIGTERM (OTP stops cleanly on it), then SIGKILL.
    fn drop(&mut self) {
        let Reach::Ssh { child, .. } = &mut self.reach else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn installed(path: &str, package: &str) -> Result<(), String> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        Err(format!("{path} is not installed (package {package})"))
    }
}

fn python_has(module: &str) -> Result<(), String> {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status();
    if probe.is_ok_and(|s| s.success()) {
        Ok(())
    } else {
        Err(format!(
            "python3 cannot import {module} (pip install {module})"
        ))
    }
}

/// The program's lines that are not its summary: warnings and errors.
fn complaints(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.contains(" file(s) uploaded (") && !l.contains("verify: the remote matches"))
        .collect()
}

/// interop.rs's round trip on `kind`: mirror seeds an empty target, a second mirror sends
/// nothing, verify finds it equal, then reprepro's hook pushes a new package and a removal.
fn round_trip(kind: Kind, test: &str) {
    round_trip_with(kind, test, "");
}

/// The round trip with `conf` added to the program's conf; with `symlinks copy` there the
/// suite link is a copy.
fn round_trip_with(kind: Kind, test: &str, conf: &str) {
    let repo = crate::interop::repository(true);
    let server = match Server::start(kind, repo.dir.path(), repo.dir.path()) {
        Ok(server) => server,
        Err(why) => return skip(test, &why),
    };
    let what = kind.name();
    // With copies, `verify` is the check: a copy where a link is counts as equal.
    let copies = conf.contains("symlinks copy");
    let mirrored = || {
        if !copies {
            repo.assert_mirrored(&[]);
        }
    };
    repo.set_conf(&format!("{}{conf}", server.conf(&repo.remote())));
    let log = || server.log();
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    assert_eq!(ran.code(), 0, "{what}: {}\n{}", ran.stderr(), log());
    mirrored();
    let link = fs::read_link(repo.remote().join("dists/stable"));
    assert_eq!(link.is_err(), copies, "{what}: {link:?}");
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    assert_eq!(ran.code(), 0, "{what}: {}\n{}", ran.stderr(), log());
    let nothing = "mirror: 0 file(s) uploaded (0 B), 0 error(s)";
    assert!(ran.stderr().contains(nothing), "{what}: {}", ran.stderr());
    assert!(
        complaints(&ran.stderr()).is_empty(),
        "{what}: {}",
        ran.stderr()
    );
    let ran = repo.hook(&["--basedir", ".", "verify", "--checksum"]);
    assert_eq!(ran.code(), 0, "{what}: {}\n{}", ran.stderr(), log());
    assert!(
        ran.stderr().contains("the remote matches"),
        "{what}: {}",
        ran.stderr()
    );

    fs::write(repo.base().join("conf/options"), format!("outhook {BIN}\n")).unwrap();
    let qux = repo.deb("qux", "1.0", 70_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", qux.to_str().unwrap()]);
    assert_eq!(ran.code(), 0, "{what}: {}\n{}", ran.stderr(), log());
    // A server without posix-rename is rightly said to get remove-then-rename.
    let stderr = ran.stderr();
    let mut said = complaints(&stderr);
    said.retain(|l| !l.contains("does not offer posix-rename@openssh.com"));
    assert!(said.is_empty(), "{what}: {}", ran.stderr());
    let ran = repo.reprepro(&["remove", "bookworm", "bar"]);
    assert_eq!(ran.code(), 0, "{what}: {}\n{}", ran.stderr(), log());
    mirrored();
    assert!(repo.outlogs().is_empty(), "{what}: {:?}", repo.outlogs());
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    assert_eq!(ran.code(), 0, "{what}: {}\n{}", ran.stderr(), log());
}

/// interop.rs `planted_symlinks_are_replaced_never_written_through_on_every_server`: after a
/// mirror, links to victims outside `remote/` are planted at a new pool file, at its
/// temporary name, at `Release` and at `Release.new`; reprepro's hook call then replaces
/// them, never writing through.
fn planted_links_are_replaced(kind: Kind, test: &str) {
    let repo = crate::interop::repository(false);
    let server = match Server::start(kind, repo.dir.path(), repo.dir.path()) {
        Ok(server) => server,
        Err(why) => return skip(test, &why),
    };
    let what = kind.name();
    repo.set_conf(&server.conf(&repo.remote()));
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    assert_eq!(ran.code(), 0, "{what}: {}\n{}", ran.stderr(), server.log());
    let victims = repo.dir.path().join("victims");
    fs::create_dir_all(&victims).unwrap();
    for name in ["pool-file", "release", "release-new"] {
        fs::write(victims.join(name), "not yours").unwrap();
    }
    let pool = repo.remote().join("pool/main/n/new");
    fs::create_dir_all(&pool).unwrap();
    let up = "../../../../../victims";
    symlink(format!("{up}/pool-file"), pool.join("new_1.0_amd64.deb")).unwrap();
    symlink(format!("{up}/created"), pool.join(".new_1.0_amd64.deb.tmp")).unwrap();
    let dist = repo.remote().join("dists/bookworm");
    fs::remove_file(dist.join("Release")).unwrap();
    symlink("../../../victims/release", dist.join("Release")).unwrap();
    symlink("../../../victims/release-new", dist.join("Release.new")).unwrap();

    fs::write(repo.base().join("conf/options"), format!("outhook {BIN}\n")).unwrap();
    let deb = repo.deb("new", "1.0", 30_000);
    let ran = repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
    let said = format!("{what}: {}\n{}", ran.stderr(), server.log());
    let names = names_in(&victims);
    assert_eq!(names, ["pool-file", "release", "release-new"], "{said}");
    for name in names {
        let bytes = fs::read(victims.join(&name)).unwrap();
        assert_eq!(bytes, b"not yours", "{name} written through: {said}");
    }
    assert_eq!(ran.code(), 0, "{said}");
    let pool_file = pool.join("new_1.0_amd64.deb");
    assert!(
        fs::symlink_metadata(&pool_file).unwrap().is_file(),
        "{said}"
    );
    repo.assert_mirrored(&[]);
}

/// A hostile case (across_servers.rs's, whose items are private there): what it plants in
/// its own directory `CASE` (with `remote/`, its target, and `local/`) before the server
/// starts, as there, then what it runs there and checks.
struct Hostile {
    name: &'static str,
    plant: fn(&Repo, &Path),
    run: fn(&Case),
}

/// A case at its run: its directory, its server, and the repository both live in.
struct Case<'a> {
    server: &'a Server,
    repo: &'a Repo,
    dir: PathBuf,
    /// `KIND: CASE`, for the messages.
    what: String,
}

impl Case<'_> {
    fn remote(&self) -> PathBuf {
        self.dir.join("remote")
    }

    /// How the server names `rel` below the target directory.
    fn at(&self, rel: &str) -> RemotePath {
        RemotePath::new(format!("{}/{rel}", self.server.remote_name(&self.remote()))).unwrap()
    }

    fn upload(&self, name: &str, size: usize, seed: u8, rel: &str) -> Op {
        let local = self.dir.join("local").join(name);
        fs::write(&local, pattern(size, seed)).unwrap();
        Op::Upload {
            local,
            remote: self.at(rel),
            fsync: false,
            mtime: Some(1_000_000_000),
        }
    }

    fn config(&self) -> EngineConfig {
        let target = self.server.remote_name(&self.remote());
        EngineConfig {
            targetdir: Some(RemotePath::new(target).unwrap()),
            ..EngineConfig::default()
        }
    }

    fn run_through(&self, command: &ServerCommand, ops: &[Op]) -> Vec<OpResult> {
        let mut engine = Engine::connect(command, self.config()).unwrap();
        let results = engine.run(ops, |_, _| {}).unwrap();
        engine.close();
        results
    }

    fn run(&self, ops: &[Op]) -> Vec<OpResult> {
        self.run_through(&self.server.engine_command(), ops)
    }

    /// The file at `rel` below `remote/`, if it is one.
    fn landed(&self, rel: &str) -> Option<Vec<u8>> {
        let path = self.remote().join(rel);
        let meta = fs::symlink_metadata(&path).ok()?;
        assert!(meta.is_file(), "{}: {rel} is not a file", self.what);
        fs::read(&path).ok()
    }

    fn names(&self, rel: &str) -> Vec<String> {
        names_in(&self.remote().join(rel))
    }
}

/// `result` is refused for leading outside the target directory (itself or its directory).
fn assert_outside(result: &OpResult, what: &str) {
    let err = result.as_ref().expect_err(what);
    let outside = matches!(&err.cause, Cause::Outside { .. })
        || matches!(&err.cause, Cause::Directory { cause, .. }
            if matches!(**cause, Cause::Outside { .. }));
    assert!(outside, "{what}: {err}");
    assert!(
        err.to_string().contains("outside the target directory"),
        "{what}: {err}"
    );
}

/// confinement.rs `a_symlink_planted_in_the_way_of_a_mkdir_is_not_written_through`: the
/// relay sits between the engine and `ssh`, and plants `pool/new -> ../../elsewhere` on
/// the served disk as the MKDIR of `pool/new` passes.
const PLANTED_AT_MKDIR: Hostile = Hostile {
    name: "a_symlink_planted_in_the_way_of_a_mkdir_is_not_written_through",
    plant: |_, dir| {
        fs::create_dir(dir.join("elsewhere")).unwrap();
        fs::create_dir(dir.join("remote/pool")).unwrap();
    },
    run: |case| {
        let ServerCommand::Direct(ssh) = case.server.engine_command() else {
            unreachable!("engine_command is a command line")
        };
        let relay = format!(
            "{}/tests/fixtures/planting_relay.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut argv: Vec<OsString> = vec!["python3".into(), relay.into(), "--root".into()];
        argv.push(case.server.shown_as_root().into());
        argv.extend(["pool/new", "../../elsewhere", "--"].map(OsString::from));
        argv.extend(ssh);
        let ops = [case.upload("a.deb", 5000, 4, "pool/new/a.deb")];
        let results = case.run_through(&ServerCommand::Direct(argv), &ops);
        let what = &case.what;
        assert!(
            fs::symlink_metadata(case.remote().join("pool/new"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{what}: the relay planted its link"
        );
        let elsewhere = case.dir.join("elsewhere");
        assert_eq!(
            names_in(&elsewhere),
            Vec::<String>::new(),
            "{what}: written through ({results:?})"
        );
        assert_outside(&results[0], what);
    },
};

/// orderings/directories.rs `a_symlink_planted_where_a_new_tree_goes_is_not_written_through`:
/// an upload two new levels deep, and the relay plants `pool/new -> ../../elsewhere` as the
/// first MKDIR for it passes: on a server that acts in order that is the MKDIR of the
/// tree's stand-in (`pool/.new.*`), and the link then takes the name the tree is renamed
/// to; elsewhere it is the MKDIR of `pool/new` itself. Either way nothing goes through the
/// link, and nothing of a stand-in is left.
const PLANTED_AT_A_NEW_TREE: Hostile = Hostile {
    name: "a_symlink_planted_where_a_new_tree_goes_is_not_written_through",
    plant: |_, dir| {
        fs::create_dir(dir.join("elsewhere")).unwrap();
        fs::create_dir(dir.join("remote/pool")).unwrap();
    },
    run: |case| {
        let ServerCommand::Direct(ssh) = case.server.engine_command() else {
            unreachable!("engine_command is a command line")
        };
        let relay = format!(
            "{}/tests/fixtures/planting_relay.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut argv: Vec<OsString> = vec!["python3".into(), relay.into(), "--root".into()];
        argv.push(case.server.shown_as_root().into());
        argv.extend(["--tree", "pool/new", "../../elsewhere", "--"].map(OsString::from));
        argv.extend(ssh);
        let ops = [case.upload("a.deb", 5000, 4, "pool/new/sub/a.deb")];
        let results = case.run_through(&ServerCommand::Direct(argv), &ops);
        let what = &case.what;
        assert!(
            fs::symlink_metadata(case.remote().join("pool/new"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{what}: the relay planted its link"
        );
        assert_eq!(
            names_in(&case.dir.join("elsewhere")),
            Vec::<String>::new(),
            "{what}: written through ({results:?})"
        );
        assert_outside(&results[0], what);
        assert_eq!(case.names("pool"), ["new"], "{what}: only the link is left");
    },
};

/// confinement.rs `nothing_lands_or_goes_through_a_symlinked_directory`: the remote
/// `pool/main` is a symlink to `CASE/elsewhere`, which holds a file.
const SYMLINKED_DIRECTORY: Hostile = Hostile {
    name: "nothing_lands_or_goes_through_a_symlinked_directory",
    plant: |_, dir| {
        let elsewhere = dir.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("old.deb"), "not yours").unwrap();
        fs::create_dir(dir.join("remote/pool")).unwrap();
        symlink("../../elsewhere", dir.join("remote/pool/main")).unwrap();
    },
    run: |case| {
        let what = &case.what;
        let uploads = [
            case.upload("new.deb", 5000, 1, "pool/main/new.deb"),
            case.upload("old.deb", 5000, 2, "pool/main/old.deb"),
        ];
        let others = [
            Op::Remove {
                path: case.at("pool/main/old.deb"),
            },
            Op::Rename {
                from: case.at("pool/main/x.new"),
                to: case.at("pool/main/old.deb"),
            },
            Op::Symlink {
                link: case.at("pool/main/old.deb"),
                target: b"x".to_vec(),
            },
            Op::Rmdir {
                path: case.at("pool/main/sub"),
            },
        ];
        let results: Vec<OpResult> = [&uploads[..], &others[..]]
            .iter()
            .flat_map(|ops| case.run(ops))
            .collect();
        // The file out there is untouched, and no temporary file of ours is left there.
        let elsewhere = case.dir.join("elsewhere");
        assert_eq!(names_in(&elsewhere), ["old.deb"], "{what}: {results:?}");
        assert_eq!(
            fs::read(elsewhere.join("old.deb")).unwrap(),
            b"not yours",
            "{what}: {results:?}"
        );
        results.iter().for_each(|r| assert_outside(r, what));
    },
};

/// landing.rs `a_symlink_at_the_real_name_is_replaced_not_written_through`.
const LINK_AT_REAL_NAME: Hostile = Hostile {
    name: "a_symlink_at_the_real_name_is_replaced_not_written_through",
    plant: |_, dir| {
        fs::write(dir.join("victim"), "not yours").unwrap();
        fs::create_dir(dir.join("remote/pool")).unwrap();
        symlink("../../victim", dir.join("remote/pool/a.deb")).unwrap();
    },
    run: |case| {
        let what = &case.what;
        let results = case.run(&[case.upload("a.deb", 70_000, 1, "pool/a.deb")]);
        let landed = case.landed("pool/a.deb");
        assert_eq!(
            fs::read(case.dir.join("victim")).unwrap(),
            b"not yours",
            "{what}: {results:?}"
        );
        assert!(results[0].is_ok(), "{what}: {results:?}");
        assert!(landed == Some(pattern(70_000, 1)), "{what}: not whole");
        assert_eq!(case.names("pool"), ["a.deb"], "{what}");
    },
};

/// landing.rs `a_symlink_or_stale_file_at_the_temporary_name_is_removed_first`.
const LINK_AT_TEMPORARY_NAME: Hostile = Hostile {
    name: "a_symlink_or_stale_file_at_the_temporary_name_is_removed_first",
    plant: |_, dir| {
        fs::write(dir.join("victim"), "not yours").unwrap();
        let pool = dir.join("remote/pool");
        fs::create_dir(&pool).unwrap();
        symlink("../../victim", pool.join(".a.deb.tmp")).unwrap();
        // What a killed run left: longer than the new file, with other bytes.
        fs::write(pool.join(".b.deb.tmp"), vec![7u8; 200_000]).unwrap();
        // A dangling link: an open that followed it would create a file out there.
        symlink("../../created", pool.join(".c.deb.tmp")).unwrap();
    },
    run: |case| {
        let what = &case.what;
        let files = [("a.deb", 1000, 2), ("b.deb", 5000, 3), ("c.deb", 10, 4)];
        let ops =
            files.map(|(name, size, seed)| case.upload(name, size, seed, &format!("pool/{name}")));
        let results = case.run(&ops);
        for (name, size, seed) in files {
            let landed = case.landed(&format!("pool/{name}"));
            let whole = landed == Some(pattern(size, seed));
            assert!(whole, "{what}: {name} not whole: {results:?}");
        }
        let victim = fs::read(case.dir.join("victim")).unwrap();
        assert_eq!(victim, b"not yours", "{what}: {results:?}");
        assert!(
            !case.dir.join("created").exists(),
            "{what}: written through"
        );
        assert!(results.iter().all(Result::is_ok), "{what}: {results:?}");
        assert_eq!(case.names("pool"), ["a.deb", "b.deb", "c.deb"], "{what}");
    },
};

/// sources.rs: the source `local/Release` is stated as a run does before it starts, then
/// `change` replaces it, then it is uploaded: it lands whole as it is now, `now`.
fn a_changed_source_lands_whole_as_it_is_now(case: &Case, change: impl FnOnce(&Path), now: &[u8]) {
    let what = &case.what;
    let Op::Upload { local, remote, .. } = case.upload("Release", 3000, 1, "Release") else {
        unreachable!("an upload")
    };
    let ops = [Op::Upload {
        local: local.clone(),
        remote,
        fsync: true,
        mtime: None,
    }];
    let mut engine = Engine::connect(&case.server.engine_command(), case.config()).unwrap();
    assert_eq!(engine.source_sizes(&ops), [Some(3000)], "{what}");
    change(&local);
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    assert!(results[0].is_ok(), "{what}: {results:?}");
    let whole = case.landed("Release").as_deref() == Some(now);
    assert!(whole, "{what}: not whole as it is now");
    assert_eq!(case.names(""), ["Release"], "{what}");
}

const SOURCE_NOW_LARGER: Hostile = Hostile {
    name: "a_source_replaced_by_a_larger_file_is_sent_whole_as_it_is_now",
    plant: |_, _| {},
    run: |case| {
        let change = |local: &Path| {
            let new = local.with_extension("tmp");
            fs::write(&new, pattern(3500, 2)).unwrap();
            fs::rename(&new, local).unwrap();
        };
        a_changed_source_lands_whole_as_it_is_now(case, change, &pattern(3500, 2));
    },
};

const SOURCE_NOW_SMALLER: Hostile = Hostile {
    name: "a_source_replaced_by_a_smaller_file_is_sent_whole_as_it_is_now",
    plant: |_, _| {},
    run: |case| {
        let change = |local: &Path| fs::write(local, pattern(100, 3)).unwrap();
        a_changed_source_lands_whole_as_it_is_now(case, change, &pattern(100, 3));
    },
};

/// confinement.rs `mirror_delete_never_deletes_through_a_symlinked_top`, the program run
/// as the administrator runs it, on the repository's own `remote/` (its `pool` a symlink
/// to `elsewhere/`, beside `remote/`); the case's own directory is not used.
const MIRROR_DELETE: Hostile = Hostile {
    name: "mirror_delete_never_deletes_through_a_symlinked_top",
    plant: |repo, _| {
        fs::write(repo.base().join("conf/options"), "").unwrap();
        let deb = repo.deb("foo", "1.0", 3_000);
        repo.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()])
            .expect(0);
        let elsewhere = repo.dir.path().join("elsewhere");
        fs::create_dir_all(elsewhere.join("main")).unwrap();
        fs::write(elsewhere.join("main/precious"), "not yours").unwrap();
        symlink("../elsewhere", repo.remote().join("pool")).unwrap();
    },
    run: |case| {
        let (repo, what) = (case.repo, &case.what);
        repo.set_conf(&case.server.conf(&repo.remote()));
        let ran = repo.hook(&["--basedir", ".", "mirror", "--delete"]);
        let elsewhere = repo.dir.path().join("elsewhere/main");
        assert_eq!(
            names_in(&elsewhere),
            ["precious"],
            "{what}: {}",
            ran.stderr()
        );
        assert_eq!(
            fs::read(elsewhere.join("precious")).unwrap(),
            b"not yours",
            "{what}"
        );
        if case.server.kind == Kind::Perl {
            // Net::SFTP::SftpServer hides symlinks (LSTAT says there is none, READLINK is
            // refused): the mirror cannot replace `pool`, and refuses to go through it.
            ran.expect(1);
            let refused = "/remote/pool resolves to a symlink on the server, outside the \
                           target directory";
            assert!(ran.stderr().contains(refused), "{what}: {}", ran.stderr());
            return;
        }
        // The link is replaced by a real directory; the mirror is then complete.
        ran.expect(0);
        repo.hook(&["--basedir", ".", "verify"]).expect(0);
    },
};

/// A target directory that is missing, or a file: the engine's first flight STATs it, and
/// every operation below it fails with that one cause, nothing made (the hook says it once;
/// see trouble.rs).
const MISSING_TARGET: Hostile = Hostile {
    name: "below_a_missing_or_file_target_nothing_is_made",
    plant: |_, dir| fs::write(dir.join("remote/afile"), "x").unwrap(),
    run: |case| {
        for target in ["nowhere", "afile"] {
            let what = format!("{}: {target}", case.what);
            let config = EngineConfig {
                targetdir: Some(case.at(target)),
                ..EngineConfig::default()
            };
            let remote = |rel: &str| case.at(&format!("{target}/{rel}"));
            let local = case.dir.join("local/a.deb");
            fs::write(&local, pattern(3000, 1)).unwrap();
            let ops = [
                Op::Upload {
                    local,
                    remote: remote("pool/main/a/a.deb"),
                    fsync: false,
                    mtime: None,
                },
                Op::Remove {
                    path: remote("pool/main/b/old.deb"),
                },
            ];
            let mut engine = Engine::connect(&case.server.engine_command(), config).unwrap();
            let results = engine.run(&ops, |_, _| {}).unwrap();
            engine.close();
            for result in &results {
                let cause = match result {
                    Err(e) => match &e.cause {
                        Cause::Directory { cause, .. } => (**cause).clone(),
                        other => other.clone(),
                    },
                    Ok(_) => panic!("{what}: {results:?}"),
                };
                assert!(matches!(cause, Cause::Target(_)), "{what}: {results:?}");
            }
            assert_eq!(case.names(""), ["afile"], "{what}");
            assert_eq!(
                fs::read(case.remote().join("afile")).unwrap(),
                b"x",
                "{what}"
            );
        }
    },
};

static EVERY_CASE: [Hostile; 9] = [
    PLANTED_AT_MKDIR,
    PLANTED_AT_A_NEW_TREE,
    SYMLINKED_DIRECTORY,
    LINK_AT_REAL_NAME,
    LINK_AT_TEMPORARY_NAME,
    SOURCE_NOW_LARGER,
    SOURCE_NOW_SMALLER,
    MIRROR_DELETE,
    MISSING_TARGET,
];

/// Every entry below `dirs`, one a line: its path, and its size or where it links to.
fn tree(dirs: &[PathBuf]) -> String {
    fn walk(path: &Path, out: &mut String) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        let shown = path.display();
        if meta.is_symlink() {
            let target = fs::read_link(path).unwrap_or_default();
            out.push_str(&format!("{shown} -> {}\n", target.display()));
        } else if meta.is_dir() {
            out.push_str(&format!("{shown}/\n"));
            let mut names: Vec<PathBuf> = fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            names.sort();
            names.iter().for_each(|p| walk(p, out));
        } else {
            let bytes = fs::read(path).unwrap_or_default();
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(12)]).into_owned();
            out.push_str(&format!("{shown}: {} bytes {head:?}\n", bytes.len()));
        }
    }
    let mut out = String::new();
    dirs.iter().for_each(|dir| walk(dir, &mut out));
    out
}

/// `cases` on one server of `kind`, each planted in its own directory before the server
/// starts; every case runs whatever the others do, and the test names those that failed.
fn on_one_server(kind: Kind, test: &str, cases: &[&Hostile]) {
    let repo = Repo::new();
    let served = repo.dir.path();
    for case in cases {
        let dir = served.join("cases").join(case.name);
        fs::create_dir_all(dir.join("remote")).unwrap();
        fs::create_dir_all(dir.join("local")).unwrap();
        (case.plant)(&repo, &dir);
    }
    let server = match Server::start(kind, served, served) {
        Ok(server) => server,
        Err(why) => return skip(test, &why),
    };
    let failed: Vec<&str> = cases
        .iter()
        .filter(|case| {
            let run = Case {
                server: &server,
                repo: &repo,
                dir: served.join("cases").join(case.name),
                what: format!("{}: {}", kind.name(), case.name),
            };
            let failed = catch_unwind(AssertUnwindSafe(|| (case.run)(&run))).is_err();
            if failed {
                let dirs = [run.dir.clone(), repo.remote(), served.join("elsewhere")];
                eprintln!("{}: what is on the disk:\n{}", run.what, tree(&dirs));
            }
            failed
        })
        .map(|case| case.name)
        .collect();
    assert!(
        failed.is_empty(),
        "{}: {failed:?} failed (their panics are above); server log:\n{}",
        kind.name(),
        server.log()
    );
}

/// `cases` on `kind`, by name, in one server's run (see [`on_one_server`]).
fn hostile_cases(kind: Kind, test: &str, names: &[&str]) {
    let cases: Vec<&Hostile> = EVERY_CASE
        .iter()
        .filter(|c| names.contains(&c.name))
        .collect();
    assert_eq!(cases.len(), names.len(), "{names:?}");
    on_one_server(kind, test, &cases);
}

/// Every hostile case on `kind` but `known_bugs` (by name).
fn hostile_cases_but(kind: Kind, test: &str, known_bugs: &[&str]) {
    let cases: Vec<&Hostile> = EVERY_CASE
        .iter()
        .filter(|c| !known_bugs.contains(&c.name))
        .collect();
    on_one_server(kind, test, &cases);
}

/// The suite link `dists/stable -> bookworm`, made by the engine as a hook run makes it:
/// it is made in the target directory with that text, or not at all; nothing appears beside
/// the target. A server that reads SYMLINK's two paths in the draft's order (link first)
/// while the program sends OpenSSH's (target first) makes a link named `bookworm` where
/// the server resolves a relative name: its start directory, outside the target.
fn a_symlink_lands_in_the_target_or_nowhere(kind: Kind, test: &str) {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let target = served.join("target");
    fs::create_dir_all(target.join("dists/bookworm")).unwrap();
    let server = match Server::start(kind, dir.path(), &served) {
        Ok(server) => server,
        Err(why) => return skip(test, &why),
    };
    let name = server.remote_name(&target);
    let config = EngineConfig {
        targetdir: Some(RemotePath::new(name.clone()).unwrap()),
        ..EngineConfig::default()
    };
    let ops = [Op::Symlink {
        link: RemotePath::new(format!("{name}/dists/stable")).unwrap(),
        target: b"bookworm".to_vec(),
    }];
    let mut engine = Engine::connect(&server.engine_command(), config).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    let what = format!("{}: {results:?}", kind.name());
    assert_eq!(names_in(&served), ["target"], "{what}: beside the target");
    assert_eq!(names_in(&target), ["dists"], "{what}");
    match fs::read_link(target.join("dists/stable")) {
        Ok(text) => assert_eq!(text, Path::new("bookworm"), "{what}"),
        Err(_) => assert!(results[0].is_err(), "{what}: reported made"),
    }
}

/// Twisted refuses FSETSTAT (its UnixSFTPFile.setAttrs raises NotImplementedError, sent as
/// OP_UNSUPPORTED) though it sets times by path (SETSTAT): the program gives up on times,
/// so `verify` after a complete `mirror` finds every file changed.
const TWISTED_BUGS: [&str; 1] = [MIRROR_DELETE.name];

/// pkg/sftp runs READs and WRITEs on 8 workers and everything else (FSTAT, FSETSTAT) on
/// one more, waiting for the writes only at a CLOSE: the program's FSTAT, sent right behind
/// the last WRITE, sees a short file, and the upload fails ("the server has 0 bytes after
/// 1000 were written").
const PKG_SFTP_BUGS: [&str; 5] = [
    LINK_AT_REAL_NAME.name,
    LINK_AT_TEMPORARY_NAME.name,
    SOURCE_NOW_LARGER.name,
    SOURCE_NOW_SMALLER.name,
    MIRROR_DELETE.name,
];

/// Net::SFTP::SftpServer answers every FSTAT with NO_SUCH_FILE (it stats its handle object,
/// not the file): the program fails every upload on it ("FSTAT failed: NO_SUCH_FILE").
const PERL_BUGS: [&str; 4] = [
    LINK_AT_REAL_NAME.name,
    LINK_AT_TEMPORARY_NAME.name,
    SOURCE_NOW_LARGER.name,
    SOURCE_NOW_SMALLER.name,
];

/// ssh_sftpd answers FSETSTAT of a file with NO_SUCH_FILE, which fails the upload (the
/// program takes only a refusal as "cannot set times"); it answers OPENDIR of a missing
/// directory with FAILURE "Not a directory", so `mirror` to a target without `pool/` stops
/// at "cannot list the remote tree".
const ERLANG_BUGS: [&str; 3] = [
    LINK_AT_REAL_NAME.name,
    LINK_AT_TEMPORARY_NAME.name,
    MIRROR_DELETE.name,
];

/// Twisted reads SYMLINK's paths in the draft's order and resolves both from its home: the
/// program, sending OpenSSH's order, makes `SERVED/bookworm -> .../remote/dists/stable`
/// (outside the target) and counts "1 symlink(s) made"; `dists/stable` is missing. Then
/// every file differs in time (see [`TWISTED_BUGS`]), and each mirror uploads all again.
#[test]
#[ignore = "Twisted keeps a link's target rewritten (absolute): the probe gives it copies (symlinks auto), and this round trip expects links"]
fn twisted_mirror_verify_and_hook() {
    round_trip(Kind::Twisted, "twisted_mirror_verify_and_hook");
}

#[test]
fn twisted_planted_links_are_replaced() {
    planted_links_are_replaced(Kind::Twisted, "twisted_planted_links_are_replaced");
}

#[test]
fn hostile_cases_on_twisted() {
    hostile_cases_but(Kind::Twisted, "hostile_cases_on_twisted", &TWISTED_BUGS);
}

#[test]
fn twisted_times_are_never_set() {
    hostile_cases(
        Kind::Twisted,
        "bug_twisted_times_are_never_set",
        &TWISTED_BUGS,
    );
}

#[test]
fn twisted_symlink_lands_in_the_target_or_nowhere() {
    let test = "twisted_symlink_lands_in_the_target_or_nowhere";
    a_symlink_lands_in_the_target_or_nowhere(Kind::Twisted, test);
}

/// "upload .../bar_1.0_amd64.deb: the server has 163840 bytes after 200878 were written":
/// see [`PKG_SFTP_BUGS`].
/// pysftpserver answers READLINK with a NAME whose one entry has no attributes (it ends
/// after the long name): the program takes the whole reply as malformed and ends the
/// session, "the push ... was cut off; what completed is journalled, run again to finish:
/// malformed packet from server: packet truncated in attribute flags", which a run again
/// will not finish. Every READLINK of a name that is a symlink (one planted at a real name,
/// a symlinked `pool`) hits it; of any other name, the server answers a status.
const PYSFTPSERVER_BUGS: [&str; 2] = [LINK_AT_REAL_NAME.name, MIRROR_DELETE.name];

#[test]
fn pkg_sftp_mirror_verify_and_hook() {
    round_trip(Kind::PkgSftp, "pkg_sftp_mirror_verify_and_hook");
}

/// The first mirror already fails: see [`PKG_SFTP_BUGS`].
#[test]
fn pkg_sftp_planted_links_are_replaced() {
    planted_links_are_replaced(Kind::PkgSftp, "pkg_sftp_planted_links_are_replaced");
}

#[test]
fn hostile_cases_on_pkg_sftp() {
    hostile_cases_but(Kind::PkgSftp, "hostile_cases_on_pkg_sftp", &PKG_SFTP_BUGS);
}

#[test]
fn pkg_sftp_fstat_overtakes_writes() {
    let test = "pkg_sftp_fstat_overtakes_writes";
    hostile_cases(Kind::PkgSftp, test, &PKG_SFTP_BUGS);
}

#[test]
fn pkg_sftp_symlink_lands_in_the_target_or_nowhere() {
    let test = "pkg_sftp_symlink_lands_in_the_target_or_nowhere";
    a_symlink_lands_in_the_target_or_nowhere(Kind::PkgSftp, test);
}

/// "upload /remote/pool/main/b/bar/bar_1.0_amd64.deb: FSTAT failed: NO_SUCH_FILE (No such
/// file)", for every file: see [`PERL_BUGS`].
#[test]
#[ignore = "the remote differs from local after mirror (links; not looked into yet): FSTAT itself is handled now"]
fn perl_mirror_verify_and_hook() {
    round_trip(Kind::Perl, "perl_mirror_verify_and_hook");
}

/// The first mirror already fails: see [`PERL_BUGS`].
#[test]
fn perl_planted_links_are_replaced() {
    planted_links_are_replaced(Kind::Perl, "perl_planted_links_are_replaced");
}

#[test]
fn hostile_cases_on_perl() {
    hostile_cases_but(Kind::Perl, "hostile_cases_on_perl", &PERL_BUGS);
}

#[test]
fn perl_uploads_fail_on_its_fstat() {
    hostile_cases(Kind::Perl, "bug_perl_uploads_fail_on_its_fstat", &PERL_BUGS);
}

/// As on Twisted: the suite link is made as `SERVED/bookworm`, outside the target, reported
/// made; the next mirror's SYMLINK then fails (FAILURE), and `verify` says `dists/stable`
/// is missing.
#[test]
#[ignore = "the remote differs from local after mirror (links; not looked into yet): the SYMLINK order is probed now"]
fn mysecureshell_mirror_verify_and_hook() {
    round_trip(Kind::MySecureShell, "mysecureshell_mirror_verify_and_hook");
}

/// The round trip with links sent as copies (`symlinks copy`): what the suite link bug
/// leaves to test on MySecureShell.
#[test]
fn mysecureshell_mirror_verify_and_hook_with_copies() {
    let test = "mysecureshell_mirror_verify_and_hook_with_copies";
    round_trip_with(Kind::MySecureShell, test, "symlinks copy\n");
}

#[test]
fn mysecureshell_planted_links_are_replaced() {
    let test = "mysecureshell_planted_links_are_replaced";
    planted_links_are_replaced(Kind::MySecureShell, test);
}

#[test]
fn hostile_cases_on_mysecureshell() {
    hostile_cases_but(Kind::MySecureShell, "hostile_cases_on_mysecureshell", &[]);
}

#[test]
fn mysecureshell_symlink_lands_in_the_target_or_nowhere() {
    let test = "mysecureshell_symlink_lands_in_the_target_or_nowhere";
    a_symlink_lands_in_the_target_or_nowhere(Kind::MySecureShell, test);
}

/// "cannot list the remote tree: list /remote/pool: OPENDIR failed: FAILURE (Not a
/// directory)" on an empty target, after a summary line saying "0 error(s)"; with `pool/`
/// and `dists/` made by hand, every upload with a time fails ("FSETSTAT failed:
/// NO_SUCH_FILE"): see [`ERLANG_BUGS`].
#[test]
#[ignore = "ssh_sftpd gives a handle still open: caught, the run stops (OPENDIR and FSETSTAT are handled now)"]
fn erlang_mirror_verify_and_hook() {
    round_trip(Kind::Erlang, "erlang_mirror_verify_and_hook");
}

/// The first mirror already fails: see [`ERLANG_BUGS`].
#[test]
#[ignore = "ssh_sftpd gives a handle still open: caught, the run stops (OPENDIR and FSETSTAT are handled now)"]
fn erlang_planted_links_are_replaced() {
    planted_links_are_replaced(Kind::Erlang, "erlang_planted_links_are_replaced");
}

#[test]
fn hostile_cases_on_erlang() {
    hostile_cases_but(Kind::Erlang, "hostile_cases_on_erlang", &ERLANG_BUGS);
}

#[test]
#[ignore = "ssh_sftpd gives a handle still open: caught, the run stops in the many-files cases (OPENDIR and FSETSTAT are handled now)"]
fn bug_erlang_fsetstat_and_opendir_failures() {
    let test = "bug_erlang_fsetstat_and_opendir_failures";
    hostile_cases(Kind::Erlang, test, &ERLANG_BUGS);
}

#[test]
fn erlang_symlink_lands_in_the_target_or_nowhere() {
    let test = "erlang_symlink_lands_in_the_target_or_nowhere";
    a_symlink_lands_in_the_target_or_nowhere(Kind::Erlang, test);
}

/// As on Twisted: the suite link is made as `SERVED/bookworm`, outside the target.
#[test]
fn pysftpserver_mirror_verify_and_hook() {
    round_trip(Kind::Pysftpserver, "pysftpserver_mirror_verify_and_hook");
}

#[test]
fn pysftpserver_mirror_verify_and_hook_with_copies() {
    let test = "pysftpserver_mirror_verify_and_hook_with_copies";
    round_trip_with(Kind::Pysftpserver, test, "symlinks copy\n");
}

/// The hook run's READLINKs of the planted links end the session: see [`PYSFTPSERVER_BUGS`].
#[test]
fn pysftpserver_planted_links_are_replaced() {
    let test = "pysftpserver_planted_links_are_replaced";
    planted_links_are_replaced(Kind::Pysftpserver, test);
}

#[test]
fn hostile_cases_on_pysftpserver() {
    let test = "hostile_cases_on_pysftpserver";
    hostile_cases_but(Kind::Pysftpserver, test, &PYSFTPSERVER_BUGS);
}

#[test]
fn pysftpserver_readlink_reply_ends_the_session() {
    let test = "pysftpserver_readlink_reply_ends_the_session";
    hostile_cases(Kind::Pysftpserver, test, &PYSFTPSERVER_BUGS);
}

#[test]
fn pysftpserver_symlink_lands_in_the_target_or_nowhere() {
    let test = "pysftpserver_symlink_lands_in_the_target_or_nowhere";
    a_symlink_lands_in_the_target_or_nowhere(Kind::Pysftpserver, test);
}

#[test]
fn uploads_at_once_land_whole_on_pysftpserver() {
    let test = "uploads_at_once_land_whole_on_pysftpserver";
    uploads_at_once_land_whole(Kind::Pysftpserver, test, 40, 1000);
}

/// ssh_sftpd hands out a handle already in use once handles are closed out of order (its
/// `new_handle` walks the open handles newest first and stops short): two directories
/// listed at once share one handle and get each other's entries. `verify` of a remote that
/// equals the local tree then finds differences that are not there, and `mirror --delete`
/// would act on them. The program takes the second HANDLE as a new one.
#[test]
#[ignore = "ssh_sftpd gives a handle still open: now caught (the run stops, naming it and maxopenfiles 1), not yet gone around one handle at a time"]
fn bug_erlang_verify_of_an_equal_tree_finds_nothing() {
    let test = "bug_erlang_verify_of_an_equal_tree_finds_nothing";
    let repo = crate::interop::repository(true);
    let server = match Server::start(Kind::Erlang, repo.dir.path(), repo.dir.path()) {
        Ok(server) => server,
        Err(why) => return skip(test, &why),
    };
    for top in ["pool", "dists"] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(repo.base().join(top))
            .arg(repo.remote())
            .status()
            .unwrap();
        assert!(status.success());
    }
    repo.set_conf(&server.conf(&repo.remote()));
    let ran = repo.hook(&["--basedir", ".", "verify"]);
    assert_eq!(ran.code(), 0, "{}{}", ran.stdout(), ran.stderr());
}

/// `count` uploads at once of `size`-ish files (sizes vary), each of its own bytes, no
/// times set: each lands whole or is reported failed.
fn uploads_at_once_land_whole(kind: Kind, test: &str, count: u8, size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    fs::create_dir_all(served.join("target/pool")).unwrap();
    fs::create_dir_all(dir.path().join("local")).unwrap();
    let server = match Server::start(kind, dir.path(), &served) {
        Ok(server) => server,
        Err(why) => return skip(test, &why),
    };
    let root = server.remote_name(&served.join("target"));
    let files: Vec<(String, usize, u8)> = (0..count)
        .map(|i| (format!("f{i}.deb"), size + 3000 * usize::from(i % 7), i))
        .collect();
    let ops: Vec<Op> = files
        .iter()
        .map(|(name, size, seed)| {
            let local = dir.path().join("local").join(name);
            fs::write(&local, pattern(*size, *seed)).unwrap();
            Op::Upload {
                local,
                remote: RemotePath::new(format!("{root}/pool/{name}")).unwrap(),
                fsync: false,
                mtime: None,
            }
        })
        .collect();
    let config = EngineConfig {
        targetdir: Some(RemotePath::new(root.clone()).unwrap()),
        ..EngineConfig::default()
    };
    let mut engine = Engine::connect(&server.engine_command(), config).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    for ((name, size, seed), result) in files.iter().zip(&results) {
        let landed = fs::read(served.join("target/pool").join(name)).ok();
        let whole = landed.as_deref() == Some(&pattern(*size, *seed)[..]);
        let holds = landed.as_ref().map(|b| (b.len(), b.first().copied()));
        let said = format!("{name} ({size} bytes, first {seed}) holds {holds:?}");
        assert!(
            result.is_err() || whole,
            "{said}: reported done: {results:?}"
        );
    }
    let what = kind.name();
    let log = server.log();
    assert!(
        results.iter().all(Result::is_ok),
        "{what}: {results:?}\n{log}"
    );
}

/// Uploads of many files at once on ssh_sftpd: with a handle handed out twice, WRITEs meant
/// for one file would go to another.
#[test]
#[ignore = "ssh_sftpd gives a handle still open: now caught (the run stops, nothing wrong reported done), not yet gone around one handle at a time"]
fn bug_erlang_uploads_at_once_land_whole() {
    let test = "bug_erlang_uploads_at_once_land_whole";
    uploads_at_once_land_whole(Kind::Erlang, test, 40, 1000);
}

#[test]
fn uploads_at_once_land_whole_on_twisted() {
    let test = "uploads_at_once_land_whole_on_twisted";
    uploads_at_once_land_whole(Kind::Twisted, test, 40, 1000);
}

#[test]
fn uploads_at_once_land_whole_on_mysecureshell() {
    let test = "uploads_at_once_land_whole_on_mysecureshell";
    uploads_at_once_land_whole(Kind::MySecureShell, test, 40, 1000);
}

#[test]
fn large_uploads_land_whole_on_twisted() {
    let test = "large_uploads_land_whole_on_twisted";
    uploads_at_once_land_whole(Kind::Twisted, test, 3, 20 << 20);
}

#[test]
fn large_uploads_land_whole_on_mysecureshell() {
    let test = "large_uploads_land_whole_on_mysecureshell";
    uploads_at_once_land_whole(Kind::MySecureShell, test, 3, 20 << 20);
}

#[test]
fn large_uploads_land_whole_on_erlang() {
    let test = "large_uploads_land_whole_on_erlang";
    uploads_at_once_land_whole(Kind::Erlang, test, 1, 20 << 20);
}

/// A mirror to MySecureShell set up with `knob` (a line of its conf), on a repository
/// without symlinks; returns the run, the repository and the server.
fn mirror_with_knob(knob: &str, test: &str) -> Option<(crate::repo::Ran, Repo, Server)> {
    let repo = crate::interop::repository(false);
    let served = repo.dir.path();
    let server = match Server::start_with(Kind::MySecureShell, served, served, knob) {
        Ok(server) => server,
        Err(why) => {
            skip(test, &why);
            return None;
        }
    };
    repo.set_conf(&server.conf(&repo.remote()));
    let ran = repo.hook(&["--basedir", ".", "mirror"]);
    Some((ran, repo, server))
}

/// Every file the remote holds, below `remote/`.
fn remote_files(repo: &Repo) -> Vec<String> {
    let out = Command::new("find")
        .arg(repo.remote())
        .args(["-type", "f"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A server that refuses every RENAME (MySecureShell's `DisableRename`): nothing can be put
/// in place, and every upload fails, said per directory, its temporary file removed.
#[test]
fn mysecureshell_refusing_renames_fails_every_upload_cleanly() {
    let test = "mysecureshell_refusing_renames_fails_every_upload_cleanly";
    let Some((ran, repo, server)) = mirror_with_knob("DisableRename true\n", test) else {
        return;
    };
    let said = format!("{}\n{}", ran.stderr(), server.log());
    assert_eq!(ran.code(), 1, "{said}");
    assert!(
        ran.stderr().contains("RENAME failed: PERMISSION_DENIED"),
        "{said}"
    );
    assert_eq!(remote_files(&repo), Vec::<String>::new(), "{said}");
    let beside = names_in(repo.dir.path());
    assert!(!beside.iter().any(|n| n.starts_with('.')), "{beside:?}");
}

/// An upload-only account (MySecureShell's `DisableRemoveFile`: REMOVE refused, even of a
/// name that does not exist): a first mirror needs no REMOVE at all, yet the program
/// sends one for each temporary name before its OPEN (which is CREAT|EXCL and would catch
/// anything there) and fails every upload on its PERMISSION_DENIED, saying "the server
/// refuses changes in this directory (REMOVE failed ..., for REAL NAME): let the SFTP user
/// write there" (the request was for the temporary name, and writing is allowed).
#[test]
fn mysecureshell_upload_only_account_takes_a_first_mirror() {
    let test = "mysecureshell_upload_only_account_takes_a_first_mirror";
    let Some((ran, repo, server)) = mirror_with_knob("DisableRemoveFile true\n", test) else {
        return;
    };
    assert_eq!(ran.code(), 0, "{}\n{}", ran.stderr(), server.log());
    repo.assert_mirrored(&[]);
}
