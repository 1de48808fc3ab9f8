//! `outsftphook.conf`: one `key value` per line, `#` comments; a `mirror NAME` line starts
//! the section of one more mirror. Parses the text it is given into a [`Parsed`]: the keys
//! before the first `mirror` line and each section, as [`ConfFile`]s of raw values, each
//! field named as its key; inheritance, defaults and precedence are the caller's. Must not
//! read files or look at the environment.

use std::path::Path;

use super::error::{ConfigError, Expected, LineProblem};
use super::{Switch, Symlinks};

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
    "keepdone",
    "bwlimit",
    "keepdeleted",
    "tracefile",
    "switch",
    "sshpersist",
];

/// The keys that are the run's, not one mirror's: only before the first `mirror` line.
pub const GLOBAL_KEYS: &[&str] = &["debug", "verbose", "autoretry", "keepdone", "switch"];

/// The name the first mirror has when the keys before the first `mirror` line name no
/// `servername`.
pub const DEFAULT_MIRROR: &str = "default";

/// The longest `mirror` NAME.
pub const MAX_MIRROR_NAME: usize = 64;

/// The longest `tracefile` NAME: a host name's limit.
const MAX_TRACE_NAME: usize = 253;

/// The highest `debug` level (as `--debug-sftp`): 2 already logs everything.
pub const MAX_DEBUG: u32 = 2;

/// The values read from `outsftphook.conf`, each `None` when its key is absent. For
/// `maxopenfiles` and `window`, `Some(None)` is `auto`.
#[derive(Debug, Default, Clone)]
pub(super) struct ConfFile {
    pub servername: Option<String>,
    pub username: Option<String>,
    pub targetdir: Option<String>,
    pub debug: Option<u32>,
    pub verbose: Option<bool>,
    pub autoretry: Option<bool>,
    pub sshcommand: Option<Vec<String>>,
    pub sftpcommand: Option<Vec<String>>,
    pub maxopenfiles: Option<Option<usize>>,
    pub connections: Option<usize>,
    pub window: Option<Option<u64>>,
    pub inorder: Option<bool>,
    pub timeout: Option<u64>,
    pub keepdirectories: Option<bool>,
    pub posixrename: Option<bool>,
    pub symlinks: Option<Symlinks>,
    /// Days.
    pub keepdone: Option<u64>,
    /// Bytes per second; 0 is no limit.
    pub bwlimit: Option<u64>,
    pub keepdeleted: Option<std::time::Duration>,
    /// The NAME of `project/trace/NAME`.
    pub tracefile: Option<String>,
    pub switch: Option<Switch>,
    /// `Some(None)` is `no`.
    pub sshpersist: Option<Option<std::time::Duration>>,
    /// Each key set here and its line (from 1), for messages.
    pub lines: Vec<(&'static str, usize)>,
}

/// A whole `outsftphook.conf`: the first mirror's keys (the others' defaults) and the
/// sections, in the file's order.
#[derive(Debug)]
pub(super) struct Parsed {
    pub base: ConfFile,
    pub sections: Vec<Section>,
}

/// The keys of one `mirror NAME` section, as written (nothing inherited yet).
#[derive(Debug)]
pub(super) struct Section {
    pub name: String,
    /// The line of `mirror NAME`.
    pub line: usize,
    pub conf: ConfFile,
}

impl ConfFile {
    /// The line that set `key` here, if one did.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.iter().find(|(k, _)| *k == key).map(|&(_, l)| l)
    }

    /// A section's keys over the base's: each key the section does not set is the base's.
    /// `lines` stay the section's own, for its messages.
    pub fn over(self, base: &ConfFile) -> ConfFile {
        macro_rules! over {
            ($($field:ident),*) => {
                ConfFile {
                    $($field: self.$field.or_else(|| base.$field.clone()),)*
                    lines: self.lines,
                }
            };
        }
        over!(
            servername,
            username,
            targetdir,
            debug,
            verbose,
            autoretry,
            sshcommand,
            sftpcommand,
            maxopenfiles,
            connections,
            window,
            inorder,
            timeout,
            keepdirectories,
            posixrename,
            symlinks,
            keepdone,
            bwlimit,
            keepdeleted,
            tracefile,
            switch,
            sshpersist
        )
    }

    /// The first mirror's name: its `servername`, or [`DEFAULT_MIRROR`].
    pub fn first_mirror_name(&self) -> &str {
        self.servername.as_deref().unwrap_or(DEFAULT_MIRROR)
    }
}

