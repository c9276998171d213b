//! Protocol names: the values of the `protocol` metric label. One definition for probe,
//! processor and dashboards.

use std::sync::LazyLock;

pub const UNPARSED: &str = "unparsed";
pub const ARP: &str = "arp";
pub const NON_IP: &str = "non-ip";

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Names for all 256 IP protocol numbers, built once so the hot path never formats.
static IP_PROTO_NAMES: LazyLock<[&'static str; 256]> = LazyLock::new(|| {
    std::array::from_fn(|n| match n {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        47 => "gre",
        58 => "icmpv6",
        132 => "sctp",
        // Leaked once per process: 256 short strings, so labels can be `&'static str`.
        n => Box::leak(format!("ip-{n}").into_boxed_str()),
    })
});

/// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `gre`, else `ip-N`.
#[inline]
pub fn ip_proto_name(proto: u8) -> &'static str {
    IP_PROTO_NAMES[usize::from(proto)]
}

/// `arp` for ARP, `non-ip` for every other EtherType.
#[inline]
pub fn ethertype_name(ethertype: u16) -> &'static str {
    if ethertype == ETHERTYPE_ARP {
        ARP
    } else {
        NON_IP
    }
}

/// Whether ports are meaningful for this IP protocol (TCP, UDP, SCTP).
#[inline]
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(ip_proto_name(6), "tcp");
        assert_eq!(ip_proto_name(58), "icmpv6");
        assert_eq!(ip_proto_name(89), "ip-89");
        assert_eq!(ip_proto_name(255), "ip-255");
        assert_eq!(ethertype_name(0x0806), "arp");
        assert_eq!(ethertype_name(0x88cc), "non-ip");
    }
}
