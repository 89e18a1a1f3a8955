use super::*;
use crate::metainfo::{FileAttr, FileEntry, InfoHash};
use crate::wire::{BLOCK_SIZE, PeerId};

fn info() -> Info {
    // 10 pieces of 32 KiB, the last one 1000 bytes.
    let total = 9 * 32768 + 1000;
    Info {
        name: "t".into(),
        piece_length: 32768,
        pieces: vec![[0; 20]; 10],
        pieces_v2: Vec::new(),
        v2_layers: Vec::new(),
        files: vec![FileEntry {
            path: vec!["t".into()],
            length: total,
            offset: 0,
            attr: FileAttr::default(),
        }],
        private: false,
        multi_file: false,
        total_length: total,
    }
}

fn peer(fast: bool, ext: bool) -> (PeerState, Instant) {
    let now = Instant::now();
    let mut p = PeerState::new(now, "127.0.0.1:1".parse().unwrap(), true, 10);
    let mut h = Handshake::ours(InfoHash([0; 20]), PeerId([1; 20]));
    if !fast {
        h.reserved[7] = 0;
    }
    if !ext {
        h.reserved[5] = 0;
    }
    assert_eq!(
        p.accept(now, Event::Handshake(h), &info()).unwrap(),
        Input::Handshake(h)
    );
    (p, now)
}

fn msg(p: &mut PeerState, m: Message<'_>) -> Result<String, PeerError> {
    p.accept(Instant::now(), Event::Message(m), &info())
        .map(|i| format!("{i:?}"))
}

fn block(piece: u32, begin: u32, len: u32) -> BlockRef {
    BlockRef { piece, begin, len }
}

#[test]
fn bitfield_only_first_and_checked() {
    let (mut p, _) = peer(true, true);
    assert_eq!(
        msg(&mut p, Message::Bitfield(&[0xff])),
        Err(PeerError::BadBitfield(
            crate::bitfield::BitfieldError::Length {
                got: 1,
                expected: 2
            }
        ))
    );
    let (mut p, _) = peer(true, true);
    assert_eq!(
        msg(&mut p, Message::Bitfield(&[0xff, 0xe0])),
        Err(PeerError::BadBitfield(
            crate::bitfield::BitfieldError::SpareBits
        ))
    );
    let (mut p, _) = peer(true, true);
    assert_eq!(
        msg(&mut p, Message::Bitfield(&[0x80, 0x00])).unwrap(),
        "Pieces"
    );
    assert!(p.has(0) && !p.has(1));
    // A late bitfield replaces the set (aria2 sends one mid-session).
    let late = msg(&mut p, Message::Bitfield(&[0xff, 0xc0])).unwrap();
    assert!(late.starts_with("PiecesReplaced"), "{late}");
    assert!(p.is_seed());
    assert!(matches!(
        msg(&mut p, Message::Bitfield(&[0xff, 0xe0])),
        Err(PeerError::BadBitfield(_))
    ));
    let (mut p, _) = peer(true, true);
    msg(&mut p, Message::Unchoke).unwrap();
    assert_eq!(
        msg(&mut p, Message::HaveAll),
        Err(PeerError::LateBitfield("have-all"))
    );
}

#[test]
fn keep_alive_does_not_end_the_first_phase() {
    let (mut p, _) = peer(true, true);
    msg(&mut p, Message::KeepAlive).unwrap();
    assert_eq!(msg(&mut p, Message::HaveNone).unwrap(), "Pieces");
    assert!(!p.has(0));
}

#[test]
fn have_out_of_range_and_new_haves() {
    let (mut p, _) = peer(false, false);
    assert_eq!(
        msg(&mut p, Message::Have(10)),
        Err(PeerError::HaveOutOfRange(10))
    );
    let (mut p, _) = peer(false, false);
    assert_eq!(msg(&mut p, Message::Have(3)).unwrap(), "Have(3)");
    assert_eq!(msg(&mut p, Message::Have(3)).unwrap(), "Nothing");
}

#[test]
fn fast_and_extension_messages_need_their_bits() {
    for m in [
        Message::HaveAll,
        Message::HaveNone,
        Message::AllowedFast(1),
        Message::Suggest(1),
        Message::Reject(block(0, 0, 1)),
    ] {
        let (mut p, _) = peer(false, true);
        assert_eq!(msg(&mut p, m), Err(PeerError::FastNotNegotiated), "{m:?}");
    }
    let (mut p, _) = peer(true, false);
    assert_eq!(
        msg(
            &mut p,
            Message::Extended {
                id: 0,
                payload: b"de"
            }
        ),
        Err(PeerError::ExtensionsNotNegotiated)
    );
    let (mut p, _) = peer(true, true);
    assert_eq!(
        msg(
            &mut p,
            Message::Extended {
                id: 0,
                payload: b"d4:reqqi500ee"
            }
        )
        .unwrap(),
        "ExtHandshake"
    );
    assert_eq!(p.max_requests(), 500);
    assert!(matches!(
        msg(
            &mut p,
            Message::Extended {
                id: 0,
                payload: b"garbage"
            }
        ),
        Err(PeerError::Wire(_))
    ));
}

