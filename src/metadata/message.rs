//! `ut_metadata` messages: a bencoded dictionary, followed by the piece's
//! bytes for `data`.

use crate::bencode::{self, Encoder};

const REQUEST: i64 = 0;
const DATA: i64 = 1;
const REJECT: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataMsg<'a> {
    Request(u32),
    Data {
        piece: u32,
        total_size: u64,
        data: &'a [u8],
    },
    Reject(u32),
    /// A message type BEP 9 does not define: ignored, as the BEP says.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetadataMsgError {
    #[error("ut_metadata message is not a bencoded dictionary")]
    NotDict,
    #[error("ut_metadata message lacks a valid `{0}`")]
    Field(&'static str),
    #[error("ut_metadata piece {0} is larger than 16 KiB")]
    Oversized(u32),
}

impl MetadataMsg<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        let mut e = Encoder::new(&mut out);
        e.begin_dict();
        match *self {
            MetadataMsg::Request(piece) => {
                e.bytes(b"msg_type").int(REQUEST);
                e.bytes(b"piece").int(piece.into());
                e.end();
            }
            MetadataMsg::Reject(piece) => {
                e.bytes(b"msg_type").int(REJECT);
                e.bytes(b"piece").int(piece.into());
                e.end();
            }
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                e.bytes(b"msg_type").int(DATA);
                e.bytes(b"piece").int(piece.into());
                e.bytes(b"total_size")
                    .int(i64::try_from(total_size).unwrap_or(i64::MAX));
                e.end();
                out.extend_from_slice(data);
            }
            MetadataMsg::Unknown => {
                e.end();
            }
        }
        out
    }

    pub fn decode(payload: &[u8]) -> Result<MetadataMsg<'_>, MetadataMsgError> {
        let (v, used) = bencode::decode_prefix(payload).map_err(|_| MetadataMsgError::NotDict)?;
        let d = v.as_dict().ok_or(MetadataMsgError::NotDict)?;
        let int = |k: &'static str| {
            d.get(k.as_bytes())
                .and_then(|v| v.as_int())
                .ok_or(MetadataMsgError::Field(k))
        };
        let piece = || {
            int("piece")
                .and_then(|p| u32::try_from(p).map_err(|_| MetadataMsgError::Field("piece")))
        };
        Ok(match int("msg_type")? {
            REQUEST => MetadataMsg::Request(piece()?),
            REJECT => MetadataMsg::Reject(piece()?),
            DATA => {
                let piece = piece()?;
                let total_size = u64::try_from(int("total_size")?)
                    .map_err(|_| MetadataMsgError::Field("total_size"))?;
                let data = &payload[used..];
                if data.len() > super::PIECE {
                    return Err(MetadataMsgError::Oversized(piece));
                }
                MetadataMsg::Data {
                    piece,
                    total_size,
                    data,
                }
            }
            _ => MetadataMsg::Unknown,
        })
    }
}
