//! A real tansu broker (Kafka protocol, in-memory storage) on a free loopback port, stopped on
//! drop, and helpers to create topics and read them back.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::proxy::Proxy;
use crate::tools;

pub struct Broker {
    child: Child,
    addr: SocketAddr,
    bin: std::path::PathBuf,
    /// What tansu tells clients to connect to (a [`Proxy`] in front of it, or itself).
    advertised: SocketAddr,
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tansu() -> Option<std::path::PathBuf> {
    let found = tools::find("tansu", "NETSTREAM_TANSU");
    if found.is_none() {
        tools::skip(
            "tansu broker not found (set NETSTREAM_TANSU or run scripts/test, which installs it)",
        );
    }
    found
}

impl Broker {
    /// Starts tansu, or returns `None` (after [`tools::skip`]) when it is not installed.
    pub fn start() -> Option<Broker> {
        let bin = tansu()?;
        let start = || {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            Self::start_with(&bin, addr, addr)
        };
        match start() {
            Ok(b) => Some(b),
            Err(e) => panic!("tansu at {} did not start: {e:#}", bin.display()),
        }
    }

    /// Starts tansu behind a [`Proxy`] that it advertises as its address, so every client
    /// connection goes through the proxy (for outage tests: `proxy.down()` / `proxy.up()`).
    /// Clients bootstrap from `proxy.addr()`.
    pub fn start_behind_proxy() -> Option<(Broker, Proxy)> {
        let bin = tansu()?;
        let start = || -> anyhow::Result<(Broker, Proxy)> {
            let front = TcpListener::bind("127.0.0.1:0")?;
            let advertised = front.local_addr()?;
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let broker = Self::start_with(&bin, addr, advertised)?;
            let proxy = Proxy::start(front, addr)?;
            Ok((broker, proxy))
        };
        match start() {
            Ok(b) => Some(b),
            Err(e) => panic!("tansu at {} did not start: {e:#}", bin.display()),
        }
    }

    /// Kills tansu (SIGKILL) and starts it again on the same port. Its storage is in memory:
    /// every topic, record, committed offset and group is gone afterwards.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let fresh = Self::start_with(&self.bin, self.addr, self.advertised)?;
        // Swap in the new child; the old (already reaped) one is dropped with `fresh`.
        *self = fresh;
        Ok(())
    }

    fn start_with(
        bin: &std::path::Path,
        addr: SocketAddr,
        advertised: SocketAddr,
    ) -> anyhow::Result<Broker> {
        let url = format!("tcp://{addr}");
        let advertised_url = format!("tcp://{advertised}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning tansu")?;
        let mut broker = Broker {
            child,
            addr,
            bin: bin.to_path_buf(),
            advertised,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                bail!("tansu exited early: {status}");
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen on {addr} within 20s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    /// `127.0.0.1:PORT`, for `--brokers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The address tansu advertises to clients (the proxy's, when behind one).
    pub fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    /// The process id (e.g. to SIGKILL it from a test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the broker now (SIGKILL, for outage tests).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        self.create_topic_with(name, partitions, &[])
    }

    /// Creates a topic with `partitions` partitions and topic configs (e.g.
    /// `("max.message.bytes", "2000000")`).
    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        create_topic(&config, name, partitions, configs)
    }

    /// Reads every partition of `topic` from the beginning until `expected` records arrived and
    /// then `quiet` passed with nothing new (so duplicates would show), or `timeout`.
    pub fn read_all(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
        quiet: Duration,
    ) -> anyhow::Result<Vec<Record>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "netstream-testkit-reader")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let parts = md
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts {
            tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut last_new = Instant::now();
        loop {
            if Instant::now() > deadline {
                break;
            }
            if out.len() >= expected && last_new.elapsed() >= quiet {
                break;
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    out.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec).unwrap_or_default(),
                        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    });
                    last_new = Instant::now();
                }
                Some(Err(e)) => bail!("consuming {topic}: {e}"),
                None => {}
            }
        }
        Ok(out)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates a topic with an admin client of `config` (plain, TLS, ...), topic configs included.
pub fn create_topic(
    config: &ClientConfig,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = block_on(admin.create_topics(
        &[topic],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))?;
    for r in results {
        if let Err((topic, code)) = r {
            bail!("creating topic {topic}: {code}");
        }
    }
    Ok(())
}

/// A minimal executor for the admin client's futures (they complete on librdkafka's thread).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
