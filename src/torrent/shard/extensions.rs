//! Extension messages on a torrent's connections: our BEP 10 handshake,
//! serving the metadata (BEP 9) and a v2 torrent's hashes (BEP 52), and
//! peer exchange (BEP 11).

use std::net::SocketAddr;
use std::time::Instant;

use super::TorrentShard;
use crate::hash::merkle::LayerTree;
use crate::metadata::{self, MetadataMsg};
use crate::peer::PeerError;
use crate::pex::PexMessage;
use crate::torrent::Event;
use crate::torrent::{ConnId, TorrentCtx};
use crate::wire::{ExtHandshake, HashRequest, Message, UT_METADATA, UT_PEX};

/// Hashes of layer trees a shard keeps for answering hash requests.
const MAX_TREE_HASHES: usize = 2 << 20;

/// Metadata requests one connection may make: every piece a few times over.
fn max_metadata_requests(size: usize) -> u32 {
    4 * metadata::piece_count(size as u64) + 16
}

/// Our extension handshake to `addr`. A private torrent offers neither its
/// metadata nor peer exchange; `--no-pex` leaves out peer exchange.
pub(super) fn our_ext_handshake(ctx: &TorrentCtx, addr: SocketAddr) -> ExtHandshake {
    let mut m = Vec::new();
    if ctx.metadata.is_some() {
        m.push(("ut_metadata".to_owned(), UT_METADATA));
    }
    if ctx.pex() {
        m.push(("ut_pex".to_owned(), UT_PEX));
    }
    ExtHandshake {
        m,
        v: Some(concat!("ringtorrent ", env!("CARGO_PKG_VERSION")).to_owned()),
        reqq: Some(crate::peer::MAX_QUEUED_REQUESTS as u32),
        p: Some(ctx.listen_port).filter(|&p| p != 0),
        yourip: Some(addr.ip()),
        metadata_size: ctx.metadata.as_ref().map(|m| m.len() as u64),
    }
}

impl TorrentShard {
    /// A `ut_metadata` message: we answer requests; we never ask here (the
    /// metadata phase has connections of its own), so pieces are unasked.
    pub(super) fn on_metadata(&mut self, id: ConnId, payload: &[u8]) -> Result<(), PeerError> {
        let Some(info) = self.ctx.metadata.clone() else {
            return Err(PeerError::UnofferedExtension("ut_metadata"));
        };
        let piece = match MetadataMsg::decode(payload).map_err(PeerError::BadMetadataMessage)? {
            MetadataMsg::Request(piece) => piece,
            MetadataMsg::Data { piece, .. } | MetadataMsg::Reject(piece) => {
                return Err(PeerError::UnrequestedMetadata(piece));
            }
            MetadataMsg::Unknown => return Ok(()),
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        let Some(their_id) = c.peer.ext.as_ref().and_then(|e| e.id_of("ut_metadata")) else {
            // It cannot be answered: it did not say where to.
            return Ok(());
        };
        c.ext.metadata_requests += 1;
        let asked = c.ext.metadata_requests;
        if asked > max_metadata_requests(info.len()) {
            return Err(PeerError::MetadataFlood(asked));
        }
        let start = piece as usize * metadata::PIECE;
        let reply = if start < info.len() {
            let end = (start + metadata::PIECE).min(info.len());
            MetadataMsg::Data {
                piece,
                total_size: info.len() as u64,
                data: &info[start..end],
            }
        } else {
            MetadataMsg::Reject(piece)
        };
        let payload = reply.encode();
        self.send(
            id,
            Message::Extended {
                id: their_id,
                payload: &payload,
            },
        );
        Ok(())
    }

    /// A BEP 52 hash request: the hashes of a piece layer we have, with
    /// their proof, or a reject. The file's tree is built at its first
    /// request; a connection gets a few times the requests its layers take
    /// (512 hashes each, as libtorrent asks) and no more.
    pub(super) fn on_hash_request(
        &mut self,
        id: ConnId,
        req: &HashRequest,
    ) -> Result<(), PeerError> {
        let info = &self.ctx.info;
        let Some(c) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        c.ext.hash_requests += 1;
        let asked = c.ext.hash_requests;
        let chunks: u32 = info.v2_layers.iter().map(|l| l.pieces.div_ceil(512)).sum();
        if asked > 4 * chunks + 64 {
            return Err(PeerError::HashRequestFlood(asked));
        }
        if !self.layer_trees.contains_key(&req.root) {
            let Some(tree) = info.layer_tree(&req.root) else {
                self.send(id, Message::HashReject(*req));
                return Ok(());
            };
            // Bounded: a torrent of huge files keeps the trees asked of
            // lately, at most about 64 MiB of hashes.
            let held: usize = self.layer_trees.values().map(LayerTree::hashes_held).sum();
            if held + tree.hashes_held() > MAX_TREE_HASHES {
                self.layer_trees.clear();
            }
            self.layer_trees.insert(req.root, tree);
        }
        let answer = self
            .layer_trees
            .get(&req.root)
            .and_then(|tree| info.hashes(req, tree));
        match answer {
            Some(hashes) => {
                let hashes = hashes.concat();
                self.send(
                    id,
                    Message::Hashes {
                        req: *req,
                        hashes: &hashes,
                    },
                );
            }
            None => self.send(id, Message::HashReject(*req)),
        }
        Ok(())
    }

    /// A `ut_pex` message: its added peers go to the coordinator, at most
    /// one message's worth a minute from each peer.
    pub(super) fn on_pex(
        &mut self,
        now: Instant,
        id: ConnId,
        payload: &[u8],
    ) -> Result<(), PeerError> {
        if !self.ctx.pex() {
            return Err(PeerError::UnofferedExtension("ut_pex"));
        }
        let msg = PexMessage::decode(payload).map_err(PeerError::BadPex)?;
        let Some(c) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if !c.ext.pex.accept(now) {
            self.stats.pex_ignored += 1;
            return Ok(());
        }
        let peers: Vec<SocketAddr> = msg
            .added
            .into_iter()
            .map(|(a, _)| a)
            .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
            .collect();
        if !peers.is_empty() {
            self.stats.pex_received += peers.len() as u64;
            self.events.push(Event::Exchanged {
                torrent: self.ctx.id,
                peers,
            });
        }
        Ok(())
    }

    /// The torrent's peers as the coordinator sees them: tell each peer
    /// that speaks `ut_pex` what changed since we last told it.
    pub(super) fn send_pex(&mut self, now: Instant, peers: &[(SocketAddr, u8)]) {
        if !self.ctx.pex() {
            return;
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let Some(their_id) = c.peer.ext.as_ref().and_then(|e| e.id_of("ut_pex")) else {
                continue;
            };
            let me = c.peer.listen_addr();
            if let Some(msg) = c.ext.pex.update(now, me, peers) {
                let payload = msg.encode();
                self.send(
                    id,
                    Message::Extended {
                        id: their_id,
                        payload: &payload,
                    },
                );
            }
        }
    }
}
