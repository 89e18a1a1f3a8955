use std::time::{Duration, Instant};

use super::exchange::REQUEST_TIMEOUT;
use super::*;
use crate::metainfo::InfoHash;

#[test]
fn messages_round_trip() {
    for m in [
        MetadataMsg::Request(3),
        MetadataMsg::Reject(7),
        MetadataMsg::Data {
            piece: 1,
            total_size: 40_000,
            data: b"abc",
        },
    ] {
        assert_eq!(MetadataMsg::decode(&m.encode()), Ok(m));
    }
    let data = b"d8:msg_typei1e5:piecei0e10:total_sizei5eehello";
    assert_eq!(
        MetadataMsg::decode(data),
        Ok(MetadataMsg::Data {
            piece: 0,
            total_size: 5,
            data: b"hello"
        })
    );
    assert_eq!(
        MetadataMsg::decode(b"d8:msg_typei9ee"),
        Ok(MetadataMsg::Unknown)
    );
    assert_eq!(
        MetadataMsg::decode(b"d8:msg_typei0ee"),
        Err(MetadataMsgError::Field("piece"))
    );
    assert_eq!(
        MetadataMsg::decode(b"d8:msg_typei0e5:piecei-1ee"),
        Err(MetadataMsgError::Field("piece"))
    );
    assert_eq!(MetadataMsg::decode(b"i1e"), Err(MetadataMsgError::NotDict));
    let mut big = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
    big.extend(std::iter::repeat_n(0u8, PIECE + 1));
    assert_eq!(
        MetadataMsg::decode(&big),
        Err(MetadataMsgError::Oversized(0))
    );
}

/// An info dictionary of `len` bytes (not a valid one: only its hash matters).
fn info(len: usize) -> (Vec<u8>, InfoHash) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let h = InfoHash::of(&bytes);
    (bytes, h)
}

fn piece(info: &[u8], p: u32) -> &[u8] {
    let s = p as usize * PIECE;
    &info[s..(s + PIECE).min(info.len())]
}

/// Asks `peer` for everything it will take and answers from `copy`.
fn serve(
    x: &mut Exchange<u8>,
    now: Instant,
    peer: u8,
    copy: &[u8],
    size: u64,
) -> Vec<Progress<u8>> {
    let mut out = Vec::new();
    while let Some(p) = x.next_request(now, peer) {
        out.push(x.on_data(peer, p, size, piece(copy, p)).unwrap());
    }
    out
}

#[test]
fn one_peer_gives_everything() {
    let (bytes, h) = info(40_000);
    let mut x = Exchange::new(h, MAX_SIZE);
    x.add_peer(1, Some(40_000)).unwrap();
    let t = Instant::now();
    let got = serve(&mut x, t, 1, &bytes, 40_000);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got.last(),
        Some(&Progress::Done {
            info: bytes,
            liars: vec![],
            sources: 1
        })
    );
}

#[test]
fn refusals() {
    let (_, h) = info(10);
    let mut x = Exchange::<u8>::new(h, 1000);
    assert_eq!(x.add_peer(1, None), Err(Refusal::NoMetadata));
    assert_eq!(x.add_peer(1, Some(0)), Err(Refusal::NoMetadata));
    assert_eq!(x.add_peer(1, Some(1001)), Err(Refusal::TooLarge(1001)));
    x.add_peer(2, Some(10)).unwrap();
    let t = Instant::now();
    assert_eq!(
        x.on_data(2, 0, 10, &[0; 10]),
        Err(Misbehaviour::Unrequested(0))
    );
    let p = x.next_request(t, 2).unwrap();
    assert_eq!(
        x.on_data(2, p, 11, &[0; 10]),
        Err(Misbehaviour::WrongSize {
            claimed: 11,
            expected: 10
        })
    );
    let p = x.next_request(t, 2).unwrap();
    assert_eq!(
        x.on_data(2, p, 10, &[0; 9]),
        Err(Misbehaviour::WrongLength {
            piece: 0,
            len: 9,
            expected: 10
        })
    );
}

