//! The Kafka record value: a small fixed header, the probe's names, then the captured frame.
//!
//! Version 1 layout (integers little-endian, the byte order of every machine we run on):
//!
//! | offset | size | field                                                               |
//! |--------|------|---------------------------------------------------------------------|
//! | 0      | 1    | version (`1`)                                                       |
//! | 1      | 1    | flags: bit 0 = direction B→A; bit 1 = TCP SYN without ACK (the sender opens the flow); other bits reserved, written as 0 |
//! | 2      | 2    | link type (`LINKTYPE_*` number: 1 Ethernet, 113 SLL, 276 SLL2, 101 raw IP, 228 IPv4, 229 IPv6) |
//! | 4      | 4    | wire length: the frame's length on the wire (count bytes by this)   |
//! | 8      | 8    | capture timestamp, ns since the Unix epoch                          |
//! | 16     | 1    | node name length N                                                  |
//! | 17     | 1    | interface name length M                                             |
//! | 18     | N    | node name (UTF-8)                                                   |
//! | 18+N   | M    | interface name (UTF-8)                                              |
//! | 18+N+M | ...  | captured frame bytes (may be shorter than the wire length: snaplen) |
//!
//! Why a fixed header rather than Kafka record headers: librdkafka allocates every header of
//! every message separately and the consumer must walk them by name; the header here is read
//! with a few bounds-checked loads and costs 18 bytes plus the names (which compress away
//! under lz4 since they repeat in every record of a batch).

use crate::key::Direction;

pub const VALUE_VERSION: u8 = 1;
/// Size of the fixed part of the header.
pub const FIXED_HEADER_LEN: usize = 18;
const FLAG_B_TO_A: u8 = 0x01;
const FLAG_TCP_SYN: u8 = 0x02;

/// Per-packet metadata carried in the value header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    pub direction: Direction,
    /// TCP SYN without ACK: the sender is the flow's initiator.
    pub tcp_syn: bool,
    pub link_type: u16,
    pub wire_len: u32,
    pub ts_ns: u64,
}

/// A decoded record value, borrowing from the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordValue<'a> {
    pub meta: PacketMeta,
    pub node: &'a str,
    pub interface: &'a str,
    pub frame: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("empty value")]
    Empty,
    #[error("unknown value version {0} (this build reads version {VALUE_VERSION})")]
    UnknownVersion(u8),
    #[error("value truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    #[error("node or interface name is not UTF-8")]
    BadName,
}

impl ValueError {
    /// Short stable label for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            ValueError::Empty => "empty_value",
            ValueError::UnknownVersion(_) => "unknown_value_version",
            ValueError::Truncated { .. } => "truncated_value",
            ValueError::BadName => "bad_value_name",
        }
    }
}

/// Writes values for one capture source, reusing one buffer: no allocation per packet once the
/// buffer has grown to the largest frame.
#[derive(Debug, Clone)]
pub struct ValueEncoder {
    buf: Vec<u8>,
    /// Offset where the frame starts (after the names).
    prefix_len: usize,
}

impl ValueEncoder {
    /// Names longer than 255 bytes are cut at a character boundary.
    pub fn new(node: &str, interface: &str) -> Self {
        let node = truncate_utf8(node, 255);
        let interface = truncate_utf8(interface, 255);
        let mut buf = Vec::with_capacity(FIXED_HEADER_LEN + node.len() + interface.len() + 2048);
        buf.resize(FIXED_HEADER_LEN, 0);
        buf[0] = VALUE_VERSION;
        buf[16] = node.len() as u8;
        buf[17] = interface.len() as u8;
        buf.extend_from_slice(node.as_bytes());
        buf.extend_from_slice(interface.as_bytes());
        let prefix_len = buf.len();
        ValueEncoder { buf, prefix_len }
    }

