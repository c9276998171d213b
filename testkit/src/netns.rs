//! A network namespace with a veth pair into it, for live-capture tests and benchmarks: the host
//! end gets 198.18.0.1/30, the namespace end 198.18.0.2/30 (198.18.0.0/15 is the RFC 2544
//! benchmarking range: it routes nowhere else). Removed on drop. Needs root or CAP_NET_ADMIN.

use std::process::Command;

/// Runs `ip ARGS`, returning its stderr as the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub struct Netns {
    /// The namespace name (for `ip netns exec`).
    pub ns: String,
    /// The veth end in this namespace (198.18.0.1): where the probe captures.
    pub host_if: String,
    /// The veth end inside the namespace (198.18.0.2).
    pub peer: String,
}

impl Netns {
    /// Creates the namespace and the pair; names are made unique with `tag` and the process id.
    pub fn create(tag: &str) -> Result<Netns, String> {
        let id = std::process::id() % 100_000;
        let n = Netns {
            ns: format!("ns{tag}{id}"),
            host_if: format!("{tag}h{id}"),
            peer: format!("{tag}p{id}"),
        };
        ip(&["netns", "add", &n.ns])?;
        // On any failure past this point, dropping `n` removes what was made.
        ip(&[
            "link", "add", &n.host_if, "type", "veth", "peer", "name", &n.peer,
        ])?;
        ip(&["link", "set", &n.peer, "netns", &n.ns])?;
        ip(&["addr", "add", "198.18.0.1/30", "dev", &n.host_if])?;
        ip(&["link", "set", &n.host_if, "up"])?;
        ip(&[
            "netns",
            "exec",
            &n.ns,
            "ip",
            "addr",
            "add",
            "198.18.0.2/30",
            "dev",
            &n.peer,
        ])?;
        ip(&["netns", "exec", &n.ns, "ip", "link", "set", &n.peer, "up"])?;
        Ok(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}
