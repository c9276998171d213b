//! The canonical flow key: the Kafka record key.
//!
//! Both directions of a flow give byte-identical keys, so they hash to the same partition.
//! Endpoint A is the lower `(address bytes, port)` of the two; the record value carries which
//! way the packet went.
//!
//! Encoding, version 1 (all integers big-endian so keys sort like their endpoints):
//!
//! | kind      | layout                                                              | bytes |
//! |-----------|---------------------------------------------------------------------|-------|
//! | unparsed  | `01 00`                                                             | 2     |
//! | non-IP    | `01 01` ethertype:u16 mac_a:[6] mac_b:[6]                           | 16    |
//! | IPv4      | `01 04` proto:u8 addr_a:[4] port_a:u16 addr_b:[4] port_b:u16        | 15    |
//! | IPv6      | `01 06` proto:u8 addr_a:[16] port_a:u16 addr_b:[16] port_b:u16      | 39    |

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::protocol;

/// Version byte leading every key.
pub const KEY_VERSION: u8 = 1;
/// Longest encoded key (IPv6).
pub const MAX_KEY_LEN: usize = 39;

/// What a key identifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum KeyKind {
    /// The frame could not be parsed far enough to name a flow.
    Unparsed = 0,
    /// A non-IP frame (ARP, LLDP, ...): keyed by EtherType and the two MAC addresses.
    NonIp = 1,
    Ipv4 = 4,
    Ipv6 = 6,
}

/// One side of a flow. For IPv4 only the first 4 address bytes are used, for non-IP the first 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u16,
}

impl Endpoint {
    pub fn v4(addr: [u8; 4], port: u16) -> Self {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr);
        Endpoint { addr: a, port }
    }

    pub fn v6(addr: [u8; 16], port: u16) -> Self {
        Endpoint { addr, port }
    }

    pub fn mac(mac: [u8; 6]) -> Self {
        let mut a = [0u8; 16];
        a[..6].copy_from_slice(&mac);
        Endpoint { addr: a, port: 0 }
    }
}

/// Which way a packet travelled relative to the canonical endpoint order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by endpoint A (the lower) to endpoint B.
    AToB,
    /// Sent by endpoint B to endpoint A.
    BToA,
}

/// A direction-normalized flow key. Fixed size, `Copy`, cheap to hash: the processor's table key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    kind: KeyKind,
    /// IP protocol number for IP keys, EtherType for non-IP keys, 0 when unparsed.
    proto: u16,
    a: Endpoint,
    b: Endpoint,
}

/// Why a key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty key")]
    Empty,
    #[error("unknown key version {0} (this build reads version {KEY_VERSION})")]
    UnknownVersion(u8),
    #[error("unknown key kind {0}")]
    UnknownKind(u8),
    #[error("key of kind {kind:?} must be {expected} bytes, got {got}")]
    BadLength {
        kind: KeyKind,
        expected: usize,
        got: usize,
    },
    #[error("key endpoints are not in canonical order")]
    NotCanonical,
}

impl FlowKey {
    /// The key of every frame that could not be parsed.
    pub const UNPARSED: FlowKey = FlowKey {
        kind: KeyKind::Unparsed,
        proto: 0,
        a: Endpoint {
            addr: [0; 16],
            port: 0,
        },
        b: Endpoint {
            addr: [0; 16],
            port: 0,
        },
    };

    /// Builds the canonical key from a packet's source and destination, returning the direction
    /// the packet travelled.
    #[inline]
    pub fn new(kind: KeyKind, proto: u16, src: Endpoint, dst: Endpoint) -> (FlowKey, Direction) {
        if kind == KeyKind::Unparsed {
            return (FlowKey::UNPARSED, Direction::AToB);
        }
        match cmp_endpoints(&src, &dst) {
            Ordering::Greater => (
                FlowKey {
                    kind,
                    proto,
                    a: dst,
                    b: src,
                },
                Direction::BToA,
            ),
            _ => (
                FlowKey {
                    kind,
                    proto,
                    a: src,
                    b: dst,
                },
                Direction::AToB,
            ),
        }
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// IP protocol number (IP keys only).
    pub fn ip_proto(&self) -> Option<u8> {
        match self.kind {
            KeyKind::Ipv4 | KeyKind::Ipv6 => Some(self.proto as u8),
            _ => None,
        }
    }

    /// EtherType (non-IP keys only).
    pub fn ethertype(&self) -> Option<u16> {
        (self.kind == KeyKind::NonIp).then_some(self.proto)
    }

    /// The lower endpoint.
    pub fn a(&self) -> &Endpoint {
        &self.a
    }

    /// The higher endpoint.
    pub fn b(&self) -> &Endpoint {
        &self.b
    }

    /// Endpoint A's address as an IP address (IP keys only).
    pub fn ip_a(&self) -> Option<IpAddr> {
        self.ip_of(&self.a)
    }

    /// Endpoint B's address as an IP address (IP keys only).
    pub fn ip_b(&self) -> Option<IpAddr> {
        self.ip_of(&self.b)
    }

    fn ip_of(&self, e: &Endpoint) -> Option<IpAddr> {
        match self.kind {
            KeyKind::Ipv4 => Some(IpAddr::V4(Ipv4Addr::new(
                e.addr[0], e.addr[1], e.addr[2], e.addr[3],
            ))),
            KeyKind::Ipv6 => Some(IpAddr::V6(Ipv6Addr::from(e.addr))),
            _ => None,
        }
    }

    /// The metric label for this key's protocol (`tcp`, `udp`, `ip-N`, `arp`, `non-ip`, `unparsed`).
    pub fn protocol_name(&self) -> &'static str {
        match self.kind {
            KeyKind::Unparsed => protocol::UNPARSED,
            KeyKind::NonIp => protocol::ethertype_name(self.proto),
            KeyKind::Ipv4 | KeyKind::Ipv6 => protocol::ip_proto_name(self.proto as u8),
        }
    }

