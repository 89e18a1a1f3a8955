//! The `ringtorrent` command line.

#![deny(unsafe_op_in_unsafe_fn)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            // One line, the whole cause chain, no backtrace.
            eprintln!("ringtorrent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
