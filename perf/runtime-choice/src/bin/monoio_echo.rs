use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use runtime_choice::*;
use std::time::Instant;

fn main() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().build().unwrap();
        rt.block_on(async move {
            let l = TcpListener::from_std(listener).unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut req = vec![0u8; 17 * DEPTH];
            let mut piece = vec![7u8; BLOCK * DEPTH];
            let mut left = ROUNDS;
            while left > 0 {
                let n = DEPTH.min(left);
                let (r, b) = s.read_exact(req).await; r.unwrap(); req = b;
                let (r, b) = s.write_all(piece).await; r.unwrap(); piece = b;
                left -= n;
            }
            // stream phase
            let mut chunk = vec![1u8; 256 * 1024];
            for _ in 0..4096 { let (r, b) = s.write_all(chunk).await; r.unwrap(); chunk = b; }
        });
    });
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().build().unwrap();
    rt.block_on(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut req = vec![0u8; 17 * DEPTH];
        let mut resp = vec![0u8; BLOCK * DEPTH];
        let t = Instant::now();
        let mut left = ROUNDS;
        while left > 0 {
            let (r, b) = s.write_all(req).await; r.unwrap(); req = b;
            let (r, b) = s.read_exact(resp).await; r.unwrap(); resp = b;
            left -= DEPTH.min(left);
        }
        report("monoio", "request/response", ROUNDS * BLOCK, t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        while total < 4096 * 256 * 1024 {
            let (r, b) = monoio::io::AsyncReadRent::read(&mut s, buf).await; total += r.unwrap(); buf = b;
        }
        report("monoio", "stream", total, t.elapsed().as_secs_f64());
    });
    server.join().unwrap();
}
