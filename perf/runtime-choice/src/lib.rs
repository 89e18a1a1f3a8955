//! Shared workload: a client sends N 16 KiB "requests" in a pipeline of depth D
//! to a server that answers each with a 16 KiB "piece"; then a one-way stream.
pub const BLOCK: usize = 16 * 1024;
pub const ROUNDS: usize = 65_536; // 1 GiB of answers
pub const DEPTH: usize = 64;

pub fn report(name: &str, what: &str, bytes: usize, secs: f64) {
    println!("{name:10} {what:18} {:8.0} MiB/s", bytes as f64 / 1048576.0 / secs);
}
