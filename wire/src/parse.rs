//! Frame parsing: link layer → canonical flow key.
//!
//! What counts as a flow (the contract the expected counts in the tests follow):
//! - Only the outermost IP header counts. Tunnels (GRE, IP-in-IP, VXLAN, ...) are one flow of
//!   the outer protocol, whatever they carry.
//! - The protocol is the first header after the outer IP header and its extension headers
//!   (IPv6 hop-by-hop, routing, fragment, destination options, and AH for IPv4 and IPv6).
//! - Ports come from TCP, UDP and SCTP only; every other protocol has ports 0.
//! - Non-first IP fragments belong to the flow of their first fragment when it came earlier
//!   (see [`crate::frag`]); otherwise they get ports 0.
//! - 802.1Q / 802.1ad / QinQ tags are skipped at any depth; 802.3 frames with an LLC/SNAP
//!   header (RFC 1042 OUI) are followed to their EtherType.
//! - Frames that are not IP are keyed by EtherType and MAC addresses (`arp` or `non-ip`);
//!   802.3/LLC frames without SNAP use EtherType 0.
//! - Frames that claim to be IP (EtherType 0x0800/0x86dd, or raw-IP link types) whose IP header
//!   cannot be read, or whose IP version does not match the EtherType, and frames too short for
//!   their link-layer header, are `unparsed`.
//!
//! Link-layer framing is walked by hand (a handful of bounds-checked loads); IP and its
//! extension headers are read with etherparse's lax slices. Nothing here allocates.

use etherparse::{Ipv6ExtensionSlice, LaxIpv4Slice, LaxIpv6Slice};

use crate::frag::{FragId, FragmentTable};
use crate::key::{Direction, Endpoint, FlowKey, KeyKind};
use crate::protocol::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, has_ports};

/// The link types netstream reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113), Linux "cooked" capture v1 (`-i any` on older libpcap).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276), Linux "cooked" capture v2.
    LinuxSll2,
    /// LINKTYPE_RAW (101; DLT_RAW is 12 or 14 depending on the OS): IPv4 or IPv6 by version.
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
}

/// A link type netstream cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported link type {0}: netstream reads Ethernet (1), Linux cooked SLL (113) and SLL2 (276), and raw IP (101, 228, 229)"
)]
pub struct UnsupportedLinkType(pub u32);

impl LinkType {
    /// From a libpcap DLT or a LINKTYPE number. The upper bits of a pcap file's link-type field
    /// (FCS length and flags) are masked off, as libpcap does.
    pub fn from_dlt(dlt: u32) -> Result<LinkType, UnsupportedLinkType> {
        match dlt & 0x03FF_FFFF {
            1 => Ok(LinkType::Ethernet),
            113 => Ok(LinkType::LinuxSll),
            276 => Ok(LinkType::LinuxSll2),
            12 | 14 | 101 => Ok(LinkType::RawIp),
            228 => Ok(LinkType::Ipv4),
            229 => Ok(LinkType::Ipv6),
            other => Err(UnsupportedLinkType(other)),
        }
    }

    /// The LINKTYPE number written into records.
    pub fn linktype(self) -> u16 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
        }
    }
}

/// The result of parsing one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub key: FlowKey,
    pub direction: Direction,
    /// A TCP SYN without ACK: the sender opens the connection (the flow's initiator).
    pub tcp_syn: bool,
}

impl Parsed {
    const UNPARSED: Parsed = Parsed {
        key: FlowKey::UNPARSED,
        direction: Direction::AToB,
        tcp_syn: false,
    };
}

/// Parses frames into flow keys. Holds the fragment table, so keep one per capture source.
#[derive(Default)]
pub struct FrameParser {
    frags: FragmentTable,
}

const VLAN_TPIDS: [u16; 4] = [0x8100, 0x88a8, 0x9100, 0x9200];
const MAX_8023_LENGTH: u16 = 1500;

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
fn mac(b: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    if let Some(s) = b.get(at..at + 6) {
        m.copy_from_slice(s);
    }
    m
}

