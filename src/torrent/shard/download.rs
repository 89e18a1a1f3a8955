//! The download side: which blocks to request from whom, where arriving
//! data goes, and a piece's way from its last block to disk.

use std::time::Instant;

use super::{Action, Shard};
use crate::buffer::PieceBuf;
use crate::peer::{Outstanding, PeerError};
use crate::picker::PeerPieces;
use crate::torrent::ConnId;
use crate::torrent::download::{Download, Stage};
use crate::torrent::registry::PeerIdent;
use crate::torrent::shared::{ShardMsg, lock};
use crate::torrent::smart_ban::{BlockRecord, block_digests};
use crate::torrent::stats::Stats;
use crate::wire::{BlockRef, Message};

impl Shard {
    fn wants_pieces(&self) -> bool {
        !self.shutting_down && !self.shared.config.seed_only && !self.shared.is_complete()
    }

    /// The peer's piece set arrived: count its pieces and see whether it has
    /// anything for us.
    pub(super) fn on_pieces(&mut self, now: Instant, id: ConnId) {
        let shared = self.shared.clone();
        let Some(c) = self.conn_mut(id) else { return };
        let interesting = {
            let mut picker = lock(&shared.picker);
            picker.add_peer(c.peer.pieces());
            picker.interesting(c.peer.pieces())
        };
        if shared.is_complete() && c.peer.is_seed() {
            self.close(now, id, PeerError::NothingToDo);
            return;
        }
        if interesting && self.wants_pieces() {
            self.become_interested(id);
        }
    }

    pub(super) fn on_have(&mut self, now: Instant, id: ConnId, piece: u32) {
        lock(&self.shared.picker).peer_has(piece);
        let shared = self.shared.clone();
        let Some(c) = self.conn_mut(id) else { return };
        if shared.is_complete() && c.peer.is_seed() {
            self.close(now, id, PeerError::NothingToDo);
            return;
        }
        if !c.peer.am_interested && !shared.have.get(piece) && self.wants_pieces() {
            self.become_interested(id);
        }
        self.fill(now, id);
    }

