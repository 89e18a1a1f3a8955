//! `--super-seed`: while we are the only seed, spend our upload on pieces
//! nobody has yet. Each piece's first copy goes to one peer at a time (the
//! first to ask; another asking meanwhile is rejected, BEP 6, and picks
//! something else), and a piece already sent out in full is refused while
//! some piece has never been sent: the peers that got it pass it on. Once
//! every piece has gone out once, requests are served as usual.
//!
//! This is a seeder-side equivalent of BEP 16 that needs nothing of the
//! leechers but the fast extension (peers without it are served as usual,
//! since they cannot be told of a refusal). Each shard keeps its own
//! account, so with several shards a piece may go out once per shard.

use std::time::{Duration, Instant};

use crate::bitfield::Bitfield;
use crate::torrent::ConnId;

/// A first copy not finished within this long is offered to others.
const OWNER_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Spread {
    /// Pieces sent out in full at least once.
    sent: Bitfield,
    /// Bytes of each piece sent while it was not yet in `sent`.
    bytes: Vec<u32>,
    owner: Vec<Option<(ConnId, Instant)>>,
}

impl Spread {
    pub fn new(pieces: u32) -> Spread {
        Spread {
            sent: Bitfield::new(pieces),
            bytes: vec![0; pieces as usize],
            owner: vec![None; pieces as usize],
        }
    }

    /// Whether every piece has gone out once (the policy is over).
    pub fn done(&self) -> bool {
        self.sent.is_full()
    }

    /// Whether `conn` may have blocks of `piece` now. `alive` tells whether
    /// a connection is still open.
    pub fn allow(
        &mut self,
        now: Instant,
        piece: u32,
        conn: ConnId,
        alive: impl Fn(ConnId) -> bool,
    ) -> bool {
        if self.done() {
            return true;
        }
        if self.sent.get(piece) {
            return false;
        }
        let Some(slot) = self.owner.get_mut(piece as usize) else {
            return false;
        };
        match *slot {
            Some((o, since))
                if o != conn && alive(o) && now.duration_since(since) < OWNER_TIMEOUT =>
            {
                false
            }
            Some((o, _)) if o == conn => true,
            _ => {
                *slot = Some((conn, now));
                true
            }
        }
    }

    /// `len` bytes of `piece` (of `piece_len`) were queued to a peer.
    pub fn served(&mut self, piece: u32, len: u32, piece_len: u32) {
        if self.done() || self.sent.get(piece) {
            return;
        }
        let Some(b) = self.bytes.get_mut(piece as usize) else {
            return;
        };
        *b = b.saturating_add(len);
        if *b >= piece_len {
            self.sent.set(piece);
            self.owner[piece as usize] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(n: u32) -> ConnId {
        ConnId {
            slot: n,
            generation: 0,
        }
    }

    #[test]
    fn each_piece_goes_out_once_before_any_twice() {
        let now = Instant::now();
        let mut s = Spread::new(2);
        let alive = |_| true;
        assert!(s.allow(now, 0, conn(1), alive));
        assert!(!s.allow(now, 0, conn(2), alive), "one first copy at a time");
        assert!(s.allow(now, 1, conn(2), alive));
        s.served(0, 16384, 32768);
        assert!(s.allow(now, 0, conn(1), alive));
        s.served(0, 16384, 32768);
        assert!(
            !s.allow(now, 0, conn(1), alive),
            "sent once: others pass it on"
        );
        assert!(!s.allow(now, 0, conn(3), alive));
        // An owner that went away, or took too long, gives the piece up.
        assert!(s.allow(now, 1, conn(3), |c| c != conn(2)));
        assert!(s.allow(now + OWNER_TIMEOUT, 1, conn(4), alive));
        s.served(1, 32768, 32768);
        assert!(s.done());
        assert!(s.allow(now, 0, conn(5), alive));
    }
}
