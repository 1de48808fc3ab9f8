//! The ssh connection kept between runs (`sshpersist`, [`KeptConnection`]): where its socket
//! lives, made and checked here before the first ssh starts. It must not start or stop ssh:
//! ssh itself becomes the master and leaves when idle.
//!
//! The socket is as good as the user's key for as long as the master lives: any process
//! that can reach it opens sessions on the server without authenticating. So it lives in
//! a directory of our own, mode 0700, owned by us and no symlink: `$XDG_RUNTIME_DIR`
//! (per user, on tmpfs, gone at logout) where it is set, else one per user id in the
//! temporary directory. A directory that fails the check (another user made it first, its
//! mode was widened) is said and not used: the run goes on without keeping its connection.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::transport::{KeptConnection, ServerCommand};

/// The longest socket directory: a Unix socket's path has 107 bytes, and ssh binds the
/// socket as DIR/%C (a 40-digit hash) plus a 17-byte temporary suffix before renaming it.
const MAX_DIR_LEN: usize = 107 - 1 - 40 - 17;

/// `server` with its connection kept for `persist`, if it is an ssh one and the socket
/// directory is fit for it (said once a run when it is not).
pub(crate) fn keep(server: &ServerCommand, persist: Option<Duration>) -> ServerCommand {
    let mut server = server.clone();
    if let (ServerCommand::Ssh { kept, .. }, Some(persist)) = (&mut server, persist) {
        *kept = socket_dir().map(|socket_dir| KeptConnection {
            socket_dir: socket_dir.to_owned(),
            persist,
        });
    }
    server
}

/// The socket directory of this run, made and checked once; `None` (said) if unfit.
fn socket_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = default_dir();
        match private_dir(&dir, nix::unistd::geteuid().as_raw()) {
            Ok(()) => Some(dir),
            Err(why) => {
                log::warn!(
                    "not keeping the ssh connection for the next run: {}: {why} (or set \
                     sshpersist no)",
                    dir.display()
                );
                None
            }
        }
    })
    .as_deref()
}

/// `$XDG_RUNTIME_DIR/outsftphook`, else `outsftphook-ssh-UID` in the temporary directory.
/// An `XDG_RUNTIME_DIR` that is not ours is another user's session's, kept by `su` without
/// `-`: not an error of this run's, so the temporary directory is used instead.
fn default_dir() -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(run) if run.is_absolute() && owned_by(&run, uid) => run.join("outsftphook"),
        _ => std::env::temp_dir().join(format!("outsftphook-ssh-{uid}")),
    }
}

fn owned_by(dir: &Path, uid: u32) -> bool {
    fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid)
}

/// Why `dir` may not hold the socket.
#[derive(Debug, PartialEq, Eq)]
enum Unfit {
    TooLong,
    NotADirectory,
    NotOurs(u32),
    Open(u32),
    Io(String),
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::TooLong => write!(
                f,
                "its path is longer than a socket's may be ({MAX_DIR_LEN} bytes): set \
                 XDG_RUNTIME_DIR or TMPDIR to a shorter directory"
            ),
            Unfit::NotADirectory => f.write_str("it is not a directory: remove it"),
            Unfit::NotOurs(uid) => write!(f, "it belongs to user id {uid}, not us: remove it"),
            Unfit::Open(mode) => write!(
                f,
                "others may enter it (mode {mode:04o}): make it 0700 (chmod 700) or remove it"
            ),
            Unfit::Io(e) => f.write_str(e),
        }
    }
}

/// Makes `dir` (mode 0700) if missing, then checks that it is a directory, not a symlink,
/// owned by `uid` and closed to others.
fn private_dir(dir: &Path, uid: u32) -> Result<(), Unfit> {
    if dir.as_os_str().len() > MAX_DIR_LEN {
        return Err(Unfit::TooLong);
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Unfit::Io(format!("cannot make it: {e}"))),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| Unfit::Io(e.to_string()))?;
    if !meta.file_type().is_dir() {
        return Err(Unfit::NotADirectory);
    }
    if meta.uid() != uid {
        return Err(Unfit::NotOurs(meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Unfit::Open(mode));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn a_missing_directory_is_made_closed_to_others() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        assert_eq!(private_dir(&dir, uid()), Ok(()));
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(private_dir(&dir, uid()), Ok(()), "and taken again as it is");
    }

    #[test]
    fn a_directory_others_may_enter_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(private_dir(&dir, uid()), Err(Unfit::Open(0o755)));
    }

    #[test]
    fn a_symlink_to_our_own_private_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        let link = tmp.path().join("s");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(private_dir(&link, uid()), Err(Unfit::NotADirectory));
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        assert_eq!(private_dir(&dir, uid() + 1), Err(Unfit::NotOurs(uid())));
    }

    #[test]
    fn a_path_too_long_for_a_socket_is_refused_before_anything_is_made() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d".repeat(MAX_DIR_LEN));
        assert_eq!(private_dir(&dir, uid()), Err(Unfit::TooLong));
        assert!(!dir.exists());
    }

    #[test]
    fn only_ssh_servers_keep_their_connection() {
        let direct = ServerCommand::Direct(vec!["/usr/lib/openssh/sftp-server".into()]);
        assert_eq!(keep(&direct, Some(Duration::from_secs(60))), direct);
        let ssh = ServerCommand::Ssh {
            ssh: vec![],
            options: vec![],
            user: None,
            host: "h".into(),
            kept: None,
        };
        assert_eq!(keep(&ssh, None), ssh);
    }
}
