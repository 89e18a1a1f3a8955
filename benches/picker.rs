//! Piece picker operations on a torrent of 100 000 pieces.

use criterion::{Criterion, criterion_group, criterion_main};
use ringtorrent::bitfield::Bitfield;
use ringtorrent::picker::{PeerPieces, Picker};

const N: u32 = 100_000;

fn bench(c: &mut Criterion) {
    // 50 peers, each with a random half of the pieces, and 5 seeds.
    let peers: Vec<Bitfield> = (0..50)
        .map(|p| {
            let mut b = Bitfield::new(N);
            for i in 0..N {
                if (i.wrapping_mul(2_654_435_761) ^ (p * 7919)) % 2 == 0 {
                    b.set(i);
                }
            }
            b
        })
        .collect();
    let setup = || {
        let mut pk = Picker::new(&Bitfield::new(N), 1);
        for p in &peers {
            pk.add_peer(PeerPieces::Some(p));
        }
        for _ in 0..5 {
            pk.add_peer(PeerPieces::All);
        }
        pk
    };
    let mut g = c.benchmark_group("picker_100k");
    g.bench_function("Picker::new + 55 peers", |b| b.iter(setup));
    let mut warm = setup();
    g.bench_function("Picker::pick + abort (seed peer)", |b| {
        b.iter(|| {
            let p = warm.pick(PeerPieces::All);
            if let Some(p) = p {
                warm.abort(p);
            }
            p
        })
    });
    g.bench_function("Picker::pick + abort (half-set peer)", |b| {
        b.iter(|| {
            let p = warm.pick(PeerPieces::Some(&peers[3]));
            if let Some(p) = p {
                warm.abort(p);
            }
            p
        })
    });
    g.bench_function("Picker::pick (half-set peer) + complete x1000", |b| {
        b.iter_batched_ref(
            setup,
            |pk| {
                for _ in 0..1000 {
                    if let Some(p) = pk.pick(PeerPieces::Some(&peers[3])) {
                        pk.complete(p);
                    }
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let mut pk = setup();
    let mut i = 0u32;
    g.bench_function("Picker::peer_has", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            pk.peer_has(i)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
