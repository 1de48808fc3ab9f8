//! One line of an outlog, already split off and known to be UTF-8, into a [`Line`]: the
//! fields counted, every path validated, the BEGIN/END nesting followed. Knows nothing of
//! files, bytes or line numbers beyond the BEGIN it remembers.

use std::path::PathBuf;

use super::error::Problem;
use super::{DoneMessage, Line, Section, SectionKind};
use crate::relpath::{RelPath, check_symlink_target};

/// The state between lines: the section we are inside.
pub(super) struct Parser {
    /// The section we are inside, with the line number of its BEGIN.
    pub open: Option<(Section, usize)>,
}

/// A line's keyword and its fields after it.
struct Fields<'a> {
    keyword: &'static str,
    /// For `DONE@NAME`: the mirror NAME (the keyword is then `DONE`).
    mirror: Option<&'a str>,
    args: Vec<&'a str>,
}

const KEYWORDS: &[&str] = &[
    "POOLNEW",
    "POOLDELETE",
    "BEGIN-DISTRIBUTION",
    "END-DISTRIBUTION",
    "BEGIN-SNAPSHOT",
    "END-SNAPSHOT",
    "DISTFILE",
    "DISTSYMLINK",
    "DISTDELETE",
    "DISTKEEP",
    "DONE",
];

impl<'a> Fields<'a> {
    /// Splits at tabs; no field may be empty, and the keyword must be one we know.
    fn split(text: &'a str) -> Result<Fields<'a>, Problem> {
        let fields: Vec<&str> = text.split('\t').collect();
        if let Some(i) = fields.iter().position(|f| f.is_empty()) {
            return Err(if i == 0 {
                Problem::EmptyKeyword
            } else {
                Problem::EmptyField {
                    keyword: fields[0].to_owned(),
                    field: i,
                }
            });
        }
        // `DONE@NAME`: a journal line of the mirror NAME (another than the first).
        let (word, mirror) = match fields[0].split_once('@') {
            Some(("DONE", name)) if is_mirror_name(name) => ("DONE", Some(name)),
            _ => (fields[0], None),
        };
        let Some(&keyword) = KEYWORDS.iter().find(|&&k| k == word) else {
            return Err(Problem::UnknownKeyword(fields[0].to_owned()));
        };
        Ok(Fields {
            keyword,
            mirror,
            args: fields[1..].to_vec(),
        })
    }

    /// Checks that there are as many fields as one of `want`.
    fn count(&self, want: &'static [usize]) -> Result<(), Problem> {
        if want.contains(&self.args.len()) {
            Ok(())
        } else {
            Err(Problem::FieldCount {
                keyword: self.keyword,
                want,
                found: self.args.len(),
            })
        }
    }
}

fn rel(what: &'static str, s: &str) -> Result<RelPath, Problem> {
    RelPath::new(s).map_err(|error| Problem::BadPath {
        what,
        path: s.to_owned(),
        error,
    })
}

fn under(what: &'static str, s: &str, top: &'static str) -> Result<RelPath, Problem> {
    let p = rel(what, s)?;
    if p.first_component() != top || !s.contains('/') {
        return Err(Problem::NotBelow {
            what,
            path: s.to_owned(),
            top,
        });
    }
    Ok(p)
}

impl Parser {
    /// Parses line `number`, whose text is `text` without its newline.
    pub fn line(&mut self, text: &str, number: usize) -> Result<Line, Problem> {
        let f = Fields::split(text)?;
        match f.keyword {
            "POOLNEW" | "POOLDELETE" => pool(&f),
            "BEGIN-DISTRIBUTION" | "BEGIN-SNAPSHOT" => {
                let section = section(&f)?;
                if let Some((open, _)) = &self.open {
                    return Err(Problem::NestedBegin {
                        keyword: f.keyword,
                        open: open.dir.clone(),
                    });
                }
                self.open = Some((section.clone(), number));
                Ok(Line::Begin(Box::new(section)))
            }
            "END-DISTRIBUTION" | "END-SNAPSHOT" => {
                let section = section(&f)?;
                match self.open.take() {
                    Some((open, _)) if open == section => Ok(Line::End(Box::new(section))),
                    Some((open, _)) => Err(Problem::EndMismatch {
                        keyword: f.keyword,
                        dir: section.dir,
                        open: open.dir,
                    }),
                    None => Err(Problem::EndWithoutBegin(f.keyword)),
                }
            }
            "DONE" => done(&f),
            _ => self.dist(&f),
        }
    }

    /// DISTFILE, DISTSYMLINK, DISTDELETE or DISTKEEP, inside the section they name.
    fn dist(&self, f: &Fields<'_>) -> Result<Line, Problem> {
        f.count(match f.keyword {
            "DISTFILE" | "DISTSYMLINK" => &[3],
            _ => &[2],
        })?;
        let dir = under("distribution directory", f.args[0], "dists")?;
        match &self.open {
            None => return Err(Problem::OutsideSection(f.keyword)),
            Some((open, _)) if open.dir != dir => {
                return Err(Problem::OtherSection {
                    keyword: f.keyword,
                    dir,
                    open: open.dir.clone(),
                });
            }
            Some(_) => {}
        }
        let (dir, name) = (Box::new(dir), Box::new(rel("file name", f.args[1])?));
        Ok(match f.keyword {
            "DISTFILE" => {
                if f.args[2].contains('\0') {
                    return Err(Problem::NulInLocalName);
                }
                Line::DistFile {
                    dir,
                    name,
                    local: Box::new(PathBuf::from(f.args[2])),
                }
            }
            "DISTSYMLINK" => {
                let full = dir.join(&name);
                check_symlink_target(full.parent().as_ref(), f.args[2])
                    .map_err(Problem::BadSymlinkTarget)?;
                Line::DistSymlink {
                    dir,
                    name,
                    target: Box::new(f.args[2].to_owned()),
                }
            }
            "DISTDELETE" => Line::DistDelete { dir, name },
            _ => Line::DistKeep { dir, name },
        })
    }
}

fn pool(f: &Fields<'_>) -> Result<Line, Problem> {
    f.count(&[1])?;
    let key = under("pool file", f.args[0], "pool")?;
    Ok(if f.keyword == "POOLNEW" {
        Line::PoolNew(key)
    } else {
        Line::PoolDelete(key)
    })
}

/// The fields of a BEGIN- or END- line.
fn section(f: &Fields<'_>) -> Result<Section, Problem> {
    let kind = if f.keyword.ends_with("SNAPSHOT") {
        f.count(&[3])?;
        SectionKind::Snapshot
    } else {
        f.count(&[2, 3])?;
        SectionKind::Distribution
    };
    Ok(Section {
        kind,
        codename: f.args[0].to_owned(),
        dir: under("distribution directory", f.args[1], "dists")?,
        extra: f.args.get(2).map(|s| (*s).to_owned()),
    })
}

fn done(f: &Fields<'_>) -> Result<Line, Problem> {
    f.count(&[2])?;
    let message = DoneMessage::parse(f.args[0])
        .ok_or_else(|| Problem::UnknownDoneMessage(f.args[0].to_owned()))?;
    Ok(Line::Done {
        mirror: f.mirror.map(|name| Box::new(name.to_owned())),
        message,
        path: rel("path", f.args[1])?,
    })
}

/// A mirror's name as `DONE@NAME` carries it (and the configuration allows it): a letter
/// or digit, then letters, digits, `.`, `_` or `-`, at most 64 in all.
pub fn is_mirror_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.len() <= 64
}