    fn become_interested(&mut self, id: ConnId) {
        if let Some(c) = self.conn_mut(id)
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
        let Some(c) = self.conn(id) else { return };
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
            .conn(id)
            .is_some_and(|c| c.peer.requests_out.len() < limit)
        {
            let Some(block) = self.next_block(now, id) else {
                break;
            };
            if let Some(c) = self.conn_mut(id) {
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
            && let Some(c) = self.conn(id)
            && c.peer.requests_out.is_empty()
            && c.peer.am_interested
            && !self.budget_blocked
            && !lock(&self.shared.picker).interesting(c.peer.pieces())
        {
            if let Some(c) = self.conn_mut(id) {
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
    /// already under way here, else a new piece from the picker, else (in
    /// endgame) a block someone else is already fetching.
    fn next_block(&mut self, now: Instant, id: ConnId) -> Option<BlockRef> {
        // Borrow the slot table, not all of `self`: downloads change below.
        let p = &super::slot_conn(&self.slots, id)?.peer;
        for piece in &self.order {
            if let Some(d) = self.downloads.get_mut(piece)
                && d.open_to(id)
                && p.offers(*piece, now)
                && p.can_request(*piece)
                && let Some(b) = d.next_missing()
            {
                if d.exclusive {
                    d.owner = Some(id);
                }
                return Some(b);
            }
        }
        let (picked, endgame) = {
            let mut picker = lock(&self.shared.picker);
            let endgame = picker.in_endgame();
            let picked = if p.peer_choking {
                p.allowed_fast
                    .iter()
                    .copied()
                    .find(|&f| picker.pick_specific(f))
            } else if endgame {
                None
            } else {
                self.has_budget_for_new()
                    .then(|| picker.pick_where(|x| p.offers(x, now)))
                    .flatten()
            };
            (picked, endgame)
        };
        if let Some(piece) = picked {
            return self.start_download(piece, id);
        }
        if p.peer_choking || !endgame {
            return None;
        }
        // Endgame: duplicate requests, first within this shard...
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
        // ...then a piece another shard is fetching.
        let pieces: PeerPieces<'_> = p.pieces();
        let dup = {
            let downloads = &self.downloads;
            self.has_budget_for_new()
                .then(|| {
                    lock(&self.shared.picker).pick_endgame(pieces, |x| downloads.contains_key(&x))
                })
                .flatten()
        };
        dup.and_then(|piece| self.start_download(piece, id))
    }

    fn has_budget_for_new(&self) -> bool {
        let len = u64::from(self.info.piece_length);
        // Probe without reserving: the reservation happens in start_download.
        self.downloads.is_empty()
            || self
                .shared
                .buffers_used
                .load(std::sync::atomic::Ordering::Relaxed)
                + len
                <= self.shared.buffer_budget
    }

    /// Starts assembling `piece`, asked for by peer `id`.
    fn start_download(&mut self, piece: u32, id: ConnId) -> Option<BlockRef> {
        let len = self.info.piece_len(piece);
        let reserve = u64::from(self.info.piece_length);
        if !self
            .shared
            .reserve_buffer(reserve, self.downloads.is_empty())
        {
            lock(&self.shared.picker).abort(piece);
            self.budget_blocked = true;
            return None;
        }
        let buf = self.shared.take_buffer();
        let mut d = Download::new(piece, len, buf, reserve);
        if lock(&self.shared.smart_ban).is_suspect(piece) {
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
        let Some(from) = self.conn(id).and_then(|c| {
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
            Stats::add(&self.shared.stats.wasted, data.len() as u64);
            if completes {
                self.fill(now, id);
            }
            return;
        }
        let d = self.downloads.get_mut(&block.piece).expect("checked above");
        d.write(&block, offset, data);
        Stats::add(&self.shared.stats.downloaded, data.len() as u64);
        if !completes {
            return;
        }
        if let Some(t) = sent_at {
            let micros = now.saturating_duration_since(t).as_micros().max(1) as u64;
            let _ = self.latency.record(micros.min(60_000_000));
        }
        if !requested {
            // It came after we gave up on it (a cancel crossed it): still good.
            log::trace!("accepted an unrequested but wanted block {block:?}");
        }
        if d.received(&block, from) {
            self.cancel_elsewhere(id, &block);
            self.start_hash(block.piece);
        } else {
            self.cancel_elsewhere(id, &block);
        }
        self.fill(now, id);
    }

    /// In endgame a block may be requested from two peers; once it arrives,
    /// the other request is cancelled.
    fn cancel_elsewhere(&mut self, from: ConnId, block: &BlockRef) {
        if !lock(&self.shared.picker).in_endgame() {
            return;
        }
        for id in self.conn_ids() {
            if id == from {
                continue;
            }
            let Some(c) = self.conn_mut(id) else { continue };
            if c.peer.withdraw(block) {
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
        self.actions.push_back(Action::Hash { piece, buf });
    }

    /// A piece's hash was checked.
    pub fn handle_hashed(&mut self, now: Instant, piece: u32, buf: PieceBuf, ok: bool) {
        if ok {
            if self.shared.have.get(piece) {
                // An endgame twin finished first.
                self.finish_download(now, piece, Some(buf));
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
                let liars = lock(&self.shared.smart_ban).verified(piece, &block_digests(&buf));
                for peer in liars {
                    log::warn!(
                        "piece {piece}: {} sent blocks that differ from the good copy",
                        peer.ip
                    );
                    self.ban(now, peer);
                }
            }
            self.actions.push_back(Action::Write { piece, buf });
            return;
        }
        Stats::add(&self.shared.stats.hash_failures, 1);
        Stats::add(&self.shared.stats.wasted, buf.len() as u64);
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
        self.finish_download(now, piece, Some(buf));
        lock(&self.shared.picker).abort(piece);
        match contributors.as_slice() {
            [] => {}
            // One sender: it alone is to blame.
            [peer] => self.strike(now, *peer),
            // Several: fetch it again from one peer and compare blocks.
            _ => lock(&self.shared.smart_ban).record(piece, record),
        }
        self.refill_all(now);
    }

    /// A hash-failure strike against `peer`; too many ban it.
    fn strike(&mut self, now: Instant, peer: PeerIdent) {
        let max = self.shared.config.max_hash_failures;
        if lock(&self.shared.registry).strike(peer, max) {
            log::warn!("banning {}: sent data failing {max} hash checks", peer.ip);
            self.banned(now, peer);
        }
    }

    /// Bans `peer` at once (proven to have sent bad blocks).
    fn ban(&mut self, now: Instant, peer: PeerIdent) {
        if lock(&self.shared.registry).ban(peer) {
            self.banned(now, peer);
        }
    }

    /// Drops a newly banned peer's connections on every shard.
    fn banned(&mut self, now: Instant, peer: PeerIdent) {
        Stats::add(&self.shared.stats.peers_banned, 1);
        for (shard, inbox) in self.shared.inboxes.iter().enumerate() {
            if shard != self.id {
                inbox.post(ShardMsg::Ban(peer));
            }
        }
        self.handle_msg(now, ShardMsg::Ban(peer));
    }

    /// A verified piece reached the disk (or could not).
    pub fn handle_written(
        &mut self,
        now: Instant,
        piece: u32,
        buf: PieceBuf,
        result: Result<(), String>,
    ) {
        match result {
            Ok(()) => {
                Stats::add(&self.shared.stats.written, buf.len() as u64);
                self.finish_download(now, piece, Some(buf));
                if self.shared.piece_done(piece) {
                    self.shared.broadcast(|| ShardMsg::Have(piece));
                }
            }
            Err(e) => {
                self.finish_download(now, piece, Some(buf));
                lock(&self.shared.picker).abort(piece);
                self.shared.fail(format!("cannot write piece {piece}: {e}"));
            }
        }
        self.refill_all(now);
    }

    /// Drops a download and returns its buffer and memory.
    fn finish_download(&mut self, _now: Instant, piece: u32, buf: Option<PieceBuf>) {
        if let Some(d) = self.downloads.remove(&piece) {
            self.order.retain(|p| *p != piece);
            self.shared.release_buffer(d.reserved);
            if let Some(b) = buf.or(d.buf) {
                self.shared.return_buffer(b);
            }
            self.budget_blocked = false;
        }
    }

    /// Some shard completed `piece`: tell peers that lack it, drop any
    /// duplicate of it here, and stop wanting what we now have.
    pub(super) fn piece_completed(&mut self, now: Instant, piece: u32) {
        if let Some(d) = self.downloads.get(&piece)
            && d.stage == Stage::Receiving
        {
            // An endgame twin of a piece another download finished.
            for id in self.conn_ids() {
                let Some(c) = self.conn_mut(id) else { continue };
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
            self.finish_download(now, piece, None);
        }
        let complete = self.shared.is_complete();
        for id in self.conn_ids() {
            let Some(c) = self.conn(id) else { continue };
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
                && let Some(c) = self.conn_mut(id)
                && c.peer.am_interested
            {
                c.peer.am_interested = false;
                self.send(id, Message::NotInterested);
            }
        }
        if !complete {
            self.refill_all(now);
        }
    }
}
