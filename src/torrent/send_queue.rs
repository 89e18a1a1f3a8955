//! A connection's outgoing bytes: small messages encoded into a buffer,
//! block payloads as shared slices of cached pieces (no copy).
//!
//! Messages other than blocks overtake the blocks still queued. On a slow
//! link a `have`, `reject` or `choke` waiting behind megabytes of piece data
//! reaches the peer seconds late, and the peer then picks pieces and spends
//! its requests on stale news. Bytes handed to the driver keep their order
//! (they may be in flight or encrypted already); the driver is handed at
//! most [`COMMIT_BYTES`] of blocks at a time, so that is the most a message
//! waits behind in this queue.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::Message;

/// Block bytes handed to the driver ahead of need: enough for one large
/// send on a fast link, little enough that a message queued after them
/// waits a fraction of a second on a slow one.
const COMMIT_BYTES: usize = 256 * 1024;

#[derive(Debug, Default)]
pub struct SendQueue {
    /// Handed to the driver, in the order they go out.
    committed: VecDeque<Bytes>,
    committed_len: usize,
    /// Messages other than blocks, in the order they were queued.
    control: BytesMut,
    /// Block messages: segments, each flagged if it ends its block.
    blocks: VecDeque<(Bytes, bool)>,
    /// Room the block headers are encoded into, shared by their segments.
    headers: BytesMut,
    len: usize,
}

impl SendQueue {
    pub fn push(&mut self, m: &Message<'_>) {
        let before = self.control.len();
        m.encode(&mut self.control);
        self.len += self.control.len() - before;
    }

    /// Bytes of our own that go out in order with the messages (a
    /// handshake).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.control.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Queues a block message: its encoded header, then its payload as
    /// shared bytes of a cached piece (not copied).
    pub fn push_block(&mut self, header: &[u8], payload: impl IntoIterator<Item = Bytes>) {
        self.headers.extend_from_slice(header);
        let header = self.headers.split().freeze();
        self.len += header.len();
        self.blocks.push_back((header, false));
        for part in payload {
            self.len += part.len();
            self.blocks.push_back((part, false));
        }
        if let Some(last) = self.blocks.back_mut() {
            last.1 = true;
        }
    }

    /// Drops the blocks not yet handed to the driver (a peer without the
    /// fast extension forgets its requests when choked); returns how many
    /// bytes that was.
    pub fn drop_blocks(&mut self) -> usize {
        let n: usize = self.blocks.drain(..).map(|(b, _)| b.len()).sum();
        self.len -= n;
        n
    }

    /// Bytes queued and not yet sent.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments to send next (up to `max`), as cheap clones the driver
    /// keeps alive while the kernel reads them. What this returns keeps its
    /// place in the queue until sent.
    pub fn front(&mut self, max: usize) -> Vec<Bytes> {
        if !self.control.is_empty() {
            let c = self.control.split().freeze();
            self.committed_len += c.len();
            self.committed.push_back(c);
        }
        while self.committed_len < COMMIT_BYTES
            && self.committed.len() < max
            && !self.blocks.is_empty()
        {
            // Whole blocks only, so a message never lands inside one.
            while let Some((seg, last)) = self.blocks.pop_front() {
                self.committed_len += seg.len();
                self.committed.push_back(seg);
                if last {
                    break;
                }
            }
        }
        self.committed.iter().take(max).cloned().collect()
    }

    /// `n` bytes from the front (of what `front` returned) were sent.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.committed.front_mut() else {
                return;
            };
            let k = n.min(front.len());
            front.advance(k);
            if front.is_empty() {
                self.committed.pop_front();
            }
            self.committed_len -= k;
            self.len -= k;
            n -= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(q: &mut SendQueue, max: usize) -> Vec<u8> {
        q.front(max).iter().flat_map(|b| b.to_vec()).collect()
    }

    #[test]
    fn messages_keep_their_order_across_partial_sends() {
        let mut q = SendQueue::default();
        q.push(&Message::Unchoke);
        q.push(&Message::Have(7));
        q.push(&Message::Choke);
        assert_eq!(q.len(), 5 + 9 + 5);
        let all = bytes(&mut q, 10);
        assert_eq!(&all[..5], &[0, 0, 0, 1, 1]);
        q.advance(7);
        assert_eq!(bytes(&mut q, 10), all[7..].to_vec());
        q.advance(all.len() - 7);
        assert!(q.is_empty() && q.front(10).is_empty());
    }

    #[test]
    fn a_message_overtakes_queued_blocks_but_not_a_started_one() {
        let mut q = SendQueue::default();
        let block = Bytes::from(vec![7u8; COMMIT_BYTES]);
        q.push_block(b"HEAD1", [block.slice(..100), block.slice(100..)]);
        q.push_block(b"HEAD2", [block.clone()]);
        let first = bytes(&mut q, 64);
        // One whole block is handed out (it reaches the commit bound).
        assert_eq!(first.len(), 5 + COMMIT_BYTES);
        q.advance(3);
        q.push(&Message::Have(9));
        let next = bytes(&mut q, 64);
        // The started block finishes, then the have, then the next block.
        assert_eq!(next.len(), 2 + COMMIT_BYTES + 9);
        assert_eq!(&next[..2], b"D1");
        assert_eq!(&next[2 + COMMIT_BYTES..], &[0, 0, 0, 5, 4, 0, 0, 0, 9]);
        q.advance(next.len());
        assert_eq!(&bytes(&mut q, 64)[..5], b"HEAD2");
        assert_eq!(q.len(), 5 + COMMIT_BYTES);
        assert_eq!(q.drop_blocks(), 0, "the handed-out block stays");
        q.advance(5 + COMMIT_BYTES);
        assert!(q.is_empty());
    }

    #[test]
    fn dropped_blocks_leave_the_messages() {
        let mut q = SendQueue::default();
        q.push_block(b"H", [Bytes::from_static(b"abc")]);
        q.push(&Message::Choke);
        assert_eq!(q.drop_blocks(), 4);
        assert_eq!(bytes(&mut q, 8), vec![0, 0, 0, 1, 0]);
    }
}
