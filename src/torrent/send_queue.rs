//! A connection's outgoing bytes: small messages encoded into a growing
//! buffer, block payloads as shared slices of cached pieces (no copy).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::Message;

#[derive(Debug, Default)]
pub struct SendQueue {
    segments: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl SendQueue {
    pub fn push(&mut self, m: &Message<'_>) {
        let before = self.tail.len();
        m.encode(&mut self.tail);
        self.len += self.tail.len() - before;
    }

    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Queues shared bytes (a block of a cached piece) without copying.
    pub fn push_shared(&mut self, bytes: Bytes) {
        self.flush_tail();
        self.len += bytes.len();
        self.segments.push_back(bytes);
    }

    fn flush_tail(&mut self) {
        if !self.tail.is_empty() {
            self.segments.push_back(self.tail.split().freeze());
        }
    }

    /// Bytes queued and not yet sent.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments to send next (up to `max`), as cheap clones the driver
    /// keeps alive while the kernel reads them.
    pub fn front(&mut self, max: usize) -> Vec<Bytes> {
        self.flush_tail();
        self.segments.iter().take(max).cloned().collect()
    }

    /// `n` bytes from the front were sent.
    pub fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                // Bytes still in the tail were sent only if flushed first.
                self.tail.advance(n.min(self.tail.len()));
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.segments.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_shared_bytes_keep_order_across_partial_sends() {
        let mut q = SendQueue::default();
        q.push(&Message::Unchoke);
        q.push(&Message::Have(7));
        q.push_shared(Bytes::from_static(b"BLOCK"));
        q.push(&Message::Choke);
        assert_eq!(q.len(), 5 + 9 + 5 + 5);
        let all: Vec<u8> = q.front(10).iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(&all[..5], &[0, 0, 0, 1, 1]);
        assert_eq!(&all[14..19], b"BLOCK");
        q.advance(16);
        let rest: Vec<u8> = q.front(10).iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(rest, all[16..].to_vec());
        q.advance(rest.len());
        assert!(q.is_empty() && q.front(10).is_empty());
    }
}
