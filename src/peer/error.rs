use crate::bitfield::BitfieldError;
use crate::wire::{BlockRef, WireError};

/// Why we dropped a peer. Protocol faults name what the peer did; the rest
/// are ordinary ends of a connection. Counted by kind in the `--json` summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    // Not sources: a peer error is logged as one line, with its detail.
    #[error("wire protocol: {0}")]
    Wire(WireError),
    #[error("handshake for another torrent")]
    WrongInfoHash,
    #[error("connected to ourselves")]
    SelfConnection,
    #[error("already connected to this peer")]
    Duplicate,
    #[error("bitfield: {0}")]
    BadBitfield(BitfieldError),
    #[error("{0} sent after other messages (it must come first)")]
    LateBitfield(&'static str),
    #[error("have for piece {0}, past the last piece")]
    HaveOutOfRange(u32),
    #[error("request {0:?} outside the torrent")]
    BadRequest(BlockRef),
    #[error("more than {0} requests queued")]
    RequestFlood(usize),
    #[error("fast-extension message without the fast extension")]
    FastNotNegotiated,
    #[error("extension message without the extension protocol")]
    ExtensionsNotNegotiated,
    #[error("reject for a block we never requested")]
    BadReject,
    #[error("{0} blocks we did not request")]
    UnrequestedBlocks(u32),
    #[error("sent data that failed the hash check {0} times")]
    HashFailures(u32),
    #[error("banned earlier in this session")]
    Banned,
    #[error("ut_metadata: {0}")]
    BadMetadataMessage(crate::metadata::MetadataMsgError),
    #[error("metadata piece {0} we did not ask for")]
    UnrequestedMetadata(u32),
    #[error("{0} requests for metadata pieces")]
    MetadataFlood(u32),
    #[error("{0} hash requests, more than the torrent's piece layers take")]
    HashRequestFlood(u32),
    #[error("{0} message, which we did not offer for this torrent")]
    UnofferedExtension(&'static str),
    #[error("ut_pex: {0}")]
    BadPex(crate::pex::PexError),
    #[error("no handshake within the time limit")]
    HandshakeTimeout,
    #[error("silent for too long")]
    Inactive,
    #[error("connection limit reached")]
    TooManyConnections,
    #[error("neither side wants anything from the other")]
    NothingToDo,
    #[error("peer closed the connection")]
    Closed,
    #[error("shutting down")]
    ShuttingDown,
    #[error("socket: {}", std::io::Error::from_raw_os_error(*.0))]
    Socket(i32),
    #[error("encryption: {0}")]
    Encryption(crate::mse::MseError),
}

impl From<WireError> for PeerError {
    fn from(e: WireError) -> Self {
        PeerError::Wire(e)
    }
}

impl From<BitfieldError> for PeerError {
    fn from(e: BitfieldError) -> Self {
        PeerError::BadBitfield(e)
    }
}

impl PeerError {
    /// A short stable name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerError::Wire(WireError::BadProtocol) => "not_plain_bittorrent",
            PeerError::Wire(_) => "wire",
            PeerError::WrongInfoHash => "wrong_info_hash",
            PeerError::SelfConnection => "self",
            PeerError::Duplicate => "duplicate",
            PeerError::BadBitfield(_) => "bad_bitfield",
            PeerError::LateBitfield(_) => "late_bitfield",
            PeerError::HaveOutOfRange(_) => "have_out_of_range",
            PeerError::BadRequest(_) => "bad_request",
            PeerError::RequestFlood(_) => "request_flood",
            PeerError::FastNotNegotiated => "fast_not_negotiated",
            PeerError::ExtensionsNotNegotiated => "extensions_not_negotiated",
            PeerError::BadReject => "bad_reject",
            PeerError::UnrequestedBlocks(_) => "unrequested_blocks",
            PeerError::HashFailures(_) => "hash_failures",
            PeerError::Banned => "banned",
            PeerError::BadMetadataMessage(_) => "bad_metadata_message",
            PeerError::UnrequestedMetadata(_) => "unrequested_metadata",
            PeerError::MetadataFlood(_) => "metadata_flood",
            PeerError::HashRequestFlood(_) => "hash_request_flood",
            PeerError::UnofferedExtension(_) => "unoffered_extension",
            PeerError::BadPex(_) => "bad_pex",
            PeerError::HandshakeTimeout => "handshake_timeout",
            PeerError::Inactive => "inactive",
            PeerError::TooManyConnections => "too_many_connections",
            PeerError::NothingToDo => "nothing_to_do",
            PeerError::Closed => "closed",
            PeerError::ShuttingDown => "shutting_down",
            PeerError::Socket(_) => "io",
            PeerError::Encryption(_) => "encryption",
        }
    }

    /// Whether disconnects of kind `kind` (as `kind()` names them) are
    /// protocol violations.
    pub fn is_violation_kind(kind: &str) -> bool {
        !matches!(
            kind,
            "not_plain_bittorrent"
                | "encryption"
                | "closed"
                | "shutting_down"
                | "io"
                | "nothing_to_do"
                | "too_many_connections"
                | "refused"
                | "duplicate"
                | "self"
                | "inactive"
                | "handshake_timeout"
                | "banned"
        )
    }

    /// Whether the peer broke the protocol (as opposed to an ordinary end).
    pub fn is_violation(&self) -> bool {
        !matches!(
            self,
            PeerError::Wire(WireError::BadProtocol)
                | PeerError::Closed
                | PeerError::ShuttingDown
                | PeerError::Socket(_)
                | PeerError::Encryption(_)
                | PeerError::NothingToDo
                | PeerError::TooManyConnections
                | PeerError::Duplicate
                | PeerError::SelfConnection
                | PeerError::Inactive
                | PeerError::HandshakeTimeout
                | PeerError::Banned
        )
    }
}
