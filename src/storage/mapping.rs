//! Pieces to upload, mapped from the page cache instead of copied out of it.
//!
//! A seeder's data is usually already in the page cache. Reading a piece
//! into a buffer copies it once there and once more into the socket; a
//! read-only shared mapping leaves only the socket's copy. The mapping lives
//! as long as the `Bytes` that point into it (the sends that use it).
//!
//! Pages that are not cached would be read from disk by a page fault inside
//! `sendmsg`, stalling the shard's event loop; such pieces are read through
//! io_uring instead (`Mapping::cached` says which).
//!
//! Only the kernel touches the mapped bytes (in `sendmsg`). If the file
//! shrinks under a mapping, that copy fails with `EFAULT` instead of the
//! `SIGBUS` a user-space read would get; the send fails and the caller drops
//! its mappings (see `Driver`). The size is checked when a piece is mapped,
//! so a file truncated earlier is reported like a short read.

use std::fs::File;
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags};

/// A read-only shared mapping of `len` bytes of a file at `offset`.
pub struct Mapping {
    /// Start of the mapping (page-aligned, at or before the data).
    base: NonNull<core::ffi::c_void>,
    mapped: usize,
    /// Where the requested bytes start inside the mapping.
    skip: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; the
// pointer is only dereferenced to build shared slices.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for Mapping {}

/// Why a range could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("file is shorter than the torrent says")]
    Short,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Mapping {
    /// Maps `len > 0` bytes of `file` at `offset`, after checking that the
    /// file still holds them.
    pub fn new(file: &File, offset: u64, len: usize) -> Result<Mapping, MapError> {
        let size = rustix::fs::fstat(file)
            .map_err(std::io::Error::from)?
            .st_size as u64;
        let end = offset.checked_add(len as u64).ok_or(MapError::Short)?;
        if len == 0 || end > size {
            return Err(MapError::Short);
        }
        let page = rustix::param::page_size() as u64;
        let start = offset / page * page;
        let skip = (offset - start) as usize;
        let mapped = skip + len;
        // SAFETY: a fresh mapping at an address the kernel picks: it aliases
        // no Rust object. The file's range was checked to exist above.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                mapped,
                ProtFlags::READ,
                MapFlags::SHARED,
                file,
                start,
            )
        }
        .map_err(std::io::Error::from)?;
        let Some(base) = NonNull::new(base) else {
            return Err(MapError::Io(std::io::Error::other("mmap returned null")));
        };
        Ok(Mapping {
            base,
            mapped,
            skip,
            len,
        })
    }

    /// Maps the range if every page of it is in the page cache; `None` if
    /// some page is not (reading it through io_uring does not block).
    pub fn cached(file: &File, offset: u64, len: usize) -> Result<Option<Mapping>, MapError> {
        let m = Mapping::new(file, offset, len)?;
        Ok(m.resident()?.then_some(m))
    }

    fn resident(&self) -> std::io::Result<bool> {
        const CHUNK: usize = 256;
        let page = rustix::param::page_size();
        let pages = self.mapped.div_ceil(page);
        let mut vec = [0u8; CHUNK];
        let mut at = 0;
        while at < pages {
            let n = (pages - at).min(CHUNK);
            let len = (n * page).min(self.mapped - at * page);
            // SAFETY: the address is page-aligned and `len` bytes from it lie
            // inside our mapping; `vec` has room for one byte per page.
            let rc = unsafe {
                libc::mincore(
                    self.base.as_ptr().cast::<u8>().add(at * page).cast(),
                    len,
                    vec.as_mut_ptr(),
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if vec[..n].iter().any(|v| v & 1 == 0) {
                return Ok(false);
            }
            at += n;
        }
        Ok(true)
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `skip + len == mapped` bytes are mapped readable for the
        // life of `self`. As with any shared file mapping (memmap2's `map`
        // is unsafe for this reason), another process may change or
        // truncate the file meanwhile; the engine only hands these bytes to
        // `sendmsg`, never reads or interprets them itself, so a change can
        // only alter what is sent (the peer's hash check catches it) and a
        // truncation fails that send (see the module comment).
        unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().cast::<u8>().add(self.skip), self.len)
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`mapped` are exactly what `mmap` returned and were
        // not unmapped before; no slice outlives `self` (Bytes owns it).
        if let Err(e) = unsafe { rustix::mm::munmap(self.base.as_ptr(), self.mapped) } {
            log::warn!("munmap: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_unaligned_ranges_and_refuses_missing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let m = Mapping::new(&file, 4097, 10_000).unwrap();
        assert_eq!(m.as_ref(), &data[4097..14_097]);
        let all = Mapping::new(&file, 0, 20_000).unwrap();
        assert_eq!(all.as_ref(), &data[..]);
        assert!(matches!(
            Mapping::new(&file, 15_000, 5001),
            Err(MapError::Short)
        ));
        assert!(matches!(Mapping::new(&file, 0, 0), Err(MapError::Short)));
        assert!(matches!(
            Mapping::new(&file, u64::MAX, 1),
            Err(MapError::Short)
        ));
    }

    #[test]
    fn only_cached_pages_are_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let file = File::open(&path).unwrap();
        // Just written: in the page cache.
        let m = Mapping::cached(&file, 100, 500_000).unwrap();
        assert_eq!(m.unwrap().as_ref(), &[7u8; 500_000][..]);
        // Dropped from the page cache (clean pages, once written back).
        // tmpfs has no other copy of its pages, so they stay.
        let fs = rustix::fs::fstatfs(&file).unwrap();
        if fs.f_type == libc::TMPFS_MAGIC {
            eprintln!("skipped: {} is on tmpfs", dir.path().display());
            return;
        }
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        assert!(Mapping::cached(&file, 100, 500_000).unwrap().is_none());
    }
}
