//! Helpers shared by the integration tests: temporary trees, real servers, their logs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use outsftphook::RemotePath;
use outsftphook::ServerCommand;

pub const OPENSSH_SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
pub const GESFTPSERVER: &str = "/usr/libexec/gesftpserver";

/// Fails loudly when a server the tests rely on is missing: `.ci/run` installs them.
pub fn require(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: install the Debian packages listed in .ci/run"
    );
}

/// Skips a test that cannot run here, saying why; under CI (`CI` set) that is a failure
/// instead: CI installs everything and runs as root, so a skip there hides a broken setup.
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run under CI: {why} (CI must install it: see .ci/run)"
    );
    eprintln!("SKIPPED {test}: {why}");
}

/// A temporary directory with `local/` (sources) and `remote/` (the server's start dir).
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("local")).unwrap();
        fs::create_dir(dir.path().join("remote")).unwrap();
        Sandbox { dir }
    }

    pub fn local(&self) -> PathBuf {
        self.dir.path().join("local")
    }

    pub fn remote(&self) -> PathBuf {
        self.dir.path().join("remote")
    }

    pub fn server_log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Writes a local file with deterministic content of `size` bytes.
    pub fn local_file(&self, name: &str, size: usize, seed: u8) -> PathBuf {
        let path = self.local().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, pattern(size, seed)).unwrap();
        path
    }

    /// OpenSSH's sftp-server rooted at `remote/`, logging every operation to `server.log`.
    pub fn openssh(&self) -> ServerCommand {
        require(OPENSSH_SFTP_SERVER);
        self.shell(&format!(
            "exec {OPENSSH_SFTP_SERVER} -e -l INFO -d '{}' 2>>'{}'",
            self.remote().display(),
            self.server_log().display()
        ))
    }

    /// Green End's server, started in `remote/`.
    pub fn greenend(&self) -> ServerCommand {
        require(GESFTPSERVER);
        self.shell(&format!(
            "cd '{}' && exec {GESFTPSERVER}",
            self.remote().display()
        ))
    }

    /// A server started by a shell command line.
    pub fn shell(&self, script: &str) -> ServerCommand {
        ServerCommand::Direct(vec!["sh".into(), "-c".into(), OsString::from(script)])
    }

    /// The operations the OpenSSH server logged, one line each.
    pub fn log_lines(&self) -> Vec<String> {
        fs::read_to_string(self.server_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many sessions OpenSSH's server logged as opened.
    pub fn sessions_opened(&self) -> usize {
        sessions_opened(&self.server_log())
    }

    /// How many times the server was asked to create `dir` (a path relative to `remote/`).
    pub fn mkdirs_logged(&self, dir: &str) -> usize {
        // Every MKDIR sent, not just those that succeeded: a "sent status" line may belong
        // to a request the server does not log (REALPATH, LSTAT), and a MKDIR that failed
        // is one too many all the same.
        // A new tree is made under a stand-in name: its MKDIRs count as the real ones'.
        self.log_lines()
            .iter()
            .filter_map(|l| l.strip_prefix("mkdir name \""))
            .filter(|l| l.split('"').next().map(unstaged) == Some(dir.to_string()))
            .count()
    }

    /// The most files the server had open at once, from its open/close log lines. An open
    /// counts when a close of the same name follows it: the server logs no "sent status"
    /// for requests it does not log (REALPATH, LSTAT), so a failure line is no sure sign of
    /// which request failed.
    pub fn max_open_logged(&self) -> usize {
        let lines = self.log_lines();
        let name = |line: &str| line.split('"').nth(1).map(str::to_owned);
        let mut closes: std::collections::HashMap<String, usize> = Default::default();
        for line in &lines {
            if line.starts_with("close \"") || line.starts_with("forced close \"") {
                *closes.entry(name(line).unwrap_or_default()).or_default() += 1;
            }
        }
        let (mut open, mut max) = (0usize, 0usize);
        let mut pending: std::collections::HashMap<String, usize> = Default::default();
        for line in &lines {
            let Some(n) = name(line) else { continue };
            if line.starts_with("open \"") {
                let left = closes.get(&n).copied().unwrap_or(0);
                let opened = pending.entry(n).or_default();
                if *opened < left {
                    *opened += 1;
                    open += 1;
                    max = max.max(open);
                }
            } else if line.starts_with("close \"") || line.starts_with("forced close \"") {
                if let Some(opened) = pending.get_mut(&n).filter(|o| **o > 0) {
                    *opened -= 1;
                    open -= 1;
                }
                if let Some(c) = closes.get_mut(&n) {
                    *c -= 1;
                }
            }
        }
        max
    }
}

pub fn rpath(s: &str) -> RemotePath {
    RemotePath::new(s).unwrap()
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Deterministic bytes that differ between files and between offsets.
pub fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// How many sessions an OpenSSH `sftp-server -l INFO` log records as opened.
pub fn sessions_opened(log: &Path) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("session opened"))
        .count()
}

/// `path` with a new tree's stand-in name (`.NAME.` and 16 hex digits, renamed to NAME once
/// the tree is made) read as the real name.
pub fn unstaged(path: &str) -> String {
    let real = |c: &str| match c.strip_prefix('.').and_then(|c| c.rsplit_once('.')) {
        Some((name, tag)) if tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => c.to_string(),
    };
    path.split('/').map(real).collect::<Vec<_>>().join("/")
}