    /// Encodes into `buf` and returns the used prefix. Never allocates.
    #[inline]
    pub fn encode<'b>(&self, buf: &'b mut [u8; MAX_KEY_LEN]) -> &'b [u8] {
        buf[0] = KEY_VERSION;
        buf[1] = self.kind as u8;
        let len = match self.kind {
            KeyKind::Unparsed => 2,
            KeyKind::NonIp => {
                buf[2..4].copy_from_slice(&self.proto.to_be_bytes());
                buf[4..10].copy_from_slice(&self.a.addr[..6]);
                buf[10..16].copy_from_slice(&self.b.addr[..6]);
                16
            }
            KeyKind::Ipv4 => {
                buf[2] = self.proto as u8;
                buf[3..7].copy_from_slice(&self.a.addr[..4]);
                buf[7..9].copy_from_slice(&self.a.port.to_be_bytes());
                buf[9..13].copy_from_slice(&self.b.addr[..4]);
                buf[13..15].copy_from_slice(&self.b.port.to_be_bytes());
                15
            }
            KeyKind::Ipv6 => {
                buf[2] = self.proto as u8;
                buf[3..19].copy_from_slice(&self.a.addr);
                buf[19..21].copy_from_slice(&self.a.port.to_be_bytes());
                buf[21..37].copy_from_slice(&self.b.addr);
                buf[37..39].copy_from_slice(&self.b.port.to_be_bytes());
                39
            }
        };
        &buf[..len]
    }

    /// Encodes into a new `Vec` (convenience for tests and cold paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = [0u8; MAX_KEY_LEN];
        self.encode(&mut buf).to_vec()
    }

    /// Decodes a key, checking version, length and canonical order.
    pub fn decode(bytes: &[u8]) -> Result<FlowKey, KeyError> {
        let (&version, rest) = bytes.split_first().ok_or(KeyError::Empty)?;
        if version != KEY_VERSION {
            return Err(KeyError::UnknownVersion(version));
        }
        let (&kind, _) = rest.split_first().ok_or(KeyError::Empty)?;
        let kind = match kind {
            0 => KeyKind::Unparsed,
            1 => KeyKind::NonIp,
            4 => KeyKind::Ipv4,
            6 => KeyKind::Ipv6,
            other => return Err(KeyError::UnknownKind(other)),
        };
        let expected = match kind {
            KeyKind::Unparsed => 2,
            KeyKind::NonIp => 16,
            KeyKind::Ipv4 => 15,
            KeyKind::Ipv6 => 39,
        };
        if bytes.len() != expected {
            return Err(KeyError::BadLength {
                kind,
                expected,
                got: bytes.len(),
            });
        }
        let be16 = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let key = match kind {
            KeyKind::Unparsed => return Ok(FlowKey::UNPARSED),
            KeyKind::NonIp => {
                let mut a = [0u8; 6];
                let mut b = [0u8; 6];
                a.copy_from_slice(&bytes[4..10]);
                b.copy_from_slice(&bytes[10..16]);
                FlowKey {
                    kind,
                    proto: be16(2),
                    a: Endpoint::mac(a),
                    b: Endpoint::mac(b),
                }
            }
            KeyKind::Ipv4 => {
                let mut a = [0u8; 4];
                let mut b = [0u8; 4];
                a.copy_from_slice(&bytes[3..7]);
                b.copy_from_slice(&bytes[9..13]);
                FlowKey {
                    kind,
                    proto: u16::from(bytes[2]),
                    a: Endpoint::v4(a, be16(7)),
                    b: Endpoint::v4(b, be16(13)),
                }
            }
            KeyKind::Ipv6 => {
                let mut a = [0u8; 16];
                let mut b = [0u8; 16];
                a.copy_from_slice(&bytes[3..19]);
                b.copy_from_slice(&bytes[21..37]);
                FlowKey {
                    kind,
                    proto: u16::from(bytes[2]),
                    a: Endpoint::v6(a, be16(19)),
                    b: Endpoint::v6(b, be16(37)),
                }
            }
        };
        if cmp_endpoints(&key.a, &key.b) == Ordering::Greater {
            return Err(KeyError::NotCanonical);
        }
        Ok(key)
    }
}

