//! `--super-seed`: while we are the only seed, spend our upload on pieces
//! nobody has yet (BEP 16's aim, by its means).
//!
//! A peer with the fast extension is greeted with have-none, not have-all,
//! and is then shown a few pieces at a time (`have`), each one no other
//! peer has been given: only those can it ask us for, so it never spends
//! our upload on a piece the swarm already has. When the last byte of a
//! shown piece is queued to it, it is shown another. A piece shown to a
//! peer that does not take it in time, that we choke or that leaves, is
//! shown to the next one. A peer with nothing new left to take waits, so
//! that the last first copies get our whole upload. Once every piece has
//! gone out, every peer is shown everything and served as usual.
//!
//! As in BEP 16, a peer is shown new pieces only as fast as it passes
//! them on (another peer announces a piece it got first from us), but with
//! a window of two such pieces rather than one, so that the seed is not
//! left idle waiting (and not at all for a lone peer, or while our upload
//! is idle). Peers without the fast extension are served as usual. Each
//! shard keeps its own account, so with several shards a piece may go out
//! once per shard.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::bitfield::Bitfield;
use crate::torrent::ConnId;

/// A shown piece not finished within this long is shown to others too.
const OWNER_TIMEOUT: Duration = Duration::from_secs(30);

/// A first copy not seen passed on within this long counts as passed.
const PASS_TIMEOUT: Duration = Duration::from_secs(10);

/// First copies a peer may hold that no other peer has announced: a peer
/// is shown new pieces only as fast as it passes them on, so a slow host
/// does not end up the only source of many pieces. (Only while another
/// peer in our view could take them: a lone leecher is not held back.)
const UNPASSED: usize = 2;

/// Bytes a lone peer is shown ahead, at least two pieces (one in
/// transfer, one to start next): enough that its requests never run dry
/// between pieces, also with small pieces on a fast link. Among n peers
/// each is shown an n-th of it, at least one piece: our upload is shared
/// among them anyway, and fewer first copies under way at once measured
/// better (a 16-host fleet on 20 Mbit/s links: 1.16-1.23 of the lower
/// bound against 1.24-1.32, perf/RESULTS.md run 20).
const AHEAD_BYTES: u32 = 2 << 20;

pub(super) struct Spread {
    /// Pieces sent out in full at least once.
    sent: Bitfield,
    /// Bytes of each piece queued while it was not yet in `sent`.
    bytes: Vec<u32>,
    /// Who a piece not yet sent is shown to, and since when.
    owner: Vec<Option<(ConnId, Instant)>>,
    /// Peers greeted with have-none and shown pieces one by one.
    peers: HashMap<ConnId, Shown>,
    /// Pieces a lone peer is shown ahead (`AHEAD_BYTES`).
    ahead: usize,
    /// Where the search for a piece to show starts (pieces go out in order
    /// of index otherwise, which reads the disk in order too).
    cursor: u32,
    /// Our upload is idle (`set_idle`): peers are shown pieces whether or
    /// not they passed theirs on.
    idle: bool,
}

struct Shown {
    pieces: Bitfield,
    /// Shown, owned by this peer and not yet sent.
    open: Vec<u32>,
    /// First copies it got that no other peer has announced yet.
    unpassed: Vec<(u32, Instant)>,
}

/// What a connection should be told.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Show {
    /// These pieces, with `have`.
    Pieces(Vec<u32>),
    /// Every piece it has not been shown, with `have`: the peer is served
    /// as usual from now on.
    Rest(Vec<u32>),
}

impl Spread {
    pub fn new(pieces: u32, piece_length: u32) -> Spread {
        Spread {
            ahead: (AHEAD_BYTES / piece_length.max(1)).max(2) as usize,
            sent: Bitfield::new(pieces),
            bytes: vec![0; pieces as usize],
            owner: vec![None; pieces as usize],
            peers: HashMap::new(),
            cursor: 0,
            idle: false,
        }
    }

    /// Whether every piece has gone out once (the policy is over).
    pub fn done(&self) -> bool {
        self.sent.is_full()
    }

