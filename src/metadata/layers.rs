//! Fetching a v2 torrent's piece layers (BEP 52) with hash requests, for a
//! `btmh` magnet link: its `info` dictionary names each file's Merkle root,
//! but a file longer than a piece cannot be checked piece by piece without
//! the layer of piece hashes under that root, which only peers can give.
//!
//! A state machine without I/O, like [`Exchange`](super::Exchange). Each
//! file's layer is asked of one peer at a time, in requests of up to 512
//! hashes, and checked against the file's root once whole: a layer that
//! does not hash to it came from that one peer, which is banned.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use crate::hash::merkle::{self, BLOCK, Hash};
use crate::wire::HashRequest;

/// Hashes per request, as libtorrent asks (16 KiB of hashes).
const CHUNK: u32 = 512;
/// A peer that has not answered a request in this long is dropped.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What a peer did that gets it dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayerMisbehaviour {
    #[error("sent hashes we did not ask it for")]
    Unrequested,
    #[error("sent {got} hashes for a request of {want}")]
    WrongCount { got: usize, want: u32 },
    #[error("sent a piece layer that does not hash to its file's root")]
    BadLayer,
}

/// Where the fetch stands after an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum LayerProgress {
    Pending,
    /// Every layer, checked: (file root, its piece hashes end to end).
    Done(Vec<(Hash, Vec<u8>)>),
}

#[derive(Debug)]
enum Chunk {
    Missing,
    Asked(Instant),
    Got(Vec<Hash>),
}

#[derive(Debug)]
struct File<P> {
    root: Hash,
    pieces: u32,
    chunks: Vec<Chunk>,
    /// The peer asked for this file's layer now.
    owner: Option<P>,
    /// Peers that refused it (hash reject).
    refused: BTreeSet<P>,
    done: bool,
}

pub struct Layers<P> {
    piece_length: u32,
    files: Vec<File<P>>,
    banned: BTreeSet<P>,
}

impl<P: Copy + Ord + Debug> Layers<P> {
    /// `needs`: each file's root and piece count, for pieces of
    /// `piece_length` bytes (as [`layers_needed`](crate::metainfo::layers_needed)
    /// gives them).
    pub fn new(piece_length: u32, needs: &[(Hash, u32)]) -> Layers<P> {
        let files = needs
            .iter()
            .map(|&(root, pieces)| File {
                root,
                pieces,
                chunks: (0..pieces.div_ceil(CHUNK))
                    .map(|_| Chunk::Missing)
                    .collect(),
                owner: None,
                refused: BTreeSet::new(),
                done: false,
            })
            .collect();
        Layers {
            piece_length,
            files,
            banned: BTreeSet::new(),
        }
    }

    /// The tree layer the piece hashes are on, counted from the 16 KiB
    /// leaves.
    fn base(&self) -> u32 {
        (self.piece_length as usize / BLOCK).trailing_zeros()
    }

    fn request(&self, f: &File<P>, chunk: usize) -> HashRequest {
        let index = chunk as u32 * CHUNK;
        HashRequest {
            root: f.root,
            base: self.base(),
            index,
            // At least two: libtorrent adds an uncle to a single hash.
            count: (f.pieces - index).next_power_of_two().clamp(2, CHUNK),
            proof_layers: 0,
        }
    }

    /// The next request to send `peer`, if any: the rest of a file it is
    /// giving, or a file nobody is asked for and it has not refused.
    pub fn next_request(&mut self, now: Instant, peer: P) -> Option<HashRequest> {
        if self.banned.contains(&peer) {
            return None;
        }
        let pick = self
            .files
            .iter()
            .position(|f| !f.done && f.owner == Some(peer) && missing(f).is_some())
            .or_else(|| {
                self.files
                    .iter()
                    .position(|f| !f.done && f.owner.is_none() && !f.refused.contains(&peer))
            })?;
        let chunk = missing(&self.files[pick])?;
        let req = self.request(&self.files[pick], chunk);
        let f = &mut self.files[pick];
        f.owner = Some(peer);
        f.chunks[chunk] = Chunk::Asked(now);
        Some(req)
    }

