//! What is queued for the server: encoded requests, and ranges of local files, named by a
//! [`SourceId`], that the transport moves into the pipe itself (`splice(2)`), so file data is
//! never copied through our memory. A range whose file turns out shorter, or cannot be read,
//! is made up with zeros, which keeps the stream whole, and its token is kept so the caller
//! can fail that upload.
//!
//! Bytes and names only: no file is held or read here; whoever opened the file (the engine's
//! edge) keeps it, and the transport finds it by its name.

use std::collections::VecDeque;

/// Requests (and small WRITEs' data) share buffers of up to about this size, sized by what
/// they hold; written ones are reused.
const BUFFER: usize = 64 * 1024;
const SPARE_BUFFERS: usize = 4;

/// Zeros in place of the data a file no longer has.
static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];

/// A local file whose data a WRITE carries, as the one who opened it names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u64);

#[derive(Debug)]
enum Piece {
    /// Encoded requests; never empty.
    Bytes(Vec<u8>),
    Source {
        source: SourceId,
        offset: u64,
        len: u64,
        token: usize,
    },
    /// What a file that ended early owes the stream.
    Zeros(u64),
}

/// Why a file range could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFault {
    /// The file has no data there any more: it shrank.
    Ended,
    /// Reading it failed, with this error.
    Unreadable(String),
}

/// The next thing to write, from where the last write stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    Bytes(&'a [u8]),
    /// `len` bytes of local file `source` from `offset`.
    Source {
        source: SourceId,
        offset: u64,
        len: u64,
    },
}

#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Piece>,
    /// How much of the front piece has already been written.
    written: u64,
    spare: Vec<Vec<u8>>,
    /// File ranges that could not be sent, by token.
    failed: Vec<(usize, FileFault)>,
}

impl Outbox {
    /// Appends encoded bytes: `encode` adds them to the end of the output.
    pub fn push_bytes(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        self.try_push_bytes::<()>(0, |b| {
            encode(b);
            Ok(())
        })
        .expect("cannot fail");
    }

    /// Appends about `size` bytes that `encode` adds to the end of the output, or nothing
    /// if it fails.
    pub fn try_push_bytes<E>(
        &mut self,
        size: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !matches!(self.queue.back(), Some(Piece::Bytes(b)) if b.len() + size <= BUFFER) {
            let mut buffer = self.spare.pop().unwrap_or_default();
            buffer.reserve(size);
            self.queue.push_back(Piece::Bytes(buffer));
        }
        let Some(Piece::Bytes(back)) = self.queue.back_mut() else {
            unreachable!("just ensured");
        };
        let start = back.len();
        let result = encode(back);
        if result.is_err() {
            back.truncate(start);
        }
        if back.is_empty() {
            self.pop_back();
        }
        result
    }

    /// Appends `len` bytes of local file `source` from `offset`; `token` names the range if
    /// the file turns out to end before it.
    pub fn push_source(&mut self, source: SourceId, offset: u64, len: u64, token: usize) {
        if len > 0 {
            self.queue.push_back(Piece::Source {
                source,
                offset,
                len,
                token,
            });
        }
    }

