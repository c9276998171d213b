//! A real tansu broker with Kafka security turned on, for security tests: TLS, SASL, or both.
//!
//! What tansu 0.6.0 (the build `scripts/test` installs) can do, found by experiment:
//! - **SASL**: `--authentication` makes every client authenticate with SCRAM-SHA-256/512 (PLAIN is
//!   not offered). But users can only be created over the Kafka API (`tansu user create`), which
//!   an authenticating broker refuses before authentication, and storage is in memory per
//!   process: no user can ever log in. So SASL here is a broker that runs a real SCRAM exchange
//!   and rejects every credential ("unknown-user"): right for tests of credential handling and
//!   error reporting, not for a successful SASL login.
//! - **TLS**: its CLI rejects `--cert` together with `--key`, and `--cert` alone leaves the
//!   listener plaintext (any scheme). So TLS is a terminator in front of tansu (rustls, this
//!   module), which tansu advertises as its address: every client connection, metadata-directed
//!   ones included, is TLS with a certificate from a throwaway CA made here with `openssl`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;

use crate::tools;

/// A throwaway CA, a server certificate it signed for 127.0.0.1/localhost, and an unrelated CA
/// (for "wrong CA" tests). Files live in a temp dir removed on drop.
pub struct TestCa {
    _dir: tempfile::TempDir,
    /// The CA certificate clients trust (`ssl.ca.location`).
    pub ca: PathBuf,
    /// A CA that did not sign the server certificate.
    pub other_ca: PathBuf,
    /// The server certificate and its key (PKCS#8 PEM).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    /// Makes the CA and certificates with the `openssl` CLI, or returns `None` (after
    /// [`tools::skip`]) when it is not installed.
    pub fn generate() -> Option<TestCa> {
        let Some(openssl) = tools::find("openssl", "NETSTREAM_OPENSSL") else {
            tools::skip("openssl CLI not found (Debian package openssl)");
            return None;
        };
        Some(Self::generate_with(&openssl).unwrap_or_else(|e| panic!("making test certs: {e:#}")))
    }

    fn generate_with(openssl: &Path) -> anyhow::Result<TestCa> {
        let dir = tempfile::tempdir()?;
        let p = |name: &str| dir.path().join(name);
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let out = Command::new(openssl)
                .args(args)
                .current_dir(dir.path())
                .output()
                .context("running openssl")?;
            if !out.status.success() {
                bail!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        };
        // EC keys: quick to make, and both rustls and librdkafka take them.
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (name, cn) in [("ca", "netstream-test-ca"), ("other-ca", "unrelated-ca")] {
            let (keyfile, cert, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subj];
            args.extend(key);
            args.extend(["-keyout", &keyfile, "-out", &cert]);
            run(&args)?;
        }
        let mut args = vec!["req", "-nodes", "-subj", "/CN=localhost"];
        args.extend(key);
        args.extend(["-keyout", "server.key", "-out", "server.csr"]);
        run(&args)?;
        std::fs::write(
            p("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )?;
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ])?;
        Ok(TestCa {
            ca: p("ca.pem"),
            other_ca: p("other-ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            _dir: dir,
        })
    }
}

/// Counts of TLS handshakes the terminator saw.
#[derive(Default)]
struct HandshakeCounts {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

/// tansu with `--authentication` (SCRAM required) and/or behind a TLS terminator.
pub struct SecureBroker {
    tansu: Child,
    /// What clients connect to (the terminator when TLS is on).
    addr: SocketAddr,
    tls: Option<Terminator>,
}

impl SecureBroker {
    /// Starts tansu (and the terminator when `tls` is given), or returns `None` (after
    /// [`tools::skip`]) when tansu is not installed.
    pub fn start(tls: Option<&TestCa>, authentication: bool) -> Option<SecureBroker> {
        let Some(bin) = tools::find("tansu", "NETSTREAM_TANSU") else {
            tools::skip(
                "tansu broker not found (set NETSTREAM_TANSU or run scripts/test, which installs it)",
            );
            return None;
        };
        Some(
            Self::start_with(&bin, tls, authentication)
                .unwrap_or_else(|e| panic!("secure tansu did not start: {e:#}")),
        )
    }

    fn start_with(
        bin: &Path,
        tls: Option<&TestCa>,
        authentication: bool,
    ) -> anyhow::Result<SecureBroker> {
        let inner: SocketAddr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        // With TLS, the terminator's port is the one tansu advertises in metadata; it stays
        // bound from here on, so nothing else can take it meanwhile.
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let outer = listener.local_addr()?;
        let advertised = if tls.is_some() { outer } else { inner };
        let mut cmd = Command::new(bin);
        cmd.args(["broker", "--listener-url", &format!("tcp://{inner}")])
            .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
            .args(["--storage-engine", "memory://tansu/"]);
        if authentication {
            cmd.arg("--authentication");
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning tansu")?;
        let mut broker = SecureBroker {
            tansu: child,
            addr: inner,
            tls: None,
        };
        // On failure past this point, dropping `broker` stops tansu.
        wait_listening(inner, &mut broker.tansu)?;
        if let Some(ca) = tls {
            broker.tls = Some(Terminator::start(listener, inner, ca)?);
            broker.addr = outer;
        }
        Ok(broker)
    }

    /// `127.0.0.1:PORT`, for `--brokers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// TLS handshakes completed and failed so far (both 0 without TLS).
    pub fn handshakes(&self) -> (usize, usize) {
        self.tls.as_ref().map_or((0, 0), |t| {
            (
                t.counts.ok.load(Ordering::Relaxed),
                t.counts.failed.load(Ordering::Relaxed),
            )
        })
    }

    /// Creates a topic over TLS trusting `ca` (not possible with `--authentication`: see the
    /// module comment).
    pub fn create_topic(
        &self,
        ca: Option<&TestCa>,
        name: &str,
        partitions: i32,
    ) -> anyhow::Result<()> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        if let Some(ca) = ca {
            config
                .set("security.protocol", "ssl")
                .set("ssl.ca.location", ca.ca.display().to_string());
        }
        crate::broker::create_topic(&config, name, partitions, &[])
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.tansu.kill();
        let _ = self.tansu.wait();
    }
}

fn wait_listening(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if child.try_wait()?.is_some() {
            bail!("tansu exited early");
        }
        if Instant::now() > deadline {
            bail!("tansu did not listen on {addr} within 20s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A TLS terminator: accepts TLS on `outer` and pipes the plaintext to tansu on `inner`, on its
/// own thread and runtime; stopped on drop.
struct Terminator {
    counts: Arc<HandshakeCounts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Terminator {
    fn start(listener: TcpListener, inner: SocketAddr, ca: &TestCa) -> anyhow::Result<Terminator> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&ca.server_cert)
            .context("server cert")?
            .collect::<Result<Vec<_>, _>>()
            .context("server cert")?;
        let key = PrivateKeyDer::from_pem_file(&ca.server_key).context("server key")?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        listener.set_nonblocking(true)?;
        let counts = Arc::new(HandshakeCounts::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let c = counts.clone();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                tokio::select! {
                    _ = stopped => {}
                    _ = accept_loop(listener, acceptor, inner, c) => {}
                }
            });
        });
        Ok(Terminator {
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    inner: SocketAddr,
    counts: Arc<HandshakeCounts>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            let mut tls = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(_) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            counts.ok.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut plain) = tokio::net::TcpStream::connect(inner).await {
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            }
        });
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
