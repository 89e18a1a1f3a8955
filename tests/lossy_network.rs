//! A transfer across a bad network: two network namespaces joined by a
//! packet relay that delays one direction by 50 ms and drops 2% of packets
//! both ways, every byte verified.
//!
//! The kernel here has no `netem` qdisc (CONFIG_NET_SCH_NETEM is off), so
//! the test emulates it: each namespace gets a TUN device, and this process
//! moves IP packets between the two, dropping and delaying them. That is
//! the same packet-level impairment `tc netem` applies to a veth pair; TCP
//! in both namespaces sees real loss and real delay. Needs root (namespaces
//! and TUN devices); skipped with a message otherwise.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::netns::{Cleanup, ip, must_ip, rt_in};
use common::*;

const DELAY: Duration = Duration::from_millis(50);
const LOSS_PERCENT: u32 = 2;

/// A TUN device created in this namespace; the fd stays attached when the
/// device moves to another namespace.
fn open_tun(name: &str) -> std::io::Result<OwnedFd> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    // SAFETY: open(2) with a NUL-terminated path; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is not owned elsewhere.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // struct ifreq: 16 bytes of name, then the flags (short).
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as u16;
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifr` is
    // large enough to hold; it lives across the call.
    if unsafe { libc::ioctl(owned.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(owned)
}

/// Moves packets from `from` to `to`, dropping `LOSS_PERCENT` of them and
/// holding each for `delay`.
fn relay(
    from: Arc<OwnedFd>,
    to: Arc<OwnedFd>,
    delay: Duration,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut queue: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while queue.front().is_some_and(|(t, _)| *t <= now) {
                let (_, p) = queue.pop_front().expect("checked");
                // SAFETY: writes from a live buffer of p.len() bytes.
                unsafe { libc::write(to.as_raw_fd(), p.as_ptr().cast(), p.len()) };
            }
            let wait = queue.front().map_or(20, |(t, _)| {
                t.saturating_duration_since(now).as_millis() as i32
            });
            let mut pfd = libc::pollfd {
                fd: from.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, wait.clamp(0, 20)) };
            loop {
                // SAFETY: reads into a live buffer of buf.len() bytes.
                let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                if rng.u32(0..100) < LOSS_PERCENT {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                queue.push_back((Instant::now() + delay, buf[..n as usize].to_vec()));
            }
        }
    })
}

#[test]
fn transfer_across_delay_and_loss() {
    let tag = std::process::id() % 100_000;
    let (ns_a, ns_b) = (format!("rt-lossy-a{tag}"), format!("rt-lossy-b{tag}"));
    let (tun_a, tun_b) = (format!("rtla{tag}"), format!("rtlb{tag}"));
    if !ip(&["netns", "add", &ns_a]) {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    }
    let _ns = Cleanup {
        namespaces: vec![ns_a.clone(), ns_b.clone()],
        links: Vec::new(),
    };
    must_ip(&["netns", "add", &ns_b]);
    let (fd_a, fd_b) = match (open_tun(&tun_a), open_tun(&tun_b)) {
        (Ok(a), Ok(b)) => (Arc::new(a), Arc::new(b)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("SKIPPED: cannot create TUN devices here: {e}");
            return;
        }
    };
    let (addr_a, addr_b) = ("10.213.0.1", "10.213.0.2");
    for (ns, tun, me, peer) in [
        (&ns_a, &tun_a, addr_a, addr_b),
        (&ns_b, &tun_b, addr_b, addr_a),
    ] {
        must_ip(&["link", "set", tun, "netns", ns]);
        must_ip(&["-n", ns, "addr", "add", me, "peer", peer, "dev", tun]);
        must_ip(&["-n", ns, "link", "set", tun, "up"]);
        must_ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    // Seeder (A) to leecher (B) carries the data: it gets the delay.
    let relays = [
        relay(
            fd_a.clone(),
            fd_b.clone(),
            DELAY,
            stop.clone(),
            dropped.clone(),
        ),
        relay(fd_b, fd_a, Duration::ZERO, stop.clone(), dropped.clone()),
    ];

    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let payload = make_multi(&seed, "tree", 12 * 1024 * 1024);
    let torrent = tmp.path().join("t.torrent");
    rt_create(&payload, &torrent, "256K");
    let listen = format!("{addr_a}:6881");
    let mut seeder = Proc::spawn(
        rt_in(&ns_a, "seed", &torrent, "--data-dir", &seed).args([
            "--no-resume",
            "--listen",
            &listen,
        ]),
        "seeder in namespace A",
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = tmp.path().join("out");
    let start = Instant::now();
    let o = run_limited(
        rt_in(&ns_b, "fetch", &torrent, "--out-dir", &out)
            .args(["--no-resume", "--json", "--timeout", "60"])
            .args(["--listen", &format!("{addr_b}:6882"), "--peer", &listen]),
        Duration::from_secs(240),
    );
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for r in relays {
        r.join().unwrap();
    }
    assert!(
        o.status.success(),
        "fetch across the lossy link failed: {}\nseeder: {}",
        String::from_utf8_lossy(&o.stderr),
        {
            let _ = seeder.child.kill();
            seeder.stderr()
        }
    );
    assert_same_tree(&payload, &out.join("tree"));
    let summary = json(&o);
    let p50 = summary["block_latency_us"]["p50"].as_u64().unwrap();
    assert!(
        p50 >= DELAY.as_micros() as u64,
        "block latency p50 {p50} us: the delay was not applied"
    );
    let lost = dropped.load(Ordering::Relaxed);
    assert!(
        lost > 0,
        "the relay dropped nothing: the test tested nothing"
    );
    eprintln!(
        "lossy link: {} bytes in {took:.1?}, {lost} packets dropped, block latency p50 {p50} us",
        summary["total_length"]
    );
}