#[test]
fn requests_are_bounded() {
    let (mut p, _) = peer(true, true);
    for bad in [
        block(10, 0, 1),
        block(9, 0, 1001),
        block(0, 32768, 1),
        block(0, 0, 0),
        block(0, 0, MAX_REQUEST_LEN + 1),
    ] {
        assert_eq!(
            msg(&mut p, Message::Request(bad)),
            Err(PeerError::BadRequest(bad))
        );
    }
    let (mut p, _) = peer(true, true);
    assert_eq!(
        msg(&mut p, Message::Request(block(9, 0, 1000))).unwrap(),
        format!("{:?}", Input::Request(block(9, 0, 1000)))
    );
    for _ in 0..MAX_QUEUED_REQUESTS {
        p.requests_in.push_back(block(0, 0, 1));
    }
    assert_eq!(
        msg(&mut p, Message::Request(block(0, 0, 1))),
        Err(PeerError::RequestFlood(MAX_QUEUED_REQUESTS))
    );
    // Cancel removes a queued request.
    msg(&mut p, Message::Cancel(block(0, 0, 1))).unwrap();
    assert_eq!(p.requests_in.len(), MAX_QUEUED_REQUESTS - 1);
}

#[test]
fn choke_drops_requests_only_without_the_fast_extension() {
    let (mut p, now) = peer(false, false);
    p.requests_out.push_back(Outstanding {
        block: block(1, 0, BLOCK_SIZE),
        sent_at: now,
    });
    assert_eq!(
        msg(&mut p, Message::Choke).unwrap(),
        format!(
            "{:?}",
            Input::Choked {
                dropped: vec![block(1, 0, BLOCK_SIZE)]
            }
        )
    );
    assert!(p.requests_out.is_empty());
    let (mut p, now) = peer(true, false);
    p.requests_out.push_back(Outstanding {
        block: block(1, 0, BLOCK_SIZE),
        sent_at: now,
    });
    msg(&mut p, Message::Choke).unwrap();
    assert_eq!(p.requests_out.len(), 1);
    assert_eq!(
        msg(&mut p, Message::Reject(block(1, 0, BLOCK_SIZE))).unwrap(),
        format!("{:?}", Input::Rejected(block(1, 0, BLOCK_SIZE)))
    );
    // A reject for something never requested but valid crosses a cancel; out of range is a fault.
    assert_eq!(
        msg(&mut p, Message::Reject(block(1, 0, BLOCK_SIZE))).unwrap(),
        "Nothing"
    );
    assert_eq!(
        msg(&mut p, Message::Reject(block(99, 0, 1))),
        Err(PeerError::BadReject)
    );
}

#[test]
fn blocks_match_requests_and_unrequested_ones_are_counted() {
    let (mut p, now) = peer(true, true);
    let b = block(2, 16384, 16384);
    p.requests_out.push_back(Outstanding {
        block: b,
        sent_at: now,
    });
    let ev = Event::Block {
        piece: 2,
        begin: 16384,
        len: 16384,
        offset: 0,
        data: &[1; 100],
    };
    match p.accept(now, ev, &info()).unwrap() {
        Input::Block {
            requested: true,
            completes: false,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    let rest = vec![1u8; 16284];
    let ev = Event::Block {
        piece: 2,
        begin: 16384,
        len: 16384,
        offset: 100,
        data: &rest,
    };
    match p.accept(now, ev, &info()).unwrap() {
        Input::Block {
            requested: true,
            completes: true,
            sent_at: Some(t),
            ..
        } => assert_eq!(t, now),
        other => panic!("{other:?}"),
    }
    assert!(p.requests_out.is_empty());
    assert_eq!(p.down.total, 16384);
    for i in 0..MAX_UNREQUESTED {
        let ev = Event::Block {
            piece: 0,
            begin: 0,
            len: 10,
            offset: 0,
            data: &[0; 10],
        };
        let input = p.accept(now, ev, &info()).unwrap();
        assert!(
            matches!(
                input,
                Input::Block {
                    requested: false,
                    ..
                }
            ),
            "{i}"
        );
    }
    let ev = Event::Block {
        piece: 0,
        begin: 0,
        len: 10,
        offset: 0,
        data: &[0; 10],
    };
    assert_eq!(
        p.accept(now, ev, &info()),
        Err(PeerError::UnrequestedBlocks(MAX_UNREQUESTED + 1))
    );
    assert_eq!(
        p.down.total, 16384,
        "unrequested data is not counted as downloaded"
    );
}

#[test]
fn snub_detection() {
    let (mut p, now) = peer(true, true);
    assert!(
        !p.is_snubbed(now + Duration::from_secs(100), Duration::from_secs(20)),
        "nothing owed"
    );
    p.requests_out.push_back(Outstanding {
        block: block(0, 0, 1),
        sent_at: now,
    });
    assert!(!p.is_snubbed(now + Duration::from_secs(10), Duration::from_secs(20)));
    assert!(p.is_snubbed(now + Duration::from_secs(21), Duration::from_secs(20)));
}

#[test]
fn extension_handshake_may_precede_the_bitfield() {
    let (mut p, _) = peer(true, true);
    msg(
        &mut p,
        Message::Extended {
            id: 0,
            payload: b"de",
        },
    )
    .unwrap();
    assert_eq!(msg(&mut p, Message::HaveAll).unwrap(), "Pieces");
}
