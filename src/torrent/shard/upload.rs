//! The upload side: queueing peers' requests and answering them from
//! pieces read into the cache, without copying the data again.

use std::time::Instant;

use bytes::Bytes;

use super::TorrentShard;
use crate::buffer::PieceBuf;
use crate::torrent::cache::{Lookup, ReadKey};
use crate::torrent::{Action, ConnId, DiskError};
use crate::wire::{BlockRef, Message, encode_piece_header};

/// Read units read ahead of the one a peer waits for, within its piece
/// (pieces larger than one unit only). Measured with `perf/cold-seed`.
const READ_AHEAD_UNITS: u32 = 2;

impl TorrentShard {
    pub(super) fn on_request(&mut self, now: Instant, id: ConnId, b: BlockRef) {
        let have = self.have.get(b.piece) && self.readable(now, b.piece);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.peer.am_choking || !have {
            // BEP 6: a fast peer is told; others just lose the request.
            if c.peer.fast() {
                self.send(id, Message::Reject(b));
            }
            return;
        }
        // `--super-seed`: only what the peer was shown (it knows no more,
        // unless it lies).
        if let Some(s) = &self.spread
            && !s.allow(b.piece, id)
        {
            self.send(id, Message::Reject(b));
            return;
        }
        c.peer.requests_in.push_back(b);
        self.serve(now, id);
    }

    /// False while a failed read of `piece` is recent. (Per request: the
    /// empty map, the usual case, costs no hashing.)
    fn readable(&mut self, now: Instant, piece: u32) -> bool {
        if self.unreadable.is_empty() {
            return true;
        }
        match self.unreadable.get(&piece) {
            Some(&until) if now < until => false,
            Some(_) => {
                self.unreadable.remove(&piece);
                true
            }
            None => true,
        }
    }

    /// Answers queued requests while the peer is unchoked and its send queue
    /// has room. Stops at a request whose bytes must be read first.
    pub(super) fn serve(&mut self, now: Instant, id: ConnId) {
        let high_water = self.ctx.config.send_high_water;
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.peer.am_choking || c.send.len() >= high_water {
                return;
            }
            let Some(&req) = c.peer.requests_in.front() else {
                return;
            };
            if let Some(b) = &mut self.limits.up
                && !b.has(u64::from(req.len), now)
            {
                let at = b.ready_at(u64::from(req.len));
                self.limit_retry = Some(self.limit_retry.map_or(at, |r| r.min(at)));
                return;
            }
            // A request lies in one read unit, or straddles two.
            let (begin, end) = (req.begin, req.begin + req.len);
            let mut parts: Vec<Bytes> = Vec::with_capacity(2);
            for unit in self.cache.units(begin, end) {
                let key = ReadKey {
                    piece: req.piece,
                    unit,
                };
                match self.cache.get(key, id) {
                    Lookup::Ready(data) => {
                        let (ubegin, _) = self.cache.span(key, self.ctx.info.piece_len(req.piece));
                        let from = begin.max(ubegin) - ubegin;
                        let to = (end - ubegin).min(data.len() as u32);
                        if from >= to {
                            // A short read unit: checked against the piece
                            // length, so only a file that shrank gets here.
                            break;
                        }
                        parts.push(data.slice(from as usize..to as usize));
                    }
                    Lookup::Read => {
                        self.read_unit(key);
                        self.read_ahead(key);
                        self.mark_waiting(id);
                        return;
                    }
                    Lookup::Pending => {
                        self.mark_waiting(id);
                        return;
                    }
                }
            }
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            c.peer.requests_in.pop_front();
            c.waiting_read = false;
            if parts.iter().map(Bytes::len).sum::<usize>() != req.len as usize {
                if c.peer.fast() {
                    self.send(id, Message::Reject(req));
                }
                continue;
            }
            let was_empty = c.send.is_empty();
            c.send
                .push_block(&encode_piece_header(req.piece, req.begin, req.len), parts);
            c.peer.up.add(u64::from(req.len));
            self.stats.uploaded += u64::from(req.len);
            if let Some(s) = &mut self.spread
                && s.served(
                    now,
                    id,
                    req.piece,
                    req.len,
                    self.ctx.info.piece_len(req.piece),
                )
            {
                if s.done() {
                    log::info!("super-seeding: every piece has gone out once");
                    for v in s.viewers() {
                        self.show(now, v);
                    }
                } else {
                    self.show(now, id);
                }
            }
            if let Some(b) = &mut self.limits.up {
                let _ = b.take(u64::from(req.len), now);
            }
            if was_empty {
                self.mark_dirty(id);
            }
        }
    }

    /// Starts reading the units after `key` within its piece: a peer asks
    /// for a piece's blocks in order, so they are wanted next, and reading
    /// them now keeps the disk busy while the unit before is sent. Never
    /// past the piece's end, where the next bytes are a piece nobody may
    /// ask for.
    fn read_ahead(&mut self, key: ReadKey) {
        let piece_len = self.ctx.info.piece_len(key.piece);
        for ahead in 1..=READ_AHEAD_UNITS {
            let next = ReadKey {
                piece: key.piece,
                unit: key.unit + ahead,
            };
            if self.cache.span(next, piece_len).1 == 0 {
                return;
            }
            if self.cache.prefetch(next) {
                self.read_unit(next);
            }
        }
    }

    /// Asks the driver for read unit `key` (the cache has it as being read).
    fn read_unit(&mut self, key: ReadKey) {
        let (begin, len) = self.cache.span(key, self.ctx.info.piece_len(key.piece));
        self.actions.push_back(Action::Read {
            torrent: self.ctx.id,
            key,
            begin,
            len,
        });
    }

    fn mark_waiting(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.waiting_read = true;
        }
    }

    /// A read unit read for uploading finished.
    pub fn handle_read(
        &mut self,
        now: Instant,
        key: ReadKey,
        buf: PieceBuf,
        result: Result<(), DiskError>,
    ) {
        let data = result.map(|()| self.ctx.read_pool.share(buf));
        self.handle_unit(now, key, data);
    }

    /// A send from a mapped piece faulted: a file shrank after the piece was
    /// mapped. Every cached piece is dropped, so that each is mapped again,
    /// with its file's size checked, before it is served.
    pub fn handle_upload_fault(&mut self) {
        log::error!("a file shrank under pieces being uploaded; they will be read again");
        self.stats.read_errors += 1;
        self.cache.drop_ready();
    }

    /// A read unit to upload is ready (read or mapped), or could not be had.
    pub fn handle_unit(&mut self, now: Instant, key: ReadKey, data: Result<Bytes, DiskError>) {
        let piece = key.piece;
        let data = match data {
            Ok(data) => Some(data),
            Err(e) => {
                if self
                    .unreadable
                    .insert(piece, now + super::REJECT_BACKOFF)
                    .is_none()
                {
                    log::error!("cannot read piece {piece} to upload it: {e}");
                }
                self.stats.read_errors += 1;
                None
            }
        };
        let failed = data.is_none();
        let waiters = self.cache.filled(key, data);
        for id in waiters {
            if failed {
                // Drop the requests for the unreadable piece.
                let Some(c) = self.conns.get_mut(&id) else {
                    continue;
                };
                let fast = c.peer.fast();
                let dropped: Vec<BlockRef> = c
                    .peer
                    .requests_in
                    .iter()
                    .filter(|r| r.piece == piece)
                    .copied()
                    .collect();
                c.peer.requests_in.retain(|r| r.piece != piece);
                if fast {
                    for r in dropped {
                        self.send(id, Message::Reject(r));
                    }
                }
            }
            self.serve(now, id);
        }
    }
}
