//! A shard's io_uring event loop. It owns the shard's sockets and carries
//! out the shard logic's actions; it makes no protocol decisions.
//!
//! Every buffer, iovec array and address the kernel may touch is owned by an
//! entry in `ops` (a slab keyed by the SQE's `user_data`) until the matching
//! completion arrives, so nothing is freed or moved while the kernel uses it.
//! On shutdown the loop cancels what is in flight and waits for the
//! completions before the ring and the buffers go away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;

use super::hasher::{self, Job};
use crate::buffer::{ALIGN, PieceBuf};
use crate::metainfo::Info;
use crate::peer::PeerError;
use crate::storage::Storage;
use crate::storage::mapping::Mapping;
use crate::torrent::shared::lock;
use crate::torrent::stats::Stats;
use crate::torrent::{Action, ConnId, ReadKey, Shard, ShardMsg, Shared};

/// Bytes each connection receives into per `recv`.
const RECV_BUFFER: usize = 128 * 1024;
/// Most segments handed to one `sendmsg`.
const MAX_IOVECS: usize = 64;
const TICK: Duration = Duration::from_millis(100);
/// `user_data` of SQEs whose completions carry nothing we need.
const IGNORED: u64 = u64::MAX;

/// Timing counters of one shard, for `bench`'s breakdown.
#[derive(Debug, Default, Clone)]
pub struct LoopStats {
    pub recv_ops: u64,
    pub recv_bytes: u64,
    pub send_ops: u64,
    pub send_bytes: u64,
    pub disk_ops: u64,
    /// Time spent outside `io_uring_enter` waits: the loop's own work.
    pub busy: Duration,
}

/// What the shard thread returns.
pub struct ShardReport {
    pub latency: hdrhistogram::Histogram<u64>,
    pub stats: LoopStats,
}

enum Op {
    /// Multishot accept on the listener.
    Accept,
    Connect {
        conn: ConnId,
        _addr: Box<socket2::SockAddr>,
    },
    Recv {
        conn: ConnId,
        buf: Vec<u8>,
    },
    Send {
        conn: ConnId,
        _segments: Vec<Bytes>,
        _iovecs: Box<[libc::iovec]>,
        _msg: Box<libc::msghdr>,
    },
    /// One file span of a piece read or write.
    Disk {
        job: usize,
        file: usize,
        file_offset: u64,
        buf_offset: usize,
        len: usize,
    },
    /// The eventfd counter lands in `_buf`.
    EventFd {
        _buf: Box<[u8; 8]>,
    },
}

/// A read unit read (into a pooled buffer, to become shared `Bytes`) or a
/// verified piece to write (from its download buffer).
enum JobBuf {
    Read(ReadKey, PieceBuf),
    Write(PieceBuf),
}

impl JobBuf {
    fn as_mut_ptr(&mut self) -> *mut u8 {
        match self {
            JobBuf::Read(_, b) | JobBuf::Write(b) => b.as_mut_ptr(),
        }
    }

    fn len(&self) -> usize {
        match self {
            JobBuf::Read(_, b) | JobBuf::Write(b) => b.len(),
        }
    }
}

/// A piece read or write spread over file spans.
struct DiskJob {
    piece: u32,
    buf: JobBuf,
    /// Bytes the piece was moved up in its buffer to line up with its file
    /// for direct I/O (undone when the job ends).
    shift: usize,
    outstanding: u32,
    error: Option<String>,
    started: Instant,
    /// Spans written through the page cache: (file, offset, length).
    write_behind: Vec<(usize, u64, u32)>,
}

struct Sock {
    fd: OwnedFd,
    /// Our receive buffer while no recv is in flight.
    buf: Option<Vec<u8>>,
    recv_pending: bool,
    send_pending: bool,
    connecting: bool,
    closing: bool,
}

impl Sock {
    fn new(fd: OwnedFd) -> Sock {
        Sock {
            fd,
            buf: Some(vec![0u8; RECV_BUFFER]),
            recv_pending: false,
            send_pending: false,
            connecting: false,
            closing: false,
        }
    }

