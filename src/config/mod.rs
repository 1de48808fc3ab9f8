//! Flags + environment + `outsftphook.conf` + reprepro's `conf/options` -> one resolved
//! [`Settings`]. Precedence: flags, then the environment, then `outsftphook.conf`, then
//! `options`. Pure: the environment and the file reader are passed in.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Args;
use crate::engine::{DEFAULT_MAX_OPEN_FILES, EngineConfig};
use crate::interrupt::Interrupt;
use crate::remote_path::RemotePath;
use crate::transport::ServerCommand;

/// Everything a run needs to know, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The repository's base dir, when known: relative local paths in outlogs that do not
    /// resolve from the working directory are tried from here.
    pub basedir: Option<PathBuf>,
    pub outdir: PathBuf,
    /// Where reprepro writes the files of `dists/` (reprepro's distdir): every DISTFILE
    /// source must lie in it.
    pub distdir: PathBuf,
    pub logdir: PathBuf,
    /// Where [`Settings::outdir`] and [`Settings::logdir`] came from, for messages
    /// (`--outdir`, `REPREPRO_OUT_DIR`, ...).
    pub outdir_from: String,
    pub logdir_from: String,
    pub confdir: PathBuf,
    /// reprepro's database dir, whose `lockfile` reprepro holds for its whole run; `None`
    /// when neither the base dir nor `dbdir` in `conf/options` tells it.
    pub dbdir: Option<PathBuf>,
    /// reprepro's hook environment is set (`REPREPRO_OUT_DIR` or `REPREPRO_LOG_DIR`): only
    /// reprepro sets those, when it calls its hooks.
    pub reprepro_env: bool,
    pub server: ServerCommand,
    /// Prefix of every remote path; `None` means the server's start directory.
    pub targetdir: Option<RemotePath>,
    pub verbose: u8,
    pub debug_sftp: u32,
    pub autoretry: bool,
    pub keepdirectories: bool,
    /// Replace files with `posix-rename@openssh.com` where offered.
    pub posix_rename: bool,
    /// Remote files open at once per connection; `None`: chosen from the measured round trip.
    pub max_open_files: Option<usize>,
    /// WRITE bytes awaiting a reply per connection; `None`: chosen from the round trip.
    pub window: Option<u64>,
    /// Rely on OpenSSH's server carrying out requests in the order sent (`inorder auto`).
    pub in_order: bool,
    /// The most ssh connections to use for uploads.
    pub connections: usize,
    pub timeout: Duration,
    pub lock_timeout: Duration,
    /// How links are made on the remote (`symlinks auto|yes|copy`).
    pub symlinks: Symlinks,
}

/// How links are made on the remote: the `symlinks` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Symlinks {
    /// Make symlinks; where the server refuses them (said once per run), upload a copy of
    /// what the link points to instead, for that link and every later one of the run.
    #[default]
    Auto,
    /// Make symlinks; a refused one is an error.
    Yes,
    /// Never make a symlink: upload a copy of what each link points to.
    Copy,
}

impl Settings {
    /// The engine's settings for a run over `connections` connections.
    pub fn engine_config(&self, connections: usize, interrupt: &Interrupt) -> EngineConfig {
        EngineConfig {
            connections,
            max_open_files: self.max_open_files.unwrap_or(DEFAULT_MAX_OPEN_FILES),
            auto_open_files: self.max_open_files.is_none(),
            window: self.window.unwrap_or(EngineConfig::default().window),
            auto_window: self.window.is_none(),
            in_order: self.in_order,
            root: self.targetdir.clone(),
            stall_timeout: self.timeout,
            interrupt: interrupt.clone(),
            posix_rename: self.posix_rename,
            ..EngineConfig::default()
        }
    }
}

