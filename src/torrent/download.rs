//! A piece being assembled on one shard.

use super::ConnId;
use super::registry::PeerIdent;
use crate::buffer::PieceBuf;
use crate::wire::{BLOCK_SIZE, BlockRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Missing,
    /// Requested from this many peers (more than one only in endgame).
    Requested(u8),
    Received,
}

/// What the download is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Receiving,
    /// The buffer is with the hasher.
    Hashing,
    /// The buffer is with the disk.
    Writing,
}

#[derive(Debug)]
pub struct Download {
    pub piece: u32,
    pub len: u32,
    /// The piece's bytes; `None` while hashing or writing.
    pub buf: Option<PieceBuf>,
    blocks: Vec<Block>,
    received: u32,
    /// First block that may still be missing (requests go out in order).
    cursor: u32,
    pub stage: Stage,
    /// Peers that sent blocks of it, blamed if the hash fails.
    pub contributors: Vec<PeerIdent>,
    /// Who sent each block: an index into `contributors` plus one (0: not
    /// received), so a failed piece can say which peer sent which block.
    senders: Vec<u8>,
    /// An earlier copy failed with several contributors: this one comes
    /// from a single peer (`owner`), so that it can settle who lied.
    pub exclusive: bool,
    pub owner: Option<ConnId>,
    /// Bytes reserved from the shared buffer budget.
    pub reserved: u64,
}

impl Download {
    pub fn new(piece: u32, len: u32, mut buf: PieceBuf, reserved: u64) -> Download {
        buf.set_len(len as usize);
        let n = len.div_ceil(BLOCK_SIZE) as usize;
        Download {
            piece,
            len,
            buf: Some(buf),
            blocks: vec![Block::Missing; n],
            received: 0,
            cursor: 0,
            stage: Stage::Receiving,
            contributors: Vec::new(),
            senders: vec![0; n],
            exclusive: false,
            owner: None,
            reserved,
        }
    }

    fn block_ref(&self, i: u32) -> BlockRef {
        let begin = i * BLOCK_SIZE;
        BlockRef {
            piece: self.piece,
            begin,
            len: BLOCK_SIZE.min(self.len - begin),
        }
    }

    /// The block index for a block reference, if it is one of ours exactly.
    fn index(&self, b: &BlockRef) -> Option<usize> {
        if b.piece != self.piece || !b.begin.is_multiple_of(BLOCK_SIZE) {
            return None;
        }
        let i = b.begin / BLOCK_SIZE;
        (i < self.blocks.len() as u32 && self.block_ref(i) == *b).then_some(i as usize)
    }

    /// The next block nobody has been asked for, marked requested.
    pub fn next_missing(&mut self) -> Option<BlockRef> {
        if self.stage != Stage::Receiving {
            return None;
        }
        while (self.cursor as usize) < self.blocks.len() {
            let i = self.cursor;
            if self.blocks[i as usize] == Block::Missing {
                self.blocks[i as usize] = Block::Requested(1);
                self.cursor += 1;
                return Some(self.block_ref(i));
            }
            self.cursor += 1;
        }
        None
    }

    /// Whether a block nobody has been asked for is left.
    pub fn has_missing(&mut self) -> bool {
        if self.stage != Stage::Receiving {
            return false;
        }
        // No block before the cursor is missing: move it up to the next one.
        while self
            .blocks
            .get(self.cursor as usize)
            .is_some_and(|b| *b != Block::Missing)
        {
            self.cursor += 1;
        }
        (self.cursor as usize) < self.blocks.len()
    }

    /// Endgame: a block already requested from someone, not yet received,
    /// for which `skip` (the asking peer's own requests) does not hold.
    pub fn next_duplicate(&mut self, skip: impl Fn(&BlockRef) -> bool) -> Option<BlockRef> {
        if self.stage != Stage::Receiving {
            return None;
        }
        for i in 0..self.blocks.len() {
            if let Block::Requested(n) = self.blocks[i] {
                let b = self.block_ref(i as u32);
                if n < 2 && !skip(&b) {
                    self.blocks[i] = Block::Requested(n + 1);
                    return Some(b);
                }
            }
        }
        None
    }

