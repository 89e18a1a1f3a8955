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

/// A fleet on virtual time: one seeder and `hosts` leechers, each behind
/// its own access link.
struct Fleet {
    hosts: usize,
    mib: usize,
    piece_kib: u32,
    /// A quarter of the hosts get a quarter of the bandwidth.
    slow_quarter: bool,
    super_seed: bool,
    seed: u64,
    /// The leechers' and the seeder's torrent settings.
    leech: TorrentConfig,
    seeder_slots: usize,
    memory: u64,
    /// Print progress every ten virtual seconds.
    verbose: bool,
}

struct FleetRun {
    /// Seconds until the last host completed, over the fluid model's
    /// lower bound.
    ratio: f64,
    /// The seeder's upload over the dataset's size.
    seeder_upload: f64,
}

impl Fleet {
    fn new(hosts: usize, mib: usize, piece_kib: u32) -> Fleet {
        Fleet {
            hosts,
            mib,
            piece_kib,
            slow_quarter: false,
            super_seed: false,
            seed: 11,
            leech: cfg(),
            seeder_slots: crate::choker::ChokerConfig::default().slots,
            memory: crate::session::DEFAULT_MEMORY,
            verbose: false,
        }
    }

    /// Runs the fleet until every host completes; checks every copy.
    fn run(&self) -> FleetRun {
        use super::sim::HostLink;
        // 20 Mbit/s up, 80 down, as `perf/fleet` runs by default.
        let (up, down) = (20_000_000 / 8, 80_000_000 / 8);
        let _g = SeedGuard(self.seed);
        let mut sim = Sim::new(self.seed);
        let size = self.mib << 20;
        let data = payload(size, self.seed);
        let info = Arc::new(info("fleet", &data, self.piece_kib * 1024));
        let link = LinkSpec {
            latency: Duration::from_micros(200),
            ..LinkSpec::default()
        };
        let seeder = sim.add_host(1, link, HostLink { up, down });
        let seeder_cfg = TorrentConfig {
            super_seed: self.super_seed,
            choker: crate::choker::ChokerConfig {
                slots: self.seeder_slots,
                ..Default::default()
            },
            ..seed_cfg()
        };
        sim.add_torrent(seeder, &info, Some(&data), seeder_cfg);
        let mut rates = Vec::new();
        let leechers: Vec<usize> = (0..self.hosts)
            .map(|i| {
                let k = if self.slow_quarter && i < self.hosts / 4 {
                    4
                } else {
                    1
                };
                rates.push((up / k, down / k));
                let host = HostLink {
                    up: up / k,
                    down: down / k,
                };
                let n = sim.add_host(1, link, host);
                sim.nodes[n].budget = Arc::new(crate::torrent::Budget::new(self.memory));
                n
            })
            .collect();
        let ids: Vec<_> = leechers
            .iter()
            .map(|&l| sim.add_torrent(l, &info, None, self.leech.clone()))
            .collect();
        for (i, &l) in leechers.iter().enumerate() {
            sim.introduce(l, ids[i], seeder);
            for &m in &leechers {
                if m != l {
                    sim.introduce(l, ids[i], m);
                }
            }
        }
        let f = size as f64;
        let total_up = up as f64 + rates.iter().map(|r| r.0 as f64).sum::<f64>();
        let min_down = rates.iter().map(|r| r.1).min().unwrap_or(down) as f64;
        let bound = (f / up as f64)
            .max(f / min_down)
            .max(self.hosts as f64 * f / total_up);
        let start = sim.now;
        let mut done_at: Vec<Option<f64>> = vec![None; self.hosts];
        let mut reported = 0;
        while done_at.iter().any(Option::is_none) {
            sim.settle(Duration::from_millis(100));
            let t = sim.now.duration_since(start).as_secs_f64();
            for (i, (&l, &id)) in leechers.iter().zip(&ids).enumerate() {
                if done_at[i].is_none() && sim.complete(l, id) {
                    done_at[i] = Some(t);
                }
            }
            if self.verbose && t as u64 / 10 > reported {
                reported = t as u64 / 10;
                let sent: Vec<u64> = leechers.iter().map(|&l| sim.nodes[l].sent >> 20).collect();
                println!(
                    "t={t:.0}s seeder sent {} MiB, leechers sent {sent:?} MiB, done {}",
                    sim.nodes[seeder].sent >> 20,
                    done_at.iter().flatten().count()
                );
            }
            assert!(t < bound * 5.0, "the fleet stalled");
        }
        for (&l, &t) in leechers.iter().zip(&ids) {
            assert!(
                sim.nodes[l].disks[&t] == data,
                "leecher {l} has the right bytes"
            );
        }
        let mut times: Vec<f64> = done_at.iter().flatten().copied().collect();
        times.sort_by(f64::total_cmp);
        let last = times.last().copied().unwrap_or(0.0);
        let run = FleetRun {
            ratio: last / bound,
            seeder_upload: sim.nodes[seeder].sent as f64 / f,
        };
        if self.verbose {
            println!("completions (s): {times:.1?}");
            println!(
                "last {last:.1} s, bound {bound:.1} s, ratio {:.2}, seeder upload {:.2}x",
                run.ratio, run.seeder_upload
            );
        }
        run
    }
}

