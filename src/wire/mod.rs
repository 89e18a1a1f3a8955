//! The peer wire protocol: BEP 3 messages, the fast extension (BEP 6), the
//! extension protocol handshake (BEP 10) and BEP 52's hash messages.
//!
//! The decoder is incremental: it takes bytes in whatever chunks the socket
//! delivers and hands out a piece message's payload as runs of bytes as they
//! arrive, so a block can be copied straight to its place in the piece buffer
//! without being assembled first.

mod decoder;
mod error;
mod extension;
mod handshake;
mod message;

pub use decoder::{Decoder, Event, Limits};
pub use error::WireError;
pub use extension::{ExtHandshake, UT_METADATA, UT_PEX};
pub use handshake::{HANDSHAKE_LEN, Handshake, PeerId};
pub use message::{BlockRef, HashRequest, Message, encode_piece_header};

/// The block size every client requests (BEP 3 leaves it to the client; all
/// major clients use 16 KiB, and many refuse larger requests).
pub const BLOCK_SIZE: u32 = 16 * 1024;

pub const MSG_CHOKE: u8 = 0;
pub const MSG_UNCHOKE: u8 = 1;
pub const MSG_INTERESTED: u8 = 2;
pub const MSG_NOT_INTERESTED: u8 = 3;
pub const MSG_HAVE: u8 = 4;
pub const MSG_BITFIELD: u8 = 5;
pub const MSG_REQUEST: u8 = 6;
pub const MSG_PIECE: u8 = 7;
pub const MSG_CANCEL: u8 = 8;
pub const MSG_PORT: u8 = 9;
/// BEP 6
pub const MSG_SUGGEST: u8 = 0x0d;
pub const MSG_HAVE_ALL: u8 = 0x0e;
pub const MSG_HAVE_NONE: u8 = 0x0f;
pub const MSG_REJECT: u8 = 0x10;
pub const MSG_ALLOWED_FAST: u8 = 0x11;
/// BEP 10
pub const MSG_EXTENDED: u8 = 20;
/// BEP 52
pub const MSG_HASH_REQUEST: u8 = 21;
pub const MSG_HASHES: u8 = 22;
pub const MSG_HASH_REJECT: u8 = 23;
/// BEP 10: extended message id 0 is the extension handshake.
pub const EXT_HANDSHAKE: u8 = 0;
