//! `--name value` options, and small statistics helpers shared by the subcommands.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, bail};

pub struct Opts(BTreeMap<String, String>);

impl Opts {
    pub fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Opts> {
        let mut m = BTreeMap::new();
        let mut it = args.peekable();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument {a}");
            };
            let value = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next().unwrap_or_default(),
                _ => "true".to_string(),
            };
            m.insert(name.to_string(), value);
        }
        Ok(Opts(m))
    }

    pub fn get<T: FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("--{name} {v}")),
        }
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> anyhow::Result<&str> {
        self.str(name)
            .with_context(|| format!("--{name} is required"))
    }
}

/// Median, min and max of `v` (empty: zeros).
pub fn stats(v: &[f64]) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::json!({"median": null, "min": null, "max": null, "runs": []});
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    serde_json::json!({"median": median, "min": s[0], "max": s[s.len() - 1], "runs": v})
}

/// Resident set size of `pid` in bytes (Linux).
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// utime + stime of `pid` in seconds (Linux).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((ut + st) / hz)
}
