//! The static identity file: the same members the Kubernetes source produces, written by hand
//! or exported from a cluster. Used for offline analysis of captures (`--enrichment file`) and
//! for tests without a cluster.
//!
//! ```yaml
//! pods:
//!   - namespace: shop
//!     name: web-7d9f8c6b5-x2x4q
//!     ips: [10.244.1.5, "fd00::5"]
//!     node: node-a
//!     workload: { kind: deployment, name: web }   # default: the pod itself (kind pod)
//!     from: "2026-11-26T10:00:00Z"                 # optional: RFC 3339 or ns since the epoch
//!     until: 1795000000000000000                  # optional: when the pod gave its IPs up
//!   - namespace: kube-system
//!     name: kube-proxy-abcde
//!     hostNetwork: true                            # resolves to its node; no IPs of its own
//!     node: node-a
//! services:
//!   - { namespace: shop, name: web, ips: [10.96.0.10] }
//! nodes:
//!   - { name: node-a, ips: [192.168.1.10] }
//! ```

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::identity::{Workload, WorkloadKind};
use crate::member::{Member, MemberKind, Update};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    // The cause is part of the message (not a `source()`), so it is printed once whatever
    // the caller's error formatting.
    #[error("cannot read identity file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("identity file {path}: {error}")]
    Parse {
        path: String,
        error: serde_yaml::Error,
    },
    #[error("identity file {path}: {what}")]
    Invalid { path: String, what: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    #[serde(default)]
    pub pods: Vec<PodEntry>,
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    /// Default: `namespace/name` plus the start time, so the same name can appear twice in
    /// time (a pod recreated with another IP).
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub workload: Option<WorkloadEntry>,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub from: Option<Timestamp>,
    #[serde(default)]
    pub until: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadEntry {
    pub kind: WorkloadKind,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub name: String,
    pub ips: Vec<IpAddr>,
}

/// A time as ns since the epoch, or an RFC 3339 UTC string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Timestamp {
    Nanos(u64),
    Text(String),
}

impl Timestamp {
    fn nanos(&self) -> Option<u64> {
        match self {
            Timestamp::Nanos(n) => Some(*n),
            Timestamp::Text(s) => parse_rfc3339(s),
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` into ns since the epoch (the
/// format of Kubernetes timestamps), `None` if it is not that or before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ns: i64 = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let (f, r2) = r.split_at(digits);
        let f = &f[..digits.min(9)];
        frac_ns = f.parse::<i64>().ok()? * 10i64.pow(9 - f.len() as u32);
        rest = r2;
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if rest.starts_with('+') { o } else { -o }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    let total = i128::from(secs) * 1_000_000_000 + i128::from(frac_ns);
    u64::try_from(total).ok()
}

impl IdentityFile {
    pub fn load(path: &Path) -> Result<IdentityFile, FileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| FileError::Read {
            path: name.clone(),
            error,
        })?;
        Self::parse(&text).map_err(|e| match e {
            FileError::Parse { error, .. } => FileError::Parse { path: name, error },
            FileError::Invalid { what, .. } => FileError::Invalid { path: name, what },
            other => other,
        })
    }

    /// Parses YAML (or JSON, which is YAML).
    pub fn parse(text: &str) -> Result<IdentityFile, FileError> {
        let file: IdentityFile = if text.trim().is_empty() {
            IdentityFile::default()
        } else {
            serde_yaml::from_str(text).map_err(|error| FileError::Parse {
                path: String::new(),
                error,
            })?
        };
        Ok(file)
    }

    /// The updates that load this file into an index: one resync per member kind.
    pub fn updates(&self) -> Result<Vec<Update>, FileError> {
        let invalid = |what: String| FileError::Invalid {
            path: String::new(),
            what,
        };
        let time = |t: &Option<Timestamp>,
                    field: &str,
                    who: &str|
         -> Result<Option<u64>, FileError> {
            match t {
                None => Ok(None),
                Some(t) => t.nanos().map(Some).ok_or_else(|| {
                    invalid(format!(
                        "{who}: `{field}` must be ns since the epoch or an RFC 3339 time like 2026-11-26T10:00:00Z"
                    ))
                }),
            }
        };
        let mut nodes: Vec<Member> = Vec::new();
        for n in &self.nodes {
            nodes.push(Member {
                uid: format!("node/{}", n.name),
                kind: MemberKind::Node,
                namespace: String::new(),
                name: n.name.clone(),
                workload: Workload::new("", &n.name, WorkloadKind::Node),
                node: n.name.clone(),
                ips: n.ips.clone(),
                from_ns: 0,
                until_ns: None,
                seen_ns: 0,
            });
        }
        let mut services = Vec::new();
        for s in &self.services {
            services.push(Member {
                uid: format!("service/{}/{}", s.namespace, s.name),
                kind: MemberKind::Service,
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                workload: Workload::new(&s.namespace, &s.name, WorkloadKind::Service),
                node: String::new(),
                ips: s.ips.clone(),
                from_ns: 0,
                until_ns: None,
                seen_ns: 0,
            });
        }
        let mut pods = Vec::new();
        for p in &self.pods {
            let who = format!("pod {}/{}", p.namespace, p.name);
            if p.host_network {
                if p.node.is_empty() {
                    return Err(invalid(format!(
                        "{who}: a hostNetwork pod needs its `node`"
                    )));
                }
                // Its traffic carries the node's addresses, which the node entry names.
                continue;
            }
            if p.ips.is_empty() {
                return Err(invalid(format!("{who}: `ips` is empty")));
            }
            let from = time(&p.from, "from", &who)?.unwrap_or(0);
            let until = time(&p.until, "until", &who)?;
            if until.is_some_and(|u| u <= from) {
                return Err(invalid(format!("{who}: `until` must be after `from`")));
            }
            let workload = match &p.workload {
                Some(w) => Workload::new(&p.namespace, &w.name, w.kind),
                None => Workload::new(&p.namespace, &p.name, WorkloadKind::Pod),
            };
            pods.push(Member {
                uid: p
                    .uid
                    .clone()
                    .unwrap_or_else(|| format!("pod/{}/{}@{from}", p.namespace, p.name)),
                kind: MemberKind::Pod,
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                workload,
                node: p.node.clone(),
                ips: p.ips.clone(),
                from_ns: from,
                until_ns: until,
                seen_ns: from,
            });
        }
        Ok(vec![
            Update::Resync {
                kind: MemberKind::Node,
                members: nodes,
                at_ns: 0,
            },
            Update::Resync {
                kind: MemberKind::Service,
                members: services,
                at_ns: 0,
            },
            Update::Resync {
                kind: MemberKind::Pod,
                members: pods,
                at_ns: 0,
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-26T10:00:00Z"),
            Some(1_795_687_200 * 1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T11:00:00.5+01:00"),
            Some(1_795_687_200 * 1_000_000_000 + 500_000_000)
        );
        for bad in [
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-11-26T10:00:00",
            "1969-12-31T23:59:59Z",
            "2026-11-26T10:00:00.Z",
            "2026-11-26T1x:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
