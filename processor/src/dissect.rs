//! L3/L4 dissection of a packet's frame, for the analyses that look past the flow key (TCP
//! state, DNS, HTTP, TLS): etherparse's lax slices (zero-copy: headers and payload are slices
//! of the record), from the link layer the probe recorded.
//!
//! Done at most once per packet, and only if an analysis asks ([`crate::engine::Packet::l4`]):
//! `flows` and `workloads` never do, so with only them enabled it costs nothing.
//! Lax: a frame truncated by the snap length still gives the headers it holds (the payload is
//! what was captured).

use etherparse::{EtherType, LaxSlicedPacket};

/// The frame's headers and payload, from link type `link_type` (the record's LINKTYPE), or
/// `None` when the link layer cannot be read.
pub fn dissect(link_type: u16, frame: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    match link_type {
        1 => LaxSlicedPacket::from_ethernet(frame).ok(),
        // Linux cooked v1: 16-byte header, protocol (EtherType) at 14.
        113 => Some(LaxSlicedPacket::from_ether_type(
            EtherType(be16(14)?),
            frame.get(16..)?,
        )),
        // Linux cooked v2: 20-byte header, protocol first.
        276 => Some(LaxSlicedPacket::from_ether_type(
            EtherType(be16(0)?),
            frame.get(20..)?,
        )),
        101 | 228 | 229 => LaxSlicedPacket::from_ip(frame).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TransportSlice};

    fn tcp_ip() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 1000, 65535)
            .syn()
            .write(&mut out, b"hello")
            .unwrap();
        out
    }

    fn tcp_of(p: &LaxSlicedPacket<'_>) -> (u16, u16, bool, Vec<u8>) {
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => (
                t.source_port(),
                t.destination_port(),
                t.syn(),
                t.payload().to_vec(),
            ),
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[test]
    fn every_link_type_the_probe_records() {
        let ip = tcp_ip();
        let mut eth = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        eth.extend_from_slice(&ip);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        for (link, frame) in [(1, &eth), (113, &sll), (276, &sll2), (101, &ip), (228, &ip)] {
            let p = dissect(link, frame).unwrap_or_else(|| panic!("link {link}"));
            assert_eq!(
                tcp_of(&p),
                (40000, 443, true, b"hello".to_vec()),
                "link {link}"
            );
        }
    }

    #[test]
    fn truncated_garbage_and_unknown_links_never_panic() {
        let ip = tcp_ip();
        // Cut inside the payload: the headers are still there, the payload is what was kept.
        let cut = dissect(101, &ip[..ip.len() - 2]).unwrap();
        assert_eq!(tcp_of(&cut).3, b"hel");
        assert!(dissect(1, &[0; 5]).is_none());
        assert!(dissect(113, &[0; 15]).is_none());
        assert!(dissect(276, &[0x08, 0x00]).is_none());
        assert!(dissect(101, &[0x45]).is_none());
        assert!(dissect(147, &ip).is_none());
        for n in 0..ip.len() {
            for link in [1u16, 113, 276, 101, 228, 229] {
                let _ = dissect(link, &ip[..n]);
            }
        }
    }
}
