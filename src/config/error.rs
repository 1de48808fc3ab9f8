//! What can be wrong with the configuration: one variant per problem, each naming where it
//! is. Display gives the one-line message the user sees; nothing here reads or prints.

use std::fmt;
use std::path::PathBuf;

use super::CONF_KEYS;
use super::conf::MAX_MIRROR_NAME;
use crate::remote_path::RemotePathError;

/// A configuration problem, found before anything is sent.
#[derive(Debug)]
pub enum ConfigError {
    /// No flag, environment variable or `conf/options` line tells where the repository is.
    NoRepository,
    /// Nothing tells where the out dir (`what` "out") or the log dir ("log") is.
    NoDir { what: &'static str },
    /// A configuration file is there but cannot be read.
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `outsftphook.conf` does not exist.
    NoConfFile(PathBuf),
    /// A line of `outsftphook.conf` is wrong (`line` counts from 1).
    Line {
        file: PathBuf,
        line: usize,
        problem: LineProblem,
    },
    /// `outsftphook.conf` names no server.
    NoServer(PathBuf),
    /// `targetdir` is not a remote path.
    BadTargetdir {
        file: PathBuf,
        value: String,
        error: RemotePathError,
    },
    /// `--only` names a mirror `outsftphook.conf` does not have; `known` are the names it
    /// has, in its order.
    UnknownMirror {
        file: PathBuf,
        name: String,
        known: Vec<String>,
    },
    /// The out or log dir (`what`) is not there; `from` names the setting it came from.
    MissingDir {
        what: &'static str,
        dir: PathBuf,
        from: String,
        exists: bool,
    },
}

/// What is wrong with one line of `outsftphook.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    UnknownKey(String),
    /// A known key without a value.
    NoValue(&'static str),
    /// A known key whose value is not one it takes.
    BadValue {
        key: &'static str,
        value: String,
        expected: Expected,
    },
    /// `sshcommand` or `sftpcommand` with a quote that is not closed.
    Unbalanced {
        key: &'static str,
        value: String,
    },
    /// A key set again; `first` is the line that set it first.
    Duplicate {
        key: &'static str,
        first: usize,
    },
    /// A global key (debug, verbose, ...) in the section of `mirror`.
    GlobalInSection {
        key: &'static str,
        mirror: String,
    },
    /// `mirror` without a NAME.
    NoMirrorName,
    /// A `mirror` NAME that is not `[A-Za-z0-9][A-Za-z0-9._-]*` of at most 64 characters.
    BadMirrorName(String),
    /// A `mirror` NAME that is the first mirror's (its `servername`, or `default` when
    /// `servername` is false).
    FirstMirrorName {
        name: String,
        servername: bool,
    },
    /// A `mirror` NAME given before, on line `first`.
    DuplicateMirror {
        name: String,
        first: usize,
    },
    /// A section's `targetdir` that is not a remote path.
    Targetdir {
        value: String,
        error: RemotePathError,
    },
}

/// The values a key takes, for [`LineProblem::BadValue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    YesNo,
    WholeNumber {
        min: u64,
    },
    /// `inorder`.
    AutoOrNo,
    /// `window`.
    AutoOrSize,
    /// `symlinks`.
    Symlinks,
    /// `bwlimit`.
    Rate,
    /// `keepdeleted`.
    Duration,
    /// `servername`, `username`: no white space.
    OneWord,
    /// `switch`.
    Switch,
    /// `sshpersist`.
    Persist,
    /// `tracefile`: a name, no slash.
    TraceName,
    /// `debug`: 0 to `max`.
    Range {
        max: u32,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoRepository => f.write_str(
                "no repository given: use --basedir DIR (or --confdir, --outdir and --logdir), \
                 or let reprepro run outsftphook as its outhook",
            ),
            ConfigError::NoDir { what } => {
                write!(
                    f,
                    "cannot tell the {what} dir: use --{what}dir or --basedir"
                )
            }
            ConfigError::Unreadable { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            ConfigError::NoConfFile(path) => write!(
                f,
                "{} does not exist: it must name the server (servername HOST, or sftpcommand \
                 COMMAND) and usually targetdir; see outsftphook(1)",
                path.display()
            ),
            ConfigError::Line {
                file,
                line,
                problem,
            } => write!(f, "{}:{line}: {problem}", file.display()),
            ConfigError::NoServer(path) => write!(
                f,
                "{}: no server configured: add 'servername HOST' (or 'sftpcommand COMMAND')",
                path.display()
            ),
            ConfigError::BadTargetdir { file, value, error } => {
                write!(f, "{}: targetdir '{value}': {error}", file.display())
            }
            ConfigError::UnknownMirror { file, name, known } => write!(
                f,
                "--only {name}: {} has no mirror of that name (it has: {}; the first is named \
                 by its servername, or {}): give one of those",
                file.display(),
                known.join(", "),
                super::conf::DEFAULT_MIRROR,
            ),
            ConfigError::MissingDir {
                what,
                dir,
                from,
                exists,
            } => {
                let problem = if *exists {
                    "is not a directory"
                } else {
                    "does not exist"
                };
                write!(
                    f,
                    "the {what} dir {} (from {from}) {problem}: check that setting (and \
                     --basedir); nothing was sent",
                    dir.display()
                )
            }
        }
    }
}

