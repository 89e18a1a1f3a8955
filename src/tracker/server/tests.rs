use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::udp::{ConnectionIds, handle};
use super::*;

const T: InfoHash = InfoHash([1; 20]);

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 6881))
}

fn announce(
    t: &mut Tracker,
    now: Instant,
    from: SocketAddr,
    left: u64,
    event: Event,
) -> AnnounceReply {
    t.announce(
        now,
        &Announce {
            info_hash: T,
            addr: from,
            left,
            event,
            numwant: None,
        },
    )
    .unwrap()
}

#[test]
fn peers_meet_and_never_see_themselves() {
    let mut t = Tracker::new(Limits::default(), None);
    let now = Instant::now();
    let r = announce(&mut t, now, addr(1), 0, Event::Started);
    assert!(r.peers.is_empty());
    assert_eq!((r.seeders, r.leechers), (1, 0));
    for i in 2..=60 {
        let r = announce(&mut t, now, addr(i), 100, Event::Started);
        assert!(!r.peers.contains(&addr(i)));
        assert_eq!(r.peers.len(), usize::from(i - 1).min(50));
    }
    // A leecher finishing is counted once; a stop removes it.
    announce(&mut t, now, addr(2), 0, Event::Completed);
    let s = t.scrape(&[T, InfoHash([9; 20])]);
    assert_eq!(
        s[0],
        ScrapeEntry {
            seeders: 2,
            completed: 1,
            leechers: 58
        }
    );
    assert_eq!(s[1], ScrapeEntry::default());
    announce(&mut t, now, addr(3), 100, Event::Stopped);
    assert_eq!(t.scrape(&[T])[0].leechers, 57);
    assert_eq!(t.peer_count(), 59);
}

#[test]
fn silent_peers_expire_and_caps_hold() {
    let limits = Limits {
        max_torrents: 2,
        max_peers: 3,
        ..Limits::default()
    };
    let mut t = Tracker::new(limits, None);
    let now = Instant::now();
    for i in 1..=5 {
        announce(&mut t, now, addr(i), 1, Event::Started);
    }
    assert_eq!(t.peer_count(), 3);
    assert_eq!(t.stats().over_cap, 2);
    t.expire(now + Duration::from_secs(3600));
    assert_eq!(t.peer_count(), 0);
    assert!(t.swarms.is_empty());
    for h in 2..=4u8 {
        let a = Announce {
            info_hash: InfoHash([h; 20]),
            addr: addr(1),
            left: 0,
            event: Event::Started,
            numwant: None,
        };
        t.announce(now, &a).unwrap();
    }
    assert_eq!(t.swarms.len(), 2, "a cap on torrents");
}

#[test]
fn the_allow_list_refuses_others() {
    let mut t = Tracker::new(Limits::default(), Some([T].into_iter().collect()));
    let a = Announce {
        info_hash: InfoHash([2; 20]),
        addr: addr(1),
        left: 0,
        event: Event::Started,
        numwant: None,
    };
    assert_eq!(t.announce(Instant::now(), &a), Err(Refusal::NotAllowed));
    announce(&mut t, Instant::now(), addr(1), 0, Event::Started);
}

fn udp(t: &mut Tracker, ids: &ConnectionIds, minute: u64, from: SocketAddr, p: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    handle(t, ids, Instant::now(), Some(minute), from, p, &mut out);
    out
}

#[test]
fn udp_connection_ids_cannot_be_forged_and_nothing_is_amplified() {
    let mut t = Tracker::new(Limits::default(), None);
    let ids = ConnectionIds::new();
    let from = addr(1);
    let connect = crate::tracker::udp::connect_packet(7);
    let reply = udp(&mut t, &ids, 100, from, &connect);
    assert_eq!(
        reply.len(),
        connect.len(),
        "a connect reply is no larger than its request"
    );
    let cid = u64::from_be_bytes(reply[8..16].try_into().unwrap());

    let req = crate::tracker::AnnounceRequest {
        info_hash: T,
        peer_id: crate::wire::PeerId([5; 20]),
        port: 7000,
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: Event::Started,
        num_want: 10,
        key: 1,
        tracker_id: None,
    };
    let good = crate::tracker::udp::announce_packet(cid, 9, &req);
    let r =
        crate::tracker::udp::parse_announce(&udp(&mut t, &ids, 100, from, &good), false).unwrap();
    assert_eq!(r.seeders, Some(1));
    // Still good a minute later, not two; not from another address.
    assert!(!udp(&mut t, &ids, 101, from, &good).is_empty());
    assert!(udp(&mut t, &ids, 102, from, &good).is_empty());
    assert!(udp(&mut t, &ids, 100, addr(2), &good).is_empty());
    let forged = crate::tracker::udp::announce_packet(cid ^ 1, 9, &req);
    assert!(udp(&mut t, &ids, 100, from, &forged).is_empty());
    // Truncated and oversized packets.
    assert!(udp(&mut t, &ids, 100, from, &good[..15]).is_empty());
    let err = udp(&mut t, &ids, 100, from, &good[..60]);
    assert_eq!(
        &err[..4],
        &3u32.to_be_bytes(),
        "a short announce gets an error"
    );
    let mut big = good.clone();
    big.resize(1500, 0);
    assert!(!udp(&mut t, &ids, 100, from, &big).is_empty());
    // The peer announced from its own address, with the port it gave.
    let other = crate::tracker::udp::announce_packet(
        u64::from_be_bytes(
            udp(&mut t, &ids, 100, addr(2), &connect)[8..16]
                .try_into()
                .unwrap(),
        ),
        1,
        &req,
    );
    let r = crate::tracker::udp::parse_announce(&udp(&mut t, &ids, 100, addr(2), &other), false)
        .unwrap();
    assert_eq!(r.peers, [SocketAddr::from(([10, 0, 0, 1], 7000))]);
}

#[test]
fn http_announce_and_scrape_speak_bencode() {
    let mut t = Tracker::new(Limits::default(), None);
    let now = Instant::now();
    let hash: String = T.0.iter().map(|b| format!("%{b:02X}")).collect();
    let q = |port: u16, left: u64| {
        format!(
            "/announce?info_hash={hash}&peer_id=x&port={port}&left={left}&compact=1&event=started"
        )
    };
    let from4 = SocketAddr::from(([127, 0, 0, 1], 1));
    http::respond(&mut t, now, from4, &q(7001, 0)).unwrap();
    let from6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
    http::respond(&mut t, now, from6, &q(7002, 5)).unwrap();
    let body = http::respond(
        &mut t,
        now,
        SocketAddr::from(([127, 0, 0, 2], 1)),
        &q(7003, 5),
    )
    .unwrap();
    let r = crate::tracker::http::parse_announce(&body).unwrap();
    let mut peers = r.peers.clone();
    peers.sort();
    assert_eq!(
        peers,
        [
            "127.0.0.1:7001".parse().unwrap(),
            "[2001:db8::1]:7002".parse().unwrap()
        ]
    );
    assert_eq!((r.seeders, r.leechers), (Some(1), Some(2)));

    let scrape = http::respond(&mut t, now, from4, &format!("/scrape?info_hash={hash}")).unwrap();
    let s = crate::tracker::http::parse_scrape(&scrape, &T).unwrap();
    assert_eq!((s.seeders, s.leechers), (1, 2));

    let bad = http::respond(&mut t, now, from4, "/announce?info_hash=short&port=1").unwrap();
    assert!(crate::tracker::http::parse_announce(&bad).is_err());
    assert!(http::respond(&mut t, now, from4, "/other").is_none());
}
