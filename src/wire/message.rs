use super::*;

/// A block of a piece: the unit of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub piece: u32,
    pub begin: u32,
    pub len: u32,
}

/// BEP 52: which hashes of a file's Merkle tree, named by the tree's root.
/// `count` hashes of the layer `base` layers above the 16 KiB leaves, from
/// `index`, and the uncle hashes that prove them up `proof_layers` layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRequest {
    pub root: [u8; 32],
    pub base: u32,
    pub index: u32,
    pub count: u32,
    pub proof_layers: u32,
}

impl HashRequest {
    /// Bytes of the request on the wire after the message id.
    pub const LEN: usize = 32 + 16;

    fn put(&self, out: &mut impl bytes::BufMut) {
        out.put_slice(&self.root);
        for v in [self.base, self.index, self.count, self.proof_layers] {
            out.put_slice(&v.to_be_bytes());
        }
    }

    fn parse(b: &[u8]) -> Option<HashRequest> {
        let u32_at = |at: usize| Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?));
        Some(HashRequest {
            root: b.get(..32)?.try_into().ok()?,
            base: u32_at(32)?,
            index: u32_at(36)?,
            count: u32_at(40)?,
            proof_layers: u32_at(44)?,
        })
    }

    /// The number of uncle hashes a `hashes` answer carries after the
    /// `count` requested, as libtorrent counts them: the proof layers
    /// beyond the requested hashes' own subtree, whose top layer (the
    /// subtree's two halves) counts as one of them.
    pub fn uncles(&self) -> u32 {
        let own = self.count.max(1).next_power_of_two().trailing_zeros();
        (self.proof_layers + 1).saturating_sub(own)
    }
}

/// Every message except `piece`, whose payload the decoder streams (see
/// [`Event::Block`]) and the sender writes with [`encode_piece_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Raw payload; its length is checked against the piece count by the
    /// caller, which knows it.
    Bitfield(&'a [u8]),
    Request(BlockRef),
    Cancel(BlockRef),
    /// DHT port (BEP 5); we run no DHT and ignore it.
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    HashRequest(HashRequest),
    /// `hashes`: the requested hashes then the uncles, 32 bytes each,
    /// not checked here against the request's count.
    Hashes {
        req: HashRequest,
        hashes: &'a [u8],
    },
    HashReject(HashRequest),
    /// An id we do not know, skipped as BEP 3 asks.
    Unknown {
        id: u8,
    },
}