    fn busy(&self) -> bool {
        self.recv_pending || self.send_pending || self.connecting
    }
}

/// How a driver does its I/O.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Upload cached units from a mapping of the file.
    pub map_uploads: bool,
    /// Write the aligned middle of each span with `O_DIRECT` (where the file
    /// has a direct descriptor); otherwise through the page cache.
    pub direct_writes: bool,
}

pub struct Driver {
    ring: IoUring,
    shard: Shard,
    shared: Arc<Shared>,
    info: Arc<Info>,
    storage: Arc<Storage>,
    ops: Slab<Op>,
    jobs: Slab<DiskJob>,
    socks: HashMap<ConnId, Sock>,
    listener: Option<OwnedFd>,
    eventfd: Arc<OwnedFd>,
    hasher: Option<Sender<Job>>,
    cfg: DriverConfig,
    last_tick: Instant,
    stats: LoopStats,
    stopping: bool,
}

impl Driver {
    pub fn new(
        shard: Shard,
        storage: Arc<Storage>,
        listener: Option<OwnedFd>,
        eventfd: Arc<OwnedFd>,
        hasher: Option<Sender<Job>>,
        cfg: DriverConfig,
    ) -> std::io::Result<Driver> {
        // One thread submits, and completions run only when it asks for them.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(1024)
            .or_else(|_| IoUring::new(1024))?;
        let shared = shard.shared().clone();
        Ok(Driver {
            ring,
            info: shared.info.clone(),
            shared,
            shard,
            storage,
            ops: Slab::with_capacity(256),
            jobs: Slab::new(),
            socks: HashMap::new(),
            listener,
            eventfd,
            hasher,
            cfg,
            last_tick: Instant::now(),
            stats: LoopStats::default(),
            stopping: false,
        })
    }

    pub fn run(mut self) -> std::io::Result<ShardReport> {
        if let Some(l) = &self.listener {
            let fd = l.as_raw_fd();
            self.submit(Op::Accept, opcode::AcceptMulti::new(types::Fd(fd)).build());
        }
        self.arm_eventfd();
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(256);
        let mut stop_deadline: Option<Instant> = None;
        loop {
            let ts = types::Timespec::from(TICK);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            let busy_from = Instant::now();
            completions.clear();
            completions.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(key, res, flags) in &completions {
                self.complete(key, res, flags);
            }
            let now = Instant::now();
            if now.duration_since(self.last_tick) >= TICK {
                self.last_tick = now;
                self.shard.handle_tick(now);
            }
            self.pump();
            self.stats.busy += busy_from.elapsed();

            if self.stopping {
                let deadline = *stop_deadline.get_or_insert(now + Duration::from_secs(1));
                // Only the listener and the eventfd left, or out of patience.
                let live = self
                    .ops
                    .iter()
                    .filter(|(_, op)| !matches!(op, Op::Accept | Op::EventFd { .. }))
                    .count();
                if live == 0 || now >= deadline {
                    log::debug!(
                        "shard {} leaving its loop with {live} operations in flight",
                        self.shard.id
                    );
                    break;
                }
            }
        }
        self.cancel_all();
        Ok(ShardReport {
            latency: self.shard.latency().clone(),
            stats: self.stats.clone(),
        })
    }

    /// Pushes an SQE for `op`, submitting first if the queue is full.
    fn submit(&mut self, op: Op, sqe: squeue::Entry) -> u64 {
        let key = self.ops.insert(op) as u64;
        self.push(sqe.user_data(key));
        key
    }

    fn push(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: every pointer in `sqe` refers to memory owned by an
            // entry of `self.ops` (or `self.jobs`), which stays allocated and
            // unmoved until the SQE's completion is reaped in `complete`.
            let pushed = unsafe { self.ring.submission().push(&sqe) };
            if pushed.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                log::error!("io_uring submit failed: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn arm_eventfd(&mut self) {
        let mut buf = Box::new([0u8; 8]);
        let sqe =
            opcode::Read::new(types::Fd(self.eventfd.as_raw_fd()), buf.as_mut_ptr(), 8).build();
        self.submit(Op::EventFd { _buf: buf }, sqe);
    }

    fn arm_recv(&mut self, conn: ConnId) {
        let Some(sock) = self.socks.get_mut(&conn) else {
            return;
        };
        if sock.recv_pending || sock.closing {
            return;
        }
        let Some(mut buf) = sock.buf.take() else {
            return;
        };
        let fd = sock.fd.as_raw_fd();
        sock.recv_pending = true;
        let sqe = opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).build();
        self.submit(Op::Recv { conn, buf }, sqe);
    }

