//! Fetching the info dictionary, without I/O: which piece to ask of which
//! peer, assembling the pieces, checking them against the info-hash, and
//! deciding whom to blame when the check fails.
//!
//! A copy from a single peer that fails the check bans that peer. A copy
//! from several peers that fails bans nobody yet: the digest of each piece
//! is kept with its sender, and the metadata is fetched again from one peer
//! only. When a copy passes, every kept piece that differs from it names
//! its sender as a liar (the smart ban, at metadata scale).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use super::{PIECE, piece_count};
use crate::hash::sha1;
use crate::metainfo::InfoHash;

/// A request unanswered this long marks its peer as stalled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Pieces asked of one peer at a time.
const PER_PEER: usize = 8;
/// After a reject, a peer is left alone this long.
const REJECT_BACKOFF: Duration = Duration::from_secs(2);
/// Rejects after which a peer is of no use.
const MAX_REJECTS: u32 = 32;
/// Kept digests of failed copies, at most (a few copies of a big torrent).
const MAX_SUSPECTS: usize = 8192;

/// Why a peer cannot give us the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the peer does not offer the metadata")]
    NoMetadata,
    #[error("the peer says the metadata is {0} bytes, more than the {max} accepted", max = super::MAX_SIZE)]
    TooLarge(u64),
    #[error("the peer sent metadata that failed its check before")]
    Banned,
}

/// What a peer did wrong; the driver drops it and counts the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaviour {
    #[error("metadata piece {0} was not asked of this peer")]
    Unrequested(u32),
    #[error("the peer's metadata size changed from {expected} to {claimed} bytes")]
    WrongSize { claimed: u64, expected: u64 },
    #[error("metadata piece {piece} is {len} bytes, not {expected}")]
    WrongLength {
        piece: u32,
        len: usize,
        expected: usize,
    },
    #[error("the peer's metadata does not match the info-hash")]
    BadMetadata,
    #[error("the peer's metadata piece differs from the verified copy")]
    Lied,
    #[error("the peer rejected too many metadata requests")]
    Rejects,
}

/// Where the exchange stands after a piece arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress<P> {
    Pending,
    /// The verified info dictionary, and the peers whose pieces of an
    /// earlier failed copy differ from it.
    Done {
        info: Vec<u8>,
        liars: Vec<P>,
        /// Peers that sent pieces of this copy.
        sources: usize,
    },
    /// The copy failed its check. `banned` are dropped; if empty, the
    /// copy came from several peers and is being fetched from one.
    Failed {
        banned: Vec<P>,
    },
}

enum Slot<P> {
    Missing,
    Asked { peer: P, at: Instant },
    Got { peer: P, data: Vec<u8> },
}

struct PeerInfo {
    size: u64,
    asked: BTreeSet<u32>,
    backoff_until: Option<Instant>,
    rejects: u32,
}

pub struct Exchange<P> {
    info_hash: InfoHash,
    /// For a v2 link: the SHA-256 the metadata must have instead.
    info_hash_v2: Option<[u8; 32]>,
    max_size: u64,
    peers: BTreeMap<P, PeerInfo>,
    /// The size being fetched, as the first peer still with us claimed.
    size: Option<u64>,
    slots: Vec<Slot<P>>,
    /// After a failed copy from several peers: the one peer asked now.
    exclusive: Option<P>,
    /// Digests of pieces of failed copies, with their senders.
    suspects: Vec<(u32, P, [u8; 20])>,
    banned: BTreeSet<P>,
}

impl<P: Copy + Ord + Debug> Exchange<P> {
    pub fn new(info_hash: InfoHash, max_size: u64) -> Exchange<P> {
        Exchange {
            info_hash,
            info_hash_v2: None,
            max_size,
            peers: BTreeMap::new(),
            size: None,
            slots: Vec::new(),
            exclusive: None,
            suspects: Vec::new(),
            banned: BTreeSet::new(),
        }
    }

