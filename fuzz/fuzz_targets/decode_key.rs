//! Key decoding on arbitrary bytes: no panic; what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstream_wire::FlowKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = FlowKey::decode(data) {
        assert_eq!(k.to_vec(), data);
    }
});
