use super::*;

/// A block of a piece: the unit of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub piece: u32,
    pub begin: u32,
    pub len: u32,
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
            _ => {}
        }
    }

    /// Parses a complete message body (id already split off).
    pub(super) fn parse(id: u8, body: &[u8]) -> Result<Message<'_>, WireError> {
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