impl Settings {
    /// Refuses, before anything is sent, an out dir (and with `logdir`, a log dir) that is
    /// not there: every upload would fail, and no rerun could finish them.
    pub fn check_dirs(&self, logdir: bool) -> Result<(), ConfigError> {
        let mut dirs = vec![("out", &self.outdir, &self.outdir_from)];
        if logdir {
            dirs.push(("log", &self.logdir, &self.logdir_from));
        }
        for (what, dir, from) in dirs {
            if !dir.is_dir() {
                let problem = if dir.exists() {
                    "is not a directory"
                } else {
                    "does not exist"
                };
                return Err(ConfigError(format!(
                    "the {what} dir {} (from {from}) {problem}: check that setting (and \
                     --basedir); nothing was sent",
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    /// The command that processes what is pending, with this run's directories.
    pub fn pending_command(&self) -> String {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let mut words = vec!["outsftphook".to_owned()];
        let base = self.basedir.as_deref().map(abs);
        if let Some(b) = &base {
            words.push(format!("--basedir {}", b.display()));
        }
        let defaults = base
            .as_ref()
            .map(|b| (b.clone(), b.join("logs"), b.join("conf")));
        let (outdir, logdir, confdir) = (abs(&self.outdir), abs(&self.logdir), abs(&self.confdir));
        for (flag, dir, default) in [
            ("--outdir", &outdir, defaults.as_ref().map(|d| &d.0)),
            ("--logdir", &logdir, defaults.as_ref().map(|d| &d.1)),
            ("--confdir", &confdir, defaults.as_ref().map(|d| &d.2)),
        ] {
            if Some(dir) != default {
                words.push(format!("{flag} {}", dir.display()));
            }
        }
        words.push("--pending".into());
        words.join(" ")
    }
}

/// A configuration problem, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The names of the settings `outsftphook.conf` knows.
pub const CONF_KEYS: &[&str] = &[
    "servername",
    "username",
    "targetdir",
    "debug",
    "verbose",
    "autoretry",
    "sshcommand",
    "sftpcommand",
    "maxopenfiles",
    "timeout",
    "keepdirectories",
    "posixrename",
    "connections",
    "window",
    "inorder",
    "symlinks",
];

/// Default for the most connections; see the README for the measurement.
pub const DEFAULT_CONNECTIONS: usize = 4;

/// Default stall timeout: long enough for a slow link, short enough that reprepro is not held
/// for ever by a dead one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The values read from `outsftphook.conf`.
#[derive(Debug, Default)]
struct ConfFile {
    servername: Option<String>,
    username: Option<String>,
    targetdir: Option<String>,
    debug: Option<u32>,
    verbose: Option<bool>,
    autoretry: Option<bool>,
    sshcommand: Option<Vec<String>>,
    sftpcommand: Option<Vec<String>>,
    maxopenfiles: Option<Option<usize>>,
    connections: Option<usize>,
    window: Option<Option<u64>>,
    inorder: Option<bool>,
    timeout: Option<u64>,
    keepdirectories: Option<bool>,
    posixrename: Option<bool>,
    symlinks: Option<Symlinks>,
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "1" | "true" => Some(true),
        "no" | "off" | "0" | "false" => Some(false),
        _ => None,
    }
}

/// A byte count with an optional K, M or G suffix (powers of 1024), at least 64 KiB: less
/// would not hold one WRITE.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(unit)
        .filter(|n| *n >= 64 * 1024)
}

fn parse_conf(file: &Path, text: &str) -> Result<ConfFile, ConfigError> {
    let mut conf = ConfFile::default();
    for (i, line) in text.lines().enumerate() {
        let at = |msg: String| ConfigError(format!("{}:{}: {msg}", file.display(), i + 1));
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        if !CONF_KEYS.contains(&key) {
            return Err(at(format!(
                "unknown key '{key}' (known: {})",
                CONF_KEYS.join(", ")
            )));
        }
        if value.is_empty() {
            return Err(at(format!("'{key}' needs a value")));
        }
        let boolean = || {
            parse_bool(value).ok_or_else(|| {
                at(format!(
                    "'{key}' takes yes/no (or on/off, true/false, 1/0), not '{value}'"
                ))
            })
        };
        let number = |min: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| {
                    at(format!(
                        "'{key}' takes a whole number >= {min}, not '{value}'"
                    ))
                })
        };
        let words = || value.split_whitespace().map(str::to_owned).collect();
        match key {
            "servername" => conf.servername = Some(value.to_owned()),
            "username" => conf.username = Some(value.to_owned()),
            "targetdir" => conf.targetdir = Some(value.to_owned()),
            "debug" => conf.debug = Some(number(0)? as u32),
            "verbose" => conf.verbose = Some(boolean()?),
            "autoretry" => conf.autoretry = Some(boolean()?),
            "keepdirectories" => conf.keepdirectories = Some(boolean()?),
            "posixrename" => conf.posixrename = Some(boolean()?),
            "sshcommand" => conf.sshcommand = Some(words()),
            "sftpcommand" => conf.sftpcommand = Some(words()),
            "maxopenfiles" if value == "auto" => conf.maxopenfiles = Some(None),
            "maxopenfiles" => conf.maxopenfiles = Some(Some(number(1)? as usize)),
            "connections" => conf.connections = Some(number(1)? as usize),
            "inorder" => {
                conf.inorder = Some(match (value, parse_bool(value)) {
                    ("auto", _) => true,
                    (_, Some(false)) => false,
                    _ => return Err(at(format!("'inorder' takes auto or no, not '{value}'"))),
                })
            }
            "window" if value == "auto" => conf.window = Some(None),
            "window" => conf.window = Some(Some(parse_size(value).ok_or_else(|| {
                at(format!(
                    "'window' takes 'auto' or a size of at least 64K (like 512K, 4M), not '{value}'"
                ))
            })?)),
            "timeout" => conf.timeout = Some(number(1)?),
            "symlinks" => {
                conf.symlinks = Some(match value {
                    "auto" => Symlinks::Auto,
                    "yes" => Symlinks::Yes,
                    "copy" => Symlinks::Copy,
                    _ => {
                        return Err(at(format!(
                            "'symlinks' takes auto, yes or copy, not '{value}'"
                        )));
                    }
                })
            }
            _ => unreachable!("checked against CONF_KEYS"),
        }
    }
    Ok(conf)
}

/// The directory lines of reprepro's `conf/options`.
#[derive(Debug, Default)]
struct Options {
    basedir: Option<PathBuf>,
    outdir: Option<PathBuf>,
    logdir: Option<PathBuf>,
    confdir: Option<PathBuf>,
    distdir: Option<PathBuf>,
    dbdir: Option<PathBuf>,
}

fn parse_options(text: &str) -> Options {
    let mut o = Options::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        // reprepro also accepts its long options with their dashes here.
        let key = words.next().unwrap_or("").trim_start_matches("--");
        let Some(value) = words.next().map(PathBuf::from) else {
            continue;
        };
        match key {
            "basedir" => o.basedir = Some(value),
            "outdir" => o.outdir = Some(value),
            "logdir" => o.logdir = Some(value),
            "confdir" => o.confdir = Some(value),
            "distdir" => o.distdir = Some(value),
            "dbdir" => o.dbdir = Some(value),
            _ => {}
        }
    }
    o
}

/// reprepro's `+b/`, `+o/`, `+c/` prefixes: relative to the base, out or conf dir.
fn expand(
    path: PathBuf,
    basedir: Option<&Path>,
    outdir: Option<&Path>,
    confdir: Option<&Path>,
) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let base = match bytes.get(..3) {
        Some(b"+b/") => basedir,
        Some(b"+o/") => outdir,
        Some(b"+c/") => confdir,
        _ => return path,
    };
    match base {
        Some(base) => base.join(OsStr::from_bytes(&bytes[3..])),
        None => path,
    }
}

