//! A TCP proxy that can play "broker down": every connection is cut and the port refuses new
//! ones until it is brought back up.
//!
//! Why: tansu here keeps its data in memory only, so a real restart forgets every topic and
//! record. With tansu advertising the proxy's address, every client connection (bootstrap and
//! per-broker) goes through the proxy; cutting them all and refusing connections looks exactly
//! like a broker restart to the clients, while the data survives, so a test can account for
//! every acknowledged record. Plain threads: a handful of connections, and no runtime needed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections currently piped, both ends, so [`Proxy::down`] can cut them.
type Open = Arc<Mutex<Vec<(TcpStream, TcpStream)>>>;

pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    open: Open,
    /// Set while the current listener should keep accepting.
    accepting: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    /// Connections accepted over the proxy's life (reconnects show here).
    pub accepted: Arc<AtomicU64>,
}

impl Proxy {
    /// Proxies `listener`'s port to `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<Proxy> {
        let mut p = Proxy {
            addr: listener.local_addr()?,
            upstream,
            open: Arc::default(),
            accepting: Arc::default(),
            acceptor: None,
            accepted: Arc::default(),
        };
        p.serve(listener)?;
        Ok(p)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the proxy is accepting connections.
    pub fn is_up(&self) -> bool {
        self.acceptor.is_some()
    }

    fn serve(&mut self, listener: TcpListener) -> std::io::Result<()> {
        // Non-blocking accept polled with a short sleep, so `down` can stop the thread and
        // close the listening socket (a blocked accept cannot be interrupted portably).
        listener.set_nonblocking(true)?;
        self.accepting.store(true, Ordering::SeqCst);
        let accepting = self.accepting.clone();
        let open = self.open.clone();
        let upstream = self.upstream;
        let accepted = self.accepted.clone();
        self.acceptor = Some(std::thread::spawn(move || {
            while accepting.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        let _ = client.set_nonblocking(false);
                        if let Err(e) = pipe(client, upstream, &open) {
                            eprintln!("proxy: cannot reach upstream {upstream}: {e}");
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => {
                        eprintln!("proxy: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            // The listener drops here: the port refuses connections from now on.
        }));
        Ok(())
    }

    /// "Broker down": stops listening (new connections are refused) and cuts every open one.
    pub fn down(&mut self) {
        self.accepting.store(false, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let conns: Vec<_> = std::mem::take(&mut *lock(&self.open));
        for (client, server) in conns {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// "Broker back": listens on the same port again.
    pub fn up(&mut self) -> std::io::Result<()> {
        if self.is_up() {
            return Ok(());
        }
        // std sets SO_REUSEADDR on Unix, so the cut connections' TIME_WAIT does not block this.
        let listener = TcpListener::bind(self.addr)?;
        self.serve(listener)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects to `upstream` and copies bytes both ways on two threads until either side closes.
fn pipe(client: TcpStream, upstream: SocketAddr, open: &Open) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    lock(open).push((client.try_clone()?, server.try_clone()?));
    let (c2, s2) = (client.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || copy(client, server));
    std::thread::spawn(move || copy(s2, c2));
    Ok(())
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