/// A seed is asked for what only seeds have: in a fleet with one seed
/// (without super-seeding) the seed sends less twice. Before that rule (a
/// seed's connection took blocks of any piece under way or leased), this
/// fleet's seeder sent 1.84 to 1.85 times the dataset; with it, 1.45 to 1.50.
#[test]
#[ignore = "seconds in release, minutes in debug: scripts/test runs it in release"]
fn fleet_seed_is_asked_for_what_only_it_has() {
    for seed in [21, 22] {
        let run = Fleet {
            seed,
            ..Fleet::new(16, 128, 1024)
        }
        .run();
        assert!(
            run.seeder_upload < 1.65,
            "seed {seed}: the seeder sent {:.2}x the dataset ({:.2} of the bound)",
            run.seeder_upload,
            run.ratio
        );
    }
}

/// A fleet like `perf/fleet`'s on virtual time, to compare policies:
/// `FLEET_HOSTS` leechers (16), 20 Mbit/s up and 80 down each
/// (`FLEET_SLOW=1` gives a quarter of the hosts a quarter of that), a
/// dataset of `FLEET_MIB` (256) in pieces of `FLEET_PIECE_KIB` (1024);
/// `FLEET_SUPER=1` super-seeds; `FLEET_SEED` (the run's random seed),
/// `FLEET_SLOTS` and `FLEET_SEED_SLOTS` (upload slots of the leechers and of
/// the seeder), `FLEET_LAG` (the leechers' slots for the peers furthest
/// behind), `FLEET_MINPIPE`, `FLEET_INITPIPE`, `FLEET_PIPE_MS` (request
/// pipelines) and `FLEET_MEMORY_MIB` (the leechers' piece budget) vary the
/// policy. Prints each host's completion against the fluid model's lower
/// bound. Seconds in release: `cargo test --release --lib
/// fleet_on_virtual_time -- --ignored --nocapture`.
#[test]
#[ignore = "minutes in a debug build; run it in release"]
fn fleet_on_virtual_time() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mut fleet = Fleet::new(
        env("FLEET_HOSTS", 16) as usize,
        env("FLEET_MIB", 256) as usize,
        env("FLEET_PIECE_KIB", 1024) as u32,
    );
    fleet.slow_quarter = env("FLEET_SLOW", 0) == 1;
    fleet.super_seed = env("FLEET_SUPER", 0) == 1;
    fleet.seed = env("FLEET_SEED", 11);
    fleet.seeder_slots = env("FLEET_SEED_SLOTS", fleet.seeder_slots as u64) as usize;
    fleet.memory = env("FLEET_MEMORY_MIB", crate::session::DEFAULT_MEMORY >> 20) << 20;
    fleet.verbose = true;
    let c = &mut fleet.leech;
    c.choker.slots = env("FLEET_SLOTS", c.choker.slots as u64) as usize;
    c.choker.lagging = env("FLEET_LAG", c.choker.lagging as u64) as usize;
    c.min_pipeline = env("FLEET_MINPIPE", u64::from(c.min_pipeline)) as u32;
    c.initial_pipeline = env("FLEET_INITPIPE", u64::from(c.initial_pipeline)) as u32;
    c.pipeline_time = Duration::from_millis(env("FLEET_PIPE_MS", 2000));
    fleet.run();
}
