//! Fuzz target: `FrameDecoder::decode` fed a stream in arbitrary chunks (see `session_fuzz::decoder`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_fuzz::decoder::run(data));
