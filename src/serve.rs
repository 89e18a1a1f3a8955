//! What the HTTP servers (the daemon's RPC, the tracker) share.

use std::net::SocketAddr;
use std::time::Duration;

/// The next connection of `listener`, or `None` once `stopped` changes. An
/// accept error (out of descriptors, say) waits 100 ms instead of spinning.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    stopped: &mut tokio::sync::watch::Receiver<bool>,
    what: &str,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = stopped.changed() => return None,
            r = listener.accept() => match r {
                Ok(x) => return Some(x),
                Err(e) => {
                    log::warn!("{what}: cannot accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
