//! Record value decoding on arbitrary bytes: no panic; what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstream_wire::{RecordValue, ValueEncoder};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = RecordValue::decode(data) {
        let mut enc = ValueEncoder::new(v.node, v.interface);
        let again = enc.encode(&v.meta, v.frame);
        // Reserved flag bits are dropped on re-encode; everything else is preserved.
        assert_eq!(&again[2..], &data[2..]);
        assert_eq!(again[0], data[0]);
        assert_eq!(again[1], data[1] & 0x03);
    }
});
