//! SHA-1 over 1 MiB pieces: the `sha1` crate (SHA-NI), `ring`, and our
//! 16-lane multi-buffer batches. Throughput is per byte hashed.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const PIECE: usize = 1 << 20;

fn pieces(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| (0..PIECE).map(|j| (i * 131 + j * 7) as u8).collect())
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = pieces(16);
    let mut g = c.benchmark_group("sha1_1MiB");
    g.throughput(Throughput::Bytes(PIECE as u64));
    g.bench_function("sha1_crate::digest", |b| {
        b.iter(|| ringtorrent::hash::sha1(&data[0]))
    });
    g.bench_function("ring::digest", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &data[0]))
    });
    g.finish();

    let mut g = c.benchmark_group("hash::sha1_batch");
    for lanes in [1usize, 2, 4, 8, 16] {
        let refs: Vec<&[u8]> = data[..lanes].iter().map(Vec::as_slice).collect();
        g.throughput(Throughput::Bytes((PIECE * lanes) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(lanes), &refs, |b, refs| {
            b.iter(|| ringtorrent::hash::sha1_batch(refs))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