impl FrameParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// With a fragment table of `slots` entries (rounded up to a power of two).
    pub fn with_fragment_slots(slots: usize) -> Self {
        FrameParser {
            frags: FragmentTable::with_slots(slots),
        }
    }

    /// Parses one captured frame (possibly truncated by snaplen). Never panics.
    #[inline]
    pub fn parse(&mut self, link: LinkType, frame: &[u8]) -> Parsed {
        match link {
            LinkType::Ethernet => {
                let Some(ethertype) = be16(frame, 12) else {
                    return Parsed::UNPARSED;
                };
                let src = mac(frame, 6);
                let dst = mac(frame, 0);
                self.ethertype_chain(ethertype, frame, 14, src, dst)
            }
            LinkType::LinuxSll => {
                // packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2)
                let Some(protocol) = be16(frame, 14) else {
                    return Parsed::UNPARSED;
                };
                self.ethertype_chain(protocol, frame, 16, mac(frame, 6), [0; 6])
            }
            LinkType::LinuxSll2 => {
                // protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) addr len(1) addr(8)
                if frame.len() < 20 {
                    return Parsed::UNPARSED;
                }
                let Some(protocol) = be16(frame, 0) else {
                    return Parsed::UNPARSED;
                };
                self.ethertype_chain(protocol, frame, 20, mac(frame, 12), [0; 6])
            }
            LinkType::RawIp => match frame.first().map(|b| b >> 4) {
                Some(4) => self.ipv4(frame),
                Some(6) => self.ipv6(frame),
                _ => Parsed::UNPARSED,
            },
            LinkType::Ipv4 => self.ipv4(frame),
            LinkType::Ipv6 => self.ipv6(frame),
        }
    }

    /// Follows VLAN tags and LLC/SNAP from `ethertype` (read just before `off`) to the network
    /// layer.
    #[inline]
    fn ethertype_chain(
        &mut self,
        mut ethertype: u16,
        frame: &[u8],
        mut off: usize,
        src: [u8; 6],
        dst: [u8; 6],
    ) -> Parsed {
        if frame.len() < off {
            return Parsed::UNPARSED;
        }
        loop {
            if VLAN_TPIDS.contains(&ethertype) {
                // TCI(2) then the inner EtherType.
                match be16(frame, off + 2) {
                    Some(inner) => {
                        ethertype = inner;
                        off += 4;
                    }
                    None => return Parsed::UNPARSED,
                }
            } else if ethertype <= MAX_8023_LENGTH {
                // 802.3 length field: an LLC header follows. Only SNAP with the RFC 1042 OUI
                // carries an EtherType worth following.
                let snap = frame.get(off..off + 8);
                match snap {
                    Some([0xaa, 0xaa, 0x03, 0, 0, 0, hi, lo]) => {
                        ethertype = u16::from_be_bytes([*hi, *lo]);
                        off += 8;
                    }
                    _ => return non_ip(0, src, dst),
                }
            } else {
                break;
            }
        }
        let payload = &frame[off.min(frame.len())..];
        match ethertype {
            ETHERTYPE_IPV4 => self.ipv4(payload),
            ETHERTYPE_IPV6 => self.ipv6(payload),
            other => non_ip(other, src, dst),
        }
    }

    #[inline]
    fn ipv4(&mut self, p: &[u8]) -> Parsed {
        if p.first().map(|b| b >> 4) != Some(4) {
            return Parsed::UNPARSED;
        }
        let Ok((ip, _auth_err)) = LaxIpv4Slice::from_slice(p) else {
            return Parsed::UNPARSED;
        };
        let h = ip.header();
        let payload = ip.payload();
        let proto = payload.ip_number.0;
        let (src, dst) = (h.source(), h.destination());
        let frag = payload.fragmented.then(|| {
            (
                FragId {
                    src: Endpoint::v4(src, 0).addr,
                    dst: Endpoint::v4(dst, 0).addr,
                    proto,
                    id: u32::from(h.identification()),
                },
                h.fragments_offset().value(),
            )
        });
        let (sport, dport) = self.ports(proto, payload.payload, frag);
        let tcp_syn = is_tcp_syn(proto, payload.payload, frag.is_some_and(|(_, off)| off > 0));
        let (key, direction) = FlowKey::new(
            KeyKind::Ipv4,
            u16::from(proto),
            Endpoint::v4(src, sport),
            Endpoint::v4(dst, dport),
        );
        Parsed {
            key,
            direction,
            tcp_syn,
        }
    }

    #[inline]
    fn ipv6(&mut self, p: &[u8]) -> Parsed {
        if p.first().map(|b| b >> 4) != Some(6) {
            return Parsed::UNPARSED;
        }
        let Ok((ip, _ext_err)) = LaxIpv6Slice::from_slice(p) else {
            return Parsed::UNPARSED;
        };
        let h = ip.header();
        let payload = ip.payload();
        let proto = payload.ip_number.0;
        let (src, dst) = (h.source(), h.destination());
        let frag = if payload.fragmented {
            ip.extensions()
                .clone()
                .into_iter()
                .find_map(|ext| match ext {
                    Ipv6ExtensionSlice::Fragment(f) => Some((
                        FragId {
                            src,
                            dst,
                            proto,
                            id: f.identification(),
                        },
                        f.fragment_offset().value(),
                    )),
                    _ => None,
                })
        } else {
            None
        };
        let (sport, dport) = self.ports(proto, payload.payload, frag);
        let tcp_syn = is_tcp_syn(proto, payload.payload, frag.is_some_and(|(_, off)| off > 0));
        let (key, direction) = FlowKey::new(
            KeyKind::Ipv6,
            u16::from(proto),
            Endpoint::v6(src, sport),
            Endpoint::v6(dst, dport),
        );
        Parsed {
            key,
            direction,
            tcp_syn,
        }
    }

    /// Transport ports, through the fragment table for fragments. `frag` is the datagram
    /// identity and fragment offset when the IP payload is fragmented.
    #[inline]
    fn ports(&mut self, proto: u8, l4: &[u8], frag: Option<(FragId, u16)>) -> (u16, u16) {
        if !has_ports(proto) {
            return (0, 0);
        }
        match frag {
            Some((id, offset)) if offset > 0 => self.frags.get(&id).unwrap_or((0, 0)),
            Some((id, _first)) => {
                let ports = read_ports(l4);
                self.frags.insert(id, ports);
                ports
            }
            None => read_ports(l4),
        }
    }
}

/// TCP, UDP and SCTP all start with source port then destination port. A header cut short
/// keeps whatever port bytes it has.
#[inline]
fn read_ports(l4: &[u8]) -> (u16, u16) {
    (be16(l4, 0).unwrap_or(0), be16(l4, 2).unwrap_or(0))
}

#[inline]
fn non_ip(ethertype: u16, src: [u8; 6], dst: [u8; 6]) -> Parsed {
    let (key, direction) = FlowKey::new(
        KeyKind::NonIp,
        ethertype,
        Endpoint::mac(src),
        Endpoint::mac(dst),
    );
    Parsed {
        key,
        direction,
        tcp_syn: false,
    }
}

/// SYN set and ACK clear in a TCP header that starts the IP payload.
#[inline]
fn is_tcp_syn(proto: u8, l4: &[u8], later_fragment: bool) -> bool {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    proto == 6 && !later_fragment && l4.get(13).is_some_and(|f| f & (SYN | ACK) == SYN)
}
