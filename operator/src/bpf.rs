//! BPF filter validation with libpcap, so a typo becomes an `InvalidFilter` condition instead
//! of probes crash-looping on every node.

use std::sync::Mutex;

/// Older libpcap releases keep parser state in globals; serialize compiles to be safe.
static PCAP_COMPILE: Mutex<()> = Mutex::new(());

/// Compiles `filter` for an Ethernet link. `Err` carries libpcap's message, e.g.
/// `syntax error`.
pub fn validate(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Ok(());
    }
    let _guard = PCAP_COMPILE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .map_err(|e| format!("libpcap unavailable: {e}"))?;
    cap.compile(filter, true)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_filters() {
        for f in [
            "",
            "tcp port 443",
            "udp and not port 53",
            "host 10.0.0.1 or net 192.168.0.0/16",
            "vlan and tcp",
        ] {
            assert_eq!(validate(f), Ok(()), "{f}");
        }
    }

    #[test]
    fn rejects_invalid_filters_with_libpcap_message() {
        for f in ["tcp prot 443", "host 999.1.1.1", "port"] {
            let err = validate(f).expect_err(f);
            assert!(!err.is_empty(), "{f}");
        }
    }
}
