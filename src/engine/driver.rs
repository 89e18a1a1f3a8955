//! A shard's io_uring event loop. It owns the shard's sockets, listener and
//! open files, and carries out its endpoint's actions; it makes no protocol
//! decisions.
//!
//! Every buffer, iovec array, address and file the kernel may touch is
//! owned by an entry in `ops` (a slab keyed by the SQE's `user_data`) until
//! the matching completion arrives, so nothing is freed, moved or closed
//! while the kernel uses it. On shutdown the loop cancels what is in flight
//! and waits for the completions before the ring and the buffers go away.
//! The loop sleeps until the endpoint's next timer or the next completion:
//! no fixed tick.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;

use super::LoopStats;
use super::files::FileCache;
use super::hasher::Job;
use super::inbox::{Inbound, Inbox};
use super::link::{ENCRYPT_AHEAD, Link, Received};
use crate::buffer::{ALIGN, PieceBuf};
use crate::endpoint::{Endpoint, ShardCommand, ShardEvent};
use crate::metainfo::FileSpan;
use crate::mse::Policy;
use crate::peer::PeerError;
use crate::session::CoordMsg;
use crate::storage::mapping::Mapping;
use crate::storage::{FileMode, Storage};
use crate::torrent::{Action, Command, ConnId, DiskError, ReadKey, TorrentCtx, TorrentId};

/// Bytes each connection receives into per `recv`.
const RECV_BUFFER: usize = 128 * 1024;
/// Most segments handed to one `sendmsg`.
const MAX_IOVECS: usize = 64;
/// `user_data` of SQEs whose completions carry nothing we need.
const IGNORED: u64 = u64::MAX;

/// How a driver does its I/O.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Upload cached units from a mapping of the file.
    pub map_uploads: bool,
    /// Write the aligned middle of each span with `O_DIRECT` (where the
    /// file system takes it); otherwise through the page cache.
    pub direct_writes: bool,
    /// Most files this shard keeps open.
    pub max_open_files: usize,
    /// `--encryption`: MSE/PE for connections we dial and accept.
    pub encryption: Policy,
}

/// Most addresses remembered as failing MSE (dialled in plaintext next).
const MAX_PLAIN_ONLY: usize = 4096;

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
    /// Bytes of the link's own: MSE exchange messages (`payload` false) or
    /// the encrypted front of the send queue, `buf[from..]` in flight.
    SendOwned {
        conn: ConnId,
        buf: Vec<u8>,
        from: usize,
        payload: bool,
    },
    /// One file span of a piece read or write.
    Disk {
        job: usize,
        file: Arc<File>,
        index: usize,
        direct: bool,
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
    torrent: TorrentId,
    piece: u32,
    buf: JobBuf,
    /// Bytes the piece was moved up in its buffer to line up with its file
    /// for direct I/O (undone when the job ends).
    shift: usize,
    outstanding: u32,
    error: Option<DiskError>,
    started: Instant,
    /// Spans written through the page cache: (file, offset, length).
    write_behind: Vec<(Arc<File>, u64, u32)>,
}

struct Sock {
    fd: OwnedFd,
    link: Link,
    /// Where we dialled, for a connection we dialled.
    dialled: Option<SocketAddr>,
    /// Our receive buffer while no recv is in flight.
    buf: Option<Vec<u8>>,
    recv_pending: bool,
    send_pending: bool,
    connecting: bool,
    closing: bool,
}

