//! Finding the liar among the peers that sent a piece failing its hash
//! check, as libtorrent's smart ban does.
//!
//! A piece assembled from several peers' blocks that fails verification
//! tells us only that one of them lied. The digest of every block and who
//! sent it are kept, and the piece is fetched again from a single peer. When
//! that copy passes, each kept block whose digest differs from the good one
//! names its sender as a liar, and only that sender is banned: an honest
//! peer that happened to contribute (or shares the liar's IP) is not.

use std::collections::{HashMap, VecDeque};

use super::registry::PeerIdent;
use crate::wire::BLOCK_SIZE;

/// Failed pieces remembered at once (each costs 20 bytes and a peer per block).
const MAX_SUSPECT_PIECES: usize = 64;

/// The sender and digest of each block of a failed copy of a piece.
pub type BlockRecord = Vec<(Option<PeerIdent>, [u8; 20])>;

#[derive(Debug, Default)]
pub struct SmartBan {
    suspects: HashMap<u32, BlockRecord>,
    /// Oldest first, to bound memory.
    order: VecDeque<u32>,
}

/// SHA-1 of every block of a piece's bytes.
pub fn block_digests(data: &[u8]) -> Vec<[u8; 20]> {
    data.chunks(BLOCK_SIZE as usize)
        .map(crate::hash::sha1)
        .collect()
}

impl SmartBan {
    /// Remembers a failed copy of `piece` (the first one, if it fails again).
    pub fn record(&mut self, piece: u32, blocks: BlockRecord) {
        if self.suspects.contains_key(&piece) {
            return;
        }
        if self.order.len() >= MAX_SUSPECT_PIECES
            && let Some(old) = self.order.pop_front()
        {
            self.suspects.remove(&old);
        }
        self.suspects.insert(piece, blocks);
        self.order.push_back(piece);
    }

    pub fn is_suspect(&self, piece: u32) -> bool {
        self.suspects.contains_key(&piece)
    }

    /// A copy of `piece` passed its hash check with these block digests:
    /// the senders of blocks that differed lied. Forgets the piece.
    pub fn verified(&mut self, piece: u32, good: &[[u8; 20]]) -> Vec<PeerIdent> {
        let Some(record) = self.suspects.remove(&piece) else {
            return Vec::new();
        };
        self.order.retain(|&p| p != piece);
        let mut liars: Vec<PeerIdent> = Vec::new();
        for ((sender, bad), good) in record.iter().zip(good) {
            if bad != good
                && let Some(peer) = sender
                && !liars.contains(peer)
            {
                liars.push(*peer);
            }
        }
        liars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PeerId;

    fn peer(n: u8) -> PeerIdent {
        PeerIdent {
            ip: "127.0.0.1".parse().unwrap(),
            id: PeerId([n; 20]),
        }
    }

    #[test]
    fn only_the_sender_of_a_differing_block_is_named() {
        let good_piece = vec![1u8; 3 * BLOCK_SIZE as usize];
        let mut bad_piece = good_piece.clone();
        bad_piece[BLOCK_SIZE as usize + 5] ^= 0xff;
        let bad = block_digests(&bad_piece);
        let (honest, liar) = (peer(1), peer(2));
        let mut sb = SmartBan::default();
        sb.record(
            9,
            vec![
                (Some(honest), bad[0]),
                (Some(liar), bad[1]),
                (Some(honest), bad[2]),
            ],
        );
        assert!(sb.is_suspect(9));
        assert_eq!(sb.verified(9, &block_digests(&good_piece)), vec![liar]);
        assert!(!sb.is_suspect(9), "forgotten once settled");
        assert!(sb.verified(9, &block_digests(&good_piece)).is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut sb = SmartBan::default();
        for p in 0..(MAX_SUSPECT_PIECES as u32 + 10) {
            sb.record(p, vec![(None, [0; 20])]);
        }
        assert_eq!(sb.suspects.len(), MAX_SUSPECT_PIECES);
        assert!(!sb.is_suspect(0) && sb.is_suspect(MAX_SUSPECT_PIECES as u32 + 9));
    }
}
