//! Message Stream Encryption / Protocol Encryption (MSE/PE): a
//! Diffie-Hellman exchange that hides the BitTorrent handshake, then RC4 on
//! the payload (or plaintext, if both sides agree). The handshake is a
//! sans-I/O state machine ([`Handshake`]); the driver feeds it bytes and
//! sends what it asks, then runs the payload through the [`Cipher`].
//!
//! RC4 comes from the `rc4` crate, the modular exponentiation from
//! `num-bigint`; both are well-kept RustCrypto / rust-num crates.

mod blocking;
mod handshake;
#[cfg(test)]
mod tests;

use rc4::consts::U20;
use rc4::{KeyInit, Rc4, StreamCipher};

pub use blocking::{ExchangeError, initiate};
pub use handshake::{Established, Handshake, Outcome, req2};

/// `--encryption`: what we offer and what we accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// Dial in plaintext; accept plaintext and encrypted peers, choosing
    /// plaintext when an encrypted peer offers it too.
    #[default]
    PreferPlain,
    /// Dial encrypted (RC4), falling back to plaintext for a peer that
    /// fails the exchange; accept both, choosing RC4 when offered.
    Prefer,
    /// RC4 only, both ways: plaintext peers are refused.
    Require,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Transmission's names too, as its settings and RPC spell them.
        match s {
            "prefer-plain" | "tolerated" => Ok(Policy::PreferPlain),
            "prefer" | "preferred" => Ok(Policy::Prefer),
            "require" | "required" => Ok(Policy::Require),
            _ => Err(format!("{s:?}: expected prefer-plain, prefer or require")),
        }
    }
}

impl Policy {
    /// The name Transmission's RPC gives this policy.
    pub fn transmission_name(self) -> &'static str {
        match self {
            Policy::PreferPlain => "tolerated",
            Policy::Prefer => "preferred",
            Policy::Require => "required",
        }
    }
}

/// `crypto_provide` / `crypto_select` bits.
const PLAINTEXT: u32 = 0x01;
const RC4: u32 = 0x02;

/// Why an exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    #[error("no synchronisation marker within the padding limit")]
    NoSync,
    #[error("the peer asked for a torrent we do not have")]
    UnknownTorrent,
    #[error("no encryption method both sides accept (peer offered {0:#x})")]
    NoCommonMethod(u32),
    #[error("the peer selected a method we did not offer ({0:#x})")]
    BadSelect(u32),
    #[error("verification constant wrong")]
    BadVc,
    #[error("padding of {0} bytes, over the 512 allowed")]
    PadTooLong(u16),
    #[error("public key out of range")]
    BadKey,
    #[error("plaintext handshake, but encryption is required")]
    PlaintextRefused,
}

/// RC4 both ways once the exchange is done, keyed as MSE says (the first
/// 1024 bytes of each keystream discarded).
pub struct Cipher {
    send: Rc4<U20>,
    recv: Rc4<U20>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher")
    }
}

impl Cipher {
    fn new(send_key: &[u8; 20], recv_key: &[u8; 20]) -> Cipher {
        Cipher {
            send: keystream(send_key),
            recv: keystream(recv_key),
        }
    }

    /// Encrypts bytes about to be sent, in place.
    pub fn encrypt(&mut self, buf: &mut [u8]) {
        self.send.apply_keystream(buf);
    }

    /// Decrypts bytes as they arrive, in place.
    pub fn decrypt(&mut self, buf: &mut [u8]) {
        self.recv.apply_keystream(buf);
    }

    /// The sending and the receiving keystream apart, for a socket written
    /// and read by different threads.
    pub fn split(self) -> (Keystream, Keystream) {
        (Keystream(self.send), Keystream(self.recv))
    }
}

/// One direction of a [`Cipher`].
pub struct Keystream(Rc4<U20>);

impl std::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keystream")
    }
}

impl Keystream {
    /// Encrypts or decrypts (the same for RC4) in place.
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}

fn keystream(key: &[u8; 20]) -> Rc4<U20> {
    let mut rc4 = Rc4::new(key.into());
    rc4.apply_keystream(&mut [0u8; 1024]);
    rc4
}

/// The 20 bytes a plaintext BitTorrent handshake starts with: an incoming
/// connection that starts otherwise is taken for MSE.
pub const PLAINTEXT_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";
