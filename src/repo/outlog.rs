//! Parsing reprepro's `.outlog` files, strictly: one [`Line`] variant per keyword, every path
//! validated, the BEGIN/END structure checked, a torn last journal line recognised. An error
//! names the file and the line ([`ParseError`]).
//!
//! `line` turns one line into a [`Line`], `error` says what can be wrong. Reading the file
//! ([`parse_file`]) is the only I/O here; it must not decide what to do with the lines (that
//! is [`crate::plan`]'s) nor write to the log (the journal's).

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use crate::relpath::RelPath;

mod error;
mod line;

pub use error::{OutlogError, ParseError, Problem};
use line::Parser;

/// The longest line we accept; reprepro's lines are paths, far shorter.
pub const MAX_LINE_LEN: usize = 16 * 1024;

/// Whether a section is a distribution or a snapshot of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Distribution,
    Snapshot,
}

/// The fields of a BEGIN-/END- line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: SectionKind,
    pub codename: String,
    pub dir: RelPath,
    /// The suite of a distribution (optional) or the name of a snapshot.
    pub extra: Option<String>,
}

/// The words the journal uses, as the reference hook writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DoneMessage {
    Done,
    Deleted,
    AlreadyDeleted,
    SymlinkDone,
    Obsoleted,
    /// Uploaded as `PATH.new`, not yet renamed into place.
    AsDotNew,
    /// A deletion held back (`keepdeleted`): recorded in the log dir's record of held
    /// deletions, carried out from there once due. (The reference hook takes it as done.)
    HeldBack,
}

impl DoneMessage {
    pub fn as_str(self) -> &'static str {
        match self {
            DoneMessage::Done => "done",
            DoneMessage::Deleted => "deleted",
            DoneMessage::AlreadyDeleted => "already deleted",
            DoneMessage::SymlinkDone => "symlink done",
            DoneMessage::Obsoleted => "obsoleted",
            DoneMessage::AsDotNew => "asdotnew",
            DoneMessage::HeldBack => "held back",
        }
    }

    fn parse(s: &str) -> Option<DoneMessage> {
        Some(match s {
            "done" => DoneMessage::Done,
            "deleted" => DoneMessage::Deleted,
            "already deleted" => DoneMessage::AlreadyDeleted,
            "symlink done" => DoneMessage::SymlinkDone,
            "obsoleted" => DoneMessage::Obsoleted,
            "asdotnew" => DoneMessage::AsDotNew,
            "held back" => DoneMessage::HeldBack,
            _ => return None,
        })
    }
}

/// One line of an outlog.
#[allow(clippy::box_collection)] // thin boxes: 8 bytes, not a `Box<str>`'s 16
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    PoolNew(RelPath),
    PoolDelete(RelPath),
    // Boxed (a section, the paths of a dist line, a local source, a link target, a mirror's
    // name): a line is as big as its biggest kind, and an outlog may have 100 000 lines,
    // most of them pool paths (or journal lines: 40 bytes a line, not 64).
    Begin(Box<Section>),
    End(Box<Section>),
    /// `dir/name` is new or changed; `local` is where reprepro wrote it.
    DistFile {
        dir: Box<RelPath>,
        name: Box<RelPath>,
        local: Box<PathBuf>,
    },
    DistSymlink {
        dir: Box<RelPath>,
        name: Box<RelPath>,
        target: Box<String>,
    },
    DistDelete {
        dir: Box<RelPath>,
        name: Box<RelPath>,
    },
    /// Reserved by reprepro; ignored.
    DistKeep {
        dir: Box<RelPath>,
        name: Box<RelPath>,
    },
    /// A journal line written by a hook: `DONE` for the first mirror, `DONE@NAME` for the
    /// mirror NAME (`mirror` is then `Some`).
    Done {
        mirror: Option<Box<String>>,
        message: DoneMessage,
        path: RelPath,
    },
}

/// A parsed outlog: its lines with their (1-based) numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlog {
    pub path: PathBuf,
    pub lines: Vec<(usize, Line)>,
    /// A journal line cut short at the end of the file (the log's disk filled up while a
    /// hook journalled): not in `lines`, as if it had never been written.
    pub torn_tail: Option<TornTail>,
}

/// Where a torn last journal line starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Its line number.
    pub line: usize,
    /// Its first byte: the length the file has without it.
    pub offset: u64,
}

/// Whether `raw`, the unterminated last line of a log, is part of a journal line: a prefix
/// of `DONE<TAB>...`. reprepro writes no DONE lines, so such a fragment comes from a hook's
/// journal, which is only ever appended after reprepro's part. A lone `D` could also be a
/// torn `DISTFILE`: it counts as a journal line only after a complete one.
fn is_torn_journal_line(raw: &[u8], after_journal: bool) -> bool {
    const DONE: &[u8] = b"DONE\t";
    let fits = if raw.len() < DONE.len() {
        DONE.starts_with(raw) || raw == b"DONE@"
    } else {
        raw.starts_with(DONE) || is_torn_mirror_line(raw)
    };
    fits && (raw.len() >= 2 || after_journal)
}

