//! Piece buffers aligned for direct I/O.
//!
//! `O_DIRECT` writes need the memory, the file offset and the length aligned
//! to the device's block size. A piece buffer aligned to 4 KiB lets a
//! verified piece go from the buffer it was received into straight to disk,
//! bypassing the page cache.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Alignment of every piece buffer (and of direct I/O).
pub const ALIGN: usize = 4096;

/// An owned, zero-initialised, 4 KiB-aligned byte buffer with a length up to
/// its capacity.
pub struct PieceBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: PieceBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for PieceBuf {}
// SAFETY: shared references only read the bytes.
unsafe impl Sync for PieceBuf {}

impl PieceBuf {
    /// A buffer of capacity `cap` (rounded up to the alignment) and length
    /// `len`, all zeros.
    pub fn new(cap: usize, len: usize) -> PieceBuf {
        let cap = cap.max(len).max(1).next_multiple_of(ALIGN);
        let layout = Layout::from_size_align(cap, ALIGN)
            .expect("piece sizes are bounded far below isize::MAX");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        PieceBuf { ptr, len, cap }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets the length. Bytes past the old length keep whatever the buffer
    /// last held (zeros for a new one): they are always initialised.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "length {len} beyond capacity {}", self.cap);
        self.len = len;
    }
}

impl Deref for PieceBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `cap >= len` initialised bytes (zeroed at
        // allocation, only ever written through `&mut [u8]`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PieceBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PieceBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.cap, ALIGN).expect("same layout as allocated");
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for PieceBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PieceBuf({}/{})", self.len, self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_resizable() {
        let mut b = PieceBuf::new(10_000, 5000);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.capacity(), 12_288);
        assert!(b.iter().all(|&x| x == 0));
        b[4999] = 7;
        b.set_len(12_288);
        assert_eq!(b[4999], 7);
        assert_eq!(b[12_287], 0);
        b.set_len(10);
        assert_eq!(b.len(), 10);
    }

    #[test]
    #[should_panic(expected = "beyond capacity")]
    fn length_is_bounded() {
        PieceBuf::new(4096, 0).set_len(4097);
    }
}

/// Spare piece buffers. Reusing them keeps allocation, zeroing and page
/// faults off the transfer path.
#[derive(Debug)]
pub struct BufPool {
    free: std::sync::Mutex<Spare>,
    /// Size of the buffers `take` hands out.
    buf_size: usize,
    /// Most bytes of spare buffers kept; beyond that, returned buffers are freed.
    max_spare_bytes: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct Spare {
    bufs: Vec<PieceBuf>,
    bytes: usize,
}

impl BufPool {
    /// A pool of buffers of `buf_size` bytes keeping at most `max_spare` spare.
    pub fn new(buf_size: usize, max_spare: usize) -> std::sync::Arc<BufPool> {
        Self::with_byte_limit(buf_size, buf_size.saturating_mul(max_spare))
    }

    /// A pool keeping at most `max_spare_bytes` of spare buffers (of any size).
    pub fn with_byte_limit(buf_size: usize, max_spare_bytes: usize) -> std::sync::Arc<BufPool> {
        std::sync::Arc::new(BufPool {
            free: std::sync::Mutex::new(Spare::default()),
            buf_size,
            max_spare_bytes: std::sync::atomic::AtomicUsize::new(max_spare_bytes),
        })
    }

    /// Keeps at least `bytes` of spare buffers from now on (a torrent of
    /// large pieces arrived: freeing and allocating each of its pieces would
    /// cost a fresh, zeroed allocation per piece).
    pub fn keep_at_least(&self, bytes: usize) {
        self.max_spare_bytes
            .fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Spare> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of `len` bytes (at most the pool's buffer size), reused if
    /// one is spare. Its contents are whatever it last held.
    pub fn take(&self, len: usize) -> PieceBuf {
        let mut b = self.take_at_least(self.buf_size.max(len));
        b.set_len(len);
        b
    }

    /// A buffer of capacity at least `cap` (length 0), reused if a spare one
    /// is large enough.
    pub fn take_at_least(&self, cap: usize) -> PieceBuf {
        let found = {
            let mut spare = self.spare();
            let pos = spare.bufs.iter().rposition(|b| b.capacity() >= cap);
            pos.map(|i| {
                let b = spare.bufs.swap_remove(i);
                spare.bytes -= b.capacity();
                b
            })
        };
        let mut b = found.unwrap_or_else(|| PieceBuf::new(cap, 0));
        b.set_len(0);
        b
    }

    pub fn put(&self, buf: PieceBuf) {
        let mut spare = self.spare();
        let max = self
            .max_spare_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        if buf.capacity() >= self.buf_size && spare.bytes + buf.capacity() <= max {
            spare.bytes += buf.capacity();
            spare.bufs.push(buf);
        }
    }

    /// Shares a filled buffer as `Bytes`; it comes back to the pool when
    /// the last slice of it is dropped (after the sends that used it).
    pub fn share(self: &std::sync::Arc<Self>, buf: PieceBuf) -> bytes::Bytes {
        bytes::Bytes::from_owner(Pooled {
            buf: Some(buf),
            pool: self.clone(),
        })
    }
}

struct Pooled {
    buf: Option<PieceBuf>,
    pool: std::sync::Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.put(b);
        }
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn shared_buffers_return_to_the_pool() {
        let pool = BufPool::new(8192, 2);
        let mut b = pool.take(5000);
        b[0] = 42;
        let ptr = b.as_ptr();
        let bytes = pool.share(b);
        let slice = bytes.slice(0..10);
        drop(bytes);
        assert_eq!(slice[0], 42, "a slice keeps the buffer alive");
        drop(slice);
        let again = pool.take(100);
        assert_eq!(again.as_ptr(), ptr, "the buffer was reused");
        assert_eq!(again.len(), 100);
    }
}
