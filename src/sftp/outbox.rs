//! The bytes queued for the server, as a queue of buffers.
//!
//! One flat buffer would have to move its unwritten tail to the front now and then; with
//! a window of WRITEs queued that tail is most of the data, so file data would be copied
//! twice in user space. Here each large WRITE gets a buffer of its own, small requests
//! share one, and written buffers are reused, so nothing is moved and steady streaming
//! allocates nothing.

use std::collections::VecDeque;

/// Requests smaller than this share a buffer; a larger one gets a buffer of its own.
const SHARED_BUFFER: usize = 64 * 1024;

/// Written buffers kept for reuse: a window of the largest WRITEs (255 KiB) in a few.
const SPARE_BUFFERS: usize = 8;

#[derive(Debug, Default)]
pub struct Outbox {
    /// Never holds an empty buffer, so a non-empty queue always has bytes to write.
    queue: VecDeque<Vec<u8>>,
    /// How much of the front buffer has already been written.
    written: usize,
    spare: Vec<Vec<u8>>,
}

impl Outbox {
    /// Appends one message: `encode` adds its bytes (about `size` of them, which only
    /// chooses the buffer) to the end of the output. If it fails, nothing is queued.
    pub fn push<E>(
        &mut self,
        size: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let shares = self
            .queue
            .back()
            .is_some_and(|b| b.capacity() - b.len() >= size || b.len() + size <= SHARED_BUFFER);
        if !shares {
            let mut buffer = self.spare.pop().unwrap_or_default();
            buffer.reserve(size.max(SHARED_BUFFER));
            self.queue.push_back(buffer);
        }
        let back = self.queue.back_mut().expect("just ensured");
        let start = back.len();
        let result = encode(back);
        if result.is_err() {
            back.truncate(start);
            if back.is_empty() {
                let buffer = self.queue.pop_back().expect("it is the back");
                self.recycle(buffer);
            }
        }
        result
    }

    /// The next bytes to write (not necessarily all that is queued); empty when nothing is.
    pub fn next_bytes(&self) -> &[u8] {
        self.queue.front().map_or(&[], |b| &b[self.written..])
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Marks `n` bytes of [`Outbox::next_bytes`] as written.
    pub fn consume(&mut self, n: usize) {
        let Some(front) = self.queue.front() else {
            return;
        };
        self.written = (self.written + n).min(front.len());
        if self.written == front.len() {
            let buffer = self.queue.pop_front().expect("it is the front");
            self.written = 0;
            self.recycle(buffer);
        }
    }

    fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            buffer.clear();
            self.spare.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(o: &mut Outbox, bytes: &[u8]) {
        o.push::<()>(bytes.len(), |b| {
            b.extend_from_slice(bytes);
            Ok(())
        })
        .unwrap();
    }

    /// Everything queued, written out in the pieces `next_bytes` gives.
    fn drain(o: &mut Outbox) -> Vec<u8> {
        let mut all = Vec::new();
        while !o.is_empty() {
            let n = o.next_bytes().len();
            all.extend_from_slice(o.next_bytes());
            o.consume(n);
        }
        all
    }

    #[test]
    fn bytes_come_out_in_the_order_they_were_queued_across_buffers() {
        let mut o = Outbox::default();
        let big = vec![7u8; SHARED_BUFFER + 1];
        push(&mut o, b"ab");
        push(&mut o, &big);
        push(&mut o, b"cd");
        let mut want = b"ab".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"cd");
        assert_eq!(drain(&mut o), want);
        assert!(o.next_bytes().is_empty());
    }

    #[test]
    fn small_messages_share_a_buffer_and_a_large_one_gets_its_own() {
        let mut o = Outbox::default();
        push(&mut o, b"ab");
        push(&mut o, b"cd");
        assert_eq!(o.next_bytes(), b"abcd");
        push(&mut o, &vec![1u8; 2 * SHARED_BUFFER]);
        assert_eq!(o.next_bytes(), b"abcd");
        assert_eq!(o.queue.len(), 2);
    }

    #[test]
    fn a_partly_written_buffer_resumes_where_it_stopped() {
        let mut o = Outbox::default();
        push(&mut o, b"abcdef");
        o.consume(2);
        assert_eq!(o.next_bytes(), b"cdef");
        push(&mut o, b"gh");
        assert_eq!(drain(&mut o), b"cdefgh");
    }

    #[test]
    fn a_failed_encoding_leaves_nothing_behind() {
        let mut o = Outbox::default();
        push(&mut o, b"ab");
        let r = o.push(3, |b| {
            b.push(b'x');
            Err("short read")
        });
        assert_eq!(r, Err("short read"));
        assert_eq!(drain(&mut o), b"ab");
        let r = o.push(2 * SHARED_BUFFER, |b| {
            b.push(b'x');
            Err("short read")
        });
        assert_eq!(r, Err("short read"));
        assert!(o.is_empty());
    }

    #[test]
    fn written_buffers_are_reused_without_reallocating() {
        let mut o = Outbox::default();
        let big = vec![1u8; 4 * SHARED_BUFFER];
        push(&mut o, &big);
        let first = o.next_bytes().as_ptr();
        drain(&mut o);
        push(&mut o, &big);
        assert_eq!(o.next_bytes().as_ptr(), first);
    }
}
