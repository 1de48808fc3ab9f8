//! A real reprepro repository in a temporary directory whose outhook is the built binary,
//! pushing to a local `remote/` through OpenSSH's sftp-server.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_outsftphook");

pub struct Repo {
    pub dir: tempfile::TempDir,
}

/// A command's outcome, with everything needed to understand a failure.
pub struct Ran {
    pub what: String,
    pub output: Output,
}

impl Ran {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    /// Panics with the command and its output unless it exited with `code`.
    pub fn expect(&self, code: i32) -> &Ran {
        assert_eq!(
            self.code(),
            code,
            "{} exited {}\n--- stdout\n{}--- stderr\n{}",
            self.what,
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }
}

impl Repo {
    /// A repository with two distributions (`bookworm` alias `stable`, and `trixie` with
    /// two components and architectures) and `sftpcommand` pointing at `remote/`.
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo { dir };
        let base = repo.base();
        fs::create_dir_all(base.join("conf")).unwrap();
        fs::create_dir_all(repo.remote()).unwrap();
        fs::create_dir_all(repo.debs()).unwrap();
        fs::DirBuilder::new()
            .mode(0o700)
            .create(repo.runtime_dir())
            .unwrap();
        fs::write(
            base.join("conf/distributions"),
            "Codename: bookworm\nSuite: stable\nComponents: main\nArchitectures: amd64 source\n\n\
             Codename: trixie\nComponents: main contrib\nArchitectures: amd64 i386\n",
        )
        .unwrap();
        fs::write(base.join("conf/options"), format!("outhook {BIN}\n")).unwrap();
        // The server, through a script: one word in the conf, whatever the temp path holds.
        let server = repo.dir.path().join("server.sh");
        fs::write(
            &server,
            format!(
                "#!/bin/sh\nexec /usr/lib/openssh/sftp-server -e -l INFO -d '{}' 2>>'{}'\n",
                repo.remote().display(),
                repo.server_log().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&server, fs::Permissions::from_mode(0o755)).unwrap();
        repo.set_conf(&format!("sftpcommand {}\n", server.display()));
        repo
    }