/// Where the environment comes from (the process's, or a test's).
pub trait Env {
    fn var(&self, name: &str) -> Option<OsString>;
}

impl<F: Fn(&str) -> Option<OsString>> Env for F {
    fn var(&self, name: &str) -> Option<OsString> {
        self(name)
    }
}

/// Resolves the settings; `read` returns a file's content, or `None` if it does not exist.
pub fn resolve(
    args: &Args,
    env: &dyn Env,
    read: &dyn Fn(&Path) -> std::io::Result<Option<String>>,
) -> Result<Settings, ConfigError> {
    let env_path = |name: &str| env.var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let read_at = |path: &Path| {
        read(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))
    };

    let mut basedir = args
        .basedir
        .clone()
        .or_else(|| env_path("REPREPRO_BASE_DIR"));
    let env_confdir = env_path("REPREPRO_CONFIG_DIR").or_else(|| env_path("REPREPRO_CONF_DIR"));
    let preconfdir = args
        .confdir
        .clone()
        .or_else(|| env_confdir.clone())
        .or_else(|| basedir.as_ref().map(|b| b.join("conf")));
    let Some(preconfdir) = preconfdir else {
        return Err(ConfigError(
            "no repository given: use --basedir DIR (or --confdir, --outdir and --logdir), \
             or let reprepro run outsftphook as its outhook"
                .into(),
        ));
    };
    let options_file = preconfdir.join("options");
    let options = match read_at(&options_file)? {
        Some(text) => parse_options(&text),
        None => Options::default(),
    };
    if basedir.is_none() {
        basedir = options.basedir.clone();
    }
    let b = basedir.as_deref();
    let confdir = args
        .confdir
        .clone()
        .or(env_confdir)
        .or_else(|| options.confdir.clone().map(|c| expand(c, b, None, None)))
        .unwrap_or(preconfdir);
    let from_options = |key: &str| format!("'{key}' in {}", options_file.display());
    let tag = |p: Option<PathBuf>, from: &dyn Fn() -> String| p.map(|p| (p, from()));
    let (outdir, outdir_from) = tag(args.outdir.clone(), &|| "--outdir".into())
        .or_else(|| tag(env_path("REPREPRO_OUT_DIR"), &|| "REPREPRO_OUT_DIR".into()))
        .or_else(|| {
            let o = options.outdir.clone();
            tag(o.map(|o| expand(o, b, None, Some(&confdir))), &|| {
                from_options("outdir")
            })
        })
        .or_else(|| tag(basedir.clone(), &|| "the base dir".into()))
        .ok_or_else(|| ConfigError("cannot tell the out dir: use --outdir or --basedir".into()))?;
    let (logdir, logdir_from) = tag(args.logdir.clone(), &|| "--logdir".into())
        .or_else(|| tag(env_path("REPREPRO_LOG_DIR"), &|| "REPREPRO_LOG_DIR".into()))
        .or_else(|| {
            let l = options.logdir.clone();
            tag(
                l.map(|l| expand(l, b, Some(&outdir), Some(&confdir))),
                &|| from_options("logdir"),
            )
        })
        .or_else(|| {
            tag(basedir.as_ref().map(|b| b.join("logs")), &|| {
                "BASEDIR/logs".into()
            })
        })
        .ok_or_else(|| ConfigError("cannot tell the log dir: use --logdir or --basedir".into()))?;
    // reprepro's defaults: distdir +o/dists, dbdir +b/db.
    let distdir = env_path("REPREPRO_DIST_DIR")
        .or_else(|| {
            options
                .distdir
                .clone()
                .map(|d| expand(d, b, Some(&outdir), Some(&confdir)))
        })
        .unwrap_or_else(|| outdir.join("dists"));
    let dbdir = options
        .dbdir
        .clone()
        .map(|d| expand(d, b, Some(&outdir), Some(&confdir)))
        .or_else(|| basedir.as_ref().map(|b| b.join("db")));
    let reprepro_env =
        env_path("REPREPRO_OUT_DIR").is_some() || env_path("REPREPRO_LOG_DIR").is_some();

    let conf_path = confdir.join("outsftphook.conf");
    let conf = match read_at(&conf_path)? {
        Some(text) => parse_conf(&conf_path, &text)?,
        None => {
            return Err(ConfigError(format!(
                "{} does not exist: it must name the server (servername HOST, or sftpcommand \
                 COMMAND) and usually targetdir; see outsftphook(1)",
                conf_path.display()
            )));
        }
    };

    let server = if let Some(words) = conf.sftpcommand {
        ServerCommand::Direct(words.into_iter().map(OsString::from).collect())
    } else if let Some(host) = conf.servername {
        ServerCommand::Ssh {
            ssh: conf
                .sshcommand
                .unwrap_or_else(|| vec!["ssh".into()])
                .into_iter()
                .map(OsString::from)
                .collect(),
            options: Vec::new(),
            user: conf.username.map(OsString::from),
            host: host.into(),
        }
    } else {
        return Err(ConfigError(format!(
            "{}: no server configured: add 'servername HOST' (or 'sftpcommand COMMAND')",
            conf_path.display()
        )));
    };
    let targetdir =
        match conf.targetdir.as_deref() {
            None => None,
            Some("/") => Some(RemotePath::new("/").expect("valid")),
            Some(t) => Some(RemotePath::new(t.trim_end_matches('/')).map_err(|e| {
                ConfigError(format!("{}: targetdir '{t}': {e}", conf_path.display()))
            })?),
        };

    Ok(Settings {
        basedir,
        outdir,
        distdir,
        logdir,
        outdir_from,
        logdir_from,
        confdir,
        dbdir,
        reprepro_env,
        server,
        targetdir,
        verbose: args.verbose.max(u8::from(conf.verbose == Some(true))),
        debug_sftp: args.debug_sftp.or(conf.debug).unwrap_or(0),
        autoretry: if args.no_autoretry {
            false
        } else {
            args.autoretry || conf.autoretry.unwrap_or(true)
        },
        keepdirectories: conf.keepdirectories.unwrap_or(false),
        posix_rename: conf.posixrename.unwrap_or(true),
        max_open_files: conf.maxopenfiles.flatten(),
        window: conf.window.flatten(),
        in_order: conf.inorder.unwrap_or(true),
        connections: conf.connections.unwrap_or(DEFAULT_CONNECTIONS),
        timeout: conf.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs),
        lock_timeout: Duration::from_secs(args.lock_timeout),
        symlinks: conf.symlinks.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
