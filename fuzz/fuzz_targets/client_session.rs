//! Fuzz target: a `ClientSession` driven by arbitrary operations (see `session_fuzz::client`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_fuzz::client::run(data));