/// Whether `raw` is a prefix of a journal line of another mirror, `DONE@NAME<TAB>...`:
/// its name whole or cut short (then nothing follows it).
fn is_torn_mirror_line(raw: &[u8]) -> bool {
    let Some(rest) = raw.strip_prefix(b"DONE@") else {
        return false;
    };
    let (name, tail) = match rest.iter().position(|&b| b == b'\t') {
        Some(tab) => (&rest[..tab], Some(&rest[tab..])),
        None => (rest, None),
    };
    let named = std::str::from_utf8(name).is_ok_and(line::is_mirror_name);
    named || (name.is_empty() && tail.is_none())
}

/// Reads and parses the outlog at `path`, a line at a time.
pub fn parse_file(path: &Path) -> anyhow::Result<Outlog> {
    use anyhow::Context;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let log = parse_reader(path, std::io::BufReader::new(file))?;
    if let Some(torn) = log.torn_tail {
        log::warn!(
            "{}:{}: the last journal line is torn (did the disk fill up while it was \
             written?): taken as not written; a run cuts it off before it journals",
            path.display(),
            torn.line
        );
    }
    Ok(log)
}

/// Parses outlog content; `path` is only used in messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Outlog, ParseError> {
    parse_reader(path, bytes).map_err(|e| match e {
        OutlogError::Parse(parse_error) => parse_error,
        OutlogError::Read { error, .. } => unreachable!("reading a byte slice failed: {error}"),
    })
}

/// Parses outlog content from a reader, a line at a time.
pub fn parse_reader(path: &Path, mut reader: impl BufRead) -> Result<Outlog, OutlogError> {
    let mut parser = Parser { open: None };
    let mut lines = Vec::new();
    let mut number = 0;
    let mut offset = 0u64;
    let mut raw = Vec::new();
    let mut torn_tail = None;
    let mut dirs = None;
    let err = |line: usize, problem| ParseError {
        file: path.to_owned(),
        line,
        problem,
    };
    loop {
        let n = read_line(&mut reader, &mut raw).map_err(|error| OutlogError::Read {
            path: path.to_owned(),
            error,
        })?;
        if n == 0 {
            break;
        }
        number += 1;
        if raw.last() != Some(&b'\n') {
            let after_journal = matches!(lines.last(), Some((_, Line::Done { .. })));
            unterminated(&raw, after_journal).map_err(|problem| err(number, problem))?;
            torn_tail = Some(TornTail {
                line: number,
                offset,
            });
            break;
        }
        offset += n as u64;
        raw.pop();
        let line = text(&raw).and_then(|text| parser.line(text, number));
        let mut line = line.map_err(|problem| err(number, problem))?;
        share_dir(lines.last_mut(), &mut line, &mut dirs);
        lines.push((number, line));
    }
    // Every section must be closed; the error names the line of its BEGIN.
    if let Some((section, at)) = parser.open {
        return Err(err(at, Problem::UnclosedSection(section.dir)).into());
    }
    lines.shrink_to_fit();
    Ok(Outlog {
        path: path.to_owned(),
        lines,
        torn_tail,
    })
}

/// Pool files of one directory come one after the other: a line's path and the one before
/// share their directory (see [`RelPath::share_dir`]), held once.
fn share_dir(
    last: Option<&mut (usize, Line)>,
    line: &mut Line,
    dirs: &mut Option<std::sync::Arc<RelPath>>,
) {
    let (
        Some((_, Line::PoolNew(before) | Line::PoolDelete(before))),
        Line::PoolNew(path) | Line::PoolDelete(path),
    ) = (last, line)
    else {
        return;
    };
    if let Some((again, shared)) = RelPath::share_dir(before, path, dirs) {
        if let Some(again) = again {
            *before = again;
        }
        *path = shared;
    }
}

/// At most one byte past the limit, so that a huge line is never read whole.
const READ_LIMIT: u64 = (MAX_LINE_LEN + 2) as u64;

/// Reads the next line, newline included, into `raw`; 0 at the end of the file.
fn read_line(reader: &mut impl BufRead, raw: &mut Vec<u8>) -> std::io::Result<usize> {
    raw.clear();
    reader.take(READ_LIMIT).read_until(b'\n', raw)
}

/// A last line without its newline: `Ok` if it is a torn journal line, to be taken as not
/// written.
fn unterminated(raw: &[u8], after_journal: bool) -> Result<(), Problem> {
    if raw.len() as u64 >= READ_LIMIT {
        Err(Problem::TooLong)
    } else if is_torn_journal_line(raw, after_journal) {
        Ok(())
    } else {
        Err(Problem::NoFinalNewline)
    }
}

/// A line's text, without its newline.
fn text(raw: &[u8]) -> Result<&str, Problem> {
    if raw.len() > MAX_LINE_LEN {
        return Err(Problem::TooLong);
    }
    std::str::from_utf8(raw).map_err(|_| Problem::NotUtf8)
}

#[cfg(test)]
mod tests;