    /// A request for `b` is no longer outstanding with one peer (rejected,
    /// choked away, snubbed, peer gone). When nobody else has it, it is
    /// missing again.
    pub fn unrequest(&mut self, b: &BlockRef) {
        if let Some(i) = self.index(b)
            && let Block::Requested(n) = self.blocks[i]
        {
            self.blocks[i] = if n > 1 {
                Block::Requested(n - 1)
            } else {
                Block::Missing
            };
            if self.blocks[i] == Block::Missing {
                self.cursor = self.cursor.min(i as u32);
            }
        }
    }

    /// Whether `b` is a block of this piece still to be received.
    pub fn wants(&self, b: &BlockRef) -> bool {
        self.stage == Stage::Receiving
            && self
                .index(b)
                .is_some_and(|i| self.blocks[i] != Block::Received)
    }

    /// Copies a run of a block's data into place.
    pub fn write(&mut self, b: &BlockRef, offset: u32, data: &[u8]) {
        if let Some(buf) = &mut self.buf {
            let at = (b.begin + offset) as usize;
            if let Some(dst) = buf.get_mut(at..at + data.len()) {
                dst.copy_from_slice(data);
            }
        }
    }

    /// Marks a block complete; returns true if that completes the piece.
    pub fn received(&mut self, b: &BlockRef, from: PeerIdent) -> bool {
        let Some(i) = self.index(b) else { return false };
        if self.blocks[i] == Block::Received {
            return false;
        }
        self.blocks[i] = Block::Received;
        self.received += 1;
        let k = match self.contributors.iter().position(|c| *c == from) {
            Some(k) => k,
            None => {
                self.contributors.push(from);
                self.contributors.len() - 1
            }
        };
        // Past 255 senders of one piece, later ones go unnamed.
        self.senders[i] = u8::try_from(k + 1).unwrap_or(0);
        self.received as usize == self.blocks.len()
    }

    /// The peer that sent each block.
    pub fn senders(&self) -> impl Iterator<Item = Option<PeerIdent>> + '_ {
        self.senders
            .iter()
            .map(|&k| k.checked_sub(1).map(|k| self.contributors[k as usize]))
    }

    /// Whether peer `id` may be asked for blocks of this piece.
    pub fn open_to(&self, id: ConnId) -> bool {
        !self.exclusive || self.owner.is_none_or(|o| o == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: PeerIdent = PeerIdent {
        ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        id: crate::wire::PeerId([1; 20]),
    };

    #[test]
    fn requests_in_order_and_completes() {
        let mut d = Download::new(3, 40_000, PieceBuf::new(40_000, 0), 0);
        let a = d.next_missing().unwrap();
        let b = d.next_missing().unwrap();
        let c = d.next_missing().unwrap();
        assert_eq!(
            (a.begin, b.begin, c.begin, c.len),
            (0, 16384, 32768, 40_000 - 32768)
        );
        assert!(d.next_missing().is_none() && !d.has_missing());
        d.unrequest(&b);
        assert!(d.has_missing());
        assert_eq!(d.next_missing(), Some(b));
        d.write(&a, 0, &[1; 16384]);
        assert!(!d.received(&a, IP));
        assert!(!d.received(&a, IP), "a duplicate does not count twice");
        assert!(!d.received(&b, IP));
        assert!(!d.wants(&a) && d.wants(&c));
        assert!(d.received(&c, IP));
        assert_eq!(d.contributors, vec![IP]);
        assert_eq!(d.senders().collect::<Vec<_>>(), vec![Some(IP); 3]);
        assert_eq!(&d.buf.as_ref().unwrap()[..3], &[1, 1, 1]);
    }

    #[test]
    fn endgame_duplicates_and_foreign_blocks() {
        let mut d = Download::new(0, 20_000, PieceBuf::new(20_000, 0), 0);
        let a = d.next_missing().unwrap();
        let _b = d.next_missing().unwrap();
        assert_eq!(d.next_duplicate(|x| *x == a).map(|x| x.begin), Some(16384));
        assert_eq!(d.next_duplicate(|_| false).map(|x| x.begin), Some(0));
        assert_eq!(
            d.next_duplicate(|_| false),
            None,
            "at most two requests per block"
        );
        let odd = BlockRef {
            piece: 0,
            begin: 100,
            len: 16384,
        };
        assert!(!d.wants(&odd));
        assert!(!d.received(&odd, IP));
        let other = BlockRef {
            piece: 1,
            begin: 0,
            len: 16384,
        };
        assert!(!d.wants(&other));
    }
}
