//! BEP 52 Merkle trees: SHA-256 over 16 KiB blocks of a file, the leaves
//! past its end zero, pairs hashed up to a root; the layer at piece size is
//! the file's "piece layer".

use sha2::{Digest, Sha256};

/// The leaf size of every v2 tree.
pub const BLOCK: usize = 16 * 1024;

pub type Hash = [u8; 32];

pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

fn pair(a: &Hash, b: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// The root over `layer`, padded to a power of two with `pad` (the hash of
/// an all-zero subtree at this layer's height).
fn root_of(layer: &[Hash], pad: Hash) -> Hash {
    let mut level: Vec<Hash> = layer.to_vec();
    let mut pad = pad;
    let width = layer.len().max(1).next_power_of_two();
    level.resize(width, pad);
    while level.len() > 1 {
        level = level.chunks_exact(2).map(|c| pair(&c[0], &c[1])).collect();
        pad = pair(&pad, &pad);
    }
    level[0]
}

/// The root over `leaves`, a power of two of them.
pub fn root(leaves: &[Hash]) -> Hash {
    root_of(leaves, [0; 32])
}

/// The root over a file's piece layer, for pieces of `piece_length` bytes.
pub fn root_of_layer(layer: &[Hash], piece_length: usize) -> Hash {
    root_of(layer, zero_subtree(piece_length / BLOCK))
}

/// A file's Merkle tree from its piece layer up, the layer padded to a
/// power of two with the hashes of all-zero pieces. Built once, it answers
/// hash requests (BEP 52) by lookup.
#[derive(Debug, Clone)]
pub struct LayerTree {
    /// The padded piece layer first, the root last.
    levels: Vec<Vec<Hash>>,
}

impl LayerTree {
    pub fn new(mut level: Vec<Hash>, piece_length: usize) -> LayerTree {
        let width = level.len().max(1).next_power_of_two();
        level.resize(width, zero_subtree(piece_length / BLOCK));
        let mut levels = vec![level];
        while let Some(top) = levels.last().filter(|l| l.len() > 1) {
            let up = top.chunks_exact(2).map(|c| pair(&c[0], &c[1])).collect();
            levels.push(up);
        }
        LayerTree { levels }
    }

    /// Hashes held, for bounding what is kept.
    pub fn hashes_held(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// BEP 52 `hashes`: the `count` layer hashes from `index` (a power of
    /// two of them, `index` a multiple of `count`), then `uncles` sibling
    /// hashes from the requested subtree's up. `None` if the request does
    /// not fit the tree.
    pub fn hashes(&self, index: usize, count: usize, uncles: usize) -> Option<Vec<Hash>> {
        let base = self.levels.first()?;
        let own = count.trailing_zeros() as usize;
        if !count.is_power_of_two()
            || !index.is_multiple_of(count)
            || index.checked_add(count)? > base.len()
            || own + uncles >= self.levels.len()
        {
            return None;
        }
        let mut out = base[index..index + count].to_vec();
        let mut node = index / count;
        for level in &self.levels[own..own + uncles] {
            out.push(level[node ^ 1]);
            node /= 2;
        }
        Some(out)
    }
}

/// The hash of an all-zero subtree of `leaves` leaves (a power of two).
fn zero_subtree(leaves: usize) -> Hash {
    let mut h = [0u8; 32];
    let mut n = 1;
    while n < leaves {
        h = pair(&h, &h);
        n *= 2;
    }
    h
}

/// A file's tree from its leaf hashes: its root, and its piece layer for
/// pieces of `piece_length` bytes (a power of two, at least 16 KiB), which
/// is empty when the file fits in one piece (BEP 52 stores none then).
pub fn file_tree(leaves: &[Hash], piece_length: usize) -> (Hash, Vec<Hash>) {
    let per_piece = piece_length / BLOCK;
    if leaves.len() <= per_piece {
        return (root_of(leaves, [0; 32]), Vec::new());
    }
    let pieces: Vec<Hash> = leaves
        .chunks(per_piece)
        .map(|c| {
            let mut sub = c.to_vec();
            sub.resize(per_piece, [0; 32]);
            root_of(&sub, [0; 32])
        })
        .collect();
    (root_of_layer(&pieces, piece_length), pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `hashes` (requested ones, then uncles) up to `root` as a
    /// receiver would.
    fn verify(root: Hash, index: usize, count: usize, hashes: &[Hash]) -> bool {
        let (base, uncles) = hashes.split_at(count);
        let mut node = root_of(base, [0; 32]);
        let mut at = index / count;
        for u in uncles {
            node = if at.is_multiple_of(2) {
                pair(&node, u)
            } else {
                pair(u, &node)
            };
            at /= 2;
        }
        node == root
    }

    #[test]
    fn a_layer_tree_proves_its_piece_hashes_up_to_the_root() {
        // 11 pieces of 4 blocks: a layer 16 wide once padded.
        let leaves: Vec<Hash> = (0..41u8).map(|i| sha256(&[i])).collect();
        let (root, layer) = file_tree(&leaves, 4 * BLOCK);
        assert_eq!(layer.len(), 11);
        let tree = LayerTree::new(layer.clone(), 4 * BLOCK);
        assert_eq!(tree.levels.last().unwrap(), &[root]);
        let all = tree.hashes(0, 16, 0).unwrap();
        assert_eq!(&all[..11], &layer[..]);
        assert_eq!(all[15], zero_subtree(4), "a padding piece's hash");
        for (index, count) in [
            (0usize, 4usize),
            (4, 4),
            (8, 4),
            (12, 4),
            (8, 8),
            (10, 2),
            (3, 1),
        ] {
            let uncles = 4 - count.trailing_zeros() as usize;
            let h = tree.hashes(index, count, uncles).unwrap();
            assert_eq!(h.len(), count + uncles);
            assert!(verify(root, index, count, &h), "{index}+{count}");
            let mut bad = h.clone();
            bad[0][0] ^= 1;
            assert!(!verify(root, index, count, &bad));
        }
        // Out of the tree, misaligned, not a power of two, too many uncles.
        for (index, count, uncles) in [(16, 1, 0), (2, 4, 0), (0, 3, 0), (0, 4, 3), (0, 32, 0)] {
            assert_eq!(tree.hashes(index, count, uncles), None);
        }
    }

    #[test]
    fn one_block_is_its_own_root() {
        let leaf = sha256(b"hello");
        assert_eq!(file_tree(&[leaf], 1 << 20), (leaf, Vec::new()));
    }

    #[test]
    fn the_piece_layer_and_the_leaves_give_the_same_root() {
        // Five blocks, pieces of two blocks: three pieces, the last half
        // empty, and a fourth all-zero piece to make a power of two.
        let leaves: Vec<Hash> = (0..5u8).map(|i| sha256(&[i])).collect();
        let (root, layer) = file_tree(&leaves, 2 * BLOCK);
        assert_eq!(layer.len(), 3);
        assert_eq!(layer[2], pair(&leaves[4], &[0; 32]));
        let mut padded = leaves.clone();
        padded.resize(8, [0; 32]);
        assert_eq!(root, root_of(&padded, [0; 32]));
    }
}