#[test]
fn a_lone_liar_is_banned_and_the_next_peer_asked() {
    let (bytes, h) = info(20_000);
    let bad: Vec<u8> = bytes.iter().map(|b| b ^ 1).collect();
    let mut x = Exchange::new(h, MAX_SIZE);
    x.add_peer(1, Some(20_000)).unwrap();
    x.add_peer(2, Some(20_000)).unwrap();
    let t = Instant::now();
    let got = serve(&mut x, t, 1, &bad, 20_000);
    assert_eq!(got.last(), Some(&Progress::Failed { banned: vec![1] }));
    assert!(x.is_banned(1));
    assert_eq!(x.add_peer(1, Some(20_000)), Err(Refusal::Banned));
    let got = serve(&mut x, t, 2, &bytes, 20_000);
    assert!(matches!(
        got.last(),
        Some(Progress::Done { sources: 1, .. })
    ));
}

#[test]
fn a_liar_among_several_is_found_once_a_copy_passes() {
    let (bytes, h) = info(3 * PIECE);
    let mut bad = bytes.clone();
    bad[PIECE + 5] ^= 0xff; // the liar's piece 1 is wrong
    let mut x = Exchange::new(h, MAX_SIZE);
    x.add_peer(1, Some(bytes.len() as u64)).unwrap();
    x.add_peer(2, Some(bytes.len() as u64)).unwrap();
    let t = Instant::now();
    let size = bytes.len() as u64;
    // Peer 1 (honest) takes piece 0, the liar piece 1, peer 1 piece 2.
    let p0 = x.next_request(t, 1).unwrap();
    let p1 = x.next_request(t, 2).unwrap();
    let p2 = x.next_request(t, 1).unwrap();
    assert_eq!((p0, p1, p2), (0, 1, 2));
    assert_eq!(
        x.on_data(1, 0, size, piece(&bytes, 0)),
        Ok(Progress::Pending)
    );
    assert_eq!(x.on_data(2, 1, size, piece(&bad, 1)), Ok(Progress::Pending));
    assert_eq!(
        x.on_data(1, 2, size, piece(&bytes, 2)),
        Ok(Progress::Failed { banned: vec![] })
    );
    // Now one peer alone (the one that sent most) is asked for all of it.
    assert_eq!(x.next_request(t, 2), None);
    let got = serve(&mut x, t, 1, &bytes, size);
    assert_eq!(
        got.last(),
        Some(&Progress::Done {
            info: bytes,
            liars: vec![2],
            sources: 1
        })
    );
}

#[test]
fn stalled_and_rejecting_peers() {
    let (_, h) = info(2 * PIECE);
    let size = 2 * PIECE as u64;
    let mut x = Exchange::<u8>::new(h, MAX_SIZE);
    x.add_peer(1, Some(size)).unwrap();
    x.add_peer(2, Some(size)).unwrap();
    let t = Instant::now();
    assert_eq!(x.next_request(t, 1), Some(0));
    assert_eq!(x.next_request(t, 1), Some(1));
    assert_eq!(x.next_request(t, 2), None, "nothing left to ask");
    assert!(x.stalled(t).is_empty());
    let late = t + REQUEST_TIMEOUT;
    assert_eq!(x.stalled(late), vec![1]);
    // Another peer may take over a request that sat too long.
    assert_eq!(x.next_request(late, 2), Some(0));
    x.remove_peer(1);
    assert_eq!(x.next_request(late, 2), Some(1));
    assert_eq!(x.on_reject(late, 2, 1), Ok(()));
    assert_eq!(x.next_request(late, 2), None, "backing off after a reject");
    assert_eq!(x.next_request(late + Duration::from_secs(3), 2), Some(1));
    assert_eq!(x.on_reject(late, 2, 0), Ok(()));
    assert_eq!(x.on_reject(late, 2, 0), Err(Misbehaviour::Unrequested(0)));
}

#[test]
fn peers_claiming_another_size_wait_for_their_turn() {
    let (bytes, h) = info(100);
    let mut x = Exchange::new(h, MAX_SIZE);
    x.add_peer(1, Some(50)).unwrap();
    x.add_peer(2, Some(100)).unwrap();
    let t = Instant::now();
    assert_eq!(x.next_request(t, 2), None, "peer 1's size is being fetched");
    let p = x.next_request(t, 1).unwrap();
    assert_eq!(
        x.on_data(1, p, 50, &[0; 50]),
        Ok(Progress::Failed { banned: vec![1] })
    );
    let got = serve(&mut x, t, 2, &bytes, 100);
    assert!(matches!(got.last(), Some(Progress::Done { .. })));
}