    fn start_send(&mut self, conn: ConnId) {
        let Some(sock) = self.socks.get(&conn) else {
            return;
        };
        if sock.send_pending || sock.closing || sock.connecting {
            return;
        }
        let fd = sock.fd.as_raw_fd();
        let Some(q) = self.shard.send_queue(conn) else {
            return;
        };
        let segments = q.front(MAX_IOVECS);
        if segments.is_empty() {
            return;
        }
        let mut iovecs: Box<[libc::iovec]> = segments
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msg.msg_iov = iovecs.as_mut_ptr();
        msg.msg_iovlen = iovecs.len() as _;
        let sqe = opcode::SendMsg::new(types::Fd(fd), &*msg as *const libc::msghdr)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build();
        if let Some(s) = self.socks.get_mut(&conn) {
            s.send_pending = true;
        }
        self.submit(
            Op::Send {
                conn,
                _segments: segments,
                _iovecs: iovecs,
                _msg: msg,
            },
            sqe,
        );
    }

    /// Carries out the shard's actions and starts sends for new bytes.
    fn pump(&mut self) {
        while let Some(action) = self.shard.poll_action() {
            self.act(action);
        }
        for conn in self.shard.take_dirty() {
            self.start_send(conn);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect { conn, addr } => self.connect(conn, addr),
            Action::Close { conn } => self.close(conn),
            Action::Read { key, begin, len } => self.read_unit(key, begin, len),
            Action::Write { piece, buf } => self.disk(piece, 0, JobBuf::Write(buf)),
            Action::Hash { piece, buf } => match &self.hasher {
                Some(tx) => {
                    let job = Job {
                        shard: self.shard.id,
                        piece,
                        buf,
                    };
                    if let Err(e) = tx.send(job) {
                        // The pool is gone (shutting down): verify here.
                        let job = e.0;
                        let ok = hasher::verify(&self.shared, job.piece, &job.buf);
                        self.shard
                            .handle_hashed(Instant::now(), job.piece, job.buf, ok);
                    }
                }
                None => {
                    let ok = hasher::verify(&self.shared, piece, &buf);
                    self.shard.handle_hashed(Instant::now(), piece, buf, ok);
                }
            },
        }
    }

    fn connect(&mut self, conn: ConnId, addr: SocketAddr) {
        let sock = match new_socket(&addr) {
            Ok(s) => s,
            Err(e) => {
                self.shard
                    .handle_connect_failed(Instant::now(), conn, &e.to_string());
                return;
            }
        };
        let fd = OwnedFd::from(sock);
        let raw = fd.as_raw_fd();
        let mut s = Sock::new(fd);
        s.connecting = true;
        self.socks.insert(conn, s);
        let sa = Box::new(socket2::SockAddr::from(addr));
        let sqe = opcode::Connect::new(types::Fd(raw), sa.as_ptr().cast(), sa.len()).build();
        self.submit(Op::Connect { conn, _addr: sa }, sqe);
    }

    /// Closes a connection's socket once no operation uses it any more.
    fn close(&mut self, conn: ConnId) {
        let Some(sock) = self.socks.get_mut(&conn) else {
            return;
        };
        sock.closing = true;
        if sock.busy() {
            // Wake the pending recv/send; their completions finish the close.
            let _ = rustix::net::shutdown(&sock.fd, rustix::net::Shutdown::Both);
        } else {
            self.socks.remove(&conn);
        }
    }

    fn finish_close_if_idle(&mut self, conn: ConnId) {
        if self
            .socks
            .get(&conn)
            .is_some_and(|s| s.closing && !s.busy())
        {
            self.socks.remove(&conn);
        }
    }

