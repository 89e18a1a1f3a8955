//! The dialler's exchange on a blocking socket, for the threads that talk
//! to peers outside the io_uring loops (magnet metadata connections).

use std::io::{Read, Write};

use super::{Established, Handshake, MseError, Outcome, Policy};
use crate::metainfo::InfoHash;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("socket")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection during the exchange")]
    Closed,
    #[error(transparent)]
    Mse(#[from] MseError),
}

/// Runs the MSE exchange for torrent `skey` as the dialler on `socket`
/// (the socket's read timeout bounds each wait), and returns what it
/// established: RC4 or plaintext, and any payload bytes that came with its
/// end.
pub fn initiate<S: Read + Write>(
    socket: &mut S,
    skey: InfoHash,
    policy: Policy,
) -> Result<Established, ExchangeError> {
    let mut h = Handshake::initiator(skey, policy);
    let mut buf = [0u8; 4096];
    loop {
        let out = h.take_output();
        if !out.is_empty() {
            socket.write_all(&out)?;
        }
        let n = socket.read(&mut buf)?;
        if n == 0 {
            return Err(ExchangeError::Closed);
        }
        // A dialler is never asked which torrent a hash names.
        if let Outcome::Done(established) = h.recv(&buf[..n], &|_| None)? {
            let out = h.take_output();
            if !out.is_empty() {
                socket.write_all(&out)?;
            }
            return Ok(established);
        }
    }
}
