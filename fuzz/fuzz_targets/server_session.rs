//! Fuzz target: a `ServerSession` driven by arbitrary operations (see `session_fuzz::server`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_fuzz::server::run(data));