impl Sock {
    fn new(fd: OwnedFd, link: Link) -> Sock {
        Sock {
            fd,
            link,
            dialled: None,
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

/// A torrent as the driver needs it: where its files are.
struct Carried {
    ctx: Arc<TorrentCtx>,
    storage: Arc<Storage>,
}

pub struct Driver {
    ring: IoUring,
    endpoint: Endpoint,
    shard: usize,
    torrents: HashMap<TorrentId, Carried>,
    files: FileCache,
    ops: Slab<Op>,
    jobs: Slab<DiskJob>,
    socks: HashMap<ConnId, Sock>,
    listener: Option<OwnedFd>,
    inbox: Arc<Inbox>,
    hasher: Option<Sender<Job>>,
    coordinator: Sender<CoordMsg>,
    cfg: DriverConfig,
    stats: LoopStats,
    stopping: bool,
    actions: VecDeque<Action>,
    events: Vec<ShardEvent>,
    dirty: Vec<ConnId>,
    /// Peers that failed an MSE exchange we started (`--encryption
    /// prefer`): dialled in plaintext from then on.
    plain_only: HashSet<SocketAddr>,
}

impl Driver {
    pub fn new(
        endpoint: Endpoint,
        listener: Option<OwnedFd>,
        inbox: Arc<Inbox>,
        hasher: Option<Sender<Job>>,
        coordinator: Sender<CoordMsg>,
        cfg: DriverConfig,
    ) -> std::io::Result<Driver> {
        // One thread submits, and completions run only when it asks for them.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(1024)
            .or_else(|_| IoUring::new(1024))?;
        Ok(Driver {
            ring,
            shard: endpoint.shard(),
            endpoint,
            torrents: HashMap::new(),
            files: FileCache::new(cfg.max_open_files),
            ops: Slab::with_capacity(256),
            jobs: Slab::new(),
            socks: HashMap::new(),
            listener,
            inbox,
            hasher,
            coordinator,
            cfg,
            stats: LoopStats::default(),
            stopping: false,
            actions: VecDeque::new(),
            events: Vec::new(),
            dirty: Vec::new(),
            plain_only: HashSet::new(),
        })
    }

    pub fn run(mut self) -> std::io::Result<LoopStats> {
        self.arm_eventfd();
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(256);
        let mut stop_deadline: Option<Instant> = None;
        loop {
            // Sleep until a completion or the endpoint's next timer.
            let now = Instant::now();
            let timeout = self
                .endpoint
                .poll_timeout()
                .map(|t| t.saturating_duration_since(now))
                .map(|d| d.max(Duration::from_micros(100)));
            let timeout = match (timeout, stop_deadline) {
                (_, Some(_)) => Some(Duration::from_millis(10)),
                (t, None) => t,
            };
            let r = match timeout {
                Some(d) => {
                    let ts = types::Timespec::from(d);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
                None => self.ring.submitter().submit_and_wait(1),
            };
            match r {
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
                self.complete(busy_from, key, res, flags);
            }
            let now = Instant::now();
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            self.pump(now);
            self.stats.busy += busy_from.elapsed();

            if self.stopping {
                let deadline = *stop_deadline.get_or_insert(now + Duration::from_secs(1));
                // Only the listener and the eventfd left, or out of patience.
                let live = self
                    .ops
                    .iter()
                    .filter(|(_, op)| !matches!(op, Op::Accept | Op::EventFd { .. }))
                    .count();
                if (live == 0 && self.endpoint.is_drained()) || now >= deadline {
                    log::debug!(
                        "shard {} leaving its loop with {live} operations in flight",
                        self.shard
                    );
                    break;
                }
            }
        }
        self.cancel_all();
        let _ = self.coordinator.send(CoordMsg::ShardStopped(self.shard));
        Ok(self.stats.clone())
    }

    /// Pushes an SQE for `op`, submitting first if the queue is full.
    fn submit(&mut self, op: Op, sqe: squeue::Entry) -> u64 {
        let key = self.ops.insert(op) as u64;
        self.push(sqe.user_data(key));
        key
    }

    fn push(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: every pointer and descriptor in `sqe` belongs to an
            // entry of `self.ops` (or `self.jobs`), which stays allocated,
            // unmoved and open until the SQE's completion is reaped in
            // `complete`.
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
        let sqe = opcode::Read::new(
            types::Fd(self.inbox.eventfd().as_raw_fd()),
            buf.as_mut_ptr(),
            8,
        )
        .build();
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
        let Some(sock) = self.socks.get_mut(&conn) else {
            return;
        };
        if sock.send_pending || sock.closing || sock.connecting {
            return;
        }
        if !sock.link.handshake_out.is_empty() {
            let buf = std::mem::take(&mut sock.link.handshake_out);
            return self.send_owned(conn, buf, 0, false);
        }
        if sock.link.holds_payload() {
            return;
        }
        if sock.link.cipher().is_some() {
            return self.send_encrypted(conn);
        }
        let fd = sock.fd.as_raw_fd();
        let Some(q) = self.endpoint.send_queue(conn) else {
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

    /// Sends `buf[from..]`, bytes of the link's own.
    fn send_owned(&mut self, conn: ConnId, buf: Vec<u8>, from: usize, payload: bool) {
        let Some(sock) = self.socks.get_mut(&conn) else {
            return;
        };
        sock.send_pending = true;
        let fd = sock.fd.as_raw_fd();
        let sqe = opcode::Send::new(
            types::Fd(fd),
            buf[from..].as_ptr(),
            (buf.len() - from) as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build();
        self.submit(
            Op::SendOwned {
                conn,
                buf,
                from,
                payload,
            },
            sqe,
        );
    }

    /// Sends the rest of the encrypted front of the send queue, or
    /// encrypts the next stretch of it first. The queue gives bytes up
    /// only as they are sent, so the encrypted stretch always matches its
    /// front.
    fn send_encrypted(&mut self, conn: ConnId) {
        let Some(sock) = self.socks.get_mut(&conn) else {
            return;
        };
        let link = &mut sock.link;
        if link.enc_sent >= link.enc.len() {
            let mut enc = std::mem::take(&mut link.enc);
            enc.clear();
            let Some(q) = self.endpoint.send_queue(conn) else {
                return;
            };
            for seg in q.front(MAX_IOVECS) {
                let room = ENCRYPT_AHEAD.saturating_sub(enc.len());
                if room == 0 {
                    break;
                }
                enc.extend_from_slice(&seg[..seg.len().min(room)]);
            }
            let Some(sock) = self.socks.get_mut(&conn) else {
                return;
            };
            if let Some(c) = sock.link.cipher() {
                c.encrypt(&mut enc);
            }
            sock.link.enc = enc;
            sock.link.enc_sent = 0;
        }
        let Some(sock) = self.socks.get_mut(&conn) else {
            return;
        };
        if sock.link.enc.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut sock.link.enc);
        let from = sock.link.enc_sent;
        self.send_owned(conn, buf, from, true);
    }

    /// An MSE exchange we started failed or the peer hung up during it:
    /// with `--encryption prefer`, that peer is dialled in plaintext next.
    fn mse_failed(&mut self, conn: ConnId) {
        let Some(sock) = self.socks.get(&conn) else {
            return;
        };
        if self.cfg.encryption == Policy::Prefer
            && sock.link.dialled_encrypted
            && sock.link.is_negotiating()
            && let Some(addr) = sock.dialled
            && self.plain_only.len() < MAX_PLAIN_ONLY
        {
            self.plain_only.insert(addr);
        }
    }

    /// Carries out the endpoint's actions, starts sends for new bytes and
    /// hands the events to the coordinator, until nothing is left.
    fn pump(&mut self, now: Instant) {
        loop {
            self.endpoint
                .drain(&mut self.actions, &mut self.events, &mut self.dirty);
            if self.actions.is_empty() && self.dirty.is_empty() {
                break;
            }
            while let Some(action) = self.actions.pop_front() {
                self.act(now, action);
            }
            for conn in std::mem::take(&mut self.dirty) {
                self.start_send(conn);
            }
        }
        if !self.events.is_empty() {
            let events = std::mem::take(&mut self.events);
            let _ = self.coordinator.send(CoordMsg::Shard(self.shard, events));
        }
    }

    fn act(&mut self, now: Instant, action: Action) {
        match action {
            Action::Connect { conn, addr, .. } => self.connect(now, conn, addr),
            Action::Close { conn } => self.close(conn),
            Action::Read {
                torrent,
                key,
                begin,
                len,
            } => self.read_unit(now, torrent, key, begin, len),
            Action::Write {
                torrent,
                piece,
                buf,
            } => self.disk(now, torrent, piece, 0, JobBuf::Write(buf)),
            Action::Hash {
                torrent,
                piece,
                buf,
            } => {
                let Some(ctx) = self.torrents.get(&torrent).map(|c| c.ctx.clone()) else {
                    return;
                };
                let job = Job {
                    shard: self.shard,
                    torrent,
                    ctx,
                    piece,
                    buf,
                };
                match &self.hasher {
                    Some(tx) => {
                        if let Err(e) = tx.send(job) {
                            // The pool is gone (shutting down): verify here.
                            self.verify_here(now, e.0);
                        }
                    }
                    None => self.verify_here(now, job),
                }
            }
        }
    }

    fn verify_here(&mut self, now: Instant, job: Job) {
        let ok = job.ctx.info.verify(job.piece, &job.buf, None);
        self.endpoint
            .handle_hashed(now, job.torrent, job.piece, job.buf, ok);
    }

    fn connect(&mut self, now: Instant, conn: ConnId, addr: SocketAddr) {
        let sock = match new_socket(&addr) {
            Ok(s) => s,
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                self.endpoint.handle_connect_failed(now, conn, errno);
                return;
            }
        };
        let fd = OwnedFd::from(sock);
        let raw = fd.as_raw_fd();
        let mut s = Sock::new(fd, Link::plain());
        s.connecting = true;
        s.dialled = Some(addr);
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

    fn file(&mut self, t: TorrentId, i: usize, mode: FileMode) -> Result<Arc<File>, DiskError> {
        let Some(c) = self.torrents.get(&t) else {
            return Err(DiskError::Missing);
        };
        self.files.get(t, i, mode, &c.storage).map_err(|e| {
            if c.storage.still_in_place() {
                DiskError::from_io(&e)
            } else {
                DiskError::Removed
            }
        })
    }

    /// Maps a read unit that lies within one file and is in the page cache
    /// (its pages go to the socket without a copy into a buffer); reads the
    /// others, through io_uring so that a cold unit does not stall the loop.
    fn read_unit(&mut self, now: Instant, t: TorrentId, key: ReadKey, begin: u32, len: u32) {
        if self.cfg.map_uploads
            && let Some(data) = self.map_unit(t, key.piece, begin, len)
        {
            self.stats.disk_ops += 1;
            self.endpoint.handle_unit(now, t, key, data);
            return;
        }
        let Some(pool) = self.torrents.get(&t).map(|c| c.ctx.read_pool.clone()) else {
            return;
        };
        let buf = pool.take(len as usize);
        self.disk(now, t, key.piece, begin, JobBuf::Read(key, buf));
    }

    /// The unit's bytes as a mapping, or why they cannot be had; `None`
    /// when it must be read instead (it spans files, or is not all cached).
    fn map_unit(
        &mut self,
        t: TorrentId,
        piece: u32,
        begin: u32,
        len: u32,
    ) -> Option<Result<Bytes, DiskError>> {
        let info = self.torrents.get(&t)?.ctx.info.clone();
        let mut spans = info.block_spans(piece, begin, len);
        let (Some(span), None) = (spans.next(), spans.next()) else {
            return None;
        };
        let file = self.file(t, span.file, FileMode::Read).ok()?;
        match Mapping::cached(&file, span.offset, span.len as usize) {
            Ok(None) => None,
            Ok(Some(m)) => Some(Ok(Bytes::from_owner(m))),
            Err(crate::storage::mapping::MapError::Short) => Some(Err(DiskError::Short)),
            Err(crate::storage::mapping::MapError::Io(e)) => Some(Err(DiskError::from_io(&e))),
        }
    }

    /// Reads or writes a piece (or a read unit of one), one op per file
    /// span. Direct writes go through `O_DIRECT` for the 4 KiB-aligned
    /// middle of each span (no page cache), the page cache for unaligned
    /// heads and tails.
    fn disk(&mut self, now: Instant, t: TorrentId, piece: u32, begin: u32, mut buf: JobBuf) {
        let Some(info) = self.torrents.get(&t).map(|c| c.ctx.info.clone()) else {
            return;
        };
        let direct = matches!(buf, JobBuf::Write(_))
            && self.cfg.direct_writes
            && self
                .torrents
                .get(&t)
                .is_some_and(|c| c.storage.has_direct());
        let write = matches!(buf, JobBuf::Write(_));
        let spans: Vec<FileSpan> = info.block_spans(piece, begin, buf.len() as u32).collect();
        let shift = match &mut buf {
            JobBuf::Write(b) if direct => align_for_direct(b, &spans),
            _ => 0,
        };
        let base = buf.as_mut_ptr() as usize;
        // (file, direct, file offset, buffer offset, length)
        let mut ops: Vec<(usize, bool, u64, usize, usize)> = Vec::new();
        let mut error = None;
        let mut at = shift;
        for s in &spans {
            let len = s.len as usize;
            let entry = &info.files[s.file];
            let present = self
                .torrents
                .get(&t)
                .is_some_and(|c| c.storage.is_present(s.file));
            if !present {
                if entry.attr.pad {
                    // Padding is zeros on the wire and nothing on disk.
                    if let JobBuf::Read(_, b) = &mut buf {
                        b[at..at + len].fill(0);
                    }
                } else {
                    error = Some(DiskError::Missing);
                }
                at += len;
                continue;
            }
            let congruent = (base + at) % ALIGN == (s.offset % ALIGN as u64) as usize;
            if direct && congruent {
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
                    let off = head + middle;
                    ops.push((s.file, false, s.offset + off as u64, at + off, tail));
                }
            } else {
                ops.push((s.file, false, s.offset, at, len));
            }
            at += len;
        }
        let job = self.jobs.insert(DiskJob {
            torrent: t,
            piece,
            buf,
            shift,
            outstanding: ops.len() as u32,
            error,
            started: now,
            write_behind: Vec::new(),
        });
        if ops.is_empty() {
            self.finish_job(now, job);
            return;
        }
        for (file, direct, file_offset, buf_offset, len) in ops {
            self.submit_disk(now, job, file, direct, write, file_offset, buf_offset, len);
        }
    }

    /// Starts writeback of what a buffered write left dirty, so pages are on
    /// their way to disk at once instead of piling up until the kernel's
    /// dirty limits stall the writers (and the next resume save's flush).
    fn write_behind(&mut self, spans: Vec<(Arc<File>, u64, u32)>) {
        for (file, offset, len) in spans {
            let sqe = opcode::SyncFileRange::new(types::Fd(file.as_raw_fd()), len)
                .offset(offset)
                .flags(libc::SYNC_FILE_RANGE_WRITE)
                .build();
            // Tracked like any op: the file must stay open until it completes.
            self.submit(
                Op::Disk {
                    job: usize::MAX,
                    file,
                    index: 0,
                    direct: false,
                    file_offset: offset,
                    buf_offset: 0,
                    len: 0,
                },
                sqe,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn submit_disk(
        &mut self,
        now: Instant,
        job: usize,
        index: usize,
        direct: bool,
        write: bool,
        file_offset: u64,
        buf_offset: usize,
        len: usize,
    ) {
        let Some(t) = self.jobs.get(job).map(|j| j.torrent) else {
            return;
        };
        let mode = match (write, direct) {
            (false, _) => FileMode::Read,
            (true, false) => FileMode::Write,
            (true, true) => FileMode::WriteDirect,
        };
        let file = match self.file(t, index, mode) {
            Ok(f) => f,
            Err(e) => {
                let j = &mut self.jobs[job];
                j.error.get_or_insert(e);
                j.outstanding -= 1;
                if j.outstanding == 0 {
                    self.finish_job(now, job);
                }
                return;
            }
        };
        let j = &mut self.jobs[job];
        // SAFETY: `buf_offset + len` lies within the job's buffer (the spans
        // tile the piece), which the job keeps alive until every span is done.
        let ptr = unsafe { j.buf.as_mut_ptr().add(buf_offset) };
        let fd = types::Fd(file.as_raw_fd());
        let sqe = if write {
            opcode::Write::new(fd, ptr, len as u32)
                .offset(file_offset)
                .build()
        } else {
            opcode::Read::new(fd, ptr, len as u32)
                .offset(file_offset)
                .build()
        };
        self.stats.disk_ops += 1;
        self.submit(
            Op::Disk {
                job,
                file,
                index,
                direct,
                file_offset,
                buf_offset,
                len,
            },
            sqe,
        );
    }

    fn finish_job(&mut self, now: Instant, job: usize) {
        let j = self.jobs.remove(job);
        let took = now.saturating_duration_since(j.started);
        self.stats.disk_nanos += took.as_nanos() as u64;
        self.endpoint.record_disk(j.torrent, took);
        if j.error.is_none() {
            self.write_behind(j.write_behind);
        }
        let result = match j.error {
            None => Ok(()),
            Some(e) => Err(e),
        };
        match j.buf {
            JobBuf::Write(mut buf) => {
                // The bytes are on disk; the buffer goes back to the pool.
                buf.set_len(buf.len() - j.shift);
                self.endpoint
                    .handle_written(now, j.torrent, j.piece, buf, result)
            }
            JobBuf::Read(key, buf) => self.endpoint.handle_read(now, j.torrent, key, buf, result),
        }
    }

    fn complete(&mut self, now: Instant, key: u64, res: i32, flags: u32) {
        if key == IGNORED {
            return;
        }
        let key = key as usize;
        // A multishot accept stays registered while the kernel says MORE.
        if matches!(self.ops.get(key), Some(Op::Accept)) {
            self.accepted(now, res);
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
        match op {
            Op::Accept => {}
            Op::EventFd { .. } => {
                for msg in self.inbox.drain() {
                    self.inbound(now, msg);
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
                    self.endpoint.handle_connect_failed(now, conn, -res);
                    self.finish_close_if_idle(conn);
                } else if let Some(sock) = self.socks.get_mut(&conn).filter(|s| !s.closing) {
                    let local = rustix::net::getsockname(&sock.fd)
                        .ok()
                        .and_then(|a| SocketAddr::try_from(a).ok());
                    if let Some(torrent) = self.endpoint.info_hash_of(conn) {
                        let plain = sock.dialled.is_some_and(|a| self.plain_only.contains(&a));
                        sock.link = Link::outgoing(self.cfg.encryption, torrent, plain);
                    }
                    self.endpoint.handle_connected(now, conn, local);
                    self.arm_recv(conn);
                    self.dirty.push(conn);
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
                    let mut buf = buf;
                    let endpoint = &self.endpoint;
                    let held = sock.link.holds_payload();
                    let received = sock
                        .link
                        .received(&mut buf[..res as usize], &|h| endpoint.torrent_for_req2(h));
                    // Exchange bytes to send, or payload held until now.
                    let negotiated =
                        !sock.link.handshake_out.is_empty() || held != sock.link.holds_payload();
                    if held && !sock.link.holds_payload() && sock.link.was_negotiated() {
                        match sock.link.cipher() {
                            Some(_) => self.stats.rc4_connections += 1,
                            None => self.stats.mse_plaintext_connections += 1,
                        }
                    }
                    match received {
                        Received::Payload(data) => self.endpoint.handle_recv(now, conn, data),
                        Received::Owned(data) => self.endpoint.handle_recv(now, conn, &data),
                        Received::Nothing => {}
                        Received::Failed(e) => {
                            log::debug!("{conn:?}: {e}");
                            self.mse_failed(conn);
                            self.endpoint
                                .handle_closed(now, conn, PeerError::Encryption(e));
                        }
                    }
                    if negotiated {
                        self.dirty.push(conn);
                    }
                    if let Some(s) = self.socks.get_mut(&conn) {
                        s.buf = Some(buf);
                    }
                    self.arm_recv(conn);
                } else {
                    sock.buf = Some(buf);
                    let why = match res {
                        0 => PeerError::Closed,
                        e => PeerError::Socket(-e),
                    };
                    self.mse_failed(conn);
                    self.endpoint.handle_closed(now, conn, why);
                }
                self.finish_close_if_idle(conn);
            }
            Op::Send { conn, .. } => {
                if !self.send_completed(conn) {
                    return;
                }
                if res < 0 {
                    if res == -libc::EFAULT {
                        // See `storage::mapping`: a mapped file shrank. The
                        // mapping is of one of this shard's torrents; each
                        // drops its mapped units and maps them again.
                        let ids: Vec<TorrentId> = self.torrents.keys().copied().collect();
                        for t in ids {
                            self.endpoint.handle_upload_fault(t);
                        }
                    }
                    self.endpoint
                        .handle_closed(now, conn, PeerError::Socket(-res));
                    self.finish_close_if_idle(conn);
                    return;
                }
                self.stats.send_ops += 1;
                self.stats.send_bytes += res as u64;
                self.endpoint.handle_sent(now, conn, res as usize);
                self.start_send(conn);
            }
            Op::SendOwned {
                conn,
                buf,
                from,
                payload,
            } => {
                if !self.send_completed(conn) {
                    return;
                }
                if res < 0 {
                    self.mse_failed(conn);
                    self.endpoint
                        .handle_closed(now, conn, PeerError::Socket(-res));
                    self.finish_close_if_idle(conn);
                    return;
                }
                let sent = res as usize;
                self.stats.send_ops += 1;
                self.stats.send_bytes += sent as u64;
                let Some(sock) = self.socks.get_mut(&conn) else {
                    return;
                };
                if payload {
                    sock.link.enc = buf;
                    sock.link.enc_sent = from + sent;
                    self.endpoint.handle_sent(now, conn, sent);
                } else {
                    // Exchange bytes queued meanwhile go after what is left.
                    let mut rest = buf[from + sent..].to_vec();
                    rest.append(&mut sock.link.handshake_out);
                    sock.link.handshake_out = rest;
                }
                self.start_send(conn);
            }
            Op::Disk {
                job,
                file,
                index,
                direct,
                file_offset,
                buf_offset,
                len,
            } => {
                if job == usize::MAX {
                    // Write-behind: nothing waits for it.
                    return;
                }
                let Some(j) = self.jobs.get_mut(job) else {
                    return;
                };
                let write = matches!(j.buf, JobBuf::Write(_));
                if res > 0
                    && write
                    && let Some(c) = self.torrents.get(&j.torrent)
                {
                    // Before the piece can be marked had: see `Storage::sync`.
                    c.storage.mark_written(index);
                }
                match res {
                    n if n < 0 => {
                        j.error.get_or_insert(DiskError::Os(-n));
                    }
                    0 if len > 0 => {
                        j.error.get_or_insert(DiskError::Short);
                    }
                    n if (n as usize) < len => {
                        // Short transfer: carry on from where it stopped,
                        // buffered (the rest may no longer be aligned).
                        let n = n as usize;
                        self.submit_disk(
                            now,
                            job,
                            index,
                            false,
                            write,
                            file_offset + n as u64,
                            buf_offset + n,
                            len - n,
                        );
                        return;
                    }
                    _ => {
                        if write && !direct {
                            j.write_behind.push((file, file_offset, len as u32));
                        }
                    }
                }
                let j = &mut self.jobs[job];
                j.outstanding -= 1;
                if j.outstanding == 0 {
                    self.finish_job(now, job);
                }
            }
        }
    }

    /// A send of `conn` completed: whether the connection is still open
    /// (else it is closed now, if nothing else is in flight).
    fn send_completed(&mut self, conn: ConnId) -> bool {
        let Some(sock) = self.socks.get_mut(&conn) else {
            return false;
        };
        sock.send_pending = false;
        if sock.closing {
            self.finish_close_if_idle(conn);
            return false;
        }
        true
    }

    /// A message from the coordinator or the hashing pool.
    fn inbound(&mut self, now: Instant, msg: Inbound) {
        match msg {
            Inbound::Storage(ctx, storage) => {
                self.torrents.insert(ctx.id, Carried { ctx, storage });
            }
            Inbound::Forget(t) => {
                self.torrents.remove(&t);
                self.files.forget(t);
            }
            Inbound::Listen => {
                if let Some(l) = &self.listener {
                    let fd = l.as_raw_fd();
                    self.submit(Op::Accept, opcode::AcceptMulti::new(types::Fd(fd)).build());
                }
            }
            Inbound::Command(ShardCommand::Shutdown) => {
                self.stopping = true;
                self.endpoint.handle_command(now, ShardCommand::Shutdown);
            }
            Inbound::Command(cmd) => self.endpoint.handle_command(now, cmd),
            Inbound::Hashed {
                torrent,
                piece,
                buf,
                ok,
            } => self.endpoint.handle_command(
                now,
                ShardCommand::Torrent(torrent, Command::Hashed { piece, buf, ok }),
            ),
        }
    }

    fn accepted(&mut self, now: Instant, res: i32) {
        if res < 0 {
            log::warn!("accept: {}", std::io::Error::from_raw_os_error(-res));
            return;
        }
        // SAFETY: a non-negative accept result is a new descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(res) };
        let addr = match rustix::net::getpeername(&fd) {
            // An IPv4 peer on a dual-stack listener is `::ffff:a.b.c.d`:
            // known by its IPv4 address, as when we dial it.
            Ok(Some(a)) => match SocketAddr::try_from(a) {
                Ok(a) => SocketAddr::new(a.ip().to_canonical(), a.port()),
                Err(_) => return,
            },
            _ => return,
        };
        let _ = rustix::net::sockopt::set_tcp_nodelay(&fd, true);
        set_notsent_lowat(&fd);
        if self.stopping {
            return;
        }
        // Refused connections are closed as `fd` drops.
        if let Some(conn) = self.endpoint.handle_accepted(now, addr) {
            let link = Link::incoming(self.cfg.encryption);
            self.socks.insert(conn, Sock::new(fd, link));
            self.arm_recv(conn);
        }
    }

    /// Cancels everything in flight and waits (briefly) for the kernel to
    /// let go of our buffers. Whatever it still holds after that is leaked,
    /// not freed under it.
    fn cancel_all(&mut self) {
        log::debug!(
            "shard {}: cancelling {} operations",
            self.shard,
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

/// In a multi-file torrent most files start at offsets that are not
/// block-aligned, so a piece's bytes never line up with their file and
/// would all go through the page cache. Moving the piece up by less than
/// a block inside its buffer lines up its largest span: one memmove
/// instead of a page-cache copy (and its page faults) for that span.
/// Returns the shift; the data then starts at `buf[shift..]`.
fn align_for_direct(buf: &mut PieceBuf, spans: &[FileSpan]) -> usize {
    const WORTH_IT: u64 = 16 * ALIGN as u64;
    let Some(big) = spans
        .iter()
        .filter(|s| s.len >= WORTH_IT)
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

fn new_socket(addr: &SocketAddr) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(*addr),
        socket2::Type::STREAM.cloexec(),
        None,
    )?;
    s.set_nodelay(true)?;
    set_notsent_lowat(&s);
    Ok(s)
}

/// Unsent bytes the kernel takes per connection before a send waits: the
/// rest stays in our send queue, where messages overtake blocks. On a slow
/// link a socket buffer grown to megabytes would hold a `have` or a
/// request back for seconds.
const NOTSENT_LOWAT: libc::c_int = 128 * 1024;

fn set_notsent_lowat(fd: &impl AsRawFd) {
    if let Err(e) = crate::sockopt::set_tcp_int(fd, libc::TCP_NOTSENT_LOWAT, NOTSENT_LOWAT) {
        log::debug!("TCP_NOTSENT_LOWAT: {e}");
    }
}