/// Parses the text of `file`; the first bad line is the error. A key set twice in one
/// section is an error naming both lines: which one was meant is the administrator's call,
/// not ours. The same key in the base and a section is not: the section's is that mirror's.
pub(super) fn parse(file: &Path, text: &str) -> Result<Parsed, ConfigError> {
    let mut base = ConfFile::default();
    let mut sections: Vec<Section> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((key, value)) = split(line) else {
            continue;
        };
        let at = |problem| ConfigError::Line {
            file: file.to_owned(),
            line: i + 1,
            problem,
        };
        if key == "mirror" {
            let name = mirror_name(&base, &sections, value).map_err(at)?;
            sections.push(Section {
                name,
                line: i + 1,
                conf: ConfFile::default(),
            });
            continue;
        }
        let conf = match sections.last_mut() {
            None => &mut base,
            Some(section) => {
                if let Some(&key) = GLOBAL_KEYS.iter().find(|&&k| k == key) {
                    let mirror = section.name.clone();
                    return Err(at(LineProblem::GlobalInSection { key, mirror }));
                }
                &mut section.conf
            }
        };
        conf.record(key, value, i + 1).map_err(at)?;
    }
    Ok(Parsed { base, sections })
}

/// The NAME of a `mirror NAME` line, checked against the names before it.
fn mirror_name(base: &ConfFile, sections: &[Section], value: &str) -> Result<String, LineProblem> {
    if value.is_empty() {
        return Err(LineProblem::NoMirrorName);
    }
    if !is_name(value, MAX_MIRROR_NAME) {
        return Err(LineProblem::BadMirrorName(value.to_owned()));
    }
    if value == base.first_mirror_name() {
        return Err(LineProblem::FirstMirrorName {
            name: value.to_owned(),
            servername: base.servername.is_some(),
        });
    }
    if let Some(first) = sections.iter().find(|s| s.name == value) {
        return Err(LineProblem::DuplicateMirror {
            name: value.to_owned(),
            first: first.line,
        });
    }
    Ok(value.to_owned())
}

