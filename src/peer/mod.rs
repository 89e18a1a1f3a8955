//! One peer connection's protocol state (BEP 3, BEP 6, BEP 10), without I/O.
//!
//! [`PeerState::accept`] checks each decoded event against what the
//! connection allows at that moment (a bitfield only first, fast messages
//! only with the fast extension, rejects only for requests we made, blocks
//! only if requested) and turns it into an [`Input`] for the shard logic,
//! which decides what to do about pieces and uploads.

mod error;
mod rate;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use error::PeerError;
pub use rate::Rate;

use crate::bitfield::Bitfield;
use crate::metainfo::Info;
use crate::picker::PeerPieces;
use crate::wire::{BlockRef, Event, ExtHandshake, Handshake, Message};

/// Largest block a peer may request from us. We request 16 KiB, but some
/// clients ask for up to 128 KiB and the spec allows it.
pub const MAX_REQUEST_LEN: u32 = 128 * 1024;

/// The request queue we advertise (BEP 10 `reqq`) and accept from a peer.
pub const MAX_QUEUED_REQUESTS: usize = 2000;

/// Blocks we did not ask for, beyond which a peer is dropped. Blocks that
/// cross our cancel (or a choke) are not counted: in endgame they are the
/// norm. A stream of others is abuse.
pub const MAX_UNREQUESTED: u32 = 256;

/// Requests we withdrew that are remembered, so their blocks arriving late
/// are not held against the peer.
const MAX_WITHDRAWN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's handshake.
    Handshake,
    /// Handshake done; a bitfield, have-all or have-none may come first.
    First,
    Active,
}

/// An outstanding request we sent.
#[derive(Debug, Clone, Copy)]
pub struct Outstanding {
    pub block: BlockRef,
    pub sent_at: Instant,
}

/// What a checked event means for the shard logic.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// The peer's handshake; the caller checks the info-hash and peer id.
    Handshake(Handshake),
    /// Nothing to act on (keep-alive, unknown message).
    Nothing,
    /// The peer choked us. Without the fast extension this cancels every
    /// request we had outstanding: they are listed here and already removed.
    Choked {
        dropped: Vec<BlockRef>,
    },
    Unchoked,
    Interested,
    NotInterested,
    /// The peer now has this piece (only reported when it is new).
    Have(u32),
    /// The peer's initial piece set arrived (bitfield, have-all, have-none).
    Pieces,
    /// The peer sent a whole piece set again mid-session (aria2 does): it
    /// replaces `previous`, which the caller must un-count.
    PiecesReplaced {
        previous: Previous,
    },
    Request(BlockRef),
    /// The peer cancelled one of its requests.
    Cancel(BlockRef),
    /// The peer refused one of our requests; it is no longer outstanding.
    Rejected(BlockRef),
    /// We may request this piece while choked.
    AllowedFast(u32),
    Suggest(u32),
    /// The peer's extension handshake arrived (stored in `ext`).
    ExtHandshake,
    /// The peer's DHT node listens on this UDP port.
    DhtPort(u16),
    /// A `ut_metadata` message (BEP 9), not decoded yet.
    Metadata(&'a [u8]),
    /// A `ut_pex` message (BEP 11), not decoded yet.
    Pex(&'a [u8]),
    /// BEP 52: the peer asks for hashes of one of our files' trees.
    HashRequest(crate::wire::HashRequest),
    /// A run of block data. `requested` tells whether we asked for the
    /// block; when the run completes a requested block, `sent_at` is when we
    /// asked (for latency) and the request is no longer outstanding.
    Block {
        block: BlockRef,
        offset: u32,
        data: &'a [u8],
        requested: bool,
        completes: bool,
        sent_at: Option<Instant>,
    },
}

/// A peer's piece set before it was replaced.
#[derive(Debug, PartialEq, Eq)]
pub struct Previous {
    pub has_all: bool,
    pub bitfield: Bitfield,
}

impl Previous {
    pub fn pieces(&self) -> PeerPieces<'_> {
        if self.has_all {
            PeerPieces::All
        } else {
            PeerPieces::Some(&self.bitfield)
        }
    }
}

