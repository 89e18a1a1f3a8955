//! What lies between a socket and the wire protocol: nothing (plaintext),
//! or MSE/PE (`crate::mse`): the exchange first, then RC4 on every byte.
//! The driver asks the link what to send before the payload and runs
//! received bytes through it; the endpoint never sees ciphertext.

use crate::metainfo::InfoHash;
use crate::mse::{Cipher, Handshake, MseError, Outcome, PLAINTEXT_PREFIX, Policy};

/// Most payload bytes encrypted ahead of the socket, per connection.
pub(super) const ENCRYPT_AHEAD: usize = 256 * 1024;

pub(super) struct Link {
    state: State,
    policy: Policy,
    /// Exchange bytes to send before any payload.
    pub handshake_out: Vec<u8>,
    /// The send queue's front, encrypted: `enc[enc_sent..]` is still to
    /// be sent (the queue gives those bytes up only once they are).
    pub enc: Vec<u8>,
    pub enc_sent: usize,
    /// We dialled with MSE (a failure then suggests plaintext next time).
    pub dialled_encrypted: bool,
    /// An MSE exchange took place (whatever it chose).
    negotiated: bool,
}

enum State {
    Plain,
    /// Incoming: plaintext or MSE, to be told by the first 20 bytes.
    Sniffing(Vec<u8>),
    Negotiating(Box<Handshake>),
    Encrypted(Box<Cipher>),
}

/// What received bytes amount to.
pub(super) enum Received<'a> {
    /// Payload, decrypted in place.
    Payload(&'a [u8]),
    /// Payload the exchange gave back (or the sniffed start of a
    /// plaintext connection).
    Owned(Vec<u8>),
    Nothing,
    Failed(MseError),
}

impl Link {
    pub fn plain() -> Link {
        Link::with(State::Plain, Policy::PreferPlain)
    }

    /// An accepted connection: everything but `prefer-plain` dialling and
    /// plaintext under `require` is told apart by its first bytes.
    pub fn incoming(policy: Policy) -> Link {
        Link::with(State::Sniffing(Vec::new()), policy)
    }

    /// A connection we dialled for `torrent`, encrypted unless `plain`.
    pub fn outgoing(policy: Policy, torrent: InfoHash, plain: bool) -> Link {
        if plain || policy == Policy::PreferPlain {
            return Link::plain();
        }
        let mut hs = Box::new(Handshake::initiator(torrent, policy));
        let mut link = Link::with(State::Plain, policy);
        link.handshake_out = hs.take_output();
        link.state = State::Negotiating(hs);
        link.dialled_encrypted = true;
        link
    }

    fn with(state: State, policy: Policy) -> Link {
        Link {
            state,
            policy,
            handshake_out: Vec::new(),
            enc: Vec::new(),
            enc_sent: 0,
            dialled_encrypted: false,
            negotiated: false,
        }
    }

    /// Whether payload must wait (the exchange is not over).
    pub fn holds_payload(&self) -> bool {
        matches!(self.state, State::Sniffing(_) | State::Negotiating(_))
    }

    pub fn was_negotiated(&self) -> bool {
        self.negotiated
    }

    pub fn is_negotiating(&self) -> bool {
        matches!(self.state, State::Negotiating(_))
    }

    pub fn cipher(&mut self) -> Option<&mut Cipher> {
        match &mut self.state {
            State::Encrypted(c) => Some(c),
            _ => None,
        }
    }

    /// Runs received bytes through the link. `torrent_of` maps
    /// HASH('req2', info-hash) to the torrent, for MSE answers.
    pub fn received<'a>(
        &mut self,
        data: &'a mut [u8],
        torrent_of: &dyn Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Received<'a> {
        match &mut self.state {
            State::Plain => Received::Payload(data),
            State::Encrypted(c) => {
                c.decrypt(data);
                Received::Payload(data)
            }
            State::Sniffing(seen) => {
                seen.extend_from_slice(data);
                let n = seen.len().min(PLAINTEXT_PREFIX.len());
                let plaintext = seen[..n] == PLAINTEXT_PREFIX[..n];
                if plaintext && n < PLAINTEXT_PREFIX.len() {
                    return Received::Nothing;
                }
                let seen = std::mem::take(seen);
                if plaintext {
                    if self.policy == Policy::Require {
                        return Received::Failed(MseError::PlaintextRefused);
                    }
                    self.state = State::Plain;
                    return Received::Owned(seen);
                }
                let mut hs = Box::new(Handshake::responder(self.policy));
                let r = hs.recv(&seen, torrent_of);
                self.state = State::Negotiating(hs);
                self.settle(r)
            }
            State::Negotiating(hs) => {
                let r = hs.recv(data, torrent_of);
                self.settle(r)
            }
        }
    }

    fn settle(&mut self, r: Result<Outcome, MseError>) -> Received<'static> {
        let State::Negotiating(hs) = &mut self.state else {
            return Received::Nothing;
        };
        self.handshake_out.extend(hs.take_output());
        match r {
            Err(e) => Received::Failed(e),
            Ok(Outcome::Pending) => Received::Nothing,
            Ok(Outcome::Done(est)) => {
                self.negotiated = true;
                self.state = match est.cipher {
                    Some(c) => State::Encrypted(c),
                    None => State::Plain,
                };
                if est.payload.is_empty() {
                    Received::Nothing
                } else {
                    Received::Owned(est.payload)
                }
            }
        }
    }
}