    /// Checks the metadata against a v2 info-hash (BEP 52) rather than
    /// the SHA-1 one.
    pub fn verifying_v2(mut self, v2: Option<[u8; 32]>) -> Exchange<P> {
        self.info_hash_v2 = v2;
        self
    }

    /// A peer told us (in its extension handshake) how big the metadata is.
    pub fn add_peer(&mut self, peer: P, size: Option<u64>) -> Result<(), Refusal> {
        if self.banned.contains(&peer) {
            return Err(Refusal::Banned);
        }
        let size = size.filter(|&s| s > 0).ok_or(Refusal::NoMetadata)?;
        if size > self.max_size {
            return Err(Refusal::TooLarge(size));
        }
        // BEP 10 lets a peer send its handshake again: the same offer
        // changes nothing (its requests stay asked).
        if self.peers.get(&peer).is_some_and(|p| p.size == size) {
            return Ok(());
        }
        self.remove_peer(peer);
        self.peers.insert(
            peer,
            PeerInfo {
                size,
                asked: BTreeSet::new(),
                backoff_until: None,
                rejects: 0,
            },
        );
        self.settle_size();
        Ok(())
    }

    pub fn remove_peer(&mut self, peer: P) {
        let Some(info) = self.peers.remove(&peer) else {
            return;
        };
        for p in info.asked {
            self.unask(p, peer);
        }
        if self.exclusive == Some(peer) {
            self.exclusive = None;
        }
        self.settle_size();
    }

    pub fn is_banned(&self, peer: P) -> bool {
        self.banned.contains(&peer)
    }