/// Protocol state of one connection.
#[derive(Debug)]
pub struct PeerState {
    pub addr: SocketAddr,
    pub outgoing: bool,
    phase: Phase,
    pub handshake: Option<Handshake>,
    pub ext: Option<ExtHandshake>,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    has_all: bool,
    bitfield: Bitfield,
    /// Pieces not to ask this peer for until the given time (it rejected
    /// them while unchoking us).
    avoid: Vec<(u32, Instant)>,
    /// Our requests, in the order sent.
    pub requests_out: VecDeque<Outstanding>,
    /// Requests we cancelled (or a choke dropped) whose blocks may still
    /// arrive, oldest first.
    withdrawn: VecDeque<BlockRef>,
    /// The peer's requests, in the order received.
    pub requests_in: VecDeque<BlockRef>,
    /// Pieces we may request while choked (BEP 6).
    pub allowed_fast: Vec<u32>,
    /// Whether the block arriving now was requested (decided on its first run).
    current_block_requested: bool,
    /// Whether it answers a request we withdrew.
    current_block_withdrawn: bool,
    unrequested: u32,
    pub connected_at: Instant,
    /// When we last unchoked the peer.
    pub unchoked_at: Instant,
    pub last_recv: Instant,
    pub last_send: Instant,
    /// Last time a requested block completed (snub detection).
    pub last_block: Instant,
    pub down: Rate,
    pub up: Rate,
    /// Requests we aim to keep outstanding.
    pub pipeline: u32,
    /// Owes us data and sends none: its requests went to others.
    pub snubbed: bool,
}