    pub fn base(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn remote(&self) -> PathBuf {
        self.dir.path().join("remote")
    }

    pub fn logs(&self) -> PathBuf {
        self.base().join("logs")
    }

    fn debs(&self) -> PathBuf {
        self.dir.path().join("debs")
    }

    /// The `XDG_RUNTIME_DIR` of every run here: the sockets of the ssh connections kept
    /// between runs (`sshpersist`) are this repository's own.
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The pids of the ssh masters kept for this repository's runs, as ssh tells them.
    pub fn ssh_masters(&self) -> Vec<i32> {
        let Ok(sockets) = fs::read_dir(self.runtime_dir().join("outsftphook")) else {
            return vec![];
        };
        sockets
            .flatten()
            .filter_map(|socket| {
                let out = Command::new("ssh")
                    .args(["-F", "/dev/null", "-O", "check", "-S"])
                    .arg(socket.path())
                    .arg("any")
                    .output()
                    .ok()?;
                // "Master running (pid=1234)"
                let said = String::from_utf8_lossy(&out.stderr).into_owned();
                let pid = said.split("(pid=").nth(1)?.split(')').next()?;
                pid.parse().ok()
            })
            .collect()
    }

    pub fn server_log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Points the conf at the normal local server.
    pub fn use_server(&self) {
        let server = self.dir.path().join("server.sh");
        self.set_conf(&format!("sftpcommand {}\n", server.display()));
    }

    /// Points the conf at a server with a fault after `after` bytes of input (see
    /// tests/fixtures/faulty_server.py); the bytes sent end up in `bytes_sent()`.
    pub fn use_faulty_server(&self, after: i64, action: &str) {
        self.use_faulty(after, action, &FaultyServer::OpenSsh);
    }

    /// [`Repo::use_faulty_server`] with `server` behind the fault.
    pub fn use_faulty(&self, after: i64, action: &str, server: &FaultyServer) {
        // The count says the next run's server has ended: an older one must not.
        let _ = fs::remove_file(self.count_file());
        let script = self.dir.path().join("faulty.sh");
        let remote = self.remote();
        let (cd, command) = match server {
            FaultyServer::OpenSsh => (
                String::new(),
                format!("/usr/lib/openssh/sftp-server -d '{}'", remote.display()),
            ),
            // It has no start directory of its own: it starts where it is started.
            FaultyServer::GreenEnd => (
                format!("cd '{}' && ", remote.display()),
                crate::support::GESFTPSERVER.to_owned(),
            ),
        };
        fs::write(
            &script,
            format!(
                "#!/bin/sh\n{cd}exec python3 '{}/tests/fixtures/faulty_server.py' '{}' {after} \
                 {action} -- {command}\n",
                env!("CARGO_MANIFEST_DIR"),
                self.count_file().display(),
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        self.set_conf(&format!("sftpcommand {}\n", script.display()));
    }

    fn count_file(&self) -> PathBuf {
        self.dir.path().join("bytes-sent")
    }

    /// What the hook sent through the faulty server, in bytes, once the server has ended.
    pub fn bytes_sent(&self) -> u64 {
        self.wait_for_faulty_server()
    }

    /// Waits until the faulty server has exited, and returns what the hook sent through it.
    /// The hook stops its server before it exits, but one killed by SIGKILL cannot: that
    /// server carries out what it had been sent (into `remote/`) after the hook is gone, for
    /// as long as a loaded machine makes it take, so a test waits for it before it looks at
    /// the remote or starts the next run. The wrapper writes the count once its server has
    /// exited, even when stopped by the hook's SIGTERM.
    pub fn wait_for_faulty_server(&self) -> u64 {
        let path = self.count_file();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(text) = fs::read_to_string(&path) {
                return text.trim().parse().expect("a byte count");
            }
            assert!(
                Instant::now() < deadline,
                "the faulty server did not end within 120 s: {} is missing",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where each request the hook sent through the faulty server starts in its stream,
    /// and its SFTP type, once the server has ended.
    pub fn packets_sent(&self) -> Vec<(i64, u8)> {
        self.wait_for_faulty_server();
        packets_in(&self.count_file().with_extension("packets"))
    }

    /// Copies the remote tree and the logs aside, to start several runs from one state.
    pub fn save_state(&self) {
        for (from, to) in [(self.remote(), "saved-remote"), (self.logs(), "saved-logs")] {
            let to = self.dir.path().join(to);
            let _ = fs::remove_dir_all(&to);
            copy_tree(&from, &to);
        }
    }

    /// Puts back what [`Repo::save_state`] saved.
    pub fn restore_state(&self) {
        for (to, from) in [(self.remote(), "saved-remote"), (self.logs(), "saved-logs")] {
            fs::remove_dir_all(&to).unwrap();
            copy_tree(&self.dir.path().join(from), &to);
        }
    }

    /// Adds package `name` with the server out of reach, so that its log stays pending,
    /// then puts the conf back as it was; returns the log.
    pub fn pending_include(&self, name: &str, version: &str) -> PathBuf {
        let conf_path = self.base().join("conf/outsftphook.conf");
        let conf = fs::read_to_string(&conf_path).unwrap();
        let before = self.outlogs();
        self.set_conf("servername nowhere.invalid\n");
        let deb = self.deb(name, version, 100);
        let ran = self.reprepro(&["includedeb", "bookworm", deb.to_str().unwrap()]);
        assert_ne!(ran.code(), 0, "the push reached a server");
        self.set_conf(&conf);
        let log = self
            .outlogs()
            .into_iter()
            .find(|l| !before.contains(l))
            .expect("a new pending log");
        self.logs().join(log)
    }

    /// Whether the mirror's bookworm amd64 Packages index names package `name`.
    pub fn remote_index_names(&self, name: &str) -> bool {
        let packages = self
            .remote()
            .join("dists/bookworm/main/binary-amd64/Packages");
        fs::read_to_string(packages)
            .unwrap()
            .contains(&format!("Package: {name}\n"))
    }

    /// Writes `text` as the conf. Unless it says otherwise, deletions are carried out at
    /// once (`keepdeleted 0`): the tests of the hook's order, faults and servers compare
    /// the remote with the out dir right after a push; those of held deletions set
    /// `keepdeleted` themselves.
    pub fn set_conf(&self, text: &str) {
        let text = if text.contains("keepdeleted") {
            text.to_string()
        } else if text.is_empty() || text.ends_with('\n') {
            format!("{text}keepdeleted 0\n")
        } else {
            format!("{text}\nkeepdeleted 0\n")
        };
        fs::write(self.base().join("conf/outsftphook.conf"), text).unwrap();
    }

    /// Builds `NAME_VERSION_ARCH.deb` with a payload of `size` bytes, the same bytes each time.
    pub fn deb(&self, name: &str, version: &str, size: usize) -> PathBuf {
        let root = self.dir.path().join(format!("build-{name}-{version}"));
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::create_dir_all(root.join(format!("usr/share/{name}"))).unwrap();
        fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: amd64\nSection: misc\n\
                 Priority: optional\nMaintainer: Test <test@example.org>\nDescription: test {name}\n"
            ),
        )
        .unwrap();
        // Pseudo-random, so that the .deb is about `size` bytes, not compressed away.
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (name.len() as u64) << 32 ^ size as u64;
        let payload: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(root.join(format!("usr/share/{name}/data")), payload).unwrap();
        let deb = self.debs().join(format!("{name}_{version}_amd64.deb"));
        // A fixed date clamps every timestamp in the package: the same name, version and
        // size build the same bytes in any second, as reprepro requires of a file it has.
        let out = Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["-Zgzip", "-z1", "--root-owner-group", "-b"])
            .arg(&root)
            .arg(&deb)
            .output()
            .expect("dpkg-deb");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_dir_all(root).unwrap();
        deb
    }

    /// Runs reprepro in the repository (which runs the hook).
    pub fn reprepro(&self, args: &[&str]) -> Ran {
        self.reprepro_with_base(&self.base(), self.dir.path(), args)
    }

    /// Runs reprepro from the base dir as `reprepro -b . ...`: then it names dist files
    /// relative to its working directory (`./dists/...`).
    pub fn reprepro_relative(&self, args: &[&str]) -> Ran {
        self.reprepro_with_base(Path::new("."), &self.base(), args)
    }

    fn reprepro_with_base(&self, base: &Path, cwd: &Path, args: &[&str]) -> Ran {
        let output = Command::new("reprepro")
            .current_dir(cwd)
            .arg("-b")
            .arg(base)
            .args(args)
            .env_remove("RUST_LOG")
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .output()
            .expect("reprepro (package reprepro) must be installed");
        Ran {
            what: format!("reprepro {}", args.join(" ")),
            output,
        }
    }

    /// Runs the hook by hand, from the repository's directory, without reprepro's
    /// environment.
    pub fn hook(&self, args: &[&str]) -> Ran {
        self.hook_in(&self.base(), args)
    }

    /// Runs the hook by hand from `cwd`.
    pub fn hook_in(&self, cwd: &Path, args: &[&str]) -> Ran {
        self.run_hook(Command::new(BIN), cwd, args)
    }

    /// Runs the hook by hand after the shell command `setup` (e.g. a `ulimit`).
    pub fn hook_after(&self, setup: &str, args: &[&str]) -> Ran {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("{setup} && exec \"$0\" \"$@\""), BIN]);
        self.run_hook(cmd, &self.base(), args)
    }

