//! `ringtorrent bench`: a loopback transfer between ringtorrent processes on
//! generated data, verified byte for byte, with throughput, block latency,
//! CPU time and peak memory of each process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringtorrent::create::{CreateOptions, Version, create};

use super::fmt;

#[derive(clap::Args)]
pub struct Args {
    /// Dataset size (e.g. 256M, 1G, 4G).
    #[arg(long, value_parser = fmt::parse_size, default_value = "1G")]
    size: u64,
    /// Piece size.
    #[arg(long, value_parser = fmt::parse_size, default_value = "1M")]
    piece_size: u64,
    /// `single` file, or `multi`: a tree of odd-sized files, nested
    /// directories and an empty file.
    #[arg(long, default_value = "single", value_parser = ["single", "multi"])]
    layout: String,
    /// Which hashes the torrent carries: `v1` (SHA-1), `v2` (SHA-256
    /// Merkle trees, BEP 52) or `hybrid` (both, both checked).
    #[arg(long = "torrent-version", default_value = "v1", value_parser = ["v1", "v2", "hybrid"])]
    torrent_version: String,
    /// Leechers fetching at once (they also trade).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    leechers: u16,
    /// Seeders, each a process with the whole dataset; every leecher
    /// connects to all of them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    seeders: u16,
    /// Shard threads per process (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Extra options for every ringtorrent process (split on spaces).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    extra: String,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

/// A finished child process: exit status, wall time, CPU and peak RSS.
struct Finished {
    ok: bool,
    wall: Duration,
    cpu: Duration,
    stdout: String,
    stderr: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ringtorrent-bench-")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let piece = u32::try_from(args.piece_size).context("piece size too large")?;
    let seed_dir = dir.join("seed");
    let name = "dataset";
    let payload = seed_dir.join(name);
    eprintln!(
        "bench: generating {} ({}) in {}",
        fmt::bytes(args.size),
        args.layout,
        dir.display()
    );
    generate(&payload, args.size, args.layout == "multi")?;
    let torrent = dir.join("dataset.torrent");
    let created = create(
        &payload,
        &CreateOptions {
            piece_length: Some(piece),
            version: match args.torrent_version.as_str() {
                "v2" => Version::V2,
                "hybrid" => Version::Hybrid,
                _ => Version::V1,
            },
            ..CreateOptions::default()
        },
    )?;
    std::fs::write(&torrent, &created.bytes)?;