    /// Maps a read unit that lies within one file and is in the page cache
    /// (its pages go to the socket without a copy into a buffer); reads the
    /// others, through io_uring so that a cold unit does not stall the loop.
    fn read_unit(&mut self, key: ReadKey, begin: u32, len: u32) {
        if self.cfg.map_uploads
            && let Some(data) = self.map_unit(key.piece, begin, len)
        {
            self.stats.disk_ops += 1;
            self.shard.handle_piece_data(Instant::now(), key, data);
            return;
        }
        let buf = self.shared.read_pool.take(len as usize);
        self.disk(key.piece, begin, JobBuf::Read(key, buf));
    }

    /// The unit's bytes as a mapping, or why they cannot be had; `None`
    /// when it must be read instead (it spans files, or is not all cached).
    fn map_unit(&self, piece: u32, begin: u32, len: u32) -> Option<Result<Bytes, String>> {
        let mut spans = self.info.block_spans(piece, begin, len);
        let (Some(span), None) = (spans.next(), spans.next()) else {
            return None;
        };
        let file = self.storage.file(span.file)?;
        match Mapping::cached(file, span.offset, span.len as usize) {
            Ok(None) => None,
            Ok(Some(m)) => Some(Ok(Bytes::from_owner(m))),
            Err(e) => Some(Err(e.to_string())),
        }
    }

    /// Reads or writes a piece, one op per file span. Writes go through the
    /// `O_DIRECT` descriptor for the 4 KiB-aligned middle of each span (no
    /// page cache), through the buffered one for unaligned heads and tails.
    fn disk(&mut self, piece: u32, begin: u32, mut buf: JobBuf) {
        let write = matches!(buf, JobBuf::Write(_));
        let direct = write && self.cfg.direct_writes;
        let spans: Vec<_> = self
            .info
            .block_spans(piece, begin, buf.len() as u32)
            .collect();
        let shift = match &mut buf {
            JobBuf::Write(b) if direct => self.align_for_direct(b, &spans),
            _ => 0,
        };
        let base = buf.as_mut_ptr() as usize;
        let mut ops: Vec<(usize, bool, u64, usize, usize)> = Vec::new();
        let mut error = None;
        let mut at = shift;
        for s in spans {
            let len = s.len as usize;
            let entry = &self.info.files[s.file];
            if self.storage.fd(s.file).is_none() {
                if entry.attr.pad {
                    // Padding is zeros on the wire and nothing on disk.
                    if let JobBuf::Read(_, b) = &mut buf {
                        b[at..at + len].fill(0);
                    }
                } else {
                    error = Some(format!("{} is not available", entry.display_path()));
                }
                at += len;
                continue;
            }
            let congruent = (base + at) % ALIGN == (s.offset % ALIGN as u64) as usize;
            if direct && congruent && self.storage.direct_fd(s.file).is_some() {
                let head = ((ALIGN - (s.offset % ALIGN as u64) as usize) % ALIGN).min(len);
                let middle = (len - head) / ALIGN * ALIGN;
                let tail = len - head - middle;
                if head > 0 {
                    ops.push((s.file, false, s.offset, at, head));
                }
                if middle > 0 {
                    ops.push((s.file, true, s.offset + head as u64, at + head, middle));
                }
                if tail > 0 {
                    ops.push((
                        s.file,
                        false,
                        s.offset + (head + middle) as u64,
                        at + head + middle,
                        tail,
                    ));
                }
            } else {
                ops.push((s.file, false, s.offset, at, len));
            }
            at += len;
        }
        let write_behind = if write {
            ops.iter()
                .filter(|o| !o.1)
                .map(|&(file, _, offset, _, len)| (file, offset, len as u32))
                .collect()
        } else {
            Vec::new()
        };
        let job = self.jobs.insert(DiskJob {
            piece,
            buf,
            shift,
            outstanding: ops.len() as u32,
            error,
            started: Instant::now(),
            write_behind,
        });
        if ops.is_empty() {
            self.finish_job(job);
            return;
        }
        for (file, direct, file_offset, buf_offset, len) in ops {
            self.submit_disk(job, file, direct, file_offset, buf_offset, len);
        }
    }