impl Message<'_> {
    /// Appends the message's wire encoding to `out`.
    pub fn encode(&self, out: &mut impl bytes::BufMut) {
        let (id, len): (Option<u8>, usize) = match self {
            Message::KeepAlive => (None, 0),
            Message::Choke => (Some(MSG_CHOKE), 1),
            Message::Unchoke => (Some(MSG_UNCHOKE), 1),
            Message::Interested => (Some(MSG_INTERESTED), 1),
            Message::NotInterested => (Some(MSG_NOT_INTERESTED), 1),
            Message::Have(_) => (Some(MSG_HAVE), 5),
            Message::Bitfield(b) => (Some(MSG_BITFIELD), 1 + b.len()),
            Message::Request(_) => (Some(MSG_REQUEST), 13),
            Message::Cancel(_) => (Some(MSG_CANCEL), 13),
            Message::Port(_) => (Some(MSG_PORT), 3),
            Message::Suggest(_) => (Some(MSG_SUGGEST), 5),
            Message::HaveAll => (Some(MSG_HAVE_ALL), 1),
            Message::HaveNone => (Some(MSG_HAVE_NONE), 1),
            Message::Reject(_) => (Some(MSG_REJECT), 13),
            Message::AllowedFast(_) => (Some(MSG_ALLOWED_FAST), 5),
            Message::Extended { payload, .. } => (Some(MSG_EXTENDED), 2 + payload.len()),
            Message::HashRequest(_) => (Some(MSG_HASH_REQUEST), 1 + HashRequest::LEN),
            Message::Hashes { hashes, .. } => {
                (Some(MSG_HASHES), 1 + HashRequest::LEN + hashes.len())
            }
            Message::HashReject(_) => (Some(MSG_HASH_REJECT), 1 + HashRequest::LEN),
            Message::Unknown { id } => (Some(*id), 1),
        };
        out.put_slice(&(len as u32).to_be_bytes());
        if let Some(id) = id {
            out.put_u8(id);
        }
        match self {
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => {
                out.put_slice(&i.to_be_bytes())
            }
            Message::Bitfield(b) => out.put_slice(b),
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => {
                out.put_slice(&b.piece.to_be_bytes());
                out.put_slice(&b.begin.to_be_bytes());
                out.put_slice(&b.len.to_be_bytes());
            }
            Message::Port(p) => out.put_slice(&p.to_be_bytes()),
            Message::Extended { id, payload } => {
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::HashRequest(r) | Message::HashReject(r) => r.put(out),
            Message::Hashes { req, hashes } => {
                req.put(out);
                out.put_slice(hashes);
            }
            _ => {}
        }
    }

    /// Parses a complete message body (id already split off).
    pub fn parse(id: u8, body: &[u8]) -> Result<Message<'_>, WireError> {
        let len = body.len() as u32 + 1;
        let bad = || WireError::BadLength { id, len };
        let u32_at =
            |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        let fixed = |want: usize| {
            if body.len() == want {
                Ok(())
            } else {
                Err(bad())
            }
        };
        let block = || BlockRef {
            piece: u32_at(0),
            begin: u32_at(4),
            len: u32_at(8),
        };
        Ok(match id {
            MSG_CHOKE => fixed(0).map(|()| Message::Choke)?,
            MSG_UNCHOKE => fixed(0).map(|()| Message::Unchoke)?,
            MSG_INTERESTED => fixed(0).map(|()| Message::Interested)?,
            MSG_NOT_INTERESTED => fixed(0).map(|()| Message::NotInterested)?,
            MSG_HAVE => fixed(4).map(|()| Message::Have(u32_at(0)))?,
            MSG_BITFIELD => Message::Bitfield(body),
            MSG_REQUEST => fixed(12).map(|()| Message::Request(block()))?,
            MSG_CANCEL => fixed(12).map(|()| Message::Cancel(block()))?,
            MSG_PORT => fixed(2).map(|()| Message::Port(u16::from_be_bytes([body[0], body[1]])))?,
            MSG_SUGGEST => fixed(4).map(|()| Message::Suggest(u32_at(0)))?,
            MSG_HAVE_ALL => fixed(0).map(|()| Message::HaveAll)?,
            MSG_HAVE_NONE => fixed(0).map(|()| Message::HaveNone)?,
            MSG_REJECT => fixed(12).map(|()| Message::Reject(block()))?,
            MSG_ALLOWED_FAST => fixed(4).map(|()| Message::AllowedFast(u32_at(0)))?,
            MSG_EXTENDED => match body.split_first() {
                Some((&id, payload)) => Message::Extended { id, payload },
                None => return Err(bad()),
            },
            MSG_HASH_REQUEST | MSG_HASH_REJECT => {
                fixed(HashRequest::LEN)?;
                let r = HashRequest::parse(body).ok_or_else(bad)?;
                if id == MSG_HASH_REQUEST {
                    Message::HashRequest(r)
                } else {
                    Message::HashReject(r)
                }
            }
            MSG_HASHES => {
                let req = HashRequest::parse(body).ok_or_else(bad)?;
                let hashes = &body[HashRequest::LEN..];
                if !hashes.len().is_multiple_of(32) {
                    return Err(bad());
                }
                Message::Hashes { req, hashes }
            }
            other => Message::Unknown { id: other },
        })
    }
}

/// Writes the 13-byte header of a piece message carrying `len` bytes; the
/// caller sends the block's bytes right after it.
pub fn encode_piece_header(index: u32, begin: u32, len: u32) -> [u8; 13] {
    let mut h = [0u8; 13];
    h[..4].copy_from_slice(&(9 + len).to_be_bytes());
    h[4] = MSG_PIECE;
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}