#[inline]
fn cmp_endpoints(x: &Endpoint, y: &Endpoint) -> Ordering {
    x.addr.cmp(&y.addr).then(x.port.cmp(&y.port))
}

/// `proto|addrA|portA|addrB|portB`, the notation of the conformance files.
impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            KeyKind::Unparsed => f.write_str("unparsed"),
            KeyKind::NonIp => {
                let m = |e: &Endpoint| {
                    format!(
                        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        e.addr[0], e.addr[1], e.addr[2], e.addr[3], e.addr[4], e.addr[5]
                    )
                };
                write!(
                    f,
                    "{}|{}|0|{}|0",
                    self.protocol_name(),
                    m(&self.a),
                    m(&self.b)
                )
            }
            KeyKind::Ipv4 | KeyKind::Ipv6 => {
                let (Some(a), Some(b)) = (self.ip_a(), self.ip_b()) else {
                    return Err(fmt::Error);
                };
                write!(
                    f,
                    "{}|{}|{}|{}|{}",
                    self.protocol_name(),
                    a,
                    self.a.port,
                    b,
                    self.b.port
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn endpoint_strategy(kind: KeyKind) -> impl Strategy<Value = Endpoint> {
        (any::<[u8; 16]>(), any::<u16>()).prop_map(move |(mut addr, port)| match kind {
            KeyKind::Ipv4 => {
                addr[4..].fill(0);
                Endpoint { addr, port }
            }
            KeyKind::NonIp => {
                addr[6..].fill(0);
                Endpoint { addr, port: 0 }
            }
            _ => Endpoint { addr, port },
        })
    }

    fn kind_strategy() -> impl Strategy<Value = KeyKind> {
        prop_oneof![
            Just(KeyKind::Ipv4),
            Just(KeyKind::Ipv6),
            Just(KeyKind::NonIp)
        ]
    }

    fn flow_strategy() -> impl Strategy<Value = (KeyKind, u16, Endpoint, Endpoint)> {
        kind_strategy().prop_flat_map(|kind| {
            let proto = if kind == KeyKind::NonIp {
                any::<u16>().boxed()
            } else {
                (0u16..=255).boxed()
            };
            (
                Just(kind),
                proto,
                endpoint_strategy(kind),
                endpoint_strategy(kind),
            )
        })
    }

    proptest! {
        #[test]
        fn both_directions_give_identical_keys((kind, proto, src, dst) in flow_strategy()) {
            let (k1, d1) = FlowKey::new(kind, proto, src, dst);
            let (k2, d2) = FlowKey::new(kind, proto, dst, src);
            prop_assert_eq!(k1, k2);
            prop_assert_eq!(k1.to_vec(), k2.to_vec());
            if src != dst {
                prop_assert_ne!(d1, d2);
            }
        }

        #[test]
        fn encode_decode_round_trips((kind, proto, src, dst) in flow_strategy()) {
            let (k, _) = FlowKey::new(kind, proto, src, dst);
            let bytes = k.to_vec();
            prop_assert_eq!(FlowKey::decode(&bytes), Ok(k));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = FlowKey::decode(&bytes);
        }
    }

    #[test]
    fn lower_endpoint_is_a() {
        let (k, d) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([10, 0, 0, 2], 80),
            Endpoint::v4([10, 0, 0, 1], 40000),
        );
        assert_eq!(d, Direction::BToA);
        assert_eq!(k.to_string(), "tcp|10.0.0.1|40000|10.0.0.2|80");
        // Same address: the port breaks the tie.
        let (k, d) = FlowKey::new(
            KeyKind::Ipv4,
            17,
            Endpoint::v4([127, 0, 0, 1], 5000),
            Endpoint::v4([127, 0, 0, 1], 53),
        );
        assert_eq!(d, Direction::BToA);
        assert_eq!(k.to_string(), "udp|127.0.0.1|53|127.0.0.1|5000");
    }

    #[test]
    fn decode_rejects_bad_input() {
        assert_eq!(FlowKey::decode(&[]), Err(KeyError::Empty));
        assert_eq!(FlowKey::decode(&[9, 4]), Err(KeyError::UnknownVersion(9)));
        assert_eq!(FlowKey::decode(&[1, 7]), Err(KeyError::UnknownKind(7)));
        assert!(matches!(
            FlowKey::decode(&[1, 4, 6, 1, 2]),
            Err(KeyError::BadLength { expected: 15, .. })
        ));
        let (k, _) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([1, 1, 1, 1], 1),
            Endpoint::v4([2, 2, 2, 2], 2),
        );
        let mut bytes = k.to_vec();
        bytes.swap(3, 9); // swap first address bytes: B < A now
        assert_eq!(FlowKey::decode(&bytes), Err(KeyError::NotCanonical));
        assert_eq!(FlowKey::decode(&[1, 0]), Ok(FlowKey::UNPARSED));
    }
}
