//! The download side: which blocks to request from whom, where arriving
//! data goes, and a piece's way from its last block to disk.
//!
//! Pieces come from the coordinator in leases: a peer that needs a new piece
//! takes a leased one it has, or asks the coordinator (once at a time) for
//! pieces it has, rarest first. Within the shard, peers help each other with
//! pieces in progress block by block; no lock is taken on the way.

use std::time::Instant;

use super::{Conn, TorrentShard};
use crate::buffer::PieceBuf;
use crate::peer::{Outstanding, PeerError};
use crate::picker::PeerPieces;
use crate::torrent::download::{Download, Stage};
use crate::torrent::smart_ban::{BlockRecord, block_digests};
use crate::torrent::{Action, ConnId, Event, Offer, PeerIdent};
use crate::wire::{BLOCK_SIZE, BlockRef, Message};

/// Pieces asked for at once for one peer: one to start, one ready behind it.
const LEASE_BATCH: u32 = 2;

impl TorrentShard {
    fn wants_pieces(&self) -> bool {
        !self.shutting_down && !self.ctx.config.seed_only && !self.ctx.done(&self.have)
    }

    /// Whether the peer has a wanted piece we lack.
    fn interesting(&self, p: PeerPieces<'_>) -> bool {
        self.ctx.wants_from(&self.have, p)
    }

    /// The peer's piece set arrived: tell the picker, and see whether it has
    /// anything for us.
    pub(super) fn on_pieces(&mut self, now: Instant, id: ConnId) {
        let torrent = self.ctx.id;
        let Some(c) = self.conns.get(&id) else { return };
        let change = match c.peer.pieces() {
            PeerPieces::All => crate::torrent::Availability::Seed { joined: true },
            PeerPieces::Some(b) => crate::torrent::Availability::Pieces {
                joined: true,
                pieces: b.clone(),
            },
        };
        let is_seed = c.peer.is_seed();
        let interesting = self.interesting(c.peer.pieces());
        self.events.push(Event::Availability { torrent, change });
        if self.ctx.done(&self.have) && is_seed {
            self.close(now, id, PeerError::NothingToDo);
            return;
        }
        if interesting && self.wants_pieces() {
            self.become_interested(id);
        }
    }

    pub(super) fn on_have(&mut self, now: Instant, id: ConnId, piece: u32) {
        if let Some(holder) = self.spread.as_mut().and_then(|s| s.passed(piece, id)) {
            self.show(now, holder);
        }
        self.events.push(Event::Availability {
            torrent: self.ctx.id,
            change: crate::torrent::Availability::Have(piece),
        });
        let complete = self.ctx.done(&self.have);
        let Some(c) = self.conns.get(&id) else { return };
        if complete && c.peer.is_seed() {
            self.close(now, id, PeerError::NothingToDo);
            return;
        }
        if !c.peer.am_interested
            && !self.have.get(piece)
            && self.ctx.wants(piece)
            && self.wants_pieces()
        {
            self.become_interested(id);
        }
        self.fill(now, id);
    }