impl PeerState {
    /// Where the peer accepts connections: the address we dialled, or its
    /// IP with the port of its extension handshake.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        if self.outgoing {
            return Some(self.addr);
        }
        let port = self.ext.as_ref()?.p?;
        Some(SocketAddr::new(self.addr.ip(), port))
    }

    pub fn new(now: Instant, addr: SocketAddr, outgoing: bool, piece_count: u32) -> PeerState {
        PeerState {
            addr,
            outgoing,
            phase: Phase::Handshake,
            handshake: None,
            ext: None,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            has_all: false,
            bitfield: Bitfield::new(piece_count),
            avoid: Vec::new(),
            requests_out: VecDeque::new(),
            withdrawn: VecDeque::new(),
            requests_in: VecDeque::new(),
            allowed_fast: Vec::new(),
            current_block_requested: false,
            current_block_withdrawn: false,
            unrequested: 0,
            connected_at: now,
            unchoked_at: now,
            last_recv: now,
            last_send: now,
            last_block: now,
            down: Rate::default(),
            up: Rate::default(),
            pipeline: 128,
            snubbed: false,
        }
    }

    pub fn is_active(&self) -> bool {
        self.phase != Phase::Handshake
    }

    pub fn fast(&self) -> bool {
        self.handshake.is_some_and(|h| h.supports_fast())
    }

    pub fn extensions(&self) -> bool {
        self.handshake.is_some_and(|h| h.supports_extensions())
    }

    pub fn pieces(&self) -> PeerPieces<'_> {
        if self.has_all {
            PeerPieces::All
        } else {
            PeerPieces::Some(&self.bitfield)
        }
    }

    /// How many pieces the peer has.
    pub fn piece_count(&self) -> u32 {
        if self.has_all {
            self.bitfield.len()
        } else {
            self.bitfield.count_ones()
        }
    }

    pub fn has(&self, piece: u32) -> bool {
        self.has_all || self.bitfield.get(piece)
    }

    /// Whether to ask this peer for `piece` now: it has it and did not
    /// recently reject it.
    pub fn offers(&self, piece: u32, now: Instant) -> bool {
        self.has(piece)
            && !self
                .avoid
                .iter()
                .any(|&(p, until)| p == piece && now < until)
    }

    /// Stops asking for `piece` until `until` (bounded: the oldest entry
    /// goes when a peer rejects many pieces).
    pub fn avoid_piece(&mut self, piece: u32, until: Instant) {
        self.avoid.retain(|&(p, _)| p != piece);
        if self.avoid.len() >= 256 {
            self.avoid.remove(0);
        }
        self.avoid.push((piece, until));
    }

    pub fn is_seed(&self) -> bool {
        self.has_all || self.bitfield.is_full()
    }

    /// How many requests the peer accepts at once (BEP 10 `reqq`; 250 when
    /// unsaid, as libtorrent assumes).
    pub fn max_requests(&self) -> u32 {
        self.ext
            .as_ref()
            .and_then(|e| e.reqq)
            .unwrap_or(250)
            .clamp(1, MAX_QUEUED_REQUESTS as u32)
    }

    /// Client name from the extension handshake, for logs.
    pub fn client(&self) -> &str {
        self.ext
            .as_ref()
            .and_then(|e| e.v.as_deref())
            .unwrap_or("?")
    }

    /// Whether we may send a request for `piece` now.
    pub fn can_request(&self, piece: u32) -> bool {
        !self.peer_choking || self.allowed_fast.contains(&piece)
    }

    /// Checks one decoded event and updates the connection state.
    pub fn accept<'a>(
        &mut self,
        now: Instant,
        ev: Event<'a>,
        info: &Info,
    ) -> Result<Input<'a>, PeerError> {
        self.last_recv = now;
        let msg = match ev {
            Event::Handshake(h) => {
                self.handshake = Some(h);
                self.phase = Phase::First;
                return Ok(Input::Handshake(h));
            }
            Event::Block {
                piece,
                begin,
                len,
                offset,
                data,
            } => return self.block(now, BlockRef { piece, begin, len }, offset, data),
            Event::Message(m) => m,
        };
        let first = self.phase == Phase::First;
        log::trace!("{} sent {msg:?}", self.addr);
        // The piece set must come first, but some clients put their extension
        // handshake ahead of it; neither that nor a keep-alive ends the window.
        if !matches!(msg, Message::KeepAlive | Message::Extended { .. }) {
            self.phase = Phase::Active;
        }
        let n = info.piece_count();
        Ok(match msg {
            // We never ask for hashes on these connections: the layers of
            // a v2 magnet are fetched with its metadata.
            Message::KeepAlive
            | Message::Unknown { .. }
            | Message::Hashes { .. }
            | Message::HashReject(_) => Input::Nothing,
            Message::HashRequest(r) => Input::HashRequest(r),
            Message::Port(p) => Input::DhtPort(p),
            Message::Choke => {
                self.peer_choking = true;
                if self.fast() {
                    // BEP 6: requests stay outstanding until rejected or served.
                    Input::Choked {
                        dropped: Vec::new(),
                    }
                } else {
                    let dropped: Vec<BlockRef> =
                        self.requests_out.drain(..).map(|o| o.block).collect();
                    for b in &dropped {
                        self.withdrawn_push(*b);
                    }
                    Input::Choked { dropped }
                }
            }
            Message::Unchoke => {
                self.peer_choking = false;
                Input::Unchoked
            }
            Message::Interested => {
                self.peer_interested = true;
                Input::Interested
            }
            Message::NotInterested => {
                self.peer_interested = false;
                // Its queued requests are moot.
                self.requests_in.clear();
                Input::NotInterested
            }
            Message::Have(i) => {
                if i >= n {
                    return Err(PeerError::HaveOutOfRange(i));
                }
                if !self.has_all && self.bitfield.set(i) {
                    if self.bitfield.is_full() {
                        self.has_all = true;
                    }
                    Input::Have(i)
                } else {
                    Input::Nothing
                }
            }
            Message::Bitfield(b) => {
                // BEP 3 wants it first; aria2 sends it again later. Accept it
                // as a replacement, still checked for size and spare bits.
                let new = Bitfield::from_wire(b, n)?;
                let previous = Previous {
                    has_all: self.has_all,
                    bitfield: std::mem::replace(&mut self.bitfield, new),
                };
                self.has_all = self.bitfield.is_full();
                if first {
                    Input::Pieces
                } else {
                    Input::PiecesReplaced { previous }
                }
            }
            Message::HaveAll | Message::HaveNone => {
                if !self.fast() {
                    return Err(PeerError::FastNotNegotiated);
                }
                if !first {
                    return Err(PeerError::LateBitfield(if msg == Message::HaveAll {
                        "have-all"
                    } else {
                        "have-none"
                    }));
                }
                self.has_all = msg == Message::HaveAll;
                Input::Pieces
            }
            Message::Request(b) => {
                if b.len == 0 || b.len > MAX_REQUEST_LEN || !info.contains(b.piece, b.begin, b.len)
                {
                    return Err(PeerError::BadRequest(b));
                }
                if self.requests_in.len() >= MAX_QUEUED_REQUESTS {
                    return Err(PeerError::RequestFlood(MAX_QUEUED_REQUESTS));
                }
                Input::Request(b)
            }
            Message::Cancel(b) => {
                if let Some(pos) = self.requests_in.iter().position(|r| *r == b) {
                    self.requests_in.remove(pos);
                }
                Input::Cancel(b)
            }
            Message::Reject(b) => {
                if !self.fast() {
                    return Err(PeerError::FastNotNegotiated);
                }
                match self.requests_out.iter().position(|o| o.block == b) {
                    Some(pos) => {
                        self.requests_out.remove(pos);
                        Input::Rejected(b)
                    }
                    // A reject crossing our cancel is fine; anything else is not.
                    None if info.contains(b.piece, b.begin, b.len) => Input::Nothing,
                    None => return Err(PeerError::BadReject),
                }
            }
            Message::AllowedFast(p) => {
                if !self.fast() {
                    return Err(PeerError::FastNotNegotiated);
                }
                if p < n && !self.allowed_fast.contains(&p) && self.allowed_fast.len() < 64 {
                    self.allowed_fast.push(p);
                    Input::AllowedFast(p)
                } else {
                    Input::Nothing
                }
            }
            Message::Suggest(p) => {
                if !self.fast() {
                    return Err(PeerError::FastNotNegotiated);
                }
                if p < n {
                    Input::Suggest(p)
                } else {
                    Input::Nothing
                }
            }
            Message::Extended { id, payload } => {
                if !self.extensions() {
                    return Err(PeerError::ExtensionsNotNegotiated);
                }
                match id {
                    crate::wire::EXT_HANDSHAKE => {
                        self.ext = Some(ExtHandshake::decode(payload)?);
                        Input::ExtHandshake
                    }
                    crate::wire::UT_METADATA => Input::Metadata(payload),
                    crate::wire::UT_PEX => Input::Pex(payload),
                    _ => Input::Nothing,
                }
            }
        })
    }

    fn block<'a>(
        &mut self,
        now: Instant,
        block: BlockRef,
        offset: u32,
        data: &'a [u8],
    ) -> Result<Input<'a>, PeerError> {
        self.phase = Phase::Active;
        let completes = offset + data.len() as u32 == block.len;
        if offset == 0 {
            self.current_block_requested = self.requests_out.iter().any(|o| o.block == block);
            self.current_block_withdrawn = !self.current_block_requested
                && match self.withdrawn.iter().position(|b| *b == block) {
                    Some(pos) => {
                        self.withdrawn.remove(pos);
                        true
                    }
                    None => false,
                };
        }
        let mut sent_at = None;
        if completes {
            if self.current_block_requested {
                if let Some(pos) = self.requests_out.iter().position(|o| o.block == block) {
                    sent_at = self.requests_out.remove(pos).map(|o| o.sent_at);
                }
                self.last_block = now;
                self.snubbed = false;
            } else if !self.current_block_withdrawn {
                self.unrequested += 1;
                if self.unrequested > MAX_UNREQUESTED {
                    return Err(PeerError::UnrequestedBlocks(self.unrequested));
                }
            }
        }
        if self.current_block_requested {
            self.down.add(data.len() as u64);
        }
        Ok(Input::Block {
            block,
            offset,
            data,
            requested: self.current_block_requested,
            completes,
            sent_at,
        })
    }

    /// Withdraws our request for `b` (we send a cancel): it is no longer
    /// outstanding, and its block arriving anyway is no fault of the peer.
    /// Returns whether it was outstanding.
    pub fn withdraw(&mut self, b: &BlockRef) -> bool {
        let Some(pos) = self.requests_out.iter().position(|o| o.block == *b) else {
            return false;
        };
        self.requests_out.remove(pos);
        self.withdrawn_push(*b);
        true
    }

    /// Withdraws every outstanding request (a snubbing peer's).
    pub fn withdraw_all(&mut self) -> Vec<BlockRef> {
        let all: Vec<BlockRef> = self.requests_out.drain(..).map(|o| o.block).collect();
        for b in &all {
            self.withdrawn_push(*b);
        }
        all
    }

    fn withdrawn_push(&mut self, b: BlockRef) {
        if self.withdrawn.len() >= MAX_WITHDRAWN {
            self.withdrawn.pop_front();
        }
        self.withdrawn.push_back(b);
    }

    /// Whether the peer has been given a chance to send and has not: its
    /// outstanding requests should go to others.
    pub fn is_snubbed(&self, now: Instant, after: Duration) -> bool {
        !self.requests_out.is_empty() && now.duration_since(self.last_block) > after
    }
}

#[cfg(test)]
mod tests;
