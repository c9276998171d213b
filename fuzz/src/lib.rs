//! The fuzz targets' bodies: the invariants each target checks on arbitrary bytes. They live
//! here, not in the `fuzz_target!` files, so `wire/tests/fuzz.rs` can run the very same checks on
//! the seed corpora under plain `cargo test` (it includes this file as a module), with no
//! libFuzzer or nightly flags.
//!
//! Every check panics when an invariant breaks; a panic is what libFuzzer reports as a crash.

use netstream_wire::{FlowKey, FrameParser, LinkType, MAX_KEY_LEN, RecordValue, ValueEncoder};

/// The link types `parse_frame` picks from with its first input byte.
pub const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
];

/// Separates frames inside one `parse_frame` input, so a first fragment can precede a later one
/// and reach the fragment table's lookup path.
pub const FRAME_SEPARATOR: u8 = 0xf5;

/// Fragment slots in the fuzzed parser: small, so collisions and eviction are reached too.
const FRAGMENT_SLOTS: usize = 16;

/// Frame parsing + keying: input is one selector byte (index into [`LINKS`], modulo) and frames
/// split on [`FRAME_SEPARATOR`]. Invariants: no panic; every key round-trips through its codec;
/// parsing is deterministic (a fresh parser given the same frames returns the same results).
pub fn parse_frame(data: &[u8]) {
    let Some((&selector, frames)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(selector) % LINKS.len()];
    let mut parser = FrameParser::with_fragment_slots(FRAGMENT_SLOTS);
    let mut again = FrameParser::with_fragment_slots(FRAGMENT_SLOTS);
    let mut buf = [0u8; MAX_KEY_LEN];
    for frame in frames.split(|&b| b == FRAME_SEPARATOR) {
        let parsed = parser.parse(link, frame);
        assert_eq!(again.parse(link, frame), parsed, "parsing is deterministic");
        let bytes = parsed.key.encode(&mut buf);
        assert_eq!(FlowKey::decode(bytes), Ok(parsed.key), "key round-trip");
    }
}

/// Record value decoding: no panic; what decodes re-encodes to the same bytes, except reserved
/// flag bits, which the encoder never sets.
pub fn decode_value(data: &[u8]) {
    if let Ok(v) = RecordValue::decode(data) {
        let mut enc = ValueEncoder::new(v.node, v.interface);
        let again = enc.encode(&v.meta, v.frame);
        assert_eq!(again.len(), data.len(), "re-encoded length");
        assert_eq!(again[0], data[0], "version");
        assert_eq!(again[1], data[1] & 0x03, "flags");
        assert_eq!(&again[2..], &data[2..], "header, names and frame");
    }
}

/// Key decoding: no panic; what decodes re-encodes to exactly the same bytes (one encoding per
/// key, so byte-equal keys really are the same flow).
pub fn decode_key(data: &[u8]) {
    if let Ok(k) = FlowKey::decode(data) {
        assert_eq!(k.to_vec(), data, "key re-encodes to the same bytes");
    }
}