    fn become_interested(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id)
            && !c.peer.am_interested
        {
            c.peer.am_interested = true;
            self.send(id, Message::Interested);
        }
    }

    /// Tops up a peer's request pipeline.
    pub(super) fn fill(&mut self, now: Instant, id: ConnId) {
        if !self.wants_pieces() {
            return;
        }
        let Some(c) = self.conns.get(&id) else { return };
        let p = &c.peer;
        if !p.is_active() || !p.am_interested || (p.peer_choking && p.allowed_fast.is_empty()) {
            return;
        }
        let limit = if p.snubbed {
            1
        } else {
            p.pipeline.min(p.max_requests())
        } as usize;
        let mut requested = 0;
        while self
            .conns
            .get(&id)
            .is_some_and(|c| c.peer.requests_out.len() < limit)
        {
            if let Some(b) = &mut self.limits.down
                && !b.has(u64::from(BLOCK_SIZE), now)
            {
                self.limit_retry = Some(b.ready_at(u64::from(BLOCK_SIZE)));
                break;
            }
            let Some(block) = self.next_block(now, id) else {
                break;
            };
            if let Some(b) = &mut self.limits.down {
                b.take(u64::from(block.len), now);
            }
            if let Some(c) = self.conns.get_mut(&id) {
                c.peer.requests_out.push_back(Outstanding {
                    block,
                    sent_at: now,
                });
            }
            self.send(id, Message::Request(block));
            requested += 1;
        }
        // Idle and nothing to ask for: tell the peer, so it can stop caring.
        if requested == 0
            && let Some(c) = self.conns.get(&id)
            && c.peer.requests_out.is_empty()
            && c.peer.am_interested
            && !c.wants_lease
            && self.budget_retry.is_none()
            && !self.interesting(c.peer.pieces())
        {
            if let Some(c) = self.conns.get_mut(&id) {
                c.peer.am_interested = false;
            }
            self.send(id, Message::NotInterested);
        }
    }

    pub(super) fn refill_all(&mut self, now: Instant) {
        for id in self.conn_ids() {
            self.fill(now, id);
        }
    }

    /// The next block to request from peer `id`: a missing block of a piece
    /// already under way here, else a block of a new leased piece, else (in
    /// endgame) a block someone else is already fetching. With none, asks
    /// the coordinator for pieces this peer has.
    fn next_block(&mut self, now: Instant, id: ConnId) -> Option<BlockRef> {
        let c = self.conns.get(&id)?;
        let p = &c.peer;
        // A seed's upload is best spent on what only seeds have: a piece
        // that a leecher unchoking us also has goes to a seed only to keep
        // its pipeline half full (in a fleet with one seed, each block it
        // sends of a piece already spread is one of a piece not spread).
        let giver =
            |other: ConnId, o: &Conn| other != id && !o.peer.peer_choking && !o.peer.is_seed();
        // Checked once, so that a seed with no such leecher beside it (one
        // seed, one leecher) pays no scan per piece.
        let seed = p.is_seed() && self.conns.iter().any(|(&other, o)| giver(other, o));
        let elsewhere = |piece: u32| {
            seed && self
                .conns
                .iter()
                .any(|(&other, o)| giver(other, o) && o.peer.has(piece))
        };
        let mut spread_piece = None;
        let mut under_way = None;
        for piece in &self.order {
            if let Some(d) = self.downloads.get_mut(piece)
                && d.open_to(id)
                && p.offers(*piece, now)
                && p.can_request(*piece)
                && d.has_missing()
            {
                if elsewhere(*piece) {
                    spread_piece = spread_piece.or(Some(*piece));
                    continue;
                }
                under_way = Some(*piece);
                break;
            }
        }
        if let Some(piece) = under_way {
            return self.take_missing(piece, id);
        }
        let c = self.conns.get(&id)?;
        let p = &c.peer;
        // A leased piece this peer has (one it may ask for while choked).
        let usable = |x: u32| {
            p.offers(x, now)
                && (!p.peer_choking || p.allowed_fast.contains(&x))
                && !self.downloads.contains_key(&x)
        };
        let pos = self.leased.iter().position(|&x| usable(x) && !elsewhere(x));
        let running_low = p.requests_out.len() * 2 < p.pipeline.min(p.max_requests()) as usize;
        let pos = pos.or_else(|| {
            running_low
                .then(|| self.leased.iter().position(|&x| usable(x)))
                .flatten()
        });
        if let Some(pos) = pos
            && self.has_budget_for_new()
        {
            let piece = self.leased.remove(pos)?;
            return self.start_download(now, piece, id);
        }
        if running_low && let Some(piece) = spread_piece {
            return self.take_missing(piece, id);
        }
        if pos.is_some() {
            self.budget_retry = Some(now + super::BUDGET_RETRY);
            return None;
        }
        if p.peer_choking {
            return None;
        }
        if self.endgame {
            // Duplicate requests within this shard.
            let own: Vec<BlockRef> = p.requests_out.iter().map(|o| o.block).collect();
            for piece in &self.order {
                if let Some(d) = self.downloads.get_mut(piece)
                    && !d.exclusive
                    && p.offers(*piece, now)
                    && let Some(b) = d.next_duplicate(|b| own.contains(b))
                {
                    return Some(b);
                }
            }
        }
        self.ask_for_pieces(id);
        None
    }

    /// The next missing block of `piece` (under way), for peer `id`.
    fn take_missing(&mut self, piece: u32, id: ConnId) -> Option<BlockRef> {
        let d = self.downloads.get_mut(&piece)?;
        let b = d.next_missing()?;
        if d.exclusive {
            d.owner = Some(id);
        }
        Some(b)
    }

    /// Asks the coordinator for pieces peer `id` has (once at a time).
    fn ask_for_pieces(&mut self, id: ConnId) {
        let torrent = self.ctx.id;
        let shard = self.shard;
        let endgame = self.endgame;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.wants_lease {
            return;
        }
        c.wants_lease = true;
        let offer = match c.peer.pieces() {
            PeerPieces::All => Offer::All,
            PeerPieces::Some(b) => Offer::Some(b.clone()),
        };
        self.events.push(Event::WantPieces {
            torrent,
            shard,
            offer,
            count: LEASE_BATCH,
            endgame,
        });
    }

    /// Pieces from the coordinator (maybe none).
    pub(super) fn handle_lease(&mut self, now: Instant, pieces: Vec<u32>, endgame: bool) {
        self.endgame = endgame;
        let mut back = Vec::new();
        for p in pieces {
            if self.have.get(p) || self.shutting_down {
                back.push(p);
            } else if !self.leased.contains(&p) {
                self.leased.push_back(p);
            }
        }
        if !back.is_empty() {
            self.events.push(Event::ReturnPieces {
                torrent: self.ctx.id,
                pieces: back,
            });
        }
        // Every peer gets a chance at the new pieces. One that finds none it
        // has does not ask again at once (the answer would be the same): its
        // flag stays up through this round and drops after it, so it asks
        // again on its next chance (a `have`, an unchoke, the next second).
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for &id in &ids {
            if let Some(c) = self.conns.get_mut(&id) {
                c.wants_lease = true;
            }
        }
        for &id in &ids {
            self.fill(now, id);
        }
        for c in self.conns.values_mut() {
            c.wants_lease = false;
        }
        self.return_unusable_leases();
    }

    /// Gives back leased pieces no connected peer of this shard has.
    pub(super) fn return_unusable_leases(&mut self) {
        if self.leased.is_empty() {
            return;
        }
        let conns = &self.conns;
        let usable = |p: u32| conns.values().any(|c: &Conn| c.peer.has(p));
        let (keep, back): (Vec<u32>, Vec<u32>) = self.leased.drain(..).partition(|&p| usable(p));
        self.leased = keep.into();
        if !back.is_empty() {
            self.events.push(Event::ReturnPieces {
                torrent: self.ctx.id,
                pieces: back,
            });
        }
    }

    fn has_budget_for_new(&self) -> bool {
        // Probe without reserving: the reservation happens in start_download.
        self.downloads.is_empty() || self.ctx.budget.has_room(self.ctx.piece_reservation())
    }

    /// Starts assembling `piece`, asked for by peer `id`.
    fn start_download(&mut self, now: Instant, piece: u32, id: ConnId) -> Option<BlockRef> {
        let len = self.ctx.info.piece_len(piece);
        let reserve = self.ctx.piece_reservation();
        if !self.ctx.budget.reserve(reserve, self.downloads.is_empty()) {
            self.leased.push_front(piece);
            self.budget_retry = Some(now + super::BUDGET_RETRY);
            return None;
        }
        let buf = self.take_buffer(len);
        let mut d = Download::new(piece, len, buf, reserve);
        if self.suspects.contains(&piece) {
            d.exclusive = true;
            d.owner = Some(id);
        }
        let first = d.next_missing();
        self.downloads.insert(piece, d);
        self.order.push_back(piece);
        first
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_block(
        &mut self,
        now: Instant,
        id: ConnId,
        block: BlockRef,
        offset: u32,
        data: &[u8],
        requested: bool,
        completes: bool,
        sent_at: Option<Instant>,
    ) {
        let Some(from) = self.conns.get(&id).and_then(|c| {
            c.peer.handshake.map(|h| PeerIdent {
                ip: c.peer.addr.ip(),
                id: h.peer_id,
            })
        }) else {
            return;
        };
        let wanted = self
            .downloads
            .get(&block.piece)
            .is_some_and(|d| d.wants(&block));
        if !wanted {
            self.stats.wasted += data.len() as u64;
            if completes {
                self.fill(now, id);
            }
            return;
        }
        // The first payload is reported at once, not with the next
        // second's counters, so that the time to the first byte shows.
        let first = !self.first_data_reported;
        if first {
            self.first_data_reported = true;
            self.stats.downloaded += data.len() as u64;
            self.flush_stats();
        }
        let Some(d) = self.downloads.get_mut(&block.piece) else {
            return;
        };
        d.write(&block, offset, data);
        if !first {
            self.stats.downloaded += data.len() as u64;
        }
        if !completes {
            return;
        }
        if let Some(t) = sent_at {
            let micros = now.saturating_duration_since(t).as_micros().max(1) as u64;
            let _ = self
                .latency
                .get_or_insert_with(crate::torrent::latency_histogram)
                .record(micros.min(60_000_000));
        }
        if !requested {
            // It came after we gave up on it (a cancel crossed it): still good.
            log::trace!("accepted an unrequested but wanted block {block:?}");
        }
        let done = d.received(&block, from);
        if self.endgame {
            self.cancel_elsewhere(id, &block);
        }
        if done {
            self.start_hash(block.piece);
        }
        self.fill(now, id);
    }

    /// In endgame a block may be requested from two peers; once it arrives,
    /// the other request is cancelled.
    fn cancel_elsewhere(&mut self, from: ConnId, block: &BlockRef) {
        let others: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, c)| **id != from && c.peer.requests_out.iter().any(|o| o.block == *block))
            .map(|(id, _)| *id)
            .collect();
        for id in others {
            if let Some(c) = self.conns.get_mut(&id)
                && c.peer.withdraw(block)
            {
                self.send(id, Message::Cancel(*block));
            }
        }
    }

    fn start_hash(&mut self, piece: u32) {
        let Some(d) = self.downloads.get_mut(&piece) else {
            return;
        };
        let Some(buf) = d.buf.take() else { return };
        d.stage = Stage::Hashing;
        self.actions.push_back(Action::Hash {
            torrent: self.ctx.id,
            piece,
            buf,
        });
    }

    /// A piece's hash was checked.
    pub fn handle_hashed(&mut self, now: Instant, piece: u32, buf: PieceBuf, ok: bool) {
        if ok {
            if self.have.get(piece) {
                // An endgame twin finished first.
                self.finish_download(piece, Some(buf));
                return;
            }
            let exclusive = match self.downloads.get_mut(&piece) {
                Some(d) => {
                    d.stage = Stage::Writing;
                    d.exclusive
                }
                None => false,
            };
            if exclusive {
                // The copy that settles an earlier failure.
                self.events.push(Event::SuspectPassed {
                    torrent: self.ctx.id,
                    piece,
                    digests: block_digests(&buf),
                });
            }
            self.actions.push_back(Action::Write {
                torrent: self.ctx.id,
                piece,
                buf,
            });
            return;
        }
        self.stats.hash_failures += 1;
        self.stats.wasted += buf.len() as u64;
        let (contributors, record): (Vec<PeerIdent>, BlockRecord) = match self.downloads.get(&piece)
        {
            Some(d) => (
                d.contributors.clone(),
                d.senders().zip(block_digests(&buf)).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        log::warn!(
            "piece {piece} failed its hash check (data from {} peers); fetching it again",
            contributors.len()
        );
        self.finish_download(piece, Some(buf));
        self.events.push(Event::ReturnPieces {
            torrent: self.ctx.id,
            pieces: vec![piece],
        });
        self.events.push(Event::HashFailed {
            torrent: self.ctx.id,
            piece,
            contributors,
            record,
        });
        self.refill_all(now);
    }

    /// A verified piece reached the disk (or could not).
    pub fn handle_written(
        &mut self,
        now: Instant,
        piece: u32,
        buf: PieceBuf,
        result: Result<(), crate::torrent::DiskError>,
    ) {
        match result {
            Ok(()) => {
                self.stats.written += buf.len() as u64;
                self.finish_download(piece, Some(buf));
                if self.have.set(piece) {
                    self.events.push(Event::PieceDone {
                        torrent: self.ctx.id,
                        piece,
                    });
                    self.announce_have(now, piece);
                }
            }
            Err(error) => {
                self.finish_download(piece, Some(buf));
                self.events.push(Event::ReturnPieces {
                    torrent: self.ctx.id,
                    pieces: vec![piece],
                });
                self.events.push(Event::Fatal {
                    torrent: self.ctx.id,
                    piece,
                    error,
                });
            }
        }
        self.refill_all(now);
    }

    /// Drops a download and returns its buffer and memory.
    fn finish_download(&mut self, piece: u32, buf: Option<PieceBuf>) {
        if let Some(d) = self.downloads.remove(&piece) {
            self.order.retain(|p| *p != piece);
            self.ctx.budget.release(d.reserved);
            if let Some(b) = buf.or(d.buf) {
                self.return_buffer(b);
            }
            self.budget_retry = None;
        }
    }

    /// Another shard completed `piece`: drop any duplicate of it here, then
    /// tell our peers.
    pub(super) fn piece_completed(&mut self, now: Instant, piece: u32) {
        self.leased.retain(|&p| p != piece);
        if let Some(d) = self.downloads.get(&piece)
            && d.stage == Stage::Receiving
        {
            // An endgame twin of a piece another shard finished.
            for id in self.conn_ids() {
                let Some(c) = self.conns.get_mut(&id) else {
                    continue;
                };
                let cancels: Vec<BlockRef> = c
                    .peer
                    .requests_out
                    .iter()
                    .filter(|o| o.block.piece == piece)
                    .map(|o| o.block)
                    .collect();
                for b in &cancels {
                    c.peer.withdraw(b);
                }
                for b in cancels {
                    self.send(id, Message::Cancel(b));
                }
            }
            self.finish_download(piece, None);
        }
        if self.have.set(piece) {
            self.announce_have(now, piece);
        }
    }

    /// We have `piece` now: tell peers that lack it, and stop wanting what
    /// we have.
    fn announce_have(&mut self, now: Instant, piece: u32) {
        self.suspects.remove(&piece);
        let complete = self.ctx.done(&self.have);
        for id in self.conn_ids() {
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            if !c.peer.is_active() {
                continue;
            }
            if complete && c.peer.is_seed() {
                self.close(now, id, PeerError::NothingToDo);
                continue;
            }
            if !c.peer.has(piece) {
                self.send(id, Message::Have(piece));
            }
            if complete
                && let Some(c) = self.conns.get_mut(&id)
                && c.peer.am_interested
            {
                c.peer.am_interested = false;
                self.send(id, Message::NotInterested);
            }
        }
        if complete {
            self.leased.clear();
        } else {
            self.refill_all(now);
        }
    }
}