    fn run_hook(&self, mut cmd: Command, cwd: &Path, args: &[&str]) -> Ran {
        cmd.current_dir(cwd).args(args);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REPREPRO_") {
                cmd.env_remove(k);
            }
        }
        let output = cmd
            .env_remove("RUST_LOG")
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .output()
            .unwrap();
        Ran {
            what: format!("outsftphook {}", args.join(" ")),
            output,
        }
    }

    pub fn outlogs(&self) -> Vec<String> {
        self.log_files("outlog")
    }

    pub fn done_logs(&self) -> Vec<String> {
        self.log_files("done")
    }

    fn log_files(&self, ext: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.logs())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(&format!(".{ext}")))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Lines the server logged (one per operation).
    pub fn server_ops(&self) -> Vec<String> {
        fs::read_to_string(self.server_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("session "))
            .map(str::to_owned)
            .collect()
    }

    pub fn clear_server_log(&self) {
        let _ = fs::remove_file(self.server_log());
    }

    /// Asserts that remote `pool/` and `dists/` equal the local ones: same files and bytes,
    /// same symlinks, nothing else (no `.new` leftovers). `skip` names local paths that no
    /// outlog carries (reprepro's createsymlinks).
    pub fn assert_mirrored(&self, skip: &[&str]) {
        let mut local = Vec::new();
        let mut remote = Vec::new();
        for top in ["pool", "dists"] {
            walk(&self.base(), Path::new(top), &mut local);
            walk(&self.remote(), Path::new(top), &mut remote);
        }
        local.retain(|(p, _)| !skip.iter().any(|s| p.starts_with(s)));
        let describe = |v: &[(PathBuf, Entry)]| {
            v.iter()
                .map(|(p, e)| format!("{} {e:?}", p.display()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            local == remote,
            "remote differs from local\n--- local\n{}\n--- remote\n{}",
            describe(&local),
            describe(&remote)
        );
    }
}

/// The real server [`Repo::use_faulty`] puts behind its fault.
pub enum FaultyServer {
    /// OpenSSH's `sftp-server`: in order, with its extensions (trees, files aside, links).
    OpenSsh,
    /// Green End's `gesftpserver`: none of those, so the plain way of every step.
    GreenEnd,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(u64, u64),
    Link(PathBuf),
}

/// Every entry below `root/rel`, sorted, with a content hash for files.
fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Entry)>) {
    let path = root.join(rel);
    let Ok(meta) = fs::symlink_metadata(&path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        out.push((rel.to_owned(), Entry::Link(fs::read_link(&path).unwrap())));
    } else if meta.is_dir() {
        out.push((rel.to_owned(), Entry::Dir));
        let mut names: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            walk(root, &rel.join(n), out);
        }
    } else {
        let bytes = fs::read(&path).unwrap();
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        out.push((rel.to_owned(), Entry::File(bytes.len() as u64, hash)));
    }
}

