//! The same workload on the `io-uring` crate directly: one ring per thread,
//! one op in flight per direction, completions reaped in a loop.
use io_uring::{IoUring, opcode, types};
use runtime_choice::*;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Runs `op` to completion on `ring` and returns the result (bytes).
fn run(ring: &mut IoUring, sqe: io_uring::squeue::Entry) -> usize {
    // SAFETY: the buffers referenced by `sqe` outlive this call, which waits
    // for the op's completion before returning.
    unsafe { ring.submission().push(&sqe).unwrap() };
    ring.submit_and_wait(1).unwrap();
    let cqe = ring.completion().next().unwrap();
    assert!(cqe.result() >= 0, "op failed: {}", cqe.result());
    cqe.result() as usize
}

fn write_all(ring: &mut IoUring, fd: i32, buf: &[u8]) {
    let mut off = 0;
    while off < buf.len() {
        let sqe = opcode::Send::new(types::Fd(fd), buf[off..].as_ptr(), (buf.len() - off) as u32).build();
        off += run(ring, sqe);
    }
}

fn read_exact(ring: &mut IoUring, fd: i32, buf: &mut [u8]) {
    let mut off = 0;
    while off < buf.len() {
        let sqe = opcode::Recv::new(types::Fd(fd), buf[off..].as_mut_ptr(), (buf.len() - off) as u32).build();
        let n = run(ring, sqe);
        assert!(n > 0);
        off += n;
    }
}

fn main() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let fd = s.as_raw_fd();
        let mut ring = IoUring::new(64).unwrap();
        let mut req = vec![0u8; 17 * DEPTH];
        let piece = vec![7u8; BLOCK * DEPTH];
        let mut left = ROUNDS;
        while left > 0 {
            read_exact(&mut ring, fd, &mut req);
            write_all(&mut ring, fd, &piece);
            left -= DEPTH.min(left);
        }
        let chunk = vec![1u8; 256 * 1024];
        for _ in 0..4096 { write_all(&mut ring, fd, &chunk); }
        drop(s);
    });
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let fd = s.as_raw_fd();
    let mut ring = IoUring::new(64).unwrap();
    let req = vec![0u8; 17 * DEPTH];
    let mut resp = vec![0u8; BLOCK * DEPTH];
    let t = Instant::now();
    let mut left = ROUNDS;
    while left > 0 {
        write_all(&mut ring, fd, &req);
        read_exact(&mut ring, fd, &mut resp);
        left -= DEPTH.min(left);
    }
    report("io-uring", "request/response", ROUNDS * BLOCK, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    while total < 4096 * 256 * 1024 {
        let sqe = opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).build();
        total += run(&mut ring, sqe);
    }
    report("io-uring", "stream", total, t.elapsed().as_secs_f64());
    server.join().unwrap();
}