    /// Which file and chunk `req` is, if `peer` was asked it.
    fn asked(&self, peer: P, req: &HashRequest) -> Option<(usize, usize)> {
        let f = self.files.iter().position(|f| f.root == req.root)?;
        let file = &self.files[f];
        let chunk = (req.index / CHUNK) as usize;
        (file.owner == Some(peer)
            && matches!(file.chunks.get(chunk), Some(Chunk::Asked(_)))
            && *req == self.request(file, chunk))
        .then_some((f, chunk))
    }

    /// Hashes arrived from `peer`.
    pub fn on_hashes(
        &mut self,
        peer: P,
        req: &HashRequest,
        hashes: &[u8],
    ) -> Result<LayerProgress, LayerMisbehaviour> {
        let (f, chunk) = self
            .asked(peer, req)
            .ok_or(LayerMisbehaviour::Unrequested)?;
        let want = req.count + req.uncles();
        if hashes.len() != want as usize * 32 {
            return Err(LayerMisbehaviour::WrongCount {
                got: hashes.len() / 32,
                want,
            });
        }
        let got = hashes[..req.count as usize * 32]
            .chunks_exact(32)
            .map(|c| <Hash>::try_from(c).unwrap_or_default())
            .collect();
        let piece_length = self.piece_length as usize;
        let file = &mut self.files[f];
        file.chunks[chunk] = Chunk::Got(got);
        if file.chunks.iter().all(|c| matches!(c, Chunk::Got(_))) {
            if merkle::root_of_layer(&layer(file), piece_length) != file.root {
                self.ban(peer);
                return Err(LayerMisbehaviour::BadLayer);
            }
            file.done = true;
            file.owner = None;
        }
        Ok(self.progress())
    }

    /// `peer` refused a request: its file is asked of another peer.
    pub fn on_reject(&mut self, peer: P, req: &HashRequest) {
        if let Some((f, _)) = self.asked(peer, req) {
            self.files[f].refused.insert(peer);
            self.release(peer);
        }
    }

    /// `peer` is gone: what it was giving is asked of others.
    pub fn remove_peer(&mut self, peer: P) {
        self.release(peer);
    }

