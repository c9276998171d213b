//! Frame parsing + keying on arbitrary bytes, for every link type, with a small fragment table
//! so fragment paths are reached. Invariants: no panic; the key round-trips through its codec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstream_wire::{FlowKey, FrameParser, LinkType, MAX_KEY_LEN};

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frames)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(selector) % LINKS.len()];
    let mut parser = FrameParser::with_fragment_slots(16);
    let mut buf = [0u8; MAX_KEY_LEN];
    // Several frames per input (split on a marker) so a first fragment can precede a later one.
    for frame in frames.split(|&b| b == 0xf5) {
        let parsed = parser.parse(link, frame);
        let bytes = parsed.key.encode(&mut buf);
        assert_eq!(FlowKey::decode(bytes), Ok(parsed.key));
    }
});
