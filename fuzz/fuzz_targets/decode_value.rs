//! Record value decoding on arbitrary bytes. The checks are in `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| netstream_fuzz::decode_value(data));