/// The requests a faulty_server.py wrapper logged to `path` (its COUNTFILE.packets): where
/// each starts in the hook's stream, and its SFTP type.
pub fn packets_in(path: &Path) -> Vec<(i64, u8)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (at, kind) = l.split_once(' ').expect("OFFSET TYPE");
            (at.parse().unwrap(), kind.parse().unwrap())
        })
        .collect()
}

/// Kill points for a server before each kind of request in `packets`: the first and the
/// last request of every run of one kind, INIT left out; each as (offset, type, index).
pub fn kinds_first_and_last(packets: &[(i64, u8)]) -> Vec<(i64, u8, usize)> {
    (1..packets.len())
        .filter(|&k| {
            packets[k - 1].1 != packets[k].1
                || packets.get(k + 1).is_none_or(|p| p.1 != packets[k].1)
        })
        .map(|k| (packets[k].0, packets[k].1, k))
        .collect()
}

/// Copies `from` to `to` (which must not exist) with `cp -a`.
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// For tests with several mirrors, each a tree of its own (tests/integration/mirrors.rs).
impl Repo {
    /// Asserts that `pool/` and `dists/` under `remote` equal the local ones, as
    /// [`Repo::assert_mirrored`] does for `remote/`.
    pub fn assert_mirrored_at(&self, remote: &Path) {
        let local = tree(&self.base());
        let there = tree(remote);
        assert!(
            local == there,
            "{} differs from local\n--- local\n{}\n--- remote\n{}",
            remote.display(),
            describe_tree(&local),
            describe_tree(&there)
        );
    }
}

/// Every entry of `pool/` and `dists/` below `root`, sorted, with a content hash for files:
/// to compare a tree with itself before and after a run.
pub fn tree(root: &Path) -> Vec<(PathBuf, Entry)> {
    let mut out = Vec::new();
    for top in ["pool", "dists"] {
        walk(root, Path::new(top), &mut out);
    }
    out
}

/// One line per entry of a [`tree`], for a failure message.
pub fn describe_tree(v: &[(PathBuf, Entry)]) -> String {
    v.iter()
        .map(|(p, e)| format!("{} {e:?}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Repo {
    /// The ssh masters its runs kept (`sshpersist`) go with it.
    fn drop(&mut self) {
        for pid in self.ssh_masters() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}