    /// Peers with a request unanswered for too long.
    pub fn stalled(&self, now: Instant) -> Vec<P> {
        let mut out: Vec<P> = self
            .files
            .iter()
            .filter(|f| {
                f.chunks
                    .iter()
                    .any(|c| matches!(c, Chunk::Asked(t) if now.saturating_duration_since(*t) >= TIMEOUT))
            })
            .filter_map(|f| f.owner)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn is_banned(&self, peer: P) -> bool {
        self.banned.contains(&peer)
    }

    fn ban(&mut self, peer: P) {
        self.banned.insert(peer);
        self.release(peer);
    }

    /// Forgets what `peer` was asked and gave of files not yet checked.
    fn release(&mut self, peer: P) {
        for f in self.files.iter_mut().filter(|f| f.owner == Some(peer)) {
            f.owner = None;
            for c in &mut f.chunks {
                *c = Chunk::Missing;
            }
        }
    }

    fn progress(&self) -> LayerProgress {
        if !self.files.iter().all(|f| f.done) {
            return LayerProgress::Pending;
        }
        LayerProgress::Done(
            self.files
                .iter()
                .map(|f| (f.root, layer(f).concat()))
                .collect(),
        )
    }
}

/// A file's piece hashes as received, without the padding of its last
/// request.
fn layer<P>(f: &File<P>) -> Vec<Hash> {
    let mut out: Vec<Hash> = f
        .chunks
        .iter()
        .flat_map(|c| match c {
            Chunk::Got(h) => h.as_slice(),
            _ => &[],
        })
        .copied()
        .collect();
    out.truncate(f.pieces as usize);
    out
}

fn missing<P>(f: &File<P>) -> Option<usize> {
    f.chunks.iter().position(|c| matches!(c, Chunk::Missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECE: u32 = 64 * 1024;

    /// A file of `pieces` pieces: its root and piece layer.
    fn file(pieces: usize, seed: u8) -> (Hash, Vec<Hash>) {
        let leaves: Vec<Hash> = (0..pieces * 4)
            .map(|i| merkle::sha256(&[seed, i as u8, (i >> 8) as u8]))
            .collect();
        merkle::file_tree(&leaves, PIECE as usize)
    }

    fn answer(layer: &[Hash], req: &HashRequest) -> Vec<u8> {
        merkle::LayerTree::new(layer.to_vec(), PIECE as usize)
            .hashes(req.index as usize, req.count as usize, 0)
            .unwrap()
            .concat()
    }

    #[test]
    fn fetches_every_layer_in_chunks_and_checks_each() {
        let (r1, l1) = file(1100, 1);
        let (r2, l2) = file(3, 2);
        let mut x = Layers::<u8>::new(PIECE, &[(r1, 1100), (r2, 3)]);
        let now = Instant::now();
        let mut asked = Vec::new();
        while let Some(req) = x.next_request(now, 7) {
            asked.push(req);
        }
        // Peer 7 is asked for both files; nothing is left for peer 8.
        assert_eq!(
            asked.iter().map(|r| (r.index, r.count)).collect::<Vec<_>>(),
            [(0, 512), (512, 512), (1024, 128), (0, 4)]
        );
        assert_eq!(x.next_request(now, 8), None);
        assert!(asked.iter().all(|r| r.base == 2 && r.proof_layers == 0));
        // A last chunk of one piece asks for two hashes.
        let mut y = Layers::<u8>::new(PIECE, &[(r1, 513)]);
        y.next_request(now, 1);
        assert_eq!(
            y.next_request(now, 1).map(|r| (r.index, r.count)),
            Some((512, 2))
        );
        let (small, big) = asked.split_last().unwrap();
        assert_eq!(small.root, r2);
        assert_eq!(
            x.on_hashes(7, small, &answer(&l2, small)),
            Ok(LayerProgress::Pending)
        );
        let mut last = None;
        for req in big {
            last = Some(x.on_hashes(7, req, &answer(&l1, req)).unwrap());
        }
        let Some(LayerProgress::Done(layers)) = last else {
            panic!("not done: {last:?}");
        };
        assert_eq!(layers[0], (r1, l1.concat()));
        assert_eq!(layers[1], (r2, l2.concat()));
    }

    #[test]
    fn a_wrong_layer_bans_its_sender_and_another_peer_is_asked() {
        let (root, layer) = file(6, 3);
        let mut x = Layers::<u8>::new(PIECE, &[(root, 6)]);
        let now = Instant::now();
        let req = x.next_request(now, 1).unwrap();
        let mut bad = answer(&layer, &req);
        bad[40] ^= 1;
        assert_eq!(x.on_hashes(1, &req, &bad), Err(LayerMisbehaviour::BadLayer));
        assert!(x.is_banned(1));
        assert_eq!(x.next_request(now, 1), None);
        let req = x.next_request(now, 2).unwrap();
        assert!(matches!(
            x.on_hashes(2, &req, &answer(&layer, &req)),
            Ok(LayerProgress::Done(_))
        ));
    }

    #[test]
    fn rejects_stalls_and_strays() {
        let (root, layer) = file(6, 4);
        let mut x = Layers::<u8>::new(PIECE, &[(root, 6)]);
        let now = Instant::now();
        let req = x.next_request(now, 1).unwrap();
        // Hashes from a peer not asked, and the wrong count.
        assert_eq!(
            x.on_hashes(2, &req, &answer(&layer, &req)),
            Err(LayerMisbehaviour::Unrequested)
        );
        assert!(matches!(
            x.on_hashes(1, &req, &[0; 64]),
            Err(LayerMisbehaviour::WrongCount { got: 2, want: 8 })
        ));
        // A refusal moves the file to the next peer, never back.
        x.on_reject(1, &req);
        assert_eq!(x.next_request(now, 1), None);
        let req = x.next_request(now, 2).unwrap();
        assert_eq!(x.stalled(now), Vec::<u8>::new());
        assert_eq!(x.stalled(now + TIMEOUT), vec![2]);
        x.remove_peer(2);
        assert_eq!(x.next_request(now, 3), Some(req));
    }
}
