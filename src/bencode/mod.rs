//! Bencode (BEP 3).
//!
//! The decoder borrows from its input and records where every value sits in it,
//! so a torrent's info-hash can be taken over the exact bytes of its `info`
//! dictionary: re-encoding would silently change the hash of any torrent that
//! was not written canonically. It is strict (no leading zeros, no `-0`, no
//! duplicate keys, no trailing bytes unless asked for with [`decode_prefix`]) and bounded (nesting depth and value
//! count), because its input comes from files and peers we do not trust.
//!
//! The encoder always writes canonical bencode: dictionary keys sorted as raw
//! byte strings.

mod decode;
mod encode;
mod value;

pub use decode::{DecodeError, DecodeErrorKind, Limits, decode, decode_prefix, decode_with};
pub use encode::{Encoder, encode};
pub use value::{Dict, Kind, OwnedValue, Value};