    /// Encodes one record value and returns it.
    #[inline]
    pub fn encode(&mut self, meta: &PacketMeta, frame: &[u8]) -> &[u8] {
        self.buf.truncate(self.prefix_len);
        self.buf[1] = match meta.direction {
            Direction::AToB => 0,
            Direction::BToA => FLAG_B_TO_A,
        } | if meta.tcp_syn { FLAG_TCP_SYN } else { 0 };
        self.buf[2..4].copy_from_slice(&meta.link_type.to_le_bytes());
        self.buf[4..8].copy_from_slice(&meta.wire_len.to_le_bytes());
        self.buf[8..16].copy_from_slice(&meta.ts_ns.to_le_bytes());
        self.buf.extend_from_slice(frame);
        &self.buf
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl<'a> RecordValue<'a> {
    /// Decodes a value without copying.
    pub fn decode(bytes: &'a [u8]) -> Result<RecordValue<'a>, ValueError> {
        let h = Header::parse(bytes)?;
        let (node, interface) = h.names.split_at(h.node_len);
        let node = std::str::from_utf8(node).map_err(|_| ValueError::BadName)?;
        let interface = std::str::from_utf8(interface).map_err(|_| ValueError::BadName)?;
        Ok(RecordValue {
            meta: h.meta,
            node,
            interface,
            frame: h.frame,
        })
    }

    /// Decodes the metadata and frame of a value, for consumers that do not read the node and
    /// interface names: they are still checked (a record with names that are not UTF-8 is
    /// invalid), but through `names`, which validates a pair of names once while it repeats.
    #[inline]
    pub fn decode_meta(
        bytes: &'a [u8],
        names: &mut NameCheck,
    ) -> Result<(PacketMeta, &'a [u8]), ValueError> {
        let h = Header::parse(bytes)?;
        names.check(h.names, h.node_len)?;
        Ok((h.meta, h.frame))
    }
}

/// The fixed header of a value, the name bytes and the frame.
struct Header<'a> {
    meta: PacketMeta,
    /// Node name then interface name.
    names: &'a [u8],
    node_len: usize,
    frame: &'a [u8],
}

impl<'a> Header<'a> {
    #[inline]
    fn parse(bytes: &'a [u8]) -> Result<Header<'a>, ValueError> {
        let &version = bytes.first().ok_or(ValueError::Empty)?;
        if version != VALUE_VERSION {
            return Err(ValueError::UnknownVersion(version));
        }
        if bytes.len() < FIXED_HEADER_LEN {
            return Err(ValueError::Truncated {
                needed: FIXED_HEADER_LEN,
                got: bytes.len(),
            });
        }
        let node_len = usize::from(bytes[16]);
        let iface_len = usize::from(bytes[17]);
        let frame_at = FIXED_HEADER_LEN + node_len + iface_len;
        if bytes.len() < frame_at {
            return Err(ValueError::Truncated {
                needed: frame_at,
                got: bytes.len(),
            });
        }
        let direction = if bytes[1] & FLAG_B_TO_A != 0 {
            Direction::BToA
        } else {
            Direction::AToB
        };
        Ok(Header {
            meta: PacketMeta {
                direction,
                tcp_syn: bytes[1] & FLAG_TCP_SYN != 0,
                link_type: u16::from_le_bytes([bytes[2], bytes[3]]),
                wire_len: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
                ts_ns: u64::from_le_bytes([
                    bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14],
                    bytes[15],
                ]),
            },
            names: &bytes[FIXED_HEADER_LEN..frame_at],
            node_len,
            frame: &bytes[frame_at..],
        })
    }
}

/// The last node and interface names found valid. A consumer reads records from few probes,
/// so the names repeat: comparing bytes is cheaper than validating UTF-8 again (which was 187
/// of the 433 instructions of the processor's decode per record,
/// bench/results/profile-2026-11-26.md). Fixed-size: nothing is allocated.
#[derive(Clone)]
pub struct NameCheck {
    last: [u8; 2 * u8::MAX as usize],
    len: usize,
    node_len: usize,
}

impl Default for NameCheck {
    fn default() -> Self {
        NameCheck {
            last: [0; 2 * u8::MAX as usize],
            len: usize::MAX, // matches nothing
            node_len: 0,
        }
    }
}

impl std::fmt::Debug for NameCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameCheck").field("len", &self.len).finish()
    }
}

