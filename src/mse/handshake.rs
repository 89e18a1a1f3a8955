//! The MSE exchange, both roles, without I/O. A (the dialler) and B:
//!
//! 1. A→B: Ya, PadA
//! 2. B→A: Yb, PadB
//! 3. A→B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!    ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4. B→A: ENCRYPT(VC, crypto_select, len(PadD), PadD), then the payload
//!
//! HASH is SHA-1, S the shared secret, SKEY the info-hash, VC eight zero
//! bytes. Pads are at most 512 bytes, so each side finds its marker within
//! a bounded window or gives up. We send no initial payload (IA): the
//! BitTorrent handshake follows the exchange.

use num_bigint::BigUint;

use super::{Cipher, MseError, PLAINTEXT, Policy, RC4};
use crate::metainfo::InfoHash;

/// Diffie-Hellman public keys and the secret are this many bytes.
const KEY_LEN: usize = 96;
/// The 768-bit safe prime of the specification; the generator is 2.
const PRIME: &[u8; KEY_LEN] = &[
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];
const MAX_PAD: usize = 512;
/// We pad our own messages with fewer bytes than the limit: enough to vary
/// the lengths on the wire.
const OUR_PAD: usize = 64;
const VC: [u8; 8] = [0; 8];

/// HASH('req2', SKEY): how a responder recognises which torrent a dialler
/// wants (after taking HASH('req3', S) off it).
pub fn req2(info_hash: &InfoHash) -> [u8; 20] {
    crate::hash::sha1_parts([&b"req2"[..], &info_hash.0])
}

/// The exchange finished.
#[derive(Debug)]
pub struct Established {
    /// RC4 both ways, or `None` when plaintext was chosen.
    pub cipher: Option<Box<Cipher>>,
    /// The torrent the exchange named (its SKEY).
    pub info_hash: InfoHash,
    /// Payload bytes that came with the end of the exchange, decrypted:
    /// the peer's BitTorrent handshake, or the start of it.
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub enum Outcome {
    /// More bytes are needed (and [`Handshake::take_output`] may have some
    /// to send).
    Pending,
    Done(Established),
}

enum State {
    // The dialler.
    AwaitYb,
    AwaitVc {
        cipher: Cipher,
        marker: [u8; 8],
    },
    AwaitSelect {
        cipher: Cipher,
    },
    AwaitPadD {
        cipher: Cipher,
        select: u32,
        len: usize,
    },
    // The answerer.
    AwaitYa,
    AwaitReq1 {
        secret: Box<[u8; KEY_LEN]>,
        marker: [u8; 20],
    },
    AwaitSkey {
        secret: Box<[u8; KEY_LEN]>,
    },
    AwaitProvide {
        cipher: Cipher,
        skey: InfoHash,
    },
    AwaitPadC {
        ans: Answer,
        len: usize,
    },
    AwaitIaLen {
        ans: Answer,
    },
    AwaitIa {
        ans: Answer,
        len: usize,
    },
    Failed,
}

/// What the answerer knows once it has read the dialler's offer.
struct Answer {
    cipher: Cipher,
    skey: InfoHash,
    select: u32,
}

/// One side of an exchange.
pub struct Handshake {
    policy: Policy,
    private: BigUint,
    /// The dialler's SKEY; the answerer learns it in step 3.
    skey: Option<InfoHash>,
    state: State,
    /// Received bytes not consumed yet.
    input: Vec<u8>,
    output: Vec<u8>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mse::Handshake")
    }
}

impl Handshake {
    /// The dialler's side, for the torrent `skey`; its first message is
    /// ready in [`Handshake::take_output`].
    pub fn initiator(skey: InfoHash, policy: Policy) -> Handshake {
        let mut h = Handshake::new(policy, Some(skey), State::AwaitYb);
        h.send_public_key();
        h
    }

    /// The answering side of an incoming connection.
    pub fn responder(policy: Policy) -> Handshake {
        Handshake::new(policy, None, State::AwaitYa)
    }

