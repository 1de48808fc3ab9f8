//! Large uploads cut into parts, for a run spread over several connections.
//!
//! A whole file is otherwise the unit of work, and at the end of a spread run the last large
//! file goes alone over one channel (measured at 50 ms, 10 files of 40 MB over four
//! connections: about 0.7 s of tail). Parts of [`PART_SIZE`] balance instead. Like a whole
//! upload, the parts are written under the file's temporary name (see
//! [`crate::remote_path::RemotePath::temp_sibling`]), which is removed first (the parts open
//! it without `EXCL`, so nothing planted there may stay). Each part writes its range without
//! truncating; once every part is in, one SETSTAT gives the file its exact size and time and
//! a STAT confirms the size ([`Op::SetSize`]); only then is it renamed into place and counts
//! as done.
//!
//! Pure bookkeeping: the sizes it cuts by are given (the run's one stat of each source), as
//! is the last look at the file's size; it sends nothing itself.

use std::ops::Range;
use std::path::Path;

use super::op::{Cause, Op, OpError, OpResult};

/// The size of a part by default; uploads of at least two parts are cut. Small enough that
/// the tail is short (a part takes about 0.2 s over one channel at 50 ms), large enough
/// that its OPEN and CLOSE are nothing next to its data.
pub(crate) const PART_SIZE: u64 = 8 * 1024 * 1024;

/// The operations of a spread run, large uploads replaced by their parts, and the
/// bookkeeping that turns the parts' results back into the uploads'.
pub(crate) struct Split {
    /// What is run.
    pub(crate) ops: Vec<Op>,
    /// For each of `ops`, the index of the operation it comes from.
    origin: Vec<usize>,
    /// For each operation given: its parts not yet finished, and the size it was cut at.
    cut: Vec<Option<Cut>>,
}

struct Cut {
    size: u64,
    left: usize,
    failure: Option<OpResult>,
}

/// What a finished operation of [`Split::ops`] means for the operations given.
#[derive(Debug, PartialEq)]
pub(crate) enum Event {
    /// Operation `i` was run as given: its result is this one.
    AsGiven(usize),
    /// Every part of upload `i` is in, and one failed: this is the upload's result.
    Failed(usize, OpResult),
    /// Every part of upload `i` is in: it needs [`Split::finishing`].
    Complete(usize),
    /// Parts of the upload are still to come.
    Pending,
}

impl Split {
    /// Cuts each upload of at least two parts whose local size `size_of` gives (and that
    /// needs no fsync: those are small index files); `None` when there is none to cut.
    pub(crate) fn new(
        ops: &[Op],
        part_size: u64,
        mut size_of: impl FnMut(&Path) -> Option<u64>,
    ) -> Option<Split> {
        let sizes: Vec<Option<u64>> = ops
            .iter()
            .map(|op| match op {
                Op::Upload {
                    local,
                    fsync: false,
                    ..
                } => size_of(local).filter(|&s| s >= 2 * part_size),
                _ => None,
            })
            .collect();
        if sizes.iter().all(Option::is_none) {
            return None;
        }
        let mut split = Split {
            ops: Vec::with_capacity(ops.len()),
            origin: Vec::with_capacity(ops.len()),
            cut: Vec::with_capacity(ops.len()),
        };
        for ((i, op), size) in ops.iter().enumerate().zip(sizes) {
            let (Some(size), Op::Upload { local, remote, .. }) = (size, op) else {
                split.ops.push(op.clone());
                split.origin.push(i);
                split.cut.push(None);
                continue;
            };
            let ranges = ranges(size, part_size);
            split.cut.push(Some(Cut {
                size,
                left: ranges.len(),
                failure: None,
            }));
            for range in ranges {
                split.ops.push(Op::UploadPart {
                    local: local.clone(),
                    remote: remote.temp_sibling(),
                    range,
                });
                split.origin.push(i);
            }
        }
        Some(split)
    }

