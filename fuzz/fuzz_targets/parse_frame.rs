//! Frame parsing + keying on arbitrary bytes, for every link type. The checks are in `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| netstream_fuzz::parse_frame(data));
