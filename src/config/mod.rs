//! Flags + environment + `outsftphook.conf` + reprepro's `conf/options` -> one resolved
//! [`Settings`] per mirror. Precedence: flags, then the environment, then
//! `outsftphook.conf` (a `mirror NAME` section's keys over the keys before the first
//! `mirror` line), then `options`.
//!
//! Pure: the environment and the file reader are passed in ([`resolve_mirrors`]); nothing here
//! opens a file, reads the process's environment or prints. Each setting keeps its conf
//! key's name down to the engine (`inorder` -> [`Settings::in_order`] ->
//! [`EngineConfig::in_order`](crate::engine::EngineConfig)). [`conf`](self) parses
//! `outsftphook.conf`, `options` reprepro's file, `error` says what is wrong.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Args;
use crate::engine::{DEFAULT_MAX_OPEN_FILES, EngineConfig};
use crate::interrupt::Interrupt;
use crate::remote_path::{RemotePath, RemotePathError};
use crate::transport::ServerCommand;

mod conf;
mod error;
mod options;

pub use conf::CONF_KEYS;
pub(crate) use conf::{parse_duration, parse_rate};
pub use error::ConfigError;
pub(crate) use error::DURATION_WORDS;
use options::Options;

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
    /// `-v` (counted), at least 1 with `verbose yes`.
    pub verbose: u8,
    /// `-q`: no progress line, and no summary on success.
    pub quiet: bool,
    /// `--bwlimit` or `bwlimit`: bytes per second written to the servers, over all
    /// connections; `None` for no limit.
    pub bwlimit: Option<u64>,
    /// `--timeline`: a line per phase of a push on stderr.
    pub timeline: bool,
    /// `--debug-sftp N`, or the conf file's `debug N`.
    pub debug_sftp: u32,
    /// `--autoretry`/`--no-autoretry`, or `autoretry`: process older unprocessed outlogs first.
    pub autoretry: bool,
    /// `keepdirectories`: keep pool directories that became empty on the remote.
    pub keepdirectories: bool,
    /// `posixrename`: replace files with `posix-rename@openssh.com` where offered.
    pub posix_rename: bool,
    /// `maxopenfiles`: remote files open at once per connection; `None` (`auto`): chosen from
    /// the measured round trip.
    pub max_open_files: Option<usize>,
    /// `window`: WRITE bytes awaiting a reply per connection; `None` (`auto`): chosen from
    /// the round trip.
    pub window: Option<u64>,
    /// `inorder`: rely on OpenSSH's server carrying out requests in the order sent
    /// (`inorder auto`).
    pub in_order: bool,
    /// `sshpersist`: how long the ssh connection stays for the next run once this one is
    /// done; `None` (`no`) keeps none. Only for `servername` (ssh), not `sftpcommand`.
    pub ssh_persist: Option<Duration>,
    /// `connections`: the most ssh connections to use for uploads.
    pub connections: usize,
    /// `timeout`: give up when nothing moves for this long (the engine's stall timeout).
    pub timeout: Duration,
    /// `--lock-timeout`.
    pub lock_timeout: Duration,
    /// How links are made on the remote (`symlinks auto|yes|copy`).
    pub symlinks: Symlinks,
    /// `keepdone DAYS`: at the end of a hook run, remove `.done` logs older than this;
    /// `None` (the default) keeps them for ever, as reprepro's own hook did.
    pub keep_done: Option<Duration>,
    /// `--keepdeleted` or `keepdeleted`: how long a file the repository no longer
    /// references stays on the mirror ([`DEFAULT_KEEP_DELETED`]); zero deletes at once.
    pub keep_deleted: Duration,
    /// Which mirror of `outsftphook.conf` these settings are for.
    pub mirror: MirrorName,
    /// `tracefile NAME`: after a complete push, write ftpsync's trace file
    /// `project/trace/NAME` on this mirror; `None` (the default) writes none.
    pub tracefile: Option<String>,
    /// `switch`: when the mirrors of one run finalise a distribution (global).
    pub switch: Switch,
    /// How many mirrors `outsftphook.conf` has, before `--only` picks some: 1 without
    /// `mirror` lines.
    pub mirrors_configured: usize,
}

