#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringtorrent::fuzzing::tracker_server(data));