impl NameCheck {
    /// Whether `names` (node name then interface name, split at `node_len`) are UTF-8.
    #[inline]
    fn check(&mut self, names: &[u8], node_len: usize) -> Result<(), ValueError> {
        if names.len() == self.len && node_len == self.node_len && *names == self.last[..self.len] {
            return Ok(());
        }
        let (node, interface) = names.split_at(node_len);
        if std::str::from_utf8(node).is_err() || std::str::from_utf8(interface).is_err() {
            return Err(ValueError::BadName);
        }
        // Both names are at most u8::MAX bytes (their lengths are bytes of the header).
        self.last[..names.len()].copy_from_slice(names);
        self.len = names.len();
        self.node_len = node_len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_meta_checks_names_once_while_they_repeat_and_always_rejects_bad_ones() {
        let meta = PacketMeta {
            direction: Direction::BToA,
            tcp_syn: true,
            link_type: 1,
            wire_len: 60,
            ts_ns: 7,
        };
        let mut names = NameCheck::default();
        let mut enc = ValueEncoder::new("node-a", "eth0");
        let good = enc.encode(&meta, b"frame").to_vec();
        for _ in 0..3 {
            assert_eq!(
                RecordValue::decode_meta(&good, &mut names),
                Ok((meta, &b"frame"[..]))
            );
        }
        // Same lengths, other bytes, one of them not UTF-8: still caught after a cached pair.
        let mut bad = good.clone();
        bad[FIXED_HEADER_LEN + 1] = 0xff;
        assert_eq!(
            RecordValue::decode_meta(&bad, &mut names),
            Err(ValueError::BadName)
        );
        assert_eq!(
            RecordValue::decode(&bad).map(|_| ()),
            Err(ValueError::BadName)
        );
        // The same bytes split differently between node and interface are another pair.
        let mut enc2 = ValueEncoder::new("node-ae", "th0");
        let other = enc2.encode(&meta, b"frame").to_vec();
        assert_eq!(
            RecordValue::decode_meta(&other, &mut names),
            Ok((meta, &b"frame"[..]))
        );
        assert_eq!(
            RecordValue::decode_meta(&good, &mut names),
            Ok((meta, &b"frame"[..]))
        );
        assert_eq!(
            RecordValue::decode_meta(&good[..10], &mut names),
            Err(ValueError::Truncated {
                needed: FIXED_HEADER_LEN,
                got: 10
            })
        );
    }
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(
            node in "[a-z0-9.-]{0,40}",
            iface in "[a-z0-9@.-]{0,15}",
            b_to_a in any::<bool>(),
            tcp_syn in any::<bool>(),
            link_type in any::<u16>(),
            wire_len in any::<u32>(),
            ts_ns in any::<u64>(),
            frame in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let meta = PacketMeta {
                direction: if b_to_a { Direction::BToA } else { Direction::AToB },
                tcp_syn,
                link_type, wire_len, ts_ns,
            };
            let mut enc = ValueEncoder::new(&node, &iface);
            let bytes = enc.encode(&meta, &frame).to_vec();
            let v = RecordValue::decode(&bytes).unwrap();
            prop_assert_eq!(v.meta, meta);
            prop_assert_eq!(v.node, node.as_str());
            prop_assert_eq!(v.interface, iface.as_str());
            prop_assert_eq!(v.frame, frame.as_slice());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RecordValue::decode(&bytes);
        }
    }

    #[test]
    fn encoder_reuse_does_not_leak_previous_frame() {
        let meta = PacketMeta {
            direction: Direction::AToB,
            tcp_syn: false,
            link_type: 1,
            wire_len: 60,
            ts_ns: 1,
        };
        let mut enc = ValueEncoder::new("node-1", "eth0");
        let long = enc.encode(&meta, &[7u8; 100]).len();
        let short = enc.encode(&meta, &[9u8; 10]).to_vec();
        assert_eq!(long, FIXED_HEADER_LEN + 10 + 100);
        let v = RecordValue::decode(&short).unwrap();
        assert_eq!(v.frame, &[9u8; 10]);
        assert_eq!(v.node, "node-1");
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(RecordValue::decode(&[]), Err(ValueError::Empty));
        assert_eq!(
            RecordValue::decode(&[2, 0, 0]),
            Err(ValueError::UnknownVersion(2))
        );
        assert!(matches!(
            RecordValue::decode(&[1, 0, 0]),
            Err(ValueError::Truncated { .. })
        ));
        let mut v = vec![1u8; FIXED_HEADER_LEN];
        v[0] = 1;
        v[16] = 200;
        assert!(matches!(
            RecordValue::decode(&v),
            Err(ValueError::Truncated { needed, .. }) if needed == FIXED_HEADER_LEN + 201
        ));
        let long = "ü".repeat(200);
        let mut enc = ValueEncoder::new(&long, "x");
        let meta = PacketMeta {
            direction: Direction::AToB,
            tcp_syn: false,
            link_type: 1,
            wire_len: 0,
            ts_ns: 0,
        };
        let bytes = enc.encode(&meta, &[]).to_vec();
        let decoded = RecordValue::decode(&bytes).unwrap();
        assert!(decoded.node.len() <= 255 && decoded.node.chars().all(|c| c == 'ü'));
    }
}
