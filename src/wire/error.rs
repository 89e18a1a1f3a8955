/// A peer broke the wire protocol. Each variant names what it did, so the log
/// line and the `--json` counters say exactly why a peer was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Also what an encrypted (MSE/PE) handshake looks like; we speak
    /// plaintext only.
    #[error("handshake is not plaintext BitTorrent (an encrypted MSE/PE handshake?)")]
    BadProtocol,
    #[error("message of {len} bytes (id {id:?}) is longer than the {max} allowed")]
    TooLong { id: Option<u8>, len: u32, max: u32 },
    #[error("message id {id} has length {len}, which that message cannot have")]
    BadLength { id: u8, len: u32 },
    #[error("piece message carries {len} bytes, more than a block")]
    BlockTooLong { len: u32 },
    #[error("extension handshake is malformed: {0}")]
    BadExtHandshake(&'static str),
}