    /// A peer with the fast extension connected: true if it is to be
    /// greeted with have-none and shown pieces (`top_up`).
    pub fn join(&mut self, conn: ConnId) -> bool {
        if self.done() {
            return false;
        }
        let shown = Shown {
            pieces: Bitfield::new(self.sent.len()),
            open: Vec::new(),
            unpassed: Vec::new(),
        };
        self.peers.insert(conn, shown);
        true
    }

    pub fn leave(&mut self, conn: ConnId) {
        if let Some(p) = self.peers.remove(&conn) {
            self.release_pieces(conn, &p.open);
        }
    }

    /// We choke `conn`: its open pieces go to the next peer.
    pub fn release(&mut self, conn: ConnId) {
        if let Some(p) = self.peers.get_mut(&conn) {
            let open = std::mem::take(&mut p.open);
            self.release_pieces(conn, &open);
        }
    }

    fn release_pieces(&mut self, conn: ConnId, pieces: &[u32]) {
        for &piece in pieces {
            if let Some(slot) = self.owner.get_mut(piece as usize)
                && slot.is_some_and(|(o, _)| o == conn)
            {
                *slot = None;
            }
        }
    }

    /// Whether `conn` may be sent blocks of `piece`: a peer in our view is
    /// served only what it was shown and nobody has had yet (a piece it
    /// gave up while choked may have gone to another since).
    pub fn allow(&self, piece: u32, conn: ConnId) -> bool {
        self.peers
            .get(&conn)
            .is_none_or(|p| p.pieces.get(piece) && !self.sent.get(piece))
    }

    /// Told once a second whether nobody we unchoke has anything to take
    /// from us: waiting for first copies to be passed on (`UNPASSED`) must
    /// not leave our upload idle (in a 1-GiB fleet whose hosts passed
    /// pieces on slowly it idled for seconds at a time from the third
    /// minute on, perf/RESULTS.md run 21).
    pub fn set_idle(&mut self, idle: bool) {
        self.idle = idle;
    }

    /// Pieces to show `conn` so that it has `ahead` open, or the rest of
    /// them once every piece has gone out; `None` if it is not in our view
    /// or there is nothing to show it now.
    pub fn top_up(&mut self, now: Instant, conn: ConnId) -> Option<Show> {
        let sent = &self.sent;
        let crowd = self.peers.len() > 1;
        if sent.is_full() {
            let p = self.peers.remove(&conn)?;
            let rest = (0..sent.len()).filter(|&x| !p.pieces.get(x)).collect();
            return Some(Show::Rest(rest));
        }
        let ahead = (self.ahead / self.peers.len().max(1)).max(1);
        let p = self.peers.get_mut(&conn)?;
        p.open
            .retain(|&x| !sent.get(x) && self.owner[x as usize].is_some_and(|(o, _)| o == conn));
        p.unpassed
            .retain(|&(_, at)| now.duration_since(at) < PASS_TIMEOUT);
        if crowd && !self.idle && p.unpassed.len() >= UNPASSED {
            return None;
        }
        let mut new = Vec::new();
        let n = self.sent.len();
        let (start, mut k) = (self.cursor, 0);
        while p.open.len() < ahead && k < n {
            let piece = (start + k) % n;
            k += 1;
            let free = self.owner[piece as usize]
                .is_none_or(|(o, since)| o != conn && now.duration_since(since) >= OWNER_TIMEOUT);
            if self.sent.get(piece) || !free || p.pieces.get(piece) {
                continue;
            }
            self.owner[piece as usize] = Some((conn, now));
            p.pieces.set(piece);
            p.open.push(piece);
            new.push(piece);
            self.cursor = (piece + 1) % n;
        }
        // With nothing new to give it, it waits (not interested, so not
        // unchoked): the last first copies get our whole upload.
        (!new.is_empty()).then_some(Show::Pieces(new))
    }