/// `[A-Za-z0-9][A-Za-z0-9._-]*`, at most `max` bytes: safe as a file name and in a journal
/// line, and never `.` or `..`.
fn is_name(s: &str, max: usize) -> bool {
    let mut bytes = s.bytes();
    s.len() <= max
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The key and value of a line; `None` for a blank line or a comment.
fn split(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(match line.split_once(char::is_whitespace) {
        Some((k, v)) => (k, v.trim()),
        None => (line, ""),
    })
}

impl ConfFile {
    /// Records the value of line `line`, refusing a key this section set before.
    fn record(&mut self, key: &str, value: &str, line: usize) -> Result<(), LineProblem> {
        self.set(key, value)?;
        if let Some(&(key, first)) = self.lines.iter().find(|(k, _)| *k == key) {
            return Err(LineProblem::Duplicate { key, first });
        }
        let key = CONF_KEYS.iter().find(|&&k| k == key).copied().unwrap_or("");
        self.lines.push((key, line));
        Ok(())
    }

    /// Records one line's value.
    fn set(&mut self, key: &str, value: &str) -> Result<(), LineProblem> {
        let Some(&key) = CONF_KEYS.iter().find(|&&k| k == key) else {
            return Err(LineProblem::UnknownKey(key.to_owned()));
        };
        if value.is_empty() {
            return Err(LineProblem::NoValue(key));
        }
        let bad = |expected| LineProblem::BadValue {
            key,
            value: value.to_owned(),
            expected,
        };
        let boolean = || parse_bool(value).ok_or_else(|| bad(Expected::YesNo));
        let number = |min: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| bad(Expected::WholeNumber { min }))
        };
        // Quoted as a shell would, without running one: `ssh -o "ConnectTimeout 5"`.
        let words = || {
            shell_words::split(value).map_err(|_| LineProblem::Unbalanced {
                key,
                value: value.to_owned(),
            })
        };
        let word = || {
            if value.contains(char::is_whitespace) {
                Err(bad(Expected::OneWord))
            } else {
                Ok(value.to_owned())
            }
        };
        match key {
            "servername" => self.servername = Some(word()?),
            "username" => self.username = Some(word()?),
            "targetdir" => self.targetdir = Some(value.to_owned()),
            "debug" => {
                let n = value.parse::<u32>().ok().filter(|n| *n <= MAX_DEBUG);
                self.debug = Some(n.ok_or_else(|| bad(Expected::Range { max: MAX_DEBUG }))?)
            }
            "verbose" => self.verbose = Some(boolean()?),
            "autoretry" => self.autoretry = Some(boolean()?),
            "keepdirectories" => self.keepdirectories = Some(boolean()?),
            "posixrename" => self.posixrename = Some(boolean()?),
            "sshcommand" => self.sshcommand = Some(words()?),
            "sftpcommand" => self.sftpcommand = Some(words()?),
            "maxopenfiles" if value == "auto" => self.maxopenfiles = Some(None),
            "maxopenfiles" => self.maxopenfiles = Some(Some(number(1)? as usize)),
            "connections" => self.connections = Some(number(1)? as usize),
            "inorder" => {
                self.inorder = Some(parse_inorder(value).ok_or_else(|| bad(Expected::AutoOrNo))?)
            }
            "window" if value == "auto" => self.window = Some(None),
            "window" => {
                self.window = Some(Some(
                    parse_size(value).ok_or_else(|| bad(Expected::AutoOrSize))?,
                ))
            }
            "timeout" => self.timeout = Some(number(1)?),
            "bwlimit" => self.bwlimit = Some(parse_rate(value).ok_or_else(|| bad(Expected::Rate))?),
            "keepdone" => self.keepdone = Some(number(0)?),
            "keepdeleted" => {
                self.keepdeleted =
                    Some(parse_duration(value).ok_or_else(|| bad(Expected::Duration))?)
            }
            "symlinks" => {
                self.symlinks = Some(parse_symlinks(value).ok_or_else(|| bad(Expected::Symlinks))?)
            }
            "tracefile" if is_name(value, MAX_TRACE_NAME) => {
                self.tracefile = Some(value.to_owned())
            }
            "tracefile" => return Err(bad(Expected::TraceName)),
            "switch" => {
                self.switch = Some(parse_switch(value).ok_or_else(|| bad(Expected::Switch))?)
            }
            "sshpersist" => {
                self.sshpersist = Some(parse_persist(value).ok_or_else(|| bad(Expected::Persist))?)
            }
            _ => unreachable!("{key} is in CONF_KEYS but has no field"),
        }
        Ok(())
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "1" | "true" => Some(true),
        "no" | "off" | "0" | "false" => Some(false),
        _ => None,
    }
}

/// `auto` relies on the order (true); any spelling of no turns it off.
fn parse_inorder(s: &str) -> Option<bool> {
    match (s, parse_bool(s)) {
        ("auto", _) => Some(true),
        (_, Some(false)) => Some(false),
        _ => None,
    }
}

fn parse_switch(s: &str) -> Option<Switch> {
    match s {
        "together" => Some(Switch::Together),
        "each" => Some(Switch::Each),
        _ => None,
    }
}

fn parse_symlinks(s: &str) -> Option<Symlinks> {
    match s {
        "auto" => Some(Symlinks::Auto),
        "yes" => Some(Symlinks::Yes),
        "copy" => Some(Symlinks::Copy),
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

/// A rate as rsync's `--bwlimit` takes it, in bytes per second: a bare number is KiB/s;
/// `K`, `M`, `G` (or `KiB`, `MiB`, `GiB`) are powers of 1024, `KB`, `MB`, `GB` powers of
/// 1000, `B` bytes; `0` is no limit.
/// `0`, or a whole number with a unit: `90s`, `30m`, `36h`, `2d`. A bare number is
/// refused: seconds or days would both be a guess.
pub(crate) fn parse_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    Some(std::time::Duration::from_secs(n.checked_mul(seconds)?))
}

/// `sshpersist`: `no` (or 0) keeps nothing; `yes` the default; else seconds, bare or with a
/// unit. At most a day: a connection kept longer is one nobody remembers.
fn parse_persist(s: &str) -> Option<Option<std::time::Duration>> {
    use std::time::Duration;
    let kept = match s.to_ascii_lowercase().as_str() {
        "no" | "0" => return Some(None),
        "yes" => super::DEFAULT_SSH_PERSIST,
        secs if secs.bytes().all(|b| b.is_ascii_digit()) => Duration::from_secs(secs.parse().ok()?),
        _ => parse_duration(s)?,
    };
    (kept <= Duration::from_secs(24 * 60 * 60)).then_some(Some(kept))
}

pub(crate) fn parse_rate(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let unit: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "b" => 1,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}
