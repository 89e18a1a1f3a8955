//! Bencode decoding of a large torrent, and wire message encode/decode.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringtorrent::bencode::{self, OwnedValue};
use ringtorrent::wire::{
    BlockRef, Decoder, Handshake, Limits, Message, PeerId, encode_piece_header,
};

/// A torrent of 20 000 files and 100 000 pieces (about 2.7 MB).
fn big_torrent() -> Vec<u8> {
    let files: Vec<OwnedValue> = (0..20_000)
        .map(|i| {
            let mut d = OwnedValue::dict();
            d.insert("length", 1_000_000 + i as i64);
            d.insert(
                "path",
                vec![
                    OwnedValue::from(format!("dir{}", i % 100)),
                    OwnedValue::from(format!("file-{i}.bin")),
                ],
            );
            d
        })
        .collect();
    let mut info = OwnedValue::dict();
    info.insert("files", files);
    info.insert("name", "dataset");
    info.insert("piece length", 1 << 18);
    info.insert("pieces", vec![7u8; 100_000 * 20]);
    let mut root = OwnedValue::dict();
    root.insert("announce", "udp://tracker.example:6969/announce");
    root.insert("info", info);
    root.to_bytes()
}

fn bench(c: &mut Criterion) {
    let torrent = big_torrent();
    let mut g = c.benchmark_group("bencode");
    g.throughput(Throughput::Bytes(torrent.len() as u64));
    g.bench_function("bencode::decode", |b| {
        b.iter(|| bencode::decode(&torrent).map(|v| v.raw.len()))
    });
    g.bench_function("Metainfo::from_bytes", |b| {
        b.iter(|| ringtorrent::metainfo::Metainfo::from_bytes(&torrent).map(|m| m.info.files.len()))
    });
    g.finish();

    // A leecher's inbound stream: 64 piece messages of 16 KiB with some haves.
    let mut stream = Handshake::ours(ringtorrent::metainfo::InfoHash([1; 20]), PeerId([2; 20]))
        .encode()
        .to_vec();
    let block = vec![9u8; 16384];
    for i in 0..64u32 {
        stream.extend_from_slice(&encode_piece_header(i / 4, (i % 4) * 16384, 16384));
        stream.extend_from_slice(&block);
        Message::Have(i).encode(&mut stream);
    }
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("Decoder::decode (64 KiB reads)", |b| {
        b.iter(|| {
            let mut d = Decoder::new(Limits::for_pieces(100_000));
            let mut n = 0usize;
            for chunk in stream.chunks(65536) {
                let mut input = chunk;
                while let Ok(Some(_)) = d.decode(&mut input) {
                    n += 1;
                }
            }
            n
        })
    });
    g.finish();
    let mut g2 = c.benchmark_group("wire_requests");
    g2.throughput(Throughput::Elements(1000));
    g2.bench_function("Message::encode (1000 requests)", |b| {
        let mut out = Vec::with_capacity(17_000);
        b.iter(|| {
            out.clear();
            for i in 0..1000u32 {
                Message::Request(BlockRef {
                    piece: i / 64,
                    begin: (i % 64) * 16384,
                    len: 16384,
                })
                .encode(&mut out);
            }
            out.len()
        })
    });
    g2.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