// No `source()`: each message already says what its cause said, and a chain would repeat it.
impl std::error::Error for ConfigError {}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::UnknownKey(key) => {
                write!(f, "unknown key '{key}' (known: {})", CONF_KEYS.join(", "))
            }
            LineProblem::NoValue(key) => write!(f, "'{key}' needs a value"),
            LineProblem::BadValue {
                key,
                value,
                expected,
            } => write!(f, "'{key}' takes {expected}, not '{value}'"),
            LineProblem::Unbalanced { key, value } => write!(
                f,
                "'{key}' has a quote that is not closed: '{value}' (quote words as a shell \
                 would: \"...\" or '...', \\ before a lone quote)"
            ),
            LineProblem::Duplicate { key, first } => write!(
                f,
                "'{key}' is set again (first on line {first}): keep one of the two lines"
            ),
            LineProblem::GlobalInSection { key, mirror } => write!(
                f,
                "'{key}' is global, not one mirror's (this line is in the section of mirror \
                 '{mirror}'): move it above the first 'mirror' line"
            ),
            LineProblem::NoMirrorName => f.write_str(
                "'mirror' needs a name: 'mirror NAME' starts the settings of one more mirror",
            ),
            LineProblem::BadMirrorName(name) => write!(
                f,
                "'mirror' takes a name of letters, digits, '.', '_' and '-' (a letter or digit \
                 first, at most {MAX_MIRROR_NAME}), not '{name}'"
            ),
            LineProblem::FirstMirrorName { name, servername } => {
                let why = if *servername {
                    "its servername"
                } else {
                    "no servername is set before the first 'mirror' line"
                };
                write!(
                    f,
                    "mirror '{name}' has the first mirror's name ({why}): give this one another \
                     name"
                )
            }
            LineProblem::DuplicateMirror { name, first } => write!(
                f,
                "mirror '{name}' is named again (first on line {first}): give each mirror its \
                 own name"
            ),
            LineProblem::Targetdir { value, error } => write!(f, "targetdir '{value}': {error}"),
        }
    }
}

/// What a duration looks like, for messages.
pub(crate) const DURATION_WORDS: &str = "0, or a whole number with a unit: 90s, 30m, 36h, 2d";

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::YesNo => f.write_str("yes/no (or on/off, true/false, 1/0)"),
            Expected::WholeNumber { min } => write!(f, "a whole number >= {min}"),
            Expected::AutoOrNo => f.write_str("auto or no"),
            Expected::AutoOrSize => f.write_str("'auto' or a size of at least 64K (like 512K, 4M)"),
            Expected::Symlinks => f.write_str("auto, yes or copy"),
            Expected::Rate => f.write_str("a rate like 500 (KiB/s), 500K, 2M or 1MB; 0 for none"),
            Expected::Duration => f.write_str(DURATION_WORDS),
            Expected::OneWord => f.write_str("one word, without spaces"),
            Expected::Switch => f.write_str("together or each"),
            Expected::Persist => f.write_str(
                "no, or how long the connection stays after a run: a whole number of seconds \
                 or one with a unit (90s, 10m, 1h)",
            ),
            Expected::TraceName => write!(
                f,
                "a file name of letters, digits, '.', '_' and '-' (the NAME of project/trace/NAME)"
            ),
            Expected::Range { max } => write!(f, "a level from 0 to {max}"),
        }
    }
}