    /// Starts writeback of what a buffered write left dirty, so pages are on
    /// their way to disk at once instead of piling up until the kernel's
    /// dirty limits stall the writers (and the next resume save's flush).
    fn write_behind(&mut self, spans: &[(usize, u64, u32)]) {
        for &(file, offset, len) in spans {
            if let Some(fd) = self.storage.fd(file) {
                let sqe = opcode::SyncFileRange::new(types::Fd(fd), len)
                    .offset(offset)
                    .flags(libc::SYNC_FILE_RANGE_WRITE)
                    .build()
                    .user_data(IGNORED);
                self.push(sqe);
            }
        }
    }

    /// In a multi-file torrent most files start at offsets that are not
    /// block-aligned, so a piece's bytes never line up with their file and
    /// would all go through the page cache. Moving the piece up by less than
    /// a block inside its buffer lines up its largest span: one memmove
    /// instead of a page-cache copy (and its page faults) for that span.
    /// Returns the shift; the data then starts at `buf[shift..]`.
    fn align_for_direct(&self, buf: &mut PieceBuf, spans: &[crate::metainfo::FileSpan]) -> usize {
        const WORTH_IT: u64 = 16 * ALIGN as u64;
        let Some(big) = spans
            .iter()
            .filter(|s| s.len >= WORTH_IT && self.storage.direct_fd(s.file).is_some())
            .max_by_key(|s| s.len)
        else {
            return 0;
        };
        let before: u64 = spans
            .iter()
            .take_while(|s| !std::ptr::eq(*s, big))
            .map(|s| s.len)
            .sum();
        let base = buf.as_ptr() as usize % ALIGN;
        let want = (big.offset % ALIGN as u64) as usize;
        let shift = (want + ALIGN - (base + before as usize) % ALIGN) % ALIGN;
        let len = buf.len();
        if shift == 0 || len + shift > buf.capacity() {
            return 0;
        }
        buf.set_len(len + shift);
        buf.copy_within(0..len, shift);
        shift
    }

    fn submit_disk(
        &mut self,
        job: usize,
        file: usize,
        direct: bool,
        file_offset: u64,
        buf_offset: usize,
        len: usize,
    ) {
        let fd = if direct {
            self.storage.direct_fd(file)
        } else {
            self.storage.fd(file)
        };
        let Some(fd) = fd else {
            let j = &mut self.jobs[job];
            j.error.get_or_insert_with(|| "file closed".to_owned());
            j.outstanding -= 1;
            if j.outstanding == 0 {
                self.finish_job(job);
            }
            return;
        };
        let j = &mut self.jobs[job];
        let write = matches!(j.buf, JobBuf::Write(_));
        // SAFETY: `buf_offset + len` lies within the job's buffer (the spans
        // tile the piece), which the job keeps alive until every span is done.
        let ptr = unsafe { j.buf.as_mut_ptr().add(buf_offset) };
        let sqe = if write {
            opcode::Write::new(types::Fd(fd), ptr, len as u32)
                .offset(file_offset)
                .build()
        } else {
            opcode::Read::new(types::Fd(fd), ptr, len as u32)
                .offset(file_offset)
                .build()
        };
        self.stats.disk_ops += 1;
        self.submit(
            Op::Disk {
                job,
                file,
                file_offset,
                buf_offset,
                len,
            },
            sqe,
        );
    }

    fn finish_job(&mut self, job: usize) {
        let j = self.jobs.remove(job);
        if j.error.is_none() {
            self.write_behind(&j.write_behind);
        }
        Stats::add(
            &self.shared.stats.disk_nanos,
            j.started.elapsed().as_nanos() as u64,
        );
        let result = match j.error {
            None => Ok(()),
            Some(e) => Err(e),
        };
        let now = Instant::now();
        match j.buf {
            JobBuf::Write(mut buf) => {
                // The bytes are on disk; the buffer goes back to the pool.
                buf.set_len(buf.len() - j.shift);
                self.shard.handle_written(now, j.piece, buf, result)
            }
            JobBuf::Read(key, buf) => self.shard.handle_read(now, key, buf, result),
        }
    }

