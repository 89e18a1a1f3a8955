//! Choking, timeouts, rates and pipeline sizes: what happens on the clock.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shard;
use crate::choker::Candidate;
use crate::peer::PeerError;
use crate::torrent::ConnId;
use crate::torrent::shared::{ShardMsg, lock};
use crate::wire::{BLOCK_SIZE, BlockRef, Message};

impl Shard {
    /// A peer wants to download: unchoke it at once if a slot is free (the
    /// next choker round may take it back), rather than make it wait.
    pub(super) fn on_interested(&mut self, now: Instant, id: ConnId) {
        let slots = self.shared.config.choker.slots + 1;
        let Some(c) = self.conn(id) else { return };
        if !c.peer.am_choking {
            return;
        }
        let taken = self
            .shared
            .unchoked
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < slots).then_some(n + 1)
            })
            .is_ok();
        if taken {
            self.unchoke_peer(now, id, false);
        }
    }

    fn unchoke_peer(&mut self, now: Instant, id: ConnId, count: bool) {
        let Some(c) = self.conn_mut(id) else { return };
        if !c.peer.am_choking {
            return;
        }
        c.peer.am_choking = false;
        c.peer.unchoked_at = now;
        if count {
            self.shared.unchoked.fetch_add(1, Ordering::AcqRel);
        }
        self.send(id, Message::Unchoke);
        self.serve(now, id);
    }

    pub(super) fn choke_peer(&mut self, id: ConnId) {
        let shared = self.shared.clone();
        let Some(c) = self.conn_mut(id) else { return };
        if c.peer.am_choking {
            return;
        }
        c.peer.am_choking = true;
        shared.unchoked.fetch_sub(1, Ordering::AcqRel);
        // BEP 6: a fast peer learns which requests will not be served.
        let dropped: Vec<BlockRef> = c.peer.requests_in.drain(..).collect();
        let fast = c.peer.fast();
        self.send(id, Message::Choke);
        if fast {
            for b in dropped {
                self.send(id, Message::Reject(b));
            }
        }
    }

    /// A choker decision for this shard's peers. A peer unchoked since the
    /// decision was made (newly interested, a free slot) was not among its
    /// candidates and keeps its slot until the next round.
    pub(super) fn apply_choke(&mut self, unchoke: Vec<ConnId>, decided: Instant) {
        let now = Instant::now();
        for id in self.conn_ids() {
            let Some(c) = self.conn(id) else { continue };
            if !c.peer.is_active() {
                continue;
            }
            let want = unchoke.contains(&id);
            if want && c.peer.am_choking {
                self.unchoke_peer(now, id, true);
            } else if !want && !c.peer.am_choking && c.peer.unchoked_at <= decided {
                self.choke_peer(id);
            }
        }
    }

    /// Called by the driver every ~100 ms; per-second work runs once a second.
    pub fn handle_tick(&mut self, now: Instant) {
        if self.budget_blocked {
            self.budget_blocked = false;
            self.refill_all(now);
        }
        let elapsed = now.saturating_duration_since(self.last_second);
        if elapsed < Duration::from_secs(1) {
            return;
        }
        self.last_second = now;
        let secs = elapsed.as_secs_f64();
        let cfg = self.shared.config.clone();
        let mut candidates = Vec::new();
        for id in self.conn_ids() {
            let Some(c) = self.conn_mut(id) else { continue };
            let p = &mut c.peer;
            p.down.tick(secs);
            p.up.tick(secs);
            if !p.is_active() {
                if now.duration_since(p.connected_at) > cfg.handshake_timeout {
                    self.close(now, id, PeerError::HandshakeTimeout);
                }
                continue;
            }
            if now.duration_since(p.last_recv) > cfg.inactivity_timeout {
                self.close(now, id, PeerError::Inactive);
                continue;
            }
            // Enough requests to cover `pipeline_time` at the peer's rate.
            let by_rate = (p.down.per_second() as f64 * cfg.pipeline_time.as_secs_f64()
                / f64::from(BLOCK_SIZE)) as u32;
            // Grow at once, shrink slowly: rates on a busy machine are noisy.
            let target = by_rate.clamp(cfg.min_pipeline, cfg.max_pipeline);
            p.pipeline = target.max(p.pipeline * 3 / 4).min(cfg.max_pipeline);
            if !p.snubbed && p.is_snubbed(now, cfg.snub_after) {
                log::info!(
                    "peer {} ({}) is snubbing us; its requests go to others",
                    p.addr,
                    p.client()
                );
                p.snubbed = true;
                let owed = p.withdraw_all();
                self.release_pieces_of(id);
                for b in &owed {
                    if let Some(d) = self.downloads.get_mut(&b.piece) {
                        d.unrequest(b);
                    }
                    self.send(id, Message::Cancel(*b));
                }
                self.refill_all(now);
            }
            let Some(c) = self.conn(id) else { continue };
            if now.duration_since(c.peer.last_send) > cfg.keepalive_interval && c.send.is_empty() {
                self.send(id, Message::KeepAlive);
            }
            let Some(c) = self.conn(id) else { continue };
            let p = &c.peer;
            candidates.push(Candidate {
                key: id.key(self.id),
                interested: p.peer_interested,
                download_rate: p.down.per_second(),
                upload_rate: p.up.per_second(),
                snubbed: p.snubbed,
                is_seed: p.is_seed(),
            });
        }
        self.choker_round(now, candidates);
        self.refill_all(now);
    }

    /// Publishes this shard's peers to the choker and, when a round is due,
    /// runs it for every shard.
    fn choker_round(&mut self, now: Instant, candidates: Vec<Candidate>) {
        let mut board = lock(&self.shared.choke);
        let shard = self.id as u64;
        board.candidates.retain(|k, _| k >> 56 != shard);
        for c in candidates {
            board.candidates.insert(c.key, c);
        }
        if now < board.next_round {
            return;
        }
        board.next_round = now + self.shared.config.rechoke_interval;
        let all: Vec<Candidate> = board.candidates.values().copied().collect();
        let seeding = self.shared.is_complete();
        let unchoke = board.choker.rechoke(&all, seeding);
        drop(board);
        let mut per_shard: Vec<Vec<ConnId>> = vec![Vec::new(); self.shared.inboxes.len()];
        for key in unchoke {
            let shard = (key >> 56) as usize;
            let id = ConnId {
                slot: key as u32,
                generation: ((key >> 32) & 0xff_ffff) as u32,
            };
            if let Some(v) = per_shard.get_mut(shard) {
                v.push(id);
            }
        }
        for (shard, keep) in per_shard.into_iter().enumerate() {
            if shard == self.id {
                self.apply_choke(keep, now);
            } else {
                self.shared.inboxes[shard].post(ShardMsg::Unchoke { keep, decided: now });
            }
        }
    }
}
