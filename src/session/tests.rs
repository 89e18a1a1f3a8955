//! Whole swarms of session cores and endpoints on virtual time (`sim`).

use std::sync::Arc;
use std::time::Duration;

use super::sim::{LinkSpec, SeedGuard, Sim, info, payload};
use crate::torrent::TorrentConfig;

fn cfg() -> TorrentConfig {
    TorrentConfig::default()
}

fn seed_cfg() -> TorrentConfig {
    TorrentConfig {
        seed_only: true,
        ..TorrentConfig::default()
    }
}

#[test]
fn one_seeder_one_leecher_on_several_shards() {
    let _g = SeedGuard(1);
    let mut sim = Sim::new(1);
    let data = payload(1_000_003, 1);
    let info = Arc::new(info("one", &data, 64 * 1024));
    let seed = sim.add_node(2, LinkSpec::default());
    let leech = sim.add_node(3, LinkSpec::default());
    let st = sim.add_torrent(seed, &info, Some(&data), seed_cfg());
    let lt = sim.add_torrent(leech, &info, None, cfg());
    let _ = st;
    sim.introduce(leech, lt, seed);
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(leech, lt)));
    assert!(
        sim.nodes[leech].disks[&lt] == data,
        "every byte arrived intact"
    );
    let stats = sim.nodes[leech].core.stats(lt).unwrap();
    assert_eq!(stats.hash_failures, 0);
    assert!(
        sim.nodes[leech]
            .notices
            .contains(&super::Notice::Complete(lt))
    );
}

#[test]
fn one_seeder_many_leechers_who_trade() {
    let _g = SeedGuard(2);
    let mut sim = Sim::new(2);
    let data = payload(3 * 256 * 1024 + 5, 2);
    let info = Arc::new(info("trade", &data, 16 * 1024));
    let one_slot = TorrentConfig {
        choker: crate::choker::ChokerConfig {
            slots: 1,
            ..Default::default()
        },
        ..TorrentConfig::default()
    };
    let seed = sim.add_node(2, LinkSpec::default());
    let st = sim.add_torrent(
        seed,
        &info,
        Some(&data),
        TorrentConfig {
            seed_only: true,
            ..one_slot.clone()
        },
    );
    let _ = st;
    let leechers: Vec<usize> = (0..4)
        .map(|_| sim.add_node(2, LinkSpec::default()))
        .collect();
    let ids: Vec<_> = leechers
        .iter()
        .map(|&l| sim.add_torrent(l, &info, None, one_slot.clone()))
        .collect();
    for (i, &l) in leechers.iter().enumerate() {
        sim.introduce(l, ids[i], seed);
        for &m in &leechers {
            if m != l {
                sim.introduce(l, ids[i], m);
            }
        }
    }
    let done = sim.run_until(Duration::from_secs(120), |s| {
        leechers.iter().zip(&ids).all(|(&l, &t)| s.complete(l, t))
    });
    assert!(done, "every leecher completed");
    sim.settle(Duration::from_secs(2));
    let mut traded = 0;
    for (&l, &t) in leechers.iter().zip(&ids) {
        assert!(
            sim.nodes[l].disks[&t] == data,
            "leecher {l} has the right bytes"
        );
        traded += sim.nodes[l].core.stats(t).unwrap().uploaded;
    }
    assert!(traded > 0, "the leechers uploaded to each other");
}

#[test]
fn three_seeders_one_leecher_all_contribute() {
    let _g = SeedGuard(3);
    let mut sim = Sim::new(3);
    let data = payload(2 * 1024 * 1024, 3);
    let info = Arc::new(info("three", &data, 32 * 1024));
    let seeds: Vec<usize> = (0..3)
        .map(|_| sim.add_node(1, LinkSpec::default()))
        .collect();
    let sids: Vec<_> = seeds
        .iter()
        .map(|&s| sim.add_torrent(s, &info, Some(&data), seed_cfg()))
        .collect();
    let leech = sim.add_node(2, LinkSpec::default());
    let lt = sim.add_torrent(leech, &info, None, cfg());
    for &s in &seeds {
        sim.introduce(leech, lt, s);
    }
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(leech, lt)));
    assert!(sim.nodes[leech].disks[&lt] == data);
    sim.settle(Duration::from_secs(2));
    for (&s, &t) in seeds.iter().zip(&sids) {
        let up = sim.nodes[s].core.stats(t).unwrap().uploaded;
        assert!(up > 0, "seeder {s} contributed");
    }
}