    let exe = std::env::current_exe()?;
    // Fresh resume state each run, so every run transfers everything.
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let threads = args.threads.to_string();
    let extra: Vec<&str> = args.extra.split_whitespace().collect();
    // A seed or fetch process of this run, with the options all share.
    let process = |verb: &str, dir_flag: &str, dir: &Path, state: &Path, listen: &str| {
        let mut c = Command::new(&exe);
        c.arg(verb)
            .arg(&torrent)
            .arg(dir_flag)
            .arg(dir)
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", listen, "--threads", &threads, "--json"])
            // A benchmark talks to its own processes only.
            .args(["--no-dht", "--no-lsd"]);
        c
    };
    let spawn = |mut c: Command, what: &str| {
        c.args(&extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start a {what}"))
    };
    let seed_start = Instant::now();
    let mut seeders = Vec::new();
    for i in 0..args.seeders {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let state = state.join(format!("seed{i}"));
        let cmd = process("seed", "--data-dir", &seed_dir, &state, &addr.to_string());
        seeders.push((addr, spawn(cmd, "seeder")?));
    }
    for (addr, child) in &mut seeders {
        wait_listening(*addr, child)?;
    }
    let seed_ready = seed_start.elapsed();

    let ports: Vec<u16> = (0..args.leechers)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let mut leechers = Vec::new();
    let start = Instant::now();
    for (i, port) in ports.iter().enumerate() {
        let out = dir.join(format!("leech{i}"));
        let _ = std::fs::remove_dir_all(&out);
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = process("fetch", "--out-dir", &out, &state, &listen);
        for (addr, _) in &seeders {
            cmd.args(["--peer", &addr.to_string()]);
        }
        // Leechers know each other, so they can trade pieces.
        for (j, other) in ports.iter().enumerate() {
            if j != i {
                cmd.args(["--peer", &format!("127.0.0.1:{other}")]);
            }
        }
        leechers.push((out, spawn(cmd, "leecher")?));
    }
    let mut results = Vec::new();
    for (out, child) in leechers {
        results.push((out, wait(child, start)?));
    }
    let total_wall = start.elapsed();
    // Stop the seeders the way an operator would.
    let mut seeds = Vec::new();
    for (_, child) in seeders {
        // SAFETY: kill(2) on our own child's pid; it has not been reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        seeds.push(wait(child, seed_start)?);
    }

    let mut failures = Vec::new();
    for (i, (out, r)) in results.iter().enumerate() {
        if !r.ok {
            failures.push(format!("leecher {i} failed: {}", r.stderr.trim()));
        } else if let Err(e) = same_tree(&payload, &out.join(name)) {
            failures.push(format!("leecher {i}: {e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }

    let seed_rss = |seed: &Finished| {
        serde_json::from_str::<serde_json::Value>(seed.stdout.trim())
            .ok()
            .and_then(|v| v["peak_rss_kib"].as_u64())
            .unwrap_or(0)
    };
    let summaries: Vec<serde_json::Value> = results
        .iter()
        .map(|(_, r)| serde_json::from_str(r.stdout.trim()).unwrap_or(serde_json::Value::Null))
        .collect();
    let mib = args.size as f64 / 1048576.0;
    let report = serde_json::json!({
        "size_bytes": args.size,
        "piece_bytes": args.piece_size,
        "layout": args.layout,
        "torrent_version": args.torrent_version,
        "leechers": args.leechers,
        "seeders": args.seeders,
        "seed_ready_seconds": seed_ready.as_secs_f64(),
        "wall_seconds": total_wall.as_secs_f64(),
        "aggregate_mib_per_second": mib * f64::from(args.leechers) / total_wall.as_secs_f64(),
        "seeder_processes": seeds.iter().map(|s| serde_json::json!({
            "cpu_seconds": s.cpu.as_secs_f64(),
            "peak_rss_kib": seed_rss(s),
        })).collect::<Vec<_>>(),
        "leecher_processes": results.iter().map(|(_, r)| serde_json::json!({
            "wall_seconds": r.wall.as_secs_f64(),
            "mib_per_second": mib / r.wall.as_secs_f64(),
            "cpu_seconds": r.cpu.as_secs_f64(),
        })).collect::<Vec<_>>(),
        "leecher_summaries": summaries,
        "verified": true,
    });
    if args.json {
        fmt::out(&(report.to_string() + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "bench: {} {} {} in pieces of {}, {} seeder(s), {} leecher(s), every byte verified\n",
        fmt::bytes(args.size),
        args.layout,
        args.torrent_version,
        fmt::bytes(args.piece_size),
        args.seeders,
        args.leechers
    );
    for (i, ((_, r), s)) in results.iter().zip(&summaries).enumerate() {
        let lat = &s["block_latency_us"];
        text += &format!(
            "  leecher {i}: {:.2} s, {:.0} MiB/s (transfer {:.2} s, {:.0} MiB/s); cpu {:.2} s; peak rss {:.1} MiB\n",
            r.wall.as_secs_f64(),
            mib / r.wall.as_secs_f64(),
            s["seconds"].as_f64().unwrap_or(0.0),
            s["mib_per_second"].as_f64().unwrap_or(0.0),
            r.cpu.as_secs_f64(),
            s["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        );
        text += &format!(
            "    block latency: p50 {} us, p99 {} us, p99.9 {} us ({} blocks)\n",
            lat["p50"], lat["p99"], lat["p999"], lat["count"]
        );
        text += &format!(
            "    time: hashing {:.2} s, disk {:.2} s (wall, overlapped), event loops busy {:.2} s; {} recv, {} send, {} disk ops\n",
            s["hash_seconds"].as_f64().unwrap_or(0.0),
            s["disk_seconds"].as_f64().unwrap_or(0.0),
            s["loop_busy_seconds"].as_f64().unwrap_or(0.0),
            s["recv_ops"],
            s["send_ops"],
            s["disk_ops"],
        );
    }
    for (i, s) in seeds.iter().enumerate() {
        text += &format!(
            "  seeder {i}: cpu {:.2} s (check included); peak rss {:.1} MiB\n",
            s.cpu.as_secs_f64(),
            seed_rss(s) as f64 / 1024.0,
        );
    }
    text += &format!(
        "  aggregate: {:.0} MiB/s\n",
        mib * f64::from(args.leechers) / total_wall.as_secs_f64()
    );
    fmt::out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until the seeder accepts connections (its data check comes first).
fn wait_listening(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("the seeder exited ({status}): {}", err.trim());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the seeder did not start listening on {addr}")
}

/// Waits for a child, collecting its output and its CPU time. (Its peak
/// memory comes from its own `--json` summary: `ru_maxrss` would include
/// this process's memory at fork.)
fn wait(mut child: Child, start: Instant) -> anyhow::Result<Finished> {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; the pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    let wall = start.elapsed();
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(Finished {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// Writes `size` bytes of deterministic pseudo-random data at `path`: one
/// file, or a tree with odd sizes, nesting and an empty file.
fn generate(path: &Path, size: u64, multi: bool) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::remove_file(path);
    if !multi {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        return write_random(path, size, 1);
    }
    let smalls: [(&str, u64); 5] = [
        ("a/odd.bin", 1_000_003),
        ("a/b/c/deep.bin", 16 * 1024 + 1),
        ("a/one-byte", 1),
        ("z/last.bin", 777_777),
        ("a/empty", 0),
    ];
    let small_total: u64 = smalls.iter().map(|s| s.1).sum();
    let big = size
        .checked_sub(small_total)
        .context("multi layout needs at least 2 MiB")?;
    write_random(&path.join("big.bin"), big, 1)?;
    for (i, (rel, len)) in smalls.iter().enumerate() {
        write_random(&path.join(rel), *len, i as u64 + 2)?;
    }
    Ok(())
}

fn write_random(path: &Path, size: u64, seed: u64) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path)?);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.u64(..).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Every file under `a` has the same bytes at the same place under `b`.
fn same_tree(a: &Path, b: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(a)?;
    if meta.is_dir() {
        for e in std::fs::read_dir(a)? {
            let e = e?;
            same_tree(&e.path(), &b.join(e.file_name()))?;
        }
        return Ok(());
    }
    let (mut x, mut y) = (
        std::fs::File::open(a)?,
        std::fs::File::open(b).with_context(|| format!("{} is missing", b.display()))?,
    );
    if y.metadata()?.len() != meta.len() {
        bail!("{} has the wrong size", b.display());
    }
    let (mut bx, mut by) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = x.read(&mut bx)?;
        if n == 0 {
            return Ok(());
        }
        y.read_exact(&mut by[..n])?;
        if bx[..n] != by[..n] {
            bail!("{} differs from the source", b.display());
        }
    }
}
