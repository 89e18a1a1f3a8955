//! Hashing pieces straight from files on every core: used by `create` and by
//! the start-up check of existing data.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One file of the torrent's byte stream, as the hasher reads it.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    File(&'a File, u64),
    /// BEP 47 padding: reads as zeros.
    Zeros(u64),
    /// Not on disk: pieces touching it cannot be hashed.
    Missing(u64),
}

impl Source<'_> {
    pub fn len(&self) -> u64 {
        match *self {
            Source::File(_, l) | Source::Zeros(l) | Source::Missing(l) => l,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a piece could not be hashed.
#[derive(Debug)]
pub enum ReadError {
    /// The piece touches a missing file or a file shorter than expected.
    Missing,
    Io(std::io::Error),
}

/// A piece as read, and its SHA-1 when asked for (computed in batches).
pub struct Read<'a> {
    pub data: &'a [u8],
    pub sha1: Option<[u8; 20]>,
}

/// Reads every piece for which `want(piece)` holds, on `threads` threads,
/// calling `done(piece, result)` for each, with its SHA-1 when `sha1`. Workers take runs of pieces from a
/// shared counter and read each run with positioned reads, so reads stay
/// large and every core stays busy. Returns early if `cancel` is set.
pub fn hash_pieces(
    sources: &[Source<'_>],
    piece_length: u32,
    threads: usize,
    sha1: bool,
    want: &(dyn Fn(u32) -> bool + Sync),
    done: &(dyn Fn(u32, Result<Read<'_>, ReadError>) + Sync),
    cancel: &AtomicBool,
) {
    let total: u64 = sources.iter().map(Source::len).sum();
    let count = total.div_ceil(u64::from(piece_length)) as u32;
    let mut offsets = Vec::with_capacity(sources.len());
    let mut acc = 0;
    for s in sources {
        offsets.push(acc);
        acc += s.len();
    }
    // Runs of at least 16 pieces (a multi-buffer batch) and 4 MiB, at most
    // 16 MiB unless a single piece is larger.
    let run = (4 * 1024 * 1024 / piece_length)
        .max(16)
        .min((16 * 1024 * 1024 / piece_length).max(1));
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(count.div_ceil(run) as usize)
    .max(1);
    let next = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; (run * piece_length) as usize];
                loop {
                    let start = next.fetch_add(run, Ordering::Relaxed);
                    if start >= count || cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let end = (start + run).min(count);
                    // Read only the wanted pieces, in contiguous stretches.
                    let mut p = start;
                    while p < end {
                        if !want(p) {
                            p += 1;
                            continue;
                        }
                        let mut q = p + 1;
                        while q < end && want(q) {
                            q += 1;
                        }
                        let from = u64::from(p) * u64::from(piece_length);
                        let to = (u64::from(q) * u64::from(piece_length)).min(total);
                        let len = (to - from) as usize;
                        match read_range(sources, &offsets, from, &mut buf[..len]) {
                            Ok(()) => {
                                let chunks: Vec<&[u8]> =
                                    buf[..len].chunks(piece_length as usize).collect();
                                let mut digests = if sha1 {
                                    crate::hash::sha1_batch(&chunks)
                                } else {
                                    Vec::new()
                                }
                                .into_iter();
                                for (i, data) in chunks.into_iter().enumerate() {
                                    let sha1 = digests.next();
                                    done(p + i as u32, Ok(Read { data, sha1 }));
                                }
                            }
                            // Retry piece by piece, so one bad piece spoils only itself.
                            Err(_) if q - p > 1 => {
                                for i in p..q {
                                    let from = u64::from(i) * u64::from(piece_length);
                                    let to = (from + u64::from(piece_length)).min(total);
                                    let chunk = &mut buf[..(to - from) as usize];
                                    let r =
                                        read_range(sources, &offsets, from, chunk).map(|()| Read {
                                            sha1: sha1.then(|| crate::hash::sha1(chunk)),
                                            data: chunk,
                                        });
                                    done(i, r);
                                }
                            }
                            Err(e) => done(p, Err(e)),
                        }
                        p = q;
                    }
                }
            });
        }
    });
}

/// Reads torrent bytes `from..from + buf.len()` across file boundaries.
pub fn read_range(
    sources: &[Source<'_>],
    offsets: &[u64],
    from: u64,
    buf: &mut [u8],
) -> Result<(), ReadError> {
    let mut i = offsets.partition_point(|&o| o <= from).saturating_sub(1);
    let mut pos = from;
    let mut filled = 0;
    while filled < buf.len() {
        let Some(src) = sources.get(i) else {
            return Err(ReadError::Missing);
        };
        let in_file = pos - offsets[i];
        if in_file >= src.len() {
            i += 1;
            continue;
        }
        let n = ((src.len() - in_file) as usize).min(buf.len() - filled);
        let dst = &mut buf[filled..filled + n];
        match *src {
            Source::File(f, _) => f.read_exact_at(dst, in_file).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => ReadError::Missing,
                _ => ReadError::Io(e),
            })?,
            Source::Zeros(_) => dst.fill(0),
            Source::Missing(_) => return Err(ReadError::Missing),
        }
        filled += n;
        pos += n as u64;
        i += 1;
    }
    Ok(())
}