    fn new(policy: Policy, skey: Option<InfoHash>, state: State) -> Handshake {
        let mut secret = [0u8; 20];
        // Without the OS's randomness the exchange would be predictable;
        // fall back to a weaker source rather than refuse to connect.
        if getrandom::fill(&mut secret).is_err() {
            secret.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        Handshake {
            policy,
            private: BigUint::from_bytes_be(&secret),
            skey,
            state,
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Bytes to send to the peer now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Feeds received bytes. `torrent_of` maps HASH('req2', SKEY) to the
    /// torrent it names (answerer only).
    pub fn recv(
        &mut self,
        data: &[u8],
        torrent_of: &dyn Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<Outcome, MseError> {
        self.input.extend_from_slice(data);
        loop {
            let state = std::mem::replace(&mut self.state, State::Failed);
            match self.step(state, torrent_of)? {
                Step::Next(s) => self.state = s,
                Step::Wait(s) => {
                    self.state = s;
                    return Ok(Outcome::Pending);
                }
                Step::Done(e) => return Ok(Outcome::Done(e)),
            }
        }
    }

    fn step(
        &mut self,
        state: State,
        torrent_of: &dyn Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<Step, MseError> {
        Ok(match state {
            State::AwaitYb => {
                let Some(secret) = self.take_secret() else {
                    return Ok(Step::Wait(State::AwaitYb));
                };
                let secret = secret?;
                let skey = self.skey.ok_or(MseError::UnknownTorrent)?;
                let mut cipher = keys(&secret, &skey, true);
                // The answerer's first encrypted bytes are VC: find them.
                let mut marker = VC;
                keys(&secret, &skey, true).decrypt(&mut marker);
                self.output
                    .extend_from_slice(&crate::hash::sha1_parts([&b"req1"[..], &secret[..]]));
                let req3 = crate::hash::sha1_parts([&b"req3"[..], &secret[..]]);
                let req2 = req2(&skey);
                self.output
                    .extend(req2.iter().zip(&req3).map(|(a, b)| a ^ b));
                let provide = match self.policy {
                    Policy::Require | Policy::Prefer => RC4,
                    Policy::PreferPlain => RC4 | PLAINTEXT,
                };
                let mut plain = Vec::with_capacity(16);
                plain.extend_from_slice(&VC);
                plain.extend_from_slice(&provide.to_be_bytes());
                plain.extend_from_slice(&0u16.to_be_bytes()); // len(PadC)
                plain.extend_from_slice(&0u16.to_be_bytes()); // len(IA)
                cipher.encrypt(&mut plain);
                self.output.extend_from_slice(&plain);
                Step::Next(State::AwaitVc { cipher, marker })
            }
            State::AwaitVc { mut cipher, marker } => {
                match self.input.windows(8).position(|w| w == marker) {
                    Some(at) => {
                        self.input.drain(..at + 8);
                        cipher.decrypt(&mut VC.clone());
                        Step::Next(State::AwaitSelect { cipher })
                    }
                    None if self.input.len() >= MAX_PAD + 8 => return Err(MseError::NoSync),
                    None => Step::Wait(State::AwaitVc { cipher, marker }),
                }
            }
            State::AwaitSelect { mut cipher } => {
                let Some(mut b) = self.take::<6>() else {
                    return Ok(Step::Wait(State::AwaitSelect { cipher }));
                };
                cipher.decrypt(&mut b);
                let select = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let offered = match self.policy {
                    Policy::Require | Policy::Prefer => RC4,
                    Policy::PreferPlain => RC4 | PLAINTEXT,
                };
                if select.count_ones() != 1 || select & offered == 0 {
                    return Err(MseError::BadSelect(select));
                }
                let len = pad_len(b[4], b[5])?;
                Step::Next(State::AwaitPadD {
                    cipher,
                    select,
                    len,
                })
            }
            State::AwaitPadD {
                mut cipher,
                select,
                len,
            } => {
                let Some(mut pad) = self.take_vec(len) else {
                    return Ok(Step::Wait(State::AwaitPadD {
                        cipher,
                        select,
                        len,
                    }));
                };
                cipher.decrypt(&mut pad);
                let skey = self.skey.ok_or(MseError::UnknownTorrent)?;
                Step::Done(self.finish(cipher, select, skey, Vec::new()))
            }

            State::AwaitYa => {
                let Some(secret) = self.take_secret() else {
                    return Ok(Step::Wait(State::AwaitYa));
                };
                let secret = Box::new(secret?);
                self.send_public_key();
                let marker = crate::hash::sha1_parts([&b"req1"[..], &secret[..]]);
                Step::Next(State::AwaitReq1 { secret, marker })
            }
            State::AwaitReq1 { secret, marker } => {
                match self.input.windows(20).position(|w| w == marker) {
                    Some(at) => {
                        self.input.drain(..at + 20);
                        Step::Next(State::AwaitSkey { secret })
                    }
                    None if self.input.len() >= MAX_PAD + 20 => return Err(MseError::NoSync),
                    None => Step::Wait(State::AwaitReq1 { secret, marker }),
                }
            }
            State::AwaitSkey { secret } => {
                let Some(x) = self.take::<20>() else {
                    return Ok(Step::Wait(State::AwaitSkey { secret }));
                };
                let req3 = crate::hash::sha1_parts([&b"req3"[..], &secret[..]]);
                let mut req2 = [0u8; 20];
                for (o, (a, b)) in req2.iter_mut().zip(x.iter().zip(&req3)) {
                    *o = a ^ b;
                }
                let skey = torrent_of(&req2).ok_or(MseError::UnknownTorrent)?;
                let cipher = keys(&secret, &skey, false);
                Step::Next(State::AwaitProvide { cipher, skey })
            }
            State::AwaitProvide { mut cipher, skey } => {
                let Some(mut b) = self.take::<14>() else {
                    return Ok(Step::Wait(State::AwaitProvide { cipher, skey }));
                };
                cipher.decrypt(&mut b);
                if b[..8] != VC {
                    return Err(MseError::BadVc);
                }
                let provide = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
                let select = choose(self.policy, provide)?;
                let len = pad_len(b[12], b[13])?;
                let ans = Answer {
                    cipher,
                    skey,
                    select,
                };
                Step::Next(State::AwaitPadC { ans, len })
            }
            State::AwaitPadC { mut ans, len } => {
                let Some(mut pad) = self.take_vec(len) else {
                    return Ok(Step::Wait(State::AwaitPadC { ans, len }));
                };
                ans.cipher.decrypt(&mut pad);
                Step::Next(State::AwaitIaLen { ans })
            }
            State::AwaitIaLen { mut ans } => {
                let Some(mut b) = self.take::<2>() else {
                    return Ok(Step::Wait(State::AwaitIaLen { ans }));
                };
                ans.cipher.decrypt(&mut b);
                let len = usize::from(u16::from_be_bytes(b));
                Step::Next(State::AwaitIa { ans, len })
            }
            State::AwaitIa { mut ans, len } => {
                // The initial payload is always encrypted.
                let Some(mut ia) = self.take_vec(len) else {
                    return Ok(Step::Wait(State::AwaitIa { ans, len }));
                };
                ans.cipher.decrypt(&mut ia);
                let mut reply = Vec::with_capacity(14);
                reply.extend_from_slice(&VC);
                reply.extend_from_slice(&ans.select.to_be_bytes());
                reply.extend_from_slice(&0u16.to_be_bytes()); // len(PadD)
                ans.cipher.encrypt(&mut reply);
                self.output.extend_from_slice(&reply);
                Step::Done(self.finish(ans.cipher, ans.select, ans.skey, ia))
            }
            State::Failed => return Err(MseError::NoSync),
        })
    }

    /// The end of the exchange: what follows is RC4 or plaintext.
    fn finish(
        &mut self,
        mut cipher: Cipher,
        select: u32,
        skey: InfoHash,
        mut payload: Vec<u8>,
    ) -> Established {
        let mut rest = std::mem::take(&mut self.input);
        let cipher = if select == RC4 {
            cipher.decrypt(&mut rest);
            Some(Box::new(cipher))
        } else {
            None
        };
        payload.extend_from_slice(&rest);
        Established {
            cipher,
            info_hash: skey,
            payload,
        }
    }

    /// Our public key and a random pad.
    fn send_public_key(&mut self) {
        let key = BigUint::from(2u32).modpow(&self.private, &BigUint::from_bytes_be(PRIME));
        self.output.extend_from_slice(&to_key_bytes(&key));
        let pad = fastrand::usize(..=OUR_PAD);
        self.output.extend((0..pad).map(|_| fastrand::u8(..)));
    }

    /// The shared secret, once the peer's public key is in.
    fn take_secret(&mut self) -> Option<Result<[u8; KEY_LEN], MseError>> {
        let theirs = self.take::<KEY_LEN>()?;
        let p = BigUint::from_bytes_be(PRIME);
        let y = BigUint::from_bytes_be(&theirs);
        // 0, 1 and p-1 (and anything past p) would give a known secret.
        if y <= BigUint::from(1u32) || y >= &p - 1u32 {
            return Some(Err(MseError::BadKey));
        }
        Some(Ok(to_key_bytes(&y.modpow(&self.private, &p))))
    }

    fn take_vec(&mut self, len: usize) -> Option<Vec<u8>> {
        (self.input.len() >= len).then(|| self.input.drain(..len).collect())
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.input.len() < N {
            return None;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.input[..N]);
        self.input.drain(..N);
        Some(out)
    }
}

enum Step {
    /// Go on with the bytes at hand.
    Next(State),
    /// Wait for more bytes.
    Wait(State),
    Done(Established),
}

/// The answerer's choice among the methods offered.
fn choose(policy: Policy, provide: u32) -> Result<u32, MseError> {
    let rc4 = provide & RC4 != 0;
    let plain = provide & PLAINTEXT != 0;
    match policy {
        Policy::Require if rc4 => Ok(RC4),
        Policy::Prefer if rc4 => Ok(RC4),
        Policy::Prefer if plain => Ok(PLAINTEXT),
        Policy::PreferPlain if plain => Ok(PLAINTEXT),
        Policy::PreferPlain if rc4 => Ok(RC4),
        _ => Err(MseError::NoCommonMethod(provide)),
    }
}

fn pad_len(hi: u8, lo: u8) -> Result<usize, MseError> {
    let len = u16::from_be_bytes([hi, lo]);
    if usize::from(len) > MAX_PAD {
        return Err(MseError::PadTooLong(len));
    }
    Ok(usize::from(len))
}

/// A key as 96 big-endian bytes, zeros in front.
fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

/// The RC4 keys: A sends with HASH('keyA', S, SKEY), B with 'keyB'.
fn keys(secret: &[u8; KEY_LEN], skey: &InfoHash, initiator: bool) -> Cipher {
    let a = crate::hash::sha1_parts([&b"keyA"[..], &secret[..], &skey.0]);
    let b = crate::hash::sha1_parts([&b"keyB"[..], &secret[..], &skey.0]);
    if initiator {
        Cipher::new(&a, &b)
    } else {
        Cipher::new(&b, &a)
    }
}
