//! Choking, timeouts, rates and pipeline sizes: what happens on the clock.

use std::time::{Duration, Instant};

use super::TorrentShard;
use crate::choker::Candidate;
use crate::peer::PeerError;
use crate::torrent::{ConnId, Event, PeerInfo};
use crate::wire::{BLOCK_SIZE, Message};

impl TorrentShard {
    /// A peer wants to download: unchoke it at once if this shard's share of
    /// the free slots allows (the next choker round may take it back),
    /// rather than make it wait for that round.
    pub(super) fn on_interested(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get(&id) else { return };
        if !c.peer.am_choking || self.allowance == 0 {
            return;
        }
        self.allowance -= 1;
        self.unchoke_peer(now, id);
    }

    fn unchoke_peer(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if !c.peer.am_choking {
            return;
        }
        c.peer.am_choking = false;
        c.peer.unchoked_at = now;
        self.send(id, Message::Unchoke);
        self.show(now, id);
        self.serve(now, id);
    }

    pub(super) fn choke_peer(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.peer.am_choking {
            return;
        }
        c.peer.am_choking = true;
        if let Some(s) = &mut self.spread {
            s.release(id);
        }
        // BEP 6: a fast peer learns which requests will not be served.
        let dropped: Vec<_> = c.peer.requests_in.drain(..).collect();
        let fast = c.peer.fast();
        if !fast {
            // It forgets its requests when choked, and the choke overtakes
            // the queued blocks: they would arrive unasked for.
            c.send.drop_blocks();
        }
        self.allowance += 1;
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
    pub(super) fn apply_choke(
        &mut self,
        now: Instant,
        unchoke: &[ConnId],
        decided: Instant,
        allowance: usize,
    ) {
        for id in self.conn_ids() {
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            if !c.peer.is_active() {
                continue;
            }
            let want = unchoke.contains(&id);
            if want && c.peer.am_choking {
                self.unchoke_peer(now, id);
            } else if !want && !c.peer.am_choking && c.peer.unchoked_at <= decided {
                self.choke_peer(id);
            }
        }
        self.allowance = allowance;
    }

    /// Time passed: retries held back by memory or a rate limit, and the
    /// per-second work (rates, timeouts, snubs, keep-alives, the choker's
    /// candidates and the counters for the coordinator).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.budget_retry.is_some_and(|t| now >= t) {
            self.budget_retry = None;
            self.refill_all(now);
        }
        if self.limit_retry.is_some_and(|t| now >= t) {
            self.limit_retry = None;
            for id in self.conn_ids() {
                self.serve(now, id);
            }
            self.refill_all(now);
        }
        if now < self.next_second {
            return;
        }
        let elapsed = now.saturating_duration_since(self.last_second);
        self.last_second = now;
        self.next_second = now + Duration::from_secs(1);
        let secs = elapsed.as_secs_f64();
        if let Some(s) = &mut self.spread {
            let busy = self.conns.values().any(|c| {
                !c.peer.am_choking && (!c.send.is_empty() || !c.peer.requests_in.is_empty())
            });
            s.set_idle(!busy);
        }
        if let Some(s) = &self.spread {
            // Pieces shown to peers we choke go to others; unchoked ones
            // get new pieces for those others took over or that timed out.
            // A choked peer not interested in us is shown pieces too, or
            // it would never be interested, unchoked and shown more.
            for id in s.viewers() {
                let Some(c) = self.conns.get(&id) else {
                    continue;
                };
                let (choked, interested) = (c.peer.am_choking, c.peer.peer_interested);
                if choked && let Some(s) = &mut self.spread {
                    s.release(id);
                }
                if !choked || !interested {
                    self.show(now, id);
                }
            }
        }
        let cfg = self.ctx.config.clone();
        let mut candidates = Vec::new();
        for id in self.conn_ids() {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
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
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            if now.duration_since(c.peer.last_send) > cfg.keepalive_interval && c.send.is_empty() {
                self.send(id, Message::KeepAlive);
            }
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            let p = &c.peer;
            let pieces = self.ctx.info.piece_count().max(1);
            candidates.push(PeerInfo {
                addr: p.addr,
                incoming: !p.outgoing,
                client: p.client().to_owned(),
                candidate: Candidate {
                    key: self.shard_conn(id).key(),
                    interested: p.peer_interested,
                    download_rate: p.down.per_second(),
                    upload_rate: p.up.per_second(),
                    snubbed: p.snubbed,
                    is_seed: p.is_seed(),
                    pieces: p.piece_count(),
                },
                am_choking: p.am_choking,
                am_interested: p.am_interested,
                peer_choking: p.peer_choking,
                progress: p.piece_count() as f32 / pieces as f32,
                listen: p.listen_addr(),
            });
        }
        if !candidates.is_empty() {
            self.events.push(Event::Peers {
                torrent: self.ctx.id,
                shard: self.shard,
                peers: candidates,
            });
        }
        self.flush_stats();
        self.refill_all(now);
    }
}
