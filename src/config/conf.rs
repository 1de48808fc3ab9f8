//! `outsftphook.conf`: one `key value` per line, `#` comments. Parses the text it is given
//! into a [`ConfFile`] of raw values, each field named as its key; defaults and precedence
//! are the caller's. Must not read files or look at the environment.

use std::path::Path;

use super::Symlinks;
use super::error::{ConfigError, Expected, LineProblem};

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
];

/// The highest `debug` level (as `--debug-sftp`): 2 already logs everything.
pub const MAX_DEBUG: u32 = 2;

/// The values read from `outsftphook.conf`, each `None` when its key is absent. For
/// `maxopenfiles` and `window`, `Some(None)` is `auto`.
#[derive(Debug, Default)]
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
}

/// Parses the text of `file`; the first bad line is the error. A key set twice is an
/// error naming both lines: which one was meant is the administrator's call, not ours.
pub(super) fn parse(file: &Path, text: &str) -> Result<ConfFile, ConfigError> {
    let mut conf = ConfFile::default();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((key, value)) = split(line) else {
            continue;
        };
        let at = |problem| ConfigError::Line {
            file: file.to_owned(),
            line: i + 1,
            problem,
        };
        conf.set(key, value).map_err(at)?;
        if let Some(&(key, first)) = seen.iter().find(|(k, _)| *k == key) {
            let key = CONF_KEYS.iter().find(|&&k| k == key).copied().unwrap_or("");
            return Err(at(LineProblem::Duplicate { key, first }));
        }
        seen.push((key, i + 1));
    }
    Ok(conf)
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
