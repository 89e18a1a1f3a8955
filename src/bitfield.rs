//! Piece bitfields in BitTorrent's wire order (BEP 3): the high bit of the
//! first byte is piece 0. Keeping the wire order means a bitfield message is
//! the bytes as they are.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    #[error("bitfield is {got} bytes, expected {expected}")]
    Length { got: usize, expected: usize },
    #[error("bitfield has spare bits set past the last piece")]
    SpareBits,
}

impl Bitfield {
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; byte_len(len)],
            len,
            ones: 0,
        }
    }

    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        b.bytes.fill(0xff);
        if let Some(last) = b.bytes.last_mut() {
            *last &= spare_mask(len);
        }
        b.ones = len;
        b
    }

    /// Parses a peer's bitfield message payload. BEP 3 says spare bits must be
    /// cleared; a peer that sets them is broken or probing.
    pub fn from_wire(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = byte_len(len);
        if bytes.len() != expected {
            return Err(BitfieldError::Length {
                got: bytes.len(),
                expected,
            });
        }
        if let Some(&last) = bytes.last()
            && last & !spare_mask(len) != 0
        {
            return Err(BitfieldError::SpareBits);
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    pub fn as_wire(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; returns whether it was newly set. Out of range is a no-op.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let mask = 0x80 >> (i % 8);
        let new = *byte & mask == 0;
        *byte |= mask;
        self.ones += u32::from(new);
        new
    }

    pub fn clear(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let mask = 0x80 >> (i % 8);
        let was = *byte & mask != 0;
        *byte &= !mask;
        self.ones -= u32::from(was);
        was
    }

    /// Indices of set bits, in order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(|(i, &b)| {
                (0..8u32)
                    .filter(move |bit| b & (0x80 >> bit) != 0)
                    .map(move |bit| i as u32 * 8 + bit)
            })
    }

    /// Whether `other` has any bit set that `self` lacks and `mask` has.
    pub fn lacks_any_of_masked(&self, other: &Bitfield, mask: &Bitfield) -> bool {
        self.bytes
            .iter()
            .zip(&other.bytes)
            .zip(&mask.bytes)
            .any(|((mine, theirs), m)| theirs & !mine & m != 0)
    }

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(&self, other: &Bitfield) -> bool {
        self.bytes
            .iter()
            .zip(&other.bytes)
            .all(|(mine, theirs)| theirs & !mine == 0)
    }

    /// Whether `other` has any bit set that `self` lacks.
    pub fn lacks_any_of(&self, other: &Bitfield) -> bool {
        self.bytes
            .iter()
            .zip(&other.bytes)
            .any(|(mine, theirs)| theirs & !mine != 0)
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

fn byte_len(len: u32) -> usize {
    len.div_ceil(8) as usize
}

/// Mask of the valid bits in the last byte.
fn spare_mask(len: u32) -> u8 {
    match len % 8 {
        0 => 0xff,
        r => !(0xffu8 >> r),
    }
}

/// A bitfield shared between shard threads: set once, read often, never
/// cleared. Readers on other shards may see a bit late, never wrongly.
pub struct AtomicBitfield {
    bytes: Vec<AtomicU8>,
    len: u32,
    ones: AtomicU32,
}

impl AtomicBitfield {
    pub fn new(from: &Bitfield) -> Self {
        AtomicBitfield {
            bytes: from.bytes.iter().map(|&b| AtomicU8::new(b)).collect(),
            len: from.len,
            ones: AtomicU32::new(from.ones),
        }
    }

    pub fn get(&self, i: u32) -> bool {
        // Acquire pairs with the Release in `set`: whoever sees the bit also
        // sees the piece's bytes written before it was set.
        i < self.len
            && self.bytes[(i / 8) as usize].load(Ordering::Acquire) & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; returns whether this call set it.
    pub fn set(&self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let mask = 0x80 >> (i % 8);
        let prev = self.bytes[(i / 8) as usize].fetch_or(mask, Ordering::Release);
        let new = prev & mask == 0;
        if new {
            self.ones.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    pub fn count_ones(&self) -> u32 {
        self.ones.load(Ordering::Relaxed)
    }

    pub fn is_full(&self) -> bool {
        self.count_ones() == self.len
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn snapshot(&self) -> Bitfield {
        let bytes: Vec<u8> = self
            .bytes
            .iter()
            .map(|b| b.load(Ordering::Acquire))
            .collect();
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Bitfield {
            bytes,
            len: self.len,
            ones,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_and_counts() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0) && b.set(9) && !b.set(9));
        assert_eq!(b.as_wire(), &[0x80, 0x40]);
        assert_eq!(b.count_ones(), 2);
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![0, 9]);
        assert!(b.clear(0) && !b.clear(0));
        assert!(!b.set(10) && !b.get(10));
        assert_eq!(Bitfield::full(10).as_wire(), &[0xff, 0xc0]);
        assert!(Bitfield::full(16).is_full());
    }

    #[test]
    fn from_wire_checks_length_and_spare_bits() {
        assert_eq!(
            Bitfield::from_wire(&[0xff], 10),
            Err(BitfieldError::Length {
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            Bitfield::from_wire(&[0xff, 0xe0], 10),
            Err(BitfieldError::SpareBits)
        );
        let b = Bitfield::from_wire(&[0xff, 0xc0], 10).unwrap();
        assert!(b.is_full());
        assert!(Bitfield::from_wire(&[0xff, 0xff], 16).unwrap().is_full());
    }

    #[test]
    fn atomic_matches_plain() {
        let a = AtomicBitfield::new(&Bitfield::new(20));
        assert!(a.set(3) && !a.set(3));
        assert!(a.get(3) && !a.get(4) && !a.get(99));
        assert_eq!(a.snapshot().ones().collect::<Vec<_>>(), vec![3]);
        assert_eq!(a.count_ones(), 1);
    }

    #[test]
    fn lacks_any_of() {
        let mut mine = Bitfield::new(12);
        let mut theirs = Bitfield::new(12);
        theirs.set(11);
        assert!(mine.lacks_any_of(&theirs));
        mine.set(11);
        assert!(!mine.lacks_any_of(&theirs));
    }
}
