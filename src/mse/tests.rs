use super::*;
use crate::metainfo::InfoHash;

const TORRENT: InfoHash = InfoHash([7; 20]);

fn lookup(h: &[u8; 20]) -> Option<InfoHash> {
    (*h == req2(&TORRENT)).then_some(TORRENT)
}

/// Runs both sides over an in-memory pipe, `chunk` bytes at a time, the
/// dialler's payload `hello` following the exchange; returns both ends.
fn exchange(
    a_policy: Policy,
    b_policy: Policy,
    chunk: usize,
) -> Result<(Established, Established), MseError> {
    let mut a = Handshake::initiator(TORRENT, a_policy);
    let mut b = Handshake::responder(b_policy);
    let (mut to_b, mut to_a) = (a.take_output(), Vec::new());
    let (mut a_done, mut b_done) = (None, None);
    for _ in 0..10_000 {
        if b_done.is_none() && !to_b.is_empty() {
            let n = chunk.min(to_b.len());
            let part: Vec<u8> = to_b.drain(..n).collect();
            if let Outcome::Done(e) = b.recv(&part, &lookup)? {
                b_done = Some(e);
            }
            to_a.extend(b.take_output());
        }
        if a_done.is_none() && !to_a.is_empty() {
            let n = chunk.min(to_a.len());
            let part: Vec<u8> = to_a.drain(..n).collect();
            if let Outcome::Done(e) = a.recv(&part, &lookup)? {
                a_done = Some(e);
            }
            to_b.extend(a.take_output());
        }
        if let (Some(_), Some(_)) = (&a_done, &b_done) {
            break;
        }
    }
    Ok((
        a_done.expect("dialler done"),
        b_done.expect("answerer done"),
    ))
}

#[test]
fn both_sides_agree_on_rc4_and_the_streams_line_up() {
    for chunk in [1, 7, 100, 4096] {
        let (mut a, mut b) = exchange(Policy::Prefer, Policy::PreferPlain, chunk).unwrap();
        assert_eq!(b.info_hash, TORRENT);
        let (ac, bc) = (a.cipher.as_mut().unwrap(), b.cipher.as_mut().unwrap());
        let mut msg = b"\x13BitTorrent protocol and more".to_vec();
        ac.encrypt(&mut msg);
        assert_ne!(&msg[..20], PLAINTEXT_PREFIX);
        bc.decrypt(&mut msg);
        assert_eq!(&msg, b"\x13BitTorrent protocol and more");
        let mut back = b"reply".to_vec();
        bc.encrypt(&mut back);
        ac.decrypt(&mut back);
        assert_eq!(back, b"reply");
    }
}

#[test]
fn plaintext_is_chosen_when_both_prefer_it() {
    let (a, b) = exchange(Policy::PreferPlain, Policy::PreferPlain, 50).unwrap();
    assert!(a.cipher.is_none() && b.cipher.is_none());
    // RC4 when the answerer prefers it and the dialler offers both.
    let (a, b) = exchange(Policy::PreferPlain, Policy::Prefer, 50).unwrap();
    assert!(a.cipher.is_some() && b.cipher.is_some());
}

#[test]
fn an_unknown_torrent_is_refused() {
    let mut a = Handshake::initiator(InfoHash([9; 20]), Policy::Require);
    let mut b = Handshake::responder(Policy::Require);
    let ya = a.take_output();
    assert!(matches!(b.recv(&ya, &lookup), Ok(Outcome::Pending)));
    let yb = b.take_output();
    assert!(matches!(a.recv(&yb, &lookup), Ok(Outcome::Pending)));
    let step3 = a.take_output();
    assert_eq!(
        b.recv(&step3, &lookup).unwrap_err(),
        MseError::UnknownTorrent
    );
}

#[test]
fn garbage_without_the_marker_fails_within_the_pad_limit() {
    let mut b = Handshake::responder(Policy::Prefer);
    let mut junk = vec![0x55u8; 96];
    assert!(matches!(b.recv(&junk, &lookup), Ok(Outcome::Pending)));
    junk = vec![0xAA; 600];
    assert_eq!(b.recv(&junk, &lookup).unwrap_err(), MseError::NoSync);
    // A public key of 1 would make the secret known.
    let mut b = Handshake::responder(Policy::Prefer);
    let mut one = vec![0u8; 96];
    one[95] = 1;
    assert_eq!(b.recv(&one, &lookup).unwrap_err(), MseError::BadKey);
}

#[test]
fn policies_parse() {
    assert_eq!("require".parse::<Policy>(), Ok(Policy::Require));
    assert_eq!("prefer".parse::<Policy>(), Ok(Policy::Prefer));
    assert_eq!("prefer-plain".parse::<Policy>(), Ok(Policy::PreferPlain));
    assert!("always".parse::<Policy>().is_err());
}

#[test]
fn a_blocking_dialler_meets_an_answerer_over_a_socket() {
    use std::io::{Read, Write};
    let (mut ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let answerer = std::thread::spawn(move || {
        let mut b = Handshake::responder(Policy::Require);
        let mut buf = [0u8; 1024];
        let established = loop {
            let n = theirs.read(&mut buf).unwrap();
            let outcome = b.recv(&buf[..n], &lookup).unwrap();
            theirs.write_all(&b.take_output()).unwrap();
            if let Outcome::Done(e) = outcome {
                break e;
            }
        };
        let mut cipher = established.cipher.expect("RC4 under require");
        let mut ping = [0u8; 4];
        theirs.read_exact(&mut ping).unwrap();
        cipher.decrypt(&mut ping);
        assert_eq!(&ping, b"ping");
        let mut pong = *b"pong";
        cipher.encrypt(&mut pong);
        theirs.write_all(&pong).unwrap();
    });
    let established = initiate(&mut ours, TORRENT, Policy::Require).unwrap();
    let (mut send, mut recv) = established.cipher.expect("RC4").split();
    let mut ping = *b"ping";
    send.apply(&mut ping);
    ours.write_all(&ping).unwrap();
    let mut pong = [0u8; 4];
    ours.read_exact(&mut pong).unwrap();
    recv.apply(&mut pong);
    assert_eq!(&pong, b"pong");
    answerer.join().unwrap();
}

#[test]
fn a_blocking_dialler_reports_a_peer_that_hangs_up() {
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(theirs);
    assert!(matches!(
        initiate(&mut ours, TORRENT, Policy::Prefer),
        Err(ExchangeError::Io(_) | ExchangeError::Closed)
    ));
}