#[test]
fn a_lying_seeder_is_banned_and_the_download_still_completes() {
    let _g = SeedGuard(4);
    let mut sim = Sim::new(4);
    let data = payload(600_000, 4);
    let info = Arc::new(info("liar", &data, 16 * 1024));
    let honest = sim.add_node(1, LinkSpec::default());
    sim.add_torrent(honest, &info, Some(&data), seed_cfg());
    let liar = sim.add_node(1, LinkSpec::default());
    sim.add_torrent(liar, &info, Some(&data), seed_cfg());
    sim.nodes[liar].liar = true;
    let leech = sim.add_node(2, LinkSpec::default());
    let lt = sim.add_torrent(leech, &info, None, cfg());
    // Only the liar at first: its data fails, it gets banned.
    sim.introduce(leech, lt, liar);
    assert!(sim.run_until(Duration::from_secs(30), |s| {
        s.nodes[leech].core.stats(lt).unwrap().peers_banned > 0
    }));
    assert_eq!(sim.nodes[leech].core.stats(lt).unwrap().pieces_verified, 0);
    // The pieces it spoiled come from an honest seeder.
    sim.introduce(leech, lt, honest);
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(leech, lt)));
    assert!(
        sim.nodes[leech].disks[&lt] == data,
        "only verified data was kept"
    );
    sim.settle(Duration::from_secs(2));
    let st = sim.nodes[leech].core.stats(lt).unwrap();
    assert!(st.hash_failures >= 1);
    assert_eq!(st.peers_banned, 1);
}

#[test]
fn a_liar_is_told_apart_from_an_honest_peer_on_its_address() {
    // Both seeders on one IP, both feeding the same piece: the failed piece
    // has two contributors, so it is fetched again from one peer and its
    // blocks compared. Only the liar is banned; the honest peer stays.
    let _g = SeedGuard(5);
    let mut sim = Sim::new(5);
    let data = payload(4 * 1024 * 1024, 5);
    let info = Arc::new(info("smart", &data, 4 * 1024 * 1024));
    let liar = sim.add_node(1, LinkSpec::default());
    sim.add_torrent(liar, &info, Some(&data), seed_cfg());
    sim.nodes[liar].liar = true;
    let honest = sim.add_node(1, LinkSpec::default());
    sim.add_torrent(honest, &info, Some(&data), seed_cfg());
    sim.nodes[liar].addr = "10.0.9.9:6881".parse().unwrap();
    sim.nodes[honest].addr = "10.0.9.9:6882".parse().unwrap();
    let leech = sim.add_node(1, LinkSpec::default());
    let lt = sim.add_torrent(leech, &info, None, cfg());
    sim.introduce(leech, lt, liar);
    sim.introduce(leech, lt, honest);
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(leech, lt)));
    assert!(sim.nodes[leech].disks[&lt] == data);
    sim.settle(Duration::from_secs(2));
    let st = sim.nodes[leech].core.stats(lt).unwrap();
    assert!(st.hash_failures >= 1);
    assert_eq!(st.peers_banned, 1, "one peer banned");
    assert_eq!(
        st.disconnects.get("hash_failures"),
        Some(&1),
        "only the liar was dropped for bad data"
    );
}

#[test]
fn many_torrents_per_node_added_and_removed_mid_transfer() {
    let _g = SeedGuard(6);
    let mut sim = Sim::new(6);
    let link = LinkSpec {
        latency: Duration::from_millis(5),
        bandwidth: 20 << 20,
        loss: 0.0,
    };
    let seed = sim.add_node(2, link);
    let leech = sim.add_node(2, link);
    let mut pairs = Vec::new();
    for k in 0..6u64 {
        let data = payload(300_000 + k as usize * 77_777, 10 + k);
        let info = Arc::new(info(&format!("t{k}"), &data, 32 * 1024));
        sim.add_torrent(seed, &info, Some(&data), seed_cfg());
        let lt = sim.add_torrent(leech, &info, None, cfg());
        sim.introduce(leech, lt, seed);
        pairs.push((lt, data, info));
    }
    // Mid-transfer: one download is removed, and a new torrent comes.
    sim.run_until(Duration::from_millis(40), |_| false);
    let (gone, _, _) = pairs.remove(1);
    assert!(!sim.complete(leech, gone), "removed before it completed");
    sim.remove_torrent(leech, gone);
    let data = payload(500_000, 99);
    let late = Arc::new(info("late", &data, 16 * 1024));
    sim.add_torrent(seed, &late, Some(&data), seed_cfg());
    let lt = sim.add_torrent(leech, &late, None, cfg());
    sim.introduce(leech, lt, seed);
    pairs.push((lt, data, late));
    let done = sim.run_until(Duration::from_secs(60), |s| {
        pairs.iter().all(|(t, _, _)| s.complete(leech, *t))
    });
    assert!(done, "every torrent still there completed");
    for (t, data, _) in &pairs {
        assert!(sim.nodes[leech].disks[t] == *data);
    }
    assert!(
        sim.nodes[leech]
            .notices
            .iter()
            .any(|n| matches!(n, super::Notice::Removed(t, _) if *t == gone))
    );
    assert!(sim.nodes[leech].core.stats(gone).is_none());
}

