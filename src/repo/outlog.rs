//! Parsing reprepro's `.outlog` files, strictly: one [`Line`] variant per keyword, every path
//! validated, the BEGIN/END structure checked. An error names the file and the line.

use std::fmt;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use crate::relpath::{RelPath, check_symlink_target};

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
            _ => return None,
        })
    }
}

/// One line of an outlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    PoolNew(RelPath),
    PoolDelete(RelPath),
    Begin(Section),
    End(Section),
    /// `dir/name` is new or changed; `local` is where reprepro wrote it.
    DistFile {
        dir: RelPath,
        name: RelPath,
        local: PathBuf,
    },
    DistSymlink {
        dir: RelPath,
        name: RelPath,
        target: String,
    },
    DistDelete {
        dir: RelPath,
        name: RelPath,
    },
    /// Reserved by reprepro; ignored.
    DistKeep {
        dir: RelPath,
        name: RelPath,
    },
    /// A journal line written by a hook.
    Done {
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
        DONE.starts_with(raw)
    } else {
        raw.starts_with(DONE)
    };
    fits && (raw.len() >= 2 || after_journal)
}

/// A malformed outlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

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
    parse_reader(path, bytes).map_err(|e| match e.downcast::<ParseError>() {
        Ok(parse_error) => parse_error,
        Err(io) => unreachable!("reading a byte slice failed: {io}"),
    })
}

/// Parses outlog content from a reader; an error is a [`ParseError`] or a read error.
pub fn parse_reader(path: &Path, mut reader: impl BufRead) -> anyhow::Result<Outlog> {
    let mut parser = Parser { open: None };
    let mut lines = Vec::new();
    let mut number = 0;
    let mut offset = 0u64;
    let mut torn_tail = None;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        // At most one byte past the limit, so that a huge line is never read whole.
        let limit = (MAX_LINE_LEN + 2) as u64;
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut raw)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        let err = |message: String| ParseError {
            file: path.to_owned(),
            line: number,
            message,
        };
        if raw.last() != Some(&b'\n') {
            if raw.len() as u64 >= limit {
                return Err(err(format!("line is longer than {MAX_LINE_LEN} bytes")).into());
            }
            let after_journal = matches!(lines.last(), Some((_, Line::Done { .. })));
            if is_torn_journal_line(&raw, after_journal) {
                torn_tail = Some(TornTail {
                    line: number,
                    offset,
                });
                break;
            }
            return Err(
                err("the last line does not end in a newline (truncated file?)".into()).into(),
            );
        }
        offset += n as u64;
        raw.pop();
        if raw.len() > MAX_LINE_LEN {
            return Err(err(format!("line is longer than {MAX_LINE_LEN} bytes")).into());
        }
        let text = std::str::from_utf8(&raw).map_err(|_| err("line is not valid UTF-8".into()))?;
        let line = parser.line(text, number).map_err(err)?;
        lines.push((number, line));
    }
    if let Some((section, at)) = parser.open {
        return Err(ParseError {
            file: path.to_owned(),
            line: at,
            message: format!(
                "BEGIN for {} has no matching END (truncated file?)",
                section.dir
            ),
        }
        .into());
    }
    lines.shrink_to_fit();
    Ok(Outlog {
        path: path.to_owned(),
        lines,
        torn_tail,
    })
}

struct Parser {
    /// The section we are inside, with the line number of its BEGIN.
    open: Option<(Section, usize)>,
}

fn rel(what: &str, s: &str) -> Result<RelPath, String> {
    RelPath::new(s).map_err(|e| format!("bad {what} {s:?}: {e}"))
}

fn under(what: &str, s: &str, top: &str) -> Result<RelPath, String> {
    let p = rel(what, s)?;
    if p.first_component() != top || !s.contains('/') {
        return Err(format!("bad {what} {s:?}: not below {top}/"));
    }
    Ok(p)
}