/// The name of one mirror of `outsftphook.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorName {
    /// As `--only` takes it: the first mirror's `servername` (or `default`), else the NAME
    /// of its `mirror NAME` line.
    pub name: String,
    /// What tells this mirror's lines apart in the journal: `None` for the first mirror,
    /// whose journal stays the reference hook's format; `Some(NAME)` for `mirror NAME`.
    pub journal_tag: Option<String>,
}

/// When each mirror of a run finalises a distribution: the `switch` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Switch {
    /// Renames and `Release`/`InRelease` go to every mirror still reachable once all of
    /// them have the new files, so that none is new while another is old for longer than
    /// the switch.
    #[default]
    Together,
    /// Each mirror finalises as soon as it has the new files.
    Each,
}

/// How long deletions are held back by default: as long as Debian's archive keeps files
/// nothing references any more (dak's stay of execution), more than the longest gap
/// between two runs of apt's daily update timer (about 24 h), so a client that updated on
/// its last timer run still finds every file its indexes name.
pub const DEFAULT_KEEP_DELETED: Duration = Duration::from_secs(36 * 60 * 60);

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
    /// What this mirror's journal lines and record of held deletions carry: `None` for the
    /// first mirror (the reference hook's `DONE` lines), NAME for `mirror NAME`.
    pub fn journal_tag(&self) -> Option<&str> {
        self.mirror.journal_tag.as_deref()
    }

    /// The engine's settings for a run over `connections` connections.
    pub fn engine_config(&self, connections: usize, interrupt: &Interrupt) -> EngineConfig {
        EngineConfig {
            connections,
            max_open_files: self.max_open_files.unwrap_or(DEFAULT_MAX_OPEN_FILES),
            auto_open_files: self.max_open_files.is_none(),
            window: self.window.unwrap_or(EngineConfig::default().window),
            auto_window: self.window.is_none(),
            in_order: self.in_order,
            targetdir: self.targetdir.clone(),
            timeout: self.timeout,
            interrupt: interrupt.clone(),
            posix_rename: self.posix_rename,
            bwlimit: self.bwlimit,
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
                return Err(ConfigError::MissingDir {
                    what,
                    dir: dir.clone(),
                    from: from.clone(),
                    exists: dir.exists(),
                });
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

/// Default for the most connections: 10 files of 40 MB at 50 ms took 3.0 s with 8 (channels
/// on the kept connection) against 4.0 s with 4 and 3.2 s with 6; 3.3 s against 4.2 s as
/// connections of their own (README).
pub const DEFAULT_CONNECTIONS: usize = 8;

/// Default of `sshpersist`: how long the ssh connection stays for the next run. reprepro
/// runs the hook once per change, and changes come in bursts (a script's includes, an
/// upload queue's processincoming): a minute covers a burst, and a master idle that long
/// costs the client one ssh process (3.7 MB RSS) and the server one sshd session. See the README.
pub const DEFAULT_SSH_PERSIST: Duration = Duration::from_secs(60);

/// Default stall timeout: long enough for a slow link, short enough that reprepro is not held
/// for ever by a dead one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the environment comes from (the process's, or a test's).
pub trait Env {
    fn var(&self, name: &str) -> Option<OsString>;
}

impl<F: Fn(&str) -> Option<OsString>> Env for F {
    fn var(&self, name: &str) -> Option<OsString> {
        self(name)
    }
}

/// Reads a file: its content, or `None` if it does not exist.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Option<String>>;

/// Resolves the settings of the first mirror `--only` picks (of the first mirror without
/// it); `read` returns a file's content, or `None` if it does not exist.
#[cfg(test)]
pub fn resolve(args: &Args, env: &dyn Env, read: ReadFile<'_>) -> Result<Settings, ConfigError> {
    let mirrors = resolve_mirrors(args, env, read)?;
    // resolve_mirrors returns at least one: the first mirror always exists, and --only
    // takes at least one name, each of which must be known.
    Ok(mirrors.into_iter().next().expect("at least one mirror"))
}

/// Resolves the settings of every mirror of `outsftphook.conf`, in its order, those that
/// `--only` names when it is given; each is complete (the global keys copied into each).
/// Every mirror is checked, also those `--only` leaves out.
pub fn resolve_mirrors(
    args: &Args,
    env: &dyn Env,
    read: ReadFile<'_>,
) -> Result<Vec<Settings>, ConfigError> {
    let dirs = Dirs::resolve(args, env, read)?;
    let conf_path = dirs.confdir.join("outsftphook.conf");
    let Some(text) = read_at(read, &conf_path)? else {
        return Err(ConfigError::NoConfFile(conf_path));
    };
    let parsed = conf::parse(&conf_path, &text)?;
    let configured = 1 + parsed.sections.len();
    let mut mirrors = vec![Mirror::first(&conf_path, parsed.base.clone())?];
    for section in parsed.sections {
        mirrors.push(Mirror::section(&conf_path, &parsed.base, section)?);
    }
    if let Some(only) = &args.only {
        if let Some(name) = only
            .iter()
            .find(|n| !mirrors.iter().any(|m| m.name.name == **n))
        {
            return Err(ConfigError::UnknownMirror {
                file: conf_path,
                name: name.clone(),
                known: mirrors.into_iter().map(|m| m.name.name).collect(),
            });
        }
        mirrors.retain(|m| only.contains(&m.name.name));
    }
    Ok(mirrors
        .into_iter()
        .map(|m| settings(args, dirs.clone(), m, configured))
        .collect())
}

/// One mirror's keys, inheritance done, with its server and target dir checked.
struct Mirror {
    name: MirrorName,
    conf: conf::ConfFile,
    server: ServerCommand,
    targetdir: Option<RemotePath>,
}

impl Mirror {
    /// The keys before the first `mirror` line.
    fn first(conf_path: &Path, conf: conf::ConfFile) -> Result<Mirror, ConfigError> {
        let server = server(conf_path, &conf)?;
        let targetdir = targetdir(conf_path, conf.targetdir.as_deref())?;
        let name = MirrorName {
            name: conf.first_mirror_name().to_owned(),
            journal_tag: None,
        };
        Ok(Mirror {
            name,
            conf,
            server,
            targetdir,
        })
    }

    /// A `mirror NAME` section over the base. A section that sets `sftpcommand` or
    /// `servername` picks that transport for itself: an inherited one of the other kind
    /// would otherwise win or be mixed in, and that mirror would be another host.
    fn section(
        conf_path: &Path,
        base: &conf::ConfFile,
        section: conf::Section,
    ) -> Result<Mirror, ConfigError> {
        let own = &section.conf;
        let mut conf = own.clone().over(base);
        if own.sftpcommand.is_some() {
            conf.servername.clone_from(&own.servername);
        } else if own.servername.is_some() {
            conf.sftpcommand = None;
        }
        let server = server(conf_path, &conf)?;
        let targetdir = match own.line_of("targetdir") {
            None => targetdir(conf_path, conf.targetdir.as_deref())?,
            Some(line) => {
                let value = own.targetdir.as_deref();
                remote_dir(value).map_err(|error| ConfigError::Line {
                    file: conf_path.to_owned(),
                    line,
                    problem: error::LineProblem::Targetdir {
                        value: value.unwrap_or_default().to_owned(),
                        error,
                    },
                })?
            }
        };
        let name = MirrorName {
            name: section.name.clone(),
            journal_tag: Some(section.name),
        };
        Ok(Mirror {
            name,
            conf,
            server,
            targetdir,
        })
    }
}

fn read_at(read: ReadFile<'_>, path: &Path) -> Result<Option<String>, ConfigError> {
    read(path).map_err(|error| ConfigError::Unreadable {
        path: path.to_owned(),
        error,
    })
}

/// A variable of the environment as a path; empty counts as unset.
fn env_path(env: &dyn Env, name: &str) -> Option<PathBuf> {
    env.var(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The local directories of a run, and where the out and log dirs came from.
#[derive(Clone)]
struct Dirs {
    basedir: Option<PathBuf>,
    confdir: PathBuf,
    outdir: PathBuf,
    outdir_from: String,
    logdir: PathBuf,
    logdir_from: String,
    distdir: PathBuf,
    dbdir: Option<PathBuf>,
    reprepro_env: bool,
}

/// The first candidate that is set, with the name of where it came from.
fn first_set(candidates: [(Option<PathBuf>, String); 4]) -> Option<(PathBuf, String)> {
    candidates
        .into_iter()
        .find_map(|(path, from)| Some((path?, from)))
}

impl Dirs {
    /// Flags, then the environment, then `conf/options` (found through the flags or the
    /// environment), then the base dir.
    fn resolve(args: &Args, env: &dyn Env, read: ReadFile<'_>) -> Result<Dirs, ConfigError> {
        let sources = Sources::read(args, env, read)?;
        let (outdir, outdir_from) = sources.outdir()?;
        let (logdir, logdir_from) = sources.logdir(&outdir)?;
        // reprepro's defaults: distdir +o/dists, dbdir +b/db.
        let distdir = env_path(env, "REPREPRO_DIST_DIR")
            .or_else(|| sources.expand(&sources.options.distdir, Some(&outdir)))
            .unwrap_or_else(|| outdir.join("dists"));
        let dbdir = sources
            .expand(&sources.options.dbdir, Some(&outdir))
            .or_else(|| sources.basedir.as_ref().map(|b| b.join("db")));
        Ok(Dirs {
            reprepro_env: reprepro_env(env),
            basedir: sources.basedir,
            confdir: sources.confdir,
            outdir,
            outdir_from,
            logdir,
            logdir_from,
            distdir,
            dbdir,
        })
    }
}

/// What tells the directories: the flags, the environment, and `conf/options`.
struct Sources<'a> {
    args: &'a Args,
    env: &'a dyn Env,
    options: Options,
    options_file: PathBuf,
    basedir: Option<PathBuf>,
    confdir: PathBuf,
}

impl<'a> Sources<'a> {
    /// Finds `conf/options` through the flags or the environment and reads it; it may name
    /// the base and conf dirs in turn.
    fn read(args: &'a Args, env: &'a dyn Env, read: ReadFile<'_>) -> Result<Self, ConfigError> {
        let env_confdir =
            env_path(env, "REPREPRO_CONFIG_DIR").or_else(|| env_path(env, "REPREPRO_CONF_DIR"));
        let given_basedir = args
            .basedir
            .clone()
            .or_else(|| env_path(env, "REPREPRO_BASE_DIR"));
        // Where conf/options is looked for: the conf dir as known before reading it.
        let preconfdir = args
            .confdir
            .clone()
            .or_else(|| env_confdir.clone())
            .or_else(|| given_basedir.as_ref().map(|b| b.join("conf")))
            .ok_or(ConfigError::NoRepository)?;
        let options_file = preconfdir.join("options");
        let options = read_at(read, &options_file)?
            .map(|text| options::parse(&text))
            .unwrap_or_default();
        let basedir = given_basedir.or_else(|| options.basedir.clone());
        let confdir = args
            .confdir
            .clone()
            .or(env_confdir)
            .or_else(|| {
                let c = options.confdir.clone();
                c.map(|c| options::expand(c, basedir.as_deref(), None, None))
            })
            .unwrap_or(preconfdir);
        Ok(Sources {
            args,
            env,
            options,
            options_file,
            basedir,
            confdir,
        })
    }

    /// A directory of `conf/options`, its `+b/`, `+o/`, `+c/` expanded.
    fn expand(&self, path: &Option<PathBuf>, outdir: Option<&Path>) -> Option<PathBuf> {
        let (b, c) = (self.basedir.as_deref(), Some(self.confdir.as_path()));
        path.clone().map(|p| options::expand(p, b, outdir, c))
    }

    /// Where a line of `conf/options` came from, for messages.
    fn in_options(&self, key: &str) -> String {
        format!("'{key}' in {}", self.options_file.display())
    }

    fn outdir(&self) -> Result<(PathBuf, String), ConfigError> {
        first_set([
            (self.args.outdir.clone(), "--outdir".into()),
            (
                env_path(self.env, "REPREPRO_OUT_DIR"),
                "REPREPRO_OUT_DIR".into(),
            ),
            (
                self.expand(&self.options.outdir, None),
                self.in_options("outdir"),
            ),
            (self.basedir.clone(), "the base dir".into()),
        ])
        .ok_or(ConfigError::NoDir { what: "out" })
    }

    fn logdir(&self, outdir: &Path) -> Result<(PathBuf, String), ConfigError> {
        first_set([
            (self.args.logdir.clone(), "--logdir".into()),
            (
                env_path(self.env, "REPREPRO_LOG_DIR"),
                "REPREPRO_LOG_DIR".into(),
            ),
            (
                self.expand(&self.options.logdir, Some(outdir)),
                self.in_options("logdir"),
            ),
            (
                self.basedir.as_ref().map(|b| b.join("logs")),
                "BASEDIR/logs".into(),
            ),
        ])
        .ok_or(ConfigError::NoDir { what: "log" })
    }
}

/// Only reprepro sets these, when it calls its hooks.
fn reprepro_env(env: &dyn Env) -> bool {
    env_path(env, "REPREPRO_OUT_DIR").is_some() || env_path(env, "REPREPRO_LOG_DIR").is_some()
}

/// `sftpcommand`, or else ssh (`sshcommand`) to `servername` as `username`.
fn server(conf_path: &Path, conf: &conf::ConfFile) -> Result<ServerCommand, ConfigError> {
    let words = |w: &[String]| w.iter().map(OsString::from).collect();
    if let Some(command) = &conf.sftpcommand {
        return Ok(ServerCommand::Direct(words(command)));
    }
    let Some(host) = &conf.servername else {
        return Err(ConfigError::NoServer(conf_path.to_owned()));
    };
    Ok(ServerCommand::Ssh {
        ssh: conf
            .sshcommand
            .as_deref()
            .map_or_else(|| vec!["ssh".into()], words),
        options: Vec::new(),
        user: conf.username.as_ref().map(OsString::from),
        host: host.into(),
        // Where its socket may live is found out when connecting: see `Settings::ssh_persist`.
        kept: None,
    })
}

/// `targetdir`, without a trailing slash (but `/` stays `/`).
fn targetdir(conf_path: &Path, value: Option<&str>) -> Result<Option<RemotePath>, ConfigError> {
    remote_dir(value).map_err(|error| ConfigError::BadTargetdir {
        file: conf_path.to_owned(),
        value: value.unwrap_or_default().to_owned(),
        error,
    })
}

/// A `targetdir` value as a remote path, without a trailing slash (but `/` stays `/`).
fn remote_dir(value: Option<&str>) -> Result<Option<RemotePath>, RemotePathError> {
    let path = match value {
        None => return Ok(None),
        Some("/") => "/",
        Some(t) => t.trim_end_matches('/'),
    };
    RemotePath::new(path).map(Some)
}

/// Flags over `outsftphook.conf` over the defaults.
fn settings(args: &Args, dirs: Dirs, mirror: Mirror, configured: usize) -> Settings {
    let Mirror {
        name,
        conf,
        server,
        targetdir,
    } = mirror;
    Settings {
        basedir: dirs.basedir,
        outdir: dirs.outdir,
        distdir: dirs.distdir,
        logdir: dirs.logdir,
        outdir_from: dirs.outdir_from,
        logdir_from: dirs.logdir_from,
        confdir: dirs.confdir,
        dbdir: dirs.dbdir,
        reprepro_env: dirs.reprepro_env,
        server,
        targetdir,
        verbose: args.verbose.max(u8::from(conf.verbose == Some(true))),
        quiet: args.quiet,
        bwlimit: args.bwlimit.or(conf.bwlimit).filter(|&rate| rate > 0),
        debug_sftp: args.debug_sftp.or(conf.debug).unwrap_or(0),
        timeline: args.timeline,
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
        ssh_persist: conf.sshpersist.unwrap_or(Some(DEFAULT_SSH_PERSIST)),
        timeout: conf.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs),
        lock_timeout: Duration::from_secs(args.lock_timeout),
        symlinks: conf.symlinks.unwrap_or_default(),
        keep_deleted: args
            .keepdeleted
            .or(conf.keepdeleted)
            .unwrap_or(DEFAULT_KEEP_DELETED),
        keep_done: conf
            .keepdone
            .map(|days| Duration::from_secs(days.saturating_mul(24 * 60 * 60))),
        mirror: name,
        tracefile: conf.tracefile,
        switch: conf.switch.unwrap_or_default(),
        mirrors_configured: configured,
    }
}

#[cfg(test)]
mod tests;