    fn complete(&mut self, key: u64, res: i32, flags: u32) {
        if key == IGNORED {
            return;
        }
        let key = key as usize;
        // A multishot accept stays registered while the kernel says MORE.
        if matches!(self.ops.get(key), Some(Op::Accept)) {
            self.accepted(res);
            if !cqueue::more(flags) {
                self.ops.remove(key);
                if !self.stopping
                    && let Some(l) = &self.listener
                {
                    let fd = l.as_raw_fd();
                    self.submit(Op::Accept, opcode::AcceptMulti::new(types::Fd(fd)).build());
                }
            }
            return;
        }
        let Some(op) = self.ops.try_remove(key) else {
            return;
        };
        let now = Instant::now();
        match op {
            Op::Accept => {}
            Op::EventFd { .. } => {
                for msg in self.shared.inboxes[self.shard.id].drain() {
                    match msg {
                        ShardMsg::Adopt(fd, addr) => self.adopt(fd, addr),
                        ShardMsg::Shutdown => {
                            self.stopping = true;
                            self.shard.handle_msg(now, ShardMsg::Shutdown);
                        }
                        other => self.shard.handle_msg(now, other),
                    }
                }
                if !self.stopping {
                    self.arm_eventfd();
                }
            }
            Op::Connect { conn, .. } => {
                if let Some(s) = self.socks.get_mut(&conn) {
                    s.connecting = false;
                }
                if res < 0 {
                    let e = std::io::Error::from_raw_os_error(-res);
                    self.shard.handle_connect_failed(now, conn, &e.to_string());
                    self.finish_close_if_idle(conn);
                } else if let Some(sock) = self.socks.get(&conn).filter(|s| !s.closing) {
                    let local = rustix::net::getsockname(&sock.fd)
                        .ok()
                        .and_then(|a| SocketAddr::try_from(a).ok());
                    self.shard.handle_connected(now, conn, local);
                    self.arm_recv(conn);
                } else {
                    self.finish_close_if_idle(conn);
                }
            }
            Op::Recv { conn, buf } => {
                let Some(sock) = self.socks.get_mut(&conn) else {
                    return;
                };
                sock.recv_pending = false;
                if sock.closing {
                    sock.buf = Some(buf);
                } else if res > 0 {
                    self.stats.recv_ops += 1;
                    self.stats.recv_bytes += res as u64;
                    self.shard.handle_recv(now, conn, &buf[..res as usize]);
                    if let Some(s) = self.socks.get_mut(&conn) {
                        s.buf = Some(buf);
                    }
                    self.arm_recv(conn);
                } else {
                    sock.buf = Some(buf);
                    let why = match res {
                        0 => PeerError::Closed,
                        e => PeerError::Io(std::io::Error::from_raw_os_error(-e).to_string()),
                    };
                    self.shard.handle_closed(now, conn, why);
                }
                self.finish_close_if_idle(conn);
            }
            Op::Send { conn, .. } => {
                let Some(sock) = self.socks.get_mut(&conn) else {
                    return;
                };
                sock.send_pending = false;
                if sock.closing {
                    self.finish_close_if_idle(conn);
                    return;
                }
                if res < 0 {
                    if res == -libc::EFAULT {
                        // See `storage::mapping`: a mapped file shrank.
                        self.shard.handle_upload_fault();
                    }
                    let err = std::io::Error::from_raw_os_error(-res);
                    self.shard
                        .handle_closed(now, conn, PeerError::Io(err.to_string()));
                    self.finish_close_if_idle(conn);
                    return;
                }
                self.stats.send_ops += 1;
                self.stats.send_bytes += res as u64;
                self.shard.handle_sent(now, conn, res as usize);
                self.start_send(conn);
            }
            Op::Disk {
                job,
                file,
                file_offset,
                buf_offset,
                len,
            } => {
                let Some(j) = self.jobs.get_mut(job) else {
                    return;
                };
                if res > 0 && matches!(j.buf, JobBuf::Write(_)) {
                    // Before the piece can be marked had: see `Storage::sync`.
                    self.storage.mark_written(file);
                }
                match res {
                    n if n < 0 => {
                        let err = std::io::Error::from_raw_os_error(-n);
                        j.error.get_or_insert_with(|| err.to_string());
                    }
                    0 if len > 0 => {
                        j.error.get_or_insert_with(|| {
                            "file is shorter than the torrent says".to_owned()
                        });
                    }
                    n if (n as usize) < len => {
                        // Short transfer: carry on from where it stopped,
                        // buffered (the rest may no longer be aligned).
                        let n = n as usize;
                        self.submit_disk(
                            job,
                            file,
                            false,
                            file_offset + n as u64,
                            buf_offset + n,
                            len - n,
                        );
                        return;
                    }
                    _ => {}
                }
                let j = &mut self.jobs[job];
                j.outstanding -= 1;
                if j.outstanding == 0 {
                    self.finish_job(job);
                }
            }
        }
    }