    /// The size being fetched, once a peer has offered the metadata.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Pieces received of the current copy, and how many it has.
    pub fn progress(&self) -> (u32, u32) {
        let got = self
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::Got { .. }))
            .count();
        (got as u32, self.slots.len() as u32)
    }

    /// The next piece to ask `peer` for, marked as asked.
    pub fn next_request(&mut self, now: Instant, peer: P) -> Option<u32> {
        if self.exclusive.is_some_and(|e| e != peer) {
            return None;
        }
        let info = self.peers.get_mut(&peer)?;
        if Some(info.size) != self.size
            || info.asked.len() >= PER_PEER
            || info.backoff_until.is_some_and(|t| now < t)
        {
            return None;
        }
        let piece = self.slots.iter().position(|s| match s {
            Slot::Missing => true,
            // A piece another peer has sat on for too long goes to this one.
            Slot::Asked { peer: p, at } => {
                *p != peer && now.saturating_duration_since(*at) >= REQUEST_TIMEOUT
            }
            Slot::Got { .. } => false,
        })? as u32;
        info.asked.insert(piece);
        self.slots[piece as usize] = Slot::Asked { peer, at: now };
        Some(piece)
    }

    /// Peers holding a request for longer than [`REQUEST_TIMEOUT`].
    pub fn stalled(&self, now: Instant) -> Vec<P> {
        let mut out: Vec<P> = self
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Asked { peer, at }
                    if now.saturating_duration_since(*at) >= REQUEST_TIMEOUT =>
                {
                    Some(*peer)
                }
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The peer refused a piece. Many refusals make it useless.
    pub fn on_reject(&mut self, now: Instant, peer: P, piece: u32) -> Result<(), Misbehaviour> {
        let Some(info) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        if !info.asked.remove(&piece) {
            return Err(Misbehaviour::Unrequested(piece));
        }
        info.rejects += 1;
        info.backoff_until = Some(now + REJECT_BACKOFF);
        let too_many = info.rejects > MAX_REJECTS;
        self.unask(piece, peer);
        if too_many {
            return Err(Misbehaviour::Rejects);
        }
        Ok(())
    }

    /// A piece arrived. An error means the peer is to be dropped (and
    /// [`remove_peer`](Self::remove_peer)d).
    pub fn on_data(
        &mut self,
        peer: P,
        piece: u32,
        total_size: u64,
        data: &[u8],
    ) -> Result<Progress<P>, Misbehaviour> {
        let info = self
            .peers
            .get_mut(&peer)
            .ok_or(Misbehaviour::Unrequested(piece))?;
        if !info.asked.remove(&piece) {
            return Err(Misbehaviour::Unrequested(piece));
        }
        let size = info.size;
        if total_size != size {
            self.unask(piece, peer);
            return Err(Misbehaviour::WrongSize {
                claimed: total_size,
                expected: size,
            });
        }
        if Some(size) != self.size {
            // Asked under a size given up since; nothing to keep.
            return Ok(Progress::Pending);
        }
        let start = u64::from(piece) * PIECE as u64;
        let expected = (size - start).min(PIECE as u64) as usize;
        if data.len() != expected {
            self.unask(piece, peer);
            return Err(Misbehaviour::WrongLength {
                piece,
                len: data.len(),
                expected,
            });
        }
        match &self.slots[piece as usize] {
            Slot::Got { .. } => return Ok(Progress::Pending),
            Slot::Missing | Slot::Asked { .. } => {}
        }
        self.slots[piece as usize] = Slot::Got {
            peer,
            data: data.to_vec(),
        };
        if self.slots.iter().all(|s| matches!(s, Slot::Got { .. })) {
            return Ok(self.check());
        }
        Ok(Progress::Pending)
    }

    fn check(&mut self) -> Progress<P> {
        let mut info = Vec::with_capacity(self.size.unwrap_or(0) as usize);
        let mut senders = BTreeMap::<P, u32>::new();
        for s in &self.slots {
            if let Slot::Got { peer, data } = s {
                info.extend_from_slice(data);
                *senders.entry(*peer).or_default() += 1;
            }
        }
        let sound = match &self.info_hash_v2 {
            Some(v2) => crate::hash::merkle::sha256(&info) == *v2,
            None => InfoHash::of(&info) == self.info_hash,
        };
        if sound {
            let digests: Vec<[u8; 20]> = info.chunks(PIECE).map(sha1).collect();
            let mut liars: Vec<P> = self
                .suspects
                .iter()
                .filter(|(piece, _, d)| digests.get(*piece as usize) != Some(d))
                .map(|&(_, p, _)| p)
                .collect();
            liars.sort();
            liars.dedup();
            for &p in &liars {
                self.ban(p);
            }
            return Progress::Done {
                info,
                liars,
                sources: senders.len(),
            };
        }
        let banned = if senders.len() == 1 {
            let peer = *senders.keys().next().expect("one sender");
            self.ban(peer);
            vec![peer]
        } else {
            for (i, s) in self.slots.iter().enumerate() {
                if let Slot::Got { peer, data } = s
                    && self.suspects.len() < MAX_SUSPECTS
                {
                    self.suspects.push((i as u32, *peer, sha1(data)));
                }
            }
            // The peer that sent the most is asked for the whole copy.
            self.exclusive = senders
                .iter()
                .max_by_key(|&(p, n)| (*n, std::cmp::Reverse(*p)))
                .map(|(p, _)| *p);
            Vec::new()
        };
        for s in &mut self.slots {
            *s = Slot::Missing;
        }
        for info in self.peers.values_mut() {
            info.asked.clear();
        }
        Progress::Failed { banned }
    }

    fn ban(&mut self, peer: P) {
        self.banned.insert(peer);
        self.remove_peer(peer);
    }

    fn unask(&mut self, piece: u32, peer: P) {
        if let Some(s) = self.slots.get_mut(piece as usize)
            && matches!(s, Slot::Asked { peer: p, .. } if *p == peer)
        {
            *s = Slot::Missing;
        }
    }

    /// Keeps the size being fetched if a peer still claims it, else takes
    /// the first remaining peer's claim and starts over.
    fn settle_size(&mut self) {
        if self
            .size
            .is_some_and(|s| self.peers.values().any(|i| i.size == s))
        {
            return;
        }
        self.size = self.peers.values().next().map(|i| i.size);
        self.slots = (0..self.size.map_or(0, piece_count))
            .map(|_| Slot::Missing)
            .collect();
        for info in self.peers.values_mut() {
            info.asked.clear();
        }
    }
}
