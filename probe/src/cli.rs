//! Command line (and `NETSTREAM_<FLAG>` environment) of `netstream-probe`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use netstream_runtime::duration::parse_duration;
use netstream_runtime::kafka_config::parse_property;

/// Capture packets (live or from pcap/pcapng files) and produce every frame to Kafka, keyed by
/// its direction-normalized flow key so both directions of a flow land on one partition.
///
/// Every flag can also be set in the environment as NETSTREAM_<FLAG> (e.g. NETSTREAM_BROKERS);
/// list flags take comma-separated values there.
///
/// TLS:  --producer-config security.protocol=SSL --producer-config ssl.ca.location=/etc/netstream/ca.crt
/// SASL: --producer-config security.protocol=SASL_SSL --producer-config sasl.mechanisms=SCRAM-SHA-512
///       with NETSTREAM_KAFKA_SASL_USERNAME / NETSTREAM_KAFKA_SASL_PASSWORD in the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "netstream-probe",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
pub struct Args {
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(long, env = "NETSTREAM_BROKERS", value_name = "HOST:PORT")]
    pub brokers: String,

    /// Topic to produce packet records to. It must exist.
    #[arg(long, env = "NETSTREAM_TOPIC", default_value = netstream_wire::DEFAULT_TOPIC)]
    pub topic: String,

    /// Network interface to capture on live (repeat for several).
    #[arg(
        long = "interface",
        short = 'i',
        env = "NETSTREAM_INTERFACE",
        value_delimiter = ',',
        required_unless_present = "pcap",
        conflicts_with = "pcap",
        value_name = "IF"
    )]
    pub interfaces: Vec<String>,

    /// pcap or pcapng file to replay instead of capturing live (repeat for several). Exits 0
    /// once every record is acknowledged by the broker.
    #[arg(
        long,
        env = "NETSTREAM_PCAP",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub pcap: Vec<PathBuf>,

    /// BPF filter (tcpdump syntax), applied to live captures and replays.
    #[arg(long, env = "NETSTREAM_FILTER", value_name = "BPF")]
    pub filter: Option<String>,

    /// Bytes captured per packet (live). Byte counts always use the wire length.
    #[arg(long, env = "NETSTREAM_SNAPLEN", default_value_t = 262_144,
          value_parser = clap::value_parser!(i32).range(64..=262_144))]
    pub snaplen: i32,

    /// Put live interfaces in promiscuous mode.
    #[arg(long, env = "NETSTREAM_PROMISCUOUS")]
    pub promiscuous: bool,

    /// Hand each packet to the probe the moment it arrives (live). Lowest latency, but one
    /// wake-up per packet; by default the kernel hands packets over in blocks, at the latest
    /// every 100 ms, which costs far less CPU at high rates.
    #[arg(long, env = "NETSTREAM_IMMEDIATE_MODE")]
    pub immediate_mode: bool,

    /// Kernel capture buffer per interface, in MiB (live).
    #[arg(long, env = "NETSTREAM_BUFFER_MB", default_value_t = 32,
          value_parser = clap::value_parser!(i32).range(1..=2048))]
    pub buffer_mb: i32,

    /// Produce one packet in N (1 = every packet). Sampled-out packets are counted as captured.
    #[arg(long, env = "NETSTREAM_SAMPLING", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sampling: u32,

    /// Name of this node, written into every record (default: the host name).
    #[arg(long, env = "NETSTREAM_NODE_NAME")]
    pub node_name: Option<String>,

    /// Address for /metrics, /healthz and /readyz. Empty to disable.
    #[arg(long, env = "NETSTREAM_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: String,

    /// Extra librdkafka producer property key=value (repeatable); overrides the defaults.
    /// In NETSTREAM_PRODUCER_CONFIG, separate properties with ';' (values may hold commas).
    #[arg(long = "producer-config", env = "NETSTREAM_PRODUCER_CONFIG", value_delimiter = ';',
          value_parser = parse_property, value_name = "K=V")]
    pub producer_config: Vec<(String, String)>,

    /// Records held in the local producer queue. Live capture drops (and counts) packets when it
    /// is full rather than stall; replay waits.
    #[arg(long, env = "NETSTREAM_QUEUE_SIZE", default_value_t = 200_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub queue_size: u32,

    /// How long to wait for the broker to acknowledge pending records on exit.
    #[arg(long, env = "NETSTREAM_FLUSH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub flush_timeout: Duration,

    /// How long to wait for the broker at start before giving up.
    #[arg(long, env = "NETSTREAM_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Show a progress bar on a terminal during replay (auto: when stderr is a terminal).
    #[arg(long, env = "NETSTREAM_PROGRESS", default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub progress: String,
}

impl Args {
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.metrics_addr.is_empty() {
            return Ok(None);
        }
        self.metrics_addr.parse().map(Some).map_err(|e| {
            format!(
                "--metrics-addr {:?} is not an address:port ({e}); use e.g. 0.0.0.0:9090, or an empty value to disable",
                self.metrics_addr
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_or_pcap_required() {
        assert!(Args::try_parse_from(["p", "--brokers", "x:1"]).is_err());
        assert!(
            Args::try_parse_from(["p", "--brokers", "x:1", "-i", "eth0", "--pcap", "a"]).is_err()
        );
        let a =
            Args::try_parse_from(["p", "--brokers", "x:1", "-i", "eth0", "-i", "eth1"]).unwrap();
        assert_eq!(a.interfaces, ["eth0", "eth1"]);
        assert!(
            Args::try_parse_from(["p", "--brokers", "x:1", "-i", "e", "--snaplen", "10"]).is_err()
        );
    }
}