impl Parser {
    fn line(&mut self, text: &str, number: usize) -> Result<Line, String> {
        let fields: Vec<&str> = text.split('\t').collect();
        let keyword = fields[0];
        let args = &fields[1..];
        if let Some(i) = fields.iter().position(|f| f.is_empty()) {
            return Err(if i == 0 {
                "empty line or keyword".into()
            } else {
                format!("{keyword}: field {i} is empty")
            });
        }
        let count = |n: &[usize]| -> Result<(), String> {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                let want: Vec<String> = n.iter().map(usize::to_string).collect();
                Err(format!(
                    "{keyword} takes {} fields, found {}",
                    want.join(" or "),
                    args.len()
                ))
            }
        };
        let line = match keyword {
            "POOLNEW" | "POOLDELETE" => {
                count(&[1])?;
                let key = under("pool file", args[0], "pool")?;
                if keyword == "POOLNEW" {
                    Line::PoolNew(key)
                } else {
                    Line::PoolDelete(key)
                }
            }
            "BEGIN-DISTRIBUTION" | "END-DISTRIBUTION" | "BEGIN-SNAPSHOT" | "END-SNAPSHOT" => {
                let kind = if keyword.ends_with("SNAPSHOT") {
                    count(&[3])?;
                    SectionKind::Snapshot
                } else {
                    count(&[2, 3])?;
                    SectionKind::Distribution
                };
                let section = Section {
                    kind,
                    codename: args[0].to_owned(),
                    dir: under("distribution directory", args[1], "dists")?,
                    extra: args.get(2).map(|s| (*s).to_owned()),
                };
                if keyword.starts_with("BEGIN") {
                    if let Some((open, _)) = &self.open {
                        return Err(format!("{keyword} inside the section of {}", open.dir));
                    }
                    self.open = Some((section.clone(), number));
                    Line::Begin(section)
                } else {
                    match self.open.take() {
                        Some((open, _)) if open == section => Line::End(section),
                        Some((open, _)) => {
                            return Err(format!(
                                "{keyword} for {} does not match the BEGIN for {}",
                                section.dir, open.dir
                            ));
                        }
                        None => return Err(format!("{keyword} without BEGIN")),
                    }
                }
            }
            "DISTFILE" | "DISTSYMLINK" | "DISTDELETE" | "DISTKEEP" => {
                count(if keyword == "DISTFILE" || keyword == "DISTSYMLINK" {
                    &[3]
                } else {
                    &[2]
                })?;
                let dir = under("distribution directory", args[0], "dists")?;
                match &self.open {
                    None => return Err(format!("{keyword} outside BEGIN/END")),
                    Some((open, _)) if open.dir != dir => {
                        return Err(format!(
                            "{keyword} names {dir}, but the open section is {}",
                            open.dir
                        ));
                    }
                    Some(_) => {}
                }
                let name = rel("file name", args[1])?;
                match keyword {
                    "DISTFILE" => {
                        if args[2].contains('\0') {
                            return Err("local file name contains a NUL byte".into());
                        }
                        Line::DistFile {
                            dir,
                            name,
                            local: PathBuf::from(args[2]),
                        }
                    }
                    "DISTSYMLINK" => {
                        let full = dir.join(&name);
                        check_symlink_target(full.parent().as_ref(), args[2])?;
                        Line::DistSymlink {
                            dir,
                            name,
                            target: args[2].to_owned(),
                        }
                    }
                    "DISTDELETE" => Line::DistDelete { dir, name },
                    _ => Line::DistKeep { dir, name },
                }
            }
            "DONE" => {
                count(&[2])?;
                let message = DoneMessage::parse(args[0])
                    .ok_or_else(|| format!("unknown DONE message {:?}", args[0]))?;
                Line::Done {
                    message,
                    path: rel("path", args[1])?,
                }
            }
            other => return Err(format!("unknown keyword {other:?}")),
        };
        Ok(line)
    }
}

#[cfg(test)]
mod tests;