    fn accepted(&mut self, res: i32) {
        if res < 0 {
            log::warn!("accept: {}", std::io::Error::from_raw_os_error(-res));
            return;
        }
        // SAFETY: a non-negative accept result is a new descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(res) };
        let addr = match rustix::net::getpeername(&fd) {
            Ok(Some(a)) => match SocketAddr::try_from(a) {
                Ok(a) => a,
                Err(_) => return,
            },
            _ => return,
        };
        let _ = rustix::net::sockopt::set_tcp_nodelay(&fd, true);
        if self.stopping {
            return;
        }
        let admit = lock(&self.shared.registry).incoming(addr);
        let Some(admit) = admit else {
            log::debug!("refusing {addr}: at the connection limit");
            self.shared.stats.disconnected("refused", false);
            return;
        };
        if let Some((victim, shard)) = admit.displace {
            log::debug!("{victim} never completed its handshake; making room for {addr}");
            if shard == self.shard.id {
                self.shard
                    .handle_msg(Instant::now(), ShardMsg::Displace(victim));
            } else {
                self.shared.inboxes[shard].post(ShardMsg::Displace(victim));
            }
        }
        if admit.shard == self.shard.id {
            self.adopt(fd, addr);
        } else {
            self.shared.inboxes[admit.shard].post(ShardMsg::Adopt(fd, addr));
        }
    }

    fn adopt(&mut self, fd: OwnedFd, addr: SocketAddr) {
        if self.stopping {
            return;
        }
        let conn = self.shard.handle_accepted(Instant::now(), addr);
        self.socks.insert(conn, Sock::new(fd));
        self.arm_recv(conn);
    }

    /// Cancels everything in flight and waits (briefly) for the kernel to
    /// let go of our buffers. Whatever it still holds after that is leaked,
    /// not freed under it.
    fn cancel_all(&mut self) {
        log::debug!(
            "shard {}: cancelling {} operations",
            self.shard.id,
            self.ops.len()
        );
        let keys: Vec<u64> = self.ops.iter().map(|(k, _)| k as u64).collect();
        for k in keys {
            self.push(opcode::AsyncCancel::new(k).build().user_data(IGNORED));
        }
        for s in self.socks.values() {
            let _ = rustix::net::shutdown(&s.fd, rustix::net::Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.ops.is_empty() && Instant::now() < deadline {
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let done: Vec<(u64, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.flags()))
                .collect();
            for (k, flags) in done {
                if k != IGNORED
                    && !(matches!(self.ops.get(k as usize), Some(Op::Accept))
                        && cqueue::more(flags))
                {
                    self.ops.try_remove(k as usize);
                }
            }
        }
        if !self.ops.is_empty() {
            log::warn!(
                "{} io_uring operations still pending at exit; leaking their buffers",
                self.ops.len()
            );
            std::mem::forget(std::mem::take(&mut self.ops));
            std::mem::forget(std::mem::take(&mut self.jobs));
        }
    }
}

fn new_socket(addr: &SocketAddr) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(*addr),
        socket2::Type::STREAM.cloexec(),
        None,
    )?;
    s.set_nodelay(true)?;
    Ok(s)
}
