//! A real Prometheus server (Debian's `prometheus`, found via `NETSTREAM_PROMETHEUS`,
//! `.tools/bin` or `PATH`) scraping given targets, started per test with a temp config and
//! data dir, stopped on drop; and its HTTP query API. Also a minimal HTTP/1.1 GET client
//! (loopback only) for tests that talk to netstream's own endpoints.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::tools;

pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// A label's value, or "" when absent.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`) every `interval`, or returns `None`
    /// (after [`tools::skip`]) when it is not installed.
    pub fn start(targets: &[String], interval: Duration) -> Option<Prometheus> {
        let Some(bin) = tools::find("prometheus", "NETSTREAM_PROMETHEUS") else {
            tools::skip(
                "prometheus server not found (set NETSTREAM_PROMETHEUS or apt-get install prometheus)",
            );
            return None;
        };
        match Self::start_with(&bin, targets, interval) {
            Ok(p) => Some(p),
            Err(e) => panic!("prometheus at {} did not start: {e:#}", bin.display()),
        }
    }

    fn start_with(bin: &Path, targets: &[String], interval: Duration) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let ms = interval.as_millis().max(100);
        let targets = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n  evaluation_interval: {ms}ms\n\
             scrape_configs:\n  - job_name: netstream\n    static_configs:\n      - targets: [{targets}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning prometheus")?;
        let mut p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = p.child.try_wait()? {
                let log = std::fs::read_to_string(p._dir.path().join("prometheus.log"))
                    .unwrap_or_default();
                bail!("prometheus exited early: {status}\n{log}");
            }
            if matches!(
                http_get(&p.addr.to_string(), "/-/ready", Duration::from_secs(2)),
                Ok((200, _))
            ) {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready on {} within 30s", p.addr);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:PORT` of the web API.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Runs an instant query and returns its vector (scalars come back as one unlabelled sample).
    pub fn query(&self, expr: &str) -> anyhow::Result<Vec<Sample>> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = http_get(&self.addr(), &path, Duration::from_secs(10))?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("prometheus answered {status} with non-JSON: {body}"))?;
        if v["status"] != "success" {
            bail!("query {expr:?} failed ({status}): {body}");
        }
        let data = &v["data"];
        let parse = |val: &serde_json::Value| -> anyhow::Result<f64> {
            val[1]
                .as_str()
                .context("sample value is not a string")?
                .parse::<f64>()
                .context("sample value is not a number")
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .context("vector result is not an array")?
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(Sample {
                        labels,
                        value: parse(&s["value"])?,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: parse(&data["result"])?,
            }]),
            other => bail!("unexpected result type {other:?}: {body}"),
        }
    }

    /// Polls `expr` until `done` accepts the result or `timeout` passes; returns the last result.
    pub fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&[Sample]) -> bool,
    ) -> anyhow::Result<Vec<Sample>> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.query(expr)?;
            if done(&r) {
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("{expr:?} did not reach the expected value within {timeout:?}; last: {r:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET http://{addr}{path}`; returns the status code and the body (chunked bodies decoded).
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line: {head}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok((status, String::from_utf8(body)?))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk header")?;
        let size_str = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("truncated chunk")?);
        b = b.get(size + 2..).context("truncated chunk")?;
    }
}
