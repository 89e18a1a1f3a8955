//! The piece picker: which piece a peer should start on next.
//!
//! Rarest first, ties broken at random, so a swarm spreads every piece early.
//! Pieces we still need and nobody is downloading sit in buckets by how many
//! peers have them; a `have` moves one piece between buckets in O(1), and a
//! pick for a peer that has everything is O(1) too. Peers that have every
//! piece are counted apart (`seeds`): they raise every piece alike, which
//! changes no order.
//!
//! Pieces have a priority (from their files: high, normal or low, or not
//! wanted at all): a piece of higher priority is picked before any of lower
//! priority, rarest first within each.
//!
//! Block-level state of a piece in progress belongs to the shard downloading
//! it; the picker tracks pieces only, so it is touched once per piece, not
//! once per block.

use crate::bitfield::Bitfield;

/// What a peer has, as far as picking cares.
#[derive(Clone, Copy)]
pub enum PeerPieces<'a> {
    All,
    Some(&'a Bitfield),
}

impl PeerPieces<'_> {
    pub fn has(&self, piece: u32) -> bool {
        match self {
            PeerPieces::All => true,
            PeerPieces::Some(b) => b.get(piece),
        }
    }
}

/// How much a piece is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Not wanted: never picked, not needed for completion.
    Skip,
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    /// Index of the picking tier (higher first); `None` for `Skip`.
    fn tier(self) -> Option<usize> {
        match self {
            Priority::Skip => None,
            Priority::Low => Some(2),
            Priority::Normal => Some(1),
            Priority::High => Some(0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceState {
    /// Needed, and in the bucket of its availability.
    Wanted,
    /// Not needed (its files are not wanted).
    Skipped,
    /// Being downloaded by this many downloaders (more than one only in endgame).
    InProgress(u8),
    Have,
}

/// Most concurrent downloads of one piece in endgame.
const MAX_ENDGAME_DOWNLOADERS: u8 = 2;

pub struct Picker {
    state: Vec<PieceState>,
    /// Peers (other than seeds) that have each piece.
    availability: Vec<u32>,
    /// Peers that have every piece.
    seeds: u32,
    /// `buckets[tier][a]` holds the wanted pieces of priority tier `tier`
    /// (high, normal, low) and availability `a`, unordered.
    buckets: [Vec<Vec<u32>>; 3],
    priority: Vec<Priority>,
    /// Pieces wanted in all (had or not).
    wanted: u32,
    /// Index of each wanted piece in its bucket.
    position: Vec<u32>,
    have: u32,
    in_progress: u32,
    /// Breaks ties (seeded, so a simulated run replays).
    rng: fastrand::Rng,
}

impl Picker {
    pub fn new(have: &Bitfield, seed: u64) -> Picker {
        Self::with_priorities(have, None, seed)
    }

    /// A picker for a torrent having `have`, with each piece's priority
    /// (`None`: every piece at normal priority).
    pub fn with_priorities(have: &Bitfield, priority: Option<&[Priority]>, seed: u64) -> Picker {
        let n = have.len();
        let mut p = Picker {
            state: vec![PieceState::Wanted; n as usize],
            availability: vec![0; n as usize],
            seeds: 0,
            buckets: [vec![Vec::new()], vec![Vec::new()], vec![Vec::new()]],
            priority: match priority {
                Some(pr) if pr.len() == n as usize => pr.to_vec(),
                _ => vec![Priority::Normal; n as usize],
            },
            wanted: 0,
            position: vec![0; n as usize],
            have: 0,
            in_progress: 0,
            rng: fastrand::Rng::with_seed(seed),
        };
        for i in 0..n {
            let skip = p.priority[i as usize] == Priority::Skip;
            if !skip {
                p.wanted += 1;
            }
            if have.get(i) {
                p.state[i as usize] = PieceState::Have;
                if !skip {
                    p.have += 1;
                }
            } else if skip {
                p.state[i as usize] = PieceState::Skipped;
            } else {
                p.insert(i);
            }
        }
        p
    }

    pub fn piece_count(&self) -> u32 {
        self.state.len() as u32
    }

    /// Wanted pieces had.
    pub fn have_count(&self) -> u32 {
        self.have
    }

    /// Pieces wanted in all.
    pub fn wanted_count(&self) -> u32 {
        self.wanted
    }

    /// Whether every wanted piece is had.
    pub fn is_complete(&self) -> bool {
        self.have == self.wanted
    }

    pub fn has(&self, piece: u32) -> bool {
        matches!(self.state.get(piece as usize), Some(PieceState::Have))
    }

    /// Whether no wanted piece is left that nobody is downloading.
    pub fn in_endgame(&self) -> bool {
        self.have + self.in_progress == self.wanted
    }

    /// Peers known to have `piece` (seeds included).
    pub fn availability(&self, piece: u32) -> u32 {
        self.availability[piece as usize] + self.seeds
    }

    pub fn add_peer(&mut self, pieces: PeerPieces<'_>) {
        match pieces {
            PeerPieces::All => self.seeds += 1,
            PeerPieces::Some(b) => b.ones().for_each(|i| self.peer_has(i)),
        }
    }

    pub fn remove_peer(&mut self, pieces: PeerPieces<'_>) {
        match pieces {
            PeerPieces::All => self.seeds = self.seeds.saturating_sub(1),
            PeerPieces::Some(b) => b.ones().for_each(|i| self.peer_lost(i)),
        }
    }

    /// A peer announced `piece` (a `have` message).
    pub fn peer_has(&mut self, piece: u32) {
        let Some(a) = self.availability.get(piece as usize).copied() else {
            return;
        };
        let wanted = self.state[piece as usize] == PieceState::Wanted;
        if wanted {
            self.remove(piece);
        }
        self.availability[piece as usize] = a + 1;
        if wanted {
            self.insert(piece);
        }
    }

    fn peer_lost(&mut self, piece: u32) {
        let a = self.availability[piece as usize];
        if a == 0 {
            return;
        }
        let wanted = self.state[piece as usize] == PieceState::Wanted;
        if wanted {
            self.remove(piece);
        }
        self.availability[piece as usize] = a - 1;
        if wanted {
            self.insert(piece);
        }
    }

    /// Picks the rarest wanted piece the peer has, at random among equals, and
    /// marks it in progress.
    pub fn pick(&mut self, peer: PeerPieces<'_>) -> Option<u32> {
        self.pick_where(|p| peer.has(p))
    }

    /// Like `pick`, over the pieces for which `offered` holds.
    pub fn pick_where(&mut self, offered: impl Fn(u32) -> bool) -> Option<u32> {
        for tier in 0..self.buckets.len() {
            for a in 0..self.buckets[tier].len() {
                let bucket = &self.buckets[tier][a];
                if bucket.is_empty() || (a == 0 && self.seeds == 0) {
                    continue;
                }
                let start = self.rng.usize(..bucket.len());
                let found = (0..bucket.len())
                    .map(|k| bucket[(start + k) % bucket.len()])
                    .find(|&p| offered(p));
                if let Some(p) = found {
                    self.remove(p);
                    self.state[p as usize] = PieceState::InProgress(1);
                    self.in_progress += 1;
                    return Some(p);
                }
            }
        }
        None
    }

    /// Takes a specific wanted piece (one a peer allows us to fetch while it
    /// chokes us); false if it is not wanted or already taken.
    pub fn pick_specific(&mut self, piece: u32) -> bool {
        if self.state.get(piece as usize) != Some(&PieceState::Wanted) {
            return false;
        }
        self.remove(piece);
        self.state[piece as usize] = PieceState::InProgress(1);
        self.in_progress += 1;
        true
    }

    /// In endgame: a piece already in progress elsewhere that this peer could
    /// download too, preferring the one with the fewest downloaders.
    /// `exclude` filters pieces the caller is already downloading.
    pub fn pick_endgame(
        &mut self,
        peer: PeerPieces<'_>,
        exclude: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        let start = self.rng.u32(..self.piece_count().max(1));
        let n = self.piece_count();
        let mut best: Option<(u8, u32)> = None;
        for k in 0..n {
            let p = (start + k) % n;
            if let PieceState::InProgress(d) = self.state[p as usize]
                && d < MAX_ENDGAME_DOWNLOADERS
                && peer.has(p)
                && !exclude(p)
                && best.is_none_or(|(bd, _)| d < bd)
            {
                best = Some((d, p));
                if d == 1 {
                    break;
                }
            }
        }
        let (d, p) = best?;
        self.state[p as usize] = PieceState::InProgress(d + 1);
        Some(p)
    }

    /// A download of `piece` stopped without completing it (peer gone, data
    /// failed its hash); when nobody else is on it, it is wanted again.
    pub fn abort(&mut self, piece: u32) {
        if let Some(PieceState::InProgress(d)) = self.state.get(piece as usize).copied() {
            if d > 1 {
                self.state[piece as usize] = PieceState::InProgress(d - 1);
            } else {
                self.in_progress -= 1;
                self.state[piece as usize] = PieceState::Wanted;
                self.insert(piece);
            }
        }
    }

    /// `piece` passed its hash check and is on disk. Returns false if it was
    /// already complete (a duplicate endgame download finished second).
    pub fn complete(&mut self, piece: u32) -> bool {
        match self.state.get(piece as usize).copied() {
            Some(PieceState::Have) | None => false,
            Some(s) => {
                match s {
                    PieceState::Wanted => self.remove(piece),
                    PieceState::InProgress(_) => self.in_progress -= 1,
                    // A piece of an unwanted file that came anyway (it was
                    // shared with a wanted one, or wanted before).
                    PieceState::Skipped => {
                        self.state[piece as usize] = PieceState::Have;
                        return true;
                    }
                    PieceState::Have => return false,
                }
                self.state[piece as usize] = PieceState::Have;
                self.have += 1;
                true
            }
        }
    }

    /// Whether the peer has any piece we still need.
    pub fn interesting(&self, peer: PeerPieces<'_>) -> bool {
        match peer {
            PeerPieces::All => !self.is_complete(),
            PeerPieces::Some(b) => b.ones().any(|p| {
                matches!(
                    self.state[p as usize],
                    PieceState::Wanted | PieceState::InProgress(_)
                )
            }),
        }
    }

    fn tier(&self, piece: u32) -> usize {
        self.priority[piece as usize].tier().unwrap_or(2)
    }

    fn insert(&mut self, piece: u32) {
        let a = self.availability[piece as usize] as usize;
        let t = self.tier(piece);
        if self.buckets[t].len() <= a {
            self.buckets[t].resize_with(a + 1, Vec::new);
        }
        self.position[piece as usize] = self.buckets[t][a].len() as u32;
        self.buckets[t][a].push(piece);
    }

    fn remove(&mut self, piece: u32) {
        let a = self.availability[piece as usize] as usize;
        let pos = self.position[piece as usize] as usize;
        let t = self.tier(piece);
        let bucket = &mut self.buckets[t][a];
        debug_assert_eq!(bucket[pos], piece);
        bucket.swap_remove(pos);
        if let Some(&moved) = bucket.get(pos) {
            self.position[moved as usize] = pos as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf(n: u32, ones: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(n);
        for &i in ones {
            b.set(i);
        }
        b
    }

    #[test]
    fn rarest_first() {
        let mut p = Picker::new(&Bitfield::new(4), 1);
        let a = bf(4, &[0, 1, 2, 3]);
        let b = bf(4, &[0, 1, 2]);
        let c = bf(4, &[0, 1]);
        for peer in [&a, &b, &c] {
            p.add_peer(PeerPieces::Some(peer));
        }
        // Piece 3 is the rarest (one peer), then 2, then 0 and 1.
        assert_eq!(p.pick(PeerPieces::Some(&a)), Some(3));
        assert_eq!(p.pick(PeerPieces::Some(&a)), Some(2));
        let mut rest = [
            p.pick(PeerPieces::Some(&a)).unwrap(),
            p.pick(PeerPieces::Some(&a)).unwrap(),
        ];
        rest.sort();
        assert_eq!(rest, [0, 1]);
        assert_eq!(p.pick(PeerPieces::Some(&a)), None);
        assert!(p.in_endgame());
    }

    #[test]
    fn only_picks_what_the_peer_has_and_nobody_has_nothing() {
        let mut p = Picker::new(&Bitfield::new(8), 1);
        assert_eq!(p.pick(PeerPieces::All), None, "no peer has anything yet");
        let b = bf(8, &[5]);
        p.add_peer(PeerPieces::Some(&b));
        assert_eq!(p.pick(PeerPieces::Some(&b)), Some(5));
        assert_eq!(p.pick(PeerPieces::Some(&b)), None);
        p.remove_peer(PeerPieces::Some(&b));
        assert_eq!(p.availability(5), 0);
    }

    #[test]
    fn ties_are_broken_at_random() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let mut p = Picker::new(&Bitfield::new(16), seed);
            p.add_peer(PeerPieces::All);
            seen.insert(p.pick(PeerPieces::All).unwrap());
        }
        assert!(seen.len() > 8, "picks cluster on {seen:?}");
    }

    #[test]
    fn abort_and_complete() {
        let mut p = Picker::new(&bf(3, &[0]), 1);
        p.add_peer(PeerPieces::All);
        let x = p.pick(PeerPieces::All).unwrap();
        p.abort(x);
        assert!(!p.has(x));
        let mut got = vec![
            p.pick(PeerPieces::All).unwrap(),
            p.pick(PeerPieces::All).unwrap(),
        ];
        got.sort();
        assert_eq!(got, vec![1, 2]);
        assert!(p.complete(1) && !p.complete(1));
        assert!(p.complete(2));
        assert!(p.is_complete());
        assert!(!p.interesting(PeerPieces::All));
    }

    #[test]
    fn endgame_duplicates_at_most_twice() {
        let mut p = Picker::new(&Bitfield::new(2), 1);
        p.add_peer(PeerPieces::All);
        let a = p.pick(PeerPieces::All).unwrap();
        let b = p.pick(PeerPieces::All).unwrap();
        assert!(p.in_endgame());
        let first = p.pick_endgame(PeerPieces::All, |_| false).unwrap();
        let second = p.pick_endgame(PeerPieces::All, |x| x == first).unwrap();
        assert_ne!(first, second);
        assert_eq!(p.pick_endgame(PeerPieces::All, |_| false), None);
        // One copy of `a` finishes; the other download of it aborts harmlessly.
        assert!(p.complete(a));
        p.abort(a);
        assert!(p.has(a));
        p.abort(b);
        p.abort(b);
        assert_eq!(p.pick(PeerPieces::All), Some(b));
    }

    #[test]
    fn priorities_order_the_picks_and_skipped_pieces_are_never_picked() {
        let pr = [
            Priority::Low,
            Priority::Skip,
            Priority::High,
            Priority::Normal,
            Priority::Skip,
        ];
        let mut p = Picker::with_priorities(&Bitfield::new(5), Some(&pr), 3);
        p.add_peer(PeerPieces::All);
        assert_eq!(p.wanted_count(), 3);
        assert_eq!(p.pick(PeerPieces::All), Some(2), "high first");
        assert_eq!(p.pick(PeerPieces::All), Some(3), "then normal");
        assert_eq!(p.pick(PeerPieces::All), Some(0), "then low");
        assert_eq!(p.pick(PeerPieces::All), None, "never a skipped one");
        assert!(p.in_endgame());
        for x in [0, 2, 3] {
            assert!(p.complete(x));
        }
        assert!(p.is_complete(), "complete without the skipped pieces");
        assert!(!p.interesting(PeerPieces::All));
        // A skipped piece that arrives anyway is had, and changes nothing.
        assert!(p.complete(1) && p.has(1));
        assert_eq!(p.have_count(), 3);
    }

    #[test]
    fn availability_moves_between_buckets() {
        let mut p = Picker::new(&Bitfield::new(100), 1);
        for i in 0..100 {
            for _ in 0..(i % 7) {
                p.peer_has(i);
            }
        }
        // The rarest available piece has availability 1.
        let x = p.pick(PeerPieces::All).unwrap();
        assert_eq!(p.availability(x), 1);
        p.peer_has(1000); // out of range: ignored
    }
}