    /// `len` bytes of `piece` (of `piece_len`) were queued to `conn`; true
    /// if that completed its first copy.
    pub fn served(
        &mut self,
        now: Instant,
        conn: ConnId,
        piece: u32,
        len: u32,
        piece_len: u32,
    ) -> bool {
        if self.sent.get(piece) {
            return false;
        }
        let Some(b) = self.bytes.get_mut(piece as usize) else {
            return false;
        };
        *b = b.saturating_add(len);
        if *b < piece_len {
            return false;
        }
        self.sent.set(piece);
        self.owner[piece as usize] = None;
        if let Some(p) = self.peers.get_mut(&conn) {
            p.unpassed.push((piece, now));
        }
        true
    }

    /// Peer `by` announced `piece`: whoever got its first copy from us has
    /// passed it on. Returns that peer, to be shown more.
    pub fn passed(&mut self, piece: u32, by: ConnId) -> Option<ConnId> {
        let (&holder, p) = self
            .peers
            .iter_mut()
            .find(|(c, p)| **c != by && p.unpassed.iter().any(|&(x, _)| x == piece))?;
        p.unpassed.retain(|&(x, _)| x != piece);
        Some(holder)
    }

    /// The peers still in our view (to top up when a piece completes).
    pub fn viewers(&self) -> Vec<ConnId> {
        self.peers.keys().copied().collect()
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

    /// Pieces of 512 KiB: two peers are each shown two ahead.
    const HALF: u32 = 1 << 19;

    fn shown(s: Option<Show>) -> Vec<u32> {
        match s {
            Some(Show::Pieces(p)) => p,
            other => panic!("expected pieces, got {other:?}"),
        }
    }

    #[test]
    fn many_peers_share_the_bytes_shown_ahead() {
        let now = Instant::now();
        for (piece_len, alone, each_of_4) in [(1 << 20, 2, 1), (16 << 10, 128, 32)] {
            let mut s = Spread::new(1024, piece_len);
            s.join(conn(9));
            assert_eq!(shown(s.top_up(now, conn(9))).len(), alone);
            for i in 1..=3 {
                s.join(conn(i));
            }
            for i in 1..=3 {
                assert_eq!(shown(s.top_up(now, conn(i))).len(), each_of_4);
            }
        }
    }

    #[test]
    fn each_peer_is_shown_pieces_nobody_else_was() {
        let now = Instant::now();
        let mut s = Spread::new(5, HALF);
        assert!(s.join(conn(1)) && s.join(conn(2)));
        assert_eq!(shown(s.top_up(now, conn(1))), vec![0, 1]);
        assert_eq!(shown(s.top_up(now, conn(2))), vec![2, 3]);
        assert!(s.allow(0, conn(1)) && !s.allow(0, conn(2)));
        assert!(!s.allow(4, conn(1)), "not shown");
        assert_eq!(s.top_up(now, conn(1)), None, "two open already");
        // Piece 0 sent in full: peer 1 gets the last fresh piece.
        assert!(!s.served(now, conn(0), 0, 16384, 32768));
        assert!(s.served(now, conn(0), 0, 16384, 32768));
        assert!(!s.allow(0, conn(1)), "sent once: others pass it on");
        assert_eq!(shown(s.top_up(now, conn(1))), vec![4]);
        // Peer 2 leaves: its pieces go to whoever asks next.
        s.leave(conn(2));
        assert!(
            s.allow(3, conn(2)),
            "a peer not in our view is served as usual"
        );
        s.join(conn(3));
        assert_eq!(shown(s.top_up(now, conn(3))), vec![2, 3]);
    }

    #[test]
    fn a_peer_waits_for_the_last_first_copies_then_is_shown_the_rest() {
        let now = Instant::now();
        let mut s = Spread::new(3, HALF);
        s.join(conn(1));
        s.join(conn(2));
        assert_eq!(shown(s.top_up(now, conn(1))), vec![0, 1]);
        assert_eq!(shown(s.top_up(now, conn(2))), vec![2]);
        assert!(s.served(now, conn(0), 2, 10, 10));
        assert_eq!(s.top_up(now, conn(2)), None, "nothing new: it waits");
        assert!(!s.allow(0, conn(2)));
        assert!(s.served(now, conn(0), 0, 10, 10) && s.served(now, conn(0), 1, 10, 10));
        assert!(s.done());
        assert_eq!(s.top_up(now, conn(2)), Some(Show::Rest(vec![0, 1])));
        assert!(s.allow(0, conn(2)));
        assert!(!s.join(conn(3)));
    }

    #[test]
    fn a_peer_is_shown_more_only_as_it_passes_pieces_on() {
        let now = Instant::now();
        let mut s = Spread::new(8, HALF);
        s.join(conn(1));
        s.join(conn(2));
        assert_eq!(shown(s.top_up(now, conn(1))), vec![0, 1]);
        assert!(s.served(now, conn(1), 0, 10, 10));
        assert_eq!(shown(s.top_up(now, conn(1))), vec![2]);
        assert!(s.served(now, conn(1), 1, 10, 10));
        assert_eq!(
            s.top_up(now, conn(1)),
            None,
            "two first copies not passed on"
        );
        assert_eq!(s.passed(0, conn(1)), None, "its own have does not count");
        assert_eq!(s.passed(0, conn(2)), Some(conn(1)));
        assert_eq!(shown(s.top_up(now, conn(1))), vec![3]);
        // A first copy not seen passed on for long counts as passed.
        assert!(s.served(now, conn(1), 2, 10, 10));
        assert_eq!(s.top_up(now, conn(1)), None);
        assert_eq!(shown(s.top_up(now + PASS_TIMEOUT, conn(1))), vec![4]);
        // Alone, a peer is not held back (nobody could take its pieces)
        // and is shown all a lone peer is shown ahead.
        s.leave(conn(2));
        assert!(s.served(now, conn(1), 3, 10, 10));
        assert!(s.served(now, conn(1), 4, 10, 10));
        assert_eq!(shown(s.top_up(now, conn(1))), vec![5, 6, 7]);
    }

    #[test]
    fn an_idle_upload_does_not_wait_for_pieces_to_be_passed_on() {
        let now = Instant::now();
        let mut s = Spread::new(8, HALF);
        s.join(conn(1));
        s.join(conn(2));
        assert_eq!(shown(s.top_up(now, conn(1))), vec![0, 1]);
        assert!(s.served(now, conn(1), 0, 10, 10) && s.served(now, conn(1), 1, 10, 10));
        assert_eq!(s.top_up(now, conn(1)), None, "two not passed on");
        s.set_idle(true);
        assert_eq!(shown(s.top_up(now, conn(1))), vec![2, 3]);
        s.set_idle(false);
        assert!(s.served(now, conn(1), 2, 10, 10));
        assert_eq!(s.top_up(now, conn(1)), None, "busy again: it waits");
    }

    #[test]
    fn choked_or_slow_owners_give_their_pieces_up() {
        let now = Instant::now();
        let mut s = Spread::new(4, HALF);
        s.join(conn(1));
        s.join(conn(2));
        assert_eq!(shown(s.top_up(now, conn(1))), vec![0, 1]);
        s.release(conn(1));
        assert_eq!(shown(s.top_up(now, conn(2))), vec![2, 3]);
        s.release(conn(2));
        // Three peers: one piece each.
        s.join(conn(3));
        assert_eq!(shown(s.top_up(now, conn(3))), vec![0]);
        // Peers 1 and 2, unchoked again, are shown what the other gave up.
        assert_eq!(shown(s.top_up(now, conn(1))), vec![2]);
        assert_eq!(shown(s.top_up(now, conn(2))), vec![1]);
        s.join(conn(4));
        assert_eq!(shown(s.top_up(now, conn(4))), vec![3]);
        // Every piece is shown: a newcomer waits, unless an owner keeps
        // its piece too long.
        s.join(conn(5));
        assert_eq!(s.top_up(now, conn(5)), None);
        assert_eq!(shown(s.top_up(now + OWNER_TIMEOUT, conn(5))), vec![0]);
    }
}