#[test]
fn upload_slots_are_shared_by_every_torrent_of_a_session() {
    // A seeder of three torrents allowed two unchoked peers in all: after
    // a choker round, no more than two of its three leechers are served.
    let _g = SeedGuard(8);
    let mut sim = Sim::new(8);
    let link = LinkSpec {
        latency: Duration::from_millis(2),
        bandwidth: 1 << 20,
        loss: 0.0,
    };
    sim.max_unchoked = Some(2);
    let seed = sim.add_node(2, link);
    sim.max_unchoked = None;
    let mut leechers = Vec::new();
    for k in 0..3u64 {
        let data = payload(8 << 20, 20 + k);
        let info = Arc::new(info(&format!("s{k}"), &data, 256 * 1024));
        sim.add_torrent(seed, &info, Some(&data), seed_cfg());
        let n = sim.add_node(1, link);
        let t = sim.add_torrent(n, &info, None, cfg());
        sim.introduce(n, t, seed);
        leechers.push((n, t));
    }
    let unchoked = |s: &Sim| -> usize {
        s.nodes[seed]
            .endpoints
            .iter()
            .map(crate::endpoint::Endpoint::unchoked_count)
            .sum()
    };
    // Before the first round every newcomer is unchoked at once.
    sim.settle(Duration::from_secs(2));
    assert_eq!(unchoked(&sim), 3);
    // From the first round on, two at most.
    for _ in 0..10 {
        sim.settle(Duration::from_secs(2));
        if sim.now.duration_since(sim.start) > Duration::from_secs(11) {
            assert!(unchoked(&sim) <= 2, "{} unchoked", unchoked(&sim));
        }
    }
}

#[test]
fn only_wanted_pieces_are_fetched_and_high_priority_ones_first() {
    use crate::picker::Priority;
    let _g = SeedGuard(9);
    let mut sim = Sim::new(9);
    let link = LinkSpec {
        latency: Duration::from_millis(2),
        bandwidth: 4 << 20,
        loss: 0.0,
    };
    let data = payload(64 * 16 * 1024, 9);
    let info = Arc::new(info("select", &data, 16 * 1024));
    let seed = sim.add_node(1, link);
    sim.add_torrent(seed, &info, Some(&data), seed_cfg());
    let leech = sim.add_node(2, link);
    // Pieces 0..16 skipped, 16..32 low, 32..48 skipped, 48..64 high.
    let pr: Vec<Priority> = (0..64)
        .map(|i| match i / 16 {
            0 | 2 => Priority::Skip,
            1 => Priority::Low,
            _ => Priority::High,
        })
        .collect();
    let lt = sim.add_torrent_with(leech, &info, None, cfg(), Some(pr));
    sim.introduce(leech, lt, seed);
    assert!(sim.run_until(Duration::from_secs(60), |s| {
        s.nodes[leech]
            .notices
            .contains(&super::Notice::Complete(lt))
    }));
    let have = sim.nodes[leech].core.have(lt).unwrap();
    let got: Vec<u32> = have.ones().collect();
    assert_eq!(
        got,
        (16..32).chain(48..64).collect::<Vec<_>>(),
        "exactly the wanted pieces"
    );
    let disk = &sim.nodes[leech].disks[&lt];
    let piece = 16 * 1024;
    assert!(disk[16 * piece..32 * piece] == data[16 * piece..32 * piece]);
    assert!(disk[48 * piece..] == data[48 * piece..]);
    assert!(
        disk[..16 * piece].iter().all(|&b| b == 0),
        "skipped pieces never came"
    );
    // High before low: the pieces done first are high-priority ones.
    let done: Vec<u32> = sim.nodes[leech]
        .notices
        .iter()
        .filter_map(|n| match n {
            super::Notice::PieceDone(t, p) if *t == lt => Some(*p),
            _ => None,
        })
        .collect();
    assert!(done[..8].iter().all(|&p| p >= 48), "{done:?}");
}