    /// What to write next; `None` when nothing is queued.
    pub fn next(&self) -> Option<Next<'_>> {
        let at = self.written;
        Some(match self.queue.front()? {
            Piece::Bytes(b) => Next::Bytes(&b[at as usize..]),
            Piece::Source {
                source,
                offset,
                len,
                ..
            } => Next::Source {
                source: *source,
                offset: offset + at,
                len: len - at,
            },
            Piece::Zeros(len) => Next::Bytes(&ZEROS[..(len - at).min(ZEROS.len() as u64) as usize]),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Marks `n` bytes of [`Outbox::next`] as written.
    pub fn consume(&mut self, n: usize) {
        let Some(front) = self.queue.front() else {
            return;
        };
        let size = match front {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Source { len, .. } | Piece::Zeros(len) => *len,
        };
        self.written = (self.written + n as u64).min(size);
        if self.written == size {
            self.written = 0;
            if let Some(Piece::Bytes(buffer)) = self.queue.pop_front() {
                self.recycle(buffer);
            }
        }
    }

    /// The file of [`Next::Source`] cannot give the rest of its range: that is sent as zeros
    /// and the range's token noted with `fault`.
    pub fn file_failed(&mut self, fault: FileFault) {
        let at = self.written;
        if let Some(front) = self.queue.front_mut()
            && let Piece::Source { len, token, .. } = *front
        {
            self.failed.push((token, fault));
            *front = Piece::Zeros(len);
            // The zeros continue the range where the file left off.
            self.written = at;
        }
    }

    /// The file ranges that could not be sent since the last call, by token.
    pub fn take_failed(&mut self) -> Vec<(usize, FileFault)> {
        std::mem::take(&mut self.failed)
    }

    fn pop_back(&mut self) {
        if let Some(Piece::Bytes(buffer)) = self.queue.pop_back() {
            self.recycle(buffer);
        }
    }

    fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buffer.capacity() <= 4 * BUFFER {
            buffer.clear();
            self.spare.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(o: &mut Outbox, bytes: &[u8]) {
        o.push_bytes(|b| b.extend_from_slice(bytes));
    }

    /// Local files for the tests, by their [`SourceId`]: the contents of `FILES`.
    const FILES: [&[u8]; 3] = [b"0123456789", b"abc", b"abc"];

    fn file(k: u64) -> SourceId {
        SourceId(k)
    }

    /// Everything queued, written out as a transport would, `step` bytes at most a time,
    /// files read where they are.
    fn drain(o: &mut Outbox, step: usize) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(next) = o.next() {
            match next {
                Next::Bytes(b) => {
                    let n = b.len().min(step);
                    all.extend_from_slice(&b[..n]);
                    o.consume(n);
                }
                Next::Source {
                    source,
                    offset,
                    len,
                } => {
                    let data = FILES[source.0 as usize];
                    let from = (offset as usize).min(data.len());
                    let n = (len as usize).min(step).min(data.len() - from);
                    if n == 0 {
                        o.file_failed(FileFault::Ended);
                        continue;
                    }
                    all.extend_from_slice(&data[from..from + n]);
                    o.consume(n);
                }
            }
        }
        all
    }

    #[test]
    fn requests_and_file_ranges_come_out_in_the_order_they_were_queued() {
        let mut o = Outbox::default();
        push(&mut o, b"<h1>");
        o.push_source(file(0), 2, 5, 1);
        push(&mut o, b"<h2>");
        push(&mut o, b"<h3>");
        o.push_source(file(1), 0, 3, 2);
        assert_eq!(drain(&mut o, 3), b"<h1>23456<h2><h3>abc");
        assert!(o.next().is_none());
        assert!(o.take_failed().is_empty());
    }

    #[test]
    fn small_requests_share_a_buffer_sized_by_what_it_holds() {
        let mut o = Outbox::default();
        push(&mut o, b"ab");
        push(&mut o, b"cd");
        assert_eq!(o.next(), Some(Next::Bytes(b"abcd")));
        assert_eq!(o.queue.len(), 1);
        let Some(Piece::Bytes(b)) = o.queue.front() else {
            panic!()
        };
        assert!(b.capacity() < 1024, "{}", b.capacity());
    }

    #[test]
    fn a_failed_push_leaves_nothing() {
        let mut o = Outbox::default();
        push(&mut o, b"ab");
        assert_eq!(
            o.try_push_bytes(3, |b| {
                b.push(b'x');
                Err("short read")
            }),
            Err("short read")
        );
        assert_eq!(
            o.try_push_bytes(2 * BUFFER, |b| {
                b.push(b'x');
                Err("short read")
            }),
            Err("short read")
        );
        assert_eq!(drain(&mut o, 100), b"ab");
        assert!(o.is_empty());
    }

    #[test]
    fn a_partly_written_piece_resumes_where_it_stopped() {
        let mut o = Outbox::default();
        push(&mut o, b"abcdef");
        o.consume(2);
        assert_eq!(o.next(), Some(Next::Bytes(b"cdef")));
        let f = file(0);
        o.consume(4);
        o.push_source(f, 1, 8, 0);
        o.consume(3);
        assert_eq!(
            o.next(),
            Some(Next::Source {
                source: f,
                offset: 4,
                len: 5
            })
        );
    }

    #[test]
    fn a_file_that_ends_early_is_made_up_with_zeros_and_named() {
        let mut o = Outbox::default();
        o.push_source(file(2), 1, 6, 7);
        push(&mut o, b"next");
        assert_eq!(drain(&mut o, 100), b"bc\0\0\0\0next");
        assert_eq!(o.take_failed(), vec![(7, FileFault::Ended)]);
        assert!(o.take_failed().is_empty());
    }

    #[test]
    fn written_buffers_are_reused_without_reallocating() {
        let mut o = Outbox::default();
        push(&mut o, b"first");
        let Some(Next::Bytes(b)) = o.next() else {
            panic!()
        };
        let first = b.as_ptr();
        drain(&mut o, 100);
        push(&mut o, b"again");
        let Some(Next::Bytes(b)) = o.next() else {
            panic!()
        };
        assert_eq!(b.as_ptr(), first);
    }
}
