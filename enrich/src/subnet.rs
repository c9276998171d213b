//! User-named CIDRs (`--subnet-label 10.0.0.0/8=corp`): names for addresses outside the cluster.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One `CIDR=NAME` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetLabel {
    network: IpAddr,
    prefix: u8,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("`{0}` is not CIDR=NAME (e.g. 10.0.0.0/8=corp)")]
    Form(String),
    #[error("`{0}` is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)")]
    Network(String),
    #[error("prefix length /{prefix} is too long for `{network}` (at most /{max})")]
    Prefix {
        network: String,
        prefix: u8,
        max: u8,
    },
    #[error(
        "subnet name `{0}` must be 1-63 characters of letters, digits, '-', '_' or '.' (it becomes a label value)"
    )]
    Name(String),
}

impl SubnetLabel {
    pub fn new(cidr: &str, name: &str) -> Result<SubnetLabel, SubnetError> {
        let (addr, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| SubnetError::Network(cidr.to_string()))?;
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| SubnetError::Network(cidr.to_string()))?;
        let prefix: u8 = prefix
            .trim()
            .parse()
            .map_err(|_| SubnetError::Network(cidr.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(SubnetError::Prefix {
                network: cidr.to_string(),
                prefix,
                max,
            });
        }
        let name = name.trim();
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(SubnetError::Name(name.to_string()));
        }
        Ok(SubnetLabel {
            network: mask(addr, prefix),
            prefix,
            name: name.to_string(),
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address is the IPv4 address for naming purposes.
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for SubnetLabel {
    type Err = SubnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (cidr, name) = s
            .split_once('=')
            .ok_or_else(|| SubnetError::Form(s.to_string()))?;
        SubnetLabel::new(cidr, name)
    }
}

impl fmt::Display for SubnetLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.network, self.prefix, self.name)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
#[inline]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// The user's subnets, most specific first, so the first match is the longest prefix.
/// Matching is on integers per family (no `IpAddr` on the count path's miss).
#[derive(Clone, Debug, Default)]
pub struct Subnets {
    labels: Vec<SubnetLabel>,
    /// (network, mask, position in `labels`), most specific first.
    v4: Vec<(u32, u32, usize)>,
    v6: Vec<(u128, u128, usize)>,
}

impl Subnets {
    pub fn new(mut labels: Vec<SubnetLabel>) -> Subnets {
        labels.sort_by_key(|l| std::cmp::Reverse(l.prefix));
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            match l.network {
                IpAddr::V4(n) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(l.prefix)).unwrap_or(0);
                    v4.push((u32::from(n), mask, i));
                }
                IpAddr::V6(n) => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(l.prefix))
                        .unwrap_or(0);
                    v6.push((u128::from(n), mask, i));
                }
            }
        }
        Subnets { labels, v4, v6 }
    }

    /// The index (in [`Subnets::labels`]) of the longest prefix containing `ip`.
    pub fn find(&self, ip: IpAddr) -> Option<usize> {
        match canonical(ip) {
            IpAddr::V4(v4) => self.find_v4(u32::from(v4)),
            IpAddr::V6(v6) => self.find_v6(u128::from(v6)),
        }
    }

    #[inline]
    pub fn find_v4(&self, addr: u32) -> Option<usize> {
        self.v4
            .iter()
            .find(|(net, mask, _)| addr & mask == *net)
            .map(|&(_, _, i)| i)
    }

    /// IPv6 (not IPv4-mapped: see [`Subnets::find`]).
    #[inline]
    pub fn find_v6(&self, addr: u128) -> Option<usize> {
        self.v6
            .iter()
            .find(|(net, mask, _)| addr & mask == *net)
            .map(|&(_, _, i)| i)
    }

    pub fn labels(&self) -> &[SubnetLabel] {
        &self.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_longest_prefix() {
        let s = Subnets::new(vec![
            "10.0.0.0/8=corp".parse().unwrap(),
            "10.1.2.0/24=lab".parse().unwrap(),
            "fd00::/8=ula".parse().unwrap(),
        ]);
        let name = |ip: &str| {
            s.find(ip.parse().unwrap())
                .map(|i| s.labels()[i].name.as_str())
        };
        assert_eq!(name("10.1.2.3"), Some("lab"));
        assert_eq!(name("10.9.9.9"), Some("corp"));
        assert_eq!(name("::ffff:10.9.9.9"), Some("corp"));
        assert_eq!(name("fd12::1"), Some("ula"));
        assert_eq!(name("192.168.1.1"), None);
    }

    #[test]
    fn host_bits_are_masked_and_bad_input_is_named() {
        let l: SubnetLabel = "10.1.2.3/16=x".parse().unwrap();
        assert_eq!(l.to_string(), "10.1.0.0/16=x");
        assert!(matches!(
            "10.0.0.0/8".parse::<SubnetLabel>(),
            Err(SubnetError::Form(_))
        ));
        assert!(matches!(
            "10.0.0/8=a".parse::<SubnetLabel>(),
            Err(SubnetError::Network(_))
        ));
        assert!(matches!(
            "10.0.0.0/33=a".parse::<SubnetLabel>(),
            Err(SubnetError::Prefix { .. })
        ));
        assert!(matches!(
            "10.0.0.0/8=a b".parse::<SubnetLabel>(),
            Err(SubnetError::Name(_))
        ));
        assert!(matches!(
            "10.0.0.0/8=".parse::<SubnetLabel>(),
            Err(SubnetError::Name(_))
        ));
        let all: SubnetLabel = "0.0.0.0/0=internet".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
    }
}