#[test]
fn slow_lossy_links_still_deliver_every_byte() {
    let _g = SeedGuard(7);
    let mut sim = Sim::new(7);
    let link = LinkSpec {
        latency: Duration::from_millis(50),
        bandwidth: 4 << 20,
        loss: 0.02,
    };
    let data = payload(1_500_000, 7);
    let info = Arc::new(info("lossy", &data, 64 * 1024));
    let seed = sim.add_node(2, link);
    sim.add_torrent(seed, &info, Some(&data), seed_cfg());
    let leech = sim.add_node(2, link);
    let lt = sim.add_torrent(leech, &info, None, cfg());
    sim.introduce(leech, lt, seed);
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(leech, lt)));
    assert!(sim.nodes[leech].disks[&lt] == data);
}

mod random_swarms {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Random swarms: nodes with several shards, links of random
        /// latency, bandwidth and loss, a few torrents each seeded by one
        /// node; every leecher ends with every byte.
        #[test]
        fn every_leecher_gets_every_byte(
            seed in any::<u64>(),
            nodes in 2usize..5,
            shards in 1usize..4,
            torrents in 1usize..3,
            piece_kib in prop::sample::select(vec![16u32, 32, 64, 256]),
            latency_ms in 0u64..30,
            bandwidth_mib in prop::sample::select(vec![0u64, 8, 64]),
            loss in prop::sample::select(vec![0.0f64, 0.01]),
            chunk in prop::sample::select(vec![1000usize, 16384, 1 << 20]),
        ) {
            let _g = SeedGuard(seed);
            let mut sim = Sim::new(seed);
            sim.chunk = chunk;
            let link = LinkSpec {
                latency: Duration::from_millis(latency_ms),
                bandwidth: bandwidth_mib << 20,
                loss,
            };
            let ids: Vec<usize> = (0..nodes).map(|_| sim.add_node(shards, link)).collect();
            let mut wanted = Vec::new();
            for k in 0..torrents {
                let len = 200_000 + sim.rng.usize(..400_000);
                let data = payload(len, seed ^ k as u64);
                let info = Arc::new(info(&format!("r{k}"), &data, piece_kib * 1024));
                let owner = k % nodes;
                let mut tids = Vec::new();
                for &n in &ids {
                    let t = if n == owner {
                        sim.add_torrent(n, &info, Some(&data), seed_cfg())
                    } else {
                        sim.add_torrent(n, &info, None, cfg())
                    };
                    tids.push(t);
                }
                for &n in &ids {
                    for &m in &ids {
                        if n != m {
                            sim.introduce(n, tids[n], m);
                        }
                    }
                }
                for &n in &ids {
                    if n != owner {
                        wanted.push((n, tids[n], data.clone()));
                    }
                }
            }
            let done = sim.run_until(Duration::from_secs(120), |s| {
                wanted.iter().all(|(n, t, _)| s.complete(*n, *t))
            });
            prop_assert!(done, "seed {seed}: not every leecher completed");
            for (n, t, data) in &wanted {
                prop_assert!(sim.nodes[*n].disks[t] == *data, "seed {seed}: node {n} has wrong bytes");
            }
        }
    }
}

#[test]
fn a_seed_replays_the_same_run() {
    // Everything random comes from the seed and every map the logic walks is
    // ordered: the same seed gives the same pieces in the same order.
    let run = |seed: u64| {
        let mut sim = Sim::new(seed);
        let link = LinkSpec {
            latency: Duration::from_millis(3),
            bandwidth: 16 << 20,
            loss: 0.01,
        };
        let data = payload(700_000, seed);
        let info = Arc::new(info("replay", &data, 16 * 1024));
        let seeder = sim.add_node(2, link);
        sim.add_torrent(seeder, &info, Some(&data), seed_cfg());
        let leechers: Vec<(usize, _)> = (0..3)
            .map(|_| {
                let n = sim.add_node(2, link);
                (n, sim.add_torrent(n, &info, None, cfg()))
            })
            .collect();
        for &(n, t) in &leechers {
            sim.introduce(n, t, seeder);
            for &(m, _) in &leechers {
                if m != n {
                    sim.introduce(n, t, m);
                }
            }
        }
        sim.run_until(Duration::from_secs(60), |s| {
            leechers.iter().all(|&(n, t)| s.complete(n, t))
        });
        leechers
            .iter()
            .map(|&(n, _)| sim.nodes[n].notices.clone())
            .collect::<Vec<_>>()
    };
    let a = run(42);
    assert!(a.iter().all(|n| n.len() > 10));
    assert_eq!(a, run(42), "same seed, same run");
    assert_ne!(a, run(43), "another seed, another run");
}
