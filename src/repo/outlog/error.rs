//! What can be wrong with an outlog: a [`Problem`] on a numbered line of a file
//! ([`ParseError`]), or the file cannot be read ([`OutlogError`]). Display gives the message
//! the user sees, `FILE:LINE: problem`.

use std::fmt;
use std::path::PathBuf;

use super::MAX_LINE_LEN;
use crate::relpath::{RelPath, RelPathError, SymlinkTargetError};

/// A malformed outlog: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: PathBuf,
    /// The line, counted from 1.
    pub line: usize,
    pub problem: Problem,
}

/// What is wrong with a line of an outlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    TooLong,
    /// The file ends inside a line that is not a torn journal line.
    NoFinalNewline,
    NotUtf8,
    EmptyKeyword,
    /// Field `field` (counted from 1 after the keyword) is empty.
    EmptyField {
        keyword: String,
        field: usize,
    },
    /// The keyword takes one of `want` fields.
    FieldCount {
        keyword: &'static str,
        want: &'static [usize],
        found: usize,
    },
    /// `what` (a pool file, a distribution directory, ...) is not a [`RelPath`].
    BadPath {
        what: &'static str,
        path: String,
        error: RelPathError,
    },
    /// `what` is not below the top directory `top` (`pool`, `dists`).
    NotBelow {
        what: &'static str,
        path: String,
        top: &'static str,
    },
    /// A BEGIN inside the section `open`.
    NestedBegin {
        keyword: &'static str,
        open: RelPath,
    },
    /// An END for `dir` while the section `open` is open.
    EndMismatch {
        keyword: &'static str,
        dir: RelPath,
        open: RelPath,
    },
    EndWithoutBegin(&'static str),
    /// A DIST* line outside any section.
    OutsideSection(&'static str),
    /// A DIST* line naming `dir` inside the section `open`.
    OtherSection {
        keyword: &'static str,
        dir: RelPath,
        open: RelPath,
    },
    /// The file ends inside the section of `dir` (reported at its BEGIN).
    UnclosedSection(RelPath),
    NulInLocalName,
    BadSymlinkTarget(SymlinkTargetError),
    UnknownDoneMessage(String),
    UnknownKeyword(String),
}

/// Why an outlog could not be parsed: its content, or reading it.
#[derive(Debug)]
pub enum OutlogError {
    Parse(ParseError),
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.problem)
    }
}

impl std::error::Error for ParseError {}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TooLong => write!(f, "line is longer than {MAX_LINE_LEN} bytes"),
            Problem::NoFinalNewline => {
                f.write_str("the last line does not end in a newline (truncated file?)")
            }
            Problem::NotUtf8 => f.write_str("line is not valid UTF-8"),
            Problem::EmptyKeyword => f.write_str("empty line or keyword"),
            Problem::EmptyField { keyword, field } => {
                write!(f, "{keyword}: field {field} is empty")
            }
            Problem::FieldCount {
                keyword,
                want,
                found,
            } => {
                let want: Vec<String> = want.iter().map(usize::to_string).collect();
                let want = want.join(" or ");
                write!(f, "{keyword} takes {want} fields, found {found}")
            }
            Problem::BadPath { what, path, error } => write!(f, "bad {what} {path:?}: {error}"),
            Problem::NotBelow { what, path, top } => {
                write!(f, "bad {what} {path:?}: not below {top}/")
            }
            Problem::NestedBegin { keyword, open } => {
                write!(f, "{keyword} inside the section of {open}")
            }
            Problem::EndMismatch { keyword, dir, open } => {
                write!(f, "{keyword} for {dir} does not match the BEGIN for {open}")
            }
            Problem::EndWithoutBegin(keyword) => write!(f, "{keyword} without BEGIN"),
            Problem::OutsideSection(keyword) => write!(f, "{keyword} outside BEGIN/END"),
            Problem::OtherSection { keyword, dir, open } => {
                write!(f, "{keyword} names {dir}, but the open section is {open}")
            }
            Problem::UnclosedSection(dir) => {
                write!(f, "BEGIN for {dir} has no matching END (truncated file?)")
            }
            Problem::NulInLocalName => f.write_str("local file name contains a NUL byte"),
            Problem::BadSymlinkTarget(e) => e.fmt(f),
            Problem::UnknownDoneMessage(m) => write!(f, "unknown DONE message {m:?}"),
            Problem::UnknownKeyword(k) => write!(f, "unknown keyword {k:?}"),
        }
    }
}

impl fmt::Display for OutlogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutlogError::Parse(e) => e.fmt(f),
            OutlogError::Read { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
        }
    }
}

// No `source()`: the message already says what the cause said.
impl std::error::Error for OutlogError {}

impl From<ParseError> for OutlogError {
    fn from(e: ParseError) -> Self {
        OutlogError::Parse(e)
    }
}