    /// The uploads that were cut, by their index among the operations given.
    pub(crate) fn cut_uploads(&self) -> impl Iterator<Item = usize> + '_ {
        self.cut
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|_| i))
    }

    /// Takes the result of `ops[j]`.
    pub(crate) fn on_done(&mut self, j: usize, result: &OpResult) -> Event {
        let i = self.origin[j];
        let Some(cut) = &mut self.cut[i] else {
            return Event::AsGiven(i);
        };
        cut.left -= 1;
        if result.is_err() && cut.failure.is_none() {
            cut.failure = Some(result.clone());
        }
        match (cut.left, cut.failure.take()) {
            (0, Some(failure)) => Event::Failed(i, failure),
            (0, None) => Event::Complete(i),
            (_, failure) => {
                cut.failure = failure;
                Event::Pending
            }
        }
    }

    /// The operation that ends upload `given` (number `i`) once its parts are in: the
    /// SETSTAT of its size and time; an error if the local file, by `size_of`, no longer has
    /// the size it was cut at (the parts then sent a mix).
    pub(crate) fn finishing(
        &self,
        given: &Op,
        i: usize,
        size_of: impl Fn(&Path) -> Option<u64>,
    ) -> Result<Op, OpResult> {
        let (
            Some(cut),
            Op::Upload {
                local,
                remote,
                mtime,
                ..
            },
        ) = (&self.cut[i], given)
        else {
            unreachable!("only cut uploads are finished")
        };
        if size_of(local) != Some(cut.size) {
            return Err(Err(OpError {
                op: given.kind(),
                path: remote.clone(),
                cause: Cause::Local {
                    path: local.clone(),
                    message: "the file changed size while it was being sent".into(),
                },
            }));
        }
        Ok(Op::SetSize {
            path: remote.temp_sibling(),
            size: cut.size,
            mtime: *mtime,
        })
    }
}

fn ranges(size: u64, part_size: u64) -> Vec<Range<u64>> {
    (0..size.div_ceil(part_size))
        .map(|k| k * part_size..((k + 1) * part_size).min(size))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::op::Outcome;
    use crate::remote_path::RemotePath;
    use std::path::PathBuf;

    fn upload(name: &str, fsync: bool) -> Op {
        Op::Upload {
            local: PathBuf::from(name),
            remote: RemotePath::new(format!("/r/{name}")).unwrap(),
            fsync,
            mtime: Some(7),
        }
    }

    /// Local sizes by file name: "big" 25, "exact" 20, "small" 19; parts of 10.
    fn split(ops: &[Op]) -> Option<Split> {
        Split::new(ops, 10, |p| match p.to_str().unwrap() {
            "big" => Some(25),
            "exact" => Some(20),
            "small" => Some(19),
            _ => None,
        })
    }

    fn ranges_of(split: &Split) -> Vec<Option<Range<u64>>> {
        split
            .ops
            .iter()
            .map(|op| match op {
                Op::UploadPart { range, .. } => Some(range.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn uploads_of_two_parts_or_more_are_cut_in_order_and_the_rest_kept() {
        let ops = [
            upload("small", false),
            upload("big", false),
            upload("exact", false),
            upload("missing", false),
        ];
        let s = split(&ops).unwrap();
        assert_eq!(
            ranges_of(&s),
            [
                None,
                Some(0..10),
                Some(10..20),
                Some(20..25),
                Some(0..10),
                Some(10..20),
                None
            ]
        );
        assert_eq!(s.ops[0], ops[0]);
        assert_eq!(s.ops[6], ops[3]);
    }

    #[test]
    fn uploads_that_fsync_or_are_small_are_not_cut() {
        assert!(split(&[upload("big", true), upload("small", false)]).is_none());
    }

    #[test]
    fn an_upload_is_complete_when_its_last_part_is_in() {
        let ops = [upload("small", false), upload("exact", false)];
        let mut s = split(&ops).unwrap();
        assert_eq!(s.on_done(0, &Ok(Outcome::Done)), Event::AsGiven(0));
        assert_eq!(s.on_done(2, &Ok(Outcome::Done)), Event::Pending);
        assert_eq!(s.on_done(1, &Ok(Outcome::Done)), Event::Complete(1));
        assert_eq!(
            s.finishing(&ops[1], 1, |_| Some(20)),
            Ok(Op::SetSize {
                path: RemotePath::new("/r/.exact.tmp").unwrap(),
                size: 20,
                mtime: Some(7)
            })
        );
    }

    #[test]
    fn a_failed_part_fails_the_upload_once_all_parts_are_in() {
        let ops = [upload("big", false)];
        let mut s = split(&ops).unwrap();
        let failure: OpResult = Err(OpError {
            op: crate::engine::op::OpKind::Upload,
            path: RemotePath::new("/r/big").unwrap(),
            cause: Cause::Interrupted,
        });
        assert_eq!(s.on_done(1, &failure), Event::Pending);
        assert_eq!(s.on_done(0, &Ok(Outcome::Done)), Event::Pending);
        assert_eq!(s.on_done(2, &Ok(Outcome::Done)), Event::Failed(0, failure));
    }

    #[test]
    fn a_file_that_changed_size_is_not_finished() {
        let ops = [upload("exact", false)];
        let s = split(&ops).unwrap();
        let Err(Err(e)) = s.finishing(&ops[0], 0, |_| Some(21)) else {
            panic!("finished a file of another size")
        };
        assert!(e.to_string().contains("changed size"), "{e}");
    }
}
